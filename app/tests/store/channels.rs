use app::channels::store::CapReached;
use app::channels::{ChannelKind, MemberRole};

use super::*;

#[tokio::test]
async fn group_creation_sets_owner_and_members() {
    let db = fresh_db().await;
    let (ann, bob) = (user(&db, "ann").await, user(&db, "bob").await);
    let id = db
        .create_group(ann.id, "deals", &[bob.id], 10, CAPS)
        .await
        .unwrap();
    let detail = db.channel_detail(id).await.unwrap().unwrap();
    assert_eq!(detail.kind, ChannelKind::Group);
    assert_eq!(detail.name.as_deref(), Some("deals"));
    let roles: Vec<_> = detail.members.iter().map(|m| (m.user.id, m.role)).collect();
    assert_eq!(
        roles,
        [(ann.id, MemberRole::Owner), (bob.id, MemberRole::Member)]
    );
    let access = db.channel_access(id, bob.id).await.unwrap().unwrap();
    assert_eq!(access.role, Some(MemberRole::Member));
    let outsider = user(&db, "cid").await;
    assert_eq!(
        db.channel_access(id, outsider.id)
            .await
            .unwrap()
            .unwrap()
            .role,
        None
    );
    assert!(db.channel_access(id + 100, ann.id).await.unwrap().is_none());
}

#[tokio::test]
async fn direct_channel_is_one_per_pair_in_either_order() {
    let db = fresh_db().await;
    let (ann, bob) = (user(&db, "ann").await, user(&db, "bob").await);
    let (first, created) = db.direct_channel(ann.id, bob.id, 1, CAPS).await.unwrap();
    assert!(created);
    assert_eq!(
        db.direct_channel(bob.id, ann.id, 2, CAPS).await.unwrap(),
        (first, false)
    );
    assert_eq!(db.channel_peers(ann.id).await.unwrap(), [bob.id]);
    assert_eq!(db.channel_ids_for_user(bob.id).await.unwrap(), [first]);
    let summaries = db.channel_summaries(ann.id).await.unwrap();
    assert_eq!(summaries.len(), 1);
    assert_eq!(summaries[0].title, "BOB");
    assert_eq!(summaries[0].peer.as_ref().map(|p| p.id), Some(bob.id));
}

#[tokio::test]
async fn owner_leaving_hands_ownership_to_longest_member() {
    let db = fresh_db().await;
    let (ann, bob, cid) = (
        user(&db, "ann").await,
        user(&db, "bob").await,
        user(&db, "cid").await,
    );
    let id = db
        .create_group(ann.id, "deals", &[], 1, CAPS)
        .await
        .unwrap();
    db.add_member(id, cid.id, 5, CAPS).await.unwrap();
    db.add_member(id, bob.id, 9, CAPS).await.unwrap();
    assert!(
        !db.add_member(id, bob.id, 10, CAPS).await.unwrap(),
        "already a member"
    );
    assert!(db.remove_member(id, ann.id).await.unwrap());
    let detail = db.channel_detail(id).await.unwrap().unwrap();
    let owner = detail
        .members
        .iter()
        .find(|m| m.role == MemberRole::Owner)
        .unwrap();
    assert_eq!(owner.user.id, cid.id, "cid joined before bob");
    assert!(
        !db.remove_member(id, ann.id).await.unwrap(),
        "not a member any more"
    );
}

#[tokio::test]
async fn added_member_starts_with_everything_read() {
    let db = fresh_db().await;
    let (ann, bob) = (user(&db, "ann").await, user(&db, "bob").await);
    let id = db
        .create_group(ann.id, "deals", &[], 1, CAPS)
        .await
        .unwrap();
    for n in 0..3 {
        send(&db, id, ann.id, &format!("c{n}"), "hi", 2)
            .await
            .unwrap();
    }
    db.add_member(id, bob.id, 3, CAPS).await.unwrap();
    let bob_view = db.channel_summaries(bob.id).await.unwrap();
    assert_eq!(
        (bob_view[0].last_read_seq, bob_view[0].unread_count),
        (3, 0)
    );
}

#[tokio::test]
async fn channel_size_cap_counts_the_owner_and_allows_re_adding() {
    let db = fresh_db().await;
    let (ann, bob, cid) = (
        user(&db, "ann").await,
        user(&db, "bob").await,
        user(&db, "cid").await,
    );
    let caps = MembershipCaps {
        max_members: 2,
        ..CAPS
    };
    let full = db
        .create_group(ann.id, "deals", &[bob.id, cid.id], 1, caps)
        .await
        .unwrap_err();
    assert!(
        matches!(
            full,
            StoreError::CapReached(CapReached::ChannelFull { max: 2 })
        ),
        "{full:?}"
    );
    let id = db
        .create_group(ann.id, "deals", &[bob.id], 1, caps)
        .await
        .unwrap();
    let refused = db.add_member(id, cid.id, 2, caps).await.unwrap_err();
    assert!(matches!(
        refused,
        StoreError::CapReached(CapReached::ChannelFull { max: 2 })
    ));
    assert!(!db.add_member(id, bob.id, 3, caps).await.unwrap());
    assert_eq!(
        db.channel_detail(id).await.unwrap().unwrap().members.len(),
        2
    );
}

#[tokio::test]
async fn channels_per_user_cap_refuses_every_way_in_but_finds_an_existing_dm() {
    let db = fresh_db().await;
    let (ann, bob, cid) = (
        user(&db, "ann").await,
        user(&db, "bob").await,
        user(&db, "cid").await,
    );
    let caps = MembershipCaps {
        max_channels_per_user: 2,
        ..CAPS
    };
    let (dm, _) = db.direct_channel(ann.id, bob.id, 1, caps).await.unwrap();
    let group = db
        .create_group(cid.id, "deals", &[], 1, caps)
        .await
        .unwrap();
    db.create_group(bob.id, "b", &[], 1, caps).await.unwrap();
    // bob is now in 2 channels: the DM and his group.
    let is_bob_full = |error: StoreError| {
        matches!(error, StoreError::CapReached(CapReached::ChannelsPerUser { ref user_ids, max: 2 })
            if *user_ids == [bob.id])
    };
    assert!(is_bob_full(
        db.add_member(group, bob.id, 2, caps).await.unwrap_err()
    ));
    assert!(is_bob_full(
        db.create_group(cid.id, "more", &[bob.id], 2, caps)
            .await
            .unwrap_err()
    ));
    assert!(is_bob_full(
        db.create_group(bob.id, "own", &[], 2, caps)
            .await
            .unwrap_err()
    ));
    assert!(is_bob_full(
        db.direct_channel(cid.id, bob.id, 2, caps)
            .await
            .unwrap_err()
    ));
    assert_eq!(
        db.direct_channel(bob.id, ann.id, 3, caps).await.unwrap(),
        (dm, false)
    );
    assert_eq!(db.channel_ids_for_user(bob.id).await.unwrap().len(), 2);
    // Nothing half-made: the refused group does not exist for cid either.
    assert_eq!(db.channel_ids_for_user(cid.id).await.unwrap(), [group]);
}
