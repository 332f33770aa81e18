//! feedback given the SQS event the event source mapping really sends
//! (`messageId`, `receiptHandle`, `body`, `attributes`), answering the
//! partial batch response Lambda reads with `ReportBatchItemFailures`.
//! Fixtures: `tests/fixtures/sqs-feedback*.json`.

use std::sync::Arc;

use domain::memory::{MemoryPartner, MemoryStore};
use domain::{OrderId, Step};
use lambda_check::answers::assert_sqs_answer;
use lambda_check::fixtures::{self, ORDER_OUT_FOR_DELIVERY, POISON_FEEDBACK_MESSAGE_ID};

fn setup() -> (Arc<MemoryStore>, Arc<MemoryPartner>, feedback::Deps) {
    let store = fixtures::seeded_store();
    let partner = Arc::new(MemoryPartner::default());
    let deps = feedback::Deps {
        store: store.clone(),
        customer_service: partner.clone(),
    };
    (store, partner, deps)
}

#[tokio::test]
async fn a_batch_from_the_queue_succeeds_with_an_empty_failure_list() {
    let (store, partner, deps) = setup();
    let report = feedback::handle(&deps, fixtures::event("sqs-feedback.json")).await;
    assert_sqs_answer(&report, &[]);

    let received = partner.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].event_type, "feedback.received");
    assert_eq!(received[0].payload["orderReview"], "Delicious!");
    let order_id = OrderId::parse(ORDER_OUT_FOR_DELIVERY).unwrap();
    assert!(
        store
            .order(order_id)
            .unwrap()
            .reached(Step::CustomerServiceNotified)
    );
}

#[tokio::test]
async fn a_poison_message_is_reported_by_its_message_id() {
    let (_, partner, deps) = setup();
    let report = feedback::handle(&deps, fixtures::event("sqs-feedback-with-poison.json")).await;
    assert_sqs_answer(&report, &[POISON_FEEDBACK_MESSAGE_ID]);
    assert_eq!(
        partner.received.lock().unwrap().len(),
        1,
        "the good message went through"
    );
}
