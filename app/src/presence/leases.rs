//! Where user-level presence is decided. Every connection holds a lease; a [`LeaseStore`] applies
//! lease changes and says what each did to its user's presence. [`MemoryLeases`] knows this
//! node's connections only; [`RedisLeases`](super::redis_leases::RedisLeases) shares every
//! node's leases through Redis.

use std::collections::HashMap;
use std::convert::Infallible;

use async_trait::async_trait;

use super::PresenceState;
use crate::realtime::server::fanout::ConnId;

/// What a lease change did to the user's presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The user-level state changed to this; the caller announces it.
    Changed(PresenceState),
    /// No lease is left but the user still shows as present: settle after the grace period.
    Emptied,
    Unchanged,
}

/// A change to one connection's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOp {
    /// Create or refresh the lease, active or away.
    Upsert {
        away: bool,
    },
    Remove,
    /// No change: prune expired leases and, when none is left, announce offline.
    Settle,
}

/// Applies lease changes and reports presence transitions; memory and Redis implement it.
#[async_trait]
pub trait LeaseStore: Send {
    /// Why the store could not answer (`Infallible` for memory).
    type Error: Send;

    /// Applies `op` to connection `conn`'s lease of `user_id`.
    async fn apply(
        &mut self,
        user_id: i64,
        conn: ConnId,
        op: LeaseOp,
    ) -> Result<Transition, Self::Error>;

    /// Applies each change in order: one user's changes one after another, different users'
    /// as this store sees fit (Redis runs them side by side). One transition per change.
    async fn apply_many(
        &mut self,
        changes: &[(i64, ConnId, LeaseOp)],
    ) -> Result<Vec<Transition>, Self::Error> {
        let mut transitions = Vec::with_capacity(changes.len());
        for &(user_id, conn, op) in changes {
            transitions.push(self.apply(user_id, conn, op).await?);
        }
        Ok(transitions)
    }

    /// The current state of each user.
    async fn states(&mut self, user_ids: &[i64]) -> Result<Vec<PresenceState>, Self::Error>;

    /// Users to settle now: leases that expired without a heartbeat, or whose node died.
    async fn due(&mut self) -> Result<Vec<i64>, Self::Error>;
}

/// This node's connections and the presence they add up to. Always kept, also while Redis
/// decides: it is what the node re-registers in Redis after an outage, and what it decides
/// from while Redis is unreachable.
#[derive(Default)]
pub struct MemoryLeases {
    /// User → connection → away.
    connections: HashMap<i64, HashMap<ConnId, bool>>,
    /// Users with a connection here, or in their grace period, and the state that adds up to.
    states: HashMap<i64, PresenceState>,
}

impl MemoryLeases {
    /// Whether `conn` of `user_id` is away; `None` when it is not open here.
    pub fn away(&self, user_id: i64, conn: ConnId) -> Option<bool> {
        self.connections.get(&user_id)?.get(&conn).copied()
    }

    /// Every open connection here, as `(user, connection, away)`.
    pub fn connections(&self) -> Vec<(i64, ConnId, bool)> {
        self.connections
            .iter()
            .flat_map(|(user, conns)| conns.iter().map(|(conn, away)| (*user, *conn, *away)))
            .collect()
    }

    /// Users with a connection here.
    pub fn users(&self) -> impl Iterator<Item = i64> + '_ {
        self.connections.keys().copied()
    }

    /// The state this node would announce for `user_id` on its own.
    pub fn state(&self, user_id: i64) -> PresenceState {
        self.states
            .get(&user_id)
            .copied()
            .unwrap_or(PresenceState::Offline)
    }

    /// Applies `op` here; what it does to the user's presence as this node alone sees it.
    fn change(&mut self, user_id: i64, conn: ConnId, op: LeaseOp) -> Transition {
        self.record(user_id, conn, op);
        self.decide(user_id, op)
    }

    fn record(&mut self, user_id: i64, conn: ConnId, op: LeaseOp) {
        match op {
            LeaseOp::Upsert { away } => {
                self.connections
                    .entry(user_id)
                    .or_default()
                    .insert(conn, away);
            }
            LeaseOp::Remove => {
                if let Some(conns) = self.connections.get_mut(&user_id) {
                    conns.remove(&conn);
                    if conns.is_empty() {
                        self.connections.remove(&user_id);
                    }
                }
            }
            LeaseOp::Settle => {}
        }
    }

    fn decide(&mut self, user_id: i64, op: LeaseOp) -> Transition {
        let current = self.state(user_id);
        let Some(conns) = self.connections.get(&user_id) else {
            return match (current, op) {
                (PresenceState::Offline, _) => Transition::Unchanged,
                (_, LeaseOp::Settle) => {
                    self.states.remove(&user_id);
                    Transition::Changed(PresenceState::Offline)
                }
                (_, _) => Transition::Emptied,
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
            self.states.insert(user_id, state);
            Transition::Changed(state)
        }
    }
}

#[async_trait]
impl LeaseStore for MemoryLeases {
    type Error = Infallible;

    async fn apply(
        &mut self,
        user_id: i64,
        conn: ConnId,
        op: LeaseOp,
    ) -> Result<Transition, Self::Error> {
        Ok(self.change(user_id, conn, op))
    }

    async fn states(&mut self, user_ids: &[i64]) -> Result<Vec<PresenceState>, Self::Error> {
        Ok(user_ids.iter().map(|id| self.state(*id)).collect())
    }

    /// Memory leases end explicitly (on close), never by expiry.
    async fn due(&mut self) -> Result<Vec<i64>, Self::Error> {
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(leases: &mut MemoryLeases, user: i64, conn: ConnId, op: LeaseOp) -> Transition {
        leases.change(user, conn, op)
    }

    #[test]
    fn online_away_then_offline_only_after_settle() {
        let mut leases = MemoryLeases::default();
        let online = Transition::Changed(PresenceState::Online);
        assert_eq!(
            apply(&mut leases, 1, 10, LeaseOp::Upsert { away: false }),
            online
        );
        assert_eq!(
            apply(&mut leases, 1, 11, LeaseOp::Upsert { away: true }),
            Transition::Unchanged
        );
        assert_eq!(
            apply(&mut leases, 1, 10, LeaseOp::Upsert { away: true }),
            Transition::Changed(PresenceState::Away)
        );
        assert_eq!(
            apply(&mut leases, 1, 10, LeaseOp::Remove),
            Transition::Unchanged
        );
        assert_eq!(
            apply(&mut leases, 1, 11, LeaseOp::Remove),
            Transition::Emptied
        );
        assert_eq!(leases.state(1), PresenceState::Away, "shown until settled");
        assert_eq!(
            apply(&mut leases, 1, 0, LeaseOp::Settle),
            Transition::Changed(PresenceState::Offline)
        );
        assert_eq!(
            apply(&mut leases, 1, 0, LeaseOp::Settle),
            Transition::Unchanged
        );
    }

    #[test]
    fn a_reconnect_within_the_grace_period_announces_nothing() {
        let mut leases = MemoryLeases::default();
        apply(&mut leases, 1, 10, LeaseOp::Upsert { away: false });
        assert_eq!(
            apply(&mut leases, 1, 10, LeaseOp::Remove),
            Transition::Emptied
        );
        assert_eq!(
            apply(&mut leases, 1, 12, LeaseOp::Upsert { away: false }),
            Transition::Unchanged
        );
        assert_eq!(
            apply(&mut leases, 1, 0, LeaseOp::Settle),
            Transition::Unchanged
        );
        assert_eq!(leases.connections(), vec![(1, 12, false)]);
    }
}
