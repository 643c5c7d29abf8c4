//! The storage layer's base: the error every store returns, which backend a URL names, and the
//! readiness check. Every feature's store trait and both backends import this file; it imports
//! none of them (see `db.rs` for the handle that joins the stores, and for opening one).

use super::metrics;

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
                metrics::database_error(&error);
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

/// Which cap a membership write would have exceeded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapReached {
    /// The channel already has `max` members.
    #[error("the channel already has {max} members")]
    ChannelFull { max: u32 },
    /// These users are already members of `max` channels each.
    #[error("users {user_ids:?} are already in {max} channels")]
    ChannelsPerUser { user_ids: Vec<i64>, max: u32 },
}

impl From<CapReached> for StoreError {
    fn from(cap: CapReached) -> Self {
        Self::CapReached(cap)
    }
}
