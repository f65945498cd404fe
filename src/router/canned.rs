//! A canned response, prepared once when the router is compiled: the header
//! block with its `Content-Length`, and the body as shared bytes.

use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use hashbrown::HashTable;
use pingora::http::ResponseHeader;

use crate::config::ResponseSpec;

#[derive(Debug)]
pub struct Canned {
    /// Shared by the endpoints of a router whose status, headers and body
    /// length are the same: a header block takes about a kilobyte.
    pub header: Arc<ResponseHeader>,
    /// The status line and header lines as sent on HTTP/1.1, without the
    /// `Date` and `Connection` lines and the blank line that end them.
    pub wire: Bytes,
    pub body: Bytes,
}

impl Canned {
    pub fn new(spec: &ResponseSpec, headers: &mut SharedHeaders) -> Canned {
        let body = Bytes::from(spec.body.clone().into_bytes());
        let (header, wire) = headers.get(spec.code, &spec.headers, body.len());
        Canned { header, wire, body }
    }
}

/// The header blocks built while compiling one router, each once.
#[derive(Default)]
pub struct SharedHeaders {
    table: HashTable<Shared>,
    hasher: foldhash::fast::FixedState,
}

/// A header block and what it was built from.
struct Shared {
    code: u16,
    headers: Vec<(String, String)>,
    body_len: usize,
    header: Arc<ResponseHeader>,
    wire: Bytes,
}

impl SharedHeaders {
    pub fn get(
        &mut self,
        code: u16,
        headers: &[(String, String)],
        body_len: usize,
    ) -> (Arc<ResponseHeader>, Bytes) {
        let key = self.hasher.hash_one((code, headers, body_len));
        let found = self.table.find(key, |s| {
            s.code == code && s.headers == headers && s.body_len == body_len
        });
        if let Some(s) = found {
            return (s.header.clone(), s.wire.clone());
        }
        let mut header = base_header(code, headers, body_len);
        let wire = wire(&header);
        add_placeholders(&mut header);
        let header = Arc::new(header);
        let shared = Shared {
            code,
            headers: headers.to_vec(),
            body_len,
            header: header.clone(),
            wire: wire.clone(),
        };
        let hasher = &self.hasher;
        self.table.insert_unique(key, shared, |s| {
            hasher.hash_one((s.code, s.headers.as_slice(), s.body_len))
        });
        (header, wire)
    }
}

/// The HTTP/1.1 status line and header lines of `h`, as Pingora's HTTP/1
/// session writes them, without the blank line that ends them. `h` is a
/// header without `Date` and `Connection`, which the session sets per
/// response.
pub fn wire(h: &ResponseHeader) -> Bytes {
    let mut buf = bytes::BytesMut::with_capacity(128);
    buf.extend_from_slice(b"HTTP/1.1 ");
    buf.extend_from_slice(h.status.as_str().as_bytes());
    buf.extend_from_slice(b" ");
    if let Some(reason) = h.get_reason_phrase() {
        buf.extend_from_slice(reason.as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    h.header_to_h1_wire(&mut buf);
    buf.freeze()
}

/// A response header with exactly `headers` (names as spelled) and a correct
/// `Content-Length`. 204 and 304 carry no `Content-Length` (RFC 9110 8.6).
fn base_header(code: u16, headers: &[(String, String)], body_len: usize) -> ResponseHeader {
    let mut h = match ResponseHeader::build(code, Some(headers.len() + 3)) {
        Ok(h) => h,
        // Codes are validated to 200..=599 before they get here.
        Err(_) => ResponseHeader::build(500, None).unwrap_or_else(|_| unreachable_header()),
    };
    for (name, value) in headers {
        // Names and values were validated as tokens and visible ASCII.
        let _ = h.append_header(name.clone(), value.as_str());
    }
    if code != 204 && code != 304 {
        let _ = h.insert_header("Content-Length", body_len.to_string());
    }
    h
}

/// Adds the `Date` and `Connection` headers that the HTTP/1 session sets on
/// every response, with placeholder values: setting them then replaces a
/// value in the per-request copy, where adding them would grow its header
/// maps (a rehash and reallocations on every request).
fn add_placeholders(h: &mut ResponseHeader) {
    let _ = h.insert_header(http::header::DATE, "Thu, 01 Jan 1970 00:00:00 GMT");
    let _ = h.insert_header(http::header::CONNECTION, "keep-alive");
}

fn unreachable_header() -> ResponseHeader {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = http::StatusCode::INTERNAL_SERVER_ERROR;
    ResponseHeader::from(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_headers_are_built_once() {
        let mut shared = SharedHeaders::default();
        let json = vec![("Content-Type".to_string(), "application/json".to_string())];
        let (a, wire) = shared.get(200, &json, 10);
        assert!(Arc::ptr_eq(&a, &shared.get(200, &json, 10).0));
        assert_eq!(
            &wire[..],
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 10\r\n"
        );
        for (other, _) in [
            shared.get(201, &json, 10),
            shared.get(200, &json, 11),
            shared.get(200, &[], 10),
        ] {
            assert!(!Arc::ptr_eq(&a, &other));
        }
        assert_eq!(a.status.as_u16(), 200);
        assert_eq!(
            a.headers.get("content-length").map(|v| v.as_bytes()),
            Some(&b"10"[..])
        );
        assert_eq!(
            a.headers.get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        let (no_content, wire) = shared.get(204, &json, 0);
        assert_eq!(no_content.headers.get("content-length"), None);
        assert_eq!(
            &wire[..],
            b"HTTP/1.1 204 No Content\r\nContent-Type: application/json\r\n"
        );
    }
}
