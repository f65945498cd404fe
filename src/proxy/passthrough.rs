//! Pass-through to a named upstream: the peer, the request as it goes out,
//! and the JSON error a client gets when the upstream fails (502, 504).

use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::upstreams::peer::HttpPeer;

use crate::admin::error_document;
use crate::config::Upstream;

/// The peer for an upstream; the host name is resolved here, without blocking.
pub async fn peer(u: &Upstream) -> Result<Box<HttpPeer>> {
    let addr = match tokio::net::lookup_host((u.host.as_str(), u.port)).await {
        Ok(mut addrs) => addrs.next(),
        Err(_) => None,
    };
    let Some(addr) = addr else {
        return Error::e_explain(
            ErrorType::ConnectNoRoute,
            format!("cannot resolve the upstream host `{}`", u.host),
        )
        .map_err(|mut e| {
            e.esource = ErrorSource::Upstream;
            e
        });
    };
    let mut peer = HttpPeer::new(addr, u.tls, u.host.clone());
    peer.options.connection_timeout = Some(u.connect_timeout);
    peer.options.total_connection_timeout = Some(u.connect_timeout * 2);
    peer.options.read_timeout = Some(u.read_timeout);
    peer.options.write_timeout = Some(u.read_timeout);
    peer.options.verify_cert = u.verify_tls;
    peer.options.verify_hostname = u.verify_tls;
    Ok(Box::new(peer))
}

/// The `Host` header becomes the upstream's authority, unless the upstream
/// keeps the client's (`preserve_host`).
pub fn rewrite_request(u: &Upstream, req: &mut RequestHeader) -> Result<()> {
    if !u.preserve_host {
        req.insert_header(http::header::HOST, u.authority.as_str())?;
    }
    Ok(())
}

/// Status and JSON body for a failed pass-through; status 0 when the client
/// is gone and nothing can be sent.
pub fn error_response(u: Option<&Upstream>, e: &Error) -> (u16, Bytes) {
    use ErrorType::*;
    let name = u.map_or_else(
        || "(none)".to_string(),
        |u| format!("`{}` ({})", u.name, u.url),
    );
    let timeout_ms = |d: Option<std::time::Duration>| d.map_or(0, |d| d.as_millis());
    let (status, code, detail) = match e.etype() {
        HTTPStatus(code) => (*code, "bad_gateway", format!("upstream {name} failed")),
        ConnectTimedout => (
            504,
            "gateway_timeout",
            format!(
                "upstream {name} did not accept the connection within {} ms",
                timeout_ms(u.map(|u| u.connect_timeout))
            ),
        ),
        ReadTimedout | WriteTimedout => (
            504,
            "gateway_timeout",
            format!(
                "upstream {name} did not answer within {} ms",
                timeout_ms(u.map(|u| u.read_timeout))
            ),
        ),
        ConnectRefused => (
            502,
            "bad_gateway",
            format!("upstream {name} refused the connection"),
        ),
        ConnectNoRoute => (
            502,
            "bad_gateway",
            format!("upstream {name} cannot be reached: {e}"),
        ),
        _ => match e.esource() {
            ErrorSource::Upstream => (
                502,
                "bad_gateway",
                format!("upstream {name} failed: {}", e.etype().as_str()),
            ),
            ErrorSource::Downstream => return (0, Bytes::new()),
            _ => (
                500,
                "internal_error",
                "the request could not be passed through".to_string(),
            ),
        },
    };
    if status >= 500 {
        tracing::warn!(upstream = %name, status, error = %e, "pass-through failed");
    }
    (status, error_document(status, code, &detail, None))
}
