//! The redis store: endpoints and one revision counter in Redis, shared by
//! every replica.
//!
//! Keys, all under the configured prefix `P`:
//!
//! * `P:endpoints` hash id → the endpoint's attributes as JSON (the admin
//!   API's `attributes`, `EndpointSpec::attributes_json`);
//! * `P:routes` hash route key → id, the verb+route conflict check (the route
//!   key is `VERB exact|template|regex PATH`, from `PathSpec::route_key`);
//! * `P:route_of` hash id → route key, to free a route on update and delete;
//! * `P:revision` bumped by every change;
//! * `P:next_id` the counter behind `reserve_id`;
//! * `P:epoch` a random value set once (`SET NX`) by the first replica that
//!   finds it missing: a flushed or replaced Redis has another one;
//! * channel `P:changes`: `EPOCH REVISION put ID JSON` or `EPOCH REVISION del ID`.
//!
//! Each change is one Lua script: it checks the conflict, writes, increments
//! the revision and publishes the change, so two replicas that create the
//! same verb+route at once get one success and one conflict.
//!
//! Each replica keeps a mirror (epoch, revision, endpoints) and publishes the
//! whole runtime layer on a watch channel each time the mirror changes. A
//! change heard on the channel (or returned by a local write) is applied when
//! its revision is the next one; a gap, an unknown epoch or a reconnect asks
//! for a resync. A periodic check reads epoch and revision and resyncs fully
//! (one script reads the epoch, the revision and every endpoint atomically)
//! when the epoch changed or Redis's revision is lower (take Redis's state
//! whatever it is), after a reconnect (take it unless the mirror is newer),
//! or when Redis's revision is higher (take it if newer).
//!
//! While Redis is down every command fails within about a second with
//! `StoreError::Unavailable`, nothing is published (the gateway keeps serving
//! its last router), and the periodic check reconnects and resyncs when Redis
//! is back. At startup the store waits up to five seconds for Redis and then
//! refuses to start: a replica must not serve an empty runtime layer that the
//! others do not have.

use std::collections::{BTreeMap, HashSet};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, RedisError, Script};
use tokio::sync::{mpsc, watch, Notify};

use super::{Store, StoreError};
use crate::config::doc::{Diags, Node};
use crate::config::endpoint::{decode_full, SchemaContext};
use crate::config::EndpointSpec;
use crate::router::RuntimeEndpoint;

/// Each attempt to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Each command on an open connection.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(1);
/// A whole call, reconnect included: an admin write answers 503 within it.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Reading the whole runtime layer (on a connection of its own): at 100k
/// endpoints it is tens of megabytes.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a starting gateway waits for Redis.
const START_DEADLINE: Duration = Duration::from_secs(5);

/// KEYS: epoch, revision. ARGV: epoch candidate. → {epoch, revision}
const HEAD_LUA: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]) or '0'}
";

/// KEYS: epoch, revision, endpoints. ARGV: epoch candidate.
/// → {epoch, revision, id, json, id, json, ...}
const LOAD_LUA: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local out = {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2]) or '0'}
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all do out[i + 2] = all[i] end
return out
";

/// KEYS: next_id. ARGV: the highest id this replica has seen. → a new id,
/// above that one even when Redis lost its counter.
const RESERVE_LUA: &str = r"
local n = redis.call('INCR', KEYS[1])
if n <= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
  n = redis.call('INCR', KEYS[1])
end
return n
";

/// KEYS of the change scripts: epoch, revision, endpoints, routes, route_of.
/// ARGV: epoch candidate, channel, id, then route key and JSON (create,
/// update). → {'ok', epoch, revision} | {'conflict', id} | {'notfound', id}
/// | {'exists', id}. A route held by an id that has no endpoint (left by a
/// hand edit) counts as free.
const CREATE_LUA: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local epoch = redis.call('GET', KEYS[1])
local holder = redis.call('HGET', KEYS[4], ARGV[4])
if holder and redis.call('HEXISTS', KEYS[3], holder) == 1 then
  return {'conflict', holder}
end
if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 1 then
  return {'exists', ARGV[3]}
end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[5])
redis.call('HSET', KEYS[4], ARGV[4], ARGV[3])
redis.call('HSET', KEYS[5], ARGV[3], ARGV[4])
local rev = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], epoch .. ' ' .. rev .. ' put ' .. ARGV[3] .. ' ' .. ARGV[5])
return {'ok', epoch, tostring(rev)}
";

const UPDATE_LUA: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local epoch = redis.call('GET', KEYS[1])
if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 0 then
  return {'notfound', ARGV[3]}
end
local holder = redis.call('HGET', KEYS[4], ARGV[4])
if holder and holder ~= ARGV[3] and redis.call('HEXISTS', KEYS[3], holder) == 1 then
  return {'conflict', holder}
end
local old = redis.call('HGET', KEYS[5], ARGV[3])
if old and old ~= ARGV[4] and redis.call('HGET', KEYS[4], old) == ARGV[3] then
  redis.call('HDEL', KEYS[4], old)
end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[5])
redis.call('HSET', KEYS[4], ARGV[4], ARGV[3])
redis.call('HSET', KEYS[5], ARGV[3], ARGV[4])
local rev = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], epoch .. ' ' .. rev .. ' put ' .. ARGV[3] .. ' ' .. ARGV[5])
return {'ok', epoch, tostring(rev)}
";

const DELETE_LUA: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local epoch = redis.call('GET', KEYS[1])
if redis.call('HEXISTS', KEYS[3], ARGV[3]) == 0 then
  return {'notfound', ARGV[3]}
end
local old = redis.call('HGET', KEYS[5], ARGV[3])
if old and redis.call('HGET', KEYS[4], old) == ARGV[3] then
  redis.call('HDEL', KEYS[4], old)
end
redis.call('HDEL', KEYS[5], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[3])
local rev = redis.call('INCR', KEYS[2])
redis.call('PUBLISH', ARGV[2], epoch .. ' ' .. rev .. ' del ' .. ARGV[3])
return {'ok', epoch, tostring(rev)}
";

struct Keys {
    epoch: String,
    revision: String,
    endpoints: String,
    routes: String,
    route_of: String,
    next_id: String,
    channel: String,
}

impl Keys {
    fn new(prefix: &str) -> Keys {
        Keys {
            epoch: format!("{prefix}:epoch"),
            revision: format!("{prefix}:revision"),
            endpoints: format!("{prefix}:endpoints"),
            routes: format!("{prefix}:routes"),
            route_of: format!("{prefix}:route_of"),
            next_id: format!("{prefix}:next_id"),
            channel: format!("{prefix}:changes"),
        }
    }
}

struct Scripts {
    reserve: Script,
    head: Script,
    load: Script,
    create: Script,
    update: Script,
    delete: Script,
}

/// This replica's copy of the runtime layer, at `revision` of `epoch`.
#[derive(Default)]
struct Mirror {
    epoch: String,
    revision: u64,
    endpoints: BTreeMap<u64, EndpointSpec>,
}

/// What a resync does with the state it reads, from the least to the most.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Resync {
    Nothing = 0,
    /// Take it if its revision is higher than the mirror's (a gap).
    Newer = 1,
    /// Take it unless the mirror is newer (after a reconnect).
    AtLeast = 2,
    /// Take it whatever it is (a new epoch, a lower revision).
    Any = 3,
}

impl Resync {
    fn from_u8(v: u8) -> Resync {
        match v {
            0 => Resync::Nothing,
            1 => Resync::Newer,
            2 => Resync::AtLeast,
            _ => Resync::Any,
        }
    }
}

/// One change, as a script returns it or the channel carries it.
// Short-lived, on the stack: boxing would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
enum Change {
    /// `None`: a record this version cannot read (skipped, as a resync would).
    Put(u64, Option<EndpointSpec>),
    Delete(u64),
}

struct Snapshot {
    epoch: String,
    revision: u64,
    endpoints: BTreeMap<u64, EndpointSpec>,
}

struct Inner {
    /// For the snapshot's connection of its own.
    client: redis::Client,
    conn: ConnectionManager,
    keys: Keys,
    scripts: Scripts,
    /// `host:port` of Redis, for logs (the URL may hold a password).
    addr: String,
    mirror: Mutex<Mirror>,
    tx: watch::Sender<Arc<Vec<RuntimeEndpoint>>>,
    healthy: AtomicBool,
    subscribed: AtomicBool,
    revision: AtomicU64,
    /// The highest id ever in the mirror: `reserve_id` never hands out one below.
    max_id: AtomicU64,
    /// The strongest resync asked for since the last check (`Resync as u8`).
    wanted: AtomicU8,
    /// Wakes the sync task before its next periodic check.
    wake: Arc<Notify>,
}

pub struct RedisStore {
    inner: Arc<Inner>,
}

impl RedisStore {
    /// Connects, reads the runtime layer and starts the subscriber and the
    /// periodic check (as tasks of the current tokio runtime). Fails when
    /// Redis cannot be reached within a few seconds.
    pub async fn connect(url: &str, prefix: &str, check: Duration) -> anyhow::Result<RedisStore> {
        let info = url
            .into_connection_info()
            .map_err(|e| anyhow::anyhow!("the redis store's URL cannot be used: {e}"))?;
        let addr = info.addr().to_string();
        // RESP3: commands and the subscription share one connection that
        // reconnects and resubscribes by itself.
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))
            .map_err(|e| anyhow::anyhow!("the redis store at {addr} cannot be used: {e}"))?;
        let (push_tx, push_rx) = mpsc::unbounded_channel::<PushInfo>();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(100))
            .set_max_delay(Duration::from_millis(500))
            .set_push_sender(push_tx)
            .set_automatic_resubscription();
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)
            .map_err(|e| anyhow::anyhow!("the redis store at {addr} cannot be used: {e}"))?;
        let (tx, _) = watch::channel(Arc::new(Vec::new()));
        let inner = Arc::new(Inner {
            client,
            conn,
            keys: Keys::new(prefix),
            scripts: Scripts {
                reserve: Script::new(RESERVE_LUA),
                head: Script::new(HEAD_LUA),
                load: Script::new(LOAD_LUA),
                create: Script::new(CREATE_LUA),
                update: Script::new(UPDATE_LUA),
                delete: Script::new(DELETE_LUA),
            },
            addr,
            mirror: Mutex::new(Mirror::default()),
            tx,
            healthy: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            revision: AtomicU64::new(0),
            max_id: AtomicU64::new(0),
            wanted: AtomicU8::new(0),
            wake: Arc::new(Notify::new()),
        });

        let deadline = Instant::now() + START_DEADLINE;
        let snapshot = loop {
            match inner.snapshot().await {
                Ok(s) => break s,
                Err(StoreError::Unavailable(why)) if Instant::now() < deadline => {
                    tracing::debug!(redis = %inner.addr, error = %why, "waiting for redis");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => anyhow::bail!(
                    "the redis store at {} cannot be read: {e}; the gateway does not start \
                     without the shared runtime layer (start Redis or fix store.url, then retry)",
                    inner.addr
                ),
            }
        };
        inner.healthy.store(true, Ordering::SeqCst);
        tracing::info!(
            redis = %inner.addr,
            prefix,
            revision = snapshot.revision,
            endpoints = snapshot.endpoints.len(),
            "redis store connected"
        );
        inner.take(snapshot);

        tokio::spawn(push_loop(Arc::downgrade(&inner), push_rx));
        tokio::spawn(sync_loop(Arc::downgrade(&inner), inner.wake.clone(), check));
        // Changes made between the read above and the subscription are
        // caught by the revision check that each subscription asks for.
        inner.subscribe().await;
        Ok(RedisStore { inner })
    }
}

impl Inner {
    fn mirror(&self) -> MutexGuard<'_, Mirror> {
        // Nothing panics while the lock is held; a poisoned lock is still whole.
        self.mirror.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn want(&self, r: Resync) {
        self.wanted.fetch_max(r as u8, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Runs one Redis call within `CALL_TIMEOUT`; a failure is `Unavailable`.
    async fn call<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        self.call_within(CALL_TIMEOUT, fut).await
    }

    async fn call_within<T>(
        &self,
        limit: Duration,
        fut: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_unrecoverable_error()
                {
                    self.lost(&e.to_string());
                }
                Err(StoreError::Unavailable(format!(
                    "redis at {}: {e}",
                    self.addr
                )))
            }
            Err(_) => {
                self.lost("no answer in time");
                Err(StoreError::Unavailable(format!(
                    "redis at {} did not answer within {} s",
                    self.addr,
                    limit.as_secs()
                )))
            }
        }
    }

    fn lost(&self, why: &str) {
        if self.healthy.swap(false, Ordering::SeqCst) {
            tracing::warn!(
                redis = %self.addr,
                error = %why,
                "redis store connection lost; serving the last runtime layer until it is back"
            );
        }
    }

    /// The epoch and revision in Redis.
    async fn head(&self) -> Result<(String, u64), StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = self.scripts.head.key(&self.keys.epoch);
        inv.key(&self.keys.revision).arg(random_epoch());
        let v: Vec<String> = self.call(inv.invoke_async(&mut conn)).await?;
        match v.as_slice() {
            [epoch, rev] => Ok((epoch.clone(), parse_revision(rev)?)),
            _ => Err(StoreError::Corrupt(
                "unexpected answer to the head script".into(),
            )),
        }
    }

    /// Epoch, revision and every endpoint, read atomically, on a connection
    /// of its own that may take longer to answer than the shared one.
    async fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut inv = self.scripts.load.key(&self.keys.epoch);
        inv.key(&self.keys.revision)
            .key(&self.keys.endpoints)
            .arg(random_epoch());
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(SNAPSHOT_TIMEOUT));
        let v: Vec<String> = self
            .call_within(SNAPSHOT_TIMEOUT + CONNECT_TIMEOUT, async {
                let mut conn = self
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                inv.invoke_async(&mut conn).await
            })
            .await?;
        let [epoch, rev, records @ ..] = v.as_slice() else {
            return Err(StoreError::Corrupt(
                "unexpected answer to the load script".into(),
            ));
        };
        let mut endpoints = BTreeMap::new();
        for pair in records.chunks(2) {
            let [id, json] = pair else { continue };
            let Ok(num) = id.parse::<u64>() else {
                tracing::warn!(id = %id, "skipping a stored endpoint whose id is not a number");
                continue;
            };
            if let Some(spec) = decode(num, json) {
                endpoints.insert(num, spec);
            }
        }
        Ok(Snapshot {
            epoch: epoch.clone(),
            revision: parse_revision(rev)?,
            endpoints,
        })
    }

    /// Replaces the mirror by `s` and publishes it.
    fn take(&self, s: Snapshot) {
        let mut m = self.mirror();
        let changed = m.endpoints != s.endpoints;
        m.epoch = s.epoch;
        m.revision = s.revision;
        m.endpoints = s.endpoints;
        self.revision.store(m.revision, Ordering::SeqCst);
        if let Some(last) = m.endpoints.keys().next_back() {
            self.max_id.fetch_max(*last, Ordering::SeqCst);
        }
        if changed {
            self.publish(&m);
        }
    }

    fn publish(&self, m: &Mirror) {
        let layer: Vec<RuntimeEndpoint> = m
            .endpoints
            .iter()
            .map(|(id, spec)| RuntimeEndpoint {
                id: *id,
                spec: spec.clone(),
            })
            .collect();
        self.tx.send_replace(Arc::new(layer));
    }

    /// Applies a change at `revision` of `epoch`, if it is the next one.
    fn apply(&self, epoch: &str, revision: u64, change: Change) {
        let mut m = self.mirror();
        if m.epoch != epoch {
            drop(m);
            self.want(Resync::Any);
            return;
        }
        if revision <= m.revision {
            return;
        }
        if revision != m.revision + 1 {
            drop(m);
            self.want(Resync::Newer);
            return;
        }
        match change {
            Change::Put(id, Some(spec)) => {
                self.max_id.fetch_max(id, Ordering::SeqCst);
                m.endpoints.insert(id, spec);
            }
            Change::Put(id, None) | Change::Delete(id) => {
                m.endpoints.remove(&id);
            }
        }
        m.revision = revision;
        self.revision.store(revision, Ordering::SeqCst);
        self.publish(&m);
    }

    fn on_push(&self, push: PushInfo) {
        match push.kind {
            PushKind::Message => {
                let payload = push
                    .data
                    .get(1)
                    .and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
                match payload.as_deref().and_then(parse_message) {
                    Some((epoch, rev, change)) => self.apply(epoch, rev, change),
                    None => {
                        tracing::warn!("unreadable message on the redis changes channel");
                        self.want(Resync::Newer);
                    }
                }
            }
            PushKind::Subscribe => {
                // A (re)subscription: messages may have been missed before
                // it. After a reconnect the check that finds Redis back
                // resyncs in any case; this one compares the revisions.
                self.subscribed.store(true, Ordering::SeqCst);
                self.want(Resync::Newer);
            }
            PushKind::Disconnection => {
                self.subscribed.store(false, Ordering::SeqCst);
                self.lost("connection closed");
                self.wake.notify_one();
            }
            _ => {}
        }
    }

    async fn subscribe(&self) {
        let mut conn = self.conn.clone();
        match self.call(conn.subscribe(&self.keys.channel)).await {
            Ok(()) => self.subscribed.store(true, Ordering::SeqCst),
            Err(e) => tracing::debug!(error = %e, "redis subscription failed; retrying"),
        }
    }

    /// The periodic check: compares epoch and revision and resyncs as needed.
    async fn check(&self) {
        let mut wanted = Resync::from_u8(self.wanted.swap(0, Ordering::SeqCst));
        let Ok((epoch, revision)) = self.head().await else {
            self.wanted.fetch_max(wanted as u8, Ordering::SeqCst);
            return;
        };
        if !self.healthy.swap(true, Ordering::SeqCst) {
            tracing::info!(redis = %self.addr, "redis store reachable again; resyncing");
            wanted = wanted.max(Resync::AtLeast);
        }
        if !self.subscribed.load(Ordering::SeqCst) {
            self.subscribe().await;
        }
        let (same_epoch, local) = {
            let m = self.mirror();
            (m.epoch == epoch, m.revision)
        };
        let mode = if !same_epoch || revision < local {
            Resync::Any
        } else if wanted >= Resync::AtLeast {
            Resync::AtLeast
        } else if revision > local {
            Resync::Newer
        } else {
            Resync::Nothing
        };
        if mode != Resync::Nothing {
            self.resync(mode).await;
        }
    }

    async fn resync(&self, mode: Resync) {
        let s = match self.snapshot().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "redis resync failed; retrying");
                self.wanted.fetch_max(mode as u8, Ordering::SeqCst);
                return;
            }
        };
        let (epoch, local) = {
            let m = self.mirror();
            (m.epoch.clone(), m.revision)
        };
        let take = s.epoch != epoch
            || match mode {
                Resync::Any => true,
                Resync::AtLeast => s.revision >= local,
                Resync::Newer => s.revision > local,
                Resync::Nothing => false,
            };
        if !take {
            return;
        }
        if s.epoch != epoch {
            tracing::warn!(
                redis = %self.addr,
                endpoints = s.endpoints.len(),
                "the redis store was flushed or replaced (new epoch); serving its runtime layer"
            );
        } else if s.revision < local {
            tracing::warn!(
                redis = %self.addr,
                redis_revision = s.revision,
                local_revision = local,
                "the redis store went back to an older revision; serving its runtime layer"
            );
        }
        self.take(s);
    }

    /// Runs a change script; on success applies the change to the mirror.
    async fn change(
        &self,
        script: &Script,
        id: u64,
        write: Option<&EndpointSpec>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut inv = script.key(&self.keys.epoch);
        inv.key(&self.keys.revision)
            .key(&self.keys.endpoints)
            .key(&self.keys.routes)
            .key(&self.keys.route_of)
            .arg(random_epoch())
            .arg(&self.keys.channel)
            .arg(id);
        if let Some(spec) = write {
            let json = serde_json::Value::Object(spec.attributes_json()).to_string();
            inv.arg(route_key(spec)).arg(json);
        }
        let v: Vec<String> = self.call(inv.invoke_async(&mut conn)).await?;
        match v.as_slice() {
            [status, epoch, rev] if status == "ok" => {
                let change = match write {
                    Some(spec) => Change::Put(id, Some(spec.clone())),
                    None => Change::Delete(id),
                };
                self.apply(epoch, parse_revision(rev)?, change);
                Ok(())
            }
            [status, other] if status == "conflict" => match other.parse::<u64>() {
                Ok(holder) => Err(StoreError::Conflict(holder)),
                Err(_) => Err(StoreError::Corrupt(format!(
                    "the route is held by `{other}`, which is not an id"
                ))),
            },
            [status, _] if status == "notfound" => Err(StoreError::NotFound(id)),
            [status, _] if status == "exists" => Err(StoreError::Corrupt(format!(
                "endpoint {id} is already stored although its id was just reserved"
            ))),
            _ => Err(StoreError::Corrupt(
                "unexpected answer to a change script".into(),
            )),
        }
    }
}

/// Applies the changes heard on the channel (and notes reconnects).
async fn push_loop(inner: Weak<Inner>, mut rx: mpsc::UnboundedReceiver<PushInfo>) {
    while let Some(push) = rx.recv().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.on_push(push);
    }
}

/// The periodic check, and the resyncs asked for between two checks.
async fn sync_loop(inner: Weak<Inner>, wake: Arc<Notify>, every: Duration) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = wake.notified() => {}
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.check().await;
    }
}

fn parse_revision(s: &str) -> Result<u64, StoreError> {
    s.parse::<u64>()
        .map_err(|_| StoreError::Corrupt(format!("the revision `{s}` is not a number")))
}

/// `EPOCH REVISION put ID JSON` or `EPOCH REVISION del ID`.
fn parse_message(s: &str) -> Option<(&str, u64, Change)> {
    let mut parts = s.splitn(5, ' ');
    let epoch = parts.next()?;
    let revision = parts.next()?.parse::<u64>().ok()?;
    let op = parts.next()?;
    let id = parts.next()?.parse::<u64>().ok()?;
    let change = match op {
        "put" => Change::Put(id, decode(id, parts.next()?)),
        "del" => Change::Delete(id),
        _ => return None,
    };
    Some((epoch, revision, change))
}

/// The key under which two endpoints conflict (`EndpointSpec::conflict_key`).
fn route_key(spec: &EndpointSpec) -> String {
    spec.conflict_key()
}

/// Reads a stored endpoint; logs and skips one this version cannot read.
fn decode(id: u64, json: &str) -> Option<EndpointSpec> {
    let value: serde_json::Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(endpoint = id, error = %e, "skipping a stored endpoint that is not JSON");
            return None;
        }
    };
    // Whether the upstream exists is the router's question, not the store's.
    let mut upstreams = HashSet::new();
    if let Some(name) = value
        .get("response")
        .and_then(|r| r.get("proxy"))
        .and_then(serde_json::Value::as_str)
    {
        upstreams.insert(name.to_string());
    }
    let ctx = SchemaContext {
        reserve_admin_path: false,
        upstreams: &upstreams,
        files: None,
    };
    let mut diags = Diags::lenient();
    let spec = decode_full(&Node::from_json(&value), &ctx, &mut diags, &[]);
    if spec.is_none() {
        let errors: Vec<String> = diags.list.iter().map(ToString::to_string).collect();
        tracing::warn!(
            endpoint = id,
            errors = %errors.join("; "),
            "skipping a stored endpoint that cannot be read"
        );
    }
    spec
}

/// A value no replica has picked before: a fresh one for every script, so
/// that an epoch set after a flush differs from every earlier one.
fn random_epoch() -> String {
    let state = std::collections::hash_map::RandomState::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let a = state.hash_one((std::process::id(), nanos));
    let b = state.hash_one(a);
    format!("{a:016x}{b:016x}")
}

#[async_trait]
impl Store for RedisStore {
    async fn load(&self) -> Result<Vec<RuntimeEndpoint>, StoreError> {
        let m = self.inner.mirror();
        Ok(m.endpoints
            .iter()
            .map(|(id, spec)| RuntimeEndpoint {
                id: *id,
                spec: spec.clone(),
            })
            .collect())
    }

    async fn reserve_id(&self) -> Result<u64, StoreError> {
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let mut inv = inner.scripts.reserve.key(&inner.keys.next_id);
        inv.arg(inner.max_id.load(Ordering::SeqCst));
        inner.call(inv.invoke_async::<u64>(&mut conn)).await
    }

    async fn create(&self, e: &RuntimeEndpoint) -> Result<(), StoreError> {
        self.inner
            .change(&self.inner.scripts.create, e.id, Some(&e.spec))
            .await
    }

    async fn update(&self, e: &RuntimeEndpoint) -> Result<(), StoreError> {
        self.inner
            .change(&self.inner.scripts.update, e.id, Some(&e.spec))
            .await
    }

    async fn delete(&self, id: u64) -> Result<(), StoreError> {
        self.inner
            .change(&self.inner.scripts.delete, id, None)
            .await
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn changes(&self) -> Option<watch::Receiver<Arc<Vec<RuntimeEndpoint>>>> {
        Some(self.inner.tx.subscribe())
    }

    fn healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::SeqCst)
    }

    fn revision(&self) -> Option<u64> {
        Some(self.inner.revision.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::endpoint::{PathSpec, Verb};
    use crate::config::ResponseSpec;

    fn spec(path: PathSpec) -> EndpointSpec {
        EndpointSpec {
            verb: Verb::Get,
            path,
            priority: Some(3),
            conditions: None,
            response: ResponseSpec {
                code: 201,
                headers: vec![("X-A".into(), "1".into())],
                body: "hi there".into(),
                proxy: None,
                ..ResponseSpec::default()
            },
        }
    }

    #[test]
    fn attributes_round_trip() {
        for p in [
            PathSpec::Exact("/a".into()),
            PathSpec::Template("/users/{id}".into()),
            PathSpec::Regex("^/x/[0-9]+$".into()),
        ] {
            let s = spec(p);
            let json = serde_json::Value::Object(s.attributes_json()).to_string();
            assert_eq!(decode(1, &json), Some(s));
        }
    }

    #[test]
    fn proxy_names_any_upstream() {
        let mut s = spec(PathSpec::Exact("/p".into()));
        s.response.proxy = Some("backend".into());
        let json = serde_json::Value::Object(s.attributes_json()).to_string();
        assert_eq!(decode(1, &json), Some(s));
    }

    #[test]
    fn unreadable_records_are_skipped() {
        assert_eq!(decode(1, "not json"), None);
        assert_eq!(decode(1, "[1, 2]"), None);
        assert_eq!(decode(1, r#"{"verb": "FETCH", "path": "/a"}"#), None);
    }

    #[test]
    fn route_keys_ignore_parameter_names() {
        let a = route_key(&spec(PathSpec::Template("/u/{id}".into())));
        let b = route_key(&spec(PathSpec::Template("/u/{name}".into())));
        assert_eq!(a, b);
        assert_ne!(a, route_key(&spec(PathSpec::Exact("/u/{id}".into()))));
    }

    #[test]
    fn messages_parse() {
        let s = spec(PathSpec::Exact("/a".into()));
        let json = serde_json::Value::Object(s.attributes_json()).to_string();
        let msg = format!("ep 7 put 12 {json}");
        match parse_message(&msg) {
            Some(("ep", 7, Change::Put(12, Some(got)))) => assert_eq!(got, s),
            _ => panic!("put not parsed"),
        }
        assert!(matches!(
            parse_message("ep 8 del 12"),
            Some(("ep", 8, Change::Delete(12)))
        ));
        assert!(parse_message("ep x del 12").is_none());
        assert!(parse_message("ep 8 move 12").is_none());
    }
}
