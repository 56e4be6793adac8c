//! Warning thresholds: the percentages of a policy's allowance (`WARN
//! 80,90`, the default) that its level is compared with. Its status is
//! `warning` from the first threshold and `critical` from the last, and a
//! `warning` event fires when the level crosses a threshold, once per
//! period (a rolling window re-arms a threshold its usage drops below). A
//! policy keeps which thresholds fired (`Policy::fired`, one bit each);
//! `Policy::refresh` derives the level at which the next alert fires, so
//! that observing a policy below it costs one comparison.
//!
//! Lua twin: `parse_warn`, `DEFAULT_WARN`, `MAX_WARN` in
//! `lua/src/50_policy.lua`.

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

/// The default warning thresholds, in percent of the allowance.
pub const DEFAULT_WARN: [u8; 2] = [80, 90];
/// Most thresholds one policy may have.
pub const MAX_WARN: usize = 10;

/// A policy's warning thresholds: up to [`MAX_WARN`] ascending percentages,
/// kept inline (a policy exists per path; a heap list each would cost more
/// than the thresholds themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warn {
    len: u8,
    pct: [u8; MAX_WARN],
}

impl Warn {
    /// The first [`MAX_WARN`] of `list`, which the caller has sorted.
    pub fn new(list: &[u8]) -> Warn {
        let mut pct = [0; MAX_WARN];
        let len = list.len().min(MAX_WARN);
        pct[..len].copy_from_slice(&list[..len]);
        Warn { len: len as u8, pct }
    }
}

impl Default for Warn {
    fn default() -> Warn {
        Warn::new(&DEFAULT_WARN)
    }
}

impl std::ops::Deref for Warn {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.pct[..usize::from(self.len).min(MAX_WARN)]
    }
}

/// Parses `80,90` into ascending distinct percentages from 1 to 100.
/// Lua twin: `parse_warn` (lua/src/50_policy.lua).
pub fn parse_warn(text: &str) -> Result<Warn> {
    let bad = || {
        Error::syntax(format!(
            "WARN takes percentages from 1 to 100 separated by commas, not '{}'",
            super::names::clip(text)
        ))
    };
    let mut out = Vec::new();
    for part in text.split(',') {
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let pct: u8 = part.parse().map_err(|_| bad())?;
        if !(1..=100).contains(&pct) {
            return Err(bad());
        }
        out.push(pct);
    }
    if out.len() > MAX_WARN {
        return Err(Error::Limit(format!("at most {MAX_WARN} WARN thresholds per policy")));
    }
    out.sort_unstable();
    out.dedup();
    Ok(Warn::new(&out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warn_lists_parse_sorted_and_bounded() {
        assert_eq!(&*parse_warn("90,80").unwrap(), &[80, 90]);
        assert_eq!(&*parse_warn("100").unwrap(), &[100]);
        assert_eq!(&*parse_warn("1,2,3,4,5,6,7,8,9,10").unwrap(), &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert!(parse_warn("1,2,3,4,5,6,7,8,9,10,11").is_err());
        for bad in ["", "0", "101", "80,", "a", "80;90", "-1", "1000"] {
            assert!(parse_warn(bad).is_err(), "{bad}");
        }
    }
}
