//! Users and sessions on PostgreSQL.

use async_trait::async_trait;

use super::PgDb;
use crate::auth::PublicUser;
use crate::auth::server::store::{
    ActiveSession, CredentialsRow, SessionRow, SessionStore, UserCredentials, UserRow, UserStore,
    like_prefix,
};
use crate::server::storage::StoreResult;

#[async_trait]
impl UserStore for PgDb {
    async fn create_user(
        &self,
        username: &str,
        display_name: &str,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<PublicUser> {
        let row = sqlx::query_as::<_, UserRow>(
            "INSERT INTO users (username, display_name, password_hash, created_at)
             VALUES ($1, $2, $3, $4)
             RETURNING id, username, display_name, last_seen_at",
        )
        .bind(username)
        .bind(display_name)
        .bind(password_hash)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }

    async fn user_credentials(&self, username: &str) -> StoreResult<Option<UserCredentials>> {
        let row = sqlx::query_as::<_, CredentialsRow>(
            "SELECT id, username, display_name, last_seen_at, password_hash
             FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn user_by_id(&self, id: i64) -> StoreResult<Option<PublicUser>> {
        let row = sqlx::query_as::<_, UserRow>(
            "SELECT id, username, display_name, last_seen_at FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn existing_user_ids(&self, ids: &[i64]) -> StoreResult<Vec<i64>> {
        Ok(
            sqlx::query_scalar("SELECT id FROM users WHERE id = ANY($1) ORDER BY id")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn search_users(&self, prefix: &str, limit: u32) -> StoreResult<Vec<PublicUser>> {
        // Byte order (COLLATE "C"), as SQLite sorts: the database's own collation may differ.
        let rows = sqlx::query_as::<_, UserRow>(
            "SELECT id, username, display_name, last_seen_at FROM users
             WHERE username ILIKE $1 ESCAPE '\\' OR display_name ILIKE $1 ESCAPE '\\'
             ORDER BY username COLLATE \"C\" LIMIT $2",
        )
        .bind(like_prefix(prefix))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn touch_last_seen(&self, user_id: i64, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE users SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn last_seen_of(&self, ids: &[i64]) -> StoreResult<Vec<(i64, Option<i64>)>> {
        Ok(
            sqlx::query_as("SELECT id, last_seen_at FROM users WHERE id = ANY($1) ORDER BY id")
                .bind(ids)
                .fetch_all(&self.pool)
                .await?,
        )
    }
}

#[async_trait]
impl SessionStore for PgDb {
    async fn create_session(
        &self,
        token_hash: &[u8],
        user_id: i64,
        now: i64,
        expires_at: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
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
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn delete_session(&self, token_hash: &[u8]) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
