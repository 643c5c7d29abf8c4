//! `GET /ws`: authenticates, checks the origin of cookie-authenticated browsers, enforces the
//! connection caps, and upgrades with small buffers.

use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};

use super::connection;
use super::fanout::RegisterError;
use crate::auth::server::origin::check_websocket;
use crate::auth::server::session::authenticate_session;
use crate::error::ApiError;
use crate::realtime::protocol::MAX_FRAME_BYTES;
use crate::server::error::api_error_response;
use crate::server::{AppState, ServiceError};

/// Bytes read from the socket at a time; idle connections should cost a few KB, not 128 KiB.
const READ_BUFFER: usize = 1024;
/// Frames buffered before they are written out: a burst of queued events is fed and then
/// flushed once, so it leaves in one write instead of one per frame (flushing writes at once).
const WRITE_BATCH: usize = 16 * 1024;
/// Most bytes buffered for a client that reads slowly before writes fail.
const MAX_WRITE_BUFFER: usize = 256 * 1024;

pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    match prepare(&state, &headers).await {
        Ok((user, registration, permit)) => upgrade
            .read_buffer_size(READ_BUFFER)
            .write_buffer_size(WRITE_BATCH)
            .max_write_buffer_size(MAX_WRITE_BUFFER)
            .max_message_size(MAX_FRAME_BYTES)
            .max_frame_size(MAX_FRAME_BYTES)
            .on_upgrade(move |socket| async move {
                connection::run(state, socket, user, registration).await;
                drop(permit);
            })
            .into_response(),
        Err(error) => api_error_response(error),
    }
}

async fn prepare(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<
    (
        crate::auth::server::AuthUser,
        super::fanout::Registration,
        tokio::sync::OwnedSemaphorePermit,
    ),
    ApiError,
> {
    if state.shutdown.is_draining() {
        return Err(ApiError::Unavailable {
            message:
                "the server is draining before a stop; connect again (another node will answer)"
                    .into(),
        });
    }
    let epoch = state.sessions.epoch();
    let (user, session) = authenticate_session(state, headers).await?;
    // Cross-site WebSocket hijacking would otherwise ride on the cookie.
    check_websocket(&state.config.allowed_origins, headers)?;
    let permit = state
        .ws_slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Unavailable {
            message: "the server is at its connection limit; try again later".into(),
        })?;
    let channels = state
        .db
        .channel_ids_for_user(user.id)
        .await
        .map_err(ServiceError::from)?;
    let registration =
        state
            .hub
            .register(user.id, session, &channels)
            .map_err(|error| match error {
                RegisterError::TooManyForUser(limit) => ApiError::RateLimited {
                    message: format!(
                        "too many open connections for this account (limit {limit}); close a tab"
                    ),
                    retry_after_secs: 5,
                },
            })?;
    // A log-out that ran since the session was resolved swept the registered sockets of its
    // session, maybe before this one registered: resolve it again rather than keep a socket of
    // a signed-out session (a removed session is never back in the cache, so this sees the
    // log-out). A log-out after this check finds the socket registered.
    if state.sessions.removed_since(epoch) {
        authenticate_session(state, headers).await?;
    }
    Ok((user, registration, permit))
}
