//! The order function given the JSON API Gateway (HTTP API, payload format
//! 2.0) really sends, through `lambda_http`'s own adapter, answering the
//! JSON API Gateway reads. Fixtures: `tests/fixtures/apigw-v2-*.json`.

use std::sync::Arc;

use axum::Router;
use domain::auth::{CustomerTokens, TokenHash};
use domain::memory::MemoryStore;
use domain::{Catalog, OrderId, Status};
use lambda_check::fixtures::{self, BAKER_TOKEN, ORDER_PLACED};
use lambda_check::http::{body_json, invoke, request};
use serde_json::{Value, json};

fn app() -> (Arc<MemoryStore>, Router) {
    let store = fixtures::seeded_store();
    let deps = order::Deps {
        store: store.clone(),
        catalog: Arc::new(Catalog::default()),
        customer_tokens: CustomerTokens::new("customer-token-secret-0123456789abcdef"),
        baker_token: TokenHash::of(BAKER_TOKEN),
        max_wait: std::time::Duration::ZERO,
    };
    (store, order::router(deps))
}

/// The fields API Gateway reads from an HTTP API v2 response, all present.
fn assert_v2_response(response: &Value, status: u16, content_type: &str) {
    assert_eq!(response["statusCode"], status, "{response:#}");
    assert_eq!(response["headers"]["content-type"], content_type);
    assert_eq!(response["isBase64Encoded"], false, "JSON is sent as text");
    assert!(response["body"].is_string(), "{response:#}");
    assert_eq!(response["cookies"], json!([]));
}

#[tokio::test]
async fn post_order_answers_201_with_location_and_customer_token() {
    let (store, app) = app();
    let response = invoke(app, &fixtures::text("apigw-v2-post-order.json"))
        .await
        .unwrap();
    assert_v2_response(&response, 201, "application/json");
    let body = body_json(&response);
    assert_eq!(body["status"], "placed");
    assert_eq!(body["productId"], "chocolate-cake");
    assert_eq!(body["name"], "Ada Lovelace");
    assert!(
        body["customerToken"]
            .as_str()
            .is_some_and(|t| t.len() >= 32)
    );
    let order_id = body["orderId"].as_str().unwrap();
    assert_eq!(
        response["headers"]["location"],
        format!("/order/{order_id}")
    );
    let stored = store.order(OrderId::parse(order_id).unwrap()).unwrap();
    assert_eq!(stored.status, Status::Placed);
    assert_eq!(store.events().len(), 1, "order_placed is on the stream");
}

#[tokio::test]
async fn a_base64_encoded_body_is_decoded_before_the_handler_reads_it() {
    // HTTP APIs hand non-text bodies (here `curl -d`'s form content type)
    // over base64-encoded with isBase64Encoded: true.
    let event = fixtures::text("apigw-v2-post-order-base64.json");
    let parsed = request(&event).unwrap();
    assert!(
        std::str::from_utf8(parsed.body()).unwrap().starts_with('{'),
        "lambda_http decodes the body"
    );
    let (_, app) = app();
    let response = invoke(app, &event).await.unwrap();
    assert_v2_response(&response, 201, "application/json");
    assert_eq!(body_json(&response)["status"], "placed");
}

#[tokio::test]
async fn a_malformed_body_is_a_400_problem() {
    let (store, app) = app();
    let response = invoke(app, &fixtures::text("apigw-v2-post-order-malformed.json"))
        .await
        .unwrap();
    assert_v2_response(&response, 400, "application/problem+json");
    let problem = body_json(&response);
    assert_eq!(problem["status"], 400);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("/malformed-json"),
        "{problem}"
    );
    assert!(store.events().is_empty());
}

#[tokio::test]
async fn get_order_reads_the_path_parameter_and_the_customer_token() {
    let (_, app) = app();
    let event = fixtures::text("apigw-v2-get-order.json");
    assert_eq!(
        request(&event).unwrap().uri().path(),
        format!("/order/{ORDER_PLACED}")
    );
    let response = invoke(app, &event).await.unwrap();
    assert_v2_response(&response, 200, "application/json");
    let body = body_json(&response);
    assert_eq!(body["orderId"], ORDER_PLACED);
    assert_eq!(body["status"], "placed");
    assert!(body.get("customerToken").is_none(), "shown only once");
}

#[tokio::test]
async fn the_default_stage_routes_and_a_named_stage_keeps_its_prefix() {
    // template.yaml and serverless.yml both serve the HTTP API from its
    // `$default` stage, whose rawPath has no stage segment. A named stage
    // (`prod`) puts `/prod` in rawPath, and lambda_http keeps it in the
    // request path, so the router would not match: the stage must stay
    // `$default` (or main.rs strip the prefix) for these routes to work.
    let named = fixtures::text("apigw-v2-get-products-named-stage.json");
    assert_eq!(request(&named).unwrap().uri().path(), "/prod/products");
    let (_, app) = app();
    let response = invoke(app.clone(), &named).await.unwrap();
    assert_eq!(response["statusCode"], 404, "{response:#}");

    let mut default: Value = serde_json::from_str(&named).unwrap();
    default["rawPath"] = json!("/products");
    default["requestContext"]["http"]["path"] = json!("/products");
    default["requestContext"]["stage"] = json!("$default");
    let default = default.to_string();
    assert_eq!(request(&default).unwrap().uri().path(), "/products");
    let response = invoke(app, &default).await.unwrap();
    assert_v2_response(&response, 200, "application/json");
    assert!(
        body_json(&response)["products"]
            .as_array()
            .is_some_and(|p| !p.is_empty())
    );
}
