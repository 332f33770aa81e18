//! The order store: orders, idempotency keys and the events they announce.
//!
//! An order is kept as its JSON (what clients and events see) beside the
//! columns that are queried (status, creation time) and the customer
//! token's hash, which the JSON leaves out on purpose. Every change to an
//! order and the event announcing it are one writer job, so they commit or
//! fail together; that is why a replayed `place` or a repeated `advance`
//! never needs to put an event again. [`StepToQueue`] does the same for a
//! move and the queue message it leads to.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::auth::TokenHash;
use domain::events::{Event, EventType};
use domain::order::TransitionCheck;
use domain::ports::{
    AdvanceAndSend, Advanced, IdempotencyKey, MessageOf, NewOrder, OrderStore, Placed, StepReached,
    StoreError,
};
use domain::{Order, OrderId, Status, Step, Transition};
use rusqlite::{Connection, OptionalExtension, params};

use crate::Database;
use crate::error::{OrStore, corrupt};
use crate::queues::enqueue;
use crate::stream;
use crate::time;
use crate::writer::WriteTx;

/// [`OrderStore`] over the embedded database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Database,
}

impl SqliteStore {
    pub(crate) fn new(db: Database) -> SqliteStore {
        SqliteStore { db }
    }
}

fn order_json(order: &Order) -> Result<String, StoreError> {
    serde_json::to_string(order)
        .map_err(|error| StoreError::Failed(format!("cannot serialise an order: {error}")))
}

fn read_order(body: &str, token_hash: &str) -> Result<Order, StoreError> {
    let mut order: Order = serde_json::from_str(body).map_err(corrupt)?;
    order.customer_token_hash =
        TokenHash::parse(token_hash).ok_or_else(|| corrupt("a customer token hash"))?;
    Ok(order)
}

fn load(conn: &Connection, order_id: &str) -> Result<Option<Order>, StoreError> {
    let row: Option<(String, String)> = conn
        .prepare_cached("SELECT body, customer_token_hash FROM orders WHERE order_id = ?1")
        .or_store()?
        .query_row([order_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()
        .or_store()?;
    row.map(|(body, hash)| read_order(&body, &hash)).transpose()
}

/// The order a writer job is about to change: the recent orders' copy
/// when the transaction has not written it (no SQL, no JSON to parse),
/// else the table's row.
fn load_for_change(tx: &WriteTx<'_>, order_id: OrderId) -> Result<Option<Order>, StoreError> {
    match tx.recent_order(order_id) {
        Some(order) => Ok(Some(order)),
        None => load(tx, &order_id.to_string()),
    }
}

fn save(tx: &mut WriteTx<'_>, order: &Order) -> Result<(), StoreError> {
    tx.writes_order(order.order_id);
    let body = order_json(order)?;
    tx.prepare_cached("UPDATE orders SET status = ?2, body = ?3 WHERE order_id = ?1")
        .or_store()?
        .execute(params![
            order.order_id.to_string(),
            order.status.as_str(),
            body
        ])
        .or_store()?;
    Ok(())
}

/// A new order ready to insert, prepared by the caller so that the writer
/// thread spends its time on SQLite only.
struct Insert {
    order: Order,
    order_id: String,
    token_hash: String,
    created_at: i64,
    body: String,
    partition_key: String,
    event_id: String,
    event: Vec<u8>,
}

impl Insert {
    fn of(new: &NewOrder) -> Result<Insert, StoreError> {
        let order = new.order.clone();
        Ok(Insert {
            order_id: order.order_id.to_string(),
            token_hash: order.customer_token_hash.to_string(),
            created_at: time::micros(order.at(Step::Placed).unwrap_or_else(Utc::now)),
            body: order_json(&order)?,
            partition_key: new.event.partition_key(),
            event_id: new.event.event_id.to_string(),
            event: new.event.to_json(),
            order,
        })
    }
}

#[async_trait]
impl OrderStore for SqliteStore {
    async fn place(&self, new: &NewOrder) -> Result<Placed, StoreError> {
        let insert = Insert::of(new)?;
        let key = new.idempotency.clone();
        // The idempotency window is counted from the request's time.
        let requested_at = time::micros(new.event.occurred_at);
        let window = i64::try_from(IdempotencyKey::WINDOW.as_micros()).unwrap_or(i64::MAX);
        let forgotten_before = requested_at.saturating_sub(window);
        self.db
            .write_order(
                move |tx| {
                    if let Some(key) = &key {
                        // A few expired keys go with each new one, so the table
                        // holds about one window's worth of keys.
                        tx.prepare_cached(
                            "DELETE FROM idempotency_keys WHERE rowid IN (
                             SELECT rowid FROM idempotency_keys WHERE created_at < ?1 LIMIT 16)",
                        )
                        .or_store()?
                        .execute([forgotten_before])
                        .or_store()?;
                        tx.prepare_cached(
                            "DELETE FROM idempotency_keys WHERE key = ?1 AND created_at < ?2",
                        )
                        .or_store()?
                        .execute(params![key.key, forgotten_before])
                        .or_store()?;
                        let seen: Option<(String, String)> = tx
                            .prepare_cached(
                                "SELECT fingerprint, order_id FROM idempotency_keys WHERE key = ?1",
                            )
                            .or_store()?
                            .query_row([&key.key], |row| Ok((row.get(0)?, row.get(1)?)))
                            .optional()
                            .or_store()?;
                        if let Some((fingerprint, order_id)) = seen {
                            if fingerprint != key.fingerprint {
                                return Ok(Placed::KeyReused);
                            }
                            // Its event was committed with it: nothing to put again.
                            return load(tx, &order_id)?
                                .map(Placed::Replayed)
                                .ok_or_else(|| corrupt("an idempotency key without its order"));
                        }
                    }
                    tx.writes_order(insert.order.order_id);
                    tx.prepare_cached(
                    "INSERT INTO orders (order_id, status, customer_token_hash, created_at, body)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .or_store()?
                .execute(params![
                    insert.order_id,
                    insert.order.status.as_str(),
                    insert.token_hash,
                    insert.created_at,
                    insert.body,
                ])
                .or_store()?;
                    if let Some(key) = &key {
                        tx.prepare_cached(
                            "INSERT INTO idempotency_keys (key, fingerprint, order_id, created_at)
                         VALUES (?1, ?2, ?3, ?4)",
                        )
                        .or_store()?
                        .execute(params![
                            key.key,
                            key.fingerprint,
                            insert.order_id,
                            requested_at
                        ])
                        .or_store()?;
                    }
                    stream::append(
                        tx,
                        &insert.partition_key,
                        &insert.event_id,
                        &insert.event,
                        None,
                    )?;
                    tx.wake_stream();
                    Ok(Placed::Created(insert.order))
                },
                |placed| match placed {
                    Placed::Created(order) => Some(order),
                    Placed::Replayed(_) | Placed::KeyReused => None,
                },
            )
            .await
    }

    async fn get(&self, order_id: OrderId) -> Result<Option<Order>, StoreError> {
        if let Some(order) = self.db.recent().get(order_id) {
            return Ok(Some(order));
        }
        self.db
            .read_now(move |conn| load(conn, &order_id.to_string()))
            .await
    }

    async fn advance(
        &self,
        transition: &Transition,
        announce: Option<EventType>,
    ) -> Result<Advanced, StoreError> {
        let transition = transition.clone();
        let advanced = self
            .db
            .write_order(move |tx| advance_in(tx, &transition, announce), moved_order)
            .await?;
        if let Advanced::Moved(order) = &advanced {
            self.db.watchers().changed(order);
        }
        Ok(advanced)
    }

    async fn record_step(
        &self,
        order_id: OrderId,
        step: Step,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let recorded = self
            .db
            .write_order(
                move |tx| {
                    if let Some(mut order) = load_for_change(tx, order_id)? {
                        if order.record(step, at) {
                            save(tx, &order)?;
                            return Ok(Some(order));
                        }
                    }
                    Ok(None)
                },
                Option::as_ref,
            )
            .await?;
        if let Some(order) = &recorded {
            self.db.watchers().changed(order);
        }
        Ok(())
    }

    fn watch(&self, order_id: OrderId, step: Step) -> Option<StepReached> {
        self.db.watchers().watch(order_id, step)
    }
}

/// The order a move changed, for the recent orders.
fn moved_order(advanced: &Advanced) -> Option<&Order> {
    match advanced {
        Advanced::Moved(order) => Some(order),
        Advanced::AlreadyDone(_) | Advanced::OutOfOrder(_) | Advanced::NotFound => None,
    }
}

/// The compare-and-set of [`OrderStore::advance`], inside a writer job.
fn advance_in(
    tx: &mut WriteTx<'_>,
    transition: &Transition,
    announce: Option<EventType>,
) -> Result<Advanced, StoreError> {
    let Some(mut order) = load_for_change(tx, transition.order_id)? else {
        return Ok(Advanced::NotFound);
    };
    Ok(match order.check(transition.to) {
        TransitionCheck::Apply => {
            order.apply(transition);
            save(tx, &order)?;
            if let Some(kind) = announce {
                let event = Event::new(kind, &order, transition.at);
                stream::append_event(tx, &event)?;
                tx.wake_stream();
            }
            Advanced::Moved(order)
        }
        // The event of the move that got it there was committed with that
        // move.
        TransitionCheck::AlreadyDone => Advanced::AlreadyDone(order),
        TransitionCheck::OutOfOrder => Advanced::OutOfOrder(order),
    })
}

/// [`AdvanceAndSend`] to one queue of the embedded database: the move and
/// the message are one writer job, so they commit together, with one
/// commit (one fsync) for both.
#[derive(Debug, Clone)]
pub struct StepToQueue {
    db: Database,
    queue: String,
}

impl StepToQueue {
    pub(crate) fn new(db: Database, queue: &str) -> StepToQueue {
        StepToQueue {
            db,
            queue: queue.to_owned(),
        }
    }
}

#[async_trait]
impl AdvanceAndSend for StepToQueue {
    async fn advance_and_send(
        &self,
        transition: &Transition,
        message: MessageOf,
    ) -> Result<Advanced, StoreError> {
        let transition = transition.clone();
        let queue = self.queue.clone();
        let advanced = self
            .db
            .write_order(
                move |tx| {
                    let advanced = advance_in(tx, &transition, None)?;
                    if let Advanced::Moved(order) | Advanced::AlreadyDone(order) = &advanced {
                        // An error rolls back the move with the job.
                        let message = message(order).map_err(StoreError::Failed)?;
                        // A repeat whose message is still queued adds nothing.
                        if enqueue(tx, &queue, &message.id, &message.body)? {
                            tx.wake_queues();
                        }
                    }
                    Ok(advanced)
                },
                moved_order,
            )
            .await?;
        if let Advanced::Moved(order) = &advanced {
            self.db.watchers().changed(order);
        }
        Ok(advanced)
    }
}

impl Database {
    /// How many orders there are.
    pub async fn count_orders(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            let count: i64 = conn
                .prepare_cached("SELECT count(*) FROM orders")
                .or_store()?
                .query_row([], |row| row.get(0))
                .or_store()?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    /// Orders with this status, oldest first, at most `limit`.
    pub async fn orders_with_status(
        &self,
        status: Status,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            let mut statement = conn
                .prepare_cached(
                    "SELECT body, customer_token_hash FROM orders
                     WHERE status = ?1 ORDER BY created_at, rowid LIMIT ?2",
                )
                .or_store()?;
            let rows = statement
                .query_map(params![status.as_str(), limit], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })
                .or_store()?;
            let mut orders = Vec::new();
            for row in rows {
                let (body, hash) = row.or_store()?;
                orders.push(read_order(&body, &hash)?);
            }
            Ok(orders)
        })
        .await
    }
}
