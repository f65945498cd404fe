//! The runtime layer as routers share it: creating an endpoint among 100k
//! copies neither the others nor their specs.

use std::sync::Arc;

use super::RuntimeEndpoint;

/// The endpoints created through the admin API, in creation order.
///
/// `chunks` are what the router's tables were compiled from; `added` are
/// the endpoints created since, which the router serves from its delta.
/// Routers share both: a create copies `added` (at most a few hundred
/// endpoints) and the list of chunk pointers, never the chunks.
#[derive(Debug, Clone, Default)]
pub struct RuntimeLayer {
    chunks: Arc<Vec<Arc<Vec<RuntimeEndpoint>>>>,
    added: Arc<Vec<RuntimeEndpoint>>,
    len: usize,
}

impl From<Vec<RuntimeEndpoint>> for RuntimeLayer {
    fn from(list: Vec<RuntimeEndpoint>) -> RuntimeLayer {
        let len = list.len();
        RuntimeLayer {
            chunks: Arc::new(if list.is_empty() {
                Vec::new()
            } else {
                vec![Arc::new(list)]
            }),
            added: Arc::default(),
            len,
        }
    }
}

impl PartialEq for RuntimeLayer {
    fn eq(&self, other: &RuntimeLayer) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl RuntimeLayer {
    /// Every endpoint, in creation order.
    pub fn iter(&self) -> impl Iterator<Item = &RuntimeEndpoint> + Clone {
        self.chunks
            .iter()
            .flat_map(|c| c.iter())
            .chain(self.added.iter())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn to_vec(&self) -> Vec<RuntimeEndpoint> {
        self.iter().cloned().collect()
    }

    /// The endpoints created since the tables were compiled.
    pub(super) fn added(&self) -> &[RuntimeEndpoint] {
        &self.added
    }

    /// This layer with one more endpoint, served from the delta.
    pub(super) fn push(&self, e: RuntimeEndpoint) -> RuntimeLayer {
        let mut added = Vec::with_capacity(self.added.len() + 1);
        added.extend(self.added.iter().cloned());
        added.push(e);
        RuntimeLayer {
            chunks: self.chunks.clone(),
            added: Arc::new(added),
            len: self.len + 1,
        }
    }

    /// This layer with its added endpoints moved into the compiled chunks.
    pub(super) fn settled(&self) -> RuntimeLayer {
        if self.added.is_empty() {
            return self.clone();
        }
        let mut chunks = Vec::with_capacity(self.chunks.len() + 1);
        chunks.extend(self.chunks.iter().cloned());
        chunks.push(self.added.clone());
        RuntimeLayer {
            chunks: Arc::new(chunks),
            added: Arc::default(),
            len: self.len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EndpointSpec, PathSpec, ResponseSpec, Verb};

    fn e(id: u64) -> RuntimeEndpoint {
        RuntimeEndpoint {
            id,
            spec: EndpointSpec {
                verb: Verb::Get,
                path: PathSpec::Exact(format!("/{id}")),
                priority: None,
                conditions: None,
                response: ResponseSpec::default(),
            },
        }
    }

    #[test]
    fn pushes_and_settles_keep_creation_order() {
        let mut layer = RuntimeLayer::from(vec![e(1), e(2)]);
        for id in 3..=5 {
            layer = layer.push(e(id));
        }
        assert_eq!(layer.added().len(), 3);
        let settled = layer.settled();
        assert!(settled.added().is_empty());
        let settled = settled.push(e(6)).settled().push(e(7));
        let ids: Vec<u64> = settled.iter().map(|r| r.id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(settled.len(), 7);
        assert_eq!(
            settled,
            RuntimeLayer::from((1..=7).map(e).collect::<Vec<_>>())
        );
        assert_ne!(settled, layer);
    }
}
