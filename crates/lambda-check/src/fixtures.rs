//! The JSON events in `tests/fixtures/` and what they refer to.
//!
//! The fixtures follow the shapes AWS documents (and `aws_lambda_events`
//! ships as its own fixtures): HTTP API payload format 2.0 requests, Kinesis
//! and SQS event source mapping events. Their ids and tokens are fixed, so
//! they are plain files with no templating; a test seeds the orders below
//! before it hands a fixture to a handler.
//!
//! | order | state seeded | named by |
//! |---|---|---|
//! | [`ORDER_PLACED`] | `placed` | `kinesis-order-placed*`, `apigw-v2-get-order`, `apigw-v2-post-fulfilled`, `apigw-v2-post-delivered-before-dispatch` |
//! | [`ORDER_FULFILLED`] | `fulfilled` | `kinesis-order-fulfilled*`, `sqs-delivery-request*` |
//! | [`ORDER_OUT_FOR_DELIVERY`] | `out_for_delivery` | `apigw-v2-post-delivered`, `sqs-feedback*` |

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use domain::auth::TokenHash;
use domain::{Order, OrderId, Status, Step, StepTime};

/// An order in state `placed`.
pub const ORDER_PLACED: &str = "0192f3a0-7c1e-7d00-8a00-00000000000a";
/// An order the cake maker has fulfilled (`fulfillmentId` `oven-2`).
pub const ORDER_FULFILLED: &str = "0192f3a0-7c1e-7d00-8a00-00000000000b";
/// An order out for delivery.
pub const ORDER_OUT_FOR_DELIVERY: &str = "0192f3a0-7c1e-7d00-8a00-00000000000c";

/// The cake maker's token in the fixtures' `Authorization` headers.
pub const BAKER_TOKEN: &str = "baker-token-fixture-0123456789";

/// The sequence number of the good record in every Kinesis fixture.
pub const GOOD_SEQUENCE_NUMBER: &str = "49657335486341284916713483206413542938117218924395503618";
/// The sequence number of the poison record in `kinesis-*-with-poison.json`.
pub const POISON_SEQUENCE_NUMBER: &str = "49657335486341284916713483206414751863936833553570209794";
/// The SQS message id of the poison message in `sqs-delivery-request-with-poison.json`.
pub const POISON_DELIVERY_MESSAGE_ID: &str = "2e1424d4-f796-459a-8184-9c92662be6da";
/// The SQS message id of the poison message in `sqs-feedback-with-poison.json`.
pub const POISON_FEEDBACK_MESSAGE_ID: &str = "d91f9c5b-6d2e-4a1f-8b2c-3e4f5a6b7c8d";

/// Where the fixtures live: `tests/fixtures/` at the workspace root.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// The text of fixture `name` (e.g. `"apigw-v2-post-order.json"`).
///
/// Panics with the path when it cannot be read: fixtures are part of the
/// source tree, so a missing one is a broken checkout.
pub fn text(name: &str) -> String {
    let path = dir().join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {} cannot be read: {e}", path.display()))
}

/// Fixture `name` as JSON.
pub fn json(name: &str) -> serde_json::Value {
    serde_json::from_str(&text(name)).unwrap_or_else(|e| panic!("fixture {name} is not JSON: {e}"))
}

/// Fixture `name` as the type Lambda hands a function, e.g. a
/// `KinesisEvent` or an `SqsEvent`.
pub fn event<T: serde::de::DeserializeOwned>(name: &str) -> T {
    serde_json::from_str(&text(name))
        .unwrap_or_else(|e| panic!("fixture {name} is not that event: {e}"))
}

/// An in-memory order table holding the orders the fixtures refer to.
pub fn seeded_store() -> std::sync::Arc<domain::memory::MemoryStore> {
    let store = std::sync::Arc::new(domain::memory::MemoryStore::default());
    for order in orders() {
        store.insert(order);
    }
    store
}

/// The customer token the fixtures present for `order_id` (one of the three
/// orders above).
pub fn customer_token(order_id: &str) -> String {
    let letter = match order_id {
        ORDER_PLACED => "a",
        ORDER_FULFILLED => "b",
        ORDER_OUT_FOR_DELIVERY => "c",
        other => panic!("no fixture token for order {other}"),
    };
    format!("customer-token-fixture-order-{letter}")
}

fn at(minutes: i64) -> DateTime<Utc> {
    let start: DateTime<Utc> = "2026-11-24T10:00:00Z"
        .parse()
        .unwrap_or_else(|_| unreachable!("a valid RFC 3339 time"));
    start + chrono::Duration::minutes(minutes)
}

fn id(text: &str) -> OrderId {
    OrderId::parse(text).unwrap_or_else(|| panic!("{text} is not a UUID"))
}

/// The order the fixtures name, in the state they expect it in (see the
/// table above), with the customer token [`customer_token`] gives.
pub fn order(order_id: &str) -> Order {
    let status = match order_id {
        ORDER_PLACED => Status::Placed,
        ORDER_FULFILLED => Status::Fulfilled,
        ORDER_OUT_FOR_DELIVERY => Status::OutForDelivery,
        other => panic!("no fixture order {other}"),
    };
    let mut timeline = vec![StepTime {
        step: Step::Placed,
        at: at(0),
    }];
    if status >= Status::Fulfilled {
        timeline.push(StepTime {
            step: Step::Fulfilled,
            at: at(30),
        });
    }
    if status >= Status::OutForDelivery {
        timeline.push(StepTime {
            step: Step::OutForDelivery,
            at: at(31),
        });
    }
    Order {
        order_id: id(order_id),
        status,
        name: "Ada Lovelace".into(),
        address: "12 Analytical Row\nLondon".into(),
        email: Some("ada@example.com".into()),
        product_id: "2".into(),
        product_name: "Carrot cake".into(),
        quantity: 2,
        unit_price_cents: 2800,
        total_cents: 5600,
        currency: "EUR".into(),
        fulfillment_id: (status >= Status::Fulfilled).then(|| "oven-2".into()),
        delivery_company_id: None,
        order_review: None,
        timeline,
        correlation_id: None,
        customer_token_hash: TokenHash::of(&customer_token(order_id)),
    }
}

/// The three orders, for seeding a store.
pub fn orders() -> [Order; 3] {
    [
        order(ORDER_PLACED),
        order(ORDER_FULFILLED),
        order(ORDER_OUT_FOR_DELIVERY),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lambda_events::event::kinesis::KinesisEvent;
    use lambda_kit::stream_record::{self, Decoded};

    /// The Kinesis fixtures carry the same orders `order` builds, so a test
    /// that seeds them and replays a fixture sees one consistent order, in
    /// the table's change record of its event item, as the table feeds the
    /// stream.
    #[test]
    fn the_stream_fixtures_carry_the_seeded_orders() {
        for (name, order_id) in [
            ("kinesis-order-placed.json", ORDER_PLACED),
            ("kinesis-order-fulfilled.json", ORDER_FULFILLED),
        ] {
            let batch: KinesisEvent = serde_json::from_str(&text(name)).unwrap();
            let record = &batch.records[0].kinesis;
            let Ok(Decoded::Event(event)) = stream_record::decode(&record.data) else {
                panic!("{name}: not an event item's change record");
            };
            let mut seeded = order(order_id);
            seeded.customer_token_hash = TokenHash::default();
            assert_eq!(event.order, seeded, "{name}");
            let change: serde_json::Value = serde_json::from_slice(&record.data).unwrap();
            assert_eq!(change["eventName"], "INSERT");
            assert_eq!(change["eventSource"], "aws:dynamodb");
            assert_eq!(record.sequence_number, GOOD_SEQUENCE_NUMBER);
        }
    }
}
