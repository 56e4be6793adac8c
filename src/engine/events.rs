//! Events: warnings before a limit is reached, and what happened to
//! periods and holds. Each tree keeps the latest events in a bounded log
//! with a strictly increasing `seq`; the command layer publishes each new
//! one on `quota:events:<key>`.
//!
//! Thresholds fire once per period: a calendar policy re-arms them when its
//! period closes (or on `QUOTA.RESET`); a policy without a window only on
//! `QUOTA.RESET`; a rolling policy, whose usage drops out continuously,
//! re-arms a threshold when its usage is seen below it again.
//!
//! Lua twin: `event_about` and `alerts` (lua/src/60_tree.lua).

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::outcome::Costs;
use super::policy::Policy;
use super::window::Window;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    /// Usage (used + held for strict policies) crossed a `WARN` threshold.
    Warning,
    /// Used reached the allowance.
    Over,
    /// A period closed (timed or `QUOTA.RESET`).
    Reset,
    /// A new period started with allowance carried over.
    Rollover,
    /// A hold expired before it was committed or released.
    Expired,
    /// Remaining fell to the policy's `LOW`.
    Low,
    /// A grant's rest left the allowance at its expiry (or with its period).
    GrantExpired,
    /// A charge without `CHECK` that a node's access rules refuse (it is
    /// recorded all the same).
    Disallowed,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Warning => "warning",
            EventKind::Over => "over",
            EventKind::Reset => "reset",
            EventKind::Rollover => "rollover",
            EventKind::Expired => "expired",
            EventKind::Low => "low",
            EventKind::GrantExpired => "grant_expired",
            EventKind::Disallowed => "disallowed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub kind: EventKind,
    pub time_ms: u64,
    /// Canonical path ("" for the root).
    pub path: String,
    /// The policy, for every kind but `expired`.
    pub policy: Option<String>,
    pub metric: Option<String>,
    /// The threshold crossed, for `warning`.
    pub threshold: Option<u8>,
    pub used: Option<Decimal>,
    pub held: Option<Decimal>,
    /// The allowance: of the period that closed for `reset`, of the new
    /// period for `rollover`, the current one otherwise.
    pub limit: Option<Decimal>,
    /// `reset`: periods closed at once; `rollover`: the amount carried over.
    pub periods: Option<u64>,
    pub rolled_over: Option<Decimal>,
    /// `expired`: the reservation and what it held.
    pub id: Option<String>,
    pub amounts: Costs,
    /// What encoding 3 adds (stored apart from the version 1 shape).
    #[serde(skip)]
    pub more: Option<Box<EventMore>>,
    /// `disallowed`: the rule, service and model (what encoding 4 adds,
    /// stored apart from the version 1 shape).
    #[serde(skip)]
    pub access: Option<Box<crate::access::Disallowed>>,
    /// `expired` and `disallowed`: the request's `META` pairs (stored
    /// apart, in the labels part of encoding 5).
    #[serde(skip)]
    pub meta: Option<Box<crate::meta::Meta>>,
}

/// The fields of `low` and `grant_expired` events.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EventMore {
    /// `low`: remaining and the policy's `LOW`.
    pub remaining: Option<Decimal>,
    pub low: Option<Decimal>,
    /// `grant_expired`: the grant, the rest that left, its expiry.
    pub grant: Option<String>,
    pub amount: Option<Decimal>,
    pub expires_at_ms: Option<u64>,
}

impl Event {
    /// An event about `policy`, with its usage now.
    /// Lua twin: `event_about` (lua/src/60_tree.lua).
    pub fn about(kind: EventKind, time_ms: u64, path: &str, policy: &Policy) -> Event {
        Event {
            seq: 0,
            kind,
            time_ms,
            path: path.to_string(),
            policy: Some(policy.name().to_string()),
            metric: Some(policy.metric().to_string()),
            threshold: None,
            used: Some(policy.used),
            held: Some(policy.held),
            limit: Some(policy.allowance()),
            periods: None,
            rolled_over: None,
            id: None,
            amounts: Costs::new(),
            more: None,
            access: None,
            meta: None,
        }
    }

    /// An event about a request rather than a policy (`expired`,
    /// `disallowed`): its id and amounts, no policy fields.
    pub fn of_request(kind: EventKind, time_ms: u64, path: String, id: Option<String>, amounts: Costs) -> Event {
        Event {
            seq: 0,
            kind,
            time_ms,
            path,
            policy: None,
            metric: None,
            threshold: None,
            used: None,
            held: None,
            limit: None,
            periods: None,
            rolled_over: None,
            id,
            amounts,
            more: None,
            access: None,
            meta: None,
        }
    }
}

/// The warnings and `over` that `policy` fires now, in threshold order,
/// marking them fired so that each fires once per period.
/// Lua twin: `alerts` (lua/src/60_tree.lua).
pub fn alerts(policy: &mut Policy, time_ms: u64, path: &str) -> Vec<Event> {
    let mut out = Vec::new();
    if !policy.may_alert() {
        return out;
    }
    let rolling = matches!(policy.window(), Window::Rolling { .. });
    let warn = policy.warn();
    for (i, &pct) in warn.iter().enumerate() {
        let bit = 1u16 << i.min(15);
        let crossed = policy.crossed(pct);
        if crossed && policy.fired & bit == 0 {
            policy.fired |= bit;
            let mut event = Event::about(EventKind::Warning, time_ms, path, policy);
            event.threshold = Some(pct);
            out.push(event);
        } else if !crossed && rolling {
            policy.fired &= !bit;
        }
    }
    let over = policy.is_over();
    if over && !policy.over_fired {
        policy.over_fired = true;
        out.push(Event::about(EventKind::Over, time_ms, path, policy));
    } else if !over && rolling {
        policy.over_fired = false;
    }
    policy.refresh();
    out
}
