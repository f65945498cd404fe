//! The Pingora side: one `ProxyHttp` serves mocks from `request_filter`,
//! routes admin requests to the admin API, and passes the rest through to an
//! upstream. The same type serves the mock listener and, when the admin API
//! has a listener of its own, that one.

pub(crate) mod fast;
mod guard;
pub(crate) mod mock;
mod passthrough;
pub(crate) mod relay;

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
use crate::journal::{Entry, Outcome};
use crate::router::matcher::{Body, Facts};
use crate::router::{Gateway, Lookup};

pub use fast::MockApp;
pub use guard::Limited;

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
    match_body_limit: usize,
    journal_body_limit: usize,
    explain_404: bool,
    head_limits: crate::limits::HeadLimits,
    body_timeout: std::time::Duration,
}

/// Per-request state: where a pass-through goes.
#[derive(Default)]
pub struct Ctx {
    upstream: Option<Arc<Upstream>>,
    /// The endpoint injects a fault: end the connection without an answer.
    fault: bool,
    /// What the journal will keep of this request.
    record: Option<Record>,
}

/// A journal entry in the making.
struct Record {
    endpoint: Option<Arc<str>>,
    outcome: Outcome,
    body: BytesMut,
    body_len: u64,
    /// The whole body was seen (read for matching); nothing more to take.
    body_done: bool,
}

impl Record {
    fn new(endpoint: Option<Arc<str>>, outcome: Outcome) -> Record {
        Record {
            endpoint,
            outcome,
            body: BytesMut::new(),
            body_len: 0,
            body_done: false,
        }
    }

    fn take(&mut self, chunk: &[u8], limit: usize) {
        self.body_len += chunk.len() as u64;
        let room = limit.saturating_sub(self.body.len());
        self.body.extend_from_slice(&chunk[..room.min(chunk.len())]);
    }

    fn into_entry(self, req: &pingora::http::RequestHeader, status: u16) -> Entry {
        Entry {
            seq: 0,
            at_ms: crate::journal::now_ms(),
            method: req.method.to_string(),
            path: req.uri.path().to_string(),
            query: req.uri.query().map(str::to_string),
            headers: req
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: self.body.freeze(),
            body_len: Some(self.body_len),
            endpoint: self.endpoint,
            outcome: self.outcome,
            status,
        }
    }
}

impl EchoProxy {
    pub fn new(gw: Arc<Gateway>, role: Role) -> EchoProxy {
        let keepalive_secs = gw.config().server.keepalive_timeout.as_secs();
        let match_body_limit = gw.config().server.match_body_limit;
        let journal_body_limit = gw.config().journal.max_body_bytes;
        let explain_404 = gw.config().journal.explain_404;
        let head_limits = crate::limits::HeadLimits::of(&gw.config().server);
        let body_timeout = gw.config().server.body_timeout;
        EchoProxy {
            gw,
            role,
            keepalive_secs,
            match_body_limit,
            journal_body_limit,
            explain_404,
            head_limits,
            body_timeout,
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
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let rates = &self.gw.admin_rates;
        if let Some(r) = admin::check_auth(cfg.admin.token.as_deref(), auth) {
            // Refused tokens count against their client's rate too.
            let r = match rates.client(client) {
                Some(limited) => {
                    self.gw.metrics.refused.admin_rate.inc();
                    limited
                }
                None => r,
            };
            return write_reply(session, r, head).await;
        }
        if let Some(r) = rates
            .client(client)
            .or_else(|| rates.token(auth.unwrap_or_default()))
        {
            self.gw.metrics.refused.admin_rate.inc();
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

    /// Looks the request up; `body` is the request body once read for matching.
    fn decide(&self, session: &Session, body: Option<Body>) -> Next {
        let req = session.req_header();
        let path = req.uri.path();
        let mut facts = Facts::new(req.uri.query(), &req.headers);
        let body_known = body.is_some();
        if let Some(b) = body {
            facts.set_body(b);
        }
        let router = self.gw.current();
        match router.find(&req.method, path, &facts) {
            Lookup::Hit(e, params) => {
                e.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if let Some((rate, secs)) = e.rate.as_ref().and_then(|r| Some((r, r.over(&e.id)?)))
                {
                    self.gw.metrics.refused.endpoint_rate.inc();
                    return Next::Refuse(rate.refusal(&e.id, secs), e.id.clone());
                }
                match mock::answer(e, params, req, &facts) {
                    mock::Answer::Respond(r) => Next::Respond(r, e.id.clone()),
                    mock::Answer::Proxy(u) => Next::Proxy(u, Some(e.id.clone())),
                }
            }
            Lookup::NeedBody if !body_known => Next::ReadBody,
            Lookup::NeedBody | Lookup::Miss => {
                match (Internal::of(&req.method, path), &router.fallback) {
                    (Some(h), _) => Next::Internal(h),
                    (None, Some(u)) => Next::Proxy(u.clone(), None),
                    (None, None) if self.explain_404 => {
                        let misses = router.explain(&req.method, path, &facts);
                        Next::NotFound(admin::page_not_found_explained(path, &misses))
                    }
                    (None, None) => Next::NotFound(admin::page_not_found(path)),
                }
            }
        }
    }

    /// Reads the rest of the request body, keeping what the journal keeps.
    async fn consume_body(&self, session: &mut Session, ctx: &mut Ctx) -> Result<()> {
        let Some(record) = ctx.record.as_mut() else {
            return session.as_downstream_mut().drain_request_body().await;
        };
        while let Some(chunk) = session.read_request_body().await? {
            record.take(&chunk, self.journal_body_limit);
        }
        Ok(())
    }

    fn admin_shared(&self) -> bool {
        self.role == (Role::Mock { admin: true })
    }

    /// The admin listener, or an admin path on the shared one: the admin API,
    /// then health, then the Echo 404.
    async fn serve_admin_listener(
        &self,
        session: &mut Session,
        path: &str,
        head: bool,
    ) -> Result<()> {
        if admin::is_admin_path(path) {
            return self.serve_admin(session, path).await;
        }
        if let Some(h) = Internal::of(&session.req_header().method, path) {
            return self.serve_internal(session, h, head).await;
        }
        session.as_downstream_mut().drain_request_body().await?;
        write_reply(session, admin::page_not_found(path), head).await
    }

    /// The gateway's own paths: health, metrics, status, export.
    async fn serve_internal(
        &self,
        session: &mut Session,
        what: Internal,
        head: bool,
    ) -> Result<()> {
        if what.needs_token() {
            let auth = session
                .req_header()
                .headers
                .get(http::header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            if let Some(r) = admin::check_auth(self.gw.config().admin.token.as_deref(), auth) {
                return write_reply(session, r, head).await;
            }
        }
        let (status, content_type, body) = match what {
            Internal::Live => (200, CONTENT_TYPE_JSON, r#"{"status":"ok"}"#.to_string()),
            Internal::Ready => {
                let router_generation = self.gw.current().generation;
                if session.is_process_shutting_down() {
                    (
                        503,
                        CONTENT_TYPE_JSON,
                        r#"{"status":"shutting down"}"#.to_string(),
                    )
                } else {
                    (
                        200,
                        CONTENT_TYPE_JSON,
                        format!(r#"{{"status":"ready","generation":{router_generation}}}"#),
                    )
                }
            }
            Internal::Metrics => (200, "text/plain; version=0.0.4", self.gw.metrics.render()),
            Internal::Status => (
                200,
                CONTENT_TYPE_JSON,
                admin::status::document(&self.gw).to_string(),
            ),
            Internal::Export => (
                200,
                "application/toml",
                admin::export::runtime_toml(self.gw.current().layers.runtime.iter()),
            ),
            Internal::Requests(count) => {
                let req = session.req_header();
                let (status, doc) =
                    admin::journal::handle(&self.gw, &req.method, count, req.uri.query());
                session.as_downstream_mut().drain_request_body().await?;
                if status == 204 {
                    let reply = Reply::no_content();
                    return write_reply(session, reply, head).await;
                }
                let body = doc.to_string();
                let header = json_header(status, admin::JSONAPI, body.len(), &[]);
                return write(session, header, Bytes::from(body), head).await;
            }
        };
        session.as_downstream_mut().drain_request_body().await?;
        let header = json_header(status, content_type, body.len(), &[]);
        write(session, header, Bytes::from(body), head).await
    }
}

/// What the mock listener does with a request.
// Short-lived, on the stack: boxing would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
enum Next {
    Respond(mock::Response, Arc<str>),
    /// With the endpoint that passes it on (`None`: the fallback).
    Proxy(Arc<Upstream>, Option<Arc<str>>),
    Internal(Internal),
    NotFound(Reply),
    /// The endpoint refuses the request (its declared rate).
    Refuse(Reply, Arc<str>),
    /// An endpoint's body conditions need the body.
    ReadBody,
}

/// The gateway's own paths. On the mock listener they answer only when no
/// mock matches (a mock on `/healthz` wins); on the admin listener, always.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Internal {
    Live,
    Ready,
    Metrics,
    Status,
    Export,
    /// The request journal; `true`: only the count.
    Requests(bool),
}

impl Internal {
    fn of(method: &Method, path: &str) -> Option<Internal> {
        match path {
            "/_echo/requests" => return Some(Internal::Requests(false)),
            "/_echo/requests/count" => return Some(Internal::Requests(true)),
            _ => {}
        }
        if method != Method::GET && method != Method::HEAD {
            return None;
        }
        match path {
            "/healthz" => Some(Internal::Live),
            "/readyz" => Some(Internal::Ready),
            "/metrics" => Some(Internal::Metrics),
            "/_echo/status" => Some(Internal::Status),
            "/_echo/export" => Some(Internal::Export),
            _ => None,
        }
    }

    /// Status and export describe the config: they need the admin token.
    fn needs_token(self) -> bool {
        matches!(
            self,
            Internal::Status | Internal::Export | Internal::Requests(_)
        )
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
        // Idle keep-alive connections get our timeout; a client that asked to
        // close (or an HTTP/1.0 client that did not ask to keep) is left so.
        if session.get_keepalive().is_some() {
            session.set_keepalive(Some(self.keepalive_secs));
        }
        // A request sent before the previous answer (HTTP/1.1 pipelining) is
        // answered in turn, as nginx does, not dropped with the connection.
        if let pingora::protocols::http::ServerSession::H1(h1) = session.as_downstream_mut() {
            h1.set_pipelining_enabled(true);
        }
        let req = session.req_header();
        let head = req.method == Method::HEAD;
        if let Some(r) = self.head_limits.check_header(req) {
            self.gw.metrics.refused.header.inc();
            write_reply(session, r.reply(), head).await?;
            return Ok(true);
        }
        // The header has arrived: from here a read waits for body bytes.
        session
            .as_downstream_mut()
            .set_read_timeout(Some(self.body_timeout));
        let req = session.req_header();
        let path = req.uri.path();
        if self.role == Role::Admin || (self.admin_shared() && admin::is_admin_path(path)) {
            let path = path.to_string();
            self.serve_admin_listener(session, &path, head).await?;
            return Ok(true);
        }

        // Decide while the request is borrowed; answer after.
        let mut next = self.decide(session, None);
        let mut read = None;
        if matches!(next, Next::ReadBody) {
            let body = mock::read_match_body(session, self.match_body_limit).await?;
            read = Some(body.clone());
            next = self.decide(session, Some(body));
        }
        let journaled = self.gw.journal.is_some() && !matches!(next, Next::Internal(_));
        if journaled {
            let (endpoint, outcome) = match &next {
                Next::Respond(_, id) | Next::Refuse(_, id) => (Some(id.clone()), Outcome::Mocked),
                Next::Proxy(_, id) => (id.clone(), Outcome::Proxied),
                _ => (None, Outcome::Unmatched),
            };
            let mut record = Record::new(endpoint, outcome);
            match read {
                Some(Body::Read(b)) => {
                    record.take(&b, self.journal_body_limit);
                    record.body_done = true;
                }
                Some(Body::TooLarge) => record.body_done = false,
                _ => {}
            }
            ctx.record = Some(record);
        }
        match next {
            Next::Respond(r, _) => {
                self.gw.metrics.requests_mocked.inc();
                if r.fault.is_some() {
                    ctx.fault = true;
                }
                self.consume_body(session, ctx).await?;
                mock::respond(session, r, head).await?;
                Ok(true)
            }
            Next::Proxy(u, _) => {
                self.gw.metrics.requests_proxied.inc();
                ctx.upstream = Some(u);
                Ok(false)
            }
            Next::Internal(h) => {
                self.gw.metrics.requests_other.inc();
                self.serve_internal(session, h, head).await?;
                Ok(true)
            }
            Next::Refuse(reply, _) => {
                self.gw.metrics.requests_mocked.inc();
                self.consume_body(session, ctx).await?;
                write_reply(session, reply, head).await?;
                Ok(true)
            }
            Next::NotFound(reply) => {
                self.gw.metrics.requests_other.inc();
                self.consume_body(session, ctx).await?;
                write_reply(session, reply, head).await?;
                Ok(true)
            }
            // `decide` with a body never asks for it again.
            Next::ReadBody => Ok(false),
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let (Some(record), Some(chunk)) = (ctx.record.as_mut(), body.as_ref()) {
            if !record.body_done {
                record.take(chunk, self.journal_body_limit);
            }
        }
        Ok(())
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let (Some(journal), Some(record)) = (self.gw.journal.as_ref(), ctx.record.take()) else {
            return;
        };
        let req = session.req_header();
        let status = session
            .as_downstream()
            .response_written()
            .map_or(0, |h| h.status.as_u16());
        journal.record(record.into_entry(req, status));
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
        if ctx.fault || mock::is_fault(e) {
            return FailToProxy {
                error_code: 0,
                can_reuse_downstream: false,
            };
        }
        let head = session.req_header().method == Method::HEAD;
        let (status, body) = passthrough::error_response(ctx.upstream.as_deref(), e);
        // A response already begun (an upstream that failed in the middle of
        // its body) cannot become an error response: written after it, the
        // error would be taken for the rest of the body. The connection is
        // closed instead, which cuts the body short.
        let begun = session
            .response_written()
            .is_some_and(|h| !h.status.is_informational() || h.status == 101);
        if status > 0 && !begun {
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

    fn suppress_error_log(&self, _session: &Session, ctx: &Ctx, e: &Error) -> bool {
        // A client that goes away is not the gateway's error; a fault is asked for.
        ctx.fault || mock::is_fault(e) || matches!(e.esource(), ErrorSource::Downstream)
    }
}

/// A response header with a JSON body's type and length, plus `extra`.
fn json_header(
    status: u16,
    content_type: &str,
    len: usize,
    extra: &[(&'static str, String)],
) -> ResponseHeader {
    // Room for the `Date` and `Connection` the session adds.
    let mut h = ResponseHeader::build(status, Some(extra.len() + 4))
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
