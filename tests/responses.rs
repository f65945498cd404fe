//! Responses beyond the canned body: templates rendered from the request,
//! `body_file` and `template_file` (config files only, never outside the
//! config directory), fixed and random delays, and faults (reset, empty,
//! close after N bytes). Each from a TOML file and from the admin API alike,
//! with their errors as `file:line:col` and as a JSON pointer.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

/// The `detail` of the first error of a 422.
async fn detail_of_422(gw: &Gateway, attributes: Value) -> String {
    let (status, body) = post(gw, &doc(attributes.clone())).await;
    assert_eq!(status, 422, "{attributes}: {body}");
    body["errors"][0]["detail"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

// ------------------------------------------------------------ templates

const TEMPLATE_TOML: &str = r#"
[[endpoints]]
id = "order"
verb = "POST"
path = "/users/{user}/orders/{*rest}"
match.body = { json_subset = { qty = 2 } }
[endpoints.response]
code = 201
headers = { "Content-Type" = "application/json", "X-Kind" = "rendered" }
template = '''
{"user": "{{ request.params.user }}", "rest": "{{ request.params.rest }}", "method": "{{ request.method }}", "path": "{{ request.path }}", "q": "{{ request.query.q }}", "tenant": "{{ request.headers["x-tenant"] }}", "session": "{{ request.cookies.session }}", "sku": "{{ request.json.items[0].sku }}", "double": {{ request.json.qty * 2 }}, "raw": {{ request.body | length }}}
'''

[[endpoints]]
id = "echo-body"
verb = "PUT"
path = "/echo/{id}"
response = { code = 200, template = "{{ request.params.id }}: {{ request.json.name | default('no json') }} <{{ request.body }}>" }

[[endpoints]]
id = "helpers"
verb = "GET"
path = "/helpers"
response = { code = 200, template = "{{ now() }}|{{ now('%Y-%m-%d') }}|{{ uuid() }}|{% for i in range(60) %}{{ random_int(1, 6) }},{% endfor %}" }

[[endpoints]]
id = "broken-at-runtime"
verb = "GET"
path = "/broken"
response = { code = 200, headers = { "X-Never" = "sent" }, template = "a {{ random_int(5, 1) }} b" }

[[endpoints]]
id = "bad-date"
verb = "GET"
path = "/bad-date"
response = { code = 200, template = "{{ now('%Q') }}" }

[[endpoints]]
id = "runaway"
verb = "GET"
path = "/runaway"
response = { code = 200, template = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}" }
"#;

fn template_endpoints() -> Vec<Value> {
    let order = "{\"user\": \"{{ request.params.user }}\", \"rest\": \"{{ request.params.rest }}\", \"method\": \"{{ request.method }}\", \"path\": \"{{ request.path }}\", \"q\": \"{{ request.query.q }}\", \"tenant\": \"{{ request.headers[\"x-tenant\"] }}\", \"session\": \"{{ request.cookies.session }}\", \"sku\": \"{{ request.json.items[0].sku }}\", \"double\": {{ request.json.qty * 2 }}, \"raw\": {{ request.body | length }}}\n";
    vec![
        json!({"verb": "POST", "path": "/users/{user}/orders/{*rest}",
               "match": {"body": {"json_subset": {"qty": 2}}},
               "response": {"code": 201,
                            "headers": {"Content-Type": "application/json", "X-Kind": "rendered"},
                            "template": order}}),
        json!({"verb": "PUT", "path": "/echo/{id}", "response": {"code": 200,
               "template": "{{ request.params.id }}: {{ request.json.name | default('no json') }} <{{ request.body }}>"}}),
        json!({"verb": "GET", "path": "/helpers", "response": {"code": 200,
               "template": "{{ now() }}|{{ now('%Y-%m-%d') }}|{{ uuid() }}|{% for i in range(60) %}{{ random_int(1, 6) }},{% endfor %}"}}),
        json!({"verb": "GET", "path": "/broken", "response": {"code": 200,
               "headers": {"X-Never": "sent"}, "template": "a {{ random_int(5, 1) }} b"}}),
        json!({"verb": "GET", "path": "/bad-date", "response": {"code": 200,
               "template": "{{ now('%Q') }}"}}),
        json!({"verb": "GET", "path": "/runaway", "response": {"code": 200,
               "template": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"}}),
    ]
}

async fn check_templates(gw: &Gateway, broken_id: &str) {
    let http = client();
    let body = r#"{"qty": 2, "items": [{"sku": "A-1"}, {"sku": "B-2"}]}"#;
    let r = http
        .post(gw.url("/users/ann/orders/2024/07?q=hello+world&q=second"))
        .header("X-Tenant", "acme")
        .header("Cookie", "theme=dark; session=s3cr3t")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.headers()["x-kind"], "rendered");
    let len: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let text = r.text().await.unwrap();
    assert_eq!(len, text.len(), "Content-Length is the rendered length");
    assert!(
        text.ends_with("}\n"),
        "the trailing newline is kept: {text:?}"
    );
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(
        v,
        json!({"user": "ann", "rest": "2024/07", "method": "POST",
               "path": "/users/ann/orders/2024/07", "q": "hello world", "tenant": "acme",
               "session": "s3cr3t", "sku": "A-1", "double": 4, "raw": body.len()})
    );

    // The body is there for a template whatever the conditions; nothing is escaped.
    let r = http
        .put(gw.url("/echo/7"))
        .body(r#"{"name": "<Zoë & co>"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        r#"7: <Zoë & co> <{"name": "<Zoë & co>"}>"#
    );
    let r = http
        .put(gw.url("/echo/8"))
        .body("plain")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "8: no json <plain>");
    let r = http.put(gw.url("/echo/9")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "9: no json <>");
    // A body over the match body limit (64 KiB) is not read: a template sees none.
    let big = format!(r#"{{"name": "big", "pad": "{}"}}"#, "x".repeat(70_000));
    let r = http.put(gw.url("/echo/10")).body(big).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "10: no json <>");

    // Helpers: now() (RFC 3339, UTC, milliseconds), now(format), uuid(), random_int.
    let rfc3339 = regex::Regex::new(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$").unwrap();
    let uuid_v4 =
        regex::Regex::new(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
            .unwrap();
    let mut uuids = Vec::new();
    for _ in 0..2 {
        let before = chrono::Utc::now();
        let text = http
            .get(gw.url("/helpers"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let after = chrono::Utc::now();
        let parts: Vec<&str> = text.split('|').collect();
        assert_eq!(parts.len(), 4, "{text}");
        assert!(rfc3339.is_match(parts[0]), "now(): {}", parts[0]);
        let t = chrono::DateTime::parse_from_rfc3339(parts[0]).unwrap();
        let slack = chrono::Duration::seconds(1);
        assert!(
            t >= before - slack && t <= after + slack,
            "now() is now: {t}"
        );
        let days = [
            before.format("%Y-%m-%d").to_string(),
            after.format("%Y-%m-%d").to_string(),
        ];
        assert!(
            days.contains(&parts[1].to_string()),
            "now(fmt): {}",
            parts[1]
        );
        assert!(uuid_v4.is_match(parts[2]), "uuid(): {}", parts[2]);
        uuids.push(parts[2].to_string());
        let ints: Vec<i64> = parts[3]
            .trim_end_matches(',')
            .split(',')
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(ints.len(), 60);
        assert!(ints.iter().all(|n| (1..=6).contains(n)), "{ints:?}");
        assert!(ints.iter().any(|n| *n != ints[0]), "random: {ints:?}");
    }
    assert_ne!(uuids[0], uuids[1], "a new uuid per request");

    // A template that fails when rendered: 500 with a JSON:API error document.
    let r = http.get(gw.url("/broken")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(r.headers()["content-type"], JSONAPI);
    assert!(r.headers().get("x-never").is_none());
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["errors"][0]["status"], "500", "{e}");
    assert_eq!(e["errors"][0]["code"], "template_error", "{e}");
    let detail = e["errors"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("`{broken_id}`")) && detail.contains("min is more than max"),
        "{detail}"
    );
    let r = http.get(gw.url("/bad-date")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    let e: Value = r.json().await.unwrap();
    let detail = e["errors"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("`%Q` is not a valid date format"),
        "{detail}"
    );
    // Runaway loops run out of fuel instead of running forever.
    let started = Instant::now();
    let r = http.get(gw.url("/runaway")).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(started.elapsed() < Duration::from_secs(10));
    // The gateway is still there.
    let r = http.put(gw.url("/echo/1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn templates_from_a_file() {
    let gw = from_file(TEMPLATE_TOML);
    check_templates(&gw, "broken-at-runtime").await;
}

#[tokio::test]
async fn templates_through_the_admin_api() {
    let gw = from_api(&template_endpoints()).await;
    check_templates(&gw, "4").await;
    let (status, one) = send(&gw, Method::GET, "/endpoints/2", None).await;
    assert_eq!(status, 200);
    let response = &one["data"]["attributes"]["response"];
    assert_eq!(
        response["template"],
        "{{ request.params.id }}: {{ request.json.name | default('no json') }} <{{ request.body }}>"
    );
    assert!(response.get("body").is_none(), "{response}");
}

#[tokio::test]
async fn a_runtime_template_can_be_patched_and_replaced_by_a_body() {
    let gw = from_api(&[json!({"verb": "GET", "path": "/t/{n}",
        "response": {"code": 200, "template": "n={{ request.params.n }}"}})])
    .await;
    let get = |p: &'static str| {
        let url = gw.url(p);
        async move {
            client()
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert_eq!(get("/t/1").await, "n=1");
    let patch = |response: Value| json!({"data": {"type": "endpoints", "id": "1", "attributes": {"response": response}}});
    let (status, body) = send(
        &gw,
        Method::PATCH,
        "/endpoints/1",
        Some(&patch(
            json!({"code": 200, "template": "{{ request.params.n * 2 }}"}),
        )),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get("/t/21").await, "2121");
    let (status, body) = send(
        &gw,
        Method::PATCH,
        "/endpoints/1",
        Some(&patch(
            json!({"code": 200, "template": "{{ request.params.n | int * 2 }}"}),
        )),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(get("/t/21").await, "42");
    let (status, _) = send(
        &gw,
        Method::PATCH,
        "/endpoints/1",
        Some(&patch(json!({"code": 200, "body": "{{ not rendered }}"}))),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(get("/t/21").await, "{{ not rendered }}");
}

const BAD_TEMPLATES: &str = r#"[[endpoints]]
verb = "GET"
path = "/a"
response = { code = 200, template = "{{ request.path " }

[[endpoints]]
verb = "GET"
path = "/b"
[endpoints.response]
code = 200
template = """
line one
{% for x in y %}
"""

[[endpoints]]
verb = "GET"
path = "/c"
response = { code = 204, template = "x" }

[[endpoints]]
verb = "GET"
path = "/d"
response = { code = 200, body = "x", template = "y" }

[[endpoints]]
verb = "GET"
path = "/e"
response = { code = 200, template = 5 }
"#;

#[test]
fn bad_templates_in_a_file_are_reported_at_their_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.toml"), BAD_TEMPLATES).unwrap();
    let (code, err) = validate(dir.path());
    assert_eq!(code, Some(1), "{err}");
    assert_errors(
        dir.path(),
        &err,
        &[
            "t.toml:4:37: response.template does not compile: syntax error: unexpected end of input, expected end of variable block (template line 1) (hint: the syntax is minijinja's (Jinja2))",
            "t.toml:11:12: response.template does not compile: syntax error: unexpected end of input, expected end of block (template line 2) (hint: the syntax is minijinja's (Jinja2))",
            "t.toml:19:37: response.template must be empty when response.code is 204",
            "t.toml:24:49: response.template cannot be given together with response.body (hint: a response has one of body, body_file, template, template_file)",
            "t.toml:29:37: response.template must be a string, not an integer",
        ],
    );
}

#[tokio::test]
async fn bad_templates_through_the_admin_api_are_422_at_their_pointer() {
    let gw = from_api(&[]).await;
    let with = |response: Value| json!({"verb": "GET", "path": "/x", "response": response});
    assert_422(
        &gw,
        with(json!({"code": 200, "template": "{{ request.path "})),
        &["/data/attributes/response/template"],
    )
    .await;
    let detail = detail_of_422(&gw, with(json!({"code": 200, "template": "ok\n{% if %}"}))).await;
    assert!(
        detail.starts_with("response.template does not compile: syntax error")
            && detail.contains("(template line 2)"),
        "{detail}"
    );
    for (response, pointer) in [
        (
            json!({"code": 200, "template": 5}),
            "/data/attributes/response/template",
        ),
        (
            json!({"code": 204, "template": "x"}),
            "/data/attributes/response/template",
        ),
        (
            json!({"code": 200, "body": "x", "template": "y"}),
            "/data/attributes/response/template",
        ),
        (
            json!({"code": 200, "template_file": "t.j2"}),
            "/data/attributes/response/template_file",
        ),
        (
            json!({"code": 200, "body_file": "body.json"}),
            "/data/attributes/response/body_file",
        ),
        (
            json!({"code": 200, "body_file": "/etc/passwd"}),
            "/data/attributes/response/body_file",
        ),
    ] {
        assert_422(&gw, with(response), &[pointer]).await;
    }
    let detail = detail_of_422(&gw, with(json!({"code": 200, "body_file": "/etc/passwd"}))).await;
    assert_eq!(
        detail,
        "response.body_file can be used in config files only"
    );
    let (_, list) = send(&gw, Method::GET, "/endpoints", None).await;
    assert_eq!(list["data"], json!([]));
}

// --------------------------------------------- body_file, template_file

#[tokio::test]
async fn body_file_and_template_file_are_read_relative_to_the_config_file() {
    let elsewhere = tempfile::tempdir().unwrap();
    // A file of the same name in the working directory is not the one read.
    std::fs::write(elsewhere.path().join("hello.json"), "wrong one").unwrap();
    let gw = Gateway::start_with(Options {
        files: vec![
            (
                "api.toml".into(),
                r#"
[[endpoints]]
id = "hello"
verb = "GET"
path = "/hello"
response = { code = 200, headers = { "Content-Type" = "application/json" }, body_file = "hello.json" }

[[endpoints]]
id = "card"
verb = "GET"
path = "/cards/{id}"
response = { code = 200, template_file = "card.j2", delay_ms = 1 }
"#
                .into(),
            ),
            ("hello.json".into(), "{\"hello\": \"file\"}\n".into()),
            (
                "card.j2".into(),
                "card {{ request.params.id }}\n{% if request.query.v %}v={{ request.query.v }}{% endif %}"
                    .into(),
            ),
        ],
        workdir: Some(elsewhere.path().to_path_buf()),
        args: memory(),
        ..Options::default()
    });
    let http = client();
    let r = http.get(gw.url("/hello")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "18");
    assert_eq!(r.text().await.unwrap(), "{\"hello\": \"file\"}\n");
    let r = http.get(gw.url("/cards/9?v=2")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "card 9\nv=2");

    // Listed by file name, not content.
    let (_, one) = send(&gw, Method::GET, "/endpoints/hello", None).await;
    let response = &one["data"]["attributes"]["response"];
    assert_eq!(response["body_file"], "hello.json", "{response}");
    assert!(response.get("body").is_none(), "{response}");
    let (_, one) = send(&gw, Method::GET, "/endpoints/card", None).await;
    assert_eq!(
        one["data"]["attributes"]["response"]["template_file"],
        "card.j2"
    );
}

#[tokio::test]
async fn body_file_in_a_subdirectory_of_the_config_directory() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("fixtures")).unwrap();
    std::fs::write(root.path().join("fixtures/order.json"), r#"{"id":1}"#).unwrap();
    std::fs::write(
        root.path().join("api.toml"),
        "[[endpoints]]\nverb = \"GET\"\npath = \"/order\"\nresponse = { code = 200, body_file = \"fixtures/../fixtures/order.json\" }\n",
    )
    .unwrap();
    let (code, err) = validate(root.path());
    assert_eq!(code, Some(0), "{err}");
    let mut args = memory();
    args.push("--config".into());
    args.push(root.path().display().to_string());
    let gw = Gateway::start_with(Options {
        args,
        ..Options::default()
    });
    let r = client().get(gw.url("/order")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), r#"{"id":1}"#);
}

#[test]
fn files_outside_the_config_directory_are_refused() {
    let top = tempfile::tempdir().unwrap();
    let secret = top.path().join("secret.txt");
    std::fs::write(&secret, "do not serve").unwrap();
    let conf = top.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::create_dir(conf.join("adir")).unwrap();
    std::os::unix::fs::symlink(&secret, conf.join("link.txt")).unwrap();
    std::fs::write(conf.join("inside.txt"), "fine").unwrap();
    std::os::unix::fs::symlink(conf.join("inside.txt"), conf.join("good-link.txt")).unwrap();
    let abs = secret.display().to_string();
    let toml = format!(
        r#"[[endpoints]]
verb = "GET"
path = "/a"
response = {{ code = 200, body_file = "../secret.txt" }}

[[endpoints]]
verb = "GET"
path = "/b"
response = {{ code = 200, body_file = "{abs}" }}

[[endpoints]]
verb = "GET"
path = "/c"
response = {{ code = 200, body_file = "link.txt" }}

[[endpoints]]
verb = "GET"
path = "/d"
response = {{ code = 200, template_file = "adir/../../secret.txt" }}

[[endpoints]]
verb = "GET"
path = "/e"
response = {{ code = 200, body_file = "missing.txt" }}

[[endpoints]]
verb = "GET"
path = "/f"
response = {{ code = 200, body_file = "adir" }}

[[endpoints]]
verb = "GET"
path = "/g"
response = {{ code = 200, body_file = "good-link.txt" }}
"#
    );
    std::fs::write(conf.join("api.toml"), &toml).unwrap();
    let (code, err) = validate(&conf);
    assert_eq!(code, Some(1), "{err}");
    let hint = "(hint: name a file inside the config directory, relative to this config file)";
    assert_errors(
        &conf,
        &err,
        &[
            &format!("api.toml:4:38: response.body_file `../secret.txt` is outside the config directory {hint}"),
            &format!("api.toml:9:38: response.body_file `{abs}` is outside the config directory {hint}"),
            &format!("api.toml:14:38: response.body_file `link.txt` is outside the config directory {hint}"),
            &format!("api.toml:19:42: response.template_file `adir/../../secret.txt` is outside the config directory {hint}"),
            "api.toml:24:38: response.body_file `missing.txt` cannot be read: No such file or directory",
            "api.toml:29:38: response.body_file `adir` is not a file",
        ],
    );
    assert!(!err.contains("do not serve"), "{err}");

    // serve refuses the same config, with the same errors.
    let out = Command::new(BIN)
        .args([
            "serve",
            "--store",
            "memory",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--config",
        ])
        .arg(&conf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let serve_err = String::from_utf8_lossy(&out.stderr);
    assert!(
        serve_err.contains(&format!(
            "{}/api.toml:14:38: response.body_file `link.txt` is outside the config directory",
            conf.display()
        )),
        "{serve_err}"
    );
}

// ---------------------------------------------------------------- delays

const DELAY_TOML: &str = r#"
[server]
threads = 1

[[endpoints]]
id = "fixed"
verb = "GET"
path = "/fixed"
response = { code = 200, body = "slow", delay_ms = 400 }

[[endpoints]]
id = "random"
verb = "GET"
path = "/random"
[endpoints.response]
code = 200
body = "random"
delay_ms = { min = 200, max = 400 }

[[endpoints]]
id = "none"
verb = "GET"
path = "/none"
response = { code = 200, body = "fast", delay_ms = 0 }
"#;

/// How long a GET takes, and its body.
async fn timed(gw: &Gateway, path: &str) -> (Duration, String) {
    let started = Instant::now();
    let text = client()
        .get(gw.url(path))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    (started.elapsed(), text)
}

/// Generous: a loaded 2-core machine can be slow, never early.
const SLACK: Duration = Duration::from_secs(3);

/// Awaits every future concurrently on the test's runtime.
async fn futures_join<F: std::future::Future + Send + 'static>(futs: Vec<F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_from_a_file() {
    let gw = std::sync::Arc::new(from_file(DELAY_TOML));
    check_delays_shared(gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_through_the_admin_api() {
    let gw = Gateway::start_with(Options {
        config: Some("[server]\nthreads = 1\n".into()),
        args: memory(),
        ..Options::default()
    });
    for attrs in [
        json!({"verb": "GET", "path": "/fixed", "response": {"code": 200, "body": "slow", "delay_ms": 400}}),
        json!({"verb": "GET", "path": "/random", "response": {"code": 200, "body": "random", "delay_ms": {"min": 200, "max": 400}}}),
        json!({"verb": "GET", "path": "/none", "response": {"code": 200, "body": "fast", "delay_ms": 0}}),
    ] {
        let (status, body) = post(&gw, &doc(attrs)).await;
        assert_eq!(status, 201, "{body}");
    }
    let (_, one) = send(&gw, Method::GET, "/endpoints/2", None).await;
    assert_eq!(
        one["data"]["attributes"]["response"]["delay_ms"],
        json!({"min": 200, "max": 400})
    );
    let (_, one) = send(&gw, Method::GET, "/endpoints/1", None).await;
    assert_eq!(one["data"]["attributes"]["response"]["delay_ms"], 400);
    check_delays_shared(std::sync::Arc::new(gw)).await;
}

/// `check_delays` with the gateway shared by the spawned requests.
async fn check_delays_shared(gw: std::sync::Arc<Gateway>) {
    let (took, text) = timed(&gw, "/fixed").await;
    assert_eq!(text, "slow");
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_millis(400) + SLACK, "{took:?}");

    // A random delay: each request waits within the range. Ten are sent at
    // once to a gateway with one worker thread: one after the other they
    // would take at least 10 x 200 ms; delays are awaited, not slept.
    let started = Instant::now();
    let runs = futures_join(
        (0..10)
            .map(|_| {
                let gw = gw.clone();
                async move { timed(&gw, "/random").await }
            })
            .collect(),
    )
    .await;
    let all = started.elapsed();
    for (took, text) in &runs {
        assert_eq!(text, "random");
        assert!(*took >= Duration::from_millis(200), "{took:?}");
        assert!(*took < Duration::from_millis(400) + SLACK, "{took:?}");
    }
    assert!(
        all < Duration::from_millis(10 * 200),
        "delayed requests on one worker thread overlap: {all:?}"
    );
    let (took, text) = timed(&gw, "/none").await;
    assert_eq!(text, "fast");
    assert!(took < SLACK, "{took:?}");
}

const BAD_DELAYS: &str = r#"[[endpoints]]
verb = "GET"
path = "/a"
response = { code = 200, delay_ms = -1 }

[[endpoints]]
verb = "GET"
path = "/b"
response = { code = 200, delay_ms = 600001 }

[[endpoints]]
verb = "GET"
path = "/c"
response = { code = 200, delay_ms = { min = 10 } }

[[endpoints]]
verb = "GET"
path = "/d"
response = { code = 200, delay_ms = { min = 50, max = 10 } }

[[endpoints]]
verb = "GET"
path = "/e"
response = { code = 200, delay_ms = "fast" }

[[endpoints]]
verb = "GET"
path = "/f"
response = { code = 200, delay_ms = { min = 1, max = 2, mean = 1 } }
"#;

#[test]
fn bad_delays_in_a_file_are_reported_at_their_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.toml"), BAD_DELAYS).unwrap();
    let (code, err) = validate(dir.path());
    assert_eq!(code, Some(1), "{err}");
    assert_errors(
        dir.path(),
        &err,
        &[
            "d.toml:4:37: response.delay_ms must be between 0 and 600000, not -1",
            "d.toml:9:37: response.delay_ms must be between 0 and 600000, not 600001",
            "d.toml:14:37: response.delay_ms.max is required (hint: a random delay is { min = 50, max = 200 }; a fixed one a plain number)",
            "d.toml:19:37: response.delay_ms.min (50) is more than max (10)",
            "d.toml:24:37: response.delay_ms must be an integer, not a string",
            "d.toml:29:57: unknown key `mean` in response.delay_ms (hint: did you mean `min`? response.delay_ms takes: min, max)",
        ],
    );
}

#[tokio::test]
async fn bad_delays_through_the_admin_api_are_422_at_their_pointer() {
    let gw = from_api(&[]).await;
    let with = |delay: Value| json!({"verb": "GET", "path": "/x", "response": {"code": 200, "delay_ms": delay}});
    for (delay, pointer) in [
        (json!(-1), "/data/attributes/response/delay_ms"),
        (json!(600_001), "/data/attributes/response/delay_ms"),
        (json!(1.5), "/data/attributes/response/delay_ms"),
        (json!("fast"), "/data/attributes/response/delay_ms"),
        (json!({"min": 10}), "/data/attributes/response/delay_ms/max"),
        (json!({"max": 10}), "/data/attributes/response/delay_ms/min"),
        (
            json!({"min": -1, "max": 10}),
            "/data/attributes/response/delay_ms/min",
        ),
        (
            json!({"min": 50, "max": 10}),
            "/data/attributes/response/delay_ms",
        ),
    ] {
        assert_422(&gw, with(delay), &[pointer]).await;
    }
}

// ---------------------------------------------------------------- faults

const FAULT_TOML: &str = r#"
[[endpoints]]
id = "reset"
verb = "GET"
path = "/reset"
response = { code = 200, body = "never", fault = "reset" }

[[endpoints]]
id = "empty"
verb = "GET"
path = "/empty"
response = { code = 200, body = "never", fault = "empty" }

[[endpoints]]
id = "partial"
verb = "GET"
path = "/partial"
[endpoints.response]
code = 200
headers = { "X-Partial" = "yes" }
body = "0123456789"
fault = { close_after_bytes = 4 }

[[endpoints]]
id = "header-only"
verb = "GET"
path = "/header-only"
response = { code = 200, body = "0123456789", fault = { close_after_bytes = 0 } }

[[endpoints]]
id = "slow-empty"
verb = "POST"
path = "/slow-empty"
response = { code = 200, body = "never", fault = "empty", delay_ms = 300 }

[[endpoints]]
id = "template-partial"
verb = "GET"
path = "/tp/{id}"
response = { code = 200, template = "id={{ request.params.id }};", fault = { close_after_bytes = 5 } }
"#;

fn fault_endpoints() -> Vec<Value> {
    vec![
        json!({"verb": "GET", "path": "/reset", "response": {"code": 200, "body": "never", "fault": "reset"}}),
        json!({"verb": "GET", "path": "/empty", "response": {"code": 200, "body": "never", "fault": "empty"}}),
        json!({"verb": "GET", "path": "/partial", "response": {"code": 200, "headers": {"X-Partial": "yes"},
               "body": "0123456789", "fault": {"close_after_bytes": 4}}}),
        json!({"verb": "GET", "path": "/header-only", "response": {"code": 200, "body": "0123456789",
               "fault": {"close_after_bytes": 0}}}),
        json!({"verb": "POST", "path": "/slow-empty", "response": {"code": 200, "body": "never",
               "fault": "empty", "delay_ms": 300}}),
        json!({"verb": "GET", "path": "/tp/{id}", "response": {"code": 200,
               "template": "id={{ request.params.id }};", "fault": {"close_after_bytes": 5}}}),
    ]
}

/// Sends a raw request and reads until the server ends the connection:
/// what was read, and the error that ended it (`None` for a clean close).
fn raw_until_closed(port: u16, request: &str) -> (Vec<u8>, Option<ErrorKind>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return (out, Some(e.kind())),
        }
    }
}

fn get_req(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n")
}

async fn check_faults(gw: &Gateway) {
    // reset: the connection is reset (RST), nothing is answered.
    let (got, err) = raw_until_closed(gw.port, &get_req("/reset"));
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert_eq!(err, Some(ErrorKind::ConnectionReset));

    // empty: the connection is closed without a byte.
    let (got, err) = raw_until_closed(gw.port, &get_req("/empty"));
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    assert_eq!(err, None);

    // close_after_bytes: the header (with the full length) and N body bytes.
    let (got, err) = raw_until_closed(gw.port, &get_req("/partial"));
    assert_eq!(err, None);
    let text = String::from_utf8_lossy(&got).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let head_lc = head.to_ascii_lowercase();
    assert!(head_lc.contains("content-length: 10"), "{head}");
    assert!(head_lc.contains("x-partial: yes"), "{head}");
    assert_eq!(body, "0123");

    let (got, _) = raw_until_closed(gw.port, &get_req("/header-only"));
    let text = String::from_utf8_lossy(&got).to_string();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "{text:?}");

    let (got, _) = raw_until_closed(gw.port, &get_req("/tp/12345"));
    let text = String::from_utf8_lossy(&got).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    assert!(
        head.to_ascii_lowercase().contains("content-length: 9"),
        "{head}"
    );
    assert_eq!(body, "id=12");

    // A fault after a delay; the request body is read first.
    let started = Instant::now();
    let (got, err) = raw_until_closed(
        gw.port,
        "POST /slow-empty HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert!(got.is_empty());
    assert_eq!(err, None);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A client sees an error, and the gateway carries on.
    assert!(client().get(gw.url("/reset")).send().await.is_err());
    assert!(client().get(gw.url("/empty")).send().await.is_err());
    let r = client().get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn faults_from_a_file() {
    let gw = from_file(FAULT_TOML);
    check_faults(&gw).await;
}

#[tokio::test]
async fn faults_through_the_admin_api() {
    let gw = from_api(&fault_endpoints()).await;
    check_faults(&gw).await;
    let (_, list) = send(&gw, Method::GET, "/endpoints", None).await;
    let faults: Vec<&Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["attributes"]["response"]["fault"])
        .collect();
    assert_eq!(faults[0], "reset");
    assert_eq!(faults[1], "empty");
    assert_eq!(*faults[2], json!({"close_after_bytes": 4}));
}

const BAD_FAULTS: &str = r#"[[endpoints]]
verb = "GET"
path = "/a"
response = { code = 200, fault = "explode" }

[[endpoints]]
verb = "GET"
path = "/b"
response = { code = 200, fault = { close_after_bytes = -1 } }

[[endpoints]]
verb = "GET"
path = "/c"
response = { code = 200, fault = {} }

[[endpoints]]
verb = "GET"
path = "/d"
response = { code = 200, fault = 5 }

[[endpoints]]
verb = "GET"
path = "/e"
response = { code = 200, fault = { close_after = 5 } }
"#;

#[test]
fn bad_faults_in_a_file_are_reported_at_their_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f.toml"), BAD_FAULTS).unwrap();
    let (code, err) = validate(dir.path());
    assert_eq!(code, Some(1), "{err}");
    let hint = "(hint: write \"reset\", \"empty\" or { close_after_bytes = N })";
    assert_errors(
        dir.path(),
        &err,
        &[
            &format!("f.toml:4:34: response.fault `explode` is not a fault {hint}"),
            "f.toml:9:56: response.fault.close_after_bytes must be between 0 and 4294967295, not -1",
            &format!("f.toml:14:34: response.fault needs close_after_bytes {hint}"),
            &format!("f.toml:19:34: response.fault must be a string or a table, not an integer {hint}"),
            &format!("f.toml:24:34: response.fault needs close_after_bytes {hint}"),
            "f.toml:24:36: unknown key `close_after` in response.fault (hint: response.fault takes: close_after_bytes)",
        ],
    );
}

#[tokio::test]
async fn bad_faults_through_the_admin_api_are_422_at_their_pointer() {
    let gw = from_api(&[]).await;
    let with = |fault: Value| json!({"verb": "GET", "path": "/x", "response": {"code": 200, "fault": fault}});
    for (fault, pointer) in [
        (json!("explode"), "/data/attributes/response/fault"),
        (json!("RESET"), "/data/attributes/response/fault"),
        (json!(5), "/data/attributes/response/fault"),
        (json!({}), "/data/attributes/response/fault"),
        (
            json!({"close_after_bytes": -1}),
            "/data/attributes/response/fault/close_after_bytes",
        ),
        (
            json!({"close_after_bytes": "4"}),
            "/data/attributes/response/fault/close_after_bytes",
        ),
    ] {
        assert_422(&gw, with(fault), &[pointer]).await;
    }
    // Several errors at once, each at its place.
    assert_422(
        &gw,
        json!({"verb": "GET", "path": "/x", "response": {"code": 200, "fault": "x",
               "delay_ms": {"min": 5, "max": 1}, "template": "{{"}}),
        &[
            "/data/attributes/response/fault",
            "/data/attributes/response/delay_ms",
            "/data/attributes/response/template",
        ],
    )
    .await;
}

// ----------------------------------------------------------------- proxy

#[tokio::test]
async fn a_proxied_endpoint_takes_no_template_delay_or_fault() {
    let upstream = "[upstreams.backend]\nurl = \"http://127.0.0.1:9\"\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.json"), "{}").unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        format!(
            r#"{upstream}
[[endpoints]]
verb = "GET"
path = "/a"
response = {{ code = 200, proxy = "backend", template = "x", delay_ms = 5, fault = "reset" }}

[[endpoints]]
verb = "GET"
path = "/b"
response = {{ code = 200, proxy = "backend", body_file = "b.json" }}
"#
        ),
    )
    .unwrap();
    let (code, err) = validate(dir.path());
    assert_eq!(code, Some(1), "{err}");
    let hint = "(hint: a proxied request is answered by the upstream: remove one of them)";
    assert_errors(
        dir.path(),
        &err,
        &[
            &format!("p.toml:7:56: response.template cannot be given together with response.proxy {hint}"),
            &format!("p.toml:7:72: response.delay_ms cannot be given together with response.proxy {hint}"),
            &format!("p.toml:7:83: response.fault cannot be given together with response.proxy {hint}"),
            &format!("p.toml:12:57: response.body_file cannot be given together with response.proxy {hint}"),
        ],
    );

    let gw = Gateway::start_with(Options {
        config: Some(upstream.into()),
        args: memory(),
        ..Options::default()
    });
    assert_422(
        &gw,
        json!({"verb": "GET", "path": "/x", "response": {"code": 200, "proxy": "backend",
               "template": "x", "delay_ms": {"min": 1, "max": 2}, "fault": "empty"}}),
        &[
            "/data/attributes/response/template",
            "/data/attributes/response/delay_ms",
            "/data/attributes/response/fault",
        ],
    )
    .await;
    let (status, body) = post(
        &gw,
        &doc(json!({"verb": "GET", "path": "/x", "response": {"code": 200, "proxy": "backend"}})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

/// Every response carries one current `Date` and one `Connection` that says
/// what the server does with the connection, whatever the canned header
/// holds.
#[test]
fn date_and_connection_are_set_per_response() {
    let gw = from_file(
        r#"
[[endpoints]]
verb = "GET"
path = "/plain"
[endpoints.response]
code = 200
headers = { "Content-Type" = "text/plain", "X-One" = "1" }
body = "plain"
"#,
    );
    let header_values = |raw: &str, name: &str| -> Vec<String> {
        raw.split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once(':'))
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    };
    let year = chrono::Utc::now().format("%Y").to_string();
    // Two requests, one after the other, on one connection.
    let mut conn = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut responses = Vec::new();
    for request in [
        "GET /plain HTTP/1.1\r\nHost: a\r\n\r\n",
        "GET /plain HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    ] {
        conn.write_all(request.as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&got).ends_with("\r\n\r\nplain") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        responses.push(String::from_utf8(got).unwrap());
    }
    for (raw, connection) in responses.iter().zip(["keep-alive", "close"]) {
        let dates = header_values(raw, "date");
        assert_eq!(dates.len(), 1, "{raw}");
        assert!(
            dates[0].contains(&year) && dates[0].ends_with("GMT"),
            "{raw}"
        );
        assert_eq!(header_values(raw, "connection"), vec![connection], "{raw}");
        assert_eq!(header_values(raw, "x-one"), vec!["1"], "{raw}");
        assert_eq!(header_values(raw, "content-length"), vec!["5"], "{raw}");
    }
    let old = raw_request(gw.port, "GET /plain HTTP/1.0\r\n\r\n");
    assert!(old.starts_with("HTTP/1.1 200"), "{old}");
    assert_eq!(header_values(&old, "connection"), vec!["close"], "{old}");
    assert!(old.ends_with("\r\n\r\nplain"), "{old}");
}

/// The bodies of the responses in `raw`, one after the other on a connection.
fn response_bodies(raw: &str) -> Vec<&str> {
    raw.split("HTTP/1.1 ")
        .skip(1)
        .map(|r| r.split("\r\n\r\n").nth(1).unwrap_or_default())
        .collect()
}

/// Requests sent one after the other without waiting (HTTP/1.1 pipelining),
/// a POST with a body among them, are all answered, in order, on the one
/// connection.
#[test]
fn pipelined_requests_are_answered_in_order() {
    let gw = from_file(
        r#"
[[endpoints]]
verb = "GET"
path = "/p/{n}"
[endpoints.response]
code = 200
template = "get {{ request.params.n }}"

[[endpoints]]
verb = "POST"
path = "/p"
[endpoints.response]
code = 201
body = "posted"
"#,
    );
    let raw = raw_request(
        gw.port,
        "GET /p/1 HTTP/1.1\r\nHost: a\r\n\r\n\
         POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
         GET /p/2 HTTP/1.1\r\nHost: a\r\n\r\n\
         GET /p/3 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    let bodies = response_bodies(&raw);
    assert_eq!(bodies, ["get 1", "posted", "get 2", "get 3"], "{raw}");
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert_eq!(raw.matches("HTTP/1.1 201").count(), 1, "{raw}");
}

/// Canned answers that depend on method and path alone are written by the
/// fast path; they are byte for byte what Pingora's session writes for the
/// same request (asked, here, with a `Connection` value the fast path
/// leaves to Pingora). Requests pipelined behind one the fast path hands
/// over are all answered, in order.
#[test]
fn the_fast_path_answers_as_pingora_does() {
    let gw = from_file(
        r#"
[[endpoints]]
verb = "GET"
path = "/fast"
[endpoints.response]
code = 201
headers = { "Content-Type" = "text/plain", "X-Multi-Word-Name" = "v" }
body = "fast"

[[endpoints]]
verb = "GET"
path = "/empty"
[endpoints.response]
code = 204

[[endpoints]]
verb = "POST"
path = "/p"
[endpoints.response]
code = 201
body = "posted"
"#,
    );
    let fast_count = || -> u64 {
        let raw = raw_request(
            gw.port,
            "GET /metrics HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        raw.lines()
            .find_map(|l| {
                l.strip_prefix("echo_fast_path_requests_total ")?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no fast path counter in {raw}"))
    };
    let without_date = |raw: &str| -> String {
        raw.split("\r\n")
            .filter(|l| !l.starts_with("Date: "))
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    for (path, fast_path) in [
        ("/fast", true),
        ("/fast?q=1", true),
        ("/empty", true),
        ("/nothing", true),
        ("/healthz", false),
    ] {
        let before = fast_count();
        let fast = raw_request(
            gw.port,
            &format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"),
        );
        let after = fast_count();
        let slow = raw_request(
            gw.port,
            &format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close, x-other\r\n\r\n"),
        );
        assert_eq!(after - before, u64::from(fast_path), "{path}: {fast}");
        assert_eq!(
            fast_count(),
            after,
            "{path}: the second request went to Pingora"
        );
        assert!(fast.contains("\r\nDate: "), "{fast}");
        assert_eq!(without_date(&fast), without_date(&slow), "{path}");
    }
    assert!(raw_request(gw.port, "GET /fast HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        .starts_with("HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nX-Multi-Word-Name: v\r\nContent-Length: 4\r\nDate: "));

    let raw = raw_request(
        gw.port,
        "GET /fast HTTP/1.1\r\nHost: a\r\n\r\n\
         GET /fast?x=1 HTTP/1.1\r\nHost: a\r\n\r\n\
         POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello\
         GET /fast HTTP/1.1\r\nHost: a\r\n\r\n\
         GET /fast HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    );
    let bodies = response_bodies(&raw);
    assert_eq!(bodies, ["fast", "fast", "posted", "fast", "fast"], "{raw}");

    // A request header that arrives in pieces.
    let mut conn = TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for piece in [
        "GET /fa",
        "st HTTP/1.1\r\nHo",
        "st: a\r\nConnection: close\r\n",
        "\r\n",
    ] {
        conn.write_all(piece.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
    let mut got = String::new();
    conn.read_to_string(&mut got).unwrap();
    assert!(
        got.starts_with("HTTP/1.1 201") && got.ends_with("\r\n\r\nfast"),
        "{got}"
    );
}
