//! Stores of the runtime layer (endpoints created through the admin API).

mod memory;

use async_trait::async_trait;

use crate::router::RuntimeEndpoint;

pub use memory::MemoryStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("endpoint {0} does not exist in the store")]
    NotFound(u64),
    #[error("endpoint {0} already answers this verb and path")]
    Conflict(u64),
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
}

/// Where runtime endpoints live. A write returns only once it is durable in
/// the store; the gateway serialises writers of one process.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Every runtime endpoint, in creation order.
    async fn load(&self) -> Result<Vec<RuntimeEndpoint>, StoreError>;
    /// A new id, never handed out before (not even by an earlier process).
    async fn reserve_id(&self) -> Result<u64, StoreError>;
    async fn create(&self, endpoint: &RuntimeEndpoint) -> Result<(), StoreError>;
    async fn update(&self, endpoint: &RuntimeEndpoint) -> Result<(), StoreError>;
    async fn delete(&self, id: u64) -> Result<(), StoreError>;
    /// A short name for logs and the status page.
    fn kind(&self) -> &'static str;
}
