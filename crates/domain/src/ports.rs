//! The ports: what the seven functions need from the outside world.
//!
//! Each trait's docs state the contract adapters must keep, including which
//! error to return when. Handlers map these errors to HTTP answers or to
//! batch item failures; adapters map their vendors' errors to these.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::events::{Email, Event, EventType, PartnerMessage};
use crate::order::{Order, OrderId, Step, Transition};

/// Why storage could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Busy, throttled, out of space or unreachable: the same call may
    /// succeed later. HTTP answers 503; consumers retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else (corrupt data, a bug). HTTP answers 500.
    #[error("storage failed: {0}")]
    Failed(String),
}

/// An idempotency key and the fingerprint of the request that first used it.
///
/// A key is remembered for [`IdempotencyKey::WINDOW`] from the request that
/// first used it: a retry within the window answers that first order
/// exactly; after it the key is forgotten (stores drop it) and names a new
/// order, as payment APIs do. The window is counted from the time of the
/// request ([`NewOrder::event`]'s `occurred_at`), on every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key: String,
    pub fingerprint: String,
}

impl IdempotencyKey {
    /// How long a key is remembered: 24 hours.
    pub const WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);
}

/// A new order and the event that announces it.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub order: Order,
    pub idempotency: Option<IdempotencyKey>,
    pub event: Event,
}

/// The outcome of [`OrderStore::place`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placed {
    /// Stored now.
    Created(Order),
    /// The idempotency key was seen before with the same request: the order
    /// stored then.
    Replayed(Order),
    /// The idempotency key was seen before with a different request.
    KeyReused,
}

/// The outcome of [`OrderStore::advance`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advanced {
    /// The order moved; here it is afterwards.
    Moved(Order),
    /// The order was already at or past the target: nothing changed.
    AlreadyDone(Order),
    /// The order is not yet at the target's predecessor: nothing changed.
    OutOfOrder(Order),
    NotFound,
}

/// The order table together with the order stream it feeds.
///
/// Writers need both at once: an order acknowledged to a customer must be
/// stored *and* announced, with no second write that could fail after the
/// first (no dual write). Adapters commit the change and its event
/// together: the embedded database in one transaction with its stream, the
/// DynamoDB adapter as an event item in the same `TransactWriteItems`, from
/// which the table feeds the Kinesis stream. Once a call returns `Ok`, the
/// event is certain to reach the stream; event ids are derived, so a
/// consumer recognises a record it meets twice.
#[async_trait]
pub trait OrderStore: Send + Sync + 'static {
    /// Stores a new order and, with it, `new.event` for the stream.
    ///
    /// With an idempotency key already seen: returns [`Placed::Replayed`]
    /// (same fingerprint; its event was committed with it) or
    /// [`Placed::KeyReused`] (different fingerprint), storing nothing new.
    /// `Ok` means durable: the order and its event survive a crash.
    async fn place(&self, new: &NewOrder) -> Result<Placed, StoreError>;

    /// The order, if it exists.
    async fn get(&self, order_id: OrderId) -> Result<Option<Order>, StoreError>;

    /// Compare-and-set: moves the order to `transition.to` only if it is in
    /// the predecessor status (decided by [`Order::check`]), committing
    /// with the move an event of `announce` (built with [`Event::new`] from
    /// the order after the change). On [`Advanced::AlreadyDone`] nothing is
    /// written: the event was committed with the move.
    async fn advance(
        &self,
        transition: &Transition,
        announce: Option<EventType>,
    ) -> Result<Advanced, StoreError>;

    /// Records when a side effect reached its person (see
    /// [`Order::record`]: the first time wins). Unknown orders are ignored.
    async fn record_step(
        &self,
        order_id: OrderId,
        step: Step,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// A signal that completes with the order once its timeline has
    /// `step`, if that happens after this call: for reads that wait for a
    /// step (long-polling). It may also complete with `None` (the store
    /// stopped watching), and then callers read the order again. `None`
    /// instead of a signal: this store cannot tell, and callers answer at
    /// once (clients then poll).
    fn watch(&self, order_id: OrderId, step: Step) -> Option<StepReached> {
        let _ = (order_id, step);
        None
    }
}

/// See [`OrderStore::watch`].
pub type StepReached = Pin<Box<dyn Future<Output = Option<Order>> + Send>>;

/// A message for a queue; `id` is the deduplication id consumers use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub id: String,
    pub body: String,
}

impl QueueMessage {
    /// A message whose body is `body` as JSON.
    pub fn json(id: impl ToString, body: &impl serde::Serialize) -> Result<QueueMessage, String> {
        Ok(QueueMessage {
            id: id.to_string(),
            body: serde_json::to_string(body).map_err(|e| e.to_string())?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The queue could not take the message now; try again later.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
}

/// One queue (the delivery queue or the feedback queue).
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Sends a message. Sending the same id twice may deliver it twice
    /// (consumers deduplicate), but an adapter that can drop the repeat should.
    async fn send(&self, message: &QueueMessage) -> Result<(), QueueError>;
}

/// Builds the queue message a step sends from the order as it stands after
/// the move (or as it was found, on a repeat). An `Err` is a bug in the
/// message (it cannot be encoded): nothing is sent and the step fails.
pub type MessageOf = fn(&Order) -> Result<QueueMessage, String>;

/// A status move and the queue message it leads to (`dispatch`:
/// fulfilled → out for delivery, and the delivery request; `delivered`:
/// the review for customer service).
///
/// The message goes out on [`Advanced::Moved`] and on
/// [`Advanced::AlreadyDone`] alike (same message id, so a repeat is
/// recognised downstream), never otherwise. An adapter that can should
/// commit both in one transaction, so no move is ever stored without its
/// message (the embedded database does, saving a commit on the step's
/// path); [`AdvanceThenSend`] does one after the other, and a retry after a
/// failed send completes the step. A failed send is
/// [`StoreError::Unavailable`]: try again later.
#[async_trait]
pub trait AdvanceAndSend: Send + Sync + 'static {
    async fn advance_and_send(
        &self,
        transition: &Transition,
        message: MessageOf,
    ) -> Result<Advanced, StoreError>;
}

/// [`AdvanceAndSend`] over a store and a queue with no transaction in
/// common (DynamoDB and SQS): the move, then the send.
pub struct AdvanceThenSend {
    pub store: std::sync::Arc<dyn OrderStore>,
    pub queue: std::sync::Arc<dyn Queue>,
}

#[async_trait]
impl AdvanceAndSend for AdvanceThenSend {
    async fn advance_and_send(
        &self,
        transition: &Transition,
        message: MessageOf,
    ) -> Result<Advanced, StoreError> {
        let advanced = self.store.advance(transition, None).await?;
        if let Advanced::Moved(order) | Advanced::AlreadyDone(order) = &advanced {
            let message = message(order).map_err(StoreError::Failed)?;
            self.queue
                .send(&message)
                .await
                .map_err(|QueueError::Unavailable(why)| StoreError::Unavailable(why))?;
        }
        Ok(advanced)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// The mail server or outbox could not take it now; try again later.
    #[error("mail unavailable: {0}")]
    Unavailable(String),
    /// This email can never be sent (e.g. the address was refused).
    #[error("mail rejected: {0}")]
    Rejected(String),
}

/// Sends email.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Sends `email`. Idempotent by `email.key` where the adapter can be
    /// (the local outbox keeps one email per key); at least once otherwise.
    async fn send(&self, email: &Email) -> Result<(), MailError>;
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The partner did not take it now (down, timing out, 5xx); try later.
    #[error("partner unavailable: {0}")]
    Unavailable(String),
    /// The partner refused it for good (4xx other than 408/429).
    #[error("partner rejected the notification: {0}")]
    Rejected(String),
}

/// Reaches one partner: the delivery company or customer service.
#[async_trait]
pub trait PartnerNotifier: Send + Sync + 'static {
    /// Delivers `message`, retrying briefly with backoff. Partners
    /// deduplicate by `message.id` (the webhook id), which stays the same
    /// across retries.
    async fn notify(&self, message: &PartnerMessage) -> Result<(), NotifyError>;
}

/// Reads of orders by status, for the cake maker's page.
#[async_trait]
pub trait OrderQueries: Send + Sync + 'static {
    /// Orders with `status`, oldest first, at most `limit`.
    async fn orders_with_status(
        &self,
        status: crate::order::Status,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError>;
}

/// How far one stream consumer is behind.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerLag {
    /// The consumer, e.g. `notify-baker`, `dispatch`.
    pub name: String,
    /// Records it has yet to finish; `None` when the backend cannot tell
    /// (on AWS, Lambda keeps a mapping's position to itself), never a
    /// made-up 0.
    pub lag: Option<u64>,
}

/// How many messages one queue holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDepth {
    /// The queue, e.g. `delivery`, `feedback`.
    pub name: String,
    /// Ready to be received.
    pub visible: u64,
    /// Received and not finished, or waiting out a retry delay.
    pub in_flight: u64,
}

/// Work that failed for good, as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterView {
    /// What [`Operations::redrive`] takes.
    pub id: String,
    /// The consumer (stream records) or the queue (queue messages).
    pub source: String,
    pub reason: String,
    pub attempts: u32,
    pub failed_at: DateTime<Utc>,
    /// The event id or message id.
    pub message_id: String,
    /// The order it is about, when the adapter can tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

/// One failure worth an operator's eye: a dead letter, or work that failed
/// and is being retried.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentError {
    pub source: String,
    pub reason: String,
    /// When it failed, when the adapter knows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<DateTime<Utc>>,
    /// `true` for a dead letter, `false` for work still being retried or
    /// a dead letter since redriven.
    pub dead: bool,
    /// When the operator redrove it: the failure stays listed after the
    /// dead letter is put back, so the history does not vanish with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redriven_at: Option<DateTime<Utc>>,
}

/// The state of the pipeline at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationsStatus {
    pub consumers: Vec<ConsumerLag>,
    pub queues: Vec<QueueDepth>,
    /// Oldest first.
    pub dead_letters: Vec<DeadLetterView>,
    /// Newest first, at most [`OperationsStatus::RECENT_ERRORS`].
    pub recent_errors: Vec<RecentError>,
}

impl OperationsStatus {
    /// How many recent errors an adapter reports at most.
    pub const RECENT_ERRORS: usize = 50;
}

/// What the operator's page needs: the pipeline's health and the dead
/// letters' redrive.
#[async_trait]
pub trait Operations: Send + Sync + 'static {
    /// Lag of every stream consumer, depth of every queue, every dead
    /// letter and the latest failures.
    async fn status(&self) -> Result<OperationsStatus, StoreError>;

    /// Puts dead letter `id` back where it came from. `Ok(false)` if there
    /// is no such dead letter (an unknown or malformed id included).
    async fn redrive(&self, id: String) -> Result<bool, StoreError>;
}
