//! Presence with real clients, in memory and on the Redis at `REDIS_URL`
//! (default `redis://127.0.0.1:6379`; `scripts/test.sh` starts it when down).

use std::time::Duration;

use app::server::AppConfig;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, WsClient};
use crate::proxy::Proxy;

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A Redis-backed config with keys no other test run uses.
fn redis_config(url: String) -> AppConfig {
    let mut config = TestApp::test_config();
    config.presence.redis_url = Some(url);
    config.presence.redis_prefix = format!("dealnest-test-{}", uuid::Uuid::new_v4());
    config
}

async fn presence_of(app: &TestApp, asker: &TestUser, user: &TestUser) -> Value {
    let answer = app
        .call(
            "presence/get",
            Some(&asker.token),
            json!({ "user_ids": [user.id] }),
        )
        .await
        .ok();
    answer[0].clone()
}

/// Ann and an observer (Bob) who shares a channel with her, Bob connected.
async fn ann_and_observer(app: &TestApp) -> (TestUser, TestUser, WsClient) {
    let (ann, bob) = (app.signup("ann").await, app.signup("bob").await);
    app.group(&bob, &[&ann]).await;
    let bob_ws = app.ws(&bob).await;
    (ann, bob, bob_ws)
}

/// The next presence event about `user`.
async fn next_presence(ws: &mut WsClient, user: &TestUser) -> Value {
    let event = ws.event_of("presence").await;
    assert_eq!(event["user_id"].as_i64(), Some(user.id), "{event}");
    event
}

/// Multi-tab presence as the issue lists it, on whichever backend `app` uses.
async fn multi_tab_presence(app: &TestApp) {
    let (ann, bob, mut bob_ws) = ann_and_observer(app).await;
    let eve = app.signup("eve").await;
    let mut eve_ws = app.ws(&eve).await;

    let tab1 = app.ws(&ann).await;
    let mut tab2 = app.ws(&ann).await;
    assert_eq!(next_presence(&mut bob_ws, &ann).await["state"], "online");
    eve_ws.assert_quiet(200).await; // shares no channel with Ann
    assert_eq!(presence_of(app, &bob, &ann).await["state"], "online");

    tab1.close().await;
    bob_ws.assert_quiet(800).await; // grace is 400 ms: still online, no flap
    assert_eq!(presence_of(app, &bob, &ann).await["state"], "online");

    tab2.send(json!({ "type": "activity", "state": "away" }))
        .await;
    assert_eq!(next_presence(&mut bob_ws, &ann).await["state"], "away");
    tab2.send(json!({ "type": "activity", "state": "active" }))
        .await;
    assert_eq!(next_presence(&mut bob_ws, &ann).await["state"], "online");

    tab2.close().await;
    let offline = next_presence(&mut bob_ws, &ann).await;
    assert_eq!(offline["state"], "offline");
    let last_seen = offline["last_seen_at"].as_i64().expect("last_seen_at");
    let snapshot = presence_of(app, &bob, &ann).await;
    assert_eq!(
        (&snapshot["state"], snapshot["last_seen_at"].as_i64()),
        (&json!("offline"), Some(last_seen))
    );
}

#[tokio::test]
async fn in_memory_presence_across_tabs() {
    let app = TestApp::spawn().await;
    assert_eq!(app.health().await["presence_backend"], "memory");
    multi_tab_presence(&app).await;
}

#[tokio::test]
async fn reload_within_grace_does_not_flap() {
    let app = TestApp::spawn().await;
    let (ann, _bob, mut bob_ws) = ann_and_observer(&app).await;
    let tab = app.ws(&ann).await;
    assert_eq!(next_presence(&mut bob_ws, &ann).await["state"], "online");
    tab.close().await;
    let _reloaded = app.ws(&ann).await;
    bob_ws.assert_quiet(1_000).await;
}

/// Back and gone again within the grace period: the grace counts from the last close, not the
/// first, on memory and on Redis alike.
async fn grace_counts_from_the_last_close(app: &TestApp) {
    let (ann, _bob, mut bob_ws) = ann_and_observer(app).await;
    let tab = app.ws(&ann).await;
    assert_eq!(next_presence(&mut bob_ws, &ann).await["state"], "online");
    tab.close().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.ws(&ann).await.close().await;
    let last_close = std::time::Instant::now();
    assert_eq!(next_presence(&mut bob_ws, &ann).await["state"], "offline");
    let waited = last_close.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "offline {waited:?} after the last close; the grace is 1 s"
    );
}

#[tokio::test]
async fn grace_counts_from_the_last_close_in_memory() {
    let mut config = TestApp::test_config();
    config.presence.grace = Duration::from_secs(1);
    grace_counts_from_the_last_close(&TestApp::spawn_with(config).await).await;
}

#[tokio::test]
async fn grace_counts_from_the_last_close_in_redis() {
    let mut config = redis_config(redis_url());
    config.presence.grace = Duration::from_secs(1);
    grace_counts_from_the_last_close(&TestApp::spawn_with(config).await).await;
}

#[tokio::test]
async fn presence_snapshot_only_covers_people_who_share_a_channel() {
    let app = TestApp::spawn().await;
    let (ann, bob, _bob_ws) = ann_and_observer(&app).await;
    let stranger = app.signup("stranger").await;
    let _ann_ws = app.ws(&ann).await;
    let answer = app
        .call(
            "presence/get",
            Some(&bob.token),
            json!({ "user_ids": [ann.id, stranger.id, bob.id] }),
        )
        .await
        .ok();
    let ids: Vec<_> = answer
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["user_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [ann.id, bob.id]);
    let too_many: Vec<i64> = (1..=501).collect();
    app.call(
        "presence/get",
        Some(&bob.token),
        json!({ "user_ids": too_many }),
    )
    .await
    .invalid("user_ids");
    app.call("presence/get", None, json!({ "user_ids": [] }))
        .await
        .err(401);
}

#[tokio::test]
async fn redis_presence_across_tabs() {
    let app = TestApp::spawn_with(redis_config(redis_url())).await;
    let health = app.health().await;
    assert_eq!(
        (&health["presence_backend"], &health["redis"]),
        (&json!("redis"), &json!("reachable"))
    );
    multi_tab_presence(&app).await;
}

#[tokio::test]
async fn redis_leases_expire_without_heartbeats() {
    // Leases outlive two missed heartbeats in production; here a lease (1 s) is shorter than
    // the heartbeat (30 s), as if the node holding the connection had crashed.
    let mut config = redis_config(redis_url());
    config.presence.lease_ttl = Duration::from_secs(1);
    let app = TestApp::spawn_with(config).await;
    let (ann, _bob, mut bob_ws) = ann_and_observer(&app).await;
    let _silent_tab = app.ws(&ann).await;
    assert_eq!(next_presence(&mut bob_ws, &ann).await["state"], "online");
    let offline = next_presence(&mut bob_ws, &ann).await;
    assert_eq!(offline["state"], "offline");
    assert!(offline["last_seen_at"].is_i64());
}

#[tokio::test]
async fn falls_back_to_memory_while_redis_is_down_and_returns() {
    let proxy = Proxy::reserve(redis_url().trim_start_matches("redis://")).await;
    let app = TestApp::spawn_with(redis_config(proxy.url())).await;
    let health = app.health().await;
    assert_eq!(
        (&health["presence_backend"], &health["redis"]),
        (&json!("memory"), &json!("unreachable"))
    );

    // Presence works from memory meanwhile.
    let (ann, _bob, mut bob_ws) = ann_and_observer(&app).await;
    let ann_ws = app.ws(&ann).await;
    assert_eq!(next_presence(&mut bob_ws, &ann).await["state"], "online");

    proxy.up().await;
    let mut backend = Value::Null;
    for _ in 0..50 {
        backend = app.health().await["presence_backend"].clone();
        if backend == "redis" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(backend, "redis", "back on Redis once it is reachable");

    proxy.down();
    // The next presence change notices the outage and is still announced, from memory.
    ann_ws.close().await;
    assert_eq!(next_presence(&mut bob_ws, &ann).await["state"], "offline");
    let health = app.health().await;
    assert_eq!(
        (&health["presence_backend"], &health["redis"]),
        (&json!("memory"), &json!("unreachable"))
    );
}
