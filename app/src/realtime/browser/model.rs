//! The browser's chat state as plain values: what the components render, with the rules that
//! keep its parts in step (a new message moves the channel row, its unread count and the
//! sender's read pointer together). No signals here: [`super::ChatClient`] owns one
//! [`ChatModel`] and tells the views which parts changed, and the unit tests drive it directly.
//!
//! Messages are kept per channel in a map keyed by seq, so a message that arrives twice (from a
//! send's answer and from the socket, or from a replay) is stored once, and gaps are visible.

use std::collections::{BTreeMap, HashMap};
use std::ops::Deref;

use crate::auth::PublicUser;
use crate::channels::{ChannelDetail, ChannelSummary, MessagePreview};
use crate::messages::Message;
use crate::presence::PresenceState;
use crate::realtime::protocol::{ActivityState, ChannelCursor};

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

/// A part of the model that remembers whether it was written since the views last looked, so
/// only the views that depend on it are told.
#[derive(Debug, Default)]
pub struct Tracked<T> {
    value: T,
    changed: bool,
}

impl<T> Tracked<T> {
    fn new(value: T) -> Self {
        Self {
            value,
            changed: false,
        }
    }

    /// Write access; marks the part changed.
    pub fn edit(&mut self) -> &mut T {
        self.changed = true;
        &mut self.value
    }

    /// Replaces the value; marks the part changed (as setting a signal notifies, even with the
    /// same value).
    pub fn set(&mut self, value: T) {
        self.value = value;
        self.changed = true;
    }

    /// Whether the part changed since the last call.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }
}

impl<T> Deref for Tracked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// Which parts of the model changed, for [`super::ChatClient`] to notify their views.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    pub status: bool,
    pub channels: bool,
    pub channels_stale: bool,
    pub logs: bool,
    pub details: bool,
    pub typing: bool,
    pub presence: bool,
    pub activity: bool,
    pub mounted: bool,
    pub notice: bool,
    pub arrived: bool,
}

/// Everything the chat screen shows, as plain values.
#[derive(Debug)]
pub struct ChatModel {
    pub(super) me: PublicUser,
    pub(super) status: Tracked<ConnectionStatus>,
    pub(super) channels: Tracked<Vec<ChannelSummary>>,
    /// Bumped whenever the channel list should be fetched again (reconnect, membership change).
    pub(super) channels_stale: Tracked<u64>,
    pub(super) logs: Tracked<HashMap<i64, ChannelLog>>,
    /// Loaded channel details (members and their read pointers).
    pub(super) details: Tracked<HashMap<i64, ChannelDetail>>,
    /// Channel → user → when their typing indicator expires (client clock).
    pub(super) typing: Tracked<HashMap<i64, BTreeMap<i64, i64>>>,
    pub(super) presence: Tracked<HashMap<i64, PresenceInfo>>,
    /// Server clock minus client clock, from `hello`.
    pub(super) clock_skew: i64,
    /// The last activity state sent, re-sent after reconnecting.
    pub(super) activity: Tracked<ActivityState>,
    /// True once hydrated: times and other clock-dependent text render only then, so the
    /// server's rendering (in its own time zone) never disagrees with the browser's.
    pub(super) mounted: Tracked<bool>,
    /// A one-line notice for the home view, e.g. after leaving or being removed from the
    /// channel that was open.
    pub(super) notice: Tracked<Option<String>>,
    /// The newest message from someone else that arrived live, for screen readers (history
    /// pages are never announced).
    pub(super) arrived: Tracked<Option<Message>>,
    /// The channel this tab is leaving on its own (its removal is then not "you were removed").
    pub(super) leaving: Option<i64>,
    /// Set while this tab signs out: the server then closes the socket with 4001, and the page
    /// navigates by itself (another tab's sign-out is what sends a page to the sign-in page).
    pub(super) signing_out: bool,
}

impl ChatModel {
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
            me,
            status: Tracked::new(ConnectionStatus::Connecting),
            channels: Tracked::new(channels),
            channels_stale: Tracked::new(0),
            logs: Tracked::default(),
            details: Tracked::default(),
            typing: Tracked::default(),
            presence: Tracked::new(presence),
            clock_skew: 0,
            activity: Tracked::new(ActivityState::Active),
            mounted: Tracked::new(false),
            notice: Tracked::new(None),
            arrived: Tracked::new(None),
            leaving: None,
            signing_out: false,
        }
    }

    /// Which parts changed since the last call.
    pub fn take_changes(&mut self) -> Changes {
        Changes {
            status: self.status.take_changed(),
            channels: self.channels.take_changed(),
            channels_stale: self.channels_stale.take_changed(),
            logs: self.logs.take_changed(),
            details: self.details.take_changed(),
            typing: self.typing.take_changed(),
            presence: self.presence.take_changed(),
            activity: self.activity.take_changed(),
            mounted: self.mounted.take_changed(),
            notice: self.notice.take_changed(),
            arrived: self.arrived.take_changed(),
        }
    }

    pub fn my_id(&self) -> i64 {
        self.me.id
    }

    pub fn summary(&self, channel_id: i64) -> Option<&ChannelSummary> {
        self.channels.iter().find(|c| c.id == channel_id)
    }

    pub fn is_member(&self, channel_id: i64) -> bool {
        self.summary(channel_id).is_some()
    }

    pub fn log(&self, channel_id: i64) -> Option<&ChannelLog> {
        self.logs.get(&channel_id)
    }

    /// The channel list should be fetched again.
    pub(super) fn mark_channels_stale(&mut self) {
        *self.channels_stale.edit() += 1;
    }

    /// Where to resume each loaded channel from: its newest held seq. A channel read further
    /// back is left out: its newer messages are paged in as the reader scrolls.
    pub fn resume_cursors(&self) -> Vec<ChannelCursor> {
        self.logs
            .iter()
            .filter(|(_, log)| log.at_live_edge())
            .map(|(channel_id, log)| ChannelCursor {
                channel_id: *channel_id,
                after_seq: log.contiguous_end(),
            })
            .collect()
    }

    /// Adds a channel I just created or opened, so it can be shown before the list is fetched
    /// again.
    pub fn add_channel(&mut self, summary: ChannelSummary) {
        if !self.is_member(summary.id) {
            self.channels.edit().insert(0, summary);
        }
        self.mark_channels_stale();
    }

    /// Stores messages (a send's answer, or a live or replayed one) and updates the channel
    /// row. The log keeps them only while it holds the channel's newest messages.
    pub fn add_messages(&mut self, channel_id: i64, messages: Vec<Message>) {
        if let Some(newest) = messages.iter().max_by_key(|m| m.seq).cloned() {
            self.note_message(&newest);
        }
        let log = self.logs.edit().entry(channel_id).or_default();
        if log.at_live_edge() {
            log.merge(messages);
        } else {
            // Not loaded yet, or the reader is further back: the message is confirmed but
            // shown only once the window reaches it (the load after it catches up).
            for message in &messages {
                log.pending.retain(|p| p.client_id != message.client_id);
            }
        }
    }

    /// Replaces what is held of a channel with one unbroken run of messages: the newest page
    /// (`has_newer` false) or a stretch further back (`has_newer` true).
    pub fn replace_window(&mut self, channel_id: i64, messages: Vec<Message>, has_newer: bool) {
        if !has_newer && let Some(newest) = messages.iter().max_by_key(|m| m.seq).cloned() {
            self.note_message(&newest);
        }
        let log = self.logs.edit().entry(channel_id).or_default();
        log.messages.clear();
        log.merge(messages);
        // Seqs have no gaps, so anything after 1 means older messages exist.
        log.has_older = log.oldest_seq().is_some_and(|oldest| oldest > 1);
        log.has_newer = has_newer;
        log.loaded = true;
        log.generation += 1;
    }

    /// The window's generation, to hand back with a page asked for now.
    pub fn window_generation(&self, channel_id: i64) -> u64 {
        self.log(channel_id).map_or(0, |l| l.generation)
    }

    /// Adds a page of older messages above what is held, if the window is still the one the
    /// page was asked for and the page ends where the window starts.
    pub fn prepend_older(&mut self, channel_id: i64, generation: u64, messages: Vec<Message>) {
        let Some(log) = self.logs.get(&channel_id) else {
            return;
        };
        let adjacent = match (messages.last(), log.oldest_seq()) {
            (Some(last), Some(oldest)) => last.seq + 1 == oldest,
            _ => true,
        };
        if log.generation == generation && adjacent {
            let Some(log) = self.logs.edit().get_mut(&channel_id) else {
                return;
            };
            log.merge(messages);
            log.has_older = log.oldest_seq().is_some_and(|oldest| oldest > 1);
        }
    }

    /// Adds a page of newer messages below what is held; `has_more` false means the page
    /// reached the channel's newest, and live messages extend the log from then on. The seq to
    /// catch up after when it did.
    pub fn append_newer(
        &mut self,
        channel_id: i64,
        generation: u64,
        messages: Vec<Message>,
        has_more: bool,
    ) -> Option<i64> {
        let log = self.logs.get(&channel_id)?;
        let adjacent = messages
            .first()
            .is_none_or(|first| first.seq == log.newest_seq() + 1);
        if !(log.generation == generation && log.has_newer && adjacent) {
            return None;
        }
        let log = self.logs.edit().get_mut(&channel_id)?;
        log.merge(messages);
        log.has_newer = has_more;
        // Whatever arrived live while the reader was further back.
        (!has_more).then(|| log.newest_seq())
    }

    /// A channel's members and read pointers, as the server answered them.
    pub fn store_detail(&mut self, detail: ChannelDetail) {
        self.details.edit().insert(detail.id, detail);
    }

    /// A channel was renamed here: its list row and details follow at once.
    pub fn rename_channel(&mut self, detail: &ChannelDetail) {
        if let Some(row) = self.channels.edit().iter_mut().find(|c| c.id == detail.id) {
            row.name = detail.name.clone();
            if let Some(name) = &detail.name {
                row.title = name.clone();
            }
        }
        self.store_detail(detail.clone());
    }

    /// Forgets a channel I am no longer in, leaving a notice for the home view.
    pub fn forget_channel(&mut self, channel_id: i64) {
        let title = self
            .summary(channel_id)
            .map(|c| c.title.clone())
            .unwrap_or_else(|| "the channel".to_owned());
        let left_myself = self.leaving.take() == Some(channel_id);
        self.notice.set(Some(if left_myself {
            format!("You left {title}.")
        } else {
            format!("You were removed from {title}.")
        }));
        self.channels.edit().retain(|c| c.id != channel_id);
        self.details.edit().remove(&channel_id);
        self.logs.edit().remove(&channel_id);
    }

    /// Moves `user_id`'s read pointer in `channel_id` forward (never back).
    pub fn apply_pointer(&mut self, channel_id: i64, user_id: i64, last_read_seq: i64) {
        if user_id == self.my_id()
            && let Some(row) = self.channels.edit().iter_mut().find(|c| c.id == channel_id)
        {
            row.last_read_seq = row.last_read_seq.max(last_read_seq);
            row.unread_count = unread(row);
        }
        if let Some(member) = self
            .details
            .edit()
            .get_mut(&channel_id)
            .and_then(|d| d.members.iter_mut().find(|m| m.user.id == user_id))
        {
            member.last_read_seq = member.last_read_seq.max(last_read_seq);
        }
    }

    /// Updates the channel row for a new message (preview, newest seq, unread count) and moves
    /// the sender's pointer (sending reads up to one's own message).
    fn note_message(&mut self, message: &Message) {
        let list = self.channels.edit();
        match list.iter().position(|c| c.id == message.channel_id) {
            Some(index) => {
                let row = &mut list[index];
                if message.seq >= row.last_seq {
                    row.last_seq = message.seq;
                    row.last_message = Some(MessagePreview {
                        seq: message.seq,
                        sender_id: message.sender_id,
                        sender_name: message.sender_name.clone(),
                        body: message.body.as_ref().map(|b| preview(b)),
                        created_at: message.created_at,
                    });
                    // Most recent activity first, as the server orders it.
                    let row = list.remove(index);
                    list.insert(0, row);
                }
            }
            None => self.mark_channels_stale(),
        }
        self.apply_pointer(message.channel_id, message.sender_id, message.seq);
        if message.sender_id != self.my_id()
            && let Some(row) = self
                .channels
                .edit()
                .iter_mut()
                .find(|c| c.id == message.channel_id)
        {
            row.unread_count = unread(row);
        }
        if let Some(users) = self.typing.edit().get_mut(&message.channel_id) {
            users.remove(&message.sender_id);
        }
    }

    /// Puts an edited or deleted message in place, in the log and in the channel's preview.
    pub fn replace_message(&mut self, message: Message) {
        if let Some(row) = self
            .channels
            .edit()
            .iter_mut()
            .find(|c| c.id == message.channel_id)
            && let Some(preview_row) = row.last_message.as_mut().filter(|p| p.seq == message.seq)
        {
            preview_row.body = message.body.as_ref().map(|b| preview(b));
        }
        // Only a message the window holds: one outside it would tear a hole in the run.
        if let Some(held) = self
            .logs
            .edit()
            .get_mut(&message.channel_id)
            .and_then(|log| log.messages.get_mut(&message.seq))
        {
            *held = message;
        }
    }

    /// Edits and deletions of held messages, from a page read after reconnecting; messages
    /// not held are left to catch-up, which brings them in order.
    pub fn refresh_held(&mut self, channel_id: i64, messages: Vec<Message>) {
        if let Some(log) = self.logs.edit().get_mut(&channel_id) {
            for message in messages {
                if let Some(held) = log.messages.get_mut(&message.seq) {
                    *held = message;
                }
            }
        }
    }

    /// A fresh channel list from the server. Pointers and newest seqs only move forward, so an
    /// answer computed before a read or a message that this page already applied cannot undo
    /// it.
    pub fn replace_channel_list(&mut self, mut fresh: Vec<ChannelSummary>) {
        for row in &mut fresh {
            if let Some(held) = self.summary(row.id) {
                if held.last_seq > row.last_seq {
                    row.last_seq = held.last_seq;
                    row.last_message.clone_from(&held.last_message);
                }
                row.last_read_seq = row.last_read_seq.max(held.last_read_seq);
                row.unread_count = unread(row);
            }
        }
        *self.channels.edit() = fresh;
    }

    pub fn set_presence(&mut self, user_id: i64, state: PresenceState, last_seen_at: Option<i64>) {
        let presence = self.presence.edit();
        let previous = presence.get(&user_id).and_then(|p| p.last_seen_at);
        presence.insert(
            user_id,
            PresenceInfo {
                state,
                last_seen_at: last_seen_at.or(previous),
            },
        );
    }

    /// Users whose typing indicator in `channel_id` is still showing at `now`, me excepted.
    pub fn typing_in(&self, channel_id: i64, now: i64) -> Vec<i64> {
        let me = self.my_id();
        self.typing
            .get(&channel_id)
            .map(|users| {
                users
                    .iter()
                    .filter(|(user, expires)| **user != me && **expires > now)
                    .map(|(user, _)| *user)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The one place a row's unread count is worked out.
fn unread(row: &ChannelSummary) -> i64 {
    (row.last_seq - row.last_read_seq).max(0)
}

/// A message body as the channel list previews it.
fn preview(body: &str) -> String {
    body.chars().take(140).collect()
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
