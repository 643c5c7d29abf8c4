//! Channel storage: channels, members, roles.

use async_trait::async_trait;

use super::{
    ChannelDetail, ChannelKind, ChannelMember, ChannelSummary, MemberRole, MessagePreview,
};
use crate::auth::PublicUser;
use crate::auth::server::store::UserRow;
use crate::realtime::protocol::MAX_RESUME_CURSORS;
pub use crate::server::storage::CapReached;
use crate::server::storage::StoreResult;

/// Caps on memberships. They are checked inside the write transaction that would exceed them,
/// so concurrent adds cannot overshoot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MembershipCaps {
    /// Most members a channel may have, its owner included.
    pub max_members: u32,
    /// Most channels one user may be a member of; at most [`MAX_RESUME_CURSORS`], so one
    /// `resume` can always name them all.
    pub max_channels_per_user: u32,
}

impl MembershipCaps {
    /// The highest channels-per-user cap: the most cursors one `resume` takes.
    pub const MAX_CHANNELS_PER_USER: u32 = MAX_RESUME_CURSORS as u32;
}

impl Default for MembershipCaps {
    fn default() -> Self {
        Self {
            max_members: 1000,
            max_channels_per_user: Self::MAX_CHANNELS_PER_USER,
        }
    }
}

/// What a user may do in a channel: its kind and newest seq, and the user's role if a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelAccess {
    pub kind: ChannelKind,
    pub last_seq: i64,
    /// `None` when the user is not a member.
    pub role: Option<MemberRole>,
}

#[async_trait]
pub trait ChannelStore {
    /// Creates a group owned by `creator` with `member_ids` (distinct, not containing
    /// `creator`) as members, returning its id. `CapReached` when that is more than
    /// `caps.max_members` in all, or when any of them is already in `caps.max_channels_per_user`
    /// channels.
    async fn create_group(
        &self,
        creator: i64,
        name: &str,
        member_ids: &[i64],
        now: i64,
        caps: MembershipCaps,
    ) -> StoreResult<i64>;
    /// The id of the one DM channel between `a` and `b`, created if missing (then `true`).
    /// Creating it is `CapReached` when either user is already in
    /// `caps.max_channels_per_user` channels; an existing one is always returned.
    async fn direct_channel(
        &self,
        a: i64,
        b: i64,
        now: i64,
        caps: MembershipCaps,
    ) -> StoreResult<(i64, bool)>;
    /// `(id, last_seq)` of each existing channel among `channel_ids`.
    async fn last_seqs(&self, channel_ids: &[i64]) -> StoreResult<Vec<(i64, i64)>>;
    /// Ids of the channels `user_id` is a member of.
    async fn channel_ids_for_user(&self, user_id: i64) -> StoreResult<Vec<i64>>;
    /// Users other than `user_id` who share at least one channel with them.
    async fn channel_peers(&self, user_id: i64) -> StoreResult<Vec<i64>>;
    /// `None` when the channel does not exist.
    async fn channel_access(
        &self,
        channel_id: i64,
        user_id: i64,
    ) -> StoreResult<Option<ChannelAccess>>;
    async fn channel_summaries(&self, user_id: i64) -> StoreResult<Vec<ChannelSummary>>;
    async fn channel_detail(&self, channel_id: i64) -> StoreResult<Option<ChannelDetail>>;
    async fn rename_channel(&self, channel_id: i64, name: &str) -> StoreResult<()>;
    /// Adds `user_id` as a member whose read pointer starts at the channel's newest message.
    /// Returns false when already a member. `CapReached` when the channel has
    /// `caps.max_members` members or the user is in `caps.max_channels_per_user` channels.
    async fn add_member(
        &self,
        channel_id: i64,
        user_id: i64,
        now: i64,
        caps: MembershipCaps,
    ) -> StoreResult<bool>;
    /// Removes a member; when the owner goes, the longest-standing member becomes owner.
    /// Returns false when the user was not a member.
    async fn remove_member(&self, channel_id: i64, user_id: i64) -> StoreResult<bool>;
}

pub(crate) fn kind_from(text: &str) -> ChannelKind {
    if text == "direct" {
        ChannelKind::Direct
    } else {
        ChannelKind::Group
    }
}

pub(crate) fn role_from(text: &str) -> MemberRole {
    if text == "owner" {
        MemberRole::Owner
    } else {
        MemberRole::Member
    }
}

/// One row of a user's channel list: the channel, the user's membership, the newest message
/// and, for a DM, the peer.
#[derive(sqlx::FromRow)]
pub(crate) struct SummaryRow {
    id: i64,
    kind: String,
    name: Option<String>,
    created_at: i64,
    last_seq: i64,
    role: String,
    last_read_seq: i64,
    my_display_name: String,
    lm_seq: Option<i64>,
    lm_sender_id: Option<i64>,
    lm_sender_name: Option<String>,
    lm_body: Option<String>,
    lm_created_at: Option<i64>,
    peer_id: Option<i64>,
    peer_username: Option<String>,
    peer_display_name: Option<String>,
    peer_last_seen_at: Option<i64>,
}

impl From<SummaryRow> for ChannelSummary {
    fn from(row: SummaryRow) -> Self {
        let peer = row.peer_id.map(|id| PublicUser {
            id,
            username: row.peer_username.unwrap_or_default(),
            display_name: row.peer_display_name.unwrap_or_default(),
            last_seen_at: row.peer_last_seen_at,
        });
        let title = match (&row.name, &peer) {
            (Some(name), _) => name.clone(),
            (None, Some(peer)) => peer.display_name.clone(),
            (None, None) => row.my_display_name,
        };
        let last_message = row.lm_seq.map(|seq| MessagePreview {
            seq,
            sender_id: row.lm_sender_id.unwrap_or_default(),
            sender_name: row.lm_sender_name.unwrap_or_default(),
            body: row.lm_body,
            created_at: row.lm_created_at.unwrap_or_default(),
        });
        Self {
            id: row.id,
            kind: kind_from(&row.kind),
            name: row.name,
            title,
            peer,
            role: role_from(&row.role),
            last_seq: row.last_seq,
            last_read_seq: row.last_read_seq,
            unread_count: (row.last_seq - row.last_read_seq).max(0),
            last_message,
            created_at: row.created_at,
        }
    }
}

/// A `channels` row as `channel_detail` selects it.
#[derive(sqlx::FromRow)]
pub(crate) struct ChannelRow {
    pub id: i64,
    pub kind: String,
    pub name: Option<String>,
    pub created_by: i64,
    pub created_at: i64,
    pub last_seq: i64,
}

/// A member joined with their user.
#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub role: String,
    pub joined_at: i64,
    pub last_read_seq: i64,
}

impl From<MemberRow> for ChannelMember {
    fn from(row: MemberRow) -> Self {
        Self {
            user: row.user.into(),
            role: role_from(&row.role),
            joined_at: row.joined_at,
            last_read_seq: row.last_read_seq,
        }
    }
}

impl ChannelRow {
    pub(crate) fn with_members(self, members: Vec<MemberRow>) -> ChannelDetail {
        ChannelDetail {
            id: self.id,
            kind: kind_from(&self.kind),
            name: self.name,
            created_by: self.created_by,
            created_at: self.created_at,
            last_seq: self.last_seq,
            members: members.into_iter().map(Into::into).collect(),
        }
    }
}

/// `(kind, last_seq, role)` as `channel_access` selects them.
pub(crate) fn access_from((kind, last_seq, role): (String, i64, Option<String>)) -> ChannelAccess {
    ChannelAccess {
        kind: kind_from(&kind),
        last_seq,
        role: role.as_deref().map(role_from),
    }
}
