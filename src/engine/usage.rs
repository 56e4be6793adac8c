//! Usage over time (SPEC §9): what each node spent, hour by hour and day
//! by day, per *series*.
//!
//! A node's *usage* is a list of *buckets*: the hour (`floor(now/3600000)`)
//! and the day (`floor(now/86400000)`, UTC) in which its `spent` changed,
//! each with the change per metric and per series. Every change of a
//! node's `spent` (a commit, a late commit, a charge, negative and
//! `disallowed` ones included) adds the very delta `spent` took (clamped as
//! `spent` is, never more) to the node's current hour and day buckets, so
//! the sum of a node's buckets since it was created is its `spent` change
//! over that time. Reserve, release, expiry and grants record nothing.
//!
//! A *series* is the request's (service, model-or-none); a request without
//! `SERVICE` is the series `(no service)`. A node names at most
//! `usage_series` series in *slots*; `(no service)` and `(other series)`
//! take none. A new series takes a slot while fewer than `usage_series` are
//! in use, else its spend goes to `(other series)`. A slot whose last write
//! is older than the retention horizon is free again (its buckets are gone).
//!
//! *Retention*: hourly buckets starting at or after
//! `hour_floor(now) - (usage_hours - 1) h`, daily ones at or after
//! `day_floor(now) - (usage_days - 1) d` (0 turns a granularity off).
//! Writes delete older buckets; reads filter by retention at their `now`,
//! so a reply is the same whether or not old buckets were trimmed.
//!
//! Storage: the node's metric and series names are interned in small
//! tables, and each (bucket, series, metric) amount is one 24-byte *cell*
//! in a vector sorted by (bucket, series, metric), one vector per
//! granularity: a write updates or inserts near the end. A node that never
//! spent has no usage at all (`Node::usage` is `None`).
//!
//! Rules both backends apply exactly (so replies match):
//! - a write whose every delta is 0 records nothing: no slot, no trim;
//! - a found slot's last write becomes max(last, now); a new series first
//!   frees every slot whose last write is before [`usage_horizon`], then
//!   takes a slot if fewer than `usage_series` are in use (lowest free
//!   index first), else goes to `(other series)`; lowering `usage_series`
//!   keeps the slots in use;
//! - a cell's amount stays within ±10^18 ([`usage_add`]);
//! - reads list the span of [`usage_span`] with the reading server's
//!   settings at its `now` (a replica with other settings reads its own
//!   retention of the same buckets); `SINCE`/`UNTIL` are 0 to 2^53;
//! - errors: arguments left to right (keyword, value, "given twice"),
//!   then `MODEL needs SERVICE`, then `SINCE is after UNTIL`, then the
//!   path (`NOTFOUND`).
//!
//! Lua twin: lua/src/68_usage.lua (the `{tag}quota:<key>:usage` hash).

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::amount::{self, MAX_TOTAL};
use crate::error::{Error, Result};
use crate::names;
use crate::outcome::Costs;
use crate::paths::{Node, NodeId};
use crate::tree::{Limits, Tree};
use crate::window::{DAY_MS, HOUR_MS};

/// The series of requests without `SERVICE`.
pub const NO_SERVICE: &str = "(no service)";
/// Where the spend of series beyond `usage_series` goes.
pub const OTHER_SERIES: &str = "(other series)";

/// The series index of `(no service)` in a cell.
const NO_SERVICE_SLOT: u16 = u16::MAX;
/// The series index of `(other series)` in a cell.
const OTHER_SLOT: u16 = u16::MAX - 1;
/// Most slots a node's series table may have (`usage_series` ≤ 256).
pub const MAX_SERIES: usize = 256;

/// What shapes usage: the settings `usage_hours`, `usage_days`,
/// `usage_series` (carried by `Limits`, and by the replication stamp).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageSettings {
    pub hours: u32,
    pub days: u32,
    pub series: u32,
}

impl UsageSettings {
    /// Whether anything is recorded at all.
    pub fn on(&self) -> bool {
        self.hours > 0 || self.days > 0
    }
}

/// A granularity of buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Hour,
    Day,
}

impl By {
    pub fn ms(self) -> u64 {
        match self {
            By::Hour => HOUR_MS as u64,
            By::Day => DAY_MS as u64,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            By::Hour => "hour",
            By::Day => "day",
        }
    }

    /// How many buckets of this granularity are kept.
    fn kept(self, settings: &UsageSettings) -> u32 {
        match self {
            By::Hour => settings.hours,
            By::Day => settings.days,
        }
    }
}

/// The start (ms) of the oldest bucket of granularity `by` kept at `now_ms`:
/// `floor(now) - (kept - 1) × size`, never below 0; with `kept` 0 the start
/// of the next bucket (nothing is kept).
/// Lua twin: `usage_retention_start` (lua/src/68_usage.lua).
pub fn usage_retention_start(by: By, now_ms: u64, settings: &UsageSettings) -> u64 {
    let size = by.ms();
    let floor = now_ms / size * size;
    match by.kept(settings) {
        0 => floor + size,
        kept => floor.saturating_sub(u64::from(kept - 1) * size),
    }
}

/// The retention horizon for freeing series slots: the older of the two
/// retention starts (of the granularities that are on). A slot whose last
/// write is before it has no bucket left.
/// Lua twin: `usage_horizon` (lua/src/68_usage.lua).
pub fn usage_horizon(now_ms: u64, settings: &UsageSettings) -> u64 {
    let hours = (settings.hours > 0).then(|| usage_retention_start(By::Hour, now_ms, settings));
    let days = (settings.days > 0).then(|| usage_retention_start(By::Day, now_ms, settings));
    match (hours, days) {
        (Some(h), Some(d)) => h.min(d),
        (Some(h), None) => h,
        (None, Some(d)) => d,
        (None, None) => u64::MAX,
    }
}

/// A series slot: the service, the model (none for a series without),
/// and when it was last written (ms; the newest write when the clock went
/// back).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Series {
    pub service: Box<str>,
    pub model: Option<Box<str>>,
    pub last_ms: u64,
}

/// One amount: bucket (hour or day number since the epoch), series
/// (slot index, or `NO_SERVICE_SLOT`/`OTHER_SLOT`), metric (index in the
/// node's metric table). 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub bucket: u32,
    pub series: u16,
    pub metric: u16,
    pub amount: Decimal,
}

impl Cell {
    fn key(&self) -> (u32, u16, u16) {
        (self.bucket, self.series, self.metric)
    }
}

/// A node's usage (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// The metric names the cells index.
    pub metrics: Vec<Box<str>>,
    /// The series slots; a free slot is `None`.
    pub series: Vec<Option<Series>>,
    /// Hourly cells, sorted by (bucket, series, metric).
    pub hours: Vec<Cell>,
    /// Daily cells, likewise.
    pub days: Vec<Cell>,
}

/// Adds a delta to a cell, which stays within ±10^18 (a series' amount in
/// a bucket can pass `spent`'s bound only through alternating charges of
/// other series; the bound keeps every stored amount loadable).
/// Lua twin: `usage_add` (lua/src/68_usage.lua).
pub fn usage_add(cell: Decimal, delta: Decimal) -> Decimal {
    // Usually both are small and positive at one scale: exact, in range.
    if amount::surely_within_total(cell, delta) {
        return amount::plus(cell, delta);
    }
    match cell.checked_add(delta) {
        Some(sum) if sum.abs() <= MAX_TOTAL => sum,
        Some(sum) if sum.is_sign_negative() => -MAX_TOTAL,
        _ if delta.is_sign_negative() => -MAX_TOTAL,
        _ => MAX_TOTAL,
    }
}

impl Usage {
    /// Heap bytes beyond the `Usage` itself, for `MEMORY USAGE`.
    pub fn extra_bytes(&self) -> usize {
        use std::mem::size_of;
        let names = self.metrics.iter().map(|m| m.len().next_multiple_of(8) + size_of::<Box<str>>()).sum::<usize>();
        let series = self.series.capacity() * size_of::<Option<Series>>()
            + self
                .series
                .iter()
                .flatten()
                .map(|s| {
                    s.service.len().next_multiple_of(8) + s.model.as_ref().map_or(0, |m| m.len().next_multiple_of(8))
                })
                .sum::<usize>();
        names + series + (self.hours.capacity() + self.days.capacity()) * size_of::<Cell>()
    }

    /// Deletes the buckets retention no longer keeps at `now_ms` (the
    /// oldest are first: one search, and a move only when some go).
    fn trim(&mut self, now_ms: u64, settings: &UsageSettings) {
        for by in [By::Hour, By::Day] {
            let start = usage_retention_start(by, now_ms, settings) / by.ms();
            let cells = match by {
                By::Hour => &mut self.hours,
                By::Day => &mut self.days,
            };
            if cells.first().is_some_and(|c| u64::from(c.bucket) < start) {
                let old = cells.partition_point(|c| u64::from(c.bucket) < start);
                cells.drain(..old);
                // Room left by the dropped buckets goes back (a node's
                // cells are its usage's memory).
                if cells.capacity() > cells.len() + cells.len() / 4 + 8 {
                    cells.shrink_to(cells.len() + cells.len() / 8 + 4);
                }
            }
        }
    }

    /// The series index of a write of (service, model) at `now_ms`: its
    /// slot (updating its last write), a new slot (after freeing those
    /// past the horizon), or `(other series)` when every slot is in use.
    /// Lua twin: `usage_series_slot` (lua/src/68_usage.lua).
    fn series_slot(
        &mut self,
        service: Option<&str>,
        model: Option<&str>,
        now_ms: u64,
        settings: &UsageSettings,
    ) -> u16 {
        let Some(service) = service else { return NO_SERVICE_SLOT };
        let found = self
            .series
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| &*s.service == service && s.model.as_deref() == model));
        if let Some(i) = found {
            if let Some(s) = &mut self.series[i] {
                s.last_ms = s.last_ms.max(now_ms);
            }
            return i as u16;
        }
        let horizon = usage_horizon(now_ms, settings);
        for slot in &mut self.series {
            if slot.as_ref().is_some_and(|s| s.last_ms < horizon) {
                *slot = None;
            }
        }
        let used = self.series.iter().flatten().count();
        if used >= (settings.series as usize).min(MAX_SERIES) {
            return OTHER_SLOT;
        }
        let series = Series { service: service.into(), model: model.map(Into::into), last_ms: now_ms };
        match self.series.iter().position(Option::is_none) {
            Some(i) => {
                self.series[i] = Some(series);
                i as u16
            }
            None => {
                self.series.push(Some(series));
                (self.series.len() - 1) as u16
            }
        }
    }

    /// The index of `metric` in the metric table, added when new (`None`
    /// in the impossible case of 65,534 metrics on one node).
    fn metric_index(&mut self, metric: &str) -> Option<u16> {
        if let Some(i) = self.metrics.iter().position(|m| &**m == metric) {
            return Some(i as u16);
        }
        if self.metrics.len() >= usize::from(OTHER_SLOT) {
            return None;
        }
        self.metrics.push(metric.into());
        Some((self.metrics.len() - 1) as u16)
    }

    fn add_cell(cells: &mut Vec<Cell>, bucket: u32, series: u16, metric: u16, delta: Decimal) {
        let key = (bucket, series, metric);
        // Usually the cell is one of the newest bucket's, at the end.
        if let Some(cell) = cells.iter_mut().rev().take(4).find(|c| c.key() == key) {
            cell.amount = usage_add(cell.amount, delta);
            return;
        }
        match cells.binary_search_by(|c| c.key().cmp(&key)) {
            Ok(i) => cells[i].amount = usage_add(cells[i].amount, delta),
            Err(i) => {
                // Grown by an eighth, not doubled: at most 12.5% room
                // unused, still amortized.
                if cells.len() == cells.capacity() {
                    cells.reserve_exact(cells.len() / 8 + 4);
                }
                cells.insert(i, Cell { bucket, series, metric, amount: usage_add(Decimal::ZERO, delta) })
            }
        }
    }
}

/// Records a node's `spent` changes of one write: `deltas` are (metric,
/// change) as `spent` took them; zero changes record nothing, and a write
/// without any takes no slot and trims nothing. With both granularities
/// off, the node keeps no usage.
/// Lua twin: `usage_record` (lua/src/68_usage.lua).
pub(crate) fn usage_record(
    node: &mut Node,
    service: Option<&str>,
    model: Option<&str>,
    deltas: &[(&str, Decimal)],
    now_ms: u64,
    settings: &UsageSettings,
) {
    if !settings.on() {
        node.usage = None;
        return;
    }
    if deltas.iter().all(|(_, d)| d.is_zero()) {
        return;
    }
    let usage = node.usage.get_or_insert_with(Box::default);
    usage.trim(now_ms, settings);
    let slot = usage.series_slot(service, model, now_ms, settings);
    let hour = u32::try_from(now_ms / HOUR_MS as u64).unwrap_or(u32::MAX);
    let day = u32::try_from(now_ms / DAY_MS as u64).unwrap_or(u32::MAX);
    for &(metric, delta) in deltas {
        if delta.is_zero() {
            continue;
        }
        let Some(m) = usage.metric_index(metric) else { continue };
        if settings.hours > 0 {
            Usage::add_cell(&mut usage.hours, hour, slot, m, delta);
        }
        if settings.days > 0 {
            Usage::add_cell(&mut usage.days, day, slot, m, delta);
        }
    }
}

// ----- reading: QUOTA.USAGE ------------------------------------------------

/// How `QUOTA.USAGE` groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    Service,
    Model,
    Child,
    Tag,
}

/// What `QUOTA.USAGE` asks, its arguments parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    pub by: By,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub metric: Option<String>,
    pub service: Option<String>,
    pub model: Option<String>,
    pub group: Option<Group>,
}

impl Default for UsageQuery {
    fn default() -> Self {
        UsageQuery {
            by: By::Day,
            since_ms: None,
            until_ms: None,
            metric: None,
            service: None,
            model: None,
            group: None,
        }
    }
}

/// What `QUOTA.USAGE` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageReport {
    /// Display path.
    pub path: String,
    pub by: By,
    /// Start of the first bucket listed (of the span asked, within retention).
    pub since_ms: u64,
    /// The `UNTIL` used.
    pub until_ms: u64,
    /// (start, spent) of every bucket of the span, oldest first.
    pub buckets: Vec<(u64, Costs)>,
    pub total: Costs,
    /// With `GROUP`: its groups, largest first.
    pub groups: Option<Vec<UsageGroup>>,
}

/// What tells groups apart: (name, service, model) (see `UsageGroup`).
type GroupKey = (String, Option<String>, Option<String>);

/// A group of `QUOTA.USAGE … GROUP`. `GROUP service` and `GROUP model`
/// keep one group per service, or per (service, model), and name them in
/// `service` and `model` as names may print alike (`a` + `b/c` and `a/b` +
/// `c` are both `a/b/c`); `(no service)`, `(other series)` and the groups
/// of `GROUP child` and `GROUP tag` have neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageGroup {
    pub name: String,
    pub service: Option<String>,
    /// Of `GROUP model` only, when the series has a model.
    pub model: Option<String>,
    pub spent: Costs,
}

/// The buckets a query lists: bucket numbers `first..=last` (empty when
/// `first > last`), and the reply's `since` and `until`.
/// Lua twin: `usage_span` (lua/src/68_usage.lua).
pub fn usage_span(query: &UsageQuery, now_ms: u64, settings: &UsageSettings) -> Result<(u64, u64, u64, u64)> {
    let size = query.by.ms();
    let until = query.until_ms.unwrap_or(now_ms);
    if let Some(since) = query.since_ms
        && since > until
    {
        return Err(Error::syntax("SINCE is after UNTIL"));
    }
    let retention = usage_retention_start(query.by, now_ms, settings);
    let since = query.since_ms.map_or(retention, |s| (s / size * size).max(retention));
    let first = since / size;
    let last = until.min(now_ms) / size;
    Ok((first, last, since, until))
}

/// Whether a series (a cell's index in `usage`) passes the query's
/// `SERVICE`/`MODEL` filter.
/// Lua twin: `usage_series_matches` (lua/src/68_usage.lua).
fn usage_series_matches(usage: &Usage, series: u16, query: &UsageQuery) -> bool {
    let Some(service) = &query.service else { return true };
    let Some(Some(s)) = usage.series.get(usize::from(series)) else { return false };
    &*s.service == service && query.model.as_ref().is_none_or(|m| s.model.as_deref() == Some(m.as_str()))
}

/// The group of a series when grouping by `group` (service or model):
/// (name, service, model). Series that differ in service or model are
/// different groups even when their names print alike.
/// Lua twin: `usage_group_key` (lua/src/68_usage.lua).
fn usage_group_key(usage: &Usage, series: u16, group: Group) -> GroupKey {
    let special = |name: &str| (name.to_string(), None, None);
    match series {
        NO_SERVICE_SLOT => special(NO_SERVICE),
        OTHER_SLOT => special(OTHER_SERIES),
        _ => match usage.series.get(usize::from(series)) {
            Some(Some(s)) => match (&s.model, group) {
                (Some(m), Group::Model) => {
                    (format!("{}/{m}", s.service), Some(s.service.to_string()), Some(m.to_string()))
                }
                _ => (s.service.to_string(), Some(s.service.to_string()), None),
            },
            // A cell of a free slot is never kept (trimmed before freeing).
            _ => special(OTHER_SERIES),
        },
    }
}

/// The cells of `usage` a query sees in buckets `first..=last`.
fn cells_in<'a>(usage: &'a Usage, query: &'a UsageQuery, first: u64, last: u64) -> impl Iterator<Item = &'a Cell> + 'a {
    let cells = match query.by {
        By::Hour => &usage.hours,
        By::Day => &usage.days,
    };
    let from = cells.partition_point(|c| u64::from(c.bucket) < first);
    cells[from..]
        .iter()
        .take_while(move |c| u64::from(c.bucket) <= last)
        .filter(move |c| usage_series_matches(usage, c.series, query))
        .filter(move |c| {
            query.metric.as_ref().is_none_or(|m| usage.metrics.get(usize::from(c.metric)).is_some_and(|n| **n == **m))
        })
}

/// Sums per metric name, then as a reply lists them: in name order,
/// zeros left out.
#[derive(Default)]
struct Sums(BTreeMap<String, Decimal>);

impl Sums {
    fn add(&mut self, metric: &str, amount: Decimal) {
        match self.0.get_mut(metric) {
            Some(sum) => *sum = sum.checked_add(amount).unwrap_or(*sum),
            None => {
                self.0.insert(metric.to_string(), amount);
            }
        }
    }

    fn add_cell(&mut self, usage: &Usage, cell: &Cell) {
        if let Some(metric) = usage.metrics.get(usize::from(cell.metric)) {
            self.add(metric, cell.amount);
        }
    }

    fn merge(&mut self, other: Sums) {
        for (metric, amount) in other.0 {
            self.add(&metric, amount);
        }
    }

    fn into_costs(self) -> Costs {
        self.0.into_iter().filter(|(_, a)| !a.is_zero()).collect()
    }
}

/// A node's usage under a query, summed over the listed buckets.
fn node_sums(node: &Node, query: &UsageQuery, first: u64, last: u64, sums: &mut Sums) {
    if let Some(usage) = node.usage.as_deref() {
        for cell in cells_in(usage, query, first, last) {
            sums.add_cell(usage, cell);
        }
    }
}

/// The tags of a node (sorted; see `labels`).
fn node_tags(node: &Node) -> &[Box<str>] {
    node.labels.as_deref().map_or(&[], |l| &l.tags)
}

/// Orders groups largest first: by `metric`'s amount when given, else by
/// the sum of the group's amounts; ties by name, then service, then model,
/// bytewise (none first).
/// Lua twin: `usage_sort_groups` (lua/src/68_usage.lua).
fn usage_sort_groups(groups: &mut [UsageGroup], metric: Option<&str>) {
    let weight = |spent: &Costs| -> Decimal {
        spent
            .iter()
            .filter(|(m, _)| metric.is_none_or(|want| m == want))
            .fold(Decimal::ZERO, |sum, (_, a)| sum.checked_add(*a).unwrap_or(sum))
    };
    groups.sort_by(|a, b| {
        amount::cmp(weight(&b.spent), weight(&a.spent))
            .then_with(|| a.name.as_bytes().cmp(b.name.as_bytes()))
            .then_with(|| a.service.cmp(&b.service))
            .then_with(|| a.model.cmp(&b.model))
    });
}

impl Tree {
    /// `QUOTA.USAGE`: a node's buckets in a span, their total and, with
    /// `GROUP`, its groups (see the module documentation). Reads only.
    /// Lua twin: `usage_reply` (lua/src/68_usage.lua).
    pub fn usage(&self, path: &str, query: &UsageQuery, now_ms: u64, limits: &Limits) -> Result<UsageReport> {
        let settings = limits.usage();
        let (first, last, since_ms, until_ms) = usage_span(query, now_ms, &settings)?;
        let id = self.find(path).ok_or_else(|| Error::NotFound(format!("path '{}'", names::display_path(path))))?;
        let node = self.node(id).ok_or_else(|| Error::State("tree is inconsistent".into()))?;
        let size = query.by.ms();
        let mut per_bucket: BTreeMap<u64, Sums> = BTreeMap::new();
        let mut total = Sums::default();
        // GROUP service / model: per series slot, then per group.
        let mut by_slot: BTreeMap<u16, Sums> = BTreeMap::new();
        if let Some(usage) = node.usage.as_deref() {
            for cell in cells_in(usage, query, first, last) {
                per_bucket.entry(u64::from(cell.bucket)).or_default().add_cell(usage, cell);
                total.add_cell(usage, cell);
                if matches!(query.group, Some(Group::Service | Group::Model)) {
                    by_slot.entry(cell.series).or_default().add_cell(usage, cell);
                }
            }
        }
        let buckets = (first..=last)
            .map(|b| (b * size, per_bucket.remove(&b).map(Sums::into_costs).unwrap_or_default()))
            .collect();
        let groups = query.group.map(|group| {
            let sums: Vec<(GroupKey, Sums)> = match (group, node.usage.as_deref()) {
                (Group::Service | Group::Model, Some(usage)) => {
                    let mut by_group: BTreeMap<GroupKey, Sums> = BTreeMap::new();
                    for (series, sums) in std::mem::take(&mut by_slot) {
                        by_group.entry(usage_group_key(usage, series, group)).or_default().merge(sums);
                    }
                    by_group.into_iter().collect()
                }
                (Group::Service | Group::Model, None) => Vec::new(),
                (Group::Child, _) => self.child_sums(id, query, first, last),
                (Group::Tag, _) => self.tag_sums(id, query, first, last),
            };
            let mut groups: Vec<UsageGroup> = sums
                .into_iter()
                .map(|((name, service, model), sums)| UsageGroup { name, service, model, spent: sums.into_costs() })
                .filter(|g| !g.spent.is_empty())
                .collect();
            usage_sort_groups(&mut groups, query.metric.as_deref());
            groups
        });
        Ok(UsageReport {
            path: names::display_path(path).to_string(),
            by: query.by,
            since_ms,
            until_ms,
            buckets,
            total: total.into_costs(),
            groups,
        })
    }

    /// `GROUP child`: each direct child's own usage.
    fn child_sums(&self, id: NodeId, query: &UsageQuery, first: u64, last: u64) -> Vec<(GroupKey, Sums)> {
        self.children(id)
            .filter_map(|c| self.node(c))
            .map(|child| {
                let mut sums = Sums::default();
                node_sums(child, query, first, last, &mut sums);
                ((names::display_path(&child.path).to_string(), None, None), sums)
            })
            .collect()
    }

    /// `GROUP tag`: per tag, the usage of the topmost nodes of the subtree
    /// carrying it (a node below another with the same tag is not counted
    /// again).
    /// Lua twin: `usage_tag_sums` (lua/src/68_usage.lua).
    fn tag_sums(&self, id: NodeId, query: &UsageQuery, first: u64, last: u64) -> Vec<(GroupKey, Sums)> {
        let mut groups: BTreeMap<String, Sums> = BTreeMap::new();
        // Depth first, with the tags each node's ancestors (within the
        // subtree) carry.
        let mut stack: Vec<(NodeId, Vec<&str>)> = vec![(id, Vec::new())];
        while let Some((n, above)) = stack.pop() {
            let Some(node) = self.node(n) else { continue };
            let mut carried = above.clone();
            for tag in node_tags(node) {
                if !above.contains(&&**tag) {
                    node_sums(node, query, first, last, groups.entry(tag.to_string()).or_default());
                    carried.push(tag);
                }
            }
            for child in self.children(n) {
                stack.push((child, carried.clone()));
            }
        }
        groups.into_iter().map(|(tag, sums)| ((tag, None, None), sums)).collect()
    }
}

/// Checks a node's stored usage: names valid and unique, cells sorted and
/// naming existing metrics and series, amounts in range.
pub(crate) fn validate_stored(usage: &Usage) -> std::result::Result<(), String> {
    if usage.metrics.len() >= usize::from(OTHER_SLOT) || usage.series.len() > MAX_SERIES {
        return Err("stored usage has too many names".into());
    }
    for (i, m) in usage.metrics.iter().enumerate() {
        if names::parse_stored_metric(m).is_err() || usage.metrics[..i].contains(m) {
            return Err("stored usage has an invalid metric".into());
        }
    }
    let live: Vec<&Series> = usage.series.iter().flatten().collect();
    for (i, s) in live.iter().enumerate() {
        let valid = names::parse_name(&s.service, "service").is_ok()
            && s.model.as_deref().is_none_or(|m| names::parse_name(m, "model").is_ok())
            && s.last_ms <= crate::restore::MAX_TIME
            && !live[..i].iter().any(|o| o.service == s.service && o.model == s.model);
        if !valid {
            return Err("stored usage has an invalid series".into());
        }
    }
    for cells in [&usage.hours, &usage.days] {
        for (i, c) in cells.iter().enumerate() {
            let series_ok = matches!(c.series, NO_SERVICE_SLOT | OTHER_SLOT)
                || usage.series.get(usize::from(c.series)).is_some_and(Option::is_some);
            let valid = series_ok
                && usize::from(c.metric) < usage.metrics.len()
                && amount::validate_stored(c.amount).is_ok()
                && (i == 0 || cells[i - 1].key() < c.key());
            if !valid {
                return Err("stored usage has an invalid bucket".into());
            }
        }
    }
    Ok(())
}
