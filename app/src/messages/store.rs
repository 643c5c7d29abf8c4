//! Message storage. The per-channel `seq` is taken from `channels.last_seq` inside the same
//! transaction as the insert, so it is gap-free and strictly increasing even under concurrent
//! senders; a failed insert rolls the counter back with it. Each backend does that its own way
//! (`server/sqlite/messages.rs`, `server/postgres/messages.rs`).

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;

use super::{Message, MessagePage, PageCursor};
use crate::server::storage::StoreResult;

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

/// Every column of a message, its sender's name, and the body only while not deleted. Each
/// backend appends its own `WHERE` with [`select_message!`].
pub(crate) const SELECT_MESSAGE: &str = "SELECT m.id, m.channel_id, m.seq, m.sender_id,
        u.display_name AS sender_name, m.client_id,
        CASE WHEN m.deleted_at IS NULL THEN m.body END AS body,
        m.created_at, m.edited_at, m.deleted_at
    FROM messages m JOIN users u ON u.id = m.sender_id";

/// [`SELECT_MESSAGE`] followed by `tail`, as one `'static` string (sqlx takes only those).
macro_rules! select_message {
    ($tail:literal) => {
        const_format::concatcp!($crate::messages::store::SELECT_MESSAGE, " ", $tail)
    };
}
pub(crate) use select_message;

/// A message as [`SELECT_MESSAGE`] selects it.
#[derive(sqlx::FromRow)]
pub(crate) struct MessageRow {
    id: i64,
    channel_id: i64,
    seq: i64,
    sender_id: i64,
    sender_name: String,
    client_id: String,
    body: Option<String>,
    created_at: i64,
    edited_at: Option<i64>,
    deleted_at: Option<i64>,
}

impl From<MessageRow> for Message {
    fn from(row: MessageRow) -> Self {
        Self {
            id: row.id,
            channel_id: row.channel_id,
            seq: row.seq,
            sender_id: row.sender_id,
            sender_name: row.sender_name,
            client_id: row.client_id,
            body: row.body,
            created_at: row.created_at,
            edited_at: row.edited_at,
            deleted_at: row.deleted_at,
        }
    }
}

/// A page of rows fetched one past `limit` (newest first, or oldest first after a cursor),
/// turned into a page in seq order that says whether there is more.
pub(crate) fn page_from(rows: Vec<MessageRow>, cursor: PageCursor, limit: u32) -> MessagePage {
    let has_more = rows.len() > limit as usize;
    let mut messages: Vec<Message> = rows
        .into_iter()
        .take(limit as usize)
        .map(Into::into)
        .collect();
    if !matches!(cursor, PageCursor::After(_)) {
        messages.reverse();
    }
    MessagePage { messages, has_more }
}

/// Which messages of a batch get stored, and with which seq. Both backends read the same facts
/// inside their write transaction (the senders' memberships with each channel's `last_seq`, and
/// which keys are used) and let this decide, so the rules live in one place.
pub(crate) struct BatchPlan<'a> {
    /// The messages to insert, each with its seq, in batch order.
    pub rows: Vec<(&'a NewMessage, i64)>,
    /// Per message of the batch: `(channel_id, seq)` when admitted.
    slots: Vec<Option<(i64, i64)>>,
}

impl<'a> BatchPlan<'a> {
    /// `last_seqs` has each channel's `last_seq` (read under the write lock) and `members` the
    /// `(channel_id, user_id)` pairs among the senders that are memberships; `used_keys` holds
    /// the `(sender_id, client_id)` pairs already stored. A message is admitted when its sender
    /// is a member and its key is unused, also by an earlier message of the same batch; each
    /// admitted message takes its channel's next seq, in batch order.
    pub fn new(
        batch: &'a [NewMessage],
        members: &HashSet<(i64, i64)>,
        mut last_seqs: HashMap<i64, i64>,
        mut used_keys: HashSet<(i64, String)>,
    ) -> Self {
        let mut rows = Vec::with_capacity(batch.len());
        let mut slots = Vec::with_capacity(batch.len());
        for message in batch {
            let admitted = members.contains(&(message.channel_id, message.sender_id))
                && used_keys.insert((message.sender_id, message.client_id.clone()));
            let seq = admitted.then(|| {
                let last = last_seqs.entry(message.channel_id).or_insert(0);
                *last += 1;
                *last
            });
            slots.push(seq.map(|seq| (message.channel_id, seq)));
            rows.extend(seq.map(|seq| (message, seq)));
        }
        Self { rows, slots }
    }

    /// The result per message of the batch, given the ids the insert returned by
    /// `(channel_id, seq)` (RETURNING promises no order).
    pub fn results(self, ids: &HashMap<(i64, i64), i64>) -> Vec<Option<Stored>> {
        self.slots
            .into_iter()
            .map(|slot| {
                let (channel_id, seq) = slot?;
                Some(Stored {
                    id: *ids.get(&(channel_id, seq))?,
                    seq,
                })
            })
            .collect()
    }
}
