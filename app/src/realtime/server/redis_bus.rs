//! The cluster's bus: Redis pub/sub behind the [`Broker`] trait, for several nodes on one
//! PostgreSQL database.
//!
//! A node delivers what it publishes to its own connections at once, and sends it to the other
//! nodes through one of [`SHARDS`] Redis channels (by channel id, or by the first user id of a
//! user-targeted event), each payload carrying the origin node's id so a node ignores its own
//! echoes. Publishing never blocks a request: a bounded queue feeds one publisher task, and a
//! message that does not fit, or that Redis refuses, is dropped with a log line and a metric.
//!
//! Pub/sub is at-most-once, so nothing correct depends on it: every channel-targeted event goes
//! through this node's [`Sequencer`], which orders messages by seq, repairs gaps from the
//! database and checks each channel's head periodically (faster while Redis is down). After the
//! subscriber reconnects, the node checks every channel's head and reloads the memberships of
//! its connected users, since joins and leaves may have been lost meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::fanout::{Broker, BusMessage, LocalFanout, Target};
use super::sequencer::{HeadCheck, Sequencer, reload_memberships};
use crate::server::{Database, metrics};

/// Redis channels the bus is spread over. Every node subscribes to all of them; the spread lets
/// a sharded Redis (`SSUBSCRIBE`) place them on different servers.
pub const SHARDS: u64 = 16;
/// Bus messages waiting for the publisher; beyond this they are dropped (and counted).
const OUTBOX: usize = 16_384;
/// Most messages sent to Redis in one pipeline.
const PIPELINE: usize = 256;

/// Settings of the Redis bus.
#[derive(Debug, Clone)]
pub struct BusConfig {
    pub redis_url: String,
    /// Prefix of the bus's Redis channels (`{prefix}:bus:{shard}`).
    pub prefix: String,
    pub head_check: HeadCheck,
    /// Test-only: the share of received bus messages to drop, duplicate or reorder (each a
    /// third of it), to prove nothing depends on the bus being reliable. Zero in production.
    pub fault_rate: f64,
}

/// What travels over Redis.
#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The node that published it.
    node: u64,
    message: BusMessage,
}

pub struct RedisBroker {
    node: u64,
    sequencer: Sequencer,
    outbox: mpsc::Sender<(u64, String)>,
}

impl RedisBroker {
    /// Starts the publisher and subscriber tasks. The node works (alone) while Redis is down,
    /// and joins the bus when it comes up.
    pub fn start(config: BusConfig, local: Arc<LocalFanout>, db: Arc<dyn Database>) -> Self {
        let node = random_node_id();
        let bus_up = Arc::new(AtomicBool::new(false));
        let sequencer =
            Sequencer::start(local.clone(), db.clone(), config.head_check, bus_up.clone());
        let watch = sequencer.clone();
        local.watch_channels(Box::new(move |change| watch.channel_changed(change)));
        let (outbox, queue) = mpsc::channel(OUTBOX);
        tokio::spawn(publish(config.clone(), queue));
        tokio::spawn(subscribe(
            config,
            node,
            Arc::downgrade(&local),
            sequencer.clone(),
            db,
            bus_up,
        ));
        tracing::info!(node = format!("{node:016x}"), "joined the Redis bus");
        Self {
            node,
            sequencer,
            outbox,
        }
    }
}

impl RedisBroker {
    /// The sequencer this node's channel events go through.
    pub fn sequencer(&self) -> Sequencer {
        self.sequencer.clone()
    }
}

fn random_node_id() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Without randomness, the clock tells nodes apart well enough.
        return u64::try_from(crate::clock::now_ms()).unwrap_or(1);
    }
    u64::from_le_bytes(bytes)
}

/// The shard a bus message travels on.
fn shard_of(message: &BusMessage) -> u64 {
    let key = match message {
        BusMessage::Deliver { target, .. } => match target {
            Target::Channel(channel_id) | Target::ChannelExcept { channel_id, .. } => *channel_id,
            Target::Users(users) => users.first().copied().unwrap_or(0),
        },
        BusMessage::Join { user_id, .. } | BusMessage::Leave { user_id, .. } => *user_id,
        BusMessage::EndSession { session } => i64::from(session[0]),
    };
    key.unsigned_abs() % SHARDS
}

fn shard_channel(prefix: &str, shard: u64) -> String {
    format!("{prefix}:bus:{shard}")
}

impl Broker for RedisBroker {
    fn publish(&self, message: BusMessage) {
        let shard = shard_of(&message);
        let envelope = Envelope {
            node: self.node,
            message,
        };
        match serde_json::to_string(&envelope) {
            Ok(payload) => {
                if self.outbox.try_send((shard, payload)).is_err() {
                    tracing::warn!("bus outbox full: a bus message was not published");
                    metrics::bus_publish_dropped();
                }
            }
            Err(error) => tracing::error!(%error, "bus message not serializable"),
        }
        self.sequencer.apply(envelope.message);
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}

/// Sends queued bus messages to Redis, a pipeline at a time, in order.
async fn publish(config: BusConfig, mut queue: mpsc::Receiver<(u64, String)>) {
    let client = match redis::Client::open(config.redis_url.as_str()) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "bad REDIS_URL: the bus cannot publish");
            return;
        }
    };
    let mut connection = None;
    let mut batch = Vec::with_capacity(PIPELINE);
    while queue.recv_many(&mut batch, PIPELINE).await > 0 {
        if connection.is_none() {
            connection = connect(&client).await;
        }
        let Some(manager) = connection.as_mut() else {
            metrics::bus_publish_dropped_many(batch.len());
            batch.clear();
            continue;
        };
        let mut pipeline = redis::pipe();
        for (shard, payload) in batch.drain(..) {
            pipeline
                .cmd("PUBLISH")
                .arg(shard_channel(&config.prefix, shard))
                .arg(payload)
                .ignore();
        }
        if let Err(error) = pipeline.query_async::<()>(manager).await {
            tracing::warn!(%error, "publishing to the Redis bus failed");
            metrics::redis_error();
            metrics::bus_publish_dropped();
            connection = None;
        }
    }
}

/// A connection that fails fast (1 s to connect or answer, one retry), so a Redis outage is
/// noticed within a second; the bus and presence both use it.
pub(crate) async fn connect_fail_fast(
    client: &redis::Client,
) -> redis::RedisResult<redis::aio::ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Duration::from_secs(1))
        .set_response_timeout(Duration::from_secs(1))
        .set_number_of_retries(1)
        .set_max_delay(200);
    client.get_connection_manager_with_config(config).await
}

async fn connect(client: &redis::Client) -> Option<redis::aio::ConnectionManager> {
    match connect_fail_fast(client).await {
        Ok(manager) => Some(manager),
        Err(error) => {
            tracing::warn!(%error, "cannot reach Redis to publish");
            metrics::redis_error();
            None
        }
    }
}

/// Receives the other nodes' bus messages for as long as the node lives, reconnecting after a
/// second whenever the subscription breaks.
async fn subscribe(
    config: BusConfig,
    node: u64,
    local: std::sync::Weak<LocalFanout>,
    sequencer: Sequencer,
    db: Arc<dyn Database>,
    bus_up: Arc<AtomicBool>,
) {
    let client = match redis::Client::open(config.redis_url.as_str()) {
        Ok(client) => client,
        Err(error) => {
            tracing::error!(%error, "bad REDIS_URL: the bus cannot subscribe");
            return;
        }
    };
    let channels: Vec<String> = (0..SHARDS)
        .map(|shard| shard_channel(&config.prefix, shard))
        .collect();
    let mut faults = Faults::new(config.fault_rate);
    let mut joined_before = false;
    loop {
        if local.strong_count() == 0 {
            return;
        }
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channels).await {
                Ok(()) => {
                    bus_up.store(true, Ordering::Relaxed);
                    metrics::bus_up(true);
                    if joined_before {
                        tracing::info!("Redis bus back: checking every channel");
                        if let Some(local) = local.upgrade() {
                            tokio::spawn(reload_memberships(local, db.clone()));
                        }
                        sequencer.check_heads();
                    }
                    joined_before = true;
                    let mut messages = pubsub.on_message();
                    while let Some(message) = messages.next().await {
                        if local.strong_count() == 0 {
                            return;
                        }
                        let Ok(payload) = message.get_payload::<String>() else {
                            continue;
                        };
                        match serde_json::from_str::<Envelope>(&payload) {
                            Ok(envelope) if envelope.node == node => {}
                            Ok(envelope) => {
                                for message in faults.pass(envelope.message) {
                                    sequencer.apply_waiting(message).await;
                                }
                            }
                            Err(error) => tracing::warn!(%error, "unreadable bus message"),
                        }
                    }
                    tracing::warn!("lost the Redis bus subscription; reconnecting");
                }
                Err(error) => {
                    tracing::warn!(%error, "cannot subscribe to the Redis bus");
                }
            },
            Err(error) => tracing::warn!(%error, "cannot reach Redis for the bus"),
        }
        bus_up.store(false, Ordering::Relaxed);
        metrics::bus_up(false);
        metrics::redis_error();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Drops, duplicates and reorders a share of received messages (tests only; see
/// [`BusConfig::fault_rate`]).
struct Faults {
    rate: f64,
    /// A message held back, to be delivered after the next one.
    delayed: Option<BusMessage>,
    state: u64,
}

impl Faults {
    fn new(rate: f64) -> Self {
        Self {
            rate,
            delayed: None,
            state: random_node_id() | 1,
        }
    }

    /// A uniform draw in [0, 1) (xorshift; quality is not the point).
    fn draw(&mut self) -> f64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 11) as f64 / (1u64 << 53) as f64
    }

    /// What to apply, in order, for one received message.
    fn pass(&mut self, message: BusMessage) -> Vec<BusMessage> {
        if self.rate <= 0.0 {
            return vec![message];
        }
        let draw = self.draw();
        let third = self.rate / 3.0;
        let mut out = Vec::with_capacity(3);
        if draw < third {
            // Dropped.
        } else if draw < 2.0 * third {
            out.push(message.clone());
            out.push(message);
        } else if draw < self.rate && self.delayed.is_none() {
            self.delayed = Some(message);
            return out;
        } else {
            out.push(message);
        }
        out.extend(self.delayed.take());
        out
    }
}
