//! Log-in and sign-up throttling. Argon2 hashing is deliberately costly, so unthrottled log-ins
//! would let one client burn the server's CPU; attempts are limited per username and per IP
//! before any hashing happens.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use governor::Quota;

use crate::error::ApiError;
use crate::server::AppConfig;
use crate::server::metrics::{self, Throttle};
use crate::server::rate_limit::KeyedBuckets;

#[derive(Clone)]
pub struct AuthThrottle {
    inner: Arc<Inner>,
}

struct Inner {
    per_user: KeyedBuckets<String>,
    per_ip: KeyedBuckets<IpAddr>,
}

fn per_minute(count: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(count.max(1)).unwrap_or(NonZeroU32::MIN))
}

impl AuthThrottle {
    pub fn new(config: &AppConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                per_user: KeyedBuckets::new(Some(per_minute(config.login_per_user_per_minute))),
                per_ip: KeyedBuckets::new(Some(per_minute(config.auth_per_ip_per_minute))),
            }),
        }
    }

    /// Counts a log-in attempt for `username` from `ip`.
    pub fn check_login(&self, ip: Option<IpAddr>, username: &str) -> Result<(), ApiError> {
        self.check_ip(ip)?;
        self.inner
            .per_user
            .check(&username.to_owned())
            .map_err(|wait| {
                metrics::login_throttled(Throttle::PerUsername);
                ApiError::rate_limited("too many log-in attempts for this username", wait)
            })
    }

    /// Counts a sign-up (or log-in) attempt from `ip`.
    pub fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), ApiError> {
        let Some(ip) = ip else { return Ok(()) };
        self.inner.per_ip.check(&ip).map_err(|wait| {
            metrics::login_throttled(Throttle::PerIp);
            ApiError::rate_limited("too many attempts from this address", wait)
        })
    }
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
