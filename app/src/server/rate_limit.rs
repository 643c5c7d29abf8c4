//! Token buckets (governor) keyed by who is asking: per user and action class for writes and
//! searches ([`UserLimits`]), and per username or IP for log-ins (`auth::server::throttle`).
//!
//! Each action class has its own bucket, so a script marking hundreds of channels read does not
//! use up the same user's budget for sending, and a burst of sends does not block searching.
//! Limits are checked before any work is done: a refused send never reaches the message writer.

use std::fmt;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// How often (in checks) idle keys are dropped, so a limiter's memory stays bounded by the
/// keys seen recently rather than every key ever seen.
const PRUNE_EVERY: u64 = 4096;

/// A token bucket: `per_sec` tokens added each second, at most `burst` held. `per_sec == 0`
/// means no limit. Written `5/30` (5 per second, bursts of 30), `5` (burst = rate) or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests per second; 0 turns the limit off.
    pub per_sec: u32,
    /// Requests allowed at once after a quiet spell (at least 1 when the limit is on).
    pub burst: u32,
}

impl RateLimit {
    /// No limit.
    pub const OFF: Self = Self {
        per_sec: 0,
        burst: 0,
    };

    pub const fn new(per_sec: u32, burst: u32) -> Self {
        Self { per_sec, burst }
    }

    pub fn is_off(self) -> bool {
        self.per_sec == 0
    }

    fn quota(self) -> Option<Quota> {
        let per_sec = NonZeroU32::new(self.per_sec)?;
        let burst = NonZeroU32::new(self.burst).unwrap_or(per_sec);
        Some(Quota::per_second(per_sec).allow_burst(burst))
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_off() {
            f.write_str("off")
        } else {
            write!(f, "{}/{}", self.per_sec, self.burst)
        }
    }
}

/// Why a rate-limit setting could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a rate limit: write PER_SECOND/BURST (e.g. 5/30), PER_SECOND, 0 or off")]
pub struct ParseRateLimitError(String);

impl FromStr for RateLimit {
    type Err = ParseRateLimitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Self::OFF);
        }
        let invalid = || ParseRateLimitError(text.to_owned());
        let (rate, burst) = match text.split_once('/') {
            Some((rate, burst)) => (rate.trim(), Some(burst.trim())),
            None => (text, None),
        };
        let per_sec: u32 = rate.parse().map_err(|_| invalid())?;
        if per_sec == 0 {
            return Ok(Self::OFF);
        }
        let burst = match burst {
            Some(burst) => burst.parse().map_err(|_| invalid())?,
            None => per_sec,
        };
        if burst == 0 {
            return Err(invalid());
        }
        Ok(Self::new(per_sec, burst))
    }
}

/// One token bucket per key, forgetting idle keys now and then. Without a quota it lets
/// everything through.
pub struct KeyedBuckets<K: Hash + Eq + Clone> {
    limiter: Option<DefaultKeyedRateLimiter<K>>,
    checks: AtomicU64,
}

impl<K: Hash + Eq + Clone> KeyedBuckets<K> {
    pub fn new(quota: Option<Quota>) -> Self {
        Self {
            limiter: quota.map(RateLimiter::keyed),
            checks: AtomicU64::new(0),
        }
    }

    /// Takes a token from `key`'s bucket; `Err(wait)` when it is empty, with the time until
    /// the next token.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            limiter.retain_recent();
        }
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }
}

/// What a per-user limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `messages/send`.
    Send,
    /// `messages/edit` and `messages/delete`.
    Edit,
    /// `read/mark`.
    Read,
    /// Channel writes: `channels/create`, `direct`, `rename`, `add_member`, `remove_member`,
    /// `leave`.
    Channels,
    /// `users/search`.
    Search,
}

impl Action {
    const ALL: [Self; 5] = [
        Self::Send,
        Self::Edit,
        Self::Read,
        Self::Channels,
        Self::Search,
    ];

    fn index(self) -> usize {
        match self {
            Self::Send => 0,
            Self::Edit => 1,
            Self::Read => 2,
            Self::Channels => 3,
            Self::Search => 4,
        }
    }

    fn too_many(self) -> &'static str {
        match self {
            Self::Send => "too many messages sent",
            Self::Edit => "too many edits and deletions",
            Self::Read => "too many read marks",
            Self::Channels => "too many channel changes",
            Self::Search => "too many searches",
        }
    }
}

/// The per-user limit of each action class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRateLimits {
    pub send: RateLimit,
    pub edit: RateLimit,
    pub read: RateLimit,
    pub channels: RateLimit,
    pub search: RateLimit,
}

impl UserRateLimits {
    /// Every class unlimited (load tests, benchmarks).
    pub const OFF: Self = Self {
        send: RateLimit::OFF,
        edit: RateLimit::OFF,
        read: RateLimit::OFF,
        channels: RateLimit::OFF,
        search: RateLimit::OFF,
    };

    fn of(&self, action: Action) -> RateLimit {
        match action {
            Action::Send => self.send,
            Action::Edit => self.edit,
            Action::Read => self.read,
            Action::Channels => self.channels,
            Action::Search => self.search,
        }
    }
}

/// The defaults (docs/API.md, "Limits"): nobody types five messages a second for long, but
/// pasting a few lines or retrying a queue of sends after a reconnect comes in a burst; the web
/// client marks read at most every 150 ms while a channel is on screen, and a script syncing
/// read state after a login marks each channel once, so `read` is the most generous; channel
/// changes and edits are rare and slow for people; search runs on each keystroke.
impl Default for UserRateLimits {
    fn default() -> Self {
        Self {
            send: RateLimit::new(5, 30),
            edit: RateLimit::new(2, 20),
            read: RateLimit::new(20, 100),
            channels: RateLimit::new(2, 20),
            search: RateLimit::new(10, 40),
        }
    }
}

/// Per-user token buckets, one set per action class. Cheap to clone.
#[derive(Clone)]
pub struct UserLimits {
    buckets: Arc<[KeyedBuckets<i64>; 5]>,
}

impl UserLimits {
    pub fn new(limits: &UserRateLimits) -> Self {
        Self {
            buckets: Arc::new(
                Action::ALL.map(|action| KeyedBuckets::new(limits.of(action).quota())),
            ),
        }
    }

    /// Counts one `action` by `user_id`; `rate_limited` (429) when their bucket is empty.
    pub fn check(&self, user_id: i64, action: Action) -> Result<(), ApiError> {
        self.buckets[action.index()]
            .check(&user_id)
            .map_err(|wait| ApiError::rate_limited(action.too_many(), wait))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rate_and_burst_rate_alone_and_off() {
        assert_eq!("5/30".parse(), Ok(RateLimit::new(5, 30)));
        assert_eq!(" 7 ".parse(), Ok(RateLimit::new(7, 7)));
        assert_eq!("0".parse(), Ok(RateLimit::OFF));
        assert_eq!("0/30".parse(), Ok(RateLimit::OFF));
        assert_eq!("OFF".parse(), Ok(RateLimit::OFF));
        for bad in ["", "5/0", "five", "5/x", "-1/3", "5/30/2"] {
            assert!(bad.parse::<RateLimit>().is_err(), "{bad}");
        }
        assert_eq!(RateLimit::new(5, 30).to_string(), "5/30");
        assert_eq!(RateLimit::OFF.to_string(), "off");
    }

    #[test]
    fn a_burst_then_refusal_with_the_wait_per_user_and_class() {
        let limits = UserLimits::new(&UserRateLimits {
            send: RateLimit::new(1, 3),
            ..UserRateLimits::OFF
        });
        for _ in 0..3 {
            limits.check(1, Action::Send).unwrap();
        }
        let refused = limits.check(1, Action::Send).unwrap_err();
        assert_eq!(refused.status_code(), 429);
        assert_eq!(refused.retry_after_secs(), Some(1));
        // Another user, and another class of the same user, are not affected.
        limits.check(2, Action::Send).unwrap();
        for _ in 0..1000 {
            limits.check(1, Action::Read).unwrap();
        }
    }

    #[test]
    fn the_defaults_allow_a_burst_of_thirty_sends() {
        let limits = UserLimits::new(&UserRateLimits::default());
        for _ in 0..30 {
            limits.check(1, Action::Send).unwrap();
        }
        assert!(limits.check(1, Action::Send).is_err());
    }
}
