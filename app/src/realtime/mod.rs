//! Realtime: the WebSocket protocol (shared with the WASM client) and, server-side, the hub
//! that fans events out to connections, the Redis bus and per-channel sequencer that join the
//! hubs of a cluster, the connection loop, and typing signals.

pub mod client;
pub mod protocol;

#[cfg(feature = "ssr")]
pub mod broker;
#[cfg(feature = "ssr")]
pub mod connection;
#[cfg(feature = "ssr")]
pub mod hub;
#[cfg(feature = "ssr")]
pub mod redis_bus;
#[cfg(feature = "ssr")]
pub mod sequencer;
#[cfg(feature = "hydrate")]
pub mod socket;
#[cfg(feature = "ssr")]
pub mod typing;
#[cfg(feature = "ssr")]
pub mod ws;
