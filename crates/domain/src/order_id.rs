//! The order's identifier, on its own so that what only names an order
//! (tokens, events) needs nothing else of the order model.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An order's identifier, a UUID (version 7, so ids sort by creation time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(pub Uuid);

impl OrderId {
    /// Parses the textual form clients send; `None` if it is not a UUID.
    pub fn parse(text: &str) -> Option<OrderId> {
        Uuid::try_parse(text).ok().map(OrderId)
    }
}

impl std::fmt::Display for OrderId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
