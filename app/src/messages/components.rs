//! The open channel: history (paging up keeps the scroll position), live messages, edit and
//! delete, the "new messages" divider, "Seen by", typing, and the composer with optimistic send.

use leptos::html;
use leptos::prelude::*;
use leptos::task::spawn_local;

use super::Message;
use super::api::{delete_message, edit_message, list_messages, send_message};
use crate::channels::ChannelKind;
use crate::channels::api::get_channel;
use crate::channels::components::MembersPanel;
use crate::domain::MessageBody;
use crate::presence::api::get_presence;
use crate::realtime::client::{ChatClient, PendingMessage, now_ms};
use crate::realtime::protocol::ClientEvent;
use crate::receipts::api::mark_read;
use crate::receipts::components::SeenBy;
use crate::ui::format::{Segment, clock_time, linkify};

/// Messages fetched per page.
const PAGE: u32 = 50;
/// How close to the bottom (px) still counts as "at the bottom".
const BOTTOM_SLACK: i32 = 48;
/// How often a typing signal is re-sent while typing (ms).
const TYPING_EVERY_MS: i64 = 3_000;

/// Loads what an opened channel needs: members (with read pointers), the newest page, and the
/// members' presence.
fn load_channel(chat: ChatClient, channel_id: i64, error: RwSignal<Option<String>>) {
    spawn_local(async move {
        match get_channel(channel_id).await {
            Ok(detail) => {
                let ids: Vec<i64> = detail.members.iter().map(|m| m.user.id).collect();
                chat.details.update(|d| {
                    d.insert(channel_id, detail);
                });
                if let Ok(snapshot) = get_presence(ids).await {
                    chat.set_presence_snapshot(snapshot);
                }
            }
            Err(e) => error.set(Some(e.to_string())),
        }
    });
    spawn_local(async move {
        match list_messages(channel_id, None, None, Some(PAGE)).await {
            Ok(page) => {
                chat.add_messages(channel_id, page.messages);
                chat.logs.update(|logs| {
                    let log = logs.entry(channel_id).or_default();
                    if !log.loaded {
                        log.has_older = page.has_more;
                    }
                    log.loaded = true;
                });
                // Messages that arrived while loading may have left a gap: catch up from here.
                let newest = chat
                    .logs
                    .with_untracked(|l| {
                        l.get(&channel_id)
                            .and_then(|l| l.messages.keys().next_back().copied())
                    })
                    .unwrap_or(0);
                chat.send(ClientEvent::Subscribe {
                    channel_id,
                    after_seq: newest,
                });
            }
            Err(e) => error.set(Some(e.to_string())),
        }
    });
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

#[cfg(feature = "hydrate")]
fn now_millis() -> u64 {
    // Whole milliseconds since 1970 fit in 48 bits until the year 10889.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let millis = js_sys::Date::now() as u64;
    millis
}

#[cfg(not(feature = "hydrate"))]
fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

#[cfg(feature = "hydrate")]
fn fill_random(bytes: &mut [u8]) {
    if let Some(crypto) = web_sys::window().and_then(|w| w.crypto().ok()) {
        let _ = crypto.get_random_values_with_u8_array(bytes);
    }
}

#[cfg(not(feature = "hydrate"))]
fn fill_random(_bytes: &mut [u8]) {}

/// Sends (or re-sends) a pending message; the same client id makes a retry safe.
fn deliver(chat: ChatClient, channel_id: i64, pending: PendingMessage) {
    spawn_local(async move {
        match send_message(channel_id, pending.client_id.clone(), pending.body.clone()).await {
            Ok(message) => chat.add_messages(channel_id, vec![message]),
            Err(error) => chat.logs.update(|logs| {
                if let Some(p) = logs.get_mut(&channel_id).and_then(|log| {
                    log.pending
                        .iter_mut()
                        .find(|p| p.client_id == pending.client_id)
                }) {
                    p.failed = Some(error.to_string());
                }
            }),
        }
    });
}

#[component]
pub fn ChannelView(channel_id: i64) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let error = RwSignal::new(None::<String>);
    let show_members = RwSignal::new(false);
    // Where "new messages" starts: my pointer when the channel was opened.
    let divider_after = chat.summary(channel_id).map(|c| c.last_read_seq);
    let already_loaded = chat
        .logs
        .with_untracked(|l| l.get(&channel_id).is_some_and(|l| l.loaded));
    if !already_loaded {
        load_channel(chat, channel_id, error);
    } else {
        spawn_local(async move {
            if let Ok(detail) = get_channel(channel_id).await {
                chat.details.update(|d| {
                    d.insert(channel_id, detail);
                });
            }
        });
    }
    let summary = move || chat.summary(channel_id);
    let title = move || summary().map(|c| c.title).unwrap_or_default();
    let is_dm = move || summary().is_some_and(|c| c.kind == ChannelKind::Direct);

    view! {
        <section class="channel" aria-label=move || format!("Channel {}", title())>
            <header class="channel__header">
                <h1 class="channel__title">{title}</h1>
                <button class="button button--small button--quiet" aria-pressed=move || show_members.get().to_string()
                    on:click=move |_| show_members.update(|s| *s = !*s)>
                    {move || if is_dm() { "Details" } else { "Members" }}
                </button>
            </header>
            {move || error.get().map(|e| view! { <p class="error-banner" role="alert">{e}</p> })}
            <MessageList channel_id divider_after />
            <TypingLine channel_id />
            <Composer channel_id />
        </section>
        <Show when=move || show_members.get()>
            <MembersPanel channel_id />
        </Show>
    }
}

#[component]
fn MessageList(channel_id: i64, divider_after: Option<i64>) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let scroller = NodeRef::<html::Div>::new();
    let at_bottom = RwSignal::new(true);
    let loading_older = RwSignal::new(false);
    let seqs = move || {
        chat.logs.with(|logs| {
            logs.get(&channel_id)
                .map(|l| l.messages.keys().copied().collect::<Vec<_>>())
                .unwrap_or_default()
        })
    };
    let pending = move || {
        chat.logs.with(|logs| {
            logs.get(&channel_id)
                .map(|l| l.pending.clone())
                .unwrap_or_default()
        })
    };
    let newest = move || {
        chat.logs.with(|logs| {
            logs.get(&channel_id)
                .and_then(|l| l.messages.last_key_value().map(|(_, m)| m.clone()))
        })
    };
    let loaded = move || {
        chat.logs
            .with(|logs| logs.get(&channel_id).is_some_and(|l| l.loaded))
    };

    let scroll_to_bottom = move || {
        request_animation_frame(move || {
            if let Some(el) = scroller.get_untracked() {
                el.set_scroll_top(el.scroll_height());
            }
        });
    };
    // New messages (or pending ones) keep the view pinned to the bottom if it was there.
    Effect::new(move |_| {
        let _ = (seqs().last().copied(), pending().len());
        if at_bottom.get_untracked() {
            scroll_to_bottom();
        }
    });

    // Read while the channel is open, the tab visible and the bottom in view.
    let marking = StoredValue::new(0i64);
    Effect::new(move |_| {
        let Some(row) = chat.summary(channel_id) else {
            return;
        };
        let visible = chat.activity.get() == crate::realtime::protocol::ActivityState::Active;
        if at_bottom.get()
            && visible
            && row.last_seq > row.last_read_seq
            && marking.get_value() < row.last_seq
        {
            let seq = row.last_seq;
            marking.set_value(seq);
            spawn_local(async move {
                if let Ok(pointer) = mark_read(channel_id, seq).await {
                    chat.set_my_pointer(channel_id, pointer.last_read_seq);
                }
            });
        }
    });

    let load_older = move || {
        if loading_older.get_untracked() {
            return;
        }
        let (oldest, has_older) = chat.logs.with_untracked(|logs| {
            logs.get(&channel_id)
                .map(|l| (l.messages.keys().next().copied(), l.has_older))
                .unwrap_or((None, false))
        });
        let (Some(oldest), true) = (oldest, has_older) else {
            return;
        };
        loading_older.set(true);
        let before_height = scroller.get_untracked().map_or(0, |el| el.scroll_height());
        spawn_local(async move {
            if let Ok(page) = list_messages(channel_id, Some(oldest), None, Some(PAGE)).await {
                chat.logs.update(|logs| {
                    let log = logs.entry(channel_id).or_default();
                    log.has_older = page.has_more;
                    log.merge(page.messages);
                });
                // Keep the message the reader was looking at in place.
                request_animation_frame(move || {
                    if let Some(el) = scroller.get_untracked() {
                        el.set_scroll_top(el.scroll_top() + el.scroll_height() - before_height);
                    }
                    loading_older.set(false);
                });
            } else {
                loading_older.set(false);
            }
        });
    };

    let on_scroll = move |_| {
        let Some(el) = scroller.get_untracked() else {
            return;
        };
        at_bottom.set(el.scroll_height() - el.scroll_top() - el.client_height() <= BOTTOM_SLACK);
        if el.scroll_top() < 80 {
            load_older();
        }
    };

    view! {
        <div class="messages" node_ref=scroller on:scroll=on_scroll tabindex="0"
            role="log" aria-live="polite" aria-relevant="additions" aria-label="Messages">
            <Show when=move || !loaded()>
                <p class="muted messages__status">"Loading messages…"</p>
            </Show>
            <Show when=move || loaded() && seqs().is_empty() && pending().is_empty()>
                <p class="muted messages__status">"No messages yet. Say hello!"</p>
            </Show>
            <Show when=move || loading_older.get()>
                <p class="muted messages__status">"Loading older messages…"</p>
            </Show>
            <For each=seqs key=|seq| *seq children=move |seq| view! {
                {divider_after.filter(|after| seq == after + 1).map(|_| view! {
                    <div class="divider" role="separator" data-testid="new-divider"><span>"New messages"</span></div>
                })}
                <MessageRow channel_id seq />
            } />
            {move || newest().map(|m| view! { <SeenBy channel_id seq=m.seq sender_id=m.sender_id /> })}
            <For each=pending key=|p| (p.client_id.clone(), p.failed.clone()) children=move |p| view! {
                <PendingRow channel_id pending=p />
            } />
        </div>
    }
}

#[component]
fn MessageRow(channel_id: i64, seq: i64) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let me = chat.my_id();
    let message = move || {
        chat.logs.with(|logs| {
            logs.get(&channel_id)
                .and_then(|l| l.messages.get(&seq).cloned())
        })
    };
    let Some(first) = message() else {
        return ().into_any();
    };
    let mine = first.sender_id == me;
    let editing = RwSignal::new(false);
    let draft = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let message_id = first.id;

    let save = move || {
        let body = draft.get_untracked();
        if let Err(e) = MessageBody::parse(&body) {
            error.set(Some(e.to_string()));
            return;
        }
        spawn_local(async move {
            match edit_message(message_id, body).await {
                Ok(updated) => {
                    chat.logs.update(|logs| {
                        if let Some(log) = logs.get_mut(&channel_id) {
                            log.messages.insert(updated.seq, updated);
                        }
                    });
                    editing.set(false);
                    error.set(None);
                }
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };
    let remove = move || {
        spawn_local(async move {
            match delete_message(message_id).await {
                Ok(deleted) => chat.logs.update(|logs| {
                    if let Some(log) = logs.get_mut(&channel_id) {
                        log.messages.insert(deleted.seq, deleted);
                    }
                }),
                Err(e) => error.set(Some(e.to_string())),
            }
        });
    };

    view! {
        <article class=if mine { "message message--mine" } else { "message" } data-seq=seq.to_string()>
            <header class="message__meta">
                <span class="message__sender">{first.sender_name.clone()}</span>
                <time class="message__time">{move || chat.mounted.get().then(|| clock_time(first.created_at))}</time>
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
                    Some(_) if editing.get() => view! {
                        <div class="message__edit">
                            <label class="visually-hidden" for=format!("edit-{seq}")>"Edit message"</label>
                            <textarea id=format!("edit-{seq}") class="composer__input" prop:value=move || draft.get()
                                on:input=move |ev| draft.set(event_target_value(&ev))
                                on:keydown=move |ev| {
                                    if ev.key() == "Enter" && !ev.shift_key() { ev.prevent_default(); save(); }
                                    if ev.key() == "Escape" { editing.set(false); }
                                }></textarea>
                            <button class="button button--small" on:click=move |_| save()>"Save"</button>
                            <button class="button button--small button--quiet" on:click=move |_| editing.set(false)>"Cancel"</button>
                        </div>
                    }.into_any(),
                    Some(m) => view! { <MessageText body=m.body.unwrap_or_default() /> }.into_any(),
                    None => ().into_any(),
                }
            }}
            {move || error.get().map(|e| view! { <p class="field__error" role="alert">{e}</p> })}
            {mine.then(|| view! {
                <Show when=move || message().is_some_and(|m| m.deleted_at.is_none()) && !editing.get()>
                    <div class="message__actions">
                        <button class="link-button" on:click=move |_| {
                            draft.set(message().and_then(|m| m.body).unwrap_or_default());
                            editing.set(true);
                        }>"Edit"</button>
                        <button class="link-button" on:click=move |_| remove()>"Delete"</button>
                    </div>
                </Show>
            })}
        </article>
    }
    .into_any()
}

/// A body as text, with http(s) links as anchors; nothing is ever interpreted as HTML.
#[component]
fn MessageText(body: String) -> impl IntoView {
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
fn PendingRow(channel_id: i64, pending: PendingMessage) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let retry = {
        let pending = pending.clone();
        move |_| {
            let mut again = pending.clone();
            again.failed = None;
            chat.logs.update(|logs| {
                if let Some(p) = logs.get_mut(&channel_id).and_then(|log| {
                    log.pending
                        .iter_mut()
                        .find(|p| p.client_id == again.client_id)
                }) {
                    p.failed = None;
                }
            });
            deliver(chat, channel_id, again);
        }
    };
    let failed = pending.failed.clone();
    view! {
        <article class="message message--mine message--pending" data-pending=pending.client_id.clone()>
            <MessageText body=pending.body.clone() />
            {match failed {
                None => view! { <p class="message__status muted">"Sending…"</p> }.into_any(),
                Some(reason) => view! {
                    <p class="message__status message__status--failed" role="alert">
                        "Not sent: " {reason} " "
                        <button class="link-button" on:click=retry>"Retry"</button>
                    </p>
                }.into_any(),
            }}
        </article>
    }
}

#[component]
fn TypingLine(channel_id: i64) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let tick = RwSignal::new(0u64);
    // Expired indicators disappear even when no event arrives.
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
    let text = move || {
        tick.track();
        let now = now_ms();
        let me = chat.my_id();
        let typers: Vec<i64> = chat.typing.with(|t| {
            t.get(&channel_id)
                .map(|users| {
                    users
                        .iter()
                        .filter(|(u, exp)| **u != me && **exp > now)
                        .map(|(u, _)| *u)
                        .collect()
                })
                .unwrap_or_default()
        });
        let names: Vec<String> = chat.details.with(|d| {
            typers
                .iter()
                .map(|id| {
                    d.get(&channel_id)
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

#[component]
fn Composer(channel_id: i64) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let draft = RwSignal::new(String::new());
    let error = RwSignal::new(None::<String>);
    let last_typing = StoredValue::new(0i64);
    let submit = move || {
        let text = draft.get_untracked();
        match MessageBody::parse(&text) {
            Err(e) => error.set(Some(e.to_string())),
            Ok(body) => {
                error.set(None);
                draft.set(String::new());
                last_typing.set_value(0);
                let pending = PendingMessage {
                    client_id: new_client_id(),
                    body: body.as_str().to_owned(),
                    failed: None,
                };
                chat.logs.update(|logs| {
                    logs.entry(channel_id)
                        .or_default()
                        .pending
                        .push(pending.clone())
                });
                deliver(chat, channel_id, pending);
            }
        }
    };
    let on_input = move |ev| {
        draft.set(event_target_value(&ev));
        let now = now_ms();
        if now - last_typing.get_value() >= TYPING_EVERY_MS
            && !draft.get_untracked().trim().is_empty()
        {
            last_typing.set_value(now);
            chat.send(ClientEvent::Typing { channel_id });
        }
    };
    view! {
        <form class="composer" on:submit=move |ev| { ev.prevent_default(); submit(); }>
            <label class="visually-hidden" for="composer-input">"Message"</label>
            <textarea id="composer-input" class="composer__input" rows="2" placeholder="Write a message"
                aria-describedby="composer-error"
                prop:value=move || draft.get()
                on:input=on_input
                on:keydown=move |ev| {
                    if ev.key() == "Enter" && !ev.shift_key() && !ev.is_composing() {
                        ev.prevent_default();
                        submit();
                    }
                }></textarea>
            <button class="button" type="submit">"Send"</button>
            <p id="composer-error" class="field__error composer__error" role="alert">{move || error.get()}</p>
        </form>
    }
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
