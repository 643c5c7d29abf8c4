//! The hub's publish path. Every event and membership change goes through a [`Broker`], which
//! delivers it to the local hub — and, with a networked broker, to every node's hub — so the
//! services never know how many nodes there are.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::hub::{LocalFanout, SessionTag};
use super::protocol::ServerEvent;

/// Who receives an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Every connection of every member of the channel.
    Channel(i64),
    /// Every member's connections except those of `user_id`.
    ChannelExcept { channel_id: i64, user_id: i64 },
    /// Every connection of these users.
    Users(Vec<i64>),
}

/// What travels through the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BusMessage {
    Deliver {
        target: Target,
        event: ServerEvent,
    },
    /// `user_id`'s connections start receiving `channel_id`'s events.
    Join {
        user_id: i64,
        channel_id: i64,
    },
    /// `user_id`'s connections stop receiving `channel_id`'s events.
    Leave {
        user_id: i64,
        channel_id: i64,
    },
    /// Connections opened with this session close: it was signed out.
    EndSession {
        session: SessionTag,
    },
}

/// Carries bus messages to every node's [`LocalFanout`]. Publishing never blocks: a broker
/// queues or drops with a log line, it never stalls the request that published.
pub trait Broker: Send + Sync + 'static {
    fn publish(&self, message: BusMessage);
    /// For `/health`.
    fn name(&self) -> &'static str;
}

/// The single-node broker: hands each message straight to this process's hub, in order.
pub struct LocalBroker {
    fanout: Arc<LocalFanout>,
}

impl LocalBroker {
    pub fn new(fanout: Arc<LocalFanout>) -> Self {
        Self { fanout }
    }
}

impl Broker for LocalBroker {
    fn publish(&self, message: BusMessage) {
        self.fanout.apply(message);
    }

    fn name(&self) -> &'static str {
        "local"
    }
}
