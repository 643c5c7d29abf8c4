//! Users and sessions on SQLite.

use async_trait::async_trait;

use super::SqliteDb;
use crate::auth::PublicUser;
use crate::auth::server::store::{
    ActiveSession, CredentialsRow, SessionRow, SessionStore, UserCredentials, UserRow, UserStore,
    like_prefix,
};
use crate::server::storage::StoreResult;

/// A list of ids as one bound value, expanded by `json_each`.
pub(super) fn json_ids(ids: &[i64]) -> String {
    serde_json::to_string(ids).unwrap_or_else(|_| "[]".into())
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
        let row = sqlx::query_as::<_, UserRow>(
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
        Ok(row.into())
    }

    async fn user_credentials(&self, username: &str) -> StoreResult<Option<UserCredentials>> {
        let row = sqlx::query_as::<_, CredentialsRow>(
            "SELECT id, username, display_name, last_seen_at, password_hash
             FROM users WHERE username = ?",
        )
        .bind(username)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<PublicUser>> {
        let row = sqlx::query_as::<_, UserRow>(
            "SELECT id, username, display_name, last_seen_at FROM users WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn existing_user_ids(&self, ids: &[i64]) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM users WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
        )
        .bind(json_ids(ids))
        .fetch_all(&self.reader)
        .await?)
    }

    async fn search_users(&self, prefix: &str, limit: u32) -> StoreResult<Vec<PublicUser>> {
        // SQLite's LIKE ignores case for ASCII letters only; PostgreSQL's ILIKE for all.
        let rows = sqlx::query_as::<_, UserRow>(
            "SELECT id, username, display_name, last_seen_at FROM users
             WHERE username LIKE ?1 ESCAPE '\\' OR display_name LIKE ?1 ESCAPE '\\'
             ORDER BY username LIMIT ?2",
        )
        .bind(like_prefix(prefix))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
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
        Ok(sqlx::query_as(
            "SELECT id, last_seen_at FROM users WHERE id IN (SELECT value FROM json_each(?))
             ORDER BY id",
        )
        .bind(json_ids(ids))
        .fetch_all(&self.reader)
        .await?)
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
        let row = sqlx::query_as::<_, SessionRow>(
            "SELECT u.id, u.username, u.display_name, s.expires_at FROM sessions s
             JOIN users u ON u.id = s.user_id
             WHERE s.token_hash = ? AND s.expires_at > ?",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn delete_session(&self, token_hash: &[u8]) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}
