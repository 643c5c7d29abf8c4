//! Group commit for sends. One task owns the send path to storage: it takes every send that
//! queued up while the previous batch was being written, stores them in one transaction,
//! publishes the stored messages in seq order and only then answers each sender. An idle
//! server writes a lone send at once (no timer); under load, batches grow by themselves and the
//! cost of a commit is shared.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::Message;
use super::store::{NewMessage, Stored};
use crate::realtime::protocol::ServerEvent;
use crate::realtime::server::fanout::Target;
use crate::realtime::server::hub::Hub;
use crate::server::storage::StoreResult;
use crate::server::{Database, metrics};

/// Most sends stored in one transaction: bounds how long other writers wait for the connection.
const MAX_BATCH: usize = 256;
/// Sends waiting for the writer; beyond this, senders wait for room (backpressure).
const QUEUE: usize = 4096;

/// A send waiting for the writer.
struct Pending {
    message: NewMessage,
    sender_name: String,
    reply: oneshot::Sender<StoreResult<Option<Message>>>,
    /// When the send reached the writer, for the send→durable latency.
    queued_at: Instant,
}

/// Cheap handle to the writer task.
#[derive(Clone)]
pub struct MessageWriter {
    queue: mpsc::Sender<Pending>,
}

/// The writer task has stopped (the server is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the message writer has stopped")]
pub struct WriterStopped;

impl MessageWriter {
    /// Starts the writer task; it ends when the last handle is dropped.
    pub fn start(db: Arc<dyn Database>, hub: Hub) -> Self {
        let (queue, pending) = mpsc::channel(QUEUE);
        tokio::spawn(run(db, hub, pending));
        Self { queue }
    }

    /// Stores `message` and publishes it, answering once it is committed. `None` when nothing
    /// was stored: the sender is not a member, or already used the `client_id`.
    pub async fn write(
        &self,
        message: NewMessage,
        sender_name: String,
    ) -> Result<StoreResult<Option<Message>>, WriterStopped> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Pending {
                message,
                sender_name,
                reply,
                queued_at: Instant::now(),
            })
            .await
            .map_err(|_| WriterStopped)?;
        answer.await.map_err(|_| WriterStopped)
    }
}

async fn run(db: Arc<dyn Database>, hub: Hub, mut queue: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (messages, waiters): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .map(|pending| {
                let waiter = (pending.sender_name, pending.reply, pending.queued_at);
                (pending.message, waiter)
            })
            .unzip();
        metrics::writer_batch(messages.len());
        let results = store(db.as_ref(), &messages).await;
        let stored_messages = metrics::StoredMessages::committed_now();
        // Published before anyone is answered, in the order stored: per channel, that is seq
        // order, so the hub never sees seq 6 before seq 5.
        for ((message, (sender_name, reply, queued_at)), result) in
            messages.into_iter().zip(waiters).zip(results)
        {
            let answer = result.map(|stored| {
                stored.map(|stored| {
                    stored_messages.record(queued_at);
                    let message = stored_message(message, sender_name, stored);
                    hub.publish(
                        Target::Channel(message.channel_id),
                        ServerEvent::MessageCreated {
                            message: message.clone(),
                        },
                    );
                    message
                })
            });
            // A sender that gave up (its request was cancelled) still had its message stored;
            // a retry with the same `client_id` finds it.
            let _ = reply.send(answer);
        }
    }
}

/// Stores the batch in one transaction. If that fails, each message is tried on its own, so
/// one that cannot be stored does not fail the others.
async fn store(db: &dyn Database, messages: &[NewMessage]) -> Vec<StoreResult<Option<Stored>>> {
    match db.insert_messages(messages).await {
        Ok(stored) => stored.into_iter().map(Ok).collect(),
        Err(error) if messages.len() == 1 => vec![Err(error)],
        Err(error) => {
            tracing::warn!(%error, size = messages.len(), "batch failed; storing one by one");
            let mut results = Vec::with_capacity(messages.len());
            for message in messages {
                results.push(
                    db.insert_messages(std::slice::from_ref(message))
                        .await
                        .map(|mut stored| stored.pop().flatten()),
                );
            }
            results
        }
    }
}

fn stored_message(message: NewMessage, sender_name: String, stored: Stored) -> Message {
    Message {
        id: stored.id,
        channel_id: message.channel_id,
        seq: stored.seq,
        sender_id: message.sender_id,
        sender_name,
        client_id: message.client_id,
        body: Some(message.body),
        created_at: message.created_at,
        edited_at: None,
        deleted_at: None,
    }
}
