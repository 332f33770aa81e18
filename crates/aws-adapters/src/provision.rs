//! Creating the table, stream and queues the adapters expect, for an
//! emulator (the local runner against moto) and for tests.
//!
//! In AWS the SAM and serverless templates own these resources; this
//! mirrors what they declare: the table's key and `by-status` index (see
//! [`crate::dynamo`]), an on-demand stream, queues with a redrive policy
//! to their dead-letter queue, and the bucket failed stream batches are
//! kept in. The table's DynamoDB stream is on, with new and old images:
//! where the service cannot feed the Kinesis stream itself, the local
//! runner feeds it from there ([`crate::table_feed`]).

use std::time::Duration;

use aws_sdk_dynamodb::client::Waiters as _;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TimeToLiveSpecification,
};
use aws_sdk_kinesis::client::Waiters as _;
use aws_sdk_sqs::types::QueueAttributeName;
use domain::ports::StoreError;

use crate::Clients;
use crate::dynamo::STATUS_INDEX;
use crate::error::store_error;

/// How long to wait for a new table or stream to become active.
const READY_WITHIN: Duration = Duration::from_secs(60);

fn build_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(format!("building a request: {e}"))
}

fn key(name: &str, kind: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(build_error)
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, StoreError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
        .map_err(build_error)
}

/// Creates the order table (on demand) and waits until it is active.
pub async fn create_order_table(clients: &Clients, name: &str) -> Result<(), StoreError> {
    let index = GlobalSecondaryIndex::builder()
        .index_name(STATUS_INDEX)
        .key_schema(key("status", KeyType::Hash)?)
        .key_schema(key("createdAt", KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()
        .map_err(build_error)?;
    clients
        .dynamodb()
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute("pk")?)
        .attribute_definitions(string_attribute("status")?)
        .attribute_definitions(string_attribute("createdAt")?)
        .key_schema(key("pk", KeyType::Hash)?)
        .global_secondary_indexes(index)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .map_err(build_error)?,
        )
        .send()
        .await
        .map_err(|e| store_error("CreateTable", &e))?;
    clients
        .dynamodb()
        .wait_until_table_exists()
        .table_name(name)
        .wait(READY_WITHIN)
        .await
        .map_err(|e| StoreError::Unavailable(format!("table {name} not active: {e}")))?;
    // Idempotency keys expire (the templates say the same).
    clients
        .dynamodb()
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name(crate::dynamo::EXPIRES_AT)
                .enabled(true)
                .build()
                .map_err(build_error)?,
        )
        .send()
        .await
        .map_err(|e| store_error("UpdateTimeToLive", &e))?;
    Ok(())
}

/// Creates the order stream with `shards` shards, waits until it is
/// active and answers its ARN.
pub async fn create_order_stream(
    clients: &Clients,
    name: &str,
    shards: u32,
) -> Result<String, StoreError> {
    clients
        .kinesis()
        .create_stream()
        .stream_name(name)
        .shard_count(i32::try_from(shards).unwrap_or(1))
        .send()
        .await
        .map_err(|e| store_error("CreateStream", &e))?;
    clients
        .kinesis()
        .wait_until_stream_exists()
        .stream_name(name)
        .wait(READY_WITHIN)
        .await
        .map_err(|e| StoreError::Unavailable(format!("stream {name} not active: {e}")))?;
    let summary = clients
        .kinesis()
        .describe_stream_summary()
        .stream_name(name)
        .send()
        .await
        .map_err(|e| store_error("DescribeStreamSummary", &e))?;
    summary
        .stream_description_summary()
        .map(|s| s.stream_arn().to_owned())
        .ok_or_else(|| StoreError::Failed(format!("stream {name}: no description")))
}

/// Creates the bucket failed stream batches are kept in, unless it is
/// there already.
pub async fn create_bucket(clients: &Clients, name: &str) -> Result<(), StoreError> {
    match clients.s3().create_bucket().bucket(name).send().await {
        Ok(_) => Ok(()),
        Err(error)
            if error.as_service_error().is_some_and(|e| {
                e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
            }) =>
        {
            Ok(())
        }
        Err(error) => Err(store_error("CreateBucket", &error)),
    }
}

/// Where a queue's repeatedly failing messages go.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    /// The dead-letter queue's URL.
    pub queue_url: &'a str,
    /// Receives after which a message moves there.
    pub max_receive_count: u32,
}

/// Creates a queue (FIFO if `name` ends in `.fifo`), optionally with a
/// redrive policy, and answers its URL.
pub async fn create_queue(
    clients: &Clients,
    name: &str,
    dead_letter: Option<DeadLetter<'_>>,
) -> Result<String, StoreError> {
    let mut request = clients.sqs().create_queue().queue_name(name);
    if name.ends_with(".fifo") {
        request = request.attributes(QueueAttributeName::FifoQueue, "true");
    }
    if let Some(dead_letter) = dead_letter {
        let policy = serde_json::json!({
            "deadLetterTargetArn": queue_arn(clients, dead_letter.queue_url).await?,
            "maxReceiveCount": dead_letter.max_receive_count,
        });
        request = request.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
    }
    let output = request
        .send()
        .await
        .map_err(|e| store_error("CreateQueue", &e))?;
    output
        .queue_url
        .ok_or_else(|| StoreError::Failed(format!("queue {name}: no URL")))
}

/// A queue's ARN, as the queue reports it.
pub async fn queue_arn(clients: &Clients, queue_url: &str) -> Result<String, StoreError> {
    let output = clients
        .sqs()
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| store_error("GetQueueAttributes", &e))?;
    output
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| StoreError::Failed(format!("queue {queue_url}: no ARN")))
}
