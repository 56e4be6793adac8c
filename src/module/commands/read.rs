//! `QUOTA.GET`, `QUOTA.TREE`, `QUOTA.HOLDS`: reading a tree.

use super::args::Args;
use super::reply::{Reply, to_json};
use super::{Command, Env, Handler, keyword, optional_path};
use crate::engine::events::{Event, EventKind};
use crate::engine::names::{self, MAX_DEPTH_HARD, display_path};
use crate::engine::outcome::{HoldView, NodeView, PolicyView, ResetOutcome};
use crate::engine::plan::Plan;
use crate::engine::policy::{Grant, MAX_GRANTS};
use crate::engine::tz::{self, Zone};
use crate::engine::view::TreeQuery;
use crate::engine::window::AnchorShown;
use crate::engine::{Error, Result, Tree, Window};
use std::sync::Arc;

pub const GET: Command = Command { name: "QUOTA.GET", handler: Handler::Read(get) };
pub const TREE: Command = Command { name: "QUOTA.TREE", handler: Handler::Read(tree_cmd) };
pub const HOLDS: Command = Command { name: "QUOTA.HOLDS", handler: Handler::Read(holds) };
pub const HISTORY: Command = Command { name: "QUOTA.HISTORY", handler: Handler::Read(history) };
pub const EVENTS: Command = Command { name: "QUOTA.EVENTS", handler: Handler::Read(events) };
pub const GRANTS: Command = Command { name: "QUOTA.GRANTS", handler: Handler::Read(grants) };

/// `QUOTA.GRANTS key path policy [COUNT n]`: live grants in draw-down order.
fn grants(tree: &Tree, args: &mut Args<'_>, env: &Env) -> Result<Reply> {
    let path = args.next_path("a path")?;
    let name = args.next_name("policy name")?;
    let mut count = MAX_GRANTS as u64;
    if !args.is_done() {
        let word = args.next_str("a keyword")?;
        if keyword(word, &["COUNT"]).is_none() {
            return Err(args.unknown(word));
        }
        count = args.next_u64("COUNT", 1, MAX_GRANTS as u64)?;
    }
    args.finish()?;
    let current = crate::plans::current_for(tree);
    let grants = tree.grants_seen(&path, &name, env.now_ms, count as usize, current.as_ref())?;
    Ok(Reply::Array(grants.iter().map(grant_reply).collect()))
}

/// A grant as `QUOTA.GRANTS` and `QUOTA.GRANT` show it.
pub fn grant_reply(g: &Grant) -> Reply {
    Reply::Map(vec![
        ("id", Reply::str(g.id.clone())),
        ("amount", Reply::amount(g.amount)),
        ("remaining", Reply::amount(g.remaining)),
        ("priority", Reply::Int(i64::from(g.priority))),
        ("expires_at", Reply::ms(g.expires_at_ms)),
        ("period", Reply::flag(g.period)),
        ("created_at", Reply::ms(g.created_at_ms)),
        ("note", Reply::opt_str(g.note.as_deref())),
    ])
}

/// Default and largest `COUNT` of `QUOTA.EVENTS`.
const EVENTS_DEFAULT_COUNT: u64 = 100;
const EVENTS_MAX_COUNT: u64 = 10_000;

/// `QUOTA.EVENTS key [SINCE seq] [COUNT n]`: events after `seq`, oldest first.
fn events(tree: &Tree, args: &mut Args<'_>, env: &Env) -> Result<Reply> {
    let (mut since, mut count) = (0, EVENTS_DEFAULT_COUNT);
    let mut seen = super::args::Seen::default();
    while !args.is_done() {
        let word = args.next_str("a keyword")?;
        let Some(kw) = keyword(word, &["SINCE", "COUNT"]) else { return Err(args.unknown(word)) };
        args.once(&mut seen, kw)?;
        match kw {
            "SINCE" => since = args.next_u64("SINCE", 0, u64::MAX)?,
            _ => count = args.next_u64("COUNT", 1, EVENTS_MAX_COUNT)?,
        }
    }
    let events = tree.events_view(since, count as usize, env.due_ms, &env.limits);
    Ok(Reply::Array(events.iter().map(|e| event_reply(e, None)).collect()))
}

/// An event as `QUOTA.EVENTS` and the `quota:events:<key>` channel show it.
pub fn event_reply(e: &Event, tree: Option<&str>) -> Reply {
    let amount = |a: Option<rust_decimal::Decimal>| a.map_or(Reply::Nil, Reply::amount);
    let mut fields =
        vec![("seq", Reply::ms(e.seq)), ("type", Reply::str(e.kind.as_str())), ("time", Reply::ms(e.time_ms))];
    if let Some(tree) = tree {
        fields.push(("tree", Reply::str(tree)));
    }
    fields.extend([
        ("path", Reply::str(display_path(&e.path))),
        ("policy", Reply::opt_str(e.policy.as_deref())),
        ("metric", Reply::opt_str(e.metric.as_deref())),
        ("used", amount(e.used)),
        ("held", amount(e.held)),
        ("limit", amount(e.limit)),
    ]);
    match e.kind {
        EventKind::Warning => fields.push(("threshold", e.threshold.map_or(Reply::Nil, |t| Reply::Int(i64::from(t))))),
        EventKind::Reset => fields.push(("periods", e.periods.map_or(Reply::Nil, Reply::ms))),
        EventKind::Rollover => fields.push(("rolled_over", amount(e.rolled_over))),
        EventKind::Expired => {
            fields.push(("id", Reply::opt_str(e.id.as_deref())));
            fields.push(("amounts", Reply::costs(&e.amounts)));
            if let Some(meta) = &e.meta {
                fields.push(("meta", meta_reply(meta)));
            }
        }
        EventKind::Over => {}
        EventKind::Low => {
            let more = e.more.as_deref();
            fields.push(("remaining", amount(more.and_then(|m| m.remaining))));
            fields.push(("low", amount(more.and_then(|m| m.low))));
        }
        EventKind::Disallowed => {
            let access = e.access.as_deref();
            fields.push(("rule", access.map_or(Reply::Nil, |a| Reply::str(a.rule.as_str()))));
            fields.push(("service", Reply::opt_str(access.and_then(|a| a.service.as_deref()))));
            fields.push(("model", Reply::opt_str(access.and_then(|a| a.model.as_deref()))));
            fields.push(("id", Reply::opt_str(e.id.as_deref())));
            fields.push(("amounts", Reply::costs(&e.amounts)));
            if let Some(meta) = &e.meta {
                fields.push(("meta", meta_reply(meta)));
            }
        }
        EventKind::GrantExpired => {
            let more = e.more.as_deref();
            fields.push(("grant", Reply::opt_str(more.and_then(|m| m.grant.as_deref()))));
            fields.push(("amount", amount(more.and_then(|m| m.amount))));
            fields.push(("expires_at", more.and_then(|m| m.expires_at_ms).map_or(Reply::Nil, Reply::ms)));
        }
    }
    Reply::Map(fields)
}

/// Default and largest `COUNT` of `QUOTA.HOLDS`.
const HOLDS_DEFAULT_COUNT: u64 = 100;
const HOLDS_MAX_COUNT: u64 = 10_000;

/// `QUOTA.GET key path`
fn get(tree: &Tree, args: &mut Args<'_>, env: &Env) -> Result<Reply> {
    let path = args.next_path("a path")?;
    args.finish()?;
    let current = crate::plans::current_for(tree);
    let mut reply = node_reply(&tree.get_seen(&path, env.now_ms, env.due_ms, current.as_ref())?, false);
    push_plan(&mut reply, tree, current.as_ref());
    Ok(reply)
}

/// Default and largest `COUNT` of `QUOTA.TREE`: nodes returned at most.
const TREE_DEFAULT_COUNT: u64 = 1000;
const TREE_MAX_COUNT: u64 = 100_000;

/// The options of `QUOTA.TREE` (each takes one value).
const TREE_OPTIONS: [&str; 5] = ["DEPTH", "COUNT", "FORMAT", "TAG", "AFTER"];

/// Whether `words` have the shape `[path] [option value]…` of `QUOTA.TREE`
/// (an odd count starts with the path; values are not checked here).
fn tree_shape(words: &[&str]) -> bool {
    let pairs = words.get(words.len() % 2..).unwrap_or_default();
    pairs.chunks(2).all(|pair| pair.first().is_some_and(|w| keyword(w, &TREE_OPTIONS).is_some()))
}

/// Whether the last argument of `QUOTA.TREE` is the `ARCHIVED` flag (it is
/// then consumed): a last `ARCHIVED` (any case) is the flag when it is the
/// only argument or when the arguments with it do not have the shape
/// `[path] [option value]…`; when they do, it is an option's value
/// (`TAG archived`). A second flag before it is an error.
/// Lua twin: `CMD.tree_flag` (lua/src/80_commands.lua).
fn tree_flag(args: &mut Args<'_>) -> Result<bool> {
    let words = args.rest();
    let flag = |w: &&str| w.eq_ignore_ascii_case("ARCHIVED");
    let Some((last, rest)) = words.split_last() else { return Ok(false) };
    if !flag(last) || !rest.is_empty() && tree_shape(words) {
        return Ok(false);
    }
    if rest.last().is_some_and(flag) && !tree_shape(rest) {
        return Err(Error::syntax(format!("ARCHIVED given twice in {}", args.command())));
    }
    Ok(args.eat_last("ARCHIVED"))
}

/// `QUOTA.TREE key [path] [DEPTH n] [COUNT n] [FORMAT resp|json] [TAG t] [AFTER name] [ARCHIVED]`
/// Lua twin: `CMD.cmd_tree` (lua/src/80_commands.lua).
fn tree_cmd(tree: &Tree, args: &mut Args<'_>, env: &Env) -> Result<Reply> {
    let archived = tree_flag(args)?;
    let path = optional_path(args)?;
    let (mut depth, mut count, mut json) = (MAX_DEPTH_HARD as u64, TREE_DEFAULT_COUNT, false);
    let (mut tag, mut after) = (None, None);
    let mut seen = super::args::Seen::default();
    while !args.is_done() {
        let word = args.next_str("a keyword")?;
        let Some(kw) = keyword(word, &TREE_OPTIONS) else { return Err(args.unknown(word)) };
        args.once(&mut seen, kw)?;
        match kw {
            "DEPTH" => depth = args.next_u64("DEPTH", 0, MAX_DEPTH_HARD as u64)?,
            "COUNT" => count = args.next_u64("COUNT", 1, TREE_MAX_COUNT)?,
            "TAG" => {
                let t = args.next_str("a tag after TAG")?;
                crate::engine::labels::check_tag(t)?;
                tag = Some(t);
            }
            "AFTER" => after = Some(names::parse_segment(args.next_str("a name after AFTER")?, "name after AFTER")?),
            _ => {
                let format = args.next_str("a format after FORMAT")?;
                json = match keyword(format, &["RESP", "JSON"]) {
                    Some("JSON") => true,
                    Some(_) => false,
                    None => return Err(Error::syntax("FORMAT must be resp or json")),
                };
            }
        }
    }
    let current = crate::plans::current_for(tree);
    let query = TreeQuery { tag, archived, after, ..TreeQuery::new(&path, depth as usize, count as usize) };
    let view = tree.tree_view_filtered(&query, env.now_ms, env.due_ms, current.as_ref())?;
    let mut reply = node_reply(&view.root, true);
    if let Reply::Map(fields) = &mut reply {
        fields.push(("nodes", Reply::Int(view.nodes as i64)));
        fields.push(("truncated", Reply::flag(view.truncated)));
    }
    push_plan(&mut reply, tree, current.as_ref());
    Ok(if json { Reply::Str(to_json(&reply)) } else { reply })
}

/// `QUOTA.HOLDS key [path] [COUNT n]`
fn holds(tree: &Tree, args: &mut Args<'_>, env: &Env) -> Result<Reply> {
    let path = optional_path(args)?;
    let mut count = HOLDS_DEFAULT_COUNT;
    if !args.is_done() {
        let word = args.next_str("a keyword")?;
        if keyword(word, &["COUNT"]).is_none() {
            return Err(args.unknown(word));
        }
        count = args.next_u64("COUNT", 1, HOLDS_MAX_COUNT)?;
    }
    args.finish()?;
    Ok(Reply::Array(tree.holds_view_at(&path, count as usize, env.due_ms).iter().map(hold_reply).collect()))
}

/// `QUOTA.HISTORY key path policy`: closed periods, newest first.
fn history(tree: &Tree, args: &mut Args<'_>, env: &Env) -> Result<Reply> {
    let path = args.next_path("a path")?;
    let name = args.next_name("policy name")?;
    args.finish()?;
    let current = crate::plans::current_for(tree);
    let (window, closed) = tree.history_seen(&path, &name, env.now_ms, current.as_ref())?;
    Ok(Reply::Array(closed.iter().map(|c| closed_reply(c, &window)).collect()))
}

/// A closed period, as HISTORY lists it and `QUOTA.RESET` replies: its
/// `label` (calendar windows) after `end`.
pub fn closed_reply(c: &ResetOutcome, window: &Window) -> Reply {
    let mut fields = vec![("start", Reply::ms(c.start_ms)), ("end", Reply::ms(c.end_ms))];
    if let Some(label) = window.period_label(c.start_ms, c.end_ms) {
        fields.push(("label", Reply::str(label)));
    }
    fields.extend([
        ("used", Reply::amount(c.used)),
        ("allowance", Reply::amount(c.allowance)),
        ("rolled_over", Reply::amount(c.rolled_over)),
        ("granted", Reply::amount(c.granted)),
    ]);
    Reply::Map(fields)
}

fn hold_reply(h: &HoldView) -> Reply {
    let mut fields = vec![
        ("id", Reply::str(h.id.clone())),
        ("paths", Reply::strings(h.paths.iter().cloned())),
        ("expires_at", Reply::ms(h.expires_at_ms)),
        ("items", Reply::Int(h.items as i64)),
        ("held", Reply::costs(&h.held)),
    ];
    if let Some(meta) = &h.meta {
        fields.push(("meta", meta_reply(meta)));
    }
    Reply::Map(fields)
}

/// `META` pairs as a map, in the order given (HOLDS, `expired` and
/// `disallowed` events).
pub fn meta_reply(meta: &crate::engine::meta::Meta) -> Reply {
    Reply::Pairs(meta.iter().map(|(n, v)| (n.clone(), Reply::str(v.clone()))).collect())
}

fn node_reply(node: &NodeView, with_children: bool) -> Reply {
    let mut fields = vec![
        ("path", Reply::str(node.path.clone())),
        ("status", Reply::str(node.status.as_str())),
        ("spent", Reply::costs(&node.spent)),
        ("policies", Reply::Array(node.policies.iter().map(node_policy_reply).collect())),
    ];
    if let Some(access) = &node.access {
        fields.push(("access", super::access::rules_reply(access)));
    }
    if let Some(labels) = &node.labels {
        if let Some(note) = &labels.note {
            fields.push(("note", Reply::str(&**note)));
        }
        if !labels.tags.is_empty() {
            fields.push(("tags", Reply::strings(labels.tags.iter().map(|t| t.to_string()))));
        }
        if labels.archived {
            fields.push(("archived", Reply::Int(1)));
        }
    }
    if with_children {
        fields.push(("children", Reply::Array(node.children.iter().map(|c| node_reply(c, true)).collect())));
        if node.more > 0 {
            fields.push(("more", Reply::Int(node.more as i64)));
        }
    }
    Reply::Map(fields)
}

pub fn policy_reply(p: &PolicyView) -> Reply {
    let mut fields = vec![
        ("policy", Reply::str(p.name.clone())),
        ("metric", Reply::str(p.metric.clone())),
        ("mode", Reply::str(p.mode.as_str())),
        ("window", Reply::str(p.window.label())),
        ("limit", Reply::amount(p.limit)),
    ];
    if let Some(base) = p.base_limit {
        fields.push(("base_limit", Reply::amount(base)));
    }
    fields.extend([
        ("used", Reply::amount(p.used)),
        ("held", Reply::amount(p.held)),
        ("remaining", Reply::amount(p.remaining)),
        ("status", Reply::str(p.status.as_str())),
        ("warn", Reply::Array(p.warn.iter().map(|&w| Reply::Int(i64::from(w))).collect())),
    ]);
    push_zone(&mut fields, &p.window);
    if let Some(cap) = p.rollover {
        fields.push(("rollover", Reply::amount(cap)));
    }
    if let Some(service) = &p.service {
        fields.push(("service", Reply::str(service.clone())));
    }
    if let Some(model) = &p.model {
        fields.push(("model", Reply::str(model.clone())));
    }
    if let Some(low) = p.low {
        fields.push(("low", Reply::amount(low)));
    }
    if let Some(granted) = p.granted {
        fields.push(("granted", Reply::amount(granted)));
    }
    if p.inflight {
        fields.push(("inflight", Reply::Int(1)));
    }
    push_period(&mut fields, p.period);
    Reply::Map(fields)
}

/// A policy as GET and TREE show it: with its `source` last.
fn node_policy_reply(p: &PolicyView) -> Reply {
    let mut reply = policy_reply(p);
    if let Reply::Map(fields) = &mut reply {
        fields.push(("source", Reply::str(if p.from_plan { "plan" } else { "tree" })));
    }
    reply
}

/// `plan`, `plan_version`, `plan_missing` (GET after `policies`, TREE
/// after `truncated`).
fn push_plan(reply: &mut Reply, tree: &Tree, current: Option<&Arc<Plan>>) {
    let info = tree.plan_info(current);
    if let Reply::Map(fields) = reply {
        fields.push(("plan", Reply::opt_str(info.name.as_deref())));
        fields.push(("plan_version", info.version.map_or(Reply::Nil, Reply::ms)));
        fields.push(("plan_missing", Reply::flag(info.missing)));
    }
}

/// `anchor` (a month's day, a week's day name, a year's `MM-DD`), `tz` (not
/// UTC) and `tzdata` (a named zone's rules) of a calendar window.
pub fn push_zone(fields: &mut Vec<(&'static str, Reply)>, window: &Window) {
    match window.anchor_shown() {
        Some(AnchorShown::Day(day)) => fields.push(("anchor", Reply::Int(i64::from(day)))),
        Some(AnchorShown::Text(text)) => fields.push(("anchor", Reply::str(text))),
        None => {}
    }
    let tz = window.tz();
    if !tz.is_utc() {
        fields.push(("tz", Reply::str(tz.name())));
        if matches!(tz, Zone::Named(_)) {
            fields.push(("tzdata", Reply::str(tz::tzdata_version())));
        }
    }
}

/// `period_start` and `period_end`, for windowed policies.
pub fn push_period(fields: &mut Vec<(&'static str, Reply)>, period: Option<(u64, u64)>) {
    if let Some((start, end)) = period {
        fields.push(("period_start", Reply::ms(start)));
        fields.push(("period_end", Reply::ms(end)));
    }
}
