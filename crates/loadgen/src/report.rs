//! What one run reports: the JSON each run writes (load, start-up,
//! storage) and the human summary printed after a load run. The summary
//! of a whole benchmark is [`crate::summary`]'s.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::machine::{MachineInfo, Memory};
use crate::stats::LatencySummary;
use crate::workload::{Endpoint, Mode, PROPAGATION, propagation_name};

/// What a `201` from `POST /order` means, stated in every report.
pub const DURABLE_ACK: &str = "A 201 from POST /order means the order and its order_placed event \
are on disk: committed to SQLite in WAL mode with synchronous=FULL (fsync before the answer), \
many concurrent orders sharing one commit (group commit).";

/// The bakery's side of a load run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerUsage {
    pub pid: u32,
    /// CPU seconds (user + system) the bakery used during the run.
    pub cpu_s: Option<f64>,
    /// Its memory right after the run.
    pub memory: Option<Memory>,
}

/// One load run (`bakery-bench --mode ...`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// Always "load".
    pub kind: String,
    pub label: Option<String>,
    pub mode: Mode,
    pub url: String,
    pub customers: usize,
    /// Arrivals per second asked for (open loop); none for a closed loop.
    pub rate_target: Option<f64>,
    pub duration_s: Option<f64>,
    pub count: Option<u64>,
    pub started_at: DateTime<Utc>,
    pub elapsed_s: f64,
    pub requests: u64,
    pub orders_accepted: u64,
    pub orders_per_s: f64,
    pub lifecycles_completed: u64,
    pub lifecycles_per_s: f64,
    /// Latency of answered (2xx) requests, by endpoint.
    pub endpoints: BTreeMap<String, LatencySummary>,
    /// Per-step propagation by the orders' own timelines ("from->to").
    pub propagation: BTreeMap<String, LatencySummary>,
    /// Whole lifecycles, as the customer saw them.
    pub lifecycle: Option<LatencySummary>,
    /// Failed requests and lifecycles, by what and status.
    pub errors: BTreeMap<String, u64>,
    pub server: Option<ServerUsage>,
    pub client_cpu_s: Option<f64>,
    pub machine: MachineInfo,
    pub durable_ack: String,
}

impl RunReport {
    /// Bakery CPU milliseconds per accepted order / completed lifecycle.
    pub fn server_cpu_ms_per(&self, done: u64) -> Option<f64> {
        let cpu = self.server.as_ref()?.cpu_s?;
        (done > 0).then(|| cpu * 1000.0 / done as f64)
    }
}

/// Start-up of the bakery on a full data directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartupRun {
    /// Always "startup".
    pub kind: String,
    pub label: Option<String>,
    pub orders_stored: u64,
    pub database_mb: f64,
    pub samples: Vec<StartupSample>,
    pub machine: MachineInfo,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StartupSample {
    /// From spawning the process to its `listening on` line.
    pub startup_ms: f64,
    /// After the start and a few requests.
    pub memory: Memory,
    pub requests: u64,
}

/// Orders written without HTTP: straight to SQLite, or through the
/// embedded crate in process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageRun {
    /// Always "storage".
    pub kind: String,
    pub label: Option<String>,
    /// "raw-grouped", "raw-per-order" or "embedded".
    pub method: String,
    pub orders: u64,
    /// Orders per transaction (raw), or concurrent placers (embedded).
    pub group: usize,
    pub commits: u64,
    pub elapsed_s: f64,
    pub orders_per_s: f64,
    pub machine: MachineInfo,
}

pub(crate) fn thousands(value: f64) -> String {
    let rounded = value.round() as i64;
    let digits = rounded.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0 { format!("-{out}") } else { out }
}

pub(crate) fn latency_row(name: &str, s: &LatencySummary) -> String {
    format!(
        "| {name} | {} | {:.2} | {:.2} | {:.2} | {:.2} |\n",
        s.count, s.p50_ms, s.p90_ms, s.p99_ms, s.max_ms
    )
}

pub(crate) const LATENCY_HEAD: &str =
    "| what | count | p50 ms | p90 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|\n";

/// The human summary of one load run.
pub fn human(report: &RunReport) -> String {
    let mut out = String::new();
    let loop_kind = match report.rate_target {
        Some(rate) => format!(
            "open loop at {rate:.0}/s, at most {} at once",
            report.customers
        ),
        None => format!("closed loop, {} customers", report.customers),
    };
    let _ = writeln!(
        out,
        "bakery-bench {:?} against {} ({loop_kind}), {:.1} s",
        report.mode, report.url, report.elapsed_s
    );
    let _ = writeln!(
        out,
        "accepted orders: {} ({:.0}/s); lifecycles: {} ({:.0}/s); requests: {}",
        report.orders_accepted,
        report.orders_per_s,
        report.lifecycles_completed,
        report.lifecycles_per_s,
        report.requests
    );
    out.push('\n');
    out.push_str(LATENCY_HEAD);
    for endpoint in Endpoint::ALL {
        if let Some(s) = report.endpoints.get(endpoint.name()) {
            out.push_str(&latency_row(endpoint.name(), s));
        }
    }
    for (from, to) in PROPAGATION {
        if let Some(s) = report.propagation.get(&propagation_name(from, to)) {
            out.push_str(&latency_row(&format!("{from} → {to}"), s));
        }
    }
    if let Some(s) = &report.lifecycle {
        out.push_str(&latency_row("whole lifecycle (client)", s));
    }
    out.push('\n');
    if report.errors.is_empty() {
        out.push_str("errors: none\n");
    } else {
        out.push_str("errors:\n");
        for (what, count) in &report.errors {
            let _ = writeln!(out, "  {what}: {count}");
        }
    }
    if let Some(server) = &report.server {
        if let Some(cpu) = server.cpu_s {
            let _ = write!(out, "bakery CPU: {cpu:.1} s");
            let done = match report.mode {
                Mode::Orders => report.orders_accepted,
                Mode::Lifecycle => report.lifecycles_completed,
            };
            if let Some(per) = report.server_cpu_ms_per(done) {
                let _ = write!(out, " ({per:.3} ms per {})", unit_of(report.mode));
            }
            out.push('\n');
        }
        if let Some(memory) = server.memory {
            let _ = writeln!(
                out,
                "bakery memory after the run: VmRSS {:.1} MiB, VmHWM {:.1} MiB",
                memory.rss_mb, memory.hwm_mb
            );
        }
    }
    if let Some(cpu) = report.client_cpu_s {
        let _ = writeln!(out, "load generator CPU: {cpu:.1} s");
    }
    let _ = writeln!(out, "\n{}", report.durable_ack);
    out
}

fn unit_of(mode: Mode) -> &'static str {
    match mode {
        Mode::Orders => "order",
        Mode::Lifecycle => "lifecycle",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::tests::load;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1_000.0), "1,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(-12_345.0), "-12,345");
    }

    #[test]
    fn the_human_summary_states_the_durable_ack() {
        let report: RunReport =
            serde_json::from_value(load("orders", Mode::Orders, 100.0, 0.0, 3.0)).unwrap();
        let text = human(&report);
        assert!(text.contains("accepted orders: 1000 (100/s)"), "{text}");
        assert!(
            text.contains("| POST /order | 100 | 0.75 | 1.50 | 3.00 | 6.00 |"),
            "{text}"
        );
        assert!(text.contains("5.000 ms per order"), "{text}");
        assert!(text.contains("fsync"));
    }
}
