//! Server side of accounts: storage, rules, sessions, same-site checks and login throttling.

pub mod origin;
pub mod service;
pub mod session;
pub mod session_cache;
pub mod store;
pub mod throttle;

use super::PublicUser;

/// The user behind the current request, resolved from its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub id: i64,
    pub username: String,
    pub display_name: String,
}

impl From<AuthUser> for PublicUser {
    fn from(user: AuthUser) -> Self {
        PublicUser {
            id: user.id,
            username: user.username,
            display_name: user.display_name,
            last_seen_at: None,
        }
    }
}
