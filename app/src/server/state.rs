//! The one application state, handed to server functions through the Leptos context and to
//! axum handlers as `State`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use leptos::config::LeptosOptions;
use tokio::sync::{Semaphore, watch};

use super::Database;
use super::rate_limit::{UserLimits, UserRateLimits};
use super::storage::Backend;
use crate::auth::server::session_cache::SessionCache;
use crate::auth::server::throttle::AuthThrottle;
use crate::channels::store::MembershipCaps;
use crate::messages::writer::MessageWriter;
use crate::presence::service::{PresenceConfig, PresenceService};
use crate::realtime::server::fanout::HubConfig;
use crate::realtime::server::hub::Hub;
use crate::realtime::server::redis_bus::BusConfig;
use crate::realtime::server::sequencer::HeadCheck;
use crate::realtime::server::typing::TypingTracker;

/// Settings the services need (the server binary fills it from flags and environment).
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Mark the session cookie `Secure` (serve over HTTPS).
    pub secure_cookies: bool,
    /// Session lifetime in seconds.
    pub session_ttl_secs: i64,
    /// How long a resolved session is served from memory (zero: not at all).
    pub session_cache: Duration,
    /// Log-in attempts allowed per username per minute.
    pub login_per_user_per_minute: u32,
    /// Log-in and sign-up attempts allowed per client IP per minute.
    pub auth_per_ip_per_minute: u32,
    /// Take the client IP from the first `X-Forwarded-For` entry (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// WebSocket ping interval; a connection silent for two intervals is closed.
    pub heartbeat: Duration,
    /// Open WebSocket connections this process accepts.
    pub max_connections: usize,
    /// Connection queue size and per-user connection cap.
    pub hub: HubConfig,
    /// Presence grace period, lease TTL and Redis.
    pub presence: PresenceConfig,
    /// Origins (besides this site's own) whose pages may open `/ws` or post to `/api` with the
    /// session cookie.
    pub allowed_origins: Vec<String>,
    /// How long a stop spends closing WebSockets (each at a random moment inside it) before the
    /// listener closes.
    pub drain: Duration,
    /// Per-user limits on writes and searches, per action class.
    pub rate_limits: UserRateLimits,
    /// Most members per channel and channels per user.
    pub caps: MembershipCaps,
    /// In a cluster (PostgreSQL and Redis), how often each channel's head is checked against
    /// the database.
    pub head_check: HeadCheck,
    /// Tests only: the share of bus messages a node receives to drop, duplicate or reorder.
    pub bus_fault_rate: f64,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            secure_cookies: false,
            session_ttl_secs: 30 * 24 * 3600,
            session_cache: Duration::from_secs(30),
            login_per_user_per_minute: 10,
            auth_per_ip_per_minute: 30,
            trust_forwarded_for: false,
            heartbeat: Duration::from_secs(30),
            max_connections: 19_500,
            hub: HubConfig::default(),
            presence: PresenceConfig::default(),
            allowed_origins: Vec::new(),
            drain: Duration::from_secs(10),
            rate_limits: UserRateLimits::default(),
            caps: MembershipCaps::default(),
            head_check: HeadCheck::default(),
            bus_fault_rate: 0.0,
        }
    }
}

/// The drain that precedes a stop. Once it starts, `/ready` answers 503 so load balancers stop
/// sending new clients, `/ws` refuses upgrades, and each open WebSocket is closed with 1012 at
/// its own moment inside the drain window, so a node's clients do not all reconnect in the
/// same second.
#[derive(Clone)]
pub struct Shutdown {
    sender: Arc<watch::Sender<bool>>,
}

impl Shutdown {
    fn new() -> Self {
        Self {
            sender: Arc::new(watch::channel(false).0),
        }
    }

    /// Starts the drain (idempotent).
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }

    pub fn is_draining(&self) -> bool {
        *self.sender.borrow()
    }

    /// Changes once, when the drain starts.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.sender.subscribe()
    }
}

#[derive(Clone, FromRef)]
pub struct AppState {
    /// All storage.
    pub db: Arc<dyn Database>,
    /// Service settings.
    pub config: Arc<AppConfig>,
    /// Sessions resolved recently.
    pub sessions: Arc<SessionCache>,
    /// Log-in / sign-up rate limits.
    pub auth_throttle: AuthThrottle,
    /// Per-user rate limits on writes and searches.
    pub user_limits: UserLimits,
    /// Fan-out of live events to WebSocket connections.
    pub hub: Hub,
    /// Who is online.
    pub presence: PresenceService,
    /// Typing signals.
    pub typing: Arc<TypingTracker>,
    /// Stores sends in batches (group commit) and publishes them in seq order.
    pub message_writer: MessageWriter,
    /// Caps open WebSocket connections.
    #[from_ref(skip)]
    pub ws_slots: Arc<Semaphore>,
    /// Caps concurrent password hashing at the number of cores: each Argon2 hash takes 19 MiB
    /// and a core for tens of milliseconds, so unbounded hashing lets a burst of log-ins pin
    /// the CPU and balloon memory.
    #[from_ref(skip)]
    pub hashing_slots: Arc<Semaphore>,
    /// Fires when the server stops.
    pub shutdown: Shutdown,
    /// Leptos rendering options (site root, output name…).
    pub leptos_options: LeptosOptions,
}

impl AppState {
    /// Builds the state; connects to Redis for presence when configured (falling back to memory).
    pub async fn new(
        db: Arc<dyn Database>,
        config: AppConfig,
        leptos_options: LeptosOptions,
    ) -> Self {
        // Several nodes share only a PostgreSQL database; with Redis too, their hubs join one
        // bus. SQLite with Redis is one node sharing presence through Redis, as before.
        let hub = match (&config.presence.redis_url, db.backend()) {
            (Some(redis_url), Backend::Postgres) => Hub::clustered(
                config.hub,
                BusConfig {
                    redis_url: redis_url.clone(),
                    prefix: config.presence.redis_prefix.clone(),
                    head_check: config.head_check,
                    fault_rate: config.bus_fault_rate,
                },
                db.clone(),
            ),
            _ => Hub::new(config.hub),
        };
        let sessions = Arc::new(SessionCache::new(config.session_cache));
        // A log-out on another node must not leave its session cached here.
        let cache = Arc::downgrade(&sessions);
        hub.on_session_ended(Box::new(move |tag| {
            if let Some(cache) = cache.upgrade() {
                cache.remove_tagged(tag);
            }
        }));
        let presence =
            PresenceService::start(config.presence.clone(), db.clone(), hub.clone()).await;
        let message_writer = MessageWriter::start(db.clone(), hub.clone());
        Self {
            sessions,
            auth_throttle: AuthThrottle::new(&config),
            user_limits: UserLimits::new(&config.rate_limits),
            ws_slots: Arc::new(Semaphore::new(config.max_connections)),
            hashing_slots: Arc::new(Semaphore::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            )),
            config: Arc::new(config),
            db,
            hub,
            presence,
            typing: Arc::default(),
            message_writer,
            shutdown: Shutdown::new(),
            leptos_options,
        }
    }
}
