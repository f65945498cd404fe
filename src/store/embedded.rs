//! The embedded store: a redb database file. A write is acknowledged only
//! once its transaction is committed (durable), and ids are never reused.
//!
//! Two tables: `endpoints` maps each id to a versioned JSON document of the
//! endpoint (`{"version": 1, "endpoint": <attributes>}`, the attributes as the
//! admin API shows them), and `meta` holds `last_id`, the last id handed out.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::{Store, StoreError};
use crate::config::doc::{Diags, Node};
use crate::config::endpoint::{decode_full, SchemaContext};
use crate::config::EndpointSpec;
use crate::router::RuntimeEndpoint;

const ENDPOINTS: TableDefinition<u64, &str> = TableDefinition::new("endpoints");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const LAST_ID: &str = "last_id";
/// The version of the JSON document of an endpoint.
const FORMAT: u64 = 1;

pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    /// `None` after an I/O error: redb refuses every later write until the
    /// file is opened again, which the next operation does.
    db: Mutex<Option<Arc<Database>>>,
    /// The conflict key of every stored endpoint, so that a write checks
    /// for a conflict without reading the others. Held by each operation.
    keys: Mutex<KeyIndex>,
}

/// Conflict keys (`EndpointSpec::conflict_key`) of the stored endpoints,
/// with their ids; built from the table by the first write that needs it,
/// and again after a failed write (which may or may not have committed).
#[derive(Default)]
struct KeyIndex(Option<HashMap<String, u64>>);

impl KeyIndex {
    fn get(
        &mut self,
        table: &impl ReadableTable<u64, &'static str>,
    ) -> Result<&mut HashMap<String, u64>, Failure> {
        if self.0.is_none() {
            let mut keys = HashMap::new();
            for entry in table.iter()? {
                let (id, value) = entry?;
                let id = id.value();
                keys.insert(decode(id, value.value())?.conflict_key(), id);
            }
            self.0 = Some(keys);
        }
        Ok(self.0.get_or_insert_with(HashMap::new))
    }
}

/// Why an operation failed: the store's answer, or the database's error.
enum Failure {
    Store(StoreError),
    Db(redb::Error),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Self {
                Failure::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError
);

impl EmbeddedStore {
    /// Opens the database file, creating it (and its directory) if missing.
    pub fn open(path: &Path) -> anyhow::Result<EmbeddedStore> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                anyhow::anyhow!(
                    "cannot create the directory {} of the data file: {e}",
                    dir.display()
                )
            })?;
        }
        let db = open_database(path).map_err(|e| anyhow::anyhow!(e))?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                db: Mutex::new(Some(Arc::new(db))),
                keys: Mutex::default(),
            }),
        })
    }

    /// Runs `op` on a blocking thread with the database.
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database, &mut KeyIndex) -> Result<T, Failure> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.run(op))
            .await
            .map_err(|e| StoreError::Unavailable(format!("the store's worker failed: {e}")))?
    }
}

/// Opens (or creates) the file and its tables; every error is a sentence
/// that names the file.
fn open_database(path: &Path) -> Result<Database, String> {
    let file = path.display();
    let db = Database::builder()
        // A file damaged outside redb is reported, not trusted (redb may
        // panic on one it trusts). The file is small: the check is cheap.
        .set_check_integrity_on_open(true)
        .create(path)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen
            | redb::DatabaseError::LockProtocolMismatch => {
                format!(
                    "the data file {file} is locked by another process: another echo-gateway \
                     is probably using it (stop it, or give this one another file with --data)"
                )
            }
            redb::DatabaseError::Storage(redb::StorageError::Io(io))
                if io.kind() != std::io::ErrorKind::InvalidData =>
            {
                format!("cannot open the data file {file}: {io}")
            }
            other => format!(
                "cannot open the data file {file}: {other} (the file is damaged or is not \
                 an echo-gateway data file: move it away to start with an empty store)"
            ),
        })?;
    // Create both tables, so that readers find them.
    let created = (|| -> Result<(), Failure> {
        let tx = db.begin_write()?;
        tx.open_table(ENDPOINTS)?;
        tx.open_table(META)?;
        tx.commit()?;
        Ok(())
    })();
    match created {
        Ok(()) => Ok(db),
        Err(Failure::Db(e)) => Err(format!("cannot open the data file {file}: {e}")),
        Err(Failure::Store(e)) => Err(format!("cannot open the data file {file}: {e}")),
    }
}

impl Inner {
    fn slot(&self) -> MutexGuard<'_, Option<Arc<Database>>> {
        // The slot holds one pointer: a panic cannot leave it half-written.
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The open database, opened again after an I/O error.
    fn database(&self) -> Result<Arc<Database>, StoreError> {
        let mut slot = self.slot();
        if let Some(db) = slot.as_ref() {
            return Ok(db.clone());
        }
        let db = Arc::new(
            open_database(&self.path)
                .map_err(|e| StoreError::Unavailable(format!("after a failed write, {e}")))?,
        );
        tracing::info!(file = %self.path.display(), "data file opened again after a failed write");
        *slot = Some(db.clone());
        Ok(db)
    }

    fn run<T>(
        &self,
        op: impl FnOnce(&Database, &mut KeyIndex) -> Result<T, Failure>,
    ) -> Result<T, StoreError> {
        // The index is a cache of the table: rebuilt if a panic left it.
        let mut keys = self.keys.lock().unwrap_or_else(|poisoned| {
            let mut keys = poisoned.into_inner();
            keys.0 = None;
            keys
        });
        let db = self.database()?;
        match op(&db, &mut keys) {
            Ok(v) => Ok(v),
            Err(Failure::Store(e)) => Err(e),
            Err(Failure::Db(e)) => {
                keys.0 = None;
                if matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo) {
                    // Close this handle once the last user drops it; the next
                    // operation opens the file again (and redb repairs it).
                    let mut slot = self.slot();
                    if slot.as_ref().is_some_and(|d| Arc::ptr_eq(d, &db)) {
                        *slot = None;
                    }
                }
                Err(self.describe(e))
            }
        }
    }

    fn describe(&self, e: redb::Error) -> StoreError {
        let file = self.path.display();
        match e {
            redb::Error::Corrupted(m) => StoreError::Corrupt(format!("{file}: {m}")),
            redb::Error::Io(io) => {
                use std::io::ErrorKind as K;
                let hint = match io.kind() {
                    K::StorageFull | K::QuotaExceeded | K::FileTooLarge => {
                        " (the disk is full: free some space; nothing already stored is lost)"
                    }
                    _ => "",
                };
                StoreError::Unavailable(format!("I/O error on the data file {file}: {io}{hint}"))
            }
            redb::Error::PreviousIo => StoreError::Unavailable(format!(
                "an earlier write to the data file {file} failed; it is being opened again"
            )),
            other => StoreError::Unavailable(format!("data file {file}: {other}")),
        }
    }
}

/// The stored document of an endpoint.
fn encode(spec: &EndpointSpec) -> String {
    serde_json::json!({"version": FORMAT, "endpoint": spec.attributes_json()}).to_string()
}

fn decode(id: u64, text: &str) -> Result<EndpointSpec, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt(format!("endpoint {id}: {why}"));
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    match doc.get("version").and_then(serde_json::Value::as_u64) {
        Some(FORMAT) => {}
        Some(v) => {
            return Err(corrupt(format!(
                "written in format {v}, which this version cannot read (it reads format {FORMAT})"
            )))
        }
        None => return Err(corrupt("no format version".into())),
    }
    let attrs = doc
        .get("endpoint")
        .ok_or_else(|| corrupt("no endpoint in the document".into()))?;
    // The upstream named by a stored proxy need not be configured any more:
    // the router skips such an endpoint, with a warning.
    let upstreams: HashSet<String> = attrs
        .pointer("/response/proxy")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .into_iter()
        .collect();
    let ctx = SchemaContext {
        reserve_admin_path: false,
        upstreams: &upstreams,
        files: None,
    };
    let mut diags = Diags::lenient();
    decode_full(&Node::from_json(attrs), &ctx, &mut diags, &[]).ok_or_else(|| {
        let why: Vec<String> = diags.list.iter().map(ToString::to_string).collect();
        corrupt(why.join("; "))
    })
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn load(&self) -> Result<Vec<RuntimeEndpoint>, StoreError> {
        self.run(|db, _| {
            let tx = db.begin_read()?;
            let table = tx.open_table(ENDPOINTS)?;
            let mut out = Vec::new();
            for entry in table.iter()? {
                let (id, value) = entry?;
                let id = id.value();
                out.push(RuntimeEndpoint {
                    id,
                    spec: decode(id, value.value())?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn reserve_id(&self) -> Result<u64, StoreError> {
        self.run(|db, _| {
            let tx = db.begin_write()?;
            let id = {
                let mut meta = tx.open_table(META)?;
                let last = meta.get(LAST_ID)?.map_or(0, |v| v.value());
                let id = last.checked_add(1).ok_or_else(|| {
                    StoreError::Unavailable("every endpoint id has been handed out".into())
                })?;
                meta.insert(LAST_ID, id)?;
                id
            };
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    async fn create(&self, e: &RuntimeEndpoint) -> Result<(), StoreError> {
        let (id, spec) = (e.id, e.spec.clone());
        self.run(move |db, index| {
            let key = spec.conflict_key();
            let tx = db.begin_write()?;
            {
                let mut table = tx.open_table(ENDPOINTS)?;
                if let Some(&other) = index.get(&table)?.get(&key) {
                    return Err(StoreError::Conflict(other).into());
                }
                table.insert(id, encode(&spec).as_str())?;
                // An id not handed out by `reserve_id` is never handed out later.
                let mut meta = tx.open_table(META)?;
                let last = meta.get(LAST_ID)?.map_or(0, |v| v.value());
                if id > last {
                    meta.insert(LAST_ID, id)?;
                }
            }
            tx.commit()?;
            if let Some(keys) = &mut index.0 {
                keys.insert(key, id);
            }
            Ok(())
        })
        .await
    }

    async fn update(&self, e: &RuntimeEndpoint) -> Result<(), StoreError> {
        let (id, spec) = (e.id, e.spec.clone());
        self.run(move |db, index| {
            let key = spec.conflict_key();
            let tx = db.begin_write()?;
            {
                let mut table = tx.open_table(ENDPOINTS)?;
                if table.get(id)?.is_none() {
                    return Err(StoreError::NotFound(id).into());
                }
                if let Some(&other) = index.get(&table)?.get(&key).filter(|&&o| o != id) {
                    return Err(StoreError::Conflict(other).into());
                }
                table.insert(id, encode(&spec).as_str())?;
            }
            tx.commit()?;
            if let Some(keys) = &mut index.0 {
                keys.retain(|_, o| *o != id);
                keys.insert(key, id);
            }
            Ok(())
        })
        .await
    }

    async fn delete(&self, id: u64) -> Result<(), StoreError> {
        self.run(move |db, index| {
            let tx = db.begin_write()?;
            let key = {
                let mut table = tx.open_table(ENDPOINTS)?;
                let Some(old) = table.remove(id)? else {
                    return Err(StoreError::NotFound(id).into());
                };
                // An undecodable record can be deleted; the index is then
                // built again.
                decode(id, old.value()).ok().map(|s| s.conflict_key())
            };
            tx.commit()?;
            match (key, &mut index.0) {
                (Some(key), Some(keys)) => {
                    keys.remove(&key);
                }
                (None, _) => index.0 = None,
                (Some(_), None) => {}
            }
            Ok(())
        })
        .await
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PathSpec, ResponseSpec, Verb};

    fn spec(verb: Verb, path: &str, body: &str) -> EndpointSpec {
        let path = if path.contains('{') {
            PathSpec::Template(path.to_string())
        } else {
            PathSpec::Exact(path.to_string())
        };
        EndpointSpec {
            verb,
            path,
            priority: None,
            conditions: None,
            response: ResponseSpec {
                code: 200,
                headers: vec![("Content-Type".into(), "text/plain".into())],
                body: body.to_string(),
                proxy: None,
                ..ResponseSpec::default()
            },
        }
    }

    async fn add(store: &EmbeddedStore, s: EndpointSpec) -> Result<u64, StoreError> {
        let id = store.reserve_id().await?;
        store.create(&RuntimeEndpoint { id, spec: s }).await?;
        Ok(id)
    }

    #[tokio::test]
    async fn ids_are_never_reused_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/dir/store.redb");
        let (a, unused) = {
            let store = EmbeddedStore::open(&path).unwrap();
            let a = add(&store, spec(Verb::Get, "/a", "a")).await.unwrap();
            // Reserved, never used: still never handed out again.
            let unused = store.reserve_id().await.unwrap();
            (a, unused)
        };
        assert!(unused > a);
        let store = EmbeddedStore::open(&path).unwrap();
        let b = store.reserve_id().await.unwrap();
        assert!(b > unused, "{b} after {unused}");
        store.delete(a).await.unwrap();
        drop(store);
        let store = EmbeddedStore::open(&path).unwrap();
        let c = store.reserve_id().await.unwrap();
        assert!(c > b, "{c} after {b}");
    }

    #[tokio::test]
    async fn conflicts_on_create_and_update() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
        let a = add(&store, spec(Verb::Get, "/users/{id}", "a"))
            .await
            .unwrap();
        let b = add(&store, spec(Verb::Get, "/b", "b")).await.unwrap();
        // Same verb, a template that differs only in the parameter name.
        match add(&store, spec(Verb::Get, "/users/{name}", "x")).await {
            Err(StoreError::Conflict(id)) => assert_eq!(id, a),
            other => panic!("expected a conflict, got {other:?}"),
        }
        // Another verb on the same path is no conflict.
        add(&store, spec(Verb::Post, "/users/{id}", "p"))
            .await
            .unwrap();
        // Updating b onto a's route conflicts; updating a onto itself does not.
        let onto_a = RuntimeEndpoint {
            id: b,
            spec: spec(Verb::Get, "/users/{x}", "b2"),
        };
        match store.update(&onto_a).await {
            Err(StoreError::Conflict(id)) => assert_eq!(id, a),
            other => panic!("expected a conflict, got {other:?}"),
        }
        let a2 = RuntimeEndpoint {
            id: a,
            spec: spec(Verb::Get, "/users/{id}", "a2"),
        };
        store.update(&a2).await.unwrap();
        let missing = RuntimeEndpoint {
            id: 999,
            spec: spec(Verb::Get, "/nowhere", ""),
        };
        assert!(matches!(
            store.update(&missing).await,
            Err(StoreError::NotFound(999))
        ));
        assert!(matches!(
            store.delete(999).await,
            Err(StoreError::NotFound(999))
        ));
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded[0], a2);
        assert_eq!(
            loaded[1].spec.response.body, "b",
            "a refused update changes nothing"
        );
    }

    #[tokio::test]
    async fn conflict_keys_hold_across_reopen_delete_and_update() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let (a, b) = {
            let store = EmbeddedStore::open(&path).unwrap();
            let a = add(&store, spec(Verb::Get, "/a", "a")).await.unwrap();
            let b = add(&store, spec(Verb::Get, "/b/{id}", "b")).await.unwrap();
            (a, b)
        };
        // A new process knows the stored keys before any write of its own.
        let store = EmbeddedStore::open(&path).unwrap();
        assert!(matches!(
            add(&store, spec(Verb::Get, "/a", "x")).await,
            Err(StoreError::Conflict(id)) if id == a
        ));
        assert!(matches!(
            add(&store, spec(Verb::Get, "/b/{other}", "x")).await,
            Err(StoreError::Conflict(id)) if id == b
        ));
        // A deleted endpoint's key is free; an updated one's old key too.
        store.delete(a).await.unwrap();
        let a2 = add(&store, spec(Verb::Get, "/a", "again")).await.unwrap();
        let moved = RuntimeEndpoint {
            id: b,
            spec: spec(Verb::Get, "/c", "moved"),
        };
        store.update(&moved).await.unwrap();
        add(&store, spec(Verb::Get, "/b/{id}", "free"))
            .await
            .unwrap();
        assert!(matches!(
            add(&store, spec(Verb::Get, "/c", "x")).await,
            Err(StoreError::Conflict(id)) if id == b
        ));
        assert!(matches!(
            add(&store, spec(Verb::Get, "/a", "x")).await,
            Err(StoreError::Conflict(id)) if id == a2
        ));
    }

    #[tokio::test]
    async fn load_in_creation_order_and_reopened_has_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let mut expected = Vec::new();
        {
            let store = EmbeddedStore::open(&path).unwrap();
            for i in 0..20 {
                let mut s = spec(Verb::Get, &format!("/e{i}"), &format!("body {i}"));
                if i % 3 == 0 {
                    s.priority = Some(i);
                    s.path = PathSpec::Regex(format!("^/r{i}/.*$"));
                }
                if i == 4 {
                    s.response.proxy = Some("backend".into());
                }
                let id = add(&store, s.clone()).await.unwrap();
                expected.push(RuntimeEndpoint { id, spec: s });
            }
            let gone = expected.remove(5);
            store.delete(gone.id).await.unwrap();
            expected[7].spec.response.body = "updated".into();
            store.update(&expected[7]).await.unwrap();
            assert_eq!(store.load().await.unwrap(), expected);
        }
        let store = EmbeddedStore::open(&path).unwrap();
        let loaded = store.load().await.unwrap();
        assert_eq!(loaded, expected);
        assert!(loaded.windows(2).all(|w| w[0].id < w[1].id));
    }

    #[tokio::test]
    async fn second_open_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let _first = EmbeddedStore::open(&path).unwrap();
        let err = EmbeddedStore::open(&path)
            .err()
            .expect("locked")
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("another echo-gateway"), "{err}");
    }

    #[tokio::test]
    async fn garbage_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        std::fs::write(&path, vec![0x5a; 10_000]).unwrap();
        let err = EmbeddedStore::open(&path)
            .err()
            .expect("garbage")
            .to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    #[tokio::test]
    async fn undecodable_record_is_corrupt_naming_the_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(ENDPOINTS)
                .unwrap()
                .insert(7, r#"{"version":1,"endpoint":{"verb":"GET"}}"#)
                .unwrap();
            tx.commit().unwrap();
        }
        let store = EmbeddedStore::open(&path).unwrap();
        match store.load().await {
            Err(StoreError::Corrupt(m)) => assert!(m.contains("endpoint 7"), "{m}"),
            other => panic!("expected corrupt, got {other:?}"),
        }
    }
}
