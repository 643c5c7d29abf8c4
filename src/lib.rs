//! The DealNest Chat server: the axum host around the `app` crate.
//!
//! # Layout
//! - [`config`]: flags and environment (`DATABASE_URL`, `PORT`…), parsed once at start.
//! - [`startup`]: opens storage, builds the `AppState`, the router ([`startup::router`]) and
//!   serves it. Integration tests call the same functions on an ephemeral port.
//! - [`api_guard`]: what every `/api/*` request passes first (JSON only, same-site origin for
//!   cookies, body size), and typed JSON for the framework's own error answers.

pub mod api_guard;
pub mod config;
pub mod startup;
