//! Windows: when a policy's usage starts again from zero.
//!
//! Calendar windows (`hour` … `year`) number their periods: a period has an
//! *index* and starts at [`Window::start_of`] that index, so finding the
//! period that contains a time, or counting the periods between two times,
//! is arithmetic, never a loop over the periods in between. `day`, `week`,
//! `month` and `year` count local dates in the window's zone (`TZ`, UTC by
//! default; [`super::tz`]), and a period starts at the first instant of its
//! first local date, so a day can last 23 or 25 hours, and a day a zone
//! skipped is an empty period; `hour` is always UTC. `month` periods begin
//! on an anchor day, clamped to short months (anchor 31 begins on Feb 28, or
//! Feb 29 in a leap year); `week` on an anchor weekday (Monday by default);
//! `year` on an anchor date `MM-DD` (01-01 by default; 02-29 is Feb 28 in
//! common years).
//!
//! Rolling windows keep usage in buckets of 1/[`ROLLING_BUCKETS`] of the
//! window (rounded down to whole milliseconds): usage drops out when its
//! whole bucket is older than the window's duration, so never early, and at
//! most one bucket (1/60 of the window) late. The rule counts the duration
//! itself, not sixty buckets: for a duration that is not a multiple of 60
//! ms, sixty buckets cover less than the window, and a bucket's usage stays
//! until the duration has passed ([`Window::bucket_expired`]).
//!
//! Lua twin: `W` (lua/src/20_window.lua).

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::tz::Zone;

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;
/// Buckets of a rolling window: its granularity is 1/60 of its length.
pub const ROLLING_BUCKETS: u64 = 60;
/// Most buckets a rolling window keeps at once: the current one and those
/// of the last duration, which is less than 61 buckets long (a bucket is
/// at least 1000 ms, and the duration is 60 buckets and less than 60 ms).
pub const ROLLING_BUCKETS_KEPT: u64 = ROLLING_BUCKETS + 2;
/// Shortest and longest rolling window.
pub const ROLLING_MIN_MS: u64 = 60_000;
pub const ROLLING_MAX_MS: u64 = 400 * DAY_MS as u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Unit {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// A window. Its serde form is version 1's ([`WindowV1`]: no zone, and the
/// anchor of a `week` or `year` written as 1): the persist module stores
/// the zone and those anchors apart (encoding version 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "WindowV1", into = "WindowV1")]
pub enum Window {
    /// Never resets: lifetime budgets and gauges.
    None,
    /// Resets at each calendar boundary, in zone `tz`. `anchor` says where
    /// a period begins: `month`, the day of the month (1–31, clamped to
    /// short months); `week`, the ISO weekday (1 = Monday … 7 = Sunday);
    /// `year`, month × 100 + day (`04-01` is 401; 101 is the calendar
    /// year; 02-29 is clamped to 02-28 in common years); 1 for `hour` and `day`.
    Calendar { unit: Unit, anchor: u16, tz: Zone },
    /// Usage older than `duration_ms` drops out.
    Rolling { duration_ms: u64 },
}

/// The version 1 shape of a window (what RDB files of encoding versions
/// 1–5 hold).
#[derive(Serialize, Deserialize)]
pub enum WindowV1 {
    None,
    Calendar { unit: Unit, anchor: u8 },
    Rolling { duration_ms: u64 },
}

impl From<WindowV1> for Window {
    fn from(w: WindowV1) -> Window {
        match w {
            WindowV1::None => Window::None,
            WindowV1::Calendar { unit, anchor } => {
                // Version 1 wrote 1 for a week or year: their defaults.
                let anchor = match unit {
                    Unit::Year => 101,
                    Unit::Month => u16::from(anchor),
                    _ => 1,
                };
                Window::Calendar { unit, anchor, tz: Zone::Utc }
            }
            WindowV1::Rolling { duration_ms } => Window::Rolling { duration_ms },
        }
    }
}

impl From<Window> for WindowV1 {
    fn from(w: Window) -> WindowV1 {
        match w {
            Window::None => WindowV1::None,
            Window::Calendar { unit: Unit::Month, anchor, .. } => {
                WindowV1::Calendar { unit: Unit::Month, anchor: u8::try_from(anchor).unwrap_or(1) }
            }
            Window::Calendar { unit, .. } => WindowV1::Calendar { unit, anchor: 1 },
            Window::Rolling { duration_ms } => WindowV1::Rolling { duration_ms },
        }
    }
}

impl Window {
    /// Parses `WINDOW name [ANCHOR a] [TZ zone]` or `WINDOW rolling
    /// <duration>`; `name` "none" also stands for no WINDOW. Errors come in
    /// this order: an unknown window, then ANCHOR, then TZ.
    /// Lua twin: `W.parse`, `W.from_set` (lua/src/20_window.lua).
    pub fn parse(name: &str, anchor: Option<&str>, duration: Option<&str>, tz: Option<&str>) -> Result<Window> {
        let unit = match name.to_ascii_lowercase().as_str() {
            "none" | "rolling" => None,
            "hour" => Some(Unit::Hour),
            "day" => Some(Unit::Day),
            "week" => Some(Unit::Week),
            "month" => Some(Unit::Month),
            "year" => Some(Unit::Year),
            _ => {
                return Err(Error::syntax(format!(
                    "unknown WINDOW '{}': use none, hour, day, week, month, year or rolling <duration>",
                    super::names::clip(name)
                )));
            }
        };
        let anchor = match (unit, anchor) {
            (Some(Unit::Year), None) => 101,
            (_, None) => 1,
            (Some(unit @ (Unit::Week | Unit::Month | Unit::Year)), Some(text)) => parse_anchor(unit, text)?,
            (_, Some(_)) => return Err(Error::syntax("ANCHOR applies only to WINDOW week, month and year")),
        };
        let tz = match (unit, tz) {
            (_, None) => Zone::Utc,
            (Some(Unit::Day | Unit::Week | Unit::Month | Unit::Year), Some(text)) => Zone::parse(text)?,
            (_, Some(_)) => return Err(Error::syntax("TZ applies only to WINDOW day, week, month and year")),
        };
        match unit {
            Some(unit) => Ok(Window::Calendar { unit, anchor, tz }),
            None if name.eq_ignore_ascii_case("rolling") => {
                let text = duration.ok_or_else(|| Error::syntax("WINDOW rolling needs a duration such as 30d"))?;
                Ok(Window::Rolling { duration_ms: parse_duration(text)? })
            }
            None => Ok(Window::None),
        }
    }

    /// The anchor as replies show it: a `month` window's day; a `week`'s
    /// day name or a `year`'s `MM-DD` when not the default (Monday, 01-01).
    /// Lua twin: `W.anchor_shown` (lua/src/20_window.lua).
    pub fn anchor_shown(&self) -> Option<AnchorShown> {
        match *self {
            Window::Calendar { unit: Unit::Month, anchor, .. } => Some(AnchorShown::Day(anchor)),
            Window::Calendar { unit: Unit::Week, anchor, .. } if anchor != 1 => {
                Some(AnchorShown::Text(WEEKDAYS[usize::from(anchor.clamp(1, 7)) - 1].to_string()))
            }
            Window::Calendar { unit: Unit::Year, anchor, .. } if anchor != 101 => {
                Some(AnchorShown::Text(format!("{:02}-{:02}", anchor / 100, anchor % 100)))
            }
            _ => None,
        }
    }

    /// The zone of a calendar window (UTC for the others).
    /// Lua twin: `W.tz_name` (lua/src/20_window.lua).
    pub fn tz(&self) -> Zone {
        match self {
            Window::Calendar { tz, .. } => *tz,
            _ => Zone::Utc,
        }
    }

    /// The label of the period that starts at `start_ms` (QUOTA.HISTORY):
    /// its first local date, `2026` for a calendar year, `2026-11` for a
    /// month anchored on the 1st, `2026-11-27T13` for an hour (UTC),
    /// `2026-11-27` for the others; none for rolling and none windows.
    /// A period that ends where it starts is a day its zone skipped
    /// (Pacific/Apia, 2011-12-30): the day before the one that starts there.
    /// Lua twin: `W.period_label` (lua/src/20_window.lua).
    pub fn period_label(&self, start_ms: u64, end_ms: u64) -> Option<String> {
        let Window::Calendar { unit, anchor, tz } = *self else { return None };
        let t = start_ms as i64;
        let skipped = i64::from(end_ms == start_ms);
        let (y, m, d) = civil_from_days(tz.local_day(t) - skipped);
        Some(match (unit, anchor) {
            (Unit::Hour, _) => format!("{y:04}-{m:02}-{d:02}T{:02}", t.rem_euclid(DAY_MS) / HOUR_MS),
            (Unit::Year, 101) => format!("{y:04}"),
            (Unit::Month, 1) => format!("{y:04}-{m:02}"),
            _ => format!("{y:04}-{m:02}-{d:02}"),
        })
    }

    /// The label of a window that has a fixed one (all but rolling).
    /// Lua twin: `W.label` (lua/src/20_window.lua).
    pub fn static_label(&self) -> Option<&'static str> {
        match self {
            Window::None => Some("none"),
            Window::Calendar { unit, .. } => Some(unit_name(*unit)),
            Window::Rolling { .. } => None,
        }
    }

    /// The window as replies show it: `none`, `month`, `rolling 30d`.
    /// Lua twin: `W.label` (lua/src/20_window.lua).
    pub fn label(&self) -> String {
        match self {
            Window::None => "none".into(),
            Window::Calendar { unit, .. } => unit_name(*unit).into(),
            Window::Rolling { duration_ms } => format!("rolling {}", format_duration(*duration_ms)),
        }
    }

    /// Lua twin: `W.is_calendar` (lua/src/20_window.lua).
    pub fn is_calendar(&self) -> bool {
        matches!(self, Window::Calendar { .. })
    }

    /// Length of one bucket of a rolling window.
    /// Lua twin: `W.bucket_ms` (lua/src/20_window.lua).
    pub fn bucket_ms(&self) -> Option<u64> {
        match self {
            Window::Rolling { duration_ms } => Some((duration_ms / ROLLING_BUCKETS).max(1)),
            _ => None,
        }
    }

    /// Whether usage in bucket `b` of a rolling window has dropped out at
    /// `now_ms`: the whole bucket, [b × bucket, (b + 1) × bucket), is older
    /// than the duration. Usage charged at t thus counts at every time up
    /// to t + duration, and drops out by t + duration + one bucket.
    /// Lua twin: `W.expired_bucket` (lua/src/20_window.lua).
    pub fn bucket_expired(&self, b: u64, now_ms: u64) -> bool {
        match (self, self.bucket_ms()) {
            (Window::Rolling { duration_ms }, Some(bucket)) => {
                b.saturating_add(1).saturating_mul(bucket).saturating_add(*duration_ms) <= now_ms
            }
            _ => false,
        }
    }

    /// The span of a rolling window's buckets that count at `now_ms`: from
    /// the oldest bucket not dropped out (see [`Window::bucket_expired`])
    /// to the end of the current one.
    /// Lua twin: `W.rolling_span` (lua/src/20_window.lua).
    pub fn rolling_span(&self, now_ms: u64) -> Option<(u64, u64)> {
        let (Window::Rolling { duration_ms }, Some(bucket)) = (self, self.bucket_ms()) else { return None };
        let first = now_ms.saturating_sub(*duration_ms) / bucket;
        Some((first * bucket, (now_ms / bucket + 1) * bucket))
    }

    /// Index of the calendar period that contains `t_ms`: numbered by the
    /// local date in the window's zone, then one more if the next period
    /// has already begun (a fall-back over midnight repeats local dates;
    /// periods never go backwards).
    /// Lua twin: `W.index_of` (lua/src/20_window.lua).
    pub fn index_of(&self, t_ms: u64) -> i64 {
        let t = t_ms as i64;
        let Window::Calendar { unit, anchor, tz } = *self else { return 0 };
        if unit == Unit::Hour {
            return t.div_euclid(HOUR_MS);
        }
        let day = tz.local_day(t);
        let index = match unit {
            Unit::Hour | Unit::Day => day,
            // 1970-01-01 was a Thursday: day 0 is 3 days after a Monday.
            Unit::Week => (day + 3 - (i64::from(anchor) - 1)).div_euclid(7),
            Unit::Month => {
                let (y, m, _) = civil_from_days(day);
                y * 12 + (m - 1)
            }
            Unit::Year => civil_from_days(day).0,
        };
        // A month or year begins on its anchor date: before it, the date
        // still belongs to the period before.
        let index = if first_day(unit, anchor, index) > day { index - 1 } else { index };
        if self.start_of(index + 1) <= t_ms { index + 1 } else { index }
    }

    /// Unix ms at which calendar period `index` starts: the first instant
    /// of its first local date.
    /// Lua twin: `W.start_of` (lua/src/20_window.lua).
    pub fn start_of(&self, index: i64) -> u64 {
        let ms = match *self {
            Window::None | Window::Rolling { .. } => 0,
            Window::Calendar { unit: Unit::Hour, .. } => index * HOUR_MS,
            Window::Calendar { unit, anchor, tz } => tz.day_start_ms(first_day(unit, anchor, index)),
        };
        ms.max(0) as u64
    }

    /// The calendar period `[start, end)` that contains `t_ms`.
    /// Lua twin: `W.period_of` (lua/src/20_window.lua).
    pub fn period_of(&self, t_ms: u64) -> (u64, u64) {
        let i = self.index_of(t_ms);
        (self.start_of(i), self.start_of(i + 1))
    }
}

fn unit_name(unit: Unit) -> &'static str {
    match unit {
        Unit::Hour => "hour",
        Unit::Day => "day",
        Unit::Week => "week",
        Unit::Month => "month",
        Unit::Year => "year",
    }
}

/// The first local date (days since 1970-01-01) of period `index` of a
/// day, week, month or year window (for an hour, which is UTC and never
/// asks, the date the hour is on).
fn first_day(unit: Unit, anchor: u16, index: i64) -> i64 {
    let anchor = i64::from(anchor);
    match unit {
        Unit::Hour => index.div_euclid(24),
        Unit::Day => index,
        Unit::Week => index * 7 - 3 + (anchor - 1),
        Unit::Month => {
            let (y, m) = (index.div_euclid(12), index.rem_euclid(12) + 1);
            days_from_civil(y, m, anchor.min(days_in_month(y, m)))
        }
        Unit::Year => {
            let (m, d) = (anchor / 100, anchor % 100);
            days_from_civil(index, m, d.min(days_in_month(index, m)))
        }
    }
}

/// How replies show a window's anchor ([`Window::anchor_shown`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnchorShown {
    /// A `month` window's day, 1–31.
    Day(u16),
    /// `sunday`, `04-01`.
    Text(String),
}

/// ISO weekdays 1–7, as a `week` anchor is shown.
pub const WEEKDAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

/// Reads the ANCHOR of a week, month or year window into its stored form.
/// Lua twin: `W.parse_anchor` (lua/src/20_window.lua).
fn parse_anchor(unit: Unit, text: &str) -> Result<u16> {
    let clip = super::names::clip;
    match unit {
        Unit::Week => {
            let lower = text.to_ascii_lowercase();
            WEEKDAYS
                .iter()
                .position(|name| *name == lower || (lower.len() == 3 && name.starts_with(lower.as_str())))
                .map(|i| i as u16 + 1)
                .ok_or_else(|| {
                    Error::syntax(format!("ANCHOR for WINDOW week is a day such as sunday, not '{}'", clip(text)))
                })
        }
        Unit::Year => {
            let b = text.as_bytes();
            let digits = b.len() == 5 && b[2] == b'-' && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit());
            let num = |i: usize| i64::from(b[i] - b'0') * 10 + i64::from(b[i + 1] - b'0');
            match digits.then(|| (num(0), num(3))) {
                // 2000 is a leap year: 02-29 is a date, clamped in common years.
                Some((m, d)) if (1..=12).contains(&m) && (1..=days_in_month(2000, m)).contains(&d) => {
                    Ok((m * 100 + d) as u16)
                }
                _ => Err(Error::syntax(format!(
                    "ANCHOR for WINDOW year is a date MM-DD such as 04-01, not '{}'",
                    clip(text)
                ))),
            }
        }
        // What Args::next_u64("ANCHOR", 1, 31) said when ANCHOR was a number.
        _ => match text.parse::<u64>() {
            Ok(n) if (1..=31).contains(&n) && !text.starts_with('+') => Ok(n as u16),
            _ => Err(Error::syntax(format!("ANCHOR must be an integer from 1 to 31, not '{}'", clip(text)))),
        },
    }
}

/// Lua twin: `W.is_leap` (lua/src/20_window.lua).
pub fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Lua twin: `W.days_in_month` (lua/src/20_window.lua).
pub fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
/// Lua twin: `W.days_from_civil` (lua/src/20_window.lua).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date (year, month 1–12, day 1–31) of a day count since 1970-01-01.
/// Lua twin: `W.civil_from_days` (lua/src/20_window.lua).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `90s`, `15m`, `24h`, `30d` → milliseconds.
/// Lua twin: `W.parse_duration` (lua/src/20_window.lua).
pub fn parse_duration(text: &str) -> Result<u64> {
    let bad = || {
        Error::syntax(format!(
            "invalid duration '{}': use a whole number with s, m, h or d, from 60s to 400d",
            super::names::clip(text)
        ))
    };
    // Splitting at the last byte is only safe for ASCII text.
    if !text.is_ascii() {
        return Err(bad());
    }
    let split = text.len().checked_sub(1).ok_or_else(bad)?;
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let scale = match unit {
        "s" => 1000,
        "m" => 60_000,
        "h" => HOUR_MS as u64,
        "d" => DAY_MS as u64,
        _ => return Err(bad()),
    };
    let ms = n.checked_mul(scale).ok_or_else(bad)?;
    if !(ROLLING_MIN_MS..=ROLLING_MAX_MS).contains(&ms) {
        return Err(bad());
    }
    Ok(ms)
}

/// Milliseconds in the largest whole unit: 30d, 24h → 1d, 90s.
/// Lua twin: `W.format_duration` (lua/src/20_window.lua).
pub fn format_duration(ms: u64) -> String {
    for (unit, scale) in [("d", DAY_MS as u64), ("h", HOUR_MS as u64), ("m", 60_000), ("s", 1000)] {
        if ms.is_multiple_of(scale) {
            return format!("{}{unit}", ms / scale);
        }
    }
    format!("{ms}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC date and time.
    fn at(y: i64, m: i64, d: i64, h: i64) -> u64 {
        (days_from_civil(y, m, d) * DAY_MS + h * HOUR_MS) as u64
    }

    #[test]
    fn civil_dates_round_trip() {
        for days in [-1000, -1, 0, 1, 59, 365, 10_957, 19_000, 20_000, 100_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28), 2, "2000 is a leap year");
        assert_eq!(days_from_civil(2100, 3, 1) - days_from_civil(2100, 2, 28), 1, "2100 is not");
    }

    #[test]
    fn calendar_periods_start_where_the_calendar_says() {
        let month = |anchor| Window::Calendar { unit: Unit::Month, anchor, tz: Zone::Utc };
        let cal = |unit| Window::Calendar { unit, anchor: if unit == Unit::Year { 101 } else { 1 }, tz: Zone::Utc };
        // window, a time, the start and end of the period containing it
        let rows = [
            (cal(Unit::Hour), at(2026, 3, 1, 5) + 1234, at(2026, 3, 1, 5), at(2026, 3, 1, 6)),
            (cal(Unit::Day), at(2026, 12, 31, 23), at(2026, 12, 31, 0), at(2027, 1, 1, 0)),
            // 2026-11-19 is a Thursday; its week began Monday the 16th.
            (cal(Unit::Week), at(2026, 11, 19, 12), at(2026, 11, 16, 0), at(2026, 11, 23, 0)),
            (cal(Unit::Week), at(2026, 11, 16, 0), at(2026, 11, 16, 0), at(2026, 11, 23, 0)),
            (cal(Unit::Week), at(2026, 11, 15, 23), at(2026, 11, 9, 0), at(2026, 11, 16, 0)),
            (cal(Unit::Month), at(2026, 1, 31, 23), at(2026, 1, 1, 0), at(2026, 2, 1, 0)),
            (cal(Unit::Year), at(2028, 2, 29, 0), at(2028, 1, 1, 0), at(2029, 1, 1, 0)),
            (month(15), at(2026, 3, 14, 23), at(2026, 2, 15, 0), at(2026, 3, 15, 0)),
            (month(15), at(2026, 3, 15, 0), at(2026, 3, 15, 0), at(2026, 4, 15, 0)),
            // Anchor 31 is clamped to the month's length.
            (month(31), at(2026, 2, 10, 0), at(2026, 1, 31, 0), at(2026, 2, 28, 0)),
            (month(31), at(2026, 2, 28, 0), at(2026, 2, 28, 0), at(2026, 3, 31, 0)),
            (month(31), at(2028, 2, 28, 0), at(2028, 1, 31, 0), at(2028, 2, 29, 0)),
            (month(31), at(2028, 3, 30, 0), at(2028, 2, 29, 0), at(2028, 3, 31, 0)),
            (month(31), at(2026, 4, 30, 1), at(2026, 4, 30, 0), at(2026, 5, 31, 0)),
            (month(30), at(2026, 3, 1, 0), at(2026, 2, 28, 0), at(2026, 3, 30, 0)),
            (month(29), at(2026, 2, 28, 12), at(2026, 2, 28, 0), at(2026, 3, 29, 0)),
            (month(28), at(2026, 2, 27, 0), at(2026, 1, 28, 0), at(2026, 2, 28, 0)),
            (month(31), at(2026, 12, 31, 0), at(2026, 12, 31, 0), at(2027, 1, 31, 0)),
        ];
        for (window, t, start, end) in rows {
            assert_eq!(window.period_of(t), (start, end), "{window:?} at {t}");
            assert_eq!(window.period_of(start), (start, end), "{window:?} at its start");
            assert_eq!(window.period_of(end - 1), (start, end), "{window:?} just before its end");
        }
    }

    #[test]
    fn periods_are_counted_without_walking_them() {
        let w = Window::Calendar { unit: Unit::Month, anchor: 31, tz: Zone::Utc };
        assert_eq!(w.index_of(at(2030, 1, 31, 0)) - w.index_of(at(2026, 1, 31, 0)), 48);
        let h = Window::Calendar { unit: Unit::Hour, anchor: 1, tz: Zone::Utc };
        assert_eq!(h.index_of(at(2027, 1, 1, 0)) - h.index_of(at(2026, 1, 1, 0)), 365 * 24);
    }

    /// Unix ms of `YYYY-MM-DDTHH:MM`, UTC.
    fn utc(text: &str) -> u64 {
        let n = |a: usize, b: usize| text[a..b].parse::<i64>().unwrap();
        (days_from_civil(n(0, 4), n(5, 7), n(8, 10)) * DAY_MS + n(11, 13) * HOUR_MS + n(14, 16) * 60_000) as u64
    }

    fn window(unit: &str, anchor: Option<&str>, tz: &str) -> Window {
        Window::parse(unit, anchor, None, Some(tz)).unwrap_or_else(|e| panic!("{unit} {anchor:?} {tz}: {e}"))
    }

    /// Checks each row: the period holding `t`, and that the period's first
    /// and last instants are in it.
    /// zone, window, anchor, a time (UTC), the period's start and end (UTC)
    type PeriodRow<'a> = (&'a str, &'a str, Option<&'a str>, &'a str, &'a str, &'a str);
    /// window, anchor, zone, anchor shown, tz shown
    type ShownRow<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<AnchorShown>, &'a str);
    /// window, anchor, duration, zone, the error
    type ErrorRow<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Option<&'a str>, String);

    fn check_periods(rows: &[PeriodRow<'_>]) {
        for &(tz, unit, anchor, t, start, end) in rows {
            let w = window(unit, anchor, tz);
            let (start, end) = (utc(start), utc(end));
            assert_eq!(w.period_of(utc(t)), (start, end), "{tz} {unit} {anchor:?} at {t}");
            assert_eq!(w.period_of(start), (start, end), "{tz} {unit} {anchor:?} at its start");
            assert_eq!(w.period_of(end - 1), (start, end), "{tz} {unit} {anchor:?} just before its end");
            let i = w.index_of(start);
            assert_eq!((w.start_of(i), w.start_of(i + 1)), (start, end), "{tz} {unit} {anchor:?}: index {i}");
        }
    }

    #[test]
    fn periods_in_fixed_offsets_and_anchors() {
        // zone, window, anchor, a time (UTC), the period's start and end (UTC)
        check_periods(&[
            ("+05:30", "day", None, "2026-03-01T20:00", "2026-03-01T18:30", "2026-03-02T18:30"),
            ("-05:00", "day", None, "2026-03-01T03:00", "2026-02-28T05:00", "2026-03-01T05:00"),
            ("+14:00", "day", None, "2026-03-01T09:59", "2026-02-28T10:00", "2026-03-01T10:00"),
            ("-14:00", "day", None, "2026-03-01T14:00", "2026-03-01T14:00", "2026-03-02T14:00"),
            // 2026-11-19 is a Thursday: a Sunday week began on the 15th.
            ("UTC", "week", Some("sunday"), "2026-11-19T12:00", "2026-11-15T00:00", "2026-11-22T00:00"),
            ("UTC", "week", Some("SUN"), "2026-11-15T00:00", "2026-11-15T00:00", "2026-11-22T00:00"),
            ("UTC", "week", Some("sun"), "2026-11-14T23:59", "2026-11-08T00:00", "2026-11-15T00:00"),
            ("UTC", "week", Some("thursday"), "2026-11-19T00:00", "2026-11-19T00:00", "2026-11-26T00:00"),
            ("UTC", "week", Some("Mon"), "2026-11-19T12:00", "2026-11-16T00:00", "2026-11-23T00:00"),
            ("+14:00", "week", Some("sunday"), "2026-11-14T10:00", "2026-11-14T10:00", "2026-11-21T10:00"),
            // Anchors 29 to 31 clamped to February, in a zone.
            ("-03:00", "month", Some("31"), "2026-02-28T02:00", "2026-01-31T03:00", "2026-02-28T03:00"),
            ("-03:00", "month", Some("31"), "2026-02-28T03:00", "2026-02-28T03:00", "2026-03-31T03:00"),
            ("+09:00", "month", Some("29"), "2026-02-28T15:00", "2026-02-27T15:00", "2026-03-28T15:00"),
            ("+09:00", "month", Some("30"), "2028-02-29T12:00", "2028-02-28T15:00", "2028-03-29T15:00"),
            ("+09:00", "month", Some("01"), "2028-02-29T12:00", "2028-01-31T15:00", "2028-02-29T15:00"),
            // Fiscal years.
            ("+01:00", "year", Some("04-01"), "2026-03-31T23:30", "2026-03-31T23:00", "2027-03-31T23:00"),
            ("+01:00", "year", Some("04-01"), "2026-03-31T22:59", "2025-03-31T23:00", "2026-03-31T23:00"),
            ("UTC", "year", Some("01-01"), "2028-02-29T00:00", "2028-01-01T00:00", "2029-01-01T00:00"),
            ("UTC", "year", Some("12-31"), "2028-12-30T00:00", "2027-12-31T00:00", "2028-12-31T00:00"),
            // 29 February: clamped to the 28th in common years.
            ("UTC", "year", Some("02-29"), "2027-02-28T12:00", "2027-02-28T00:00", "2028-02-29T00:00"),
            ("UTC", "year", Some("02-29"), "2028-02-28T12:00", "2027-02-28T00:00", "2028-02-29T00:00"),
            ("UTC", "year", Some("02-29"), "2028-03-01T00:00", "2028-02-29T00:00", "2029-02-28T00:00"),
            ("-10:00", "year", Some("02-29"), "2028-02-29T09:00", "2027-02-28T10:00", "2028-02-29T10:00"),
            ("+00:00", "day", None, "2026-03-01T20:00", "2026-03-01T00:00", "2026-03-02T00:00"),
        ]);
    }

    /// Named zones: these need the zone table (src/engine/tz.rs).
    #[test]
    fn periods_in_named_zones() {
        // zone, window, anchor, a time (UTC), the period's start and end (UTC)
        check_periods(&[
            // New York: 23- and 25-hour days, weeks and months around them.
            ("America/New_York", "day", None, "2026-03-08T12:00", "2026-03-08T05:00", "2026-03-09T04:00"),
            ("America/New_York", "day", None, "2026-11-01T12:00", "2026-11-01T04:00", "2026-11-02T05:00"),
            ("America/New_York", "week", None, "2026-03-08T12:00", "2026-03-02T05:00", "2026-03-09T04:00"),
            ("America/New_York", "week", Some("sunday"), "2026-11-01T12:00", "2026-11-01T04:00", "2026-11-08T05:00"),
            ("America/New_York", "month", Some("1"), "2026-03-15T00:00", "2026-03-01T05:00", "2026-04-01T04:00"),
            ("America/New_York", "month", Some("31"), "2026-11-15T00:00", "2026-10-31T04:00", "2026-11-30T05:00"),
            ("America/New_York", "year", None, "2026-06-01T00:00", "2026-01-01T05:00", "2027-01-01T05:00"),
            ("America/New_York", "year", Some("11-01"), "2026-11-01T12:00", "2026-11-01T04:00", "2027-11-01T04:00"),
            ("America/New_York", "month", Some("29"), "2028-02-29T12:00", "2028-02-29T05:00", "2028-03-29T04:00"),
            ("America/New_York", "year", Some("02-29"), "2027-03-01T00:00", "2027-02-28T05:00", "2028-02-29T05:00"),
            ("America/New_York", "year", Some("02-29"), "2028-03-01T12:00", "2028-02-29T05:00", "2029-02-28T05:00"),
            ("US/Eastern", "day", None, "2026-03-08T12:00", "2026-03-08T05:00", "2026-03-09T04:00"),
            // Berlin.
            ("Europe/Berlin", "day", None, "2026-03-29T12:00", "2026-03-28T23:00", "2026-03-29T22:00"),
            ("Europe/Berlin", "day", None, "2026-10-25T12:00", "2026-10-24T22:00", "2026-10-25T23:00"),
            ("Europe/Berlin", "week", None, "2026-03-29T12:00", "2026-03-22T23:00", "2026-03-29T22:00"),
            ("Europe/Berlin", "month", None, "2026-10-15T00:00", "2026-09-30T22:00", "2026-10-31T23:00"),
            ("Europe/Berlin", "year", Some("04-01"), "2026-10-25T12:00", "2026-03-31T22:00", "2027-03-31T22:00"),
            // Half- and three-quarter-hour offsets and DST steps.
            ("Asia/Kolkata", "day", None, "2026-01-10T20:00", "2026-01-10T18:30", "2026-01-11T18:30"),
            ("Asia/Kathmandu", "day", None, "2026-01-10T20:00", "2026-01-10T18:15", "2026-01-11T18:15"),
            ("Australia/Lord_Howe", "day", None, "2026-04-05T00:00", "2026-04-04T13:00", "2026-04-05T13:30"),
            ("Australia/Lord_Howe", "day", None, "2026-10-04T00:00", "2026-10-03T13:30", "2026-10-04T13:00"),
            ("Pacific/Chatham", "day", None, "2026-04-05T00:00", "2026-04-04T10:15", "2026-04-05T11:15"),
            ("Pacific/Chatham", "day", None, "2026-09-27T00:00", "2026-09-26T11:15", "2026-09-27T10:15"),
            // Apia skipped 2011-12-30: the 29th ends where the 31st begins.
            ("Pacific/Apia", "day", None, "2011-12-29T12:00", "2011-12-29T10:00", "2011-12-30T10:00"),
            ("Pacific/Apia", "day", None, "2011-12-30T10:00", "2011-12-30T10:00", "2011-12-31T10:00"),
            ("Pacific/Apia", "week", None, "2011-12-30T10:00", "2011-12-26T10:00", "2012-01-01T10:00"),
            // Sao Paulo's DST began at midnight: 2018-11-04 began at 01:00.
            ("America/Sao_Paulo", "day", None, "2018-11-04T12:00", "2018-11-04T03:00", "2018-11-05T02:00"),
            ("America/Sao_Paulo", "day", None, "2018-11-03T12:00", "2018-11-03T03:00", "2018-11-04T03:00"),
            // Fall-backs at midnight: 23:00 comes twice, the day lasts 25 h.
            ("America/Santiago", "day", None, "2026-04-05T03:30", "2026-04-04T03:00", "2026-04-05T04:00"),
            ("Asia/Beirut", "day", None, "2026-10-24T21:30", "2026-10-23T21:00", "2026-10-24T22:00"),
        ]);
        // The skipped day is an empty period.
        let apia = window("day", None, "Pacific/Apia");
        let skipped = apia.index_of(utc("2011-12-30T09:59")) + 1;
        assert_eq!(apia.start_of(skipped), apia.start_of(skipped + 1));
        assert_eq!(apia.start_of(skipped), utc("2011-12-30T10:00"));
        assert_eq!(apia.tz().name(), "Pacific/Apia");
        assert_eq!(window("day", None, "america/new_york").tz().name(), "America/New_York");
        assert_eq!(window("day", None, "Etc/UTC").tz().name(), "Etc/UTC");
    }

    /// UTC windows give exactly what the UTC-only code gave.
    #[test]
    fn utc_periods_are_unchanged() {
        fn old_month_start(index: i64, anchor: u16) -> i64 {
            let (y, m) = (index.div_euclid(12), index.rem_euclid(12) + 1);
            days_from_civil(y, m, (anchor as i64).min(days_in_month(y, m))) * DAY_MS
        }
        fn old_index(unit: Unit, anchor: u16, t: i64) -> i64 {
            match unit {
                Unit::Hour => t.div_euclid(HOUR_MS),
                Unit::Day => t.div_euclid(DAY_MS),
                Unit::Week => (t.div_euclid(DAY_MS) + 3).div_euclid(7),
                Unit::Year => civil_from_days(t.div_euclid(DAY_MS)).0,
                Unit::Month => {
                    let (y, m, _) = civil_from_days(t.div_euclid(DAY_MS));
                    let index = y * 12 + (m - 1);
                    if old_month_start(index, anchor) > t { index - 1 } else { index }
                }
            }
        }
        fn old_start(unit: Unit, anchor: u16, index: i64) -> u64 {
            (match unit {
                Unit::Hour => index * HOUR_MS,
                Unit::Day => index * DAY_MS,
                Unit::Week => (index * 7 - 3) * DAY_MS,
                Unit::Year => days_from_civil(index, 1, 1) * DAY_MS,
                Unit::Month => old_month_start(index, anchor),
            })
            .max(0) as u64
        }
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for n in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let t = if n < 100 { n * 3_600_000 } else { x % 4_102_444_800_000 };
            let (unit, anchor) = match n % 5 {
                0 => (Unit::Hour, 1),
                1 => (Unit::Day, 1),
                2 => (Unit::Week, 1),
                3 => (Unit::Year, 101),
                _ => (Unit::Month, (x % 31 + 1) as u16),
            };
            let w = Window::Calendar { unit, anchor, tz: Zone::Utc };
            let i = old_index(unit, anchor, t as i64);
            assert_eq!(w.index_of(t), i, "{w:?} at {t}");
            assert_eq!(w.period_of(t), (old_start(unit, anchor, i), old_start(unit, anchor, i + 1)), "{w:?} at {t}");
        }
    }

    #[test]
    fn anchors_and_zones_are_shown_and_labelled() {
        // window, anchor, zone, anchor shown, tz shown
        let rows: [ShownRow<'_>; 9] = [
            ("month", Some("007"), None, Some(AnchorShown::Day(7)), "UTC"),
            ("month", None, Some("utc"), Some(AnchorShown::Day(1)), "UTC"),
            ("week", Some("monday"), Some("-00:00"), None, "UTC"),
            ("week", Some("SUNDAY"), Some("+05:30"), Some(AnchorShown::Text("sunday".into())), "+05:30"),
            ("week", Some("wed"), Some("-14:00"), Some(AnchorShown::Text("wednesday".into())), "-14:00"),
            ("year", Some("01-01"), Some("+14:00"), None, "+14:00"),
            ("year", Some("04-01"), Some("-09:30"), Some(AnchorShown::Text("04-01".into())), "-09:30"),
            ("day", None, Some("+00:45"), None, "+00:45"),
            ("hour", None, None, None, "UTC"),
        ];
        for (unit, anchor, tz, shown, name) in rows {
            let w = Window::parse(unit, anchor, None, tz).unwrap();
            assert_eq!(w.anchor_shown(), shown, "{unit} {anchor:?} {tz:?}");
            assert_eq!(w.tz().name(), name, "{unit} {anchor:?} {tz:?}");
            assert_eq!(w.tz().is_utc(), name == "UTC");
        }
        // window, anchor, zone, a period's start (UTC), its label
        for (unit, anchor, tz, start, label) in [
            ("year", None, "UTC", "2026-01-01T00:00", Some("2026")),
            ("year", Some("04-01"), "+01:00", "2026-03-31T23:00", Some("2026-04-01")),
            ("month", None, "-05:00", "2026-11-01T05:00", Some("2026-11")),
            ("month", Some("15"), "UTC", "2026-11-15T00:00", Some("2026-11-15")),
            ("week", Some("sun"), "+09:00", "2026-11-21T15:00", Some("2026-11-22")),
            ("day", None, "+05:30", "2026-11-26T18:30", Some("2026-11-27")),
            ("hour", None, "", "2026-11-27T13:00", Some("2026-11-27T13")),
            ("none", None, "", "2026-11-27T13:00", None),
        ] {
            let tz = (!tz.is_empty()).then_some(tz);
            let w = Window::parse(unit, anchor, None, tz).unwrap();
            assert_eq!(w.period_label(utc(start), utc(start) + 1).as_deref(), label, "{unit} {anchor:?} {tz:?}");
        }
        assert_eq!(Window::parse("rolling", None, Some("1h"), None).unwrap().period_label(0, 1), None);
    }

    #[test]
    fn windows_parse_and_refuse() {
        assert_eq!(
            Window::parse("MONTH", Some("31"), None, None).unwrap(),
            Window::Calendar { unit: Unit::Month, anchor: 31, tz: Zone::Utc }
        );
        assert_eq!(
            Window::parse("week", Some("Sun"), None, Some("+05:30")).unwrap(),
            Window::Calendar { unit: Unit::Week, anchor: 7, tz: Zone::Fixed(330) }
        );
        assert_eq!(
            Window::parse("year", Some("02-29"), None, Some("-00:00")).unwrap(),
            Window::Calendar { unit: Unit::Year, anchor: 229, tz: Zone::Utc }
        );
        assert_eq!(
            Window::parse("year", None, None, Some("UtC")).unwrap(),
            Window::Calendar { unit: Unit::Year, anchor: 101, tz: Zone::Utc }
        );
        assert_eq!(
            Window::parse("rolling", None, Some("30d"), None).unwrap(),
            Window::Rolling { duration_ms: 30 * DAY_MS as u64 }
        );
        assert_eq!(Window::parse("none", None, None, None).unwrap(), Window::None);
        let only_anchor = "ANCHOR applies only to WINDOW week, month and year";
        let only_tz = "TZ applies only to WINDOW day, week, month and year";
        let zone = |t: &str| {
            format!("unknown time zone '{t}': use an IANA name such as Africa/Lagos or an offset such as +01:00")
        };
        // window, anchor, duration, zone, the error
        let rows: Vec<ErrorRow<'_>> = vec![
            ("month", Some("0"), None, None, "ANCHOR must be an integer from 1 to 31, not '0'".into()),
            ("month", Some("32"), None, None, "ANCHOR must be an integer from 1 to 31, not '32'".into()),
            ("month", Some("+3"), None, None, "ANCHOR must be an integer from 1 to 31, not '+3'".into()),
            (
                "month",
                Some("sunday"),
                None,
                Some("bogus"),
                "ANCHOR must be an integer from 1 to 31, not 'sunday'".into(),
            ),
            ("week", Some("7"), None, None, "ANCHOR for WINDOW week is a day such as sunday, not '7'".into()),
            ("week", Some("su"), None, None, "ANCHOR for WINDOW week is a day such as sunday, not 'su'".into()),
            (
                "week",
                Some("sundays"),
                None,
                None,
                "ANCHOR for WINDOW week is a day such as sunday, not 'sundays'".into(),
            ),
            (
                "year",
                Some("02-30"),
                None,
                None,
                "ANCHOR for WINDOW year is a date MM-DD such as 04-01, not '02-30'".into(),
            ),
            (
                "year",
                Some("04-31"),
                None,
                None,
                "ANCHOR for WINDOW year is a date MM-DD such as 04-01, not '04-31'".into(),
            ),
            (
                "year",
                Some("13-01"),
                None,
                None,
                "ANCHOR for WINDOW year is a date MM-DD such as 04-01, not '13-01'".into(),
            ),
            ("year", Some("4-1"), None, None, "ANCHOR for WINDOW year is a date MM-DD such as 04-01, not '4-1'".into()),
            (
                "year",
                Some("00-10"),
                None,
                None,
                "ANCHOR for WINDOW year is a date MM-DD such as 04-01, not '00-10'".into(),
            ),
            (
                "year",
                Some("04-00"),
                None,
                None,
                "ANCHOR for WINDOW year is a date MM-DD such as 04-01, not '04-00'".into(),
            ),
            (
                "year",
                Some("0401"),
                None,
                None,
                "ANCHOR for WINDOW year is a date MM-DD such as 04-01, not '0401'".into(),
            ),
            ("day", Some("3"), None, None, only_anchor.into()),
            ("hour", Some("3"), None, Some("bogus"), only_anchor.into()),
            ("none", Some("3"), None, None, only_anchor.into()),
            ("rolling", Some("3"), Some("1h"), None, only_anchor.into()),
            ("hour", None, None, Some("+01:00"), only_tz.into()),
            ("none", None, None, Some("UTC"), only_tz.into()),
            ("rolling", None, Some("1h"), Some("+01:00"), only_tz.into()),
            ("day", None, None, Some("+1:00"), zone("+1:00")),
            ("day", None, None, Some("+14:30"), zone("+14:30")),
            ("day", None, None, Some("+05:60"), zone("+05:60")),
            ("day", None, None, Some("+15:00"), zone("+15:00")),
            ("day", None, None, Some("05:00"), zone("05:00")),
            ("day", None, None, Some(""), zone("")),
            ("day", None, None, Some("Mars/Olympus_Mons"), zone("Mars/Olympus_Mons")),
            (
                "fortnight",
                Some("3"),
                None,
                Some("bogus"),
                "unknown WINDOW 'fortnight': use none, hour, day, week, month, year or rolling <duration>".into(),
            ),
        ];
        for (name, anchor, duration, tz, error) in rows {
            let got = Window::parse(name, anchor, duration, tz).unwrap_err().to_string();
            assert_eq!(got, format!("ERR syntax: {error}"), "{name} {anchor:?} {duration:?} {tz:?}");
        }
        for (name, duration) in [
            ("rolling", None),
            ("rolling", Some("59s")),
            ("rolling", Some("401d")),
            ("rolling", Some("10")),
            ("rolling", Some("1.5h")),
            ("rolling", Some("h")),
            ("rolling", Some("-5m")),
            ("rolling", Some("5é")),
            ("rolling", Some("é")),
            ("rolling", Some("")),
        ] {
            assert!(Window::parse(name, None, duration, None).is_err(), "{name} {duration:?}");
        }
        // duration text, label
        for (text, label) in [("90s", "90s"), ("15m", "15m"), ("24h", "1d"), ("30d", "30d"), ("60s", "1m")] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), label);
        }
        assert_eq!(Window::Rolling { duration_ms: 90_000 }.bucket_ms(), Some(1500));
    }
}
