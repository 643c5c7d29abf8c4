//! Storage tests: the store traits against a fresh database each. The backend is SQLite
//! (a temporary file) unless `TEST_DATABASE_URL` names a PostgreSQL server, where each test gets
//! a scratch database of its own; `scripts/test.sh` runs this suite both ways.

mod channels;
mod messages;
mod sequencer;
mod two_nodes;

use app::auth::PublicUser;
use app::messages::Message;
use app::messages::store::NewMessage;
use std::ops::Deref;
use std::sync::Arc;

use app::server::storage::StoreError;
use app::server::{Database, SqliteDb};
use dealnest_test_support::{ScratchDatabase, TestBackend, test_server};
use tempfile::TempDir;

// Re-exported trait names so test modules can call store methods.
pub use app::auth::server::store::{SessionStore, UserStore};
pub use app::channels::store::{ChannelStore, MembershipCaps};

/// The default caps, for tests that are not about them.
pub const CAPS: MembershipCaps = MembershipCaps {
    max_members: 1000,
    max_channels_per_user: MembershipCaps::MAX_CHANNELS_PER_USER,
};
pub use app::messages::store::MessageStore;
pub use app::receipts::store::ReceiptStore;

/// A fresh database of the backend under test, deleted when dropped.
pub struct TestDb {
    db: Arc<dyn Database>,
    _storage: Storage,
}

enum Storage {
    Sqlite(#[allow(dead_code)] TempDir),
    Postgres(#[allow(dead_code)] ScratchDatabase),
}

impl TestDb {
    /// The shared handle, for code that keeps one (the sequencer, a service).
    pub fn handle(&self) -> Arc<dyn Database> {
        self.db.clone()
    }
}

impl Deref for TestDb {
    type Target = dyn Database;
    fn deref(&self) -> &Self::Target {
        self.db.as_ref()
    }
}

/// Anything a test can store through: a [`TestDb`], a backend, or an `Arc` of one.
pub trait AsDatabase {
    fn database(&self) -> &dyn Database;
}

impl AsDatabase for TestDb {
    fn database(&self) -> &dyn Database {
        self.db.as_ref()
    }
}

impl AsDatabase for SqliteDb {
    fn database(&self) -> &dyn Database {
        self
    }
}

impl AsDatabase for app::server::PgDb {
    fn database(&self) -> &dyn Database {
        self
    }
}

impl<T: AsDatabase> AsDatabase for Arc<T> {
    fn database(&self) -> &dyn Database {
        self.as_ref().database()
    }
}

/// A scratch database on [`test_server`].
pub async fn scratch_postgres() -> ScratchDatabase {
    ScratchDatabase::create(&test_server())
        .await
        .expect("create a scratch PostgreSQL database")
}

/// A fresh database of the backend under test.
pub async fn fresh_db() -> TestDb {
    match TestBackend::from_env() {
        TestBackend::Postgres => {
            let scratch = scratch_postgres().await;
            let db = app::server::PgDb::connect(scratch.url())
                .await
                .expect("open the scratch database");
            TestDb {
                db: Arc::new(db),
                _storage: Storage::Postgres(scratch),
            }
        }
        TestBackend::Sqlite => {
            let (db, dir) = fresh_sqlite().await;
            TestDb {
                db: Arc::new(db),
                _storage: Storage::Sqlite(dir),
            }
        }
    }
}

/// A fresh SQLite database, for tests of SQLite's own behaviour; keep the `TempDir` alive.
pub async fn fresh_sqlite() -> (SqliteDb, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = SqliteDb::open_in(dir.path()).await.expect("open database");
    (db, dir)
}

/// What `send` did: the stored message, and whether this call stored it.
pub struct Sent {
    pub message: Message,
    pub created: bool,
}

/// Stores one message the way the writer does, and reads it back.
pub async fn send(
    db: &impl AsDatabase,
    channel_id: i64,
    sender_id: i64,
    client_id: &str,
    body: &str,
    now: i64,
) -> Result<Sent, StoreError> {
    let new = NewMessage {
        channel_id,
        sender_id,
        client_id: client_id.to_owned(),
        body: body.to_owned(),
        created_at: now,
    };
    let db = db.database();
    let stored = db.insert_messages(&[new]).await?;
    assert_eq!(stored.len(), 1, "one result per message");
    let created = stored[0].is_some();
    let message = db
        .message_by_client_id(sender_id, client_id)
        .await?
        .expect("stored now or before (senders in these tests are members)");
    if let Some(stored) = stored[0] {
        assert_eq!((message.id, message.seq), (stored.id, stored.seq));
    }
    Ok(Sent { message, created })
}

pub async fn user(db: &impl AsDatabase, username: &str) -> PublicUser {
    db.database()
        .create_user(username, &username.to_uppercase(), "not-a-real-hash", 1)
        .await
        .expect("create user")
}

#[tokio::test]
async fn migrations_create_a_database_file_and_folder() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("a/b/chat.db");
    SqliteDb::connect(&nested.to_string_lossy()).await.unwrap();
    assert!(nested.exists());
    // Opening again applies nothing new and keeps working.
    SqliteDb::connect(&format!("sqlite://{}", nested.display()))
        .await
        .unwrap();
}

#[tokio::test]
async fn usernames_are_unique() {
    let db = fresh_db().await;
    user(&db, "ann").await;
    let again = db.create_user("ann", "Other Ann", "h", 2).await;
    assert!(matches!(again, Err(StoreError::Unique(_))), "{again:?}");
}

#[tokio::test]
async fn sessions_resolve_until_expired_or_deleted() {
    let db = fresh_db().await;
    let ann = user(&db, "ann").await;
    db.create_session(b"hash-1", ann.id, 100, 200)
        .await
        .unwrap();
    assert_eq!(
        db.session_user(b"hash-1", 150)
            .await
            .unwrap()
            .map(|session| (session.user.id, session.expires_at)),
        Some((ann.id, 200))
    );
    assert!(
        db.session_user(b"hash-1", 200).await.unwrap().is_none(),
        "expired"
    );
    assert!(
        db.session_user(b"other", 150).await.unwrap().is_none(),
        "unknown"
    );
    db.delete_session(b"hash-1").await.unwrap();
    assert!(
        db.session_user(b"hash-1", 150).await.unwrap().is_none(),
        "deleted"
    );
}

#[tokio::test]
async fn user_search_matches_prefixes_literally() {
    let db = fresh_db().await;
    user(&db, "ann").await;
    user(&db, "anna_b").await;
    user(&db, "bob").await;
    let names = |found: Vec<PublicUser>| found.into_iter().map(|u| u.username).collect::<Vec<_>>();
    assert_eq!(
        names(db.search_users("an", 10).await.unwrap()),
        ["ann", "anna_b"]
    );
    // Display names are upper-cased usernames here: search is case-insensitive.
    assert_eq!(names(db.search_users("BO", 10).await.unwrap()), ["bob"]);
    // `_` is a literal, not a wildcard.
    assert_eq!(
        names(db.search_users("ann_", 10).await.unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(db.search_users("an", 1).await.unwrap().len(), 1);
}
