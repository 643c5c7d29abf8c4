//! Time from a connection opening, reporting away, and closing to an observer receiving the
//! matching `presence` event. The server runs with a zero grace period here (configurable;
//! otherwise "offline" is, by design, at least the grace period late).

use std::time::{Duration, Instant};

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Api, Socket, connect, next_event, now_micros};
use crate::report::{Metric, Report, ServerUsage, histogram, percentiles, progress, record};
use crate::server::Server;

#[derive(Debug, Clone, clap::Args)]
pub struct PresenceArgs {
    /// Open/away/close cycles measured (after 5 warm-up ones).
    #[arg(long, default_value_t = 200)]
    pub cycles: usize,
}

async fn await_presence(ws: &mut Socket, user_id: i64, state: &str) -> Option<u64> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, next_event(ws))
            .await
            .ok()??;
        if event["type"] == "presence" && event["user_id"] == user_id && event["state"] == state {
            return Some(now_micros());
        }
    }
}

pub async fn run(server: &Server, args: PresenceArgs) -> Result<Report, String> {
    let api = Api::new(&server.url);
    progress("presence: setting up");
    let accounts = api.accounts("pres", 2).await?;
    let (observer, subject) = (&accounts[0], &accounts[1]);
    api.group(observer, &[subject.id], "presence").await?;
    let mut watch = connect(&server.ws_url(), &observer.token, None).await?;
    let (opened, away, closed) = (histogram(), histogram(), histogram());
    let mut missing = 0u64;
    let start_stats = server.stats();
    let started = Instant::now();
    let warmup = 5;
    for n in 0..warmup + args.cycles {
        let measured = n >= warmup;
        let t0 = now_micros();
        let mut ws = connect(&server.ws_url(), &subject.token, None).await?;
        match await_presence(&mut watch, subject.id, "online").await {
            Some(at) if measured => record(&opened, at.saturating_sub(t0)),
            Some(_) => {}
            None => missing += 1,
        }
        let t1 = now_micros();
        ws.send(Message::Text(
            json!({ "type": "activity", "state": "away" })
                .to_string()
                .into(),
        ))
        .await
        .map_err(|e| e.to_string())?;
        match await_presence(&mut watch, subject.id, "away").await {
            Some(at) if measured => record(&away, at.saturating_sub(t1)),
            Some(_) => {}
            None => missing += 1,
        }
        let t2 = now_micros();
        let _ = ws.close(None).await;
        match await_presence(&mut watch, subject.id, "offline").await {
            Some(at) if measured => record(&closed, at.saturating_sub(t2)),
            Some(_) => {}
            None => missing += 1,
        }
        if n.is_multiple_of(20) {
            progress(&format!("presence: {n}/{}", warmup + args.cycles));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress("");
    let mut metrics = Vec::new();
    for (label, h) in [
        ("open→online", &opened),
        ("away→away", &away),
        ("close→offline", &closed),
    ] {
        let (p50, p99, _, _) = percentiles(h);
        metrics.push(Metric::plain(&format!("{label} p50"), p50, "ms"));
        metrics.push(Metric::at_most(&format!("{label} p99"), p99, "ms", 5.0));
    }
    #[allow(clippy::cast_precision_loss)]
    metrics.push(Metric::at_most(
        "events missing",
        missing as f64,
        "events",
        0.0,
    ));
    Ok(Report {
        scenario: "presence",
        parameters: json!({ "cycles": args.cycles, "grace_secs": 0 }),
        metrics,
        table: None,
        server: ServerUsage::between(start_stats, server.stats(), elapsed),
        elapsed_secs: elapsed,
    })
}
