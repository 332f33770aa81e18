//! Telling a partner about an order exactly once per order step.
//!
//! Both partner steps (delivery company, customer service) follow one rule:
//! skip if the order's timeline already records the step, else notify, then
//! record the step. A crash between the last two may notify again; the
//! message id (the webhook id) stays the same so the partner can tell.

use chrono::Utc;
use domain::events::PartnerMessage;

use crate::batch::StepError;
use domain::ports::{OrderStore, PartnerNotifier};
use domain::{OrderId, Step};

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
