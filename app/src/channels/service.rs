//! Channel rules: who may create, see, rename and change membership.

use super::store::{CapReached, ChannelAccess};
use super::{ChannelDetail, ChannelKind, ChannelSummary, MemberRole};
use crate::auth::server::AuthUser;
use crate::clock::now_ms;
use crate::domain::{ChannelName, parse_id};
use crate::error::ApiError;
use crate::realtime::protocol::{ChannelInfo, ServerEvent};
use crate::realtime::server::fanout::Target;
use crate::server::error::ServiceResult;
use crate::server::rate_limit::Action;
use crate::server::{AppState, ServiceError, StoreError};

/// A membership cap the store refused a write on, told to the client as `limit_reached`
/// naming the cap and its value; other storage failures stay internal.
fn cap_error(caller: i64) -> impl Fn(StoreError) -> ServiceError {
    move |error| match error {
        StoreError::CapReached(CapReached::ChannelFull { max }) => ApiError::limit_reached(
            "channel_members",
            max.into(),
            format!("a channel can have at most {max} members"),
        )
        .into(),
        StoreError::CapReached(CapReached::ChannelsPerUser { user_ids, max }) => {
            let message = if user_ids == [caller] {
                format!(
                    "you are already in {max} channels, the most allowed; leave one to join another"
                )
            } else {
                let ids: Vec<String> = user_ids.iter().map(i64::to_string).collect();
                format!(
                    "user(s) {} already in {max} channels, the most allowed",
                    ids.join(", ")
                )
            };
            ApiError::limit_reached("channels_per_user", max.into(), message).into()
        }
        other => other.into(),
    }
}

/// The caller's access to a channel: 404 when it does not exist, 403 when not a member.
pub async fn require_member(
    state: &AppState,
    user: &AuthUser,
    channel_id: i64,
) -> ServiceResult<(ChannelAccess, MemberRole)> {
    let channel_id = parse_id(channel_id, "channel_id")?;
    let access = state
        .db
        .channel_access(channel_id, user.id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("channel {channel_id} does not exist")))?;
    match access.role {
        Some(role) => Ok((access, role)),
        None => {
            Err(ApiError::forbidden(format!("you are not a member of channel {channel_id}")).into())
        }
    }
}

/// Like [`require_member`], and the channel must be a group the caller owns.
async fn require_group_owner(
    state: &AppState,
    user: &AuthUser,
    channel_id: i64,
    action: &str,
) -> ServiceResult<()> {
    let (access, role) = require_member(state, user, channel_id).await?;
    if access.kind == ChannelKind::Direct {
        return Err(ApiError::forbidden(format!("direct messages cannot {action}")).into());
    }
    if role != MemberRole::Owner {
        return Err(ApiError::forbidden(format!("only the channel owner can {action}")).into());
    }
    Ok(())
}

fn info(detail: &ChannelDetail) -> ChannelInfo {
    ChannelInfo {
        id: detail.id,
        kind: detail.kind,
        name: detail.name.clone(),
        last_seq: detail.last_seq,
        member_count: i64::try_from(detail.members.len()).unwrap_or(i64::MAX),
    }
}

/// Subscribes every member's connections and tells them about the new channel.
fn announce_new_channel(state: &AppState, detail: &ChannelDetail) {
    for member in &detail.members {
        state.hub.join(member.user.id, detail.id);
    }
    state.hub.publish(
        Target::Channel(detail.id),
        ServerEvent::ChannelUpdated {
            channel: info(detail),
        },
    );
}

/// Tells the channel (the leaving member included) and then unsubscribes the member.
fn announce_departure(state: &AppState, channel_id: i64, user_id: i64) {
    state.hub.publish(
        Target::Channel(channel_id),
        ServerEvent::MemberRemoved {
            channel_id,
            user_id,
        },
    );
    state.hub.leave(user_id, channel_id);
}

async fn detail(state: &AppState, channel_id: i64) -> ServiceResult<ChannelDetail> {
    state.db.channel_detail(channel_id).await?.ok_or_else(|| {
        ServiceError::from(ApiError::not_found(format!(
            "channel {channel_id} does not exist"
        )))
    })
}

/// Checks every id names an existing user, naming the ones that do not.
async fn require_users(state: &AppState, field: &str, ids: &[i64]) -> ServiceResult<()> {
    for id in ids {
        parse_id(*id, field)?;
    }
    let existing = state.db.existing_user_ids(ids).await?;
    let unknown: Vec<String> = ids
        .iter()
        .filter(|id| !existing.contains(id))
        .map(i64::to_string)
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(field, format!("unknown user id(s): {}", unknown.join(", "))).into())
    }
}

#[tracing::instrument(skip(state, user, name, member_ids), fields(user_id = user.id))]
pub async fn create_group(
    state: &AppState,
    user: &AuthUser,
    name: &str,
    member_ids: &[i64],
) -> ServiceResult<ChannelDetail> {
    state.user_limits.check(user.id, Action::Channels)?;
    let name = ChannelName::parse(name)?;
    let mut members: Vec<i64> = member_ids
        .iter()
        .copied()
        .filter(|id| *id != user.id)
        .collect();
    members.sort_unstable();
    members.dedup();
    require_users(state, "member_ids", &members).await?;
    let channel_id = state
        .db
        .create_group(
            user.id,
            name.as_str(),
            &members,
            now_ms(),
            state.config.caps,
        )
        .await
        .map_err(cap_error(user.id))?;
    let created = detail(state, channel_id).await?;
    announce_new_channel(state, &created);
    Ok(created)
}

#[tracing::instrument(skip(state, user), fields(user_id = user.id))]
pub async fn open_direct(
    state: &AppState,
    user: &AuthUser,
    other_user_id: i64,
) -> ServiceResult<ChannelDetail> {
    state.user_limits.check(user.id, Action::Channels)?;
    require_users(state, "user_id", &[other_user_id]).await?;
    let (channel_id, created) = state
        .db
        .direct_channel(user.id, other_user_id, now_ms(), state.config.caps)
        .await
        .map_err(cap_error(user.id))?;
    let direct = detail(state, channel_id).await?;
    if created {
        announce_new_channel(state, &direct);
    }
    Ok(direct)
}

pub async fn list(state: &AppState, user: &AuthUser) -> ServiceResult<Vec<ChannelSummary>> {
    Ok(state.db.channel_summaries(user.id).await?)
}

pub async fn get(
    state: &AppState,
    user: &AuthUser,
    channel_id: i64,
) -> ServiceResult<ChannelDetail> {
    require_member(state, user, channel_id).await?;
    detail(state, channel_id).await
}

#[tracing::instrument(skip(state, user, name), fields(user_id = user.id))]
pub async fn rename(
    state: &AppState,
    user: &AuthUser,
    channel_id: i64,
    name: &str,
) -> ServiceResult<ChannelDetail> {
    state.user_limits.check(user.id, Action::Channels)?;
    let name = ChannelName::parse(name)?;
    require_group_owner(state, user, channel_id, "be renamed").await?;
    state.db.rename_channel(channel_id, name.as_str()).await?;
    let renamed = detail(state, channel_id).await?;
    state.hub.publish(
        Target::Channel(channel_id),
        ServerEvent::ChannelUpdated {
            channel: info(&renamed),
        },
    );
    Ok(renamed)
}

#[tracing::instrument(skip(state, user), fields(user_id = user.id))]
pub async fn add_member(
    state: &AppState,
    user: &AuthUser,
    channel_id: i64,
    new_member_id: i64,
) -> ServiceResult<ChannelDetail> {
    state.user_limits.check(user.id, Action::Channels)?;
    require_group_owner(state, user, channel_id, "add members").await?;
    require_users(state, "user_id", &[new_member_id]).await?;
    let added = state
        .db
        .add_member(channel_id, new_member_id, now_ms(), state.config.caps)
        .await
        .map_err(cap_error(user.id))?;
    let current = detail(state, channel_id).await?;
    if added && let Some(member) = current.members.iter().find(|m| m.user.id == new_member_id) {
        state.hub.join(new_member_id, channel_id);
        state.hub.publish(
            Target::Channel(channel_id),
            ServerEvent::MemberAdded {
                channel_id,
                user: member.user.clone(),
                role: member.role,
            },
        );
    }
    Ok(current)
}

#[tracing::instrument(skip(state, user), fields(user_id = user.id))]
pub async fn remove_member(
    state: &AppState,
    user: &AuthUser,
    channel_id: i64,
    member_id: i64,
) -> ServiceResult<ChannelDetail> {
    state.user_limits.check(user.id, Action::Channels)?;
    let member_id = parse_id(member_id, "user_id")?;
    require_group_owner(state, user, channel_id, "remove members").await?;
    if member_id == user.id {
        return Err(
            ApiError::invalid("user_id", "to remove yourself, leave the channel instead").into(),
        );
    }
    if !state.db.remove_member(channel_id, member_id).await? {
        return Err(ApiError::not_found(format!(
            "user {member_id} is not a member of channel {channel_id}"
        ))
        .into());
    }
    announce_departure(state, channel_id, member_id);
    detail(state, channel_id).await
}

#[tracing::instrument(skip(state, user), fields(user_id = user.id))]
pub async fn leave(state: &AppState, user: &AuthUser, channel_id: i64) -> ServiceResult<()> {
    state.user_limits.check(user.id, Action::Channels)?;
    let (access, _) = require_member(state, user, channel_id).await?;
    if access.kind == ChannelKind::Direct {
        return Err(ApiError::forbidden("direct messages cannot be left").into());
    }
    if state.db.remove_member(channel_id, user.id).await? {
        announce_departure(state, channel_id, user.id);
    }
    Ok(())
}
