//! The HTML shell, the router, and the chat screen's frame: sidebar, open channel, connection
//! banner, and activity (away) tracking.

pub mod format;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{A, Outlet, ParentRoute, Redirect, Route, Router, Routes};
use leptos_router::hooks::use_params_map;
use leptos_router::{SsrMode, path};

use crate::auth::api::me;
use crate::auth::pages::{LoginPage, SignupPage};
use crate::channels::api::list_channels;
use crate::channels::components::Sidebar;
use crate::error::ApiError;
use crate::messages::components::ChannelView;
use crate::realtime::client::{ChatClient, ConnectionStatus};
use crate::realtime::protocol::ActivityState;

/// Idle this long (ms) and presence turns to away.
const IDLE_AFTER_MS: i64 = 5 * 60 * 1000;

/// The document around the app, rendered on the server.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <meta name="color-scheme" content="light dark" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Effects run only in the browser once hydrated: the mark tells browser tests (and anyone
    // scripting the page) that it is interactive.
    Effect::new(|_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "");
        }
    });
    view! {
        <Stylesheet id="leptos" href="/pkg/dealnest-chat.css" />
        <Title text="DealNest Chat" />
        <Router>
            <Routes fallback=NotFound>
                <Route path=path!("/login") view=LoginPage />
                <Route path=path!("/signup") view=SignupPage />
                // Async so an anonymous visitor gets a real 302 before any HTML is streamed.
                <ParentRoute path=path!("") view=ChatPage ssr=SsrMode::Async>
                    <Route path=path!("") view=NoChannelOpen />
                    <Route path=path!("c/:id") view=OpenChannel />
                </ParentRoute>
            </Routes>
        </Router>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    view! {
        <main class="page page--narrow">
            <h1>"Page not found"</h1>
            <p>
                <A href="/">"Back to DealNest Chat"</A>
            </p>
        </main>
    }
}

/// The signed-in chat screen; anonymous visitors are sent to the log-in page.
#[component]
fn ChatPage() -> impl IntoView {
    let start = Resource::new(
        || (),
        |_| async {
            let user = me().await?;
            let channels = list_channels().await?;
            Ok::<_, ApiError>((user, channels))
        },
    );
    view! {
        <Suspense fallback=|| view! { <p class="muted page">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match start.await {
                    Err(ApiError::Unauthorized { .. }) => view! { <Redirect path="/login" /> }.into_any(),
                    Err(error) => view! { <main class="page"><ErrorBanner error /></main> }.into_any(),
                    Ok((user, channels)) => {
                        let chat = ChatClient::new(user, channels);
                        provide_context(chat);
                        view! { <ChatFrame chat /> }.into_any()
                    }
                }
            })}
        </Suspense>
    }
}

#[component]
fn ChatFrame(chat: ChatClient) -> impl IntoView {
    Effect::new(move |_| {
        chat.mounted.set(true);
        chat.connect();
    });
    track_activity(chat);
    // Reload the channel list when the socket says it is stale (reconnect, membership change).
    Effect::new(move |previous: Option<u64>| {
        let generation = chat.channels_stale.get();
        if previous.is_some() || generation > 0 {
            leptos::task::spawn_local(async move {
                if let Ok(list) = list_channels().await {
                    chat.channels.set(list);
                }
            });
        }
        generation
    });
    // Presence of DM partners for the sidebar dots. A memo, so new messages (which change the
    // channel list's previews) do not fetch presence again; only a new set of partners does.
    let peers = Memo::new(move |_| {
        chat.channels.with(|list| {
            list.iter()
                .filter_map(|c| c.peer.as_ref().map(|p| p.id))
                .collect::<Vec<i64>>()
        })
    });
    Effect::new(move |_| {
        let peers = peers.get();
        if !peers.is_empty() && chat.mounted.get() {
            leptos::task::spawn_local(async move {
                if let Ok(snapshot) = crate::presence::api::get_presence(peers).await {
                    chat.set_presence_snapshot(snapshot);
                }
            });
        }
    });
    view! {
        <ConnectionBanner chat />
        <div class="chat">
            <Sidebar />
            <Outlet />
        </div>
    }
}

/// Away when the tab is hidden or nobody touched it for a while; active again on any input.
fn track_activity(chat: ChatClient) {
    let last_input = StoredValue::new(crate::realtime::client::now_ms());
    let update = move || {
        let hidden = document().hidden();
        let idle = crate::realtime::client::now_ms() - last_input.get_value() > IDLE_AFTER_MS;
        chat.set_activity(if hidden || idle {
            ActivityState::Away
        } else {
            ActivityState::Active
        });
    };
    let touched = move || {
        last_input.set_value(crate::realtime::client::now_ms());
        if chat.activity.get_untracked() == ActivityState::Away && !document().hidden() {
            chat.set_activity(ActivityState::Active);
        }
    };
    Effect::new(move |_| {
        let handles = [
            window_event_listener(leptos::ev::keydown, move |_| touched()),
            window_event_listener(leptos::ev::pointerdown, move |_| touched()),
            window_event_listener(leptos::ev::focus, move |_| touched()),
        ];
        let visibility =
            leptos::prelude::window_event_listener_untyped("visibilitychange", move |_| update());
        let interval = set_interval_with_handle(update, std::time::Duration::from_secs(30)).ok();
        on_cleanup(move || {
            for handle in handles {
                handle.remove();
            }
            visibility.remove();
            if let Some(interval) = interval {
                interval.clear();
            }
        });
    });
}

#[component]
fn ConnectionBanner(chat: ChatClient) -> impl IntoView {
    view! {
        <div class="connection-banner" role="status" aria-live="polite" data-testid="connection-banner"
            data-status=move || chat.status.get().as_str()
            hidden=move || chat.status.get() != ConnectionStatus::Reconnecting>
            "Connection lost — reconnecting…"
        </div>
    }
}

#[component]
fn NoChannelOpen() -> impl IntoView {
    view! {
        <section class="channel channel--empty">
            <p class="muted">"Pick a conversation on the left, or start a new one."</p>
        </section>
    }
}

#[component]
fn OpenChannel() -> impl IntoView {
    let params = use_params_map();
    let channel_id = move || {
        params
            .read()
            .get("id")
            .and_then(|id| id.parse::<i64>().ok())
    };
    view! {
        {move || match channel_id() {
            Some(channel_id) => view! { <ChannelView channel_id /> }.into_any(),
            None => view! { <NoChannelOpen /> }.into_any(),
        }}
    }
}

/// A failure shown to the user in words.
#[component]
pub fn ErrorBanner(error: ApiError) -> impl IntoView {
    view! { <p class="error-banner" role="alert">{error.to_string()}</p> }
}
