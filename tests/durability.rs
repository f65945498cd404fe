//! The embedded store keeps every acknowledged change: across a SIGKILL in
//! the middle of a stream of writes, across restarts of `serve` with no
//! arguments; and a second gateway on the same data file is refused.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn on_data_file(path: &Path) -> Options {
    Options {
        args: vec![
            "--store".into(),
            "embedded".into(),
            "--data".into(),
            path.display().to_string(),
        ],
        ..Options::default()
    }
}

/// The runtime endpoints the admin API lists: id → attributes.
async fn listed(gw: &Gateway) -> BTreeMap<u64, Value> {
    let (status, doc) = send(gw, reqwest::Method::GET, "/endpoints", None).await;
    assert_eq!(status, 200, "{doc}");
    doc["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data array: {doc}"))
        .iter()
        .map(|r| {
            let id = r["id"].as_str().and_then(|s| s.parse().ok());
            let id = id.unwrap_or_else(|| panic!("not a runtime id: {r}"));
            (id, r["attributes"].clone())
        })
        .collect()
}

fn body_for(path: &str) -> String {
    format!("body of {path}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_creates_survive_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("store.redb");
    let mut gw = Gateway::start_with(on_data_file(&file));

    // Writers create endpoints as fast as they can; each keeps the ids that
    // got a 201.
    let acked: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..8 {
        let url = gw.admin_url("/endpoints");
        let acked = acked.clone();
        writers.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            for n in 0.. {
                let path = format!("/w{w}/e{n}");
                let doc = endpoint_doc("GET", &path, 200, &body_for(&path));
                let resp = http
                    .post(&url)
                    .header("Content-Type", JSONAPI)
                    .body(doc.to_string())
                    .send()
                    .await;
                // The process was killed: the writer stops.
                let Ok(resp) = resp else { break };
                let status = resp.status().as_u16();
                let Ok(text) = resp.text().await else { break };
                assert_eq!(status, 201, "{text}");
                let created: Value = serde_json::from_str(&text).unwrap();
                let id: u64 = created["data"]["id"].as_str().unwrap().parse().unwrap();
                acked.lock().unwrap().insert(id, path);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let status = gw.signal_and_wait("KILL", Duration::from_secs(10));
    assert!(status.is_some(), "the gateway did not die on SIGKILL");
    for w in writers {
        w.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(!acked.is_empty(), "no endpoint was created before the kill");
    drop(gw);

    let gw = Gateway::start_with(on_data_file(&file));
    let after = listed(&gw).await;
    println!(
        "durability: {} endpoints acknowledged before SIGKILL, {} listed after restart",
        acked.len(),
        after.len()
    );
    for (id, path) in &acked {
        let attrs = after
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged endpoint {id} ({path}) was lost"));
        assert_eq!(attrs["path"], path.as_str(), "endpoint {id}");
    }
    // Nothing half-written: whatever is listed (acknowledged or committed
    // just before the kill) is complete and served.
    let http = client();
    for (id, attrs) in &after {
        let path = attrs["path"]
            .as_str()
            .unwrap_or_else(|| panic!("endpoint {id} has no path: {attrs}"));
        assert_eq!(attrs["verb"], "GET", "endpoint {id}: {attrs}");
        assert_eq!(attrs["response"]["code"], 200, "endpoint {id}: {attrs}");
        assert_eq!(
            attrs["response"]["body"],
            body_for(path).as_str(),
            "endpoint {id}"
        );
        let r = http.get(gw.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "endpoint {id} {path} is not served");
        assert_eq!(r.text().await.unwrap(), body_for(path));
    }
    // Ids are never reused: new ones come after every id seen before.
    let seen = after.keys().chain(acked.keys()).copied().max().unwrap();
    for i in 0..3 {
        let (status, doc) = post(&gw, &endpoint_doc("GET", &format!("/after/{i}"), 200, "")).await;
        assert_eq!(status, 201, "{doc}");
        let id: u64 = doc["data"]["id"].as_str().unwrap().parse().unwrap();
        assert!(id > seen, "id {id} handed out again (seen up to {seen})");
    }
}

#[tokio::test]
async fn serve_without_arguments_keeps_runtime_mocks_in_the_working_directory() {
    let work = tempfile::tempdir().unwrap();
    let opts = Options {
        workdir: Some(work.path().to_path_buf()),
        ..Options::default()
    };
    let mut first = Gateway::start_with(opts.clone());
    let (status, doc) = post(&first, &endpoint_doc("GET", "/kept", 200, "still here")).await;
    assert_eq!(status, 201, "{doc}");
    let id = doc["data"]["id"].as_str().unwrap().to_string();
    assert!(
        work.path().join("data/echo-gateway.redb").is_file(),
        "the default data file is data/echo-gateway.redb in the working directory"
    );
    // SIGINT: a fast stop (SIGTERM waits out the default grace period).
    assert!(first
        .signal_and_wait("INT", Duration::from_secs(10))
        .is_some());
    drop(first);

    let second = Gateway::start_with(opts);
    let r = client().get(second.url("/kept")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "still here");
    let ids: Vec<String> = listed(&second)
        .await
        .keys()
        .map(ToString::to_string)
        .collect();
    assert_eq!(ids, vec![id]);
}

#[tokio::test]
async fn second_gateway_on_the_same_data_file_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("store.redb");
    let first = Gateway::start_with(on_data_file(&file));
    let (status, doc) = post(&first, &endpoint_doc("GET", "/first", 200, "first")).await;
    assert_eq!(status, 201, "{doc}");

    let log = data.path().join("second.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut second = Command::new(BIN)
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(["--store", "embedded", "--data"])
        .arg(&file)
        .current_dir(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(s) = second.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = second.kill();
            let _ = second.wait();
            panic!("the second gateway did not exit");
        }
        std::thread::sleep(Duration::from_millis(30));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&file.display().to_string()),
        "the error names the file: {stderr}"
    );
    assert!(
        stderr.contains("another echo-gateway is probably using it"),
        "{stderr}"
    );

    // The first one goes on, with its data.
    let r = client().get(first.url("/first")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "first");
}

/// Kills the process it holds when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A full disk (here: the process's file size limit, RLIMIT_FSIZE, with
/// SIGXFSZ ignored, so that a write past it fails as on a full disk) makes
/// admin writes fail cleanly; nothing acknowledged is lost, and writes work
/// again once there is room, without a restart.
#[tokio::test]
async fn a_full_disk_is_a_clear_error_and_loses_nothing() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        eprintln!("skipped: prlimit (util-linux) is not installed");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("store.redb");
    let log = data.path().join("gateway.log");
    let port = free_port();
    let log_file = std::fs::File::create(&log).unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; exec prlimit --fsize=300000:unlimited \"$@\"")
        .arg("sh")
        .arg(BIN)
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--store", "embedded", "--data"])
        .arg(&file)
        .current_dir(data.path())
        .stdout(Stdio::from(log_file.try_clone().unwrap()))
        .stderr(Stdio::from(log_file))
        .spawn()
        .unwrap();
    let mut child = Reaped(child);
    let healthy = || {
        raw_request(
            port,
            "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        )
        .starts_with("HTTP/1.1 200")
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while !healthy() {
        assert!(child.0.try_wait().unwrap().is_none(), "exited early");
        assert!(Instant::now() < deadline, "did not start");
        std::thread::sleep(Duration::from_millis(30));
    }
    let admin = format!("http://127.0.0.1:{port}/endpoints");
    let http = client();
    let create = |path: String| {
        let doc = endpoint_doc("GET", &path, 200, &"y".repeat(3000));
        http.post(&admin)
            .header("Content-Type", JSONAPI)
            .body(doc.to_string())
            .send()
    };

    let mut acked = BTreeMap::new();
    let mut refused = 0;
    for n in 0..1000 {
        let path = format!("/full/{n}");
        let r = create(path.clone()).await.unwrap();
        match r.status().as_u16() {
            201 => {
                let doc: Value = r.json().await.unwrap();
                let id: u64 = doc["data"]["id"].as_str().unwrap().parse().unwrap();
                acked.insert(id, path);
            }
            503 => {
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
            other => panic!("{other}: {}", r.text().await.unwrap()),
        }
    }
    let logs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(refused, 3, "the limit was never reached\n{logs}");
    assert!(!acked.is_empty());
    assert!(healthy(), "still serving after the failed writes");
    assert!(
        logs.contains(&format!("I/O error on the data file {}", file.display()))
            && logs.contains("the disk is full"),
        "{logs}"
    );
    println!(
        "full disk: {} endpoints acknowledged, then 503s",
        acked.len()
    );
    let served = |path: &str| {
        let url = format!("http://127.0.0.1:{port}{path}");
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            r.status() == 200 && r.text().await.unwrap() == "y".repeat(3000)
        }
    };
    for path in acked.values() {
        assert!(served(path).await, "{path}");
    }

    // Room again: the next write works, on the same process.
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(child.0.id().to_string())
        .arg("--fsize=unlimited:unlimited")
        .status()
        .unwrap();
    assert!(status.success());
    let r = create("/full/after".into()).await.unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let doc: Value = r.json().await.unwrap();
    let id: u64 = doc["data"]["id"].as_str().unwrap().parse().unwrap();
    acked.insert(id, "/full/after".into());
    drop(child);

    // Everything acknowledged is in the file.
    let gw = Gateway::start_with(on_data_file(&file));
    let after = listed(&gw).await;
    for (id, path) in &acked {
        assert_eq!(
            after.get(id).map(|a| a["path"].clone()),
            Some(Value::from(path.as_str()))
        );
    }
}
