//! Catch-up: `resume` and `subscribe` replay each channel from the database in a task of its
//! own, while live events of that channel are held back; then `caught_up`, then the held-back
//! events minus what the replay already sent.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::messages::{Message, PageCursor};
use crate::realtime::protocol::{ChannelCursor, ErrorCode, ServerEvent, close_code};
use crate::realtime::server::fanout::Outbound;

use super::{Connection, Stop};

/// Events held back per channel during a replay before the connection counts as lagging.
pub(super) const MAX_HELD_BACK: usize = 2_000;
/// Messages fetched per database page while replaying.
const REPLAY_PAGE: u32 = 200;

pub(super) enum Replayed {
    Message {
        generation: u64,
        /// Boxed: the channel's first block of 32 slots is allocated with every connection, and
        /// an unboxed message would make that ~5 KiB per idle connection.
        message: Box<Message>,
    },
    Done {
        generation: u64,
        channel_id: i64,
        last_seq: i64,
    },
    Failed {
        generation: u64,
        channel_id: i64,
    },
}

pub(super) struct Replay {
    generation: u64,
    pub(super) held_back: Vec<Arc<Outbound>>,
    pub(super) task: AbortHandle,
}

/// The next report of a running replay; never, while none runs.
pub(super) async fn recv_replayed(rx: &mut Option<mpsc::Receiver<Replayed>>) -> Option<Replayed> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Connection {
    pub(super) async fn on_replayed(&mut self, replayed: Replayed) -> Result<(), Stop> {
        match replayed {
            Replayed::Message {
                generation,
                message,
            } => {
                if self.is_current(message.channel_id, generation) {
                    self.send_event(&ServerEvent::MessageCreated { message: *message })
                        .await?;
                }
            }
            Replayed::Done {
                generation,
                channel_id,
                last_seq,
            } => {
                if !self.is_current(channel_id, generation) {
                    return Ok(());
                }
                let Some(replay) = self.replays.remove(&channel_id) else {
                    return Ok(());
                };
                self.send_event(&ServerEvent::CaughtUp {
                    channel_id,
                    last_seq,
                })
                .await?;
                let through = self.delivered_through.entry(channel_id).or_insert(last_seq);
                *through = (*through).max(last_seq);
                for held in replay.held_back {
                    self.on_outbound(held).await?;
                }
            }
            Replayed::Failed {
                generation,
                channel_id,
            } => {
                if self.is_current(channel_id, generation) {
                    return Err(Stop::Close(
                        close_code::CATCH_UP_FAILED,
                        "catch-up failed: reconnect and resume",
                    ));
                }
            }
        }
        Ok(())
    }

    pub(super) fn is_current(&self, channel_id: i64, generation: u64) -> bool {
        self.replays
            .get(&channel_id)
            .is_some_and(|replay| replay.generation == generation)
    }

    /// Ends the wait for the first `resume`: events of channels now being replayed join their
    /// replay's held-back events (see `on_outbound`); the rest go out in order.
    pub(super) async fn release_held(&mut self) -> Result<(), Stop> {
        for outbound in self.before_resume.take().unwrap_or_default() {
            self.on_outbound(outbound).await?;
        }
        Ok(())
    }

    pub(super) async fn catch_up(&mut self, cursors: &[ChannelCursor]) -> Result<(), Stop> {
        for cursor in cursors {
            if cursor.after_seq < 0 {
                self.send_error(
                    ErrorCode::InvalidEvent,
                    format!(
                        "after_seq for channel {} must not be negative",
                        cursor.channel_id
                    ),
                )
                .await?;
                continue;
            }
            if !self.require_member(cursor.channel_id).await? {
                continue;
            }
            self.muted.remove(&cursor.channel_id);
            self.start_replay(*cursor);
        }
        self.release_held().await
    }

    pub(super) fn start_replay(&mut self, cursor: ChannelCursor) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let db = self.state.db.clone();
        let hub = self.state.hub.clone();
        let tx = match &self.replay_tx {
            Some(tx) => tx.clone(),
            None => {
                let (tx, rx) = mpsc::channel(64);
                self.new_replay_rx = Some(rx);
                self.replay_tx.insert(tx).clone()
            }
        };
        let ChannelCursor {
            channel_id,
            after_seq,
        } = cursor;
        let task = tokio::spawn(async move {
            // In a cluster, read only once the node's live stream of the channel knows where it
            // starts: this read then reaches at least that far, and the stream does the rest.
            hub.stream_ready(channel_id).await;
            let mut last_seq = after_seq;
            loop {
                let page = match db
                    .list_messages(channel_id, PageCursor::After(last_seq), REPLAY_PAGE)
                    .await
                {
                    Ok(page) => page,
                    Err(error) => {
                        tracing::error!(%error, channel_id, "catch-up read failed");
                        let _ = tx
                            .send(Replayed::Failed {
                                generation,
                                channel_id,
                            })
                            .await;
                        return;
                    }
                };
                for message in page.messages {
                    last_seq = message.seq;
                    if tx
                        .send(Replayed::Message {
                            generation,
                            message: Box::new(message),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                if !page.has_more {
                    break;
                }
            }
            let _ = tx
                .send(Replayed::Done {
                    generation,
                    channel_id,
                    last_seq,
                })
                .await;
        });
        let replay = Replay {
            generation,
            held_back: Vec::new(),
            task: task.abort_handle(),
        };
        if let Some(previous) = self.replays.insert(channel_id, replay) {
            // A newer request for the same channel supersedes the running one; what it held
            // back is covered by the new replay or held back again.
            previous.task.abort();
            if let Some(current) = self.replays.get_mut(&channel_id) {
                current.held_back = previous.held_back;
            }
        }
    }
}
