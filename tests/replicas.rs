//! Replicas sharing the redis store: each test starts its own `redis-server`
//! (Debian package `redis-server`) on a free port and two gateways on it.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// A `redis-server` child process with its own directory (append-only file
/// on), killed on drop.
struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    fn start() -> RedisServer {
        let mut last = String::new();
        for _attempt in 0..5 {
            let mut r = RedisServer {
                child: None,
                port: free_port(),
                dir: tempfile::tempdir().expect("tempdir"),
            };
            match r.spawn() {
                Ok(()) => return r,
                Err(log) => last = log,
            }
        }
        panic!("redis-server did not start:\n{last}");
    }

    /// Starts the server on `self.port` with the data in `self.dir`.
    fn spawn(&mut self) -> Result<(), String> {
        let log = self.dir.path().join("redis.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("redis log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "yes"])
            .args(["--appendfsync", "always"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("clone log")))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run redis-server ({e}): these tests need it \
                     (Debian package `redis-server`)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if redis_command(self.port, "PING").starts_with("+PONG") {
                return Ok(());
            }
            let exited = self
                .child
                .as_mut()
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                self.kill();
                return Err(std::fs::read_to_string(&log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port, from its append-only file.
    fn restart(&mut self) {
        self.kill();
        if let Err(log) = self.spawn() {
            panic!("redis-server did not restart on port {}:\n{log}", self.port);
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends one inline command; returns the first line of the answer.
fn redis_command(port: u16, command: &str) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("{command}\r\n").as_bytes()).is_err() {
        return String::new();
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.ends_with(b"\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends one command as a RESP array (arguments may hold spaces); returns
/// the first line of the answer.
fn redis_call(port: u16, args: &[&str]) -> String {
    let mut cmd = format!("*{}\r\n", args.len());
    for a in args {
        cmd.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    // `redis_command` adds the last CRLF.
    redis_command(port, cmd.trim_end_matches("\r\n"))
}

/// A gateway on the redis store, checking the revision every 200 ms.
fn replica(redis: &RedisServer) -> Gateway {
    let url = redis.url();
    Gateway::start_with(Options {
        args: vec![
            "--store".into(),
            "redis".into(),
            "--redis-url".into(),
            url.clone(),
        ],
        config: Some(format!(
            "[store]\nkind = \"redis\"\nurl = \"{url}\"\ncheck_interval_ms = 200\n"
        )),
        ..Options::default()
    })
}

/// Status and body of a GET on the mock listener (0 when it did not answer).
async fn get(gw: &Gateway, path: &str) -> (u16, String) {
    match client()
        .get(gw.url(path))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    }
}

/// Polls until `path` answers `status` (and `body`, when given) or `within` passes.
async fn wait_for(gw: &Gateway, path: &str, status: u16, body: Option<&str>, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let (s, b) = get(gw, path).await;
        if s == status && body.is_none_or(|want| b == want) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{path} on port {} answers {s} {b:?}, not {status} {body:?} after {within:?}\n{}",
                gw.port,
                gw.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn id_of(created: &serde_json::Value) -> String {
    created["data"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {created}"))
        .to_string()
}

async fn patch(gw: &Gateway, id: &str, code: u16, body: &str) -> (u16, serde_json::Value) {
    send(
        gw,
        reqwest::Method::PATCH,
        &format!("/endpoints/{id}"),
        Some(
            &json!({"data": {"type": "endpoints", "id": id, "attributes": {
            "response": {"code": code, "body": body}}}}),
        ),
    )
    .await
}

async fn delete(gw: &Gateway, id: &str) -> u16 {
    send(
        gw,
        reqwest::Method::DELETE,
        &format!("/endpoints/{id}"),
        None,
    )
    .await
    .0
}

const SYNC: Duration = Duration::from_secs(5);

#[tokio::test]
async fn changes_on_one_replica_are_served_by_the_other() {
    let redis = RedisServer::start();
    let a = replica(&redis);
    let b = replica(&redis);
    let started = Instant::now();

    let (status, created) = post(&a, &endpoint_doc("GET", "/hello", 200, "from A")).await;
    assert_eq!(status, 201, "{created}");
    let id = id_of(&created);
    wait_for(&b, "/hello", 200, Some("from A"), SYNC).await;

    let (status, patched) = patch(&b, &id, 202, "patched on B").await;
    assert_eq!(status, 200, "{patched}");
    wait_for(&a, "/hello", 202, Some("patched on B"), SYNC).await;
    wait_for(&b, "/hello", 202, Some("patched on B"), SYNC).await;

    // Both list it, under the same id.
    for gw in [&a, &b] {
        let (status, list) = send(gw, reqwest::Method::GET, "/endpoints", None).await;
        assert_eq!(status, 200, "{list}");
        let ids: Vec<&str> = list["data"]
            .as_array()
            .expect("data")
            .iter()
            .filter_map(|e| e["id"].as_str())
            .collect();
        assert!(ids.contains(&id.as_str()), "{list}");
    }

    assert_eq!(delete(&a, &id).await, 204);
    wait_for(&a, "/hello", 404, None, SYNC).await;
    wait_for(&b, "/hello", 404, None, SYNC).await;
    // Deleted elsewhere: 404 here too.
    assert_eq!(delete(&b, &id).await, 404);

    let (status, created) = post(&a, &endpoint_doc("POST", "/second", 201, "two")).await;
    assert_eq!(status, 201, "{created}");
    let id = id_of(&created);
    wait_for_verb(&b, "/second", 201).await;
    assert_eq!(delete(&b, &id).await, 204);
    wait_for_verb(&a, "/second", 404).await;
    wait_for_verb(&b, "/second", 404).await;

    // Ids come from one counter: a create on B does not reuse A's.
    let (_, x) = post(&a, &endpoint_doc("GET", "/x", 200, "x")).await;
    let (_, y) = post(&b, &endpoint_doc("GET", "/y", 200, "y")).await;
    assert_ne!(id_of(&x), id_of(&y));
    eprintln!("propagation test: {:?}", started.elapsed());
}

/// Polls a POST on `path` until it answers `status`.
async fn wait_for_verb(gw: &Gateway, path: &str, status: u16) {
    let deadline = Instant::now() + SYNC;
    loop {
        let s = match client().post(gw.url(path)).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        };
        if s == status {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "POST {path} answers {s}, not {status}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_route_posted_to_two_replicas_at_once_is_created_once() {
    let redis = RedisServer::start();
    let a = replica(&redis);
    let b = replica(&redis);
    let started = Instant::now();
    for i in 0..20 {
        let path = format!("/race/{i}");
        let doc_a = endpoint_doc("PUT", &path, 200, "A");
        let doc_b = endpoint_doc("PUT", &path, 200, "B");
        let ((sa, ja), (sb, jb)) = tokio::join!(post(&a, &doc_a), post(&b, &doc_b));
        let mut statuses = [sa, sb];
        statuses.sort_unstable();
        assert_eq!(statuses, [201, 409], "round {i}: A {ja}, B {jb}");
        let (winner, loser) = if sa == 201 { (&ja, &jb) } else { (&jb, &ja) };
        assert_eq!(loser["errors"][0]["code"], "conflict", "{loser}");
        let body = winner["data"]["attributes"]["response"]["body"]
            .as_str()
            .expect("body")
            .to_string();
        for gw in [&a, &b] {
            let deadline = Instant::now() + SYNC;
            loop {
                let r = client().put(gw.url(&path)).send().await.expect("put");
                let s = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                if s == 200 && text == body {
                    break;
                }
                assert!(Instant::now() < deadline, "{path}: {s} {text}, not {body}");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }
    // One endpoint per path in the store, seen alike by both replicas.
    for gw in [&a, &b] {
        let (_, list) = send(gw, reqwest::Method::GET, "/endpoints", None).await;
        assert_eq!(list["data"].as_array().map(Vec::len), Some(20), "{list}");
    }
    eprintln!("race test, 20 rounds: {:?}", started.elapsed());
}

/// The local ports of `pid`'s TCP connections to `remote_port` on this host.
fn connections_of(pid: u32, remote_port: u16) -> Vec<u16> {
    let mut inodes = std::collections::HashSet::new();
    if let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) {
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy().into_owned();
                if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                    inodes.insert(inode.to_string());
                }
            }
        }
    }
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local = cols.get(1)?;
            let remote = cols.get(2)?;
            let inode = cols.get(9)?;
            let port_of = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
            (port_of(remote)? == remote_port && inodes.contains(*inode))
                .then(|| port_of(local))
                .flatten()
        })
        .collect()
}

#[tokio::test]
async fn paused_replica_catches_up_on_a_hundred_changes() {
    let redis = RedisServer::start();
    let a = replica(&redis);
    let b = replica(&redis);

    // Ten endpoints that the changes below will patch and delete.
    let mut ids = Vec::new();
    for i in 0..10 {
        let (s, c) = post(&a, &endpoint_doc("GET", &format!("/old/{i}"), 200, "old")).await;
        assert_eq!(s, 201, "{c}");
        ids.push(id_of(&c));
    }
    wait_for(&b, "/old/9", 200, Some("old"), SYNC).await;

    let started = Instant::now();
    let stopped = Command::new("kill")
        .args(["-STOP", &b.pid().to_string()])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());

    // 100 changes: 90 creates, 5 patches, 5 deletes. Half-way, Redis drops
    // B's connections, so B misses the rest of the messages for sure.
    for i in 0..45 {
        let (s, c) = post(&a, &endpoint_doc("GET", &format!("/new/{i}"), 200, "new")).await;
        assert_eq!(s, 201, "{c}");
    }
    let ports = connections_of(b.pid(), redis.port);
    assert!(!ports.is_empty(), "B has no connection to redis");
    for p in ports {
        let answer = redis_command(redis.port, &format!("CLIENT KILL 127.0.0.1:{p}"));
        assert!(answer.starts_with("+OK"), "{answer}");
    }
    for i in 45..90 {
        let (s, c) = post(&a, &endpoint_doc("GET", &format!("/new/{i}"), 200, "new")).await;
        assert_eq!(s, 201, "{c}");
    }
    for id in &ids[..5] {
        let (s, c) = patch(&a, id, 200, "patched").await;
        assert_eq!(s, 200, "{c}");
    }
    for id in &ids[5..] {
        assert_eq!(delete(&a, id).await, 204);
    }

    let resumed = Command::new("kill")
        .args(["-CONT", &b.pid().to_string()])
        .status()
        .expect("kill -CONT");
    assert!(resumed.success());
    let resumed_at = Instant::now();

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut wrong = Vec::new();
        for i in 0..90 {
            let path = format!("/new/{i}");
            if get(&b, &path).await != (200, "new".to_string()) {
                wrong.push(path);
            }
        }
        for i in 0..10 {
            let path = format!("/old/{i}");
            let want = if i < 5 {
                (200, "patched".to_string())
            } else {
                (404, String::new())
            };
            let got = get(&b, &path).await;
            if got.0 != want.0 || (want.0 == 200 && got.1 != want.1) {
                wrong.push(path);
            }
        }
        if wrong.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B still serves the old state of {wrong:?}\n{}",
            b.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "catch-up: 100 changes in {:?}, B caught up {:?} after SIGCONT",
        resumed_at - started,
        resumed_at.elapsed()
    );

    // And it follows new changes again.
    let (s, c) = post(&a, &endpoint_doc("GET", "/after", 200, "after")).await;
    assert_eq!(s, 201, "{c}");
    wait_for(&b, "/after", 200, Some("after"), SYNC).await;
}

#[tokio::test]
async fn revision_check_finds_changes_that_sent_no_message_and_a_flush() {
    let redis = RedisServer::start();
    let a = replica(&redis);
    let b = replica(&redis);

    // Written behind the gateways' backs: no message, only the revision.
    let attrs = json!({"verb": "GET", "path": "/quiet",
        "response": {"code": 200, "headers": {}, "body": "quiet"}});
    let p = redis.port;
    assert_eq!(
        redis_call(p, &["HSET", "echo:endpoints", "999", &attrs.to_string()]),
        ":1\r\n"
    );
    assert_eq!(
        redis_call(p, &["HSET", "echo:routes", "GET exact /quiet", "999"]),
        ":1\r\n"
    );
    assert_eq!(
        redis_call(p, &["HSET", "echo:route_of", "999", "GET exact /quiet"]),
        ":1\r\n"
    );
    assert!(redis_call(p, &["INCR", "echo:revision"]).starts_with(':'));
    let t = Instant::now();
    wait_for(&a, "/quiet", 200, Some("quiet"), SYNC).await;
    wait_for(&b, "/quiet", 200, Some("quiet"), SYNC).await;
    let quiet = t.elapsed();

    // The conflict check sees it: the route is taken.
    let (s, c) = post(&b, &endpoint_doc("GET", "/quiet", 200, "again")).await;
    assert_eq!(s, 409, "{c}");

    // A flushed Redis (new epoch, revision 0): both serve what it holds.
    assert!(redis_call(p, &["FLUSHALL"]).starts_with("+OK"));
    let t = Instant::now();
    wait_for(&a, "/quiet", 404, None, SYNC).await;
    wait_for(&b, "/quiet", 404, None, SYNC).await;
    let flush = t.elapsed();

    // Ids are not handed out again although Redis lost its counter.
    let (s, c) = post(&a, &endpoint_doc("GET", "/fresh", 200, "fresh")).await;
    assert_eq!(s, 201, "{c}");
    let id: u64 = id_of(&c).parse().expect("numeric id");
    assert!(id > 999, "id {id} after the flush");
    wait_for(&b, "/fresh", 200, Some("fresh"), SYNC).await;
    eprintln!("silent change seen in {quiet:?}, flush in {flush:?}");
}

/// An admin request; returns status, the `Retry-After` header and the JSON body.
async fn admin(
    gw: &Gateway,
    method: reqwest::Method,
    path: &str,
    doc: Option<&serde_json::Value>,
) -> (u16, Option<String>, serde_json::Value) {
    let mut req = client()
        .request(method, gw.admin_url(path))
        .timeout(Duration::from_secs(10));
    if let Some(d) = doc {
        req = req.header("Content-Type", JSONAPI).body(d.to_string());
    }
    let r = req.send().await.expect("admin request");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = r.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, retry, body)
}

#[tokio::test]
async fn replicas_ride_out_a_redis_restart() {
    let mut redis = RedisServer::start();
    let a = replica(&redis);
    let b = replica(&redis);

    let (s, c) = post(&a, &endpoint_doc("GET", "/before", 200, "before")).await;
    assert_eq!(s, 201, "{c}");
    let before_id = id_of(&c);
    wait_for(&b, "/before", 200, Some("before"), SYNC).await;

    redis.kill();
    let killed_at = Instant::now();

    // Writes fail fast with 503 store_unavailable and Retry-After.
    for (gw, method, path, doc) in [
        (
            &a,
            reqwest::Method::POST,
            "/endpoints".to_string(),
            Some(endpoint_doc("GET", "/during", 200, "during")),
        ),
        (
            &b,
            reqwest::Method::PATCH,
            format!("/endpoints/{before_id}"),
            Some(json!({"data": {"type": "endpoints", "id": before_id,
                "attributes": {"response": {"code": 500, "body": "no"}}}})),
        ),
        (
            &b,
            reqwest::Method::DELETE,
            format!("/endpoints/{before_id}"),
            None,
        ),
    ] {
        let t = Instant::now();
        let (status, retry, body) = admin(gw, method.clone(), &path, doc.as_ref()).await;
        let took = t.elapsed();
        assert_eq!(status, 503, "{method} {path}: {body}");
        assert_eq!(body["errors"][0]["code"], "store_unavailable", "{body}");
        assert!(retry.is_some(), "{method} {path}: no Retry-After");
        assert!(
            took < Duration::from_secs(3),
            "{method} {path} took {took:?}"
        );
    }

    // Both keep serving what they had, and list it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for gw in [&a, &b] {
        assert_eq!(get(gw, "/before").await, (200, "before".to_string()));
        assert_eq!(get(gw, "/during").await.0, 404);
        let (status, _, list) = admin(gw, reqwest::Method::GET, "/endpoints", None).await;
        assert_eq!(status, 200, "{list}");
        assert_eq!(list["data"][0]["id"], before_id.as_str(), "{list}");
    }
    let down_for = killed_at.elapsed();

    // Back from its append-only file on the same port.
    redis.restart();
    let restarted_at = Instant::now();

    // Both reconnect within a few seconds: a write through each succeeds.
    let mut reconnect = Vec::new();
    for (gw, path) in [(&b, "/after-b"), (&a, "/after-a")] {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (s, c) = post(gw, &endpoint_doc("GET", path, 200, path)).await;
            if s == 201 {
                break;
            }
            assert_eq!(s, 503, "{c}");
            assert!(
                Instant::now() < deadline,
                "no reconnect to redis after 10 s\n{}",
                gw.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        reconnect.push(restarted_at.elapsed());
    }
    for gw in [&a, &b] {
        wait_for(gw, "/after-a", 200, Some("/after-a"), SYNC).await;
        wait_for(gw, "/after-b", 200, Some("/after-b"), SYNC).await;
        wait_for(gw, "/before", 200, Some("before"), SYNC).await;
    }
    eprintln!(
        "redis down {down_for:?}; writes through B, A succeeded {:?}, {:?} after the restart",
        reconnect[0], reconnect[1]
    );
}
