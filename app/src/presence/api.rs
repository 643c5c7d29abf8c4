//! Presence server functions: `/api/presence/get`.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use super::UserPresence;
use crate::error::ApiError;

/// The current presence of `user_ids` (at most 500) that share a channel with the caller (or
/// are the caller); other ids are left out.
#[server(endpoint = "presence/get", input = Json)]
pub async fn get_presence(user_ids: Vec<i64>) -> Result<Vec<UserPresence>, ApiError> {
    let (state, user) = crate::auth::server::session::authenticated().await?;
    Ok(super::service::snapshot_for(&state, &user, &user_ids).await?)
}
