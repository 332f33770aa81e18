//! Step 2 of the flow: the cake maker is emailed what to bake.
//!
//! Consumes `order_placed` events from the order stream (other event types
//! are skipped) and sends one email per order: product, quantity, customer
//! name and address, the order id and how to mark it fulfilled. The email's
//! idempotency key is the event id, and the order's timeline records
//! `baker_notified`, so a redelivered event sends nothing twice.

use std::sync::Arc;

use aws_lambda_events::event::kinesis::KinesisEvent;
use chrono::Utc;
use domain::events::{Email, Event, EventType};
use domain::ports::{Mailer, OrderStore};
use domain::{Order, Step};
use lambda_kit::batch::{BatchReport, StepError, for_each_event};

#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn OrderStore>,
    pub mailer: Arc<dyn Mailer>,
    /// Where the cake maker reads orders.
    pub baker_email: String,
    /// The API's base URL, for the "mark it fulfilled" instructions.
    pub api_url: String,
}

/// Handles one batch of stream records.
pub async fn handle(deps: &Deps, batch: KinesisEvent) -> BatchReport {
    for_each_event(batch, |event| notify_baker(deps, event)).await
}

async fn notify_baker(deps: &Deps, event: Event) -> Result<(), StepError> {
    if event.event_type != EventType::OrderPlaced {
        return Ok(());
    }
    let stored = deps.store.get(event.order_id).await?;
    if stored
        .as_ref()
        .is_some_and(|o| o.reached(Step::BakerNotified))
    {
        return Ok(());
    }
    let email = Email {
        key: event.event_id.to_string(),
        to: deps.baker_email.clone(),
        subject: format!(
            "Please bake: {} × {} (order {})",
            event.order.quantity,
            event.order.product_name,
            event.order_id.number()
        ),
        text: baker_email_text(&event.order, &deps.api_url),
    };
    // A refused email (say, an unverified address) is permanent: it is
    // dead-lettered at once instead of being sent again and again.
    deps.mailer.send(&email).await?;
    let now = Utc::now();
    deps.store
        .record_step(event.order_id, Step::BakerNotified, now)
        .await?;
    tracing::info!("baker notified");
    lambda_kit::metrics::step_reached(&event.order, Step::BakerNotified, now);
    Ok(())
}

fn baker_email_text(order: &Order, api_url: &str) -> String {
    let address: String = order
        .address
        .lines()
        .map(|line| format!("    {line}\n"))
        .collect();
    format!(
        "Hello,\n\
         \n\
         A new order is waiting to be baked.\n\
         \n\
         \x20 Order:     {number} (id {id})\n\
         \x20 Product:   {product} ({product_id})\n\
         \x20 Quantity:  {quantity}\n\
         \x20 Customer:  {name}\n\
         \x20 Deliver to:\n\
         {address}\
         \n\
         When it is ready, mark it fulfilled (from the cake maker's page, or):\n\
         \n\
         \x20 curl -X POST {api_url}/order/fulfilled \\\n\
         \x20   -H \"Authorization: Bearer $BAKER_TOKEN\" \\\n\
         \x20   -H \"Content-Type: application/json\" \\\n\
         \x20   -d '{{\"orderId\": \"{id}\"}}'\n\
         \n\
         The order system\n",
        id = order.order_id,
        number = order.order_id.number(),
        product = order.product_name,
        product_id = order.product_id,
        quantity = order.quantity,
        name = order.name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::kinesis::KinesisEventRecord;
    use domain::memory::{MemoryMailer, MemoryStore, placed_order};
    use domain::ports::MailError;

    fn setup() -> (Arc<MemoryStore>, Arc<MemoryMailer>, Deps) {
        let store = Arc::new(MemoryStore::default());
        let mailer = Arc::new(MemoryMailer::default());
        let deps = Deps {
            store: store.clone(),
            mailer: mailer.clone(),
            baker_email: "cakes@bakery.example".into(),
            api_url: "http://127.0.0.1:3000".into(),
        };
        (store, mailer, deps)
    }

    fn batch(events: &[Event]) -> KinesisEvent {
        let mut batch = KinesisEvent::default();
        for (i, event) in events.iter().enumerate() {
            let mut record = KinesisEventRecord::default();
            record.kinesis.partition_key = event.partition_key();
            record.kinesis.sequence_number = format!("{}", i + 1);
            *record.kinesis.data = event.to_json();
            batch.records.push(record);
        }
        batch
    }

    #[tokio::test]
    async fn the_baker_gets_one_email_with_everything_to_bake() {
        let (store, mailer, deps) = setup();
        let mut order = placed_order();
        order.address = "12 Analytical Row\nLondon".into();
        store.insert(order.clone());
        let event = Event::new(EventType::OrderPlaced, &order, Utc::now());
        let report = handle(&deps, batch(&[event.clone(), event.clone()])).await;
        assert!(report.failures.is_empty(), "{report:?}");
        let report = handle(&deps, batch(std::slice::from_ref(&event))).await;
        assert!(report.failures.is_empty());

        let sent = mailer.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1, "duplicates send nothing");
        let email = &sent[0];
        assert_eq!(email.key, event.event_id.to_string());
        assert_eq!(email.to, "cakes@bakery.example");
        assert!(email.subject.contains("Carrot cake"));
        for needle in [
            &order.order_id.to_string(),
            "Carrot cake",
            "Quantity:  1",
            "Ada Lovelace",
            "    12 Analytical Row\n    London",
            "/order/fulfilled",
        ] {
            assert!(
                email.text.contains(needle),
                "missing {needle:?} in\n{}",
                email.text
            );
        }
        assert!(
            store
                .order(order.order_id)
                .unwrap()
                .reached(Step::BakerNotified)
        );
    }

    #[tokio::test]
    async fn other_events_are_skipped() {
        let (store, mailer, deps) = setup();
        let order = placed_order();
        store.insert(order.clone());
        let event = Event::new(EventType::OrderFulfilled, &order, Utc::now());
        assert!(handle(&deps, batch(&[event])).await.failures.is_empty());
        assert!(mailer.sent.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_mail_failure_fails_only_that_record_and_is_retried_later() {
        let (store, mailer, deps) = setup();
        let order = placed_order();
        store.insert(order.clone());
        let event = Event::new(EventType::OrderPlaced, &order, Utc::now());
        *mailer.failure.lock().unwrap() = Some(MailError::Unavailable("smtp down".into()));
        let report = handle(&deps, batch(std::slice::from_ref(&event))).await;
        assert_eq!(report.failures.len(), 1);
        assert_eq!(report.failures[0].item_identifier, "1");
        assert!(report.failures[0].reason.contains("smtp down"));
        assert!(
            !store
                .order(order.order_id)
                .unwrap()
                .reached(Step::BakerNotified)
        );

        *mailer.failure.lock().unwrap() = None;
        assert!(handle(&deps, batch(&[event])).await.failures.is_empty());
        assert_eq!(mailer.sent.lock().unwrap().len(), 1);
    }
}
