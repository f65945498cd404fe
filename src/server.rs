//! Building and running the Pingora server: the mock listener, the admin
//! listener when it has its own, the control runtime (store sync, config
//! reload), and graceful shutdown.

use std::path::PathBuf;
use std::sync::Arc;

use pingora::apps::HttpServerOptions;
use pingora::listeners::tls::TlsSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use pingora::services::listening::Service;

use crate::config::{Config, Overrides};
use crate::proxy::{EchoProxy, Limited, MockApp, Role};
use crate::router::Gateway;

/// Runs the gateway until SIGTERM (graceful) or SIGINT (fast). `paths` are
/// the config paths to watch and reload; `overrides` are re-applied on each
/// reload.
pub fn run(config: Config, paths: Vec<PathBuf>, overrides: Overrides) -> anyhow::Result<()> {
    // The control runtime runs beside Pingora's: the store's connections and
    // background tasks, the config watcher and SIGHUP.
    let control = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("echo-control")
        .enable_all()
        .build()?;
    let gw = control.block_on(async {
        let store = crate::store::open(&config.store).await?;
        anyhow::Ok(Arc::new(Gateway::new(config, store).await?))
    })?;
    control.spawn(follow_store(gw.clone()));
    if let Some(emf) = gw.config().emf.clone() {
        control.spawn(crate::emf::run(gw.clone(), emf));
    }
    if !paths.is_empty() {
        crate::reload::spawn(&control, gw.clone(), paths, overrides)?;
    }
    let cfg = gw.config().clone();

    let mut conf = ServerConf {
        threads: cfg.server.threads,
        // One single-threaded runtime per thread, each with its own
        // connections, as nginx's workers: no cross-thread wake-ups.
        work_stealing: false,
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
    let max_conns = cfg.server.max_connections;
    let refused = || gw.metrics.refused.connections.clone();
    let role = Role::Mock {
        admin: cfg.admin.shares_mock_listener(),
    };
    let mut proxy =
        pingora::proxy::http_proxy(&server.configuration, EchoProxy::new(gw.clone(), role));
    if cfg.server.h2c {
        // HTTP/2 over cleartext: Pingora tells HTTP/2 from HTTP/1 per
        // connection, so the HTTP/1 fast path stands aside.
        proxy.server_options = Some(options());
        let app = Limited::new(proxy, max_conns, refused());
        let mut mock = Service::new("echo-gateway mocks".to_string(), app);
        for addr in &cfg.server.listen {
            mock.add_tcp(addr);
        }
        server.add_service(mock);
    } else {
        let app = MockApp::new(proxy, gw.clone(), cfg.admin.shares_mock_listener());
        let app = Limited::new(app, max_conns, refused());
        let mut mock = Service::new("echo-gateway mocks".to_string(), app);
        for addr in &cfg.server.listen {
            mock.add_tcp(addr);
        }
        server.add_service(mock);
    }

    if let (true, Some(addr)) = (cfg.admin.enabled, cfg.admin.listen.as_ref()) {
        let mut proxy = pingora::proxy::http_proxy(
            &server.configuration,
            EchoProxy::new(gw.clone(), Role::Admin),
        );
        proxy.server_options = Some(options());
        let app = Limited::new(proxy, max_conns, refused());
        let mut admin = Service::new("echo-gateway admin".to_string(), app);
        match &cfg.admin.tls {
            Some(tls) => {
                // Checked when the config loaded (`crate::tls::check`).
                let settings = TlsSettings::intermediate(
                    &tls.cert.to_string_lossy(),
                    &tls.key.to_string_lossy(),
                )?;
                admin.add_tls_with_settings(addr, None, settings);
            }
            None => admin.add_tcp(addr),
        }
        server.add_service(admin);
    }

    tracing::info!(
        listen = ?cfg.server.listen,
        admin = %cfg.admin.listen.as_deref().unwrap_or(if cfg.admin.enabled { "shared" } else { "off" }),
        admin_tls = cfg.admin.tls.is_some(),
        store = gw.store().kind(),
        endpoints = gw.current().endpoint_count(),
        files = cfg.files.len(),
        "echo-gateway starting"
    );
    server.run(RunArgs::default());
    control.shutdown_timeout(std::time::Duration::from_secs(1));
    tracing::info!("echo-gateway stopped");
    Ok(())
}

/// Serves every runtime layer a shared store reports.
async fn follow_store(gw: Arc<Gateway>) {
    let Some(mut rx) = gw.store().changes() else {
        return;
    };
    loop {
        let layer = rx.borrow_and_update().clone();
        gw.replace_runtime(layer.as_ref().clone()).await;
        if rx.changed().await.is_err() {
            return;
        }
    }
}
