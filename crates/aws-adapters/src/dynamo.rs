//! [`DynamoStore`]: the order table in DynamoDB, which feeds the order
//! stream in Kinesis; one [`OrderStore`].
//!
//! # Item layout
//!
//! The table has a single string hash key, `pk`, and holds three kinds of
//! items:
//!
//! | item | `pk` | other attributes |
//! |------|------|------------------|
//! | an order | `order#<orderId>` | `orderId`, `status`, `createdAt` (RFC 3339, UTC, milliseconds), `order` (the order's JSON), `tokenHash`, `version` (N) |
//! | an idempotency key | `idem#<key>` | `fingerprint`, `orderId`, `expiresAt` (N, epoch seconds: the table's TTL attribute, the request's time plus [`IdempotencyKey::WINDOW`]) |
//! | an event | `event#<eventId>` | `eventType`, `orderId`, `event` (the event's JSON, the stream contract), `expiresAt` ([`EVENT_KEPT`] after the event) |
//!
//! The global secondary index `by-status` (hash `status`, range `createdAt`,
//! all attributes) lists orders of one status, oldest first; idempotency
//! and event items have no `status` and stay out of it. `order` is the
//! source of truth; `status` mirrors it for conditions and the index. The
//! customer token's hash is not part of the order's JSON, so it has its own
//! attribute.
//!
//! # Table and stream: one write
//!
//! A step that announces something writes the order and an event item in
//! one `TransactWriteItems`, and nothing else: the table feeds the Kinesis
//! stream (Kinesis Data Streams for DynamoDB, declared in both templates),
//! so the event item's change record reaches the stream once the
//! transaction commits, whatever happens to the function afterwards. No
//! write to a second service can fail after the first succeeded (no dual
//! write), and a replay or a retry has nothing left to complete. The
//! consumers read the event out of the change record
//! (`lambda_kit::stream_record`); the event source mappings let only new
//! event items through. Event ids are derived from the order, so rewriting
//! an event item (a retry racing its first try) is a `MODIFY`, which the
//! filter drops.
//!
//! # Concurrency
//!
//! Every change is compare-and-set on the item's `version` (and, for status
//! changes, on the predecessor status), so concurrent writers never lose
//! each other's updates and an order never moves backwards. A writer that
//! loses a race re-reads and decides again.
//!
//! # Errors
//!
//! A missing table (or any other 4xx that is not throttling) is
//! [`StoreError::Failed`]: configuration is wrong and retrying will not fix
//! it. Throttling, 5xx, timeouts and connection failures are
//! [`StoreError::Unavailable`], after the SDK's own retries.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem, Update};
use chrono::{DateTime, SecondsFormat, Utc};
use domain::auth::TokenHash;
use domain::events::{Event, EventType};
use domain::order::TransitionCheck;
use domain::ports::{
    Advanced, IdempotencyKey, NewOrder, OrderQueries, OrderStore, Placed, StoreError,
};
use domain::{Order, OrderId, Status, Step, Transition};

use lambda_kit::stream_record::{EVENT_ATTRIBUTE, EVENT_ITEM_PREFIX};

use crate::Clients;
use crate::error::{describe, store_error};

/// The name of the index that lists orders by status.
pub const STATUS_INDEX: &str = "by-status";

/// How often a compare-and-set is tried before giving up. Conflicts need
/// two writers on one order at the same moment; more than a few in a row
/// means something is hammering that order.
const CAS_ATTEMPTS: usize = 5;

const ORDER_PREFIX: &str = "order#";
const KEY_PREFIX: &str = "idem#";
/// The table's TTL attribute (epoch seconds): idempotency keys expire
/// [`IdempotencyKey::WINDOW`] after their request.
pub const EXPIRES_AT: &str = "expiresAt";

/// How long an event item stays in the table: its change record has long
/// reached the stream by then (the feed is near real time, the stream keeps
/// records for a day), and DynamoDB's TTL deletes it afterwards.
pub const EVENT_KEPT: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 60 * 60);

/// The order table (which feeds the order stream).
#[derive(Clone, Debug)]
pub struct DynamoStore {
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
}

/// An order as read, with the version a compare-and-set must match.
struct Stored {
    order: Order,
    version: u64,
}

impl DynamoStore {
    /// The store over `table` (name).
    pub fn new(clients: &Clients, table: impl Into<String>) -> Self {
        DynamoStore {
            dynamodb: clients.dynamodb(),
            table: table.into(),
        }
    }

    /// Up to `limit` orders with `status`, oldest first, through the
    /// `by-status` index. Index reads are eventually consistent: an order
    /// that changed a moment ago may still be listed under its old status.
    pub async fn orders_with_status(
        &self,
        status: Status,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        let mut orders = Vec::new();
        let mut start = None;
        while orders.len() < limit {
            let page_size = i32::try_from(limit - orders.len()).unwrap_or(i32::MAX);
            let page = self
                .dynamodb
                .query()
                .table_name(&self.table)
                .index_name(STATUS_INDEX)
                .key_condition_expression("#status = :status")
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(status.as_str()))
                .scan_index_forward(true)
                .limit(page_size)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("Query", &e))?;
            for item in page.items() {
                orders.push(decode(item)?.order);
            }
            start = page.last_evaluated_key;
            if start.is_none() {
                break;
            }
        }
        orders.truncate(limit);
        Ok(orders)
    }

    /// A consistent read of one order.
    async fn read(&self, order_id: OrderId) -> Result<Option<Stored>, StoreError> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("pk", order_key(order_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", &e))?;
        output.item.as_ref().map(decode).transpose()
    }

    /// An idempotency key seen before: the outcome of replaying it, or
    /// `None` if the key is new after all.
    async fn replay(
        &self,
        key: &IdempotencyKey,
        requested_at: i64,
    ) -> Result<Option<Placed>, StoreError> {
        let output = self
            .dynamodb
            .get_item()
            .table_name(&self.table)
            .key("pk", s(format!("{KEY_PREFIX}{}", key.key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", &e))?;
        let Some(item) = output.item else {
            return Ok(None);
        };
        let expired = match item.get(EXPIRES_AT) {
            Some(AttributeValue::N(at)) => at.parse::<i64>().is_ok_and(|at| at <= requested_at),
            _ => false,
        };
        if expired {
            return Ok(None);
        }
        if string(&item, "fingerprint")? != key.fingerprint {
            return Ok(Some(Placed::KeyReused));
        }
        let order_id = OrderId::parse(string(&item, "orderId")?).ok_or_else(|| {
            StoreError::Failed(format!("idempotency key {}: bad orderId", key.key))
        })?;
        // The key and its order were written in one transaction.
        let stored = self.read(order_id).await?.ok_or_else(|| {
            StoreError::Failed(format!("idempotency key {} names a missing order", key.key))
        })?;
        // Its event item was written in that transaction too: the table
        // feeds it to the stream, nothing is left to complete.
        Ok(Some(Placed::Replayed(stored.order)))
    }

    /// Replaces the order's JSON (and status) if its version is still
    /// `version` and, with `from`, its status still `from`; with `announce`,
    /// writes that event's item in the same transaction (a change that
    /// announces nothing is a plain conditional update, half the price).
    /// `Ok(false)` when another writer got there first.
    async fn compare_and_set(
        &self,
        order: &Order,
        version: u64,
        from: Option<Status>,
        announce: Option<&Event>,
    ) -> Result<bool, StoreError> {
        let mut condition = "#version = :version".to_owned();
        let names = HashMap::from([
            ("#order".to_owned(), "order".to_owned()),
            ("#status".to_owned(), "status".to_owned()),
            ("#version".to_owned(), "version".to_owned()),
        ]);
        let mut values = HashMap::from([
            (":order".to_owned(), s(to_json(order)?)),
            (":status".to_owned(), s(order.status.as_str())),
            (":version".to_owned(), n(version)),
            (":next".to_owned(), n(version + 1)),
        ]);
        if let Some(from) = from {
            condition.push_str(" AND #status = :from");
            values.insert(":from".to_owned(), s(from.as_str()));
        }
        const SET: &str = "SET #order = :order, #status = :status, #version = :next";

        let Some(event) = announce else {
            let updated = self
                .dynamodb
                .update_item()
                .table_name(&self.table)
                .key("pk", order_key(order.order_id))
                .update_expression(SET)
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .condition_expression(condition)
                .send()
                .await;
            return match updated {
                Ok(_) => Ok(true),
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    Ok(false)
                }
                Err(error) => Err(store_error("UpdateItem", &error)),
            };
        };
        let update = Update::builder()
            .table_name(&self.table)
            .key("pk", order_key(order.order_id))
            .update_expression(SET)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .condition_expression(condition)
            .build()
            .map_err(|e| StoreError::Failed(format!("building an Update: {e}")))?;
        let transaction = self
            .dynamodb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(self.event_put(event)?);
        match transaction.send().await {
            Ok(_) => Ok(true),
            // The version moved, or another transaction on the same order
            // was in flight: either way, read again and decide again.
            Err(error)
                if matches!(
                    error.as_service_error(),
                    Some(TransactWriteItemsError::TransactionCanceledException(_))
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(store_error("TransactWriteItems", &error)),
        }
    }

    /// The put of `event`'s item, for the transaction that makes the
    /// change it announces.
    fn event_put(&self, event: &Event) -> Result<TransactWriteItem, StoreError> {
        let kept = i64::try_from(EVENT_KEPT.as_secs()).unwrap_or(i64::MAX);
        let json = String::from_utf8(event.to_json())
            .map_err(|e| StoreError::Failed(format!("event to JSON: {e}")))?;
        let item = HashMap::from([
            (
                "pk".to_owned(),
                s(format!("{EVENT_ITEM_PREFIX}{}", event.event_id)),
            ),
            ("eventType".to_owned(), s(event.event_type.as_str())),
            ("orderId".to_owned(), s(event.order_id.to_string())),
            (EVENT_ATTRIBUTE.to_owned(), s(json)),
            (
                EXPIRES_AT.to_owned(),
                AttributeValue::N(
                    event
                        .occurred_at
                        .timestamp()
                        .saturating_add(kept)
                        .to_string(),
                ),
            ),
        ]);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(|e| StoreError::Failed(format!("building a Put: {e}")))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

#[async_trait]
impl OrderStore for DynamoStore {
    async fn place(&self, new: &NewOrder) -> Result<Placed, StoreError> {
        // The order, its event and its key, or nothing: a key seen before
        // leaves the table untouched.
        let mut request = self
            .dynamodb
            .transact_write_items()
            .transact_items(put_if_absent(&self.table, order_item(&new.order)?)?)
            .transact_items(self.event_put(&new.event)?);
        let requested_at = new.event.occurred_at.timestamp();
        if let Some(key) = &new.idempotency {
            // DynamoDB's TTL deletes the key some time after `expiresAt`;
            // until then the condition treats it as gone already.
            let window = i64::try_from(IdempotencyKey::WINDOW.as_secs()).unwrap_or(i64::MAX);
            let item = HashMap::from([
                ("pk".to_owned(), s(format!("{KEY_PREFIX}{}", key.key))),
                ("fingerprint".to_owned(), s(&key.fingerprint)),
                ("orderId".to_owned(), s(new.order.order_id.to_string())),
                (
                    EXPIRES_AT.to_owned(),
                    AttributeValue::N(requested_at.saturating_add(window).to_string()),
                ),
            ]);
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk) OR #expiresAt <= :now")
                .expression_attribute_names("#expiresAt", EXPIRES_AT)
                .expression_attribute_values(":now", AttributeValue::N(requested_at.to_string()))
                .build()
                .map_err(|e| StoreError::Failed(format!("building a Put: {e}")))?;
            request = request.transact_items(TransactWriteItem::builder().put(put).build());
        }
        let error = match request.send().await {
            Ok(_) => return Ok(Placed::Created(new.order.clone())),
            Err(error) => error,
        };
        let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            error.as_service_error()
        else {
            return Err(store_error("TransactWriteItems", &error));
        };
        if let Some(key) = &new.idempotency {
            if let Some(outcome) = self.replay(key, requested_at).await? {
                return Ok(outcome);
            }
        }
        // Not a known key. A conflict with a concurrent transaction (say,
        // the same key arriving twice at once) resolves itself on retry; a
        // taken order id would be a bug. Reasons come in the order of the
        // items, the order's put first.
        let order_exists = cancelled
            .cancellation_reasons()
            .first()
            .and_then(|reason| reason.code())
            == Some("ConditionalCheckFailed");
        if order_exists {
            Err(StoreError::Failed(format!(
                "order {} already exists",
                new.order.order_id
            )))
        } else {
            Err(StoreError::Unavailable(describe(
                "TransactWriteItems",
                &error,
            )))
        }
    }

    async fn get(&self, order_id: OrderId) -> Result<Option<Order>, StoreError> {
        Ok(self.read(order_id).await?.map(|stored| stored.order))
    }

    async fn advance(
        &self,
        transition: &Transition,
        announce: Option<EventType>,
    ) -> Result<Advanced, StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(Stored { mut order, version }) = self.read(transition.order_id).await? else {
                return Ok(Advanced::NotFound);
            };
            match order.check(transition.to) {
                TransitionCheck::OutOfOrder => return Ok(Advanced::OutOfOrder(order)),
                // The move and its event item were one transaction.
                TransitionCheck::AlreadyDone => return Ok(Advanced::AlreadyDone(order)),
                TransitionCheck::Apply => {
                    let from = order.status;
                    order.apply(transition);
                    let event = announce.map(|kind| Event::new(kind, &order, transition.at));
                    if self
                        .compare_and_set(&order, version, Some(from), event.as_ref())
                        .await?
                    {
                        return Ok(Advanced::Moved(order));
                    }
                    // Lost a race: the next read tells whether the winner
                    // did our step (AlreadyDone) or only recorded a step.
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "order {} kept changing under {CAS_ATTEMPTS} attempts to move it to {}",
            transition.order_id, transition.to
        )))
    }

    async fn record_step(
        &self,
        order_id: OrderId,
        step: Step,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(Stored { mut order, version }) = self.read(order_id).await? else {
                return Ok(());
            };
            if !order.record(step, at) {
                return Ok(());
            }
            if self.compare_and_set(&order, version, None, None).await? {
                return Ok(());
            }
        }
        Err(StoreError::Unavailable(format!(
            "order {order_id} kept changing under {CAS_ATTEMPTS} attempts to record {}",
            step.as_str()
        )))
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn order_key(order_id: OrderId) -> AttributeValue {
    s(format!("{ORDER_PREFIX}{order_id}"))
}

fn to_json(order: &Order) -> Result<String, StoreError> {
    serde_json::to_string(order).map_err(|e| StoreError::Failed(format!("order to JSON: {e}")))
}

/// A new order's item, at version 1.
fn order_item(order: &Order) -> Result<HashMap<String, AttributeValue>, StoreError> {
    // Fixed width (milliseconds, `Z`) so that the index's string order is
    // time order.
    let created_at = order
        .at(Step::Placed)
        .unwrap_or_else(Utc::now)
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    Ok(HashMap::from([
        ("pk".to_owned(), order_key(order.order_id)),
        ("orderId".to_owned(), s(order.order_id.to_string())),
        ("status".to_owned(), s(order.status.as_str())),
        ("createdAt".to_owned(), s(created_at)),
        ("order".to_owned(), s(to_json(order)?)),
        (
            "tokenHash".to_owned(),
            s(order.customer_token_hash.to_string()),
        ),
        ("version".to_owned(), n(1)),
    ]))
}

fn put_if_absent(
    table: &str,
    item: HashMap<String, AttributeValue>,
) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(pk)")
        .build()
        .map_err(|e| StoreError::Failed(format!("building a Put: {e}")))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

fn string<'a>(
    item: &'a HashMap<String, AttributeValue>,
    name: &str,
) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value),
        _ => Err(corrupt(item, &format!("no string attribute {name}"))),
    }
}

fn corrupt(item: &HashMap<String, AttributeValue>, what: &str) -> StoreError {
    let pk = match item.get("pk") {
        Some(AttributeValue::S(pk)) => pk.as_str(),
        _ => "?",
    };
    StoreError::Failed(format!("item {pk}: {what}"))
}

/// Reads an order item back.
fn decode(item: &HashMap<String, AttributeValue>) -> Result<Stored, StoreError> {
    let mut order: Order = serde_json::from_str(string(item, "order")?)
        .map_err(|e| corrupt(item, &format!("order JSON: {e}")))?;
    order.customer_token_hash = TokenHash::parse(string(item, "tokenHash")?)
        .ok_or_else(|| corrupt(item, "bad tokenHash"))?;
    let version = match item.get("version") {
        Some(AttributeValue::N(number)) => number.parse::<u64>().ok(),
        _ => None,
    }
    .ok_or_else(|| corrupt(item, "bad version"))?;
    Ok(Stored { order, version })
}

/// The cake maker's page: the orders waiting, over the status index.
#[async_trait]
impl OrderQueries for DynamoStore {
    async fn orders_with_status(
        &self,
        status: Status,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        // The inherent method of the same name does the work.
        DynamoStore::orders_with_status(self, status, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    /// The shared test order, at a known time with a known token.
    fn order() -> Order {
        let mut order = domain::memory::placed_order();
        order.order_id = OrderId(Uuid::from_u128(7));
        order.timeline[0].at = DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        order.customer_token_hash = TokenHash::of("secret");
        order
    }

    #[test]
    fn an_order_item_round_trips_with_its_token_hash() {
        let item = order_item(&order()).unwrap();
        assert_eq!(
            string(&item, "pk").unwrap(),
            format!("order#{}", Uuid::from_u128(7))
        );
        assert_eq!(string(&item, "status").unwrap(), "placed");
        assert_eq!(
            string(&item, "createdAt").unwrap(),
            "2026-11-24T10:00:00.000Z"
        );
        let stored = decode(&item).unwrap();
        assert_eq!(stored.order, order());
        assert!(stored.order.customer_token_hash.matches("secret"));
        assert_eq!(stored.version, 1);
    }

    #[test]
    fn a_damaged_item_is_failed_not_a_panic() {
        let mut item = order_item(&order()).unwrap();
        item.insert("order".into(), s("{not json"));
        assert!(matches!(decode(&item), Err(StoreError::Failed(m)) if m.contains("order#")));
        let mut item = order_item(&order()).unwrap();
        item.insert("version".into(), s("1"));
        assert!(matches!(decode(&item), Err(StoreError::Failed(_))));
        let mut item = order_item(&order()).unwrap();
        item.remove("tokenHash");
        assert!(matches!(decode(&item), Err(StoreError::Failed(_))));
    }
}
