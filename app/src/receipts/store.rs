//! Read-pointer storage.

use async_trait::async_trait;
use sqlx::Row;

use super::{ReadPointer, ReadState};
use crate::server::SqliteDb;
use crate::server::db::StoreResult;

#[async_trait]
pub trait ReceiptStore {
    /// Raises the member's pointer to `seq` if lower. Returns the stored pointer and whether
    /// it moved.
    async fn mark_read(&self, channel_id: i64, user_id: i64, seq: i64) -> StoreResult<(i64, bool)>;
    async fn read_state(&self, channel_id: i64) -> StoreResult<ReadState>;
}

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
        let rows = sqlx::query(
            "SELECT user_id, last_read_seq FROM channel_members WHERE channel_id = ?
             ORDER BY user_id",
        )
        .bind(channel_id)
        .fetch_all(&self.reader)
        .await?;
        let pointers = rows
            .iter()
            .map(|row| {
                Ok(ReadPointer {
                    channel_id,
                    user_id: row.try_get("user_id")?,
                    last_read_seq: row.try_get("last_read_seq")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(ReadState {
            channel_id,
            last_seq,
            pointers,
        })
    }
}
