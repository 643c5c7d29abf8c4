//! Channel storage: channels, members, roles.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{
    ChannelDetail, ChannelKind, ChannelMember, ChannelSummary, MemberRole, MessagePreview,
};
use crate::auth::PublicUser;
use crate::realtime::protocol::MAX_RESUME_CURSORS;
use crate::server::db::StoreResult;
use crate::server::{SqliteDb, StoreError};

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

/// Which cap a membership write would have exceeded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapReached {
    /// The channel already has `max` members.
    #[error("the channel already has {max} members")]
    ChannelFull { max: u32 },
    /// These users are already members of `max` channels each.
    #[error("users {user_ids:?} are already in {max} channels")]
    ChannelsPerUser { user_ids: Vec<i64>, max: u32 },
}

impl From<CapReached> for StoreError {
    fn from(cap: CapReached) -> Self {
        Self::CapReached(cap)
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

fn kind_from(text: &str) -> ChannelKind {
    if text == "direct" {
        ChannelKind::Direct
    } else {
        ChannelKind::Group
    }
}

fn role_from(text: &str) -> MemberRole {
    if text == "owner" {
        MemberRole::Owner
    } else {
        MemberRole::Member
    }
}

fn summary(row: &SqliteRow) -> Result<ChannelSummary, sqlx::Error> {
    let kind = kind_from(row.try_get("kind")?);
    let name: Option<String> = row.try_get("name")?;
    let peer = match row.try_get::<Option<i64>, _>("peer_id")? {
        Some(id) => Some(PublicUser {
            id,
            username: row.try_get("peer_username")?,
            display_name: row.try_get("peer_display_name")?,
            last_seen_at: row.try_get("peer_last_seen_at")?,
        }),
        None => None,
    };
    let title = match (&name, &peer) {
        (Some(name), _) => name.clone(),
        (None, Some(peer)) => peer.display_name.clone(),
        (None, None) => row.try_get("my_display_name")?,
    };
    let last_message = match row.try_get::<Option<i64>, _>("lm_seq")? {
        Some(seq) => Some(MessagePreview {
            seq,
            sender_id: row.try_get("lm_sender_id")?,
            sender_name: row.try_get("lm_sender_name")?,
            body: row.try_get("lm_body")?,
            created_at: row.try_get("lm_created_at")?,
        }),
        None => None,
    };
    let last_seq: i64 = row.try_get("last_seq")?;
    let last_read_seq: i64 = row.try_get("last_read_seq")?;
    Ok(ChannelSummary {
        id: row.try_get("id")?,
        kind,
        name,
        title,
        peer,
        role: role_from(row.try_get("role")?),
        last_seq,
        last_read_seq,
        unread_count: (last_seq - last_read_seq).max(0),
        last_message,
        created_at: row.try_get("created_at")?,
    })
}

/// Refuses (inside the write transaction) when any of `user_ids` is already in `max` channels.
async fn check_channels_per_user(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    user_ids: &[i64],
    max: u32,
) -> StoreResult<()> {
    let ids_json = serde_json::to_string(user_ids).unwrap_or_else(|_| "[]".into());
    let full: Vec<i64> = sqlx::query_scalar(
        "SELECT user_id FROM channel_members
         WHERE user_id IN (SELECT value FROM json_each(?))
         GROUP BY user_id HAVING COUNT(*) >= ? ORDER BY user_id",
    )
    .bind(ids_json)
    .bind(i64::from(max))
    .fetch_all(&mut **tx)
    .await?;
    if full.is_empty() {
        Ok(())
    } else {
        Err(CapReached::ChannelsPerUser {
            user_ids: full,
            max,
        }
        .into())
    }
}

/// Adds `user_ids` as plain members (skipping any who already are) inside a write transaction.
async fn insert_members(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    channel_id: i64,
    user_ids: &[i64],
    now: i64,
) -> Result<(), sqlx::Error> {
    for user_id in user_ids {
        sqlx::query(
            "INSERT INTO channel_members (channel_id, user_id, role, joined_at)
             VALUES (?, ?, 'member', ?) ON CONFLICT DO NOTHING",
        )
        .bind(channel_id)
        .bind(user_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl ChannelStore for SqliteDb {
    async fn create_group(
        &self,
        creator: i64,
        name: &str,
        member_ids: &[i64],
        now: i64,
        caps: MembershipCaps,
    ) -> StoreResult<i64> {
        if member_ids.len() >= usize::try_from(caps.max_members).unwrap_or(usize::MAX) {
            return Err(CapReached::ChannelFull {
                max: caps.max_members,
            }
            .into());
        }
        let mut tx = self.begin_write().await?;
        let mut everyone = Vec::with_capacity(member_ids.len() + 1);
        everyone.push(creator);
        everyone.extend_from_slice(member_ids);
        check_channels_per_user(&mut tx, &everyone, caps.max_channels_per_user).await?;
        let channel_id: i64 = sqlx::query_scalar(
            "INSERT INTO channels (kind, name, created_by, created_at) VALUES ('group', ?, ?, ?)
             RETURNING id",
        )
        .bind(name)
        .bind(creator)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO channel_members (channel_id, user_id, role, joined_at)
             VALUES (?, ?, 'owner', ?)",
        )
        .bind(channel_id)
        .bind(creator)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        insert_members(&mut tx, channel_id, member_ids, now).await?;
        tx.commit().await?;
        Ok(channel_id)
    }

    async fn direct_channel(
        &self,
        a: i64,
        b: i64,
        now: i64,
        caps: MembershipCaps,
    ) -> StoreResult<(i64, bool)> {
        let (low, high) = (a.min(b), a.max(b));
        let key = format!("{low}:{high}");
        let mut tx = self.begin_write().await?;
        let existing: Option<i64> =
            sqlx::query_scalar("SELECT id FROM channels WHERE direct_key = ?")
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(id) = existing {
            return Ok((id, false));
        }
        let members: &[i64] = if low == high { &[low] } else { &[low, high] };
        check_channels_per_user(&mut tx, members, caps.max_channels_per_user).await?;
        let channel_id: i64 = sqlx::query_scalar(
            "INSERT INTO channels (kind, direct_key, created_by, created_at)
             VALUES ('direct', ?, ?, ?) RETURNING id",
        )
        .bind(&key)
        .bind(a)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        insert_members(&mut tx, channel_id, members, now).await?;
        tx.commit().await?;
        Ok((channel_id, true))
    }

    async fn channel_ids_for_user(&self, user_id: i64) -> StoreResult<Vec<i64>> {
        Ok(
            sqlx::query_scalar("SELECT channel_id FROM channel_members WHERE user_id = ?")
                .bind(user_id)
                .fetch_all(&self.reader)
                .await?,
        )
    }

    async fn channel_peers(&self, user_id: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT peer.user_id FROM channel_members mine
             JOIN channel_members peer ON peer.channel_id = mine.channel_id
             WHERE mine.user_id = ?1 AND peer.user_id <> ?1",
        )
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?)
    }

    async fn channel_access(
        &self,
        channel_id: i64,
        user_id: i64,
    ) -> StoreResult<Option<ChannelAccess>> {
        let row = sqlx::query(
            "SELECT c.kind, c.last_seq, m.role FROM channels c
             LEFT JOIN channel_members m ON m.channel_id = c.id AND m.user_id = ?
             WHERE c.id = ?",
        )
        .bind(user_id)
        .bind(channel_id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            Ok(ChannelAccess {
                kind: kind_from(row.try_get("kind")?),
                last_seq: row.try_get("last_seq")?,
                role: row.try_get::<Option<&str>, _>("role")?.map(role_from),
            })
        })
        .transpose()
    }

    async fn channel_summaries(&self, user_id: i64) -> StoreResult<Vec<ChannelSummary>> {
        let rows = sqlx::query(
            "SELECT c.id, c.kind, c.name, c.created_at, c.last_seq,
                    m.role, m.last_read_seq, me.display_name AS my_display_name,
                    lm.seq AS lm_seq, lm.sender_id AS lm_sender_id,
                    lu.display_name AS lm_sender_name,
                    CASE WHEN lm.deleted_at IS NULL THEN substr(lm.body, 1, 140) END AS lm_body,
                    lm.created_at AS lm_created_at,
                    peer.id AS peer_id, peer.username AS peer_username,
                    peer.display_name AS peer_display_name,
                    peer.last_seen_at AS peer_last_seen_at
             FROM channel_members m
             JOIN channels c ON c.id = m.channel_id
             JOIN users me ON me.id = m.user_id
             LEFT JOIN messages lm ON lm.channel_id = c.id AND lm.seq = c.last_seq
             LEFT JOIN users lu ON lu.id = lm.sender_id
             LEFT JOIN channel_members pm
                    ON c.kind = 'direct' AND pm.channel_id = c.id AND pm.user_id <> m.user_id
             LEFT JOIN users peer ON peer.id = pm.user_id
             WHERE m.user_id = ?
             ORDER BY COALESCE(lm.created_at, c.created_at) DESC, c.id DESC",
        )
        .bind(user_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.iter().map(summary).collect::<Result<_, _>>()?)
    }

    async fn channel_detail(&self, channel_id: i64) -> StoreResult<Option<ChannelDetail>> {
        let Some(channel) = sqlx::query(
            "SELECT id, kind, name, created_by, created_at, last_seq FROM channels WHERE id = ?",
        )
        .bind(channel_id)
        .fetch_optional(&self.reader)
        .await?
        else {
            return Ok(None);
        };
        let member_rows = sqlx::query(
            "SELECT u.id, u.username, u.display_name, u.last_seen_at,
                    m.role, m.joined_at, m.last_read_seq
             FROM channel_members m JOIN users u ON u.id = m.user_id
             WHERE m.channel_id = ?
             ORDER BY m.role = 'owner' DESC, u.display_name, u.id",
        )
        .bind(channel_id)
        .fetch_all(&self.reader)
        .await?;
        let members = member_rows
            .iter()
            .map(|row| {
                Ok(ChannelMember {
                    user: crate::auth::server::store::public_user(row)?,
                    role: role_from(row.try_get("role")?),
                    joined_at: row.try_get("joined_at")?,
                    last_read_seq: row.try_get("last_read_seq")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
        Ok(Some(ChannelDetail {
            id: channel.try_get("id")?,
            kind: kind_from(channel.try_get("kind")?),
            name: channel.try_get("name")?,
            created_by: channel.try_get("created_by")?,
            created_at: channel.try_get("created_at")?,
            last_seq: channel.try_get("last_seq")?,
            members,
        }))
    }

    async fn rename_channel(&self, channel_id: i64, name: &str) -> StoreResult<()> {
        sqlx::query("UPDATE channels SET name = ? WHERE id = ? AND kind = 'group'")
            .bind(name)
            .bind(channel_id)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn add_member(
        &self,
        channel_id: i64,
        user_id: i64,
        now: i64,
        caps: MembershipCaps,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let already: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM channel_members WHERE channel_id = ? AND user_id = ?)",
        )
        .bind(channel_id)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        if already {
            return Ok(false);
        }
        let members: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM channel_members WHERE channel_id = ?")
                .bind(channel_id)
                .fetch_one(&mut *tx)
                .await?;
        if members >= i64::from(caps.max_members) {
            return Err(CapReached::ChannelFull {
                max: caps.max_members,
            }
            .into());
        }
        check_channels_per_user(&mut tx, &[user_id], caps.max_channels_per_user).await?;
        let added = sqlx::query(
            "INSERT INTO channel_members (channel_id, user_id, role, joined_at, last_read_seq)
             SELECT id, ?, 'member', ?, last_seq FROM channels WHERE id = ?
             ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(now)
        .bind(channel_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(added > 0)
    }

    async fn remove_member(&self, channel_id: i64, user_id: i64) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let removed_role: Option<String> = sqlx::query_scalar(
            "DELETE FROM channel_members WHERE channel_id = ? AND user_id = ? RETURNING role",
        )
        .bind(channel_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        if removed_role.as_deref() == Some("owner") {
            sqlx::query(
                "UPDATE channel_members SET role = 'owner'
                 WHERE channel_id = ?1 AND user_id = (
                     SELECT user_id FROM channel_members WHERE channel_id = ?1
                     ORDER BY joined_at, user_id LIMIT 1)",
            )
            .bind(channel_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(removed_role.is_some())
    }
}
