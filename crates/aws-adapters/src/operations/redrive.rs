//! Redrive: a dead letter found by its id and sent again (see the parent
//! module's docs for the order of the steps and what a failure between
//! them leaves behind).

use aws_lambda_events::event::sqs::SqsMessage;
use domain::ports::StoreError;

use super::{AwsOperations, HOLD_SECONDS, QueueUrls, STREAM_FAILURES};
use crate::error::store_error;

/// How many rounds of ten messages redrive receives before it gives up on
/// finding an id.
const SCAN_ROUNDS: usize = 50;

/// What a dead letter id names.
pub(super) enum Target<'a> {
    Queue(&'a QueueUrls),
    StreamFailures,
}

impl AwsOperations {
    /// The queue a dead letter id names, with the SQS message id.
    pub(super) fn parse_id<'a>(&self, id: &'a str) -> Option<(Target<'_>, &'a str)> {
        let (prefix, message_id) = id.split_once(':')?;
        if message_id.is_empty() {
            return None;
        }
        if prefix == STREAM_FAILURES {
            return Some((Target::StreamFailures, message_id));
        }
        let queue = self.config.queues.iter().find(|q| q.name == prefix)?;
        Some((Target::Queue(queue), message_id))
    }

    /// Receives from `url` until it meets `message_id`, which stays hidden
    /// for [`HOLD_SECONDS`]; every other message met is shown again.
    async fn take(&self, url: &str, message_id: &str) -> Result<Option<SqsMessage>, StoreError> {
        let mut held = Vec::new();
        let mut found = None;
        let mut outcome = Ok(());
        for _ in 0..SCAN_ROUNDS {
            // Long polling (1 s) asks every SQS server, so an empty answer
            // means empty, not "this server had nothing".
            let batch = match self.reader.receive(url, 10, 1, HOLD_SECONDS).await {
                Ok(batch) => batch,
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            for message in batch {
                if found.is_none() && message.message_id.as_deref() == Some(message_id) {
                    found = Some(message);
                } else if let Some(receipt) = message.receipt_handle {
                    held.push(receipt);
                }
            }
            if found.is_some() {
                break;
            }
        }
        self.release(url, &held).await;
        outcome.map(|()| found)
    }

    /// Shows held messages again at once. Best effort: one that stays
    /// hidden shows up by itself after [`HOLD_SECONDS`].
    async fn release(&self, url: &str, receipts: &[String]) {
        for receipt in receipts {
            if let Err(error) = self.reader.change_visibility(url, receipt, 0).await {
                tracing::warn!(%error, "could not show a dead letter again; it will be after its visibility timeout");
            }
        }
    }

    pub(super) async fn redrive_queue_message(
        &self,
        queue: &QueueUrls,
        message_id: &str,
    ) -> Result<bool, StoreError> {
        let Some(message) = self.take(&queue.dead_letter_url, message_id).await? else {
            return Ok(false);
        };
        let receipt = message.receipt_handle.clone().unwrap_or_default();
        if let Err(error) = self.reader.send_copy(&queue.url, &message, None).await {
            self.release(&queue.dead_letter_url, &[receipt]).await;
            return Err(error);
        }
        // Sent: from here on a failure leaves it in both queues until the
        // hold ends, which the consumers' deduplication makes harmless.
        self.reader.delete(&queue.dead_letter_url, &receipt).await?;
        Ok(true)
    }

    pub(super) async fn redrive_stream_failure(&self, key: &str) -> Result<bool, StoreError> {
        let Some(failure) = self.stream_failures.get(key).await? else {
            return Ok(false);
        };
        let records = failure.records()?;
        for record in &records {
            let request = self
                .kinesis
                .put_record()
                .partition_key(&record.kinesis.partition_key)
                .data(aws_sdk_kinesis::primitives::Blob::new(
                    record.kinesis.data.to_vec(),
                ));
            let request = if self.config.stream.starts_with("arn:") {
                request.stream_arn(&self.config.stream)
            } else {
                request.stream_name(&self.config.stream)
            };
            request
                .send()
                .await
                .map_err(|e| store_error("PutRecord", &e))?;
        }
        // Put: from here on a failure leaves the object for a second
        // redrive, which the consumers' deduplication makes harmless.
        self.stream_failures.delete(key).await?;
        tracing::info!(
            %key,
            records = records.len(),
            "stream failure redriven: records put on the stream again"
        );
        Ok(true)
    }
}
