//! Recently resolved sessions, so an API call or WebSocket upgrade does not read the database
//! to learn who is calling. Log-out removes its session here before answering, so on this node
//! a signed-out token stops working at once; an entry is re-read from the database after
//! `ttl`, which bounds how long a session deleted by anything else (an operator, another node)
//! keeps working here.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use super::AuthUser;

/// Sessions kept at most; beyond this the cache drops stale entries, then starts over.
const MAX_ENTRIES: usize = 100_000;

struct Entry {
    user: AuthUser,
    /// When the session itself expires (Unix epoch milliseconds).
    expires_at: i64,
    /// When this entry must be re-read from the database.
    fresh_until: Instant,
}

pub struct SessionCache {
    ttl: Duration,
    entries: RwLock<HashMap<Vec<u8>, Entry>>,
}

impl SessionCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::default(),
        }
    }

    /// The user of a session resolved recently, if it has not expired since.
    pub fn get(&self, token_hash: &[u8], now_ms: i64) -> Option<AuthUser> {
        let entries = self
            .entries
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries
            .get(token_hash)
            .filter(|entry| entry.expires_at > now_ms && entry.fresh_until > Instant::now())
            .map(|entry| entry.user.clone())
    }

    pub fn insert(&self, token_hash: Vec<u8>, user: AuthUser, expires_at: i64) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self
            .entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, entry| entry.fresh_until > now);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(
            token_hash,
            Entry {
                user,
                expires_at,
                fresh_until: now + self.ttl,
            },
        );
    }

    pub fn remove(&self, token_hash: &[u8]) {
        self.entries
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(token_hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ann() -> AuthUser {
        AuthUser {
            id: 1,
            username: "ann".into(),
            display_name: "Ann".into(),
        }
    }

    #[test]
    fn serves_until_the_session_expires_or_is_removed() {
        let cache = SessionCache::new(Duration::from_secs(60));
        cache.insert(b"h".to_vec(), ann(), 1_000);
        assert_eq!(cache.get(b"h", 999), Some(ann()));
        assert_eq!(cache.get(b"h", 1_000), None, "expired");
        assert_eq!(cache.get(b"other", 999), None);
        cache.remove(b"h");
        assert_eq!(cache.get(b"h", 999), None, "removed");
    }

    #[test]
    fn entries_go_stale_after_the_ttl() {
        let cache = SessionCache::new(Duration::from_millis(20));
        cache.insert(b"h".to_vec(), ann(), i64::MAX);
        assert!(cache.get(b"h", 0).is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.get(b"h", 0).is_none());
        let off = SessionCache::new(Duration::ZERO);
        off.insert(b"h".to_vec(), ann(), i64::MAX);
        assert!(off.get(b"h", 0).is_none(), "a zero ttl caches nothing");
    }
}
