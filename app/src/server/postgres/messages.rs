//! Messages on PostgreSQL, where several nodes write at once.
//!
//! A batch locks the rows of its channels (`FOR NO KEY UPDATE`, in id order, so two batches
//! never wait on each other in a cycle), takes seqs from their `last_seq`, and stores everything
//! with two statements (inside `BEGIN` … `COMMIT`) whatever its size: each column travels as one
//! array parameter and `UNNEST` turns them into rows, so no batch nears the 65,535-parameter
//! limit.
//! The lock is held until commit, so the next batch for a channel reads `last_seq` only after
//! this one's seqs are visible: commit order is seq order, and a reader that sees seq N sees
//! every lower one.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use sqlx::{Postgres, Transaction};

use super::{PgDb, is_retryable};
use crate::messages::store::{
    BatchPlan, MessageRow, MessageStore, NewMessage, Stored, page_from, select_message,
};
use crate::messages::{Message, MessagePage, PageCursor};
use crate::server::storage::StoreResult;

/// Attempts at a batch that another node's concurrent write refused. A unique violation on
/// `(sender_id, client_id)` means another node stored the same retry first: the next attempt
/// reads that key as used and stores nothing for it. The rolled-back attempt took no seqs.
const ATTEMPTS: usize = 5;

/// Stores the batch in the open transaction with two statements; the caller commits. Each
/// statement is a round trip to PostgreSQL, and round trips, not the work in them, were most
/// of what a batch cost (docs/PERFORMANCE.md, "PostgreSQL").
async fn insert_batch(
    tx: &mut Transaction<'static, Postgres>,
    batch: &[NewMessage],
) -> Result<Vec<Option<Stored>>, sqlx::Error> {
    let mut channel_ids: Vec<i64> = batch.iter().map(|m| m.channel_id).collect();
    channel_ids.sort_unstable();
    channel_ids.dedup();
    let (channels, senders): (Vec<i64>, Vec<i64>) =
        batch.iter().map(|m| (m.channel_id, m.sender_id)).unzip();
    let client_ids: Vec<&str> = batch.iter().map(|m| m.client_id.as_str()).collect();
    // One statement reads what the plan needs: the channels' `last_seq` under a row lock
    // (the lock waits for a concurrent batch to commit, and then returns its `last_seq`), the
    // senders' memberships, and which keys are used. The last two come from the statement's
    // snapshot, which can predate a concurrent commit: a key stored that way meets the unique
    // index on insert, and the retry reads it.
    let rows: Vec<(i16, i64, i64, Option<String>)> = sqlx::query_as(
        "WITH locked AS (
             SELECT id, last_seq FROM channels WHERE id = ANY($1) ORDER BY id
             FOR NO KEY UPDATE)
         SELECT 0::SMALLINT, id, last_seq, NULL::TEXT FROM locked
         UNION ALL
         SELECT 1::SMALLINT, channel_id, user_id, NULL FROM channel_members
          WHERE (channel_id, user_id) IN (SELECT * FROM UNNEST($2::BIGINT[], $3::BIGINT[]))
         UNION ALL
         SELECT 2::SMALLINT, m.sender_id, 0, m.client_id
           FROM UNNEST($3::BIGINT[], $4::TEXT[]) AS k(sender_id, client_id)
           JOIN messages m ON m.sender_id = k.sender_id AND m.client_id = k.client_id",
    )
    .bind(&channel_ids)
    .bind(&channels)
    .bind(&senders)
    .bind(&client_ids)
    .fetch_all(&mut **tx)
    .await?;
    let mut last_seqs: HashMap<i64, i64> = HashMap::new();
    let mut members: HashSet<(i64, i64)> = HashSet::new();
    let mut used_keys: HashSet<(i64, String)> = HashSet::new();
    for (kind, a, b, client_id) in rows {
        match (kind, client_id) {
            (0, _) => {
                last_seqs.insert(a, b);
            }
            (1, _) => {
                members.insert((a, b));
            }
            (_, Some(client_id)) => {
                used_keys.insert((a, client_id));
            }
            (_, None) => {}
        }
    }

    let plan = BatchPlan::new(batch, &members, last_seqs, used_keys);
    if plan.rows.is_empty() {
        return Ok(vec![None; batch.len()]);
    }
    let rows = &plan.rows;
    // One statement writes: the messages, then from what was inserted each channel's new
    // `last_seq` and each sender's read pointer (the newest seq they sent).
    let ids: HashMap<(i64, i64), i64> = sqlx::query_as::<_, (i64, i64, i64)>(
        "WITH inserted AS (
             INSERT INTO messages (channel_id, seq, sender_id, client_id, body, created_at)
             SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[],
                                  $5::TEXT[], $6::BIGINT[])
             RETURNING id, channel_id, seq, sender_id),
         heads AS (
             UPDATE channels c SET last_seq = h.last_seq
               FROM (SELECT channel_id, MAX(seq) AS last_seq FROM inserted GROUP BY channel_id) h
              WHERE c.id = h.channel_id),
         pointers AS (
             UPDATE channel_members m SET last_read_seq = GREATEST(m.last_read_seq, p.seq)
               FROM (SELECT channel_id, sender_id, MAX(seq) AS seq FROM inserted
                      GROUP BY channel_id, sender_id) p
              WHERE m.channel_id = p.channel_id AND m.user_id = p.sender_id)
         SELECT id, channel_id, seq FROM inserted",
    )
    .bind(rows.iter().map(|(m, _)| m.channel_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|&(_, seq)| seq).collect::<Vec<_>>())
    .bind(rows.iter().map(|(m, _)| m.sender_id).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|(m, _)| m.client_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(
        rows.iter()
            .map(|(m, _)| m.body.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|(m, _)| m.created_at).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .map(|(id, channel_id, seq)| ((channel_id, seq), id))
    .collect();
    Ok(plan.results(&ids))
}

#[async_trait]
impl MessageStore for PgDb {
    async fn insert_messages(&self, batch: &[NewMessage]) -> StoreResult<Vec<Option<Stored>>> {
        let mut attempt = 1;
        loop {
            let mut tx = self.pool.begin().await?;
            match insert_batch(&mut tx, batch).await {
                Ok(stored) => {
                    tx.commit().await?;
                    return Ok(stored);
                }
                Err(error) if attempt < ATTEMPTS && is_retryable(&error) => {
                    tracing::debug!(%error, attempt, "batch refused by a concurrent write; retrying");
                    tx.rollback().await?;
                    attempt += 1;
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    async fn message_by_client_id(
        &self,
        sender_id: i64,
        client_id: &str,
    ) -> StoreResult<Option<Message>> {
        let row = sqlx::query_as::<_, MessageRow>(select_message!(
            "WHERE m.sender_id = $1 AND m.client_id = $2"
        ))
        .bind(sender_id)
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn message_by_id(&self, message_id: i64) -> StoreResult<Option<Message>> {
        let row = sqlx::query_as::<_, MessageRow>(select_message!("WHERE m.id = $1"))
            .bind(message_id)
            .fetch_optional(&self.pool)
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
                "WHERE m.channel_id = $1 ORDER BY m.seq DESC LIMIT $2"
            ))
            .bind(channel_id)
            .bind(fetch),
            PageCursor::Before(seq) => sqlx::query_as::<_, MessageRow>(select_message!(
                "WHERE m.channel_id = $1 AND m.seq < $3 ORDER BY m.seq DESC LIMIT $2"
            ))
            .bind(channel_id)
            .bind(fetch)
            .bind(seq),
            PageCursor::After(seq) => sqlx::query_as::<_, MessageRow>(select_message!(
                "WHERE m.channel_id = $1 AND m.seq > $3 ORDER BY m.seq ASC LIMIT $2"
            ))
            .bind(channel_id)
            .bind(fetch)
            .bind(seq),
        };
        Ok(page_from(query.fetch_all(&self.pool).await?, cursor, limit))
    }

    async fn edit_message(
        &self,
        message_id: i64,
        body: &str,
        now: i64,
    ) -> StoreResult<Option<Message>> {
        let mut tx = self.pool.begin().await?;
        let updated = sqlx::query(
            "UPDATE messages SET body = $1, edited_at = $2 WHERE id = $3 AND deleted_at IS NULL",
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
        let row = sqlx::query_as::<_, MessageRow>(select_message!("WHERE m.id = $1"))
            .bind(message_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(row.into()))
    }

    async fn delete_message(&self, message_id: i64, now: i64) -> StoreResult<Option<Message>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE messages SET body = '', deleted_at = $1 WHERE id = $2 AND deleted_at IS NULL",
        )
        .bind(now)
        .bind(message_id)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query_as::<_, MessageRow>(select_message!("WHERE m.id = $1"))
            .bind(message_id)
            .fetch_optional(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(row.map(Into::into))
    }
}
