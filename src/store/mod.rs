//! Stores of the runtime layer (endpoints created through the admin API):
//! `memory` for throwaway runs, `embedded` (a redb database file, the
//! default) for one process, `redis` for replicas that must agree.

mod embedded;
mod memory;
mod redis;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::StoreConfig;
use crate::router::RuntimeEndpoint;

pub use embedded::EmbeddedStore;
pub use memory::MemoryStore;
pub use redis::RedisStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("endpoint {0} does not exist in the store")]
    NotFound(u64),
    #[error("endpoint {0} already answers this verb and path")]
    Conflict(u64),
    /// The store cannot be reached or refused the write; nothing was changed.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store holds data this version cannot read.
    #[error("the store holds data that cannot be read: {0}")]
    Corrupt(String),
}

/// Where runtime endpoints live. A write returns only once it is durable in
/// the store. Writers of one process are serialised by the gateway; a shared
/// store checks the verb+route conflict itself, atomically with the write.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Every runtime endpoint, in creation order.
    async fn load(&self) -> Result<Vec<RuntimeEndpoint>, StoreError>;
    /// A new id, never handed out before (not even to an earlier process or
    /// another replica).
    async fn reserve_id(&self) -> Result<u64, StoreError>;
    /// Stores a new endpoint; `Conflict` when another endpoint has its verb
    /// and route (`PathSpec::route_key`).
    async fn create(&self, endpoint: &RuntimeEndpoint) -> Result<(), StoreError>;
    /// Replaces an endpoint's spec; `NotFound`, or `Conflict` as for create.
    async fn update(&self, endpoint: &RuntimeEndpoint) -> Result<(), StoreError>;
    async fn delete(&self, id: u64) -> Result<(), StoreError>;
    /// `memory`, `embedded` or `redis`.
    fn kind(&self) -> &'static str;
    /// A shared store: the whole runtime layer each time it changes
    /// elsewhere (or after a resync). The gateway serves each value it sees.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<Arc<Vec<RuntimeEndpoint>>>> {
        None
    }
    /// Whether the store is reachable now (for `/readyz` and the status page).
    fn healthy(&self) -> bool {
        true
    }
    /// The store's revision of the runtime layer, where it keeps one.
    fn revision(&self) -> Option<u64> {
        None
    }
}

/// Opens the configured store. Call it inside the runtime that is to run the
/// store's background tasks (a shared store's subscriber and checks).
pub async fn open(config: &StoreConfig) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match config {
        StoreConfig::Memory => Arc::new(MemoryStore::new()),
        StoreConfig::Embedded { path } => Arc::new(EmbeddedStore::open(path)?),
        StoreConfig::Redis {
            url,
            prefix,
            check_interval,
        } => Arc::new(RedisStore::connect(url, prefix, *check_interval).await?),
    })
}
