//! The way in: client frames, parsed into typed events (or typed errors that leave the
//! connection open), rate-limited, and handled; and the heartbeat.

use std::time::{Duration, Instant};

use axum::extract::ws::Message as WsMessage;

use crate::clock::now_ms;
use crate::realtime::protocol::{
    ActivityState, ChannelCursor, ClientEvent, ErrorCode, MAX_RESUME_CURSORS, ServerEvent,
    close_code,
};
use crate::realtime::server::fanout::Target;
use crate::server::metrics;

use super::{Connection, Stop};

/// Client events allowed per second (sustained) and in a burst.
const EVENTS_PER_SEC: f64 = 20.0;
pub(super) const EVENT_BURST: f64 = 60.0;

pub(super) struct TokenBucket {
    pub(super) tokens: f64,
    pub(super) refilled_at: Instant,
}

impl TokenBucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * EVENTS_PER_SEC).min(EVENT_BURST);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Connection {
    pub(super) async fn on_frame(
        &mut self,
        frame: Option<Result<WsMessage, axum::Error>>,
    ) -> Result<(), Stop> {
        self.last_heard = Instant::now();
        match frame {
            None | Some(Ok(WsMessage::Close(_))) => Err(Stop::Gone),
            Some(Err(error)) => Err(close_for(error)),
            Some(Ok(WsMessage::Text(text))) => self.on_text(text.as_str()).await,
            Some(Ok(WsMessage::Binary(_))) => {
                self.send_error(
                    ErrorCode::Unsupported,
                    "binary frames are not part of the protocol; send JSON text",
                )
                .await
            }
            Some(Ok(WsMessage::Pong(_))) => {
                self.state.presence.heartbeat(self.user.id, self.id);
                Ok(())
            }
            Some(Ok(WsMessage::Ping(_))) => Ok(()),
        }
    }

    pub(super) async fn on_heartbeat(&mut self, heartbeat: Duration) -> Result<(), Stop> {
        if self.last_heard.elapsed() > heartbeat * 2 {
            return Err(Stop::Close(close_code::HEARTBEAT_TIMEOUT, "no heartbeat"));
        }
        self.write(WsMessage::Ping(Default::default())).await
    }

    pub(super) async fn on_text(&mut self, text: &str) -> Result<(), Stop> {
        if !self.budget.take() {
            return self
                .send_error(ErrorCode::RateLimited, "too many events; slow down")
                .await;
        }
        let event = match parse_client_event(text) {
            Ok(event) => event,
            Err((code, message)) => return self.send_error(code, message).await,
        };
        match event {
            ClientEvent::Ping { nonce } => {
                self.state.presence.heartbeat(self.user.id, self.id);
                self.send_event(&ServerEvent::Pong {
                    nonce,
                    server_time: now_ms(),
                })
                .await
            }
            ClientEvent::Activity { state } => {
                let away = state == ActivityState::Away;
                self.state
                    .presence
                    .activity(self.user.id, self.id, away)
                    .await;
                Ok(())
            }
            ClientEvent::Typing { channel_id } => self.on_typing(channel_id).await,
            ClientEvent::Unsubscribe { channel_id } => {
                if self.require_member(channel_id).await? {
                    self.muted.insert(channel_id);
                }
                Ok(())
            }
            ClientEvent::Subscribe {
                channel_id,
                after_seq,
            } => {
                self.catch_up(&[ChannelCursor {
                    channel_id,
                    after_seq,
                }])
                .await
            }
            ClientEvent::Resume { channels } => {
                if channels.len() > MAX_RESUME_CURSORS {
                    return self
                        .send_error(
                            ErrorCode::InvalidEvent,
                            format!(
                                "resume names at most {MAX_RESUME_CURSORS} channels, not {}",
                                channels.len()
                            ),
                        )
                        .await;
                }
                self.catch_up(&channels).await
            }
        }
    }

    /// True when a member; otherwise tells the client and returns false.
    pub(super) async fn require_member(&mut self, channel_id: i64) -> Result<bool, Stop> {
        if self.state.hub.receives(self.id, channel_id) {
            return Ok(true);
        }
        self.send_error(
            ErrorCode::NotAMember,
            format!("you are not a member of channel {channel_id}"),
        )
        .await?;
        Ok(false)
    }

    pub(super) async fn on_typing(&mut self, channel_id: i64) -> Result<(), Stop> {
        if !self.require_member(channel_id).await? {
            return Ok(());
        }
        let user_id = self.user.id;
        let expires_at = self.state.typing.started(user_id, channel_id, now_ms());
        metrics::typing_event(expires_at.is_some());
        if let Some(expires_at) = expires_at {
            self.state.hub.publish(
                Target::ChannelExcept {
                    channel_id,
                    user_id,
                },
                ServerEvent::Typing {
                    channel_id,
                    user_id,
                    expires_at,
                },
            );
        }
        Ok(())
    }
}

/// Parses a client frame, telling apart bad JSON, an unknown `type` and bad fields.
pub fn parse_client_event(text: &str) -> Result<ClientEvent, (ErrorCode, String)> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        (
            ErrorCode::InvalidJson,
            format!("frame is not valid JSON: {e}"),
        )
    })?;
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| {
            (
                ErrorCode::UnknownEvent,
                "event has no \"type\" field".to_owned(),
            )
        })?
        .to_owned();
    if !ClientEvent::TYPES.contains(&kind.as_str()) {
        return Err((
            ErrorCode::UnknownEvent,
            format!("unknown event type \"{kind}\""),
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        (
            ErrorCode::InvalidEvent,
            format!("invalid \"{kind}\" event: {e}"),
        )
    })
}

/// The close a read error calls for.
fn close_for(error: axum::Error) -> Stop {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => {
            Stop::Close(close_code::MESSAGE_TOO_BIG, "message too big")
        }
        Some(tungstenite::Error::Utf8(_)) => {
            Stop::Close(close_code::INVALID_UTF8, "text frame is not valid UTF-8")
        }
        Some(tungstenite::Error::Protocol(_)) => {
            Stop::Close(close_code::PROTOCOL_ERROR, "protocol error")
        }
        _ => Stop::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_are_classified() {
        assert_eq!(
            parse_client_event("{nope").unwrap_err().0,
            ErrorCode::InvalidJson
        );
        assert_eq!(
            parse_client_event("{}").unwrap_err().0,
            ErrorCode::UnknownEvent
        );
        assert_eq!(
            parse_client_event(r#"{"type":"dance"}"#).unwrap_err().0,
            ErrorCode::UnknownEvent
        );
        assert_eq!(
            parse_client_event(r#"{"type":"typing","channel_id":"x"}"#)
                .unwrap_err()
                .0,
            ErrorCode::InvalidEvent
        );
        assert_eq!(
            parse_client_event(r#"{"type":"typing","channel_id":4}"#).unwrap(),
            ClientEvent::Typing { channel_id: 4 }
        );
    }
}
