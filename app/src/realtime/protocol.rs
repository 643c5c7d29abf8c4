//! The WebSocket protocol, version [`PROTOCOL_VERSION`]: one JSON object per text frame, tagged
//! by `type`. `docs/PROTOCOL.md` shows every event with an example.

use serde::{Deserialize, Serialize};

use crate::auth::PublicUser;
use crate::channels::{ChannelKind, MemberRole};
use crate::messages::Message;
use crate::presence::PresenceState;

/// Bumped on any incompatible change to [`ServerEvent`] or [`ClientEvent`].
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest client message or frame the server reads; a bigger one closes the connection with
/// 1009. Client events are small, except a `resume` naming many channels.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

/// Most cursors one `resume` may carry. It is also the highest the channels-per-user cap can be
/// set to, so a client can always catch up on every channel it is in with one `resume`; and a
/// `resume` of this many cursors with the longest numbers JSON allows here (`i64::MIN`, 20
/// characters) is 27,630 bytes, under [`MAX_FRAME_BYTES`] (checked by a test below).
pub const MAX_RESUME_CURSORS: usize = 400;

/// Every close code the server sends (1000, a normal close, aside).
pub mod close_code {
    /// A frame broke the WebSocket protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text frame was not valid UTF-8.
    pub const INVALID_UTF8: u16 = 1007;
    /// A frame exceeded the size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// Catch-up could not read the database: reconnect and resume.
    pub const CATCH_UP_FAILED: u16 = 1011;
    /// The server is draining before a stop or restart: reconnect (after a short random wait)
    /// and resume.
    pub const RESTARTING: u16 = 1012;
    /// The session this connection was opened with was signed out: do not reconnect, sign in.
    pub const SIGNED_OUT: u16 = 4001;
    /// The connection fell behind (its outbound queue filled up): reconnect and resume.
    pub const LAGGING: u16 = 4008;
    /// No pong (or any frame) for two heartbeat intervals.
    pub const HEARTBEAT_TIMEOUT: u16 = 4009;
}

/// A channel as seen in `channel_updated`: enough to show or refresh it in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    pub id: i64,
    pub kind: ChannelKind,
    /// `None` for direct messages.
    pub name: Option<String>,
    /// Newest message seq.
    pub last_seq: i64,
    pub member_count: i64,
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    /// First event on every connection.
    Hello {
        /// The signed-in user.
        user_id: i64,
        /// This connection's id (unique per server process).
        connection_id: String,
        protocol_version: u32,
        /// Server clock, Unix epoch milliseconds (for skew-free typing expiry).
        server_time: i64,
        /// The server pings every this many seconds; a client may also send `ping`.
        heartbeat_secs: u64,
    },
    /// A message was stored (`message.seq` is its place in the channel).
    MessageCreated { message: Message },
    /// A message was edited.
    MessageUpdated { message: Message },
    /// A message was deleted (`message.body` is `null`, `deleted_at` is set).
    MessageDeleted { message: Message },
    /// A member's read pointer moved forward.
    ReadUpdated {
        channel_id: i64,
        user_id: i64,
        last_read_seq: i64,
    },
    /// `user_id` is typing in `channel_id` until `expires_at` unless renewed.
    Typing {
        channel_id: i64,
        user_id: i64,
        /// Unix epoch milliseconds (server clock).
        expires_at: i64,
    },
    /// `user_id` stopped typing (they sent their message).
    TypingStopped { channel_id: i64, user_id: i64 },
    /// A user's presence changed (sent to users who share a channel with them).
    Presence {
        user_id: i64,
        state: PresenceState,
        /// When last seen (Unix epoch milliseconds); set when going offline.
        last_seen_at: Option<i64>,
    },
    /// Someone joined a channel (also sent to the new member, who receives the channel's events
    /// from now on).
    MemberAdded {
        channel_id: i64,
        user: PublicUser,
        role: MemberRole,
    },
    /// Someone left or was removed (sent to the channel and the removed member, who receives
    /// nothing more from it).
    MemberRemoved { channel_id: i64, user_id: i64 },
    /// A channel was created (sent to its members) or renamed.
    ChannelUpdated { channel: ChannelInfo },
    /// Catch-up for `channel_id` is complete up to `last_seq`; live events follow.
    CaughtUp { channel_id: i64, last_seq: i64 },
    /// A client event was refused; the connection stays open.
    Error { code: ErrorCode, message: String },
    /// Answer to `ping`.
    Pong {
        /// The `nonce` of the `ping`, if any.
        nonce: Option<String>,
        server_time: i64,
    },
}

/// Client → server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientEvent {
    /// Catch up on several channels: for each, the messages after `after_seq` are sent in order,
    /// then `caught_up`. Send on (re)connect with the last seq seen per channel.
    Resume { channels: Vec<ChannelCursor> },
    /// Catch up on one channel (e.g. after detecting a gap in seqs).
    Subscribe { channel_id: i64, after_seq: i64 },
    /// Stop receiving message events of a channel on this connection (until `subscribe`).
    Unsubscribe { channel_id: i64 },
    /// The user is typing in a channel; send every few seconds while typing.
    Typing { channel_id: i64 },
    /// The user is active, or away (idle or tab hidden).
    Activity { state: ActivityState },
    /// Liveness check; answered with `pong`.
    Ping {
        #[serde(default)]
        nonce: Option<String>,
    },
}

impl ClientEvent {
    /// Every `type` a client may send.
    pub const TYPES: &'static [&'static str] = &[
        "resume",
        "subscribe",
        "unsubscribe",
        "typing",
        "activity",
        "ping",
    ];
}

/// Where a client is in a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCursor {
    pub channel_id: i64,
    /// The last seq the client has; 0 for none.
    pub after_seq: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityState {
    Active,
    Away,
}

/// Stable codes of `error` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not JSON.
    InvalidJson,
    /// The `type` is missing or not one this server knows.
    UnknownEvent,
    /// The event's fields were missing or of the wrong type, or a value is out of range.
    InvalidEvent,
    /// The event names a channel the user is not a member of.
    NotAMember,
    /// Too many events of this kind; slow down.
    RateLimited,
    /// Binary frames are not part of the protocol.
    Unsupported,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_snake_case() {
        let json = serde_json::to_value(ServerEvent::CaughtUp {
            channel_id: 3,
            last_seq: 9,
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"type": "caught_up", "channel_id": 3, "last_seq": 9})
        );
        let event: ClientEvent = serde_json::from_str(r#"{"type":"ping"}"#).unwrap();
        assert_eq!(event, ClientEvent::Ping { nonce: None });
        let event: ClientEvent =
            serde_json::from_str(r#"{"type":"activity","state":"away"}"#).unwrap();
        assert_eq!(
            event,
            ClientEvent::Activity {
                state: ActivityState::Away
            }
        );
    }

    #[test]
    fn a_resume_of_the_most_cursors_with_the_longest_numbers_fits_in_a_frame() {
        let worst = ChannelCursor {
            channel_id: i64::MIN,
            after_seq: i64::MIN,
        };
        let resume = ClientEvent::Resume {
            channels: vec![worst; MAX_RESUME_CURSORS],
        };
        let frame = serde_json::to_string(&resume).unwrap();
        assert_eq!(frame.len(), 27_630);
        assert!(frame.len() <= MAX_FRAME_BYTES);
        // No cursor is longer than the worst one.
        let longest = [i64::MIN, i64::MAX, 0]
            .iter()
            .flat_map(|&a| [i64::MIN, i64::MAX, 0].map(move |b| (a, b)))
            .map(|(channel_id, after_seq)| {
                serde_json::to_string(&ChannelCursor {
                    channel_id,
                    after_seq,
                })
                .unwrap()
                .len()
            })
            .max();
        assert_eq!(longest, Some(serde_json::to_string(&worst).unwrap().len()));
    }

    #[test]
    fn every_client_type_is_listed() {
        for (event, name) in [
            (ClientEvent::Resume { channels: vec![] }, "resume"),
            (
                ClientEvent::Subscribe {
                    channel_id: 1,
                    after_seq: 0,
                },
                "subscribe",
            ),
            (ClientEvent::Unsubscribe { channel_id: 1 }, "unsubscribe"),
            (ClientEvent::Typing { channel_id: 1 }, "typing"),
            (
                ClientEvent::Activity {
                    state: ActivityState::Active,
                },
                "activity",
            ),
            (ClientEvent::Ping { nonce: None }, "ping"),
        ] {
            assert_eq!(serde_json::to_value(&event).unwrap()["type"], name);
            assert!(ClientEvent::TYPES.contains(&name));
        }
    }
}
