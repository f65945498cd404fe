//! Building and running the Pingora server: the mock listener, the admin
//! listener when it has its own, and graceful shutdown.

use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::proxy::ProxyServiceBuilder;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};

use crate::config::Config;
use crate::proxy::{EchoProxy, Role};
use crate::router::Gateway;
use crate::store::{MemoryStore, Store};

/// Runs the gateway until SIGTERM (graceful) or SIGINT (fast).
pub fn run(config: Config) -> anyhow::Result<()> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let setup = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let gw = Arc::new(setup.block_on(Gateway::new(config, store))?);
    drop(setup);
    let cfg = gw.config().clone();

    let mut conf = ServerConf {
        threads: cfg.server.threads,
        grace_period_seconds: Some(cfg.server.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(2),
        upgrade_sock: format!("/tmp/echo-gateway-{}.sock", std::process::id()),
        pid_file: format!("/tmp/echo-gateway-{}.pid", std::process::id()),
        ..ServerConf::default()
    };
    // A failed pass-through is answered, not retried against the same upstream.
    conf.max_retries = 1;
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let options = || {
        let mut o = HttpServerOptions::default();
        o.h2c = cfg.server.h2c;
        o
    };
    let role = Role::Mock {
        admin: cfg.admin.shares_mock_listener(),
    };
    let mut mock =
        ProxyServiceBuilder::new(&server.configuration, EchoProxy::new(gw.clone(), role))
            .name("echo-gateway mocks")
            .server_options(options())
            .build();
    for addr in &cfg.server.listen {
        mock.add_tcp(addr);
    }
    server.add_service(mock);

    if let (true, Some(addr)) = (cfg.admin.enabled, cfg.admin.listen.as_ref()) {
        let mut admin = ProxyServiceBuilder::new(
            &server.configuration,
            EchoProxy::new(gw.clone(), Role::Admin),
        )
        .name("echo-gateway admin")
        .server_options(options())
        .build();
        admin.add_tcp(addr);
        server.add_service(admin);
    }

    tracing::info!(
        listen = ?cfg.server.listen,
        admin = %cfg.admin.listen.as_deref().unwrap_or(if cfg.admin.enabled { "shared" } else { "off" }),
        endpoints = gw.current().endpoint_count(),
        files = cfg.files.len(),
        "echo-gateway starting"
    );
    server.run(RunArgs::default());
    tracing::info!("echo-gateway stopped");
    Ok(())
}
