//! notify-delivery given the SQS event the event source mapping really
//! sends (`messageId`, `receiptHandle`, `body`, `attributes`), answering the
//! partial batch response Lambda reads with `ReportBatchItemFailures`.
//! Fixtures: `tests/fixtures/sqs-delivery-request*.json`.

use std::sync::Arc;

use domain::memory::{MemoryPartner, MemoryStore};
use domain::{OrderId, Step};
use lambda_check::answers::assert_sqs_answer;
use lambda_check::fixtures::{self, ORDER_FULFILLED, POISON_DELIVERY_MESSAGE_ID};

fn setup() -> (Arc<MemoryStore>, Arc<MemoryPartner>, notify_delivery::Deps) {
    let store = fixtures::seeded_store();
    let partner = Arc::new(MemoryPartner::default());
    let deps = notify_delivery::Deps {
        store: store.clone(),
        delivery_company: partner.clone(),
    };
    (store, partner, deps)
}

#[tokio::test]
async fn a_batch_from_the_queue_succeeds_with_an_empty_failure_list() {
    let (store, partner, deps) = setup();
    let report = notify_delivery::handle(&deps, fixtures::event("sqs-delivery-request.json")).await;
    assert_sqs_answer(&report, &[]);

    let received = partner.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].event_type, "delivery.requested");
    assert_eq!(received[0].payload["orderId"], ORDER_FULFILLED);
    let order_id = OrderId::parse(ORDER_FULFILLED).unwrap();
    assert!(
        store
            .order(order_id)
            .unwrap()
            .reached(Step::DeliveryNotified)
    );
}

#[tokio::test]
async fn a_poison_message_is_reported_by_its_message_id() {
    let (_, partner, deps) = setup();
    let report = notify_delivery::handle(
        &deps,
        fixtures::event("sqs-delivery-request-with-poison.json"),
    )
    .await;
    assert_sqs_answer(&report, &[POISON_DELIVERY_MESSAGE_ID]);
    assert_eq!(
        partner.received.lock().unwrap().len(),
        1,
        "the good message went through"
    );
}
