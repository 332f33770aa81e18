//! The functions' log format.
//!
//! CloudWatch stores whatever a function prints and adds its own
//! timestamps, so lines carry no time and no colour codes (which would show
//! up as `\x1b[..]` noise). Lambda's advanced logging controls are honoured:
//! `AWS_LAMBDA_LOG_FORMAT=JSON` switches to one JSON object per line, and
//! `AWS_LAMBDA_LOG_LEVEL` (else `RUST_LOG`, else `info`) sets the level.
//!
//! In JSON a line's own fields sit at the top level beside `level` and
//! `message`; the span it was logged in (an order's: `orderId`,
//! `correlationId`, see `lambda_kit::logs`) is under `span`, and every
//! enclosing span (Lambda's `requestId` among them) under `spans`.
//!
//! Why not `lambda_runtime::tracing::init_default_subscriber`, which reads
//! the same variables: its JSON nests a line's own fields under `fields`,
//! so `orderId`, `reason` or `message` would not be top-level fields that
//! Logs Insights discovers by themselves, and the lines would no longer
//! match what the local runner prints with `--log-format json`. Everything
//! else (no time, the level's variables) is the same as there.
//!
//! [`init`] also installs the business metrics' recorder
//! (`lambda_kit::metrics`): its lines go to standard output after each
//! invocation, as Embedded Metric Format.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// Installs the global subscriber and the metrics recorder. Call once,
/// first thing in `main`.
pub fn init() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|text| text.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false)
        .without_time();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    // `try_init` so a second call (or a test harness's subscriber) is harmless.
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init()
    } else {
        builder.compact().try_init()
    };
    lambda_kit::metrics::install_embedded_metric_format();
}
