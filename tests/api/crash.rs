//! A crash of the whole process (SIGKILL) loses nothing that was acknowledged: the real binary,
//! a real database file, killed while sends are in flight, then started again on that file.

use std::time::Duration;

use crate::process::{
    Acknowledged, assert_acknowledged_are_stored, create_channel, free_port, signup, spawn_sender,
    start,
};

#[tokio::test]
async fn sends_acknowledged_before_a_sigkill_are_all_there_after_restart() {
    let data = tempfile::tempdir().expect("temp dir");
    let db = data.path().join("dealnest.db");
    let port = free_port();
    let mut node = start(&db, port).await;
    let http = reqwest::Client::new();
    let (_, token) = signup(&http, &node.base, "crashy").await;
    let channel_id = create_channel(&http, &node.base, &token, "crash").await;

    // Four senders in a loop; each records what the server acknowledged.
    let acknowledged = Acknowledged::default();
    let senders: Vec<_> = (0..4)
        .map(|_| {
            spawn_sender(
                http.clone(),
                node.base.clone(),
                token.clone(),
                channel_id,
                acknowledged.clone(),
            )
        })
        .collect();
    while acknowledged.lock().expect("lock").len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node.child.start_kill().expect("SIGKILL");
    node.child.wait().await.expect("killed");
    for sender in senders {
        sender.await.expect("sender");
    }
    let acknowledged = acknowledged.lock().expect("lock").clone();

    let node = start(&db, port).await;
    assert_acknowledged_are_stored(&http, &node.base, &token, channel_id, &acknowledged).await;
}
