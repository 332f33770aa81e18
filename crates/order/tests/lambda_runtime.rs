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

    // No X-Correlation-Id in the request: API Gateway's request id is the
    // order's correlation id, in the answer and on the log line.
    assert_eq!(body["correlationId"], "bX9kQj0001EMA=");
    assert_eq!(answer["headers"]["x-correlation-id"], "bX9kQj0001EMA=");
    let lines = lambda_check::json_lines(&output);
    let placed = lines
        .iter()
        .find(|line| line["message"] == "order placed")
        .unwrap_or_else(|| panic!("no 'order placed' line in\n{output}"));
    assert_eq!(placed["span"]["orderId"], order_id.to_string(), "{placed}");
    assert_eq!(
        placed["span"]["correlationId"], "bX9kQj0001EMA=",
        "{placed}"
    );
    // The business metric, as an Embedded Metric Format line.
    let metric = lines
        .iter()
        .find(|line| line["OrdersPlaced"].is_number())
        .unwrap_or_else(|| panic!("no OrdersPlaced metric in\n{output}"));
    assert_eq!(metric["OrdersPlaced"], 1, "{metric}");
    let directive = &metric["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "Bakery", "{metric}");
    assert!(
        directive["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["Name"] == "OrdersPlaced" && m["Unit"] == "Count"),
        "{metric}"
    );

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

// ---------------------------------------------------------------- secrets

use std::time::{Duration, Instant};

use lambda_check::stack::{
    BAKER_TOKEN_PARAMETER, CUSTOMER_TOKEN_SECRET, CUSTOMER_TOKEN_SECRET_PARAMETER, WEBHOOK_SECRET,
};

/// `GET /order/{ORDER_PLACED}` as the cake maker presenting `token`.
fn get_order_as(token: &str) -> String {
    let mut event = fixtures::json("apigw-v2-get-order.json");
    event["headers"]["authorization"] = serde_json::json!(format!("Bearer {token}"));
    event.to_string()
}

/// The status code the function answered `payload` with.
async fn status_of(bootstrap: &mut Bootstrap, payload: &str) -> i64 {
    let (outcome, _) = bootstrap
        .invoke(payload)
        .await
        .unwrap_or_else(|why| panic!("{why}"));
    let answer: Value = serde_json::from_str(outcome.response().unwrap()).unwrap();
    answer["statusCode"]
        .as_i64()
        .unwrap_or_else(|| panic!("no status code in {answer:#}"))
}

fn started_with_no_secret_in_its_environment(env: &[(String, String)]) {
    for (name, value) in env {
        for secret in [fixtures::BAKER_TOKEN, CUSTOMER_TOKEN_SECRET, WEBHOOK_SECRET] {
            assert!(!value.contains(secret), "{name} holds a secret");
        }
    }
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    for plain in ["BAKER_TOKEN", "CUSTOMER_TOKEN_SECRET", "WEBHOOK_SECRET"] {
        assert!(!names.contains(&plain), "{plain} is set");
    }
    assert!(names.contains(&"BAKER_TOKEN_PARAMETER"), "{names:?}");
}

#[tokio::test]
async fn the_cake_makers_token_comes_from_ssm_and_another_token_is_refused() {
    let stack = Stack::start().await.unwrap();
    let env = stack.env(Function::Order);
    started_with_no_secret_in_its_environment(&env);
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_order"));
    let mut bootstrap = Bootstrap::start(binary, "bakery-order", &env)
        .await
        .unwrap();

    let baker = status_of(&mut bootstrap, &get_order_as(fixtures::BAKER_TOKEN)).await;
    let stranger = status_of(&mut bootstrap, &get_order_as("not-the-baker-token-0123")).await;
    // The customer's token is checked against the hash stored with the
    // order, whichever key is in SSM.
    let customer = status_of(
        &mut bootstrap,
        &get_order_as(&fixtures::customer_token(fixtures::ORDER_PLACED)),
    )
    .await;
    let output = bootstrap.output();
    bootstrap.stop().await;
    assert_eq!((baker, stranger, customer), (200, 404, 200), "{output}");
    assert!(
        !output.contains(fixtures::BAKER_TOKEN),
        "a secret in the log:\n{output}"
    );
}

#[tokio::test]
async fn a_missing_parameter_stops_the_binary_before_its_first_next_with_its_name() {
    let stack = Stack::start().await.unwrap();
    stack
        .delete_secret(CUSTOMER_TOKEN_SECRET_PARAMETER)
        .await
        .unwrap();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_order"));
    let mut bootstrap = Bootstrap::start(binary, "bakery-order", &stack.env(Function::Order))
        .await
        .unwrap();
    let why = bootstrap
        .invoke(&fixtures::text("apigw-v2-post-order.json"))
        .await
        .unwrap_err();
    assert!(why.contains("exited"), "{why}");
    assert!(why.contains(CUSTOMER_TOKEN_SECRET_PARAMETER), "{why}");
    assert!(why.contains("CUSTOMER_TOKEN_SECRET_PARAMETER"), "{why}");
    assert!(
        !bootstrap.asked_for_an_event(),
        "it asked for an event:\n{why}"
    );
    // Only the missing one is named: the baker token's parameter exists.
    assert!(!why.contains(BAKER_TOKEN_PARAMETER), "{why}");
}

#[tokio::test]
async fn a_missing_parameter_variable_stops_the_binary_with_its_name() {
    let stack = Stack::start().await.unwrap();
    let env: Vec<(String, String)> = stack
        .env(Function::Order)
        .into_iter()
        .filter(|(name, _)| name != "BAKER_TOKEN_PARAMETER")
        .collect();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_order"));
    let mut bootstrap = Bootstrap::start(binary, "bakery-order", &env)
        .await
        .unwrap();
    let why = bootstrap
        .invoke(&fixtures::text("apigw-v2-post-order.json"))
        .await
        .unwrap_err();
    assert!(why.contains("exited"), "{why}");
    assert!(why.contains("BAKER_TOKEN_PARAMETER"), "{why}");
    assert!(!bootstrap.asked_for_an_event());
}

/// The documented bound is the refresh period: the first invocation after
/// it loads the parameters again. The slack covers starting the process,
/// moto's answers and a busy machine.
const REFRESH_SECONDS: u64 = 1;
const SLACK: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_rotated_baker_token_is_taken_within_the_refresh_period_without_a_restart() {
    let stack = Stack::start().await.unwrap();
    let mut env = stack.env(Function::Order);
    env.push((
        "SECRETS_REFRESH_SECONDS".into(),
        REFRESH_SECONDS.to_string(),
    ));
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_order"));
    let mut bootstrap = Bootstrap::start(binary, "bakery-order", &env)
        .await
        .unwrap();
    let old = fixtures::BAKER_TOKEN;
    let new = "rotated-baker-token-9876543210";
    assert_eq!(status_of(&mut bootstrap, &get_order_as(old)).await, 200);
    assert_eq!(status_of(&mut bootstrap, &get_order_as(new)).await, 404);

    stack.put_secret(BAKER_TOKEN_PARAMETER, new).await.unwrap();
    let rotated_at = Instant::now();
    let bound = Duration::from_secs(REFRESH_SECONDS) + SLACK;
    let mut tries = 0;
    loop {
        tries += 1;
        if status_of(&mut bootstrap, &get_order_as(new)).await == 200 {
            break;
        }
        assert!(
            rotated_at.elapsed() < bound,
            "the new token was still refused after {:?} ({tries} tries); the function printed:\n{}",
            rotated_at.elapsed(),
            bootstrap.output()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let taken_after = rotated_at.elapsed();
    let old_status = status_of(&mut bootstrap, &get_order_as(old)).await;
    let output = bootstrap.output();
    bootstrap.stop().await;
    assert_eq!(old_status, 404, "the old token still works:\n{output}");
    assert!(taken_after < bound, "{taken_after:?}");
    assert!(
        !output.contains(new) && !output.contains(old),
        "a secret in the log:\n{output}"
    );
}
