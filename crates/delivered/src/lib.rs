//! Step 6 of the flow: the customer confirms delivery and leaves a review.
//!
//! `POST /order/delivered` (the customer's own token) moves the order
//! `out_for_delivery -> delivered` by compare-and-set, keeps the review and
//! sends the review to the feedback queue for customer service (in one
//! transaction where the backend has one, see [`AdvanceAndSend`]). If the
//! queue is unavailable the customer gets a 503; their retry finds the order
//! already delivered and sends the message again (same message id, so
//! customer service hears it once).
//!
//! The handler reads the token and the body; the rest is
//! [`use_cases::confirm_delivery`].

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use domain::Order;
use domain::ports::{AdvanceAndSend, OrderStore};
use domain::validation::{DeliverRequest, limits};
use lambda_kit::http::{ApiError, Bearer, JsonBody, no_store};

#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn OrderStore>,
    /// The order table and the feedback queue.
    pub to_feedback: Arc<dyn AdvanceAndSend>,
}

pub fn router(deps: Deps) -> Router {
    Router::new()
        .route("/order/delivered", post(confirm_delivery))
        .layer(DefaultBodyLimit::max(limits::BODY_BYTES))
        .layer(axum::middleware::map_response(no_store))
        .with_state(deps)
}

/// `POST /order/delivered`: [`use_cases::confirm_delivery`], for the
/// order's customer.
async fn confirm_delivery(
    State(deps): State<Deps>,
    // Read before the body: without a token the answer is 401 whatever
    // the body is.
    Bearer(token): Bearer,
    JsonBody(body): JsonBody,
) -> Result<Json<Order>, ApiError> {
    let request = DeliverRequest::parse(&body)?;
    let order =
        use_cases::confirm_delivery(&*deps.store, &*deps.to_feedback, &token, request).await?;
    Ok(Json(order))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use domain::Status;
    use domain::memory::{MemoryQueue, MemoryStore, placed_order, token_of};
    use domain::ports::{AdvanceThenSend, QueueError};
    use http_body_util::BodyExt;
    use serde_json::{Value, json};
    use tower::ServiceExt;

    fn setup() -> (Arc<MemoryStore>, Arc<MemoryQueue>, Router) {
        let store = Arc::new(MemoryStore::default());
        let queue = Arc::new(MemoryQueue::default());
        let deps = Deps {
            store: store.clone(),
            to_feedback: Arc::new(AdvanceThenSend {
                store: store.clone(),
                queue: queue.clone(),
            }),
        };
        (store, queue, router(deps))
    }

    fn out_for_delivery(store: &MemoryStore) -> Order {
        let mut order = placed_order();
        order.status = Status::OutForDelivery;
        store.insert(order.clone());
        order
    }

    async fn deliver(app: &Router, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut request = Request::post("/order/delivered");
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
    async fn the_customer_confirms_and_customer_service_is_queued() {
        let (store, queue, app) = setup();
        let order = out_for_delivery(&store);
        let body = json!({"orderId": order.order_id, "orderReview": "Delicious!", "deliveryCompanyId": "van-7"});
        let (status, answer) = deliver(&app, Some(&token_of(&order)), body).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer["status"], "delivered");
        assert_eq!(answer["orderReview"], "Delicious!");
        let sent = queue.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        let message: Value = serde_json::from_str(&sent[0].body).unwrap();
        assert_eq!(message["orderReview"], "Delicious!");
        assert_eq!(message["deliveryCompanyId"], "van-7");
        assert_eq!(message["messageId"], sent[0].id);
    }

    #[tokio::test]
    async fn a_retry_after_a_queue_failure_completes_with_the_same_message_id() {
        let (store, queue, app) = setup();
        let order = out_for_delivery(&store);
        let body = json!({"orderId": order.order_id, "orderReview": "Nice"});
        *queue.failure.lock().unwrap() = Some(QueueError::Unavailable("down".into()));
        let (status, _) = deliver(&app, Some(&token_of(&order)), body.clone()).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            store.order(order.order_id).unwrap().status,
            Status::Delivered
        );
        *queue.failure.lock().unwrap() = None;
        let (status, _) = deliver(&app, Some(&token_of(&order)), body.clone()).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = deliver(&app, Some(&token_of(&order)), body).await;
        assert_eq!(status, StatusCode::OK);
        let sent = queue.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].id, sent[1].id, "repeats carry the same message id");
    }

    #[tokio::test]
    async fn delivering_before_dispatch_is_a_conflict() {
        let (store, queue, app) = setup();
        let order = placed_order();
        store.insert(order.clone());
        let (status, problem) = deliver(
            &app,
            Some(&token_of(&order)),
            json!({"orderId": order.order_id}),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(problem["currentStatus"], "placed");
        assert_eq!(store.order(order.order_id).unwrap().status, Status::Placed);
        assert!(queue.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn without_a_token_the_body_is_not_read() {
        let (_, _, app) = setup();
        let huge = "x".repeat(limits::BODY_BYTES + 1);
        for body in ["{not json".to_string(), huge] {
            let response = app
                .clone()
                .oneshot(
                    Request::post("/order/delivered")
                        .body(Body::from(body))
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
    }

    #[tokio::test]
    async fn only_the_orders_customer_may_confirm() {
        let (store, queue, app) = setup();
        let order = out_for_delivery(&store);
        let other = out_for_delivery(&store);
        let body = json!({"orderId": order.order_id});
        assert_eq!(
            deliver(&app, None, body.clone()).await.0,
            StatusCode::UNAUTHORIZED
        );
        // Another order's token: the same answer as for no such order.
        let not_yours = deliver(&app, Some(&token_of(&other)), body.clone()).await;
        assert_eq!(
            store.order(order.order_id).unwrap().status,
            Status::OutForDelivery
        );
        assert!(queue.sent.lock().unwrap().is_empty());
        let unknown = json!({"orderId": uuid::Uuid::now_v7()});
        let no_such = deliver(&app, Some(&token_of(&other)), unknown).await;
        assert_eq!(not_yours.0, StatusCode::NOT_FOUND);
        assert_eq!(not_yours, no_such, "status and body alike");
    }
}
