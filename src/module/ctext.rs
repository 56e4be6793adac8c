//! The one door from Rust text to C strings.
//!
//! Redis takes log lines, error replies and command names as C strings: a
//! NUL inside ends them early, and the redis-module crate's own helpers
//! (`log_warning`, `RedisError::String` replies, `RedisString::create`)
//! `unwrap()` the conversion, so a NUL in an id read from disk or sent by a
//! client would panic inside redis-server and kill it. `RedisModule_Log`
//! also reads its text as a printf format, where a `%n` from a client
//! would write to memory.
//!
//! So every log line and every error reply the module builds goes through
//! here: [`printable`] keeps printable ASCII and spaces and shows anything
//! else as `?` (error replies must be ASCII anyway: Redis's error path
//! turns each character into one byte, and `Ā`, U+0100, would become a
//! NUL), and [`log_warning`] hands the line to Redis as the argument of a
//! `"%s"` format, never as the format. Replies and published messages
//! carry their bytes with a length (`reply_with_string_buffer`,
//! `create_from_slice`) and need no conversion.

use std::borrow::Cow;
use std::ffi::CString;
use std::ptr;

use redis_module::{Context, RedisError, raw};

/// `text` with every character outside printable ASCII (and space) as `?`.
pub fn printable(text: &str) -> Cow<'_, str> {
    let safe = |c: char| c == ' ' || c.is_ascii_graphic();
    if text.chars().all(safe) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.chars().map(|c| if safe(c) { c } else { '?' }).collect())
}

/// `text` as a C string. Never fails: [`printable`] leaves no NUL.
pub fn c_string(text: &str) -> CString {
    CString::new(printable(text).into_owned().into_bytes()).unwrap_or_default()
}

/// An error reply with this text, as [`printable`] makes it.
pub fn error(text: impl AsRef<str>) -> RedisError {
    RedisError::String(printable(text.as_ref()).into_owned())
}

/// Logs `text` at warning level, with the module's name.
pub fn log_warning(ctx: &Context, text: &str) {
    log(ctx.ctx, text);
}

fn log(ctx: *mut raw::RedisModuleCtx, text: &str) {
    let line = c_string(text);
    // SAFETY: the function pointer is filled in by Redis at load; `ctx` is
    // a live context or null (then Redis logs without the module's name);
    // the format is a literal "%s" whose one argument is a NUL-terminated
    // string that lives until the call returns.
    unsafe {
        if let Some(log) = raw::RedisModule_Log {
            log(ctx, c"warning".as_ptr(), c"%s".as_ptr(), line.as_ptr());
        }
    }
}

/// Logs `text` at warning level from an RDB load or save callback, where
/// Redis gives an IO handle instead of a context.
///
/// # Safety
/// `io` is the handle Redis passed to the running callback.
pub unsafe fn log_io_warning(io: *mut raw::RedisModuleIO, text: &str) {
    let line = c_string(text);
    // SAFETY: as in `log`, with the caller's `io`.
    unsafe {
        match raw::RedisModule_LogIOError {
            Some(log) if !io.is_null() => log(io, c"warning".as_ptr(), c"%s".as_ptr(), line.as_ptr()),
            _ => self::log(ptr::null_mut(), text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_nul_or_non_ascii_survives() {
        assert_eq!(printable("job-1 ok"), "job-1 ok");
        assert_eq!(printable("a\0b\nc\u{100}%s"), "a?b?c?%s");
        assert_eq!(c_string("id '\0'").as_bytes(), b"id '?'");
        assert_eq!(c_string("Ā").as_bytes(), b"?");
    }
}
