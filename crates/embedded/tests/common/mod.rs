//! Helpers shared by the integration tests: a database in a fresh
//! temporary directory, and new orders as the order function builds them.

#![allow(dead_code)]

use std::path::Path;

use chrono::Utc;
use domain::events::{Event, EventType};
use domain::ports::{IdempotencyKey, NewOrder};
use domain::{Order, Status, StepDetails, Transition};
use embedded::{Database, Options};

pub fn open(dir: &Path) -> Database {
    Database::open(dir, Options::default()).unwrap()
}

/// A fresh directory and the database in it.
pub fn fresh() -> (tempfile::TempDir, Database) {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    (dir, db)
}

pub fn new_order() -> NewOrder {
    let order = domain::memory::placed_order();
    let event = Event::new(EventType::OrderPlaced, &order, Utc::now());
    NewOrder {
        order,
        idempotency: None,
        event,
    }
}

pub fn new_order_with_key(key: &str, fingerprint: &str) -> NewOrder {
    NewOrder {
        idempotency: Some(IdempotencyKey {
            key: key.into(),
            fingerprint: fingerprint.into(),
        }),
        ..new_order()
    }
}

/// [`new_order_with_key`], requested `later` after now.
pub fn new_order_with_key_at(key: &str, fingerprint: &str, later: chrono::Duration) -> NewOrder {
    let mut new = new_order_with_key(key, fingerprint);
    new.event.occurred_at += later;
    new
}

/// A queue's depth as (visible, in flight), once every write is settled.
pub async fn depth(db: &Database, queue: &str) -> (u64, u64) {
    db.settled().await.unwrap();
    let depth = db.queue_depth(queue).await.unwrap();
    (depth.visible, depth.in_flight)
}

pub fn to(order: &Order, status: Status) -> Transition {
    Transition {
        order_id: order.order_id,
        to: status,
        at: Utc::now(),
        details: StepDetails::default(),
    }
}

/// The events on the stream, as a consumer that has not read anything
/// sees them.
pub async fn events(db: &Database) -> Vec<Event> {
    db.read_stream("test-observer", 100_000)
        .await
        .unwrap()
        .iter()
        .map(|record| Event::from_json(&record.data).unwrap())
        .collect()
}
