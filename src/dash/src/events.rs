//! Events: a tree's latest events (QUOTA.EVENTS) and then the live ones,
//! and every tree's live events on one page. The live feed is Server-Sent
//! Events: the handler subscribes to the tree's channel first, then catches
//! up from the event log, then forwards what is published, skipping what it
//! already sent (README "Consuming events without losing any"), so nothing
//! fired between the page and its feed is lost or shown twice.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::quota::{Cmd, QuotaError};
use crate::web::{self, App, Page, Section, error_page, fmt_ms, html, text};

/// Live feeds open at once, at most (each holds a Redis connection).
pub const MAX_FEEDS: usize = 64;
/// Events on the page before it goes live.
const PAGE: u64 = 100;
/// Events asked for at a time when catching up.
const CATCH_UP: u64 = 1000;
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The channels events are published on: `quota:events:<key>`.
const CHANNEL: &str = "quota:events:";

pub fn routes() -> Router<App> {
    Router::new()
        .route("/trees/{key}/events", get(tree_page))
        .route("/trees/{key}/events/stream", get(tree_stream))
        .route("/events", get(all_page))
        .route("/events/stream", get(all_stream))
        .route("/assets/events.js", get(script))
}

async fn script() -> Response {
    web::asset_response(include_str!("../assets/events.js"), "text/javascript; charset=utf-8")
}

// ----- rows -------------------------------------------------------------------

/// The fields shown under "details", in this order (events.js shows the same).
const DETAILS: [&str; 13] = [
    "periods",
    "rolled_over",
    "remaining",
    "low",
    "grant",
    "amount",
    "expires_at",
    "rule",
    "service",
    "model",
    "id",
    "amounts",
    "meta",
];

pub struct Row {
    pub seq: String,
    pub time: String,
    pub kind: String,
    pub class: &'static str,
    pub path: String,
    pub policy: String,
    pub metric: String,
    pub used: String,
    pub held: String,
    pub limit: String,
    pub threshold: String,
    pub details: String,
}

/// The colour of an event's type: warning amber, over and disallowed red,
/// low and expired orange, the rest grey or green.
pub fn type_class(kind: &str) -> &'static str {
    match kind {
        "warning" => "status-warning",
        "over" | "disallowed" => "status-over",
        "low" | "expired" => "status-critical",
        "rollover" => "status-healthy",
        _ => "status-none",
    }
}

/// A detail's value: a map as `name value, …`, a time as UTC.
fn detail(name: &str, v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::Object(m) => Some(
            m.iter()
                .map(|(k, v)| format!("{k} {}", v.as_str().map_or_else(|| v.to_string(), str::to_string)))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        // META as QUOTA.EVENTS gives it (quota::json_of): flat pairs in order.
        Json::Array(items) if name == "meta" => Some(
            items
                .chunks(2)
                .map(|p| format!("{} {}", p[0].as_str().unwrap_or(""), p.get(1).and_then(Json::as_str).unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Json::String(s) => Some(s.clone()),
        Json::Number(n) if name == "expires_at" => match n.as_u64() {
            Some(0) => Some("period end".to_string()),
            Some(ms) => Some(fmt_ms(ms)),
            None => Some(n.to_string()),
        },
        other => Some(other.to_string()),
    }
}

pub fn row(ev: &Json) -> Row {
    let kind = text(ev, "type");
    let details = DETAILS
        .iter()
        .filter_map(|name| ev.get(*name).and_then(|v| detail(name, v)).map(|v| format!("{name} {v}")))
        .collect::<Vec<_>>()
        .join(" · ");
    Row {
        seq: text(ev, "seq"),
        time: ev.get("time").and_then(Json::as_u64).map(fmt_ms).unwrap_or_default(),
        class: type_class(&kind),
        kind,
        path: text(ev, "path"),
        policy: text(ev, "policy"),
        metric: text(ev, "metric"),
        used: text(ev, "used"),
        held: text(ev, "held"),
        limit: text(ev, "limit"),
        threshold: text(ev, "threshold")
            .chars()
            .chain(if ev.get("threshold").is_some_and(|t| !t.is_null()) { Some('%') } else { None })
            .collect(),
        details,
    }
}

fn seq_of(ev: &Json) -> Option<u64> {
    match ev.get("seq")? {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// QUOTA.EVENTS key SINCE seq COUNT n: the events after `since`, oldest first.
async fn events_since(app: &App, key: &str, since: u64, count: u64) -> Result<Vec<Json>, QuotaError> {
    let reply =
        app.quota.call(Cmd::Events, Some(key), &["SINCE", &since.to_string(), "COUNT", &count.to_string()]).await?;
    Ok(match reply {
        Json::Array(items) => items,
        _ => vec![],
    })
}

/// The first event after `since`, if any.
async fn next_after(app: &App, key: &str, since: u64) -> Result<Option<u64>, QuotaError> {
    Ok(events_since(app, key, since, 1).await?.first().and_then(seq_of))
}

/// The log's oldest and newest seq, if it has any event. The newest is
/// found by sequence numbers (galloping, then halving), so a long log is
/// not read to find its end.
async fn bounds(app: &App, key: &str) -> Result<Option<(u64, u64)>, QuotaError> {
    let Some(first) = next_after(app, key, 0).await? else {
        return Ok(None);
    };
    let mut lo = first;
    // `lo` is an event; find `hi` with no event at or after it.
    let mut step = PAGE;
    let mut hi = loop {
        match next_after(app, key, lo + step - 1).await? {
            Some(s) => {
                lo = s;
                step = step.saturating_mul(2);
            }
            None => break lo + step,
        }
    };
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match next_after(app, key, mid - 1).await? {
            Some(s) => lo = s,
            None => hi = mid,
        }
    }
    Ok(Some((first, lo)))
}

/// The `PAGE` events before `seq` (`QUOTA.EVENTS key SINCE seq-101 COUNT
/// 100`), oldest first.
async fn page_before(app: &App, key: &str, seq: u64) -> Result<Vec<Json>, QuotaError> {
    let since = seq.saturating_sub(PAGE + 1);
    let count = (seq - 1 - since).clamp(1, PAGE);
    let mut events = events_since(app, key, since, count).await?;
    events.retain(|e| seq_of(e).is_some_and(|s| s < seq));
    Ok(events)
}

// ----- pages ------------------------------------------------------------------

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    page: Page,
    /// None: every tree's events.
    key: Option<String>,
    tree: String,
    usage: String,
    rows: Vec<Row>,
    /// The live feed's URL; empty on a page of older events.
    stream: String,
    error: Option<String>,
    /// The page of the 100 events before the oldest shown, when the log has some.
    older: Option<String>,
    /// A page of older events: the link back to the newest (live) ones.
    newest: Option<String>,
    /// The log wrapped: (events it keeps, the oldest seq kept).
    dropped: Option<(u64, u64)>,
}

#[derive(Deserialize)]
struct EventsQuery {
    /// The events before this seq (a page of older events).
    before: Option<String>,
}

async fn tree_page(
    State(app): State<App>,
    uri: Uri,
    web::TreeKey(key): web::TreeKey,
    Query(q): Query<EventsQuery>,
) -> Response {
    let page = Page::new(&app, format!("Events · {key}"), Section::Trees, &uri);
    let base = web::tree_url(&key);
    let before = match q.before.as_deref().map(str::trim).filter(|b| !b.is_empty()) {
        None => None,
        Some(b) => match b.parse::<u64>() {
            Ok(n) if n > 1 => Some(n),
            _ => {
                let message = format!("before must be an event's seq above 1 (a whole number), not “{b}”");
                let e = QuotaError { kind: "ERR".into(), message };
                return error_page(&app, &uri, StatusCode::BAD_REQUEST, &e, &format!("{base}/events"));
            }
        },
    };
    let found = async {
        let b = bounds(&app, &key).await?;
        let events = match (b, before) {
            (None, _) => vec![],
            (Some(_), Some(seq)) => page_before(&app, &key, seq).await?,
            (Some((_, newest)), None) => events_since(&app, &key, newest.saturating_sub(PAGE), PAGE).await?,
        };
        Ok::<_, QuotaError>((b, events))
    };
    let (bounds, mut events, error) = match found.await {
        Ok((b, e)) => (b, e, None),
        Err(e) => (None, vec![], Some(e)),
    };
    let last = events.iter().filter_map(seq_of).max().unwrap_or(0);
    let oldest_shown = events.iter().filter_map(seq_of).min();
    events.reverse();
    let older = match (bounds, oldest_shown) {
        (Some((first, _)), Some(o)) if o > first => Some(format!("{base}/events?before={o}")),
        _ => None,
    };
    let out = EventsPage {
        page,
        tree: base.clone(),
        usage: format!("{base}/usage"),
        stream: if before.is_some() { String::new() } else { format!("{base}/events/stream?since={last}") },
        rows: events.iter().map(row).collect(),
        older,
        newest: before.map(|_| format!("{base}/events")),
        dropped: bounds.filter(|(first, _)| *first > 1).map(|(first, newest)| (newest - first + 1, first)),
        key: Some(key),
        error: error.as_ref().map(|e| e.message.clone()),
    };
    let mut r = html(&out);
    if let Some(e) = error {
        *r.status_mut() = web::status_of(&e);
    }
    r
}

async fn all_page(State(app): State<App>, uri: Uri) -> Response {
    let page = Page::new(&app, "Events", Section::Events, &uri);
    html(&EventsPage {
        page,
        key: None,
        tree: String::new(),
        usage: String::new(),
        rows: vec![],
        stream: "/events/stream".to_string(),
        error: None,
        older: None,
        newest: None,
        dropped: None,
    })
}

// ----- live feeds -------------------------------------------------------------

/// One open feed, counted in `App.feeds` while it lives.
struct Feed(App);

impl Feed {
    fn open(app: &App) -> Option<Feed> {
        let open = app.feeds.fetch_add(1, Ordering::SeqCst);
        if open >= MAX_FEEDS {
            app.feeds.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Feed(app.clone()))
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.0.feeds.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A feed's events; dropping it (the browser went away) closes the
/// subscription's connection and gives the feed's place back.
struct Guarded {
    events: BoxStream<'static, Event>,
    _feed: Feed,
}

impl Stream for Guarded {
    type Item = Result<Event, Infallible>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.events.poll_next_unpin(cx).map(|e| e.map(Ok))
    }
}

fn too_many() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "{MAX_FEEDS} live event feeds are open already, the most this dashboard serves at once: \
             close an events page in another tab and reload this one"
        ),
    )
        .into_response()
}

fn feed_error(e: &QuotaError) -> Response {
    (StatusCode::BAD_GATEWAY, format!("the live feed could not start: {}", e.message)).into_response()
}

fn sse(events: BoxStream<'static, Event>, feed: Feed) -> Response {
    Sse::new(Guarded { events, _feed: feed })
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response()
}

/// An event as an SSE message: its JSON, named by its tree.
fn message(tree: &str, mut ev: Json, with_id: bool) -> Event {
    if let Json::Object(m) = &mut ev
        && !m.contains_key("tree")
    {
        m.insert("tree".to_string(), Json::String(tree.to_string()));
    }
    let e = Event::default().data(ev.to_string());
    match seq_of(&ev) {
        Some(seq) if with_id => e.id(seq.to_string()),
        _ => e,
    }
}

#[derive(Deserialize)]
struct StreamQuery {
    since: Option<String>,
}

/// Where a tree's feed starts: after `since`, or after the last event the
/// browser saw when it reconnects (`Last-Event-ID`), whichever is later.
fn start_of(since: Option<&str>, headers: &HeaderMap) -> Result<u64, String> {
    let since = match since.map(str::trim).filter(|s| !s.is_empty()) {
        None => 0,
        Some(s) => s.parse::<u64>().map_err(|_| format!("since must be an event's seq (a whole number), not “{s}”"))?,
    };
    let seen = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    Ok(since.max(seen.unwrap_or(0)))
}

async fn tree_stream(
    State(app): State<App>,
    web::TreeKey(key): web::TreeKey,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Response {
    let since = match start_of(q.since.as_deref(), &headers) {
        Ok(s) => s,
        Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
    };
    let Some(feed) = Feed::open(&app) else {
        return too_many();
    };
    // Subscribe first, then catch up: an event fired in between is in both,
    // and its second copy is skipped by its seq.
    let mut pubsub = match app.quota.pubsub().await {
        Ok(p) => p,
        Err(e) => return feed_error(&e),
    };
    if let Err(e) = pubsub.subscribe(format!("{CHANNEL}{key}")).await {
        return feed_error(&app.quota.explain(crate::quota::error_of(e)));
    }
    let mut last = since;
    let mut caught = Vec::new();
    loop {
        let page = match events_since(&app, &key, last, CATCH_UP).await {
            Ok(p) => p,
            Err(e) => return feed_error(&e),
        };
        // The log wrapped while the browser was away: say which were lost.
        if let Some(first) = page.first().and_then(seq_of)
            && last > 0
            && first > last + 1
        {
            let gap = serde_json::json!({"from": last + 1, "to": first - 1});
            caught.push(Event::default().event("gap").data(gap.to_string()));
        }
        let full = page.len() as u64 >= CATCH_UP;
        for ev in page {
            if let Some(seq) = seq_of(&ev).filter(|s| *s > last) {
                last = seq;
                caught.push(message(&key, ev, true));
            }
        }
        if !full {
            break;
        }
    }
    let tree = key.clone();
    let live = pubsub.into_on_message().filter_map(move |msg| {
        let ev: Option<Json> = msg.get_payload::<String>().ok().and_then(|p| serde_json::from_str(&p).ok());
        let out = match ev.as_ref().and_then(seq_of) {
            Some(seq) if seq > last => {
                last = seq;
                ev.map(|ev| message(&tree, ev, true))
            }
            _ => None,
        };
        futures_util::future::ready(out)
    });
    sse(stream::iter(caught).chain(live).boxed(), feed)
}

async fn all_stream(State(app): State<App>) -> Response {
    let Some(feed) = Feed::open(&app) else {
        return too_many();
    };
    let mut pubsub = match app.quota.pubsub().await {
        Ok(p) => p,
        Err(e) => return feed_error(&e),
    };
    if let Err(e) = pubsub.psubscribe(format!("{CHANNEL}*")).await {
        return feed_error(&app.quota.explain(crate::quota::error_of(e)));
    }
    let live = pubsub.into_on_message().filter_map(|msg| {
        let tree = msg.get_channel_name().strip_prefix(CHANNEL).unwrap_or_default().to_string();
        let ev: Option<Json> = msg.get_payload::<String>().ok().and_then(|p| serde_json::from_str(&p).ok());
        futures_util::future::ready(ev.filter(Json::is_object).map(|ev| message(&tree, ev, false)))
    });
    sse(live.boxed(), feed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_show_what_each_type_carries() {
        let warning = json!({"seq":5,"type":"warning","time":1769904000000u64,"path":"/","policy":"monthly",
            "metric":"credits","used":"85","held":"0","limit":"100","threshold":80});
        let r = row(&warning);
        assert_eq!(
            (r.seq.as_str(), r.time.as_str(), r.class, r.used.as_str(), r.threshold.as_str(), r.details.as_str()),
            ("5", "2026-02-01 00:00:00 UTC", "status-warning", "85", "80%", "")
        );
        let expired = json!({"seq":"6","type":"expired","time":0,"path":"a/b","policy":null,"metric":null,
            "used":null,"held":null,"limit":null,"id":"req-1","amounts":{"credits":"40","tokens":"7"},"meta":{"user":"<b>"}});
        let r = row(&expired);
        assert_eq!((r.class, r.policy.as_str(), r.threshold.as_str()), ("status-critical", "", ""));
        assert_eq!(r.details, "id req-1 · amounts credits 40, tokens 7 · meta user <b>");
        let grant = json!({"seq":7,"type":"grant_expired","grant":"promo","amount":"5","expires_at":0});
        assert_eq!(row(&grant).details, "grant promo · amount 5 · expires_at period end");
        assert_eq!(seq_of(&expired), Some(6));
    }

    #[test]
    fn feeds_start_after_what_was_seen() {
        let mut h = HeaderMap::new();
        // since, Last-Event-ID, start
        let rows = [
            (None, None, Ok(0)),
            (Some("12"), None, Ok(12)),
            (Some("12"), Some("30"), Ok(30)),
            (Some("40"), Some("30"), Ok(40)),
            (Some(""), Some("junk"), Ok(0)),
        ];
        for (since, seen, want) in rows {
            h.remove("last-event-id");
            if let Some(s) = seen {
                h.insert("last-event-id", s.parse().unwrap());
            }
            assert_eq!(start_of(since, &h), want, "{since:?} {seen:?}");
        }
        assert!(start_of(Some("-1"), &h).unwrap_err().contains("whole number"));
    }
}
