//! `dealnest-chat copy-db`: moves a deployment from its SQLite file to an empty PostgreSQL
//! database, ids and seqs intact.
//!
//! The source is read inside one read transaction, so a server still running on it keeps
//! working and the copy is one consistent snapshot. The target is written inside one
//! transaction and checked (row counts, every channel's `last_seq`) before it commits: a copy
//! that fails or does not match leaves the target as empty as it was, and can be run again.

use std::collections::BTreeMap;
use std::str::FromStr;

use futures::TryStreamExt;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Postgres, Transaction};

use super::postgres::PgDb;
use super::sqlite::MIGRATOR as SQLITE_MIGRATOR;

/// Rows sent to PostgreSQL per statement: each column travels as one array parameter.
const BATCH: usize = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("cannot read the SQLite database {path}: {source}")]
    Source { path: String, source: sqlx::Error },
    #[error(
        "the SQLite database {path} has {applied} of {expected} migrations applied: start \
         DealNest Chat on it once to bring it up to date, then copy"
    )]
    SourceSchema {
        path: String,
        applied: usize,
        expected: usize,
    },
    #[error("cannot prepare the PostgreSQL database: {0}")]
    Target(#[from] super::StoreError),
    #[error("writing to PostgreSQL failed, nothing was kept: {0}")]
    Write(sqlx::Error),
    #[error(
        "the PostgreSQL database is not empty ({users} users, {channels} channels, {messages} \
         messages): copy-db only fills an empty database"
    )]
    NotEmpty {
        users: i64,
        channels: i64,
        messages: i64,
    },
    #[error("the copy does not match its source ({0}); nothing was kept")]
    Mismatch(String),
}

/// How far the copy is: `copied` of `total` rows of `table`.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub table: &'static str,
    pub copied: u64,
    pub total: u64,
}

/// Rows copied per table, in copy order.
pub type CopyReport = Vec<(&'static str, u64)>;

const TABLES: [&str; 5] = [
    "users",
    "sessions",
    "channels",
    "channel_members",
    "messages",
];

/// Copies everything in the SQLite database at `from` (a path or `sqlite:` URL) into the
/// PostgreSQL database at `to`, which must hold no users, channels or messages (migrations are
/// applied to it first). Calls `progress` after each batch.
pub async fn copy_sqlite_to_postgres(
    from: &str,
    to: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<CopyReport, CopyError> {
    let source_error = |source| CopyError::Source {
        path: from.to_owned(),
        source,
    };
    let named = |failure| match failure {
        Failure::Read(error) => source_error(error),
        Failure::Write(error) => CopyError::Write(error),
        Failure::Mismatch(what) => CopyError::Mismatch(what),
    };
    let options = if from.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(from).map_err(source_error)?
    } else {
        SqliteConnectOptions::new().filename(from)
    };
    let mut source = SqliteConnection::connect_with(&options.read_only(true))
        .await
        .map_err(source_error)?;
    // One snapshot for everything read below, however long the copy takes.
    sqlx::query("BEGIN")
        .execute(&mut source)
        .await
        .map_err(source_error)?;
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut source)
        .await
        .map_err(source_error)?;
    let expected = SQLITE_MIGRATOR.migrations.len();
    if usize::try_from(applied).ok() != Some(expected) {
        return Err(CopyError::SourceSchema {
            path: from.to_owned(),
            applied: usize::try_from(applied).unwrap_or(0),
            expected,
        });
    }

    let target = PgDb::connect(to).await?;
    let mut tx = target.pool.begin().await.map_err(CopyError::Write)?;
    let (users, channels, messages): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM channels),
                (SELECT COUNT(*) FROM messages)",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(CopyError::Write)?;
    if users + channels + messages > 0 {
        return Err(CopyError::NotEmpty {
            users,
            channels,
            messages,
        });
    }

    let mut report = CopyReport::new();
    for table in TABLES {
        let total: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&mut source)
                .await
                .map_err(source_error)?;
        let total = u64::try_from(total).unwrap_or(0);
        let mut copied = 0;
        let mut record = |rows: usize| {
            copied += rows as u64;
            progress(Progress {
                table,
                copied,
                total,
            });
        };
        match table {
            "users" => copy_users(&mut source, &mut tx, &mut record).await,
            "sessions" => copy_sessions(&mut source, &mut tx, &mut record).await,
            "channels" => copy_channels(&mut source, &mut tx, &mut record).await,
            "channel_members" => copy_members(&mut source, &mut tx, &mut record).await,
            _ => copy_messages(&mut source, &mut tx, &mut record).await,
        }
        .map_err(&named)?;
        if total == 0 {
            progress(Progress {
                table,
                copied: 0,
                total,
            });
        }
        report.push((table, total));
    }

    // Ids were copied as they were: move each identity sequence past the largest.
    for table in ["users", "channels", "messages"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'),
                           COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"
        )))
        .execute(&mut *tx)
        .await
        .map_err(CopyError::Write)?;
    }

    verify(&mut source, &mut tx, &report)
        .await
        .map_err(&named)?;
    tx.commit().await.map_err(CopyError::Write)?;
    Ok(report)
}

/// What went wrong in a step of the copy, before it is named in a [`CopyError`].
enum Failure {
    Read(sqlx::Error),
    Write(sqlx::Error),
    Mismatch(String),
}

type Tx = Transaction<'static, Postgres>;

/// Streams `$select` from the source in batches of [`BATCH`] rows of type `$row` and writes
/// each with the statement `$write` builds from the transaction and the batch.
macro_rules! copy_in_batches {
    ($source:expr, $tx:expr, $record:expr, $select:literal, $row:ty,
     |$t:ident, $r:ident| $write:expr) => {{
        let mut rows = sqlx::query_as::<_, $row>($select)
            .fetch($source)
            .map_err(Failure::Read)
            .try_chunks(BATCH)
            .map_err(|chunks| chunks.1);
        while let Some(batch) = rows.try_next().await? {
            {
                let $t: &mut Tx = &mut *$tx;
                let $r: &Vec<$row> = &batch;
                $write.await.map_err(Failure::Write)?;
            }
            $record(batch.len());
        }
        Ok(())
    }};
}

type UserRow = (i64, String, String, String, i64, Option<i64>);

async fn copy_users(
    source: &mut SqliteConnection,
    tx: &mut Tx,
    record: &mut dyn FnMut(usize),
) -> Result<(), Failure> {
    copy_in_batches!(
        source,
        tx,
        record,
        "SELECT id, username, display_name, password_hash, created_at, last_seen_at
         FROM users ORDER BY id",
        UserRow,
        |tx, rows| {
            sqlx::query(
                "INSERT INTO users (id, username, display_name, password_hash, created_at,
                                    last_seen_at)
                 SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[],
                                      $5::BIGINT[], $6::BIGINT[])",
            )
            .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.3.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.4).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.5).collect::<Vec<_>>())
            .execute(&mut **tx)
        }
    )
}

type SessionRow = (Vec<u8>, i64, i64, i64);

async fn copy_sessions(
    source: &mut SqliteConnection,
    tx: &mut Tx,
    record: &mut dyn FnMut(usize),
) -> Result<(), Failure> {
    copy_in_batches!(
        source,
        tx,
        record,
        "SELECT token_hash, user_id, created_at, expires_at FROM sessions ORDER BY token_hash",
        SessionRow,
        |tx, rows| {
            sqlx::query(
                "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)
                 SELECT * FROM UNNEST($1::BYTEA[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[])",
            )
            .bind(rows.iter().map(|r| r.0.as_slice()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.3).collect::<Vec<_>>())
            .execute(&mut **tx)
        }
    )
}

type ChannelRow = (i64, String, Option<String>, Option<String>, i64, i64, i64);

async fn copy_channels(
    source: &mut SqliteConnection,
    tx: &mut Tx,
    record: &mut dyn FnMut(usize),
) -> Result<(), Failure> {
    copy_in_batches!(
        source,
        tx,
        record,
        "SELECT id, kind, name, direct_key, created_by, created_at, last_seq
         FROM channels ORDER BY id",
        ChannelRow,
        |tx, rows| {
            sqlx::query(
                "INSERT INTO channels (id, kind, name, direct_key, created_by, created_at,
                                       last_seq)
                 SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[],
                                      $5::BIGINT[], $6::BIGINT[], $7::BIGINT[])",
            )
            .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.2.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.3.as_deref()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.4).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.5).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.6).collect::<Vec<_>>())
            .execute(&mut **tx)
        }
    )
}

type MemberRow = (i64, i64, String, i64, i64);

async fn copy_members(
    source: &mut SqliteConnection,
    tx: &mut Tx,
    record: &mut dyn FnMut(usize),
) -> Result<(), Failure> {
    copy_in_batches!(
        source,
        tx,
        record,
        "SELECT channel_id, user_id, role, joined_at, last_read_seq
         FROM channel_members ORDER BY channel_id, user_id",
        MemberRow,
        |tx, rows| {
            sqlx::query(
                "INSERT INTO channel_members (channel_id, user_id, role, joined_at, last_read_seq)
                 SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[],
                                      $5::BIGINT[])",
            )
            .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.2.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.3).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.4).collect::<Vec<_>>())
            .execute(&mut **tx)
        }
    )
}

#[derive(sqlx::FromRow)]
struct MessageRow {
    id: i64,
    channel_id: i64,
    seq: i64,
    sender_id: i64,
    client_id: String,
    body: String,
    created_at: i64,
    edited_at: Option<i64>,
    deleted_at: Option<i64>,
}

async fn copy_messages(
    source: &mut SqliteConnection,
    tx: &mut Tx,
    record: &mut dyn FnMut(usize),
) -> Result<(), Failure> {
    copy_in_batches!(
        source,
        tx,
        record,
        "SELECT id, channel_id, seq, sender_id, client_id, body, created_at, edited_at,
                deleted_at
         FROM messages ORDER BY id",
        MessageRow,
        |tx, rows| {
            sqlx::query(
                "INSERT INTO messages (id, channel_id, seq, sender_id, client_id, body,
                                       created_at, edited_at, deleted_at)
                 SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::BIGINT[],
                                      $5::TEXT[], $6::TEXT[], $7::BIGINT[], $8::BIGINT[],
                                      $9::BIGINT[])",
            )
            .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.channel_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.seq).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.sender_id).collect::<Vec<_>>())
            .bind(
                rows.iter()
                    .map(|r| r.client_id.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(rows.iter().map(|r| r.body.as_str()).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.edited_at).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.deleted_at).collect::<Vec<_>>())
            .execute(&mut **tx)
        }
    )
}

/// Row counts and every channel's `last_seq` agree between source and target.
async fn verify(
    source: &mut SqliteConnection,
    tx: &mut Tx,
    report: &CopyReport,
) -> Result<(), Failure> {
    for &(table, expected) in report {
        let copied: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&mut **tx)
                .await
                .map_err(Failure::Write)?;
        if u64::try_from(copied).ok() != Some(expected) {
            return Err(Failure::Mismatch(format!(
                "{table}: {expected} rows in the source, {copied} copied"
            )));
        }
    }
    let select = "SELECT id, last_seq FROM channels ORDER BY id";
    let expected: BTreeMap<i64, i64> = sqlx::query_as(select)
        .fetch_all(&mut *source)
        .await
        .map_err(Failure::Read)?
        .into_iter()
        .collect();
    let copied: BTreeMap<i64, i64> = sqlx::query_as(select)
        .fetch_all(&mut **tx)
        .await
        .map_err(Failure::Write)?
        .into_iter()
        .collect();
    if let Some((id, last_seq)) = expected
        .iter()
        .find(|&(id, last_seq)| copied.get(id) != Some(last_seq))
    {
        return Err(Failure::Mismatch(format!(
            "channel {id}: last_seq {last_seq} in the source, {:?} copied",
            copied.get(id)
        )));
    }
    // Each channel's newest message is at its last_seq, in the copy as in the source.
    let behind: Option<(i64, i64, i64)> = sqlx::query_as(
        "SELECT c.id, c.last_seq, m.max_seq FROM channels c
         JOIN (SELECT channel_id, MAX(seq) AS max_seq FROM messages GROUP BY channel_id) m
           ON m.channel_id = c.id
         WHERE m.max_seq <> c.last_seq LIMIT 1",
    )
    .fetch_optional(&mut **tx)
    .await
    .map_err(Failure::Write)?;
    if let Some((id, last_seq, max_seq)) = behind {
        return Err(Failure::Mismatch(format!(
            "channel {id}: last_seq {last_seq} but its newest message has seq {max_seq}"
        )));
    }
    Ok(())
}
