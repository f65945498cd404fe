//! Fuzz targets: each takes arbitrary bytes as one kind of input from outside
//! the gateway and runs them through the code that parses and acts on it.
//! None may panic or hang, whatever the bytes; where there is something to
//! check (error positions, a consistent answer, a response head a client can
//! read), a broken rule panics.
//!
//! The cargo-fuzz targets in `fuzz/` and the property tests in
//! `tests/fuzz_properties.rs` call these same functions (see
//! `fuzz/README.md`).

use std::collections::HashSet;
use std::path::Path;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::http::RequestHeader;
use tokio::io::{AsyncRead, ReadBuf};

use crate::config::endpoint::SchemaContext;
use crate::config::{Config, EndpointSpec};
use crate::proxy::{fast, mock, relay};
use crate::router::matcher::{Body, Facts};
use crate::router::{ByPath, Layers, Lookup, Router};
use crate::template::{BodyTemplate, RequestView};

/// The targets, by the names `fuzz/` gives them.
pub const TARGETS: &[&str] = &[
    "config",
    "admin_doc",
    "template",
    "request",
    "upstream_response",
];

/// Runs the target called `name` on `data`.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "config" => config(data),
        "admin_doc" => admin_doc(data),
        "template" => template(data),
        "request" => request(data),
        "upstream_response" => upstream_response(data),
        _ => panic!("no fuzz target `{name}`"),
    }
}

/// The directory config files are read as if from: the repository's
/// `config/`, so that `body_file` and `template_file` name real files.
fn config_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config"))
}

/// The router a checked configuration compiles to (as the gateway builds it).
fn compile(cfg: Config, runtime: Vec<EndpointSpec>) -> Router {
    let (upstreams, fallback) = crate::router::upstream_table(&cfg);
    let layers = Layers::numbered(cfg.endpoints, runtime);
    Router::compile(layers, upstreams, fallback, 1).0
}

/// Asks `router` what answers `method` on `target` with `headers` and
/// `body`, as the gateway does: the fast path's look-up by path first, then
/// the full look-up with the conditions (the body read when asked for), and
/// the answer of the endpoint found, or the explained 404.
fn ask(router: &Router, method: &str, target: &str, headers: &[(&str, &[u8])], body: &[u8]) {
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let by_path = fast::split_target(target).map(|(path, _)| router.find_by_path(&method, path));
    let Ok(mut req) = RequestHeader::build(method.clone(), target.as_bytes(), None) else {
        return;
    };
    for (name, value) in headers {
        let _ = req.append_header(name.to_string(), *value);
    }
    let path = req.uri.path();
    let mut facts = Facts::new(req.uri.query(), &req.headers);
    let mut found = router.find(&req.method, path, &facts);
    if matches!(found, Lookup::NeedBody) {
        facts.set_body(Body::Read(Bytes::copy_from_slice(body)));
        found = router.find(&req.method, path, &facts);
        assert!(
            !matches!(found, Lookup::NeedBody),
            "the body was read, and still needed"
        );
    }
    match (&by_path, &found) {
        (Some(ByPath::Hit(a)), Lookup::Hit(b, _)) => assert_eq!(
            a.id, b.id,
            "the fast path and the full look-up disagree on {method} {target}"
        ),
        (Some(ByPath::Hit(a)), _) => panic!(
            "the fast path answers {method} {target} with `{}`, the full look-up with nothing",
            a.id
        ),
        (Some(ByPath::Miss), Lookup::Hit(b, _)) => panic!(
            "the fast path finds nothing for {method} {target}, the full look-up `{}`",
            b.id
        ),
        _ => {}
    }
    match found {
        Lookup::Hit(e, params) => {
            if let mock::Answer::Respond(r) = mock::answer(e, params, &req, &facts) {
                if let Some(n) = r.header.headers.get(http::header::CONTENT_LENGTH) {
                    if e.template.is_some() {
                        assert_eq!(n.as_bytes(), r.body.len().to_string().as_bytes());
                    }
                }
            }
        }
        _ => {
            let _ = router.explain(&req.method, path, &facts);
        }
    }
}

/// Arbitrary bytes as a TOML config file: loaded, checked and compiled into
/// a router, which then answers a request on each exact path. An error
/// names the file, a line and a column that exist.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::config::load_str("fuzz.toml", text, config_dir()) {
        Ok(cfg) => {
            let _ = crate::config::summary(&cfg);
            let paths: Vec<(String, String)> = cfg
                .endpoints
                .iter()
                .filter_map(|e| match &e.spec.path {
                    crate::config::PathSpec::Exact(p) => {
                        Some((e.spec.verb.as_str().to_string(), p.as_str().to_string()))
                    }
                    _ => None,
                })
                .take(16)
                .collect();
            let router = compile(cfg, Vec::new());
            for (verb, path) in paths {
                let verb = if verb == "ANY" { "GET" } else { &verb };
                ask(&router, verb, &path, &[], b"");
            }
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an error without an error");
            let lines: Vec<&str> = text.split('\n').collect();
            for e in &errors.0 {
                assert_eq!(e.file, "fuzz.toml", "{e}");
                assert!(e.line >= 1 && e.line <= lines.len(), "{e}: no such line");
                let width = lines[e.line - 1].chars().count();
                assert!(e.col >= 1 && e.col <= width + 1, "{e}: no such column");
                assert!(
                    e.to_string()
                        .starts_with(&format!("fuzz.toml:{}:{}: ", e.line, e.col)),
                    "{e}"
                );
            }
        }
    }
}

/// Upstream names the admin documents may use.
fn admin_upstreams() -> &'static HashSet<String> {
    static U: OnceLock<HashSet<String>> = OnceLock::new();
    U.get_or_init(|| ["backend".to_string()].into_iter().collect())
}

/// The endpoint a PATCH document changes.
const PATCHED: &[u8] = br#"{"data": {"type": "endpoints", "attributes": {
    "verb": "POST", "path": "/orders/{id}", "priority": 3,
    "match": {"query": {"a": "1"}, "headers": {"X-T": {"regex": "^t"}},
              "cookies": {"s": {"present": true}}, "body": {"json_subset": {"k": [1]}}},
    "response": {"code": 201, "headers": {"Content-Type": "application/json"},
                 "template": "{{ request.params.id }}", "delay_ms": {"min": 1, "max": 2}}}}}"#;

/// An accepted endpoint: shown as the admin API shows it, submitted again,
/// it is accepted as the same endpoint; and it compiles into a router that
/// answers a request on its path.
fn accepted(spec: EndpointSpec, ctx: &SchemaContext<'_>) {
    let shown =
        serde_json::json!({"data": {"type": "endpoints", "attributes": spec.attributes_json()}});
    match crate::admin::new_endpoint(shown.to_string().as_bytes(), ctx) {
        Ok(again) => assert_eq!(again, spec, "{shown} is another endpoint"),
        Err(r) => panic!(
            "the endpoint as shown, {shown}, is refused: {}",
            String::from_utf8_lossy(&r.body)
        ),
    }
    let target = match &spec.path {
        crate::config::PathSpec::Exact(p) => Some(p.as_str().to_string()),
        _ => None,
    };
    let verb = match spec.verb.as_str() {
        "ANY" => "GET".to_string(),
        v => v.to_string(),
    };
    let router = compile(Config::default(), vec![spec]);
    if let Some(target) = target {
        ask(&router, &verb, &target, &[], b"");
    }
}

/// A refusal is a 4xx JSON:API error document.
fn refused(r: &crate::admin::Reply) {
    assert!((400..500).contains(&r.status), "status {}", r.status);
    let doc: serde_json::Value = match serde_json::from_slice(&r.body) {
        Ok(v) => v,
        Err(e) => panic!("the error document is not JSON: {e}"),
    };
    assert!(doc.get("errors").is_some_and(|e| e.is_array()), "{doc}");
}

/// Arbitrary bytes as the body of `POST /endpoints` and of
/// `PATCH /endpoints/1`: accepted or refused with a 4xx error document.
pub fn admin_doc(data: &[u8]) {
    let ctx = SchemaContext {
        reserve_admin_path: true,
        upstreams: admin_upstreams(),
        files: None,
    };
    match crate::admin::new_endpoint(data, &ctx) {
        Ok(spec) => accepted(spec, &ctx),
        Err(r) => refused(&r),
    }
    let Ok(existing) = crate::admin::new_endpoint(PATCHED, &ctx) else {
        panic!("the endpoint to patch is refused");
    };
    match crate::admin::parse_document(data) {
        Ok(doc) => match crate::admin::changed_endpoint(&doc, "1", &existing, &ctx) {
            Ok(spec) => accepted(spec, &ctx),
            Err(r) => refused(&r),
        },
        Err(r) => refused(&r),
    }
}

/// Arbitrary bytes as a template and a request body (split at the first
/// NUL): compiled, and rendered for a request.
pub fn template(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (source, body) = text.split_once('\0').unwrap_or((&text, ""));
    let Ok(t) = BodyTemplate::new(source) else {
        return;
    };
    let _ = t.reads_body();
    let mut view = RequestView {
        method: "POST".into(),
        path: "/items/7".into(),
        body: body.to_string(),
        json: serde_json::from_str(body).ok(),
        ..RequestView::default()
    };
    view.params.insert("id".into(), "7".into());
    view.query
        .insert("q".into(), body.chars().take(16).collect());
    view.headers.insert("x-tenant".into(), "acme".into());
    view.cookies.insert("session".into(), "abc".into());
    let _ = t.render(&view);
}

/// The router arbitrary requests are asked of: every kind of path and
/// condition, templates, an upstream.
const ROUTES: &str = r#"
[upstreams.backend]
url = "http://127.0.0.1:9"

[[endpoints]]
id = "plain"
verb = "GET"
path = "/plain"
response = { code = 200, headers = { "Content-Type" = "text/plain" }, body = "plain" }

[[endpoints]]
id = "any"
verb = "ANY"
path = "/any"
response = { code = 204 }

[[endpoints]]
id = "query"
verb = "GET"
path = "/items"
priority = 10
match.query = { status = "open", page = { regex = "^[1-9][0-9]*$" }, debug = { present = true }, off = { present = false } }
response = { code = 200, template = "{{ request.query.page }} {{ request.query | length }}" }

[[endpoints]]
id = "items"
verb = "GET"
path = "/items"
response = { code = 200, body = "items" }

[[endpoints]]
id = "headers"
verb = "GET"
path = "/account"
match.headers = { "X-Tenant" = "acme", "Accept" = { regex = "json" }, "Authorization" = { present = true } }
match.cookies = { session = { regex = "^[a-f0-9]{4,}$" }, beta = "1" }
response = { code = 200, template = '{"t": "{{ request.headers["x-tenant"] }}", "s": "{{ request.cookies.session }}"}' }

[[endpoints]]
id = "body-many"
verb = "POST"
path = "/orders"
priority = 30
match.body = [ { json_pointer = "/customer/blocked", equals = true }, { contains = "items" } ]
response = { code = 403, body = "blocked" }

[[endpoints]]
id = "body-json"
verb = "POST"
path = "/orders"
priority = 20
match.body = { json = { customer = { id = "test" }, items = [] } }
response = { code = 422, body = "empty" }

[[endpoints]]
id = "body-subset"
verb = "POST"
path = "/orders"
priority = 10
match.body = { json_subset = { items = [ { sku = "TEA-01" } ] } }
response = { code = 201, headers = { "Content-Type" = "application/json" }, template = '{"n": {{ request.json["items"] | length }}, "b": {{ request.body | length }}}' }

[[endpoints]]
id = "body-regex"
verb = "POST"
path = "/orders"
match.body = { regex = '"sku":\s*"[A-Z]{3}-[0-9]{2}"' }
response = { code = 409, body = "regex" }

[[endpoints]]
id = "by-id"
verb = "GET"
path = "/orders/{id}"
response = { code = 200, headers = { "Content-Type" = "application/json" }, template = '{"id": "{{ request.params.id }}", "t": "{{ now("%Y") }}", "r": {{ random_int(1, 3) }}}' }

[[endpoints]]
id = "by-id-tenant"
verb = "GET"
path = "/orders/{id}"
priority = 5
match.headers = { "X-Tenant" = "acme" }
response = { code = 200, template = "{{ request.params.id }} for {{ request.headers['x-tenant'] }}" }

[[endpoints]]
id = "rest"
verb = "ANY"
path = "/cache/{*key}"
response = { code = 202, template = "{{ request.params.key }} {{ request.method }}" }

[[endpoints]]
id = "regex"
verb = "GET"
path_regex = "^/v[0-9]+/(users|teams)/[^/]+$"
response = { code = 200, body = "regex path" }

[[endpoints]]
id = "proxied"
verb = "GET"
path = "/upstream/x"
response = { code = 200, proxy = "backend" }

[[endpoints]]
id = "slow"
verb = "GET"
path = "/slow"
response = { code = 200, body = "slow", delay_ms = { min = 1, max = 5 } }

[[endpoints]]
id = "fault"
verb = "GET"
path = "/fault"
response = { code = 200, body = "never", fault = { close_after_bytes = 2 } }
"#;

/// The same kinds of path with no conditions and no templates: which
/// endpoint answers depends on the method and path alone.
const PLAIN_ROUTES: &str = r#"
[[endpoints]]
verb = "GET"
path = "/plain"
response = { code = 200, body = "plain" }

[[endpoints]]
verb = "ANY"
path = "/any/{id}"
response = { code = 200, body = "any" }

[[endpoints]]
verb = "POST"
path = "/files/{*rest}"
response = { code = 201, body = "rest" }

[[endpoints]]
verb = "GET"
path_regex = "^/v[0-9]+/.*$"
response = { code = 200, body = "regex" }
"#;

fn router(which: &'static OnceLock<Router>, text: &str) -> &'static Router {
    which.get_or_init(
        || match crate::config::load_str("routes.toml", text, config_dir()) {
            Ok(cfg) => compile(cfg, Vec::new()),
            Err(e) => panic!("the fuzz routes do not load: {e}"),
        },
    )
}

/// Arbitrary bytes as an HTTP/1 request (head and body) to a gateway with
/// every kind of route and condition, and to one whose routes have none.
pub fn request(data: &[u8]) {
    static FULL: OnceLock<Router> = OnceLock::new();
    static PLAIN: OnceLock<Router> = OnceLock::new();
    // The head limits (414, 431), small enough for inputs to pass them.
    let limits = crate::limits::HeadLimits {
        line: 64,
        bytes: 512,
        fields: 8,
    };
    if let Some(r) = limits.check_partial(data) {
        assert!(r.status == 414 || r.status == 431, "{r:?}");
    }
    let mut headers = [httparse::EMPTY_HEADER; fast::MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(len)) = req.parse(data) else {
        return;
    };
    let line = crate::limits::HeadLimits::line_len(data);
    assert!(
        line <= len,
        "a request line of {line} bytes in a head of {len}"
    );
    let refused = limits.check(line, len, req.headers.len());
    let within = line <= limits.line && len <= limits.bytes && req.headers.len() <= limits.fields;
    assert_eq!(refused.is_none(), within, "{refused:?}");
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return;
    };
    let body = &data[len..];
    let list: Vec<(&str, &[u8])> = req.headers.iter().map(|h| (h.name, h.value)).collect();
    // The fast path passes a request on as it came (less hop-by-hop fields).
    if let (Some(u), Some(_)) = (
        router(&FULL, ROUTES).upstreams.get("backend"),
        fast::split_target(target),
    ) {
        let mut out = BytesMut::new();
        relay::upstream_request(u, method, target, req.headers, &mut out);
    }
    ask(router(&FULL, ROUTES), method, target, &list, body);
    ask(router(&PLAIN, PLAIN_ROUTES), method, target, &list, body);
}

/// A reader that hands out its bytes a few at a time, as a network does.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let n = self.data.len().min(self.step).min(buf.remaining());
        let (now, later) = self.data.split_at(n);
        buf.put_slice(now);
        self.data = later;
        Poll::Ready(Ok(()))
    }
}

/// Arbitrary bytes as an upstream's response to the fast path's
/// pass-through (the first byte chooses a HEAD request, a client that
/// closes, and how many bytes arrive at a time): what the client gets
/// starts with a response head it can read, with the upstream's status.
pub fn upstream_response(data: &[u8]) {
    static RUNTIME: OnceLock<Option<tokio::runtime::Runtime>> = OnceLock::new();
    let Some(rt) = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .ok()
    }) else {
        panic!("no runtime");
    };
    let Some((&flags, response)) = data.split_first() else {
        return;
    };
    let head = flags & 1 != 0;
    let client_close = flags & 2 != 0;
    let step = match flags >> 2 {
        0 => usize::MAX,
        n => usize::from(n),
    };
    let mut up = Trickle {
        data: response,
        step,
    };
    let mut client: Vec<u8> = Vec::new();
    rt.block_on(async {
        let mut buf = BytesMut::new();
        let timeout = Duration::from_secs(5);
        let Ok(h) = relay::read_head(&mut up, &mut buf, timeout).await else {
            return;
        };
        let status = h.0;
        assert!((200..=599).contains(&status), "status {status} relayed");
        let _ = relay::forward(
            &mut up,
            &mut client,
            &mut buf,
            h,
            head,
            client_close,
            timeout,
        )
        .await;
        let mut headers = [httparse::EMPTY_HEADER; 256];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&client) {
            Ok(httparse::Status::Complete(_)) => assert_eq!(resp.code, Some(status)),
            other => panic!(
                "the client gets a response head it cannot read ({other:?}): {:?}",
                String::from_utf8_lossy(&client)
            ),
        }
    });
}
