//! Views: what reads show of a tree. A *view* is a node as of a moment
//! (`now_ms`): its policies with the resets due by then shown, not
//! applied, its spent, and, for `QUOTA.TREE`, its descendants down to a
//! depth and within a budget of nodes, so that a large tree never stalls
//! the server. A view may also look through the expiry due by `due_ms`
//! (see `due`), which a primary's reads show as applied.
//!
//! Lua twin: `OPS.view`, `OPS.get_view`, `OPS.tree_view` in
//! `lua/src/75_ops.lua`.

use std::collections::HashSet;
use std::sync::Arc;

use crate::due::{DueRelease, held_after};
use crate::error::{Error, Result};
use crate::names;
use crate::outcome::{NodeView, PolicyView, ResetOutcome, TreeView};
use crate::paths::NodeId;
use crate::plan::Plan;
use crate::policy::{Grant, Policy, Status};
use crate::sync::Seen;
use crate::tree::Tree;
use crate::window::Window;
use std::cell::OnceCell;

impl Tree {
    /// A node and its descendants down to `depth` levels, visiting at most
    /// `budget` nodes (preorder, children by name), so that a large tree
    /// never stalls the server. With `after` (`QUOTA.TREE … AFTER name`,
    /// the top node only), the node's children start after the child of
    /// that name (byte order) and `more` counts those after it not shown.
    /// Lua twin: `OPS.view` (lua/src/75_ops.lua).
    fn view<'a>(
        &'a self,
        id: NodeId,
        depth: usize,
        budget: &mut usize,
        look: &Look<'a, '_>,
        after: Option<&str>,
    ) -> Option<NodeView> {
        let node = self.node(id)?;
        let (now_ms, due, seen, filter) = (look.now_ms, look.due, look.seen, look.filter);
        *budget = budget.saturating_sub(1);
        let mut children = Vec::new();
        let mut more = 0;
        if depth > 0 {
            let shown = |c: NodeId| after.is_none_or(|a| self.leaf(c) > a) && filter.shows(self, c);
            // One pass over the children: those shown (AFTER filters here,
            // before selecting); at most `budget` are visited and only
            // those are sorted.
            let kept: Vec<NodeId> = self.children(id).filter(|&c| shown(c)).collect();
            let total = kept.len();
            for child in self.first_by_name(kept, *budget) {
                if *budget == 0 {
                    break;
                }
                children.extend(self.view(child, depth - 1, budget, look, None));
            }
            more = total - children.len();
        }
        let policies: Vec<PolicyView> = self
            .policies_seen(id, seen, now_ms)
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
            access: node.access.as_deref().map(|a| crate::access::AccessView {
                path: names::display_path(&node.path).to_string(),
                allow: a.allow.clone(),
                deny: a.deny.clone(),
            }),
            labels: node.labels.as_deref().cloned(),
            children,
            more,
        })
    }

    /// Marks in `keep` the nodes of `id`'s subtree that carry `tag` and
    /// those on the way to them (archived subtrees skipped unless
    /// `archived`). Returns whether `id` was marked.
    fn mark_tagged(&self, id: NodeId, tag: &str, archived: bool, keep: &mut HashSet<NodeId>) -> bool {
        let mut marked = self.node(id).and_then(|n| n.labels.as_deref()).is_some_and(|l| l.has_tag(tag));
        let children: Vec<NodeId> = self.children(id).collect();
        for child in children {
            if (archived || !self.is_archived(child)) && self.mark_tagged(child, tag, archived, keep) {
                marked = true;
            }
        }
        if marked {
            keep.insert(id);
        }
        marked
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
    /// Lua twin: `OPS.get_view` (lua/src/75_ops.lua).
    pub fn get(&self, path: &str, now_ms: u64) -> Result<NodeView> {
        self.get_at(path, now_ms, 0)
    }

    /// [`Tree::get`] also showing the expiry due by `due_ms` as applied
    /// (`QUOTA.GET` on a primary; a replica shows none: its primary
    /// replicates expiry).
    /// Lua twin: `OPS.get_view` after `expire` (lua/src/75_ops.lua).
    pub fn get_at(&self, path: &str, now_ms: u64, due_ms: u64) -> Result<NodeView> {
        self.get_seen(path, now_ms, due_ms, self.plan.as_ref())
    }

    /// [`Tree::get_at`] seeing the tree as if it had adopted the book's
    /// `current` plan of its name (reads never change anything).
    pub fn get_seen(&self, path: &str, now_ms: u64, due_ms: u64, current: Option<&Arc<Plan>>) -> Result<NodeView> {
        let due = self.due_for_read(due_ms);
        let seen = self.seen(current, due_ms);
        self.find(path)
            .and_then(|id| {
                let look = Look { now_ms, due: due.as_ref(), seen, filter: &Filter::default() };
                self.view(id, 0, &mut 1, &look, None)
            })
            .ok_or_else(|| Self::not_found(path))
    }

    /// `QUOTA.TREE`: a node and its descendants down to `depth` levels, at
    /// most `max_nodes` of them, holds as stored.
    /// Lua twin: `OPS.tree_view` (lua/src/75_ops.lua).
    pub fn tree_view(&self, path: &str, depth: usize, max_nodes: usize, now_ms: u64) -> Result<TreeView> {
        self.tree_view_at(path, depth, max_nodes, now_ms, 0)
    }

    /// [`Tree::tree_view`] also showing the expiry due by `due_ms`.
    /// Lua twin: `OPS.tree_view` after `expire` (lua/src/75_ops.lua).
    pub fn tree_view_at(
        &self,
        path: &str,
        depth: usize,
        max_nodes: usize,
        now_ms: u64,
        due_ms: u64,
    ) -> Result<TreeView> {
        self.tree_view_seen(path, depth, max_nodes, now_ms, due_ms, self.plan.as_ref())
    }

    /// [`Tree::tree_view_at`] seeing the tree as if it had adopted the
    /// book's `current` plan of its name.
    pub fn tree_view_seen(
        &self,
        path: &str,
        depth: usize,
        max_nodes: usize,
        now_ms: u64,
        due_ms: u64,
        current: Option<&Arc<Plan>>,
    ) -> Result<TreeView> {
        self.tree_view_filtered(&TreeQuery::new(path, depth, max_nodes), now_ms, due_ms, current)
    }

    /// [`Tree::tree_view_seen`] with all of `QUOTA.TREE`'s options (see
    /// [`TreeQuery`]): `TAG` (children lists keep only nodes that carry it
    /// and the nodes on the way to them), `ARCHIVED` (without it, archived
    /// nodes and their subtrees are left out) and `AFTER` (the top node's
    /// children start after that name). The top node is always shown.
    /// Lua twin: `OPS.tree_view` (lua/src/75_ops.lua), `label_tree_filter`
    /// (lua/src/66_labels.lua).
    pub fn tree_view_filtered(
        &self,
        query: &TreeQuery<'_>,
        now_ms: u64,
        due_ms: u64,
        current: Option<&Arc<Plan>>,
    ) -> Result<TreeView> {
        let TreeQuery { path, depth, max_nodes, tag, archived, after } = *query;
        let id = self.find(path).ok_or_else(|| Self::not_found(path))?;
        let mut filter = Filter { keep: None, archived };
        if let Some(tag) = tag {
            let mut keep = HashSet::new();
            self.mark_tagged(id, tag, archived, &mut keep);
            filter.keep = Some(keep);
        }
        let mut budget = max_nodes.max(1);
        let due = self.due_for_read(due_ms);
        let reach = OnceCell::new();
        let seen = Seen { reach: Some(&reach), ..self.seen(current, due_ms) };
        let look = Look { now_ms, due: due.as_ref(), seen, filter: &filter };
        let root = self
            .view(id, depth.min(names::MAX_DEPTH_HARD), &mut budget, &look, after)
            .ok_or_else(|| Self::not_found(path))?;
        let nodes = max_nodes.max(1) - budget;
        fn cut(view: &NodeView) -> bool {
            view.more > 0 || view.children.iter().any(cut)
        }
        let truncated = cut(&root);
        Ok(TreeView { root, nodes, truncated })
    }

    /// `QUOTA.HISTORY` seeing the tree as if it had adopted the book's
    /// `current` plan: the policy's window (which labels the periods) and
    /// its closed periods, newest first, as of `now_ms`.
    /// Lua twin: `OPS.history` (lua/src/75_ops.lua).
    pub fn history_seen(
        &self,
        path: &str,
        name: &str,
        now_ms: u64,
        current: Option<&Arc<Plan>>,
    ) -> Result<(Window, Vec<ResetOutcome>)> {
        self.policy_seen(path, name, now_ms, current, |policy| {
            (policy.window(), policy.history().iter().cloned().collect())
        })
    }

    /// `QUOTA.GRANTS` as of `now_ms`: the live grants of the policy as the
    /// tree's plan (`current`) gives it, in draw-down order, at most `count`.
    /// Lua twin: `OPS.grants` (lua/src/75_ops.lua).
    pub fn grants_seen(
        &self,
        path: &str,
        name: &str,
        now_ms: u64,
        count: usize,
        current: Option<&Arc<Plan>>,
    ) -> Result<Vec<Grant>> {
        self.policy_seen(path, name, now_ms, current, |policy| {
            policy.grants().into_iter().take(count).cloned().collect()
        })
    }

    /// What `read` takes from policy `name` at `path` as a read at `now_ms`
    /// sees it (synced with the plan `current`, its resets and expiries due
    /// applied).
    fn policy_seen<T>(
        &self,
        path: &str,
        name: &str,
        now_ms: u64,
        current: Option<&Arc<Plan>>,
        read: impl FnOnce(&Policy) -> T,
    ) -> Result<T> {
        let id = self.find(path).ok_or_else(|| Self::not_found(path))?;
        let policies = self.policies_seen(id, self.seen(current, 0), now_ms);
        let policy = policies
            .iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| Error::NotFound(format!("policy '{name}' at '{}'", names::display_path(path))))?;
        Ok(read(&policy.at(now_ms)))
    }
}

/// What `QUOTA.TREE` asks for: the node at `path` and its descendants
/// down to `depth` levels, at most `max_nodes` of them, with its options.
/// [`TreeQuery::new`] has none of them (every node shown, archived ones
/// too), as [`Tree::tree_view`] shows the tree.
/// Lua twin: the arguments of `OPS.tree_view` (lua/src/75_ops.lua).
#[derive(Debug, Clone, Copy)]
pub struct TreeQuery<'q> {
    /// Canonical path of the top node.
    pub path: &'q str,
    pub depth: usize,
    pub max_nodes: usize,
    /// `TAG t`: children lists keep only the nodes that carry `t` and
    /// those on the way to them.
    pub tag: Option<&'q str>,
    /// `ARCHIVED`: archived nodes (and their subtrees) shown too.
    pub archived: bool,
    /// `AFTER name`: the top node's children start after the child named
    /// `name` (byte order; it need not exist); deeper levels are whole.
    pub after: Option<&'q str>,
}

impl<'q> TreeQuery<'q> {
    /// The whole of `path` down to `depth`, at most `max_nodes` nodes,
    /// archived nodes included, no `TAG` nor `AFTER`.
    pub fn new(path: &'q str, depth: usize, max_nodes: usize) -> Self {
        TreeQuery { path, depth, max_nodes, tag: None, archived: true, after: None }
    }
}

/// What a view looks through (see [`Tree::view`]): its moment, the
/// expiry due it shows as applied, the plan it sees and which children
/// it shows.
struct Look<'a, 'f> {
    now_ms: u64,
    due: Option<&'f DueRelease>,
    seen: Seen<'a>,
    filter: &'f Filter,
}

/// Which children `QUOTA.TREE` shows (see [`Tree::tree_view_filtered`]).
#[derive(Debug, Default)]
struct Filter {
    /// With `TAG`: the nodes that carry it and those on the way to them.
    keep: Option<HashSet<NodeId>>,
    /// `ARCHIVED`: archived nodes shown too.
    archived: bool,
}

impl Filter {
    fn shows(&self, tree: &Tree, id: NodeId) -> bool {
        (self.archived || !tree.is_archived(id)) && self.keep.as_ref().is_none_or(|k| k.contains(&id))
    }
}
