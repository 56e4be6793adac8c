//! Policies: a named limit on one path, with its mode, window, warning
//! thresholds and optional service/model filter, and the usage counted
//! against it in the current period. How periods end, roll over and are
//! archived is in `policy/periods.rs`.
//!
//! Lua twin: lua/src/50_policy.lua.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::amount;
use super::error::{Error, Result};
use super::window::Window;

pub use super::thresholds::{DEFAULT_WARN, MAX_WARN, Warn, parse_warn};

mod grants;
mod periods;
use grants::GrantState;
pub(crate) use grants::validate_grant;
pub use grants::{
    DEFAULT_PRIORITY, Expired, Grant, GrantExpiry, GrantRequest, Grants, MAX_GRANTS, MAX_NOTE, StoredGrants, check_note,
};
#[cfg(test)]
pub(crate) use periods::ARCHIVED;
use periods::Period;
pub use periods::{Closed, HISTORY_LEN};

/// How a policy treats a reservation (SPEC §1 "Modes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Passes when used + held + requested ≤ allowance: never overspends.
    Strict,
    /// Passes while used < allowance: cheap, may overshoot by what is in flight.
    Block,
    /// Always passes: recorded and reported, never denied.
    Open,
}

impl Mode {
    /// Lua twin: `parse_mode` (lua/src/50_policy.lua).
    pub fn parse(text: &str) -> Result<Mode> {
        match text.to_ascii_lowercase().as_str() {
            "strict" => Ok(Mode::Strict),
            "block" => Ok(Mode::Block),
            "open" => Ok(Mode::Open),
            _ => Err(Error::syntax(format!("MODE must be strict, block or open, not '{}'", super::names::clip(text)))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Strict => "strict",
            Mode::Block => "block",
            Mode::Open => "open",
        }
    }
}

/// How close a policy is to its limit, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Status {
    /// A node without policies.
    None,
    Healthy,
    Warning,
    Critical,
    Over,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::None => "none",
            Status::Healthy => "healthy",
            Status::Warning => "warning",
            Status::Critical => "critical",
            Status::Over => "over",
        }
    }
}

/// What `QUOTA.SET` asks for: the configuration of a policy, without state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySpec {
    pub metric: String,
    pub limit: Decimal,
    pub mode: Mode,
    pub window: Window,
    /// Thresholds in percent, ascending, each 1–100.
    pub warn: Warn,
    /// `ROLLOVER cap`: unused allowance carries into the next period, up to
    /// an allowance of `cap`.
    pub rollover: Option<Decimal>,
    pub service: Option<String>,
    pub model: Option<String>,
    /// `LOW amount`: a `low` event when remaining falls to it (stored
    /// apart from the spec's version 1 shape).
    #[serde(skip)]
    pub low: Option<Decimal>,
    /// `INFLIGHT`: the policy counts only what live holds have (SPEC §8;
    /// stored apart from the spec's version 1 shape).
    #[serde(skip)]
    pub inflight: bool,
}

impl PolicySpec {
    /// Checks the rules that tie the options together.
    /// Lua twin: `validate_spec` (lua/src/50_policy.lua).
    pub fn validate(&self) -> Result<()> {
        if self.inflight {
            if self.window != Window::None {
                return Err(Error::syntax("an INFLIGHT policy counts what is held now and takes no WINDOW"));
            }
            if self.mode == Mode::Block {
                return Err(Error::syntax("an INFLIGHT policy is strict or open (MODE block does not count holds)"));
            }
            if self.low.is_some() {
                return Err(Error::syntax("LOW does not apply to an INFLIGHT policy"));
            }
        }
        if let Some(cap) = self.rollover {
            if !self.window.is_calendar() {
                return Err(Error::syntax("ROLLOVER needs a calendar WINDOW: hour, day, week, month or year"));
            }
            if cap < self.limit {
                return Err(Error::InvalidAmount(format!(
                    "the ROLLOVER cap {} is below the LIMIT {}",
                    amount::format(cap),
                    amount::format(self.limit)
                )));
            }
        }
        if self.model.is_some() && self.service.is_none() {
            return Err(Error::syntax("MODEL needs SERVICE"));
        }
        Ok(())
    }

    /// Whether a request with this service/model is subject to the policy.
    /// A filtered policy ignores requests that name no service.
    /// Lua twin: `matches` (lua/src/50_policy.lua).
    pub fn matches(&self, service: Option<&str>, model: Option<&str>) -> bool {
        match (&self.service, &self.model) {
            (None, _) => true,
            (Some(s), None) => service == Some(s.as_str()),
            (Some(s), Some(m)) => service == Some(s.as_str()) && model == Some(m.as_str()),
        }
    }
}

/// The parts of a policy most policies never use: a service/model filter,
/// a `ROLLOVER` cap, thresholds other than the default, carried-over and
/// granted allowance, closed periods and rolling buckets. A tree holds a
/// policy per path, so these live behind one pointer that is empty for a
/// plain limit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Extra {
    rollover: Option<Decimal>,
    service: Option<String>,
    model: Option<String>,
    warn: Warn,
    rolled_over: Decimal,
    /// Grants, what they gave this period, and `LOW`.
    grant: GrantState,
    /// limit + rolled over + drawn + granted, kept by [`Policy::refresh`].
    allowance: Decimal,
    history: VecDeque<Closed>,
    buckets: VecDeque<(u64, Decimal)>,
}

impl Extra {
    /// Whether nothing here differs from a plain policy.
    fn is_plain(&self) -> bool {
        self.rollover.is_none()
            && self.service.is_none()
            && self.model.is_none()
            && self.warn == Warn::default()
            && self.rolled_over.is_zero()
            && self.grant.is_plain()
            && self.history.is_empty()
            && self.buckets.is_empty()
    }
}

/// A policy and its usage in the current period.
///
/// A tree holds one or more per path, so the layout is compact (128
/// bytes): name and metric share one interned allocation, the window carries the
/// current period's end, and what most policies never use is in `Extra`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The name, then the metric: `labels[..split]` and `labels[split..]`.
    labels: Arc<str>,
    split: u8,
    pub mode: Mode,
    /// `WARN` thresholds that fired in this period, one bit per threshold.
    pub fired: u16,
    /// Whether `over` fired in this period.
    pub over_fired: bool,
    /// Whether the policy comes from the tree's plan (`source` "plan")
    /// rather than `QUOTA.SET` (`source` "tree").
    pub from_plan: bool,
    /// `INFLIGHT` (SPEC §8): counts only what live holds have; never
    /// records usage, never alerts.
    pub inflight: bool,
    pub limit: Decimal,
    /// Usage committed or charged in the current period (never below 0).
    /// For a rolling window, the sum of its buckets.
    pub used: Decimal,
    /// Sum of the live holds on this policy. Holds survive resets.
    pub held: Decimal,
    /// The usage level at which the next alert fires (the lowest threshold
    /// not fired yet, or `over`), kept by [`Policy::refresh`]: below it,
    /// observing the policy costs one comparison.
    alert_at: Decimal,
    period: Period,
    /// Tree-unique generation. Holds refer to a policy by node and
    /// generation, so a policy that is removed and set again, or whose metric
    /// changes, never receives releases meant for its predecessor.
    pub generation: u64,
    /// When the current period began: a calendar boundary, or the creation
    /// or last `QUOTA.RESET` of the policy.
    pub period_start_ms: u64,
    extra: Option<Box<Extra>>,
}

/// Name and metric in one shared allocation, and where the metric starts.
/// Trees repeat the same few policy names and metrics on many paths, so
/// equal labels are stored once: a set of the labels in use, from which
/// labels no policy holds any more are dropped whenever it has doubled.
fn labels(name: &str, metric: &str) -> (Arc<str>, u8) {
    struct Interned {
        set: HashSet<Arc<str>>,
        sweep_at: usize,
    }
    static INTERNED: Mutex<Option<Interned>> = Mutex::new(None);
    let mut text = String::with_capacity(name.len() + metric.len());
    text.push_str(name);
    text.push_str(metric);
    // Names are at most MAX_NAME_LEN (128) bytes; clamp for safety.
    let split = name.len().min(u8::MAX as usize) as u8;
    // A poisoned lock only means another thread panicked while holding it;
    // the set is still a valid set.
    let mut guard = INTERNED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let interned = guard.get_or_insert_with(|| Interned { set: HashSet::new(), sweep_at: 64 });
    if let Some(shared) = interned.set.get(text.as_str()) {
        return (shared.clone(), split);
    }
    if interned.set.len() >= interned.sweep_at {
        interned.set.retain(|label| Arc::strong_count(label) > 1);
        interned.sweep_at = (interned.set.len() * 2).max(64);
    }
    let label: Arc<str> = text.into();
    interned.set.insert(label.clone());
    (label, split)
}

impl Policy {
    /// A policy whose metric changed starts over: what it counted, held,
    /// carried over and archived was in another unit.
    /// Lua twin: `new_policy` in `OPS.set_policy` (lua/src/75_ops.lua).
    pub fn restart(&mut self, generation: u64, now_ms: u64) {
        let mut fresh = Policy::new(self.name(), self.spec(), generation, now_ms);
        fresh.from_plan = self.from_plan;
        *self = fresh;
    }

    /// Lua twin: `new_policy` (lua/src/50_policy.lua).
    pub fn new(name: &str, spec: PolicySpec, generation: u64, now_ms: u64) -> Policy {
        let period_start_ms = match spec.window {
            Window::Calendar { .. } => spec.window.period_of(now_ms).0,
            Window::None | Window::Rolling { .. } => now_ms,
        };
        let (labels, split) = labels(name, &spec.metric);
        let mut policy = Policy {
            labels,
            split,
            mode: spec.mode,
            fired: 0,
            over_fired: false,
            from_plan: false,
            inflight: spec.inflight,
            limit: spec.limit,
            used: Decimal::ZERO,
            held: Decimal::ZERO,
            alert_at: Decimal::ZERO,
            period: Period::None,
            generation,
            period_start_ms,
            extra: None,
        };
        policy.configure(spec);
        policy.refreshed()
    }

    /// Takes the configuration of `spec` (the caller refreshes).
    fn configure(&mut self, spec: PolicySpec) {
        if spec.metric != self.metric() {
            let name = self.name().to_string();
            (self.labels, self.split) = labels(&name, &spec.metric);
        }
        self.mode = spec.mode;
        self.inflight = spec.inflight;
        self.limit = spec.limit;
        self.period = Period::of(spec.window, self.period_start_ms);
        if spec.rollover.is_some() || spec.service.is_some() || spec.model.is_some() || spec.warn != Warn::default() {
            let extra = self.extra_mut();
            extra.rollover = spec.rollover;
            extra.service = spec.service;
            extra.model = spec.model;
            extra.warn = spec.warn;
        } else if let Some(extra) = &mut self.extra {
            extra.rollover = None;
            extra.service = None;
            extra.model = None;
            extra.warn = Warn::default();
        }
        self.set_low(spec.low);
    }

    fn extra_mut(&mut self) -> &mut Extra {
        let limit = self.limit;
        self.extra.get_or_insert_with(|| Box::new(Extra { allowance: limit, ..Extra::default() }))
    }

    pub fn name(&self) -> &str {
        self.labels.get(..usize::from(self.split)).unwrap_or("")
    }

    pub fn metric(&self) -> &str {
        self.labels.get(usize::from(self.split)..).unwrap_or("")
    }

    pub fn window(&self) -> Window {
        self.period.window()
    }

    pub fn warn(&self) -> Warn {
        self.extra.as_ref().map_or_else(Warn::default, |e| e.warn)
    }

    pub fn rollover(&self) -> Option<Decimal> {
        self.extra.as_ref().and_then(|e| e.rollover)
    }

    pub fn service(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|e| e.service.as_deref())
    }

    pub fn model(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|e| e.model.as_deref())
    }

    /// Allowance carried over from the previous period (`ROLLOVER`).
    pub fn rolled_over(&self) -> Decimal {
        self.extra.as_ref().map_or(Decimal::ZERO, |e| e.rolled_over)
    }

    /// Closed periods, newest first, at most [`HISTORY_LEN`].
    pub fn history(&self) -> &VecDeque<Closed> {
        static EMPTY: VecDeque<Closed> = VecDeque::new();
        self.extra.as_ref().map_or(&EMPTY, |e| &e.history)
    }

    /// Rolling windows: (bucket index, usage), oldest first.
    pub fn buckets(&self) -> &VecDeque<(u64, Decimal)> {
        static EMPTY: VecDeque<(u64, Decimal)> = VecDeque::new();
        self.extra.as_ref().map_or(&EMPTY, |e| &e.buckets)
    }

    /// The configuration, as `QUOTA.SET` would give it.
    pub fn spec(&self) -> PolicySpec {
        PolicySpec {
            metric: self.metric().to_string(),
            limit: self.limit,
            mode: self.mode,
            window: self.window(),
            warn: self.warn(),
            rollover: self.rollover(),
            service: self.service().map(str::to_string),
            model: self.model().map(str::to_string),
            low: self.low(),
            inflight: self.inflight,
        }
    }

    /// Whether a request with this service/model is subject to the policy.
    /// Lua twin: `matches` (lua/src/50_policy.lua).
    pub fn matches(&self, service: Option<&str>, model: Option<&str>) -> bool {
        match &self.extra {
            None => true,
            Some(extra) => match (&extra.service, &extra.model) {
                (None, _) => true,
                (Some(s), None) => service == Some(s.as_str()),
                (Some(s), Some(m)) => service == Some(s.as_str()) && model == Some(m.as_str()),
            },
        }
    }

    /// The heap the rarely used parts take (labels are shared and not
    /// counted), for `MEMORY USAGE`.
    pub(crate) fn extra_bytes(&self) -> usize {
        self.extra.as_ref().map_or(0, |e| {
            std::mem::size_of::<Extra>()
                + e.history.capacity() * std::mem::size_of::<Closed>()
                + e.buckets.capacity() * std::mem::size_of::<(u64, Decimal)>()
                + e.service.as_ref().map_or(0, String::capacity)
                + e.model.as_ref().map_or(0, String::capacity)
        }) + self.grant_bytes()
    }

    /// Restores the period state of a stored policy (the caller validated
    /// it and refreshes).
    pub(crate) fn restore(
        &mut self,
        rolled_over: Decimal,
        history: VecDeque<Closed>,
        buckets: VecDeque<(u64, Decimal)>,
    ) {
        if rolled_over.is_zero() && history.is_empty() && buckets.is_empty() {
            return;
        }
        let extra = self.extra_mut();
        extra.rolled_over = rolled_over;
        extra.history = history;
        extra.buckets = buckets;
    }

    fn refreshed(mut self) -> Policy {
        self.refresh();
        self
    }

    /// Recomputes what is derived from the limit, carry-over, grants and
    /// fired alerts, and drops the [`Extra`] part when it holds nothing.
    /// Every change to those ends with a call to this.
    /// Lua twin: `refresh` (lua/src/50_policy.lua).
    pub(crate) fn refresh(&mut self) {
        if self.extra.as_ref().is_some_and(|e| e.is_plain()) {
            self.extra = None;
        }
        // Checked: a value from a corrupt payload must not panic here.
        let allowance = match &mut self.extra {
            None => self.limit,
            Some(extra) => {
                // `granted` in one form (2, not 2.0 after 2.5 − 0.5), the
                // form a load derives from Σ remaining: the allowance, in
                // events and history, has the same bytes after a restart.
                extra.grant.granted = extra.grant.granted.normalize();
                let allowance = self
                    .limit
                    .checked_add(extra.rolled_over)
                    .and_then(|a| a.checked_add(extra.grant.drawn))
                    .and_then(|a| a.checked_add(extra.grant.granted))
                    .unwrap_or(Decimal::MAX);
                extra.allowance = allowance;
                allowance
            }
        };
        let mut at = if self.over_fired { Decimal::MAX } else { allowance };
        for (i, &pct) in self.warn().iter().enumerate() {
            if self.fired & (1u16 << i.min(15)) == 0
                && let Some(level) = allowance.checked_mul(Decimal::from(pct))
            {
                at = at.min(level / Decimal::ONE_HUNDRED);
            }
        }
        self.alert_at = at;
        self.period = Period::of(self.window(), self.period_start_ms);
    }

    fn is_rolling(&self) -> bool {
        matches!(self.period, Period::Rolling { .. })
    }

    /// A rolling window's usage drops out continuously: thresholds it is
    /// now below fire again when crossed again. Called after usage dropped
    /// out and before new usage is added, so a drop and a rise in one write
    /// are both seen.
    /// Lua twin: `rearm` (lua/src/50_policy.lua).
    pub(crate) fn rearm(&mut self) {
        if !self.is_rolling() {
            return;
        }
        for (i, &pct) in self.warn().iter().enumerate() {
            if !self.crossed(pct) {
                self.fired &= !(1u16 << i.min(15));
            }
        }
        if !self.is_over() {
            self.over_fired = false;
        }
        self.refresh();
        self.rearm_low();
    }

    /// Whether an alert could fire at the current level (always true for a
    /// rolling window, whose thresholds re-arm as usage drops).
    pub(crate) fn may_alert(&self) -> bool {
        // A concurrency cap reached is normal traffic: no thresholds.
        if self.inflight {
            return false;
        }
        self.is_rolling() || amount::cmp(self.level(), self.alert_at).is_ge()
    }

    /// The current period's allowance: limit + rolled over + drawn +
    /// granted (SPEC §7).
    /// Lua twin: `allowance` (lua/src/50_policy.lua).
    pub fn allowance(&self) -> Decimal {
        let allowance = self.extra.as_ref().map_or(self.limit, |e| e.allowance);
        debug_assert_eq!(
            Some(allowance),
            self.limit
                .checked_add(self.rolled_over())
                .and_then(|a| a.checked_add(self.drawn()))
                .and_then(|a| a.checked_add(self.granted())),
            "refresh() after every change to the allowance"
        );
        allowance
    }

    /// The usage that warnings and status compare with the allowance:
    /// strict policies count what is held, the others only what is used.
    /// Lua twin: `level` (lua/src/50_policy.lua).
    pub fn level(&self) -> Decimal {
        if self.inflight {
            return self.held;
        }
        match self.mode {
            Mode::Strict => amount::plus(self.used, self.held),
            Mode::Block | Mode::Open => self.used,
        }
    }

    /// allowance − used − held: what a strict reservation can still take.
    /// Lua twin: `remaining` (lua/src/50_policy.lua).
    pub fn remaining(&self) -> Decimal {
        amount::minus(amount::minus(self.allowance(), self.used), self.held)
    }

    /// Whether a request for `requested` passes this policy now. A request
    /// that takes nothing (or gives back) always passes.
    /// Lua twin: `passes` (lua/src/50_policy.lua).
    pub fn passes(&self, requested: Decimal) -> bool {
        if !amount::positive(requested) {
            return true;
        }
        match self.mode {
            Mode::Strict => amount::cmp(amount::plus(self.level(), requested), self.allowance()).is_le(),
            Mode::Block => amount::cmp(self.used, self.allowance()).is_lt(),
            Mode::Open => true,
        }
    }

    /// Whether committed usage has reached the allowance.
    /// Lua twin: `is_over` (lua/src/50_policy.lua).
    pub fn is_over(&self) -> bool {
        amount::cmp(self.used, self.allowance()).is_ge()
    }

    /// Lua twin: `status` (lua/src/50_policy.lua).
    pub fn status(&self) -> Status {
        if self.is_over() {
            return Status::Over;
        }
        let warn = self.warn();
        match (warn.first(), warn.last()) {
            (Some(&_), Some(&last)) if self.crossed(last) => Status::Critical,
            (Some(&first), Some(&_)) if self.crossed(first) => Status::Warning,
            _ => Status::Healthy,
        }
    }

    /// Whether the level has reached `pct` percent of the allowance
    /// (compared without division; a product too large to compute counts
    /// as reached).
    /// Lua twin: `crossed` (lua/src/50_policy.lua).
    pub fn crossed(&self, pct: u8) -> bool {
        // Small amounts compare exactly without the products (which then
        // cannot overflow).
        if let Some(order) = amount::cmp_scaled(self.level(), 100, self.allowance(), pct) {
            return order.is_ge();
        }
        match (self.level().checked_mul(Decimal::ONE_HUNDRED), self.allowance().checked_mul(Decimal::from(pct))) {
            (Some(level), Some(threshold)) => level >= threshold,
            _ => true,
        }
    }

    /// Adds usage at `now_ms` (after [`Policy::roll`]); usage never goes
    /// below zero and stops at the bound of totals (10^18): a charge has
    /// checked that it stays within, and a commit is never refused (the
    /// work is done).
    /// What grants give is recorded in `draws` as (grant id, amount).
    /// Lua twin: `add_used_capped` (lua/src/50_policy.lua).
    pub fn add_used_capped(&mut self, delta: Decimal, now_ms: u64, draws: &mut Vec<(String, Decimal)>) {
        // Usually far from the bound, where the cap leaves `delta` as it is.
        let delta = match amount::surely_within_total(self.used, delta) {
            true => delta,
            false => delta.min(amount::MAX_TOTAL - self.used),
        };
        let added = self.add_used_drawing(delta, now_ms, draws);
        debug_assert!(added.is_ok(), "a capped amount stays within the bound");
    }

    /// Adds usage at `now_ms` (after [`Policy::roll`]); usage never goes
    /// below zero. A rolling window puts it in the current bucket, and takes
    /// a negative amount back from the newest buckets first.
    /// Lua twin: `add_used` (lua/src/50_policy.lua).
    pub fn add_used(&mut self, delta: Decimal, now_ms: u64) -> Result<()> {
        self.add_used_drawing(delta, now_ms, &mut Vec::new())
    }

    /// [`Policy::add_used`], recording what grants give: usage beyond the
    /// period's own allowance draws from the live grants (SPEC §7).
    pub fn add_used_drawing(&mut self, delta: Decimal, now_ms: u64, draws: &mut Vec<(String, Decimal)>) -> Result<()> {
        let updated = amount::add_floor_zero(self.used, delta)?;
        if self.extra.is_some() {
            self.draw_for(delta, now_ms, draws);
        }
        if let Some(bucket) = self.window().bucket_ms() {
            let buckets = &mut self.extra_mut().buckets;
            // A clock that stepped back must not put usage in an older
            // bucket than the newest: the buckets stay in order.
            let newest = buckets.back().map_or(0, |(b, _)| *b);
            let current = (now_ms / bucket).max(newest);
            if delta > Decimal::ZERO {
                match buckets.back_mut() {
                    Some((b, amount)) if *b == current => *amount += delta,
                    _ => buckets.push_back((current, delta)),
                }
            } else {
                let mut give_back = -delta;
                while give_back > Decimal::ZERO {
                    let Some((_, amount)) = buckets.back_mut() else { break };
                    let take = give_back.min(*amount);
                    *amount -= take;
                    give_back -= take;
                    if amount.is_zero() {
                        buckets.pop_back();
                    }
                }
            }
            self.used = buckets.iter().map(|(_, a)| *a).sum();
            debug_assert_eq!(self.used, updated, "rolling usage equals the sum of its buckets");
            self.clamp_drawn();
            self.refresh();
        } else {
            self.used = updated;
        }
        Ok(())
    }

    /// `QUOTA.SET` on an existing policy: the old window's resets due are
    /// applied first, then the new configuration; usage is kept. A new
    /// window starts its current period now. Carried-over allowance is
    /// dropped without a calendar `ROLLOVER` and clamped to its cap.
    /// Lua twin: `update_policy` (lua/src/50_policy.lua).
    pub fn update(&mut self, spec: PolicySpec, now_ms: u64) {
        self.roll(now_ms);
        let window_changed = spec.window != self.window();
        if spec.warn != self.warn() {
            // The bits name positions in the old list.
            self.fired = 0;
        }
        let window = spec.window;
        if window_changed {
            self.period_start_ms = match window {
                Window::Calendar { .. } => window.period_of(now_ms).0,
                Window::None | Window::Rolling { .. } => now_ms,
            };
        }
        self.configure(spec);
        // Carried-over allowance only exists under a calendar ROLLOVER, and
        // never beyond its cap.
        let rolled_over = match (self.rollover(), window.is_calendar()) {
            (Some(cap), true) => self.rolled_over().min((cap - self.limit).max(Decimal::ZERO)),
            _ => Decimal::ZERO,
        };
        if rolled_over != self.rolled_over() {
            self.extra_mut().rolled_over = rolled_over;
        }
        if window_changed {
            let used = self.used;
            if let Some(extra) = &mut self.extra {
                extra.buckets.clear();
            }
            if let Some(bucket) = window.bucket_ms()
                && used > Decimal::ZERO
            {
                self.extra_mut().buckets.push_back((now_ms / bucket, used));
            }
            // A rolling window never has drawn above used (usage given back
            // under the old window may have left it so): clamped now, as
            // every roll of the new window would, so reads agree.
            if self.is_rolling() {
                self.clamp_drawn();
            }
        }
        self.refresh();
        self.rearm_low();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: Mode, limit: i64, used: i64, held: i64) -> Policy {
        let spec = PolicySpec {
            metric: "credits".into(),
            limit: limit.into(),
            mode,
            window: Window::None,
            warn: Warn::default(),
            rollover: None,
            service: None,
            model: None,
            low: None,
            inflight: false,
        };
        let mut p = Policy::new("p", spec, 1, 0);
        (p.used, p.held) = (used.into(), held.into());
        p
    }

    #[test]
    fn modes_decide_as_the_spec_table_says() {
        // mode, limit, used, held, requested, passes
        let rows = [
            (Mode::Strict, 100, 50, 20, 30, true),
            (Mode::Strict, 100, 50, 20, 31, false),
            (Mode::Strict, 100, 100, 0, 0, true),
            (Mode::Strict, 100, 120, 0, -5, true),
            (Mode::Block, 100, 99, 50, 500, true),
            (Mode::Block, 100, 100, 0, 1, false),
            (Mode::Open, 100, 500, 0, 1000, true),
        ];
        for (mode, limit, used, held, requested, want) in rows {
            let p = policy(mode, limit, used, held);
            assert_eq!(p.passes(requested.into()), want, "{mode:?} {limit} {used} {held} {requested}");
        }
    }

    #[test]
    fn status_follows_the_thresholds() {
        // mode, limit, used, held, status
        let rows = [
            (Mode::Strict, 100, 0, 0, Status::Healthy),
            (Mode::Strict, 100, 79, 0, Status::Healthy),
            (Mode::Strict, 100, 60, 20, Status::Warning),
            (Mode::Strict, 100, 89, 0, Status::Warning),
            (Mode::Strict, 100, 80, 19, Status::Critical),
            (Mode::Strict, 100, 100, 0, Status::Over),
            (Mode::Block, 100, 50, 45, Status::Healthy),
            (Mode::Strict, 0, 0, 0, Status::Over),
        ];
        for (mode, limit, used, held, want) in rows {
            assert_eq!(policy(mode, limit, used, held).status(), want, "{mode:?} {limit} {used} {held}");
        }
    }

    #[test]
    fn filters_match_service_then_model() {
        // The spec and the policy made from it agree.
        let matches = |spec: &PolicySpec, service: Option<&str>, model: Option<&str>| {
            let by_policy = Policy::new("p", spec.clone(), 1, 0).matches(service, model);
            assert_eq!(by_policy, spec.matches(service, model));
            by_policy
        };
        let mut spec = policy(Mode::Strict, 1, 0, 0).spec();
        assert!(matches(&spec, None, None));
        spec.service = Some("chat".into());
        assert!(!matches(&spec, None, None));
        assert!(matches(&spec, Some("chat"), None));
        assert!(matches(&spec, Some("chat"), Some("gpt")));
        spec.model = Some("gpt".into());
        assert!(!matches(&spec, Some("chat"), Some("other")));
        assert!(matches(&spec, Some("chat"), Some("gpt")));
    }
}
