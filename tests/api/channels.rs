use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn create_group_makes_creator_owner() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.signup("ann").await, app.signup("bob").await);
    let detail = app
        .call(
            "channels/create",
            Some(&ann.token),
            json!({ "name": "  Deals  ", "member_ids": [bob.id, bob.id, ann.id] }),
        )
        .await
        .ok();
    assert_eq!(detail["name"], "Deals");
    assert_eq!(detail["kind"], "group");
    let members = detail["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(
        (members[0]["user"]["id"].as_i64(), &members[0]["role"]),
        (Some(ann.id), &json!("owner"))
    );
    assert_eq!(members[1]["role"], "member");
    let got = app
        .call(
            "channels/get",
            Some(&bob.token),
            json!({ "channel_id": detail["id"] }),
        )
        .await
        .ok();
    assert_eq!(got, detail);
}

#[tokio::test]
async fn direct_channel_is_the_same_both_ways() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.signup("ann").await, app.signup("bob").await);
    let from_ann = app
        .call(
            "channels/direct",
            Some(&ann.token),
            json!({ "user_id": bob.id }),
        )
        .await
        .ok();
    let from_bob = app
        .call(
            "channels/direct",
            Some(&bob.token),
            json!({ "user_id": ann.id }),
        )
        .await
        .ok();
    assert_eq!(from_ann["id"], from_bob["id"]);
    assert_eq!(from_ann["kind"], "direct");
    let list = app
        .call("channels/list", Some(&bob.token), json!({}))
        .await
        .ok();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["title"], "ANN");
    assert_eq!(list[0]["peer"]["id"].as_i64(), Some(ann.id));
    // DMs cannot be renamed, joined or left.
    app.call(
        "channels/rename",
        Some(&ann.token),
        json!({ "channel_id": from_ann["id"], "name": "x" }),
    )
    .await
    .err(403);
    app.call(
        "channels/leave",
        Some(&ann.token),
        json!({ "channel_id": from_ann["id"] }),
    )
    .await
    .err(403);
}

#[tokio::test]
async fn owner_renames_adds_and_removes_members_others_cannot() {
    let app = TestApp::spawn().await;
    let (ann, bob, cid) = (
        app.signup("ann").await,
        app.signup("bob").await,
        app.signup("cid").await,
    );
    let channel = app.group(&ann, &[&bob]).await;

    app.call(
        "channels/rename",
        Some(&bob.token),
        json!({ "channel_id": channel, "name": "x" }),
    )
    .await
    .err(403);
    app.call(
        "channels/add_member",
        Some(&bob.token),
        json!({ "channel_id": channel, "user_id": cid.id }),
    )
    .await
    .err(403);

    let renamed = app
        .call(
            "channels/rename",
            Some(&ann.token),
            json!({ "channel_id": channel, "name": "Closing" }),
        )
        .await
        .ok();
    assert_eq!(renamed["name"], "Closing");
    let added = app
        .call(
            "channels/add_member",
            Some(&ann.token),
            json!({ "channel_id": channel, "user_id": cid.id }),
        )
        .await
        .ok();
    assert_eq!(added["members"].as_array().unwrap().len(), 3);
    // Adding again is a no-op.
    app.call(
        "channels/add_member",
        Some(&ann.token),
        json!({ "channel_id": channel, "user_id": cid.id }),
    )
    .await
    .ok();

    let removed = app
        .call(
            "channels/remove_member",
            Some(&ann.token),
            json!({ "channel_id": channel, "user_id": bob.id }),
        )
        .await
        .ok();
    assert_eq!(removed["members"].as_array().unwrap().len(), 2);
    app.call(
        "channels/get",
        Some(&bob.token),
        json!({ "channel_id": channel }),
    )
    .await
    .err(403);
    app.call(
        "channels/remove_member",
        Some(&ann.token),
        json!({ "channel_id": channel, "user_id": bob.id }),
    )
    .await
    .err(404);
}

#[tokio::test]
async fn owner_leaving_passes_ownership_on() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.signup("ann").await, app.signup("bob").await);
    let channel = app.group(&ann, &[&bob]).await;
    app.call(
        "channels/leave",
        Some(&ann.token),
        json!({ "channel_id": channel }),
    )
    .await
    .ok();
    let detail = app
        .call(
            "channels/get",
            Some(&bob.token),
            json!({ "channel_id": channel }),
        )
        .await
        .ok();
    assert_eq!(detail["members"][0]["user"]["id"].as_i64(), Some(bob.id));
    assert_eq!(detail["members"][0]["role"], "owner");
    app.call(
        "channels/get",
        Some(&ann.token),
        json!({ "channel_id": channel }),
    )
    .await
    .err(403);
}

#[tokio::test]
async fn list_shows_preview_and_newest_activity_first() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.signup("ann").await, app.signup("bob").await);
    let quiet = app.group(&ann, &[&bob]).await;
    let busy = app.group(&ann, &[&bob]).await;
    app.send(&ann, busy, "first").await;
    // Activity is ordered by millisecond timestamps: make the second one strictly later.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    app.send(&bob, quiet, &"x".repeat(300)).await;
    let list = app
        .call("channels/list", Some(&ann.token), json!({}))
        .await
        .ok();
    let ids: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [quiet, busy]);
    let preview = &list[0]["last_message"];
    assert_eq!(preview["sender_name"], "BOB");
    assert_eq!(preview["body"].as_str().unwrap().chars().count(), 140);
}
