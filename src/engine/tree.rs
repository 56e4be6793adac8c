//! The quota tree: nodes addressed by path, each with its policies and the
//! usage charged in its subtree, plus the holds placed on it.
//!
//! Nodes live in an arena (`nodes`) and are found by path through
//! `index`, a hash table of node ids keyed by the path each node stores
//! once; a node knows its parent and children, so the ancestors of a path
//! are one hash lookup and a walk up the parents.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::amount;
use super::due::{DueRelease, held_after};
use super::error::{Error, Result};
use super::events::{Event, EventKind, alerts};
use super::hold::{Hold, Line, Tomb, sort_lines};
use super::names;
use super::outcome::{Check, Costs, Lookup, NodeView, PolicyView, ResetOutcome, Totals, TreeView};
use super::policy::{Policy, PolicySpec, Status};

/// Index of a node in the arena.
pub type NodeId = u32;
const ROOT: NodeId = 0;

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_paths: 100_000,
            max_policies: 16,
            max_holds: 1_000_000,
            max_items: 1000,
            tombstone_ttl_ms: 24 * 3600 * 1000,
            events_len: 1000,
            max_depth: 16,
        }
    }
}

/// The absent node in the parent and sibling links.
pub(crate) const NO_NODE: NodeId = NodeId::MAX;

/// A node of the tree. A tree of 100,000 paths is 100,000 of these, so the
/// layout is compact: the path is stored once (the index hashes it in
/// place), children are a linked list through their sibling links instead
/// of a map per node, and the links are plain ids with `NO_NODE` for none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Canonical path ("" for the root).
    pub path: Box<str>,
    parent: NodeId,
    first_child: NodeId,
    prev_sibling: NodeId,
    next_sibling: NodeId,
    /// Live holds that name this node in `PATH` or `ALSO` (derived on load).
    pub live_holds: u32,
    pub policies: Box<[Policy]>,
    /// Everything charged in this subtree since the node was created, per
    /// metric (a boxed slice: most nodes never change their metrics).
    pub spent: Box<[(String, Decimal)]>,
}

fn link(id: NodeId) -> Option<NodeId> {
    (id != NO_NODE).then_some(id)
}

impl Node {
    pub(crate) fn new(path: &str, parent: Option<NodeId>) -> Node {
        Node {
            path: path.into(),
            parent: parent.unwrap_or(NO_NODE),
            first_child: NO_NODE,
            prev_sibling: NO_NODE,
            next_sibling: NO_NODE,
            live_holds: 0,
            policies: Box::default(),
            spent: Box::default(),
        }
    }

    pub fn parent(&self) -> Option<NodeId> {
        link(self.parent)
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PolicyRef {
    pub node: NodeId,
    pub index: usize,
}

/// The nodes and policies a charge set reaches, each once, root first.
pub(crate) struct Reach {
    /// The existing nodes on the way to every charged path.
    pub nodes: Vec<NodeId>,
    /// How many nodes charging would create (prefixes that do not exist).
    pub missing: usize,
    pub policies: Vec<PolicyRef>,
}

/// The `reset` event of periods just closed (the newest in the history),
/// and the `rollover` event when the new period carries allowance over.
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

/// Whether a policy keeps the service/model filter of `spec`.
fn same_filter(policy: &Policy, spec: &PolicySpec) -> bool {
    policy.service() == spec.service.as_deref() && policy.model() == spec.model.as_deref()
}

impl Reach {
    pub fn missing_nodes(&self) -> usize {
        self.missing
    }
}

#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub(crate) nodes: Vec<Option<Node>>,
    pub(crate) free: Vec<NodeId>,
    /// Every live node, found by the hash of its path.
    pub(crate) index: hashbrown::HashTable<NodeId>,
    pub(crate) hasher: RandomState,
    pub(crate) node_count: usize,
    pub(crate) holds: HashMap<String, Hold>,
    /// (expires_at_ms, id) of every live hold: expiry pops from the front.
    pub(crate) hold_expiry: BTreeSet<(u64, String)>,
    /// Finished reservations and charges, remembered for duplicate detection.
    pub(crate) done: HashMap<String, Tomb>,
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
}

impl Tree {
    pub fn new() -> Tree {
        let mut tree = Tree { next_generation: 1, next_event_seq: 1, ..Tree::default() };
        tree.nodes.push(Some(Node::new("", None)));
        tree.index_insert(ROOT);
        tree.node_count = 1;
        tree
    }

    /// The path of node `id` in `nodes` ("" for a free slot, which the
    /// index never holds).
    fn path_in(nodes: &[Option<Node>], id: NodeId) -> &str {
        nodes.get(id as usize).and_then(Option::as_ref).map_or("", |n| &n.path)
    }

    /// Adds node `id`, already in the arena, to the path index. Returns
    /// false when its path was indexed already.
    pub(crate) fn index_insert(&mut self, id: NodeId) -> bool {
        let (nodes, hasher) = (&self.nodes, &self.hasher);
        let path = Self::path_in(nodes, id);
        let hash = hasher.hash_one(path);
        if self.index.find(hash, |&other| Self::path_in(nodes, other) == path).is_some() {
            return false;
        }
        self.index.insert_unique(hash, id, |&other| hasher.hash_one(Self::path_in(nodes, other)));
        true
    }

    fn index_remove(&mut self, id: NodeId) {
        let nodes = &self.nodes;
        let path = Self::path_in(nodes, id);
        let hash = self.hasher.hash_one(path);
        if let Ok(entry) = self.index.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
    }

    /// Links `id` as the first child of `parent`.
    pub(crate) fn link_child(&mut self, parent: NodeId, id: NodeId) {
        let Some(first) = self.node(parent).map(|p| p.first_child) else { return };
        if let Some(node) = self.node_mut(id) {
            node.parent = parent;
            node.prev_sibling = NO_NODE;
            node.next_sibling = first;
        }
        if let Some(next) = self.node_mut(first) {
            next.prev_sibling = id;
        }
        if let Some(p) = self.node_mut(parent) {
            p.first_child = id;
        }
    }

    /// Unlinks `id` from its parent's children.
    fn unlink_child(&mut self, id: NodeId) {
        let Some((parent, prev, next)) = self.node(id).map(|n| (n.parent, n.prev_sibling, n.next_sibling)) else {
            return;
        };
        match self.node_mut(prev) {
            Some(p) => p.next_sibling = next,
            None => {
                if let Some(p) = self.node_mut(parent) {
                    p.first_child = next;
                }
            }
        }
        if let Some(n) = self.node_mut(next) {
            n.prev_sibling = prev;
        }
    }

    /// The children of a node, in no particular order.
    pub(crate) fn children(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        let mut cursor = self.node(id).map_or(NO_NODE, |n| n.first_child);
        std::iter::from_fn(move || {
            let id = link(cursor)?;
            cursor = self.node(id).map_or(NO_NODE, |n| n.next_sibling);
            Some(id)
        })
    }

    /// The children of a node sorted by name, at most `count` of them.
    fn sorted_children(&self, id: NodeId, count: usize) -> Vec<NodeId> {
        let mut children: Vec<NodeId> = self.children(id).collect();
        let name = |c: &NodeId| names::leaf_of(Self::path_in(&self.nodes, *c));
        if count < children.len() {
            children.select_nth_unstable_by(count, |a, b| name(a).cmp(name(b)));
            children.truncate(count);
        }
        children.sort_unstable_by(|a, b| name(a).cmp(name(b)));
        children
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
        }
        for hold in self.holds.values() {
            bytes += size_of::<Hold>() + 2 * hold.id.len() + 64;
            bytes += hold.set.paths.iter().map(|p| p.len() + 24).sum::<usize>();
            bytes += hold.items.len() * 64 + hold.lines.len() * 48;
        }
        bytes + self.done.values().map(|t| t.data.len() + 2 * size_of::<(u64, String)>() + 48).sum::<usize>()
    }

    pub fn policy_count(&self) -> usize {
        self.nodes.iter().flatten().map(|n| n.policies.len()).sum()
    }

    pub(crate) fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id as usize).and_then(Option::as_ref)
    }

    pub(crate) fn node_mut(&mut self, id: NodeId) -> Option<&mut Node> {
        self.nodes.get_mut(id as usize).and_then(Option::as_mut)
    }

    pub(crate) fn find(&self, path: &str) -> Option<NodeId> {
        let hash = self.hasher.hash_one(path);
        self.index.find(hash, |&id| Self::path_in(&self.nodes, id) == path).copied()
    }

    pub(crate) fn policy(&self, r: PolicyRef) -> Option<&Policy> {
        self.node(r.node).and_then(|n| n.policies.get(r.index))
    }

    /// Creates `path` and its missing ancestors. The caller has checked
    /// `max_paths`; returns the node.
    pub(crate) fn ensure_path(&mut self, path: &str) -> NodeId {
        if let Some(id) = self.find(path) {
            return id;
        }
        let parent = self.ensure_path(names::parent_of(path));
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                // Grow by an eighth, not double: the arena is most of a
                // large tree's memory, and doubling leaves up to half unused.
                if self.nodes.len() == self.nodes.capacity() {
                    self.nodes.reserve_exact(self.nodes.len() / 8 + 4);
                }
                self.nodes.push(None);
                (self.nodes.len() - 1) as NodeId
            }
        };
        self.nodes[id as usize] = Some(Node::new(path, Some(parent)));
        self.link_child(parent, id);
        self.index_insert(id);
        self.node_count += 1;
        id
    }

    /// How many nodes creating `paths` would add.
    fn missing_count(&self, paths: &[&str]) -> usize {
        let mut missing: Vec<&str> = Vec::new();
        for path in paths {
            for prefix in names::prefixes(path) {
                if self.find(prefix).is_none() && !missing.contains(&prefix) {
                    missing.push(prefix);
                }
            }
        }
        missing.len()
    }

    /// Checks that the nodes creating `paths` would add fit: each new path
    /// within `max_depth` and the tree within `max_paths`. Existing paths
    /// are never refused, however deep, so lowering `max_depth` never
    /// strands them.
    pub(crate) fn check_new_paths<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a str>,
        new_nodes: usize,
        limits: &Limits,
    ) -> Result<()> {
        if new_nodes == 0 {
            return Ok(());
        }
        for path in paths {
            if names::depth_of(path) > limits.max_depth.min(names::MAX_DEPTH_HARD) && self.find(path).is_none() {
                return Err(Error::Limit(format!(
                    "path '{path}' is deeper than {} segments",
                    limits.max_depth.min(names::MAX_DEPTH_HARD)
                )));
            }
        }
        self.check_path_room(new_nodes, limits)
    }

    fn check_path_room(&self, new_nodes: usize, limits: &Limits) -> Result<()> {
        // A tree already past the bound (lowered since, or promoted from a
        // replica with other settings) still works on its existing paths.
        if new_nodes > 0 && self.node_count + new_nodes > limits.max_paths {
            return Err(Error::Limit(format!("the tree would have more than {} paths (max_paths)", limits.max_paths)));
        }
        Ok(())
    }

    // ----- policies ------------------------------------------------------

    /// `QUOTA.SET`: creates or updates a policy. An update keeps the usage;
    /// a changed metric starts the policy over with a new generation, so
    /// holds placed under the old metric no longer count here. Returns true
    /// when it was created.
    pub fn set_policy(
        &mut self,
        path: &str,
        name: &str,
        spec: PolicySpec,
        now_ms: u64,
        limits: &Limits,
    ) -> Result<bool> {
        spec.validate()?;
        let existing = self
            .find(path)
            .and_then(|id| self.node(id))
            .map(|node| (node.policies.len(), node.policies.iter().position(|p| p.name() == name)));
        match existing {
            Some((_, Some(_))) => {}
            Some((count, None)) if count >= limits.max_policies => {
                return Err(Error::Limit(format!(
                    "path '{}' already has {} policies (max_policies)",
                    names::display_path(path),
                    limits.max_policies
                )));
            }
            Some((_, None)) => {}
            None => self.check_new_paths([path], self.missing_count(&[path]), limits)?,
        }
        // A new policy, or one whose metric or filter changes, counts the
        // live holds it matches from now on (and no others): held always
        // equals the live holds that match the policy as it is now.
        let old = self
            .find(path)
            .and_then(|id| self.node(id))
            .and_then(|node| node.policies.iter().find(|p| p.name() == name))
            .map(|p| (p.generation, p.metric() != spec.metric || !same_filter(p, &spec)));
        let counted = match old {
            Some((_, false)) => None,
            _ if !self.holds_may_reach(path) => None,
            _ => Some(self.holds_matching(path, &spec)?),
        };
        // After this point the command succeeds.
        let id = self.ensure_path(path);
        // Every call takes a fresh generation number; only a new policy or a
        // changed metric uses it.
        let generation = self.next_generation;
        self.next_generation += 1;
        let (r, created) =
            if let Some(index) = self.node(id).and_then(|n| n.policies.iter().position(|p| p.name() == name)) {
                let r = PolicyRef { node: id, index };
                self.roll_policy(r, now_ms, limits);
                if let Some(policy) = self.node_mut(id).and_then(|n| n.policies.get_mut(index)) {
                    let new_metric = policy.metric() != spec.metric;
                    policy.update(spec, now_ms);
                    if new_metric {
                        policy.restart(generation, now_ms);
                    }
                }
                (r, false)
            } else {
                let Some(node) = self.node_mut(id) else { return Err(Error::State("tree is inconsistent".into())) };
                // Exact capacity: a policy is more than a hundred bytes, and most
                // paths have one or two.
                let mut policies = std::mem::take(&mut node.policies).into_vec();
                policies.reserve_exact(1);
                policies.push(Policy::new(name, spec, generation, now_ms));
                node.policies = policies.into_boxed_slice();
                (PolicyRef { node: id, index: node.policies.len() - 1 }, true)
            };
        if let Some((ids, held)) = counted {
            self.recount(r, old.map(|(g, _)| g), &ids, held);
        }
        self.observe(&[r], now_ms, limits);
        Ok(created)
    }

    /// Whether a live hold may reach `path`: cheap, so that the common
    /// `QUOTA.SET` on a new or leaf path with no holds skips the pass over
    /// the tree's holds.
    fn holds_may_reach(&self, path: &str) -> bool {
        match self.find(path).and_then(|id| self.node(id)) {
            None => false,
            Some(node) => !self.holds.is_empty() && (node.live_holds > 0 || node.first_child != NO_NODE),
        }
    }

    /// The live holds a policy configured as `spec` at `path` counts: those
    /// whose charge set reaches the path, whose service and model its
    /// filter matches, and that hold its metric; and their total held.
    fn holds_matching(&self, path: &str, spec: &PolicySpec) -> Result<(Vec<String>, Decimal)> {
        let mut ids = Vec::new();
        let mut held = Decimal::ZERO;
        for hold in self.holds.values() {
            if hold.set.paths.iter().any(|p| names::is_within(p, path))
                && spec.matches(hold.set.service.as_deref(), hold.set.model.as_deref())
                && hold.items.iter().any(|i| i.cost.iter().any(|(m, _)| *m == spec.metric))
            {
                held = amount::add(held, hold.held_of(&spec.metric))?;
                ids.push(hold.id.clone());
            }
        }
        Ok((ids, held))
    }

    /// Makes the policy at `r` count exactly the holds `ids` (which hold
    /// `held` of its metric): their lines name its generation, no other
    /// hold's line names it or the generation it had before (`old`).
    fn recount(&mut self, r: PolicyRef, old: Option<u64>, ids: &[String], held: Decimal) {
        let Some(policy) = self.node_mut(r.node).and_then(|n| n.policies.get_mut(r.index)) else { return };
        policy.held = held;
        let generation = policy.generation;
        for hold in self.holds.values_mut() {
            hold.lines.retain(|l| l.node != r.node || (l.generation != generation && Some(l.generation) != old));
        }
        for id in ids {
            if let Some(hold) = self.holds.get_mut(id) {
                hold.lines.push(Line { node: r.node, generation });
                sort_lines(&mut hold.lines);
            }
        }
    }

    /// Recomputes every policy's held and every live hold's lines from the
    /// holds and the policies as they are (after loading a tree, whose
    /// stored lines may come from a release that counted holds only on the
    /// policies that existed when they were placed).
    ///
    /// A stored held equal to the count keeps its own form (2.0 stays 2.0,
    /// not 2): the tree then encodes to the bytes it was loaded from.
    pub(crate) fn recount_all(&mut self) -> std::result::Result<(), String> {
        let mut stored = Vec::new();
        for policy in self.nodes.iter_mut().flatten().flat_map(|n| n.policies.iter_mut()) {
            stored.push(policy.held);
            policy.held = Decimal::ZERO;
        }
        let ids: Vec<String> = self.holds.keys().cloned().collect();
        for id in ids {
            let Some(hold) = self.holds.get(&id) else { continue };
            let reach = self.reach(&hold.set, &hold.metrics());
            let held = hold.held_costs();
            let held = Lookup::new(&held, reach.policies.len());
            let mut lines = Vec::with_capacity(reach.policies.len());
            let mut amounts = Vec::with_capacity(reach.policies.len());
            for &r in &reach.policies {
                if let Some(policy) = self.policy(r) {
                    lines.push(Line { node: r.node, generation: policy.generation });
                    amounts.push((r, held.get(policy.metric())));
                }
            }
            for (r, amount) in amounts {
                if let Some(policy) = self.node_mut(r.node).and_then(|n| n.policies.get_mut(r.index)) {
                    policy.held = amount::add(policy.held, amount).map_err(|e| e.to_string())?;
                }
            }
            if let Some(hold) = self.holds.get_mut(&id) {
                sort_lines(&mut lines);
                hold.lines = lines;
            }
        }
        let policies = self.nodes.iter_mut().flatten().flat_map(|n| n.policies.iter_mut());
        for (policy, stored) in policies.zip(stored) {
            // Decimal equality is by value, whatever the scale.
            if policy.held == stored {
                policy.held = stored;
            }
        }
        Ok(())
    }

    fn policy_ref(&self, path: &str, name: &str) -> Result<PolicyRef> {
        let node = self.find(path).ok_or_else(|| Error::NotFound(format!("path '{}'", names::display_path(path))))?;
        let index = self
            .node(node)
            .and_then(|n| n.policies.iter().position(|p| p.name() == name))
            .ok_or_else(|| Error::NotFound(format!("policy '{name}' at '{}'", names::display_path(path))))?;
        Ok(PolicyRef { node, index })
    }

    fn policy_mut(&mut self, path: &str, name: &str) -> Result<&mut Policy> {
        let r = self.policy_ref(path, name)?;
        self.node_mut(r.node)
            .and_then(|n| n.policies.get_mut(r.index))
            .ok_or_else(|| Error::State("tree is inconsistent".into()))
    }

    fn policy_named(&self, path: &str, name: &str) -> Result<&Policy> {
        let r = self.policy_ref(path, name)?;
        self.policy(r).ok_or_else(|| Error::State("tree is inconsistent".into()))
    }

    /// `QUOTA.GRANT`: adds `amount` to the current period's allowance.
    pub fn grant(
        &mut self,
        path: &str,
        name: &str,
        amount: Decimal,
        now_ms: u64,
        limits: &Limits,
    ) -> Result<PolicyView> {
        let r = self.policy_ref(path, name)?;
        let mut updated = self.policy(r).cloned().ok_or_else(|| Error::State("tree is inconsistent".into()))?;
        updated.roll(now_ms);
        updated.grant(amount, now_ms)?;
        // After this point the command succeeds.
        self.roll_policy(r, now_ms, limits);
        let policy = self.policy_mut(path, name)?;
        policy.grant(amount, now_ms)?;
        Ok(PolicyView::of(policy, now_ms))
    }

    /// `QUOTA.RESET`: closes the policy's current period now.
    pub fn reset_policy(&mut self, path: &str, name: &str, now_ms: u64, limits: &Limits) -> Result<ResetOutcome> {
        let r = self.policy_ref(path, name)?;
        self.roll_policy(r, now_ms, limits);
        let policy = self.policy_mut(path, name)?;
        let closed = policy.reset(now_ms);
        let events = period_events(policy, path, now_ms, 1);
        for event in events {
            self.emit(event, limits);
        }
        Ok(closed)
    }

    /// `QUOTA.HISTORY`: closed periods, newest first, as of `now_ms`.
    pub fn history(&self, path: &str, name: &str, now_ms: u64) -> Result<Vec<ResetOutcome>> {
        Ok(self.policy_named(path, name)?.at(now_ms).history().iter().cloned().collect())
    }

    /// `QUOTA.UNSET`: removes one policy. Holds that counted on it simply no
    /// longer do.
    pub fn unset_policy(&mut self, path: &str, name: &str) -> Result<()> {
        let r = self.policy_ref(path, name)?;
        if let Some(generation) = self.policy(r).map(|p| p.generation)
            && self.holds_may_reach(path)
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
        Ok(())
    }

    /// `QUOTA.DELPATH`: removes a path and its subtree when no live hold
    /// names any node in it. Returns the number of nodes removed.
    pub fn delete_path(&mut self, path: &str) -> Result<usize> {
        if path.is_empty() {
            return Err(Error::State("the root cannot be deleted; DEL the key to remove the whole tree".into()));
        }
        let id = self.find(path).ok_or_else(|| Error::NotFound(format!("path '{}'", names::display_path(path))))?;
        let subtree = self.subtree(id);
        let held: u32 = subtree.iter().filter_map(|&n| self.node(n)).map(|n| n.live_holds).sum();
        if held > 0 {
            return Err(Error::State(format!(
                "path '{path}' cannot be deleted: {held} live reservation(s) hold it; commit or release them first"
            )));
        }
        // After this point the command succeeds.
        self.unlink_child(id);
        for &n in &subtree {
            self.index_remove(n);
            if self.nodes.get_mut(n as usize).and_then(Option::take).is_some() {
                self.free.push(n);
                self.node_count -= 1;
            }
        }
        // The lowest free slot is taken first, as in a loaded tree (which
        // knows only which slots are free): a new path then has the same
        // slot, and the tree the same bytes, on a server that deleted and
        // on one that loaded the tree since.
        self.free.sort_unstable_by(|a, b| b.cmp(a));
        Ok(subtree.len())
    }

    /// The node and everything below it, parents before children, children
    /// by name (so the order, and the free slots it leaves, do not depend
    /// on the order in which the children were created or loaded).
    pub(crate) fn subtree(&self, id: NodeId) -> Vec<NodeId> {
        let mut out = vec![id];
        let mut i = 0;
        while i < out.len() {
            out.extend(self.sorted_children(out[i], usize::MAX));
            i += 1;
        }
        out
    }

    // ----- reaching policies and charging usage --------------------------

    /// The nodes and the policies a charge set reaches, each once: those
    /// whose metric is one of `metrics` (amounts per metric) and whose
    /// filter matches. A path that exists costs one hash lookup; its
    /// ancestors are found through the parent links.
    pub(crate) fn reach(&self, set: &ChargeSet, metrics: &[(String, Decimal)]) -> Reach {
        let mut nodes: Vec<NodeId> = Vec::with_capacity(8);
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
        let mut policies = Vec::with_capacity(nodes.len() * 2);
        // Each policy looks its metric up in the request's: by index when
        // both are many, so the work adds them instead of multiplying.
        let examined = nodes.iter().filter_map(|&id| self.node(id)).map(|n| n.policies.len()).sum();
        let wanted = Lookup::new(metrics, examined);
        for &id in &nodes {
            let Some(node) = self.node(id) else { continue };
            for (index, policy) in node.policies.iter().enumerate() {
                if wanted.contains(policy.metric()) && policy.matches(set.service.as_deref(), set.model.as_deref()) {
                    policies.push(PolicyRef { node: id, index });
                }
            }
        }
        Reach { nodes, missing: missing.len(), policies }
    }

    /// A reached policy as it is at `now_ms`.
    pub(crate) fn policy_at(&self, r: PolicyRef, now_ms: u64) -> Option<std::borrow::Cow<'_, Policy>> {
        self.policy(r).map(|p| p.at(now_ms))
    }

    /// The checks of `reach` for a request of `requested` per metric.
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
    pub(crate) fn check_usage(
        &self,
        reach: &Reach,
        set: &ChargeSet,
        usage: &Costs,
        now_ms: u64,
        limits: &Limits,
    ) -> Result<()> {
        self.check_new_paths(set.paths.iter().map(String::as_str), reach.missing, limits)?;
        let by_metric = Lookup::new(usage, reach.policies.len());
        for &r in &reach.policies {
            if let Some(policy) = self.policy_at(r, now_ms) {
                amount::add(policy.used, by_metric.get(policy.metric()))?;
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
    /// [`Tree::apply_usage`].
    pub(crate) fn usage_reach(&self, set: &ChargeSet, usage: &Costs) -> Reach {
        self.reach(set, usage)
    }

    /// Charges `usage` to every node of the charge set and every matching
    /// policy, each once; usage never goes below zero, and stops at the
    /// bound of totals (10^18) for a commit, which is never refused. A
    /// charge has run [`Tree::check_usage`] with `reach`. Returns `path#policy` of the
    /// charged policies now at or past their allowance.
    pub(crate) fn apply_usage(
        &mut self,
        reach: Reach,
        set: &ChargeSet,
        usage: &Costs,
        now_ms: u64,
        limits: &Limits,
    ) -> Vec<String> {
        let reach = if reach.missing > 0 {
            for path in &set.paths {
                self.ensure_path(path);
            }
            self.usage_reach(set, usage)
        } else {
            reach
        };
        let mut over = Vec::new();
        let by_metric = Lookup::new(usage, reach.policies.len());
        for &r in &reach.policies {
            self.roll_policy(r, now_ms, limits);
            let Some(node) = self.node_mut(r.node) else { continue };
            let Some(policy) = node.policies.get_mut(r.index) else { continue };
            let delta = by_metric.get(policy.metric());
            policy.add_used_capped(delta, now_ms);
            if policy.is_over() {
                over.push(format!("{}#{}", names::display_path(&node.path), policy.name()));
            }
        }
        self.observe(&reach.policies, now_ms, limits);
        for &id in &reach.nodes {
            let Some(node) = self.node_mut(id) else { continue };
            // Usually every metric is spent already: updated in place, each
            // found once. A new metric, or many, go through Totals (which
            // indexes a long list), and the list is rebuilt.
            let in_place = node.spent.len() <= 16 && usage.len() <= 16;
            let spent = &mut node.spent;
            if in_place && usage.iter().all(|(m, _)| spent.iter().any(|(s, _)| s == m)) {
                for (metric, delta) in usage {
                    if let Some((_, total)) = spent.iter_mut().find(|(s, _)| s == metric) {
                        *total = amount::add_saturating(*total, *delta);
                    }
                }
                continue;
            }
            let mut spent = Totals::of(std::mem::take(&mut node.spent).into_vec(), usage.len());
            for (metric, delta) in usage {
                let current = spent.get(metric);
                let updated = amount::add_saturating(current, *delta);
                spent.set(metric, updated);
            }
            node.spent = spent.into_costs().into_boxed_slice();
        }
        over
    }

    // ----- events --------------------------------------------------------

    /// Appends an event to the log, numbering it.
    pub(crate) fn emit(&mut self, mut event: Event, limits: &Limits) {
        event.seq = self.next_event_seq;
        self.next_event_seq += 1;
        self.events.push_back(event);
        while self.events.len() > limits.events_len.max(1) {
            self.events.pop_front();
        }
    }

    /// Fires the warnings and `over` that the policies now cross.
    pub(crate) fn observe(&mut self, refs: &[PolicyRef], now_ms: u64, limits: &Limits) {
        for &r in refs {
            let Some(node) = self.node_mut(r.node) else { continue };
            let Some(policy) = node.policies.get_mut(r.index) else { continue };
            // Usually nothing fires: decide that before touching the path.
            if !policy.may_alert() {
                continue;
            }
            let events = alerts(policy, now_ms, &node.path);
            for event in events {
                self.emit(event, limits);
            }
        }
    }

    /// Applies the resets due to a policy, with their `reset` and
    /// `rollover` events.
    pub(crate) fn roll_policy(&mut self, r: PolicyRef, now_ms: u64, limits: &Limits) {
        let Some(node) = self.node_mut(r.node) else { return };
        let Some(policy) = node.policies.get_mut(r.index) else { return };
        let closed = policy.roll(now_ms);
        policy.rearm();
        if closed == 0 {
            return;
        }
        let events = period_events(policy, &node.path, now_ms, closed);
        for event in events {
            self.emit(event, limits);
        }
    }

    /// The events after `since`, oldest first, at most `count`.
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

    // ----- reading -------------------------------------------------------

    /// A node and its descendants down to `depth` levels, visiting at most
    /// `budget` nodes (preorder, children by name), so that a large tree
    /// never stalls the server.
    fn view(
        &self,
        id: NodeId,
        depth: usize,
        budget: &mut usize,
        now_ms: u64,
        due: Option<&DueRelease>,
    ) -> Option<NodeView> {
        let node = self.node(id)?;
        *budget = budget.saturating_sub(1);
        let mut children = Vec::new();
        let mut more = 0;
        if depth > 0 {
            let total = self.children(id).count();
            // At most `budget` children are visited; only those are sorted.
            for child in self.sorted_children(id, *budget) {
                if *budget == 0 {
                    break;
                }
                children.extend(self.view(child, depth - 1, budget, now_ms, due));
            }
            more = total - children.len();
        }
        let policies: Vec<PolicyView> = node
            .policies
            .iter()
            .map(|p| {
                let mut p = p.at(now_ms);
                let held = held_after(due, id, p.generation, p.held);
                if held != p.held {
                    p.to_mut().held = held;
                }
                PolicyView::of(&p, now_ms)
            })
            .collect();
        Some(NodeView {
            path: names::display_path(&node.path).to_string(),
            spent: node.spent.to_vec(),
            status: policies.iter().map(|p| p.status).max().unwrap_or(Status::None),
            policies,
            children,
            more,
        })
    }

    fn not_found(path: &str) -> Error {
        Error::NotFound(format!("path '{}'", names::display_path(path)))
    }

    /// What reads look through: the holds due by `due_ms` no longer held
    /// (see `due`); `None` when nothing is due.
    fn due_for_read(&self, due_ms: u64) -> Option<DueRelease> {
        self.has_due_holds(due_ms).then(|| self.due_release(due_ms))
    }

    /// `QUOTA.GET`: one node without its children, as of `now_ms` (resets
    /// due by then shown, not applied), holds as stored.
    pub fn get(&self, path: &str, now_ms: u64) -> Result<NodeView> {
        self.get_at(path, now_ms, 0)
    }

    /// [`Tree::get`] also showing the expiry due by `due_ms` as applied
    /// (`QUOTA.GET` on a primary; a replica shows none: its primary
    /// replicates expiry).
    pub fn get_at(&self, path: &str, now_ms: u64, due_ms: u64) -> Result<NodeView> {
        let due = self.due_for_read(due_ms);
        self.find(path)
            .and_then(|id| self.view(id, 0, &mut 1, now_ms, due.as_ref()))
            .ok_or_else(|| Self::not_found(path))
    }

    /// `QUOTA.TREE`: a node and its descendants down to `depth` levels, at
    /// most `max_nodes` of them, holds as stored.
    pub fn tree_view(&self, path: &str, depth: usize, max_nodes: usize, now_ms: u64) -> Result<TreeView> {
        self.tree_view_at(path, depth, max_nodes, now_ms, 0)
    }

    /// [`Tree::tree_view`] also showing the expiry due by `due_ms`.
    pub fn tree_view_at(
        &self,
        path: &str,
        depth: usize,
        max_nodes: usize,
        now_ms: u64,
        due_ms: u64,
    ) -> Result<TreeView> {
        let id = self.find(path).ok_or_else(|| Self::not_found(path))?;
        let mut budget = max_nodes.max(1);
        let due = self.due_for_read(due_ms);
        let root = self
            .view(id, depth.min(names::MAX_DEPTH_HARD), &mut budget, now_ms, due.as_ref())
            .ok_or_else(|| Self::not_found(path))?;
        let nodes = max_nodes.max(1) - budget;
        fn cut(view: &NodeView) -> bool {
            view.more > 0 || view.children.iter().any(cut)
        }
        let truncated = cut(&root);
        Ok(TreeView { root, nodes, truncated })
    }

    /// Checks the invariants that must never break: on every policy, held
    /// equals the sum of the live holds that match it now (reach it, pass
    /// its filter, hold its metric), nothing is negative, and the indexes
    /// agree with the data. Used by tests and after loading from disk.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let mut expected: HashMap<(NodeId, u64), Decimal> = HashMap::new();
        for hold in self.holds.values() {
            let mut lines = Vec::new();
            for r in self.reach(&hold.set, &hold.metrics()).policies {
                if let Some(policy) = self.policy(r) {
                    *expected.entry((r.node, policy.generation)).or_default() += hold.held_of(policy.metric());
                    lines.push(Line { node: r.node, generation: policy.generation });
                }
            }
            // The lines are stored: they must be those a load derives.
            sort_lines(&mut lines);
            if hold.lines != lines {
                return Err(format!("hold '{}' counts on other policies than it matches", hold.id));
            }
        }
        let mut live = 0;
        for (index, node) in self.nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            live += 1;
            if self.find(&node.path) != Some(index as NodeId) {
                return Err(format!("path index disagrees for '{}'", node.path));
            }
            for policy in &node.policies {
                let want = expected.get(&(index as NodeId, policy.generation)).copied().unwrap_or_default();
                if policy.held != want {
                    return Err(format!(
                        "held {} != live holds {} at '{}#{}'",
                        policy.held,
                        want,
                        node.path,
                        policy.name()
                    ));
                }
                if policy.used.is_sign_negative() && !policy.used.is_zero() {
                    return Err(format!("negative used at '{}#{}'", node.path, policy.name()));
                }
            }
        }
        if live != self.node_count || self.index.len() != live {
            return Err("node count disagrees".into());
        }
        if self.hold_expiry.len() != self.holds.len() {
            return Err("hold expiry index disagrees".into());
        }
        Ok(())
    }
}
