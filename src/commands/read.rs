//! `QUOTA.GET`, `QUOTA.TREE`, `QUOTA.HOLDS`: reading a tree.

use super::args::Args;
use super::reply::{Reply, to_json};
use super::{Command, Env, Handler, keyword, optional_path};
use crate::engine::names::MAX_DEPTH_HARD;
use crate::engine::outcome::{HoldView, NodeView, PolicyView};
use crate::engine::{Error, Result, Tree};

pub const GET: Command = Command { name: "QUOTA.GET", handler: Handler::Read(get) };
pub const TREE: Command = Command { name: "QUOTA.TREE", handler: Handler::Read(tree_cmd) };
pub const HOLDS: Command = Command { name: "QUOTA.HOLDS", handler: Handler::Read(holds) };

/// Default and largest `COUNT` of `QUOTA.HOLDS`.
const HOLDS_DEFAULT_COUNT: u64 = 100;
const HOLDS_MAX_COUNT: u64 = 10_000;

/// `QUOTA.GET key path`
fn get(tree: &Tree, args: &mut Args<'_>, env: &Env) -> Result<Reply> {
    let path = args.next_path("a path", env.max_depth)?;
    args.finish()?;
    Ok(node_reply(&tree.get(&path)?, false))
}

/// `QUOTA.TREE key [path] [DEPTH n] [FORMAT resp|json]`
fn tree_cmd(tree: &Tree, args: &mut Args<'_>, env: &Env) -> Result<Reply> {
    let path = optional_path(args, env.max_depth)?;
    let (mut depth, mut json) = (MAX_DEPTH_HARD as u64, false);
    let mut seen = Vec::new();
    while !args.is_done() {
        let word = args.next_str("a keyword")?;
        let Some(kw) = keyword(word, &["DEPTH", "FORMAT"]) else { return Err(args.unknown(word)) };
        args.once(&mut seen, kw)?;
        match kw {
            "DEPTH" => depth = args.next_u64("DEPTH", 0, MAX_DEPTH_HARD as u64)?,
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
    let reply = node_reply(&tree.tree_view(&path, depth as usize)?, true);
    Ok(if json { Reply::Str(to_json(&reply)) } else { reply })
}

/// `QUOTA.HOLDS key [path] [COUNT n]`
fn holds(tree: &Tree, args: &mut Args<'_>, env: &Env) -> Result<Reply> {
    let path = optional_path(args, env.max_depth)?;
    let mut count = HOLDS_DEFAULT_COUNT;
    if !args.is_done() {
        let word = args.next_str("a keyword")?;
        if keyword(word, &["COUNT"]).is_none() {
            return Err(args.unknown(word));
        }
        count = args.next_u64("COUNT", 1, HOLDS_MAX_COUNT)?;
    }
    args.finish()?;
    Ok(Reply::Array(tree.holds_view(&path, count as usize).iter().map(hold_reply).collect()))
}

fn hold_reply(h: &HoldView) -> Reply {
    Reply::Map(vec![
        ("id", Reply::str(h.id.clone())),
        ("paths", Reply::strings(h.paths.iter().cloned())),
        ("expires_at", Reply::ms(h.expires_at_ms)),
        ("items", Reply::Int(h.items as i64)),
        ("held", Reply::costs(&h.held)),
    ])
}

fn node_reply(node: &NodeView, with_children: bool) -> Reply {
    let mut fields = vec![
        ("path", Reply::str(node.path.clone())),
        ("status", Reply::str(node.status.as_str())),
        ("spent", Reply::costs(&node.spent)),
        ("policies", Reply::Array(node.policies.iter().map(policy_reply).collect())),
    ];
    if with_children {
        fields.push(("children", Reply::Array(node.children.iter().map(|c| node_reply(c, true)).collect())));
    }
    Reply::Map(fields)
}

fn policy_reply(p: &PolicyView) -> Reply {
    let mut fields = vec![
        ("policy", Reply::str(p.name.clone())),
        ("metric", Reply::str(p.metric.clone())),
        ("mode", Reply::str(p.mode.as_str())),
        ("window", Reply::str(p.window.as_str())),
        ("limit", Reply::amount(p.limit)),
        ("used", Reply::amount(p.used)),
        ("held", Reply::amount(p.held)),
        ("remaining", Reply::amount(p.remaining)),
        ("status", Reply::str(p.status.as_str())),
        ("warn", Reply::Array(p.warn.iter().map(|&w| Reply::Int(i64::from(w))).collect())),
    ];
    if let Some(service) = &p.service {
        fields.push(("service", Reply::str(service.clone())));
    }
    if let Some(model) = &p.model {
        fields.push(("model", Reply::str(model.clone())));
    }
    Reply::Map(fields)
}
