//! The highest send rate the server sustains with the send acknowledgement's p99 under a limit:
//! every member of every channel sends at a constant arrival rate (open loop), the rate doubles
//! until a step fails, then bisects between the last passing and the first failing rate. Every
//! member is connected, and each delivery is checked for gaps and duplicates.
//!
//! Latency is counted from each send's *intended* time, so a stalled server (or a generator
//! held back by it) shows as latency, not as a slower schedule; the worst latency of each
//! second of a step shows when a stall happened.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::client::{Account, Api, Socket, connect, receive_messages};
use crate::report::{
    Metric, Report, ServerUsage, Table, histogram, max_ms, percentiles, progress, record,
};
use crate::server::{ProcStats, Server, machine_steal_ms};

#[derive(Debug, Clone, clap::Args)]
pub struct RampArgs {
    /// Channels.
    #[arg(long, default_value_t = 1)]
    pub channels: usize,
    /// Members per channel (all channels share the same members); every member of every
    /// channel sends.
    #[arg(long, default_value_t = 2)]
    pub members: usize,
    /// Rate of the first step, in messages per second over all senders.
    #[arg(long, default_value_t = 100)]
    pub start_rate: u64,
    /// Highest rate tried.
    #[arg(long, default_value_t = 64_000)]
    pub max_rate: u64,
    /// Measured seconds per step.
    #[arg(long, default_value_t = 5)]
    pub step_seconds: u64,
    /// Unmeasured seconds at the start of each step (its deliveries and errors still count).
    #[arg(long, default_value_t = 1)]
    pub warmup_seconds: u64,
    /// A step passes when the send acknowledgement's p99 is at most this, nothing is lost,
    /// missing or duplicated and no send fails.
    #[arg(long, default_value_t = 100.0)]
    pub p99_limit_ms: f64,
    /// Steps of bisection between the last passing and the first failing rate.
    #[arg(long, default_value_t = 3)]
    pub bisect_steps: u32,
    /// Pin the started server to these CPUs (`taskset -c` list, e.g. `0`).
    #[arg(long)]
    pub server_cpu: Option<String>,
    /// Pin the bench itself to these CPUs (`taskset` list, e.g. `1`).
    #[arg(long)]
    pub bench_cpu: Option<String>,
}

/// A send without an answer by then counts as an error, so a step always ends.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A step whose schedule is this far behind (all sends in flight, none answered) stops
/// sending: it has failed, and the rest would only lengthen the run.
const GIVE_UP_BEHIND: Duration = Duration::from_secs(10);
/// How long deliveries may trail the last acknowledgement of a step.
const DELIVERY_GRACE: Duration = Duration::from_secs(5);

/// Counters the receivers share with the step being run.
#[derive(Default)]
struct Receivers {
    /// Number of the step running; bodies carry it, so a late delivery of an earlier step
    /// cannot make up for one missing from this step.
    step: AtomicU64,
    /// Deliveries of the running step's messages.
    deliveries: AtomicU64,
    lost: AtomicU64,
    duplicated: AtomicU64,
    /// Connections the server closed (it drops clients that fall 512 events behind).
    dropped: AtomicU64,
}

/// Reads one member's socket for the whole run, reconnecting when the server closes it so
/// one overloaded step does not spoil the next ones (its deliveries still count as missing).
async fn receive(mut ws: Socket, ws_url: String, token: String, shared: Arc<Receivers>) {
    loop {
        receive_messages(&mut ws, &shared.lost, &shared.duplicated, |message| {
            let step = message
                .body
                .as_deref()
                .and_then(|b| b.strip_prefix("s="))
                .and_then(|b| b.split(' ').next())
                .and_then(|s| s.parse::<u64>().ok());
            if step == Some(shared.step.load(Ordering::Relaxed)) {
                shared.deliveries.fetch_add(1, Ordering::Relaxed);
            }
        })
        .await;
        shared.dropped.fetch_add(1, Ordering::Relaxed);
        // Seqs restart being tracked after the reconnect: what was sent meanwhile is missing
        // from its step, not a gap.
        ws = loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Ok(ws) = connect(&ws_url, &token, None).await {
                break ws;
            }
        };
    }
}

/// The receivers' tasks, stopped however the run ends (they reconnect forever otherwise).
struct Readers(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Readers {
    fn drop(&mut self) {
        for reader in &self.0 {
            reader.abort();
        }
    }
}

/// What one step measured.
struct Step {
    rate: u64,
    passed: bool,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    sends_per_sec: f64,
    cpu_us_per_msg: Option<f64>,
    /// Worst latency (ms) of the sends intended in each measured second.
    worst_per_second: Vec<f64>,
    /// CPU time (ms, all CPUs) the hypervisor took from this machine in each measured second.
    steal_per_second: Vec<u64>,
    lost: u64,
    duplicated: u64,
    missing: u64,
    errors: u64,
    dropped: u64,
    /// Why the step failed, and receivers the server dropped (a note, not a failure: what
    /// it cost shows as missing deliveries).
    why: Vec<String>,
}

impl Step {
    fn row(&self) -> Vec<Value> {
        vec![
            json!(self.rate),
            json!(self.passed),
            json!(self.p50),
            json!(self.p99),
            json!(self.p999),
            json!(self.max),
            json!(self.sends_per_sec),
            json!(self.cpu_us_per_msg),
            json!(self.worst_per_second),
            json!(self.steal_per_second),
            json!(self.why.join(", ")),
        ]
    }
}

/// Everything a step needs that stays the same over the run.
struct Run<'a> {
    api: Api,
    members: Arc<Vec<Account>>,
    channels: Arc<Vec<i64>>,
    receivers: Arc<Receivers>,
    server_pid: u32,
    args: &'a RampArgs,
}

impl Run<'_> {
    async fn step(&self, number: u64, rate: u64) -> Result<Step, String> {
        let args = self.args;
        progress(&format!("ramp: step {}, {rate} msgs/s", number + 1));
        let shared = &self.receivers;
        shared.step.store(number, Ordering::Relaxed);
        shared.deliveries.store(0, Ordering::Relaxed);
        let (lost_before, duplicated_before, dropped_before) = (
            shared.lost.load(Ordering::Relaxed),
            shared.duplicated.load(Ordering::Relaxed),
            shared.dropped.load(Ordering::Relaxed),
        );

        let seconds = args.step_seconds.max(1);
        let warmup = Duration::from_secs(args.warmup_seconds);
        let measured = Duration::from_secs(seconds);
        let total = rate * (args.warmup_seconds + seconds);
        let latencies = histogram();
        let worst: Arc<Vec<AtomicU64>> =
            Arc::new((0..seconds).map(|_| AtomicU64::new(0)).collect());
        let acked = Arc::new(AtomicU64::new(0));
        let achieved = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(AtomicU64::new(0));
        // Open loop, but not an unbounded one: at most this many sends are in flight (the
        // count if every send took the p99 limit, twice over, within 64..=4096). When the cap
        // holds the schedule back, the wait is inside each send's latency, counted from its
        // intended time, so the step still fails as it should.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let cap = ((rate as f64 * args.p99_limit_ms / 1000.0 * 2.0) as usize).clamp(64, 4096);
        let in_flight = Arc::new(Semaphore::new(cap));

        let started = Instant::now();
        let (measure_from, measure_to) = (started + warmup, started + warmup + measured);
        // The server's CPU over exactly the measured window, beside the sends answered in it.
        let pid = self.server_pid;
        // And the machine's steal time in each measured second, beside its worst latency.
        let cpu = tokio::spawn(async move {
            tokio::time::sleep_until(measure_from.into()).await;
            let start = ProcStats::read(pid);
            let mut steal_per_second = Vec::new();
            let mut steal_before = machine_steal_ms();
            for second in 1..=seconds {
                tokio::time::sleep_until((measure_from + Duration::from_secs(second)).into()).await;
                let steal = machine_steal_ms();
                steal_per_second.push(steal.saturating_sub(steal_before));
                steal_before = steal;
            }
            (start, ProcStats::read(pid), steal_per_second)
        });

        let senders = self.members.len() * self.channels.len();
        #[allow(clippy::cast_precision_loss)]
        let interval = 1.0 / rate as f64;
        let mut unsent = 0;
        for n in 0..total {
            #[allow(clippy::cast_precision_loss)]
            let due = started + Duration::from_secs_f64(n as f64 * interval);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep_until(due.into()).await;
            } else if now - due > GIVE_UP_BEHIND {
                unsent = total - n;
                break;
            }
            let permit = in_flight
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| e.to_string())?;
            if n % 1000 == 0 && n > 0 {
                progress(&format!(
                    "ramp: {rate}/s, {} of {total} answered",
                    acked.load(Ordering::Relaxed)
                ));
            }
            // Round robin over (channel, member): each sender at rate / senders.
            let sender = usize::try_from(n).unwrap_or(0) % senders;
            let (channel, member) = (sender / self.members.len(), sender % self.members.len());
            let (api, members, channel) = (
                self.api.clone(),
                self.members.clone(),
                self.channels[channel],
            );
            let (latencies, worst, acked, achieved, errors) = (
                latencies.clone(),
                worst.clone(),
                acked.clone(),
                achieved.clone(),
                errors.clone(),
            );
            tokio::spawn(async move {
                let _permit = permit;
                let body = format!("s={number} n={n}");
                let answer =
                    tokio::time::timeout(SEND_TIMEOUT, api.send(&members[member], channel, &body))
                        .await;
                let done = Instant::now();
                if !matches!(answer, Ok(Ok(_))) {
                    errors.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                acked.fetch_add(1, Ordering::Relaxed);
                if (measure_from..measure_to).contains(&done) {
                    achieved.fetch_add(1, Ordering::Relaxed);
                }
                if due >= measure_from {
                    let micros = u64::try_from((done - due).as_micros()).unwrap_or(u64::MAX);
                    record(&latencies, micros);
                    let second = usize::try_from((due - measure_from).as_secs()).unwrap_or(0);
                    if let Some(slot) = worst.get(second).or(worst.last()) {
                        slot.fetch_max(micros, Ordering::Relaxed);
                    }
                }
            });
        }
        // Every send has ended (answered, failed or timed out) once all permits are back.
        let _all = in_flight
            .acquire_many(u32::try_from(cap).unwrap_or(u32::MAX))
            .await
            .map_err(|e| e.to_string())?;
        let (cpu_start, cpu_end, steal_per_second) = cpu.await.map_err(|e| e.to_string())?;

        let expected = acked.load(Ordering::Relaxed) * self.members.len() as u64;
        let waited = Instant::now();
        while shared.deliveries.load(Ordering::Relaxed) < expected
            && waited.elapsed() < DELIVERY_GRACE
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let missing = expected.saturating_sub(shared.deliveries.load(Ordering::Relaxed));

        let (p50, p99, p999, count) = percentiles(&latencies);
        let worst_per_second: Vec<f64> = worst
            .iter()
            .map(|w| w.load(Ordering::Relaxed).div_ceil(100) as f64 / 10.0)
            .collect();
        let achieved = achieved.load(Ordering::Relaxed);
        let cpu_ms = cpu_end.cpu_ms.saturating_sub(cpu_start.cpu_ms);
        let lost = shared.lost.load(Ordering::Relaxed) - lost_before;
        let duplicated = shared.duplicated.load(Ordering::Relaxed) - duplicated_before;
        let errors = errors.load(Ordering::Relaxed);
        let dropped = shared.dropped.load(Ordering::Relaxed) - dropped_before;
        let mut why = Vec::new();
        if count == 0 {
            why.push("nothing answered".to_owned());
        } else if p99 > args.p99_limit_ms {
            why.push("p99".to_owned());
        }
        for (count, what) in [
            (lost, "lost"),
            (duplicated, "duplicated"),
            (missing, "missing"),
            (errors, "errors"),
            (unsent, "unsent"),
        ] {
            if count > 0 {
                why.push(format!("{count} {what}"));
            }
        }
        let passed = why.is_empty();
        if dropped > 0 {
            why.push(format!("{dropped} receivers dropped"));
        }
        #[allow(clippy::cast_precision_loss)]
        Ok(Step {
            rate,
            passed,
            p50,
            p99,
            p999,
            max: max_ms(&latencies),
            sends_per_sec: achieved as f64 / seconds as f64,
            // /proc counts CPU in 10 ms ticks: short or slow steps give coarse figures.
            cpu_us_per_msg: (achieved > 0 && self.server_pid != 0)
                .then(|| cpu_ms as f64 * 1000.0 / achieved as f64),
            worst_per_second,
            steal_per_second,
            lost,
            duplicated,
            missing,
            errors,
            dropped,
            why,
        })
    }
}

pub async fn run(server: &Server, args: RampArgs) -> Result<Report, String> {
    let api = Api::new(&server.url);
    progress("ramp: signing up members");
    let members = api.accounts("ramp", args.members.max(1)).await?;
    let ids: Vec<i64> = members.iter().map(|m| m.id).collect();
    let mut channels = Vec::new();
    for n in 0..args.channels.max(1) {
        channels.push(api.group(&members[0], &ids, &format!("ramp {n}")).await?);
    }
    progress("ramp: connecting");
    let receivers = Arc::new(Receivers::default());
    let mut readers = Readers(Vec::new());
    for member in &members {
        let ws = connect(&server.ws_url(), &member.token, None).await?;
        readers.0.push(tokio::spawn(receive(
            ws,
            server.ws_url(),
            member.token.clone(),
            receivers.clone(),
        )));
    }

    let run = Run {
        api,
        members: Arc::new(members),
        channels: Arc::new(channels),
        receivers,
        server_pid: server.pid,
        args: &args,
    };
    let start_stats = server.stats();
    let started = Instant::now();
    let max_rate = args.max_rate.max(1);
    let mut steps: Vec<Step> = Vec::new();
    let mut rate = args.start_rate.clamp(1, max_rate);
    // Doubling until a step fails or the cap passes…
    let mut passing: Option<u64> = None;
    let mut failing: Option<u64> = None;
    loop {
        let step = run.step(steps.len() as u64, rate).await?;
        let passed = step.passed;
        steps.push(step);
        if !passed {
            failing = Some(rate);
            break;
        }
        passing = Some(rate);
        if rate >= max_rate {
            break;
        }
        rate = rate.saturating_mul(2).min(max_rate);
    }
    // …then halving the interval between the last passing and the first failing rate.
    if let Some(mut high) = failing {
        let mut low = passing.unwrap_or(0);
        for _ in 0..args.bisect_steps {
            let middle = low + (high - low) / 2;
            if middle <= low || middle == 0 {
                break;
            }
            let step = run.step(steps.len() as u64, middle).await?;
            if step.passed {
                low = middle;
            } else {
                high = middle;
            }
            steps.push(step);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let end_stats = server.stats();
    drop(readers);
    progress("");

    let best = steps.iter().filter(|s| s.passed).max_by_key(|s| s.rate);
    let total = |field: fn(&Step) -> u64| steps.iter().map(field).sum::<u64>();
    #[allow(clippy::cast_precision_loss)]
    let metrics = vec![
        Metric::plain(
            "highest passing rate",
            best.map_or(0.0, |s| s.rate as f64),
            "msgs/s",
        ),
        Metric::plain("at that rate: p50", best.map_or(0.0, |s| s.p50), "ms"),
        Metric::at_most(
            "at that rate: p99",
            best.map_or(0.0, |s| s.p99),
            "ms",
            args.p99_limit_ms,
        ),
        Metric::plain("at that rate: p99.9", best.map_or(0.0, |s| s.p999), "ms"),
        Metric::plain(
            "at that rate: server CPU per msg",
            best.and_then(|s| s.cpu_us_per_msg).unwrap_or(0.0),
            "µs",
        ),
        // Correct at every rate, failing ones included: overload should show as latency,
        // never as lost, duplicated or failed sends.
        Metric::at_most(
            "lost (seq gaps), all steps",
            total(|s| s.lost) as f64,
            "msgs",
            0.0,
        ),
        Metric::at_most(
            "duplicated, all steps",
            total(|s| s.duplicated) as f64,
            "msgs",
            0.0,
        ),
        Metric::at_most(
            "deliveries missing, all steps",
            total(|s| s.missing) as f64,
            "msgs",
            0.0,
        ),
        Metric::at_most(
            "send errors, all steps",
            total(|s| s.errors) as f64,
            "msgs",
            0.0,
        ),
        Metric::plain(
            "receivers dropped by the server",
            total(|s| s.dropped) as f64,
            "conns",
        ),
    ];
    Ok(Report {
        scenario: "ramp",
        parameters: json!({
            "channels": args.channels, "members": args.members, "start_rate": args.start_rate,
            "max_rate": args.max_rate, "step_seconds": args.step_seconds,
            "warmup_seconds": args.warmup_seconds, "p99_limit_ms": args.p99_limit_ms,
            "bisect_steps": args.bisect_steps, "server_cpu": args.server_cpu,
            "bench_cpu": args.bench_cpu,
        }),
        metrics,
        table: Some(Table {
            columns: vec![
                "rate/s",
                "passed",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
                "sends/s",
                "CPU µs/msg",
                "worst ms per second",
                "steal ms per second",
                "why not",
            ],
            rows: steps.iter().map(Step::row).collect(),
        }),
        server: ServerUsage::between(start_stats, end_stats, elapsed),
        elapsed_secs: elapsed,
    })
}
