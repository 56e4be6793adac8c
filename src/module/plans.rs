//! The server-wide plan book, shared by every command on this server.
//! It is changed only by `QUOTA.PLAN SET|DEL` (replicated verbatim: they
//! read no clock) and by loading an RDB (aux data). Trees hold the plan
//! they last saw (an `Arc` shared with the book while it is current).

use std::sync::{Arc, Mutex};

use crate::engine::plan::{Plan, PlanBook};

static BOOK: Mutex<Option<PlanBook>> = Mutex::new(None);

/// Runs `f` with the plan book. Commands run on Redis's main thread, so
/// the lock is never contended; a poisoned lock only means a panic
/// elsewhere and the book itself is still whole.
pub fn with_plans<R>(f: impl FnOnce(&mut PlanBook) -> R) -> R {
    let mut guard = BOOK.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(PlanBook::default))
}

/// The current plan named `name`, if the book has one.
pub fn current(name: &str) -> Option<Arc<Plan>> {
    with_plans(|book| book.get(name).cloned())
}
