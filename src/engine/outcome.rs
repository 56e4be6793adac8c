//! What the engine answers: plain data that the command layer renders as a
//! RESP map or JSON. Field names follow SPEC §2.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::policy::{Closed, Mode, Policy, Status};
use super::window::Window;

/// Amounts per metric, in the order the metrics first appeared.
pub type Costs = Vec<(String, Decimal)>;

/// Adds `amount` to `metric` in `costs`, keeping first-appearance order.
pub fn costs_add(costs: &mut Costs, metric: &str, amount: Decimal) {
    match costs.iter_mut().find(|(m, _)| m == metric) {
        Some((_, total)) => *total += amount,
        None => {
            // Exact capacity: every node keeps one of these per metric spent.
            costs.reserve_exact(1);
            costs.push((metric.to_string(), amount));
        }
    }
}

/// The amount of `metric` in `costs` (0 when absent).
pub fn costs_get(costs: &[(String, Decimal)], metric: &str) -> Decimal {
    costs.iter().find(|(m, _)| m == metric).map_or(Decimal::ZERO, |(_, a)| *a)
}

/// One policy examined by a reservation or charge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub path: String,
    pub policy: String,
    pub metric: String,
    pub mode: Mode,
    pub window: Window,
    /// The current period's allowance.
    pub limit: Decimal,
    pub used: Decimal,
    pub held: Decimal,
    pub requested: Decimal,
    /// allowance − used − held, before this request.
    pub remaining: Decimal,
    pub pass: bool,
    pub status: Status,
    /// The current period, for windowed policies.
    pub period: Option<(u64, u64)>,
}

impl Check {
    /// A check of `policy` as it is at `now_ms` (rolled by the caller).
    pub fn new(path: &str, policy: &Policy, requested: Decimal, pass: bool, now_ms: u64) -> Check {
        Check {
            path: super::names::display_path(path).to_string(),
            policy: policy.name().to_string(),
            metric: policy.metric().to_string(),
            mode: policy.mode,
            window: policy.window(),
            limit: policy.allowance(),
            used: policy.used,
            held: policy.held,
            requested,
            remaining: policy.remaining(),
            pass,
            status: policy.status(),
            period: policy.shown_period(now_ms),
        }
    }

    /// `path#policy`, the way denials and `over` lists name a policy.
    pub fn label(&self) -> String {
        format!("{}#{}", self.path, self.policy)
    }
}

/// The answer to `QUOTA.RESERVE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveOutcome {
    pub allowed: bool,
    pub id: Option<String>,
    pub expires_at_ms: u64,
    pub items: usize,
    pub fits: usize,
    pub reserved: usize,
    pub cost: Costs,
    /// What this reservation holds: `cost` when every item is reserved, the
    /// leading `reserved` items of an `UPTO` batch, nothing for `DRYRUN` or
    /// a denial. Not stored with a remembered answer (the stored encoding
    /// predates it): a repeat derives it again from the hold's items.
    #[serde(skip)]
    pub held: Costs,
    pub checks: Vec<Check>,
    pub denied_by: Vec<String>,
    pub message: String,
    /// True when this answer repeats an earlier reserve with the same `ID`.
    pub duplicate: bool,
}

/// The answer to `QUOTA.COMMIT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitOutcome {
    pub id: String,
    pub charged: Costs,
    /// The part of the hold given back (reserved − charged, never negative).
    pub released: Costs,
    /// The part charged beyond the hold (charged − reserved, never negative).
    pub overage: Costs,
    pub duplicate: bool,
    /// True when the hold had expired and the commit charged without it.
    pub expired: bool,
    /// `path#policy` of the charged policies now at or past their allowance.
    pub over: Vec<String>,
}

/// The answer to `QUOTA.RELEASE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseOutcome {
    pub id: String,
    pub released: Costs,
    pub duplicate: bool,
    pub expired: bool,
}

/// The answer to `QUOTA.EXTEND`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendOutcome {
    pub id: String,
    pub expires_at_ms: u64,
}

/// The answer to `QUOTA.CHARGE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeOutcome {
    pub allowed: bool,
    /// What was recorded; empty when `CHECK` refused.
    pub charged: Costs,
    pub checks: Vec<Check>,
    pub denied_by: Vec<String>,
    pub message: String,
    pub over: Vec<String>,
    pub duplicate: bool,
}

/// A policy as `QUOTA.GET` and `QUOTA.TREE` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyView {
    pub name: String,
    pub metric: String,
    pub mode: Mode,
    pub window: Window,
    pub limit: Decimal,
    pub used: Decimal,
    pub held: Decimal,
    pub remaining: Decimal,
    pub status: Status,
    pub warn: Vec<u8>,
    pub rollover: Option<Decimal>,
    pub service: Option<String>,
    pub model: Option<String>,
    pub period: Option<(u64, u64)>,
}

impl PolicyView {
    /// The policy as it is at `now_ms` (rolled by the caller).
    pub fn of(policy: &Policy, now_ms: u64) -> PolicyView {
        PolicyView {
            name: policy.name().to_string(),
            metric: policy.metric().to_string(),
            mode: policy.mode,
            window: policy.window(),
            limit: policy.allowance(),
            used: policy.used,
            held: policy.held,
            remaining: policy.remaining(),
            status: policy.status(),
            warn: policy.warn().to_vec(),
            rollover: policy.rollover(),
            service: policy.service().map(str::to_string),
            model: policy.model().map(str::to_string),
            period: policy.shown_period(now_ms),
        }
    }
}

/// The answer to `QUOTA.RESET`: the period it closed.
pub type ResetOutcome = Closed;

/// A node as `QUOTA.GET` and `QUOTA.TREE` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub path: String,
    pub spent: Costs,
    pub status: Status,
    pub policies: Vec<PolicyView>,
    /// Children, for `QUOTA.TREE` only, sorted by name.
    pub children: Vec<NodeView>,
    /// Children left out because `QUOTA.TREE` reached its `COUNT`.
    pub more: usize,
}

/// `QUOTA.TREE`: the nodes returned and whether `COUNT` cut the tree short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeView {
    pub root: NodeView,
    pub nodes: usize,
    pub truncated: bool,
}

/// A live hold as `QUOTA.HOLDS` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldView {
    pub id: String,
    pub paths: Vec<String>,
    pub expires_at_ms: u64,
    pub items: usize,
    /// Total still held, per metric.
    pub held: Costs,
}
