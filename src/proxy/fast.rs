//! The mock listener's HTTP/1 fast path: a request whose answer is a canned
//! response, or the Echo 404, and depends on its method and path alone is
//! answered here, in one read and one write of prepared bytes. Every other request (a body,
//! conditions, templates, delays and faults, pass-through, the admin API
//! and the gateway's own paths, anything unusual in the request line or
//! headers) goes on to Pingora's HTTP/1 session and the `EchoProxy`
//! pipeline, with the bytes already read handed over unchanged; from then
//! on that connection stays with Pingora.
//!
//! What a client sees is the same either way: the response bytes are those
//! the Pingora session writes for the endpoint (a test compares them), the
//! journal and the counters record the request alike.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Buf, BytesMut};
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{relay, EchoProxy};
use crate::config::Upstream;
use crate::journal::{Entry, Outcome};
use crate::limits::{HeadLimits, Refusal};
use crate::router::{wire, Action, ByPath, Endpoint, Gateway};

/// Headers a request may have and still be answered here.
pub(crate) const MAX_HEADERS: usize = 64;

/// The mock listener's application: the fast path, then Pingora's proxy.
pub struct MockApp {
    proxy: Arc<HttpProxy<EchoProxy>>,
    gw: Arc<Gateway>,
    /// The admin API shares the listener: its paths go to the proxy.
    admin_shared: bool,
    /// Idle keep-alive connections are closed after this; `None`: never.
    keepalive: Option<Duration>,
    /// A request header has this long to arrive in all, from its first
    /// byte: a client that dribbles it in is disconnected (as nginx's
    /// `client_header_timeout`). Pingora's session applies it per read.
    header_timeout: Duration,
    /// Misses are answered with their near misses: Pingora's path does that.
    explain_404: bool,
    /// Request line and header sizes (414, 431).
    head_limits: HeadLimits,
}

impl MockApp {
    pub fn new(proxy: HttpProxy<EchoProxy>, gw: Arc<Gateway>, admin_shared: bool) -> MockApp {
        let keepalive = Some(gw.config().server.keepalive_timeout).filter(|d| !d.is_zero());
        MockApp {
            header_timeout: gw.config().server.header_timeout,
            explain_404: gw.config().journal.explain_404,
            head_limits: HeadLimits::of(&gw.config().server),
            proxy: Arc::new(proxy),
            gw,
            admin_shared,
            keepalive,
        }
    }
}

/// A connection on the fast path: the bytes read and not yet answered.
struct Conn {
    stream: Stream,
    buf: BytesMut,
    out: BytesMut,
    /// The upstream's response as it is read (pass-through).
    up: BytesMut,
}

/// What became of one request.
enum Step {
    /// Answered; the connection stays open.
    Next,
    /// The connection is done (closed by the client, idle, shutting down,
    /// or answered with `Connection: close`).
    Close,
    /// Pingora takes the connection from here.
    Handover,
    /// Dropped without a close of the sending side (a reset is arranged).
    Abort,
}

#[async_trait]
impl ServerApp for MockApp {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        if stream.get_ssl_digest().is_some() {
            return self.proxy.process_new(stream, shutdown).await;
        }
        let mut conn = Conn {
            stream,
            buf: BytesMut::with_capacity(4096),
            out: BytesMut::with_capacity(512),
            up: BytesMut::new(),
        };
        let mut shutdown = shutdown.clone();
        loop {
            match self.serve(&mut conn, &mut shutdown).await {
                Step::Next => {}
                Step::Close => {
                    let _ = conn.stream.shutdown().await;
                    return None;
                }
                Step::Handover => return self.hand_over(conn, &shutdown).await,
                Step::Abort => return None,
            }
        }
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

impl MockApp {
    /// Reads one request header and answers it, or hands it over.
    async fn serve(&self, conn: &mut Conn, shutdown: &mut ShutdownWatch) -> Step {
        let mut deadline = None;
        loop {
            if !conn.buf.is_empty() {
                let shutting_down = *shutdown.borrow();
                match self.try_answer(conn, shutting_down) {
                    Some(Answer::Respond { close }) => {
                        if conn.stream.write_all(&conn.out).await.is_err()
                            || conn.stream.flush().await.is_err()
                        {
                            return Step::Close;
                        }
                        return if close { Step::Close } else { Step::Next };
                    }
                    Some(Answer::Relay(r)) => return self.relay(conn, *r).await,
                    Some(Answer::Partial) => {
                        if let Some(r) = self.head_limits.check_partial(&conn.buf) {
                            self.gw.metrics.refused.header.inc();
                            return refuse(conn, r).await;
                        }
                    }
                    Some(Answer::Refuse(r)) => {
                        self.gw.metrics.refused.header.inc();
                        return refuse(conn, r).await;
                    }
                    None => return Step::Handover,
                }
            }
            let idle = conn.buf.is_empty();
            let shutting_down = *shutdown.borrow();
            if idle && shutting_down {
                return Step::Close;
            }
            // Room for a whole request header (an empty buffer takes its
            // allocation back here).
            if conn.buf.capacity() - conn.buf.len() < 1024 {
                conn.buf.reserve(4096);
            }
            let limit = if idle {
                self.keepalive.map(|d| tokio::time::Instant::now() + d)
            } else {
                Some(
                    *deadline
                        .get_or_insert_with(|| tokio::time::Instant::now() + self.header_timeout),
                )
            };
            let read = conn.stream.read_buf(&mut conn.buf);
            let n = tokio::select! {
                biased;
                n = with_deadline(limit, read) => n,
                _ = shutdown.changed(), if idle => return Step::Close,
            };
            match n {
                Some(Ok(n)) if n > 0 => {}
                // Closed, failed or timed out: nothing more to answer.
                _ => return Step::Close,
            }
        }
    }

    /// Parses the request at the start of `conn.buf`; when this path answers
    /// it, writes the response to `conn.out` and takes the request out of
    /// `conn.buf`. `None`: Pingora must answer it.
    fn try_answer(&self, conn: &mut Conn, shutting_down: bool) -> Option<Answer> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        let len = match req.parse(&conn.buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Some(Answer::Partial),
            Err(httparse::Error::TooManyHeaders) => return self.count_fields(&conn.buf),
            Err(_) => return None,
        };
        let line = HeadLimits::line_len(&conn.buf);
        if let Some(r) = self.head_limits.check(line, len, req.headers.len()) {
            return Some(Answer::Refuse(r));
        }
        let method = http::Method::from_bytes(req.method?.as_bytes()).ok()?;
        let target = req.path?;
        let http11 = match req.version? {
            1 => true,
            0 => false,
            _ => return None,
        };
        let (path, query) = split_target(target)?;
        let mut keepalive = http11;
        let mut connection_seen = false;
        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            if name.eq_ignore_ascii_case(b"content-length") {
                if h.value != b"0" {
                    return None;
                }
            } else if name.eq_ignore_ascii_case(b"connection") {
                // One plain value, as Pingora reads it; anything else is its to read.
                if connection_seen {
                    return None;
                }
                connection_seen = true;
                if h.value.eq_ignore_ascii_case(b"close") {
                    keepalive = false;
                } else if h.value.eq_ignore_ascii_case(b"keep-alive") {
                    keepalive = true;
                } else {
                    return None;
                }
            } else if name.eq_ignore_ascii_case(b"transfer-encoding")
                || name.eq_ignore_ascii_case(b"expect")
                || name.eq_ignore_ascii_case(b"upgrade")
            {
                return None;
            }
        }
        if self.admin_shared && crate::admin::is_admin_path(path) {
            return None;
        }
        let close = !keepalive || shutting_down;
        let head = method == http::Method::HEAD;
        let router = self.gw.current();
        let relayable = |u: &Arc<Upstream>| (http11 && !u.tls).then(|| u.clone());
        let (endpoint, outcome, status, relay_to) = match router.find_by_path(&method, path) {
            ByPath::Hit(e) if matches!(e.action, Action::Proxy(_)) => {
                let Action::Proxy(u) = &e.action else {
                    return None;
                };
                let u = relayable(u)?;
                e.hits.fetch_add(1, Ordering::Relaxed);
                (Some(e.id.clone()), Outcome::Proxied, 0, Some(u))
            }
            ByPath::Hit(e) => {
                let canned = canned_only(e)?;
                e.hits.fetch_add(1, Ordering::Relaxed);
                self.gw.metrics.requests_mocked.inc();
                write_response(
                    &mut conn.out,
                    &canned.wire,
                    close,
                    (!head).then_some(&canned.body),
                );
                let status = canned.header.status.as_u16();
                (Some(e.id.clone()), Outcome::Mocked, status, None)
            }
            ByPath::Miss if super::Internal::of(&method, path).is_some() => return None,
            ByPath::Miss if router.fallback.is_some() => {
                let u = relayable(router.fallback.as_ref()?)?;
                (None, Outcome::Proxied, 0, Some(u))
            }
            ByPath::Miss if !self.explain_404 => {
                let reply = crate::admin::page_not_found(path);
                self.gw.metrics.requests_other.inc();
                write_reply(&mut conn.out, &reply, close, head);
                (None, Outcome::Unmatched, reply.status, None)
            }
            _ => return None,
        };
        self.gw.metrics.requests_fast.inc();
        if let Some(u) = &relay_to {
            self.gw.metrics.requests_proxied.inc();
            relay::upstream_request(u, method.as_str(), target, req.headers, &mut conn.out);
        }
        let entry = self.gw.journal.as_ref().map(|_| Entry {
            seq: 0,
            at_ms: crate::journal::now_ms(),
            method: method.to_string(),
            path: path.to_string(),
            query: query.map(str::to_string),
            headers: journal_headers(req.headers),
            body: bytes::Bytes::new(),
            body_len: Some(0),
            endpoint,
            outcome,
            status,
        });
        conn.buf.advance(len);
        Some(match relay_to {
            Some(upstream) => Answer::Relay(Box::new(Relay {
                upstream,
                head,
                close,
                entry,
            })),
            None => {
                if let (Some(journal), Some(entry)) = (self.gw.journal.as_ref(), entry) {
                    journal.record(entry);
                }
                Answer::Respond { close }
            }
        })
    }

    /// A request with more header fields than this path parses: refused
    /// when over `max_headers`, else Pingora's to answer.
    fn count_fields(&self, buf: &[u8]) -> Option<Answer> {
        let limits = &self.head_limits;
        if limits.fields < MAX_HEADERS {
            return Some(Answer::Refuse(limits.too_many_fields()));
        }
        let mut headers = vec![httparse::EMPTY_HEADER; limits.fields];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(buf) {
            Err(httparse::Error::TooManyHeaders) => Some(Answer::Refuse(limits.too_many_fields())),
            Ok(httparse::Status::Partial) => Some(Answer::Partial),
            Ok(httparse::Status::Complete(len)) => limits
                .check(HeadLimits::line_len(buf), len, req.headers.len())
                .map(Answer::Refuse),
            Err(_) => None,
        }
    }

    /// Passes the request in `conn.out` on to its upstream and relays the
    /// answer (or the error a failed pass-through gets).
    async fn relay(&self, conn: &mut Conn, r: Relay) -> Step {
        let Relay {
            upstream,
            head,
            close,
            entry,
        } = r;
        let Conn {
            stream, out, up, ..
        } = conn;
        let (status, step) = match relay::relay(&upstream, out, head, close, stream, up).await {
            relay::Relayed::Done { status, close } => {
                (status, if close { Step::Close } else { Step::Next })
            }
            relay::Relayed::Broken => {
                // Part of an answer may be out: a reset tells the client
                // it is cut (a close would end a close-delimited body).
                super::mock::reset_stream_on_close(stream);
                (0, Step::Abort)
            }
            relay::Relayed::Failed(e) => {
                let (status, body) = super::passthrough::error_response(Some(&upstream), &e);
                if status > 0 {
                    let header = super::json_header(status, crate::admin::JSONAPI, body.len(), &[]);
                    write_response(out, &wire(&header), true, (!head).then_some(&body));
                    let _ = stream.write_all(out).await;
                    let _ = stream.flush().await;
                }
                (status, Step::Close)
            }
        };
        if let (Some(journal), Some(mut entry)) = (self.gw.journal.as_ref(), entry) {
            entry.status = status;
            journal.record(entry);
        }
        step
    }

    /// Gives the connection, and the bytes read of its next request, to
    /// Pingora's HTTP/1 session and the proxy; serves it that way to its end.
    async fn hand_over(&self, conn: Conn, shutdown: &ShutdownWatch) -> Option<Stream> {
        let mut session = ServerSession::new_http1(conn.stream);
        let shutting_down = *shutdown.borrow();
        session.set_keepalive(if shutting_down { None } else { Some(60) });
        session.set_read_timeout(Some(self.header_timeout));
        if !conn.buf.is_empty() {
            session.set_pipelined_prefix(conn.buf);
        }
        let mut reused = self.proxy.process_new_http(session, shutdown).await;
        while let Some((stream, settings)) = reused.map(|r| r.consume()) {
            let mut session = ServerSession::new_http1(stream);
            if let Some(settings) = settings {
                settings.apply_to_session(&mut session);
            }
            session.set_read_timeout(Some(self.header_timeout));
            reused = self.proxy.process_new_http(session, shutdown).await;
        }
        None
    }
}

/// A response: the status and header lines, `Date` and `Connection`, the body.
pub(super) fn write_response(
    out: &mut BytesMut,
    wire: &[u8],
    close: bool,
    body: Option<&bytes::Bytes>,
) {
    out.clear();
    out.extend_from_slice(wire);
    end_head(out, close);
    if let Some(body) = body {
        out.extend_from_slice(body);
    }
}

/// A gateway answer (JSON:API document and its headers) as bytes;
/// `head`: without the body.
pub(super) fn write_reply(
    out: &mut BytesMut,
    reply: &crate::admin::Reply,
    close: bool,
    head: bool,
) {
    let header = super::json_header(
        reply.status,
        crate::admin::JSONAPI,
        reply.body.len(),
        &reply.headers,
    );
    write_response(out, &wire(&header), close, (!head).then_some(&reply.body));
}

/// Ends a response header as Pingora's HTTP/1 session does: the current
/// `Date`, `Connection` for what happens to the connection, a blank line.
pub(super) fn end_head(out: &mut BytesMut, close: bool) {
    out.extend_from_slice(b"Date: ");
    out.extend_from_slice(pingora::protocols::http::date::get_cached_date().as_bytes());
    out.extend_from_slice(if close {
        b"\r\nConnection: close\r\n\r\n"
    } else {
        b"\r\nConnection: keep-alive\r\n\r\n"
    });
}

/// A request to pass on: it is in `conn.out`.
struct Relay {
    upstream: Arc<Upstream>,
    head: bool,
    /// The client asked to close (or the server is shutting down).
    close: bool,
    /// The journal entry, its status still to set.
    entry: Option<Entry>,
}

enum Answer {
    /// The response is in `conn.out`.
    Respond { close: bool },
    /// The request goes to an upstream.
    Relay(Box<Relay>),
    /// The request header is not complete yet.
    Partial,
    /// The request breaks a limit: answer and close.
    Refuse(Refusal),
}

/// Answers a request that breaks a limit, then closes the connection once
/// the client has had a moment to read the answer (a close with unread
/// bytes would reset it before it arrives).
async fn refuse(conn: &mut Conn, r: Refusal) -> Step {
    write_reply(&mut conn.out, &r.reply(), true, false);
    if conn.stream.write_all(&conn.out).await.is_ok()
        && conn.stream.flush().await.is_ok()
        && conn.stream.shutdown().await.is_ok()
    {
        linger(&mut conn.stream).await;
    }
    Step::Close
}

/// Reads and drops what the client still sends, for at most 2 s or 1 MiB,
/// after the answer is written and the sending side closed.
async fn linger(stream: &mut Stream) {
    let mut sink = [0u8; 8192];
    let mut left: usize = 1 << 20;
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while left > 0 {
        match tokio::time::timeout_at(until, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => left = left.saturating_sub(n),
            _ => return,
        }
    }
}

async fn with_deadline<F: std::future::Future>(
    limit: Option<tokio::time::Instant>,
    f: F,
) -> Option<F::Output> {
    match limit {
        Some(at) => tokio::time::timeout_at(at, f).await.ok(),
        None => Some(f.await),
    }
}

/// The canned response of an endpoint that answers with one, as is.
fn canned_only(e: &Endpoint) -> Option<&crate::router::Canned> {
    match &e.action {
        Action::Respond(c)
            if e.template.is_none()
                && e.delay.is_none()
                && e.fault.is_none()
                && e.rate.is_none() =>
        {
            Some(c)
        }
        _ => None,
    }
}

/// Path and query of an origin-form request target made only of the
/// characters a URI keeps as they are (RFC 3986 `pchar`, `/`, `?`, `%`);
/// `None` for any other target, which Pingora parses.
pub(crate) fn split_target(target: &str) -> Option<(&str, Option<&str>)> {
    let bytes = target.as_bytes();
    if bytes.first() != Some(&b'/') || bytes.get(1) == Some(&b'/') {
        return None;
    }
    let plain = bytes.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
                    | b'/'
                    | b'?'
                    | b'%'
            )
    });
    if !plain {
        return None;
    }
    Some(match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    })
}

/// The request's headers as the journal keeps them: names in lower case,
/// the values of one name together (in the order `http::HeaderMap` keeps).
fn journal_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(headers.len());
    for h in headers {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(h.value).into_owned();
        match out.iter().rposition(|(n, _)| *n == name) {
            Some(i) => out.insert(i + 1, (name, value)),
            None => out.push((name, value)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_with_other_characters_go_to_pingora() {
        assert_eq!(split_target("/a/b"), Some(("/a/b", None)));
        assert_eq!(split_target("/a?x=1&y"), Some(("/a", Some("x=1&y"))));
        assert_eq!(split_target("/a?"), Some(("/a", Some(""))));
        assert_eq!(split_target("/%7Eme"), Some(("/%7Eme", None)));
        for other in [
            "",
            "*",
            "http://h/a",
            "//a",
            "/a b",
            "/a\"",
            "/{x}",
            "/a#f",
            "/é",
        ] {
            assert_eq!(split_target(other), None, "{other}");
        }
    }

    #[test]
    fn journal_headers_group_values_of_one_name() {
        let raw = [
            httparse::Header {
                name: "X-A",
                value: b"1",
            },
            httparse::Header {
                name: "Host",
                value: b"h",
            },
            httparse::Header {
                name: "x-a",
                value: b"2",
            },
        ];
        assert_eq!(
            journal_headers(&raw),
            [
                ("x-a".to_string(), "1".to_string()),
                ("x-a".to_string(), "2".to_string()),
                ("host".to_string(), "h".to_string()),
            ]
        );
    }
}
