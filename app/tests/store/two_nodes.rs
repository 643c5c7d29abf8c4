//! Two nodes on one PostgreSQL database: two `PgDb`s, each with its own pool, writing at once.
//! These run on PostgreSQL in every pass of the suite (SQLite has one writer by design).

use std::collections::HashSet;
use std::sync::Arc;

use app::messages::store::NewMessage;
use app::server::PgDb;

use super::*;

/// Two nodes on one fresh database, and the scratch database (dropped last).
async fn two_nodes() -> (Arc<PgDb>, Arc<PgDb>, ScratchDatabase) {
    let scratch = scratch_postgres().await;
    let a = PgDb::connect(scratch.url()).await.expect("node a");
    let b = PgDb::connect(scratch.url()).await.expect("node b");
    (Arc::new(a), Arc::new(b), scratch)
}

fn new_message(channel_id: i64, sender_id: i64, client_id: String) -> NewMessage {
    NewMessage {
        channel_id,
        sender_id,
        client_id,
        body: "hi".into(),
        created_at: 2,
    }
}

#[tokio::test]
async fn batches_from_two_nodes_over_two_channels_get_gap_free_seqs_in_commit_order() {
    let (a, b, _scratch) = two_nodes().await;
    let ann = user(&a, "ann").await;
    let first = a.create_group(ann.id, "one", &[], 1, CAPS).await.unwrap();
    let second = b.create_group(ann.id, "two", &[], 1, CAPS).await.unwrap();
    // 40 batches of 5, half naming the channels in one order and half in the other, so any
    // batch that locked its channels in batch order instead of id order would deadlock.
    let tasks: Vec<_> = (0..40_u32)
        .map(|n| {
            let node = if n.is_multiple_of(2) {
                a.clone()
            } else {
                b.clone()
            };
            let order = if n % 4 < 2 {
                [first, second]
            } else {
                [second, first]
            };
            tokio::spawn(async move {
                let batch: Vec<NewMessage> = (0..5)
                    .map(|k| new_message(order[k % 2], ann.id, format!("{n}-{k}")))
                    .collect();
                node.insert_messages(&batch).await
            })
        })
        .collect();
    for task in tasks {
        let stored = task.await.unwrap().expect("no error surfaces");
        assert!(stored.iter().all(Option::is_some), "every message stored");
    }
    for channel in [first, second] {
        let page = a
            .list_messages(channel, app::messages::PageCursor::After(0), 200)
            .await
            .unwrap();
        let seqs: Vec<i64> = page.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=100).collect::<Vec<_>>(), "channel {channel}");
        let access = b.channel_access(channel, ann.id).await.unwrap().unwrap();
        assert_eq!(access.last_seq, 100);
        // The sender's read pointer followed their own sends.
        let state = a.read_state(channel).await.unwrap();
        assert_eq!(state.pointers[0].last_read_seq, 100);
    }
}

#[tokio::test]
async fn one_retry_on_two_nodes_at_once_stores_one_message() {
    let (a, b, _scratch) = two_nodes().await;
    let ann = user(&a, "ann").await;
    let channel = a.create_group(ann.id, "deals", &[], 1, CAPS).await.unwrap();
    for round in 0..10 {
        let client_id = format!("retry-{round}");
        let tasks: Vec<_> = (0..20_u32)
            .map(|n| {
                let node = if n.is_multiple_of(2) {
                    a.clone()
                } else {
                    b.clone()
                };
                let message = new_message(channel, ann.id, client_id.clone());
                tokio::spawn(async move { node.insert_messages(&[message]).await })
            })
            .collect();
        let mut stored = Vec::new();
        for task in tasks {
            stored.extend(task.await.unwrap().expect("no error surfaces"));
        }
        let winners: Vec<_> = stored.into_iter().flatten().collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one attempt stores it"
        );
        let original = b.message_by_client_id(ann.id, &client_id).await.unwrap();
        assert_eq!(original.map(|m| m.id), Some(winners[0].id));
    }
    let page = a
        .list_messages(channel, app::messages::PageCursor::After(0), 50)
        .await
        .unwrap();
    let seqs: Vec<i64> = page.messages.iter().map(|m| m.seq).collect();
    assert_eq!(
        seqs,
        (1..=10).collect::<Vec<_>>(),
        "no holes from refused attempts"
    );
}

#[tokio::test]
async fn the_same_key_in_two_channels_at_once_stores_one_and_leaves_no_hole() {
    // Different channels do not serialize on a channel lock: the second insert meets the
    // unique index, rolls back (its seq with it) and retries, finding the key used.
    let (a, b, _scratch) = two_nodes().await;
    let ann = user(&a, "ann").await;
    let first = a.create_group(ann.id, "one", &[], 1, CAPS).await.unwrap();
    let second = a.create_group(ann.id, "two", &[], 1, CAPS).await.unwrap();
    for round in 0..20 {
        let key = format!("same-{round}");
        let (to_first, to_second) = (
            [new_message(first, ann.id, key.clone())],
            [new_message(second, ann.id, key)],
        );
        let (one, two) = tokio::join!(a.insert_messages(&to_first), b.insert_messages(&to_second),);
        let stored = one
            .unwrap()
            .into_iter()
            .chain(two.unwrap())
            .flatten()
            .count();
        assert_eq!(stored, 1, "round {round}");
    }
    let last_seqs = [
        a.channel_access(first, ann.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        a.channel_access(second, ann.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
    ];
    assert_eq!(last_seqs.iter().sum::<i64>(), 20);
    for (channel, last_seq) in [first, second].into_iter().zip(last_seqs) {
        let page = b
            .list_messages(channel, app::messages::PageCursor::After(0), 50)
            .await
            .unwrap();
        let seqs: Vec<i64> = page.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=last_seq).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn two_nodes_creating_one_dm_at_once_make_one_channel() {
    let (a, b, _scratch) = two_nodes().await;
    for round in 0..10 {
        let ann = user(&a, &format!("ann{round}")).await;
        let bob = user(&b, &format!("bob{round}")).await;
        let (one, two) = tokio::join!(
            a.direct_channel(ann.id, bob.id, 5, CAPS),
            b.direct_channel(bob.id, ann.id, 5, CAPS),
        );
        let (one, two) = (one.unwrap(), two.unwrap());
        assert_eq!(one.0, two.0, "round {round}: one channel");
        assert!(one.1 ^ two.1, "round {round}: exactly one created it");
        let detail = a.channel_detail(one.0).await.unwrap().unwrap();
        assert_eq!(detail.members.len(), 2);
    }
}

#[tokio::test]
async fn concurrent_adds_on_two_nodes_never_overshoot_the_member_cap() {
    let (a, b, _scratch) = two_nodes().await;
    let owner = user(&a, "owner").await;
    let caps = MembershipCaps {
        max_members: 5,
        ..CAPS
    };
    let channel = a
        .create_group(owner.id, "small", &[], 1, caps)
        .await
        .unwrap();
    let mut joiners = Vec::new();
    for n in 0..12 {
        joiners.push(user(&a, &format!("joiner{n}")).await.id);
    }
    let tasks: Vec<_> = joiners
        .iter()
        .enumerate()
        .map(|(n, &id)| {
            let node = if n.is_multiple_of(2) {
                a.clone()
            } else {
                b.clone()
            };
            tokio::spawn(async move { node.add_member(channel, id, 3, caps).await })
        })
        .collect();
    let mut added = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(true) => added += 1,
            Ok(false) => panic!("nobody was a member yet"),
            Err(StoreError::CapReached(_)) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(added, 4, "the owner plus four fill five places");
    let members: HashSet<i64> = a
        .channel_detail(channel)
        .await
        .unwrap()
        .unwrap()
        .members
        .iter()
        .map(|m| m.user.id)
        .collect();
    assert_eq!(members.len(), 5);
}

#[tokio::test]
async fn read_pointers_marked_on_two_nodes_at_once_end_at_the_highest() {
    let (a, b, _scratch) = two_nodes().await;
    let ann = user(&a, "ann").await;
    let bob = user(&a, "bob").await;
    let channel = a
        .create_group(ann.id, "deals", &[bob.id], 1, CAPS)
        .await
        .unwrap();
    let batch: Vec<NewMessage> = (0..100)
        .map(|n| new_message(channel, ann.id, format!("m{n}")))
        .collect();
    a.insert_messages(&batch).await.unwrap();
    // Marks in a scrambled order from both nodes: whatever order they commit in, the pointer
    // ends at the highest, and every answer is at least the seq asked for.
    let tasks: Vec<_> = (1..=100_i64)
        .map(|n| (n * 37) % 100 + 1)
        .enumerate()
        .map(|(k, seq)| {
            let node = if k.is_multiple_of(2) {
                a.clone()
            } else {
                b.clone()
            };
            tokio::spawn(async move { (seq, node.mark_read(channel, bob.id, seq).await) })
        })
        .collect();
    for task in tasks {
        let (asked, answer) = task.await.unwrap();
        let (stored, _) = answer.expect("no error surfaces");
        assert!(stored >= asked, "asked {asked}, stored {stored}");
    }
    let state = b.read_state(channel).await.unwrap();
    let bob_pointer = state.pointers.iter().find(|p| p.user_id == bob.id).unwrap();
    assert_eq!(bob_pointer.last_read_seq, 100);
}

#[tokio::test]
async fn an_edit_racing_a_delete_on_another_node_never_brings_the_body_back() {
    let (a, b, _scratch) = two_nodes().await;
    let ann = user(&a, "ann").await;
    let channel = a.create_group(ann.id, "deals", &[], 1, CAPS).await.unwrap();
    for round in 0..20 {
        let stored = a
            .insert_messages(&[new_message(channel, ann.id, format!("r{round}"))])
            .await
            .unwrap()[0]
            .expect("stored");
        let (edited, deleted) = tokio::join!(
            a.edit_message(stored.id, "changed my mind", 10),
            b.delete_message(stored.id, 11),
        );
        edited.expect("no error surfaces");
        let deleted = deleted
            .expect("no error surfaces")
            .expect("the message exists");
        assert_eq!(deleted.body, None, "round {round}");
        let now = a.message_by_id(stored.id).await.unwrap().unwrap();
        assert_eq!(
            (now.body, now.deleted_at),
            (None, Some(11)),
            "round {round}"
        );
        // Deleting again keeps the first deletion time.
        let again = b.delete_message(stored.id, 12).await.unwrap().unwrap();
        assert_eq!(again.deleted_at, Some(11));
    }
}
