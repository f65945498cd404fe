//! The Echo admin API (echo-api-spec sections 2 to 4, 7): routing, the checks
//! in the contract's order, and JSON:API documents. Independent of the HTTP
//! server: the proxy hands it the request's parts and writes back its `Reply`.

mod errors;
pub mod export;
pub mod journal;
pub mod status;

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use serde_json::{json, Value};

use crate::config::doc::{Diags, Loc, Node, Val};
use crate::config::endpoint::{apply_partial, decode_full, decode_partial, SchemaContext};
use crate::config::{EndpointSpec, FileEndpoint, PathSpec};
use crate::router::{Gateway, Router, RuntimeEndpoint, WriteError};
use crate::store::StoreError;

pub use errors::{error_document, ErrorObject};

pub const JSONAPI: &str = "application/vnd.api+json";

/// An answer of the admin API.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    /// Empty for 204; otherwise a JSON:API document.
    pub body: Bytes,
    /// Close the connection after answering (the request body was not read).
    pub close: bool,
}

impl Reply {
    fn document(status: u16, doc: &Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::from(doc.to_string()),
            close: false,
        }
    }

    pub fn error(e: ErrorObject) -> Reply {
        Reply {
            status: e.status,
            headers: Vec::new(),
            body: errors::document(std::slice::from_ref(&e)),
            close: false,
        }
    }

    fn errors(status: u16, list: &[ErrorObject]) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: errors::document(list),
            close: false,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }

    pub fn no_content() -> Reply {
        Reply {
            status: 204,
            headers: Vec::new(),
            body: Bytes::new(),
            close: false,
        }
    }
}

/// What an admin request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    List,
    Create,
    Get(String),
    Patch(String),
    Delete(String),
    MethodNotAllowed { path: String, allow: &'static str },
    NotFound(String),
}

impl Route {
    /// Whether the route reads a JSON document from the request body.
    pub fn takes_body(&self) -> bool {
        matches!(self, Route::Create | Route::Patch(_))
    }
}

/// Whether `path` belongs to the admin API's `/endpoints` namespace.
pub fn is_admin_path(path: &str) -> bool {
    path == "/endpoints" || path.starts_with("/endpoints/")
}

pub fn route(method: &Method, path: &str) -> Route {
    if path == "/endpoints" {
        return match *method {
            Method::GET => Route::List,
            Method::POST => Route::Create,
            _ => Route::MethodNotAllowed {
                path: path.to_string(),
                allow: "GET, POST",
            },
        };
    }
    match path.strip_prefix("/endpoints/") {
        Some(id) if !id.is_empty() && !id.contains('/') => match *method {
            Method::GET => Route::Get(id.to_string()),
            Method::PATCH => Route::Patch(id.to_string()),
            Method::DELETE => Route::Delete(id.to_string()),
            _ => Route::MethodNotAllowed {
                path: path.to_string(),
                allow: "GET, PATCH, DELETE",
            },
        },
        _ => Route::NotFound(path.to_string()),
    }
}

/// 401 unless the request carries the configured bearer token (spec 7).
/// The comparison takes the same time wherever the tokens differ.
pub fn check_auth(token: Option<&str>, authorization: Option<&[u8]>) -> Option<Reply> {
    let token = token?;
    let given = authorization
        .and_then(|a| a.strip_prefix(b"Bearer "))
        .unwrap_or_default();
    if bool::from(subtle::ConstantTimeEq::ct_eq(given, token.as_bytes())) {
        return None;
    }
    let detail = if authorization.is_none() {
        "the admin API needs an `Authorization: Bearer <token>` header"
    } else {
        "the bearer token is not valid"
    };
    Some(
        Reply::error(ErrorObject::new(401, "unauthorized", detail)).with_header(
            "WWW-Authenticate",
            "Bearer realm=\"echo-gateway admin\"".into(),
        ),
    )
}

/// 415 unless the media type is one the contract accepts (spec 3.1, A3).
pub fn check_media_type(content_type: Option<&[u8]>) -> Option<Reply> {
    let raw = content_type?;
    let ct = String::from_utf8_lossy(raw);
    let mut parts = ct.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let has_params = parts.any(|p| !p.trim().is_empty());
    let ok = match essence.as_str() {
        "application/vnd.api+json" => !has_params,
        "application/json" => true,
        _ => false,
    };
    if ok {
        return None;
    }
    let detail = if essence == JSONAPI {
        format!("media type `{ct}` is not accepted: application/vnd.api+json takes no parameters")
    } else {
        format!(
            "media type `{ct}` is not accepted: send application/vnd.api+json or application/json"
        )
    };
    Some(Reply::error(ErrorObject::new(
        415,
        "unsupported_media_type",
        &detail,
    )))
}

/// 413 for a body over the limit (spec 3.1, A13); the rest of it is not read.
pub fn too_large(limit: usize) -> Reply {
    let mut r = Reply::error(ErrorObject::new(
        413,
        "payload_too_large",
        &format!("the request body is larger than the limit of {limit} bytes"),
    ));
    r.close = true;
    r
}

/// 404 for a path no one serves (spec 3.7, A26).
pub fn page_not_found(path: &str) -> Reply {
    Reply::error(ErrorObject::new(
        404,
        "not_found",
        &format!("Requested page `{path}` does not exist"),
    ))
}

/// The Echo 404 with the nearest misses in its `meta` (opt-in).
pub fn page_not_found_explained(path: &str, misses: &[crate::router::NearMiss]) -> Reply {
    let list: Vec<Value> = misses
        .iter()
        .map(|m| json!({"endpoint": m.endpoint, "reason": m.reason}))
        .collect();
    let doc = json!({
        "errors": [{
            "status": "404",
            "code": "not_found",
            "title": "Not found",
            "detail": format!("Requested page `{path}` does not exist"),
        }],
        "meta": {"near_misses": list},
    });
    Reply::document(404, &doc)
}

fn endpoint_not_found(id: &str) -> Reply {
    Reply::error(ErrorObject::new(
        404,
        "not_found",
        &format!("Requested Endpoint with ID `{id}` does not exist"),
    ))
}

/// What the admin API needs to know about the request beyond its route.
pub struct RequestInfo<'a> {
    /// The `Host` header, for `Location`.
    pub host: Option<&'a str>,
}

/// Answers a routed admin request whose body (if any) has been read.
pub async fn handle(gw: &Gateway, route: Route, body: &[u8], info: &RequestInfo<'_>) -> Reply {
    match route {
        Route::List => list(gw),
        Route::Get(id) => get(gw, &id),
        Route::Create => create(gw, body, info).await,
        Route::Patch(id) => patch(gw, &id, body).await,
        Route::Delete(id) => delete(gw, &id).await,
        Route::MethodNotAllowed { path, allow } => Reply::error(ErrorObject::new(
            405,
            "method_not_allowed",
            &format!("this method is not allowed on {path}; allowed: {allow}"),
        ))
        .with_header("Allow", allow.to_string()),
        Route::NotFound(path) => page_not_found(&path),
    }
}

fn file_resource(f: &FileEndpoint) -> Value {
    let mut attrs = f.spec.attributes_json();
    attrs.insert("source".into(), Value::String(f.source.clone()));
    json!({"type": "endpoints", "id": f.id, "attributes": attrs})
}

fn runtime_resource(e: &RuntimeEndpoint) -> Value {
    json!({"type": "endpoints", "id": e.id.to_string(), "attributes": e.spec.attributes_json()})
}

/// Adds the endpoint's hit count as JSON:API `meta`.
fn with_hits(gw: &Gateway, mut resource: Value) -> Value {
    let hits = resource["id"].as_str().map_or(0, |id| gw.hits.get(id));
    resource["meta"] = json!({ "hits": hits });
    resource
}

fn list(gw: &Gateway) -> Reply {
    let router = gw.current();
    let data: Vec<Value> = router
        .layers
        .files
        .iter()
        .map(file_resource)
        .chain(router.layers.runtime.iter().map(runtime_resource))
        .map(|r| with_hits(gw, r))
        .collect();
    Reply::document(200, &json!({ "data": data }))
}

fn find(router: &Router, id: &str) -> Option<Value> {
    if let Some(f) = router.layers.files.iter().find(|f| f.id == id) {
        return Some(file_resource(f));
    }
    router
        .layers
        .runtime
        .iter()
        .find(|e| e.id.to_string() == id)
        .map(runtime_resource)
}

fn get(gw: &Gateway, id: &str) -> Reply {
    match find(&gw.current(), id) {
        Some(r) => Reply::document(200, &json!({ "data": with_hits(gw, r) })),
        None => endpoint_not_found(id),
    }
}

/// A request document after the 400 checks of spec 3.7.
pub(crate) struct Document {
    data: Node,
    /// `data.attributes`, or an empty table standing in for it.
    attributes: Node,
}

fn bad_request(detail: &str, pointer: &str) -> Reply {
    Reply::error(ErrorObject::new(400, "bad_request", detail).at(pointer))
}

pub(crate) fn parse_document(body: &[u8]) -> Result<Document, Reply> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| bad_request(&format!("the request body is not valid JSON: {e}"), ""))?;
    let root = Node::from_json(&value);
    if root.entries().is_none() {
        return Err(bad_request(
            &format!(
                "the document must be a JSON object, not {}",
                root.type_name().replace("a table", "an object")
            ),
            "",
        ));
    }
    let Some(data) = root.get("data") else {
        return Err(bad_request("the document has no `data` member", "/data"));
    };
    if data.entries().is_none() {
        return Err(bad_request(
            &format!("`data` must be an object, not {}", json_type(data)),
            "/data",
        ));
    }
    match data.get("type") {
        None => return Err(bad_request("`data.type` is required", "/data/type")),
        Some(t) if t.as_str().is_none() => {
            return Err(bad_request(
                &format!("`data.type` must be a string, not {}", json_type(t)),
                "/data/type",
            ))
        }
        Some(_) => {}
    }
    let attributes = match data.get("attributes") {
        Some(a) if a.entries().is_some() => a.clone(),
        Some(a) => {
            return Err(bad_request(
                &format!("`data.attributes` must be an object, not {}", json_type(a)),
                "/data/attributes",
            ))
        }
        None => Node {
            val: Val::Table(Vec::new()),
            loc: Loc::Pointer("/data/attributes".into()),
        },
    };
    Ok(Document {
        data: data.clone(),
        attributes,
    })
}

fn json_type(n: &Node) -> &'static str {
    match n.val {
        Val::Table(_) => "an object",
        Val::Int(_) | Val::Float(_) => "a number",
        _ => n.type_name(),
    }
}

fn type_conflict(doc: &Document) -> Option<Reply> {
    let t = doc
        .data
        .get("type")
        .and_then(Node::as_str)
        .unwrap_or_default();
    (t != "endpoints").then(|| {
        Reply::error(
            ErrorObject::new(
                409,
                "conflict",
                &format!("`data.type` must be \"endpoints\", not \"{t}\""),
            )
            .at("/data/type"),
        )
    })
}

fn invalid(diags: Diags) -> Reply {
    let list: Vec<ErrorObject> = diags
        .list
        .iter()
        .map(|d| {
            let mut e = ErrorObject::new(422, "invalid_attribute", &d.message);
            if let Some(p) = d.loc.pointer() {
                e = e.at(p);
            }
            e
        })
        .collect();
    Reply::errors(422, &list)
}

fn write_error(e: WriteError) -> Reply {
    match e {
        WriteError::NotFound(id) => endpoint_not_found(&id),
        WriteError::ReadOnly(id) => read_only(&id),
        WriteError::Conflict { id, verb, path } => Reply::error(
            ErrorObject::new(
                409,
                "conflict",
                &format!("endpoint `{id}` already answers {verb} {path}"),
            )
            .at("/data/attributes/path"),
        ),
        WriteError::Invalid(errs) => {
            let list: Vec<ErrorObject> = errs
                .iter()
                .map(|c| {
                    ErrorObject::new(422, "invalid_attribute", &c.message)
                        .at("/data/attributes/path")
                })
                .collect();
            Reply::errors(422, &list)
        }
        WriteError::Full(limit) => Reply::error(ErrorObject::new(
            507,
            "endpoint_limit",
            &format!(
                "the gateway holds its limit of {limit} endpoints (server.max_endpoints); delete some or raise the limit"
            ),
        )),
        WriteError::Store(StoreError::Unavailable(why)) => {
            tracing::error!(error = %why, "store unavailable");
            Reply::error(ErrorObject::new(
                503,
                "store_unavailable",
                "the endpoint store is unavailable; nothing was changed, try again",
            ))
            .with_header("Retry-After", "1".into())
        }
        WriteError::Store(other) => {
            tracing::error!(error = %other, "store error");
            Reply::error(ErrorObject::new(
                500,
                "internal_error",
                "the change could not be stored",
            ))
        }
    }
}

fn read_only(id: &str) -> Reply {
    Reply::error(ErrorObject::new(
        403,
        "read_only",
        &format!(
            "endpoint `{id}` comes from a config file and is read-only: edit the file instead"
        ),
    ))
}

/// What endpoint attributes are checked against: the admin layout, and the
/// upstreams of the config being served (it may have been reloaded).
fn schema_context(gw: &Gateway) -> (bool, std::collections::HashSet<String>) {
    let upstreams = gw.current().upstreams.keys().cloned().collect();
    (gw.config().admin.shares_mock_listener(), upstreams)
}

/// The endpoint the body of a `POST /endpoints` describes, or the reply that
/// refuses it.
pub(crate) fn new_endpoint(body: &[u8], ctx: &SchemaContext<'_>) -> Result<EndpointSpec, Reply> {
    let doc = parse_document(body)?;
    if doc.data.get("id").is_some_and(|i| !i.is_null()) {
        return Err(Reply::error(
            ErrorObject::new(
                403,
                "client_generated_id",
                "client-generated ids are not supported: leave out `data.id`",
            )
            .at("/data/id"),
        ));
    }
    if let Some(r) = type_conflict(&doc) {
        return Err(r);
    }
    let mut diags = Diags::lenient();
    let spec = decode_full(&doc.attributes, ctx, &mut diags, &[]);
    match spec.filter(|_| diags.is_empty()) {
        Some(spec) => Ok(spec),
        None => Err(invalid(diags)),
    }
}

async fn create(gw: &Gateway, body: &[u8], info: &RequestInfo<'_>) -> Reply {
    let (reserve, upstreams) = schema_context(gw);
    let ctx = SchemaContext {
        reserve_admin_path: reserve,
        upstreams: &upstreams,
        files: None,
    };
    let spec = match new_endpoint(body, &ctx) {
        Ok(spec) => spec,
        Err(r) => return r,
    };
    match gw.create(spec).await {
        Ok(created) => {
            let mut reply = Reply::document(
                201,
                &json!({ "data": with_hits(gw, runtime_resource(&created)) }),
            );
            if let PathSpec::Exact(p) = &created.spec.path {
                reply = reply.with_header("Location", format!("{}{p}", public_base(gw, info)));
            }
            reply
        }
        Err(e) => write_error(e),
    }
}

/// The base URL at which clients reach the mock listener (A2).
fn public_base(gw: &Gateway, info: &RequestInfo<'_>) -> String {
    let cfg = gw.config();
    if let Some(u) = &cfg.server.public_url {
        return u.clone();
    }
    let mock_port = cfg
        .server
        .listen
        .first()
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .map_or(8080, |a| a.port());
    match info.host {
        Some(h) if cfg.admin.shares_mock_listener() => format!("http://{h}"),
        Some(h) => {
            let host = match h.rsplit_once(':') {
                Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
                _ => h,
            };
            format!("http://{host}:{mock_port}")
        }
        None => format!("http://localhost:{mock_port}"),
    }
}

/// What endpoint `id` (now `existing`) becomes with the changes of a
/// `PATCH /endpoints/{id}` document, or the reply that refuses them.
pub(crate) fn changed_endpoint(
    doc: &Document,
    id: &str,
    existing: &EndpointSpec,
    ctx: &SchemaContext<'_>,
) -> Result<EndpointSpec, Reply> {
    if let Some(r) = type_conflict(doc) {
        return Err(r);
    }
    if let Some(given) = doc.data.get("id").filter(|i| !i.is_null()) {
        if given.as_str() != Some(id) {
            let shown = match given.as_str() {
                Some(s) => format!("\"{s}\""),
                None => format!("{} value", json_type(given)),
            };
            return Err(Reply::error(
                ErrorObject::new(
                    409,
                    "conflict",
                    &format!("`data.id` ({shown}) does not match the id in the URL (\"{id}\")"),
                )
                .at("/data/id"),
            ));
        }
    }
    let mut diags = Diags::lenient();
    let partial = decode_partial(&doc.attributes, ctx, &mut diags, &[]);
    if !diags.is_empty() {
        return Err(invalid(diags));
    }
    Ok(apply_partial(existing, partial))
}

async fn patch(gw: &Gateway, id: &str, body: &[u8]) -> Reply {
    let doc = match parse_document(body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let router: Arc<Router> = gw.router();
    if router.layers.files.iter().any(|f| f.id == id) {
        return read_only(id);
    }
    let Some(existing) = router
        .layers
        .runtime
        .iter()
        .find(|e| e.id.to_string() == id)
    else {
        return endpoint_not_found(id);
    };
    let (reserve, upstreams) = schema_context(gw);
    let ctx = SchemaContext {
        reserve_admin_path: reserve,
        upstreams: &upstreams,
        files: None,
    };
    let merged = match changed_endpoint(&doc, id, &existing.spec, &ctx) {
        Ok(spec) => spec,
        Err(r) => return r,
    };
    if merged == existing.spec {
        return Reply::document(
            200,
            &json!({ "data": with_hits(gw, runtime_resource(existing)) }),
        );
    }
    drop(router);
    match gw.update(id, merged).await {
        Ok(updated) => Reply::document(
            200,
            &json!({ "data": with_hits(gw, runtime_resource(&updated)) }),
        ),
        Err(e) => write_error(e),
    }
}

async fn delete(gw: &Gateway, id: &str) -> Reply {
    match gw.delete(id).await {
        Ok(()) => Reply::no_content(),
        Err(e) => write_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(&Method::GET, "/endpoints"), Route::List);
        assert_eq!(route(&Method::POST, "/endpoints"), Route::Create);
        assert_eq!(route(&Method::GET, "/endpoints/7"), Route::Get("7".into()));
        assert_eq!(
            route(&Method::PATCH, "/endpoints/7"),
            Route::Patch("7".into())
        );
        assert_eq!(
            route(&Method::DELETE, "/endpoints/7"),
            Route::Delete("7".into())
        );
        assert!(matches!(
            route(&Method::PUT, "/endpoints"),
            Route::MethodNotAllowed {
                allow: "GET, POST",
                ..
            }
        ));
        assert!(matches!(
            route(&Method::POST, "/endpoints/1"),
            Route::MethodNotAllowed {
                allow: "GET, PATCH, DELETE",
                ..
            }
        ));
        assert_eq!(
            route(&Method::GET, "/endpoints/"),
            Route::NotFound("/endpoints/".into())
        );
        assert_eq!(
            route(&Method::GET, "/endpoints/1/x"),
            Route::NotFound("/endpoints/1/x".into())
        );
    }

    #[test]
    fn media_types() {
        assert!(check_media_type(None).is_none());
        assert!(check_media_type(Some(b"application/vnd.api+json")).is_none());
        assert!(check_media_type(Some(b"application/json; charset=utf-8")).is_none());
        assert_eq!(
            check_media_type(Some(b"application/vnd.api+json; charset=utf-8"))
                .unwrap()
                .status,
            415
        );
        assert_eq!(check_media_type(Some(b"text/plain")).unwrap().status, 415);
    }

    #[test]
    fn auth() {
        assert!(check_auth(None, None).is_none());
        assert!(check_auth(Some("s3cret"), Some(b"Bearer s3cret")).is_none());
        assert_eq!(
            check_auth(Some("s3cret"), Some(b"Bearer nope"))
                .unwrap()
                .status,
            401
        );
        assert_eq!(check_auth(Some("s3cret"), None).unwrap().status, 401);
        assert_eq!(
            check_auth(Some("s3cret"), Some(b"s3cret")).unwrap().status,
            401
        );
    }
}
