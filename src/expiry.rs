//! Active expiry: holds expire at their TTL with no client action.
//!
//! Every command that leaves a tree with something due (a hold to expire
//! or an id to forget) schedules the key here, at its earliest due time.
//! A timer on the primary wakes every [`TICK`], opens the keys that are
//! due, expires them at the module clock and replicates what it changed as
//! `QUOTA.REPLAY key stamp EXPIRE`. The work per tick is bounded, and a
//! tree's own expiry pops due holds from an ordered index, so the cost
//! follows what is due, never the number of holds.
//!
//! The schedule is a hint, not the truth: an entry for a key that was
//! deleted, renamed or replaced is dropped or corrected when it comes due,
//! and every command on a tree expires it first anyway. Keys loaded from
//! an RDB, or renamed, restored, moved or copied, are scheduled through
//! keyspace notifications.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use redis_module::{Context, ContextFlags, NotifyEvent, RedisString, raw};

use crate::engine::Tree;
use crate::{datatype, stats};

/// How often the timer runs (Redis's own active expiry runs at 10 Hz).
pub const TICK: Duration = Duration::from_millis(100);
/// Most keys one tick opens, so a tick never stalls the server.
const KEYS_PER_TICK: usize = 1000;

type KeyId = (i32, Vec<u8>);

#[derive(Default)]
struct Schedule {
    due: BTreeSet<(u64, KeyId)>,
    by_key: HashMap<KeyId, u64>,
}

impl Schedule {
    fn set(&mut self, key: KeyId, at: Option<u64>) {
        if let Some(old) = self.by_key.remove(&key) {
            self.due.remove(&(old, key.clone()));
        }
        if let Some(at) = at {
            self.due.insert((at, key.clone()));
            self.by_key.insert(key, at);
        }
    }

    fn pop_due(&mut self, now_ms: u64) -> Option<KeyId> {
        let (at, _) = self.due.first()?;
        if *at > now_ms {
            return None;
        }
        let (_, key) = self.due.pop_first()?;
        self.by_key.remove(&key);
        Some(key)
    }
}

static SCHEDULE: Mutex<Option<Schedule>> = Mutex::new(None);

fn with_schedule<R>(f: impl FnOnce(&mut Schedule) -> R) -> R {
    // A poisoned lock only means a panic elsewhere; the schedule is a hint
    // and stays usable.
    let mut guard = SCHEDULE.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Schedule::default))
}

pub fn selected_db(ctx: &Context) -> i32 {
    // SAFETY: the function pointer is filled in by Redis at module load.
    unsafe { raw::RedisModule_GetSelectedDb.map_or(0, |f| f(ctx.ctx)) }
}

/// Records when the tree at `key` (in the selected db) next has work.
pub fn schedule(ctx: &Context, key: &[u8], at: Option<u64>) {
    let id = (selected_db(ctx), key.to_vec());
    with_schedule(|s| s.set(id, at));
}

/// Keyspace notifications: a key arrived under a new name or from disk.
/// Only trees with something due are scheduled (reading is allowed in a
/// notification callback; writing is not, and is left to the timer).
pub fn on_keyspace_event(ctx: &Context, _kind: NotifyEvent, event: &str, key: &[u8]) {
    if !matches!(event, "loaded" | "rename_to" | "restore" | "move_to" | "copy_to") {
        return;
    }
    let name = RedisString::create_from_slice(ctx.ctx, key);
    let handle = ctx.open_key(&name);
    if let Ok(Some(tree)) = handle.get_value::<Tree>(&datatype::QUOTA_TYPE) {
        let due = tree.next_due_ms();
        if due.is_some() {
            schedule(ctx, key, due);
        }
    }
}

/// Starts the periodic timer; called once at module load.
pub fn start(ctx: &Context) {
    ctx.create_timer(TICK, tick, ());
}

fn tick(ctx: &Context, _: ()) {
    let flags = ctx.get_flags();
    if flags.contains(ContextFlags::MASTER) && !flags.contains(ContextFlags::LOADING) {
        run_due(ctx);
    }
    ctx.create_timer(TICK, tick, ());
}

fn run_due(ctx: &Context) {
    let stamp = crate::commands::Stamp::local();
    let (now, limits) = (stamp.now_ms, stamp.env(false).limits);
    for _ in 0..KEYS_PER_TICK {
        let Some((db, key)) = with_schedule(|s| s.pop_due(now)) else { return };
        // SAFETY: the function pointer is filled in by Redis at module load.
        let selected = unsafe { raw::RedisModule_SelectDb.map_or(0, |f| f(ctx.ctx, db)) };
        if selected != raw::REDISMODULE_OK as i32 {
            continue;
        }
        let name = RedisString::create_from_slice(ctx.ctx, &key);
        let handle = ctx.open_key_writable(&name);
        let Ok(Some(tree)) = handle.get_value::<Tree>(&datatype::QUOTA_TYPE) else { continue };
        let before = crate::commands::Marks::of(tree);
        let report = tree.expire(now, &limits);
        if report.changed() {
            stats::bump(&stats::EXPIRED_HOLDS, report.expired_holds as u64);
            crate::commands::replicate_expiry(ctx, &key, &stamp);
        }
        // Publishes the `expired` events and schedules the next expiry.
        crate::commands::after(ctx, &key, tree, &before, false);
    }
}
