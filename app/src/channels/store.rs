//! Channel storage: channels, members, roles.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{
    ChannelDetail, ChannelKind, ChannelMember, ChannelSummary, MemberRole, MessagePreview,
};
use crate::auth::PublicUser;
use crate::server::SqliteDb;
use crate::server::db::StoreResult;

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
    /// Creates a group owned by `creator` with `member_ids` (not containing `creator`) as
    /// members, returning its id.
    async fn create_group(
        &self,
        creator: i64,
        name: &str,
        member_ids: &[i64],
        now: i64,
    ) -> StoreResult<i64>;
    /// The id of the one DM channel between `a` and `b`, created if missing (then `true`).
    async fn direct_channel(&self, a: i64, b: i64, now: i64) -> StoreResult<(i64, bool)>;
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
    /// Returns false when already a member.
    async fn add_member(&self, channel_id: i64, user_id: i64, now: i64) -> StoreResult<bool>;
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
    ) -> StoreResult<i64> {
        let mut tx = self.begin_write().await?;
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

    async fn direct_channel(&self, a: i64, b: i64, now: i64) -> StoreResult<(i64, bool)> {
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
        let channel_id: i64 = sqlx::query_scalar(
            "INSERT INTO channels (kind, direct_key, created_by, created_at)
             VALUES ('direct', ?, ?, ?) RETURNING id",
        )
        .bind(&key)
        .bind(a)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        insert_members(&mut tx, channel_id, &[low, high], now).await?;
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

    async fn add_member(&self, channel_id: i64, user_id: i64, now: i64) -> StoreResult<bool> {
        let added = sqlx::query(
            "INSERT INTO channel_members (channel_id, user_id, role, joined_at, last_read_seq)
             SELECT id, ?, 'member', ?, last_seq FROM channels WHERE id = ?
             ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(now)
        .bind(channel_id)
        .execute(&self.writer)
        .await?
        .rows_affected();
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
