//! Step 2 of the flow: the cake maker is emailed what to bake, and the
//! customer who gave an email address gets an order confirmation.
//!
//! Consumes `order_placed` events from the order stream (other event types
//! are skipped). Per order:
//!
//! - one email to the cake maker: product, quantity, customer name and
//!   address, the order number and how to mark it fulfilled;
//! - when the customer gave an email address and the site's public address
//!   is known, one confirmation to the customer: the order, its total and
//!   the private tracking link. The link's token is derived from the order
//!   id ([`CustomerTokens`]), the same token `POST /order` answered with, so
//!   no token is ever stored.
//!
//! Each email's idempotency key comes from the event id, and the order's
//! timeline records `baker_notified` once both went out, so a redelivered
//! event sends nothing twice. The two are sent together; a customer
//! address the mail service refuses is logged and skipped, and never holds
//! up the baking.

use std::sync::Arc;

use aws_lambda_events::event::kinesis::KinesisEvent;
use chrono::Utc;
use domain::auth::CustomerTokens;
use domain::events::{Email, Event, EventType};
use domain::money::format_money;
use domain::ports::{MailError, Mailer, OrderStore};
use domain::{Order, Step};
use lambda_kit::batch::{BatchReport, StepError, for_each_event};

#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn OrderStore>,
    pub mailer: Arc<dyn Mailer>,
    /// Where the cake maker reads orders.
    pub baker_email: String,
    /// The site's public base URL (no trailing slash), for the cake maker's
    /// "mark it fulfilled" instructions and the customer's tracking link.
    /// `None`: unknown, so the instructions name `$API_URL` and no
    /// confirmation is sent (a link that goes nowhere helps nobody).
    pub public_url: Option<String>,
    /// Derives the customer's token for the tracking link.
    pub customer_tokens: CustomerTokens,
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
    let api_url = deps.public_url.as_deref().unwrap_or("$API_URL");
    let email = Email {
        key: event.event_id.to_string(),
        to: deps.baker_email.clone(),
        subject: format!(
            "Please bake: {} × {} (order {})",
            event.order.quantity,
            event.order.product_name,
            event.order_id.number()
        ),
        text: baker_email_text(&event.order, api_url),
    };
    // Both at once: the mailer can make them durable together (the outbox
    // writes them in one group), so the customer's mail adds no wait. A
    // refused cake maker's email (say, an unverified address) is permanent:
    // it is dead-lettered at once instead of being sent again and again.
    let (to_baker, to_customer) =
        tokio::join!(deps.mailer.send(&email), send_confirmation(deps, &event));
    to_baker?;
    to_customer?;
    let now = Utc::now();
    deps.store
        .record_step(event.order_id, Step::BakerNotified, now)
        .await?;
    tracing::info!("baker notified");
    lambda_kit::metrics::step_reached(&event.order, Step::BakerNotified, now);
    Ok(())
}

/// The customer's order confirmation, when they gave an address. A refusal
/// (a mistyped or, on a new SES account, unverified address) is the
/// customer's to fix, not a reason to stop the order: it is logged and the
/// step goes on. A mail service that is down is retried like any step.
async fn send_confirmation(deps: &Deps, event: &Event) -> Result<(), StepError> {
    let order = &event.order;
    let Some(to) = order.email.clone() else {
        return Ok(());
    };
    let Some(site) = deps.public_url.as_deref() else {
        tracing::warn!("no public URL configured: no order confirmation sent");
        return Ok(());
    };
    let tracking_link = format!(
        "{site}/track/{}#token={}",
        order.order_id,
        deps.customer_tokens.token_for(order.order_id)
    );
    let email = Email {
        key: format!("{}.confirmation", event.event_id),
        to,
        subject: format!(
            "Your order {}: {} × {}",
            order.order_id.number(),
            order.quantity,
            order.product_name
        ),
        text: confirmation_text(order, &tracking_link),
    };
    match deps.mailer.send(&email).await {
        Ok(()) => {
            tracing::info!("order confirmation sent");
            Ok(())
        }
        Err(MailError::Rejected(reason)) => {
            tracing::warn!(%reason, "order confirmation refused by the mail service; not sent");
            Ok(())
        }
        Err(unavailable) => Err(unavailable.into()),
    }
}

fn indented(text: &str) -> String {
    text.lines().map(|line| format!("    {line}\n")).collect()
}

fn baker_email_text(order: &Order, api_url: &str) -> String {
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
        address = indented(&order.address),
    )
}

fn confirmation_text(order: &Order, tracking_link: &str) -> String {
    format!(
        "Hello {name},\n\
         \n\
         Thank you for your order: it is with our cake maker now.\n\
         \n\
         \x20 Order:     {number} (id {id})\n\
         \x20 Cake:      {quantity} × {product}\n\
         \x20 Total:     {total}\n\
         \x20 Deliver to:\n\
         {address}\
         \n\
         Follow your order, and tell us when your cake has arrived:\n\
         \n\
         \x20 {tracking_link}\n\
         \n\
         This link is private: anyone who has it can follow your order and\n\
         confirm its delivery, so please do not share it.\n\
         \n\
         The bakery\n",
        name = order.name,
        number = order.order_id.number(),
        id = order.order_id,
        quantity = order.quantity,
        product = order.product_name,
        total = format_money(order.total_cents, &order.currency),
        address = indented(&order.address),
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
            public_url: Some("http://127.0.0.1:3000".into()),
            customer_tokens: CustomerTokens::new("test-customer-token-secret"),
        };
        (store, mailer, deps)
    }

    fn assert_mentions(email: &Email, needle: &str) {
        assert!(
            email.text.contains(needle),
            "missing {needle:?} in\n{}",
            email.text
        );
    }

    fn assert_notified(store: &MemoryStore, order: &Order) {
        assert!(
            store
                .order(order.order_id)
                .unwrap()
                .reached(Step::BakerNotified)
        );
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
        assert_eq!(sent.len(), 2, "duplicates send nothing: {sent:?}");
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
            assert_mentions(email, needle);
        }
        assert_notified(&store, &order);
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
        let sent = mailer.sent.lock().unwrap().clone();
        assert_eq!(
            sent.len(),
            2,
            "the cake maker's and the confirmation, once each"
        );
    }

    fn order_with_email() -> Order {
        let mut order = placed_order();
        order.email = Some("ada@example.com".into());
        order.quantity = 2;
        order.total_cents = 6400;
        order.currency = "EUR".into();
        order
    }

    #[tokio::test]
    async fn a_customer_with_an_email_gets_one_confirmation_with_a_working_link() {
        let (store, mailer, deps) = setup();
        let order = order_with_email();
        store.insert(order.clone());
        let event = Event::new(EventType::OrderPlaced, &order, Utc::now());
        let report = handle(&deps, batch(&[event.clone(), event.clone()])).await;
        assert!(report.failures.is_empty(), "{report:?}");

        let sent = mailer.sent.lock().unwrap().clone();
        assert_eq!(
            sent.len(),
            2,
            "one for the cake maker, one for the customer"
        );
        let confirmation = sent
            .iter()
            .find(|e| e.to == "ada@example.com")
            .expect("a confirmation");
        assert_eq!(confirmation.key, format!("{}.confirmation", event.event_id));
        assert!(confirmation.subject.contains(&order.order_id.number()));
        let token = deps.customer_tokens.token_for(order.order_id);
        let link = format!(
            "http://127.0.0.1:3000/track/{}#token={token}",
            order.order_id
        );
        for needle in [
            link.as_str(),
            "Hello Ada Lovelace",
            "2 × Carrot cake",
            "Total:     €64.00",
            &order.order_id.number(),
        ] {
            assert_mentions(confirmation, needle);
        }
        assert_notified(&store, &order);
    }

    #[tokio::test]
    async fn no_email_no_confirmation_and_no_public_url_no_confirmation() {
        let (store, mailer, deps) = setup();
        let mut order = placed_order();
        order.email = None;
        store.insert(order.clone());
        let event = Event::new(EventType::OrderPlaced, &order, Utc::now());
        assert!(handle(&deps, batch(&[event])).await.failures.is_empty());
        assert_eq!(
            mailer.sent.lock().unwrap().len(),
            1,
            "only the cake maker's"
        );

        let (store, mailer, mut deps) = setup();
        deps.public_url = None;
        let order = order_with_email();
        store.insert(order.clone());
        let event = Event::new(EventType::OrderPlaced, &order, Utc::now());
        assert!(handle(&deps, batch(&[event])).await.failures.is_empty());
        let sent = mailer.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1, "no link to give, so no confirmation");
        assert!(
            sent[0]
                .text
                .contains("curl -X POST $API_URL/order/fulfilled")
        );
    }

    #[tokio::test]
    async fn a_refused_customer_address_never_holds_up_the_baking() {
        let (store, mailer, deps) = setup();
        let order = order_with_email();
        store.insert(order.clone());
        *mailer.failure_for.lock().unwrap() = Some((
            "ada@example.com".into(),
            MailError::Rejected("Email address is not verified".into()),
        ));
        let event = Event::new(EventType::OrderPlaced, &order, Utc::now());
        let report = handle(&deps, batch(&[event])).await;
        assert!(report.failures.is_empty(), "{report:?}");
        let sent = mailer.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].to, "cakes@bakery.example");
        assert_notified(&store, &order);
    }

    #[tokio::test]
    async fn a_mail_service_down_for_the_confirmation_retries_the_record() {
        let (store, mailer, deps) = setup();
        let order = order_with_email();
        store.insert(order.clone());
        *mailer.failure_for.lock().unwrap() = Some((
            "ada@example.com".into(),
            MailError::Unavailable("throttled".into()),
        ));
        let event = Event::new(EventType::OrderPlaced, &order, Utc::now());
        let report = handle(&deps, batch(std::slice::from_ref(&event))).await;
        assert_eq!(report.failures.len(), 1);
        assert!(
            report.failures[0].reason.starts_with("transient:"),
            "{report:?}"
        );
        assert!(
            !store
                .order(order.order_id)
                .unwrap()
                .reached(Step::BakerNotified),
            "not recorded until the customer has their confirmation"
        );

        *mailer.failure_for.lock().unwrap() = None;
        assert!(handle(&deps, batch(&[event])).await.failures.is_empty());
        let sent = mailer.sent.lock().unwrap().clone();
        assert_eq!(sent.iter().filter(|e| e.to == "ada@example.com").count(), 1);
    }
}
