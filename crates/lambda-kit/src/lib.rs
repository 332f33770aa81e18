//! What the seven functions share beyond the domain.
//!
//! # Layout
//!
//! - [`http`]: the HTTP side of the three HTTP functions: one error type that
//!   answers in `application/problem+json` (RFC 9457), a JSON body extractor
//!   with a size limit and field-level validation errors, and bearer tokens.
//! - [`batch`]: running a handler over a Kinesis or SQS batch and reporting
//!   the records that failed, as `ReportBatchItemFailures` expects.
//! - [`partner`]: notifying a partner once per order step.
//!
//! Both exist so each function crate holds only its own step's logic.

pub mod batch;
pub mod http;
pub mod partner;
