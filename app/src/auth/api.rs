//! Account server functions: `/api/auth/*` and `/api/users/search`.

use leptos::prelude::*;
use leptos::server_fn::codec::Json;

use super::{PublicUser, SignedIn};
use crate::error::ApiError;

/// Creates an account and signs it in.
#[server(endpoint = "auth/signup", input = Json)]
pub async fn signup(
    username: String,
    display_name: String,
    password: String,
) -> Result<SignedIn, ApiError> {
    use super::server::{service, session};
    let state = crate::server::state()?;
    let ip = session::client_ip(&state).await;
    let signed_in = service::signup(&state, ip, &username, &display_name, &password).await?;
    session::set_session_cookie(&state, &signed_in);
    Ok(signed_in)
}

/// Signs in with username and password.
#[server(endpoint = "auth/login", input = Json)]
pub async fn login(username: String, password: String) -> Result<SignedIn, ApiError> {
    use super::server::{service, session};
    let state = crate::server::state()?;
    let ip = session::client_ip(&state).await;
    let signed_in = service::login(&state, ip, &username, &password).await?;
    session::set_session_cookie(&state, &signed_in);
    Ok(signed_in)
}

/// Ends the current session (cookie or bearer token). Succeeds when already signed out.
#[server(endpoint = "auth/logout", input = Json)]
pub async fn logout() -> Result<(), ApiError> {
    use super::server::{service, session};
    let state = crate::server::state()?;
    if let Some(token) = session::request_token().await {
        service::logout(&state, &token).await?;
    }
    session::clear_session_cookie(&state);
    Ok(())
}

/// The signed-in user.
#[server(endpoint = "auth/me", input = Json)]
pub async fn me() -> Result<PublicUser, ApiError> {
    let (state, user) = super::server::session::authenticated().await?;
    Ok(super::server::service::me(&state, user.id).await?)
}

/// Users whose username or display name starts with `query` (case-insensitive), by username.
#[server(endpoint = "users/search", input = Json)]
pub async fn search_users(query: String, limit: Option<u32>) -> Result<Vec<PublicUser>, ApiError> {
    let (state, user) = super::server::session::authenticated().await?;
    Ok(super::server::service::search_users(&state, user.id, &query, limit).await?)
}
