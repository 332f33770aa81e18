//! Step 4 of the flow: a fulfilled order goes out for delivery.
//!
//! Consumes `order_fulfilled` events from the order stream (other event
//! types are skipped), moves the order `fulfilled -> out_for_delivery` by
//! compare-and-set and sends a delivery request to the delivery queue. A
//! redelivered event finds the order already out for delivery and sends the
//! request again with the same message id, which completes a step that
//! failed between the two writes and is recognised downstream as a repeat.

use std::sync::Arc;

use aws_lambda_events::event::kinesis::KinesisEvent;
use chrono::Utc;
use domain::events::{DeliveryRequest, Event, EventType};
use domain::ports::{AdvanceAndSend, Advanced, QueueMessage};
use domain::{Order, Status, Step, StepDetails, Transition};
use lambda_kit::batch::{BatchReport, StepError, for_each_event};

#[derive(Clone)]
pub struct Deps {
    /// The order table and the delivery queue.
    pub to_delivery: Arc<dyn AdvanceAndSend>,
}

/// Handles one batch of stream records.
pub async fn handle(deps: &Deps, batch: KinesisEvent) -> BatchReport {
    for_each_event(batch, |event| dispatch(deps, event)).await
}

async fn dispatch(deps: &Deps, event: Event) -> Result<(), StepError> {
    if event.event_type != EventType::OrderFulfilled {
        return Ok(());
    }
    let transition = Transition {
        order_id: event.order_id,
        to: Status::OutForDelivery,
        at: Utc::now(),
        details: StepDetails::default(),
    };
    match deps
        .to_delivery
        .advance_and_send(&transition, delivery_request)
        .await?
    {
        Advanced::Moved(order) => {
            tracing::info!("out for delivery");
            lambda_kit::metrics::step_reached(&order, Step::OutForDelivery, transition.at);
            Ok(())
        }
        Advanced::AlreadyDone(_) => Ok(()),
        // The order may still catch up (a record read before its write
        // settled): worth another try.
        Advanced::OutOfOrder(order) => Err(StepError::Transient(format!(
            "order is {} but a fulfilled event arrived",
            order.status
        ))),
        Advanced::NotFound => Err(StepError::Transient("order not found".into())),
    }
}

/// The delivery company's request for an order out for delivery.
fn delivery_request(order: &Order) -> Result<QueueMessage, String> {
    let requested_at = order.at(Step::OutForDelivery).unwrap_or_else(Utc::now);
    let request = DeliveryRequest::for_order(order, requested_at);
    QueueMessage::json(request.message_id, &request)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::kinesis::KinesisEventRecord;
    use domain::memory::{MemoryQueue, MemoryStore, placed_order};
    use domain::ports::{AdvanceThenSend, QueueError};

    fn setup() -> (Arc<MemoryStore>, Arc<MemoryQueue>, Deps) {
        let store = Arc::new(MemoryStore::default());
        let queue = Arc::new(MemoryQueue::default());
        let deps = Deps {
            to_delivery: Arc::new(AdvanceThenSend {
                store: store.clone(),
                queue: queue.clone(),
            }),
        };
        (store, queue, deps)
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

    fn fulfilled(store: &MemoryStore) -> Event {
        let mut order = placed_order();
        order.status = Status::Fulfilled;
        order.fulfillment_id = Some("oven-1".into());
        store.insert(order.clone());
        Event::new(EventType::OrderFulfilled, &order, Utc::now())
    }

    #[tokio::test]
    async fn a_fulfilled_order_goes_out_for_delivery_once() {
        let (store, queue, deps) = setup();
        let event = fulfilled(&store);
        assert!(
            handle(&deps, batch(&[event.clone(), event.clone()]))
                .await
                .failures
                .is_empty()
        );
        let order = store.order(event.order_id).unwrap();
        assert_eq!(order.status, Status::OutForDelivery);
        let sent = queue.sent.lock().unwrap().clone();
        assert!(!sent.is_empty());
        assert!(
            sent.iter().all(|m| m.id == sent[0].id),
            "one message id per order"
        );
        let request: DeliveryRequest = serde_json::from_str(&sent[0].body).unwrap();
        assert_eq!(request.order_id, event.order_id);
        assert_eq!(request.fulfillment_id.as_deref(), Some("oven-1"));
        assert_eq!(request.address, "12 Analytical Row");
    }

    #[tokio::test]
    async fn a_queue_failure_is_retried_and_completes_the_step() {
        let (store, queue, deps) = setup();
        let event = fulfilled(&store);
        *queue.failure.lock().unwrap() = Some(QueueError::Unavailable("throttled".into()));
        let report = handle(&deps, batch(std::slice::from_ref(&event))).await;
        assert_eq!(report.failures.len(), 1);
        assert_eq!(
            store.order(event.order_id).unwrap().status,
            Status::OutForDelivery,
            "the state change stands; the retry only sends"
        );
        *queue.failure.lock().unwrap() = None;
        assert!(handle(&deps, batch(&[event])).await.failures.is_empty());
        assert_eq!(queue.sent.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn unknown_orders_fail_and_other_events_are_skipped() {
        let (store, queue, deps) = setup();
        let ghost = Event::new(EventType::OrderFulfilled, &placed_order(), Utc::now());
        let placed = Event::new(EventType::OrderPlaced, &placed_order(), Utc::now());
        let report = handle(&deps, batch(&[ghost, placed])).await;
        assert_eq!(report.failures.len(), 1);
        assert_eq!(report.failures[0].reason, "transient: order not found");
        assert!(!report.failures[0].permanent, "the order may yet arrive");
        assert_eq!(store.order_count(), 0);
        assert!(queue.sent.lock().unwrap().is_empty());
    }
}
