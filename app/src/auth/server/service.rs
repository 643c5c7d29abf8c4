//! Account rules: sign-up, log-in, log-out, user search.

use std::net::IpAddr;
use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use super::session::{new_token, session_tag, token_hash};
use crate::auth::{PublicUser, SignedIn};
use crate::clock::now_ms;
use crate::domain::{DisplayName, Password, Username, parse_limit};
use crate::error::ApiError;
use crate::server::error::ServiceResult;
use crate::server::rate_limit::Action;
use crate::server::{AppState, ServiceError, StoreError};

/// A hash of a password nobody has, verified against when the username is unknown so a
/// failed log-in takes the same time either way (no user enumeration by timing).
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(b"no account has this password", &salt)
        .map(|hash| hash.to_string())
        .unwrap_or_default()
});

fn invalid_credentials() -> ApiError {
    ApiError::Unauthorized {
        message: "wrong username or password".into(),
    }
}

async fn hash_password(state: &AppState, password: Password) -> ServiceResult<String> {
    let _slot = hashing_slot(state).await?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(password.expose().as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| ServiceError::Fault(format!("hashing a password failed: {e}")))
    })
    .await
    .map_err(|e| ServiceError::Fault(format!("hashing task failed: {e}")))?
}

/// Checks `password` against `hash`, or against a dummy hash when there is no account.
async fn verify_password(
    state: &AppState,
    password: String,
    hash: Option<String>,
) -> ServiceResult<bool> {
    let _slot = hashing_slot(state).await?;
    tokio::task::spawn_blocking(move || {
        let hash = hash.unwrap_or_else(|| DUMMY_HASH.clone());
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| ServiceError::Fault(format!("stored password hash unreadable: {e}")))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| ServiceError::Fault(format!("verification task failed: {e}")))?
}

/// Waits for one of the few password-hashing slots.
async fn hashing_slot(state: &AppState) -> ServiceResult<tokio::sync::SemaphorePermit<'_>> {
    state
        .hashing_slots
        .acquire()
        .await
        .map_err(|e| ServiceError::Fault(format!("hashing slots closed: {e}")))
}

async fn start_session(state: &AppState, user: PublicUser) -> ServiceResult<SignedIn> {
    let token = new_token()?;
    let now = now_ms();
    let expires_at = now + state.config.session_ttl_secs * 1000;
    state
        .db
        .create_session(&token_hash(&token), user.id, now, expires_at)
        .await?;
    state.db.touch_last_seen(user.id, now).await?;
    Ok(SignedIn {
        user: PublicUser {
            last_seen_at: Some(now),
            ..user
        },
        token,
        expires_at,
    })
}

#[tracing::instrument(skip(state, display_name, password), fields(username = %username))]
pub async fn signup(
    state: &AppState,
    ip: Option<IpAddr>,
    username: &str,
    display_name: &str,
    password: &str,
) -> ServiceResult<SignedIn> {
    let username = Username::parse(username)?;
    let display_name = DisplayName::parse(display_name)?;
    let password = Password::parse(password)?;
    state.auth_throttle.check_ip(ip)?;
    let hash = hash_password(state, password).await?;
    let user = match state
        .db
        .create_user(username.as_str(), display_name.as_str(), &hash, now_ms())
        .await
    {
        Ok(user) => user,
        Err(StoreError::Unique(_)) => {
            return Err(
                ApiError::conflict(format!("username '{}' is taken", username.as_str())).into(),
            );
        }
        Err(other) => return Err(other.into()),
    };
    start_session(state, user).await
}

#[tracing::instrument(skip(state, password), fields(username = %username))]
pub async fn login(
    state: &AppState,
    ip: Option<IpAddr>,
    username: &str,
    password: &str,
) -> ServiceResult<SignedIn> {
    // A malformed username or password cannot belong to an account: same answer as a wrong one.
    let (Ok(username), Ok(_)) = (Username::parse(username), Password::parse(password)) else {
        return Err(invalid_credentials().into());
    };
    state.auth_throttle.check_login(ip, username.as_str())?;
    let credentials = state.db.user_credentials(username.as_str()).await?;
    let hash = credentials
        .as_ref()
        .map(|found| found.password_hash.clone());
    let verified = verify_password(state, password.to_owned(), hash).await?;
    match credentials {
        Some(found) if verified => start_session(state, found.user).await,
        _ => Err(invalid_credentials().into()),
    }
}

pub async fn logout(state: &AppState, token: &str) -> ServiceResult<()> {
    let hash = token_hash(token);
    state.db.delete_session(&hash).await?;
    state.sessions.remove(&hash);
    state.hub.end_session(session_tag(&hash));
    Ok(())
}

pub async fn me(state: &AppState, user_id: i64) -> ServiceResult<PublicUser> {
    state
        .db
        .user_by_id(user_id)
        .await?
        .ok_or_else(|| ServiceError::from(ApiError::unauthorized()))
}

pub async fn search_users(
    state: &AppState,
    user_id: i64,
    query: &str,
    limit: Option<u32>,
) -> ServiceResult<Vec<PublicUser>> {
    state.user_limits.check(user_id, Action::Search)?;
    let query = query.trim();
    let len = query.chars().count();
    if len == 0 || len > 64 {
        return Err(ApiError::invalid("query", "query must be 1–64 characters").into());
    }
    let limit = parse_limit(limit, 20, 50)?;
    Ok(state.db.search_users(query, limit).await?)
}
