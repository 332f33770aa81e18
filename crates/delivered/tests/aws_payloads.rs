//! The delivered function given the JSON API Gateway (HTTP API, payload
//! format 2.0) really sends, through `lambda_http`'s own adapter, answering
//! the JSON API Gateway reads. Fixtures: `apigw-v2-post-delivered*.json`.

use std::sync::Arc;

use axum::Router;
use domain::memory::{MemoryQueue, MemoryStore};
use domain::ports::AdvanceThenSend;
use domain::{OrderId, Status};
use lambda_check::fixtures::{self, ORDER_OUT_FOR_DELIVERY, ORDER_PLACED};
use lambda_check::http::{body_json, invoke};
use serde_json::{Value, json};

fn app() -> (Arc<MemoryStore>, Arc<MemoryQueue>, Router) {
    let store = fixtures::seeded_store();
    let queue = Arc::new(MemoryQueue::default());
    let deps = delivered::Deps {
        store: store.clone(),
        to_feedback: Arc::new(AdvanceThenSend {
            store: store.clone(),
            queue: queue.clone(),
        }),
    };
    (store, queue, delivered::router(deps))
}

#[tokio::test]
async fn delivering_before_dispatch_is_a_409_problem_with_the_current_status() {
    let (store, queue, app) = app();
    let response = invoke(
        app,
        &fixtures::text("apigw-v2-post-delivered-before-dispatch.json"),
    )
    .await
    .unwrap();
    assert_eq!(response["statusCode"], 409, "{response:#}");
    assert_eq!(
        response["headers"]["content-type"],
        "application/problem+json"
    );
    assert_eq!(response["isBase64Encoded"], false);
    assert_eq!(response["cookies"], json!([]));
    let problem = body_json(&response);
    assert_eq!(problem["status"], 409);
    assert_eq!(problem["currentStatus"], "placed");
    let order_id = OrderId::parse(ORDER_PLACED).unwrap();
    assert_eq!(store.order(order_id).unwrap().status, Status::Placed);
    assert!(queue.sent.lock().unwrap().is_empty());
}

#[tokio::test]
async fn the_customer_confirms_delivery_with_their_token() {
    let (store, queue, app) = app();
    let response = invoke(app, &fixtures::text("apigw-v2-post-delivered.json"))
        .await
        .unwrap();
    assert_eq!(response["statusCode"], 200, "{response:#}");
    assert_eq!(response["headers"]["content-type"], "application/json");
    assert_eq!(response["isBase64Encoded"], false);
    let body = body_json(&response);
    assert_eq!(body["status"], "delivered");
    assert_eq!(body["orderReview"], "Delicious!");
    let order_id = OrderId::parse(ORDER_OUT_FOR_DELIVERY).unwrap();
    assert_eq!(store.order(order_id).unwrap().status, Status::Delivered);
    let sent = queue.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let message: Value = serde_json::from_str(&sent[0].body).unwrap();
    assert_eq!(message["deliveryCompanyId"], "van-7");
}
