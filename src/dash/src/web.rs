//! What every page shares: the application state, the page frame, flash
//! messages, the answer to a form, formatting of amounts and times, and the
//! guard that keeps the dashboard to its owner (token, same-origin writes,
//! loopback Host names).

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use askama::Template;
use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use rust_decimal::Decimal;
use serde_json::Value as Json;

use crate::quota::{Quota, QuotaError};

/// The cookie the login page sets in token mode: not the token itself but
/// [`session_of`] it, so the cookie (which a browser also sends to other
/// web apps on the same host name, cookies are not kept apart by port)
/// never reveals the token.
const COOKIE: &str = "quota_dash_session";

/// The key that signs the messages a page shows after a write (`?done=`,
/// `?error=` with `sig`): random for each run of the dashboard, so a link
/// from elsewhere cannot make the dashboard say something it did not say.
static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();

/// Draws the signing key from the system's random source, once at start.
pub fn init_secret() -> Result<(), String> {
    use std::io::Read;
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| format!("cannot read /dev/urandom for a signing key: {e}"))?;
    let _ = SECRET.set(key);
    Ok(())
}

fn mac(key: &[u8], parts: &[&[u8]]) -> String {
    use hmac::{Mac, digest::KeyInit};
    let Ok(mut m) = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key) else {
        return String::new();
    };
    for p in parts {
        m.update(p);
        m.update(&[0]);
    }
    m.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// The signature of a message shown after a write ("" before init_secret).
pub fn sign(kind: &str, message: &str) -> String {
    SECRET.get().map_or_else(String::new, |k| mac(k, &[kind.as_bytes(), message.as_bytes()])[..32].to_string())
}

/// The session cookie's value for a token: HMAC-SHA-256 keyed by the token,
/// so it stays valid across restarts and changes when the token does.
pub fn session_of(token: &str) -> String {
    mac(token.as_bytes(), &[b"quota-dash session"])
}

pub struct Inner {
    pub quota: Quota,
    pub token: Option<String>,
    /// How many live event feeds are open (bounded by events.rs).
    pub feeds: std::sync::atomic::AtomicUsize,
}

/// The state every handler gets: `app.quota` is the way to Redis.
#[derive(Clone)]
pub struct App(pub Arc<Inner>);

impl Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Top-level sections, for the navigation bar.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Trees,
    Plans,
    Prices,
    Events,
    Alerts,
}

/// The frame around every page: title, which section is open, the server
/// and backend, read-only mode and the flash message of the last write.
pub struct Page {
    pub title: String,
    pub section: Section,
    pub server: String,
    pub backend: &'static str,
    pub read_only: bool,
    pub token: bool,
    /// ("done" | "error", text) from the query string.
    pub flash: Option<(String, String)>,
}

impl Page {
    pub fn new(app: &App, title: impl Into<String>, section: Section, uri: &Uri) -> Page {
        Page {
            title: title.into(),
            section,
            server: app.quota.server.clone(),
            backend: app.quota.backend.name(),
            read_only: app.quota.read_only,
            token: app.token.is_some(),
            flash: flash_of(uri),
        }
    }

    /// The open section's name, for the navigation bar: trees, plans,
    /// prices, events or alerts.
    pub fn nav(&self) -> &'static str {
        match self.section {
            Section::Trees => "trees",
            Section::Plans => "plans",
            Section::Prices => "prices",
            Section::Events => "events",
            Section::Alerts => "alerts",
        }
    }
}

/// The message of the last write, when the URL carries one this dashboard
/// signed (a link from elsewhere cannot put words in its mouth).
fn flash_of(uri: &Uri) -> Option<(String, String)> {
    let q: Query<HashMap<String, String>> = Query::try_from_uri(uri).ok()?;
    let sig = q.get("sig")?;
    let (kind, text) = match (q.get("error"), q.get("done")) {
        (Some(e), _) => ("error", e),
        (None, Some(d)) => ("done", d),
        _ => return None,
    };
    let expected = sign(kind, text);
    (!expected.is_empty() && same_bytes(sig.as_bytes(), expected.as_bytes())).then(|| (kind.to_string(), text.clone()))
}

/// Renders a template as an HTML page (a 500 with the reason if it fails).
pub fn html(t: &impl Template) -> Response {
    match t.render() {
        Ok(body) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("the page could not be drawn: {e}")).into_response(),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    page: Page,
    message: String,
    back: String,
}

/// A page that says what went wrong (a command's own message), with a way back.
pub fn error_page(app: &App, uri: &Uri, status: StatusCode, e: &QuotaError, back: &str) -> Response {
    let page = Page::new(app, "Something went wrong", Section::Trees, uri);
    let mut r = html(&ErrorPage { page, message: e.message.clone(), back: back.to_string() });
    *r.status_mut() = status;
    r
}

/// The status for an error reading a page: 404 for a missing path, 403
/// for refusals, 502 when Redis failed.
pub fn status_of(e: &QuotaError) -> StatusCode {
    match e.kind.as_str() {
        "NOTFOUND" => StatusCode::NOT_FOUND,
        "NOPERM" | "READONLY" => StatusCode::FORBIDDEN,
        "REDIS" => StatusCode::BAD_GATEWAY,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// Whether the request came from app.js's `form[data-ajax]` (it asks for JSON).
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"))
}

/// The answer to a form that ran one command: back to `back` with
/// `?done=` or `?error=` (the command's own message), or JSON for app.js
/// (`next` is `back`: where a form with an empty `data-next` goes).
pub fn written(result: Result<String, QuotaError>, back: &str, headers: &HeaderMap) -> Response {
    let json = wants_json(headers);
    match result {
        Ok(done) if json => {
            let answer = serde_json::json!({"ok": true, "message": done, "sig": sign("done", &done), "next": local_or(back, "/trees")});
            axum::Json(answer).into_response()
        }
        Err(e) if json => {
            (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(serde_json::json!({"ok": false, "error": e.message})))
                .into_response()
        }
        Ok(done) => Redirect::to(&with_flash(&local_or(back, "/trees"), "done", &done)).into_response(),
        Err(e) => Redirect::to(&with_flash(&local_or(back, "/trees"), "error", &e.message)).into_response(),
    }
}

/// A form's own refusal (a field the command would refuse anyway, said earlier
/// and more plainly), as a QuotaError so `written` shows it like the others.
pub fn refused(message: impl Into<String>) -> QuotaError {
    QuotaError { kind: "ERR".to_string(), message: message.into() }
}

fn with_query(url: &str, name: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{name}={}", enc(value))
}

/// `url` with a signed message to show: `name` is "done" or "error".
pub fn with_flash(url: &str, name: &str, value: &str) -> String {
    format!("{}&sig={}", with_query(url, name, value), sign(name, value))
}

/// Percent-encodes a URL component (path segment or query value): every
/// byte but the unreserved ones.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/trees/<key>` with the key encoded as one path segment; a key made only
/// of dots or starting with `~` gets a `~` in front ([`TreeKey`] drops it).
pub fn tree_url(key: &str) -> String {
    let escape = if needs_escape(key) { "~" } else { "" };
    format!("/trees/{escape}{}", enc(key))
}

/// A reply field as text ("" when missing or null; numbers as written).
pub fn text(v: &Json, field: &str) -> String {
    match v.get(field) {
        Some(Json::Null) | None => String::new(),
        Some(value) => value_text(value),
    }
}

/// A reply value as text: a string as it is, anything else as JSON.
pub fn value_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A path as pages say it, always with its leading `/` (`/projects/p1`;
/// replies write paths other than the root without it).
pub fn shown(path: &str) -> String {
    if path.starts_with('/') { path.to_string() } else { format!("/{path}") }
}

/// The CSS class of a status: healthy, warning, critical, over or none.
pub fn status_class(status: &str) -> &'static str {
    match status {
        "healthy" => "status-healthy",
        "warning" => "status-warning",
        "critical" => "status-critical",
        "over" => "status-over",
        _ => "status-none",
    }
}

/// Widths (whole percent of the bar) of used and held against the limit,
/// exact decimals, clamped to the bar: used first, held after it.
pub fn bar(used: &str, held: &str, limit: &str) -> (u32, u32) {
    let d = |s: &str| s.parse::<Decimal>().unwrap_or_default().max(Decimal::ZERO);
    let (used, held, limit) = (d(used), d(held), d(limit));
    if limit <= Decimal::ZERO {
        return if used > Decimal::ZERO { (100, 0) } else { (0, 0) };
    }
    // No operator that can overflow: a tiny limit and a huge use is 100 %.
    let pct = |x: Option<Decimal>| -> u32 {
        let Some(p) = x.and_then(|x| x.checked_mul(Decimal::ONE_HUNDRED)).and_then(|x| x.checked_div(limit)) else {
            return 100;
        };
        let p = p.min(Decimal::ONE_HUNDRED).round();
        u32::try_from(p.mantissa() / 10i128.pow(p.scale())).unwrap_or(100)
    };
    let u = pct(Some(used));
    let h = pct(used.checked_add(held)).saturating_sub(u);
    (u, h.min(100 - u))
}

/// Unix ms as `2026-11-27 03:15:00 UTC` (the commands' windows are UTC).
pub fn fmt_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Unix ms as a date, `2026-11-27`.
pub fn fmt_day(ms: u64) -> String {
    let (y, m, d) = civil_from_days((ms / 86_400_000) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 as (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days in month `m` of year `y` (proleptic Gregorian).
fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A `YYYY-MM-DD` date (four, two and two digits, a real day) as days
/// since 1970-01-01 (negative before it). None when it is not one.
pub fn parse_day(s: &str) -> Option<i64> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let num = |v: &str| -> Option<u32> { v.bytes().all(|b| b.is_ascii_digit()).then(|| v.parse().ok()).flatten() };
    let (y, m, d) = (i64::from(num(y)?), num(m)?, num(d)?);
    ((1..=12).contains(&m) && d != 0 && d <= days_in_month(y, m)).then(|| days_from_civil(y, m, d))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm, the inverse of [`civil_from_days`]).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A span of time for people: `4 m 10 s`, `2 h 5 m`, `3 d 4 h`.
pub fn fmt_span(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{}.{} s", s, ms % 1000 / 100),
        60..3600 => format!("{} m {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} m", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies.split(';').find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('=').map(str::to_string))
}

fn has_token(headers: &HeaderMap, token: &str) -> bool {
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        Some(b) => same_bytes(b.as_bytes(), token.as_bytes()),
        None => cookie_token(headers).is_some_and(|c| same_bytes(c.as_bytes(), session_of(token).as_bytes())),
    }
}

/// A Host header naming this machine's loopback: without a token the
/// dashboard answers only to those, so a web page elsewhere cannot reach it
/// through a DNS name rebound to 127.0.0.1.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// A write from a page of this dashboard, not from a page elsewhere that
/// posts to it (cross-site request forgery).
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    match (origin, site) {
        (Some(origin), _) if origin != "null" => {
            !host.is_empty()
                && (origin.strip_prefix("http://") == Some(host) || origin.strip_prefix("https://") == Some(host))
        }
        // `Origin: null`: a plain (not fetch) form of a page sent with
        // `Referrer-Policy: no-referrer` (some browsers, some settings), or a
        // sandboxed frame elsewhere; Sec-Fetch-Site tells them apart.
        (_, Some(site)) => site == "same-origin" || site == "none",
        (Some(_), None) => false,
        // Neither header: not a browser (curl, a script), which no other
        // site can drive.
        (None, None) => true,
    }
}

/// Checks every request: the Host (without a token), the token (with one),
/// and that writes come from this dashboard's own pages. Adds the headers
/// that keep pages from being framed or running scripts from elsewhere.
pub async fn guard(State(app): State<App>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let path = req.uri().path();
    let refuse = |status: StatusCode, text: &str| (status, text.to_string()).into_response();
    let mut response = if app.token.is_none() && !loopback_host(headers) {
        refuse(
            StatusCode::FORBIDDEN,
            "this dashboard answers only to localhost, 127.0.0.1 and [::1] (start it with --token to serve other names)",
        )
    } else if req.method() != Method::GET && req.method() != Method::HEAD && !same_origin(headers) {
        refuse(StatusCode::FORBIDDEN, "refused: a change must come from this dashboard's own pages")
    } else if let Some(token) = &app.token
        && !has_token(headers, token)
        && path != "/login"
        && !path.starts_with("/assets/")
    {
        let page = req.method() == Method::GET
            && headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
        if page {
            let next = req.uri().path_and_query().map_or("/", |p| p.as_str());
            Redirect::to(&with_query("/login", "next", next)).into_response()
        } else {
            refuse(StatusCode::UNAUTHORIZED, "this dashboard needs its token (Authorization: Bearer …)")
        }
    } else {
        next.run(req).await
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

#[derive(Template)]
#[template(path = "login.html")]
struct Login {
    page: Page,
    next: String,
    wrong: bool,
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// A path on this dashboard, never `//elsewhere`, a full URL, or text a
/// browser would read as one once it drops tabs and newlines (`/\t/x`):
/// no control characters, spaces or backslashes anywhere.
pub fn is_local(next: &str) -> bool {
    next.starts_with('/')
        && !next.starts_with("//")
        && !next.chars().any(|c| c.is_control() || c.is_whitespace() || c == '\\')
}

/// `next` when it is local, else `fallback`.
pub fn local_or(next: &str, fallback: &str) -> String {
    if is_local(next) { next.to_string() } else { fallback.to_string() }
}

fn local_next(next: Option<&str>) -> String {
    local_or(next.unwrap_or(""), "/trees")
}

pub async fn login_form(State(app): State<App>, uri: Uri, Query(q): Query<LoginQuery>) -> Response {
    if app.token.is_none() {
        // Nothing to sign in to: this dashboard was started without a token.
        return Redirect::to(&local_next(q.next.as_deref())).into_response();
    }
    let page = Page::new(&app, "Sign in", Section::Trees, &uri);
    html(&Login { page, next: local_next(q.next.as_deref()), wrong: false })
}

#[derive(serde::Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Forgets the token's cookie.
pub async fn logout() -> Response {
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("quota_dash_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

pub async fn login(State(app): State<App>, uri: Uri, axum::Form(f): axum::Form<LoginForm>) -> Response {
    let next = local_next(f.next.as_deref());
    match &app.token {
        Some(token) if same_bytes(f.token.as_bytes(), token.as_bytes()) => {
            let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", session_of(token));
            let mut r = Redirect::to(&next).into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Some(_) => {
            let page = Page::new(&app, "Sign in", Section::Trees, &uri);
            let mut r = html(&Login { page, next, wrong: true });
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            r
        }
        None => Redirect::to(&next).into_response(),
    }
}

/// Any URL no page answers: the page frame, "No such page", a link to the trees.
pub async fn not_found(State(app): State<App>, uri: Uri) -> Response {
    let page = Page::new(&app, "No such page", Section::Trees, &uri);
    let mut r = html(&ErrorPage { page, message: "No such page.".to_string(), back: "/trees".to_string() });
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// The answer when a handler panicked (a bug): a plain 500 page instead of a
/// connection closed without an answer.
pub fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let body = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>quota-dash: error</title>\
                <link rel=\"stylesheet\" href=\"/assets/app.css\"></head><body><main><h1>Something went wrong</h1>\
                <p class=\"flash flash-error\" role=\"alert\">quota-dash failed to draw this page (a bug: its log \
                says where). Nothing was changed by drawing it.</p><p><a href=\"/trees\">Trees</a></p></main></body></html>";
    (StatusCode::INTERNAL_SERVER_ERROR, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

/// Whether a tree key needs the `~` escape in its URL segment: a key made
/// only of dots (`.`, `..`: a browser resolves those segments away) or one
/// that starts with `~` itself.
fn needs_escape(key: &str) -> bool {
    (!key.is_empty() && key.bytes().all(|b| b == b'.')) || key.starts_with('~')
}

/// The tree key of a `{key}` URL segment (already percent-decoded): one
/// leading `~` is the escape [`tree_url`] adds, dropped here.
pub fn key_of(segment: &str) -> String {
    segment.strip_prefix('~').unwrap_or(segment).to_string()
}

/// The `{key}` segment of a `/trees/{key}…` route as the tree's key: every
/// page module takes its key through this, so `tree_url`'s escape is undone
/// in one place.
pub struct TreeKey(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for TreeKey {
    type Rejection = axum::extract::rejection::PathRejection;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(segment) = axum::extract::Path::<String>::from_request_parts(parts, state).await?;
        Ok(TreeKey(key_of(&segment)))
    }
}

/// The assets every page uses, compiled in.
pub async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static str, &str) = match name.as_str() {
        "app.css" => (include_str!("../assets/app.css"), "text/css; charset=utf-8"),
        "app.js" => (include_str!("../assets/app.js"), "text/javascript; charset=utf-8"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    asset_response(body, kind)
}

/// An asset with its type, cached for an hour.
pub fn asset_response(body: &'static str, kind: &str) -> Response {
    let mut r = Response::new(Body::from(body));
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(kind) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=3600"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_signed_messages_are_shown() {
        let _ = init_secret();
        let signed = with_flash("/trees/acme", "done", "Policy m set.");
        let uri: Uri = signed.parse().unwrap();
        assert_eq!(flash_of(&uri), Some(("done".to_string(), "Policy m set.".to_string())));
        let forged: Uri = "/trees/acme?error=Sign%20in%20at%20evil.example&sig=00".parse().unwrap();
        assert_eq!(flash_of(&forged), None);
        let unsigned: Uri = "/trees/acme?done=hello".parse().unwrap();
        assert_eq!(flash_of(&unsigned), None);
        // A signature for one kind does not serve the other.
        let swapped: Uri = signed.replace("done=", "error=").parse().unwrap();
        assert_eq!(flash_of(&swapped), None);
    }

    #[test]
    fn bars_are_exact_and_clamped() {
        // used, held, limit, used %, held %
        let rows = [
            ("0", "0", "100", 0, 0),
            ("50", "25", "100", 50, 25),
            ("0.1", "0.2", "0.3", 33, 67),
            ("150", "10", "100", 100, 0),
            ("90", "30", "100", 90, 10),
            ("5", "0", "0", 100, 0),
            ("0", "0", "0", 0, 0),
            ("junk", "1", "10", 0, 10),
            // Beyond Decimal's range once multiplied: full, no panic.
            ("100000000000000000", "0", "0.0000000001", 100, 0),
            ("79228162514264337593543950335", "79228162514264337593543950335", "1", 100, 0),
            ("0", "79228162514264337593543950335", "0.5", 0, 100),
        ];
        for (u, h, l, pu, ph) in rows {
            assert_eq!(bar(u, h, l), (pu, ph), "{u} {h} {l}");
        }
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(fmt_ms(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(fmt_ms(1_769_904_000_000), "2026-02-01 00:00:00 UTC");
        assert_eq!(fmt_ms(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(fmt_day(1_767_225_599_999), "2025-12-31");
        assert_eq!(fmt_span(65_000), "1 m 5 s");
        assert_eq!(fmt_span(1_500), "1.5 s");
        for days in [-719_468, -1, 0, 59, 60, 11_016, 20_528, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn encoding_keeps_only_unreserved_bytes() {
        assert_eq!(enc("a b/c?d&é"), "a%20b%2Fc%3Fd%26%C3%A9");
        assert_eq!(tree_url("{t1}acme"), "/trees/%7Bt1%7Dacme");
        // Dots-only keys and keys starting with ~ are escaped with one ~.
        for (key, url) in
            [("..", "/trees/~.."), (".", "/trees/~."), ("~x", "/trees/~~x"), ("a.b", "/trees/a.b"), ("x~", "/trees/x~")]
        {
            assert_eq!(tree_url(key), url);
            assert_eq!(key_of(url.strip_prefix("/trees/").unwrap()), key);
        }
    }

    #[test]
    fn only_local_next_pages() {
        assert_eq!(local_next(Some("/trees/acme")), "/trees/acme");
        assert_eq!(local_next(Some("//evil.example")), "/trees");
        assert_eq!(local_next(Some("https://evil.example")), "/trees");
        assert_eq!(local_next(None), "/trees");
        // Browsers drop tabs and newlines from URLs: `/\t/x` would be `//x`.
        for bad in ["/\t/evil.example", "/\n/evil.example", "/\\evil.example", "/a b", "/a\r\nSet-Cookie: x"] {
            assert_eq!(local_next(Some(bad)), "/trees", "{bad:?}");
        }
    }

    #[test]
    fn hosts_and_origins() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(loopback_host(&h(&[("host", "127.0.0.1:8080")])));
        assert!(loopback_host(&h(&[("host", "localhost:8080")])));
        assert!(loopback_host(&h(&[("host", "[::1]:8080")])));
        assert!(!loopback_host(&h(&[("host", "evil.example:8080")])));
        assert!(!loopback_host(&h(&[])));
        assert!(same_origin(&h(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")])));
        assert!(!same_origin(&h(&[("host", "127.0.0.1:8080"), ("origin", "http://evil.example")])));
        assert!(same_origin(&h(&[("host", "127.0.0.1:8080"), ("origin", "https://127.0.0.1:8080")])));
        assert!(!same_origin(&h(&[("host", "127.0.0.1:8080"), ("origin", "evil://127.0.0.1:8080")])));
        assert!(!same_origin(&h(&[("origin", "http://")])));
        assert!(loopback_host(&h(&[("host", "[::ffff:127.0.0.1]:8080")])));
        assert!(!loopback_host(&h(&[("host", "[::ffff:10.0.0.1]:8080")])));
        assert!(!same_origin(&h(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")])));
        assert!(same_origin(&h(&[("host", "127.0.0.1:8080")])));
        // A plain form of a no-referrer page: Origin null, Sec-Fetch-Site decides.
        let null = |site| h(&[("host", "127.0.0.1:8080"), ("origin", "null"), ("sec-fetch-site", site)]);
        assert!(same_origin(&null("same-origin")));
        assert!(!same_origin(&null("cross-site")));
        assert!(!same_origin(&h(&[("host", "127.0.0.1:8080"), ("origin", "null")])));
        let cookie = HeaderValue::from_str(&format!("a=b; quota_dash_session={}", session_of("secret"))).unwrap();
        let mut jar = HeaderMap::new();
        jar.insert(header::COOKIE, cookie);
        assert!(has_token(&jar, "secret"));
        assert!(!has_token(&h(&[("cookie", "quota_dash_session=secret")]), "secret"));
        assert!(has_token(&h(&[("authorization", "Bearer secret")]), "secret"));
        assert!(!has_token(&h(&[("authorization", "Bearer secreT")]), "secret"));
    }
}
