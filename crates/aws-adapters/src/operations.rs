//! The web pages' ports over AWS: orders by status for the cake maker
//! ([`OrderQueries`] over [`DynamoStore`]) and the pipeline's health and
//! dead-letter redrive for the operator ([`AwsOperations`]).
//!
//! # What AWS can tell
//!
//! - **Queue depths** come from `GetQueueAttributes`:
//!   `ApproximateNumberOfMessages` is ready, `…NotVisible` plus `…Delayed`
//!   is in flight. SQS calls them approximate, and they are.
//! - **Consumer lag is reported as 0.** Lambda keeps the stream consumers'
//!   checkpoints itself and shows them to nobody; the only outside signal
//!   is CloudWatch's `IteratorAge`, which is an age in milliseconds, not a
//!   count of records, arrives a minute late, and would cost another SDK
//!   crate and a `Resource: "*"` grant. The consumers are listed so the
//!   page names them; what failed for good shows up as a stream failure
//!   (below). docs/deploy.md says how to read `IteratorAge` by hand.
//! - **Dead letters** are the messages in the two dead-letter queues, read
//!   without taking them (received with a visibility timeout of 0, see
//!   [`SqsReader::dead_letter_queue_messages`]), and the failed stream
//!   batches kept in the stream-failures bucket ([`StreamFailures`]).
//! - **Recent errors** are the dead letters, newest first: what failed and
//!   is still being retried is only in the functions' logs.
//!
//! # Dead letter ids
//!
//! `<queue>:<SQS message id>` for a dead-letter queue's message (`queue` as
//! in [`QueueUrls::name`], e.g. `delivery:3f2a…`), and
//! `stream-failures:<object key>` for a failed stream batch.
//!
//! # Redrive
//!
//! SQS cannot fetch a message by id, so redrive receives from the queue
//! with a visibility timeout ([`HOLD_SECONDS`]) until it meets the id,
//! which also keeps a second redrive of the same id from finding it
//! meanwhile. The other messages it met are shown again at once.
//!
//! - A dead-letter queue's message is sent again to its source queue (same
//!   body, same message attributes), then deleted from the dead-letter
//!   queue. Between the two it is in both queues: if the delete fails (or
//!   the function stops right there), the message shows up again after
//!   [`HOLD_SECONDS`] and a second redrive sends it twice. That is
//!   at-least-once, as everywhere else in the bakery: the consumers drop
//!   a message id they have already handled.
//! - A failed stream batch is kept whole (Lambda's on-failure record
//!   with its `payload`, see [`crate::stream_failures`]). Redrive puts
//!   every record's data on the stream again with its partition key, then
//!   deletes the object. The records come from the object, not from the
//!   stream, so a batch redriven a week later still has them. The
//!   consumers skip an `eventId` they have handled, so records of the
//!   batch that had succeeded change nothing. A put that fails leaves the
//!   object for the next redrive.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsMessage;
use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{DateTime, Utc};
use domain::ports::{
    ConsumerLag, DeadLetterView, Operations, OperationsStatus, OrderQueries, QueueDepth,
    RecentError, StoreError,
};
use domain::{Order, Status};
use lambda_kit::stream_record::{self, Decoded};
use serde_json::Value;

use crate::error::store_error;
use crate::sqs::MESSAGE_ID_ATTRIBUTE;
use crate::stream_failures::{StreamFailure, StreamFailures};
use crate::{Clients, DynamoStore, SqsReader};

#[async_trait]
impl OrderQueries for DynamoStore {
    async fn orders_with_status(
        &self,
        status: Status,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        // The inherent method of the same name does the work.
        DynamoStore::orders_with_status(self, status, limit).await
    }
}

/// The id prefix of failed stream batches.
pub const STREAM_FAILURES: &str = "stream-failures";

/// A message attribute that, when a dead letter carries it, says why it
/// failed. SQS's own redrive policy records no reason.
pub const REASON_ATTRIBUTE: &str = "reason";

/// A message attribute that, with [`REASON_ATTRIBUTE`], says after how
/// many tries the consumer gave up on it.
pub const ATTEMPTS_ATTRIBUTE: &str = "attempts";

/// How long redrive keeps the messages it receives hidden while it looks
/// for the one it wants: long enough for the send and the delete, short
/// enough that a redrive cut off halfway is soon undone.
pub const HOLD_SECONDS: u32 = 30;

/// How many rounds of ten messages redrive receives before it gives up on
/// finding an id.
const SCAN_ROUNDS: usize = 50;

/// One queue with its dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueUrls {
    /// The name the operator sees and dead letter ids start with, e.g.
    /// `delivery`.
    pub name: String,
    pub url: String,
    pub dead_letter_url: String,
}

/// What [`AwsOperations`] looks at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OperationsConfig {
    /// The order stream, by name or ARN.
    pub stream: String,
    /// The stream consumers' names, e.g. `notify-baker`, `dispatch`. A
    /// stream failure's function (`bakery-prod-dispatch`) is shown as the
    /// consumer its name ends with.
    pub consumers: Vec<String>,
    pub queues: Vec<QueueUrls>,
    /// The stream consumers' on-failure destination: an S3 bucket's name.
    pub stream_failures_bucket: String,
}

/// [`Operations`] over SQS and Kinesis; see the module docs for what it
/// can and cannot know.
#[derive(Clone, Debug)]
pub struct AwsOperations {
    sqs: aws_sdk_sqs::Client,
    kinesis: aws_sdk_kinesis::Client,
    reader: SqsReader,
    stream_failures: StreamFailures,
    config: OperationsConfig,
}

impl AwsOperations {
    pub fn new(clients: &Clients, config: OperationsConfig) -> Self {
        AwsOperations {
            sqs: clients.sqs(),
            kinesis: clients.kinesis(),
            reader: SqsReader::new(clients),
            stream_failures: StreamFailures::new(clients, &config.stream_failures_bucket),
            config,
        }
    }

    /// A queue's depth, and after how many receives its redrive policy
    /// moves a message to the dead-letter queue.
    async fn depth(&self, queue: &QueueUrls) -> Result<(QueueDepth, Option<u32>), StoreError> {
        let output = self
            .sqs
            .get_queue_attributes()
            .queue_url(&queue.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| store_error("GetQueueAttributes", &e))?;
        let empty = HashMap::new();
        let attributes = output.attributes().unwrap_or(&empty);
        let count = |name: QueueAttributeName| -> u64 {
            attributes
                .get(&name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let depth = QueueDepth {
            name: queue.name.clone(),
            visible: count(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
                + count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        };
        let max_receives = attributes
            .get(&QueueAttributeName::RedrivePolicy)
            .and_then(|policy| serde_json::from_str::<Value>(policy).ok())
            .and_then(|policy| match &policy["maxReceiveCount"] {
                Value::Number(n) => n.as_u64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            })
            .and_then(|n| u32::try_from(n).ok());
        Ok((depth, max_receives))
    }

    /// The queue a dead letter id names, with the SQS message id.
    fn parse_id<'a>(&self, id: &'a str) -> Option<(Target<'_>, &'a str)> {
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

    async fn redrive_queue_message(
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

    async fn redrive_stream_failure(&self, key: &str) -> Result<bool, StoreError> {
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

    /// A dead-letter queue's message as the operator sees it.
    fn queue_letter(
        &self,
        queue: &QueueUrls,
        max_receives: Option<u32>,
        message: &SqsMessage,
    ) -> DeadLetterView {
        let sqs_id = message.message_id.clone().unwrap_or_default();
        // Looking at a dead-letter queue receives from it, which counts:
        // the policy's limit is how often the consumer really tried.
        let attempts = message
            .message_attributes
            .get(ATTEMPTS_ATTRIBUTE)
            .and_then(|a| a.string_value.as_deref())
            .and_then(|a| a.parse().ok())
            .or(max_receives)
            .unwrap_or_else(|| receive_count(message));
        let reason = message
            .message_attributes
            .get(REASON_ATTRIBUTE)
            .and_then(|a| a.string_value.clone())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| format!("moved to the dead-letter queue after {attempts} receives"));
        DeadLetterView {
            id: format!("{}:{sqs_id}", queue.name),
            source: queue.name.clone(),
            reason,
            attempts,
            failed_at: millis_attribute(message, "ApproximateFirstReceiveTimestamp")
                .or_else(|| millis_attribute(message, "SentTimestamp"))
                .unwrap_or_else(Utc::now),
            message_id: message
                .message_attributes
                .get(MESSAGE_ID_ATTRIBUTE)
                .and_then(|a| a.string_value.clone())
                .unwrap_or(sqs_id),
            order_id: message.body.as_deref().and_then(order_id_of),
        }
    }

    /// A failed stream batch as the operator sees it.
    fn stream_letter(&self, failure: &StreamFailure) -> DeadLetterView {
        let body = &failure.record;
        let request = &body["requestContext"];
        let source = request["functionArn"]
            .as_str()
            .map(|arn| consumer_of(arn, &self.config.consumers))
            .unwrap_or_else(|| STREAM_FAILURES.to_owned());
        let batch = BatchInfo::from_value(body);
        let message_id = match &batch {
            Some(b) if b.start == b.end => format!("{}:{}", b.shard_id, b.start),
            Some(b) => format!("{}:{}..{}", b.shard_id, b.start, b.end),
            None => failure.key.clone(),
        };
        // The order of the batch's first record that is an order event.
        let order_id = failure.records().ok().and_then(|records| {
            records
                .iter()
                .find_map(|r| match stream_record::decode(&r.kinesis.data) {
                    Ok(Decoded::Event(event)) => Some(event.order_id.to_string()),
                    _ => None,
                })
        });
        DeadLetterView {
            id: format!("{STREAM_FAILURES}:{}", failure.key),
            source,
            reason: stream_reason(body, batch.as_ref()),
            attempts: request["approximateInvokeCount"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1),
            failed_at: body["timestamp"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
                .or(failure.last_modified)
                .unwrap_or_else(Utc::now),
            message_id,
            order_id,
        }
    }
}

enum Target<'a> {
    Queue(&'a QueueUrls),
    StreamFailures,
}

#[async_trait]
impl Operations for AwsOperations {
    async fn status(&self) -> Result<OperationsStatus, StoreError> {
        let consumers = self
            .config
            .consumers
            .iter()
            .map(|name| ConsumerLag {
                name: name.clone(),
                lag: None,
            })
            .collect();
        let mut queues = Vec::with_capacity(self.config.queues.len());
        let mut dead_letters = Vec::new();
        for queue in &self.config.queues {
            let (depth, max_receives) = self.depth(queue).await?;
            queues.push(depth);
            let mut seen = HashSet::new();
            for message in self
                .reader
                .dead_letter_queue_messages(&queue.dead_letter_url)
                .await?
            {
                let letter = self.queue_letter(queue, max_receives, &message);
                if seen.insert(letter.id.clone()) {
                    dead_letters.push(letter);
                }
            }
        }
        for failure in self.stream_failures.list().await? {
            dead_letters.push(self.stream_letter(&failure));
        }
        dead_letters.sort_by_key(|letter| letter.failed_at);
        let mut recent_errors: Vec<RecentError> = dead_letters
            .iter()
            .rev()
            .map(|letter| RecentError {
                source: letter.source.clone(),
                reason: letter.reason.clone(),
                at: Some(letter.failed_at),
                dead: true,
                // A redrive moves the message off its dead-letter queue
                // and nothing else keeps it: listed while it is there.
                redriven_at: None,
            })
            .collect();
        recent_errors.truncate(OperationsStatus::RECENT_ERRORS);
        Ok(OperationsStatus {
            consumers,
            queues,
            dead_letters,
            recent_errors,
        })
    }

    async fn redrive(&self, id: String) -> Result<bool, StoreError> {
        match self.parse_id(&id) {
            None => Ok(false),
            Some((Target::Queue(queue), message_id)) => {
                self.redrive_queue_message(queue, message_id).await
            }
            Some((Target::StreamFailures, message_id)) => {
                self.redrive_stream_failure(message_id).await
            }
        }
    }
}

/// Where a failed stream batch is: Lambda's `KinesisBatchInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BatchInfo {
    shard_id: String,
    start: String,
    end: String,
    size: Option<u64>,
}

impl BatchInfo {
    fn from_value(body: &Value) -> Option<BatchInfo> {
        let info = body.get("KinesisBatchInfo")?;
        let text = |key: &str| {
            info.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Some(BatchInfo {
            shard_id: text("shardId")?,
            start: text("startSequenceNumber")?,
            end: text("endSequenceNumber")?,
            size: info.get("batchSize").and_then(Value::as_u64),
        })
    }
}

/// Why a stream batch was given up on, from the note's `requestContext`
/// and `responseContext`.
fn stream_reason(body: &Value, batch: Option<&BatchInfo>) -> String {
    let response = &body["responseContext"];
    let mut details = Vec::new();
    if let Some(reason) = response["reason"].as_str() {
        details.push(reason.to_owned());
    }
    if let Some(error) = response["functionError"].as_str() {
        details.push(format!("function error {error}"));
    }
    if let Some(status) = response["statusCode"].as_u64() {
        if status != 200 {
            details.push(format!("status {status}"));
        }
    }
    if let Some(size) = batch.and_then(|b| b.size) {
        let records = if size == 1 { "record" } else { "records" };
        details.push(format!("batch of {size} {records}"));
    }
    let condition = body["requestContext"]["condition"].as_str();
    match (condition, details.is_empty()) {
        (Some(condition), false) => format!("{condition}: {}", details.join(", ")),
        (Some(condition), true) => condition.to_owned(),
        (None, false) => details.join(", "),
        (None, true) if batch.is_none() => {
            "not a Lambda on-failure record (no KinesisBatchInfo)".to_owned()
        }
        (None, true) => "stream batch given up on".to_owned(),
    }
}

/// The consumer a function ARN (or name) belongs to: `…:function:
/// bakery-prod-dispatch` is `dispatch` when that is a known consumer,
/// else the function's name.
fn consumer_of(function: &str, consumers: &[String]) -> String {
    let name = match function.strip_prefix("arn:") {
        // arn:partition:lambda:region:account:function:name[:qualifier]
        Some(_) => function.split(':').nth(6).unwrap_or(function),
        None => function,
    };
    consumers
        .iter()
        .find(|c| name == c.as_str() || name.ends_with(&format!("-{c}")))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

fn receive_count(message: &SqsMessage) -> u32 {
    message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
}

/// An SQS attribute holding epoch milliseconds.
fn millis_attribute(message: &SqsMessage, name: &str) -> Option<DateTime<Utc>> {
    let millis = message.attributes.get(name)?.parse::<i64>().ok()?;
    DateTime::<Utc>::from_timestamp_millis(millis)
}

/// The `orderId` inside a queue message, if there is one.
fn order_id_of(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    value.get("orderId")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_arns_name_their_consumer() {
        let consumers = vec!["notify-baker".to_owned(), "dispatch".to_owned()];
        assert_eq!(
            consumer_of(
                "arn:aws:lambda:eu-west-1:123456789012:function:bakery-prod-dispatch",
                &consumers
            ),
            "dispatch"
        );
        assert_eq!(
            consumer_of(
                "arn:aws:lambda:eu-west-1:123456789012:function:bakery-notify-baker:$LATEST",
                &consumers
            ),
            "notify-baker"
        );
        assert_eq!(consumer_of("notify-baker", &consumers), "notify-baker");
        assert_eq!(
            consumer_of("arn:aws:lambda:r:1:function:other", &consumers),
            "other"
        );
    }

    #[test]
    fn a_lambda_on_failure_record_is_read() {
        // The example in Lambda's documentation.
        let body: Value = serde_json::from_str(
            r#"{
              "requestContext": {
                "requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
                "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": 1
              },
              "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled"
              },
              "version": "1.0",
              "timestamp": "2019-11-14T00:38:06.021Z",
              "KinesisBatchInfo": {
                "shardId": "shardId-000000000001",
                "startSequenceNumber": "49601189658422359378836298521827638475320189012309704722",
                "endSequenceNumber": "49601189658422359378836298522902373528957594348623495186",
                "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
                "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
                "batchSize": 500,
                "streamArn": "arn:aws:kinesis:us-east-2:123456789012:stream/mystream"
              }
            }"#,
        )
        .unwrap();
        let batch = BatchInfo::from_value(&body).unwrap();
        assert_eq!(batch.shard_id, "shardId-000000000001");
        assert_eq!(batch.size, Some(500));
        assert_eq!(
            stream_reason(&body, Some(&batch)),
            "RetryAttemptsExhausted: function error Unhandled, batch of 500 records"
        );
        assert_eq!(
            stream_reason(&Value::Null, None),
            "not a Lambda on-failure record (no KinesisBatchInfo)"
        );
    }

    #[test]
    fn order_ids_are_read_from_messages() {
        assert_eq!(order_id_of(r#"{"orderId":"o-1"}"#).as_deref(), Some("o-1"));
        assert_eq!(order_id_of("nope"), None);
    }
}
