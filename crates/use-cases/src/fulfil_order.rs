//! The cake maker marks an order fulfilled.

use chrono::Utc;
use domain::events::EventType;
use domain::ports::{Advanced, OrderStore};
use domain::validation::FulfilRequest;
use domain::{Order, Status, Step, StepDetails, Transition};
use lambda_kit::logs;
use tracing::Instrument;

use crate::Error;

/// Moves the order `placed -> fulfilled` by compare-and-set, committing
/// `order_fulfilled` for the stream with the move, and returns the order
/// afterwards. Repeating it changes nothing and returns the order as it
/// is; an order not `placed` yet is [`Error::OutOfOrder`] (there is no such
/// case today, but the state machine decides, not this function).
///
/// Only the cake maker may ask: the caller checks their token first.
pub async fn fulfil_order(store: &dyn OrderStore, request: FulfilRequest) -> Result<Order, Error> {
    let transition = Transition {
        order_id: request.order_id,
        to: Status::Fulfilled,
        at: Utc::now(),
        details: StepDetails {
            fulfillment_id: request.fulfillment_id,
            ..StepDetails::default()
        },
    };
    let span = logs::order_span(transition.order_id, None);
    let advanced = store
        .advance(&transition, Some(EventType::OrderFulfilled))
        .instrument(span.clone())
        .await?;
    match advanced {
        Advanced::Moved(order) => {
            if let Some(id) = &order.correlation_id {
                logs::record_correlation_id(&span, id);
            }
            span.in_scope(|| tracing::info!("order fulfilled"));
            lambda_kit::metrics::step_reached(&order, Step::Fulfilled, transition.at);
            Ok(order)
        }
        Advanced::AlreadyDone(order) => Ok(order),
        Advanced::OutOfOrder(order) => Err(Error::OutOfOrder {
            current: order.status,
            wanted: Status::Fulfilled,
        }),
        Advanced::NotFound => Err(Error::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::OrderId;
    use domain::memory::{MemoryStore, placed_order};

    fn request(order_id: OrderId) -> FulfilRequest {
        FulfilRequest {
            order_id,
            fulfillment_id: Some("oven-2".into()),
        }
    }

    #[tokio::test]
    async fn fulfils_once_and_announces_it_once() {
        let store = MemoryStore::default();
        let order = placed_order();
        store.insert(order.clone());
        let fulfilled = fulfil_order(&store, request(order.order_id)).await.unwrap();
        assert_eq!(fulfilled.status, Status::Fulfilled);
        assert_eq!(fulfilled.fulfillment_id.as_deref(), Some("oven-2"));
        let again = fulfil_order(&store, request(order.order_id)).await.unwrap();
        assert_eq!(
            again.timeline, fulfilled.timeline,
            "a repeat changes nothing"
        );
        let events = store.events();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].event_type, EventType::OrderFulfilled);
    }

    #[tokio::test]
    async fn an_unknown_order_is_not_found_and_a_later_one_stays_as_it_is() {
        let store = MemoryStore::default();
        let unknown = OrderId(uuid::Uuid::now_v7());
        assert_eq!(
            fulfil_order(&store, request(unknown)).await,
            Err(Error::NotFound)
        );
        let mut order = placed_order();
        order.status = Status::Delivered;
        store.insert(order.clone());
        let answer = fulfil_order(&store, request(order.order_id)).await;
        assert_eq!(answer.unwrap().status, Status::Delivered, "never backwards");
        assert!(store.events().is_empty());
    }
}
