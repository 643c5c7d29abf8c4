//! The base of the server's realtime side: which connections this node holds, whose they are
//! and which channels they receive, and the fan-out of events to them, plus the types every
//! other realtime file shares (what a bus message is, who receives it, the [`Broker`] trait
//! that carries it). Everything else in `realtime/server/` imports this file; it imports none
//! of them.
//!
//! Publishing serializes an event once and hands the same bytes to every recipient's bounded
//! queue without waiting. A recipient whose queue is full is told to disconnect (it reconnects
//! and resumes by seq), so one slow client never slows the others and memory stays bounded.
//! On a single node, [`LocalFanout`] is itself the broker: a publish is a local delivery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc};

use crate::locks;
use crate::realtime::protocol::{ServerEvent, close_code};
use crate::server::metrics;

/// Who receives an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Target {
    /// Every connection of every member of the channel.
    Channel(i64),
    /// Every member's connections except those of `user_id`.
    ChannelExcept { channel_id: i64, user_id: i64 },
    /// Every connection of these users.
    Users(Vec<i64>),
}

/// What travels through the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum BusMessage {
    Deliver {
        target: Target,
        event: ServerEvent,
    },
    /// `user_id`'s connections start receiving `channel_id`'s events.
    Join {
        user_id: i64,
        channel_id: i64,
    },
    /// `user_id`'s connections stop receiving `channel_id`'s events.
    Leave {
        user_id: i64,
        channel_id: i64,
    },
    /// Connections opened with this session close: it was signed out.
    EndSession {
        session: SessionTag,
    },
}

/// Carries bus messages to every node's [`LocalFanout`]. Publishing never blocks: a broker
/// queues or drops with a log line, it never stalls the request that published.
pub trait Broker: Send + Sync + 'static {
    fn publish(&self, message: BusMessage);
    /// For `/health`.
    fn name(&self) -> &'static str;
}

/// A channel gained its first, or lost its last, local subscriber.
#[derive(Debug, Clone, Copy)]
pub enum ChannelChange {
    Subscribed(i64),
    Unsubscribed(i64),
}

/// Told of every [`ChannelChange`] (the cluster's sequencer, which streams only the channels
/// someone here receives).
pub type ChannelWatch = Box<dyn Fn(ChannelChange) + Send + Sync>;

pub type ConnId = u64;

/// Which session a connection was opened with: the first half of the session token's SHA-256,
/// enough to tell sessions apart without keeping (or sending between nodes) the whole hash.
pub type SessionTag = [u8; 16];

/// Tells a connection to close, and with which code.
#[derive(Debug, Default)]
pub struct Kick {
    notify: Notify,
    code: AtomicU16,
}

impl Kick {
    fn close(&self, code: u16) {
        // Signed out wins over lagging: a client told to resume would only be refused.
        if code == close_code::SIGNED_OUT {
            self.code.store(code, Ordering::Relaxed);
        } else {
            let _ = self
                .code
                .compare_exchange(0, code, Ordering::Relaxed, Ordering::Relaxed);
        }
        self.notify.notify_one();
    }

    /// Waits until the connection is told to close; the close code.
    pub async fn wait(&self) -> u16 {
        self.notify.notified().await;
        self.code.load(Ordering::Relaxed)
    }
}

/// One serialized event on its way to a connection.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The channel the event is about, if any.
    pub channel_id: Option<i64>,
    /// The seq of a `message_created`.
    pub seq: Option<i64>,
    /// A message-stream event (messages and typing), which `unsubscribe` mutes.
    pub stream: bool,
    /// The JSON text, shared by every recipient.
    pub text: Utf8Bytes,
}

impl Outbound {
    /// Serializes `event` once. Every kind is named (no wildcard), so a new event must say
    /// which channel it is about and whether `unsubscribe` mutes it and catch-up holds it back.
    pub fn new(event: &ServerEvent) -> Self {
        let (channel_id, seq, stream) = match event {
            ServerEvent::MessageCreated { message } => {
                (Some(message.channel_id), Some(message.seq), true)
            }
            ServerEvent::MessageUpdated { message } | ServerEvent::MessageDeleted { message } => {
                (Some(message.channel_id), None, true)
            }
            ServerEvent::Typing { channel_id, .. }
            | ServerEvent::TypingStopped { channel_id, .. } => (Some(*channel_id), None, true),
            ServerEvent::ReadUpdated { channel_id, .. }
            | ServerEvent::MemberAdded { channel_id, .. }
            | ServerEvent::MemberRemoved { channel_id, .. }
            | ServerEvent::CaughtUp { channel_id, .. } => (Some(*channel_id), None, false),
            ServerEvent::ChannelUpdated { channel } => (Some(channel.id), None, false),
            ServerEvent::Hello { .. }
            | ServerEvent::Presence { .. }
            | ServerEvent::Error { .. }
            | ServerEvent::Pong { .. } => (None, None, false),
        };
        let text = serde_json::to_string(event).unwrap_or_else(|_| {
            r#"{"type":"error","code":"invalid_event","message":"unserializable event"}"#.to_owned()
        });
        Self {
            channel_id,
            seq,
            stream,
            text: text.into(),
        }
    }
}

/// What a connection gets when it registers; dropping it unregisters the connection (so an
/// upgrade that never completes leaves nothing behind).
pub struct Registration {
    pub id: ConnId,
    /// Its outbound queue.
    pub rx: mpsc::Receiver<Arc<Outbound>>,
    /// Fires when the connection must close: it fell behind, or its session ended.
    pub kick: Arc<Kick>,
    fanout: Arc<LocalFanout>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.fanout.unregister(self.id);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("too many connections for this user (limit {0})")]
    TooManyForUser(usize),
}

/// Hub limits.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// Events queued per connection before it counts as lagging.
    pub queue_capacity: usize,
    /// Connections one user may hold.
    pub max_connections_per_user: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 512,
            max_connections_per_user: 20,
        }
    }
}

struct Conn {
    user_id: i64,
    session: SessionTag,
    /// Queued events are `Arc`s: one refcount per recipient either way, and the queue's first
    /// block (32 slots, allocated with the connection) stays at 256 bytes.
    tx: mpsc::Sender<Arc<Outbound>>,
    kick: Arc<Kick>,
    channels: Vec<i64>,
}

#[derive(Default)]
struct Registry {
    conns: HashMap<ConnId, Conn>,
    by_user: HashMap<i64, Vec<ConnId>>,
    by_channel: HashMap<i64, Vec<ConnId>>,
    /// Told when a channel gains its first or loses its last local subscriber (in a cluster).
    channel_watch: Option<ChannelWatch>,
}

impl Registry {
    fn subscribe(&mut self, conn_id: ConnId, channel_id: i64) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if !conn.channels.contains(&channel_id) {
            conn.channels.push(channel_id);
            let subscribers = self.by_channel.entry(channel_id).or_default();
            subscribers.push(conn_id);
            if subscribers.len() == 1
                && let Some(watch) = &self.channel_watch
            {
                watch(ChannelChange::Subscribed(channel_id));
            }
        }
    }

    fn unsubscribe(&mut self, conn_id: ConnId, channel_id: i64) {
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            conn.channels.retain(|c| *c != channel_id);
        }
        self.remove_subscriber(channel_id, conn_id);
    }

    fn remove_subscriber(&mut self, channel_id: i64, conn_id: ConnId) {
        if remove_from(&mut self.by_channel, channel_id, conn_id)
            && let Some(watch) = &self.channel_watch
        {
            watch(ChannelChange::Unsubscribed(channel_id));
        }
    }
}

/// Removes `conn_id` from `index[key]`; whether that left `key` with nobody.
fn remove_from(index: &mut HashMap<i64, Vec<ConnId>>, key: i64, conn_id: ConnId) -> bool {
    if let Some(ids) = index.get_mut(&key) {
        ids.retain(|id| *id != conn_id);
        if ids.is_empty() {
            index.remove(&key);
            return true;
        }
    }
    false
}

/// Called with the tag of each session that ends (on any node).
pub type SessionEnded = Box<dyn Fn(&SessionTag) + Send + Sync>;

/// This process's connections and the delivery to them.
pub struct LocalFanout {
    registry: RwLock<Registry>,
    next_id: AtomicU64,
    config: HubConfig,
    /// Forgets ended sessions elsewhere in the node (its session cache).
    pub(super) session_ended: std::sync::OnceLock<SessionEnded>,
}

impl LocalFanout {
    pub fn new(config: HubConfig) -> Self {
        Self {
            registry: RwLock::new(Registry::default()),
            next_id: AtomicU64::new(1),
            config,
            session_ended: std::sync::OnceLock::new(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        locks::read(&self.registry)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        locks::write(&self.registry)
    }

    /// Applies a bus message to the local connections.
    pub fn apply(&self, message: BusMessage) {
        match message {
            BusMessage::Deliver { target, event } => self.deliver(&target, &event),
            BusMessage::Join {
                user_id,
                channel_id,
            } => self.each_connection_of(user_id, |registry, conn_id| {
                registry.subscribe(conn_id, channel_id);
            }),
            BusMessage::Leave {
                user_id,
                channel_id,
            } => self.each_connection_of(user_id, |registry, conn_id| {
                registry.unsubscribe(conn_id, channel_id);
            }),
            BusMessage::EndSession { session } => {
                if let Some(forget) = self.session_ended.get() {
                    forget(&session);
                }
                // Rare (a log-out), so a scan rather than another index to keep per connection.
                for conn in self.read().conns.values() {
                    if conn.session == session {
                        conn.kick.close(close_code::SIGNED_OUT);
                    }
                }
            }
        }
    }

    /// Tells `watch` whenever a channel gains its first or loses its last local subscriber,
    /// starting with the channels subscribed now.
    pub fn watch_channels(&self, watch: ChannelWatch) {
        let mut registry = self.write();
        for &channel_id in registry.by_channel.keys() {
            watch(ChannelChange::Subscribed(channel_id));
        }
        registry.channel_watch = Some(watch);
    }

    /// Channels at least one connection on this node receives.
    pub fn subscribed_channels(&self) -> Vec<i64> {
        self.read().by_channel.keys().copied().collect()
    }

    /// Users with a connection on this node.
    pub fn connected_users(&self) -> Vec<i64> {
        self.read().by_user.keys().copied().collect()
    }

    /// Makes every local connection of `user_id` receive exactly `channels`.
    pub fn set_channels_of(&self, user_id: i64, channels: &[i64]) {
        self.each_connection_of(user_id, |registry, conn_id| {
            let current = registry
                .conns
                .get(&conn_id)
                .map(|conn| conn.channels.clone())
                .unwrap_or_default();
            for channel_id in current.iter().filter(|c| !channels.contains(c)) {
                registry.unsubscribe(conn_id, *channel_id);
            }
            for channel_id in channels.iter().filter(|c| !current.contains(c)) {
                registry.subscribe(conn_id, *channel_id);
            }
        });
    }

    /// Applies `change` to every local connection of `user_id`.
    fn each_connection_of(&self, user_id: i64, change: impl Fn(&mut Registry, ConnId)) {
        let mut registry = self.write();
        let conns = registry.by_user.get(&user_id).cloned().unwrap_or_default();
        for conn_id in conns {
            change(&mut registry, conn_id);
        }
    }

    /// Registers a connection of `user_id`, opened with `session`, receiving `channels`.
    pub fn register(
        self: &Arc<Self>,
        user_id: i64,
        session: SessionTag,
        channels: &[i64],
    ) -> Result<Registration, RegisterError> {
        let config = self.config;
        let mut registry = self.write();
        let existing = registry.by_user.get(&user_id).map_or(0, Vec::len);
        if existing >= config.max_connections_per_user {
            return Err(RegisterError::TooManyForUser(
                config.max_connections_per_user,
            ));
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let kick = Arc::new(Kick::default());
        registry.conns.insert(
            id,
            Conn {
                user_id,
                session,
                tx,
                kick: kick.clone(),
                channels: Vec::with_capacity(channels.len()),
            },
        );
        registry.by_user.entry(user_id).or_default().push(id);
        for channel_id in channels {
            registry.subscribe(id, *channel_id);
        }
        Ok(Registration {
            id,
            rx,
            kick,
            fanout: self.clone(),
        })
    }

    pub fn unregister(&self, conn_id: ConnId) {
        let mut registry = self.write();
        let Some(conn) = registry.conns.remove(&conn_id) else {
            return;
        };
        for channel_id in &conn.channels {
            registry.remove_subscriber(*channel_id, conn_id);
        }
        remove_from(&mut registry.by_user, conn.user_id, conn_id);
    }

    /// Whether the connection receives `channel_id` (i.e. its user is a member).
    pub fn receives(&self, conn_id: ConnId, channel_id: i64) -> bool {
        self.read()
            .conns
            .get(&conn_id)
            .is_some_and(|conn| conn.channels.contains(&channel_id))
    }

    /// Open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.read().conns.len()
    }

    /// Open connections of `user_id` on this node.
    pub fn user_connection_count(&self, user_id: i64) -> usize {
        self.read().by_user.get(&user_id).map_or(0, Vec::len)
    }

    fn deliver(&self, target: &Target, event: &ServerEvent) {
        let outbound = Arc::new(Outbound::new(event));
        let registry = self.read();
        // Counted here and recorded once per event, not once per recipient.
        let (mut delivered, mut dropped) = (0, 0);
        let mut send = |conn_id: &ConnId| {
            let Some(conn) = registry.conns.get(conn_id) else {
                return;
            };
            match conn.tx.try_send(outbound.clone()) {
                Ok(()) => delivered += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    dropped += 1;
                    conn.kick.close(close_code::LAGGING);
                }
                // The connection is ending; its queue is gone.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        };
        match target {
            Target::Channel(channel_id) => {
                registry
                    .by_channel
                    .get(channel_id)
                    .into_iter()
                    .flatten()
                    .for_each(&mut send);
            }
            Target::ChannelExcept {
                channel_id,
                user_id,
            } => registry
                .by_channel
                .get(channel_id)
                .into_iter()
                .flatten()
                .filter(|id| {
                    registry
                        .conns
                        .get(id)
                        .is_some_and(|c| c.user_id != *user_id)
                })
                .for_each(&mut send),
            Target::Users(users) => {
                for user in users {
                    registry
                        .by_user
                        .get(user)
                        .into_iter()
                        .flatten()
                        .for_each(&mut send);
                }
            }
        }
        drop(registry);
        metrics::events_fanned_out(delivered, dropped);
    }
}

/// On a single node the fan-out is the whole bus: a publish is delivered here, in order.
impl Broker for LocalFanout {
    fn publish(&self, message: BusMessage) {
        self.apply(message);
    }

    fn name(&self) -> &'static str {
        "local"
    }
}
