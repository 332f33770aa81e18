//! In-memory adapters of every port, for the handlers' unit tests.
//!
//! They keep the ports' contracts (compare-and-set, idempotency keys,
//! events written with their order) so handler tests exercise the same
//! rules the real adapters follow, and they can be told to fail.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::events::{Email, Event, EventType, PartnerMessage};
use crate::order::{Order, OrderId, Step, Transition, TransitionCheck};
use crate::ports::*;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Orders and the stream they feed.
#[derive(Default)]
pub struct MemoryStore {
    orders: Mutex<HashMap<OrderId, Order>>,
    keys: Mutex<HashMap<String, (String, OrderId)>>,
    /// Every event put on the stream, in order.
    pub stream: Mutex<Vec<Event>>,
    /// When set, every call fails with this error.
    pub failure: Mutex<Option<StoreError>>,
}

impl MemoryStore {
    fn check(&self) -> Result<(), StoreError> {
        match lock(&self.failure).clone() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    pub fn insert(&self, order: Order) {
        lock(&self.orders).insert(order.order_id, order);
    }

    pub fn events(&self) -> Vec<Event> {
        lock(&self.stream).clone()
    }

    pub fn order(&self, id: OrderId) -> Option<Order> {
        lock(&self.orders).get(&id).cloned()
    }

    pub fn order_count(&self) -> usize {
        lock(&self.orders).len()
    }
}

#[async_trait]
impl OrderStore for MemoryStore {
    async fn place(&self, new: &NewOrder) -> Result<Placed, StoreError> {
        self.check()?;
        let mut keys = lock(&self.keys);
        if let Some(key) = &new.idempotency {
            if let Some((fingerprint, id)) = keys.get(&key.key) {
                if *fingerprint != key.fingerprint {
                    return Ok(Placed::KeyReused);
                }
                let order = self
                    .order(*id)
                    .ok_or(StoreError::Failed("key without order".into()))?;
                return Ok(Placed::Replayed(order));
            }
            keys.insert(
                key.key.clone(),
                (key.fingerprint.clone(), new.order.order_id),
            );
        }
        self.insert(new.order.clone());
        lock(&self.stream).push(new.event.clone());
        Ok(Placed::Created(new.order.clone()))
    }

    async fn get(&self, order_id: OrderId) -> Result<Option<Order>, StoreError> {
        self.check()?;
        Ok(self.order(order_id))
    }

    async fn advance(
        &self,
        transition: &Transition,
        announce: Option<EventType>,
    ) -> Result<Advanced, StoreError> {
        self.check()?;
        let mut orders = lock(&self.orders);
        let Some(order) = orders.get_mut(&transition.order_id) else {
            return Ok(Advanced::NotFound);
        };
        Ok(match order.check(transition.to) {
            TransitionCheck::Apply => {
                order.apply(transition);
                if let Some(kind) = announce {
                    lock(&self.stream).push(Event::new(kind, order, transition.at));
                }
                Advanced::Moved(order.clone())
            }
            TransitionCheck::AlreadyDone => Advanced::AlreadyDone(order.clone()),
            TransitionCheck::OutOfOrder => Advanced::OutOfOrder(order.clone()),
        })
    }

    async fn record_step(
        &self,
        order_id: OrderId,
        step: Step,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.check()?;
        if let Some(order) = lock(&self.orders).get_mut(&order_id) {
            order.record(step, at);
        }
        Ok(())
    }
}

/// A queue that keeps what was sent.
#[derive(Default)]
pub struct MemoryQueue {
    pub sent: Mutex<Vec<QueueMessage>>,
    pub failure: Mutex<Option<QueueError>>,
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError> {
        if let Some(error) = lock(&self.failure).clone() {
            return Err(error);
        }
        lock(&self.sent).push(message.clone());
        Ok(())
    }
}

/// A mailer that keeps what was sent.
#[derive(Default)]
pub struct MemoryMailer {
    pub sent: Mutex<Vec<Email>>,
    /// Every send fails with this.
    pub failure: Mutex<Option<MailError>>,
    /// Sends to this one address fail with this.
    pub failure_for: Mutex<Option<(String, MailError)>>,
}

#[async_trait]
impl Mailer for MemoryMailer {
    async fn send(&self, email: &Email) -> Result<(), MailError> {
        if let Some(error) = lock(&self.failure).clone() {
            return Err(error);
        }
        if let Some((to, error)) = lock(&self.failure_for).clone()
            && to == email.to
        {
            return Err(error);
        }
        lock(&self.sent).push(email.clone());
        Ok(())
    }
}

/// A partner that keeps what it was told.
#[derive(Default)]
pub struct MemoryPartner {
    pub received: Mutex<Vec<PartnerMessage>>,
    pub failure: Mutex<Option<NotifyError>>,
}

#[async_trait]
impl PartnerNotifier for MemoryPartner {
    async fn notify(&self, message: &PartnerMessage) -> Result<(), NotifyError> {
        if let Some(error) = lock(&self.failure).clone() {
            return Err(error);
        }
        lock(&self.received).push(message.clone());
        Ok(())
    }
}

/// A freshly placed order with a new id, for tests.
pub fn placed_order() -> Order {
    let now = Utc::now();
    let order_id = OrderId(uuid::Uuid::now_v7());
    Order {
        order_id,
        status: crate::order::Status::Placed,
        name: "Ada Lovelace".into(),
        address: "12 Analytical Row".into(),
        email: Some("ada@example.com".into()),
        product_id: "2".into(),
        product_name: "Carrot cake".into(),
        quantity: 1,
        unit_price_cents: 2800,
        total_cents: 2800,
        currency: "EUR".into(),
        fulfillment_id: None,
        delivery_company_id: None,
        order_review: None,
        timeline: vec![crate::order::StepTime {
            step: Step::Placed,
            at: now,
        }],
        correlation_id: None,
        customer_token_hash: crate::auth::TokenHash::of(&format!("token-{order_id}")),
    }
}

/// The customer token [`placed_order`] set up.
pub fn token_of(order: &Order) -> String {
    format!("token-{}", order.order_id)
}

#[async_trait]
impl OrderQueries for MemoryStore {
    async fn orders_with_status(
        &self,
        status: crate::order::Status,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        self.check()?;
        let mut orders: Vec<Order> = lock(&self.orders)
            .values()
            .filter(|o| o.status == status)
            .cloned()
            .collect();
        orders.sort_by_key(|o| (o.at(Step::Placed), o.order_id));
        orders.truncate(limit);
        Ok(orders)
    }
}

/// The operator's view, set up by the test; redrive removes a dead letter.
#[derive(Default)]
pub struct MemoryOperations {
    pub status: Mutex<OperationsStatus>,
    /// Ids redriven so far, in order.
    pub redriven: Mutex<Vec<String>>,
    pub failure: Mutex<Option<StoreError>>,
}

#[async_trait]
impl Operations for MemoryOperations {
    async fn status(&self) -> Result<OperationsStatus, StoreError> {
        if let Some(error) = lock(&self.failure).clone() {
            return Err(error);
        }
        Ok(lock(&self.status).clone())
    }

    async fn redrive(&self, id: String) -> Result<bool, StoreError> {
        if let Some(error) = lock(&self.failure).clone() {
            return Err(error);
        }
        let mut status = lock(&self.status);
        let before = status.dead_letters.len();
        status.dead_letters.retain(|letter| letter.id != id);
        let found = status.dead_letters.len() < before;
        if found {
            lock(&self.redriven).push(id);
        }
        Ok(found)
    }
}
