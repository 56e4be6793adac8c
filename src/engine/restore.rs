//! Restoring a tree: [`Tree::restore`] builds a tree from its stored
//! parts and validates everything, so that a tree loaded from disk keeps
//! the same invariants as one built by commands.
//!
//! *Stored parts* ([`Parts`]) are a tree as plain data, independent of any
//! encoding: the arena of nodes (a free slot is `None`), each node with its
//! children by segment and its policies as configuration plus state, the
//! live holds in expiry order, the remembered ids in forgetting order and
//! the event log. `persist` decodes bytes of each encoding version into
//! parts; only this file knows how the tree's indexes (path index, sibling
//! links, free list, expiry sets, per-node hold counts) are derived from
//! them. Anything out of range is an error, never a panic or a tree that
//! breaks its invariants.
//!
//! Lua twin: none. The Lua library keeps a tree in Redis keys, read node
//! by node as a command needs them (`open_tree`, `load_nodes`,
//! `unpack_node` in lua/src/60_tree.lua), and has no load step.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use rust_decimal::Decimal;

use crate::access::{Access, AccessCheck, MAX_RULES};
use crate::amount;
use crate::events::Event;
use crate::hold::{DoneEntry, Hold, ItemState};
use crate::names;
use crate::outcome::Costs;
use crate::plan::Plan;
use crate::policy::{Closed, HISTORY_LEN, MAX_GRANTS, MAX_WARN, Policy, PolicySpec, StoredGrants, validate_grant};
use crate::tree::{Node, NodeId, Tree};
use crate::window::{ROLLING_BUCKETS_KEPT, ROLLING_MAX_MS, ROLLING_MIN_MS, Unit, Window};

/// Largest time (Unix ms) or counter accepted from disk: 2^53, some 285,000
/// years, so that no arithmetic on a stored value can wrap.
pub const MAX_TIME: u64 = 1 << 53;

/// Most events a stored log may hold (the largest `events_len`).
const MAX_EVENTS: usize = 100_000;

/// A tree as plain stored data (see the module documentation).
#[derive(Debug, Clone)]
pub struct Parts {
    /// Counter behind generated reservation ids.
    pub seq: u64,
    /// Counter behind policy generations.
    pub next_generation: u64,
    /// The arena: node `i` is `nodes[i]`, a free slot `None`; node 0 is
    /// the root.
    pub nodes: Vec<Option<StoredNode>>,
    /// Live holds, soonest expiring first.
    pub holds: Vec<Hold>,
    /// Finished reservations and charges, soonest forgotten first.
    pub done: Vec<DoneEntry>,
    /// The `seq` the next event gets.
    pub next_event_seq: u64,
    /// The latest events, oldest first.
    pub events: VecDeque<Event>,
    /// What the tree knows of its plan (all empty for a tree that never
    /// followed one).
    pub plan: StoredPlanState,
}

/// A tree's plan state as stored: the snapshot of the plan it follows,
/// its plan epoch, and per arena slot the node's plan epoch and which of
/// its policies come from the plan (indices). `nodes` is empty, or one
/// entry per slot (a free slot `(0, [])`).
#[derive(Debug, Clone, Default)]
pub struct StoredPlanState {
    pub plan: Option<Arc<Plan>>,
    pub epoch: u32,
    pub nodes: Vec<(u32, Vec<u32>)>,
}

/// A node as stored: its children as a map from segment to node id.
#[derive(Debug, Clone)]
pub struct StoredNode {
    pub path: String,
    pub parent: Option<NodeId>,
    pub children: BTreeMap<String, NodeId>,
    pub policies: Vec<StoredPolicy>,
    pub spent: Costs,
    /// Encoding 4: the node's access rules (None when it has none).
    pub access: Option<Box<Access>>,
    /// Encoding 5: the node's usage buckets (None when it has none).
    pub usage: Option<Box<crate::usage::Usage>>,
    /// Encoding 5: the node's note, tags and archived flag (validated
    /// when decoded).
    pub labels: Option<Box<crate::labels::Labels>>,
}

/// A policy as stored: its configuration as `QUOTA.SET` gives it, then
/// its state in the current period.
#[derive(Debug, Clone)]
pub struct StoredPolicy {
    pub name: String,
    pub spec: PolicySpec,
    pub generation: u64,
    pub used: Decimal,
    pub held: Decimal,
    pub period_start_ms: u64,
    pub rolled_over: Decimal,
    /// Encodings 1 and 2: the first release's per-period grant (loads as
    /// one `PERIOD` grant `legacy`); 0 in encoding 3.
    pub granted: Decimal,
    pub history: VecDeque<Closed>,
    pub buckets: VecDeque<(u64, Decimal)>,
    pub fired: u16,
    pub over_fired: bool,
    /// Encoding 3: grants, drawn, `LOW` (None for older encodings).
    pub grants: Option<StoredGrants>,
}

impl StoredPolicy {
    /// The policy, once validated; derived fields are refreshed later.
    fn into_policy(self) -> Policy {
        let mut policy = Policy::new(&self.name, self.spec, self.generation, self.period_start_ms);
        policy.used = self.used;
        policy.held = self.held;
        policy.period_start_ms = self.period_start_ms;
        policy.fired = self.fired;
        policy.over_fired = self.over_fired;
        policy.restore(self.rolled_over, self.history, self.buckets);
        match self.grants {
            Some(grants) => policy.restore_grants(grants),
            None => policy.convert_legacy(self.granted),
        }
        policy
    }
}

impl Tree {
    /// The tree whose stored parts are `parts`, with every index rebuilt,
    /// or why the parts cannot be a tree. Validates first (counters, the
    /// event log, every node and policy), then builds the arena and its
    /// indexes, then adds holds and remembered ids (each checked against
    /// the tree built so far), and last recounts what holds derive and
    /// checks the invariants.
    pub fn restore(parts: Parts) -> Result<Tree, String> {
        validate_counters_and_events(&parts)?;
        validate_nodes(&parts.nodes, parts.next_generation)?;
        validate_plan_state(&parts)?;
        let Parts { seq, next_generation, nodes, holds, done, next_event_seq, events, plan } = parts;
        let mut tree = Tree { seq, next_generation, next_event_seq, events, ..Tree::default() };
        tree.restore_nodes(nodes)?;
        tree.restore_plan_state(plan);
        tree.restore_holds(holds)?;
        tree.restore_done(done)?;
        // Held and the lines of live holds are derived: counted again from the
        // holds and policies as they are, so a tree stored when holds counted
        // only on the policies of their reserve loads with the rule of now.
        tree.recount_all()?;
        tree.check_invariants()?;
        Ok(tree)
    }

    /// Fills the arena from validated nodes and derives the sibling links,
    /// the path index, the node count and the free list.
    fn restore_nodes(&mut self, stored: Vec<Option<StoredNode>>) -> Result<(), String> {
        self.nodes = Vec::with_capacity(stored.len());
        let mut links: Vec<(NodeId, Vec<NodeId>)> = Vec::new();
        for (index, slot) in stored.into_iter().enumerate() {
            let Some(stored) = slot else {
                self.free.push(index as NodeId);
                self.nodes.push(None);
                continue;
            };
            let mut node = Node::new(&stored.path, stored.parent);
            node.policies = stored.policies.into_iter().map(StoredPolicy::into_policy).collect();
            node.spent = stored.spent.into_boxed_slice();
            node.access = stored.access;
            node.usage = stored.usage;
            self.any_archived |= stored.labels.as_ref().is_some_and(|l| l.archived);
            node.labels = stored.labels;
            self.nodes.push(Some(node));
            if !stored.children.is_empty() {
                links.push((index as NodeId, stored.children.into_values().collect()));
            }
        }
        // Validated: every child names its parent, and every parent its
        // children. Linking in reverse keeps each list sorted by name.
        for (parent, children) in links {
            for &child in children.iter().rev() {
                self.link_child(parent, child);
            }
        }
        self.index_all()?;
        // The lowest free slot is taken first, as in the tree that was saved
        // (`Tree::delete_path` keeps them in this order).
        self.free.reverse();
        // Derived fields, only once every amount is known to be in range.
        for policy in self.nodes.iter_mut().flatten().flat_map(|n| n.policies.iter_mut()) {
            policy.refresh();
        }
        Ok(())
    }

    /// Takes the validated plan state: the snapshot, the epochs, and each
    /// policy's source.
    fn restore_plan_state(&mut self, state: StoredPlanState) {
        self.plan = state.plan;
        self.plan_epoch = state.epoch;
        for (slot, (epoch, sources)) in self.nodes.iter_mut().zip(state.nodes) {
            let Some(node) = slot else { continue };
            node.plan_epoch = epoch;
            for i in sources {
                if let Some(policy) = node.policies.get_mut(i as usize) {
                    policy.from_plan = true;
                }
            }
        }
    }

    /// Adds every node of the arena to the path index and counts them.
    fn index_all(&mut self) -> Result<(), String> {
        for index in 0..self.nodes.len() {
            if self.nodes[index].is_none() {
                continue;
            }
            if !self.index_insert(index as NodeId) {
                return Err(format!(
                    "path '{}' appears twice",
                    names::clip(self.nodes[index].as_ref().map_or("", |n| &n.path))
                ));
            }
            self.node_count += 1;
        }
        Ok(())
    }

    /// Adds the live holds, in expiry order, counting them on their nodes.
    fn restore_holds(&mut self, holds: Vec<Hold>) -> Result<(), String> {
        for hold in holds {
            validate_hold(self, &hold, true)?;
            for path in &hold.set.paths {
                if let Some(node) = self.find(path).and_then(|id| self.node_mut(id)) {
                    node.live_holds += 1;
                }
            }
            self.hold_expiry.insert((hold.expires_at_ms, hold.id.clone()));
            if self.holds.insert(hold.id.clone(), hold).is_some() {
                return Err("a hold id appears twice".into());
            }
        }
        Ok(())
    }

    /// Adds the remembered ids, which must not be live holds.
    fn restore_done(&mut self, done: Vec<DoneEntry>) -> Result<(), String> {
        for entry in done {
            names::parse_name(&entry.id, "finished id").map_err(|e| e.to_string())?;
            if let Some(hold) = &entry.hold {
                validate_hold(self, hold, false)?;
                if hold.id != entry.id {
                    return Err(format!("finished id '{}' holds another reservation", names::clip(&entry.id)));
                }
            }
            if entry.forget_at_ms > MAX_TIME {
                return Err(format!("finished id '{}' has a time out of range", names::clip(&entry.id)));
            }
            if self.holds.contains_key(&entry.id) {
                return Err(format!("id '{}' is both live and finished", names::clip(&entry.id)));
            }
            if self.done.contains_key(&entry.id) {
                return Err("a finished id appears twice".into());
            }
            self.remember(entry);
        }
        Ok(())
    }
}

/// The counters are in range and the event log is numbered consecutively
/// up to the next `seq`, with valid names in every event.
fn validate_counters_and_events(parts: &Parts) -> Result<(), String> {
    if [parts.seq, parts.next_generation, parts.next_event_seq].iter().any(|&n| n > MAX_TIME) {
        return Err("a counter is out of range".into());
    }
    let events = &parts.events;
    let consecutive = events.iter().zip(events.iter().skip(1)).all(|(a, b)| a.seq + 1 == b.seq);
    if !consecutive
        || events.back().is_some_and(|e| e.seq + 1 != parts.next_event_seq)
        || events.len() > MAX_EVENTS
        || parts.next_event_seq == 0
    {
        return Err("the event log is out of order".into());
    }
    for event in events {
        validate_event(event)?;
    }
    Ok(())
}

/// Node 0 is the root, every node is valid, and a generation names one
/// policy in the whole tree (a hold's line finds its policy by it).
fn validate_nodes(nodes: &[Option<StoredNode>], next_generation: u64) -> Result<(), String> {
    match nodes.first() {
        Some(Some(root)) if root.path.is_empty() && root.parent.is_none() => {}
        _ => return Err("the tree has no root".into()),
    }
    let mut generations = HashSet::new();
    for (index, node) in nodes.iter().enumerate() {
        if let Some(node) = node {
            validate_node(nodes, next_generation, index, node)?;
            if !node.policies.iter().all(|p| generations.insert(p.generation)) {
                return Err(format!("node {index}: two policies share a generation"));
            }
        }
    }
    Ok(())
}

/// One node: its path, its links both ways, its policies and its spent.
fn validate_node(
    nodes: &[Option<StoredNode>],
    next_generation: u64,
    index: usize,
    node: &StoredNode,
) -> Result<(), String> {
    let bad = |why: &str| format!("node {index} ('{}'): {why}", names::clip(&node.path));
    validate_links(nodes, index, node).map_err(bad)?;
    let mut seen: HashSet<&str> = HashSet::new();
    for policy in &node.policies {
        names::parse_name(&policy.name, "policy").map_err(|e| e.to_string())?;
        names::parse_stored_metric(&policy.spec.metric).map_err(|e| e.to_string())?;
        if !seen.insert(&policy.name) {
            return Err(bad("duplicate policy name"));
        }
        validate_policy(policy, next_generation, index, bad)?;
    }
    for (metric, value) in &node.spent {
        names::parse_stored_metric(metric).map_err(|e| e.to_string())?;
        non_negative(*value)?;
    }
    if let Some(access) = &node.access {
        validate_access(access).map_err(bad)?;
    }
    if let Some(usage) = &node.usage {
        crate::usage::validate_stored(usage).map_err(|e| bad(&e))?;
    }
    if let Some(labels) = &node.labels {
        crate::labels::validate(labels).map_err(|e| bad(&e))?;
    }
    Ok(())
}

/// A node's stored rules: at least one, at most [`MAX_RULES`], each list
/// sorted without duplicates, every name one `QUOTA.ALLOW` accepts.
fn validate_access(access: &Access) -> Result<(), &'static str> {
    if access.is_empty() || access.len() > MAX_RULES {
        return Err("access rules empty or beyond the bound");
    }
    for list in [&access.allow, &access.deny] {
        if list.windows(2).any(|p| p[0] >= p[1]) {
            return Err("access rules out of order or repeated");
        }
        let valid = |text: &str| crate::access::parse_part(text, "service").is_ok();
        if !list.iter().all(|e| valid(&e.service) && e.model.as_deref().is_none_or(valid)) {
            return Err("an access rule names an invalid service or model");
        }
    }
    Ok(())
}

/// A stored access check (of a remembered charge's answer): a display
/// path, and valid names.
pub(crate) fn validate_access_check(check: &AccessCheck) -> Result<(), String> {
    let path = if check.path == "/" { "" } else { check.path.as_str() };
    let canonical = !path.is_empty() || check.path == "/";
    let path_ok = canonical && names::parse_path(path, names::MAX_DEPTH_HARD).ok().as_deref() == Some(path);
    let named = [&check.service, &check.model]
        .iter()
        .all(|n| n.as_deref().is_none_or(|n| names::parse_name(n, "service").is_ok()));
    if path_ok && named && (check.model.is_none() || check.service.is_some()) {
        Ok(())
    } else {
        Err("a stored access check is invalid".into())
    }
}

/// A node's path is canonical, and its parent and children name it back.
fn validate_links(nodes: &[Option<StoredNode>], index: usize, node: &StoredNode) -> Result<(), &'static str> {
    if index > 0 {
        if names::parse_path(&node.path, names::MAX_DEPTH_HARD).ok().as_deref() != Some(node.path.as_str())
            || node.path.is_empty()
        {
            return Err("invalid path");
        }
        let Some(parent) = node.parent.filter(|&p| (p as usize) < nodes.len()).and_then(|p| nodes[p as usize].as_ref())
        else {
            return Err("missing parent");
        };
        if parent.path != names::parent_of(&node.path)
            || parent.children.get(names::leaf_of(&node.path)) != Some(&(index as NodeId))
        {
            return Err("parent and child disagree");
        }
    }
    for (segment, &child) in &node.children {
        let Some(c) = nodes.get(child as usize).and_then(Option::as_ref) else { return Err("missing child") };
        if c.parent != Some(index as NodeId) || names::leaf_of(&c.path) != segment {
            return Err("child and parent disagree");
        }
    }
    Ok(())
}

/// One policy's configuration and state, in the order the checks have
/// always run (a corrupt payload fails with the same error). `bad` words
/// a reason as an error about the node.
fn validate_policy(
    policy: &StoredPolicy,
    next_generation: u64,
    index: usize,
    bad: impl Fn(&str) -> String,
) -> Result<(), String> {
    if policy.generation >= next_generation {
        return Err(bad("policy generation from the future"));
    }
    let warn = &policy.spec.warn;
    if warn.iter().any(|&w| !(1..=100).contains(&w)) || warn.windows(2).any(|p| p[0] >= p[1]) || warn.len() > MAX_WARN {
        return Err(bad("warning thresholds out of range or order"));
    }
    policy.spec.validate().map_err(|e| e.to_string())?;
    validate_window(&policy.spec.window).map_err(|why| format!("node {index}: {why}"))?;
    let mut amounts = vec![policy.spec.limit, policy.used, policy.held, policy.rolled_over, policy.granted];
    amounts.extend(policy.spec.rollover);
    for closed in &policy.history {
        amounts.extend([closed.used, closed.rolled_over, closed.granted]);
        allowance_in_range(closed.allowance)?;
    }
    amounts.extend(policy.buckets.iter().map(|(_, a)| *a));
    for value in amounts {
        non_negative(value)?;
    }
    let times = [policy.period_start_ms].into_iter().chain(policy.history.iter().flat_map(|c| [c.start_ms, c.end_ms]));
    if times.chain(policy.buckets.iter().map(|(b, _)| *b)).any(|t| t > MAX_TIME) {
        return Err(bad("time out of range"));
    }
    if policy.history.len() > HISTORY_LEN {
        return Err(bad("history too long"));
    }
    if let Some(grants) = &policy.grants {
        validate_grants(policy, grants).map_err(|why| bad(&why))?;
    }
    // An INFLIGHT policy (its window, mode and LOW are checked by the
    // spec) never records usage and takes no grants.
    if policy.spec.inflight
        && (!policy.used.is_zero()
            || !policy.granted.is_zero()
            || policy.grants.as_ref().is_some_and(|g| *g != StoredGrants::default()))
    {
        return Err(bad("an INFLIGHT policy with usage or grants"));
    }
    match policy.spec.window.bucket_ms() {
        Some(_) => {
            let ordered = policy.buckets.iter().zip(policy.buckets.iter().skip(1)).all(|(a, b)| a.0 < b.0);
            let sum: Decimal = policy.buckets.iter().map(|(_, a)| *a).sum();
            if !ordered || policy.buckets.len() as u64 > ROLLING_BUCKETS_KEPT || sum != policy.used {
                return Err(bad("rolling buckets disagree with usage"));
            }
        }
        None if !policy.buckets.is_empty() => return Err(bad("buckets without a rolling window")),
        None => {}
    }
    Ok(())
}

/// A policy's stored grants: each grant valid, ids unique among the live
/// and the remembered, seqs below the next, counts within bounds, and the
/// allowance they make within the bound of totals.
fn validate_grants(policy: &StoredPolicy, grants: &StoredGrants) -> Result<(), String> {
    if !policy.granted.is_zero() {
        return Err("a legacy granted beside grants".into());
    }
    if grants.live.len() > MAX_GRANTS || grants.ended.len() > MAX_GRANTS || grants.next_seq > MAX_TIME {
        return Err("too many grants".into());
    }
    non_negative(grants.drawn)?;
    if let Some(low) = grants.low {
        non_negative(low)?;
    }
    let mut ids = HashSet::new();
    let mut seqs = HashSet::new();
    let mut granted = Decimal::ZERO;
    for (grant, live) in grants.live.iter().map(|g| (g, true)).chain(grants.ended.iter().map(|(_, g)| (g, false))) {
        validate_grant(grant, live)?;
        if !ids.insert(grant.id.as_str())
            || (live && !seqs.insert(grant.seq))
            || grant.seq >= grants.next_seq
            || grant.expires_at_ms > MAX_TIME
            || grant.created_at_ms > MAX_TIME
        {
            return Err(format!("grant '{}' is out of order", names::clip(&grant.id)));
        }
        granted = amount::add(granted, grant.remaining).map_err(|e| e.to_string())?;
    }
    if grants.ended.iter().any(|(at, _)| *at > MAX_TIME) {
        return Err("a grant ended at a time out of range".into());
    }
    // Own, drawn and granted are each within the bound (granted summed
    // above); their sum, the allowance, may not be: a period close rolls
    // the own allowance over beside grants that keep their rest.
    amount::add(policy.spec.limit, policy.rolled_over).map_err(|e| e.to_string())?;
    Ok(())
}

/// An allowance as stored (a closed period's): own + drawn + granted, each
/// within the bound of totals, so at most three times it.
fn allowance_in_range(value: Decimal) -> Result<(), String> {
    let bound = amount::MAX_TOTAL * Decimal::from(3);
    if value.scale() > amount::MAX_SCALE || (value.is_sign_negative() && !value.is_zero()) || value > bound {
        return Err(format!("stored allowance {value} is out of range"));
    }
    Ok(())
}

/// A stored amount that may never be negative (limits, usage, holds).
fn non_negative(value: Decimal) -> Result<(), String> {
    amount::validate_stored(value).map_err(|e| e.to_string())?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err(format!("stored amount {value} is negative"));
    }
    Ok(())
}

/// The names an event carries are valid names: they are replied and
/// published as they are.
fn validate_event(event: &Event) -> Result<(), String> {
    let bad = || format!("event {} names an invalid path, policy, metric or id", event.seq);
    if names::parse_path(&event.path, names::MAX_DEPTH_HARD).ok().as_deref() != Some(event.path.as_str()) {
        return Err(bad());
    }
    // A `disallowed` event has its access fields, and only it.
    let disallowed = event.kind == crate::events::EventKind::Disallowed;
    match &event.access {
        Some(a) if disallowed => {
            let named = [&a.service, &a.model]
                .iter()
                .all(|n| n.as_deref().is_none_or(|n| names::parse_name(n, "service").is_ok()));
            if !named || (a.model.is_some() && a.service.is_none()) {
                return Err(bad());
            }
        }
        None if !disallowed => {}
        _ => return Err(bad()),
    }
    // Only `expired` and `disallowed` events carry a request's META.
    if let Some(meta) = &event.meta {
        let carries = disallowed || event.kind == crate::events::EventKind::Expired;
        if !carries || crate::meta::validate(meta).is_err() {
            return Err(format!("event {} has an invalid META", event.seq));
        }
    }
    let named = event.policy.as_deref().is_none_or(|p| names::parse_name(p, "policy").is_ok())
        && event.id.as_deref().is_none_or(|id| names::parse_name(id, "id").is_ok())
        && event
            .metric
            .iter()
            .chain(event.amounts.iter().map(|(m, _)| m))
            .all(|m| names::parse_stored_metric(m).is_ok());
    if named { Ok(()) } else { Err(bad()) }
}

/// A window as `QUOTA.SET` could make it: a `month` anchor is a day 1–31,
/// a `week` anchor an ISO weekday 1–7, a `year` anchor month × 100 + day
/// of a date that exists in a leap year (02-29 included), `hour` and `day`
/// have anchor 1, and an `hour` window has no zone.
fn validate_window(window: &Window) -> Result<(), String> {
    let ok = match window {
        Window::None => true,
        Window::Calendar { unit: Unit::Month, anchor, .. } => (1..=31).contains(anchor),
        Window::Calendar { unit: Unit::Week, anchor, .. } => (1..=7).contains(anchor),
        Window::Calendar { unit: Unit::Year, anchor, .. } => {
            let (month, day) = (i64::from(anchor / 100), i64::from(anchor % 100));
            (1..=12).contains(&month) && day >= 1 && day <= crate::window::days_in_month(2000, month)
        }
        Window::Calendar { unit: Unit::Hour, anchor, tz } => *anchor == 1 && tz.is_utc(),
        Window::Calendar { anchor, .. } => *anchor == 1,
        Window::Rolling { duration_ms } => (ROLLING_MIN_MS..=ROLLING_MAX_MS).contains(duration_ms),
    };
    if ok { Ok(()) } else { Err(format!("invalid window {window:?}")) }
}

fn validate_hold(tree: &Tree, hold: &Hold, live: bool) -> Result<(), String> {
    names::parse_name(&hold.id, "id").map_err(|e| e.to_string())?;
    if let Some(meta) = &hold.meta {
        crate::meta::validate(meta).map_err(|e| format!("hold '{}': {e}", names::clip(&hold.id)))?;
    }
    // A settled finished hold keeps no paths (see `Tree::finish`); a live
    // or expired one always has them. Of the finished, only an expired
    // one (which keeps its paths, also after a late commit) keeps META.
    let settled = !live && !hold.items.iter().any(|i| i.state == ItemState::Expired);
    if hold.items.is_empty() || (hold.set.paths.is_empty() && !settled) {
        return Err(format!("hold '{}' is empty", names::clip(&hold.id)));
    }
    if !live && hold.meta.is_some() && hold.set.paths.is_empty() {
        return Err(format!("finished hold '{}' keeps a META it never expired with", names::clip(&hold.id)));
    }
    for item in &hold.items {
        for (metric, value) in &item.cost {
            names::parse_stored_metric(metric).map_err(|e| e.to_string())?;
            non_negative(*value)?;
        }
    }
    if hold.created_at_ms > MAX_TIME || hold.expires_at_ms > MAX_TIME {
        return Err(format!("hold '{}' has a time out of range", names::clip(&hold.id)));
    }
    for path in &hold.set.paths {
        if names::parse_path(path, names::MAX_DEPTH_HARD).ok().as_deref() != Some(path.as_str()) {
            return Err(format!("hold '{}' names an invalid path", names::clip(&hold.id)));
        }
        if live && tree.find(path).is_none() {
            return Err(format!("hold '{}' names a path that does not exist", names::clip(&hold.id)));
        }
    }
    if live && !hold.items.iter().any(|i| i.state == ItemState::Held) {
        return Err(format!("live hold '{}' holds nothing", names::clip(&hold.id)));
    }
    Ok(())
}

/// The plan state must fit the nodes: one entry per slot (or none), a
/// free slot with none, source indices in range and each once; a tree
/// that follows no plan and never did has no epochs and no plan
/// policies; a synced node has only plan policies its plan gives there.
fn validate_plan_state(parts: &Parts) -> Result<(), String> {
    let state = &parts.plan;
    if state.nodes.is_empty() {
        return match state.plan.is_none() && state.epoch == 0 {
            true => Ok(()),
            false => Err("a tree that follows a plan stores its nodes' plan state".into()),
        };
    }
    if state.nodes.len() != parts.nodes.len() {
        return Err("the plan state does not match the nodes".into());
    }
    for (slot, (epoch, sources)) in parts.nodes.iter().zip(&state.nodes) {
        let Some(node) = slot else {
            if *epoch != 0 || !sources.is_empty() {
                return Err("a free slot has a plan state".into());
            }
            continue;
        };
        let mut seen = HashSet::new();
        for &i in sources {
            if i as usize >= node.policies.len() || !seen.insert(i) {
                return Err(format!("bad plan policy index at '{}'", names::clip(&node.path)));
            }
        }
        if state.plan.is_none() && state.epoch == 0 && (*epoch != 0 || !sources.is_empty()) {
            return Err("plan policies in a tree that never followed a plan".into());
        }
        if *epoch == state.epoch {
            let desired = state.plan.as_ref().map(|p| p.policies_for(&node.path)).unwrap_or_default();
            for &i in sources {
                let name = &node.policies[i as usize].name;
                if !desired.iter().any(|(n, _)| *n == name.as_str()) {
                    return Err(format!(
                        "policy '{}' at '{}' is not the plan's",
                        names::clip(name),
                        names::clip(&node.path)
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{Mode, Warn};

    /// A root with one policy and one child `a`.
    fn parts() -> Parts {
        let spec = PolicySpec {
            metric: "credits".into(),
            limit: 100.into(),
            mode: Mode::Strict,
            window: Window::None,
            warn: Warn::default(),
            rollover: None,
            service: None,
            model: None,
            low: None,
            inflight: false,
        };
        let policy = StoredPolicy {
            name: "cap".into(),
            spec,
            generation: 1,
            used: 5.into(),
            held: Decimal::ZERO,
            period_start_ms: 0,
            rolled_over: Decimal::ZERO,
            granted: Decimal::ZERO,
            history: VecDeque::new(),
            buckets: VecDeque::new(),
            fired: 0,
            over_fired: false,
            grants: None,
        };
        let root = StoredNode {
            path: String::new(),
            parent: None,
            children: BTreeMap::from([("a".to_string(), 1)]),
            policies: vec![policy],
            spent: Costs::new(),
            access: None,
            usage: None,
            labels: None,
        };
        let a = StoredNode {
            path: "a".into(),
            parent: Some(0),
            children: BTreeMap::new(),
            policies: Vec::new(),
            spent: Costs::new(),
            access: None,
            usage: None,
            labels: None,
        };
        Parts {
            seq: 0,
            next_generation: 2,
            nodes: vec![Some(root), Some(a)],
            holds: Vec::new(),
            done: Vec::new(),
            next_event_seq: 1,
            events: VecDeque::new(),
            plan: StoredPlanState::default(),
        }
    }

    #[test]
    fn stored_parts_restore_a_tree_or_say_what_is_wrong() {
        let tree = Tree::restore(parts()).unwrap();
        assert_eq!(tree.path_count(), 2);
        assert_eq!(tree.get("", 0).unwrap().policies[0].used, Decimal::from(5));
        // change to the parts, the error it gives
        type Change = fn(&mut Parts);
        let rows: [(Change, &str); 8] = [
            (|p| p.seq = MAX_TIME + 1, "a counter is out of range"),
            (|p| p.next_event_seq = 0, "the event log is out of order"),
            (|p| p.nodes.clear(), "the tree has no root"),
            (|p| p.nodes[1].as_mut().unwrap().parent = Some(7), "node 0 (''): child and parent disagree"),
            (|p| p.nodes[0].as_mut().unwrap().children.clear(), "node 1 ('a'): parent and child disagree"),
            (
                |p| {
                    p.nodes[0].as_mut().unwrap().children.clear();
                    p.nodes[1].as_mut().unwrap().parent = Some(7);
                },
                "node 1 ('a'): missing parent",
            ),
            (|p| p.next_generation = 1, "node 0 (''): policy generation from the future"),
            (|p| p.nodes[0].as_mut().unwrap().policies[0].used = Decimal::from(-1), "stored amount -1 is negative"),
        ];
        for (change, want) in rows {
            let mut p = parts();
            change(&mut p);
            assert_eq!(Tree::restore(p).err().as_deref(), Some(want));
        }
    }

    /// Corruptions of the links a payload could carry (a cycle, a child
    /// claimed by two parents, a second node at a path, a free slot as a
    /// parent, an id past the arena) and a generation used twice: each is
    /// refused with a reason, never a panic or a tree.
    #[test]
    fn corrupt_links_and_generations_are_refused() {
        fn node(path: &str, parent: Option<NodeId>, children: &[(&str, NodeId)]) -> Option<StoredNode> {
            Some(StoredNode {
                path: path.into(),
                parent,
                children: children.iter().map(|(s, c)| (s.to_string(), *c)).collect(),
                policies: Vec::new(),
                spent: Costs::new(),
                access: None,
                usage: None,
                labels: None,
            })
        }
        type Change = fn(&mut Parts);
        let rows: [(Change, &str); 9] = [
            // a node its own parent
            (|p| p.nodes[1].as_mut().unwrap().parent = Some(1), "node 0 (''): child and parent disagree"),
            // the root names itself as a child
            (
                |p| {
                    p.nodes[0].as_mut().unwrap().children.insert("b".into(), 0);
                },
                "node 0 (''): child and parent disagree",
            ),
            // the root with a parent
            (|p| p.nodes[0].as_mut().unwrap().parent = Some(1), "the tree has no root"),
            // a -> a/b -> a: a cycle through both links
            (
                |p| {
                    p.nodes[1] = node("a", Some(2), &[("b", 2)]);
                    p.nodes.push(node("a/b", Some(1), &[("a", 1)]));
                },
                "node 0 (''): child and parent disagree",
            ),
            // a second node at path a, claimed by nobody
            (|p| p.nodes.push(node("a", Some(0), &[])), "node 2 ('a'): parent and child disagree"),
            // a/b listed as a child of the root too
            (
                |p| {
                    p.nodes[1] = node("a", Some(0), &[("b", 2)]);
                    p.nodes.push(node("a/b", Some(1), &[]));
                    p.nodes[0].as_mut().unwrap().children.insert("b".into(), 2);
                },
                "node 0 (''): child and parent disagree",
            ),
            // a free slot as a parent
            (
                |p| {
                    p.nodes[1] = None;
                    p.nodes.push(node("a", Some(1), &[]));
                    p.nodes[0].as_mut().unwrap().children.insert("a".into(), 2);
                },
                "node 0 (''): child and parent disagree",
            ),
            // a child id far past the arena
            (|p| p.nodes[1] = node("a", Some(0), &[("b", NodeId::MAX)]), "node 1 ('a'): missing child"),
            // two policies with one generation on different nodes
            (
                |p| {
                    let mut policy = p.nodes[0].as_ref().unwrap().policies[0].clone();
                    policy.name = "other".into();
                    p.nodes[1].as_mut().unwrap().policies.push(policy);
                },
                "node 1: two policies share a generation",
            ),
        ];
        for (i, (change, want)) in rows.into_iter().enumerate() {
            let mut p = parts();
            change(&mut p);
            assert_eq!(Tree::restore(p).err().as_deref(), Some(want), "row {i}");
        }
    }
}
