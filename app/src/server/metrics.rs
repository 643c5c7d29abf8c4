//! Prometheus metrics: every metric's name and description, the helpers the services call, the
//! HTTP middleware, and the `/metrics` listener.
//!
//! Call sites use the small functions below (`metrics::presence_changed(state)`), never the
//! macros with a name of their own, so this file is the one list an operator's dashboard is
//! built from (docs/OPERATIONS.md has the same table).
//!
//! Off by default. Only `--metrics-bind` installs the process-wide recorder ([`install`]);
//! without it the `metrics` macros find no recorder and do nothing (a load of a global pointer),
//! and the HTTP middleware is not even added to the router ([`enabled`]). On the hot paths
//! (fan-out, the writer, typing, session lookups) label values are string literals chosen by a
//! `match`, so recording allocates nothing; each route keeps the handles of the HTTP series it
//! has recorded into ([`HttpMetricsLayer`]).

use std::convert::Infallible;
use std::future::IntoFuture;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ::metrics::{
    Counter, Histogram, SharedString, Unit, counter, describe_counter, describe_gauge,
    describe_histogram, gauge, histogram,
};
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::presence::PresenceState;
use crate::realtime::protocol::close_code;

/// WebSocket connections accepted (upgraded), ever.
pub const WEBSOCKET_CONNECTIONS: &str = "websocket_connections_total";
/// WebSocket connections open now.
pub const WEBSOCKET_CONNECTIONS_OPEN: &str = "websocket_connections_open";
/// WebSocket connections ended, by close code and reason.
pub const WEBSOCKET_CONNECTIONS_CLOSED: &str = "websocket_connections_closed_total";
/// Messages stored by a send (a retry that finds its `client_id` stored is not counted).
pub const MESSAGES_SENT: &str = "messages_sent_total";
/// User-level presence transitions announced, by new state.
pub const PRESENCE_CHANGES: &str = "presence_changes_total";
/// Events queued on a connection by the hub.
pub const EVENTS_DELIVERED: &str = "events_delivered_total";
/// Events not queued on a connection whose queue was full (the connection is closed 4008).
pub const EVENTS_DROPPED: &str = "events_dropped_total";
/// HTTP requests answered, by endpoint, method and status.
pub const HTTP_REQUESTS: &str = "http_requests_total";
/// Time to answer an HTTP request (until the response head), by endpoint and method.
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
/// Time from a send reaching the message writer to its commit.
pub const SEND_DURABLE: &str = "message_send_durable_seconds";
/// Sends stored per writer transaction (group commit).
pub const WRITER_BATCH_SIZE: &str = "message_writer_batch_size";
/// Typing events from clients, forwarded or absorbed by the per-user interval.
pub const TYPING_EVENTS: &str = "typing_events_total";
/// Session lookups answered from memory (hit) or the database (miss).
pub const SESSION_CACHE_LOOKUPS: &str = "session_cache_lookups_total";
/// Storage errors, by kind (unique-key conflicts are answers, not errors, and are not counted).
pub const DATABASE_ERRORS: &str = "database_errors_total";
/// Failed Redis operations and reconnection attempts.
pub const REDIS_ERRORS: &str = "redis_errors_total";
/// 1 while Redis is reachable, 0 while presence has fallen back to memory (absent without Redis).
pub const REDIS_UP: &str = "redis_up";
/// Log-in and sign-up attempts refused by a throttle, by which limit.
pub const LOGIN_THROTTLED: &str = "login_throttled_total";
/// 1 while this node is subscribed to the Redis bus (absent on a single node).
pub const BUS_UP: &str = "bus_up";
/// Bus messages this node could not publish (outbox full, or Redis refused them).
pub const BUS_PUBLISH_DROPPED: &str = "bus_publish_dropped_total";
/// Messages delivered from the database because the bus lost, or had not yet brought, them.
pub const BUS_REPAIRED: &str = "bus_repaired_messages_total";
/// Commands waiting for this node's sequencer (absent on a single node).
pub const SEQUENCER_QUEUE_DEPTH: &str = "sequencer_queue_depth";
/// Sequencer commands dropped because its queue was full (the node then resynchronizes).
pub const SEQUENCER_DROPPED: &str = "sequencer_dropped_total";

/// The `endpoint` label of a request no route matched (static files, unknown pages): raw paths
/// would let any client mint new series.
pub const UNMATCHED_ENDPOINT: &str = "unmatched";

/// Buckets for request and send latencies (seconds): sub-millisecond answers are the norm here.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];
/// Buckets for the writer's batch size (at most 256 sends per transaction).
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
/// How often histogram samples are folded into buckets when nobody scrapes (bounds memory).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Why metrics could not be turned on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MetricsError {
    #[error("invalid histogram buckets: {0}")]
    Build(String),
    #[error("another metrics recorder is installed: {0}")]
    Install(String),
}

/// The installed recorder: renders the exposition, refreshing process CPU and memory first.
#[derive(Clone)]
pub struct Exporter {
    prometheus: PrometheusHandle,
    process: metrics_process::Collector,
}

static EXPORTER: OnceLock<Result<Exporter, MetricsError>> = OnceLock::new();

/// Installs the Prometheus recorder for the whole process and describes every metric. Installing
/// again returns the same exporter (tests may start several servers in one process).
pub fn install() -> Result<Exporter, MetricsError> {
    EXPORTER.get_or_init(build_and_install).clone()
}

/// Whether [`install`] has run: only then is there anything to record.
pub fn enabled() -> bool {
    matches!(EXPORTER.get(), Some(Ok(_)))
}

fn build_and_install() -> Result<Exporter, MetricsError> {
    let build =
        |error: metrics_exporter_prometheus::BuildError| MetricsError::Build(error.to_string());
    let prometheus = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(HTTP_REQUEST_DURATION.into()), LATENCY_BUCKETS)
        .map_err(build)?
        .set_buckets_for_metric(Matcher::Full(SEND_DURABLE.into()), LATENCY_BUCKETS)
        .map_err(build)?
        .set_buckets_for_metric(Matcher::Full(WRITER_BATCH_SIZE.into()), BATCH_BUCKETS)
        .map_err(build)?
        .install_recorder()
        .map_err(|error| MetricsError::Install(error.to_string()))?;
    let process = metrics_process::Collector::default();
    process.describe();
    describe();
    start_at_zero();
    Ok(Exporter {
        prometheus,
        process,
    })
}

fn describe() {
    describe_counter!(
        WEBSOCKET_CONNECTIONS,
        Unit::Count,
        "WebSocket connections accepted (upgraded)."
    );
    describe_gauge!(
        WEBSOCKET_CONNECTIONS_OPEN,
        Unit::Count,
        "WebSocket connections open now."
    );
    describe_counter!(
        WEBSOCKET_CONNECTIONS_CLOSED,
        Unit::Count,
        "WebSocket connections ended, by close code sent (none: the client left) and reason."
    );
    describe_counter!(
        MESSAGES_SENT,
        Unit::Count,
        "Messages stored by sends (retries of a stored client_id are not counted)."
    );
    describe_counter!(
        PRESENCE_CHANGES,
        Unit::Count,
        "User-level presence transitions announced, by new state."
    );
    describe_counter!(
        EVENTS_DELIVERED,
        Unit::Count,
        "Events queued on WebSocket connections by the hub."
    );
    describe_counter!(
        EVENTS_DROPPED,
        Unit::Count,
        "Events not queued because the connection's queue was full (it is closed with 4008)."
    );
    describe_counter!(
        HTTP_REQUESTS,
        Unit::Count,
        "HTTP requests answered, by matched route, method and status."
    );
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Time to answer an HTTP request (to the response head), by matched route and method."
    );
    describe_histogram!(
        SEND_DURABLE,
        Unit::Seconds,
        "Time from a send reaching the message writer to its commit."
    );
    describe_histogram!(
        WRITER_BATCH_SIZE,
        Unit::Count,
        "Sends written per message-writer transaction (group commit)."
    );
    describe_counter!(
        TYPING_EVENTS,
        Unit::Count,
        "Typing events from members, forwarded or absorbed (renewed within 2 s)."
    );
    describe_counter!(
        SESSION_CACHE_LOOKUPS,
        Unit::Count,
        "Session lookups answered from memory (hit) or from the database (miss)."
    );
    describe_counter!(
        DATABASE_ERRORS,
        Unit::Count,
        "Database operations that failed, by kind (unique-key conflicts not counted)."
    );
    describe_counter!(
        REDIS_ERRORS,
        Unit::Count,
        "Redis operations and reconnection attempts that failed."
    );
    describe_gauge!(
        REDIS_UP,
        "1 while Redis is reachable, 0 while presence runs from memory; absent without Redis."
    );
    describe_counter!(
        LOGIN_THROTTLED,
        Unit::Count,
        "Log-in and sign-up attempts refused by a throttle, by limit."
    );
    describe_gauge!(
        BUS_UP,
        "1 while this node is subscribed to the Redis bus, 0 while not; absent on a single node."
    );
    describe_counter!(
        BUS_PUBLISH_DROPPED,
        Unit::Count,
        "Bus messages not published: the outbox was full or Redis refused them."
    );
    describe_counter!(
        BUS_REPAIRED,
        Unit::Count,
        "Messages delivered from the database because the bus lost or delayed them."
    );
    describe_gauge!(
        SEQUENCER_QUEUE_DEPTH,
        Unit::Count,
        "Commands waiting for the sequencer that orders a cluster node's channel events."
    );
    describe_counter!(
        SEQUENCER_DROPPED,
        Unit::Count,
        "Sequencer commands dropped on a full queue; the node then resynchronizes from the database."
    );
}

/// Counters an alert rate()s over are shown at 0 from the start, so an alert's first increase
/// is seen as one, and a missing series means a missing exporter, not a quiet server.
fn start_at_zero() {
    counter!(WEBSOCKET_CONNECTIONS).increment(0);
    gauge!(WEBSOCKET_CONNECTIONS_OPEN).increment(0.0);
    counter!(MESSAGES_SENT).increment(0);
    counter!(EVENTS_DELIVERED).increment(0);
    counter!(EVENTS_DROPPED, "reason" => "lag").increment(0);
    counter!(REDIS_ERRORS).increment(0);
    for kind in DB_ERROR_KINDS {
        database_errors(kind, 0);
    }
    counter!(LOGIN_THROTTLED, "limit" => "per_username").increment(0);
    counter!(LOGIN_THROTTLED, "limit" => "per_ip").increment(0);
}

impl Exporter {
    /// The Prometheus text exposition, with the process figures read just now.
    pub fn render(&self) -> String {
        self.process.collect();
        self.prometheus.render()
    }

    /// `GET /metrics`, and nothing else.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/metrics", get(scrape))
            .with_state(self.clone())
    }

    /// Serves [`Self::router`] on `listener` for as long as the process runs, and folds
    /// histogram samples into buckets now and then, so memory stays bounded between scrapes.
    pub async fn serve(self, listener: TcpListener) -> std::io::Result<()> {
        tokio::select! {
            served = axum::serve(listener, self.router()).into_future() => served,
            never = upkeep(self.prometheus.clone()) => match never {},
        }
    }
}

async fn upkeep(handle: PrometheusHandle) -> Infallible {
    let mut ticks = tokio::time::interval(UPKEEP_EVERY);
    loop {
        ticks.tick().await;
        handle.run_upkeep();
    }
}

async fn scrape(State(exporter): State<Exporter>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        exporter.render(),
    )
}

/// Counts and times every request under its matched route (`/api/messages/send`, `/c/{id}`),
/// never its raw path. A tower layer rather than `axum::middleware::from_fn`: a `from_fn`
/// middleware clones the service it wraps on every request, and around a route that is the
/// whole stack of layers below it with the state its handler holds. Under callgrind that clone
/// cost more instructions than the recording (docs/PERFORMANCE.md, "Metrics on vs off"). This
/// one calls the route in place.
#[derive(Clone, Copy, Debug, Default)]
pub struct HttpMetricsLayer;

impl<S> tower::Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpMetrics {
            inner,
            series: Arc::default(),
        }
    }
}

/// The service [`HttpMetricsLayer`] wraps each route in.
#[derive(Clone)]
pub struct HttpMetrics<S> {
    inner: S,
    /// The series this route has recorded into, so a request finds its counter and histogram
    /// by a short scan instead of building a labelled key and looking it up in the registry.
    series: Arc<Mutex<Vec<RouteSeries>>>,
}

/// One (endpoint, method, status) a route answered, with its handles.
struct RouteSeries {
    endpoint: Option<MatchedPath>,
    method: &'static str,
    status: StatusCode,
    requests: Counter,
    duration: Histogram,
}

/// A route answers with a handful of (method, status) pairs; a pathological client sending
/// every method cannot grow the cache past this (it records through the registry instead).
const MAX_SERIES_PER_ROUTE: usize = 32;

fn record_request(
    series: &Mutex<Vec<RouteSeries>>,
    endpoint: Option<MatchedPath>,
    method: &'static str,
    status: StatusCode,
    took: f64,
) {
    let same_endpoint = |seen: &Option<MatchedPath>| {
        seen.as_ref().map(MatchedPath::as_str) == endpoint.as_ref().map(MatchedPath::as_str)
    };
    let mut series = crate::locks::lock(series);
    if let Some(seen) = series.iter().find(|seen| {
        seen.status == status && seen.method == method && same_endpoint(&seen.endpoint)
    }) {
        seen.requests.increment(1);
        seen.duration.record(took);
        return;
    }
    // Shared, so the counter and the histogram take the same string without copying it.
    let label: SharedString = endpoint
        .as_ref()
        .map_or(SharedString::const_str(UNMATCHED_ENDPOINT), |path| {
            SharedString::from_shared(Arc::from(path.as_str()))
        });
    let status_text = status_label(status);
    let requests = counter!(HTTP_REQUESTS, "endpoint" => label.clone(), "method" => method, "status" => status_text);
    let duration = histogram!(HTTP_REQUEST_DURATION, "endpoint" => label, "method" => method);
    requests.increment(1);
    duration.record(took);
    if series.len() < MAX_SERIES_PER_ROUTE {
        series.push(RouteSeries {
            endpoint,
            method,
            status,
            requests,
            duration,
        });
    }
}

impl<S> tower::Service<Request> for HttpMetrics<S>
where
    S: tower::Service<Request, Response = Response>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let endpoint = request.extensions().get::<MatchedPath>().cloned();
        let method = method_label(request.method());
        let started = Instant::now();
        let series = self.series.clone();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let response = answer.await?;
            let took = started.elapsed().as_secs_f64();
            record_request(&series, endpoint, method, response.status(), took);
            Ok(response)
        })
    }
}

/// The statuses this app answers with are static strings; any other is formatted.
fn status_label(status: StatusCode) -> SharedString {
    let common = match status.as_u16() {
        101 => "101",
        200 => "200",
        204 => "204",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        415 => "415",
        429 => "429",
        500 => "500",
        503 => "503",
        other => return SharedString::from(other.to_string()),
    };
    SharedString::const_str(common)
}

/// Methods outside the usual few share one label value: a client can send any token there.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// Counts an accepted WebSocket connection; it counts as open until the guard is dropped.
pub fn websocket_opened() -> OpenWebSocket {
    counter!(WEBSOCKET_CONNECTIONS).increment(1);
    gauge!(WEBSOCKET_CONNECTIONS_OPEN).increment(1.0);
    OpenWebSocket(())
}

/// An open WebSocket connection, for the gauge; a drop (even an aborted task) closes it.
#[must_use = "the connection counts as open until this is dropped"]
pub struct OpenWebSocket(());

impl Drop for OpenWebSocket {
    fn drop(&mut self) {
        gauge!(WEBSOCKET_CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// Counts a connection's end: `None` when the client closed or vanished, else the close code
/// the server sent.
pub fn websocket_closed(code: Option<u16>) {
    // Once per connection, so building the two-label list here costs nothing that matters.
    let closed = |code: &'static str, reason: &'static str| {
        counter!(WEBSOCKET_CONNECTIONS_CLOSED, "code" => code, "reason" => reason).increment(1);
    };
    match code {
        None => closed("none", "client_gone"),
        Some(close_code::PROTOCOL_ERROR) => closed("1002", "protocol_error"),
        Some(close_code::INVALID_UTF8) => closed("1007", "invalid_utf8"),
        Some(close_code::MESSAGE_TOO_BIG) => closed("1009", "message_too_big"),
        Some(close_code::CATCH_UP_FAILED) => closed("1011", "catch_up_failed"),
        Some(close_code::RESTARTING) => closed("1012", "server_restart"),
        Some(close_code::SIGNED_OUT) => closed("4001", "signed_out"),
        Some(close_code::LAGGING) => closed("4008", "lagging"),
        Some(close_code::HEARTBEAT_TIMEOUT) => closed("4009", "heartbeat_timeout"),
        Some(_) => closed("other", "other"),
    }
}

/// The messages one writer transaction stored: each is counted, with its time from reaching
/// the writer to the commit. The series are looked up once per transaction, not per message.
pub struct StoredMessages {
    sent: Counter,
    durable: Histogram,
    committed_at: Instant,
}

impl StoredMessages {
    /// For a transaction that committed just now.
    pub fn committed_now() -> Self {
        Self {
            sent: counter!(MESSAGES_SENT),
            durable: histogram!(SEND_DURABLE),
            committed_at: Instant::now(),
        }
    }

    /// Counts one stored message that reached the writer at `queued_at`.
    pub fn record(&self, queued_at: Instant) {
        self.sent.increment(1);
        self.durable
            .record(self.committed_at.duration_since(queued_at).as_secs_f64());
    }
}

/// Records the size of one writer transaction.
pub fn writer_batch(size: usize) {
    #[allow(clippy::cast_precision_loss)] // at most 256
    histogram!(WRITER_BATCH_SIZE).record(size as f64);
}

/// Counts an announced presence transition.
pub fn presence_changed(state: PresenceState) {
    match state {
        PresenceState::Online => counter!(PRESENCE_CHANGES, "state" => "online").increment(1),
        PresenceState::Away => counter!(PRESENCE_CHANGES, "state" => "away").increment(1),
        PresenceState::Offline => counter!(PRESENCE_CHANGES, "state" => "offline").increment(1),
    }
}

/// Counts events the hub queued on connections, and those it could not (full queues).
pub fn events_fanned_out(delivered: u64, dropped_for_lag: u64) {
    counter!(EVENTS_DELIVERED).increment(delivered);
    if dropped_for_lag > 0 {
        counter!(EVENTS_DROPPED, "reason" => "lag").increment(dropped_for_lag);
    }
}

/// Counts a typing event from a member; `forwarded` false when it renewed a recent one.
pub fn typing_event(forwarded: bool) {
    if forwarded {
        counter!(TYPING_EVENTS, "outcome" => "forwarded").increment(1);
    } else {
        counter!(TYPING_EVENTS, "outcome" => "absorbed").increment(1);
    }
}

/// Counts a session-cache lookup.
pub fn session_cache_lookup(hit: bool) {
    if hit {
        counter!(SESSION_CACHE_LOOKUPS, "result" => "hit").increment(1);
    } else {
        counter!(SESSION_CACHE_LOOKUPS, "result" => "miss").increment(1);
    }
}

/// The `kind` label values of [`DATABASE_ERRORS`].
const DB_ERROR_KINDS: [&str; 5] = ["query", "pool_timeout", "io", "closed", "other"];

/// Counts a failed database operation.
pub fn database_error(error: &sqlx::Error) {
    let kind = match error {
        sqlx::Error::Database(_) | sqlx::Error::RowNotFound | sqlx::Error::ColumnDecode { .. } => {
            "query"
        }
        sqlx::Error::PoolTimedOut => "pool_timeout",
        sqlx::Error::Io(_) => "io",
        sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => "closed",
        _ => "other",
    };
    database_errors(kind, 1);
}

fn database_errors(kind: &'static str, count: u64) {
    counter!(DATABASE_ERRORS, "kind" => kind).increment(count);
}

/// Counts a failed Redis operation or reconnection attempt.
pub fn redis_error() {
    counter!(REDIS_ERRORS).increment(1);
}

/// Sets whether this node is subscribed to the Redis bus.
pub fn bus_up(up: bool) {
    gauge!(BUS_UP).set(if up { 1.0 } else { 0.0 });
}

/// Counts a bus message that was not published.
pub fn bus_publish_dropped() {
    bus_publish_dropped_many(1);
}

pub fn bus_publish_dropped_many(count: usize) {
    counter!(BUS_PUBLISH_DROPPED).increment(count as u64);
}

/// How many commands wait for the sequencer (sampled by its task).
#[allow(clippy::cast_precision_loss)]
pub fn sequencer_queue_depth(depth: usize) {
    gauge!(SEQUENCER_QUEUE_DEPTH).set(depth as f64);
}

/// Counts a sequencer command dropped on a full queue.
pub fn sequencer_dropped() {
    counter!(SEQUENCER_DROPPED).increment(1);
}

/// Counts messages a gap repair or head check delivered.
pub fn bus_repaired(count: i64) {
    if count > 0 {
        counter!(BUS_REPAIRED).increment(count.unsigned_abs());
    }
}

/// Sets whether Redis is reachable.
pub fn redis_up(up: bool) {
    gauge!(REDIS_UP).set(if up { 1.0 } else { 0.0 });
}

/// Which throttle refused a log-in or sign-up.
#[derive(Debug, Clone, Copy)]
pub enum Throttle {
    PerUsername,
    PerIp,
}

/// Counts an attempt a throttle refused.
pub fn login_throttled(limit: Throttle) {
    match limit {
        Throttle::PerUsername => counter!(LOGIN_THROTTLED, "limit" => "per_username").increment(1),
        Throttle::PerIp => counter!(LOGIN_THROTTLED, "limit" => "per_ip").increment(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_labels_are_the_code() {
        assert_eq!(status_label(StatusCode::OK).as_ref(), "200");
        assert_eq!(status_label(StatusCode::IM_A_TEAPOT).as_ref(), "418");
    }

    #[test]
    fn unusual_methods_share_a_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(
            method_label(&Method::from_bytes(b"BREW").expect("method")),
            "other"
        );
    }
}
