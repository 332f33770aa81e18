//! What the seven functions share beyond the domain.
//!
//! # Layout
//!
//! - [`http`]: the HTTP side of the three HTTP functions: one error type that
//!   answers in `application/problem+json` (RFC 9457), a JSON body extractor
//!   with a size limit and field-level validation errors, and bearer tokens.
//! - [`api_gateway`]: running an HTTP function's router under API Gateway,
//!   with or without a stage name in front of the path.
//! - [`batch`]: running a handler over a Kinesis or SQS batch and reporting
//!   the records that failed, as `ReportBatchItemFailures` expects.
//! - [`logs`]: the span that gives every log line about an order its
//!   order id and correlation id (the use cases, in the `use-cases`
//!   crate, log in it too).
//! - [`metrics`]: orders placed and step latencies, written as
//!   CloudWatch Embedded Metric Format lines by the deployed functions.
//! - [`partner`]: notifying a partner once per order step.
//! - [`refresh`]: secrets loaded at cold start and refreshed before an
//!   invocation once they are old, with the handler rebuilt when they
//!   change (the store itself is in `aws_adapters::secrets`).
//! - [`stream_record`]: the two envelopes an event comes in on the order
//!   stream (the event itself, or the order table's change record on AWS).
//!
//! They exist so each function crate holds only its own step's logic.

pub mod api_gateway;
pub mod batch;
pub mod http;
pub mod logs;
pub mod metrics;
pub mod partner;
pub mod refresh;
pub mod stream_record;
