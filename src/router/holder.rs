//! The gateway's shared state: one `ArcSwap` with the current router, and
//! every change to it. Each change (an admin write, a config reload, a change
//! heard from another replica) builds a new router to the side and swaps it in
//! once, under one lock, so that each builds on the router the last one left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use super::{CompileError, HitCounters, Layers, Router, RuntimeEndpoint, RuntimeLayer};
use crate::config::{Config, ConfigError, EndpointSpec, Upstream};
use crate::journal::Journal;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// Why a write of the runtime layer was refused.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("endpoint `{0}` does not exist")]
    NotFound(String),
    #[error("endpoint `{0}` comes from a config file and is read-only")]
    ReadOnly(String),
    #[error("endpoint {id} already answers {verb} {path}")]
    Conflict {
        id: String,
        verb: String,
        path: String,
    },
    #[error("{}", .0.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<CompileError>),
    #[error("the gateway holds its limit of {0} endpoints (server.max_endpoints)")]
    Full(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The outcome of the last attempt to load the config files.
#[derive(Debug, Clone)]
pub struct ReloadStatus {
    pub at: SystemTime,
    pub ok: bool,
    /// `file:line:col: message` lines of a failed reload.
    pub errors: Vec<String>,
    /// Digest of the files of the configuration being served.
    pub digest: String,
    pub files: Vec<String>,
}

pub struct Gateway {
    router: ArcSwap<Router>,
    store: Arc<dyn Store>,
    /// The configuration the process started with (listeners, admin, store).
    config: Arc<Config>,
    /// Held by every change; guards the conflict keys of the runtime layer.
    write_lock: tokio::sync::Mutex<Keys>,
    status: Mutex<ReloadStatus>,
    pub metrics: Metrics,
    /// Requests each endpoint answered.
    pub hits: HitCounters,
    /// Recent requests on the mock listener, when the journal is on.
    pub journal: Option<Journal>,
    /// The admin API's rate limits.
    pub admin_rates: crate::limits::AdminRates,
}

/// The conflict key (`EndpointSpec::conflict_key`) of each endpoint of the
/// current runtime layer, with its id: a create checks for a conflict
/// without looking at the other endpoints.
type Keys = HashMap<String, u64>;

fn keys_of<'a>(runtime: impl Iterator<Item = &'a RuntimeEndpoint>) -> Keys {
    runtime.map(|e| (e.spec.conflict_key(), e.id)).collect()
}

/// The named upstreams of a config, shared by the routers built from it.
type Upstreams = Arc<HashMap<String, Arc<Upstream>>>;

pub(crate) fn upstream_table(config: &Config) -> (Upstreams, Option<Arc<Upstream>>) {
    let upstreams: Upstreams = Arc::new(
        config
            .upstreams
            .iter()
            .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
            .collect(),
    );
    let fallback = config
        .fallback
        .as_ref()
        .and_then(|f| upstreams.get(f).cloned());
    (upstreams, fallback)
}

fn log_skipped(skipped: &[CompileError]) {
    for e in skipped {
        tracing::warn!(endpoint = %e.id, reason = %e.message, "endpoint not served");
    }
}

impl Gateway {
    /// Loads the runtime layer from the store and compiles the first router.
    pub async fn new(mut config: Config, store: Arc<dyn Store>) -> anyhow::Result<Gateway> {
        let (upstreams, fallback) = upstream_table(&config);
        let runtime = store.load().await?;
        let keys = keys_of(runtime.iter());
        // The file endpoints live in the router's layers; the config kept
        // here is for the settings (and would be stale after a reload).
        let layers = Layers {
            files: Arc::new(std::mem::take(&mut config.endpoints)),
            runtime: runtime.into(),
        };
        let hits = HitCounters::default();
        let (router, skipped) = Router::compile_counted(layers, upstreams, fallback, 1, &hits);
        log_skipped(&skipped);
        let metrics = Metrics::new();
        metrics.observe_router(&router);
        let status = ReloadStatus {
            at: SystemTime::now(),
            ok: true,
            errors: Vec::new(),
            digest: config.digest.clone(),
            files: config
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect(),
        };
        let journal = config
            .journal
            .enabled
            .then(|| Journal::new(config.journal.capacity, config.journal.max_body_bytes));
        Ok(Gateway {
            admin_rates: crate::limits::AdminRates::new(&config.admin),
            hits,
            journal,
            router: ArcSwap::from_pointee(router),
            store,
            config: Arc::new(config),
            write_lock: tokio::sync::Mutex::new(keys),
            status: Mutex::new(status),
            metrics,
        })
    }

    /// The current router, to hold across an `.await`.
    pub fn router(&self) -> Arc<Router> {
        self.router.load_full()
    }

    /// The current router, for code that does not await while holding it.
    pub fn current(&self) -> arc_swap::Guard<Arc<Router>> {
        self.router.load()
    }

    /// The settings the gateway started with; its `endpoints` are empty (the
    /// file endpoints being served are in `current().layers`).
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn reload_status(&self) -> ReloadStatus {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Compiles new layers on top of `base`; refuses when the endpoint
    /// `written` would not be served.
    fn build(
        hits: &HitCounters,
        base: &Router,
        files: Arc<Vec<crate::config::FileEndpoint>>,
        runtime: RuntimeLayer,
        upstreams: Upstreams,
        fallback: Option<Arc<Upstream>>,
        written: Option<u64>,
    ) -> Result<Router, WriteError> {
        let layers = Layers { files, runtime };
        let (router, skipped) =
            Router::compile_counted(layers, upstreams, fallback, base.generation + 1, hits);
        if let Some(id) = written {
            let id = id.to_string();
            let mine: Vec<CompileError> = skipped.iter().filter(|e| e.id == id).cloned().collect();
            if !mine.is_empty() {
                return Err(WriteError::Invalid(mine));
            }
        }
        log_skipped(&skipped);
        Ok(router)
    }

    /// A new runtime layer on the current files and upstreams.
    fn build_runtime(
        &self,
        base: &Router,
        runtime: RuntimeLayer,
        written: Option<u64>,
    ) -> Result<Router, WriteError> {
        Self::build(
            &self.hits,
            base,
            base.layers.files.clone(),
            runtime,
            base.upstreams.clone(),
            base.fallback.clone(),
            written,
        )
    }

    /// Serves `router`. After a change that may have removed endpoints,
    /// their hit counters go too.
    fn swap(&self, router: Router, removed: bool) {
        self.metrics.observe_router(&router);
        if !removed {
            self.router.store(Arc::new(router));
            return;
        }
        let live: std::collections::HashSet<String> = router
            .layers
            .files
            .iter()
            .map(|f| f.id.clone())
            .chain(router.layers.runtime.iter().map(|e| e.id.to_string()))
            .collect();
        self.hits.retain(&live);
        self.router.store(Arc::new(router));
    }

    fn conflict(
        keys: &Keys,
        key: &str,
        spec: &EndpointSpec,
        except: Option<u64>,
    ) -> Option<WriteError> {
        keys.get(key)
            .filter(|&&id| Some(id) != except)
            .map(|&id| conflict_error(id, spec))
    }

    /// Creates a runtime endpoint; answers once it is committed and served.
    pub async fn create(&self, spec: EndpointSpec) -> Result<RuntimeEndpoint, WriteError> {
        let mut keys = self.write_lock.lock().await;
        let current = self.router.load_full();
        let key = spec.conflict_key();
        if let Some(c) = Self::conflict(&keys, &key, &spec, None) {
            return Err(c);
        }
        let limit = self.config().server.max_endpoints;
        if current.layers.files.len() + current.layers.runtime.len() >= limit {
            return Err(WriteError::Full(limit));
        }
        let id = self
            .store
            .reserve_id()
            .await
            .map_err(|e| self.store_error(e))?;
        let created = RuntimeEndpoint { id, spec };
        let router = match current.with_created(created.clone(), &self.hits) {
            Some(Ok(router)) => router,
            Some(Err(e)) => return Err(WriteError::Invalid(vec![e])),
            None => {
                let runtime = current.layers.runtime.push(created.clone());
                self.build_runtime(&current, runtime, Some(id))?
            }
        };
        self.store
            .create(&created)
            .await
            .map_err(|e| self.store_write_error(e, &created.spec))?;
        self.swap(router, false);
        keys.insert(key, id);
        Ok(created)
    }

    /// Replaces the spec of a runtime endpoint.
    pub async fn update(
        &self,
        id: &str,
        spec: EndpointSpec,
    ) -> Result<RuntimeEndpoint, WriteError> {
        let mut keys = self.write_lock.lock().await;
        let current = self.router.load_full();
        let num = runtime_id(&current, id)?;
        let key = spec.conflict_key();
        if let Some(c) = Self::conflict(&keys, &key, &spec, Some(num)) {
            return Err(c);
        }
        let updated = RuntimeEndpoint { id: num, spec };
        let runtime: Vec<RuntimeEndpoint> = current
            .layers
            .runtime
            .iter()
            .map(|e| {
                if e.id == num {
                    updated.clone()
                } else {
                    e.clone()
                }
            })
            .collect();
        let router = self.build_runtime(&current, runtime.into(), Some(num))?;
        self.store
            .update(&updated)
            .await
            .map_err(|e| self.store_write_error(e, &updated.spec))?;
        self.swap(router, false);
        keys.retain(|_, id| *id != num);
        keys.insert(key, num);
        Ok(updated)
    }

    pub async fn delete(&self, id: &str) -> Result<(), WriteError> {
        let mut keys = self.write_lock.lock().await;
        let current = self.router.load_full();
        let num = runtime_id(&current, id)?;
        let runtime: Vec<RuntimeEndpoint> = current
            .layers
            .runtime
            .iter()
            .filter(|e| e.id != num)
            .cloned()
            .collect();
        let router = self.build_runtime(&current, runtime.into(), None)?;
        self.store.delete(num).await.map_err(|e| match e {
            StoreError::NotFound(_) => WriteError::NotFound(id.to_string()),
            other => self.store_error(other),
        })?;
        self.swap(router, true);
        keys.retain(|_, id| *id != num);
        Ok(())
    }

    fn store_error(&self, e: StoreError) -> WriteError {
        self.metrics.store_errors.inc();
        WriteError::Store(e)
    }

    fn store_write_error(&self, e: StoreError, spec: &EndpointSpec) -> WriteError {
        match e {
            StoreError::Conflict(other) => conflict_error(other, spec),
            StoreError::NotFound(id) => WriteError::NotFound(id.to_string()),
            other => self.store_error(other),
        }
    }

    /// Swaps in a runtime layer that the store reports (a change made by
    /// another replica, or a full resync). Nothing is written to the store.
    pub async fn replace_runtime(&self, runtime: Vec<RuntimeEndpoint>) {
        let mut keys = self.write_lock.lock().await;
        let current = self.router.load_full();
        if current.layers.runtime.iter().eq(runtime.iter()) {
            return;
        }
        let fresh = keys_of(runtime.iter());
        if let Ok(router) = self.build_runtime(&current, runtime.into(), None) {
            self.swap(router, true);
            *keys = fresh;
        }
    }

    /// Swaps in the endpoints and upstreams of a newly loaded configuration,
    /// keeping the runtime layer. Listener, admin and store settings take
    /// effect at the next start.
    pub async fn reload(&self, mut config: Config) {
        let _w = self.write_lock.lock().await;
        let current = self.router.load_full();
        let (upstreams, fallback) = upstream_table(&config);
        let runtime = current.layers.runtime.clone();
        let started = std::time::Instant::now();
        if let Ok(router) = Self::build(
            &self.hits,
            &current,
            Arc::new(std::mem::take(&mut config.endpoints)),
            runtime,
            upstreams,
            fallback,
            None,
        ) {
            let compile_ms = started.elapsed().as_secs_f64() * 1e3;
            let endpoints = router.layers.files.len();
            self.swap(router, true);
            self.metrics.reloads_ok.inc();
            self.metrics.config_errors.set(0);
            tracing::info!(
                files = config.files.len(),
                endpoints,
                compile_ms = (compile_ms * 10.0).round() / 10.0,
                digest = %config.digest,
                "config reloaded"
            );
            *self
                .status
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = ReloadStatus {
                at: SystemTime::now(),
                ok: true,
                errors: Vec::new(),
                digest: config.digest.clone(),
                files: config
                    .files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect(),
            };
        }
    }

    /// Records a reload that failed: the last good router keeps serving.
    pub fn reload_failed(&self, errors: &[ConfigError]) {
        self.metrics.reloads_failed.inc();
        self.metrics.config_errors.set(errors.len() as i64);
        for e in errors {
            tracing::error!(error = %e, "config reload failed; serving the last good config");
        }
        let mut s = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        s.at = SystemTime::now();
        s.ok = false;
        s.errors = errors.iter().map(ToString::to_string).collect();
    }
}

fn conflict_error(id: u64, spec: &EndpointSpec) -> WriteError {
    WriteError::Conflict {
        id: id.to_string(),
        verb: spec.verb.to_string(),
        path: spec.path.as_str().to_string(),
    }
}

/// The numeric id of a runtime endpoint, or why there is none.
fn runtime_id(router: &Router, id: &str) -> Result<u64, WriteError> {
    if router.layers.files.iter().any(|f| f.id == id) {
        return Err(WriteError::ReadOnly(id.to_string()));
    }
    id.parse::<u64>()
        .ok()
        .filter(|n| n.to_string() == id)
        .filter(|n| router.layers.runtime.iter().any(|e| e.id == *n))
        .ok_or_else(|| WriteError::NotFound(id.to_string()))
}
