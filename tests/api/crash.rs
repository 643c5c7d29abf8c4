//! A crash of the whole process (SIGKILL) loses nothing that was acknowledged: the real binary,
//! a real database file, killed while sends are in flight, then started again on that file.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::process::{all_messages, free_port, post, signup, start};

#[tokio::test]
async fn sends_acknowledged_before_a_sigkill_are_all_there_after_restart() {
    let data = tempfile::tempdir().expect("temp dir");
    let db = data.path().join("dealnest.db");
    let port = free_port();
    let mut node = start(&db, port).await;
    let http = reqwest::Client::new();
    let (_, token) = signup(&http, &node.base, "crashy").await;
    let (_, channel) = post(
        &http,
        &node.base,
        "channels/create",
        Some(&token),
        json!({"name": "crash", "member_ids": []}),
    )
    .await
    .expect("create channel");
    let channel_id = channel["id"].as_i64().expect("channel id");

    // Four senders in a loop; each records what the server acknowledged.
    let acknowledged: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
    let mut senders = Vec::new();
    for sender in 0..4 {
        let (http, base, token, acknowledged) = (
            http.clone(),
            node.base.clone(),
            token.clone(),
            acknowledged.clone(),
        );
        senders.push(tokio::spawn(async move {
            for n in 0.. {
                let client_id = uuid::Uuid::new_v4().to_string();
                let body = json!({"channel_id": channel_id, "client_id": client_id,
                                  "body": format!("sender {sender} message {n}")});
                match post(&http, &base, "messages/send", Some(&token), body).await {
                    Ok((200, message)) => acknowledged
                        .lock()
                        .expect("lock")
                        .push((client_id, message["seq"].as_i64().expect("seq"))),
                    _ => return,
                }
            }
        }));
    }
    while acknowledged.lock().expect("lock").len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.child.start_kill().expect("SIGKILL");
    node.child.wait().await.expect("killed");
    for sender in senders {
        let _ = sender.await;
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();

    let node = start(&db, port).await;
    let stored = all_messages(&http, &node.base, &token, channel_id).await;
    let seqs: Vec<i64> = stored.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=i64::try_from(seqs.len()).unwrap()).collect::<Vec<_>>(),
        "gap-free"
    );
    for ack in &acknowledged {
        assert!(
            stored.contains(ack),
            "acknowledged {ack:?} was lost in the crash"
        );
    }
    assert!(stored.len() >= acknowledged.len());
}
