//! What happens to an order, one function per thing a person does:
//!
//! | a person… | use case | module |
//! |-----------|----------|--------|
//! | a customer orders a cake | [`place_order`] | `place_order.rs` |
//! | a customer or the cake maker looks at an order | [`read_order`] | `read_order.rs` |
//! | the cake maker marks it fulfilled | [`fulfil_order`] | `fulfil_order.rs` |
//! | the customer confirms delivery, with a review | [`confirm_delivery`] | `confirm_delivery.rs` |
//!
//! Each is a plain `async fn` over the domain's ports ([`domain::ports`]):
//! typed requests in (already validated by [`domain::validation`]), a typed
//! result or an [`Error`] out. They know nothing of HTTP: the `order`,
//! `fulfilled` and `delivered` functions read the request, call one of
//! them and answer; the shop's form without script (the `web` crate) calls
//! [`place_order`] itself and renders what it returns; the local runner
//! (`bakery`) hands the same parts to all of them. So an order placed
//! through `POST /order` and one placed through the shop's form are placed
//! by the same lines.
//!
//! What a use case does beyond the ports goes with it: the log line that
//! says it happened, in the order's span (`lambda_kit::logs`), and the
//! business metrics (`lambda_kit::metrics`).
//!
//! The steps the stream and the queues drive (emailing the cake maker,
//! dispatch, telling the partners) are the consumer functions' own: nobody
//! calls them but their event source.

mod confirm_delivery;
mod error;
mod fulfil_order;
mod place_order;
mod read_order;

pub use confirm_delivery::confirm_delivery;
pub use error::Error;
pub use fulfil_order::fulfil_order;
pub use place_order::{PlaceOrder, PlacedOrder, place_order};
pub use read_order::{OrderRead, WaitFor, read_order};
