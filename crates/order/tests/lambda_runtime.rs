//! The real `order` binary under a local Lambda Runtime API, against moto
//! provisioned as template.yaml declares it, with the template's
//! environment: one HTTP API event in, the API Gateway response out, and
//! the order in DynamoDB.

use domain::OrderId;
use domain::ports::OrderStore;
use lambda_check::{Bootstrap, Function, Stack, fixtures};
use serde_json::Value;

#[tokio::test]
async fn the_order_binary_answers_an_http_api_event_through_the_runtime_api() {
    let stack = Stack::start().await.unwrap();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_order"));
    let mut bootstrap = Bootstrap::start(binary, "bakery-order", &stack.env(Function::Order))
        .await
        .unwrap();
    let cold = bootstrap
        .cold_start(&fixtures::text("apigw-v2-post-order.json"))
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let output = bootstrap.output();
    bootstrap.stop().await;

    let answer: Value = serde_json::from_str(cold.outcome.response().unwrap()).unwrap();
    assert_eq!(answer["statusCode"], 201, "{answer:#}\n{output}");
    assert_eq!(answer["headers"]["content-type"], "application/json");
    assert_eq!(answer["isBase64Encoded"], false);
    let body: Value = serde_json::from_str(answer["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["status"], "placed");
    assert!(body["customerToken"].is_string());
    let order_id = OrderId::parse(body["orderId"].as_str().unwrap()).unwrap();
    assert_eq!(answer["headers"]["location"], format!("/order/{order_id}"));

    let stored = stack.store().get(order_id).await.unwrap();
    assert!(stored.is_some(), "the order is in DynamoDB");
    assert!(cold.to_first_next <= cold.to_first_response);
    assert!(cold.peak_rss_kib > 0);
}

#[tokio::test]
async fn a_missing_variable_stops_the_binary_before_its_first_next_with_the_name() {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_order"));
    let mut bootstrap = Bootstrap::start(binary, "bakery-order", &[]).await.unwrap();
    let why = bootstrap
        .invoke(&fixtures::text("apigw-v2-post-order.json"))
        .await
        .unwrap_err();
    assert!(why.contains("exited"), "{why}");
    assert!(why.contains("ORDERS_TABLE"), "{why}");
}
