//! One CloudWatch Embedded Metric Format line a minute on stdout with the
//! requests this task served in that minute. An NLB has no request-count
//! metric of its own: the autoscaling policy tracks this one.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::config::EmfConfig;
use crate::router::Gateway;

pub const NAMESPACE: &str = "EchoGateway";
pub const METRIC: &str = "Requests";
pub const DIMENSION: &str = "ServiceName";

/// The EMF document for one minute. `TaskId` is a plain field (searchable
/// in the logs), not a dimension: a dimension per task would make a metric
/// per task, which the per-service scaling policy does not want.
pub fn line(minute_start_ms: u64, service: &str, task_id: &str, requests: u64) -> String {
    json!({
        "_aws": {
            "Timestamp": minute_start_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[DIMENSION]],
                "Metrics": [{"Name": METRIC, "Unit": "Count"}],
            }],
        },
        DIMENSION: service,
        METRIC: requests,
        "TaskId": task_id,
    })
    .to_string()
}

/// The task's id: from the ECS task metadata endpoint when there is one,
/// else the host name.
pub fn task_id() -> String {
    if let Ok(base) = std::env::var("ECS_CONTAINER_METADATA_URI_V4") {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(1)))
            .build()
            .new_agent();
        let arn = agent
            .get(format!("{base}/task"))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_to_string().ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["TaskARN"].as_str().map(str::to_string));
        if let Some(id) = arn.as_deref().and_then(|a| a.rsplit('/').next()) {
            return id.to_string();
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Prints a line at the end of every interval (a wall-clock minute by
/// default), until the process ends.
pub async fn run(gw: Arc<Gateway>, emf: EmfConfig) {
    let service = emf.service;
    let every = u64::try_from(emf.interval.as_millis())
        .unwrap_or(60_000)
        .max(1);
    let task = tokio::task::spawn_blocking(task_id)
        .await
        .unwrap_or_else(|_| "unknown".into());
    tracing::info!(service = %service, task = %task, "EMF request metric on");
    let mut last_total = gw.metrics.requests_total();
    loop {
        let now = now_ms();
        let next = (now / every + 1) * every;
        tokio::time::sleep(Duration::from_millis(next - now)).await;
        let total = gw.metrics.requests_total();
        let count = total.saturating_sub(last_total);
        last_total = total;
        println!("{}", line(next - every, &service, &task, count));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_follows_the_emf_rules() {
        let l = line(1_796_418_360_000, "mocks", "abc123", 42);
        assert_eq!(
            l,
            r#"{"_aws":{"Timestamp":1796418360000,"CloudWatchMetrics":[{"Namespace":"EchoGateway","Dimensions":[["ServiceName"]],"Metrics":[{"Name":"Requests","Unit":"Count"}]}]},"ServiceName":"mocks","Requests":42,"TaskId":"abc123"}"#
        );
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        let aws = &v["_aws"];
        assert!(aws["Timestamp"].is_u64());
        for directive in aws["CloudWatchMetrics"].as_array().unwrap() {
            assert!(directive["Namespace"].is_string());
            for set in directive["Dimensions"].as_array().unwrap() {
                for d in set.as_array().unwrap() {
                    let name = d.as_str().unwrap();
                    assert!(
                        v[name].is_string(),
                        "dimension {name} is a top-level string"
                    );
                }
            }
            for m in directive["Metrics"].as_array().unwrap() {
                let name = m["Name"].as_str().unwrap();
                assert!(v[name].is_number(), "metric {name} is a top-level number");
            }
        }
        assert!(v["TaskId"].is_string());
        let dims: Vec<&str> = aws["CloudWatchMetrics"][0]["Dimensions"][0]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap())
            .collect();
        assert!(!dims.contains(&"TaskId"), "the task id is not a dimension");
    }
}
