//! Building and serving the application.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use app::error::ApiError;
use app::server::{AppConfig, AppState, Database, SqliteDb, StoreError};
use app::{App, shell};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::Uri;
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::serve::ListenerExt;
use leptos::config::LeptosOptions;
use leptos::prelude::provide_context;
use leptos_axum::{LeptosRoutes, generate_route_list};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

/// Largest request body accepted (the biggest valid request, a 1000-member channel, is ~10 KiB).
const MAX_REQUEST_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Database(#[from] StoreError),
    #[error("unsupported DATABASE_URL '{0}': use a SQLite file path or a sqlite: URL")]
    UnsupportedDatabase(String),
    #[error("leptos configuration: {0}")]
    Leptos(String),
    #[error("network: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the database named by `database_url`, applying migrations.
pub async fn open_database(database_url: &str) -> Result<Arc<dyn Database>, StartupError> {
    if database_url.contains("://") && !database_url.starts_with("sqlite:") {
        return Err(StartupError::UnsupportedDatabase(database_url.to_owned()));
    }
    Ok(Arc::new(SqliteDb::connect(database_url).await?))
}

/// Leptos options from the environment cargo-leptos sets (defaults otherwise).
pub fn leptos_options() -> Result<LeptosOptions, StartupError> {
    leptos::config::get_configuration(None)
        .map(|conf| conf.leptos_options)
        .map_err(|e| StartupError::Leptos(e.to_string()))
}

pub async fn build_state(
    database_url: &str,
    config: AppConfig,
    leptos_options: LeptosOptions,
) -> Result<AppState, StartupError> {
    let db = open_database(database_url).await?;
    Ok(AppState::new(db, config, leptos_options).await)
}

/// The whole HTTP surface: pages, `/api/*` server functions, `/ws`, static files and `/health`.
pub fn router(state: AppState) -> Router {
    let routes = generate_route_list(App);
    let context_state = state.clone();
    let shell_options = state.leptos_options.clone();
    Router::new()
        .route("/health", get(health))
        .route("/ws", get(app::realtime::ws::upgrade))
        // Server functions are registered at exact paths; anything else under /api is a typed 404.
        .route("/api/{*rest}", any(unknown_endpoint))
        .leptos_routes_with_context(
            &state,
            routes,
            move || provide_context(context_state.clone()),
            move || shell(shell_options.clone()),
        )
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(RequestBodyLimitLayer::new(MAX_REQUEST_BYTES))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
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

/// Serves `state` on `listener` until `shutdown` completes; then open WebSockets are closed
/// with 1012 (restarting) so clients reconnect and resume.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stopping = state.shutdown.clone();
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
        stopping.trigger();
    })
    .await
}
