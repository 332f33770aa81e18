//! A dead letter as the operator sees it: a dead-letter queue's message
//! (its reason and tries from the attributes the consumer set) or a failed
//! stream batch (Lambda's on-failure record).

use aws_lambda_events::event::sqs::SqsMessage;
use chrono::{DateTime, Utc};
use domain::ports::DeadLetterView;
use lambda_kit::batch::receive_count;
use lambda_kit::stream_record::{self, Decoded};
use serde_json::Value;

use super::{ATTEMPTS_ATTRIBUTE, AwsOperations, QueueUrls, REASON_ATTRIBUTE, STREAM_FAILURES};
use crate::sqs::MESSAGE_ID_ATTRIBUTE;
use crate::stream_failures::StreamFailure;

impl AwsOperations {
    /// A dead-letter queue's message as the operator sees it.
    pub(super) fn queue_letter(
        &self,
        queue: &QueueUrls,
        max_receives: Option<u32>,
        message: &SqsMessage,
    ) -> DeadLetterView {
        let sqs_id = message.message_id.clone().unwrap_or_default();
        // Looking at a dead-letter queue receives from it, which counts:
        // the policy's limit is how often the consumer really tried.
        let attempts = message
            .message_attributes
            .get(ATTEMPTS_ATTRIBUTE)
            .and_then(|a| a.string_value.as_deref())
            .and_then(|a| a.parse().ok())
            .or(max_receives)
            .unwrap_or_else(|| receive_count(message));
        let reason = message
            .message_attributes
            .get(REASON_ATTRIBUTE)
            .and_then(|a| a.string_value.clone())
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| format!("moved to the dead-letter queue after {attempts} receives"));
        DeadLetterView {
            id: format!("{}:{sqs_id}", queue.name),
            source: queue.name.clone(),
            reason,
            attempts,
            failed_at: millis_attribute(message, "ApproximateFirstReceiveTimestamp")
                .or_else(|| millis_attribute(message, "SentTimestamp"))
                .unwrap_or_else(Utc::now),
            message_id: message
                .message_attributes
                .get(MESSAGE_ID_ATTRIBUTE)
                .and_then(|a| a.string_value.clone())
                .unwrap_or(sqs_id),
            order_id: message.body.as_deref().and_then(order_id_of),
        }
    }

    /// A failed stream batch as the operator sees it.
    pub(super) fn stream_letter(&self, failure: &StreamFailure) -> DeadLetterView {
        let body = &failure.record;
        let request = &body["requestContext"];
        let source = request["functionArn"]
            .as_str()
            .map(|arn| consumer_of(arn, &self.config.consumers))
            .unwrap_or_else(|| STREAM_FAILURES.to_owned());
        let batch = BatchInfo::from_value(body);
        let message_id = match &batch {
            Some(b) if b.start == b.end => format!("{}:{}", b.shard_id, b.start),
            Some(b) => format!("{}:{}..{}", b.shard_id, b.start, b.end),
            None => failure.key.clone(),
        };
        // The order of the batch's first record that is an order event.
        let order_id = failure.records().ok().and_then(|records| {
            records
                .iter()
                .find_map(|r| match stream_record::decode(&r.kinesis.data) {
                    Ok(Decoded::Event(event)) => Some(event.order_id.to_string()),
                    _ => None,
                })
        });
        DeadLetterView {
            id: format!("{STREAM_FAILURES}:{}", failure.key),
            source,
            reason: stream_reason(body, batch.as_ref()),
            attempts: request["approximateInvokeCount"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(1),
            failed_at: body["timestamp"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&Utc))
                .or(failure.last_modified)
                .unwrap_or_else(Utc::now),
            message_id,
            order_id,
        }
    }
}

/// Where a failed stream batch is: Lambda's `KinesisBatchInfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BatchInfo {
    shard_id: String,
    start: String,
    end: String,
    size: Option<u64>,
}

impl BatchInfo {
    fn from_value(body: &Value) -> Option<BatchInfo> {
        let info = body.get("KinesisBatchInfo")?;
        let text = |key: &str| {
            info.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        Some(BatchInfo {
            shard_id: text("shardId")?,
            start: text("startSequenceNumber")?,
            end: text("endSequenceNumber")?,
            size: info.get("batchSize").and_then(Value::as_u64),
        })
    }
}

/// Why a stream batch was given up on, from the note's `requestContext`
/// and `responseContext`.
fn stream_reason(body: &Value, batch: Option<&BatchInfo>) -> String {
    let response = &body["responseContext"];
    let mut details = Vec::new();
    if let Some(reason) = response["reason"].as_str() {
        details.push(reason.to_owned());
    }
    if let Some(error) = response["functionError"].as_str() {
        details.push(format!("function error {error}"));
    }
    if let Some(status) = response["statusCode"].as_u64() {
        if status != 200 {
            details.push(format!("status {status}"));
        }
    }
    if let Some(size) = batch.and_then(|b| b.size) {
        let records = if size == 1 { "record" } else { "records" };
        details.push(format!("batch of {size} {records}"));
    }
    let condition = body["requestContext"]["condition"].as_str();
    match (condition, details.is_empty()) {
        (Some(condition), false) => format!("{condition}: {}", details.join(", ")),
        (Some(condition), true) => condition.to_owned(),
        (None, false) => details.join(", "),
        (None, true) if batch.is_none() => {
            "not a Lambda on-failure record (no KinesisBatchInfo)".to_owned()
        }
        (None, true) => "stream batch given up on".to_owned(),
    }
}

/// The consumer a function ARN (or name) belongs to: `…:function:
/// bakery-prod-dispatch` is `dispatch` when that is a known consumer,
/// else the function's name.
fn consumer_of(function: &str, consumers: &[String]) -> String {
    let name = match function.strip_prefix("arn:") {
        // arn:partition:lambda:region:account:function:name[:qualifier]
        Some(_) => function.split(':').nth(6).unwrap_or(function),
        None => function,
    };
    consumers
        .iter()
        .find(|c| name == c.as_str() || name.ends_with(&format!("-{c}")))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

/// An SQS attribute holding epoch milliseconds.
fn millis_attribute(message: &SqsMessage, name: &str) -> Option<DateTime<Utc>> {
    let millis = message.attributes.get(name)?.parse::<i64>().ok()?;
    DateTime::<Utc>::from_timestamp_millis(millis)
}

/// The `orderId` inside a queue message, if there is one.
fn order_id_of(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    value.get("orderId")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_arns_name_their_consumer() {
        let consumers = vec!["notify-baker".to_owned(), "dispatch".to_owned()];
        assert_eq!(
            consumer_of(
                "arn:aws:lambda:eu-west-1:123456789012:function:bakery-prod-dispatch",
                &consumers
            ),
            "dispatch"
        );
        assert_eq!(
            consumer_of(
                "arn:aws:lambda:eu-west-1:123456789012:function:bakery-notify-baker:$LATEST",
                &consumers
            ),
            "notify-baker"
        );
        assert_eq!(consumer_of("notify-baker", &consumers), "notify-baker");
        assert_eq!(
            consumer_of("arn:aws:lambda:r:1:function:other", &consumers),
            "other"
        );
    }

    #[test]
    fn a_lambda_on_failure_record_is_read() {
        // The example in Lambda's documentation.
        let body: Value = serde_json::from_str(
            r#"{
              "requestContext": {
                "requestId": "c9b8fa9f-5a7f-xmpl-af9c-0c604cde93a5",
                "functionArn": "arn:aws:lambda:us-east-2:123456789012:function:myfunction",
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": 1
              },
              "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled"
              },
              "version": "1.0",
              "timestamp": "2019-11-14T00:38:06.021Z",
              "KinesisBatchInfo": {
                "shardId": "shardId-000000000001",
                "startSequenceNumber": "49601189658422359378836298521827638475320189012309704722",
                "endSequenceNumber": "49601189658422359378836298522902373528957594348623495186",
                "approximateArrivalOfFirstRecord": "2019-11-14T00:38:04.835Z",
                "approximateArrivalOfLastRecord": "2019-11-14T00:38:05.580Z",
                "batchSize": 500,
                "streamArn": "arn:aws:kinesis:us-east-2:123456789012:stream/mystream"
              }
            }"#,
        )
        .unwrap();
        let batch = BatchInfo::from_value(&body).unwrap();
        assert_eq!(batch.shard_id, "shardId-000000000001");
        assert_eq!(batch.size, Some(500));
        assert_eq!(
            stream_reason(&body, Some(&batch)),
            "RetryAttemptsExhausted: function error Unhandled, batch of 500 records"
        );
        assert_eq!(
            stream_reason(&Value::Null, None),
            "not a Lambda on-failure record (no KinesisBatchInfo)"
        );
    }

    #[test]
    fn order_ids_are_read_from_messages() {
        assert_eq!(order_id_of(r#"{"orderId":"o-1"}"#).as_deref(), Some("o-1"));
        assert_eq!(order_id_of("nope"), None);
    }
}
