//! The order record and its state machine.
//!
//! An order's status only ever moves forward:
//! `placed -> fulfilled -> out_for_delivery -> delivered`. Besides the status
//! changes, the timeline records when each side effect reached its person
//! (baker emailed, delivery company notified, customer service reached), so
//! that anyone can see how far an order got and how long each step took.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::auth::TokenHash;
pub use crate::order_id::OrderId;

/// Where an order is in the flow. Ordered: a later variant is further along.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Placed,
    Fulfilled,
    OutForDelivery,
    Delivered,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Placed => "placed",
            Status::Fulfilled => "fulfilled",
            Status::OutForDelivery => "out_for_delivery",
            Status::Delivered => "delivered",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        [
            Status::Placed,
            Status::Fulfilled,
            Status::OutForDelivery,
            Status::Delivered,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// The status an order must have to move to this one.
    pub fn predecessor(self) -> Option<Status> {
        match self {
            Status::Placed => None,
            Status::Fulfilled => Some(Status::Placed),
            Status::OutForDelivery => Some(Status::Fulfilled),
            Status::Delivered => Some(Status::OutForDelivery),
        }
    }

    /// The timeline step that records reaching this status.
    pub fn step(self) -> Step {
        match self {
            Status::Placed => Step::Placed,
            Status::Fulfilled => Step::Fulfilled,
            Status::OutForDelivery => Step::OutForDelivery,
            Status::Delivered => Step::Delivered,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that happens to an order, in flow order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Placed,
    BakerNotified,
    Fulfilled,
    OutForDelivery,
    DeliveryNotified,
    Delivered,
    CustomerServiceNotified,
}

impl Step {
    /// Every step, in flow order.
    pub const ALL: [Step; 7] = [
        Step::Placed,
        Step::BakerNotified,
        Step::Fulfilled,
        Step::OutForDelivery,
        Step::DeliveryNotified,
        Step::Delivered,
        Step::CustomerServiceNotified,
    ];

    /// The step named `text` (as in the timeline), if there is one.
    pub fn parse(text: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Placed => "placed",
            Step::BakerNotified => "baker_notified",
            Step::Fulfilled => "fulfilled",
            Step::OutForDelivery => "out_for_delivery",
            Step::DeliveryNotified => "delivery_notified",
            Step::Delivered => "delivered",
            Step::CustomerServiceNotified => "customer_service_notified",
        }
    }
}

/// When a step happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTime {
    pub step: Step,
    pub at: DateTime<Utc>,
}

/// An order as the bakery keeps it.
///
/// Its JSON form is what clients, events and queue messages see; the
/// customer token's hash is deliberately left out of it, so adapters store
/// that beside the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub order_id: OrderId,
    pub status: Status,
    pub name: String,
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(with = "crate::catalog::product_id_json")]
    pub product_id: String,
    pub product_name: String,
    pub quantity: u32,
    pub unit_price_cents: u32,
    pub total_cents: u64,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfillment_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_company_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_review: Option<String>,
    /// Every step so far, in flow order.
    pub timeline: Vec<StepTime>,
    /// Follows the order through every function's logs, events and
    /// messages: chosen when it is placed ([`crate::correlation`]). Orders
    /// stored before it existed have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    #[serde(skip)]
    pub customer_token_hash: TokenHash,
}

/// The details a status change carries (which ones depends on the target).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepDetails {
    pub fulfillment_id: Option<String>,
    pub delivery_company_id: Option<String>,
    pub order_review: Option<String>,
}

/// A request to move an order to `to`, from its predecessor status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub order_id: OrderId,
    pub to: Status,
    pub at: DateTime<Utc>,
    pub details: StepDetails,
}

/// What a transition would do to an order in its current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionCheck {
    /// The order is in the predecessor status: apply it.
    Apply,
    /// The order already reached (or passed) the target: a repeat, change nothing.
    AlreadyDone,
    /// The order has not reached the predecessor yet.
    OutOfOrder,
}

impl Order {
    /// Whether `to` can be applied now. Compare-and-set in every adapter
    /// rests on this: an order never moves backwards and a repeat changes
    /// nothing.
    pub fn check(&self, to: Status) -> TransitionCheck {
        if self.status >= to {
            TransitionCheck::AlreadyDone
        } else if Some(self.status) == to.predecessor() {
            TransitionCheck::Apply
        } else {
            TransitionCheck::OutOfOrder
        }
    }

    /// Applies a transition that [`Order::check`] allowed.
    pub fn apply(&mut self, transition: &Transition) {
        debug_assert_eq!(self.check(transition.to), TransitionCheck::Apply);
        self.status = transition.to;
        let details = &transition.details;
        if details.fulfillment_id.is_some() {
            self.fulfillment_id = details.fulfillment_id.clone();
        }
        if details.delivery_company_id.is_some() {
            self.delivery_company_id = details.delivery_company_id.clone();
        }
        if details.order_review.is_some() {
            self.order_review = details.order_review.clone();
        }
        self.record(transition.to.step(), transition.at);
    }

    /// Records when `step` happened; the first record wins, so redelivered
    /// events do not move the time. Returns whether anything changed.
    pub fn record(&mut self, step: Step, at: DateTime<Utc>) -> bool {
        if self.reached(step) {
            return false;
        }
        let position = self.timeline.partition_point(|s| s.step < step);
        self.timeline.insert(position, StepTime { step, at });
        true
    }

    /// When `step` happened, if it has.
    pub fn at(&self, step: Step) -> Option<DateTime<Utc>> {
        self.timeline.iter().find(|s| s.step == step).map(|s| s.at)
    }

    pub fn reached(&self, step: Step) -> bool {
        self.at(step).is_some()
    }

    /// How long after the step before it `step` came, had it come `at`
    /// (the business metric `StepLatency`): `None` without an earlier
    /// step, or for clocks that disagree (a negative gap).
    pub fn latency_to(&self, step: Step, at: DateTime<Utc>) -> Option<std::time::Duration> {
        let previous = self.timeline.iter().rfind(|s| s.step < step)?;
        (at - previous.at).to_std().ok()
    }

    /// [`Order::latency_to`] for a step the timeline already has.
    pub fn step_latency(&self, step: Step) -> Option<std::time::Duration> {
        self.latency_to(step, self.at(step)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::placed_order as sample_order;

    fn transition(order: &Order, to: Status) -> Transition {
        Transition {
            order_id: order.order_id,
            to,
            at: Utc::now(),
            details: StepDetails::default(),
        }
    }

    #[test]
    fn an_order_walks_forward_one_step_at_a_time() {
        let mut order = sample_order();
        for to in [Status::Fulfilled, Status::OutForDelivery, Status::Delivered] {
            assert_eq!(order.check(to), TransitionCheck::Apply);
            order.apply(&transition(&order, to));
            assert_eq!(order.status, to);
            assert!(order.reached(to.step()));
        }
    }

    #[test]
    fn repeats_and_backward_moves_are_already_done() {
        let mut order = sample_order();
        order.apply(&transition(&order, Status::Fulfilled));
        assert_eq!(order.check(Status::Fulfilled), TransitionCheck::AlreadyDone);
        assert_eq!(order.check(Status::Placed), TransitionCheck::AlreadyDone);
    }

    #[test]
    fn skipping_a_step_is_out_of_order() {
        let order = sample_order();
        assert_eq!(order.check(Status::Delivered), TransitionCheck::OutOfOrder);
        assert_eq!(
            order.check(Status::OutForDelivery),
            TransitionCheck::OutOfOrder
        );
    }

    #[test]
    fn timeline_keeps_flow_order_and_first_time() {
        let mut order = sample_order();
        let first = Utc::now();
        assert!(order.record(Step::Fulfilled, first));
        assert!(order.record(Step::BakerNotified, first));
        assert!(!order.record(Step::BakerNotified, first + chrono::Duration::seconds(5)));
        let steps: Vec<Step> = order.timeline.iter().map(|s| s.step).collect();
        assert_eq!(
            steps,
            vec![Step::Placed, Step::BakerNotified, Step::Fulfilled]
        );
        assert_eq!(order.at(Step::BakerNotified), Some(first));
    }

    #[test]
    fn details_are_kept_on_the_order() {
        let mut order = sample_order();
        let mut t = transition(&order, Status::Fulfilled);
        t.details.fulfillment_id = Some("oven-3".into());
        order.apply(&t);
        assert_eq!(order.fulfillment_id.as_deref(), Some("oven-3"));
    }

    #[test]
    fn status_text_round_trips() {
        for s in [
            Status::Placed,
            Status::Fulfilled,
            Status::OutForDelivery,
            Status::Delivered,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(Status::parse("baked"), None);
    }

    #[test]
    fn token_hash_is_not_in_the_json_form() {
        let text = serde_json::to_string(&sample_order()).unwrap();
        assert!(!text.to_lowercase().contains("token"), "{text}");
    }
}
