//! The real server binary as a child process, for tests that signal or kill it.

use std::process::Stdio;
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

/// Starts the binary on `db` and `port` with `env` added, and waits for `/health`. Its stdout
/// is piped when `capture_stdout` (the caller reads it), discarded otherwise.
pub async fn start_with(
    db: &std::path::Path,
    port: u16,
    env: &[(&str, &str)],
    capture_stdout: bool,
) -> Node {
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

pub async fn start(db: &std::path::Path, port: u16) -> Node {
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
