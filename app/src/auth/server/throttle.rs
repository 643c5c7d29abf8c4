//! Log-in and sign-up throttling. Argon2 hashing is deliberately costly, so unthrottled log-ins
//! would let one client burn the server's CPU; attempts are limited per username and per IP
//! before any hashing happens.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;
use crate::server::AppConfig;

/// How often (in checks) idle keys are dropped so the limiter's memory stays bounded.
const PRUNE_EVERY: u64 = 4096;

#[derive(Clone)]
pub struct AuthThrottle {
    inner: Arc<Inner>,
}

struct Inner {
    per_user: DefaultKeyedRateLimiter<String>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    checks: AtomicU64,
}

fn per_minute(count: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(count.max(1)).unwrap_or(NonZeroU32::MIN))
}

impl AuthThrottle {
    pub fn new(config: &AppConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                per_user: RateLimiter::keyed(per_minute(config.login_per_user_per_minute)),
                per_ip: RateLimiter::keyed(per_minute(config.auth_per_ip_per_minute)),
                checks: AtomicU64::new(0),
            }),
        }
    }

    /// Counts a log-in attempt for `username` from `ip`.
    pub fn check_login(&self, ip: Option<IpAddr>, username: &str) -> Result<(), ApiError> {
        self.check_ip(ip)?;
        self.inner
            .per_user
            .check_key(&username.to_owned())
            .map_err(|not_until| {
                throttled(
                    not_until.wait_time_from(DefaultClock::default().now()),
                    "too many log-in attempts for this username",
                )
            })
    }

    /// Counts a sign-up (or log-in) attempt from `ip`.
    pub fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        self.prune_now_and_then();
        let Some(ip) = ip else { return Ok(()) };
        self.inner.per_ip.check_key(&ip).map_err(|not_until| {
            throttled(
                not_until.wait_time_from(DefaultClock::default().now()),
                "too many attempts from this address",
            )
        })
    }

    fn prune_now_and_then(&self) {
        if self.inner.checks.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.inner.per_user.retain_recent();
            self.inner.per_ip.retain_recent();
        }
    }
}

fn throttled(wait: std::time::Duration, what: &str) -> ApiError {
    ApiError::rate_limited(what, wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_username_and_per_ip() {
        let throttle = AuthThrottle::new(&AppConfig {
            login_per_user_per_minute: 2,
            auth_per_ip_per_minute: 3,
            ..AppConfig::default()
        });
        let ip: Option<IpAddr> = Some([10, 0, 0, 1].into());
        assert!(throttle.check_login(ip, "ann").is_ok());
        assert!(throttle.check_login(ip, "ann").is_ok());
        let err = throttle.check_login(ip, "ann").unwrap_err();
        assert_eq!(err.status_code(), 429);
        // Another username from the same address still has the IP's last attempt left...
        assert!(
            throttle
                .check_login(Some([10, 0, 0, 2].into()), "bob")
                .is_ok()
        );
        assert!(
            throttle.check_login(ip, "bob").is_err(),
            "ip quota of 3 is used up"
        );
        // ...and another address is not affected by this one.
        assert!(throttle.check_ip(Some([10, 0, 0, 3].into())).is_ok());
    }
}
