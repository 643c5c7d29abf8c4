//! Same-site checks for requests a browser may send with the session cookie.
//!
//! Another site's page can make a visitor's browser send the cookie along (a form post, a
//! WebSocket), but it cannot choose the `Origin` header the browser sets. So a request that is
//! authenticated by the cookie, rather than by an `Authorization: Bearer` header that only the
//! token's holder can set, must come from a page of this site (or of an `ALLOWED_ORIGINS`
//! entry). This is defence in depth beside `SameSite=Lax` and, for server functions, beside
//! accepting only `application/json` (which a cross-site form cannot send).

use axum::http::HeaderMap;
use axum::http::header::{HOST, ORIGIN};

use super::session::{bearer_token, cookie_token};
use crate::error::ApiError;

/// A `/ws` upgrade: unless it carries a bearer token, its `Origin` must be this site.
pub fn check_websocket(allowed: &[String], headers: &HeaderMap) -> Result<(), ApiError> {
    if bearer_token(headers).is_some() {
        return Ok(());
    }
    require_same_site(allowed, headers, "WebSocket requests")
}

/// A `POST` to a server function. With a bearer token it needs no `Origin`. With the session
/// cookie its `Origin` must be this site. With neither (sign-up, log-in from a script) an
/// `Origin` is not required, but one naming another site is refused, so that no other site can
/// sign a visitor in to an account of its choosing.
pub fn check_post(allowed: &[String], headers: &HeaderMap) -> Result<(), ApiError> {
    if bearer_token(headers).is_some() {
        return Ok(());
    }
    if cookie_token(headers).is_none() && !headers.contains_key(ORIGIN) {
        return Ok(());
    }
    require_same_site(allowed, headers, "POST requests")
}

/// `Ok` when `Origin` is exactly one of `allowed`, or `http://` / `https://` followed by the
/// request's `Host` (case-insensitive).
fn require_same_site(allowed: &[String], headers: &HeaderMap, what: &str) -> Result<(), ApiError> {
    let origin = headers
        .get(ORIGIN)
        .and_then(|value| value.to_str().ok())
        .ok_or_else(|| {
            ApiError::forbidden(format!("cookie-authenticated {what} need an Origin header"))
        })?;
    if allowed.iter().any(|allowed| allowed == origin) {
        return Ok(());
    }
    let host = headers.get(HOST).and_then(|value| value.to_str().ok());
    let origin_authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match (origin_authority, host) {
        (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(ApiError::forbidden(format!(
            "{what} from origin {origin} are not accepted here"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderName, HeaderValue};

    use super::*;

    const COOKIE: (&str, &str) = ("cookie", "dn_session=abc");
    const BEARER: (&str, &str) = ("authorization", "Bearer abc");
    const SAME_SITE: (&str, &str) = ("origin", "https://CHAT.example.com:3000");
    const CROSS_SITE: (&str, &str) = ("origin", "https://evil.example");

    /// A request to `chat.example.com:3000` with these headers.
    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(HOST, HeaderValue::from_static("chat.example.com:3000"));
        for (name, value) in pairs {
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    #[test]
    fn cookie_posts_need_this_sites_origin_or_an_allowed_one() {
        let none: &[String] = &[];
        assert!(check_post(none, &headers(&[COOKIE, SAME_SITE])).is_ok());
        for refused in [
            headers(&[COOKIE]),
            headers(&[COOKIE, CROSS_SITE]),
            headers(&[COOKIE, ("origin", "null")]),
            // Another port is another origin.
            headers(&[COOKIE, ("origin", "https://chat.example.com")]),
        ] {
            assert_eq!(check_post(none, &refused).unwrap_err().status_code(), 403);
        }
        let allowed = ["https://evil.example".to_owned()];
        assert!(check_post(&allowed, &headers(&[COOKIE, CROSS_SITE])).is_ok());
    }

    #[test]
    fn bearer_needs_no_origin_and_no_credentials_need_none_unless_cross_site() {
        let none: &[String] = &[];
        assert!(check_post(none, &headers(&[BEARER])).is_ok());
        assert!(check_post(none, &headers(&[BEARER, COOKIE])).is_ok());
        assert!(check_post(none, &headers(&[])).is_ok());
        assert!(check_post(none, &headers(&[CROSS_SITE])).is_err());
        assert!(check_post(none, &headers(&[SAME_SITE])).is_ok());
    }

    #[test]
    fn websockets_without_a_bearer_token_need_an_origin() {
        let none: &[String] = &[];
        assert!(check_websocket(none, &headers(&[BEARER])).is_ok());
        assert!(check_websocket(none, &headers(&[COOKIE])).is_err());
        assert!(check_websocket(none, &headers(&[COOKIE, CROSS_SITE])).is_err());
        assert!(check_websocket(none, &headers(&[COOKIE, SAME_SITE])).is_ok());
    }
}
