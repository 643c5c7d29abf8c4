//! Message storage. The per-channel `seq` is taken from `channels.last_seq` inside the same
//! transaction as the insert, so it is gap-free and strictly increasing even under concurrent
//! senders; a failed insert rolls the counter back with it.

use async_trait::async_trait;
use std::collections::{HashMap, HashSet};

use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite};

use super::{Message, MessagePage, PageCursor};
use crate::server::SqliteDb;
use crate::server::db::StoreResult;

/// A message to store, as a sender hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub channel_id: i64,
    pub sender_id: i64,
    /// The sender's idempotency key.
    pub client_id: String,
    pub body: String,
    pub created_at: i64,
}

/// What the database assigned to a stored message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub id: i64,
    pub seq: i64,
}

#[async_trait]
pub trait MessageStore {
    /// Stores a batch of messages in one transaction, in order: each takes the next seq of its
    /// channel and moves the sender's read pointer to it. An entry is `None` when nothing was
    /// stored for it: the sender is not a member of the channel (or it does not exist), or the
    /// sender used its `client_id` before (see [`MessageStore::message_by_client_id`]). Any
    /// error means nothing of the batch was stored.
    async fn insert_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<Option<Stored>>>;
    /// The message `sender_id` sent with `client_id`, if any.
    async fn message_by_client_id(
        &self,
        sender_id: i64,
        client_id: &str,
    ) -> StoreResult<Option<Message>>;
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
    let mut next_seq: HashMap<i64, i64> = HashMap::new();
    let mut is_member: HashSet<(i64, i64)> = HashSet::new();
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
        is_member.insert((channel_id, user_id));
        next_seq.insert(channel_id, last_seq + 1);
    }

    let mut query = QueryBuilder::<Sqlite>::new(
        "SELECT sender_id, client_id FROM messages WHERE (sender_id, client_id) IN (",
    );
    query.push_values(chunk, |mut row, message| {
        row.push_bind(message.sender_id)
            .push_bind(message.client_id.as_str());
    });
    query.push(")");
    let mut used_keys: HashSet<(i64, String)> = query
        .build_query_as::<(i64, String)>()
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();

    // Which messages go in, with which seq; the rest store nothing (not a member, or a key
    // used before, possibly earlier in this same chunk).
    let mut rows = Vec::with_capacity(chunk.len());
    let mut seqs = Vec::with_capacity(chunk.len());
    for message in chunk {
        let admitted = is_member.contains(&(message.channel_id, message.sender_id))
            && used_keys.insert((message.sender_id, message.client_id.clone()));
        let seq = admitted.then(|| {
            let next = next_seq.entry(message.channel_id).or_insert(1);
            let seq = *next;
            *next += 1;
            (message, seq)
        });
        seqs.push(seq.map(|(message, seq)| (message.channel_id, seq)));
        rows.extend(seq);
    }
    if rows.is_empty() {
        return Ok(vec![None; chunk.len()]);
    }
    let mut query = QueryBuilder::<Sqlite>::new(
        "INSERT INTO messages (channel_id, seq, sender_id, client_id, body, created_at) ",
    );
    query.push_values(&rows, |mut row, &(message, seq)| {
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
    Ok(seqs
        .into_iter()
        .map(|slot| {
            let (channel_id, seq) = slot?;
            Some(Stored {
                id: *ids.get(&(channel_id, seq))?,
                seq,
            })
        })
        .collect())
}

/// `sqlx` wants `'static` SQL (its injection guard); these strings are built from constants.
macro_rules! message_query {
    ($tail:literal) => {
        sqlx::query(const_format::concatcp!(SELECT_MESSAGE, " ", $tail))
    };
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
        let row = message_query!("WHERE m.sender_id = ? AND m.client_id = ?")
            .bind(sender_id)
            .bind(client_id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.as_ref().map(message).transpose()?)
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
