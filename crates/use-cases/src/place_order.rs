//! A customer orders a cake.

use chrono::Utc;
use domain::auth::{CustomerTokens, TokenHash};
use domain::events::{Event, EventType};
use domain::ports::{IdempotencyKey, NewOrder, OrderStore, Placed};
use domain::validation::OrderRequest;
use domain::{Catalog, Order, OrderId, Status, Step, StepTime};
use lambda_kit::logs;
use tracing::Instrument;

use crate::Error;

/// An order to place, as the customer asked for it.
#[derive(Debug, Clone)]
pub struct PlaceOrder {
    /// What the customer asked for, validated against the catalog.
    pub request: OrderRequest,
    /// The client's key for this request (`Idempotency-Key`, or the shop
    /// form's own): a retry with it places nothing new.
    pub idempotency_key: Option<String>,
    /// Follows the order through every log line ([`domain::correlation`]).
    pub correlation_id: String,
}

/// An order placed, or found placed by an earlier request with the same
/// idempotency key.
#[derive(Debug, Clone)]
pub struct PlacedOrder {
    pub order: Order,
    /// The customer's secret token of this order, which they need to
    /// follow it and to confirm delivery.
    pub customer_token: String,
    /// The order stored by an earlier request with the same key (with its
    /// own id and correlation id), not a new one.
    pub replayed: bool,
}

/// Prices the order from the catalog and stores it with status `placed`
/// together with its `order_placed` event, in one write
/// ([`OrderStore::place`]): once this returns `Ok`, the event is certain to
/// reach the stream and the cake maker hears of it. Nothing is stored on
/// an `Err`.
///
/// A retry with the same idempotency key returns the order stored then
/// (`replayed`), and the same customer token; the same key with a
/// different request is [`Error::IdempotencyKeyReused`].
///
/// Logs `order placed` in the order's span and counts the order
/// (`lambda_kit::metrics::order_placed`), a replay not counted again.
pub async fn place_order(
    store: &dyn OrderStore,
    catalog: &Catalog,
    customer_tokens: &CustomerTokens,
    place: PlaceOrder,
) -> Result<PlacedOrder, Error> {
    let PlaceOrder {
        request,
        idempotency_key,
        correlation_id,
    } = place;
    let product = catalog
        .find(&request.product_id)
        .ok_or_else(|| Error::Failed("validated product vanished".into()))?;

    let order_id = OrderId(uuid::Uuid::now_v7());
    let now = Utc::now();
    let order = Order {
        order_id,
        status: Status::Placed,
        name: request.name.clone(),
        address: request.address.clone(),
        email: request.email.clone(),
        product_id: product.id.clone(),
        product_name: product.name.clone(),
        quantity: request.quantity,
        unit_price_cents: product.price_cents,
        total_cents: u64::from(product.price_cents) * u64::from(request.quantity),
        currency: catalog.currency.clone(),
        fulfillment_id: None,
        delivery_company_id: None,
        order_review: None,
        timeline: vec![StepTime {
            step: Step::Placed,
            at: now,
        }],
        correlation_id: Some(correlation_id.clone()),
        customer_token_hash: TokenHash::of(&customer_tokens.token_for(order_id)),
    };
    let new = NewOrder {
        event: Event::new(EventType::OrderPlaced, &order, now),
        idempotency: idempotency_key.map(|key| IdempotencyKey {
            key,
            fingerprint: request.fingerprint(),
        }),
        order,
    };
    let span = logs::order_span(order_id, Some(&correlation_id));
    let placed = store.place(&new).instrument(span.clone()).await?;
    let (order, replayed) = match placed {
        Placed::Created(order) => (order, false),
        // The order stored then, with its own id and correlation id.
        Placed::Replayed(order) => (order, true),
        Placed::KeyReused => return Err(Error::IdempotencyKeyReused),
    };
    if replayed {
        // The stored order's own id and correlation id.
        let span = logs::order_span(order.order_id, order.correlation_id.as_deref());
        span.in_scope(|| tracing::info!(replayed, "order placed"));
    } else {
        span.in_scope(|| tracing::info!(replayed, "order placed"));
        lambda_kit::metrics::order_placed();
    }
    Ok(PlacedOrder {
        customer_token: customer_tokens.token_for(order.order_id),
        order,
        replayed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::memory::MemoryStore;
    use domain::ports::StoreError;
    use serde_json::json;

    fn request(quantity: u32) -> OrderRequest {
        let body = json!({"name": "Ada Lovelace", "address": "12 Analytical Row", "productId": 3, "quantity": quantity});
        OrderRequest::parse(&body, &Catalog::default()).unwrap()
    }

    fn place(quantity: u32, key: Option<&str>) -> PlaceOrder {
        PlaceOrder {
            request: request(quantity),
            idempotency_key: key.map(str::to_string),
            correlation_id: "corr-1".into(),
        }
    }

    async fn run(store: &MemoryStore, place: PlaceOrder) -> Result<PlacedOrder, Error> {
        let tokens = CustomerTokens::new("token-secret");
        place_order(store, &Catalog::default(), &tokens, place).await
    }

    #[tokio::test]
    async fn an_order_is_priced_stored_and_announced_with_its_token() {
        let store = MemoryStore::default();
        let placed = run(&store, place(2, None)).await.unwrap();
        assert!(!placed.replayed);
        let order = &placed.order;
        assert_eq!(order.status, Status::Placed);
        assert_eq!(order.product_name, "Lemon tart");
        assert_eq!((order.unit_price_cents, order.total_cents), (2400, 4800));
        assert_eq!(order.currency, "EUR");
        assert_eq!(order.correlation_id.as_deref(), Some("corr-1"));
        assert!(order.customer_token_hash.matches(&placed.customer_token));
        let events = store.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, EventType::OrderPlaced);
        assert_eq!(events[0].order_id, order.order_id);
    }

    #[tokio::test]
    async fn a_retry_with_the_key_replays_the_first_order_and_token() {
        let store = MemoryStore::default();
        let first = run(&store, place(2, Some("key-1"))).await.unwrap();
        let mut again = place(2, Some("key-1"));
        again.correlation_id = "corr-2".into();
        let second = run(&store, again).await.unwrap();
        assert!(second.replayed);
        assert_eq!(second.order.order_id, first.order.order_id);
        assert_eq!(second.customer_token, first.customer_token);
        assert_eq!(
            second.order.correlation_id.as_deref(),
            Some("corr-1"),
            "the stored order's own correlation id"
        );
        assert_eq!(store.order_count(), 1);
        assert_eq!(store.events().len(), 1);
    }

    #[tokio::test]
    async fn the_key_with_another_request_is_refused() {
        let store = MemoryStore::default();
        run(&store, place(2, Some("key-1"))).await.unwrap();
        let refused = run(&store, place(3, Some("key-1"))).await;
        assert_eq!(refused.unwrap_err(), Error::IdempotencyKeyReused);
        assert_eq!(store.order_count(), 1);
    }

    #[tokio::test]
    async fn busy_storage_is_unavailable_and_stores_nothing() {
        let store = MemoryStore::default();
        *store.failure.lock().unwrap() = Some(StoreError::Unavailable("locked".into()));
        let refused = run(&store, place(1, None)).await;
        assert_eq!(refused.unwrap_err(), Error::Unavailable("locked".into()));
        assert_eq!(store.order_count(), 0);
    }
}
