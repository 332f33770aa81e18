//! The real `notify-delivery` binary under a local Lambda Runtime API,
//! against moto provisioned as template.yaml declares it, with the
//! template's environment: the delivery company reached by email (an SQS
//! event in, the partial batch response out, and the email in SES), or by
//! webhook, signed with the secret the binary reads from moto's SSM.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use lambda_check::stack::{DELIVERY_EMAIL, MAIL_FROM, WEBHOOK_SECRET, WEBHOOK_SECRET_PARAMETER};
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
        .sqs()
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
    let number = domain::OrderId::parse(fixtures::ORDER_FULFILLED)
        .unwrap()
        .number();
    assert!(sent[0]["subject"].as_str().unwrap().contains(&number));
    assert!(
        sent[0]["body"]
            .as_str()
            .unwrap()
            .contains(fixtures::ORDER_FULFILLED)
    );
}

/// A delivery company's webhook that accepts only calls signed with
/// [`WEBHOOK_SECRET`] and counts them.
async fn partner() -> (String, Arc<AtomicUsize>) {
    async fn receive(
        State(accepted): State<Arc<AtomicUsize>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        if outbound::verify_webhook(WEBHOOK_SECRET, &headers, &body) {
            accepted.fetch_add(1, Ordering::SeqCst);
            StatusCode::OK
        } else {
            StatusCode::UNAUTHORIZED
        }
    }
    let accepted = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hooks", axum::routing::post(receive))
        .with_state(accepted.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, accepted)
}

#[tokio::test]
async fn with_a_webhook_the_binary_signs_with_the_secret_from_ssm() {
    let stack = Stack::start().await.unwrap();
    let (url, accepted) = partner().await;
    // As the template sets it with DeliveryWebhookUrl: the webhook and the
    // name of its secret's parameter, no address, no secret.
    let mut env: Vec<(String, String)> = stack
        .env(Function::NotifyDelivery)
        .into_iter()
        .filter(|(name, _)| name != "DELIVERY_EMAIL")
        .collect();
    env.push(("DELIVERY_WEBHOOK_URL".into(), url));
    env.push((
        "WEBHOOK_SECRET_PARAMETER".into(),
        WEBHOOK_SECRET_PARAMETER.into(),
    ));
    assert!(env.iter().all(|(_, value)| !value.contains(WEBHOOK_SECRET)));
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_notify-delivery"));
    let mut bootstrap = Bootstrap::start(binary, "bakery-notify-delivery", &env)
        .await
        .unwrap();
    let (outcome, _) = bootstrap
        .invoke(&fixtures::text("sqs-delivery-request.json"))
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let output = bootstrap.output();
    bootstrap.stop().await;

    let answer: Value = serde_json::from_str(outcome.response().unwrap()).unwrap();
    assert_eq!(answer, json!({"batchItemFailures": []}), "{output}");
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "{output}");
    assert!(stack.moto.sent_emails().await.is_empty());
    assert!(
        !output.contains(WEBHOOK_SECRET),
        "the secret in the log:\n{output}"
    );
}

#[tokio::test]
async fn with_a_webhook_a_missing_secret_parameter_stops_the_binary_with_its_name() {
    let stack = Stack::start().await.unwrap();
    stack.delete_secret(WEBHOOK_SECRET_PARAMETER).await.unwrap();
    let mut env = stack.env(Function::NotifyDelivery);
    env.push((
        "DELIVERY_WEBHOOK_URL".into(),
        "https://courier.example/hooks".into(),
    ));
    env.push((
        "WEBHOOK_SECRET_PARAMETER".into(),
        WEBHOOK_SECRET_PARAMETER.into(),
    ));
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_notify-delivery"));
    let mut bootstrap = Bootstrap::start(binary, "bakery-notify-delivery", &env)
        .await
        .unwrap();
    let why = bootstrap
        .invoke(&fixtures::text("sqs-delivery-request.json"))
        .await
        .unwrap_err();
    assert!(why.contains("exited"), "{why}");
    assert!(why.contains(WEBHOOK_SECRET_PARAMETER), "{why}");
    assert!(!bootstrap.asked_for_an_event(), "{why}");
}
