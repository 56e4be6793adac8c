//! The price book: list the entries, add one, read one (its metric, rates,
//! multipliers and minimum) and edit it as JSON, delete it; and an estimate
//! calculator that prices usage without charging anything
//! (`QUOTA.ESTIMATE`), a read, so it works in read-only mode too.
//!
//! An entry is named `service/model`, each part without '/', so its page is
//! `/prices/<service>/<model>`.

use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value as Json;

use crate::plans::pretty;
use crate::quota::Cmd;
use crate::web::{self, App, Page, Section, html, refused, text, written};

/// Entries a page of the list.
const PAGE: usize = 100;
/// Rows of the calculator without JavaScript beyond the ones the price names.
const SPARE_ROWS: usize = 2;
/// Rows the calculator takes at most (64 rates and 16 multipliers, and some).
const MAX_ROWS: usize = 100;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/prices", get(list).post(create))
        .route("/prices/{service}/{model}", get(show).post(save))
        .route("/prices/{service}/{model}/delete", post(delete))
        .route("/assets/books.js", get(script))
}

async fn script() -> Response {
    web::asset_response(include_str!("../assets/books.js"), "text/javascript; charset=utf-8")
}

/// `/prices/<service>/<model>`, each part encoded; a name without '/' (never
/// stored) still gets a URL that says so.
pub fn price_url(name: &str) -> String {
    match name.split_once('/') {
        Some((service, model)) => format!("/prices/{}/{}", web::enc(service), web::enc(model)),
        None => format!("/prices/{}/", web::enc(name)),
    }
}

// ----- an entry, readable ------------------------------------------------------

/// A price entry as the page shows it.
#[derive(Debug, Default, PartialEq)]
pub struct Entry {
    pub metric: String,
    /// (usage name, rate as written: `2.50/1M`).
    pub rates: Vec<(String, String)>,
    /// (attribute, [(value, factor)]).
    pub multipliers: Vec<(String, Vec<(String, String)>)>,
    pub minimum: String,
}

impl Entry {
    pub fn of(v: &Json) -> Entry {
        let pairs = |o: Option<&Json>| -> Vec<(String, String)> {
            o.and_then(Json::as_object)
                .map(|m| m.iter().map(|(k, v)| (k.clone(), web::value_text(v))).collect())
                .unwrap_or_default()
        };
        Entry {
            metric: text(v, "metric"),
            rates: pairs(v.get("rates")),
            multipliers: v
                .get("multipliers")
                .and_then(Json::as_object)
                .map(|m| m.iter().map(|(a, values)| (a.clone(), pairs(Some(values)))).collect())
                .unwrap_or_default(),
            minimum: text(v, "minimum"),
        }
    }

    /// The rates in one line: `input_tokens 2.50/1M, output_tokens 10/1M`.
    pub fn rates_line(&self) -> String {
        self.rates.iter().map(|(n, r)| format!("{n} {r}")).collect::<Vec<_>>().join(", ")
    }

    /// The multipliers' attributes and values: `quality (hd, standard)`.
    pub fn multipliers_line(&self) -> String {
        self.multipliers
            .iter()
            .map(|(a, values)| {
                format!("{a} ({})", values.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>().join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// What a rate as written means per unit, for people: `2.50/1M` is "2.50
/// per million". Never computed: the command prices.
pub fn rate_words(rate: &str) -> String {
    if let Some(n) = rate.strip_suffix("/1M") {
        format!("{n} per million")
    } else if let Some(n) = rate.strip_suffix("/1K") {
        format!("{n} per thousand")
    } else {
        format!("{rate} each")
    }
}

// ----- the estimate calculator ------------------------------------------------

/// One row of the calculator: a usage name or attribute, and its value.
#[derive(Debug, PartialEq)]
pub struct Row {
    pub name: String,
    pub value: String,
    /// The datalist of an attribute's values, when the price names it.
    pub list: String,
}

/// The rows a calculator starts with: the rows asked (name/value pairs in
/// the query, in order), else one per rate and per multiplier attribute of
/// the price; then [`SPARE_ROWS`] empty ones.
pub fn rows_of(asked: &[(String, String)], entry: &Entry) -> Vec<Row> {
    let list_of = |name: &str| {
        entry.multipliers.iter().position(|(a, _)| a == name).map(|i| format!("values-{i}")).unwrap_or_default()
    };
    let mut rows: Vec<Row> = if asked.is_empty() {
        let names = entry.rates.iter().map(|(n, _)| n).chain(entry.multipliers.iter().map(|(a, _)| a));
        names.map(|n| Row { name: n.clone(), value: String::new(), list: list_of(n) }).collect()
    } else {
        asked.iter().map(|(n, v)| Row { name: n.clone(), value: v.clone(), list: list_of(n) }).collect()
    };
    rows.truncate(MAX_ROWS);
    for _ in 0..SPARE_ROWS.min(MAX_ROWS - rows.len()) {
        rows.push(Row { name: String::new(), value: String::new(), list: String::new() });
    }
    rows
}

/// The calculator's rows from a query string (`name=…&value=…` repeated, in
/// order), rows with neither left out; and whether it asked for an estimate.
pub fn asked_of(uri: &Uri) -> Result<(Vec<(String, String)>, bool), String> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map_err(|e| format!("the calculator's rows cannot be read: {e}"))?;
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut estimate = false;
    let mut name: Option<String> = None;
    for (k, v) in pairs {
        match k.as_str() {
            "name" => {
                if let Some(n) = name.replace(v) {
                    rows.push((n, String::new()));
                }
            }
            "value" => rows.push((name.take().unwrap_or_default(), v)),
            "estimate" => estimate = true,
            _ => {}
        }
    }
    if let Some(n) = name {
        rows.push((n, String::new()));
    }
    rows.retain(|(n, v)| !n.trim().is_empty() || !v.trim().is_empty());
    if rows.len() > MAX_ROWS {
        return Err(format!("at most {MAX_ROWS} rows"));
    }
    Ok((rows, estimate))
}

/// QUOTA.ESTIMATE's reply as the page shows it: every amount the reply's
/// own exact decimal string.
#[derive(Debug, Default)]
pub struct Estimate {
    pub metric: String,
    pub cost: String,
    pub subtotal: String,
    /// The minimum when it applied.
    pub minimum: String,
    /// (name, quantity, rate per unit, subtotal).
    pub lines: Vec<(String, String, String, String)>,
    /// (attribute, value, factor).
    pub multipliers: Vec<(String, String, String)>,
    /// (metric or usage name, amount): what a USAGE item charges.
    pub charges: Vec<(String, String)>,
}

impl Estimate {
    pub fn of(v: &Json) -> Estimate {
        let list = |field: &str| v.get(field).and_then(Json::as_array).cloned().unwrap_or_default();
        Estimate {
            metric: text(v, "metric"),
            cost: text(v, "cost"),
            subtotal: text(v, "subtotal"),
            minimum: text(v, "minimum"),
            lines: list("lines")
                .iter()
                .map(|l| (text(l, "name"), text(l, "quantity"), text(l, "rate"), text(l, "subtotal")))
                .collect(),
            multipliers: list("multipliers")
                .iter()
                .map(|m| (text(m, "attribute"), text(m, "value"), text(m, "factor")))
                .collect(),
            charges: v
                .get("charges")
                .and_then(Json::as_object)
                .map(|m| m.iter().map(|(k, a)| (k.clone(), web::value_text(a))).collect())
                .unwrap_or_default(),
        }
    }
}

// ----- the list ----------------------------------------------------------------

pub struct PriceLine {
    pub name: String,
    pub url: String,
    pub metric: String,
    pub rates: String,
    pub multipliers: String,
    pub minimum: String,
}

#[derive(Template)]
#[template(path = "prices.html")]
struct PricesPage {
    page: Page,
    prices: Vec<PriceLine>,
    total: usize,
    start: usize,
    previous: Option<String>,
    next: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    start: usize,
}

async fn list(State(app): State<App>, uri: Uri, Query(q): Query<ListQuery>) -> Response {
    let page = Page::new(&app, "Prices", Section::Prices, &uri);
    let names: Vec<String> = match app.quota.call(Cmd::PriceList, None, &[]).await {
        Ok(reply) => reply
            .as_array()
            .map(|a| a.iter().filter_map(|n| n.as_str().map(str::to_string)).collect())
            .unwrap_or_default(),
        Err(e) => {
            let (prices, previous, next) = (vec![], None, None);
            return html(&PricesPage { page, prices, total: 0, start: 0, previous, next, error: Some(e.message) });
        }
    };
    let total = names.len();
    let start = q.start.min(total);
    let shown = &names[start..(start + PAGE).min(total)];
    let mut prices = Vec::with_capacity(shown.len());
    let got = app.quota.call_each(Cmd::PriceGet, shown.iter().map(|n| (None, vec![n.clone()])).collect()).await;
    for (name, reply) in shown.iter().zip(got) {
        let v: Json =
            reply.ok().and_then(|r| r.as_str().and_then(|s| serde_json::from_str(s).ok())).unwrap_or_default();
        let e = Entry::of(&v);
        prices.push(PriceLine {
            name: name.clone(),
            url: price_url(name),
            rates: e.rates_line(),
            multipliers: e.multipliers_line(),
            minimum: e.minimum,
            metric: e.metric,
        });
    }
    let previous = (start > 0).then(|| format!("/prices?start={}", start.saturating_sub(PAGE)));
    let next = (start + PAGE < total).then(|| format!("/prices?start={}", start + PAGE));
    html(&PricesPage { page, prices, total, start, previous, next, error: None })
}

#[derive(Deserialize)]
pub struct NewPrice {
    #[serde(default)]
    name: String,
    #[serde(default)]
    json: String,
}

/// `QUOTA.PRICE SET` of a name the book does not have yet (changing an
/// entry is its own page's work).
async fn create(State(app): State<App>, headers: HeaderMap, axum::Form(f): axum::Form<NewPrice>) -> Response {
    let name = f.name.trim();
    let result = async {
        if name.is_empty() {
            return Err(refused("give the entry's service/model, such as chat/gpt-x"));
        }
        if f.json.trim().is_empty() {
            return Err(refused(
                "give the price as JSON, such as {\"metric\": \"credits\", \"rates\": {\"requests\": \"1\"}}",
            ));
        }
        match app.quota.call(Cmd::PriceGet, None, &[name]).await {
            Ok(_) => return Err(refused(format!("the price book already has {name}: open it to change it"))),
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        app.quota.call(Cmd::PriceSet, None, &[name, &f.json]).await?;
        Ok(format!("price {name} added"))
    }
    .await;
    written(result, "/prices", &headers)
}

// ----- one entry ---------------------------------------------------------------

#[derive(Template)]
#[template(path = "price.html")]
struct PricePage {
    page: Page,
    name: String,
    url: String,
    found: bool,
    entry: Entry,
    json: String,
    error: Option<String>,
    rows: Vec<Row>,
    estimate: Option<Estimate>,
    estimate_error: Option<String>,
}

async fn show(State(app): State<App>, uri: Uri, Path((service, model)): Path<(String, String)>) -> Response {
    let name = format!("{service}/{model}");
    let page = Page::new(&app, format!("Price {name}"), Section::Prices, &uri);
    let url = price_url(&name);
    let (mut found, mut entry, mut json, mut error) = (false, Entry::default(), String::new(), None);
    match app.quota.call(Cmd::PriceGet, None, &[&name]).await {
        Ok(reply) => {
            let canonical = web::value_text(&reply);
            entry = Entry::of(&serde_json::from_str(&canonical).unwrap_or_default());
            json = pretty(&canonical);
            found = true;
        }
        Err(e) if e.is_not_found() => error = Some(format!("The price book has no entry {name}.")),
        Err(e) => error = Some(e.message),
    }
    let (mut estimate, mut estimate_error) = (None, None);
    let asked = match asked_of(&uri) {
        Ok((asked, true)) if found => {
            let mut args: Vec<&str> = vec![&name];
            // A row left without a value is usage the request does not have
            // (the calculator starts with every name the price uses).
            for (n, v) in asked.iter().filter(|(_, v)| !v.trim().is_empty()) {
                args.push(n.trim());
                args.push(v.trim());
            }
            match app.quota.call(Cmd::Estimate, None, &args).await {
                Ok(reply) => estimate = Some(Estimate::of(&reply)),
                Err(e) => estimate_error = Some(e.message),
            }
            asked
        }
        Ok((asked, _)) => asked,
        Err(e) => {
            estimate_error = Some(e);
            vec![]
        }
    };
    let rows = rows_of(&asked, &entry);
    let mut r = html(&PricePage { page, name, url, found, entry, json, error, rows, estimate, estimate_error });
    if !found {
        *r.status_mut() = StatusCode::NOT_FOUND;
    }
    r
}

#[derive(Deserialize)]
pub struct SavePrice {
    #[serde(default)]
    json: String,
}

async fn save(
    State(app): State<App>,
    headers: HeaderMap,
    Path((service, model)): Path<(String, String)>,
    axum::Form(f): axum::Form<SavePrice>,
) -> Response {
    let name = format!("{service}/{model}");
    let result = async {
        if f.json.trim().is_empty() {
            return Err(refused("the price's JSON is empty: to remove the entry, delete it"));
        }
        app.quota.call(Cmd::PriceSet, None, &[&name, &f.json]).await?;
        Ok(format!("price {name} saved"))
    }
    .await;
    written(result, &price_url(&name), &headers)
}

async fn delete(
    State(app): State<App>,
    headers: HeaderMap,
    Path((service, model)): Path<(String, String)>,
) -> Response {
    let name = format!("{service}/{model}");
    let result = app.quota.call(Cmd::PriceDel, None, &[&name]).await.map(|n| {
        if web::value_text(&n) == "1" {
            format!("price {name} deleted")
        } else {
            format!("the price book had no {name}: nothing deleted")
        }
    });
    written(result, "/prices", &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> Entry {
        Entry::of(&serde_json::json!({
            "metric": "credits",
            "rates": {"images": "4", "requests": "0.30/1K"},
            "multipliers": {"quality": {"hd": "2", "standard": "1"}},
            "minimum": "0.01"
        }))
    }

    #[test]
    fn an_entry_reads_as_written() {
        let e = image();
        assert_eq!(e.metric, "credits");
        assert_eq!(e.rates_line(), "images 4, requests 0.30/1K");
        assert_eq!(e.multipliers_line(), "quality (hd, standard)");
        assert_eq!(e.minimum, "0.01");
        assert_eq!(Entry::of(&Json::Null), Entry::default());
        // rate, words
        let rows = [("2.50/1M", "2.50 per million"), ("0.30/1K", "0.30 per thousand"), ("0.002", "0.002 each")];
        for (rate, words) in rows {
            assert_eq!(rate_words(rate), words);
        }
    }

    #[test]
    fn urls_keep_service_and_model_apart() {
        assert_eq!(price_url("chat/gpt-x"), "/prices/chat/gpt-x");
        assert_eq!(price_url("a:b/c@d"), "/prices/a%3Ab/c%40d");
        assert_eq!(price_url("odd"), "/prices/odd/");
    }

    #[test]
    fn the_calculator_starts_with_the_price_s_names() {
        let rows = rows_of(&[], &image());
        let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["images", "requests", "quality", "", ""]);
        assert_eq!(rows[2].list, "values-0");
        let asked = vec![("quality".to_string(), "hd".to_string()), ("images".to_string(), "3".to_string())];
        let rows = rows_of(&asked, &image());
        assert_eq!(
            (rows[0].name.as_str(), rows[0].value.as_str(), rows[0].list.as_str()),
            ("quality", "hd", "values-0")
        );
        assert_eq!(rows.len(), 4);
    }

    #[test]
    fn the_query_gives_rows_in_order() {
        // query, rows, estimate
        type Case = (&'static str, &'static [(&'static str, &'static str)], bool);
        let rows: [Case; 5] = [
            ("", &[], false),
            ("name=images&value=3&name=quality&value=hd&estimate=1", &[("images", "3"), ("quality", "hd")], true),
            ("name=&value=&name=x&value=0.10000000000000000001", &[("x", "0.10000000000000000001")], false),
            ("name=a&name=b&value=2", &[("a", ""), ("b", "2")], false),
            ("value=5&name=tail", &[("", "5"), ("tail", "")], false),
        ];
        for (query, want, estimate) in rows {
            let want: Vec<(String, String)> = want.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect();
            let uri: Uri = format!("/prices/a/b?{query}").parse().unwrap();
            assert_eq!(asked_of(&uri), Ok((want, estimate)), "{query}");
        }
        let many: Uri = format!("/prices/a/b?{}", "name=a&value=1&".repeat(MAX_ROWS + 1)).parse().unwrap();
        assert!(asked_of(&many).is_err());
    }

    #[test]
    fn an_estimate_keeps_the_reply_s_strings() {
        let reply = serde_json::json!({
            "price": "image/pix", "metric": "credits", "cost": "24",
            "lines": [{"name": "images", "quantity": "3", "rate": "4", "subtotal": "12"}],
            "subtotal": "12", "minimum": null,
            "multipliers": [{"attribute": "quality", "value": "hd", "factor": "2"}],
            "charges": {"credits": "24", "images": "3"}
        });
        let e = Estimate::of(&reply);
        assert_eq!((e.cost.as_str(), e.subtotal.as_str(), e.minimum.as_str()), ("24", "12", ""));
        assert_eq!(e.lines, [("images".into(), "3".into(), "4".into(), "12".into())]);
        assert_eq!(e.multipliers, [("quality".into(), "hd".into(), "2".into())]);
        assert_eq!(e.charges, [("credits".into(), "24".into()), ("images".into(), "3".into())]);
    }
}
