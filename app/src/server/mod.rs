//! Server-only plumbing every feature shares: the application state, the database handle, the
//! service error type, the Prometheus metrics and the per-user rate limits.

pub mod copy_db;
pub mod db;
pub mod error;
pub mod metrics;
pub mod postgres;
pub mod rate_limit;
pub mod sqlite;
pub mod state;
pub mod storage;

pub use db::Database;
pub use error::ServiceError;
pub use postgres::PgDb;
pub use sqlite::SqliteDb;
pub use state::{AppConfig, AppState};
pub use storage::StoreError;

use crate::error::ApiError;

/// The [`AppState`] provided to every server function by the axum host.
pub fn state() -> Result<AppState, ApiError> {
    leptos::prelude::use_context::<AppState>().ok_or_else(|| {
        tracing::error!("AppState missing from the Leptos context");
        ApiError::internal()
    })
}

/// Completes at `at`, never when there is no moment set: a `select!` branch for an optional
/// deadline.
pub async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
