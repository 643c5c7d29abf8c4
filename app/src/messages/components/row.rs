//! One message: a day separator when the day changes, the "New messages" divider, and either a
//! full header (avatar, name, time) or, for a run of messages from one sender within a few
//! minutes, just the body.

use leptos::html;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::{ChannelViewState, focus_by_id};
use crate::domain::MessageBody;
use crate::messages::Message;
use crate::messages::api::edit_message;
use crate::realtime::browser::{ChatClient, PendingMessage, PendingState};
use crate::ui::format::{
    Segment, avatar_class, clock_time, day_label, full_time, initials, iso_time, linkify, same_day,
};

/// Messages from one sender closer together than this share one header.
const GROUP_WITHIN_MS: i64 = 5 * 60 * 1000;

/// What a row needs of the message before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Previous {
    sender_id: i64,
    created_at: i64,
}

#[component]
pub fn MessageRow(seq: i64) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let view_state = expect_context::<ChannelViewState>();
    let channel_id = view_state.channel_id;
    let me = chat.my_id();
    let message = move || {
        chat.with_log(channel_id, |log| {
            log.and_then(|l| l.messages.get(&seq).cloned())
        })
    };
    let Some(first) = chat.with_log_untracked(channel_id, |log| {
        log.and_then(|l| l.messages.get(&seq).cloned())
    }) else {
        return ().into_any();
    };
    let previous = Memo::new(move |_| {
        chat.with_log(channel_id, |log| {
            log.and_then(|l| {
                l.messages.range(..seq).next_back().map(|(_, m)| Previous {
                    sender_id: m.sender_id,
                    created_at: m.created_at,
                })
            })
        })
    });
    let created_at = first.created_at;
    let sender_id = first.sender_id;
    let new_day = move || {
        previous
            .get()
            .is_none_or(|p| !same_day(p.created_at, created_at))
    };
    let divider_here = view_state
        .divider_after
        .is_some_and(|after| seq == after + 1);
    let continued = move || {
        !divider_here
            && previous.get().is_some_and(|p| {
                p.sender_id == sender_id
                    && created_at - p.created_at < GROUP_WITHIN_MS
                    && same_day(p.created_at, created_at)
            })
    };
    let mine = sender_id == me;
    let editing = move || view_state.editing.get() == Some(seq);
    let message_id = first.id;
    let time_text = clock_time(created_at);
    let time_full = full_time(created_at);
    let time_iso = iso_time(created_at);

    let class = move || {
        let mut class = String::from("message");
        if mine {
            class.push_str(" message--mine");
        }
        if continued() {
            class.push_str(" message--continued");
        }
        class
    };
    view! {
        <Show when=new_day>
            <div class="day-separator" role="separator" data-testid="day-separator">
                <span>{move || day_label(created_at)}</span>
            </div>
        </Show>
        {divider_here.then(|| view! {
            <div class="divider" role="separator" data-testid="new-divider"><span>"New messages"</span></div>
        })}
        <article class=class data-seq=seq.to_string() data-sender=sender_id.to_string()>
            <span class=avatar_class(sender_id) aria-hidden="true">{initials(&first.sender_name)}</span>
            <div class="message__content">
                <header class="message__meta">
                    <span class="message__sender">{first.sender_name.clone()}</span>
                    <time class="message__time" datetime=time_iso title=time_full>{time_text}</time>
                    {move || message().and_then(|m| m.edited_at.filter(|_| m.deleted_at.is_none())).map(|_| view! {
                        <span class="message__edited">"(edited)"</span>
                    })}
                </header>
                {move || {
                    let current: Option<Message> = message();
                    match current {
                        Some(m) if m.deleted_at.is_some() => view! {
                            <p class="message__body message__body--deleted">"This message was deleted."</p>
                        }.into_any(),
                        Some(m) if editing() => view! {
                            <EditBox seq message_id original=m.body.unwrap_or_default() />
                        }.into_any(),
                        Some(m) => view! { <MessageText body=m.body.unwrap_or_default() /> }.into_any(),
                        None => ().into_any(),
                    }
                }}
                {mine.then(|| view! {
                    <Show when=move || message().is_some_and(|m| m.deleted_at.is_none()) && !editing()>
                        <div class="message__actions">
                            <button class="action-button" on:click=move |_| view_state.editing.set(Some(seq))>
                                "Edit"
                            </button>
                            <button class="action-button" on:click=move |_| view_state.deleting.set(Some(message_id))>
                                "Delete"
                            </button>
                        </div>
                    </Show>
                })}
            </div>
        </article>
    }
    .into_any()
}

/// Editing one of my messages in place: Enter saves, Esc cancels; focus returns to the
/// composer either way.
#[component]
fn EditBox(seq: i64, message_id: i64, original: String) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let view_state = expect_context::<ChannelViewState>();
    let draft = RwSignal::new(original);
    let error = RwSignal::new(None::<String>);
    let input = NodeRef::<html::Textarea>::new();
    Effect::new(move |_| {
        if let Some(el) = input.get() {
            let _ = el.focus();
            let end = u32::try_from(el.value().encode_utf16().count()).unwrap_or(0);
            let _ = el.set_selection_range(end, end);
        }
    });
    let finish = move || {
        view_state.editing.set(None);
        focus_by_id("composer-input");
    };
    let save = move || {
        let body = draft.get_untracked();
        if let Err(e) = MessageBody::parse(&body) {
            error.set(Some(e.to_string()));
            return;
        }
        spawn_local(async move {
            match edit_message(message_id, body).await {
                Ok(updated) => {
                    chat.replace_message(updated);
                    if view_state.editing.try_get_untracked() == Some(Some(seq)) {
                        finish();
                    }
                }
                Err(e) => {
                    let _ = error.try_set(Some(e.to_string()));
                }
            }
        });
    };
    let field_id = format!("edit-{seq}");
    view! {
        <div class="message__edit">
            <label class="visually-hidden" for=field_id.clone()>"Edit message"</label>
            <textarea id=field_id node_ref=input class="composer__input" prop:value=move || draft.get()
                aria-describedby=format!("edit-error-{seq}")
                on:input=move |ev| draft.set(event_target_value(&ev))
                on:keydown=move |ev| {
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        save();
                    }
                    if ev.key() == "Escape" {
                        ev.prevent_default();
                        finish();
                    }
                }></textarea>
            <div class="message__edit-buttons">
                <button class="button button--small" on:click=move |_| save()>"Save"</button>
                <button class="button button--small button--quiet" on:click=move |_| finish()>"Cancel"</button>
            </div>
            <p id=format!("edit-error-{seq}") class="field__error" role="alert">{move || error.get()}</p>
        </div>
    }
}

/// A body as text, with http(s) links as anchors; nothing is ever interpreted as HTML.
#[component]
pub fn MessageText(body: String) -> impl IntoView {
    view! {
        <p class="message__body">
            {linkify(&body).into_iter().map(|segment| match segment {
                Segment::Text(text) => text.into_any(),
                Segment::Link(url) => {
                    let href = url.clone();
                    view! { <a href=href target="_blank" rel="noopener noreferrer nofollow">{url}</a> }.into_any()
                }
            }).collect_view()}
        </p>
    }
}

#[component]
pub fn PendingRow(channel_id: i64, pending: PendingMessage) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let client_id = pending.client_id.clone();
    let retry = move |_| chat.retry(channel_id, &client_id);
    view! {
        <article class="message message--mine message--pending" data-pending=pending.client_id.clone()>
            <span class=avatar_class(chat.my_id()) aria-hidden="true">{initials(&chat.me().display_name)}</span>
            <div class="message__content">
                <MessageText body=pending.body.clone() />
                {match pending.state {
                    PendingState::Sending => view! { <p class="message__status muted">"Sending…"</p> }.into_any(),
                    PendingState::WaitingForConnection => view! {
                        <p class="message__status muted" data-testid="waiting">"Waiting for connection… (sent automatically)"</p>
                    }.into_any(),
                    PendingState::Failed(reason) => view! {
                        <p class="message__status message__status--failed" role="alert">
                            "Not sent: " {reason} " "
                            <button class="action-button" on:click=retry>"Retry"</button>
                        </p>
                    }.into_any(),
                }}
            </div>
        </article>
    }
}
