//! The presence service: a cheap handle sending commands to one task that owns every lease of
//! this node ([`super::task`]). The socket task never waits for presence work: a change is a
//! message on a queue; only a snapshot (`/api/presence/get`) waits for its answer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

use super::leases::LeaseOp;
pub use super::task::PresenceConfig;
use super::task::{Command, PresenceTask};
use super::{PresenceState, UserPresence};
use crate::auth::server::AuthUser;
use crate::error::ApiError;
use crate::realtime::server::fanout::ConnId;
use crate::realtime::server::hub::Hub;
use crate::server::error::ServiceResult;
use crate::server::{AppState, Database};

/// Most users one snapshot may ask for.
pub const MAX_SNAPSHOT_USERS: usize = 500;

/// Where presence is decided right now, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceBackend {
    Memory,
    Redis,
}

/// Presence changes waiting for the task; beyond this, a connection opening, closing or turning
/// away waits for room, and a heartbeat is skipped (a lease outlives several missed ones).
const QUEUE: usize = 8192;

/// Cheap handle to the presence task; the task ends when the last handle is dropped.
#[derive(Clone)]
pub struct PresenceService {
    commands: mpsc::Sender<Command>,
    /// Whether Redis is reachable; `None` without Redis. Written by the task, read by `/health`.
    redis_up: Option<Arc<AtomicBool>>,
}

impl PresenceService {
    /// Starts the task; with a Redis URL it connects first (falling back to memory if it
    /// cannot), then sweeps leases and reconnects for as long as the service lives.
    pub async fn start(config: PresenceConfig, db: Arc<dyn Database>, hub: Hub) -> Self {
        let (commands, queue) = mpsc::channel(QUEUE);
        let task = PresenceTask::connect(config, db, hub).await;
        let redis_up = task.redis_up();
        tokio::spawn(task.run(queue));
        Self { commands, redis_up }
    }

    pub async fn connected(&self, user_id: i64, conn: ConnId) {
        self.lease(user_id, conn, LeaseOp::Upsert { away: false })
            .await;
    }

    pub async fn disconnected(&self, user_id: i64, conn: ConnId) {
        self.lease(user_id, conn, LeaseOp::Remove).await;
    }

    pub async fn activity(&self, user_id: i64, conn: ConnId, away: bool) {
        self.lease(user_id, conn, LeaseOp::Upsert { away }).await;
    }

    async fn lease(&self, user_id: i64, conn: ConnId, op: LeaseOp) {
        // Waits only when the queue is full; fails only once the task is gone, when the server
        // stops and presence with it.
        if let Err(mpsc::error::TrySendError::Full(command)) =
            self.commands.try_send(Command::Lease { user_id, conn, op })
        {
            let _ = self.commands.send(command).await;
        }
    }

    /// Refreshes the connection's Redis lease (nothing to do in memory, where leases end
    /// explicitly). Skipped when the queue is full.
    pub fn heartbeat(&self, user_id: i64, conn: ConnId) {
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.commands.try_send(Command::Heartbeat { user_id, conn })
        {
            tracing::debug!(user_id, "presence: queue full; heartbeat skipped");
        }
    }

    /// The current state of each user (offline for all while the server stops).
    pub async fn states(&self, user_ids: &[i64]) -> Vec<PresenceState> {
        let (reply, answer) = oneshot::channel();
        let asked = Command::States {
            user_ids: user_ids.to_vec(),
            reply,
        };
        if self.commands.send(asked).await.is_ok()
            && let Ok(states) = answer.await
        {
            return states;
        }
        vec![PresenceState::Offline; user_ids.len()]
    }

    pub fn backend(&self) -> PresenceBackend {
        match self.redis_reachable() {
            Some(true) => PresenceBackend::Redis,
            _ => PresenceBackend::Memory,
        }
    }

    /// `None` when Redis is not configured, else whether it is reachable.
    pub fn redis_reachable(&self) -> Option<bool> {
        self.redis_up.as_ref().map(|up| up.load(Ordering::Relaxed))
    }
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
