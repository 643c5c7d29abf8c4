//! Presence on screen: a coloured dot with a text equivalent, and "last seen" wording.

use leptos::prelude::*;

use super::PresenceState;
use crate::clock::now_ms;
use crate::realtime::browser::ChatClient;
use crate::ui::format::ago;

/// "online", "away", "last seen 5 min ago" or "offline".
pub fn presence_text(chat: ChatClient, user_id: i64) -> String {
    let info = chat.presence_of(user_id);
    match info {
        Some(info) if info.state == PresenceState::Online => "online".into(),
        Some(info) if info.state == PresenceState::Away => "away".into(),
        Some(info) => match (info.last_seen_at, chat.mounted()) {
            (Some(seen), true) => format!("last seen {}", ago(now_ms(), seen)),
            _ => "offline".into(),
        },
        None => "offline".into(),
    }
}

/// A dot showing a user's presence; its label says the same in words.
#[component]
pub fn PresenceDot(user_id: i64) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let state = move || {
        chat.presence_of(user_id)
            .map_or(PresenceState::Offline, |info| info.state)
    };
    let class = move || match state() {
        PresenceState::Online => "dot dot--online",
        PresenceState::Away => "dot dot--away",
        PresenceState::Offline => "dot dot--offline",
    };
    view! {
        <span
            class=class
            role="img"
            data-presence=move || format!("{:?}", state()).to_lowercase()
            aria-label=move || presence_text(chat, user_id)
        ></span>
    }
}
