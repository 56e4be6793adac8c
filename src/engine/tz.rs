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
//! The rules of a named zone apply from 2000-01-01T00:00Z on: earlier
//! instants take the offset in effect at that instant (quota keeps no
//! periods from before 2000 worth reading in local time). The table's
//! format is described in tools/tzdata.py.
//!
//! Lua twin: `W.zone_*` (lua/src/22_tz.lua), data in lua/src/21_tzdata.lua.

use std::collections::HashMap;
use std::sync::OnceLock;

use super::error::{Error, Result};
use super::names::clip;
use super::window::{DAY_MS, civil_from_days, days_from_civil, days_in_month};

/// The generated table (tools/tzdata.py).
const TZDATA: &str = include_str!("tzdata.txt");
/// 2000-01-01T00:00Z: where the table's rules begin.
const RULES_FROM_MS: i64 = 946_684_800_000;
const MINUTE_MS: i64 = 60_000;
/// Longest a fixed offset may be, either way: 14:00.
const FIXED_MAX_MINUTES: i16 = 14 * 60;

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
    /// `+00:00` and `-00:00` are UTC; a named zone stays named whatever its
    /// offset (`Etc/UTC`, `Europe/London`). What [`Zone::name`] shows parses
    /// back to the same zone, so persistence keeps the name.
    /// Lua twin: `W.zone_parse` (lua/src/22_tz.lua).
    pub fn parse(text: &str) -> Result<Zone> {
        if text.eq_ignore_ascii_case("UTC") {
            return Ok(Zone::Utc);
        }
        let zone = if text.starts_with(['+', '-']) {
            parse_fixed(text)
        } else {
            table().by_lower.get(&text.to_ascii_lowercase()).map(|&i| Zone::Named(i))
        };
        zone.ok_or_else(|| {
            Error::syntax(format!(
                "unknown time zone '{}': use an IANA name such as Africa/Lagos or an offset such as +01:00",
                clip(text)
            ))
        })
    }

    /// The zone as replies show it: `UTC`, `+05:30`, `America/New_York`.
    /// Lua twin: `W.zone_name` (lua/src/22_tz.lua).
    pub fn name(&self) -> String {
        match *self {
            Zone::Utc => "UTC".into(),
            Zone::Fixed(m) => {
                let sign = if m < 0 { '-' } else { '+' };
                let m = m.unsigned_abs();
                format!("{sign}{:02}:{:02}", m / 60, m % 60)
            }
            Zone::Named(i) => table().names.get(usize::from(i)).map_or_else(|| "UTC".into(), |n| n.0.clone()),
        }
    }

    pub fn is_utc(&self) -> bool {
        *self == Zone::Utc
    }

    /// The rules of a named zone (None for UTC and fixed offsets).
    fn data(&self) -> Option<&'static ZoneData> {
        match *self {
            Zone::Named(i) => {
                let t = table();
                t.names.get(usize::from(i)).and_then(|n| t.data.get(n.1))
            }
            _ => None,
        }
    }

    /// The offset from UTC at `t_ms`, in ms.
    /// Lua twin: `W.zone_offset` (lua/src/22_tz.lua).
    pub fn offset_ms(&self, t_ms: i64) -> i64 {
        match *self {
            Zone::Utc => 0,
            Zone::Fixed(m) => i64::from(m) * MINUTE_MS,
            Zone::Named(_) => self.data().map_or(0, |d| d.offset_ms(t_ms)),
        }
    }

    /// The local date of `t_ms`, as days since 1970-01-01.
    /// Lua twin: `W.zone_local_day` (lua/src/22_tz.lua).
    pub fn local_day(&self, t_ms: i64) -> i64 {
        t_ms.saturating_add(self.offset_ms(t_ms)).div_euclid(DAY_MS)
    }

    /// The first instant (Unix ms) of local date `day`: the earliest
    /// instant whose local date is `day` or later.
    ///
    /// With `L` the UTC instant of local midnight (`day × DAY_MS`), the
    /// answer is the least candidate `c` with `c + offset(c) >= L` among
    /// `L − o` for each offset `o` in effect in [L − 2 days, L + 2 days]
    /// and each transition in that span: on a stretch of constant offset
    /// `o` from `a`, the first such instant is `a` or `L − o`, and offsets
    /// never exceed a day either way, so the day begins within the span.
    /// Lua twin: `W.zone_day_start` (lua/src/22_tz.lua).
    pub fn day_start_ms(&self, day: i64) -> i64 {
        let l = day.saturating_mul(DAY_MS);
        match self.data() {
            Some(data) => data.day_start_ms(day),
            None => l.saturating_sub(self.offset_ms(l)),
        }
    }
}

/// `+HH:MM` / `-HH:MM`, HH 00–14, MM 00–59, at most 14:00 either way.
fn parse_fixed(text: &str) -> Option<Zone> {
    let b = text.as_bytes();
    if b.len() != 6 || b[3] != b':' || ![1, 2, 4, 5].iter().all(|&i| b[i].is_ascii_digit()) {
        return None;
    }
    let num = |i: usize| i16::from(b[i] - b'0') * 10 + i16::from(b[i + 1] - b'0');
    let (hours, minutes) = (num(1), num(4));
    let total = hours * 60 + minutes;
    if minutes > 59 || total > FIXED_MAX_MINUTES {
        return None;
    }
    Some(match (total, b[0]) {
        (0, _) => Zone::Utc,
        (m, b'-') => Zone::Fixed(-m),
        (m, _) => Zone::Fixed(m),
    })
}

/// The version of the zone rules (`2026f`).
pub fn tzdata_version() -> &'static str {
    table().version
}

/// The names of the table, as it spells them (tests, listings).
pub fn zone_names() -> impl Iterator<Item = &'static str> {
    table().names.iter().map(|n| n.0.as_str())
}

// ------------------------------------------------------------------ rules

/// A POSIX `Mm.w.d/time` date: the `week`th (5: last) `weekday` (0 =
/// Sunday) of `month`, at `time_ms` after that day's local midnight
/// (negative, or more than a day, allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RuleDate {
    month: i64,
    week: i64,
    weekday: i64,
    time_ms: i64,
}

impl RuleDate {
    /// The day (since 1970-01-01) this date falls on in year `y`.
    fn day(&self, y: i64) -> i64 {
        let first = days_from_civil(y, self.month, 1);
        // 1970-01-01 was a Thursday (weekday 4).
        let first_weekday = (first + 4).rem_euclid(7);
        let mut day = first + (self.weekday - first_weekday).rem_euclid(7) + (self.week - 1) * 7;
        let days = days_in_month(y, self.month);
        while day >= first + days {
            day -= 7;
        }
        day
    }
}

/// Daylight saving of a POSIX rule: its offset, when it starts (in local
/// standard time) and when it ends (in local daylight time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Dst {
    offset_ms: i64,
    start: RuleDate,
    end: RuleDate,
}

/// A named zone's rules (one data line of the table).
#[derive(Debug, PartialEq, Eq)]
struct ZoneData {
    /// The offset at 2000-01-01T00:00Z, and before.
    initial_ms: i64,
    /// The POSIX rule: standard offset, and daylight saving if any.
    std_ms: i64,
    dst: Option<Dst>,
    /// (instant, offset from then on), increasing: the rule applies at and
    /// after the last one (after 2000-01-01 when there is none).
    transitions: Vec<(i64, i64)>,
}

impl ZoneData {
    /// Where the rule takes over.
    fn rule_from_ms(&self) -> i64 {
        self.transitions.last().map_or(RULES_FROM_MS, |t| t.0)
    }

    fn offset_ms(&self, t_ms: i64) -> i64 {
        if t_ms >= self.rule_from_ms() {
            return self.rule_offset_ms(t_ms);
        }
        self.listed_offset_ms(t_ms)
    }

    /// The offset the transitions give (binary search), before the rule.
    fn listed_offset_ms(&self, t_ms: i64) -> i64 {
        match self.transitions.partition_point(|&(at, _)| at <= t_ms) {
            0 => self.initial_ms,
            i => self.transitions[i - 1].1,
        }
    }

    /// The year of `t_ms` in local standard time.
    fn std_year(&self, t_ms: i64) -> i64 {
        civil_from_days(t_ms.saturating_add(self.std_ms).div_euclid(DAY_MS)).0
    }

    /// The rule's two changes in year `y`: (instant, offset from then on).
    fn rule_changes(&self, dst: &Dst, y: i64) -> [(i64, i64); 2] {
        let at = |date: &RuleDate, offset: i64| {
            date.day(y).saturating_mul(DAY_MS).saturating_add(date.time_ms).saturating_sub(offset)
        };
        [(at(&dst.start, self.std_ms), dst.offset_ms), (at(&dst.end, dst.offset_ms), self.std_ms)]
    }

    /// What the POSIX rule says at `t_ms`: the offset of its last change at
    /// or before `t_ms` (changes of the year before, the year and the next,
    /// so rule times past midnight or before it cannot escape).
    fn rule_offset_ms(&self, t_ms: i64) -> i64 {
        let Some(dst) = &self.dst else {
            return self.std_ms;
        };
        let y = self.std_year(t_ms);
        let mut best: Option<(i64, i64)> = None;
        for year in y - 1..=y + 1 {
            for (at, offset) in self.rule_changes(dst, year) {
                if at <= t_ms && best.is_none_or(|b| at > b.0) {
                    best = Some((at, offset));
                }
            }
        }
        best.map_or(self.std_ms, |b| b.1)
    }

    /// What [`Zone::day_start_ms`] says for a named zone.
    fn day_start_ms(&self, day: i64) -> i64 {
        let l = day.saturating_mul(DAY_MS);
        let (from, to) = (l.saturating_sub(2 * DAY_MS), l.saturating_add(2 * DAY_MS));
        let mut best: Option<i64> = None;
        let mut consider = |c: i64| {
            if c.saturating_add(self.offset_ms(c)) >= l && best.is_none_or(|b| c < b) {
                best = Some(c);
            }
        };
        consider(l.saturating_sub(self.offset_ms(from)));
        self.each_change(from, to, |at, offset| {
            consider(at);
            consider(l.saturating_sub(offset));
        });
        // Near the ends of i64 the span saturates; at any real time a
        // candidate always qualifies.
        debug_assert!(best.is_some() || l.unsigned_abs() > 1 << 60, "day {day} has no start");
        best.unwrap_or_else(|| l.saturating_sub(self.offset_ms(l)))
    }

    /// Calls `f(instant, offset)` for each transition in (from, to]: the
    /// listed ones, then the rule's, year by year (not sorted; some may
    /// not change the offset).
    fn each_change(&self, from: i64, to: i64, mut f: impl FnMut(i64, i64)) {
        let first = self.transitions.partition_point(|&(at, _)| at <= from);
        for &(at, offset) in self.transitions[first..].iter().take_while(|t| t.0 <= to) {
            f(at, offset);
        }
        let Some(dst) = &self.dst else { return };
        let from = from.max(self.rule_from_ms());
        if from >= to {
            return;
        }
        for year in self.std_year(from) - 1..=self.std_year(to) + 1 {
            for (at, offset) in self.rule_changes(dst, year) {
                if from < at && at <= to {
                    f(at, offset);
                }
            }
        }
    }
}

// ------------------------------------------------------------------ table

struct Table {
    version: &'static str,
    data: Vec<ZoneData>,
    /// (name as the table spells it, data line).
    names: Vec<(String, usize)>,
    /// Lowercase name -> index in `names`.
    by_lower: HashMap<String, u16>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    // The text is compiled in, and the tests read all of it: a malformed
    // table is a build that never passes them.
    TABLE.get_or_init(|| parse_table(TZDATA).unwrap_or_else(|e| panic!("src/engine/tzdata.txt: {e}")))
}

fn b36(text: &str) -> std::result::Result<i64, String> {
    i64::from_str_radix(text, 36).map_err(|_| format!("bad number '{text}'"))
}

fn parse_data(line: &str) -> std::result::Result<ZoneData, String> {
    let mut parts = line.split(';');
    let (Some(initial), Some(rule), Some(list), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(format!("bad data line '{line}'"));
    };
    let minutes = |text: &str| b36(text).map(|m| m * MINUTE_MS);
    let r: Vec<i64> = rule.split(',').map(b36).collect::<std::result::Result<_, _>>()?;
    let date = |f: &[i64]| -> std::result::Result<RuleDate, String> {
        let ok = (1..=12).contains(&f[0]) && (1..=5).contains(&f[1]) && (0..=6).contains(&f[2]);
        ok.then_some(RuleDate { month: f[0], week: f[1], weekday: f[2], time_ms: f[3] * MINUTE_MS })
            .ok_or_else(|| format!("bad rule '{rule}'"))
    };
    let (std_ms, dst) = match r.len() {
        1 => (r[0] * MINUTE_MS, None),
        10 => {
            (r[0] * MINUTE_MS, Some(Dst { offset_ms: r[1] * MINUTE_MS, start: date(&r[2..6])?, end: date(&r[6..10])? }))
        }
        _ => return Err(format!("bad rule '{rule}'")),
    };
    let mut transitions = Vec::new();
    if !list.is_empty() {
        let v: Vec<i64> = list.split(',').map(minutes).collect::<std::result::Result<_, _>>()?;
        if !v.len().is_multiple_of(2) {
            return Err(format!("odd transition list '{list}'"));
        }
        let mut at = RULES_FROM_MS;
        for pair in v.chunks(2) {
            if pair[0] <= 0 {
                return Err(format!("transitions out of order in '{list}'"));
            }
            at += pair[0];
            transitions.push((at, pair[1]));
        }
    }
    Ok(ZoneData { initial_ms: minutes(initial)?, std_ms, dst, transitions })
}

fn parse_table(text: &'static str) -> std::result::Result<Table, String> {
    let mut lines = text.lines();
    let version = lines.next().filter(|v| !v.is_empty()).ok_or("no version line")?;
    let (mut data, mut names, mut by_lower) = (Vec::new(), Vec::<(String, usize)>::new(), HashMap::new());
    for line in lines {
        if let Some(rest) = line.strip_prefix('=') {
            data.push(parse_data(rest)?);
            continue;
        }
        let (name, index) = line.split_once(' ').ok_or_else(|| format!("bad line '{line}'"))?;
        // "/Name": in the folder of the name before.
        let name = match (name.strip_prefix('/'), names.last()) {
            (Some(rest), Some((prev, _))) => match prev.rsplit_once('/') {
                Some((folder, _)) => format!("{folder}/{rest}"),
                None => return Err(format!("'{line}' follows a name with no folder")),
            },
            (Some(_), None) => return Err(format!("'{line}' comes first")),
            (None, _) => name.to_string(),
        };
        let index = usize::try_from(b36(index)?).map_err(|_| format!("bad index in '{line}'"))?;
        if index >= data.len() {
            return Err(format!("'{line}' names a data line not yet given"));
        }
        let at = u16::try_from(names.len()).map_err(|_| "too many names")?;
        if by_lower.insert(name.to_ascii_lowercase(), at).is_some() {
            return Err(format!("'{name}' twice"));
        }
        names.push((name, index));
    }
    Ok(Table { version, data, names, by_lower })
}

#[cfg(test)]
#[path = "tests_tz.rs"]
mod tests;
