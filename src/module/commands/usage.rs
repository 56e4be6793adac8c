//! `QUOTA.USAGE`: a node's usage over time (SPEC §9; the engine's
//! `usage` file).

use super::args::{Args, Seen};
use super::reply::Reply;
use super::{Command, Env, Handler, keyword};
use crate::engine::restore::MAX_TIME;
use crate::engine::usage::{By, Group, UsageQuery, UsageReport};
use crate::engine::{Error, Result, Tree};

pub const USAGE: Command = Command { name: "QUOTA.USAGE", handler: Handler::Read(usage) };

const USAGE_KEYWORDS: &[&str] = &["SINCE", "UNTIL", "BY", "METRIC", "SERVICE", "MODEL", "GROUP"];

/// `QUOTA.USAGE key path [SINCE ms] [UNTIL ms] [BY hour|day] [METRIC m]
/// [SERVICE s [MODEL m]] [GROUP service|model|child|tag]`
fn usage(tree: &Tree, args: &mut Args<'_>, env: &Env) -> Result<Reply> {
    let path = args.next_path("a path")?;
    let query = parse_query(args)?;
    Ok(usage_report(&tree.usage(&path, &query, env.now_ms, &env.limits)?))
}

/// The options of `QUOTA.USAGE`, in any order, each at most once.
/// Lua twin: `usage_parse` (lua/src/68_usage.lua).
fn parse_query(args: &mut Args<'_>) -> Result<UsageQuery> {
    let mut query = UsageQuery::default();
    let mut seen = Seen::default();
    while !args.is_done() {
        let word = args.peek().unwrap_or_default();
        let Some(kw) = keyword(word, USAGE_KEYWORDS) else { return Err(args.unexpected(word)) };
        args.next_str("a keyword")?;
        args.once(&mut seen, kw)?;
        match kw {
            "SINCE" => query.since_ms = Some(args.next_u64("SINCE", 0, MAX_TIME)?),
            "UNTIL" => query.until_ms = Some(args.next_u64("UNTIL", 0, MAX_TIME)?),
            "BY" => {
                query.by = match keyword(args.next_str("hour or day after BY")?, &["HOUR", "DAY"]) {
                    Some("HOUR") => By::Hour,
                    Some(_) => By::Day,
                    None => return Err(Error::syntax("BY must be hour or day")),
                }
            }
            "METRIC" => query.metric = Some(args.next_metric()?),
            "SERVICE" => query.service = Some(args.next_name("service")?),
            "MODEL" => query.model = Some(args.next_name("model")?),
            _ => {
                let group = args.next_str("service, model, child or tag after GROUP")?;
                query.group = Some(match keyword(group, &["SERVICE", "MODEL", "CHILD", "TAG"]) {
                    Some("SERVICE") => Group::Service,
                    Some("MODEL") => Group::Model,
                    Some("CHILD") => Group::Child,
                    Some(_) => Group::Tag,
                    None => return Err(Error::syntax("GROUP must be service, model, child or tag")),
                })
            }
        }
    }
    if query.model.is_some() && query.service.is_none() {
        return Err(Error::syntax("MODEL needs SERVICE"));
    }
    Ok(query)
}

/// The reply of `QUOTA.USAGE` (field order fixed).
fn usage_report(r: &UsageReport) -> Reply {
    let buckets = r
        .buckets
        .iter()
        .map(|(start, spent)| Reply::Map(vec![("start", Reply::ms(*start)), ("spent", Reply::costs(spent))]))
        .collect();
    let mut fields = vec![
        ("path", Reply::str(r.path.as_str())),
        ("by", Reply::str(r.by.as_str())),
        ("since", Reply::ms(r.since_ms)),
        ("until", Reply::ms(r.until_ms)),
        ("buckets", Reply::Array(buckets)),
        ("total", Reply::costs(&r.total)),
    ];
    if let Some(groups) = &r.groups {
        let groups = groups
            .iter()
            .map(|g| {
                let mut group = vec![("name", Reply::str(g.name.as_str()))];
                if let Some(service) = &g.service {
                    group.push(("service", Reply::str(service.as_str())));
                }
                if let Some(model) = &g.model {
                    group.push(("model", Reply::str(model.as_str())));
                }
                group.push(("spent", Reply::costs(&g.spent)));
                Reply::Map(group)
            })
            .collect();
        fields.push(("groups", Reply::Array(groups)));
    }
    Reply::Map(fields)
}
