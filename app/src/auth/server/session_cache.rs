//! Recently resolved sessions, so an API call or WebSocket upgrade does not read the database
//! to learn who is calling. Log-out removes its session here before answering, so on this node
//! a signed-out token stops working at once; an entry is re-read from the database after
//! `ttl`, which bounds how long a session deleted by anything else (an operator, another node)
//! keeps working here.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::AuthUser;
use crate::locks;
use crate::server::metrics;

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
    /// Counts removals. A lookup that read the database while a log-out ran may have read the
    /// session just before it was deleted: it must not put it back (see [`Self::insert`]).
    removals: AtomicU64,
}

impl SessionCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::default(),
            removals: AtomicU64::new(0),
        }
    }

    /// Taken before a database lookup; hand it to [`Self::insert`] and [`Self::removed_since`].
    pub fn epoch(&self) -> u64 {
        self.removals.load(Ordering::SeqCst)
    }

    /// Whether any session was removed since `epoch`.
    pub fn removed_since(&self, epoch: u64) -> bool {
        self.epoch() != epoch
    }

    /// The user of a session resolved recently, if it has not expired since.
    pub fn get(&self, token_hash: &[u8], now_ms: i64) -> Option<AuthUser> {
        let entries = locks::read(&self.entries);
        let user = entries
            .get(token_hash)
            .filter(|entry| entry.expires_at > now_ms && entry.fresh_until > Instant::now())
            .map(|entry| entry.user.clone());
        metrics::session_cache_lookup(user.is_some());
        user
    }

    /// Remembers a session read from the database, unless a session was removed since `epoch`
    /// (it may have been this one).
    pub fn insert(&self, token_hash: Vec<u8>, user: AuthUser, expires_at: i64, epoch: u64) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = locks::write(&self.entries);
        // Checked under the lock `remove` takes, so a removal is either seen here or after.
        if self.removed_since(epoch) {
            return;
        }
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

    /// Removes every session whose hash starts with `tag` (a log-out on another node names its
    /// session by such a prefix). A scan: log-outs are rare.
    pub fn remove_tagged(&self, tag: &[u8]) {
        let mut entries = locks::write(&self.entries);
        self.removals.fetch_add(1, Ordering::SeqCst);
        entries.retain(|hash, _| !hash.starts_with(tag));
    }

    pub fn remove(&self, token_hash: &[u8]) {
        let mut entries = locks::write(&self.entries);
        self.removals.fetch_add(1, Ordering::SeqCst);
        entries.remove(token_hash);
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
        cache.insert(b"h".to_vec(), ann(), 1_000, cache.epoch());
        assert_eq!(cache.get(b"h", 999), Some(ann()));
        assert_eq!(cache.get(b"h", 1_000), None, "expired");
        assert_eq!(cache.get(b"other", 999), None);
        cache.remove(b"h");
        assert_eq!(cache.get(b"h", 999), None, "removed");
    }

    #[test]
    fn a_log_out_elsewhere_removes_the_session_by_its_tag() {
        let cache = SessionCache::new(Duration::from_secs(60));
        let (signed_out, other) = ([7u8; 32], [8u8; 32]);
        cache.insert(signed_out.to_vec(), ann(), i64::MAX, cache.epoch());
        cache.insert(other.to_vec(), ann(), i64::MAX, cache.epoch());
        cache.remove_tagged(&signed_out[..16]);
        assert_eq!(cache.get(&signed_out, 0), None);
        assert_eq!(cache.get(&other, 0), Some(ann()));
    }

    #[test]
    fn entries_go_stale_after_the_ttl() {
        let cache = SessionCache::new(Duration::from_millis(20));
        cache.insert(b"h".to_vec(), ann(), i64::MAX, cache.epoch());
        assert!(cache.get(b"h", 0).is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.get(b"h", 0).is_none());
        let off = SessionCache::new(Duration::ZERO);
        off.insert(b"h".to_vec(), ann(), i64::MAX, off.epoch());
        assert!(off.get(b"h", 0).is_none(), "a zero ttl caches nothing");
    }

    #[test]
    fn a_lookup_that_raced_a_log_out_is_not_cached() {
        let cache = SessionCache::new(Duration::from_secs(60));
        let epoch = cache.epoch();
        // The lookup read the session; meanwhile it was signed out.
        cache.remove(b"h");
        cache.insert(b"h".to_vec(), ann(), i64::MAX, epoch);
        assert!(cache.get(b"h", 0).is_none());
        assert!(cache.removed_since(epoch));
        cache.insert(b"h".to_vec(), ann(), i64::MAX, cache.epoch());
        assert!(cache.get(b"h", 0).is_some(), "a later lookup caches again");
    }
}
