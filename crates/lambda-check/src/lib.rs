//! The seven functions as Lambda runs them.
//!
//! Unit tests hand the handlers values built in Rust; AWS hands them JSON.
//! This crate holds what it takes to check the functions against that JSON
//! and against the protocol Lambda speaks with a function's process:
//!
//! - the JSON fixtures in `tests/fixtures/` (API Gateway HTTP API v2
//!   requests, Kinesis and SQS events, shaped as AWS documents them), with
//!   the orders, ids and tokens they refer to;
//! - an HTTP request event run through an axum router exactly as
//!   `lambda_http::run` runs it, answering the JSON API Gateway reads;
//! - a local Lambda Runtime API, the HTTP interface the Lambda service
//!   offers a function's process on `AWS_LAMBDA_RUNTIME_API`;
//! - a moto server provisioned as `template.yaml` declares the resources,
//!   with each function's environment as the template sets it, so the real
//!   `bootstrap` binaries run one invocation each on this machine.
//!
//! The seven crates' `tests/` use it as a dev-dependency; the
//! `lambda-check` binary (feature `cli`, run by `scripts/lambda-check.sh`)
//! uses it to measure cold starts and peak memory.
//!
//! # Layout
//!
//! - [`fixtures`]: reading the fixtures; the orders, tokens and sequence
//!   numbers they name.
//! - [`answers`]: a consumer's partial batch response, checked as the JSON
//!   Lambda reads.
//! - [`http`]: an HTTP API v2 event through a router, as `lambda_http` does.
//! - [`runtime_api`]: the local Lambda Runtime API.
//! - [`process`]: starting a `bootstrap` under it, timing its cold start and
//!   reading its peak memory.
//! - [`stack`]: moto with the template's table, stream, queues and sender,
//!   and the environment of each function.

pub mod answers;
pub mod fixtures;
pub mod http;
pub mod process;
pub mod runtime_api;
pub mod stack;

pub use process::{Bootstrap, ColdStart};
pub use runtime_api::{Outcome, RuntimeApi};
pub use stack::{Function, Stack};

/// The lines of a function's output that are JSON objects: its log lines
/// under `AWS_LAMBDA_LOG_FORMAT=JSON` and its Embedded Metric Format lines.
pub fn json_lines(output: &str) -> Vec<serde_json::Value> {
    output
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line.trim()).ok())
        .filter(serde_json::Value::is_object)
        .collect()
}
