//! `QUOTA.ALLOW`, `QUOTA.DENY`, `QUOTA.ACCESS`: a node's access rules
//! (SPEC §8; the engine's `access` file).

use super::args::{Args, Seen};
use super::reply::Reply;
use super::{Answer, Command, Env, Handler, keyword};
use crate::engine::access::{AccessView, Entry, Rule, parse_part};
use crate::engine::{Error, Result, Tree};

pub const ALLOW: Command = Command { name: "QUOTA.ALLOW", handler: Handler::Write(allow) };
pub const DENY: Command = Command { name: "QUOTA.DENY", handler: Handler::Write(deny) };
pub const ACCESS: Command = Command { name: "QUOTA.ACCESS", handler: Handler::Write(access) };

const RULE_KEYWORDS: &[&str] = &["SERVICE", "MODEL", "REMOVE"];

/// `QUOTA.ALLOW key path SERVICE s [MODEL m] [REMOVE]`: 1 when the allow
/// list changed, 0 when not.
fn allow(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    rule_command(tree, args, env, Rule::Allow)
}

/// `QUOTA.DENY key path SERVICE s [MODEL m] [REMOVE]`: likewise for the
/// deny list.
fn deny(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    rule_command(tree, args, env, Rule::Deny)
}

fn rule_command(tree: &mut Tree, args: &mut Args<'_>, env: &Env, rule: Rule) -> Result<Answer> {
    let path = args.next_path("a path")?;
    let (mut service, mut model, mut remove) = (None, None, false);
    let mut seen = Seen::default();
    while !args.is_done() {
        let word = args.peek().unwrap_or_default();
        let Some(kw) = keyword(word, RULE_KEYWORDS) else { return Err(args.unexpected(word)) };
        args.next_str("a keyword")?;
        args.once(&mut seen, kw)?;
        match kw {
            "SERVICE" => service = Some(parse_part(args.next_str("service")?, "service")?),
            "MODEL" => model = Some(parse_part(args.next_str("model")?, "model")?),
            _ => remove = true,
        }
    }
    let service = match (service, &model) {
        (Some(s), _) => s,
        (None, Some(_)) => return Err(Error::syntax("MODEL needs SERVICE")),
        (None, None) => return Err(Error::syntax(format!("{} needs SERVICE s", args.command()))),
    };
    let entry = Entry { service, model };
    let changed = match remove {
        true => tree.remove_rule(&path, rule, &entry),
        false => tree.add_rule(&path, rule, entry, env.now_ms, &env.limits)?,
    };
    Ok(Answer::new(Reply::Int(i64::from(changed)), changed))
}

/// `QUOTA.ACCESS key path [CLEAR]`: the node's own rules, or (`CLEAR`)
/// removes them and replies how many there were.
fn access(tree: &mut Tree, args: &mut Args<'_>, _env: &Env) -> Result<Answer> {
    let path = args.next_path("a path")?;
    if args.eat("CLEAR") {
        args.finish()?;
        let removed = tree.clear_rules(&path);
        return Ok(Answer::new(Reply::Int(removed as i64), removed > 0));
    }
    args.finish()?;
    let view = tree.access_view(&path)?;
    let mut reply = rules_reply(&view);
    if let Reply::Map(fields) = &mut reply {
        fields.insert(0, ("path", Reply::str(view.path.clone())));
    }
    Ok(Answer::new(reply, false))
}

/// `allow` and `deny`, each an array of entry maps (`service`, and
/// `model` when the entry names one): the `access` field of GET and TREE,
/// and QUOTA.ACCESS after its `path`.
pub fn rules_reply(view: &AccessView) -> Reply {
    let list = |entries: &[Entry]| {
        Reply::Array(
            entries
                .iter()
                .map(|e| {
                    let mut fields = vec![("service", Reply::str(e.service.clone()))];
                    if let Some(model) = &e.model {
                        fields.push(("model", Reply::str(model.clone())));
                    }
                    Reply::Map(fields)
                })
                .collect(),
        )
    };
    Reply::Map(vec![("allow", list(&view.allow)), ("deny", list(&view.deny))])
}
