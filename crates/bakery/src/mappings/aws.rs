//! Kinesis and SQS, read through their real APIs, as event sources: what
//! Lambda's pollers do, played by the local runner against AWS or an
//! emulator.
//!
//! The stream position and failure counts live in memory: after a restart
//! the consumer reads the stream from the oldest record kept again, which
//! the steps' deduplication makes harmless. A record given up on is kept
//! whole in the stream-failures bucket, as an S3 on-failure destination
//! keeps it ([`aws_adapters::stream_failures`]). Queue retries and dead
//! letters are SQS's own: a failed message's visibility is set to the
//! backoff, and the queue's redrive policy moves it to its dead-letter
//! queue.
//!
//! [`TableFeeder`] plays the table's feed of the stream where the service
//! cannot ([`aws_adapters::table_feed`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use aws_adapters::stream_failures::{GaveUp, StreamFailures, on_failure_record};
use aws_adapters::table_feed::TableFeed;
use aws_adapters::{Clients, KinesisReader, SqsReader};
use aws_lambda_events::event::kinesis::KinesisEventRecord;
use aws_lambda_events::event::sqs::SqsMessage;
use domain::ports::StoreError;
use lambda_kit::batch::ItemFailure;
use tokio_util::sync::CancellationToken;

use super::{QueueSource, StreamSource, pause};

pub struct KinesisStream {
    reader: KinesisReader,
    consumer: &'static str,
    shards: Vec<String>,
    /// Which shard the next read takes, so every shard gets its turn.
    next_shard: usize,
    /// Per shard, the last record checkpointed.
    positions: HashMap<String, String>,
    /// Per shard, the last record taken: reads go on from here.
    cursors: HashMap<String, String>,
    failures: HashMap<String, u32>,
    kept: StreamFailures,
    poll: Duration,
}

impl KinesisStream {
    pub async fn open(
        clients: &Clients,
        stream: &str,
        consumer: &'static str,
        failures_bucket: &str,
        poll: Duration,
    ) -> Result<KinesisStream, StoreError> {
        let reader = KinesisReader::open(clients, stream).await?;
        let shards = reader.shards().await?;
        Ok(KinesisStream {
            reader,
            consumer,
            shards,
            next_shard: 0,
            positions: HashMap::new(),
            cursors: HashMap::new(),
            failures: HashMap::new(),
            kept: StreamFailures::new(clients, failures_bucket),
            poll,
        })
    }
}

/// The shard of a record, from its `shardId:sequence` event id.
fn shard_of(record: &KinesisEventRecord) -> Result<&str, StoreError> {
    record
        .event_id
        .as_deref()
        .and_then(|id| id.rsplit_once(':'))
        .map(|(shard, _)| shard)
        .ok_or_else(|| StoreError::Failed("record without a shard in its event id".into()))
}

#[async_trait]
impl StreamSource for KinesisStream {
    async fn read(&mut self, limit: usize) -> Result<Vec<KinesisEventRecord>, StoreError> {
        for _ in 0..self.shards.len() {
            let shard = self.shards[self.next_shard % self.shards.len()].clone();
            self.next_shard = self.next_shard.wrapping_add(1);
            let after = self
                .cursors
                .get(&shard)
                .or_else(|| self.positions.get(&shard))
                .cloned();
            let records = self.reader.read(&shard, after, limit).await?;
            if !records.is_empty() {
                return Ok(records);
            }
        }
        Ok(Vec::new())
    }

    fn taken(&mut self, record: &KinesisEventRecord) -> Result<(), StoreError> {
        let shard = shard_of(record)?.to_string();
        self.cursors
            .insert(shard, record.kinesis.sequence_number.clone());
        Ok(())
    }

    fn rewind(&mut self) {
        self.cursors.clone_from(&self.positions);
    }

    async fn checkpoint(&mut self, record: &KinesisEventRecord) -> Result<(), StoreError> {
        let shard = shard_of(record)?.to_string();
        self.positions
            .insert(shard, record.kinesis.sequence_number.clone());
        Ok(())
    }

    async fn record_failure(
        &mut self,
        record: &KinesisEventRecord,
        _reason: &str,
    ) -> Result<u32, StoreError> {
        let count = self
            .failures
            .entry(record.kinesis.sequence_number.clone())
            .or_insert(0);
        *count += 1;
        Ok(*count)
    }

    async fn dead_letter(
        &mut self,
        record: &KinesisEventRecord,
        reason: &str,
        attempts: u32,
    ) -> Result<(), StoreError> {
        // What Lambda writes to an S3 on-failure destination: the record
        // itself, not only where it was.
        let (key, body) = on_failure_record(
            &GaveUp {
                function: self.consumer,
                stream_arn: self.reader.stream_arn(),
                shard_id: shard_of(record)?,
                reason,
                attempts,
                at: chrono::Utc::now(),
            },
            std::slice::from_ref(record),
        );
        self.kept.keep(&key, &body).await?;
        let sequence = &record.kinesis.sequence_number;
        self.failures.remove(sequence);
        self.checkpoint(record).await
    }

    async fn wait_for_more(&mut self, stop: &CancellationToken) {
        pause(stop, self.poll).await;
    }
}

/// The table's feed of the stream, run until `stop`, keeping its position
/// in a file so that a restart goes on where it stopped.
pub struct TableFeeder {
    feed: TableFeed,
    poll: Duration,
    /// `{"sourceArn": …, "forwarded": {shard: sequence number}}`.
    position_file: PathBuf,
}

impl TableFeeder {
    pub async fn open(
        clients: &Clients,
        table: &str,
        stream: &str,
        poll: Duration,
        position_file: PathBuf,
    ) -> Result<TableFeeder, StoreError> {
        let mut feed = TableFeed::open(clients, table, stream).await?;
        // A position of another DynamoDB stream (the table made again) is
        // no position: start from the oldest change kept.
        if let Some(forwarded) = std::fs::read(&position_file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .filter(|saved| saved["sourceArn"] == feed.source_arn())
            .and_then(|saved| serde_json::from_value(saved["forwarded"].clone()).ok())
        {
            feed.resume_after(forwarded);
        }
        Ok(TableFeeder {
            feed,
            poll,
            position_file,
        })
    }

    /// Forwards the table's changes until `stop`, pausing when there are
    /// none and after a failure (logged; the changes wait for the next
    /// round).
    pub async fn run(mut self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            match self.feed.forward().await {
                Ok(0) => pause(&stop, self.poll).await,
                Ok(changes) => {
                    tracing::debug!(changes, "the table's changes put on the stream");
                    self.keep_position();
                }
                Err(error) => {
                    tracing::warn!(%error, "the table's changes could not reach the stream; trying again");
                    pause(&stop, self.poll).await;
                }
            }
        }
    }

    /// Writes the position (to a new file, renamed over the old one). A
    /// position not kept only means changes forwarded again.
    fn keep_position(&self) {
        let saved = serde_json::json!({
            "sourceArn": self.feed.source_arn(),
            "forwarded": self.feed.forwarded(),
        });
        let next = self.position_file.with_extension("json.next");
        let written = std::fs::write(&next, saved.to_string())
            .and_then(|()| std::fs::rename(&next, &self.position_file));
        if let Err(error) = written {
            tracing::warn!(%error, file = %self.position_file.display(), "could not keep the table feed's position");
        }
    }
}

pub struct SqsQueueSource {
    reader: SqsReader,
    url: String,
    /// Where a message that can never succeed is sent at once.
    dead_letter_url: String,
    visibility_secs: u32,
    poll: Duration,
}

impl SqsQueueSource {
    pub fn new(
        clients: &Clients,
        url: String,
        dead_letter_url: String,
        visibility: Duration,
        poll: Duration,
    ) -> Self {
        SqsQueueSource {
            reader: SqsReader::new(clients),
            url,
            dead_letter_url,
            visibility_secs: u32::try_from(visibility.as_secs()).unwrap_or(u32::MAX),
            poll,
        }
    }
}

fn receipt_of(message: &SqsMessage) -> Result<&str, StoreError> {
    message
        .receipt_handle
        .as_deref()
        .ok_or_else(|| StoreError::Failed("message without a receipt handle".into()))
}

#[async_trait]
impl QueueSource for SqsQueueSource {
    async fn receive(&mut self, limit: usize) -> Result<Vec<SqsMessage>, StoreError> {
        self.reader
            .receive(&self.url, limit, 0, self.visibility_secs)
            .await
    }

    async fn done(&self, message: &SqsMessage) -> Result<(), StoreError> {
        self.reader.delete(&self.url, receipt_of(message)?).await
    }

    async fn failed(
        &self,
        message: &SqsMessage,
        failure: &ItemFailure,
        max_tries: u32,
        retry_after: Duration,
    ) -> Result<bool, StoreError> {
        if failure.permanent {
            // The redrive policy would move it only after `max_tries`
            // receives, and without a reason: move it now, with one.
            self.reader
                .send_copy(
                    &self.dead_letter_url,
                    message,
                    Some((&failure.reason, super::receive_count(message))),
                )
                .await?;
            self.reader.delete(&self.url, receipt_of(message)?).await?;
            return Ok(true);
        }
        let seconds = u32::try_from(retry_after.as_secs_f64().ceil() as u64).unwrap_or(u32::MAX);
        self.reader
            .change_visibility(&self.url, receipt_of(message)?, seconds)
            .await?;
        // The redrive policy moves it on its next receive.
        Ok(super::receive_count(message) >= max_tries)
    }

    async fn wait_for_more(&mut self, stop: &CancellationToken) {
        pause(stop, self.poll).await;
    }
}
