//! Channel list (sidebar), creating channels and DMs, and the members panel.

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::{use_location, use_navigate};

use super::api::{add_member, create_channel, leave_channel, open_direct, remove_member};
use super::{ChannelDetail, ChannelKind, MemberRole};
use crate::auth::PublicUser;
use crate::auth::api::{logout, search_users};
use crate::error::ApiError;
use crate::presence::components::{PresenceDot, presence_text};
use crate::realtime::client::ChatClient;
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
        chat.signing_out.set_value(true);
        logout()
    });
    Effect::new(move |_| match sign_out.value().get() {
        Some(Ok(())) => navigate("/login", Default::default()),
        Some(Err(_)) => chat.signing_out.set_value(false),
        None => {}
    });
    let ids = move || {
        chat.channels
            .with(|list| list.iter().map(|c| c.id).collect::<Vec<_>>())
    };
    let me = chat.me.get_value();

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
            <Show when=move || chat.channels.with(Vec::is_empty)>
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
}

#[component]
fn ChannelRow(id: i64) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let current = current_channel();
    let row = move || chat.summary(id);
    let peer = row().and_then(|c| c.peer).map(|p| p.id);
    let unread = move || row().map_or(0, |c| c.unread_count);
    let preview = move || {
        row()
            .and_then(|c| c.last_message)
            .map(|last| match last.body {
                Some(body) => format!("{}: {body}", last.sender_name),
                None => format!("{}: message deleted", last.sender_name),
            })
    };
    let time = move || {
        let created = row().and_then(|c| c.last_message).map(|m| m.created_at)?;
        chat.mounted.get().then(|| clock_time(created))
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

/// Search for users by name; `pick` gets the chosen one.
#[component]
fn UserPicker(
    #[prop(into)] label: String,
    pick: impl Fn(PublicUser) + Send + Sync + 'static,
    #[prop(into)] exclude: Signal<Vec<i64>>,
) -> impl IntoView {
    let query = RwSignal::new(String::new());
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
    let pick = std::sync::Arc::new(pick);
    view! {
        <label class="field">
            <span class="field__label">{label}</span>
            <input
                class="field__input"
                type="search"
                placeholder="Name or username"
                prop:value=move || query.get()
                on:input=move |ev| query.set(event_target_value(&ev))
            />
        </label>
        <Transition fallback=|| ()>
            {move || {
                let pick = pick.clone();
                results.get().map(|found| match found {
                    Err(error) => view! { <p class="field__error" role="alert">{error.to_string()}</p> }.into_any(),
                    Ok(users) => {
                        let excluded = exclude.get();
                        view! {
                            <ul class="picker" role="listbox">
                                {users.into_iter().filter(|u| !excluded.contains(&u.id)).map(|user| {
                                    let pick = pick.clone();
                                    let chosen = user.clone();
                                    view! {
                                        <li>
                                            <button class="picker__option" type="button" on:click=move |_| pick(chosen.clone())>
                                                <strong>{user.display_name.clone()}</strong>
                                                <span class="muted">" @"{user.username.clone()}</span>
                                            </button>
                                        </li>
                                    }
                                }).collect_view()}
                            </ul>
                        }.into_any()
                    }
                })
            }}
        </Transition>
    }
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
        move |channel_id: i64| {
            chat.channels_stale.update(|n| *n += 1);
            close();
            navigate(&format!("/c/{channel_id}"), Default::default());
        }
    };
    let create = {
        let open = open.clone();
        Action::new(move |(name, ids): &(String, Vec<i64>)| {
            let open = open.clone();
            let (name, ids) = (name.clone(), ids.clone());
            async move {
                match create_channel(name, ids).await {
                    Ok(detail) => open(detail.id),
                    Err(e) => error.set(Some(e.to_string())),
                }
            }
        })
    };
    let direct = Action::new(move |user_id: &i64| {
        let open = open.clone();
        let user_id = *user_id;
        async move {
            match open_direct(user_id).await {
                Ok(detail) => open(detail.id),
                Err(e) => error.set(Some(e.to_string())),
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
    // Keyboard users land in the dialog's first field (`autofocus` works only once per page).
    Effect::new(move |_| {
        use wasm_bindgen::JsCast;
        if let Some(input) = document()
            .query_selector(".dialog input")
            .ok()
            .flatten()
            .and_then(|el| el.dyn_into::<web_sys::HtmlElement>().ok())
        {
            let _ = input.focus();
        }
    });
    view! {
        <div class="overlay" on:click=move |_| close()></div>
        <div class="dialog" role="dialog" aria-modal="true" aria-label=title
            on:keydown=move |ev| if ev.key() == "Escape" { close() }>
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
                            <button class="button button--quiet" type="button" on:click=move |_| close()>"Cancel"</button>
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
                            <button class="button button--quiet" type="button" on:click=move |_| close()>"Cancel"</button>
                        </div>
                    </div>
                }.into_any(),
            }}
        </div>
    }
}

/// Members with presence; the owner adds and removes, anyone leaves a group.
#[component]
pub fn MembersPanel(channel_id: i64) -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let navigate = use_navigate();
    let me = chat.my_id();
    let error = RwSignal::new(None::<String>);
    let detail = move || chat.details.with(|d| d.get(&channel_id).cloned());
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
        Ok(updated) => chat.details.update(|d| {
            d.insert(channel_id, updated);
        }),
        Err(e) => error.set(Some(e.to_string())),
    };
    let remove = Action::new(move |user_id: &i64| {
        let user_id = *user_id;
        async move { show(remove_member(channel_id, user_id).await) }
    });
    let add = Action::new(move |user_id: &i64| {
        let user_id = *user_id;
        async move { show(add_member(channel_id, user_id).await) }
    });
    let leave = Action::new(move |_: &()| {
        let navigate = navigate.clone();
        async move {
            match leave_channel(channel_id).await {
                Ok(()) => {
                    chat.channels
                        .update(|list| list.retain(|c| c.id != channel_id));
                    navigate("/", Default::default());
                }
                Err(e) => error.set(Some(e.to_string())),
            }
        }
    });
    let member_ids = Signal::derive(move || {
        detail()
            .map(|d| d.members.iter().map(|m| m.user.id).collect())
            .unwrap_or_default()
    });
    view! {
        <aside class="members" aria-label="Members">
            <h2 class="members__title">"Members"</h2>
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
                <button class="button button--quiet members__leave" on:click=move |_| { leave.dispatch(()); }>
                    "Leave channel"
                </button>
            </Show>
        </aside>
    }
}
