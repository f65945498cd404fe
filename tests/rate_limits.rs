//! Rate limits: the admin API's, per client address and per token, and an
//! endpoint's declared rate, each answered 429 with `Retry-After`.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// One GET; status, `Retry-After`, parsed body.
async fn get(url: &str, token: Option<&str>) -> (u16, Option<u64>, Value) {
    let mut req = client().get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = resp.text().await.expect("body");
    (
        status,
        retry,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Sends `n` requests at once-after-another pace; the statuses, and the
/// first 429 with its `Retry-After` and body.
async fn burst(url: &str, token: Option<&str>, n: usize) -> (Vec<u16>, Option<(u64, Value)>) {
    let mut statuses = Vec::new();
    let mut refused = None;
    for _ in 0..n {
        let (status, retry, body) = get(url, token).await;
        if status == 429 && refused.is_none() {
            refused = Some((retry.expect("429 has Retry-After"), body));
        }
        statuses.push(status);
    }
    (statuses, refused)
}

/// Within one window at most `limit` pass; over two (a burst may straddle
/// a window's end) at most twice that. The first `limit` always pass.
fn assert_limited(statuses: &[u16], limit: usize, allowed: &[u16]) {
    assert!(
        statuses[..limit].iter().all(|s| allowed.contains(s)),
        "{statuses:?}"
    );
    let passed = statuses.iter().filter(|s| **s != 429).count();
    assert!(passed <= 2 * limit, "{passed} passed: {statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
}

#[tokio::test]
async fn the_admin_api_limits_each_client_address() {
    let gw = from_file("[admin]\nrate_per_client = 5\ntoken = \"secret\"\n");
    let url = gw.admin_url("/endpoints");
    let (statuses, refused) = burst(&url, Some("secret"), 20).await;
    assert_limited(&statuses, 5, &[200]);
    let (retry, body) = refused.expect("a 429");
    assert_eq!(retry, 1);
    assert_eq!(body["errors"][0]["code"], "too_many_requests", "{body}");
    assert_eq!(
        body["errors"][0]["detail"],
        "client 127.0.0.1 sent more than 5 admin requests in a second (admin.rate_per_client)"
    );
    // After Retry-After, the client is served again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(get(&url, Some("secret")).await.0, 200);

    // Wrong tokens count against the client too: guessing is slowed down.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (statuses, _) = burst(&url, Some("guess"), 20).await;
    assert_limited(&statuses, 5, &[401]);

    // Mocks are not limited by the admin rate.
    let (status, body) = post_with(&gw, "secret", &endpoint_doc("GET", "/m", 200, "m")).await;
    if status == 429 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let (status, body) = post_with(&gw, "secret", &endpoint_doc("GET", "/m", 200, "m")).await;
        assert_eq!(status, 201, "{body}");
    } else {
        assert_eq!(status, 201, "{body}");
    }
    for _ in 0..30 {
        assert_eq!(get(&gw.url("/m"), None).await.0, 200);
    }
    let metrics = get(&gw.url("/metrics"), None).await.2;
    let metrics = metrics.as_str().unwrap_or_default().to_string();
    assert!(
        metrics.lines().any(
            |l| l.starts_with("echo_refused_total{reason=\"admin_rate\"} ") && !l.ends_with(" 0")
        ),
        "{metrics}"
    );
}

async fn post_with(gw: &Gateway, token: &str, doc: &Value) -> (u16, Value) {
    let resp = client()
        .post(gw.admin_url("/endpoints"))
        .bearer_auth(token)
        .header("Content-Type", JSONAPI)
        .body(doc.to_string())
        .send()
        .await
        .expect("post");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_admin_api_limits_each_token_across_clients() {
    let gw = from_file("[admin]\nrate_per_client = 0\nrate_per_token = 4\ntoken = \"secret\"\n");
    let url = gw.admin_url("/endpoints");
    let (statuses, refused) = burst(&url, Some("secret"), 20).await;
    assert_limited(&statuses, 4, &[200]);
    let (retry, body) = refused.expect("a 429");
    assert_eq!(retry, 1);
    assert_eq!(
        body["errors"][0]["detail"],
        "more than 4 admin requests in a second came with this token (admin.rate_per_token)"
    );
    // Without the token: 401, never a 429 (no per-client limit here).
    let (statuses, _) = burst(&url, None, 10).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
}

/// An endpoint's `response.rate_limit`: from a file and through the admin
/// API, 429 with `Retry-After` over the rate, served again after it.
#[tokio::test]
async fn an_endpoint_answers_429_over_its_declared_rate() {
    let gw = from_file(
        r#"
[[endpoints]]
verb = "GET"
path = "/limited"
response = { code = 200, body = "ok", rate_limit = { requests = 3, per_secs = 2 } }
"#,
    );
    let (statuses, refused) = burst(&gw.url("/limited"), None, 12).await;
    assert_limited(&statuses, 3, &[200]);
    let (retry, body) = refused.expect("a 429");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(
        body["errors"][0]["detail"],
        format!("endpoint `config-1` answers at most 3 requests per 2 s (response.rate_limit); retry after {retry} s")
    );
    tokio::time::sleep(Duration::from_millis(retry * 1000 + 100)).await;
    let (status, _, body) = get(&gw.url("/limited"), None).await;
    assert_eq!(status, 200, "{body}");

    // Through the admin API: shown as given; 0 refuses every request.
    let (status, created) = post(
        &gw,
        &doc(json!({"verb": "GET", "path": "/never", "response": {"code": 200, "rate_limit": {"requests": 0, "per_secs": 5}}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["data"]["attributes"]["response"]["rate_limit"],
        json!({"requests": 0, "per_secs": 5})
    );
    let (status, retry, _) = get(&gw.url("/never"), None).await;
    assert_eq!(status, 429);
    assert!(retry.is_some_and(|r| (1..=5).contains(&r)), "{retry:?}");

    // Bad values are refused where they are.
    assert_422(
        &gw,
        json!({"verb": "GET", "path": "/bad", "response": {"code": 200, "rate_limit": {"requests": 5, "per_secs": 0}}}),
        &["/data/attributes/response/rate_limit/per_secs"],
    )
    .await;
    assert_422(
        &gw,
        json!({"verb": "GET", "path": "/bad", "response": {"code": 200, "rate_limit": 5}}),
        &["/data/attributes/response/rate_limit"],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("echo.toml");
    std::fs::write(
        &file,
        "[[endpoints]]\nverb = \"GET\"\npath = \"/x\"\nresponse = { code = 200, rate_limit = { per_secs = 1 } }\n",
    )
    .unwrap();
    let (code, stderr) = validate(&file);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:4:39: response.rate_limit needs requests",
            file.display()
        )),
        "{stderr}"
    );
}
