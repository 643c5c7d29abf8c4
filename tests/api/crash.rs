//! A crash of the whole process (SIGKILL) loses nothing that was acknowledged: the real binary,
//! a real database, killed while sends are in flight, then started again on that database.

use crate::helpers::TestDatabase;
use crate::process::{
    Senders, assert_acknowledged_are_stored, create_channel, free_port, signup, start,
};

#[tokio::test]
async fn sends_acknowledged_before_a_sigkill_are_all_there_after_restart() {
    let database = TestDatabase::fresh().await;
    let db = database.url();
    let port = free_port();
    let mut node = start(db, port).await;
    let http = reqwest::Client::new();
    let (_, token) = signup(&http, &node.base, "crashy").await;
    let channel_id = create_channel(&http, &node.base, &token, "crash").await;

    let senders = Senders::start(4, &http, &node.base, &token, channel_id);
    senders.until_acknowledged(300).await;
    node.child.start_kill().expect("SIGKILL");
    node.child.wait().await.expect("killed");
    let acknowledged = senders.finish().await;

    let node = start(db, port).await;
    assert_acknowledged_are_stored(&http, &node.base, &token, channel_id, &acknowledged).await;
}
