//! Request conditions (`match`): query parameters, headers, cookies and the
//! body; priority and age between endpoints on one path; the `ANY` verb; the
//! body read limit and what falls through to an upstream. Each feature is
//! served from a TOML file and from the admin API alike, and its errors are
//! checked as `file:line:col` and as a JSON pointer.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// Sends a request; returns the status and the body.
async fn call(
    gw: &Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> (u16, String) {
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client().request(method, gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// The body of a request expected to be answered 200 by a mock; `404` when
/// no mock answered (the Echo 404).
async fn answer(
    gw: &Gateway,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> String {
    match call(gw, method, path, headers, body).await {
        (200, text) => text,
        (404, _) => "404".into(),
        (status, text) => panic!("{method} {path}: unexpected {status}: {text}"),
    }
}

async fn get(gw: &Gateway, path: &str) -> String {
    answer(gw, "GET", path, &[], None).await
}

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write");
    }
    dir
}

// ---------------------------------------------------------------- query

const QUERY_TOML: &str = r#"
[[endpoints]]
id = "debug"
verb = "GET"
path = "/items"
priority = 40
match = { query = { debug = { present = true } } }
response = { code = 200, body = "debug" }

[[endpoints]]
id = "open"
verb = "GET"
path = "/items"
priority = 30
match.query.status = "open"
response = { code = 200, body = "open" }

[[endpoints]]
id = "closed"
verb = "GET"
path = "/items"
priority = 30
match.query.status = { equals = "closed" }
response = { code = 200, body = "closed" }

[[endpoints]]
id = "paged"
verb = "GET"
path = "/items"
priority = 20
[endpoints.match.query]
page = { regex = "^[0-9]+$" }
q = "a b"
[endpoints.response]
code = 200
body = "paged"

[[endpoints]]
id = "anonymous"
verb = "GET"
path = "/items"
priority = 10
match = { query = { token = { present = false } } }
response = { code = 200, body = "anonymous" }

[[endpoints]]
id = "default"
verb = "GET"
path = "/items"
response = { code = 200, body = "default" }
"#;

fn query_endpoints() -> Vec<Value> {
    let e = |prio: i64, m: Value, body: &str| {
        json!({"verb": "GET", "path": "/items", "priority": prio, "match": m,
               "response": {"code": 200, "body": body}})
    };
    vec![
        e(40, json!({"query": {"debug": {"present": true}}}), "debug"),
        e(30, json!({"query": {"status": "open"}}), "open"),
        e(
            30,
            json!({"query": {"status": {"equals": "closed"}}}),
            "closed",
        ),
        e(
            20,
            json!({"query": {"page": {"regex": "^[0-9]+$"}, "q": "a b"}}),
            "paged",
        ),
        e(
            10,
            json!({"query": {"token": {"present": false}}}),
            "anonymous",
        ),
        json!({"verb": "GET", "path": "/items", "response": {"code": 200, "body": "default"}}),
    ]
}

async fn check_query(gw: &Gateway) {
    // present: with or without a value, whatever the others say.
    assert_eq!(get(gw, "/items?debug").await, "debug");
    assert_eq!(get(gw, "/items?status=open&debug=0").await, "debug");
    // equals, written as a plain string or as { equals }; values are
    // percent-decoded and case-sensitive; one of repeated values is enough.
    assert_eq!(get(gw, "/items?status=open&token=t").await, "open");
    assert_eq!(get(gw, "/items?status=%6Fpen&token=t").await, "open");
    assert_eq!(get(gw, "/items?status=x&status=open&token=t").await, "open");
    assert_eq!(get(gw, "/items?status=closed&token=t").await, "closed");
    assert_eq!(get(gw, "/items?status=Open&token=t").await, "default");
    assert_eq!(get(gw, "/items?state=open&token=t").await, "default");
    // regex, and every condition of an endpoint must hold (`+` is a space).
    assert_eq!(get(gw, "/items?page=12&q=a+b&token=t").await, "paged");
    assert_eq!(get(gw, "/items?page=12&q=a%20b&token=t").await, "paged");
    assert_eq!(get(gw, "/items?page=12&token=t").await, "default");
    assert_eq!(get(gw, "/items?page=1x&q=a+b&token=t").await, "default");
    // absent
    assert_eq!(get(gw, "/items").await, "anonymous");
    assert_eq!(get(gw, "/items?page=1").await, "anonymous");
    assert_eq!(get(gw, "/items?token").await, "default");
    assert_eq!(get(gw, "/items?token=").await, "default");
}

#[tokio::test]
async fn query_conditions_from_a_file() {
    let gw = from_file(QUERY_TOML);
    check_query(&gw).await;
}

#[tokio::test]
async fn query_conditions_through_the_admin_api() {
    let gw = from_api(&query_endpoints()).await;
    check_query(&gw).await;
    // The conditions are listed as they were given.
    let (status, list) = send(&gw, Method::GET, "/endpoints", None).await;
    assert_eq!(status, 200);
    let m = &list["data"][3]["attributes"]["match"];
    assert_eq!(
        *m,
        json!({"query": {"page": {"regex": "^[0-9]+$"}, "q": "a b"}})
    );
    assert_eq!(
        list["data"][4]["attributes"]["match"],
        json!({"query": {"token": {"present": false}}})
    );
}

// -------------------------------------------------------- headers, cookies

const HEADER_COOKIE_TOML: &str = r#"
[[endpoints]]
id = "tenant-json"
verb = "GET"
path = "/account"
priority = 3
match.headers = { "X-Tenant" = "acme", "accept" = { regex = "json" } }
response = { code = 200, body = "acme-json" }

[[endpoints]]
id = "tenant"
verb = "GET"
path = "/account"
priority = 2
match.headers."x-tenant" = { equals = "acme" }
response = { code = 200, body = "acme" }

[[endpoints]]
id = "signed-in"
verb = "GET"
path = "/account"
priority = 1
[endpoints.match.cookies]
session = { present = true }
theme = "dark"
[endpoints.response]
code = 200
body = "signed-in-dark"

[[endpoints]]
id = "session-regex"
verb = "GET"
path = "/account"
match.cookies.session = { regex = "^[a-f0-9]{8}$" }
response = { code = 200, body = "hex-session" }

[[endpoints]]
id = "no-auth"
verb = "GET"
path = "/account"
priority = -1
match = { headers = { Authorization = { present = false } }, cookies = { session = { present = false } } }
response = { code = 200, body = "anonymous" }
"#;

fn header_cookie_endpoints() -> Vec<Value> {
    let e = |prio: i64, m: Value, body: &str| {
        json!({"verb": "GET", "path": "/account", "priority": prio, "match": m,
               "response": {"code": 200, "body": body}})
    };
    vec![
        e(
            3,
            json!({"headers": {"X-Tenant": "acme", "accept": {"regex": "json"}}}),
            "acme-json",
        ),
        e(
            2,
            json!({"headers": {"x-tenant": {"equals": "acme"}}}),
            "acme",
        ),
        e(
            1,
            json!({"cookies": {"session": {"present": true}, "theme": "dark"}}),
            "signed-in-dark",
        ),
        e(
            0,
            json!({"cookies": {"session": {"regex": "^[a-f0-9]{8}$"}}}),
            "hex-session",
        ),
        e(
            -1,
            json!({"headers": {"Authorization": {"present": false}},
                   "cookies": {"session": {"present": false}}}),
            "anonymous",
        ),
    ]
}

async fn check_headers_and_cookies(gw: &Gateway) {
    let a = |h: &'static [(&'static str, &'static str)]| answer(gw, "GET", "/account", h, None);
    // Header names are case-insensitive, values are not.
    assert_eq!(a(&[("x-tenant", "acme")]).await, "acme");
    assert_eq!(a(&[("X-TENANT", "acme")]).await, "acme");
    assert_eq!(
        a(&[("X-Tenant", "acme"), ("Accept", "application/json")]).await,
        "acme-json"
    );
    assert_eq!(
        a(&[("X-Tenant", "acme"), ("Accept", "text/html")]).await,
        "acme"
    );
    assert_eq!(a(&[("X-Tenant", "ACME")]).await, "anonymous");
    // Cookies: every one named must hold; any cookie header, any order.
    assert_eq!(
        a(&[("Cookie", "theme=dark; session=zzz")]).await,
        "signed-in-dark"
    );
    assert_eq!(
        a(&[("Cookie", "a=1; session=\"zzz\"; theme=dark")]).await,
        "signed-in-dark"
    );
    assert_eq!(
        a(&[("Cookie", "session=0123abcd; theme=light")]).await,
        "hex-session"
    );
    assert_eq!(a(&[("Cookie", "session=0123abcd")]).await, "hex-session");
    assert_eq!(a(&[("Cookie", "theme=dark")]).await, "anonymous");
    // Absent: neither the header nor the cookie may be there.
    assert_eq!(a(&[]).await, "anonymous");
    assert_eq!(a(&[("Cookie", "session=nothex")]).await, "404");
    assert_eq!(a(&[("authorization", "Bearer x")]).await, "404");
}

#[tokio::test]
async fn header_and_cookie_conditions_from_a_file() {
    let gw = from_file(HEADER_COOKIE_TOML);
    check_headers_and_cookies(&gw).await;
}

#[tokio::test]
async fn header_and_cookie_conditions_through_the_admin_api() {
    let gw = from_api(&header_cookie_endpoints()).await;
    check_headers_and_cookies(&gw).await;
}

// ----------------------------------------------------------------- body

const BODY_TOML: &str = r#"
[[endpoints]]
id = "refund"
verb = "POST"
path = "/orders"
priority = 60
match.body = [ { json_pointer = "/type", equals = "refund" }, { contains = "approved" }, { regex = '"amount":\s*[0-9]+' } ]
response = { code = 200, body = "refund" }

[[endpoints]]
id = "exact"
verb = "POST"
path = "/orders"
priority = 50
match.body = { json = { id = 1, items = ["a", "b"], meta = { gift = true } } }
response = { code = 200, body = "exact" }

[[endpoints]]
id = "gold"
verb = "POST"
path = "/orders"
priority = 40
[endpoints.match]
body = { json_subset = { customer = { tier = "gold" }, items = [ { sku = "x" } ] } }
[endpoints.response]
code = 200
body = "gold"

[[endpoints]]
id = "customer-42"
verb = "POST"
path = "/orders"
priority = 30
match.body = { json_pointer = "/customer/id", equals = 42 }
response = { code = 200, body = "customer-42" }

[[endpoints]]
id = "coupon"
verb = "POST"
path = "/orders"
priority = 20
match.body = { regex = '"coupon":\s*"[A-Z]{4}"' }
response = { code = 200, body = "coupon" }

[[endpoints]]
id = "urgent"
verb = "POST"
path = "/orders"
priority = 10
match.body = [ { contains = "urgent" } ]
response = { code = 200, body = "urgent" }
"#;

fn body_endpoints() -> Vec<Value> {
    let e = |prio: i64, body_match: Value, body: &str| {
        json!({"verb": "POST", "path": "/orders", "priority": prio,
               "match": {"body": body_match}, "response": {"code": 200, "body": body}})
    };
    vec![
        e(
            60,
            json!([{"json_pointer": "/type", "equals": "refund"}, {"contains": "approved"},
                   {"regex": "\"amount\":\\s*[0-9]+"}]),
            "refund",
        ),
        e(
            50,
            json!({"json": {"id": 1, "items": ["a", "b"], "meta": {"gift": true}}}),
            "exact",
        ),
        e(
            40,
            json!({"json_subset": {"customer": {"tier": "gold"}, "items": [{"sku": "x"}]}}),
            "gold",
        ),
        e(
            30,
            json!({"json_pointer": "/customer/id", "equals": 42}),
            "customer-42",
        ),
        e(
            20,
            json!({"regex": "\"coupon\":\\s*\"[A-Z]{4}\""}),
            "coupon",
        ),
        e(10, json!([{"contains": "urgent"}]), "urgent"),
    ]
}

async fn check_body(gw: &Gateway) {
    let p = |body: &'static str| answer(gw, "POST", "/orders", &[], Some(body));
    // json: equal as JSON (member order and number form do not matter)...
    assert_eq!(
        p(r#"{"items":["a","b"],"meta":{"gift":true},"id":1.0}"#).await,
        "exact"
    );
    // ...but no more members, no other array order or length.
    assert_eq!(
        p(r#"{"id":1,"items":["a","b"],"meta":{"gift":true},"x":0}"#).await,
        "404"
    );
    assert_eq!(
        p(r#"{"id":1,"items":["b","a"],"meta":{"gift":true}}"#).await,
        "404"
    );
    // json_subset: extra members and array elements are allowed.
    assert_eq!(
        p(r#"{"customer":{"tier":"gold","id":7},"items":[{"sku":"y"},{"sku":"x","n":2}],"z":1}"#)
            .await,
        "gold"
    );
    assert_eq!(
        p(r#"{"customer":{"tier":"silver"},"items":[{"sku":"x"}]}"#).await,
        "404"
    );
    assert_eq!(p(r#"{"customer":{"tier":"gold"},"items":[]}"#).await, "404");
    // json_pointer equals, numbers by value.
    assert_eq!(p(r#"{"customer":{"id":42.0}}"#).await, "customer-42");
    assert_eq!(p(r#"{"customer":{"id":"42"}}"#).await, "404");
    assert_eq!(p(r#"{"customer":{}}"#).await, "404");
    // regex and contains look at the text, JSON or not.
    assert_eq!(p(r#"{"coupon": "SAVE"}"#).await, "coupon");
    assert_eq!(p(r#"{"coupon": "save"}"#).await, "404");
    assert_eq!(p("this is urgent!").await, "urgent");
    assert_eq!(p("not JSON {").await, "404");
    // Several conditions at once: all of them must hold.
    assert_eq!(
        p(r#"{"type":"refund","status":"approved","amount": 12}"#).await,
        "refund"
    );
    assert_eq!(
        p(r#"{"type":"refund","status":"pending","amount": 12, "note": "urgent"}"#).await,
        "urgent"
    );
    assert_eq!(
        p(r#"{"type":"refund","status":"approved","amount":"12"}"#).await,
        "404"
    );
    assert_eq!(
        p(r#"{"type":"sale","status":"approved","amount": 12}"#).await,
        "404"
    );
    // No body at all matches no body condition.
    assert_eq!(answer(gw, "POST", "/orders", &[], None).await, "404");
}

#[tokio::test]
async fn body_conditions_from_a_file() {
    let gw = from_file(BODY_TOML);
    check_body(&gw).await;
}

#[tokio::test]
async fn body_conditions_through_the_admin_api() {
    let gw = from_api(&body_endpoints()).await;
    check_body(&gw).await;
    let (_, one) = send(&gw, Method::GET, "/endpoints", None).await;
    assert_eq!(
        one["data"][0]["attributes"]["match"]["body"][0],
        json!({"json_pointer": "/type", "equals": "refund"})
    );
    // A single body condition is listed as a list of one.
    assert_eq!(
        one["data"][3]["attributes"]["match"],
        json!({"body": [{"json_pointer": "/customer/id", "equals": 42}]})
    );
}

// ------------------------------------------------------ priority and age

const PRIORITY_TOML: &str = r#"
[[endpoints]]
id = "by-header"
verb = "GET"
path = "/p/{id}"
match.headers.X-A = { present = true }
response = { code = 200, body = "header (older)" }

[[endpoints]]
id = "by-query"
verb = "GET"
path = "/p/{other}"
match.query.x = { present = true }
response = { code = 200, body = "query (newer)" }

[[endpoints]]
id = "vip"
verb = "GET"
path = "/p/{id}"
priority = 5
match.cookies.vip = "yes"
response = { code = 200, body = "vip (priority 5)" }

[[endpoints]]
id = "catch"
verb = "GET"
path = "/p/{id}"
priority = -5
response = { code = 200, body = "no conditions (priority -5)" }
"#;

async fn check_priority(gw: &Gateway) {
    let a = |path: &'static str, h: &'static [(&'static str, &'static str)]| {
        answer(gw, "GET", path, h, None)
    };
    assert_eq!(a("/p/1", &[("X-A", "1")]).await, "header (older)");
    assert_eq!(a("/p/1?x", &[]).await, "query (newer)");
    // Both hold: the same priority, the older one answers.
    assert_eq!(a("/p/1?x", &[("X-A", "1")]).await, "header (older)");
    // A higher priority beats age.
    assert_eq!(
        a("/p/1?x", &[("X-A", "1"), ("Cookie", "vip=yes")]).await,
        "vip (priority 5)"
    );
    assert_eq!(a("/p/1", &[]).await, "no conditions (priority -5)");
}

#[tokio::test]
async fn priority_then_age_decide_between_conditions_from_a_file() {
    let gw = from_file(PRIORITY_TOML);
    check_priority(&gw).await;
}

#[tokio::test]
async fn priority_then_age_decide_between_conditions_through_the_admin_api() {
    let e = |path: &str, prio: Option<i64>, m: Option<Value>, body: &str| {
        let mut a = json!({"verb": "GET", "path": path, "response": {"code": 200, "body": body}});
        if let Some(p) = prio {
            a["priority"] = json!(p);
        }
        if let Some(m) = m {
            a["match"] = m;
        }
        a
    };
    let gw = from_api(&[
        e(
            "/p/{id}",
            None,
            Some(json!({"headers": {"X-A": {"present": true}}})),
            "header (older)",
        ),
        e(
            "/p/{other}",
            None,
            Some(json!({"query": {"x": {"present": true}}})),
            "query (newer)",
        ),
        e(
            "/p/{id}",
            Some(5),
            Some(json!({"cookies": {"vip": "yes"}})),
            "vip (priority 5)",
        ),
        e("/p/{id}", Some(-5), None, "no conditions (priority -5)"),
    ])
    .await;
    check_priority(&gw).await;

    // The same verb, route and conditions: a conflict, whatever the priority.
    let (status, body) = post(
        &gw,
        &doc(e(
            "/p/{x}",
            Some(9),
            Some(json!({"query": {"x": {"present": true}}})),
            "again",
        )),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    // Equal conditions written in another order are the same conditions.
    let both = |q: Value, h: Value| {
        json!({"verb": "GET", "path": "/q", "match": {"query": q, "headers": h},
               "response": {"code": 200}})
    };
    let (status, _) = post(
        &gw,
        &doc(both(
            json!({"a": "1", "b": {"regex": "x"}}),
            json!({"X-Key": "k"}),
        )),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = post(
        &gw,
        &doc(both(
            json!({"b": {"regex": "x"}, "a": "1"}),
            json!({"x-key": "k"}),
        )),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    let (status, _) = post(
        &gw,
        &doc(both(
            json!({"b": {"regex": "x"}, "a": "2"}),
            json!({"x-key": "k"}),
        )),
    )
    .await;
    assert_eq!(status, 201);
    // Other conditions on the same route coexist.
    let (status, body) = post(
        &gw,
        &doc(e(
            "/p/{x}",
            Some(9),
            Some(json!({"query": {"x": "2"}})),
            "x=2 (priority 9)",
        )),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        answer(&gw, "GET", "/p/1?x=2", &[("X-A", "1")], None).await,
        "x=2 (priority 9)"
    );
    // At equal priority the older endpoint still wins.
    assert_eq!(
        answer(&gw, "GET", "/p/1?x=1", &[("X-A", "1")], None).await,
        "header (older)"
    );
}

#[tokio::test]
async fn runtime_endpoints_are_younger_than_file_endpoints() {
    let gw = from_file(PRIORITY_TOML);
    // Same conditions as a file endpoint: it shadows that one.
    let (status, body) = post(
        &gw,
        &doc(json!({"verb": "GET", "path": "/p/{n}", "match": {"headers": {"X-A": {"present": true}}},
                    "response": {"code": 200, "body": "runtime header"}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // Other conditions at the same priority: the file endpoint is older.
    let (status, body) = post(
        &gw,
        &doc(
            json!({"verb": "GET", "path": "/p/{n}", "match": {"query": {"y": {"present": true}}},
                    "response": {"code": 200, "body": "runtime y"}}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let a = |path: &'static str, h: &'static [(&'static str, &'static str)]| {
        answer(&gw, "GET", path, h, None)
    };
    assert_eq!(a("/p/1", &[("X-A", "1")]).await, "runtime header");
    assert_eq!(a("/p/1?y", &[]).await, "runtime y");
    assert_eq!(a("/p/1?y&x", &[]).await, "query (newer)");
    // ...and a higher priority beats the file endpoints.
    let (status, _) = post(
        &gw,
        &doc(json!({"verb": "GET", "path": "/p/{n}", "priority": 6, "match": {"query": {"z": {"present": true}}},
                    "response": {"code": 200, "body": "runtime z (priority 6)"}})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        a("/p/1?z&x", &[("Cookie", "vip=yes")]).await,
        "runtime z (priority 6)"
    );
}

const FALL_THROUGH_TOML: &str = r#"
[[endpoints]]
verb = "GET"
path = "/shop/books/{id}"
match.headers.X-Beta = "1"
response = { code = 200, body = "books (beta)" }

[[endpoints]]
verb = "GET"
path = "/shop/{kind}/{id}"
response = { code = 200, body = "any kind" }

[[endpoints]]
verb = "GET"
path = "/shop/{*rest}"
response = { code = 200, body = "catch-all" }

[[endpoints]]
verb = "GET"
path = "/shop/toys/1"
match.query.v = "2"
response = { code = 200, body = "exact v2" }

[[endpoints]]
verb = "GET"
path_regex = "/other/.*"
response = { code = 200, body = "regex" }

[[endpoints]]
verb = "GET"
path = "/other/{x}"
match.query.v = "2"
response = { code = 200, body = "template v2" }
"#;

async fn check_fall_through(gw: &Gateway) {
    let a = |path: &'static str, h: &'static [(&'static str, &'static str)]| {
        answer(gw, "GET", path, h, None)
    };
    // When a route's conditions turn a request away, the next route that
    // matches the path answers: a less specific template, then a regex.
    assert_eq!(a("/shop/books/1", &[("X-Beta", "1")]).await, "books (beta)");
    assert_eq!(a("/shop/books/1", &[]).await, "any kind");
    assert_eq!(a("/shop/books/1/2", &[]).await, "catch-all");
    assert_eq!(a("/shop/toys/1?v=2", &[]).await, "exact v2");
    assert_eq!(a("/shop/toys/1", &[]).await, "any kind");
    assert_eq!(a("/other/1?v=2", &[]).await, "template v2");
    assert_eq!(a("/other/1", &[]).await, "regex");
}

#[tokio::test]
async fn a_route_that_turns_a_request_away_hides_no_other_route_from_a_file() {
    let gw = from_file(FALL_THROUGH_TOML);
    check_fall_through(&gw).await;
}

#[tokio::test]
async fn a_route_that_turns_a_request_away_hides_no_other_route_through_the_admin_api() {
    let e = |path: &str, m: Option<Value>, body: &str| {
        let mut a = json!({"verb": "GET", "path": path, "response": {"code": 200, "body": body}});
        if let Some(m) = m {
            a["match"] = m;
        }
        a
    };
    let gw = from_api(&[
        e(
            "/shop/books/{id}",
            Some(json!({"headers": {"X-Beta": "1"}})),
            "books (beta)",
        ),
        e("/shop/{kind}/{id}", None, "any kind"),
        e("/shop/{*rest}", None, "catch-all"),
        e("/shop/toys/1", Some(json!({"query": {"v": "2"}})), "exact v2"),
        json!({"verb": "GET", "path_regex": "/other/.*", "response": {"code": 200, "body": "regex"}}),
        e("/other/{x}", Some(json!({"query": {"v": "2"}})), "template v2"),
    ])
    .await;
    check_fall_through(&gw).await;
}

#[test]
fn a_file_endpoint_with_the_same_conditions_twice_is_an_error() {
    let toml = r#"[[endpoints]]
verb = "GET"
path = "/a"
match.query = { a = "1", b = "2" }
response = { code = 200 }

[[endpoints]]
verb = "GET"
path = "/a"
match.query = { a = "1", b = "2" }
response = { code = 201 }

[[endpoints]]
verb = "GET"
path = "/a"
match.query = { a = "1" }
response = { code = 202 }
"#;
    let dir = dir_with(&[("e.toml", toml)]);
    let (code, err) = validate(dir.path());
    assert_eq!(code, Some(1), "{err}");
    let first = format!("{}/e.toml:1:1", dir.path().display());
    assert_errors(
        dir.path(),
        &err,
        &[&format!(
            "e.toml:7:1: endpoint GET /a is defined twice (hint: the endpoint at {first} answers the same requests; remove one)"
        )],
    );
}

// ------------------------------------------------------------------ ANY

const ANY_TOML: &str = r#"
[[endpoints]]
id = "any"
verb = "ANY"
path = "/things"
response = { code = 200, body = "any" }

[[endpoints]]
id = "get"
verb = "GET"
path = "/things"
response = { code = 200, body = "get" }

[[endpoints]]
id = "any-template"
verb = "ANY"
path = "/things/{id}"
priority = 100
response = { code = 200, body = "any template" }

[[endpoints]]
id = "delete-template"
verb = "DELETE"
path = "/things/{id}"
response = { code = 200, body = "delete template" }

[[endpoints]]
id = "any-exact"
verb = "ANY"
path = "/things/special"
response = { code = 200, body = "any exact" }

[[endpoints]]
id = "get-template"
verb = "GET"
path = "/things/{name}/x"
response = { code = 200, body = "get template" }

[[endpoints]]
id = "any-json"
verb = "ANY"
path = "/purge"
match.headers.X-Purge-Key = "k"
response = { code = 200, body = "purged" }
"#;

async fn check_any(gw: &Gateway) {
    let a = |m: &'static str, p: &'static str| answer(gw, m, p, &[], None);
    // A method-specific endpoint beats ANY on the same path...
    assert_eq!(a("GET", "/things").await, "get");
    // ...ANY answers every other method, extension methods included.
    assert_eq!(a("POST", "/things").await, "any");
    assert_eq!(a("PATCH", "/things").await, "any");
    assert_eq!(a("PURGE", "/things").await, "any");
    assert_eq!(a("MKCOL", "/things").await, "any");
    // The method's own route beats ANY's, whatever the priority.
    assert_eq!(a("DELETE", "/things/1").await, "delete template");
    assert_eq!(a("PUT", "/things/1").await, "any template");
    assert_eq!(a("PURGE", "/things/1").await, "any template");
    // An exact path (own method, then ANY) beats a template.
    assert_eq!(a("DELETE", "/things/special").await, "any exact");
    assert_eq!(a("GET", "/things/a/x").await, "get template");
    assert_eq!(a("POST", "/things/a/x").await, "404");
    // ANY with conditions.
    assert_eq!(
        answer(gw, "PURGE", "/purge", &[("X-Purge-Key", "k")], None).await,
        "purged"
    );
    assert_eq!(a("PURGE", "/purge").await, "404");
    // HEAD is a method like the others: ANY answers it, without a body.
    let r = client().head(gw.url("/things")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "3");
}

#[tokio::test]
async fn any_verb_from_a_file() {
    let gw = from_file(ANY_TOML);
    check_any(&gw).await;
    // A raw extension method too.
    let raw = raw_request(
        gw.port,
        "PURGE /things HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.ends_with("\r\n\r\nany"), "{raw}");
}

#[tokio::test]
async fn any_verb_through_the_admin_api() {
    let e = |verb: &str, path: &str, prio: i64, body: &str| json!({"verb": verb, "path": path, "priority": prio, "response": {"code": 200, "body": body}});
    let gw = from_api(&[
        e("ANY", "/things", 0, "any"),
        e("GET", "/things", 0, "get"),
        e("ANY", "/things/{id}", 100, "any template"),
        e("DELETE", "/things/{id}", 0, "delete template"),
        e("ANY", "/things/special", 0, "any exact"),
        e("GET", "/things/{name}/x", 0, "get template"),
        json!({"verb": "ANY", "path": "/purge", "match": {"headers": {"X-Purge-Key": "k"}},
               "response": {"code": 200, "body": "purged"}}),
    ])
    .await;
    check_any(&gw).await;
    let (_, list) = send(&gw, Method::GET, "/endpoints", None).await;
    assert_eq!(list["data"][0]["attributes"]["verb"], "ANY");
    // ANY and GET on one path are two endpoints; ANY twice is a conflict.
    let (status, _) = post(&gw, &doc(e("ANY", "/things", 3, "again"))).await;
    assert_eq!(status, 409);
    // Extension methods themselves are not verbs.
    assert_422(&gw, e("PURGE", "/x", 0, ""), &["/data/attributes/verb"]).await;
    assert_422(&gw, e("any", "/x", 0, ""), &["/data/attributes/verb"]).await;
}

// ------------------------------------------- body limit and pass-through

fn sidecar(upstream: &str, extra: &str) -> String {
    format!(
        r#"{extra}
[upstreams.backend]
url = "{upstream}"
read_timeout_ms = 20000

[fallback]
upstream = "backend"

[[endpoints]]
id = "upload-json"
verb = "POST"
path = "/upload"
match.body = {{ contains = "mock-me" }}
response = {{ code = 201, body = "mocked" }}
"#
    )
}

/// A body of `len` bytes: a deterministic non-repeating-looking pattern,
/// with `marker` at its start.
fn big_body(len: usize, marker: &str) -> Vec<u8> {
    let mut b: Vec<u8> = marker.as_bytes().to_vec();
    let mut x: u32 = 7;
    while b.len() < len {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
        b.push(b"abcdefghijklmnopqrstuvwxyz0123456789"[(x >> 16) as usize % 36]);
    }
    b.truncate(len);
    b
}

/// What the echo upstream received after the head: the body it was sent.
fn echoed_body(echo: &[u8]) -> &[u8] {
    let at = echo
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head in the echo");
    &echo[at + 4..]
}

#[tokio::test]
async fn a_body_that_fails_the_conditions_falls_through_whole() {
    let up = TestUpstream::echo();
    let gw = from_file(&sidecar(&up.url(), ""));
    let http = client();

    // A small body that matches: the mock answers.
    let r = http
        .post(gw.url("/upload"))
        .body("please mock-me")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.text().await.unwrap(), "mocked");

    // A small body that does not: passed through whole, after being read.
    let small = big_body(30_000, "small");
    let r = http
        .post(gw.url("/upload"))
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-upstream"], "echo");
    let echo = r.bytes().await.unwrap();
    assert!(echo.starts_with(b"POST /upload HTTP/1.1\r\n"));
    assert_eq!(echoed_body(&echo), &small[..]);

    // 10 MB, mock-me or not: never read for matching, passed through whole.
    for marker in ["no marker", "mock-me"] {
        let big = big_body(10 * 1024 * 1024, marker);
        let r = http
            .post(gw.url("/upload"))
            .body(big.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{marker}");
        assert_eq!(r.headers()["x-upstream"], "echo");
        let echo = r.bytes().await.unwrap();
        let seen = echoed_body(&echo);
        assert_eq!(seen.len(), big.len(), "{marker}");
        assert!(seen == &big[..], "{marker}: the body changed on the way");
    }

    // A body just under the 64 KiB default is still matched.
    let mut under = big_body(64 * 1024, "");
    under[100..107].copy_from_slice(b"mock-me");
    let r = http
        .post(gw.url("/upload"))
        .body(under)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // ...and, when it does not match, passed on whole from the replay buffer.
    let at_limit = big_body(64 * 1024, "no marker");
    let r = http
        .post(gw.url("/upload"))
        .body(at_limit.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(echoed_body(&r.bytes().await.unwrap()), &at_limit[..]);
    let mut over = big_body(64 * 1024 + 1, "");
    over[100..107].copy_from_slice(b"mock-me");
    let r = http
        .post(gw.url("/upload"))
        .body(over.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(echoed_body(&r.bytes().await.unwrap()), &over[..]);
}

#[tokio::test]
async fn a_10_mb_body_falls_through_to_the_fallback_from_the_admin_api_too() {
    let up = TestUpstream::echo();
    let cfg = format!(
        "[upstreams.backend]\nurl = \"{}\"\nread_timeout_ms = 20000\n\n[fallback]\nupstream = \"backend\"\n",
        up.url()
    );
    let gw = from_file(&cfg);
    let (status, body) = post(
        &gw,
        &doc(json!({"verb": "PUT", "path": "/blobs/{id}",
                    "match": {"body": {"json_pointer": "/kind", "equals": "mock"}},
                    "response": {"code": 200, "body": "mocked"}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let http = client();
    let r = http
        .put(gw.url("/blobs/1"))
        .body(r#"{"kind": "mock"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "mocked");
    let small = r#"{"kind": "real", "n": 1}"#;
    let r = http
        .put(gw.url("/blobs/1"))
        .body(small)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-upstream"], "echo");
    assert_eq!(echoed_body(&r.bytes().await.unwrap()), small.as_bytes());

    let big = big_body(10 * 1024 * 1024, r#"{"kind": "mock", "pad": ""#);
    let r = http
        .put(gw.url("/blobs/1"))
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-upstream"], "echo");
    let echo = r.bytes().await.unwrap();
    assert!(echo.starts_with(b"PUT /blobs/1 HTTP/1.1\r\n"));
    let seen = echoed_body(&echo);
    assert_eq!(seen.len(), big.len());
    assert!(seen == &big[..], "the body changed on the way");
}

#[tokio::test]
async fn a_body_condition_can_pick_the_upstream_and_the_body_goes_whole() {
    let up = TestUpstream::echo();
    let gw = from_file(&format!(
        r#"
[upstreams.backend]
url = "{}"

[[endpoints]]
verb = "POST"
path = "/route"
match.body = {{ json_pointer = "/to", equals = "backend" }}
response = {{ code = 200, proxy = "backend" }}
"#,
        up.url()
    ));
    let body = format!(r#"{{"to": "backend", "pad": "{}"}}"#, "p".repeat(40_000));
    let r = client()
        .post(gw.url("/route"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-upstream"], "echo");
    assert_eq!(echoed_body(&r.bytes().await.unwrap()), body.as_bytes());
    // Not to the backend, and no fallback: the Echo 404.
    let (status, _) = call(&gw, "POST", "/route", &[], Some(r#"{"to": "nowhere"}"#)).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn match_body_limit_and_chunked_bodies() {
    let gw = from_file(
        r#"
[server]
match_body_limit = 16

[[endpoints]]
verb = "POST"
path = "/small"
match.body = { contains = "yes" }
response = { code = 200, body = "matched" }
"#,
    );
    let a = |body: &'static str| answer(&gw, "POST", "/small", &[], Some(body));
    assert_eq!(a("yes").await, "matched");
    assert_eq!(a("0123456789abcyes").await, "matched");
    // 17 bytes: over the limit, never matched.
    assert_eq!(a("0123456789abcdyes").await, "404");

    // A chunked body is never read for matching, however small.
    let raw = raw_request(
        gw.port,
        "POST /small HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nyes\r\n0\r\n\r\n",
    );
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
    // The connection stays usable after a body that was read for matching.
    let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nno")
        .unwrap();
    let mut first = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&first).contains("does not exist\"}]}") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed after {:?}", String::from_utf8_lossy(&first));
        first.extend_from_slice(&buf[..n]);
    }
    assert!(first.starts_with(b"HTTP/1.1 404"));
    s.write_all(
        b"POST /small HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nConnection: close\r\n\r\nyes",
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("\r\n\r\nmatched"), "{out}");
}

#[test]
fn match_body_limit_is_at_most_64_kib() {
    let dir = dir_with(&[("s.toml", "[server]\nmatch_body_limit = 65537\n")]);
    let (code, err) = validate(dir.path());
    assert_eq!(code, Some(1));
    assert_errors(
        dir.path(),
        &err,
        &["s.toml:2:20: server.match_body_limit must be between 0 and 65536, not 65537"],
    );
}

// --------------------------------------------------------------- errors

const BAD_MATCH: &str = r#"[[endpoints]]
verb = "GET"
path = "/a"
match.query = { page = { regex = "(" }, n = 1, both = { equals = "a", regex = "b" } }
response = { code = 200 }

[[endpoints]]
verb = "GET"
path = "/b"
match.headers = { "Bad Name" = "x", X = { present = "yes" }, Y = { like = "z" } }
match.cookies = { "" = "x" }
response = { code = 200 }

[[endpoints]]
verb = "POST"
path = "/c"
match.body = [ { json_pointer = "a", equals = 1 }, { regex = "[" }, { contains = "x", json = 1 }, "text" ]
response = { code = 200 }

[[endpoints]]
verb = "POST"
path = "/d"
match.body = { json_pointer = "/a" }
match.cookie = { a = "b" }
response = { code = 200 }

[[endpoints]]
verb = "PURGE"
path = "/e"
match = "x"
response = { code = 200 }
"#;

#[test]
fn bad_conditions_in_a_file_are_reported_at_their_place() {
    let dir = dir_with(&[("m.toml", BAD_MATCH)]);
    let (code, err) = validate(dir.path());
    assert_eq!(code, Some(1), "{err}");
    assert_errors(
        dir.path(),
        &err,
        &[
            "m.toml:4:34: match.query.page.regex is not a valid regular expression: regex parse error: ( ^ error: unclosed group",
            "m.toml:4:45: match.query.n must be a string or a condition, not an integer (hint: write \"value\", { regex = \"...\" }, { present = true } or { present = false })",
            "m.toml:4:55: match.query.both must have exactly one of equals, regex, present (hint: write one condition per name)",
            "m.toml:10:19: match.headers name `Bad Name` is not a valid HTTP token",
            "m.toml:10:53: match.headers.X.present must be a boolean, not a string",
            "m.toml:10:68: unknown key `like` in match.headers.Y (hint: match.headers.Y takes: equals, regex, present)",
            "m.toml:11:19: match.cookies has an empty name",
            "m.toml:17:33: match.body.json_pointer must be empty or start with `/` (hint: for example \"/order/id\" (RFC 6901))",
            "m.toml:17:62: match.body.regex is not a valid regular expression: regex parse error: [ ^ error: unclosed character class",
            "m.toml:17:69: a match.body condition must have exactly one of json, json_subset, json_pointer, regex, contains (hint: give several conditions as a list: body = [ {...}, {...} ])",
            "m.toml:17:99: match.body must be a condition, not a string",
            "m.toml:23:14: match.body.json_pointer needs `equals`, the value expected there",
            "m.toml:24:7: unknown key `cookie` in match (hint: did you mean `cookies`? match takes: query, headers, cookies, body)",
            "m.toml:28:8: verb must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE or ANY (hint: ANY answers every method, extension methods such as PURGE too; CONNECT cannot be mocked)",
            "m.toml:30:9: match must be a table, not a string",
        ],
    );
}

#[test]
fn serve_refuses_bad_conditions_with_the_same_errors() {
    let dir = dir_with(&[("m.toml", BAD_MATCH)]);
    let out = Command::new(BIN)
        .args([
            "serve",
            "--store",
            "memory",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--config",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let d = dir.path().display();
    for e in [
        "m.toml:4:34: match.query.page.regex is not a valid regular expression",
        "m.toml:17:33: match.body.json_pointer must be empty or start with `/`",
        "m.toml:28:8: verb must be one of",
    ] {
        assert!(err.contains(&format!("{d}/{e}")), "missing {e} in:\n{err}");
    }
}

#[tokio::test]
async fn bad_conditions_through_the_admin_api_are_422_at_their_pointer() {
    let gw = Gateway::start_with(Options {
        args: memory(),
        ..Options::default()
    });
    let with =
        |m: Value| json!({"verb": "POST", "path": "/x", "match": m, "response": {"code": 200}});
    let cases = [
        (
            json!({"query": {"page": {"regex": "("}}}),
            vec!["/data/attributes/match/query/page/regex"],
        ),
        (
            json!({"query": {"n": 1}}),
            vec!["/data/attributes/match/query/n"],
        ),
        (
            json!({"query": {"both": {"equals": "a", "regex": "b"}}}),
            vec!["/data/attributes/match/query/both"],
        ),
        (
            json!({"headers": {"X": {"present": "yes"}}}),
            vec!["/data/attributes/match/headers/X/present"],
        ),
        (
            json!({"headers": {"X": {"equals": 5}}}),
            vec!["/data/attributes/match/headers/X/equals"],
        ),
        (
            json!({"headers": {"Bad Name": "x"}}),
            vec!["/data/attributes/match/headers/Bad Name"],
        ),
        (
            json!({"headers": {"Y": {"like": "z"}}}),
            vec!["/data/attributes/match/headers/Y/like"],
        ),
        (
            json!({"headers": "x"}),
            vec!["/data/attributes/match/headers"],
        ),
        (
            json!({"cookies": {"s": {"regex": "a{99999}"}}}),
            vec!["/data/attributes/match/cookies/s/regex"],
        ),
        (
            json!({"body": {"json_pointer": "a", "equals": 1}}),
            vec!["/data/attributes/match/body/json_pointer"],
        ),
        (
            json!({"body": [{"contains": "a"}, {"regex": "["}]}),
            vec!["/data/attributes/match/body/1/regex"],
        ),
        (
            json!({"body": [{"json_pointer": "/a"}]}),
            vec!["/data/attributes/match/body/0"],
        ),
        (
            json!({"body": {"contains": "a", "equals": 1}}),
            vec!["/data/attributes/match/body/equals"],
        ),
        (
            json!({"body": {"contains": 5}}),
            vec!["/data/attributes/match/body/contains"],
        ),
        (json!({"body": "text"}), vec!["/data/attributes/match/body"]),
        (json!("x"), vec!["/data/attributes/match"]),
        (
            json!({"query": {"page": {"regex": "("}}, "body": [{"regex": ")"}]}),
            vec![
                "/data/attributes/match/query/page/regex",
                "/data/attributes/match/body/0/regex",
            ],
        ),
    ];
    for (m, pointers) in cases {
        assert_422(&gw, with(m), &pointers).await;
    }
    let (_, list) = send(&gw, Method::GET, "/endpoints", None).await;
    assert_eq!(list["data"], json!([]), "nothing was created");

    // PATCH checks conditions the same way, and `match: null` removes them.
    let (status, created) = post(&gw, &doc(with(json!({"query": {"a": "1"}})))).await;
    assert_eq!(status, 201);
    let id = created["data"]["id"].as_str().unwrap().to_string();
    let patch =
        |attrs: Value| json!({"data": {"type": "endpoints", "id": id, "attributes": attrs}});
    let (status, body) = send(
        &gw,
        Method::PATCH,
        &format!("/endpoints/{id}"),
        Some(&patch(json!({"match": {"query": {"a": {"regex": "*"}}}}))),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["errors"][0]["source"]["pointer"],
        "/data/attributes/match/query/a/regex"
    );
    assert_eq!(answer(&gw, "POST", "/x?a=1", &[], None).await, "");
    assert_eq!(answer(&gw, "POST", "/x", &[], None).await, "404");
    let (status, body) = send(
        &gw,
        Method::PATCH,
        &format!("/endpoints/{id}"),
        Some(&patch(json!({"match": null}))),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(answer(&gw, "POST", "/x", &[], None).await, "");
}

// ------------------------------------------------------- the example config

#[tokio::test]
async fn the_example_config_serves_what_it_says() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/matching.toml");
    let mut args = memory();
    args.extend(["--config".into(), example.display().to_string()]);
    let gw = Gateway::start_with(Options {
        args,
        ..Options::default()
    });
    assert_eq!(
        answer(&gw, "GET", "/api/orders?status=open&page=2", &[], None).await,
        r#"{"status": "open", "page": 2, "orders": []}"#
    );
    assert_eq!(get(&gw, "/api/orders?page=2&debug").await, "debug listing");
    let (status, _) = call(&gw, "GET", "/api/account", &[], None).await;
    assert_eq!(status, 401);
    assert_eq!(
        answer(
            &gw,
            "GET",
            "/api/account",
            &[
                ("x-tenant", "acme"),
                ("accept", "application/json"),
                ("cookie", "session=abc")
            ],
            None
        )
        .await,
        r#"{"tenant": "acme", "session": "abc"}"#
    );
    let (status, text) = call(
        &gw,
        "POST",
        "/api/orders",
        &[("X-Tenant", "acme")],
        Some(r#"{"customer": {"id": "c1"}, "shipping": "express", "items": [{"sku": "TEA-01", "qty": 2}]}"#),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let order: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(order["customer"], "c1");
    assert_eq!(order["items"], 1);
    assert_eq!(order["express"], true);
    assert_eq!(order["tenant"], "acme");
    let (status, _) = call(
        &gw,
        "POST",
        "/api/orders",
        &[],
        Some(r#"{"customer": {"id": "c1", "blocked": true}, "items": [{"sku": "TEA-01"}]}"#),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &gw,
        "POST",
        "/api/orders",
        &[],
        Some(r#"{"items": [], "customer": {"id": "test"}}"#),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = call(
        &gw,
        "POST",
        "/api/orders",
        &[],
        Some(r#"{"items": [{"sku": "MUG-02"}]}"#),
    )
    .await;
    assert_eq!(status, 409);
    let catalog: Value = serde_json::from_str(&get(&gw, "/api/catalog").await).unwrap();
    assert_eq!(catalog["products"][0]["sku"], "TEA-01");
    let order: Value = serde_json::from_str(&get(&gw, "/api/orders/77").await).unwrap();
    assert_eq!(order["id"], "77");
    assert_eq!(get(&gw, "/cache/a/b").await, "cached a/b");
    let (status, _) = call(&gw, "PURGE", "/cache/a/b", &[], None).await;
    assert_eq!(status, 202);
    let (got, _) = {
        let mut s = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /api/flaky/truncated HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let mut out = Vec::new();
        let r = s.read_to_end(&mut out);
        (out, r)
    };
    let text = String::from_utf8_lossy(&got);
    assert!(text.ends_with("\r\n\r\n{\"a long"), "{text}");
}
