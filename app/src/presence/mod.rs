//! Presence: who is online, away or offline. Each WebSocket connection holds a lease; a user is
//! online while any lease is active, away when all are away, offline once the last lease has
//! been gone for a grace period. The service is a handle over one task that owns the leases;
//! memory and Redis decide behind one trait (`leases::LeaseStore`).

pub mod api;
pub mod components;
#[cfg(feature = "ssr")]
mod leases;
#[cfg(feature = "ssr")]
mod redis_leases;
#[cfg(feature = "ssr")]
pub mod service;
#[cfg(feature = "ssr")]
mod task;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceState {
    Online,
    Away,
    Offline,
}

/// A user's presence now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPresence {
    pub user_id: i64,
    pub state: PresenceState,
    /// When last seen (Unix epoch milliseconds), if ever.
    pub last_seen_at: Option<i64>,
}
