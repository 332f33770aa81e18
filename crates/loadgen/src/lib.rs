//! `bakery-bench`: the bakery's load generator and benchmark report.
//!
//! # Layout
//!
//! - [`load`]: drives a running bakery over HTTP, closed loop or at a fixed
//!   arrival rate, in `orders` or whole-`lifecycle` mode; `load/customer.rs`
//!   is what one customer does (the requests, the waits for each step).
//! - [`workload`]: the mode, the endpoints timed, the propagation steps.
//! - [`stats`]: HDR latency histograms, medians, rates.
//! - [`report`]: what one run reports (JSON and a human summary).
//! - [`summary`]: the summary of a whole benchmark: medians with min and
//!   max against the targets, as JSON and as a markdown table.
//! - [`storage`]: orders written without HTTP: seeding a data directory
//!   through the `embedded` crate, the embedded crate in process, and raw
//!   SQLite (the storage limit).
//! - [`startup`]: start-up time and memory of the `bakery` binary.
//! - [`chart`]: the PNG charts (plotters).
//! - [`machine`]: CPU, memory, commit; CPU time and memory of a process.
//!
//! `scripts/bench.sh` runs the whole benchmark; `docs/benchmark.md` says
//! what each figure means.

pub mod chart;
pub mod load;
pub mod machine;
pub mod report;
pub mod startup;
pub mod stats;
pub mod storage;
pub mod summary;
pub mod workload;
