//! The server under test: started by the bench (fresh database, its own port) or given by URL
//! and process id. Its CPU time and resident memory are read from `/proc`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use dealnest_test_support::ScratchDatabase;
use tokio::process::{Child, Command};

pub struct Server {
    pub url: String,
    pub pid: u32,
    /// Whether the bench started it on PostgreSQL (`--postgres`), which has targets of its own.
    pub on_postgres: bool,
    /// The `DATABASE_URL` it runs on.
    pub database_url: String,
    /// Further nodes of a cluster (`--nodes`), on the same database; clients are spread over
    /// this node and them.
    pub others: Vec<Server>,
    child: Option<Child>,
    _data: Option<tempfile::TempDir>,
    /// Dropped after `child` (fields drop in order), so the server is gone first.
    _scratch: Option<ScratchDatabase>,
}

/// Settings for a server the bench starts.
pub struct Launch<'a> {
    pub binary: &'a Path,
    pub port: u16,
    /// Extra environment (limits raised for load, grace period…).
    pub env: Vec<(&'static str, String)>,
    /// Run on a fresh scratch database on this PostgreSQL server (a `postgres://` URL of any
    /// database there) instead of a fresh SQLite file.
    pub postgres: Option<&'a str>,
    /// Run on this database instead (another node's): overrides `postgres`.
    pub database_url: Option<String>,
    /// A command the binary is started under, e.g. `taskset -c 0`. It must exec the binary
    /// (taskset does) so the child's pid, whose `/proc` stats are read, is the server's.
    pub wrapper: Vec<String>,
    /// Turn Prometheus metrics on, served on this port (`--metrics-bind 127.0.0.1:<port>`).
    pub metrics_port: Option<u16>,
}

impl Server {
    pub async fn start(launch: Launch<'_>) -> Result<Self, String> {
        let data = tempfile::tempdir().map_err(|e| e.to_string())?;
        let scratch = match launch.postgres.filter(|_| launch.database_url.is_none()) {
            Some(server) => Some(
                ScratchDatabase::create(server)
                    .await
                    .map_err(|e| format!("cannot create a database on {server}: {e}"))?,
            ),
            None => None,
        };
        let database = match (&launch.database_url, &scratch) {
            (Some(url), _) => url.clone(),
            (None, Some(scratch)) => scratch.url().to_owned(),
            (None, None) => data.path().join("bench.db").to_string_lossy().into_owned(),
        };
        let mut command = match launch.wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(launch.binary);
                command
            }
            None => Command::new(launch.binary),
        };
        command
            .env("DATABASE_URL", &database)
            .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{}", launch.port))
            .env("LEPTOS_SITE_ROOT", "target/site")
            .env("LOG_LEVEL", "warn")
            // Load generators sign up and log in many accounts from one address.
            .env("AUTH_PER_IP_PER_MINUTE", "100000000")
            .env("LOGIN_PER_USER_PER_MINUTE", "100000000")
            .env("MAX_CONNECTIONS_PER_USER", "100000")
            // Load generators send thousands of messages a second per user.
            .env("DISABLE_RATE_LIMITS", "true")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for (key, value) in &launch.env {
            command.env(key, value);
        }
        if let Some(metrics_port) = launch.metrics_port {
            command.env("METRICS_BIND", format!("127.0.0.1:{metrics_port}"));
        }
        let child = command.spawn().map_err(|e| {
            let binary = launch.binary.display();
            if launch.wrapper.is_empty() {
                format!("cannot start {binary}: {e}")
            } else {
                format!(
                    "cannot start {binary} under `{}`: {e}",
                    launch.wrapper.join(" ")
                )
            }
        })?;
        let pid = child.id().ok_or("server exited at once")?;
        let server = Self {
            url: format!("http://127.0.0.1:{}", launch.port),
            pid,
            on_postgres: launch.postgres.is_some() || launch.database_url.is_some(),
            database_url: database,
            others: Vec::new(),
            child: Some(child),
            _data: Some(data),
            _scratch: scratch,
        };
        server.wait_healthy().await?;
        if let Some(metrics_port) = launch.metrics_port {
            server.check_metrics(metrics_port).await?;
        }
        Ok(server)
    }

    pub fn external(url: String, pid: u32) -> Self {
        Self {
            url,
            pid,
            on_postgres: false,
            database_url: String::new(),
            others: Vec::new(),
            child: None,
            _data: None,
            _scratch: None,
        }
    }

    async fn wait_healthy(&self) -> Result<(), String> {
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(response) = http.get(format!("{}/health", self.url)).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("server at {} did not become healthy", self.url))
    }

    /// A run "with metrics" must really have them: one scrape, as Prometheus would make.
    async fn check_metrics(&self, port: u16) -> Result<(), String> {
        let url = format!("http://127.0.0.1:{port}/metrics");
        let scraped = reqwest::get(&url)
            .await
            .map_err(|e| format!("no metrics at {url}: {e}"))?;
        let text = scraped.text().await.map_err(|e| e.to_string())?;
        if text.contains("websocket_connections_total") {
            Ok(())
        } else {
            Err(format!("{url} did not answer with the server's metrics"))
        }
    }

    pub fn ws_url(&self) -> String {
        format!("{}/ws", self.url.replacen("http://", "ws://", 1))
    }

    /// How many nodes clients are spread over.
    pub fn nodes(&self) -> usize {
        1 + self.others.len()
    }

    /// The node the `n`th client talks to (round robin).
    pub fn node(&self, n: usize) -> &Server {
        match n % self.nodes() {
            0 => self,
            k => &self.others[k - 1],
        }
    }

    /// CPU time (user + system) and resident memory of the server processes now, summed over
    /// every node.
    pub fn stats(&self) -> ProcStats {
        let mut stats = ProcStats::read(self.pid);
        for other in &self.others {
            let more = other.stats();
            stats.cpu_ms += more.cpu_ms;
            stats.rss_bytes += more.rss_bytes;
        }
        stats
    }

    pub async fn stop(mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill().await;
        }
    }
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct ProcStats {
    pub cpu_ms: u64,
    pub rss_bytes: u64,
    /// [`machine_steal_ms`] when read.
    pub machine_steal_ms: u64,
}

impl ProcStats {
    pub fn read(pid: u32) -> Self {
        // Fields 14 and 15 of /proc/PID/stat are user and system time in clock ticks (100/s on
        // Linux); the command name (field 2) may hold spaces, so count from its closing ')'.
        let cpu_ms = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| {
                let after_name = stat.rsplit_once(')')?.1;
                let fields: Vec<&str> = after_name.split_whitespace().collect();
                let user: u64 = fields.get(11)?.parse().ok()?;
                let system: u64 = fields.get(12)?.parse().ok()?;
                Some((user + system) * 10)
            })
            .unwrap_or(0);
        let rss_bytes = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(kib * 1024)
            })
            .unwrap_or(0);
        Self {
            cpu_ms,
            rss_bytes,
            machine_steal_ms: machine_steal_ms(),
        }
    }
}

/// Time (ms) the hypervisor gave this machine's CPUs to others so far, summed over CPUs (the
/// `steal` column of /proc/stat's first line, in 10 ms ticks); 0 where it is not reported.
/// A latency outlier in a second with much steal was the machine's, not the server's.
pub fn machine_steal_ms() -> u64 {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|stat| {
            let line = stat.lines().next()?;
            let steal: u64 = line.split_whitespace().nth(8)?.parse().ok()?;
            Some(steal * 10)
        })
        .unwrap_or(0)
}

/// CPU pinning with util-linux's `taskset` (this crate forbids the `unsafe` that calling
/// `sched_setaffinity` directly would need).
pub mod pin {
    use std::process::Stdio;

    use tokio::process::Command;

    /// Runs `taskset` with `args`; a missing `taskset` or a refused CPU list is a clear error.
    async fn taskset(args: &[&str]) -> Result<(), String> {
        let output = Command::new("taskset")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| {
                format!(
                    "--server-cpu/--bench-cpu need `taskset` (util-linux), which cannot be run: {e}"
                )
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`taskset {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    /// The wrapper that starts the server on `cpus` (a taskset list such as `0` or `0,2-3`),
    /// tried once on `true` first so a bad list fails here and not as a server that never
    /// becomes healthy.
    pub async fn server_wrapper(cpus: &str) -> Result<Vec<String>, String> {
        taskset(&["-c", cpus, "true"]).await?;
        Ok(vec!["taskset".into(), "-c".into(), cpus.into()])
    }

    /// Pins every thread of this process to `cpus`. `-a` matters: the runtime's worker threads
    /// exist already, and `-p` alone would move only the main thread; threads started later
    /// inherit the mask.
    pub async fn this_process(cpus: &str) -> Result<(), String> {
        taskset(&["-a", "-p", "-c", cpus, &std::process::id().to_string()]).await
    }
}
