//! Policies: a named limit on one path, with its mode, window, warning
//! thresholds and optional service/model filter, and the usage counted
//! against it in the current period.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};

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

/// When a policy's usage starts again from zero. Only `None` exists yet;
/// calendar and rolling windows extend this enum (and the persisted
/// encoding) without touching the callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Window {
    /// Never resets: lifetime budgets and gauges.
    None,
}

impl Window {
    pub fn as_str(self) -> &'static str {
        match self {
            Window::None => "none",
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

/// The default warning thresholds, in percent of the allowance.
pub const DEFAULT_WARN: [u8; 2] = [80, 90];
/// Most thresholds one policy may have.
pub const MAX_WARN: usize = 10;

/// What `QUOTA.SET` asks for: the configuration of a policy, without state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySpec {
    pub metric: String,
    pub limit: Decimal,
    pub mode: Mode,
    pub window: Window,
    /// Thresholds in percent, ascending, each 1–100.
    pub warn: Vec<u8>,
    pub service: Option<String>,
    pub model: Option<String>,
}

impl PolicySpec {
    /// Whether a request with this service/model is subject to the policy.
    /// A filtered policy ignores requests that name no service.
    pub fn matches(&self, service: Option<&str>, model: Option<&str>) -> bool {
        match (&self.service, &self.model) {
            (None, _) => true,
            (Some(s), None) => service == Some(s.as_str()),
            (Some(s), Some(m)) => service == Some(s.as_str()) && model == Some(m.as_str()),
        }
    }
}

/// Parses `80,90` into ascending distinct percentages from 1 to 100.
pub fn parse_warn(text: &str) -> Result<Vec<u8>> {
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
    Ok(out)
}

/// A policy and its usage in the current period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub name: String,
    pub spec: PolicySpec,
    /// Tree-unique generation. Holds refer to a policy by node and
    /// generation, so a policy that is removed and set again, or whose metric
    /// changes, never receives releases meant for its predecessor.
    pub generation: u64,
    /// Usage committed or charged in the current period (never below 0).
    pub used: Decimal,
    /// Sum of the live holds on this policy.
    pub held: Decimal,
}

impl Policy {
    /// The current period's allowance. With window `none` it is the limit;
    /// rollover and grants add to it once windows exist.
    pub fn allowance(&self) -> Decimal {
        self.spec.limit
    }

    /// The usage that warnings and status compare with the allowance:
    /// strict policies count what is held, the others only what is used.
    pub fn level(&self) -> Decimal {
        match self.spec.mode {
            Mode::Strict => self.used + self.held,
            Mode::Block | Mode::Open => self.used,
        }
    }

    /// allowance − used − held: what a strict reservation can still take.
    pub fn remaining(&self) -> Decimal {
        self.allowance() - self.used - self.held
    }

    /// Whether a request for `requested` passes this policy now. A request
    /// that takes nothing (or gives back) always passes.
    pub fn passes(&self, requested: Decimal) -> bool {
        if requested <= Decimal::ZERO {
            return true;
        }
        match self.spec.mode {
            Mode::Strict => self.used + self.held + requested <= self.allowance(),
            Mode::Block => self.used < self.allowance(),
            Mode::Open => true,
        }
    }

    /// Whether committed usage has reached the allowance.
    pub fn is_over(&self) -> bool {
        self.used >= self.allowance()
    }

    pub fn status(&self) -> Status {
        if self.is_over() {
            return Status::Over;
        }
        let allowance = self.allowance();
        let level = self.level();
        // level ≥ pct% of allowance, compared without division.
        let crossed =
            |pct: u8| match (level.checked_mul(Decimal::ONE_HUNDRED), allowance.checked_mul(Decimal::from(pct))) {
                (Some(l), Some(a)) => l >= a,
                _ => true,
            };
        match (self.spec.warn.first(), self.spec.warn.last()) {
            (Some(&_), Some(&last)) if crossed(last) => Status::Critical,
            (Some(&first), Some(&_)) if crossed(first) => Status::Warning,
            _ => Status::Healthy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: Mode, limit: i64, used: i64, held: i64) -> Policy {
        Policy {
            name: "p".into(),
            spec: PolicySpec {
                metric: "credits".into(),
                limit: limit.into(),
                mode,
                window: Window::None,
                warn: DEFAULT_WARN.to_vec(),
                service: None,
                model: None,
            },
            generation: 1,
            used: used.into(),
            held: held.into(),
        }
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
    fn warn_lists_parse_sorted_and_bounded() {
        assert_eq!(parse_warn("90,80").unwrap(), vec![80, 90]);
        assert_eq!(parse_warn("100").unwrap(), vec![100]);
        for bad in ["", "0", "101", "80,", "a", "80;90", "-1", "1000"] {
            assert!(parse_warn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_match_service_then_model() {
        let mut p = policy(Mode::Strict, 1, 0, 0);
        assert!(p.spec.matches(None, None));
        p.spec.service = Some("chat".into());
        assert!(!p.spec.matches(None, None));
        assert!(p.spec.matches(Some("chat"), None));
        assert!(p.spec.matches(Some("chat"), Some("gpt")));
        p.spec.model = Some("gpt".into());
        assert!(!p.spec.matches(Some("chat"), Some("other")));
        assert!(p.spec.matches(Some("chat"), Some("gpt")));
    }
}
