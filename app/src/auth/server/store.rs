//! Account storage: users and sessions.

use async_trait::async_trait;

use super::AuthUser;
use crate::auth::PublicUser;
use crate::server::storage::StoreResult;

/// A user with the stored password hash, for verifying a log-in. Never leaves the server.
#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: PublicUser,
    pub password_hash: String,
}

#[async_trait]
pub trait UserStore {
    /// Inserts a user; a taken username fails with `StoreError::Unique`.
    async fn create_user(
        &self,
        username: &str,
        display_name: &str,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<PublicUser>;
    async fn user_credentials(&self, username: &str) -> StoreResult<Option<UserCredentials>>;
    async fn user_by_id(&self, id: i64) -> StoreResult<Option<PublicUser>>;
    /// The ids among `ids` that belong to existing users.
    async fn existing_user_ids(&self, ids: &[i64]) -> StoreResult<Vec<i64>>;
    /// Users whose username or display name starts with `prefix` (case-insensitive).
    async fn search_users(&self, prefix: &str, limit: u32) -> StoreResult<Vec<PublicUser>>;
    async fn touch_last_seen(&self, user_id: i64, now: i64) -> StoreResult<()>;
    /// `(id, last_seen_at)` of each existing user among `ids`.
    async fn last_seen_of(&self, ids: &[i64]) -> StoreResult<Vec<(i64, Option<i64>)>>;
}

/// A session that has not expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSession {
    pub user: AuthUser,
    /// Unix epoch milliseconds.
    pub expires_at: i64,
}

#[async_trait]
pub trait SessionStore {
    async fn create_session(
        &self,
        token_hash: &[u8],
        user_id: i64,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()>;
    /// The user owning an unexpired session, and when it expires.
    async fn session_user(&self, token_hash: &[u8], now: i64)
    -> StoreResult<Option<ActiveSession>>;
    async fn delete_session(&self, token_hash: &[u8]) -> StoreResult<()>;
}

/// A `users` row as the stores select it (`id, username, display_name, last_seen_at`).
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub last_seen_at: Option<i64>,
}

impl From<UserRow> for PublicUser {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            username: row.username,
            display_name: row.display_name,
            last_seen_at: row.last_seen_at,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CredentialsRow {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub password_hash: String,
}

impl From<CredentialsRow> for UserCredentials {
    fn from(row: CredentialsRow) -> Self {
        Self {
            user: row.user.into(),
            password_hash: row.password_hash,
        }
    }
}

/// A session joined with its user.
#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub id: i64,
    pub username: String,
    pub display_name: String,
    pub expires_at: i64,
}

impl From<SessionRow> for ActiveSession {
    fn from(row: SessionRow) -> Self {
        Self {
            user: AuthUser {
                id: row.id,
                username: row.username,
                display_name: row.display_name,
            },
            expires_at: row.expires_at,
        }
    }
}

/// Escapes `%`, `_` and `\` so user input matches literally in a `LIKE … ESCAPE '\'`.
pub(crate) fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::like_prefix;

    #[test]
    fn like_prefix_escapes_wildcards() {
        assert_eq!(like_prefix("an"), "an%");
        assert_eq!(like_prefix("a_%\\"), "a\\_\\%\\\\%");
    }
}
