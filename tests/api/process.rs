//! The real server binary as a child process, for tests that signal or kill it.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};

pub struct Node {
    pub child: Child,
    pub base: String,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

/// Starts the binary on the database at `db` (a `DATABASE_URL`) and `port` with `env` added, and waits for `/health`. Its stdout
/// is piped when `capture_stdout` (the caller reads it), discarded otherwise.
pub async fn start_with(db: &str, port: u16, env: &[(&str, &str)], capture_stdout: bool) -> Node {
    let child = Command::new(env!("CARGO_BIN_EXE_dealnest-chat"))
        .env("DATABASE_URL", db)
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("LEPTOS_SITE_ROOT", "target/site")
        .env("LOG_LEVEL", "warn")
        // The tests that run the binary send as fast as it takes them, far over the per-user
        // send limit; tests/api/limits.rs tests the limits.
        .env("DISABLE_RATE_LIMITS", "true")
        .envs(env.iter().copied())
        .stdout(if capture_stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
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

pub async fn start(db: &str, port: u16) -> Node {
    start_with(db, port, &[], false).await
}

/// POSTs JSON to `/api/{endpoint}`: the status and the JSON body (`Null` if not JSON).
pub async fn post(
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

/// Signs up `username` on `base` and returns its id and token.
pub async fn signup(http: &reqwest::Client, base: &str, username: &str) -> (i64, String) {
    let (status, signed_up) = post(
        http,
        base,
        "auth/signup",
        None,
        serde_json::json!({"username": username, "display_name": username, "password": "correct horse"}),
    )
    .await
    .expect("sign up");
    assert_eq!(status, 200, "{signed_up}");
    (
        signed_up["user"]["id"].as_i64().expect("user id"),
        signed_up["token"].as_str().expect("token").to_owned(),
    )
}

/// Every message of `channel_id` as (client_id, seq), oldest first.
pub async fn all_messages(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    channel_id: i64,
) -> Vec<(String, i64)> {
    let mut stored = Vec::new();
    let mut after = 0;
    loop {
        let (status, page) = post(
            http,
            base,
            "messages/list",
            Some(token),
            serde_json::json!({"channel_id": channel_id, "after_seq": after, "limit": 200}),
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
            _ => return stored,
        }
    }
}

/// A channel `token`'s user creates alone; its id.
pub async fn create_channel(http: &reqwest::Client, base: &str, token: &str, name: &str) -> i64 {
    let (status, channel) = post(
        http,
        base,
        "channels/create",
        Some(token),
        serde_json::json!({"name": name, "member_ids": []}),
    )
    .await
    .expect("create channel");
    assert_eq!(status, 200, "{channel}");
    channel["id"].as_i64().expect("channel id")
}

/// Senders in a loop to one channel until the server stops answering (the node is gone), each
/// recording what the server acknowledged, as (client_id, seq). Any refusal fails the test.
pub struct Senders {
    acknowledged: Arc<Mutex<Vec<(String, i64)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Senders {
    pub fn start(
        count: usize,
        http: &reqwest::Client,
        base: &str,
        token: &str,
        channel_id: i64,
    ) -> Self {
        let acknowledged: Arc<Mutex<Vec<(String, i64)>>> = Arc::default();
        let tasks = (0..count)
            .map(|_| {
                let (http, base, token, acknowledged) = (
                    http.clone(),
                    base.to_owned(),
                    token.to_owned(),
                    acknowledged.clone(),
                );
                tokio::spawn(async move {
                    for n in 0.. {
                        let client_id = uuid::Uuid::new_v4().to_string();
                        let body = serde_json::json!({"channel_id": channel_id,
                            "client_id": client_id, "body": format!("message {n}")});
                        match post(&http, &base, "messages/send", Some(&token), body).await {
                            Ok((200, message)) => acknowledged
                                .lock()
                                .expect("lock")
                                .push((client_id, message["seq"].as_i64().expect("seq"))),
                            Ok((status, body)) => panic!("send refused with {status}: {body}"),
                            Err(_) => return,
                        }
                    }
                })
            })
            .collect();
        Self {
            acknowledged,
            tasks,
        }
    }

    /// Waits until at least `count` sends are acknowledged.
    pub async fn until_acknowledged(&self, count: usize) {
        while self.acknowledged.lock().expect("lock").len() < count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits for every sender to stop (the server is gone) and returns what was acknowledged.
    pub async fn finish(self) -> Vec<(String, i64)> {
        for task in self.tasks {
            task.await.expect("sender");
        }
        self.acknowledged.lock().expect("lock").clone()
    }
}

/// The channel's seqs are 1..=N with no gap, and every acknowledged send is among them.
pub async fn assert_acknowledged_are_stored(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    channel_id: i64,
    acknowledged: &[(String, i64)],
) {
    let stored = all_messages(http, base, token, channel_id).await;
    let seqs: Vec<i64> = stored.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(
        seqs,
        (1..=i64::try_from(seqs.len()).unwrap()).collect::<Vec<_>>(),
        "gap-free"
    );
    for ack in acknowledged {
        assert!(stored.contains(ack), "acknowledged {ack:?} was lost");
    }
}
