//! What only PostgreSQL does: several nodes on one database, and `copy-db` moving a SQLite
//! deployment onto it. These run against the local PostgreSQL in both passes of the suite.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde_json::{Value, json};
use tokio::process::Command;

use crate::helpers::{TestApp, TestDatabase, TestUser};
use crate::process::{all_messages, free_port, start};

/// Two in-process nodes, each with its own pool, on one fresh PostgreSQL database.
async fn two_nodes() -> (TestApp, TestApp) {
    let database = TestDatabase::postgres().await;
    let shared = database.share();
    let first = TestApp::spawn_on(database, TestApp::test_config()).await;
    let second = TestApp::spawn_on(shared, TestApp::test_config()).await;
    (first, second)
}

fn node(nodes: &(TestApp, TestApp), n: usize) -> &TestApp {
    if n.is_multiple_of(2) {
        &nodes.0
    } else {
        &nodes.1
    }
}

#[tokio::test]
async fn sends_split_over_two_nodes_get_seqs_one_to_two_hundred() {
    let nodes = two_nodes().await;
    let ann = nodes.0.signup("ann").await;
    let bob = nodes.1.signup("bob").await;
    let channel = nodes.0.group(&ann, &[&bob]).await;
    let sends = (0..200_usize).map(|n| {
        let sender = if n.is_multiple_of(3) { &bob } else { &ann };
        node(&nodes, n).call(
            "messages/send",
            Some(&sender.token),
            json!({"channel_id": channel, "client_id": uuid::Uuid::new_v4().to_string(),
                   "body": format!("message {n}")}),
        )
    });
    let replies = futures_util::future::join_all(sends).await;
    let mut seqs: Vec<i64> = replies
        .into_iter()
        .map(|reply| reply.ok()["seq"].as_i64().expect("seq"))
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    let stored = all_messages(&nodes.1.http, &nodes.1.base, &ann.token, channel).await;
    let stored_seqs: Vec<i64> = stored.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(stored_seqs, (1..=200).collect::<Vec<_>>());
}

#[tokio::test]
async fn one_retry_sent_twenty_times_to_two_nodes_stores_one_message() {
    let nodes = two_nodes().await;
    let ann = nodes.0.signup("ann").await;
    let channel = nodes.1.group(&ann, &[]).await;
    let client_id = uuid::Uuid::new_v4().to_string();
    let sends = (0..20).map(|n| {
        node(&nodes, n).call(
            "messages/send",
            Some(&ann.token),
            json!({"channel_id": channel, "client_id": client_id, "body": "once"}),
        )
    });
    let replies = futures_util::future::join_all(sends).await;
    let ids: BTreeSet<i64> = replies
        .into_iter()
        .map(|reply| reply.ok()["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(ids.len(), 1, "every retry answers with the one original");
    let stored = all_messages(&nodes.0.http, &nodes.0.base, &ann.token, channel).await;
    assert_eq!(stored, vec![(client_id, 1)]);
}

#[tokio::test]
async fn two_nodes_opening_one_dm_at_once_make_one_channel() {
    let nodes = two_nodes().await;
    for round in 0..5 {
        let ann = nodes.0.signup(&format!("ann{round}")).await;
        let bob = nodes.1.signup(&format!("bob{round}")).await;
        let (one, two) = tokio::join!(
            nodes.0.call(
                "channels/direct",
                Some(&ann.token),
                json!({"user_id": bob.id})
            ),
            nodes.1.call(
                "channels/direct",
                Some(&bob.token),
                json!({"user_id": ann.id})
            ),
        );
        let (one, two) = (one.ok(), two.ok());
        assert_eq!(one["id"], two["id"], "round {round}");
        let list = nodes
            .0
            .call("channels/list", Some(&ann.token), json!({}))
            .await
            .ok();
        assert_eq!(
            list.as_array().map(Vec::len),
            Some(1),
            "round {round}: {list}"
        );
    }
}

/// Everything `user` can see through the API: who they are, their channel list, and every
/// channel's messages and read pointers.
async fn everything_seen_by(app: &TestApp, user: &TestUser) -> Value {
    let me = app.call("auth/me", Some(&user.token), json!({})).await.ok();
    let list = app
        .call("channels/list", Some(&user.token), json!({}))
        .await
        .ok();
    let mut channels = Vec::new();
    for row in list.as_array().expect("list") {
        let id = row["id"].as_i64().expect("id");
        let mut messages = Vec::new();
        let mut after = 0;
        loop {
            let page = app
                .call(
                    "messages/list",
                    Some(&user.token),
                    json!({"channel_id": id, "after_seq": after, "limit": 100}),
                )
                .await
                .ok();
            let batch = page["messages"].as_array().expect("messages").clone();
            after = batch
                .last()
                .map_or(after, |m| m["seq"].as_i64().expect("seq"));
            messages.extend(batch);
            if page["has_more"] != true {
                break;
            }
        }
        let detail = app
            .call("channels/get", Some(&user.token), json!({"channel_id": id}))
            .await
            .ok();
        let reads = app
            .call("read/state", Some(&user.token), json!({"channel_id": id}))
            .await
            .ok();
        channels.push(json!({"detail": detail, "messages": messages, "reads": reads}));
    }
    json!({"me": me, "list": list, "channels": channels})
}

async fn copy_db(from: &str, to: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dealnest-chat"))
        .args(["copy-db", "--from", from, "--to", to])
        .env("LOG_LEVEL", "warn")
        .output()
        .await
        .expect("run copy-db")
}

#[tokio::test]
async fn copy_db_moves_a_live_sqlite_deployment_to_postgres_with_everything_intact() {
    let sqlite = TestDatabase::sqlite();
    let port = free_port();
    let mut source = start(sqlite.url(), port).await;
    let app = TestApp::attach(
        SocketAddr::from(([127, 0, 0, 1], port)),
        TestDatabase::sqlite(),
    );
    let (ann, bob, cid) = (
        app.signup("ann").await,
        app.signup("bob").await,
        app.signup("cid").await,
    );
    let group = app.group(&ann, &[&bob, &cid]).await;
    for n in 0..250_u32 {
        let sender = if n.is_multiple_of(2) { &ann } else { &bob };
        app.send(sender, group, &format!("deal note {n}")).await;
    }
    let direct = app
        .call(
            "channels/direct",
            Some(&cid.token),
            json!({"user_id": ann.id}),
        )
        .await
        .ok()["id"]
        .as_i64()
        .expect("dm id");
    let first_dm = app.send(&cid, direct, "hello ann").await;
    app.call(
        "messages/edit",
        Some(&cid.token),
        json!({"message_id": first_dm["id"], "body": "hello, Ann"}),
    )
    .await
    .ok();
    let gone = app.send(&ann, direct, "oops").await;
    app.call(
        "messages/delete",
        Some(&ann.token),
        json!({"message_id": gone["id"]}),
    )
    .await
    .ok();
    app.call(
        "read/mark",
        Some(&cid.token),
        json!({"channel_id": group, "seq": 120}),
    )
    .await
    .ok();
    let before: Vec<Value> = vec![
        everything_seen_by(&app, &ann).await,
        everything_seen_by(&app, &bob).await,
        everything_seen_by(&app, &cid).await,
    ];

    // Copied while the source server still runs: the copy is one snapshot of the file.
    let postgres = TestDatabase::postgres().await;
    let copied = copy_db(sqlite.url(), postgres.url()).await;
    let stdout = String::from_utf8_lossy(&copied.stdout);
    assert!(
        copied.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&copied.stderr)
    );
    assert!(
        stdout.contains("messages") && stdout.contains("252 / 252"),
        "{stdout}"
    );
    assert!(stdout.contains("done, verified"), "{stdout}");
    source.child.start_kill().expect("stop the SQLite node");
    source.child.wait().await.expect("stopped");

    let moved = TestApp::spawn_on(postgres, TestApp::test_config()).await;
    let after: Vec<Value> = vec![
        everything_seen_by(&moved, &ann).await,
        everything_seen_by(&moved, &bob).await,
        everything_seen_by(&moved, &cid).await,
    ];
    assert_eq!(
        before, after,
        "the same channels, messages, seqs, pointers and sessions"
    );

    // New rows continue after the copied ones: ids and seqs both.
    let next = moved.send(&bob, group, "first on PostgreSQL").await;
    assert_eq!(next["seq"], 251);
    assert!(next["id"].as_i64() > gone["id"].as_i64(), "{next}");
    let dave = moved.signup("dave").await;
    assert!(dave.id > cid.id);

    // A second copy into the now non-empty database is refused, and changes nothing.
    let again = copy_db(sqlite.url(), moved.database.url()).await;
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains("not empty"), "{stderr}");
    assert!(stderr.contains("4 users"), "{stderr}");
}

#[tokio::test]
async fn copy_db_names_a_missing_source() {
    let postgres = TestDatabase::postgres().await;
    let copied = copy_db("/nonexistent/dealnest.db", postgres.url()).await;
    assert!(!copied.status.success());
    let stderr = String::from_utf8_lossy(&copied.stderr);
    assert!(
        stderr.contains("cannot read the SQLite database /nonexistent/dealnest.db"),
        "{stderr}"
    );
}
