//! The price book: what a request costs before it runs (estimate, reserve)
//! and after (commit with the actual usage).
//!
//! An entry prices one `service/model`:
//!
//! ```json
//! {"metric": "credits",
//!  "rates": {"input_tokens": "2.50/1M", "output_tokens": "10/1M"},
//!  "multipliers": {"quality": {"standard": "1", "hd": "2"}},
//!  "minimum": "0.01"}
//! ```
//!
//! cost = max(minimum, Σ rate × quantity) × Π multiplier(attribute value).
//! Rates are decimals per unit, or per thousand (`"0.30/1K"`) or per
//! million (`"2.50/1M"`) units, because per-token against per-million is the
//! most common pricing mistake. Everything is exact decimal arithmetic; the
//! final cost is rounded to the ledger's [`amount::MAX_SCALE`] decimal
//! places (half away from zero) only when it has more.
//!
//! Lua twin: `P` (lua/src/30_pricing.lua).

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::amount;
use super::error::{Error, Result};
use super::names;
use super::outcome::Costs;

/// Most entries in the price book.
pub const MAX_PRICES: usize = 10_000;
/// Most rates, attributes, and values per attribute in one entry.
pub const MAX_RATES: usize = 64;
pub const MAX_ATTRIBUTES: usize = 16;
pub const MAX_VALUES: usize = 64;
/// Longest price JSON accepted.
pub const MAX_JSON_LEN: usize = 64 * 1024;

/// A rate as written (`"2.50/1M"`) and per unit (`0.0000025`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rate {
    pub text: String,
    pub per_unit: Decimal,
}

/// One entry of the price book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    /// The metric the cost is charged in.
    pub metric: String,
    /// Usage name → rate.
    pub rates: BTreeMap<String, Rate>,
    /// Attribute → value → factor.
    pub multipliers: BTreeMap<String, BTreeMap<String, Decimal>>,
    pub minimum: Option<Decimal>,
}

/// `service/model`, validated: two names of `A-Z a-z 0-9 _ - . : @`.
/// Lua twin: `P.parse_key` (lua/src/30_pricing.lua).
pub fn parse_key(text: &str) -> Result<(String, String)> {
    let bad = || {
        Error::syntax(format!(
            "invalid price key '{}': use service/model, each 1-64 characters of A-Z a-z 0-9 _ - . : @",
            names::clip(text)
        ))
    };
    let (service, model) = text.split_once('/').ok_or_else(bad)?;
    let ok = |s: &str| {
        !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:@".contains(&b))
    };
    if ok(service) && ok(model) { Ok((service.to_string(), model.to_string())) } else { Err(bad()) }
}

fn field_error(field: &str, why: impl std::fmt::Display) -> Error {
    Error::syntax(format!("price field '{field}': {why}"))
}

/// A decimal given as a JSON string or number (numbers keep their literal
/// text, so `0.1` is exactly 0.1).
fn decimal_of(value: &Value, field: &str) -> Result<Decimal> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(field_error(field, "must be a decimal string or number")),
    };
    let d = amount::parse_non_negative(&text).map_err(|e| field_error(field, strip(e)))?;
    Ok(d)
}

fn strip(e: Error) -> String {
    match e {
        Error::InvalidAmount(m) | Error::Syntax(m) | Error::UnknownMetric(m) => m,
        other => other.to_string(),
    }
}

/// `"0.002"`, `"2.50/1M"`, `"0.30/1K"` → per-unit rate.
fn parse_rate(value: &Value, field: &str) -> Result<Rate> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return Err(field_error(field, "must be a decimal, or a decimal per 1K or 1M units such as \"2.50/1M\"")),
    };
    let (number, per) = match text.split_once('/') {
        None => (text.as_str(), Decimal::ONE),
        Some((n, "1K" | "1k")) => (n, Decimal::from(1000)),
        Some((n, "1M" | "1m")) => (n, Decimal::from(1_000_000)),
        Some(_) => {
            return Err(field_error(field, format!("'{}': the unit may only be /1K or /1M", names::clip(&text))));
        }
    };
    let value = amount::parse_non_negative(number).map_err(|e| field_error(field, strip(e)))?;
    Ok(Rate { text: text.clone(), per_unit: value / per })
}

/// The `rates` field: usage name → rate, none named as the price's own
/// `metric`.
fn parse_rates(
    field: Option<&Value>,
    metric: &str,
    parse_metric: fn(&str) -> Result<String>,
) -> Result<BTreeMap<String, Rate>> {
    let Some(Value::Object(rate_map)) = field else {
        return Err(field_error("rates", "is required: an object from usage name to rate"));
    };
    if rate_map.is_empty() {
        return Err(field_error("rates", "must name at least one usage"));
    }
    if rate_map.len() > MAX_RATES {
        return Err(Error::Limit(format!("at most {MAX_RATES} rates per price")));
    }
    let mut rates = BTreeMap::new();
    for (name, rate) in rate_map {
        let field = format!("rates.{name}");
        let name = parse_metric(name).map_err(|e| field_error(&field, strip(e)))?;
        if name == metric {
            return Err(field_error(&field, "a usage name cannot be the price's own metric"));
        }
        rates.insert(name, parse_rate(rate, &field)?);
    }
    Ok(rates)
}

/// The optional `multipliers` field: attribute → value → factor, no
/// attribute also a usage name of `rates`.
fn parse_multipliers(
    field: Option<&Value>,
    rates: &BTreeMap<String, Rate>,
    parse_metric: fn(&str) -> Result<String>,
) -> Result<BTreeMap<String, BTreeMap<String, Decimal>>> {
    let mut multipliers = BTreeMap::new();
    let attributes = match field {
        None => return Ok(multipliers),
        Some(Value::Object(attributes)) => attributes,
        Some(_) => return Err(field_error("multipliers", "must be an object from attribute to {value: factor}")),
    };
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(Error::Limit(format!("at most {MAX_ATTRIBUTES} multiplier attributes per price")));
    }
    for (attribute, values) in attributes {
        let field = format!("multipliers.{attribute}");
        let attribute = parse_metric(attribute).map_err(|e| field_error(&field, strip(e)))?;
        if rates.contains_key(&attribute) {
            return Err(field_error(&field, "an attribute cannot also be a usage name"));
        }
        multipliers.insert(attribute, parse_factors(values, &field)?);
    }
    Ok(multipliers)
}

/// One attribute's values: value → factor, 1 to [`MAX_VALUES`] of them.
fn parse_factors(values: &Value, field: &str) -> Result<BTreeMap<String, Decimal>> {
    let Value::Object(values) = values else {
        return Err(field_error(field, "must be an object from value to factor"));
    };
    if values.is_empty() || values.len() > MAX_VALUES {
        return Err(field_error(field, format!("must list 1 to {MAX_VALUES} values")));
    }
    let mut factors = BTreeMap::new();
    for (label, factor) in values {
        let field = format!("{field}.{label}");
        names::parse_name(label, "attribute value").map_err(|e| field_error(&field, strip(e)))?;
        factors.insert(label.clone(), decimal_of(factor, &field)?);
    }
    Ok(factors)
}

impl Price {
    /// Parses and validates a price entry. Every error names the field.
    /// Lua twin: `P.from_json` (lua/src/30_pricing.lua).
    pub fn from_json(text: &str) -> Result<Price> {
        Price::parse_json(text, names::parse_metric)
    }

    /// [`Price::from_json`] for a price read back from the price book:
    /// names as the release that stored it took them
    /// ([`names::parse_stored_metric`]).
    /// Lua twin: `from_json` (lua/src/30_pricing.lua), given trusted.
    pub fn from_stored_json(text: &str) -> Result<Price> {
        Price::parse_json(text, names::parse_stored_metric)
    }

    fn parse_json(text: &str, parse_metric: fn(&str) -> Result<String>) -> Result<Price> {
        if text.len() > MAX_JSON_LEN {
            return Err(Error::Limit(format!("a price is at most {MAX_JSON_LEN} bytes of JSON")));
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| Error::syntax(format!("price is not valid JSON: {e}")))?;
        let Value::Object(object) = value else { return Err(Error::syntax("a price must be a JSON object")) };
        for key in object.keys() {
            if !["metric", "rates", "multipliers", "minimum"].contains(&key.as_str()) {
                return Err(field_error(key, "unknown field (use metric, rates, multipliers, minimum)"));
            }
        }
        let metric = match object.get("metric") {
            Some(Value::String(m)) => parse_metric(m).map_err(|e| field_error("metric", strip(e)))?,
            Some(_) => return Err(field_error("metric", "must be a metric name")),
            None => return Err(field_error("metric", "is required")),
        };
        let rates = parse_rates(object.get("rates"), &metric, parse_metric)?;
        let multipliers = parse_multipliers(object.get("multipliers"), &rates, parse_metric)?;
        let minimum = object.get("minimum").map(|m| decimal_of(m, "minimum")).transpose()?;
        Ok(Price { metric, rates, multipliers, minimum })
    }

    /// The entry as canonical JSON: fields in a fixed order, rates as they
    /// were written, decimals as strings.
    /// Lua twin: `to_json` (lua/src/30_pricing.lua).
    pub fn to_json(&self) -> String {
        let text = |s: &str| Value::String(s.to_string()).to_string();
        let object = |pairs: Vec<String>| format!("{{{}}}", pairs.join(","));
        let rates = self.rates.iter().map(|(k, r)| format!("{}:{}", text(k), text(&r.text))).collect();
        let mut fields = vec![format!("\"metric\":{}", text(&self.metric)), format!("\"rates\":{}", object(rates))];
        if !self.multipliers.is_empty() {
            let attributes = self
                .multipliers
                .iter()
                .map(|(attr, values)| {
                    let values =
                        values.iter().map(|(v, f)| format!("{}:{}", text(v), text(&amount::format(*f)))).collect();
                    format!("{}:{}", text(attr), object(values))
                })
                .collect();
            fields.push(format!("\"multipliers\":{}", object(attributes)));
        }
        if let Some(minimum) = self.minimum {
            fields.push(format!("\"minimum\":{}", text(&amount::format(minimum))));
        }
        object(fields)
    }

    /// Prices `usage` (name, value) pairs: rate names take quantities,
    /// attribute names take one of their values. Every attribute must be
    /// given, so a request is never priced at a default it did not ask for.
    /// Lua twin: `estimate`, which `P.estimate` calls (lua/src/30_pricing.lua).
    pub fn estimate(&self, key: &str, usage: &[(String, String)]) -> Result<Estimate> {
        let (lines, factors) = self.read_usage(key, usage)?;
        if lines.is_empty() {
            return Err(Error::syntax(format!("USAGE for {key} needs at least one of {}", self.known_names())));
        }
        if let Some(missing) = self.multipliers.keys().find(|a| !factors.iter().any(|f| &f.attribute == *a)) {
            return Err(Error::syntax(format!(
                "USAGE for {key} needs {missing} (one of {})",
                self.multipliers[missing].keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        let too_large = || Error::InvalidAmount(format!("the cost for {key} is larger than 10^15"));
        let subtotal =
            lines.iter().try_fold(Decimal::ZERO, |sum, l| sum.checked_add(l.subtotal)).ok_or_else(too_large)?;
        let minimum_applied = self.minimum.filter(|m| *m > subtotal);
        let mut cost = minimum_applied.unwrap_or(subtotal);
        for f in &factors {
            cost = cost.checked_mul(f.factor).ok_or_else(too_large)?;
        }
        let cost = if cost.scale() > amount::MAX_SCALE {
            cost.round_dp_with_strategy(amount::MAX_SCALE, RoundingStrategy::MidpointAwayFromZero)
        } else {
            cost
        }
        .normalize();
        if cost > amount::MAX_INPUT {
            return Err(too_large());
        }
        let metric = self.metric.clone();
        Ok(Estimate { key: key.to_string(), metric, lines, subtotal, minimum_applied, factors, cost })
    }

    /// The priced line of each rate name in `usage` and the factor of each
    /// attribute, each name at most once and every name known.
    fn read_usage(&self, key: &str, usage: &[(String, String)]) -> Result<(Vec<Line>, Vec<Factor>)> {
        let mut lines = Vec::new();
        let mut factors = Vec::new();
        for (name, value) in usage {
            if lines.iter().any(|l: &Line| &l.name == name) || factors.iter().any(|f: &Factor| &f.attribute == name) {
                return Err(Error::syntax(format!("usage '{name}' appears twice for {key}")));
            }
            if let Some(rate) = self.rates.get(name) {
                let quantity = amount::parse_non_negative(value)?;
                let subtotal = rate
                    .per_unit
                    .checked_mul(quantity)
                    .ok_or_else(|| Error::InvalidAmount(format!("{quantity} {name} costs more than can be counted")))?;
                lines.push(Line { name: name.clone(), quantity, rate: rate.per_unit, subtotal });
            } else if let Some(values) = self.multipliers.get(name) {
                let factor = values.get(value).copied().ok_or_else(|| {
                    Error::syntax(format!(
                        "unknown value '{}' of {name} for {key}: use {}",
                        names::clip(value),
                        values.keys().cloned().collect::<Vec<_>>().join(", ")
                    ))
                })?;
                factors.push(Factor { attribute: name.clone(), value: value.clone(), factor });
            } else {
                return Err(Error::syntax(format!(
                    "unknown usage '{}' for {key}: its price has {}",
                    names::clip(name),
                    self.known_names()
                )));
            }
        }
        Ok((lines, factors))
    }

    fn known_names(&self) -> String {
        let rates: Vec<&str> = self.rates.keys().map(String::as_str).collect();
        let attributes: Vec<&str> = self.multipliers.keys().map(String::as_str).collect();
        if attributes.is_empty() {
            format!("rates {}", rates.join(", "))
        } else {
            format!("rates {} and attributes {}", rates.join(", "), attributes.join(", "))
        }
    }
}

/// One priced usage name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub name: String,
    pub quantity: Decimal,
    /// Per unit.
    pub rate: Decimal,
    pub subtotal: Decimal,
}

/// One multiplier applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Factor {
    pub attribute: String,
    pub value: String,
    pub factor: Decimal,
}

/// The answer to `QUOTA.ESTIMATE`, and the pricing of a `USAGE` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    pub key: String,
    pub metric: String,
    pub lines: Vec<Line>,
    /// Σ rate × quantity, before the minimum and the multipliers.
    pub subtotal: Decimal,
    /// The minimum, when it was above the subtotal.
    pub minimum_applied: Option<Decimal>,
    pub factors: Vec<Factor>,
    pub cost: Decimal,
}

impl Estimate {
    /// What a `USAGE` item charges: the cost in the price's metric and each
    /// raw quantity under its own name.
    /// Lua twin: `charges`, used by `P.usage` (lua/src/30_pricing.lua).
    pub fn charges(&self) -> Costs {
        let mut costs = vec![(self.metric.clone(), self.cost)];
        costs.extend(self.lines.iter().map(|l| (l.name.clone(), l.quantity)));
        costs
    }
}

/// The server-wide price book.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceBook {
    entries: BTreeMap<String, Price>,
}

impl PriceBook {
    pub fn set(&mut self, key: &str, price: Price) -> Result<()> {
        parse_key(key)?;
        if !self.entries.contains_key(key) && self.entries.len() >= MAX_PRICES {
            return Err(Error::Limit(format!("the price book already has {MAX_PRICES} entries")));
        }
        // The bound holds for what the book stores too (numbers written as
        // strings), so every stored price loads again from the RDB or a
        // rewritten AOF, which parse that JSON.
        let len = price.to_json().len();
        if len > MAX_JSON_LEN {
            return Err(Error::Limit(format!(
                "a price is at most {MAX_JSON_LEN} bytes of JSON, written out as QUOTA.PRICE GET shows it (this one is {len})"
            )));
        }
        self.entries.insert(key.to_string(), price);
        Ok(())
    }

    pub fn get(&self, key: &str) -> Result<&Price> {
        self.entries.get(key).ok_or_else(|| Error::NotFound(format!("price '{}'", names::clip(key))))
    }

    pub fn remove(&mut self, key: &str) -> bool {
        self.entries.remove(key).is_some()
    }

    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = (&String, &Price)> {
        self.entries.iter()
    }

    /// Prices a `USAGE service/model name value …` item.
    /// Lua twin: `P.estimate` (lua/src/30_pricing.lua).
    pub fn estimate(&self, key: &str, usage: &[(String, String)]) -> Result<Estimate> {
        parse_key(key)?;
        self.get(key)?.estimate(key, usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    /// A table row: a price or key, usage pairs, and the expected cost or error.
    type Row<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

    fn usage(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    const CHAT: &str =
        r#"{"metric": "credits", "rates": {"input_tokens": "2.50/1M", "output_tokens": "10/1M"}, "minimum": "0.0001"}"#;
    const IMAGE: &str =
        r#"{"metric": "credits", "rates": {"images": "4"}, "multipliers": {"quality": {"standard": "1", "hd": "2"}}}"#;
    const VIDEO: &str = r#"{"metric": "credits", "rates": {"video_seconds": "10", "requests": 1}, "multipliers": {"resolution": {"720p": "1", "1080p": 1.5}}, "minimum": 25}"#;

    #[test]
    fn costs_follow_rates_minimums_and_multipliers() {
        // price, usage, cost
        let rows: &[Row] = &[
            (CHAT, &[("input_tokens", "1000"), ("output_tokens", "500")], "0.0075"),
            (CHAT, &[("input_tokens", "1000000")], "2.5"),
            (CHAT, &[("input_tokens", "1")], "0.0001"),
            (CHAT, &[("output_tokens", "0")], "0.0001"),
            (IMAGE, &[("images", "3"), ("quality", "hd")], "24"),
            (IMAGE, &[("quality", "standard"), ("images", "1")], "4"),
            (VIDEO, &[("video_seconds", "10"), ("requests", "1"), ("resolution", "1080p")], "151.5"),
            (VIDEO, &[("video_seconds", "1"), ("requests", "1"), ("resolution", "1080p")], "37.5"),
            (VIDEO, &[("video_seconds", "2.5"), ("requests", "0"), ("resolution", "720p")], "25"),
            (r#"{"metric": "usd", "rates": {"calls": "0.1"}}"#, &[("calls", "3")], "0.3"),
            (r#"{"metric": "usd", "rates": {"input_tokens": "0.30/1K"}}"#, &[("input_tokens", "7")], "0.0021"),
            // Rounded to 10 places, half away from zero, only past them.
            (r#"{"metric": "usd", "rates": {"input_tokens": "0.15/1M"}}"#, &[("input_tokens", "1")], "0.0000001500"),
            (r#"{"metric": "usd", "rates": {"t": "0.000000001"}}"#, &[("t", "0.55")], "0.0000000006"),
        ];
        for (json, pairs, cost) in rows {
            let price = Price::from_json(json).unwrap();
            let estimate = price.estimate("s/m", &usage(pairs)).unwrap();
            assert_eq!(estimate.cost, d(cost), "{json} {pairs:?}");
        }
    }

    #[test]
    fn an_estimate_explains_itself() {
        let price = Price::from_json(VIDEO).unwrap();
        let e = price
            .estimate("video/gen", &usage(&[("video_seconds", "1"), ("requests", "1"), ("resolution", "1080p")]))
            .unwrap();
        assert_eq!(e.subtotal, d("11"));
        assert_eq!(e.minimum_applied, Some(d("25")));
        assert_eq!(e.factors, vec![Factor { attribute: "resolution".into(), value: "1080p".into(), factor: d("1.5") }]);
        assert_eq!(
            e.lines[0],
            Line { name: "video_seconds".into(), quantity: d("1"), rate: d("10"), subtotal: d("10") }
        );
        assert_eq!(
            e.charges(),
            vec![("credits".into(), d("37.5")), ("video_seconds".into(), d("1")), ("requests".into(), d("1"))]
        );
    }

    #[test]
    fn per_million_and_per_thousand_rates_are_exact() {
        let price =
            Price::from_json(r#"{"metric": "usd", "rates": {"a": "2.50/1M", "b": "0.30/1K", "c": "0.0000025"}}"#)
                .unwrap();
        assert_eq!(price.rates["a"].per_unit, d("0.0000025"));
        assert_eq!(price.rates["b"].per_unit, d("0.0003"));
        assert_eq!(price.rates["a"].per_unit, price.rates["c"].per_unit);
        assert_eq!(price.rates["a"].text, "2.50/1M");
    }

    #[test]
    fn bad_prices_are_refused_naming_the_field() {
        // json, a fragment of the error
        let rows = [
            ("[]", "must be a JSON object"),
            ("{", "not valid JSON"),
            (r#"{"rates": {"a": "1"}}"#, "'metric': is required"),
            (r#"{"metric": "Credits", "rates": {"a": "1"}}"#, "'metric'"),
            (r#"{"metric": "credits"}"#, "'rates': is required"),
            (r#"{"metric": "credits", "rates": {}}"#, "'rates': must name at least one usage"),
            (r#"{"metric": "credits", "rates": {"a": "-1"}}"#, "'rates.a': '-1' must not be negative"),
            (r#"{"metric": "credits", "rates": {"a": "abc"}}"#, "'rates.a'"),
            (r#"{"metric": "credits", "rates": {"a": 1e-3}}"#, "'rates.a'"),
            (r#"{"metric": "credits", "rates": {"a": "1/1G"}}"#, "'rates.a': '1/1G': the unit may only be /1K or /1M"),
            (r#"{"metric": "credits", "rates": {"a": true}}"#, "'rates.a'"),
            (r#"{"metric": "credits", "rates": {"Bad": "1"}}"#, "'rates.Bad'"),
            (r#"{"metric": "credits", "rates": {"credits": "1"}}"#, "cannot be the price's own metric"),
            (r#"{"metric": "credits", "rates": {"a": "1"}, "colour": "red"}"#, "'colour': unknown field"),
            (r#"{"metric": "credits", "rates": {"a": "1"}, "multipliers": {"q": {"hd": "x"}}}"#, "'multipliers.q.hd'"),
            (r#"{"metric": "credits", "rates": {"a": "1"}, "multipliers": {"q": {}}}"#, "'multipliers.q': must list"),
            (
                r#"{"metric": "credits", "rates": {"a": "1"}, "multipliers": {"q": "2"}}"#,
                "'multipliers.q': must be an object",
            ),
            (
                r#"{"metric": "credits", "rates": {"a": "1"}, "multipliers": {"a": {"x": "2"}}}"#,
                "cannot also be a usage name",
            ),
            (r#"{"metric": "credits", "rates": {"a": "1"}, "minimum": "-2"}"#, "'minimum'"),
            (r#"{"metric": "credits", "rates": {"a": "1"}, "minimum": [1]}"#, "'minimum'"),
        ];
        for (json, fragment) in rows {
            let err = Price::from_json(json).unwrap_err().to_string();
            assert!(err.contains(fragment), "{json}: {err}");
        }
    }

    #[test]
    fn unknown_usage_and_values_are_errors_never_zero() {
        let book = {
            let mut b = PriceBook::default();
            b.set("image/gen", Price::from_json(IMAGE).unwrap()).unwrap();
            b
        };
        // usage, a fragment of the error
        let rows: &[Row] = &[
            ("image/none", &[("images", "1"), ("quality", "hd")], "NOTFOUND no such price 'image/none'"),
            ("image/gen", &[("pixels", "1"), ("quality", "hd")], "unknown usage 'pixels'"),
            ("image/gen", &[("images", "1"), ("quality", "ultra")], "unknown value 'ultra' of quality"),
            ("image/gen", &[("images", "1")], "needs quality (one of hd, standard)"),
            ("image/gen", &[("quality", "hd")], "needs at least one of"),
            ("image/gen", &[("images", "-1"), ("quality", "hd")], "must not be negative"),
            ("image/gen", &[("images", "1"), ("images", "1"), ("quality", "hd")], "appears twice"),
            ("imagegen", &[("images", "1")], "invalid price key"),
        ];
        for (key, pairs, fragment) in rows {
            let err = book.estimate(key, &usage(pairs)).unwrap_err().to_string();
            assert!(err.contains(fragment), "{key} {pairs:?}: {err}");
        }
    }

    #[test]
    fn canonical_json_round_trips() {
        for json in [CHAT, IMAGE, VIDEO] {
            let price = Price::from_json(json).unwrap();
            assert_eq!(Price::from_json(&price.to_json()).unwrap(), price);
        }
        assert_eq!(
            Price::from_json(VIDEO).unwrap().to_json(),
            r#"{"metric":"credits","rates":{"requests":"1","video_seconds":"10"},"multipliers":{"resolution":{"1080p":"1.5","720p":"1"}},"minimum":"25"}"#
        );
    }
}
