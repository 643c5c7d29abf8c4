//! The cluster sequencer's bounded queue: commands it had to drop (queue full) cost latency,
//! never a message or a wrong subscription, because the task then resynchronizes from the
//! database. Real storage on both backends; the queue is made tiny to overflow it.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use app::realtime::protocol::ServerEvent;
use app::realtime::server::fanout::{BusMessage, HubConfig, LocalFanout, Target};
use app::realtime::server::sequencer::{HeadCheck, Sequencer};

use super::{CAPS, fresh_db, send, user};

/// A typing event for `channel_id`: filler that takes a queue slot.
fn filler(channel_id: i64) -> BusMessage {
    BusMessage::Deliver {
        target: Target::Channel(channel_id),
        event: ServerEvent::Typing {
            channel_id,
            user_id: 0,
            expires_at: 0,
        },
    }
}

#[tokio::test]
async fn an_overflowed_queue_loses_no_message_and_no_leave() {
    let db = fresh_db().await;
    let ann = user(&db, "ann").await;
    let bob = user(&db, "bob").await;
    let channel = db
        .create_group(ann.id, "deal", &[bob.id], 1, CAPS)
        .await
        .expect("group");

    let local = Arc::new(LocalFanout::new(HubConfig::default()));
    let sequencer = Sequencer::with_capacity(
        local.clone(),
        db.handle(),
        HeadCheck::default(),
        Arc::new(AtomicBool::new(true)),
        4,
    );
    let watch = sequencer.clone();
    local.watch_channels(Box::new(move |change| watch.channel_changed(change)));
    let mut bobs_tab = local
        .register(bob.id, [0; 16], &[channel])
        .expect("register");
    sequencer.ready(channel).await;

    // A message is stored while the queue is full: its delivery, and a leave, are dropped.
    let stored = send(&db, channel, ann.id, "c1", "escrow by Friday", 2)
        .await
        .expect("send")
        .message;
    for _ in 0..64 {
        sequencer.apply(filler(channel));
    }
    sequencer.apply(BusMessage::Deliver {
        target: Target::Channel(channel),
        event: ServerEvent::MessageCreated {
            message: stored.clone(),
        },
    });

    // The resync repairs the message from the database, in order, once.
    let delivered = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let outbound = bobs_tab.rx.recv().await.expect("queue open");
            if outbound.seq == Some(stored.seq) {
                return outbound;
            }
        }
    })
    .await
    .expect("the dropped message arrives through the resync");
    assert!(delivered.text.as_str().contains("escrow by Friday"));

    // Bob is removed while the queue is full again and the leave is dropped: the resync
    // reloads his memberships, so his connection stops receiving the channel.
    assert!(db.remove_member(channel, bob.id).await.expect("remove"));
    for _ in 0..64 {
        sequencer.apply(filler(channel));
    }
    sequencer.apply(BusMessage::Leave {
        user_id: bob.id,
        channel_id: channel,
    });
    tokio::time::timeout(Duration::from_secs(5), async {
        while local.receives(bobs_tab.id, channel) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the dropped leave is applied by the resync");
}
