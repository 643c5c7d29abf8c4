//! The hub: the handle every service and connection holds to publish events and to register
//! connections. It joins this node's [`LocalFanout`] with the broker chosen where the state is
//! built: the fan-out itself on a single node, the Redis bus (with its [`Sequencer`]) on a node
//! of a cluster.

use std::sync::Arc;

use super::fanout::{
    Broker, BusMessage, ConnId, HubConfig, LocalFanout, RegisterError, Registration, SessionEnded,
    SessionTag, Target,
};
use super::redis_bus::{BusConfig, RedisBroker};
use super::sequencer::Sequencer;
use crate::realtime::protocol::ServerEvent;
use crate::server::Database;

/// The hub handle every service and connection holds.
#[derive(Clone)]
pub struct Hub {
    local: Arc<LocalFanout>,
    broker: Arc<dyn Broker>,
    /// Orders channel events on a node of a cluster (`None` on a single node).
    sequencer: Option<Sequencer>,
}

impl Hub {
    /// A hub on a single node: the fan-out is the broker.
    pub fn new(config: HubConfig) -> Self {
        let local = Arc::new(LocalFanout::new(config));
        Self {
            broker: local.clone(),
            local,
            sequencer: None,
        }
    }

    /// A hub on a node of a cluster: events travel between nodes over the Redis bus, and
    /// messages are ordered, and gaps repaired, from `db` (see `realtime/server/sequencer.rs`).
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
        self.local.register(user_id, session, channels)
    }

    /// Whether the connection receives `channel_id` (i.e. its user is a member).
    pub fn receives(&self, conn_id: ConnId, channel_id: i64) -> bool {
        self.local.receives(conn_id, channel_id)
    }

    /// Open connections on this node.
    pub fn connection_count(&self) -> usize {
        self.local.connection_count()
    }

    /// Open connections of `user_id` on this node.
    pub fn user_connection_count(&self, user_id: i64) -> usize {
        self.local.user_connection_count(user_id)
    }

    pub fn broker_name(&self) -> &'static str {
        self.broker.name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::protocol::close_code;

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
