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
