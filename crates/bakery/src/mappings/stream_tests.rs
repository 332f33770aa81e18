//! The stream consumer loop over an in-memory stream: batches in flight at
//! once, an order's records in order, checkpoints in order, and what a
//! failure brings back.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use clap::Parser;
use domain::ports::StoreError;
use futures::FutureExt;
use lambda_kit::batch::{BatchReport, ItemFailure};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::{Handler, StreamSource, run_stream_consumer};
use crate::config::{Cli, Tuning};

/// How long a test waits for something the consumer should do soon.
const DEADLINE: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Stream {
    /// (partition key, sequence number), in order.
    records: Vec<(String, u64)>,
    cursor: u64,
    checkpoint: u64,
    failures: HashMap<u64, u32>,
}

/// A [`StreamSource`] over [`Stream`], shared with the test.
#[derive(Clone, Default)]
struct MemoryStream {
    stream: Arc<Mutex<Stream>>,
    appended: Arc<Notify>,
}

impl MemoryStream {
    fn append(&self, key: &str) -> u64 {
        let mut stream = self.stream.lock().unwrap();
        let sequence = stream.records.len() as u64 + 1;
        stream.records.push((key.to_owned(), sequence));
        drop(stream);
        self.appended.notify_one();
        sequence
    }

    fn checkpoint(&self) -> u64 {
        self.stream.lock().unwrap().checkpoint
    }
}

fn sequence(record: &KinesisEventRecord) -> u64 {
    record.kinesis.sequence_number.parse().unwrap()
}

#[async_trait]
impl StreamSource for MemoryStream {
    async fn read(&mut self, limit: usize) -> Result<Vec<KinesisEventRecord>, StoreError> {
        let stream = self.stream.lock().unwrap();
        let after = stream.cursor.max(stream.checkpoint);
        Ok(stream
            .records
            .iter()
            .filter(|(_, sequence)| *sequence > after)
            .take(limit)
            .map(|(key, sequence)| {
                let mut record = KinesisEventRecord::default();
                record.kinesis.partition_key = key.clone();
                record.kinesis.sequence_number = sequence.to_string();
                record
            })
            .collect())
    }

    fn taken(&mut self, record: &KinesisEventRecord) -> Result<(), StoreError> {
        let mut stream = self.stream.lock().unwrap();
        stream.cursor = stream.cursor.max(sequence(record));
        Ok(())
    }

    fn rewind(&mut self) {
        let mut stream = self.stream.lock().unwrap();
        stream.cursor = stream.checkpoint;
    }

    async fn checkpoint(&mut self, record: &KinesisEventRecord) -> Result<(), StoreError> {
        let mut stream = self.stream.lock().unwrap();
        assert!(
            sequence(record) > stream.checkpoint,
            "checkpoints only move forward"
        );
        stream.checkpoint = sequence(record);
        Ok(())
    }

    async fn record_failure(
        &mut self,
        record: &KinesisEventRecord,
        _reason: &str,
    ) -> Result<u32, StoreError> {
        let mut stream = self.stream.lock().unwrap();
        let count = stream.failures.entry(sequence(record)).or_insert(0);
        *count += 1;
        Ok(*count)
    }

    async fn dead_letter(
        &mut self,
        record: &KinesisEventRecord,
        _reason: &str,
        _attempts: u32,
    ) -> Result<(), StoreError> {
        self.checkpoint(record).await
    }

    async fn wait_for_more(&mut self, stop: &CancellationToken) {
        tokio::select! {
            () = self.appended.notified() => {}
            () = stop.cancelled() => {}
        }
    }
}

/// What the handler saw, and which records it holds or fails.
#[derive(Default)]
struct Steps {
    /// Sequence numbers as they started, and finished.
    started: Vec<u64>,
    finished: Vec<u64>,
    /// Records that wait for their gate to open before they finish.
    gates: HashMap<u64, watch::Receiver<bool>>,
    /// Records that fail once.
    fail_once: HashSet<u64>,
}

fn handler(steps: Arc<Mutex<Steps>>, progress: watch::Sender<usize>) -> Handler<KinesisEvent> {
    let progress = Arc::new(progress);
    Arc::new(move |batch: KinesisEvent| {
        let (steps, progress) = (steps.clone(), progress.clone());
        async move {
            let mut report = BatchReport::default();
            for record in batch.records {
                let sequence = sequence(&record);
                let gate = {
                    let mut steps = steps.lock().unwrap();
                    steps.started.push(sequence);
                    steps.gates.get(&sequence).cloned()
                };
                progress.send_modify(|count| *count += 1);
                if let Some(mut gate) = gate {
                    let _ = gate.wait_for(|open| *open).await;
                }
                let mut steps = steps.lock().unwrap();
                if steps.fail_once.remove(&sequence) {
                    report.failures.push(ItemFailure {
                        item_identifier: record.kinesis.sequence_number.clone(),
                        reason: "transient: failed once".into(),
                        permanent: false,
                    });
                } else {
                    steps.finished.push(sequence);
                }
                drop(steps);
                progress.send_modify(|count| *count += 1);
            }
            report
        }
        .boxed()
    })
}

fn tuning(in_flight: u16) -> Tuning {
    Cli::try_parse_from([
        "bakery",
        "--stream-in-flight",
        &in_flight.to_string(),
        "--retry-delay-ms",
        "1",
    ])
    .unwrap()
    .serve
    .tuning
}

/// Runs a consumer over `stream`; returns its stop token, the handler's
/// record and a counter that moves whenever the handler starts or ends a
/// record.
fn start(
    stream: &MemoryStream,
    in_flight: u16,
) -> (
    CancellationToken,
    Arc<Mutex<Steps>>,
    watch::Receiver<usize>,
    tokio::task::JoinHandle<()>,
) {
    let stop = CancellationToken::new();
    let steps = Arc::new(Mutex::new(Steps::default()));
    let (progress, watcher) = watch::channel(0);
    let consumer = tokio::spawn(run_stream_consumer(
        stream.clone(),
        "test",
        handler(steps.clone(), progress),
        tuning(in_flight),
        stop.clone(),
    ));
    (stop, steps, watcher, consumer)
}

/// Waits until `done` holds of the handler's record, or fails the test.
async fn until(
    steps: &Arc<Mutex<Steps>>,
    progress: &mut watch::Receiver<usize>,
    what: &str,
    done: impl Fn(&Steps) -> bool,
) {
    let waited = tokio::time::timeout(DEADLINE, async {
        loop {
            if done(&steps.lock().unwrap()) {
                return;
            }
            let _ = progress.changed().await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting until {what}");
}

async fn until_started(steps: &Arc<Mutex<Steps>>, progress: &mut watch::Receiver<usize>, n: u64) {
    let what = format!("record {n} started");
    until(steps, progress, &what, |s| s.started.contains(&n)).await;
}

async fn until_finished(steps: &Arc<Mutex<Steps>>, progress: &mut watch::Receiver<usize>, n: u64) {
    let what = format!("record {n} finished");
    until(steps, progress, &what, |s| s.finished.contains(&n)).await;
}

fn gate(steps: &Arc<Mutex<Steps>>, sequence: u64) -> watch::Sender<bool> {
    let (open, gate) = watch::channel(false);
    steps.lock().unwrap().gates.insert(sequence, gate);
    open
}

#[tokio::test]
async fn a_new_record_does_not_wait_for_the_batch_before_it() {
    let stream = MemoryStream::default();
    let (stop, steps, mut progress, consumer) = start(&stream, 4);
    let slow = gate(&steps, 1);
    stream.append("order-a");
    until_started(&steps, &mut progress, 1).await;

    stream.append("order-b");
    until_finished(&steps, &mut progress, 2).await;
    assert!(!steps.lock().unwrap().finished.contains(&1), "1 still runs");
    assert_eq!(stream.checkpoint(), 0, "checkpoints wait for the oldest");

    slow.send(true).unwrap();
    until_finished(&steps, &mut progress, 1).await;
    stop.cancel();
    consumer.await.unwrap();
    assert_eq!(stream.checkpoint(), 2);
}

#[tokio::test]
async fn one_batch_at_a_time_waits_for_the_batch_before_it() {
    let stream = MemoryStream::default();
    let (stop, steps, mut progress, consumer) = start(&stream, 1);
    let slow = gate(&steps, 1);
    stream.append("order-a");
    until_started(&steps, &mut progress, 1).await;
    stream.append("order-b");
    // Give the consumer every chance to (wrongly) start record 2.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(steps.lock().unwrap().started, vec![1]);

    slow.send(true).unwrap();
    until_finished(&steps, &mut progress, 2).await;
    stop.cancel();
    consumer.await.unwrap();
    assert_eq!(stream.checkpoint(), 2);
}

#[tokio::test]
async fn an_orders_records_are_handled_one_after_another() {
    let stream = MemoryStream::default();
    let (stop, steps, mut progress, consumer) = start(&stream, 4);
    let slow = gate(&steps, 1);
    stream.append("order-a");
    until_started(&steps, &mut progress, 1).await;

    // The same order again, then another order behind it.
    stream.append("order-a");
    stream.append("order-b");
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        steps.lock().unwrap().started,
        vec![1],
        "record 2 waits for record 1 of its order, and record 3 for record 2"
    );

    slow.send(true).unwrap();
    until(&steps, &mut progress, "every record finished", |s| {
        s.finished.len() == 3
    })
    .await;
    let started = steps.lock().unwrap().started.clone();
    let position = |sequence| started.iter().position(|s| *s == sequence).unwrap();
    assert!(position(1) < position(2));
    stop.cancel();
    consumer.await.unwrap();
    assert_eq!(stream.checkpoint(), 3);
}

#[tokio::test]
async fn a_failure_checkpoints_before_it_and_the_batches_after_it_come_again() {
    let stream = MemoryStream::default();
    let (stop, steps, mut progress, consumer) = start(&stream, 4);
    let slow = gate(&steps, 1);
    steps.lock().unwrap().fail_once.insert(1);
    stream.append("order-a");
    until_started(&steps, &mut progress, 1).await;
    stream.append("order-b");
    until_finished(&steps, &mut progress, 2).await;

    // Record 1 fails: nothing is checkpointed past it, and record 2, done
    // in a later batch, is handled again after it.
    slow.send(true).unwrap();
    until(
        &steps,
        &mut progress,
        "record 1 finished on its second try",
        |s| s.finished.contains(&1),
    )
    .await;
    until(&steps, &mut progress, "record 2 handled again", |s| {
        s.finished.iter().filter(|s| **s == 2).count() == 2
    })
    .await;
    stop.cancel();
    consumer.await.unwrap();
    assert_eq!(stream.checkpoint(), 2);
    assert_eq!(stream.stream.lock().unwrap().failures.get(&1), Some(&1));
    let finished = steps.lock().unwrap().finished.clone();
    assert_eq!(finished.iter().filter(|s| **s == 1).count(), 1);
}
