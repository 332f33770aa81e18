//! The customer confirms delivery and leaves a review.

use chrono::Utc;
use domain::events::FeedbackMessage;
use domain::ports::{AdvanceAndSend, Advanced, OrderStore, QueueMessage};
use domain::validation::DeliverRequest;
use domain::{Order, Status, Step, StepDetails, Transition};
use lambda_kit::logs;
use tracing::Instrument;

use crate::Error;

/// For the order's own customer (`token`): moves the order
/// `out_for_delivery -> delivered` by compare-and-set, keeps the review,
/// and sends the review to the feedback queue for customer service
/// (`to_feedback`: in one transaction where the backend has one, see
/// [`AdvanceAndSend`]). Returns the order afterwards.
///
/// Another order's token is [`Error::NotFound`], exactly as for an order
/// that does not exist. An order not out for delivery yet is
/// [`Error::OutOfOrder`]. If the queue is unavailable the answer is
/// [`Error::Unavailable`] with the order already delivered; a retry finds
/// it so and sends the message again (same message id, so customer
/// service hears it once).
pub async fn confirm_delivery(
    store: &dyn OrderStore,
    to_feedback: &dyn AdvanceAndSend,
    token: &str,
    request: DeliverRequest,
) -> Result<Order, Error> {
    let order = store.get(request.order_id).await?.ok_or(Error::NotFound)?;
    if !order.customer_token_hash.matches(token) {
        return Err(Error::NotFound);
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
    let advanced = to_feedback
        .advance_and_send(&transition, feedback_message)
        .instrument(span.clone())
        .await?;
    match advanced {
        Advanced::Moved(order) => {
            span.in_scope(|| tracing::info!("order delivered"));
            lambda_kit::metrics::step_reached(&order, Step::Delivered, transition.at);
            Ok(order)
        }
        Advanced::AlreadyDone(order) => Ok(order),
        Advanced::OutOfOrder(order) => Err(Error::OutOfOrder {
            current: order.status,
            wanted: Status::Delivered,
        }),
        Advanced::NotFound => Err(Error::NotFound),
    }
}

/// The review for customer service, from the delivered order.
fn feedback_message(order: &Order) -> Result<QueueMessage, String> {
    let delivered_at = order.at(Step::Delivered).unwrap_or_else(Utc::now);
    let message = FeedbackMessage::for_order(order, delivered_at);
    QueueMessage::json(message.message_id, &message)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use domain::memory::{MemoryQueue, MemoryStore, placed_order, token_of};
    use domain::ports::{AdvanceThenSend, QueueError};
    use serde_json::Value;

    struct Setup {
        store: Arc<MemoryStore>,
        queue: Arc<MemoryQueue>,
        to_feedback: AdvanceThenSend,
    }

    fn setup() -> Setup {
        let store = Arc::new(MemoryStore::default());
        let queue = Arc::new(MemoryQueue::default());
        let to_feedback = AdvanceThenSend {
            store: store.clone(),
            queue: queue.clone(),
        };
        Setup {
            store,
            queue,
            to_feedback,
        }
    }

    fn out_for_delivery(store: &MemoryStore) -> Order {
        let mut order = placed_order();
        order.status = Status::OutForDelivery;
        store.insert(order.clone());
        order
    }

    fn request(order: &Order) -> DeliverRequest {
        DeliverRequest {
            order_id: order.order_id,
            delivery_company_id: Some("van-7".into()),
            order_review: Some("Delicious!".into()),
        }
    }

    #[tokio::test]
    async fn the_customer_confirms_and_the_review_is_queued_each_time() {
        let Setup {
            store,
            queue,
            to_feedback,
        } = setup();
        let order = out_for_delivery(&store);
        let token = token_of(&order);
        *queue.failure.lock().unwrap() = Some(QueueError::Unavailable("down".into()));
        let failed = confirm_delivery(&*store, &to_feedback, &token, request(&order)).await;
        assert_eq!(failed, Err(Error::Unavailable("down".into())));
        *queue.failure.lock().unwrap() = None;
        let delivered = confirm_delivery(&*store, &to_feedback, &token, request(&order))
            .await
            .unwrap();
        assert_eq!(delivered.status, Status::Delivered);
        assert_eq!(delivered.order_review.as_deref(), Some("Delicious!"));
        let sent = queue.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        let message: Value = serde_json::from_str(&sent[0].body).unwrap();
        assert_eq!(message["orderReview"], "Delicious!");
        assert_eq!(message["deliveryCompanyId"], "van-7");
    }

    #[tokio::test]
    async fn only_the_orders_customer_may_confirm_and_not_too_early() {
        let Setup {
            store,
            queue,
            to_feedback,
        } = setup();
        let order = out_for_delivery(&store);
        let other = out_for_delivery(&store);
        let not_yours =
            confirm_delivery(&*store, &to_feedback, &token_of(&other), request(&order)).await;
        assert_eq!(not_yours, Err(Error::NotFound));
        let early = placed_order();
        store.insert(early.clone());
        let too_early =
            confirm_delivery(&*store, &to_feedback, &token_of(&early), request(&early)).await;
        assert_eq!(
            too_early,
            Err(Error::OutOfOrder {
                current: Status::Placed,
                wanted: Status::Delivered,
            })
        );
        assert!(queue.sent.lock().unwrap().is_empty());
    }
}
