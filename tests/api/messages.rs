use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn fifty_concurrent_sends_get_seqs_1_to_50() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let (ann, bob) = (app.signup("ann").await, app.signup("bob").await);
    let channel = app.group(&ann, &[&bob]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..50 {
        let (app, sender) = (
            app.clone(),
            if n % 2 == 0 { ann.clone() } else { bob.clone() },
        );
        tasks.spawn(async move {
            app.send(&sender, channel, &format!("message {n}")).await["seq"]
                .as_i64()
                .unwrap()
        });
    }
    let mut seqs = tasks.join_all().await;
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    let page = app
        .call(
            "messages/list",
            Some(&ann.token),
            json!({ "channel_id": channel, "limit": 200 }),
        )
        .await
        .ok();
    let listed: Vec<_> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(listed, (1..=50).collect::<Vec<_>>());
}

#[tokio::test]
async fn same_client_id_twice_stores_one_message() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    let channel = app.group(&ann, &[]).await;
    let send = json!({ "channel_id": channel, "client_id": "0b7e7a43-5d3c-4a9e-9f55-0a4a3c2f8d11", "body": "once" });
    let first = app
        .call("messages/send", Some(&ann.token), send.clone())
        .await
        .ok();
    let second = app.call("messages/send", Some(&ann.token), send).await.ok();
    assert_eq!(first, second);
    let page = app.newest_page(&ann, channel).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    // The same key in another channel is refused, not silently answered with the first.
    let other = app.group(&ann, &[]).await;
    app.call(
        "messages/send",
        Some(&ann.token),
        json!({ "channel_id": other, "client_id": "0b7e7a43-5d3c-4a9e-9f55-0a4a3c2f8d11", "body": "once" }),
    )
    .await
    .err(409);
}

#[tokio::test]
async fn paging_with_before_and_after_seq() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    let channel = app.group(&ann, &[]).await;
    for n in 1..=7 {
        app.send(&ann, channel, &format!("m{n}")).await;
    }
    let seqs = |page: &serde_json::Value| -> Vec<i64> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect()
    };
    let newest = app
        .call(
            "messages/list",
            Some(&ann.token),
            json!({ "channel_id": channel, "limit": 3 }),
        )
        .await
        .ok();
    assert_eq!(
        (seqs(&newest), newest["has_more"].as_bool()),
        (vec![5, 6, 7], Some(true))
    );
    let older = app
        .call(
            "messages/list",
            Some(&ann.token),
            json!({ "channel_id": channel, "limit": 3, "before_seq": 5 }),
        )
        .await
        .ok();
    assert_eq!(seqs(&older), [2, 3, 4]);
    let newer = app
        .call(
            "messages/list",
            Some(&ann.token),
            json!({ "channel_id": channel, "after_seq": 5 }),
        )
        .await
        .ok();
    assert_eq!(
        (seqs(&newer), newer["has_more"].as_bool()),
        (vec![6, 7], Some(false))
    );
}

#[tokio::test]
async fn sender_edits_and_deletes_deleted_body_is_not_returned() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.signup("ann").await, app.signup("bob").await);
    let channel = app.group(&ann, &[&bob]).await;
    let message = app.send(&ann, channel, "top secret terms").await;
    let id = message["id"].clone();

    app.call(
        "messages/edit",
        Some(&bob.token),
        json!({ "message_id": id, "body": "hijack" }),
    )
    .await
    .err(403);
    app.call(
        "messages/delete",
        Some(&bob.token),
        json!({ "message_id": id }),
    )
    .await
    .err(403);

    let edited = app
        .call(
            "messages/edit",
            Some(&ann.token),
            json!({ "message_id": id, "body": "revised terms" }),
        )
        .await
        .ok();
    assert_eq!(edited["body"], "revised terms");
    assert!(edited["edited_at"].is_i64());

    let deleted = app
        .call(
            "messages/delete",
            Some(&ann.token),
            json!({ "message_id": id }),
        )
        .await
        .ok();
    assert_eq!(
        (deleted["body"].is_null(), deleted["deleted_at"].is_i64()),
        (true, true)
    );
    let page = app.newest_page(&bob, channel).await;
    let listed = &page["messages"][0];
    assert_eq!(
        (listed["seq"].as_i64(), listed["body"].is_null()),
        (Some(1), true)
    );
    assert!(!page.to_string().contains("secret") && !page.to_string().contains("revised"));
    let summary = app.summary(&bob, channel).await;
    assert!(summary["last_message"]["body"].is_null());

    app.call(
        "messages/edit",
        Some(&ann.token),
        json!({ "message_id": id, "body": "back" }),
    )
    .await
    .err(409);
    app.call(
        "messages/delete",
        Some(&ann.token),
        json!({ "message_id": 9999 }),
    )
    .await
    .err(404);
}

#[tokio::test]
async fn rejected_send_stores_nothing() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    let channel = app.group(&ann, &[]).await;
    app.send(&ann, channel, "kept").await;
    app.call(
        "messages/send",
        Some(&ann.token),
        json!({ "channel_id": channel, "client_id": uuid::Uuid::new_v4(), "body": "x".repeat(4001) }),
    )
    .await
    .invalid("body");
    let next = app.send(&ann, channel, "after").await;
    assert_eq!(next["seq"], 2, "the rejected send took no seq");
    let page = app.newest_page(&ann, channel).await;
    let bodies: Vec<_> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(bodies, [json!("kept"), json!("after")]);
}

#[tokio::test]
async fn a_burst_of_retries_with_one_client_id_stores_one_message() {
    // Concurrent sends land in the same writer batch: the key must still win only once.
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let ann = app.signup("ann").await;
    let channel = app.group(&ann, &[]).await;
    let send = json!({ "channel_id": channel, "client_id": "5f0c2a1e-8b1d-4c3e-9a6f-2d7b9e4c1a00", "body": "once" });
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (app, ann, send) = (app.clone(), ann.clone(), send.clone());
        tasks.spawn(async move { app.call("messages/send", Some(&ann.token), send).await.ok() });
    }
    let replies = tasks.join_all().await;
    assert!(
        replies.iter().all(|reply| reply == &replies[0]),
        "{replies:?}"
    );
    assert_eq!(replies[0]["seq"], 1);
    let page = app.newest_page(&ann, channel).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
}
