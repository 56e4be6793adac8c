//! Windows: when a policy's usage starts again from zero.
//!
//! Calendar windows (`hour` … `year`, UTC) number their periods: a period
//! has an *index* and starts at [`Window::start_of`] that index, so finding
//! the period that contains a time, or counting the periods between two
//! times, is arithmetic, never a loop over the periods in between. `month`
//! periods begin on an anchor day, clamped to short months (anchor 31 begins
//! on Feb 28, or Feb 29 in a leap year). `week` begins on Monday.
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
    /// Parses `WINDOW name [ANCHOR d]` or `WINDOW rolling <duration>`.
    /// Lua twin: `W.parse`, `W.from_set` (lua/src/20_window.lua).
    pub fn parse(name: &str, anchor: Option<u8>, duration: Option<&str>) -> Result<Window> {
        let unit = match name.to_ascii_lowercase().as_str() {
            "none" => None,
            "hour" => Some(Unit::Hour),
            "day" => Some(Unit::Day),
            "week" => Some(Unit::Week),
            "month" => Some(Unit::Month),
            "year" => Some(Unit::Year),
            "rolling" => {
                if anchor.is_some() {
                    return Err(Error::syntax("ANCHOR applies only to WINDOW month"));
                }
                let text = duration.ok_or_else(|| Error::syntax("WINDOW rolling needs a duration such as 30d"))?;
                return Ok(Window::Rolling { duration_ms: parse_duration(text)? });
            }
            _ => {
                return Err(Error::syntax(format!(
                    "unknown WINDOW '{}': use none, hour, day, week, month, year or rolling <duration>",
                    super::names::clip(name)
                )));
            }
        };
        match (unit, anchor) {
            (None, None) => Ok(Window::None),
            (Some(Unit::Month), Some(d)) if (1..=31).contains(&d) => {
                Ok(Window::Calendar { unit: Unit::Month, anchor: u16::from(d), tz: Zone::Utc })
            }
            (Some(Unit::Month), Some(d)) => Err(Error::syntax(format!("ANCHOR must be a day from 1 to 31, not {d}"))),
            (Some(Unit::Year), None) => Ok(Window::Calendar { unit: Unit::Year, anchor: 101, tz: Zone::Utc }),
            (Some(unit), None) => Ok(Window::Calendar { unit, anchor: 1, tz: Zone::Utc }),
            (_, Some(_)) => Err(Error::syntax("ANCHOR applies only to WINDOW month")),
        }
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

    /// The anchor day of a `month` window.
    /// Lua twin: `W.anchor` (lua/src/20_window.lua).
    pub fn anchor(&self) -> Option<u16> {
        match self {
            Window::Calendar { unit: Unit::Month, anchor, .. } => Some(*anchor),
            _ => None,
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

    /// Index of the calendar period that contains `t_ms`.
    /// Lua twin: `W.index_of` (lua/src/20_window.lua).
    pub fn index_of(&self, t_ms: u64) -> i64 {
        let t = t_ms as i64;
        match self {
            Window::None | Window::Rolling { .. } => 0,
            Window::Calendar { unit, anchor, .. } => match unit {
                Unit::Hour => t.div_euclid(HOUR_MS),
                Unit::Day => t.div_euclid(DAY_MS),
                // 1970-01-01 was a Thursday: day 0 is 3 days after a Monday.
                Unit::Week => (t.div_euclid(DAY_MS) + 3).div_euclid(7),
                Unit::Year => civil_from_days(t.div_euclid(DAY_MS)).0,
                Unit::Month => {
                    let (y, m, _) = civil_from_days(t.div_euclid(DAY_MS));
                    let index = y * 12 + (m - 1);
                    if month_start(index, *anchor) > t { index - 1 } else { index }
                }
            },
        }
    }

    /// Unix ms at which calendar period `index` starts.
    /// Lua twin: `W.start_of` (lua/src/20_window.lua).
    pub fn start_of(&self, index: i64) -> u64 {
        let ms = match self {
            Window::None | Window::Rolling { .. } => 0,
            Window::Calendar { unit, anchor, .. } => match unit {
                Unit::Hour => index * HOUR_MS,
                Unit::Day => index * DAY_MS,
                Unit::Week => (index * 7 - 3) * DAY_MS,
                Unit::Year => days_from_civil(index, 1, 1) * DAY_MS,
                Unit::Month => month_start(index, *anchor),
            },
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

/// Start of month `index` (year × 12 + month − 1) for a billing anchor.
fn month_start(index: i64, anchor: u16) -> i64 {
    let (y, m) = (index.div_euclid(12), index.rem_euclid(12) + 1);
    let day = (anchor as i64).min(days_in_month(y, m));
    days_from_civil(y, m, day) * DAY_MS
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

    #[test]
    fn windows_parse_and_refuse() {
        assert_eq!(Window::parse("MONTH", Some(31), None).unwrap(), Window::Calendar { unit: Unit::Month, anchor: 31, tz: Zone::Utc });
        assert_eq!(
            Window::parse("rolling", None, Some("30d")).unwrap(),
            Window::Rolling { duration_ms: 30 * DAY_MS as u64 }
        );
        assert_eq!(Window::parse("none", None, None).unwrap(), Window::None);
        for (name, anchor, duration) in [
            ("month", Some(0), None),
            ("month", Some(32), None),
            ("day", Some(3), None),
            ("none", Some(3), None),
            ("fortnight", None, None),
            ("rolling", None, None),
            ("rolling", None, Some("59s")),
            ("rolling", None, Some("401d")),
            ("rolling", None, Some("10")),
            ("rolling", None, Some("1.5h")),
            ("rolling", None, Some("h")),
            ("rolling", None, Some("-5m")),
            ("rolling", None, Some("5é")),
            ("rolling", None, Some("é")),
            ("rolling", None, Some("")),
        ] {
            assert!(Window::parse(name, anchor, duration).is_err(), "{name} {anchor:?} {duration:?}");
        }
        // duration text, label
        for (text, label) in [("90s", "90s"), ("15m", "15m"), ("24h", "1d"), ("30d", "30d"), ("60s", "1m")] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), label);
        }
        assert_eq!(Window::Rolling { duration_ms: 90_000 }.bucket_ms(), Some(1500));
    }
}
