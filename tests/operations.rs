//! Operations: health endpoints, the healthcheck command, logs, the token
//! from the environment, graceful shutdown.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[tokio::test]
async fn health_endpoints_answer_on_both_listeners() {
    let gw = Gateway::start_with(Options {
        admin_listener: true,
        ..Options::default()
    });
    let http = client();
    for url in [gw.url("/healthz"), gw.admin_url("/healthz")] {
        let r = http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.text().await.unwrap(), r#"{"status":"ok"}"#);
    }
    let r = http.get(gw.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ready: serde_json::Value = r.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert!(ready["generation"].as_u64().unwrap() >= 1);
    // Unknown paths on the admin listener are the Echo 404.
    let r = http.get(gw.admin_url("/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn a_mock_on_a_health_path_takes_precedence() {
    let gw = Gateway::start();
    let (status, _) = post(&gw, &endpoint_doc("GET", "/healthz", 200, "mocked health")).await;
    assert_eq!(status, 201);
    let r = client().get(gw.url("/healthz")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "mocked health");
}

#[test]
fn healthcheck_exits_0_when_healthy_and_1_otherwise() {
    let gw = Gateway::start();
    let ok = Command::new(BIN)
        .args(["healthcheck", &gw.url("/healthz")])
        .output()
        .unwrap();
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains(": 200"));

    let missing = Command::new(BIN)
        .args(["healthcheck", &gw.url("/missing")])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));

    let closed = format!("http://127.0.0.1:{}/healthz", free_port());
    let down = Command::new(BIN)
        .args(["healthcheck", &closed, "--timeout-ms", "500"])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let gw = Gateway::start_with(Options {
        args: vec!["--log-format".into(), "json".into()],
        ..Options::default()
    });
    let logs = gw.logs();
    let first = logs.lines().next().expect("a log line");
    let v: serde_json::Value = serde_json::from_str(first).expect("JSON log line");
    assert_eq!(v["message"], "echo-gateway starting");
    assert_eq!(v["level"], "INFO");
}

#[tokio::test]
async fn the_admin_token_can_come_from_the_environment() {
    let gw = Gateway::start_with(Options {
        config: Some("[admin]\ntoken_env = \"TEST_ECHO_TOKEN\"\n".into()),
        env: vec![("TEST_ECHO_TOKEN".into(), "from-env".into())],
        ..Options::default()
    });
    let http = client();
    let r = http.get(gw.url("/endpoints")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(gw.url("/endpoints"))
        .bearer_auth("from-env")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn a_missing_token_variable_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[admin]\ntoken_env = \"TEST_ECHO_UNSET_TOKEN\"\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--config",
        ])
        .arg(&cfg)
        .env_remove("TEST_ECHO_UNSET_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("TEST_ECHO_UNSET_TOKEN"));
}

#[test]
fn sigterm_shuts_down_within_the_grace_period() {
    let mut gw = Gateway::with_config("[server]\nshutdown_grace_secs = 1\n");
    let started = Instant::now();
    let status = gw
        .signal_and_wait("TERM", Duration::from_secs(10))
        .expect("exited after SIGTERM");
    assert!(status.success(), "{status:?}\n{}", gw.logs());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "the grace period is kept: {took:?}"
    );
    assert!(took < Duration::from_secs(6), "{took:?}");
    // The listener is closed.
    assert_eq!(
        raw_request(gw.port, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n"),
        ""
    );
}

#[test]
fn keep_alive_connections_close_after_the_idle_timeout() {
    let gw = Gateway::with_config("[server]\nkeepalive_timeout_secs = 1\n");
    let started = Instant::now();
    // raw_request reads until the server closes the kept-alive connection.
    let resp = raw_request(gw.port, "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[test]
fn http_1_0_closes_unless_asked_to_keep_alive() {
    let gw = Gateway::with_config("[server]\nkeepalive_timeout_secs = 5\n");
    let started = Instant::now();
    let resp = raw_request(gw.port, "GET /healthz HTTP/1.0\r\n\r\n");
    assert!(
        resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"),
        "{resp}"
    );
    assert!(started.elapsed() < Duration::from_secs(2), "closed at once");
    let resp = raw_request(
        gw.port,
        "GET /nope HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    assert!(started.elapsed() < Duration::from_secs(2), "closed at once");
}

#[tokio::test]
async fn echo_admin_token_in_the_environment_protects_the_admin_api() {
    let gw = Gateway::start_with(Options {
        env: vec![("ECHO_ADMIN_TOKEN".into(), "env-token".into())],
        ..Options::default()
    });
    let http = client();
    let r = http.get(gw.url("/endpoints")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(gw.url("/endpoints"))
        .bearer_auth("env-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The token never shows in the logs.
    assert!(!gw.logs().contains("env-token"));
}
