//! The engine: quota trees as plain Rust data, with no knowledge of Redis.
//! Every operation takes the current time as `now_ms` and returns a plain
//! outcome or a typed [`Error`], so the rules are testable with `cargo test`
//! and replay identically on replicas and from the AOF.
//!
//! This crate has no Redis dependency at all: the compiler, not discipline,
//! keeps the rules pure. The module (`src/module`) is a thin skin over it,
//! [`persist`] is how a tree becomes bytes and comes back, and
//! [`restore`] how stored parts become a tree again, validated.
//!
//! The rooms, by the word each defines:
//! - [`tree`]: the *tree* itself, setting *policies*, which policies a
//!   *charge set* reaches, charging usage, the event log;
//!   [`paths`]: where its nodes live and how a *path* finds one;
//!   [`held`]: how policies count the live *holds* that match them;
//!   [`view`]: what reads show.
//! - [`hold`]: *reserve*, *commit*, *release*, *extend*, *expire*, *charge*;
//!   [`due`]: the expiry a read looks through without applying it.
//! - [`policy`]: a *policy*'s *mode*, *allowance*, *status* and usage, and
//!   in `policy/periods.rs` its *periods* (roll, rollover, history,
//!   reset), in `policy/grants.rs` its *grants* (draw-down, expiry,
//!   `LOW`, remembered ids); [`thresholds`]: *warning thresholds*; [`window`]: calendar
//!   and rolling *windows*; [`events`]: what a tree reports;
//!   [`usage`]: *usage* over time (hourly and daily *buckets* per
//!   *series*) and what `QUOTA.USAGE` reads of it.
//! - [`access`]: *access rules* (allow and deny lists of services and
//!   models) and how a request is judged by them.
//! - [`amount`]: exact decimals; [`names`]: paths, metrics and names;
//!   `short`: a short list kept in place (what a request reaches);
//!   [`pricing`]: the *price book*; [`plan`]: *plans* and the *plan book*;
//!   [`sync`]: a tree *following* a plan (adopt, sync, views); [`outcome`]: what the engine answers;
//!   [`error`]: why it refuses.
//! - [`persist`] and [`restore`]: a tree as bytes, and back.
//!
//! Lua twin: the Redis Functions library in lua/src/*.lua; each engine
//! file names the section that ports it (`Lua twin:`), and so does each
//! engine function that has a twin.

pub mod access;
pub mod amount;
pub mod catalog;
pub mod due;
pub mod error;
pub mod events;
pub mod held;
pub mod hold;
pub mod labels;
pub mod ledger;
pub mod meta;
pub mod names;
pub mod outcome;
pub mod paths;
pub mod persist;
pub mod plan;
pub mod policy;
pub mod pricing;
pub mod restore;
mod short;
pub mod sync;
pub mod thresholds;
pub mod tree;
pub mod tz;
pub mod usage;
pub mod view;
pub mod window;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_access;
#[cfg(test)]
mod tests_access_review;
#[cfg(test)]
mod tests_grants;
#[cfg(test)]
mod tests_grants_review;
#[cfg(test)]
mod tests_labels;
#[cfg(test)]
mod tests_ledger;
#[cfg(test)]
mod tests_matching;
#[cfg(test)]
mod tests_plan_json;
#[cfg(test)]
mod tests_plans;
#[cfg(test)]
mod tests_support;
#[cfg(test)]
mod tests_usage;

pub use error::{Error, Result};
pub use hold::{BatchMode, ChargeRequest, Expiry, ReserveRequest};
pub use outcome::Costs;
pub use policy::{Mode, PolicySpec, Status};
pub use tree::{ChargeSet, Limits, Tree};
pub use window::Window;
