//! Read-pointer storage.

use async_trait::async_trait;

use super::{ReadPointer, ReadState};
use crate::server::storage::StoreResult;

#[async_trait]
pub trait ReceiptStore {
    /// Raises the member's pointer to `seq` if lower. Returns the stored pointer and whether
    /// it moved.
    async fn mark_read(&self, channel_id: i64, user_id: i64, seq: i64) -> StoreResult<(i64, bool)>;
    async fn read_state(&self, channel_id: i64) -> StoreResult<ReadState>;
}

/// A channel's read state from its `last_seq` and `(user_id, last_read_seq)` rows.
pub(crate) fn read_state_from(
    channel_id: i64,
    last_seq: i64,
    pointers: Vec<(i64, i64)>,
) -> ReadState {
    ReadState {
        channel_id,
        last_seq,
        pointers: pointers
            .into_iter()
            .map(|(user_id, last_read_seq)| ReadPointer {
                channel_id,
                user_id,
                last_read_seq,
            })
            .collect(),
    }
}
