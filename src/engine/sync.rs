//! Following a plan: the tree side of SPEC §6.
//!
//! A tree that *follows* a plan keeps the plan it last saw (its
//! *snapshot*, an `Arc` shared with the plan book while current) and a
//! *plan epoch*, +1 each time it takes another plan or version or leaves
//! its plan. Each node keeps the epoch it was last *synced* at: a node
//! whose epoch differs is *stale*. Nothing walks the tree when a plan
//! changes: a write syncs the nodes it touches, a read views stale nodes
//! as synced without changing them, and both use one pure function,
//! [`Tree::synced`], so they cannot disagree.
//!
//! Syncing a node: (1) the plan policies the plan no longer gives there
//! are removed (as UNSET removes them: hold lines dropped); (2) for each
//! policy the plan gives, in [`Plan::policies_for`] order: a tree policy
//! of that name overrides it (skipped); a plan policy with the same spec
//! stays; one with another spec takes QUOTA.SET's update (usage kept; a
//! changed metric starts over with a fresh generation); a missing one is
//! appended as QUOTA.SET creates it; a new or restarted policy, or one
//! whose filter changed, counts the live holds it matches (saturating:
//! sync never fails); (3) the node takes the tree's epoch. Sync emits no
//! events and is not bounded by `max_policies`.
//!
//! Lua twin: `lua/src/35_plan.lua` (adopt, sync_node, synced_policies).

use std::borrow::Cow;
use std::cell::OnceCell;
use std::sync::Arc;

use rust_decimal::Decimal;

use crate::amount;
use crate::error::Result;
use crate::held::HoldsByPath;
use crate::names;
use crate::plan::Plan;
use crate::policy::Policy;
use crate::tree::{Limits, NodeId, PolicyRef, Tree, same_filter, updated_policy};

/// What the current command changed by following the plan: whether it
/// adopted or synced anything, and the paths of the existing nodes it
/// synced (what `QUOTA.REPLAY key stamp SYNC path…` replays when the
/// command then fails).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanChanges {
    pub adopted: bool,
    pub synced: Vec<String>,
}

impl PlanChanges {
    pub fn any(&self) -> bool {
        self.adopted || !self.synced.is_empty()
    }
}

/// How to put back the nodes a reservation or charge created to judge a
/// request against the plan, when it then places or charges nothing.
#[derive(Debug)]
pub(crate) struct Undo {
    pub created: Vec<NodeId>,
    pub arena_len: usize,
    pub free: Vec<NodeId>,
    pub next_generation: u64,
}

/// The plan fields of `QUOTA.GET` and `QUOTA.TREE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInfo {
    /// The plan the tree follows.
    pub name: Option<String>,
    /// The book's version when the book has the plan (what the tree takes
    /// at its next command), else the snapshot's.
    pub version: Option<u64>,
    /// Whether the book has no plan of the tree's name.
    pub missing: bool,
}

/// The plan and epoch a read sees the tree at: as if it had adopted the
/// book's current plan.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seen<'a> {
    pub plan: Option<&'a Plan>,
    pub epoch: u32,
    /// Holds due by then are not counted by a policy the view adds or
    /// recounts (reads look through the expiry due; 0 for none).
    pub due_ms: u64,
    /// For a read of many nodes (QUOTA.TREE): the live holds by the paths
    /// they reach, built at the first stale node it shows.
    pub reach: Option<&'a OnceCell<HoldsByPath<'a>>>,
}

/// What syncing a node produces (see the module documentation).
pub(crate) struct Synced {
    pub policies: Vec<Policy>,
    /// Generations of the plan policies removed.
    pub dropped: Vec<u64>,
    /// Policies (index in `policies`) that count holds again: the
    /// generation they had, the holds and their total.
    pub recounts: Vec<(usize, Option<u64>, Vec<String>, Decimal)>,
    pub next_generation: u64,
}

impl Tree {
    /// The name of the plan the tree follows.
    pub fn plan_name(&self) -> Option<&str> {
        self.plan.as_deref().map(|p| p.name.as_str())
    }

    /// The plan the tree follows, as it last saw it.
    pub fn plan(&self) -> Option<&Arc<Plan>> {
        self.plan.as_ref()
    }

    /// The tree's plan epoch.
    pub fn plan_epoch(&self) -> u32 {
        self.plan_epoch
    }

    /// Whether the tree follows, or once followed, a plan: only such a
    /// tree can have stale nodes. Trees that never did skip every step of
    /// this file.
    #[inline]
    pub(crate) fn plan_active(&self) -> bool {
        self.plan.is_some() || self.plan_epoch != 0
    }

    /// The plan the tree would adopt given the book's `current` plan of
    /// its name: another version or content. `None` when it keeps its own
    /// (the same, or the book has none: a deleted plan keeps enforcing).
    fn adoption<'a>(&self, current: Option<&'a Arc<Plan>>) -> Option<&'a Arc<Plan>> {
        let (mine, current) = (self.plan.as_ref()?, current?);
        let same = Arc::ptr_eq(mine, current) || (mine.name == current.name && mine.same(current));
        (!same).then_some(current)
    }

    /// Adopting: the tree takes the book's current plan of its name
    /// (`current`, which the command layer looks up) when it differs from
    /// its snapshot: epoch + 1. Returns whether it changed.
    /// Lua twin: `PLAN.adopt` (lua/src/35_plan.lua).
    pub fn adopt(&mut self, current: Option<Arc<Plan>>) -> bool {
        let Some(current) = current else { return false };
        if self.adoption(Some(&current)).is_none() {
            // The same plan: share the book's copy (not observable).
            if self.plan.as_ref().is_some_and(|p| p.name == current.name) {
                self.plan = Some(current);
            }
            return false;
        }
        self.plan = Some(current);
        self.plan_epoch = self.plan_epoch.wrapping_add(1);
        self.plan_changes.adopted = true;
        true
    }

    /// Shares the book's copy of the plan the tree holds when it is the
    /// same version of the same content (after a load each tree decodes
    /// its own). Changes nothing observable: never an adoption.
    pub fn share_plan(&mut self, current: Option<Arc<Plan>>) {
        if let (Some(mine), Some(current)) = (&self.plan, current)
            && mine.name == current.name
            && mine.same(&current)
        {
            self.plan = Some(current);
        }
    }

    /// `QUOTA.ASSIGN`: the tree follows `plan` (the book's current plan),
    /// or no plan (`None`). Nothing changes when it already holds that
    /// same version, or follows none and is asked to follow none.
    /// Lua twin: `OPS.assign` (lua/src/35_plan.lua).
    pub fn assign(&mut self, plan: Option<Arc<Plan>>) -> bool {
        match (&self.plan, plan) {
            (None, None) => false,
            (Some(mine), Some(plan)) if mine.name == plan.name && (Arc::ptr_eq(mine, &plan) || mine.same(&plan)) => {
                self.plan = Some(plan);
                false
            }
            (_, plan) => {
                self.plan = plan;
                self.plan_epoch = self.plan_epoch.wrapping_add(1);
                true
            }
        }
    }

    /// What the current command changed by following the plan, reset for
    /// the next command.
    pub fn take_plan_changes(&mut self) -> PlanChanges {
        std::mem::take(&mut self.plan_changes)
    }

    /// The plan fields reads show, given the book's `current` plan of the
    /// tree's name.
    /// Lua twin: `PLAN.info` (lua/src/35_plan.lua).
    pub fn plan_info(&self, current: Option<&Arc<Plan>>) -> PlanInfo {
        match &self.plan {
            None => PlanInfo { name: None, version: None, missing: false },
            Some(plan) => PlanInfo {
                name: Some(plan.name.clone()),
                version: Some(current.map_or(plan.version, |c| c.version)),
                missing: current.is_none(),
            },
        }
    }

    /// The plan and epoch a read sees, given the book's `current` plan.
    pub(crate) fn seen<'a>(&'a self, current: Option<&'a Arc<Plan>>, due_ms: u64) -> Seen<'a> {
        match self.adoption(current) {
            Some(plan) => Seen { plan: Some(plan), epoch: self.plan_epoch.wrapping_add(1), due_ms, reach: None },
            None => Seen { plan: self.plan.as_deref(), epoch: self.plan_epoch, due_ms, reach: None },
        }
    }

    /// The policies of node `id` as a read shows them: synced with `seen`
    /// when stale, computed without changing anything.
    pub(crate) fn policies_seen<'a>(&'a self, id: NodeId, seen: Seen<'a>, now_ms: u64) -> Cow<'a, [Policy]> {
        match self.node(id) {
            None => Cow::Borrowed(&[]),
            Some(node) if node.plan_epoch == seen.epoch => Cow::Borrowed(&node.policies),
            Some(_) => {
                let reach = seen.reach.map(|cell| cell.get_or_init(|| self.holds_by_path()));
                let mut synced = self.synced(id, seen.plan, now_ms, reach);
                // A policy the view adds or recounts counts the live holds
                // that match it; those due by `due_ms` are released for a
                // read, and no hold line names its view-only generation, so
                // the release by line does not apply to it again.
                for (i, _, ids, _) in &synced.recounts {
                    let Some(policy) = synced.policies.get_mut(*i) else { continue };
                    let due = ids
                        .iter()
                        .filter_map(|h| self.holds.get(h))
                        .filter(|h| h.expires_at_ms <= seen.due_ms)
                        .fold(Decimal::ZERO, |sum, h| amount::add_saturating(sum, h.held_of(policy.metric())));
                    policy.held = (policy.held - due).max(Decimal::ZERO);
                    policy.generation = u64::MAX;
                }
                Cow::Owned(synced.policies)
            }
        }
    }

    /// What syncing node `id` with `plan` at `now_ms` produces, computed
    /// without changing anything (the one rule behind both sync and view).
    /// Lua twin: `PLAN.synced_policies` (lua/src/35_plan.lua).
    /// `reach`: where to look the holds up (else each is looked at).
    pub(crate) fn synced(
        &self,
        id: NodeId,
        plan: Option<&Plan>,
        now_ms: u64,
        reach: Option<&HoldsByPath<'_>>,
    ) -> Synced {
        let mut out = Synced {
            policies: Vec::new(),
            dropped: Vec::new(),
            recounts: Vec::new(),
            next_generation: self.next_generation,
        };
        let Some(node) = self.node(id) else { return out };
        let path: &str = &node.path;
        let desired = plan.map(|p| p.policies_for(path)).unwrap_or_default();
        out.policies.reserve(node.policies.len() + desired.len());
        for p in node.policies.iter() {
            if p.from_plan && !desired.iter().any(|(n, _)| *n == p.name()) {
                out.dropped.push(p.generation);
            } else {
                out.policies.push(p.clone());
            }
        }
        let may_reach = self.holds_may_reach(path);
        for (name, spec) in desired {
            match out.policies.iter().position(|p| p.name() == name) {
                Some(i) if !out.policies[i].from_plan => {}
                Some(i) if out.policies[i].spec() == *spec => {}
                Some(i) => {
                    let old = &out.policies[i];
                    let new_metric = crate::tree::restarts(old, spec);
                    let recount = new_metric || !same_filter(old, spec);
                    let old_generation = old.generation;
                    let generation = match new_metric {
                        true => take(&mut out.next_generation),
                        false => old_generation,
                    };
                    out.policies[i] = updated_policy(old, spec.clone(), generation, now_ms);
                    if recount && may_reach {
                        let (ids, held) = self.holds_matching_saturating(path, spec, reach);
                        out.policies[i].held = held;
                        out.recounts.push((i, Some(old_generation), ids, held));
                    }
                }
                None => {
                    let generation = take(&mut out.next_generation);
                    let mut policy = Policy::new(name, spec.clone(), generation, now_ms);
                    policy.from_plan = true;
                    out.policies.push(policy);
                    if may_reach {
                        let (ids, held) = self.holds_matching_saturating(path, spec, reach);
                        let i = out.policies.len() - 1;
                        out.policies[i].held = held;
                        out.recounts.push((i, None, ids, held));
                    }
                }
            }
        }
        out
    }

    /// Syncs node `id` when it is stale. Returns whether it was.
    /// Lua twin: `PLAN.sync_node` (lua/src/35_plan.lua).
    fn sync_node(&mut self, id: NodeId, now_ms: u64) -> bool {
        if self.node(id).is_none_or(|n| n.plan_epoch == self.plan_epoch) {
            return false;
        }
        let plan = self.plan.clone();
        let synced = self.synced(id, plan.as_deref(), now_ms, None);
        let Synced { policies, dropped, recounts, next_generation } = synced;
        if !dropped.is_empty() {
            for hold in self.holds.values_mut() {
                hold.lines.retain(|l| l.node != id || !dropped.contains(&l.generation));
            }
        }
        let epoch = self.plan_epoch;
        if let Some(node) = self.node_mut(id) {
            node.policies = policies.into_boxed_slice();
            node.plan_epoch = epoch;
        }
        self.next_generation = next_generation;
        for (index, old, ids, held) in recounts {
            self.recount(PolicyRef { node: id, index }, old, &ids, held);
        }
        true
    }

    /// Syncs a node just created (it gets the plan's policies at once).
    pub(crate) fn sync_new_node(&mut self, id: NodeId, now_ms: u64) {
        let stale = self.plan_epoch.wrapping_sub(1);
        if let Some(node) = self.node_mut(id) {
            node.plan_epoch = stale;
        }
        self.sync_node(id, now_ms);
    }

    /// Syncs an existing node, noting its path for replication.
    fn sync_existing(&mut self, id: NodeId, now_ms: u64) {
        if self.sync_node(id, now_ms)
            && let Some(node) = self.node(id)
        {
            let path = node.path.to_string();
            self.plan_changes.synced.push(path);
        }
    }

    /// Syncs the node at `path`, if it exists (SET, UNSET, GRANT, RESET,
    /// DELPATH).
    pub(crate) fn sync_path(&mut self, path: &str, now_ms: u64) {
        if !self.plan_active() {
            return;
        }
        if let Some(id) = self.find(path) {
            self.sync_existing(id, now_ms);
        }
    }

    /// Syncs the existing nodes at `paths`, in order (`QUOTA.REPLAY …
    /// SYNC`: the nodes a failed write synced on the primary).
    pub fn sync_paths(&mut self, paths: &[&str], now_ms: u64) {
        for path in paths {
            self.sync_path(path, now_ms);
        }
    }

    /// Syncs every existing node on the way to every path of `paths`: root
    /// first, paths in order, each node once (RESERVE, CHARGE, COMMIT).
    /// Lua twin: `PLAN.sync_way` (lua/src/35_plan.lua).
    pub(crate) fn sync_way(&mut self, paths: &[String], now_ms: u64) {
        if !self.plan_active() {
            return;
        }
        for path in paths {
            // The deepest existing node (one lookup when the path exists),
            // then up the parents: only stale nodes are kept (usually
            // none, and nothing is allocated), synced root first.
            let deepest = self.find(path).or_else(|| names::prefixes(path).filter_map(|p| self.find(p)).last());
            let mut stale = Vec::new();
            let mut cursor = deepest;
            while let Some(node) = cursor.and_then(|id| Some((id, self.node(id)?))) {
                if node.1.plan_epoch != self.plan_epoch {
                    stale.push(node.0);
                }
                cursor = node.1.parent();
            }
            for &id in stale.iter().rev() {
                self.sync_existing(id, now_ms);
            }
        }
    }

    /// Creates the missing nodes of `paths` (synced: with the plan's
    /// policies) so that a request is judged against them, after checking
    /// that they fit. `None` when the tree follows no plan or nothing is
    /// missing; else how to remove them again ([`Tree::unmake_if`]).
    pub(crate) fn materialize(&mut self, paths: &[String], now_ms: u64, limits: &Limits) -> Result<Option<Undo>> {
        if self.plan.is_none() {
            return Ok(None);
        }
        if paths.iter().all(|p| self.find(p).is_some()) {
            return Ok(None);
        }
        let wanted: Vec<&str> = paths.iter().map(String::as_str).collect();
        let missing = self.missing_count(&wanted);
        if missing == 0 {
            return Ok(None);
        }
        self.check_new_paths(wanted.iter().copied(), missing, limits)?;
        let mut undo = Undo {
            created: Vec::with_capacity(missing),
            arena_len: self.nodes.len(),
            free: self.free.clone(),
            next_generation: self.next_generation,
        };
        for path in paths {
            for prefix in names::prefixes(path) {
                if self.find(prefix).is_none() {
                    let id = self.ensure_path(prefix, now_ms);
                    undo.created.push(id);
                }
            }
        }
        Ok(Some(undo))
    }

    /// Removes the nodes [`Tree::materialize`] created, if any.
    pub(crate) fn unmake_if(&mut self, undo: Option<Undo>) {
        if let Some(undo) = undo {
            self.unmake(undo);
        }
    }
}

/// The next number of a counter, which moves on.
fn take(counter: &mut u64) -> u64 {
    let n = *counter;
    *counter += 1;
    n
}
