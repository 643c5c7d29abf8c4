//! The message box and the typing line.
//!
//! Drafts are kept per channel in the tab's `sessionStorage`, so switching channels or
//! reloading keeps what was typed; a sent message clears its draft.

use leptos::html;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{ChannelViewState, load_window, new_client_id};
use crate::clock::now_ms;
use crate::domain::MessageBody;
use crate::realtime::browser::ChatClient;
use crate::realtime::browser::storage::session_storage;
use crate::realtime::protocol::ClientEvent;

/// How often a typing signal is re-sent while typing (ms).
const TYPING_EVERY_MS: i64 = 3_000;
/// The character counter shows from this many characters on.
const COUNT_FROM: usize = MessageBody::MAX_CHARS - 500;

fn draft_key(channel_id: i64) -> String {
    format!("dealnest.draft.{channel_id}")
}

fn load_draft(channel_id: i64) -> String {
    session_storage()
        .and_then(|s| s.get_item(&draft_key(channel_id)).ok().flatten())
        .unwrap_or_default()
}

fn store_draft(channel_id: i64, text: &str) {
    if let Some(storage) = session_storage() {
        let _ = if text.is_empty() {
            storage.remove_item(&draft_key(channel_id))
        } else {
            storage.set_item(&draft_key(channel_id), text)
        };
    }
}

/// Grows the box with its text; CSS caps the height, past which it scrolls.
fn fit_height(el: &web_sys::HtmlTextAreaElement) {
    let style = web_sys::HtmlElement::style(el);
    let _ = style.set_property("height", "auto");
    let _ = style.set_property("height", &format!("{}px", el.scroll_height() + 2));
}

#[component]
pub fn Composer() -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let view_state = expect_context::<ChannelViewState>();
    let channel_id = view_state.channel_id;
    let draft = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let last_typing = StoredValue::new(0i64);
    let input = NodeRef::<html::Textarea>::new();
    // In the browser only: the saved draft comes back.
    Effect::new(move |_| {
        let saved = load_draft(channel_id);
        if !saved.is_empty() {
            draft.set(saved);
            if let Some(el) = input.get_untracked() {
                request_animation_frame(move || fit_height(&el));
            }
        }
    });
    let set_draft = move |text: String| {
        store_draft(channel_id, &text);
        draft.set(text);
        if let Some(el) = input.get_untracked() {
            fit_height(&el);
        }
    };
    let submit = move || {
        let text = draft.get_untracked();
        match MessageBody::parse(&text) {
            Err(e) => error.set(Some(e.to_string())),
            Ok(body) => {
                error.set(None);
                set_draft(String::new());
                last_typing.set_value(0);
                // Reading further back: go to the newest, where the message will appear.
                if chat.with_log_untracked(channel_id, |l| l.is_some_and(|l| l.has_newer)) {
                    spawn_local(load_window(chat, channel_id, None));
                }
                chat.submit(channel_id, new_client_id(), body.as_str().to_owned());
                view_state.sent.update(|n| *n += 1);
            }
        }
    };
    let edit_last = move || {
        let me = chat.my_id();
        let last_mine = chat.with_log_untracked(channel_id, |log| {
            log.and_then(|log| {
                log.messages
                    .values()
                    .rev()
                    .find(|m| m.sender_id == me && m.deleted_at.is_none())
                    .map(|m| m.seq)
            })
        });
        if let Some(seq) = last_mine {
            view_state.editing.set(Some(seq));
        }
    };
    let on_input = move |ev| {
        set_draft(event_target_value(&ev));
        let now = now_ms();
        if now - last_typing.get_value() >= TYPING_EVERY_MS
            && !draft.get_untracked().trim().is_empty()
        {
            last_typing.set_value(now);
            chat.send(ClientEvent::Typing { channel_id });
        }
    };
    let count = move || draft.with(|d| d.trim().chars().count());
    let over_limit = move || count() > MessageBody::MAX_CHARS;
    view! {
        <form class="composer" on:submit=move |ev| { ev.prevent_default(); submit(); }>
            <label class="visually-hidden" for="composer-input">"Message"</label>
            <textarea id="composer-input" node_ref=input class="composer__input" rows="1"
                placeholder="Write a message" maxlength="8000"
                aria-describedby="composer-error composer-count"
                prop:value=move || draft.get()
                on:input=on_input
                on:keydown=move |ev| {
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        submit();
                    } else if ev.key() == "ArrowUp" && draft.with_untracked(String::is_empty) {
                        ev.prevent_default();
                        edit_last();
                    }
                }></textarea>
            <button class="button composer__send" type="submit">"Send"</button>
            <p id="composer-count" data-testid="composer-count"
                class=move || if over_limit() { "composer__count composer__count--over" } else { "composer__count" }>
                {move || {
                    let n = count();
                    (n >= COUNT_FROM).then(|| {
                        if n > MessageBody::MAX_CHARS {
                            format!("{} characters over the limit of {}", n - MessageBody::MAX_CHARS, MessageBody::MAX_CHARS)
                        } else {
                            format!("{} characters left", MessageBody::MAX_CHARS - n)
                        }
                    })
                }}
            </p>
            <p id="composer-error" class="field__error composer__error" role="alert">{move || error.get()}</p>
        </form>
    }
    .into_any()
}

#[component]
pub fn TypingLine(channel_id: i64) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let tick = RwSignal::new(0u64);
    // Expired indicators disappear even when no event arrives (browser only).
    Effect::new(move |_| {
        let handle = set_interval_with_handle(
            move || tick.update(|t| *t += 1),
            std::time::Duration::from_secs(1),
        )
        .ok();
        on_cleanup(move || {
            if let Some(handle) = handle {
                handle.clear();
            }
        });
    });
    let text = move || {
        tick.track();
        let typers = chat.typing_in(channel_id);
        let names: Vec<String> = chat.with_detail(channel_id, |detail| {
            typers
                .iter()
                .map(|id| {
                    detail
                        .and_then(|detail| detail.members.iter().find(|m| m.user.id == *id))
                        .map_or_else(|| "Someone".to_owned(), |m| m.user.display_name.clone())
                })
                .collect()
        });
        match names.as_slice() {
            [] => String::new(),
            [one] => format!("{one} is typing…"),
            [a, b] => format!("{a} and {b} are typing…"),
            _ => "Several people are typing…".to_owned(),
        }
    };
    view! { <p class="typing" data-testid="typing" aria-live="polite">{text}</p> }
}
