//! Replies as a small ordered tree, emitted either as RESP (maps on RESP3,
//! flat key/value arrays on RESP2, by Redis itself) or as one JSON string.
//! Building the tree once and rendering it twice keeps `FORMAT json` and
//! the RESP reply identical in content.

use redis_module::{Context, raw};
use rust_decimal::Decimal;

use crate::engine::access::AccessCheck;
use crate::engine::outcome::{ChargeOutcome, Check, Draw, ReserveOutcome};
use crate::engine::{Costs, amount};

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Int(i64),
    /// A bulk string.
    Str(String),
    /// A bulk string known at compile time (no allocation).
    Text(&'static str),
    /// An amount, as a bulk string in its canonical text (formatted when
    /// emitted, without an allocation).
    Amount(Decimal),
    Nil,
    /// The simple string `OK`.
    Ok,
    Array(Vec<Reply>),
    /// A map whose keys are field names of the contract.
    Map(Vec<(&'static str, Reply)>),
    /// A map whose keys are data, such as metric names.
    Pairs(Vec<(String, Reply)>),
    /// Metric → amount.
    Costs(Costs),
    /// The checks of a reservation or charge: an array of maps, the access
    /// checks (`kind` `access`) first, then the per-policy checks (`kind`
    /// `policy`), written field by field from the checks themselves (a
    /// full answer has a dozen fields for each of many policies).
    Checks(Vec<AccessCheck>, Vec<Check>),
    /// The answer to `QUOTA.RESERVE` (and whether it is `BRIEF`), written
    /// straight from the outcome: the request path builds no tree of
    /// fields (see `super::reserve::reserve_reply` for its shape).
    Reserve(Box<ReserveOutcome>, bool),
    /// The answer to `QUOTA.CHARGE`, likewise (`super::reserve::charge_reply`).
    Charge(Box<ChargeOutcome>, bool),
}

/// A field value borrowed from what is replied.
enum Value<'a> {
    Str(&'a str),
    Int(i64),
    Amount(Decimal),
}

/// The fields of a check, in reply order: 13, or 15 with a period.
fn check_fields<'a>(c: &'a Check, window: &'a str) -> ([(&'static str, Value<'a>); 15], usize) {
    let (start, end) = c.period.unwrap_or_default();
    let ms = |t: u64| Value::Int(i64::try_from(t).unwrap_or(i64::MAX));
    let fields = [
        ("kind", Value::Str("policy")),
        ("path", Value::Str(&c.path)),
        ("policy", Value::Str(&c.policy)),
        ("metric", Value::Str(&c.metric)),
        ("mode", Value::Str(c.mode.as_str())),
        ("window", Value::Str(window)),
        ("limit", Value::Amount(c.limit)),
        ("used", Value::Amount(c.used)),
        ("held", Value::Amount(c.held)),
        ("requested", Value::Amount(c.requested)),
        ("remaining", Value::Amount(c.remaining)),
        ("pass", Value::Int(i64::from(c.pass))),
        ("status", Value::Str(c.status.as_str())),
        ("period_start", ms(start)),
        ("period_end", ms(end)),
    ];
    (fields, if c.period.is_some() { 15 } else { 13 })
}

/// The fields of an access check, in reply order: `service` and `model`
/// only when the request named them.
fn access_fields(c: &AccessCheck) -> ([(&'static str, Value<'_>); 6], usize) {
    let mut fields = [
        ("kind", Value::Str("access")),
        ("path", Value::Str(&c.path)),
        ("rule", Value::Str(c.rule.as_str())),
        ("pass", Value::Int(0)),
        ("pass", Value::Int(0)),
        ("pass", Value::Int(0)),
    ];
    if c.archived {
        fields[0] = ("kind", Value::Str("archived"));
        fields[2] = ("pass", Value::Int(0));
        return (fields, 3);
    }
    let mut n = 3;
    if let Some(service) = &c.service {
        fields[n] = ("service", Value::Str(service));
        n += 1;
    }
    if let Some(model) = &c.model {
        fields[n] = ("model", Value::Str(model));
        n += 1;
    }
    fields[n] = ("pass", Value::Int(0));
    (fields, n + 1)
}

/// Calls `f` with the fields of each check, access checks first (the
/// window label is written only for rolling windows; the others have a
/// fixed one).
fn for_each_check(access: &[AccessCheck], checks: &[Check], mut f: impl FnMut(&[(&'static str, Value<'_>)])) {
    for c in access {
        let (fields, n) = access_fields(c);
        f(&fields[..n]);
    }
    for c in checks {
        let rolling;
        let window = match c.window.static_label() {
            Some(label) => label,
            None => {
                rolling = c.window.label();
                &rolling
            }
        };
        let (fields, n) = check_fields(c, window);
        f(&fields[..n]);
    }
}

impl Reply {
    pub fn amount(value: Decimal) -> Reply {
        Reply::Amount(value)
    }

    pub fn flag(value: bool) -> Reply {
        Reply::Int(i64::from(value))
    }

    pub fn ms(value: u64) -> Reply {
        Reply::Int(i64::try_from(value).unwrap_or(i64::MAX))
    }

    pub fn str(value: impl Into<String>) -> Reply {
        Reply::Str(value.into())
    }

    pub fn opt_str(value: Option<&str>) -> Reply {
        value.map_or(Reply::Nil, |s| Reply::Str(s.to_string()))
    }

    /// Metric → amount.
    pub fn costs(costs: &Costs) -> Reply {
        Reply::Pairs(costs.iter().map(|(m, a)| (m.clone(), Reply::amount(*a))).collect())
    }

    /// Metric → amount, taking the metric names.
    pub fn costs_owned(costs: Costs) -> Reply {
        Reply::Costs(costs)
    }

    pub fn strings(values: impl IntoIterator<Item = String>) -> Reply {
        Reply::Array(values.into_iter().map(Reply::Str).collect())
    }
}

/// Emits `reply` to the client of `ctx`.
pub fn emit(ctx: &Context, reply: &Reply) {
    let c = ctx.ctx;
    let text = |s: &str| {
        raw::reply_with_string_buffer(c, s.as_ptr().cast(), s.len());
    };
    match reply {
        Reply::Int(n) => {
            raw::reply_with_long_long(c, *n);
        }
        Reply::Str(s) => text(s),
        Reply::Text(s) => text(s),
        Reply::Amount(value) => text(amount::Text::new().write(*value)),
        Reply::Nil => {
            raw::reply_with_null(c);
        }
        Reply::Ok => {
            raw::reply_with_simple_string(c, c"OK".as_ptr());
        }
        Reply::Array(items) => {
            raw::reply_with_array(c, items.len() as _);
            for item in items {
                emit(ctx, item);
            }
        }
        Reply::Map(fields) => {
            raw::reply_with_map(c, fields.len() as _);
            for (key, value) in fields {
                text(key);
                emit(ctx, value);
            }
        }
        Reply::Pairs(fields) => {
            raw::reply_with_map(c, fields.len() as _);
            for (key, value) in fields {
                text(key);
                emit(ctx, value);
            }
        }
        Reply::Costs(costs) => emit_costs(c, costs),
        Reply::Checks(access, checks) => emit_checks(c, access, checks),
        Reply::Reserve(o, brief) => emit_reserve(c, o, *brief),
        Reply::Charge(o, brief) => emit_charge(c, o, *brief),
    }
}

fn text(c: *mut raw::RedisModuleCtx, s: &str) {
    raw::reply_with_string_buffer(c, s.as_ptr().cast(), s.len());
}

fn int(c: *mut raw::RedisModuleCtx, n: i64) {
    raw::reply_with_long_long(c, n);
}

fn emit_costs(c: *mut raw::RedisModuleCtx, costs: &Costs) {
    raw::reply_with_map(c, costs.len() as _);
    let mut amount_text = amount::Text::new();
    for (metric, value) in costs {
        text(c, metric);
        text(c, amount_text.write(*value));
    }
}

fn emit_strings(c: *mut raw::RedisModuleCtx, values: &[String]) {
    raw::reply_with_array(c, values.len() as _);
    for value in values {
        text(c, value);
    }
}

fn emit_checks(c: *mut raw::RedisModuleCtx, access: &[AccessCheck], checks: &[Check]) {
    raw::reply_with_array(c, (access.len() + checks.len()) as _);
    let mut amount_text = amount::Text::new();
    for_each_check(access, checks, |fields| {
        raw::reply_with_map(c, fields.len() as _);
        for (key, value) in fields {
            text(c, key);
            match value {
                Value::Str(s) => text(c, s),
                Value::Int(n) => int(c, *n),
                Value::Amount(a) => text(c, amount_text.write(*a)),
            }
        }
    });
}

/// `super::reserve::reserve_reply`'s map, field by field.
fn emit_reserve(c: *mut raw::RedisModuleCtx, o: &ReserveOutcome, brief: bool) {
    let checks = !(brief && o.allowed);
    raw::reply_with_map(c, if checks { 12 } else { 11 });
    text(c, "allowed");
    int(c, i64::from(o.allowed));
    text(c, "id");
    match &o.id {
        Some(id) => text(c, id),
        None => {
            raw::reply_with_null(c);
        }
    }
    text(c, "expires_at");
    int(c, i64::try_from(o.expires_at_ms).unwrap_or(i64::MAX));
    for (name, n) in [("items", o.items), ("fits", o.fits), ("reserved", o.reserved)] {
        text(c, name);
        int(c, n as i64);
    }
    text(c, "cost");
    emit_costs(c, &o.cost);
    text(c, "held");
    emit_costs(c, o.held());
    if checks {
        text(c, "checks");
        emit_checks(c, &o.access, &o.checks);
    }
    text(c, "denied_by");
    emit_strings(c, &o.denied_by);
    text(c, "message");
    text(c, &o.message);
    text(c, "duplicate");
    int(c, i64::from(o.duplicate));
}

/// `super::reserve::charge_reply`'s map, field by field.
fn emit_charge(c: *mut raw::RedisModuleCtx, o: &ChargeOutcome, brief: bool) {
    let checks = !(brief && o.allowed);
    raw::reply_with_map(c, if checks { 8 } else { 7 });
    text(c, "allowed");
    int(c, i64::from(o.allowed));
    text(c, "charged");
    emit_costs(c, &o.charged);
    if checks {
        text(c, "checks");
        emit_checks(c, &o.access, &o.checks);
    }
    text(c, "denied_by");
    emit_strings(c, &o.denied_by);
    text(c, "message");
    text(c, &o.message);
    text(c, "over");
    emit_strings(c, &o.over);
    text(c, "duplicate");
    int(c, i64::from(o.duplicate));
    text(c, "drawn");
    emit_drawn(c, &o.drawn);
}

fn emit_drawn(c: *mut raw::RedisModuleCtx, drawn: &[Draw]) {
    raw::reply_with_array(c, drawn.len() as _);
    let mut amount_text = amount::Text::new();
    for d in drawn {
        raw::reply_with_map(c, 4);
        text(c, "path");
        text(c, &d.path);
        text(c, "policy");
        text(c, &d.policy);
        text(c, "grant");
        text(c, &d.grant);
        text(c, "amount");
        text(c, amount_text.write(d.amount));
    }
}

/// Renders `reply` as compact JSON with fields in reply order.
pub fn to_json(reply: &Reply) -> String {
    let mut out = String::new();
    write_json(reply, &mut out);
    out
}

/// Writes `s` as a JSON string (RFC 8259 escaping).
fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_json_map<'a, K: AsRef<str> + 'a>(fields: impl Iterator<Item = (&'a K, &'a Reply)>, out: &mut String) {
    out.push('{');
    for (i, (k, v)) in fields.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(k.as_ref(), out);
        out.push(':');
        write_json(v, out);
    }
    out.push('}');
}

fn write_json(reply: &Reply, out: &mut String) {
    match reply {
        Reply::Int(n) => out.push_str(&n.to_string()),
        Reply::Str(s) => write_json_str(s, out),
        Reply::Text(s) => write_json_str(s, out),
        Reply::Amount(value) => write_json_str(amount::Text::new().write(*value), out),
        Reply::Nil => out.push_str("null"),
        Reply::Ok => out.push_str("\"OK\""),
        Reply::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Reply::Map(fields) => write_json_map(fields.iter().map(|(k, v)| (k, v)), out),
        Reply::Pairs(fields) => write_json_map(fields.iter().map(|(k, v)| (k, v)), out),
        Reply::Costs(costs) => write_json_costs(costs, out),
        Reply::Reserve(o, brief) => write_json(&super::reserve::reserve_reply((**o).clone(), *brief), out),
        Reply::Charge(o, brief) => write_json(&super::reserve::charge_reply((**o).clone(), *brief), out),
        Reply::Checks(access, checks) => write_json_checks(access, checks, out),
    }
}

/// Writes costs as one JSON object, `{metric: amount, …}`.
fn write_json_costs(costs: &Costs, out: &mut String) {
    out.push('{');
    for (i, (metric, value)) in costs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_json_str(metric, out);
        out.push(':');
        write_json_str(amount::Text::new().write(*value), out);
    }
    out.push('}');
}

/// Writes checks as a JSON array of objects, fields in reply order.
fn write_json_checks(access: &[AccessCheck], checks: &[Check], out: &mut String) {
    out.push('[');
    let mut first = true;
    for_each_check(access, checks, |fields| {
        if !first {
            out.push(',');
        }
        first = false;
        out.push('{');
        for (i, (key, value)) in fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_json_str(key, out);
            out.push(':');
            match value {
                Value::Str(s) => write_json_str(s, out),
                Value::Int(n) => out.push_str(&n.to_string()),
                Value::Amount(a) => write_json_str(amount::Text::new().write(*a), out),
            }
        }
        out.push('}');
    });
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_field_order_and_escapes() {
        let r = Reply::Map(vec![
            ("b", Reply::Int(1)),
            ("a", Reply::Array(vec![Reply::Nil, Reply::str("x\"y")])),
            ("spent", Reply::costs(&vec![("credits".into(), Decimal::new(125, 1))])),
            ("cost", Reply::costs_owned(vec![("credits".into(), Decimal::new(-3, 0)), ("usd".into(), Decimal::ZERO)])),
        ]);
        assert_eq!(
            to_json(&r),
            r#"{"b":1,"a":[null,"x\"y"],"spent":{"credits":"12.5"},"cost":{"credits":"-3","usd":"0"}}"#
        );
        let tricky = "a\"b\\c\nd\u{1}é💥";
        let parsed: serde_json::Value = serde_json::from_str(&to_json(&Reply::str(tricky))).unwrap();
        assert_eq!(parsed, serde_json::Value::String(tricky.into()));
    }

    #[test]
    fn checks_render_as_maps_of_their_fields() {
        use crate::engine::{Mode, Status, Window};
        let check = |window, period| Check {
            path: "a/b".into(),
            policy: "cap".into(),
            metric: "credits".into(),
            mode: Mode::Strict,
            window,
            limit: Decimal::new(100, 0),
            used: Decimal::new(125, 1),
            held: Decimal::ZERO,
            requested: Decimal::new(-5, 2),
            remaining: Decimal::new(875, 1),
            pass: true,
            status: Status::Healthy,
            period,
        };
        let checks = vec![check(Window::None, None), check(Window::Rolling { duration_ms: 3_600_000 }, Some((1, 2)))];
        let fields = r#""kind":"policy","path":"a/b","policy":"cap","metric":"credits","mode":"strict","window":"#;
        let amounts = r#""limit":"100","used":"12.5","held":"0","requested":"-0.05","remaining":"87.5","pass":1,"status":"healthy""#;
        assert_eq!(
            to_json(&Reply::Checks(Vec::new(), checks)),
            format!(
                r#"[{{{fields}"none",{amounts}}},{{{fields}"rolling 1h",{amounts},"period_start":1,"period_end":2}}]"#
            )
        );
    }
}
