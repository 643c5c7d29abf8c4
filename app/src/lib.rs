//! DealNest Chat: components, server functions, shared types and (behind `ssr`) the services.
//!
//! # Layout
//! - [`domain`]: validated input types (`MessageBody::parse`…), used by forms and services.
//! - [`error`]: [`error::ApiError`], the one error type clients see.
//! - One folder per feature — [`auth`], [`channels`], [`messages`], [`receipts`] — each with its
//!   types (`mod.rs`), its server functions (`api.rs`) and, server-only, its storage trait
//!   (`store.rs`; the SQLite and PostgreSQL implementations live in `server/sqlite/` and
//!   `server/postgres/`) and rules (`service.rs`).
//! - [`realtime`]: the WebSocket protocol (shared), the server side (`realtime/server/`: fan-out,
//!   hub, cluster bus and sequencer, the connection loop, typing) and the browser side
//!   (`realtime/browser/`: the chat state, its reducer and outbox, the socket);
//!   [`presence`]: online/away/offline with in-memory or Redis leases.
//! - [`clock`]: the one clock; `locks` (ssr only): poison-tolerant locking.
//! - [`server`] (ssr only): [`server::AppState`], the storage types and database handle, the
//!   service error, metrics and rate limits.
//! - [`ui`]: the HTML shell, the router and pages shared by features.
//!
//! # A request
//! `POST /api/messages/send` → the server function in `messages/api.rs` resolves the session
//! (`auth::server::session`) and calls `messages::service::send`, which validates the body and
//! hands it to the message writer (`messages::writer`): it stores queued sends in one
//! transaction (`MessageStore::insert_messages`, membership checked in the insert), publishes
//! `message_created` to the hub, which serializes it once and queues it on every connection of
//! every channel member, and then answers (docs/ARCHITECTURE.md follows it on to the other
//! person's screen). Errors flow back as `StoreError` → `ServiceError` →
//! `ApiError` (internals logged, not shown).

pub mod auth;
pub mod channels;
pub mod clock;
pub mod domain;
pub mod error;
#[cfg(feature = "ssr")]
pub mod locks;
pub mod messages;
pub mod presence;
pub mod realtime;
pub mod receipts;
#[cfg(feature = "ssr")]
pub mod server;
pub mod ui;

pub use ui::{App, shell};
