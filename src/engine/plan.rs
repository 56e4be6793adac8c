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

use super::error::{Error, Result};
use super::names;
use super::policy::PolicySpec;

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
            if segment != "*" {
                names::parse_path(segment, 1).map_err(|_| {
                    Error::syntax(format!(
                        "invalid pattern '{}': each segment is a path segment or *",
                        names::clip(text)
                    ))
                })?;
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
    json: String,
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

impl Plan {
    /// A plan from its parts: patterns as written, each with its policies.
    /// Checks the patterns (syntax, duplicates after canonical form, the
    /// bounds) and orders them. `json` is filled in by [`Plan::to_json`]'s
    /// rules.
    pub fn new(name: &str, version: u64, patterns: Vec<(String, Vec<(String, PolicySpec)>)>) -> Result<Plan> {
        let name = parse_name(name)?;
        if patterns.len() > MAX_PATTERNS {
            return Err(Error::Limit(format!("a plan has at most {MAX_PATTERNS} patterns")));
        }
        let mut parsed: Vec<Pattern> = Vec::with_capacity(patterns.len());
        for (text, policies) in patterns {
            if policies.len() > MAX_PLAN_POLICIES {
                return Err(Error::Limit(format!(
                    "pattern '{}' has more than {MAX_PLAN_POLICIES} policies",
                    names::clip(&text)
                )));
            }
            let pattern = Pattern::new(&text, policies)?;
            if parsed.iter().any(|p| p.text == pattern.text) {
                return Err(Error::syntax(format!("pattern '{}' appears twice", pattern.text)));
            }
            parsed.push(pattern);
        }
        parsed.sort_by(|a, b| a.segs.len().cmp(&b.segs.len()).then_with(|| a.segs.cmp(&b.segs)));
        check_depth_names(&parsed)?;
        let mut plan = Plan { name, version, patterns: parsed, json: String::new() };
        plan.json = plan.render_json();
        Ok(plan)
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// The canonical JSON, version included.
    pub fn to_json(&self) -> &str {
        &self.json
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

    /// The canonical JSON of this plan (filled in by the JSON work; until
    /// then a stable placeholder made of the patterns and names).
    fn render_json(&self) -> String {
        let mut out = format!("{{\"version\":{},\"paths\":{{", self.version);
        for (i, p) in self.patterns.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!("{:?}:[", p.text));
            let names: Vec<String> = p.policies.iter().map(|(n, s)| format!("{:?}:{:?}", n, s)).collect();
            out.push_str(&names.join(","));
            out.push(']');
        }
        out.push_str("}}");
        out
    }
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
            None => Ok(current + 1),
        }
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
