//! Read-receipt rules: members only; pointers never move back or past the newest message.

use super::{ReadPointer, ReadState};
use crate::auth::server::AuthUser;
use crate::channels::service::require_member;
use crate::domain::parse_seq;
use crate::error::ApiError;
use crate::realtime::protocol::ServerEvent;
use crate::realtime::server::fanout::Target;
use crate::server::AppState;
use crate::server::error::ServiceResult;
use crate::server::rate_limit::Action;

#[tracing::instrument(skip(state, user), fields(user_id = user.id))]
pub async fn mark_read(
    state: &AppState,
    user: &AuthUser,
    channel_id: i64,
    seq: i64,
) -> ServiceResult<ReadPointer> {
    state.user_limits.check(user.id, Action::Read)?;
    let seq = parse_seq(seq, "seq")?;
    let (access, _) = require_member(state, user, channel_id).await?;
    if seq > access.last_seq {
        return Err(ApiError::invalid(
            "seq",
            format!(
                "seq {seq} is past the channel's newest message ({})",
                access.last_seq
            ),
        )
        .into());
    }
    let (last_read_seq, moved) = state.db.mark_read(channel_id, user.id, seq).await?;
    if moved {
        // To every member, the reader's other tabs included.
        state.hub.publish(
            Target::Channel(channel_id),
            ServerEvent::ReadUpdated {
                channel_id,
                user_id: user.id,
                last_read_seq,
            },
        );
    }
    Ok(ReadPointer {
        channel_id,
        user_id: user.id,
        last_read_seq,
    })
}

pub async fn read_state(
    state: &AppState,
    user: &AuthUser,
    channel_id: i64,
) -> ServiceResult<ReadState> {
    require_member(state, user, channel_id).await?;
    Ok(state.db.read_state(channel_id).await?)
}
