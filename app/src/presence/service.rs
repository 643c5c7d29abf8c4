//! The presence service: a cheap handle over shared state plus one background task.
//!
//! Every node keeps the leases of its own connections in memory. With Redis configured and
//! reachable, leases are also kept there (with a TTL, refreshed by heartbeats) and Redis decides
//! user-level transitions for all nodes; a sweep settles users whose leases expired, and those of
//! a node that died (its liveness key, renewed every sweep, lapsed after three sweeps). When Redis is unreachable the node falls back to its in-memory leases, logs it, shows
//! it on `/health`, and re-registers its leases in Redis once it is back.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::redis_leases::{LeaseOp, RedisLeases, Transition};
use super::{PresenceState, UserPresence};
use crate::auth::server::AuthUser;
use crate::error::ApiError;
use crate::realtime::broker::Target;
use crate::realtime::hub::{ConnId, Hub};
use crate::realtime::protocol::ServerEvent;
use crate::server::error::ServiceResult;
use crate::server::{AppState, Database, metrics, now_ms};

/// Most users one snapshot may ask for.
pub const MAX_SNAPSHOT_USERS: usize = 500;

#[derive(Debug, Clone)]
pub struct PresenceConfig {
    /// How long a user with no connection left still shows as present (a reload does not flap).
    pub grace: Duration,
    /// How long a Redis lease lives without a heartbeat.
    pub lease_ttl: Duration,
    /// How often expired Redis leases are swept and, while Redis is down, reconnection tried.
    pub sweep_every: Duration,
    /// Redis for leases shared by all nodes; `None` keeps presence in memory.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key, so several deployments (or test runs) can share one Redis.
    pub redis_prefix: String,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(5),
            lease_ttl: Duration::from_secs(75),
            sweep_every: Duration::from_secs(2),
            redis_url: None,
            redis_prefix: "dealnest".into(),
        }
    }
}

/// Where presence is decided right now, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceBackend {
    Memory,
    Redis,
}

struct RedisSide {
    leases: RedisLeases,
    manager: RwLock<Option<ConnectionManager>>,
    up: AtomicBool,
}

struct Inner {
    config: PresenceConfig,
    db: Arc<dyn Database>,
    hub: Hub,
    /// This node's connections: user → connection → away.
    local: Mutex<HashMap<i64, HashMap<ConnId, bool>>>,
    /// Last announced state per user when deciding in memory.
    announced: Mutex<HashMap<i64, PresenceState>>,
    /// Users whose presence changed while Redis (and with it the bus between nodes) was down:
    /// the other nodes did not hear it, so it is said again once Redis is back.
    changed_while_down: Mutex<HashSet<i64>>,
    redis: Option<RedisSide>,
}

#[derive(Clone)]
pub struct PresenceService {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl PresenceService {
    /// Starts the service; with a Redis URL it connects (falling back to memory if it cannot)
    /// and runs the sweep / reconnect task for as long as the service lives.
    pub async fn start(config: PresenceConfig, db: Arc<dyn Database>, hub: Hub) -> Self {
        let prefix = config.redis_prefix.clone();
        let node_id = format!("{:016x}", rand_u64());
        let redis = match config
            .redis_url
            .as_deref()
            .map(|url| RedisLeases::new(url, &prefix, &node_id, node_alive_ttl(&config)))
        {
            None => None,
            Some(Err(error)) => {
                tracing::error!(%error, "presence: invalid REDIS_URL; presence stays in memory");
                None
            }
            Some(Ok(leases)) => {
                let manager = match leases.connect().await {
                    Ok(manager) => {
                        tracing::info!("presence: using Redis");
                        Some(manager)
                    }
                    Err(error) => {
                        tracing::warn!(%error, "presence: Redis unreachable at start; using memory until it is back");
                        metrics::redis_error();
                        None
                    }
                };
                metrics::redis_up(manager.is_some());
                Some(RedisSide {
                    leases,
                    up: AtomicBool::new(manager.is_some()),
                    manager: RwLock::new(manager),
                })
            }
        };
        let has_redis = redis.is_some();
        let service = Self {
            inner: Arc::new(Inner {
                config,
                db,
                hub,
                local: Mutex::default(),
                announced: Mutex::default(),
                changed_while_down: Mutex::default(),
                redis,
            }),
        };
        if has_redis {
            tokio::spawn(redis_upkeep(Arc::downgrade(&service.inner)));
        }
        service
    }

    pub async fn connected(&self, user_id: i64, conn: ConnId) {
        self.change(user_id, conn, LeaseOp::Upsert { away: false })
            .await;
    }

    pub async fn disconnected(&self, user_id: i64, conn: ConnId) {
        self.change(user_id, conn, LeaseOp::Remove).await;
    }

    pub async fn activity(&self, user_id: i64, conn: ConnId, away: bool) {
        self.change(user_id, conn, LeaseOp::Upsert { away }).await;
    }

    /// Refreshes the connection's Redis lease (a no-op in memory, where leases end explicitly).
    pub async fn heartbeat(&self, user_id: i64, conn: ConnId) {
        let away = lock(&self.inner.local)
            .get(&user_id)
            .and_then(|conns| conns.get(&conn).copied());
        if let Some(away) = away
            && let Some(transition) = self
                .redis_apply(user_id, conn, LeaseOp::Upsert { away })
                .await
        {
            self.on_transition(user_id, transition).await;
        }
    }

    /// The current state of each user.
    pub async fn states(&self, user_ids: &[i64]) -> Vec<PresenceState> {
        if let Some((redis, mut manager)) = self.redis_manager() {
            match redis.leases.states(&mut manager, user_ids).await {
                Ok(states) => return states,
                Err(error) => self.redis_failed(&error),
            }
        }
        let announced = lock(&self.inner.announced);
        user_ids
            .iter()
            .map(|id| announced.get(id).copied().unwrap_or(PresenceState::Offline))
            .collect()
    }

    pub fn backend(&self) -> PresenceBackend {
        match &self.inner.redis {
            Some(redis) if redis.up.load(Ordering::Relaxed) => PresenceBackend::Redis,
            _ => PresenceBackend::Memory,
        }
    }

    /// `None` when Redis is not configured, else whether it is reachable.
    pub fn redis_reachable(&self) -> Option<bool> {
        self.inner
            .redis
            .as_ref()
            .map(|redis| redis.up.load(Ordering::Relaxed))
    }

    async fn change(&self, user_id: i64, conn: ConnId, op: LeaseOp) {
        {
            let mut local = lock(&self.inner.local);
            match op {
                LeaseOp::Upsert { away } => {
                    local.entry(user_id).or_default().insert(conn, away);
                }
                LeaseOp::Remove => {
                    if let Some(conns) = local.get_mut(&user_id) {
                        conns.remove(&conn);
                        if conns.is_empty() {
                            local.remove(&user_id);
                        }
                    }
                }
                LeaseOp::Settle => {}
            }
        }
        let transition = match self.redis_apply(user_id, conn, op).await {
            Some(transition) => transition,
            None => {
                let transition = self.memory_transition(user_id, matches!(op, LeaseOp::Settle));
                // Emptied too: the settle after the grace period may already run through Redis
                // again, which then knows nothing of this user and announces nothing.
                if self.inner.redis.is_some() && transition != Transition::Unchanged {
                    lock(&self.inner.changed_while_down).insert(user_id);
                }
                transition
            }
        };
        self.on_transition(user_id, transition).await;
    }

    fn memory_transition(&self, user_id: i64, settle: bool) -> Transition {
        let local = lock(&self.inner.local);
        let mut announced = lock(&self.inner.announced);
        let current = announced
            .get(&user_id)
            .copied()
            .unwrap_or(PresenceState::Offline);
        let Some(conns) = local.get(&user_id) else {
            return match (current, settle) {
                (PresenceState::Offline, _) => Transition::Unchanged,
                (_, true) => {
                    announced.remove(&user_id);
                    Transition::Changed(PresenceState::Offline)
                }
                (_, false) => Transition::Emptied,
            };
        };
        let state = if conns.values().all(|away| *away) {
            PresenceState::Away
        } else {
            PresenceState::Online
        };
        if state == current {
            Transition::Unchanged
        } else {
            announced.insert(user_id, state);
            Transition::Changed(state)
        }
    }

    async fn on_transition(&self, user_id: i64, transition: Transition) {
        match transition {
            Transition::Changed(state) => self.announce(user_id, state).await,
            Transition::Emptied => self.settle_after_grace(user_id),
            Transition::Unchanged => {}
        }
    }

    fn settle_after_grace(&self, user_id: i64) {
        let weak = Arc::downgrade(&self.inner);
        let grace = self.inner.config.grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if let Some(inner) = weak.upgrade() {
                PresenceService { inner }
                    .change(user_id, 0, LeaseOp::Settle)
                    .await;
            }
        });
    }

    /// Tells everyone who shares a channel with `user_id`; going offline also stores last-seen.
    async fn announce(&self, user_id: i64, state: PresenceState) {
        metrics::presence_changed(state);
        {
            // Also when Redis decided: a fallback to memory then starts from what was announced.
            let mut announced = lock(&self.inner.announced);
            if state == PresenceState::Offline {
                announced.remove(&user_id);
            } else {
                announced.insert(user_id, state);
            }
        }
        let last_seen_at = if state == PresenceState::Offline {
            let now = now_ms();
            if let Err(error) = self.inner.db.touch_last_seen(user_id, now).await {
                tracing::error!(%error, user_id, "presence: storing last-seen failed");
            }
            Some(now)
        } else {
            None
        };
        self.publish_presence(user_id, state, last_seen_at).await;
    }

    /// Tells everyone who shares a channel with `user_id` its `state` (and, offline, when it
    /// was last seen).
    async fn publish_presence(
        &self,
        user_id: i64,
        state: PresenceState,
        last_seen_at: Option<i64>,
    ) {
        let db = &self.inner.db;
        let peers = match db.channel_peers(user_id).await {
            Ok(peers) => peers,
            Err(error) => {
                tracing::error!(%error, user_id, "presence: loading who to tell failed");
                return;
            }
        };
        tracing::debug!(user_id, ?state, peers = peers.len(), "presence changed");
        if !peers.is_empty() {
            self.inner.hub.publish(
                Target::Users(peers),
                ServerEvent::Presence {
                    user_id,
                    state,
                    last_seen_at,
                },
            );
        }
    }

    fn redis_manager(&self) -> Option<(&RedisSide, ConnectionManager)> {
        let redis = self.inner.redis.as_ref()?;
        if !redis.up.load(Ordering::Relaxed) {
            return None;
        }
        let manager = redis
            .manager
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()?;
        Some((redis, manager))
    }

    /// Applies `op` in Redis; `None` when Redis is not in use (or just failed).
    async fn redis_apply(&self, user_id: i64, conn: ConnId, op: LeaseOp) -> Option<Transition> {
        let (redis, mut manager) = self.redis_manager()?;
        match redis
            .leases
            .apply(&mut manager, user_id, conn, op, self.inner.config.lease_ttl)
            .await
        {
            Ok(transition) => Some(transition),
            Err(error) => {
                self.redis_failed(&error);
                None
            }
        }
    }

    fn redis_failed(&self, error: &redis::RedisError) {
        metrics::redis_error();
        if let Some(redis) = &self.inner.redis
            && redis.up.swap(false, Ordering::Relaxed)
        {
            metrics::redis_up(false);
            tracing::warn!(%error, "presence: Redis unreachable; falling back to in-memory presence");
        }
    }

    /// Re-registers this node's connections in Redis after it came back, and removes the
    /// leases of connections that closed while it was away, so every node's view of this
    /// node's users converges.
    async fn resync(
        &self,
        redis: &RedisSide,
        manager: &mut ConnectionManager,
    ) -> redis::RedisResult<()> {
        let snapshot: Vec<(i64, Vec<(ConnId, bool)>)> = lock(&self.inner.local)
            .iter()
            .map(|(user, conns)| (*user, conns.iter().map(|(c, a)| (*c, *a)).collect()))
            .collect();
        for (user_id, conn) in redis.leases.own_leases(manager).await? {
            let still_open = snapshot
                .iter()
                .any(|(user, conns)| *user == user_id && conns.iter().any(|(c, _)| *c == conn));
            if !still_open {
                let ttl = self.inner.config.lease_ttl;
                let mut transition = redis
                    .leases
                    .apply(manager, user_id, conn, LeaseOp::Remove, ttl)
                    .await?;
                // Gone for a while already: no grace period, and settled here, while this node
                // still decides from memory.
                if transition == Transition::Emptied {
                    transition = redis
                        .leases
                        .apply(manager, user_id, conn, LeaseOp::Settle, ttl)
                        .await?;
                }
                self.on_transition(user_id, transition).await;
            }
        }
        for (user_id, conns) in snapshot {
            for (conn, away) in conns {
                let transition = redis
                    .leases
                    .apply(
                        manager,
                        user_id,
                        conn,
                        LeaseOp::Upsert { away },
                        self.inner.config.lease_ttl,
                    )
                    .await?;
                // What was announced from memory during the outage need not be said again.
                let already = lock(&self.inner.announced).get(&user_id).copied();
                if let Transition::Changed(state) = transition
                    && already == Some(state)
                {
                    continue;
                }
                self.on_transition(user_id, transition).await;
            }
        }
        Ok(())
    }
}

/// Sweeps expired leases while Redis is up; tries to reconnect while it is down.
async fn redis_upkeep(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let every = inner.config.sweep_every;
        let service = PresenceService { inner };
        if let Some(redis) = &service.inner.redis {
            if redis.up.load(Ordering::Relaxed) {
                sweep(&service).await;
            } else {
                match redis.leases.connect().await {
                    Ok(mut manager) => match service.resync(redis, &mut manager).await {
                        Ok(()) => {
                            *redis.manager.write().unwrap_or_else(|p| p.into_inner()) =
                                Some(manager);
                            redis.up.store(true, Ordering::Relaxed);
                            metrics::redis_up(true);
                            tokio::spawn(say_again_after_outage(Arc::downgrade(&service.inner)));
                            tracing::info!(
                                "presence: Redis reachable again; presence is shared through it"
                            );
                        }
                        Err(error) => {
                            metrics::redis_error();
                            tracing::debug!(%error, "presence: Redis resync failed");
                        }
                    },
                    // Counted on every try, so the error rate stays up for as long as Redis is
                    // down (no operation is tried against it meanwhile).
                    Err(_) => metrics::redis_error(),
                }
            }
        }
        drop(service);
        tokio::time::sleep(every).await;
    }
}

/// Renews this node's liveness, then settles the users of nodes that died and those whose
/// leases expired.
/// How long after Redis is back a node waits before saying again what changed meanwhile: the
/// other nodes' bus subscribers reconnect within a second, and their presence resyncs within a
/// sweep, so what it reads from Redis then is every node's view.
fn say_again_after(config: &PresenceConfig) -> Duration {
    (config.sweep_every * 2).max(Duration::from_secs(2))
}

/// Announces again, to every node, the presence of this node's users and of everyone whose
/// presence changed here while Redis was down, so each node's view converges.
async fn say_again_after_outage(weak: Weak<Inner>) {
    let Some(wait) = weak.upgrade().map(|inner| say_again_after(&inner.config)) else {
        return;
    };
    tokio::time::sleep(wait).await;
    let Some(inner) = weak.upgrade() else { return };
    let service = PresenceService { inner };
    let mut users: HashSet<i64> = std::mem::take(&mut *lock(&service.inner.changed_while_down));
    users.extend(lock(&service.inner.local).keys().copied());
    let users: Vec<i64> = users.into_iter().collect();
    let states = service.states(&users).await;
    let last_seen: HashMap<i64, Option<i64>> = match service.inner.db.last_seen_of(&users).await {
        Ok(seen) => seen.into_iter().collect(),
        Err(error) => {
            tracing::warn!(%error, "presence: reading last-seen failed");
            HashMap::new()
        }
    };
    for (user_id, state) in users.into_iter().zip(states) {
        let last_seen_at = (state == PresenceState::Offline)
            .then(|| last_seen.get(&user_id).copied().flatten())
            .flatten();
        service.publish_presence(user_id, state, last_seen_at).await;
    }
}

async fn sweep(service: &PresenceService) {
    let Some((redis, mut manager)) = service.redis_manager() else {
        return;
    };
    let settle = async {
        redis.leases.keep_alive(&mut manager).await?;
        let mut users = redis.leases.reap_dead_nodes(&mut manager).await?;
        users.extend(redis.leases.expired_users(&mut manager, 200).await?);
        Ok::<_, redis::RedisError>(users)
    };
    match settle.await {
        Ok(users) => {
            for user_id in users {
                service.change(user_id, 0, LeaseOp::Settle).await;
            }
        }
        Err(error) => service.redis_failed(&error),
    }
}

/// How long a node's liveness key lasts: three sweeps (at least a second), so one late sweep
/// does not make a live node look dead.
fn node_alive_ttl(config: &PresenceConfig) -> Duration {
    (config.sweep_every * 3).max(Duration::from_secs(1))
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    // A fixed id would only make two nodes share lease names; the clock is a fine fallback.
    if getrandom::fill(&mut bytes).is_err() {
        return now_ms().unsigned_abs();
    }
    u64::from_le_bytes(bytes)
}

/// The presence of the requested users that share a channel with `user` (or are `user`).
pub async fn snapshot_for(
    state: &AppState,
    user: &AuthUser,
    user_ids: &[i64],
) -> ServiceResult<Vec<UserPresence>> {
    if user_ids.len() > MAX_SNAPSHOT_USERS {
        return Err(ApiError::invalid(
            "user_ids",
            format!("at most {MAX_SNAPSHOT_USERS} users per call"),
        )
        .into());
    }
    let mut visible: HashSet<i64> = state.db.channel_peers(user.id).await?.into_iter().collect();
    visible.insert(user.id);
    let mut seen = HashSet::new();
    let ids: Vec<i64> = user_ids
        .iter()
        .copied()
        .filter(|id| visible.contains(id) && seen.insert(*id))
        .collect();
    let states = state.presence.states(&ids).await;
    let last_seen: HashMap<i64, Option<i64>> =
        state.db.last_seen_of(&ids).await?.into_iter().collect();
    Ok(ids
        .iter()
        .zip(states)
        .map(|(id, presence)| UserPresence {
            user_id: *id,
            state: presence,
            last_seen_at: last_seen.get(id).copied().flatten(),
        })
        .collect())
}
