//! The scrolling window of a channel's messages.
//!
//! The window is one unbroken run of seqs. Scrolling near the top pages older messages in
//! (keeping the reader's place); scrolling near the bottom pages newer ones in while the window
//! ends before the channel's newest. The read pointer advances only to the newest message that
//! has been on screen while the tab was visible and active.

use leptos::html;
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::JsCast;

use super::row::{MessageRow, PendingRow};
use super::{ChannelViewState, PAGE, load_window};
use crate::messages::api::list_messages;
use crate::realtime::browser::ChatClient;
use crate::realtime::protocol::ActivityState;
use crate::receipts::api::mark_read;
use crate::receipts::components::SeenBy;

/// How close to the bottom (px) still counts as "at the bottom".
const BOTTOM_SLACK: i32 = 48;
/// How close to either end (px) pages more in.
const PAGE_IN_WITHIN: i32 = 200;
/// Scrolling is checked for newly seen messages at most this often (ms).
const READ_CHECK_MS: u64 = 150;

/// The seq of the newest message whose bottom edge has been inside the scroller (or that fills
/// it), or `None` when none is shown.
fn newest_seen_seq(scroller: &web_sys::HtmlDivElement) -> Option<i64> {
    let view = scroller.get_bounding_client_rect();
    let rows = scroller.query_selector_all("article[data-seq]").ok()?;
    let mut newest = None;
    for index in 0..rows.length() {
        let Some(row) = rows
            .item(index)
            .and_then(|node| node.dyn_into::<web_sys::Element>().ok())
        else {
            continue;
        };
        let rect = row.get_bounding_client_rect();
        let shown_whole = rect.top() >= view.top() - 1.0 && rect.bottom() <= view.bottom() + 1.0;
        let fills_view = rect.top() <= view.top() + 1.0 && rect.bottom() >= view.bottom() - 1.0;
        if (shown_whole || fills_view)
            && let Some(seq) = row
                .get_attribute("data-seq")
                .and_then(|s| s.parse::<i64>().ok())
        {
            newest = newest.max(Some(seq));
        }
    }
    newest
}

#[component]
pub fn MessageList() -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let view_state = expect_context::<ChannelViewState>();
    let channel_id = view_state.channel_id;
    let divider_after = view_state.divider_after;
    let scroller = NodeRef::<html::Div>::new();
    let at_bottom = RwSignal::new(true);
    let loading_older = RwSignal::new(false);
    let loading_newer = RwSignal::new(false);
    // The newest message seen on screen since the channel was opened.
    let seen = RwSignal::new(0i64);
    // Whether the "New messages" divider is scrolled out of view above.
    let divider_above = RwSignal::new(false);
    let positioned = StoredValue::new(false);
    let marked = StoredValue::new(0i64);
    let check_scheduled = StoredValue::new(false);

    let log_field = move |read: fn(&crate::realtime::browser::ChannelLog) -> bool| {
        chat.with_log(channel_id, |log| log.is_some_and(read))
    };
    let loaded = move || log_field(|l| l.loaded);
    let has_newer = move || log_field(|l| l.has_newer);
    let has_older = move || log_field(|l| l.has_older);
    // Nothing until the window is loaded: a lone live message held before that must not be
    // shown (and so marked read) ahead of the unread ones before it.
    let seqs = move || {
        chat.with_log(channel_id, |log| {
            log.filter(|l| l.loaded)
                .map(|l| l.messages.keys().copied().collect::<Vec<_>>())
                .unwrap_or_default()
        })
    };
    let pending = move || {
        chat.with_log(channel_id, |log| {
            log.map(|l| l.pending.clone()).unwrap_or_default()
        })
    };
    let newest = move || {
        chat.with_log(channel_id, |log| {
            log.and_then(|l| l.messages.last_key_value().map(|(_, m)| m.clone()))
        })
    };

    // Marks read what has been on screen; also keeps "seen" and the jump buttons current.
    let check_seen = move || {
        let Some(el) = scroller.try_get_untracked().flatten() else {
            return;
        };
        at_bottom.set(el.scroll_height() - el.scroll_top() - el.client_height() <= BOTTOM_SLACK);
        if let Some(after) = divider_after {
            let divider = el
                .query_selector("[data-testid=new-divider]")
                .ok()
                .flatten();
            let above = match divider {
                Some(divider) => {
                    divider.get_bounding_client_rect().bottom()
                        < el.get_bounding_client_rect().top()
                }
                // Not loaded: above the window if the window starts after it.
                None => chat.with_log_untracked(channel_id, |log| {
                    log.and_then(|l| l.oldest_seq())
                        .is_some_and(|oldest| oldest > after + 1)
                }),
            };
            divider_above.set(above);
        }
        let Some(newest_seen) = newest_seen_seq(&el) else {
            return;
        };
        // Never past a hole in what is held: what lies in it has not been seen.
        let held_through = chat.with_log_untracked(channel_id, |log| {
            log.filter(|l| l.loaded).map_or(0, |l| l.contiguous_end())
        });
        let newest_seen = newest_seen.min(held_through);
        if newest_seen > seen.get_untracked() {
            seen.set(newest_seen);
        }
        let reading = chat.activity_untracked() == ActivityState::Active && !document().hidden();
        let pointer = chat
            .summary_untracked(channel_id)
            .map_or(0, |c| c.last_read_seq);
        if reading && newest_seen > pointer && newest_seen > marked.get_value() {
            let before = marked.get_value();
            marked.set_value(newest_seen);
            spawn_local(async move {
                match mark_read(channel_id, newest_seen).await {
                    Ok(pointer) => chat.set_my_pointer(channel_id, pointer.last_read_seq),
                    // Not recorded: the next check tries again.
                    Err(_) => {
                        let _ = marked.try_update_value(|m| {
                            if *m == newest_seen {
                                *m = before;
                            }
                        });
                    }
                }
            });
        }
    };
    let schedule_check = move || {
        // Also returns when the list is gone (a timer or frame can outlive it).
        if check_scheduled.try_get_value() != Some(false) {
            return;
        }
        check_scheduled.set_value(true);
        set_timeout(
            move || {
                // The channel may have been closed meanwhile: then there is nothing to check.
                if check_scheduled.try_set_value(false).is_none() {
                    check_seen();
                }
            },
            std::time::Duration::from_millis(READ_CHECK_MS),
        );
    };

    let scroll_to_bottom = move || {
        at_bottom.set(true);
        request_animation_frame(move || {
            if let Some(el) = scroller.try_get_untracked().flatten() {
                el.set_scroll_top(el.scroll_height());
            }
            schedule_check();
        });
    };
    // First placement: at the first unread message if it is held, else at the bottom. Then new
    // messages (or pending ones) keep the view pinned to the bottom if it was there.
    Effect::new(move |_| {
        let _ = (newest().map(|m| m.seq), pending().len());
        if !loaded() {
            return;
        }
        if !positioned.get_value() {
            positioned.set_value(true);
            request_animation_frame(move || {
                let divider = scroller.get_untracked().and_then(|el| {
                    el.query_selector("[data-testid=new-divider]")
                        .ok()
                        .flatten()
                });
                match divider {
                    Some(divider) => divider.scroll_into_view_with_bool(true),
                    None => {
                        if let Some(el) = scroller.try_get_untracked().flatten() {
                            el.set_scroll_top(el.scroll_height());
                        }
                    }
                }
                schedule_check();
            });
        } else if at_bottom.get_untracked() && !has_newer() {
            scroll_to_bottom();
        } else {
            schedule_check();
        }
    });
    // After sending, the view follows to the newest, where the message appears.
    Effect::new(move |previous: Option<u64>| {
        let sent = view_state.sent.get();
        if previous.is_some_and(|p| p != sent) {
            scroll_to_bottom();
        }
        sent
    });
    // Coming back to the tab (or from idle) reads what is on screen.
    Effect::new(move |_| {
        if chat.activity() == ActivityState::Active {
            schedule_check();
        }
    });

    let load_older = move || {
        if loading_older.get_untracked() {
            return;
        }
        let (oldest, has_older) = chat.with_log_untracked(channel_id, |log| {
            log.map(|l| (l.oldest_seq(), l.has_older))
                .unwrap_or((None, false))
        });
        let (Some(oldest), true) = (oldest, has_older) else {
            return;
        };
        loading_older.set(true);
        let generation = chat.window_generation(channel_id);
        let before_height = scroller
            .try_get_untracked()
            .flatten()
            .map_or(0, |el| el.scroll_height());
        spawn_local(async move {
            if let Ok(page) = list_messages(channel_id, Some(oldest), None, Some(PAGE)).await {
                chat.prepend_older(channel_id, generation, page.messages);
                // Keep the message the reader was looking at in place.
                request_animation_frame(move || {
                    if let Some(el) = scroller.try_get_untracked().flatten() {
                        el.set_scroll_top(el.scroll_top() + el.scroll_height() - before_height);
                    }
                    let _ = loading_older.try_set(false);
                });
            } else {
                let _ = loading_older.try_set(false);
            }
        });
    };
    let load_newer = move || {
        if loading_newer.get_untracked()
            || !chat.with_log_untracked(channel_id, |l| l.is_some_and(|l| l.has_newer))
        {
            return;
        }
        let newest = chat.with_log_untracked(channel_id, |l| l.map_or(0, |l| l.newest_seq()));
        loading_newer.set(true);
        let generation = chat.window_generation(channel_id);
        spawn_local(async move {
            if let Ok(page) = list_messages(channel_id, None, Some(newest), Some(PAGE)).await {
                chat.append_newer(channel_id, generation, page.messages, page.has_more);
            }
            let _ = loading_newer.try_set(false);
        });
    };

    let on_scroll = move |_| {
        let Some(el) = scroller.try_get_untracked().flatten() else {
            return;
        };
        // At once, not with the throttled check: a page or message arriving next must know
        // whether to keep the view pinned to the bottom.
        at_bottom.set(el.scroll_height() - el.scroll_top() - el.client_height() <= BOTTOM_SLACK);
        if el.scroll_top() < PAGE_IN_WITHIN {
            load_older();
        }
        if el.scroll_height() - el.scroll_top() - el.client_height() < PAGE_IN_WITHIN {
            load_newer();
        }
        schedule_check();
    };

    let jump_to_first_unread = move |_| {
        let Some(after) = divider_after else {
            return;
        };
        let held = chat.with_log_untracked(channel_id, |log| {
            log.and_then(|l| l.oldest_seq())
                .is_some_and(|oldest| oldest <= after + 1)
        });
        if held {
            if let Some(divider) = scroller.get_untracked().and_then(|el| {
                el.query_selector("[data-testid=new-divider]")
                    .ok()
                    .flatten()
            }) {
                divider.scroll_into_view_with_bool(true);
            }
        } else {
            spawn_local(async move {
                load_window(chat, channel_id, Some(after + 1)).await;
                positioned.set_value(false);
            });
        }
    };
    let jump_to_latest = move |_| {
        if chat.with_log_untracked(channel_id, |l| l.is_some_and(|l| l.has_newer)) {
            spawn_local(async move {
                load_window(chat, channel_id, None).await;
                let _ = at_bottom.try_set(true);
                scroll_to_bottom();
            });
        } else {
            scroll_to_bottom();
        }
    };
    // Messages below anything seen on screen, held or not.
    let unseen_below = move || {
        chat.summary(channel_id)
            .map_or(0, |c| c.last_seq - seen.get().max(c.last_read_seq))
    };

    view! {
        <div class="messages-frame">
            <div class="messages" node_ref=scroller on:scroll=on_scroll tabindex="0"
                role="log" aria-live="off" aria-label="Messages">
                <Show when=move || !loaded()>
                    <p class="muted messages__status">"Loading messages…"</p>
                </Show>
                <Show when=move || loaded() && !has_older()>
                    <p class="messages__start" data-testid="conversation-start">
                        {move || {
                            let title = chat.summary(channel_id).map(|c| c.title).unwrap_or_default();
                            format!("This is the start of the conversation in {title}.")
                        }}
                    </p>
                </Show>
                <Show when=move || loaded() && seqs().is_empty() && pending().is_empty()>
                    <p class="muted messages__status">"No messages yet. Say hello!"</p>
                </Show>
                <Show when=move || loading_older.get()>
                    <p class="muted messages__status">"Loading older messages…"</p>
                </Show>
                <For each=seqs key=|seq| *seq children=move |seq| view! { <MessageRow seq /> } />
                <Show when=move || loading_newer.get()>
                    <p class="muted messages__status">"Loading newer messages…"</p>
                </Show>
                {move || newest().filter(|_| !has_newer()).map(|m| view! {
                    <SeenBy channel_id seq=m.seq sender_id=m.sender_id />
                })}
                <For each=pending key=|p| (p.client_id.clone(), p.state.clone()) children=move |p| view! {
                    <PendingRow channel_id pending=p />
                } />
            </div>
            <Show when=move || divider_above.get()>
                <button class="button button--small jump jump--top" data-testid="jump-first-unread" on:click=jump_to_first_unread>
                    "↑ Jump to first unread"
                </button>
            </Show>
            <div class="jumps">
                <Show when=move || loaded() && (has_newer() || !at_bottom.get())>
                    <button class="button button--small jump" data-testid="jump-latest" on:click=jump_to_latest>
                        {move || match unseen_below() {
                            n if n > 0 => format!("↓ Jump to latest ({n} new)"),
                            _ => "↓ Jump to latest".to_owned(),
                        }}
                    </button>
                </Show>
            </div>
        </div>
    }
    .into_any()
}
