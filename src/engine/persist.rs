//! Encoding a tree for RDB, AOF rewrite and `DUMP`/`RESTORE`.
//!
//! The bytes are bincode (standard configuration) of `TreeData`: the
//! arena of nodes, the live holds in expiry order and the remembered ids in
//! forgetting order, so equal trees encode to equal bytes. Indexes (path
//! lookup, expiry sets, per-node hold counts) are rebuilt on load, and
//! everything read is validated: a corrupt payload is an error, never a
//! panic or a tree that breaks its invariants.
//!
//! The encoding is independent of the in-memory layout: nodes and policies
//! are written and read in their version 1 shapes (`NodeV1`, `PolicyV1`:
//! children as a map by segment, a policy as its `QUOTA.SET` spec and its
//! state), while the tree keeps compact forms (sibling links, a policy
//! whose rarely used parts are boxed). A layout change alone needs no new
//! version.
//!
//! [`ENCODING_VERSION`] is the data type's `encver`. A new encoding gets a
//! new number and the old decoder stays, so old RDB files keep loading.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

use crate::amount;
use crate::events::Event;
use crate::hold::{DoneEntry, Hold, ItemState};
use crate::names;
use crate::outcome::Costs;
use crate::policy::{Closed, HISTORY_LEN, MAX_WARN, Policy, PolicySpec};
use crate::pricing::{self, Price, PriceBook};
use crate::tree::{Node, NodeId, Tree};
use crate::window::{ROLLING_BUCKETS_KEPT, ROLLING_MAX_MS, ROLLING_MIN_MS, Unit, Window};
use rust_decimal::Decimal;

/// Version 1: the first encoding.
pub const ENCODING_VERSION: i32 = 1;

/// Largest time (Unix ms) or counter accepted from disk: 2^53, some 285,000
/// years, so that no arithmetic on a stored value can wrap.
const MAX_TIME: u64 = 1 << 53;

/// A stored amount that may never be negative (limits, usage, holds).
fn non_negative(value: Decimal) -> Result<(), String> {
    amount::validate_stored(value).map_err(|e| e.to_string())?;
    if value.is_sign_negative() && !value.is_zero() {
        return Err(format!("stored amount {value} is negative"));
    }
    Ok(())
}

/// Most events a stored log may hold (the largest `events_len`).
const MAX_EVENTS: usize = 100_000;

/// Largest payload accepted when decoding (1 GiB).
const DECODE_LIMIT: usize = 1 << 30;

#[derive(Serialize)]
struct TreeDataRef<'a> {
    seq: u64,
    next_generation: u64,
    nodes: NodesOut<'a>,
    holds: Vec<&'a Hold>,
    done: Vec<DoneEntry>,
    next_event_seq: u64,
    events: &'a VecDeque<Event>,
}

#[derive(Deserialize)]
struct TreeData {
    seq: u64,
    next_generation: u64,
    nodes: Vec<Option<NodeV1>>,
    holds: Vec<Hold>,
    done: Vec<DoneEntry>,
    next_event_seq: u64,
    events: VecDeque<Event>,
}

/// A node as version 1 stores it: its children as a map from segment to
/// node, sorted by segment. The tree keeps them as sibling links instead.
#[derive(Deserialize)]
struct NodeV1 {
    path: String,
    parent: Option<NodeId>,
    children: BTreeMap<String, NodeId>,
    policies: Vec<PolicyV1>,
    spent: Costs,
}

/// A policy as version 1 stores it: its configuration as `QUOTA.SET`
/// gives it, then its state. The tree keeps a compact form.
#[derive(Serialize, Deserialize)]
struct PolicyV1 {
    name: String,
    spec: PolicySpec,
    generation: u64,
    used: Decimal,
    held: Decimal,
    period_start_ms: u64,
    rolled_over: Decimal,
    granted: Decimal,
    history: VecDeque<Closed>,
    buckets: VecDeque<(u64, Decimal)>,
    fired: u16,
    over_fired: bool,
}

impl PolicyV1 {
    fn of(policy: &Policy) -> PolicyV1 {
        PolicyV1 {
            name: policy.name().to_string(),
            spec: policy.spec(),
            generation: policy.generation,
            used: policy.used,
            held: policy.held,
            period_start_ms: policy.period_start_ms,
            rolled_over: policy.rolled_over(),
            granted: policy.granted(),
            history: policy.history().clone(),
            buckets: policy.buckets().clone(),
            fired: policy.fired,
            over_fired: policy.over_fired,
        }
    }

    /// The policy, once validated; derived fields are refreshed later.
    fn into_policy(self) -> Policy {
        let mut policy = Policy::new(&self.name, self.spec, self.generation, self.period_start_ms);
        policy.used = self.used;
        policy.held = self.held;
        policy.period_start_ms = self.period_start_ms;
        policy.fired = self.fired;
        policy.over_fired = self.over_fired;
        policy.restore(self.rolled_over, self.granted, self.history, self.buckets);
        policy
    }
}

/// The arena, written node by node in the version 1 shape.
struct NodesOut<'a>(&'a Tree);

impl Serialize for NodesOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let tree = self.0;
        serializer.collect_seq(
            tree.nodes
                .iter()
                .enumerate()
                .map(|(id, slot)| slot.as_ref().map(|node| NodeOut { tree, id: id as NodeId, node })),
        )
    }
}

struct NodeOut<'a> {
    tree: &'a Tree,
    id: NodeId,
    node: &'a Node,
}

impl Serialize for NodeOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut children: Vec<(&str, NodeId)> =
            self.tree.children(self.id).filter_map(|c| Some((names::leaf_of(&self.tree.node(c)?.path), c))).collect();
        children.sort_unstable();
        let mut node = serializer.serialize_struct("Node", 5)?;
        node.serialize_field("path", &*self.node.path)?;
        node.serialize_field("parent", &self.node.parent())?;
        node.serialize_field("children", &MapOut(children))?;
        let policies: Vec<PolicyV1> = self.node.policies.iter().map(PolicyV1::of).collect();
        node.serialize_field("policies", &policies)?;
        node.serialize_field("spent", &self.node.spent)?;
        node.end()
    }
}

/// Pairs written as a map.
struct MapOut<K, V>(Vec<(K, V)>);

impl<K: Serialize, V: Serialize> Serialize for MapOut<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

fn config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<DECODE_LIMIT>,
> {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// Encodes a tree at the current [`ENCODING_VERSION`].
pub fn encode(tree: &Tree) -> Vec<u8> {
    let data = TreeDataRef {
        seq: tree.seq,
        next_generation: tree.next_generation,
        nodes: NodesOut(tree),
        holds: tree.hold_expiry.iter().filter_map(|(_, id)| tree.holds.get(id)).collect(),
        done: tree.done_expiry.iter().filter_map(|(_, id)| tree.done_entry(id)).collect(),
        next_event_seq: tree.next_event_seq,
        events: &tree.events,
    };
    // Encoding plain owned data into a Vec cannot fail; an empty payload
    // would be refused by `decode`, so a failure here is never silent.
    bincode::serde::encode_to_vec(&data, config()).unwrap_or_default()
}

/// Version of the price book's aux data in the RDB.
pub const PRICE_BOOK_VERSION: i32 = 1;

/// Encodes the price book for the RDB's aux data.
pub fn encode_book(book: &PriceBook) -> Vec<u8> {
    bincode::serde::encode_to_vec(book, config()).unwrap_or_default()
}

/// Decodes a price book, validating every entry as `QUOTA.PRICE SET` would.
pub fn decode_book(bytes: &[u8], version: i32) -> Result<PriceBook, String> {
    if version != PRICE_BOOK_VERSION {
        return Err(format!("unknown price book version {version} (this module reads {PRICE_BOOK_VERSION})"));
    }
    let (book, used): (PriceBook, usize) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| format!("undecodable price book: {e}"))?;
    if used != bytes.len() {
        return Err("trailing bytes after the price book".into());
    }
    for (key, price) in book.entries() {
        pricing::parse_key(key).map_err(|e| e.to_string())?;
        let again = Price::from_json(&price.to_json()).map_err(|e| format!("price '{}': {e}", names::clip(key)))?;
        if &again != price {
            return Err(format!("price '{}' does not validate", names::clip(key)));
        }
    }
    if book.len() > pricing::MAX_PRICES {
        return Err("too many prices".into());
    }
    Ok(book)
}

/// Decodes bytes written by [`encode`] under `version`.
pub fn decode(bytes: &[u8], version: i32) -> Result<Tree, String> {
    match version {
        1 => {
            let (data, used): (TreeData, usize) =
                bincode::serde::decode_from_slice(bytes, config()).map_err(|e| format!("undecodable tree: {e}"))?;
            if used != bytes.len() {
                return Err(format!("{} trailing bytes after the tree", bytes.len() - used));
            }
            rebuild(data)
        }
        other => {
            Err(format!("unknown quotatree encoding version {other} (this module reads up to {ENCODING_VERSION})"))
        }
    }
}

/// Rebuilds the indexes and validates everything.
fn rebuild(data: TreeData) -> Result<Tree, String> {
    if [data.seq, data.next_generation, data.next_event_seq].iter().any(|&n| n > MAX_TIME) {
        return Err("a counter is out of range".into());
    }
    let consecutive = data.events.iter().zip(data.events.iter().skip(1)).all(|(a, b)| a.seq + 1 == b.seq);
    if !consecutive
        || data.events.back().is_some_and(|e| e.seq + 1 != data.next_event_seq)
        || data.events.len() > MAX_EVENTS
        || data.next_event_seq == 0
    {
        return Err("the event log is out of order".into());
    }
    for event in &data.events {
        validate_event(event)?;
    }
    match data.nodes.first() {
        Some(Some(root)) if root.path.is_empty() && root.parent.is_none() => {}
        _ => return Err("the tree has no root".into()),
    }
    // A hold's line finds its policy by generation: each names one policy.
    let mut generations = HashSet::new();
    for (index, node) in data.nodes.iter().enumerate() {
        if let Some(node) = node {
            validate_node(&data.nodes, data.next_generation, index, node)?;
            if !node.policies.iter().all(|p| generations.insert(p.generation)) {
                return Err(format!("node {index}: two policies share a generation"));
            }
        }
    }
    let mut tree = Tree {
        seq: data.seq,
        next_generation: data.next_generation,
        nodes: Vec::with_capacity(data.nodes.len()),
        next_event_seq: data.next_event_seq,
        events: data.events,
        ..Tree::default()
    };
    let mut links: Vec<(NodeId, Vec<NodeId>)> = Vec::new();
    for (index, slot) in data.nodes.into_iter().enumerate() {
        let Some(stored) = slot else {
            tree.free.push(index as NodeId);
            tree.nodes.push(None);
            continue;
        };
        let mut node = Node::new(&stored.path, stored.parent);
        node.policies = stored.policies.into_iter().map(PolicyV1::into_policy).collect();
        node.spent = stored.spent.into_boxed_slice();
        tree.nodes.push(Some(node));
        if !stored.children.is_empty() {
            links.push((index as NodeId, stored.children.into_values().collect()));
        }
    }
    // Validated above: every child names its parent, and every parent its
    // children. Linking in reverse keeps each list sorted by name.
    for (parent, children) in links {
        for &child in children.iter().rev() {
            tree.link_child(parent, child);
        }
    }
    for index in 0..tree.nodes.len() {
        if tree.nodes[index].is_none() {
            continue;
        }
        if !tree.index_insert(index as NodeId) {
            return Err(format!(
                "path '{}' appears twice",
                names::clip(tree.nodes[index].as_ref().map_or("", |n| &n.path))
            ));
        }
        tree.node_count += 1;
    }
    // The lowest free slot is taken first, as in the tree that was saved
    // (`Tree::delete_path` keeps them in this order).
    tree.free.reverse();
    // Derived fields, only once every amount is known to be in range.
    for policy in tree.nodes.iter_mut().flatten().flat_map(|n| n.policies.iter_mut()) {
        policy.refresh();
    }
    for hold in data.holds {
        validate_hold(&tree, &hold, true)?;
        for path in &hold.set.paths {
            if let Some(node) = tree.find(path).and_then(|id| tree.node_mut(id)) {
                node.live_holds += 1;
            }
        }
        tree.hold_expiry.insert((hold.expires_at_ms, hold.id.clone()));
        if tree.holds.insert(hold.id.clone(), hold).is_some() {
            return Err("a hold id appears twice".into());
        }
    }
    for entry in data.done {
        names::parse_name(&entry.id, "finished id").map_err(|e| e.to_string())?;
        if let Some(hold) = &entry.hold {
            validate_hold(&tree, hold, false)?;
            if hold.id != entry.id {
                return Err(format!("finished id '{}' holds another reservation", names::clip(&entry.id)));
            }
        }
        if entry.forget_at_ms > MAX_TIME {
            return Err(format!("finished id '{}' has a time out of range", names::clip(&entry.id)));
        }
        if tree.holds.contains_key(&entry.id) {
            return Err(format!("id '{}' is both live and finished", names::clip(&entry.id)));
        }
        if tree.done.contains_key(&entry.id) {
            return Err("a finished id appears twice".into());
        }
        tree.remember(entry);
    }
    // Held and the lines of live holds are derived: counted again from the
    // holds and policies as they are, so a tree stored when holds counted
    // only on the policies of their reserve loads with the rule of now.
    tree.recount_all()?;
    tree.check_invariants()?;
    Ok(tree)
}

fn validate_node(nodes: &[Option<NodeV1>], next_generation: u64, index: usize, node: &NodeV1) -> Result<(), String> {
    let count = nodes.len();
    let bad = |why: &str| Err(format!("node {index} ('{}'): {why}", names::clip(&node.path)));
    if index > 0 {
        if names::parse_path(&node.path, names::MAX_DEPTH_HARD).ok().as_deref() != Some(node.path.as_str())
            || node.path.is_empty()
        {
            return bad("invalid path");
        }
        let Some(parent) = node.parent.filter(|&p| (p as usize) < count).and_then(|p| nodes[p as usize].as_ref())
        else {
            return bad("missing parent");
        };
        if parent.path != names::parent_of(&node.path)
            || parent.children.get(names::leaf_of(&node.path)) != Some(&(index as NodeId))
        {
            return bad("parent and child disagree");
        }
    }
    for (segment, &child) in &node.children {
        let Some(c) = nodes.get(child as usize).and_then(Option::as_ref) else { return bad("missing child") };
        if c.parent != Some(index as NodeId) || names::leaf_of(&c.path) != segment {
            return bad("child and parent disagree");
        }
    }
    let mut seen: HashMap<&str, ()> = HashMap::new();
    for policy in &node.policies {
        names::parse_name(&policy.name, "policy").map_err(|e| e.to_string())?;
        names::parse_metric(&policy.spec.metric).map_err(|e| e.to_string())?;
        if seen.insert(&policy.name, ()).is_some() {
            return bad("duplicate policy name");
        }
        if policy.generation >= next_generation {
            return bad("policy generation from the future");
        }
        let warn = &policy.spec.warn;
        if warn.iter().any(|&w| !(1..=100).contains(&w))
            || warn.windows(2).any(|p| p[0] >= p[1])
            || warn.len() > MAX_WARN
        {
            return bad("warning thresholds out of range or order");
        }
        policy.spec.validate().map_err(|e| e.to_string())?;
        validate_window(&policy.spec.window).map_err(|why| format!("node {index}: {why}"))?;
        let mut amounts = vec![policy.spec.limit, policy.used, policy.held, policy.rolled_over, policy.granted];
        amounts.extend(policy.spec.rollover);
        for closed in &policy.history {
            amounts.extend([closed.used, closed.allowance, closed.rolled_over]);
        }
        amounts.extend(policy.buckets.iter().map(|(_, a)| *a));
        for value in amounts {
            non_negative(value)?;
        }
        let times =
            [policy.period_start_ms].into_iter().chain(policy.history.iter().flat_map(|c| [c.start_ms, c.end_ms]));
        if times.chain(policy.buckets.iter().map(|(b, _)| *b)).any(|t| t > MAX_TIME) {
            return bad("time out of range");
        }
        if policy.history.len() > HISTORY_LEN {
            return bad("history too long");
        }
        match policy.spec.window.bucket_ms() {
            Some(_) => {
                let ordered = policy.buckets.iter().zip(policy.buckets.iter().skip(1)).all(|(a, b)| a.0 < b.0);
                let sum: Decimal = policy.buckets.iter().map(|(_, a)| *a).sum();
                if !ordered || policy.buckets.len() as u64 > ROLLING_BUCKETS_KEPT || sum != policy.used {
                    return bad("rolling buckets disagree with usage");
                }
            }
            None if !policy.buckets.is_empty() => return bad("buckets without a rolling window"),
            None => {}
        }
    }
    for (metric, value) in &node.spent {
        names::parse_metric(metric).map_err(|e| e.to_string())?;
        non_negative(*value)?;
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
    let named = event.policy.as_deref().is_none_or(|p| names::parse_name(p, "policy").is_ok())
        && event.id.as_deref().is_none_or(|id| names::parse_name(id, "id").is_ok())
        && event.metric.iter().chain(event.amounts.iter().map(|(m, _)| m)).all(|m| names::parse_metric(m).is_ok());
    if named { Ok(()) } else { Err(bad()) }
}

fn validate_window(window: &Window) -> Result<(), String> {
    let ok = match window {
        Window::None => true,
        Window::Calendar { unit: Unit::Month, anchor } => (1..=31).contains(anchor),
        Window::Calendar { anchor, .. } => *anchor == 1,
        Window::Rolling { duration_ms } => (ROLLING_MIN_MS..=ROLLING_MAX_MS).contains(duration_ms),
    };
    if ok { Ok(()) } else { Err(format!("invalid window {window:?}")) }
}

fn validate_hold(tree: &Tree, hold: &Hold, live: bool) -> Result<(), String> {
    names::parse_name(&hold.id, "id").map_err(|e| e.to_string())?;
    // A settled finished hold keeps no paths (see `Tree::finish`); a live
    // or expired one always has them.
    let settled = !live && !hold.items.iter().any(|i| i.state == ItemState::Expired);
    if hold.items.is_empty() || (hold.set.paths.is_empty() && !settled) {
        return Err(format!("hold '{}' is empty", names::clip(&hold.id)));
    }
    for item in &hold.items {
        for (metric, value) in &item.cost {
            names::parse_metric(metric).map_err(|e| e.to_string())?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchMode, ChargeRequest, ChargeSet, Limits, Mode, PolicySpec, ReserveRequest};
    use rust_decimal::Decimal;

    fn sample() -> Tree {
        let l = Limits::default();
        let mut t = Tree::new();
        let spec = |limit: i64| PolicySpec {
            metric: "credits".into(),
            limit: limit.into(),
            mode: Mode::Strict,
            window: Window::None,
            warn: crate::policy::Warn::default(),
            rollover: None,
            service: Some("chat".into()),
            model: None,
        };
        t.set_policy("", "monthly", spec(1000), 0, &l).unwrap();
        t.set_policy("projects/p1", "cap", spec(100), 0, &l).unwrap();
        t.set_policy("projects/p2", "cap", spec(100), 0, &l).unwrap();
        let monthly = PolicySpec {
            window: Window::Calendar { unit: Unit::Month, anchor: 31 },
            rollover: Some(2000.into()),
            ..spec(1000)
        };
        t.set_policy("members", "monthly", monthly, 0, &l).unwrap();
        let rolling = PolicySpec { window: Window::Rolling { duration_ms: 3_600_000 }, service: None, ..spec(100) };
        t.set_policy("members", "hourly", rolling, 0, &l).unwrap();
        t.delete_path("projects/p2").unwrap();
        let set = ChargeSet {
            paths: vec!["projects/p1".into(), "members/u7".into()],
            service: Some("chat".into()),
            model: None,
        };
        let cost = vec![("credits".to_string(), Decimal::new(125, 1))];
        for (i, ttl) in [(0, 500u64), (1, 5000)] {
            let req = ReserveRequest {
                set: set.clone(),
                id: Some(format!("job-{i}")),
                ttl_ms: ttl,
                batch: BatchMode::All,
                items: vec![cost.clone()],
                brief: false,
            };
            t.reserve(req.clone(), 100, &l).unwrap();
        }
        t.expire(700, &l);
        t.charge(ChargeRequest { set, id: Some("c-1".into()), check: false, cost, brief: false }, 800, &l).unwrap();
        t
    }

    #[test]
    fn a_tree_survives_encode_and_decode_unchanged() {
        let tree = sample();
        let bytes = encode(&tree);
        let back = decode(&bytes, ENCODING_VERSION).unwrap();
        assert_eq!(encode(&back), bytes);
        assert_eq!(back.get("projects/p1", 0).unwrap(), tree.get("projects/p1", 0).unwrap());
        assert_eq!(back.hold_count(), 1);
        assert_eq!(back.tombstone_count(), 2);
        assert_eq!(back.path_count(), tree.path_count());
        back.check_invariants().unwrap();
    }

    /// A tree written by the first release (`tests/fixtures/tree-v1.bin`,
    /// with holds, tombstones, history, rolling buckets, grants and fired
    /// warnings) loads, reads as it did then (`tree-v1.txt`), and is
    /// written back byte for byte.
    #[test]
    fn a_version_1_tree_still_loads() {
        let bytes = include_bytes!("../../tests/fixtures/tree-v1.bin");
        let tree = decode(bytes, 1).unwrap();
        let now = 40 * 86_400_000 + 5;
        let mut out = String::new();
        for p in ["", "projects", "projects/p1", "members", "members/u7"] {
            out += &format!("{:?}\n", tree.get(p, now));
        }
        out += &format!("{:?}\n", tree.history("members", "monthly", now));
        out += &format!("{:?}\n", tree.holds_view("", 10));
        out += &format!("{:?}\n", tree.events_since(0, 100).collect::<Vec<_>>());
        assert_eq!(out, include_str!("../../tests/fixtures/tree-v1.txt"));
        assert_eq!(encode(&tree), bytes);
    }

    #[test]
    fn a_price_book_survives_encode_and_decode() {
        let mut book = PriceBook::default();
        let json =
            r#"{"metric":"credits","rates":{"input_tokens":"2.50/1M"},"multipliers":{"q":{"hd":"2"}},"minimum":"1"}"#;
        book.set("chat/m1", Price::from_json(json).unwrap()).unwrap();
        let bytes = encode_book(&book);
        assert_eq!(decode_book(&bytes, PRICE_BOOK_VERSION).unwrap(), book);
        assert!(decode_book(&bytes, 2).is_err());
        for cut in 0..bytes.len() {
            assert!(decode_book(&bytes[..cut], 1).is_err());
        }
    }

    /// A generation names one policy: a hold's line finds its policy by
    /// node and generation, so two policies of a node sharing one would
    /// have releases taken from the first only and the other's held never
    /// come down (hostile review of issue 13: such a payload loaded).
    #[test]
    fn a_stored_generation_names_one_policy() {
        let l = Limits::default();
        let spec = |metric: &str| PolicySpec {
            metric: metric.into(),
            limit: 100.into(),
            mode: Mode::Strict,
            window: Window::None,
            warn: crate::policy::Warn::default(),
            rollover: None,
            service: None,
            model: None,
        };
        let mut t = Tree::new();
        t.set_policy("", "cr", spec("credits"), 0, &l).unwrap();
        t.set_policy("a", "tk", spec("tokens"), 0, &l).unwrap();
        t.set_policy("a", "cr", spec("credits"), 0, &l).unwrap();
        let first = t.nodes[1].as_ref().unwrap().policies[0].generation;
        // Across nodes as within one: the engine gives every policy its own.
        for (node, index) in [(1, 1), (0, 0)] {
            let mut bad = t.clone();
            bad.nodes[node].as_mut().unwrap().policies[index].generation = first;
            assert!(decode(&encode(&bad), 1).is_err(), "node {node} policy {index}");
        }
        assert!(decode(&encode(&t), 1).is_ok());
    }

    #[test]
    fn corrupt_payloads_are_errors_not_panics() {
        let bytes = encode(&sample());
        assert!(decode(&bytes, 99).is_err());
        assert!(decode(&[], 1).is_err());
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            assert!(decode(&bytes[..cut], 1).is_err(), "cut at {cut}");
        }
        // Flip every byte in turn: each result is an error or a valid tree.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xFF;
            if let Ok(t) = decode(&b, 1) {
                t.check_invariants().unwrap();
            }
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer, 1).is_err());
        // Amounts past the bounds are refused before anything adds them up.
        let mut huge = sample();
        for policy in huge.nodes.iter_mut().flatten().flat_map(|n| n.policies.iter_mut()) {
            policy.limit = Decimal::MAX;
            policy.restore(Decimal::ZERO, Decimal::MAX, VecDeque::new(), VecDeque::new());
        }
        assert!(decode(&encode(&huge), 1).is_err());
    }
}
