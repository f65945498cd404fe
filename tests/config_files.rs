//! Config files: endpoints served from them, listed and read-only through the
//! admin API, shadowed by runtime endpoints; `validate` and broken configs.

mod common;

use std::process::Command;

use common::*;
use reqwest::Method;
use serde_json::json;

const API: &str = r#"
[[endpoints]]
id = "user-me"
verb = "GET"
path = "/users/me"
response = { code = 200, body = "me" }

[[endpoints]]
id = "user-by-id"
verb = "GET"
path = "/users/{id}"
response = { code = 200, body = "user" }

[[endpoints]]
id = "user-files"
verb = "GET"
path = "/users/{id}/files/{*path}"
response = { code = 200, body = "file" }

[[endpoints]]
id = "user-regex"
verb = "GET"
path_regex = "/users/[0-9]+/avatar\\.(png|jpg)"
priority = 10
response = { code = 200, body = "avatar" }

[[endpoints]]
id = "user-regex-high"
verb = "GET"
path_regex = "/users/[0-9]+"
priority = 100
response = { code = 200, body = "regex-user" }

[[endpoints]]
id = "any-report"
verb = "GET"
path_regex = "/reports/.*"
response = { code = 200, body = "report-low" }

[[endpoints]]
id = "csv-report"
verb = "GET"
path_regex = "/reports/.*\\.csv"
priority = 5
response = { code = 200, body = "report-csv", headers = { "Content-Type" = "text/csv" } }
"#;

async fn body_of(gw: &Gateway, path: &str) -> (u16, String) {
    let r = client().get(gw.url(path)).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn templates_and_precedence() {
    let gw = Gateway::with_config(API);
    assert_eq!(body_of(&gw, "/users/me").await, (200, "me".into()));
    assert_eq!(body_of(&gw, "/users/42").await, (200, "user".into()));
    assert_eq!(
        body_of(&gw, "/users/42/files/a/b.txt").await,
        (200, "file".into())
    );
    // A template beats a regex, whatever the regex's priority.
    assert_eq!(body_of(&gw, "/users/42").await.1, "user");
    assert_eq!(
        body_of(&gw, "/users/42/avatar.png").await,
        (200, "avatar".into())
    );
    assert_eq!(body_of(&gw, "/users/x/avatar.png").await.0, 404);
    // Among regexes, the higher priority wins, then the older endpoint.
    assert_eq!(
        body_of(&gw, "/reports/q1.csv").await,
        (200, "report-csv".into())
    );
    assert_eq!(
        body_of(&gw, "/reports/q1.pdf").await,
        (200, "report-low".into())
    );
    assert_eq!(body_of(&gw, "/users").await.0, 404);
    assert_eq!(body_of(&gw, "/users/42/files/").await.0, 404);
}

#[tokio::test]
async fn file_endpoints_are_listed_with_source_and_read_only() {
    let gw = Gateway::with_config(API);
    let (status, list) = send(&gw, Method::GET, "/endpoints", None).await;
    assert_eq!(status, 200);
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 7);
    assert_eq!(data[0]["id"], "user-me");
    let source = data[0]["attributes"]["source"].as_str().unwrap();
    assert!(source.ends_with("config.toml"), "{source}");
    assert_eq!(
        data[3]["attributes"]["path_regex"],
        "/users/[0-9]+/avatar\\.(png|jpg)"
    );
    assert_eq!(data[3]["attributes"]["priority"], 10);

    let (status, one) = send(&gw, Method::GET, "/endpoints/user-by-id", None).await;
    assert_eq!(status, 200);
    assert_eq!(one["data"]["attributes"]["path"], "/users/{id}");

    let patch = json!({"data": {"type": "endpoints", "attributes": {"response": {"code": 500}}}});
    let (status, err) = send(&gw, Method::PATCH, "/endpoints/user-me", Some(&patch)).await;
    assert_eq!(status, 403);
    assert_eq!(err["errors"][0]["code"], "read_only");
    let (status, err) = send(&gw, Method::DELETE, "/endpoints/user-me", None).await;
    assert_eq!(status, 403);
    assert_eq!(err["errors"][0]["code"], "read_only");
    assert_eq!(body_of(&gw, "/users/me").await, (200, "me".into()));
}

#[tokio::test]
async fn a_runtime_endpoint_shadows_a_file_endpoint_until_deleted() {
    let gw = Gateway::with_config(API);
    let (status, created) = post(&gw, &endpoint_doc("GET", "/users/me", 200, "runtime me")).await;
    assert_eq!(status, 201, "a file endpoint is no conflict: {created}");
    assert_eq!(body_of(&gw, "/users/me").await.1, "runtime me");
    // A template of the same shape shadows too.
    let (status, _) = post(
        &gw,
        &endpoint_doc("GET", "/users/{user}", 200, "runtime user"),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(body_of(&gw, "/users/7").await.1, "runtime user");
    // ...but two runtime endpoints of one shape conflict.
    let (status, _) = post(&gw, &endpoint_doc("GET", "/users/{other}", 200, "")).await;
    assert_eq!(status, 409);

    let id = created["data"]["id"].as_str().unwrap();
    let (status, _) = send(&gw, Method::DELETE, &format!("/endpoints/{id}"), None).await;
    assert_eq!(status, 204);
    assert_eq!(body_of(&gw, "/users/me").await.1, "me");
}

#[tokio::test]
async fn a_directory_of_files_is_one_config() {
    let gw = Gateway::start_with(Options {
        files: vec![
            ("a.toml".into(), "[server]\nkeepalive_timeout_secs = 5\n[[endpoints]]\nverb = \"GET\"\npath = \"/a\"\nresponse = { code = 200, body = \"a\" }\n".into()),
            ("b.toml".into(), "[[endpoints]]\nverb = \"GET\"\npath = \"/b\"\nresponse = { code = 202, body = \"b\" }\n".into()),
            ("notes.txt".into(), "not a config file".into()),
        ],
        ..Options::default()
    });
    assert_eq!(body_of(&gw, "/a").await, (200, "a".into()));
    assert_eq!(body_of(&gw, "/b").await, (202, "b".into()));
    let (_, list) = send(&gw, Method::GET, "/endpoints", None).await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a-1", "b-1"]);
}

const BROKEN_A: &str = "[server]\nlisten = \"nowhere\"\nthreds = 2\n";
const BROKEN_B: &str = r#"[server]
threads = 1

[[endpoints]]
verb = "get"
path = "no-slash"
response = { code = 99, headers = { "Content-Length" = "5" }, body = 3 }

[[endpoints]]
id = "x"
verb = "GET"
path = "/ok"
respons = { code = 200 }

[upstreams.api]
url = "ftp://example.com"
"#;
const BROKEN_C: &str = "[[endpoints]\nverb = \"GET\"\n";

fn broken_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.toml"), BROKEN_A).unwrap();
    std::fs::write(dir.path().join("b.toml"), BROKEN_B).unwrap();
    std::fs::write(dir.path().join("c.toml"), BROKEN_C).unwrap();
    dir
}

#[test]
fn validate_reports_every_error_with_file_line_col() {
    let dir = broken_dir();
    let out = Command::new(BIN)
        .arg("validate")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let d = dir.path().display();
    let expect = [
        format!("{d}/a.toml:2:10: server.listen `nowhere` is not an address and port"),
        format!("{d}/a.toml:3:1: unknown key `threds` in [server] (hint: did you mean `threads`?"),
        format!("{d}/b.toml:1:1: section [server] is defined twice (hint: it is already defined at {d}/a.toml:1:1"),
        format!("{d}/b.toml:5:8: verb must be one of GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE or ANY (hint: methods are case-sensitive: write `GET`)"),
        format!("{d}/b.toml:6:8: path must start with `/`"),
        format!("{d}/b.toml:7:21: response.code must be between 200 and 599, not 99"),
        format!("{d}/b.toml:7:37: header `Content-Length` is set by the server"),
        format!("{d}/b.toml:7:70: response.body must be a string, not an integer"),
        format!("{d}/b.toml:9:1: response is required"),
        format!("{d}/b.toml:13:1: unknown key `respons` in an endpoint (hint: did you mean `response`?"),
        format!("{d}/b.toml:16:7: upstream url `ftp://example.com` must start with http:// or https://"),
        format!("{d}/c.toml:1:"),
    ];
    for e in &expect {
        assert!(err.contains(e.as_str()), "missing `{e}` in:\n{err}");
    }
    assert!(err.contains(" error(s)"), "{err}");
}

#[test]
fn serve_refuses_a_broken_config_and_says_why() {
    let dir = broken_dir();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--config",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("b.toml:6:8: path must start with `/`"),
        "{err}"
    );
}

#[test]
fn validate_accepts_a_good_config_with_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("api.toml");
    std::fs::write(&p, API).unwrap();
    let out = Command::new(BIN).arg("validate").arg(&p).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ok: 1 file(s), 7 endpoint(s), 0 upstream(s)"
    );
}

#[test]
fn validate_rejects_a_missing_path() {
    let out = Command::new(BIN)
        .args(["validate", "/nonexistent/echo.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("/nonexistent/echo.toml:1:1: cannot read the config path"),
        "{err}"
    );
}
