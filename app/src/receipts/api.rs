//! Read-receipt server functions: `/api/read/*`.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use super::{ReadPointer, ReadState};
use crate::error::ApiError;

/// Moves the caller's read pointer forward to `seq`. A lower `seq` than the stored pointer
/// changes nothing; the answer is the pointer as stored.
#[server(endpoint = "read/mark", input = Json)]
pub async fn mark_read(channel_id: i64, seq: i64) -> Result<ReadPointer, ApiError> {
    let (state, user) = crate::auth::server::session::authenticated().await?;
    Ok(super::service::mark_read(&state, &user, channel_id, seq).await?)
}

/// Every member's read pointer in a channel.
#[server(endpoint = "read/state", input = Json)]
pub async fn get_read_state(channel_id: i64) -> Result<ReadState, ApiError> {
    let (state, user) = crate::auth::server::session::authenticated().await?;
    Ok(super::service::read_state(&state, &user, channel_id).await?)
}
