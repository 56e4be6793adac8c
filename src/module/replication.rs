//! Replication and what follows every change to a tree.
//!
//! A write is propagated as `QUOTA.REPLAY key stamp COMMAND args…`, where
//! the [`Stamp`] carries the primary's time and the settings that shape
//! state: a replica (or an AOF reload) runs the same handler at the
//! primary's time on the same state, so it generates the same ids, expires
//! the same holds and logs the same events. Nothing that reads the clock is
//! replicated verbatim. The command layer and the expiry timer both end a
//! change with [`after`]: `INFO` counters, pub/sub, the next expiry.

use redis_module::{Context, ContextFlags, RedisString};

use crate::commands::{Env, read, reply};
use crate::engine::Tree;
use crate::engine::catalog::Setting;
use crate::{clock, config, expiry};

/// The pseudo-command a replica replays to expire at the primary's time.
pub const EXPIRE: &str = "EXPIRE";

/// The pseudo-command a replica replays to adopt the plan and sync nodes
/// as a write that then failed did on the primary.
pub const SYNC: &str = "SYNC";

/// Room for an encoded [`Stamp`].
pub const STAMP_CAP: usize = 7 * 20 + 6;

/// What the primary decided for a write besides its arguments: the time,
/// and the settings that shape the state it leaves (default TTL, how long
/// ids are remembered, the event log's length, the usage buckets and
/// series kept). It travels with every
/// replicated write, so a replica or an AOF reload with other settings
/// still reaches the same state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub now_ms: u64,
    pub default_ttl_ms: u64,
    pub tombstone_ttl_ms: u64,
    pub events_len: usize,
    pub usage_hours: u32,
    pub usage_days: u32,
    pub usage_series: u32,
    /// Written by the release before usage (a stamp of four numbers): the
    /// write's arguments follow that release's grammar, where `meta` was a
    /// metric name, not a keyword ([`crate::commands::args::Args::with_legacy`]).
    /// Encoded as it came, so a replica passes it on unchanged.
    pub legacy: bool,
}

impl Stamp {
    /// This server's clock and settings.
    pub fn local() -> Stamp {
        let limits = config::limits();
        Stamp {
            now_ms: clock::now_ms(),
            default_ttl_ms: config::default_ttl_ms(),
            tombstone_ttl_ms: limits.tombstone_ttl_ms,
            events_len: limits.events_len,
            usage_hours: limits.usage_hours,
            usage_days: limits.usage_days,
            usage_series: limits.usage_series,
            legacy: false,
        }
    }

    /// `now:default_ttl:tombstone_ttl:events_len:usage_hours:usage_days:usage_series`.
    pub fn encode(&self) -> String {
        let mut buf = [0u8; STAMP_CAP];
        String::from_utf8_lossy(self.encode_into(&mut buf)).into_owned()
    }

    /// The encoding written into `buf` by hand (it is on the path of every
    /// write): seven numbers of at most 20 digits and six colons.
    pub fn encode_into<'a>(&self, buf: &'a mut [u8; STAMP_CAP]) -> &'a [u8] {
        let mut len = 0;
        let numbers = [
            self.now_ms,
            self.default_ttl_ms,
            self.tombstone_ttl_ms,
            self.events_len as u64,
            u64::from(self.usage_hours),
            u64::from(self.usage_days),
            u64::from(self.usage_series),
        ];
        let count = if self.legacy { 4 } else { numbers.len() };
        for (i, mut n) in numbers.into_iter().take(count).enumerate() {
            if i > 0 {
                buf[len] = b':';
                len += 1;
            }
            let mut digits = [0u8; 20];
            let mut d = digits.len();
            loop {
                d -= 1;
                digits[d] = b'0' + (n % 10) as u8;
                n /= 10;
                if n == 0 {
                    break;
                }
            }
            let count = digits.len() - d;
            buf[len..len + count].copy_from_slice(&digits[d..]);
            len += count;
        }
        &buf[..len]
    }

    /// A stamp of seven numbers, or of the first four (written before
    /// usage existed: the usage settings are then their defaults).
    pub fn decode(text: &str) -> Option<Stamp> {
        let mut parts = text.split(':').map(|p| p.parse::<u64>().ok());
        let default = |s: Setting| s.default_value() as u32;
        let mut stamp = Stamp {
            now_ms: parts.next()??,
            default_ttl_ms: parts.next()??,
            tombstone_ttl_ms: parts.next()??,
            events_len: usize::try_from(parts.next()??).ok()?,
            usage_hours: default(Setting::UsageHours),
            usage_days: default(Setting::UsageDays),
            usage_series: default(Setting::UsageSeries),
            legacy: false,
        };
        let Some(hours) = parts.next() else { return Some(Stamp { legacy: true, ..stamp }) };
        let usage = |n: Option<u64>, s: Setting| -> Option<u32> {
            let spec = s.spec();
            n.filter(|n| (spec.min..=spec.max).contains(n)).map(|n| n as u32)
        };
        stamp.usage_hours = usage(hours, Setting::UsageHours)?;
        stamp.usage_days = usage(parts.next()?, Setting::UsageDays)?;
        stamp.usage_series = usage(parts.next()?, Setting::UsageSeries)?;
        parts.next().is_none().then_some(stamp)
    }

    /// The environment a command runs in. A replayed write is applied as
    /// the primary accepted it: the bounds were checked there.
    pub fn env(&self, replayed: bool) -> Env {
        let mut limits = config::limits();
        limits.tombstone_ttl_ms = self.tombstone_ttl_ms;
        limits.events_len = self.events_len;
        limits.usage_hours = self.usage_hours;
        limits.usage_days = self.usage_days;
        limits.usage_series = self.usage_series;
        if replayed {
            limits.max_paths = usize::MAX;
            limits.max_policies = usize::MAX;
            limits.max_holds = usize::MAX;
            limits.max_items = usize::MAX;
            limits.max_depth = crate::engine::names::MAX_DEPTH_HARD;
            // The primary's XADDs arrive on their own.
            limits.ledger = false;
        }
        Env {
            now_ms: self.now_ms,
            limits,
            default_ttl_ms: self.default_ttl_ms,
            due_ms: self.now_ms,
            missing_key: false,
        }
    }
}

/// What a tree looked like before a command: its size and its newest event.
pub struct Marks {
    paths: usize,
    holds: usize,
    seq: u64,
}

impl Marks {
    pub fn of(tree: &Tree) -> Marks {
        Marks { paths: tree.path_count(), holds: tree.hold_count(), seq: tree.last_event_seq() }
    }
}

/// After a command (or the timer) touched a tree: counts what changed for
/// `INFO quota`, publishes the new events on `quota:events:<key>`, and
/// schedules the tree's next expiry.
pub fn after(ctx: &Context, key: &[u8], tree: &mut Tree, before: &Marks, created: bool) {
    if created {
        crate::stats::count_tree(tree, 1);
    } else if tree.path_count() != before.paths || tree.hold_count() != before.holds {
        crate::stats::count_change((before.paths, before.holds), tree);
    }
    if tree.last_event_seq() != before.seq {
        publish(ctx, key, tree, before.seq);
    }
    let due = tree.next_due_ms();
    let db = expiry::selected_db(ctx);
    if created || tree.scheduled != Some((db, due)) {
        expiry::schedule(ctx, key, due);
        tree.scheduled = Some((db, due));
    }
}

/// Publishes the events after `since` on `quota:events:<key>`. Every server
/// publishes the events it applies, the primary for its clients and a
/// replica as it replays; PUBLISH itself is not replicated, so no
/// subscriber hears an event twice. Nothing is published while loading.
fn publish(ctx: &Context, key: &[u8], tree: &Tree, since: u64) {
    let loading = ctx.get_flags().contains(ContextFlags::LOADING);
    let name = String::from_utf8_lossy(key);
    let mut channel = b"quota:events:".to_vec();
    channel.extend_from_slice(key);
    let channel = RedisString::create_from_slice(ctx.ctx, &channel);
    for event in tree.events_since(since, usize::MAX) {
        crate::stats::bump(&crate::stats::EVENTS, 1);
        if !loading {
            let json = reply::to_json(&read::event_reply(event, Some(&name)));
            let message = RedisString::create_from_slice(ctx.ctx, json.as_bytes());
            // SAFETY: the function pointer is filled in by Redis at load; the
            // strings live until the call returns.
            unsafe {
                if let Some(publish) = redis_module::raw::RedisModule_PublishMessage {
                    publish(ctx.ctx, channel.inner, message.inner);
                }
            }
        }
    }
}

pub fn replicate(ctx: &Context, key: &[u8], stamp: &Stamp, name: &str, rest: &[&str]) {
    let stamp = stamp.encode();
    let mut parts: Vec<&[u8]> = Vec::with_capacity(rest.len() + 3);
    parts.push(key);
    parts.push(stamp.as_bytes());
    parts.push(name.as_bytes());
    parts.extend(rest.iter().map(|s| s.as_bytes()));
    ctx.replicate("QUOTA.REPLAY", parts.as_slice());
}

/// Replicates a write with the client's own argument strings: one call to
/// `RedisModule_Replicate` with the key and the arguments as Redis strings
/// (referenced, not copied) and the stamp and command name as buffers.
pub fn replicate_strings(
    ctx: &Context,
    key: &RedisString,
    stamp: &Stamp,
    name: &str,
    rest: &[*mut redis_module::raw::RedisModuleString],
) {
    let mut buf = [0u8; STAMP_CAP];
    let stamp = stamp.encode_into(&mut buf);
    // SAFETY: the function pointer is filled in by Redis at load. The format
    // "sbbv" reads a RedisModuleString*, two (char*, size_t) buffers and a
    // (RedisModuleString**, size_t) vector, which is what follows; Redis
    // only reads the vector, every pointer lives until the call returns,
    // and Redis takes its own references to what it keeps.
    unsafe {
        if let Some(replicate) = redis_module::raw::RedisModule_Replicate {
            replicate(
                ctx.ctx,
                c"QUOTA.REPLAY".as_ptr(),
                c"sbbv".as_ptr(),
                key.inner,
                stamp.as_ptr(),
                stamp.len(),
                name.as_ptr(),
                name.len(),
                rest.as_ptr().cast_mut(),
                rest.len(),
            );
        }
    }
}

/// Propagates an expiry that happened without a write command:
/// `EXPIRE`, or `EXPIRE n` when it stopped after `n` holds and ids.
pub fn replicate_expiry(ctx: &Context, key: &[u8], stamp: &Stamp, count: Option<usize>) {
    match count {
        Some(n) => replicate(ctx, key, stamp, EXPIRE, &[&n.to_string()]),
        None => replicate(ctx, key, stamp, EXPIRE, &[]),
    }
}

/// Propagates what a failed write did by following its plan (and the
/// expiry before it): `SYNC path…`, the existing nodes it synced.
pub fn replicate_sync(ctx: &Context, key: &[u8], stamp: &Stamp, paths: &[&str]) {
    replicate(ctx, key, stamp, SYNC, paths)
}
