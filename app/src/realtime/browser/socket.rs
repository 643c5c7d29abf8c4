//! The browser's WebSocket: connects to `/ws` with the session cookie, reports server events
//! (and what happens to the connection) to the state as [`SocketNews`], sends the client
//! events the state queues, and reconnects with exponential backoff and jitter (the first
//! event after reconnecting, `hello`, makes the state resume by seq). It never touches the
//! state itself: the two talk over channels, so neither file imports the other's internals.
//!
//! A connection can die without either end being told (Wi-Fi drops, a laptop sleeps, a proxy
//! forgets the flow): the socket then still looks open. So the client pings every
//! [`PING_EVERY_MS`] and gives the connection up when nothing at all has arrived
//! [`PONG_WITHIN_MS`] after a ping; it also drops the socket as soon as the browser says it
//! went offline, and reconnects at once when it says it is back online.

use futures::channel::mpsc::{TryRecvError, UnboundedReceiver, UnboundedSender};
use futures::{FutureExt, SinkExt, StreamExt};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message, WebSocketError};

use super::SocketNews;
use crate::clock::now_ms;
use crate::error::ApiError;
use crate::realtime::protocol::{ClientEvent, ServerEvent, close_code};

const FIRST_RETRY_MS: f64 = 500.0;
/// A server that is draining (close 1012) closes its sockets spread over its drain window; each
/// client waits a further random time up to this before reconnecting, so the clients of a
/// drained node do not land on the others all in the same second.
const RESTART_SPREAD_MS: f64 = 5_000.0;
const MAX_RETRY_MS: f64 = 15_000.0;
/// How often the client checks the connection's pulse.
const TICK_MS: u32 = 1_000;
/// A ping goes out when the last one is this old (docs/PROTOCOL.md, "Liveness").
pub const PING_EVERY_MS: i64 = 10_000;
/// A connection that stays silent this long after a ping is dead.
pub const PONG_WITHIN_MS: i64 = 5_000;
/// An upgrade that has not produced `hello` by then is given up (a server that accepts the
/// TCP connection but never answers would otherwise hold the page for minutes).
pub const HELLO_WITHIN_MS: i64 = 10_000;

/// What the browser says about the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Network {
    Offline,
    Online,
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

fn browser_online() -> bool {
    web_sys::window().is_none_or(|w| w.navigator().on_line())
}

/// The browser's `online`/`offline` events, as a stream for the life of the page. Bounded: a
/// flapping network drops the surplus, and the newest state is what matters anyway.
fn network_changes() -> futures::channel::mpsc::Receiver<Network> {
    let (sender, receiver) = futures::channel::mpsc::channel::<Network>(4);
    for (name, change) in [("offline", Network::Offline), ("online", Network::Online)] {
        // `try_send` needs `&mut`; the listener is a `Fn`, so each call sends through a clone.
        let sender = sender.clone();
        // Kept for the life of the page, like the socket task itself.
        std::mem::forget(leptos::prelude::window_event_listener_untyped(
            name,
            move |_| {
                let _ = sender.clone().try_send(change);
            },
        ));
    }
    receiver
}

/// How one connection ended.
enum Ended {
    /// Lost, refused or found dead: reconnect.
    Lost,
    /// The server is restarting (close 1012): reconnect after a random wait.
    Restarting,
    /// This session was signed out: never reconnect.
    SignedOut,
    /// The chat screen is gone (signed out in this tab): nothing left to serve.
    Closed,
}

/// Connects and stays connected for as long as the state listens: `news` carries what happens
/// to it, `frames` what to send.
pub async fn run(news: UnboundedSender<SocketNews>, mut frames: UnboundedReceiver<ClientEvent>) {
    let mut network = network_changes();
    let mut failures: i32 = 0;
    let mut restarting = false;
    loop {
        if browser_online()
            && let Some(url) = socket_url()
            && let Ok(socket) = WebSocket::open(&url)
        {
            match serve(&news, &mut frames, socket, &mut network, &mut failures).await {
                Ended::SignedOut | Ended::Closed => return,
                Ended::Lost => {}
                Ended::Restarting => restarting = true,
            }
        }
        if news.unbounded_send(SocketNews::Reconnecting).is_err() {
            return;
        }
        let delay = if std::mem::take(&mut restarting) {
            js_sys::Math::random() * RESTART_SPREAD_MS
        } else {
            failures = failures.saturating_add(1);
            reconnect_backoff(failures)
        };
        // A browser does not say why an upgrade failed. After a failed attempt, ask whether
        // the session still exists: if not (it expired, or was signed out while this page was
        // offline), retrying is pointless.
        if failures > 1
            && browser_online()
            && let Err(ApiError::Unauthorized { .. }) = crate::auth::api::me().await
        {
            let _ = news.unbounded_send(SocketNews::SessionGone);
            return;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let mut wait = gloo_timers::future::TimeoutFuture::new(delay as u32).fuse();
        // Back online cuts the wait short; offline makes it last until then (or the timer,
        // in case the browser's events are not to be trusted).
        loop {
            futures::select! {
                () = wait => break,
                change = network.next() => if change == Some(Network::Online) {
                    failures = 0;
                    break;
                },
            }
        }
    }
}

/// The wait before reconnecting after `failures` failed attempts in a row: exponential, with
/// jitter between half and all of it, which spreads a crowd of reconnecting tabs.
fn reconnect_backoff(failures: i32) -> f64 {
    let backoff = (FIRST_RETRY_MS * 2f64.powi(failures - 1)).min(MAX_RETRY_MS);
    backoff * (0.5 + js_sys::Math::random() * 0.5)
}

/// Serves one open socket until it closes, dies, or the browser goes offline.
async fn serve(
    news: &UnboundedSender<SocketNews>,
    frames: &mut UnboundedReceiver<ClientEvent>,
    socket: WebSocket,
    network: &mut futures::channel::mpsc::Receiver<Network>,
    failures: &mut i32,
) -> Ended {
    let (mut sink, stream) = socket.split();
    let mut incoming = stream.fuse();
    // Frames queued while there was no connection are stale (the state re-derives what it
    // needs after `hello`): they are dropped, as if sent into the void.
    loop {
        match frames.try_recv() {
            Ok(_) => {}
            Err(TryRecvError::Closed) => return Ended::Closed,
            Err(TryRecvError::Empty) => break,
        }
    }
    let mut ticks = gloo_timers::future::IntervalStream::new(TICK_MS).fuse();
    let opened_at = now_ms();
    let mut greeted = false;
    let mut last_ping_at = opened_at;
    // When the ping nothing has answered yet went out.
    let mut unanswered_since: Option<i64> = None;
    let mut pings: u64 = 0;
    let ended = loop {
        // Biased: frames that already arrived are read before the pulse is judged.
        futures::select_biased! {
            frame = incoming.next() => {
                // Anything at all from the server proves the connection alive.
                unanswered_since = None;
                match frame {
                    Some(Ok(Message::Text(text))) => match serde_json::from_str::<ServerEvent>(&text) {
                        Ok(event) => {
                            if matches!(event, ServerEvent::Hello { .. }) {
                                *failures = 0;
                                greeted = true;
                            }
                            if news.unbounded_send(SocketNews::Event(event)).is_err() {
                                break Ended::Closed;
                            }
                        }
                        Err(error) => leptos::logging::warn!("unreadable server event: {error}"),
                    },
                    Some(Ok(Message::Bytes(_))) => {}
                    Some(Err(WebSocketError::ConnectionClose(close)))
                        if close.code == close_code::SIGNED_OUT =>
                    {
                        // This session was signed out: reconnecting would be refused. The
                        // state decides whether the page goes to the sign-in page.
                        let _ = news.unbounded_send(SocketNews::SignedOut);
                        return Ended::SignedOut;
                    }
                    Some(Err(WebSocketError::ConnectionClose(close)))
                        if close.code == close_code::RESTARTING =>
                    {
                        break Ended::Restarting;
                    }
                    Some(Err(_)) | None => break Ended::Lost,
                }
            }
            event = frames.next() => {
                let Some(event) = event else { break Ended::Closed };
                let Ok(text) = serde_json::to_string(&event) else { continue };
                if sink.send(Message::Text(text)).await.is_err() {
                    break Ended::Lost;
                }
            }
            _ = ticks.next() => {
                if news.is_closed() {
                    break Ended::Closed;
                }
                let now = now_ms();
                if !greeted {
                    if now - opened_at > HELLO_WITHIN_MS {
                        break Ended::Lost;
                    }
                    continue;
                }
                if unanswered_since.is_some_and(|since| now - since > PONG_WITHIN_MS) {
                    leptos::logging::log!("no answer to a ping: reconnecting");
                    break Ended::Lost;
                }
                if unanswered_since.is_none() && now - last_ping_at >= PING_EVERY_MS {
                    pings += 1;
                    let ping = ClientEvent::Ping { nonce: Some(pings.to_string()) };
                    let Ok(text) = serde_json::to_string(&ping) else { continue };
                    if sink.send(Message::Text(text)).await.is_err() {
                        break Ended::Lost;
                    }
                    last_ping_at = now;
                    unanswered_since = Some(now);
                }
                // Sends that found no connection go again while this one looks healthy.
                let _ = news.unbounded_send(SocketNews::Pulse);
            }
            change = network.next() => if change == Some(Network::Offline) {
                break Ended::Lost;
            },
        }
    };
    // Closing says goodbye when the server can still hear it; dropping frees the socket.
    let _ = sink.close().await;
    ended
}
