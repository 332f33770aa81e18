//! The real `notify-delivery` binary under a local Lambda Runtime API,
//! against moto provisioned as template.yaml declares it, with the
//! template's environment (the delivery company reached by email): an SQS
//! event in, the partial batch response out, and the email in SES.

use lambda_check::stack::{DELIVERY_EMAIL, MAIL_FROM};
use lambda_check::{Bootstrap, Function, Stack, fixtures};
use serde_json::{Value, json};

#[tokio::test]
async fn the_notify_delivery_binary_answers_an_sqs_event_through_the_runtime_api() {
    let stack = Stack::start().await.unwrap();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_notify-delivery"));
    let env = stack.env(Function::NotifyDelivery);
    let mut bootstrap = Bootstrap::start(binary, "bakery-notify-delivery", &env)
        .await
        .unwrap();
    let (outcome, _) = bootstrap
        .invoke(&fixtures::text("sqs-delivery-request-with-poison.json"))
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let output = bootstrap.output();
    bootstrap.stop().await;

    // The poison message can never succeed: the function sends it to the
    // dead-letter queue at once, with its reason, and reports nothing for
    // the mapping to retry.
    let answer: Value = serde_json::from_str(outcome.response().unwrap()).unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}), "{output}");
    let dead = stack
        .clients
        .sqs
        .receive_message()
        .queue_url(&stack.delivery_dlq_url)
        .message_attribute_names("All")
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let dead = dead.messages();
    assert_eq!(dead.len(), 1, "{output}");
    let reason = dead[0].message_attributes().unwrap()["reason"]
        .string_value()
        .unwrap();
    assert!(reason.starts_with("permanent:"), "{reason}");
    let sent = stack.moto.sent_emails().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["source"], MAIL_FROM);
    assert_eq!(sent[0]["destinations"]["ToAddresses"][0], DELIVERY_EMAIL);
    assert!(
        sent[0]["subject"]
            .as_str()
            .unwrap()
            .contains(fixtures::ORDER_FULFILLED)
    );
}
