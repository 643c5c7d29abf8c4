//! Building and serving the application.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use app::error::ApiError;
use app::server::metrics::{self, MetricsError};
use app::server::{AppConfig, AppState, Database, StoreError};
use app::{App, shell};
use axum::Router;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::http::header::CACHE_CONTROL;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::serve::ListenerExt;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::api_guard::{self, MAX_REQUEST_BYTES};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Database(#[from] StoreError),
    #[error(
        "unsupported DATABASE_URL '{0}': use a SQLite file path, a sqlite: URL or a postgres:// URL"
    )]
    UnsupportedDatabase(String),
    #[error("leptos configuration: {0}")]
    Leptos(String),
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
    #[error("metrics: {0}")]
    Metrics(#[from] MetricsError),
}

/// Opens the database named by `database_url`, applying migrations.
pub async fn open_database(database_url: &str) -> Result<Arc<dyn Database>, StartupError> {
    app::server::db::open(database_url)
        .await?
        .ok_or_else(|| StartupError::UnsupportedDatabase(database_url.to_owned()))
}

/// Leptos options from the environment cargo-leptos sets (defaults otherwise). A binary run
/// directly (not by `cargo leptos serve`) finds out about hashed bundle names from the hash
/// file cargo-leptos wrote beside it.
pub fn leptos_options() -> Result<LeptosOptions, StartupError> {
    let mut options = leptos::config::get_configuration(None)
        .map(|conf| conf.leptos_options)
        .map_err(|e| StartupError::Leptos(e.to_string()))?;
    if std::env::var_os("LEPTOS_HASH_FILES").is_none() {
        options.hash_files = std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join(options.hash_file.as_ref())))
            .is_some_and(|hash_file| hash_file.exists());
    }
    Ok(options)
}

/// `/pkg`: the JS, WASM and CSS bundles. With hashed names each file's content never changes,
/// so browsers may keep it for a year without asking again. Release builds ship brotli and gzip
/// copies beside each file (`cargo leptos build --release --precompress`), served to browsers
/// that accept them.
fn bundle_service(options: &LeptosOptions) -> Router<AppState> {
    let dir = std::path::Path::new(options.site_root.as_ref()).join(options.site_pkg_dir.as_ref());
    let cache_control = if options.hash_files {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    Router::new().fallback_service(
        ServiceBuilder::new()
            // Only a file found may be kept: a 404 must not be cached for a year.
            .layer(SetResponseHeaderLayer::overriding(
                CACHE_CONTROL,
                move |response: &axum::response::Response<_>| {
                    response
                        .status()
                        .is_success()
                        .then(|| HeaderValue::from_static(cache_control))
                },
            ))
            .service(ServeDir::new(dir).precompressed_br().precompressed_gzip()),
    )
}

pub async fn build_state(
    database_url: &str,
    config: AppConfig,
    leptos_options: LeptosOptions,
) -> Result<AppState, StartupError> {
    let db = open_database(database_url).await?;
    Ok(AppState::new(db, config, leptos_options).await)
}

/// Turns metrics on and serves them on `listener` (`--metrics-bind`), apart from the public
/// port. Call before [`build_state`] and [`router`], so the services record from their start
/// and the router measures requests.
pub fn start_metrics(listener: TcpListener) -> Result<(), StartupError> {
    let exporter = metrics::install()?;
    tokio::spawn(async move {
        if let Err(error) = exporter.serve(listener).await {
            tracing::error!(%error, "metrics listener stopped");
        }
    });
    Ok(())
}

/// The whole HTTP surface: pages, `/api/*` server functions, `/ws`, static files and `/health`.
/// With metrics on, every request is counted and timed under its matched route.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let context_state = state.clone();
    let shell_options = state.leptos_options.clone();
    let router = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/ws", get(app::realtime::server::ws::upgrade))
        // Server functions are registered at exact paths; anything else under /api is a typed 404.
        .route("/api/{*rest}", any(unknown_endpoint))
        .nest("/pkg", bundle_service(&state.leptos_options))
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(context_state.clone()),
            move || shell(shell_options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(RequestBodyLimitLayer::new(MAX_REQUEST_BYTES))
        // Pages and API answers compressed on the fly; the WASM is precompressed at build time
        // in release builds (compressing a debug build's 20 MB on every load would be slow).
        .layer(CompressionLayer::new().compress_when(
            DefaultPredicate::new().and(NotForContentType::const_new("application/wasm")),
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        // Outside the panic catcher and the body limit, so their answers on /api are typed too.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            api_guard::guard,
        ))
        // Request ids: the caller's `x-request-id`, or a new UUID, set before the span opens
        // (so it is in the span) and returned on the answer.
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(TraceLayer::new_for_http().make_span_with(request_span)),
        );
    // Outermost, so it sees the answer every other layer settled on (a 413, a panic's 500).
    let router = if metrics::enabled() {
        router.layer(metrics::HttpMetricsLayer)
    } else {
        router
    };
    router.with_state(state)
}

/// The span every request runs in. `user_id` is filled in once the session is resolved
/// (`auth::server::session`), so each log line of a request says who made it.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id,
        user_id = tracing::field::Empty,
    )
}

/// Readiness, for load balancers: 200 only when storage answers on a new connection with every
/// migration applied, Redis (when configured) is reachable, and no drain has started.
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let reason = if state.shutdown.is_draining() {
        Some("draining: the server is stopping")
    } else {
        match state.db.pending_migrations().await {
            Err(error) => {
                tracing::warn!(%error, "readiness: database unreachable");
                Some("database unreachable")
            }
            Ok(pending) if pending > 0 => Some("database migrations not applied"),
            Ok(_) if state.presence.redis_reachable() == Some(false) => Some("redis unreachable"),
            Ok(_) => None,
        }
    };
    match reason {
        None => (
            StatusCode::OK,
            axum::Json(serde_json::json!({ "status": "ready" })),
        ),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "not_ready", "reason": reason })),
        ),
    }
}

/// Liveness: storage reachability, open connections, and where presence is decided.
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let database_ok = match state.db.user_by_id(0).await {
        Ok(_) => true,
        Err(error) => {
            tracing::error!(%error, "health check: database unreachable");
            false
        }
    };
    let redis = match state.presence.redis_reachable() {
        None => "not_configured",
        Some(true) => "reachable",
        Some(false) => "unreachable",
    };
    let status = if database_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if database_ok { "ok" } else { "degraded" },
        "database": if database_ok { "ok" } else { "unreachable" },
        "connections": state.hub.connection_count(),
        "broker": state.hub.broker_name(),
        "presence_backend": state.presence.backend(),
        "redis": redis,
    });
    (status, axum::Json(body))
}

/// A panic while answering a request is a bug: it is logged, and the client gets a 500 page
/// instead of a dropped connection.
fn panic_response(cause: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let reason = cause
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| cause.downcast_ref::<&str>().copied())
        .unwrap_or("unknown cause");
    tracing::error!(reason, "request handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Server error · DealNest Chat</title></head>\
         <body><main><h1>Something went wrong</h1><p>The server hit an error answering this page. \
         It has been logged. <a href=\"/\">Back to DealNest Chat</a></p></main></body></html>",
    )
        .into_response()
}

async fn unknown_endpoint(uri: Uri) -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        axum::Json(ApiError::not_found(format!(
            "no API endpoint at {}",
            uri.path()
        ))),
    )
}

/// Serves `state` on `listener` until `shutdown` completes, then drains: `/ready` answers 503,
/// new WebSockets are refused, and open ones are closed with 1012 spread over the drain window
/// (clients reconnect elsewhere and resume). When they are all closed, or the window and a
/// second for close handshakes have passed, the listener closes and requests in flight (sends
/// waiting for the writer among them) are answered before this returns.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stopping = state.shutdown.clone();
    // A connection holds its slot until its close handshake is over.
    let slots = state.ws_slots.clone();
    let max_connections = state.config.max_connections;
    let open_connections = move || max_connections.saturating_sub(slots.available_permits());
    let drain = state.config.drain;
    // Small frames (typing, receipts) must not wait for Nagle's algorithm.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::warn!(%error, "could not set TCP_NODELAY");
        }
    });
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!(
            drain_secs = drain.as_secs_f64(),
            connections = open_connections(),
            "draining"
        );
        stopping.trigger();
        let deadline = tokio::time::Instant::now() + drain + DRAIN_CLOSE_GRACE;
        while open_connections() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(DRAIN_POLL).await;
        }
        tracing::info!(
            connections = open_connections(),
            "drained; closing the listener"
        );
    })
    .await
}

/// Time beyond the drain window for the last close handshakes.
const DRAIN_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// How often the drain checks whether every WebSocket is closed.
const DRAIN_POLL: std::time::Duration = std::time::Duration::from_millis(50);
