//! The server-wide price book, shared by every command on this server.
//! It is changed only by `QUOTA.PRICE SET|DEL` (replicated verbatim: they
//! read no clock) and by loading an RDB (aux data).

use std::sync::Mutex;

use crate::engine::Result;
use crate::engine::pricing::{Estimate, PriceBook};

static BOOK: Mutex<Option<PriceBook>> = Mutex::new(None);

/// Runs `f` with the price book. Commands run on Redis's main thread, so
/// the lock is never contended; a poisoned lock only means a panic
/// elsewhere and the book itself is still whole.
pub fn with_book<R>(f: impl FnOnce(&mut PriceBook) -> R) -> R {
    let mut guard = BOOK.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(PriceBook::default))
}

/// Prices a `USAGE service/model name value …` item.
pub fn estimate(key: &str, usage: &[(String, String)]) -> Result<Estimate> {
    with_book(|book| book.estimate(key, usage))
}
