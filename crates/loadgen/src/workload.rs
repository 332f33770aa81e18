//! What a run measures: the customers' mode, the endpoints timed and the
//! propagation steps. Both the load (`load`) and its report (`report`)
//! speak of them.

use serde::{Deserialize, Serialize};

/// What each customer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Only `POST /order`, as fast as answers come: accepted orders/s.
    Orders,
    /// The whole flow, order to customer service: lifecycles/s.
    Lifecycle,
}

/// The endpoints whose latency is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    PostOrder,
    GetOrder,
    /// `GET /order/{id}?waitFor=…`: its latency includes the wait.
    WaitOrder,
    PostFulfilled,
    PostDelivered,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::PostOrder,
        Endpoint::GetOrder,
        Endpoint::WaitOrder,
        Endpoint::PostFulfilled,
        Endpoint::PostDelivered,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::PostOrder => "POST /order",
            Endpoint::GetOrder => "GET /order/{id}",
            Endpoint::WaitOrder => "GET /order/{id}?waitFor",
            Endpoint::PostFulfilled => "POST /order/fulfilled",
            Endpoint::PostDelivered => "POST /order/delivered",
        }
    }
}

/// The propagation steps: from a step the client caused to the side effect
/// the flow must produce, both times as the order's timeline records them.
pub const PROPAGATION: [(&str, &str); 3] = [
    ("placed", "baker_notified"),
    ("fulfilled", "delivery_notified"),
    ("delivered", "customer_service_notified"),
];

pub fn propagation_name(from: &str, to: &str) -> String {
    format!("{from}->{to}")
}
