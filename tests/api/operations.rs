//! Operating the server: readiness, the drain on SIGTERM, request ids and JSON logs.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{TestApp, TestDatabase, WsFrame, ws_connect};
use crate::process::{
    Senders, assert_acknowledged_are_stored, create_channel, free_port, signup, start_with,
};
use crate::proxy::Proxy;

async fn ready(app: &TestApp) -> (u16, Value) {
    let response = app.get("/ready").await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("ready answers JSON"))
}

/// Polls `/ready` until it answers `status`, for at most five seconds.
async fn ready_becomes(app: &TestApp, status: u16) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        let (now, body) = ready(app).await;
        if now == status {
            return body;
        }
        last = body;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/ready did not answer {status}; last answer {last}");
}

#[tokio::test]
async fn ready_fails_while_the_database_is_unreachable_and_recovers() {
    let app = TestApp::spawn().await;
    assert_eq!(ready(&app).await, (200, json!({"status": "ready"})));

    app.database.unreachable().await;
    let (status, body) = ready(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        json!({"status": "not_ready", "reason": "database unreachable"})
    );
    // Liveness is a different question: the process still answers.
    assert_eq!(app.get("/health").await.status().as_u16(), 200);

    app.database.reconnectable().await;
    assert_eq!(ready(&app).await, (200, json!({"status": "ready"})));
}

#[tokio::test]
async fn ready_fails_while_redis_is_unreachable_and_recovers() {
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let proxy = Proxy::reserve(redis.trim_start_matches("redis://")).await;
    proxy.up().await;
    let mut config = TestApp::test_config();
    config.presence.redis_url = Some(proxy.url());
    config.presence.redis_prefix = format!("dealnest-test-{}", uuid::Uuid::new_v4());
    let app = TestApp::spawn_with(config).await;
    ready_becomes(&app, 200).await;

    proxy.down();
    let body = ready_becomes(&app, 503).await;
    assert_eq!(
        body,
        json!({"status": "not_ready", "reason": "redis unreachable"})
    );

    proxy.up().await;
    ready_becomes(&app, 200).await;
}

#[tokio::test]
async fn a_drain_fails_readiness_refuses_new_sockets_and_closes_open_ones_with_1012() {
    let mut config = TestApp::test_config();
    config.drain = Duration::from_secs(2);
    let mut app = TestApp::spawn_with(config).await;
    let ann = app.signup("drainann").await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(app.ws(&ann).await);
    }

    app.stop();
    let body = ready_becomes(&app, 503).await;
    assert_eq!(
        body,
        json!({"status": "not_ready", "reason": "draining: the server is stopping"})
    );
    // The API still answers during the drain: clients of this node are not cut off mid-send.
    let channel = app.group(&ann, &[]).await;
    app.send(&ann, channel, "sent while draining").await;
    let refused = app
        .ws_with(&[("authorization", format!("Bearer {}", ann.token))])
        .await
        .err();
    assert_eq!(refused, Some(503), "new sockets are refused while draining");

    for mut socket in sockets {
        assert_eq!(socket.close_code().await, Some(1012));
    }
}

#[tokio::test]
async fn sigterm_drains_clients_with_1012_keeps_every_acknowledged_send_and_exits_0() {
    let database = TestDatabase::fresh().await;
    let db = database.url();
    let port = free_port();
    let mut node = start_with(db, port, &[("DRAIN_SECS", "2")], false).await;
    let http = reqwest::Client::new();
    let (_, token) = signup(&http, &node.base, "drainy").await;
    let channel_id = create_channel(&http, &node.base, &token, "drain").await;

    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut sockets = Vec::new();
    for _ in 0..12 {
        let mut socket = ws_connect(addr, &[("authorization", format!("Bearer {token}"))])
            .await
            .expect("upgrade");
        assert_eq!(socket.event().await["type"], "hello");
        sockets.push(socket);
    }
    let senders = Senders::start(4, &http, &node.base, &token, channel_id);
    senders.until_acknowledged(100).await;

    let signalled = Instant::now();
    let pid = node.child.id().expect("pid").to_string();
    let kill = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("run kill");
    assert!(kill.success());

    // Every socket is closed with 1012, at its own moment inside the two-second window. Each
    // is read by its own task, so a close is timed when it arrives, not when it is read.
    let closes: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move {
                loop {
                    match socket.next_frame(Duration::from_secs(5)).await {
                        Some(WsFrame::Event(_)) => continue,
                        Some(WsFrame::Closed(code)) => return (code, signalled.elapsed()),
                        other => panic!("expected a 1012 close, got {other:?}"),
                    }
                }
            })
        })
        .collect();
    let mut closed_after = Vec::new();
    for close in closes {
        let (code, after) = close.await.expect("socket reader");
        assert_eq!(code, Some(1012));
        closed_after.push(after);
    }
    let first = closed_after.iter().min().expect("closes");
    let last = closed_after.iter().max().expect("closes");
    assert!(
        *last - *first >= Duration::from_millis(300),
        "closes spread over the drain window, not all at once: {closed_after:?}"
    );

    let status = tokio::time::timeout(Duration::from_secs(10), node.child.wait())
        .await
        .expect("the server exits after the drain")
        .expect("wait");
    assert_eq!(status.code(), Some(0), "a drain ends with exit code 0");
    let acknowledged = senders.finish().await;
    assert!(acknowledged.len() > 100, "sends went on during the drain");

    let node = start_with(db, port, &[], false).await;
    assert_acknowledged_are_stored(&http, &node.base, &token, channel_id, &acknowledged).await;
}

#[tokio::test]
async fn a_request_id_is_honoured_or_generated_and_returned() {
    let app = TestApp::spawn().await;
    let response = app
        .http
        .get(format!("{}/health", app.base))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");

    let response = app.get("/health").await;
    let generated = response.headers()["x-request-id"].to_str().expect("ascii");
    assert!(
        uuid::Uuid::parse_str(generated).is_ok(),
        "a UUID when the caller sent none: {generated}"
    );
}

#[tokio::test]
async fn json_logs_carry_the_request_id_and_user_id() {
    let database = TestDatabase::fresh().await;
    let db = database.url();
    let port = free_port();
    let mut node = start_with(
        db,
        port,
        &[
            ("LOG_FORMAT", "json"),
            ("LOG_LEVEL", "info,tower_http=debug"),
        ],
        true,
    )
    .await;
    let http = reqwest::Client::new();
    let (user_id, token) = signup(&http, &node.base, "loggy").await;
    let response = http
        .post(format!("{}/api/channels/list", node.base))
        .bearer_auth(&token)
        .header("x-request-id", "log-line-7")
        .json(&json!({}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);

    let mut lines = BufReader::new(node.child.stdout.take().expect("stdout")).lines();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "no log line for the request");
        let line = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
            .await
            .expect("a log line in time")
            .expect("read stdout")
            .expect("stdout open");
        let entry: Value = serde_json::from_str(&line)
            .unwrap_or_else(|error| panic!("not a JSON line ({error}): {line}"));
        let request_span = entry["spans"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|span| span["name"] == "request");
        if let Some(span) = request_span
            && span["request_id"] == "log-line-7"
            && entry["fields"]["message"] == "finished processing request"
        {
            assert_eq!(span["user_id"], user_id, "{line}");
            assert_eq!(span["path"], "/api/channels/list", "{line}");
            assert!(entry["timestamp"].is_string() && entry["level"] == "DEBUG");
            return;
        }
    }
}
