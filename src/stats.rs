//! Counters for the `INFO quota` section.

use std::sync::atomic::{AtomicU64, Ordering};

pub static RESERVES_ALLOWED: AtomicU64 = AtomicU64::new(0);
pub static RESERVES_DENIED: AtomicU64 = AtomicU64::new(0);
pub static COMMITS: AtomicU64 = AtomicU64::new(0);
pub static RELEASES: AtomicU64 = AtomicU64::new(0);
pub static CHARGES: AtomicU64 = AtomicU64::new(0);
pub static EXPIRED_HOLDS: AtomicU64 = AtomicU64::new(0);

pub fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

pub fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}
