//! The engine: quota trees as plain Rust data, with no knowledge of Redis.
//! Every operation takes the current time as `now_ms` and returns a plain
//! outcome or a typed [`Error`], so the rules are testable with `cargo test`
//! and replay identically on replicas and from the AOF.
//!
//! This crate has no Redis dependency at all: the compiler, not discipline,
//! keeps the rules pure. The module (`src/module`) is a thin skin over it,
//! [`persist`] is how a tree becomes bytes and comes back, and
//! [`restore`] how stored parts become a tree again, validated.

pub mod amount;
pub mod due;
pub mod error;
pub mod events;
pub mod held;
pub mod hold;
pub mod names;
pub mod outcome;
pub mod paths;
pub mod persist;
pub mod policy;
pub mod pricing;
pub mod restore;
pub mod thresholds;
pub mod tree;
pub mod view;
pub mod window;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_matching;

pub use error::{Error, Result};
pub use hold::{BatchMode, ChargeRequest, Expiry, ReserveRequest};
pub use outcome::Costs;
pub use policy::{Mode, PolicySpec, Status};
pub use tree::{ChargeSet, Limits, Tree};
pub use window::Window;
