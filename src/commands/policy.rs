//! `QUOTA.SET`, `QUOTA.UNSET`, `QUOTA.DELPATH`: shaping the tree.

use super::args::Args;
use super::reply::Reply;
use super::{Answer, Command, Env, Handler, keyword};
use crate::engine::policy::{DEFAULT_WARN, parse_warn};
use crate::engine::{Error, Mode, PolicySpec, Result, Tree, Window};

pub const SET: Command = Command { name: "QUOTA.SET", handler: Handler::Write(set) };
pub const UNSET: Command = Command { name: "QUOTA.UNSET", handler: Handler::Write(unset) };
pub const DELPATH: Command = Command { name: "QUOTA.DELPATH", handler: Handler::Write(delpath) };

const SET_KEYWORDS: &[&str] = &["METRIC", "LIMIT", "WINDOW", "ANCHOR", "MODE", "WARN", "ROLLOVER", "SERVICE", "MODEL"];

/// `QUOTA.SET key path policy METRIC m LIMIT n [WINDOW w] [MODE m] [WARN p,…]
/// [ROLLOVER cap] [SERVICE s [MODEL m]]`
fn set(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let path = args.next_path("a path", env.max_depth)?;
    let name = args.next_name("policy name")?;
    let (mut metric, mut limit, mut service, mut model) = (None, None, None, None);
    let (mut mode, mut window, mut warn) = (Mode::Strict, Window::None, DEFAULT_WARN.to_vec());
    let mut seen = Vec::new();
    while !args.is_done() {
        let word = args.next_str("a keyword")?;
        let Some(kw) = keyword(word, SET_KEYWORDS) else { return Err(args.unknown(word)) };
        args.once(&mut seen, kw)?;
        match kw {
            "METRIC" => metric = Some(args.next_metric()?),
            "LIMIT" => limit = Some(args.next_non_negative("LIMIT")?),
            "WINDOW" => window = parse_window(args.next_str("a window after WINDOW")?)?,
            "ANCHOR" => {
                return Err(Error::syntax("ANCHOR applies to WINDOW month, which this version does not have yet"));
            }
            "ROLLOVER" => {
                return Err(Error::syntax(
                    "ROLLOVER needs a calendar or rolling WINDOW, which this version does not have yet",
                ));
            }
            "MODE" => mode = Mode::parse(args.next_str("a mode after MODE")?)?,
            "WARN" => warn = parse_warn(args.next_str("percentages after WARN")?)?,
            "SERVICE" => service = Some(args.next_name("service")?),
            "MODEL" => model = Some(args.next_name("model")?),
            _ => return Err(args.unknown(word)),
        }
    }
    let metric = metric.ok_or_else(|| Error::syntax("QUOTA.SET needs METRIC"))?;
    let limit = limit.ok_or_else(|| Error::syntax("QUOTA.SET needs LIMIT"))?;
    if model.is_some() && service.is_none() {
        return Err(Error::syntax("MODEL needs SERVICE"));
    }
    let spec = PolicySpec { metric, limit, mode, window, warn, service, model };
    tree.set_policy(&path, &name, spec, &env.limits)?;
    Ok(Answer { reply: Reply::Ok, changed: true })
}

fn parse_window(text: &str) -> Result<Window> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(Window::None);
    }
    let known = ["hour", "day", "week", "month", "year", "rolling"];
    if known.iter().any(|w| text.eq_ignore_ascii_case(w)) {
        return Err(Error::syntax(format!(
            "WINDOW {} is not available in this version; only WINDOW none is",
            text.to_ascii_lowercase()
        )));
    }
    Err(Error::syntax(format!(
        "unknown WINDOW '{}': use none, hour, day, week, month, year or rolling <duration>",
        crate::engine::names::clip(text)
    )))
}

/// `QUOTA.UNSET key path policy`
fn unset(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let path = args.next_path("a path", env.max_depth)?;
    let name = args.next_name("policy name")?;
    args.finish()?;
    tree.unset_policy(&path, &name)?;
    Ok(Answer { reply: Reply::Ok, changed: true })
}

/// `QUOTA.DELPATH key path`: replies with the number of paths removed.
fn delpath(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let path = args.next_path("a path", env.max_depth)?;
    args.finish()?;
    let removed = tree.delete_path(&path)?;
    Ok(Answer { reply: Reply::Int(removed as i64), changed: true })
}
