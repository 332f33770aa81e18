//! Who waits for which step of which order: the long-polling reads of
//! `GET /order/{orderId}?waitFor=<step>`.
//!
//! A reader registers before it reads the order, so a change committed in
//! between still reaches it. After each committed change to an order the
//! store hands the order as it now is to [`Watchers::changed`], which
//! answers the readers whose step it has (with that order, so they need not
//! read it again) and leaves the others waiting. Readers that gave up (a
//! timeout, a closed connection) leave dropped receivers behind; those are
//! swept when the map has doubled since the last sweep, so orders that
//! never change again do not leak entries.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use domain::ports::StepReached;
use domain::{Order, OrderId, Step};
use tokio::sync::oneshot;

/// The smallest map size worth a sweep.
const FIRST_SWEEP: usize = 1024;

#[derive(Debug)]
pub(crate) struct Watchers {
    state: Mutex<State>,
}

/// One waiting reader: the step it waits for, and where to send the order.
type Waiter = (Step, oneshot::Sender<Option<Order>>);

#[derive(Debug)]
struct State {
    waiting: HashMap<OrderId, Vec<Waiter>>,
    /// Sweep dropped watchers once the map is this large.
    sweep_at: usize,
    /// Set when the bakery stops: nobody may start waiting any more.
    closed: bool,
}

impl Watchers {
    pub(crate) fn new() -> Watchers {
        Watchers {
            state: Mutex::new(State {
                waiting: HashMap::new(),
                sweep_at: FIRST_SWEEP,
                closed: false,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent whatever panicked while holding it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A signal for the first change of `order_id` that gives it `step`;
    /// `None` once closed.
    pub(crate) fn watch(&self, order_id: OrderId, step: Step) -> Option<StepReached> {
        let (answer, answered) = oneshot::channel();
        let mut state = self.state();
        if state.closed {
            return None;
        }
        state
            .waiting
            .entry(order_id)
            .or_default()
            .push((step, answer));
        if state.waiting.len() >= state.sweep_at {
            state.waiting.retain(|_, waiters| {
                waiters.retain(|(_, answer)| !answer.is_closed());
                !waiters.is_empty()
            });
            state.sweep_at = (state.waiting.len() * 2).max(FIRST_SWEEP);
        }
        drop(state);
        // A dropped sender (close) ends the wait without an order.
        Some(Box::pin(async move { answered.await.ok().flatten() }))
    }

    /// `order` was just committed as it is: answers everybody waiting for
    /// a step it has.
    pub(crate) fn changed(&self, order: &Order) {
        let mut state = self.state();
        let Some(waiters) = state.waiting.get_mut(&order.order_id) else {
            return;
        };
        let (reached, waiting): (Vec<Waiter>, Vec<Waiter>) = waiters
            .drain(..)
            .partition(|(step, _)| order.at(*step).is_some());
        if waiting.is_empty() {
            state.waiting.remove(&order.order_id);
        } else {
            *waiters = waiting;
        }
        drop(state);
        for (_, answer) in reached {
            let _ = answer.send(Some(order.clone()));
        }
    }

    /// Ends every wait (without an order) and refuses new ones: the bakery
    /// is stopping and its reads should answer now rather than hold up the
    /// shutdown.
    pub(crate) fn close(&self) {
        let mut state = self.state();
        state.closed = true;
        state.waiting.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use std::time::Duration;

    use domain::memory::placed_order as order;

    async fn answer(signal: StepReached) -> Option<Order> {
        tokio::time::timeout(Duration::from_secs(5), signal)
            .await
            .expect("the signal fires")
    }

    /// Polls once: whether the signal had fired.
    async fn fired(signal: &mut StepReached) -> bool {
        std::future::poll_fn(|cx| std::task::Poll::Ready(signal.as_mut().poll(cx).is_ready())).await
    }

    #[tokio::test]
    async fn a_change_answers_the_readers_whose_step_it_brings() {
        let watchers = Watchers::new();
        let (mut ada, other) = (order(), order());
        let notified = watchers.watch(ada.order_id, Step::BakerNotified).unwrap();
        let mut fulfilled = watchers.watch(ada.order_id, Step::Fulfilled).unwrap();
        let mut elsewhere = watchers.watch(other.order_id, Step::BakerNotified).unwrap();

        ada.record(Step::BakerNotified, Utc::now());
        watchers.changed(&ada);
        let answered = answer(notified).await.expect("with the order");
        assert!(answered.at(Step::BakerNotified).is_some());
        // Waiting for a later step, or on another order: still waiting.
        assert!(!fired(&mut fulfilled).await);
        assert!(!fired(&mut elsewhere).await);
        assert_eq!(watchers.len(), 2);
    }

    #[tokio::test]
    async fn closing_ends_every_wait_and_refuses_new_ones() {
        let watchers = Watchers::new();
        let waiting = watchers.watch(order().order_id, Step::Delivered).unwrap();
        watchers.close();
        assert_eq!(answer(waiting).await, None);
        assert!(watchers.watch(order().order_id, Step::Delivered).is_none());
    }

    #[tokio::test]
    async fn abandoned_watchers_are_swept() {
        let watchers = Watchers::new();
        for _ in 0..FIRST_SWEEP * 3 {
            drop(watchers.watch(order().order_id, Step::Delivered));
        }
        // Every sweep keeps only the live ones: here, none but the newest.
        assert!(watchers.len() < FIRST_SWEEP, "{} entries", watchers.len());
    }
}
