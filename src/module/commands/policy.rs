//! `QUOTA.SET`, `QUOTA.UNSET`, `QUOTA.DELPATH`: shaping the tree.

use super::args::Args;
use super::read::{closed_reply, policy_reply};
use super::reply::Reply;
use super::{Answer, Command, Env, Handler, keyword};
use crate::engine::policy::{Warn, parse_warn};
use crate::engine::{Error, Mode, PolicySpec, Result, Tree, Window};

pub const SET: Command = Command { name: "QUOTA.SET", handler: Handler::Write(set) };
pub const UNSET: Command = Command { name: "QUOTA.UNSET", handler: Handler::Write(unset) };
pub const DELPATH: Command = Command { name: "QUOTA.DELPATH", handler: Handler::Write(delpath) };
pub const GRANT: Command = Command { name: "QUOTA.GRANT", handler: Handler::Write(grant) };
pub const RESET: Command = Command { name: "QUOTA.RESET", handler: Handler::Write(reset) };

const SET_KEYWORDS: &[&str] = &["METRIC", "LIMIT", "WINDOW", "ANCHOR", "MODE", "WARN", "ROLLOVER", "SERVICE", "MODEL"];

/// `QUOTA.SET key path policy METRIC m LIMIT n [WINDOW w [ANCHOR d] | WINDOW
/// rolling dur] [MODE m] [WARN p,…] [ROLLOVER cap] [SERVICE s [MODEL m]]`
fn set(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let path = args.next_path("a path")?;
    let name = args.next_name("policy name")?;
    let (mut metric, mut limit, mut service, mut model, mut rollover) = (None, None, None, None, None);
    let (mut mode, mut warn) = (Mode::Strict, Warn::default());
    let (mut window, mut duration, mut anchor) = (None, None, None);
    let mut seen = super::args::Seen::default();
    while !args.is_done() {
        let word = args.next_str("a keyword")?;
        let Some(kw) = keyword(word, SET_KEYWORDS) else { return Err(args.unknown(word)) };
        args.once(&mut seen, kw)?;
        match kw {
            "METRIC" => metric = Some(args.next_metric()?),
            "LIMIT" => limit = Some(args.next_non_negative("LIMIT")?),
            "WINDOW" => {
                let name = args.next_str("a window after WINDOW")?;
                if name.eq_ignore_ascii_case("rolling") {
                    duration = Some(args.next_str("a duration after WINDOW rolling")?);
                }
                window = Some(name);
            }
            "ANCHOR" => anchor = Some(args.next_u64("ANCHOR", 1, 31)? as u8),
            "ROLLOVER" => rollover = Some(args.next_non_negative("ROLLOVER")?),
            "MODE" => mode = Mode::parse(args.next_str("a mode after MODE")?)?,
            "WARN" => warn = parse_warn(args.next_str("percentages after WARN")?)?,
            "SERVICE" => service = Some(args.next_name("service")?),
            "MODEL" => model = Some(args.next_name("model")?),
            _ => return Err(args.unknown(word)),
        }
    }
    let metric = metric.ok_or_else(|| Error::syntax("QUOTA.SET needs METRIC"))?;
    let limit = limit.ok_or_else(|| Error::syntax("QUOTA.SET needs LIMIT"))?;
    let window = match (window, anchor) {
        (Some(name), _) => Window::parse(name, anchor, duration)?,
        (None, Some(_)) => return Err(Error::syntax("ANCHOR applies only to WINDOW month")),
        (None, None) => Window::None,
    };
    let spec = PolicySpec { metric, limit, mode, window, warn, rollover, service, model };
    tree.set_policy(&path, &name, spec, env.now_ms, &env.limits)?;
    Ok(Answer::new(Reply::Ok, true))
}

/// `QUOTA.GRANT key path policy amount`: replies with the policy.
fn grant(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let path = args.next_path("a path")?;
    let name = args.next_name("policy name")?;
    let amount = args.next_non_negative("an amount")?;
    args.finish()?;
    if amount.is_zero() {
        return Err(Error::InvalidAmount("a grant must be larger than 0".into()));
    }
    let view = tree.grant(&path, &name, amount, env.now_ms, &env.limits)?;
    Ok(Answer::new(policy_reply(&view), true))
}

/// `QUOTA.RESET key path policy`: replies with the period it closed.
fn reset(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let path = args.next_path("a path")?;
    let name = args.next_name("policy name")?;
    args.finish()?;
    let closed = tree.reset_policy(&path, &name, env.now_ms, &env.limits)?;
    Ok(Answer::new(closed_reply(&closed), true))
}

/// `QUOTA.UNSET key path policy`
fn unset(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let path = args.next_path("a path")?;
    let name = args.next_name("policy name")?;
    args.finish()?;
    tree.unset_policy(&path, &name, env.now_ms, &env.limits)?;
    Ok(Answer::new(Reply::Ok, true))
}

/// `QUOTA.DELPATH key path`: replies with the number of paths removed.
fn delpath(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let path = args.next_path("a path")?;
    args.finish()?;
    // Like every write on a node, DELPATH syncs it first (what stays when
    // live holds refuse the delete).
    tree.sync_paths(&[&path], env.now_ms);
    let removed = tree.delete_path(&path)?;
    Ok(Answer::new(Reply::Int(removed as i64), true))
}
