//! Messages: sending with per-channel sequence numbers, paging, editing, deleting.

pub mod api;
pub mod components;
#[cfg(feature = "ssr")]
pub mod service;
#[cfg(feature = "ssr")]
pub mod store;
#[cfg(feature = "ssr")]
pub mod writer;

use serde::{Deserialize, Serialize};

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: i64,
    pub channel_id: i64,
    /// Position in the channel: 1, 2, 3… with no gaps, assigned when stored.
    pub seq: i64,
    pub sender_id: i64,
    pub sender_name: String,
    /// The sender's idempotency key (a UUID).
    pub client_id: String,
    /// The text; `None` once deleted.
    pub body: Option<String>,
    /// Unix epoch milliseconds.
    pub created_at: i64,
    /// Set when the body was last edited (Unix epoch milliseconds).
    pub edited_at: Option<i64>,
    /// Set when the message was deleted (Unix epoch milliseconds).
    pub deleted_at: Option<i64>,
}

/// A page of messages, always in ascending `seq` order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// Whether more messages exist beyond this page in the direction paged (older for the
    /// newest page and `before_seq`, newer for `after_seq`).
    pub has_more: bool,
}

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCursor {
    /// The newest messages.
    Newest,
    /// Messages with `seq < n`, the closest ones.
    Before(i64),
    /// Messages with `seq > n`, the closest ones.
    After(i64),
}
