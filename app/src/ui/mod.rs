//! The HTML shell, the router, and the chat screen's frame: sidebar, open channel, connection
//! banner, and activity (away) tracking.

pub mod dialog;
pub mod format;

use leptos::prelude::*;
use leptos_meta::{HashedStylesheet, MetaTags, Title, provide_meta_context};
use leptos_router::components::{A, Outlet, ParentRoute, Redirect, Route, Router, Routes};
use leptos_router::hooks::{use_navigate, use_params_map};
use leptos_router::{SsrMode, path};

use crate::auth::api::me;
use crate::auth::pages::{LoginPage, SignupPage};
use crate::channels::api::list_channels;
use crate::channels::components::{Sidebar, current_channel};
use crate::error::ApiError;
use crate::messages::components::ChannelView;
use crate::realtime::browser::{ChatClient, ConnectionStatus};
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
                <meta name="theme-color" content="#2457d6" />
                <link rel="icon" href="/favicon.ico" sizes="32x32" />
                <link rel="icon" href="/favicon.svg" type="image/svg+xml" />
                <link rel="apple-touch-icon" href="/icon-192.png" />
                <link rel="manifest" href="/manifest.webmanifest" />
                <AutoReload options=options.clone() />
                <HashedStylesheet options=options.clone() id="leptos" />
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
        chat.mark_mounted();
        chat.connect();
    });
    track_activity(chat);
    chat.keep_outbox();
    // Reload the channel list when the socket says it is stale (reconnect, membership change).
    // Only the answer to the latest request counts: an older one may predate what this page
    // already knows (a channel just created, a read just marked).
    Effect::new(move |previous: Option<u64>| {
        let generation = chat.channels_generation();
        if previous.is_some() || generation > 0 {
            leptos::task::spawn_local(async move {
                if let Ok(list) = list_channels().await
                    && chat.channels_generation_untracked() == Some(generation)
                {
                    chat.replace_channel_list(list);
                }
            });
        }
        generation
    });
    // Presence of DM partners for the sidebar dots. A memo, so new messages (which change the
    // channel list's previews) do not fetch presence again; only a new set of partners does.
    let peers = Memo::new(move |_| {
        chat.with_channels(|list| {
            list.iter()
                .filter_map(|c| c.peer.as_ref().map(|p| p.id))
                .collect::<Vec<i64>>()
        })
    });
    Effect::new(move |_| {
        let peers = peers.get();
        if !peers.is_empty() && chat.mounted() {
            leptos::task::spawn_local(async move {
                if let Ok(snapshot) = crate::presence::api::get_presence(peers).await {
                    chat.set_presence_snapshot(snapshot);
                }
            });
        }
    });
    let open_channel = current_channel();
    // The unread total in the tab title, kept by an effect (so only in the browser): a reactive
    // `<Title>` would be read on the server after the page's reactive owner is gone.
    Effect::new(move |_| {
        let total =
            chat.with_channels(|list| list.iter().map(|c| c.unread_count.max(0)).sum::<i64>());
        document().set_title(&match total {
            0 => "DealNest Chat".to_owned(),
            n => format!("({n}) DealNest Chat"),
        });
    });
    view! {
        <a class="skip-link" href="#main">"Skip to conversation"</a>
        <ConnectionBanner chat />
        <Notice chat />
        // On a phone one pane shows at a time: the list, or the open conversation.
        <div class=move || if open_channel.get().is_some() { "chat chat--open" } else { "chat" }>
            <Sidebar />
            <main id="main" class="chat__main" tabindex="-1">
                <Outlet />
            </main>
        </div>
    }
}

/// A passing notice, such as "You left Deal room.", until dismissed.
#[component]
fn Notice(chat: ChatClient) -> impl IntoView {
    view! {
        <div class="notice" role="status" data-testid="notice" hidden=move || chat.notice().is_none()>
            <span>{move || chat.notice()}</span>
            <button class="button button--small button--quiet" aria-label="Dismiss notice"
                on:click=move |_| chat.dismiss_notice()>"Dismiss"</button>
        </div>
    }
}

/// Away when the tab is hidden or nobody touched it for a while; active again on any input.
fn track_activity(chat: ChatClient) {
    let last_input = StoredValue::new(crate::clock::now_ms());
    let update = move || {
        let hidden = document().hidden();
        let idle = crate::clock::now_ms() - last_input.get_value() > IDLE_AFTER_MS;
        chat.set_activity(if hidden || idle {
            ActivityState::Away
        } else {
            ActivityState::Active
        });
    };
    let touched = move || {
        last_input.set_value(crate::clock::now_ms());
        if chat.activity_untracked() == ActivityState::Away && !document().hidden() {
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
            data-status=move || chat.status().as_str()
            hidden=move || chat.status() != ConnectionStatus::Reconnecting>
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

/// `/c/{id}`: the channel if I am a member; otherwise a page saying it cannot be shown. When I
/// leave or am removed while it is open, the page goes home, where a notice says why.
#[component]
fn OpenChannel() -> impl IntoView {
    let chat = expect_context::<ChatClient>();
    let params = use_params_map();
    let navigate = use_navigate();
    let channel_id = Memo::new(move |_| {
        params
            .read()
            .get("id")
            .and_then(|id| id.parse::<i64>().ok())
    });
    let member = Memo::new(move |_| channel_id.get().is_some_and(|id| chat.is_member(id)));
    Effect::new(move |previous: Option<(Option<i64>, bool)>| {
        let now = (channel_id.get(), member.get());
        if let Some((id, true)) = previous
            && now == (id, false)
        {
            navigate("/", Default::default());
        }
        now
    });
    view! {
        {move || match (channel_id.get(), member.get()) {
            (Some(channel_id), true) => view! { <ChannelView channel_id /> }.into_any(),
            _ => view! { <ChannelMissing /> }.into_any(),
        }}
    }
}

#[component]
fn ChannelMissing() -> impl IntoView {
    view! {
        <section class="channel channel--empty" data-testid="channel-missing">
            <h1>"Conversation not found"</h1>
            <p class="muted">"It does not exist, or you are not a member of it."</p>
            <p><A href="/">"Back to your conversations"</A></p>
        </section>
    }
}

/// A failure shown to the user in words.
#[component]
pub fn ErrorBanner(error: ApiError) -> impl IntoView {
    view! { <p class="error-banner" role="alert">{error.to_string()}</p> }
}
