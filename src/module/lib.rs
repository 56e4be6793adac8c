//! # quota: hierarchical usage quotas inside Redis
//!
//! A tour of the rooms:
//!
//! - [`engine`] is the crate `quota-engine` (`src/engine`): the whole domain
//!   as plain Rust, trees of paths, policies with modes and windows, holds
//!   with expiry, commits, charges, batches, the price book, events and
//!   their stored encodings. It has no Redis dependency at all and takes
//!   the time as an argument, so every rule is tested with plain `cargo test`.
//! - [`commands`] is the thin skin that Redis calls: each file parses one
//!   family of commands with a shared argument cursor, calls the engine and
//!   renders the answer as a RESP map or JSON.
//! - [`replication`] propagates writes as `QUOTA.REPLAY key stamp …` (the
//!   primary's time and settings), so a replica or an AOF reload applies
//!   them exactly as the primary did, and does what follows every change.
//! - [`datatype`] hands the engine's encodings ([`persist`]: versioned from
//!   the first release, validated on load) to Redis through the `quotatree`
//!   type's callbacks: RDB, AOF rewrite, `DUMP`/`RESTORE`.
//! - [`expiry`] is the timer that expires holds without client action.
//! - [`eviction`] refuses tree writes while `maxmemory-policy` may evict
//!   trees (and their limits with them), unless told otherwise.
//! - [`config`], [`clock`], [`prices`] and [`stats`] are the module-wide
//!   state: settings, the (test) clock, the price book, `INFO` counters.
//! - `module` registers all of it with Redis.
//!
//! Next door: `lua/` is the same commands as a Redis Functions library for
//! servers that cannot load modules (its sections port these files one by
//! one), and `src/load` is the binary that installs it.

/// The engine crate, under the name the module has always used for it.
pub use quota_engine as engine;
/// Tree and price-book encodings live in the engine; the module hands them to Redis.
pub use quota_engine::persist;

pub mod clock;
pub mod commands;
pub mod config;
pub mod ctext;
pub mod datatype;
pub mod eviction;
pub mod expiry;
pub mod ledger;
pub mod plans;
pub mod prices;
pub mod replication;
pub mod stats;

// The module itself is left out of unit tests: `redis_module!` installs
// Redis's allocator, which does not exist outside redis-server.
#[cfg(not(test))]
pub mod module;

// The module's tables beside the catalog they derive from (the entry
// points: `module::entry_of`, checked when the module loads).
#[cfg(test)]
mod catalog_check;
