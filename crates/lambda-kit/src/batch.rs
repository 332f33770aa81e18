//! Running a step over a batch of stream records or queue messages.
//!
//! Lambda hands a consumer a batch; the consumer answers with the items
//! that failed (`ReportBatchItemFailures`), and only those are retried. The
//! helpers here decode each item, run the step on it and collect failures
//! together with the reason, which the local runner keeps for the
//! dead-letter queue and the AWS path logs.
//!
//! Stream records of one order (one partition key) run one after another in
//! sequence order; once one fails, the later records of that order are
//! reported failed too, so an order's events never overtake each other.
//! Different orders run concurrently.
//!
//! A step says why it failed with a [`StepError`]: transient (busy,
//! unreachable: try again later) or permanent (refused for good: an email
//! SES will not send, a partner that refuses the call, an item the step
//! cannot read). The kind travels with the failure ([`ItemFailure`]) to
//! whoever retries: the local runner retries transient failures with
//! backoff and dead-letters permanent ones at once, and every reason starts
//! with its kind, so a dead letter says which it was.

use std::collections::HashMap;
use std::future::Future;

use crate::logs;
use crate::stream_record::{self, Decoded};
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_lambda_events::event::streams::KinesisEventResponse;
use domain::events::{Event, ForOrder, QUEUE_MESSAGE_VERSION};
use domain::ports::{MailError, NotifyError, QueueError, StoreError};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use tracing::{Instrument, Span};

/// How many orders a consumer works on at once within one batch.
pub const CONCURRENCY: usize = 32;

/// Why a step failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepError {
    /// Busy or unreachable now: tried again after a backoff, up to the
    /// consumer's limit of tries.
    Transient(String),
    /// Can never succeed as it is: dead-lettered at once with the reason,
    /// for an operator to look at (and redrive once it can succeed).
    Permanent(String),
}

impl StepError {
    pub fn is_permanent(&self) -> bool {
        matches!(self, StepError::Permanent(_))
    }
}

/// `permanent: <why>` or `transient: <why>`: the reason as a dead letter
/// keeps it.
impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StepError::Transient(why) => write!(f, "transient: {why}"),
            StepError::Permanent(why) => write!(f, "permanent: {why}"),
        }
    }
}

/// The store is ours: whatever went wrong there is worth another try.
impl From<StoreError> for StepError {
    fn from(error: StoreError) -> Self {
        StepError::Transient(error.to_string())
    }
}

impl From<QueueError> for StepError {
    fn from(error: QueueError) -> Self {
        StepError::Transient(error.to_string())
    }
}

impl From<MailError> for StepError {
    fn from(error: MailError) -> Self {
        match error {
            MailError::Unavailable(_) => StepError::Transient(error.to_string()),
            MailError::Rejected(_) => StepError::Permanent(error.to_string()),
        }
    }
}

impl From<NotifyError> for StepError {
    fn from(error: NotifyError) -> Self {
        match error {
            NotifyError::Unavailable(_) => StepError::Transient(error.to_string()),
            NotifyError::Rejected(_) => StepError::Permanent(error.to_string()),
        }
    }
}

/// One item that failed and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFailure {
    /// The Kinesis sequence number or the SQS message id.
    pub item_identifier: String,
    /// Starts with `permanent:` or `transient:`.
    pub reason: String,
    /// Trying again cannot help: dead-letter it now.
    pub permanent: bool,
}

/// What a consumer reports for a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    pub failures: Vec<ItemFailure>,
}

impl BatchReport {
    pub fn kinesis_response(&self) -> KinesisEventResponse {
        let mut response = KinesisEventResponse::default();
        for failure in &self.failures {
            response.add_failure(failure.item_identifier.clone());
        }
        response
    }

    pub fn sqs_response(&self) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for failure in &self.failures {
            response.add_failure(failure.item_identifier.clone());
        }
        response
    }

    /// Records a failed item; it was logged where it failed, in its
    /// order's span ([`log_failure`]).
    fn fail(&mut self, item_identifier: String, error: StepError) {
        let reason = error.to_string();
        self.failures.push(ItemFailure {
            item_identifier,
            reason,
            permanent: error.is_permanent(),
        });
    }
}

/// Logs a failed item, in the current span (its order's, where known).
fn log_failure(item: &str, error: &StepError) {
    tracing::warn!(item, reason = %error, "batch item failed");
}

/// Runs `step` on every order event of a Kinesis batch, each in its
/// order's span ([`crate::logs`]).
pub async fn for_each_event<F, Fut>(batch: KinesisEvent, step: F) -> BatchReport
where
    F: Fn(Event) -> Fut,
    Fut: Future<Output = Result<(), StepError>>,
{
    // Group by order, keeping each order's records in sequence order. The
    // order id, not the partition key: the table feed keys records by the
    // item, not by the order.
    let mut groups: Vec<Vec<(String, Result<Event, StepError>)>> = Vec::new();
    let mut group_of_key: HashMap<String, usize> = HashMap::new();
    for record in batch.records {
        let sequence = record.kinesis.sequence_number.clone();
        let decoded = match stream_record::decode(&record.kinesis.data) {
            Ok(Decoded::Event(event)) => Ok(*event),
            // Filtered out by the event source mapping on AWS; done.
            Ok(Decoded::NotAnEvent) => continue,
            Err(why) => Err(StepError::Permanent(why)),
        };
        let group_key = match &decoded {
            Ok(event) => event.order_id.to_string(),
            Err(_) => record.kinesis.partition_key.clone(),
        };
        let index = *group_of_key.entry(group_key).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[index].push((sequence, decoded));
    }

    let step = &step;
    let failures: Vec<Vec<(String, StepError)>> = futures::stream::iter(groups)
        .map(|group| async move {
            let mut failed = Vec::new();
            let mut earlier_failed = false;
            for (sequence, decoded) in group {
                let span = match &decoded {
                    Ok(event) => logs::order_span(event.order_id, event.correlation_id()),
                    Err(_) => Span::none(),
                };
                let outcome = if earlier_failed {
                    let why = "an earlier record of this order failed".to_owned();
                    Err(StepError::Transient(why))
                } else {
                    match decoded {
                        Ok(event) => step(event).instrument(span.clone()).await,
                        Err(why) => Err(why),
                    }
                };
                if let Err(why) = outcome {
                    span.in_scope(|| log_failure(&sequence, &why));
                    earlier_failed = true;
                    failed.push((sequence, why));
                }
            }
            failed
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;

    let mut report = BatchReport::default();
    for (sequence, reason) in failures.into_iter().flatten() {
        report.fail(sequence, reason);
    }
    report
}

/// A queue message's body as `T`, if it is of a version this code knows
/// ([`QUEUE_MESSAGE_VERSION`]; none written is version 1). A newer one is
/// refused, not misread: a permanent failure, dead-lettered for redrive
/// once the consumer is upgraded.
fn decode_message<T: DeserializeOwned>(body: &str) -> Result<T, StepError> {
    let value: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| StepError::Permanent(format!("message is not the expected JSON: {e}")))?;
    let version = value
        .get("version")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1);
    if version > u64::from(QUEUE_MESSAGE_VERSION) {
        return Err(StepError::Permanent(format!(
            "message version {version} is newer than this consumer's {QUEUE_MESSAGE_VERSION}"
        )));
    }
    serde_json::from_value(value)
        .map_err(|e| StepError::Permanent(format!("message is not the expected JSON: {e}")))
}

/// A message's id, and how its step went.
type MessageOutcome = (Option<String>, Result<(), StepError>);

/// How often SQS has handed `message` out (its `ApproximateReceiveCount`
/// attribute; 1 when it is missing).
pub fn receive_count(message: &SqsMessage) -> u32 {
    message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|count| count.parse().ok())
        .unwrap_or(1)
}

/// Runs `step` on every message of an SQS batch, decoded from JSON as `T`,
/// each in its order's span ([`crate::logs`]).
///
/// Messages with the same body run one after another, the others
/// concurrently. A standard queue may deliver a message twice, and a step
/// that ran again after a restart may have sent its message twice; copies
/// in one batch must not race each other past the step's "already done"
/// check, or the partner hears of it twice.
pub async fn for_each_message<T, F, Fut>(batch: SqsEvent, step: F) -> BatchReport
where
    T: DeserializeOwned + ForOrder,
    F: Fn(T) -> Fut,
    Fut: Future<Output = Result<(), StepError>>,
{
    let mut copies: Vec<Vec<SqsMessage>> = Vec::new();
    let mut group_of_body: HashMap<String, usize> = HashMap::new();
    for message in batch.records {
        let body = message.body.clone().unwrap_or_default();
        let index = *group_of_body.entry(body).or_insert_with(|| {
            copies.push(Vec::new());
            copies.len() - 1
        });
        copies[index].push(message);
    }

    let step = &step;
    let outcomes: Vec<Vec<MessageOutcome>> = futures::stream::iter(copies)
        .map(|group| async move {
            let mut outcomes = Vec::with_capacity(group.len());
            for message in group {
                let decoded = decode_message::<T>(message.body.as_deref().unwrap_or(""));
                let span = match &decoded {
                    Ok(body) => logs::order_span(body.order_id(), body.correlation_id()),
                    Err(_) => Span::none(),
                };
                let outcome = match decoded {
                    Ok(body) => step(body).instrument(span.clone()).await,
                    Err(why) => Err(why),
                };
                if let Err(why) = &outcome {
                    let id = message.message_id.as_deref().unwrap_or("(no id)");
                    span.in_scope(|| log_failure(id, why));
                }
                outcomes.push((message.message_id, outcome));
            }
            outcomes
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;

    let mut report = BatchReport::default();
    for (message_id, outcome) in outcomes.into_iter().flatten() {
        match (message_id, outcome) {
            (_, Ok(())) => {}
            (Some(id), Err(why)) => report.fail(id, why),
            // Without an id the message cannot be reported; SQS keeps it
            // only if the whole batch fails, which would redo the others.
            (None, Err(why)) => tracing::error!(reason = %why, "failed message has no id"),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::kinesis::KinesisEventRecord;
    use std::sync::Mutex;

    fn order_event(order: u128) -> Vec<u8> {
        let json = serde_json::json!({
            "eventId": uuid::Uuid::from_u128(order + 1000),
            "eventType": "order_placed",
            "orderId": uuid::Uuid::from_u128(order),
            "occurredAt": "2026-11-24T10:00:00Z",
            "order": {
                "orderId": uuid::Uuid::from_u128(order), "status": "placed", "name": "A",
                "address": "B", "productId": "p", "productName": "P", "quantity": 1,
                "unitPriceCents": 1, "totalCents": 1, "currency": "EUR",
                "timeline": [{"step": "placed", "at": "2026-11-24T10:00:00Z"}]
            }
        });
        serde_json::to_vec(&json).unwrap()
    }

    fn kinesis(records: &[(u128, &str, Vec<u8>)]) -> KinesisEvent {
        let mut event = KinesisEvent::default();
        for (order, sequence, data) in records {
            let mut record = KinesisEventRecord::default();
            record.kinesis.partition_key = uuid::Uuid::from_u128(*order).to_string();
            record.kinesis.sequence_number = sequence.to_string();
            *record.kinesis.data = data.clone();
            event.records.push(record);
        }
        event
    }

    /// `event` as the order table's feed puts it on the stream: the
    /// change record of a new event item.
    fn change_record(event_name: &str, pk: &str, event: &[u8]) -> Vec<u8> {
        let json = serde_json::json!({
            "eventName": event_name,
            "eventSource": "aws:dynamodb",
            "dynamodb": {
                "Keys": {"pk": {"S": pk}},
                "NewImage": {"pk": {"S": pk}, "event": {"S": String::from_utf8_lossy(event)}}
            }
        });
        serde_json::to_vec(&json).unwrap()
    }

    #[test]
    fn queue_messages_of_the_previous_form_and_this_version_are_read_newer_refused() {
        use domain::events::DeliveryRequest;
        let order = domain::memory::placed_order();
        let now = chrono::Utc::now();
        let current = serde_json::to_value(DeliveryRequest::for_order(&order, now)).unwrap();
        assert_eq!(current["version"], QUEUE_MESSAGE_VERSION);
        // Written before messages carried a version.
        let mut previous = current.clone();
        previous.as_object_mut().unwrap().remove("version");
        let read: DeliveryRequest = decode_message(&previous.to_string()).unwrap();
        assert_eq!(read.version, 1);
        assert_eq!(read.order_id, order.order_id);
        let read: DeliveryRequest = decode_message(&current.to_string()).unwrap();
        assert_eq!(read, DeliveryRequest::for_order(&order, now));
        let mut newer = current;
        newer["version"] = serde_json::json!(QUEUE_MESSAGE_VERSION + 1);
        let refused = decode_message::<DeliveryRequest>(&newer.to_string()).unwrap_err();
        assert!(refused.is_permanent());
        assert!(
            refused.to_string().contains("newer than this consumer"),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn change_records_of_event_items_are_events_and_other_changes_are_skipped() {
        let batch = kinesis(&[
            (9, "1", change_record("INSERT", "order#9", &order_event(9))),
            (9, "2", change_record("INSERT", "event#9", &order_event(9))),
            (9, "3", change_record("MODIFY", "event#9", &order_event(9))),
            (8, "4", order_event(8)),
        ]);
        let seen = Mutex::new(Vec::new());
        let report = for_each_event(batch, |event| {
            let seen = &seen;
            async move {
                seen.lock().unwrap().push(event.order_id.0.as_u128());
                Ok(())
            }
        })
        .await;
        assert!(report.failures.is_empty(), "{:?}", report.failures);
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, vec![8, 9], "one event each, the rest skipped");
    }

    #[tokio::test]
    async fn failures_are_reported_by_sequence_number_and_block_the_same_order() {
        let batch = kinesis(&[
            (1, "1", order_event(1)),
            (2, "2", order_event(2)),
            (1, "3", order_event(1)),
            (3, "4", b"garbage".to_vec()),
        ]);
        let seen = Mutex::new(Vec::new());
        let report = for_each_event(batch, |event| {
            let seen = &seen;
            async move {
                seen.lock().unwrap().push(event.order_id.0.as_u128());
                if event.order_id.0.as_u128() == 1 {
                    Err(StepError::Transient("oven on fire".to_string()))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        let mut failed: Vec<(String, String)> = report
            .failures
            .iter()
            .map(|f| (f.item_identifier.clone(), f.reason.clone()))
            .collect();
        failed.sort();
        assert_eq!(failed[0], ("1".into(), "transient: oven on fire".into()));
        assert_eq!(failed[1].0, "3");
        assert!(failed[1].1.starts_with("transient: an earlier record"));
        assert_eq!(failed[2].0, "4");
        assert!(
            failed[2]
                .1
                .starts_with("permanent: record is not an order event")
        );
        assert_eq!(failed.len(), 3);
        let permanent: Vec<&str> = report
            .failures
            .iter()
            .filter(|f| f.permanent)
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(
            permanent,
            ["4"],
            "only the unreadable record cannot succeed"
        );
        // Order 1's second record never ran: its first one failed.
        let mut seen = seen.into_inner().unwrap();
        seen.sort();
        assert_eq!(seen, vec![1, 2]);
        let response = report.kinesis_response();
        assert_eq!(response.batch_item_failures.len(), 3);
    }

    /// An SQS batch of (message id, body).
    fn sqs(messages: &[(&str, &str)]) -> SqsEvent {
        let mut batch = SqsEvent::default();
        for (id, body) in messages {
            let mut message = SqsMessage::default();
            message.message_id = Some((*id).into());
            message.body = Some((*body).into());
            batch.records.push(message);
        }
        batch
    }

    #[derive(serde::Deserialize)]
    struct Body {
        n: u32,
    }

    impl ForOrder for Body {
        fn order_id(&self) -> domain::OrderId {
            domain::OrderId(uuid::Uuid::from_u128(u128::from(self.n)))
        }
        fn correlation_id(&self) -> Option<&str> {
            None
        }
    }

    #[tokio::test]
    async fn sqs_failures_are_reported_by_message_id() {
        let batch = sqs(&[("m1", r#"{"n":1}"#), ("m2", r#"{"n":2}"#), ("m3", "nope")]);
        let report = for_each_message(batch, |body: Body| async move {
            if body.n == 2 {
                Err(StepError::from(NotifyError::Unavailable(
                    "partner down".into(),
                )))
            } else {
                Ok(())
            }
        })
        .await;
        let mut ids: Vec<&str> = report
            .failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        ids.sort();
        assert_eq!(ids, vec!["m2", "m3"]);
        for failure in &report.failures {
            assert_eq!(
                failure.permanent,
                failure.item_identifier == "m3",
                "{failure:?}"
            );
        }
        let json = serde_json::to_value(report.sqs_response()).unwrap();
        assert_eq!(json["batchItemFailures"].as_array().unwrap().len(), 2);
        assert!(json["batchItemFailures"][0]["itemIdentifier"].is_string());
    }

    #[test]
    fn refusals_are_permanent_and_unavailability_transient() {
        let permanent = [
            StepError::from(MailError::Rejected("address not verified".into())),
            StepError::from(NotifyError::Rejected("HTTP 400".into())),
        ];
        let transient = [
            StepError::from(MailError::Unavailable("throttled".into())),
            StepError::from(NotifyError::Unavailable("HTTP 503".into())),
            StepError::from(StoreError::Unavailable("locked".into())),
            StepError::from(StoreError::Failed("corrupt".into())),
            StepError::from(QueueError::Unavailable("down".into())),
        ];
        for error in permanent {
            assert!(error.is_permanent());
            assert!(error.to_string().starts_with("permanent: "), "{error}");
        }
        for error in transient {
            assert!(!error.is_permanent());
            assert!(error.to_string().starts_with("transient: "), "{error}");
        }
    }

    #[tokio::test]
    async fn copies_of_a_message_in_one_batch_run_one_after_another() {
        let batch = sqs(&[
            ("a", r#"{"n":1}"#),
            ("b", r#"{"n":2}"#),
            ("c", r#"{"n":1}"#),
        ]);
        // A step with an "already done" check that a concurrent copy would
        // pass too: it yields between the check and the record.
        let done = Mutex::new(Vec::new());
        let calls = Mutex::new(Vec::new());
        let report = for_each_message(batch, |body: Body| {
            let (done, calls) = (&done, &calls);
            async move {
                if done.lock().unwrap().contains(&body.n) {
                    return Ok(());
                }
                tokio::task::yield_now().await;
                calls.lock().unwrap().push(body.n);
                done.lock().unwrap().push(body.n);
                Ok(())
            }
        })
        .await;
        assert!(report.failures.is_empty());
        let mut calls = calls.into_inner().unwrap();
        calls.sort();
        assert_eq!(calls, vec![1, 2], "the copy of 1 found it done");
    }
}
