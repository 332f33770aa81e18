//! [`TableFeed`]: the order table feeding the order stream, for where the
//! service does not do it.
//!
//! Deployed, the table feeds the Kinesis stream itself: both templates
//! turn on Kinesis Data Streams for DynamoDB (`KinesisStreamSpecification`),
//! and DynamoDB puts a change record of every write on the stream. An
//! emulator may not have that feature (moto has not), so the local runner
//! plays it: it reads the table's DynamoDB stream and puts each change on
//! the Kinesis stream in the shape DynamoDB gives it there, the way it
//! plays Lambda's event source mappings. Consumers cannot tell the
//! difference, and the step that wrote the table is done either way.
//!
//! The feed is at least once: a put that fails is tried again from the
//! last record forwarded, and a feed that stops between a put and keeping
//! its position ([`TableFeed::forwarded`], which the runner keeps in its
//! data directory) forwards those changes again; the consumers skip event
//! ids they have handled. Records of one item keep their order, as they
//! do in the service; records of different items may interleave.

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, Record, ShardIteratorType};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use base64::Engine as _;
use domain::ports::StoreError;
use serde_json::{Map, Value, json};

use crate::Clients;
use crate::error::store_error;

/// Kinesis takes at most 500 records per `PutRecords`.
const PUT_BATCH: usize = 500;

/// The table's DynamoDB stream, forwarded to the Kinesis stream.
#[derive(Debug)]
pub struct TableFeed {
    streams: aws_sdk_dynamodbstreams::Client,
    kinesis: aws_sdk_kinesis::Client,
    table: String,
    /// The Kinesis stream, by name or ARN.
    stream: String,
    region: String,
    /// The table's DynamoDB stream.
    source_arn: String,
    /// Per shard of the DynamoDB stream, the last change forwarded.
    forwarded: HashMap<String, String>,
    /// Shards closed and read to their end.
    closed: HashSet<String>,
}

impl TableFeed {
    /// The feed from `table` (whose DynamoDB stream must be on, with new
    /// images) to `stream` (name or ARN).
    pub async fn open(
        clients: &Clients,
        table: &str,
        stream: &str,
    ) -> Result<TableFeed, StoreError> {
        let described = clients
            .dynamodb()
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| store_error("DescribeTable", &e))?;
        let source_arn = described
            .table()
            .and_then(|t| t.latest_stream_arn())
            .ok_or_else(|| {
                StoreError::Failed(format!(
                    "table {table} has no DynamoDB stream to feed the order stream from \
                     (create it with --aws-provision, or turn its stream on with new images)"
                ))
            })?
            .to_owned();
        Ok(TableFeed {
            streams: clients.dynamodb_streams(),
            kinesis: clients.kinesis(),
            table: table.to_owned(),
            stream: stream.to_owned(),
            region: clients.region().unwrap_or_else(|| "us-east-1".into()),
            source_arn,
            forwarded: HashMap::new(),
            closed: HashSet::new(),
        })
    }

    /// The table's DynamoDB stream: positions belong to it.
    pub fn source_arn(&self) -> &str {
        &self.source_arn
    }

    /// Per shard of the table's DynamoDB stream, the last change forwarded.
    pub fn forwarded(&self) -> &HashMap<String, String> {
        &self.forwarded
    }

    /// Goes on after `forwarded` (what [`TableFeed::forwarded`] said before
    /// a restart) instead of from the oldest change kept.
    pub fn resume_after(&mut self, forwarded: HashMap<String, String>) {
        self.forwarded = forwarded;
    }

    /// Forwards every change not yet forwarded; answers how many. An
    /// error leaves the changes after the last one forwarded for the next
    /// call.
    pub async fn forward(&mut self) -> Result<usize, StoreError> {
        let described = self
            .streams
            .describe_stream()
            .stream_arn(&self.source_arn)
            .send()
            .await
            .map_err(|e| store_error("DescribeStream", &e))?;
        let shards: Vec<String> = described
            .stream_description()
            .map(|d| {
                d.shards()
                    .iter()
                    .filter_map(|s| s.shard_id().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let mut total = 0;
        for shard in shards {
            total += self.forward_shard(&shard).await?;
        }
        Ok(total)
    }

    async fn forward_shard(&mut self, shard: &str) -> Result<usize, StoreError> {
        if self.closed.contains(shard) {
            return Ok(0);
        }
        // A fresh iterator every round, from the last change forwarded: an
        // iterator kept across rounds can outlive what it reads (it expires
        // after 15 minutes; an emulator may even replace the shard under it).
        let request = self
            .streams
            .get_shard_iterator()
            .stream_arn(&self.source_arn)
            .shard_id(shard);
        let request = match self.forwarded.get(shard) {
            Some(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .sequence_number(sequence),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let Some(iterator) = request
            .send()
            .await
            .map_err(|e| store_error("GetShardIterator", &e))?
            .shard_iterator
        else {
            return Ok(0);
        };
        let page = self
            .streams
            .get_records()
            .shard_iterator(iterator)
            .send()
            .await
            .map_err(|e| store_error("GetRecords", &e))?;
        let records = page.records();
        for chunk in records.chunks(PUT_BATCH) {
            self.put(chunk).await?;
            if let Some(last) = chunk.last().and_then(|r| r.dynamodb()?.sequence_number()) {
                self.forwarded.insert(shard.to_owned(), last.to_owned());
            }
        }
        if page.next_shard_iterator.is_none() {
            self.closed.insert(shard.to_owned());
        }
        Ok(records.len())
    }

    /// Puts `records` on the Kinesis stream, keyed by their item's key.
    async fn put(&self, records: &[Record]) -> Result<(), StoreError> {
        let mut entries = Vec::with_capacity(records.len());
        for record in records {
            let change = change_record(record, &self.table, &self.region);
            let partition_key = partition_key(record);
            entries.push(
                PutRecordsRequestEntry::builder()
                    .partition_key(partition_key)
                    .data(Blob::new(change.to_string()))
                    .build()
                    .map_err(|e| StoreError::Failed(format!("building a record: {e}")))?,
            );
        }
        let request = self.kinesis.put_records().set_records(Some(entries));
        let request = if self.stream.starts_with("arn:") {
            request.stream_arn(&self.stream)
        } else {
            request.stream_name(&self.stream)
        };
        let output = request
            .send()
            .await
            .map_err(|e| store_error("PutRecords", &e))?;
        match output.failed_record_count() {
            Some(failed) if failed > 0 => Err(StoreError::Unavailable(format!(
                "PutRecords: {failed} of {} records not taken",
                records.len()
            ))),
            _ => Ok(()),
        }
    }
}

/// The key Kinesis shards a change by: the item's key, so one item's
/// changes stay in order.
fn partition_key(record: &Record) -> String {
    record
        .dynamodb()
        .and_then(|d| d.keys())
        .and_then(|keys| keys.get("pk"))
        .and_then(|pk| pk.as_s().ok())
        .cloned()
        .unwrap_or_else(|| "unkeyed".into())
}

/// `record` as Kinesis Data Streams for DynamoDB writes it: JSON with the
/// item's images in DynamoDB's attribute-value form.
fn change_record(record: &Record, table: &str, region: &str) -> Value {
    let event_name = match record.event_name() {
        Some(OperationType::Insert) => "INSERT",
        Some(OperationType::Modify) => "MODIFY",
        Some(OperationType::Remove) => "REMOVE",
        _ => "UNKNOWN",
    };
    let mut change = Map::new();
    if let Some(stream_record) = record.dynamodb() {
        if let Some(at) = stream_record.approximate_creation_date_time() {
            change.insert(
                "ApproximateCreationDateTime".into(),
                json!(at.to_millis().unwrap_or_default()),
            );
        }
        for (name, image) in [
            ("Keys", stream_record.keys()),
            ("NewImage", stream_record.new_image()),
            ("OldImage", stream_record.old_image()),
        ] {
            if let Some(image) = image {
                change.insert(name.into(), item(image));
            }
        }
        if let Some(size) = stream_record.size_bytes() {
            change.insert("SizeBytes".into(), json!(size));
        }
    }
    change.insert(
        "ApproximateCreationDateTimePrecision".into(),
        json!("MILLISECOND"),
    );
    json!({
        "awsRegion": region,
        "eventID": record.event_id(),
        "eventName": event_name,
        "userIdentity": null,
        "recordFormat": "application/json",
        "tableName": table,
        "dynamodb": change,
        "eventSource": "aws:dynamodb",
    })
}

fn item(attributes: &HashMap<String, AttributeValue>) -> Value {
    Value::Object(
        attributes
            .iter()
            .map(|(name, value)| (name.clone(), attribute(value)))
            .collect(),
    )
}

fn attribute(value: &AttributeValue) -> Value {
    let b64 = |blob: &aws_sdk_dynamodbstreams::primitives::Blob| {
        base64::engine::general_purpose::STANDARD.encode(blob.as_ref())
    };
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::B(b) => json!({ "B": b64(b) }),
        AttributeValue::Ss(ss) => json!({ "SS": ss }),
        AttributeValue::Ns(ns) => json!({ "NS": ns }),
        AttributeValue::Bs(bs) => json!({ "BS": bs.iter().map(b64).collect::<Vec<_>>() }),
        AttributeValue::M(m) => json!({ "M": item(m) }),
        AttributeValue::L(l) => json!({ "L": l.iter().map(attribute).collect::<Vec<_>>() }),
        AttributeValue::Null(is_null) => json!({ "NULL": is_null }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodbstreams::types::StreamRecord;

    #[test]
    fn a_change_is_written_as_the_service_writes_it() {
        let record = Record::builder()
            .event_id("e-1")
            .event_name(OperationType::Insert)
            .dynamodb(
                StreamRecord::builder()
                    .keys("pk", AttributeValue::S("event#1".into()))
                    .new_image("pk", AttributeValue::S("event#1".into()))
                    .new_image("event", AttributeValue::S("{}".into()))
                    .new_image("expiresAt", AttributeValue::N("12".into()))
                    .sequence_number("100")
                    .size_bytes(40)
                    .build(),
            )
            .build();
        let change = change_record(&record, "bakery-orders", "eu-west-1");
        assert_eq!(change["eventName"], "INSERT");
        assert_eq!(change["eventSource"], "aws:dynamodb");
        assert_eq!(change["tableName"], "bakery-orders");
        assert_eq!(change["dynamodb"]["Keys"]["pk"]["S"], "event#1");
        assert_eq!(change["dynamodb"]["NewImage"]["expiresAt"]["N"], "12");
        assert_eq!(partition_key(&record), "event#1");
        let decoded = lambda_kit::stream_record::decode(change.to_string().as_bytes());
        // `{}` is no event: the envelope was recognised and opened.
        assert!(matches!(decoded, Err(m) if m.contains("event item")));
    }
}
