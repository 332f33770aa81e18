//! The whole bakery on one machine.
//!
//! The seven functions run in one process on the embedded parts (one
//! SQLite file, a mail outbox in another), with this crate playing what AWS plays in
//! the cloud: API Gateway in front of the HTTP functions and the event
//! source mappings behind the stream and the queues.
//!
//! # Layout
//!
//! - [`config`]: flags, their `BAKERY_` environment variables, subcommands.
//! - [`secrets`]: the baker token and signing secrets kept in the data
//!   directory.
//! - [`app`]: builds each function's dependencies once and serves.
//! - [`parts`]: the adapters for one backend (embedded or AWS).
//! - [`sources`]: where the consumers' batches come from, per backend.
//! - [`server`]: the HTTP server in front of the routers (limits, logs).
//! - [`aws`]: the AWS backend's resources, found by name or created.
//! - [`mappings`]: the local Kinesis and SQS event source mappings: batches,
//!   partial batch failures, retries with backoff, dead letters.
//! - [`names`]: the consumers', queues' and files' names both backends use.
//! - [`dlq`]: the operator's `bakery dlq list` and `bakery dlq redrive`.
//! - [`outbox`]: `bakery outbox list`, `show` and `export`, the emails the
//!   local bakery sent.

pub mod app;
pub mod aws;
pub mod config;
pub mod dlq;
pub mod mappings;
pub mod names;
pub mod outbox;
pub mod parts;
pub mod secrets;
pub mod server;
pub mod sources;
