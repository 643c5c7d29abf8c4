//! Channels, members and roles on SQLite. The single writer connection serializes every write,
//! so a cap checked inside a write transaction cannot be overshot by a concurrent one.

use async_trait::async_trait;

use super::SqliteDb;
use super::auth::json_ids;
use crate::channels::ChannelDetail;
use crate::channels::ChannelSummary;
use crate::channels::store::{
    CapReached, ChannelAccess, ChannelRow, ChannelStore, MemberRow, MembershipCaps, SummaryRow,
    access_from,
};
use crate::server::storage::StoreResult;

/// Refuses (inside the write transaction) when any of `user_ids` is already in `max` channels.
async fn check_channels_per_user(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    user_ids: &[i64],
    max: u32,
) -> StoreResult<()> {
    let full: Vec<i64> = sqlx::query_scalar(
        "SELECT user_id FROM channel_members
         WHERE user_id IN (SELECT value FROM json_each(?))
         GROUP BY user_id HAVING COUNT(*) >= ? ORDER BY user_id",
    )
    .bind(json_ids(user_ids))
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

    async fn last_seqs(&self, channel_ids: &[i64]) -> StoreResult<Vec<(i64, i64)>> {
        Ok(sqlx::query_as(
            "SELECT id, last_seq FROM channels WHERE id IN (SELECT value FROM json_each(?))",
        )
        .bind(json_ids(channel_ids))
        .fetch_all(&self.reader)
        .await?)
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
        let row = sqlx::query_as(
            "SELECT c.kind, c.last_seq, m.role FROM channels c
             LEFT JOIN channel_members m ON m.channel_id = c.id AND m.user_id = ?
             WHERE c.id = ?",
        )
        .bind(user_id)
        .bind(channel_id)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.map(access_from))
    }

    async fn channel_summaries(&self, user_id: i64) -> StoreResult<Vec<ChannelSummary>> {
        let rows = sqlx::query_as::<_, SummaryRow>(
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
        Ok(rows.into_iter().map(ChannelSummary::from).collect())
    }

    async fn channel_detail(&self, channel_id: i64) -> StoreResult<Option<ChannelDetail>> {
        let Some(channel) = sqlx::query_as::<_, ChannelRow>(
            "SELECT id, kind, name, created_by, created_at, last_seq FROM channels WHERE id = ?",
        )
        .bind(channel_id)
        .fetch_optional(&self.reader)
        .await?
        else {
            return Ok(None);
        };
        let members = sqlx::query_as::<_, MemberRow>(
            "SELECT u.id, u.username, u.display_name, u.last_seen_at,
                    m.role, m.joined_at, m.last_read_seq
             FROM channel_members m JOIN users u ON u.id = m.user_id
             WHERE m.channel_id = ?
             ORDER BY m.role = 'owner' DESC, u.display_name, u.id",
        )
        .bind(channel_id)
        .fetch_all(&self.reader)
        .await?;
        Ok(Some(channel.with_members(members)))
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
