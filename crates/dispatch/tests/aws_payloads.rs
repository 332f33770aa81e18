//! dispatch given the Kinesis event the event source mapping really sends
//! (base64 `data`, sequence numbers, `eventID`), answering the partial batch
//! response Lambda reads with `ReportBatchItemFailures`. Fixtures:
//! `tests/fixtures/kinesis-order-fulfilled*.json`.

use std::sync::Arc;

use domain::events::DeliveryRequest;
use domain::memory::{MemoryQueue, MemoryStore};
use domain::ports::AdvanceThenSend;
use domain::{OrderId, Status};
use lambda_check::answers::assert_kinesis_answer;
use lambda_check::fixtures::{self, ORDER_FULFILLED, POISON_SEQUENCE_NUMBER};

fn setup() -> (Arc<MemoryStore>, Arc<MemoryQueue>, dispatch::Deps) {
    let store = fixtures::seeded_store();
    let queue = Arc::new(MemoryQueue::default());
    let deps = dispatch::Deps {
        to_delivery: Arc::new(AdvanceThenSend {
            store: store.clone(),
            queue: queue.clone(),
        }),
    };
    (store, queue, deps)
}

#[tokio::test]
async fn a_batch_from_the_stream_succeeds_with_an_empty_failure_list() {
    let (store, queue, deps) = setup();
    let report = dispatch::handle(&deps, fixtures::event("kinesis-order-fulfilled.json")).await;
    assert_kinesis_answer(&report, &[]);

    let order_id = OrderId::parse(ORDER_FULFILLED).unwrap();
    assert_eq!(
        store.order(order_id).unwrap().status,
        Status::OutForDelivery
    );
    let sent = queue.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let request: DeliveryRequest = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(request.order_id, order_id);
    assert_eq!(request.fulfillment_id.as_deref(), Some("oven-2"));
}

#[tokio::test]
async fn a_poison_record_is_reported_by_its_sequence_number() {
    let (_, queue, deps) = setup();
    let report = dispatch::handle(
        &deps,
        fixtures::event("kinesis-order-fulfilled-with-poison.json"),
    )
    .await;
    assert_kinesis_answer(&report, &[POISON_SEQUENCE_NUMBER]);
    assert_eq!(
        queue.sent.lock().unwrap().len(),
        1,
        "the good record went through"
    );
}
