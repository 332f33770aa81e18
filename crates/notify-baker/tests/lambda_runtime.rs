//! The real `notify-baker` binary under a local Lambda Runtime API, against
//! moto provisioned as template.yaml declares it, with the template's
//! environment: a Kinesis event in, the partial batch response out, and
//! the email in SES.

use lambda_check::stack::{BAKER_EMAIL, MAIL_FROM};
use lambda_check::{Bootstrap, Function, Stack, fixtures};
use serde_json::{Value, json};

#[tokio::test]
async fn the_notify_baker_binary_answers_a_kinesis_event_through_the_runtime_api() {
    let stack = Stack::start().await.unwrap();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_notify-baker"));
    let env = stack.env(Function::NotifyBaker);
    let mut bootstrap = Bootstrap::start(binary, "bakery-notify-baker", &env)
        .await
        .unwrap();
    let cold = bootstrap
        .cold_start(&fixtures::text("kinesis-order-placed.json"))
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let answer: Value = serde_json::from_str(cold.outcome.response().unwrap()).unwrap();
    assert_eq!(
        answer,
        json!({"batchItemFailures": []}),
        "{}",
        bootstrap.output()
    );

    // The same process, a second invocation: the poison record is reported
    // by its sequence number, the duplicate good one sends nothing again.
    let (outcome, _) = bootstrap
        .invoke(&fixtures::text("kinesis-order-placed-with-poison.json"))
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let output = bootstrap.output();
    bootstrap.stop().await;
    let answer: Value = serde_json::from_str(outcome.response().unwrap()).unwrap();
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": fixtures::POISON_SEQUENCE_NUMBER}]}),
        "{output}"
    );

    let sent = stack.moto.sent_emails().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["source"], MAIL_FROM);
    assert_eq!(sent[0]["destinations"]["ToAddresses"][0], BAKER_EMAIL);
    assert!(sent[0]["subject"].as_str().unwrap().contains("Carrot cake"));
}
