//! The gateway's shared state: one `ArcSwap` with the current router, and the
//! writes of the runtime layer. Every change builds a new router to the side,
//! commits to the store, and swaps once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::{CompileError, Layers, Router, RuntimeEndpoint};
use crate::config::{Config, EndpointSpec, Upstream};
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
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Gateway {
    router: ArcSwap<Router>,
    store: Arc<dyn Store>,
    config: Arc<Config>,
    upstreams: Arc<HashMap<String, Arc<Upstream>>>,
    fallback: Option<Arc<Upstream>>,
    /// Serialises writers so that each builds on the router the last one swapped in.
    write_lock: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

impl Gateway {
    /// Loads the runtime layer from the store and compiles the first router.
    pub async fn new(config: Config, store: Arc<dyn Store>) -> anyhow::Result<Gateway> {
        let upstreams: Arc<HashMap<String, Arc<Upstream>>> = Arc::new(
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
        let runtime = store.load().await?;
        let layers = Layers {
            files: Arc::new(config.endpoints.clone()),
            runtime: Arc::new(runtime),
        };
        let (router, skipped) = Router::compile(layers, upstreams.clone(), fallback.clone(), 1);
        for e in &skipped {
            tracing::warn!(endpoint = %e.id, reason = %e.message, "endpoint not served");
        }
        Ok(Gateway {
            router: ArcSwap::from_pointee(router),
            store,
            config: Arc::new(config),
            upstreams,
            fallback,
            write_lock: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(1),
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

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Compiles `runtime` with the file layer; refuses when the endpoint
    /// `written` would not be served.
    fn build(
        &self,
        runtime: Vec<RuntimeEndpoint>,
        written: Option<u64>,
    ) -> Result<Router, WriteError> {
        let current = self.router.load();
        let layers = Layers {
            files: current.layers.files.clone(),
            runtime: Arc::new(runtime),
        };
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        let (router, skipped) = Router::compile(
            layers,
            self.upstreams.clone(),
            self.fallback.clone(),
            generation,
        );
        if let Some(id) = written {
            let id = id.to_string();
            let mine: Vec<CompileError> = skipped.iter().filter(|e| e.id == id).cloned().collect();
            if !mine.is_empty() {
                return Err(WriteError::Invalid(mine));
            }
        }
        for e in skipped {
            tracing::warn!(endpoint = %e.id, reason = %e.message, "endpoint not served");
        }
        Ok(router)
    }

    fn swap(&self, router: Router) {
        self.generation.store(router.generation, Ordering::Relaxed);
        self.router.store(Arc::new(router));
    }

    fn conflict(
        runtime: &[RuntimeEndpoint],
        spec: &EndpointSpec,
        except: Option<u64>,
    ) -> Option<WriteError> {
        let key = spec.path.route_key();
        runtime
            .iter()
            .find(|e| {
                Some(e.id) != except && e.spec.verb == spec.verb && e.spec.path.route_key() == key
            })
            .map(|e| WriteError::Conflict {
                id: e.id.to_string(),
                verb: e.spec.verb.to_string(),
                path: e.spec.path.as_str().to_string(),
            })
    }

    /// Creates a runtime endpoint; answers once it is committed and served.
    pub async fn create(&self, spec: EndpointSpec) -> Result<RuntimeEndpoint, WriteError> {
        let _w = self.write_lock.lock().await;
        let current = self.router.load_full();
        if let Some(c) = Self::conflict(&current.layers.runtime, &spec, None) {
            return Err(c);
        }
        let id = self.store.reserve_id().await?;
        let created = RuntimeEndpoint { id, spec };
        let mut runtime = current.layers.runtime.as_ref().clone();
        runtime.push(created.clone());
        let router = self.build(runtime, Some(id))?;
        self.store.create(&created).await?;
        self.swap(router);
        Ok(created)
    }

    /// Replaces the spec of a runtime endpoint.
    pub async fn update(
        &self,
        id: &str,
        spec: EndpointSpec,
    ) -> Result<RuntimeEndpoint, WriteError> {
        let _w = self.write_lock.lock().await;
        let current = self.router.load_full();
        let num = self.runtime_id(&current, id)?;
        if let Some(c) = Self::conflict(&current.layers.runtime, &spec, Some(num)) {
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
        let router = self.build(runtime, Some(num))?;
        self.store.update(&updated).await?;
        self.swap(router);
        Ok(updated)
    }

    pub async fn delete(&self, id: &str) -> Result<(), WriteError> {
        let _w = self.write_lock.lock().await;
        let current = self.router.load_full();
        let num = self.runtime_id(&current, id)?;
        let runtime: Vec<RuntimeEndpoint> = current
            .layers
            .runtime
            .iter()
            .filter(|e| e.id != num)
            .cloned()
            .collect();
        let router = self.build(runtime, None)?;
        self.store.delete(num).await?;
        self.swap(router);
        Ok(())
    }

    /// The numeric id of a runtime endpoint, or why there is none.
    fn runtime_id(&self, router: &Router, id: &str) -> Result<u64, WriteError> {
        if router.layers.files.iter().any(|f| f.id == id) {
            return Err(WriteError::ReadOnly(id.to_string()));
        }
        id.parse::<u64>()
            .ok()
            .filter(|n| router.layers.runtime.iter().any(|e| e.id == *n))
            .filter(|n| n.to_string() == id)
            .ok_or_else(|| WriteError::NotFound(id.to_string()))
    }
}
