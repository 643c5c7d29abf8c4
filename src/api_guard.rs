//! The door of `/api/*`: what every request passes before a server function runs, and the
//! typed JSON for errors the framework answers itself.
//!
//! Server functions answer their errors as [`ApiError`] JSON. The router and the tower layers
//! in front of them do not: a `GET` on an endpoint got a 405 with an empty body, a body over the
//! limit a plain-text 413. This middleware runs first on every `/api/` request and
//! - refuses a `POST` whose `Content-Type` is not `application/json` (415): a cross-site HTML
//!   form can only send `text/plain`, form or multipart bodies, so this keeps other sites' forms
//!   out; browsers make pages ask before a cross-site `fetch` may send JSON;
//! - refuses a `POST` riding on the session cookie from another site's page (403; see
//!   `auth::server::origin`);
//! - reads the body within [`MAX_REQUEST_BYTES`], so a chunked body over the limit is a 413 just
//!   like one whose `Content-Length` says so (not a decoding error halfway through);
//! - rewrites any error answer that is not JSON into the matching [`ApiError`], keeping the
//!   status and the `Allow` / `Retry-After` headers.

use app::auth::server::origin;
use app::error::ApiError;
use app::server::AppState;
use app::server::error::api_error_response;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// Largest request body accepted (the biggest valid request, a 1000-member channel, is ~10 KiB).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// `axum::middleware::from_fn_with_state` over the whole router; requests outside `/api/` pass
/// untouched.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    match admit(&state, request).await {
        Ok(request) => typed_errors(next.run(request).await),
        Err(error) => api_error_response(error),
    }
}

/// The checks, in order: content type (415), origin (403), body size (413). Other methods pass
/// on: the router answers them 405 (made typed by [`typed_errors`]).
async fn admit(state: &AppState, request: Request) -> Result<Request, ApiError> {
    if request.method() != Method::POST {
        return Ok(request);
    }
    require_json(request.headers())?;
    origin::check_post(&state.config.allowed_origins, request.headers())?;
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    // Refused before reading a byte when the length is known.
    if declared.is_some_and(|length| length > MAX_REQUEST_BYTES as u64) {
        return Err(too_large());
    }
    let (parts, body) = request.into_parts();
    let bytes = Limited::new(body, MAX_REQUEST_BYTES)
        .collect()
        .await
        .map_err(|error| {
            if error.is::<LengthLimitError>() {
                too_large()
            } else {
                ApiError::invalid(
                    "request",
                    format!("could not read the request body: {error}"),
                )
            }
        })?
        .to_bytes();
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// `application/json`, with or without parameters such as `; charset=utf-8`.
fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok());
    let is_json = content_type
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType {
        message: format!(
            "send the arguments as JSON with Content-Type: application/json, not {}",
            content_type.unwrap_or("no Content-Type")
        ),
    })
}

fn too_large() -> ApiError {
    ApiError::PayloadTooLarge {
        message: format!("the request body is over the limit of {MAX_REQUEST_BYTES} bytes"),
        max_bytes: MAX_REQUEST_BYTES as u64,
    }
}

/// An error answer that is not JSON (the framework's own) becomes the [`ApiError`] its status
/// stands for; answers that are JSON already (server functions') and successes pass as they are.
fn typed_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let allow = response.headers().get(ALLOW).cloned();
    let retry_after = response.headers().get(RETRY_AFTER).cloned();
    let error = match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed {
            message: format!(
                "this endpoint takes {}",
                allow
                    .as_ref()
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("POST")
            ),
        },
        StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType {
            message: "send the arguments as JSON with Content-Type: application/json".into(),
        },
        StatusCode::NOT_FOUND => ApiError::not_found("no such API endpoint"),
        status if status.is_server_error() => ApiError::internal(),
        status => ApiError::invalid(
            "request",
            format!(
                "the request was refused: {}",
                status.canonical_reason().unwrap_or("client error")
            ),
        ),
    };
    let mut typed = (status, axum::Json(error)).into_response();
    if let Some(allow) = allow {
        typed.headers_mut().insert(ALLOW, allow);
    }
    if let Some(retry_after) = retry_after {
        typed.headers_mut().insert(RETRY_AFTER, retry_after);
    }
    typed
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn only_json_content_types_pass() {
        let mut headers = HeaderMap::new();
        assert!(require_json(&headers).is_err());
        for (value, ok) in [
            ("application/json", true),
            ("Application/JSON; charset=utf-8", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
            ("application/jsonp", false),
        ] {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(require_json(&headers).is_ok(), ok, "{value}");
        }
    }

    #[tokio::test]
    async fn framework_errors_become_typed_and_keep_their_headers() {
        let empty_405 = Response::builder()
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .header(ALLOW, "POST")
            .body(Body::empty())
            .unwrap();
        let typed = typed_errors(empty_405);
        assert_eq!(typed.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(typed.headers()[ALLOW], "POST");
        let body = typed.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "method_not_allowed");

        let html_500 = Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .header(CONTENT_TYPE, "text/html")
            .body(Body::from("<h1>oops</h1>"))
            .unwrap();
        let body = typed_errors(html_500)
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "internal");

        let ok = Response::new(Body::from("fine"));
        assert_eq!(typed_errors(ok).status(), StatusCode::OK);
    }
}
