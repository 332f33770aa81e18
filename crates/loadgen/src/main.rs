//! `bakery-bench`: see the crate docs and `docs/benchmark.md`.

// The load generator shares the machine with the bakery it measures:
// every bit of its own CPU is taken from the bakery. mimalloc, as in the
// bakery, spends less of it on the many short-lived buffers per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use loadgen::load::{self, LoadConfig, Mode};
use loadgen::report::{self, StorageRun};
use loadgen::summary;
use loadgen::{chart, startup, storage};
use serde::Serialize;

/// Drives order lifecycles against a bakery over HTTP and reports
/// throughput and latency percentiles; subcommands seed a data directory,
/// measure start-up, the storage baseline, and summarise a benchmark.
#[derive(Parser)]
#[command(name = "bakery-bench", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Args)]
struct LoadArgs {
    /// Base URL of the bakery (a local one or a deployed API).
    #[arg(long, env = "BENCH_URL", default_value = "http://127.0.0.1:3000")]
    url: String,
    /// The cake maker's bearer token (needed for lifecycles).
    #[arg(long, env = "BAKERY_BAKER_TOKEN", hide_env_values = true)]
    baker_token: Option<String>,
    /// A file holding the cake maker's token (e.g. `<data-dir>/baker-token`).
    #[arg(long, conflicts_with = "baker_token")]
    baker_token_file: Option<PathBuf>,
    /// `orders`: only POST /order; `lifecycle`: the whole flow.
    #[arg(long, value_enum, default_value = "lifecycle")]
    mode: Mode,
    /// Concurrent customers (closed loop), or the most at once (with --rate).
    #[arg(long, default_value_t = 64, value_parser = at_least_one)]
    customers: usize,
    /// How long to run, e.g. `10s`, `500ms`, `2m` (default 10s unless --count).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// How many orders (orders mode) or lifecycles to run.
    #[arg(long)]
    count: Option<u64>,
    /// Open loop: this many arrivals per second instead of a closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Poll GET /order/{id} for each step instead of waiting with one
    /// GET /order/{id}?waitFor=<step> (the default; it polls anyway
    /// against a server that cannot wait).
    #[arg(long)]
    poll: bool,
    /// Shortest wait before polling GET /order/{id}. The first poll waits
    /// for the step's usual time (a running average), at least this; then
    /// the interval starts here and doubles per poll.
    #[arg(long, default_value_t = 4)]
    poll_min_ms: u64,
    /// Longest interval between polls.
    #[arg(long, default_value_t = 16)]
    poll_max_ms: u64,
    /// Longest wait for one propagation step.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    step_timeout: Duration,
    /// Longest wait for one HTTP answer.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    request_timeout: Duration,
    /// Tries of a POST answered 5xx or not at all (same Idempotency-Key).
    #[arg(long, default_value_t = 3)]
    post_tries: u32,
    /// Threads of the load generator's runtime.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// The bakery's process id: report its CPU time and memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Name of this run in the summary (`orders`, `lifecycle`, ...).
    #[arg(long)]
    label: Option<String>,
    /// Write the full report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Fill a data directory with finished orders through the embedded crate.
    Seed {
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        orders: u64,
        /// Orders placed at once (they share commits).
        #[arg(long, default_value_t = 1024)]
        concurrency: usize,
    },
    /// Orders written without HTTP: raw SQLite or the embedded crate.
    Storage {
        #[arg(long, value_parser = ["raw-grouped", "raw-per-order", "embedded"])]
        method: String,
        /// An empty (or missing) directory for the database.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        orders: u64,
        /// Orders per transaction (raw-grouped) or placed at once (embedded).
        #[arg(long, default_value_t = 64)]
        group: usize,
        #[arg(long)]
        label: Option<String>,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Start-up time and memory of the bakery on a data directory.
    Startup {
        /// The bakery binary.
        #[arg(long, default_value = "target/release/bakery")]
        bakery: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 5)]
        repeat: usize,
        /// Orders placed (and read back) before memory is read.
        #[arg(long, default_value_t = 10)]
        requests: u64,
        #[arg(long)]
        label: Option<String>,
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Summarise the runs of a benchmark: medians, targets, charts.
    Report {
        /// Run reports (JSON files, or directories of them).
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Where the summary goes (e.g. bench/results/latest.json).
        #[arg(long)]
        out: PathBuf,
        /// Render the PNG charts into this directory (e.g. media).
        #[arg(long)]
        charts: Option<PathBuf>,
        /// Also write the markdown table here.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// A note to carry into the summary (repeatable).
        #[arg(long)]
        note: Vec<String>,
    },
}

/// A count of one or more: no customers would measure nothing.
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// `10`, `10s`, `1.5s`, `250ms`, `2m`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (try 10s or 500ms)"))?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(format!("not a duration: {text:?}"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

fn runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bakery-bench: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        None => run_load(cli.load),
        Some(Command::Seed {
            data_dir,
            orders,
            concurrency,
        }) => {
            let seeded =
                runtime(2)?.block_on(storage::seed(&data_dir, orders, concurrency, true))?;
            println!(
                "seeded {} finished orders into {} in {:.1} s ({:.0} orders/s, {} commits)",
                seeded.orders,
                data_dir.display(),
                seeded.elapsed.as_secs_f64(),
                seeded.orders as f64 / seeded.elapsed.as_secs_f64().max(1e-9),
                seeded.commits
            );
            let per_order = |bytes: u64| bytes as f64 / seeded.orders.max(1) as f64;
            println!(
                "on disk: {:.0} bytes per order with the stream's events, {:.0} once it is trimmed \
                 ({} and {} bytes in all)",
                per_order(seeded.bytes_before_trim),
                per_order(seeded.bytes_after_trim),
                seeded.bytes_before_trim,
                seeded.bytes_after_trim
            );
            Ok(())
        }
        Some(Command::Storage {
            method,
            dir,
            orders,
            group,
            label,
            json,
        }) => {
            let mut result: StorageRun = match method.as_str() {
                "embedded" => runtime(2)?.block_on(storage::embedded(&dir, orders, group, true))?,
                "raw-per-order" => storage::raw(&dir, orders, 1)?,
                _ => storage::raw(&dir, orders, group)?,
            };
            result.label = label.or_else(|| Some(method.clone()));
            println!(
                "{}: {} orders in {:.2} s: {:.0} orders/s, {} commits ({:.1} orders per commit)",
                result.method,
                result.orders,
                result.elapsed_s,
                result.orders_per_s,
                result.commits,
                result.orders as f64 / result.commits.max(1) as f64
            );
            if let Some(json) = json {
                write_json(&json, &result)?;
            }
            Ok(())
        }
        Some(Command::Startup {
            bakery,
            data_dir,
            repeat,
            requests,
            label,
            json,
        }) => {
            let mut result =
                runtime(1)?.block_on(startup::run(&bakery, &data_dir, repeat, requests))?;
            result.label = label;
            for sample in &result.samples {
                println!(
                    "start-up with {} orders ({:.0} MiB): {:.0} ms to listening; after {} requests VmRSS {:.1} MiB, VmHWM {:.1} MiB",
                    result.orders_stored,
                    result.database_mb,
                    sample.startup_ms,
                    sample.requests,
                    sample.memory.rss_mb,
                    sample.memory.hwm_mb
                );
            }
            if let Some(json) = json {
                write_json(&json, &result)?;
            }
            Ok(())
        }
        Some(Command::Report {
            runs,
            out,
            charts,
            markdown,
            note,
        }) => {
            let mut values = Vec::new();
            for path in runs {
                let files: Vec<PathBuf> = if path.is_dir() {
                    let mut files: Vec<PathBuf> = std::fs::read_dir(&path)?
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|e| e == "json"))
                        .collect();
                    files.sort();
                    files
                } else {
                    vec![path]
                };
                for file in files {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let value: serde_json::Value = serde_json::from_str(&text)
                        .with_context(|| format!("{} is not JSON", file.display()))?;
                    values.push(value);
                }
            }
            let summary = summary::summarize(values, note);
            write_json(&out, &summary)?;
            let table = summary::markdown(&summary);
            print!("{table}");
            if let Some(markdown) = markdown {
                std::fs::write(&markdown, &table)
                    .with_context(|| format!("cannot write {}", markdown.display()))?;
            }
            if let Some(dir) = charts {
                for file in chart::render_all(&summary, &dir)? {
                    eprintln!("wrote {}", file.display());
                }
            }
            Ok(())
        }
    }
}

fn run_load(args: LoadArgs) -> Result<()> {
    let baker_token = match (&args.baker_token, &args.baker_token_file) {
        (Some(token), _) => Some(token.trim().to_owned()),
        (None, Some(file)) => Some(
            std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the baker token from {}", file.display()))?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    if args.poll_min_ms == 0 || args.poll_max_ms < args.poll_min_ms {
        bail!("need 0 < --poll-min-ms <= --poll-max-ms");
    }
    let duration = match (args.duration, args.count) {
        (None, None) => Some(Duration::from_secs(10)),
        (duration, _) => duration,
    };
    let config = LoadConfig {
        url: args.url.trim_end_matches('/').to_owned(),
        baker_token,
        mode: args.mode,
        customers: args.customers,
        duration,
        count: args.count,
        rate: args.rate,
        poll: args.poll,
        poll_min: Duration::from_millis(args.poll_min_ms),
        poll_max: Duration::from_millis(args.poll_max_ms),
        step_timeout: args.step_timeout,
        request_timeout: args.request_timeout,
        post_tries: args.post_tries,
        progress: !args.no_progress,
        server_pid: args.server_pid,
        label: args.label,
    };
    let result = runtime(args.threads)?.block_on(load::run(config))?;
    print!("{}", report::human(&result));
    if let Some(json) = args.json {
        write_json(&json, &result)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn customers_are_at_least_one() {
        let parsed = |n: &str| Cli::try_parse_from(["bakery-bench", "--customers", n]);
        let refused = parsed("0").err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("--customers"), "{refused}");
        assert!(refused.contains("must be at least 1"), "{refused}");
        assert!(parsed("many").is_err());
        assert_eq!(parsed("128").map(|cli| cli.load.customers).ok(), Some(128));
    }

    #[test]
    fn the_cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
