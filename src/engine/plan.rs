//! Plans (SPEC §6): one set of policies that many trees follow.
//!
//! A *plan* maps *path patterns* to policies. A pattern is a path whose
//! segments may be `*`, which stands for exactly one segment: `members/*`
//! matches `members/u7` but not `members` nor `members/u7/x`. A tree that
//! *follows* a plan has, on every node a pattern matches, that pattern's
//! policies (*plan policies*, `source` "plan") beside its own (`source`
//! "tree"); an own policy with the same name overrides the plan's on that
//! node. Only the specification comes from the plan: usage is the tree's.
//!
//! When several patterns match one node and give policies of the same
//! name, the most specific pattern's wins: patterns of one depth are
//! ordered segment by segment, a literal before `*`, and literals in byte
//! order; the first difference decides (two patterns that both match a
//! node can only differ where one has `*`).
//!
//! The *plan book* is server-wide, like the price book. Every plan has a
//! *version*: 1 when created, one more at each change (or the version the
//! plan's JSON names, which must be above the current one). A tree keeps
//! the plan it last saw (name, version, content): when the book has another
//! version of that name, the tree takes it at its next command; when the
//! book has no plan of that name any more, the tree keeps enforcing what it
//! saw and says so (`plan_missing`).
//!
//! Lua twin: `PLAN` (lua/src/35_plan.lua).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::amount;
use super::error::{Error, Result};
use super::names;
use super::policy::{Mode, PolicySpec, Warn, parse_warn};
use super::window::{AnchorShown, Window};

/// Most plans in the plan book.
pub const MAX_PLANS: usize = 1_000;
/// Most patterns in one plan.
pub const MAX_PATTERNS: usize = 64;
/// Most policies one pattern gives, and most distinct policy names the
/// patterns of one depth give together (so no node gets more from a plan).
pub const MAX_PLAN_POLICIES: usize = 16;
/// Longest plan JSON accepted.
pub const MAX_PLAN_JSON_LEN: usize = 64 * 1024;
/// Longest plan name (names use the characters of a path segment).
pub const MAX_PLAN_NAME_LEN: usize = 64;

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Seg {
    /// A literal segment (ordered before `Any`: more specific).
    Name(Box<str>),
    /// `*`: any one segment.
    Any,
}

/// A path pattern and the policies it gives, by name (byte order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    /// Canonical text: `/` for the root, else the segments joined by `/`
    /// without a leading `/` (as paths are shown).
    pub text: String,
    segs: Vec<Seg>,
    pub policies: Vec<(String, PolicySpec)>,
}

impl Pattern {
    /// Parses a pattern: a path (leading `/` optional, `/` alone is the
    /// root) whose segments may be `*`.
    /// Lua twin: `PLAN.parse_pattern` (lua/src/35_plan.lua).
    pub fn parse(text: &str) -> Result<(String, usize)> {
        let body = text.strip_prefix('/').unwrap_or(text);
        if body.is_empty() {
            return Ok(("/".to_string(), 0));
        }
        let mut depth = 0;
        for segment in body.split('/') {
            depth += 1;
            if depth > names::MAX_DEPTH_HARD {
                return Err(Error::Limit(format!(
                    "pattern '{}' is deeper than {} segments",
                    names::clip(text),
                    names::MAX_DEPTH_HARD
                )));
            }
            // `parse_path` takes "" for the root: an empty segment
            // (`a//b`, `a/`) is refused here.
            if segment != "*" && (segment.is_empty() || names::parse_path(segment, 1).is_err()) {
                return Err(Error::syntax(format!(
                    "invalid pattern '{}': each segment is a path segment or *",
                    names::clip(text)
                )));
            }
        }
        Ok((body.to_string(), depth))
    }

    fn new(text: &str, policies: Vec<(String, PolicySpec)>) -> Result<Pattern> {
        let (text, _) = Pattern::parse(text)?;
        let segs = if text == "/" {
            Vec::new()
        } else {
            text.split('/').map(|s| if s == "*" { Seg::Any } else { Seg::Name(s.into()) }).collect()
        };
        let mut policies = policies;
        policies.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Ok(Pattern { text, segs, policies })
    }

    pub fn depth(&self) -> usize {
        self.segs.len()
    }

    /// Whether the pattern matches the canonical path `path` ("" is the root).
    /// Lua twin: `PLAN.matches` (lua/src/35_plan.lua).
    pub fn matches(&self, path: &str) -> bool {
        if path.is_empty() {
            return self.segs.is_empty();
        }
        let mut parts = path.split('/');
        for seg in &self.segs {
            match (seg, parts.next()) {
                (_, None) => return false,
                (Seg::Any, Some(_)) => {}
                (Seg::Name(name), Some(part)) if **name == *part => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }
}

/// A plan: its name, version, and patterns (most specific first within a
/// depth), with its canonical JSON (what `QUOTA.PLAN GET` prints, the
/// version included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub name: String,
    pub version: u64,
    patterns: Vec<Pattern>,
    /// The canonical JSON, version included.
    json: String,
    /// Where `,"version":N}` begins in `json`: `json[..content_end]` is
    /// the same text for two plans exactly when their content is the same.
    content_end: usize,
}

/// A plan name: 1–64 characters of `A-Z a-z 0-9 _ - . : @`, not `none` in
/// any case (`QUOTA.ASSIGN key NONE` leaves plans).
/// Lua twin: `PLAN.parse_name` (lua/src/35_plan.lua).
pub fn parse_name(text: &str) -> Result<String> {
    let ok = !text.is_empty()
        && text.len() <= MAX_PLAN_NAME_LEN
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:@".contains(&b));
    if !ok {
        return Err(Error::syntax(format!(
            "invalid plan name '{}': use 1-{MAX_PLAN_NAME_LEN} characters of A-Z a-z 0-9 _ - . : @",
            names::clip(text)
        )));
    }
    if text.eq_ignore_ascii_case("none") {
        return Err(Error::syntax("'none' is not a plan name: QUOTA.ASSIGN key NONE leaves plans"));
    }
    Ok(text.to_string())
}

/// Largest plan version: 2^53 - 1, so that a Lua number holds it exactly.
pub const MAX_PLAN_VERSION: u64 = (1 << 53) - 1;

/// `ERR syntax: plan field '<field>': <why>`.
fn field_error(field: &str, why: impl std::fmt::Display) -> Error {
    Error::syntax(format!("plan field '{field}': {why}"))
}

/// The value of a JSON number written as a plain integer literal (digits
/// only: no sign, fraction or exponent), if it is one that fits a u64.
/// Numbers keep their literal text (`arbitrary_precision`).
/// Lua twin: `integer_literal` (lua/src/35_plan.lua).
fn integer_literal(value: &Value) -> Option<u64> {
    let Value::Number(n) = value else { return None };
    let text = n.to_string();
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A decimal given as a JSON string or number, parsed as `QUOTA.SET`
/// parses `LIMIT` (the same function, the same errors).
fn decimal_field(value: &Value, field: &str) -> Result<rust_decimal::Decimal> {
    match value {
        Value::String(s) => amount::parse_non_negative(s),
        Value::Number(n) => amount::parse_non_negative(&n.to_string()),
        _ => Err(field_error(field, "must be a decimal string or number")),
    }
}

/// The policy fields a plan accepts, in the order they are read and printed.
const POLICY_FIELDS: &[&str] =
    &["metric", "limit", "window", "anchor", "tz", "mode", "warn", "rollover", "service", "model", "low", "inflight"];

/// One policy of a plan: `object` is the JSON object given for it, `at`
/// the field path that names it in errors (`paths.<key>.<name>`).
/// Lua twin: `policy_from_json` (lua/src/35_plan.lua).
fn policy_from_json(
    object: &Map<String, Value>,
    at: &str,
    parse_metric: fn(&str) -> Result<String>,
) -> Result<PolicySpec> {
    for key in object.keys() {
        if !POLICY_FIELDS.contains(&key.as_str()) {
            return Err(field_error(&format!("{at}.{}", names::clip(key)), "unknown field"));
        }
    }
    let name_of = |f: &str| format!("{at}.{f}");
    let metric = match object.get("metric") {
        Some(Value::String(m)) => parse_metric(m)?,
        Some(_) => return Err(field_error(&name_of("metric"), "must be a string")),
        None => return Err(field_error(&name_of("metric"), "missing")),
    };
    let limit = match object.get("limit") {
        Some(v) => decimal_field(v, &name_of("limit"))?,
        None => return Err(field_error(&name_of("limit"), "missing")),
    };
    let window = match object.get("window") {
        None => None,
        Some(Value::String(w)) => Some(w.as_str()),
        Some(_) => {
            return Err(field_error(&name_of("window"), "must be a string such as \"month\" or \"rolling 24h\""));
        }
    };
    // The anchor's JSON type follows the window: a string for `week`
    // ("sunday") and `year` ("04-01"), an integer day from 1 to 31 for
    // `month`; any other window takes either and refuses it by name.
    let unit = window.map(|w| w.split(' ').next().unwrap_or(w).to_ascii_lowercase());
    let anchor: Option<String> = match (unit.as_deref(), object.get("anchor")) {
        (_, None) => None,
        (Some("week" | "year") | None, Some(Value::String(a))) => Some(a.clone()),
        (Some("week"), Some(_)) => return Err(field_error(&name_of("anchor"), "must be a string such as \"sunday\"")),
        (Some("year"), Some(_)) => return Err(field_error(&name_of("anchor"), "must be a string such as \"04-01\"")),
        (Some(u), Some(Value::String(a))) if u != "month" => Some(a.clone()),
        (_, Some(v)) => match integer_literal(v) {
            Some(d) if (1..=31).contains(&d) => Some(d.to_string()),
            _ => return Err(field_error(&name_of("anchor"), "must be an integer from 1 to 31")),
        },
    };
    let tz = match object.get("tz") {
        None => None,
        Some(Value::String(z)) => Some(z.as_str()),
        Some(_) => return Err(field_error(&name_of("tz"), "must be a string such as \"Africa/Lagos\" or \"+01:00\"")),
    };
    let anchor = anchor.as_deref();
    let window = match window {
        None => Window::parse("none", anchor, None, tz)?,
        Some(text) => {
            let (name, duration) = match text.split_once(' ') {
                Some((name, duration)) => (name, Some(duration)),
                None => (text, None),
            };
            let window = Window::parse(name, anchor, duration, tz)?;
            // Window::parse reads a duration only for `rolling`: anything
            // after the name of another window is refused, not dropped.
            if duration.is_some() && !matches!(window, Window::Rolling { .. }) {
                return Err(field_error(&name_of("window"), "must be a string such as \"month\" or \"rolling 24h\""));
            }
            window
        }
    };
    let mode = match object.get("mode") {
        None => Mode::Strict,
        Some(Value::String(m)) => Mode::parse(m)?,
        Some(_) => return Err(field_error(&name_of("mode"), "must be a string")),
    };
    let warn = match object.get("warn") {
        None => Warn::default(),
        Some(v) => {
            let bad = || field_error(&name_of("warn"), "must be an array of percentages such as [80, 90]");
            let Value::Array(items) = v else { return Err(bad()) };
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::Number(n) if integer_literal(item).is_some() => parts.push(n.to_string()),
                    _ => return Err(bad()),
                }
            }
            parse_warn(&parts.join(","))?
        }
    };
    let rollover = object.get("rollover").map(|v| decimal_field(v, &name_of("rollover"))).transpose()?;
    let mut filter = [None, None];
    for (slot, what) in filter.iter_mut().zip(["service", "model"]) {
        *slot = match object.get(what) {
            None => None,
            Some(Value::String(s)) => Some(names::parse_name(s, what)?),
            Some(_) => return Err(field_error(&name_of(what), "must be a string")),
        };
    }
    let [service, model] = filter;
    let low = object.get("low").map(|v| decimal_field(v, &name_of("low"))).transpose()?;
    let inflight = match object.get("inflight") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(field_error(&name_of("inflight"), "must be true or false")),
    };
    let spec = PolicySpec { metric, limit, mode, window, warn, rollover, service, model, low, inflight };
    spec.validate()?;
    Ok(spec)
}

/// A policy as canonical JSON: the fields of [`POLICY_FIELDS`] in their
/// order, `anchor` as replies show it (a `month` window's day, always; a
/// `week` or `year` window's day name or `MM-DD` when not the default), `tz`
/// only when not UTC, `rollover`, `service`,
/// `model` and `low` only when set, `inflight` only when true.
/// Lua twin: `policy_to_json` (lua/src/35_plan.lua).
fn policy_to_json(spec: &PolicySpec, out: &mut String) {
    let text = |s: &str| Value::String(s.to_string()).to_string();
    out.push_str(&format!("{{\"metric\":{},\"limit\":{}", text(&spec.metric), text(&amount::format(spec.limit))));
    out.push_str(&format!(",\"window\":{}", text(&spec.window.label())));
    match spec.window.anchor_shown() {
        Some(AnchorShown::Day(day)) => out.push_str(&format!(",\"anchor\":{day}")),
        Some(AnchorShown::Text(anchor)) => out.push_str(&format!(",\"anchor\":{}", text(&anchor))),
        None => {}
    }
    let tz = spec.window.tz();
    if !tz.is_utc() {
        out.push_str(&format!(",\"tz\":{}", text(&tz.name())));
    }
    let warn: Vec<String> = spec.warn.iter().map(u8::to_string).collect();
    out.push_str(&format!(",\"mode\":{},\"warn\":[{}]", text(spec.mode.as_str()), warn.join(",")));
    if let Some(cap) = spec.rollover {
        out.push_str(&format!(",\"rollover\":{}", text(&amount::format(cap))));
    }
    if let Some(service) = &spec.service {
        out.push_str(&format!(",\"service\":{}", text(service)));
    }
    if let Some(model) = &spec.model {
        out.push_str(&format!(",\"model\":{}", text(model)));
    }
    if let Some(low) = spec.low {
        out.push_str(&format!(",\"low\":{}", text(&amount::format(low))));
    }
    if spec.inflight {
        out.push_str(",\"inflight\":true");
    }
    out.push('}');
}

impl Plan {
    /// A plan from its parts: patterns as written, each with its policies.
    /// Checks the patterns (syntax, duplicates after canonical form, the
    /// bounds) and orders them; the canonical JSON is made from them.
    pub fn new(name: &str, version: u64, patterns: Vec<(String, Vec<(String, PolicySpec)>)>) -> Result<Plan> {
        let name = parse_name(name)?;
        if patterns.len() > MAX_PATTERNS {
            return Err(Error::Limit(format!("a plan has at most {MAX_PATTERNS} patterns")));
        }
        let mut parsed: Vec<Pattern> = Vec::with_capacity(patterns.len());
        for (text, policies) in patterns {
            if policies.len() > MAX_PLAN_POLICIES {
                return Err(too_many_policies(&text));
            }
            add_pattern(&mut parsed, Pattern::new(&text, policies)?)?;
        }
        Plan::from_patterns(name, version, parsed)
    }

    /// Orders the patterns, checks the depth bound, renders the JSON.
    fn from_patterns(name: String, version: u64, mut patterns: Vec<Pattern>) -> Result<Plan> {
        patterns.sort_by(|a, b| a.segs.len().cmp(&b.segs.len()).then_with(|| a.segs.cmp(&b.segs)));
        check_depth_names(&patterns)?;
        let mut plan = Plan { name, version, patterns, json: String::new(), content_end: 0 };
        plan.render_json();
        Ok(plan)
    }

    /// Parses plan `name`'s JSON, checking in the order of the design
    /// (each step's error is the reply):
    ///
    /// 0. the name ([`parse_name`]);
    /// 1. `text` longer than [`MAX_PLAN_JSON_LEN`] bytes: `ERR limit`;
    /// 2. not JSON; 3. not an object;
    /// 4. top-level keys (byte order) other than `paths` and `version`;
    /// 5. `version`, when given: an integer literal 1..2^53-1;
    /// 6. `paths` missing, or not an object;
    /// 7. more than [`MAX_PATTERNS`] patterns;
    /// 8. each pattern by its key as written (byte order): the pattern,
    ///    its value an object, at most [`MAX_PLAN_POLICIES`] policies, each
    ///    policy by name (byte order): the name, its value an object, its
    ///    fields ([`policy_from_json`]); then the pattern appearing twice
    ///    in canonical form;
    /// 9. the depth bound ([`check_depth_names`]).
    ///
    /// The plan book then checks its own bound and the version rule
    /// ([`PlanBook::set_json`]). Returns the plan, with the version the
    /// JSON names (0 when it names none), and that version.
    /// Lua twin: `PLAN.from_json` (lua/src/35_plan.lua).
    pub fn from_json(name: &str, text: &str) -> Result<(Plan, Option<u64>)> {
        Plan::parse_json(name, text, names::parse_metric)
    }

    /// [`Plan::from_json`] for a plan read back from storage (the plan
    /// book, a tree's plan state): metric names as the release that stored
    /// it took them ([`names::parse_stored_metric`]).
    /// Lua twin: `PLAN.from_json` (lua/src/35_plan.lua), given trusted.
    pub fn from_stored_json(name: &str, text: &str) -> Result<(Plan, Option<u64>)> {
        Plan::parse_json(name, text, names::parse_stored_metric)
    }

    fn parse_json(name: &str, text: &str, metric: fn(&str) -> Result<String>) -> Result<(Plan, Option<u64>)> {
        let name = parse_name(name)?;
        if text.len() > MAX_PLAN_JSON_LEN {
            return Err(Error::Limit(format!("a plan is at most {MAX_PLAN_JSON_LEN} bytes of JSON")));
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| Error::syntax(format!("plan is not valid JSON: {e}")))?;
        let Value::Object(object) = value else { return Err(Error::syntax("a plan must be a JSON object")) };
        for key in object.keys() {
            if key != "paths" && key != "version" {
                return Err(field_error(&names::clip(key), "unknown field (a plan has paths and version)"));
            }
        }
        let version = match object.get("version") {
            None => None,
            Some(v) => match integer_literal(v) {
                Some(n) if (1..=MAX_PLAN_VERSION).contains(&n) => Some(n),
                _ => {
                    return Err(field_error("version", format!("must be an integer from 1 to {MAX_PLAN_VERSION}")));
                }
            },
        };
        let paths = match object.get("paths") {
            Some(Value::Object(paths)) => paths,
            Some(_) => return Err(field_error("paths", "must be an object of path patterns")),
            None => return Err(field_error("paths", "missing")),
        };
        if paths.len() > MAX_PATTERNS {
            return Err(Error::Limit(format!("a plan has at most {MAX_PATTERNS} patterns")));
        }
        let mut patterns: Vec<Pattern> = Vec::with_capacity(paths.len());
        for (key, value) in paths {
            Pattern::parse(key)?;
            let at = format!("paths.{}", names::clip(key));
            let Value::Object(policies) = value else {
                return Err(field_error(&at, "must be an object of policies"));
            };
            if policies.len() > MAX_PLAN_POLICIES {
                return Err(too_many_policies(key));
            }
            let mut specs = Vec::with_capacity(policies.len());
            for (policy, value) in policies {
                let policy = names::parse_name(policy, "policy name")?;
                let at = format!("{at}.{}", names::clip(&policy));
                let Value::Object(fields) = value else { return Err(field_error(&at, "must be an object")) };
                specs.push((policy, policy_from_json(fields, &at, metric)?));
            }
            add_pattern(&mut patterns, Pattern::new(key, specs)?)?;
        }
        let plan = Plan::from_patterns(name, version.unwrap_or(0), patterns)?;
        Ok((plan, version))
    }

    /// The same plan under another version.
    pub fn with_version(mut self, version: u64) -> Plan {
        if version != self.version {
            self.version = version;
            self.render_json();
        }
        self
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// The canonical JSON, version included.
    pub fn to_json(&self) -> &str {
        &self.json
    }

    /// The canonical JSON without the version: `{"paths":{…}}`.
    /// Lua twin: `PLAN.content` (lua/src/35_plan.lua).
    pub fn content_json(&self) -> String {
        format!("{}}}", &self.json[..self.content_end])
    }

    /// Whether two plans have the same content (their canonical JSON
    /// without the version is the same), whatever their names and versions.
    pub fn same_content(&self, other: &Plan) -> bool {
        self.json[..self.content_end] == other.json[..other.content_end]
    }

    /// Whether two plans are the same version of the same content.
    pub fn same(&self, other: &Plan) -> bool {
        self.version == other.version && self.json == other.json
    }

    /// The plan policies of the node at canonical `path`, each name once
    /// (the most specific pattern's), in order: patterns most specific
    /// first, each pattern's policies by name.
    /// Lua twin: `PLAN.policies_for` (lua/src/35_plan.lua).
    pub fn policies_for(&self, path: &str) -> Vec<(&str, &PolicySpec)> {
        let depth = names::depth_of(path);
        let mut out: Vec<(&str, &PolicySpec)> = Vec::new();
        for pattern in self.patterns.iter().filter(|p| p.depth() == depth) {
            if !pattern.matches(path) {
                continue;
            }
            for (name, spec) in &pattern.policies {
                if !out.iter().any(|(n, _)| *n == name.as_str()) {
                    out.push((name.as_str(), spec));
                }
            }
        }
        out
    }

    /// The canonical JSON (no spaces): `{"paths":{<pattern>:{<policy>:
    /// {<fields>},…},…},"version":N}`, patterns by canonical text and
    /// policies by name, both in byte order.
    /// Lua twin: `PLAN.to_json` (lua/src/35_plan.lua).
    fn render_json(&mut self) {
        let text = |s: &str| Value::String(s.to_string()).to_string();
        let mut order: Vec<&Pattern> = self.patterns.iter().collect();
        order.sort_by(|a, b| a.text.as_bytes().cmp(b.text.as_bytes()));
        let mut out = String::from("{\"paths\":{");
        for (i, pattern) in order.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&text(&pattern.text));
            out.push_str(":{");
            for (j, (name, spec)) in pattern.policies.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                out.push_str(&text(name));
                out.push(':');
                policy_to_json(spec, &mut out);
            }
            out.push('}');
        }
        out.push('}');
        self.content_end = out.len();
        out.push_str(&format!(",\"version\":{}}}", self.version));
        self.json = out;
    }
}

fn too_many_policies(pattern: &str) -> Error {
    Error::Limit(format!("pattern '{}' has more than {MAX_PLAN_POLICIES} policies", names::clip(pattern)))
}

/// Adds `pattern`, refusing one whose canonical form is there already.
fn add_pattern(patterns: &mut Vec<Pattern>, pattern: Pattern) -> Result<()> {
    if patterns.iter().any(|p| p.text == pattern.text) {
        return Err(Error::syntax(format!("pattern '{}' appears twice", pattern.text)));
    }
    patterns.push(pattern);
    Ok(())
}

/// The patterns of one depth give at most [`MAX_PLAN_POLICIES`] distinct
/// names together, so a node never gets more from a plan.
fn check_depth_names(patterns: &[Pattern]) -> Result<()> {
    let mut by_depth: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for p in patterns {
        let names = by_depth.entry(p.depth()).or_default();
        for (name, _) in &p.policies {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
    }
    for (depth, names) in by_depth {
        if names.len() > MAX_PLAN_POLICIES {
            return Err(Error::Limit(format!(
                "the patterns of depth {depth} give {} policy names; a node gets at most {MAX_PLAN_POLICIES} from a plan",
                names.len()
            )));
        }
    }
    Ok(())
}

/// The server-wide plan book.
#[derive(Debug, Clone, Default)]
pub struct PlanBook {
    plans: BTreeMap<String, Arc<Plan>>,
}

/// The bound on a plan's JSON holds for what the book stores too (its
/// canonical JSON, every default written out, version included), not only
/// for what a client sends, so every stored plan loads again from the RDB,
/// a full sync or a rewritten AOF, which parse that JSON.
/// Lua twin: in `PLAN.set` (lua/src/35_plan.lua).
fn check_stored_len(plan: &Plan) -> Result<()> {
    let len = plan.to_json().len();
    if len > MAX_PLAN_JSON_LEN {
        return Err(Error::Limit(format!(
            "a plan is at most {MAX_PLAN_JSON_LEN} bytes of JSON, written out with every default as QUOTA.PLAN GET shows it (this one is {len})"
        )));
    }
    Ok(())
}

impl PlanBook {
    /// The plan named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Plan>> {
        self.plans.get(name)
    }

    /// The version a new content for `name` gets: `asked` when given (it
    /// must be above the current version), else the current plus one, or
    /// 1 for a new plan.
    /// Lua twin: `PLAN.next_version` (lua/src/35_plan.lua).
    pub fn next_version(&self, name: &str, asked: Option<u64>) -> Result<u64> {
        let current = self.plans.get(name).map_or(0, |p| p.version);
        match asked {
            Some(v) if v <= current => Err(Error::State(format!(
                "plan version {v} is not above the current {current}: leave version out to take the next"
            ))),
            Some(0) => Err(Error::syntax("a plan version is at least 1")),
            Some(v) => Ok(v),
            None if current >= MAX_PLAN_VERSION => Err(Error::Limit(format!(
                "plan '{name}' is at version {current}, the highest: delete it and set it again"
            ))),
            None => Ok(current + 1),
        }
    }

    /// `QUOTA.PLAN SET name json`: parses the plan ([`Plan::from_json`]),
    /// then, for a new name, the book's bound; then, when the book's plan
    /// of that name has the same content and the JSON names no version or
    /// the current one, nothing changes; else the plan is stored under
    /// [`PlanBook::next_version`]. Returns the plan's version after the
    /// call and whether the book changed. An error changes nothing.
    /// Lua twin: `PLAN.set` (lua/src/35_plan.lua).
    pub fn set_json(&mut self, name: &str, json: &str) -> Result<(u64, bool)> {
        self.set_json_from(name, json, false)
    }

    /// [`PlanBook::set_json`]; with `stored`, the JSON is read as stored
    /// data ([`Plan::from_stored_json`]): an AOF's or a primary's `SET`.
    pub fn set_json_from(&mut self, name: &str, json: &str, stored: bool) -> Result<(u64, bool)> {
        let (plan, asked) = if stored { Plan::from_stored_json(name, json)? } else { Plan::from_json(name, json)? };
        let current = self.plans.get(&plan.name);
        if current.is_none() && self.plans.len() >= MAX_PLANS {
            return Err(Error::Limit(format!("the plan book already has {MAX_PLANS} plans")));
        }
        if let Some(current) = current
            && current.same_content(&plan)
            && asked.is_none_or(|v| v == current.version)
        {
            return Ok((current.version, false));
        }
        let version = self.next_version(&plan.name, asked)?;
        let plan = plan.with_version(version);
        check_stored_len(&plan)?;
        let plan = self.set(plan)?;
        Ok((plan.version, true))
    }

    /// Stores `plan` (whose version [`PlanBook::next_version`] gave).
    pub fn set(&mut self, plan: Plan) -> Result<Arc<Plan>> {
        if !self.plans.contains_key(&plan.name) && self.plans.len() >= MAX_PLANS {
            return Err(Error::Limit(format!("the plan book already has {MAX_PLANS} plans")));
        }
        let plan = Arc::new(plan);
        self.plans.insert(plan.name.clone(), plan.clone());
        Ok(plan)
    }

    pub fn remove(&mut self, name: &str) -> bool {
        self.plans.remove(name).is_some()
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.plans.keys()
    }

    pub fn len(&self) -> usize {
        self.plans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plans.is_empty()
    }

    pub fn plans(&self) -> impl Iterator<Item = &Arc<Plan>> {
        self.plans.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_one_segment_per_star() {
        let (p, _) = (Pattern::new("members/*", vec![]).unwrap(), ());
        assert!(p.matches("members/u7"));
        assert!(!p.matches("members"));
        assert!(!p.matches("members/u7/x"));
        assert!(!p.matches("projects/u7"));
        let root = Pattern::new("/", vec![]).unwrap();
        assert!(root.matches(""));
        assert!(!root.matches("members"));
        assert_eq!(Pattern::new("/projects/*", vec![]).unwrap().text, "projects/*");
    }

    #[test]
    fn literal_before_star() {
        let mut a = vec![Seg::Any, Seg::Name("u7".into())];
        let b = vec![Seg::Name("members".into()), Seg::Any];
        let mut v = vec![a.clone(), b.clone()];
        v.sort();
        assert_eq!(v, vec![b, a.clone()]);
        a.clear();
    }
}
