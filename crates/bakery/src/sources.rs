//! Where the four consumers' batches come from: the embedded stream and
//! queues, or Kinesis and SQS (with the table feed that puts DynamoDB's
//! changes on the stream when the runner plays Lambda's part).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use embedded::Database;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::aws::Resources;
use crate::config::Tuning;
use crate::mappings::aws::{KinesisStream, SqsQueueSource, TableFeeder};
use crate::mappings::embedded::{EmbeddedQueue, EmbeddedStream};
use crate::mappings::{Handler, run_queue_consumer, run_stream_consumer};
use crate::names;

/// Where the consumers' batches come from.
pub(crate) enum Sources {
    Embedded(Database),
    Aws {
        resources: Box<Resources>,
        poll: Duration,
        /// Where the table feed keeps its position.
        data_dir: PathBuf,
    },
}

impl Sources {
    /// Starts the stream consumers (notify-baker, dispatch) and the queue
    /// consumers (delivery, feedback).
    pub(crate) async fn spawn(
        &self,
        [notify_baker, dispatch]: [Handler<KinesisEvent>; 2],
        [notify_delivery, feedback]: [Handler<SqsEvent>; 2],
        tuning: Tuning,
        stop: &CancellationToken,
    ) -> Result<Vec<JoinHandle<()>>> {
        let visibility = tuning.visibility_timeout();
        Ok(match self {
            Sources::Embedded(db) => {
                let mut workers = vec![
                    tokio::spawn(run_stream_consumer(
                        EmbeddedStream::new(db.clone(), names::NOTIFY_BAKER),
                        names::NOTIFY_BAKER,
                        notify_baker,
                        tuning.clone(),
                        stop.clone(),
                    )),
                    tokio::spawn(run_stream_consumer(
                        EmbeddedStream::new(db.clone(), names::DISPATCH),
                        names::DISPATCH,
                        dispatch,
                        tuning.clone(),
                        stop.clone(),
                    )),
                ];
                for (queue, handler) in [
                    (names::DELIVERY_QUEUE, notify_delivery),
                    (names::FEEDBACK_QUEUE, feedback),
                ] {
                    for _ in 0..tuning.queue_pollers {
                        workers.push(tokio::spawn(run_queue_consumer(
                            EmbeddedQueue::new(db.clone(), queue, visibility),
                            queue,
                            handler.clone(),
                            tuning.clone(),
                            stop.clone(),
                        )));
                    }
                }
                workers
            }
            Sources::Aws {
                resources,
                poll,
                data_dir,
            } => {
                let kinesis = |name| {
                    KinesisStream::open(
                        &resources.clients,
                        &resources.stream,
                        name,
                        &resources.stream_failures_bucket,
                        *poll,
                    )
                };
                let sqs = |url: &String, dead_letter_url: &String| {
                    SqsQueueSource::new(
                        &resources.clients,
                        url.clone(),
                        dead_letter_url.clone(),
                        visibility,
                        *poll,
                    )
                };
                let mut workers = Vec::new();
                if resources.feeds_stream {
                    let feeder = TableFeeder::open(
                        &resources.clients,
                        &resources.table,
                        &resources.stream,
                        *poll,
                        data_dir.join(names::TABLE_FEED_POSITION),
                    )
                    .await?;
                    workers.push(tokio::spawn(feeder.run(stop.clone())));
                }
                workers.extend([
                    tokio::spawn(run_stream_consumer(
                        kinesis(names::NOTIFY_BAKER).await?,
                        names::NOTIFY_BAKER,
                        notify_baker,
                        tuning.clone(),
                        stop.clone(),
                    )),
                    tokio::spawn(run_stream_consumer(
                        kinesis(names::DISPATCH).await?,
                        names::DISPATCH,
                        dispatch,
                        tuning.clone(),
                        stop.clone(),
                    )),
                    tokio::spawn(run_queue_consumer(
                        sqs(&resources.delivery_queue_url, &resources.delivery_dlq_url),
                        names::DELIVERY_QUEUE,
                        notify_delivery,
                        tuning.clone(),
                        stop.clone(),
                    )),
                    tokio::spawn(run_queue_consumer(
                        sqs(&resources.feedback_queue_url, &resources.feedback_dlq_url),
                        names::FEEDBACK_QUEUE,
                        feedback,
                        tuning.clone(),
                        stop.clone(),
                    )),
                ]);
                workers
            }
        })
    }
}
