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
        let _ = text;
        Err(Error::syntax("TZ is not implemented yet"))
    }

    /// The zone as replies show it: `UTC`, `+05:30`, `America/New_York`.
    /// Lua twin: `W.zone_name` (lua/src/22_tz.lua).
    pub fn name(&self) -> String {
        "UTC".into()
    }

    pub fn is_utc(&self) -> bool {
        *self == Zone::Utc
    }

    /// The offset from UTC at `t_ms`, in ms.
    /// Lua twin: `W.zone_offset` (lua/src/22_tz.lua).
    pub fn offset_ms(&self, t_ms: i64) -> i64 {
        let _ = t_ms;
        0
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
        day * super::window::DAY_MS
    }
}

/// The version of the zone rules (`2026f`).
pub fn tzdata_version() -> &'static str {
    "none"
}
