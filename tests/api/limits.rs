//! Abuse limits: per-user rate limits (429 with `Retry-After`, nothing stored, one success after
//! the wait), membership caps, the typed answers of the HTTP layer (413, 405, 415), the
//! same-site rule for cookie-authenticated POSTs, and the `resume` cursor limit.

use std::time::Duration;

use app::channels::store::MembershipCaps;
use app::realtime::protocol::{MAX_FRAME_BYTES, MAX_RESUME_CURSORS};
use app::server::rate_limit::{RateLimit, UserRateLimits};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Reply, TestApp, TestUser};

/// One request a second, two at once: the third in a row is refused, and one second later
/// exactly one more is let through.
const TIGHT: RateLimit = RateLimit::new(1, 2);

async fn spawn_with_limits(limits: UserRateLimits) -> TestApp {
    let mut config = TestApp::test_config();
    config.rate_limits = limits;
    TestApp::spawn_with(config).await
}

/// Asserts a typed 429 whose `Retry-After` header and `retry_after_secs` agree; returns them.
#[track_caller]
fn assert_rate_limited(reply: Reply) -> u64 {
    let header: u64 = reply
        .headers
        .get("retry-after")
        .expect("Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    let body = reply.err(429);
    assert_eq!(body["error"], "rate_limited", "{body}");
    assert_eq!(body["retry_after_secs"].as_u64(), Some(header), "{body}");
    assert!((1..=2).contains(&header), "one token a second: {header}");
    header
}

async fn wait(secs: u64) {
    tokio::time::sleep(Duration::from_secs(secs)).await;
}

fn send_body(channel: i64, client_id: &str, body: &str) -> Value {
    json!({ "channel_id": channel, "client_id": client_id, "body": body })
}

async fn message_count(app: &TestApp, user: &TestUser, channel: i64) -> usize {
    app.newest_page(user, channel).await["messages"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn a_limited_send_stores_nothing_and_its_retry_after_the_wait_stores_it_once() {
    let app = spawn_with_limits(UserRateLimits {
        send: TIGHT,
        ..UserRateLimits::OFF
    })
    .await;
    let (ann, bob) = (app.signup("ann").await, app.signup("bob").await);
    let channel = app.group(&ann, &[&bob]).await;
    app.send(&ann, channel, "one").await;
    app.send(&ann, channel, "two").await;
    let key = uuid::Uuid::new_v4().to_string();
    let refused = app
        .call(
            "messages/send",
            Some(&ann.token),
            send_body(channel, &key, "three"),
        )
        .await;
    let retry_after = assert_rate_limited(refused);
    assert_eq!(
        message_count(&app, &ann, channel).await,
        2,
        "nothing stored"
    );
    // Limits are per user: bob still has his burst.
    app.send(&bob, channel, "bob's").await;

    wait(retry_after).await;
    let stored = app
        .call(
            "messages/send",
            Some(&ann.token),
            send_body(channel, &key, "three"),
        )
        .await
        .ok();
    assert_eq!(stored["client_id"], key.as_str());
    assert_eq!(stored["seq"], 4);
    // Once: the next one right after is refused again.
    assert_rate_limited(
        app.call(
            "messages/send",
            Some(&ann.token),
            send_body(channel, &uuid::Uuid::new_v4().to_string(), "four"),
        )
        .await,
    );
    // Retrying the same key later answers the same message; it is stored exactly once.
    wait(1).await;
    let again = app
        .call(
            "messages/send",
            Some(&ann.token),
            send_body(channel, &key, "three"),
        )
        .await
        .ok();
    assert_eq!(again, stored);
    let page = app.newest_page(&ann, channel).await;
    let with_key = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["client_id"] == key.as_str())
        .count();
    assert_eq!(with_key, 1);
    assert_eq!(message_count(&app, &ann, channel).await, 4);
}

#[tokio::test]
async fn edits_and_deletions_share_one_limit() {
    let app = spawn_with_limits(UserRateLimits {
        edit: TIGHT,
        ..UserRateLimits::OFF
    })
    .await;
    let ann = app.signup("ann").await;
    let channel = app.group(&ann, &[]).await;
    let message = app.send(&ann, channel, "draft").await;
    let id = message["id"].clone();
    let edit = |body: &str| {
        app.call(
            "messages/edit",
            Some(&ann.token),
            json!({ "message_id": id, "body": body }),
        )
    };
    let delete = || {
        app.call(
            "messages/delete",
            Some(&ann.token),
            json!({ "message_id": id }),
        )
    };
    edit("v1").await.ok();
    edit("v2").await.ok();
    assert_rate_limited(edit("v3").await);
    let retry_after = assert_rate_limited(delete().await);
    let stored = &app.newest_page(&ann, channel).await["messages"][0];
    assert_eq!(
        stored["body"], "v2",
        "neither the edit nor the deletion happened"
    );
    assert!(stored["deleted_at"].is_null());

    wait(retry_after).await;
    assert!(delete().await.ok()["deleted_at"].is_i64());
    assert_rate_limited(edit("v4").await);
}

#[tokio::test]
async fn read_marks_are_limited_and_a_refused_mark_moves_nothing() {
    let app = spawn_with_limits(UserRateLimits {
        read: TIGHT,
        ..UserRateLimits::OFF
    })
    .await;
    let (ann, bob) = (app.signup("ann").await, app.signup("bob").await);
    let channel = app.group(&ann, &[&bob]).await;
    for n in 1..=4 {
        app.send(&ann, channel, &format!("m{n}")).await;
    }
    let mark = |seq: i64| {
        app.call(
            "read/mark",
            Some(&bob.token),
            json!({ "channel_id": channel, "seq": seq }),
        )
    };
    mark(1).await.ok();
    mark(2).await.ok();
    let retry_after = assert_rate_limited(mark(3).await);
    assert_eq!(app.summary(&bob, channel).await["last_read_seq"], 2);

    wait(retry_after).await;
    assert_eq!(mark(3).await.ok()["last_read_seq"], 3);
    assert_rate_limited(mark(4).await);
    assert_eq!(app.summary(&bob, channel).await["last_read_seq"], 3);
}

#[tokio::test]
async fn channel_writes_share_one_limit_and_a_refused_one_changes_nothing() {
    let app = spawn_with_limits(UserRateLimits {
        channels: TIGHT,
        ..UserRateLimits::OFF
    })
    .await;
    let (ann, bob) = (app.signup("ann").await, app.signup("bob").await);
    let channel = app.group(&ann, &[]).await;
    app.call(
        "channels/rename",
        Some(&ann.token),
        json!({ "channel_id": channel, "name": "renamed" }),
    )
    .await
    .ok();
    let add_bob = || {
        app.call(
            "channels/add_member",
            Some(&ann.token),
            json!({ "channel_id": channel, "user_id": bob.id }),
        )
    };
    assert_rate_limited(add_bob().await);
    let retry_after = assert_rate_limited(
        app.call(
            "channels/direct",
            Some(&ann.token),
            json!({ "user_id": bob.id }),
        )
        .await,
    );
    let detail = app
        .call(
            "channels/get",
            Some(&ann.token),
            json!({ "channel_id": channel }),
        )
        .await
        .ok();
    assert_eq!(detail["members"].as_array().unwrap().len(), 1);
    let list = app
        .call("channels/list", Some(&bob.token), json!({}))
        .await
        .ok();
    assert_eq!(list, json!([]), "no DM was created, bob was not added");

    wait(retry_after).await;
    assert_eq!(add_bob().await.ok()["members"].as_array().unwrap().len(), 2);
    assert_rate_limited(
        app.call(
            "channels/leave",
            Some(&ann.token),
            json!({ "channel_id": channel }),
        )
        .await,
    );
}

#[tokio::test]
async fn searches_are_limited() {
    let app = spawn_with_limits(UserRateLimits {
        search: TIGHT,
        ..UserRateLimits::OFF
    })
    .await;
    let ann = app.signup("ann").await;
    let search = || app.call("users/search", Some(&ann.token), json!({ "query": "an" }));
    search().await.ok();
    search().await.ok();
    let retry_after = assert_rate_limited(search().await);
    wait(retry_after).await;
    assert_eq!(search().await.ok().as_array().unwrap().len(), 1);
    assert_rate_limited(search().await);
}

#[tokio::test]
async fn a_group_over_the_size_cap_or_a_full_channel_is_limit_reached() {
    let mut config = TestApp::test_config();
    config.caps = MembershipCaps {
        max_members: 3,
        ..MembershipCaps::default()
    };
    let app = TestApp::spawn_with(config).await;
    let ann = app.signup("ann").await;
    let others = [
        app.signup("bob").await,
        app.signup("cid").await,
        app.signup("dan").await,
    ];
    let ids: Vec<i64> = others.iter().map(|u| u.id).collect();
    let body = app
        .call(
            "channels/create",
            Some(&ann.token),
            json!({ "name": "big", "member_ids": ids }),
        )
        .await
        .err(409);
    assert_eq!(body["error"], "limit_reached");
    assert_eq!(body["limit"], "channel_members");
    assert_eq!(body["max"], 3);
    assert!(body["message"].as_str().unwrap().contains('3'), "{body}");
    let list = app
        .call("channels/list", Some(&ann.token), json!({}))
        .await
        .ok();
    assert_eq!(list, json!([]), "nothing created");

    let channel = app.group(&ann, &[&others[0], &others[1]]).await;
    let add = |user_id: i64| {
        app.call(
            "channels/add_member",
            Some(&ann.token),
            json!({ "channel_id": channel, "user_id": user_id }),
        )
    };
    let body = add(others[2].id).await.err(409);
    assert_eq!(body["limit"], "channel_members");
    // Adding someone who is already a member changes nothing and is not refused.
    assert_eq!(
        add(others[0].id).await.ok()["members"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn the_channels_per_user_cap_refuses_creating_joining_and_new_dms() {
    let mut config = TestApp::test_config();
    config.caps = MembershipCaps {
        max_channels_per_user: 2,
        ..MembershipCaps::default()
    };
    let app = TestApp::spawn_with(config).await;
    let (ann, bob, cid) = (
        app.signup("ann").await,
        app.signup("bob").await,
        app.signup("cid").await,
    );
    let dm = app
        .call(
            "channels/direct",
            Some(&ann.token),
            json!({ "user_id": bob.id }),
        )
        .await
        .ok()["id"]
        .clone();
    let first = app.group(&bob, &[]).await;
    // bob is in 2 channels now.
    let body = app
        .call(
            "channels/create",
            Some(&bob.token),
            json!({ "name": "third", "member_ids": [] }),
        )
        .await
        .err(409);
    assert_eq!(body["error"], "limit_reached");
    assert_eq!(body["limit"], "channels_per_user");
    assert_eq!(body["max"], 2);
    assert!(
        body["message"].as_str().unwrap().starts_with("you are"),
        "{body}"
    );
    let cids = app.group(&cid, &[]).await;
    let body = app
        .call(
            "channels/add_member",
            Some(&cid.token),
            json!({ "channel_id": cids, "user_id": bob.id }),
        )
        .await
        .err(409);
    assert_eq!(body["limit"], "channels_per_user");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&bob.id.to_string()),
        "{body}"
    );
    let body = app
        .call(
            "channels/create",
            Some(&cid.token),
            json!({ "name": "with bob", "member_ids": [bob.id] }),
        )
        .await
        .err(409);
    assert_eq!(body["limit"], "channels_per_user");
    let body = app
        .call(
            "channels/direct",
            Some(&cid.token),
            json!({ "user_id": bob.id }),
        )
        .await
        .err(409);
    assert_eq!(body["limit"], "channels_per_user");
    // The existing DM is still found.
    assert_eq!(
        app.call(
            "channels/direct",
            Some(&bob.token),
            json!({ "user_id": ann.id })
        )
        .await
        .ok()["id"],
        dm
    );
    // Leaving a channel makes room.
    app.call(
        "channels/leave",
        Some(&bob.token),
        json!({ "channel_id": first }),
    )
    .await
    .ok();
    app.call(
        "channels/add_member",
        Some(&cid.token),
        json!({ "channel_id": cids, "user_id": bob.id }),
    )
    .await
    .ok();
}

/// Sends raw bytes over HTTP/1.1 and returns the status and the JSON body of the answer.
async fn raw_http(app: &TestApp, request: &[u8]) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete answer");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A chunked `messages/send` whose body is `body_bytes` long (padding in the body field).
fn chunked_send(app: &TestApp, user: &TestUser, channel: i64, body_bytes: usize) -> Vec<u8> {
    let prefix = format!(
        "{{\"channel_id\":{channel},\"client_id\":\"{}\",\"body\":\"",
        uuid::Uuid::new_v4()
    );
    let suffix = "\"}";
    let padding = "x".repeat(body_bytes - prefix.len() - suffix.len());
    let json = format!("{prefix}{padding}{suffix}");
    let mut request = format!(
        "POST /api/messages/send HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.addr, user.token
    )
    .into_bytes();
    // Sent in 16 KiB chunks, as a streaming client would; no Content-Length anywhere.
    for chunk in json.as_bytes().chunks(16 * 1024) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    request
}

#[tokio::test]
async fn bodies_over_the_limit_are_typed_413_with_or_without_content_length() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    let channel = app.group(&ann, &[]).await;
    let limit = 64 * 1024;

    let declared = app
        .http
        .post(format!("{}/api/messages/send", app.base))
        .bearer_auth(&ann.token)
        .header("content-type", "application/json")
        .body(
            send_body(
                channel,
                &uuid::Uuid::new_v4().to_string(),
                &"x".repeat(limit),
            )
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let body = Reply::from(declared).await.err(413);
    assert_eq!(body["error"], "payload_too_large");
    assert_eq!(body["max_bytes"], limit);

    // The chunked path works for a body under the limit (the 4000-character rule answers)…
    let (status, body) = raw_http(&app, &chunked_send(&app, &ann, channel, 8 * 1024)).await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid")), "{body}");
    assert_eq!(body["field"], "body");
    // …and one over it is the same typed 413, not a decoding error.
    let (status, body) = raw_http(&app, &chunked_send(&app, &ann, channel, limit + 1)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"], "payload_too_large");
    assert_eq!(body["max_bytes"], limit);
    assert_eq!(message_count(&app, &ann, channel).await, 0);
}

#[tokio::test]
async fn other_methods_are_a_typed_405_naming_post() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    for method in [
        reqwest::Method::GET,
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
    ] {
        let response = app
            .http
            .request(method.clone(), format!("{}/api/messages/send", app.base))
            .bearer_auth(&ann.token)
            .send()
            .await
            .unwrap();
        let reply = Reply::from(response).await;
        let allow = reply.headers["allow"].to_str().unwrap().to_owned();
        assert!(allow.contains("POST"), "{method}: Allow: {allow}");
        let body = reply.err(405);
        assert_eq!(body["error"], "method_not_allowed", "{method}");
    }
    // Unknown endpoints stay a typed 404, whatever the method.
    assert_eq!(
        Reply::from(app.get("/api/nothing/here").await)
            .await
            .err(404)["error"],
        "not_found"
    );
}

#[tokio::test]
async fn only_json_bodies_are_accepted_415_otherwise() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    let channel = app.group(&ann, &[]).await;
    let json_text = send_body(channel, &uuid::Uuid::new_v4().to_string(), "hi").to_string();
    for content_type in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = app
            .http
            .post(format!("{}/api/messages/send", app.base))
            .bearer_auth(&ann.token)
            .body(json_text.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let body = Reply::from(request.send().await.unwrap()).await.err(415);
        assert_eq!(body["error"], "unsupported_media_type", "{content_type:?}");
    }
    assert_eq!(
        message_count(&app, &ann, channel).await,
        0,
        "nothing stored"
    );
    // A charset parameter on JSON is fine.
    let response = app
        .http
        .post(format!("{}/api/messages/send", app.base))
        .bearer_auth(&ann.token)
        .header("content-type", "application/json; charset=utf-8")
        .body(json_text)
        .send()
        .await
        .unwrap();
    Reply::from(response).await.ok();
}

#[tokio::test]
async fn cookie_posts_need_a_same_site_origin_bearer_posts_need_none() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    let channel = app.group(&ann, &[]).await;
    let post = |headers: Vec<(&'static str, String)>| {
        let mut request = app
            .http
            .post(format!("{}/api/messages/send", app.base))
            .json(&send_body(channel, &uuid::Uuid::new_v4().to_string(), "hi"));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        async move { Reply::from(request.send().await.unwrap()).await }
    };
    let cookie = ("cookie", format!("dn_session={}", ann.token));
    let same_site = ("origin", format!("http://{}", app.addr));
    let cross_site = ("origin", "https://evil.example".to_owned());

    let body = post(vec![cookie.clone(), cross_site.clone()])
        .await
        .err(403);
    assert_eq!(body["error"], "forbidden");
    assert_eq!(
        post(vec![cookie.clone()]).await.err(403)["error"],
        "forbidden",
        "a cookie without an Origin"
    );
    assert_eq!(
        message_count(&app, &ann, channel).await,
        0,
        "nothing stored"
    );
    post(vec![cookie, same_site]).await.ok();
    post(vec![("authorization", format!("Bearer {}", ann.token))])
        .await
        .ok();
    assert_eq!(message_count(&app, &ann, channel).await, 2);

    // Another site cannot sign a visitor in either (log-in CSRF).
    let response = app
        .http
        .post(format!("{}/api/auth/login", app.base))
        .header(cross_site.0, cross_site.1)
        .json(&json!({ "username": "ann", "password": "correct horse" }))
        .send()
        .await
        .unwrap();
    let reply = Reply::from(response).await;
    assert!(!reply.headers.contains_key("set-cookie"));
    reply.err(403);
}

#[tokio::test]
async fn a_resume_over_the_cursor_limit_is_refused_and_the_largest_fits_a_frame() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    let mut ws = app.ws_no_resume(&ann).await;
    let too_many: Vec<Value> = (1..=MAX_RESUME_CURSORS + 1)
        .map(|id| json!({ "channel_id": id, "after_seq": 0 }))
        .collect();
    ws.send(json!({ "type": "resume", "channels": too_many }))
        .await;
    let error = ws.event_of("error").await;
    assert_eq!(error["code"], "invalid_event");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains(&MAX_RESUME_CURSORS.to_string()),
        "{error}"
    );

    // The most cursors allowed, each with the longest numbers there are, fit in one frame: the
    // server reads the frame (no 1009 close) and answers each cursor (its after_seq is
    // negative, so each is refused on its own).
    let worst: Vec<Value> = (0..MAX_RESUME_CURSORS)
        .map(|_| json!({ "channel_id": i64::MIN, "after_seq": i64::MIN }))
        .collect();
    let frame = json!({ "type": "resume", "channels": worst }).to_string();
    assert!(frame.len() <= MAX_FRAME_BYTES, "{} bytes", frame.len());
    ws.send_raw(tokio_tungstenite::tungstenite::Message::Text(frame.into()))
        .await;
    for _ in 0..MAX_RESUME_CURSORS {
        assert_eq!(ws.event_of("error").await["code"], "invalid_event");
    }
    ws.send(json!({ "type": "ping", "nonce": "after" })).await;
    assert_eq!(ws.event_of("pong").await["nonce"], "after");
}
