//! Hot reload: config edits take effect without a restart or a failed
//! request; invalid edits keep the last good config and are reported.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn version(n: usize) -> String {
    format!(
        "[[endpoints]]\nid = \"v\"\nverb = \"GET\"\npath = \"/v\"\nresponse = {{ code = 200, body = \"v{n}\" }}\n\n\
         [[endpoints]]\nid = \"stable\"\nverb = \"GET\"\npath = \"/stable/{{id}}\"\nresponse = {{ code = 200, body = \"stable\" }}\n"
    )
}

fn invalid(n: usize) -> String {
    // Valid TOML with a wrong value, or broken TOML: both must be refused.
    if n % 4 == 1 {
        format!("[[endpoints]]\nid = \"v\"\nverb = \"FETCH\"\npath = \"/v\"\nresponse = {{ code = 200, body = \"bad{n}\" }}\n")
    } else {
        format!("[[endpoints]\nid = \"v\"\nbody = \"bad{n}\"\n")
    }
}

/// Replaces a file the way editors and deploy tools do: write aside, rename.
fn replace(dir: &Path, name: &str, text: &str) {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

fn memory_gateway(config_dir_files: Vec<(String, String)>) -> Gateway {
    Gateway::start_with(Options {
        files: config_dir_files,
        args: vec!["--store".into(), "memory".into()],
        ..Options::default()
    })
}

async fn wait_for_body(gw: &Gateway, path: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = client().get(gw.url(path)).send().await.unwrap();
        if r.text().await.unwrap() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never served {want}:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_rewrites_under_load_fail_no_request() {
    let gw = memory_gateway(vec![("api.toml".into(), version(0))]);
    let dir = gw.path().to_path_buf();
    let valid: Vec<String> = (0..=50).step_by(2).map(|n| format!("v{n}")).collect();

    let done = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let done = done.clone();
        let (v_url, s_url) = (gw.url("/v"), gw.url("/stable/7"));
        clients.push(tokio::spawn(async move {
            let http = client();
            let mut answers = Vec::new();
            let stop = Instant::now() + Duration::from_secs(30);
            while !done.load(Ordering::Relaxed) && Instant::now() < stop {
                for url in [&v_url, &s_url] {
                    let r = http.get(url.as_str()).send().await;
                    let answer = match r {
                        Ok(r) => {
                            let s = r.status().as_u16();
                            (s, r.text().await.unwrap_or_default())
                        }
                        Err(e) => (0, e.to_string()),
                    };
                    answers.push(answer);
                }
            }
            answers
        }));
    }

    for n in 1..=50 {
        let text = if n % 2 == 0 { version(n) } else { invalid(n) };
        replace(&dir, "api.toml", &text);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    wait_for_body(&gw, "/v", "v50").await;
    done.store(true, Ordering::Relaxed);

    let mut total = 0;
    for c in clients {
        for (status, body) in c.await.unwrap() {
            total += 1;
            assert_eq!(status, 200, "a request failed during reloads: {body}");
            assert!(
                body == "stable" || valid.contains(&body),
                "an answer from an invalid version: {body}"
            );
        }
    }
    assert!(total > 200, "the clients sent only {total} requests");
    eprintln!("{total} requests during 50 rewrites, none failed");

    let metrics = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let ok_reloads = metric(&metrics, "echo_config_reloads_total");
    assert!(ok_reloads >= 1.0, "{metrics}");
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(-1.0)
}

#[tokio::test]
async fn an_invalid_edit_keeps_the_last_good_config_and_is_reported() {
    let gw = memory_gateway(vec![("api.toml".into(), version(1))]);
    let dir = gw.path().to_path_buf();
    let http = client();

    replace(&dir, "api.toml", &invalid(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let s: serde_json::Value = http
            .get(gw.url("/_echo/status"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["config"]["last_reload"]["ok"] == false {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the failed reload was never reported"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let errors = status["config"]["last_reload"]["errors"]
        .as_array()
        .unwrap();
    let first = errors[0].as_str().unwrap();
    assert!(
        first.contains("api.toml:3:8: verb must be one of"),
        "{first}"
    );
    assert_eq!(
        http.get(gw.url("/v"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "v1"
    );

    let metrics = http
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&metrics, "echo_config_reload_failures_total"),
        1.0,
        "{metrics}"
    );
    assert_eq!(metric(&metrics, "echo_config_errors"), 1.0, "{metrics}");
    assert!(gw.logs().contains("config reload failed"), "{}", gw.logs());

    // Fixing the file applies it and clears the error.
    replace(&dir, "api.toml", &version(2));
    wait_for_body(&gw, "/v", "v2").await;
    let s: serde_json::Value = http
        .get(gw.url("/_echo/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["config"]["last_reload"]["ok"], true);
    assert_eq!(s["config"]["digest"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn a_reload_keeps_the_runtime_layer() {
    let gw = memory_gateway(vec![("api.toml".into(), version(1))]);
    let (status, _) = post(&gw, &endpoint_doc("GET", "/runtime", 200, "rt")).await;
    assert_eq!(status, 201);
    replace(gw.path(), "api.toml", &version(2));
    wait_for_body(&gw, "/v", "v2").await;
    let r = client().get(gw.url("/runtime")).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "rt");
    // New files in the directory are picked up too.
    replace(gw.path(), "more.toml", "[[endpoints]]\nverb = \"GET\"\npath = \"/more\"\nresponse = { code = 200, body = \"more\" }\n");
    wait_for_body(&gw, "/more", "more").await;
}

#[tokio::test]
async fn sighup_reloads_when_watching_is_off() {
    let cfg = |n| format!("[server]\nwatch_config = false\n\n{}", version(n));
    let gw = memory_gateway(vec![("api.toml".into(), cfg(1))]);
    replace(gw.path(), "api.toml", &cfg(2));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r = client().get(gw.url("/v")).send().await.unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        "v1",
        "not watched: no reload without SIGHUP"
    );
    std::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .unwrap();
    wait_for_body(&gw, "/v", "v2").await;
}

#[tokio::test]
async fn export_prints_the_runtime_layer_as_a_config_that_serves_the_same() {
    let gw = memory_gateway(vec![("api.toml".into(), version(1))]);
    let doc = serde_json::json!({"data": {"type": "endpoints", "attributes": {
        "verb": "POST", "path": "/orders/{id}", "priority": 3,
        "response": {"code": 201, "headers": {"Content-Type": "application/json", "X-Quote": "a \"b\""},
                     "body": "{\"ok\": true}\nline2"}}}});
    assert_eq!(post(&gw, &doc).await.0, 201);
    assert_eq!(
        post(
            &gw,
            &serde_json::json!({"data": {"type": "endpoints", "attributes": {
        "verb": "GET", "path_regex": "/re/[a-z]+", "response": {"code": 204}}}})
        )
        .await
        .0,
        201
    );

    let r = client().get(gw.url("/_echo/export")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/toml");
    let exported = r.text().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exported.toml");
    std::fs::write(&file, &exported).unwrap();
    let out = std::process::Command::new(BIN)
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{exported}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let copy = Gateway::start_with(Options {
        config: Some(exported.clone()),
        args: vec!["--store".into(), "memory".into()],
        ..Options::default()
    });
    let r = client().post(copy.url("/orders/9")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-quote"], "a \"b\"");
    assert_eq!(r.text().await.unwrap(), "{\"ok\": true}\nline2");
    let r = client().get(copy.url("/re/abc")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let (_, list) = send(&copy, reqwest::Method::GET, "/endpoints", None).await;
    assert_eq!(list["data"][0]["id"], "runtime-1");
    assert_eq!(list["data"][0]["attributes"]["priority"], 3);
}

/// Reading the files to reload them is no change: after an edit and after
/// SIGHUP the gateway loads the files once, then stays idle.
#[tokio::test]
async fn a_reload_does_not_set_off_another() {
    // The config directory holds the config only (the log is elsewhere).
    let conf = tempfile::tempdir().unwrap();
    replace(conf.path(), "echo.toml", &version(1));
    let gw = Gateway::start_with(Options {
        args: vec![
            "--config".into(),
            conf.path().display().to_string(),
            "--store".into(),
            "memory".into(),
        ],
        env: vec![("RUST_LOG".into(), "echo_gateway=debug".into())],
        ..Options::default()
    });
    wait_for_body(&gw, "/v", "v1").await;
    let loads = |gw: &Gateway| {
        gw.logs()
            .lines()
            .filter(|l| l.contains("reloading config") || l.contains("config unchanged"))
            .count()
    };
    let settled = |gw: &Gateway| {
        let gw_loads = loads(gw);
        std::thread::sleep(Duration::from_millis(1500));
        (gw_loads, loads(gw))
    };

    replace(conf.path(), "echo.toml", &version(2));
    wait_for_body(&gw, "/v", "v2").await;
    let (before, after) = settled(&gw);
    assert!(before >= 1, "no reload logged:\n{}", gw.logs());
    assert_eq!(before, after, "the reload went on:\n{}", gw.logs());

    let status = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(gw.pid().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(1000));
    let (before_hup, after_hup) = settled(&gw);
    assert_eq!(before_hup, after + 1, "SIGHUP loads once:\n{}", gw.logs());
    assert_eq!(before_hup, after_hup, "the reload went on:\n{}", gw.logs());
}
