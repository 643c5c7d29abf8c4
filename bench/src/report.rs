//! Results: a human table, or JSON with `--json`.

use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::server::ProcStats;

#[derive(Debug, Serialize)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: &'static str,
    /// The target from the issue, as text (e.g. "≤ 5 ms").
    pub target: Option<String>,
    pub met: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub parameters: serde_json::Value,
    pub metrics: Vec<Metric>,
    /// One row per step, for scenarios that run in steps (`ramp`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<Table>,
    pub server: ServerUsage,
    pub elapsed_secs: f64,
}

/// Rows under column headings; cells are JSON values so `--json` keeps numbers, flags and lists
/// as such (lists print comma-separated, `null` as "—").
#[derive(Debug, Serialize)]
pub struct Table {
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

#[derive(Debug, Serialize)]
pub struct ServerUsage {
    pub cpu_ms: u64,
    /// Server CPU over the measured interval, in % of one core.
    pub cpu_percent: f64,
    pub rss_start_bytes: u64,
    pub rss_end_bytes: u64,
    /// CPU time (ms, all CPUs) the hypervisor gave to other guests over the interval: a noisy
    /// neighbour, not the server.
    pub machine_steal_ms: u64,
}

impl ServerUsage {
    pub fn between(start: ProcStats, end: ProcStats, elapsed_secs: f64) -> Self {
        let cpu_ms = end.cpu_ms.saturating_sub(start.cpu_ms);
        #[allow(clippy::cast_precision_loss)]
        let cpu_percent = if elapsed_secs > 0.0 {
            cpu_ms as f64 / 10.0 / elapsed_secs
        } else {
            0.0
        };
        Self {
            cpu_ms,
            cpu_percent,
            rss_start_bytes: start.rss_bytes,
            rss_end_bytes: end.rss_bytes,
            machine_steal_ms: end.machine_steal_ms.saturating_sub(start.machine_steal_ms),
        }
    }
}

impl Metric {
    pub fn plain(name: &str, value: f64, unit: &'static str) -> Self {
        Self {
            name: name.to_owned(),
            value,
            unit,
            target: None,
            met: None,
        }
    }

    /// A metric that should be at most `limit`.
    pub fn at_most(name: &str, value: f64, unit: &'static str, limit: f64) -> Self {
        Self {
            target: Some(format!("≤ {limit} {unit}")),
            met: Some(value <= limit),
            ..Self::plain(name, value, unit)
        }
    }

    /// A metric that should be at least `floor`.
    pub fn at_least(name: &str, value: f64, unit: &'static str, floor: f64) -> Self {
        Self {
            target: Some(format!("≥ {floor} {unit}")),
            met: Some(value >= floor),
            ..Self::plain(name, value, unit)
        }
    }
}

/// A latency histogram in microseconds shared by many tasks.
pub type SharedHistogram = Arc<Mutex<Histogram<u64>>>;

pub fn histogram() -> SharedHistogram {
    Arc::new(Mutex::new(
        Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds"),
    ))
}

pub fn record(histogram: &SharedHistogram, micros: u64) {
    if let Ok(mut h) = histogram.lock() {
        let _ = h.record(micros.clamp(1, 60_000_000));
    }
}

/// p50, p99, p99.9 (ms) and the count.
pub fn percentiles(histogram: &SharedHistogram) -> (f64, f64, f64, u64) {
    let h = histogram.lock().expect("histogram");
    #[allow(clippy::cast_precision_loss)]
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    (ms(0.5), ms(0.99), ms(0.999), h.len())
}

/// The largest value recorded (ms), rounded like the percentiles.
pub fn max_ms(histogram: &SharedHistogram) -> f64 {
    let h = histogram.lock().expect("histogram");
    #[allow(clippy::cast_precision_loss)]
    let max = h.max() as f64 / 1000.0;
    max
}

pub fn print(report: &Report, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
        return;
    }
    println!(
        "\n== {} ({:.1} s) {}",
        report.scenario, report.elapsed_secs, report.parameters
    );
    if let Some(table) = &report.table {
        print_table(table);
    }
    println!(
        "{:<34} {:>14}  {:<10} {:<14} ",
        "metric", "value", "unit", "target"
    );
    for metric in &report.metrics {
        let verdict = match metric.met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        println!(
            "{:<34} {:>14.3}  {:<10} {:<14} {verdict}",
            metric.name,
            metric.value,
            metric.unit,
            metric.target.clone().unwrap_or_default()
        );
    }
    #[allow(clippy::cast_precision_loss)]
    let mib = |b: u64| b as f64 / 1_048_576.0;
    println!(
        "server: {} ms CPU ({:.0}% of a core), RSS {:.1} → {:.1} MiB; machine steal {} ms",
        report.server.cpu_ms,
        report.server.cpu_percent,
        mib(report.server.rss_start_bytes),
        mib(report.server.rss_end_bytes),
        report.server.machine_steal_ms
    );
}

fn print_table(table: &Table) {
    let rows: Vec<Vec<String>> = table
        .rows
        .iter()
        .map(|row| row.iter().map(cell).collect())
        .collect();
    let widths: Vec<usize> = table
        .columns
        .iter()
        .enumerate()
        .map(|(n, heading)| {
            rows.iter()
                .filter_map(|row| row.get(n))
                .map(|text| text.chars().count())
                .chain([heading.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(text, width)| format!("{text:<width$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(table.columns.clone());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    println!();
}

fn cell(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "—".into(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap_or(0.0)),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                // Lists are compact: whole numbers, or one decimal below 10.
                Value::Number(n) => {
                    let v = n.as_f64().unwrap_or(0.0);
                    if v < 10.0 {
                        format!("{v:.1}")
                    } else {
                        format!("{v:.0}")
                    }
                }
                other => cell(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        Value::Object(_) => value.to_string(),
    }
}

/// Rewrites one progress line on stderr.
pub fn progress(line: &str) {
    use std::io::Write;
    eprint!("\r\x1b[2K{line}");
    let _ = std::io::stderr().flush();
}

/// The same scenario without and with the server's Prometheus metrics, metric by metric, with
/// the change in percent (issue 10's target: within 3 %).
pub fn print_comparison(off: &Report, on: &Report, json: bool) {
    let change = |off: f64, on: f64| {
        if off == 0.0 {
            None
        } else {
            Some((on - off) / off.abs() * 100.0)
        }
    };
    let mut rows: Vec<(String, f64, f64, &'static str)> = off
        .metrics
        .iter()
        .filter_map(|before| {
            let after = on.metrics.iter().find(|m| m.name == before.name)?;
            Some((before.name.clone(), before.value, after.value, before.unit))
        })
        .collect();
    rows.push((
        "server CPU".into(),
        off.server.cpu_percent,
        on.server.cpu_percent,
        "% core",
    ));
    // Not the server's doing; shown so a difference can be told apart from a noisy neighbour.
    #[allow(clippy::cast_precision_loss)]
    rows.push((
        "machine steal".into(),
        off.server.machine_steal_ms as f64,
        on.server.machine_steal_ms as f64,
        "ms",
    ));
    if json {
        let rows: Vec<serde_json::Value> = rows
            .iter()
            .map(|(name, off_value, on_value, unit)| {
                serde_json::json!({ "metric": name, "unit": unit, "metrics_off": off_value,
                                    "metrics_on": on_value,
                                    "change_percent": change(*off_value, *on_value) })
            })
            .collect();
        let comparison = serde_json::json!({ "scenario": off.scenario, "comparison": rows });
        println!(
            "{}",
            serde_json::to_string_pretty(&comparison).unwrap_or_default()
        );
        return;
    }
    println!("\n== {}: metrics off vs on", off.scenario);
    println!(
        "{:<34} {:>14} {:>14}  {:<10} {:>9}",
        "metric", "off", "on", "unit", "change"
    );
    for (name, off_value, on_value, unit) in &rows {
        let change = change(*off_value, *on_value).map_or("—".into(), |c| format!("{c:+.1} %"));
        println!("{name:<34} {off_value:>14.3} {on_value:>14.3}  {unit:<10} {change:>9}");
    }
}
