//! The reducer: every server event goes through [`ChatModel::apply`], which changes the model
//! and answers with what else must happen ([`Effect`]s: frames to send, things to reload). It
//! touches no signal, socket or server, so the unit tests below drive it with plain values.

use super::model::{ChatModel, ConnectionStatus};
use crate::channels::ChannelMember;
use crate::realtime::protocol::{ActivityState, ClientEvent, ServerEvent};

/// What an event asks of the world outside the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send this frame over the socket.
    Send(ClientEvent),
    /// After reconnecting: reload the members and held messages of these channels (catch-up
    /// does not replay read pointers, edits or deletions).
    RefreshChannels(Vec<i64>),
    /// Reload one channel's members (its owner may have changed).
    ReloadMembers(i64),
    /// Messages that waited for the connection go out now.
    ResendWaiting,
    /// Say this in the browser's console.
    Warn(String),
}

impl ChatModel {
    /// Applies one server event received at `now` (client clock).
    pub fn apply(&mut self, event: ServerEvent, now: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        match event {
            ServerEvent::Hello { server_time, .. } => {
                self.clock_skew = server_time - now;
                self.status.set(ConnectionStatus::Connected);
                effects.push(Effect::Send(ClientEvent::Resume {
                    channels: self.resume_cursors(),
                }));
                if *self.activity == ActivityState::Away {
                    effects.push(Effect::Send(ClientEvent::Activity {
                        state: ActivityState::Away,
                    }));
                }
                // Unread counts and previews may have moved while disconnected.
                self.mark_channels_stale();
                effects.push(Effect::RefreshChannels(
                    self.details.keys().copied().collect(),
                ));
                effects.push(Effect::ResendWaiting);
            }
            ServerEvent::MessageCreated { message } => {
                let channel_id = message.channel_id;
                let gap_after = self.log(channel_id).and_then(|log| {
                    let newest = log.newest_seq();
                    (log.at_live_edge() && message.seq > newest + 1).then_some(newest)
                });
                if message.sender_id != self.my_id() {
                    self.arrived.set(Some(message.clone()));
                }
                self.add_messages(channel_id, vec![message]);
                if let Some(after_seq) = gap_after {
                    effects.push(Effect::Send(ClientEvent::Subscribe {
                        channel_id,
                        after_seq,
                    }));
                }
            }
            ServerEvent::MessageUpdated { message } | ServerEvent::MessageDeleted { message } => {
                self.replace_message(message);
            }
            ServerEvent::ReadUpdated {
                channel_id,
                user_id,
                last_read_seq,
            } => self.apply_pointer(channel_id, user_id, last_read_seq),
            ServerEvent::Typing {
                channel_id,
                user_id,
                expires_at,
            } => {
                let local_expiry = expires_at - self.clock_skew;
                self.typing
                    .edit()
                    .entry(channel_id)
                    .or_default()
                    .insert(user_id, local_expiry);
            }
            ServerEvent::TypingStopped {
                channel_id,
                user_id,
            } => {
                if let Some(users) = self.typing.edit().get_mut(&channel_id) {
                    users.remove(&user_id);
                }
            }
            ServerEvent::Presence {
                user_id,
                state,
                last_seen_at,
            } => self.set_presence(user_id, state, last_seen_at),
            ServerEvent::MemberAdded {
                channel_id,
                user,
                role,
            } => {
                if let Some(detail) = self.details.edit().get_mut(&channel_id)
                    && !detail.members.iter().any(|m| m.user.id == user.id)
                {
                    let last_read_seq = detail.last_seq;
                    detail.members.push(ChannelMember {
                        user,
                        role,
                        joined_at: now,
                        last_read_seq,
                    });
                }
                self.mark_channels_stale();
            }
            ServerEvent::MemberRemoved {
                channel_id,
                user_id,
            } => {
                if user_id == self.my_id() {
                    if self.is_member(channel_id) {
                        self.forget_channel(channel_id);
                    }
                } else {
                    if let Some(detail) = self.details.edit().get_mut(&channel_id) {
                        detail.members.retain(|m| m.user.id != user_id);
                    }
                    // If the owner left, someone else owns the channel now: reload its members.
                    if self.details.contains_key(&channel_id) {
                        effects.push(Effect::ReloadMembers(channel_id));
                    }
                }
                self.mark_channels_stale();
            }
            ServerEvent::ChannelUpdated { channel } => {
                if let Some(detail) = self.details.edit().get_mut(&channel.id) {
                    detail.name = channel.name.clone();
                }
                self.mark_channels_stale();
            }
            ServerEvent::CaughtUp { .. } | ServerEvent::Pong { .. } => {}
            ServerEvent::Error { code, message } => {
                effects.push(Effect::Warn(format!("realtime error {code:?}: {message}")));
            }
        }
        effects
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::PublicUser;
    use crate::channels::{ChannelKind, ChannelSummary, MemberRole};
    use crate::messages::Message;
    use crate::realtime::browser::model::{PendingMessage, PendingState};

    const ME: i64 = 1;
    const ANN: i64 = 2;
    const CHANNEL: i64 = 10;

    fn user(id: i64, name: &str) -> PublicUser {
        PublicUser {
            id,
            username: name.to_lowercase(),
            display_name: name.to_owned(),
            last_seen_at: None,
        }
    }

    fn message(seq: i64, sender_id: i64) -> Message {
        Message {
            id: seq,
            channel_id: CHANNEL,
            seq,
            sender_id,
            sender_name: if sender_id == ME { "Me" } else { "Ann" }.into(),
            client_id: format!("c{seq}"),
            body: Some(format!("m{seq}")),
            created_at: seq * 1000,
            edited_at: None,
            deleted_at: None,
        }
    }

    fn summary(last_seq: i64, last_read_seq: i64) -> ChannelSummary {
        ChannelSummary {
            id: CHANNEL,
            kind: ChannelKind::Group,
            name: Some("Deal room".into()),
            title: "Deal room".into(),
            peer: None,
            role: MemberRole::Member,
            last_seq,
            last_read_seq,
            unread_count: last_seq - last_read_seq,
            last_message: None,
            created_at: 0,
        }
    }

    fn created(seq: i64, sender_id: i64) -> ServerEvent {
        ServerEvent::MessageCreated {
            message: message(seq, sender_id),
        }
    }

    /// A model with the channel's window loaded at its newest: messages 1..=`held`, read to
    /// `read`.
    fn loaded(held: i64, read: i64) -> ChatModel {
        let mut model = ChatModel::new(user(ME, "Me"), vec![summary(held, read)]);
        model.replace_window(
            CHANNEL,
            (1..=held).map(|s| message(s, ANN)).collect(),
            false,
        );
        model.apply_pointer(CHANNEL, ME, read);
        model.take_changes();
        model
    }

    fn unread(model: &ChatModel) -> i64 {
        model.summary(CHANNEL).map_or(-1, |c| c.unread_count)
    }

    fn held(model: &ChatModel) -> Vec<i64> {
        model
            .log(CHANNEL)
            .map(|l| l.messages.keys().copied().collect())
            .unwrap_or_default()
    }

    #[test]
    fn live_messages_count_as_unread_until_read_and_my_own_read_up_to_themselves() {
        let mut model = loaded(3, 3);
        assert_eq!(unread(&model), 0);
        assert!(model.apply(created(4, ANN), 0).is_empty());
        assert!(model.apply(created(5, ANN), 0).is_empty());
        assert_eq!(unread(&model), 2);
        assert_eq!(held(&model), vec![1, 2, 3, 4, 5]);
        assert_eq!(
            model.arrived.as_ref().map(|m| m.seq),
            Some(5),
            "announced for screen readers"
        );
        let changes = model.take_changes();
        assert!(changes.logs && changes.channels && changes.arrived && !changes.presence);

        model.apply(
            ServerEvent::ReadUpdated {
                channel_id: CHANNEL,
                user_id: ME,
                last_read_seq: 4,
            },
            0,
        );
        assert_eq!(unread(&model), 1);
        // My own message reads everything before it.
        model.apply(created(6, ME), 0);
        assert_eq!(unread(&model), 0);
        assert_eq!(model.summary(CHANNEL).map(|c| c.last_read_seq), Some(6));
        // A pointer never moves back.
        model.apply(
            ServerEvent::ReadUpdated {
                channel_id: CHANNEL,
                user_id: ME,
                last_read_seq: 2,
            },
            0,
        );
        assert_eq!(model.summary(CHANNEL).map(|c| c.last_read_seq), Some(6));
    }

    #[test]
    fn a_gap_asks_for_the_missing_seqs_and_resume_starts_before_the_hole() {
        let mut model = loaded(3, 3);
        let effects = model.apply(created(6, ANN), 0);
        assert_eq!(
            effects,
            vec![Effect::Send(ClientEvent::Subscribe {
                channel_id: CHANNEL,
                after_seq: 3,
            })]
        );
        assert_eq!(held(&model), vec![1, 2, 3, 6], "the hole is visible");
        assert_eq!(unread(&model), 3, "the unread count covers the hole");
        let cursors = model.resume_cursors();
        assert_eq!(cursors.len(), 1);
        assert_eq!(
            cursors[0].after_seq, 3,
            "resume fills the hole, not after the newest"
        );
        // The replay fills it; a duplicate changes nothing.
        for seq in [4, 5, 5] {
            assert!(model.apply(created(seq, ANN), 0).is_empty());
        }
        assert_eq!(held(&model), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(model.resume_cursors()[0].after_seq, 6);
    }

    #[test]
    fn a_reader_further_back_keeps_an_unbroken_run_and_catches_up_at_the_end() {
        let mut model = ChatModel::new(user(ME, "Me"), vec![summary(10, 2)]);
        model.replace_window(CHANNEL, (1..=5).map(|s| message(s, ANN)).collect(), true);
        model.apply(created(11, ANN), 0);
        assert_eq!(
            held(&model),
            vec![1, 2, 3, 4, 5],
            "live message not added past the window"
        );
        assert_eq!(unread(&model), 9);
        assert!(
            model.resume_cursors().is_empty(),
            "paged in as the reader scrolls"
        );
        let generation = model.window_generation(CHANNEL);
        let after = model.append_newer(
            CHANNEL,
            generation,
            (6..=11).map(|s| message(s, ANN)).collect(),
            false,
        );
        assert_eq!(after, Some(11), "reached the newest: catch up after it");
        assert_eq!(held(&model), (1..=11).collect::<Vec<_>>());
        // A page asked for an earlier window is dropped.
        model.replace_window(CHANNEL, (9..=11).map(|s| message(s, ANN)).collect(), false);
        model.prepend_older(
            CHANNEL,
            generation,
            (6..=8).map(|s| message(s, ANN)).collect(),
        );
        assert_eq!(held(&model), vec![9, 10, 11]);
    }

    #[test]
    fn hello_resumes_resends_and_refreshes_and_the_clock_skew_shifts_typing() {
        let mut model = loaded(2, 2);
        model.details.edit().insert(
            CHANNEL,
            crate::channels::ChannelDetail {
                id: CHANNEL,
                kind: ChannelKind::Group,
                name: Some("Deal room".into()),
                created_by: ANN,
                created_at: 0,
                last_seq: 2,
                members: Vec::new(),
            },
        );
        model.activity.set(ActivityState::Away);
        let effects = model.apply(
            ServerEvent::Hello {
                user_id: ME,
                connection_id: "c".into(),
                protocol_version: 1,
                server_time: 10_500,
                heartbeat_secs: 30,
            },
            10_000,
        );
        assert_eq!(*model.status, ConnectionStatus::Connected);
        assert!(
            matches!(&effects[0], Effect::Send(ClientEvent::Resume { channels }) if channels[0].after_seq == 2)
        );
        assert!(effects.contains(&Effect::Send(ClientEvent::Activity {
            state: ActivityState::Away
        })));
        assert!(effects.contains(&Effect::RefreshChannels(vec![CHANNEL])));
        assert!(effects.contains(&Effect::ResendWaiting));
        assert_eq!(*model.channels_stale, 1, "the list is fetched again");
        model.apply(
            ServerEvent::Typing {
                channel_id: CHANNEL,
                user_id: ANN,
                expires_at: 16_500,
            },
            10_000,
        );
        assert_eq!(
            model.typing_in(CHANNEL, 15_999),
            vec![ANN],
            "server clock 500 ms ahead"
        );
        assert!(model.typing_in(CHANNEL, 16_000).is_empty());
        // A message from the typer ends the indicator.
        model.apply(created(3, ANN), 10_000);
        assert!(model.typing_in(CHANNEL, 0).is_empty());
    }

    #[test]
    fn being_removed_forgets_the_channel_with_a_notice_and_leaving_says_so() {
        let mut model = loaded(2, 2);
        model.apply(
            ServerEvent::MemberRemoved {
                channel_id: CHANNEL,
                user_id: ME,
            },
            0,
        );
        assert!(!model.is_member(CHANNEL));
        assert!(model.log(CHANNEL).is_none());
        assert_eq!(
            model.notice.as_deref(),
            Some("You were removed from Deal room.")
        );
        let mut model = loaded(2, 2);
        model.leaving = Some(CHANNEL);
        model.apply(
            ServerEvent::MemberRemoved {
                channel_id: CHANNEL,
                user_id: ME,
            },
            0,
        );
        assert_eq!(model.notice.as_deref(), Some("You left Deal room."));
    }

    #[test]
    fn a_confirmed_send_replaces_its_pending_copy_and_an_edit_updates_the_preview() {
        let mut model = loaded(2, 2);
        model
            .logs
            .edit()
            .entry(CHANNEL)
            .or_default()
            .pending
            .push(PendingMessage {
                client_id: "c3".into(),
                body: "m3".into(),
                state: PendingState::WaitingForConnection,
            });
        model.apply(created(3, ME), 0);
        assert!(model.log(CHANNEL).is_some_and(|l| l.pending.is_empty()));
        let mut edited = message(3, ME);
        edited.body = Some("edited".into());
        model.apply(ServerEvent::MessageUpdated { message: edited }, 0);
        assert_eq!(
            model
                .summary(CHANNEL)
                .and_then(|c| c.last_message.as_ref())
                .and_then(|p| p.body.clone())
                .as_deref(),
            Some("edited")
        );
        assert_eq!(
            model
                .log(CHANNEL)
                .and_then(|l| l.messages.get(&3))
                .and_then(|m| m.body.clone())
                .as_deref(),
            Some("edited")
        );
    }
}
