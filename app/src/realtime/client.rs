//! The browser's chat state: what the components render, kept current by the WebSocket
//! (`socket.rs`, browser only) and by the answers of server functions.
//!
//! Messages are kept per channel in a map keyed by seq, so a message that arrives twice (from a
//! send's answer and from the socket, or from a replay) is stored once, and gaps are visible.

use std::collections::{BTreeMap, HashMap};

use leptos::prelude::*;

use super::protocol::{ActivityState, ChannelCursor, ClientEvent, ServerEvent};
use crate::auth::PublicUser;
use crate::channels::{ChannelDetail, ChannelMember, ChannelSummary, MessagePreview};
use crate::messages::Message;
use crate::presence::{PresenceState, UserPresence};

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

/// A message typed here and not yet confirmed by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMessage {
    pub client_id: String,
    pub body: String,
    /// Why the last attempt failed; `None` while sending.
    pub failed: Option<String>,
}

/// What the client holds of one channel's messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelLog {
    pub messages: BTreeMap<i64, Message>,
    pub pending: Vec<PendingMessage>,
    /// Older messages exist on the server beyond the oldest held.
    pub has_older: bool,
    /// The newest page was loaded (only then can gaps be detected).
    pub loaded: bool,
}

impl ChannelLog {
    fn newest_seq(&self) -> i64 {
        self.messages.keys().next_back().copied().unwrap_or(0)
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
    outbox: StoredValue<Option<futures::channel::mpsc::UnboundedSender<ClientEvent>>>,
}

impl ChatClient {
    pub fn new(me: PublicUser, channels: Vec<ChannelSummary>) -> Self {
        Self {
            me: StoredValue::new(me),
            status: RwSignal::new(ConnectionStatus::Connecting),
            channels: RwSignal::new(channels),
            logs: RwSignal::new(HashMap::new()),
            details: RwSignal::new(HashMap::new()),
            typing: RwSignal::new(HashMap::new()),
            presence: RwSignal::new(HashMap::new()),
            clock_skew: RwSignal::new(0),
            channels_stale: RwSignal::new(0),
            activity: RwSignal::new(ActivityState::Active),
            mounted: RwSignal::new(false),
            signing_out: StoredValue::new(false),
            outbox: StoredValue::new(None),
        }
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

    /// Where to resume each loaded channel from: its newest held seq.
    pub fn resume_cursors(&self) -> Vec<ChannelCursor> {
        self.logs.with_untracked(|logs| {
            logs.iter()
                .filter(|(_, log)| log.loaded)
                .map(|(channel_id, log)| ChannelCursor {
                    channel_id: *channel_id,
                    after_seq: log.newest_seq(),
                })
                .collect()
        })
    }

    pub fn summary(&self, channel_id: i64) -> Option<ChannelSummary> {
        self.channels
            .with(|list| list.iter().find(|c| c.id == channel_id).cloned())
    }

    /// Stores messages (a page or a send's answer) and updates the channel row.
    pub fn add_messages(&self, channel_id: i64, messages: Vec<Message>) {
        if let Some(newest) = messages.iter().max_by_key(|m| m.seq).cloned() {
            self.note_message(&newest);
        }
        self.logs
            .update(|logs| logs.entry(channel_id).or_default().merge(messages));
    }

    /// Moves my read pointer (after `read/mark` answered).
    pub fn set_my_pointer(&self, channel_id: i64, last_read_seq: i64) {
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

    fn replace_message(&self, message: Message) {
        self.channels.update(|list| {
            if let Some(row) = list.iter_mut().find(|c| c.id == message.channel_id)
                && let Some(preview) = row.last_message.as_mut().filter(|p| p.seq == message.seq)
            {
                preview.body = message.body.as_ref().map(|b| b.chars().take(140).collect());
            }
        });
        self.logs.update(|logs| {
            if let Some(log) = logs.get_mut(&message.channel_id) {
                log.messages.insert(message.seq, message);
            }
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
            }
            ServerEvent::MessageCreated { message } => {
                let channel_id = message.channel_id;
                let gap_after = self.logs.with_untracked(|logs| {
                    logs.get(&channel_id).and_then(|log| {
                        let newest = log.newest_seq();
                        (log.loaded && message.seq > newest + 1).then_some(newest)
                    })
                });
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
                    self.channels
                        .update(|list| list.retain(|c| c.id != channel_id));
                    self.details.update(|details| {
                        details.remove(&channel_id);
                    });
                    self.logs.update(|logs| {
                        logs.remove(&channel_id);
                    });
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
                if let Ok(detail) = crate::channels::api::get_channel(channel_id).await {
                    client.details.update(|d| {
                        d.insert(channel_id, detail);
                    });
                }
                let newest = crate::messages::api::list_messages(channel_id, None, None, Some(50));
                if let Ok(page) = newest.await {
                    client.logs.update(|logs| {
                        if let Some(log) = logs.get_mut(&channel_id) {
                            log.merge(page.messages);
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
    leptos::task::spawn_local(super::socket::run(client));
}

#[cfg(not(feature = "hydrate"))]
fn start_socket(_: ChatClient) {}

/// The client's clock in Unix epoch milliseconds.
#[cfg(feature = "hydrate")]
#[allow(clippy::cast_possible_truncation)]
pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}

#[cfg(not(feature = "hydrate"))]
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(0))
        .unwrap_or(0)
}
