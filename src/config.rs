//! Server configuration: flags, each with an environment-variable fallback (`.env` is read too).

use std::net::SocketAddr;
use std::time::Duration;

use app::channels::store::MembershipCaps;
use app::presence::service::PresenceConfig;
use app::realtime::server::fanout::HubConfig;
use app::realtime::server::sequencer::HeadCheck;
use app::server::AppConfig;
use app::server::rate_limit::{RateLimit, UserRateLimits};
use clap::Parser;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Copy every user, session, channel, member, read pointer and message (ids and seqs kept)
    /// from a SQLite database into an empty PostgreSQL database, then check the copy. The server
    /// may keep running on the SQLite file meanwhile: the copy is one snapshot of it.
    CopyDb {
        /// The SQLite database: a file path or `sqlite:` URL.
        #[arg(long)]
        from: String,
        /// The PostgreSQL database, `postgres://…`: it must exist and hold no data.
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Clone, Parser)]
#[command(name = "dealnest-chat", version, about = "DealNest Chat server")]
pub struct Config {
    /// What to run instead of the server.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Database: a SQLite file path or `sqlite:` URL (created with its folder if missing), or
    /// a `postgres://user@host:5432/db` URL (the database must exist; it is migrated at start).
    #[arg(long, env = "DATABASE_URL", default_value = "./data/dealnest.db")]
    pub database_url: String,

    /// Address to listen on. Defaults to Leptos' site address (127.0.0.1:3000).
    #[arg(long, env = "BIND_ADDR")]
    pub bind: Option<SocketAddr>,

    /// Port to listen on, overriding the port of the bind address.
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,

    /// Log filter, e.g. `info` or `app=debug,tower_http=debug`.
    #[arg(long, env = "LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Mark the session cookie `Secure`; set when serving over HTTPS.
    #[arg(long, env = "SECURE_COOKIES", default_value_t = false)]
    pub secure_cookies: bool,

    /// Session lifetime in hours.
    #[arg(long, env = "SESSION_TTL_HOURS", default_value_t = 720)]
    pub session_ttl_hours: i64,

    /// Seconds a resolved session is served from memory before the database is asked again
    /// (0: ask every time). Log-out takes effect at once on the node that handled it, and on the
    /// other nodes of a cluster as soon as the bus carries it.
    #[arg(long, env = "SESSION_CACHE_SECS", default_value_t = 30)]
    pub session_cache_secs: u64,

    /// Log-in attempts allowed per username per minute.
    #[arg(long, env = "LOGIN_PER_USER_PER_MINUTE", default_value_t = 10)]
    pub login_per_user_per_minute: u32,

    /// Log-in and sign-up attempts allowed per client IP per minute.
    #[arg(long, env = "AUTH_PER_IP_PER_MINUTE", default_value_t = 30)]
    pub auth_per_ip_per_minute: u32,

    /// Take the client IP from `X-Forwarded-For` (only behind a trusted load balancer).
    #[arg(long, env = "TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,

    /// Redis for presence shared by several nodes, e.g. `redis://127.0.0.1:6379`. Without it
    /// (or while it is unreachable) presence is kept in memory.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key (lets several deployments share one Redis).
    #[arg(long, env = "REDIS_PREFIX", default_value = "dealnest")]
    pub redis_prefix: String,

    /// Seconds a user with no connection left still shows as present (reloads do not flap).
    #[arg(long, env = "PRESENCE_GRACE_SECS", default_value_t = 5)]
    pub presence_grace_secs: u64,

    /// WebSocket ping interval in seconds; a connection silent for two intervals is closed.
    #[arg(long, env = "HEARTBEAT_SECS", default_value_t = 30)]
    pub heartbeat_secs: u64,

    /// Open WebSocket connections one user may hold (tabs, devices).
    #[arg(long, env = "MAX_CONNECTIONS_PER_USER", default_value_t = 20)]
    pub max_connections_per_user: usize,

    /// Open WebSocket connections this process accepts.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 19_500)]
    pub max_connections: usize,

    /// Serve Prometheus metrics at `http://<this address>/metrics`, e.g. `127.0.0.1:9100`. Off
    /// when unset: no recorder is installed and nothing is measured. Never the public address:
    /// the figures are for operators only.
    #[arg(long, env = "METRICS_BIND")]
    pub metrics_bind: Option<SocketAddr>,

    /// Other origins whose pages may open `/ws` or post to `/api` with the session cookie
    /// (comma-separated), e.g. `https://chat.example.com`. The app's own origin is always allowed.
    #[arg(long, env = "ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Per-user limit on `messages/send`: PER_SECOND/BURST (a token bucket), or 0 / off.
    #[arg(long, env = "RATE_LIMIT_SEND", default_value_t = UserRateLimits::default().send)]
    pub rate_limit_send: RateLimit,

    /// Per-user limit on `messages/edit` and `messages/delete` together.
    #[arg(long, env = "RATE_LIMIT_EDIT", default_value_t = UserRateLimits::default().edit)]
    pub rate_limit_edit: RateLimit,

    /// Per-user limit on `read/mark`.
    #[arg(long, env = "RATE_LIMIT_READ", default_value_t = UserRateLimits::default().read)]
    pub rate_limit_read: RateLimit,

    /// Per-user limit on channel writes (`channels/create`, `direct`, `rename`, `add_member`,
    /// `remove_member`, `leave`) together.
    #[arg(long, env = "RATE_LIMIT_CHANNELS", default_value_t = UserRateLimits::default().channels)]
    pub rate_limit_channels: RateLimit,

    /// Per-user limit on `users/search`.
    #[arg(long, env = "RATE_LIMIT_SEARCH", default_value_t = UserRateLimits::default().search)]
    pub rate_limit_search: RateLimit,

    /// Turn every per-user rate limit above off (benchmarks, load tests). The log-in and
    /// sign-up throttles and the WebSocket limits stay.
    #[arg(long, env = "DISABLE_RATE_LIMITS", default_value_t = false)]
    pub disable_rate_limits: bool,

    /// Most members one channel may have, its owner included.
    #[arg(long, env = "MAX_CHANNEL_MEMBERS", default_value_t = MembershipCaps::default().max_members,
          value_parser = clap::value_parser!(u32).range(2..))]
    pub max_channel_members: u32,

    /// Most channels one user may be a member of: at most 400, the most channels one WebSocket
    /// `resume` names (docs/PROTOCOL.md, "Limits").
    #[arg(long, env = "MAX_CHANNELS_PER_USER",
          default_value_t = MembershipCaps::MAX_CHANNELS_PER_USER,
          value_parser = clap::value_parser!(u32)
              .range(1..=i64::from(MembershipCaps::MAX_CHANNELS_PER_USER)))]
    pub max_channels_per_user: u32,

    /// In a cluster (PostgreSQL and `REDIS_URL`), how often each channel's newest seq is
    /// compared with the database, in milliseconds; four times as often while Redis is down. A
    /// message the bus lost reaches clients within this interval.
    #[arg(long, env = "HEAD_CHECK_MS", default_value_t = 2000)]
    pub head_check_ms: u64,

    /// Seconds a stop (SIGTERM, Ctrl-C) spends draining: `/ready` answers 503, new WebSockets
    /// are refused and open ones are closed with 1012, each at a random moment in this window;
    /// then the listener closes, requests in flight finish and the process exits 0.
    #[arg(long, env = "DRAIN_SECS", default_value_t = 10)]
    pub drain_secs: u64,

    /// Log line format: `text` (human-readable) or `json` (one JSON object per line, with the
    /// request id and user id on request spans).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

impl Config {
    /// The settings the services need.
    pub fn app_config(&self) -> AppConfig {
        let defaults = AppConfig::default();
        let heartbeat_secs = self.heartbeat_secs.max(1);
        AppConfig {
            secure_cookies: self.secure_cookies,
            session_ttl_secs: self.session_ttl_hours.max(1) * 3600,
            session_cache: Duration::from_secs(self.session_cache_secs),
            login_per_user_per_minute: self.login_per_user_per_minute,
            auth_per_ip_per_minute: self.auth_per_ip_per_minute,
            trust_forwarded_for: self.trust_forwarded_for,
            heartbeat: Duration::from_secs(heartbeat_secs),
            max_connections: self.max_connections,
            hub: HubConfig {
                max_connections_per_user: self.max_connections_per_user,
                ..defaults.hub
            },
            presence: PresenceConfig {
                grace: Duration::from_secs(self.presence_grace_secs),
                // Two missed heartbeats and a margin before another node expires the lease.
                lease_ttl: Duration::from_secs(heartbeat_secs * 2 + 15),
                redis_url: self.redis_url.clone().filter(|url| !url.is_empty()),
                redis_prefix: self.redis_prefix.clone(),
                ..defaults.presence
            },
            allowed_origins: self.allowed_origins.clone(),
            drain: Duration::from_secs(self.drain_secs),
            rate_limits: if self.disable_rate_limits {
                UserRateLimits::OFF
            } else {
                UserRateLimits {
                    send: self.rate_limit_send,
                    edit: self.rate_limit_edit,
                    read: self.rate_limit_read,
                    channels: self.rate_limit_channels,
                    search: self.rate_limit_search,
                }
            },
            caps: MembershipCaps {
                max_members: self.max_channel_members,
                max_channels_per_user: self.max_channels_per_user,
            },
            head_check: HeadCheck {
                every: Duration::from_millis(self.head_check_ms.max(100)),
                every_while_down: Duration::from_millis((self.head_check_ms / 4).max(100)),
            },
            ..defaults
        }
    }

    /// The listening address: `--bind`, else Leptos' site address, with `--port` applied.
    pub fn bind_addr(&self, leptos_site_addr: SocketAddr) -> SocketAddr {
        let mut addr = self.bind.unwrap_or(leptos_site_addr);
        if let Some(port) = self.port {
            addr.set_port(port);
        }
        addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Config::try_parse_from(std::iter::once("dealnest-chat").chain(args.iter().copied()))
    }

    #[test]
    fn rate_limits_and_caps_from_flags() {
        let config = parse(&[
            "--rate-limit-send",
            "1/2",
            "--rate-limit-read",
            "0",
            "--max-channel-members",
            "50",
            "--max-channels-per-user",
            "10",
        ])
        .unwrap()
        .app_config();
        assert_eq!(config.rate_limits.send, RateLimit::new(1, 2));
        assert!(config.rate_limits.read.is_off());
        assert_eq!(config.rate_limits.edit, UserRateLimits::default().edit);
        assert_eq!(config.caps.max_members, 50);
        assert_eq!(config.caps.max_channels_per_user, 10);
        let off = parse(&["--disable-rate-limits"]).unwrap().app_config();
        assert_eq!(off.rate_limits, UserRateLimits::OFF);
    }

    #[test]
    fn the_defaults_match_app_config_and_the_caps_are_bounded() {
        let config = parse(&[]).unwrap().app_config();
        assert_eq!(config.rate_limits, UserRateLimits::default());
        assert_eq!(config.caps, MembershipCaps::default());
        assert!(parse(&["--max-channels-per-user", "401"]).is_err());
        assert!(parse(&["--max-channels-per-user", "0"]).is_err());
        assert!(parse(&["--max-channel-members", "1"]).is_err());
        assert!(parse(&["--rate-limit-send", "5/0"]).is_err());
    }
}
