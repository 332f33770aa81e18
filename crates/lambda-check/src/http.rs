//! An API Gateway HTTP API event through an axum router, the way
//! `lambda_http::run` does it on AWS.
//!
//! `lambda_http::run(router)` wraps the router in `lambda_http::Adapter`:
//! the event JSON is read as a `LambdaRequest` (with only the `apigw_http`
//! feature on, an HTTP API payload 2.0 request), turned into an
//! `http::Request` (base64 bodies decoded, the stage applied to the path),
//! passed to the router, and the router's response turned into the
//! `ApiGatewayV2httpResponse` JSON the runtime posts back. [`invoke`] runs
//! that same adapter behind the stage-removing step the functions' `main`s
//! use (`lambda_kit::api_gateway`), so a test sees exactly the JSON API
//! Gateway reads, for HTTP API (2.0) and REST API (1.0) events alike.

use axum::Router;
use lambda_http::request::LambdaRequest;
use lambda_http::{Adapter, Context, LambdaEvent};
use tower::ServiceExt;

/// Runs `event` (HTTP API or REST API request JSON) through `router` and answers the
/// response JSON as the function would return it to API Gateway:
/// `{"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded",
/// "cookies"}`.
pub async fn invoke(router: Router, event: &str) -> Result<serde_json::Value, String> {
    let request: LambdaRequest = serde_json::from_str(event)
        .map_err(|e| format!("not an event lambda_http accepts: {e}"))?;
    let adapter = Adapter::from(lambda_kit::api_gateway::without_stage(router));
    let response = adapter
        .oneshot(LambdaEvent::new(request, Context::default()))
        .await
        .unwrap_or_else(|never| match never {});
    serde_json::to_value(&response).map_err(|e| format!("response is not JSON: {e}"))
}

/// The `http::Request` a router is handed for `event`, to look at the path
/// and body `lambda_http` makes of it.
pub fn request(event: &str) -> Result<lambda_http::Request, String> {
    lambda_http::request::from_str(event).map_err(|e| format!("not an HTTP API event: {e}"))
}

/// The response's `body` parsed as JSON (`Null` when there is none or it is
/// not JSON).
pub fn body_json(response: &serde_json::Value) -> serde_json::Value {
    response["body"]
        .as_str()
        .and_then(|body| serde_json::from_str(body).ok())
        .unwrap_or(serde_json::Value::Null)
}
