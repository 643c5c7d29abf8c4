//! Read pointers on SQLite.

use async_trait::async_trait;

use super::SqliteDb;
use crate::receipts::ReadState;
use crate::receipts::store::{ReceiptStore, read_state_from};
use crate::server::storage::StoreResult;

#[async_trait]
impl ReceiptStore for SqliteDb {
    async fn mark_read(&self, channel_id: i64, user_id: i64, seq: i64) -> StoreResult<(i64, bool)> {
        let moved = sqlx::query(
            "UPDATE channel_members SET last_read_seq = ?1
             WHERE channel_id = ?2 AND user_id = ?3 AND last_read_seq < ?1",
        )
        .bind(seq)
        .bind(channel_id)
        .bind(user_id)
        .execute(&self.writer)
        .await?
        .rows_affected()
            > 0;
        if moved {
            return Ok((seq, true));
        }
        let stored = sqlx::query_scalar(
            "SELECT last_read_seq FROM channel_members WHERE channel_id = ? AND user_id = ?",
        )
        .bind(channel_id)
        .bind(user_id)
        .fetch_one(&self.writer)
        .await?;
        Ok((stored, false))
    }

    async fn read_state(&self, channel_id: i64) -> StoreResult<ReadState> {
        let last_seq: i64 = sqlx::query_scalar("SELECT last_seq FROM channels WHERE id = ?")
            .bind(channel_id)
            .fetch_one(&self.reader)
            .await?;
        let pointers = sqlx::query_as(
            "SELECT user_id, last_read_seq FROM channel_members WHERE channel_id = ?
             ORDER BY user_id",
        )
        .bind(channel_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(read_state_from(channel_id, last_seq, pointers))
    }
}
