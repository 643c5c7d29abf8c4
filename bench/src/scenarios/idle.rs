//! N authenticated, idle WebSocket connections (each a presence lease) held open; the server's
//! resident memory per connection is the slope of RSS over the steps. A process may hold only
//! 20,000 open files here, so connections are opened by worker processes (this binary's
//! `idle-worker` subcommand), each from its own 127.0.0.x source address.

use std::net::IpAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::client::{Api, connect, next_event};
use crate::report::{Metric, Report, ServerUsage, progress};
use crate::server::Server;

#[derive(Debug, Clone, clap::Args)]
pub struct IdleArgs {
    /// Connection counts to measure at, comma-separated, ascending.
    #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000,19000")]
    pub steps: Vec<usize>,
    /// Connections per worker process (each stays well under the open-file limit).
    #[arg(long, default_value_t = 9_000)]
    pub per_worker: usize,
    /// Accounts the connections are spread over.
    #[arg(long, default_value_t = 50)]
    pub users: usize,
}

#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    #[arg(long)]
    pub ws_url: String,
    /// Session tokens, comma-separated; connections use them in turn.
    #[arg(long, value_delimiter = ',')]
    pub tokens: Vec<String>,
    #[arg(long)]
    pub count: usize,
    /// Source address to connect from.
    #[arg(long)]
    pub source: Option<IpAddr>,
}

/// The worker: opens `count` connections, says `ready`, and holds them until stdin closes.
pub async fn worker(args: WorkerArgs) -> Result<(), String> {
    let tokens = args.tokens.clone();
    let mut held = Vec::with_capacity(args.count);
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(64));
    let mut opening = Vec::with_capacity(args.count);
    for n in 0..args.count {
        let (url, token, source, limit) = (
            args.ws_url.clone(),
            tokens[n % tokens.len()].clone(),
            args.source,
            limit.clone(),
        );
        opening.push(tokio::spawn(async move {
            let _permit = limit.acquire().await.map_err(|e| e.to_string())?;
            connect(&url, &token, source).await
        }));
    }
    for task in opening {
        let mut ws = task.await.map_err(|e| e.to_string())??;
        // Keep reading so pings are answered and nothing piles up.
        held.push(tokio::spawn(async move {
            while next_event(&mut ws).await.is_some() {}
        }));
    }
    println!("ready {}", held.len());
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(_)) = stdin.next_line().await {}
    Ok(())
}

async fn spawn_worker(args: &WorkerArgs) -> Result<Child, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut command = Command::new(exe);
    command
        .arg("idle-worker")
        .arg("--ws-url")
        .arg(&args.ws_url)
        // `=`: a session token may begin with `-` (base64url), which would read as a flag.
        .arg(format!("--tokens={}", args.tokens.join(",")))
        .arg("--count")
        .arg(args.count.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    if let Some(source) = args.source {
        command.arg("--source").arg(source.to_string());
    }
    let mut child = command.spawn().map_err(|e| e.to_string())?;
    let stdout = child.stdout.take().ok_or("no worker stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    match tokio::time::timeout(Duration::from_secs(300), lines.next_line()).await {
        Ok(Ok(Some(line))) if line.starts_with("ready") => Ok(child),
        other => Err(format!("worker failed: {other:?}")),
    }
}

/// Least-squares slope of y over x.
fn slope(points: &[(f64, f64)]) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let cov: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    let var: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    if var == 0.0 { 0.0 } else { cov / var }
}

pub async fn run(server: &Server, args: IdleArgs) -> Result<Report, String> {
    let api = Api::new(&server.url);
    progress("idle: signing up");
    let tokens: Vec<String> = api
        .accounts("idle", args.users.max(1))
        .await?
        .into_iter()
        .map(|a| a.token)
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let start_stats = server.stats();
    let started = Instant::now();
    // The slope is fitted over the steps only: right after sign-ups the allocator is still
    // returning hashing memory, so the zero-connection reading is not a stable baseline.
    let mut points = Vec::new();
    let mut workers = Vec::new();
    let mut opened = 0usize;
    // With several nodes each worker goes to the node holding the fewest so far, so every node
    // stays under its own open-file limit.
    let mut per_node = vec![0usize; server.nodes()];
    let mut metrics = Vec::new();
    for &step in &args.steps {
        while opened < step {
            let count = args.per_worker.min(step - opened);
            let source: IpAddr = [127, 0, 0, u8::try_from(2 + workers.len()).unwrap_or(254)].into();
            progress(&format!(
                "idle: opening {count} more (total {step}) from {source}"
            ));
            let node = (0..per_node.len())
                .min_by_key(|&n| per_node[n])
                .unwrap_or(0);
            per_node[node] += count;
            workers.push(
                spawn_worker(&WorkerArgs {
                    ws_url: server.node(node).ws_url(),
                    tokens: tokens.clone(),
                    count,
                    source: Some(source),
                })
                .await?,
            );
            opened += count;
        }
        // Let allocations settle before reading RSS.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = server.stats().rss_bytes;
        #[allow(clippy::cast_precision_loss)]
        {
            points.push((opened as f64, rss as f64));
            metrics.push(Metric::plain(
                &format!("RSS at {opened} connections"),
                rss as f64 / 1_048_576.0,
                "MiB",
            ));
        }
    }
    let mut held = 0;
    for node in 0..server.nodes() {
        let health: serde_json::Value = reqwest::get(format!("{}/health", server.node(node).url))
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        held += health["connections"].as_u64().unwrap_or(0);
    }
    let per_connection = slope(&points);
    let elapsed = started.elapsed().as_secs_f64();
    let end_stats = server.stats();
    for mut worker in workers {
        let _ = worker.kill().await;
    }
    progress("");
    #[allow(clippy::cast_precision_loss)]
    {
        metrics.insert(
            0,
            Metric::at_most(
                "RSS per connection (slope)",
                per_connection / 1000.0,
                "KB",
                10.0,
            ),
        );
        metrics.push(Metric::at_least(
            "connections held",
            held as f64,
            "conns",
            opened as f64,
        ));
    }
    Ok(Report {
        scenario: "idle",
        parameters: json!({ "steps": args.steps, "users": args.users, "per_worker": args.per_worker }),
        metrics,
        table: None,
        server: ServerUsage::between(start_stats, end_stats, elapsed),
        elapsed_secs: elapsed,
    })
}
