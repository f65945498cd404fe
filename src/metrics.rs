//! Prometheus metrics of the gateway, rendered by `GET /metrics`.

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

use crate::router::Router;

pub struct Metrics {
    registry: Registry,
    /// Requests on the mock listener, by outcome: answered by a mock, passed
    /// through, answered by the gateway itself (health, 404).
    pub requests_mocked: IntCounter,
    pub requests_proxied: IntCounter,
    pub requests_other: IntCounter,
    /// Requests answered by the HTTP/1 fast path (also counted by outcome).
    pub requests_fast: IntCounter,
    /// Connections and requests refused for a limit, by reason.
    pub refused: Refused,
    pub reloads_ok: IntCounter,
    pub reloads_failed: IntCounter,
    /// Errors of the last config load (0 when it succeeded).
    pub config_errors: IntGauge,
    pub generation: IntGauge,
    pub file_endpoints: IntGauge,
    pub runtime_endpoints: IntGauge,
    pub store_errors: IntCounter,
    /// Full reloads of the runtime layer from a shared store.
    pub store_resyncs: IntCounter,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).unwrap_or_else(|_| unreachable_metric());
    let _ = registry.register(Box::new(c.clone()));
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).unwrap_or_else(|_| unreachable_gauge());
    let _ = registry.register(Box::new(g.clone()));
    g
}

// Metric names are constants checked by the tests; these stand in should
// one ever be rejected, so that metrics never stop the gateway.
fn unreachable_metric() -> IntCounter {
    IntCounter::new("echo_invalid_metric", "placeholder").unwrap_or_else(|_| std::process::abort())
}

fn unreachable_gauge() -> IntGauge {
    IntGauge::new("echo_invalid_gauge", "placeholder").unwrap_or_else(|_| std::process::abort())
}

fn requests(registry: &Registry) -> IntCounterVec {
    let v = IntCounterVec::new(
        Opts::new(
            "echo_requests_total",
            "Requests on the mock listener by outcome",
        ),
        &["outcome"],
    )
    .unwrap_or_else(|_| std::process::abort());
    let _ = registry.register(Box::new(v.clone()));
    v
}

/// `echo_refused_total{reason}`: what limits turned away.
#[derive(Clone)]
pub struct Refused {
    /// Connections over `server.max_connections` (503).
    pub connections: IntCounter,
    /// Request heads over their size limits (414, 431).
    pub header: IntCounter,
    /// Admin requests over the admin rate limit (429).
    pub admin_rate: IntCounter,
    /// Requests over an endpoint's declared rate (429).
    pub endpoint_rate: IntCounter,
}

fn refused(registry: &Registry) -> Refused {
    let v = IntCounterVec::new(
        Opts::new(
            "echo_refused_total",
            "Connections and requests refused for a limit, by reason",
        ),
        &["reason"],
    )
    .unwrap_or_else(|_| std::process::abort());
    let _ = registry.register(Box::new(v.clone()));
    Refused {
        connections: v.with_label_values(&["connections"]),
        header: v.with_label_values(&["header"]),
        admin_rate: v.with_label_values(&["admin_rate"]),
        endpoint_rate: v.with_label_values(&["endpoint_rate"]),
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let by_outcome = requests(&r);
        Metrics {
            refused: refused(&r),
            requests_mocked: by_outcome.with_label_values(&["mocked"]),
            requests_proxied: by_outcome.with_label_values(&["proxied"]),
            requests_other: by_outcome.with_label_values(&["other"]),
            requests_fast: counter(
                &r,
                "echo_fast_path_requests_total",
                "Requests answered by the HTTP/1 fast path (also counted by outcome)",
            ),
            reloads_ok: counter(
                &r,
                "echo_config_reloads_total",
                "Config reloads that were applied",
            ),
            reloads_failed: counter(
                &r,
                "echo_config_reload_failures_total",
                "Config reloads refused for errors",
            ),
            config_errors: gauge(
                &r,
                "echo_config_errors",
                "Errors found by the last config load",
            ),
            generation: gauge(
                &r,
                "echo_router_generation",
                "Generation of the router being served",
            ),
            file_endpoints: gauge(&r, "echo_file_endpoints", "Endpoints from config files"),
            runtime_endpoints: gauge(
                &r,
                "echo_runtime_endpoints",
                "Endpoints created through the admin API",
            ),
            store_errors: counter(
                &r,
                "echo_store_errors_total",
                "Store operations that failed",
            ),
            store_resyncs: counter(
                &r,
                "echo_store_resyncs_total",
                "Full reloads of the runtime layer from the store",
            ),
            registry: r,
        }
    }

    pub fn observe_router(&self, r: &Router) {
        self.generation
            .set(i64::try_from(r.generation).unwrap_or(i64::MAX));
        self.file_endpoints.set(r.layers.files.len() as i64);
        self.runtime_endpoints.set(r.layers.runtime.len() as i64);
    }

    /// Requests on the mock listener since the start.
    pub fn requests_total(&self) -> u64 {
        self.requests_mocked.get() + self.requests_proxied.get() + self.requests_other.get()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
