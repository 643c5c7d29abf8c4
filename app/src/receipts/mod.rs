//! Read receipts: one forward-only read pointer per member and channel. "Seen by" for a
//! message is every member whose pointer is at or past its `seq`.

pub mod api;
pub mod components;
#[cfg(feature = "ssr")]
pub mod service;
#[cfg(feature = "ssr")]
pub mod store;

use serde::{Deserialize, Serialize};

/// A member's read pointer: they have read every message with `seq <= last_read_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadPointer {
    pub channel_id: i64,
    pub user_id: i64,
    pub last_read_seq: i64,
}

/// Every member's read pointer in a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadState {
    pub channel_id: i64,
    /// The channel's newest seq.
    pub last_seq: i64,
    /// One per member, by user id.
    pub pointers: Vec<ReadPointer>,
}

impl ReadState {
    /// Members (other than the sender) who have seen the message with `seq`.
    pub fn seen_by(&self, seq: i64, sender_id: i64) -> impl Iterator<Item = i64> + '_ {
        self.pointers
            .iter()
            .filter(move |p| p.user_id != sender_id && p.last_read_seq >= seq)
            .map(|p| p.user_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_by_counts_pointers_at_or_past_seq_except_sender() {
        let pointer = |user_id, last_read_seq| ReadPointer {
            channel_id: 1,
            user_id,
            last_read_seq,
        };
        let state = ReadState {
            channel_id: 1,
            last_seq: 5,
            pointers: vec![pointer(1, 5), pointer(2, 3), pointer(3, 4)],
        };
        assert_eq!(state.seen_by(4, 1).collect::<Vec<_>>(), vec![3]);
        assert_eq!(state.seen_by(3, 1).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(state.seen_by(5, 2).collect::<Vec<_>>(), vec![1]);
    }
}
