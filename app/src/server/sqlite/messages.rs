//! Messages on SQLite. One writer connection holds the write lock for each batch, so the seqs
//! read from `channels.last_seq` at its start are the channel's next ones.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Sqlite};

use super::SqliteDb;
use crate::messages::store::{
    BatchPlan, MessageRow, MessageStore, NewMessage, Stored, page_from, select_message,
};
use crate::messages::{Message, MessagePage, PageCursor};
use crate::server::storage::StoreResult;

/// Messages stored per statement: 6 bound values each, well under SQLite's limit of 32,766.
const INSERT_CHUNK: usize = 512;

/// Stores `chunk` inside the writer's transaction with three statements whatever its size:
/// each statement is a round trip to sqlx's connection thread, and those round trips, not
/// SQLite, are what a send costs. Seqs are assigned here, in order, from the `last_seq` read
/// under the write lock; the trigger `messages_advance_channel` stores the new `last_seq` and
/// moves each sender's read pointer.
async fn insert_chunk(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    chunk: &[NewMessage],
) -> StoreResult<Vec<Option<Stored>>> {
    let mut last_seqs: HashMap<i64, i64> = HashMap::new();
    let mut members: HashSet<(i64, i64)> = HashSet::new();
    let mut query = QueryBuilder::<Sqlite>::new(
        "SELECT c.id, m.user_id, c.last_seq FROM channels c
         JOIN channel_members m ON m.channel_id = c.id WHERE (c.id, m.user_id) IN (",
    );
    let senders: HashSet<(i64, i64)> = chunk.iter().map(|m| (m.channel_id, m.sender_id)).collect();
    query.push_values(&senders, |mut row, &(channel_id, sender_id)| {
        row.push_bind(channel_id).push_bind(sender_id);
    });
    query.push(")");
    for (channel_id, user_id, last_seq) in query
        .build_query_as::<(i64, i64, i64)>()
        .fetch_all(&mut **tx)
        .await?
    {
        members.insert((channel_id, user_id));
        last_seqs.insert(channel_id, last_seq);
    }

    let mut query = QueryBuilder::<Sqlite>::new(
        "SELECT sender_id, client_id FROM messages WHERE (sender_id, client_id) IN (",
    );
    query.push_values(chunk, |mut row, message| {
        row.push_bind(message.sender_id)
            .push_bind(message.client_id.as_str());
    });
    query.push(")");
    let used_keys: HashSet<(i64, String)> = query
        .build_query_as::<(i64, String)>()
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();

    let plan = BatchPlan::new(chunk, &members, last_seqs, used_keys);
    if plan.rows.is_empty() {
        return Ok(vec![None; chunk.len()]);
    }
    let mut query = QueryBuilder::<Sqlite>::new(
        "INSERT INTO messages (channel_id, seq, sender_id, client_id, body, created_at) ",
    );
    query.push_values(&plan.rows, |mut row, &(message, seq)| {
        row.push_bind(message.channel_id)
            .push_bind(seq)
            .push_bind(message.sender_id)
            .push_bind(message.client_id.as_str())
            .push_bind(message.body.as_str())
            .push_bind(message.created_at);
    });
    // RETURNING rows come in no promised order: match them up by (channel, seq).
    query.push(" RETURNING id, channel_id, seq");
    let ids: HashMap<(i64, i64), i64> = query
        .build_query_as::<(i64, i64, i64)>()
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .map(|(id, channel_id, seq)| ((channel_id, seq), id))
        .collect();
    Ok(plan.results(&ids))
}

/// Stores one message with one statement and no explicit transaction: the membership check,
/// the key check and the seq (`last_seq + 1`, read under the statement's write lock) are part of
/// the INSERT, and the trigger's updates commit with it. A lone send on an idle server thus costs
/// one round trip to sqlx's connection thread instead of five (BEGIN, three statements, COMMIT),
/// which was most of its CPU (docs/PERFORMANCE.md, "Cost of a lone send").
async fn insert_one(pool: &SqlitePool, message: &NewMessage) -> StoreResult<Option<Stored>> {
    let stored = sqlx::query_as::<_, (i64, i64)>(
        "INSERT INTO messages (channel_id, seq, sender_id, client_id, body, created_at)
         SELECT c.id, c.last_seq + 1, m.user_id, ?3, ?4, ?5
           FROM channels c JOIN channel_members m ON m.channel_id = c.id AND m.user_id = ?2
          WHERE c.id = ?1
            AND NOT EXISTS (SELECT 1 FROM messages WHERE sender_id = ?2 AND client_id = ?3)
         RETURNING id, seq",
    )
    .bind(message.channel_id)
    .bind(message.sender_id)
    .bind(message.client_id.as_str())
    .bind(message.body.as_str())
    .bind(message.created_at)
    .fetch_optional(pool)
    .await?;
    Ok(stored.map(|(id, seq)| Stored { id, seq }))
}

#[async_trait]
impl MessageStore for SqliteDb {
    async fn insert_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<Option<Stored>>> {
        if let [message] = batch {
            return Ok(vec![insert_one(&self.writer, message).await?]);
        }
        let mut tx = self.begin_write().await?;
        let mut stored = Vec::with_capacity(batch.len());
        for chunk in batch.chunks(INSERT_CHUNK) {
            stored.extend(insert_chunk(&mut tx, chunk).await?);
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn message_by_client_id(
        &self,
        sender_id: i64,
        client_id: &str,
    ) -> StoreResult<Option<Message>> {
        let row = sqlx::query_as::<_, MessageRow>(select_message!(
            "WHERE m.sender_id = ? AND m.client_id = ?"
        ))
        .bind(sender_id)
        .bind(client_id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn message_by_id(&self, message_id: i64) -> StoreResult<Option<Message>> {
        let row = sqlx::query_as::<_, MessageRow>(select_message!("WHERE m.id = ?"))
            .bind(message_id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(Into::into))
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
            PageCursor::Newest => sqlx::query_as::<_, MessageRow>(select_message!(
                "WHERE m.channel_id = ? ORDER BY m.seq DESC LIMIT ?"
            ))
            .bind(channel_id)
            .bind(fetch),
            PageCursor::Before(seq) => sqlx::query_as::<_, MessageRow>(select_message!(
                "WHERE m.channel_id = ? AND m.seq < ? ORDER BY m.seq DESC LIMIT ?"
            ))
            .bind(channel_id)
            .bind(seq)
            .bind(fetch),
            PageCursor::After(seq) => sqlx::query_as::<_, MessageRow>(select_message!(
                "WHERE m.channel_id = ? AND m.seq > ? ORDER BY m.seq ASC LIMIT ?"
            ))
            .bind(channel_id)
            .bind(seq)
            .bind(fetch),
        };
        Ok(page_from(
            query.fetch_all(&self.reader).await?,
            cursor,
            limit,
        ))
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
        let row = sqlx::query_as::<_, MessageRow>(select_message!("WHERE m.id = ?"))
            .bind(message_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(row.into()))
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
        let row = sqlx::query_as::<_, MessageRow>(select_message!("WHERE m.id = ?"))
            .bind(message_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.map(Into::into))
    }
}
