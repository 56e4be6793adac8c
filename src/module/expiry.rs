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
//! and every write command on a tree expires it first anyway. Keys loaded
//! from an RDB, or renamed, restored, moved or copied, are scheduled
//! through keyspace notifications; `SWAPDB`, which sends none, and
//! `FLUSHDB`/`FLUSHALL` through server events.
//!
//! The timer does nothing while Redis asks modules to avoid replica
//! traffic (`CLIENT PAUSE`, `FAILOVER`): Redis forbids propagating then,
//! and what came due is expired on the first tick after. Reads never
//! expire (they show what is due without storing it), so the timer and
//! write commands are the only paths that store and replicate expiry.
//!
//! Each tick does at most [`HOLDS_PER_TICK`] holds and ids in all, so a
//! tree with many holds due at once never stalls the server: what is left
//! stays due and is continued on the next tick (the count travels with
//! the replicated `EXPIRE`, so replicas do the same work).

use std::collections::{BTreeSet, HashMap};
use std::ffi::c_void;
use std::sync::Mutex;
use std::time::Duration;

use redis_module::{Context, ContextFlags, NotifyEvent, RedisString, raw};

use crate::engine::Tree;
use crate::{datatype, stats};

/// How often the timer runs (Redis's own active expiry runs at 10 Hz).
pub const TICK: Duration = Duration::from_millis(100);
/// Most keys one tick opens, so a tick never stalls the server.
const KEYS_PER_TICK: usize = 1000;
/// Most holds and finished ids one tick expires or forgets, over all its
/// keys: a few milliseconds of work, whatever the number due.
pub const HOLDS_PER_TICK: usize = 5000;

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

    /// `SWAPDB a b`: the trees of the two databases trade places.
    fn swap_dbs(&mut self, a: i32, b: i32) {
        let swap = |db: i32| {
            if db == a {
                b
            } else if db == b {
                a
            } else {
                db
            }
        };
        let entries: Vec<(KeyId, u64)> = self.by_key.drain().collect();
        self.due.clear();
        for ((db, key), at) in entries {
            let id = (swap(db), key);
            self.due.insert((at, id.clone()));
            self.by_key.insert(id, at);
        }
    }

    /// `FLUSHDB` (one database) or `FLUSHALL` (`None`): their trees are gone.
    fn flush(&mut self, db: Option<i32>) {
        match db {
            None => *self = Schedule::default(),
            Some(db) => {
                self.by_key.retain(|(d, _), _| *d != db);
                self.due.retain(|(_, (d, _))| *d != db);
            }
        }
    }

    fn has_due(&self, now_ms: u64) -> bool {
        self.due.first().is_some_and(|(at, _)| *at <= now_ms)
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

/// How many trees are scheduled (for `INFO quota`).
pub fn scheduled_trees() -> usize {
    with_schedule(|s| s.by_key.len())
}

/// Starts the periodic timer and subscribes to the server events that
/// move or drop trees without a keyspace notification; called once at
/// module load.
pub fn start(ctx: &Context) {
    ctx.create_timer(TICK, tick, ());
    // SAFETY: the function pointer is filled in by Redis at module load;
    // the callbacks match RedisModuleEventCallback.
    unsafe {
        if let Some(subscribe) = raw::RedisModule_SubscribeToServerEvent {
            subscribe(
                ctx.ctx,
                raw::RedisModuleEvent { id: raw::REDISMODULE_EVENT_SWAPDB, dataver: 1 },
                Some(on_swapdb),
            );
            subscribe(
                ctx.ctx,
                raw::RedisModuleEvent { id: raw::REDISMODULE_EVENT_FLUSHDB, dataver: 1 },
                Some(on_flush),
            );
        }
    }
}

extern "C" fn on_swapdb(_ctx: *mut raw::RedisModuleCtx, _eid: raw::RedisModuleEvent, _sub: u64, data: *mut c_void) {
    if data.is_null() {
        return;
    }
    // SAFETY: Redis passes a RedisModuleSwapDbInfo with the SWAPDB event.
    let info = unsafe { &*data.cast::<raw::RedisModuleSwapDbInfo>() };
    with_schedule(|s| s.swap_dbs(info.dbnum_first, info.dbnum_second));
}

extern "C" fn on_flush(_ctx: *mut raw::RedisModuleCtx, _eid: raw::RedisModuleEvent, sub: u64, data: *mut c_void) {
    if sub != raw::REDISMODULE_SUBEVENT_FLUSHDB_START || data.is_null() {
        return;
    }
    // SAFETY: Redis passes a RedisModuleFlushInfo with the FLUSHDB event.
    let info = unsafe { &*data.cast::<raw::RedisModuleFlushInfo>() };
    with_schedule(|s| s.flush((info.dbnum >= 0).then_some(info.dbnum)));
}

/// Whether Redis asks modules not to propagate now (clients paused by
/// `CLIENT PAUSE` or a `FAILOVER`): replicating then aborts the server.
pub fn avoid_replica_traffic() -> bool {
    // SAFETY: the function pointer is filled in by Redis at module load.
    unsafe { raw::RedisModule_AvoidReplicaTraffic.is_some_and(|f| f() != 0) }
}

fn tick(ctx: &Context, _: ()) {
    let flags = ctx.get_flags();
    if flags.contains(ContextFlags::MASTER) && !flags.contains(ContextFlags::LOADING) {
        if avoid_replica_traffic() {
            stats::bump(&stats::EXPIRE_PAUSED_TICKS, 1);
        } else {
            run_due(ctx);
        }
    }
    ctx.create_timer(TICK, tick, ());
}

fn run_due(ctx: &Context) {
    let stamp = crate::replication::Stamp::local();
    let (now, limits) = (stamp.now_ms, stamp.env(false).limits);
    let mut budget = HOLDS_PER_TICK;
    for _ in 0..KEYS_PER_TICK {
        if budget == 0 {
            break;
        }
        let Some((db, key)) = with_schedule(|s| s.pop_due(now)) else { break };
        // SAFETY: the function pointer is filled in by Redis at module load.
        let selected = unsafe { raw::RedisModule_SelectDb.map_or(0, |f| f(ctx.ctx, db)) };
        if selected != raw::REDISMODULE_OK as i32 {
            continue;
        }
        let name = RedisString::create_from_slice(ctx.ctx, &key);
        let handle = ctx.open_key_writable(&name);
        let Ok(Some(tree)) = handle.get_value::<Tree>(&datatype::QUOTA_TYPE) else { continue };
        let before = crate::replication::Marks::of(tree);
        let report = tree.expire_some(now, &limits, budget);
        let done = report.expired_holds + report.forgotten_ids;
        budget -= done;
        if report.changed() {
            stats::bump(&stats::EXPIRED_HOLDS, report.expired_holds as u64);
            // A tree left with work due was cut by the budget: the replica
            // must stop at the same place.
            let cut = tree.next_due_ms().is_some_and(|at| at <= now);
            crate::replication::replicate_expiry(ctx, &key, &stamp, cut.then_some(done));
        }
        let entries = tree.take_ledger();
        if !entries.is_empty() {
            crate::ledger::write(ctx, &key, entries);
        }
        // The entry was popped: schedule the tree again whatever it cached.
        tree.scheduled = None;
        // Publishes the `expired` events and schedules the next expiry.
        crate::replication::after(ctx, &key, tree, &before, false);
    }
    let work = (HOLDS_PER_TICK - budget) as u64;
    stats::record_max(&stats::EXPIRE_TICK_MAX, work);
    if with_schedule(|s| s.has_due(now)) {
        stats::bump(&stats::EXPIRE_DEFERRED_TICKS, 1);
    }
}
