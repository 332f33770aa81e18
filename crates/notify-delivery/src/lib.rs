//! Step 5 of the flow: the delivery company hears about a cake to deliver.
//!
//! Consumes delivery requests from the delivery queue and passes each to the
//! delivery company (a signed webhook or an email, whichever is
//! configured), once per order: the order's timeline records
//! `delivery_notified`, and the webhook id is the message id.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use domain::Step;
use domain::events::{DeliveryRequest, PartnerMessage};
use domain::ports::{OrderStore, PartnerNotifier};
use lambda_kit::batch::BatchReport;
use lambda_kit::partner::relay;

#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn OrderStore>,
    pub delivery_company: Arc<dyn PartnerNotifier>,
}

/// Handles one batch of queue messages.
pub async fn handle(deps: &Deps, batch: SqsEvent) -> BatchReport {
    relay(
        deps.store.as_ref(),
        deps.delivery_company.as_ref(),
        Step::DeliveryNotified,
        batch,
        partner_message,
    )
    .await
}

fn partner_message(request: &DeliveryRequest) -> PartnerMessage {
    let address: String = request
        .address
        .lines()
        .map(|line| format!("    {line}\n"))
        .collect();
    PartnerMessage {
        id: request.message_id.to_string(),
        event_type: "delivery.requested".into(),
        payload: serde_json::to_value(request).unwrap_or_default(),
        subject: format!("Delivery request for order {}", request.order_id.number()),
        text: format!(
            "Please collect and deliver:\n\n\
             \x20 Order:     {} (id {})\n\
             \x20 Cake:      {} × {}\n\
             \x20 Recipient: {}\n\
             \x20 Address:\n{address}\n\
             Ready since {}.\n",
            request.order_id.number(),
            request.order_id,
            request.quantity,
            request.product_name,
            request.name,
            request.requested_at.to_rfc3339(),
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
            delivery_company: partner.clone(),
        };
        (store, partner, deps)
    }

    fn batch(bodies: &[String]) -> SqsEvent {
        let mut batch = SqsEvent::default();
        for (i, body) in bodies.iter().enumerate() {
            let mut message = SqsMessage::default();
            message.message_id = Some(format!("m{i}"));
            message.body = Some(body.clone());
            batch.records.push(message);
        }
        batch
    }

    #[tokio::test]
    async fn the_delivery_company_hears_once_per_order() {
        let (store, partner, deps) = setup();
        let order = placed_order();
        store.insert(order.clone());
        let request = DeliveryRequest::for_order(&order, Utc::now());
        let body = serde_json::to_string(&request).unwrap();
        assert!(
            handle(&deps, batch(&[body.clone(), body.clone()]))
                .await
                .failures
                .is_empty()
        );
        assert!(handle(&deps, batch(&[body])).await.failures.is_empty());
        let received = partner.received.lock().unwrap().clone();
        assert!(
            !received.is_empty() && received.len() <= 2,
            "at most the concurrent pair"
        );
        assert_eq!(received[0].id, request.message_id.to_string());
        assert_eq!(received[0].event_type, "delivery.requested");
        assert_eq!(received[0].payload["address"], "12 Analytical Row");
        assert!(received[0].text.contains("Carrot cake"));
        assert!(
            store
                .order(order.order_id)
                .unwrap()
                .reached(Step::DeliveryNotified)
        );
    }

    #[tokio::test]
    async fn a_partner_failure_fails_that_message_only() {
        let (store, partner, deps) = setup();
        let order = placed_order();
        store.insert(order.clone());
        let good = serde_json::to_string(&DeliveryRequest::for_order(&order, Utc::now())).unwrap();
        *partner.failure.lock().unwrap() = Some(NotifyError::Unavailable("HTTP 500".into()));
        let report = handle(&deps, batch(&[good, "{broken".into()])).await;
        let mut ids: Vec<_> = report
            .failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        ids.sort();
        assert_eq!(ids, vec!["m0", "m1"]);
        assert!(
            !store
                .order(order.order_id)
                .unwrap()
                .reached(Step::DeliveryNotified)
        );
    }
}
