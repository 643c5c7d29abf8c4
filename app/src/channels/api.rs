//! Channel server functions: `/api/channels/*`.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use super::{ChannelDetail, ChannelSummary};
use crate::error::ApiError;

/// Creates a group channel named `name` with the caller as owner and `member_ids` as members.
#[server(endpoint = "channels/create", input = Json)]
pub async fn create_channel(name: String, member_ids: Vec<i64>) -> Result<ChannelDetail, ApiError> {
    let (state, user) = crate::auth::server::session::authenticated().await?;
    Ok(super::service::create_group(&state, &user, &name, &member_ids).await?)
}

/// Gets, or creates on first use, the direct-message channel between the caller and `user_id`.
#[server(endpoint = "channels/direct", input = Json)]
pub async fn open_direct(user_id: i64) -> Result<ChannelDetail, ApiError> {
    let (state, user) = crate::auth::server::session::authenticated().await?;
    Ok(super::service::open_direct(&state, &user, user_id).await?)
}

/// The caller's channels, most recently active first.
#[server(endpoint = "channels/list", input = Json)]
pub async fn list_channels() -> Result<Vec<ChannelSummary>, ApiError> {
    let (state, user) = crate::auth::server::session::authenticated().await?;
    Ok(super::service::list(&state, &user).await?)
}

/// A channel the caller belongs to, with its members and their read pointers.
#[server(endpoint = "channels/get", input = Json)]
pub async fn get_channel(channel_id: i64) -> Result<ChannelDetail, ApiError> {
    let (state, user) = crate::auth::server::session::authenticated().await?;
    Ok(super::service::get(&state, &user, channel_id).await?)
}

/// Renames a group channel (owner only).
#[server(endpoint = "channels/rename", input = Json)]
pub async fn rename_channel(channel_id: i64, name: String) -> Result<ChannelDetail, ApiError> {
    let (state, user) = crate::auth::server::session::authenticated().await?;
    Ok(super::service::rename(&state, &user, channel_id, &name).await?)
}

/// Adds a user to a group channel (owner only). Adding a member again changes nothing.
#[server(endpoint = "channels/add_member", input = Json)]
pub async fn add_member(channel_id: i64, user_id: i64) -> Result<ChannelDetail, ApiError> {
    let (state, user) = crate::auth::server::session::authenticated().await?;
    Ok(super::service::add_member(&state, &user, channel_id, user_id).await?)
}

/// Removes another member from a group channel (owner only).
#[server(endpoint = "channels/remove_member", input = Json)]
pub async fn remove_member(channel_id: i64, user_id: i64) -> Result<ChannelDetail, ApiError> {
    let (state, user) = crate::auth::server::session::authenticated().await?;
    Ok(super::service::remove_member(&state, &user, channel_id, user_id).await?)
}

/// Leaves a group channel. An owner who leaves hands ownership to the longest-standing member.
#[server(endpoint = "channels/leave", input = Json)]
pub async fn leave_channel(channel_id: i64) -> Result<(), ApiError> {
    let (state, user) = crate::auth::server::session::authenticated().await?;
    Ok(super::service::leave(&state, &user, channel_id).await?)
}
