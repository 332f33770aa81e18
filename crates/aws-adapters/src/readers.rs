//! Readers of the order stream and the queues, for a local runner that
//! plays Lambda's event source mappings against AWS (or an emulator).
//!
//! They hand back `aws_lambda_events` records shaped exactly as Lambda
//! shapes them (event source, ids, ARNs, attributes), so the handlers see
//! the same payloads whether AWS or the runner invokes them.
//!
//! Errors are [`StoreError`]s: `Unavailable` means try again later,
//! `Failed` means the stream or queue is misconfigured (missing, say).

use std::collections::{HashMap, HashSet};

use aws_lambda_events::encodings::{Base64Data, SecondTimestamp};
use aws_lambda_events::event::kinesis::{KinesisEncryptionType, KinesisEventRecord};
use aws_lambda_events::event::sqs::{SqsMessage, SqsMessageAttribute};
use aws_sdk_kinesis::types::{EncryptionType, Record, ShardIteratorType};
use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use chrono::{DateTime, Utc};
use domain::ports::StoreError;

use crate::Clients;
use crate::error::store_error;
use crate::operations::{ATTEMPTS_ATTRIBUTE, REASON_ATTRIBUTE};
use crate::sqs::MESSAGE_ID_ATTRIBUTE;

/// Reads the order stream shard by shard.
#[derive(Clone, Debug)]
pub struct KinesisReader {
    client: aws_sdk_kinesis::Client,
    stream_name: String,
    stream_arn: String,
    region: Option<String>,
}

/// How many empty pages to follow before answering "nothing new": Kinesis
/// may answer an empty page while the iterator is still behind the tip.
const EMPTY_PAGES: usize = 5;

impl KinesisReader {
    /// A reader of `stream` (a name or an ARN); checks the stream exists.
    pub async fn open(clients: &Clients, stream: &str) -> Result<KinesisReader, StoreError> {
        let request = clients.kinesis().describe_stream_summary();
        let request = if stream.starts_with("arn:") {
            request.stream_arn(stream)
        } else {
            request.stream_name(stream)
        };
        let output = request
            .send()
            .await
            .map_err(|e| store_error("DescribeStreamSummary", &e))?;
        let summary = output
            .stream_description_summary()
            .ok_or_else(|| StoreError::Failed(format!("stream {stream}: no description")))?;
        Ok(KinesisReader {
            client: clients.kinesis(),
            stream_name: summary.stream_name().to_owned(),
            stream_arn: summary.stream_arn().to_owned(),
            region: clients.region(),
        })
    }

    /// The stream's ARN, as records name it in `eventSourceARN`.
    pub fn stream_arn(&self) -> &str {
        &self.stream_arn
    }

    /// The ids of the stream's shards.
    pub async fn shards(&self) -> Result<Vec<String>, StoreError> {
        let mut shards = Vec::new();
        let mut next_token: Option<String> = None;
        loop {
            // ListShards takes either the stream or a token, never both.
            let request = match &next_token {
                Some(token) => self.client.list_shards().next_token(token),
                None => self.client.list_shards().stream_name(&self.stream_name),
            };
            let output = request
                .send()
                .await
                .map_err(|e| store_error("ListShards", &e))?;
            shards.extend(output.shards().iter().map(|s| s.shard_id().to_owned()));
            next_token = output.next_token;
            if next_token.is_none() {
                return Ok(shards);
            }
        }
    }

    /// Up to `limit` records of `shard_id`, in sequence order: from the
    /// oldest kept (`after_sequence` = `None`) or after the given sequence
    /// number. The last record's sequence number is where to go on from.
    pub async fn read(
        &self,
        shard_id: &str,
        after_sequence: Option<String>,
        limit: usize,
    ) -> Result<Vec<KinesisEventRecord>, StoreError> {
        let request = self
            .client
            .get_shard_iterator()
            .stream_name(&self.stream_name)
            .shard_id(shard_id);
        let request = match after_sequence {
            Some(sequence) => request
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(sequence),
            None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
        };
        let mut iterator = request
            .send()
            .await
            .map_err(|e| store_error("GetShardIterator", &e))?
            .shard_iterator;
        let limit = i32::try_from(limit.clamp(1, 10_000)).unwrap_or(10_000);
        for _ in 0..EMPTY_PAGES {
            let Some(current) = iterator else {
                break; // the shard is closed and fully read
            };
            let output = self
                .client
                .get_records()
                .shard_iterator(current)
                .limit(limit)
                .send()
                .await
                .map_err(|e| store_error("GetRecords", &e))?;
            if !output.records().is_empty() {
                return Ok(output
                    .records()
                    .iter()
                    .map(|record| self.lambda_record(shard_id, record))
                    .collect());
            }
            if output.millis_behind_latest().unwrap_or(0) == 0 {
                break; // at the tip: nothing new
            }
            iterator = output.next_shard_iterator;
        }
        Ok(Vec::new())
    }

    /// A record as Lambda hands it to a function.
    fn lambda_record(&self, shard_id: &str, record: &Record) -> KinesisEventRecord {
        let arrival = record
            .approximate_arrival_timestamp()
            .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), t.subsec_nanos()))
            .unwrap_or_else(Utc::now);
        let mut out = KinesisEventRecord::default();
        out.aws_region = self.region.clone();
        out.event_id = Some(format!("{shard_id}:{}", record.sequence_number()));
        out.event_name = Some("aws:kinesis:record".to_owned());
        out.event_source = Some("aws:kinesis".to_owned());
        out.event_source_arn = Some(self.stream_arn.clone());
        out.event_version = Some("1.0".to_owned());
        out.kinesis.approximate_arrival_timestamp = SecondTimestamp(arrival);
        out.kinesis.data = base64_data(record.data().as_ref());
        out.kinesis.encryption_type = match record.encryption_type() {
            Some(EncryptionType::Kms) => KinesisEncryptionType::Kms,
            _ => KinesisEncryptionType::None,
        };
        out.kinesis.partition_key = record.partition_key().to_owned();
        out.kinesis.sequence_number = record.sequence_number().to_owned();
        out.kinesis.kinesis_schema_version = Some("1.0".to_owned());
        out
    }
}

/// Receives, deletes and hides messages of any queue by URL.
#[derive(Clone, Debug)]
pub struct SqsReader {
    client: aws_sdk_sqs::Client,
    region: Option<String>,
}

/// How many rounds [`SqsReader::dead_letter_queue_messages`] receives.
const DLQ_ROUNDS: usize = 20;

impl SqsReader {
    pub fn new(clients: &Clients) -> Self {
        SqsReader {
            client: clients.sqs(),
            region: clients.region(),
        }
    }

    /// Up to `max` (1 to 10) messages, waiting up to `wait_seconds` for the
    /// first (long polling); received messages stay hidden from other
    /// receivers for `visibility_seconds` unless deleted first. Each
    /// carries the attributes Lambda passes on, `ApproximateReceiveCount`
    /// and `SentTimestamp` among them.
    pub async fn receive(
        &self,
        queue_url: &str,
        max: usize,
        wait_seconds: u32,
        visibility_seconds: u32,
    ) -> Result<Vec<SqsMessage>, StoreError> {
        let output = self
            .client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .wait_time_seconds(i32::try_from(wait_seconds.min(20)).unwrap_or(20))
            .visibility_timeout(i32::try_from(visibility_seconds).unwrap_or(i32::MAX))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| store_error("ReceiveMessage", &e))?;
        let arn = queue_arn(self.region.as_deref(), queue_url);
        Ok(output
            .messages()
            .iter()
            .map(|message| lambda_message(message, arn.as_deref(), self.region.as_deref()))
            .collect())
    }

    /// Deletes a received message: it was handled.
    pub async fn delete(&self, queue_url: &str, receipt_handle: &str) -> Result<(), StoreError> {
        self.client
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| store_error("DeleteMessage", &e))?;
        Ok(())
    }

    /// Sends a received message's body and message attributes to `url`,
    /// plus, when given, why it failed and after how many tries (the
    /// [`REASON_ATTRIBUTE`] and [`ATTEMPTS_ATTRIBUTE`]): a redrive sends a
    /// dead letter back, a consumer sends a message that can never succeed
    /// to its dead-letter queue at once.
    pub async fn send_copy(
        &self,
        url: &str,
        message: &SqsMessage,
        failed: Option<(&str, u32)>,
    ) -> Result<(), StoreError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(url)
            .message_body(message.body.clone().unwrap_or_default());
        for (name, attribute) in &message.message_attributes {
            if name == REASON_ATTRIBUTE || name == ATTEMPTS_ATTRIBUTE {
                continue;
            }
            let mut value = MessageAttributeValue::builder().data_type(
                attribute
                    .data_type
                    .clone()
                    .unwrap_or_else(|| "String".into()),
            );
            if let Some(text) = &attribute.string_value {
                value = value.string_value(text);
            }
            if let Some(bytes) = &attribute.binary_value {
                value = value.binary_value(Blob::new(bytes.to_vec()));
            }
            match value.build() {
                Ok(value) => request = request.message_attributes(name, value),
                Err(error) => tracing::warn!(attribute = %name, %error, "attribute dropped"),
            }
        }
        if let Some((reason, attempts)) = failed {
            // SQS limits a message's attributes to 256 KiB with its body;
            // a reason is kept to its first 4,000 characters.
            let reason: String = reason.chars().take(4000).collect();
            let attribute = |data_type: &str, text: String| {
                MessageAttributeValue::builder()
                    .data_type(data_type)
                    .string_value(text)
                    .build()
                    .map_err(|e| StoreError::Failed(format!("building an attribute: {e}")))
            };
            request = request
                .message_attributes(REASON_ATTRIBUTE, attribute("String", reason)?)
                .message_attributes(
                    ATTEMPTS_ATTRIBUTE,
                    attribute("Number", attempts.to_string())?,
                );
        }
        if url.ends_with(".fifo") {
            let id = message
                .message_attributes
                .get(MESSAGE_ID_ATTRIBUTE)
                .and_then(|a| a.string_value.clone())
                .or_else(|| message.message_id.clone())
                .unwrap_or_default();
            request = request.message_group_id(&id).message_deduplication_id(&id);
        }
        request
            .send()
            .await
            .map_err(|e| store_error("SendMessage", &e))?;
        Ok(())
    }

    /// Shows a received message again after `seconds` (0: at once), as
    /// Lambda does with a failed batch item.
    pub async fn change_visibility(
        &self,
        queue_url: &str,
        receipt_handle: &str,
        seconds: u32,
    ) -> Result<(), StoreError> {
        self.client
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(i32::try_from(seconds).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(|e| store_error("ChangeMessageVisibility", &e))?;
        Ok(())
    }

    /// The messages in a dead-letter queue, for an operator to look at or
    /// redrive (send again to the source queue, then [`Self::delete`] with
    /// the receipt handle given here).
    ///
    /// SQS cannot peek, so this receives with a visibility timeout of zero
    /// (the messages stay where they are and visible) until a round brings
    /// nothing new. SQS samples its servers, so a large queue may take more
    /// than one call to show everything.
    pub async fn dead_letter_queue_messages(
        &self,
        dlq_url: &str,
    ) -> Result<Vec<SqsMessage>, StoreError> {
        let mut seen = HashSet::new();
        let mut messages = Vec::new();
        for _ in 0..DLQ_ROUNDS {
            let mut new = 0;
            for message in self.receive(dlq_url, 10, 0, 0).await? {
                if seen.insert(message.message_id.clone()) {
                    messages.push(message);
                    new += 1;
                }
            }
            if new == 0 {
                break;
            }
        }
        Ok(messages)
    }
}

/// `Base64Data` is non-exhaustive: filled in, not constructed.
fn base64_data(bytes: &[u8]) -> Base64Data {
    let mut data = Base64Data::default();
    data.extend_from_slice(bytes);
    data
}

/// A queue's ARN from its URL (`https://host/<account>/<name>`), which is
/// how every SQS endpoint, and the emulators, shape queue URLs.
fn queue_arn(region: Option<&str>, queue_url: &str) -> Option<String> {
    let mut segments = queue_url.trim_end_matches('/').rsplit('/');
    let name = segments.next()?;
    let account = segments.next()?;
    Some(format!(
        "arn:aws:sqs:{}:{account}:{name}",
        region.unwrap_or_default()
    ))
}

/// A message as Lambda hands it to a function.
fn lambda_message(
    message: &aws_sdk_sqs::types::Message,
    queue_arn: Option<&str>,
    region: Option<&str>,
) -> SqsMessage {
    let mut out = SqsMessage::default();
    out.message_id = message.message_id().map(str::to_owned);
    out.receipt_handle = message.receipt_handle().map(str::to_owned);
    out.body = message.body().map(str::to_owned);
    out.md5_of_body = message.md5_of_body().map(str::to_owned);
    out.md5_of_message_attributes = message.md5_of_message_attributes().map(str::to_owned);
    out.attributes = message
        .attributes()
        .map(|attributes| {
            attributes
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), value.clone()))
                .collect()
        })
        .unwrap_or_default();
    out.message_attributes = message
        .message_attributes()
        .map(|attributes| {
            attributes
                .iter()
                .map(|(name, value)| {
                    let mut attribute = SqsMessageAttribute::default();
                    attribute.string_value = value.string_value().map(str::to_owned);
                    attribute.binary_value = value.binary_value().map(|b| base64_data(b.as_ref()));
                    attribute.string_list_values = value.string_list_values().to_vec();
                    attribute.binary_list_values = value
                        .binary_list_values()
                        .iter()
                        .map(|b| base64_data(b.as_ref()))
                        .collect();
                    attribute.data_type = Some(value.data_type().to_owned());
                    (name.clone(), attribute)
                })
                .collect::<HashMap<_, _>>()
        })
        .unwrap_or_default();
    out.event_source = Some("aws:sqs".to_owned());
    out.event_source_arn = queue_arn.map(str::to_owned);
    out.aws_region = region.map(str::to_owned);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_arns_come_from_queue_urls() {
        assert_eq!(
            queue_arn(
                Some("eu-west-1"),
                "https://sqs.eu-west-1.amazonaws.com/123456789012/bakery-delivery"
            )
            .as_deref(),
            Some("arn:aws:sqs:eu-west-1:123456789012:bakery-delivery")
        );
        assert_eq!(
            queue_arn(
                Some("us-east-1"),
                "http://127.0.0.1:5000/000000000000/q.fifo"
            )
            .as_deref(),
            Some("arn:aws:sqs:us-east-1:000000000000:q.fifo")
        );
    }
}
