//! Pass-through: the fallback upstream (sidecar mode), `response.proxy`, the
//! Host header, and the 502 / 504 answers.

mod common;

use common::*;
use serde_json::json;

fn sidecar_config(upstream: &str, extra: &str) -> String {
    format!(
        r#"
[upstreams.backend]
url = "{upstream}"
connect_timeout_ms = 500
read_timeout_ms = 700

[fallback]
upstream = "backend"

[[endpoints]]
id = "mocked"
verb = "GET"
path = "/mocked"
response = {{ code = 200, body = "from the mock" }}
{extra}
"#
    )
}

#[tokio::test]
async fn unmatched_requests_go_to_the_fallback_upstream() {
    let up = TestUpstream::echo();
    let gw = Gateway::with_config(&sidecar_config(&up.url(), ""));
    let http = client();

    let r = http.get(gw.url("/mocked")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "from the mock");

    let r = http
        .get(gw.url("/real/thing?q=1"))
        .header("X-Test", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-upstream"], "echo");
    let seen = r.text().await.unwrap();
    assert!(
        seen.starts_with("GET /real/thing?q=1 HTTP/1.1\r\n"),
        "{seen}"
    );
    assert!(seen.to_ascii_lowercase().contains("x-test: yes"), "{seen}");
    // The Host header names the upstream, not the gateway.
    let host = format!("host: 127.0.0.1:{}", up.port);
    assert!(seen.to_ascii_lowercase().contains(&host), "{seen}");

    // A body is passed through whole.
    let r = http
        .post(gw.url("/submit"))
        .body("a=1&b=2")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().ends_with("\r\n\r\na=1&b=2"));
}

#[tokio::test]
async fn preserve_host_keeps_the_clients_host() {
    let up = TestUpstream::echo();
    let cfg = sidecar_config(&up.url(), "").replace(
        "read_timeout_ms = 700",
        "read_timeout_ms = 700\npreserve_host = true",
    );
    let gw = Gateway::with_config(&cfg);
    let r = client()
        .get(gw.url("/x"))
        .header("Host", "api.example.com")
        .send()
        .await
        .unwrap();
    let seen = r.text().await.unwrap().to_ascii_lowercase();
    assert!(seen.contains("host: api.example.com"), "{seen}");
}

#[tokio::test]
async fn an_endpoint_can_proxy_to_a_named_upstream() {
    let up = TestUpstream::echo();
    let cfg = format!(
        r#"
[upstreams.backend]
url = "{}"

[[endpoints]]
id = "via-backend"
verb = "GET"
path = "/users/{{id}}"
response = {{ code = 200, proxy = "backend" }}
"#,
        up.url()
    );
    let gw = Gateway::with_config(&cfg);
    let http = client();
    let r = http.get(gw.url("/users/7")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().starts_with("GET /users/7 HTTP/1.1"));
    // Without a fallback, other paths get the Echo 404.
    let r = http.get(gw.url("/other")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // The admin API can point an endpoint at a configured upstream, not at any other.
    let (status, body) = post(
        &gw,
        &json!({"data": {"type": "endpoints", "attributes": {
        "verb": "GET", "path": "/rt", "response": {"code": 200, "proxy": "backend"}}}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["attributes"]["response"]["proxy"], "backend");
    let r = http.get(gw.url("/rt")).send().await.unwrap();
    assert!(r.text().await.unwrap().starts_with("GET /rt HTTP/1.1"));
    let (status, body) = post(&gw, &json!({"data": {"type": "endpoints", "attributes": {
        "verb": "GET", "path": "/evil", "response": {"code": 200, "proxy": "http://169.254.169.254"}}}})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body["errors"][0]["source"]["pointer"],
        "/data/attributes/response/proxy"
    );
}

#[tokio::test]
async fn a_refused_upstream_is_502_naming_it() {
    let closed = free_port();
    let gw = Gateway::with_config(&sidecar_config(&format!("http://127.0.0.1:{closed}"), ""));
    let r = client().get(gw.url("/anything")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["content-type"], JSONAPI);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "bad_gateway");
    let detail = body["errors"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("`backend`"), "{detail}");
    assert!(detail.contains("refused"), "{detail}");
}

#[tokio::test]
async fn a_silent_upstream_is_504_naming_it() {
    let up = TestUpstream::silent();
    let gw = Gateway::with_config(&sidecar_config(&up.url(), ""));
    let started = std::time::Instant::now();
    let r = client().get(gw.url("/slow")).send().await.unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["errors"][0]["code"], "gateway_timeout");
    let detail = body["errors"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("`backend`") && detail.contains("700 ms"),
        "{detail}"
    );
}

/// An upstream whose answer's framing the request path picks: chunked with
/// a trailer, to the close of the connection, `Connection: close`,
/// hop-by-hop fields, and a connection it drops once idle.
fn framing_upstream() -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        match conn.read(&mut chunk) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end);
                    let path = head.split(' ').nth(1).unwrap_or_default().to_string();
                    let (response, then_close): (&[u8], bool) = match path.as_str() {
                        "/chunked" => (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n", false),
                        "/until-close" => (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close", true),
                        "/then-close" => (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbye!", true),
                        "/hop" => (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\n\r\nok", false),
                        "/idle-close" => (b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nidle", false),
                        _ => (b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", false),
                    };
                    if conn.write_all(response).is_err() || then_close {
                        return;
                    }
                    if path == "/idle-close" {
                        // Closed without a word once idle, as upstreams do.
                        std::thread::sleep(std::time::Duration::from_millis(100));
                        return;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn every_response_framing_is_relayed_and_connections_are_reused_safely() {
    let port = framing_upstream();
    let gw = Gateway::with_config(&sidecar_config(&format!("http://127.0.0.1:{port}"), ""));
    let http = client();
    for round in 0..3 {
        for (path, body) in [
            ("/chunked", "hello world"),
            ("/hop", "ok"),
            ("/until-close", "until the close"),
            ("/then-close", "bye!"),
            ("/idle-close", "idle"),
        ] {
            let r = http.get(gw.url(path)).send().await.unwrap();
            assert_eq!(r.status(), 200, "round {round}: {path}");
            if path == "/hop" {
                assert_eq!(r.headers()["x-kept"], "yes");
                assert!(r.headers().get("keep-alive").is_none(), "{:?}", r.headers());
            }
            assert_eq!(r.text().await.unwrap(), body, "round {round}: {path}");
        }
        // The idle connection the upstream dropped is not used again.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let r = http.head(gw.url("/hop")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");
    assert_eq!(
        http.get(gw.url("/other")).send().await.unwrap().status(),
        404
    );
    // They went the fast path's way (plain HTTP/1.1, no request body).
    let metrics = http.get(gw.url("/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    let fast: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("echo_fast_path_requests_total ")?
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    assert!(fast >= 17.0, "{text}");
}
