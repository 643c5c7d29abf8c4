//! The browser's side of realtime: the chat state the components render and the socket that
//! keeps it current. Rendered on the server too (without a socket), so only [`socket`] is
//! browser-only.
//!
//! # Layout, bottom to top
//! - [`model`]: the state as plain values ([`ChatModel`]) and the rules that keep its parts in
//!   step.
//! - [`events`]: the reducer, one function from each [`ServerEvent`] to model changes and
//!   [`events::Effect`]s.
//! - [`outbox`]: messages typed here until the server confirms them.
//! - [`storage`]: the tab's `sessionStorage`.
//! - `live` (browser only): starts the socket and applies what it reports to the state.
//! - [`socket`]: the WebSocket loop. It knows nothing of the state: it reports what happened
//!   as [`SocketNews`] over one channel and sends the [`ClientEvent`]s it gets over another.
//! - this file: [`ChatClient`], the one owner of the model. Components read through its
//!   accessors (each tells the reactive system which part it read) and change state only
//!   through its methods, named for what the user or the server did.

pub mod events;
#[cfg(feature = "hydrate")]
mod live;
pub mod model;
pub mod outbox;
#[cfg(feature = "hydrate")]
pub mod socket;
pub mod storage;

use std::collections::HashSet;

use leptos::prelude::*;

pub use model::{ChannelLog, ConnectionStatus, PendingMessage, PendingState, PresenceInfo};
pub use outbox::OutboxEntry;

use crate::auth::PublicUser;
use crate::channels::{ChannelDetail, ChannelSummary};
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::messages::Message;
use crate::presence::UserPresence;
use crate::realtime::protocol::{ActivityState, ClientEvent, ServerEvent};
use model::{Changes, ChatModel};

/// What the socket reports to the state.
#[derive(Debug)]
pub enum SocketNews {
    /// A server event, in the order received.
    Event(ServerEvent),
    /// The connection was lost; the next attempt is under way or scheduled.
    Reconnecting,
    /// The connection looks healthy (a periodic beat): sends that waited for it may go.
    Pulse,
    /// This session was signed out (close 4001): reconnecting would be refused.
    SignedOut,
    /// The session no longer exists (it expired, or was signed out while offline).
    SessionGone,
}

/// One reactive trigger per part of the model: reading a part tracks its trigger, a change
/// notifies it.
#[derive(Clone, Copy)]
struct Triggers {
    status: Trigger,
    channels: Trigger,
    channels_stale: Trigger,
    logs: Trigger,
    details: Trigger,
    typing: Trigger,
    presence: Trigger,
    activity: Trigger,
    mounted: Trigger,
    notice: Trigger,
    arrived: Trigger,
}

impl Triggers {
    fn new() -> Self {
        Self {
            status: Trigger::new(),
            channels: Trigger::new(),
            channels_stale: Trigger::new(),
            logs: Trigger::new(),
            details: Trigger::new(),
            typing: Trigger::new(),
            presence: Trigger::new(),
            activity: Trigger::new(),
            mounted: Trigger::new(),
            notice: Trigger::new(),
            arrived: Trigger::new(),
        }
    }

    fn notify(&self, changes: Changes) {
        let Changes {
            status,
            channels,
            channels_stale,
            logs,
            details,
            typing,
            presence,
            activity,
            mounted,
            notice,
            arrived,
        } = changes;
        for (changed, trigger) in [
            (status, self.status),
            (channels, self.channels),
            (channels_stale, self.channels_stale),
            (logs, self.logs),
            (details, self.details),
            (typing, self.typing),
            (presence, self.presence),
            (activity, self.activity),
            (mounted, self.mounted),
            (notice, self.notice),
            (arrived, self.arrived),
        ] {
            if changed {
                trigger.notify();
            }
        }
    }
}

/// The chat state, shared through context: a cheap `Copy` handle, the model's one owner.
#[derive(Clone, Copy)]
pub struct ChatClient {
    model: StoredValue<ChatModel>,
    triggers: Triggers,
    /// Channels whose pending messages a sender task is delivering right now.
    delivering: StoredValue<HashSet<i64>>,
    /// Frames for the socket; `None` until connected (and on the server).
    to_socket: StoredValue<Option<futures::channel::mpsc::UnboundedSender<ClientEvent>>>,
}

impl ChatClient {
    pub fn new(me: PublicUser, channels: Vec<ChannelSummary>) -> Self {
        Self {
            model: StoredValue::new(ChatModel::new(me, channels)),
            triggers: Triggers::new(),
            delivering: StoredValue::new(HashSet::new()),
            to_socket: StoredValue::new(None),
        }
    }

    /// Reads a part of the model, subscribing the caller to the changes of that part (its
    /// trigger).
    fn read<R>(&self, part: Trigger, read: impl FnOnce(&ChatModel) -> R) -> R {
        part.track();
        self.model.with_value(read)
    }

    /// Reads the model without subscribing; `None` once the chat screen is gone.
    fn read_untracked<R>(&self, read: impl FnOnce(&ChatModel) -> R) -> Option<R> {
        self.model.try_with_value(read)
    }

    /// Changes the model and tells the views of each part that changed. Nothing happens once
    /// the chat screen is gone (a late answer or socket event).
    fn change<R: Default>(&self, change: impl FnOnce(&mut ChatModel) -> R) -> R {
        let Some((result, changes)) = self.model.try_update_value(|model| {
            let result = change(model);
            (result, model.take_changes())
        }) else {
            return R::default();
        };
        self.triggers.notify(changes);
        result
    }

    /// False once the chat screen that owns this state is gone (e.g. after signing out): the
    /// socket and sender tasks then stop instead of touching disposed state.
    pub fn is_alive(&self) -> bool {
        self.model.try_with_value(|_| ()).is_some()
    }

    pub fn me(&self) -> PublicUser {
        self.model.with_value(|m| m.me.clone())
    }

    pub fn my_id(&self) -> i64 {
        self.model.with_value(ChatModel::my_id)
    }

    pub fn status(&self) -> ConnectionStatus {
        self.read(self.triggers.status, |m| *m.status)
    }

    /// Reads the channel list (most recent activity first).
    pub fn with_channels<R>(&self, read: impl FnOnce(&[ChannelSummary]) -> R) -> R {
        self.read(self.triggers.channels, |m| read(&m.channels))
    }

    pub fn summary(&self, channel_id: i64) -> Option<ChannelSummary> {
        self.read(self.triggers.channels, |m| m.summary(channel_id).cloned())
    }

    /// [`Self::summary`] without subscribing the caller to changes.
    pub fn summary_untracked(&self, channel_id: i64) -> Option<ChannelSummary> {
        self.read_untracked(|m| m.summary(channel_id).cloned())
            .flatten()
    }

    /// Whether I am a member of `channel_id` as far as this page knows.
    pub fn is_member(&self, channel_id: i64) -> bool {
        self.read(self.triggers.channels, |m| m.is_member(channel_id))
    }

    /// Bumped whenever the channel list should be fetched again.
    pub fn channels_generation(&self) -> u64 {
        self.read(self.triggers.channels_stale, |m| *m.channels_stale)
    }

    /// [`Self::channels_generation`] without subscribing; `None` once the screen is gone.
    pub fn channels_generation_untracked(&self) -> Option<u64> {
        self.read_untracked(|m| *m.channels_stale)
    }

    /// Reads what is held of a channel's messages.
    pub fn with_log<R>(&self, channel_id: i64, read: impl FnOnce(Option<&ChannelLog>) -> R) -> R {
        self.read(self.triggers.logs, |m| read(m.log(channel_id)))
    }

    /// [`Self::with_log`] without subscribing the caller to changes.
    pub fn with_log_untracked<R>(
        &self,
        channel_id: i64,
        read: impl FnOnce(Option<&ChannelLog>) -> R,
    ) -> R {
        self.model.with_value(|m| read(m.log(channel_id)))
    }

    /// Reads a channel's loaded details (members and their read pointers).
    pub fn with_detail<R>(
        &self,
        channel_id: i64,
        read: impl FnOnce(Option<&ChannelDetail>) -> R,
    ) -> R {
        self.read(self.triggers.details, |m| read(m.details.get(&channel_id)))
    }

    /// Users typing in `channel_id` now, me excepted.
    pub fn typing_in(&self, channel_id: i64) -> Vec<i64> {
        let now = now_ms();
        self.read(self.triggers.typing, |m| m.typing_in(channel_id, now))
    }

    pub fn presence_of(&self, user_id: i64) -> Option<PresenceInfo> {
        self.read(self.triggers.presence, |m| {
            m.presence.get(&user_id).copied()
        })
    }

    pub fn notice(&self) -> Option<String> {
        self.read(self.triggers.notice, |m| (*m.notice).clone())
    }

    /// The newest message from someone else that arrived live.
    pub fn arrived(&self) -> Option<Message> {
        self.read(self.triggers.arrived, |m| (*m.arrived).clone())
    }

    pub fn activity(&self) -> ActivityState {
        self.read(self.triggers.activity, |m| *m.activity)
    }

    pub fn activity_untracked(&self) -> ActivityState {
        self.read_untracked(|m| *m.activity)
            .unwrap_or(ActivityState::Away)
    }

    /// True once hydrated (clock-dependent text renders only then).
    pub fn mounted(&self) -> bool {
        self.read(self.triggers.mounted, |m| *m.mounted)
    }

    /// The page is hydrated.
    pub fn mark_mounted(&self) {
        self.change(|m| m.mounted.set(true));
    }

    pub fn dismiss_notice(&self) {
        self.change(|m| m.notice.set(None));
    }

    /// This tab is signing out: the socket's close that follows is expected.
    pub fn begin_sign_out(&self) {
        self.change(|m| m.signing_out = true);
    }

    /// Signing out failed: a later close of the socket is news again.
    pub fn sign_out_failed(&self) {
        self.change(|m| m.signing_out = false);
    }

    /// Queues a frame for the socket; dropped (and re-derived after reconnecting) while
    /// offline.
    pub fn send(&self, event: ClientEvent) {
        // Nothing to send to once the chat screen is gone (a late answer asking to catch up).
        let _ = self.to_socket.try_with_value(|to_socket| {
            if let Some(to_socket) = to_socket {
                let _ = to_socket.unbounded_send(event);
            }
        });
    }

    pub fn set_activity(&self, state: ActivityState) {
        if self.activity_untracked() != state {
            self.change(|m| m.activity.set(state));
            self.send(ClientEvent::Activity { state });
        }
    }

    /// Adds a channel I just created or opened, so it can be shown before the list is fetched
    /// again.
    pub fn add_channel(&self, summary: ChannelSummary) {
        self.change(|m| m.add_channel(summary));
    }

    /// Stores messages (a send's answer, or a live or replayed one) and updates the channel
    /// row.
    pub fn add_messages(&self, channel_id: i64, messages: Vec<Message>) {
        self.change(|m| m.add_messages(channel_id, messages));
    }

    /// A window of messages was loaded: it replaces what is held (see
    /// [`ChatModel::replace_window`]). At the newest, catch-up starts after it, since messages
    /// that arrived while it loaded may have left a gap.
    pub fn replace_window(&self, channel_id: i64, messages: Vec<Message>, has_newer: bool) {
        let after_seq = self.change(|m| {
            m.replace_window(channel_id, messages, has_newer);
            m.log(channel_id).map(ChannelLog::newest_seq)
        });
        if !has_newer {
            self.send(ClientEvent::Subscribe {
                channel_id,
                after_seq: after_seq.unwrap_or(0),
            });
        }
    }

    /// The window's generation, to hand back with a page asked for now.
    pub fn window_generation(&self, channel_id: i64) -> u64 {
        self.read_untracked(|m| m.window_generation(channel_id))
            .unwrap_or(0)
    }

    /// A page of older messages arrived for the window of `generation`.
    pub fn prepend_older(&self, channel_id: i64, generation: u64, messages: Vec<Message>) {
        self.change(|m| m.prepend_older(channel_id, generation, messages));
    }

    /// A page of newer messages arrived; once it reaches the newest, live messages resume.
    pub fn append_newer(
        &self,
        channel_id: i64,
        generation: u64,
        messages: Vec<Message>,
        has_more: bool,
    ) {
        let reached_newest =
            self.change(|m| m.append_newer(channel_id, generation, messages, has_more));
        if let Some(after_seq) = reached_newest {
            self.send(ClientEvent::Subscribe {
                channel_id,
                after_seq,
            });
        }
    }

    /// A channel was renamed here: its list row and details follow at once.
    pub fn rename_channel(&self, detail: &ChannelDetail) {
        self.change(|m| m.rename_channel(detail));
    }

    /// A channel's members changed here (added, removed): the server's answer is shown.
    pub fn store_detail(&self, detail: ChannelDetail) {
        self.change(|m| m.store_detail(detail));
    }

    /// Loads a channel's members and read pointers; the member ids, when loaded.
    pub async fn load_members(&self, channel_id: i64) -> Option<Vec<i64>> {
        let detail = crate::channels::api::get_channel(channel_id).await.ok()?;
        let ids = detail.members.iter().map(|m| m.user.id).collect();
        self.store_detail(detail);
        Some(ids)
    }

    /// Leaves a group: the channel is forgotten once the server agrees.
    pub async fn leave(&self, channel_id: i64) -> Result<(), ApiError> {
        self.change(|m| m.leaving = Some(channel_id));
        match crate::channels::api::leave_channel(channel_id).await {
            Ok(()) => {
                // The `member_removed` event may have done it already.
                self.change(|m| {
                    if m.is_member(channel_id) {
                        m.forget_channel(channel_id);
                    }
                });
                Ok(())
            }
            Err(error) => {
                self.change(|m| m.leaving = None);
                Err(error)
            }
        }
    }

    /// Moves my read pointer (after `read/mark` answered).
    pub fn set_my_pointer(&self, channel_id: i64, last_read_seq: i64) {
        self.change(|m| {
            let me = m.my_id();
            m.apply_pointer(channel_id, me, last_read_seq);
        });
    }

    /// Puts an edited or deleted message in place, in the log and in the channel's preview.
    pub fn replace_message(&self, message: Message) {
        self.change(|m| m.replace_message(message));
    }

    /// A fresh channel list from the server (see [`ChatModel::replace_channel_list`]).
    pub fn replace_channel_list(&self, fresh: Vec<ChannelSummary>) {
        self.change(|m| m.replace_channel_list(fresh));
    }

    pub fn set_presence_snapshot(&self, snapshot: Vec<UserPresence>) {
        self.change(|m| {
            for entry in snapshot {
                m.set_presence(entry.user_id, entry.state, entry.last_seen_at);
            }
        });
    }

    /// Starts the socket (in the browser; nothing happens while rendering on the server).
    pub fn connect(&self) {
        start_socket(*self);
    }
}

#[cfg(feature = "hydrate")]
fn start_socket(client: ChatClient) {
    live::start(client);
}

#[cfg(not(feature = "hydrate"))]
fn start_socket(_: ChatClient) {}
