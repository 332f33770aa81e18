//! [`StreamFailures`]: stream batches a consumer gave up on, kept whole in
//! an S3 bucket until an operator redrives or deletes them.
//!
//! A Kinesis event source mapping whose on-failure destination is an S3
//! bucket writes one object per failed batch: Lambda's on-failure record
//! (`requestContext`, `responseContext`, `KinesisBatchInfo`, `timestamp`)
//! plus `payload`, the invocation event itself with every record's data.
//! An SQS or SNS destination gets only the record's pointer to the shard,
//! and the records behind it expire with the stream's retention (24 hours
//! by default); the object keeps them for as long as the bucket does. The
//! local runner writes the same objects for the consumers it runs
//! ([`on_failure_record`]), so `bakery dlq` reads one format.
//!
//! Keys follow Lambda's
//! `aws/lambda/<mapping or consumer>/<shard>/<yyyy>/<mm>/<dd>/<time>-<id>`,
//! so a listing is oldest first within a consumer and shard.

use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, Utc};
use domain::ports::StoreError;
use serde_json::{Value, json};

use crate::Clients;
use crate::error::store_error;

/// How many stream failures a listing reads at most: more than an
/// operator works through at once; the rest show as the first are dealt
/// with.
pub const LIST_LIMIT: usize = 200;

/// The bucket of failed stream batches.
#[derive(Clone, Debug)]
pub struct StreamFailures {
    s3: aws_sdk_s3::Client,
    bucket: String,
}

/// One kept batch.
#[derive(Clone, Debug)]
pub struct StreamFailure {
    pub key: String,
    /// The object's JSON: Lambda's on-failure record with `payload`.
    pub record: Value,
    pub last_modified: Option<DateTime<Utc>>,
}

impl StreamFailure {
    /// The records of the failed batch, as the consumer was handed them.
    /// `Err` for an object without a readable payload (a pointer-only
    /// record): there is nothing in it to redrive.
    pub fn records(&self) -> Result<Vec<KinesisEventRecord>, StoreError> {
        // Lambda writes the payload as JSON text; accept it as an object too.
        let payload = match &self.record["payload"] {
            Value::String(text) => serde_json::from_str::<Value>(text).ok(),
            Value::Object(_) => Some(self.record["payload"].clone()),
            _ => None,
        };
        let event = payload
            .and_then(|p| serde_json::from_value::<KinesisEvent>(p).ok())
            .ok_or_else(|| {
                StoreError::Failed(format!(
                    "stream failure {} holds no payload with the records",
                    self.key
                ))
            })?;
        Ok(event.records)
    }
}

impl StreamFailures {
    pub fn new(clients: &Clients, bucket: impl Into<String>) -> Self {
        StreamFailures {
            s3: clients.s3(),
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Keeps `record` (see [`on_failure_record`]) under `key`.
    pub async fn keep(&self, key: &str, record: &Value) -> Result<(), StoreError> {
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(record.to_string().into_bytes()))
            .send()
            .await
            .map_err(|e| store_error("PutObject", &e))?;
        Ok(())
    }

    /// Up to [`LIST_LIMIT`] kept batches, in key order.
    pub async fn list(&self) -> Result<Vec<StreamFailure>, StoreError> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(&self.bucket)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| store_error("ListObjectsV2", &e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    let modified = object
                        .last_modified()
                        .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), 0));
                    keys.push((key.to_owned(), modified));
                }
            }
            token = page.next_continuation_token;
            if token.is_none() || keys.len() >= LIST_LIMIT {
                break;
            }
        }
        keys.truncate(LIST_LIMIT);
        let mut failures = Vec::with_capacity(keys.len());
        for (key, modified) in keys {
            if let Some(mut failure) = self.get(&key).await? {
                failure.last_modified = failure.last_modified.or(modified);
                failures.push(failure);
            }
        }
        Ok(failures)
    }

    /// The batch kept under `key`, if there is one. An object that is not
    /// JSON is listed with a `null` record, so the operator sees it.
    pub async fn get(&self, key: &str) -> Result<Option<StreamFailure>, StoreError> {
        let output = match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(error) => return Err(store_error("GetObject", &error)),
        };
        let last_modified = output
            .last_modified()
            .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), 0));
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable(format!("GetObject {key}: {e}")))?
            .into_bytes();
        Ok(Some(StreamFailure {
            key: key.to_owned(),
            record: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            last_modified,
        }))
    }

    /// Forgets the batch kept under `key` (S3 deletes are idempotent).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.s3
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| store_error("DeleteObject", &e))?;
        Ok(())
    }
}

/// What gave up on a batch, and why.
#[derive(Clone, Debug)]
pub struct GaveUp<'a> {
    /// The consumer's function, by name or ARN.
    pub function: &'a str,
    pub stream_arn: &'a str,
    pub shard_id: &'a str,
    pub reason: &'a str,
    pub attempts: u32,
    pub at: DateTime<Utc>,
}

/// The object Lambda writes to an S3 on-failure destination for a failed
/// Kinesis batch, and the key it writes it under.
pub fn on_failure_record(gave_up: &GaveUp<'_>, records: &[KinesisEventRecord]) -> (String, Value) {
    let first = records.first().map(|r| r.kinesis.sequence_number.as_str());
    let last = records.last().map(|r| r.kinesis.sequence_number.as_str());
    let mut payload = KinesisEvent::default();
    payload.records = records.to_vec();
    let record = json!({
        "requestContext": {
            "requestId": request_id(gave_up),
            "functionArn": gave_up.function,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": gave_up.attempts,
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled",
            "reason": gave_up.reason,
        },
        "version": "1.0",
        "timestamp": gave_up.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "KinesisBatchInfo": {
            "shardId": gave_up.shard_id,
            "startSequenceNumber": first,
            "endSequenceNumber": last,
            "batchSize": records.len(),
            "streamArn": gave_up.stream_arn,
        },
        "payload": serde_json::to_string(&payload).unwrap_or_default(),
    });
    let consumer = gave_up
        .function
        .rsplit(':')
        .next()
        .unwrap_or(gave_up.function);
    let key = format!(
        "aws/lambda/{consumer}/{}/{}/{}-{}",
        gave_up.shard_id,
        gave_up.at.format("%Y/%m/%d"),
        gave_up.at.format("%Y-%m-%dT%H.%M.%S%.3f"),
        first.unwrap_or("empty"),
    );
    (key, record)
}

/// A request id for a runner-written record (Lambda's are UUIDs of its
/// invocation): the shard and the time.
fn request_id(gave_up: &GaveUp<'_>) -> String {
    format!("{}-{}", gave_up.shard_id, gave_up.at.timestamp_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sequence: &str, data: &[u8]) -> KinesisEventRecord {
        let mut record = KinesisEventRecord::default();
        record.kinesis.sequence_number = sequence.into();
        record.kinesis.partition_key = "order-1".into();
        *record.kinesis.data = data.to_vec();
        record
    }

    #[test]
    fn the_record_keeps_the_batch_whole_and_gives_it_back() {
        let at = DateTime::parse_from_rfc3339("2026-12-04T10:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let gave_up = GaveUp {
            function: "arn:aws:lambda:eu-west-1:1:function:bakery-dispatch",
            stream_arn: "arn:aws:kinesis:eu-west-1:1:stream/bakery-orders",
            shard_id: "shardId-000000000000",
            reason: "transient: oven on fire",
            attempts: 5,
            at,
        };
        let (key, body) = on_failure_record(&gave_up, &[record("7", b"{\"a\":1}")]);
        assert_eq!(
            key,
            "aws/lambda/bakery-dispatch/shardId-000000000000/2026/12/04/2026-12-04T10.00.00.123-7"
        );
        assert_eq!(body["KinesisBatchInfo"]["startSequenceNumber"], "7");
        assert_eq!(body["requestContext"]["approximateInvokeCount"], 5);
        let kept = StreamFailure {
            key,
            record: body,
            last_modified: None,
        };
        let records = kept.records().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(&*records[0].kinesis.data, b"{\"a\":1}");
        assert_eq!(records[0].kinesis.partition_key, "order-1");
    }

    #[test]
    fn a_pointer_without_payload_has_no_records() {
        let kept = StreamFailure {
            key: "k".into(),
            record: json!({"KinesisBatchInfo": {"shardId": "s"}}),
            last_modified: None,
        };
        assert!(matches!(kept.records(), Err(StoreError::Failed(m)) if m.contains("no payload")));
    }
}
