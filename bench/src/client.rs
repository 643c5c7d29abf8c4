//! Talking to the server as any client would: server functions over HTTP with bearer tokens,
//! and the WebSocket protocol.

use std::net::IpAddr;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[derive(Clone)]
pub struct Api {
    pub base: String,
    http: reqwest::Client,
    /// Send random (v4) `client_id`s instead of time-ordered (v7) ones like the web client.
    random_keys: bool,
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: i64,
    pub token: String,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.to_owned(),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()
                .expect("http client"),
            random_keys: false,
        }
    }

    /// Sends with random UUIDv4 keys, as a client that ignores the v7 advice would.
    pub fn with_random_keys(mut self, random_keys: bool) -> Self {
        self.random_keys = random_keys;
        self
    }

    /// POSTs to `/api/{endpoint}`; the JSON answer, or the status and body as an error.
    pub async fn call(
        &self,
        endpoint: &str,
        token: Option<&str>,
        body: Value,
    ) -> Result<Value, String> {
        let mut request = self
            .http
            .post(format!("{}/api/{endpoint}", self.base))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status();
        let text = response.text().await.map_err(|e| e.to_string())?;
        if status.is_success() {
            serde_json::from_str(&text).map_err(|e| e.to_string())
        } else {
            Err(format!("{endpoint}: {status} {text}"))
        }
    }

    /// Signs up `count` accounts named `{prefix}{n}`, a few at a time.
    pub async fn accounts(&self, prefix: &str, count: usize) -> Result<Vec<Account>, String> {
        let mut accounts = Vec::with_capacity(count);
        for chunk in (0..count).collect::<Vec<_>>().chunks(16) {
            let mut tasks = Vec::new();
            for n in chunk {
                let api = self.clone();
                let username = format!("{prefix}{n}");
                tasks.push(tokio::spawn(async move {
                    api.call(
                        "auth/signup",
                        None,
                        json!({ "username": username, "display_name": username, "password": "bench-password" }),
                    )
                    .await
                }));
            }
            for task in tasks {
                let body = task.await.map_err(|e| e.to_string())??;
                accounts.push(Account {
                    id: body["user"]["id"].as_i64().ok_or("no user id")?,
                    token: body["token"].as_str().ok_or("no token")?.to_owned(),
                });
            }
        }
        Ok(accounts)
    }

    /// A group owned by `owner` with `members`; returns its id.
    pub async fn group(&self, owner: &Account, members: &[i64], name: &str) -> Result<i64, String> {
        let body = self
            .call(
                "channels/create",
                Some(&owner.token),
                json!({ "name": name, "member_ids": members }),
            )
            .await?;
        body["id"].as_i64().ok_or_else(|| "no channel id".into())
    }

    pub async fn send(
        &self,
        sender: &Account,
        channel_id: i64,
        body: &str,
    ) -> Result<Value, String> {
        let client_id = if self.random_keys {
            uuid::Uuid::new_v4()
        } else {
            uuid::Uuid::now_v7()
        };
        self.call(
            "messages/send",
            Some(&sender.token),
            json!({ "channel_id": channel_id, "client_id": client_id.to_string(), "body": body }),
        )
        .await
    }
}

/// Opens `/ws` for `token` (from `source` when given), reads `hello` and sends `resume`.
pub async fn connect(ws_url: &str, token: &str, source: Option<IpAddr>) -> Result<Socket, String> {
    let mut request = ws_url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().map_err(|_| "bad token")?,
    );
    let host = request.uri().authority().ok_or("no host")?.to_string();
    let addr: std::net::SocketAddr = tokio::net::lookup_host(&host)
        .await
        .map_err(|e| e.to_string())?
        .next()
        .ok_or("host did not resolve")?;
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if let Some(source) = source {
        socket
            .bind((source, 0).into())
            .map_err(|e| format!("bind {source}: {e}"))?;
    }
    let tcp = socket.connect(addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut ws, _) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .map_err(|e| e.to_string())?;
    match ws.next().await {
        Some(Ok(Message::Text(text))) if text.as_str().contains("\"hello\"") => {}
        other => return Err(format!("expected hello, got {other:?}")),
    }
    ws.send(Message::Text(
        json!({ "type": "resume", "channels": [] })
            .to_string()
            .into(),
    ))
    .await
    .map_err(|e| e.to_string())?;
    Ok(ws)
}

/// The next JSON event on `ws` (pings are answered by the library while reading).
pub async fn next_event(ws: &mut Socket) -> Option<Value> {
    serde_json::from_str(next_text(ws).await?.as_str()).ok()
}

/// The next text frame on `ws`, unparsed.
pub async fn next_text(ws: &mut Socket) -> Option<tokio_tungstenite::tungstenite::Utf8Bytes> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(text)) => return Some(text),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Milliseconds since the Unix epoch, with microsecond precision.
pub fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The part of a `message_created` event that receivers check. Only these fields are decoded:
/// the generator shares the machine with the server, and every microsecond it spends per event
/// is taken from the server.
#[derive(serde::Deserialize)]
struct Delivery<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(borrow)]
    message: Option<DeliveredMessage<'a>>,
}

/// A delivered message: where it belongs and its body (which carries the generator's stamp).
#[derive(serde::Deserialize)]
pub struct DeliveredMessage<'a> {
    pub channel_id: i64,
    pub seq: i64,
    #[serde(borrow)]
    pub body: Option<std::borrow::Cow<'a, str>>,
}

/// The message of a `message_created` frame; `None` for any other event.
pub fn delivered_message(text: &str) -> Option<DeliveredMessage<'_>> {
    match serde_json::from_str::<Delivery>(text) {
        Ok(Delivery {
            kind: "message_created",
            message,
        }) => message,
        _ => None,
    }
}

/// What a receiver made of one delivered seq.
#[derive(Debug, PartialEq, Eq)]
pub enum SeqCheck {
    /// Next in its channel; `skipped` seqs before it never arrived (a gap).
    New { skipped: u64 },
    /// Already seen (or older than the newest seen).
    Duplicate,
}

/// Per-channel newest seq of one receiver, for gap and duplicate counting. One entry per
/// channel of the run.
#[derive(Default)]
pub struct SeqTracker(std::collections::HashMap<i64, i64>);

impl SeqTracker {
    /// The first seq seen in a channel is taken as the start, not as a gap after 0.
    pub fn check(&mut self, channel_id: i64, seq: i64) -> SeqCheck {
        let last = self.0.entry(channel_id).or_insert(seq - 1);
        if seq <= *last {
            return SeqCheck::Duplicate;
        }
        let skipped = u64::try_from(seq - *last - 1).unwrap_or(0);
        *last = seq;
        SeqCheck::New { skipped }
    }

    /// [`Self::check`], adding a duplicate or a gap to the run's counters; true when the seq
    /// is new (the delivery counts).
    pub fn count(
        &mut self,
        channel_id: i64,
        seq: i64,
        lost: &std::sync::atomic::AtomicU64,
        duplicated: &std::sync::atomic::AtomicU64,
    ) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        match self.check(channel_id, seq) {
            SeqCheck::Duplicate => {
                duplicated.fetch_add(1, Relaxed);
                false
            }
            SeqCheck::New { skipped } => {
                lost.fetch_add(skipped, Relaxed);
                true
            }
        }
    }
}

/// Reads `ws` until it closes, counting gaps and duplicates per channel into `lost` and
/// `duplicated`, and hands every message delivered for the first time to `each`. The one
/// receive loop of every scenario that measures deliveries.
pub async fn receive_messages(
    ws: &mut Socket,
    lost: &std::sync::atomic::AtomicU64,
    duplicated: &std::sync::atomic::AtomicU64,
    mut each: impl FnMut(&DeliveredMessage<'_>),
) {
    let mut seqs = SeqTracker::default();
    while let Some(text) = next_text(ws).await {
        if let Some(message) = delivered_message(text.as_str())
            && seqs.count(message.channel_id, message.seq, lost, duplicated)
        {
            each(&message);
        }
    }
}
