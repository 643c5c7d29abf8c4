//! Each validation rule answers 400 naming the field, and stores nothing.

use serde_json::{Value, json};

use crate::helpers::TestApp;

async fn signup_rejects(app: &TestApp, body: Value, field: &str) {
    app.call("auth/signup", None, body).await.invalid(field);
}

#[tokio::test]
async fn signup_fields() {
    let app = TestApp::spawn().await;
    let ok = |username: &str, display: &str, password: &str| json!({ "username": username, "display_name": display, "password": password });
    signup_rejects(&app, ok("ab", "Ann", "12345678"), "username").await;
    signup_rejects(&app, ok(&"a".repeat(33), "Ann", "12345678"), "username").await;
    signup_rejects(&app, ok("ann smith", "Ann", "12345678"), "username").await;
    signup_rejects(&app, ok("ann", "  ", "12345678"), "display_name").await;
    signup_rejects(&app, ok("ann", &"d".repeat(65), "12345678"), "display_name").await;
    signup_rejects(&app, ok("ann", "Ann", "1234567"), "password").await;
    signup_rejects(
        &app,
        json!({ "username": "ann", "password": "12345678" }),
        "request",
    )
    .await;
    // None of those created an account.
    app.call(
        "auth/login",
        None,
        json!({ "username": "ann", "password": "12345678" }),
    )
    .await
    .err(401);
}

#[tokio::test]
async fn malformed_bodies_are_invalid_requests_not_faults() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    for raw in ["not json", "{\"channel_id\": \"seven\"}", "[]", ""] {
        let response = app
            .http
            .post(format!("{}/api/messages/list", app.base))
            .bearer_auth(&ann.token)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        crate::helpers::Reply::from(response)
            .await
            .invalid("request");
    }
    let oversized = app
        .http
        .post(format!("{}/api/messages/send", app.base))
        .bearer_auth(&ann.token)
        .header("content-type", "application/json")
        .body(format!("{{\"body\": \"{}\"}}", "x".repeat(100_000)))
        .send()
        .await
        .unwrap();
    assert_eq!(oversized.status(), 413);
}

#[tokio::test]
async fn channel_and_message_fields() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    let channel = app.group(&ann, &[]).await;
    let message = app.send(&ann, channel, "hello").await;
    let id = message["id"].clone();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "channels/create",
            json!({ "name": "", "member_ids": [] }),
            "name",
        ),
        (
            "channels/create",
            json!({ "name": "n".repeat(81), "member_ids": [] }),
            "name",
        ),
        (
            "channels/create",
            json!({ "name": "ok", "member_ids": [424242] }),
            "member_ids",
        ),
        (
            "channels/create",
            json!({ "name": "ok", "member_ids": [-1] }),
            "member_ids",
        ),
        ("channels/direct", json!({ "user_id": 424242 }), "user_id"),
        (
            "channels/rename",
            json!({ "channel_id": channel, "name": " " }),
            "name",
        ),
        ("channels/get", json!({ "channel_id": 0 }), "channel_id"),
        (
            "channels/add_member",
            json!({ "channel_id": channel, "user_id": 424242 }),
            "user_id",
        ),
        (
            "channels/remove_member",
            json!({ "channel_id": channel, "user_id": ann.id }),
            "user_id",
        ),
        (
            "messages/send",
            json!({ "channel_id": channel, "client_id": "nope", "body": "hi" }),
            "client_id",
        ),
        (
            "messages/send",
            json!({ "channel_id": channel, "client_id": uuid::Uuid::new_v4(), "body": " \n " }),
            "body",
        ),
        (
            "messages/send",
            json!({ "channel_id": channel, "client_id": uuid::Uuid::new_v4(), "body": "x".repeat(4001) }),
            "body",
        ),
        (
            "messages/send",
            json!({ "channel_id": -3, "client_id": uuid::Uuid::new_v4(), "body": "hi" }),
            "channel_id",
        ),
        (
            "messages/list",
            json!({ "channel_id": channel, "limit": 0 }),
            "limit",
        ),
        (
            "messages/list",
            json!({ "channel_id": channel, "limit": 201 }),
            "limit",
        ),
        (
            "messages/list",
            json!({ "channel_id": channel, "before_seq": -1 }),
            "before_seq",
        ),
        (
            "messages/list",
            json!({ "channel_id": channel, "before_seq": 2, "after_seq": 1 }),
            "before_seq",
        ),
        (
            "messages/edit",
            json!({ "message_id": id, "body": "" }),
            "body",
        ),
        (
            "messages/edit",
            json!({ "message_id": 0, "body": "ok" }),
            "message_id",
        ),
        (
            "read/mark",
            json!({ "channel_id": channel, "seq": -1 }),
            "seq",
        ),
        (
            "read/mark",
            json!({ "channel_id": channel, "seq": 2 }),
            "seq",
        ),
        ("users/search", json!({ "query": "  " }), "query"),
        (
            "users/search",
            json!({ "query": "a", "limit": 51 }),
            "limit",
        ),
    ];
    for (endpoint, body, field) in cases {
        let reply = app.call(endpoint, Some(&ann.token), body).await;
        assert_eq!(
            reply.status, 400,
            "{endpoint} should reject {field}: {}",
            reply.body
        );
        assert_eq!(reply.body["field"], field, "{endpoint}: {}", reply.body);
    }
    // Nothing stored was changed by the rejected calls.
    let detail = app
        .call(
            "channels/get",
            Some(&ann.token),
            json!({ "channel_id": channel }),
        )
        .await
        .ok();
    assert_eq!(
        (detail["name"].as_str(), detail["last_seq"].as_i64()),
        (Some("deals"), Some(1))
    );
    let page = app.newest_page(&ann, channel).await;
    assert_eq!(page["messages"][0]["body"], "hello");
    let list = app
        .call("channels/list", Some(&ann.token), json!({}))
        .await
        .ok();
    assert_eq!(list.as_array().unwrap().len(), 1);
}
