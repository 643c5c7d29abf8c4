//! Message rules: only members read and write; only the sender edits or deletes.

use super::store::NewMessage;
use super::{Message, MessagePage, PageCursor};
use crate::auth::server::AuthUser;
use crate::channels::service::require_member;
use crate::clock::now_ms;
use crate::domain::{ClientId, MessageBody, parse_id, parse_limit, parse_seq};
use crate::error::ApiError;
use crate::realtime::protocol::ServerEvent;
use crate::realtime::server::fanout::Target;
use crate::server::AppState;
use crate::server::ServiceError;
use crate::server::error::ServiceResult;
use crate::server::rate_limit::Action;

/// Largest page `messages/list` serves.
pub const MAX_PAGE: u32 = 200;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: u32 = 50;

#[tracing::instrument(skip(state, user, body), fields(user_id = user.id))]
pub async fn send(
    state: &AppState,
    user: &AuthUser,
    channel_id: i64,
    client_id: &str,
    body: &str,
) -> ServiceResult<Message> {
    // Checked before the writer sees the send: a refused send stores nothing, so a retry with
    // the same `client_id` after the wait stores it exactly once.
    state.user_limits.check(user.id, Action::Send)?;
    let channel_id = parse_id(channel_id, "channel_id")?;
    let client_id = ClientId::parse(client_id)?;
    let body = MessageBody::parse(body)?;
    let new = NewMessage {
        channel_id,
        sender_id: user.id,
        client_id: client_id.as_str().to_owned(),
        body: body.as_str().to_owned(),
        created_at: now_ms(),
    };
    // The writer checks membership and the key in the same statement as the insert; only when
    // it stored nothing do we look for why. A second try covers being added to the channel
    // between the insert and the check.
    for _ in 0..2 {
        let stored = state
            .message_writer
            .write(new.clone(), user.display_name.clone())
            .await
            .map_err(|stopped| ServiceError::Fault(stopped.to_string()))??;
        if let Some(message) = stored {
            stopped_typing(state, user.id, channel_id);
            return Ok(message);
        }
        require_member(state, user, channel_id).await?;
        if let Some(original) = state
            .db
            .message_by_client_id(user.id, client_id.as_str())
            .await?
        {
            if original.channel_id != channel_id {
                return Err(ApiError::conflict(format!(
                    "client_id {} was already used for a message in another channel",
                    client_id.as_str()
                ))
                .into());
            }
            return Ok(original);
        }
    }
    Err(ServiceError::Fault(format!(
        "channel {channel_id}: a member's send stored nothing twice"
    )))
}

/// A send ends the sender's typing in that channel.
fn stopped_typing(state: &AppState, user_id: i64, channel_id: i64) {
    if state.typing.stopped(user_id, channel_id, now_ms()) {
        state.hub.publish(
            Target::ChannelExcept {
                channel_id,
                user_id,
            },
            ServerEvent::TypingStopped {
                channel_id,
                user_id,
            },
        );
    }
}

pub async fn list(
    state: &AppState,
    user: &AuthUser,
    channel_id: i64,
    before_seq: Option<i64>,
    after_seq: Option<i64>,
    limit: Option<u32>,
) -> ServiceResult<MessagePage> {
    let cursor = match (before_seq, after_seq) {
        (None, None) => PageCursor::Newest,
        (Some(before), None) => PageCursor::Before(parse_seq(before, "before_seq")?),
        (None, Some(after)) => PageCursor::After(parse_seq(after, "after_seq")?),
        (Some(_), Some(_)) => {
            return Err(
                ApiError::invalid("before_seq", "give before_seq or after_seq, not both").into(),
            );
        }
    };
    let limit = parse_limit(limit, DEFAULT_PAGE, MAX_PAGE)?;
    require_member(state, user, channel_id).await?;
    Ok(state.db.list_messages(channel_id, cursor, limit).await?)
}

/// The message, if the caller is a member of its channel and its sender.
async fn own_message(state: &AppState, user: &AuthUser, message_id: i64) -> ServiceResult<Message> {
    let message_id = parse_id(message_id, "message_id")?;
    let message = state
        .db
        .message_by_id(message_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("message {message_id} does not exist")))?;
    require_member(state, user, message.channel_id).await?;
    if message.sender_id != user.id {
        return Err(ApiError::forbidden("only the sender can change a message").into());
    }
    Ok(message)
}

#[tracing::instrument(skip(state, user, body), fields(user_id = user.id))]
pub async fn edit(
    state: &AppState,
    user: &AuthUser,
    message_id: i64,
    body: &str,
) -> ServiceResult<Message> {
    state.user_limits.check(user.id, Action::Edit)?;
    let body = MessageBody::parse(body)?;
    let message = own_message(state, user, message_id).await?;
    if message.deleted_at.is_some() {
        return Err(ApiError::conflict("a deleted message cannot be edited").into());
    }
    let edited = state
        .db
        .edit_message(message.id, body.as_str(), now_ms())
        .await?
        .ok_or_else(|| ApiError::conflict("a deleted message cannot be edited"))?;
    state.hub.publish(
        Target::Channel(edited.channel_id),
        ServerEvent::MessageUpdated {
            message: edited.clone(),
        },
    );
    Ok(edited)
}

#[tracing::instrument(skip(state, user), fields(user_id = user.id))]
pub async fn delete(state: &AppState, user: &AuthUser, message_id: i64) -> ServiceResult<Message> {
    state.user_limits.check(user.id, Action::Edit)?;
    let message = own_message(state, user, message_id).await?;
    let deleted = state
        .db
        .delete_message(message.id, now_ms())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("message {message_id} does not exist")))?;
    if message.deleted_at.is_none() {
        state.hub.publish(
            Target::Channel(deleted.channel_id),
            ServerEvent::MessageDeleted {
                message: deleted.clone(),
            },
        );
    }
    Ok(deleted)
}
