//! What the steps tell each other: stream events, queue messages and the
//! messages that leave the bakery (emails, partner notifications).
//!
//! Ids are derived, not random: an order has exactly one `order_placed`
//! event, one delivery request and one feedback message, so each id is a
//! UUIDv5 of the order id and the kind. A retry that puts the same event
//! again therefore carries the same id, and every consumer recognises it as
//! a duplicate. Side effects use these ids as their idempotency keys.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::order::{Order, OrderId};

/// Namespace for the bakery's derived ids.
const ID_NAMESPACE: Uuid = Uuid::from_u128(0x6a0f_5b2e_3c1d_4e8f_9a7b_1c2d_3e4f_5a6b);

fn derived_id(order_id: OrderId, kind: &str) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("{order_id}/{kind}").as_bytes())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    OrderPlaced,
    OrderFulfilled,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::OrderPlaced => "order_placed",
            EventType::OrderFulfilled => "order_fulfilled",
        }
    }
}

/// One record on the order stream. Partition key: the order id.
///
/// The JSON is the stream's contract, versioned by `version`
/// ([`Event::VERSION`]): a change that adds a field keeps the version, a
/// change that alters or drops one raises it. A consumer refuses an event
/// of a version newer than it knows (a permanent failure: the record is
/// kept for redrive once the consumer is upgraded) rather than misread it.
/// Records written before the field existed read as version 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[serde(default = "first_version")]
    pub version: u32,
    pub event_id: Uuid,
    pub event_type: EventType,
    pub order_id: OrderId,
    pub occurred_at: DateTime<Utc>,
    /// The order as it was right after the change.
    pub order: Order,
}

fn first_version() -> u32 {
    1
}

impl Event {
    /// The version of the event JSON this code writes and reads.
    pub const VERSION: u32 = 1;

    pub fn new(event_type: EventType, order: &Order, occurred_at: DateTime<Utc>) -> Event {
        Event {
            version: Event::VERSION,
            event_id: derived_id(order.order_id, event_type.as_str()),
            event_type,
            order_id: order.order_id,
            occurred_at,
            order: order.clone(),
        }
    }

    /// The record's partition key: events of one order stay in order.
    pub fn partition_key(&self) -> String {
        self.order_id.to_string()
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(data: &[u8]) -> Result<Event, serde_json::Error> {
        serde_json::from_slice(data)
    }
}

/// What an event or queue message says about the order it is for: its id
/// and correlation id, which every log line about it carries.
pub trait ForOrder {
    fn order_id(&self) -> OrderId;
    fn correlation_id(&self) -> Option<&str>;
}

impl ForOrder for Event {
    fn order_id(&self) -> OrderId {
        self.order_id
    }
    fn correlation_id(&self) -> Option<&str> {
        self.order.correlation_id.as_deref()
    }
}

impl ForOrder for DeliveryRequest {
    fn order_id(&self) -> OrderId {
        self.order_id
    }
    fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }
}

impl ForOrder for FeedbackMessage {
    fn order_id(&self) -> OrderId {
        self.order_id
    }
    fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }
}

/// The version of the queue messages' JSON ([`DeliveryRequest`],
/// [`FeedbackMessage`]) this code writes and reads, with the same rule as
/// [`Event::VERSION`]: adding a field keeps it, changing or dropping one
/// raises it, and a consumer refuses a newer version than it knows.
pub const QUEUE_MESSAGE_VERSION: u32 = 1;

/// Sent to the delivery queue once a cake is fulfilled: what the delivery
/// company needs to pick it up and bring it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRequest {
    /// [`QUEUE_MESSAGE_VERSION`]; a message written before the field read
    /// as version 1.
    #[serde(default = "first_version")]
    pub version: u32,
    pub message_id: Uuid,
    pub order_id: OrderId,
    pub name: String,
    pub address: String,
    pub product_name: String,
    pub quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfillment_id: Option<String>,
    pub requested_at: DateTime<Utc>,
    /// The order's correlation id ([`crate::correlation`]), for the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

impl DeliveryRequest {
    pub fn for_order(order: &Order, requested_at: DateTime<Utc>) -> DeliveryRequest {
        DeliveryRequest {
            version: QUEUE_MESSAGE_VERSION,
            message_id: derived_id(order.order_id, "delivery_requested"),
            order_id: order.order_id,
            name: order.name.clone(),
            address: order.address.clone(),
            product_name: order.product_name.clone(),
            quantity: order.quantity,
            fulfillment_id: order.fulfillment_id.clone(),
            requested_at,
            correlation_id: order.correlation_id.clone(),
        }
    }
}

/// Sent to the feedback queue once the customer confirmed delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackMessage {
    /// [`QUEUE_MESSAGE_VERSION`], as for [`DeliveryRequest`].
    #[serde(default = "first_version")]
    pub version: u32,
    pub message_id: Uuid,
    pub order_id: OrderId,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub product_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_company_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_review: Option<String>,
    pub delivered_at: DateTime<Utc>,
    /// The order's correlation id ([`crate::correlation`]), for the logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

impl FeedbackMessage {
    pub fn for_order(order: &Order, delivered_at: DateTime<Utc>) -> FeedbackMessage {
        FeedbackMessage {
            version: QUEUE_MESSAGE_VERSION,
            message_id: derived_id(order.order_id, "feedback_received"),
            order_id: order.order_id,
            name: order.name.clone(),
            email: order.email.clone(),
            product_name: order.product_name.clone(),
            delivery_company_id: order.delivery_company_id.clone(),
            order_review: order.order_review.clone(),
            delivered_at,
            correlation_id: order.correlation_id.clone(),
        }
    }
}

/// A plain-text email. `key` makes sending idempotent: the same key is one
/// email, however often it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub key: String,
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// A notification to a partner (the delivery company or customer service).
/// Sent as a signed webhook with `payload` as its body, or as an email of
/// `subject` and `text` when the partner takes email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerMessage {
    /// The webhook id: the same for every retry of one notification.
    pub id: String,
    /// e.g. `delivery.requested`, `feedback.received`.
    pub event_type: String,
    pub payload: serde_json::Value,
    pub subject: String,
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::placed_order as sample_order;

    #[test]
    fn event_ids_are_stable_per_order_and_type() {
        let order = sample_order();
        let a = Event::new(EventType::OrderPlaced, &order, Utc::now());
        let b = Event::new(EventType::OrderPlaced, &order, Utc::now());
        let c = Event::new(EventType::OrderFulfilled, &order, Utc::now());
        assert_eq!(a.event_id, b.event_id);
        assert_ne!(a.event_id, c.event_id);
    }

    #[test]
    fn event_json_follows_the_stream_contract() {
        let mut order = sample_order();
        // Never in the JSON form, so not in what comes back either.
        order.customer_token_hash = Default::default();
        let event = Event::new(EventType::OrderPlaced, &order, Utc::now());
        let json: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        for key in ["eventId", "eventType", "orderId", "occurredAt", "order"] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["eventType"], "order_placed");
        assert_eq!(json["order"]["productId"], 2);
        assert_eq!(Event::from_json(&event.to_json()).unwrap(), event);
    }

    #[test]
    fn queue_message_ids_differ_per_kind() {
        let order = sample_order();
        let delivery = DeliveryRequest::for_order(&order, Utc::now());
        let feedback = FeedbackMessage::for_order(&order, Utc::now());
        assert_ne!(delivery.message_id, feedback.message_id);
        assert_eq!(
            delivery.message_id,
            DeliveryRequest::for_order(&order, Utc::now()).message_id
        );
    }
}
