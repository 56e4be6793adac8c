//! Commands that are not part of the user-facing contract:
//! `QUOTA.REPLAY` and `QUOTA.LOADTREE` (written by the primary for replicas
//! and the AOF), and `QUOTA.DEBUG` (tests only).

use redis_module::{Context, ContextFlags, RedisError, RedisResult, RedisString, RedisValue};

use super::{TREE_COMMANDS, execute, keyword, utf8_args};
use crate::engine::Tree;
use crate::engine::names::clip;
use crate::replication::{EXPIRE, Marks, SYNC, Stamp, after};
use crate::{clock, config, ctext, datatype, expiry, persist, stats};

/// Only the replication link and the AOF loader may send these.
fn internal_only(ctx: &Context, name: &str) -> Result<(), RedisError> {
    let flags = ctx.get_flags();
    if flags.contains(ContextFlags::REPLICATED) || flags.contains(ContextFlags::LOADING) {
        Ok(())
    } else {
        Err(ctext::error(format!("ERR {name} is internal: a primary sends it to its replicas and its AOF")))
    }
}

/// `QUOTA.REPLAY key stamp COMMAND args…`: runs a tree command at the
/// primary's time and settings. `EXPIRE` as the command only expires.
pub fn replay(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    internal_only(ctx, "QUOTA.REPLAY")?;
    if argv.len() < 4 {
        return Err(RedisError::WrongArity);
    }
    let texts = utf8_args(&argv[2..])?;
    let stamp = Stamp::decode(texts[0]).ok_or(RedisError::Str("ERR QUOTA.REPLAY: bad stamp"))?;
    let name = texts[1];
    let rest = &texts[2..];
    if name == EXPIRE {
        // `EXPIRE n`: the primary's timer stopped after n holds and ids.
        let count = match rest {
            [] => None,
            [n] => Some(n.parse::<usize>().map_err(|_| RedisError::Str("ERR QUOTA.REPLAY: bad EXPIRE count"))?),
            _ => return Err(RedisError::WrongArity),
        };
        let handle = ctx.open_key_writable(&argv[1]);
        if let Some(tree) = handle.get_value::<Tree>(&datatype::QUOTA_TYPE).map_err(|_| RedisError::WrongType)? {
            let before = Marks::of(tree);
            let report = tree.expire_some(stamp.now_ms, &stamp.env(true).limits, count.unwrap_or(usize::MAX));
            stats::bump(&stats::EXPIRED_HOLDS, report.expired_holds as u64);
            after(ctx, argv[1].as_slice(), tree, &before, false);
            crate::replication::replicate_expiry(ctx, argv[1].as_slice(), &stamp, count);
        }
        return Ok(RedisValue::SimpleStringStatic("OK"));
    }
    if name == SYNC {
        // `SYNC path…`: a write that failed on the primary after expiring,
        // adopting its plan and syncing the nodes at these paths.
        let handle = ctx.open_key_writable(&argv[1]);
        if let Some(tree) = handle.get_value::<Tree>(&datatype::QUOTA_TYPE).map_err(|_| RedisError::WrongType)? {
            let before = Marks::of(tree);
            let limits = stamp.env(true).limits;
            let report = tree.expire(stamp.now_ms, &limits);
            stats::bump(&stats::EXPIRED_HOLDS, report.expired_holds as u64);
            super::adopt(tree);
            tree.sync_paths(rest, stamp.now_ms);
            let changes = tree.take_plan_changes();
            after(ctx, argv[1].as_slice(), tree, &before, false);
            let paths: Vec<&str> = changes.synced.iter().map(String::as_str).collect();
            crate::replication::replicate_sync(ctx, argv[1].as_slice(), &stamp, &paths);
        }
        return Ok(RedisValue::SimpleStringStatic("OK"));
    }
    let command = TREE_COMMANDS
        .iter()
        .find(|c| c.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| ctext::error(format!("ERR QUOTA.REPLAY: unknown command '{}'", clip(name))))?;
    let rest_raw: Vec<_> = argv[4..].iter().map(|s| s.inner).collect();
    execute(ctx, &argv[1], rest, &rest_raw, command, Some(stamp))
}

/// `QUOTA.LOADTREE key version bytes`: replaces the key with a tree
/// encoded by `persist::encode` (written by AOF rewrite).
pub fn loadtree(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    internal_only(ctx, "QUOTA.LOADTREE")?;
    if argv.len() != 4 {
        return Err(RedisError::WrongArity);
    }
    let version: i32 = argv[2]
        .try_as_str()
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RedisError::Str("ERR QUOTA.LOADTREE: bad version"))?;
    let mut tree =
        persist::decode(argv[3].as_slice(), version).map_err(|e| ctext::error(format!("ERR QUOTA.LOADTREE: {e}")))?;
    datatype::share_book_plan(&mut tree);
    let next_due = tree.next_due_ms();
    stats::count_tree(&tree, 1);
    let handle = ctx.open_key_writable(&argv[1]);
    handle.set_value(&datatype::QUOTA_TYPE, tree)?;
    expiry::schedule(ctx, argv[1].as_slice(), next_due);
    Ok(RedisValue::SimpleStringStatic("OK"))
}

/// `QUOTA.DEBUG CLOCK SET ms | ADVANCE ms | GET`, only with `TEST_CLOCK yes`.
pub fn debug(_ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if !config::test_clock() {
        return Err(RedisError::Str(
            "ERR QUOTA.DEBUG is disabled: load the module with TEST_CLOCK yes (never in production)",
        ));
    }
    let texts = utf8_args(&argv[1..])?;
    let bad = || RedisError::Str("ERR syntax: QUOTA.DEBUG CLOCK SET ms | ADVANCE ms | GET");
    // The clock stops at 2^53 ms, the largest time the Lua library (whose
    // numbers are doubles) keeps exactly, so both backends refuse alike.
    // Lua twin: `cmd_debug` (lua/src/80_commands.lua).
    const MAX_CLOCK_MS: u64 = 1 << 53;
    let ms = |s: &str| s.parse::<u64>().ok().filter(|&v| v <= MAX_CLOCK_MS).ok_or_else(bad);
    match texts.as_slice() {
        [c, verb] if keyword(c, &["CLOCK"]).is_some() && keyword(verb, &["GET"]).is_some() => {}
        [c, verb, value] if keyword(c, &["CLOCK"]).is_some() => match keyword(verb, &["SET", "ADVANCE"]) {
            Some("SET") => clock::set_test_ms(ms(value)?),
            Some(_) => {
                let step = ms(value)?;
                if clock::now_ms().saturating_add(step) > MAX_CLOCK_MS {
                    return Err(bad());
                }
                clock::advance_test_ms(step);
            }
            None => return Err(bad()),
        },
        _ => return Err(bad()),
    }
    Ok(RedisValue::Integer(i64::try_from(clock::now_ms()).unwrap_or(i64::MAX)))
}
