//! The CloudWatch EMF request metric: one line per interval on stdout with
//! the requests of that interval.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn emf_lines(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.logs()
        .lines()
        .filter(|l| l.starts_with(r#"{"_aws""#))
        .map(|l| serde_json::from_str(l).expect("an EMF line is JSON"))
        .collect()
}

#[tokio::test]
async fn each_interval_reports_its_requests() {
    let gw = Gateway::start_with(Options {
        config: Some("[metrics]\nemf = true\nservice_name = \"test-svc\"\nemf_interval_secs = 1\n\n[[endpoints]]\nverb = \"GET\"\npath = \"/hit\"\nresponse = { code = 200 }\n".into()),
        args: vec!["--store".into(), "memory".into()],
        ..Options::default()
    });
    // Wait for a first line: what came before it is not ours to count.
    let deadline = Instant::now() + Duration::from_secs(5);
    while emf_lines(&gw).is_empty() {
        assert!(Instant::now() < deadline, "no EMF line:\n{}", gw.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // ...nor is the line after it, which may count the harness's last
    // readiness check: start counting from the line after that.
    let first = emf_lines(&gw).len();
    while emf_lines(&gw).len() <= first {
        assert!(
            Instant::now() < deadline + Duration::from_secs(5),
            "no second EMF line"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let before = emf_lines(&gw).len();
    let http = client();
    for i in 0..25 {
        let path = if i % 5 == 0 { "/missing" } else { "/hit" };
        http.get(gw.url(path)).send().await.unwrap();
    }
    // Every request is counted in exactly one later line.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let lines = emf_lines(&gw);
        let sum: u64 = lines[before..]
            .iter()
            .map(|l| l["Requests"].as_u64().unwrap())
            .sum();
        if sum == 25 && lines.len() > before + 1 {
            break;
        }
        assert!(sum <= 25, "counted {sum} of 25");
        assert!(
            Instant::now() < deadline,
            "counted {sum} of 25:\n{}",
            gw.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lines = emf_lines(&gw);
    let last = lines.last().unwrap();
    assert_eq!(last["ServiceName"], "test-svc");
    assert_eq!(
        last["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "EchoGateway"
    );
    assert!(last["TaskId"].as_str().is_some_and(|t| !t.is_empty()));
    // Aligned to the interval, one second apart.
    let stamps: Vec<u64> = lines
        .iter()
        .map(|l| l["_aws"]["Timestamp"].as_u64().unwrap())
        .collect();
    assert!(stamps.iter().all(|t| t % 1000 == 0), "{stamps:?}");
    assert!(stamps.windows(2).all(|w| w[1] - w[0] == 1000), "{stamps:?}");
}

#[test]
fn off_unless_enabled() {
    let gw = Gateway::start_with(Options {
        config: Some("[metrics]\nemf = false\nemf_interval_secs = 1\n".into()),
        args: vec!["--store".into(), "memory".into()],
        ..Options::default()
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(emf_lines(&gw).is_empty(), "{}", gw.logs());
}
