//! The stream and queues of the embedded database as event sources.
//!
//! Consumers wake on the database's change counter the moment something is
//! appended or sent, so there is no polling delay.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::kinesis::KinesisEventRecord;
use aws_lambda_events::event::sqs::SqsMessage;
use chrono::Utc;
use domain::ports::StoreError;
use embedded::{Database, StreamRecord};
use lambda_kit::batch::ItemFailure;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{QueueSource, StreamSource};

const SHARD: &str = "shardId-000000000000";
const STREAM_ARN: &str = "arn:aws:kinesis:local:000000000000:stream/bakery-orders";

pub struct EmbeddedStream {
    db: Database,
    consumer: &'static str,
    changes: watch::Receiver<u64>,
    /// The records read and not yet checkpointed, by sequence number, to
    /// find a failed one's stored form again.
    read: BTreeMap<i64, StreamRecord>,
    /// The consumer's checkpoint as it will be once the checkpoints on
    /// their way to the writer are committed.
    position: i64,
    /// The last record taken: reads go on from here.
    cursor: i64,
}

impl EmbeddedStream {
    pub fn new(db: Database, consumer: &'static str) -> EmbeddedStream {
        EmbeddedStream {
            changes: db.stream_changes(),
            db,
            consumer,
            read: BTreeMap::new(),
            position: 0,
            cursor: 0,
        }
    }

    fn stored(&self, record: &KinesisEventRecord) -> Result<&StreamRecord, StoreError> {
        let sequence = sequence_of(record)?;
        self.read
            .get(&sequence)
            .ok_or_else(|| StoreError::Failed(format!("record {sequence} was not read")))
    }
}

fn sequence_of(record: &KinesisEventRecord) -> Result<i64, StoreError> {
    record
        .kinesis
        .sequence_number
        .parse()
        .map_err(|_| StoreError::Failed("not a local sequence number".into()))
}

#[async_trait]
impl StreamSource for EmbeddedStream {
    async fn read(&mut self, limit: usize) -> Result<Vec<KinesisEventRecord>, StoreError> {
        // Mark the current state seen before reading, so an append that
        // lands after the read wakes `wait_for_more`.
        self.changes.borrow_and_update();
        let after = self.cursor.max(self.position);
        let records = self
            .db
            .read_stream_after(self.consumer, after, limit)
            .await?;
        let events = records.iter().map(kinesis_record).collect();
        self.read
            .extend(records.into_iter().map(|record| (record.sequence, record)));
        Ok(events)
    }

    fn taken(&mut self, record: &KinesisEventRecord) -> Result<(), StoreError> {
        self.cursor = self.cursor.max(sequence_of(record)?);
        Ok(())
    }

    fn rewind(&mut self) {
        self.cursor = self.position;
    }

    /// Moves on at once and commits the checkpoint meanwhile: the next
    /// batch need not wait for that commit. If the bakery stops before it
    /// lands, the records come again after the restart, which the steps'
    /// deduplication makes harmless (as with any at-least-once delivery).
    async fn checkpoint(&mut self, record: &KinesisEventRecord) -> Result<(), StoreError> {
        let sequence = sequence_of(record)?;
        self.position = self.position.max(sequence);
        self.read = self.read.split_off(&(self.position + 1));
        let (db, consumer) = (self.db.clone(), self.consumer);
        tokio::spawn(async move {
            if let Err(error) = db.checkpoint(consumer, sequence).await {
                tracing::warn!(consumer, %error, "cannot store the checkpoint; later ones will");
            }
        });
        Ok(())
    }

    async fn record_failure(
        &mut self,
        record: &KinesisEventRecord,
        reason: &str,
    ) -> Result<u32, StoreError> {
        self.db
            .record_stream_failure(self.consumer, sequence_of(record)?, reason)
            .await
    }

    async fn dead_letter(
        &mut self,
        record: &KinesisEventRecord,
        reason: &str,
        attempts: u32,
    ) -> Result<(), StoreError> {
        let stored = self.stored(record)?.clone();
        self.db
            .dead_letter_stream_record(self.consumer, &stored, reason, attempts)
            .await?;
        self.position = self.position.max(stored.sequence);
        self.read = self.read.split_off(&(self.position + 1));
        Ok(())
    }

    async fn wait_for_more(&mut self, stop: &CancellationToken) {
        tokio::select! {
            _ = self.changes.changed() => {}
            () = stop.cancelled() => {}
        }
    }
}

/// A stored record as Lambda's Kinesis event record.
fn kinesis_record(record: &StreamRecord) -> KinesisEventRecord {
    let mut item = KinesisEventRecord::default();
    item.aws_region = Some("local".into());
    item.event_id = Some(format!("{SHARD}:{}", record.sequence));
    item.event_name = Some("aws:kinesis:record".into());
    item.event_source = Some("aws:kinesis".into());
    item.event_source_arn = Some(STREAM_ARN.into());
    item.event_version = Some("1.0".into());
    item.kinesis.partition_key = record.partition_key.clone();
    item.kinesis.sequence_number = record.sequence.to_string();
    item.kinesis.kinesis_schema_version = Some("1.0".into());
    item.kinesis.approximate_arrival_timestamp.0 = record.appended_at;
    *item.kinesis.data = record.data.clone();
    item
}

pub struct EmbeddedQueue {
    db: Database,
    queue: &'static str,
    visibility: Duration,
    changes: watch::Receiver<u64>,
}

impl EmbeddedQueue {
    pub fn new(db: Database, queue: &'static str, visibility: Duration) -> EmbeddedQueue {
        EmbeddedQueue {
            changes: db.queue_changes(),
            db,
            queue,
            visibility,
        }
    }
}

fn receipt_of(message: &SqsMessage) -> Result<i64, StoreError> {
    message
        .receipt_handle
        .as_deref()
        .and_then(|r| r.parse().ok())
        .ok_or_else(|| StoreError::Failed("not a local receipt handle".into()))
}

#[async_trait]
impl QueueSource for EmbeddedQueue {
    async fn receive(&mut self, limit: usize) -> Result<Vec<SqsMessage>, StoreError> {
        self.changes.borrow_and_update();
        let received = self.db.receive(self.queue, limit, self.visibility).await?;
        Ok(received
            .into_iter()
            .map(|message| {
                let mut item = SqsMessage::default();
                item.message_id = Some(message.message_id);
                item.receipt_handle = Some(message.receipt.to_string());
                item.body = Some(message.body);
                item.event_source = Some("aws:sqs".into());
                item.event_source_arn = Some(format!(
                    "arn:aws:sqs:local:000000000000:bakery-{}",
                    self.queue
                ));
                item.aws_region = Some("local".into());
                item.attributes.insert(
                    "ApproximateReceiveCount".into(),
                    message.receive_count.to_string(),
                );
                item.attributes.insert(
                    "SentTimestamp".into(),
                    message.sent_at.timestamp_millis().to_string(),
                );
                item
            })
            .collect())
    }

    /// Deletes the message while the poller receives its next batch: the
    /// message stays invisible until then, and if the delete never lands
    /// it comes again after the visibility timeout, which the steps'
    /// deduplication makes harmless.
    async fn done(&self, message: &SqsMessage) -> Result<(), StoreError> {
        let (db, queue, receipt) = (self.db.clone(), self.queue, receipt_of(message)?);
        tokio::spawn(async move {
            if let Err(error) = db.delete_message(queue, receipt).await {
                tracing::warn!(queue, %error, "cannot delete a finished message; it will come again");
            }
        });
        Ok(())
    }

    async fn failed(
        &self,
        message: &SqsMessage,
        failure: &ItemFailure,
        max_tries: u32,
        retry_after: Duration,
    ) -> Result<bool, StoreError> {
        // A permanent failure is dead-lettered on this receive.
        let max_tries = if failure.permanent {
            super::receive_count(message)
        } else {
            max_tries
        };
        self.db
            .fail_message(
                self.queue,
                receipt_of(message)?,
                &failure.reason,
                max_tries,
                retry_after,
            )
            .await
    }

    async fn wait_for_more(&mut self, stop: &CancellationToken) {
        // Sleep until something is sent, or until the next message that is
        // waiting out a retry delay becomes visible.
        let wake_at = self.db.next_visible_at().await.ok().flatten();
        let until_visible = wake_at
            .and_then(|at| (at - Utc::now()).to_std().ok())
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = self.changes.changed() => {}
            () = tokio::time::sleep(until_visible) => {}
            () = stop.cancelled() => {}
        }
    }
}
