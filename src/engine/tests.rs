//! Engine tests: tables of cases, then property tests over random
//! sequences of operations that check the invariants of SPEC §5.

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::hold::ItemState;
use super::tests_support::d;
use super::*;

fn costs(pairs: &[(&str, &str)]) -> Costs {
    pairs.iter().map(|(m, a)| (m.to_string(), d(a))).collect()
}

fn spec(metric: &str, limit: &str, mode: Mode) -> PolicySpec {
    PolicySpec { mode, ..tests_support::spec(metric, limit) }
}

fn set_of(paths: &[&str]) -> ChargeSet {
    ChargeSet { paths: paths.iter().map(|p| p.to_string()).collect(), service: None, model: None }
}

fn reserve_req(paths: &[&str], items: &[&[(&str, &str)]]) -> ReserveRequest {
    ReserveRequest {
        set: set_of(paths),
        id: None,
        ttl_ms: 60_000,
        batch: BatchMode::All,
        items: items.iter().map(|i| costs(i)).collect(),
        brief: false,
        meta: None,
    }
}

fn charge_req(paths: &[&str], cost: &[(&str, &str)], check: bool) -> ChargeRequest {
    ChargeRequest { set: set_of(paths), id: None, check, cost: costs(cost), brief: false, meta: None }
}

/// acme: / 100 credits strict, projects/p1 50 strict, members/u7 30 block.
fn company() -> Tree {
    let mut t = Tree::new();
    let l = Limits::default();
    t.set_policy("", "monthly", spec("credits", "100", Mode::Strict), 0, &l).unwrap();
    t.set_policy("projects/p1", "cap", spec("credits", "50", Mode::Strict), 0, &l).unwrap();
    t.set_policy("members/u7", "allowance", spec("credits", "30", Mode::Block), 0, &l).unwrap();
    t
}

fn policy_at(t: &Tree, path: &str, name: &str) -> policy::Policy {
    let id = t.find(path).expect("path");
    t.node(id).unwrap().policies.iter().find(|p| p.name() == name).expect("policy").clone()
}

#[test]
fn reservations_are_decided_by_every_policy_on_the_way() {
    let l = Limits::default();
    // paths, amount, allowed, denied_by
    let rows: &[(&[&str], &str, bool, &[&str])] = &[
        (&["projects/p1"], "50", true, &[]),
        (&["projects/p1"], "51", false, &["projects/p1#cap"]),
        (&["projects/p2"], "100", true, &[]),
        (&["projects/p2"], "101", false, &["/#monthly"]),
        (&["projects/p1", "members/u7"], "40", true, &[]),
        (&["projects/p1/users/u9"], "60", false, &["projects/p1#cap"]),
    ];
    for (paths, amount, allowed, denied) in rows {
        let mut t = company();
        let out = t.reserve(reserve_req(paths, &[&[("credits", amount)]]), 1000, &l).unwrap();
        assert_eq!(out.allowed, *allowed, "{paths:?} {amount}");
        assert_eq!(out.denied_by, denied.iter().map(|s| s.to_string()).collect::<Vec<_>>(), "{paths:?} {amount}");
        assert_eq!(out.id.is_some(), *allowed);
        t.check_invariants().unwrap();
    }
}

#[test]
fn a_policy_shared_by_path_and_also_is_counted_once() {
    let l = Limits::default();
    let mut t = company();
    let out = t.reserve(reserve_req(&["projects/p1", "members/u7"], &[&[("credits", "10")]]), 0, &l).unwrap();
    let roots: Vec<_> = out.checks.iter().filter(|c| c.path == "/").collect();
    assert_eq!(roots.len(), 1);
    assert_eq!(out.checks.len(), 3);
    assert_eq!(policy_at(&t, "", "monthly").held, d("10"));
    let id = out.id.unwrap();
    let c = t.commit(&id, None, None, 1, &l).unwrap();
    assert_eq!(c.charged, costs(&[("credits", "10")]));
    assert_eq!(policy_at(&t, "", "monthly").used, d("10"));
    assert_eq!(policy_at(&t, "", "monthly").held, d("0"));
    let root = t.get("", 0).unwrap();
    assert_eq!(root.spent, costs(&[("credits", "10")]));
    assert_eq!(t.get("projects", 0).unwrap().spent, costs(&[("credits", "10")]));
    assert_eq!(t.get("members/u7", 0).unwrap().spent, costs(&[("credits", "10")]));
}

#[test]
fn strict_counts_holds_block_does_not() {
    let l = Limits::default();
    let mut t = company();
    // Two holds of 20 on members/u7 (block, 30): both pass while used < 30.
    assert!(t.reserve(reserve_req(&["members/u7"], &[&[("credits", "20")]]), 0, &l).unwrap().allowed);
    assert!(t.reserve(reserve_req(&["members/u7"], &[&[("credits", "20")]]), 0, &l).unwrap().allowed);
    // The root (strict, 100) has 40 held: 61 more does not fit.
    let out = t.reserve(reserve_req(&["projects/x"], &[&[("credits", "61")]]), 0, &l).unwrap();
    assert!(!out.allowed);
    assert_eq!(out.message, "not enough credits: 60 available at /, 61 needed");
}

#[test]
fn commit_charges_actual_and_reports_release_and_overage() {
    let l = Limits::default();
    // reserved, actual, charged used at p1, released, overage
    let rows = [
        ("30", None, "30", "0", None),
        ("30", Some("12"), "12", "18", None),
        ("30", Some("45"), "45", "0", Some("15")),
    ];
    for (reserved, actual, used, released, overage) in rows {
        let mut t = company();
        let id = t.reserve(reserve_req(&["projects/p1"], &[&[("credits", reserved)]]), 0, &l).unwrap().id.unwrap();
        let c = t.commit(&id, None, actual.map(|a| costs(&[("credits", a)])), 5, &l).unwrap();
        assert_eq!(policy_at(&t, "projects/p1", "cap").used, d(used));
        assert_eq!(policy_at(&t, "projects/p1", "cap").held, d("0"));
        assert_eq!(c.released, costs(&[("credits", released)]));
        assert_eq!(c.overage, overage.map_or(Vec::new(), |o| costs(&[("credits", o)])));
        assert!(!c.duplicate);
        let again = t.commit(&id, None, actual.map(|a| costs(&[("credits", a)])), 6, &l).unwrap();
        assert!(again.duplicate);
        assert_eq!(policy_at(&t, "projects/p1", "cap").used, d(used), "a repeated commit charges nothing");
        t.check_invariants().unwrap();
    }
}

#[test]
fn holds_expire_at_their_ttl_and_a_late_commit_still_charges() {
    let l = Limits::default();
    let mut t = company();
    let mut req = reserve_req(&["projects/p1"], &[&[("credits", "40")]]);
    req.ttl_ms = 1000;
    let id = t.reserve(req.clone(), 10_000, &l).unwrap().id.unwrap();
    assert_eq!(t.expire(10_999, &l).expired_holds, 0);
    assert_eq!(policy_at(&t, "projects/p1", "cap").held, d("40"));
    assert_eq!(t.expire(11_000, &l).expired_holds, 1);
    assert_eq!(policy_at(&t, "projects/p1", "cap").held, d("0"));
    assert_eq!(t.hold_count(), 0);
    let c = t.commit(&id, None, Some(costs(&[("credits", "35")])), 12_000, &l).unwrap();
    assert!(c.expired);
    assert_eq!(policy_at(&t, "projects/p1", "cap").used, d("35"));
    assert!(t.commit(&id, None, None, 12_001, &l).unwrap().duplicate);
    assert!(matches!(t.extend(&id, 1000, 12_002), Err(Error::State(_))));
    // The id is forgotten after the tombstone ttl.
    t.expire(11_000 + l.tombstone_ttl_ms, &l);
    assert!(matches!(t.commit(&id, None, None, 0, &l), Err(Error::NotFound(_))));
}

#[test]
fn release_extend_and_their_errors() {
    let l = Limits::default();
    let mut t = company();
    let id = t.reserve(reserve_req(&["projects/p1"], &[&[("credits", "40")]]), 0, &l).unwrap().id.unwrap();
    let e = t.extend(&id, 100_000, 100).unwrap();
    assert_eq!(e.expires_at_ms, 100_100);
    assert_eq!(t.expire(60_000, &l).expired_holds, 0, "the extension replaced the old expiry");
    let r = t.release(&id, None, 200, &l).unwrap();
    assert_eq!(r.released, costs(&[("credits", "40")]));
    assert!(t.release(&id, None, 201, &l).unwrap().duplicate);
    assert!(matches!(t.commit(&id, None, None, 202, &l), Err(Error::State(_))));
    assert!(matches!(t.commit("nope", None, None, 0, &l), Err(Error::NotFound(_))));
    assert_eq!(policy_at(&t, "projects/p1", "cap").used, d("0"));
    t.check_invariants().unwrap();
}

#[test]
fn an_id_makes_reserve_idempotent() {
    let l = Limits::default();
    let mut t = company();
    let mut req = reserve_req(&["projects/p1"], &[&[("credits", "20")]]);
    req.id = Some("job-1".into());
    let first = t.reserve(req.clone(), 0, &l).unwrap();
    let second = t.reserve(req.clone(), 5, &l).unwrap();
    assert!(second.duplicate);
    assert_eq!(second.id.as_deref(), Some("job-1"));
    assert_eq!(policy_at(&t, "projects/p1", "cap").held, d("20"));
    assert_eq!(ReserveOutcome { duplicate: true, ..first }, second);
    t.commit("job-1", None, None, 10, &l).unwrap();
    assert!(t.reserve(req.clone(), 20, &l).unwrap().duplicate, "remembered after commit too");
    assert_eq!(policy_at(&t, "projects/p1", "cap").used, d("20"));
}
use super::outcome::ReserveOutcome;

#[test]
fn generated_ids_are_unique() {
    let l = Limits::default();
    let mut t = Tree::new();
    let first = t.reserve(reserve_req(&["a"], &[&[("credits", "1")]]), 0x019b_76da_a800, &l).unwrap().id.unwrap();
    assert_eq!(first, "19b76daa800-1", "ids are the time and a sequence, in hex");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let id = t.reserve(reserve_req(&["a"], &[&[("credits", "1")]]), 42, &l).unwrap().id.unwrap();
        assert!(seen.insert(id));
    }
}

#[test]
fn charge_records_and_check_refuses_atomically() {
    let l = Limits::default();
    let mut t = company();
    // cost, check, allowed, used at / afterwards
    let rows =
        [("60", false, true, "60"), ("60", true, false, "60"), ("-100", true, true, "0"), ("40", true, true, "40")];
    for (cost, check, allowed, used) in rows {
        let out = t.charge(charge_req(&["projects/p9"], &[("credits", cost)], check), 0, &l).unwrap();
        assert_eq!(out.allowed, allowed, "{cost} {check}");
        assert_eq!(out.charged.is_empty(), !allowed);
        assert_eq!(policy_at(&t, "", "monthly").used, d(used), "{cost} {check}");
    }
    assert_eq!(t.get("projects/p9", 0).unwrap().spent, costs(&[("credits", "40")]));
}

#[test]
fn filters_select_policies_by_service_and_model() {
    let l = Limits::default();
    let mut t = Tree::new();
    let mut video = spec("credits", "10", Mode::Strict);
    video.service = Some("video".into());
    t.set_policy("", "video", video, 0, &l).unwrap();
    let mut hd = spec("credits", "5", Mode::Strict);
    hd.service = Some("video".into());
    hd.model = Some("hd".into());
    t.set_policy("", "hd", hd, 0, &l).unwrap();
    // service, model, amount, allowed
    let rows = [
        (None, None, "100", true),
        (Some("video"), None, "10", true),
        (Some("video"), None, "11", false),
        (Some("video"), Some("hd"), "6", false),
        (Some("video"), Some("sd"), "6", true),
    ];
    for (service, model, amount, allowed) in rows {
        let mut req = reserve_req(&["p"], &[&[("credits", amount)]]);
        req.set.service = service.map(String::from);
        req.set.model = model.map(String::from);
        req.batch = BatchMode::DryRun;
        assert_eq!(t.reserve(req.clone(), 0, &l).unwrap().allowed, allowed, "{service:?} {model:?} {amount}");
    }
}

#[test]
fn batches_reserve_all_upto_or_preview() {
    let l = Limits::default();
    let items: Vec<&[(&str, &str)]> = vec![&[("credits", "20")]; 10];
    // mode, allowed, fits, reserved, held at / afterwards
    let rows = [
        (BatchMode::All, false, 5, 0, "0"),
        (BatchMode::Upto, true, 5, 5, "100"),
        (BatchMode::DryRun, false, 5, 0, "0"),
    ];
    for (mode, allowed, fits, reserved, held) in rows {
        let mut t = company();
        let mut req = reserve_req(&["projects/p2"], &items);
        req.batch = mode;
        let out = t.reserve(req.clone(), 0, &l).unwrap();
        assert_eq!((out.allowed, out.fits, out.reserved), (allowed, fits, reserved), "{mode:?}");
        assert_eq!(policy_at(&t, "", "monthly").held, d(held));
        assert_eq!(out.cost, costs(&[("credits", "200")]));
        assert!(
            out.message.starts_with("enough credits for 5 of 10 items: 100 available at /, 200 needed"),
            "{}",
            out.message
        );
    }
}

#[test]
fn batch_items_settle_one_by_one() {
    let l = Limits::default();
    let mut t = company();
    let mut req = reserve_req(&["projects/p2"], &[&[("credits", "10")], &[("credits", "20")], &[("credits", "30")]]);
    req.ttl_ms = 1000;
    let id = t.reserve(req.clone(), 0, &l).unwrap().id.unwrap();
    let c0 = t.commit(&id, Some(0), Some(costs(&[("credits", "8")])), 1, &l).unwrap();
    assert_eq!(c0.released, costs(&[("credits", "2")]));
    assert!(t.commit(&id, Some(0), None, 2, &l).unwrap().duplicate);
    t.release(&id, Some(1), 3, &l).unwrap();
    assert!(matches!(t.commit(&id, Some(1), None, 4, &l), Err(Error::State(_))));
    assert!(matches!(t.commit(&id, Some(3), None, 4, &l), Err(Error::NotFound(_))));
    assert_eq!(policy_at(&t, "", "monthly").held, d("30"));
    t.expire(1000, &l);
    assert_eq!(policy_at(&t, "", "monthly").held, d("0"));
    let late = t.commit(&id, Some(2), None, 2000, &l).unwrap();
    assert!(late.expired);
    assert_eq!(policy_at(&t, "", "monthly").used, d("38"));
    t.check_invariants().unwrap();
}

#[test]
fn bounds_refuse_with_limit_and_change_nothing() {
    let l = Limits { max_paths: 3, max_policies: 1, max_holds: 1, max_items: 2, ..Limits::default() };
    let mut t = Tree::new();
    t.set_policy("a", "p", spec("credits", "10", Mode::Strict), 0, &l).unwrap();
    assert!(matches!(t.set_policy("a", "q", spec("credits", "10", Mode::Strict), 0, &l), Err(Error::Limit(_))));
    assert!(matches!(t.set_policy("b/c", "p", spec("credits", "10", Mode::Strict), 0, &l), Err(Error::Limit(_))));
    assert_eq!(t.path_count(), 2);
    t.reserve(reserve_req(&["a"], &[&[("credits", "1")]]), 0, &l).unwrap();
    assert!(matches!(t.reserve(reserve_req(&["a"], &[&[("credits", "1")]]), 0, &l), Err(Error::Limit(_))));
    let three: Vec<&[(&str, &str)]> = vec![&[("credits", "1")]; 3];
    assert!(matches!(t.reserve(reserve_req(&["a"], &three), 0, &l), Err(Error::Limit(_))));
    assert_eq!(policy_at(&t, "a", "p").held, d("1"));
    t.check_invariants().unwrap();
}

/// `n` metrics `m0` … as a cost of 1 each, from `from` to `to`.
fn metric_costs(from: usize, to: usize) -> Costs {
    (from..to).map(|i| (format!("m{i}"), d("1"))).collect()
}

#[test]
fn metrics_per_item_and_per_request_are_bounded_and_change_nothing() {
    use outcome::{MAX_ITEM_METRICS, MAX_REQUEST_METRICS};
    let l = Limits::default();
    let mut t = Tree::new();
    t.set_policy("", "c", spec("m0", "1000000", Mode::Strict), 0, &l).unwrap();
    let at_bound = |from: usize| metric_costs(from, from + MAX_ITEM_METRICS);
    let reserve = |items: Vec<Costs>| ReserveRequest { items, ..reserve_req(&["a"], &[]) };
    // Exactly at both bounds: two items of 128 metrics, 256 in all.
    let half = MAX_REQUEST_METRICS / 2;
    assert_eq!(half, MAX_ITEM_METRICS);
    let r = t.reserve(reserve(vec![at_bound(0), at_bound(half)]), 0, &l).unwrap();
    assert_eq!((r.reserved, r.cost.len()), (2, MAX_REQUEST_METRICS));
    let id = r.id.unwrap();
    let before = crate::persist::encode(&t);
    // One over: an item of 129 metrics, a request of 257.
    let over_item = metric_costs(0, MAX_ITEM_METRICS + 1);
    let over_request = vec![at_bound(0), at_bound(half), metric_costs(2 * half, 2 * half + 1)];
    for result in [
        t.reserve(reserve(vec![over_item.clone()]), 0, &l).map(|_| ()),
        t.reserve(reserve(over_request), 0, &l).map(|_| ()),
        t.charge(ChargeRequest { cost: over_item.clone(), ..charge_req(&["a"], &[], false) }, 0, &l).map(|_| ()),
        t.commit(&id, None, Some(over_item), 0, &l).map(|_| ()),
    ] {
        assert!(matches!(result, Err(Error::Limit(_))), "{result:?}");
    }
    assert_eq!(crate::persist::encode(&t), before, "a refused request changes nothing");
    t.commit(&id, None, Some(at_bound(0)), 0, &l).unwrap();
    t.charge(ChargeRequest { cost: at_bound(half), ..charge_req(&["a"], &[], false) }, 0, &l).unwrap();
    assert_eq!(t.get("a", 0).unwrap().spent.len(), MAX_REQUEST_METRICS);
    t.check_invariants().unwrap();
}

/// The work of a request grows with its metrics, not with their square:
/// counted as metric names compared (every search by metric counts), four
/// times the metrics cost about four times the work (issue 13, item 3).
#[test]
fn the_work_of_a_request_is_linear_in_its_metrics() {
    let work = |n: usize| -> u64 {
        let l = Limits::default();
        let mut t = Tree::new();
        let last = format!("m{}", n - 1);
        t.set_policy("", "c", spec(&last, "1000000", Mode::Strict), 0, &l).unwrap();
        t.set_policy("a", "c", spec("m0", "1000000", Mode::Block), 0, &l).unwrap();
        let half = n / 2;
        outcome::COMPARISONS.with(|c| c.set(0));
        let items = vec![metric_costs(0, half), metric_costs(half, n), metric_costs(0, half)];
        for batch in [BatchMode::DryRun, BatchMode::Upto, BatchMode::All] {
            let req = ReserveRequest { items: items.clone(), batch, ..reserve_req(&["a/b"], &[]) };
            let r = t.reserve(req, 0, &l).unwrap();
            assert_eq!(r.cost.len(), n);
            if let Some(id) = r.id {
                t.commit(&id, None, Some(metric_costs(0, half)), 0, &l).unwrap();
            }
        }
        for _ in 0..2 {
            t.charge(ChargeRequest { cost: metric_costs(half, n), ..charge_req(&["a/c"], &[], true) }, 0, &l).unwrap();
        }
        t.charge(ChargeRequest { cost: metric_costs(0, half), ..charge_req(&["a/b"], &[], false) }, 0, &l).unwrap();
        outcome::COMPARISONS.with(|c| c.get())
    };
    let (small, large) = (work(64), work(256));
    assert!(large <= 5 * small, "64 metrics: {small} comparisons, 256 metrics: {large}");
}

/// A batch's work does not multiply its policies by its items and their
/// metrics: reserving and releasing 200 items of 64 metrics on 64 policies
/// compares metric names a few times per amount, not once per policy for
/// every amount (issue 13, item 3).
#[test]
fn a_batch_on_many_policies_reads_each_amount_a_few_times() {
    let l = Limits::default();
    let mut t = Tree::new();
    for (k, path) in ["", "a", "a/b", "a/b/c"].iter().enumerate() {
        for j in 0..16 {
            let metric = format!("m{}", 63 - j - 16 * k);
            t.set_policy(path, &format!("p{j}"), spec(&metric, "1000000", Mode::Strict), 0, &l).unwrap();
        }
    }
    let items: Vec<Costs> = (0..200).map(|_| metric_costs(0, 64)).collect();
    let pairs = 200 * 64;
    outcome::COMPARISONS.with(|c| c.set(0));
    let req = ReserveRequest { items, brief: true, ..reserve_req(&["a/b/c"], &[]) };
    let id = t.reserve(req, 0, &l).unwrap().id.unwrap();
    t.release(&id, None, 0, &l).unwrap();
    let work = outcome::COMPARISONS.with(|c| c.get());
    assert!(work <= 6 * pairs, "{pairs} amounts on 64 policies: {work} comparisons");
    t.check_invariants().unwrap();
}

/// A request's work does not multiply the policies it reaches by its
/// metrics: 1024 policies reached by a request of 256 metrics compare metric
/// names a few times per policy and per metric, not once per policy for
/// every metric (reaching, checking, holding, committing and charging).
#[test]
fn many_policies_and_many_metrics_add_up_instead_of_multiplying() {
    let l = Limits { max_policies: 64, ..Limits::default() };
    let mut t = Tree::new();
    let mut path = String::new();
    let mut policies = 0;
    for depth in 0..16 {
        if depth > 0 {
            path = if path.is_empty() { format!("n{depth}") } else { format!("{path}/n{depth}") };
        }
        for j in 0..64 {
            let metric = format!("m{}", (depth * 64 + j) % 256);
            t.set_policy(&path, &format!("p{j}"), spec(&metric, "1000000", Mode::Strict), 0, &l).unwrap();
            policies += 1;
        }
    }
    let metrics = 256;
    outcome::COMPARISONS.with(|c| c.set(0));
    let items = vec![metric_costs(0, 128), metric_costs(128, 256)];
    let req = ReserveRequest { items, brief: true, ..reserve_req(&[&path], &[]) };
    let id = t.reserve(req, 0, &l).unwrap().id.unwrap();
    t.commit(&id, None, None, 0, &l).unwrap();
    for check in [true, false] {
        t.charge(ChargeRequest { cost: metric_costs(0, 128), ..charge_req(&[&path], &[], check) }, 0, &l).unwrap();
    }
    let work = outcome::COMPARISONS.with(|c| c.get());
    let parts = policies + metrics;
    assert!(work <= 40 * parts, "{policies} policies, {metrics} metrics: {work} comparisons");
    t.check_invariants().unwrap();
}

/// A partial `UPTO` batch keeps only the items that fit, and counts only on
/// the policies of their metrics: the lines a reload derives from the kept
/// items. Before, it also kept lines for the metrics of the items that did
/// not fit, so a stored tree encoded differently after loading (found by
/// the command fuzzer: re-encoding after `QUOTA.RESERVE … UPTO`).
#[test]
fn a_partial_upto_hold_stores_what_it_loads() {
    let l = Limits::default();
    let mut t = Tree::new();
    t.set_policy("d", "p", spec("credits", "0", Mode::Strict), 0, &l).unwrap();
    let items: &[&[(&str, &str)]] = &[&[("requests", "0")], &[("credits", "4")]];
    let req = ReserveRequest { batch: BatchMode::Upto, ..reserve_req(&["", "d"], items) };
    let r = t.reserve(req, 0, &l).unwrap();
    assert_eq!((r.reserved, r.fits), (1, 1));
    let bytes = crate::persist::encode(&t);
    let back = crate::persist::decode(&bytes, crate::persist::ENCODING_VERSION).unwrap();
    assert_eq!(crate::persist::encode(&back), bytes, "a loaded tree stores the same bytes");
    t.check_invariants().unwrap();
}

#[test]
fn delpath_refuses_while_held_and_removes_the_subtree() {
    let l = Limits::default();
    let mut t = company();
    t.set_policy("projects/p1/users/u1", "x", spec("credits", "5", Mode::Strict), 0, &l).unwrap();
    let id = t.reserve(reserve_req(&["projects/p1/users/u1"], &[&[("credits", "1")]]), 0, &l).unwrap().id.unwrap();
    assert!(matches!(t.delete_path("projects/p1"), Err(Error::State(_))));
    t.release(&id, None, 1, &l).unwrap();
    assert_eq!(t.delete_path("projects/p1").unwrap(), 3);
    assert!(matches!(t.get("projects/p1/users", 0), Err(Error::NotFound(_))));
    assert!(t.get("projects", 0).is_ok());
    assert!(matches!(t.delete_path(""), Err(Error::State(_))));
    // A path created again starts fresh, reusing the freed slots.
    t.set_policy("projects/p1", "cap", spec("credits", "50", Mode::Strict), 0, &l).unwrap();
    assert_eq!(policy_at(&t, "projects/p1", "cap").used, d("0"));
    t.check_invariants().unwrap();
}

#[test]
fn set_updates_keep_usage_and_unset_forgets_holds() {
    let l = Limits::default();
    let mut t = company();
    t.charge(charge_req(&["projects/p1"], &[("credits", "10")], false), 0, &l).unwrap();
    let id = t.reserve(reserve_req(&["projects/p1"], &[&[("credits", "5")]]), 0, &l).unwrap().id.unwrap();
    t.set_policy("projects/p1", "cap", spec("credits", "70", Mode::Block), 0, &l).unwrap();
    let p = policy_at(&t, "projects/p1", "cap");
    assert_eq!((p.used, p.held, p.limit), (d("10"), d("5"), d("70")));
    t.unset_policy("projects/p1", "cap", 0, &Limits::default()).unwrap();
    t.set_policy("projects/p1", "cap", spec("credits", "70", Mode::Strict), 0, &l).unwrap();
    t.release(&id, None, 1, &l).unwrap();
    assert_eq!(policy_at(&t, "projects/p1", "cap").held, d("0"), "a new policy ignores its predecessor's holds");
    assert!(matches!(t.unset_policy("projects/p1", "nope", 0, &Limits::default()), Err(Error::NotFound(_))));
    t.check_invariants().unwrap();
}

#[test]
fn tree_views_show_status_and_depth() {
    let l = Limits::default();
    let mut t = company();
    t.charge(charge_req(&["projects/p1"], &[("credits", "45")], false), 0, &l).unwrap();
    let view = t.tree_view("", 1, 1000, 0).unwrap();
    assert!(!view.truncated);
    assert_eq!(view.nodes, 3);
    let view = view.root;
    assert_eq!(view.path, "/");
    assert_eq!(view.children.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(), vec!["members", "projects"]);
    assert!(view.children.iter().all(|c| c.children.is_empty()));
    let p1 = t.get("projects/p1", 0).unwrap();
    assert_eq!(p1.status, Status::Critical);
    assert_eq!(t.get("members", 0).unwrap().status, Status::None);
    assert_eq!(t.get("", 0).unwrap().status, Status::Healthy);
}

#[test]
fn a_large_tree_is_cut_at_count_with_a_marker() {
    let l = Limits::default();
    let mut t = Tree::new();
    for i in 0..50 {
        t.charge(charge_req(&[&format!("projects/p{i:02}/users/u1")], &[("credits", "1")], false), 0, &l).unwrap();
    }
    // limit, nodes returned, truncated
    for (count, nodes, truncated) in [(1000, 152, false), (10, 10, true), (1, 1, true), (3, 3, true)] {
        let view = t.tree_view("", 64, count, 0).unwrap();
        assert_eq!((view.nodes, view.truncated), (nodes, truncated), "COUNT {count}");
    }
    let cut = t.tree_view("", 64, 10, 0).unwrap().root;
    // root, projects, then p00/users/u1, p01/users/u1, p02/users/u1 (and p03 cut short)
    assert_eq!(cut.more, 0);
    let projects = &cut.children[0];
    assert_eq!(projects.children.len(), 3);
    assert_eq!(projects.more, 47);
}

mod events {
    use super::*;
    use crate::events::EventKind;
    use crate::window::{DAY_MS, Unit};

    fn kinds(t: &Tree) -> Vec<(EventKind, Option<u8>)> {
        t.events_since(0, usize::MAX).map(|e| (e.kind, e.threshold)).collect()
    }

    #[test]
    fn thresholds_fire_once_per_period_and_again_after_a_reset() {
        let l = Limits::default();
        let mut t = Tree::new();
        let monthly = PolicySpec {
            window: Window::Calendar { unit: Unit::Month, anchor: 1, tz: crate::tz::Zone::Utc },
            ..spec("credits", "100", Mode::Strict)
        };
        t.set_policy("", "m", monthly, 0, &l).unwrap();
        // One charge crosses both thresholds, in order.
        t.charge(charge_req(&["p"], &[("credits", "91")], false), 1, &l).unwrap();
        assert_eq!(kinds(&t), vec![(EventKind::Warning, Some(80)), (EventKind::Warning, Some(90))]);
        t.charge(charge_req(&["p"], &[("credits", "-50")], false), 2, &l).unwrap();
        t.charge(charge_req(&["p"], &[("credits", "50")], false), 3, &l).unwrap();
        assert_eq!(kinds(&t).len(), 2, "each threshold fires once per period");
        t.charge(charge_req(&["p"], &[("credits", "9")], false), 4, &l).unwrap();
        assert_eq!(kinds(&t)[2], (EventKind::Over, None));
        // The next month: a reset event, and the thresholds fire again.
        let feb = 31 * DAY_MS as u64;
        t.charge(charge_req(&["p"], &[("credits", "85")], false), feb, &l).unwrap();
        let all: Vec<_> = t.events_since(0, usize::MAX).cloned().collect();
        assert_eq!(all[3].kind, EventKind::Reset);
        assert_eq!((all[3].used, all[3].limit, all[3].periods), (Some(d("100")), Some(d("100")), Some(1)));
        assert_eq!((all[4].kind, all[4].threshold), (EventKind::Warning, Some(80)));
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
        assert_eq!(t.events_since(3, 10).map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(t.events_since(4, 1).map(|e| e.seq).collect::<Vec<_>>(), vec![5]);
    }

    #[test]
    fn strict_warnings_count_holds_and_holds_that_expire_say_so() {
        let l = Limits::default();
        let mut t = company();
        let mut req = reserve_req(&["projects/p1"], &[&[("credits", "45")]]);
        req.ttl_ms = 100;
        t.reserve(req.clone(), 0, &l).unwrap();
        // 45 of 50 held at projects/p1: 80 and 90 cross.
        assert_eq!(kinds(&t), vec![(EventKind::Warning, Some(80)), (EventKind::Warning, Some(90))]);
        t.expire(100, &l);
        let expired = t.events_since(2, 10).next().unwrap().clone();
        assert_eq!((expired.kind, expired.path.as_str(), expired.time_ms), (EventKind::Expired, "projects/p1", 100));
        assert_eq!(expired.amounts, costs(&[("credits", "45")]));
    }

    #[test]
    fn a_rolling_window_warns_again_after_its_usage_dropped_out() {
        let l = Limits::default();
        let mut t = Tree::new();
        let rolling = PolicySpec {
            window: Window::Rolling { duration_ms: 3_600_000 },
            warn: crate::policy::Warn::new(&[50]),
            ..spec("credits", "10", Mode::Strict)
        };
        t.set_policy("", "r", rolling, 0, &l).unwrap();
        t.charge(charge_req(&["p"], &[("credits", "6")], false), 0, &l).unwrap();
        // Two hours later the old usage has dropped out and new usage crosses again,
        // within one write.
        t.charge(charge_req(&["p"], &[("credits", "6")], false), 7_200_000, &l).unwrap();
        assert_eq!(kinds(&t), vec![(EventKind::Warning, Some(50)), (EventKind::Warning, Some(50))]);
    }

    #[test]
    fn rollover_and_manual_resets_are_events_and_the_log_is_bounded() {
        let l = Limits { events_len: 3, ..Limits::default() };
        let mut t = Tree::new();
        let monthly = PolicySpec {
            window: Window::Calendar { unit: Unit::Month, anchor: 1, tz: crate::tz::Zone::Utc },
            rollover: Some(d("150")),
            ..spec("credits", "100", Mode::Strict)
        };
        t.set_policy("", "m", monthly, 0, &l).unwrap();
        t.reset_policy("", "m", 10, &l).unwrap();
        assert_eq!(kinds(&t), vec![(EventKind::Reset, None), (EventKind::Rollover, None)]);
        let rollover = t.events_since(1, 1).next().unwrap().clone();
        assert_eq!((rollover.rolled_over, rollover.limit), (Some(d("50")), Some(d("150"))));
        for i in 0..5 {
            t.reset_policy("", "m", 20 + i, &l).unwrap();
        }
        assert_eq!(t.events_since(0, usize::MAX).count(), 3);
        assert_eq!(t.last_event_seq(), 12);
        assert_eq!(t.events_since(0, usize::MAX).next().unwrap().seq, 10);
    }
}

// ----- property tests ----------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Reserve { path: usize, also: Option<usize>, amounts: Vec<u32>, ttl: u64, upto: bool },
    Commit { hold: usize, actual: Option<u32>, item: Option<usize> },
    Release { hold: usize },
    Charge { path: usize, amount: i32, check: bool },
    Advance { ms: u64 },
}

const PATHS: [&str; 6] = ["", "a", "a/b", "a/b/c", "d", "d/e"];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..PATHS.len(), proptest::option::of(0..PATHS.len()), proptest::collection::vec(0u32..40, 1..4), 1u64..5000, any::<bool>())
            .prop_map(|(path, also, amounts, ttl, upto)| Op::Reserve { path, also, amounts, ttl, upto }),
        3 => (0usize..64, proptest::option::of(0u32..60), proptest::option::of(0usize..3))
            .prop_map(|(hold, actual, item)| Op::Commit { hold, actual, item }),
        1 => (0usize..64).prop_map(|hold| Op::Release { hold }),
        2 => (0..PATHS.len(), -30i32..40, any::<bool>()).prop_map(|(path, amount, check)| Op::Charge { path, amount, check }),
        1 => (0u64..3000).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn policy_tree() -> Tree {
    let l = Limits::default();
    let mut t = Tree::new();
    t.set_policy("", "root", spec("credits", "300", Mode::Strict), 0, &l).unwrap();
    t.set_policy("a", "a", spec("credits", "150", Mode::Strict), 0, &l).unwrap();
    t.set_policy("a/b", "ab", spec("credits", "100", Mode::Block), 0, &l).unwrap();
    t.set_policy("a/b/c", "abc", spec("credits", "60", Mode::Strict), 0, &l).unwrap();
    t.set_policy("d", "d", spec("credits", "80", Mode::Open), 0, &l).unwrap();
    t
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_sequences(ops in proptest::collection::vec(op(), 1..80)) {
        let l = Limits::default();
        let mut t = policy_tree();
        let mut now = 1_000u64;
        let mut ids: Vec<String> = Vec::new();
        // The strict policies, (path, name), each with the overage it may
        // legitimately exceed its allowance by: commits larger than their
        // holds and unchecked charges whose charge set reaches it. Kept per
        // policy, so an overspend on one cannot hide behind an unchecked
        // charge on another.
        const STRICT: [(&str, &str); 3] = [("", "root"), ("a", "a"), ("a/b/c", "abc")];
        let mut slack = [Decimal::ZERO; STRICT.len()];
        let allow = |paths: &[&str], amount: Decimal, slack: &mut [Decimal; STRICT.len()]| {
            for (k, (at, _)) in STRICT.iter().enumerate() {
                if paths.iter().any(|p| names::is_within(p, at)) {
                    slack[k] += amount;
                }
            }
        };
        // Expected spent per path: the sum of charges whose reach includes it.
        let mut spent = std::collections::HashMap::<&str, Decimal>::new();
        let record = |paths: &[&str], amount: Decimal, spent: &mut std::collections::HashMap<&str, Decimal>| {
            let mut seen: Vec<&str> = Vec::new();
            for p in paths {
                for prefix in PATHS.iter().copied().filter(|q| names::is_within(p, q)) {
                    if !seen.contains(&prefix) { seen.push(prefix); }
                }
            }
            for prefix in seen {
                let e = spent.entry(prefix).or_default();
                *e = (*e + amount).max(Decimal::ZERO);
            }
        };
        for op in ops {
            t.expire(now, &l);
            match op {
                Op::Reserve { path, also, amounts, ttl, upto } => {
                    let mut paths = vec![PATHS[path]];
                    if let Some(a) = also && a != path { paths.push(PATHS[a]); }
                    let items: Vec<Vec<(&str, String)>> = amounts.iter().map(|a| vec![("credits", a.to_string())]).collect();
                    let items: Vec<Costs> = items.iter().map(|i| i.iter().map(|(m, a)| (m.to_string(), d(a))).collect()).collect();
                    let req = ReserveRequest { set: set_of(&paths), id: None, ttl_ms: ttl, batch: if upto { BatchMode::Upto } else { BatchMode::All }, items, brief: false, meta: None };
                    let out = t.reserve(req.clone(), now, &l).unwrap();
                    if let Some(id) = out.id { ids.push(id); }
                }
                Op::Commit { hold, actual, item } => {
                    let Some(id) = ids.get(hold % ids.len().max(1)).cloned() else { continue };
                    let live = t.holds.get(&id).cloned();
                    // The charge set, read before the commit (a settled hold keeps none).
                    let set_paths: Vec<String> = live.as_ref().map(|h| h.set.paths.clone())
                        .or_else(|| t.done_entry(&id).and_then(|e| e.hold).map(|h| h.set.paths))
                        .unwrap_or_default();
                    let actual_costs = actual.map(|a| vec![("credits".to_string(), Decimal::from(a))]);
                    match t.commit(&id, item, actual_costs, now, &l) {
                        Ok(c) if !c.duplicate => {
                            let charged = costs_get_(&c.charged);
                            let paths: Vec<&str> = set_paths.iter().map(|p| PATHS.iter().copied().find(|q| q == p).unwrap_or("")).collect();
                            if let Some(h) = live {
                                let reserved: Decimal = h.items.iter().enumerate()
                                    .filter(|(i, it)| it.state == ItemState::Held && item.is_none_or(|x| x == *i))
                                    .map(|(_, it)| costs_get_(&it.cost)).sum();
                                allow(&paths, (charged - reserved).max(Decimal::ZERO), &mut slack);
                            } else {
                                allow(&paths, charged, &mut slack);
                            }
                            record(&paths, charged, &mut spent);
                        }
                        Ok(_) | Err(Error::State(_)) | Err(Error::Syntax(_)) | Err(Error::NotFound(_)) => {}
                        Err(e) => prop_assert!(false, "unexpected {e}"),
                    }
                }
                Op::Release { hold } => {
                    let Some(id) = ids.get(hold % ids.len().max(1)).cloned() else { continue };
                    let _ = t.release(&id, None, now, &l);
                }
                Op::Charge { path, amount, check } => {
                    let amount = Decimal::from(amount);
                    let out = t.charge(ChargeRequest { set: set_of(&[PATHS[path]]), id: None, check, cost: vec![("credits".into(), amount)], brief: false, meta: None }, now, &l).unwrap();
                    if out.allowed {
                        if !check && amount > Decimal::ZERO { allow(&[PATHS[path]], amount, &mut slack); }
                        record(&[PATHS[path]], amount, &mut spent);
                    }
                }
                Op::Advance { ms } => now += ms,
            }
            prop_assert_eq!(t.check_invariants(), Ok(()));
            for ((path, name), slack) in STRICT.iter().zip(slack) {
                let p = policy_at(&t, path, name);
                prop_assert!(p.used + p.held <= p.limit + slack, "{}#{}: {} + {} > {} + {}", path, name, p.used, p.held, p.limit, slack);
            }
            for (path, want) in &spent {
                if let Ok(view) = t.get(path, now) {
                    prop_assert_eq!(costs_get_(&view.spent), *want, "spent at {:?}", path);
                }
            }
        }
    }
}

fn costs_get_(c: &Costs) -> Decimal {
    outcome::costs_get(c, "credits")
}

// ----- windows -----------------------------------------------------------

mod windows {
    use super::*;
    use crate::policy::{Closed, HISTORY_LEN, Policy};
    use crate::window::{DAY_MS, HOUR_MS, ROLLING_BUCKETS_KEPT, Unit, days_from_civil};

    fn at(y: i64, m: i64, d: i64) -> u64 {
        (days_from_civil(y, m, d) * DAY_MS) as u64
    }

    fn windowed(limit: &str, window: Window, rollover: Option<&str>) -> PolicySpec {
        PolicySpec { window, rollover: rollover.map(d), ..spec("credits", limit, Mode::Strict) }
    }

    fn month(anchor: u8) -> Window {
        Window::Calendar { unit: Unit::Month, anchor: anchor.into(), tz: crate::tz::Zone::Utc }
    }

    fn closed(start: u64, end: u64, used: &str, allowance: &str, rolled: &str) -> Closed {
        Closed {
            start_ms: start,
            end_ms: end,
            used: d(used),
            allowance: d(allowance),
            rolled_over: d(rolled),
            granted: d("0"),
        }
    }

    #[test]
    fn a_monthly_budget_resets_on_the_first_and_archives_the_month() {
        let l = Limits::default();
        let mut t = Tree::new();
        t.set_policy("", "m", windowed("100", month(1), None), at(2026, 1, 10), &l).unwrap();
        t.charge(charge_req(&["p"], &[("credits", "30")], false), at(2026, 1, 15), &l).unwrap();
        let jan = t.get("", at(2026, 1, 31)).unwrap();
        assert_eq!(jan.policies[0].used, d("30"));
        assert_eq!(jan.policies[0].period, Some((at(2026, 1, 1), at(2026, 2, 1))));
        let feb = t.get("", at(2026, 2, 1)).unwrap();
        assert_eq!((feb.policies[0].used, feb.policies[0].limit), (d("0"), d("100")));
        assert_eq!(feb.policies[0].period, Some((at(2026, 2, 1), at(2026, 3, 1))));
        assert_eq!(
            t.history("", "m", at(2026, 2, 1)).unwrap(),
            vec![closed(at(2026, 1, 1), at(2026, 2, 1), "30", "100", "0")]
        );
        // Reading did not change the tree: the reset is applied lazily by writes.
        assert_eq!(policy_at(&t, "", "m").used, d("30"));
    }

    #[test]
    fn rollover_carries_unused_allowance_up_to_the_cap() {
        // The example of SPEC §1: 5M limit, 1.5M used → 8.5M; an idle month → 10M (cap).
        let mut p = Policy::new("m", windowed("5000000", month(1), Some("10000000")), 1, at(2026, 1, 1));
        p.add_used(d("1500000"), at(2026, 1, 20)).unwrap();
        p.roll(at(2026, 2, 1));
        assert_eq!((p.allowance(), p.rolled_over()), (d("8500000"), d("3500000")));
        p.roll(at(2026, 3, 1));
        assert_eq!(p.allowance(), d("10000000"));
        assert_eq!(
            p.history().iter().cloned().collect::<Vec<_>>(),
            vec![
                closed(at(2026, 2, 1), at(2026, 3, 1), "0", "8500000", "3500000"),
                closed(at(2026, 1, 1), at(2026, 2, 1), "1500000", "5000000", "0"),
            ]
        );
    }

    #[test]
    fn skipped_periods_give_the_same_result_as_resets_on_time() {
        // limit, cap, used in the first period, periods skipped
        let rows = [
            ("10", Some("100"), "4", 1i64),
            ("10", Some("100"), "4", 7),
            ("10", Some("100"), "0", 30),
            ("10", None, "3", 5),
            ("7", Some("7"), "1", 3),
        ];
        let hour = Window::Calendar { unit: Unit::Hour, anchor: 1, tz: crate::tz::Zone::Utc };
        for (limit, cap, used, skipped) in rows {
            let start = 1_800_000_000_000u64 - 1_800_000_000_000u64 % HOUR_MS as u64;
            let mut lazy = Policy::new("p", windowed(limit, hour, cap), 1, start);
            lazy.add_used(d(used), start + 10).unwrap();
            let mut eager = lazy.clone();
            for k in 1..=skipped as u64 {
                eager.roll(start + k * HOUR_MS as u64);
            }
            let end = start + skipped as u64 * HOUR_MS as u64 + 5;
            lazy.roll(end);
            eager.roll(end);
            assert_eq!(lazy, eager, "{limit} {cap:?} {used} {skipped}");
        }
    }

    #[test]
    fn years_of_skipped_periods_collapse_without_a_loop() {
        let hour = Window::Calendar { unit: Unit::Hour, anchor: 1, tz: crate::tz::Zone::Utc };
        let mut p = Policy::new("p", windowed("1", hour, Some("1000000000")), 1, 0);
        let ten_years = 10 * 365 * DAY_MS as u64;
        let archived = || crate::policy::ARCHIVED.with(|n| n.get());
        let before = archived();
        assert_eq!(p.roll(ten_years), 87_600, "every hour of ten years closed");
        // The work is bounded by the history kept, not by the periods skipped
        // (counted, not timed: a debug build's speed proves nothing).
        assert!(archived() - before <= HISTORY_LEN as u64 + 1, "catching up archived {} periods", archived() - before);
        assert_eq!(p.history().len(), HISTORY_LEN);
        // After n idle hours the allowance is 1 + n (all carried over), below the cap.
        assert_eq!(p.allowance(), d("87601"));
        assert_eq!(p.history()[0].allowance, d("87600"));
        assert_eq!(p.history()[0].end_ms, ten_years);
    }

    /// Lazy resets in a zone: a policy idle for 1000 days archives the
    /// periods that a reset at each boundary would have, each starting and
    /// ending where the zone's calendar says (23- and 25-hour days, short
    /// months). The named zones need the zone table (src/engine/tz.rs).
    fn lazy_resets_match_resets_on_time(zones: &[&str]) {
        // window, anchor
        let windows =
            [("day", None), ("week", Some("sunday")), ("month", None), ("month", Some("31")), ("year", Some("02-29"))];
        for tz in zones {
            for (unit, anchor) in windows {
                let w = Window::parse(unit, anchor, None, Some(tz)).unwrap();
                let t0 = at(2026, 1, 15);
                let mut lazy = Policy::new("p", windowed("10", w, Some("100000")), 1, t0);
                lazy.add_used(d("4"), t0 + 10).unwrap();
                let mut eager = lazy.clone();
                let end = t0 + 1000 * DAY_MS as u64 + 7;
                let (first, last) = (w.index_of(t0), w.index_of(end));
                for i in first + 1..=last {
                    eager.roll(w.start_of(i));
                }
                lazy.roll(end);
                eager.roll(end);
                assert_eq!(lazy, eager, "{unit} {anchor:?} {tz}");
                assert_eq!(lazy.period_start_ms, w.period_of(end).0, "{unit} {anchor:?} {tz}");
                let history: Vec<_> = lazy.history().iter().cloned().collect();
                assert_eq!(history.len() as i64, (last - first).min(HISTORY_LEN as i64), "{unit} {anchor:?} {tz}");
                for (k, c) in history.iter().enumerate() {
                    let i = last - 1 - k as i64;
                    assert_eq!(
                        (c.start_ms, c.end_ms),
                        (w.start_of(i), w.start_of(i + 1)),
                        "{unit} {anchor:?} {tz}: {k}"
                    );
                    assert_eq!(w.period_of(c.start_ms), (c.start_ms, c.end_ms), "{unit} {anchor:?} {tz}: {k}");
                    assert_eq!(w.period_of(c.end_ms - 1), (c.start_ms, c.end_ms), "{unit} {anchor:?} {tz}: {k}");
                }
            }
        }
    }

    #[test]
    fn lazy_resets_in_fixed_offsets_match_resets_on_time() {
        lazy_resets_match_resets_on_time(&["UTC", "+05:30", "-03:00", "+14:00", "-09:30"]);
    }

    #[test]
    fn lazy_resets_in_named_zones_match_resets_on_time() {
        lazy_resets_match_resets_on_time(&["America/New_York", "Europe/Berlin", "Australia/Lord_Howe", "Pacific/Apia"]);
        // Over New York's DST changes, a day lasts 23 or 25 hours.
        let w = Window::parse("day", None, None, Some("America/New_York")).unwrap();
        let mut p = Policy::new("p", windowed("10", w, None), 1, at(2026, 3, 7) + 12 * HOUR_MS as u64);
        p.roll(at(2026, 3, 10) + 12 * HOUR_MS as u64);
        let lengths: Vec<u64> = p.history().iter().map(|c| (c.end_ms - c.start_ms) / HOUR_MS as u64).collect();
        assert_eq!(lengths, [24, 23, 24]);
        let mut p = Policy::new("p", windowed("10", w, None), 1, at(2026, 10, 31) + 12 * HOUR_MS as u64);
        p.roll(at(2026, 11, 3) + 12 * HOUR_MS as u64);
        let lengths: Vec<u64> = p.history().iter().map(|c| (c.end_ms - c.start_ms) / HOUR_MS as u64).collect();
        assert_eq!(lengths, [24, 25, 24]);
    }

    /// Review 21 F5: the day Samoa skipped (Pacific/Apia, 2011-12-30) is an
    /// empty period whether the tree is touched around it or only after it:
    /// a lazy reset archives and counts it exactly as resets on time do.
    #[test]
    fn a_skipped_day_closes_the_same_late_as_on_time() {
        for tz in ["Pacific/Apia", "Pacific/Fakaofo"] {
            let w = Window::parse("day", None, None, Some(tz)).unwrap();
            let t0 = 1_325_066_400_000; // 2011-12-28T10:00Z
            let mut lazy = Policy::new("p", windowed("10", w, Some("100")), 1, t0);
            lazy.add_used(d("3"), t0 + 10).unwrap();
            let mut eager = lazy.clone();
            let end = t0 + 5 * DAY_MS as u64;
            let mut t = t0;
            while t < end {
                t += 30 * 60_000;
                eager.roll(t.min(end));
            }
            lazy.roll(end);
            assert_eq!(lazy, eager, "{tz}");
            let empty: Vec<_> = lazy.history().iter().filter(|c| c.start_ms == c.end_ms).collect();
            assert_eq!(empty.len(), 1, "{tz}: the skipped day is one empty period");
            assert_eq!(w.period_label(empty[0].start_ms, empty[0].end_ms).as_deref(), Some("2011-12-30"), "{tz}");
        }
    }

    #[test]
    fn anchors_clamp_to_short_months() {
        let mut p = Policy::new("p", windowed("10", month(31), None), 1, at(2028, 1, 31));
        // period starts: Jan 31, Feb 29 (2028 is a leap year), Mar 31, Apr 30
        for (now, start) in [
            (at(2028, 2, 28), at(2028, 1, 31)),
            (at(2028, 2, 29), at(2028, 2, 29)),
            (at(2028, 3, 31), at(2028, 3, 31)),
            (at(2028, 4, 30), at(2028, 4, 30)),
        ] {
            p.roll(now);
            assert_eq!(p.period_start_ms, start);
        }
        assert_eq!(p.history().len(), 3);
    }

    #[test]
    fn rolling_windows_drop_usage_bucket_by_bucket() {
        let rolling = Window::Rolling { duration_ms: 60_000 };
        let mut p = Policy::new("p", windowed("100", rolling, None), 1, 0);
        p.add_used(d("10"), 999).unwrap(); // bucket 0
        p.add_used(d("5"), 30_000).unwrap(); // bucket 30
        // time, used
        // Usage never drops out early: it counts for at least the window,
        // and at most one bucket (1 s) longer.
        for (now, used) in [(59_999, "15"), (60_998, "15"), (60_999, "15"), (61_000, "5"), (90_999, "5"), (91_000, "0")]
        {
            assert_eq!(p.at(now).used, d(used), "at {now}");
        }
        p.roll(61_000);
        p.add_used(d("7"), 61_500).unwrap();
        p.add_used(d("-9"), 61_600).unwrap();
        assert_eq!(p.used, d("3"));
        assert_eq!(
            p.buckets().iter().map(|(_, a)| *a).collect::<Vec<_>>(),
            vec![d("3")],
            "newest buckets give back first"
        );
        assert!(p.buckets().len() <= 60);
    }

    /// Usage counts for at least the whole duration and drops out at most
    /// one bucket later, for every duration: buckets are duration / 60
    /// rounded down, so for 61 s or 100 s sixty of them cover less than the
    /// window (issue 13, item 7).
    #[test]
    fn rolling_windows_never_drop_usage_early_whatever_their_duration() {
        let mut durations: Vec<u64> = (60..=200).map(|s| s * 1000).collect();
        durations.extend([60_001, 61_999, 119_999, 59 * 60_000, 61 * 60_000, 7 * 3_600_000, 25 * 3_600_000]);
        durations.extend([13 * DAY_MS as u64, 400 * DAY_MS as u64, 400 * DAY_MS as u64 - 1]);
        for duration_ms in durations {
            let rolling = Window::Rolling { duration_ms };
            let bucket = rolling.bucket_ms().unwrap();
            for first in [0, 7, 12_345] {
                for offset in [0, 1, bucket / 2, bucket - 1] {
                    let t = first * bucket + offset;
                    let mut p = Policy::new("p", windowed("100", rolling, None), 1, 0);
                    p.add_used(d("1"), t).unwrap();
                    let what = format!("rolling {duration_ms} ms, charged at {t}");
                    // charged at t, counted at every time up to t + duration
                    for now in [t, t + duration_ms / 2, t + duration_ms - 1, t + duration_ms] {
                        assert_eq!(p.at(now).used, d("1"), "{what}: dropped early at {now}");
                        let (start, end) = p.shown_period(now).unwrap();
                        assert!(start <= t && t < end && now < end, "{what}: span {start}..{end} at {now}");
                    }
                    assert_eq!(p.at(t + duration_ms + bucket).used, d("0"), "{what}: kept past one bucket");
                }
            }
            // A steady stream keeps at most ROLLING_BUCKETS_KEPT buckets,
            // which is what a stored tree may hold.
            let mut p = Policy::new("p", windowed("1000000", rolling, None), 1, 0);
            let step = (bucket / 3).max(1);
            let mut now = 0;
            while now < 3 * duration_ms {
                p.roll(now);
                p.add_used(d("1"), now).unwrap();
                assert!(p.buckets().len() as u64 <= ROLLING_BUCKETS_KEPT, "rolling {duration_ms} ms at {now}");
                now += step;
            }
        }
    }

    #[test]
    fn a_clock_that_steps_back_keeps_rolling_buckets_in_order() {
        let rolling = Window::Rolling { duration_ms: 60_000 };
        let mut p = Policy::new("p", windowed("100", rolling, None), 1, 0);
        p.add_used(d("1"), 5_000).unwrap();
        p.add_used(d("2"), 3_000).unwrap();
        assert_eq!(p.buckets().iter().cloned().collect::<Vec<_>>(), vec![(5, d("3"))]);
        let l = Limits::default();
        let mut t = Tree::new();
        t.set_policy("", "r", windowed("100", rolling, None), 0, &l).unwrap();
        t.charge(charge_req(&["p"], &[("credits", "1")], false), 9_000, &l).unwrap();
        t.charge(charge_req(&["p"], &[("credits", "1")], false), 2_000, &l).unwrap();
        assert!(crate::persist::decode(&crate::persist::encode(&t), crate::persist::ENCODING_VERSION).is_ok());
    }

    #[test]
    fn a_new_metric_starts_over_and_rollover_needs_a_calendar_window() {
        let l = Limits::default();
        let mut t = Tree::new();
        t.set_policy("", "m", windowed("100", month(1), Some("1000")), at(2026, 1, 1), &l).unwrap();
        t.charge(charge_req(&["p"], &[("credits", "10")], false), at(2026, 1, 2), &l).unwrap();
        // Five idle months carry 90 + 4 × 100 over: the allowance is 590.
        assert_eq!(t.get("", at(2026, 6, 1)).unwrap().policies[0].limit, d("590"));
        t.set_policy("", "m", windowed("100", month(1), Some("300")), at(2026, 6, 1), &l).unwrap();
        assert_eq!(t.get("", at(2026, 6, 1)).unwrap().policies[0].limit, d("300"), "clamped to the new cap");
        t.set_policy("", "m", windowed("100", Window::None, None), at(2026, 6, 1), &l).unwrap();
        assert_eq!(t.get("", at(2026, 6, 1)).unwrap().policies[0].limit, d("100"), "no rollover without a window");
        t.charge(charge_req(&["p"], &[("credits", "40")], false), at(2026, 6, 2), &l).unwrap();
        t.set_policy(
            "",
            "m",
            PolicySpec { metric: "usd".into(), ..windowed("100", Window::None, None) },
            at(2026, 6, 3),
            &l,
        )
        .unwrap();
        let p = policy_at(&t, "", "m");
        assert_eq!((p.used, p.history().len()), (d("0"), 0), "usage in credits is not usage in usd");
    }

    #[test]
    fn holds_survive_a_reset_and_charge_the_period_of_their_commit() {
        let l = Limits::default();
        let mut t = Tree::new();
        t.set_policy("", "m", windowed("100", month(1), None), at(2026, 1, 1), &l).unwrap();
        let mut req = reserve_req(&["p"], &[&[("credits", "40")]]);
        req.ttl_ms = 10 * DAY_MS as u64;
        let id = t.reserve(req.clone(), at(2026, 1, 30), &l).unwrap().id.unwrap();
        let feb = t.get("", at(2026, 2, 2)).unwrap();
        assert_eq!((feb.policies[0].used, feb.policies[0].held), (d("0"), d("40")));
        t.commit(&id, None, None, at(2026, 2, 3), &l).unwrap();
        let feb = t.get("", at(2026, 2, 3)).unwrap();
        assert_eq!((feb.policies[0].used, feb.policies[0].held), (d("40"), d("0")));
        assert_eq!(t.history("", "m", at(2026, 2, 3)).unwrap()[0].used, d("0"));
        t.check_invariants().unwrap();
    }

    #[test]
    fn grants_last_one_period_and_reset_archives_early() {
        let l = Limits::default();
        let mut t = Tree::new();
        t.set_policy("", "m", windowed("100", month(1), Some("150")), at(2026, 1, 1), &l).unwrap();
        let view = t.grant("", "m", &crate::tests_grants::period_grant("20"), at(2026, 1, 5), &l).unwrap();
        assert_eq!(view.policy.limit, d("120"));
        t.charge(charge_req(&["p"], &[("credits", "90")], false), at(2026, 1, 6), &l).unwrap();
        let closed = t.reset_policy("", "m", at(2026, 1, 10), &l).unwrap();
        assert_eq!(
            closed,
            Closed {
                start_ms: at(2026, 1, 1),
                end_ms: at(2026, 1, 10),
                used: d("90"),
                allowance: d("120"),
                rolled_over: d("0"),
                granted: d("0"),
            }
        );
        let now = t.get("", at(2026, 1, 10)).unwrap().policies[0].clone();
        // 10 unused own allowance rolls over; the PERIOD grant ended with
        // the reset and never rolls over (SPEC §7).
        assert_eq!((now.limit, now.used, now.period), (d("110"), d("0"), Some((at(2026, 1, 10), at(2026, 2, 1)))));
        let feb = t.get("", at(2026, 2, 1)).unwrap().policies[0].clone();
        assert_eq!(feb.limit, d("150"));
        let one = crate::tests_grants::period_grant("1");
        assert!(matches!(t.grant("", "nope", &one, 0, &l), Err(Error::NotFound(_))));
    }

    #[test]
    fn rollover_needs_a_calendar_window_and_a_cap_above_the_limit() {
        let l = Limits::default();
        let mut t = Tree::new();
        assert!(matches!(
            t.set_policy("", "m", windowed("100", Window::None, Some("200")), 0, &l),
            Err(Error::Syntax(_))
        ));
        assert!(matches!(
            t.set_policy("", "m", windowed("100", month(1), Some("99")), 0, &l),
            Err(Error::InvalidAmount(_))
        ));
        assert!(matches!(
            t.set_policy("", "m", windowed("100", Window::Rolling { duration_ms: 60_000 }, Some("200")), 0, &l),
            Err(Error::Syntax(_))
        ));
        assert_eq!(t.policy_count(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

        /// Resets applied lazily (only when a charge comes) give the same
        /// usage, allowance and history as resets applied at every step.
        #[test]
        fn lazy_resets_equal_eager_ones(steps in proptest::collection::vec((0u64..40 * DAY_MS as u64, 0u32..50), 1..40), anchor in 28u8..=31) {
            let start = at(2027, 12, 15);
            let mut lazy = Policy::new("p", windowed("100", month(anchor), Some("250")), 1, start);
            let mut eager = lazy.clone();
            let mut now = start;
            for (advance, amount) in steps {
                now += advance;
                eager.roll(now);
                if amount > 0 {
                    lazy.roll(now);
                    lazy.add_used(Decimal::from(amount), now).unwrap();
                    eager.add_used(Decimal::from(amount), now).unwrap();
                }
                prop_assert_eq!(lazy.at(now).into_owned(), eager.clone());
            }
        }
    }
}
