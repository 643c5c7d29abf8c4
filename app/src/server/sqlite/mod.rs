//! The SQLite backend, the embedded default: one file, no server. One file per feature beside
//! this one implements that feature's store trait.

mod auth;
mod channels;
mod messages;
mod receipts;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use super::storage::{Backend, Readiness, StoreError, StoreResult};

/// How often the background checkpointer copies the WAL into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// SQLite in WAL mode: one writer connection (SQLite allows one writer at a time, and a single
/// writer avoids lock upgrades failing with SQLITE_BUSY), a pool of readers, and a checkpointer.
///
/// The writer never checkpoints (`wal_autocheckpoint=0`). With SQLite's automatic checkpoint the
/// commit that crossed the threshold paid for it: it synced the whole WAL written since the last
/// checkpoint (32 MB at 8000 pages) and copied pages into the database file, stalling every send
/// queued behind it by 25–35 ms every few seconds (docs/PERFORMANCE.md, "ramp"). A task on its
/// own connection runs a PASSIVE checkpoint every second instead: it never waits for the writer,
/// the writer never waits for it, and each one syncs only a second's worth of WAL.
#[derive(Clone, Debug)]
pub struct SqliteDb {
    pub(crate) writer: SqlitePool,
    pub(crate) reader: SqlitePool,
    options: SqliteConnectOptions,
}

/// The migrations built into the binary.
pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

impl SqliteDb {
    /// Opens (creating if missing, with its folder) the database at `url`, a `sqlite:` URL or a
    /// plain file path, and applies migrations.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = if url.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url)?
        } else {
            SqliteConnectOptions::new().filename(url)
        };
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            .pragma("wal_autocheckpoint", "8000");
        if let Some(folder) = options.get_filename().parent()
            && !folder.as_os_str().is_empty()
        {
            std::fs::create_dir_all(folder).map_err(|e| StoreError::Database(e.into()))?;
        }
        // No ping before handing out a pooled connection (sqlx's default): a SQLite connection
        // is a file in this process, not a socket that can die, and each ping is one more round
        // trip to the connection's thread on every query.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        MIGRATOR.run(&writer).await?;
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        tokio::spawn(checkpoint_periodically(checkpointer));
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await?;
        Ok(Self {
            writer,
            reader,
            options,
        })
    }

    /// Opens a database file inside `folder` (used by tests for a fresh database each).
    pub async fn open_in(folder: &Path) -> StoreResult<Self> {
        Self::connect(&folder.join("dealnest.db").to_string_lossy()).await
    }

    /// Starts a write transaction that takes the write lock at once.
    pub(crate) async fn begin_write(
        &self,
    ) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }
}

#[async_trait::async_trait]
impl Readiness for SqliteDb {
    async fn pending_migrations(&self) -> StoreResult<usize> {
        let options = self.options.clone().create_if_missing(false);
        let mut connection = SqliteConnection::connect_with(&options).await?;
        let applied: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut connection)
                .await?;
        connection.close().await?;
        let applied = usize::try_from(applied).unwrap_or(0);
        Ok(MIGRATOR.migrations.len().saturating_sub(applied))
    }

    fn backend(&self) -> Backend {
        Backend::Sqlite
    }
}

/// Copies committed WAL frames into the database file, off the send path, for as long as the
/// runtime lives. A failure is logged and the next tick tries again; frames are never lost by a
/// missed checkpoint, the WAL only grows until one succeeds.
async fn checkpoint_periodically(pool: SqlitePool) {
    let mut ticks = tokio::time::interval(CHECKPOINT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if pool.is_closed() {
            return;
        }
        if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(%error, "WAL checkpoint failed");
        }
    }
}
