//! Realtime, split by side around the one protocol both sides share:
//! - [`protocol`]: the versioned WebSocket protocol (`ClientEvent`, `ServerEvent`), compiled
//!   into the server and the WASM client alike.
//! - [`server`] (ssr only): the hub and its fan-out, the Redis bus and sequencer that join the
//!   nodes of a cluster, the per-connection loop, and typing signals.
//! - [`browser`]: the browser's chat state (rendered on the server too) and, in the WASM
//!   build only, the browser's socket.

pub mod browser;
pub mod protocol;
#[cfg(feature = "ssr")]
pub mod server;
