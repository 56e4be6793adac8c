//! The ledger stream (SPEC §9): the command layer's side of the engine's
//! `ledger` file. With `ledger_len` > 0, each entry a command collected is
//! appended to the tree's ledger key with
//! `XADD <ledger> MAXLEN ~ <ledger_len> * field value …`, called with
//! the `!` flag so that replicas and the AOF receive the `XADD` with the
//! primary's id (a replay never collects entries: `Limits::ledger` is
//! false there). No ACL check: the module writes its own stream.

use redis_module::{CallOptionsBuilder, CallResult, Context, RedisError, RedisString, raw::KeyType};

use crate::engine::ledger::{LedgerEntry, ledger_key};

pub const WRONG_TYPE: &str = "WRONGTYPE the tree's ledger key holds another type";

/// Whether the ledger key of tree `key` is missing or a stream (checked
/// before a write with the ledger on changes anything).
pub fn key_ok(ctx: &Context, key: &[u8]) -> bool {
    let name = RedisString::create_from_slice(ctx.ctx, &ledger_key(key));
    let handle = ctx.open_key(&name);
    matches!(handle.key_type(), KeyType::Empty | KeyType::Stream)
}

/// The up-front check of a write command with the ledger on: `WRONGTYPE`
/// when its key holds another type.
pub fn check(ctx: &Context, key: &[u8]) -> Result<(), RedisError> {
    if key_ok(ctx, key) { Ok(()) } else { Err(RedisError::Str(WRONG_TYPE)) }
}

/// Appends `entries` to the ledger of tree `key`, replicated. A key of
/// another type (the timer does not check first) skips them with a
/// warning in the log; so does a failed `XADD`.
pub fn write(ctx: &Context, key: &[u8], entries: Vec<LedgerEntry>) {
    if entries.is_empty() {
        return;
    }
    if !key_ok(ctx, key) {
        crate::ctext::log_warning(ctx, "quota: ledger entries skipped: the tree's ledger key holds another type");
        return;
    }
    let stream = ledger_key(key);
    let maxlen = crate::config::ledger_len().to_string();
    let options = CallOptionsBuilder::new().replicate().errors_as_replies().build();
    for entry in entries {
        let fields = entry.fields();
        let mut args: Vec<&[u8]> = Vec::with_capacity(5 + 2 * fields.len());
        args.extend([&stream[..], b"MAXLEN", b"~", maxlen.as_bytes(), b"*"]);
        for (name, value) in &fields {
            args.push(name.as_bytes());
            args.push(value.as_bytes());
        }
        let result: CallResult = ctx.call_ext("XADD", &options, args.as_slice());
        if result.is_err() {
            crate::ctext::log_warning(ctx, "quota: a ledger entry was not written: XADD failed");
        }
    }
}
