//! The trees page: find a tree by name (SCAN, paged by its cursor) and see
//! each one's root at a glance.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::Uri;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::quota::{Cmd, TreesFrom};
use crate::web::{self, App, Page, Section, html, text};

/// Trees shown a page (a few more when SCAN's last batch brings them).
const PAGE: usize = 50;
/// The row of a key the dashboard cannot name in a URL.
const NOT_UTF8: &str = "(a key that is not UTF-8: the dashboard cannot open it)";

pub fn routes() -> Router<App> {
    Router::new().route("/trees", get(list))
}

#[derive(Deserialize)]
pub struct ListQuery {
    /// Part of a tree's name (any case is taken as written: Redis names are exact).
    #[serde(default)]
    q: String,
    #[serde(default)]
    cursor: Option<String>,
    /// The last name shown of the cursor's SCAN batch (a page cut inside it).
    #[serde(default)]
    after: Option<String>,
    /// An exact key to open.
    #[serde(default)]
    open: Option<String>,
}

/// One row: a tree's root as QUOTA.GET shows it.
pub struct Row {
    pub key: String,
    pub url: String,
    pub status: String,
    pub class: &'static str,
    pub headline: String,
    pub plan: String,
    /// Why the root could not be read (an ACL refusal, said shortly).
    pub error: String,
}

#[derive(Template)]
#[template(path = "trees.html")]
struct TreesPage {
    page: Page,
    q: String,
    rows: Vec<Row>,
    /// Where the next page starts: SCAN's cursor, and the last name shown
    /// of that cursor's batch ("" when the page ended with the batch).
    next: Option<(String, String)>,
    error: Option<String>,
}

/// SCAN's pattern for a part of a name: its glob characters escaped.
fn pattern(q: &str) -> String {
    let mut p = String::from("*");
    for c in q.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    if !q.is_empty() {
        p.push('*');
    }
    p
}

/// A node's headline: its first policy's `used / limit metric`, else its
/// spent, else nothing.
pub fn headline(node: &serde_json::Value) -> String {
    if let Some(p) = node.get("policies").and_then(|p| p.as_array()).and_then(|p| p.first()) {
        return format!("{} / {} {}", text(p, "used"), text(p, "limit"), text(p, "metric"));
    }
    match node.get("spent").and_then(|s| s.as_object()) {
        Some(spent) if !spent.is_empty() => {
            spent.iter().map(|(m, v)| format!("{} {m}", v.as_str().unwrap_or(""))).collect::<Vec<_>>().join(", ")
        }
        _ => String::new(),
    }
}

async fn list(State(app): State<App>, uri: Uri, Query(q): Query<ListQuery>) -> Response {
    if let Some(key) = q.open.as_deref().filter(|k| !k.is_empty()) {
        return Redirect::to(&web::tree_url(key)).into_response();
    }
    let page = Page::new(&app, "Trees", Section::Trees, &uri);
    let from = TreesFrom {
        cursor: q.cursor.clone().filter(|c| !c.is_empty()).unwrap_or_else(|| "0".to_string()),
        after: q.after.clone(),
    };
    let (keys, next) = match app.quota.scan_trees(&pattern(&q.q), &from, PAGE).await {
        Ok(found) => found,
        Err(e) => {
            return html(&TreesPage { page, q: q.q, rows: vec![], next: None, error: Some(e.message) });
        }
    };
    // One QUOTA.GET per tree that can be named, answers in the keys' order.
    let named = keys.iter().filter_map(|k| k.as_ref().ok()).map(|k| (Some(k.clone()), vec!["/".to_string()]));
    let mut roots = app.quota.call_each(Cmd::Get, named.collect()).await.into_iter();
    let rows = keys
        .into_iter()
        .map(|key| {
            let key = match key {
                Ok(key) => key,
                Err(shown) => {
                    return Row {
                        key: shown,
                        url: String::new(),
                        status: String::new(),
                        class: web::status_class(""),
                        headline: String::new(),
                        plan: String::new(),
                        error: NOT_UTF8.to_string(),
                    };
                }
            };
            let (root, error) = match roots.next() {
                Some(Ok(root)) => (root, String::new()),
                Some(Err(e)) if e.kind == "NOPERM" => {
                    (serde_json::Value::Null, format!("quota-dash's account ({}) may not read it", app.quota.user))
                }
                Some(Err(e)) => (serde_json::Value::Null, e.message),
                None => (serde_json::Value::Null, String::new()),
            };
            let status = text(&root, "status");
            Row {
                url: web::tree_url(&key),
                class: web::status_class(&status),
                headline: headline(&root),
                plan: text(&root, "plan"),
                status,
                key,
                error,
            }
        })
        .collect();
    let next = (!next.at_end()).then(|| (next.cursor.clone(), next.after.clone().unwrap_or_default()));
    html(&TreesPage { page, q: q.q, rows, next, error: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_the_text_literally() {
        assert_eq!(pattern(""), "*");
        assert_eq!(pattern("acme"), "*acme*");
        assert_eq!(pattern("a*b?[c]\\"), "*a\\*b\\?\\[c\\]\\\\*");
    }
}
