use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn read_pointer_never_moves_back() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.signup("ann").await, app.signup("bob").await);
    let channel = app.group(&ann, &[&bob]).await;
    for n in 1..=5 {
        app.send(&ann, channel, &format!("m{n}")).await;
    }
    let mark = |seq: i64| {
        app.call(
            "read/mark",
            Some(&bob.token),
            json!({ "channel_id": channel, "seq": seq }),
        )
    };
    assert_eq!(mark(4).await.ok()["last_read_seq"], 4);
    assert_eq!(mark(2).await.ok()["last_read_seq"], 4);
    mark(6).await.invalid("seq");
    let state = app
        .call(
            "read/state",
            Some(&ann.token),
            json!({ "channel_id": channel }),
        )
        .await
        .ok();
    assert_eq!(state["last_seq"], 5);
    let pointers: Vec<_> = state["pointers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["user_id"].as_i64().unwrap(),
                p["last_read_seq"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pointers, [(ann.id, 5), (bob.id, 4)]);
}

#[tokio::test]
async fn unread_counts_follow_sends_and_reads() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.signup("ann").await, app.signup("bob").await);
    let channel = app.group(&ann, &[&bob]).await;
    for n in 1..=3 {
        app.send(&ann, channel, &format!("m{n}")).await;
    }
    assert_eq!(app.summary(&bob, channel).await["unread_count"], 3);
    assert_eq!(
        app.summary(&ann, channel).await["unread_count"],
        0,
        "own messages are read"
    );

    app.call(
        "read/mark",
        Some(&bob.token),
        json!({ "channel_id": channel, "seq": 2 }),
    )
    .await
    .ok();
    assert_eq!(app.summary(&bob, channel).await["unread_count"], 1);

    // Bob replying reads everything before his message too.
    app.send(&bob, channel, "reply").await;
    assert_eq!(app.summary(&bob, channel).await["unread_count"], 0);
    assert_eq!(app.summary(&ann, channel).await["unread_count"], 1);
    let detail = app
        .call(
            "channels/get",
            Some(&ann.token),
            json!({ "channel_id": channel }),
        )
        .await
        .ok();
    let pointers: Vec<_> = detail["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["last_read_seq"].as_i64())
        .collect();
    assert_eq!(pointers, [Some(3), Some(4)]);
}
