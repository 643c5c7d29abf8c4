//! The hub: which connections exist, whose they are and which channels they receive, and the
//! fan-out of events to them. A cheap `Clone` handle over shared state; publishing serializes an
//! event once and hands the same bytes to every recipient's bounded queue without waiting. A
//! recipient whose queue is full is told to disconnect (it reconnects and resumes by seq), so
//! one slow client never slows the others and memory stays bounded.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::ws::Utf8Bytes;
use tokio::sync::{Notify, mpsc};

use super::broker::{Broker, BusMessage, LocalBroker, Target};
use super::protocol::{ServerEvent, close_code};
use super::redis_bus::{BusConfig, RedisBroker};
use super::sequencer::{ChannelChange, Sequencer};
use crate::server::{Database, metrics};

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
    hub: Hub,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self.id);
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
    channel_watch: Option<Sequencer>,
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
                watch.channel_changed(ChannelChange::Subscribed(channel_id));
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
            watch.channel_changed(ChannelChange::Unsubscribed(channel_id));
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
    session_ended: std::sync::OnceLock<SessionEnded>,
}

impl LocalFanout {
    fn new(config: HubConfig) -> Self {
        Self {
            registry: RwLock::new(Registry::default()),
            next_id: AtomicU64::new(1),
            config,
            session_ended: std::sync::OnceLock::new(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Registry> {
        self.registry
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
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

    /// Tells `sequencer` whenever a channel gains its first or loses its last local subscriber,
    /// starting with the channels subscribed now.
    pub fn watch_channels(&self, sequencer: Sequencer) {
        let mut registry = self.write();
        for &channel_id in registry.by_channel.keys() {
            sequencer.channel_changed(ChannelChange::Subscribed(channel_id));
        }
        registry.channel_watch = Some(sequencer);
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

/// The hub handle every service and connection holds.
#[derive(Clone)]
pub struct Hub {
    local: Arc<LocalFanout>,
    broker: Arc<dyn Broker>,
    /// Orders channel events on a node of a cluster (`None` on a single node).
    sequencer: Option<Sequencer>,
}

impl Hub {
    /// A hub with the single-node broker.
    pub fn new(config: HubConfig) -> Self {
        let local = Arc::new(LocalFanout::new(config));
        let broker = Arc::new(LocalBroker::new(local.clone()));
        Self {
            local,
            broker,
            sequencer: None,
        }
    }

    /// A hub on a node of a cluster: events travel between nodes over the Redis bus, and
    /// messages are ordered, and gaps repaired, from `db` (see `realtime/sequencer.rs`).
    pub fn clustered(config: HubConfig, bus: BusConfig, db: Arc<dyn Database>) -> Self {
        let local = Arc::new(LocalFanout::new(config));
        let broker = RedisBroker::start(bus, local.clone(), db);
        let sequencer = broker.sequencer();
        Self {
            local,
            broker: Arc::new(broker),
            sequencer: Some(sequencer),
        }
    }

    /// Completes once live `message_created` events of `channel_id` are ordered from a known
    /// seq, so a catch-up read made after it covers everything the live stream will not. At
    /// once on a single node.
    pub async fn stream_ready(&self, channel_id: i64) {
        if let Some(sequencer) = &self.sequencer {
            sequencer.ready(channel_id).await;
        }
    }

    /// Sends `event` to `target` on every node.
    pub fn publish(&self, target: Target, event: ServerEvent) {
        self.broker.publish(BusMessage::Deliver { target, event });
    }

    /// `user_id` starts receiving `channel_id` on every node (call after storing the membership).
    pub fn join(&self, user_id: i64, channel_id: i64) {
        self.broker.publish(BusMessage::Join {
            user_id,
            channel_id,
        });
    }

    /// `user_id` stops receiving `channel_id` on every node.
    pub fn leave(&self, user_id: i64, channel_id: i64) {
        self.broker.publish(BusMessage::Leave {
            user_id,
            channel_id,
        });
    }

    /// Calls `forget` with every session that ends, on this node or another (once; later calls
    /// are ignored).
    pub fn on_session_ended(&self, forget: SessionEnded) {
        let _ = self.local.session_ended.set(forget);
    }

    /// Every connection opened with `session` closes (code 4001), on every node: its user
    /// signed out.
    pub fn end_session(&self, session: SessionTag) {
        self.broker.publish(BusMessage::EndSession { session });
    }

    /// Registers a connection of `user_id`, opened with `session`, receiving `channels`.
    pub fn register(
        &self,
        user_id: i64,
        session: SessionTag,
        channels: &[i64],
    ) -> Result<Registration, RegisterError> {
        let config = self.local.config;
        let mut registry = self.local.write();
        let existing = registry.by_user.get(&user_id).map_or(0, Vec::len);
        if existing >= config.max_connections_per_user {
            return Err(RegisterError::TooManyForUser(
                config.max_connections_per_user,
            ));
        }
        let id = self.local.next_id.fetch_add(1, Ordering::Relaxed);
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
            hub: self.clone(),
        })
    }

    pub fn unregister(&self, conn_id: ConnId) {
        let mut registry = self.local.write();
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
        self.local
            .read()
            .conns
            .get(&conn_id)
            .is_some_and(|conn| conn.channels.contains(&channel_id))
    }

    /// Open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.local.read().conns.len()
    }

    /// Open connections of `user_id` on this node.
    pub fn user_connection_count(&self, user_id: i64) -> usize {
        self.local.read().by_user.get(&user_id).map_or(0, Vec::len)
    }

    pub fn broker_name(&self) -> &'static str {
        self.broker.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_SESSION: SessionTag = [0; 16];

    fn typing(channel_id: i64, user_id: i64) -> ServerEvent {
        ServerEvent::Typing {
            channel_id,
            user_id,
            expires_at: 0,
        }
    }

    #[test]
    fn delivers_to_channel_subscribers_only() {
        let hub = Hub::new(HubConfig::default());
        let mut ann = hub.register(1, NO_SESSION, &[10]).unwrap();
        let mut bob = hub.register(2, NO_SESSION, &[10, 20]).unwrap();
        let mut eve = hub.register(3, NO_SESSION, &[20]).unwrap();
        hub.publish(Target::Channel(10), typing(10, 1));
        assert!(ann.rx.try_recv().is_ok());
        assert!(bob.rx.try_recv().is_ok());
        assert!(eve.rx.try_recv().is_err());
        hub.publish(
            Target::ChannelExcept {
                channel_id: 10,
                user_id: 1,
            },
            typing(10, 1),
        );
        assert!(ann.rx.try_recv().is_err());
        assert!(bob.rx.try_recv().is_ok());
    }

    #[test]
    fn join_and_leave_change_what_a_user_receives() {
        let hub = Hub::new(HubConfig::default());
        let mut tab1 = hub.register(1, NO_SESSION, &[]).unwrap();
        let mut tab2 = hub.register(1, NO_SESSION, &[]).unwrap();
        hub.join(1, 10);
        assert!(hub.receives(tab1.id, 10) && hub.receives(tab2.id, 10));
        hub.publish(Target::Channel(10), typing(10, 2));
        assert!(tab1.rx.try_recv().is_ok() && tab2.rx.try_recv().is_ok());
        hub.leave(1, 10);
        hub.publish(Target::Channel(10), typing(10, 2));
        assert!(tab1.rx.try_recv().is_err() && tab2.rx.try_recv().is_err());
    }

    #[test]
    fn full_queue_flags_the_connection_as_lagging() {
        let hub = Hub::new(HubConfig {
            queue_capacity: 2,
            ..HubConfig::default()
        });
        let slow = hub.register(1, NO_SESSION, &[10]).unwrap();
        let mut fast = hub.register(2, NO_SESSION, &[10]).unwrap();
        for _ in 0..3 {
            hub.publish(Target::Channel(10), typing(10, 3));
            assert!(fast.rx.try_recv().is_ok(), "others keep receiving");
        }
        let kicked = slow.kick.wait();
        tokio::pin!(kicked);
        assert_eq!(
            futures_poll_ready(kicked.as_mut()),
            Some(close_code::LAGGING),
            "slow connection was told to go"
        );
    }

    #[test]
    fn per_user_connection_cap_and_unregister() {
        let hub = Hub::new(HubConfig {
            max_connections_per_user: 2,
            ..HubConfig::default()
        });
        let a = hub.register(1, NO_SESSION, &[10]).unwrap();
        let _b = hub.register(1, NO_SESSION, &[10]).unwrap();
        assert_eq!(
            hub.register(1, NO_SESSION, &[])
                .err()
                .map(|e| e.to_string()),
            Some(RegisterError::TooManyForUser(2).to_string())
        );
        drop(a);
        assert_eq!(hub.user_connection_count(1), 1);
        let _c = hub.register(1, NO_SESSION, &[]).unwrap();
        assert_eq!(hub.connection_count(), 2);
    }

    /// Polls a future once without a runtime.
    /// The future's output if it is ready at once.
    fn futures_poll_ready<F: std::future::Future>(
        future: std::pin::Pin<&mut F>,
    ) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        match future.poll(&mut cx) {
            std::task::Poll::Ready(output) => Some(output),
            std::task::Poll::Pending => None,
        }
    }

    #[test]
    fn ending_a_session_kicks_only_its_connections() {
        let hub = Hub::new(HubConfig::default());
        let (one, two) = ([1; 16], [2; 16]);
        let signed_out = hub.register(1, one, &[10]).unwrap();
        let other_session = hub.register(1, two, &[10]).unwrap();
        hub.end_session(one);
        let kicked = signed_out.kick.wait();
        tokio::pin!(kicked);
        assert_eq!(
            futures_poll_ready(kicked.as_mut()),
            Some(close_code::SIGNED_OUT)
        );
        let untouched = other_session.kick.wait();
        tokio::pin!(untouched);
        assert_eq!(futures_poll_ready(untouched.as_mut()), None);
    }
}
