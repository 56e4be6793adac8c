//! `QUOTA.RESERVE`, `QUOTA.COMMIT`, `QUOTA.RELEASE`, `QUOTA.EXTEND`,
//! `QUOTA.CHARGE`: the request path.

use super::args::Args;
use super::price::usage_pairs;
use super::reply::Reply;
use super::{Answer, Command, Env, Handler, keyword};
use crate::config::MAX_TTL_MS;
use crate::engine::meta::Meta;
use crate::engine::names::display_path;
use crate::engine::outcome::{
    ChargeOutcome, CommitOutcome, Draw, MAX_ITEM_METRICS, ReleaseOutcome, ReserveOutcome, Totals,
};
use crate::engine::{BatchMode, ChargeRequest, ChargeSet, Costs, Error, ReserveRequest, Result, Tree, amount};

pub const RESERVE: Command = Command { name: "QUOTA.RESERVE", handler: Handler::Write(reserve) };
pub const COMMIT: Command = Command { name: "QUOTA.COMMIT", handler: Handler::Write(commit) };
pub const RELEASE: Command = Command { name: "QUOTA.RELEASE", handler: Handler::Write(release) };
pub const EXTEND: Command = Command { name: "QUOTA.EXTEND", handler: Handler::Write(extend) };
pub const CHARGE: Command = Command { name: "QUOTA.CHARGE", handler: Handler::Write(charge) };

/// Most paths one request may charge (`PATH` plus `ALSO`).
pub use crate::engine::catalog::MAX_CHARGE_PATHS;

const REQUEST_KEYWORDS: &[&str] =
    &["PATH", "ALSO", "ID", "TTL", "SERVICE", "MODEL", "ALL", "UPTO", "DRYRUN", "BRIEF", "CHECK", "COST", "USAGE"];

/// A request's keyword, `META` included. `META` is looked up apart: the
/// lookup in the list above is on the path of every request, and one more
/// entry there costs it a few hundred instructions (measured: the search
/// is no longer unrolled).
fn request_keyword(word: &str) -> Option<&'static str> {
    keyword(word, REQUEST_KEYWORDS).or_else(|| keyword(word, &["META"]))
}

/// The arguments `QUOTA.RESERVE` and `QUOTA.CHARGE` share.
struct Request {
    set: ChargeSet,
    id: Option<String>,
    ttl_ms: Option<u64>,
    batch: Option<BatchMode>,
    brief: bool,
    check: bool,
    items: Vec<Costs>,
    /// Whether an item was priced from the price book (`USAGE`).
    priced: bool,
    /// `META` pairs, in the order given.
    meta: Option<Box<Meta>>,
}

impl Request {
    /// The request with every item as `COST`, for replication.
    fn canonical(&self, ttl_ms: Option<u64>) -> Vec<String> {
        let mut out = Vec::new();
        for (i, path) in self.set.paths.iter().enumerate() {
            out.push(if i == 0 { "PATH" } else { "ALSO" }.to_string());
            out.push(display_path(path).to_string());
        }
        if let Some(id) = &self.id {
            out.extend(["ID".to_string(), id.clone()]);
        }
        if let Some(ttl) = ttl_ms {
            out.extend(["TTL".to_string(), ttl.to_string()]);
        }
        if let Some(service) = &self.set.service {
            out.extend(["SERVICE".to_string(), service.clone()]);
        }
        if let Some(model) = &self.set.model {
            out.extend(["MODEL".to_string(), model.clone()]);
        }
        out.extend(
            match self.batch {
                Some(BatchMode::Upto) => Some("UPTO"),
                Some(BatchMode::DryRun) => Some("DRYRUN"),
                _ => None,
            }
            .map(str::to_string),
        );
        if self.check {
            out.push("CHECK".into());
        }
        if self.brief {
            // The answer remembered under an ID differs with BRIEF.
            out.push("BRIEF".into());
        }
        if let Some(meta) = &self.meta {
            out.push("META".into());
            out.extend(meta.iter().flat_map(|(n, v)| [n.clone(), v.clone()]));
        }
        for item in &self.items {
            out.push("COST".into());
            out.extend(cost_args(item));
        }
        out
    }
}

/// `metric amount …` of a cost.
fn cost_args(cost: &Costs) -> Vec<String> {
    cost.iter().flat_map(|(m, a)| [m.clone(), amount::format(*a)]).collect()
}

/// Parses a request. `charge` selects the rules of `QUOTA.CHARGE`: one
/// item, negative amounts allowed, `CHECK` instead of `TTL` and batches.
/// The keywords are read by `request_words`; this checks what they say.
/// Lua twin: `CMD.parse_request` (lua/src/80_commands.lua).
fn parse_request(args: &mut Args<'_>, charge: bool) -> Result<Request> {
    let RequestWords { mut req, path, also, usage_keys } = request_words(args, charge)?;
    let path = path.ok_or_else(|| Error::syntax(format!("{} needs PATH", args.command())))?;
    if req.set.model.is_some() && req.set.service.is_none() {
        return Err(Error::syntax("MODEL needs SERVICE"));
    }
    if req.items.is_empty() {
        return Err(Error::syntax(format!("{} needs a COST or USAGE item", args.command())));
    }
    if charge && req.items.len() > 1 {
        return Err(Error::syntax("QUOTA.CHARGE takes exactly one COST or USAGE item"));
    }
    // Without SERVICE, a request whose USAGE items all name one
    // service/model is for that service and model.
    if req.set.service.is_none()
        && let Some((s, m)) = usage_keys.first()
        && usage_keys.iter().all(|k| k == &usage_keys[0])
    {
        (req.set.service, req.set.model) = (Some(s.clone()), Some(m.clone()));
    }
    let mut paths = vec![path];
    for p in also {
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    if paths.len() > MAX_CHARGE_PATHS {
        return Err(Error::Limit(format!("at most {MAX_CHARGE_PATHS} paths per request (PATH and ALSO)")));
    }
    req.set.paths = paths;
    Ok(req)
}

/// The keywords of a request as read, before `parse_request` checks them:
/// the request with no paths yet, its `PATH`, its `ALSO` paths and the
/// service/model of each `USAGE` item.
struct RequestWords {
    req: Request,
    path: Option<String>,
    also: Vec<String>,
    usage_keys: Vec<(String, String)>,
}

impl RequestWords {
    /// No keywords read yet (allocates nothing).
    fn empty() -> Self {
        let set = ChargeSet { paths: Vec::new(), service: None, model: None };
        let req = Request {
            set,
            id: None,
            ttl_ms: None,
            batch: None,
            brief: false,
            check: false,
            items: Vec::new(),
            priced: false,
            meta: None,
        };
        RequestWords { req, path: None, also: Vec::new(), usage_keys: Vec::new() }
    }
}

/// Reads the keywords of a request and what follows each (the loop of
/// `parse_request`): a keyword that does not apply to the command, or one
/// given twice, is an error.
/// Lua twin: `CMD.request_words` (lua/src/80_commands.lua).
fn request_words(args: &mut Args<'_>, charge: bool) -> Result<RequestWords> {
    let mut w = RequestWords::empty();
    let RequestWords { req, path, also, usage_keys } = &mut w;
    let mut seen = super::args::Seen::default();
    while !args.is_done() {
        let word = args.next_str("a keyword")?;
        let Some(kw) = request_keyword(word) else { return Err(args.unknown(word)) };
        let for_charge_only = kw == "CHECK";
        let for_reserve_only = matches!(kw, "TTL" | "ALL" | "UPTO" | "DRYRUN");
        if (charge && for_reserve_only) || (!charge && for_charge_only) {
            return Err(Error::syntax(format!("{kw} does not apply to {}", args.command())));
        }
        match kw {
            "COST" => req.items.push(parse_cost(args, !charge)?),
            "USAGE" => {
                let (key, item) = parse_usage(args)?;
                usage_keys.push(key);
                req.items.push(item);
                req.priced = true;
            }
            "ALSO" => {
                also.push(args.next_path("a path after ALSO")?);
                while !args.at_list_end() {
                    also.push(args.next_path("a path after ALSO")?);
                }
            }
            "ALL" | "UPTO" | "DRYRUN" => {
                args.once(&mut seen, "ALL, UPTO or DRYRUN")?;
                req.batch = Some(match kw {
                    "ALL" => BatchMode::All,
                    "UPTO" => BatchMode::Upto,
                    _ => BatchMode::DryRun,
                });
            }
            _ => {
                args.once(&mut seen, kw)?;
                match kw {
                    "PATH" => *path = Some(args.next_path("a path after PATH")?),
                    "ID" => req.id = Some(args.next_name("id")?),
                    "TTL" => req.ttl_ms = Some(args.next_u64("TTL", 1, MAX_TTL_MS)?),
                    "SERVICE" => req.set.service = Some(args.next_name("service")?),
                    "MODEL" => req.set.model = Some(args.next_name("model")?),
                    "BRIEF" => req.brief = true,
                    "CHECK" => req.check = true,
                    "META" => req.meta = Some(Box::new(parse_meta(args)?)),
                    _ => return Err(args.unknown(word)),
                }
            }
        }
    }
    Ok(w)
}

/// `name value …` after the `META` keyword: pairs while the next word is
/// not a keyword of the request; a name's value is the word after it,
/// whatever it is (usage design §2; only the NOTE text rule applies).
/// Lua twin: `meta_parse` (lua/src/66_labels.lua).
fn parse_meta(args: &mut Args<'_>) -> Result<Meta> {
    let mut meta = Meta::new();
    while let Some(word) = args.peek() {
        if request_keyword(word).is_some() {
            break;
        }
        let name = args.next_str("a META name")?;
        crate::engine::meta::check_name(name)?;
        // The word after a name is its value, whatever it is (a keyword
        // of the request too); a name at the end has none.
        let Some(value) = args.peek() else { return Err(Error::syntax(META_PAIRS)) };
        args.next_str("a META value")?;
        crate::engine::meta::add(&mut meta, name, value)?;
    }
    if meta.is_empty() {
        return Err(Error::syntax(META_PAIRS));
    }
    Ok(meta)
}

const META_PAIRS: &str = "META needs name value pairs";

/// `USAGE service/model name value …` after the `USAGE` keyword, priced by
/// the price book: the cost in the price's metric and the raw quantities.
fn parse_usage(args: &mut Args<'_>) -> Result<((String, String), Costs)> {
    let key = args.next_str("service/model after USAGE")?;
    let parts = crate::engine::pricing::parse_key(key)?;
    let pairs = usage_pairs(args)?;
    Ok((parts, crate::prices::estimate(key, &pairs)?.charges()))
}

/// `COST metric amount [metric amount …]` after the `COST` keyword.
/// At most [`MAX_ITEM_METRICS`] metrics, each once (found by index, so a
/// long item costs linear work).
fn parse_cost(args: &mut Args<'_>, non_negative: bool) -> Result<Costs> {
    let mut cost = Totals::new();
    while !args.at_list_end() {
        if cost.len() == MAX_ITEM_METRICS {
            return Err(Error::Limit(format!("at most {MAX_ITEM_METRICS} metrics per item")));
        }
        let metric = args.next_metric()?;
        let amount = if non_negative { args.next_non_negative("an amount")? } else { args.next_amount("an amount")? };
        if let Err(metric) = cost.insert_new(metric, amount) {
            return Err(Error::syntax(format!("metric '{metric}' appears twice in one COST item")));
        }
    }
    if cost.is_empty() {
        return Err(Error::syntax("COST needs at least one metric and amount"));
    }
    Ok(cost.into_costs())
}

/// `QUOTA.RESERVE key PATH p [ALSO p …] [ID id] [TTL ms] [SERVICE s] [MODEL m]
/// [ALL|UPTO|DRYRUN] [BRIEF] [META name value …] item [item …]`, item = `COST m n …` or
/// `USAGE service/model name value …`
fn reserve(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let req = parse_request(args, false)?;
    let ttl_ms = req.ttl_ms.unwrap_or(env.default_ttl_ms);
    let canonical = req.priced.then(|| req.canonical(Some(ttl_ms)));
    let brief = req.brief;
    let request = ReserveRequest {
        set: req.set,
        id: req.id,
        ttl_ms,
        batch: req.batch.unwrap_or(BatchMode::All),
        items: req.items,
        brief,
        meta: req.meta,
    };
    let outcome = tree.reserve(request, env.now_ms, &env.limits)?;
    let changed = outcome.reserved > 0 && !outcome.duplicate;
    crate::stats::bump(
        if outcome.allowed { &crate::stats::RESERVES_ALLOWED } else { &crate::stats::RESERVES_DENIED },
        u64::from(!outcome.duplicate),
    );
    let mut answer = Answer::new(Reply::Reserve(Box::new(outcome), brief), changed);
    answer.replicate = canonical;
    Ok(answer)
}

/// The answer's fields as a tree (for JSON; RESP writes them straight from
/// the outcome, `Reply::Reserve`, in this order).
pub fn reserve_reply(o: ReserveOutcome, brief: bool) -> Reply {
    let held = o.held().clone();
    let mut fields = Vec::with_capacity(12);
    fields.extend([
        ("allowed", Reply::flag(o.allowed)),
        ("id", o.id.map_or(Reply::Nil, Reply::Str)),
        ("expires_at", Reply::ms(o.expires_at_ms)),
        ("items", Reply::Int(o.items as i64)),
        ("fits", Reply::Int(o.fits as i64)),
        ("reserved", Reply::Int(o.reserved as i64)),
        ("cost", Reply::costs_owned(o.cost)),
        ("held", Reply::costs_owned(held)),
    ]);
    if !(brief && o.allowed) {
        fields.push(("checks", Reply::Checks(o.access, o.checks)));
    }
    fields.push(("denied_by", Reply::strings(o.denied_by)));
    fields.push(("message", Reply::Str(o.message)));
    fields.push(("duplicate", Reply::flag(o.duplicate)));
    Reply::Map(fields)
}

/// `ITEM i` and an optional `COST …` after a reservation id.
fn parse_settle(args: &mut Args<'_>, with_cost: bool) -> Result<(Option<usize>, Option<Costs>, bool)> {
    let (mut item, mut cost, mut priced) = (None, None, false);
    let mut seen = super::args::Seen::default();
    let keywords: &[&str] = if with_cost { &["ITEM", "COST", "USAGE"] } else { &["ITEM"] };
    while !args.is_done() {
        let word = args.next_str("a keyword")?;
        let Some(kw) = keyword(word, keywords) else { return Err(args.unknown(word)) };
        if kw == "ITEM" {
            args.once(&mut seen, kw)?;
        }
        match kw {
            "ITEM" => item = Some(args.next_u64("ITEM", 0, u32::MAX as u64)? as usize),
            "COST" | "USAGE" => {
                if cost.is_some() {
                    return Err(Error::syntax("give the actual amount once, as COST or as USAGE"));
                }
                priced = kw == "USAGE";
                cost = Some(if kw == "COST" { parse_cost(args, true)? } else { parse_usage(args)?.1 });
            }
            _ => return Err(args.unknown(word)),
        }
    }
    Ok((item, cost, priced))
}

/// `QUOTA.COMMIT key id [ITEM i] [COST metric amount … | USAGE service/model name value …]`
fn commit(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let id = args.next_name("reservation id")?;
    let (item, cost, priced) = parse_settle(args, true)?;
    let canonical = priced.then(|| {
        let mut out = vec![id.clone()];
        if let Some(i) = item {
            out.extend(["ITEM".to_string(), i.to_string()]);
        }
        out.push("COST".into());
        out.extend(cost.as_ref().map(cost_args).unwrap_or_default());
        out
    });
    let outcome = tree.commit(&id, item, cost, env.now_ms, &env.limits)?;
    crate::stats::bump(&crate::stats::COMMITS, u64::from(!outcome.duplicate));
    let changed = !outcome.duplicate;
    let mut answer = Answer::new(commit_reply(outcome), changed);
    answer.replicate = canonical;
    Ok(answer)
}

fn commit_reply(o: CommitOutcome) -> Reply {
    Reply::Map(vec![
        ("id", Reply::Str(o.id)),
        ("charged", Reply::costs_owned(o.charged)),
        ("released", Reply::costs_owned(o.released)),
        ("overage", Reply::costs_owned(o.overage)),
        ("duplicate", Reply::flag(o.duplicate)),
        ("expired", Reply::flag(o.expired)),
        ("over", Reply::strings(o.over)),
        ("drawn", drawn_reply(&o.drawn)),
    ])
}

/// What grants gave, as COMMIT and CHARGE show it: an array of maps.
pub fn drawn_reply(drawn: &[Draw]) -> Reply {
    Reply::Array(
        drawn
            .iter()
            .map(|d| {
                Reply::Map(vec![
                    ("path", Reply::str(d.path.clone())),
                    ("policy", Reply::str(d.policy.clone())),
                    ("grant", Reply::str(d.grant.clone())),
                    ("amount", Reply::amount(d.amount)),
                ])
            })
            .collect(),
    )
}

/// `QUOTA.RELEASE key id [ITEM i]`
fn release(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let id = args.next_name("reservation id")?;
    let (item, _, _) = parse_settle(args, false)?;
    let outcome = tree.release(&id, item, env.now_ms, &env.limits)?;
    crate::stats::bump(&crate::stats::RELEASES, u64::from(!outcome.duplicate));
    let changed = !outcome.duplicate;
    Ok(Answer::new(release_reply(outcome), changed))
}

fn release_reply(o: ReleaseOutcome) -> Reply {
    Reply::Map(vec![
        ("id", Reply::Str(o.id)),
        ("released", Reply::costs_owned(o.released)),
        ("duplicate", Reply::flag(o.duplicate)),
        ("expired", Reply::flag(o.expired)),
    ])
}

/// `QUOTA.EXTEND key id ttl`
fn extend(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let id = args.next_name("reservation id")?;
    let ttl_ms = args.next_u64("the TTL", 1, MAX_TTL_MS)?;
    args.finish()?;
    let outcome = tree.extend(&id, ttl_ms, env.now_ms)?;
    let reply = Reply::Map(vec![("id", Reply::str(outcome.id)), ("expires_at", Reply::ms(outcome.expires_at_ms))]);
    Ok(Answer::new(reply, true))
}

/// `QUOTA.CHARGE key PATH p [ALSO p …] [ID id] [SERVICE s] [MODEL m] [CHECK]
/// [BRIEF] [META name value …] COST metric amount … | USAGE service/model name value …`
fn charge(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let req = parse_request(args, true)?;
    let canonical = req.priced.then(|| req.canonical(None));
    let brief = req.brief;
    let cost = req.items.into_iter().next().unwrap_or_default();
    let request = ChargeRequest { set: req.set, id: req.id, check: req.check, cost, brief, meta: req.meta };
    let outcome = tree.charge(request, env.now_ms, &env.limits)?;
    let changed = outcome.allowed && !outcome.duplicate;
    crate::stats::bump(&crate::stats::CHARGES, u64::from(changed));
    let mut answer = Answer::new(Reply::Charge(Box::new(outcome), brief), changed);
    answer.replicate = canonical;
    Ok(answer)
}

/// The answer's fields as a tree (for JSON; RESP writes them straight from
/// the outcome, `Reply::Charge`, in this order).
pub fn charge_reply(o: ChargeOutcome, brief: bool) -> Reply {
    let mut fields = vec![("allowed", Reply::flag(o.allowed)), ("charged", Reply::costs_owned(o.charged))];
    if !(brief && o.allowed) {
        fields.push(("checks", Reply::Checks(o.access, o.checks)));
    }
    fields.push(("denied_by", Reply::strings(o.denied_by)));
    fields.push(("message", Reply::Str(o.message)));
    fields.push(("over", Reply::strings(o.over)));
    fields.push(("duplicate", Reply::flag(o.duplicate)));
    fields.push(("drawn", drawn_reply(&o.drawn)));
    Reply::Map(fields)
}
