use std::sync::Arc;

use app::auth::PublicUser;
use app::messages::PageCursor;
use app::messages::store::NewMessage;

use super::*;

#[tokio::test]
async fn concurrent_inserts_get_gap_free_seqs() {
    let db = fresh_db().await;
    let db = Arc::new(db);
    let ann = user(&db, "ann").await;
    let channel = db
        .create_group(ann.id, "deals", &[], 1, CAPS)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|n| {
            let db = db.clone();
            tokio::spawn(async move {
                send(&db, channel, ann.id, &format!("client-{n}"), "hi", 2)
                    .await
                    .unwrap()
                    .message
                    .seq
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for task in tasks {
        seqs.push(task.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    assert_eq!(
        db.channel_access(channel, ann.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        50
    );
}

#[tokio::test]
async fn same_client_id_returns_the_original() {
    let db = fresh_db().await;
    let ann = user(&db, "ann").await;
    let channel = db
        .create_group(ann.id, "deals", &[], 1, CAPS)
        .await
        .unwrap();
    let first = send(&db, channel, ann.id, "c1", "hello", 2).await.unwrap();
    let again = send(&db, channel, ann.id, "c1", "hello again", 3)
        .await
        .unwrap();
    assert!(first.created && !again.created);
    assert_eq!(again.message, first.message);
    let page = db
        .list_messages(channel, PageCursor::Newest, 50)
        .await
        .unwrap();
    assert_eq!(page.messages.len(), 1);
    // Another sender may use the same key independently.
    let bob = user(&db, "bob").await;
    db.add_member(channel, bob.id, 4, CAPS).await.unwrap();
    assert!(
        send(&db, channel, bob.id, "c1", "hi", 5)
            .await
            .unwrap()
            .created
    );
}

#[tokio::test]
async fn paging_by_seq_in_both_directions() {
    let db = fresh_db().await;
    let ann = user(&db, "ann").await;
    let channel = db
        .create_group(ann.id, "deals", &[], 1, CAPS)
        .await
        .unwrap();
    for n in 1..=10 {
        send(&db, channel, ann.id, &format!("c{n}"), &format!("m{n}"), n)
            .await
            .unwrap();
    }
    let seqs =
        |page: &app::messages::MessagePage| page.messages.iter().map(|m| m.seq).collect::<Vec<_>>();
    let newest = db
        .list_messages(channel, PageCursor::Newest, 4)
        .await
        .unwrap();
    assert_eq!((seqs(&newest), newest.has_more), (vec![7, 8, 9, 10], true));
    let older = db
        .list_messages(channel, PageCursor::Before(7), 4)
        .await
        .unwrap();
    assert_eq!((seqs(&older), older.has_more), (vec![3, 4, 5, 6], true));
    let oldest = db
        .list_messages(channel, PageCursor::Before(3), 4)
        .await
        .unwrap();
    assert_eq!((seqs(&oldest), oldest.has_more), (vec![1, 2], false));
    let newer = db
        .list_messages(channel, PageCursor::After(8), 4)
        .await
        .unwrap();
    assert_eq!((seqs(&newer), newer.has_more), (vec![9, 10], false));
    let middle = db
        .list_messages(channel, PageCursor::After(2), 3)
        .await
        .unwrap();
    assert_eq!((seqs(&middle), middle.has_more), (vec![3, 4, 5], true));
}

#[tokio::test]
async fn edit_and_delete_keep_seq_and_hide_deleted_body() {
    let db = fresh_db().await;
    let ann = user(&db, "ann").await;
    let channel = db
        .create_group(ann.id, "deals", &[], 1, CAPS)
        .await
        .unwrap();
    let sent = send(&db, channel, ann.id, "c1", "secret", 2)
        .await
        .unwrap()
        .message;
    let edited = db
        .edit_message(sent.id, "edited", 3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (edited.body.as_deref(), edited.edited_at),
        (Some("edited"), Some(3))
    );
    let deleted = db.delete_message(sent.id, 4).await.unwrap().unwrap();
    assert_eq!(
        (deleted.body, deleted.deleted_at, deleted.seq),
        (None, Some(4), sent.seq)
    );
    assert!(
        db.edit_message(sent.id, "again", 5)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        db.delete_message(sent.id, 6)
            .await
            .unwrap()
            .unwrap()
            .deleted_at,
        Some(4)
    );
    let listed = db
        .list_messages(channel, PageCursor::Newest, 10)
        .await
        .unwrap();
    assert_eq!(listed.messages[0].body, None);
    let summary = &db.channel_summaries(ann.id).await.unwrap()[0];
    assert_eq!(summary.last_message.as_ref().unwrap().body, None);
}

#[tokio::test]
async fn read_pointer_only_moves_forward_and_sender_reads_own() {
    let db = fresh_db().await;
    let (ann, bob) = (user(&db, "ann").await, user(&db, "bob").await);
    let channel = db
        .create_group(ann.id, "deals", &[bob.id], 1, CAPS)
        .await
        .unwrap();
    for n in 1..=5 {
        send(&db, channel, ann.id, &format!("c{n}"), "hi", n)
            .await
            .unwrap();
    }
    assert_eq!(db.mark_read(channel, bob.id, 4).await.unwrap(), (4, true));
    assert_eq!(
        db.mark_read(channel, bob.id, 2).await.unwrap(),
        (4, false),
        "never moves back"
    );
    let state = db.read_state(channel).await.unwrap();
    let pointers: Vec<_> = state
        .pointers
        .iter()
        .map(|p| (p.user_id, p.last_read_seq))
        .collect();
    assert_eq!(pointers, [(ann.id, 5), (bob.id, 4)]);
    assert_eq!(state.seen_by(4, ann.id).collect::<Vec<_>>(), [bob.id]);
    assert!(state.seen_by(5, ann.id).next().is_none());
}

/// Ann and Bob in "deals" (Ann's), Bob alone in "news", Eve in neither.
struct TwoChannels {
    ann: PublicUser,
    bob: PublicUser,
    eve: PublicUser,
    deals: i64,
    news: i64,
}

async fn two_channels(db: &impl AsDatabase) -> TwoChannels {
    let (ann, bob, eve) = (
        user(db, "ann").await,
        user(db, "bob").await,
        user(db, "eve").await,
    );
    let db = db.database();
    let deals = db
        .create_group(ann.id, "deals", &[bob.id], 1, CAPS)
        .await
        .unwrap();
    let news = db.create_group(bob.id, "news", &[], 1, CAPS).await.unwrap();
    TwoChannels {
        ann,
        bob,
        eve,
        deals,
        news,
    }
}

/// A message whose body names its key.
fn new_message(channel_id: i64, sender_id: i64, client_id: &str) -> NewMessage {
    NewMessage {
        channel_id,
        sender_id,
        client_id: client_id.to_owned(),
        body: format!("from {client_id}"),
        created_at: 2,
    }
}

/// Each member's read pointer in `channel`, as (user id, seq).
async fn read_pointers(db: &impl AsDatabase, channel: i64) -> Vec<(i64, i64)> {
    db.database()
        .read_state(channel)
        .await
        .unwrap()
        .pointers
        .iter()
        .map(|p| (p.user_id, p.last_read_seq))
        .collect()
}

#[tokio::test]
async fn a_batch_stores_in_order_across_channels_and_skips_what_it_must() {
    let db = fresh_db().await;
    let TwoChannels {
        ann,
        bob,
        eve,
        deals,
        news,
    } = two_channels(&db).await;
    let stored = db
        .insert_messages(&[
            new_message(deals, ann.id, "a1"),
            new_message(news, bob.id, "b1"),
            new_message(deals, bob.id, "b2"),
            // The same key again within the batch: the first one stands.
            new_message(deals, ann.id, "a1"),
            // Not a member, and no such channel: nothing stored, no error.
            new_message(deals, eve.id, "e1"),
            new_message(9999, ann.id, "a2"),
            new_message(deals, ann.id, "a3"),
        ])
        .await
        .unwrap();
    let seqs: Vec<_> = stored.iter().map(|s| s.map(|s| s.seq)).collect();
    assert_eq!(seqs, [Some(1), Some(1), Some(2), None, None, None, Some(3)]);
    let page = db
        .list_messages(deals, PageCursor::Newest, 10)
        .await
        .unwrap();
    let bodies: Vec<_> = page
        .messages
        .iter()
        .map(|m| (m.seq, m.body.as_deref().unwrap()))
        .collect();
    assert_eq!(bodies, [(1, "from a1"), (2, "from b2"), (3, "from a3")]);
    assert_eq!(
        read_pointers(&db, deals).await,
        [(ann.id, 3), (bob.id, 2)],
        "senders read their own"
    );
    assert_eq!(
        db.channel_access(news, bob.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        1
    );
    assert!(
        db.message_by_client_id(eve.id, "e1")
            .await
            .unwrap()
            .is_none()
    );
}

/// A batch of one takes the single-statement path: it must apply the same rules.
#[tokio::test]
async fn a_lone_send_skips_what_it_must_and_advances_pointers() {
    let db = fresh_db().await;
    let TwoChannels {
        ann,
        bob,
        eve,
        deals,
        news,
    } = two_channels(&db).await;
    let mut seqs = Vec::new();
    for message in [
        new_message(deals, ann.id, "a1"),
        new_message(deals, bob.id, "b1"),
        // The key again, in the same channel and in another: nothing stored.
        new_message(deals, ann.id, "a1"),
        new_message(news, bob.id, "b1"),
        // Not a member, and no such channel.
        new_message(deals, eve.id, "e1"),
        new_message(9999, ann.id, "a2"),
        new_message(news, bob.id, "b2"),
        new_message(deals, ann.id, "a3"),
    ] {
        let stored = db.insert_messages(&[message]).await.unwrap();
        assert_eq!(stored.len(), 1);
        seqs.push(stored[0].map(|s| s.seq));
    }
    assert_eq!(
        seqs,
        [Some(1), Some(2), None, None, None, None, Some(1), Some(3)]
    );
    assert_eq!(
        read_pointers(&db, deals).await,
        [(ann.id, 3), (bob.id, 2)],
        "senders read their own"
    );
    for (channel, last_seq) in [(deals, 3), (news, 1)] {
        let access = db.channel_access(channel, bob.id).await.unwrap().unwrap();
        assert_eq!(access.last_seq, last_seq);
    }
    assert!(
        db.message_by_client_id(eve.id, "e1")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_batch_larger_than_one_statement_stays_gap_free() {
    let db = fresh_db().await;
    let ann = user(&db, "ann").await;
    let (a, b) = (
        db.create_group(ann.id, "a", &[], 1, CAPS).await.unwrap(),
        db.create_group(ann.id, "b", &[], 1, CAPS).await.unwrap(),
    );
    send(&db, a, ann.id, "before", "hi", 1).await.unwrap();
    let batch: Vec<_> = (0..1_100)
        .map(|n| NewMessage {
            channel_id: if n % 3 == 0 { b } else { a },
            sender_id: ann.id,
            client_id: format!("c{n}"),
            body: "hi".into(),
            created_at: 2,
        })
        .collect();
    let stored = db.insert_messages(&batch).await.unwrap();
    let (mut in_a, mut in_b) = (vec![], vec![]);
    for (message, stored) in batch.iter().zip(&stored) {
        let seq = stored.expect("every message stored").seq;
        if message.channel_id == a {
            in_a.push(seq);
        } else {
            in_b.push(seq);
        }
    }
    assert_eq!(in_a, (2..=734).collect::<Vec<_>>());
    assert_eq!(in_b, (1..=367).collect::<Vec<_>>());
    let ids: std::collections::HashSet<_> = stored.iter().map(|s| s.unwrap().id).collect();
    assert_eq!(ids.len(), 1_100, "each gets its own id");
    assert_eq!(
        db.channel_access(a, ann.id)
            .await
            .unwrap()
            .unwrap()
            .last_seq,
        734
    );
}

/// Sends never checkpoint the WAL themselves (that stalled them); a background task copies it
/// into the database file instead, so the file grows without any send paying for it.
#[tokio::test]
async fn the_wal_is_checkpointed_in_the_background() {
    let (db, dir) = fresh_sqlite().await;
    let ann = user(&db, "ann").await;
    let channel = db.create_group(ann.id, "busy", &[], 1, CAPS).await.unwrap();
    let file = dir.path().join("dealnest.db");
    // Let a first checkpoint take the schema in; measure from there.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let before = std::fs::metadata(&file).unwrap().len();
    let batch: Vec<NewMessage> = (0..2000)
        .map(|n| NewMessage {
            channel_id: channel,
            sender_id: ann.id,
            client_id: format!("00000000-0000-7000-8000-{n:012}"),
            body: "x".repeat(200),
            created_at: 2,
        })
        .collect();
    db.insert_messages(&batch).await.unwrap();
    let mut grown = false;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if std::fs::metadata(&file).unwrap().len() > before + 200_000 {
            grown = true;
            break;
        }
    }
    assert!(grown, "the database file never received the WAL's pages");
}
