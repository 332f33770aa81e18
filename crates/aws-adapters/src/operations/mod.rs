//! The operator's port over AWS ([`AwsOperations`]): the pipeline's health
//! and dead-letter redrive. (The cake maker's orders by status are
//! [`crate::DynamoStore`]'s.)
//!
//! # What AWS can tell
//!
//! - **Queue depths** come from `GetQueueAttributes`:
//!   `ApproximateNumberOfMessages` is ready, `…NotVisible` plus `…Delayed`
//!   is in flight. SQS calls them approximate, and they are.
//! - **Consumer lag is unknown** (`None`, which the page shows as
//!   "unknown", never a made-up 0). Lambda keeps the stream consumers'
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

//!
//! # Layout
//!
//! - `mod.rs`: [`AwsOperations`] and its configuration, the status.
//! - `letters.rs`: a dead-letter queue's message or a failed stream batch
//!   as the operator sees it.
//! - `redrive.rs`: finding a dead letter by id and sending it again.

mod letters;
mod redrive;

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use domain::ports::{
    ConsumerLag, Operations, OperationsStatus, QueueDepth, RecentError, StoreError,
};
use serde_json::Value;

use crate::error::store_error;
use crate::stream_failures::StreamFailures;
use crate::{Clients, SqsReader};
use redrive::Target;

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
