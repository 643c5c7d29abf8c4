//! `messages/list` pages of 50 at random points of a long channel. The tool seeds the channel
//! through the public send path (which also shows the sustained ingest rate).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::json;

use crate::client::Api;
use crate::report::{Metric, Report, ServerUsage, histogram, percentiles, progress, record};
use crate::server::Server;

#[derive(Debug, Clone, clap::Args)]
pub struct HistoryArgs {
    /// Messages in the channel.
    #[arg(long, default_value_t = 1_000_000)]
    pub messages: u64,
    /// Measured page requests (after 50 warm-up ones).
    #[arg(long, default_value_t = 2_000)]
    pub requests: usize,
    /// Concurrent senders while seeding.
    #[arg(long, default_value_t = 64)]
    pub seeders: u64,
}

pub async fn run(server: &Server, args: HistoryArgs) -> Result<Report, String> {
    let api = Api::new(&server.url);
    let accounts = api.accounts("hist", 1).await?;
    let owner = accounts[0].clone();
    let channel = api.group(&owner, &[], "history").await?;
    let seeded = Arc::new(AtomicU64::new(0));
    let seeding = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.seeders.max(1) {
        let (api, owner, seeded) = (api.clone(), owner.clone(), seeded.clone());
        let target = args.messages;
        tasks.push(tokio::spawn(async move {
            while seeded.fetch_add(1, Ordering::Relaxed) < target {
                api.send(&owner, channel, "history filler message").await?;
            }
            Ok::<(), String>(())
        }));
    }
    let reporter = {
        let seeded = seeded.clone();
        let target = args.messages;
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                progress(&format!(
                    "history: seeded {}/{target}",
                    seeded.load(Ordering::Relaxed).min(target)
                ));
            }
        })
    };
    for task in tasks {
        task.await.map_err(|e| e.to_string())??;
    }
    reporter.abort();
    #[allow(clippy::cast_precision_loss)]
    let seed_rate = args.messages as f64 / seeding.elapsed().as_secs_f64();

    let latencies = histogram();
    let start_stats = server.stats();
    let started = Instant::now();
    let newest = i64::try_from(args.messages).unwrap_or(i64::MAX);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    for n in 0..50 + args.requests {
        // xorshift: spread the pages over the whole channel without a random crate.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let before =
            51 + i64::try_from(state % args.messages.max(51)).unwrap_or(0) % (newest - 50).max(1);
        let t0 = Instant::now();
        let page = api
            .call(
                "messages/list",
                Some(&owner.token),
                json!({ "channel_id": channel, "before_seq": before, "limit": 50 }),
            )
            .await?;
        let micros = u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX);
        if page["messages"].as_array().map_or(0, Vec::len) == 0 {
            return Err(format!("empty page before seq {before}"));
        }
        if n >= 50 {
            record(&latencies, micros);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress("");
    let (p50, p99, _, _) = percentiles(&latencies);
    #[allow(clippy::cast_precision_loss)]
    let metrics = vec![
        Metric::plain("messages in channel", args.messages as f64, "msgs"),
        Metric::plain("seeding rate (public send path)", seed_rate, "msgs/s"),
        Metric::plain("page of 50 p50", p50, "ms"),
        Metric::at_most("page of 50 p99", p99, "ms", 2.0),
    ];
    Ok(Report {
        scenario: "history",
        parameters: json!({ "messages": args.messages, "requests": args.requests }),
        metrics,
        table: None,
        server: ServerUsage::between(start_stats, server.stats(), elapsed),
        elapsed_secs: elapsed,
    })
}
