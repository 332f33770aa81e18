//! The orders committed lately, as committed, so that a lookup by id
//! (`GET /order/{orderId}`, a step's first look at its order) skips SQLite,
//! and so does a writer job about to change an order that no job of its
//! transaction has written yet (`WriteTx::recent_order`).
//!
//! A read-only connection drops its whole page cache whenever another
//! connection has committed since its last read, and under load the writer
//! commits hundreds of times a second: every lookup read its pages again
//! (system calls into the WAL) and parsed the order's JSON. A profile of
//! the bakery under lifecycle load had those lookups at about an eighth of
//! its CPU.
//!
//! The writer thread puts each order it changes here once the change is
//! committed, in commit order and before the job's caller hears back, so
//! whoever learnt of a change finds it here; a change that did not commit
//! never gets here. An order not here (older, or pushed out by newer ones)
//! is read from the database as before.
//!
//! Only the process that owns the data directory keeps recent orders. The
//! other processes that open it (the operator's CLI) never change orders,
//! so what the owner keeps is never behind the file; the bakery refuses to
//! run its steps on a directory another process owns.

use std::num::NonZeroUsize;
use std::sync::{Mutex, MutexGuard};

use domain::{Order, OrderId};
use lru::LruCache;

/// Orders kept: far more than are ever in flight at once (one per
/// customer waiting), few megabytes.
const KEPT: NonZeroUsize = NonZeroUsize::new(8192).unwrap();

#[derive(Debug)]
pub(crate) struct RecentOrders {
    /// `None` in a process that does not own the data directory.
    orders: Option<Mutex<LruCache<OrderId, Order>>>,
}

impl RecentOrders {
    /// Recent orders for the owner of the data directory; none kept (every
    /// lookup reads the file) otherwise.
    pub(crate) fn new(owner: bool) -> RecentOrders {
        RecentOrders {
            orders: owner.then(|| Mutex::new(LruCache::new(KEPT))),
        }
    }

    fn orders(&self) -> Option<MutexGuard<'_, LruCache<OrderId, Order>>> {
        // A map of whole orders stays consistent whatever panicked.
        let orders = self.orders.as_ref()?;
        Some(orders.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The order as last committed, if it is among the recent ones.
    pub(crate) fn get(&self, order_id: OrderId) -> Option<Order> {
        self.orders()?.get(&order_id).cloned()
    }

    /// `order` was just committed as it is. Writer thread only, so
    /// versions arrive in commit order.
    pub(crate) fn committed(&self, order: &Order) {
        if let Some(mut orders) = self.orders() {
            orders.put(order.order_id, order.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use domain::Step;
    use domain::memory::placed_order;

    #[test]
    fn keeps_the_latest_committed_version() {
        let recent = RecentOrders::new(true);
        let mut order = placed_order();
        assert_eq!(recent.get(order.order_id), None);
        recent.committed(&order);
        order.record(Step::BakerNotified, Utc::now());
        recent.committed(&order);
        assert_eq!(recent.get(order.order_id), Some(order));
    }

    #[test]
    fn the_oldest_make_room() {
        let recent = RecentOrders::new(true);
        let first = placed_order();
        recent.committed(&first);
        for _ in 0..KEPT.get() {
            recent.committed(&placed_order());
        }
        assert_eq!(recent.get(first.order_id), None);
    }

    #[test]
    fn a_process_that_does_not_own_the_directory_keeps_none() {
        let recent = RecentOrders::new(false);
        let order = placed_order();
        recent.committed(&order);
        assert_eq!(recent.get(order.order_id), None);
    }
}
