//! The memory store: for tests and throwaway runs; nothing outlives the process.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Store, StoreError};
use crate::config::EndpointSpec;
use crate::router::RuntimeEndpoint;

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last_id: u64,
    /// Keyed by id: ids grow, so this is creation order.
    endpoints: BTreeMap<u64, EndpointSpec>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the map half-written.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn load(&self) -> Result<Vec<RuntimeEndpoint>, StoreError> {
        Ok(self
            .state()
            .endpoints
            .iter()
            .map(|(id, spec)| RuntimeEndpoint {
                id: *id,
                spec: spec.clone(),
            })
            .collect())
    }

    async fn reserve_id(&self) -> Result<u64, StoreError> {
        let mut s = self.state();
        s.last_id += 1;
        Ok(s.last_id)
    }

    async fn create(&self, e: &RuntimeEndpoint) -> Result<(), StoreError> {
        let mut s = self.state();
        let key = e.spec.conflict_key();
        if let Some((id, _)) = s.endpoints.iter().find(|(_, x)| x.conflict_key() == key) {
            return Err(StoreError::Conflict(*id));
        }
        s.last_id = s.last_id.max(e.id);
        s.endpoints.insert(e.id, e.spec.clone());
        Ok(())
    }

    async fn update(&self, e: &RuntimeEndpoint) -> Result<(), StoreError> {
        let mut s = self.state();
        match s.endpoints.get_mut(&e.id) {
            Some(spec) => {
                *spec = e.spec.clone();
                Ok(())
            }
            None => Err(StoreError::NotFound(e.id)),
        }
    }

    async fn delete(&self, id: u64) -> Result<(), StoreError> {
        match self.state().endpoints.remove(&id) {
            Some(_) => Ok(()),
            None => Err(StoreError::NotFound(id)),
        }
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}
