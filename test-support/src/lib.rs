//! Throwaway databases for the test suites (`app`'s storage tests, the API tests) and the
//! bench. This is the one place that decides which backend a test run uses, and the only code
//! that creates and drops databases; it is a crate of its own so none of it ships in the
//! product binary.
//!
//! `TEST_DATABASE_URL` naming a PostgreSQL server selects PostgreSQL (a scratch database per
//! test); anything else, SQLite (a file in a temporary folder per test).

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection, Executor};
use tempfile::TempDir;

/// The backend a test run stores in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Sqlite,
    Postgres,
}

impl TestBackend {
    /// PostgreSQL when `TEST_DATABASE_URL` names a PostgreSQL server, else SQLite.
    pub fn from_env() -> Self {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if url.starts_with("postgres") => Self::Postgres,
            _ => Self::Sqlite,
        }
    }
}

/// The PostgreSQL server tests create scratch databases on: `TEST_DATABASE_URL` when it names
/// one (the suites' PostgreSQL pass), else `TEST_POSTGRES_URL`, else the local server CI runs.
pub fn test_server() -> String {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => url,
        _ => std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
    }
}

/// A fresh, empty database of the backend under test, deleted when dropped.
#[derive(Debug)]
pub struct TestDatabase {
    url: String,
    storage: Storage,
}

#[derive(Debug)]
enum Storage {
    /// The folder holding the database file.
    Sqlite(TempDir),
    Postgres(ScratchDatabase),
    /// Another `TestDatabase` owns it (a second node on the same database).
    Shared,
}

impl TestDatabase {
    /// A database of the backend under test ([`TestBackend::from_env`]).
    pub async fn fresh() -> Self {
        match TestBackend::from_env() {
            TestBackend::Postgres => Self::postgres().await,
            TestBackend::Sqlite => Self::sqlite(),
        }
    }

    /// A SQLite file (`dealnest.db`) in a new temporary folder.
    pub fn sqlite() -> Self {
        let folder = tempfile::tempdir().expect("temp dir");
        Self {
            url: folder
                .path()
                .join("dealnest.db")
                .to_string_lossy()
                .into_owned(),
            storage: Storage::Sqlite(folder),
        }
    }

    /// A scratch database on [`test_server`].
    pub async fn postgres() -> Self {
        let scratch = ScratchDatabase::create(&test_server())
            .await
            .expect("create a scratch PostgreSQL database");
        Self {
            url: scratch.url().to_owned(),
            storage: Storage::Postgres(scratch),
        }
    }

    /// The same database for a second node; `self` must outlive it.
    pub fn share(&self) -> Self {
        Self {
            url: self.url.clone(),
            storage: Storage::Shared,
        }
    }

    /// What to set `DATABASE_URL` to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Makes the database refuse new connections (SQLite: its file moves away; PostgreSQL:
    /// `ALLOW_CONNECTIONS false`), until [`TestDatabase::reconnectable`].
    pub async fn unreachable(&self) {
        self.allow_connections(false).await;
    }

    pub async fn reconnectable(&self) {
        self.allow_connections(true).await;
    }

    async fn allow_connections(&self, allow: bool) {
        match &self.storage {
            Storage::Sqlite(folder) => {
                let file = folder.path().join("dealnest.db");
                let moved = file.with_extension("moved");
                let (from, to) = if allow { (moved, file) } else { (file, moved) };
                std::fs::rename(from, to).expect("move the database file");
            }
            Storage::Postgres(scratch) => {
                let mut admin = PgConnection::connect(&test_server())
                    .await
                    .expect("connect");
                admin
                    .execute(AssertSqlSafe(format!(
                        "ALTER DATABASE {} ALLOW_CONNECTIONS {allow}",
                        scratch.name()
                    )))
                    .await
                    .expect("alter database");
            }
            Storage::Shared => panic!("only the owner of a database can make it unreachable"),
        }
    }
}

/// An empty database created on the server at `server_url`, dropped (together with any
/// connection still open to it) when this value is dropped.
#[derive(Debug)]
pub struct ScratchDatabase {
    server_url: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    /// Creates `dealnest_scratch_<random>` on the server `server_url` names (any database
    /// there that the user may connect to).
    pub async fn create(server_url: &str) -> Result<Self, sqlx::Error> {
        let server = PgConnectOptions::from_str(server_url)?;
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        let name = format!("dealnest_scratch_{:016x}", u64::from_le_bytes(random));
        let mut connection = PgConnection::connect_with(&server).await?;
        connection
            .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        connection.close().await?;
        let url = with_database(server_url, &name);
        Ok(Self {
            server_url: server_url.to_owned(),
            name,
            url,
        })
    }

    /// The `postgres://` URL of this database.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// `url` with its database (the path) replaced by `database`; query parameters are kept.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{database}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let server_url = self.server_url.clone();
        let drop_sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop runs inside (or outside) some runtime that must not be blocked on: a thread of
        // its own with a runtime of its own does the work, and this waits for it.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut connection = PgConnection::connect(&server_url).await?;
                connection.execute(AssertSqlSafe(drop_sql)).await?;
                connection.close().await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop scratch database {}: {error}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn with_database_replaces_only_the_path() {
        assert_eq!(
            with_database("postgres://127.0.0.1:5432/test", "x"),
            "postgres://127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/test?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
