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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures::SinkExt;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use super::broker::Target;
use super::hub::{ConnId, Kick, Outbound, Registration};
use super::protocol::{
    ActivityState, ChannelCursor, ClientEvent, ErrorCode, MAX_RESUME_CURSORS, PROTOCOL_VERSION,
    ServerEvent, close_code,
};
use crate::auth::server::AuthUser;
use crate::messages::{Message, PageCursor};
use crate::server::{AppState, metrics, now_ms};

/// Events held back per channel during a replay before the connection counts as lagging.
const MAX_HELD_BACK: usize = 2_000;
/// Messages fetched per database page while replaying.
const REPLAY_PAGE: u32 = 200;
/// Client events allowed per second (sustained) and in a burst.
const EVENTS_PER_SEC: f64 = 20.0;
const EVENT_BURST: f64 = 60.0;
/// How long a new connection holds back message events waiting for the first `resume`.
pub const RESUME_WAIT: Duration = Duration::from_millis(1500);
/// Most queued events written with one flush: under load, one write syscall carries many
/// frames instead of one each.
const MAX_COALESCED: usize = 64;
/// The least time a closing connection waits for its close frame to go out and be answered.
/// It waits a heartbeat interval when that is longer: a client that fell behind has megabytes
/// queued before the close frame and must read through them to learn why it was closed.
const MIN_CLOSE_WAIT: Duration = Duration::from_secs(5);

enum Replayed {
    Message {
        generation: u64,
        /// Boxed: the channel's first block of 32 slots is allocated with every connection, and
        /// an unboxed message would make that ~5 KiB per idle connection.
        message: Box<Message>,
    },
    Done {
        generation: u64,
        channel_id: i64,
        last_seq: i64,
    },
    Failed {
        generation: u64,
        channel_id: i64,
    },
}

struct Replay {
    generation: u64,
    held_back: Vec<Arc<Outbound>>,
    task: AbortHandle,
}

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

struct TokenBucket {
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled_at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * EVENTS_PER_SEC).min(EVENT_BURST);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
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

/// The next report of a running replay; never, while none runs.
async fn recv_replayed(rx: &mut Option<mpsc::Receiver<Replayed>>) -> Option<Replayed> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
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

/// Completes at `at`, never when there is no moment set.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Connection {
    /// Writes a frame, or only buffers it while a burst is being coalesced. A client that
    /// stops reading blocks the write: the hub's lag signal or the write timeout ends the wait,
    /// so such a connection cannot linger.
    async fn write(&mut self, frame: WsMessage) -> Result<(), Stop> {
        if self.coalescing {
            self.guarded(|socket| socket.feed(frame)).await
        } else {
            self.guarded(|socket| socket.send(frame)).await
        }
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        self.guarded(SinkExt::flush).await
    }

    /// Runs a socket write, ended by the lag signal or the write timeout.
    async fn guarded<'a, F, Fut>(&'a mut self, op: F) -> Result<(), Stop>
    where
        F: FnOnce(&'a mut WebSocket) -> Fut,
        Fut: Future<Output = Result<(), axum::Error>> + 'a,
    {
        let timeout = self.state.config.heartbeat;
        let kick = &self.kick;
        tokio::select! {
            written = tokio::time::timeout(timeout, op(&mut self.socket)) => match written {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(Stop::Gone),
                Err(_) => Err(Stop::Close(close_code::LAGGING, "not reading: reconnect and resume")),
            },
            code = kick.wait() => Err(kicked(code)),
        }
    }

    /// Delivers `first` and whatever else is already queued (up to [`MAX_COALESCED`]), then
    /// flushes once.
    async fn on_outbound_burst(
        &mut self,
        first: Arc<Outbound>,
        queue: &mut mpsc::Receiver<Arc<Outbound>>,
    ) -> Result<(), Stop> {
        self.coalescing = true;
        let mut delivered = self.on_outbound(first).await;
        for _ in 1..MAX_COALESCED {
            if delivered.is_err() {
                break;
            }
            match queue.try_recv() {
                Ok(next) => delivered = self.on_outbound(next).await,
                Err(_) => break,
            }
        }
        self.coalescing = false;
        delivered?;
        self.flush().await
    }

    /// Sends the close frame, then reads until the client answers it. Dropping the socket
    /// right after sending would make the client's next write (an automatic pong, say) hit a
    /// closed socket; the reset that follows can discard the close frame still unread in the
    /// client's buffer, and the client would see 1006 instead of the code that tells it why.
    async fn close_handshake(&mut self, code: u16, reason: &'static str) {
        let frame = WsMessage::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        if self.socket.send(frame).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = self.socket.recv().await {}
    }

    async fn send_text(&mut self, text: axum::extract::ws::Utf8Bytes) -> Result<(), Stop> {
        self.write(WsMessage::Text(text)).await
    }

    async fn send_event(&mut self, event: &ServerEvent) -> Result<(), Stop> {
        self.send_text(Outbound::new(event).text).await
    }

    async fn send_error(
        &mut self,
        code: ErrorCode,
        message: impl Into<String>,
    ) -> Result<(), Stop> {
        self.send_event(&ServerEvent::Error {
            code,
            message: message.into(),
        })
        .await
    }

    async fn on_outbound(&mut self, outbound: Arc<Outbound>) -> Result<(), Stop> {
        if let Some(held) = &mut self.before_resume
            && outbound.stream
        {
            if held.len() >= MAX_HELD_BACK {
                return Err(Stop::Close(
                    close_code::LAGGING,
                    "fell behind: reconnect and resume",
                ));
            }
            held.push(outbound);
            return Ok(());
        }
        if let Some(channel_id) = outbound.channel_id {
            if let Some(replay) = self.replays.get_mut(&channel_id) {
                if replay.held_back.len() >= MAX_HELD_BACK {
                    return Err(Stop::Close(
                        close_code::LAGGING,
                        "fell behind: reconnect and resume",
                    ));
                }
                replay.held_back.push(outbound);
                return Ok(());
            }
            if outbound.stream && self.muted.contains(&channel_id) {
                return Ok(());
            }
            if let (Some(seq), Some(through)) =
                (outbound.seq, self.delivered_through.get_mut(&channel_id))
            {
                if seq <= *through {
                    return Ok(());
                }
                *through = seq;
            }
        }
        self.send_text(outbound.text.clone()).await
    }

    async fn on_replayed(&mut self, replayed: Replayed) -> Result<(), Stop> {
        match replayed {
            Replayed::Message {
                generation,
                message,
            } => {
                if self.is_current(message.channel_id, generation) {
                    self.send_event(&ServerEvent::MessageCreated { message: *message })
                        .await?;
                }
            }
            Replayed::Done {
                generation,
                channel_id,
                last_seq,
            } => {
                if !self.is_current(channel_id, generation) {
                    return Ok(());
                }
                let Some(replay) = self.replays.remove(&channel_id) else {
                    return Ok(());
                };
                self.send_event(&ServerEvent::CaughtUp {
                    channel_id,
                    last_seq,
                })
                .await?;
                let through = self.delivered_through.entry(channel_id).or_insert(last_seq);
                *through = (*through).max(last_seq);
                for held in replay.held_back {
                    self.on_outbound(held).await?;
                }
            }
            Replayed::Failed {
                generation,
                channel_id,
            } => {
                if self.is_current(channel_id, generation) {
                    return Err(Stop::Close(1011, "catch-up failed: reconnect and resume"));
                }
            }
        }
        Ok(())
    }

    fn is_current(&self, channel_id: i64, generation: u64) -> bool {
        self.replays
            .get(&channel_id)
            .is_some_and(|replay| replay.generation == generation)
    }

    async fn on_frame(
        &mut self,
        frame: Option<Result<WsMessage, axum::Error>>,
    ) -> Result<(), Stop> {
        self.last_heard = Instant::now();
        match frame {
            None | Some(Ok(WsMessage::Close(_))) => Err(Stop::Gone),
            Some(Err(error)) => Err(close_for(error)),
            Some(Ok(WsMessage::Text(text))) => self.on_text(text.as_str()).await,
            Some(Ok(WsMessage::Binary(_))) => {
                self.send_error(
                    ErrorCode::Unsupported,
                    "binary frames are not part of the protocol; send JSON text",
                )
                .await
            }
            Some(Ok(WsMessage::Pong(_))) => {
                self.state.presence.heartbeat(self.user.id, self.id).await;
                Ok(())
            }
            Some(Ok(WsMessage::Ping(_))) => Ok(()),
        }
    }

    async fn on_heartbeat(&mut self, heartbeat: Duration) -> Result<(), Stop> {
        if self.last_heard.elapsed() > heartbeat * 2 {
            return Err(Stop::Close(close_code::HEARTBEAT_TIMEOUT, "no heartbeat"));
        }
        self.write(WsMessage::Ping(Default::default())).await
    }

    async fn on_text(&mut self, text: &str) -> Result<(), Stop> {
        if !self.budget.take() {
            return self
                .send_error(ErrorCode::RateLimited, "too many events; slow down")
                .await;
        }
        let event = match parse_client_event(text) {
            Ok(event) => event,
            Err((code, message)) => return self.send_error(code, message).await,
        };
        match event {
            ClientEvent::Ping { nonce } => {
                self.state.presence.heartbeat(self.user.id, self.id).await;
                self.send_event(&ServerEvent::Pong {
                    nonce,
                    server_time: now_ms(),
                })
                .await
            }
            ClientEvent::Activity { state } => {
                let away = state == ActivityState::Away;
                self.state
                    .presence
                    .activity(self.user.id, self.id, away)
                    .await;
                Ok(())
            }
            ClientEvent::Typing { channel_id } => self.on_typing(channel_id).await,
            ClientEvent::Unsubscribe { channel_id } => {
                if self.require_member(channel_id).await? {
                    self.muted.insert(channel_id);
                }
                Ok(())
            }
            ClientEvent::Subscribe {
                channel_id,
                after_seq,
            } => {
                self.catch_up(&[ChannelCursor {
                    channel_id,
                    after_seq,
                }])
                .await
            }
            ClientEvent::Resume { channels } => {
                if channels.len() > MAX_RESUME_CURSORS {
                    return self
                        .send_error(
                            ErrorCode::InvalidEvent,
                            format!(
                                "resume names at most {MAX_RESUME_CURSORS} channels, not {}",
                                channels.len()
                            ),
                        )
                        .await;
                }
                self.catch_up(&channels).await
            }
        }
    }

    /// True when a member; otherwise tells the client and returns false.
    async fn require_member(&mut self, channel_id: i64) -> Result<bool, Stop> {
        if self.state.hub.receives(self.id, channel_id) {
            return Ok(true);
        }
        self.send_error(
            ErrorCode::NotAMember,
            format!("you are not a member of channel {channel_id}"),
        )
        .await?;
        Ok(false)
    }

    async fn on_typing(&mut self, channel_id: i64) -> Result<(), Stop> {
        if !self.require_member(channel_id).await? {
            return Ok(());
        }
        let user_id = self.user.id;
        let expires_at = self.state.typing.started(user_id, channel_id, now_ms());
        metrics::typing_event(expires_at.is_some());
        if let Some(expires_at) = expires_at {
            self.state.hub.publish(
                Target::ChannelExcept {
                    channel_id,
                    user_id,
                },
                ServerEvent::Typing {
                    channel_id,
                    user_id,
                    expires_at,
                },
            );
        }
        Ok(())
    }

    /// Ends the wait for the first `resume`: events of channels now being replayed join their
    /// replay's held-back events (see `on_outbound`); the rest go out in order.
    async fn release_held(&mut self) -> Result<(), Stop> {
        for outbound in self.before_resume.take().unwrap_or_default() {
            self.on_outbound(outbound).await?;
        }
        Ok(())
    }

    async fn catch_up(&mut self, cursors: &[ChannelCursor]) -> Result<(), Stop> {
        for cursor in cursors {
            if cursor.after_seq < 0 {
                self.send_error(
                    ErrorCode::InvalidEvent,
                    format!(
                        "after_seq for channel {} must not be negative",
                        cursor.channel_id
                    ),
                )
                .await?;
                continue;
            }
            if !self.require_member(cursor.channel_id).await? {
                continue;
            }
            self.muted.remove(&cursor.channel_id);
            self.start_replay(*cursor);
        }
        self.release_held().await
    }

    fn start_replay(&mut self, cursor: ChannelCursor) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let db = self.state.db.clone();
        let hub = self.state.hub.clone();
        let tx = match &self.replay_tx {
            Some(tx) => tx.clone(),
            None => {
                let (tx, rx) = mpsc::channel(64);
                self.new_replay_rx = Some(rx);
                self.replay_tx.insert(tx).clone()
            }
        };
        let ChannelCursor {
            channel_id,
            after_seq,
        } = cursor;
        let task = tokio::spawn(async move {
            // In a cluster, read only once the node's live stream of the channel knows where it
            // starts: this read then reaches at least that far, and the stream does the rest.
            hub.stream_ready(channel_id).await;
            let mut last_seq = after_seq;
            loop {
                let page = match db
                    .list_messages(channel_id, PageCursor::After(last_seq), REPLAY_PAGE)
                    .await
                {
                    Ok(page) => page,
                    Err(error) => {
                        tracing::error!(%error, channel_id, "catch-up read failed");
                        let _ = tx
                            .send(Replayed::Failed {
                                generation,
                                channel_id,
                            })
                            .await;
                        return;
                    }
                };
                for message in page.messages {
                    last_seq = message.seq;
                    if tx
                        .send(Replayed::Message {
                            generation,
                            message: Box::new(message),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                if !page.has_more {
                    break;
                }
            }
            let _ = tx
                .send(Replayed::Done {
                    generation,
                    channel_id,
                    last_seq,
                })
                .await;
        });
        let replay = Replay {
            generation,
            held_back: Vec::new(),
            task: task.abort_handle(),
        };
        if let Some(previous) = self.replays.insert(channel_id, replay) {
            // A newer request for the same channel supersedes the running one; what it held
            // back is covered by the new replay or held back again.
            previous.task.abort();
            if let Some(current) = self.replays.get_mut(&channel_id) {
                current.held_back = previous.held_back;
            }
        }
    }
}

/// Parses a client frame, telling apart bad JSON, an unknown `type` and bad fields.
pub fn parse_client_event(text: &str) -> Result<ClientEvent, (ErrorCode, String)> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        (
            ErrorCode::InvalidJson,
            format!("frame is not valid JSON: {e}"),
        )
    })?;
    let kind = value
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| {
            (
                ErrorCode::UnknownEvent,
                "event has no \"type\" field".to_owned(),
            )
        })?
        .to_owned();
    if !ClientEvent::TYPES.contains(&kind.as_str()) {
        return Err((
            ErrorCode::UnknownEvent,
            format!("unknown event type \"{kind}\""),
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        (
            ErrorCode::InvalidEvent,
            format!("invalid \"{kind}\" event: {e}"),
        )
    })
}

/// The close a read error calls for.
fn close_for(error: axum::Error) -> Stop {
    let inner = error.into_inner();
    match inner.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => Stop::Close(1009, "message too big"),
        Some(tungstenite::Error::Utf8(_)) => Stop::Close(1007, "text frame is not valid UTF-8"),
        Some(tungstenite::Error::Protocol(_)) => Stop::Close(1002, "protocol error"),
        _ => Stop::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_are_classified() {
        assert_eq!(
            parse_client_event("{nope").unwrap_err().0,
            ErrorCode::InvalidJson
        );
        assert_eq!(
            parse_client_event("{}").unwrap_err().0,
            ErrorCode::UnknownEvent
        );
        assert_eq!(
            parse_client_event(r#"{"type":"dance"}"#).unwrap_err().0,
            ErrorCode::UnknownEvent
        );
        assert_eq!(
            parse_client_event(r#"{"type":"typing","channel_id":"x"}"#)
                .unwrap_err()
                .0,
            ErrorCode::InvalidEvent
        );
        assert_eq!(
            parse_client_event(r#"{"type":"typing","channel_id":4}"#).unwrap(),
            ClientEvent::Typing { channel_id: 4 }
        );
    }
}
