//! Channels, members and roles on PostgreSQL. Membership writes lock the channel's row first,
//! then the users' rows (both in id order), the order every writer here uses: two nodes adding
//! members to one channel, or the same user to two channels, serialize on those rows, so a cap
//! checked inside the transaction cannot be overshot. Message batches lock channel rows only.

use async_trait::async_trait;
use sqlx::{Postgres, Transaction};

use super::PgDb;
use crate::channels::store::{
    CapReached, ChannelAccess, ChannelRow, ChannelStore, MemberRow, MembershipCaps, SummaryRow,
    access_from,
};
use crate::channels::{ChannelDetail, ChannelSummary};
use crate::server::storage::StoreResult;

type Tx = Transaction<'static, Postgres>;

/// Locks the rows of `user_ids` (in id order) until the transaction ends. `NO KEY UPDATE`
/// leaves foreign-key checks (a message from that user, say) unblocked.
async fn lock_users(tx: &mut Tx, user_ids: &[i64]) -> StoreResult<()> {
    sqlx::query("SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
        .bind(user_ids)
        .fetch_all(&mut **tx)
        .await?;
    Ok(())
}

/// Locks the channel's row until the transaction ends; its `last_seq`, `None` when there is no
/// such channel.
async fn lock_channel(tx: &mut Tx, channel_id: i64) -> StoreResult<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT last_seq FROM channels WHERE id = $1 FOR NO KEY UPDATE")
            .bind(channel_id)
            .fetch_optional(&mut **tx)
            .await?,
    )
}

/// Refuses (inside the write transaction, with the users locked) when any of `user_ids` is
/// already in `max` channels.
async fn check_channels_per_user(tx: &mut Tx, user_ids: &[i64], max: u32) -> StoreResult<()> {
    let full: Vec<i64> = sqlx::query_scalar(
        "SELECT user_id FROM channel_members WHERE user_id = ANY($1)
         GROUP BY user_id HAVING COUNT(*) >= $2 ORDER BY user_id",
    )
    .bind(user_ids)
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

/// Adds `user_ids` as plain members (skipping any who already are).
async fn insert_members(
    tx: &mut Tx,
    channel_id: i64,
    user_ids: &[i64],
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO channel_members (channel_id, user_id, role, joined_at)
         SELECT $1, user_id, 'member', $3 FROM UNNEST($2::BIGINT[]) AS user_id
         ON CONFLICT DO NOTHING",
    )
    .bind(channel_id)
    .bind(user_ids)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl ChannelStore for PgDb {
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
        let mut everyone = Vec::with_capacity(member_ids.len() + 1);
        everyone.push(creator);
        everyone.extend_from_slice(member_ids);
        let mut tx = self.pool.begin().await?;
        lock_users(&mut tx, &everyone).await?;
        check_channels_per_user(&mut tx, &everyone, caps.max_channels_per_user).await?;
        let channel_id: i64 = sqlx::query_scalar(
            "INSERT INTO channels (kind, name, created_by, created_at)
             VALUES ('group', $1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(creator)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO channel_members (channel_id, user_id, role, joined_at)
             VALUES ($1, $2, 'owner', $3)",
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
        let existing = || {
            sqlx::query_scalar::<_, i64>("SELECT id FROM channels WHERE direct_key = $1").bind(&key)
        };
        if let Some(id) = existing().fetch_optional(&self.pool).await? {
            return Ok((id, false));
        }
        let members: &[i64] = if low == high { &[low] } else { &[low, high] };
        // Two nodes creating the same DM serialize on the pair's user rows: the second finds
        // the first's channel once it holds the locks.
        let mut tx = self.pool.begin().await?;
        lock_users(&mut tx, members).await?;
        if let Some(id) = existing().fetch_optional(&mut *tx).await? {
            return Ok((id, false));
        }
        check_channels_per_user(&mut tx, members, caps.max_channels_per_user).await?;
        let channel_id: i64 = sqlx::query_scalar(
            "INSERT INTO channels (kind, direct_key, created_by, created_at)
             VALUES ('direct', $1, $2, $3) RETURNING id",
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
        Ok(
            sqlx::query_as("SELECT id, last_seq FROM channels WHERE id = ANY($1)")
                .bind(channel_ids)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn channel_ids_for_user(&self, user_id: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT channel_id FROM channel_members WHERE user_id = $1 ORDER BY channel_id",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn channel_peers(&self, user_id: i64) -> StoreResult<Vec<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT peer.user_id FROM channel_members mine
             JOIN channel_members peer ON peer.channel_id = mine.channel_id
             WHERE mine.user_id = $1 AND peer.user_id <> $1",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn channel_access(
        &self,
        channel_id: i64,
        user_id: i64,
    ) -> StoreResult<Option<ChannelAccess>> {
        let row = sqlx::query_as(
            "SELECT c.kind, c.last_seq, m.role FROM channels c
             LEFT JOIN channel_members m ON m.channel_id = c.id AND m.user_id = $1
             WHERE c.id = $2",
        )
        .bind(user_id)
        .bind(channel_id)
        .fetch_optional(&self.pool)
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
             WHERE m.user_id = $1
             ORDER BY COALESCE(lm.created_at, c.created_at) DESC, c.id DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ChannelSummary::from).collect())
    }

    async fn channel_detail(&self, channel_id: i64) -> StoreResult<Option<ChannelDetail>> {
        let Some(channel) = sqlx::query_as::<_, ChannelRow>(
            "SELECT id, kind, name, created_by, created_at, last_seq FROM channels WHERE id = $1",
        )
        .bind(channel_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let members = sqlx::query_as::<_, MemberRow>(
            "SELECT u.id, u.username, u.display_name, u.last_seen_at,
                    m.role, m.joined_at, m.last_read_seq
             FROM channel_members m JOIN users u ON u.id = m.user_id
             WHERE m.channel_id = $1
             ORDER BY m.role = 'owner' DESC, u.display_name COLLATE \"C\", u.id",
        )
        .bind(channel_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(channel.with_members(members)))
    }

    async fn rename_channel(&self, channel_id: i64, name: &str) -> StoreResult<()> {
        sqlx::query("UPDATE channels SET name = $1 WHERE id = $2 AND kind = 'group'")
            .bind(name)
            .bind(channel_id)
            .execute(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        let Some(last_seq) = lock_channel(&mut tx, channel_id).await? else {
            return Ok(false);
        };
        let (already, members): (bool, i64) = sqlx::query_as(
            "SELECT COALESCE(bool_or(user_id = $2), false), COUNT(*)
             FROM channel_members WHERE channel_id = $1",
        )
        .bind(channel_id)
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        if already {
            return Ok(false);
        }
        if members >= i64::from(caps.max_members) {
            return Err(CapReached::ChannelFull {
                max: caps.max_members,
            }
            .into());
        }
        lock_users(&mut tx, &[user_id]).await?;
        check_channels_per_user(&mut tx, &[user_id], caps.max_channels_per_user).await?;
        sqlx::query(
            "INSERT INTO channel_members (channel_id, user_id, role, joined_at, last_read_seq)
             VALUES ($1, $2, 'member', $3, $4)",
        )
        .bind(channel_id)
        .bind(user_id)
        .bind(now)
        .bind(last_seq)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn remove_member(&self, channel_id: i64, user_id: i64) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        if lock_channel(&mut tx, channel_id).await?.is_none() {
            return Ok(false);
        }
        let removed_role: Option<String> = sqlx::query_scalar(
            "DELETE FROM channel_members WHERE channel_id = $1 AND user_id = $2 RETURNING role",
        )
        .bind(channel_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        if removed_role.as_deref() == Some("owner") {
            sqlx::query(
                "UPDATE channel_members SET role = 'owner'
                 WHERE channel_id = $1 AND user_id = (
                     SELECT user_id FROM channel_members WHERE channel_id = $1
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
