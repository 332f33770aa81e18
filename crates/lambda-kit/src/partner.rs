//! Telling a partner about an order exactly once per order step.
//!
//! Both partner steps (delivery company, customer service) follow one rule:
//! skip if the order's timeline already records the step, else notify, then
//! record the step. A crash between the last two may notify again; the
//! message id (the webhook id) stays the same so the partner can tell.

use chrono::Utc;
use domain::events::PartnerMessage;

use aws_lambda_events::event::sqs::SqsEvent;
use domain::events::ForOrder;
use serde::de::DeserializeOwned;

use crate::batch::{BatchReport, StepError, for_each_message};
use domain::ports::{OrderStore, PartnerNotifier};
use domain::{OrderId, Step};

/// A partner step's whole batch: each queue message `T` is turned into the
/// partner's message and passed on with [`notify_once`], recording `step`.
/// The delivery company's step and customer service's are this with their
/// own message type and wording.
pub async fn relay<T, F>(
    store: &dyn OrderStore,
    partner: &dyn PartnerNotifier,
    step: Step,
    batch: SqsEvent,
    to_partner: F,
) -> BatchReport
where
    T: DeserializeOwned + ForOrder,
    F: Fn(&T) -> PartnerMessage,
{
    let to_partner = &to_partner;
    for_each_message(batch, |message: T| async move {
        let order_id = message.order_id();
        notify_once(store, partner, order_id, step, &to_partner(&message)).await
    })
    .await
}

pub async fn notify_once(
    store: &dyn OrderStore,
    partner: &dyn PartnerNotifier,
    order_id: OrderId,
    step: Step,
    message: &PartnerMessage,
) -> Result<(), StepError> {
    let stored = store.get(order_id).await?;
    if stored.as_ref().is_some_and(|order| order.reached(step)) {
        return Ok(());
    }
    partner.notify(message).await?;
    let now = Utc::now();
    store.record_step(order_id, step, now).await?;
    tracing::info!(step = step.as_str(), "partner notified");
    if let Some(order) = &stored {
        crate::metrics::step_reached(order, step, now);
    }
    Ok(())
}
