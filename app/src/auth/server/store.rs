//! Account storage: users and sessions.

use async_trait::async_trait;
use sqlx::Row;

use super::AuthUser;
use crate::auth::PublicUser;
use crate::server::SqliteDb;
use crate::server::db::StoreResult;

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

pub(crate) fn public_user(row: &sqlx::sqlite::SqliteRow) -> Result<PublicUser, sqlx::Error> {
    Ok(PublicUser {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        last_seen_at: row.try_get("last_seen_at")?,
    })
}

/// Escapes `%`, `_` and `\` so user input matches literally in a `LIKE … ESCAPE '\'`.
fn like_prefix(prefix: &str) -> String {
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

#[async_trait]
impl UserStore for SqliteDb {
    async fn create_user(
        &self,
        username: &str,
        display_name: &str,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<PublicUser> {
        let row = sqlx::query(
            "INSERT INTO users (username, display_name, password_hash, created_at)
             VALUES (?, ?, ?, ?)
             RETURNING id, username, display_name, last_seen_at",
        )
        .bind(username)
        .bind(display_name)
        .bind(password_hash)
        .bind(now)
        .fetch_one(&self.writer)
        .await?;
        Ok(public_user(&row)?)
    }

    async fn user_credentials(&self, username: &str) -> StoreResult<Option<UserCredentials>> {
        let row = sqlx::query(
            "SELECT id, username, display_name, last_seen_at, password_hash
             FROM users WHERE username = ?",
        )
        .bind(username)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(UserCredentials {
                user: public_user(&row)?,
                password_hash: row.try_get("password_hash")?,
            })
        })
        .transpose()
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<PublicUser>> {
        let row =
            sqlx::query("SELECT id, username, display_name, last_seen_at FROM users WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.reader)
                .await?;
        Ok(row.as_ref().map(public_user).transpose()?)
    }

    async fn existing_user_ids(&self, ids: &[i64]) -> StoreResult<Vec<i64>> {
        let ids_json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let rows = sqlx::query("SELECT id FROM users WHERE id IN (SELECT value FROM json_each(?))")
            .bind(ids_json)
            .fetch_all(&self.reader)
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.try_get("id"))
            .collect::<Result<_, _>>()?)
    }

    async fn search_users(&self, prefix: &str, limit: u32) -> StoreResult<Vec<PublicUser>> {
        let pattern = like_prefix(prefix);
        let rows = sqlx::query(
            "SELECT id, username, display_name, last_seen_at FROM users
             WHERE username LIKE ?1 ESCAPE '\\' OR display_name LIKE ?1 ESCAPE '\\'
             ORDER BY username LIMIT ?2",
        )
        .bind(pattern)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(public_user).collect::<Result<_, _>>()?)
    }

    async fn touch_last_seen(&self, user_id: i64, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE users SET last_seen_at = ? WHERE id = ?")
            .bind(now)
            .bind(user_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn last_seen_of(&self, ids: &[i64]) -> StoreResult<Vec<(i64, Option<i64>)>> {
        let ids_json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let rows = sqlx::query(
            "SELECT id, last_seen_at FROM users WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(ids_json)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows
            .iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("last_seen_at")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }
}

#[async_trait]
impl SessionStore for SqliteDb {
    async fn create_session(
        &self,
        token_hash: &[u8],
        user_id: i64,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn session_user(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> StoreResult<Option<ActiveSession>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.display_name, s.expires_at FROM sessions s
             JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = ? AND s.expires_at > ?",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(ActiveSession {
                user: AuthUser {
                    id: row.try_get("id")?,
                    username: row.try_get("username")?,
                    display_name: row.try_get("display_name")?,
                },
                expires_at: row.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    async fn delete_session(&self, token_hash: &[u8]) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
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
