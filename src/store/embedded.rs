//! The embedded store: a redb database file. A write is acknowledged only
//! once its transaction is committed (durable), and ids are never reused.

use std::path::Path;

use async_trait::async_trait;

use super::{Store, StoreError};
use crate::router::RuntimeEndpoint;

pub struct EmbeddedStore {}

impl EmbeddedStore {
    pub fn open(path: &Path) -> anyhow::Result<EmbeddedStore> {
        anyhow::bail!("the embedded store at {} is not built yet", path.display())
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn load(&self) -> Result<Vec<RuntimeEndpoint>, StoreError> {
        Err(StoreError::Unavailable("not built yet".into()))
    }
    async fn reserve_id(&self) -> Result<u64, StoreError> {
        Err(StoreError::Unavailable("not built yet".into()))
    }
    async fn create(&self, _e: &RuntimeEndpoint) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("not built yet".into()))
    }
    async fn update(&self, _e: &RuntimeEndpoint) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("not built yet".into()))
    }
    async fn delete(&self, _id: u64) -> Result<(), StoreError> {
        Err(StoreError::Unavailable("not built yet".into()))
    }
    fn kind(&self) -> &'static str {
        "embedded"
    }
}
