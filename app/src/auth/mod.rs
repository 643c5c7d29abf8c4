//! Accounts: sign-up, log-in, sessions, the user directory, and the sign-up / log-in pages.

pub mod api;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;

use serde::{Deserialize, Serialize};

/// What anyone may know about a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicUser {
    pub id: i64,
    /// Unique, lower-case login name.
    pub username: String,
    pub display_name: String,
    /// When the user was last seen (Unix epoch milliseconds), if ever.
    pub last_seen_at: Option<i64>,
}

/// Answer to sign-up and log-in: the user, and a bearer token for non-browser clients (browsers
/// get the same token as an HttpOnly cookie).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedIn {
    pub user: PublicUser,
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// When the session ends (Unix epoch milliseconds).
    pub expires_at: i64,
}
