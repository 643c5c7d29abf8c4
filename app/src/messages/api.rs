//! Message server functions: `/api/messages/*`.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use super::{Message, MessagePage};
use crate::error::ApiError;

/// Stores a message. `client_id` (a UUID chosen by the client) makes retries safe: sending the
/// same `client_id` again returns the original message and stores nothing new.
#[server(endpoint = "messages/send", input = Json)]
pub async fn send_message(
    channel_id: i64,
    client_id: String,
    body: String,
) -> Result<Message, ApiError> {
    let (state, user) = crate::auth::server::session::authenticated().await?;
    Ok(super::service::send(&state, &user, channel_id, &client_id, &body).await?)
}

/// A page of at most `limit` (1–200, default 50) messages in ascending `seq` order: the newest
/// ones, or those just before `before_seq`, or just after `after_seq` (give at most one).
#[server(endpoint = "messages/list", input = Json)]
pub async fn list_messages(
    channel_id: i64,
    before_seq: Option<i64>,
    after_seq: Option<i64>,
    limit: Option<u32>,
) -> Result<MessagePage, ApiError> {
    let (state, user) = crate::auth::server::session::authenticated().await?;
    Ok(super::service::list(&state, &user, channel_id, before_seq, after_seq, limit).await?)
}

/// Replaces the body of one of the caller's own messages.
#[server(endpoint = "messages/edit", input = Json)]
pub async fn edit_message(message_id: i64, body: String) -> Result<Message, ApiError> {
    let (state, user) = crate::auth::server::session::authenticated().await?;
    Ok(super::service::edit(&state, &user, message_id, &body).await?)
}

/// Deletes one of the caller's own messages: its body is erased, its `seq` stays.
#[server(endpoint = "messages/delete", input = Json)]
pub async fn delete_message(message_id: i64) -> Result<Message, ApiError> {
    let (state, user) = crate::auth::server::session::authenticated().await?;
    Ok(super::service::delete(&state, &user, message_id).await?)
}
