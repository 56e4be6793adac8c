//! Every write the dashboard makes, one command each: the policy editor
//! (QUOTA.SET), unset and reset, the grant editor (QUOTA.GRANT) and revoke,
//! access rules (QUOTA.ALLOW / DENY / ACCESS CLEAR), labels (QUOTA.LABEL),
//! archive, restore, delete path (DELPATH), and a hold's release and extend.
//!
//! A form's fields become the command's arguments in a pure builder
//! (`set_args`, `grant_args`, …), each value ONE argument as typed, so no
//! text can smuggle in a keyword. A builder refuses what the page can say
//! more plainly than the command (an empty name, a date that does not
//! parse); everything else is the command's to judge, and its message is
//! shown as it is. Editor pages post to themselves: with JavaScript the
//! error shows beside the form (app.js's `data-ajax`), without it the page
//! comes back with the values typed and the error above the form.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::quota::{Cmd, QuotaError};
use crate::web::{self, App, Page, Section, enc, html, refused, text, tree_url, written};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/assets/edit.js", get(script))
        .route("/assets/edit.css", get(style))
        .route("/trees/{key}/policy", get(policy_page).post(policy_post))
        .route("/trees/{key}/policy/unset", post(unset))
        .route("/trees/{key}/policy/reset", post(reset))
        .route("/trees/{key}/grant", get(grant_page).post(grant_post))
        .route("/trees/{key}/grant/revoke", post(revoke))
        .route("/trees/{key}/access", get(access_page).post(access_post))
        .route("/trees/{key}/access/remove", post(access_remove))
        .route("/trees/{key}/access/clear", post(access_clear))
        .route("/trees/{key}/label", get(label_page).post(label_post))
        .route("/trees/{key}/archive", post(archive))
        .route("/trees/{key}/restore", post(restore))
        .route("/trees/{key}/path/delete", post(delete_path))
        .route("/trees/{key}/hold/release", post(release))
        .route("/trees/{key}/hold/extend", post(extend))
}

async fn script() -> Response {
    web::asset_response(include_str!("../assets/edit.js"), "text/javascript; charset=utf-8")
}

async fn style() -> Response {
    web::asset_response(include_str!("../assets/edit.css"), "text/css; charset=utf-8")
}

// ----- paths, where to go next ---------------------------------------------------

/// The path a form names: as typed, `/` when empty.
fn path_of(p: &str) -> String {
    let p = p.trim();
    if p.is_empty() { "/".to_string() } else { p.to_string() }
}

/// The parent of a path (`/` for the root and its children).
fn parent(p: &str) -> String {
    let p = p.trim_matches('/');
    match p.rsplit_once('/') {
        Some((up, _)) if !up.is_empty() => format!("/{up}"),
        _ => "/".to_string(),
    }
}

/// The tree page at a path: where a write goes back to.
fn tree_at(key: &str, path: &str) -> String {
    format!("{}?path={}", tree_url(key), enc(path))
}

/// An editor page's own address: `/trees/<key>/<what>?path=P[&policy=X]`.
fn editor_url(key: &str, what: &str, path: &str, policy: Option<&str>) -> String {
    let mut url = format!("{}/{what}?path={}", tree_url(key), enc(path));
    if let Some(p) = policy.filter(|p| !p.is_empty()) {
        url.push_str("&policy=");
        url.push_str(&enc(p));
    }
    url
}

/// Where to go after a write: `next` when it is a path on this dashboard
/// (never `//elsewhere` or a full URL), else the tree page at `path`.
fn next_of(next: Option<&str>, key: &str, path: &str) -> String {
    match next.map(str::trim) {
        Some(n) if web::is_local(n) => n.to_string(),
        _ => tree_at(key, path),
    }
}

/// A node as QUOTA.GET shows it; None for a path that does not exist yet.
async fn node(app: &App, key: &str, path: &str) -> Result<Option<Json>, QuotaError> {
    match app.quota.call(Cmd::Get, Some(key), &[path]).await {
        Ok(n) => Ok(Some(n)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn policies(node: Option<&Json>) -> Vec<Json> {
    node.and_then(|n| n.get("policies")).and_then(Json::as_array).cloned().unwrap_or_default()
}

fn find_policy(node: Option<&Json>, name: &str) -> Option<Json> {
    policies(node).into_iter().find(|p| text(p, "policy") == name)
}

fn args_of(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Runs one command with the builder's arguments, or says why the form was
/// refused before sending anything.
async fn run(app: &App, cmd: Cmd, key: &str, args: Result<Vec<String>, String>) -> Result<Json, QuotaError> {
    let args = args.map_err(refused)?;
    app.quota.call(cmd, Some(key), &args_of(&args)).await
}

/// A policy's state in a few words, for the editors.
pub struct Standing {
    pub status: String,
    pub class: &'static str,
    pub used: String,
    pub held: String,
    pub limit: String,
    pub remaining: String,
    pub granted: String,
    pub metric: String,
}

impl Standing {
    fn of(p: &Json) -> Standing {
        let status = text(p, "status");
        Standing {
            class: web::status_class(&status),
            status,
            used: text(p, "used"),
            held: text(p, "held"),
            limit: text(p, "limit"),
            remaining: text(p, "remaining"),
            granted: text(p, "granted"),
            metric: text(p, "metric"),
        }
    }
}

/// A link to another policy of the same path.
pub struct Other {
    pub name: String,
    pub url: String,
    pub class: &'static str,
    pub on: bool,
}

fn others(key: &str, path: &str, node: Option<&Json>, what: &str, current: &str) -> Vec<Other> {
    policies(node)
        .iter()
        .map(|p| {
            let name = text(p, "policy");
            Other {
                url: editor_url(key, what, path, Some(&name)),
                class: web::status_class(&text(p, "status")),
                on: name == current,
                name,
            }
        })
        .collect()
}

// ----- the policy editor (QUOTA.SET) -------------------------------------------

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct PolicyForm {
    pub path: String,
    pub policy: String,
    pub metric: String,
    pub limit: String,
    /// none | hour | day | week | month | year | rolling
    pub window: String,
    /// The duration of a rolling window (30d), read only when window is rolling.
    pub rolling: String,
    /// Where a period starts, read only for week, month and year: a
    /// month's day (1–31), a week's day (sunday), a year's date (04-01).
    pub anchor: String,
    /// The time zone of a day, week, month or year window (empty: UTC).
    pub tz: String,
    pub mode: String,
    pub warn: String,
    pub rollover: String,
    pub service: String,
    pub model: String,
    pub low: String,
    /// The checkbox: "1" when ticked, absent when not.
    pub inflight: String,
    /// "1" on the new-policy form: saving it never replaces a policy of
    /// the same name already on the path.
    pub new: String,
    pub next: Option<String>,
}

/// Commas without the spaces people put after them: `80, 90` is `80,90`
/// (still one argument).
fn list_of(s: &str) -> String {
    s.split(',').map(str::trim).collect::<Vec<_>>().join(",")
}

fn ticked(v: &str) -> bool {
    matches!(v.trim(), "1" | "on" | "yes" | "true")
}

/// QUOTA.SET's arguments after the key: `path policy METRIC m LIMIT n
/// [WINDOW w [ANCHOR a] [TZ zone] | WINDOW rolling dur] [MODE m] [WARN p]
/// [ROLLOVER cap] [SERVICE s [MODEL m]] [LOW amount] [INFLIGHT]`. Empty
/// optional fields are left out; the rolling duration, the anchor (week,
/// month, year) and the zone (day, week, month, year) only count for their
/// windows.
pub fn set_args(f: &PolicyForm) -> Result<Vec<String>, String> {
    let name = f.policy.trim();
    if name.is_empty() {
        return Err("Give the policy a name".to_string());
    }
    let metric = f.metric.trim();
    if metric.is_empty() {
        return Err("Give the policy a metric (credits, usd, input_tokens…)".to_string());
    }
    let limit = f.limit.trim();
    if limit.is_empty() {
        return Err("Give the policy a limit".to_string());
    }
    let mut a = vec![path_of(&f.path), name.to_string(), "METRIC".into(), metric.into(), "LIMIT".into(), limit.into()];
    let window = f.window.trim();
    if window.eq_ignore_ascii_case("rolling") {
        let duration = f.rolling.trim();
        if duration.is_empty() {
            return Err("Give the rolling window a duration (30d, 24h, 15m)".to_string());
        }
        a.extend(["WINDOW".into(), "rolling".into(), duration.into()]);
    } else if !window.is_empty() && !window.eq_ignore_ascii_case("none") {
        a.extend(["WINDOW".into(), window.into()]);
        let is = |names: &[&str]| names.iter().any(|n| window.eq_ignore_ascii_case(n));
        let anchor = f.anchor.trim();
        if is(&["week", "month", "year"]) && !anchor.is_empty() {
            a.extend(["ANCHOR".into(), anchor.into()]);
        }
        let tz = f.tz.trim();
        if is(&["day", "week", "month", "year"]) && !tz.is_empty() {
            a.extend(["TZ".into(), tz.into()]);
        }
    }
    let mut option = |keyword: &str, value: String| {
        if !value.is_empty() {
            a.push(keyword.to_string());
            a.push(value);
        }
    };
    option("MODE", f.mode.trim().to_string());
    option("WARN", list_of(&f.warn));
    option("ROLLOVER", f.rollover.trim().to_string());
    let (service, model) = (f.service.trim(), f.model.trim());
    if service.is_empty() && !model.is_empty() {
        return Err("A model filter needs its service: give the service too".to_string());
    }
    option("SERVICE", service.to_string());
    option("MODEL", model.to_string());
    option("LOW", f.low.trim().to_string());
    if ticked(&f.inflight) {
        a.push("INFLIGHT".to_string());
    }
    Ok(a)
}

/// The form of a policy as QUOTA.GET shows it. Replies show a policy's
/// whole allowance as `limit` (limit + rolled over + what grants gave) and,
/// when that differs, the LIMIT it was set with as `base_limit`: the field
/// gets the latter, so saving an unchanged form changes nothing.
fn form_of(path: &str, p: &Json) -> PolicyForm {
    let window = text(p, "window");
    let (window, rolling) = match window.split_once(' ') {
        Some((w, d)) => (w.to_string(), d.to_string()),
        None => (window, String::new()),
    };
    let limit = match text(p, "base_limit") {
        b if b.is_empty() => text(p, "limit"),
        b => b,
    };
    let warn = p
        .get("warn")
        .and_then(Json::as_array)
        .map(|w| w.iter().map(|v| v.to_string().trim_matches('"').to_string()).collect::<Vec<_>>().join(","))
        .unwrap_or_default();
    PolicyForm {
        path: path.to_string(),
        policy: text(p, "policy"),
        metric: text(p, "metric"),
        limit,
        window,
        rolling,
        anchor: text(p, "anchor"),
        tz: text(p, "tz"),
        mode: text(p, "mode"),
        warn,
        rollover: text(p, "rollover"),
        service: text(p, "service"),
        model: text(p, "model"),
        low: text(p, "low"),
        inflight: if text(p, "inflight") == "1" { "1".to_string() } else { String::new() },
        new: String::new(),
        next: None,
    }
}

const WINDOWS: &[(&str, &str)] = &[
    ("none", "none (never resets)"),
    ("hour", "hour"),
    ("day", "day"),
    ("week", "week (from Monday, or the anchor day)"),
    ("month", "month"),
    ("year", "year"),
    ("rolling", "rolling"),
];

const MODES: &[(&str, &str)] = &[
    ("strict", "strict: used + held + requested ≤ limit"),
    ("block", "block: used < limit"),
    ("open", "open: recorded, never denied"),
];

#[derive(Template)]
#[template(path = "edit_policy.html")]
struct PolicyPage {
    page: Page,
    key: String,
    tree: String,
    shown: String,
    action: String,
    unset: String,
    reset: String,
    next: String,
    /// The form's own `next`: only one the page was given. Without it a
    /// policy saved on another path (the Path field changed) lands on that
    /// path's tree page.
    next_field: String,
    form: PolicyForm,
    /// The policy exists (the form edits it).
    editing: bool,
    state: Option<Standing>,
    /// The plan the policy comes from, when it does.
    plan: Option<String>,
    /// The new-policy form named a policy the path already has: its editor.
    exists_url: Option<String>,
    /// The policies already on the path, `name → editor`, for edit.js to
    /// say so as a name is typed in the new-policy form.
    existing: String,
    new_path: bool,
    others: Vec<Other>,
    new_url: String,
    error: Option<String>,
    windows: &'static [(&'static str, &'static str)],
    modes: &'static [(&'static str, &'static str)],
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct EditorQuery {
    path: String,
    policy: String,
    /// A child's name under `path` (the inspector's "Add a child path").
    child: String,
    next: Option<String>,
}

/// `path/child`, the child's name as typed (slashes inside it are deeper
/// paths, as the command reads them).
fn child_path(path: &str, child: &str) -> String {
    let child = child.trim().trim_matches('/');
    if child.is_empty() {
        return path.to_string();
    }
    format!("{}/{child}", path.trim_end_matches('/'))
}

async fn policy_page(
    State(app): State<App>,
    uri: Uri,
    web::TreeKey(key): web::TreeKey,
    Query(q): Query<EditorQuery>,
) -> Response {
    let path = child_path(&path_of(&q.path), &q.child);
    let node = match node(&app, &key, &path).await {
        Ok(n) => n,
        Err(e) => return web::error_page(&app, &uri, web::status_of(&e), &e, &tree_at(&key, &path)),
    };
    let name = q.policy.trim();
    let mut form = match find_policy(node.as_ref(), name) {
        Some(p) if !name.is_empty() => form_of(&path, &p),
        _ => PolicyForm {
            path: path.clone(),
            policy: name.to_string(),
            mode: "strict".to_string(),
            window: "none".to_string(),
            new: "1".to_string(),
            ..Default::default()
        },
    };
    form.next = q.next;
    policy_view(&app, &uri, &key, form, node, None)
}

fn policy_view(
    app: &App,
    uri: &Uri,
    key: &str,
    form: PolicyForm,
    node: Option<Json>,
    error: Option<String>,
) -> Response {
    let path = path_of(&form.path);
    let found = find_policy(node.as_ref(), form.policy.trim());
    let adding = ticked(&form.new);
    let exists_url = found
        .as_ref()
        .filter(|_| adding && error.is_some())
        .map(|_| editor_url(key, "policy", &path, Some(form.policy.trim())));
    // The new-policy form edits nothing, even when its name is taken.
    let current = found.filter(|_| !adding);
    let editing = current.is_some();
    let plan = current
        .as_ref()
        .filter(|p| text(p, "source") == "plan")
        .map(|_| node.as_ref().map(|n| text(n, "plan")).unwrap_or_default());
    let existing = serde_json::Value::Object(
        policies(node.as_ref())
            .iter()
            .map(|p| {
                let name = text(p, "policy");
                let url = editor_url(key, "policy", &path, Some(&name));
                (name, Json::String(url))
            })
            .collect(),
    )
    .to_string();
    let title = if editing {
        format!("Policy {} on {}", form.policy.trim(), web::shown(&path))
    } else {
        format!("New policy on {}", web::shown(&path))
    };
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let t = PolicyPage {
        page: Page::new(app, title, Section::Trees, uri),
        key: key.to_string(),
        tree: tree_at(key, &path),
        shown: web::shown(&path),
        action: format!("{}/policy", tree_url(key)),
        unset: format!("{}/policy/unset", tree_url(key)),
        reset: format!("{}/policy/reset", tree_url(key)),
        next: next_of(form.next.as_deref(), key, &path),
        next_field: form.next.clone().filter(|n| web::is_local(n.trim())).unwrap_or_default(),
        state: current.as_ref().map(Standing::of),
        editing,
        plan,
        exists_url,
        existing,
        new_path: node.is_none(),
        others: others(key, &path, node.as_ref(), "policy", form.policy.trim()),
        new_url: editor_url(key, "policy", &path, None),
        form,
        error,
        windows: WINDOWS,
        modes: MODES,
    };
    with_status(html(&t), status)
}

fn with_status(mut r: Response, status: StatusCode) -> Response {
    *r.status_mut() = status;
    r
}

async fn policy_post(
    State(app): State<App>,
    uri: Uri,
    web::TreeKey(key): web::TreeKey,
    headers: HeaderMap,
    axum::Form(f): axum::Form<PolicyForm>,
) -> Response {
    let path = path_of(&f.path);
    let back = next_of(f.next.as_deref(), &key, &path);
    let name = f.policy.trim().to_string();
    // The new-policy form never replaces a policy of the same name (one
    // added meanwhile, or one not noticed): it says so and changes nothing.
    let taken = if ticked(&f.new) && !name.is_empty() {
        match node(&app, &key, &path).await {
            Ok(n) => find_policy(n.as_ref(), &name).is_some(),
            Err(e) => return written(Err(e), &back, &headers),
        }
    } else {
        false
    };
    let result = if taken {
        Err(refused(format!("Policy {name} already exists on {}: edit it instead", web::shown(&path))))
    } else {
        run(&app, Cmd::Set, &key, set_args(&f)).await.map(|_| format!("Policy {name} set on {}.", web::shown(&path)))
    };
    match result {
        Err(e) if !web::wants_json(&headers) => {
            let node = node(&app, &key, &path).await.unwrap_or(None);
            policy_view(&app, &uri, &key, f, node, Some(e.message))
        }
        result => written(result, &back, &headers),
    }
}

/// A policy named on a path, for the one-click buttons (unset, reset).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PolicyRef {
    path: String,
    policy: String,
    next: Option<String>,
}

pub fn policy_ref_args(f: &PolicyRef) -> Result<Vec<String>, String> {
    let name = f.policy.trim();
    if name.is_empty() {
        return Err("Which policy? Give its name".to_string());
    }
    Ok(vec![path_of(&f.path), name.to_string()])
}

async fn unset(
    State(app): State<App>,
    web::TreeKey(key): web::TreeKey,
    headers: HeaderMap,
    axum::Form(f): axum::Form<PolicyRef>,
) -> Response {
    let path = path_of(&f.path);
    let result = run(&app, Cmd::Unset, &key, policy_ref_args(&f))
        .await
        .map(|_| format!("Policy {} removed from {}.", f.policy.trim(), web::shown(&path)));
    written(result, &next_of(f.next.as_deref(), &key, &path), &headers)
}

async fn reset(
    State(app): State<App>,
    web::TreeKey(key): web::TreeKey,
    headers: HeaderMap,
    axum::Form(f): axum::Form<PolicyRef>,
) -> Response {
    let path = path_of(&f.path);
    let result = run(&app, Cmd::Reset, &key, policy_ref_args(&f)).await.map(|closed| {
        format!(
            "Policy {} on {} reset: its period closed with {} used; usage starts again from 0.",
            f.policy.trim(),
            web::shown(&path),
            text(&closed, "used")
        )
    });
    written(result, &next_of(f.next.as_deref(), &key, &path), &headers)
}

// ----- grants (QUOTA.GRANT, QUOTA.REVOKE) -----------------------------------------

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct GrantForm {
    pub path: String,
    pub policy: String,
    pub amount: String,
    pub id: String,
    /// none | expires | for | period
    pub expiry: String,
    /// A UTC date and time, `YYYY-MM-DDTHH:MM` (read only when expiry is expires).
    pub expires: String,
    /// A duration, `7d` (read only when expiry is for).
    #[serde(rename = "for")]
    pub for_: String,
    pub priority: String,
    pub note: String,
    pub next: Option<String>,
}

/// A UTC date and time as Unix ms: `2026-03-20T12:00`, with optional
/// seconds, a space for the `T`, a trailing `Z`. None when it is not one.
pub fn utc_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = s.split_once(['T', ' '])?;
    let days = web::parse_day(date)?;
    let mut t = time.split(':');
    let (h, min, sec) = (t.next()?, t.next()?, t.next().unwrap_or("00"));
    if t.next().is_some() || h.len() != 2 || min.len() != 2 || sec.len() != 2 {
        return None;
    }
    let num = |v: &str| -> Option<u32> { v.bytes().all(|b| b.is_ascii_digit()).then(|| v.parse().ok()).flatten() };
    let (h, min, sec) = (num(h)?, num(min)?, num(sec)?);
    if h > 23 || min > 59 || sec > 59 {
        return None;
    }
    let secs = days * 86_400 + i64::from(h * 3600 + min * 60 + sec);
    u64::try_from(secs).ok().map(|s| s * 1000)
}

/// QUOTA.GRANT's arguments after the key: `path policy amount [ID id]
/// [EXPIRES ms | FOR duration | PERIOD] [PRIORITY n] [NOTE text]`.
pub fn grant_args(f: &GrantForm) -> Result<Vec<String>, String> {
    let policy = f.policy.trim();
    if policy.is_empty() {
        return Err("Choose the policy the grant adds to".to_string());
    }
    let amount = f.amount.trim();
    if amount.is_empty() {
        return Err("Give the grant an amount".to_string());
    }
    let mut a = vec![path_of(&f.path), policy.to_string(), amount.to_string()];
    let id = f.id.trim();
    if !id.is_empty() {
        a.extend(["ID".into(), id.into()]);
    }
    match f.expiry.trim() {
        "" | "none" => {}
        "expires" => {
            let when = f.expires.trim();
            if when.is_empty() {
                return Err("Give the date and time the grant expires (UTC)".to_string());
            }
            let Some(ms) = utc_ms(when) else {
                return Err(format!("'{when}' is not a date and time: write it as 2026-03-20T12:00 (UTC)"));
            };
            a.extend(["EXPIRES".into(), ms.to_string()]);
        }
        "for" => {
            let duration = f.for_.trim();
            if duration.is_empty() {
                return Err("Give how long the grant lasts (7d, 720h)".to_string());
            }
            a.extend(["FOR".into(), duration.into()]);
        }
        "period" => a.push("PERIOD".into()),
        other => return Err(format!("'{other}' is not an expiry: none, expires, for or period")),
    }
    let priority = f.priority.trim();
    if !priority.is_empty() {
        a.extend(["PRIORITY".into(), priority.into()]);
    }
    let note = f.note.trim();
    if !note.is_empty() {
        a.extend(["NOTE".into(), note.into()]);
    }
    Ok(a)
}

/// A live grant, as QUOTA.GRANTS shows it, for the list on the grant page.
pub struct GrantRow {
    pub id: String,
    pub amount: String,
    pub remaining: String,
    pub priority: String,
    pub expires: String,
    pub created: String,
    pub note: String,
}

impl GrantRow {
    fn of(g: &Json) -> GrantRow {
        let ms = |f: &str| g.get(f).and_then(Json::as_u64).unwrap_or(0);
        let expires = if text(g, "period") == "1" {
            "end of the period".to_string()
        } else if ms("expires_at") == 0 {
            "never".to_string()
        } else {
            web::fmt_ms(ms("expires_at"))
        };
        GrantRow {
            id: text(g, "id"),
            amount: text(g, "amount"),
            remaining: text(g, "remaining"),
            priority: text(g, "priority"),
            expires,
            created: web::fmt_ms(ms("created_at")),
            note: text(g, "note"),
        }
    }
}

const EXPIRIES: &[(&str, &str)] = &[
    ("none", "lasts until used up"),
    ("expires", "expires at a date and time (UTC)"),
    ("for", "lasts for a duration"),
    ("period", "ends with the current period"),
];

#[derive(Template)]
#[template(path = "edit_grant.html")]
struct GrantPage {
    page: Page,
    key: String,
    tree: String,
    shown: String,
    action: String,
    revoke: String,
    next: String,
    /// This page, where a revoke comes back to.
    here: String,
    form: GrantForm,
    policy_url: String,
    state: Option<Standing>,
    /// The policy is INFLIGHT (takes no grants).
    inflight: bool,
    others: Vec<Other>,
    grants: Vec<GrantRow>,
    error: Option<String>,
    expiries: &'static [(&'static str, &'static str)],
}

async fn grant_page(
    State(app): State<App>,
    uri: Uri,
    web::TreeKey(key): web::TreeKey,
    Query(q): Query<EditorQuery>,
) -> Response {
    let path = path_of(&q.path);
    let form = GrantForm {
        path,
        policy: q.policy.trim().to_string(),
        expiry: "none".to_string(),
        next: q.next,
        ..Default::default()
    };
    grant_view(&app, &uri, &key, form, None).await
}

async fn grant_view(app: &App, uri: &Uri, key: &str, mut form: GrantForm, error: Option<String>) -> Response {
    let path = path_of(&form.path);
    let node = match node(app, key, &path).await {
        Ok(n) => n,
        Err(e) => return web::error_page(app, uri, web::status_of(&e), &e, &tree_at(key, &path)),
    };
    if form.policy.is_empty()
        && let Some(first) = policies(node.as_ref()).first()
    {
        form.policy = text(first, "policy");
    }
    let current = find_policy(node.as_ref(), &form.policy);
    let grants = match &current {
        Some(_) => app
            .quota
            .call(Cmd::Grants, Some(key), &[&path, &form.policy])
            .await
            .ok()
            .and_then(|g| g.as_array().map(|g| g.iter().map(GrantRow::of).collect()))
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let here = editor_url(key, "grant", &path, Some(&form.policy));
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let t = GrantPage {
        page: Page::new(app, format!("Grants of {} on {}", form.policy, web::shown(&path)), Section::Trees, uri),
        key: key.to_string(),
        tree: tree_at(key, &path),
        shown: web::shown(&path),
        action: format!("{}/grant", tree_url(key)),
        revoke: format!("{}/grant/revoke", tree_url(key)),
        next: next_of(form.next.as_deref(), key, &path),
        policy_url: editor_url(key, "policy", &path, Some(&form.policy)),
        inflight: current.as_ref().is_some_and(|p| text(p, "inflight") == "1"),
        state: current.as_ref().map(Standing::of),
        others: others(key, &path, node.as_ref(), "grant", &form.policy),
        here,
        grants,
        form,
        error,
        expiries: EXPIRIES,
    };
    with_status(html(&t), status)
}

async fn grant_post(
    State(app): State<App>,
    uri: Uri,
    web::TreeKey(key): web::TreeKey,
    headers: HeaderMap,
    axum::Form(f): axum::Form<GrantForm>,
) -> Response {
    let path = path_of(&f.path);
    let back = next_of(f.next.as_deref(), &key, &path);
    let result = run(&app, Cmd::Grant, &key, grant_args(&f)).await.map(|r| {
        let grant = r.get("grant").cloned().unwrap_or_default();
        let (id, metric) = (text(&grant, "id"), text(&r, "metric"));
        if text(&r, "duplicate") == "1" {
            format!("Grant {id} was given before: nothing changed.")
        } else {
            format!(
                "Grant {id} of {} {metric} added to policy {} on {}: the allowance is {} now.",
                text(&grant, "amount"),
                f.policy.trim(),
                web::shown(&path),
                text(&r, "limit")
            )
        }
    });
    match result {
        Err(e) if !web::wants_json(&headers) => grant_view(&app, &uri, &key, f, Some(e.message)).await,
        result => written(result, &back, &headers),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RevokeForm {
    path: String,
    policy: String,
    grant: String,
    next: Option<String>,
}

pub fn revoke_args(f: &RevokeForm) -> Result<Vec<String>, String> {
    let (policy, grant) = (f.policy.trim(), f.grant.trim());
    if policy.is_empty() {
        return Err("Which policy? Give its name".to_string());
    }
    if grant.is_empty() {
        return Err("Which grant? Give its id".to_string());
    }
    Ok(vec![path_of(&f.path), policy.to_string(), grant.to_string()])
}

async fn revoke(
    State(app): State<App>,
    web::TreeKey(key): web::TreeKey,
    headers: HeaderMap,
    axum::Form(f): axum::Form<RevokeForm>,
) -> Response {
    let path = path_of(&f.path);
    let result = run(&app, Cmd::Revoke, &key, revoke_args(&f))
        .await
        .map(|r| format!("Grant {} revoked: {} left the allowance.", f.grant.trim(), text(&r, "removed")));
    written(result, &next_of(f.next.as_deref(), &key, &path), &headers)
}

// ----- access rules (QUOTA.ALLOW, QUOTA.DENY, QUOTA.ACCESS … CLEAR) --------------

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct AccessForm {
    pub path: String,
    /// allow | deny
    pub rule: String,
    pub service: String,
    pub model: String,
    pub next: Option<String>,
}

/// QUOTA.ALLOW or QUOTA.DENY and its arguments after the key: `path SERVICE
/// s [MODEL m] [REMOVE]`.
pub fn access_args(f: &AccessForm, remove: bool) -> Result<(Cmd, Vec<String>), String> {
    let cmd = match f.rule.trim() {
        "allow" => Cmd::Allow,
        "deny" => Cmd::Deny,
        _ => return Err("Choose whether the rule allows or denies".to_string()),
    };
    let (service, model) = (f.service.trim(), f.model.trim());
    if service.is_empty() {
        return Err("Give the service the rule names".to_string());
    }
    let mut a = vec![path_of(&f.path), "SERVICE".to_string(), service.to_string()];
    if !model.is_empty() {
        a.extend(["MODEL".into(), model.into()]);
    }
    if remove {
        a.push("REMOVE".to_string());
    }
    Ok((cmd, a))
}

/// Who a rule names, for messages: `openai`, or `openai model gpt-4o`.
fn named(f: &AccessForm) -> String {
    let (service, model) = (f.service.trim(), f.model.trim());
    if model.is_empty() { service.to_string() } else { format!("{service} model {model}") }
}

pub struct Rule {
    pub rule: &'static str,
    pub service: String,
    pub model: String,
}

#[derive(Template)]
#[template(path = "edit_access.html")]
struct AccessPage {
    page: Page,
    key: String,
    tree: String,
    shown: String,
    path: String,
    action: String,
    remove: String,
    clear: String,
    here: String,
    form: AccessForm,
    rules: Vec<Rule>,
    new_path: bool,
    error: Option<String>,
}

async fn access_page(
    State(app): State<App>,
    uri: Uri,
    web::TreeKey(key): web::TreeKey,
    Query(q): Query<EditorQuery>,
) -> Response {
    let form = AccessForm { path: path_of(&q.path), rule: "deny".to_string(), next: q.next, ..Default::default() };
    access_view(&app, &uri, &key, form, None).await
}

async fn access_view(app: &App, uri: &Uri, key: &str, form: AccessForm, error: Option<String>) -> Response {
    let path = path_of(&form.path);
    let node = match node(app, key, &path).await {
        Ok(n) => n,
        Err(e) => return web::error_page(app, uri, web::status_of(&e), &e, &tree_at(key, &path)),
    };
    let mut rules = Vec::new();
    if let Some(access) = node.as_ref().and_then(|n| n.get("access")) {
        for rule in ["allow", "deny"] {
            for entry in access.get(rule).and_then(Json::as_array).into_iter().flatten() {
                rules.push(Rule { rule, service: text(entry, "service"), model: text(entry, "model") });
            }
        }
    }
    // The page stays here after a change unless it was given somewhere else to go.
    let here = editor_url(key, "access", &path, None);
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let t = AccessPage {
        page: Page::new(app, format!("Access rules of {}", web::shown(&path)), Section::Trees, uri),
        key: key.to_string(),
        tree: tree_at(key, &path),
        shown: web::shown(&path),
        action: format!("{}/access", tree_url(key)),
        remove: format!("{}/access/remove", tree_url(key)),
        clear: format!("{}/access/clear", tree_url(key)),
        here: form.next.clone().filter(|n| web::is_local(n)).unwrap_or(here),
        new_path: node.is_none(),
        path,
        rules,
        form,
        error,
    };
    with_status(html(&t), status)
}

async fn access_post(
    State(app): State<App>,
    uri: Uri,
    web::TreeKey(key): web::TreeKey,
    headers: HeaderMap,
    axum::Form(f): axum::Form<AccessForm>,
) -> Response {
    let path = path_of(&f.path);
    let back = next_of(f.next.as_deref(), &key, &path);
    let result = match access_args(&f, false) {
        Ok((cmd, args)) => app.quota.call(cmd, Some(&key), &args_of(&args)).await.map(|r| {
            let list = f.rule.trim();
            if r.as_i64() == Some(0) {
                format!("{} was already on the {list} list of {}.", named(&f), web::shown(&path))
            } else {
                format!("{} added to the {list} list of {}.", named(&f), web::shown(&path))
            }
        }),
        Err(e) => Err(refused(e)),
    };
    match result {
        Err(e) if !web::wants_json(&headers) => access_view(&app, &uri, &key, f, Some(e.message)).await,
        result => written(result, &back, &headers),
    }
}

async fn access_remove(
    State(app): State<App>,
    web::TreeKey(key): web::TreeKey,
    headers: HeaderMap,
    axum::Form(f): axum::Form<AccessForm>,
) -> Response {
    let path = path_of(&f.path);
    let result = match access_args(&f, true) {
        Ok((cmd, args)) => app.quota.call(cmd, Some(&key), &args_of(&args)).await.map(|r| {
            let list = f.rule.trim();
            if r.as_i64() == Some(0) {
                format!("{} was not on the {list} list of {}.", named(&f), web::shown(&path))
            } else {
                format!("{} removed from the {list} list of {}.", named(&f), web::shown(&path))
            }
        }),
        Err(e) => Err(refused(e)),
    };
    written(result, &next_of(f.next.as_deref(), &key, &path), &headers)
}

/// A path, for the buttons that take only one (clear, archive, restore, delete).
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PathForm {
    path: String,
    next: Option<String>,
}

async fn access_clear(
    State(app): State<App>,
    web::TreeKey(key): web::TreeKey,
    headers: HeaderMap,
    axum::Form(f): axum::Form<PathForm>,
) -> Response {
    let path = path_of(&f.path);
    let result = app.quota.call(Cmd::AccessClear, Some(&key), &[&path]).await.map(|n| match n.as_i64() {
        Some(1) => format!("1 access rule removed from {}.", web::shown(&path)),
        Some(n) => format!("{n} access rules removed from {}.", web::shown(&path)),
        None => format!("The access rules of {} are cleared.", web::shown(&path)),
    });
    written(result, &next_of(f.next.as_deref(), &key, &path), &headers)
}

// ----- labels (QUOTA.LABEL) -------------------------------------------------------

#[derive(Deserialize, Default, Clone, Debug)]
#[serde(default)]
pub struct LabelForm {
    pub path: String,
    pub note: String,
    /// Comma-separated.
    pub tags: String,
    pub next: Option<String>,
}

/// QUOTA.LABEL's arguments after the key: `path NOTE text TAGS a,b`, both
/// always given, so an empty field clears (`NOTE ""`, `TAGS ""`).
pub fn label_args(f: &LabelForm) -> Vec<String> {
    let tags = if f.tags.trim().is_empty() { String::new() } else { list_of(&f.tags) };
    vec![path_of(&f.path), "NOTE".into(), f.note.trim().to_string(), "TAGS".into(), tags]
}

#[derive(Template)]
#[template(path = "edit_label.html")]
struct LabelPage {
    page: Page,
    key: String,
    tree: String,
    shown: String,
    action: String,
    next: String,
    form: LabelForm,
    archived: bool,
    new_path: bool,
    error: Option<String>,
}

async fn label_page(
    State(app): State<App>,
    uri: Uri,
    web::TreeKey(key): web::TreeKey,
    Query(q): Query<EditorQuery>,
) -> Response {
    let path = path_of(&q.path);
    label_view(&app, &uri, &key, LabelForm { path, next: q.next, ..Default::default() }, true, None).await
}

/// The label editor; `fill` takes the note and tags from the node (a fresh
/// page), else keeps what was typed (a refused form).
async fn label_view(
    app: &App,
    uri: &Uri,
    key: &str,
    mut form: LabelForm,
    fill: bool,
    error: Option<String>,
) -> Response {
    let path = path_of(&form.path);
    let node = match node(app, key, &path).await {
        Ok(n) => n,
        Err(e) => return web::error_page(app, uri, web::status_of(&e), &e, &tree_at(key, &path)),
    };
    if fill && let Some(n) = &node {
        form.note = text(n, "note");
        form.tags = n
            .get("tags")
            .and_then(Json::as_array)
            .map(|t| t.iter().filter_map(Json::as_str).collect::<Vec<_>>().join(","))
            .unwrap_or_default();
    }
    let status = if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let t = LabelPage {
        page: Page::new(app, format!("Labels of {}", web::shown(&path)), Section::Trees, uri),
        key: key.to_string(),
        tree: tree_at(key, &path),
        shown: web::shown(&path),
        action: format!("{}/label", tree_url(key)),
        next: next_of(form.next.as_deref(), key, &path),
        archived: node.as_ref().is_some_and(|n| text(n, "archived") == "1"),
        new_path: node.is_none(),
        form,
        error,
    };
    with_status(html(&t), status)
}

async fn label_post(
    State(app): State<App>,
    uri: Uri,
    web::TreeKey(key): web::TreeKey,
    headers: HeaderMap,
    axum::Form(f): axum::Form<LabelForm>,
) -> Response {
    let path = path_of(&f.path);
    let back = next_of(f.next.as_deref(), &key, &path);
    let result = run(&app, Cmd::Label, &key, Ok(label_args(&f))).await.map(|r| {
        let tags = r.get("tags").and_then(Json::as_array).map_or(0, Vec::len);
        match (text(&r, "note").is_empty(), tags) {
            (true, 0) => format!("The labels of {} are cleared.", web::shown(&path)),
            _ => format!("Labels of {} saved.", web::shown(&path)),
        }
    });
    match result {
        Err(e) if !web::wants_json(&headers) => label_view(&app, &uri, &key, f, false, Some(e.message)).await,
        result => written(result, &back, &headers),
    }
}

// ----- a path: archive, restore, delete -------------------------------------------

async fn archive(
    State(app): State<App>,
    web::TreeKey(key): web::TreeKey,
    headers: HeaderMap,
    axum::Form(f): axum::Form<PathForm>,
) -> Response {
    let path = path_of(&f.path);
    let result = app.quota.call(Cmd::Archive, Some(&key), &[&path]).await.map(|r| {
        if r.as_i64() == Some(0) {
            format!("{} was already archived.", web::shown(&path))
        } else {
            format!("{} archived: it and its subtree refuse new reservations and charges.", web::shown(&path))
        }
    });
    written(result, &next_of(f.next.as_deref(), &key, &path), &headers)
}

async fn restore(
    State(app): State<App>,
    web::TreeKey(key): web::TreeKey,
    headers: HeaderMap,
    axum::Form(f): axum::Form<PathForm>,
) -> Response {
    let path = path_of(&f.path);
    let result = app.quota.call(Cmd::Restore, Some(&key), &[&path]).await.map(|r| {
        if r.as_i64() == Some(0) {
            format!("{} was not archived itself: nothing changed.", web::shown(&path))
        } else {
            format!("{} restored: it takes requests again.", web::shown(&path))
        }
    });
    written(result, &next_of(f.next.as_deref(), &key, &path), &headers)
}

/// DELPATH; success goes to the parent (the path is gone), an error back
/// to the path.
async fn delete_path(
    State(app): State<App>,
    web::TreeKey(key): web::TreeKey,
    headers: HeaderMap,
    axum::Form(f): axum::Form<PathForm>,
) -> Response {
    let path = path_of(&f.path);
    let result = app.quota.call(Cmd::DelPath, Some(&key), &[&path]).await.map(|n| match n.as_i64() {
        Some(1) => format!("{} removed.", web::shown(&path)),
        Some(n) => format!("{} and its subtree removed ({n} paths).", web::shown(&path)),
        None => format!("{} removed.", web::shown(&path)),
    });
    let back = match (&result, f.next.as_deref()) {
        (_, Some(n)) if web::is_local(n.trim()) => n.trim().to_string(),
        (Ok(_), _) => tree_at(&key, &parent(&path)),
        (Err(_), _) => tree_at(&key, &path),
    };
    written(result, &back, &headers)
}

// ----- holds (QUOTA.RELEASE, QUOTA.EXTEND) ----------------------------------------

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct HoldForm {
    path: String,
    id: String,
    ttl_ms: String,
    next: Option<String>,
}

pub fn release_args(f: &HoldForm) -> Result<Vec<String>, String> {
    let id = f.id.trim();
    if id.is_empty() {
        return Err("Which hold? Give its id".to_string());
    }
    Ok(vec![id.to_string()])
}

pub fn extend_args(f: &HoldForm) -> Result<Vec<String>, String> {
    let mut a = release_args(f)?;
    let ttl = f.ttl_ms.trim();
    if ttl.is_empty() {
        return Err("Give the hold's new time to live in ms (from now)".to_string());
    }
    a.push(ttl.to_string());
    Ok(a)
}

async fn release(
    State(app): State<App>,
    web::TreeKey(key): web::TreeKey,
    headers: HeaderMap,
    axum::Form(f): axum::Form<HoldForm>,
) -> Response {
    let path = path_of(&f.path);
    let id = f.id.trim();
    let result = run(&app, Cmd::Release, &key, release_args(&f)).await.map(|r| {
        if text(&r, "expired") == "1" {
            format!("Hold {id} had already expired: nothing to give back.")
        } else if text(&r, "duplicate") == "1" {
            format!("Hold {id} was already released.")
        } else {
            format!("Hold {id} released.")
        }
    });
    written(result, &next_of(f.next.as_deref(), &key, &path), &headers)
}

async fn extend(
    State(app): State<App>,
    web::TreeKey(key): web::TreeKey,
    headers: HeaderMap,
    axum::Form(f): axum::Form<HoldForm>,
) -> Response {
    let path = path_of(&f.path);
    let id = f.id.trim();
    let result =
        run(&app, Cmd::Extend, &key, extend_args(&f)).await.map(|r| match r.get("expires_at").and_then(Json::as_u64) {
            Some(ms) => format!("Hold {id} now expires at {}.", web::fmt_ms(ms)),
            None => format!("Hold {id} extended."),
        });
    written(result, &next_of(f.next.as_deref(), &key, &path), &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A form's fields as (name, value) pairs.
    type Fields = &'static [(&'static str, &'static str)];

    fn policy(fields: &[(&str, &str)]) -> PolicyForm {
        let mut f = PolicyForm::default();
        for (k, v) in fields {
            let v = v.to_string();
            match *k {
                "path" => f.path = v,
                "policy" => f.policy = v,
                "metric" => f.metric = v,
                "limit" => f.limit = v,
                "window" => f.window = v,
                "rolling" => f.rolling = v,
                "anchor" => f.anchor = v,
                "tz" => f.tz = v,
                "mode" => f.mode = v,
                "warn" => f.warn = v,
                "rollover" => f.rollover = v,
                "service" => f.service = v,
                "model" => f.model = v,
                "low" => f.low = v,
                "inflight" => f.inflight = v,
                other => panic!("no field {other}"),
            }
        }
        f
    }

    const BASE: &[(&str, &str)] =
        &[("path", "/projects/p1"), ("policy", "monthly"), ("metric", "credits"), ("limit", "100")];

    #[test]
    fn policy_fields_become_set_arguments() {
        // extra fields (on top of BASE), the arguments after path policy METRIC credits LIMIT 100
        let rows: &[(Fields, &[&str])] = &[
            (&[], &[]),
            (&[("window", "none"), ("mode", "")], &[]),
            (&[("window", "month")], &["WINDOW", "month"]),
            (&[("window", "month"), ("anchor", "15")], &["WINDOW", "month", "ANCHOR", "15"]),
            // The anchor counts only for a week, month or year, the zone
            // for a day, week, month or year, the duration only for rolling.
            (&[("window", "day"), ("anchor", "15"), ("rolling", "30d")], &["WINDOW", "day"]),
            (
                &[("window", "week"), ("anchor", " sunday "), ("tz", " +05:30 ")],
                &["WINDOW", "week", "ANCHOR", "sunday", "TZ", "+05:30"],
            ),
            (
                &[("window", "year"), ("anchor", "04-01"), ("tz", "America/New_York")],
                &["WINDOW", "year", "ANCHOR", "04-01", "TZ", "America/New_York"],
            ),
            (&[("window", "day"), ("tz", "Africa/Lagos")], &["WINDOW", "day", "TZ", "Africa/Lagos"]),
            (&[("window", "hour"), ("tz", "Africa/Lagos"), ("anchor", "sunday")], &["WINDOW", "hour"]),
            (&[("window", "rolling"), ("rolling", "1d"), ("tz", "Africa/Lagos")], &["WINDOW", "rolling", "1d"]),
            (&[("window", "none"), ("tz", "Africa/Lagos")], &[]),
            (&[("window", "rolling"), ("rolling", " 30d "), ("anchor", "3")], &["WINDOW", "rolling", "30d"]),
            (&[("mode", "block"), ("warn", "50, 75 ,90")], &["MODE", "block", "WARN", "50,75,90"]),
            (&[("rollover", "200"), ("low", "0")], &["ROLLOVER", "200", "LOW", "0"]),
            (&[("service", "openai")], &["SERVICE", "openai"]),
            (&[("service", "openai"), ("model", "gpt-4o")], &["SERVICE", "openai", "MODEL", "gpt-4o"]),
            (&[("inflight", "1"), ("mode", "strict")], &["MODE", "strict", "INFLIGHT"]),
            (&[("inflight", "")], &[]),
            // Text that looks like keywords or has spaces stays one argument each.
            (&[("service", "a MODEL b"), ("warn", "80 INFLIGHT")], &["WARN", "80 INFLIGHT", "SERVICE", "a MODEL b"]),
            (&[("mode", "LIMIT 5"), ("low", "LOW")], &["MODE", "LIMIT 5", "LOW", "LOW"]),
            (&[("window", "rolling"), ("rolling", "30d INFLIGHT")], &["WINDOW", "rolling", "30d INFLIGHT"]),
        ];
        for (extra, tail) in rows {
            let mut fields = BASE.to_vec();
            fields.extend_from_slice(extra);
            let mut want = vec!["/projects/p1", "monthly", "METRIC", "credits", "LIMIT", "100"];
            want.extend_from_slice(tail);
            assert_eq!(set_args(&policy(&fields)).unwrap(), want, "{extra:?}");
        }
    }

    #[test]
    fn keyword_like_values_stay_in_their_place() {
        // path, policy, metric, limit: the arguments as they go
        let rows = [
            ("", "LIMIT", "credits", "100", vec!["/", "LIMIT", "METRIC", "credits", "LIMIT", "100"]),
            (
                "a b",
                "my policy",
                "METRIC",
                "1 WINDOW day",
                vec!["a b", "my policy", "METRIC", "METRIC", "LIMIT", "1 WINDOW day"],
            ),
            ("  /x ", " p ", " usd ", " 0.5 ", vec!["/x", "p", "METRIC", "usd", "LIMIT", "0.5"]),
        ];
        for (path, name, metric, limit, want) in rows {
            let f = policy(&[("path", path), ("policy", name), ("metric", metric), ("limit", limit)]);
            assert_eq!(set_args(&f).unwrap(), want, "{path} {name} {metric} {limit}");
        }
    }

    #[test]
    fn a_policy_form_is_refused_plainly() {
        // fields, message
        let rows: &[(Fields, &str)] = &[
            (&[("metric", "credits"), ("limit", "1")], "Give the policy a name"),
            (&[("policy", "  "), ("metric", "credits"), ("limit", "1")], "Give the policy a name"),
            (&[("policy", "p"), ("limit", "1")], "Give the policy a metric (credits, usd, input_tokens…)"),
            (&[("policy", "p"), ("metric", "credits")], "Give the policy a limit"),
            (
                &[("policy", "p"), ("metric", "m"), ("limit", "1"), ("window", "rolling")],
                "Give the rolling window a duration (30d, 24h, 15m)",
            ),
            (
                &[("policy", "p"), ("metric", "m"), ("limit", "1"), ("model", "gpt")],
                "A model filter needs its service: give the service too",
            ),
        ];
        for (fields, message) in rows {
            assert_eq!(set_args(&policy(fields)).unwrap_err(), *message, "{fields:?}");
        }
    }

    #[test]
    fn a_policy_reads_back_into_its_form() {
        let p = serde_json::json!({
            "policy": "monthly", "metric": "credits", "mode": "block", "window": "rolling 30d",
            "limit": "150", "used": "0", "warn": [50, 90], "rollover": "200", "service": "openai",
            "model": "gpt", "low": "5", "granted": "30", "base_limit": "100", "source": "tree"
        });
        let f = form_of("projects/p1", &p);
        let args = set_args(&f).unwrap();
        assert_eq!(
            args,
            [
                "projects/p1",
                "monthly",
                "METRIC",
                "credits",
                "LIMIT",
                "100",
                "WINDOW",
                "rolling",
                "30d",
                "MODE",
                "block",
                "WARN",
                "50,90",
                "ROLLOVER",
                "200",
                "SERVICE",
                "openai",
                "MODEL",
                "gpt",
                "LOW",
                "5"
            ]
        );
        let p = serde_json::json!({"policy": "c", "metric": "requests", "mode": "strict", "window": "month",
            "anchor": 15, "limit": "3", "warn": [80, 90], "inflight": 1});
        let f = form_of("/", &p);
        assert_eq!(
            (f.window.as_str(), f.anchor.as_str(), f.inflight.as_str(), f.limit.as_str()),
            ("month", "15", "1", "3")
        );
    }

    fn grant(fields: &[(&str, &str)]) -> GrantForm {
        let mut f = GrantForm { path: "/".into(), policy: "wallet".into(), amount: "50".into(), ..Default::default() };
        for (k, v) in fields {
            let v = v.to_string();
            match *k {
                "path" => f.path = v,
                "policy" => f.policy = v,
                "amount" => f.amount = v,
                "id" => f.id = v,
                "expiry" => f.expiry = v,
                "expires" => f.expires = v,
                "for" => f.for_ = v,
                "priority" => f.priority = v,
                "note" => f.note = v,
                other => panic!("no field {other}"),
            }
        }
        f
    }

    #[test]
    fn grant_fields_become_grant_arguments() {
        // fields, the arguments after "/ wallet 50"
        let rows: &[(Fields, &[&str])] = &[
            (&[], &[]),
            (&[("expiry", "none"), ("expires", "2026-03-20T12:00"), ("for", "7d")], &[]),
            (&[("expiry", "expires"), ("expires", "2026-03-20T12:00")], &["EXPIRES", "1774008000000"]),
            (&[("expiry", "for"), ("for", "7d"), ("expires", "junk")], &["FOR", "7d"]),
            (&[("expiry", "period")], &["PERIOD"]),
            (&[("id", "order-17"), ("priority", "10")], &["ID", "order-17", "PRIORITY", "10"]),
            (&[("note", "Spring promotion, 50 free")], &["NOTE", "Spring promotion, 50 free"]),
            // Keyword-like text is one argument in its place.
            (&[("note", "PERIOD"), ("id", "EXPIRES 1")], &["ID", "EXPIRES 1", "NOTE", "PERIOD"]),
            (&[("expiry", "for"), ("for", "7d PRIORITY 0")], &["FOR", "7d PRIORITY 0"]),
        ];
        for (fields, tail) in rows {
            let mut want = vec!["/", "wallet", "50"];
            want.extend_from_slice(tail);
            assert_eq!(grant_args(&grant(fields)).unwrap(), want, "{fields:?}");
        }
        let f = grant(&[("amount", "LIMIT"), ("policy", "a b")]);
        assert_eq!(grant_args(&f).unwrap(), ["/", "a b", "LIMIT"]);
    }

    #[test]
    fn a_grant_form_is_refused_plainly() {
        // fields, message
        let rows: &[(Fields, &str)] = &[
            (&[("policy", "")], "Choose the policy the grant adds to"),
            (&[("amount", " ")], "Give the grant an amount"),
            (&[("expiry", "expires")], "Give the date and time the grant expires (UTC)"),
            (
                &[("expiry", "expires"), ("expires", "2026-02-30T10:00")],
                "'2026-02-30T10:00' is not a date and time: write it as 2026-03-20T12:00 (UTC)",
            ),
            (&[("expiry", "for")], "Give how long the grant lasts (7d, 720h)"),
            (&[("expiry", "soon")], "'soon' is not an expiry: none, expires, for or period"),
        ];
        for (fields, message) in rows {
            assert_eq!(grant_args(&grant(fields)).unwrap_err(), *message, "{fields:?}");
        }
    }

    #[test]
    fn utc_dates_parse_exactly() {
        // text, Unix ms
        let rows = [
            ("1970-01-01T00:00", Some(0)),
            ("2026-03-14T09:30", Some(1_773_480_600_000)),
            ("2026-03-14 09:30:15", Some(1_773_480_615_000)),
            ("2026-03-14T09:30:00Z", Some(1_773_480_600_000)),
            ("2000-02-29T00:00", Some(951_782_400_000)),
            ("2100-02-29T00:00", None),
            ("2026-13-01T00:00", None),
            ("2026-03-14T24:00", None),
            ("2026-03-14", None),
            ("2026-3-14T09:30", None),
            ("2026-03-14T09:30:00:00", None),
            ("+026-03-14T09:30", None),
            ("1969-12-31T23:59", None),
            ("tomorrow", None),
            ("", None),
        ];
        for (s, ms) in rows {
            assert_eq!(utc_ms(s), ms, "{s}");
        }
        for ms in [0u64, 951_782_400_000, 1_773_480_600_000, 4_102_444_800_000] {
            let shown = web::fmt_ms(ms);
            let iso = shown.trim_end_matches(" UTC").replacen(' ', "T", 1);
            assert_eq!(utc_ms(&iso), Some(ms), "{iso}");
        }
    }

    #[test]
    fn access_fields_become_allow_and_deny() {
        // rule, service, model, remove, command, arguments after the key
        let rows = [
            ("allow", "openai", "", false, Cmd::Allow, vec!["/a", "SERVICE", "openai"]),
            ("deny", "openai", "gpt-4o", false, Cmd::Deny, vec!["/a", "SERVICE", "openai", "MODEL", "gpt-4o"]),
            ("deny", "openai", "", true, Cmd::Deny, vec!["/a", "SERVICE", "openai", "REMOVE"]),
            ("allow", "x", "y", true, Cmd::Allow, vec!["/a", "SERVICE", "x", "MODEL", "y", "REMOVE"]),
            ("allow", "REMOVE", "MODEL x", false, Cmd::Allow, vec!["/a", "SERVICE", "REMOVE", "MODEL", "MODEL x"]),
        ];
        for (rule, service, model, remove, cmd, want) in rows {
            let f = AccessForm {
                path: "/a".into(),
                rule: rule.into(),
                service: service.into(),
                model: model.into(),
                next: None,
            };
            assert_eq!(access_args(&f, remove).unwrap(), (cmd, want.iter().map(|s| s.to_string()).collect()));
        }
        let f = AccessForm { rule: "maybe".into(), service: "s".into(), ..Default::default() };
        assert_eq!(access_args(&f, false).unwrap_err(), "Choose whether the rule allows or denies");
        let f = AccessForm { rule: "deny".into(), model: "m".into(), ..Default::default() };
        assert_eq!(access_args(&f, false).unwrap_err(), "Give the service the rule names");
    }

    #[test]
    fn labels_always_give_note_and_tags() {
        // note, tags, arguments
        let rows = [
            ("GPU team", "ml, gpu", vec!["/p", "NOTE", "GPU team", "TAGS", "ml,gpu"]),
            ("", "", vec!["/p", "NOTE", "", "TAGS", ""]),
            ("TAGS x", " ", vec!["/p", "NOTE", "TAGS x", "TAGS", ""]),
            ("  a note  ", "NOTE", vec!["/p", "NOTE", "a note", "TAGS", "NOTE"]),
        ];
        for (note, tags, want) in rows {
            let f = LabelForm { path: "/p".into(), note: note.into(), tags: tags.into(), next: None };
            assert_eq!(label_args(&f), want, "{note} {tags}");
        }
    }

    #[test]
    fn small_forms() {
        let r = PolicyRef { path: "".into(), policy: " monthly ".into(), next: None };
        assert_eq!(policy_ref_args(&r).unwrap(), ["/", "monthly"]);
        let r = PolicyRef { path: "/a".into(), policy: "".into(), next: None };
        assert_eq!(policy_ref_args(&r).unwrap_err(), "Which policy? Give its name");
        let f = RevokeForm { path: "a".into(), policy: "w".into(), grant: "19bbef3b000-3".into(), next: None };
        assert_eq!(revoke_args(&f).unwrap(), ["a", "w", "19bbef3b000-3"]);
        let f = RevokeForm { path: "a".into(), policy: "w".into(), grant: " ".into(), next: None };
        assert_eq!(revoke_args(&f).unwrap_err(), "Which grant? Give its id");
        let h = HoldForm { path: "/".into(), id: "h-1".into(), ttl_ms: "60000".into(), next: None };
        assert_eq!(release_args(&h).unwrap(), ["h-1"]);
        assert_eq!(extend_args(&h).unwrap(), ["h-1", "60000"]);
        let h = HoldForm { id: "h-1".into(), ..Default::default() };
        assert_eq!(extend_args(&h).unwrap_err(), "Give the hold's new time to live in ms (from now)");
        let h = HoldForm::default();
        assert_eq!(release_args(&h).unwrap_err(), "Which hold? Give its id");
    }

    #[test]
    fn next_is_a_local_page_only() {
        // next, where a write on acme at projects/p1 goes
        let rows = [
            (None, "/trees/acme?path=projects%2Fp1"),
            (Some(""), "/trees/acme?path=projects%2Fp1"),
            (Some("/trees/acme/access?path=x"), "/trees/acme/access?path=x"),
            (Some("//evil.example/x"), "/trees/acme?path=projects%2Fp1"),
            (Some("/\\evil.example"), "/trees/acme?path=projects%2Fp1"),
            (Some("https://evil.example"), "/trees/acme?path=projects%2Fp1"),
            (Some("javascript:alert(1)"), "/trees/acme?path=projects%2Fp1"),
        ];
        for (next, want) in rows {
            assert_eq!(next_of(next, "acme", "projects/p1"), want, "{next:?}");
        }
    }

    #[test]
    fn paths_for_people() {
        // typed, sent, shown, parent
        let rows = [
            ("", "/", "/", "/"),
            ("/", "/", "/", "/"),
            ("projects/p1", "projects/p1", "/projects/p1", "/projects"),
            (" /projects/p1/ ", "/projects/p1/", "/projects/p1/", "/projects"),
            ("members", "members", "/members", "/"),
        ];
        for (typed, sent, seen, up) in rows {
            assert_eq!(path_of(typed), sent);
            assert_eq!(web::shown(&path_of(typed)), seen);
            assert_eq!(parent(&path_of(typed)), up);
        }
    }
}
