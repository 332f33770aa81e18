//! The real `fulfilled` binary under a local Lambda Runtime API, against
//! moto provisioned as template.yaml declares it, with the template's
//! environment: the cake maker's token is only in SSM Parameter Store, the
//! environment names its parameter.

use domain::ports::OrderStore;
use domain::{OrderId, Status};
use lambda_check::stack::BAKER_TOKEN_PARAMETER;
use lambda_check::{Bootstrap, Function, Stack, fixtures};
use serde_json::{Value, json};

/// `POST /order/fulfilled` for the placed order, presenting `token`.
fn fulfil_as(token: &str) -> String {
    let mut event = fixtures::json("apigw-v2-post-fulfilled.json");
    event["headers"]["authorization"] = json!(format!("Bearer {token}"));
    event.to_string()
}

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

#[tokio::test]
async fn the_fulfilled_binary_takes_the_cake_makers_token_from_ssm() {
    let stack = Stack::start().await.unwrap();
    let env = stack.env(Function::Fulfilled);
    assert!(
        env.iter().all(|(_, value)| value != fixtures::BAKER_TOKEN),
        "the token is in the environment"
    );
    assert!(env.contains(&("BAKER_TOKEN_PARAMETER".into(), BAKER_TOKEN_PARAMETER.into())));
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_fulfilled"));
    let mut bootstrap = Bootstrap::start(binary, "bakery-fulfilled", &env)
        .await
        .unwrap();

    let stranger = status_of(&mut bootstrap, &fulfil_as("not-the-baker-token-0123")).await;
    let order_id = OrderId::parse(fixtures::ORDER_PLACED).unwrap();
    let untouched = stack.store().get(order_id).await.unwrap().unwrap().status;
    let baker = status_of(&mut bootstrap, &fulfil_as(fixtures::BAKER_TOKEN)).await;
    let output = bootstrap.output();
    bootstrap.stop().await;

    assert_eq!((stranger, baker), (403, 200), "{output}");
    assert_eq!(untouched, Status::Placed);
    let stored = stack.store().get(order_id).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Fulfilled);
}

#[tokio::test]
async fn a_missing_baker_token_parameter_stops_the_binary_before_its_first_next() {
    let stack = Stack::start().await.unwrap();
    stack.delete_secret(BAKER_TOKEN_PARAMETER).await.unwrap();
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_fulfilled"));
    let mut bootstrap =
        Bootstrap::start(binary, "bakery-fulfilled", &stack.env(Function::Fulfilled))
            .await
            .unwrap();
    let why = bootstrap
        .invoke(&fixtures::text("apigw-v2-post-fulfilled.json"))
        .await
        .unwrap_err();
    assert!(why.contains("exited"), "{why}");
    assert!(why.contains(BAKER_TOKEN_PARAMETER), "{why}");
    assert!(!bootstrap.asked_for_an_event(), "{why}");
}
