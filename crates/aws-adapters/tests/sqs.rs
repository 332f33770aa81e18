//! `SqsQueue` and `SqsReader` against moto's SQS, redrive included.

mod support;

use aws_adapters::provision::{DeadLetter, create_queue, queue_arn};
use aws_adapters::{SqsQueue, SqsReader};
use aws_config::retry::RetryConfig;
use domain::ports::{Queue, QueueError, QueueMessage};
use support::{Moto, clients_for, free_port, unique};

fn message(id: &str) -> QueueMessage {
    QueueMessage {
        id: id.into(),
        body: format!(r#"{{"messageId":"{id}","orderId":"o-1"}}"#),
    }
}

#[tokio::test]
async fn a_sent_message_is_received_as_lambda_sees_it_and_deleted() {
    let moto = Moto::start().await;
    let clients = moto.clients().await;
    let url = create_queue(&clients, &unique("delivery"), None)
        .await
        .unwrap();
    let queue = SqsQueue::new(&clients, &url);
    let reader = SqsReader::new(&clients);

    queue.send(&message("m-1")).await.unwrap();
    let received = reader.receive(&url, 10, 1, 30).await.unwrap();
    assert_eq!(received.len(), 1);
    let m = &received[0];
    assert_eq!(m.body.as_deref(), Some(message("m-1").body.as_str()));
    assert_eq!(
        m.message_attributes["messageId"].string_value.as_deref(),
        Some("m-1")
    );
    assert_eq!(
        m.message_attributes["messageId"].data_type.as_deref(),
        Some("String")
    );
    assert_eq!(m.attributes["ApproximateReceiveCount"], "1");
    assert!(m.attributes["SentTimestamp"].parse::<u64>().is_ok());
    assert_eq!(m.event_source.as_deref(), Some("aws:sqs"));
    assert_eq!(m.aws_region.as_deref(), Some("us-east-1"));
    assert_eq!(
        m.event_source_arn.as_deref(),
        Some(queue_arn(&clients, &url).await.unwrap().as_str())
    );
    assert!(m.md5_of_body.is_some() && m.message_id.is_some());

    // Hidden while in flight, gone once deleted.
    assert!(reader.receive(&url, 10, 0, 30).await.unwrap().is_empty());
    let receipt = m.receipt_handle.as_deref().unwrap();
    reader.change_visibility(&url, receipt, 0).await.unwrap();
    let again = reader.receive(&url, 10, 0, 30).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attributes["ApproximateReceiveCount"], "2");
    reader
        .delete(&url, again[0].receipt_handle.as_deref().unwrap())
        .await
        .unwrap();
    reader.change_visibility(&url, receipt, 0).await.ok();
    assert!(reader.receive(&url, 10, 0, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_message_received_too_often_moves_to_the_dead_letter_queue() {
    let moto = Moto::start().await;
    let clients = moto.clients().await;
    let dlq = create_queue(&clients, &unique("delivery-dlq"), None)
        .await
        .unwrap();
    let dead_letter = DeadLetter {
        queue_url: &dlq,
        max_receive_count: 2,
    };
    let url = create_queue(&clients, &unique("delivery"), Some(dead_letter))
        .await
        .unwrap();
    let reader = SqsReader::new(&clients);
    SqsQueue::new(&clients, &url)
        .send(&message("m-2"))
        .await
        .unwrap();

    // Two failed tries: received, never deleted, visible again at once.
    for _ in 0..2 {
        assert_eq!(reader.receive(&url, 10, 0, 0).await.unwrap().len(), 1);
    }
    // The third receive finds it over the limit and moves it.
    assert!(reader.receive(&url, 10, 0, 0).await.unwrap().is_empty());

    let dead = reader.dead_letter_queue_messages(&dlq).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].body.as_deref(), Some(message("m-2").body.as_str()));
    assert_eq!(
        dead[0].message_attributes["messageId"]
            .string_value
            .as_deref(),
        Some("m-2")
    );
    // Listing leaves it there; redriving is send again, then delete.
    assert_eq!(
        reader.dead_letter_queue_messages(&dlq).await.unwrap().len(),
        1
    );
    reader
        .delete(&dlq, dead[0].receipt_handle.as_deref().unwrap())
        .await
        .unwrap();
    assert!(
        reader
            .dead_letter_queue_messages(&dlq)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_fifo_queue_drops_a_repeated_message_id() {
    let moto = Moto::start().await;
    let clients = moto.clients().await;
    let url = create_queue(&clients, &format!("{}.fifo", unique("feedback")), None)
        .await
        .unwrap();
    let queue = SqsQueue::new(&clients, &url);
    queue.send(&message("m-3")).await.unwrap();
    queue.send(&message("m-3")).await.unwrap();
    queue.send(&message("m-4")).await.unwrap();
    let reader = SqsReader::new(&clients);
    let mut ids = Vec::new();
    for m in reader.receive(&url, 10, 0, 30).await.unwrap() {
        ids.push(
            m.message_attributes["messageId"]
                .string_value
                .clone()
                .unwrap(),
        );
    }
    ids.sort();
    assert_eq!(ids, ["m-3", "m-4"]);
}

#[tokio::test]
async fn queue_failures_become_domain_errors() {
    let moto = Moto::start().await;
    let clients = moto.clients().await;
    let missing = format!("{}/123456789012/no-such-queue", moto.endpoint);
    let error = SqsQueue::new(&clients, &missing)
        .send(&message("m-5"))
        .await
        .unwrap_err();
    assert!(
        matches!(error, QueueError::Unavailable(ref m) if m.contains("SendMessage")),
        "{error:?}"
    );
    let error = SqsReader::new(&clients)
        .receive(&missing, 1, 0, 0)
        .await
        .unwrap_err();
    assert!(
        matches!(error, domain::ports::StoreError::Failed(_)),
        "{error:?}"
    );

    let fast = RetryConfig::standard()
        .with_max_attempts(2)
        .with_initial_backoff(std::time::Duration::from_millis(10));
    let nowhere = clients_for(&format!("http://127.0.0.1:{}", free_port()), Some(fast)).await;
    let error = SqsReader::new(&nowhere)
        .receive(&missing, 1, 0, 0)
        .await
        .unwrap_err();
    assert!(
        matches!(error, domain::ports::StoreError::Unavailable(_)),
        "{error:?}"
    );
}
