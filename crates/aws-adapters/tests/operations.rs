//! `AwsOperations` and `OrderQueries` over moto: queue depths, a
//! dead-letter queue's message listed and redriven to its queue, a failed
//! stream batch kept in S3 and redriven onto the stream, unknown ids.

mod support;

use aws_adapters::operations::{AwsOperations, OperationsConfig, QueueUrls, STREAM_FAILURES};
use aws_adapters::provision::{
    DeadLetter, create_bucket, create_order_stream, create_order_table, create_queue,
};
use aws_adapters::stream_failures::{GaveUp, StreamFailures, on_failure_record};
use aws_adapters::{Clients, DynamoStore, KinesisReader, SqsQueue, SqsReader};
use aws_lambda_events::event::kinesis::{KinesisEvent, KinesisEventRecord};
use domain::ports::{Operations, OrderQueries, Queue, QueueMessage};
use support::{Moto, unique};

/// Receives after which a message moves to its dead-letter queue.
const MAX_RECEIVES: u32 = 2;

struct Bakery {
    _moto: Moto,
    clients: Clients,
    stream: String,
    delivery: QueueUrls,
    feedback: QueueUrls,
    stream_failures_bucket: String,
    operations: AwsOperations,
}

async fn bakery() -> Bakery {
    let moto = Moto::start().await;
    let clients = moto.clients().await;
    let stream = unique("orders");
    create_order_stream(&clients, &stream, 1).await.unwrap();
    let mut queues = Vec::new();
    for name in ["delivery", "feedback"] {
        let dead_letter_url = create_queue(&clients, &unique(&format!("{name}-dlq")), None)
            .await
            .unwrap();
        let dead_letter = DeadLetter {
            queue_url: &dead_letter_url,
            max_receive_count: MAX_RECEIVES,
        };
        let url = create_queue(&clients, &unique(name), Some(dead_letter))
            .await
            .unwrap();
        queues.push(QueueUrls {
            name: name.into(),
            url,
            dead_letter_url,
        });
    }
    let stream_failures_bucket = unique("stream-failures").to_lowercase();
    create_bucket(&clients, &stream_failures_bucket)
        .await
        .unwrap();
    let operations = AwsOperations::new(
        &clients,
        OperationsConfig {
            stream: stream.clone(),
            consumers: vec!["notify-baker".into(), "dispatch".into()],
            queues: queues.clone(),
            stream_failures_bucket: stream_failures_bucket.clone(),
        },
    );
    let feedback = queues.pop().unwrap();
    let delivery = queues.pop().unwrap();
    Bakery {
        _moto: moto,
        clients,
        stream,
        delivery,
        feedback,
        stream_failures_bucket,
        operations,
    }
}

fn message(id: &str, order_id: &str) -> QueueMessage {
    QueueMessage {
        id: id.into(),
        body: format!(r#"{{"messageId":"{id}","orderId":"{order_id}"}}"#),
    }
}

/// Fails a message the way a consumer does until SQS moves it to the
/// dead-letter queue.
async fn dead_letter(bakery: &Bakery, queue: &QueueUrls, message: &QueueMessage) {
    SqsQueue::new(&bakery.clients, &queue.url)
        .send(message)
        .await
        .unwrap();
    let reader = SqsReader::new(&bakery.clients);
    for _ in 0..MAX_RECEIVES {
        assert_eq!(reader.receive(&queue.url, 10, 0, 0).await.unwrap().len(), 1);
    }
    // The receive over the limit moves it.
    assert!(
        reader
            .receive(&queue.url, 10, 0, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn queue_depths_count_ready_and_in_flight_messages() {
    let bakery = bakery().await;
    let empty = bakery.operations.status().await.unwrap();
    let names: Vec<&str> = empty.consumers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["notify-baker", "dispatch"]);
    // Lambda keeps a mapping's position to itself: unknown, not 0.
    assert!(empty.consumers.iter().all(|c| c.lag.is_none()));
    let depths: Vec<_> = empty
        .queues
        .iter()
        .map(|q| (q.name.as_str(), q.visible, q.in_flight))
        .collect();
    assert_eq!(depths, [("delivery", 0, 0), ("feedback", 0, 0)]);
    assert!(empty.dead_letters.is_empty() && empty.recent_errors.is_empty());

    let delivery = SqsQueue::new(&bakery.clients, &bakery.delivery.url);
    for id in ["m-1", "m-2", "m-3"] {
        delivery.send(&message(id, "o-1")).await.unwrap();
    }
    SqsQueue::new(&bakery.clients, &bakery.feedback.url)
        .send(&message("m-4", "o-2"))
        .await
        .unwrap();
    // One delivery message is being worked on.
    let taken = SqsReader::new(&bakery.clients)
        .receive(&bakery.delivery.url, 1, 0, 300)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);

    let status = bakery.operations.status().await.unwrap();
    let depths: Vec<_> = status
        .queues
        .iter()
        .map(|q| (q.name.as_str(), q.visible, q.in_flight))
        .collect();
    assert_eq!(depths, [("delivery", 2, 1), ("feedback", 1, 0)]);
}

#[tokio::test]
async fn a_dead_letter_is_listed_and_redriven_to_its_queue() {
    let bakery = bakery().await;
    dead_letter(&bakery, &bakery.delivery, &message("m-1", "o-1")).await;

    let status = bakery.operations.status().await.unwrap();
    assert_eq!(status.dead_letters.len(), 1, "{:?}", status.dead_letters);
    let letter = &status.dead_letters[0];
    assert!(letter.id.starts_with("delivery:"), "{letter:?}");
    assert_eq!(letter.source, "delivery");
    assert_eq!(letter.message_id, "m-1");
    assert_eq!(letter.order_id.as_deref(), Some("o-1"));
    assert_eq!(letter.attempts, MAX_RECEIVES, "looking does not count");
    assert!(letter.reason.contains("after 2 receives"), "{letter:?}");
    assert!(letter.failed_at <= chrono::Utc::now());
    assert_eq!(status.recent_errors.len(), 1);
    assert!(status.recent_errors[0].dead);
    assert_eq!(status.recent_errors[0].source, "delivery");
    // Listing again finds the same letter under the same id.
    let again = bakery.operations.status().await.unwrap();
    assert_eq!(again.dead_letters[0].id, letter.id);

    assert!(bakery.operations.redrive(letter.id.clone()).await.unwrap());
    let after = bakery.operations.status().await.unwrap();
    assert!(after.dead_letters.is_empty(), "{:?}", after.dead_letters);
    assert_eq!(after.queues[0].visible, 1, "back in the delivery queue");
    // Redriven once only.
    assert!(!bakery.operations.redrive(letter.id.clone()).await.unwrap());

    let back = SqsReader::new(&bakery.clients)
        .receive(&bakery.delivery.url, 10, 0, 30)
        .await
        .unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(
        back[0].body.as_deref(),
        Some(message("m-1", "o-1").body.as_str())
    );
    assert_eq!(
        back[0].message_attributes["messageId"]
            .string_value
            .as_deref(),
        Some("m-1"),
        "the consumer's deduplication id travels along"
    );
    assert_eq!(back[0].attributes["ApproximateReceiveCount"], "1");
}

#[tokio::test]
async fn redrive_finds_its_letter_among_others_and_leaves_them_visible() {
    let bakery = bakery().await;
    for i in 0..3 {
        dead_letter(
            &bakery,
            &bakery.feedback,
            &message(&format!("m-{i}"), &format!("o-{i}")),
        )
        .await;
    }
    let status = bakery.operations.status().await.unwrap();
    assert_eq!(status.dead_letters.len(), 3);
    let wanted = status
        .dead_letters
        .iter()
        .find(|l| l.message_id == "m-1")
        .unwrap();
    assert!(bakery.operations.redrive(wanted.id.clone()).await.unwrap());

    let after = bakery.operations.status().await.unwrap();
    let mut left: Vec<&str> = after
        .dead_letters
        .iter()
        .map(|l| l.message_id.as_str())
        .collect();
    left.sort();
    assert_eq!(left, ["m-0", "m-2"], "the others are visible again at once");
    assert_eq!(after.queues[1].visible, 1);
}

/// A record as a Kinesis event hands it to a consumer.
fn kinesis_record(order: &str, sequence: &str, data: &str) -> KinesisEventRecord {
    let mut record = KinesisEventRecord::default();
    record.event_id = Some(format!("shardId-000000000000:{sequence}"));
    record.kinesis.partition_key = order.into();
    record.kinesis.sequence_number = sequence.into();
    *record.kinesis.data = data.as_bytes().to_vec();
    record
}

#[tokio::test]
async fn a_stream_failure_is_kept_whole_listed_and_its_records_put_on_the_stream_again() {
    let bakery = bakery().await;
    let failures = StreamFailures::new(&bakery.clients, &bakery.stream_failures_bucket);
    // What Lambda writes to the S3 destination after the `dispatch`
    // function kept failing on two records: its note and, as `payload`,
    // the invocation with the records themselves.
    let records = [
        kinesis_record("o-2", "1002", r#"{"eventId":"e-2","orderId":"o-2"}"#),
        kinesis_record("o-3", "1003", r#"{"eventId":"e-3","orderId":"o-3"}"#),
    ];
    let mut payload = KinesisEvent::default();
    payload.records = records.to_vec();
    let object = serde_json::json!({
        "requestContext": {
            "requestId": "c9b8fa9f-5a7f-4a7f-af9c-0c604cde93a5",
            "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:bakery-prod-dispatch",
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": 6
        },
        "responseContext": {
            "statusCode": 200,
            "executedVersion": "$LATEST",
            "functionError": "Unhandled"
        },
        "version": "1.0",
        "timestamp": "2030-01-02T03:04:05.678Z",
        "KinesisBatchInfo": {
            "shardId": "shardId-000000000000",
            "startSequenceNumber": "1002",
            "endSequenceNumber": "1003",
            "batchSize": 2,
            "streamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/orders"
        },
        "payload": serde_json::to_string(&payload).unwrap()
    });
    let key = "aws/lambda/3f2a/shardId-000000000000/2030/01/02/2030-01-02T03.04.05-1b2c";
    failures.keep(key, &object).await.unwrap();

    let status = bakery.operations.status().await.unwrap();
    assert_eq!(status.dead_letters.len(), 1);
    let letter = &status.dead_letters[0];
    assert_eq!(letter.id, format!("{STREAM_FAILURES}:{key}"));
    assert_eq!(letter.source, "dispatch");
    assert_eq!(letter.attempts, 6);
    assert_eq!(
        letter.reason,
        "RetryAttemptsExhausted: function error Unhandled, batch of 2 records"
    );
    assert_eq!(letter.message_id, "shardId-000000000000:1002..1003");
    assert_eq!(
        letter.failed_at.to_rfc3339(),
        "2030-01-02T03:04:05.678+00:00"
    );
    assert_eq!(status.recent_errors[0].source, "dispatch");

    // The stream never held these records (as after its retention): the
    // redrive puts them from the object.
    assert!(bakery.operations.redrive(letter.id.clone()).await.unwrap());
    let after = bakery.operations.status().await.unwrap();
    assert!(after.dead_letters.is_empty(), "the object is deleted");
    assert!(!bakery.operations.redrive(letter.id.clone()).await.unwrap());

    let reader = KinesisReader::open(&bakery.clients, &bakery.stream)
        .await
        .unwrap();
    let shard = reader.shards().await.unwrap().remove(0);
    let put = reader.read(&shard, None, 100).await.unwrap();
    assert_eq!(put.len(), 2, "the two records put again");
    for (again, original) in put.iter().zip(&records) {
        assert_eq!(again.kinesis.partition_key, original.kinesis.partition_key);
        assert_eq!(again.kinesis.data.0, original.kinesis.data.0);
    }
}

#[tokio::test]
async fn the_local_runners_stream_failure_is_read_too_and_a_pointer_alone_is_kept() {
    // `bakery --backend aws` and the functions themselves name the
    // consumer, not always a function ARN, and say why in
    // `responseContext.reason`.
    let bakery = bakery().await;
    let failures = StreamFailures::new(&bakery.clients, &bakery.stream_failures_bucket);
    let record = kinesis_record("o-7", "7", r#"{"not":"an event"}"#);
    let (key, object) = on_failure_record(
        &GaveUp {
            function: "notify-baker",
            stream_arn: "arn:aws:kinesis:us-east-1:123456789012:stream/orders",
            shard_id: "shardId-000000000000",
            reason: "permanent: mail rejected",
            attempts: 1,
            at: chrono::Utc::now(),
        },
        &[record],
    );
    failures.keep(&key, &object).await.unwrap();
    let status = bakery.operations.status().await.unwrap();
    let letter = &status.dead_letters[0];
    assert_eq!(letter.source, "notify-baker");
    assert_eq!(
        letter.reason,
        "RetryAttemptsExhausted: permanent: mail rejected, function error Unhandled, batch of 1 record"
    );
    assert_eq!(letter.message_id, "shardId-000000000000:7");
    assert_eq!(letter.attempts, 1);

    // A record with only the pointer (an SQS-style note) has nothing to
    // put back: redrive says so and keeps it.
    failures
        .keep(
            "pointer-only",
            &serde_json::json!({"KinesisBatchInfo": {"shardId": "s", "startSequenceNumber": "1", "endSequenceNumber": "1"}}),
        )
        .await
        .unwrap();
    let error = bakery
        .operations
        .redrive(format!("{STREAM_FAILURES}:pointer-only"))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no payload"), "{error}");
    assert_eq!(
        bakery.operations.status().await.unwrap().dead_letters.len(),
        2
    );
}

#[tokio::test]
async fn unknown_dead_letters_are_not_found() {
    let bakery = bakery().await;
    dead_letter(&bakery, &bakery.delivery, &message("m-1", "o-1")).await;
    for id in [
        "",
        "nope",
        "delivery:",
        "delivery:no-such-message",
        "feedback:no-such-message",
        "elsewhere:no-such-message",
        "stream-failures:no-such-message",
    ] {
        assert!(
            !bakery.operations.redrive(id.into()).await.unwrap(),
            "{id:?}"
        );
    }
    // The real one is still there, and visible.
    let status = bakery.operations.status().await.unwrap();
    assert_eq!(status.dead_letters.len(), 1);
}

#[tokio::test]
async fn orders_by_status_go_through_the_port() {
    use domain::ports::{NewOrder, OrderStore};

    let moto = Moto::start().await;
    let clients = moto.clients().await;
    let table = unique("orders");
    create_order_table(&clients, &table).await.unwrap();
    let store = DynamoStore::new(&clients, &table);
    let order = domain::memory::placed_order();
    let event = domain::events::Event::new(
        domain::events::EventType::OrderPlaced,
        &order,
        chrono::Utc::now(),
    );
    store
        .place(&NewOrder {
            order: order.clone(),
            idempotency: None,
            event,
        })
        .await
        .unwrap();
    let queries: &dyn OrderQueries = &store;
    let placed = queries
        .orders_with_status(domain::Status::Placed, 10)
        .await
        .unwrap();
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].order_id, order.order_id);
    assert!(
        queries
            .orders_with_status(domain::Status::Fulfilled, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
