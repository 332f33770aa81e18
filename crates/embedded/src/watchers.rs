//! Who waits for which order to change: the long-polling reads of
//! `GET /order/{orderId}?waitFor=…`.
//!
//! A reader registers before it reads the order, so a change committed in
//! between still wakes it. The store fires an order's watchers after each
//! committed write to that order. Watchers whose reader gave up (a timeout,
//! a closed connection) are dropped receivers; they are swept when the map
//! has doubled since the last sweep, so orders that never change again do
//! not leak entries.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use domain::OrderId;
use domain::ports::OrderChanged;
use tokio::sync::oneshot;

/// The smallest map size worth a sweep.
const FIRST_SWEEP: usize = 1024;

#[derive(Debug)]
pub(crate) struct Watchers {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    waiting: HashMap<OrderId, Vec<oneshot::Sender<()>>>,
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

    /// A signal for the next change of `order_id`; `None` once closed.
    pub(crate) fn watch(&self, order_id: OrderId) -> Option<OrderChanged> {
        let (fire, fired) = oneshot::channel();
        let mut state = self.state();
        if state.closed {
            return None;
        }
        state.waiting.entry(order_id).or_default().push(fire);
        if state.waiting.len() >= state.sweep_at {
            state.waiting.retain(|_, senders| {
                senders.retain(|sender| !sender.is_closed());
                !senders.is_empty()
            });
            state.sweep_at = (state.waiting.len() * 2).max(FIRST_SWEEP);
        }
        drop(state);
        // A dropped sender (close) also ends the wait.
        Some(Box::pin(async move {
            let _ = fired.await;
        }))
    }

    /// Wakes everybody waiting for `order_id`.
    pub(crate) fn changed(&self, order_id: OrderId) {
        let senders = self.state().waiting.remove(&order_id);
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(());
        }
    }

    /// Wakes every waiter and refuses new ones: the bakery is stopping and
    /// its reads should answer now rather than hold up the shutdown.
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
    use std::time::Duration;

    fn id() -> OrderId {
        OrderId(uuid::Uuid::now_v7())
    }

    async fn fires(signal: OrderChanged) -> bool {
        tokio::time::timeout(Duration::from_secs(5), signal)
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_change_wakes_the_watchers_of_that_order_only() {
        let watchers = Watchers::new();
        let (a, b) = (id(), id());
        let first = watchers.watch(a).expect("open");
        let second = watchers.watch(a).expect("open");
        let mut other = watchers.watch(b).expect("open");
        watchers.changed(a);
        assert!(fires(first).await);
        assert!(fires(second).await);
        // b's watcher is still pending.
        assert!(futures_poll_once(&mut other).await.is_none());
        assert_eq!(watchers.len(), 1);
    }

    #[tokio::test]
    async fn closing_wakes_everybody_and_refuses_new_watchers() {
        let watchers = Watchers::new();
        let waiting = watchers.watch(id()).expect("open");
        watchers.close();
        assert!(fires(waiting).await);
        assert!(watchers.watch(id()).is_none());
    }

    #[tokio::test]
    async fn abandoned_watchers_are_swept() {
        let watchers = Watchers::new();
        for _ in 0..FIRST_SWEEP * 3 {
            drop(watchers.watch(id()));
        }
        // Every sweep keeps only the live ones: here, none but the newest.
        assert!(watchers.len() < FIRST_SWEEP, "{} entries", watchers.len());
    }

    /// Polls once: `Some` if the signal had fired.
    async fn futures_poll_once(signal: &mut OrderChanged) -> Option<()> {
        std::future::poll_fn(|cx| match signal.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => std::task::Poll::Ready(Some(())),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await
    }
}
