//! The storage handle. Each feature defines its own store trait (`UserStore`, `ChannelStore`…)
//! next to its service; [`Database`] is all of them together, so services take
//! `&dyn Database` and never name a backend. [`open`] picks SQLite ([`SqliteDb`]) or
//! PostgreSQL ([`PgDb`]) from the URL. The types they share live below, in `storage.rs`.

use std::sync::Arc;

use super::postgres::PgDb;
use super::sqlite::SqliteDb;
use super::storage::{Backend, Readiness, StoreResult};

use crate::auth::server::store::{SessionStore, UserStore};
use crate::channels::store::ChannelStore;
use crate::messages::store::MessageStore;
use crate::receipts::store::ReceiptStore;

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

/// Opens the database `url` names (see [`Backend::of`]), applying its migrations.
/// `Ok(None)` for a URL of an unsupported scheme.
pub async fn open(url: &str) -> StoreResult<Option<Arc<dyn Database>>> {
    Ok(match Backend::of(url) {
        Some(Backend::Sqlite) => Some(Arc::new(SqliteDb::connect(url).await?)),
        Some(Backend::Postgres) => Some(Arc::new(PgDb::connect(url).await?)),
        None => None,
    })
}
