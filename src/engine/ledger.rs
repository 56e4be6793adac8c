//! The ledger (SPEC §9): one entry per money-moving change of a tree,
//! written by the command layer to a Redis stream beside the tree.
//!
//! The engine only collects the entries: while `Limits::ledger` is true
//! (never on a replica or an AOF load, whose stream entries arrive as
//! `XADD`s of their own), each commit, charge, release, expiry, grant,
//! revoke and `QUOTA.RESET` pushes one [`LedgerEntry`] on the tree, and
//! the command layer drains them with [`Tree::take_ledger`] like events.
//! Nothing for denials, duplicates, refused `CHECK` charges, errors, a
//! release that gives nothing back, or reads. Not persisted.
//!
//! Lua twin: lua/src/77_ledger.lua.

use rust_decimal::Decimal;

use super::amount;
use super::meta::Meta;
use super::names;
use super::outcome::Costs;
use super::tree::ChargeSet;
use super::tree::Tree;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerKind {
    Commit,
    Charge,
    Release,
    Expire,
    Grant,
    Revoke,
    Reset,
}

impl LedgerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LedgerKind::Commit => "commit",
            LedgerKind::Charge => "charge",
            LedgerKind::Release => "release",
            LedgerKind::Expire => "expire",
            LedgerKind::Grant => "grant",
            LedgerKind::Revoke => "revoke",
            LedgerKind::Reset => "reset",
        }
    }
}

/// One ledger entry, as collected; [`LedgerEntry::fields`] gives the
/// stream entry's fields in their order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    pub kind: LedgerKind,
    /// The command's time; for `expire` the hold's expiry.
    pub time_ms: u64,
    /// The reservation id, the charge's `ID` or the grant id.
    pub id: Option<String>,
    /// Canonical paths: `PATH` then each `ALSO` (one path for grant,
    /// revoke and reset).
    pub paths: Vec<String>,
    pub service: Option<String>,
    pub model: Option<String>,
    /// `ITEM i` of a commit or release.
    pub item: Option<usize>,
    /// The policy of a grant, revoke or reset.
    pub policy: Option<String>,
    /// Metric → amount (shown in name order).
    pub amounts: Costs,
    /// A commit after the hold expired.
    pub late: bool,
    /// A charge that access rules refuse, recorded.
    pub disallowed: bool,
    pub meta: Option<Box<Meta>>,
}

impl LedgerEntry {
    /// An entry of a request's charge set (commit, charge, release, expire).
    /// Lua twin: `ledger_entry` (lua/src/77_ledger.lua).
    pub(crate) fn of_set(kind: LedgerKind, time_ms: u64, id: Option<&str>, set: &ChargeSet, amounts: Costs) -> Self {
        LedgerEntry {
            kind,
            time_ms,
            id: id.map(str::to_string),
            paths: set.paths.clone(),
            service: set.service.clone(),
            model: set.model.clone(),
            item: None,
            policy: None,
            amounts,
            late: false,
            disallowed: false,
            meta: None,
        }
    }

    /// An entry of a policy (grant, revoke, reset): its one path and name,
    /// `amount` in its metric.
    /// Lua twin: `ledger_policy_entry` (lua/src/77_ledger.lua).
    pub(crate) fn of_policy(
        kind: LedgerKind,
        time_ms: u64,
        id: Option<&str>,
        path: &str,
        policy: &str,
        metric: &str,
        amount: Decimal,
    ) -> Self {
        LedgerEntry {
            kind,
            time_ms,
            id: id.map(str::to_string),
            paths: vec![path.to_string()],
            service: None,
            model: None,
            item: None,
            policy: Some(policy.to_string()),
            amounts: vec![(metric.to_string(), amount)],
            late: false,
            disallowed: false,
            meta: None,
        }
    }

    /// The stream entry's fields, in order: `type`, `time`, `id`, `paths`,
    /// `service`, `model`, `item`, `policy`, `amount:<metric>` (name order),
    /// `late`, `disallowed`, `meta:<name>` (in the order given); each
    /// optional one left out when absent.
    /// Lua twin: `ledger_fields` (lua/src/77_ledger.lua).
    pub fn fields(&self) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(8 + self.amounts.len());
        let mut push = |name: &str, value: String| out.push((name.to_string(), value));
        push("type", self.kind.as_str().to_string());
        push("time", self.time_ms.to_string());
        if let Some(id) = &self.id {
            push("id", id.clone());
        }
        let paths: Vec<&str> = self.paths.iter().map(|p| names::display_path(p)).collect();
        push("paths", paths.join(","));
        if let Some(service) = &self.service {
            push("service", service.clone());
        }
        if let Some(model) = &self.model {
            push("model", model.clone());
        }
        if let Some(item) = self.item {
            push("item", item.to_string());
        }
        if let Some(policy) = &self.policy {
            push("policy", policy.clone());
        }
        let mut amounts: Vec<&(String, Decimal)> = self.amounts.iter().collect();
        amounts.sort_by(|a, b| a.0.cmp(&b.0));
        for (metric, value) in amounts {
            out.push((format!("amount:{metric}"), amount::format(*value)));
        }
        if self.late {
            out.push(("late".into(), "1".into()));
        }
        if self.disallowed {
            out.push(("disallowed".into(), "1".into()));
        }
        for (name, value) in self.meta.iter().flat_map(|m| m.iter()) {
            out.push((format!("meta:{name}"), value.clone()));
        }
        out
    }
}

/// The ledger's key for a tree key: `<key>:ledger` when the key has a
/// hash tag (Redis's rule: the first `{`, then the first `}` after it,
/// something between), else `{<key>}:ledger`. Same slot either way,
/// except for a key with a `}` but no valid tag.
/// Lua twin: `ledger_key` (lua/src/77_ledger.lua).
pub fn ledger_key(key: &[u8]) -> Vec<u8> {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| key[open + 1..].iter().position(|&b| b == b'}').map(|close| close > 0))
        .unwrap_or(false);
    let mut out = Vec::with_capacity(key.len() + 9);
    if tagged {
        out.extend_from_slice(key);
    } else {
        out.push(b'{');
        out.extend_from_slice(key);
        out.push(b'}');
    }
    out.extend_from_slice(b":ledger");
    out
}

impl Tree {
    /// Collects `entry` when the ledger is on.
    pub(crate) fn ledger_push(&mut self, on: bool, entry: impl FnOnce() -> LedgerEntry) {
        if on {
            self.ledger.push(entry());
        }
    }

    /// The entries collected since the last call, oldest first (the
    /// command layer writes them).
    pub fn take_ledger(&mut self) -> Vec<LedgerEntry> {
        std::mem::take(&mut self.ledger)
    }
}
