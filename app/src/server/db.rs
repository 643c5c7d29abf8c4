//! The storage handle. Each feature defines its own store trait (`UserStore`, `ChannelStore`…)
//! next to its service; [`Database`] is all of them together, so services take
//! `&dyn Database` and never name a backend. [`open`] picks SQLite ([`SqliteDb`]) or
//! PostgreSQL ([`PgDb`]) from the URL.

use std::sync::Arc;

use super::postgres::PgDb;
use super::sqlite::SqliteDb;

use crate::auth::server::store::{SessionStore, UserStore};
use crate::channels::store::{CapReached, ChannelStore};
use crate::messages::store::MessageStore;
use crate::receipts::store::ReceiptStore;

/// Whether storage can serve traffic, for `/ready`.
#[async_trait::async_trait]
pub trait Readiness {
    /// Opens a new connection (so a database that vanished or became unreadable since start-up
    /// is noticed even while pooled connections still hold it open) and counts the embedded
    /// migrations that are not applied.
    async fn pending_migrations(&self) -> StoreResult<usize>;
    /// Which backend this is: only a PostgreSQL database can be shared by several nodes.
    fn backend(&self) -> Backend;
}

/// Every store, behind one object-safe handle.
pub trait Database:
    UserStore
    + SessionStore
    + ChannelStore
    + MessageStore
    + ReceiptStore
    + Readiness
    + Send
    + Sync
    + 'static
{
}

impl<T> Database for T where
    T: UserStore
        + Readiness
        + SessionStore
        + ChannelStore
        + MessageStore
        + ReceiptStore
        + Send
        + Sync
        + 'static
{
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused the write; the string names the constraint's columns.
    #[error("unique constraint violated: {0}")]
    Unique(String),
    /// A membership cap refused the write (checked in the same transaction).
    #[error("{0}")]
    CapReached(CapReached),
    #[error(transparent)]
    Database(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match error.as_database_error() {
            Some(db) if db.is_unique_violation() => Self::Unique(db.message().to_owned()),
            _ => {
                super::metrics::database_error(&error);
                Self::Database(error)
            }
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which backend a `DATABASE_URL` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A file path, or a `sqlite:` URL.
    Sqlite,
    /// A `postgres://` or `postgresql://` URL.
    Postgres,
}

impl Backend {
    /// `None` for a URL of any other scheme.
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else if url.starts_with("sqlite:") || !url.contains("://") {
            Some(Self::Sqlite)
        } else {
            None
        }
    }
}

/// Opens the database `url` names (see [`Backend::of`]), applying its migrations.
/// `Ok(None)` for a URL of an unsupported scheme.
pub async fn open(url: &str) -> StoreResult<Option<Arc<dyn Database>>> {
    Ok(match Backend::of(url) {
        Some(Backend::Sqlite) => Some(Arc::new(SqliteDb::connect(url).await?)),
        Some(Backend::Postgres) => Some(Arc::new(PgDb::connect(url).await?)),
        None => None,
    })
}
