//! The command layer: a thin skin between Redis and the engine.
//!
//! Every tree command goes through [`run`]: it reads the clock once, opens
//! the key, expires what is due, calls the command's handler (which parses
//! its arguments with [`args::Args`] and calls the engine), stores a new
//! tree when one was created, replicates, and replies.
//!
//! Replication (the stamp every write carries, and what follows a change)
//! is in [`crate::replication`].

pub mod access;
pub mod args;
#[cfg(test)]
mod fuzz;
pub mod internal;
pub mod labels;
pub mod plan;
pub mod policy;
pub mod price;
pub mod read;
pub mod reply;
pub mod reserve;
pub mod usage;

use std::mem::ManuallyDrop;

use redis_module::{Context, ContextFlags, RedisError, RedisResult, RedisString, RedisValue, raw};

use crate::datatype;
use crate::engine::{Error, Limits, Result, Tree};
use crate::replication::{Marks, Stamp, after, replicate, replicate_expiry, replicate_strings, replicate_sync};
use args::Args;
use reply::Reply;

/// What a handler knows besides its arguments.
#[derive(Clone)]
pub struct Env {
    pub now_ms: u64,
    pub limits: Limits,
    pub default_ttl_ms: u64,
    /// Reads show the holds due by this time as expired (not stored): the
    /// command's time on a primary, 0 on a replica, whose primary
    /// replicates its expiry.
    pub due_ms: u64,
    /// The command's key holds no tree yet (the handler works on a new,
    /// empty one, stored only when it changes).
    pub missing_key: bool,
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
    &policy::REVOKE,
    &policy::RESET,
    &plan::ASSIGN,
    &reserve::RESERVE,
    &reserve::COMMIT,
    &reserve::RELEASE,
    &reserve::EXTEND,
    &reserve::CHARGE,
    &access::ALLOW,
    &access::DENY,
    &access::ACCESS,
    &labels::LABEL,
    &labels::ARCHIVE,
    &labels::RESTORE,
];

/// Entry point for `QUOTA.<command> key args…` from a client: Redis's own
/// argument vector, borrowed for the call (no string is retained or copied).
pub fn run(ctx: &Context, argv: &[*mut raw::RedisModuleString], command: &Command) -> RedisResult {
    if argv.len() < 2 {
        return Err(RedisError::WrongArity);
    }
    // The key as the crate's string type, which opening a key takes; not
    // retained, so never freed (ManuallyDrop): Redis owns it.
    let key = ManuallyDrop::new(RedisString::from_redis_module_string(ctx.ctx, argv[1]));
    let rest = &argv[2..];
    // Requests have a dozen or two arguments: borrow them into an array on
    // the stack, and only longer ones into a Vec.
    let mut inline = [""; 32];
    let heap;
    let texts: &[&str] = match inline.get_mut(..rest.len()) {
        Some(slots) => {
            for (slot, &arg) in slots.iter_mut().zip(rest) {
                *slot = RedisString::from_ptr(arg).map_err(|_| RedisError::Str(NOT_UTF8))?;
            }
            slots
        }
        None => {
            heap = rest
                .iter()
                .map(|&arg| RedisString::from_ptr(arg))
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| RedisError::Str(NOT_UTF8))?;
            &heap
        }
    };
    execute(ctx, &key, texts, rest, command, None)
}

const NOT_UTF8: &str = "ERR syntax: arguments must be valid UTF-8";

/// The arguments as text, borrowed from Redis's strings.
pub fn utf8_args(argv: &[RedisString]) -> std::result::Result<Vec<&str>, RedisError> {
    argv.iter()
        .map(|a| a.try_as_str())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| RedisError::Str(NOT_UTF8))
}

/// Runs `command` on the tree at `key`. `rest` is the arguments after the
/// key as text and `rest_raw` as Redis's strings (what is replicated).
/// `replayed` carries the primary's stamp when this is a `QUOTA.REPLAY`.
pub fn execute(
    ctx: &Context,
    key: &RedisString,
    rest: &[&str],
    rest_raw: &[*mut raw::RedisModuleString],
    command: &Command,
    replayed: Option<Stamp>,
) -> RedisResult {
    let stamp = replayed.unwrap_or_else(Stamp::local);
    let mut env = stamp.env(replayed.is_some());
    let mut args = Args::new(command.name, rest).with_legacy(stamp.legacy);
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
            let write = Write { ctx, key, rest_raw, command, stamp: &stamp };
            write.run(handler, &mut args, &env)?
        }
    };
    respond(ctx, result)
}

/// A write command on its key: what [`Write::run`] needs to open the key,
/// replicate the change and follow it up.
struct Write<'a> {
    ctx: &'a Context,
    key: &'a RedisString,
    rest_raw: &'a [*mut raw::RedisModuleString],
    command: &'a Command,
    stamp: &'a Stamp,
}

impl Write<'_> {
    /// Opens the key for writing, expires what is due, runs the handler,
    /// replicates, stores a tree it created, and gives the reply.
    fn run(&self, handler: &Handler, args: &mut Args<'_>, env: &Env) -> std::result::Result<Result<Reply>, RedisError> {
        let handle = self.ctx.open_key_writable(self.key);
        let existing = handle.get_value::<Tree>(&datatype::QUOTA_TYPE).map_err(|_| RedisError::WrongType)?;
        if env.limits.ledger {
            crate::ledger::check(self.ctx, self.key.as_slice())?;
        }
        let mut fresh = None;
        let created = existing.is_none();
        let tree: &mut Tree = match existing {
            Some(tree) => tree,
            None => fresh.insert(Tree::new()),
        };
        let fresh_env;
        let env = if created {
            fresh_env = Env { missing_key: true, ..env.clone() };
            &fresh_env
        } else {
            env
        };
        let before = Marks::of(tree);
        let expired = tree.expire(self.stamp.now_ms, &env.limits);
        adopt(tree);
        let mut result = apply(handler, tree, args, env);
        // Adopting the book's plan and syncing nodes change the tree even
        // when the command itself changes nothing: the command is then
        // replicated (a replica adopts and syncs the same), or, when it
        // failed, `SYNC` with the paths it synced.
        let plan_changes = tree.take_plan_changes();
        if plan_changes.any()
            && let Ok(answer) = &mut result
        {
            answer.changed = true;
        }
        let changed = matches!(result, Ok(Answer { changed: true, .. }));
        crate::stats::bump(&crate::stats::EXPIRED_HOLDS, expired.expired_holds as u64);
        match &result {
            Err(_) if plan_changes.any() => {
                let paths: Vec<&str> = plan_changes.synced.iter().map(String::as_str).collect();
                replicate_sync(self.ctx, self.key.as_slice(), self.stamp, &paths);
            }
            _ => self.replicate(&result, expired.changed()),
        }
        let entries = tree.take_ledger();
        if !entries.is_empty() {
            crate::ledger::write(self.ctx, self.key.as_slice(), entries);
        }
        if !created || changed {
            after(self.ctx, self.key.as_slice(), tree, &before, created);
        }
        if let Some(tree) = fresh.filter(|_| changed) {
            handle.set_value(&datatype::QUOTA_TYPE, tree)?;
        }
        Ok(result.map(|a| a.reply))
    }

    /// A change is replicated as the client's arguments (or the canonical
    /// ones a handler gave); an expiry alone as `EXPIRE`.
    fn replicate(&self, result: &Result<Answer>, expired: bool) {
        let (ctx, key, stamp, name) = (self.ctx, self.key, self.stamp, self.command.name);
        match result {
            Ok(Answer { changed: true, replicate: Some(canonical), .. }) => {
                let canonical: Vec<&str> = canonical.iter().map(String::as_str).collect();
                replicate(ctx, key.as_slice(), stamp, name, &canonical)
            }
            Ok(Answer { changed: true, .. }) => replicate_strings(ctx, key, stamp, name, self.rest_raw),
            _ if expired => replicate_expiry(ctx, key.as_slice(), stamp, None),
            _ => {}
        }
    }
}

/// Adopting, at the start of every write on a tree: a tree that follows a
/// plan takes the book's current plan of its name when it differs (one
/// map lookup and a pointer compare).
pub fn adopt(tree: &mut Tree) {
    let Some(mine) = tree.plan() else { return };
    // Usually the book holds the very plan the tree does: nothing to take.
    let newer = crate::plans::with_plans(|book| {
        book.get(&mine.name).filter(|current| !std::sync::Arc::ptr_eq(current, mine)).cloned()
    });
    if newer.is_some() {
        tree.adopt(newer);
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
    use super::args::Args;

    /// A legacy stamp's arguments read `meta` as a metric (and not as the
    /// end of a list), as the release before issue 18 did.
    #[test]
    fn legacy_arguments_take_meta_as_a_metric() {
        let items = ["meta", "5", "meta"];
        let mut args = Args::new("QUOTA.CHARGE", &items);
        assert!(args.at_list_end());
        assert!(args.next_metric().is_err());
        let mut args = Args::new("QUOTA.CHARGE", &items).with_legacy(true);
        assert!(!args.at_list_end());
        assert_eq!(args.next_metric().unwrap(), "meta");
    }

    #[test]
    fn stamps_round_trip_and_refuse_garbage() {
        let stamp = Stamp {
            now_ms: 1_768_435_200_000,
            default_ttl_ms: 60_000,
            tombstone_ttl_ms: 0,
            events_len: 1000,
            usage_hours: 0,
            usage_days: 400,
            usage_series: 1,
            legacy: false,
        };
        assert_eq!(stamp.encode(), "1768435200000:60000:0:1000:0:400:1");
        assert_eq!(Stamp::decode(&stamp.encode()), Some(stamp));
        // A stamp written before usage existed: the usage defaults.
        let old = Stamp::decode("1768435200000:60000:0:1000").unwrap();
        assert_eq!((old.usage_hours, old.usage_days, old.usage_series), (24, 35, 32));
        assert_eq!(old.events_len, 1000);
        // It came from the release before issue 18: its arguments follow
        // that grammar, and a replica passes it on as it came.
        assert!(old.legacy && !stamp.legacy);
        assert_eq!(old.encode(), "1768435200000:60000:0:1000");
        let max = Stamp { now_ms: u64::MAX, default_ttl_ms: u64::MAX, tombstone_ttl_ms: u64::MAX, ..stamp };
        assert_eq!(Stamp::decode(&max.encode()), Some(max));
        for bad in [
            "",
            "1:2:3",
            "1:2:3:4:5",
            "1:2:3:4:5:6",
            "1:2:3:4:5:6:7:8",
            "a:2:3:4",
            "1:2:3:-4",
            "1::3:4",
            "1:2:3:4:721:90:32",
            "1:2:3:4:48:401:32",
            "1:2:3:4:48:90:0",
            "1:2:3:4:48:90:257",
        ] {
            assert_eq!(Stamp::decode(bad), None, "{bad}");
        }
    }
}
