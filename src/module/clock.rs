//! The module's clock: wall time in Unix milliseconds, or, when the module
//! is loaded with `TEST_CLOCK yes`, a clock that only `QUOTA.DEBUG CLOCK`
//! moves, so tests control time instead of sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config;

static TEST_NOW_MS: AtomicU64 = AtomicU64::new(0);

fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The current time. The test clock starts at the wall time of module load.
pub fn now_ms() -> u64 {
    if config::test_clock() { TEST_NOW_MS.load(Ordering::Relaxed) } else { wall_ms() }
}

/// Called once at load: freezes the test clock at the current wall time.
pub fn init() {
    TEST_NOW_MS.store(wall_ms(), Ordering::Relaxed);
}

pub fn set_test_ms(ms: u64) {
    TEST_NOW_MS.store(ms, Ordering::Relaxed);
}

pub fn advance_test_ms(ms: u64) -> u64 {
    TEST_NOW_MS.fetch_add(ms, Ordering::Relaxed).saturating_add(ms)
}
