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
    assert_eq!(body["productId"], 1);
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
async fn the_same_route_answers_with_and_without_a_stage_in_the_path() {
    // template.yaml and serverless.yml serve the HTTP API from `$default`
    // (no stage in rawPath); a named stage (`prod` here) puts `/prod` in
    // rawPath, and lambda_http keeps it. The functions take it back off.
    let named = fixtures::text("apigw-v2-get-products-named-stage.json");
    assert_eq!(request(&named).unwrap().uri().path(), "/prod/products");
    let mut default: Value = serde_json::from_str(&named).unwrap();
    default["rawPath"] = json!("/products");
    default["requestContext"]["http"]["path"] = json!("/products");
    default["requestContext"]["stage"] = json!("$default");
    let default = default.to_string();
    assert_eq!(request(&default).unwrap().uri().path(), "/products");

    let (_, app) = app();
    for event in [named, default] {
        let response = invoke(app.clone(), &event).await.unwrap();
        assert_v2_response(&response, 200, "application/json");
        assert_eq!(body_json(&response)["products"][0]["id"], 1);
    }
}

#[tokio::test]
async fn a_path_that_only_starts_like_the_stage_is_not_cut() {
    // Stage `prod`, path `/products` on the `$default`-less layout of a
    // custom domain: lambda_http makes `/prod/products`; `/production`
    // would be a different path and must stay unrouted.
    let mut event: Value =
        serde_json::from_str(&fixtures::text("apigw-v2-get-products-named-stage.json")).unwrap();
    event["rawPath"] = json!("/productsx");
    let (_, app) = app();
    let response = invoke(app, &event.to_string()).await.unwrap();
    assert_eq!(response["statusCode"], 404, "{response:#}");
}

/// The seed's own request: its body as written, `POST .../dev/order`.
async fn assert_the_seed_order_is_placed(fixture: &str) -> Value {
    let event = fixtures::text(fixture);
    let seed_body = fixtures::text("seed-order-body.json");
    assert_eq!(
        request(&event).unwrap().body().as_ref(),
        seed_body.as_bytes(),
        "the body reaches the router byte for byte"
    );
    let (store, app) = app();
    let response = invoke(app, &event).await.unwrap();
    assert_eq!(response["statusCode"], 201, "{response:#}");
    let body = body_json(&response);
    assert_eq!(body["status"], "placed");
    assert_eq!(body["name"], "Yana Bahdanovich");
    assert_eq!(body["address"], "Inasaridze 2 deadlock 35");
    assert_eq!(body["productId"], 1);
    assert_eq!(body["productName"], "Chocolate cake");
    assert_eq!(body["quantity"], 3);
    assert_eq!(body["totalCents"], 3 * 3200);
    let order_id = OrderId::parse(body["orderId"].as_str().unwrap()).unwrap();
    assert_eq!(store.order(order_id).unwrap().status, Status::Placed);
    assert_eq!(store.events().len(), 1, "order_placed is on the stream");
    response
}

#[tokio::test]
async fn the_seeds_order_on_an_http_api_stage_named_dev() {
    let response = assert_the_seed_order_is_placed("apigw-v2-post-order-seed-dev-stage.json").await;
    assert_v2_response(&response, 201, "application/json");
}

#[tokio::test]
async fn the_seeds_order_on_a_rest_api_stage_named_dev() {
    let response = assert_the_seed_order_is_placed("apigw-v1-post-order-seed-dev-stage.json").await;
    // A REST API reads the 1.0 response shape: headers as lists, no cookies.
    assert_eq!(
        response["multiValueHeaders"]["content-type"],
        json!(["application/json"]),
        "{response:#}"
    );
    assert_eq!(response["isBase64Encoded"], false);
    assert!(response.get("cookies").is_none(), "{response:#}");
}
