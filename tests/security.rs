//! Security rules, against the real binary: no header injection through
//! any configurable field.

mod common;

use common::*;
use serde_json::json;

/// A header name or value that would end a header line (CR, LF), or a
/// name that is not an HTTP token, is refused with a 422 at its pointer;
/// nothing is created, and nothing can be injected into a response.
#[tokio::test]
async fn header_injection_is_refused_through_the_admin_api() {
    let gw = Gateway::start();
    let with_headers = |headers: serde_json::Value| json!({"verb": "GET", "path": "/h", "response": {"code": 200, "headers": headers}});
    for value in [
        "a\r\nSet-Cookie: stolen=1",
        "a\nX-Injected: 1",
        "a\rb",
        "nul\u{0}",
        "é",
    ] {
        assert_422(
            &gw,
            with_headers(json!({ "X-A": value })),
            &["/data/attributes/response/headers/X-A"],
        )
        .await;
    }
    for name in ["X-A\r\nSet-Cookie", "X A", "X-A:", ""] {
        let mut headers = serde_json::Map::new();
        headers.insert(name.to_string(), json!("v"));
        let pointer = format!(
            "/data/attributes/response/headers/{}",
            name.replace('~', "~0").replace('/', "~1")
        );
        assert_422(&gw, with_headers(json!(headers)), &[pointer.as_str()]).await;
    }
    // Headers the server derives are not configurable either.
    assert_422(
        &gw,
        with_headers(json!({"Content-Length": "0"})),
        &["/data/attributes/response/headers/Content-Length"],
    )
    .await;
    let r = client().get(gw.url("/h")).send().await.unwrap();
    assert_eq!(r.status(), 404, "nothing was created");
}

/// The same rules hold in a config file, reported at the line and column.
#[test]
fn header_injection_is_refused_in_config_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("echo.toml");
    std::fs::write(
        &file,
        "[[endpoints]]\nverb = \"GET\"\npath = \"/h\"\n[endpoints.response]\ncode = 200\nheaders = { \"X-A\" = \"a\\r\\nSet-Cookie: x=1\" }\n",
    )
    .unwrap();
    let (code, stderr) = validate(&file);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:6:21: header `X-A` has a character",
            file.display()
        )),
        "{stderr}"
    );
}
