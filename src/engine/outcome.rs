//! What the engine answers: plain data that the command layer renders as a
//! RESP map or JSON. Field names follow SPEC §2.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::access::{AccessCheck, AccessView};
use super::policy::{Closed, Mode, Policy, Status};
use super::window::Window;

/// Amounts per metric, in the order the metrics first appeared.
pub type Costs = Vec<(String, Decimal)>;

/// Most metrics in one item (`COST` group, `USAGE` item, or the actual
/// cost of a commit). A `USAGE` item charges its price's metric and up to
/// 64 usage quantities, so this leaves room.
pub const MAX_ITEM_METRICS: usize = 128;
/// Most distinct metrics in one request, over all its items.
pub const MAX_REQUEST_METRICS: usize = 256;

/// Lists up to this long are searched by a scan; longer ones get an index.
const SCAN_LEN: usize = 16;

/// Whether two metric names are the same. Every search by metric goes
/// through here, so that tests can count the work a request does.
#[inline]
fn same(a: &str, b: &str) -> bool {
    #[cfg(test)]
    COMPARISONS.with(|c| c.set(c.get() + 1));
    a == b
}

#[cfg(test)]
thread_local! {
    /// Metric names compared on this thread (tests only).
    pub static COMPARISONS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Adds `amount` to `metric` in `costs`, keeping first-appearance order.
/// A scan: for adding many metrics, use [`Totals`].
pub fn costs_add(costs: &mut Costs, metric: &str, amount: Decimal) {
    match costs.iter_mut().find(|(m, _)| same(m, metric)) {
        Some((_, total)) => *total += amount,
        None => {
            // Exact capacity: every node keeps one of these per metric spent.
            costs.reserve_exact(1);
            costs.push((metric.to_string(), amount));
        }
    }
}

/// The amount of `metric` in `costs` (0 when absent). A scan: for finding
/// many metrics in a long list, use [`Totals`].
pub fn costs_get(costs: &[(String, Decimal)], metric: &str) -> Decimal {
    costs.iter().find(|(m, _)| same(m, metric)).map_or(Decimal::ZERO, |(_, a)| *a)
}

/// The positions of a long costs list's metrics, hashed on the metric
/// stored at each position.
struct Index {
    table: hashbrown::HashTable<usize>,
    hasher: std::hash::RandomState,
}

impl Index {
    fn of(costs: &[(String, Decimal)]) -> Index {
        let mut index = Index { table: hashbrown::HashTable::with_capacity(costs.len()), hasher: Default::default() };
        for i in 0..costs.len() {
            index.insert(costs, i);
        }
        index
    }

    fn hash(&self, metric: &str) -> u64 {
        std::hash::BuildHasher::hash_one(&self.hasher, metric)
    }

    /// Indexes position `i` of `costs`.
    fn insert(&mut self, costs: &[(String, Decimal)], i: usize) {
        let hasher = &self.hasher;
        let hash = std::hash::BuildHasher::hash_one(hasher, costs[i].0.as_str());
        self.table.insert_unique(hash, i, |&j| std::hash::BuildHasher::hash_one(hasher, costs[j].0.as_str()));
    }

    fn find(&self, costs: &[(String, Decimal)], metric: &str) -> Option<usize> {
        self.table.find(self.hash(metric), |&i| same(&costs[i].0, metric)).copied()
    }
}

/// Where `metric` is in `costs`, through `index` when there is one.
#[inline]
fn position(costs: &[(String, Decimal)], index: Option<&Index>, metric: &str) -> Option<usize> {
    match index {
        Some(index) => index.find(costs, metric),
        None => costs.iter().position(|(m, _)| same(m, metric)),
    }
}

/// An index pays for itself when a list longer than a short scan is
/// searched more than a few times.
fn worth_indexing(len: usize, lookups: usize) -> bool {
    len > SCAN_LEN && lookups > SCAN_LEN
}

/// A borrowed costs list searched by metric many times: indexed when it is
/// long and searched often, scanned otherwise. A request names up to
/// [`MAX_REQUEST_METRICS`] metrics, and a scan per metric looked up would
/// make its work grow with their square.
pub struct Lookup<'a> {
    costs: &'a [(String, Decimal)],
    index: Option<Index>,
}

impl<'a> Lookup<'a> {
    /// `costs` (whose metrics are distinct), to be searched `lookups` times.
    pub fn new(costs: &'a [(String, Decimal)], lookups: usize) -> Lookup<'a> {
        Lookup { costs, index: worth_indexing(costs.len(), lookups).then(|| Index::of(costs)) }
    }

    /// The amount of `metric` (0 when absent).
    #[inline]
    pub fn get(&self, metric: &str) -> Decimal {
        position(self.costs, self.index.as_ref(), metric).map_or(Decimal::ZERO, |i| self.costs[i].1)
    }

    /// Whether `metric` is in the list.
    #[inline]
    pub fn contains(&self, metric: &str) -> bool {
        position(self.costs, self.index.as_ref(), metric).is_some()
    }

    /// Where `metric` is in the list.
    #[inline]
    pub fn position(&self, metric: &str) -> Option<usize> {
        position(self.costs, self.index.as_ref(), metric)
    }
}

/// A costs list being built or updated, that finds a metric in constant
/// time once it is long (see [`Lookup`]).
#[derive(Default)]
pub struct Totals {
    costs: Costs,
    /// Built once `costs` is longer than [`SCAN_LEN`] (or, for [`Totals::of`],
    /// when it is long and will be searched often).
    index: Option<Index>,
}

impl Totals {
    pub fn new() -> Totals {
        Totals::default()
    }

    /// `costs` (whose metrics are distinct), to be searched or added to
    /// `lookups` times.
    pub fn of(costs: Costs, lookups: usize) -> Totals {
        let index = worth_indexing(costs.len(), lookups).then(|| Index::of(&costs));
        Totals { costs, index }
    }

    /// Where `metric` is in the list.
    pub fn position(&self, metric: &str) -> Option<usize> {
        position(&self.costs, self.index.as_ref(), metric)
    }

    /// The amount of `metric` (0 when absent).
    pub fn get(&self, metric: &str) -> Decimal {
        self.position(metric).map_or(Decimal::ZERO, |i| self.costs[i].1)
    }

    /// Sets `metric` to `amount`, appending it when it is new.
    pub fn set(&mut self, metric: &str, amount: Decimal) {
        match self.position(metric) {
            Some(i) => self.costs[i].1 = amount,
            None => self.push(metric.to_string(), amount),
        }
    }

    /// Adds `amount` to `metric`, appending it when it is new.
    pub fn add(&mut self, metric: &str, amount: Decimal) {
        match self.position(metric) {
            Some(i) => self.costs[i].1 += amount,
            None => self.push(metric.to_string(), amount),
        }
    }

    /// Appends `metric` unless it is there already (then gives it back).
    pub fn insert_new(&mut self, metric: String, amount: Decimal) -> std::result::Result<(), String> {
        if self.position(&metric).is_some() {
            return Err(metric);
        }
        self.push(metric, amount);
        Ok(())
    }

    fn push(&mut self, metric: String, amount: Decimal) {
        self.costs.push((metric, amount));
        match &mut self.index {
            Some(index) => index.insert(&self.costs, self.costs.len() - 1),
            None if self.costs.len() > SCAN_LEN => self.index = Some(Index::of(&self.costs)),
            None => {}
        }
    }

    pub fn len(&self) -> usize {
        self.costs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.costs.is_empty()
    }

    pub fn into_costs(self) -> Costs {
        self.costs
    }
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
    /// What this reservation holds, read through [`ReserveOutcome::held`]:
    /// `None` when it is `cost` (every item reserved, the usual answer,
    /// kept without a copy), else the leading `reserved` items of an `UPTO`
    /// batch, or nothing for `DRYRUN` or a denial. Not stored with a
    /// remembered answer (the stored encoding predates it): a repeat
    /// derives it again from the hold's items.
    #[serde(skip)]
    pub held: Option<Costs>,
    pub checks: Vec<Check>,
    pub denied_by: Vec<String>,
    pub message: String,
    /// True when this answer repeats an earlier reserve with the same `ID`.
    pub duplicate: bool,
    /// The access checks of a reservation refused by access rules (shown
    /// before `checks`, which are then empty). Never stored: a refused
    /// reservation is not remembered.
    #[serde(skip)]
    pub access: Vec<AccessCheck>,
}

impl ReserveOutcome {
    /// What this reservation holds, per metric.
    pub fn held(&self) -> &Costs {
        self.held.as_ref().unwrap_or(&self.cost)
    }
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
    /// What grants gave (stored apart from the version 1 shape).
    #[serde(skip)]
    pub drawn: Vec<Draw>,
}

/// One draw from a grant: the policy's display path and name, the grant
/// and the amount it gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Draw {
    pub path: String,
    pub policy: String,
    pub grant: String,
    pub amount: Decimal,
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
    /// What grants gave (stored apart from the version 1 shape).
    #[serde(skip)]
    pub drawn: Vec<Draw>,
    /// The access checks of the nodes that refuse the charge, shown before
    /// `checks` (stored apart from the version 1 shape).
    #[serde(skip)]
    pub access: Vec<AccessCheck>,
}

/// A policy as `QUOTA.GET` and `QUOTA.TREE` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyView {
    pub name: String,
    pub metric: String,
    pub mode: Mode,
    pub window: Window,
    /// The current allowance (limit + rolled over + drawn + granted).
    pub limit: Decimal,
    /// The `LIMIT` the policy was set with (a plan policy: the plan's),
    /// when it differs from the allowance (`base_limit`).
    pub base_limit: Option<Decimal>,
    pub used: Decimal,
    pub held: Decimal,
    pub remaining: Decimal,
    pub status: Status,
    pub warn: Vec<u8>,
    pub rollover: Option<Decimal>,
    pub service: Option<String>,
    pub model: Option<String>,
    pub period: Option<(u64, u64)>,
    /// Whether the policy comes from the tree's plan (`source` "plan").
    pub from_plan: bool,
    pub low: Option<Decimal>,
    /// Σ remaining of live grants, when there is at least one.
    pub granted: Option<Decimal>,
    /// An `INFLIGHT` policy (SPEC §8).
    pub inflight: bool,
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
            base_limit: (policy.allowance() != policy.limit).then_some(policy.limit),
            used: policy.used,
            held: policy.held,
            remaining: policy.remaining(),
            status: policy.status(),
            warn: policy.warn().to_vec(),
            rollover: policy.rollover(),
            service: policy.service().map(str::to_string),
            model: policy.model().map(str::to_string),
            period: policy.shown_period(now_ms),
            from_plan: policy.from_plan,
            low: policy.low(),
            granted: (policy.granted() > Decimal::ZERO).then(|| policy.granted()),
            inflight: policy.inflight,
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
    /// The node's own access rules, when it has any.
    pub access: Option<AccessView>,
    /// The node's note, tags and own archived flag, when it has any.
    pub labels: Option<crate::labels::Labels>,
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
    /// The reservation's `META` pairs, when it has any.
    pub meta: Option<crate::meta::Meta>,
}
