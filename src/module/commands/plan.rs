//! `QUOTA.PLAN SET|GET|DEL|LIST|HELP`: the plan book (SPEC §6). Like the
//! price book it is server-wide and names no key: on a cluster it is set
//! on every primary.

use redis_module::{Context, RedisResult, RedisString};

use super::args::Args;
use super::price::book_command;
use super::reply::Reply;
use super::{Answer, Command, Env, Handler, keyword};
use crate::engine::names::clip;
use crate::engine::plan::parse_name;
use crate::engine::{Error, Result, Tree};
use crate::plans;

/// `QUOTA.PLAN SET name json | GET name | DEL name | LIST | HELP`,
/// registered as one subcommand per verb (see `module`), each landing here.
/// `SET` and `DEL` are replicated verbatim, and only when they changed the
/// book (they read no clock).
pub fn plan(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    book_command(ctx, argv, "QUOTA.PLAN", HELP, |verb, args, stored| match verb {
        "SET" => set(args, stored).map(|(version, changed)| (Reply::Int(version as i64), changed)),
        "GET" => get(args).map(|reply| (reply, false)),
        "DEL" => del(args).map(|reply| (reply.clone(), reply == Reply::Int(1))),
        _ => args
            .finish()
            .map(|()| (Reply::strings(plans::with_plans(|b| b.names().cloned().collect::<Vec<_>>())), false)),
    })
}

/// `QUOTA.PLAN HELP`, as the Lua library gives it (`PLAN.HELP`).
const HELP: &[&str] = &[
    "QUOTA.PLAN <subcommand> [<arg> ...]. Subcommands are:",
    "SET <name> <json>",
    "    Sets plan name; replies with its version.",
    "GET <name>",
    "    Plan name as JSON, its version included.",
    "DEL <name>",
    "    Removes plan name: 1 if there was one, else 0.",
    "LIST",
    "    Every plan name.",
    "HELP",
    "    This text.",
];

/// `SET name json`: the plan's version after the call, and whether the
/// book changed (the same content with no other version changes nothing).
/// `stored`: from an AOF or a primary (see `price::stored`).
fn set(args: &mut Args<'_>, stored: bool) -> Result<(u64, bool)> {
    let name = parse_name(args.next_str("a plan name")?)?;
    let json = args.next_str("the plan as JSON")?;
    args.finish()?;
    plans::with_plans(|book| book.set_json_from(&name, json, stored))
}

fn get(args: &mut Args<'_>) -> Result<Reply> {
    let name = args.next_str("a plan name")?;
    args.finish()?;
    let name = parse_name(name)?;
    plans::with_plans(|book| match book.get(&name) {
        Some(plan) => Ok(Reply::Str(plan.to_json().to_string())),
        None => Err(Error::NotFound(format!("plan '{name}'"))),
    })
}

fn del(args: &mut Args<'_>) -> Result<Reply> {
    let name = args.next_str("a plan name")?;
    args.finish()?;
    let name = parse_name(name)?;
    Ok(Reply::Int(i64::from(plans::with_plans(|book| book.remove(&name)))))
}

pub const ASSIGN: Command = Command { name: "QUOTA.ASSIGN", handler: Handler::Write(assign) };

/// `QUOTA.ASSIGN key plan|NONE`: the tree follows the plan book's plan of
/// that name (which must exist), or no plan. A tree that follows none
/// asked to follow none is unchanged (and a missing key is not created).
fn assign(tree: &mut Tree, args: &mut Args<'_>, _env: &Env) -> Result<Answer> {
    let name = args.next_str("a plan name or NONE")?;
    args.finish()?;
    let plan = match keyword(name, &["NONE"]) {
        Some(_) => None,
        None => {
            let name = parse_name(name)?;
            let plan = plans::current(&name).ok_or_else(|| Error::NotFound(format!("plan '{}'", clip(&name))))?;
            Some(plan)
        }
    };
    let changed = tree.assign(plan);
    Ok(Answer::new(Reply::Ok, changed))
}
