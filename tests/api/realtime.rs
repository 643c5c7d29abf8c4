//! The WebSocket hub with real clients: who receives what, catch-up, typing, receipts,
//! membership changes, slow consumers, and bad input.

use std::time::Duration;

use serde_json::json;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::helpers::{TestApp, TestUser, WsFrame};

#[tokio::test]
async fn messages_reach_members_and_the_senders_other_tabs_only() {
    let app = TestApp::spawn().await;
    let (ann, bob, eve) = (
        app.signup("ann").await,
        app.signup("bob").await,
        app.signup("eve").await,
    );
    let channel = app.group(&ann, &[&bob]).await;
    let mut ann_tab = app.ws(&ann).await;
    let mut bob_ws = app.ws(&bob).await;
    let mut eve_ws = app.ws(&eve).await;

    let sent = app.send(&ann, channel, "hello team").await;
    for client in [&mut ann_tab, &mut bob_ws] {
        let event = client.event_of("message_created").await;
        assert_eq!(event["message"], sent);
    }
    eve_ws.assert_quiet(300).await;

    let edited = app
        .call(
            "messages/edit",
            Some(&ann.token),
            json!({ "message_id": sent["id"], "body": "hello all" }),
        )
        .await
        .ok();
    assert_eq!(bob_ws.event_of("message_updated").await["message"], edited);
    assert_eq!(
        ann_tab.event_of("message_updated").await["message"]["body"],
        "hello all"
    );

    app.call(
        "messages/delete",
        Some(&ann.token),
        json!({ "message_id": sent["id"] }),
    )
    .await
    .ok();
    let deleted = bob_ws.event_of("message_deleted").await;
    assert!(deleted["message"]["body"].is_null() && deleted["message"]["deleted_at"].is_i64());
    ann_tab.event_of("message_deleted").await;
    eve_ws.assert_quiet(200).await;
}

#[tokio::test]
async fn read_pointer_moves_reach_members_and_the_readers_other_tabs() {
    let app = TestApp::spawn().await;
    let (ann, bob, eve) = (
        app.signup("ann").await,
        app.signup("bob").await,
        app.signup("eve").await,
    );
    let channel = app.group(&ann, &[&bob]).await;
    app.send(&ann, channel, "one").await;
    app.send(&ann, channel, "two").await;
    let mut ann_ws = app.ws(&ann).await;
    let mut bob_tab1 = app.ws(&bob).await;
    let mut bob_tab2 = app.ws(&bob).await;
    let mut eve_ws = app.ws(&eve).await;

    app.call(
        "read/mark",
        Some(&bob.token),
        json!({ "channel_id": channel, "seq": 2 }),
    )
    .await
    .ok();
    let expected = json!({ "type": "read_updated", "channel_id": channel, "user_id": bob.id, "last_read_seq": 2 });
    for client in [&mut ann_ws, &mut bob_tab1, &mut bob_tab2] {
        assert_eq!(client.event_of("read_updated").await, expected);
    }
    // Marking an older seq moves nothing and tells nobody.
    app.call(
        "read/mark",
        Some(&bob.token),
        json!({ "channel_id": channel, "seq": 1 }),
    )
    .await
    .ok();
    ann_ws.assert_quiet(300).await;
    eve_ws.assert_quiet(100).await;
}

#[tokio::test]
async fn typing_reaches_others_expires_and_clears_on_send() {
    let app = TestApp::spawn().await;
    let (ann, bob, eve) = (
        app.signup("ann").await,
        app.signup("bob").await,
        app.signup("eve").await,
    );
    let channel = app.group(&ann, &[&bob]).await;
    let mut ann_ws = app.ws(&ann).await;
    let mut bob_ws = app.ws(&bob).await;
    let mut eve_ws = app.ws(&eve).await;

    ann_ws
        .send(json!({ "type": "typing", "channel_id": channel }))
        .await;
    let typing = bob_ws.event_of("typing").await;
    assert_eq!(
        (typing["channel_id"].as_i64(), typing["user_id"].as_i64()),
        (Some(channel), Some(ann.id))
    );
    let ping_time = {
        bob_ws.send(json!({ "type": "ping" })).await;
        bob_ws.event_of("pong").await["server_time"]
            .as_i64()
            .unwrap()
    };
    let expires_in = typing["expires_at"].as_i64().unwrap() - ping_time;
    assert!(
        (4_000..=6_000).contains(&expires_in),
        "expires about 6 s after sending: {expires_in}"
    );
    // A renewal right away is absorbed (rate limit), the typer never hears themself.
    ann_ws
        .send(json!({ "type": "typing", "channel_id": channel }))
        .await;
    bob_ws.assert_quiet(300).await;
    eve_ws.assert_quiet(100).await;

    app.send(&ann, channel, "done typing").await;
    bob_ws.event_of("message_created").await;
    let stopped = bob_ws.event_of("typing_stopped").await;
    assert_eq!(stopped["user_id"].as_i64(), Some(ann.id));
    // Ann gets her own message on her connection but no typing events about herself.
    ann_ws.event_of("message_created").await;
    ann_ws.assert_quiet(300).await;
}

#[tokio::test]
async fn catch_up_replays_missed_messages_once_in_order_then_live() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.signup("ann").await, app.signup("bob").await);
    let channel = app.group(&ann, &[&bob]).await;
    let mut bob_ws = app.ws(&bob).await;
    app.send(&ann, channel, "m1").await;
    assert_eq!(
        bob_ws.event_of("message_created").await["message"]["seq"],
        1
    );
    bob_ws.close().await;

    for n in 2..=4 {
        app.send(&ann, channel, &format!("m{n}")).await;
    }
    let mut bob_ws = app.ws_no_resume(&bob).await;
    bob_ws
        .send(json!({ "type": "resume", "channels": [{ "channel_id": channel, "after_seq": 1 }] }))
        .await;
    for seq in 2..=4 {
        let event = bob_ws.event_of("message_created").await;
        assert_eq!(event["message"]["seq"], seq);
        assert_eq!(event["message"]["body"], format!("m{seq}"));
    }
    assert_eq!(
        bob_ws.event_of("caught_up").await,
        json!({ "type": "caught_up", "channel_id": channel, "last_seq": 4 })
    );
    app.send(&ann, channel, "m5").await;
    assert_eq!(
        bob_ws.event_of("message_created").await["message"]["seq"],
        5
    );
    bob_ws.assert_quiet(300).await;

    // A later gap fill on the same connection replays again (the replay channel of the first
    // one is gone by now), and only what was asked for.
    bob_ws
        .send(json!({ "type": "subscribe", "channel_id": channel, "after_seq": 3 }))
        .await;
    for seq in 4..=5 {
        assert_eq!(
            bob_ws.event_of("message_created").await["message"]["seq"],
            seq
        );
    }
    assert_eq!(bob_ws.event_of("caught_up").await["last_seq"], 5);
    bob_ws.assert_quiet(300).await;
}

#[tokio::test]
async fn messages_sent_during_replay_are_neither_lost_nor_doubled() {
    let app = std::sync::Arc::new(TestApp::spawn().await);
    let (ann, bob) = (app.signup("ann").await, app.signup("bob").await);
    let channel = app.group(&ann, &[&bob]).await;
    // More than one replay page (200), so the replay takes a while.
    for n in 1..=450 {
        app.send(&ann, channel, &format!("m{n}")).await;
    }
    // Live messages start before Bob says what he has: they must wait for his replay.
    let mut bob_ws = app.ws_no_resume(&bob).await;
    let senders: Vec<_> = (0..4)
        .map(|worker| {
            let (app, ann) = (app.clone(), ann.clone());
            tokio::spawn(async move {
                for n in 0..15 {
                    app.send(&ann, channel, &format!("live {worker}-{n}")).await;
                }
            })
        })
        .collect();
    bob_ws
        .send(json!({ "type": "subscribe", "channel_id": channel, "after_seq": 0 }))
        .await;
    let mut seqs = Vec::new();
    let mut caught_up_at = None;
    while seqs.len() < 510 {
        let event = bob_ws.event().await;
        match event["type"].as_str() {
            Some("message_created") => seqs.push(event["message"]["seq"].as_i64().unwrap()),
            Some("caught_up") => caught_up_at = Some(seqs.len()),
            Some("presence") => {}
            _ => panic!("unexpected {event}"),
        }
    }
    for sender in senders {
        sender.await.unwrap();
    }
    assert_eq!(
        seqs,
        (1..=510).collect::<Vec<_>>(),
        "every seq exactly once, in order"
    );
    assert!(
        caught_up_at.is_some_and(|at| at >= 450),
        "caught_up after the missed messages"
    );
    bob_ws.assert_quiet(300).await;
}

#[tokio::test]
async fn membership_changes_take_effect_live() {
    let app = TestApp::spawn().await;
    let (ann, bob, cid) = (
        app.signup("ann").await,
        app.signup("bob").await,
        app.signup("cid").await,
    );
    let mut ann_ws = app.ws(&ann).await;
    let mut bob_ws = app.ws(&bob).await;
    let mut cid_ws = app.ws(&cid).await;

    let channel = app.group(&ann, &[&bob]).await;
    let created = bob_ws.event_of("channel_updated").await;
    assert_eq!(created["channel"]["id"].as_i64(), Some(channel));
    assert_eq!(created["channel"]["member_count"], 2);
    ann_ws.event_of("channel_updated").await;
    cid_ws.assert_quiet(200).await;

    app.call(
        "channels/add_member",
        Some(&ann.token),
        json!({ "channel_id": channel, "user_id": cid.id }),
    )
    .await
    .ok();
    let added = cid_ws.event_of("member_added").await;
    assert_eq!(
        (added["user"]["id"].as_i64(), &added["role"]),
        (Some(cid.id), &json!("member"))
    );
    bob_ws.event_of("member_added").await;
    app.send(&ann, channel, "welcome cid").await;
    assert_eq!(
        cid_ws.event_of("message_created").await["message"]["body"],
        "welcome cid"
    );
    bob_ws.event_of("message_created").await;

    app.call(
        "channels/remove_member",
        Some(&ann.token),
        json!({ "channel_id": channel, "user_id": bob.id }),
    )
    .await
    .ok();
    let removed = bob_ws.event_of("member_removed").await;
    assert_eq!(removed["user_id"].as_i64(), Some(bob.id));
    app.send(&ann, channel, "bob is gone").await;
    cid_ws.event_of("member_removed").await;
    cid_ws.event_of("message_created").await;
    bob_ws.assert_quiet(300).await;
    // Bob can no longer subscribe or type there.
    bob_ws
        .send(json!({ "type": "typing", "channel_id": channel }))
        .await;
    assert_eq!(bob_ws.event_of("error").await["code"], "not_a_member");

    app.call(
        "channels/rename",
        Some(&ann.token),
        json!({ "channel_id": channel, "name": "Closing" }),
    )
    .await
    .ok();
    assert_eq!(
        cid_ws.event_of("channel_updated").await["channel"]["name"],
        "Closing"
    );
    bob_ws.assert_quiet(200).await;
}

#[tokio::test]
async fn a_slow_consumer_is_cut_off_while_others_keep_receiving() {
    let mut config = TestApp::test_config();
    config.hub.queue_capacity = 16;
    let app = std::sync::Arc::new(TestApp::spawn_with(config).await);
    let (ann, bob, cid) = (
        app.signup("ann").await,
        app.signup("bob").await,
        app.signup("cid").await,
    );
    let channel = app.group(&ann, &[&bob, &cid]).await;
    // Bob's client stops reading; the kernel may buffer up to 4 MiB for it, so send more than
    // that: 450 messages of 4000 four-byte characters (~7 MB).
    let mut slow = app.ws_small_window(&bob).await;
    // Like any client, it says at once what it has; until then the server would hold events
    // back rather than queue them.
    slow.send(json!({ "type": "resume", "channels": [] })).await;
    let mut fast = app.ws(&cid).await;
    let total = 450;
    let reader = tokio::spawn(async move {
        // Bursts are written coalesced; every message still arrives once and in seq order.
        for seq in 1..=total {
            let event = fast.event_of("message_created").await;
            assert_eq!(event["message"]["seq"], seq);
        }
        fast
    });
    let senders: Vec<_> = (0..6)
        .map(|_| {
            let (app, ann) = (app.clone(), ann.clone());
            tokio::spawn(async move {
                let body = "😀".repeat(4000);
                for _ in 0..total / 6 {
                    app.send(&ann, channel, &body).await;
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    let _fast = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the fast client got every message")
        .unwrap();
    assert_eq!(
        slow.close_code().await,
        Some(4008),
        "told to reconnect and resume"
    );
    let health = app.health().await;
    assert_eq!(health["connections"], 1, "{health}");
}

#[tokio::test]
async fn bad_frames_get_error_events_and_the_connection_stays_up() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    let mut ws = app.ws(&ann).await;
    for (frame, code) in [
        ("{not json".to_owned(), "invalid_json"),
        (json!({ "no_type": 1 }).to_string(), "unknown_event"),
        (json!({ "type": "dance" }).to_string(), "unknown_event"),
        (
            json!({ "type": "typing", "channel_id": "seven" }).to_string(),
            "invalid_event",
        ),
        (
            json!({ "type": "typing", "channel_id": 4242 }).to_string(),
            "not_a_member",
        ),
        (
            json!({ "type": "subscribe", "channel_id": 4242, "after_seq": 0 }).to_string(),
            "not_a_member",
        ),
        (
            json!({ "type": "activity", "state": "sleeping" }).to_string(),
            "invalid_event",
        ),
    ] {
        ws.send_raw(WsMessage::Text(frame.clone().into())).await;
        let error = ws.event_of("error").await;
        assert_eq!(error["code"], code, "{frame}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    ws.send_raw(WsMessage::Binary(vec![1, 2, 3].into())).await;
    assert_eq!(ws.event_of("error").await["code"], "unsupported");
    ws.send(json!({ "type": "ping", "nonce": "still-here" }))
        .await;
    assert_eq!(ws.event_of("pong").await["nonce"], "still-here");
}

#[tokio::test]
async fn oversized_frames_close_1009_and_invalid_utf8_closes_1007() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    let mut ws = app.ws(&ann).await;
    ws.send_raw(WsMessage::Text("x".repeat(64 * 1024).into()))
        .await;
    assert_eq!(ws.close_code().await, Some(1009));

    let mut ws = app.ws(&ann).await;
    let invalid = Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true);
    ws.send_raw(WsMessage::Frame(invalid)).await;
    assert_eq!(ws.close_code().await, Some(1007));
    // The server is fine afterwards.
    let mut ws = app.ws(&ann).await;
    ws.send(json!({ "type": "ping" })).await;
    ws.event_of("pong").await;
}

#[tokio::test]
async fn upgrade_requires_a_session_and_a_same_site_origin_for_cookies() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    assert_eq!(app.ws_with(&[]).await.err(), Some(401));
    assert_eq!(
        app.ws_with(&[("authorization", "Bearer forged".into())])
            .await
            .err(),
        Some(401)
    );

    let cookie = ("cookie", format!("dn_session={}", ann.token));
    let own_origin = ("origin", format!("http://{}", app.addr));
    assert_eq!(
        app.ws_with(std::slice::from_ref(&cookie)).await.err(),
        Some(403),
        "cookie without Origin"
    );
    assert_eq!(
        app.ws_with(&[cookie.clone(), ("origin", "https://evil.example".into())])
            .await
            .err(),
        Some(403),
        "cross-site page riding on the cookie"
    );
    let mut ws = app
        .ws_with(&[cookie, own_origin])
        .await
        .expect("same-site browser");
    assert_eq!(ws.event().await["type"], "hello");
}

#[tokio::test]
async fn connections_per_user_are_capped() {
    let mut config = TestApp::test_config();
    config.hub.max_connections_per_user = 2;
    let app = TestApp::spawn_with(config).await;
    let ann = app.signup("ann").await;
    let _one = app.ws(&ann).await;
    let two = app.ws(&ann).await;
    let bearer = [("authorization", format!("Bearer {}", ann.token))];
    assert_eq!(app.ws_with(&bearer).await.err(), Some(429));
    two.close().await;
    // The slot frees up once the server has seen the close.
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok(client) = app.ws_with(&bearer).await {
            reopened = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut reopened = reopened.expect("a slot after closing one");
    assert!(matches!(
        reopened.next_frame(Duration::from_secs(5)).await,
        Some(WsFrame::Event(_))
    ));
}

#[tokio::test]
async fn a_client_that_stops_answering_pings_is_closed_4009() {
    let mut config = TestApp::test_config();
    config.heartbeat = Duration::from_millis(300);
    let app = TestApp::spawn_with(config).await;
    let ann = app.signup("ann").await;
    let mut answering = app.ws(&ann).await;
    let mut silent = app.ws(&ann).await;
    // Any frame counts as a sign of life; the silent client sends nothing (not even pongs).
    for _ in 0..10 {
        answering.send(json!({ "type": "ping" })).await;
        answering.event_of("pong").await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(silent.close_code().await, Some(4009));
    answering.send(json!({ "type": "ping" })).await;
    answering.event_of("pong").await;
}

#[tokio::test]
async fn stopping_the_server_closes_sockets_with_1012() {
    let mut app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    let mut ws = app.ws(&ann).await;
    app.stop();
    assert_eq!(
        ws.close_code().await,
        Some(1012),
        "restarting: reconnect and resume"
    );
}

#[tokio::test]
async fn signing_out_closes_that_sessions_sockets_4001_and_no_others() {
    let app = TestApp::spawn().await;
    let (ann, bob) = (app.signup("ann").await, app.signup("bob").await);
    let channel = app.group(&ann, &[&bob]).await;
    // A second session of ann's (another device), and a third that reconnects later.
    let login = app
        .call(
            "auth/login",
            None,
            json!({ "username": "ann", "password": "correct horse" }),
        )
        .await
        .ok();
    let laptop = TestUser {
        id: ann.id,
        token: login["token"].as_str().unwrap().to_owned(),
    };
    let mut phone_tab1 = app.ws(&ann).await;
    let mut phone_tab2 = app.ws(&ann).await;
    let mut laptop_ws = app.ws(&laptop).await;

    app.call("auth/logout", Some(&ann.token), json!({}))
        .await
        .ok();
    assert_eq!(phone_tab1.close_code().await, Some(4001));
    assert_eq!(phone_tab2.close_code().await, Some(4001));
    assert_eq!(
        app.ws_with(&[("authorization", format!("Bearer {}", ann.token))])
            .await
            .err(),
        Some(401),
        "the signed-out token cannot reconnect"
    );
    // The other session keeps receiving.
    app.send(&bob, channel, "still here?").await;
    assert_eq!(
        laptop_ws.event_of("message_created").await["message"]["body"],
        "still here?"
    );
    let health = app.health().await;
    assert_eq!(health["connections"], 1, "{health}");
}
