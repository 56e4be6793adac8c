//! What the engine's test files share: exact decimals from text and the
//! plain policy most cases start from.

use std::str::FromStr;

use rust_decimal::Decimal;

use super::policy::{Mode, PolicySpec, Warn};
use super::window::Window;

pub fn d(text: &str) -> Decimal {
    Decimal::from_str(text).expect("test decimal")
}

/// A strict policy of `limit` on `metric`, without window, filter or any
/// option: `PolicySpec { field, ..spec(m, l) }` for the others.
pub fn spec(metric: &str, limit: &str) -> PolicySpec {
    PolicySpec {
        metric: metric.into(),
        limit: d(limit),
        mode: Mode::Strict,
        window: Window::None,
        warn: Warn::default(),
        rollover: None,
        service: None,
        model: None,
        low: None,
        inflight: false,
    }
}

/// The tree without its usage buckets: what encodings before 5 stored
/// (their fixtures' builders record usage now).
pub fn without_usage(mut tree: super::tree::Tree) -> super::tree::Tree {
    for node in tree.nodes.iter_mut().flatten() {
        node.usage = None;
    }
    tree
}

/// Version 4's bytes as version 5 writes them for a tree without usage
/// or labels: two more bytes, `None` and `None`.
pub fn as_v5(bytes: &[u8]) -> Vec<u8> {
    [bytes, &[0, 0]].concat()
}

/// Version 5's bytes as version 6 writes them for a tree without zones or
/// `week`/`year` anchors: one more byte, `None`.
pub fn as_v6(bytes: &[u8]) -> Vec<u8> {
    [bytes, &[0]].concat()
}

/// Debug output without what encoding 5 added to views, holds and events
/// (labels, META; none of it set in older fixtures).
pub fn without_v5_fields(text: &str) -> String {
    let text = text.replace(", labels: None", "").replace(", meta: None", "").replace(", archived: false", "");
    // Encoding 6 (time zones): a window's zone, UTC in every older tree.
    without_base_limit(&text.replace(", tz: Utc }", " }"))
}

/// Debug output without the views' `base_limit` (added for the dashboard's
/// policy editor after every fixture was written; it is shown from the
/// stored limit, so old trees have it too).
pub fn without_base_limit(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(", base_limit: ") {
        out.push_str(&rest[..i]);
        let end = rest[i..].find(", used: ").expect("base_limit comes right before used");
        rest = &rest[i + end..];
    }
    out.push_str(rest);
    out
}
