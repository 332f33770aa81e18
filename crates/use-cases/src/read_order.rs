//! A customer or the cake maker looks at an order, and may wait for its
//! next step.

use std::time::Duration;

use domain::auth::TokenHash;
use domain::ports::OrderStore;
use domain::{Order, OrderId, Step};

use crate::Error;

/// Wait until the order's timeline has `step`, for at most `at_most`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitFor {
    pub step: Step,
    pub at_most: Duration,
}

/// An order as read.
#[derive(Debug, Clone)]
pub struct OrderRead {
    pub order: Order,
    /// How long the read was prepared to wait for the step asked for:
    /// `None` when it did not wait at all (the step was already there, or
    /// the store cannot say when an order changes).
    pub waited: Option<Duration>,
}

/// The order `order_id`, for whoever holds `token`: its customer's token
/// or the cake maker's (`baker_token`). Any other token, another order's
/// among them, is [`Error::NotFound`], exactly as for an order that does
/// not exist.
///
/// With `wait`, a read whose order lacks the step yet answers once the
/// step is recorded, or after `wait.at_most` with the order as it is then,
/// whichever is first. Only stores that can say when an order changes
/// ([`OrderStore::watch`]) wait; the others answer at once. The token is
/// checked before any waiting.
pub async fn read_order(
    store: &dyn OrderStore,
    baker_token: &TokenHash,
    order_id: OrderId,
    token: &str,
    wait: Option<WaitFor>,
) -> Result<OrderRead, Error> {
    let read = || async { store.get(order_id).await?.ok_or(Error::NotFound) };
    // Watch before reading: a change between the read and the watch would
    // otherwise go unnoticed.
    let reached = wait.and_then(|wait| store.watch(order_id, wait.step));
    let mut order = read().await?;
    // Either token is checked in full, so timing tells nothing about which
    // one came close.
    let is_baker = baker_token.matches(token);
    let is_customer = order.customer_token_hash.matches(token);
    if !(is_baker | is_customer) {
        return Err(Error::NotFound);
    }
    let mut waited = None;
    if let (Some(wait), Some(reached)) = (wait, reached) {
        if order.at(wait.step).is_none() {
            waited = Some(wait.at_most);
            order = match tokio::time::timeout(wait.at_most, reached).await {
                Ok(Some(order)) => order,
                // The wait is over, or the store stopped watching: the order
                // as it is now.
                Ok(None) | Err(_) => read().await?,
            };
        }
    }
    Ok(OrderRead { order, waited })
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::memory::{MemoryStore, placed_order, token_of};

    const BAKER: &str = "baker-secret";

    async fn read(store: &MemoryStore, order_id: OrderId, token: &str) -> Result<Order, Error> {
        let wait = Some(WaitFor {
            step: Step::Delivered,
            at_most: Duration::from_secs(30),
        });
        read_order(store, &TokenHash::of(BAKER), order_id, token, wait)
            .await
            .map(|read| {
                // The memory store cannot watch: no waiting.
                assert_eq!(read.waited, None);
                read.order
            })
    }

    #[tokio::test]
    async fn the_customer_and_the_baker_read_the_order_and_nobody_else() {
        let store = MemoryStore::default();
        let order = placed_order();
        let other = placed_order();
        store.insert(order.clone());
        store.insert(other.clone());
        let id = order.order_id;
        assert_eq!(read(&store, id, &token_of(&order)).await.unwrap(), order);
        assert_eq!(read(&store, id, BAKER).await.unwrap(), order);
        assert_eq!(read(&store, id, "guess").await, Err(Error::NotFound));
        assert_eq!(
            read(&store, id, &token_of(&other)).await,
            Err(Error::NotFound),
            "another order's token"
        );
        let unknown = OrderId(uuid::Uuid::now_v7());
        assert_eq!(read(&store, unknown, BAKER).await, Err(Error::NotFound));
    }
}
