//! Held: what live holds set aside on the policies they match.
//!
//! A policy's *held* is the sum, in its metric, of the live holds that
//! match it now: whose charge set reaches its path, whose service and
//! model its filter matches, and that hold its metric. Each live hold
//! keeps one *line* per policy it counts on (node and generation), so a
//! release subtracts from exactly those. When a policy is created, or its
//! metric or filter changes, the holds it matches are counted again, and
//! a loaded tree recounts them all; [`Tree::check_invariants`] checks that
//! held and the lines agree with the holds.
//!
//! Lua twin: `holds_may_reach`, `holds_matching`, `recount` and
//! `OPS.drop_lines` in `lua/src/75_ops.lua`.

use std::collections::HashMap;

use rust_decimal::Decimal;

use crate::amount;
use crate::error::Result;
use crate::hold::{Hold, Line, sort_lines};
use crate::names;
use crate::outcome::Lookup;
use crate::paths::NodeId;
use crate::policy::PolicySpec;
use crate::tree::{PolicyRef, Tree};

/// The live holds by the paths they reach: under each path, the holds
/// whose charge set names it or a path below it, each once, in the order of
/// the tree's holds. A read that shows many stale nodes builds it once and
/// looks each node's holds up here instead of passing over every hold per
/// node (which cost nodes x holds).
#[derive(Debug)]
pub(crate) struct HoldsByPath<'a>(HashMap<&'a str, Vec<&'a Hold>>);

impl Tree {
    /// Whether a live hold may reach `path`: cheap, so that the common
    /// `QUOTA.SET` on a new or leaf path with no holds skips the pass over
    /// the tree's holds.
    /// Lua twin: `holds_may_reach` (lua/src/75_ops.lua).
    pub(crate) fn holds_may_reach(&self, path: &str) -> bool {
        match self.find(path) {
            None => false,
            Some(id) => {
                !self.holds.is_empty() && (self.node(id).is_some_and(|n| n.live_holds > 0) || self.has_children(id))
            }
        }
    }

    /// The live holds a policy configured as `spec` at `path` counts: those
    /// whose charge set reaches the path, whose service and model its
    /// filter matches, and that hold its metric; and their total held.
    /// Lua twin: `holds_matching` (lua/src/75_ops.lua).
    pub(crate) fn holds_matching(&self, path: &str, spec: &PolicySpec) -> Result<(Vec<String>, Decimal)> {
        self.holds_matching_with(path, spec, amount::add, None)
    }

    /// [`Tree::holds_matching`] whose total stops at the bound of totals
    /// instead of failing (a plan's sync never fails).
    /// With `reach`, only the holds it lists under `path` are looked at
    /// (the same holds, in the same order).
    pub(crate) fn holds_matching_saturating(
        &self,
        path: &str,
        spec: &PolicySpec,
        reach: Option<&HoldsByPath<'_>>,
    ) -> (Vec<String>, Decimal) {
        let add = |a: Decimal, b: Decimal| Ok(amount::add_saturating(a, b));
        self.holds_matching_with(path, spec, add, reach).unwrap_or_default()
    }

    /// The live holds under each path they reach ([`HoldsByPath`]).
    /// Lua twin: `OPS.holds_reaching` (lua/src/75_ops.lua).
    pub(crate) fn holds_by_path(&self) -> HoldsByPath<'_> {
        let mut by_path: HashMap<&str, Vec<&Hold>> = HashMap::new();
        for hold in self.holds.values() {
            for path in &hold.set.paths {
                for prefix in names::prefixes(path) {
                    let holds = by_path.entry(prefix).or_default();
                    if holds.last().is_none_or(|h| !std::ptr::eq(*h, hold)) {
                        holds.push(hold);
                    }
                }
            }
        }
        HoldsByPath(by_path)
    }

    fn holds_matching_with(
        &self,
        path: &str,
        spec: &PolicySpec,
        add: impl Fn(Decimal, Decimal) -> Result<Decimal>,
        reach: Option<&HoldsByPath<'_>>,
    ) -> Result<(Vec<String>, Decimal)> {
        let mut ids = Vec::new();
        let mut held = Decimal::ZERO;
        let candidates: Box<dyn Iterator<Item = &Hold>> = match reach {
            Some(reach) => Box::new(reach.0.get(path).into_iter().flatten().copied()),
            None => Box::new(self.holds.values()),
        };
        for hold in candidates {
            if hold.set.paths.iter().any(|p| names::is_within(p, path))
                && spec.matches(hold.set.service.as_deref(), hold.set.model.as_deref())
                && hold.items.iter().any(|i| i.cost.iter().any(|(m, _)| *m == spec.metric))
            {
                held = add(held, hold.held_of(&spec.metric))?;
                ids.push(hold.id.clone());
            }
        }
        Ok((ids, held))
    }

    /// Makes the policy at `r` count exactly the holds `ids` (which hold
    /// `held` of its metric): their lines name its generation, no other
    /// hold's line names it or the generation it had before (`old`).
    /// Lua twin: `recount`, `OPS.drop_lines` (lua/src/75_ops.lua).
    pub(crate) fn recount(&mut self, r: PolicyRef, old: Option<u64>, ids: &[String], held: Decimal) {
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

    /// Checks the invariants that must never break: on every policy, held
    /// equals the sum of the live holds that match it now (reach it, pass
    /// its filter, hold its metric), nothing is negative, and the indexes
    /// agree with the data. Used by tests and after loading from disk.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let mut expected: HashMap<(NodeId, u64), Decimal> = HashMap::new();
        for hold in self.holds.values() {
            let mut lines = Vec::new();
            for &r in &self.reach(&hold.set, &hold.metrics()).policies {
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
                policy.check_grants().map_err(|why| format!("{why} at '{}#{}'", node.path, policy.name()))?;
                if policy.inflight && !policy.used.is_zero() {
                    return Err(format!("an INFLIGHT policy recorded usage at '{}#{}'", node.path, policy.name()));
                }
            }
            if let Some(access) = &node.access {
                let sorted = |l: &[crate::access::Entry]| l.windows(2).all(|p| p[0] < p[1]);
                if access.is_empty()
                    || access.len() > crate::access::MAX_RULES
                    || !sorted(&access.allow)
                    || !sorted(&access.deny)
                {
                    return Err(format!("access rules out of order or bounds at '{}'", node.path));
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
