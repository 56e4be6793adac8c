//! Usage over time: what a node's subtree spent today (by hour), in the last
//! 7 or 30 days or between two dates (by day), as a bar chart drawn on the
//! server (inline SVG), with totals and the top paths, services and models.
//! Every number comes from QUOTA.USAGE; amounts stay exact decimals, and
//! only the pixel positions of the chart are rounded.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::Uri;
use axum::response::Response;
use axum::routing::get;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value as Json;

use crate::quota::{Cmd, QuotaError};
use crate::web::{self, App, Page, Section, TreeKey, enc, fmt_day, fmt_ms, html, text};

const HOUR: u64 = 3_600_000;
const DAY: u64 = 86_400_000;
/// Rows shown in each of the top tables.
const TOP: usize = 10;

pub fn routes() -> Router<App> {
    Router::new().route("/trees/{key}/usage", get(usage))
}

#[derive(Deserialize, Default, Clone)]
pub struct UsageQuery {
    #[serde(default)]
    path: String,
    #[serde(default)]
    range: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    metric: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    model: String,
}

/// The span asked for, as QUOTA.USAGE takes it.
#[derive(Debug, PartialEq, Eq)]
pub struct Span {
    /// `hour` or `day`.
    pub by: &'static str,
    pub since: Option<u64>,
    pub until: Option<u64>,
}

/// The span of a range at the quota clock's `now`: today by the hour since
/// UTC midnight; 7 d and 30 d by the day since the day 6 or 29 days before
/// today; custom from the start of `since`'s day to the end of `until`'s,
/// by the day (either may be empty: from the oldest day kept, up to now).
pub fn span(range: &str, now: u64, since: &str, until: &str) -> Result<Span, String> {
    let today = now - now % DAY;
    match range {
        "" | "today" => Ok(Span { by: "hour", since: Some(today), until: None }),
        "7d" => Ok(Span { by: "day", since: Some(today.saturating_sub(6 * DAY)), until: None }),
        "30d" => Ok(Span { by: "day", since: Some(today.saturating_sub(29 * DAY)), until: None }),
        "custom" => {
            let since = match since.trim() {
                "" => None,
                s => Some(parse_date(s).map_err(|e| format!("From: {e}"))?),
            };
            let until = match until.trim() {
                "" => None,
                s => Some(parse_date(s).map_err(|e| format!("To: {e}"))? + DAY - 1),
            };
            Ok(Span { by: "day", since, until })
        }
        other => Err(format!("unknown range “{other}”: choose today, 7d, 30d or custom")),
    }
}

/// `YYYY-MM-DD` (a UTC day) as the Unix ms of its midnight.
pub fn parse_date(s: &str) -> Result<u64, String> {
    match web::parse_day(s) {
        Some(days) if days >= 0 => Ok(days as u64 * DAY),
        _ => Err(format!("“{s}” is not a date: write it as YYYY-MM-DD, like 2026-03-14")),
    }
}

// ----- the chart --------------------------------------------------------------

/// The chart's frame in SVG pixels.
const W: i64 = 900;
const H: i64 = 280;
/// Room left of the plot for the value labels: at least this, else 7 px a character.
const LEFT_MIN: i64 = 36;
const RIGHT: i64 = 14;
const TOP_PAD: i64 = 16;
const BOTTOM: i64 = 46;

pub struct Bar {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    /// The whole slot, for the title's hover area.
    pub slot_x: String,
    pub slot_w: String,
    /// `pos`, `neg`, or `zero` (no bar drawn).
    pub kind: &'static str,
    pub title: String,
}

pub struct Tick {
    pub y: String,
    pub label: String,
}

pub struct XLabel {
    pub x: String,
    pub label: String,
}

pub struct Chart {
    pub width: i64,
    pub height: i64,
    pub left: i64,
    pub right: i64,
    pub top: i64,
    pub bottom: i64,
    /// Where 0 is (the x axis).
    pub zero_y: String,
    pub bars: Vec<Bar>,
    pub yticks: Vec<Tick>,
    pub xlabels: Vec<XLabel>,
    pub x_title: String,
    pub label_y: i64,
}

/// A pixel coordinate: the exact ratio rounded to 2 places at the very end.
fn px(d: Decimal) -> String {
    d.round_dp(2).normalize().to_string()
}

/// An amount as exact as it came (a computed one, such as half the
/// largest, is normalized where it is made).
fn amount(d: Decimal) -> String {
    d.to_string()
}

/// The bar chart of `buckets` (start, amount of `metric`), one bar per
/// bucket, scaled exactly: the tallest bar reaches the top, the deepest
/// negative one the bottom, 0 is the axis between them.
pub fn chart(buckets: &[(u64, Decimal)], hourly: bool, metric: &str) -> Chart {
    let (right, top, bottom) = (W - RIGHT, TOP_PAD, H - BOTTOM);
    let plot_h = Decimal::from(bottom - top);
    let hi = buckets.iter().map(|b| b.1).fold(Decimal::ZERO, Decimal::max);
    let lo = buckets.iter().map(|b| b.1).fold(Decimal::ZERO, Decimal::min);
    // Amounts near Decimal's bounds on both sides of 0: their difference
    // does not fit, so the scale works on quarters (the same picture; a
    // quarter each side stays below the bound even rounded).
    let shrink = hi.checked_sub(lo).is_none();
    let scaled = |v: Decimal| if shrink { v / Decimal::from(4) } else { v };
    let range = scaled(hi) - scaled(lo);
    // The share of the plot's height from the top down to a value, in
    // 0..=1 (divided first, so nothing overflows).
    let part = |v: Decimal| -> Decimal {
        if range.is_zero() { Decimal::ONE } else { ((scaled(hi) - scaled(v)) / range).min(Decimal::ONE) }
    };
    // Pixels from the top of the plot down to a value.
    let y_of = |v: Decimal| -> Decimal { part(v) * plot_h };
    // The largest amount and 0 always; the deepest negative one and the
    // middle when their labels have room (14 px from the others).
    let mut ticks: Vec<(Decimal, String)> = vec![];
    let mut tick = |v: Decimal, label: String, always: bool| {
        let y = Decimal::from(top) + y_of(v);
        if always || ticks.iter().all(|(t, _)| (*t - y).abs() >= Decimal::from(14)) {
            ticks.push((y, label));
        }
    };
    if hi > Decimal::ZERO {
        tick(hi, amount(hi), true);
    }
    tick(Decimal::ZERO, "0".to_string(), true);
    if lo < Decimal::ZERO {
        tick(lo, amount(lo), false);
    }
    if hi > Decimal::ZERO {
        let mid = (hi / Decimal::TWO).normalize();
        tick(mid, amount(mid), false);
    }
    ticks.sort_by_key(|t| t.0);
    let yticks: Vec<Tick> = ticks.into_iter().map(|(y, label)| Tick { y: px(y), label }).collect();
    let widest = yticks.iter().map(|t: &Tick| t.label.chars().count()).max().unwrap_or(1) as i64;
    let left = (12 + 7 * widest).clamp(LEFT_MIN, W / 3);
    let plot_w = Decimal::from(right - left);
    let zero = Decimal::from(top) + y_of(Decimal::ZERO);
    let n = Decimal::from(buckets.len().max(1) as u64);
    let slot = plot_w / n;
    let bar_w = slot * Decimal::new(7, 1);
    let gap = (slot - bar_w) / Decimal::TWO;
    let min_h = Decimal::ONE;
    let mut bars = Vec::with_capacity(buckets.len());
    for (i, (start, v)) in buckets.iter().enumerate() {
        let x = Decimal::from(left) + slot * Decimal::from(i as u64);
        let when = if hourly { fmt_ms(*start).replace(":00 UTC", " UTC") } else { fmt_day(*start) };
        let (kind, y, h) = if v.is_zero() {
            ("zero", zero, Decimal::ZERO)
        } else {
            // At least a pixel, so a tiny amount still shows.
            let h = ((scaled(*v).abs() / range).min(Decimal::ONE) * plot_h).max(min_h);
            if v.is_sign_positive() { ("pos", zero - h, h) } else { ("neg", zero, h) }
        };
        bars.push(Bar {
            x: px(x + gap),
            y: px(y),
            w: px(bar_w),
            h: px(h),
            slot_x: px(x),
            slot_w: px(slot),
            kind,
            title: format!("{when}: {} {metric}", amount(*v)),
        });
    }
    // A label every `step` buckets, a dozen at most.
    let step = buckets.len().div_ceil(12).max(1);
    let xlabels = buckets
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0)
        .map(|(i, (start, _))| XLabel {
            x: px(Decimal::from(left) + slot * Decimal::from(i as u64) + slot / Decimal::TWO),
            label: if hourly { format!("{:02}:00", start % DAY / HOUR) } else { short_day(*start) },
        })
        .collect();
    let x_title = match (hourly, buckets.first()) {
        (true, Some((start, _))) => format!("hour of {} (UTC)", fmt_day(*start)),
        (true, None) => "hour (UTC)".to_string(),
        (false, _) => "day (UTC)".to_string(),
    };
    Chart {
        width: W,
        height: H,
        left,
        right,
        top,
        bottom,
        zero_y: px(zero),
        bars,
        yticks,
        xlabels,
        x_title,
        label_y: bottom + 18,
    }
}

/// `Mar 14`.
fn short_day(ms: u64) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (_, m, d) = web::civil_from_days((ms / DAY) as i64);
    format!("{} {d}", MONTHS[(m as usize + 11) % 12])
}

// ----- the page ---------------------------------------------------------------

pub struct GroupRow {
    pub name: String,
    pub url: String,
    pub amount: String,
    /// Width of the share bar, whole percent (0..=100).
    pub width: u32,
    pub share: String,
}

pub struct Groups {
    pub title: &'static str,
    pub id: &'static str,
    /// The first column's heading.
    pub first: &'static str,
    pub rows: Vec<GroupRow>,
    pub more: usize,
    pub error: Option<String>,
}

pub struct View {
    pub by: String,
    pub from: String,
    pub to: String,
    pub metric: String,
    /// None: nothing of `metric` was spent in the span.
    pub chart: Option<Chart>,
    pub buckets: Vec<(String, String)>,
    pub totals: Vec<(String, String)>,
    /// Top paths, services and models.
    pub groups: Vec<Groups>,
}

#[derive(Template)]
#[template(path = "analytics.html")]
struct UsagePage {
    page: Page,
    key: String,
    tree: String,
    events: String,
    q: UsageQuery,
    range: &'static str,
    tabs: Vec<(&'static str, &'static str, String)>,
    /// The span without the filters.
    clear: String,
    metrics: Vec<String>,
    error: Option<String>,
    view: Option<View>,
}

fn range_of(r: &str) -> &'static str {
    match r {
        "7d" => "7d",
        "30d" => "30d",
        "custom" => "custom",
        _ => "today",
    }
}

/// This page's URL with these settings.
fn url(key: &str, q: &UsageQuery) -> String {
    let mut u = format!("{}/usage?path={}&range={}", web::tree_url(key), enc(&q.path), enc(range_of(&q.range)));
    for (name, v) in
        [("since", &q.since), ("until", &q.until), ("metric", &q.metric), ("service", &q.service), ("model", &q.model)]
    {
        if !v.is_empty() {
            u.push_str(&format!("&{name}={}", enc(v)));
        }
    }
    u
}

fn dec(v: Option<&Json>) -> Decimal {
    v.and_then(Json::as_str).and_then(|s| s.parse().ok()).unwrap_or_default()
}

/// A group's share of the total, as a bar width and a label.
fn share(amount: Decimal, total: Decimal) -> (u32, String) {
    if total <= Decimal::ZERO || amount <= Decimal::ZERO {
        return (0, String::new());
    }
    // Exact when the product fits; else divided first; else (a share
    // beyond Decimal's range) 100 % and more, shown as 100 %.
    let pct = amount
        .checked_mul(Decimal::ONE_HUNDRED)
        .and_then(|x| x.checked_div(total))
        .or_else(|| amount.checked_div(total).and_then(|r| r.checked_mul(Decimal::ONE_HUNDRED)))
        .unwrap_or(Decimal::ONE_HUNDRED);
    let width = pct.min(Decimal::ONE_HUNDRED).round();
    let width = u32::try_from(width.mantissa() / 10i128.pow(width.scale())).unwrap_or(100);
    (width, format!("{}%", pct.round_dp(1).normalize()))
}

async fn usage(State(app): State<App>, uri: Uri, TreeKey(key): TreeKey, Query(mut q): Query<UsageQuery>) -> Response {
    q.path = q.path.trim().to_string();
    if q.path.is_empty() {
        q.path = "/".to_string();
    }
    // Dates given mean a span between them, whatever the select said.
    let range = if q.since.trim().is_empty() && q.until.trim().is_empty() { range_of(&q.range) } else { "custom" };
    q.range = range.to_string();
    let tabs = [("today", "Today"), ("7d", "7 d"), ("30d", "30 d")]
        .into_iter()
        .map(|(r, label)| {
            (
                r,
                label,
                url(
                    &key,
                    &UsageQuery { range: r.to_string(), since: String::new(), until: String::new(), ..q.clone() },
                ),
            )
        })
        .collect();
    let clear = url(
        &key,
        &UsageQuery {
            path: q.path.clone(),
            range: q.range.clone(),
            since: q.since.clone(),
            until: q.until.clone(),
            ..UsageQuery::default()
        },
    );
    let page = Page::new(&app, format!("Usage · {key}"), Section::Trees, &uri);
    let mut out = UsagePage {
        page,
        tree: format!("{}?path={}", web::tree_url(&key), enc(&q.path)),
        events: format!("{}/events", web::tree_url(&key)),
        key,
        q,
        range,
        tabs,
        clear,
        metrics: vec![],
        error: None,
        view: None,
    };
    let result = view(&app, &out.key, &out.q, range).await;
    let status = match result {
        Ok((view, metrics)) => {
            out.view = Some(view);
            out.metrics = metrics;
            None
        }
        Err(e) => {
            out.error = Some(e.message.clone());
            Some(web::status_of(&e))
        }
    };
    let mut r = html(&out);
    if let Some(s) = status {
        *r.status_mut() = s;
    }
    r
}

/// Asks QUOTA.USAGE for the span and its groups.
async fn view(app: &App, key: &str, q: &UsageQuery, range: &str) -> Result<(View, Vec<String>), QuotaError> {
    if !q.model.is_empty() && q.service.is_empty() {
        return Err(web::refused(
            "A model belongs to a service: choose the service too to see one model (or clear the model).",
        ));
    }
    let now = app.quota.now_ms().await?;
    let span = span(range, now, &q.since, &q.until).map_err(web::refused)?;
    let mut args: Vec<String> = vec![q.path.clone(), "BY".into(), span.by.into()];
    if let Some(s) = span.since {
        args.extend(["SINCE".into(), s.to_string()]);
    }
    if let Some(u) = span.until {
        args.extend(["UNTIL".into(), u.to_string()]);
    }
    if !q.service.is_empty() {
        args.extend(["SERVICE".into(), q.service.clone()]);
        if !q.model.is_empty() {
            args.extend(["MODEL".into(), q.model.clone()]);
        }
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let reply = app.quota.call(Cmd::Usage, Some(key), &argv).await?;
    let total = reply.get("total").and_then(Json::as_object).cloned().unwrap_or_default();
    let metrics: Vec<String> = total.keys().cloned().collect();
    let metric = if q.metric.trim().is_empty() {
        metrics.first().cloned().unwrap_or_default()
    } else {
        q.metric.trim().to_string()
    };
    let total_of_metric = dec(total.get(&metric));
    let hourly = text(&reply, "by") == "hour";
    let buckets: Vec<(u64, Decimal)> = reply
        .get("buckets")
        .and_then(Json::as_array)
        .map(|bs| {
            bs.iter()
                .map(|b| {
                    (
                        b.get("start").and_then(Json::as_u64).unwrap_or(0),
                        dec(b.get("spent").and_then(|s| s.get(&metric))),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let spent_any = buckets.iter().any(|b| !b.1.is_zero());
    let when = |ms: u64| if hourly { fmt_ms(ms) } else { fmt_day(ms) };
    let from = reply.get("since").and_then(Json::as_u64).map(when).unwrap_or_default();
    let to = reply.get("until").and_then(Json::as_u64).map(fmt_ms).unwrap_or_default();
    // The groups, ordered by the chart's metric.
    let mut groups = Vec::new();
    for (g, title, id, first) in [
        ("child", "Top paths", "usage-paths", "Path"),
        ("service", "Top services", "usage-services", "Service"),
        ("model", "Top models", "usage-models", "Model"),
    ] {
        let mut ga = argv.clone();
        if !metric.is_empty() {
            ga.extend(["METRIC", metric.as_str()]);
        }
        ga.extend(["GROUP", g]);
        let (rows, more, error) = match app.quota.call(Cmd::Usage, Some(key), &ga).await {
            Ok(r) => {
                let (rows, more) = group_rows(key, q, g, &r, &metric, total_of_metric);
                (rows, more, None)
            }
            Err(e) => (vec![], 0, Some(e.message)),
        };
        groups.push(Groups { title, id, first, rows, more, error });
    }
    let view = View {
        by: if hourly { "hour" } else { "day" }.to_string(),
        from,
        to,
        chart: spent_any.then(|| chart(&buckets, hourly, &metric)),
        buckets: buckets.iter().map(|(s, v)| (when(*s), amount(*v))).collect(),
        totals: total.iter().map(|(m, v)| (m.clone(), v.as_str().unwrap_or("").to_string())).collect(),
        groups,
        metric,
    };
    Ok((view, metrics))
}

/// The first rows of a GROUP reply (those that spent `metric`), and how many more.
fn group_rows(
    key: &str,
    q: &UsageQuery,
    kind: &str,
    reply: &Json,
    metric: &str,
    total: Decimal,
) -> (Vec<GroupRow>, usize) {
    let all = reply.get("groups").and_then(Json::as_array).cloned().unwrap_or_default();
    let shown: Vec<&Json> = all.iter().filter(|g| !dec(g.get("spent").and_then(|s| s.get(metric))).is_zero()).collect();
    let more = shown.len().saturating_sub(TOP);
    let rows = shown
        .into_iter()
        .take(TOP)
        .map(|g| {
            let name = text(g, "name");
            let a = dec(g.get("spent").and_then(|s| s.get(metric)));
            let (width, share) = share(a, total);
            let url = match kind {
                "child" => url(key, &UsageQuery { path: name.clone(), ..q.clone() }),
                _ if g.get("service").is_some_and(Json::is_string) => {
                    url(key, &UsageQuery { service: text(g, "service"), model: text(g, "model"), ..q.clone() })
                }
                _ => String::new(),
            };
            GroupRow { name, url, amount: amount(a), width, share }
        })
        .collect();
    (rows, more)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(non_snake_case)]
    fn D(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_start_where_the_page_says() {
        // 2026-03-14 09:30 UTC
        let now = 1_773_480_600_000;
        let midnight = 1_773_446_400_000;
        // range, since, until, by, SINCE, UNTIL
        type Row = (&'static str, &'static str, &'static str, &'static str, Option<u64>, Option<u64>);
        let rows: [Row; 8] = [
            ("today", "", "", "hour", Some(midnight), None),
            ("", "", "", "hour", Some(midnight), None),
            ("7d", "", "", "day", Some(midnight - 6 * DAY), None),
            ("30d", "", "", "day", Some(midnight - 29 * DAY), None),
            ("custom", "2026-03-01", "2026-03-14", "day", Some(1_772_323_200_000), Some(midnight + DAY - 1)),
            ("custom", "", "", "day", None, None),
            ("custom", "2024-02-29", "", "day", Some(1_709_164_800_000), None),
            ("custom", "", "1970-01-01", "day", None, Some(DAY - 1)),
        ];
        for (range, since, until, by, s, u) in rows {
            assert_eq!(span(range, now, since, until), Ok(Span { by, since: s, until: u }), "{range} {since} {until}");
        }
        // Midnight itself is today's first hour.
        assert_eq!(span("today", midnight, "", "").map(|s| s.since), Ok(Some(midnight)));
    }

    #[test]
    fn bad_dates_are_refused_plainly() {
        for bad in [
            "2026-3-14",
            "2026-02-30",
            "2025-02-29",
            "14/03/2026",
            "2026-13-01",
            "2026-00-10",
            "+026-01-01",
            "1969-12-31",
            "x",
        ] {
            let e = span("custom", 0, bad, "").unwrap_err();
            assert!(e.starts_with("From: ") && e.contains("YYYY-MM-DD"), "{bad}: {e}");
        }
        assert!(span("custom", 0, "", "2026-02-30").unwrap_err().starts_with("To: "));
        assert!(span("year", 0, "", "").is_err());
        for (s, days) in [("1970-01-01", 0), ("2000-03-01", 11_017), ("2026-03-14", 20_526)] {
            assert_eq!(parse_date(s), Ok(days * DAY), "{s}");
            assert_eq!(fmt_day(days * DAY), s);
        }
    }

    fn bars(values: &[&str]) -> Chart {
        let b: Vec<(u64, Decimal)> = values.iter().enumerate().map(|(i, v)| (i as u64 * DAY, D(v))).collect();
        chart(&b, false, "credits")
    }

    #[test]
    fn bars_are_scaled_exactly() {
        // The plot is 218 px high (280 - 16 - 46), from y 16 to y 234.
        // values, zero line y, then per bar (kind, y, height)
        type Row = (&'static [&'static str], &'static str, &'static [(&'static str, &'static str, &'static str)]);
        let rows: [Row; 5] = [
            (&["10", "5", "0"], "234", &[("pos", "16", "218"), ("pos", "125", "109"), ("zero", "234", "0")]),
            (&["0.1", "0.3"], "234", &[("pos", "161.33", "72.67"), ("pos", "16", "218")]),
            // Negative: 0 sits at 3/4 of the span; the refund goes below it.
            (&["30", "-10"], "179.5", &[("pos", "16", "163.5"), ("neg", "179.5", "54.5")]),
            (&["-4"], "16", &[("neg", "16", "218")]),
            // A tiny amount still gets a pixel.
            (&["1000000", "0.000001"], "234", &[("pos", "16", "218"), ("pos", "233", "1")]),
        ];
        for (values, zero, want) in rows {
            let c = bars(values);
            assert_eq!(c.zero_y, zero, "{values:?}");
            let got: Vec<(&str, &str, &str)> = c.bars.iter().map(|b| (b.kind, b.y.as_str(), b.h.as_str())).collect();
            assert_eq!(got, want.to_vec(), "{values:?}");
        }
    }

    #[test]
    fn bars_carry_the_exact_amount_and_axes_their_labels() {
        let c = bars(&["12.345678901234567890", "-0.5", "0"]);
        assert_eq!(c.bars[0].title, "1970-01-01: 12.345678901234567890 credits");
        assert_eq!(c.bars[1].title, "1970-01-02: -0.5 credits");
        let labels: Vec<&str> = c.yticks.iter().map(|t| t.label.as_str()).collect();
        // -0.5 is 8.5 px below 0: no room for its label (its bar's title has it).
        assert_eq!(labels, ["12.345678901234567890", "6.172839450617283945", "0"]);
        assert_eq!(c.xlabels.len(), 3);
        let c = bars(&["30", "-10"]);
        let ticks: Vec<(&str, &str)> = c.yticks.iter().map(|t| (t.y.as_str(), t.label.as_str())).collect();
        assert_eq!(ticks, [("16", "30"), ("97.75", "15"), ("179.5", "0"), ("234", "-10")]);
        // 24 hours: a label every other hour, from 00:00.
        let hours: Vec<(u64, Decimal)> = (0..24).map(|h| (h * HOUR, Decimal::ONE)).collect();
        let c = chart(&hours, true, "tokens");
        let labels: Vec<&str> = c.xlabels.iter().map(|l| l.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "00:00", "02:00", "04:00", "06:00", "08:00", "10:00", "12:00", "14:00", "16:00", "18:00", "20:00",
                "22:00"
            ]
        );
        assert_eq!(c.bars[9].title, "1970-01-01 09:00 UTC: 1 tokens");
        assert_eq!(c.x_title, "hour of 1970-01-01 (UTC)");
        // 30 days: every third day.
        let days: Vec<(u64, Decimal)> = (0..30).map(|d| (d * DAY, Decimal::ONE)).collect();
        assert_eq!(chart(&days, false, "credits").xlabels.len(), 10);
        assert_eq!(short_day(1_773_480_600_000), "Mar 14");
    }

    #[test]
    fn shares_are_exact_and_clamped() {
        // amount, total, width, label
        let rows = [
            ("25.5", "55.5", 46, "45.9%"),
            ("55.5", "55.5", 100, "100%"),
            ("80", "50", 100, "160%"),
            ("-1", "10", 0, ""),
            ("1", "0", 0, ""),
            // Beyond Decimal's range once multiplied: no panic, a full bar.
            ("79228162514264337593543950335", "0.0000000001", 100, "100%"),
            ("79228162514264337593543950335", "79228162514264337593543950335", 100, "100%"),
        ];
        for (a, t, w, l) in rows {
            assert_eq!(share(D(a), D(t)), (w, l.to_string()), "{a} {t}");
        }
    }

    #[test]
    fn charts_of_amounts_near_the_bounds_do_not_panic() {
        let max = Decimal::MAX;
        let b = [(0, max), (DAY, -max), (2 * DAY, D("0.0000000001")), (3 * DAY, Decimal::ZERO)];
        let c = chart(&b, false, "credits");
        assert_eq!(c.bars.len(), 4);
        let tiny = [(0, D("0.0000000000000000000000000001")), (DAY, max)];
        assert_eq!(chart(&tiny, false, "credits").bars.len(), 2);
    }
}
