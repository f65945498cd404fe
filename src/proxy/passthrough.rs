//! Pass-through to a named upstream: the peer, the request as it goes out,
//! and the JSON error a client gets when the upstream fails (502, 504).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::upstreams::peer::HttpPeer;

use crate::admin::error_document;
use crate::config::Upstream;

/// The peer for an upstream; the host name is resolved here, without blocking.
pub async fn peer(u: &Upstream) -> Result<Box<HttpPeer>> {
    let Some(addr) = resolve(&u.host, u.port).await else {
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

/// How long a looked-up address serves before the name is looked up again
/// (Envoy's default DNS refresh rate).
const DNS_TTL: Duration = Duration::from_secs(5);

/// Host name -> (port, address, when it was looked up).
type Resolved = HashMap<String, (u16, SocketAddr, Instant)>;

fn resolved() -> &'static Mutex<Resolved> {
    static RESOLVED: OnceLock<Mutex<Resolved>> = OnceLock::new();
    RESOLVED.get_or_init(Mutex::default)
}

/// The address of `host`: an IP literal as it is; a name from a lookup at
/// most `DNS_TTL` old. A lookup runs on the blocking pool, so not on every
/// request; when it fails, the last address known serves on (as Envoy keeps
/// its last hosts) rather than failing every request.
pub(super) async fn resolve(host: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    let known = resolved()
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(host)
        .filter(|(p, ..)| *p == port)
        .map(|&(_, addr, at)| (addr, at));
    if let Some((addr, at)) = known {
        if at.elapsed() < DNS_TTL {
            return Some(addr);
        }
    }
    let looked_up = match tokio::net::lookup_host((host, port)).await {
        Ok(mut addrs) => addrs.next(),
        Err(e) => {
            tracing::warn!(host, error = %e, "upstream host lookup failed");
            None
        }
    };
    match looked_up {
        Some(addr) => {
            resolved()
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(host.to_string(), (port, addr, Instant::now()));
            Some(addr)
        }
        None => known.map(|(addr, _)| addr),
    }
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
    // A read that timed out with no upstream chosen, or on the client's
    // side, waited for the request body.
    let client_side = u.is_none() || matches!(e.esource(), ErrorSource::Downstream);
    if client_side && matches!(e.etype(), ReadTimedout) {
        let detail = "the request body stopped arriving (server.body_timeout_secs)";
        return (408, error_document(408, "request_timeout", detail, None));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn remember(host: &str, port: u16, addr: &str, age: Duration) {
        let at = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        resolved()
            .lock()
            .unwrap()
            .insert(host.into(), (port, addr.parse().unwrap(), at));
    }

    #[tokio::test]
    async fn ip_literals_need_no_lookup() {
        assert_eq!(
            resolve("127.0.0.1", 81).await,
            Some("127.0.0.1:81".parse().unwrap())
        );
        assert_eq!(resolve("::1", 82).await, Some("[::1]:82".parse().unwrap()));
    }

    #[tokio::test]
    async fn a_fresh_address_serves_without_a_lookup() {
        // `.invalid` never resolves (RFC 2606): an answer comes from the cache.
        remember("fresh.echo.invalid", 80, "10.1.2.3:80", Duration::ZERO);
        assert_eq!(
            resolve("fresh.echo.invalid", 80).await,
            Some("10.1.2.3:80".parse().unwrap())
        );
        // Another port is another entry: looked up, and not found.
        assert_eq!(resolve("fresh.echo.invalid", 81).await, None);
    }

    #[tokio::test]
    async fn a_stale_address_is_looked_up_again_and_kept_if_the_lookup_fails() {
        remember("stale.echo.invalid", 80, "10.9.9.9:80", DNS_TTL * 2);
        assert_eq!(
            resolve("stale.echo.invalid", 80).await,
            Some("10.9.9.9:80".parse().unwrap())
        );
        assert_eq!(resolve("never.echo.invalid", 80).await, None);
    }

    #[tokio::test]
    async fn a_name_is_looked_up_and_remembered() {
        let addr = resolve("localhost", 8099)
            .await
            .expect("localhost resolves");
        assert!(addr.ip().is_loopback() && addr.port() == 8099);
        let (_, cached, _) = resolved().lock().unwrap()["localhost"];
        assert_eq!(cached, addr);
    }
}
