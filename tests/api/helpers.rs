//! Starts the real app on an ephemeral port with a fresh database, and talks to it over HTTP as
//! a client would. The database is a SQLite file unless `TEST_DATABASE_URL` names a PostgreSQL
//! server, where each test gets a scratch database of its own; `scripts/test.sh` runs the suite
//! both ways.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use app::server::AppConfig;
use app::server::rate_limit::UserRateLimits;
use dealnest_chat::startup;
pub use dealnest_test_support::TestDatabase;
use leptos::config::LeptosOptions;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub struct TestApp {
    pub base: String,
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub database: TestDatabase,
    stop: Option<oneshot::Sender<()>>,
}

/// A signed-up user and their bearer token.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: i64,
    pub token: String,
}

/// A response: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Asserts a success and returns the body.
    #[track_caller]
    pub fn ok(self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.body);
        self.body
    }

    /// Asserts an error with `status` and returns its JSON.
    #[track_caller]
    pub fn err(self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert!(
            self.body["error"].is_string(),
            "typed error expected: {}",
            self.body
        );
        assert!(
            self.body["message"].is_string(),
            "message expected: {}",
            self.body
        );
        self.body
    }

    /// Asserts a 400 naming `field`.
    #[track_caller]
    pub fn invalid(self, field: &str) {
        let body = self.err(400);
        assert_eq!(body["error"], "invalid");
        assert_eq!(body["field"], field, "body: {body}");
    }
}

impl TestApp {
    /// The default configuration with a short presence grace period, so tests wait less, and
    /// without per-user rate limits: many tests send hundreds of messages at once. The tests of
    /// the limits (`limits.rs`) set small ones of their own.
    pub fn test_config() -> AppConfig {
        let mut config = AppConfig::default();
        config.presence.grace = std::time::Duration::from_millis(400);
        config.presence.sweep_every = std::time::Duration::from_millis(200);
        config.rate_limits = UserRateLimits::OFF;
        config
    }

    pub async fn spawn() -> Self {
        Self::spawn_with(Self::test_config()).await
    }

    pub async fn spawn_with(config: AppConfig) -> Self {
        Self::spawn_on(TestDatabase::fresh().await, config).await
    }

    /// A node on `database` (see [`TestDatabase::share`] for several nodes on one database).
    pub async fn spawn_on(database: TestDatabase, config: AppConfig) -> Self {
        let leptos_options = LeptosOptions::builder()
            .output_name("dealnest-chat")
            .site_root("target/site")
            .build();
        let state = startup::build_state(database.url(), config, leptos_options)
            .await
            .expect("build state");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(startup::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            database,
            stop: Some(stop),
        }
    }

    /// Talks to a server started some other way (the real binary in a child process, say),
    /// on `database`.
    pub fn attach(addr: SocketAddr, database: TestDatabase) -> Self {
        Self {
            addr,
            base: format!("http://{addr}"),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            database,
            stop: None,
        }
    }

    /// POSTs JSON to `/api/{endpoint}`, with a bearer token when given.
    pub async fn call(&self, endpoint: &str, token: Option<&str>, body: Value) -> Reply {
        let mut request = self
            .http
            .post(format!("{}/api/{endpoint}", self.base))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        Reply::from(response).await
    }

    pub async fn signup(&self, username: &str) -> TestUser {
        let body = self
            .call(
                "auth/signup",
                None,
                json!({ "username": username, "display_name": username.to_uppercase(),
                        "password": "correct horse" }),
            )
            .await
            .ok();
        TestUser {
            id: body["user"]["id"].as_i64().expect("user id"),
            token: body["token"].as_str().expect("token").to_owned(),
        }
    }

    /// Creates a group channel owned by `owner` with `members`, returning its id.
    pub async fn group(&self, owner: &TestUser, members: &[&TestUser]) -> i64 {
        let ids: Vec<i64> = members.iter().map(|m| m.id).collect();
        self.call(
            "channels/create",
            Some(&owner.token),
            json!({ "name": "deals", "member_ids": ids }),
        )
        .await
        .ok()["id"]
            .as_i64()
            .expect("channel id")
    }

    /// Sends `body` to `channel` with a fresh client id, returning the stored message.
    pub async fn send(&self, user: &TestUser, channel: i64, body: &str) -> Value {
        self.call(
            "messages/send",
            Some(&user.token),
            json!({ "channel_id": channel, "client_id": uuid::Uuid::new_v4().to_string(),
                    "body": body }),
        )
        .await
        .ok()
    }

    /// The newest page of `channel` as `user` sees it.
    pub async fn newest_page(&self, user: &TestUser, channel: i64) -> Value {
        self.call(
            "messages/list",
            Some(&user.token),
            json!({ "channel_id": channel }),
        )
        .await
        .ok()
    }

    /// The caller's channel-list row for `channel`.
    pub async fn summary(&self, user: &TestUser, channel: i64) -> Value {
        let list = self
            .call("channels/list", Some(&user.token), json!({}))
            .await
            .ok();
        list.as_array()
            .expect("list")
            .iter()
            .find(|row| row["id"] == channel)
            .cloned()
            .expect("channel in list")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request")
    }
}

impl TestApp {
    /// Opens `/ws` like a real client: reads `hello` and sends `resume` (here with no channels
    /// to catch up on, so live events flow at once).
    pub async fn ws(&self, user: &TestUser) -> WsClient {
        let mut client = self.ws_no_resume(user).await;
        client
            .send(json!({ "type": "resume", "channels": [] }))
            .await;
        client
    }

    /// Opens `/ws` with a bearer token and returns the client after its `hello`, before any
    /// `resume` (the server holds message events back until one arrives).
    pub async fn ws_no_resume(&self, user: &TestUser) -> WsClient {
        let mut client = self
            .ws_with(&[("authorization", format!("Bearer {}", user.token))])
            .await
            .expect("websocket upgrade");
        let hello = client.event().await;
        assert_eq!(hello["type"], "hello", "{hello}");
        assert_eq!(hello["user_id"].as_i64(), Some(user.id));
        client
    }

    /// Opens `/ws` with the given headers; `Err(status)` when the upgrade is refused.
    pub async fn ws_with(&self, headers: &[(&str, String)]) -> Result<WsClient, u16> {
        ws_connect(self.addr, headers).await
    }

    /// Opens `/ws` over a socket with a tiny receive buffer, so a client that stops reading
    /// makes the server's writes block (as a slow phone would), instead of the kernel absorbing
    /// megabytes on loopback.
    pub async fn ws_small_window(&self, user: &TestUser) -> WsClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let tcp = socket.connect(self.addr).await.expect("connect");
        let mut request = format!("ws://{}/ws", self.addr)
            .into_client_request()
            .expect("request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", user.token).parse().unwrap(),
        );
        let (stream, _) =
            tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
                .await
                .expect("websocket upgrade");
        WsClient { stream }
    }

    /// Stops the server as a shutdown signal would.
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// `/health` as JSON.
    pub async fn health(&self) -> Value {
        self.get("/health").await.json().await.expect("health json")
    }
}

/// Opens `/ws` on the server at `addr` with the given headers; `Err(status)` when the upgrade
/// is refused.
pub async fn ws_connect(addr: SocketAddr, headers: &[(&str, String)]) -> Result<WsClient, u16> {
    let mut request = format!("ws://{addr}/ws")
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        request.headers_mut().insert(
            reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((stream, _)) => Ok(WsClient { stream }),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(other) => panic!("websocket connect failed: {other}"),
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client speaking the app's JSON protocol.
pub struct WsClient {
    pub stream: Socket,
}

/// How long an expected event may take.
const EVENT_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

impl WsClient {
    /// The next frame (text as JSON), or `None` after `wait` with nothing.
    pub async fn next_frame(&mut self, wait: std::time::Duration) -> Option<WsFrame> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.stream.next())
                .await
                .ok()?;
            return Some(match frame {
                None => WsFrame::Ended,
                Some(Err(error)) => WsFrame::Failed(error.to_string()),
                Some(Ok(WsMessage::Text(text))) => {
                    WsFrame::Event(serde_json::from_str(text.as_str()).expect("server sent JSON"))
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    WsFrame::Closed(frame.map(|f| u16::from(f.code)))
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                Some(Ok(other)) => panic!("unexpected frame {other:?}"),
            });
        }
    }

    /// The next event; panics when none comes.
    pub async fn event(&mut self) -> Value {
        match self.next_frame(EVENT_WAIT).await {
            Some(WsFrame::Event(event)) => event,
            other => panic!("expected an event, got {other:?}"),
        }
    }

    /// The next event of type `kind`, skipping presence events (which arrive whenever users
    /// connect); any other event in between fails the test.
    pub async fn event_of(&mut self, kind: &str) -> Value {
        loop {
            let event = self.event().await;
            if event["type"] == kind {
                return event;
            }
            assert_eq!(event["type"], "presence", "expected {kind}, got {event}");
        }
    }

    /// Asserts nothing but presence events arrive for `ms` milliseconds.
    pub async fn assert_quiet(&mut self, ms: u64) {
        let until = tokio::time::Instant::now() + std::time::Duration::from_millis(ms);
        loop {
            let left = until.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return;
            }
            match self.next_frame(left).await {
                None => return,
                Some(WsFrame::Event(event)) if event["type"] == "presence" => {}
                Some(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    /// The close code the server ends with (reading past any events).
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next_frame(std::time::Duration::from_secs(15)).await {
                Some(WsFrame::Event(_)) => {}
                Some(WsFrame::Closed(code)) => return code,
                _ => return None,
            }
        }
    }

    pub async fn send(&mut self, event: Value) {
        self.stream
            .send(WsMessage::Text(event.to_string().into()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, message: WsMessage) {
        self.stream.send(message).await.expect("send");
    }

    pub async fn close(mut self) {
        let _ = self.stream.close(None).await;
    }
}

#[derive(Debug)]
pub enum WsFrame {
    Event(Value),
    Closed(Option<u16>),
    Ended,
    /// Read in assertion messages through `Debug`.
    #[allow(dead_code)]
    Failed(String),
}

impl Reply {
    pub async fn from(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
        }
    }
}
