//! The event source mappings, played locally.
//!
//! On AWS, Lambda polls the Kinesis stream and the SQS queues and hands each
//! function a batch; the function answers with the items that failed
//! (`ReportBatchItemFailures`). Here one task per consumer does the same
//! against the embedded stream and queues, with the same `aws_lambda_events`
//! payloads, so the functions cannot tell the difference.
//!
//! - Stream: one shard, one checkpoint per consumer. A batch that reports
//!   failures checkpoints just before the first failed record, which is
//!   then retried with backoff (later records come again; the steps are
//!   idempotent). After `max_tries` the record goes to the dead letters with
//!   its reason and the consumer moves on, like an on-failure destination.
//! - Queues: a received message is hidden for the visibility timeout; a
//!   failed one comes back after a backoff, and after `max_tries` receives
//!   it moves to the dead letters.
//!
//! Consumers wake on the database's change counter the moment something is
//! appended or sent, so there is no polling delay. On shutdown a consumer
//! finishes the batch in hand and stops; nothing acknowledged is lost,
//! because only finished work is checkpointed or deleted.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use chrono::Utc;
use embedded::{Database, ReceivedMessage, StreamRecord};
use futures::future::BoxFuture;
use lambda_kit::batch::BatchReport;
use tokio_util::sync::CancellationToken;

use crate::config::Tuning;

/// A function's handler for one batch.
pub type Handler<E> = Arc<dyn Fn(E) -> BoxFuture<'static, BatchReport> + Send + Sync>;

const SHARD: &str = "shardId-000000000000";
const STREAM_ARN: &str = "arn:aws:kinesis:local:000000000000:stream/bakery-orders";

/// Runs a stream consumer until `stop` is cancelled.
pub async fn run_stream_consumer(
    db: Database,
    consumer: &'static str,
    handler: Handler<KinesisEvent>,
    tuning: Tuning,
    stop: CancellationToken,
) {
    let mut changes = db.changes();
    while !stop.is_cancelled() {
        // Mark the current state seen before reading, so an append that
        // lands after the read wakes the wait below.
        changes.borrow_and_update();
        let records = match db.read_stream(consumer, tuning.stream_batch).await {
            Ok(records) => records,
            Err(error) => {
                tracing::warn!(consumer, %error, "cannot read the stream; retrying");
                pause(&stop, tuning.retry_delay(1)).await;
                continue;
            }
        };
        if records.is_empty() {
            tokio::select! {
                _ = changes.changed() => {}
                () = stop.cancelled() => {}
            }
            continue;
        }
        let report = handler(kinesis_event(&records)).await;
        if let Err(error) =
            settle_stream_batch(&db, consumer, &records, &report, &tuning, &stop).await
        {
            tracing::warn!(consumer, %error, "cannot checkpoint; the batch comes again");
            pause(&stop, tuning.retry_delay(1)).await;
        }
    }
}

async fn settle_stream_batch(
    db: &Database,
    consumer: &'static str,
    records: &[StreamRecord],
    report: &BatchReport,
    tuning: &Tuning,
    stop: &CancellationToken,
) -> Result<(), domain::ports::StoreError> {
    let reasons: HashMap<&str, &str> = report
        .failures
        .iter()
        .map(|f| (f.item_identifier.as_str(), f.reason.as_str()))
        .collect();
    let first_failed = records
        .iter()
        .find(|r| reasons.contains_key(r.sequence.to_string().as_str()));
    let Some(failed) = first_failed else {
        if let Some(last) = records.last() {
            db.checkpoint(consumer, last.sequence).await?;
        }
        return Ok(());
    };
    if let Some(done) = records
        .iter()
        .take_while(|r| r.sequence < failed.sequence)
        .last()
    {
        db.checkpoint(consumer, done.sequence).await?;
    }
    let reason = reasons
        .get(failed.sequence.to_string().as_str())
        .copied()
        .unwrap_or("failed");
    let attempts = db
        .record_stream_failure(consumer, failed.sequence, reason)
        .await?;
    if attempts >= tuning.max_tries {
        tracing::error!(
            consumer,
            sequence = failed.sequence,
            attempts,
            reason,
            "stream record dead-lettered"
        );
        db.dead_letter_stream_record(consumer, failed, reason, attempts)
            .await?;
    } else {
        pause(stop, tuning.retry_delay(attempts)).await;
    }
    Ok(())
}

/// The records as Lambda's Kinesis event.
fn kinesis_event(records: &[StreamRecord]) -> KinesisEvent {
    let mut event = KinesisEvent::default();
    for record in records {
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
        event.records.push(item);
    }
    event
}

/// Runs a queue consumer until `stop` is cancelled.
pub async fn run_queue_consumer(
    db: Database,
    queue: &'static str,
    handler: Handler<SqsEvent>,
    tuning: Tuning,
    stop: CancellationToken,
) {
    let mut changes = db.changes();
    while !stop.is_cancelled() {
        changes.borrow_and_update();
        let messages = match db
            .receive(queue, tuning.queue_batch, tuning.visibility_timeout())
            .await
        {
            Ok(messages) => messages,
            Err(error) => {
                tracing::warn!(queue, %error, "cannot receive; retrying");
                pause(&stop, tuning.retry_delay(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            // Sleep until something is sent, or until the next message that
            // is waiting out a retry delay becomes visible.
            let wake_at = db.next_visible_at().await.ok().flatten();
            let until_visible = wake_at
                .and_then(|at| (at - Utc::now()).to_std().ok())
                .unwrap_or(std::time::Duration::from_secs(3600));
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep(until_visible) => {}
                () = stop.cancelled() => {}
            }
            continue;
        }
        let report = handler(sqs_event(queue, &messages)).await;
        settle_queue_batch(&db, queue, &messages, &report, &tuning).await;
    }
}

async fn settle_queue_batch(
    db: &Database,
    queue: &'static str,
    messages: &[ReceivedMessage],
    report: &BatchReport,
    tuning: &Tuning,
) {
    let reasons: HashMap<&str, &str> = report
        .failures
        .iter()
        .map(|f| (f.item_identifier.as_str(), f.reason.as_str()))
        .collect();
    let reasons = &reasons;
    // Concurrently, so the database commits them together.
    let settled = messages.iter().map(|message| async move {
        let outcome = match reasons.get(message.message_id.as_str()) {
            None => db
                .delete_message(queue, message.receipt)
                .await
                .map(|()| false),
            Some(reason) => {
                db.fail_message(
                    queue,
                    message.receipt,
                    reason,
                    tuning.max_tries,
                    tuning.retry_delay(message.receive_count),
                )
                .await
            }
        };
        match outcome {
            Ok(true) => tracing::error!(
                queue,
                message_id = %message.message_id,
                attempts = message.receive_count,
                reason = reasons.get(message.message_id.as_str()).copied().unwrap_or(""),
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

/// The messages as Lambda's SQS event.
fn sqs_event(queue: &str, messages: &[ReceivedMessage]) -> SqsEvent {
    let mut event = SqsEvent::default();
    for message in messages {
        let mut item = SqsMessage::default();
        item.message_id = Some(message.message_id.clone());
        item.receipt_handle = Some(message.receipt.to_string());
        item.body = Some(message.body.clone());
        item.event_source = Some("aws:sqs".into());
        item.event_source_arn = Some(format!("arn:aws:sqs:local:000000000000:bakery-{queue}"));
        item.aws_region = Some("local".into());
        item.attributes.insert(
            "ApproximateReceiveCount".into(),
            message.receive_count.to_string(),
        );
        item.attributes.insert(
            "SentTimestamp".into(),
            message.sent_at.timestamp_millis().to_string(),
        );
        event.records.push(item);
    }
    event
}

/// Waits out a retry delay, or less if the bakery is stopping.
async fn pause(stop: &CancellationToken, delay: std::time::Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = stop.cancelled() => {}
    }
}
