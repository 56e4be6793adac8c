//! `QUOTA.PRICE SET|GET|DEL|LIST|HELP` and `QUOTA.ESTIMATE`: the price book.
//! These commands name no key: the book is server-wide, and on a cluster
//! it is set on every primary, as with `FUNCTION LOAD`.

use redis_module::{Context, ContextFlags, RedisError, RedisResult, RedisString};

use super::args::Args;
use super::reply::Reply;
use super::{keyword, respond, utf8_args};
use crate::engine::names::clip;
use crate::engine::outcome::MAX_ITEM_METRICS;
use crate::engine::pricing::{self, Estimate, Price};
use crate::engine::{Error, Result};
use crate::{ctext, prices};

/// `QUOTA.PRICE SET service/model json | GET service/model | DEL service/model | LIST | HELP`,
/// registered as one subcommand per verb (see `module`), each landing here.
pub fn price(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    book_command(ctx, argv, "QUOTA.PRICE", HELP, |verb, args, stored| match verb {
        "SET" => set(args, stored).map(|reply| (reply, true)),
        "GET" => get(args).map(|reply| (reply, false)),
        "DEL" => del(args).map(|reply| (reply.clone(), reply == Reply::Int(1))),
        _ => args
            .finish()
            .map(|()| (Reply::strings(prices::with_book(|b| b.keys().cloned().collect::<Vec<_>>())), false)),
    })
}

/// A command of a server-wide book (`QUOTA.PRICE`, `QUOTA.PLAN`), whose
/// verbs are `SET`, `GET`, `DEL`, `LIST` and `HELP`: checks the verb,
/// refuses `SET` and `DEL` where Redis refuses writes, answers `HELP` with
/// `help`, and has `run` answer the others with the reply and whether the
/// book changed. A change is replicated verbatim (no verb reads a clock).
pub(super) fn book_command(
    ctx: &Context,
    argv: Vec<RedisString>,
    command: &'static str,
    help: &[&str],
    run: impl FnOnce(&str, &mut Args<'_>, bool) -> Result<(Reply, bool)>,
) -> RedisResult {
    if argv.len() < 2 {
        return Err(RedisError::WrongArity);
    }
    let texts = utf8_args(&argv[1..])?;
    let mut args = Args::new(command, &texts);
    let verb = args.next_str("SET, GET, DEL, LIST or HELP")?;
    // Redis dispatches the subcommands (see `module`) and answers an
    // unknown one itself, with this text.
    let verb = keyword(verb, &["SET", "GET", "DEL", "LIST", "HELP"])
        .ok_or_else(|| ctext::error(format!("ERR unknown subcommand '{}'. Try {command} HELP.", clip(verb))))?;
    if matches!(verb, "SET" | "DEL") {
        refuse_write(ctx, verb == "SET")?;
    }
    let result = match verb {
        "HELP" => args.finish().map(|()| (Reply::strings(help.iter().map(|line| line.to_string())), false)),
        _ => run(verb, &mut args, stored(ctx)),
    };
    let result = result.map(|(reply, changed)| {
        if changed {
            ctx.replicate_verbatim();
        }
        reply
    });
    respond(ctx, result)
}

/// `QUOTA.PRICE HELP`, as the Lua library gives it (`P.PRICE_HELP`).
const HELP: &[&str] = &[
    "QUOTA.PRICE <subcommand> [<arg> ...]. Subcommands are:",
    "SET <service/model> <json>",
    "    Sets the price of service/model.",
    "GET <service/model>",
    "    The price of service/model, as JSON.",
    "DEL <service/model>",
    "    Removes the price of service/model: 1 if there was one, else 0.",
    "LIST",
    "    Every priced service/model.",
    "HELP",
    "    This text.",
];

/// Whether a `SET` comes from stored data: an AOF being loaded (a rewrite
/// writes the books as `SET`s) or a primary, which may run the previous
/// release; its JSON is then read as stored data
/// ([`crate::engine::names::parse_stored_metric`]).
fn stored(ctx: &Context) -> bool {
    let flags = ctx.get_flags();
    flags.contains(ContextFlags::REPLICATED) || flags.contains(ContextFlags::LOADING)
}

/// A replica takes the book from its primary, and a full server refuses to
/// grow it, as Redis does for `write` and `deny-oom` commands.
pub(super) fn refuse_write(ctx: &Context, grows: bool) -> std::result::Result<(), RedisError> {
    let flags = ctx.get_flags();
    let from_primary = flags.contains(ContextFlags::REPLICATED) || flags.contains(ContextFlags::LOADING);
    if flags.contains(ContextFlags::SLAVE) && !from_primary {
        return Err(RedisError::Str("READONLY You can't write against a read only replica."));
    }
    if grows && flags.contains(ContextFlags::OOM) && !from_primary {
        return Err(RedisError::Str("OOM command not allowed when used memory > 'maxmemory'."));
    }
    Ok(())
}

fn set(args: &mut Args<'_>, stored: bool) -> Result<Reply> {
    let key = args.next_str("service/model")?;
    pricing::parse_key(key)?;
    let json = args.next_str("the price as JSON")?;
    args.finish()?;
    let price = if stored { Price::from_stored_json(json)? } else { Price::from_json(json)? };
    prices::with_book(|book| book.set(key, price))?;
    Ok(Reply::Ok)
}

fn get(args: &mut Args<'_>) -> Result<Reply> {
    let key = args.next_str("service/model")?;
    args.finish()?;
    pricing::parse_key(key)?;
    prices::with_book(|book| book.get(key).map(|p| Reply::Str(p.to_json())))
}

fn del(args: &mut Args<'_>) -> Result<Reply> {
    let key = args.next_str("service/model")?;
    args.finish()?;
    pricing::parse_key(key)?;
    Ok(Reply::Int(i64::from(prices::with_book(|book| book.remove(key)))))
}

/// `name value [name value …]` after a price key, up to the next keyword:
/// at most [`MAX_ITEM_METRICS`] names (a price has at most 64 rates and 16
/// attributes, so more can only be an error).
pub fn usage_pairs(args: &mut Args<'_>) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    while !args.at_list_end() {
        if pairs.len() == MAX_ITEM_METRICS {
            return Err(Error::Limit(format!("at most {MAX_ITEM_METRICS} usage names per item")));
        }
        let name = args.next_str("a usage name")?.to_string();
        let value = args.next_str("a usage value")?.to_string();
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// `QUOTA.ESTIMATE service/model name value [name value …]`
pub fn estimate(ctx: &Context, argv: Vec<RedisString>) -> RedisResult {
    if argv.len() < 2 {
        return Err(RedisError::WrongArity);
    }
    let texts = utf8_args(&argv[1..])?;
    let mut args = Args::new("QUOTA.ESTIMATE", &texts);
    let result = (|| {
        let key = args.next_str("service/model")?;
        let pairs = usage_pairs(&mut args)?;
        args.finish()?;
        Ok(estimate_reply(&prices::estimate(key, &pairs)?))
    })();
    respond(ctx, result)
}

fn estimate_reply(e: &Estimate) -> Reply {
    let lines = e
        .lines
        .iter()
        .map(|l| {
            Reply::Map(vec![
                ("name", Reply::str(l.name.clone())),
                ("quantity", Reply::amount(l.quantity)),
                ("rate", Reply::amount(l.rate)),
                ("subtotal", Reply::amount(l.subtotal)),
            ])
        })
        .collect();
    let factors = e
        .factors
        .iter()
        .map(|f| {
            Reply::Map(vec![
                ("attribute", Reply::str(f.attribute.clone())),
                ("value", Reply::str(f.value.clone())),
                ("factor", Reply::amount(f.factor)),
            ])
        })
        .collect();
    Reply::Map(vec![
        ("price", Reply::str(e.key.clone())),
        ("metric", Reply::str(e.metric.clone())),
        ("cost", Reply::amount(e.cost)),
        ("lines", Reply::Array(lines)),
        ("subtotal", Reply::amount(e.subtotal)),
        ("minimum", e.minimum_applied.map_or(Reply::Nil, Reply::amount)),
        ("multipliers", Reply::Array(factors)),
        ("charges", Reply::costs(&e.charges())),
    ])
}
