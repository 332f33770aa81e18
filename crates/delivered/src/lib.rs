//! Step 6 of the flow: the customer confirms delivery and leaves a review.
//!
//! `POST /order/delivered` (the customer's own token) moves the order
//! `out_for_delivery -> delivered` by compare-and-set, keeps the review and
//! sends the review to the feedback queue for customer service (in one
//! transaction where the backend has one, see [`AdvanceAndSend`]). If the
//! queue is unavailable the customer gets a 503; their retry finds the order
//! already delivered and sends the message again (same message id, so
//! customer service hears it once).

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::{Json, Router};
use chrono::Utc;
use domain::events::FeedbackMessage;
use domain::ports::{AdvanceAndSend, Advanced, OrderStore, QueueMessage};
use domain::validation::{DeliverRequest, limits};
use domain::{Order, Status, Step, StepDetails, Transition};
use lambda_kit::http::{ApiError, Bearer, JsonBody, no_store};
use lambda_kit::logs;
use tracing::Instrument;

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

async fn confirm_delivery(
    State(deps): State<Deps>,
    // Read before the body: without a token the answer is 401 whatever
    // the body is.
    Bearer(token): Bearer,
    JsonBody(body): JsonBody,
) -> Result<Json<Order>, ApiError> {
    let request = DeliverRequest::parse(&body)?;
    let order = deps
        .store
        .get(request.order_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    // Another order's token is told "not found", exactly as for an order
    // that does not exist.
    if !order.customer_token_hash.matches(&token) {
        return Err(ApiError::NotFound);
    }
    let transition = Transition {
        order_id: request.order_id,
        to: Status::Delivered,
        at: Utc::now(),
        details: StepDetails {
            delivery_company_id: request.delivery_company_id,
            order_review: request.order_review,
            ..StepDetails::default()
        },
    };
    let span = logs::order_span(order.order_id, order.correlation_id.as_deref());
    // Sent on every confirmation, first or repeated: a repeat may be the
    // retry of one whose send failed.
    let advanced = deps
        .to_feedback
        .advance_and_send(&transition, feedback_message)
        .instrument(span.clone())
        .await?;
    let order = match advanced {
        Advanced::Moved(order) => {
            span.in_scope(|| tracing::info!("order delivered"));
            lambda_kit::metrics::step_reached(&order, Step::Delivered, transition.at);
            order
        }
        Advanced::AlreadyDone(order) => order,
        Advanced::OutOfOrder(order) => {
            return Err(ApiError::OutOfOrder {
                current: order.status,
                wanted: Status::Delivered,
            });
        }
        Advanced::NotFound => return Err(ApiError::NotFound),
    };
    Ok(Json(order))
}

/// The review for customer service, from the delivered order.
fn feedback_message(order: &Order) -> Result<QueueMessage, String> {
    let delivered_at = order.at(Step::Delivered).unwrap_or_else(Utc::now);
    let message = FeedbackMessage::for_order(order, delivered_at);
    QueueMessage::json(message.message_id, &message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
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
