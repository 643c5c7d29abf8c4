//! A crash of the whole process (SIGKILL) loses nothing that was acknowledged: the real binary,
//! a real database file, killed while sends are in flight, then started again on that file.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::{Child, Command};

struct Node {
    child: Child,
    base: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

async fn start(db: &std::path::Path, port: u16) -> Node {
    let child = Command::new(env!("CARGO_BIN_EXE_dealnest-chat"))
        .env("DATABASE_URL", db)
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("LEPTOS_SITE_ROOT", "target/site")
        .env("LOG_LEVEL", "warn")
        // Four senders as fast as the server takes them: far over the per-user send limit.
        .env("DISABLE_RATE_LIMITS", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the server binary");
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..200 {
        if reqwest::get(format!("{base}/health"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Node { child, base };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server did not come up on {base}");
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    endpoint: &str,
    token: Option<&str>,
    body: Value,
) -> reqwest::Result<(u16, Value)> {
    let mut request = http.post(format!("{base}/api/{endpoint}")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn sends_acknowledged_before_a_sigkill_are_all_there_after_restart() {
    let data = tempfile::tempdir().expect("temp dir");
    let db = data.path().join("dealnest.db");
    let port = free_port();
    let mut node = start(&db, port).await;
    let http = reqwest::Client::new();
    let (_, signed_up) = post(
        &http,
        &node.base,
        "auth/signup",
        None,
        json!({"username": "crashy", "display_name": "Crashy", "password": "correct horse"}),
    )
    .await
    .expect("sign up");
    let token = signed_up["token"].as_str().expect("token").to_owned();
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
    let mut stored: Vec<(String, i64)> = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = post(
            &http,
            &node.base,
            "messages/list",
            Some(&token),
            json!({"channel_id": channel_id, "after_seq": after, "limit": 200}),
        )
        .await
        .expect("list");
        assert_eq!(status, 200, "{page}");
        let messages = page["messages"].as_array().expect("messages").clone();
        for message in &messages {
            stored.push((
                message["client_id"].as_str().expect("client_id").to_owned(),
                message["seq"].as_i64().expect("seq"),
            ));
        }
        match messages.last() {
            Some(last) if page["has_more"] == true => after = last["seq"].as_i64().expect("seq"),
            _ => break,
        }
    }
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
