//! Time from issuing `read/mark` to each other member receiving `read_updated`. Every member's
//! socket has its own reader task, so arrival is stamped when the event arrives.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{Api, connect, next_event, now_micros};
use crate::report::{Metric, Report, ServerUsage, histogram, percentiles, progress, record};
use crate::server::Server;

#[derive(Debug, Clone, clap::Args)]
pub struct ReceiptsArgs {
    /// Members of the channel.
    #[arg(long, default_value_t = 10)]
    pub members: usize,
    /// Measured read marks (after 20 warm-up ones).
    #[arg(long, default_value_t = 500)]
    pub marks: usize,
}

/// A read mark in flight, by the seq it marks.
#[derive(Clone, Copy)]
struct Mark {
    reader: i64,
    /// When `read/mark` was issued (µs).
    issued: u64,
    /// Past the warm-up.
    measured: bool,
}

pub async fn run(server: &Server, args: ReceiptsArgs) -> Result<Report, String> {
    let api = Api::new(&server.url);
    progress("receipts: setting up");
    let members = api.accounts("rcpt", args.members.max(2)).await?;
    let ids: Vec<i64> = members.iter().map(|m| m.id).collect();
    let channel = api.group(&members[0], &ids, "receipts").await?;
    let latencies = histogram();
    let marks: Arc<Mutex<HashMap<i64, Mark>>> = Arc::default();
    let received = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for member in &members {
        let mut ws = connect(&server.ws_url(), &member.token, None).await?;
        let (marks, latencies, received, me) = (
            marks.clone(),
            latencies.clone(),
            received.clone(),
            member.id,
        );
        readers.push(tokio::spawn(async move {
            while let Some(event) = next_event(&mut ws).await {
                if event["type"] != "read_updated" {
                    continue;
                }
                let arrived = now_micros();
                let seq = event["last_read_seq"].as_i64().unwrap_or(-1);
                let mark = marks.lock().ok().and_then(|m| m.get(&seq).copied());
                if let Some(mark) = mark
                    && mark.reader != me
                {
                    if mark.measured {
                        record(&latencies, arrived.saturating_sub(mark.issued));
                    }
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    let start_stats = server.stats();
    let started = Instant::now();
    let warmup = 20;
    let mut expected = 0u64;
    for n in 0..warmup + args.marks {
        // The writer sends; a reader (never the writer) marks it read; everyone else watches.
        let reader = &members[1 + n % (members.len() - 1)];
        let seq = api.send(&members[0], channel, "read me").await?["seq"]
            .as_i64()
            .ok_or("no seq")?;
        if let Ok(mut marks) = marks.lock() {
            marks.insert(
                seq,
                Mark {
                    reader: reader.id,
                    issued: now_micros(),
                    measured: n >= warmup,
                },
            );
        }
        api.call(
            "read/mark",
            Some(&reader.token),
            json!({ "channel_id": channel, "seq": seq }),
        )
        .await?;
        expected += members.len() as u64 - 1;
        // One mark at a time: wait until every other member has it (or give up after 5 s).
        let deadline = Instant::now() + Duration::from_secs(5);
        while received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        if n.is_multiple_of(50) {
            progress(&format!("receipts: {n}/{}", warmup + args.marks));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    for reader in readers {
        reader.abort();
    }
    progress("");
    let (p50, p99, _, count) = percentiles(&latencies);
    #[allow(clippy::cast_precision_loss)]
    let missing = expected.saturating_sub(received.load(Ordering::Relaxed)) as f64;
    #[allow(clippy::cast_precision_loss)]
    let metrics = vec![
        Metric::plain("receipts observed (measured)", count as f64, "events"),
        Metric::plain("mark→read_updated p50", p50, "ms"),
        Metric::at_most("mark→read_updated p99", p99, "ms", 5.0),
        Metric::at_most("receipts missing", missing, "events", 0.0),
    ];
    Ok(Report {
        scenario: "receipts",
        parameters: json!({ "members": args.members, "marks": args.marks }),
        metrics,
        table: None,
        server: ServerUsage::between(start_stats, server.stats(), elapsed),
        elapsed_secs: elapsed,
    })
}
