//! The PostgreSQL backend, for deployments that outgrow one machine: several nodes share one
//! database. Nothing here assumes a single writer. Writes that must not interleave lock rows
//! first, always in the same order (channels by id, then users by id), so concurrent
//! transactions on different nodes serialize where they must and never deadlock. One file per
//! feature beside this one implements that feature's store trait.

mod auth;
mod channels;
mod messages;
mod receipts;

use std::str::FromStr;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use super::storage::{Backend, Readiness, StoreResult};

/// Connections per node. Each node of a cluster has its own pool, so PostgreSQL's
/// `max_connections` (100 by default) must exceed nodes × this.
const POOL_SIZE: u32 = 16;

/// The migrations built into the binary.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[derive(Clone, Debug)]
pub struct PgDb {
    pub(crate) pool: PgPool,
    options: PgConnectOptions,
}

impl PgDb {
    /// Connects to the database at `url` (`postgres://…`) and applies migrations. Nodes
    /// starting together are safe: sqlx holds an advisory lock while it migrates.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        // Custom plans for every execution: a generic plan made while a table was small (a new
        // deployment, before autovacuum analyzes it) keeps seq-scanning it once it has grown,
        // which made the used-keys check of every batch scan all messages.
        let options =
            PgConnectOptions::from_str(url)?.options([("plan_cache_mode", "force_custom_plan")]);
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool, options })
    }
}

#[async_trait::async_trait]
impl Readiness for PgDb {
    async fn pending_migrations(&self) -> StoreResult<usize> {
        let mut connection = PgConnection::connect_with(&self.options).await?;
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut connection)
                .await?;
        connection.close().await?;
        let applied = usize::try_from(applied).unwrap_or(0);
        Ok(MIGRATOR.migrations.len().saturating_sub(applied))
    }

    fn backend(&self) -> Backend {
        Backend::Postgres
    }
}

/// Whether `error` is PostgreSQL refusing a transaction that a retry can complete: a unique
/// violation (another node stored the same key first; the retry sees its row) or a deadlock.
pub(crate) fn is_retryable(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|db| db.code())
        .is_some_and(|code| code == "23505" || code == "40P01")
}
