//! The open channel: a window of its history (opened at the first unread message when there
//! is one, paged in either way as the reader scrolls), live messages, edit and delete, "Seen
//! by", typing, and the composer with optimistic, in-order sends.
//!
//! - `list.rs`: the scrolling window, the "New messages" divider, jump buttons, and marking
//!   read only what has been on screen.
//! - `row.rs`: one message (day separator, grouping, avatar, actions) and a pending one.
//! - `composer.rs`: the message box (drafts per channel, growing, counter) and typing.

mod composer;
mod list;
mod row;

use leptos::prelude::*;
use leptos::task::spawn_local;
use leptos_router::components::A;

use super::api::{delete_message, list_messages};
use crate::channels::api::rename_channel;
use crate::channels::components::MembersPanel;
use crate::channels::{ChannelKind, MemberRole};
use crate::domain::ChannelName;
use crate::presence::api::get_presence;
use crate::realtime::browser::ChatClient;
use crate::ui::dialog::ConfirmDialog;
use composer::{Composer, TypingLine};
use list::MessageList;

/// Messages fetched per page.
const PAGE: u32 = 50;
/// Read messages shown above the first unread one when a channel opens there.
const CONTEXT_ABOVE_UNREAD: i64 = 10;

/// What the parts of an open channel share.
#[derive(Clone, Copy)]
struct ChannelViewState {
    channel_id: i64,
    /// The seq of the message being edited, if any.
    editing: RwSignal<Option<i64>>,
    /// The id of the message whose deletion awaits confirmation, if any.
    deleting: RwSignal<Option<i64>>,
    /// Bumped when I send: the list then follows to the newest message.
    sent: RwSignal<u64>,
    /// My read pointer when the channel was opened: "New messages" starts after it.
    divider_after: Option<i64>,
}

/// Loads what an opened channel needs: members (with read pointers) and their presence, and a
/// window of messages — at the first unread one if there is one, else the newest.
fn open_channel(chat: ChatClient, channel_id: i64, first_unread: Option<i64>) {
    spawn_local(async move {
        if let Some(ids) = chat.load_members(channel_id).await
            && let Ok(snapshot) = get_presence(ids).await
        {
            chat.set_presence_snapshot(snapshot);
        }
    });
    let reusable = chat.with_log_untracked(channel_id, |log| {
        log.is_some_and(|log| {
            log.at_live_edge()
                && first_unread.is_none_or(|seq| log.oldest_seq().is_some_and(|o| o <= seq))
        })
    });
    if !reusable {
        spawn_local(load_window(chat, channel_id, first_unread));
    }
}

/// Replaces the held messages with the newest page, or with a page starting a little above
/// `around` (the first unread message).
async fn load_window(chat: ChatClient, channel_id: i64, around: Option<i64>) {
    let page = match around {
        Some(seq) => {
            let after = (seq - 1 - CONTEXT_ABOVE_UNREAD).max(0);
            list_messages(channel_id, None, Some(after), Some(PAGE)).await
        }
        None => list_messages(channel_id, None, None, Some(PAGE)).await,
    };
    let Ok(page) = page else {
        return;
    };
    if !chat.is_alive() {
        return;
    }
    let has_newer = around.is_some() && page.has_more;
    chat.replace_window(channel_id, page.messages, has_newer);
}

/// A UUIDv7: the time in milliseconds, then random bits. The server indexes keys per sender,
/// so time-ordered keys append to that index instead of touching a random page of it with
/// every message (docs/PERFORMANCE.md, ingest).
fn new_client_id() -> String {
    let mut bytes = [0u8; 16];
    fill_random(&mut bytes);
    bytes[..6].copy_from_slice(&now_millis().to_be_bytes()[2..]);
    bytes[6] = (bytes[6] & 0x0f) | 0x70;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(bytes).hyphenated().to_string()
}

fn now_millis() -> u64 {
    u64::try_from(crate::clock::now_ms()).unwrap_or(0)
}

#[cfg(feature = "hydrate")]
fn fill_random(bytes: &mut [u8]) {
    if let Some(crypto) = web_sys::window().and_then(|w| w.crypto().ok()) {
        let _ = crypto.get_random_values_with_u8_array(bytes);
    }
}

#[cfg(not(feature = "hydrate"))]
fn fill_random(_bytes: &mut [u8]) {}

/// Moves keyboard focus to the element with `id` (after the DOM has caught up).
fn focus_by_id(id: &'static str) {
    request_animation_frame(move || {
        use wasm_bindgen::JsCast;
        if let Some(element) = document()
            .get_element_by_id(id)
            .and_then(|el| el.dyn_into::<web_sys::HtmlElement>().ok())
        {
            let _ = element.focus();
        }
    });
}

#[component]
pub fn ChannelView(channel_id: i64) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let opened = chat.summary_untracked(channel_id);
    let divider_after = opened
        .as_ref()
        .filter(|c| c.unread_count > 0)
        .map(|c| c.last_read_seq);
    let state = ChannelViewState {
        channel_id,
        editing: RwSignal::new(None),
        deleting: RwSignal::new(None),
        sent: RwSignal::new(0),
        divider_after,
    };
    provide_context(state);
    let show_members = RwSignal::new(false);
    // In the browser only: server rendering shows the frame, the page fills it once hydrated.
    Effect::new(move |_| {
        open_channel(chat, channel_id, divider_after.map(|seq| seq + 1));
        focus_by_id("composer-input");
    });
    let summary = move || chat.summary(channel_id);
    let title = move || summary().map(|c| c.title).unwrap_or_default();
    let is_dm = move || summary().is_some_and(|c| c.kind == ChannelKind::Direct);
    let delete_error = RwSignal::new(None::<String>);
    let confirm_delete = move || {
        let Some(message_id) = state.deleting.get_untracked() else {
            return;
        };
        spawn_local(async move {
            match delete_message(message_id).await {
                Ok(deleted) => chat.replace_message(deleted),
                Err(e) => {
                    let _ = delete_error.try_set(Some(e.to_string()));
                }
            }
        });
    };

    view! {
        <section class="channel" aria-labelledby="channel-title">
            <header class="channel__header">
                <A href="/" attr:class="channel__back button button--small button--quiet" attr:aria-label="Back to conversations">
                    "‹ Back"
                </A>
                <ChannelTitle channel_id title=Signal::derive(title) />
                <button class="button button--small button--quiet" aria-pressed=move || show_members.get().to_string()
                    aria-controls=move || show_members.get().then_some("members-panel")
                    on:click=move |_| show_members.update(|s| *s = !*s)>
                    {move || if is_dm() { "Details" } else { "Members" }}
                </button>
            </header>
            {move || delete_error.get().map(|e| view! { <p class="error-banner" role="alert">{e}</p> })}
            <MessageList />
            <TypingLine channel_id />
            <Composer />
            <Announcer channel_id />
            <ConfirmDialog
                open=Signal::derive(move || state.deleting.get().is_some())
                title="Delete message?"
                message="It will be replaced by “This message was deleted.” for everyone. This cannot be undone."
                confirm_label="Delete"
                on_close=move || state.deleting.set(None)
                on_confirm=confirm_delete />
        </section>
        <Show when=move || show_members.get()>
            <MembersPanel channel_id close=move || show_members.set(false) />
        </Show>
    }
    .into_any()
}

/// The channel's name; its owner can rename a group in place.
#[component]
fn ChannelTitle(channel_id: i64, title: Signal<String>) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let renaming = RwSignal::new(false);
    let draft = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let can_rename = move || {
        chat.summary(channel_id)
            .is_some_and(|c| c.kind == ChannelKind::Group && c.role == MemberRole::Owner)
    };
    let save = Action::new(move |name: &String| {
        let name = name.clone();
        async move {
            match rename_channel(channel_id, name).await {
                Ok(detail) => {
                    chat.rename_channel(&detail);
                    let _ = renaming.try_set(false);
                    focus_by_id("channel-title");
                }
                Err(e) => {
                    let _ = error.try_set(Some(e.to_string()));
                }
            }
        }
    });
    let submit = move || {
        let name = draft.get_untracked();
        match ChannelName::parse(&name) {
            Ok(_) => {
                error.set(None);
                save.dispatch(name);
            }
            Err(e) => error.set(Some(e.to_string())),
        }
    };
    view! {
        <Show when=move || renaming.get() fallback=move || view! {
            <h1 id="channel-title" class="channel__title" tabindex="-1">{move || title.get()}</h1>
            <Show when=can_rename>
                <button class="button button--small button--quiet" on:click=move |_| {
                    draft.set(title.get_untracked());
                    error.set(None);
                    renaming.set(true);
                    focus_by_id("rename-input");
                }>"Rename"</button>
            </Show>
        }>
            <form class="rename" on:submit=move |ev| { ev.prevent_default(); submit(); }>
                <label class="visually-hidden" for="rename-input">"Channel name"</label>
                <input id="rename-input" class="field__input" prop:value=move || draft.get()
                    aria-invalid=move || error.get().is_some().to_string()
                    aria-describedby="rename-error"
                    on:input=move |ev| draft.set(event_target_value(&ev))
                    on:keydown=move |ev| if ev.key() == "Escape" {
                        renaming.set(false);
                        focus_by_id("channel-title");
                    } />
                <button class="button button--small" type="submit">"Save"</button>
                <button class="button button--small button--quiet" type="button" on:click=move |_| {
                    renaming.set(false);
                    focus_by_id("channel-title");
                }>"Cancel"</button>
                <span id="rename-error" class="field__error" role="alert">{move || error.get()}</span>
            </form>
        </Show>
    }
    .into_any()
}

/// Tells screen readers about messages that arrive live in this channel, one at a time; pages
/// of history loading never speak.
#[component]
fn Announcer(channel_id: i64) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let text = move || {
        chat.arrived()
            .filter(|m| m.channel_id == channel_id)
            .map(|m| match m.body {
                Some(body) => format!("{}: {body}", m.sender_name),
                None => String::new(),
            })
            .unwrap_or_default()
    };
    view! { <div class="visually-hidden" aria-live="polite" data-testid="announcer">{text}</div> }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_time_ordered_uuid_v7_the_server_accepts() {
        let id = new_client_id();
        let parsed = uuid::Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        let mut millis = [0u8; 8];
        millis[2..].copy_from_slice(&parsed.as_bytes()[..6]);
        let at = u64::from_be_bytes(millis);
        assert!(
            now_millis().abs_diff(at) < 5_000,
            "stamped with the current time"
        );
        assert!(crate::domain::ClientId::parse(&id).is_ok());
    }
}
