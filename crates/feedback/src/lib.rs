//! Step 7 of the flow: the customer's review reaches customer service.
//!
//! Consumes messages from the feedback queue and passes each to customer
//! service (a signed webhook or an email, whichever is configured), once per
//! order: the order's timeline records `customer_service_notified`, and the
//! webhook id is the message id.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use domain::Step;
use domain::events::{FeedbackMessage, PartnerMessage};
use domain::ports::{OrderStore, PartnerNotifier};
use lambda_kit::batch::BatchReport;
use lambda_kit::partner::relay;

#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn OrderStore>,
    pub customer_service: Arc<dyn PartnerNotifier>,
}

/// Handles one batch of queue messages.
pub async fn handle(deps: &Deps, batch: SqsEvent) -> BatchReport {
    relay(
        deps.store.as_ref(),
        deps.customer_service.as_ref(),
        Step::CustomerServiceNotified,
        batch,
        partner_message,
    )
    .await
}

fn partner_message(feedback: &FeedbackMessage) -> PartnerMessage {
    let review = feedback
        .order_review
        .as_deref()
        .unwrap_or("(no review left)");
    PartnerMessage {
        id: feedback.message_id.to_string(),
        event_type: "feedback.received".into(),
        payload: serde_json::to_value(feedback).unwrap_or_default(),
        subject: format!("Customer feedback for order {}", feedback.order_id.number()),
        text: format!(
            "{name} confirmed delivery of their {product} on {at}.\n\n\
             Order: {number} (id {id})\n\n\
             Review:\n{review}\n\n\
             Contact: {contact}\n",
            number = feedback.order_id.number(),
            id = feedback.order_id,
            name = feedback.name,
            product = feedback.product_name,
            at = feedback.delivered_at.to_rfc3339(),
            contact = feedback.email.as_deref().unwrap_or("(no email given)"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::sqs::SqsMessage;
    use chrono::Utc;
    use domain::memory::{MemoryPartner, MemoryStore, placed_order};
    use domain::ports::NotifyError;

    fn setup() -> (Arc<MemoryStore>, Arc<MemoryPartner>, Deps) {
        let store = Arc::new(MemoryStore::default());
        let partner = Arc::new(MemoryPartner::default());
        let deps = Deps {
            store: store.clone(),
            customer_service: partner.clone(),
        };
        (store, partner, deps)
    }

    fn one_message(body: String) -> SqsEvent {
        let mut message = SqsMessage::default();
        message.message_id = Some("m-1".into());
        message.body = Some(body);
        let mut batch = SqsEvent::default();
        batch.records.push(message);
        batch
    }

    #[tokio::test]
    async fn customer_service_gets_the_review_once() {
        let (store, partner, deps) = setup();
        let mut order = placed_order();
        order.order_review = Some("Best cake ever".into());
        store.insert(order.clone());
        let body = serde_json::to_string(&FeedbackMessage::for_order(&order, Utc::now())).unwrap();
        for _ in 0..3 {
            assert!(
                handle(&deps, one_message(body.clone()))
                    .await
                    .failures
                    .is_empty()
            );
        }
        let received = partner.received.lock().unwrap().clone();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].event_type, "feedback.received");
        assert_eq!(received[0].payload["orderReview"], "Best cake ever");
        assert!(received[0].text.contains("Best cake ever"));
        assert!(received[0].text.contains("ada@example.com"));
        assert!(
            store
                .order(order.order_id)
                .unwrap()
                .reached(Step::CustomerServiceNotified)
        );
    }

    #[tokio::test]
    async fn a_rejection_is_reported_with_its_reason() {
        let (store, partner, deps) = setup();
        let order = placed_order();
        store.insert(order.clone());
        let body = serde_json::to_string(&FeedbackMessage::for_order(&order, Utc::now())).unwrap();
        *partner.failure.lock().unwrap() = Some(NotifyError::Rejected("HTTP 400".into()));
        let report = handle(&deps, one_message(body)).await;
        assert_eq!(report.failures.len(), 1);
        assert!(report.failures[0].reason.contains("HTTP 400"));
    }
}
