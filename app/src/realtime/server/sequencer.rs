//! Per-channel ordering of live events on a node of a cluster, where messages arrive over an
//! at-most-once bus (Redis pub/sub) from every node: in any order, twice, or never.
//!
//! One task owns, per channel with local subscribers, the highest seq delivered to them. A
//! `message_created` at or below it is dropped; the next one is delivered; a jump is held while
//! the gap is **repaired from the database** (`seq > delivered`, in order), then the held events
//! follow. A periodic head check compares each channel's `last_seq` in the database with what
//! was delivered and repairs any channel that is behind, so a lost last message, or a whole
//! bus outage, still reaches every client within one interval.
//!
//! A channel's stream starts when it gains its first local subscriber, at the `last_seq` read
//! then. A connection's catch-up replay waits for that read ([`Sequencer::ready`]), so the replay
//! reads at least as far as the stream starts from: every seq is covered by one or the other.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::fanout::{BusMessage, ChannelChange, LocalFanout, Target};
use crate::messages::{Message, PageCursor};
use crate::realtime::protocol::ServerEvent;
use crate::server::storage::StoreResult;
use crate::server::{Database, metrics};

/// Messages read per database page during a repair.
const REPAIR_PAGE: u32 = 200;
/// Most messages one repair pass delivers; a channel further behind continues on the next pass.
const REPAIR_MAX: usize = 2_000;
/// Most seqs a channel holds while waiting for a repair (the database may be down). Beyond it
/// the held events are dropped: the repair reads every seq after the delivered one from the
/// database, in its current state, edits and deletions included, so nothing is lost.
const MAX_HELD: usize = 10_000;
/// Commands waiting for the task. A command that finds it full is dropped and counted, and the
/// task then resynchronizes from the truth (which channels this node's connections receive,
/// each connected user's stored memberships, every channel's head), so a burst it cannot keep
/// up with costs latency, never a lost message or a wrong subscription.
const QUEUE: usize = 65_536;

/// How often heads are checked.
#[derive(Debug, Clone, Copy)]
pub struct HeadCheck {
    /// While the bus is up.
    pub every: Duration,
    /// While the bus is down: every message then arrives through repairs.
    pub every_while_down: Duration,
}

impl Default for HeadCheck {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(2),
            every_while_down: Duration::from_millis(500),
        }
    }
}

enum Command {
    /// A bus message, from this node or another.
    Apply(BusMessage),
    Change(ChannelChange),
    WhenReady(i64, oneshot::Sender<()>),
    Started {
        channel_id: i64,
        last_seq: StoreResult<i64>,
    },
    Repaired {
        channel_id: i64,
        messages: StoreResult<Vec<Message>>,
    },
    Heads(StoreResult<Vec<(i64, i64)>>),
    CheckHeads,
}

/// Cheap handle to the sequencer task.
#[derive(Clone)]
pub struct Sequencer {
    commands: mpsc::Sender<Command>,
    /// Set when a command was dropped because the queue was full: the task resynchronizes.
    overflowed: Arc<AtomicBool>,
}

impl Sequencer {
    /// Starts the task; it delivers through `local` and repairs from `db`. `bus_up` tells it
    /// which head-check interval applies.
    pub fn start(
        local: Arc<LocalFanout>,
        db: Arc<dyn Database>,
        head_check: HeadCheck,
        bus_up: Arc<AtomicBool>,
    ) -> Self {
        Self::with_capacity(local, db, head_check, bus_up, QUEUE)
    }

    /// [`Self::start`] with a queue of `capacity` commands (tests overflow it on purpose).
    pub fn with_capacity(
        local: Arc<LocalFanout>,
        db: Arc<dyn Database>,
        head_check: HeadCheck,
        bus_up: Arc<AtomicBool>,
        capacity: usize,
    ) -> Self {
        let (commands, queue) = mpsc::channel(capacity.max(1));
        let sequencer = Self {
            commands,
            overflowed: Arc::new(AtomicBool::new(false)),
        };
        let task = Task {
            local: Arc::downgrade(&local),
            db,
            streams: HashMap::new(),
            commands: sequencer.commands.downgrade(),
            checking_heads: false,
            overflowed: sequencer.overflowed.clone(),
        };
        tokio::spawn(task.run(queue, head_check, bus_up));
        sequencer
    }

    /// Applies a bus message to this node's connections, in the order given; messages of a
    /// channel in seq order. Every bus message comes through here, not only messages: a `Leave`
    /// must not overtake the `member_removed` published before it, which the removed user
    /// still has to receive.
    pub fn apply(&self, message: BusMessage) {
        self.enqueue(Command::Apply(message));
    }

    /// [`Self::apply`] for a caller that can wait (the bus subscriber): a full queue slows it
    /// down instead of dropping.
    pub async fn apply_waiting(&self, message: BusMessage) {
        let _ = self.commands.send(Command::Apply(message)).await;
    }

    pub fn channel_changed(&self, change: ChannelChange) {
        self.enqueue(Command::Change(change));
    }

    /// Queues `command` without waiting (callers hold locks or serve requests); a full queue
    /// drops it and makes the task resynchronize.
    fn enqueue(&self, command: Command) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.commands.try_send(command) {
            if !self.overflowed.swap(true, Ordering::Relaxed) {
                tracing::warn!("sequencer queue full: dropping commands until it resynchronizes");
            }
            metrics::sequencer_dropped();
        }
    }

    /// Completes once `channel_id`'s stream knows where it starts (at once when there is no
    /// stream: nobody here subscribes to it).
    pub async fn ready(&self, channel_id: i64) {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(Command::WhenReady(channel_id, tx))
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }

    /// Compares every channel with the database now (after the bus reconnects, say).
    pub fn check_heads(&self) {
        self.enqueue(Command::CheckHeads);
    }
}

struct Stream {
    /// The highest seq delivered here; `None` until the start is read.
    delivered: Option<i64>,
    /// Events for seqs above `delivered`, waiting for the ones before them: the
    /// `message_created` first, then any update of the same message.
    held: BTreeMap<i64, Vec<(Target, ServerEvent)>>,
    waiters: Vec<oneshot::Sender<()>>,
    repairing: bool,
}

impl Stream {
    fn new() -> Self {
        Self {
            delivered: None,
            held: BTreeMap::new(),
            waiters: Vec::new(),
            repairing: false,
        }
    }
}

struct Task {
    /// Weak: the fanout holds this task's handle (to report channel changes), and the task
    /// must end when the hub goes.
    local: Weak<LocalFanout>,
    db: Arc<dyn Database>,
    streams: HashMap<i64, Stream>,
    /// For spawned reads to report back; weak so the task ends with the last handle.
    commands: mpsc::WeakSender<Command>,
    checking_heads: bool,
    overflowed: Arc<AtomicBool>,
}

fn is_created(event: &ServerEvent) -> bool {
    matches!(event, ServerEvent::MessageCreated { .. })
}

/// The channel and seq a message event is about.
fn message_position(event: &ServerEvent) -> Option<(i64, i64)> {
    match event {
        ServerEvent::MessageCreated { message }
        | ServerEvent::MessageUpdated { message }
        | ServerEvent::MessageDeleted { message } => Some((message.channel_id, message.seq)),
        // Named one by one: a new event kind must decide whether it is ordered by seq.
        ServerEvent::Hello { .. }
        | ServerEvent::Typing { .. }
        | ServerEvent::TypingStopped { .. }
        | ServerEvent::ReadUpdated { .. }
        | ServerEvent::Presence { .. }
        | ServerEvent::MemberAdded { .. }
        | ServerEvent::MemberRemoved { .. }
        | ServerEvent::ChannelUpdated { .. }
        | ServerEvent::CaughtUp { .. }
        | ServerEvent::Error { .. }
        | ServerEvent::Pong { .. } => None,
    }
}

/// Delivers to this node's connections while the hub lives.
fn apply(local: &Weak<LocalFanout>, message: BusMessage) {
    if let Some(local) = local.upgrade() {
        local.apply(message);
    }
}

impl Task {
    async fn run(
        mut self,
        mut queue: mpsc::Receiver<Command>,
        head_check: HeadCheck,
        bus_up: Arc<AtomicBool>,
    ) {
        let mut ticks = tokio::time::interval(head_check.every_while_down);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut since_check = Duration::ZERO;
        loop {
            tokio::select! {
                command = queue.recv() => match command {
                    Some(command) => self.handle(command),
                    None => return,
                },
                _ = ticks.tick() => {
                    metrics::sequencer_queue_depth(queue.len());
                    if self.overflowed.swap(false, Ordering::Relaxed) {
                        self.resync();
                    }
                    since_check += head_check.every_while_down;
                    let due = if bus_up.load(Ordering::Relaxed) {
                        head_check.every
                    } else {
                        head_check.every_while_down
                    };
                    if since_check >= due {
                        since_check = Duration::ZERO;
                        self.check_heads();
                    }
                }
            }
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Apply(BusMessage::Deliver { target, event }) => self.deliver(target, event),
            Command::Apply(other) => apply(&self.local, other),
            Command::Change(ChannelChange::Subscribed(channel_id)) => self.start(channel_id),
            Command::Change(ChannelChange::Unsubscribed(channel_id)) => {
                // Its waiters are dropped, which releases them: nobody here needs the stream.
                self.streams.remove(&channel_id);
            }
            Command::WhenReady(channel_id, waiter) => match self.streams.get_mut(&channel_id) {
                Some(stream) if stream.delivered.is_none() => stream.waiters.push(waiter),
                _ => {
                    let _ = waiter.send(());
                }
            },
            Command::Started {
                channel_id,
                last_seq,
            } => self.started(channel_id, last_seq),
            Command::Repaired {
                channel_id,
                messages,
            } => self.repaired(channel_id, messages),
            Command::Heads(heads) => self.heads(heads),
            Command::CheckHeads => self.check_heads(),
        }
    }

    fn deliver(&mut self, target: Target, event: ServerEvent) {
        let Some((channel_id, seq)) = message_position(&event) else {
            // Typing, receipts, membership: no seq to order by.
            apply(&self.local, BusMessage::Deliver { target, event });
            return;
        };
        let Some(stream) = self.streams.get_mut(&channel_id) else {
            // Nobody here subscribes to the channel.
            return;
        };
        let created = is_created(&event);
        match stream.delivered {
            Some(delivered) if seq <= delivered => {
                // An update of a message already delivered goes out; a repeat of one does not.
                if !created {
                    apply(&self.local, BusMessage::Deliver { target, event });
                }
            }
            Some(delivered) if seq == delivered + 1 && created && !stream.repairing => {
                apply(&self.local, BusMessage::Deliver { target, event });
                stream.delivered = Some(seq);
                self.flush(channel_id);
            }
            _ => {
                if stream.held.len() >= MAX_HELD {
                    stream.held.clear();
                }
                let held = stream.held.entry(seq).or_default();
                if created {
                    if held.iter().any(|(_, e)| is_created(e)) {
                        return;
                    }
                    held.insert(0, (target, event));
                } else {
                    held.push((target, event));
                }
                self.repair_if_behind(channel_id);
            }
        }
    }

    /// Delivers held events that have become next in line.
    fn flush(&mut self, channel_id: i64) {
        let Some(stream) = self.streams.get_mut(&channel_id) else {
            return;
        };
        let Some(mut delivered) = stream.delivered else {
            return;
        };
        while let Some(entry) = stream.held.first_entry() {
            let seq = *entry.key();
            let has_created = entry.get().iter().any(|(_, e)| is_created(e));
            if seq <= delivered {
                // Delivered already (by a repair): only its updates go out.
                for (target, event) in entry.remove() {
                    if !is_created(&event) {
                        apply(&self.local, BusMessage::Deliver { target, event });
                    }
                }
            } else if seq == delivered + 1 && has_created {
                for (target, event) in entry.remove() {
                    apply(&self.local, BusMessage::Deliver { target, event });
                }
                delivered = seq;
            } else {
                break;
            }
        }
        stream.delivered = Some(delivered);
    }

    /// Starts a repair when events wait behind a gap.
    fn repair_if_behind(&mut self, channel_id: i64) {
        let Some(stream) = self.streams.get_mut(&channel_id) else {
            return;
        };
        let (Some(delivered), false) = (stream.delivered, stream.repairing) else {
            return;
        };
        if stream
            .held
            .keys()
            .next()
            .is_some_and(|&seq| seq > delivered)
        {
            self.repair(channel_id, delivered);
        }
    }

    fn repair(&mut self, channel_id: i64, after: i64) {
        let Some(stream) = self.streams.get_mut(&channel_id) else {
            return;
        };
        stream.repairing = true;
        let (db, commands) = (self.db.clone(), self.commands.clone());
        tokio::spawn(async move {
            let messages = read_after(db.as_ref(), channel_id, after).await;
            if let Some(commands) = commands.upgrade() {
                let _ = commands
                    .send(Command::Repaired {
                        channel_id,
                        messages,
                    })
                    .await;
            }
        });
    }

    fn repaired(&mut self, channel_id: i64, messages: StoreResult<Vec<Message>>) {
        let Some(stream) = self.streams.get_mut(&channel_id) else {
            return;
        };
        stream.repairing = false;
        match messages {
            Ok(messages) => {
                let mut delivered = stream.delivered.unwrap_or(0);
                for message in messages {
                    if message.seq != delivered + 1 {
                        // Only a gap-free run is delivered; the rest waits for the next pass.
                        break;
                    }
                    delivered = message.seq;
                    apply(
                        &self.local,
                        BusMessage::Deliver {
                            target: Target::Channel(channel_id),
                            event: ServerEvent::MessageCreated { message },
                        },
                    );
                }
                crate::server::metrics::bus_repaired(delivered - stream.delivered.unwrap_or(0));
                stream.delivered = Some(delivered);
                self.flush(channel_id);
                self.repair_if_behind(channel_id);
            }
            Err(error) => {
                // The next head check (or held event) tries again.
                tracing::warn!(%error, channel_id, "gap repair failed");
            }
        }
    }

    fn start(&mut self, channel_id: i64) {
        if self.streams.contains_key(&channel_id) {
            return;
        }
        self.streams.insert(channel_id, Stream::new());
        let (db, commands) = (self.db.clone(), self.commands.clone());
        tokio::spawn(async move {
            let last_seq = db
                .last_seqs(&[channel_id])
                .await
                .map(|heads| heads.first().map_or(0, |&(_, last_seq)| last_seq));
            if let Some(commands) = commands.upgrade() {
                let _ = commands
                    .send(Command::Started {
                        channel_id,
                        last_seq,
                    })
                    .await;
            }
        });
    }

    fn started(&mut self, channel_id: i64, last_seq: StoreResult<i64>) {
        let Some(stream) = self.streams.get_mut(&channel_id) else {
            return;
        };
        match last_seq {
            Ok(last_seq) => {
                stream.delivered = Some(last_seq);
                for waiter in stream.waiters.drain(..) {
                    let _ = waiter.send(());
                }
                self.flush(channel_id);
                self.repair_if_behind(channel_id);
            }
            Err(error) => {
                tracing::warn!(%error, channel_id, "reading a channel's head failed; retrying");
                self.streams.remove(&channel_id);
                let commands = self.commands.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if let Some(commands) = commands.upgrade() {
                        let _ = commands
                            .send(Command::Change(ChannelChange::Subscribed(channel_id)))
                            .await;
                    }
                });
            }
        }
    }

    /// After dropped commands: streams for exactly the channels someone here receives, every
    /// connected user's subscriptions set to their stored memberships (a dropped join or leave),
    /// and every head checked (a dropped message).
    fn resync(&mut self) {
        let Some(local) = self.local.upgrade() else {
            return;
        };
        let subscribed = local.subscribed_channels();
        self.streams
            .retain(|channel_id, _| subscribed.contains(channel_id));
        for channel_id in subscribed {
            self.start(channel_id);
        }
        tokio::spawn(reload_memberships(local, self.db.clone()));
        self.check_heads();
    }

    fn check_heads(&mut self) {
        if self.checking_heads {
            return;
        }
        let channels: Vec<i64> = self
            .streams
            .iter()
            .filter(|(_, stream)| stream.delivered.is_some())
            .map(|(&channel_id, _)| channel_id)
            .collect();
        if channels.is_empty() {
            return;
        }
        self.checking_heads = true;
        let (db, commands) = (self.db.clone(), self.commands.clone());
        tokio::spawn(async move {
            let heads = db.last_seqs(&channels).await;
            if let Some(commands) = commands.upgrade() {
                let _ = commands.send(Command::Heads(heads)).await;
            }
        });
    }

    fn heads(&mut self, heads: StoreResult<Vec<(i64, i64)>>) {
        self.checking_heads = false;
        let heads = match heads {
            Ok(heads) => heads,
            Err(error) => {
                tracing::warn!(%error, "head check failed");
                return;
            }
        };
        for (channel_id, last_seq) in heads {
            let behind = self.streams.get(&channel_id).and_then(|stream| {
                let delivered = stream.delivered?;
                (last_seq > delivered && !stream.repairing).then_some(delivered)
            });
            if let Some(delivered) = behind {
                self.repair(channel_id, delivered);
            }
        }
    }
}

/// Up to [`REPAIR_MAX`] messages of `channel_id` after `after`, oldest first.
async fn read_after(db: &dyn Database, channel_id: i64, after: i64) -> StoreResult<Vec<Message>> {
    let mut messages = Vec::new();
    let mut cursor = after;
    loop {
        let page = db
            .list_messages(channel_id, PageCursor::After(cursor), REPAIR_PAGE)
            .await?;
        cursor = page.messages.last().map_or(cursor, |m| m.seq);
        messages.extend(page.messages);
        if !page.has_more || messages.len() >= REPAIR_MAX {
            return Ok(messages);
        }
    }
}

/// Sets each connected user's subscriptions to their memberships as stored, for when joins and
/// leaves may have been lost (the bus was down, or this task's queue overflowed).
pub async fn reload_memberships(local: Arc<LocalFanout>, db: Arc<dyn Database>) {
    for user_id in local.connected_users() {
        match db.channel_ids_for_user(user_id).await {
            Ok(channels) => local.set_channels_of(user_id, &channels),
            Err(error) => {
                tracing::warn!(%error, user_id, "reloading memberships failed");
                return;
            }
        }
    }
}
