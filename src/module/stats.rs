//! Counters for the `INFO quota` section.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

pub static RESERVES_ALLOWED: AtomicU64 = AtomicU64::new(0);
pub static RESERVES_DENIED: AtomicU64 = AtomicU64::new(0);
pub static COMMITS: AtomicU64 = AtomicU64::new(0);
pub static RELEASES: AtomicU64 = AtomicU64::new(0);
pub static CHARGES: AtomicU64 = AtomicU64::new(0);
pub static EXPIRED_HOLDS: AtomicU64 = AtomicU64::new(0);
pub static EVENTS: AtomicU64 = AtomicU64::new(0);
/// Timer ticks skipped because Redis asked modules not to propagate
/// (`CLIENT PAUSE`, `FAILOVER`).
pub static EXPIRE_PAUSED_TICKS: AtomicU64 = AtomicU64::new(0);
/// Timer ticks that ended with expiry still due (their budget was spent).
pub static EXPIRE_DEFERRED_TICKS: AtomicU64 = AtomicU64::new(0);
/// The most holds and ids one tick expired or forgot.
pub static EXPIRE_TICK_MAX: AtomicU64 = AtomicU64::new(0);

/// Gauges: trees in the keyspace, their paths and their live holds.
pub static TREES: AtomicI64 = AtomicI64::new(0);
pub static PATHS: AtomicI64 = AtomicI64::new(0);
pub static HOLDS: AtomicI64 = AtomicI64::new(0);

/// Adds a tree's size to the gauges (`sign` 1) or takes it away (-1).
pub fn count_tree(tree: &crate::engine::Tree, sign: i64) {
    TREES.fetch_add(sign, Ordering::Relaxed);
    PATHS.fetch_add(sign * tree.path_count() as i64, Ordering::Relaxed);
    HOLDS.fetch_add(sign * tree.hold_count() as i64, Ordering::Relaxed);
}

/// What a command changed in a tree's size: (paths, holds) before it.
pub fn count_change(before: (usize, usize), tree: &crate::engine::Tree) {
    PATHS.fetch_add(tree.path_count() as i64 - before.0 as i64, Ordering::Relaxed);
    HOLDS.fetch_add(tree.hold_count() as i64 - before.1 as i64, Ordering::Relaxed);
}

pub fn gauge(value: &AtomicI64) -> i64 {
    value.load(Ordering::Relaxed)
}

pub fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

pub fn record_max(counter: &AtomicU64, value: u64) {
    counter.fetch_max(value, Ordering::Relaxed);
}

pub fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
