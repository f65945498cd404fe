//! Hot reload of the config files: a watcher on the config paths (debounced)
//! and SIGHUP. A valid edit swaps in the new file layer; an invalid one keeps
//! the last good router and is reported (log, status page, metric).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify::{self, EventKind, RecursiveMode, Watcher};

use crate::config::{self, Overrides};
use crate::router::Gateway;

/// How long the watcher waits for a burst of writes to end.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// Starts watching `paths` and listening for SIGHUP on `rt`.
pub fn spawn(
    rt: &tokio::runtime::Runtime,
    gw: Arc<Gateway>,
    paths: Vec<PathBuf>,
    overrides: Overrides,
) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<&'static str>();

    // The directories watched: a config directory itself, or the directory
    // of a config file. Each is watched from its parent too, so that one
    // deleted or replaced (and with it its watch) is noticed when it comes
    // back; it is then watched again.
    let watch = gw.config().server.watch_config;
    let dirs: Vec<PathBuf> = paths
        .iter()
        .filter(|_| watch)
        .map(|p| {
            let dir = if p.is_dir() {
                p.clone()
            } else {
                p.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
            };
            // Events name absolute paths.
            std::path::absolute(&dir).unwrap_or(dir)
        })
        .collect();

    // The watcher's thread only signals; loading happens on the runtime.
    // Accesses are not changes: reading the files to reload them opens them,
    // and counting that as a change would reload again, without end. In a
    // parent, only the watched directory itself counts.
    let watch_tx = tx.clone();
    let relevant = dirs.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(e) = res else { return };
        let ours = e.paths.is_empty()
            || e.paths
                .iter()
                .any(|p| relevant.iter().any(|d| p.starts_with(d)));
        if ours && !matches!(e.kind, EventKind::Access(_)) {
            let _ = watch_tx.send("file change");
        }
    })?;
    for dir in &dirs {
        // Watch the directory: editors and ConfigMaps replace files by rename.
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        if let Some(parent) = dir.parent() {
            if let Err(e) = watcher.watch(parent, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %parent.display(), error = %e,
                    "cannot watch the config directory's parent: a config directory deleted and put back is noticed on SIGHUP only");
            }
        }
    }

    let _guard = rt.enter();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let hup_tx = tx;
    rt.spawn(async move {
        while hup.recv().await.is_some() {
            let _ = hup_tx.send("SIGHUP");
        }
    });

    rt.spawn(async move {
        // The watcher lives as long as this task.
        let mut watcher = watcher;
        let mut last_digest = gw.reload_status().digest;
        // One edit can wake the watcher more than once: report each bad config once.
        let mut last_errors: Vec<config::ConfigError> = Vec::new();
        while let Some(cause) = rx.recv().await {
            // A burst of writes (an editor's save, a ConfigMap's swap) ends first.
            tokio::time::sleep(DEBOUNCE).await;
            while rx.try_recv().is_ok() {}
            // A directory deleted and put back (or moved away and back) lost
            // its watch: watch it again (for one still watched, a no-op).
            for dir in dirs.iter().filter(|d| d.is_dir()) {
                if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the config directory");
                }
            }
            let loaded = {
                let paths = paths.clone();
                let overrides = overrides.clone();
                tokio::task::spawn_blocking(move || config::load_with(&paths, &overrides)).await
            };
            match loaded {
                Ok(Ok(cfg)) if cfg.digest == last_digest && gw.reload_status().ok => {
                    tracing::debug!(cause, "config unchanged");
                }
                Ok(Ok(cfg)) => {
                    tracing::info!(cause, "reloading config");
                    last_digest = cfg.digest.clone();
                    last_errors.clear();
                    gw.reload(cfg).await;
                }
                Ok(Err(errs)) if errs.0 == last_errors => {
                    tracing::debug!(cause, "config still invalid");
                }
                Ok(Err(errs)) => {
                    gw.reload_failed(&errs.0);
                    last_errors = errs.0;
                }
                Err(e) => tracing::error!(error = %e, "config reload task failed"),
            }
        }
    });
    Ok(())
}
