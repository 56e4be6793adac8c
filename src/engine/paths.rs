//! Paths: where the nodes of a tree live and how they are found.
//!
//! A *path* names a node ("" is the root, `projects/p1` a node two levels
//! down). Nodes live in an arena (`Tree::nodes`, a free slot is `None` and
//! is reused lowest first) and are found by path through the *path index*
//! (`Tree::index`), a hash table of node ids keyed by the path each node
//! stores once. A node knows its parent and its children, the children as
//! a list through sibling links, so the ancestors of a path are one hash
//! lookup and a walk up the parents. Creating a path creates its missing
//! ancestors; deleting one removes its subtree.
//!
//! Lua twin: `find`, `ensure_path`, `children_of`, `check_new_paths` in
//! `lua/src/60_tree.lua` (each node a field of the tree's hash, children
//! in the `:kids` sorted set) and `OPS.delete_path`, `OPS.subtree` in
//! `lua/src/75_ops.lua`.

use std::hash::BuildHasher;

use rust_decimal::Decimal;

use crate::error::{Error, Result};
use crate::names;
use crate::policy::Policy;
use crate::tree::{Limits, Tree};

/// Index of a node in the arena.
pub type NodeId = u32;
pub(crate) const ROOT: NodeId = 0;

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
    /// The tree's plan epoch when this node was last synced with the plan
    /// (see `sync`): the node is stale when it differs from the tree's.
    pub plan_epoch: u32,
    pub policies: Box<[Policy]>,
    /// Everything charged in this subtree since the node was created, per
    /// metric (a boxed slice: most nodes never change their metrics).
    pub spent: Box<[(String, Decimal)]>,
    /// The node's access rules (SPEC §8); `None` for a node without any,
    /// which is most of them.
    pub access: Option<Box<crate::access::Access>>,
    /// The node's usage over time (SPEC §9, `usage`); `None` for a node
    /// that never spent (or while usage is off).
    pub usage: Option<Box<crate::usage::Usage>>,
    /// The node's note, tags and archived flag (SPEC §10); `None` for a
    /// node without any, which is most of them.
    pub labels: Option<Box<crate::labels::Labels>>,
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
            plan_epoch: 0,
            policies: Box::default(),
            spent: Box::default(),
            access: None,
            usage: None,
            labels: None,
        }
    }

    pub fn parent(&self) -> Option<NodeId> {
        link(self.parent)
    }
}

impl Tree {
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
    /// Lua twin: `children_of` (lua/src/60_tree.lua).
    pub(crate) fn children(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        let mut cursor = self.node(id).map_or(NO_NODE, |n| n.first_child);
        std::iter::from_fn(move || {
            let id = link(cursor)?;
            cursor = self.node(id).map_or(NO_NODE, |n| n.next_sibling);
            Some(id)
        })
    }

    /// The children of a node sorted by name, at most `count` of them.
    pub(crate) fn sorted_children(&self, id: NodeId, count: usize) -> Vec<NodeId> {
        self.sorted_children_where(id, count, |_| true)
    }

    /// [`Tree::sorted_children`] of the children `keep` accepts (filtered
    /// before the `count` smallest are selected, so only those are sorted).
    pub(crate) fn sorted_children_where(&self, id: NodeId, count: usize, keep: impl Fn(NodeId) -> bool) -> Vec<NodeId> {
        self.first_by_name(self.children(id).filter(|&c| keep(c)).collect(), count)
    }

    /// The `count` nodes of `nodes` first by name, sorted: the others are
    /// only partitioned off, so a page of a large node sorts just the page.
    pub(crate) fn first_by_name(&self, mut nodes: Vec<NodeId>, count: usize) -> Vec<NodeId> {
        let name = |c: &NodeId| self.leaf(*c);
        if count == 0 {
            return Vec::new();
        }
        if count < nodes.len() {
            nodes.select_nth_unstable_by(count, |a, b| name(a).cmp(name(b)));
            nodes.truncate(count);
        }
        nodes.sort_unstable_by(|a, b| name(a).cmp(name(b)));
        nodes
    }

    /// The name of node `id` (its path's last segment; "" for the root).
    pub(crate) fn leaf(&self, id: NodeId) -> &str {
        names::leaf_of(Self::path_in(&self.nodes, id))
    }

    pub(crate) fn node(&self, id: NodeId) -> Option<&Node> {
        self.nodes.get(id as usize).and_then(Option::as_ref)
    }

    pub(crate) fn node_mut(&mut self, id: NodeId) -> Option<&mut Node> {
        self.nodes.get_mut(id as usize).and_then(Option::as_mut)
    }

    /// Lua twin: `find` (lua/src/60_tree.lua).
    pub(crate) fn find(&self, path: &str) -> Option<NodeId> {
        let hash = self.hasher.hash_one(path);
        self.index.find(hash, |&id| Self::path_in(&self.nodes, id) == path).copied()
    }

    /// Creates `path` and its missing ancestors. The caller has checked
    /// `max_paths`; returns the node. In a tree that follows a plan, each
    /// new node is synced as it is created (it gets the plan's policies).
    /// Lua twin: `ensure_path` (lua/src/60_tree.lua).
    pub(crate) fn ensure_path(&mut self, path: &str, now_ms: u64) -> NodeId {
        if let Some(id) = self.find(path) {
            return id;
        }
        let parent = self.ensure_path(names::parent_of(path), now_ms);
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
        let mut node = Node::new(path, Some(parent));
        node.plan_epoch = self.plan_epoch;
        self.nodes[id as usize] = Some(node);
        self.link_child(parent, id);
        self.index_insert(id);
        self.node_count += 1;
        if self.plan.is_some() {
            self.sync_new_node(id, now_ms);
        }
        id
    }

    /// Removes nodes `created` (leaves, newest last, that nothing refers
    /// to) again, putting the arena, the free list and the generation
    /// counter back as they were (`undo`): nothing observable is left.
    pub(crate) fn unmake(&mut self, undo: crate::sync::Undo) {
        for &id in undo.created.iter().rev() {
            self.unlink_child(id);
            self.index_remove(id);
            if self.nodes.get_mut(id as usize).and_then(Option::take).is_some() {
                self.node_count -= 1;
            }
        }
        self.nodes.truncate(undo.arena_len);
        self.free = undo.free;
        self.next_generation = undo.next_generation;
    }

    /// How many nodes creating `paths` would add.
    pub(crate) fn missing_count(&self, paths: &[&str]) -> usize {
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
    /// Lua twin: `check_new_paths` (lua/src/60_tree.lua).
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

    /// Lua twin: `check_path_room` (lua/src/60_tree.lua).
    fn check_path_room(&self, new_nodes: usize, limits: &Limits) -> Result<()> {
        // A tree already past the bound (lowered since, or promoted from a
        // replica with other settings) still works on its existing paths.
        if new_nodes > 0 && self.node_count + new_nodes > limits.max_paths {
            return Err(Error::Limit(format!("the tree would have more than {} paths (max_paths)", limits.max_paths)));
        }
        Ok(())
    }

    /// Whether node `id` has children.
    pub(crate) fn has_children(&self, id: NodeId) -> bool {
        self.node(id).is_some_and(|n| n.first_child != NO_NODE)
    }

    /// `QUOTA.DELPATH`: removes a path and its subtree when no live hold
    /// names any node in it. Returns the number of nodes removed.
    /// Lua twin: `OPS.delete_path` (lua/src/75_ops.lua).
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
    /// Lua twin: `OPS.subtree` (lua/src/75_ops.lua).
    pub(crate) fn subtree(&self, id: NodeId) -> Vec<NodeId> {
        let mut out = vec![id];
        let mut i = 0;
        while i < out.len() {
            out.extend(self.sorted_children(out[i], usize::MAX));
            i += 1;
        }
        out
    }
}
