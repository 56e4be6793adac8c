//! The command layer: a thin skin between Redis and the engine.
//!
//! Every tree command goes through [`run`]: it reads the clock once, opens
//! the key, expires what is due, calls the command's handler (which parses
//! its arguments with [`args::Args`] and calls the engine), stores a new
//! tree when one was created, replicates, and replies.
//!
//! Replication is deterministic. A write is propagated as
//! `QUOTA.REPLAY key stamp COMMAND args…`, where the [`Stamp`] carries the
//! primary's time and the settings that shape state: the replica (or an AOF
//! reload) runs the same handler at the primary's time on the same state,
//! and so generates the same ids, expires the same holds and logs the same
//! events. Nothing that reads the clock is replicated verbatim.

pub mod args;
#[cfg(test)]
mod fuzz;
pub mod internal;
pub mod policy;
pub mod price;
pub mod read;
pub mod reply;
pub mod reserve;

use redis_module::{Context, ContextFlags, RedisError, RedisResult, RedisString, RedisValue};

use crate::engine::{Error, Limits, Result, Tree};
use crate::{clock, config, datatype, expiry};
use args::Args;
use reply::Reply;

/// What a handler knows besides its arguments.
pub struct Env {
    pub now_ms: u64,
    pub limits: Limits,
    pub default_ttl_ms: u64,
    /// Reads show the holds due by this time as expired (not stored): the
    /// command's time on a primary, 0 on a replica, whose primary
    /// replicates its expiry.
    pub due_ms: u64,
}

/// A write handler's answer: the reply and whether the tree changed (only
/// changes are replicated).
pub struct Answer {
    pub reply: Reply,
    pub changed: bool,
    /// Arguments to replicate instead of the client's, when the client's
    /// depend on this server's state (`USAGE` items are replicated as the
    /// `COST` the price book gave them, so a replay never needs the book).
    pub replicate: Option<Vec<String>>,
}

impl Answer {
    pub fn new(reply: Reply, changed: bool) -> Answer {
        Answer { reply, changed, replicate: None }
    }
}

pub type WriteFn = fn(&mut Tree, &mut Args<'_>, &Env) -> Result<Answer>;
pub type ReadFn = fn(&Tree, &mut Args<'_>, &Env) -> Result<Reply>;

pub enum Handler {
    Write(WriteFn),
    Read(ReadFn),
}

/// A tree command: its name (as replicated) and its handler.
pub struct Command {
    pub name: &'static str,
    pub handler: Handler,
}

/// Every tree command, for `QUOTA.REPLAY` to dispatch on.
pub const TREE_COMMANDS: &[&Command] = &[
    &policy::SET,
    &policy::UNSET,
    &policy::DELPATH,
    &policy::GRANT,
    &policy::RESET,
    &reserve::RESERVE,
    &reserve::COMMIT,
    &reserve::RELEASE,
    &reserve::EXTEND,
    &reserve::CHARGE,
];

/// The pseudo-command a replica replays to expire at the primary's time.
pub const EXPIRE: &str = "EXPIRE";

/// Entry point for `QUOTA.<command> key args…` from a client.
pub fn run(ctx: &Context, argv: Vec<RedisString>, command: &Command) -> RedisResult {
    if argv.len() < 2 {
        return Err(RedisError::WrongArity);
    }
    let rest = &argv[2..];
    // Requests have a dozen or two arguments: borrow them into an array on
    // the stack, and only longer ones into a Vec.
    let mut inline = [""; 32];
    let heap;
    let texts: &[&str] = match inline.get_mut(..rest.len()) {
        Some(slots) => {
            for (slot, arg) in slots.iter_mut().zip(rest) {
                *slot = arg.try_as_str().map_err(|_| RedisError::Str(NOT_UTF8))?;
            }
            slots
        }
        None => {
            heap = utf8_args(rest)?;
            &heap
        }
    };
    execute(ctx, &argv[1], texts, rest, command, None)
}

const NOT_UTF8: &str = "ERR syntax: arguments must be valid UTF-8";

/// The arguments as text, borrowed from Redis's strings.
pub fn utf8_args(argv: &[RedisString]) -> std::result::Result<Vec<&str>, RedisError> {
    argv.iter()
        .map(|a| a.try_as_str())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| RedisError::Str(NOT_UTF8))
}

/// Room for an encoded [`Stamp`].
pub const STAMP_CAP: usize = 4 * 20 + 3;

/// What the primary decided for a write besides its arguments: the time,
/// and the settings that shape the state it leaves (default TTL, how long
/// ids are remembered, the event log's length). It travels with every
/// replicated write, so a replica or an AOF reload with other settings
/// still reaches the same state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub now_ms: u64,
    pub default_ttl_ms: u64,
    pub tombstone_ttl_ms: u64,
    pub events_len: usize,
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
        }
    }

    /// `now:default_ttl:tombstone_ttl:events_len`.
    pub fn encode(&self) -> String {
        let mut buf = [0u8; STAMP_CAP];
        String::from_utf8_lossy(self.encode_into(&mut buf)).into_owned()
    }

    /// The encoding written into `buf` by hand (it is on the path of every
    /// write): four numbers of at most 20 digits and three colons.
    pub fn encode_into<'a>(&self, buf: &'a mut [u8; STAMP_CAP]) -> &'a [u8] {
        let mut len = 0;
        for (i, mut n) in
            [self.now_ms, self.default_ttl_ms, self.tombstone_ttl_ms, self.events_len as u64].into_iter().enumerate()
        {
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

    pub fn decode(text: &str) -> Option<Stamp> {
        let mut parts = text.split(':').map(|p| p.parse::<u64>().ok());
        let stamp = Stamp {
            now_ms: parts.next()??,
            default_ttl_ms: parts.next()??,
            tombstone_ttl_ms: parts.next()??,
            events_len: usize::try_from(parts.next()??).ok()?,
        };
        parts.next().is_none().then_some(stamp)
    }

    /// The environment a command runs in. A replayed write is applied as
    /// the primary accepted it: the bounds were checked there.
    pub fn env(&self, replayed: bool) -> Env {
        let mut limits = config::limits();
        limits.tombstone_ttl_ms = self.tombstone_ttl_ms;
        limits.events_len = self.events_len;
        if replayed {
            limits.max_paths = usize::MAX;
            limits.max_policies = usize::MAX;
            limits.max_holds = usize::MAX;
            limits.max_items = usize::MAX;
            limits.max_depth = crate::engine::names::MAX_DEPTH_HARD;
        }
        Env { now_ms: self.now_ms, limits, default_ttl_ms: self.default_ttl_ms, due_ms: self.now_ms }
    }
}

/// Runs `command` on the tree at `key`. `replayed` carries the primary's
/// stamp when this is a `QUOTA.REPLAY`.
pub fn execute(
    ctx: &Context,
    key: &RedisString,
    rest: &[&str],
    rest_strings: &[RedisString],
    command: &Command,
    replayed: Option<Stamp>,
) -> RedisResult {
    let stamp = replayed.unwrap_or_else(Stamp::local);
    let mut env = stamp.env(replayed.is_some());
    let now = stamp.now_ms;
    let mut args = Args::new(command.name, rest);
    let result = match &command.handler {
        // A read opens the key for reading only and changes nothing: no
        // WATCH broken, no client-tracking invalidation, nothing replicated
        // (which Redis also forbids while clients are paused). It shows the
        // expiry due now without storing it, as it shows resets; a replica
        // shows its primary's expiry when it arrives.
        Handler::Read(read) => {
            if ctx.get_flags().contains(ContextFlags::SLAVE) {
                env.due_ms = 0;
            }
            let handle = ctx.open_key(key);
            match handle.get_value::<Tree>(&datatype::QUOTA_TYPE).map_err(|_| RedisError::WrongType)? {
                Some(tree) => read(tree, &mut args, &env),
                None => read(&Tree::new(), &mut args, &env),
            }
        }
        // While Redis may evict trees, limits could vanish: refuse what
        // enforces or configures them. Settling a hold (COMMIT, RELEASE)
        // records work already done and is never refused, as under a full
        // memory; the primary's replayed writes are applied whatever the
        // policy.
        _ if replayed.is_none()
            && crate::eviction::refused()
            && !matches!(command.name, "QUOTA.COMMIT" | "QUOTA.RELEASE") =>
        {
            Err(Error::State(crate::eviction::REFUSAL.into()))
        }
        handler => {
            let handle = ctx.open_key_writable(key);
            let existing = handle.get_value::<Tree>(&datatype::QUOTA_TYPE).map_err(|_| RedisError::WrongType)?;
            let mut fresh = None;
            let created = existing.is_none();
            let tree: &mut Tree = match existing {
                Some(tree) => tree,
                None => fresh.insert(Tree::new()),
            };
            let before = Marks::of(tree);
            let expired = tree.expire(now, &env.limits);
            let result = apply(handler, tree, &mut args, &env);
            let changed = matches!(result, Ok(Answer { changed: true, .. }));
            crate::stats::bump(&crate::stats::EXPIRED_HOLDS, expired.expired_holds as u64);
            match &result {
                Ok(Answer { changed: true, replicate: Some(canonical), .. }) => {
                    let canonical: Vec<&str> = canonical.iter().map(String::as_str).collect();
                    replicate(ctx, key.as_slice(), &stamp, command.name, &canonical)
                }
                Ok(Answer { changed: true, .. }) => replicate_strings(ctx, key, &stamp, command.name, rest_strings),
                _ if expired.changed() => replicate_expiry(ctx, key.as_slice(), &stamp, None),
                _ => {}
            }
            if !created || changed {
                after(ctx, key.as_slice(), tree, &before, created);
            }
            if let Some(tree) = fresh.filter(|_| changed) {
                handle.set_value(&datatype::QUOTA_TYPE, tree)?;
            }
            result.map(|a| a.reply)
        }
    };
    respond(ctx, result)
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

fn apply(handler: &Handler, tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    match handler {
        Handler::Write(write) => write(tree, args, env),
        Handler::Read(read) => read(tree, args, env).map(|reply| Answer::new(reply, false)),
    }
}

/// Replies with the answer, or with the error's text.
pub fn respond(ctx: &Context, result: Result<Reply>) -> RedisResult {
    match result {
        Ok(reply) => {
            reply::emit(ctx, &reply);
            Ok(RedisValue::NoReply)
        }
        // Printable ASCII only (see `crate::ctext`): the net under
        // `crate::engine::names::clip`.
        Err(e) => Err(crate::ctext::error(e.to_string())),
    }
}

fn replicate(ctx: &Context, key: &[u8], stamp: &Stamp, name: &str, rest: &[&str]) {
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
fn replicate_strings(ctx: &Context, key: &RedisString, stamp: &Stamp, name: &str, rest: &[RedisString]) {
    let mut buf = [0u8; STAMP_CAP];
    let stamp = stamp.encode_into(&mut buf);
    let mut argv: Vec<*mut redis_module::raw::RedisModuleString> = rest.iter().map(|s| s.inner).collect();
    // SAFETY: the function pointer is filled in by Redis at load. The format
    // "sbbv" reads a RedisModuleString*, two (char*, size_t) buffers and a
    // (RedisModuleString**, size_t) vector, which is what follows; every
    // pointer lives until the call returns, and Redis takes its own
    // references to what it keeps.
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
                argv.as_mut_ptr(),
                argv.len(),
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

/// Matches `word` against `keywords` in any case, returning the keyword.
pub fn keyword(word: &str, keywords: &[&'static str]) -> Option<&'static str> {
    keywords.iter().copied().find(|k| word.eq_ignore_ascii_case(k))
}

/// Splits optional leading path from option pairs: with an odd number of
/// arguments the first is the path (options always come in pairs, so a
/// path may even be named like an option).
pub fn optional_path(args: &mut Args<'_>) -> Result<String> {
    if !args.remaining().is_multiple_of(2) { args.next_path("a path") } else { Ok(String::new()) }
}

#[cfg(test)]
mod tests {
    use super::Stamp;

    #[test]
    fn stamps_round_trip_and_refuse_garbage() {
        let stamp = Stamp { now_ms: 1_768_435_200_000, default_ttl_ms: 60_000, tombstone_ttl_ms: 0, events_len: 1000 };
        assert_eq!(stamp.encode(), "1768435200000:60000:0:1000");
        assert_eq!(Stamp::decode(&stamp.encode()), Some(stamp));
        for bad in ["", "1:2:3", "1:2:3:4:5", "a:2:3:4", "1:2:3:-4", "1::3:4"] {
            assert_eq!(Stamp::decode(bad), None, "{bad}");
        }
    }
}
