//! Messages typed here until the server confirms them: shown at once as pending, delivered one
//! at a time per channel in the order typed, retried with the same `client_id` (the server
//! stores a retry once), held while the connection is down, and kept in the tab's
//! `sessionStorage` so a reload does not lose them.

use leptos::prelude::*;

use super::ChatClient;
use super::model::{ChatModel, PendingMessage, PendingState};
use super::storage::session_storage;
use crate::error::ApiError;

/// How long a send may go unanswered before it is treated as unreachable.
pub const SEND_DEADLINE_MS: u32 = 15_000;

/// Key of the tab's unsent messages in `sessionStorage`.
const OUTBOX_KEY: &str = "dealnest.outbox";

/// An unconfirmed message as kept in the tab's storage across reloads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboxEntry {
    pub channel_id: i64,
    pub client_id: String,
    pub body: String,
}

impl ChatModel {
    /// Queues a message typed here, behind any that wait for the connection (so the order
    /// typed is kept).
    pub fn submit(&mut self, channel_id: i64, client_id: String, body: String) {
        let log = self.logs.edit().entry(channel_id).or_default();
        let state = if log
            .pending
            .iter()
            .any(|p| p.state == PendingState::WaitingForConnection)
        {
            PendingState::WaitingForConnection
        } else {
            PendingState::Sending
        };
        log.pending.push(PendingMessage {
            client_id,
            body,
            state,
        });
    }

    pub fn set_pending_state(&mut self, channel_id: i64, client_id: &str, state: PendingState) {
        if let Some(pending) = self
            .logs
            .edit()
            .get_mut(&channel_id)
            .and_then(|log| log.pending.iter_mut().find(|p| p.client_id == client_id))
        {
            pending.state = state;
        }
    }

    /// The oldest message of `channel_id` that is due to go out.
    pub fn next_to_send(&self, channel_id: i64) -> Option<PendingMessage> {
        self.log(channel_id).and_then(|log| {
            log.pending
                .iter()
                .find(|p| p.state == PendingState::Sending)
                .cloned()
        })
    }

    /// No connection: this channel's messages due to go out wait for it, in order.
    pub fn wait_for_connection(&mut self, channel_id: i64) {
        if let Some(log) = self.logs.edit().get_mut(&channel_id) {
            for pending in &mut log.pending {
                if pending.state == PendingState::Sending {
                    pending.state = PendingState::WaitingForConnection;
                }
            }
        }
    }

    /// The connection is back: what waited for it is due again. The channels concerned.
    pub fn release_waiting(&mut self) -> Vec<i64> {
        let channels: Vec<i64> = self
            .logs
            .iter()
            .filter(|(_, log)| {
                log.pending
                    .iter()
                    .any(|p| p.state == PendingState::WaitingForConnection)
            })
            .map(|(id, _)| *id)
            .collect();
        if !channels.is_empty() {
            for log in self.logs.edit().values_mut() {
                for pending in &mut log.pending {
                    if pending.state == PendingState::WaitingForConnection {
                        pending.state = PendingState::Sending;
                    }
                }
            }
        }
        channels
    }

    /// What has been typed here and not yet confirmed, by channel, oldest first per channel.
    pub fn outbox(&self) -> Vec<OutboxEntry> {
        let mut entries: Vec<OutboxEntry> = self
            .logs
            .iter()
            .flat_map(|(channel_id, log)| {
                log.pending.iter().map(|p| OutboxEntry {
                    channel_id: *channel_id,
                    client_id: p.client_id.clone(),
                    body: p.body.clone(),
                })
            })
            .collect();
        entries.sort_by_key(|e| e.channel_id);
        entries
    }

    /// Puts messages left unsent by an earlier page of this tab back in line; they go out once
    /// the connection is up, with their original `client_id` (a copy the server already has is
    /// not stored twice).
    pub fn restore_outbox(&mut self, entries: Vec<OutboxEntry>) {
        for entry in entries {
            let log = self.logs.edit().entry(entry.channel_id).or_default();
            if !log.pending.iter().any(|p| p.client_id == entry.client_id) {
                log.pending.push(PendingMessage {
                    client_id: entry.client_id,
                    body: entry.body,
                    state: PendingState::WaitingForConnection,
                });
            }
        }
    }
}

impl ChatClient {
    /// Shows a message as sending at once and delivers it after any sent before it.
    pub fn submit(&self, channel_id: i64, client_id: String, body: String) {
        self.change(|model| model.submit(channel_id, client_id, body));
        self.deliver_pending(channel_id);
    }

    /// Sends a refused message again, with its original `client_id`.
    pub fn retry(&self, channel_id: i64, client_id: &str) {
        self.change(|model| model.set_pending_state(channel_id, client_id, PendingState::Sending));
        self.deliver_pending(channel_id);
    }

    /// The connection is back (or looks healthy): messages that waited for it go out, in the
    /// order typed.
    pub fn resend_waiting(&self) {
        for channel_id in self.change(ChatModel::release_waiting) {
            self.deliver_pending(channel_id);
        }
    }

    /// One sender task per channel delivers its `Sending` messages one at a time, oldest
    /// first, so the server stores them in the order they were typed.
    fn deliver_pending(&self, channel_id: i64) {
        let already = self
            .delivering
            .try_update_value(|busy| !busy.insert(channel_id))
            .unwrap_or(true);
        if already {
            return;
        }
        let client = *self;
        leptos::task::spawn_local(async move {
            while let Some(pending) = client
                .read_untracked(|m| m.next_to_send(channel_id))
                .flatten()
            {
                let send = crate::messages::api::send_message(
                    channel_id,
                    pending.client_id.clone(),
                    pending.body.clone(),
                );
                // A request that gets no answer (sent just as the network died) must not hold up
                // the queue until the TCP timeout: after the deadline it counts as unreachable
                // and is sent again later with the same `client_id`, which the server stores once.
                let sent = match futures::future::select(
                    Box::pin(send),
                    Box::pin(browser_sleep(SEND_DEADLINE_MS)),
                )
                .await
                {
                    futures::future::Either::Left((answer, _)) => answer,
                    futures::future::Either::Right(((), _)) => Err(ApiError::Unavailable {
                        message: "no answer from the server".to_owned(),
                    }),
                };
                if !client.is_alive() {
                    return;
                }
                match sent {
                    Ok(message) => client.add_messages(channel_id, vec![message]),
                    Err(ApiError::RateLimited {
                        retry_after_secs, ..
                    }) => {
                        // Sending too fast (a long queue after a reconnect, a paste of many
                        // lines): nothing was stored, so wait as told and send the same
                        // message, same `client_id`, again; later ones stay queued behind it.
                        browser_sleep(
                            u32::try_from(retry_after_secs.saturating_mul(1000))
                                .unwrap_or(u32::MAX),
                        )
                        .await;
                        if !client.is_alive() {
                            return;
                        }
                    }
                    Err(ApiError::Unavailable { .. }) => {
                        client.change(|model| model.wait_for_connection(channel_id));
                        break;
                    }
                    Err(error) => client.change(|model| {
                        model.set_pending_state(
                            channel_id,
                            &pending.client_id,
                            PendingState::Failed(error.to_string()),
                        );
                    }),
                }
            }
            client.delivering.update_value(|busy| {
                busy.remove(&channel_id);
            });
        });
    }

    /// Unsent messages survive a reload of this tab: restored once hydrated, saved on each
    /// change.
    pub fn keep_outbox(&self) {
        let client = *self;
        Effect::new(move |_| {
            let saved = session_storage()
                .and_then(|s| s.get_item(OUTBOX_KEY).ok().flatten())
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or_default();
            client.change(|model| model.restore_outbox(saved));
        });
        let outbox = Memo::new(move |_| client.read(client.triggers.logs, ChatModel::outbox));
        Effect::new(move |first_run_done: Option<bool>| {
            let entries = outbox.get();
            // The first run may come before the restore above: it must not erase what was saved.
            if first_run_done.is_none() {
                return true;
            }
            if let Some(storage) = session_storage() {
                let _ = if entries.is_empty() {
                    storage.remove_item(OUTBOX_KEY)
                } else {
                    serde_json::to_string(&entries)
                        .map_or(Ok(()), |text| storage.set_item(OUTBOX_KEY, &text))
                };
            }
            true
        });
    }
}

/// Completes after `ms` milliseconds in the browser; on the server, where nothing is sent,
/// never.
#[cfg(feature = "hydrate")]
async fn browser_sleep(ms: u32) {
    gloo_timers::future::TimeoutFuture::new(ms).await;
}

#[cfg(not(feature = "hydrate"))]
async fn browser_sleep(_: u32) {
    futures::future::pending::<()>().await;
}
