//! One WebSocket connection: a single task that writes queued events, reads client events,
//! replays missed messages on `resume` / `subscribe`, and keeps the heartbeat.
//!
//! Catch-up without gaps or duplicates: while a channel is being replayed from the database,
//! live events for that channel are held back. When the replay ends the client gets
//! `caught_up`, then the held-back events, skipping any `message_created` whose seq the replay
//! already sent. A message is published just after it is committed, so its live event can even
//! come after a replay that read it: per replayed channel the connection keeps the highest seq it
//! delivered and drops live `message_created` events at or below it.
//!
//! The same holds from the first moment: until the client's first `resume` / `subscribe` (or
//! [`RESUME_WAIT`]), message events are held back, so live messages sent while the client was
//! still saying what it has cannot arrive before, or twice with, their replay.

mod inbound;
mod outbound;
mod replay;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::WebSocket;
use tokio::sync::mpsc;

use crate::auth::server::AuthUser;
use crate::clock::now_ms;
use crate::realtime::protocol::{PROTOCOL_VERSION, ServerEvent, close_code};
use crate::realtime::server::fanout::{ConnId, Kick, Outbound, Registration};
use crate::server::{AppState, metrics, sleep_until_some};

pub use inbound::parse_client_event;
use inbound::{EVENT_BURST, TokenBucket};
use replay::{Replay, Replayed, recv_replayed};

/// How long a new connection holds back message events waiting for the first `resume`.
pub const RESUME_WAIT: Duration = Duration::from_millis(1500);
/// The least time a closing connection waits for its close frame to go out and be answered.
/// It waits a heartbeat interval when that is longer: a client that fell behind has megabytes
/// queued before the close frame and must read through them to learn why it was closed.
const MIN_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Why the loop ended, and how to close.
enum Stop {
    /// The peer closed or vanished: nothing more to send.
    Gone,
    Close(u16, &'static str),
}

impl Stop {
    /// The close code this end sends, if any.
    fn code(&self) -> Option<u16> {
        match self {
            Self::Gone => None,
            Self::Close(code, _) => Some(*code),
        }
    }
}

struct Connection {
    state: AppState,
    /// Fires when the hub found this connection's queue full, or its session was signed out.
    kick: Arc<Kick>,
    user: AuthUser,
    id: ConnId,
    socket: WebSocket,
    muted: HashSet<i64>,
    replays: HashMap<i64, Replay>,
    next_generation: u64,
    /// Where replay tasks report, while any run: created on demand and dropped when the last
    /// replay is done, so an idle connection does not keep a channel (about 1.5 KB).
    replay_tx: Option<mpsc::Sender<Replayed>>,
    /// The receiving end of a channel just created, for the connection loop to take.
    new_replay_rx: Option<mpsc::Receiver<Replayed>>,
    last_heard: Instant,
    budget: TokenBucket,
    /// Message events held back until the first `resume` / `subscribe` (`None` afterwards).
    before_resume: Option<Vec<Arc<Outbound>>>,
    /// Per replayed channel, the highest seq delivered on this connection.
    delivered_through: HashMap<i64, i64>,
    /// Writes only buffer frames; the burst being delivered flushes them at its end.
    coalescing: bool,
}

/// How a connection the hub told to go closes.
fn kicked(code: u16) -> Stop {
    if code == close_code::SIGNED_OUT {
        Stop::Close(code, "signed out: sign in again")
    } else {
        Stop::Close(close_code::LAGGING, "fell behind: reconnect and resume")
    }
}

/// Runs a registered connection to its end, then unregisters it.
pub async fn run(
    state: AppState,
    socket: WebSocket,
    user: AuthUser,
    mut registration: Registration,
) {
    let open = metrics::websocket_opened();
    let id = registration.id;
    let kick = registration.kick.clone();
    let rx = &mut registration.rx;
    let mut replay_rx: Option<mpsc::Receiver<Replayed>> = None;
    let mut conn = Connection {
        state,
        kick: kick.clone(),
        user,
        id,
        socket,
        muted: HashSet::new(),
        replays: HashMap::new(),
        next_generation: 0,
        replay_tx: None,
        new_replay_rx: None,
        last_heard: Instant::now(),
        budget: TokenBucket {
            tokens: EVENT_BURST,
            refilled_at: Instant::now(),
        },
        before_resume: Some(Vec::new()),
        delivered_through: HashMap::new(),
        coalescing: false,
    };
    let user_id = conn.user.id;
    // Handlers that run rarely are boxed: a future is as large as its largest await point, and
    // this one stays resident for every idle connection (3.4 KB unboxed, most of it for
    // handlers an idle connection never runs).
    let heartbeat = conn.state.config.heartbeat;
    let mut shutdown = conn.state.shutdown.watch();
    // Set when the drain starts: the moment, inside the drain window, this connection closes.
    let mut close_at = shutdown
        .borrow_and_update()
        .then(|| drain_close_at(conn.state.config.drain));

    let stop = async {
        Box::pin(conn.send_event(&ServerEvent::Hello {
            user_id,
            connection_id: id.to_string(),
            protocol_version: PROTOCOL_VERSION,
            server_time: now_ms(),
            heartbeat_secs: heartbeat.as_secs(),
        }))
        .await?;
        // After `hello`: the client hears from the server before anything else is awaited.
        Box::pin(conn.state.presence.connected(user_id, id)).await;
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        let resume_deadline = tokio::time::sleep(RESUME_WAIT);
        tokio::pin!(resume_deadline);
        loop {
            if let Some(new) = conn.new_replay_rx.take() {
                replay_rx = Some(new);
            }
            tokio::select! {
                biased;
                code = kick.wait() => return Err(kicked(code)),
                Ok(()) = shutdown.changed(), if close_at.is_none() => {
                    close_at = Some(drain_close_at(conn.state.config.drain));
                }
                () = sleep_until_some(close_at) => {
                    return Err(Stop::Close(close_code::RESTARTING, "server restarting: reconnect and resume"));
                }
                Some(replayed) = recv_replayed(&mut replay_rx) => {
                    Box::pin(conn.on_replayed(replayed)).await?;
                    if conn.replays.is_empty() {
                        conn.replay_tx = None;
                        replay_rx = None;
                    }
                }
                outbound = rx.recv() => match outbound {
                    Some(outbound) => Box::pin(conn.on_outbound_burst(outbound, rx)).await?,
                    None => return Err(Stop::Gone),
                },
                frame = conn.socket.recv() => Box::pin(conn.on_frame(frame)).await?,
                _ = ticks.tick() => Box::pin(conn.on_heartbeat(heartbeat)).await?,
                () = &mut resume_deadline, if conn.before_resume.is_some() => {
                    Box::pin(conn.release_held()).await?;
                }
            }
        }
    }
    .await;

    let result: Result<(), Stop> = stop;
    for replay in conn.replays.values() {
        replay.task.abort();
    }
    // Gone from the hub and from presence at once; the close handshake below may take a while.
    drop(registration);
    drop(open);
    metrics::websocket_closed(result.as_ref().err().and_then(Stop::code));
    Box::pin(conn.state.presence.disconnected(user_id, id)).await;
    if let Err(Stop::Close(code, reason)) = result {
        // A client that stopped reading may never take the close frame or answer it: give up
        // after a while.
        let wait = heartbeat.max(MIN_CLOSE_WAIT);
        let _ = Box::pin(tokio::time::timeout(
            wait,
            conn.close_handshake(code, reason),
        ))
        .await;
    }
}

/// A random moment inside the drain window: spread out, a drained node's clients reconnect
/// elsewhere a few at a time instead of all at once.
fn drain_close_at(drain: Duration) -> tokio::time::Instant {
    let fraction = f64::from(getrandom::u32().unwrap_or(0)) / f64::from(u32::MAX);
    tokio::time::Instant::now() + drain.mul_f64(fraction)
}
