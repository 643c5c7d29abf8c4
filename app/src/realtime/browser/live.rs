//! The state's side of the live connection (browser only): starts the socket, and turns what
//! it reports into state changes, running every server event through the reducer.

use futures::StreamExt;
use leptos::prelude::*;

use super::events::Effect;
use super::model::ConnectionStatus;
use super::{ChatClient, SocketNews, socket};
use crate::clock::now_ms;
use crate::realtime::protocol::{ClientEvent, ServerEvent};

/// The socket and the state talk over two channels: news in, frames out. The socket ends when
/// the state is gone (its frame sender, held by the state, is dropped with it).
pub(super) fn start(client: ChatClient) {
    let (news_tx, mut news_rx) = futures::channel::mpsc::unbounded::<SocketNews>();
    let (frames_tx, frames_rx) = futures::channel::mpsc::unbounded::<ClientEvent>();
    client.to_socket.set_value(Some(frames_tx));
    leptos::task::spawn_local(socket::run(news_tx, frames_rx));
    leptos::task::spawn_local(async move {
        while let Some(news) = news_rx.next().await {
            if !client.is_alive() {
                return;
            }
            client.receive(news);
        }
    });
}

impl ChatClient {
    /// What the socket reported.
    fn receive(&self, news: SocketNews) {
        match news {
            SocketNews::Event(event) => self.apply(event),
            SocketNews::Reconnecting => self.change(|m| {
                m.status.set(ConnectionStatus::Reconnecting);
            }),
            SocketNews::Pulse => self.resend_waiting(),
            SocketNews::SignedOut => {
                self.to_socket.set_value(None);
                // When another tab signed out, go to the sign-in page; when this one did, it
                // is navigating already (a second navigation could cancel the first).
                if !self.read_untracked(|m| m.signing_out).unwrap_or(true) {
                    go_to_sign_in();
                }
            }
            SocketNews::SessionGone => go_to_sign_in(),
        }
    }

    /// Applies one server event through the reducer, then what it asks for.
    fn apply(&self, event: ServerEvent) {
        let now = now_ms();
        for effect in self.change(|m| m.apply(event, now)) {
            match effect {
                Effect::Send(event) => self.send(event),
                Effect::RefreshChannels(channels) => self.refresh_channels(channels),
                Effect::ReloadMembers(channel_id) => {
                    let client = *self;
                    leptos::task::spawn_local(async move {
                        client.load_members(channel_id).await;
                    });
                }
                Effect::ResendWaiting => self.resend_waiting(),
                Effect::Warn(warning) => leptos::logging::warn!("{warning}"),
            }
        }
    }

    /// After reconnecting: what catch-up does not replay (read pointers, edits and deletions of
    /// messages already held) is reloaded for the channels on hand.
    fn refresh_channels(&self, channels: Vec<i64>) {
        let client = *self;
        leptos::task::spawn_local(async move {
            for channel_id in channels {
                // Left or removed meanwhile: nothing to refresh, and asking would be refused.
                if client.read_untracked(|m| m.is_member(channel_id)) != Some(true) {
                    continue;
                }
                client.load_members(channel_id).await;
                if !client.is_alive() {
                    return;
                }
                // Edits and deletions of held messages; new ones come through catch-up, in order.
                let newest = crate::messages::api::list_messages(channel_id, None, None, Some(50));
                if let Ok(page) = newest.await {
                    client.change(|m| m.refresh_held(channel_id, page.messages));
                }
            }
        });
    }
}

fn go_to_sign_in() {
    if let Some(window) = web_sys::window() {
        let _ = window.location().assign("/login");
    }
}
