//! Review of grants (SPEC §7): regressions, and a property test that
//! mixes grants with what the first one leaves out (window changes, LOW,
//! a clock that steps back, persistence round trips), checking after every
//! step that a read at the time shows what the next write stores.

use std::str::FromStr;

use proptest::prelude::*;
use rust_decimal::Decimal;

use crate::outcome::Costs;
use crate::policy::{GrantExpiry, GrantRequest, Warn};
use crate::window::{DAY_MS, HOUR_MS, Unit};
use crate::{ChargeRequest, ChargeSet, Limits, Mode, PolicySpec, ReserveRequest, Tree, Window};

fn d(text: &str) -> Decimal {
    Decimal::from_str(text).expect("test decimal")
}

const MONTH: Window = Window::Calendar { unit: Unit::Month, anchor: 1, tz: crate::tz::Zone::Utc };
const ROLLING: Window = Window::Rolling { duration_ms: 2 * DAY_MS as u64 };

fn spec(limit: &str, window: Window, low: Option<&str>) -> PolicySpec {
    PolicySpec {
        metric: "credits".into(),
        limit: d(limit),
        mode: Mode::Strict,
        window,
        warn: Warn::default(),
        rollover: None,
        service: None,
        model: None,
        low: low.map(d),
        inflight: false,
    }
}

fn cost(amount: &str) -> Costs {
    vec![("credits".to_string(), d(amount))]
}

fn charge(t: &mut Tree, amount: &str, now: u64) {
    let set = ChargeSet { paths: vec!["a".into()], service: None, model: None };
    let req = ChargeRequest { set, id: None, check: false, cost: cost(amount), brief: true, meta: None };
    t.charge(req, now, &Limits::default()).unwrap();
}

fn policy(t: &Tree) -> crate::policy::Policy {
    t.node(0).unwrap().policies[0].clone()
}

/// What reads show at `now`: GET of the root, HISTORY and GRANTS.
fn reads(t: &Tree, now: u64) -> String {
    format!(
        "{:?}\n{:?}\n{:?}",
        t.get("", now).unwrap(),
        t.history("", "m", now).unwrap(),
        t.grants_view("", "m", now, 100_000).unwrap()
    )
}

/// A read at `now` shows what a write at `now` stores.
fn assert_read_is_write(t: &Tree, now: u64) {
    let read = reads(t, now);
    let mut written = t.clone();
    written.roll_all(now, &Limits::default());
    assert_eq!(read, reads(&written, now), "read at {now} differs from what a write stores");
}

/// Regression: a window changed to rolling while drawn > used (a negative
/// charge gave usage back) clamps drawn at the change, so a read before
/// the next write shows what that write stores.
#[test]
fn a_window_changed_to_rolling_clamps_drawn_at_once() {
    let l = Limits::default();
    let mut t = Tree::new();
    t.set_policy("", "m", spec("100", Window::None, None), 0, &l).unwrap();
    let r =
        GrantRequest { id: Some("g".into()), amount: d("50"), expiry: GrantExpiry::Never, priority: 50, note: None };
    t.grant("", "m", &r, 0, &l).unwrap();
    charge(&mut t, "120", 1);
    charge(&mut t, "-120", 2);
    assert_eq!((policy(&t).used, policy(&t).drawn()), (d("0"), d("20")));
    t.set_policy("", "m", spec("100", ROLLING, None), 3, &l).unwrap();
    assert_read_is_write(&t, 4);
    assert_eq!(policy(&t).drawn(), d("0"));
    t.check_invariants().unwrap();
}

// ----- the property test ----------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Grant { amount: u32, expiry: u8, ms: u64, priority: u8 },
    Charge { amount: i32 },
    Reserve { amount: u32 },
    Commit { hold: usize, amount: u32 },
    Revoke { grant: usize },
    Reset,
    Set { window: usize, low: Option<u32>, limit: u32 },
    Advance { ms: u64 },
    Back { ms: u64 },
    Persist,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u32..60, 0u8..4, prop_oneof![60_000u64..40 * DAY_MS as u64, 60_000u64..1000 * DAY_MS as u64], 0u8..3)
            .prop_map(|(amount, expiry, ms, priority)| Op::Grant { amount, expiry, ms, priority: priority * 40 }),
        4 => (-40i32..80).prop_map(|amount| Op::Charge { amount }),
        2 => (1u32..50).prop_map(|amount| Op::Reserve { amount }),
        2 => (0usize..8, 0u32..70).prop_map(|(hold, amount)| Op::Commit { hold, amount }),
        1 => (0usize..12).prop_map(|grant| Op::Revoke { grant }),
        1 => Just(Op::Reset),
        1 => (0usize..3, proptest::option::of(0u32..60), 0u32..150)
            .prop_map(|(window, low, limit)| Op::Set { window, low, limit }),
        3 => (1u64..20 * DAY_MS as u64).prop_map(|ms| Op::Advance { ms }),
        1 => (1u64..1200 * DAY_MS as u64).prop_map(|ms| Op::Advance { ms }),
        1 => (1u64..10 * DAY_MS as u64).prop_map(|ms| Op::Back { ms }),
        1 => Just(Op::Persist),
    ]
}

fn window(i: usize) -> Window {
    [Window::None, MONTH, ROLLING][i]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn reads_show_what_writes_store_with_window_changes_low_and_a_clock_stepping_back(
        start_window in 0usize..3,
        ops in proptest::collection::vec(op(), 1..60),
    ) {
        let l = Limits::default();
        let mut now = 20_000 * DAY_MS as u64 + 5 * HOUR_MS as u64;
        let mut t = Tree::new();
        t.set_policy("", "m", spec("100", window(start_window), Some("10")), now, &l).unwrap();
        let mut holds: Vec<String> = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        for op in ops {
            match op {
                Op::Grant { amount, expiry, ms, priority } => {
                    let expiry = match expiry {
                        0 => GrantExpiry::Never,
                        1 => GrantExpiry::After(ms),
                        2 => GrantExpiry::At(now + ms),
                        _ => GrantExpiry::Period,
                    };
                    let r = GrantRequest { id: None, amount: Decimal::from(amount), expiry, priority, note: None };
                    let o = t.grant("", "m", &r, now, &l).unwrap();
                    ids.push(o.grant.id);
                }
                Op::Charge { amount } => {
                    let set = ChargeSet { paths: vec!["a".into()], service: None, model: None };
                    let req = ChargeRequest { set, id: None, check: false, cost: cost(&amount.to_string()), brief: true, meta: None };
                    let _ = t.charge(req, now, &l);
                }
                Op::Reserve { amount } => {
                    let set = ChargeSet { paths: vec!["a".into()], service: None, model: None };
                    let req = ReserveRequest { set, id: None, ttl_ms: 3_600_000, batch: crate::BatchMode::All, items: vec![cost(&amount.to_string())], brief: true, meta: None };
                    if let Ok(o) = t.reserve(req, now, &l) && let Some(id) = o.id { holds.push(id); }
                }
                Op::Commit { hold, amount } => {
                    if let Some(id) = holds.get(hold).cloned() {
                        let _ = t.commit(&id, None, Some(cost(&amount.to_string())), now, &l);
                    }
                }
                Op::Revoke { grant } => {
                    if let Some(id) = ids.get(grant).cloned() {
                        let _ = t.revoke("", "m", &id, now, &l);
                    }
                }
                Op::Reset => { t.reset_policy("", "m", now, &l).unwrap(); }
                Op::Set { window: w, low, limit } => {
                    let low = low.map(|n| n.to_string());
                    let mut s = spec(&limit.to_string(), window(w), low.as_deref());
                    // A calendar window with an odd limit rolls over up to 3×.
                    if w == 1 && limit % 2 == 1 {
                        s.rollover = Some(Decimal::from(limit * 3));
                    }
                    t.set_policy("", "m", s, now, &l).unwrap();
                }
                Op::Advance { ms } => now += ms,
                Op::Back { ms } => now -= ms,
                Op::Persist => {
                    let bytes = crate::persist::encode(&t);
                    let back = crate::persist::decode(&bytes, crate::persist::ENCODING_VERSION).map_err(TestCaseError::fail)?;
                    prop_assert_eq!(reads(&back, now), reads(&t, now));
                    prop_assert_eq!(crate::persist::encode(&back), bytes);
                    t = back;
                }
            }
            t.check_invariants().map_err(TestCaseError::fail)?;
            let read = reads(&t, now);
            let mut written = t.clone();
            written.roll_all(now, &l);
            written.check_invariants().map_err(TestCaseError::fail)?;
            prop_assert_eq!(read, reads(&written, now), "read at {} differs from what a write stores", now);
        }
    }
}

/// Regression: a period close may leave the allowance above 10^18 (the
/// own allowance rolls over beside grants that keep their rest: 20 + 10^18
/// − 10 here), and the next close archives it; such a tree, which both
/// backends reach and serve, must load again from RDB (it was refused:
/// "amount total would exceed 10^18", and redis-server aborted the load).
#[test]
fn a_tree_whose_allowance_rolled_above_the_bound_loads_again() {
    let l = Limits::default();
    let t0 = 20_468 * DAY_MS as u64; // 2026-01-15
    let mut t = Tree::new();
    let mut s = spec("10", MONTH, None);
    s.rollover = Some(d("1000000000000000"));
    t.set_policy("", "m", s, t0, &l).unwrap();
    for i in 0..1000 {
        let amount = if i == 999 { d("999999999999990") } else { d("1000000000000000") };
        let r = GrantRequest { id: None, amount, expiry: GrantExpiry::Never, priority: 50, note: None };
        t.grant("", "m", &r, t0, &l).unwrap();
    }
    assert_eq!(policy(&t).allowance(), d("1000000000000000000"));
    // February: own 20 (10 rolled over) + granted 10^18 − 10; April: two
    // more closes archived with their allowances above the bound.
    for month in [40, 100] {
        let now = t0 + month * DAY_MS as u64;
        charge(&mut t, "1", now);
        let bytes = crate::persist::encode(&t);
        let back = crate::persist::decode(&bytes, crate::persist::ENCODING_VERSION).unwrap();
        assert_eq!(reads(&back, now), reads(&t, now));
        back.check_invariants().unwrap();
    }
    assert!(policy(&t).allowance() > d("1000000000000000000"));
    assert!(t.history("", "m", t0).unwrap()[0].allowance > d("1000000000000000000"));
}

/// Regression: a `low` event's `remaining` may be below −10^18 (usage at
/// the bound and something held on an open policy); the tree that logged
/// it must load again (it was refused as "invalid grant fields").
#[test]
fn a_low_event_far_below_zero_loads_again() {
    let l = Limits::default();
    let mut t = Tree::new();
    let mut s = spec("0", Window::None, None);
    s.mode = Mode::Open;
    t.set_policy("", "m", s.clone(), 0, &l).unwrap();
    charge(&mut t, "1000000000000000000", 1);
    let set = ChargeSet { paths: vec!["a".into()], service: None, model: None };
    let req = ReserveRequest {
        set,
        id: None,
        ttl_ms: 3_600_000,
        batch: crate::BatchMode::All,
        items: vec![cost("5")],
        brief: true,
        meta: None,
    };
    t.reserve(req, 2, &l).unwrap();
    s.low = Some(d("5"));
    t.set_policy("", "m", s, 3, &l).unwrap();
    let low = t.events_since(0, 100).last().unwrap().clone();
    assert_eq!(low.more.unwrap().remaining, Some(d("-1000000000000000005")));
    let back = crate::persist::decode(&crate::persist::encode(&t), crate::persist::ENCODING_VERSION).unwrap();
    assert_eq!(reads(&back, 4), reads(&t, 4));
}

/// Cost of one write that expires 10,000 grants at once (run with
/// `cargo test --release -- --ignored expiring_10000`).
#[test]
#[ignore]
fn expiring_10000_grants_at_once_costs() {
    let l = Limits::default();
    let mut t = Tree::new();
    t.set_policy("", "m", spec("10", Window::None, Some("5")), 0, &l).unwrap();
    for _ in 0..10_000 {
        let r = GrantRequest { id: None, amount: d("1"), expiry: GrantExpiry::At(3_600_000), priority: 50, note: None };
        t.grant("", "m", &r, 0, &l).unwrap();
    }
    let started = std::time::Instant::now();
    let _ = t.get("", 3_600_000).unwrap();
    let read = started.elapsed();
    let started = std::time::Instant::now();
    charge(&mut t, "1", 3_600_000);
    let write = started.elapsed();
    println!("read {read:?}, write {write:?}");
    assert_eq!(policy(&t).grant_count(), 0);
}

/// A read view across period closes and expiries shares the grants (no
/// deep copy), and a plain reservation leaves them untouched.
#[test]
fn views_across_closes_share_the_grants_and_reservations_leave_them() {
    let l = Limits::default();
    let t0 = 20_468 * DAY_MS as u64;
    let mut t = Tree::new();
    t.set_policy("", "m", spec("10", MONTH, Some("1")), t0, &l).unwrap();
    for i in 0..50u64 {
        let expiry = if i % 2 == 0 { GrantExpiry::At(t0 + (i + 1) * 10 * DAY_MS as u64) } else { GrantExpiry::Never };
        let r = GrantRequest { id: None, amount: d("1"), expiry, priority: 50, note: None };
        t.grant("", "m", &r, t0, &l).unwrap();
    }
    let stored = policy(&t);
    let arc = stored.grants_arc().unwrap().clone();
    for months in [1u64, 5, 40] {
        let view = stored.at(t0 + months * 30 * DAY_MS as u64);
        assert!(matches!(view, std::borrow::Cow::Owned(_)));
        assert!(std::sync::Arc::ptr_eq(view.grants_arc().unwrap(), &arc), "view {months} months on");
    }
    // While another holder shares them, a write that changed them would
    // copy them (Arc::make_mut): a reservation must not.
    let set = ChargeSet { paths: vec!["a".into()], service: None, model: None };
    let req = ReserveRequest {
        set,
        id: None,
        ttl_ms: 3_600_000,
        batch: crate::BatchMode::All,
        items: vec![cost("5")],
        brief: true,
        meta: None,
    };
    t.reserve(req, t0 + 1, &l).unwrap();
    let after = t.node(0).unwrap().policies[0].grants_arc().unwrap().clone();
    assert!(std::sync::Arc::ptr_eq(&after, &arc), "a reservation does not copy the grants");
}
