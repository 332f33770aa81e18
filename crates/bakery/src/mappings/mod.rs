//! The event source mappings, played locally.
//!
//! On AWS, Lambda polls the Kinesis stream and the SQS queues and hands each
//! function a batch; the function answers with the items that failed
//! (`ReportBatchItemFailures`). Here one task per consumer does the same,
//! with the same `aws_lambda_events` payloads, so the functions cannot tell
//! the difference. The loops are written once, over a [`StreamSource`] or a
//! [`QueueSource`]; [`embedded`] implements them over the SQLite file and
//! [`aws`] over real Kinesis and SQS APIs.
//!
//! - Stream: one checkpoint per consumer. Up to `stream_in_flight` batches
//!   are handled at once (like Lambda's `ParallelizationFactor`): a record
//!   that arrives while a batch is running starts in a batch of its own,
//!   unless a running batch holds a record of the same order, and batches
//!   are settled in the order they were read. A batch that reports failures
//!   checkpoints just before the first failed record, which is then retried
//!   with backoff (later records come again, those of the batches after it
//!   too; the steps are idempotent). After `max_tries` the record goes to
//!   the dead letters with its reason and the consumer moves on, like an
//!   on-failure destination.
//! - Queues: a received message is hidden for the visibility timeout; a
//!   failed one comes back after a backoff, and after `max_tries` receives
//!   it moves to the dead letters.
//! - A failure the step calls permanent (an email SES refuses, a partner
//!   that refuses the call, an item that cannot be read) goes to the dead
//!   letters at once: trying again would spend tries and time on something
//!   that cannot succeed. Its reason starts with `permanent:`, a retried
//!   one's with `transient:`. On SQS the consumer sends such a message to
//!   the queue's dead-letter queue itself, with its reason, and deletes it
//!   (the queue's redrive policy would move it only after `max_tries`
//!   receives, and without a reason).
//!
//! On shutdown a consumer finishes the batch in hand and stops; nothing
//! acknowledged is lost, because only finished work is checkpointed or
//! deleted.

pub mod aws;
pub mod embedded;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use domain::ports::StoreError;
use futures::future::BoxFuture;
use lambda_kit::batch::{BatchReport, ItemFailure, receive_count};
use tokio_util::sync::CancellationToken;

use crate::config::Tuning;

/// A function's handler for one batch.
pub type Handler<E> = Arc<dyn Fn(E) -> BoxFuture<'static, BatchReport> + Send + Sync>;

/// Where a stream consumer reads from, and keeps its place.
///
/// Two places: the read cursor (what was handed out) and the checkpoint
/// (what is done). Reading does not move the cursor; the consumer says how
/// far it took ([`StreamSource::taken`]), since it may take fewer records
/// than it read.
#[async_trait]
pub trait StreamSource: Send + Sync + 'static {
    /// Records after the read cursor, oldest first.
    async fn read(&mut self, limit: usize) -> Result<Vec<KinesisEventRecord>, StoreError>;
    /// The consumer took everything up to and including `record`: the
    /// next read starts after it.
    fn taken(&mut self, record: &KinesisEventRecord) -> Result<(), StoreError>;
    /// The next read starts after the checkpoint again (after a failure,
    /// records taken since come again).
    fn rewind(&mut self);
    /// Everything up to and including `record` is done.
    async fn checkpoint(&mut self, record: &KinesisEventRecord) -> Result<(), StoreError>;
    /// Counts a failed try of `record`; returns the tries so far.
    async fn record_failure(
        &mut self,
        record: &KinesisEventRecord,
        reason: &str,
    ) -> Result<u32, StoreError>;
    /// Gives up on `record`: keeps it with its reason, checkpoints past it.
    async fn dead_letter(
        &mut self,
        record: &KinesisEventRecord,
        reason: &str,
        attempts: u32,
    ) -> Result<(), StoreError>;
    /// Returns when there may be new records (or `stop` is cancelled).
    async fn wait_for_more(&mut self, stop: &CancellationToken);
}

/// A queue a consumer receives from.
#[async_trait]
pub trait QueueSource: Send + Sync + 'static {
    async fn receive(&mut self, limit: usize) -> Result<Vec<SqsMessage>, StoreError>;
    /// The message is done: delete it.
    async fn done(&self, message: &SqsMessage) -> Result<(), StoreError>;
    /// The message failed: retry it after `retry_after`, or dead-letter it
    /// once it was received `max_tries` times, or at once if the failure is
    /// permanent. Returns whether it was (or is sure to be) dead-lettered.
    async fn failed(
        &self,
        message: &SqsMessage,
        failure: &ItemFailure,
        max_tries: u32,
        retry_after: Duration,
    ) -> Result<bool, StoreError>;
    /// Returns when there may be messages (or `stop` is cancelled).
    async fn wait_for_more(&mut self, stop: &CancellationToken);
}

/// A batch of stream records being handled.
struct InFlight {
    records: Vec<KinesisEventRecord>,
    report: tokio::task::JoinHandle<BatchReport>,
}

/// What the handler said of `records`; a handler that panicked failed
/// every record.
fn report_of(
    records: &[KinesisEventRecord],
    joined: Result<BatchReport, tokio::task::JoinError>,
) -> BatchReport {
    joined.unwrap_or_else(|error| BatchReport {
        failures: records
            .iter()
            .map(|record| ItemFailure {
                item_identifier: record.kinesis.sequence_number.clone(),
                reason: format!("transient: the handler failed: {error}"),
                permanent: false,
            })
            .collect(),
    })
}

/// Runs a stream consumer until `stop` is cancelled; finishes the batches
/// in hand before it returns.
pub async fn run_stream_consumer(
    mut source: impl StreamSource,
    consumer: &'static str,
    handler: Handler<KinesisEvent>,
    tuning: Tuning,
    stop: CancellationToken,
) {
    let window = usize::from(tuning.stream_in_flight.max(1));
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    loop {
        let stopping = stop.is_cancelled();
        if stopping && in_flight.is_empty() {
            return;
        }
        // Start a new batch if there is room and something to take.
        let mut held_back = false;
        if !stopping && in_flight.len() < window {
            let records = match source.read(tuning.stream_batch).await {
                Ok(records) => records,
                Err(error) => {
                    tracing::warn!(consumer, %error, "cannot read the stream; retrying");
                    pause(&stop, tuning.retry_delay(1)).await;
                    continue;
                }
            };
            let running: HashSet<&str> = in_flight
                .iter()
                .flat_map(|batch| batch.records.iter())
                .map(|record| record.kinesis.partition_key.as_str())
                .collect();
            // An order's records stay in order: stop at the first record of
            // an order a running batch holds.
            let free = records
                .iter()
                .take_while(|record| !running.contains(record.kinesis.partition_key.as_str()))
                .count();
            held_back = free < records.len();
            if free > 0 {
                let records = records[..free].to_vec();
                if let Err(error) = source.taken(&records[free - 1]) {
                    tracing::error!(consumer, %error, "cannot take stream records");
                    pause(&stop, tuning.retry_delay(1)).await;
                    continue;
                }
                let mut batch = KinesisEvent::default();
                batch.records = records.clone();
                let report = tokio::spawn(handler(batch));
                in_flight.push_back(InFlight { records, report });
                continue;
            }
        }
        // Nothing to start: wait for the oldest batch, or for new records
        // while there is room for them.
        let may_start = !stopping && !held_back && in_flight.len() < window;
        let Some(oldest) = in_flight.front_mut() else {
            source.wait_for_more(&stop).await;
            continue;
        };
        let joined = tokio::select! {
            joined = &mut oldest.report => joined,
            () = source.wait_for_more(&stop), if may_start => continue,
        };
        let Some(InFlight { records, .. }) = in_flight.pop_front() else {
            continue;
        };
        let report = report_of(&records, joined);
        if report.failures.is_empty() {
            if let Some(last) = records.last() {
                if let Err(error) = source.checkpoint(last).await {
                    tracing::warn!(consumer, %error, "cannot checkpoint; later checkpoints will");
                }
            }
            continue;
        }
        // The batches after a failed one come again from the record that
        // failed: let them finish, forget what they did, and read again.
        for later in in_flight.drain(..) {
            // Whatever it did comes again; a panic there shows in the log.
            let _ = later.report.await;
        }
        if let Err(error) =
            settle_stream_batch(&mut source, consumer, &records, &report, &tuning, &stop).await
        {
            tracing::warn!(consumer, %error, "cannot checkpoint; the batch comes again");
            pause(&stop, tuning.retry_delay(1)).await;
        }
        source.rewind();
    }
}

async fn settle_stream_batch(
    source: &mut impl StreamSource,
    consumer: &'static str,
    records: &[KinesisEventRecord],
    report: &BatchReport,
    tuning: &Tuning,
    stop: &CancellationToken,
) -> Result<(), StoreError> {
    let failures: HashMap<&str, &ItemFailure> = report
        .failures
        .iter()
        .map(|f| (f.item_identifier.as_str(), f))
        .collect();
    let first_failed = records
        .iter()
        .position(|r| failures.contains_key(r.kinesis.sequence_number.as_str()));
    let Some(failed_at) = first_failed else {
        if let Some(last) = records.last() {
            source.checkpoint(last).await?;
        }
        return Ok(());
    };
    if failed_at > 0 {
        source.checkpoint(&records[failed_at - 1]).await?;
    }
    let failed = &records[failed_at];
    let sequence = failed.kinesis.sequence_number.as_str();
    let failure = failures.get(sequence);
    let reason = failure.map_or("transient: failed", |f| f.reason.as_str());
    let permanent = failure.is_some_and(|f| f.permanent);
    let attempts = source.record_failure(failed, reason).await?;
    // A permanent failure would fail again: no point spending tries on it.
    if permanent || attempts >= tuning.max_tries {
        tracing::error!(
            consumer,
            sequence,
            attempts,
            reason,
            "stream record dead-lettered"
        );
        source.dead_letter(failed, reason, attempts).await?;
    } else {
        pause(stop, tuning.retry_delay(attempts)).await;
    }
    Ok(())
}

/// Runs a queue consumer until `stop` is cancelled.
pub async fn run_queue_consumer(
    mut source: impl QueueSource,
    queue: &'static str,
    handler: Handler<SqsEvent>,
    tuning: Tuning,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let messages = match source.receive(tuning.queue_batch).await {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(queue, %error, "cannot receive; retrying");
                pause(&stop, tuning.retry_delay(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            source.wait_for_more(&stop).await;
            continue;
        }
        let mut batch = SqsEvent::default();
        batch.records = messages.clone();
        let report = handler(batch).await;
        settle_queue_batch(&source, queue, &messages, &report, &tuning).await;
    }
}

async fn settle_queue_batch(
    source: &impl QueueSource,
    queue: &'static str,
    messages: &[SqsMessage],
    report: &BatchReport,
    tuning: &Tuning,
) {
    let failures: HashMap<&str, &ItemFailure> = report
        .failures
        .iter()
        .map(|f| (f.item_identifier.as_str(), f))
        .collect();
    let failures = &failures;
    // Concurrently, so the database commits them together.
    let settled = messages.iter().map(|message| async move {
        let id = message.message_id.as_deref().unwrap_or("");
        let outcome = match failures.get(id) {
            None => source.done(message).await.map(|()| false),
            Some(failure) => {
                let tries = receive_count(message);
                source
                    .failed(
                        message,
                        failure,
                        tuning.max_tries,
                        tuning.retry_delay(tries),
                    )
                    .await
            }
        };
        match outcome {
            Ok(true) => tracing::error!(
                queue,
                message_id = id,
                attempts = receive_count(message),
                reason = failures.get(id).map_or("", |f| f.reason.as_str()),
                "message dead-lettered"
            ),
            Ok(false) => {}
            // The message stays hidden until its visibility timeout ends and
            // then comes again: at least once.
            Err(error) => tracing::warn!(queue, %error, "cannot settle a message"),
        }
    });
    futures::future::join_all(settled).await;
}

/// Waits out a retry delay, or less if the bakery is stopping.
pub(crate) async fn pause(stop: &CancellationToken, delay: Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = stop.cancelled() => {}
    }
}

#[cfg(test)]
mod stream_tests;
