//! Sessions: random bearer tokens, stored only as SHA-256 hashes, carried in an HttpOnly cookie
//! (browsers) or an `Authorization: Bearer` header (other clients).

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, request::Parts};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use leptos::prelude::use_context;
use sha2::{Digest, Sha256};

use super::AuthUser;
use crate::auth::SignedIn;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::realtime::server::fanout::SessionTag;
use crate::server::{AppState, ServiceError};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "dn_session";

/// A new random session token (256 bits, URL-safe base64).
pub fn new_token() -> Result<String, ServiceError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| ServiceError::Fault(format!("no randomness for a session token: {e}")))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// What the database stores instead of the token, so a leaked database holds no live sessions.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// The tag the hub files a session's WebSocket connections under (see `realtime::server::hub`).
pub fn session_tag(token_hash: &[u8]) -> SessionTag {
    let mut tag = SessionTag::default();
    let len = tag.len().min(token_hash.len());
    tag[..len].copy_from_slice(&token_hash[..len]);
    tag
}

/// The session token a request carries: the bearer header wins over the cookie.
pub fn token_from_headers(headers: &HeaderMap) -> Option<String> {
    if let Some(token) = bearer_token(headers) {
        return Some(token.to_owned());
    }
    cookie_token(headers)
}

/// The token of an `Authorization: Bearer <token>` header (scripts, tests, the bench).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// The token of the session cookie (browsers).
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, token)| token.to_owned())
        .filter(|token| !token.is_empty())
}

/// Resolves the user behind `headers`, or `Unauthorized`.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<AuthUser, ApiError> {
    Ok(authenticate_session(state, headers).await?.0)
}

/// Like [`authenticate`], with the tag of the session used (for WebSocket connections, which
/// close when that session is signed out).
pub async fn authenticate_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(AuthUser, SessionTag), ApiError> {
    let (user, tag) = resolve_session(state, headers).await?;
    // The request's span (src/startup.rs) declares `user_id` empty; every later log line of
    // this request now names the caller.
    tracing::Span::current().record("user_id", user.id);
    Ok((user, tag))
}

async fn resolve_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<(AuthUser, SessionTag), ApiError> {
    let token = token_from_headers(headers).ok_or_else(ApiError::unauthorized)?;
    let hash = token_hash(&token);
    let tag = session_tag(&hash);
    let now = now_ms();
    if let Some(user) = state.sessions.get(&hash, now) {
        return Ok((user, tag));
    }
    let epoch = state.sessions.epoch();
    let session = state
        .db
        .session_user(&hash, now)
        .await
        .map_err(ServiceError::from)?
        .ok_or_else(|| ApiError::Unauthorized {
            message: "session expired or unknown; sign in again".into(),
        })?;
    state
        .sessions
        .insert(hash, session.user.clone(), session.expires_at, epoch);
    Ok((session.user, tag))
}

/// The state and signed-in user of the current server-function call.
pub async fn authenticated() -> Result<(AppState, AuthUser), ApiError> {
    let state = crate::server::state()?;
    let parts = use_context::<Parts>().ok_or_else(ApiError::internal)?;
    let user = authenticate(&state, &parts.headers).await?;
    Ok((state, user))
}

/// The session token the current server-function call carries, if any.
pub async fn request_token() -> Option<String> {
    use_context::<Parts>().and_then(|parts| token_from_headers(&parts.headers))
}

/// The caller's IP: the socket peer, or the first `X-Forwarded-For` hop when configured to
/// trust a proxy in front.
pub async fn client_ip(state: &AppState) -> Option<IpAddr> {
    let parts = use_context::<Parts>()?;
    if state.config.trust_forwarded_for
        && let Some(forwarded) = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(',').next())
            .and_then(|first| first.trim().parse().ok())
    {
        return Some(forwarded);
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

fn session_cookie(state: &AppState, value: &str, max_age_secs: i64) -> Option<HeaderValue> {
    let secure = if state.config.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    ))
    .ok()
}

fn append_set_cookie(cookie: Option<HeaderValue>) {
    if let (Some(cookie), Some(response)) = (cookie, use_context::<leptos_axum::ResponseOptions>())
    {
        response.append_header(SET_COOKIE, cookie);
    }
}

pub fn set_session_cookie(state: &AppState, signed_in: &SignedIn) {
    let max_age = ((signed_in.expires_at - now_ms()) / 1000).max(0);
    append_set_cookie(session_cookie(state, &signed_in.token, max_age));
}

pub fn clear_session_cookie(state: &AppState) {
    append_set_cookie(session_cookie(state, "", 0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_wins_over_cookie_and_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            COOKIE,
            HeaderValue::from_static("a=1; dn_session=cookie-token; b=2"),
        );
        assert_eq!(
            token_from_headers(&headers).as_deref(),
            Some("cookie-token")
        );
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_static("Bearer bearer-token"),
        );
        assert_eq!(
            token_from_headers(&headers).as_deref(),
            Some("bearer-token")
        );
    }

    #[test]
    fn empty_tokens_are_no_tokens() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, HeaderValue::from_static("dn_session="));
        assert_eq!(token_from_headers(&headers), None);
    }

    #[test]
    fn tokens_are_random_and_hash_is_stable() {
        let a = new_token().unwrap();
        assert_ne!(a, new_token().unwrap());
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a), token_hash(&a));
    }
}
