//! `QUOTA.SET`, `QUOTA.UNSET`, `QUOTA.DELPATH`: shaping the tree.

use super::args::Args;
use super::read::{closed_reply, grant_reply, policy_reply};
use super::reply::Reply;
use super::{Answer, Command, Env, Handler, keyword};
use crate::engine::policy::{DEFAULT_PRIORITY, GrantExpiry, GrantRequest, Warn, check_note, parse_warn};
use crate::engine::window::parse_duration;
use crate::engine::{Error, Mode, PolicySpec, Result, Tree, Window};

pub const SET: Command = Command { name: "QUOTA.SET", handler: Handler::Write(set) };
pub const UNSET: Command = Command { name: "QUOTA.UNSET", handler: Handler::Write(unset) };
pub const DELPATH: Command = Command { name: "QUOTA.DELPATH", handler: Handler::Write(delpath) };
pub const GRANT: Command = Command { name: "QUOTA.GRANT", handler: Handler::Write(grant) };
pub const REVOKE: Command = Command { name: "QUOTA.REVOKE", handler: Handler::Write(revoke) };
pub const RESET: Command = Command { name: "QUOTA.RESET", handler: Handler::Write(reset) };

const SET_KEYWORDS: &[&str] =
    &["METRIC", "LIMIT", "WINDOW", "ANCHOR", "TZ", "MODE", "WARN", "ROLLOVER", "SERVICE", "MODEL", "LOW", "INFLIGHT"];
const GRANT_KEYWORDS: &[&str] = &["ID", "EXPIRES", "FOR", "PERIOD", "PRIORITY", "NOTE"];

/// `QUOTA.SET key path policy METRIC m LIMIT n [WINDOW w [ANCHOR a] [TZ zone] | WINDOW
/// rolling dur] [MODE m] [WARN p,…] [ROLLOVER cap] [SERVICE s [MODEL m]]
/// [LOW amount] [INFLIGHT]`
fn set(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let path = args.next_path("a path")?;
    let name = args.next_name("policy name")?;
    let (mut metric, mut limit, mut service, mut model, mut rollover) = (None, None, None, None, None);
    let (mut low, mut inflight) = (None, false);
    let (mut mode, mut warn) = (Mode::Strict, Warn::default());
    let (mut window, mut duration, mut anchor, mut tz) = (None, None, None, None);
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
            "ANCHOR" => anchor = Some(args.next_str("ANCHOR")?),
            "TZ" => tz = Some(args.next_str("a zone after TZ")?),
            "ROLLOVER" => rollover = Some(args.next_non_negative("ROLLOVER")?),
            "MODE" => mode = Mode::parse(args.next_str("a mode after MODE")?)?,
            "WARN" => warn = parse_warn(args.next_str("percentages after WARN")?)?,
            "SERVICE" => service = Some(args.next_name("service")?),
            "MODEL" => model = Some(args.next_name("model")?),
            "LOW" => low = Some(args.next_non_negative("LOW")?),
            "INFLIGHT" => inflight = true,
            _ => return Err(args.unknown(word)),
        }
    }
    let metric = metric.ok_or_else(|| Error::syntax("QUOTA.SET needs METRIC"))?;
    let limit = limit.ok_or_else(|| Error::syntax("QUOTA.SET needs LIMIT"))?;
    // No WINDOW is the none window, which refuses ANCHOR and TZ.
    let window = Window::parse(window.unwrap_or("none"), anchor, duration, tz)?;
    let spec = PolicySpec { metric, limit, mode, window, warn, rollover, service, model, low, inflight };
    tree.set_policy(&path, &name, spec, env.now_ms, &env.limits)?;
    Ok(Answer::new(Reply::Ok, true))
}

/// `QUOTA.GRANT key path policy amount [ID id] [EXPIRES unix-ms | FOR
/// duration | PERIOD] [PRIORITY n] [NOTE text]`: replies with the policy,
/// then `grant` and `duplicate`.
fn grant(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let path = args.next_path("a path")?;
    let name = args.next_name("policy name")?;
    let amount = args.next_non_negative("an amount")?;
    if amount.is_zero() {
        return Err(Error::InvalidAmount("a grant must be larger than 0".into()));
    }
    let mut req = GrantRequest { id: None, amount, expiry: GrantExpiry::Never, priority: DEFAULT_PRIORITY, note: None };
    let mut seen = super::args::Seen::default();
    let mut timed = false;
    while !args.is_done() {
        let word = args.next_str("a keyword")?;
        let Some(kw) = keyword(word, GRANT_KEYWORDS) else { return Err(args.unknown(word)) };
        args.once(&mut seen, kw)?;
        if matches!(kw, "EXPIRES" | "FOR" | "PERIOD") {
            if timed {
                return Err(Error::syntax("EXPIRES, FOR and PERIOD are exclusive: give one"));
            }
            timed = true;
        }
        match kw {
            "ID" => req.id = Some(args.next_name("grant id")?),
            "EXPIRES" => req.expiry = GrantExpiry::At(args.next_u64("EXPIRES", 1, 9_007_199_254_740_991)?),
            "FOR" => req.expiry = GrantExpiry::After(parse_duration(args.next_str("a duration after FOR")?)?),
            "PERIOD" => req.expiry = GrantExpiry::Period,
            "PRIORITY" => req.priority = args.next_u64("PRIORITY", 0, 100)? as u8,
            "NOTE" => req.note = Some(check_note(args.next_str("a text after NOTE")?.as_bytes())?),
            _ => return Err(args.unknown(word)),
        }
    }
    let outcome = tree.grant(&path, &name, &req, env.now_ms, &env.limits)?;
    let mut reply = policy_reply(&outcome.policy);
    if let Reply::Map(fields) = &mut reply {
        fields.push(("grant", grant_reply(&outcome.grant)));
        fields.push(("duplicate", Reply::flag(outcome.duplicate)));
    }
    Ok(Answer::new(reply, !outcome.duplicate))
}

/// `QUOTA.REVOKE key path policy grant-id`: replies `id`, `removed`.
fn revoke(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let path = args.next_path("a path")?;
    let name = args.next_name("policy name")?;
    let id = args.next_name("grant id")?;
    args.finish()?;
    let removed = tree.revoke(&path, &name, &id, env.now_ms, &env.limits)?;
    let reply = Reply::Map(vec![("id", Reply::Str(id)), ("removed", Reply::amount(removed))]);
    Ok(Answer::new(reply, true))
}

/// `QUOTA.RESET key path policy`: replies with the period it closed.
fn reset(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let path = args.next_path("a path")?;
    let name = args.next_name("policy name")?;
    args.finish()?;
    let closed = tree.reset_policy(&path, &name, env.now_ms, &env.limits)?;
    let window = tree.policy_window(&path, &name)?;
    Ok(Answer::new(closed_reply(&closed, &window), true))
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
