//! C channels × M members; senders at a fixed arrival rate stamp each message with its intended
//! send time, so a stalled server shows up as latency instead of a slower schedule.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::client::{Api, connect, now_micros, receive_messages};
use crate::report::{Metric, Report, ServerUsage, histogram, percentiles, progress, record};
use crate::server::Server;

#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Channels.
    #[arg(long, default_value_t = 10)]
    pub channels: usize,
    /// Members per channel (all channels share the same members).
    #[arg(long, default_value_t = 100)]
    pub members: usize,
    /// Messages per second, over all channels.
    #[arg(long, default_value_t = 100)]
    pub rate: u64,
    /// Measured seconds (after warm-up).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Warm-up seconds, not measured.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
}

#[derive(Default)]
struct Counters {
    deliveries: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
}

pub async fn run(server: &Server, args: FanoutArgs) -> Result<Report, String> {
    let api = Api::new(&server.url);
    // One client per node; members and senders are spread over the nodes round robin.
    let apis: Vec<Api> = (0..server.nodes())
        .map(|n| Api::new(&server.node(n).url))
        .collect();
    progress("fanout: signing up members");
    let members = api.accounts("fan", args.members.max(1)).await?;
    let ids: Vec<i64> = members.iter().map(|m| m.id).collect();
    let mut channels = Vec::new();
    for n in 0..args.channels.max(1) {
        channels.push(api.group(&members[0], &ids, &format!("fanout {n}")).await?);
    }
    progress("fanout: connecting");
    let latencies = histogram();
    let counters = Arc::new(Counters::default());
    let measure_from = Arc::new(AtomicU64::new(u64::MAX));
    let mut readers = Vec::new();
    for (k, member) in members.iter().enumerate() {
        let mut ws = connect(&server.node(k).ws_url(), &member.token, None).await?;
        let (latencies, counters, measure_from) =
            (latencies.clone(), counters.clone(), measure_from.clone());
        readers.push(tokio::spawn(async move {
            receive_messages(&mut ws, &counters.lost, &counters.duplicated, |message| {
                let intended: u64 = message
                    .body
                    .as_deref()
                    .and_then(|b| b.strip_prefix("t="))
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(0);
                if intended >= measure_from.load(Ordering::Relaxed) {
                    counters.deliveries.fetch_add(1, Ordering::Relaxed);
                    record(&latencies, now_micros().saturating_sub(intended));
                }
            })
            .await;
        }));
    }

    let start_stats = server.stats();
    let started = Instant::now();
    let total = Duration::from_secs(args.warmup + args.seconds);
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(1) as f64);
    let send_errors = Arc::new(AtomicU64::new(0));
    let mut sent_measured = 0u64;
    let mut n = 0u64;
    let first = now_micros();
    measure_from.store(first + args.warmup * 1_000_000, Ordering::Relaxed);
    loop {
        let offset = interval * u32::try_from(n).unwrap_or(u32::MAX);
        if offset >= total {
            break;
        }
        let intended = first + u64::try_from(offset.as_micros()).unwrap_or(0);
        tokio::time::sleep_until(tokio::time::Instant::from_std(started + offset)).await;
        if intended >= measure_from.load(Ordering::Relaxed) {
            sent_measured += 1;
        }
        let channel = channels[usize::try_from(n).unwrap_or(0) % channels.len()];
        let sender = members[usize::try_from(n).unwrap_or(0) % members.len()].clone();
        let api = apis[usize::try_from(n).unwrap_or(0) % apis.len()].clone();
        let errors = send_errors.clone();
        tokio::spawn(async move {
            if api
                .send(&sender, channel, &format!("t={intended}"))
                .await
                .is_err()
            {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        });
        n += 1;
        if n.is_multiple_of(100) {
            progress(&format!(
                "fanout: {n} sent, {} delivered",
                counters.deliveries.load(Ordering::Relaxed)
            ));
        }
    }
    // Let the last deliveries land.
    let expected = sent_measured * members.len() as u64;
    for _ in 0..50 {
        if counters.deliveries.load(Ordering::Relaxed) >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let end_stats = server.stats();
    for reader in readers {
        reader.abort();
    }
    progress("");
    let deliveries = counters.deliveries.load(Ordering::Relaxed);
    let offered = args.rate * members.len() as u64;
    let (p50, p99, p999, _) = percentiles(&latencies);
    #[allow(clippy::cast_precision_loss)]
    let per_sec = deliveries as f64 / args.seconds.max(1) as f64;
    #[allow(clippy::cast_precision_loss)]
    let metrics = vec![
        Metric::plain("messages sent (measured)", sent_measured as f64, "msgs"),
        // Each target belongs to its own load: throughput to a run offering 200,000/s or
        // more, latency to 100-member channels at 10,000/s.
        if offered >= 200_000 {
            Metric::at_least("deliveries per second", per_sec, "1/s", 200_000.0)
        } else {
            Metric::plain("deliveries per second", per_sec, "1/s")
        },
        Metric::plain("send→deliver p50", p50, "ms"),
        if offered <= 10_000 {
            // Across nodes a delivery takes one more hop (Redis) for most recipients.
            Metric::at_most(
                "send→deliver p99",
                p99,
                "ms",
                if server.nodes() > 1 { 10.0 } else { 5.0 },
            )
        } else {
            Metric::plain("send→deliver p99", p99, "ms")
        },
        Metric::plain("send→deliver p99.9", p999, "ms"),
        Metric::at_most(
            "deliveries missing",
            expected.saturating_sub(deliveries) as f64,
            "msgs",
            0.0,
        ),
        Metric::at_most(
            "lost (seq gaps)",
            counters.lost.load(Ordering::Relaxed) as f64,
            "msgs",
            0.0,
        ),
        Metric::at_most(
            "duplicated",
            counters.duplicated.load(Ordering::Relaxed) as f64,
            "msgs",
            0.0,
        ),
        Metric::at_most(
            "send errors",
            send_errors.load(Ordering::Relaxed) as f64,
            "msgs",
            0.0,
        ),
    ];
    Ok(Report {
        scenario: "fanout",
        parameters: json!({ "channels": args.channels, "members": args.members, "rate": args.rate,
                            "seconds": args.seconds, "warmup": args.warmup }),
        metrics,
        table: None,
        server: ServerUsage::between(start_stats, end_stats, elapsed),
        elapsed_secs: elapsed,
    })
}
