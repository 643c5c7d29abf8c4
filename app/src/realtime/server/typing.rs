//! Typing signals: never stored, forwarded at most once per interval per user and channel, with
//! a server-set expiry.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::locks;

/// How long a typing signal lasts unless renewed (milliseconds).
pub const TYPING_TTL_MS: i64 = 6_000;
/// Renewals within this many milliseconds of the last forwarded one are absorbed.
pub const TYPING_MIN_INTERVAL_MS: i64 = 2_000;
/// Above this many entries, expired ones are swept out.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    forwarded_at: i64,
    expires_at: i64,
}

#[derive(Default)]
pub struct TypingTracker {
    entries: Mutex<HashMap<(i64, i64), Entry>>,
}

impl TypingTracker {
    /// Records that `user_id` types in `channel_id` at `now`; returns the expiry to announce,
    /// or `None` when the last announcement is recent enough to stand.
    pub fn started(&self, user_id: i64, channel_id: i64, now: i64) -> Option<i64> {
        let mut entries = locks::lock(&self.entries);
        if entries.len() > SWEEP_ABOVE {
            entries.retain(|_, entry| entry.expires_at > now);
        }
        let key = (user_id, channel_id);
        if let Some(entry) = entries.get(&key)
            && entry.expires_at > now
            && now - entry.forwarded_at < TYPING_MIN_INTERVAL_MS
        {
            return None;
        }
        let expires_at = now + TYPING_TTL_MS;
        entries.insert(
            key,
            Entry {
                forwarded_at: now,
                expires_at,
            },
        );
        Some(expires_at)
    }

    /// Clears `user_id`'s typing in `channel_id`; true when it was still showing.
    pub fn stopped(&self, user_id: i64, channel_id: i64, now: i64) -> bool {
        let mut entries = locks::lock(&self.entries);
        entries
            .remove(&(user_id, channel_id))
            .is_some_and(|entry| entry.expires_at > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewals_are_absorbed_within_the_interval() {
        let tracker = TypingTracker::default();
        assert_eq!(tracker.started(1, 10, 1_000), Some(7_000));
        assert_eq!(tracker.started(1, 10, 2_500), None);
        assert_eq!(tracker.started(1, 10, 3_000), Some(9_000));
        assert_eq!(tracker.started(2, 10, 3_000), Some(9_000), "per user");
        assert_eq!(tracker.started(1, 11, 3_000), Some(9_000), "per channel");
    }

    #[test]
    fn stopping_reports_whether_it_was_showing() {
        let tracker = TypingTracker::default();
        tracker.started(1, 10, 0);
        assert!(tracker.stopped(1, 10, 1_000));
        assert!(!tracker.stopped(1, 10, 1_000));
        tracker.started(1, 10, 0);
        assert!(!tracker.stopped(1, 10, 7_000), "already expired");
        assert_eq!(tracker.started(1, 10, 7_000), Some(13_000));
    }
}
