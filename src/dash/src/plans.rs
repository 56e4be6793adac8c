//! The plan book: list the plans, make one, read one as a table of its
//! policies and as JSON to edit, delete it; see which trees follow it and
//! make a tree follow it (or no plan). Every write is one command:
//! `QUOTA.PLAN SET|DEL`, `QUOTA.ASSIGN`.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::quota::{Cmd, QuotaError};
use crate::web::{self, App, Page, Section, html, refused, text, written};

/// Trees looked at, at most, to fill one page of "trees that follow it"
/// (each one is a `QUOTA.GET key /`); the page offers to look further.
const TREES_A_PAGE: usize = 1000;
/// Trees asked of one round of `quota.trees` (which itself looks at no more
/// than its budget of keys a round).
const TREES_A_ROUND: usize = 200;
/// Rounds a page, so a keyspace of many keys and few trees answers in time.
const ROUNDS_A_PAGE: usize = 5;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/plans", get(list).post(create))
        .route("/plans/{name}", get(show).post(save))
        .route("/plans/{name}/delete", post(delete))
        .route("/plans/{name}/assign", post(assign))
}

/// `/plans/<name>`, the name encoded as one path segment.
pub fn plan_url(name: &str) -> String {
    format!("/plans/{}", web::enc(name))
}

// ----- JSON for people ---------------------------------------------------------

/// JSON as its text says it, for laying out again without reading any number
/// (a limit stays exactly as written).
#[derive(Debug, PartialEq)]
enum Raw {
    /// A string (with its quotes and escapes), number, true, false or null.
    Scalar(String),
    Array(Vec<Raw>),
    /// Keys with their quotes and escapes.
    Object(Vec<(String, Raw)>),
}

struct Reader<'a> {
    s: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn skip_space(&mut self) {
        while self.at < self.s.len() && matches!(self.s[self.at], b' ' | b'\t' | b'\n' | b'\r') {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_space();
        self.s.get(self.at).copied()
    }

    fn text(&self, from: usize) -> Option<String> {
        std::str::from_utf8(&self.s[from..self.at]).ok().map(str::to_string)
    }

    fn string(&mut self) -> Option<String> {
        let from = self.at;
        self.at += 1;
        loop {
            match self.s.get(self.at)? {
                b'\\' => self.at += 2,
                b'"' => {
                    self.at += 1;
                    return self.text(from);
                }
                _ => self.at += 1,
            }
        }
    }

    fn value(&mut self, depth: usize) -> Option<Raw> {
        if depth > 64 {
            return None;
        }
        match self.peek()? {
            b'{' => {
                self.at += 1;
                let mut fields = Vec::new();
                if self.peek()? == b'}' {
                    self.at += 1;
                    return Some(Raw::Object(fields));
                }
                loop {
                    if self.peek()? != b'"' {
                        return None;
                    }
                    let key = self.string()?;
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.at += 1;
                    fields.push((key, self.value(depth + 1)?));
                    match self.peek()? {
                        b',' => self.at += 1,
                        b'}' => {
                            self.at += 1;
                            return Some(Raw::Object(fields));
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                if self.peek()? == b']' {
                    self.at += 1;
                    return Some(Raw::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    match self.peek()? {
                        b',' => self.at += 1,
                        b']' => {
                            self.at += 1;
                            return Some(Raw::Array(items));
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(Raw::Scalar),
            _ => {
                let from = self.at;
                while self.at < self.s.len()
                    && (self.s[self.at].is_ascii_alphanumeric() || matches!(self.s[self.at], b'-' | b'+' | b'.'))
                {
                    self.at += 1;
                }
                if self.at == from {
                    return None;
                }
                self.text(from).map(Raw::Scalar)
            }
        }
    }
}

fn read_raw(text: &str) -> Option<Raw> {
    let mut r = Reader { s: text.as_bytes(), at: 0 };
    let v = r.value(0)?;
    r.skip_space();
    (r.at == r.s.len()).then_some(v)
}

/// An object or array this short, of scalars only, stays on one line.
const INLINE: usize = 72;

fn inline(v: &Raw) -> Option<String> {
    match v {
        Raw::Scalar(s) => Some(s.clone()),
        Raw::Array(items) => {
            let parts: Option<Vec<String>> =
                items.iter().map(|i| if let Raw::Scalar(s) = i { Some(s.clone()) } else { None }).collect();
            Some(format!("[{}]", parts?.join(", ")))
        }
        Raw::Object(fields) if fields.is_empty() => Some("{}".to_string()),
        Raw::Object(fields) => {
            // Scalars and lists of scalars only (an empty object is one).
            let parts: Option<Vec<String>> = fields
                .iter()
                .map(|(k, v)| match v {
                    Raw::Object(f) if !f.is_empty() => None,
                    v => inline(v).map(|s| format!("{k}: {s}")),
                })
                .collect();
            let line = format!("{{{}}}", parts?.join(", "));
            (line.len() <= INLINE).then_some(line)
        }
    }
}

fn lay_out(v: &Raw, indent: usize, out: &mut String) {
    if let Some(line) = inline(v) {
        out.push_str(&line);
        return;
    }
    let pad = "  ".repeat(indent + 1);
    let (open, close) = if matches!(v, Raw::Array(_)) { ('[', ']') } else { ('{', '}') };
    out.push(open);
    let mut first = true;
    let mut item = |out: &mut String, key: Option<&str>, v: &Raw| {
        out.push_str(if first { "\n" } else { ",\n" });
        first = false;
        out.push_str(&pad);
        if let Some(k) = key {
            out.push_str(k);
            out.push_str(": ");
        }
        lay_out(v, indent + 1, out);
    };
    match v {
        Raw::Array(items) => items.iter().for_each(|i| item(out, None, i)),
        Raw::Object(fields) => fields.iter().for_each(|(k, v)| item(out, Some(k), v)),
        Raw::Scalar(_) => {}
    }
    out.push('\n');
    out.push_str(&"  ".repeat(indent));
    out.push(close);
}

/// JSON laid out for reading and editing: one field a line, short lists
/// and small objects on one line; every value exactly as written (numbers
/// are never read). Text that is not JSON comes back as it is.
pub fn pretty(json: &str) -> String {
    match read_raw(json) {
        Some(v) => {
            let mut out = String::new();
            lay_out(&v, 0, &mut out);
            out
        }
        None => json.to_string(),
    }
}

/// Lines a textarea shows for `json`: all of it, up to 40.
pub fn rows_for(json: &str) -> usize {
    (json.lines().count() + 1).clamp(6, 40)
}

/// A plan's canonical JSON split into its version and the rest, laid out
/// to edit: saving it without a version takes the next one.
pub fn editable(json: &str) -> (Option<String>, String) {
    match read_raw(json) {
        Some(Raw::Object(fields)) => {
            let mut version = None;
            let rest: Vec<(String, Raw)> = fields
                .into_iter()
                .filter_map(|(k, v)| match (k.as_str(), v) {
                    ("\"version\"", Raw::Scalar(s)) => {
                        version = Some(s);
                        None
                    }
                    (_, v) => Some((k, v)),
                })
                .collect();
            let mut out = String::new();
            lay_out(&Raw::Object(rest), 0, &mut out);
            (version, out)
        }
        _ => (None, json.to_string()),
    }
}

// ----- a plan as a table -------------------------------------------------------

/// One policy of a plan, as the table shows it.
#[derive(Debug, PartialEq)]
pub struct PolicyRow {
    pub pattern: String,
    pub policy: String,
    pub metric: String,
    pub limit: String,
    pub window: String,
    pub mode: String,
    pub warn: String,
    pub rollover: String,
    /// `service` or `service/model`, the requests the policy counts.
    pub filter: String,
    /// Fields this page does not know, `name: value`.
    pub other: String,
}

/// A field as text: strings as they are, numbers as written, lists joined.
fn field(v: &Json, name: &str) -> String {
    match v.get(name) {
        Some(Json::Array(items)) => {
            items.iter().map(|i| i.as_str().map_or(i.to_string(), str::to_string)).collect::<Vec<_>>().join(", ")
        }
        _ => text(v, name),
    }
}

const KNOWN: [&str; 10] = ["metric", "limit", "window", "anchor", "tz", "mode", "warn", "rollover", "service", "model"];

/// Every policy of a plan (`{"paths": {pattern: {policy: {…}}}}`), pattern
/// by pattern in the plan's order.
pub fn policy_rows(plan: &Json) -> Vec<PolicyRow> {
    let mut rows = Vec::new();
    let Some(paths) = plan.get("paths").and_then(Json::as_object) else {
        return rows;
    };
    for (pattern, policies) in paths {
        let Some(policies) = policies.as_object() else {
            continue;
        };
        for (policy, p) in policies {
            let mut window = field(p, "window");
            if window.is_empty() {
                window = "none".to_string();
            }
            let anchor = field(p, "anchor");
            if !anchor.is_empty() && anchor != "1" {
                window = format!("{window} (anchor {anchor})");
            }
            let tz = field(p, "tz");
            if !tz.is_empty() {
                window = format!("{window} in {tz}");
            }
            let warn = field(p, "warn");
            let (service, model) = (field(p, "service"), field(p, "model"));
            let filter = match (service.is_empty(), model.is_empty()) {
                (true, _) => String::new(),
                (false, true) => service,
                (false, false) => format!("{service}/{model}"),
            };
            let other = p
                .as_object()
                .map(|o| {
                    o.iter()
                        .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
                        .map(|(k, _)| format!("{k}: {}", field(p, k)))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            rows.push(PolicyRow {
                pattern: pattern.clone(),
                policy: policy.clone(),
                metric: field(p, "metric"),
                limit: field(p, "limit"),
                window,
                mode: field(p, "mode"),
                warn: if warn.is_empty() { warn } else { format!("{warn} %") },
                rollover: field(p, "rollover"),
                filter,
                other,
            });
        }
    }
    rows
}

// ----- the list ----------------------------------------------------------------

pub struct PlanLine {
    pub name: String,
    pub url: String,
    pub version: String,
    pub patterns: usize,
    pub policies: usize,
}

#[derive(Template)]
#[template(path = "plans.html")]
struct PlansPage {
    page: Page,
    plans: Vec<PlanLine>,
    error: Option<String>,
}

fn names_of(reply: &Json) -> Vec<String> {
    reply.as_array().map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect()).unwrap_or_default()
}

async fn list(State(app): State<App>, uri: Uri) -> Response {
    let page = Page::new(&app, "Plans", Section::Plans, &uri);
    let names = match app.quota.call(Cmd::PlanList, None, &[]).await {
        Ok(reply) => names_of(&reply),
        Err(e) => return html(&PlansPage { page, plans: vec![], error: Some(e.message) }),
    };
    let mut plans = Vec::with_capacity(names.len());
    let got = app.quota.call_each(Cmd::PlanGet, names.iter().map(|n| (None, vec![n.clone()])).collect()).await;
    for (name, reply) in names.iter().zip(got) {
        let plan: Json =
            reply.ok().and_then(|r| r.as_str().and_then(|s| serde_json::from_str(s).ok())).unwrap_or_default();
        let rows = policy_rows(&plan);
        plans.push(PlanLine {
            url: plan_url(name),
            version: text(&plan, "version"),
            patterns: plan.get("paths").and_then(Json::as_object).map_or(0, |p| p.len()),
            policies: rows.len(),
            name: name.clone(),
        });
    }
    html(&PlansPage { page, plans, error: None })
}

#[derive(Deserialize)]
pub struct NewPlan {
    #[serde(default)]
    name: String,
    #[serde(default)]
    json: String,
}

/// `QUOTA.PLAN SET` of a name the book does not have yet (a new plan never
/// replaces one: that is the plan's own page).
async fn create(State(app): State<App>, headers: HeaderMap, axum::Form(f): axum::Form<NewPlan>) -> Response {
    let name = f.name.trim();
    let result = async {
        if name.is_empty() {
            return Err(refused("give the plan a name, such as starter"));
        }
        if f.json.trim().is_empty() {
            return Err(refused("give the plan's JSON, such as {\"paths\": {}}"));
        }
        match app.quota.call(Cmd::PlanGet, None, &[name]).await {
            Ok(_) => return Err(refused(format!("a plan named {name} already exists: open it to change it"))),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let version = app.quota.call(Cmd::PlanSet, None, &[name, &f.json]).await?;
        Ok(format!("plan {name} created (version {})", web::value_text(&version)))
    }
    .await;
    written(result, "/plans", &headers)
}

// ----- one plan ----------------------------------------------------------------

pub struct Follower {
    pub key: String,
    pub url: String,
    pub status: String,
    pub class: &'static str,
    pub headline: String,
    pub version: String,
    pub missing: bool,
}

#[derive(Template)]
#[template(path = "plan.html")]
struct PlanPage {
    page: Page,
    name: String,
    url: String,
    /// None when the book has no such plan (trees may still follow it).
    version: Option<String>,
    rows: Vec<PolicyRow>,
    json: String,
    missing: bool,
    error: Option<String>,
    followers: Vec<Follower>,
    looked: usize,
    /// Where to look further for followers.
    further: Option<String>,
    followers_error: Option<String>,
}

#[derive(Deserialize)]
pub struct PlanQuery {
    #[serde(default)]
    cursor: Option<String>,
}

/// The trees that follow `name` among the next trees from `cursor`: looks at
/// [`TREES_A_PAGE`] trees at most. Returns the followers, how many trees were
/// looked at, and the cursor to go on from (None at the end).
async fn followers(app: &App, name: &str, cursor: &str) -> Result<(Vec<Follower>, usize, Option<String>), QuotaError> {
    let mut cursor = cursor.to_string();
    let mut found = Vec::new();
    let mut looked = 0;
    for round in 1.. {
        let (keys, next) = app.quota.trees("*", &cursor, TREES_A_ROUND).await?;
        looked += keys.len();
        let roots = app
            .quota
            .call_each(Cmd::Get, keys.iter().map(|k| (Some(k.clone()), vec!["/".to_string()])).collect())
            .await;
        for (key, root) in keys.iter().zip(roots) {
            let Ok(root) = root else { continue };
            if root.get("plan").and_then(Json::as_str) != Some(name) {
                continue;
            }
            let status = text(&root, "status");
            found.push(Follower {
                key: key.clone(),
                url: web::tree_url(key),
                class: web::status_class(&status),
                headline: crate::trees::headline(&root),
                version: text(&root, "plan_version"),
                missing: text(&root, "plan_missing") == "1",
                status,
            });
        }
        cursor = next;
        if cursor == "0" || looked >= TREES_A_PAGE || round >= ROUNDS_A_PAGE {
            break;
        }
    }
    Ok((found, looked, (cursor != "0").then_some(cursor)))
}

async fn show(State(app): State<App>, uri: Uri, Path(name): Path<String>, Query(q): Query<PlanQuery>) -> Response {
    let page = Page::new(&app, format!("Plan {name}"), Section::Plans, &uri);
    let url = plan_url(&name);
    let (mut version, mut rows, mut json, mut missing, mut error) = (None, vec![], String::new(), false, None);
    match app.quota.call(Cmd::PlanGet, None, &[&name]).await {
        Ok(reply) => {
            let canonical = web::value_text(&reply);
            let plan: Json = serde_json::from_str(&canonical).unwrap_or_default();
            rows = policy_rows(&plan);
            let (v, rest) = editable(&canonical);
            version = v;
            json = rest;
        }
        Err(e) if e.is_not_found() => missing = true,
        // `none` is QUOTA.ASSIGN's word for no plan: never a plan.
        Err(_) if name.trim().eq_ignore_ascii_case("none") => missing = true,
        Err(e) => error = Some(e.message),
    }
    let cursor = q.cursor.unwrap_or_else(|| "0".to_string());
    let (followers, looked, further, followers_error) = match followers(&app, &name, &cursor).await {
        Ok((f, looked, next)) => (f, looked, next.map(|c| format!("{url}?cursor={}#followers", web::enc(&c))), None),
        Err(e) => (vec![], 0, None, Some(e.message)),
    };
    let mut r = html(&PlanPage {
        page,
        name,
        url,
        version,
        rows,
        json,
        missing,
        error,
        followers,
        looked,
        further,
        followers_error,
    });
    if missing {
        *r.status_mut() = StatusCode::NOT_FOUND;
    }
    r
}

#[derive(Deserialize)]
pub struct SavePlan {
    #[serde(default)]
    json: String,
    /// The version the page showed, to say when a save changed nothing.
    #[serde(default)]
    version: String,
}

/// A plan's JSON without its top-level `version`, as its text says it (None
/// when it is not a JSON object): to tell whether a save changes anything.
fn content_of(json: &str) -> Option<Raw> {
    match read_raw(json.trim())? {
        Raw::Object(fields) => Some(Raw::Object(fields.into_iter().filter(|(k, _)| k != "\"version\"").collect())),
        _ => None,
    }
}

/// The JSON with `"version": v` added at the end of its top-level object,
/// unless it names a version itself (or is not an object: the command says
/// what is wrong with it).
pub fn with_version(json: &str, version: u64) -> String {
    let text = json.trim();
    match read_raw(text) {
        Some(Raw::Object(fields)) if !fields.iter().any(|(k, _)| k == "\"version\"") => {
            let body = text[..text.len() - 1].trim_end();
            let comma = if body.ends_with('{') { "" } else { ", " };
            format!("{body}{comma}\"version\": {version}}}")
        }
        _ => json.to_string(),
    }
}

/// What a stale editor is told: the plan changed since the page showed it.
fn changed_since(name: &str, now: &str) -> String {
    format!("plan {name} changed since you opened it (now version {now}): reload to see it")
}

async fn save(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
    axum::Form(f): axum::Form<SavePlan>,
) -> Response {
    let result = async {
        if f.json.trim().is_empty() {
            return Err(refused("the plan's JSON is empty: to remove the plan, delete it"));
        }
        // The version the page showed: saving sends the next one, so the
        // command refuses a save over a change made meanwhile (no lost update).
        let shown = f.version.trim().parse::<u64>().ok();
        let current = match app.quota.call(Cmd::PlanGet, None, &[&name]).await {
            Ok(reply) => Some(web::value_text(&reply)),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e),
        };
        let now = current.as_deref().and_then(|c| editable(c).0);
        if let Some(v) = shown {
            match (&current, &now) {
                (Some(c), Some(n)) if *n == v.to_string() => {
                    if content_of(c).is_some() && content_of(c) == content_of(&f.json) {
                        return Ok(format!("nothing changed: plan {name} already says that (version {n})"));
                    }
                }
                (_, Some(n)) => return Err(refused(changed_since(&name, n))),
                (None, _) => {
                    return Err(refused(format!(
                        "plan {name} was deleted since you opened it: save it again from the plans page to create it"
                    )));
                }
                (Some(_), None) => {}
            }
        }
        let json = match shown {
            Some(v) => with_version(&f.json, v + 1),
            None => f.json.clone(),
        };
        match app.quota.call(Cmd::PlanSet, None, &[&name, &json]).await {
            Ok(version) => {
                let version = web::value_text(&version);
                Ok(if version == f.version {
                    format!("nothing changed: plan {name} already says that (version {version})")
                } else {
                    format!("plan {name} saved: version {version}")
                })
            }
            // Changed between the look above and the save: the command refused.
            Err(e) if shown.is_some() && e.message.contains("is not above the current") => {
                let now = match app.quota.call(Cmd::PlanGet, None, &[&name]).await {
                    Ok(reply) => editable(&web::value_text(&reply)).0.unwrap_or_default(),
                    Err(_) => String::new(),
                };
                Err(refused(format!("{} ({})", changed_since(&name, &now), e.message)))
            }
            Err(e) => Err(e),
        }
    }
    .await;
    written(result, &plan_url(&name), &headers)
}

async fn delete(State(app): State<App>, headers: HeaderMap, Path(name): Path<String>) -> Response {
    let result = app.quota.call(Cmd::PlanDel, None, &[&name]).await.map(|n| {
        if web::value_text(&n) == "1" {
            format!("plan {name} deleted: trees that followed it keep the version they hold")
        } else {
            format!("there was no plan {name}: nothing deleted")
        }
    });
    written(result, "/plans", &headers)
}

#[derive(Deserialize)]
pub struct Assign {
    #[serde(default)]
    key: String,
    /// Present (any value) to make the tree follow no plan.
    #[serde(default)]
    stop: Option<String>,
}

async fn assign(
    State(app): State<App>,
    headers: HeaderMap,
    Path(name): Path<String>,
    axum::Form(f): axum::Form<Assign>,
) -> Response {
    let key = f.key.trim();
    let stop = f.stop.is_some();
    let result = async {
        if key.is_empty() {
            return Err(refused("give the tree's key, such as acme"));
        }
        // NONE is the command's word for "follow no plan", never a plan's
        // name: only the Stop following button says it.
        if !stop && name.trim().eq_ignore_ascii_case("none") {
            return Err(refused(
                "none is not a plan's name (QUOTA.ASSIGN reads it as \"follow no plan\"): to make a tree follow no plan, use Stop following on its plan's page",
            ));
        }
        app.quota.call(Cmd::Assign, Some(key), &[if stop { "NONE" } else { name.as_str() }]).await?;
        Ok(if stop { format!("{key} follows no plan now") } else { format!("{key} follows plan {name} now") })
    }
    .await;
    written(result, &plan_url(&name), &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_keeps_every_value_as_written() {
        // input, laid out
        let rows = [
            ("{}", "{}"),
            ("[]", "[]"),
            (r#"{"a":"1.50","b":[80,90]}"#, r#"{"a": "1.50", "b": [80, 90]}"#),
            (r#"{"limit":0.10000000000000000001}"#, r#"{"limit": 0.10000000000000000001}"#),
            (
                r#"{"paths":{"/":{"x":{"metric":"m","limit":"1"}}}}"#,
                "{\n  \"paths\": {\n    \"/\": {\n      \"x\": {\"metric\": \"m\", \"limit\": \"1\"}\n    }\n  }\n}",
            ),
            (r#"{"s":"a \"q\" , { ["}"#, r#"{"s": "a \"q\" , { ["}"#),
            ("not json", "not json"),
            (r#"{"a":1} x"#, r#"{"a":1} x"#),
            (r#"{"a":"#, r#"{"a":"#),
        ];
        for (input, want) in rows {
            assert_eq!(pretty(input), want, "{input}");
        }
    }

    #[test]
    fn long_objects_take_a_line_a_field() {
        let json =
            r#"{"metric":"api_calls","limit":"1000","window":"month","anchor":1,"mode":"strict","warn":[80,90]}"#;
        assert_eq!(
            pretty(json),
            "{\n  \"metric\": \"api_calls\",\n  \"limit\": \"1000\",\n  \"window\": \"month\",\n  \"anchor\": 1,\n  \
             \"mode\": \"strict\",\n  \"warn\": [80, 90]\n}"
        );
    }

    #[test]
    fn a_textarea_shows_all_of_the_json_up_to_40_lines() {
        // json, rows
        let rows = [("{}", 6), (&*"x\n".repeat(10), 11), (&*"x\n".repeat(100), 40)];
        for (json, want) in rows {
            assert_eq!(rows_for(json), want);
        }
    }

    #[test]
    fn a_save_names_the_next_version() {
        assert_eq!(with_version(r#"{"paths": {}}"#, 3), r#"{"paths": {}, "version": 3}"#);
        assert_eq!(with_version(" {}\n", 2), r#"{"version": 2}"#);
        assert_eq!(with_version(r#"{"paths": {}, "version": 9}"#, 3), r#"{"paths": {}, "version": 9}"#);
        assert_eq!(with_version("[1]", 3), "[1]");
        assert_eq!(with_version("{bad", 3), "{bad");
        assert!(content_of(r#"{"paths":{},"version":3}"#) == content_of(r#"{"paths": {}}"#));
        assert!(content_of(r#"{"paths":{"/":{}}}"#) != content_of(r#"{"paths": {}}"#));
    }

    #[test]
    fn the_version_is_set_apart() {
        assert_eq!(editable(r#"{"paths":{},"version":3}"#), (Some("3".to_string()), r#"{"paths": {}}"#.to_string()));
        assert_eq!(editable("[1]"), (None, "[1]".to_string()));
    }

    #[test]
    fn a_plan_reads_as_rows() {
        let plan: Json = serde_json::from_str(
            r#"{"paths":{"/":{"api_calls":{"metric":"api_calls","limit":"1000","window":"month","anchor":1,"mode":"strict","warn":[80,90]},
                "burst":{"metric":"api_calls","limit":"600","window":"rolling 1m","mode":"block","warn":[80,90],"calendar":"fiscal"}},
              "members/*":{"allowance":{"metric":"ai_tokens","limit":"10000","window":"month","anchor":15,"tz":"Asia/Kolkata","mode":"strict","warn":[50],"rollover":"20000","service":"chat","model":"gpt-x"}}},"version":2}"#,
        )
        .unwrap();
        let rows = policy_rows(&plan);
        // pattern, policy, limit, window, warn, rollover, filter, other
        let want = [
            ("/", "api_calls", "1000", "month", "80, 90 %", "", "", ""),
            ("/", "burst", "600", "rolling 1m", "80, 90 %", "", "", "calendar: fiscal"),
            ("members/*", "allowance", "10000", "month (anchor 15) in Asia/Kolkata", "50 %", "20000", "chat/gpt-x", ""),
        ];
        assert_eq!(rows.len(), want.len());
        for (row, (pattern, policy, limit, window, warn, rollover, filter, other)) in rows.iter().zip(want) {
            assert_eq!(
                (
                    &*row.pattern,
                    &*row.policy,
                    &*row.limit,
                    &*row.window,
                    &*row.warn,
                    &*row.rollover,
                    &*row.filter,
                    &*row.other
                ),
                (pattern, policy, limit, window, warn, rollover, filter, other)
            );
        }
        assert!(policy_rows(&serde_json::json!({"paths": {}})).is_empty());
        assert!(policy_rows(&Json::Null).is_empty());
    }
}
