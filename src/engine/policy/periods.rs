//! Periods: the span a policy's usage counts in. A calendar window's
//! *period* runs from one boundary to the next (a `month` from its anchor
//! day); when it ends, the policy *rolls*: the period closes, is archived
//! in the policy's *history* (the newest [`HISTORY_LEN`], for
//! `QUOTA.HISTORY`), usage starts again at zero, and under `ROLLOVER` the
//! unused allowance carries over, up to the cap. Periods skipped without
//! activity are counted, not walked. `QUOTA.RESET` closes the current
//! period early. A rolling window never closes a period on time: its
//! usage drops out bucket by bucket, and only `QUOTA.RESET` closes one.
//!
//! Lua twin: `roll`, `archive`, `next_allowance`, `chained_allowance`,
//! `reset_policy`, `needs_roll`, `policy_at` in lua/src/50_policy.lua.

use std::borrow::Cow;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Expired, Policy};
use crate::amount;
use crate::tz::Zone;
use crate::window::{Unit, Window};

/// Closed periods kept per policy for `QUOTA.HISTORY`.
pub const HISTORY_LEN: usize = 24;

/// A closed period, as `QUOTA.HISTORY` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    pub start_ms: u64,
    pub end_ms: u64,
    pub used: Decimal,
    /// The allowance the period had: limit + rolled over + drawn +
    /// granted, as at its close.
    pub allowance: Decimal,
    pub rolled_over: Decimal,
    /// What grants gave in the period (stored apart from the version 1
    /// shape).
    #[serde(skip)]
    pub granted: Decimal,
}

/// The window as a policy keeps it: a calendar window with the end of the
/// current period (so that the end is not recomputed on every request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Period {
    None,
    Calendar { unit: Unit, anchor: u16, tz: Zone, end_ms: u64 },
    Rolling { duration_ms: u64 },
}

impl Period {
    pub(super) fn window(self) -> Window {
        match self {
            Period::None => Window::None,
            Period::Calendar { unit, anchor, tz, .. } => Window::Calendar { unit, anchor, tz },
            Period::Rolling { duration_ms } => Window::Rolling { duration_ms },
        }
    }

    /// The period of `window` that starts at `start_ms`.
    pub(super) fn of(window: Window, start_ms: u64) -> Period {
        match window {
            Window::None => Period::None,
            Window::Calendar { unit, anchor, tz } => {
                Period::Calendar { unit, anchor, tz, end_ms: window.period_of(start_ms).1 }
            }
            Window::Rolling { duration_ms } => Period::Rolling { duration_ms },
        }
    }
}

// How many periods this thread has archived: lets tests bound the work of
// catching up on skipped periods by counting it, not by timing it.
#[cfg(test)]
thread_local! {
    pub(crate) static ARCHIVED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

impl Policy {
    /// The end of the current calendar period.
    /// Lua twin: `period_end` (lua/src/50_policy.lua).
    pub fn period_end_ms(&self) -> Option<u64> {
        match self.period {
            Period::Calendar { end_ms, .. } => Some(end_ms),
            Period::None | Period::Rolling { .. } => None,
        }
    }

    /// The span replies show as `period_start`, `period_end`: the calendar
    /// period, or the buckets a rolling window counts at `now_ms`.
    /// Lua twin: `shown_period` (lua/src/50_policy.lua).
    pub fn shown_period(&self, now_ms: u64) -> Option<(u64, u64)> {
        match self.period {
            Period::None => None,
            Period::Calendar { end_ms, .. } => Some((self.period_start_ms, end_ms)),
            Period::Rolling { .. } => self.window().rolling_span(now_ms),
        }
    }

    /// Lua twin: `needs_roll` (lua/src/50_policy.lua).
    #[inline]
    fn needs_roll(&self, now_ms: u64) -> bool {
        if self.expiry_due(now_ms) {
            return true;
        }
        match self.period {
            Period::None => false,
            Period::Calendar { end_ms, .. } => now_ms >= end_ms,
            Period::Rolling { .. } => {
                let window = self.window();
                self.buckets().front().is_some_and(|(b, _)| window.bucket_expired(*b, now_ms))
            }
        }
    }

    /// The policy as it is at `now_ms`, with every reset due applied;
    /// borrowed when nothing is due.
    /// Lua twin: `policy_at` (lua/src/50_policy.lua).
    pub fn at(&self, now_ms: u64) -> Cow<'_, Policy> {
        if self.needs_roll(now_ms) {
            // The clone shares the grants; the view applies due expiries to
            // its numbers only.
            let mut rolled = self.clone();
            rolled.roll_with(now_ms, false, &mut Vec::new());
            Cow::Owned(rolled)
        } else {
            Cow::Borrowed(self)
        }
    }

    /// Applies every reset due at `now_ms`, exactly as if each had run on
    /// time: each closed period is archived (the newest [`HISTORY_LEN`]),
    /// with its rollover. Periods skipped without any activity are counted,
    /// not walked: their allowances follow a closed form. Returns how many
    /// periods closed.
    /// Lua twin: `roll` (lua/src/50_policy.lua).
    pub fn roll(&mut self, now_ms: u64) -> u64 {
        self.roll_with(now_ms, true, &mut Vec::new())
    }

    /// [`Policy::roll`], with the grants that expired reported in
    /// `expired` (in (expires_at, seq) order), interleaved exactly with
    /// the period closes: a grant expiring at a period's end is part of
    /// the closing period. `in_place` false: a read view, which applies
    /// expiries to its numbers only (the grants are shared).
    /// Lua twin: `roll` (lua/src/50_policy.lua).
    pub fn roll_with(&mut self, now_ms: u64, in_place: bool, expired: &mut Vec<Expired>) -> u64 {
        match self.period {
            Period::None | Period::Calendar { .. } if !self.needs_roll(now_ms) => 0,
            Period::None => {
                self.expire_grants(now_ms, true, in_place, expired);
                0
            }
            Period::Rolling { .. } => {
                self.drop_expired_buckets(now_ms);
                self.expire_grants(now_ms, true, in_place, expired);
                0
            }
            Period::Calendar { end_ms, .. } if now_ms < end_ms => {
                self.expire_grants(now_ms, true, in_place, expired);
                0
            }
            Period::Calendar { end_ms, .. } => self.close_periods(end_ms, now_ms, in_place, expired),
        }
    }

    /// A rolling window at `now_ms`: the buckets that fell out of it no
    /// longer count.
    fn drop_expired_buckets(&mut self, now_ms: u64) {
        let window = self.window();
        let Some(extra) = &mut self.extra else {
            // No buckets: nothing counts.
            self.used = Decimal::ZERO;
            return;
        };
        while let Some(&(b, amount)) = extra.buckets.front() {
            if !window.bucket_expired(b, now_ms) {
                break;
            }
            self.used = (self.used - amount).max(Decimal::ZERO);
            extra.buckets.pop_front();
        }
        if extra.buckets.is_empty() {
            self.used = Decimal::ZERO;
        }
        self.clamp_drawn();
        self.refresh();
    }

    /// A calendar window whose current period ended at `end` (≤ `now_ms`):
    /// archives it and the idle periods since (the newest
    /// [`HISTORY_LEN`]), and starts the period that contains `now_ms` with
    /// the allowance carried over. Returns how many periods closed.
    fn close_periods(&mut self, end: u64, now_ms: u64, in_place: bool, expired: &mut Vec<Expired>) -> u64 {
        let window = self.window();
        // Grants expiring before the end leave first; one expiring at the
        // end is still part of the closing period.
        self.expire_grants(end, false, in_place, expired);
        let unused = (self.own() - (self.used - self.drawn())).max(Decimal::ZERO);
        self.archive(Closed {
            start_ms: self.period_start_ms,
            end_ms: end,
            used: self.used,
            allowance: self.allowance(),
            rolled_over: self.rolled_over(),
            granted: self.drawn(),
        });
        self.clear_drawn();
        self.used = Decimal::ZERO;
        let first_allowance = self.next_allowance(unused);
        // The period after the closing one (whose start is `end`), by index:
        // `index_of(end)` would step over a period that is empty (a day a
        // zone skipped, which resets on time close too), so a late reset
        // archives and counts exactly the periods on-time resets do.
        let (i_end, i_now) = (window.index_of(self.period_start_ms) + 1, window.index_of(now_ms));
        for i in i_end.max(i_now - HISTORY_LEN as i64)..i_now {
            let own = self.chained_allowance(first_allowance, i - i_end);
            let period_end = window.start_of(i + 1);
            self.expire_grants(period_end, false, in_place, expired);
            self.archive(Closed {
                start_ms: window.start_of(i),
                end_ms: period_end,
                used: Decimal::ZERO,
                allowance: amount::plus(own, self.granted()),
                rolled_over: own - self.limit,
                granted: Decimal::ZERO,
            });
        }
        let allowance = self.chained_allowance(first_allowance, i_now - i_end);
        self.period_start_ms = window.start_of(i_now);
        let limit = self.limit;
        let extra = self.extra_mut();
        extra.rolled_over = allowance - limit;
        self.fired = 0;
        self.over_fired = false;
        self.refresh();
        self.expire_grants(now_ms, true, in_place, expired);
        self.rearm_low();
        (i_now - i_end + 1) as u64
    }

    /// Lua twin: `archive` (lua/src/50_policy.lua).
    fn archive(&mut self, closed: Closed) {
        #[cfg(test)]
        ARCHIVED.with(|n| n.set(n.get() + 1));
        let history = &mut self.extra_mut().history;
        history.push_front(closed);
        history.truncate(HISTORY_LEN);
    }

    /// The allowance of the period after one that left `unused`.
    /// Lua twin: `next_allowance` (lua/src/50_policy.lua).
    fn next_allowance(&self, unused: Decimal) -> Decimal {
        match self.rollover() {
            Some(cap) => (self.limit + unused).min(cap),
            None => self.limit,
        }
    }

    /// The allowance `skipped` idle periods after a period whose allowance
    /// was `first`: each idle period carries all of its allowance over, so
    /// it is min(first + skipped × limit, cap), computed without a loop.
    /// Lua twin: `chained_allowance` (lua/src/50_policy.lua).
    fn chained_allowance(&self, first: Decimal, skipped: i64) -> Decimal {
        let (Some(cap), limit) = (self.rollover(), self.limit) else { return self.limit };
        if skipped <= 0 || limit <= Decimal::ZERO || first >= cap {
            return first.min(cap);
        }
        let steps_to_cap = ((cap - first) / limit).ceil();
        let skipped = Decimal::from(skipped);
        if skipped >= steps_to_cap { cap } else { first + skipped * limit }
    }

    /// `QUOTA.RESET`: closes the current period now, archived like a timed
    /// reset (with rollover for calendar windows). A calendar period reset
    /// early still ends at its calendar boundary.
    /// Lua twin: `reset_policy` (lua/src/50_policy.lua).
    pub fn reset(&mut self, now_ms: u64) -> Closed {
        self.reset_with(now_ms, &mut Vec::new())
    }

    /// [`Policy::reset`], reporting the grants that ended in `expired`: what
    /// was due by `now_ms`, then every `PERIOD` grant.
    /// Lua twin: `reset_policy` (lua/src/50_policy.lua).
    pub fn reset_with(&mut self, now_ms: u64, expired: &mut Vec<Expired>) -> Closed {
        self.roll_with(now_ms, true, expired);
        let start_ms = match self.period {
            Period::Rolling { duration_ms } => self.period_start_ms.max(now_ms.saturating_sub(duration_ms)),
            _ => self.period_start_ms,
        };
        let closed = Closed {
            start_ms,
            end_ms: now_ms,
            used: self.used,
            allowance: self.allowance(),
            rolled_over: self.rolled_over(),
            granted: self.drawn(),
        };
        self.archive(closed.clone());
        let unused = (self.own() - (self.used - self.drawn())).max(Decimal::ZERO);
        let allowance = self.next_allowance(unused);
        self.end_period_grants(now_ms, expired);
        self.clear_drawn();
        self.period_start_ms = now_ms;
        self.used = Decimal::ZERO;
        let limit = self.limit;
        let extra = self.extra_mut();
        extra.rolled_over = allowance - limit;
        extra.buckets.clear();
        self.fired = 0;
        self.over_fired = false;
        self.refresh();
        self.rearm_low();
        closed
    }
}
