//! Message storage. The per-channel `seq` is taken from `channels.last_seq` inside the same
//! transaction as the insert, so it is gap-free and strictly increasing even under concurrent
//! senders; a failed insert rolls the counter back with it.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Message, MessagePage, PageCursor};
use crate::server::SqliteDb;
use crate::server::db::StoreResult;

/// What a send did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendOutcome {
    pub message: Message,
    /// False when the `client_id` was already used and `message` is the original.
    pub created: bool,
}

#[async_trait]
pub trait MessageStore {
    /// Stores a message with the next seq of its channel, and moves the sender's read pointer
    /// to it. When `(sender_id, client_id)` exists, returns that message instead.
    async fn insert_message(
        &self,
        channel_id: i64,
        sender_id: i64,
        client_id: &str,
        body: &str,
        now: i64,
    ) -> StoreResult<SendOutcome>;
    async fn message_by_id(&self, message_id: i64) -> StoreResult<Option<Message>>;
    async fn list_messages(
        &self,
        channel_id: i64,
        cursor: PageCursor,
        limit: u32,
    ) -> StoreResult<MessagePage>;
    /// Replaces the body of a message that is not deleted; `None` when there is no such message.
    async fn edit_message(
        &self,
        message_id: i64,
        body: &str,
        now: i64,
    ) -> StoreResult<Option<Message>>;
    /// Erases the body and marks the message deleted (deleting twice keeps the first time).
    async fn delete_message(&self, message_id: i64, now: i64) -> StoreResult<Option<Message>>;
}

const SELECT_MESSAGE: &str = "SELECT m.id, m.channel_id, m.seq, m.sender_id,
        u.display_name AS sender_name, m.client_id,
        CASE WHEN m.deleted_at IS NULL THEN m.body END AS body,
        m.created_at, m.edited_at, m.deleted_at
    FROM messages m JOIN users u ON u.id = m.sender_id";

fn message(row: &SqliteRow) -> Result<Message, sqlx::Error> {
    Ok(Message {
        id: row.try_get("id")?,
        channel_id: row.try_get("channel_id")?,
        seq: row.try_get("seq")?,
        sender_id: row.try_get("sender_id")?,
        sender_name: row.try_get("sender_name")?,
        client_id: row.try_get("client_id")?,
        body: row.try_get("body")?,
        created_at: row.try_get("created_at")?,
        edited_at: row.try_get("edited_at")?,
        deleted_at: row.try_get("deleted_at")?,
    })
}

/// `sqlx` wants `'static` SQL (its injection guard); these strings are built from constants.
macro_rules! message_query {
    ($tail:literal) => {
        sqlx::query(const_format::concatcp!(SELECT_MESSAGE, " ", $tail))
    };
}

#[async_trait]
impl MessageStore for SqliteDb {
    async fn insert_message(
        &self,
        channel_id: i64,
        sender_id: i64,
        client_id: &str,
        body: &str,
        now: i64,
    ) -> StoreResult<SendOutcome> {
        let mut tx = self.begin_write().await?;
        if let Some(row) = message_query!("WHERE m.sender_id = ? AND m.client_id = ?")
            .bind(sender_id)
            .bind(client_id)
            .fetch_optional(&mut *tx)
            .await?
        {
            return Ok(SendOutcome {
                message: message(&row)?,
                created: false,
            });
        }
        let seq: i64 = sqlx::query_scalar(
            "UPDATE channels SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq",
        )
        .bind(channel_id)
        .fetch_one(&mut *tx)
        .await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO messages (channel_id, seq, sender_id, client_id, body, created_at)
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(channel_id)
        .bind(seq)
        .bind(sender_id)
        .bind(client_id)
        .bind(body)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE channel_members SET last_read_seq = max(last_read_seq, ?)
             WHERE channel_id = ? AND user_id = ?",
        )
        .bind(seq)
        .bind(channel_id)
        .bind(sender_id)
        .execute(&mut *tx)
        .await?;
        let row = message_query!("WHERE m.id = ?")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(SendOutcome {
            message: message(&row)?,
            created: true,
        })
    }

    async fn message_by_id(&self, message_id: i64) -> StoreResult<Option<Message>> {
        let row = message_query!("WHERE m.id = ?")
            .bind(message_id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(message).transpose()?)
    }

    async fn list_messages(
        &self,
        channel_id: i64,
        cursor: PageCursor,
        limit: u32,
    ) -> StoreResult<MessagePage> {
        // One extra row tells whether there is more beyond the page.
        let fetch = i64::from(limit) + 1;
        let query = match cursor {
            PageCursor::Newest => {
                message_query!("WHERE m.channel_id = ? ORDER BY m.seq DESC LIMIT ?")
                    .bind(channel_id)
                    .bind(fetch)
            }
            PageCursor::Before(seq) => {
                message_query!("WHERE m.channel_id = ? AND m.seq < ? ORDER BY m.seq DESC LIMIT ?")
                    .bind(channel_id)
                    .bind(seq)
                    .bind(fetch)
            }
            PageCursor::After(seq) => {
                message_query!("WHERE m.channel_id = ? AND m.seq > ? ORDER BY m.seq ASC LIMIT ?")
                    .bind(channel_id)
                    .bind(seq)
                    .bind(fetch)
            }
        };
        let rows = query.fetch_all(&self.reader).await?;
        let has_more = rows.len() > limit as usize;
        let mut messages = rows
            .iter()
            .take(limit as usize)
            .map(message)
            .collect::<Result<Vec<_>, _>>()?;
        if !matches!(cursor, PageCursor::After(_)) {
            messages.reverse();
        }
        Ok(MessagePage { messages, has_more })
    }

    async fn edit_message(
        &self,
        message_id: i64,
        body: &str,
        now: i64,
    ) -> StoreResult<Option<Message>> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE messages SET body = ?, edited_at = ? WHERE id = ? AND deleted_at IS NULL",
        )
        .bind(body)
        .bind(now)
        .bind(message_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(None);
        }
        let row = message_query!("WHERE m.id = ?")
            .bind(message_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(message(&row)?))
    }

    async fn delete_message(&self, message_id: i64, now: i64) -> StoreResult<Option<Message>> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE messages SET body = '', deleted_at = ? WHERE id = ? AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(message_id)
        .execute(&mut *tx)
        .await?;
        let row = message_query!("WHERE m.id = ?")
            .bind(message_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.as_ref().map(message).transpose()?)
    }
}
