//! The bakery's core: what an order is, how it moves, what it announces and
//! what the seven functions need from the outside world.
//!
//! Nothing in this crate does IO. The compiler keeps it that way: there is no
//! AWS SDK, no SQLite and no async runtime among its dependencies. Adapters
//! (the `embedded` crate for one machine, the AWS adapters for the cloud)
//! implement the [`ports`]; the use cases (the `use-cases` crate) and the
//! Lambda crates' handlers are written against those ports.
//!
//! # Layout
//!
//! - [`catalog`]: the cakes the bakery sells, with prices in integer cents.
//! - [`order`]: the order record, its status and the time of every step.
//! - [`order_id`]: the order's identifier, which tokens and events name.
//! - [`correlation`]: the id that follows an order through the logs.
//! - [`validation`]: turning untrusted JSON into valid requests, with a
//!   field-by-field list of what is wrong.
//! - [`events`]: the stream events and queue messages the steps exchange, and
//!   the deterministic ids that make duplicates recognisable.
//! - [`auth`]: bearer tokens, hashed and compared in constant time.
//! - [`money`]: prices as people read them ("€32.00"), for pages and
//!   emails alike.
//! - [`ports`]: the traits adapters implement, with the errors they must
//!   return.
//! - `memory` (feature `memory`): in-memory adapters of every port, for
//!   unit tests of the use cases and the handlers.

pub mod auth;
pub mod catalog;
pub mod correlation;
pub mod events;
pub mod money;
pub mod order;
pub mod order_id;
pub mod ports;
pub mod validation;

#[cfg(any(test, feature = "memory"))]
pub mod memory;

pub use catalog::{Catalog, Product};
pub use order::{Order, OrderId, Status, Step, StepDetails, StepTime, Transition};
