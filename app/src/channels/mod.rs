//! Channels: group channels and direct messages, their members and roles.

pub mod api;
pub mod components;
#[cfg(feature = "ssr")]
pub mod service;
#[cfg(feature = "ssr")]
pub mod store;

use serde::{Deserialize, Serialize};

use crate::auth::PublicUser;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A named channel with an owner and members.
    Group,
    /// The one conversation between two users (or a user's notes to self).
    Direct,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Group => "group",
            Self::Direct => "direct",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// May rename the channel and add or remove members.
    Owner,
    Member,
}

impl MemberRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Member => "member",
        }
    }
}

/// The newest message of a channel, shortened for a channel list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePreview {
    pub seq: i64,
    pub sender_id: i64,
    pub sender_name: String,
    /// At most 140 characters; `None` when the message was deleted.
    pub body: Option<String>,
    /// Unix epoch milliseconds.
    pub created_at: i64,
}

/// One row of "my channels".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSummary {
    pub id: i64,
    pub kind: ChannelKind,
    /// The group's name; `None` for direct messages.
    pub name: Option<String>,
    /// What to show: the group's name, or the other person's display name for a DM.
    pub title: String,
    /// The other person of a DM (`None` for groups and notes to self).
    pub peer: Option<PublicUser>,
    /// My role in the channel.
    pub role: MemberRole,
    /// Sequence number of the channel's newest message (0 when empty).
    pub last_seq: i64,
    /// My read pointer: I have read every message with `seq <= last_read_seq`.
    pub last_read_seq: i64,
    /// `last_seq - last_read_seq`. Sending a message moves the sender's own pointer to it, so
    /// one's own messages do not count as unread.
    pub unread_count: i64,
    pub last_message: Option<MessagePreview>,
    /// Unix epoch milliseconds.
    pub created_at: i64,
}

/// A member and how far they have read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelMember {
    pub user: PublicUser,
    pub role: MemberRole,
    /// Unix epoch milliseconds.
    pub joined_at: i64,
    pub last_read_seq: i64,
}

/// A channel with all its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelDetail {
    pub id: i64,
    pub kind: ChannelKind,
    pub name: Option<String>,
    pub created_by: i64,
    /// Unix epoch milliseconds.
    pub created_at: i64,
    pub last_seq: i64,
    /// Owner first, then by display name.
    pub members: Vec<ChannelMember>,
}

impl ChannelSummary {
    /// The list row for a channel the server just answered with (created, or a DM opened), so
    /// the page can open it before the channel list is fetched again. Titles follow the
    /// server's rule: the group's name, the other person's name, or my own for notes to self.
    pub fn from_detail(detail: &ChannelDetail, me: &PublicUser) -> Self {
        let mine = detail.members.iter().find(|m| m.user.id == me.id);
        let peer = match detail.kind {
            ChannelKind::Direct => detail
                .members
                .iter()
                .find(|m| m.user.id != me.id)
                .map(|m| m.user.clone()),
            ChannelKind::Group => None,
        };
        let title = match (&detail.name, &peer) {
            (Some(name), _) => name.clone(),
            (None, Some(peer)) => peer.display_name.clone(),
            (None, None) => me.display_name.clone(),
        };
        let last_read_seq = mine.map_or(detail.last_seq, |m| m.last_read_seq);
        Self {
            id: detail.id,
            kind: detail.kind,
            name: detail.name.clone(),
            title,
            peer,
            role: mine.map_or(MemberRole::Member, |m| m.role),
            last_seq: detail.last_seq,
            last_read_seq,
            unread_count: (detail.last_seq - last_read_seq).max(0),
            last_message: None,
            created_at: detail.created_at,
        }
    }
}
