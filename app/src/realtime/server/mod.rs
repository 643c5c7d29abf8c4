//! The server's realtime side. Layered bottom to top; a file imports only files below it:
//! - [`fanout`]: this node's connections and the delivery to them, and the shared bus types
//!   ([`fanout::BusMessage`], [`fanout::Target`], the [`fanout::Broker`] trait).
//! - [`sequencer`]: per-channel ordering and gap repair on a node of a cluster.
//! - [`redis_bus`]: the Redis broker between the nodes of a cluster.
//! - [`hub`]: the handle services publish through, built with the broker the state chose.
//! - [`typing`], [`connection`] and [`ws`]: typing signals, one WebSocket connection's loop,
//!   and the `/ws` upgrade.

pub mod connection;
pub mod fanout;
pub mod hub;
pub mod redis_bus;
pub mod sequencer;
pub mod typing;
pub mod ws;
