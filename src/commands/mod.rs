//! The command layer: a thin skin between Redis and the engine.
//!
//! Every tree command goes through [`run`]: it reads the clock once, opens
//! the key, expires what is due, calls the command's handler (which parses
//! its arguments with [`args::Args`] and calls the engine), stores a new
//! tree when one was created, replicates, and replies.
//!
//! Replication is deterministic. A write is propagated as
//! `QUOTA.REPLAY key now_ms COMMAND args…`: the replica (or an AOF reload)
//! runs the same handler at the primary's time on the same state, and so
//! generates the same ids and expires the same holds. Nothing is ever
//! replicated verbatim.

pub mod args;
pub mod internal;
pub mod policy;
pub mod price;
pub mod read;
pub mod reply;
pub mod reserve;

use redis_module::{Context, ContextFlags, RedisError, RedisResult, RedisString, RedisValue};

use crate::engine::{Expiry, Limits, Result, Tree};
use crate::{clock, config, datatype, expiry};
use args::Args;
use reply::Reply;

/// What a handler knows besides its arguments.
pub struct Env {
    pub now_ms: u64,
    pub limits: Limits,
    pub max_depth: usize,
    pub default_ttl_ms: u64,
}

/// A write handler's answer: the reply and whether the tree changed (only
/// changes are replicated).
pub struct Answer {
    pub reply: Reply,
    pub changed: bool,
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
    let texts = utf8_args(&argv[2..])?;
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    execute(ctx, &argv[1], &texts, command, None)
}

pub fn utf8_args(argv: &[RedisString]) -> std::result::Result<Vec<String>, RedisError> {
    argv.iter()
        .map(|a| a.try_as_str().map(str::to_string))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| RedisError::Str("ERR syntax: arguments must be valid UTF-8"))
}

fn env(now_ms: u64) -> Env {
    Env { now_ms, limits: config::limits(), max_depth: config::max_depth(), default_ttl_ms: config::default_ttl_ms() }
}

/// Runs `command` on the tree at `key`. `replayed_at` is the primary's
/// time when this is a `QUOTA.REPLAY`.
pub fn execute(
    ctx: &Context,
    key: &RedisString,
    rest: &[&str],
    command: &Command,
    replayed_at: Option<u64>,
) -> RedisResult {
    let now = replayed_at.unwrap_or_else(clock::now_ms);
    let env = env(now);
    let mut args = Args::new(command.name, rest);
    // A replica leaves expiry to its primary, which replicates it.
    let is_replica = ctx.get_flags().contains(ContextFlags::SLAVE);
    let result = match (&command.handler, is_replica && replayed_at.is_none()) {
        (Handler::Read(read), true) => {
            let handle = ctx.open_key(key);
            match handle.get_value::<Tree>(&datatype::QUOTA_TYPE).map_err(|_| RedisError::WrongType)? {
                Some(tree) => read(tree, &mut args, &env),
                None => read(&Tree::new(), &mut args, &env),
            }
        }
        (handler, _) => {
            let handle = ctx.open_key_writable(key);
            let (result, expired, next_due) =
                match handle.get_value::<Tree>(&datatype::QUOTA_TYPE).map_err(|_| RedisError::WrongType)? {
                    Some(tree) => {
                        let expired = tree.expire(now, &env.limits);
                        let result = apply(handler, tree, &mut args, &env);
                        (result, expired, tree.next_due_ms())
                    }
                    None => {
                        let mut tree = Tree::new();
                        let result = apply(handler, &mut tree, &mut args, &env);
                        let next_due = tree.next_due_ms();
                        if matches!(result, Ok(Answer { changed: true, .. })) {
                            handle.set_value(&datatype::QUOTA_TYPE, tree)?;
                        }
                        (result, Expiry::default(), next_due)
                    }
                };
            crate::stats::bump(&crate::stats::EXPIRED_HOLDS, expired.expired_holds as u64);
            match &result {
                Ok(Answer { changed: true, .. }) => replicate(ctx, key.as_slice(), now, command.name, rest),
                _ if expired.changed() => replicate_expiry(ctx, key.as_slice(), now),
                _ => {}
            }
            expiry::schedule(ctx, key.as_slice(), next_due);
            result.map(|a| a.reply)
        }
    };
    respond(ctx, result)
}

fn apply(handler: &Handler, tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    match handler {
        Handler::Write(write) => write(tree, args, env),
        Handler::Read(read) => read(tree, args, env).map(|reply| Answer { reply, changed: false }),
    }
}

/// Replies with the answer, or with the error's text.
pub fn respond(ctx: &Context, result: Result<Reply>) -> RedisResult {
    match result {
        Ok(reply) => {
            reply::emit(ctx, &reply);
            Ok(RedisValue::NoReply)
        }
        Err(e) => Err(RedisError::String(e.to_string())),
    }
}

fn replicate(ctx: &Context, key: &[u8], now_ms: u64, name: &str, rest: &[&str]) {
    let now = now_ms.to_string();
    let mut parts: Vec<&[u8]> = Vec::with_capacity(rest.len() + 3);
    parts.push(key);
    parts.push(now.as_bytes());
    parts.push(name.as_bytes());
    parts.extend(rest.iter().map(|s| s.as_bytes()));
    ctx.replicate("QUOTA.REPLAY", parts.as_slice());
}

/// Propagates an expiry that happened without a write command.
pub fn replicate_expiry(ctx: &Context, key: &[u8], now_ms: u64) {
    replicate(ctx, key, now_ms, EXPIRE, &[]);
}

/// Matches `word` against `keywords` in any case, returning the keyword.
pub fn keyword(word: &str, keywords: &[&'static str]) -> Option<&'static str> {
    keywords.iter().copied().find(|k| word.eq_ignore_ascii_case(k))
}

/// Splits optional leading path from option pairs: with an odd number of
/// arguments the first is the path (options always come in pairs, so a
/// path may even be named like an option).
pub fn optional_path(args: &mut Args<'_>, max_depth: usize) -> Result<String> {
    if !args.remaining().is_multiple_of(2) { args.next_path("a path", max_depth) } else { Ok(String::new()) }
}
