//! The eviction guard: a tree evicted under memory pressure takes its
//! limits with it, and the next reservation starts a fresh tree with none.
//!
//! Under `maxmemory-policy allkeys-*` Redis may evict any key, trees
//! included, so while such a policy is set every write command on a tree
//! is refused with [`REFUSAL`], unless `quota.allow_eviction` says the
//! operator accepts that limits may vanish. Reads still answer. Under
//! `noeviction` and `volatile-*` (which evicts only keys with a TTL, and
//! trees have none unless a user gives them one) nothing is refused.
//!
//! The policy is read once at load and again whenever `CONFIG SET`
//! changes it (the config-change server event), so the check on every
//! write is one atomic load. Replayed writes (`QUOTA.REPLAY`) are never
//! refused: the primary accepted them.

use std::ffi::{CStr, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

use redis_module::{Context, RedisValue, raw};

use crate::config;

/// True while `maxmemory-policy` is one of the `allkeys-*` policies.
static EVICTS_ANY_KEY: AtomicBool = AtomicBool::new(false);

/// The refusal, after `ERR `.
pub const REFUSAL: &str = "eviction: maxmemory-policy is allkeys-*, so Redis may evict quota trees and \
     silently remove their limits; use noeviction or a volatile-* policy, or CONFIG SET quota.allow_eviction yes";

/// Whether the current policy may evict trees.
pub fn policy_evicts_trees() -> bool {
    EVICTS_ANY_KEY.load(Ordering::Relaxed)
}

/// Whether tree writes are refused now.
pub fn refused() -> bool {
    policy_evicts_trees() && !config::allow_eviction()
}

/// Reads the policy and subscribes to its changes; called once at load.
pub fn start(ctx: &Context) {
    refresh(ctx);
    // SAFETY: the function pointer is filled in by Redis at load; the
    // callback matches RedisModuleEventCallback.
    unsafe {
        if let Some(subscribe) = raw::RedisModule_SubscribeToServerEvent {
            let event = raw::RedisModuleEvent { id: raw::REDISMODULE_EVENT_CONFIG, dataver: 1 };
            subscribe(ctx.ctx, event, Some(on_config_change));
        }
    }
}

fn refresh(ctx: &Context) {
    let policy = match ctx.call("CONFIG", &["GET", "maxmemory-policy"][..]) {
        Ok(RedisValue::Array(items)) => items.get(1).and_then(value_text),
        Ok(RedisValue::Map(map)) => map.into_values().next().as_ref().and_then(value_text),
        _ => None,
    };
    let evicts = policy.is_some_and(|p| p.starts_with("allkeys-"));
    EVICTS_ANY_KEY.store(evicts, Ordering::Relaxed);
}

fn value_text(v: &RedisValue) -> Option<String> {
    match v {
        RedisValue::SimpleString(s) => Some(s.clone()),
        RedisValue::BulkString(s) => Some(s.clone()),
        RedisValue::BulkRedisString(s) => s.try_as_str().ok().map(str::to_string),
        RedisValue::StringBuffer(b) => std::str::from_utf8(b).ok().map(str::to_string),
        _ => None,
    }
}

extern "C" fn on_config_change(
    ctx: *mut raw::RedisModuleCtx,
    _eid: raw::RedisModuleEvent,
    _sub: u64,
    data: *mut c_void,
) {
    if data.is_null() {
        return;
    }
    // SAFETY: Redis passes a RedisModuleConfigChange with this event; its
    // names are C strings that live for the call.
    let change = unsafe { &*data.cast::<raw::RedisModuleConfigChange>() };
    let names = (0..change.num_changes as usize).map(|i| unsafe { CStr::from_ptr(*change.config_names.add(i)) });
    let mut touched = false;
    for name in names {
        touched |= name.to_bytes().eq_ignore_ascii_case(b"maxmemory-policy");
    }
    if touched {
        refresh(&Context::new(ctx));
    }
}
