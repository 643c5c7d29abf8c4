use std::process::ExitCode;

use clap::Parser;
use dealnest_chat::config::{Command, Config, LogFormat};
use dealnest_chat::startup::{self, StartupError};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// mimalloc returns freed large blocks to the OS; with glibc's malloc, memory from bursts (such
/// as Argon2's 19 MiB per hash) stayed resident in per-thread arenas.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    dotenvy::dotenv().ok();
    let config = Config::parse();
    // Every WebSocket is an open file: use the whole allowance (the soft limit is often 1024).
    let open_files = rlimit::increase_nofile_limit(u64::MAX);
    let filter = EnvFilter::try_new(&config.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).init(),
        // Each line lists the spans it is in with their fields (`spans`): a request's line
        // carries its `request_id` and `user_id` however deep the code that logged it.
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_span_list(true)
            .with_env_filter(filter)
            .init(),
    }
    match open_files {
        Ok(limit) => tracing::info!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
    }
    if let Some(Command::CopyDb { from, to }) = &config.command {
        return copy_db(from, to).await;
    }
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> Result<(), StartupError> {
    if let Some(metrics_addr) = config.metrics_bind {
        let listener = TcpListener::bind(metrics_addr).await?;
        let metrics_addr = listener.local_addr()?;
        startup::start_metrics(listener)?;
        tracing::info!(%metrics_addr, "Prometheus metrics on http://{metrics_addr}/metrics");
    }
    let leptos_options = startup::leptos_options()?;
    let addr = config.bind_addr(leptos_options.site_addr);
    let state =
        startup::build_state(&config.database_url, config.app_config(), leptos_options).await?;
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, database = %config.database_url, "DealNest Chat listening on http://{addr}");
    startup::serve(listener, state, shutdown_signal()).await?;
    Ok(())
}

/// `copy-db`: a progress line per batch on stdout, then what was copied; failures on stderr.
async fn copy_db(from: &str, to: &str) -> ExitCode {
    let mut progress = |p: app::server::copy_db::Progress| {
        println!("copy-db: {:<15} {:>10} / {}", p.table, p.copied, p.total);
    };
    match app::server::copy_db::copy_sqlite_to_postgres(from, to, &mut progress).await {
        Ok(report) => {
            let copied: Vec<String> = report
                .iter()
                .map(|(table, rows)| format!("{rows} {table}"))
                .collect();
            println!(
                "copy-db: done, verified: {}; every channel's last_seq matches",
                copied.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("copy-db: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C or SIGTERM, so in-flight requests finish before exit.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
