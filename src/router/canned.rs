//! A canned response, prepared once when the router is compiled: the header
//! block with its `Content-Length`, and the body as shared bytes.

use bytes::Bytes;
use pingora::http::ResponseHeader;

use crate::config::ResponseSpec;

#[derive(Debug)]
pub struct Canned {
    pub header: ResponseHeader,
    pub body: Bytes,
}

impl Canned {
    pub fn new(spec: &ResponseSpec) -> Canned {
        let body = Bytes::from(spec.body.clone().into_bytes());
        let header = build_header(spec.code, &spec.headers, body.len());
        Canned { header, body }
    }
}

/// A response header with exactly `headers` (names as spelled) and a correct
/// `Content-Length`. 204 and 304 carry no `Content-Length` (RFC 9110 8.6).
///
/// It also holds the `Date` and `Connection` headers that the HTTP/1 session
/// sets on every response, with placeholder values: setting them then
/// replaces a value in the per-request copy, where adding them would grow
/// its header maps (a rehash and reallocations on every request).
pub fn build_header(code: u16, headers: &[(String, String)], body_len: usize) -> ResponseHeader {
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
    let _ = h.insert_header(http::header::DATE, "Thu, 01 Jan 1970 00:00:00 GMT");
    let _ = h.insert_header(http::header::CONNECTION, "keep-alive");
    h
}

fn unreachable_header() -> ResponseHeader {
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = http::StatusCode::INTERNAL_SERVER_ERROR;
    ResponseHeader::from(parts)
}
