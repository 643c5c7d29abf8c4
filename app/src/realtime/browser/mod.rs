//! The browser's chat state: what the components render, kept current by the WebSocket
//! (`socket.rs`, browser only) and by the answers of server functions.
//!
//! Messages are kept per channel in a map keyed by seq, so a message that arrives twice (from a
//! send's answer and from the socket, or from a replay) is stored once, and gaps are visible.

#[cfg(feature = "hydrate")]
pub mod socket;
pub mod storage;

use std::collections::{BTreeMap, HashMap};

use leptos::prelude::*;

use crate::auth::PublicUser;
use crate::channels::{ChannelDetail, ChannelMember, ChannelSummary, MessagePreview};
use crate::clock::now_ms;
use crate::messages::Message;
use crate::presence::{PresenceState, UserPresence};
use crate::realtime::protocol::{ActivityState, ChannelCursor, ClientEvent, ServerEvent};

/// The socket's state, for the connection banner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionStatus {
    Connecting,
    Connected,
    /// Lost; the next attempt is under way or scheduled.
    Reconnecting,
}

impl ConnectionStatus {
    /// For the page's `data-status` attribute (scripts and tests read it).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
        }
    }
}

/// Where a message typed here stands until the server confirms it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PendingState {
    /// Queued or on its way.
    Sending,
    /// The server could not be reached: sent again, in order and with the same `client_id`,
    /// once the connection is back.
    WaitingForConnection,
    /// Refused by the server (the reason); sent again only when the user says so.
    Failed(String),
}

/// An unconfirmed message as kept in the tab's storage across reloads.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutboxEntry {
    pub channel_id: i64,
    pub client_id: String,
    pub body: String,
}

/// A message typed here and not yet confirmed by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMessage {
    pub client_id: String,
    pub body: String,
    pub state: PendingState,
}

/// What the client holds of one channel's messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelLog {
    pub messages: BTreeMap<i64, Message>,
    pub pending: Vec<PendingMessage>,
    /// Older messages exist on the server beyond the oldest held.
    pub has_older: bool,
    /// The held messages end before the channel's newest: the reader is looking at a stretch
    /// further back (e.g. opened at the first unread). Live messages are then not added here,
    /// so what is held stays one unbroken run of seqs; scrolling down pages the rest in.
    pub has_newer: bool,
    /// A window of messages was loaded (only then can gaps be detected).
    pub loaded: bool,
    /// Bumped whenever the window is replaced: a page asked for an earlier window is dropped.
    pub generation: u64,
}

impl ChannelLog {
    pub fn newest_seq(&self) -> i64 {
        self.messages.keys().next_back().copied().unwrap_or(0)
    }

    pub fn oldest_seq(&self) -> Option<i64> {
        self.messages.keys().next().copied()
    }

    /// Whether the held messages reach the channel's newest (live messages extend them).
    pub fn at_live_edge(&self) -> bool {
        self.loaded && !self.has_newer
    }

    /// The last seq of the unbroken run starting at the oldest held message: every message up
    /// to it is held. Catch-up resumes after it, so a hole left by an interrupted replay is
    /// filled rather than skipped.
    pub fn contiguous_end(&self) -> i64 {
        let mut end: Option<i64> = None;
        for &seq in self.messages.keys() {
            match end {
                Some(last) if seq != last + 1 => break,
                _ => end = Some(seq),
            }
        }
        end.unwrap_or(0)
    }

    /// Merges messages by seq, replacing older copies.
    pub fn merge(&mut self, messages: impl IntoIterator<Item = Message>) {
        for message in messages {
            self.pending.retain(|p| p.client_id != message.client_id);
            self.messages.insert(message.seq, message);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresenceInfo {
    pub state: PresenceState,
    pub last_seen_at: Option<i64>,
}

/// The chat state, shared through context. Every field is a cheap `Copy` handle.
#[derive(Clone, Copy)]
pub struct ChatClient {
    pub me: StoredValue<PublicUser>,
    pub status: RwSignal<ConnectionStatus>,
    pub channels: RwSignal<Vec<ChannelSummary>>,
    pub logs: RwSignal<HashMap<i64, ChannelLog>>,
    /// Loaded channel details (members and their read pointers).
    pub details: RwSignal<HashMap<i64, ChannelDetail>>,
    /// Channel → user → when their typing indicator expires (client clock).
    pub typing: RwSignal<HashMap<i64, BTreeMap<i64, i64>>>,
    pub presence: RwSignal<HashMap<i64, PresenceInfo>>,
    /// Server clock minus client clock, from `hello`.
    pub clock_skew: RwSignal<i64>,
    /// Bumped whenever the channel list should be fetched again (reconnect, membership change).
    pub channels_stale: RwSignal<u64>,
    /// The last activity state sent, re-sent after reconnecting.
    pub activity: RwSignal<ActivityState>,
    /// True once hydrated: times and other clock-dependent text render only then, so the
    /// server's rendering (in its own time zone) never disagrees with the browser's.
    pub mounted: RwSignal<bool>,
    /// Set while this tab signs out: the server then closes the socket with 4001, and the page
    /// navigates by itself (another tab's sign-out is what sends a page to the sign-in page).
    pub signing_out: StoredValue<bool>,
    /// A one-line notice for the home view, e.g. after leaving or being removed from the
    /// channel that was open.
    pub notice: RwSignal<Option<String>>,
    /// The newest message from someone else that arrived live, for screen readers (history
    /// pages are never announced).
    pub arrived: RwSignal<Option<Message>>,
    /// The channel this tab is leaving on its own (its removal is then not "you were removed").
    leaving: StoredValue<Option<i64>>,
    /// Channels whose pending messages a sender task is delivering right now.
    delivering: StoredValue<std::collections::HashSet<i64>>,
    outbox: StoredValue<Option<futures::channel::mpsc::UnboundedSender<ClientEvent>>>,
}

impl ChatClient {
    pub fn new(me: PublicUser, channels: Vec<ChannelSummary>) -> Self {
        // This page holds a connection (or is about to): I am online from the first render,
        // not only once a presence event about myself arrives.
        let mut presence = HashMap::new();
        presence.insert(
            me.id,
            PresenceInfo {
                state: PresenceState::Online,
                last_seen_at: None,
            },
        );
        Self {
            me: StoredValue::new(me),
            status: RwSignal::new(ConnectionStatus::Connecting),
            channels: RwSignal::new(channels),
            logs: RwSignal::new(HashMap::new()),
            details: RwSignal::new(HashMap::new()),
            typing: RwSignal::new(HashMap::new()),
            presence: RwSignal::new(presence),
            clock_skew: RwSignal::new(0),
            channels_stale: RwSignal::new(0),
            activity: RwSignal::new(ActivityState::Active),
            mounted: RwSignal::new(false),
            signing_out: StoredValue::new(false),
            notice: RwSignal::new(None),
            arrived: RwSignal::new(None),
            leaving: StoredValue::new(None),
            delivering: StoredValue::new(std::collections::HashSet::new()),
            outbox: StoredValue::new(None),
        }
    }

    /// False once the chat screen that owns this state is gone (e.g. after signing out): the
    /// socket task then stops instead of touching disposed signals.
    pub fn is_alive(&self) -> bool {
        self.me.try_with_value(|_| ()).is_some()
    }

    pub fn my_id(&self) -> i64 {
        self.me.with_value(|me| me.id)
    }

    /// Queues a client event; dropped (and re-derived after reconnecting) while offline.
    pub fn send(&self, event: ClientEvent) {
        self.outbox.with_value(|outbox| {
            if let Some(outbox) = outbox {
                let _ = outbox.unbounded_send(event);
            }
        });
    }

    pub fn set_outbox(&self, outbox: Option<futures::channel::mpsc::UnboundedSender<ClientEvent>>) {
        self.outbox.set_value(outbox);
    }

    pub fn set_activity(&self, state: ActivityState) {
        if self.activity.get_untracked() != state {
            self.activity.set(state);
            self.send(ClientEvent::Activity { state });
        }
    }

    /// Where to resume each loaded channel from: its newest held seq. A channel read further
    /// back is left out: its newer messages are paged in as the reader scrolls.
    pub fn resume_cursors(&self) -> Vec<ChannelCursor> {
        self.logs.with_untracked(|logs| {
            logs.iter()
                .filter(|(_, log)| log.at_live_edge())
                .map(|(channel_id, log)| ChannelCursor {
                    channel_id: *channel_id,
                    after_seq: log.contiguous_end(),
                })
                .collect()
        })
    }

    pub fn summary(&self, channel_id: i64) -> Option<ChannelSummary> {
        self.channels
            .with(|list| list.iter().find(|c| c.id == channel_id).cloned())
    }

    /// [`Self::summary`] without subscribing the caller to changes.
    pub fn summary_untracked(&self, channel_id: i64) -> Option<ChannelSummary> {
        self.channels
            .with_untracked(|list| list.iter().find(|c| c.id == channel_id).cloned())
    }

    /// Whether I am a member of `channel_id` as far as this page knows.
    pub fn is_member(&self, channel_id: i64) -> bool {
        self.channels
            .with(|list| list.iter().any(|c| c.id == channel_id))
    }

    /// Adds a channel I just created or opened, so it can be shown before the list is fetched
    /// again.
    pub fn add_channel(&self, summary: ChannelSummary) {
        self.channels.update(|list| {
            if !list.iter().any(|c| c.id == summary.id) {
                list.insert(0, summary);
            }
        });
        self.channels_stale.update(|n| *n += 1);
    }

    /// Stores messages (a send's answer, or a live or replayed one) and updates the channel
    /// row. The log keeps them only while it holds the channel's newest messages.
    pub fn add_messages(&self, channel_id: i64, messages: Vec<Message>) {
        if !self.is_alive() {
            return;
        }
        if let Some(newest) = messages.iter().max_by_key(|m| m.seq).cloned() {
            self.note_message(&newest);
        }
        self.logs.update(|logs| {
            let log = logs.entry(channel_id).or_default();
            if log.at_live_edge() {
                log.merge(messages);
            } else {
                // Not loaded yet, or the reader is further back: the message is confirmed but
                // shown only once the window reaches it (the load after it catches up).
                for message in &messages {
                    log.pending.retain(|p| p.client_id != message.client_id);
                }
            }
        });
    }

    /// Replaces what is held of a channel with one unbroken run of messages: the newest page
    /// (`has_newer` false) or a stretch further back (`has_newer` true).
    pub fn replace_window(&self, channel_id: i64, messages: Vec<Message>, has_newer: bool) {
        if !self.is_alive() {
            return;
        }
        if !has_newer && let Some(newest) = messages.iter().max_by_key(|m| m.seq).cloned() {
            self.note_message(&newest);
        }
        self.logs.update(|logs| {
            let log = logs.entry(channel_id).or_default();
            log.messages.clear();
            log.merge(messages);
            // Seqs have no gaps, so anything after 1 means older messages exist.
            log.has_older = log.oldest_seq().is_some_and(|oldest| oldest > 1);
            log.has_newer = has_newer;
            log.loaded = true;
            log.generation += 1;
        });
    }

    /// The window's generation, to hand back with a page asked for now.
    pub fn window_generation(&self, channel_id: i64) -> u64 {
        self.logs
            .with_untracked(|logs| logs.get(&channel_id).map_or(0, |l| l.generation))
    }

    /// Adds a page of older messages above what is held, if the window is still the one the
    /// page was asked for and the page ends where the window starts.
    pub fn prepend_older(&self, channel_id: i64, generation: u64, messages: Vec<Message>) {
        if !self.is_alive() {
            return;
        }
        self.logs.update(|logs| {
            let Some(log) = logs.get_mut(&channel_id) else {
                return;
            };
            let adjacent = match (messages.last(), log.oldest_seq()) {
                (Some(last), Some(oldest)) => last.seq + 1 == oldest,
                _ => true,
            };
            if log.generation == generation && adjacent {
                log.merge(messages);
                log.has_older = log.oldest_seq().is_some_and(|oldest| oldest > 1);
            }
        });
    }

    /// Adds a page of newer messages below what is held; `has_more` false means the page
    /// reached the channel's newest, and live messages extend the log from then on.
    pub fn append_newer(
        &self,
        channel_id: i64,
        generation: u64,
        messages: Vec<Message>,
        has_more: bool,
    ) {
        if !self.is_alive() {
            return;
        }
        let mut applied = false;
        self.logs.update(|logs| {
            let Some(log) = logs.get_mut(&channel_id) else {
                return;
            };
            let adjacent = messages
                .first()
                .is_none_or(|first| first.seq == log.newest_seq() + 1);
            if log.generation == generation && log.has_newer && adjacent {
                log.merge(messages);
                log.has_newer = has_more;
                applied = true;
            }
        });
        if applied && !has_more {
            // Whatever arrived live while the reader was further back.
            let after_seq = self
                .logs
                .with_untracked(|logs| logs.get(&channel_id).map_or(0, ChannelLog::newest_seq));
            self.send(ClientEvent::Subscribe {
                channel_id,
                after_seq,
            });
        }
    }

    /// A channel was renamed here: its list row and details follow at once.
    pub fn rename_channel(&self, detail: &ChannelDetail) {
        self.channels.update(|list| {
            if let Some(row) = list.iter_mut().find(|c| c.id == detail.id) {
                row.name = detail.name.clone();
                if let Some(name) = &detail.name {
                    row.title = name.clone();
                }
            }
        });
        self.details.update(|details| {
            details.insert(detail.id, detail.clone());
        });
    }

    /// Forgets a channel I am no longer in, leaving a notice for the home view.
    pub fn forget_channel(&self, channel_id: i64) {
        if !self.is_alive() {
            return;
        }
        let title = self
            .summary_untracked(channel_id)
            .map(|c| c.title)
            .unwrap_or_else(|| "the channel".to_owned());
        let left_myself = self.leaving.get_value() == Some(channel_id);
        self.leaving.set_value(None);
        self.notice.set(Some(if left_myself {
            format!("You left {title}.")
        } else {
            format!("You were removed from {title}.")
        }));
        self.channels
            .update(|list| list.retain(|c| c.id != channel_id));
        self.details.update(|details| {
            details.remove(&channel_id);
        });
        self.logs.update(|logs| {
            logs.remove(&channel_id);
        });
    }

    /// Leaves a group: the channel is forgotten once the server agrees.
    pub async fn leave(&self, channel_id: i64) -> Result<(), crate::error::ApiError> {
        self.leaving.set_value(Some(channel_id));
        match crate::channels::api::leave_channel(channel_id).await {
            Ok(()) => {
                // The `member_removed` event may have done it already.
                if self
                    .channels
                    .with_untracked(|l| l.iter().any(|c| c.id == channel_id))
                {
                    self.forget_channel(channel_id);
                }
                Ok(())
            }
            Err(error) => {
                self.leaving.set_value(None);
                Err(error)
            }
        }
    }

    /// Shows a message as sending at once and delivers it after any sent before it.
    pub fn submit(&self, channel_id: i64, client_id: String, body: String) {
        self.logs.update(|logs| {
            let log = logs.entry(channel_id).or_default();
            // Behind messages that wait for the connection, so the order typed is kept.
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
        });
        self.deliver_pending(channel_id);
    }

    /// Sends a refused message again, with its original `client_id`.
    pub fn retry(&self, channel_id: i64, client_id: &str) {
        self.set_pending_state(channel_id, client_id, PendingState::Sending);
        self.deliver_pending(channel_id);
    }

    /// What has been typed here and not yet confirmed, oldest first per channel: kept in the
    /// tab's storage (`ui::outbox`) so a reload does not lose it.
    pub fn outbox(&self) -> Vec<OutboxEntry> {
        self.logs.with(|logs| {
            let mut entries: Vec<OutboxEntry> = logs
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
        })
    }

    /// Puts messages left unsent by an earlier page of this tab back in line; they go out once
    /// the connection is up, with their original `client_id` (a copy the server already has is
    /// not stored twice).
    pub fn restore_outbox(&self, entries: Vec<OutboxEntry>) {
        self.logs.update(|logs| {
            for entry in entries {
                let log = logs.entry(entry.channel_id).or_default();
                if !log.pending.iter().any(|p| p.client_id == entry.client_id) {
                    log.pending.push(PendingMessage {
                        client_id: entry.client_id,
                        body: entry.body,
                        state: PendingState::WaitingForConnection,
                    });
                }
            }
        });
    }

    /// The connection is back: messages that waited for it go out, in the order typed.
    pub fn resend_waiting(&self) {
        let channels: Vec<i64> = self.logs.with_untracked(|logs| {
            logs.iter()
                .filter(|(_, log)| {
                    log.pending
                        .iter()
                        .any(|p| p.state == PendingState::WaitingForConnection)
                })
                .map(|(id, _)| *id)
                .collect()
        });
        for channel_id in channels {
            self.logs.update(|logs| {
                if let Some(log) = logs.get_mut(&channel_id) {
                    for pending in &mut log.pending {
                        if pending.state == PendingState::WaitingForConnection {
                            pending.state = PendingState::Sending;
                        }
                    }
                }
            });
            self.deliver_pending(channel_id);
        }
    }

    fn set_pending_state(&self, channel_id: i64, client_id: &str, state: PendingState) {
        self.logs.update(|logs| {
            if let Some(pending) = logs
                .get_mut(&channel_id)
                .and_then(|log| log.pending.iter_mut().find(|p| p.client_id == client_id))
            {
                pending.state = state;
            }
        });
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
            loop {
                let next = client.logs.with_untracked(|logs| {
                    logs.get(&channel_id).and_then(|log| {
                        log.pending
                            .iter()
                            .find(|p| p.state == PendingState::Sending)
                            .cloned()
                    })
                });
                let Some(pending) = next else { break };
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
                    futures::future::Either::Right(((), _)) => {
                        Err(crate::error::ApiError::Unavailable {
                            message: "no answer from the server".to_owned(),
                        })
                    }
                };
                if !client.is_alive() {
                    return;
                }
                match sent {
                    Ok(message) => client.add_messages(channel_id, vec![message]),
                    Err(crate::error::ApiError::RateLimited {
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
                    Err(crate::error::ApiError::Unavailable { .. }) => {
                        // No connection: this and every later one wait for it, in order.
                        client.logs.update(|logs| {
                            if let Some(log) = logs.get_mut(&channel_id) {
                                for p in &mut log.pending {
                                    if p.state == PendingState::Sending {
                                        p.state = PendingState::WaitingForConnection;
                                    }
                                }
                            }
                        });
                        break;
                    }
                    Err(error) => client.set_pending_state(
                        channel_id,
                        &pending.client_id,
                        PendingState::Failed(error.to_string()),
                    ),
                }
            }
            client.delivering.update_value(|busy| {
                busy.remove(&channel_id);
            });
        });
    }

    /// Moves my read pointer (after `read/mark` answered).
    pub fn set_my_pointer(&self, channel_id: i64, last_read_seq: i64) {
        if !self.is_alive() {
            return;
        }
        let me = self.my_id();
        self.apply_pointer(channel_id, me, last_read_seq);
    }

    fn apply_pointer(&self, channel_id: i64, user_id: i64, last_read_seq: i64) {
        if user_id == self.my_id() {
            self.channels.update(|list| {
                if let Some(row) = list.iter_mut().find(|c| c.id == channel_id) {
                    row.last_read_seq = row.last_read_seq.max(last_read_seq);
                    row.unread_count = (row.last_seq - row.last_read_seq).max(0);
                }
            });
        }
        self.details.update(|details| {
            if let Some(member) = details
                .get_mut(&channel_id)
                .and_then(|d| d.members.iter_mut().find(|m| m.user.id == user_id))
            {
                member.last_read_seq = member.last_read_seq.max(last_read_seq);
            }
        });
    }

    /// Updates the channel row for a new message (preview, newest seq, unread count) and moves
    /// the sender's pointer (sending reads up to one's own message).
    fn note_message(&self, message: &Message) {
        let me = self.my_id();
        let mut known = false;
        self.channels.update(|list| {
            if let Some(index) = list.iter().position(|c| c.id == message.channel_id) {
                known = true;
                let row = &mut list[index];
                if message.seq >= row.last_seq {
                    row.last_seq = message.seq;
                    row.last_message = Some(MessagePreview {
                        seq: message.seq,
                        sender_id: message.sender_id,
                        sender_name: message.sender_name.clone(),
                        body: message.body.as_ref().map(|b| b.chars().take(140).collect()),
                        created_at: message.created_at,
                    });
                    // Most recent activity first, as the server orders it.
                    let row = list.remove(index);
                    list.insert(0, row);
                }
            }
        });
        if !known {
            self.channels_stale.update(|n| *n += 1);
        }
        self.apply_pointer(message.channel_id, message.sender_id, message.seq);
        if message.sender_id != me {
            self.channels.update(|list| {
                if let Some(row) = list.iter_mut().find(|c| c.id == message.channel_id) {
                    row.unread_count = (row.last_seq - row.last_read_seq).max(0);
                }
            });
        }
        self.typing.update(|typing| {
            if let Some(users) = typing.get_mut(&message.channel_id) {
                users.remove(&message.sender_id);
            }
        });
    }

    /// Puts an edited or deleted message in place, in the log and in the channel's preview.
    pub fn replace_message(&self, message: Message) {
        if !self.is_alive() {
            return;
        }
        self.channels.update(|list| {
            if let Some(row) = list.iter_mut().find(|c| c.id == message.channel_id)
                && let Some(preview) = row.last_message.as_mut().filter(|p| p.seq == message.seq)
            {
                preview.body = message.body.as_ref().map(|b| b.chars().take(140).collect());
            }
        });
        // Only a message the window holds: one outside it would tear a hole in the run.
        self.logs.update(|logs| {
            if let Some(held) = logs
                .get_mut(&message.channel_id)
                .and_then(|log| log.messages.get_mut(&message.seq))
            {
                *held = message;
            }
        });
    }

    /// A fresh channel list from the server. Pointers and newest seqs only move forward, so an
    /// answer computed before a read or a message that this page already applied cannot undo
    /// it.
    pub fn replace_channel_list(&self, mut fresh: Vec<ChannelSummary>) {
        self.channels.update(|list| {
            for row in &mut fresh {
                if let Some(held) = list.iter().find(|c| c.id == row.id) {
                    if held.last_seq > row.last_seq {
                        row.last_seq = held.last_seq;
                        row.last_message.clone_from(&held.last_message);
                    }
                    row.last_read_seq = row.last_read_seq.max(held.last_read_seq);
                    row.unread_count = (row.last_seq - row.last_read_seq).max(0);
                }
            }
            *list = fresh;
        });
    }

    /// Applies one server event.
    pub fn apply(&self, event: ServerEvent) {
        match event {
            ServerEvent::Hello { server_time, .. } => {
                self.clock_skew.set(server_time - now_ms());
                self.status.set(ConnectionStatus::Connected);
                self.send(ClientEvent::Resume {
                    channels: self.resume_cursors(),
                });
                let activity = self.activity.get_untracked();
                if activity == ActivityState::Away {
                    self.send(ClientEvent::Activity { state: activity });
                }
                // Unread counts and previews may have moved while disconnected.
                self.channels_stale.update(|n| *n += 1);
                self.refresh_loaded_channels();
                self.resend_waiting();
            }
            ServerEvent::MessageCreated { message } => {
                let channel_id = message.channel_id;
                let gap_after = self.logs.with_untracked(|logs| {
                    logs.get(&channel_id).and_then(|log| {
                        let newest = log.newest_seq();
                        (log.at_live_edge() && message.seq > newest + 1).then_some(newest)
                    })
                });
                if message.sender_id != self.my_id() {
                    self.arrived.set(Some(message.clone()));
                }
                self.add_messages(channel_id, vec![message]);
                if let Some(after_seq) = gap_after {
                    self.send(ClientEvent::Subscribe {
                        channel_id,
                        after_seq,
                    });
                }
            }
            ServerEvent::MessageUpdated { message } | ServerEvent::MessageDeleted { message } => {
                self.replace_message(message);
            }
            ServerEvent::ReadUpdated {
                channel_id,
                user_id,
                last_read_seq,
            } => self.apply_pointer(channel_id, user_id, last_read_seq),
            ServerEvent::Typing {
                channel_id,
                user_id,
                expires_at,
            } => {
                let local_expiry = expires_at - self.clock_skew.get_untracked();
                self.typing.update(|typing| {
                    typing
                        .entry(channel_id)
                        .or_default()
                        .insert(user_id, local_expiry);
                });
            }
            ServerEvent::TypingStopped {
                channel_id,
                user_id,
            } => self.typing.update(|typing| {
                if let Some(users) = typing.get_mut(&channel_id) {
                    users.remove(&user_id);
                }
            }),
            ServerEvent::Presence {
                user_id,
                state,
                last_seen_at,
            } => self.set_presence(user_id, state, last_seen_at),
            ServerEvent::MemberAdded {
                channel_id,
                user,
                role,
            } => {
                self.details.update(|details| {
                    if let Some(detail) = details.get_mut(&channel_id)
                        && !detail.members.iter().any(|m| m.user.id == user.id)
                    {
                        let last_read_seq = detail.last_seq;
                        detail.members.push(ChannelMember {
                            user,
                            role,
                            joined_at: now_ms(),
                            last_read_seq,
                        });
                    }
                });
                self.channels_stale.update(|n| *n += 1);
            }
            ServerEvent::MemberRemoved {
                channel_id,
                user_id,
            } => {
                if user_id == self.my_id() {
                    if self
                        .channels
                        .with_untracked(|l| l.iter().any(|c| c.id == channel_id))
                    {
                        self.forget_channel(channel_id);
                    }
                } else {
                    self.details.update(|details| {
                        if let Some(detail) = details.get_mut(&channel_id) {
                            detail.members.retain(|m| m.user.id != user_id);
                        }
                    });
                    // If the owner left, someone else owns the channel now: reload its members.
                    if self.details.with_untracked(|d| d.contains_key(&channel_id)) {
                        let client = *self;
                        leptos::task::spawn_local(async move {
                            if let Ok(detail) = crate::channels::api::get_channel(channel_id).await
                            {
                                client.details.update(|d| {
                                    d.insert(channel_id, detail);
                                });
                            }
                        });
                    }
                }
                self.channels_stale.update(|n| *n += 1);
            }
            ServerEvent::ChannelUpdated { channel } => {
                self.details.update(|details| {
                    if let Some(detail) = details.get_mut(&channel.id) {
                        detail.name = channel.name.clone();
                    }
                });
                self.channels_stale.update(|n| *n += 1);
            }
            ServerEvent::CaughtUp { .. } | ServerEvent::Pong { .. } => {}
            ServerEvent::Error { code, message } => {
                leptos::logging::warn!("realtime error {code:?}: {message}");
            }
        }
    }

    /// After reconnecting: what catch-up does not replay (read pointers, edits and deletions of
    /// messages already held) is reloaded for the channels on hand.
    fn refresh_loaded_channels(&self) {
        let client = *self;
        let channels: Vec<i64> = self.details.with_untracked(|d| d.keys().copied().collect());
        leptos::task::spawn_local(async move {
            for channel_id in channels {
                // Left or removed meanwhile: nothing to refresh, and asking would be refused.
                if !client.is_alive()
                    || !client
                        .channels
                        .with_untracked(|l| l.iter().any(|c| c.id == channel_id))
                {
                    continue;
                }
                if let Ok(detail) = crate::channels::api::get_channel(channel_id).await {
                    client.details.update(|d| {
                        d.insert(channel_id, detail);
                    });
                }
                if !client.is_alive() {
                    return;
                }
                // Edits and deletions of held messages; new ones come through catch-up, in order.
                let newest = crate::messages::api::list_messages(channel_id, None, None, Some(50));
                if let Ok(page) = newest.await {
                    client.logs.update(|logs| {
                        if let Some(log) = logs.get_mut(&channel_id) {
                            for message in page.messages {
                                if let Some(held) = log.messages.get_mut(&message.seq) {
                                    *held = message;
                                }
                            }
                        }
                    });
                }
            }
        });
    }

    pub fn set_presence(&self, user_id: i64, state: PresenceState, last_seen_at: Option<i64>) {
        self.presence.update(|presence| {
            let previous = presence.get(&user_id).and_then(|p| p.last_seen_at);
            presence.insert(
                user_id,
                PresenceInfo {
                    state,
                    last_seen_at: last_seen_at.or(previous),
                },
            );
        });
    }

    pub fn set_presence_snapshot(&self, snapshot: Vec<UserPresence>) {
        for entry in snapshot {
            self.set_presence(entry.user_id, entry.state, entry.last_seen_at);
        }
    }

    /// Starts the socket (in the browser; nothing happens while rendering on the server).
    pub fn connect(&self) {
        start_socket(*self);
    }
}

#[cfg(feature = "hydrate")]
fn start_socket(client: ChatClient) {
    leptos::task::spawn_local(socket::run(client));
}

#[cfg(not(feature = "hydrate"))]
fn start_socket(_: ChatClient) {}

/// How long a send may go unanswered before it is treated as unreachable.
pub const SEND_DEADLINE_MS: u32 = 15_000;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(seq: i64) -> Message {
        Message {
            id: seq,
            channel_id: 1,
            seq,
            sender_id: 1,
            sender_name: "Ann".into(),
            client_id: format!("c{seq}"),
            body: Some(format!("m{seq}")),
            created_at: 0,
            edited_at: None,
            deleted_at: None,
        }
    }

    #[test]
    fn catch_up_resumes_after_the_unbroken_run_not_after_the_newest() {
        let mut log = ChannelLog::default();
        assert_eq!(log.contiguous_end(), 0);
        log.merge((5..=9).map(message));
        assert_eq!(log.contiguous_end(), 9);
        // A live message past a hole (an interrupted replay): resume fills the hole.
        log.merge([message(12)]);
        assert_eq!(log.newest_seq(), 12);
        assert_eq!(log.contiguous_end(), 9);
        log.merge([message(10), message(11)]);
        assert_eq!(log.contiguous_end(), 12);
    }

    #[test]
    fn a_confirmed_send_replaces_its_pending_copy() {
        let mut log = ChannelLog::default();
        log.pending.push(PendingMessage {
            client_id: "c3".into(),
            body: "m3".into(),
            state: PendingState::WaitingForConnection,
        });
        log.merge([message(3)]);
        assert!(log.pending.is_empty());
        assert_eq!(log.messages.len(), 1);
    }
}
