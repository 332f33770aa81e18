//! The bakery's business metrics: orders placed, and how long each step
//! came after the one before it.
//!
//! The use cases and handlers record them through the `metrics` facade.
//! A deployed function installs [`install_embedded_metric_format`] and
//! [`flush`]es after each invocation: the metrics leave as one CloudWatch
//! Embedded Metric Format line on standard output, which CloudWatch Logs
//! turns into metrics of the namespace [`NAMESPACE`] with no API call. The local runner installs
//! no recorder, and recording costs nothing there.
//!
//! The names are the dashboard's and the alarms' (template.yaml,
//! serverless.yml): change them together.

use std::sync::OnceLock;

use chrono::{DateTime, Utc};
use domain::{Order, Step};
use metrics_cloudwatch_embedded::Collector;

/// The CloudWatch namespace of the metrics below.
pub const NAMESPACE: &str = "Bakery";
/// A count: orders stored (replays of an idempotent request not counted).
pub const ORDERS_PLACED: &str = "OrdersPlaced";
/// Milliseconds from the step before to this one, dimension `Step`.
pub const STEP_LATENCY: &str = "StepLatency";

static COLLECTOR: OnceLock<&'static Collector> = OnceLock::new();

/// Counts a newly stored order.
pub fn order_placed() {
    metrics::counter!(ORDERS_PLACED).increment(1);
}

/// Records `step` reached by `order` at `at`, if the order has an earlier
/// step to measure from ([`Order::latency_to`]).
pub fn step_reached(order: &Order, step: Step, at: DateTime<Utc>) {
    if let Some(latency) = order.latency_to(step, at) {
        metrics::histogram!(STEP_LATENCY, "Step" => step.as_str())
            .record(latency.as_secs_f64() * 1000.0);
    }
}

/// Installs the Embedded Metric Format recorder, once per process. A
/// second call, or another recorder already installed, leaves things as
/// they are (and says so in the log).
pub fn install_embedded_metric_format() {
    let collector = metrics_cloudwatch_embedded::Builder::new()
        .cloudwatch_namespace(NAMESPACE)
        .init();
    match collector {
        Ok(collector) => {
            metrics::describe_histogram!(STEP_LATENCY, metrics::Unit::Milliseconds, "");
            metrics::describe_counter!(ORDERS_PLACED, metrics::Unit::Count, "");
            let _ = COLLECTOR.set(collector);
        }
        Err(error) => tracing::warn!(%error, "metrics recorder not installed"),
    }
}

/// Writes what was recorded since the last flush as one EMF line on
/// standard output (nothing if nothing was recorded).
pub fn flush() {
    if let Some(collector) = COLLECTOR.get()
        && let Err(error) = collector.flush(std::io::stdout().lock())
    {
        tracing::warn!(%error, "metrics not written");
    }
}
