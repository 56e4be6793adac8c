//! The Alerts section: what the companion (`quota-dash alerts`) reports in
//! Redis, its rules and destinations, the configuration editor, and the dead
//! letters to replay or delete. Every key is the companion's own
//! (`quota:alerts:*`, alerts/store.rs); never a tree.
//!
//! The configuration is saved only when [`Config::parse`] takes it, and only
//! over the text the editor was opened on: the form carries a hash of it and
//! the save is a WATCH … MULTI … EXEC on a connection of its own, then a
//! PUBLISH so the companion reads it at once.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::alerts::config::{Config, Target};
use crate::alerts::store::{self, CONFIG, CONFIG_CHANNEL, DEAD, QUEUE};
use crate::quota::{QuotaError, error_of};
use crate::web::{self, App, Page, Section, html, refused, written};

/// Dead letters and queued jobs a page shows.
const A_PAGE: usize = 50;
/// The lease the companion uses when its status does not say (its default).
const LEASE_MS: u64 = 10_000;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/alerts", get(overview))
        .route("/alerts/config", post(save_config))
        .route("/alerts/dead", get(dead_letters))
        .route("/alerts/dead/replay", post(replay))
        .route("/alerts/dead/delete", post(delete))
}

/// The wall clock in Unix ms: the companion's heartbeat, due times and
/// deaths are on it (not on the quota clock).
fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A Redis error as the pages say it (ACL refusals with the account's name).
fn failed(app: &App, e: redis::RedisError) -> QuotaError {
    app.quota.explain(error_of(e))
}

fn read_only() -> QuotaError {
    QuotaError {
        kind: "READONLY".to_string(),
        message: "this dashboard is read-only (started with --read-only): nothing was changed".to_string(),
    }
}

/// What the editor carries to say which text it was opened on: "none" when
/// there was no configuration, else the SHA-256 of the text.
fn hash_of(text: Option<&str>) -> String {
    use sha2::{Digest, Sha256};
    match text {
        None => "none".to_string(),
        Some(t) => Sha256::digest(t.as_bytes()).iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// What the editor holds when there is no configuration yet: the example
/// of the design, which the page explains field by field.
const STARTER: &str = r#"{
  "smtp": {"host": "127.0.0.1", "port": 25, "tls": "none", "from": "quota <alerts@example.com>"},
  "destinations": {
    "billing": {"webhook": "https://billing.example.com/hooks/quota", "secret_env": "BILLING_HOOK_SECRET"},
    "ops": {"email": ["ops@example.com"]}
  },
  "rules": [
    {"name": "usage-80", "trees": "*", "path": "/", "events": ["warning"], "thresholds": [80], "to": ["ops"]},
    {"name": "wallet-low", "trees": "user:*", "events": ["low", "grant_expired"], "to": ["billing"]}
  ]
}
"#;

// ----- the companion's status ---------------------------------------------------

/// The companion as its status hash says, for the page.
pub struct Companion {
    /// Whether any companion ever wrote its status here.
    pub seen: bool,
    pub instance: String,
    /// How old its last heartbeat is, for people ("" when none).
    pub age: String,
    /// Its heartbeat is younger than its lease: it runs.
    pub running: bool,
    pub lease: String,
    /// Where it reads its configuration, as it says: `key …` or `file …`.
    pub source: String,
    /// The file, when it reads one.
    pub file: Option<String>,
    /// The file's text, as the companion last read it (it writes it in its
    /// status: the file may be on another machine).
    pub text: String,
    pub config_error: String,
    pub delivered: String,
    pub failed: String,
    pub dead: String,
    pub gaps: String,
}

fn companion_of(fields: Vec<(String, String)>, now: u64) -> Companion {
    let f: HashMap<String, String> = fields.into_iter().collect();
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let count = |k: &str| f.get(k).cloned().unwrap_or_else(|| "0".to_string());
    let lease = f.get("lease_ms").and_then(|v| v.parse::<u64>().ok()).unwrap_or(LEASE_MS);
    let heartbeat = f.get("heartbeat").and_then(|v| v.parse::<u64>().ok());
    let age = heartbeat.map(|h| now.saturating_sub(h));
    let source = get("config");
    Companion {
        seen: !f.is_empty(),
        instance: get("instance"),
        age: age.map(web::fmt_span).unwrap_or_default(),
        running: age.is_some_and(|a| a <= lease),
        lease: web::fmt_span(lease),
        file: source.strip_prefix("file ").map(str::to_string),
        text: get("config_text"),
        source,
        config_error: get("config_error"),
        delivered: count("delivered"),
        failed: count("failed"),
        dead: count("dead"),
        gaps: count("gaps"),
    }
}

// ----- the configuration as tables ----------------------------------------------

pub struct RuleRow {
    pub name: String,
    pub trees: String,
    pub path: String,
    pub events: String,
    pub policy: String,
    pub thresholds: String,
    pub to: String,
}

pub struct DestRow {
    pub name: String,
    pub kind: &'static str,
    pub address: String,
    /// The NAME of the variable that holds the secret (never its value).
    pub secret_env: String,
    pub attempts: u32,
    pub backoff: String,
    pub timeout: String,
}

fn rule_rows(c: &Config) -> Vec<RuleRow> {
    c.rules
        .iter()
        .map(|r| RuleRow {
            name: r.name.clone(),
            trees: r.trees.clone(),
            path: r.path.clone(),
            events: if r.events.is_empty() { "all".to_string() } else { r.events.join(", ") },
            policy: r.policy.clone().unwrap_or_default(),
            thresholds: if r.thresholds.is_empty() {
                String::new()
            } else {
                format!("{} %", r.thresholds.iter().map(u32::to_string).collect::<Vec<_>>().join(", "))
            },
            to: r.to.join(", "),
        })
        .collect()
}

fn dest_rows(c: &Config) -> Vec<DestRow> {
    c.destinations
        .values()
        .map(|d| DestRow {
            name: d.name.clone(),
            kind: d.kind(),
            address: d.address(),
            secret_env: match &d.target {
                Target::Webhook { secret_env: Some(s), .. } => s.clone(),
                _ => String::new(),
            },
            attempts: d.attempts,
            backoff: format!("{} doubling, at most {}", web::fmt_span(d.backoff_ms), web::fmt_span(d.max_backoff_ms)),
            timeout: web::fmt_span(d.timeout_ms),
        })
        .collect()
}

/// The SMTP server, in one line (the password's variable by name only).
fn smtp_line(c: &Config) -> Option<String> {
    let s = c.smtp.as_ref()?;
    let tls = match s.tls {
        crate::alerts::config::Encryption::Plain => "no TLS",
        crate::alerts::config::Encryption::StartTls => "STARTTLS",
        crate::alerts::config::Encryption::Implicit => "TLS",
    };
    let login = match (&s.username, &s.password_env) {
        (Some(u), Some(p)) => format!(", as {u} (password in ${p})"),
        _ => String::new(),
    };
    Some(format!("{}:{} ({tls}), from {}{login}", s.host, s.port, s.from))
}

// ----- jobs as rows ---------------------------------------------------------------

pub struct JobRow {
    pub id: String,
    pub tree: String,
    pub tree_url: String,
    pub seq: u64,
    pub kind: String,
    pub dest: String,
    pub rules: String,
    pub attempts: u32,
    pub last_attempt: String,
    pub last_error: String,
    /// When it died (dead letters) or is due (the queue).
    pub when: String,
    /// The event's other fields, `name: value`.
    pub fields: Vec<(String, String)>,
}

fn job_row(j: &store::Job, when: Option<u64>) -> JobRow {
    let fields = match &j.event {
        Json::Object(m) => m
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "tree" | "seq" | "type"))
            .map(|(k, v)| {
                let shown = match (k.as_str(), v.as_u64()) {
                    ("time", Some(ms)) => web::fmt_ms(ms),
                    _ => web::value_text(v),
                };
                (k.clone(), shown)
            })
            .collect(),
        other => vec![("event".to_string(), web::value_text(other))],
    };
    JobRow {
        id: j.id.clone(),
        tree: j.tree.clone(),
        tree_url: web::tree_url(&j.tree),
        seq: j.seq,
        kind: j.kind().to_string(),
        dest: j.dest.clone(),
        rules: j.rules.join(", "),
        attempts: j.attempts,
        last_attempt: j.last_attempt.map(web::fmt_ms).unwrap_or_default(),
        last_error: j.last_error.clone().unwrap_or_default(),
        when: when.map(web::fmt_ms).unwrap_or_default(),
        fields,
    }
}

pub struct SentRow {
    pub at: String,
    pub dest: String,
    pub tree: String,
    pub tree_url: String,
    pub seq: String,
    pub kind: String,
    pub attempts: String,
}

fn sent_row(v: &Json) -> SentRow {
    let tree = web::text(v, "tree");
    SentRow {
        at: v.get("at").and_then(Json::as_u64).map(web::fmt_ms).unwrap_or_else(|| web::text(v, "at")),
        dest: web::text(v, "dest"),
        tree_url: web::tree_url(&tree),
        tree,
        seq: web::text(v, "seq"),
        kind: web::text(v, "type"),
        attempts: web::text(v, "attempts"),
    }
}

// ----- /alerts ------------------------------------------------------------------

#[derive(Template)]
#[template(path = "alerts.html")]
struct AlertsPage {
    page: Page,
    companion: Companion,
    /// `redis://…` for the command that starts a companion.
    redis: String,
    /// The configuration's text in the key (None: no key).
    stored: Option<String>,
    /// Shown read-only: the companion reads a file.
    from_file: bool,
    /// The text the editor or the read-only view shows.
    text: String,
    /// Which text the editor was opened on ([`hash_of`]).
    loaded: String,
    /// The configuration shown is the example, not saved.
    starter: bool,
    /// Why the configuration shown does not parse.
    parse_error: Option<String>,
    smtp: Option<String>,
    rules: Vec<RuleRow>,
    destinations: Vec<DestRow>,
    queued: u64,
    dead: u64,
    sent: Vec<SentRow>,
    queue: Vec<JobRow>,
}

impl AlertsPage {
    fn rows(&self) -> usize {
        crate::plans::rows_for(&self.text).max(16)
    }
}

async fn overview(State(app): State<App>, uri: Uri) -> Response {
    let page = Page::new(&app, "Alerts", Section::Alerts, &uri);
    let mut conn = app.quota.shared();
    let read = async {
        let status = store::status(&mut conn).await?;
        let stored = store::config_text(&mut conn).await?;
        let (queued, dead) = store::counts(&mut conn).await?;
        let sent = store::sent(&mut conn).await?;
        let queue = store::jobs_in(&mut conn, QUEUE, 0, A_PAGE).await?;
        let mut pipe = redis::pipe();
        for j in &queue {
            pipe.zscore(QUEUE, &j.id);
        }
        let due: Vec<Option<f64>> = if queue.is_empty() { vec![] } else { pipe.query_async(&mut conn).await? };
        Ok::<_, redis::RedisError>((status, stored, queued, dead, sent, queue, due))
    };
    let (status, stored, queued, dead, sent, queue, due) = match read.await {
        Ok(r) => r,
        Err(e) => {
            let e = failed(&app, e);
            return web::error_page(&app, &uri, web::status_of(&e), &e, "/trees");
        }
    };
    let companion = companion_of(status, wall_ms());
    // A file is read-only here only while a companion reads it: one started
    // later without --config reads the key.
    let file = companion.file.clone().filter(|_| companion.running);
    let (text, starter) = match (&file, &stored) {
        (Some(_), _) => (companion.text.clone(), false),
        (None, Some(t)) => (t.clone(), false),
        (None, None) => (STARTER.to_string(), true),
    };
    let (mut smtp, mut rules, mut destinations, mut parse_error) = (None, vec![], vec![], None);
    if !starter && !text.is_empty() {
        match Config::parse(&text) {
            Ok(c) => {
                smtp = smtp_line(&c);
                rules = rule_rows(&c);
                destinations = dest_rows(&c);
            }
            Err(e) => parse_error = Some(e),
        }
    }
    html(&AlertsPage {
        page,
        redis: format!("redis://{}", app.quota.server),
        loaded: hash_of(stored.as_deref()),
        from_file: file.is_some(),
        stored,
        text,
        starter,
        parse_error,
        smtp,
        rules,
        destinations,
        queued,
        dead,
        sent: sent.iter().map(sent_row).collect(),
        queue: queue.iter().zip(due).map(|(j, d)| job_row(j, d.map(|d| d as u64))).collect(),
        companion,
    })
}

// ----- saving the configuration ---------------------------------------------------

#[derive(Deserialize)]
pub struct SaveConfig {
    #[serde(default)]
    text: String,
    /// [`hash_of`] the text the editor was opened on.
    #[serde(default)]
    loaded: String,
}

fn changed_since() -> QuotaError {
    refused(
        "the configuration changed since you opened this page (saved from elsewhere): nothing was saved; \
         copy your text, reload the page and make your change again",
    )
}

async fn save_config(State(app): State<App>, headers: HeaderMap, axum::Form(f): axum::Form<SaveConfig>) -> Response {
    let result = async {
        if app.quota.read_only {
            return Err(read_only());
        }
        let text = f.text.replace("\r\n", "\n");
        if text.trim().is_empty() {
            return Err(refused("the configuration is empty: nothing was saved (to deliver nothing, save {})"));
        }
        let config = Config::parse(&text).map_err(|e| refused(format!("{e} (nothing was saved)")))?;
        let mut conn = app.quota.dedicated().await?;
        let status = store::status(&mut conn).await.map_err(|e| failed(&app, e))?;
        let companion = companion_of(status, wall_ms());
        if let Some(file) = companion.file.as_ref().filter(|_| companion.running) {
            return Err(refused(format!(
                "the companion reads its configuration from the file {file} (its --config): change it there; nothing was saved"
            )));
        }
        redis::cmd("WATCH").arg(CONFIG).query_async::<()>(&mut conn).await.map_err(|e| failed(&app, e))?;
        let current = store::config_text(&mut conn).await.map_err(|e| failed(&app, e))?;
        if hash_of(current.as_deref()) != f.loaded {
            let _ = redis::cmd("UNWATCH").query_async::<()>(&mut conn).await;
            return Err(changed_since());
        }
        if current.as_deref() == Some(text.as_str()) {
            let _ = redis::cmd("UNWATCH").query_async::<()>(&mut conn).await;
            return Ok("nothing changed: the configuration already says that".to_string());
        }
        let mut pipe = redis::pipe();
        pipe.atomic().set(CONFIG, &text).ignore().publish(CONFIG_CHANNEL, "1").ignore();
        match pipe.query_async::<redis::Value>(&mut conn).await.map_err(|e| failed(&app, e))? {
            redis::Value::Nil => Err(changed_since()),
            _ => Ok(format!(
                "configuration saved: {} rule{}, {} destination{}{}",
                config.rules.len(),
                if config.rules.len() == 1 { "" } else { "s" },
                config.destinations.len(),
                if config.destinations.len() == 1 { "" } else { "s" },
                if companion.running { " (the companion takes it now)" } else { " (no companion is running to use it)" }
            )),
        }
    }
    .await;
    written(result, "/alerts", &headers)
}

// ----- dead letters ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "alerts_dead.html")]
struct DeadPage {
    page: Page,
    total: u64,
    start: usize,
    letters: Vec<JobRow>,
    newer: Option<String>,
    older: Option<String>,
}

#[derive(Deserialize)]
pub struct DeadQuery {
    #[serde(default)]
    start: Option<String>,
}

async fn dead_letters(State(app): State<App>, uri: Uri, Query(q): Query<DeadQuery>) -> Response {
    let page = Page::new(&app, "Dead letters", Section::Alerts, &uri);
    let start = q.start.and_then(|s| s.parse::<usize>().ok()).unwrap_or(0).min(store::MAX_DEAD * 2);
    let mut conn = app.quota.shared();
    let read = async {
        let (_, total) = store::counts(&mut conn).await?;
        let jobs = store::jobs_in(&mut conn, DEAD, start, A_PAGE).await?;
        Ok::<_, redis::RedisError>((total, jobs))
    };
    let (total, jobs) = match read.await {
        Ok(r) => r,
        Err(e) => {
            let e = failed(&app, e);
            return web::error_page(&app, &uri, web::status_of(&e), &e, "/alerts");
        }
    };
    let at = |s: usize| if s == 0 { "/alerts/dead".to_string() } else { format!("/alerts/dead?start={s}") };
    html(&DeadPage {
        page,
        total,
        newer: (start > 0).then(|| at(start.saturating_sub(A_PAGE))),
        older: ((start + A_PAGE) < total as usize).then(|| at(start + A_PAGE)),
        start,
        letters: jobs.iter().map(|j| job_row(j, j.died)).collect(),
    })
}

#[derive(Deserialize)]
pub struct Letters {
    /// One dead letter's id.
    #[serde(default)]
    id: Option<String>,
    /// Present (any value): every dead letter.
    #[serde(default)]
    all: Option<String>,
}

impl Letters {
    /// The ids to act on (None: all), or why there are none.
    fn ids(&self) -> Result<Option<Vec<String>>, QuotaError> {
        match (&self.all, &self.id) {
            (Some(_), _) => Ok(None),
            (None, Some(id)) if !id.is_empty() => Ok(Some(vec![id.clone()])),
            _ => Err(refused("say which dead letter (id) or all of them (all=1): nothing was changed")),
        }
    }
}

fn letters(n: usize) -> String {
    if n == 1 { "1 dead letter".to_string() } else { format!("{n} dead letters") }
}

async fn replay(State(app): State<App>, headers: HeaderMap, axum::Form(f): axum::Form<Letters>) -> Response {
    let result = async {
        if app.quota.read_only {
            return Err(read_only());
        }
        let ids = f.ids()?;
        let mut conn = app.quota.dedicated().await?;
        let n = store::replay(&mut conn, ids.as_deref(), wall_ms()).await.map_err(|e| failed(&app, e))?;
        Ok(match (n, &ids) {
            (0, Some(_)) => "nothing queued: that dead letter is gone (replayed or deleted meanwhile)".to_string(),
            (0, None) => "there were no dead letters: nothing queued".to_string(),
            (n, _) => format!("{} queued again", letters(n)),
        })
    }
    .await;
    written(result, "/alerts/dead", &headers)
}

async fn delete(State(app): State<App>, headers: HeaderMap, axum::Form(f): axum::Form<Letters>) -> Response {
    let result = async {
        if app.quota.read_only {
            return Err(read_only());
        }
        let ids = f.ids()?;
        let mut conn = app.quota.dedicated().await?;
        let n = store::delete_dead(&mut conn, ids.as_deref()).await.map_err(|e| failed(&app, e))?;
        Ok(match (n, &ids) {
            (0, Some(_)) => "nothing deleted: that dead letter is gone (replayed or deleted meanwhile)".to_string(),
            (0, None) => "there were no dead letters: nothing deleted".to_string(),
            (n, _) => format!("{} deleted", letters(n)),
        })
    }
    .await;
    written(result, "/alerts/dead", &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_is_a_configuration() {
        let c = Config::parse(STARTER).expect("the starter parses");
        assert_eq!((c.rules.len(), c.destinations.len()), (2, 2));
        let d = dest_rows(&c);
        assert_eq!(d[0].secret_env, "BILLING_HOOK_SECRET");
        assert_eq!(d[1].address, "ops@example.com");
        assert_eq!(rule_rows(&c)[0].thresholds, "80 %");
    }

    #[test]
    fn a_heartbeat_older_than_the_lease_is_no_companion() {
        let f = |hb: &str| {
            vec![
                ("heartbeat".to_string(), hb.to_string()),
                ("lease_ms".to_string(), "10000".to_string()),
                ("config".to_string(), "file /etc/q.json".to_string()),
            ]
        };
        let c = companion_of(f("95000"), 100_000);
        assert!(c.running && c.seen);
        assert_eq!(c.file.as_deref(), Some("/etc/q.json"));
        assert!(!companion_of(f("80000"), 100_000).running);
        // A heartbeat ahead of this clock (another host's): running.
        assert!(companion_of(f("100500"), 100_000).running);
        let none = companion_of(vec![], 100_000);
        assert!(!none.running && !none.seen && none.file.is_none() && none.delivered == "0");
    }

    #[test]
    fn the_editor_knows_an_absent_key_from_an_empty_one() {
        assert_eq!(hash_of(None), "none");
        assert_ne!(hash_of(Some("")), "none");
        assert_eq!(hash_of(Some("{}")).len(), 64);
    }
}
