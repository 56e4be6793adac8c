//! The server-wide plan book, shared by every command on this server.
//! It is changed only by `QUOTA.PLAN SET|DEL` (replicated verbatim: they
//! read no clock) and by loading an RDB (aux data). Trees hold the plan
//! they last saw (an `Arc` shared with the book while it is current).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::engine::Tree;
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

/// The book's current plan of the name `tree` follows, if any.
pub fn current_for(tree: &Tree) -> Option<Arc<Plan>> {
    tree.plan_name().and_then(current)
}

/// Snapshots that trees loaded (RDB, full sync, `RESTORE`, `LOADTREE`) and
/// the book does not hold (a plan changed or deleted since), by name: each
/// a weak reference, so trees loaded with the same snapshot share one copy,
/// as they did before the restart, and a copy goes when its last tree does.
static LOADED: Mutex<Option<HashMap<String, Vec<Weak<Plan>>>>> = Mutex::new(None);

/// The copy of `plan` that trees loaded before hold, if one is alive,
/// else `plan` itself, remembered for the trees loaded after it. The
/// entries of `plan`'s name whose trees are all gone are dropped here.
pub fn share_loaded(plan: &Arc<Plan>) -> Arc<Plan> {
    let mut guard = LOADED.lock().unwrap_or_else(|e| e.into_inner());
    let seen = guard.get_or_insert_with(HashMap::new).entry(plan.name.clone()).or_default();
    seen.retain(|weak| weak.strong_count() > 0);
    if let Some(shared) = seen.iter().filter_map(Weak::upgrade).find(|other| other.same(plan)) {
        return shared;
    }
    seen.push(Arc::downgrade(plan));
    plan.clone()
}
