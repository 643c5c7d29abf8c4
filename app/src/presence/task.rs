//! The presence task: owns this node's leases ([`MemoryLeases`]) and, with Redis configured,
//! the shared ones ([`RedisLeases`]); takes commands from [`PresenceService`] handles up to 512
//! at a time and applies them in order (one user's one after another, different users' Redis
//! scripts side by side), so lease changes of one connection apply in the order they happened.
//!
//! Redis decides user-level transitions for every node while it is reachable; a sweep settles
//! users whose leases expired and those of a node that died (its liveness key, renewed every
//! sweep, lapsed after three sweeps). While Redis is unreachable the node decides from memory,
//! logs it, shows it on `/health`, and tries to reconnect every sweep beside the task; once back
//! it re-registers its leases, removes those of connections that closed meanwhile, and later
//! says again what changed, so every node's view converges.
//!
//! Announcing (storing last-seen, finding who to tell, publishing) is a second task fed in
//! order, so database work holds up lease changes only once its queue is full.
//!
//! [`PresenceService`]: super::service::PresenceService

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use redis::RedisResult;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::PresenceState;
use super::leases::{LeaseOp, LeaseStore, MemoryLeases, Transition};
use super::redis_leases::{RedisLeases, StoreUnreachable};
use crate::clock::now_ms;
use crate::realtime::protocol::ServerEvent;
use crate::realtime::server::fanout::ConnId;
use crate::realtime::server::fanout::Target;
use crate::realtime::server::hub::Hub;
use crate::server::{Database, metrics, sleep_until_some};

/// Presence settings; the task owns them.
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

/// What a [`PresenceService`](super::service::PresenceService) asks of the task.
pub enum Command {
    /// A connection opened, closed or turned away / active.
    Lease {
        user_id: i64,
        conn: ConnId,
        op: LeaseOp,
    },
    /// The connection is alive: refresh its Redis lease.
    Heartbeat { user_id: i64, conn: ConnId },
    /// The current state of each user.
    States {
        user_ids: Vec<i64>,
        reply: oneshot::Sender<Vec<PresenceState>>,
    },
}

/// A change to one connection's lease, as queued.
#[derive(Clone, Copy)]
enum Change {
    Lease(LeaseOp),
    /// Refresh the lease as it is when the change applies (a heartbeat).
    Refresh,
}

/// Most commands applied together: their Redis round trips overlap.
const MAX_BATCH: usize = 512;

/// Announcements waiting for the announcer; beyond this the presence task waits for room.
const ANNOUNCE_QUEUE: usize = 4096;

/// Most announcements taken at once.
const ANNOUNCE_BATCH: usize = 256;
/// Users announced at the same time: each takes a database connection for a moment, and sends
/// need those too.
const ANNOUNCE_CONCURRENCY: usize = 8;

/// What the announcer tells the users who share a channel with each user.
enum Announcement {
    /// A transition decided here; going offline also stores last-seen.
    Changed { user_id: i64, state: PresenceState },
    /// States said again after a Redis outage (offline with the stored last-seen).
    Again(Vec<(i64, PresenceState)>),
}

pub struct PresenceTask {
    config: PresenceConfig,
    /// This node's connections; decides presence while Redis is not in use.
    memory: MemoryLeases,
    /// Every node's leases, when Redis is configured.
    redis: Option<RedisLeases>,
    /// Whether Redis is in use, for the handles' `/health` answer.
    redis_up: Arc<AtomicBool>,
    /// Users whose presence changed while Redis (and with it the bus between nodes) was down:
    /// the other nodes did not hear it, so it is said again once Redis is back.
    changed_while_down: HashSet<i64>,
    /// Users whose grace period ends, by when.
    settle_at: BinaryHeap<Reverse<(Instant, i64)>>,
    /// Each user's latest grace deadline: an earlier one (the user came back and left again
    /// meanwhile) settles nothing, so the grace period counts from the last close.
    latest_settle: HashMap<i64, Instant>,
    /// When to say again what changed during the last Redis outage.
    say_again_at: Option<Instant>,
    /// A reconnect to Redis in flight.
    reconnecting: Option<JoinHandle<RedisResult<ConnectionManager>>>,
    announcer: mpsc::Sender<Announcement>,
}

impl PresenceTask {
    /// The task's state, connected to Redis when configured and reachable; starts the
    /// announcer.
    pub async fn connect(config: PresenceConfig, db: Arc<dyn Database>, hub: Hub) -> Self {
        let node_id = format!("{:016x}", rand_u64());
        let mut redis = match config.redis_url.as_deref().map(|url| {
            RedisLeases::new(
                url,
                &config.redis_prefix,
                &node_id,
                config.lease_ttl,
                node_alive_ttl(&config),
            )
        }) {
            None => None,
            Some(Err(error)) => {
                tracing::error!(%error, "presence: invalid REDIS_URL; presence stays in memory");
                None
            }
            Some(Ok(leases)) => Some(leases),
        };
        let mut up = false;
        if let Some(redis) = redis.as_mut() {
            match redis.connect().await {
                Ok(manager) => {
                    tracing::info!("presence: using Redis");
                    redis.use_connection(manager);
                    up = true;
                }
                Err(error) => {
                    tracing::warn!(%error, "presence: Redis unreachable at start; using memory until it is back");
                    metrics::redis_error();
                }
            }
            metrics::redis_up(up);
        }
        let (announcer, announcements) = mpsc::channel(ANNOUNCE_QUEUE);
        tokio::spawn(announce(db, hub, announcements));
        Self {
            config,
            memory: MemoryLeases::default(),
            redis,
            redis_up: Arc::new(AtomicBool::new(up)),
            changed_while_down: HashSet::new(),
            settle_at: BinaryHeap::new(),
            latest_settle: HashMap::new(),
            say_again_at: None,
            reconnecting: None,
            announcer,
        }
    }

    /// The flag the handles read for `/health`; `None` without Redis.
    pub fn redis_up(&self) -> Option<Arc<AtomicBool>> {
        self.redis.as_ref().map(|_| self.redis_up.clone())
    }

    /// Serves commands until every handle is gone.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // `interval` refuses a zero period.
        let every = self.config.sweep_every.max(Duration::from_millis(1));
        let mut upkeep = tokio::time::interval(every);
        upkeep.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let next_settle = self.settle_at.peek().map(|Reverse((at, _))| *at);
            let say_again_at = self.say_again_at;
            tokio::select! {
                received = commands.recv_many(&mut batch, MAX_BATCH) => match received {
                    0 => break,
                    _ => self.on_commands(&mut batch).await,
                },
                () = sleep_until_some(next_settle) => self.settle_due().await,
                _ = upkeep.tick(), if self.redis.is_some() => self.upkeep().await,
                () = sleep_until_some(say_again_at) => {
                    self.say_again_at = None;
                    self.say_again().await;
                }
                joined = join_some(&mut self.reconnecting) => {
                    self.reconnecting = None;
                    self.on_reconnect(joined).await;
                }
            }
        }
        if let Some(reconnect) = self.reconnecting.take() {
            reconnect.abort();
        }
    }

    /// Applies the lease changes among `commands` together, in order, and answers each
    /// snapshot after the changes queued before it.
    async fn on_commands(&mut self, commands: &mut Vec<Command>) {
        let mut changes = Vec::with_capacity(commands.len());
        for command in commands.drain(..) {
            match command {
                Command::Lease { user_id, conn, op } => {
                    changes.push((user_id, conn, Change::Lease(op)));
                }
                Command::Heartbeat { user_id, conn } => {
                    changes.push((user_id, conn, Change::Refresh));
                }
                Command::States { user_ids, reply } => {
                    self.change(std::mem::take(&mut changes)).await;
                    let states = self.states(&user_ids).await;
                    // The asker may have given up (its request was cancelled).
                    let _ = reply.send(states);
                }
            }
        }
        self.change(changes).await;
    }

    /// Applies `changes` here and, while it is in use, in Redis, which then decides.
    async fn change(&mut self, changes: Vec<(i64, ConnId, Change)>) {
        let mut applied = Vec::with_capacity(changes.len());
        let mut locals = Vec::with_capacity(changes.len());
        for (user_id, conn, change) in changes {
            let op = match change {
                Change::Lease(op) => op,
                // Upserting the lease as it is now, after the changes before it in the batch
                // (an away reported just before stays away); nothing for a closed connection.
                Change::Refresh => match self.memory.away(user_id, conn) {
                    Some(away) => LeaseOp::Upsert { away },
                    None => continue,
                },
            };
            let Ok(local) = self.memory.apply(user_id, conn, op).await;
            locals.push(local);
            applied.push((user_id, conn, op));
        }
        if applied.is_empty() {
            return;
        }
        let changes = applied;
        let decided = match self.redis_in_use() {
            Some(redis) => {
                let result = redis.apply_many(&changes).await;
                self.redis_checked(result)
            }
            None => None,
        };
        for (index, (&(user_id, _, _), local)) in changes.iter().zip(locals).enumerate() {
            let transition = match &decided {
                Some(transitions) => transitions[index],
                None => {
                    if self.redis.is_some() && local != Transition::Unchanged {
                        self.changed_while_down.insert(user_id);
                    }
                    local
                }
            };
            // Memory settles too when Redis still sees the user elsewhere, so a later fallback
            // to memory does not start from a stale state.
            if local == Transition::Emptied && transition != Transition::Emptied {
                self.settle_after_grace(user_id);
            }
            self.on_transition(user_id, transition).await;
        }
    }

    async fn on_transition(&mut self, user_id: i64, transition: Transition) {
        match transition {
            Transition::Changed(state) => {
                // Fails only once the announcer is gone, when the server stops.
                let _ = self
                    .announcer
                    .send(Announcement::Changed { user_id, state })
                    .await;
            }
            Transition::Emptied => self.settle_after_grace(user_id),
            Transition::Unchanged => {}
        }
    }

    fn settle_after_grace(&mut self, user_id: i64) {
        let at = Instant::now() + self.config.grace;
        self.settle_at.push(Reverse((at, user_id)));
        self.latest_settle.insert(user_id, at);
    }

    async fn settle_due(&mut self) {
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(Reverse((at, user_id))) = self.settle_at.peek().copied()
            && at <= now
        {
            self.settle_at.pop();
            if self.latest_settle.get(&user_id) == Some(&at) {
                self.latest_settle.remove(&user_id);
                due.push((user_id, 0, Change::Lease(LeaseOp::Settle)));
            }
        }
        self.change(due).await;
    }

    /// The Redis store while it is in use.
    fn redis_in_use(&mut self) -> Option<&mut RedisLeases> {
        self.redis.as_mut().filter(|redis| redis.is_up())
    }

    async fn states(&mut self, user_ids: &[i64]) -> Vec<PresenceState> {
        if let Some(redis) = self.redis_in_use() {
            let result = redis.states(user_ids).await;
            if let Some(states) = self.redis_checked(result) {
                return states;
            }
        }
        let Ok(states) = self.memory.states(user_ids).await;
        states
    }

    /// The value, or `None` after noting that Redis failed.
    fn redis_checked<T>(&mut self, result: Result<T, StoreUnreachable>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(StoreUnreachable(error)) => {
                metrics::redis_error();
                if self.redis_up.swap(false, Ordering::Relaxed) {
                    metrics::redis_up(false);
                    tracing::warn!(%error, "presence: Redis unreachable; falling back to in-memory presence");
                }
                None
            }
        }
    }

    /// Every sweep: settles expired leases and dead nodes' users while Redis is up; starts a
    /// reconnect while it is down.
    async fn upkeep(&mut self) {
        if let Some(redis) = self.redis_in_use() {
            let result = redis.due().await;
            let due = self.redis_checked(result).unwrap_or_default();
            self.change(
                due.into_iter()
                    .map(|user_id| (user_id, 0, Change::Lease(LeaseOp::Settle)))
                    .collect(),
            )
            .await;
        } else if let Some(redis) = &self.redis
            && self.reconnecting.is_none()
        {
            self.reconnecting = Some(tokio::spawn(redis.connect()));
        }
    }

    async fn on_reconnect(
        &mut self,
        joined: Result<RedisResult<ConnectionManager>, tokio::task::JoinError>,
    ) {
        let manager = match joined {
            Ok(Ok(manager)) => manager,
            // Counted on every try, so the error rate stays up for as long as Redis is down (no
            // operation is tried against it meanwhile).
            Ok(Err(_)) | Err(_) => {
                metrics::redis_error();
                return;
            }
        };
        let Some(redis) = self.redis.as_mut() else {
            return;
        };
        redis.use_connection(manager);
        match self.resync().await {
            Ok(()) => {
                self.redis_up.store(true, Ordering::Relaxed);
                metrics::redis_up(true);
                self.say_again_at = Some(Instant::now() + say_again_after(&self.config));
                tracing::info!("presence: Redis reachable again; presence is shared through it");
            }
            Err(StoreUnreachable(error)) => {
                metrics::redis_error();
                tracing::debug!(%error, "presence: Redis resync failed");
            }
        }
    }

    /// Re-registers this node's connections in Redis after it came back, and removes the
    /// leases of connections that closed while it was away, so every node's view of this
    /// node's users converges.
    async fn resync(&mut self) -> Result<(), StoreUnreachable> {
        let open = self.memory.connections();
        let Some(redis) = self.redis.as_mut() else {
            return Ok(());
        };
        let still_open: HashSet<(i64, ConnId)> =
            open.iter().map(|(user, conn, _)| (*user, *conn)).collect();
        let closed: Vec<(i64, ConnId, LeaseOp)> = redis
            .own_leases()
            .await?
            .into_iter()
            .filter(|lease| !still_open.contains(lease))
            .map(|(user_id, conn)| (user_id, conn, LeaseOp::Remove))
            .collect();
        let removed = redis.apply_many(&closed).await?;
        // Gone for a while already: no grace period, and settled here, while this node still
        // decides from memory.
        let emptied: Vec<(i64, ConnId, LeaseOp)> = closed
            .iter()
            .zip(&removed)
            .filter(|(_, transition)| **transition == Transition::Emptied)
            .map(|(&(user_id, conn, _), _)| (user_id, conn, LeaseOp::Settle))
            .collect();
        let settled = redis.apply_many(&emptied).await?;
        let reopened: Vec<(i64, ConnId, LeaseOp)> = open
            .iter()
            .map(|&(user_id, conn, away)| (user_id, conn, LeaseOp::Upsert { away }))
            .collect();
        let upserted = redis.apply_many(&reopened).await?;

        let mut transitions: Vec<(i64, Transition)> = closed
            .iter()
            .zip(removed)
            .filter(|(_, transition)| *transition != Transition::Emptied)
            .chain(emptied.iter().zip(settled))
            .map(|(&(user_id, _, _), transition)| (user_id, transition))
            .collect();
        for (&(user_id, _, _), transition) in reopened.iter().zip(upserted) {
            // What was announced from memory during the outage need not be said again.
            if let Transition::Changed(state) = transition
                && self.memory.state(user_id) == state
            {
                continue;
            }
            transitions.push((user_id, transition));
        }
        for (user_id, transition) in transitions {
            self.on_transition(user_id, transition).await;
        }
        Ok(())
    }

    /// Announces again, to every node, the presence of this node's users and of everyone whose
    /// presence changed here while Redis was down, so each node's view converges.
    async fn say_again(&mut self) {
        let mut users = std::mem::take(&mut self.changed_while_down);
        users.extend(self.memory.users());
        let users: Vec<i64> = users.into_iter().collect();
        let states = self.states(&users).await;
        let _ = self
            .announcer
            .send(Announcement::Again(users.into_iter().zip(states).collect()))
            .await;
    }
}

/// Tells, in order, everyone who shares a channel with each user what presence changed.
async fn announce(db: Arc<dyn Database>, hub: Hub, mut queue: mpsc::Receiver<Announcement>) {
    let mut batch = Vec::with_capacity(ANNOUNCE_BATCH);
    while queue.recv_many(&mut batch, ANNOUNCE_BATCH).await > 0 {
        let mut changed = Vec::new();
        for announcement in batch.drain(..) {
            match announcement {
                Announcement::Changed { user_id, state } => changed.push((user_id, state)),
                Announcement::Again(states) => {
                    announce_changes(&*db, &hub, std::mem::take(&mut changed)).await;
                    announce_again(&*db, &hub, states).await;
                }
            }
        }
        announce_changes(&*db, &hub, changed).await;
    }
}

/// Announces transitions: one user's in order, up to [`ANNOUNCE_CONCURRENCY`] users at a time.
async fn announce_changes(db: &dyn Database, hub: &Hub, changed: Vec<(i64, PresenceState)>) {
    let mut by_user: HashMap<i64, Vec<PresenceState>> = HashMap::new();
    for (user_id, state) in changed {
        by_user.entry(user_id).or_default().push(state);
    }
    futures::stream::iter(by_user)
        .for_each_concurrent(ANNOUNCE_CONCURRENCY, |(user_id, states)| async move {
            for state in states {
                announce_change(db, hub, user_id, state).await;
            }
        })
        .await;
}

/// Going offline also stores last-seen.
async fn announce_change(db: &dyn Database, hub: &Hub, user_id: i64, state: PresenceState) {
    metrics::presence_changed(state);
    let last_seen_at = if state == PresenceState::Offline {
        let now = now_ms();
        if let Err(error) = db.touch_last_seen(user_id, now).await {
            tracing::error!(%error, user_id, "presence: storing last-seen failed");
        }
        Some(now)
    } else {
        None
    };
    publish(db, hub, user_id, state, last_seen_at).await;
}

/// States said again after an outage; offline with the stored last-seen.
async fn announce_again(db: &dyn Database, hub: &Hub, states: Vec<(i64, PresenceState)>) {
    let users: Vec<i64> = states.iter().map(|(user, _)| *user).collect();
    let last_seen: HashMap<i64, Option<i64>> = match db.last_seen_of(&users).await {
        Ok(seen) => seen.into_iter().collect(),
        Err(error) => {
            tracing::warn!(%error, "presence: reading last-seen failed");
            HashMap::new()
        }
    };
    futures::stream::iter(states)
        .for_each_concurrent(ANNOUNCE_CONCURRENCY, |(user_id, state)| {
            let last_seen_at = (state == PresenceState::Offline)
                .then(|| last_seen.get(&user_id).copied().flatten())
                .flatten();
            publish(db, hub, user_id, state, last_seen_at)
        })
        .await;
}

/// Tells everyone who shares a channel with `user_id` its `state` (and, offline, when it was
/// last seen).
async fn publish(
    db: &dyn Database,
    hub: &Hub,
    user_id: i64,
    state: PresenceState,
    last_seen_at: Option<i64>,
) {
    let peers = match db.channel_peers(user_id).await {
        Ok(peers) => peers,
        Err(error) => {
            tracing::error!(%error, user_id, "presence: loading who to tell failed");
            return;
        }
    };
    tracing::debug!(user_id, ?state, peers = peers.len(), "presence changed");
    if !peers.is_empty() {
        hub.publish(
            Target::Users(peers),
            ServerEvent::Presence {
                user_id,
                state,
                last_seen_at,
            },
        );
    }
}

async fn join_some<T>(handle: &mut Option<JoinHandle<T>>) -> Result<T, tokio::task::JoinError> {
    match handle {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

/// How long after Redis is back a node waits before saying again what changed meanwhile: the
/// other nodes' bus subscribers reconnect within a second, and their presence resyncs within a
/// sweep, so what it reads from Redis then is every node's view.
fn say_again_after(config: &PresenceConfig) -> Duration {
    (config.sweep_every * 2).max(Duration::from_secs(2))
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
