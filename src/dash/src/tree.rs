//! The tree page: on the left the tree (`QUOTA.TREE key / DEPTH 2 COUNT
//! 400`), each node a row with its status, name and headline spend, opened
//! and closed in place (`/trees/{key}/children`, an HTML fragment of one
//! page of a node's children, `QUOTA.TREE key P DEPTH 1 COUNT 201 AFTER c`);
//! on the right the node inspector for the path asked for (`QUOTA.GET`):
//! its policies with progress bars, grants, access rules, labels and the
//! holds at or below it, with the buttons of edit.rs's write endpoints.
//!
//! A page never asks for more than `DEPTH 2 COUNT 400` plus one page of
//! children, and, for a selected path deeper than that, one page per level
//! on the way to it (the page after the way's child, the child drawn first
//! with a row that loads the names before it), so it stays fast on a tree
//! of 100,000 paths.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::future::join_all;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::quota::{Cmd, QuotaError};
use crate::trees::headline;
use crate::web::{self, App, Page, Section, TreeKey, bar, enc, error_page, fmt_ms, fmt_span, html, status_class, text};

/// Nodes the first view of a tree asks for (root, children, grandchildren).
const FIRST_VIEW: &str = "400";
/// Children a page of the fragment shows; the command is asked for one
/// more node (the parent itself).
const CHILD_PAGE: usize = 200;
/// The first view opens the root, the way to the selected path, and then
/// the root's children in order while the rows shown stay within this
/// many; the other loaded nodes start closed.
const OPEN_ROWS: usize = 150;
/// Holds and grants listed in the inspector; the commands are asked for one
/// more, to say when there are more than these.
const HOLDS_SHOWN: usize = 50;
const GRANTS_SHOWN: usize = 20;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/assets/tree.js", get(script))
        .route("/assets/tree.css", get(style))
        .route("/trees/{key}", get(page))
        .route("/trees/{key}/children", get(children))
}

async fn script() -> Response {
    web::asset_response(include_str!("../assets/tree.js"), "text/javascript; charset=utf-8")
}

#[derive(Deserialize, Default)]
pub struct TreeQuery {
    #[serde(default)]
    path: Option<String>,
    /// Only the nodes carrying this tag (and the way to them).
    #[serde(default)]
    tag: Option<String>,
    /// "1": archived nodes are shown too.
    #[serde(default)]
    archived: Option<String>,
    /// The children fragment: the page starts after this child's name.
    #[serde(default)]
    after: Option<String>,
    /// The children fragment: only the names before this one (the names
    /// between two drawn children of the way to a deep path).
    #[serde(default)]
    before: Option<String>,
}

async fn style() -> Response {
    web::asset_response(include_str!("../assets/tree.css"), "text/css; charset=utf-8")
}

/// What a page keeps from one view to the next: the tag filter and the
/// archived toggle.
#[derive(Clone, Default)]
struct Filter {
    tag: String,
    archived: bool,
}

impl Filter {
    fn of(q: &TreeQuery) -> Filter {
        Filter {
            tag: q.tag.as_deref().map(str::trim).unwrap_or_default().to_string(),
            archived: q.archived.as_deref().is_some_and(|a| a == "1" || a == "on"),
        }
    }

    /// `&tag=t&archived=1`, for links that keep the filter.
    fn suffix(&self) -> String {
        let mut s = String::new();
        if !self.tag.is_empty() {
            s.push_str("&tag=");
            s.push_str(&enc(&self.tag));
        }
        if self.archived {
            s.push_str("&archived=1");
        }
        s
    }

    /// The options of QUOTA.TREE for the filter: `TAG t`, then the
    /// `ARCHIVED` flag last.
    fn args(&self, out: &mut Vec<String>) {
        if !self.tag.is_empty() {
            out.push("TAG".to_string());
            out.push(self.tag.clone());
        }
        if self.archived {
            out.push("ARCHIVED".to_string());
        }
    }
}

/// A path as replies write it: the root `/`, others without a leading slash.
fn canonical(path: &str) -> String {
    let p = path.trim().trim_start_matches('/');
    if p.is_empty() { "/".to_string() } else { p.to_string() }
}

/// A path's last segment (the root is `/`).
fn name_of(path: &str) -> &str {
    if path == "/" { "/" } else { path.rsplit('/').next().unwrap_or(path) }
}

/// The paths from the root down to `path`, each with its last segment:
/// `a/b` → `[("/", "/"), ("a", "a"), ("a/b", "b")]`.
fn crumbs(path: &str) -> Vec<(String, String)> {
    let mut out = vec![("/".to_string(), "/".to_string())];
    if path == "/" {
        return out;
    }
    let mut at = String::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        if !at.is_empty() {
            at.push('/');
        }
        at.push_str(seg);
        out.push((at.clone(), seg.to_string()));
    }
    out
}

/// The parent of a path (None for the root).
fn parent_of(path: &str) -> Option<String> {
    if path == "/" {
        return None;
    }
    Some(path.rsplit_once('/').map_or("/".to_string(), |(p, _)| p.to_string()))
}

/// Whether `node` is `path` or one of its ancestors.
fn on_the_way(node: &str, path: &str) -> bool {
    node == "/" || node == path || path.strip_prefix(node).is_some_and(|rest| rest.starts_with('/'))
}

/// `n` with thousands separated: 12,345.
fn count_text(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn children_of(node: &Json) -> &[Json] {
    node.get("children").and_then(Json::as_array).map_or(&[], Vec::as_slice)
}

fn number(v: &Json, field: &str) -> u64 {
    match v.get(field) {
        Some(Json::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Json::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// What is known of a node's children.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kids {
    /// Loaded (maybe partly, then `more` says how many follow).
    Loaded,
    /// The node has none.
    None,
    /// Not asked for: the toggle fetches them.
    Unknown,
}

/// One row of the tree pane.
struct Node {
    path: String,
    status: String,
    headline: String,
    archived: bool,
    tags: Vec<String>,
    kids: Kids,
    children: Vec<Node>,
    /// Children after the last one loaded.
    more: u64,
    /// The way to a deep path: names not loaded come before this child
    /// (an index in `children`), drawn as a row that loads them.
    gap: Option<usize>,
}

impl Node {
    /// A node of a reply whose children are loaded down to `depth` more levels.
    fn of(v: &Json, depth: u32) -> Node {
        let children: Vec<Node> =
            if depth > 0 { children_of(v).iter().map(|c| Node::of(c, depth - 1)).collect() } else { vec![] };
        let more = number(v, "more");
        let kids = if depth == 0 {
            Kids::Unknown
        } else if children.is_empty() && more == 0 {
            Kids::None
        } else {
            Kids::Loaded
        };
        Node {
            path: text(v, "path"),
            status: text(v, "status"),
            headline: headline(v),
            archived: number(v, "archived") == 1,
            tags: v
                .get("tags")
                .and_then(Json::as_array)
                .map(|t| t.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
                .unwrap_or_default(),
            kids,
            children,
            more,
            gap: None,
        }
    }

    /// Whether the row has a toggle (a node known to have no children has none).
    fn has_toggle(&self) -> bool {
        self.kids != Kids::None
    }

    fn loaded(&self) -> bool {
        self.kids == Kids::Loaded
    }

    fn count(&self) -> usize {
        1 + self.children.iter().map(Node::count).sum::<usize>()
    }
}

/// The fragment of one node (`<li>`), its loaded children inside.
#[derive(Template)]
#[template(path = "tree_node.html")]
struct NodeRow<'a> {
    node: &'a Node,
    name: &'a str,
    url: String,
    class: &'static str,
    selected: bool,
    open: bool,
    /// The children's rows, already drawn (each escaped by its own template).
    inner: String,
    /// The "N more…" row, already drawn.
    more: String,
}

/// The "N more…" row: loads the page of `parent`'s children after `after`.
#[derive(Template)]
#[template(path = "tree_more.html")]
struct MoreRow<'a> {
    parent: &'a str,
    after: &'a str,
    /// A gap row: the page stops before this name.
    before: &'a str,
    label: String,
}

/// What draws the tree's rows: where links go and what stays open.
struct Drawer<'a> {
    key_url: String,
    filter: &'a Filter,
    selected: &'a str,
    /// Paths drawn open (besides the root and the way to the selected path).
    open: std::collections::HashSet<String>,
}

impl Drawer<'_> {
    fn row(&self, node: &Node, top: bool) -> String {
        let open = node.kids == Kids::Loaded
            && (top || self.open.contains(&node.path) || on_the_way(&node.path, self.selected));
        let mut inner = String::new();
        for (i, c) in node.children.iter().enumerate() {
            if node.gap == Some(i) {
                let after = i.checked_sub(1).map_or("", |p| name_of(&node.children[p].path));
                inner.push_str(&self.gap(&node.path, after, name_of(&c.path), false));
            }
            inner.push_str(&self.row(c, false));
        }
        let more = self.more(&node.path, node.children.last().map(|c| name_of(&c.path)), node.more);
        let t = NodeRow {
            node,
            name: name_of(&node.path),
            url: format!("{}?path={}{}", self.key_url, enc(&node.path), self.filter.suffix()),
            class: status_class(&node.status),
            selected: node.path == self.selected,
            open,
            inner,
            more,
        };
        t.render().unwrap_or_default()
    }

    /// Which of the root's children start open: in order, while the rows
    /// shown stay within `budget` (the root's own rows counted first).
    fn opened(root: &Node, budget: usize) -> std::collections::HashSet<String> {
        let mut rows = 1 + root.children.len();
        let mut open = std::collections::HashSet::new();
        for c in root.children.iter().filter(|c| c.kids == Kids::Loaded) {
            let more = c.children.len() + usize::from(c.more > 0);
            if rows + more > budget {
                break;
            }
            rows += more;
            open.insert(c.path.clone());
        }
        open
    }

    fn more(&self, parent: &str, after: Option<&str>, more: u64) -> String {
        if more == 0 {
            return String::new();
        }
        let t =
            MoreRow { parent, after: after.unwrap_or(""), before: "", label: format!("{} more…", count_text(more)) };
        t.render().unwrap_or_default()
    }

    /// The row standing for the names of `parent`'s children between
    /// `after` (or the first) and `before`, not loaded: it loads them a
    /// page at a time (`again`: some were loaded already).
    fn gap(&self, parent: &str, after: &str, before: &str, again: bool) -> String {
        let label = if again { format!("more names before {before}…") } else { format!("names before {before}…") };
        MoreRow { parent, after, before, label }.render().unwrap_or_default()
    }
}

/// One policy of the inspector, as QUOTA.GET shows it.
struct PolicyView {
    name: String,
    status: String,
    class: &'static str,
    used: String,
    held: String,
    limit: String,
    remaining: String,
    metric: String,
    mode: String,
    window: String,
    period: String,
    warn: String,
    /// Where a period starts: "day 15" for a month, "sunday", "04-01".
    anchor: String,
    /// The window's zone when not UTC, and the zone rules' version.
    tz: String,
    tzdata: String,
    rollover: String,
    low: String,
    granted: String,
    service: String,
    model: String,
    inflight: bool,
    source: String,
    used_pct: u32,
    held_pct: u32,
    /// used + held as a percent of the limit, for the bar's title.
    fill: String,
    grants: Vec<GrantView>,
    /// More live grants than those shown (the first in draw-down order are).
    grants_more: bool,
    /// Closed periods (QUOTA.HISTORY), for a policy with a window; None
    /// when not asked for, Err with the command's message.
    history: Option<Result<Vec<PeriodView>, String>>,
    edit_url: String,
    grant_url: String,
}

struct GrantView {
    id: String,
    amount: String,
    remaining: String,
    expires: String,
    priority: String,
    note: String,
}

/// One closed period of a policy, as QUOTA.HISTORY shows it.
struct PeriodView {
    start: String,
    end: String,
    used: String,
    allowance: String,
    rolled_over: String,
    granted: String,
}

fn period_view(h: &Json) -> PeriodView {
    let time = |f: &str| h.get(f).and_then(Json::as_u64).map(fmt_ms).unwrap_or_else(|| text(h, f));
    PeriodView {
        start: time("start"),
        end: time("end"),
        used: text(h, "used"),
        allowance: text(h, "allowance"),
        rolled_over: text(h, "rolled_over"),
        granted: text(h, "granted"),
    }
}

struct HoldView {
    id: String,
    paths: String,
    items: String,
    held: String,
    meta: String,
    left: String,
    expired: bool,
}

struct Rule {
    service: String,
    model: String,
}

#[derive(Template)]
#[template(path = "tree.html")]
struct TreePage {
    page: Page,
    key: String,
    key_url: String,
    path: String,
    filter: Filter,
    keep: String,
    /// The tree's root, keeping the filter.
    home: String,
    crumbs: Vec<(String, String)>,
    /// The tree pane, drawn; None with `tree_error` when QUOTA.TREE refused.
    tree: String,
    tree_error: Option<String>,
    empty_tree: bool,
    nodes: usize,
    status: String,
    class: &'static str,
    spent: String,
    policies: Vec<PolicyView>,
    holds: Vec<HoldView>,
    /// More live holds than those shown (the soonest to expire are).
    holds_more: bool,
    holds_shown: usize,
    grants_shown: usize,
    holds_error: Option<String>,
    /// The archived path above this one (shown with its leading `/`) and
    /// its tree page: this path is refused all the same.
    archived_above: Option<(String, String)>,
    allow: Vec<Rule>,
    deny: Vec<Rule>,
    note: String,
    tags: Vec<String>,
    archived: bool,
    plan: String,
    plan_version: String,
    plan_missing: bool,
    parent_url: String,
    now: String,
}

/// The amounts of a `metric → amount` map: `60 credits, 2 usd`.
fn amounts(v: Option<&Json>) -> String {
    match v.and_then(Json::as_object) {
        Some(m) if !m.is_empty() => {
            m.iter().map(|(k, a)| format!("{} {k}", a.as_str().unwrap_or(""))).collect::<Vec<_>>().join(", ")
        }
        _ => String::new(),
    }
}

/// `name=value` pairs of a hold's META (a map, or a flat array under RESP2).
fn meta_text(v: Option<&Json>) -> String {
    match v {
        Some(Json::Object(m)) => {
            m.iter().map(|(k, a)| format!("{k}={}", a.as_str().unwrap_or(""))).collect::<Vec<_>>().join(" ")
        }
        Some(Json::Array(a)) => a
            .chunks(2)
            .map(|p| format!("{}={}", p[0].as_str().unwrap_or(""), p.get(1).and_then(Json::as_str).unwrap_or("")))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// A policy's fill for a title: `75% of the limit used or held`.
fn fill_text(used: &str, held: &str, limit: &str) -> String {
    let (u, h) = bar(used, held, limit);
    format!("{u}% used, {h}% held")
}

fn policy_view(p: &Json, key_url: &str, path: &str) -> PolicyView {
    let name = text(p, "policy");
    let (used, held, limit) = (text(p, "used"), text(p, "held"), text(p, "limit"));
    let (used_pct, held_pct) = bar(&used, &held, &limit);
    let period = match (p.get("period_start").and_then(Json::as_u64), p.get("period_end").and_then(Json::as_u64)) {
        (Some(s), Some(e)) => format!("{} – {}", fmt_ms(s), fmt_ms(e)),
        _ => String::new(),
    };
    let warn = p
        .get("warn")
        .and_then(Json::as_array)
        .map(|w| w.iter().map(|x| format!("{}%", x.as_u64().unwrap_or(0))).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let status = text(p, "status");
    PolicyView {
        class: status_class(&status),
        status,
        fill: fill_text(&used, &held, &limit),
        used_pct,
        held_pct,
        remaining: text(p, "remaining"),
        metric: text(p, "metric"),
        mode: text(p, "mode"),
        window: text(p, "window"),
        period,
        warn,
        anchor: match p.get("anchor") {
            Some(Json::Number(day)) => format!("day {day}"),
            _ => text(p, "anchor"),
        },
        tz: text(p, "tz"),
        tzdata: text(p, "tzdata"),
        rollover: text(p, "rollover"),
        low: text(p, "low"),
        granted: text(p, "granted"),
        service: text(p, "service"),
        model: text(p, "model"),
        inflight: number(p, "inflight") == 1,
        source: text(p, "source"),
        grants: vec![],
        grants_more: false,
        history: None,
        edit_url: format!("{key_url}/policy?path={}&policy={}", enc(path), enc(&name)),
        grant_url: format!("{key_url}/grant?path={}&policy={}", enc(path), enc(&name)),
        name,
        used,
        held,
        limit,
    }
}

fn grant_view(g: &Json) -> GrantView {
    let expires = match g.get("expires_at").and_then(Json::as_u64) {
        Some(0) | None => "never".to_string(),
        Some(ms) => fmt_ms(ms),
    };
    let expires = if number(g, "period") == 1 { format!("{expires} (end of period)") } else { expires };
    GrantView {
        id: text(g, "id"),
        amount: text(g, "amount"),
        remaining: text(g, "remaining"),
        expires,
        priority: text(g, "priority"),
        note: text(g, "note"),
    }
}

/// A hold for the inspector; `now` is the quota clock, None when it could
/// not be read (then the time left is said to be unknown, not guessed).
fn hold_view(h: &Json, now: Option<u64>) -> HoldView {
    let expires_at = h.get("expires_at").and_then(Json::as_u64).unwrap_or(0);
    let paths = h
        .get("paths")
        .and_then(Json::as_array)
        .map(|p| p.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    HoldView {
        id: text(h, "id"),
        paths,
        items: text(h, "items"),
        held: amounts(h.get("held")),
        meta: meta_text(h.get("meta")),
        left: match now {
            Some(now) if expires_at > now => fmt_span(expires_at - now),
            Some(_) => "expired".to_string(),
            None => "unknown (the clock could not be read)".to_string(),
        },
        expired: now.is_some_and(|now| expires_at <= now),
    }
}

fn rules(access: Option<&Json>, which: &str) -> Vec<Rule> {
    access
        .and_then(|a| a.get(which))
        .and_then(Json::as_array)
        .map(|l| l.iter().map(|r| Rule { service: text(r, "service"), model: text(r, "model") }).collect())
        .unwrap_or_default()
}

/// The first view of the tree: `DEPTH 2 COUNT 400`. When the first child's
/// subtree used up the count before the root's children were listed (a
/// big first project), one page of the root's children is asked for too
/// and the grandchildren the first answer had are kept.
async fn first_view(app: &App, key: &str, filter: &Filter) -> Result<Node, QuotaError> {
    let mut args: Vec<String> = ["/", "DEPTH", "2", "COUNT", FIRST_VIEW].iter().map(|s| s.to_string()).collect();
    filter.args(&mut args);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let reply = app.quota.call(Cmd::Tree, Some(key), &refs).await?;
    let mut root = Node::of(&reply, 2);
    if root.more > 0 && root.children.len() < CHILD_PAGE {
        let page = child_page(app, key, "/", None, filter).await?;
        let mut known: std::collections::HashMap<String, Node> =
            root.children.drain(..).map(|c| (c.path.clone(), c)).collect();
        root.children = children_of(&page)
            .iter()
            .map(|c| known.remove(&text(c, "path")).unwrap_or_else(|| Node::of(c, 0)))
            .collect();
        root.more = number(&page, "more");
        root.kids = Kids::Loaded;
    }
    Ok(root)
}

/// One page of a node's children: `QUOTA.TREE key P DEPTH 1 COUNT 201
/// [AFTER c] [TAG t] [ARCHIVED]`.
async fn child_page(
    app: &App,
    key: &str,
    path: &str,
    after: Option<&str>,
    filter: &Filter,
) -> Result<Json, QuotaError> {
    let count = (CHILD_PAGE + 1).to_string();
    let mut args: Vec<String> = vec![path.to_string(), "DEPTH".into(), "1".into(), "COUNT".into(), count];
    if let Some(a) = after.filter(|a| !a.is_empty()) {
        args.push("AFTER".into());
        args.push(a.to_string());
    }
    filter.args(&mut args);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    app.quota.call(Cmd::Tree, Some(key), &refs).await
}

/// The loaded node at `path`, found along the way from `node`.
fn find_mut<'a>(node: &'a mut Node, path: &str) -> Option<&'a mut Node> {
    if node.path == path {
        return Some(node);
    }
    node.children.iter_mut().find(|c| on_the_way(&c.path, path)).and_then(|c| find_mut(c, path))
}

/// Puts the way's child `below` in its parent `n`'s children: in its place
/// in the page loaded (replacing its unloaded row), or, given the page
/// `after` it (the child is past the first page), first before that page
/// with a gap row for the names before it; the first page asked for is
/// then dropped (`drop_first`), the first view's loaded children are kept.
fn place(n: &mut Node, below: Node, after: Option<&Json>, drop_first: bool) {
    n.kids = Kids::Loaded;
    match after {
        Some(page) => {
            if drop_first {
                n.children.clear();
            }
            n.gap = Some(n.children.len());
            n.children.push(below);
            n.children.extend(children_of(page).iter().map(|c| Node::of(c, 0)));
            n.more = number(page, "more");
        }
        None => {
            let name = name_of(&below.path).to_string();
            let i = n.children.partition_point(|c| name_of(&c.path) < name.as_str());
            if n.children.get(i).is_some_and(|c| c.path == below.path) {
                n.children[i] = below;
            } else {
                n.children.insert(i, below);
            }
        }
    }
}

/// Whether the child named `c` is within a page of children (or would be,
/// left out by a filter): the page is the last or goes past the name.
fn within(kids: &[Node], more: u64, c: &str) -> bool {
    more == 0 || kids.last().is_some_and(|k| name_of(&k.path) >= c)
}

/// Draws the way to a selected path deeper than the first view. For each
/// level below the deepest node loaded on the way, one page of the
/// parent's children: its first page when the way's child is in it, else
/// the child first and the page after it (`QUOTA.TREE key parent DEPTH 1
/// COUNT 201 AFTER child`) with a row before it that loads the names
/// before it; and the selected path's first page of children. The pages
/// are asked for at once, the pages after a child in a second round.
async fn draw_the_way(app: &App, key: &str, filter: &Filter, root: &mut Node, path: &str) -> Result<(), QuotaError> {
    let way = crumbs(path);
    let last = way.len() - 1;
    // The deepest node on the way that the first view loaded.
    let mut depth = 0;
    let mut node: &Node = root;
    while let Some(next) = way.get(depth + 1) {
        match node.children.iter().find(|c| c.path == next.0) {
            Some(c) => {
                node = c;
                depth += 1;
            }
            None => break,
        }
    }
    let loaded = node.kids == Kids::Loaded;
    if depth == last && node.kids != Kids::Unknown {
        return Ok(());
    }
    // Whether the deepest loaded node's page holds the way's child.
    let held = loaded && way.get(depth + 1).is_some_and(|c| within(&node.children, node.more, &c.1));
    let firsts = join_all((depth..=last).map(|j| {
        let at = way[j].0.clone();
        let ask = !(j == depth && loaded);
        async move { if ask { Some(child_page(app, key, &at, None, filter).await) } else { None } }
    }))
    .await;
    let mut first: Vec<Option<Json>> = Vec::with_capacity(firsts.len());
    for f in firsts {
        first.push(f.transpose()?);
    }
    // Round two: the page after the way's child, where the first page does not hold it.
    let afters = join_all((depth..last).map(|j| {
        let (at, c) = (way[j].0.clone(), way[j + 1].1.clone());
        let ask = match &first[j - depth] {
            Some(page) => {
                let kids: Vec<Node> = children_of(page).iter().map(|k| Node::of(k, 0)).collect();
                !within(&kids, number(page, "more"), &c)
            }
            None => !held,
        };
        async move { if ask { Some(child_page(app, key, &at, Some(&c), filter).await) } else { None } }
    }))
    .await;
    let mut after: Vec<Option<Json>> = Vec::with_capacity(afters.len());
    for a in afters {
        after.push(a.transpose()?);
    }
    // From the selected path up, each level's child put in its parent.
    let Some(Some(selected)) = first.last() else { return Ok(()) };
    let mut below = Node::of(selected, 1);
    for j in (depth + 1..last).rev() {
        let Some(page) = &first[j - depth] else { return Ok(()) };
        let mut n = Node::of(page, 1);
        place(&mut n, below, after[j - depth].as_ref(), true);
        below = n;
    }
    let Some(at) = find_mut(root, &way[depth].0) else { return Ok(()) };
    if depth == last {
        // The selected path was loaded without its children.
        *at = below;
        return Ok(());
    }
    if let Some(page) = &first[0] {
        *at = Node::of(page, 1);
    }
    place(at, below, after[0].as_ref(), first[0].is_some());
    Ok(())
}

/// The topmost archived path above `path` (its nodes asked with one GET
/// each, at once: as many as the path is deep), as `(/x, its tree page)`.
/// QUOTA.GET marks only the archived node itself, though every path below
/// it is refused too.
async fn archived_above(app: &App, key: &str, key_url: &str, path: &str) -> Option<(String, String)> {
    let way: Vec<String> = crumbs(path).into_iter().map(|(p, _)| p).filter(|p| p != path).collect();
    let nodes =
        join_all(way.iter().map(|p| async move { app.quota.call(Cmd::Get, Some(key), &[p.as_str()]).await })).await;
    way.iter().zip(nodes).find(|(_, n)| n.as_ref().is_ok_and(|n| number(n, "archived") == 1)).map(|(p, _)| {
        let shown = web::shown(p);
        (shown, format!("{key_url}?path={}", enc(p)))
    })
}

#[derive(Template)]
#[template(path = "tree_missing.html")]
struct MissingPage {
    page: Page,
    key: String,
    key_url: String,
    /// The path with its leading `/`.
    shown: String,
    path: String,
    message: String,
    /// The nearest path above it that exists, when one does.
    parent_url: String,
}

/// A path that does not exist (yet): 404, with the command's message and
/// the way to create it (a policy there creates it, and the paths above).
fn missing_page(app: &App, uri: &Uri, key: &str, path: &str, e: &QuotaError) -> Response {
    let key_url = web::tree_url(key);
    let shown = web::shown(path);
    let parent_url = parent_of(path).map(|p| format!("{key_url}?path={}", enc(&p))).unwrap_or_else(|| key_url.clone());
    let mut r = html(&MissingPage {
        page: Page::new(app, format!("{shown} · {key}"), Section::Trees, uri),
        key: key.to_string(),
        key_url,
        shown,
        path: path.to_string(),
        message: e.message.clone(),
        parent_url,
    });
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

async fn page(State(app): State<App>, uri: Uri, TreeKey(key): TreeKey, Query(q): Query<TreeQuery>) -> Response {
    let path = canonical(q.path.as_deref().unwrap_or("/"));
    let filter = Filter::of(&q);
    let key_url = web::tree_url(&key);
    let holds_count = (HOLDS_SHOWN + 1).to_string();
    let holds_args = [path.as_str(), "COUNT", holds_count.as_str()];
    let get_args = [path.as_str()];
    let (node, tree, holds, now) = tokio::join!(
        app.quota.call(Cmd::Get, Some(&key), &get_args),
        first_view(&app, &key, &filter),
        app.quota.call(Cmd::Holds, Some(&key), &holds_args),
        app.quota.now_ms(),
    );
    let node = match node {
        Ok(n) => n,
        Err(e) if e.is_not_found() => return missing_page(&app, &uri, &key, &path, &e),
        Err(e) => return error_page(&app, &uri, web::status_of(&e), &e, &key_url),
    };
    let now = now.ok();
    let path = match text(&node, "path") {
        p if p.is_empty() => path,
        p => p,
    };

    let mut policies: Vec<PolicyView> = node
        .get("policies")
        .and_then(Json::as_array)
        .map(|ps| ps.iter().map(|p| policy_view(p, &key_url, &path)).collect())
        .unwrap_or_default();
    // Grants of every policy that may have some (INFLIGHT ones take none).
    let asks = policies.iter().filter(|p| !p.inflight).map(|p| {
        let name = p.name.clone();
        let app = app.clone();
        let (key, path) = (key.clone(), path.clone());
        let count = (GRANTS_SHOWN + 1).to_string();
        async move { (name.clone(), app.quota.call(Cmd::Grants, Some(&key), &[&path, &name, "COUNT", &count]).await) }
    });
    // The past periods of every policy with a window, at the same time.
    let pasts = policies.iter().filter(|p| !p.inflight && !p.window.is_empty() && p.window != "none").map(|p| {
        let name = p.name.clone();
        let app = app.clone();
        let (key, path) = (key.clone(), path.clone());
        async move { (name.clone(), app.quota.call(Cmd::History, Some(&key), &[&path, &name]).await) }
    });
    // The way to a deep path in the tree pane, meanwhile; a failure (a path
    // deleted meanwhile) leaves the first view as it is.
    let mut tree = tree;
    let way = async {
        if let Ok(root) = &mut tree
            && path != "/"
        {
            let _ = draw_the_way(&app, &key, &filter, root, &path).await;
        }
    };
    let (grants, pasts, archived_above, ()) =
        tokio::join!(join_all(asks), join_all(pasts), archived_above(&app, &key, &key_url, &path), way);
    for (name, grants) in grants {
        if let (Some(p), Ok(Json::Array(list))) = (policies.iter_mut().find(|p| p.name == name), grants) {
            p.grants = list.iter().take(GRANTS_SHOWN).map(grant_view).collect();
            p.grants_more = list.len() > GRANTS_SHOWN;
        }
    }
    for (name, past) in pasts {
        if let Some(p) = policies.iter_mut().find(|p| p.name == name) {
            p.history = Some(match past {
                Ok(Json::Array(list)) => Ok(list.iter().map(period_view).collect()),
                Ok(_) => Ok(vec![]),
                Err(e) => Err(e.message),
            });
        }
    }

    let (tree_html, tree_error, nodes, empty_tree) = match &tree {
        Ok(root) => {
            let open = Drawer::opened(root, OPEN_ROWS);
            let drawer = Drawer { key_url: key_url.clone(), filter: &filter, selected: &path, open };
            let empty = root.children.is_empty()
                && root.more == 0
                && root.headline.is_empty()
                && filter.tag.is_empty()
                && !root.archived;
            (drawer.row(root, true), None, root.count(), empty)
        }
        Err(e) => (String::new(), Some(e.message.clone()), 0, false),
    };
    let (holds, holds_more, holds_error) = match holds {
        Ok(Json::Array(list)) => {
            (list.iter().take(HOLDS_SHOWN).map(|h| hold_view(h, now)).collect(), list.len() > HOLDS_SHOWN, None)
        }
        Ok(_) => (vec![], false, None),
        Err(e) => (vec![], false, Some(e.message)),
    };
    let access = node.get("access");
    let title = if path == "/" { key.clone() } else { format!("{path} · {key}") };
    let page = Page::new(&app, title, Section::Trees, &uri);
    let status = text(&node, "status");
    html(&TreePage {
        page,
        key_url: key_url.clone(),
        keep: filter.suffix(),
        home: format!("{key_url}?path=%2F{}", filter.suffix()),
        crumbs: crumbs(&path),
        tree: tree_html,
        tree_error,
        empty_tree,
        nodes,
        class: status_class(&status),
        status,
        spent: amounts(node.get("spent")),
        policies,
        holds,
        holds_more,
        holds_shown: HOLDS_SHOWN,
        grants_shown: GRANTS_SHOWN,
        holds_error,
        archived_above,
        allow: rules(access, "allow"),
        deny: rules(access, "deny"),
        note: text(&node, "note"),
        tags: node
            .get("tags")
            .and_then(Json::as_array)
            .map(|t| t.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        archived: number(&node, "archived") == 1,
        plan: text(&node, "plan"),
        plan_version: text(&node, "plan_version"),
        plan_missing: number(&node, "plan_missing") == 1,
        parent_url: parent_of(&path)
            .map(|p| format!("{key_url}?path={}{}", enc(&p), filter.suffix()))
            .unwrap_or_default(),
        now: now.map(fmt_ms).unwrap_or_default(),
        filter,
        path,
        key,
    })
}

/// One page of a node's children as `<li>` rows (for tree.js), the
/// "N more…" row last when more follow; a missing path is a 404 with the
/// command's message.
async fn children(State(app): State<App>, TreeKey(key): TreeKey, Query(q): Query<TreeQuery>) -> Response {
    let path = canonical(q.path.as_deref().unwrap_or("/"));
    let filter = Filter::of(&q);
    let reply = match child_page(&app, &key, &path, q.after.as_deref(), &filter).await {
        Ok(r) => r,
        Err(e) => {
            let row = format!("<li class=\"error\" role=\"alert\">{}</li>", escape(&e.message));
            return (web::status_of(&e), [(header::CONTENT_TYPE, "text/html; charset=utf-8")], row).into_response();
        }
    };
    let mut kids: Vec<Node> = children_of(&reply).iter().map(|c| Node::of(c, 0)).collect();
    let before = q.before.as_deref().unwrap_or("");
    let more = number(&reply, "more");
    // A gap's page stops at the child drawn after the gap.
    let reached = !before.is_empty() && {
        let all = kids.len();
        kids.retain(|c| name_of(&c.path) < before);
        kids.len() < all || more == 0
    };
    let drawer = Drawer { key_url: web::tree_url(&key), filter: &filter, selected: "", open: Default::default() };
    let mut body: String = kids.iter().map(|c| drawer.row(c, false)).collect();
    if kids.is_empty() && q.after.as_deref().unwrap_or("").is_empty() && before.is_empty() {
        body.push_str("<li class=\"leaf-note muted\">no paths below</li>");
    }
    let last = kids.last().map(|c| name_of(&c.path));
    if before.is_empty() {
        body.push_str(&drawer.more(&path, last, more));
    } else if !reached {
        let after = last.or(q.after.as_deref()).unwrap_or("");
        body.push_str(&drawer.gap(&path, after, before, true));
    }
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// HTML-escapes text put into a fragment by hand.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_read_as_replies_write_them() {
        // asked, canonical, last segment, parent
        let rows = [
            ("", "/", "/", None),
            ("/", "/", "/", None),
            ("//a/b", "a/b", "b", Some("a")),
            ("projects", "projects", "projects", Some("/")),
            (" p/u7 ", "p/u7", "u7", Some("p")),
        ];
        for (asked, canon, name, parent) in rows {
            let c = canonical(asked);
            assert_eq!(c, canon, "{asked:?}");
            assert_eq!(name_of(&c), name, "{asked:?}");
            assert_eq!(parent_of(&c).as_deref(), parent, "{asked:?}");
        }
    }

    #[test]
    fn crumbs_lead_from_the_root() {
        let c = crumbs("a/b/c");
        let paths: Vec<&str> = c.iter().map(|(p, _)| p.as_str()).collect();
        let names: Vec<&str> = c.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(paths, ["/", "a", "a/b", "a/b/c"]);
        assert_eq!(names, ["/", "a", "b", "c"]);
        assert_eq!(crumbs("/").len(), 1);
    }

    #[test]
    fn the_way_to_a_path() {
        // node, selected, on the way
        let rows = [
            ("/", "a/b", true),
            ("a", "a/b", true),
            ("a/b", "a/b", true),
            ("a/bc", "a/b", false),
            ("a/b", "a/bc", false),
            ("a/b/c", "a/b", false),
        ];
        for (node, sel, on) in rows {
            assert_eq!(on_the_way(node, sel), on, "{node} {sel}");
        }
    }

    #[test]
    fn filters_become_options_and_links() {
        let mut args = vec![];
        let f = Filter { tag: "ml".into(), archived: true };
        f.args(&mut args);
        assert_eq!(args, ["TAG", "ml", "ARCHIVED"]);
        assert_eq!(f.suffix(), "&tag=ml&archived=1");
        let none = Filter::default();
        let mut args = vec![];
        none.args(&mut args);
        assert!(args.is_empty());
        assert_eq!(none.suffix(), "");
        let q = TreeQuery { archived: Some("1".into()), tag: Some(" a b ".into()), ..Default::default() };
        let f = Filter::of(&q);
        assert!(f.archived);
        assert_eq!(f.suffix(), "&tag=a%20b&archived=1");
    }

    #[test]
    fn counts_and_amounts_for_people() {
        assert_eq!(count_text(0), "0");
        assert_eq!(count_text(999), "999");
        assert_eq!(count_text(1000), "1,000");
        assert_eq!(count_text(99_800), "99,800");
        assert_eq!(count_text(1_234_567), "1,234,567");
        assert_eq!(amounts(Some(&json!({"credits": "60", "usd": "0.5"}))), "60 credits, 0.5 usd");
        assert_eq!(amounts(Some(&json!({}))), "");
        assert_eq!(meta_text(Some(&json!({"who": "bob", "req": "r1"}))), "req=r1 who=bob");
        assert_eq!(meta_text(Some(&json!(["who", "bob", "req", "r1"]))), "who=bob req=r1");
        assert_eq!(meta_text(Some(&json!(["who", "bob"]))), "who=bob");
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn what_is_known_of_children() {
        // A DEPTH 2 answer: the root's children are loaded, theirs too, the
        // grandchildren's are not known (below DEPTH nothing is marked).
        let reply = json!({"path": "/", "status": "none", "policies": [], "children": [
            {"path": "a", "status": "over", "policies": [], "children": [
                {"path": "a/x", "status": "none", "policies": [], "children": []}]},
            {"path": "b", "status": "none", "policies": [], "children": []},
            {"path": "c", "status": "none", "policies": [], "children": [], "more": 3}],
            "more": 2});
        let root = Node::of(&reply, 2);
        assert_eq!(root.kids, Kids::Loaded);
        assert_eq!(root.more, 2);
        assert_eq!(root.children[0].kids, Kids::Loaded);
        assert_eq!(root.children[0].children[0].kids, Kids::Unknown);
        assert_eq!(root.children[1].kids, Kids::None);
        assert_eq!(root.children[2].kids, Kids::Loaded);
        assert_eq!(root.count(), 5);
        // Open while the rows fit: the root and its 3 children are 4 rows,
        // a's child makes 5, c's "more…" row 6.
        let open = |budget| {
            let mut o: Vec<String> = Drawer::opened(&root, budget).into_iter().collect();
            o.sort();
            o
        };
        assert_eq!(open(4), Vec::<String>::new());
        assert_eq!(open(5), ["a"]);
        assert_eq!(open(6), ["a", "c"]);
    }

    #[test]
    fn the_way_s_child_in_its_parent() {
        let kid = |p: &str| Node::of(&json!({"path": p, "status": "none", "policies": []}), 0);
        let page = |names: &[&str], more: u64| {
            let children: Vec<Json> =
                names.iter().map(|n| json!({"path": format!("m/{n}"), "status": "none", "policies": []})).collect();
            json!({"path": "m", "status": "none", "policies": [], "children": children, "more": more})
        };
        let names = |n: &Node| n.children.iter().map(|c| name_of(&c.path).to_string()).collect::<Vec<_>>();
        // Within a page: the last page, or one that goes past the name.
        let first = Node::of(&page(&["a", "c", "e"], 5), 1);
        assert!(within(&first.children, 5, "c") && within(&first.children, 5, "e"));
        assert!(!within(&first.children, 5, "f"));
        assert!(within(&first.children, 0, "z"));
        // In its place: the unloaded row replaced, or inserted (left out by a filter).
        let mut n = first;
        let mut c = Node::of(&page(&["x"], 0), 1);
        c.path = "m/c".into();
        place(&mut n, c, None, false);
        assert_eq!(names(&n), ["a", "c", "e"]);
        assert_eq!(n.children[1].children.len(), 1);
        place(&mut n, kid("m/b"), None, false);
        assert_eq!((names(&n), n.gap), (vec!["a".into(), "b".into(), "c".into(), "e".into()], None));
        // Past the first page: the child, then the page after it, a gap before it.
        let mut n = Node::of(&page(&["a", "c"], 7), 1);
        place(&mut n, kid("m/k"), Some(&page(&["l", "m"], 3)), false);
        assert_eq!(
            (names(&n), n.gap, n.more),
            (vec!["a".into(), "c".into(), "k".into(), "l".into(), "m".into()], Some(2), 3)
        );
        let mut n = Node::of(&page(&["a", "c"], 7), 1);
        place(&mut n, kid("m/k"), Some(&page(&["l"], 0)), true);
        assert_eq!((names(&n), n.gap, n.more), (vec!["k".into(), "l".into()], Some(0), 0));
        // The gap row loads the names between its neighbours.
        let f = Filter::default();
        let d = Drawer { key_url: "/trees/t".into(), filter: &f, selected: "", open: Default::default() };
        let html = d.row(&n, true);
        assert!(html.contains(r#"data-after="" data-before="k">names before k…"#), "{html}");
        assert!(d.gap("m", "c", "k", true).contains(r#"data-after="c" data-before="k">more names before k…"#));
    }

    #[test]
    fn policies_read_from_a_get() {
        let p = json!({"policy": "monthly", "metric": "credits", "mode": "strict", "window": "month",
            "limit": "100", "used": "50", "held": "25", "remaining": "25", "status": "warning",
            "warn": [80, 90], "anchor": 1, "period_start": 1_769_904_000_000u64,
            "period_end": 1_772_323_200_000u64, "source": "tree"});
        let v = policy_view(&p, "/trees/acme", "projects/p1");
        assert_eq!((v.used_pct, v.held_pct), (50, 25));
        assert_eq!(v.class, "status-warning");
        assert_eq!(v.warn, "80%, 90%");
        assert_eq!(v.anchor, "day 1");
        assert_eq!(v.period, "2026-02-01 00:00:00 UTC – 2026-03-01 00:00:00 UTC");
        assert_eq!(v.edit_url, "/trees/acme/policy?path=projects%2Fp1&policy=monthly");
        assert!(!v.inflight);
        let h = hold_view(
            &json!({"id": "h1", "paths": ["a", "b"], "expires_at": 70_000, "items": 2,
            "held": {"credits": "10"}, "meta": {"who": "bob"}}),
            Some(5_000),
        );
        assert_eq!((h.paths.as_str(), h.left.as_str(), h.held.as_str()), ("a, b", "1 m 5 s", "10 credits"));
        assert!(!h.expired);
        assert_eq!(hold_view(&json!({"expires_at": 10}), Some(10)).left, "expired");
        let unknown = hold_view(&json!({"expires_at": 10}), None);
        assert!(unknown.left.starts_with("unknown") && !unknown.expired);
        let g = grant_view(&json!({"id": "g", "amount": "5", "remaining": "4", "priority": 50, "expires_at": 0,
            "period": 0, "note": null}));
        assert_eq!((g.expires.as_str(), g.priority.as_str(), g.note.as_str()), ("never", "50", ""));
    }
}
