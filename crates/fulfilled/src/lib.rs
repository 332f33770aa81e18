//! Step 3 of the flow: the cake maker marks an order fulfilled.
//!
//! `POST /order/fulfilled` (cake maker's token) moves the order
//! `placed -> fulfilled` by compare-and-set, committing `order_fulfilled`
//! for the stream with the move. Repeating it changes nothing and answers the order again; an
//! order that is not `placed` yet cannot be fulfilled (there is no such
//! case today, but the state machine decides, not this handler).
//!
//! The handler checks the token and reads the body; the move itself is
//! [`use_cases::fulfil_order`].

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::routing::post;
use axum::{Json, Router};
use domain::Order;
use domain::auth::TokenHash;
use domain::ports::OrderStore;
use domain::validation::{FulfilRequest, limits};
use lambda_kit::http::{ApiError, JsonBody, bearer_token, no_store};

#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn OrderStore>,
    /// Hash of the cake maker's token.
    pub baker_token: TokenHash,
}

pub fn router(deps: Deps) -> Router {
    Router::new()
        .route("/order/fulfilled", post(mark_fulfilled))
        .layer(DefaultBodyLimit::max(limits::BODY_BYTES))
        .layer(axum::middleware::map_response(no_store))
        .with_state(deps)
}

/// The cake maker, recognised by token before the body is read: who asks
/// comes before what they ask, so strangers learn nothing about which
/// order ids exist, nor how the body is checked.
struct Baker;

impl FromRequestParts<Deps> for Baker {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, deps: &Deps) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers)?;
        if deps.baker_token.matches(token) {
            Ok(Baker)
        } else {
            Err(ApiError::Forbidden)
        }
    }
}

/// `POST /order/fulfilled`: [`use_cases::fulfil_order`], for the cake
/// maker.
async fn mark_fulfilled(
    State(deps): State<Deps>,
    _: Baker,
    JsonBody(body): JsonBody,
) -> Result<Json<Order>, ApiError> {
    let request = FulfilRequest::parse(&body)?;
    Ok(Json(use_cases::fulfil_order(&*deps.store, request).await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use domain::Status;
    use domain::events::EventType;
    use domain::memory::MemoryStore;
    use domain::memory::placed_order;
    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    const BAKER: &str = "baker-secret";

    fn setup() -> (Arc<MemoryStore>, Router) {
        let store = Arc::new(MemoryStore::default());
        let deps = Deps {
            store: store.clone(),
            baker_token: TokenHash::of(BAKER),
        };
        (store, router(deps))
    }

    async fn fulfil(app: &Router, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut request = Request::post("/order/fulfilled");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::from(body.to_string())).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn the_token_is_checked_before_the_body_is_read() {
        let (_, app) = setup();
        let huge = "x".repeat(limits::BODY_BYTES + 1);
        for body in ["{not json".to_string(), huge] {
            for (token, expected) in [
                (None, StatusCode::UNAUTHORIZED),
                (Some("Bearer guess"), StatusCode::FORBIDDEN),
            ] {
                let mut request = Request::post("/order/fulfilled");
                if let Some(token) = token {
                    request = request.header("authorization", token);
                }
                let response = app
                    .clone()
                    .oneshot(request.body(Body::from(body.clone())).unwrap())
                    .await
                    .unwrap();
                assert_eq!(response.status(), expected, "{token:?}");
                assert_eq!(response.headers()["cache-control"], "no-store");
            }
        }
    }

    #[tokio::test]
    async fn the_baker_fulfils_once_and_repeats_change_nothing() {
        let (store, app) = setup();
        let order = placed_order();
        store.insert(order.clone());
        let body = json!({"orderId": order.order_id, "fulfillmentId": "oven-2"});
        let (status, answer) = fulfil(&app, Some(BAKER), body.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["status"], "fulfilled");
        assert_eq!(answer["fulfillmentId"], "oven-2");
        let (status, again) = fulfil(&app, Some(BAKER), body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["timeline"], answer["timeline"]);
        let events = store.events();
        assert_eq!(events.len(), 1, "a repeat puts no second event");
        assert_eq!(events[0].event_type, EventType::OrderFulfilled);
        assert_eq!(events[0].order.status, Status::Fulfilled);
    }

    #[tokio::test]
    async fn only_the_baker_may_fulfil() {
        let (store, app) = setup();
        let order = placed_order();
        store.insert(order.clone());
        let body = json!({"orderId": order.order_id});
        assert_eq!(
            fulfil(&app, None, body.clone()).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            fulfil(&app, Some("nope"), body.clone()).await.0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(store.order(order.order_id).unwrap().status, Status::Placed);
        assert!(store.events().is_empty());
    }

    #[tokio::test]
    async fn unknown_orders_and_bad_bodies() {
        let (_, app) = setup();
        let unknown = json!({"orderId": uuid::Uuid::now_v7()});
        assert_eq!(
            fulfil(&app, Some(BAKER), unknown).await.0,
            StatusCode::NOT_FOUND
        );
        let (status, problem) = fulfil(&app, Some(BAKER), json!({"orderId": 7})).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["errors"][0]["field"], "orderId");
    }

    #[tokio::test]
    async fn a_delivered_order_is_already_past_fulfilment() {
        let (store, app) = setup();
        let mut order = placed_order();
        order.status = Status::Delivered;
        store.insert(order.clone());
        let (status, answer) = fulfil(&app, Some(BAKER), json!({"orderId": order.order_id})).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["status"], "delivered", "never moves backwards");
    }
}
