//! The one error type clients see, shared by the server and the WASM client.
//!
//! Server-side layers have their own enums (`StoreError`, `ServiceError`); they are turned into
//! an [`ApiError`] at the server-function edge, where internal causes are logged and hidden.

use leptos::server_fn::Bytes;
use leptos::server_fn::codec::JsonEncoding;
use leptos::server_fn::error::{FromServerFnError, ServerFnErrorErr};
use serde::{Deserialize, Serialize};

/// A failed API call, serialized as JSON such as
/// `{"error":"invalid","field":"body","message":"body must be 1–4000 characters"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "error", rename_all = "snake_case")]
pub enum ApiError {
    /// 400: a field failed validation. `field` names it (`request` when the body itself could
    /// not be read).
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// 401: no valid session.
    #[error("{message}")]
    Unauthorized { message: String },
    /// 403: signed in, but not allowed (e.g. not a member of the channel).
    #[error("{message}")]
    Forbidden { message: String },
    /// 404: the named thing does not exist.
    #[error("{message}")]
    NotFound { message: String },
    /// 405: the endpoint exists but not for this HTTP method (server functions take `POST`;
    /// the `Allow` header says so).
    #[error("{message}")]
    MethodNotAllowed { message: String },
    /// 409: the request clashes with stored state (e.g. username taken).
    #[error("{message}")]
    Conflict { message: String },
    /// 409: a configured cap would be exceeded: `limit` names it (`channel_members`,
    /// `channels_per_user`) and `max` is its value.
    #[error("{message}")]
    LimitReached {
        message: String,
        limit: String,
        max: u64,
    },
    /// 413: the request body is larger than `max_bytes`.
    #[error("{message}")]
    PayloadTooLarge { message: String, max_bytes: u64 },
    /// 415: the request body is not declared as JSON (`Content-Type: application/json`).
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    /// 429: too many requests of this kind (log-in attempts, sends, connections…); retry after
    /// the given number of seconds (also sent as a `Retry-After` header).
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    /// 500: a fault on the server; the cause is in the server log, never here.
    #[error("{message}")]
    Internal { message: String },
    /// The server could not be reached or answered something unreadable (client side only).
    #[error("{message}")]
    Unavailable { message: String },
}

impl ApiError {
    /// A validation failure on `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn unauthorized() -> Self {
        Self::Unauthorized {
            message: "not signed in".into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden {
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound {
            message: message.into(),
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict {
            message: message.into(),
        }
    }

    /// A cap named `limit` whose value is `max` would be exceeded.
    pub fn limit_reached(limit: &str, max: u64, message: impl Into<String>) -> Self {
        Self::LimitReached {
            message: message.into(),
            limit: limit.to_owned(),
            max,
        }
    }

    /// Too many requests of one kind: `what` says which, and the client may retry after
    /// `wait` (rounded up to whole seconds, at least one).
    pub fn rate_limited(what: &str, wait: std::time::Duration) -> Self {
        let retry_after_secs = wait
            .as_secs()
            .saturating_add(u64::from(wait.subsec_nanos() > 0))
            .max(1);
        Self::RateLimited {
            message: format!("{what}; try again in {retry_after_secs} s"),
            retry_after_secs,
        }
    }

    pub fn internal() -> Self {
        Self::Internal {
            message: "internal server error".into(),
        }
    }

    /// The HTTP status this error is sent with.
    pub fn status_code(&self) -> u16 {
        match self {
            Self::Invalid { .. } => 400,
            Self::Unauthorized { .. } => 401,
            Self::Forbidden { .. } => 403,
            Self::NotFound { .. } => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::Conflict { .. } | Self::LimitReached { .. } => 409,
            Self::PayloadTooLarge { .. } => 413,
            Self::UnsupportedMediaType { .. } => 415,
            Self::RateLimited { .. } => 429,
            Self::Internal { .. } => 500,
            Self::Unavailable { .. } => 503,
        }
    }

    /// Seconds to send as `Retry-After` (rate-limited errors only).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The field a validation error is about, for showing it next to a form input.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl FromServerFnError for ApiError {
    type Encoder = JsonEncoding;

    fn from_server_fn_error(value: ServerFnErrorErr) -> Self {
        match value {
            ServerFnErrorErr::Args(reason) | ServerFnErrorErr::MissingArg(reason) => {
                Self::invalid("request", format!("invalid request body: {reason}"))
            }
            ServerFnErrorErr::Request(reason) => Self::Unavailable {
                message: format!("could not reach the server: {reason}"),
            },
            ServerFnErrorErr::Deserialization(reason) => decoding_failed(reason),
            other => {
                tracing::error!(error = %other, "server function plumbing failed");
                Self::internal()
            }
        }
    }

    fn ser(&self) -> Bytes {
        // `ser` runs on the server just before an error response is written, so this is the one
        // place every error (including argument decoding failures) gets its HTTP status.
        record_status(self);
        match serde_json::to_vec(self) {
            Ok(bytes) => bytes.into(),
            Err(_) => {
                Bytes::from_static(br#"{"error":"internal","message":"internal server error"}"#)
            }
        }
    }
}

/// On the server a decoding failure means the request's arguments were unreadable.
#[cfg(feature = "ssr")]
fn decoding_failed(reason: String) -> ApiError {
    ApiError::invalid("request", format!("invalid request body: {reason}"))
}

/// On the client it means the server's answer was unreadable.
#[cfg(not(feature = "ssr"))]
fn decoding_failed(reason: String) -> ApiError {
    ApiError::Unavailable {
        message: format!("unreadable answer from the server: {reason}"),
    }
}

#[cfg(feature = "ssr")]
fn record_status(error: &ApiError) {
    use axum::http::{HeaderValue, StatusCode, header::RETRY_AFTER};
    let Some(response) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() else {
        return;
    };
    response.set_status(
        StatusCode::from_u16(error.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
    );
    if let Some(secs) = error.retry_after_secs() {
        response.insert_header(RETRY_AFTER, HeaderValue::from(secs));
    }
}

#[cfg(not(feature = "ssr"))]
fn record_status(_: &ApiError) {}

/// Shorthand for API results.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_at_least_one() {
        for (wait, secs) in [
            (Duration::ZERO, 1),
            (Duration::from_millis(200), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1001), 2),
            (Duration::from_secs(59), 59),
        ] {
            let error = ApiError::rate_limited("too many sends", wait);
            assert_eq!(error.retry_after_secs(), Some(secs), "{wait:?}");
            assert_eq!(error.status_code(), 429);
        }
    }

    #[test]
    fn limit_errors_have_stable_codes() {
        let json =
            serde_json::to_value(ApiError::rate_limited("too many sends", Duration::ZERO)).unwrap();
        assert_eq!(json["error"], "rate_limited");
        assert_eq!(json["retry_after_secs"], 1);
        let json = serde_json::to_value(ApiError::limit_reached(
            "channels_per_user",
            400,
            "you are in 400 channels",
        ))
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"error": "limit_reached", "limit": "channels_per_user", "max": 400,
                               "message": "you are in 400 channels"})
        );
        for (error, code, status) in [
            (
                ApiError::MethodNotAllowed {
                    message: String::new(),
                },
                "method_not_allowed",
                405,
            ),
            (
                ApiError::PayloadTooLarge {
                    message: String::new(),
                    max_bytes: 1,
                },
                "payload_too_large",
                413,
            ),
            (
                ApiError::UnsupportedMediaType {
                    message: String::new(),
                },
                "unsupported_media_type",
                415,
            ),
        ] {
            assert_eq!(serde_json::to_value(&error).unwrap()["error"], code);
            assert_eq!(error.status_code(), status);
        }
    }
}
