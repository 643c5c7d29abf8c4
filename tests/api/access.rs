//! Every channel, message and read endpoint refuses anonymous callers (401) and non-members (403).

use serde_json::{Value, json};

use crate::helpers::TestApp;

/// Each member-only endpoint with a well-formed body for `channel` / `message`.
fn member_only_calls(channel: i64, message: &Value, user_id: i64) -> Vec<(&'static str, Value)> {
    vec![
        ("channels/get", json!({ "channel_id": channel })),
        (
            "channels/rename",
            json!({ "channel_id": channel, "name": "mine now" }),
        ),
        (
            "channels/add_member",
            json!({ "channel_id": channel, "user_id": user_id }),
        ),
        (
            "channels/remove_member",
            json!({ "channel_id": channel, "user_id": user_id }),
        ),
        ("channels/leave", json!({ "channel_id": channel })),
        (
            "messages/send",
            json!({ "channel_id": channel, "client_id": uuid::Uuid::new_v4(), "body": "hi" }),
        ),
        ("messages/list", json!({ "channel_id": channel })),
        (
            "messages/edit",
            json!({ "message_id": message["id"], "body": "changed" }),
        ),
        ("messages/delete", json!({ "message_id": message["id"] })),
        ("read/mark", json!({ "channel_id": channel, "seq": 1 })),
        ("read/state", json!({ "channel_id": channel })),
    ]
}

#[tokio::test]
async fn non_members_are_forbidden_everywhere() {
    let app = TestApp::spawn().await;
    let (ann, eve) = (app.signup("ann").await, app.signup("eve").await);
    let channel = app.group(&ann, &[]).await;
    let message = app.send(&ann, channel, "private").await;
    for (endpoint, body) in member_only_calls(channel, &message, eve.id) {
        let reply = app.call(endpoint, Some(&eve.token), body).await;
        assert_eq!(reply.status, 403, "{endpoint}: {}", reply.body);
        assert_eq!(reply.body["error"], "forbidden", "{endpoint}");
    }
    // Nothing changed.
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
    assert_eq!(detail["members"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn anonymous_callers_are_unauthorized_everywhere() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    let channel = app.group(&ann, &[]).await;
    let message = app.send(&ann, channel, "private").await;
    let mut calls = member_only_calls(channel, &message, ann.id);
    calls.extend([
        ("channels/list", json!({})),
        ("channels/create", json!({ "name": "x", "member_ids": [] })),
        ("channels/direct", json!({ "user_id": ann.id })),
        ("users/search", json!({ "query": "a" })),
        ("auth/me", json!({})),
    ]);
    for (endpoint, body) in calls {
        for token in [None, Some("forged-token")] {
            let reply = app.call(endpoint, token, body.clone()).await;
            assert_eq!(reply.status, 401, "{endpoint} {token:?}: {}", reply.body);
            assert_eq!(reply.body["error"], "unauthorized", "{endpoint}");
        }
    }
}

#[tokio::test]
async fn unknown_channel_is_not_found() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    let body = app
        .call(
            "channels/get",
            Some(&ann.token),
            json!({ "channel_id": 4242 }),
        )
        .await
        .err(404);
    assert!(body["message"].as_str().unwrap().contains("4242"));
}
