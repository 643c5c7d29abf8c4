//! The browser's WebSocket: connects to `/ws` with the session cookie, feeds server events to
//! the [`ChatClient`], sends queued client events, and reconnects with exponential backoff and
//! jitter (the first event after reconnecting, `hello`, makes the client resume by seq).

use futures::{SinkExt, StreamExt};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message, WebSocketError};
use leptos::prelude::{GetValue, Set};

use super::client::{ChatClient, ConnectionStatus};
use super::protocol::{ClientEvent, ServerEvent, close_code};
use crate::error::ApiError;

const FIRST_RETRY_MS: f64 = 500.0;
const MAX_RETRY_MS: f64 = 15_000.0;

enum Traffic {
    Incoming(Option<Result<Message, gloo_net::websocket::WebSocketError>>),
    Outgoing(ClientEvent),
}

fn socket_url() -> Option<String> {
    let location = web_sys::window()?.location();
    let scheme = if location.protocol().ok()? == "https:" {
        "wss"
    } else {
        "ws"
    };
    Some(format!("{scheme}://{}/ws", location.host().ok()?))
}

fn go_to_sign_in() {
    if let Some(window) = web_sys::window() {
        let _ = window.location().assign("/login");
    }
}

/// Connects and stays connected for the life of the page.
pub async fn run(client: ChatClient) {
    let mut failures: i32 = 0;
    loop {
        if let Some(url) = socket_url()
            && let Ok(socket) = WebSocket::open(&url)
        {
            let (mut sink, stream) = socket.split();
            let (outbox, queued) = futures::channel::mpsc::unbounded::<ClientEvent>();
            client.set_outbox(Some(outbox));
            let incoming = stream.map(|frame| Traffic::Incoming(Some(frame)));
            let outgoing = queued.map(Traffic::Outgoing);
            let mut traffic = futures::stream::select(
                incoming.chain(futures::stream::once(futures::future::ready(
                    Traffic::Incoming(None),
                ))),
                outgoing,
            );
            while let Some(item) = traffic.next().await {
                match item {
                    Traffic::Incoming(Some(Ok(Message::Text(text)))) => {
                        match serde_json::from_str::<ServerEvent>(&text) {
                            Ok(event) => {
                                if matches!(event, ServerEvent::Hello { .. }) {
                                    failures = 0;
                                }
                                client.apply(event);
                            }
                            Err(error) => {
                                leptos::logging::warn!("unreadable server event: {error}")
                            }
                        }
                    }
                    Traffic::Incoming(Some(Ok(Message::Bytes(_)))) => {}
                    Traffic::Incoming(Some(Err(WebSocketError::ConnectionClose(close))))
                        if close.code == close_code::SIGNED_OUT =>
                    {
                        // This session was signed out: reconnecting would be refused. When
                        // another tab did it, go to the sign-in page; when this one did, it
                        // is navigating already (a second navigation could cancel the first).
                        client.set_outbox(None);
                        if !client.signing_out.get_value() {
                            go_to_sign_in();
                        }
                        return;
                    }
                    Traffic::Incoming(Some(Err(_)) | None) => break,
                    Traffic::Outgoing(event) => {
                        let Ok(text) = serde_json::to_string(&event) else {
                            continue;
                        };
                        if sink.send(Message::Text(text)).await.is_err() {
                            break;
                        }
                    }
                }
            }
            client.set_outbox(None);
        }
        client.status.set(ConnectionStatus::Reconnecting);
        failures = failures.saturating_add(1);
        // A browser does not say why an upgrade failed. After a failed attempt, ask whether
        // the session still exists: if not (it expired, or was signed out while this page was
        // offline), retrying is pointless.
        if failures > 1
            && let Err(ApiError::Unauthorized { .. }) = crate::auth::api::me().await
        {
            go_to_sign_in();
            return;
        }
        let backoff = (FIRST_RETRY_MS * 2f64.powi(failures - 1)).min(MAX_RETRY_MS);
        // Full jitter between half and all of the backoff spreads a crowd of reconnecting tabs.
        let delay = backoff * (0.5 + js_sys::Math::random() * 0.5);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        gloo_timers::future::TimeoutFuture::new(delay as u32).await;
    }
}
