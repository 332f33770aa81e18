//! notify-baker given the Kinesis event the event source mapping really
//! sends (base64 `data`, sequence numbers, `eventID`), answering the
//! partial batch response Lambda reads with `ReportBatchItemFailures`.
//! Fixtures: `tests/fixtures/kinesis-order-placed*.json`.

use std::sync::Arc;

use domain::memory::{MemoryMailer, MemoryStore};
use domain::{OrderId, Step};
use lambda_check::answers::assert_kinesis_answer;
use lambda_check::fixtures::{self, ORDER_PLACED, POISON_SEQUENCE_NUMBER};

fn setup() -> (Arc<MemoryStore>, Arc<MemoryMailer>, notify_baker::Deps) {
    let store = fixtures::seeded_store();
    let mailer = Arc::new(MemoryMailer::default());
    let deps = notify_baker::Deps {
        store: store.clone(),
        mailer: mailer.clone(),
        baker_email: "baker@bakery.example".into(),
        public_url: Some("https://a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com".into()),
        customer_tokens: domain::auth::CustomerTokens::new("aws-payloads-customer-token-key"),
    };
    (store, mailer, deps)
}

#[tokio::test]
async fn a_batch_from_the_stream_succeeds_with_an_empty_failure_list() {
    let (store, mailer, deps) = setup();
    let report = notify_baker::handle(&deps, fixtures::event("kinesis-order-placed.json")).await;
    assert_kinesis_answer(&report, &[]);

    let sent = mailer.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 2, "the cake maker's and the customer's");
    assert_eq!(sent[0].to, "baker@bakery.example");
    assert_eq!(sent[1].to, "ada@example.com");
    assert!(
        sent[0].subject.contains("2 × Carrot cake"),
        "{}",
        sent[0].subject
    );
    assert!(sent[0].text.contains("    12 Analytical Row\n    London\n"));
    let order = store.order(OrderId::parse(ORDER_PLACED).unwrap()).unwrap();
    assert!(order.reached(Step::BakerNotified));
}

#[tokio::test]
async fn a_poison_record_is_reported_by_its_sequence_number() {
    let (_, mailer, deps) = setup();
    let report = notify_baker::handle(
        &deps,
        fixtures::event("kinesis-order-placed-with-poison.json"),
    )
    .await;
    assert_kinesis_answer(&report, &[POISON_SEQUENCE_NUMBER]);
    assert_eq!(
        mailer.sent.lock().unwrap().len(),
        2,
        "the good record went through: the cake maker's and the customer's"
    );
}
