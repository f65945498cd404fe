//! Prometheus metrics of the gateway, rendered by `GET /metrics`.

use prometheus::{Encoder, IntCounter, IntGauge, Registry, TextEncoder};

use crate::router::Router;

pub struct Metrics {
    registry: Registry,
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

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        Metrics {
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
