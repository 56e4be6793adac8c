//! META on `QUOTA.RESERVE` and `QUOTA.CHARGE` (SPEC §9): name/value pairs
//! a client attaches to a request, kept with the hold and carried to its
//! ledger entries and its `expired` event (a charge's go to its ledger
//! entry and its `disallowed` events). Never part of a reply of
//! RESERVE/CHARGE/COMMIT.
//!
//! Lua twin: the `meta_*` functions of lua/src/66_labels.lua.

use super::error::{Error, Result};
use super::names;

/// The pairs, in the order given; names unique.
pub type Meta = Vec<(String, String)>;

/// Most pairs.
pub const MAX_META: usize = 16;
/// Longest value, in bytes.
pub const MAX_META_VALUE: usize = 256;

/// A META name: the metric name rule (`[a-z][a-z0-9_]{0,31}`, never a
/// keyword).
/// Lua twin: `meta_check_name` (lua/src/66_labels.lua).
pub fn check_name(name: &str) -> Result<()> {
    if names::parse_metric(name).is_err() {
        return Err(Error::syntax(format!(
            "META name '{}' must be [a-z][a-z0-9_]{{0,31}} and not a keyword",
            names::clip(name)
        )));
    }
    Ok(())
}

/// A META value: 1–256 bytes of UTF-8 without control characters (the
/// grant `NOTE` rule, with its own texts).
/// Lua twin: `meta_check_value` (lua/src/66_labels.lua).
pub fn check_value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_META_VALUE {
        return Err(Error::Limit(format!("a META value is longer than {MAX_META_VALUE} bytes")));
    }
    match std::str::from_utf8(value) {
        Ok(text) if !text.is_empty() && !text.chars().any(|c| c < ' ' || c == '\u{7f}') => Ok(()),
        _ => Err(Error::syntax("META value must be text without control characters")),
    }
}

/// Adds one pair to `meta`, checked: name, not given twice, value, and at
/// most [`MAX_META`] pairs.
/// Lua twin: `meta_add` (lua/src/66_labels.lua).
pub fn add(meta: &mut Meta, name: &str, value: &str) -> Result<()> {
    check_name(name)?;
    if meta.iter().any(|(n, _)| n == name) {
        return Err(Error::syntax(format!("META name '{name}' given twice")));
    }
    check_value(value.as_bytes())?;
    if meta.len() >= MAX_META {
        return Err(Error::Limit(format!("at most {MAX_META} META pairs")));
    }
    meta.push((name.to_string(), value.to_string()));
    Ok(())
}

/// Checks stored pairs (restore): each as [`add`] would take it.
/// Lua twin: `meta_check_stored` (lua/src/66_labels.lua).
pub(crate) fn validate(meta: &Meta) -> std::result::Result<(), String> {
    if meta.is_empty() {
        return Err("empty META".into());
    }
    let mut seen = Meta::new();
    for (name, value) in meta {
        add(&mut seen, name, value).map_err(|e| format!("META: {e}"))?;
    }
    Ok(())
}

/// Heap bytes, for `MEMORY USAGE`.
pub fn extra_bytes(meta: &Meta) -> usize {
    std::mem::size_of::<Meta>()
        + meta.iter().map(|(n, v)| n.len() + v.len() + std::mem::size_of::<(String, String)>()).sum::<usize>()
}
