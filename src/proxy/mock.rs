//! Answering from a matched endpoint: the canned or rendered response, the
//! delay, the faults; and reading a request body for body conditions.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::Session;

use crate::config::endpoint::{Delay, Fault};
use crate::config::Upstream;
use crate::router::matcher::{Body, Facts};
use crate::router::{Action, Endpoint};
use crate::template::RequestView;

/// What a matched endpoint does with this request.
// Short-lived, on the stack: boxing would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
pub enum Answer {
    Respond(Response),
    Proxy(Arc<Upstream>),
}

/// A response ready to write, taken out of the router.
pub struct Response {
    pub header: ResponseHeader,
    pub body: Bytes,
    pub delay: Option<Duration>,
    pub fault: Option<Fault>,
}

/// The error a fault ends the request with: the connection is closed and
/// nothing else is written.
pub fn fault_error() -> Box<Error> {
    Error::explain(ErrorType::Custom("echo fault"), "a fault was injected")
}

pub fn is_fault(e: &Error) -> bool {
    matches!(e.etype(), ErrorType::Custom("echo fault"))
}

fn delay(d: Option<Delay>) -> Option<Duration> {
    let d = d?;
    let ms = if d.min_ms == d.max_ms {
        d.min_ms
    } else {
        fastrand::u64(d.min_ms..=d.max_ms)
    };
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// The answer of endpoint `e` to the request.
pub fn answer(
    e: &Endpoint,
    params: Vec<(String, String)>,
    req: &RequestHeader,
    facts: &Facts<'_>,
) -> Answer {
    let canned = match &e.action {
        Action::Proxy(u) => return Answer::Proxy(u.clone()),
        Action::Respond(c) => c,
    };
    let mut header = ResponseHeader::clone(&canned.header);
    let body = match &e.template {
        None => canned.body.clone(),
        Some(t) => match t.render(&request_view(req, facts, params)) {
            Ok(text) => {
                if header.headers.contains_key(http::header::CONTENT_LENGTH) {
                    let _ = header.insert_header("Content-Length", text.len().to_string());
                }
                Bytes::from(text)
            }
            Err(why) => {
                tracing::warn!(endpoint = %e.id, error = %why, "template failed");
                let body = crate::admin::error_document(
                    500,
                    "template_error",
                    &format!("the template of endpoint `{}` failed: {why}", e.id),
                    None,
                );
                header = ResponseHeader::build(500, Some(2)).unwrap_or(header);
                let _ = header.insert_header("Content-Type", crate::admin::JSONAPI);
                let _ = header.insert_header("Content-Length", body.len().to_string());
                return Answer::Respond(Response {
                    header,
                    body,
                    delay: None,
                    fault: None,
                });
            }
        },
    };
    Answer::Respond(Response {
        header,
        body,
        delay: delay(e.delay),
        fault: e.fault,
    })
}

/// What a template sees of the request.
fn request_view(
    req: &RequestHeader,
    facts: &Facts<'_>,
    params: Vec<(String, String)>,
) -> RequestView {
    let mut view = RequestView {
        method: req.method.to_string(),
        path: req.uri.path().to_string(),
        params: params.into_iter().collect(),
        ..RequestView::default()
    };
    for (k, v) in facts.query_pairs() {
        view.query.entry(k.clone()).or_insert_with(|| v.clone());
    }
    for (k, v) in &req.headers {
        if let Ok(v) = v.to_str() {
            view.headers
                .entry(k.as_str().to_string())
                .or_insert_with(|| v.to_string());
        }
    }
    for (k, v) in facts.cookies() {
        view.cookies.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if let Some(b) = facts.body_bytes() {
        view.body = String::from_utf8_lossy(b).into_owned();
    }
    view.json = facts.json().cloned();
    view
}

/// Reads the request body for body conditions: only a body that declares a
/// `Content-Length` within `limit`. It stays buffered, so a request that
/// falls through to an upstream is passed on whole; a larger body is not read.
pub async fn read_match_body(session: &mut Session, limit: usize) -> Result<Body> {
    let req = session.req_header();
    let declared = req
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = req.headers.contains_key(http::header::TRANSFER_ENCODING);
    match declared {
        Some(n) if n > limit => return Ok(Body::TooLarge),
        None if chunked => return Ok(Body::TooLarge),
        None => return Ok(Body::Read(Bytes::new())),
        Some(_) => {}
    }
    session.enable_retry_buffering();
    let mut buf = BytesMut::new();
    while let Some(chunk) = session.read_request_body().await? {
        buf.extend_from_slice(&chunk);
        if buf.len() > limit {
            return Ok(Body::TooLarge);
        }
    }
    Ok(Body::Read(buf.freeze()))
}

/// Writes a response from an endpoint, after its delay, with its fault.
pub async fn respond(session: &mut Session, r: Response, head: bool) -> Result<()> {
    if let Some(d) = r.delay {
        tokio::time::sleep(d).await;
    }
    match r.fault {
        None => super::write(session, r.header, r.body, head).await,
        Some(Fault::Empty) => Err(fault_error()),
        Some(Fault::Reset) => {
            reset_on_close(session);
            Err(fault_error())
        }
        Some(Fault::CloseAfterBytes(n)) => {
            session
                .write_response_header(Box::new(r.header), false)
                .await?;
            let n = usize::try_from(n).unwrap_or(usize::MAX).min(r.body.len());
            if n > 0 {
                session
                    .write_response_body(Some(r.body.slice(..n)), false)
                    .await?;
            }
            Err(fault_error())
        }
    }
}

/// Makes the connection's close a reset (RST): SO_LINGER with a zero timeout.
fn reset_on_close(session: &mut Session) {
    if let Some(stream) = session.as_downstream().stream() {
        reset_stream_on_close(stream);
    }
}

/// Makes a client connection's close a reset (RST), so that the client
/// cannot take a cut answer for a whole one.
pub(super) fn reset_stream_on_close(stream: &pingora::protocols::Stream) {
    let fd = stream.id();
    // SAFETY: `fd` is the descriptor of the connection `stream` owns, which
    // stays open for the whole borrow: the borrowed descriptor is only used
    // to set an option and is not kept.
    #[allow(unsafe_code)]
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    if let Err(e) = socket2::SockRef::from(&borrowed).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(error = %e, "could not arrange a reset");
    }
}
