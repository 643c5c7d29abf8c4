//! Channel list (sidebar), creating channels and DMs, and the members panel.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_location, use_navigate};

use super::api::{add_member, create_channel, open_direct, remove_member};
use super::{ChannelDetail, ChannelKind, ChannelSummary, MemberRole};
use crate::auth::PublicUser;
use crate::auth::api::{logout, search_users};
use crate::error::ApiError;
use crate::presence::components::{PresenceDot, presence_text};
use crate::realtime::browser::ChatClient;
use crate::ui::dialog::ConfirmDialog;
use crate::ui::format::clock_time;

/// The channel id in the current URL (`/c/{id}`).
pub fn current_channel() -> Signal<Option<i64>> {
    let location = use_location();
    Signal::derive(move || {
        location
            .pathname
            .get()
            .strip_prefix("/c/")
            .and_then(|id| id.parse().ok())
    })
}

#[component]
pub fn Sidebar() -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let dialog = RwSignal::new(None::<Dialog>);
    let navigate = use_navigate();
    let sign_out = Action::new(move |_: &()| {
        chat.begin_sign_out();
        logout()
    });
    Effect::new(move |_| match sign_out.value().get() {
        Some(Ok(())) => navigate("/login", Default::default()),
        Some(Err(_)) => chat.sign_out_failed(),
        None => {}
    });
    let ids = move || chat.with_channels(|list| list.iter().map(|c| c.id).collect::<Vec<_>>());
    let me = chat.me();

    view! {
        <nav class="sidebar" aria-label="Channels">
            <div class="sidebar__top">
                <span class="brand">"DealNest Chat"</span>
                <div class="sidebar__actions">
                    <button class="button button--small" on:click=move |_| dialog.set(Some(Dialog::NewChannel))>
                        "New channel"
                    </button>
                    <button class="button button--small button--quiet" on:click=move |_| dialog.set(Some(Dialog::NewDirect))>
                        "New message"
                    </button>
                </div>
            </div>
            <ul class="channel-list">
                <For each=ids key=|id| *id children=move |id| view! { <ChannelRow id /> } />
            </ul>
            <Show when=move || chat.with_channels(<[_]>::is_empty)>
                <p class="muted sidebar__empty">"No conversations yet. Start one above."</p>
            </Show>
            <div class="sidebar__me">
                <PresenceDot user_id=me.id />
                <span data-testid="current-user">{me.display_name.clone()}</span>
                <button class="button button--small button--quiet" on:click=move |_| { sign_out.dispatch(()); }>
                    "Log out"
                </button>
            </div>
        </nav>
        {move || dialog.get().map(|kind| view! { <StartDialog kind close=move || dialog.set(None) /> })}
    }
    .into_any()
}

#[component]
fn ChannelRow(id: i64) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let current = current_channel();
    let row = move || chat.summary(id);
    let peer = chat
        .summary_untracked(id)
        .and_then(|c| c.peer)
        .map(|p| p.id);
    let me = chat.my_id();
    let unread = move || row().map_or(0, |c| c.unread_count);
    let preview = move || {
        row().and_then(|c| c.last_message).map(|last| {
            let who = if last.sender_id == me {
                "You".to_owned()
            } else {
                last.sender_name
            };
            match last.body {
                Some(body) => format!("{who}: {body}"),
                None => format!("{who}: message deleted"),
            }
        })
    };
    let time = move || {
        let created = row().and_then(|c| c.last_message).map(|m| m.created_at)?;
        chat.mounted().then(|| clock_time(created))
    };
    view! {
        <li>
            <A
                href=format!("/c/{id}")
                attr:class=move || if current.get() == Some(id) { "channel-link channel-link--open" } else { "channel-link" }
                attr:data-channel=id.to_string()
            >
                <span class="channel-link__title">
                    {peer.map(|user_id| view! { <PresenceDot user_id /> })}
                    <span>{move || row().map(|c| c.title).unwrap_or_default()}</span>
                </span>
                <span class="channel-link__meta">
                    <span class="channel-link__time">{time}</span>
                    {move || (unread() > 0).then(|| view! {
                        <span class="badge" data-testid="unread" aria-label=format!("{} unread", unread())>{unread()}</span>
                    })}
                </span>
                <span class="channel-link__preview">{preview}</span>
            </A>
        </li>
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialog {
    NewChannel,
    NewDirect,
}

/// Search for users by name; `pick` gets the chosen one. An ARIA 1.2 combobox: typing
/// searches, ↓/↑ move through the results, Enter picks, Esc clears.
#[component]
fn UserPicker(
    #[prop(into)] label: String,
    pick: impl Fn(PublicUser) + Send + Sync + 'static,
    #[prop(into)] exclude: Signal<Vec<i64>>,
) -> impl IntoView {
    let query = RwSignal::new(String::new());
    let active = RwSignal::new(0usize);
    let results = Resource::new(
        move || query.get(),
        |query| async move {
            if query.trim().is_empty() {
                Ok(Vec::new())
            } else {
                search_users(query, Some(8)).await
            }
        },
    );
    // Ids unique per picker: two can be on screen at once (members panel and a dialog).
    let id_base = format!(
        "picker-{}",
        label
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join("-")
    );
    let listbox_id = format!("{id_base}-list");
    let options = move || -> Vec<PublicUser> {
        let excluded = exclude.get();
        results
            .get()
            .and_then(Result::ok)
            .unwrap_or_default()
            .into_iter()
            .filter(|u| !excluded.contains(&u.id))
            .collect()
    };
    let error = move || results.get().and_then(Result::err);
    let pick = std::sync::Arc::new(pick);
    let choose = {
        let pick = pick.clone();
        move |user: PublicUser| {
            pick(user);
            query.set(String::new());
            active.set(0);
        }
    };
    let on_keydown = {
        let choose = choose.clone();
        move |ev: leptos::ev::KeyboardEvent| {
            let count = options().len();
            match ev.key().as_str() {
                "ArrowDown" if count > 0 => {
                    ev.prevent_default();
                    active.update(|i| *i = (*i + 1) % count);
                }
                "ArrowUp" if count > 0 => {
                    ev.prevent_default();
                    active.update(|i| *i = (*i + count - 1) % count);
                }
                "Enter" if count > 0 => {
                    ev.prevent_default();
                    if let Some(user) = options().into_iter().nth(active.get_untracked()) {
                        choose(user);
                    }
                }
                "Escape" if !query.get_untracked().is_empty() => {
                    // Clears the search without also closing a dialog around it.
                    ev.stop_propagation();
                    ev.prevent_default();
                    query.set(String::new());
                }
                _ => {}
            }
        }
    };
    let option_id = {
        let id_base = id_base.clone();
        move |index: usize| format!("{id_base}-option-{index}")
    };
    let active_id = {
        let option_id = option_id.clone();
        move || (!options().is_empty()).then(|| option_id(active.get().min(options().len() - 1)))
    };
    let input_id = format!("{id_base}-input");
    view! {
        <div class="field picker-field">
            <label class="field__label" for=input_id.clone()>{label}</label>
            <input
                id=input_id
                class="field__input"
                type="text"
                role="combobox"
                autocomplete="off"
                aria-autocomplete="list"
                aria-controls=listbox_id.clone()
                aria-expanded=move || (!options().is_empty()).to_string()
                aria-activedescendant=active_id
                placeholder="Name or username"
                prop:value=move || query.get()
                on:input=move |ev| {
                    query.set(event_target_value(&ev));
                    active.set(0);
                }
                on:keydown=on_keydown
            />
            {move || error().map(|error| view! { <p class="field__error" role="alert">{error.to_string()}</p> })}
            <ul class="picker" role="listbox" id=listbox_id aria-label="Matching people"
                hidden=move || options().is_empty()>
                {move || {
                    let choose = choose.clone();
                    let option_id = option_id.clone();
                    options().into_iter().enumerate().map(|(index, user)| {
                        let choose = choose.clone();
                        let chosen = user.clone();
                        view! {
                            <li id=option_id(index) role="option" class="picker__option"
                                class:picker__option--active=move || active.get() == index
                                aria-selected=move || (active.get() == index).to_string()
                                // Keeps focus in the input while the pointer picks.
                                on:mousedown=|ev| ev.prevent_default()
                                on:click=move |_| choose(chosen.clone())>
                                <strong>{user.display_name.clone()}</strong>
                                <span class="muted">" @"{user.username.clone()}</span>
                            </li>
                        }
                    }).collect_view()
                }}
            </ul>
        </div>
    }
    .into_any()
}

#[component]
fn StartDialog(kind: Dialog, close: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let navigate = use_navigate();
    let name = RwSignal::new(String::new());
    let chosen = RwSignal::new(Vec::<PublicUser>::new());
    let error = RwSignal::new(None::<String>);
    let me = chat.my_id();
    let open = {
        let navigate = navigate.clone();
        move |detail: ChannelDetail| {
            chat.add_channel(ChannelSummary::from_detail(&detail, &chat.me()));
            close();
            navigate(&format!("/c/{}", detail.id), Default::default());
        }
    };
    let create = {
        let open = open.clone();
        Action::new(move |(name, ids): &(String, Vec<i64>)| {
            let open = open.clone();
            let (name, ids) = (name.clone(), ids.clone());
            async move {
                match create_channel(name, ids).await {
                    Ok(detail) => open(detail),
                    Err(e) => {
                        let _ = error.try_set(Some(e.to_string()));
                    }
                }
            }
        })
    };
    let direct = Action::new(move |user_id: &i64| {
        let open = open.clone();
        let user_id = *user_id;
        async move {
            match open_direct(user_id).await {
                Ok(detail) => open(detail),
                Err(e) => {
                    let _ = error.try_set(Some(e.to_string()));
                }
            }
        }
    });
    let exclude = Signal::derive(move || {
        let mut ids: Vec<i64> = chosen.with(|c| c.iter().map(|u| u.id).collect());
        ids.push(me);
        ids
    });
    let title = match kind {
        Dialog::NewChannel => "New channel",
        Dialog::NewDirect => "New message",
    };
    // A native modal dialog: the page behind is inert, Tab stays inside, Esc closes it, and
    // focus returns to the button that opened it. Keyboard users land in its first field.
    let dialog = NodeRef::<leptos::html::Dialog>::new();
    Effect::new(move |_| {
        use wasm_bindgen::JsCast;
        if let Some(el) = dialog.get() {
            if !el.open() {
                let _ = el.show_modal();
            }
            if let Some(input) = el
                .query_selector("input")
                .ok()
                .flatten()
                .and_then(|el| el.dyn_into::<web_sys::HtmlElement>().ok())
            {
                let _ = input.focus();
            }
        }
    });
    // Closing through the element lets the browser put focus back where it was.
    let dismiss = move || match dialog.get_untracked() {
        Some(el) => el.close(),
        None => close(),
    };
    view! {
        <dialog node_ref=dialog class="dialog" aria-label=title
            on:close=move |_| close()
            // Chrome stops closing a modal dialog on Esc after some interactions inside it (a
            // close-watcher anti-abuse rule), so Esc is handled here too; the picker marks an
            // Esc it used to clear its search as handled.
            on:keydown=move |ev| if ev.key() == "Escape" && !ev.default_prevented() {
                ev.prevent_default();
                dismiss();
            }
            // A click on the backdrop lands on the dialog element, outside its box.
            on:click=move |ev| {
                if let Some(el) = dialog.get_untracked() {
                    let rect = el.get_bounding_client_rect();
                    let (x, y) = (f64::from(ev.client_x()), f64::from(ev.client_y()));
                    let outside = x < rect.left() || x > rect.right() || y < rect.top() || y > rect.bottom();
                    // Keyboard "clicks" on buttons report 0,0; only real pointer positions count.
                    if outside && (x, y) != (0.0, 0.0) { dismiss() }
                }
            }>
            <h2>{title}</h2>
            {match kind {
                Dialog::NewChannel => view! {
                    <form class="form" on:submit=move |ev| {
                        ev.prevent_default();
                        let ids = chosen.with(|c| c.iter().map(|u| u.id).collect());
                        create.dispatch((name.get_untracked(), ids));
                    }>
                        <label class="field">
                            <span class="field__label">"Channel name"</span>
                            <input class="field__input" name="channel_name" prop:value=move || name.get()
                                on:input=move |ev| name.set(event_target_value(&ev)) />
                        </label>
                        <UserPicker label="Add people" exclude
                            pick=move |user| chosen.update(|c| c.push(user)) />
                        <ul class="chips" aria-label="Members to add">
                            {move || chosen.get().into_iter().map(|user| {
                                let id = user.id;
                                view! {
                                    <li class="chip">{user.display_name}
                                        <button type="button" aria-label="Remove" on:click=move |_| chosen.update(|c| c.retain(|u| u.id != id))>"×"</button>
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                        {move || error.get().map(|e| view! { <p class="error-banner" role="alert">{e}</p> })}
                        <div class="dialog__buttons">
                            <button class="button button--quiet" type="button" on:click=move |_| dismiss()>"Cancel"</button>
                            <button class="button" type="submit">"Create channel"</button>
                        </div>
                    </form>
                }.into_any(),
                Dialog::NewDirect => view! {
                    <div class="form">
                        <UserPicker label="To" exclude=Signal::derive(move || vec![me])
                            pick=move |user| { direct.dispatch(user.id); } />
                        {move || error.get().map(|e| view! { <p class="error-banner" role="alert">{e}</p> })}
                        <div class="dialog__buttons">
                            <button class="button button--quiet" type="button" on:click=move |_| dismiss()>"Cancel"</button>
                        </div>
                    </div>
                }.into_any(),
            }}
        </dialog>
    }
    .into_any()
}

/// Members with presence; the owner adds and removes, anyone leaves a group.
#[component]
pub fn MembersPanel(
    channel_id: i64,
    /// Hides the panel (its close button; on a phone it covers the conversation).
    close: impl Fn() + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let me = chat.my_id();
    let confirm_leave = RwSignal::new(false);
    let error = RwSignal::new(None::<String>);
    let detail = move || chat.with_detail(channel_id, |d| d.cloned());
    let is_group = move || detail().is_some_and(|d| d.kind == ChannelKind::Group);
    let i_own = move || {
        detail().is_some_and(|d| {
            d.members
                .iter()
                .any(|m| m.user.id == me && m.role == MemberRole::Owner)
        })
    };
    // Both membership changes answer with the updated channel, or an error to show.
    let show = move |result: Result<ChannelDetail, ApiError>| match result {
        Ok(updated) => chat.store_detail(updated),
        Err(e) => {
            let _ = error.try_set(Some(e.to_string()));
        }
    };
    let remove = Action::new(move |user_id: &i64| {
        let user_id = *user_id;
        async move { show(remove_member(channel_id, user_id).await) }
    });
    let add = Action::new(move |user_id: &i64| {
        let user_id = *user_id;
        async move { show(add_member(channel_id, user_id).await) }
    });
    // On success the channel is forgotten and the page goes home (`OpenChannel`); this
    // panel is gone by then, so only a failure touches its state.
    let leave = move || {
        leptos::task::spawn_local(async move {
            if let Err(e) = chat.leave(channel_id).await {
                let _ = error.try_set(Some(e.to_string()));
            }
        });
    };
    let member_ids = Signal::derive(move || {
        detail()
            .map(|d| d.members.iter().map(|m| m.user.id).collect())
            .unwrap_or_default()
    });
    view! {
        <aside class="members" id="members-panel" aria-label="Members">
            <div class="members__top">
                <h2 class="members__title">"Members"</h2>
                <button class="button button--small button--quiet" aria-label="Close members" on:click=move |_| close()>
                    "Close"
                </button>
            </div>
            <ul class="members__list">
                {move || detail().map(|d| d.members.into_iter().map(|member| {
                    let user_id = member.user.id;
                    let owner = member.role == MemberRole::Owner;
                    view! {
                        <li class="member" data-member=user_id.to_string()>
                            <PresenceDot user_id />
                            <span class="member__name">{member.user.display_name.clone()}
                                {owner.then_some(" (owner)")}</span>
                            <span class="member__status muted">{move || presence_text(chat, user_id)}</span>
                            {(user_id != me).then(|| view! {
                                <Show when=move || i_own() && is_group()>
                                    <button class="button button--small button--quiet"
                                        aria-label=format!("Remove {}", member.user.display_name)
                                        on:click=move |_| { remove.dispatch(user_id); }>"Remove"</button>
                                </Show>
                            })}
                        </li>
                    }
                }).collect_view())}
            </ul>
            <Show when=move || i_own() && is_group()>
                <UserPicker label="Add member" exclude=member_ids pick=move |user| { add.dispatch(user.id); } />
            </Show>
            {move || error.get().map(|e| view! { <p class="error-banner" role="alert">{e}</p> })}
            <Show when=is_group>
                <button class="button button--quiet members__leave" on:click=move |_| confirm_leave.set(true)>
                    "Leave channel"
                </button>
            </Show>
            <ConfirmDialog
                open=confirm_leave
                title="Leave this channel?"
                message="You will stop receiving its messages. A member can add you again."
                confirm_label="Leave"
                on_close=move || confirm_leave.set(false)
                on_confirm=leave />
        </aside>
    }
    .into_any()
}
