//! The request journal: what it keeps, its admin API, hit counts, nearest
//! misses; and that its memory stays flat once the ring is full.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const API: &str = r#"
[[endpoints]]
id = "open-orders"
verb = "GET"
path = "/orders"
match = { query = { status = "open" } }
response = { code = 200, body = "open" }

[[endpoints]]
id = "vip"
verb = "POST"
path = "/orders"
match = { body = { json_subset = { tier = "vip" } } }
response = { code = 201, body = "vip" }
"#;

fn start(extra: &str) -> Gateway {
    Gateway::start_with(Options {
        config: Some(format!("{extra}\n{API}")),
        args: vec!["--store".into(), "memory".into()],
        ..Options::default()
    })
}

async fn requests(gw: &Gateway, query: &str) -> Value {
    let (status, doc) = send(gw, Method::GET, &format!("/_echo/requests{query}"), None).await;
    assert_eq!(status, 200, "{doc}");
    doc
}

#[tokio::test]
async fn keeps_each_request_with_its_endpoint_and_outcome() {
    let gw = start("[journal]\nmax_body_bytes = 8\n");
    let http = client();
    http.get(gw.url("/orders?status=open"))
        .header("X-Trace", "t1")
        .send()
        .await
        .unwrap();
    http.post(gw.url("/orders"))
        .body(r#"{"tier":"vip","pad":"xxxx"}"#)
        .send()
        .await
        .unwrap();
    http.post(gw.url("/orders"))
        .body(r#"{"tier":"basic"}"#)
        .send()
        .await
        .unwrap();
    http.get(gw.url("/nothing")).send().await.unwrap();
    // The gateway's own paths are not journaled.
    http.get(gw.url("/healthz")).send().await.unwrap();

    let doc = requests(&gw, "").await;
    let data = doc["data"].as_array().unwrap();
    assert_eq!(data.len(), 4, "{doc}");
    assert_eq!(doc["meta"]["count"], 4);
    let a = |i: usize| &data[i]["attributes"];
    assert_eq!(a(0)["method"], "GET");
    assert_eq!(a(0)["path"], "/orders");
    assert_eq!(a(0)["query"], "status=open");
    assert_eq!(a(0)["headers"]["x-trace"], "t1");
    assert_eq!(a(0)["endpoint"], "open-orders");
    assert_eq!(a(0)["outcome"], "mocked");
    assert_eq!(a(0)["status"], 200);
    // The body is kept up to the limit, with its full length.
    assert_eq!(a(1)["endpoint"], "vip");
    assert_eq!(a(1)["body"], r#"{"tier":"#);
    assert_eq!(a(1)["body_length"], 27);
    assert_eq!(a(1)["body_truncated"], true);
    assert_eq!(a(2)["outcome"], "unmatched");
    assert_eq!(a(2)["status"], 404);
    assert_eq!(a(3)["path"], "/nothing");
}

#[tokio::test]
async fn filters_count_and_clear() {
    let gw = start("");
    let http = client();
    for _ in 0..3 {
        http.get(gw.url("/orders?status=open"))
            .send()
            .await
            .unwrap();
    }
    http.get(gw.url("/orders?status=closed"))
        .send()
        .await
        .unwrap();
    http.delete(gw.url("/orders")).send().await.unwrap();

    assert_eq!(
        requests(&gw, "?endpoint=open-orders").await["meta"]["count"],
        3
    );
    assert_eq!(requests(&gw, "?unmatched=true").await["meta"]["count"], 2);
    assert_eq!(requests(&gw, "?method=DELETE").await["meta"]["count"], 1);
    assert_eq!(
        requests(&gw, "?path=/orders&limit=2").await["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let (status, count) = send(&gw, Method::GET, "/_echo/requests/count?path=/orders", None).await;
    assert_eq!((status, count["meta"]["count"].clone()), (200, json!(5)));

    // Hit counts per endpoint, as JSON:API meta.
    let (_, list) = send(&gw, Method::GET, "/endpoints", None).await;
    let hits: Vec<(String, u64)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["id"].as_str().unwrap().to_string(),
                e["meta"]["hits"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hits,
        [("open-orders".to_string(), 3), ("vip".to_string(), 0)]
    );

    let (status, _) = send(&gw, Method::DELETE, "/_echo/requests", None).await;
    assert_eq!(status, 204);
    assert_eq!(requests(&gw, "").await["meta"]["count"], 0);
    let (status, _) = send(&gw, Method::PUT, "/_echo/requests", None).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn unmatched_requests_carry_their_nearest_misses() {
    let gw = start("");
    let http = client();
    http.get(gw.url("/orders?status=closed"))
        .send()
        .await
        .unwrap();
    http.post(gw.url("/orders"))
        .body(r#"{"tier":"basic"}"#)
        .send()
        .await
        .unwrap();
    http.get(gw.url("/order")).send().await.unwrap();

    let doc = requests(&gw, "?unmatched=true").await;
    let misses = |i: usize| doc["data"][i]["attributes"]["near_misses"].clone();
    assert_eq!(
        misses(0)[0],
        json!({"endpoint": "open-orders", "reason": "query `status` is `closed`, expected `open`"})
    );
    assert_eq!(misses(1)[0]["endpoint"], "vip");
    assert!(misses(1)[0]["reason"]
        .as_str()
        .unwrap()
        .starts_with("body does not match json_subset"));
    assert_eq!(
        misses(1)[1]["reason"],
        "its verb is GET, the request's is POST"
    );
    assert_eq!(misses(2)[0]["reason"], "its path `/orders` does not match");
    // Off by default in the 404 itself.
    let r = http.get(gw.url("/orders")).send().await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert!(body.get("meta").is_none(), "{body}");
}

#[tokio::test]
async fn explained_404s_are_opt_in() {
    let gw = start("[journal]\nexplain_404 = true\n");
    let r = client()
        .get(gw.url("/orders?status=closed"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["detail"],
        "Requested page `/orders` does not exist"
    );
    assert_eq!(body["meta"]["near_misses"][0]["endpoint"], "open-orders");
}

#[tokio::test]
async fn the_journal_can_be_off() {
    let gw = start("[journal]\nenabled = false\n");
    client()
        .get(gw.url("/orders?status=open"))
        .send()
        .await
        .unwrap();
    let (status, _) = send(&gw, Method::GET, "/_echo/requests", None).await;
    assert_eq!(status, 404);
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Sends `n` keep-alive requests on `conns` connections, one at a time on
/// each; returns when every answer has been read.
fn blast(port: u16, n: usize, conns: usize) {
    let per = n / conns;
    let threads: Vec<_> = (0..conns)
        .map(|c| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut buf = vec![0u8; 4096];
                for i in 0..per {
                    let q = if i % 2 == 0 { "open" } else { "x" };
                    let req = format!(
                        "GET /orders?status={q}&c={c}&i={i} HTTP/1.1\r\nHost: t\r\nX-Pad: {}\r\n\r\n",
                        "p".repeat(64)
                    );
                    s.write_all(req.as_bytes()).unwrap();
                    // Every answer here fits one read and ends its headers and
                    // short body in it.
                    let mut got = Vec::new();
                    loop {
                        let k = s.read(&mut buf).unwrap();
                        assert!(k > 0, "connection closed");
                        got.extend_from_slice(&buf[..k]);
                        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                            if got.len() >= end + 4 + len {
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn memory_is_flat_once_the_ring_is_full() {
    // A million against an optimised build (`cargo test --release`); the
    // debug build of the everyday suite serves a fifth as many in the time.
    let default = if cfg!(debug_assertions) {
        200_000
    } else {
        1_000_000
    };
    let total: usize = std::env::var("JOURNAL_TEST_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    let gw = start("[journal]\ncapacity = 10000\n");
    let started = Instant::now();
    // Fill the ring several times over, then measure.
    blast(gw.port, 100_000, 8);
    let warm = rss_kib(gw.pid());
    blast(gw.port, total - 100_000, 8);
    let after = rss_kib(gw.pid());
    eprintln!(
        "{total} requests in {:.1}s; resident memory {warm} KiB after 100k, {after} KiB after {total}",
        started.elapsed().as_secs_f64()
    );
    let recorded = std::thread::spawn({
        let url = gw.url("/_echo/requests/count");
        move || raw_request_json(&url)
    })
    .join()
    .unwrap();
    assert_eq!(recorded["meta"]["recorded"], total as u64);
    assert_eq!(recorded["meta"]["count"], 10_000);
    assert!(
        after <= warm + warm / 10,
        "memory grew from {warm} KiB to {after} KiB"
    );
}

fn raw_request_json(url: &str) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        client()
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}
