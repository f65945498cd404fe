//! The Pingora side: one `ProxyHttp` serves mocks from `request_filter`,
//! routes admin requests to the admin API, and passes the rest through to an
//! upstream. The same type serves the mock listener and, when the admin API
//! has a listener of its own, that one.

mod passthrough;

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use http::Method;
use pingora::http::ResponseHeader;
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::protocols::http::error_resp;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::upstreams::peer::HttpPeer;

use crate::admin::{self, Reply, RequestInfo};
use crate::config::Upstream;
use crate::router::{Action, Gateway};

const CONTENT_TYPE_JSON: &str = "application/json";

/// Which surface a listener is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Mocks; with `admin`, also the admin API at `/endpoints` (the Echo model).
    Mock { admin: bool },
    /// The admin API on a listener of its own.
    Admin,
}

pub struct EchoProxy {
    gw: Arc<Gateway>,
    role: Role,
    keepalive_secs: u64,
}

/// Per-request state: where a pass-through goes.
#[derive(Default)]
pub struct Ctx {
    upstream: Option<Arc<Upstream>>,
}

impl EchoProxy {
    pub fn new(gw: Arc<Gateway>, role: Role) -> EchoProxy {
        let keepalive_secs = gw.config().server.keepalive_timeout.as_secs();
        EchoProxy {
            gw,
            role,
            keepalive_secs,
        }
    }

    async fn serve_admin(&self, session: &mut Session, path: &str) -> Result<()> {
        let cfg = self.gw.config();
        let req = session.req_header();
        let head = req.method == Method::HEAD;
        let auth = req
            .headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes());
        if let Some(r) = admin::check_auth(cfg.admin.token.as_deref(), auth) {
            return write_reply(session, r, head).await;
        }
        let route = admin::route(&req.method, path);
        let host = req
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()))
            .map(str::to_string);
        let mut body = BytesMut::new();
        if route.takes_body() {
            let ct = req
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.as_bytes());
            if let Some(mut r) = admin::check_media_type(ct) {
                r.close = true;
                return write_reply(session, r, head).await;
            }
            let limit = cfg.admin.max_body_bytes;
            let declared = req
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if declared.is_some_and(|n| n > limit as u64) {
                return write_reply(session, admin::too_large(limit), head).await;
            }
            while let Some(chunk) = session.read_request_body().await? {
                if body.len() + chunk.len() > limit {
                    return write_reply(session, admin::too_large(limit), head).await;
                }
                body.extend_from_slice(&chunk);
            }
        } else {
            session.as_downstream_mut().drain_request_body().await?;
        }
        let info = RequestInfo {
            host: host.as_deref(),
        };
        let reply = admin::handle(&self.gw, route, &body, &info).await;
        write_reply(session, reply, head).await
    }

    /// `/healthz` and `/readyz`: GET or HEAD, after the mocks had their chance.
    async fn serve_health(&self, session: &mut Session, path: &str, head: bool) -> Result<bool> {
        let (status, body) = match path {
            "/healthz" => (200, r#"{"status":"ok"}"#.to_string()),
            "/readyz" if session.is_process_shutting_down() => {
                (503, r#"{"status":"shutting down"}"#.to_string())
            }
            "/readyz" => (
                200,
                format!(
                    r#"{{"status":"ready","generation":{}}}"#,
                    self.gw.current().generation
                ),
            ),
            _ => return Ok(false),
        };
        session.as_downstream_mut().drain_request_body().await?;
        let h = json_header(status, CONTENT_TYPE_JSON, body.len(), &[]);
        write(session, h, Bytes::from(body), head).await?;
        Ok(true)
    }

    async fn not_found(&self, session: &mut Session, path: &str, head: bool) -> Result<bool> {
        session.as_downstream_mut().drain_request_body().await?;
        write_reply(session, admin::page_not_found(path), head).await?;
        Ok(true)
    }
}

#[async_trait]
impl ProxyHttp for EchoProxy {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx::default()
    }

    /// Mocks need none of the default modules (response compression).
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        session.set_keepalive(Some(self.keepalive_secs));
        let req = session.req_header();
        let head = req.method == Method::HEAD;
        // The path is borrowed from the session, which is written to below.
        let path = req.uri.path().to_string();

        if self.role == Role::Admin {
            if admin::is_admin_path(&path) {
                self.serve_admin(session, &path).await?;
                return Ok(true);
            }
            if (req.method == Method::GET || head)
                && self.serve_health(session, &path, head).await?
            {
                return Ok(true);
            }
            return self.not_found(session, &path, head).await;
        }
        if self.role == (Role::Mock { admin: true }) && admin::is_admin_path(&path) {
            self.serve_admin(session, &path).await?;
            return Ok(true);
        }

        let router = self.gw.current();
        match router.lookup_method(&req.method, &path).map(|e| &e.action) {
            Some(Action::Respond(canned)) => {
                let header = canned.header.clone();
                let body = canned.body.clone();
                drop(router);
                session.as_downstream_mut().drain_request_body().await?;
                write(session, header, body, head).await?;
                Ok(true)
            }
            Some(Action::Proxy(upstream)) => {
                ctx.upstream = Some(upstream.clone());
                Ok(false)
            }
            None => {
                let fallback = router.fallback.clone();
                drop(router);
                let method_ok = req.method == Method::GET || head;
                if method_ok && self.serve_health(session, &path, head).await? {
                    return Ok(true);
                }
                match fallback {
                    Some(u) => {
                        ctx.upstream = Some(u);
                        Ok(false)
                    }
                    None => self.not_found(session, &path, head).await,
                }
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let Some(u) = ctx.upstream.as_ref() else {
            return Error::e_explain(
                ErrorType::InternalError,
                "no upstream chosen for the request",
            );
        };
        passthrough::peer(u).await
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(u) = ctx.upstream.as_ref() {
            passthrough::rewrite_request(u, upstream_request)?;
        }
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        _ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // A fresh connection that failed is reported, not retried in a loop.
        e.set_retry(false);
        e
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let head = session.req_header().method == Method::HEAD;
        let (status, body) = passthrough::error_response(ctx.upstream.as_deref(), e);
        if status > 0 {
            let h = json_header(status, admin::JSONAPI, body.len(), &[]);
            if let Err(err) = write(session, h, body, head).await {
                tracing::debug!(error = %err, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Ctx, e: &Error) -> bool {
        // A client that goes away is not the gateway's error.
        matches!(e.esource(), ErrorSource::Downstream)
    }
}

/// A response header with a JSON body's type and length, plus `extra`.
fn json_header(
    status: u16,
    content_type: &str,
    len: usize,
    extra: &[(&'static str, String)],
) -> ResponseHeader {
    let mut h = ResponseHeader::build(status, Some(extra.len() + 2))
        .unwrap_or_else(|_| error_resp::gen_error_response(500));
    let _ = h.insert_header("Content-Type", content_type);
    let _ = h.insert_header("Content-Length", len.to_string());
    for (k, v) in extra {
        let _ = h.append_header(*k, v.as_str());
    }
    h
}

async fn write_reply(session: &mut Session, r: Reply, head: bool) -> Result<()> {
    if r.close {
        session.set_keepalive(None);
    }
    let h = if r.status == 204 {
        let mut h = ResponseHeader::build(204, Some(r.headers.len()))
            .unwrap_or_else(|_| error_resp::gen_error_response(500));
        for (k, v) in &r.headers {
            let _ = h.append_header(*k, v.as_str());
        }
        h
    } else {
        json_header(r.status, admin::JSONAPI, r.body.len(), &r.headers)
    };
    write(session, h, r.body, head).await
}

/// Writes a whole response; a HEAD request gets the header only.
async fn write(
    session: &mut Session,
    header: ResponseHeader,
    body: Bytes,
    head: bool,
) -> Result<()> {
    let no_body = head || body.is_empty();
    session
        .write_response_header(Box::new(header), no_body)
        .await?;
    if !no_body {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}
