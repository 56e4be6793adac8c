//! # The ceiling: how fast a quota write could be if quota did no work
//!
//! A yardstick for `make bench`, not part of quota. Every `QUOTA.RESERVE`
//! and `QUOTA.CHARGE` pays Redis for the same things whatever the engine
//! does: the command's dispatch, opening its key for writing, a reply of
//! a dozen fields (a few hundred instructions per reply call inside Redis)
//! and the replication of a `QUOTA.REPLAY key stamp COMMAND args…` form.
//! The commands here do exactly that and nothing else: they do not parse
//! their arguments, read no tree, check no policy, keep no hold. So their
//! throughput is the most any quota write could reach on the same server,
//! and `quota / ceiling` says how much of a request's time is quota's own
//! (`INCRBY`, which replies one integer, is a floor no such command nears).
//!
//! - `CEILING.BRIEF key args…` opens `key` for writing (as `QUOTA.RESERVE`
//!   does: key spec, flags `write deny-oom`), reads its type, replies the
//!   map `QUOTA.RESERVE … BRIEF` replies when allowed (the same 11 field
//!   names in the same order, the same value types, values of the same
//!   sizes) and replicates `CEILING.REPLAY key stamp QUOTA.RESERVE args…`
//!   as quota replicates `QUOTA.REPLAY`: one `RedisModule_Replicate` with
//!   the stamp and command name as buffers and the client's argument
//!   strings referenced, not copied.
//! - `CEILING.FULL key args…` does the same with the full `QUOTA.RESERVE`
//!   reply for the benchmark's 4-level tree: 12 fields, of which `checks`
//!   holds 8 checks (a monthly credits policy of 14 fields and a requests
//!   policy of 12 on each of 4 levels), the same number of reply calls.
//! - `CEILING.REPLAY` is what the other two replicate (replicating needs a
//!   command that exists): it accepts anything and replies `OK`.
//!
//! Load it beside quota: `--loadmodule target/release/libquota_ceiling.so`.
//! The names (`CEILING.*`) never collide with quota's, and nothing it
//! replicates changes a quota tree.

use std::ffi::{CStr, c_int};
use std::ptr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use redis_module::alloc::RedisAlloc;
use redis_module::raw;

#[global_allocator]
static ALLOCATOR: RedisAlloc = RedisAlloc;

/// The replies' ids, like quota's `<now in hex>-<sequence>`.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

type Ctx = *mut raw::RedisModuleCtx;
type Argv = *mut *mut raw::RedisModuleString;

/// Redis calls this when it loads the module.
///
/// # Safety
/// Called by Redis with its context and the module arguments.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn RedisModule_OnLoad(ctx: Ctx, _argv: Argv, _argc: c_int) -> c_int {
    // SAFETY: `ctx` is the context Redis gave; the name is a C literal.
    let init = unsafe { raw::Export_RedisModule_Init(ctx, c"ceiling".as_ptr(), 1, raw::REDISMODULE_APIVER_1 as c_int) };
    if init == raw::Status::Err as c_int {
        return init;
    }
    let commands: [(&CStr, raw::RedisModuleCmdFunc, &CStr); 3] = [
        (c"CEILING.BRIEF", Some(brief), c"write deny-oom"),
        (c"CEILING.FULL", Some(full), c"write deny-oom"),
        (c"CEILING.REPLAY", Some(replay), c"write"),
    ];
    for (name, entry, flags) in commands {
        // SAFETY: Init filled in the function table; names and flags are C
        // literals, and the command info lives on the stack for the call,
        // which copies it.
        let ok = unsafe { register(ctx, name, entry, flags) };
        if !ok {
            return raw::Status::Err as c_int;
        }
    }
    raw::Status::Ok as c_int
}

/// Creates a command whose key is argument 1, read and written (the key
/// spec `QUOTA.RESERVE` declares).
unsafe fn register(ctx: Ctx, name: &CStr, entry: raw::RedisModuleCmdFunc, flags: &CStr) -> bool {
    let (Some(create), Some(get), Some(set_info)) =
        (unsafe { raw::RedisModule_CreateCommand }, unsafe { raw::RedisModule_GetCommand }, unsafe {
            raw::RedisModule_SetCommandInfo
        })
    else {
        return false;
    };
    if unsafe { create(ctx, name.as_ptr(), entry, flags.as_ptr(), 0, 0, 0) } == raw::Status::Err as c_int {
        return false;
    }
    let command = unsafe { get(ctx, name.as_ptr()) };
    if command.is_null() {
        return false;
    }
    // SAFETY: zeroed key specs are the C API's "end of list" and "unset".
    let mut key_specs: [raw::RedisModuleCommandKeySpec; 2] = unsafe { std::mem::zeroed() };
    key_specs[0].flags =
        u64::from(raw::REDISMODULE_CMD_KEY_RW | raw::REDISMODULE_CMD_KEY_ACCESS | raw::REDISMODULE_CMD_KEY_UPDATE);
    key_specs[0].begin_search_type = raw::RedisModuleKeySpecBeginSearchType_REDISMODULE_KSPEC_BS_INDEX;
    key_specs[0].bs.index.pos = 1;
    key_specs[0].find_keys_type = raw::RedisModuleKeySpecFindKeysType_REDISMODULE_KSPEC_FK_RANGE;
    key_specs[0].fk.range =
        raw::RedisModuleCommandKeySpec__bindgen_ty_2__bindgen_ty_1 { lastkey: 0, keystep: 1, limit: 0 };
    let version = raw::RedisModuleCommandInfoVersion {
        version: 1,
        sizeof_historyentry: size_of::<raw::RedisModuleCommandHistoryEntry>(),
        sizeof_keyspec: size_of::<raw::RedisModuleCommandKeySpec>(),
        sizeof_arg: size_of::<raw::RedisModuleCommandArg>(),
    };
    let info = raw::RedisModuleCommandInfo {
        version: &version,
        summary: ptr::null(),
        complexity: ptr::null(),
        since: ptr::null(),
        history: ptr::null_mut(),
        tips: ptr::null(),
        arity: -2,
        key_specs: key_specs.as_mut_ptr(),
        args: ptr::null_mut(),
    };
    let status = unsafe { set_info(command, &info) };
    status == raw::Status::Ok as c_int
}

extern "C" fn brief(ctx: Ctx, argv: Argv, argc: c_int) -> c_int {
    write(ctx, argv, argc, false)
}

extern "C" fn full(ctx: Ctx, argv: Argv, argc: c_int) -> c_int {
    write(ctx, argv, argc, true)
}

extern "C" fn replay(ctx: Ctx, _argv: Argv, _argc: c_int) -> c_int {
    raw::reply_with_simple_string(ctx, c"OK".as_ptr());
    raw::Status::Ok as c_int
}

/// What every quota write does besides its own work: open the key for
/// writing, reply, replicate.
fn write(ctx: Ctx, argv: Argv, argc: c_int, with_checks: bool) -> c_int {
    let Ok(argc) = usize::try_from(argc) else { return raw::Status::Err as c_int };
    if argc < 2 {
        // SAFETY: the function pointer is filled in by Redis at load.
        return unsafe { raw::RedisModule_WrongArity.map_or(raw::Status::Err as c_int, |f| f(ctx)) };
    }
    // SAFETY: Redis passes `argc` valid strings in `argv`.
    let key_name = unsafe { *argv.add(1) };
    let key = raw::open_key(ctx, key_name, raw::KeyMode::READ | raw::KeyMode::WRITE);
    // SAFETY: `key` is the handle just opened (Redis closes it, too, when
    // the command returns).
    let key_type = unsafe { raw::RedisModule_KeyType.map_or(0, |f| f(key)) };
    std::hint::black_box(key_type);
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    reply(ctx, now_ms, with_checks);
    replicate(ctx, key_name, now_ms, argv, argc);
    raw::close_key(key);
    raw::Status::Ok as c_int
}

/// The reply of an allowed `QUOTA.RESERVE … COST credits 1 requests 1` on
/// the benchmark's tree: `BRIEF` leaves out `checks`.
fn reply(ctx: Ctx, now_ms: u64, with_checks: bool) {
    let text = |s: &[u8]| {
        raw::reply_with_string_buffer(ctx, s.as_ptr().cast(), s.len());
    };
    let int = |n: u64| {
        raw::reply_with_long_long(ctx, i64::try_from(n).unwrap_or(i64::MAX));
    };
    let costs = || {
        raw::reply_with_map(ctx, 2);
        for metric in [&b"credits"[..], b"requests"] {
            text(metric);
            text(b"1");
        }
    };
    raw::reply_with_map(ctx, if with_checks { 12 } else { 11 });
    text(b"allowed");
    int(1);
    text(b"id");
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed) + 1;
    let (mut hex, mut decimal, mut id) = ([0u8; 20], [0u8; 20], [0u8; 41]);
    let (hex, decimal) = (digits(now_ms, 16, &mut hex), digits(sequence, 10, &mut decimal));
    let len = hex.len() + 1 + decimal.len();
    id[..hex.len()].copy_from_slice(hex);
    id[hex.len()] = b'-';
    id[hex.len() + 1..len].copy_from_slice(decimal);
    text(&id[..len]);
    text(b"expires_at");
    int(now_ms + 60_000);
    for field in [&b"items"[..], b"fits", b"reserved"] {
        text(field);
        int(1);
    }
    text(b"cost");
    costs();
    text(b"held");
    costs();
    if with_checks {
        text(b"checks");
        checks(ctx, now_ms);
    }
    text(b"denied_by");
    raw::reply_with_array(ctx, 0);
    text(b"message");
    text(b"reserved 1 credits, 1 requests");
    text(b"duplicate");
    int(0);
}

/// The 8 checks of the full reply: per level, a monthly `credits` policy
/// (14 fields, with its period) and a `requests` policy without a window
/// (12 fields).
fn checks(ctx: Ctx, now_ms: u64) {
    let text = |s: &[u8]| {
        raw::reply_with_string_buffer(ctx, s.as_ptr().cast(), s.len());
    };
    let month_ms = 30 * 86_400_000;
    raw::reply_with_array(ctx, 8);
    for path in [&b"/"[..], b"search", b"search/qr", b"search/qr/canary"] {
        for (policy, mode, window) in
            [(&b"credits"[..], &b"strict"[..], &b"month"[..]), (b"requests", b"block", b"none")]
        {
            let monthly = window == b"month";
            raw::reply_with_map(ctx, if monthly { 14 } else { 12 });
            for (field, value) in [
                (&b"path"[..], path),
                (b"policy", policy),
                (b"metric", policy),
                (b"mode", mode),
                (b"window", window),
                (b"limit", b"1000000000000"),
                (b"used", b"1234567"),
                (b"held", b"1234567"),
                (b"requested", b"1"),
                (b"remaining", b"999997530865"),
            ] {
                text(field);
                text(value);
            }
            text(b"pass");
            raw::reply_with_long_long(ctx, 1);
            text(b"status");
            text(b"healthy");
            if monthly {
                let start = now_ms - now_ms % month_ms;
                text(b"period_start");
                raw::reply_with_long_long(ctx, start as i64);
                text(b"period_end");
                raw::reply_with_long_long(ctx, (start + month_ms) as i64);
            }
        }
    }
}

/// Replicates `CEILING.REPLAY key stamp QUOTA.RESERVE args…`, the shape of
/// quota's `QUOTA.REPLAY`, in one call as quota does: the key and the
/// client's arguments as Redis strings, the stamp (`now:default_ttl:
/// tombstone_ttl:events_len`) and the command name as buffers.
fn replicate(ctx: Ctx, key: *mut raw::RedisModuleString, now_ms: u64, argv: Argv, argc: usize) {
    let mut stamp = [0u8; 64];
    let mut len = 0;
    for (i, n) in [now_ms, 60_000, 0, 1000].into_iter().enumerate() {
        if i > 0 {
            stamp[len] = b':';
            len += 1;
        }
        let mut buf = [0u8; 20];
        let d = digits(n, 10, &mut buf);
        stamp[len..len + d.len()].copy_from_slice(d);
        len += d.len();
    }
    let name = b"QUOTA.RESERVE";
    // SAFETY: the function pointer is filled in by Redis at load. The format
    // "sbbv" reads a RedisModuleString*, two (char*, size_t) buffers and a
    // (RedisModuleString**, size_t) vector: the client's arguments after
    // the key, which live until the command returns.
    unsafe {
        if let Some(replicate) = raw::RedisModule_Replicate {
            replicate(
                ctx,
                c"CEILING.REPLAY".as_ptr(),
                c"sbbv".as_ptr(),
                key,
                stamp.as_ptr(),
                len,
                name.as_ptr(),
                name.len(),
                argv.add(2),
                argc - 2,
            );
        }
    }
}

/// `n` in `base` (10 or 16), written at the end of `buf` (20 bytes hold
/// any u64).
fn digits(mut n: u64, base: u64, buf: &mut [u8]) -> &[u8] {
    let mut d = buf.len();
    loop {
        d -= 1;
        buf[d] = b"0123456789abcdef"[(n % base) as usize];
        n /= base;
        if n == 0 {
            break;
        }
    }
    &buf[d..]
}
