//! The way out: writing queued events to the socket (a burst at a time, under a timeout and
//! the lag signal), and the decision, per event, to deliver it, hold it back behind a catch-up,
//! or drop it (muted channel, already replayed).

use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures::SinkExt;
use tokio::sync::mpsc;

use crate::realtime::protocol::{ErrorCode, ServerEvent, close_code};
use crate::realtime::server::fanout::Outbound;

use super::replay::MAX_HELD_BACK;
use super::{Connection, Stop, kicked};

/// Most queued events written with one flush: under load, one write syscall carries many
/// frames instead of one each.
const MAX_COALESCED: usize = 64;

impl Connection {
    /// Writes a frame, or only buffers it while a burst is being coalesced. A client that
    /// stops reading blocks the write: the hub's lag signal or the write timeout ends the wait,
    /// so such a connection cannot linger.
    pub(super) async fn write(&mut self, frame: WsMessage) -> Result<(), Stop> {
        if self.coalescing {
            self.guarded(|socket| socket.feed(frame)).await
        } else {
            self.guarded(|socket| socket.send(frame)).await
        }
    }

    pub(super) async fn flush(&mut self) -> Result<(), Stop> {
        self.guarded(SinkExt::flush).await
    }

    /// Runs a socket write, ended by the lag signal or the write timeout.
    pub(super) async fn guarded<'a, F, Fut>(&'a mut self, op: F) -> Result<(), Stop>
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
    pub(super) async fn on_outbound_burst(
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

    pub(super) async fn on_outbound(&mut self, outbound: Arc<Outbound>) -> Result<(), Stop> {
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

    pub(super) async fn send_text(
        &mut self,
        text: axum::extract::ws::Utf8Bytes,
    ) -> Result<(), Stop> {
        self.write(WsMessage::Text(text)).await
    }

    pub(super) async fn send_event(&mut self, event: &ServerEvent) -> Result<(), Stop> {
        self.send_text(Outbound::new(event).text).await
    }

    pub(super) async fn send_error(
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

    /// Sends the close frame, then reads until the client answers it. Dropping the socket
    /// right after sending would make the client's next write (an automatic pong, say) hit a
    /// closed socket; the reset that follows can discard the close frame still unread in the
    /// client's buffer, and the client would see 1006 instead of the code that tells it why.
    pub(super) async fn close_handshake(&mut self, code: u16, reason: &'static str) {
        let frame = WsMessage::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }));
        if self.socket.send(frame).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = self.socket.recv().await {}
    }
}
