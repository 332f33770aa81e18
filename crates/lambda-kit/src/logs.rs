//! What every log line about an order carries, in every function and in
//! the local runner: the order id and its correlation id
//! ([`domain::correlation`]), as the fields `orderId` and `correlationId`
//! of a span named `order`.
//!
//! A span rather than fields on each line, so lines that adapters log
//! while working for the order (a retried call, a refusal) carry them too.
//! In JSON (`AWS_LAMBDA_LOG_FORMAT=JSON` on AWS, `--log-format json`
//! locally) a line reads
//! `{"level":"INFO","message":"baker notified","span":{"orderId":"…","correlationId":"…","name":"order"},"spans":[…]}`,
//! and docs/deploy.md has the Logs Insights query that follows one order
//! through the seven functions.

use domain::OrderId;
use tracing::Span;

/// The span a piece of work on order `order_id` runs in. Without a
/// correlation id yet (a request that names an order, before it is read),
/// record it with [`record_correlation_id`] once known.
pub fn order_span(order_id: OrderId, correlation_id: Option<&str>) -> Span {
    let span = tracing::info_span!(
        "order",
        orderId = %order_id,
        correlationId = tracing::field::Empty,
    );
    if let Some(id) = correlation_id {
        record_correlation_id(&span, id);
    }
    span
}

/// Adds the correlation id to a span made by [`order_span`].
pub fn record_correlation_id(span: &Span, correlation_id: &str) {
    span.record("correlationId", correlation_id);
}
