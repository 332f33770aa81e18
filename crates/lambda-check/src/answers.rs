//! The partial batch response a stream or queue consumer answers, checked
//! as the JSON Lambda reads.
//!
//! With `ReportBatchItemFailures` on, Lambda reads
//! `{"batchItemFailures": [{"itemIdentifier": ...}]}` from a consumer and
//! retries only the items named there: Kinesis sequence numbers, SQS message
//! ids. That JSON is the contract with Lambda, so the consumers' tests
//! compare it literally, not the [`BatchReport`] it is built from. The four
//! consumers' `tests/aws_payloads.rs` all make this check for a clean batch
//! and for one with a poison item; it lives here once.

use lambda_kit::batch::BatchReport;
use serde_json::{Value, json};

/// Asserts that `report`, answered to a Kinesis event, is
/// `{"batchItemFailures": [...]}` naming exactly `failed_sequence_numbers`
/// (none: an empty list, the whole batch done).
#[track_caller]
pub fn assert_kinesis_answer(report: &BatchReport, failed_sequence_numbers: &[&str]) {
    let answer = serde_json::to_value(in_order(report).kinesis_response())
        .expect("a Kinesis batch response serializes");
    assert_answer(answer, failed_sequence_numbers);
}

/// Asserts that `report`, answered to an SQS event, is
/// `{"batchItemFailures": [...]}` naming exactly `failed_message_ids`
/// (none: an empty list, every message done).
#[track_caller]
pub fn assert_sqs_answer(report: &BatchReport, failed_message_ids: &[&str]) {
    let answer = serde_json::to_value(in_order(report).sqs_response())
        .expect("an SQS batch response serializes");
    assert_answer(answer, failed_message_ids);
}

/// `report` with its failures sorted by item: a batch's orders run
/// concurrently, so failures come in any order, and Lambda does not care.
fn in_order(report: &BatchReport) -> BatchReport {
    let mut report = report.clone();
    report
        .failures
        .sort_by(|a, b| a.item_identifier.cmp(&b.item_identifier));
    report
}

#[track_caller]
fn assert_answer(answer: Value, failed: &[&str]) {
    let mut failed = failed.to_vec();
    failed.sort_unstable();
    let items: Vec<Value> = failed
        .iter()
        .map(|item| json!({"itemIdentifier": item}))
        .collect();
    assert_eq!(
        answer,
        json!({"batchItemFailures": items}),
        "the partial batch response Lambda reads"
    );
}
