//! DealNest Chat load generator: drives a real server through its public interfaces (server
//! functions over HTTP, the WebSocket protocol) with real accounts and sessions, and reports
//! latencies, throughput and the server's CPU and memory. See docs/PERFORMANCE.md.

mod client;
mod report;
mod scenarios;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use report::Report;
use scenarios::{fanout, history, idle, ingest, presence, ramp, receipts};
use server::{Launch, Server};

#[derive(Debug, Parser)]
#[command(
    name = "dealnest-bench",
    about = "Benchmarks for the DealNest Chat server"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
    /// Server binary to start (fresh database, own port) for the run.
    #[arg(long, global = true, default_value = "target/release/dealnest-chat")]
    server: PathBuf,
    /// Port for the started server.
    #[arg(long, global = true, default_value_t = 3900)]
    port: u16,
    /// Run the started server on PostgreSQL: a fresh database, created on the server this URL
    /// names (e.g. `postgres://postgres@127.0.0.1:5432/test`) and dropped after the run. A
    /// fresh SQLite file otherwise.
    #[arg(long, global = true)]
    postgres: Option<String>,
    /// Start this many nodes of a cluster (with --postgres): one database, one Redis bus, each
    /// node on its own port (--port, +2, +4…); clients are spread over them round robin.
    #[arg(long, global = true, default_value_t = 1)]
    nodes: usize,
    /// The Redis a cluster's nodes share (--nodes above 1); a fresh key prefix per run.
    #[arg(long, global = true, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Use an already running server at this URL instead (with --server-pid for its stats).
    #[arg(long, global = true)]
    url: Option<String>,
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Prometheus metrics in the started server (served on --port + 1): off, on, or both — the
    /// scenario then runs twice, off and then on, each on a fresh server, and the two reports
    /// are compared side by side.
    #[arg(long, global = true, value_enum, default_value_t = Metrics::Off)]
    metrics: Metrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Metrics {
    Off,
    On,
    Both,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Idle connections: resident memory per connection.
    Idle(idle::IdleArgs),
    /// Channel fan-out: send→deliver latency, deliveries/s, loss and duplicates.
    Fanout(fanout::FanoutArgs),
    /// Highest sustained rate of stored messages with p99 < 100 ms.
    Ingest(ingest::IngestArgs),
    /// Presence transitions: open/away/close → observers.
    Presence(presence::PresenceArgs),
    /// Read receipts: read/mark → other members.
    Receipts(receipts::ReceiptsArgs),
    /// History pages over a long channel.
    History(history::HistoryArgs),
    /// Open-loop send rate doubled, then bisected, until the ack's p99 passes a limit.
    Ramp(ramp::RampArgs),
    /// Every scenario, tiny and short: checks the tool and the server's behaviour, not speed.
    Smoke,
    /// (internal) holds idle connections for `idle`.
    #[command(hide = true)]
    IdleWorker(idle::WorkerArgs),
}

impl Scenario {
    /// Presence is measured with no grace period (else "offline" is late by design).
    fn server_env(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::Presence(_) | Self::Smoke => vec![("PRESENCE_GRACE_SECS", "0".into())],
            _ => Vec::new(),
        }
    }
}

async fn start(cli: &Cli, metrics: bool) -> Result<Server, String> {
    let server_cpu = match &cli.scenario {
        Scenario::Ramp(args) => args.server_cpu.as_deref(),
        _ => None,
    };
    match &cli.url {
        // A server the bench did not start is not the bench's to move.
        Some(_) if server_cpu.is_some() => Err(
            "--server-cpu pins a server the bench starts; pin one given by --url yourself \
             (taskset -a -p -c <list> <pid>)"
                .into(),
        ),
        Some(_) if cli.metrics != Metrics::Off => Err(
            "--metrics sets up a server the bench starts; give yours --metrics-bind yourself"
                .into(),
        ),
        Some(url) => Ok(Server::external(url.clone(), cli.server_pid.unwrap_or(0))),
        None if cli.nodes > 1 && cli.postgres.is_none() => {
            Err("--nodes above 1 needs --postgres: the nodes of a cluster share PostgreSQL".into())
        }
        None => {
            let wrapper = match server_cpu {
                Some(cpus) => server::pin::server_wrapper(cpus).await?,
                None => Vec::new(),
            };
            let mut env = cli.scenario.server_env();
            if cli.nodes > 1 {
                env.push(("REDIS_URL", cli.redis.clone()));
                env.push((
                    "REDIS_PREFIX",
                    format!("dealnest-bench-{}", std::process::id()),
                ));
            }
            let mut first = Server::start(Launch {
                binary: &cli.server,
                port: cli.port,
                env: env.clone(),
                postgres: cli.postgres.as_deref(),
                database_url: None,
                wrapper: wrapper.clone(),
                metrics_port: metrics.then_some(cli.port.saturating_add(1)),
            })
            .await?;
            for n in 1..cli.nodes {
                let step = u16::try_from(2 * n).map_err(|_| "too many nodes")?;
                let other = Server::start(Launch {
                    binary: &cli.server,
                    port: cli.port.saturating_add(step),
                    env: env.clone(),
                    postgres: None,
                    database_url: Some(first.database_url.clone()),
                    wrapper: wrapper.clone(),
                    metrics_port: None,
                })
                .await?;
                first.others.push(other);
            }
            Ok(first)
        }
    }
}

async fn smoke(server: &Server, json: bool) -> Result<bool, String> {
    let reports = vec![
        idle::run(
            server,
            idle::IdleArgs {
                steps: vec![20, 60],
                per_worker: 40,
                users: 3,
            },
        )
        .await?,
        fanout::run(
            server,
            fanout::FanoutArgs {
                channels: 2,
                members: 4,
                rate: 20,
                seconds: 2,
                warmup: 1,
            },
        )
        .await?,
        ingest::run(
            server,
            ingest::IngestArgs {
                concurrency: vec![4],
                seconds: 2,
                warmup: 1,
                channels: 2,
                random_keys: true,
            },
        )
        .await?,
        presence::run(server, presence::PresenceArgs { cycles: 5 }).await?,
        receipts::run(
            server,
            receipts::ReceiptsArgs {
                members: 3,
                marks: 10,
            },
        )
        .await?,
        history::run(
            server,
            history::HistoryArgs {
                messages: 300,
                requests: 30,
                seeders: 4,
            },
        )
        .await?,
        // Two short steps, both expected to pass (the cap ends the ramp, so no bisection).
        ramp::run(
            server,
            ramp::RampArgs {
                channels: 1,
                members: 2,
                start_rate: 20,
                max_rate: 40,
                step_seconds: 1,
                warmup_seconds: 1,
                p99_limit_ms: 100.0,
                bisect_steps: 0,
                server_cpu: None,
                bench_cpu: None,
            },
        )
        .await?,
    ];
    // The smoke checks correctness only: nothing lost, duplicated, missing or failed.
    let mut healthy = true;
    for report in &reports {
        report::print(report, json);
        for metric in &report.metrics {
            let correctness = [
                "lost",
                "duplicated",
                "missing",
                "errors",
                "not stored",
                "connections held",
            ]
            .iter()
            .any(|word| metric.name.contains(word));
            if correctness && metric.met == Some(false) {
                eprintln!(
                    "smoke: {} / {} failed: {}",
                    report.scenario, metric.name, metric.value
                );
                healthy = false;
            }
        }
    }
    Ok(healthy)
}

/// What one run of a scenario produced.
enum Outcome {
    Report(Report),
    /// `smoke` prints its own reports; whether every correctness check held.
    Smoke(bool),
}

async fn run(cli: Cli) -> Result<bool, String> {
    if let Scenario::IdleWorker(args) = cli.scenario {
        idle::worker(args).await?;
        return Ok(true);
    }
    if let Scenario::Ramp(ramp::RampArgs {
        bench_cpu: Some(_),
        server_cpu: None,
        ..
    }) = &cli.scenario
        && cli.metrics == Metrics::Both
    {
        // The second server would start on the CPUs the bench pinned itself to.
        return Err("--metrics both with --bench-cpu needs --server-cpu too".into());
    }
    let runs: &[bool] = match cli.metrics {
        Metrics::Off => &[false],
        Metrics::On => &[true],
        Metrics::Both => &[false, true],
    };
    let mut reports = Vec::new();
    for &metrics in runs {
        match run_once(&cli, metrics).await? {
            Outcome::Smoke(true) => {}
            Outcome::Smoke(false) => return Ok(false),
            Outcome::Report(mut report) => {
                if let Some(parameters) = report.parameters.as_object_mut() {
                    parameters.insert(
                        "metrics".into(),
                        (if metrics { "on" } else { "off" }).into(),
                    );
                }
                report::print(&report, cli.json);
                reports.push(report);
            }
        }
    }
    if let [off, on] = reports.as_slice() {
        report::print_comparison(off, on, cli.json);
    }
    Ok(true)
}

/// Starts a server (with or without metrics), runs the scenario on it and stops it.
async fn run_once(cli: &Cli, metrics: bool) -> Result<Outcome, String> {
    let server = start(cli, metrics).await?;
    // Pinned only after the server started: a child inherits its parent's CPUs, and without
    // --server-cpu the server should keep all of them.
    if let Scenario::Ramp(ramp::RampArgs {
        bench_cpu: Some(cpus),
        ..
    }) = &cli.scenario
        && let Err(error) = server::pin::this_process(cpus).await
    {
        server.stop().await;
        return Err(error);
    }
    let report = match &cli.scenario {
        Scenario::Idle(args) => idle::run(&server, args.clone()).await,
        Scenario::Fanout(args) => fanout::run(&server, args.clone()).await,
        Scenario::Ingest(args) => ingest::run(&server, args.clone()).await,
        Scenario::Presence(args) => presence::run(&server, args.clone()).await,
        Scenario::Receipts(args) => receipts::run(&server, args.clone()).await,
        Scenario::History(args) => history::run(&server, args.clone()).await,
        Scenario::Ramp(args) => ramp::run(&server, args.clone()).await,
        Scenario::Smoke => {
            let healthy = smoke(&server, cli.json).await;
            server.stop().await;
            return healthy.map(Outcome::Smoke);
        }
        Scenario::IdleWorker(_) => unreachable!("handled above"),
    };
    server.stop().await;
    report.map(Outcome::Report)
}

#[tokio::main]
async fn main() -> ExitCode {
    // Many sockets per process: use the whole allowance of open files.
    let _ = raise_open_file_limit();
    match run(Cli::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("\nerror: {error}");
            ExitCode::FAILURE
        }
    }
}

fn raise_open_file_limit() -> std::io::Result<u64> {
    rlimit::increase_nofile_limit(u64::MAX)
}
