//! The highest sustained rate of stored (acknowledged) messages with p99 under 100 ms: closed
//! loops of senders at rising concurrency; afterwards every acknowledged message is checked to
//! be stored.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{Account, Api};
use crate::report::{
    Metric, Report, ServerUsage, SharedHistogram, histogram, percentiles, progress, record,
};
use crate::server::Server;

#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// Concurrency levels to try, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "8,32,128")]
    pub concurrency: Vec<u64>,
    /// Seconds per level.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Warm-up seconds at the first level, not measured (its sends still count towards the
    /// nothing-lost check).
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Channels written to.
    #[arg(long, default_value_t = 16)]
    pub channels: usize,
    /// Random UUIDv4 `client_id`s instead of time-ordered UUIDv7 ones (what the web client
    /// sends); random keys cost the server a random index page per message.
    #[arg(long)]
    pub random_keys: bool,
}

/// What one concurrency level did.
struct Level {
    stored: u64,
    errors: u64,
    latencies: SharedHistogram,
}

/// Closed loops of `concurrency` senders for `seconds`, spread over `channels`.
async fn level(
    apis: &[Api],
    sender: &Account,
    channels: &[i64],
    concurrency: u64,
    seconds: u64,
    acknowledged: &Arc<AtomicU64>,
    label: &str,
) -> Level {
    let latencies = histogram();
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (api, sender, latencies, done, errors, acknowledged) = (
            apis[usize::try_from(worker).unwrap_or(0) % apis.len()].clone(),
            sender.clone(),
            latencies.clone(),
            done.clone(),
            errors.clone(),
            acknowledged.clone(),
        );
        let channel = channels[usize::try_from(worker).unwrap_or(0) % channels.len()];
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                let t0 = Instant::now();
                match api.send(&sender, channel, "ingest").await {
                    Ok(_) => {
                        record(
                            &latencies,
                            u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX),
                        );
                        done.fetch_add(1, Ordering::Relaxed);
                        acknowledged.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        progress(&format!(
            "ingest: {label}, {} stored",
            done.load(Ordering::Relaxed)
        ));
    }
    for task in tasks {
        let _ = task.await;
    }
    Level {
        stored: done.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        latencies,
    }
}

pub async fn run(server: &Server, args: IngestArgs) -> Result<Report, String> {
    let api = Api::new(&server.url).with_random_keys(args.random_keys);
    // Senders are spread over the nodes round robin.
    let apis: Vec<Api> = (0..server.nodes())
        .map(|n| Api::new(&server.node(n).url).with_random_keys(args.random_keys))
        .collect();
    progress("ingest: setting up");
    let accounts = api.accounts("ingest", 1).await?;
    let sender = accounts[0].clone();
    let mut channels = Vec::new();
    for n in 0..args.channels.max(1) {
        channels.push(api.group(&sender, &[], &format!("ingest {n}")).await?);
    }
    let acknowledged = Arc::new(AtomicU64::new(0));
    let start_stats = server.stats();
    let started = Instant::now();
    let mut metrics = Vec::new();
    let first = args.concurrency.first().copied().unwrap_or(8);
    let warmup = level(
        &apis,
        &sender,
        &channels,
        first,
        args.warmup,
        &acknowledged,
        "warming up",
    )
    .await;
    let mut best = 0.0f64;
    for &concurrency in &args.concurrency {
        let Level {
            stored,
            errors,
            latencies,
        } = level(
            &apis,
            &sender,
            &channels,
            concurrency,
            args.seconds,
            &acknowledged,
            &format!("concurrency {concurrency}"),
        )
        .await;
        #[allow(clippy::cast_precision_loss)]
        let rate = stored as f64 / args.seconds.max(1) as f64;
        let (p50, p99, _, _) = percentiles(&latencies);
        if p99 < 100.0 && errors == 0 {
            best = best.max(rate);
        }
        metrics.push(Metric::plain(
            &format!("c={concurrency}: stored/s"),
            rate,
            "msgs/s",
        ));
        metrics.push(Metric::plain(&format!("c={concurrency}: p50"), p50, "ms"));
        metrics.push(Metric::at_most(
            &format!("c={concurrency}: p99"),
            p99,
            "ms",
            100.0,
        ));
        #[allow(clippy::cast_precision_loss)]
        metrics.push(Metric::at_most(
            &format!("c={concurrency}: errors"),
            errors as f64,
            "msgs",
            0.0,
        ));
    }
    #[allow(clippy::cast_precision_loss)]
    metrics.push(Metric::at_most(
        "errors during warm-up",
        warmup.errors as f64,
        "msgs",
        0.0,
    ));
    // Nothing acknowledged may be missing: the channels' newest seqs add up to the acks.
    let mut stored = 0i64;
    for channel in &channels {
        let detail = api
            .call(
                "channels/get",
                Some(&sender.token),
                json!({ "channel_id": channel }),
            )
            .await?;
        stored += detail["last_seq"].as_i64().unwrap_or(0);
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress("");
    #[allow(clippy::cast_precision_loss)]
    let lost = acknowledged.load(Ordering::Relaxed) as f64 - stored as f64;
    metrics.insert(
        0,
        Metric::at_least(
            "best stored/s with p99 < 100 ms",
            best,
            "msgs/s",
            // PostgreSQL's default commits are durable (fsync); SQLite's WAL with
            // synchronous=NORMAL syncs at checkpoints.
            if server.on_postgres {
                15_000.0
            } else {
                20_000.0
            },
        ),
    );
    metrics.push(Metric::at_most(
        "acknowledged but not stored",
        lost.max(0.0),
        "msgs",
        0.0,
    ));
    Ok(Report {
        scenario: "ingest",
        parameters: json!({ "concurrency": args.concurrency, "seconds": args.seconds, "warmup": args.warmup,
                            "channels": args.channels, "random_keys": args.random_keys }),
        metrics,
        table: None,
        server: ServerUsage::between(start_stats, server.stats(), elapsed),
        elapsed_secs: elapsed,
    })
}
