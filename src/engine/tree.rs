//! The quota tree: nodes addressed by path, each with its policies and the
//! usage charged in its subtree, plus the holds placed on it.
//!
//! This file holds the tree itself, setting and changing policies, which
//! policies a charge set reaches, charging usage to them, and the event
//! log. The rooms beside it: `paths` (the arena, the path index and the
//! parent/child links), `held` (how policies count live holds), `view`
//! (what reads show), `hold` (reserve, commit, release, expire, charge) and
//! `restore` (a tree built again from its stored parts).
//!
//! Lua twin: `lua/src/60_tree.lua` (the tree's keys, reaching and charging,
//! events) and `lua/src/75_ops.lua` (setting policies).

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use hashbrown::HashMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::amount;
use super::error::{Error, Result};
use super::events::{Event, EventKind, EventMore, alerts};
use super::hold::{Hold, Tomb};
use super::ledger::{LedgerEntry, LedgerKind};
use super::names;
use super::outcome::{Check, Costs, Draw, Lookup, PolicyView, ResetOutcome, Totals};
use super::paths::ROOT;
use super::plan::Plan;
use super::policy::{Expired, Grant, GrantRequest, Policy, PolicySpec};
use super::short::Short;

pub use super::paths::{Node, NodeId};

/// The bounds of SPEC §5 that the engine enforces, read from the module
/// configuration by the command layer and passed in with every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_paths: usize,
    pub max_policies: usize,
    pub max_holds: usize,
    pub max_items: usize,
    /// How long finished reservation ids are remembered.
    pub tombstone_ttl_ms: u64,
    /// Events kept per tree.
    pub events_len: usize,
    /// Deepest path that may be created (`max_depth`). Paths that exist are
    /// read and used at any depth, so lowering it never strands them.
    pub max_depth: usize,
    /// Hourly usage buckets kept (`usage_hours`; 0: none).
    pub usage_hours: u32,
    /// Daily usage buckets kept (`usage_days`; 0: none).
    pub usage_days: u32,
    /// Series slots per node (`usage_series`).
    pub usage_series: u32,
    /// Collect ledger entries (`ledger_len` > 0 on a primary; never on a
    /// replay, whose stream entries arrive on their own).
    pub ledger: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits::from_settings(crate::catalog::Setting::default_value)
    }
}

/// Who is charged: the paths named by `PATH` and `ALSO` and the request's
/// service and model, which select filtered policies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeSet {
    /// Canonical paths, `PATH` first, without duplicates.
    pub paths: Vec<String>,
    pub service: Option<String>,
    pub model: Option<String>,
}

/// A policy reached by a charge set: the node that holds it and its index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PolicyRef {
    pub node: NodeId,
    pub index: usize,
}

/// The nodes and policies a charge set reaches, each once, root first.
pub(crate) struct Reach {
    /// The existing nodes on the way to every charged path.
    pub nodes: Short<NodeId, 8>,
    /// How many nodes charging would create (prefixes that do not exist).
    pub missing: usize,
    pub policies: Short<PolicyRef, 8>,
    /// Where each reached policy's metric is in the costs the reach was
    /// made for: each policy finds its metric there once.
    pub metric_at: Short<u32, 8>,
}

impl Reach {
    /// Each reached policy with its amount in `costs`, which must be the
    /// costs the reach was made for (see [`Tree::reach`]).
    pub(crate) fn with_amounts<'a>(
        &'a self,
        costs: &'a [(String, Decimal)],
    ) -> impl Iterator<Item = (PolicyRef, Decimal)> + 'a {
        let amount = |i: u32| costs.get(i as usize).map_or(Decimal::ZERO, |(_, a)| *a);
        self.policies.iter().zip(self.metric_at.iter()).map(move |(&r, &i)| (r, amount(i)))
    }
}

/// The `reset` event of periods just closed (the newest in the history),
/// and the `rollover` event when the new period carries allowance over.
/// Lua twin: `period_events` (lua/src/60_tree.lua).
fn period_events(policy: &Policy, path: &str, now_ms: u64, closed: u64) -> Vec<Event> {
    let mut events = Vec::new();
    if let Some(last) = policy.history().front() {
        let mut reset = Event::about(EventKind::Reset, now_ms, path, policy);
        reset.used = Some(last.used);
        reset.limit = Some(last.allowance);
        reset.held = None;
        reset.periods = Some(closed);
        events.push(reset);
    }
    if policy.rolled_over() > Decimal::ZERO {
        let mut rollover = Event::about(EventKind::Rollover, now_ms, path, policy);
        rollover.rolled_over = Some(policy.rolled_over());
        events.push(rollover);
    }
    events
}

/// The `grant_expired` events of grants that ended in one roll, about the
/// policy as it is after it.
/// Lua twin: `G.expiry_events` (lua/src/60_tree.lua).
fn expired_events(policy: &Policy, path: &str, now_ms: u64, expired: Vec<Expired>) -> Vec<Event> {
    expired
        .into_iter()
        .map(|e| {
            let mut event = Event::about(EventKind::GrantExpired, now_ms, path, policy);
            event.more = Some(Box::new(EventMore {
                grant: Some(e.id),
                amount: Some(e.amount),
                expires_at_ms: Some(e.expires_at_ms),
                ..EventMore::default()
            }));
            event
        })
        .collect()
}

/// The `low` event, when the policy's `LOW` fires now.
/// Lua twin: `G.check_low` (lua/src/60_tree.lua).
fn low_event(policy: &mut Policy, path: &str, now_ms: u64) -> Option<Event> {
    if !policy.fire_low() {
        return None;
    }
    let mut event = Event::about(EventKind::Low, now_ms, path, policy);
    event.more =
        Some(Box::new(EventMore { remaining: Some(policy.remaining()), low: policy.low(), ..EventMore::default() }));
    Some(event)
}

/// What `QUOTA.GRANT` answers: the policy, the grant (as it is now, or as
/// it ended) and whether the id was known already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantOutcome {
    pub policy: PolicyView,
    pub grant: Grant,
    pub duplicate: bool,
}

/// QUOTA.SET's update of an existing policy to `spec` (its resets due
/// applied without events, usage kept; a changed metric starts it over
/// with `generation`). Shared by `QUOTA.SET`, `QUOTA.UNSET` of an
/// override and a plan's sync.
/// Lua twin: `update_policy` in `OPS.set_policy` (lua/src/75_ops.lua).
pub(crate) fn updated_policy(policy: &Policy, spec: PolicySpec, generation: u64, now_ms: u64) -> Policy {
    let mut policy = policy.clone();
    let new_metric = restarts(&policy, &spec);
    policy.update(spec, now_ms);
    if new_metric {
        policy.restart(generation, now_ms);
    }
    policy
}

/// Whether updating a policy to `spec` starts it over: a changed metric,
/// or `INFLIGHT` turned on or off, counts something else.
pub(crate) fn restarts(policy: &Policy, spec: &PolicySpec) -> bool {
    policy.metric() != spec.metric || policy.inflight != spec.inflight
}

/// Whether a policy keeps the service/model filter of `spec`.
pub(crate) fn same_filter(policy: &Policy, spec: &PolicySpec) -> bool {
    policy.service() == spec.service.as_deref() && policy.model() == spec.model.as_deref()
}

impl Reach {
    pub fn missing_nodes(&self) -> usize {
        self.missing
    }
}

/// The hasher of the path index and the id maps: foldhash (several times
/// cheaper than SipHash on short keys) with a secret seed per tree, drawn
/// from the standard library's randomly keyed hasher. Paths and ids are
/// chosen by clients, so the seed must not be guessable (hash flooding).
#[derive(Debug, Clone)]
pub(crate) struct Seeded(foldhash::fast::FixedState);

impl Default for Seeded {
    fn default() -> Self {
        let seed = std::hash::BuildHasher::hash_one(&std::hash::RandomState::new(), 0x5eed_u64);
        Seeded(foldhash::fast::FixedState::with_seed(seed))
    }
}

impl std::hash::BuildHasher for Seeded {
    type Hasher = foldhash::fast::FoldHasher<'static>;

    fn build_hasher(&self) -> Self::Hasher {
        self.0.build_hasher()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub(crate) nodes: Vec<Option<Node>>,
    pub(crate) free: Vec<NodeId>,
    /// Every live node, found by the hash of its path.
    pub(crate) index: hashbrown::HashTable<NodeId>,
    pub(crate) hasher: Seeded,
    pub(crate) node_count: usize,
    pub(crate) holds: HashMap<String, Hold, Seeded>,
    /// (expires_at_ms, id) of every live hold: expiry pops from the front.
    pub(crate) hold_expiry: BTreeSet<(u64, String)>,
    /// Finished reservations and charges, remembered for duplicate detection.
    pub(crate) done: HashMap<String, Tomb, Seeded>,
    pub(crate) done_expiry: BTreeSet<(u64, String)>,
    /// Counter behind generated reservation ids.
    pub(crate) seq: u64,
    /// Counter behind policy generations.
    pub(crate) next_generation: u64,
    /// The latest events, oldest first, at most `Limits::events_len`.
    pub(crate) events: VecDeque<Event>,
    /// The `seq` the next event gets (the first is 1).
    pub(crate) next_event_seq: u64,
    /// The database and time the command layer last scheduled this tree for
    /// active expiry (not persisted): commands that leave both unchanged
    /// skip the schedule. The database is part of it because `SWAPDB` moves
    /// a tree without telling anyone.
    pub scheduled: Option<(i32, Option<u64>)>,
    /// The plan the tree follows, as it last saw it (shared with the plan
    /// book while it is current there); `None` when it follows none.
    pub(crate) plan: Option<Arc<Plan>>,
    /// +1 each time the tree takes another plan or version, or leaves its
    /// plan: a node whose `plan_epoch` differs is stale (see `sync`).
    pub(crate) plan_epoch: u32,
    /// What the current command changed by following its plan (not
    /// persisted; see [`Tree::take_plan_changes`]).
    pub(crate) plan_changes: crate::sync::PlanChanges,
    /// The ledger entries of the current command (not persisted; see
    /// [`Tree::take_ledger`]).
    pub(crate) ledger: Vec<crate::ledger::LedgerEntry>,
    /// Whether a node may be archived: set when one is archived (or
    /// loaded archived), never cleared, so that requests on a tree that
    /// never archived anything skip the look at every reached node.
    pub(crate) any_archived: bool,
}

impl Tree {
    /// Lua twin: `open_tree` of a missing key (lua/src/60_tree.lua).
    pub fn new() -> Tree {
        let mut tree = Tree { next_generation: 1, next_event_seq: 1, ..Tree::default() };
        tree.nodes.push(Some(Node::new("", None)));
        tree.index_insert(ROOT);
        tree.node_count = 1;
        tree
    }

    pub fn path_count(&self) -> usize {
        self.node_count
    }

    pub fn hold_count(&self) -> usize {
        self.holds.len()
    }

    pub fn tombstone_count(&self) -> usize {
        self.done.len()
    }

    /// An estimate of the heap the tree uses, for `MEMORY USAGE`.
    pub fn estimated_bytes(&self) -> usize {
        use std::mem::size_of;
        let mut bytes = size_of::<Tree>() + self.nodes.capacity() * size_of::<Option<Node>>();
        bytes += self.index.capacity() * (size_of::<NodeId>() + 1) * 8 / 7;
        for node in self.nodes.iter().flatten() {
            bytes += node.path.len().next_multiple_of(16);
            bytes += node.policies.iter().map(|p| size_of::<Policy>() + p.extra_bytes()).sum::<usize>();
            bytes += node.spent.iter().map(|(m, _)| m.len() + size_of::<(String, Decimal)>()).sum::<usize>();
            if let Some(usage) = &node.usage {
                bytes += size_of::<crate::usage::Usage>() + usage.extra_bytes();
            }
            bytes += node.labels.as_ref().map_or(0, |l| l.extra_bytes());
            if let Some(access) = &node.access {
                let entries = access.allow.iter().chain(&access.deny);
                bytes += size_of::<crate::access::Access>()
                    + entries
                        .map(|e| {
                            size_of::<crate::access::Entry>()
                                + e.service.len()
                                + e.model.as_ref().map_or(0, String::len)
                        })
                        .sum::<usize>();
            }
        }
        for hold in self.holds.values() {
            bytes += size_of::<Hold>() + 2 * hold.id.len() + 64;
            bytes += hold.set.paths.iter().map(|p| p.len() + 24).sum::<usize>();
            bytes += hold.items.len() * 64 + hold.lines.len() * 48;
            bytes += hold.meta.as_ref().map_or(0, |m| crate::meta::extra_bytes(m));
        }
        // The plan's snapshot, when no one else holds it (the plan book
        // or another tree counts it otherwise): its JSON and parsed form.
        if let Some(plan) = &self.plan
            && Arc::strong_count(plan) == 1
        {
            bytes += size_of::<Plan>() + 4 * plan.to_json().len();
        }
        bytes + self.done.values().map(|t| t.data.len() + 2 * size_of::<(u64, String)>() + 48).sum::<usize>()
    }

    pub fn policy_count(&self) -> usize {
        self.nodes.iter().flatten().map(|n| n.policies.len()).sum()
    }

    pub(crate) fn policy(&self, r: PolicyRef) -> Option<&Policy> {
        self.node(r.node).and_then(|n| n.policies.get(r.index))
    }

    // ----- policies ------------------------------------------------------

    /// `QUOTA.SET`: creates or updates a policy. An update keeps the usage;
    /// a changed metric starts the policy over with a new generation, so
    /// holds placed under the old metric no longer count here. Returns true
    /// when it was created. A policy of a name the tree's plan gives at the
    /// node becomes the tree's own (an override), usage kept.
    /// Lua twin: `OPS.set_policy` (lua/src/75_ops.lua).
    pub fn set_policy(
        &mut self,
        path: &str,
        name: &str,
        spec: PolicySpec,
        now_ms: u64,
        limits: &Limits,
    ) -> Result<bool> {
        spec.validate()?;
        self.sync_path(path, now_ms);
        self.check_policy_room(path, name, limits)?;
        // After this point the command succeeds (a new node has no holds,
        // so counting them cannot fail).
        let id = self.ensure_path(path, now_ms);
        let (r, created) = self.apply_set(id, path, name, spec, false, now_ms, limits)?;
        self.observe([r], now_ms, limits);
        Ok(created)
    }

    /// QUOTA.SET's change at node `id`: the existing policy `name` updated
    /// (its resets due applied first), or a new one appended; `from_plan`
    /// is its source after. The holds it matches are counted again when it
    /// is new or its metric or filter changes.
    #[allow(clippy::too_many_arguments)]
    fn apply_set(
        &mut self,
        id: NodeId,
        path: &str,
        name: &str,
        spec: PolicySpec,
        from_plan: bool,
        now_ms: u64,
        limits: &Limits,
    ) -> Result<(PolicyRef, bool)> {
        // A new policy, or one whose metric or filter changes, counts the
        // live holds it matches from now on (and no others): held always
        // equals the live holds that match the policy as it is now.
        let old = self
            .node(id)
            .and_then(|node| node.policies.iter().find(|p| p.name() == name))
            .map(|p| (p.generation, restarts(p, &spec) || !same_filter(p, &spec)));
        let counted = match old {
            Some((_, false)) => None,
            _ if !self.holds_may_reach(path) => None,
            _ => Some(self.holds_matching(path, &spec)?),
        };
        // Every call takes a fresh generation number; only a new policy or a
        // changed metric uses it.
        let generation = self.next_generation;
        self.next_generation += 1;
        let (r, created) = match self.node(id).and_then(|n| n.policies.iter().position(|p| p.name() == name)) {
            Some(index) => {
                let r = PolicyRef { node: id, index };
                self.roll_policy(r, now_ms, limits);
                if let Some(policy) = self.node_mut(id).and_then(|n| n.policies.get_mut(index)) {
                    *policy = updated_policy(policy, spec, generation, now_ms);
                }
                (r, false)
            }
            None => (self.add_policy(id, name, spec, generation, now_ms)?, true),
        };
        if let Some(policy) = self.node_mut(id).and_then(|n| n.policies.get_mut(r.index)) {
            policy.from_plan = from_plan;
        }
        if let Some((ids, held)) = counted {
            self.recount(r, old.map(|(g, _)| g), &ids, held);
        }
        Ok((r, created))
    }

    /// Checks that policy `name` may be set at `path`: an existing policy
    /// always may; a new one needs room under `max_policies` (which counts
    /// the tree's own policies, not its plan's), and a new path room in the
    /// tree.
    fn check_policy_room(&self, path: &str, name: &str, limits: &Limits) -> Result<()> {
        let existing = self.find(path).and_then(|id| self.node(id)).map(|node| {
            (node.policies.iter().filter(|p| !p.from_plan).count(), node.policies.iter().position(|p| p.name() == name))
        });
        match existing {
            Some((_, Some(_))) => Ok(()),
            Some((count, None)) if count >= limits.max_policies => Err(Error::Limit(format!(
                "path '{}' already has {} policies (max_policies)",
                names::display_path(path),
                limits.max_policies
            ))),
            Some((_, None)) => Ok(()),
            None => self.check_new_paths([path], self.missing_count(&[path]), limits),
        }
    }

    /// Adds a new policy to node `id`.
    fn add_policy(
        &mut self,
        id: NodeId,
        name: &str,
        spec: PolicySpec,
        generation: u64,
        now_ms: u64,
    ) -> Result<PolicyRef> {
        let Some(node) = self.node_mut(id) else { return Err(Error::State("tree is inconsistent".into())) };
        // Exact capacity: a policy is more than a hundred bytes, and most
        // paths have one or two.
        let mut policies = std::mem::take(&mut node.policies).into_vec();
        policies.reserve_exact(1);
        policies.push(Policy::new(name, spec, generation, now_ms));
        node.policies = policies.into_boxed_slice();
        Ok(PolicyRef { node: id, index: node.policies.len() - 1 })
    }

    /// Lua twin: `OPS.policy_ref` (lua/src/75_ops.lua).
    fn policy_ref(&self, path: &str, name: &str) -> Result<PolicyRef> {
        let node = self.find(path).ok_or_else(|| Error::NotFound(format!("path '{}'", names::display_path(path))))?;
        let index = self
            .node(node)
            .and_then(|n| n.policies.iter().position(|p| p.name() == name))
            .ok_or_else(|| Error::NotFound(format!("policy '{name}' at '{}'", names::display_path(path))))?;
        Ok(PolicyRef { node, index })
    }

    /// The window of a policy (what labels the period `QUOTA.RESET` closed).
    pub fn policy_window(&self, path: &str, name: &str) -> Result<crate::window::Window> {
        let r = self.policy_ref(path, name)?;
        self.node(r.node)
            .and_then(|n| n.policies.get(r.index))
            .map(|p| p.window())
            .ok_or_else(|| Error::State("tree is inconsistent".into()))
    }

    fn policy_mut(&mut self, path: &str, name: &str) -> Result<&mut Policy> {
        let r = self.policy_ref(path, name)?;
        self.node_mut(r.node)
            .and_then(|n| n.policies.get_mut(r.index))
            .ok_or_else(|| Error::State("tree is inconsistent".into()))
    }

    /// `QUOTA.GRANT`: adds a grant to the policy (SPEC §7). A known id
    /// (live or remembered) changes nothing and answers the grant as it is.
    /// Lua twin: `OPS.grant` (lua/src/75_ops.lua).
    pub fn grant(
        &mut self,
        path: &str,
        name: &str,
        req: &GrantRequest,
        now_ms: u64,
        limits: &Limits,
    ) -> Result<GrantOutcome> {
        self.sync_path(path, now_ms);
        let r = self.policy_ref(path, name)?;
        let ttl = limits.tombstone_ttl_ms;
        // Checked on the policy as it is now (a view), then applied.
        let view = self.policy_at(r, now_ms).ok_or_else(|| Error::State("tree is inconsistent".into()))?;
        if view.inflight {
            return Err(Error::State(format!(
                "policy '{name}' at {} is INFLIGHT: it takes no grants",
                names::display_path(path)
            )));
        }
        if let Some(id) = &req.id
            && let Some((grant, live)) = view.find_grant(id, now_ms, ttl)
        {
            // An ended grant as it ended (one expired by now, but not yet
            // rolled, included).
            let mut grant = grant.clone();
            if !live {
                grant.remaining = Decimal::ZERO;
            }
            return Ok(GrantOutcome { policy: PolicyView::of(&view, now_ms), grant, duplicate: true });
        }
        view.check_grant(req, path, now_ms)?;
        // After this point the command succeeds.
        self.roll_policy(r, now_ms, limits);
        let id = match &req.id {
            Some(id) => id.clone(),
            None => self.generate_grant_id(r, now_ms, ttl),
        };
        let policy = self.policy_mut(path, name)?;
        let (grant, duplicate) = policy.add_grant(req, id, path, now_ms, ttl)?;
        let metric = policy.metric().to_string();
        self.observe([r], now_ms, limits);
        self.ledger_push(limits.ledger && !duplicate, || {
            LedgerEntry::of_policy(LedgerKind::Grant, now_ms, Some(&grant.id), path, name, &metric, grant.amount)
        });
        let policy = self.policy(r).ok_or_else(|| Error::State("tree is inconsistent".into()))?;
        Ok(GrantOutcome { policy: PolicyView::of(policy, now_ms), grant, duplicate })
    }

    /// An id for a grant from the tree's reservation-id generator, skipping
    /// ids the policy knows.
    fn generate_grant_id(&mut self, r: PolicyRef, now_ms: u64, ttl_ms: u64) -> String {
        loop {
            self.seq += 1;
            let id = super::hold::hex_id(now_ms, self.seq);
            if !self.policy(r).is_some_and(|p| p.knows_grant(&id, now_ms, ttl_ms)) {
                return id;
            }
        }
    }

    /// `QUOTA.REVOKE`: the live grant's remaining leaves the allowance;
    /// a remembered id gives back 0 and writes no ledger entry. Returns
    /// what was removed.
    /// Lua twin: `OPS.revoke` (lua/src/75_ops.lua).
    pub fn revoke(&mut self, path: &str, name: &str, id: &str, now_ms: u64, limits: &Limits) -> Result<Decimal> {
        self.sync_path(path, now_ms);
        let r = self.policy_ref(path, name)?;
        let ttl = limits.tombstone_ttl_ms;
        let known = self.policy_at(r, now_ms).is_some_and(|p| p.knows_grant(id, now_ms, ttl));
        if !known {
            return Err(Error::NotFound(format!(
                "grant '{}' at '{}#{name}'",
                names::clip(id),
                names::display_path(path)
            )));
        }
        self.roll_policy(r, now_ms, limits);
        let policy = self.policy_mut(path, name)?;
        let removed = policy.revoke(id, now_ms, ttl).unwrap_or_default();
        let metric = policy.metric().to_string();
        self.observe([r], now_ms, limits);
        // A revoke that removes nothing (the grant had already ended) is a
        // repeat: no ledger entry (design §3).
        self.ledger_push(limits.ledger && !removed.is_zero(), || {
            LedgerEntry::of_policy(LedgerKind::Revoke, now_ms, Some(id), path, name, &metric, removed)
        });
        Ok(removed)
    }

    /// `QUOTA.GRANTS` on the tree as it is (tests; the command reads
    /// through the plan with [`Tree::grants_seen`]).
    pub fn grants_view(&self, path: &str, name: &str, now_ms: u64, count: usize) -> Result<Vec<Grant>> {
        self.grants_seen(path, name, now_ms, count, self.plan.as_ref())
    }

    /// `QUOTA.RESET`: closes the policy's current period now.
    /// Lua twin: `OPS.reset` (lua/src/75_ops.lua).
    pub fn reset_policy(&mut self, path: &str, name: &str, now_ms: u64, limits: &Limits) -> Result<ResetOutcome> {
        self.sync_path(path, now_ms);
        let r = self.policy_ref(path, name)?;
        self.roll_policy(r, now_ms, limits);
        let policy = self.policy_mut(path, name)?;
        let mut expired = Vec::new();
        let closed = policy.reset_with(now_ms, &mut expired);
        let mut events = expired_events(policy, path, now_ms, expired);
        events.extend(period_events(policy, path, now_ms, 1));
        events.extend(low_event(policy, path, now_ms));
        let metric = policy.metric().to_string();
        for event in events {
            self.emit(event, limits);
        }
        self.ledger_push(limits.ledger, || {
            LedgerEntry::of_policy(LedgerKind::Reset, now_ms, None, path, name, &metric, closed.used)
        });
        Ok(closed)
    }

    /// `QUOTA.HISTORY`: closed periods, newest first, as of `now_ms`.
    /// Lua twin: `OPS.history` (lua/src/75_ops.lua).
    pub fn history(&self, path: &str, name: &str, now_ms: u64) -> Result<Vec<ResetOutcome>> {
        self.history_seen(path, name, now_ms, self.plan.as_ref()).map(|(_, closed)| closed)
    }

    /// `QUOTA.UNSET`: removes one policy. Holds that counted on it simply no
    /// longer do. A tree policy overriding a policy the plan gives at the
    /// node becomes the plan's again (QUOTA.SET's update with the plan's
    /// spec, usage kept); a plan policy cannot be removed.
    /// Lua twin: `OPS.unset_policy`, `OPS.drop_lines` (lua/src/75_ops.lua).
    pub fn unset_policy(&mut self, path: &str, name: &str, now_ms: u64, limits: &Limits) -> Result<()> {
        self.sync_path(path, now_ms);
        let r = self.policy_ref(path, name)?;
        if let Some(plan) = self.plan.clone() {
            if self.policy(r).is_some_and(|p| p.from_plan) {
                return Err(Error::State(format!(
                    "policy '{name}' at '{}' comes from plan '{}': override it with QUOTA.SET, or change the plan",
                    names::display_path(path),
                    plan.name
                )));
            }
            if let Some((_, spec)) = plan.policies_for(path).into_iter().find(|(n, _)| *n == name) {
                let spec = spec.clone();
                let (r, _) = self.apply_set(r.node, path, name, spec, true, now_ms, limits)?;
                self.observe([r], now_ms, limits);
                return Ok(());
            }
        }
        self.remove_policy(r);
        Ok(())
    }

    /// Removes the policy at `r`, and the lines of the holds that counted
    /// on it.
    /// Lua twin: `OPS.drop_lines` (lua/src/75_ops.lua).
    pub(crate) fn remove_policy(&mut self, r: PolicyRef) {
        let path = self.node(r.node).map(|n| n.path.clone()).unwrap_or_default();
        if let Some(generation) = self.policy(r).map(|p| p.generation)
            && self.holds_may_reach(&path)
        {
            for hold in self.holds.values_mut() {
                hold.lines.retain(|l| l.node != r.node || l.generation != generation);
            }
        }
        if let Some(node) = self.node_mut(r.node) {
            let mut policies = std::mem::take(&mut node.policies).into_vec();
            policies.remove(r.index);
            node.policies = policies.into_boxed_slice();
        }
    }

    // ----- reaching policies and charging usage --------------------------

    /// The nodes and the policies a charge set reaches, each once: those
    /// whose metric is one of `metrics` (amounts per metric) and whose
    /// filter matches. A path that exists costs one hash lookup; its
    /// ancestors are found through the parent links.
    /// Lua twin: `reach` (lua/src/60_tree.lua).
    pub(crate) fn reach(&self, set: &ChargeSet, metrics: &[(String, Decimal)]) -> Reach {
        self.reach_of(set, metrics, true)
    }

    /// [`Tree::reach`], with or without the `INFLIGHT` policies (which
    /// only holds reach: usage never does).
    fn reach_of(&self, set: &ChargeSet, metrics: &[(String, Decimal)], inflight: bool) -> Reach {
        let mut nodes: Short<NodeId, 8> = Short::new();
        let mut missing: Vec<&str> = Vec::new();
        for path in &set.paths {
            let deepest = match self.find(path) {
                Some(id) => Some(id),
                None => {
                    // A new path: its missing prefixes, then its deepest existing one.
                    let mut found = None;
                    for prefix in names::prefixes(path).collect::<Vec<_>>().into_iter().rev() {
                        match self.find(prefix) {
                            Some(id) => {
                                found = Some(id);
                                break;
                            }
                            None if !missing.contains(&prefix) => missing.push(prefix),
                            None => {}
                        }
                    }
                    found
                }
            };
            let start = nodes.len();
            let mut cursor = deepest;
            while let Some(id) = cursor {
                if nodes[..start].contains(&id) {
                    break;
                }
                nodes.push(id);
                cursor = self.node(id).and_then(Node::parent);
            }
            nodes[start..].reverse();
        }
        let (mut policies, mut metric_at) = (Short::new(), Short::new());
        // Each policy looks its metric up in the request's: by index when
        // both are many, so the work adds them instead of multiplying.
        let examined = nodes.iter().filter_map(|&id| self.node(id)).map(|n| n.policies.len()).sum();
        let wanted = Lookup::new(metrics, examined);
        for &id in &nodes {
            let Some(node) = self.node(id) else { continue };
            for (index, policy) in node.policies.iter().enumerate() {
                if (inflight || !policy.inflight)
                    && let Some(at) = wanted.position(policy.metric())
                    && policy.matches(set.service.as_deref(), set.model.as_deref())
                {
                    policies.push(PolicyRef { node: id, index });
                    metric_at.push(at as u32);
                }
            }
        }
        Reach { nodes, missing: missing.len(), policies, metric_at }
    }

    /// A reached policy as it is at `now_ms`.
    /// Lua twin: `policy_now` (lua/src/60_tree.lua).
    pub(crate) fn policy_at(&self, r: PolicyRef, now_ms: u64) -> Option<std::borrow::Cow<'_, Policy>> {
        self.policy(r).map(|p| p.at(now_ms))
    }

    /// The checks of `reach` for a request of `requested` per metric.
    /// Lua twin: `checks_of` (lua/src/60_tree.lua).
    pub(crate) fn checks(&self, reach: &Reach, requested: &Costs, now_ms: u64) -> Vec<Check> {
        let requested = Lookup::new(requested, reach.policies.len());
        reach
            .policies
            .iter()
            .filter_map(|&r| {
                let node = self.node(r.node)?;
                let policy = self.policy_at(r, now_ms)?;
                let amount = requested.get(policy.metric());
                Some(Check::new(&node.path, &policy, amount, policy.passes(amount), now_ms))
            })
            .collect()
    }

    /// Verifies that charging `usage` to the reached nodes and policies
    /// keeps every total in range and that the missing nodes fit, without
    /// changing anything.
    /// Lua twin: `check_usage` (lua/src/60_tree.lua).
    pub(crate) fn check_usage(
        &self,
        reach: &Reach,
        set: &ChargeSet,
        usage: &Costs,
        now_ms: u64,
        limits: &Limits,
    ) -> Result<()> {
        self.check_new_paths(set.paths.iter().map(String::as_str), reach.missing, limits)?;
        for (r, delta) in reach.with_amounts(usage) {
            if let Some(policy) = self.policy_at(r, now_ms) {
                amount::add(policy.used, delta)?;
            }
        }
        for node in reach.nodes.iter().filter_map(|&id| self.node(id)) {
            // Many metrics are found in a long `spent` by index, not by a
            // scan each.
            let spent = Lookup::new(&node.spent, usage.len());
            for (metric, amount) in usage {
                amount::add(spent.get(metric), *amount)?;
            }
        }
        Ok(())
    }

    /// The reach of `usage` on `set`, for [`Tree::check_usage`] and
    /// [`Tree::apply_usage`]: every policy but the `INFLIGHT` ones, which
    /// never record usage (a charge neither judges nor charges them).
    /// Lua twin: `usage_reach` (lua/src/60_tree.lua).
    pub(crate) fn usage_reach(&self, set: &ChargeSet, usage: &Costs) -> Reach {
        self.reach_of(set, usage, false)
    }

    /// Charges `usage` to every node of the charge set and every matching
    /// policy, each once; usage never goes below zero, and stops at the
    /// bound of totals (10^18) for a commit, which is never refused. A
    /// charge has run [`Tree::check_usage`] with `reach`. Returns `path#policy` of the
    /// charged policies now at or past their allowance.
    /// Lua twin: `apply_usage` (lua/src/60_tree.lua).
    pub(crate) fn apply_usage(
        &mut self,
        reach: Reach,
        set: &ChargeSet,
        usage: &Costs,
        now_ms: u64,
        limits: &Limits,
    ) -> (Vec<String>, Vec<Draw>) {
        let reach = if reach.missing > 0 {
            for path in &set.paths {
                self.ensure_path(path, now_ms);
            }
            self.usage_reach(set, usage)
        } else {
            reach
        };
        let mut over = Vec::new();
        let mut drawn = Vec::new();
        let mut draws = Vec::new();
        for (r, delta) in reach.with_amounts(usage) {
            self.roll_policy(r, now_ms, limits);
            let Some(node) = self.node_mut(r.node) else { continue };
            let Some(policy) = node.policies.get_mut(r.index) else { continue };
            policy.add_used_capped(delta, now_ms, &mut draws);
            if policy.is_over() {
                over.push(format!("{}#{}", names::display_path(&node.path), policy.name()));
            }
            for (grant, amount) in draws.drain(..) {
                let path = names::display_path(&node.path).to_string();
                drawn.push(Draw { path, policy: policy.name().to_string(), grant, amount });
            }
        }
        self.observe(reach.policies.iter().copied(), now_ms, limits);
        let settings = limits.usage();
        let (service, model) = (set.service.as_deref(), set.model.as_deref());
        let mut deltas: Short<(&str, Decimal), 8> = Short::new();
        // What `spent` took per metric, for the node's usage buckets.
        for &id in &reach.nodes {
            let Some(node) = self.node_mut(id) else { continue };
            deltas.clear();
            // Usually every metric is spent already: updated in place, each
            // found once. A new metric, or many, go through Totals (which
            // indexes a long list), and the list is rebuilt.
            let in_place = node.spent.len() <= 16 && usage.len() <= 16;
            let spent = &mut node.spent;
            if in_place && usage.iter().all(|(m, _)| spent.iter().any(|(s, _)| s == m)) {
                for (metric, delta) in usage {
                    if let Some((_, total)) = spent.iter_mut().find(|(s, _)| s == metric) {
                        let updated = amount::add_saturating(*total, *delta);
                        if settings.on() {
                            deltas.push((metric, amount::minus(updated, *total)));
                        }
                        *total = updated;
                    }
                }
            } else {
                let mut spent = Totals::of(std::mem::take(&mut node.spent).into_vec(), usage.len());
                for (metric, delta) in usage {
                    let current = spent.get(metric);
                    let updated = amount::add_saturating(current, *delta);
                    if settings.on() {
                        deltas.push((metric, amount::minus(updated, current)));
                    }
                    spent.set(metric, updated);
                }
                node.spent = spent.into_costs().into_boxed_slice();
            }
            if settings.on() || node.usage.is_some() {
                crate::usage::usage_record(node, service, model, &deltas, now_ms, &settings);
            }
        }
        (over, drawn)
    }

    // ----- events --------------------------------------------------------

    /// Appends an event to the log, numbering it.
    /// Lua twin: `emit` (lua/src/60_tree.lua).
    pub(crate) fn emit(&mut self, mut event: Event, limits: &Limits) {
        event.seq = self.next_event_seq;
        self.next_event_seq += 1;
        self.events.push_back(event);
        while self.events.len() > limits.events_len.max(1) {
            self.events.pop_front();
        }
    }

    /// Fires the warnings and `over` that the policies now cross.
    /// Lua twin: `observe` (lua/src/60_tree.lua).
    pub(crate) fn observe(&mut self, refs: impl IntoIterator<Item = PolicyRef>, now_ms: u64, limits: &Limits) {
        for r in refs {
            let Some(node) = self.node_mut(r.node) else { continue };
            let Some(policy) = node.policies.get_mut(r.index) else { continue };
            // Usually nothing fires: decide that before touching the path.
            if !policy.may_alert() && !policy.may_fire_low() {
                continue;
            }
            let mut events = alerts(policy, now_ms, &node.path);
            events.extend(low_event(policy, &node.path, now_ms));
            for event in events {
                self.emit(event, limits);
            }
        }
    }

    /// Applies the resets due to a policy, with their `reset` and
    /// `rollover` events.
    /// Lua twin: `roll_policy` (lua/src/60_tree.lua).
    pub(crate) fn roll_policy(&mut self, r: PolicyRef, now_ms: u64, limits: &Limits) {
        let Some(node) = self.node_mut(r.node) else { return };
        let Some(policy) = node.policies.get_mut(r.index) else { return };
        let mut expired = Vec::new();
        let closed = policy.roll_with(now_ms, true, &mut expired);
        policy.rearm();
        if closed == 0 && expired.is_empty() {
            return;
        }
        let mut events = expired_events(policy, &node.path, now_ms, expired);
        if closed > 0 {
            events.extend(period_events(policy, &node.path, now_ms, closed));
        }
        events.extend(low_event(policy, &node.path, now_ms));
        for event in events {
            self.emit(event, limits);
        }
    }

    /// Applies what is due at `now_ms` to every policy (tests: a write
    /// that does nothing else).
    #[cfg(test)]
    pub(crate) fn roll_all(&mut self, now_ms: u64, limits: &Limits) {
        let refs: Vec<PolicyRef> = (0..self.nodes.len())
            .flat_map(|n| {
                let count = self.nodes[n].as_ref().map_or(0, |node| node.policies.len());
                (0..count).map(move |index| PolicyRef { node: n as NodeId, index })
            })
            .collect();
        for r in refs {
            self.roll_policy(r, now_ms, limits);
        }
    }

    /// The events after `since`, oldest first, at most `count`.
    /// Lua twin: `CMD.cmd_events` (lua/src/80_commands.lua).
    pub fn events_since(&self, since: u64, count: usize) -> impl Iterator<Item = &Event> {
        // Sequence numbers are consecutive, so the start is found by arithmetic.
        let first = self.events.front().map_or(0, |e| e.seq);
        let skip = since.saturating_add(1).saturating_sub(first) as usize;
        self.events.iter().skip(skip).take(count)
    }

    /// The `seq` of the newest event (0 when there has been none).
    pub fn last_event_seq(&self) -> u64 {
        self.next_event_seq.saturating_sub(1)
    }
}
