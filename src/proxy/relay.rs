//! The fast path's pass-through: a request without a body, from an HTTP/1.1
//! client, to a plain-HTTP upstream, over a connection kept per server
//! thread. The response is relayed as it comes (its header with the
//! hop-by-hop fields left out and `Date` and `Connection` set as Pingora's
//! session sets them, then its body as framed: `Content-Length`, chunked,
//! or to the upstream's close). Upstreams over TLS, requests with a body and
//! HTTP/1.0 clients go through Pingora's proxy.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use pingora::prelude::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::Upstream;

/// Idle connections kept per upstream address and server thread.
const MAX_IDLE: usize = 256;
/// A response header larger than this is refused (502).
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
const MAX_RESPONSE_HEADERS: usize = 128;

thread_local! {
    /// Idle upstream connections of this server thread (each thread runs
    /// its own runtime, whose reactor the connections are registered with).
    static IDLE: RefCell<HashMap<SocketAddr, Vec<TcpStream>>> = RefCell::new(HashMap::new());
}

fn take_idle(addr: SocketAddr) -> Option<TcpStream> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.get_mut(&addr)?;
        while let Some(s) = list.pop() {
            // One the upstream closed, or that holds bytes nobody asked
            // for, is not used again.
            let mut probe = [0u8; 1];
            if matches!(s.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            {
                return Some(s);
            }
        }
        None
    })
}

fn put_idle(addr: SocketAddr, s: TcpStream) {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.entry(addr).or_default();
        if list.len() < MAX_IDLE {
            list.push(s);
        }
    });
}

/// Header fields that concern one connection only (RFC 9110 7.6.1).
fn hop_by_hop(name: &[u8]) -> bool {
    const NAMES: [&[u8]; 7] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
        b"proxy-authenticate",
    ];
    NAMES.iter().any(|n| name.eq_ignore_ascii_case(n))
}

/// The request as it goes upstream: the client's request line and headers,
/// the hop-by-hop ones left out, `Host` set to the upstream's authority
/// unless it keeps the client's.
pub fn upstream_request(
    u: &Upstream,
    method: &str,
    target: &str,
    headers: &[httparse::Header<'_>],
    out: &mut BytesMut,
) {
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(b" ");
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut host_sent = false;
    for h in headers {
        let name = h.name.as_bytes();
        if hop_by_hop(name) {
            continue;
        }
        if name.eq_ignore_ascii_case(b"host") {
            if host_sent {
                continue;
            }
            host_sent = true;
            if !u.preserve_host {
                out.extend_from_slice(b"Host: ");
                out.extend_from_slice(u.authority.as_bytes());
                out.extend_from_slice(b"\r\n");
                continue;
            }
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if !host_sent {
        out.extend_from_slice(b"Host: ");
        out.extend_from_slice(u.authority.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// What came of a relay.
pub enum Relayed {
    /// The response was relayed; its status. The client connection stays
    /// open unless `close`.
    Done { status: u16, close: bool },
    /// Nothing was sent to the client: answer with this error.
    Failed(Box<Error>),
    /// Part of the response was sent when the upstream failed: the client
    /// connection must be closed.
    Broken,
}

fn upstream_error(etype: ErrorType, why: impl Into<String>) -> Box<Error> {
    let mut e = Error::explain(etype, why.into());
    e.esource = ErrorSource::Upstream;
    e
}

/// Sends `request` (a whole request without a body) to `u` and relays the
/// response to `client`. `head`: the request was HEAD (no body follows).
pub async fn relay<C: AsyncRead + AsyncWrite + Unpin>(
    u: &Upstream,
    request: &[u8],
    head: bool,
    client_close: bool,
    client: &mut C,
    buf: &mut BytesMut,
) -> Relayed {
    let Some(addr) = super::passthrough::resolve(&u.host, u.port).await else {
        return Relayed::Failed(upstream_error(
            ErrorType::ConnectNoRoute,
            format!("cannot resolve the upstream host `{}`", u.host),
        ));
    };
    // A kept connection may have been closed by the upstream meanwhile:
    // a request that got no byte back is sent once more on a new one.
    let mut reused = take_idle(addr);
    loop {
        let was_reused = reused.is_some();
        let mut up = match reused.take() {
            Some(s) => s,
            None => match tokio::time::timeout(u.connect_timeout, TcpStream::connect(addr)).await {
                Err(_) => {
                    return Relayed::Failed(upstream_error(
                        ErrorType::ConnectTimedout,
                        "connect timed out",
                    ))
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    return Relayed::Failed(upstream_error(
                        ErrorType::ConnectRefused,
                        e.to_string(),
                    ))
                }
                Ok(Err(e)) => {
                    return Relayed::Failed(upstream_error(ErrorType::ConnectError, e.to_string()))
                }
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    s
                }
            },
        };
        buf.clear();
        let sent = up.write_all(request).await;
        let head_read = match sent {
            Ok(()) => read_head(&mut up, buf, u.read_timeout).await,
            Err(e) => Err(HeadError::Io(e)),
        };
        let head_read = match head_read {
            Ok(h) => h,
            Err(HeadError::Empty | HeadError::Io(_)) if was_reused => continue,
            Err(HeadError::Timeout) => {
                return Relayed::Failed(upstream_error(ErrorType::ReadTimedout, "no response"))
            }
            Err(HeadError::Empty) => {
                return Relayed::Failed(upstream_error(
                    ErrorType::ConnectionClosed,
                    "the upstream closed the connection without a response",
                ))
            }
            Err(HeadError::Io(e)) => {
                return Relayed::Failed(upstream_error(ErrorType::ReadError, e.to_string()))
            }
            Err(HeadError::Invalid(why)) => {
                return Relayed::Failed(upstream_error(ErrorType::InvalidHTTPHeader, why))
            }
        };
        let status = head_read.0;
        let Some((close, reusable)) = forward(
            &mut up,
            client,
            buf,
            head_read,
            head,
            client_close,
            u.read_timeout,
        )
        .await
        else {
            return Relayed::Broken;
        };
        if reusable {
            put_idle(addr, up);
        }
        return Relayed::Done { status, close };
    }
}

/// Relays a response whose header `read_head` read into `buf`: the header
/// as the client gets it, then the body as framed. Whether the client
/// connection closes after it and whether the upstream one can be used
/// again; `None` when the client or the upstream failed part way.
pub(crate) async fn forward<U: AsyncRead + Unpin, C: AsyncWrite + Unpin>(
    up: &mut U,
    client: &mut C,
    buf: &mut BytesMut,
    (status, framing, head_len, upstream_close): ResponseHead,
    head: bool,
    client_close: bool,
    timeout: Duration,
) -> Option<(bool, bool)> {
    let framing = if head || status == 204 || status == 304 {
        Framing::None
    } else {
        framing
    };
    let close = client_close || framing == Framing::Close;
    let mut out = BytesMut::with_capacity(head_len + 64);
    response_head(&buf[..head_len], close, &mut out);
    buf.advance(head_len);
    client.write_all(&out).await.ok()?;
    relay_body(up, client, buf, framing, timeout).await.ok()?;
    client.flush().await.ok()?;
    let reusable = !upstream_close && framing != Framing::Close && buf.is_empty();
    Some((close, reusable))
}

/// A response header read: status, body framing, header length, and
/// whether the upstream closes the connection after the response.
pub(crate) type ResponseHead = (u16, Framing, usize, bool);

pub(crate) enum HeadError {
    /// The connection closed before a byte of response.
    Empty,
    Timeout,
    Io(std::io::Error),
    Invalid(String),
}

/// Reads a response header into `buf`.
pub(crate) async fn read_head<U: AsyncRead + Unpin>(
    up: &mut U,
    buf: &mut BytesMut,
    timeout: Duration,
) -> Result<ResponseHead, HeadError> {
    loop {
        reserve(buf);
        let n = match tokio::time::timeout(timeout, up.read_buf(buf)).await {
            Err(_) => return Err(HeadError::Timeout),
            Ok(Err(e)) => return Err(HeadError::Io(e)),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            return Err(if buf.is_empty() {
                HeadError::Empty
            } else {
                HeadError::Invalid("the upstream closed the connection in a response header".into())
            });
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = resp.code.unwrap_or(0);
                if !(200..=599).contains(&status) {
                    return Err(HeadError::Invalid(format!(
                        "status {status} is not relayed"
                    )));
                }
                let http11 = resp.version == Some(1);
                let mut framing = Framing::Close;
                let mut close = !http11;
                for h in resp.headers.iter() {
                    let name = h.name.as_bytes();
                    if name.eq_ignore_ascii_case(b"transfer-encoding") {
                        if !h.value.eq_ignore_ascii_case(b"chunked") {
                            return Err(HeadError::Invalid(
                                "a transfer coding other than chunked".into(),
                            ));
                        }
                        framing = Framing::Chunked;
                    } else if name.eq_ignore_ascii_case(b"content-length")
                        && framing != Framing::Chunked
                    {
                        let n = std::str::from_utf8(h.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .ok_or_else(|| {
                                HeadError::Invalid("an invalid Content-Length".into())
                            })?;
                        if matches!(framing, Framing::Length(m) if m != n) {
                            return Err(HeadError::Invalid("two different Content-Lengths".into()));
                        }
                        framing = Framing::Length(n);
                    } else if name.eq_ignore_ascii_case(b"connection") {
                        if h.value.eq_ignore_ascii_case(b"close") {
                            close = true;
                        } else if h.value.eq_ignore_ascii_case(b"keep-alive") {
                            close = false;
                        }
                    }
                }
                if framing == Framing::Length(0) {
                    framing = Framing::None;
                }
                return Ok((status, framing, len, close));
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(HeadError::Invalid("a response header over 64 KiB".into()))
            }
            Err(e) => {
                return Err(HeadError::Invalid(format!(
                    "an invalid response header: {e}"
                )))
            }
        }
    }
}

/// The response header as the client gets it: the upstream's status line
/// and fields, without the hop-by-hop ones and `Date`, then `Date` and
/// `Connection`.
fn response_head(raw: &[u8], close: bool, out: &mut BytesMut) {
    // Empty lines before the status line are allowed (and skipped) by the
    // parser (RFC 9112 2.2).
    let start = raw
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(raw.len());
    let mut lines = raw[start..].split(|&b| b == b'\n');
    if let Some(status_line) = lines.next() {
        out.extend_from_slice(b"HTTP/1.1");
        let rest = status_line.strip_suffix(b"\r").unwrap_or(status_line);
        if let Some(i) = rest.iter().position(|&b| b == b' ') {
            out.extend_from_slice(&rest[i..]);
        }
        out.extend_from_slice(b"\r\n");
    }
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        if hop_by_hop(name) || name.eq_ignore_ascii_case(b"date") {
            continue;
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    super::fast::end_head(out, close);
}

/// Copies the body, as framed, from `up` (after what `buf` already holds)
/// to `client`.
async fn relay_body<U: AsyncRead + Unpin, C: AsyncWrite + Unpin>(
    up: &mut U,
    client: &mut C,
    buf: &mut BytesMut,
    framing: Framing,
    timeout: Duration,
) -> std::io::Result<()> {
    match framing {
        Framing::None => Ok(()),
        Framing::Length(mut left) => loop {
            let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
            client.write_all(&buf[..take]).await?;
            buf.advance(take);
            left -= take as u64;
            if left == 0 {
                return Ok(());
            }
            fill(up, buf, timeout).await?;
        },
        Framing::Close => loop {
            client.write_all(buf).await?;
            buf.clear();
            match fill(up, buf, timeout).await {
                Ok(()) => {}
                // The upstream's close ends the body; a reset or a stall
                // cuts it.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        },
        Framing::Chunked => {
            loop {
                // A chunk-size line.
                let (size, line) = loop {
                    match httparse::parse_chunk_size(buf) {
                        Ok(httparse::Status::Complete((line, size))) => break (size, line),
                        Ok(httparse::Status::Partial) if buf.len() < 4096 => {
                            fill(up, buf, timeout).await?
                        }
                        _ => return Err(std::io::Error::other("an invalid chunk size")),
                    }
                };
                if size == 0 {
                    // The last chunk, then trailer fields up to an empty line.
                    client.write_all(&buf[..line]).await?;
                    buf.advance(line);
                    loop {
                        if let Some(end) = buf.windows(2).position(|w| w == b"\r\n") {
                            let done = end == 0;
                            client.write_all(&buf[..end + 2]).await?;
                            buf.advance(end + 2);
                            if done {
                                return Ok(());
                            }
                        } else if buf.len() > MAX_RESPONSE_HEAD {
                            return Err(std::io::Error::other("trailer fields too large"));
                        } else {
                            fill(up, buf, timeout).await?;
                        }
                    }
                }
                let mut left = size + 2 + line as u64;
                loop {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    client.write_all(&buf[..take]).await?;
                    buf.advance(take);
                    left -= take as u64;
                    if left == 0 {
                        break;
                    }
                    fill(up, buf, timeout).await?;
                }
            }
        }
    }
}

/// Room to read a good part of a response at once.
fn reserve(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 2048 {
        buf.reserve(16 * 1024);
    }
}

/// Reads more of the upstream's response; an error at its end or timeout.
async fn fill<U: AsyncRead + Unpin>(
    up: &mut U,
    buf: &mut BytesMut,
    timeout: Duration,
) -> std::io::Result<()> {
    reserve(buf);
    match tokio::time::timeout(timeout, up.read_buf(buf)).await {
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "upstream read timed out",
        )),
        Ok(Ok(0)) => Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "upstream closed",
        )),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_lines_before_the_status_line_are_left_out() {
        let mut out = BytesMut::new();
        response_head(
            b"\n\r\n\nHTTP/1.1 500 Oops\nContent-Length: 1\n\n",
            true,
            &mut out,
        );
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 500 Oops\r\nContent-Length: 1\r\nDate: "),
            "{text}"
        );
    }

    #[test]
    fn the_response_head_loses_hop_by_hop_fields_and_gets_date_and_connection() {
        let raw = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nKeep-Alive: 5\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\nContent-Length: 2\r\n\r\n";
        let mut out = BytesMut::new();
        response_head(raw, true, &mut out);
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(
            text.starts_with(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nDate: "
            ),
            "{text}"
        );
        assert!(
            text.ends_with(" GMT\r\nConnection: close\r\n\r\n"),
            "{text}"
        );
        assert!(
            !text.contains("2001") && !text.contains("Keep-Alive"),
            "{text}"
        );
    }
}
