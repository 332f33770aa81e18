//! What a deployed consumer does with a record or message that can never
//! succeed: it puts it where the operator looks, at once, with its reason,
//! instead of letting the event source mapping try it again until its
//! limits.
//!
//! A step says whether its failure is permanent (`lambda_kit::batch::
//! StepError`). Lambda's event source mappings cannot be told: a failure
//! reported in the batch response is retried (Kinesis: up to
//! `MaximumRetryAttempts`; SQS: until `maxReceiveCount`), and the reason is
//! lost. So the functions settle permanent failures themselves before they
//! answer, as the local runner does:
//!
//! - [`StreamGiveUp`] (notify-baker, dispatch) keeps the record whole in
//!   the stream-failures bucket, in the very format of the mappings' S3
//!   on-failure destination ([`crate::stream_failures`]), and reports it as
//!   done. A Kinesis mapping goes on from the lowest failed sequence
//!   number, so only permanent failures *before* the first transient one
//!   are settled; a later one stays reported, comes again with the retry,
//!   and is settled then.
//! - [`QueueGiveUp`] (notify-delivery, feedback) sends the message to its
//!   dead-letter queue with `reason` and `attempts` attributes (what
//!   `bakery dlq list` shows) and reports it as done, so Lambda deletes it.
//!
//! If that put or send fails, the failure stays reported: the mapping
//! retries it, and it is settled on a later try or reaches the mapping's
//! own destination. Nothing is dropped.

use std::cmp::Ordering;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_lambda_events::event::streams::KinesisEventResponse;
use chrono::Utc;
use lambda_kit::batch::{BatchReport, ItemFailure};

use crate::env::{self, MissingVar};
use crate::stream_failures::{GaveUp, StreamFailures, on_failure_record};
use crate::{Clients, SqsReader};

/// Lambda names the running function in this variable.
const FUNCTION_NAME_VAR: &str = "AWS_LAMBDA_FUNCTION_NAME";

/// A stream consumer's way of giving up on a record.
pub struct StreamGiveUp {
    failures: StreamFailures,
    function: String,
}

impl StreamGiveUp {
    /// Reads `STREAM_FAILURES_BUCKET` (and the function's name).
    pub fn from_env(clients: &Clients) -> Result<StreamGiveUp, MissingVar> {
        Ok(StreamGiveUp {
            failures: StreamFailures::new(clients, env::required("STREAM_FAILURES_BUCKET")?),
            function: env::optional(FUNCTION_NAME_VAR).unwrap_or_else(|| "unknown".into()),
        })
    }

    /// The batch response, once the permanent failures that can be settled
    /// are kept.
    pub async fn settle(&self, batch: &KinesisEvent, report: BatchReport) -> KinesisEventResponse {
        let first_transient = report
            .failures
            .iter()
            .filter(|f| !f.permanent)
            .map(|f| f.item_identifier.as_str())
            .min_by(|a, b| compare_sequence(a, b))
            .map(str::to_owned);
        let mut still_failed = BatchReport::default();
        for failure in report.failures {
            let settle_now = failure.permanent
                && first_transient.as_deref().is_none_or(|first| {
                    compare_sequence(&failure.item_identifier, first) == Ordering::Less
                });
            let record = batch
                .records
                .iter()
                .find(|r| r.kinesis.sequence_number == failure.item_identifier);
            match record {
                Some(record) if settle_now && self.keep(record, &failure).await => {}
                _ => still_failed.failures.push(failure),
            }
        }
        still_failed.kinesis_response()
    }

    async fn keep(&self, record: &KinesisEventRecord, failure: &ItemFailure) -> bool {
        let shard = record
            .event_id
            .as_deref()
            .and_then(|id| id.rsplit_once(':'))
            .map_or("unknown", |(shard, _)| shard);
        let (key, body) = on_failure_record(
            &GaveUp {
                function: &self.function,
                stream_arn: record.event_source_arn.as_deref().unwrap_or_default(),
                shard_id: shard,
                reason: &failure.reason,
                attempts: 1,
                at: Utc::now(),
            },
            std::slice::from_ref(record),
        );
        match self.failures.keep(&key, &body).await {
            Ok(()) => {
                tracing::error!(
                    sequence = %failure.item_identifier,
                    reason = %failure.reason,
                    %key,
                    "stream record can never succeed: kept in the stream-failures bucket"
                );
                true
            }
            Err(error) => {
                tracing::warn!(%error, sequence = %failure.item_identifier, "could not keep a record that can never succeed; the mapping will retry it");
                false
            }
        }
    }
}

/// A queue consumer's way of giving up on a message.
pub struct QueueGiveUp {
    reader: SqsReader,
    dead_letter_url: String,
}

impl QueueGiveUp {
    /// Reads `DEAD_LETTER_QUEUE_URL`: the queue's dead-letter queue.
    pub fn from_env(clients: &Clients) -> Result<QueueGiveUp, MissingVar> {
        Ok(QueueGiveUp {
            reader: SqsReader::new(clients),
            dead_letter_url: env::required("DEAD_LETTER_QUEUE_URL")?,
        })
    }

    /// The batch response, once the permanent failures are in the
    /// dead-letter queue.
    pub async fn settle(&self, batch: &SqsEvent, report: BatchReport) -> SqsBatchResponse {
        let mut still_failed = BatchReport::default();
        for failure in report.failures {
            let message = batch
                .records
                .iter()
                .find(|m| m.message_id.as_deref() == Some(failure.item_identifier.as_str()));
            let sent = match message {
                Some(message) if failure.permanent => {
                    let attempts = message
                        .attributes
                        .get("ApproximateReceiveCount")
                        .and_then(|count| count.parse().ok())
                        .unwrap_or(1);
                    match self
                        .reader
                        .send_copy(
                            &self.dead_letter_url,
                            message,
                            Some((&failure.reason, attempts)),
                        )
                        .await
                    {
                        Ok(()) => {
                            tracing::error!(
                                message = %failure.item_identifier,
                                reason = %failure.reason,
                                "message can never succeed: sent to the dead-letter queue"
                            );
                            true
                        }
                        Err(error) => {
                            tracing::warn!(%error, message = %failure.item_identifier, "could not dead-letter a message that can never succeed; it will be received again");
                            false
                        }
                    }
                }
                _ => false,
            };
            if !sent {
                still_failed.failures.push(failure);
            }
        }
        still_failed.sqs_response()
    }
}

/// Kinesis sequence numbers are decimal strings longer than any integer
/// type: the longer is the larger, and equal lengths compare as text.
fn compare_sequence(a: &str, b: &str) -> Ordering {
    let a = a.trim_start_matches('0');
    let b = b.trim_start_matches('0');
    a.len().cmp(&b.len()).then_with(|| a.cmp(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_compare_as_numbers() {
        assert_eq!(compare_sequence("9", "10"), Ordering::Less);
        assert_eq!(compare_sequence("10", "10"), Ordering::Equal);
        assert_eq!(
            compare_sequence(
                "49601189658422359378836298522902373528957594348623495186",
                "49601189658422359378836298521827638475320189012309704722"
            ),
            Ordering::Greater
        );
    }
}
