//! The alert companion's configuration: SMTP, destinations (webhooks and
//! email) and the rules that route events to them. Pure: parsed from JSON
//! text (a file or the key `quota:alerts:config`), checked as a whole, with
//! one error naming the place. Secrets are never in it: only the names of the
//! environment variables that hold them.

use std::collections::BTreeMap;

use serde_json::{Map, Value as Json};

/// Event types a rule may name (README "Alerts and events").
pub const EVENT_TYPES: [&str; 8] =
    ["warning", "over", "reset", "rollover", "expired", "low", "grant_expired", "disallowed"];
pub const MAX_RULES: usize = 1000;
pub const MAX_DESTINATIONS: usize = 100;
pub const MAX_ADDRESSES: usize = 50;
/// The JSON text itself, at most (1 MiB).
pub const MAX_CONFIG_BYTES: usize = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq)]
/// How the SMTP connection is encrypted: not at all, upgraded with
/// STARTTLS, or TLS from the start (port 465).
pub enum Encryption {
    Plain,
    StartTls,
    Implicit,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Smtp {
    pub host: String,
    pub port: u16,
    pub tls: Encryption,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub from: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Webhook { url: String, secret_env: Option<String> },
    Email { to: Vec<String> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub name: String,
    pub target: Target,
    /// Attempts before the job goes to the dead letters.
    pub attempts: u32,
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
    pub timeout_ms: u64,
}

impl Destination {
    /// How long to wait after the `attempt`-th failure (1-based):
    /// `backoff_ms · 2^(attempt−1)`, at most `max_backoff_ms`.
    pub fn backoff(&self, attempt: u32) -> u64 {
        let shift = attempt.saturating_sub(1).min(40);
        self.backoff_ms.saturating_mul(1u64 << shift).min(self.max_backoff_ms)
    }

    pub fn kind(&self) -> &'static str {
        match self.target {
            Target::Webhook { .. } => "webhook",
            Target::Email { .. } => "email",
        }
    }

    /// Where it goes, for people: the URL or the addresses.
    pub fn address(&self) -> String {
        match &self.target {
            Target::Webhook { url, .. } => url.clone(),
            Target::Email { to } => to.join(", "),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub trees: String,
    /// `trees`, compiled.
    pub glob: Glob,
    pub path: String,
    /// Empty: every type.
    pub events: Vec<String>,
    pub policy: Option<String>,
    /// Empty: every threshold (warning events only).
    pub thresholds: Vec<u32>,
    pub to: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    pub smtp: Option<Smtp>,
    /// By name, in name order.
    pub destinations: BTreeMap<String, Destination>,
    pub rules: Vec<Rule>,
}

/// A field read from a JSON object, with the place for error messages.
struct Obj<'a> {
    at: String,
    map: &'a Map<String, Json>,
}

impl<'a> Obj<'a> {
    fn new(at: &str, v: &'a Json) -> Result<Obj<'a>, String> {
        match v {
            Json::Object(map) => Ok(Obj { at: at.to_string(), map }),
            _ => Err(format!("{at}: must be an object")),
        }
    }

    fn only(&self, known: &[&str]) -> Result<(), String> {
        for k in self.map.keys() {
            if k == "secret" || k == "password" {
                return Err(format!(
                    "{}.{k}: secrets come from the environment: give {k}_env, the name of a variable that holds it",
                    self.at
                ));
            }
            if !known.contains(&k.as_str()) {
                return Err(format!("{}: unknown field \"{k}\" (known: {})", self.at, known.join(", ")));
            }
        }
        Ok(())
    }

    fn place(&self, k: &str) -> String {
        format!("{}.{k}", self.at)
    }

    fn str(&self, k: &str) -> Result<Option<&'a str>, String> {
        match self.map.get(k) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("{}: must be a string", self.place(k))),
        }
    }

    fn int(&self, k: &str, lo: u64, hi: u64) -> Result<Option<u64>, String> {
        match self.map.get(k) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::Number(n)) => match n.as_u64() {
                Some(v) if (lo..=hi).contains(&v) => Ok(Some(v)),
                _ => Err(format!("{}: must be a whole number from {lo} to {hi} (got {n})", self.place(k))),
            },
            Some(_) => Err(format!("{}: must be a number", self.place(k))),
        }
    }

    /// A list of strings; a single string counts as a list of one.
    fn strings(&self, k: &str) -> Result<Option<Vec<String>>, String> {
        match self.map.get(k) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(vec![s.clone()])),
            Some(Json::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Json::String(s) => Ok(s.clone()),
                    _ => Err(format!("{}[{i}]: must be a string", self.place(k))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(format!("{}: must be a string or a list of strings", self.place(k))),
        }
    }
}

/// A name for a destination or a rule: 1–64 of `A-Z a-z 0-9 _ - .`.
fn check_name(at: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok { Ok(()) } else { Err(format!("{at}: a name is 1 to 64 of A-Z a-z 0-9 _ - . (got \"{name}\")")) }
}

/// The name of an environment variable: `[A-Za-z_][A-Za-z0-9_]*`, at most 128.
fn check_env_name(at: &str, name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let ok = name.len() <= 128
        && bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("{at}: the name of an environment variable, such as BILLING_HOOK_SECRET (got \"{name}\")"))
    }
}

/// An email address as SMTP takes it: `local@domain`, printable ASCII or
/// UTF-8 without spaces, angle brackets, commas or control characters.
fn check_address(at: &str, a: &str) -> Result<(), String> {
    let bad = |c: char| c.is_control() || c.is_whitespace() || "<>,;\"()[]\\".contains(c);
    let ok = a.len() <= 254
        && !a.chars().any(bad)
        && a.split_once('@').is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains('@'))
        // What the mail is sent with must take it too (no `a..b@x`, no `x.`).
        && a.parse::<lettre::Address>().is_ok();
    if ok { Ok(()) } else { Err(format!("{at}: not an email address (got \"{a}\")")) }
}

/// A `From` header: an address, or `Name <address>`.
fn check_from(at: &str, from: &str) -> Result<(), String> {
    if from.chars().any(char::is_control) {
        return Err(format!("{at}: must be one line"));
    }
    match from.rsplit_once('<') {
        Some((name, rest)) if rest.ends_with('>') => {
            if name.contains(['<', '>']) {
                return Err(format!("{at}: write it as Name <address> or address (got \"{from}\")"));
            }
            check_address(at, &rest[..rest.len() - 1])?;
            // A name with `,` `:` or `@` must be quoted: "Quota, Inc" <a@b>.
            from.parse::<lettre::message::Mailbox>().map(|_| ()).map_err(|_| {
                format!("{at}: put a name with , : @ or . in double quotes, as \"Quota, Inc\" <alerts@example.com> (got {from})")
            })
        }
        _ => check_address(at, from),
    }
}

/// A webhook URL: `http://` or `https://`, a host, no spaces or control
/// characters.
fn check_url(at: &str, url: &str) -> Result<(), String> {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    let ok = url.len() <= 2048
        && rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
        && !url.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok { Ok(()) } else { Err(format!("{at}: must be an http:// or https:// URL (got \"{url}\")")) }
}

fn smtp_of(v: &Json) -> Result<Smtp, String> {
    let o = Obj::new("smtp", v)?;
    o.only(&["host", "port", "tls", "username", "password_env", "from"])?;
    let host = o.str("host")?.ok_or("smtp.host: required (the mail server's name or address)")?;
    if host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("smtp.host: not a host name (got \"{host}\")"));
    }
    let tls = match o.str("tls")?.unwrap_or("none") {
        "none" => Encryption::Plain,
        "starttls" => Encryption::StartTls,
        "tls" => Encryption::Implicit,
        t => return Err(format!("smtp.tls: none, starttls or tls (got \"{t}\")")),
    };
    let default_port = match tls {
        Encryption::Plain => 25,
        Encryption::StartTls => 587,
        Encryption::Implicit => 465,
    };
    let port = o.int("port", 1, 65535)?.unwrap_or(default_port) as u16;
    let username = o.str("username")?.map(str::to_string);
    if username.as_ref().is_some_and(|u| u.is_empty() || u.chars().any(char::is_control)) {
        return Err("smtp.username: one line, not empty".to_string());
    }
    let password_env = o.str("password_env")?.map(str::to_string);
    if let Some(p) = &password_env {
        check_env_name("smtp.password_env", p)?;
    }
    if username.is_some() != password_env.is_some() {
        return Err("smtp: username and password_env go together".to_string());
    }
    let from = o.str("from")?.ok_or("smtp.from: required (such as quota <alerts@example.com>)")?.to_string();
    check_from("smtp.from", &from)?;
    Ok(Smtp { host: host.to_string(), port, tls, username, password_env, from })
}

fn destination_of(name: &str, v: &Json) -> Result<Destination, String> {
    let at = format!("destinations.{name}");
    check_name(&at, name)?;
    let o = Obj::new(&at, v)?;
    o.only(&["webhook", "secret_env", "email", "attempts", "backoff_ms", "max_backoff_ms", "timeout_ms"])?;
    let target = match (o.str("webhook")?, o.strings("email")?) {
        (Some(url), None) => {
            check_url(&o.place("webhook"), url)?;
            let secret_env = o.str("secret_env")?.map(str::to_string);
            if let Some(s) = &secret_env {
                check_env_name(&o.place("secret_env"), s)?;
            }
            Target::Webhook { url: url.to_string(), secret_env }
        }
        (None, Some(to)) => {
            if o.map.contains_key("secret_env") {
                return Err(format!("{at}.secret_env: only for a webhook"));
            }
            if to.is_empty() || to.len() > MAX_ADDRESSES {
                return Err(format!("{at}.email: 1 to {MAX_ADDRESSES} addresses (limit)"));
            }
            for (i, a) in to.iter().enumerate() {
                check_address(&format!("{at}.email[{i}]"), a)?;
            }
            Target::Email { to }
        }
        (Some(_), Some(_)) => return Err(format!("{at}: either webhook or email, not both")),
        (None, None) => return Err(format!("{at}: needs webhook (a URL) or email (addresses)")),
    };
    let attempts = o.int("attempts", 1, 100)?.unwrap_or(8) as u32;
    let backoff_ms = o.int("backoff_ms", 10, 3_600_000)?.unwrap_or(1000);
    let max_backoff_ms = o.int("max_backoff_ms", 10, 86_400_000)?.unwrap_or(300_000.max(backoff_ms));
    if max_backoff_ms < backoff_ms {
        return Err(format!("{at}.max_backoff_ms: must be at least backoff_ms ({backoff_ms})"));
    }
    let timeout_ms = o.int("timeout_ms", 100, 120_000)?.unwrap_or(10_000);
    Ok(Destination { name: name.to_string(), target, attempts, backoff_ms, max_backoff_ms, timeout_ms })
}

/// A path prefix: `/`, or `/a/b` (also written `a/b`, as QUOTA commands
/// print paths), kept as `/a/b` without a trailing slash.
fn check_path(at: &str, p: &str) -> Result<String, String> {
    let p = if p.starts_with('/') { p.to_string() } else { format!("/{p}") };
    let p = if p.len() > 1 { p.strip_suffix('/').unwrap_or(&p) } else { &p };
    if !p.starts_with('/') || p.contains("//") || p.len() > 1024 || p.chars().any(char::is_control) {
        return Err(format!("{at}: a path such as / or /team-a (got \"{p}\")"));
    }
    Ok(p.to_string())
}

fn rule_of(i: usize, v: &Json, destinations: &BTreeMap<String, Destination>) -> Result<Rule, String> {
    let at = format!("rules[{i}]");
    let o = Obj::new(&at, v)?;
    o.only(&["name", "trees", "path", "events", "policy", "thresholds", "to"])?;
    let name = o.str("name")?.ok_or(format!("{at}.name: required"))?.to_string();
    check_name(&o.place("name"), &name)?;
    let trees = o.str("trees")?.unwrap_or("*").to_string();
    if trees.is_empty() || trees.len() > 256 {
        return Err(format!("{at}.trees: a pattern such as * or user:* (1 to 256 bytes)"));
    }
    let path = check_path(&o.place("path"), o.str("path")?.unwrap_or("/"))?;
    let events = o.strings("events")?.unwrap_or_default();
    for (j, e) in events.iter().enumerate() {
        if !EVENT_TYPES.contains(&e.as_str()) {
            return Err(format!(
                "{at}.events[{j}]: not an event type (got \"{e}\"; types: {})",
                EVENT_TYPES.join(", ")
            ));
        }
    }
    let policy = o.str("policy")?.map(str::to_string);
    if policy.as_ref().is_some_and(|p| p.is_empty() || p.len() > 64) {
        return Err(format!("{at}.policy: a policy name (1 to 64 bytes)"));
    }
    let thresholds = match o.map.get("thresholds") {
        None | Some(Json::Null) => vec![],
        Some(Json::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(j, t)| match t.as_u64() {
                Some(t @ 1..=100) => Ok(t as u32),
                _ => Err(format!("{at}.thresholds[{j}]: a percentage from 1 to 100 (got {t})")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(format!("{at}.thresholds: a list of percentages, such as [80]")),
    };
    if !thresholds.is_empty() && !events.is_empty() && !events.iter().any(|e| e == "warning") {
        return Err(format!("{at}.thresholds: only warning events have a threshold: add \"warning\" to events"));
    }
    let to = o.strings("to")?.unwrap_or_default();
    if to.is_empty() {
        return Err(format!("{at}.to: required: the destinations to send to"));
    }
    for (j, d) in to.iter().enumerate() {
        if !destinations.contains_key(d) {
            return Err(format!("{at}.to[{j}]: no destination named \"{d}\""));
        }
    }
    let glob = Glob::new(trees.as_bytes());
    Ok(Rule { name, trees, glob, path, events, policy, thresholds, to })
}

impl Config {
    /// Parses and checks a whole configuration.
    pub fn parse(text: &str) -> Result<Config, String> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(format!("limit: the configuration is {} bytes, at most {MAX_CONFIG_BYTES}", text.len()));
        }
        let v: Json = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let o = Obj::new("the configuration", &v)?;
        o.only(&["smtp", "destinations", "rules"])?;
        let smtp = o.map.get("smtp").filter(|v| !v.is_null()).map(smtp_of).transpose()?;
        let mut destinations = BTreeMap::new();
        match o.map.get("destinations") {
            None | Some(Json::Null) => {}
            Some(Json::Object(m)) => {
                if m.len() > MAX_DESTINATIONS {
                    return Err(format!("destinations: limit: at most {MAX_DESTINATIONS} (got {})", m.len()));
                }
                for (name, d) in m {
                    destinations.insert(name.clone(), destination_of(name, d)?);
                }
            }
            Some(_) => return Err("destinations: must be an object of destinations by name".to_string()),
        }
        if smtp.is_none()
            && let Some(d) = destinations.values().find(|d| matches!(d.target, Target::Email { .. }))
        {
            return Err(format!("destinations.{}: email needs an smtp section (the mail server)", d.name));
        }
        let mut rules: Vec<Rule> = Vec::new();
        match o.map.get("rules") {
            None | Some(Json::Null) => {}
            Some(Json::Array(items)) => {
                if items.len() > MAX_RULES {
                    return Err(format!("rules: limit: at most {MAX_RULES} (got {})", items.len()));
                }
                for (i, r) in items.iter().enumerate() {
                    let rule = rule_of(i, r, &destinations)?;
                    if rules.iter().any(|x| x.name == rule.name) {
                        return Err(format!("rules[{i}].name: \"{}\" is taken by an earlier rule", rule.name));
                    }
                    rules.push(rule);
                }
            }
            Some(_) => return Err("rules: must be a list".to_string()),
        }
        Ok(Config { smtp, destinations, rules })
    }

    /// The environment variables the configuration names (secrets), sorted.
    pub fn env_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .destinations
            .values()
            .filter_map(|d| match &d.target {
                Target::Webhook { secret_env, .. } => secret_env.clone(),
                Target::Email { .. } => None,
            })
            .chain(self.smtp.as_ref().and_then(|s| s.password_env.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The rules whose `trees` pattern takes `tree` (their positions). A
    /// pattern costs up to its length times the name's to match, so the
    /// companion asks once per tree and configuration, not per event.
    pub fn rules_for(&self, tree: &str) -> Vec<usize> {
        (0..self.rules.len()).filter(|i| self.rules[*i].glob.matches(tree.as_bytes())).collect()
    }

    /// Where an event of `tree` goes: each destination once, with the names
    /// of the rules that send it there, in rule order; destinations in the
    /// order their first rule names them.
    #[cfg(test)]
    pub fn routes(&self, tree: &str, event: &Json) -> Vec<(String, Vec<String>)> {
        self.routes_among(&self.rules_for(tree), event)
    }

    /// [`Config::routes`] among the rules [`Config::rules_for`] the tree gave.
    pub fn routes_among(&self, rules: &[usize], event: &Json) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for rule in rules.iter().filter_map(|i| self.rules.get(*i)).filter(|r| r.matches_event(event)) {
            for d in &rule.to {
                match out.iter_mut().find(|(name, _)| name == d) {
                    Some((_, rules)) => rules.push(rule.name.clone()),
                    None => out.push((d.clone(), vec![rule.name.clone()])),
                }
            }
        }
        out
    }
}

impl Rule {
    /// Whether the rule takes the event, its tree pattern aside.
    pub fn matches_event(&self, event: &Json) -> bool {
        let field = |k: &str| event.get(k).and_then(Json::as_str);
        let kind = field("type").unwrap_or("");
        if !self.events.is_empty() && !self.events.iter().any(|e| e == kind) {
            return false;
        }
        if self.path != "/" {
            // Events name a node as QUOTA commands print it: `/` for the
            // root, `team/dev` below it.
            let path = field("path").unwrap_or("");
            let path = path.strip_prefix('/').unwrap_or(path);
            let prefix = &self.path[1..];
            let under = path.strip_prefix(prefix).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if !under {
                return false;
            }
        }
        if let Some(p) = &self.policy
            && field("policy") != Some(p.as_str())
        {
            return false;
        }
        if !self.thresholds.is_empty() && kind == "warning" {
            let t = event.get("threshold").and_then(|t| t.as_u64().or_else(|| t.as_str()?.parse().ok()));
            if !t.is_some_and(|t| self.thresholds.iter().any(|x| u64::from(*x) == t)) {
                return false;
            }
        }
        true
    }
}

/// A tree pattern, as Redis's glob (`KEYS`, `SCAN MATCH`) reads it: `*`,
/// `?`, `[abc]`, `[^a]`, `[a-z]`, `\\x` for a literal x, and a `[` left open
/// as a class of the rest of the pattern. Compiled to a set of byte sets and
/// matched as an automaton, a bit per position in the pattern: the time is
/// the name's length times the pattern's in 64ths, whatever both hold (the
/// backtracking way takes up to their product).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    /// Positions 0..=tokens, in words of 64.
    words: usize,
    tokens: usize,
    /// The positions that are a `*`.
    star: Vec<u64>,
    /// For each byte, the positions whose token takes it (`words` each).
    accept: Vec<u64>,
    /// The pattern is `*` (or stars only): everything matches.
    all: bool,
}

/// A set of bytes.
type Bytes = [u64; 4];

fn add(set: &mut Bytes, b: u8) {
    set[usize::from(b >> 6)] |= 1u64 << (b & 63);
}

fn has(set: &Bytes, b: u8) -> bool {
    set[usize::from(b >> 6)] & (1u64 << (b & 63)) != 0
}

impl Glob {
    /// Reads a pattern as Redis's `stringmatchlen` does.
    pub fn new(p: &[u8]) -> Glob {
        // None: a `*`; Some: the bytes one position takes.
        let mut tokens: Vec<Option<Bytes>> = Vec::new();
        let mut i = 0;
        while i < p.len() {
            match p[i] {
                b'*' => {
                    if tokens.last() != Some(&None) {
                        tokens.push(None);
                    }
                    i += 1;
                }
                b'?' => {
                    tokens.push(Some([u64::MAX; 4]));
                    i += 1;
                }
                b'[' => {
                    i += 1;
                    let not = p.get(i) == Some(&b'^');
                    if not {
                        i += 1;
                    }
                    let mut set = [0u64; 4];
                    loop {
                        if i >= p.len() {
                            break; // open: the class is the rest of the pattern
                        }
                        if p[i] == b'\\' && p.len() - i >= 2 {
                            i += 1;
                            add(&mut set, p[i]);
                        } else if p[i] == b']' {
                            i += 1;
                            break;
                        } else if p.len() - i >= 3 && p[i + 1] == b'-' {
                            let (lo, hi) = (p[i].min(p[i + 2]), p[i].max(p[i + 2]));
                            for b in lo..=hi {
                                add(&mut set, b);
                            }
                            i += 2;
                        } else {
                            add(&mut set, p[i]);
                        }
                        i += 1;
                    }
                    if not {
                        set = set.map(|w| !w);
                    }
                    tokens.push(Some(set));
                }
                c => {
                    // `\\x` is x; a `\\` at the end is itself.
                    let c = if c == b'\\' && p.len() - i >= 2 {
                        i += 1;
                        p[i]
                    } else {
                        c
                    };
                    let mut set = [0u64; 4];
                    add(&mut set, c);
                    tokens.push(Some(set));
                    i += 1;
                }
            }
        }
        let n = tokens.len();
        let words = (n + 1).div_ceil(64);
        let mut star = vec![0u64; words];
        let mut accept = vec![0u64; 256 * words];
        for (pos, t) in tokens.iter().enumerate() {
            let bit = 1u64 << (pos % 64);
            match t {
                None => star[pos / 64] |= bit,
                Some(set) => {
                    for b in 0..=255u8 {
                        if has(set, b) {
                            accept[usize::from(b) * words + pos / 64] |= bit;
                        }
                    }
                }
            }
        }
        Glob { words, tokens: n, star, accept, all: n > 0 && tokens.iter().all(Option::is_none) }
    }

    pub fn matches(&self, text: &[u8]) -> bool {
        // Redis matches an empty name with the empty pattern only (not `*`).
        if text.is_empty() {
            return self.tokens == 0;
        }
        if self.all {
            return true;
        }
        let w = self.words;
        let mut cur = vec![0u64; w];
        cur[0] = 1;
        self.close(&mut cur);
        let mut next = vec![0u64; w];
        for &c in text {
            let acc = &self.accept[usize::from(c) * w..(usize::from(c) + 1) * w];
            let mut carry = 0;
            let mut any = 0;
            for k in 0..w {
                let a = cur[k] & acc[k];
                next[k] = (a << 1) | carry | (cur[k] & self.star[k]);
                carry = a >> 63;
                any |= next[k];
            }
            if any == 0 {
                return false;
            }
            self.close(&mut next);
            std::mem::swap(&mut cur, &mut next);
        }
        cur[self.tokens / 64] & (1u64 << (self.tokens % 64)) != 0
    }

    /// A `*` may match nothing: from a star's position, the next one too.
    /// (Stars never follow each other: one step is enough.)
    fn close(&self, set: &mut [u64]) {
        let mut carry = 0;
        for (k, word) in set.iter_mut().enumerate() {
            let a = *word & self.star[k];
            *word |= (a << 1) | carry;
            carry = a >> 63;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GOOD: &str = r#"{
      "smtp": {"host": "127.0.0.1", "port": 2525, "from": "quota <alerts@example.com>"},
      "destinations": {
        "billing": {"webhook": "https://billing.example.com/hook", "secret_env": "BILLING_SECRET", "attempts": 3},
        "ops": {"email": ["ops@example.com"]}
      },
      "rules": [
        {"name": "at-80", "events": ["warning"], "thresholds": [80], "to": ["ops"]},
        {"name": "wallet", "trees": "user:*", "events": ["low"], "policy": "wallet", "to": ["billing", "ops"]},
        {"name": "team-a", "path": "/team-a/", "to": "ops"}
      ]
    }"#;

    #[test]
    fn a_good_config_parses_with_defaults() {
        let c = Config::parse(GOOD).unwrap();
        let b = &c.destinations["billing"];
        assert_eq!((b.attempts, b.backoff_ms, b.max_backoff_ms, b.timeout_ms), (3, 1000, 300_000, 10_000));
        assert_eq!((b.backoff(1), b.backoff(2), b.backoff(4), b.backoff(99)), (1000, 2000, 8000, 300_000));
        assert_eq!(c.smtp.as_ref().unwrap().tls, Encryption::Plain);
        assert_eq!(c.rules[2].path, "/team-a");
        let bare = r#"{"destinations": {"b": {"webhook": "http://x"}}, "rules": [{"name": "r", "path": "team-a", "to": "b"}]}"#;
        assert_eq!(Config::parse(bare).unwrap().rules[0].path, "/team-a");
        let quoted = r#"{"smtp": {"host": "h", "from": "\"Quota, Inc\" <alerts@example.com>"}}"#;
        assert!(Config::parse(quoted).is_ok());
        assert_eq!(c.rules[2].trees, "*");
        assert_eq!(Config::parse("{}").unwrap(), Config::default());
    }

    #[test]
    fn events_go_to_each_destination_once() {
        let c = Config::parse(GOOD).unwrap();
        let low = json!({"type": "low", "path": "/", "policy": "wallet"});
        assert_eq!(
            c.routes("user:42", &low),
            vec![("billing".to_string(), vec!["wallet".to_string()]), ("ops".to_string(), vec!["wallet".to_string()])]
        );
        assert!(c.routes("acme", &low).is_empty());
        let w80 = json!({"type": "warning", "path": "team-a/x", "policy": "m", "threshold": 80});
        assert_eq!(c.routes("acme", &w80), vec![("ops".to_string(), vec!["at-80".to_string(), "team-a".to_string()])]);
        let w90 = json!({"type": "warning", "path": "team-ab", "policy": "m", "threshold": 90});
        assert!(c.routes("acme", &w90).is_empty());
        let w90a = json!({"type": "warning", "path": "team-a", "threshold": 90});
        assert_eq!(c.routes("acme", &w90a).len(), 1);
    }

    #[test]
    fn bad_configs_name_the_place() {
        let rows: &[(&str, &str)] = &[
            ("[]", "the configuration: must be an object"),
            ("{\"rule\": []}", "unknown field \"rule\""),
            (r#"{"destinations": {"b": {"webhook": "ftp://x"}}}"#, "destinations.b.webhook: must be an http"),
            (r#"{"destinations": {"b": {"webhook": "http://x", "secret": "s"}}}"#, "secrets come from the environment"),
            (r#"{"destinations": {"b": {"webhook": "http://x", "secret_env": "a-b"}}}"#, "environment variable"),
            (r#"{"destinations": {"b": {"email": ["ops@x"]}}}"#, "email needs an smtp section"),
            (r#"{"destinations": {"b c": {"webhook": "http://x"}}}"#, "a name is 1 to 64"),
            (
                r#"{"destinations": {"b": {"webhook": "http://x", "attempts": 0}}}"#,
                "attempts: must be a whole number from 1 to 100",
            ),
            (
                r#"{"destinations": {"b": {"webhook": "http://x", "backoff_ms": 5000, "max_backoff_ms": 100}}}"#,
                "at least backoff_ms",
            ),
            (r#"{"rules": [{"name": "r", "to": ["x"]}]}"#, "rules[0].to[0]: no destination named \"x\""),
            (r#"{"rules": [{"name": "r"}]}"#, "rules[0].to: required"),
            (
                r#"{"destinations": {"b": {"webhook": "http://x"}}, "rules": [{"name": "r", "events": ["warn"], "to": "b"}]}"#,
                "not an event type",
            ),
            (
                r#"{"destinations": {"b": {"webhook": "http://x"}}, "rules": [{"name": "r", "events": ["low"], "thresholds": [80], "to": "b"}]}"#,
                "only warning events",
            ),
            (
                r#"{"destinations": {"b": {"webhook": "http://x"}}, "rules": [{"name": "r", "path": "a//b", "to": "b"}]}"#,
                "rules[0].path",
            ),
            (
                r#"{"destinations": {"b": {"webhook": "http://x"}}, "rules": [{"name": "r", "to": "b"}, {"name": "r", "to": "b"}]}"#,
                "taken by an earlier rule",
            ),
            (r#"{"smtp": {"host": "h", "from": "a@b", "username": "u"}}"#, "username and password_env go together"),
            (r#"{"smtp": {"host": "h", "from": "x\r\nBcc: y@z"}}"#, "smtp.from: must be one line"),
            (r#"{"smtp": {"host": "h", "from": "a@b", "tls": "ssl"}}"#, "smtp.tls"),
            (r#"{"smtp": {"host": "h", "from": "Quota, Inc <a@b.com>"}}"#, "in double quotes"),
            (
                r#"{"smtp": {"host": "h", "from": "a@b"}, "destinations": {"o": {"email": ["a..b@example.com"]}}}"#,
                "destinations.o.email[0]: not an email address",
            ),
            (
                r#"{"smtp": {"host": "h", "from": "a@b"}, "destinations": {"o": {"email": ["ops@example.com."]}}}"#,
                "not an email address",
            ),
        ];
        for (text, want) in rows {
            let e = Config::parse(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn globs_are_redis_globs() {
        let rows: &[(&str, &str, bool)] = &[
            ("*", "", false),
            ("*", "acme", true),
            ("user:*", "user:42", true),
            ("user:*", "users:42", false),
            ("u?er:[0-9]*", "user:42", true),
            ("[^a]cme", "acme", false),
            ("[^a]cme", "bcme", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("\\a", "\\", false),
            ("x\\", "x\\", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            // A `[` left open is a class of the rest, as in Redis (KEYS "[abc" finds a).
            ("[abc", "a", true),
            ("[abc", "[abc", false),
            ("[]a", "a", false),
            ("[z-a]", "m", true),
            ("", "", true),
            ("", "a", false),
            ("**a**", "xa", true),
        ];
        for (p, t, want) in rows {
            assert_eq!(Glob::new(p.as_bytes()).matches(t.as_bytes()), *want, "{p} {t}");
            assert_eq!(redis_glob(p.as_bytes(), t.as_bytes()), *want, "reference: {p} {t}");
        }
        // The hostile case of review22b: fast, whatever the lengths.
        let long = format!("*{}b", "a".repeat(254));
        let started = std::time::Instant::now();
        let g = Glob::new(long.as_bytes());
        for _ in 0..100 {
            assert!(!g.matches("a".repeat(20_000).as_bytes()));
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    }

    /// Redis's `stringmatchlen` (util.c), case-sensitive, as it is written:
    /// the reference the automaton is checked against.
    fn redis_glob(p: &[u8], s: &[u8]) -> bool {
        let (mut p, mut s) = (p, s);
        while !p.is_empty() && !s.is_empty() {
            match p[0] {
                b'*' => {
                    while p.len() > 1 && p[1] == b'*' {
                        p = &p[1..];
                    }
                    if p.len() == 1 {
                        return true;
                    }
                    while !s.is_empty() {
                        if redis_glob(&p[1..], s) {
                            return true;
                        }
                        s = &s[1..];
                    }
                    return false;
                }
                b'?' => s = &s[1..],
                b'[' => {
                    p = &p[1..];
                    let not = p.first() == Some(&b'^');
                    if not {
                        p = &p[1..];
                    }
                    let mut hit = false;
                    loop {
                        if p.first() == Some(&b'\\') && p.len() >= 2 {
                            p = &p[1..];
                            hit |= p[0] == s[0];
                        } else if p.first() == Some(&b']') {
                            break;
                        } else if p.is_empty() {
                            // Redis steps back so that the step after the loop ends the pattern.
                            break;
                        } else if p.len() >= 3 && p[1] == b'-' {
                            let (lo, hi) = (p[0].min(p[2]), p[0].max(p[2]));
                            hit |= (lo..=hi).contains(&s[0]);
                            p = &p[2..];
                        } else {
                            hit |= p[0] == s[0];
                        }
                        p = &p[1..];
                    }
                    if hit == not {
                        return false;
                    }
                    s = &s[1..];
                    if p.is_empty() {
                        // (the open class ended the pattern)
                        return s.is_empty();
                    }
                }
                b'\\' if p.len() >= 2 => {
                    p = &p[1..];
                    if p[0] != s[0] {
                        return false;
                    }
                    s = &s[1..];
                }
                c => {
                    if c != s[0] {
                        return false;
                    }
                    s = &s[1..];
                }
            }
            p = &p[1..];
            if s.is_empty() {
                while p.first() == Some(&b'*') {
                    p = &p[1..];
                }
                break;
            }
        }
        p.is_empty() && s.is_empty()
    }

    #[test]
    fn the_automaton_agrees_with_redis_on_random_patterns() {
        // A small alphabet, so patterns and names meet often.
        let alphabet = b"ab[]^-*?\\";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for _ in 0..50_000 {
            let p: Vec<u8> = (0..next(8)).map(|_| alphabet[next(alphabet.len())]).collect();
            let t: Vec<u8> = (0..next(7)).map(|_| b"ab[]-^"[next(6)]).collect();
            assert_eq!(
                Glob::new(&p).matches(&t),
                redis_glob(&p, &t),
                "{:?} {:?}",
                String::from_utf8_lossy(&p),
                String::from_utf8_lossy(&t)
            );
        }
    }
}
