//! The fulfilled function given the JSON API Gateway (HTTP API, payload
//! format 2.0) really sends, through `lambda_http`'s own adapter, answering
//! the JSON API Gateway reads. Fixture: `apigw-v2-post-fulfilled.json`.

use std::sync::Arc;

use axum::Router;
use domain::auth::TokenHash;
use domain::events::EventType;
use domain::memory::MemoryStore;
use domain::{OrderId, Status};
use lambda_check::fixtures::{self, BAKER_TOKEN, ORDER_PLACED};
use lambda_check::http::{body_json, invoke};
use serde_json::{Value, json};

fn app() -> (Arc<MemoryStore>, Router) {
    let store = fixtures::seeded_store();
    let deps = fulfilled::Deps {
        store: store.clone(),
        baker_token: TokenHash::of(BAKER_TOKEN),
    };
    (store, fulfilled::router(deps))
}

#[tokio::test]
async fn the_baker_fulfils_with_a_bearer_token() {
    let (store, app) = app();
    let response = invoke(app, &fixtures::text("apigw-v2-post-fulfilled.json"))
        .await
        .unwrap();
    assert_eq!(response["statusCode"], 200, "{response:#}");
    assert_eq!(response["headers"]["content-type"], "application/json");
    assert_eq!(response["isBase64Encoded"], false);
    assert_eq!(response["cookies"], json!([]));
    let body = body_json(&response);
    assert_eq!(body["orderId"], ORDER_PLACED);
    assert_eq!(body["status"], "fulfilled");
    assert_eq!(body["fulfillmentId"], "oven-2");

    let order_id = OrderId::parse(ORDER_PLACED).unwrap();
    assert_eq!(store.order(order_id).unwrap().status, Status::Fulfilled);
    let events = store.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, EventType::OrderFulfilled);
}

#[tokio::test]
async fn another_token_in_the_same_event_is_a_403_problem() {
    let (store, app) = app();
    let mut event: Value = fixtures::json("apigw-v2-post-fulfilled.json");
    event["headers"]["authorization"] = json!("Bearer not-the-baker");
    let response = invoke(app, &event.to_string()).await.unwrap();
    assert_eq!(response["statusCode"], 403, "{response:#}");
    assert_eq!(
        response["headers"]["content-type"],
        "application/problem+json"
    );
    assert_eq!(response["isBase64Encoded"], false);
    assert_eq!(body_json(&response)["status"], 403);
    assert!(store.events().is_empty());
}
