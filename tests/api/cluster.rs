//! Three nodes sharing one PostgreSQL database and one Redis: what a user on one node sees is
//! what a user on a single node would, even when the bus loses, repeats and reorders messages.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::helpers::{TestApp, TestDatabase, TestUser, WsClient, WsFrame, ws_connect};
use crate::process::{
    Senders, all_messages, assert_acknowledged_are_stored, create_channel, free_port, post, signup,
    start_with,
};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Three in-process nodes on one fresh PostgreSQL database and one bus of their own on the
/// machine's Redis; `fault_rate` of the bus messages each node receives are dropped, repeated
/// or reordered.
async fn three_nodes(fault_rate: f64) -> Vec<TestApp> {
    three_nodes_on(&redis_url(), fault_rate).await
}

async fn three_nodes_on(redis_url: &str, fault_rate: f64) -> Vec<TestApp> {
    let database = TestDatabase::postgres().await;
    let prefix = format!("dealnest-test-{}", uuid::Uuid::new_v4());
    let mut config = TestApp::test_config();
    config.presence.redis_url = Some(redis_url.to_owned());
    config.presence.redis_prefix = prefix;
    config.head_check.every = Duration::from_millis(500);
    config.head_check.every_while_down = Duration::from_millis(200);
    config.bus_fault_rate = fault_rate;
    let shared = [database.share(), database.share()];
    let mut nodes = vec![TestApp::spawn_on(database, config.clone()).await];
    for database in shared {
        nodes.push(TestApp::spawn_on(database, config.clone()).await);
    }
    for node in &nodes {
        assert_eq!(node.health().await["broker"], "redis");
    }
    nodes
}

/// A client of `user` on `node`, caught up on `channels` from the start.
async fn connect(node: &TestApp, user: &TestUser, channels: &[i64]) -> WsClient {
    let mut client = node.ws_no_resume(user).await;
    let cursors: Vec<_> = channels
        .iter()
        .map(|id| json!({"channel_id": id, "after_seq": 0}))
        .collect();
    client
        .send(json!({"type": "resume", "channels": cursors}))
        .await;
    let mut caught_up = 0;
    while caught_up < channels.len() {
        let event = client.event().await;
        if event["type"] == "caught_up" {
            caught_up += 1;
        }
    }
    client
}

/// Reads `client`'s events until it has `expected[channel]` messages of each channel (or 15 s
/// pass): the seqs of each channel in the order they arrived.
async fn receive_all(
    client: &mut WsClient,
    expected: &BTreeMap<i64, i64>,
) -> BTreeMap<i64, Vec<i64>> {
    let mut seen: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let complete = |seen: &BTreeMap<i64, Vec<i64>>| {
        expected
            .iter()
            .all(|(channel, count)| seen.get(channel).map_or(0, Vec::len) as i64 >= *count)
    };
    while !complete(&seen) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.next_frame(left).await {
            Some(WsFrame::Event(event)) if event["type"] == "message_created" => {
                let message = &event["message"];
                seen.entry(message["channel_id"].as_i64().expect("channel"))
                    .or_default()
                    .push(message["seq"].as_i64().expect("seq"));
            }
            Some(WsFrame::Event(_)) => {}
            other => panic!("stream ended before every message arrived: {other:?}; got {seen:?}"),
        }
    }
    // Anything more (a duplicate) would arrive at once.
    while let Some(WsFrame::Event(event)) = client.next_frame(Duration::from_millis(300)).await {
        if event["type"] == "message_created" {
            let message = &event["message"];
            seen.entry(message["channel_id"].as_i64().expect("channel"))
                .or_default()
                .push(message["seq"].as_i64().expect("seq"));
        }
    }
    seen
}

/// Senders on every node into one hot channel and two quieter ones; every client on every node
/// receives seqs 1..N of each of its channels exactly once, in order, as stored.
async fn everyone_receives_everything_in_order(fault_rate: f64) {
    let nodes = three_nodes(fault_rate).await;
    let mut users = Vec::new();
    for n in 0..6_usize {
        users.push(nodes[n % 3].signup(&format!("user{n}")).await);
    }
    let everyone: Vec<&TestUser> = users[1..].iter().collect();
    let hot = nodes[0].group(&users[0], &everyone).await;
    let evens = nodes[1].group(&users[0], &[&users[2], &users[4]]).await;
    let odds = nodes[2].group(&users[1], &[&users[3], &users[5]]).await;
    let channels_of = |n: usize| -> Vec<i64> {
        if n.is_multiple_of(2) {
            vec![hot, evens]
        } else {
            vec![hot, odds]
        }
    };

    // Each user is connected to two nodes (a laptop and a phone).
    let mut clients = Vec::new();
    for (n, user) in users.iter().enumerate() {
        for node in [n % 3, (n + 1) % 3] {
            clients.push((n, connect(&nodes[node], user, &channels_of(n)).await));
        }
    }

    let plan: Vec<(usize, i64)> = (0..240)
        .map(|k| {
            let sender = k % 6;
            let channel = if k % 4 == 3 {
                channels_of(sender)[1]
            } else {
                hot
            };
            (sender, channel)
        })
        .collect();
    let sends = plan.iter().enumerate().map(|(k, &(sender, channel))| {
        nodes[k % 3].call(
            "messages/send",
            Some(&users[sender].token),
            json!({"channel_id": channel, "client_id": uuid::Uuid::new_v4().to_string(),
                   "body": format!("message {k}")}),
        )
    });
    for reply in futures_util::future::join_all(sends).await {
        reply.ok();
    }

    let mut stored: BTreeMap<i64, i64> = BTreeMap::new();
    for (channel, owner) in [(hot, &users[0]), (evens, &users[0]), (odds, &users[1])] {
        let messages = all_messages(&nodes[2].http, &nodes[2].base, &owner.token, channel).await;
        let seqs: Vec<i64> = messages.iter().map(|(_, seq)| *seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as i64).collect::<Vec<_>>());
        stored.insert(channel, seqs.len() as i64);
    }
    assert_eq!(stored.values().sum::<i64>(), 240);

    for (n, client) in &mut clients {
        let expected: BTreeMap<i64, i64> = channels_of(*n)
            .into_iter()
            .map(|channel| (channel, stored[&channel]))
            .collect();
        let seen = receive_all(client, &expected).await;
        for (channel, count) in &expected {
            assert_eq!(
                seen.get(channel).cloned().unwrap_or_default(),
                (1..=*count).collect::<Vec<_>>(),
                "user {n}, channel {channel}: each seq once, in order"
            );
        }
    }
}

#[tokio::test]
async fn three_nodes_deliver_every_message_once_in_order() {
    everyone_receives_everything_in_order(0.0).await;
}

#[tokio::test]
async fn three_nodes_deliver_every_message_once_in_order_over_a_faulty_bus() {
    everyone_receives_everything_in_order(0.1).await;
}

/// The next event of `kind` about `about`'s user id, skipping presence and other events.
async fn next_of(client: &mut WsClient, kind: &str) -> serde_json::Value {
    loop {
        let event = client.event().await;
        if event["type"] == kind {
            return event;
        }
    }
}

#[tokio::test]
async fn what_happens_on_one_node_reaches_clients_on_the_others() {
    let nodes = three_nodes(0.0).await;
    let ann = nodes[0].signup("ann").await;
    let bob = nodes[1].signup("bob").await;
    let cid = nodes[2].signup("cid").await;
    let channel = nodes[0].group(&ann, &[&bob]).await;
    let mut bob_ws = connect(&nodes[1], &bob, &[channel]).await;
    let mut cid_ws = connect(&nodes[2], &cid, &[]).await;
    let mut ann_ws = connect(&nodes[0], &ann, &[channel]).await;

    // Presence: Bob, on node 1, sees Ann come online on node 0.
    let online = next_of(&mut bob_ws, "presence").await;
    assert_eq!(
        (online["user_id"].as_i64(), &online["state"]),
        (Some(ann.id), &json!("online"))
    );

    // Typing on node 0 reaches node 1.
    ann_ws
        .send(json!({"type": "typing", "channel_id": channel}))
        .await;
    assert_eq!(
        next_of(&mut bob_ws, "typing").await["user_id"].as_i64(),
        Some(ann.id)
    );

    // A message sent through node 2, edited through node 1 and deleted through node 0.
    let sent = nodes[2].send(&ann, channel, "draft terms").await;
    assert_eq!(
        next_of(&mut bob_ws, "message_created").await["message"]["id"],
        sent["id"]
    );
    nodes[1]
        .call(
            "messages/edit",
            Some(&ann.token),
            json!({"message_id": sent["id"], "body": "final terms"}),
        )
        .await
        .ok();
    let updated = next_of(&mut bob_ws, "message_updated").await;
    assert_eq!(updated["message"]["body"], "final terms");
    nodes[0]
        .call(
            "messages/delete",
            Some(&ann.token),
            json!({"message_id": sent["id"]}),
        )
        .await
        .ok();
    let deleted = next_of(&mut bob_ws, "message_deleted").await;
    assert_eq!(deleted["message"]["body"], serde_json::Value::Null);

    // Bob reads through node 2; Ann, on node 0, sees it.
    nodes[2]
        .call(
            "read/mark",
            Some(&bob.token),
            json!({"channel_id": channel, "seq": 1}),
        )
        .await
        .ok();
    let read = next_of(&mut ann_ws, "read_updated").await;
    assert_eq!(
        (read["user_id"].as_i64(), read["last_read_seq"].as_i64()),
        (Some(bob.id), Some(1))
    );

    // Cid is added through node 1 and, on node 2, receives the channel from then on.
    nodes[1]
        .call(
            "channels/add_member",
            Some(&ann.token),
            json!({"channel_id": channel, "user_id": cid.id}),
        )
        .await
        .ok();
    assert_eq!(
        next_of(&mut cid_ws, "member_added").await["user"]["id"].as_i64(),
        Some(cid.id)
    );
    nodes[0].send(&ann, channel, "welcome cid").await;
    assert_eq!(
        next_of(&mut cid_ws, "message_created").await["message"]["body"],
        "welcome cid"
    );

    // Bob is removed through node 2: on node 1 he stops receiving at once.
    nodes[2]
        .call(
            "channels/remove_member",
            Some(&ann.token),
            json!({"channel_id": channel, "user_id": bob.id}),
        )
        .await
        .ok();
    assert_eq!(
        next_of(&mut bob_ws, "member_removed").await["user_id"].as_i64(),
        Some(bob.id)
    );
    nodes[0].send(&ann, channel, "bob is gone").await;
    assert_eq!(
        next_of(&mut cid_ws, "message_created").await["message"]["body"],
        "bob is gone"
    );
    while let Some(WsFrame::Event(event)) = bob_ws.next_frame(Duration::from_millis(400)).await {
        assert_ne!(
            event["type"], "message_created",
            "removed, yet received {event}"
        );
    }

    // Ann signs out through node 1: her sockets on nodes 0 and 2 close with 4001, and once
    // they have, her token is refused there too (node 2 had it cached).
    let mut ann_on_two = connect(&nodes[2], &ann, &[channel]).await;
    nodes[2]
        .call("auth/me", Some(&ann.token), json!({}))
        .await
        .ok();
    nodes[1]
        .call("auth/logout", Some(&ann.token), json!({}))
        .await
        .ok();
    assert_eq!(ann_ws.close_code().await, Some(4001));
    assert_eq!(ann_on_two.close_code().await, Some(4001));
    for node in &nodes {
        node.call("auth/me", Some(&ann.token), json!({}))
            .await
            .err(401);
    }
}

/// A `redis-server` of the test's own, so the test can kill it.
struct OwnRedis {
    port: u16,
    child: Option<tokio::process::Child>,
}

impl OwnRedis {
    async fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        redis.restart().await;
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not come up on port {}", self.port);
    }

    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().expect("kill redis-server");
            child.wait().await.expect("redis-server gone");
        }
    }
}

/// Waits until `node`'s `/health` says Redis is `state`.
async fn redis_becomes(node: &TestApp, state: &str) {
    for _ in 0..100 {
        if node.health().await["redis"] == state {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/health never said redis {state}: {}", node.health().await);
}

#[tokio::test]
async fn messages_keep_flowing_between_nodes_while_redis_is_down_and_after_it_returns() {
    let mut redis = OwnRedis::start().await;
    let nodes = three_nodes_on(&redis.url(), 0.0).await;
    let mut users = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        users.push(node.signup(&format!("user{n}")).await);
    }
    let channel = nodes[0].group(&users[0], &[&users[1], &users[2]]).await;
    let mut clients = Vec::new();
    for (n, user) in users.iter().enumerate() {
        clients.push(connect(&nodes[n], user, &[channel]).await);
    }
    let send = |k: usize| {
        nodes[k % 3].call(
            "messages/send",
            Some(&users[k % 3].token),
            json!({"channel_id": channel, "client_id": uuid::Uuid::new_v4().to_string(),
                   "body": format!("message {k}")}),
        )
    };

    for k in 0..30 {
        send(k).await.ok();
    }
    redis.kill().await;
    for node in &nodes {
        redis_becomes(node, "unreachable").await;
    }
    // Sends keep succeeding, and reach every node's clients through the head checks.
    for k in 30..60 {
        send(k).await.ok();
    }
    let expected = BTreeMap::from([(channel, 60)]);
    for client in &mut clients {
        let seen = receive_all(client, &expected).await;
        assert_eq!(
            seen[&channel],
            (1..=60).collect::<Vec<_>>(),
            "while Redis is down"
        );
    }
    // User 2 leaves while Redis is down: the other nodes cannot hear it yet.
    clients.pop().expect("user 2's client").close().await;

    redis.restart().await;
    for node in &nodes {
        redis_becomes(node, "reachable").await;
    }
    // Presence converges: once Redis is back, the others learn that user 2 is offline.
    for client in &mut clients {
        loop {
            let event = next_of(client, "presence").await;
            if event["user_id"].as_i64() == Some(users[2].id) {
                assert_eq!(event["state"], "offline", "{event}");
                break;
            }
        }
    }
    for k in 60..90 {
        send(k).await.ok();
    }
    let expected = BTreeMap::from([(channel, 30)]);
    for client in &mut clients {
        let seen = receive_all(client, &expected).await;
        assert_eq!(
            seen[&channel],
            (61..=90).collect::<Vec<_>>(),
            "after Redis is back"
        );
    }
}

/// Opens `/ws` on the node at `base` as `token`'s user and resumes `channel` after `after_seq`.
async fn resume_on(base: &str, token: &str, channel: i64, after_seq: i64) -> WsClient {
    let addr = base
        .trim_start_matches("http://")
        .parse()
        .expect("node address");
    let mut client = ws_connect(addr, &[("authorization", format!("Bearer {token}"))])
        .await
        .expect("websocket upgrade");
    assert_eq!(client.event().await["type"], "hello");
    client
        .send(json!({"type": "resume", "channels": [{"channel_id": channel, "after_seq": after_seq}]}))
        .await;
    client
}

/// The seqs of `message_created` events `client` receives until its stream ends, or until it
/// has seen `through` (then it waits a moment for anything doubled).
async fn seqs_until(client: &mut WsClient, through: Option<i64>) -> Vec<i64> {
    let mut seqs = Vec::new();
    loop {
        let wait = if through.is_some_and(|last| seqs.last() >= Some(&last)) {
            Duration::from_millis(300)
        } else {
            Duration::from_secs(15)
        };
        match client.next_frame(wait).await {
            Some(WsFrame::Event(event)) if event["type"] == "message_created" => {
                seqs.push(event["message"]["seq"].as_i64().expect("seq"));
            }
            Some(WsFrame::Event(_)) => {}
            None if through.is_some_and(|last| seqs.last() >= Some(&last)) => return seqs,
            None => panic!("stopped hearing before seq {through:?}; got {seqs:?}"),
            Some(_) => return seqs,
        }
    }
}

#[tokio::test]
async fn a_node_killed_mid_run_loses_nothing_and_its_clients_resume_on_another() {
    let database = TestDatabase::postgres().await;
    let prefix = format!("dealnest-test-{}", uuid::Uuid::new_v4());
    let redis = redis_url();
    let env = [
        ("REDIS_URL", redis.as_str()),
        ("REDIS_PREFIX", prefix.as_str()),
        ("HEAD_CHECK_MS", "500"),
        ("PRESENCE_GRACE_SECS", "0"),
    ];
    let mut victim = start_with(database.url(), free_port(), &env, false).await;
    let survivor = start_with(database.url(), free_port(), &env, false).await;
    let http = reqwest::Client::new();
    let (_, ann) = signup(&http, &victim.base, "ann").await;
    let (bob_id, bob) = signup(&http, &survivor.base, "bob").await;
    let channel = create_channel(&http, &victim.base, &ann, "busy").await;
    let (cid_id, cid) = signup(&http, &survivor.base, "cid").await;
    for user_id in [bob_id, cid_id] {
        let (status, _) = post(
            &http,
            &survivor.base,
            "channels/add_member",
            Some(&ann),
            json!({"channel_id": channel, "user_id": user_id}),
        )
        .await
        .expect("add a member");
        assert_eq!(status, 200);
    }

    // Cid watches from the survivor; Bob reads on the node that will die; senders write
    // through it.
    let mut cid_ws = resume_on(&survivor.base, &cid, channel, 0).await;
    let mut bob_ws = resume_on(&victim.base, &bob, channel, 0).await;
    let bob_presence = |event: &serde_json::Value| {
        event["type"] == "presence" && event["user_id"].as_i64() == Some(bob_id)
    };
    loop {
        let event = cid_ws.event().await;
        if bob_presence(&event) {
            assert_eq!(event["state"], "online");
            break;
        }
    }
    let senders = Senders::start(4, &http, &victim.base, &ann, channel);
    senders.until_acknowledged(150).await;
    // A send in flight when the node dies: nobody knows whether it was stored.
    let retried_id = uuid::Uuid::new_v4().to_string();
    let in_flight = {
        let (http, base, ann) = (http.clone(), victim.base.clone(), ann.clone());
        let body = json!({"channel_id": channel, "client_id": retried_id, "body": "in flight"});
        tokio::spawn(async move { post(&http, &base, "messages/send", Some(&ann), body).await })
    };
    victim.child.start_kill().expect("SIGKILL");
    victim.child.wait().await.expect("killed");
    let _ = in_flight.await.expect("sender task");
    let killed_at = std::time::Instant::now();
    let acknowledged = senders.finish().await;
    let before = seqs_until(&mut bob_ws, None).await;

    // Bob's only connection died with its node: the survivor announces him offline, once,
    // within three sweeps (the dead node's liveness key lapsing) and one more.
    loop {
        match cid_ws.next_frame(Duration::from_secs(20)).await {
            Some(WsFrame::Event(event)) if bob_presence(&event) => {
                assert_eq!(event["state"], "offline", "{event}");
                break;
            }
            Some(WsFrame::Event(_)) => {}
            other => panic!("Bob was never announced offline: {other:?}"),
        }
    }
    // About 8 s on an idle machine; the margin is for a loaded one.
    assert!(
        killed_at.elapsed() < Duration::from_secs(14),
        "{:?}",
        killed_at.elapsed()
    );
    while let Some(WsFrame::Event(event)) = cid_ws.next_frame(Duration::from_secs(3)).await {
        assert!(!bob_presence(&event), "announced twice: {event}");
    }

    // The retry goes to the survivor, with the same client_id: one message, whatever happened.
    let (status, retried) = post(
        &http,
        &survivor.base,
        "messages/send",
        Some(&ann),
        json!({"channel_id": channel, "client_id": retried_id, "body": "in flight"}),
    )
    .await
    .expect("retry");
    assert_eq!(status, 200, "{retried}");

    // Bob reconnects to the survivor and resumes after the last seq he saw.
    let last_seen = before.last().copied().unwrap_or(0);
    let mut bob_ws = resume_on(&survivor.base, &bob, channel, last_seen).await;
    for n in 0..20 {
        let (status, _) = post(
            &http,
            &survivor.base,
            "messages/send",
            Some(&ann),
            json!({"channel_id": channel, "client_id": uuid::Uuid::new_v4().to_string(),
                   "body": format!("after {n}")}),
        )
        .await
        .expect("send to the survivor");
        assert_eq!(status, 200);
    }
    let stored = all_messages(&http, &survivor.base, &bob, channel).await;
    let last = stored.last().expect("messages").1;
    let after = seqs_until(&mut bob_ws, Some(last)).await;
    let received: Vec<i64> = before.into_iter().chain(after).collect();
    assert_eq!(
        received,
        (1..=last).collect::<Vec<_>>(),
        "every seq once, in order"
    );
    assert_acknowledged_are_stored(&http, &survivor.base, &bob, channel, &acknowledged).await;
    let copies = stored.iter().filter(|(id, _)| *id == retried_id).count();
    assert_eq!(copies, 1, "the retried send is stored once");
}
