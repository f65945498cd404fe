//! The redis store: endpoints and a revision counter in Redis, shared by
//! every replica.

use async_trait::async_trait;

use super::{Store, StoreError};
use crate::router::RuntimeEndpoint;

pub struct RedisStore {}

impl RedisStore {
    pub async fn connect(
        url: &str,
        _prefix: &str,
        _check: std::time::Duration,
    ) -> anyhow::Result<RedisStore> {
        anyhow::bail!("the redis store at {url} is not built yet")
    }
}

#[async_trait]
impl Store for RedisStore {
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
        "redis"
    }
}
