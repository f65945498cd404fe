mod common;

// Black-box contract tests of the Echo admin API and of mock serving
// (echo-api-spec sections 2 to 5, and the listener and token parts of
// section 7), against the real binary on free ports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// The admin request body limit (spec 3.1, A13).
const LIMIT: usize = 1024 * 1024;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A response with everything the tests look at.
struct Resp {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

async fn request(
    method: Method,
    url: String,
    headers: &[(&str, &str)],
    body: Option<String>,
) -> Resp {
    let mut req = client().request(method, url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b);
    }
    let resp = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("request failed: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .bytes()
        .await
        .unwrap_or_else(|e| panic!("reading the body: {e}"))
        .to_vec();
    Resp {
        status,
        headers,
        body,
    }
}

/// An admin request; a document is sent as `application/vnd.api+json`.
async fn admin(gw: &Gateway, method: Method, path: &str, doc: Option<&Value>) -> Resp {
    match doc {
        Some(d) => {
            let ct = [("Content-Type", JSONAPI)];
            request(method, gw.admin_url(path), &ct, Some(d.to_string())).await
        }
        None => request(method, gw.admin_url(path), &[], None).await,
    }
}

/// An admin request whose body is sent as given, with the given media type.
async fn admin_text(
    gw: &Gateway,
    method: Method,
    path: &str,
    content_type: &str,
    body: &str,
) -> Resp {
    let ct = [("Content-Type", content_type)];
    request(method, gw.admin_url(path), &ct, Some(body.to_string())).await
}

/// A request to the mock listener.
async fn call(gw: &Gateway, method: Method, path: &str) -> Resp {
    request(method, gw.url(path), &[], None).await
}

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn doc(attributes: Value) -> Value {
    json!({"data": {"type": "endpoints", "attributes": attributes}})
}

fn patch_doc(id: &str, attributes: Value) -> Value {
    json!({"data": {"type": "endpoints", "id": id, "attributes": attributes}})
}

fn attrs(verb: &str, path: &str, response: Value) -> Value {
    json!({"verb": verb, "path": path, "response": response})
}

/// Attributes of a valid endpoint on `path` with the given `response`.
fn with_response(path: &str, response: Value) -> Value {
    attrs("GET", path, response)
}

/// Creates an endpoint (asserting 201); returns its resource object.
async fn create(gw: &Gateway, attributes: Value) -> Value {
    let (status, body) = post(gw, &doc(attributes)).await;
    assert_eq!(status, 201, "create failed: {body}");
    body["data"].clone()
}

async fn create_id(gw: &Gateway, verb: &str, path: &str, code: u16, body: &str) -> String {
    let data = create(gw, attrs(verb, path, json!({"code": code, "body": body}))).await;
    id_of(&data)
}

fn id_of(data: &Value) -> String {
    data["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no string id in {data}"))
        .to_string()
}

async fn list(gw: &Gateway) -> Vec<Value> {
    let r = admin(gw, Method::GET, "/endpoints", None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["data"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("`data` is not an array: {}", r.text()))
}

async fn get_data(gw: &Gateway, id: &str) -> Value {
    let r = admin(gw, Method::GET, &format!("/endpoints/{id}"), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["data"].clone()
}

async fn patch(gw: &Gateway, id: &str, body: &Value) -> Resp {
    admin(gw, Method::PATCH, &format!("/endpoints/{id}"), Some(body)).await
}

/// Checks an error response against spec 3.7 (status, media type, and the
/// shape of every error object); returns the error objects.
fn errors(r: &Resp, status: u16, code: &str) -> Vec<Value> {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type").as_deref(), Some(JSONAPI));
    let doc = r.json();
    let list = doc["errors"].as_array().cloned().unwrap_or_default();
    assert!(!list.is_empty(), "no `errors` array in {doc}");
    for e in &list {
        assert_eq!(e["status"], json!(status.to_string()), "{e}");
        assert_eq!(e["code"], json!(code), "{e}");
        assert!(
            e["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "no detail in {e}"
        );
    }
    list
}

/// Checks a response with exactly one error object; returns it.
fn error(r: &Resp, status: u16, code: &str) -> Value {
    let list = errors(r, status, code);
    assert_eq!(list.len(), 1, "{}", r.text());
    list[0].clone()
}

fn assert_detail(r: &Resp, status: u16, code: &str, detail: &str) {
    assert_eq!(error(r, status, code)["detail"], json!(detail));
}

fn endpoint_missing(id: &str) -> String {
    format!("Requested Endpoint with ID `{id}` does not exist")
}

fn page_missing(path: &str) -> String {
    format!("Requested page `{path}` does not exist")
}

/// Asserts a 422 whose errors point at exactly `pointers`, in any order.
fn assert_invalid(r: &Resp, pointers: &[&str], context: &str) {
    let list = errors(r, 422, "invalid_attribute");
    let mut got: Vec<String> = list
        .iter()
        .map(|e| {
            e["source"]["pointer"]
                .as_str()
                .unwrap_or("<no pointer>")
                .to_string()
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = pointers.iter().map(|p| p.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "{context}: {}", r.text());
}

/// POSTs `attributes` and asserts a 422 on exactly `pointer`.
async fn rejected(gw: &Gateway, attributes: Value, pointer: &str) {
    let context = attributes.to_string();
    let r = admin(gw, Method::POST, "/endpoints", Some(&doc(attributes))).await;
    assert_invalid(&r, &[pointer], &context);
}

/// Splits a raw response into its header block and its body.
fn split_raw(raw: &str) -> (&str, &str) {
    raw.split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete header block in {raw:?}"))
}

fn raw_status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

fn raw_header(head: &str, name: &str) -> Option<String> {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim().to_string())
}

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| panic!("connect: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("timeout: {e}"));
    s
}

/// Reads one response from a kept-alive connection: a 204 or one framed by
/// `Content-Length`.
fn read_response(s: &mut TcpStream) -> (String, String) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!(
                "the connection ended inside a header ({other:?}) after {:?}",
                String::from_utf8_lossy(&head)
            ),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if raw_status(&head) == 204 {
        return (head, String::new());
    }
    let len: usize = raw_header(&head, "content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Content-Length in {head}"));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)
        .unwrap_or_else(|e| panic!("reading the body: {e}"));
    (head, String::from_utf8_lossy(&body).into_owned())
}

/// Sends `head` (which must ask for chunked framing), then `body` in 64 KiB
/// chunks from another thread while this one reads the answer until the
/// server closes the connection.
fn send_chunked(port: u16, head: &str, body: &[u8]) -> String {
    let mut s = connect(port);
    let mut w = s.try_clone().unwrap_or_else(|e| panic!("clone: {e}"));
    let _ = w.set_write_timeout(Some(Duration::from_secs(10)));
    let mut out = head.as_bytes().to_vec();
    for chunk in body.chunks(64 * 1024) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    // The server may answer and close before it has read everything.
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&out);
    });
    let mut resp = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
        }
    }
    let _ = writer.join();
    String::from_utf8_lossy(&resp).into_owned()
}

/// Checks a raw error response for `status`/`code`; returns the detail.
fn raw_error(raw: &str, status: u16, code: &str) -> String {
    let (head, body) = split_raw(raw);
    assert_eq!(raw_status(head), status, "{raw}");
    assert_eq!(raw_header(head, "content-type").as_deref(), Some(JSONAPI));
    let doc: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    assert_eq!(doc["errors"][0]["code"], json!(code), "{doc}");
    assert_eq!(
        doc["errors"][0]["status"],
        json!(status.to_string()),
        "{doc}"
    );
    doc["errors"][0]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A create document that is exactly `len` bytes of JSON.
fn doc_of_len(path: &str, len: usize) -> String {
    let make = |pad: &str| doc(attrs("POST", path, json!({"code": 200, "body": pad}))).to_string();
    let base = make("").len();
    assert!(len >= base);
    let text = make(&"a".repeat(len - base));
    assert_eq!(text.len(), len);
    text
}

// ---------------------------------------------------------------------------
// Route table (section 2)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn list_is_an_empty_array_at_first() {
    let gw = Gateway::start();

    let r = request(
        Method::GET,
        gw.admin_url("/endpoints"),
        &[("Accept", "text/html")],
        None,
    )
    .await;

    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").as_deref(), Some(JSONAPI));
    assert_eq!(r.json(), json!({"data": []}));
}

#[tokio::test]
async fn list_is_in_creation_order() {
    let gw = Gateway::start();
    let c = create(&gw, attrs("GET", "/c", json!({"code": 200}))).await;
    let a = create(&gw, attrs("POST", "/a", json!({"code": 201}))).await;
    let b = create(&gw, attrs("DELETE", "/b", json!({"code": 202}))).await;
    let c_patched = patch(
        &gw,
        &id_of(&c),
        &patch_doc(&id_of(&c), json!({"path": "/z"})),
    )
    .await;
    assert_eq!(c_patched.status, 200, "{}", c_patched.text());

    let listed = list(&gw).await;

    assert_eq!(listed, vec![c_patched.json()["data"].clone(), a, b]);
}

#[tokio::test]
async fn create_answers_201_with_location_and_the_stored_resource() {
    let gw = Gateway::start();
    let body = doc(json!({"verb": "GET", "path": "/hello", "response": {
        "code": 200,
        "headers": {"Content-Type": "application/json", "X-CamelCase-Name": "v"},
        "body": "{ \"message\": \"Hello, world\" }"}}));

    let r = admin(&gw, Method::POST, "/endpoints", Some(&body)).await;

    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("location"), Some(gw.url("/hello")));
    assert_eq!(r.header("content-type").as_deref(), Some(JSONAPI));
    let created = r.json();
    let id = id_of(&created["data"]);
    assert!(!id.is_empty());
    assert_eq!(
        created,
        json!({"data": {"type": "endpoints", "id": id, "attributes": {
            "verb": "GET", "path": "/hello", "response": {
                "code": 200,
                "headers": {"Content-Type": "application/json", "X-CamelCase-Name": "v"},
                "body": "{ \"message\": \"Hello, world\" }"}},
            "meta": {"hits": 0}}})
    );
    let served = call(&gw, Method::GET, "/hello").await;
    assert_eq!(served.status, 200);
    assert_eq!(served.text(), "{ \"message\": \"Hello, world\" }");
}

#[tokio::test]
async fn get_one_answers_200_or_404() {
    let gw = Gateway::start();
    let created = create(&gw, attrs("PUT", "/one", json!({"code": 200, "body": "x"}))).await;
    let id = id_of(&created);

    let found = admin(&gw, Method::GET, &format!("/endpoints/{id}"), None).await;
    let unknown = admin(&gw, Method::GET, "/endpoints/999", None).await;
    let not_a_number = admin(&gw, Method::GET, "/endpoints/abc", None).await;

    assert_eq!(found.status, 200);
    assert_eq!(found.header("content-type").as_deref(), Some(JSONAPI));
    assert_eq!(found.json(), json!({ "data": created }));
    assert_detail(&unknown, 404, "not_found", &endpoint_missing("999"));
    assert_detail(&not_a_number, 404, "not_found", &endpoint_missing("abc"));
}

#[tokio::test]
async fn patch_answers_200_with_the_state_after_the_update() {
    let gw = Gateway::start();
    let id = id_of(
        &create(
            &gw,
            attrs(
                "GET",
                "/hello",
                json!({"code": 200, "headers": {"Content-Type": "application/json"}, "body": "hi"}),
            ),
        )
        .await,
    );

    let r = patch(
        &gw,
        &id,
        &patch_doc(
            &id,
            json!({"verb": "POST", "response": {"code": 201, "body": "created"}}),
        ),
    )
    .await;

    let expected = json!({"data": {"type": "endpoints", "id": id, "attributes": {
        "verb": "POST", "path": "/hello",
        "response": {"code": 201, "headers": {}, "body": "created"}},
        "meta": {"hits": 0}}});
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type").as_deref(), Some(JSONAPI));
    assert_eq!(r.json(), expected);
    assert_eq!(get_data(&gw, &id).await, expected["data"]);
    // The change is visible at once: the old pair stops, the new one answers.
    assert_eq!(call(&gw, Method::GET, "/hello").await.status, 404);
    let served = call(&gw, Method::POST, "/hello").await;
    assert_eq!(served.status, 201);
    assert_eq!(served.text(), "created");
}

#[tokio::test]
async fn patch_keeps_the_attributes_it_does_not_name() {
    let gw = Gateway::start();
    let response = json!({"code": 202, "headers": {"X-A": "1"}, "body": "kept"});
    let id = id_of(&create(&gw, attrs("PUT", "/old", response.clone())).await);

    // Without `data.id`: it is optional on PATCH.
    let r = patch(
        &gw,
        &id,
        &json!({"data": {"type": "endpoints", "attributes": {"path": "/new"}}}),
    )
    .await;

    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["data"]["attributes"],
        json!({"verb": "PUT", "path": "/new", "response": response})
    );
    let served = call(&gw, Method::PUT, "/new").await;
    assert_eq!((served.status, served.text()), (202, "kept".to_string()));
    assert_eq!(served.header("x-a").as_deref(), Some("1"));
    assert_eq!(call(&gw, Method::PUT, "/old").await.status, 404);
}

#[tokio::test]
async fn patch_replaces_the_response_as_a_whole() {
    let gw = Gateway::start();
    let id = id_of(
        &create(
            &gw,
            attrs(
                "GET",
                "/r",
                json!({"code": 200, "headers": {"X-A": "1"}, "body": "old"}),
            ),
        )
        .await,
    );

    let r = patch(
        &gw,
        &id,
        &patch_doc(&id, json!({"response": {"code": 203}})),
    )
    .await;

    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["data"]["attributes"]["response"],
        json!({"code": 203, "headers": {}, "body": ""})
    );
    let served = call(&gw, Method::GET, "/r").await;
    assert_eq!((served.status, served.text()), (203, String::new()));
    assert_eq!(served.header("x-a"), None);
}

#[tokio::test]
async fn patch_of_a_response_without_code_is_422_and_changes_nothing() {
    let gw = Gateway::start();
    let created = create(&gw, attrs("GET", "/r", json!({"code": 200, "body": "old"}))).await;
    let id = id_of(&created);

    let r = patch(
        &gw,
        &id,
        &patch_doc(&id, json!({"response": {"body": "new"}})),
    )
    .await;

    assert_invalid(
        &r,
        &["/data/attributes/response/code"],
        "response without code",
    );
    assert_eq!(get_data(&gw, &id).await, created);
    assert_eq!(call(&gw, Method::GET, "/r").await.text(), "old");
}

#[tokio::test]
async fn patch_cannot_set_a_required_attribute_to_null() {
    let gw = Gateway::start();
    let created = create(&gw, attrs("GET", "/r", json!({"code": 200, "body": "old"}))).await;
    let id = id_of(&created);

    for name in ["verb", "path", "response"] {
        let r = patch(&gw, &id, &patch_doc(&id, json!({ name: null }))).await;

        assert_invalid(&r, &[&format!("/data/attributes/{name}")], name);
    }
    assert_eq!(get_data(&gw, &id).await, created);
}

#[tokio::test]
async fn patch_with_attributes_absent_or_empty_changes_nothing() {
    let gw = Gateway::start();
    let created = create(
        &gw,
        attrs("GET", "/same", json!({"code": 200, "body": "b"})),
    )
    .await;
    let id = id_of(&created);

    let absent = patch(&gw, &id, &json!({"data": {"type": "endpoints", "id": id}})).await;
    let empty = patch(&gw, &id, &patch_doc(&id, json!({}))).await;

    assert_eq!(absent.status, 200, "{}", absent.text());
    assert_eq!(absent.json(), json!({ "data": created }));
    assert_eq!(empty.status, 200, "{}", empty.text());
    assert_eq!(empty.json(), json!({ "data": created }));
    assert_eq!(list(&gw).await, vec![created]);
    assert_eq!(call(&gw, Method::GET, "/same").await.text(), "b");
}

#[tokio::test]
async fn delete_answers_204_without_body_then_404() {
    let gw = Gateway::start();
    let id = create_id(&gw, "GET", "/gone", 200, "here").await;
    let path = format!("/endpoints/{id}");

    let first = admin(&gw, Method::DELETE, &path, None).await;
    let second = admin(&gw, Method::DELETE, &path, None).await;

    assert_eq!(first.status, 204);
    assert!(first.body.is_empty());
    assert_eq!(first.header("content-type"), None);
    assert_detail(&second, 404, "not_found", &endpoint_missing(&id));
    let read = admin(&gw, Method::GET, &path, None).await;
    assert_detail(&read, 404, "not_found", &endpoint_missing(&id));
    let patched = patch(&gw, &id, &patch_doc(&id, json!({}))).await;
    assert_detail(&patched, 404, "not_found", &endpoint_missing(&id));
    assert_eq!(list(&gw).await, Vec::<Value>::new());
    let served = call(&gw, Method::GET, "/gone").await;
    assert_detail(&served, 404, "not_found", &page_missing("/gone"));
}

#[tokio::test]
async fn ids_are_never_reused() {
    let gw = Gateway::start();
    let first = create_id(&gw, "GET", "/x", 200, "").await;
    let deleted = admin(&gw, Method::DELETE, &format!("/endpoints/{first}"), None).await;
    assert_eq!(deleted.status, 204);

    let second = create_id(&gw, "GET", "/x", 200, "").await;

    assert_ne!(first, second);
    let old = admin(&gw, Method::GET, &format!("/endpoints/{first}"), None).await;
    assert_detail(&old, 404, "not_found", &endpoint_missing(&first));
}

#[tokio::test]
async fn other_methods_on_the_collection_are_405_with_allow() {
    let gw = Gateway::start();

    for m in ["PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"] {
        let r = admin(&gw, method(m), "/endpoints", None).await;

        error(&r, 405, "method_not_allowed");
        assert_eq!(r.header("allow").as_deref(), Some("GET, POST"), "{m}");
    }
}

#[tokio::test]
async fn other_methods_on_an_endpoint_are_405_with_allow() {
    let gw = Gateway::start();
    let id = create_id(&gw, "GET", "/x", 200, "").await;

    for m in ["POST", "PUT", "OPTIONS", "TRACE"] {
        let r = admin(&gw, method(m), &format!("/endpoints/{id}"), None).await;

        error(&r, 405, "method_not_allowed");
        assert_eq!(
            r.header("allow").as_deref(),
            Some("GET, PATCH, DELETE"),
            "{m}"
        );
    }
    assert_eq!(list(&gw).await.len(), 1);
}

#[tokio::test]
async fn unknown_admin_sub_paths_are_404() {
    let gw = Gateway::start();
    let id = create_id(&gw, "GET", "/x", 200, "").await;

    for (m, path) in [
        ("GET", format!("/endpoints/{id}/x")),
        ("DELETE", format!("/endpoints/{id}/x")),
        ("GET", "/endpoints/".to_string()),
    ] {
        let r = admin(&gw, method(m), &path, None).await;

        assert_detail(&r, 404, "not_found", &page_missing(&path));
    }
    assert_eq!(list(&gw).await.len(), 1);
}

#[tokio::test]
async fn a_mock_miss_is_404_with_the_path_without_query() {
    let gw = Gateway::start();

    let r = call(&gw, Method::GET, "/nothing/here?x=1&y=2").await;

    assert_detail(&r, 404, "not_found", &page_missing("/nothing/here"));
}

// ---------------------------------------------------------------------------
// Error table (section 3.7)
// ---------------------------------------------------------------------------

const NOT_DOCUMENTS: &[&str] = &[
    "",
    "not json",
    "{\"data\": ",
    r#"{"data": {"type": "endpoints", "attributes": {"verb": "GET", "path": "/n", "response": {"code": NaN}}}}"#,
    r#"{"data": {"type": "endpoints", "attributes": {"verb": "GET", "path": "/n", "response": {"code": Infinity}}}}"#,
    "[]",
    "\"data\"",
    "200",
    "null",
    "{}",
    r#"{"meta": {}}"#,
    r#"{"data": null}"#,
    r#"{"data": []}"#,
    r#"{"data": "endpoints"}"#,
    r#"{"data": {"attributes": {"verb": "GET", "path": "/n", "response": {"code": 200}}}}"#,
    r#"{"data": {"type": 1, "attributes": {"verb": "GET", "path": "/n", "response": {"code": 200}}}}"#,
    r#"{"data": {"type": null, "attributes": {"verb": "GET", "path": "/n", "response": {"code": 200}}}}"#,
    r#"{"data": {"type": "endpoints", "attributes": []}}"#,
    r#"{"data": {"type": "endpoints", "attributes": "verb=GET"}}"#,
    r#"{"data": {"type": "endpoints", "attributes": 5}}"#,
];

#[tokio::test]
async fn malformed_documents_are_400_on_create() {
    let gw = Gateway::start();

    for body in NOT_DOCUMENTS {
        let r = admin_text(&gw, Method::POST, "/endpoints", JSONAPI, body).await;

        assert_eq!(r.status, 400, "{body}: {}", r.text());
        error(&r, 400, "bad_request");
    }
    assert_eq!(list(&gw).await, Vec::<Value>::new());
}

#[tokio::test]
async fn malformed_documents_are_400_on_patch() {
    let gw = Gateway::start();
    let created = create(&gw, attrs("GET", "/p", json!({"code": 200}))).await;
    let path = format!("/endpoints/{}", id_of(&created));

    for body in NOT_DOCUMENTS {
        let r = admin_text(&gw, Method::PATCH, &path, JSONAPI, body).await;

        assert_eq!(r.status, 400, "{body}: {}", r.text());
        error(&r, 400, "bad_request");
    }
    assert_eq!(list(&gw).await, vec![created]);
}

#[tokio::test]
async fn a_client_generated_id_is_403() {
    let gw = Gateway::start();
    let body = json!({"data": {"type": "endpoints", "id": "5", "attributes":
        {"verb": "GET", "path": "/mine", "response": {"code": 200}}}});

    let r = admin(&gw, Method::POST, "/endpoints", Some(&body)).await;

    let e = error(&r, 403, "client_generated_id");
    assert_eq!(e["source"]["pointer"], "/data/id");
    assert_eq!(list(&gw).await, Vec::<Value>::new());
    assert_eq!(call(&gw, Method::GET, "/mine").await.status, 404);
}

#[tokio::test]
async fn a_type_other_than_endpoints_is_409() {
    let gw = Gateway::start();
    let created = create(&gw, attrs("GET", "/t", json!({"code": 200}))).await;
    let id = id_of(&created);
    let good = attrs("GET", "/u", json!({"code": 200}));

    let on_create = admin(
        &gw,
        Method::POST,
        "/endpoints",
        Some(&json!({"data": {"type": "people", "attributes": good}})),
    )
    .await;
    let on_patch = patch(
        &gw,
        &id,
        &json!({"data": {"type": "endpoint", "id": id, "attributes": {"path": "/u"}}}),
    )
    .await;

    error(&on_create, 409, "conflict");
    error(&on_patch, 409, "conflict");
    assert_eq!(list(&gw).await, vec![created]);
}

#[tokio::test]
async fn a_patch_id_other_than_the_url_id_is_409() {
    let gw = Gateway::start();
    let created = create(&gw, attrs("GET", "/i", json!({"code": 200}))).await;
    let id = id_of(&created);

    let other = patch(&gw, &id, &patch_doc("999", json!({"path": "/j"}))).await;
    let same = patch(&gw, &id, &patch_doc(&id, json!({"path": "/j"}))).await;

    let e = error(&other, 409, "conflict");
    assert_eq!(e["source"]["pointer"], "/data/id");
    assert_eq!(same.status, 200, "{}", same.text());
    assert_eq!(same.json()["data"]["attributes"]["path"], "/j");
}

#[tokio::test]
async fn a_taken_pair_is_409_on_create() {
    let gw = Gateway::start();
    let first = create(
        &gw,
        attrs("GET", "/dup", json!({"code": 200, "body": "first"})),
    )
    .await;

    let again = admin(
        &gw,
        Method::POST,
        "/endpoints",
        Some(&doc(attrs(
            "GET",
            "/dup",
            json!({"code": 201, "body": "second"}),
        ))),
    )
    .await;
    let other_verb = admin(
        &gw,
        Method::POST,
        "/endpoints",
        Some(&doc(attrs("POST", "/dup", json!({"code": 201})))),
    )
    .await;

    error(&again, 409, "conflict");
    assert_eq!(other_verb.status, 201, "{}", other_verb.text());
    assert_eq!(list(&gw).await.len(), 2);
    assert_eq!(list(&gw).await[0], first);
    assert_eq!(call(&gw, Method::GET, "/dup").await.text(), "first");
}

#[tokio::test]
async fn a_taken_pair_is_409_on_patch_but_its_own_pair_is_fine() {
    let gw = Gateway::start();
    let a = id_of(&create(&gw, attrs("GET", "/a", json!({"code": 200, "body": "a"}))).await);
    let b_created = create(&gw, attrs("GET", "/b", json!({"code": 200, "body": "b"}))).await;
    let b = id_of(&b_created);

    let taken = patch(&gw, &b, &patch_doc(&b, json!({"path": "/a"}))).await;
    let own = patch(
        &gw,
        &a,
        &patch_doc(
            &a,
            json!({"verb": "GET", "path": "/a", "response": {"code": 202, "body": "a2"}}),
        ),
    )
    .await;

    error(&taken, 409, "conflict");
    assert_eq!(get_data(&gw, &b).await, b_created);
    assert_eq!(call(&gw, Method::GET, "/b").await.text(), "b");
    assert_eq!(own.status, 200, "{}", own.text());
    let served = call(&gw, Method::GET, "/a").await;
    assert_eq!((served.status, served.text()), (202, "a2".to_string()));
    // Another verb on the same path is another pair.
    let moved = patch(
        &gw,
        &b,
        &patch_doc(&b, json!({"verb": "POST", "path": "/a"})),
    )
    .await;
    assert_eq!(moved.status, 200, "{}", moved.text());
}

#[tokio::test]
async fn a_declared_body_over_1_mib_is_413_and_nothing_is_created() {
    let gw = Gateway::start();

    let raw = raw_request(
        gw.port,
        &format!(
            "POST /endpoints HTTP/1.1\r\nHost: t\r\nContent-Type: {JSONAPI}\r\nContent-Length: {}\r\n\r\n",
            LIMIT + 1
        ),
    );

    raw_error(&raw, 413, "payload_too_large");
    assert_eq!(list(&gw).await, Vec::<Value>::new());
}

#[tokio::test]
async fn a_chunked_body_over_1_mib_is_413_and_nothing_is_created() {
    let gw = Gateway::start();
    let body = doc_of_len("/big", LIMIT + 1);

    let raw = send_chunked(
        gw.port,
        &format!(
            "POST /endpoints HTTP/1.1\r\nHost: t\r\nContent-Type: {JSONAPI}\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        body.as_bytes(),
    );

    raw_error(&raw, 413, "payload_too_large");
    assert_eq!(list(&gw).await, Vec::<Value>::new());
    assert_eq!(call(&gw, Method::POST, "/big").await.status, 404);
}

#[tokio::test]
async fn a_body_of_exactly_1_mib_is_accepted() {
    let gw = Gateway::start();
    let body = doc_of_len("/big", LIMIT);

    let r = admin_text(&gw, Method::POST, "/endpoints", JSONAPI, &body).await;

    assert_eq!(r.status, 201, "{}", r.text());
    let served = call(&gw, Method::POST, "/big").await;
    assert_eq!(served.status, 200);
    assert!(served.body.len() > LIMIT - 200);
    assert!(served.body.iter().all(|b| *b == b'a'));
}

#[tokio::test]
async fn a_chunked_request_body_is_accepted() {
    let gw = Gateway::start();
    let body = doc(attrs("GET", "/chunked", json!({"code": 200, "body": "ok"}))).to_string();

    let raw = send_chunked(
        gw.port,
        &format!(
            "POST /endpoints HTTP/1.1\r\nHost: t\r\nContent-Type: {JSONAPI}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        ),
        body.as_bytes(),
    );

    assert_eq!(raw_status(split_raw(&raw).0), 201, "{raw}");
    assert_eq!(call(&gw, Method::GET, "/chunked").await.text(), "ok");
}

#[tokio::test]
async fn other_media_types_are_415_and_nothing_changes() {
    let gw = Gateway::start();
    let created = create(&gw, attrs("GET", "/m", json!({"code": 200}))).await;
    let id = id_of(&created);
    let create_body = doc(attrs("GET", "/n", json!({"code": 200}))).to_string();
    let patch_body = patch_doc(&id, json!({"path": "/n"})).to_string();

    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/vnd.api+json; charset=utf-8",
        "application/vnd.api+json; ext=\"https://jsonapi.org/ext/atomic\"",
    ] {
        let posted = admin_text(&gw, Method::POST, "/endpoints", ct, &create_body).await;
        let patched = admin_text(
            &gw,
            Method::PATCH,
            &format!("/endpoints/{id}"),
            ct,
            &patch_body,
        )
        .await;

        error(&posted, 415, "unsupported_media_type");
        error(&patched, 415, "unsupported_media_type");
    }
    assert_eq!(list(&gw).await, vec![created]);
}

#[tokio::test]
async fn json_with_charset_and_a_missing_content_type_are_accepted() {
    let gw = Gateway::start();
    let body = |p: &str| doc(attrs("GET", p, json!({"code": 200}))).to_string();

    let json_ct = admin_text(
        &gw,
        Method::POST,
        "/endpoints",
        "application/json",
        &body("/a"),
    )
    .await;
    let charset = admin_text(
        &gw,
        Method::POST,
        "/endpoints",
        "application/json; charset=utf-8",
        &body("/b"),
    )
    .await;
    let doc_c = body("/c");
    let none = raw_request(
        gw.port,
        &format!(
            "POST /endpoints HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{doc_c}",
            doc_c.len()
        ),
    );

    assert_eq!(json_ct.status, 201, "{}", json_ct.text());
    assert_eq!(charset.status, 201, "{}", charset.text());
    assert_eq!(raw_status(split_raw(&none).0), 201, "{none}");
    assert_eq!(list(&gw).await.len(), 3);
}

#[tokio::test]
async fn missing_attributes_are_all_reported_at_once() {
    let gw = Gateway::start();

    let r = admin(&gw, Method::POST, "/endpoints", Some(&doc(json!({})))).await;
    let no_attributes = admin(
        &gw,
        Method::POST,
        "/endpoints",
        Some(&json!({"data": {"type": "endpoints"}})),
    )
    .await;

    let all = [
        "/data/attributes/verb",
        "/data/attributes/path",
        "/data/attributes/response",
    ];
    assert_invalid(&r, &all, "empty attributes");
    assert_invalid(&no_attributes, &all, "no attributes");
    assert_eq!(list(&gw).await, Vec::<Value>::new());
}

#[tokio::test]
async fn invalid_attributes_are_all_reported_at_once() {
    let gw = Gateway::start();
    let body = doc(json!({"verb": "get", "path": "nope", "response": {
        "code": 99, "headers": {"Bad Name": "x", "X-Ok": 5}, "body": 5}}));

    let r = admin(&gw, Method::POST, "/endpoints", Some(&body)).await;

    assert_invalid(
        &r,
        &[
            "/data/attributes/verb",
            "/data/attributes/path",
            "/data/attributes/response/code",
            "/data/attributes/response/headers/Bad Name",
            "/data/attributes/response/headers/X-Ok",
            "/data/attributes/response/body",
        ],
        "six errors",
    );
    assert_eq!(list(&gw).await, Vec::<Value>::new());
}

// ---------------------------------------------------------------------------
// PATCH check order (3.5, A15): each adjacent pair by a request breaking both
// ---------------------------------------------------------------------------

#[tokio::test]
async fn patch_checks_415_before_413() {
    let gw = Gateway::start();
    let id = create_id(&gw, "GET", "/o", 200, "").await;

    let raw = raw_request(
        gw.port,
        &format!(
            "PATCH /endpoints/{id} HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            2 * LIMIT
        ),
    );

    raw_error(&raw, 415, "unsupported_media_type");
}

#[tokio::test]
async fn patch_checks_413_before_400() {
    let gw = Gateway::start();
    let id = create_id(&gw, "GET", "/o", 200, "").await;

    let raw = send_chunked(
        gw.port,
        &format!(
            "PATCH /endpoints/{id} HTTP/1.1\r\nHost: t\r\nContent-Type: {JSONAPI}\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        &vec![b'x'; LIMIT + 1],
    );

    raw_error(&raw, 413, "payload_too_large");
}

#[tokio::test]
async fn patch_checks_400_before_404() {
    let gw = Gateway::start();

    let r = admin_text(&gw, Method::PATCH, "/endpoints/999", JSONAPI, "not json").await;

    error(&r, 400, "bad_request");
}

#[tokio::test]
async fn patch_checks_404_before_409_type_and_id() {
    let gw = Gateway::start();
    create_id(&gw, "GET", "/o", 200, "").await;

    let r = patch(
        &gw,
        "999",
        &json!({"data": {"type": "people", "id": "5", "attributes": {}}}),
    )
    .await;

    assert_detail(&r, 404, "not_found", &endpoint_missing("999"));
}

#[tokio::test]
async fn patch_checks_409_type_and_id_before_422() {
    let gw = Gateway::start();
    let id = create_id(&gw, "GET", "/o", 200, "").await;

    let wrong_type = patch(
        &gw,
        &id,
        &json!({"data": {"type": "people", "id": id, "attributes": {"verb": "get"}}}),
    )
    .await;
    let wrong_id = patch(&gw, &id, &patch_doc("999", json!({"verb": "get"}))).await;

    error(&wrong_type, 409, "conflict");
    error(&wrong_id, 409, "conflict");
}

#[tokio::test]
async fn patch_checks_422_before_409_pair() {
    let gw = Gateway::start();
    create_id(&gw, "GET", "/a", 200, "").await;
    let b = create_id(&gw, "GET", "/b", 200, "").await;

    let r = patch(
        &gw,
        &b,
        &patch_doc(&b, json!({"path": "/a", "response": {"code": 99}})),
    )
    .await;

    assert_invalid(
        &r,
        &["/data/attributes/response/code"],
        "taken pair, bad code",
    );
}

// ---------------------------------------------------------------------------
// Validation rules (section 4)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn verb_takes_the_eight_methods_exactly() {
    let gw = Gateway::start();
    let verbs = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE",
    ];

    for v in verbs {
        create(&gw, attrs(v, "/v", json!({"code": 200}))).await;
    }
    for bad in [
        json!("get"),
        json!("Post"),
        json!("CONNECT"),
        json!("PURGE"),
        json!("PROPFIND"),
        json!(""),
        json!(" GET"),
        json!(1),
        json!(["GET"]),
        Value::Null,
    ] {
        let mut a = attrs("GET", "/w", json!({"code": 200}));
        a["verb"] = bad;
        rejected(&gw, a, "/data/attributes/verb").await;
    }

    assert_eq!(list(&gw).await.len(), verbs.len());
    for v in verbs {
        assert_eq!(call(&gw, method(v), "/v").await.status, 200, "{v}");
    }
    // Request methods are case-sensitive too: `get` is not GET.
    let raw = raw_request(
        gw.port,
        "get /v HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    raw_error(&raw, 404, "not_found");
}

#[tokio::test]
async fn path_is_required_and_a_string() {
    let gw = Gateway::start();

    rejected(
        &gw,
        json!({"verb": "GET", "response": {"code": 200}}),
        "/data/attributes/path",
    )
    .await;
    for bad in [Value::Null, json!(5), json!(["/a"]), json!({"p": "/a"})] {
        rejected(
            &gw,
            json!({"verb": "GET", "path": bad, "response": {"code": 200}}),
            "/data/attributes/path",
        )
        .await;
    }

    assert_eq!(list(&gw).await, Vec::<Value>::new());
}

#[tokio::test]
async fn path_is_1_to_2048_bytes_and_starts_with_a_slash() {
    let gw = Gateway::start();
    let longest = format!("/{}", "a".repeat(2047));

    for bad in [
        String::new(),
        "a".to_string(),
        "hello/world".to_string(),
        "*".to_string(),
        format!("/{}", "a".repeat(2048)),
    ] {
        rejected(
            &gw,
            with_response(&bad, json!({"code": 200})),
            "/data/attributes/path",
        )
        .await;
    }
    create(
        &gw,
        with_response("/", json!({"code": 200, "body": "root"})),
    )
    .await;
    create(
        &gw,
        with_response(&longest, json!({"code": 200, "body": "long"})),
    )
    .await;

    assert_eq!(list(&gw).await.len(), 2);
    assert_eq!(call(&gw, Method::GET, "/").await.text(), "root");
    assert_eq!(call(&gw, Method::GET, &longest).await.text(), "long");
}

#[tokio::test]
async fn path_takes_pchars_and_percent_escapes_only() {
    let gw = Gateway::start();

    for good in [
        "/AZaz09-._~!$&'()*+,;=:@",
        "/a/b/c/",
        "/caf%C3%A9",
        "/%2f%2F%00%ff",
        "/a//b",
    ] {
        create(&gw, with_response(good, json!({"code": 200}))).await;
    }
    for bad in [
        "/a b", "/a?b", "/a?", "/a#b", "/#", "/é", "/a\u{7f}", "/a\tb", "/a\nb", "/a\"b", "/a<b>",
        "/a\\b", "/a[b]", "/a|b", "/a^b", "/a`b", "/%", "/%2", "/a%zz", "/a%g0", "/%%41",
    ] {
        rejected(
            &gw,
            with_response(bad, json!({"code": 200})),
            "/data/attributes/path",
        )
        .await;
    }

    assert_eq!(list(&gw).await.len(), 5);
}

#[tokio::test]
async fn admin_paths_are_reserved_on_the_shared_listener() {
    let gw = Gateway::start();

    for bad in [
        "/endpoints",
        "/endpoints/",
        "/endpoints/x",
        "/endpoints/1/x",
    ] {
        rejected(
            &gw,
            with_response(bad, json!({"code": 200})),
            "/data/attributes/path",
        )
        .await;
    }
    for good in ["/endpointsx", "/endpoint", "/x/endpoints", "/Endpoints"] {
        create(&gw, with_response(good, json!({"code": 200, "body": good}))).await;
    }

    assert_eq!(list(&gw).await.len(), 4);
    assert_eq!(
        call(&gw, Method::GET, "/endpointsx").await.text(),
        "/endpointsx"
    );
}

#[tokio::test]
async fn admin_paths_are_ordinary_paths_with_a_separate_admin_listener() {
    let gw = Gateway::start_with(Options {
        admin_listener: true,
        ..Options::default()
    });

    let root = admin(
        &gw,
        Method::POST,
        "/endpoints",
        Some(&doc(with_response(
            "/endpoints",
            json!({"code": 200, "body": "mocked list"}),
        ))),
    )
    .await;
    let sub = create(
        &gw,
        with_response("/endpoints/x", json!({"code": 200, "body": "mocked x"})),
    )
    .await;

    assert_eq!(root.status, 201, "{}", root.text());
    assert_eq!(root.header("location"), Some(gw.url("/endpoints")));
    assert_eq!(sub["attributes"]["path"], "/endpoints/x");
    assert_eq!(
        call(&gw, Method::GET, "/endpoints").await.text(),
        "mocked list"
    );
    assert_eq!(
        call(&gw, Method::GET, "/endpoints/x").await.text(),
        "mocked x"
    );
    assert_eq!(list(&gw).await.len(), 2);
}

#[tokio::test]
async fn response_code_is_an_integer_from_200_to_599() {
    let gw = Gateway::start();

    for (i, code) in [200, 201, 404, 500, 599].into_iter().enumerate() {
        create(
            &gw,
            with_response(&format!("/ok{i}"), json!({"code": code})),
        )
        .await;
    }
    for bad in [
        json!(199),
        json!(100),
        json!(600),
        json!(0),
        json!(-200),
        json!(200.5),
        json!(2.5e2),
        json!("200"),
        json!(true),
        json!(null),
        json!([200]),
    ] {
        rejected(
            &gw,
            with_response("/bad", json!({"code": bad})),
            "/data/attributes/response/code",
        )
        .await;
    }
    rejected(
        &gw,
        with_response("/bad", json!({"body": "x"})),
        "/data/attributes/response/code",
    )
    .await;
    for bad in [Value::Null, json!(200), json!("200"), json!([])] {
        let mut a = with_response("/bad", json!({}));
        a["response"] = bad;
        rejected(&gw, a, "/data/attributes/response").await;
    }

    assert_eq!(list(&gw).await.len(), 5);
    assert_eq!(call(&gw, Method::GET, "/ok4").await.status, 599);
}

#[tokio::test]
async fn headers_are_an_object_of_strings() {
    let gw = Gateway::start();

    for bad in [json!("X-A: 1"), json!(["X-A", "1"]), json!(5), json!(true)] {
        rejected(
            &gw,
            with_response("/h", json!({"code": 200, "headers": bad})),
            "/data/attributes/response/headers",
        )
        .await;
    }
    for bad in [json!(1), json!(true), json!(["1"]), json!({"v": "1"})] {
        rejected(
            &gw,
            with_response("/h", json!({"code": 200, "headers": {"X-A": bad}})),
            "/data/attributes/response/headers/X-A",
        )
        .await;
    }
    let created = create(
        &gw,
        with_response(
            "/h",
            json!({"code": 200, "headers": {"X-A": "1", "X-B": ""}}),
        ),
    )
    .await;

    assert_eq!(
        created["attributes"]["response"]["headers"],
        json!({"X-A": "1", "X-B": ""})
    );
    assert_eq!(list(&gw).await.len(), 1);
}

#[tokio::test]
async fn header_names_are_tokens() {
    let gw = Gateway::start();

    for bad in ["Bad Name", "X:Y", "", "X(1)", "Nämé", "X\"Q", "X/Y", "X\tY"] {
        let pointer = format!(
            "/data/attributes/response/headers/{}",
            bad.replace('~', "~0").replace('/', "~1")
        );
        rejected(
            &gw,
            with_response("/h", json!({"code": 200, "headers": {bad: "v"}})),
            &pointer,
        )
        .await;
    }
    create(
        &gw,
        with_response(
            "/h",
            json!({"code": 200, "headers": {"X-Odd!#$%&'*+.^_`|~1": "v"}}),
        ),
    )
    .await;

    let served = call(&gw, Method::GET, "/h").await;
    assert_eq!(served.header("x-odd!#$%&'*+.^_`|~1").as_deref(), Some("v"));
}

#[tokio::test]
async fn header_values_are_printable_ascii_without_cr_or_lf() {
    let gw = Gateway::start();

    for bad in [
        "a\r\nX-Injected: 1",
        "a\nb",
        "a\rb",
        "caf\u{e9}",
        "a\u{0}b",
        "a\u{7f}",
        "\u{1b}[31m",
    ] {
        rejected(
            &gw,
            with_response("/h", json!({"code": 200, "headers": {"X-A": bad}})),
            "/data/attributes/response/headers/X-A",
        )
        .await;
    }
    create(
        &gw,
        with_response(
            "/h",
            json!({"code": 200, "headers": {"X-A": "a\tb ~!\"<>{}", "X-B": "x y"}}),
        ),
    )
    .await;

    let served = call(&gw, Method::GET, "/h").await;
    assert_eq!(served.header("x-a").as_deref(), Some("a\tb ~!\"<>{}"));
    assert_eq!(served.header("x-b").as_deref(), Some("x y"));
    assert_eq!(served.header("x-injected"), None);
}

#[tokio::test]
async fn header_names_equal_ignoring_case_are_rejected() {
    let gw = Gateway::start();

    rejected(
        &gw,
        with_response(
            "/h",
            json!({"code": 200, "headers": {"X-Dup": "1", "x-dup": "2"}}),
        ),
        "/data/attributes/response/headers/x-dup",
    )
    .await;
    rejected(
        &gw,
        with_response(
            "/h",
            json!({"code": 200, "headers": {"content-type": "a/b", "Content-Type": "c/d"}}),
        ),
        "/data/attributes/response/headers/Content-Type",
    )
    .await;

    assert_eq!(list(&gw).await, Vec::<Value>::new());
}

#[tokio::test]
async fn server_owned_headers_are_rejected() {
    let gw = Gateway::start();

    for name in [
        "Content-Length",
        "transfer-encoding",
        "CONNECTION",
        "Keep-Alive",
        "Upgrade",
        "TE",
        "Trailer",
        "Proxy-Connection",
    ] {
        rejected(
            &gw,
            with_response("/h", json!({"code": 200, "headers": {name: "1"}})),
            &format!("/data/attributes/response/headers/{name}"),
        )
        .await;
    }
    create(
        &gw,
        with_response(
            "/h",
            json!({"code": 200, "headers": {"Content-Language": "en", "X-Connection": "1", "Trailers": "x"}}),
        ),
    )
    .await;

    assert_eq!(list(&gw).await.len(), 1);
}

#[tokio::test]
async fn body_is_a_string_or_null() {
    let gw = Gateway::start();

    for bad in [
        json!({"message": "hi"}),
        json!(5),
        json!(true),
        json!(["a"]),
    ] {
        rejected(
            &gw,
            with_response("/b", json!({"code": 200, "body": bad})),
            "/data/attributes/response/body",
        )
        .await;
    }
    let text = create(
        &gw,
        with_response("/text", json!({"code": 200, "body": "{\"a\": 1}"})),
    )
    .await;

    assert_eq!(text["attributes"]["response"]["body"], "{\"a\": 1}");
    assert_eq!(list(&gw).await.len(), 1);
}

#[tokio::test]
async fn no_body_for_204_and_304() {
    let gw = Gateway::start();

    for code in [204, 304] {
        rejected(
            &gw,
            with_response("/n", json!({"code": code, "body": "x"})),
            "/data/attributes/response/body",
        )
        .await;
    }
    create(&gw, with_response("/204", json!({"code": 204, "body": ""}))).await;
    create(
        &gw,
        with_response("/304", json!({"code": 304, "body": null})),
    )
    .await;
    create(
        &gw,
        with_response("/200", json!({"code": 200, "body": "x"})),
    )
    .await;

    assert_eq!(list(&gw).await.len(), 3);
    let served = call(&gw, Method::GET, "/204").await;
    assert_eq!(served.status, 204);
    assert!(served.body.is_empty());
}

#[tokio::test]
async fn null_or_absent_headers_and_body_come_back_as_empty() {
    let gw = Gateway::start();

    let nulls = create(
        &gw,
        with_response(
            "/nulls",
            json!({"code": 200, "headers": null, "body": null}),
        ),
    )
    .await;
    let absent = create(&gw, with_response("/absent", json!({"code": 200}))).await;

    for data in [&nulls, &absent] {
        assert_eq!(
            data["attributes"]["response"],
            json!({"code": 200, "headers": {}, "body": ""})
        );
    }
    let served = call(&gw, Method::GET, "/nulls").await;
    assert_eq!((served.status, served.body.len()), (200, 0));
}

#[tokio::test]
async fn unknown_attributes_are_ignored_and_not_echoed() {
    let gw = Gateway::start();

    let created = create(
        &gw,
        json!({"verb": "GET", "path": "/u", "color": "red",
               "response": {"code": 200, "body": "b", "extra": {"x": 1}}}),
    )
    .await;

    assert_eq!(
        created["attributes"],
        json!({"verb": "GET", "path": "/u", "response": {"code": 200, "headers": {}, "body": "b"}})
    );
    assert_eq!(get_data(&gw, &id_of(&created)).await, created);
}

// ---------------------------------------------------------------------------
// Serving mocks (section 5)
// ---------------------------------------------------------------------------

/// Headers the HTTP layer may add to a mock's own (spec 5): framing
/// (`Content-Length`, and `Connection` for keep-alive), `Date`, `Server`.
const LAYER_HEADERS: &[&str] = &["content-length", "connection", "date", "server"];

#[tokio::test]
async fn a_mock_sends_exactly_its_headers_and_no_invented_content_type() {
    let gw = Gateway::start();
    create(
        &gw,
        with_response(
            "/h",
            json!({"code": 200, "body": "x", "headers": {
                "Content-Type": "text/plain; charset=utf-8", "X-One": "1", "Cache-Control": "no-store"}}),
        ),
    )
    .await;
    create(
        &gw,
        with_response("/plain", json!({"code": 200, "body": "{\"a\":1}"})),
    )
    .await;

    let with = call(&gw, Method::GET, "/h").await;
    let without = call(&gw, Method::GET, "/plain").await;

    assert_eq!(
        with.header("content-type").as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(with.header("x-one").as_deref(), Some("1"));
    assert_eq!(with.header("cache-control").as_deref(), Some("no-store"));
    for name in with.headers.keys() {
        assert!(
            ["content-type", "x-one", "cache-control"].contains(&name.as_str())
                || LAYER_HEADERS.contains(&name.as_str()),
            "unexpected header {name}"
        );
    }
    assert_eq!(without.header("content-type"), None);
    for name in without.headers.keys() {
        assert!(
            LAYER_HEADERS.contains(&name.as_str()),
            "unexpected header {name}"
        );
    }
}

#[tokio::test]
async fn a_mock_sends_its_body_verbatim_with_its_length() {
    let gw = Gateway::start();
    let body = "\"quoted\" {\"json\": true} \\n ünïcödé ✓ 🚀\n\ttab";
    create(&gw, attrs("POST", "/v", json!({"code": 418, "body": body}))).await;

    let r = call(&gw, Method::POST, "/v").await;

    assert_eq!(r.status, 418);
    assert_eq!(r.body, body.as_bytes());
    assert_eq!(r.header("content-length"), Some(body.len().to_string()));
}

#[tokio::test]
async fn the_query_string_is_ignored() {
    let gw = Gateway::start();
    create(&gw, with_response("/q", json!({"code": 200, "body": "q"}))).await;

    for path in ["/q", "/q?a=1&b=2", "/q?", "/q?/endpoints"] {
        let r = call(&gw, Method::GET, path).await;

        assert_eq!((r.status, r.text()), (200, "q".to_string()), "{path}");
    }
}

#[tokio::test]
async fn verbs_on_one_path_are_independent_mocks() {
    let gw = Gateway::start();
    let get = create_id(&gw, "GET", "/m", 200, "get").await;
    create_id(&gw, "POST", "/m", 201, "post").await;

    let g = call(&gw, Method::GET, "/m").await;
    let p = call(&gw, Method::POST, "/m").await;
    let put = call(&gw, Method::PUT, "/m").await;
    let deleted = admin(&gw, Method::DELETE, &format!("/endpoints/{get}"), None).await;
    let g_after = call(&gw, Method::GET, "/m").await;
    let p_after = call(&gw, Method::POST, "/m").await;

    assert_eq!((g.status, g.text()), (200, "get".to_string()));
    assert_eq!((p.status, p.text()), (201, "post".to_string()));
    assert_detail(&put, 404, "not_found", &page_missing("/m"));
    assert_eq!(deleted.status, 204);
    assert_detail(&g_after, 404, "not_found", &page_missing("/m"));
    assert_eq!((p_after.status, p_after.text()), (201, "post".to_string()));
}

#[tokio::test]
async fn paths_are_matched_without_case_or_slash_folding() {
    let gw = Gateway::start();
    create(
        &gw,
        with_response("/Case/Path", json!({"code": 200, "body": "case"})),
    )
    .await;
    create(
        &gw,
        with_response("/slash/", json!({"code": 200, "body": "slash"})),
    )
    .await;
    create(
        &gw,
        with_response("/a/b", json!({"code": 200, "body": "ab"})),
    )
    .await;

    for miss in ["/case/path", "/CASE/PATH", "/Case/Path/", "/slash", "/a/b/"] {
        assert_eq!(call(&gw, Method::GET, miss).await.status, 404, "{miss}");
    }
    assert_eq!(call(&gw, Method::GET, "/Case/Path").await.text(), "case");
    assert_eq!(call(&gw, Method::GET, "/slash/").await.text(), "slash");
    // Dot segments are not removed (raw: a client library would remove them).
    for miss in ["/a/./b", "/a/x/../b"] {
        let raw = raw_request(
            gw.port,
            &format!("GET {miss} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        );
        raw_error(&raw, 404, "not_found");
    }
}

#[tokio::test]
async fn percent_escapes_are_matched_byte_for_byte() {
    let gw = Gateway::start();
    create(
        &gw,
        with_response("/caf%C3%A9", json!({"code": 200, "body": "cafe"})),
    )
    .await;
    create(
        &gw,
        with_response("/a%2Fb", json!({"code": 200, "body": "slash"})),
    )
    .await;
    let get = |path: &str| {
        raw_request(
            gw.port,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
    };

    let hit = get("/caf%C3%A9");
    let hit_slash = get("/a%2Fb");

    assert_eq!(split_raw(&hit).1, "cafe");
    assert_eq!(split_raw(&hit_slash).1, "slash");
    for miss in ["/caf%c3%a9", "/a%2fb", "/a/b", "/caf%C3%a9"] {
        let detail = raw_error(&get(miss), 404, "not_found");
        assert_eq!(detail, page_missing(miss));
    }
}

#[tokio::test]
async fn head_matches_only_a_head_mock_and_never_has_a_body() {
    let gw = Gateway::start();
    create(
        &gw,
        attrs(
            "HEAD",
            "/h",
            json!({"code": 200, "headers": {"X-H": "1"}, "body": "hello"}),
        ),
    )
    .await;
    create(
        &gw,
        attrs("GET", "/g", json!({"code": 200, "body": "get body"})),
    )
    .await;
    let head = |path: &str| {
        raw_request(
            gw.port,
            &format!("HEAD {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
    };

    let hit = head("/h");
    let get_of_head_mock = call(&gw, Method::GET, "/h").await;

    let (hit_head, hit_body) = split_raw(&hit);
    assert_eq!(raw_status(hit_head), 200, "{hit}");
    assert_eq!(raw_header(hit_head, "content-length").as_deref(), Some("5"));
    assert_eq!(raw_header(hit_head, "x-h").as_deref(), Some("1"));
    assert_eq!(hit_body, "", "a HEAD answer has no body");
    assert_detail(&get_of_head_mock, 404, "not_found", &page_missing("/h"));

    // No implicit HEAD for a GET mock: a miss, without a body.
    let miss = head("/g");
    let (miss_head, miss_body) = split_raw(&miss);
    assert_eq!(raw_status(miss_head), 404, "{miss}");
    assert_eq!(
        raw_header(miss_head, "content-type").as_deref(),
        Some(JSONAPI)
    );
    assert_eq!(miss_body, "", "a HEAD miss has no body");
    // A HEAD miss has the status and headers of a GET miss.
    let head_miss = head("/nope");
    let get_miss = raw_request(
        gw.port,
        "GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let (head_miss_head, head_miss_body) = split_raw(&head_miss);
    let (get_miss_head, get_miss_body) = split_raw(&get_miss);
    assert_eq!(head_miss_body, "");
    assert_eq!(raw_status(head_miss_head), raw_status(get_miss_head));
    for name in ["content-type", "content-length"] {
        assert_eq!(
            raw_header(head_miss_head, name),
            raw_header(get_miss_head, name),
            "{name}"
        );
    }
    assert_eq!(
        raw_header(get_miss_head, "content-length"),
        Some(get_miss_body.len().to_string())
    );
}

#[tokio::test]
async fn options_is_answered_only_by_an_options_mock() {
    let gw = Gateway::start();
    create(
        &gw,
        with_response("/o", json!({"code": 200, "body": "get"})),
    )
    .await;

    let before = call(&gw, Method::OPTIONS, "/o").await;
    create(
        &gw,
        attrs(
            "OPTIONS",
            "/o",
            json!({"code": 204, "headers": {"Allow": "GET, OPTIONS"}}),
        ),
    )
    .await;
    let after = call(&gw, Method::OPTIONS, "/o").await;

    assert_detail(&before, 404, "not_found", &page_missing("/o"));
    assert_eq!(before.header("allow"), None);
    assert_eq!(before.header("access-control-allow-origin"), None);
    assert_eq!(after.status, 204);
    assert_eq!(after.header("allow").as_deref(), Some("GET, OPTIONS"));
    assert!(after.body.is_empty());
}

#[tokio::test]
async fn keep_alive_serves_several_requests_on_one_connection() {
    let gw = Gateway::start();
    create(
        &gw,
        attrs("POST", "/ka", json!({"code": 201, "body": "posted"})),
    )
    .await;
    let create_kb = doc(attrs("GET", "/kb", json!({"code": 200, "body": "got"}))).to_string();
    let mut s = connect(gw.port);
    let mut exchange = |request: String| {
        s.write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("write: {e}"));
        read_response(&mut s)
    };

    let (h1, b1) = exchange(
        "POST /ka HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world".to_string(),
    );
    let (h2, _) = exchange(format!(
        "POST /endpoints HTTP/1.1\r\nHost: t\r\nContent-Type: {JSONAPI}\r\nContent-Length: {}\r\n\r\n{create_kb}",
        create_kb.len()
    ));
    let (h3, b3) = exchange("GET /kb HTTP/1.1\r\nHost: t\r\n\r\n".to_string());
    let (h4, b4) = exchange("GET /endpoints HTTP/1.1\r\nHost: t\r\n\r\n".to_string());

    assert_eq!((raw_status(&h1), b1.as_str()), (201, "posted"));
    assert_eq!(raw_status(&h2), 201);
    assert_eq!((raw_status(&h3), b3.as_str()), (200, "got"));
    assert_eq!(raw_status(&h4), 200);
    let listed: Value = serde_json::from_str(&b4).unwrap_or_else(|e| panic!("{e}: {b4}"));
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn keep_alive_works_on_a_separate_admin_listener() {
    let gw = Gateway::start_with(Options {
        admin_listener: true,
        ..Options::default()
    });
    let admin_port = gw.admin_port.unwrap_or_else(|| panic!("no admin port"));
    let body = doc(attrs("GET", "/k", json!({"code": 200, "body": "k"}))).to_string();
    let mut s = connect(admin_port);

    s.write_all(
        format!(
            "POST /endpoints HTTP/1.1\r\nHost: t\r\nContent-Type: {JSONAPI}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap_or_else(|e| panic!("write: {e}"));
    let (h1, b1) = read_response(&mut s);
    let id = id_of(&serde_json::from_str::<Value>(&b1).unwrap_or_else(|e| panic!("{e}"))["data"]);
    s.write_all(
        format!("DELETE /endpoints/{id} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
            .as_bytes(),
    )
    .unwrap_or_else(|e| panic!("write: {e}"));
    let (h2, b2) = read_response(&mut s);
    s.write_all(b"GET /endpoints HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap_or_else(|e| panic!("write: {e}"));
    let (h3, b3) = read_response(&mut s);

    assert_eq!(raw_status(&h1), 201);
    assert_eq!((raw_status(&h2), b2.as_str()), (204, ""));
    assert_eq!((raw_status(&h3), b3.as_str()), (200, "{\"data\":[]}"));
}

// ---------------------------------------------------------------------------
// Listeners and the admin token (section 7)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_separate_admin_listener_leaves_endpoints_to_the_mocks() {
    let gw = Gateway::start_with(Options {
        admin_listener: true,
        ..Options::default()
    });
    let admin_port = gw.admin_port.unwrap_or_else(|| panic!("no admin port"));
    assert_ne!(admin_port, gw.port);

    let on_mock_port = call(&gw, Method::GET, "/endpoints").await;
    let post_on_mock_port = request(
        Method::POST,
        gw.url("/endpoints"),
        &[("Content-Type", JSONAPI)],
        Some(doc(with_response("/x", json!({"code": 200}))).to_string()),
    )
    .await;
    let r = admin(
        &gw,
        Method::POST,
        "/endpoints",
        Some(&doc(with_response(
            "/other",
            json!({"code": 200, "body": "mock"}),
        ))),
    )
    .await;
    let served = call(&gw, Method::GET, "/other").await;
    let not_on_admin_port = request(
        Method::GET,
        format!("http://127.0.0.1:{admin_port}/other"),
        &[],
        None,
    )
    .await;

    assert_detail(&on_mock_port, 404, "not_found", &page_missing("/endpoints"));
    assert_detail(
        &post_on_mock_port,
        404,
        "not_found",
        &page_missing("/endpoints"),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("location"), Some(gw.url("/other")));
    assert_eq!(served.text(), "mock");
    assert_detail(
        &not_on_admin_port,
        404,
        "not_found",
        &page_missing("/other"),
    );
    assert_eq!(list(&gw).await.len(), 1);
}

#[tokio::test]
async fn a_configured_token_is_required_on_the_admin_api_only() {
    let gw = Gateway::start_with(Options {
        config: Some("[admin]\ntoken = \"s3cret\"\n".to_string()),
        ..Options::default()
    });
    let url = gw.admin_url("/endpoints");
    let body = doc(with_response("/t", json!({"code": 200, "body": "free"}))).to_string();
    let ct = ("Content-Type", JSONAPI);

    let none = request(Method::GET, url.clone(), &[], None).await;
    let wrong = request(
        Method::GET,
        url.clone(),
        &[("Authorization", "Bearer nope")],
        None,
    )
    .await;
    let basic = request(
        Method::GET,
        url.clone(),
        &[("Authorization", "Basic czNjcmV0")],
        None,
    )
    .await;
    let post_without = request(Method::POST, url.clone(), &[ct], Some(body.clone())).await;
    let post_with = request(
        Method::POST,
        url.clone(),
        &[ct, ("Authorization", "Bearer s3cret")],
        Some(body),
    )
    .await;
    let list_with = request(
        Method::GET,
        url,
        &[("Authorization", "Bearer s3cret")],
        None,
    )
    .await;
    let mock = call(&gw, Method::GET, "/t").await;

    for r in [&none, &wrong, &basic, &post_without] {
        error(r, 401, "unauthorized");
    }
    assert_eq!(post_with.status, 201, "{}", post_with.text());
    assert_eq!(list_with.status, 200);
    assert_eq!(list_with.json()["data"].as_array().map(Vec::len), Some(1));
    assert_eq!((mock.status, mock.text()), (200, "free".to_string()));
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_one_pair_give_one_201() {
    let gw = Gateway::start();
    let http = client();
    let url = gw.admin_url("/endpoints");
    let body = doc(attrs("GET", "/race", json!({"code": 200, "body": "won"}))).to_string();
    let mut tasks = tokio::task::JoinSet::new();

    for _ in 0..200 {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        tasks.spawn(async move {
            let r = http
                .post(url)
                .header("Content-Type", JSONAPI)
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("request failed: {e}"));
            r.status().as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(s) = tasks.join_next().await {
        statuses.push(s.unwrap_or_else(|e| panic!("task failed: {e}")));
    }

    let created = statuses.iter().filter(|s| **s == 201).count();
    let conflicts = statuses.iter().filter(|s| **s == 409).count();
    assert_eq!((created, conflicts), (1, 199), "{statuses:?}");
    assert_eq!(list(&gw).await.len(), 1);
    assert_eq!(call(&gw, Method::GET, "/race").await.text(), "won");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_of_distinct_paths_all_succeed() {
    let gw = Gateway::start();
    let http = client();
    let url = gw.admin_url("/endpoints");
    let mut tasks = tokio::task::JoinSet::new();

    for i in 0..200 {
        let (http, url) = (http.clone(), url.clone());
        let body = doc(attrs(
            "GET",
            &format!("/c/{i}"),
            json!({"code": 200, "body": format!("n{i}")}),
        ))
        .to_string();
        tasks.spawn(async move {
            let r = http
                .post(url)
                .header("Content-Type", JSONAPI)
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("request failed: {e}"));
            r.status().as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(s) = tasks.join_next().await {
        statuses.push(s.unwrap_or_else(|e| panic!("task failed: {e}")));
    }

    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    let listed = list(&gw).await;
    assert_eq!(listed.len(), 200);
    let mut ids: Vec<String> = listed.iter().map(id_of).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200, "ids are unique");
    let mut paths: Vec<String> = listed
        .iter()
        .map(|d| {
            d["attributes"]["path"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    paths.sort();
    let mut want: Vec<String> = (0..200).map(|i| format!("/c/{i}")).collect();
    want.sort();
    assert_eq!(paths, want);
    for i in 0..200 {
        let r = call(&gw, Method::GET, &format!("/c/{i}")).await;
        assert_eq!((r.status, r.text()), (200, format!("n{i}")));
    }
}

/// Many creates (more than a router adds without compiling the whole table
/// again), with templates, a delete and an update among them: every
/// endpoint is served, and a create onto a taken route is still refused.
#[tokio::test]
async fn many_creates_are_all_served_and_still_conflict() {
    let gw = Gateway::start();
    let mut ids = Vec::new();
    for i in 0..120 {
        let path = if i % 10 == 9 {
            format!("/tpl/{i}/{{x}}")
        } else {
            format!("/many/{i}")
        };
        ids.push(create_id(&gw, "GET", &path, 200, &format!("body {i}")).await);
    }
    let deleted = admin(
        &gw,
        Method::DELETE,
        &format!("/endpoints/{}", ids[50]),
        None,
    )
    .await;
    assert_eq!(deleted.status, 204, "{}", deleted.text());
    let moved = patch(
        &gw,
        &ids[60],
        &patch_doc(&ids[60], json!({"path": "/moved"})),
    )
    .await;
    assert_eq!(moved.status, 200, "{}", moved.text());
    for i in 120..160 {
        ids.push(create_id(&gw, "GET", &format!("/many/{i}"), 200, &format!("body {i}")).await);
    }

    for i in 0..160 {
        let (path, want) = match i {
            50 => (format!("/many/{i}"), None),
            60 => ("/moved".to_string(), Some(format!("body {i}"))),
            _ if i < 120 && i % 10 == 9 => {
                (format!("/tpl/{i}/anything"), Some(format!("body {i}")))
            }
            _ => (format!("/many/{i}"), Some(format!("body {i}"))),
        };
        let r = call(&gw, Method::GET, &path).await;
        match want {
            Some(body) => {
                assert_eq!(r.status, 200, "{path}");
                assert_eq!(r.text(), body, "{path}");
            }
            None => assert_eq!(r.status, 404, "{path}"),
        }
    }
    assert_eq!(call(&gw, Method::GET, "/many/60").await.status, 404);

    let taken = admin(
        &gw,
        Method::POST,
        "/endpoints",
        Some(&doc(attrs("GET", "/many/150", json!({"code": 200})))),
    )
    .await;
    let e = error(&taken, 409, "conflict");
    assert!(
        e["detail"].as_str().is_some_and(|d| d.contains(&ids[150])),
        "{e}"
    );
    // The deleted and the moved endpoints' routes are free again.
    create_id(&gw, "GET", "/many/50", 200, "again").await;
    create_id(&gw, "GET", "/many/60", 200, "again").await;
    assert_eq!(call(&gw, Method::GET, "/many/60").await.text(), "again");
    assert_eq!(list(&gw).await.len(), 161);
}
