//! Grants (SPEC §7): the rules of credits.md §1 as tables and cases, then
//! a property test over random sequences of grants, usage and time.

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::policy::{GrantExpiry, GrantRequest};

fn d(text: &str) -> Decimal {
    Decimal::from_str(text).expect("test decimal")
}

/// A `PERIOD` grant of `amount` (the first release's `QUOTA.GRANT`).
pub(crate) fn period_grant(amount: &str) -> GrantRequest {
    GrantRequest { id: None, amount: d(amount), expiry: GrantExpiry::Period, priority: 50, note: None }
}
