//! `/metrics`: the real binary started with `--metrics-bind` in a child process, scraped before
//! and after a scripted session. Its own process, so the process-wide recorder is its alone and
//! every figure can be compared exactly; the other tests in this binary run without metrics.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use tokio::process::Child;

use crate::helpers::{TestApp, TestDatabase};
use crate::process::{free_port, start_with};
use crate::proxy::Proxy;

/// Every series the session below must leave in the exposition (with a `# HELP` line).
const DESCRIBED: &[&str] = &[
    "websocket_connections_total",
    "websocket_connections_open",
    "websocket_connections_closed_total",
    "messages_sent_total",
    "presence_changes_total",
    "events_delivered_total",
    "events_dropped_total",
    "http_requests_total",
    "http_request_duration_seconds",
    "message_send_durable_seconds",
    "message_writer_batch_size",
    "typing_events_total",
    "session_cache_lookups_total",
    "database_errors_total",
    "redis_errors_total",
    "redis_up",
    "login_throttled_total",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_virtual_memory_bytes",
    "process_open_fds",
    "process_threads",
];

/// The server binary with metrics on, a login throttle of one attempt per username, no presence
/// grace period, and presence on the Redis at `redis_url` (with keys of its own).
async fn start_with_metrics(redis_url: &str) -> (Child, TestApp, SocketAddr) {
    let database = TestDatabase::fresh().await;
    let (port, metrics_port) = (free_port(), free_port());
    let metrics_bind = format!("127.0.0.1:{metrics_port}");
    let redis_prefix = format!("dealnest-test-{}", uuid::Uuid::new_v4());
    let node = start_with(
        database.url(),
        port,
        &[
            ("LOG_LEVEL", "error"),
            ("METRICS_BIND", &metrics_bind),
            ("LOGIN_PER_USER_PER_MINUTE", "1"),
            ("PRESENCE_GRACE_SECS", "0"),
            ("REDIS_URL", redis_url),
            ("REDIS_PREFIX", &redis_prefix),
        ],
        false,
    )
    .await;
    let app = TestApp::attach(SocketAddr::from(([127, 0, 0, 1], port)), database);
    (
        node.child,
        app,
        SocketAddr::from(([127, 0, 0, 1], metrics_port)),
    )
}

/// One line of the exposition: a series and its value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape, with its `# HELP` names.
struct Scrape {
    samples: Vec<Sample>,
    described: Vec<String>,
}

impl Scrape {
    /// Scrapes every 100 ms until `done` holds (at most 10 s); the last scrape either way.
    async fn take_until(
        http: &reqwest::Client,
        metrics: SocketAddr,
        done: impl Fn(&Self) -> bool,
    ) -> Self {
        let mut scrape = Self::take(http, metrics).await;
        for _ in 0..100 {
            if done(&scrape) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            scrape = Self::take(http, metrics).await;
        }
        scrape
    }

    async fn take(http: &reqwest::Client, metrics: SocketAddr) -> Self {
        let response = http
            .get(format!("http://{metrics}/metrics"))
            .send()
            .await
            .expect("scrape");
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .expect("content type")
            .to_owned();
        assert!(
            content_type.starts_with("text/plain"),
            "Prometheus text format: {content_type}"
        );
        Self::parse(&response.text().await.expect("body"))
    }

    fn parse(text: &str) -> Self {
        let mut samples = Vec::new();
        let mut described = Vec::new();
        for line in text.lines() {
            if let Some(help) = line.strip_prefix("# HELP ") {
                described.push(help.split(' ').next().unwrap_or_default().to_owned());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("series and value");
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
            };
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("numeric value"),
            });
        }
        Self { samples, described }
    }

    /// The sum over the series of `name` carrying all of `labels`; `None` when there is none.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let matching: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .collect();
        (!matching.is_empty()).then(|| matching.iter().sum())
    }

    /// Like [`Self::get`], and the series must exist.
    #[track_caller]
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no series {name} {labels:?}"))
    }

    /// How much a series grew since `before` (a series absent before counts as 0 there).
    #[track_caller]
    fn delta(&self, before: &Self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels) - before.get(name, labels).unwrap_or(0.0)
    }
}

/// `a="x",b="y"`; values may hold commas and braces (`/c/{id}`), never quotes here.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let (value, after) = after.split_once('"').expect("closing quote");
        labels.insert(key.trim_start_matches(',').to_owned(), value.to_owned());
        rest = after;
    }
    labels
}

const SEND: &[(&str, &str)] = &[
    ("endpoint", "/api/messages/send"),
    ("method", "POST"),
    ("status", "200"),
];

#[tokio::test]
async fn a_scripted_session_moves_every_series_and_the_main_port_has_no_metrics() {
    // Nothing listens on port 1: presence starts in memory and keeps retrying, so Redis errors
    // and `redis_up` have values.
    let (_child, app, metrics) = start_with_metrics("redis://127.0.0.1:1").await;
    let ann = app.signup("ann").await;
    let bob = app.signup("bob").await;
    let channel = app.group(&ann, &[&bob]).await;
    let before = Scrape::take(&app.http, metrics).await;

    // Two connections, a typing signal, a send, a read, a bad token and a throttled log-in.
    let mut ann_ws = app.ws(&ann).await;
    let mut bob_ws = app.ws(&bob).await;
    bob_ws
        .send(json!({ "type": "typing", "channel_id": channel }))
        .await;
    ann_ws.event_of("typing").await;
    let sent = app.send(&ann, channel, "metrics, please").await;
    bob_ws.event_of("message_created").await;
    app.call(
        "read/mark",
        Some(&bob.token),
        json!({ "channel_id": channel, "seq": sent["seq"] }),
    )
    .await
    .ok();
    app.call("auth/me", Some("not-a-session"), json!({}))
        .await
        .err(401);
    let login = json!({ "username": "ann", "password": "wrong password" });
    app.call("auth/login", None, login.clone()).await.err(401);
    app.call("auth/login", None, login).await.err(429);
    // Ids in paths must not become label values.
    app.get("/c/987654").await;
    app.get("/no/such/page/424242").await;

    let during = Scrape::take(&app.http, metrics).await;
    let delta = |name: &str, labels: &[(&str, &str)]| during.delta(&before, name, labels);
    assert_eq!(delta("websocket_connections_total", &[]), 2.0);
    assert_eq!(delta("websocket_connections_open", &[]), 2.0);
    assert_eq!(delta("messages_sent_total", &[]), 1.0);
    assert_eq!(delta("message_send_durable_seconds_count", &[]), 1.0);
    assert_eq!(delta("message_writer_batch_size_count", &[]), 1.0);
    assert_eq!(delta("message_writer_batch_size_sum", &[]), 1.0);
    assert_eq!(
        delta("typing_events_total", &[("outcome", "forwarded")]),
        1.0
    );
    assert_eq!(delta("presence_changes_total", &[("state", "online")]), 2.0);
    assert_eq!(delta("http_requests_total", SEND), 1.0);
    assert_eq!(
        delta(
            "http_request_duration_seconds_count",
            &[("endpoint", "/api/messages/send"), ("method", "POST")]
        ),
        1.0
    );
    assert!(
        during.value(
            "http_request_duration_seconds_bucket",
            &[
                ("endpoint", "/api/messages/send"),
                ("method", "POST"),
                ("le", "+Inf")
            ]
        ) >= 1.0
    );
    assert_eq!(
        delta(
            "http_requests_total",
            &[("endpoint", "/api/read/mark"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "http_requests_total",
            &[("endpoint", "/api/auth/login"), ("status", "429")]
        ),
        1.0
    );
    assert_eq!(
        delta("login_throttled_total", &[("limit", "per_username")]),
        1.0
    );
    assert_eq!(delta("login_throttled_total", &[("limit", "per_ip")]), 0.0);
    // Typing to ann, the message to both: at least three, and presence events besides.
    assert!(delta("events_delivered_total", &[]) >= 3.0);
    assert_eq!(delta("events_dropped_total", &[("reason", "lag")]), 0.0);
    assert!(delta("session_cache_lookups_total", &[("result", "hit")]) >= 1.0);
    assert!(delta("session_cache_lookups_total", &[("result", "miss")]) >= 1.0);
    assert_eq!(delta("database_errors_total", &[]), 0.0);
    assert!(during.value("redis_errors_total", &[]) >= 1.0);
    assert_eq!(during.value("redis_up", &[]), 0.0);
    // Routes, not paths.
    assert!(delta("http_requests_total", &[("endpoint", "/c/{id}")]) >= 1.0);
    assert!(
        delta(
            "http_requests_total",
            &[("endpoint", "unmatched"), ("status", "404")]
        ) >= 1.0
    );
    for sample in during
        .samples
        .iter()
        .filter(|s| s.name == "http_requests_total")
    {
        let endpoint = &sample.labels["endpoint"];
        assert!(
            !endpoint.contains("987654") && !endpoint.contains("424242"),
            "raw path as a label: {endpoint}"
        );
    }
    // The process's own CPU and memory, read at the scrape.
    assert!(during.value("process_resident_memory_bytes", &[]) > 0.0);
    assert!(during.value("process_virtual_memory_bytes", &[]) > 0.0);
    assert!(during.value("process_open_fds", &[]) > 0.0);
    assert!(during.value("process_threads", &[]) >= 1.0);
    assert!(during.get("process_cpu_seconds_total", &[]).is_some());

    // Both leave: the gauge is back where it was, and each close is counted.
    ann_ws.close().await;
    bob_ws.close().await;
    let closed = [("code", "none"), ("reason", "client_gone")];
    let offline = [("state", "offline")];
    let mut after = Scrape::take(&app.http, metrics).await;
    // The server notices each close in its own time, and says "offline" after that.
    for _ in 0..200 {
        let settled = |name, labels| {
            after.get(name, labels).unwrap_or(0.0) - before.get(name, labels).unwrap_or(0.0) >= 2.0
        };
        if after.get("websocket_connections_open", &[])
            == before.get("websocket_connections_open", &[])
            && settled("websocket_connections_closed_total", &closed[..])
            && settled("presence_changes_total", &offline[..])
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        after = Scrape::take(&app.http, metrics).await;
    }
    assert_eq!(
        after.value("websocket_connections_open", &[]),
        before.value("websocket_connections_open", &[])
    );
    assert_eq!(
        after.delta(&before, "websocket_connections_closed_total", &closed),
        2.0
    );
    assert_eq!(
        after.delta(&before, "presence_changes_total", &offline),
        2.0
    );
    for name in DESCRIBED {
        assert!(
            after.described.iter().any(|described| described == name),
            "no # HELP for {name}"
        );
    }

    // The public port does not serve the exposition, and the metrics port serves nothing else.
    let public = app.get("/metrics").await;
    assert_eq!(public.status(), 404);
    let body = public.text().await.expect("body");
    assert!(
        !body.contains("# TYPE") && !body.contains("websocket_connections_total"),
        "metrics leaked on the public port: {body}"
    );
    let other = app
        .http
        .get(format!("http://{metrics}/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(other.status(), 404);
}

/// `redis_up` follows Redis down, up and down again, and each failure is counted.
#[tokio::test]
async fn redis_up_and_redis_errors_follow_an_outage() {
    let upstream = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let proxy = Proxy::reserve(upstream.trim_start_matches("redis://")).await;
    let (_child, app, metrics) = start_with_metrics(&proxy.url()).await;
    let at_start = Scrape::take(&app.http, metrics).await;
    assert_eq!(at_start.value("redis_up", &[]), 0.0);
    assert!(at_start.value("redis_errors_total", &[]) >= 1.0);

    proxy.up().await;
    let up = Scrape::take_until(&app.http, metrics, |up| up.value("redis_up", &[]) == 1.0).await;
    assert_eq!(up.value("redis_up", &[]), 1.0, "reachable again");

    // Down again: the next presence change finds out, falls back to memory and says so.
    proxy.down();
    let ann = app.signup("ann").await;
    let ann_ws = app.ws(&ann).await;
    // The presence task applies the change after `hello`; Redis answers nothing for a second.
    let down = Scrape::take_until(&app.http, metrics, |down| {
        down.value("redis_up", &[]) == 0.0
            && down.delta(&up, "presence_changes_total", &[("state", "online")]) == 1.0
    })
    .await;
    assert_eq!(down.value("redis_up", &[]), 0.0);
    assert!(down.delta(&up, "redis_errors_total", &[]) >= 1.0);
    assert_eq!(
        down.delta(&up, "presence_changes_total", &[("state", "online")]),
        1.0
    );
    ann_ws.close().await;
}

#[test]
fn labels_with_braces_and_commas_parse() {
    let scrape = Scrape::parse(
        "# HELP x_total Things.\n# TYPE x_total counter\n\
         x_total{endpoint=\"/c/{id}\",status=\"200\"} 3\nx_total{endpoint=\"a,b\",status=\"404\"} 1\ny 2.5\n",
    );
    assert_eq!(scrape.value("x_total", &[("endpoint", "/c/{id}")]), 3.0);
    assert_eq!(scrape.value("x_total", &[]), 4.0);
    assert_eq!(scrape.value("y", &[]), 2.5);
    assert_eq!(scrape.described, vec!["x_total".to_owned()]);
}
