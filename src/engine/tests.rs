//! Engine tests: tables of cases, then property tests over random
//! sequences of operations that check the invariants of SPEC §5.

use std::str::FromStr;

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::hold::ItemState;
use super::*;

fn d(text: &str) -> Decimal {
    Decimal::from_str(text).expect("test decimal")
}

fn costs(pairs: &[(&str, &str)]) -> Costs {
    pairs.iter().map(|(m, a)| (m.to_string(), d(a))).collect()
}

fn spec(metric: &str, limit: &str, mode: Mode) -> PolicySpec {
    PolicySpec {
        metric: metric.into(),
        limit: d(limit),
        mode,
        window: Window::None,
        warn: policy::DEFAULT_WARN.to_vec(),
        service: None,
        model: None,
    }
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
    }
}

fn charge_req(paths: &[&str], cost: &[(&str, &str)], check: bool) -> ChargeRequest {
    ChargeRequest { set: set_of(paths), id: None, check, cost: costs(cost) }
}

/// acme: / 100 credits strict, projects/p1 50 strict, members/u7 30 block.
fn company() -> Tree {
    let mut t = Tree::new();
    let l = Limits::default();
    t.set_policy("", "monthly", spec("credits", "100", Mode::Strict), &l).unwrap();
    t.set_policy("projects/p1", "cap", spec("credits", "50", Mode::Strict), &l).unwrap();
    t.set_policy("members/u7", "allowance", spec("credits", "30", Mode::Block), &l).unwrap();
    t
}

fn policy_at(t: &Tree, path: &str, name: &str) -> policy::Policy {
    let id = t.find(path).expect("path");
    t.node(id).unwrap().policies.iter().find(|p| p.name == name).expect("policy").clone()
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
        let out = t.reserve(&reserve_req(paths, &[&[("credits", amount)]]), 1000, &l).unwrap();
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
    let out = t.reserve(&reserve_req(&["projects/p1", "members/u7"], &[&[("credits", "10")]]), 0, &l).unwrap();
    let roots: Vec<_> = out.checks.iter().filter(|c| c.path == "/").collect();
    assert_eq!(roots.len(), 1);
    assert_eq!(out.checks.len(), 3);
    assert_eq!(policy_at(&t, "", "monthly").held, d("10"));
    let id = out.id.unwrap();
    let c = t.commit(&id, None, None, 1, &l).unwrap();
    assert_eq!(c.charged, costs(&[("credits", "10")]));
    assert_eq!(policy_at(&t, "", "monthly").used, d("10"));
    assert_eq!(policy_at(&t, "", "monthly").held, d("0"));
    let root = t.get("").unwrap();
    assert_eq!(root.spent, costs(&[("credits", "10")]));
    assert_eq!(t.get("projects").unwrap().spent, costs(&[("credits", "10")]));
    assert_eq!(t.get("members/u7").unwrap().spent, costs(&[("credits", "10")]));
}

#[test]
fn strict_counts_holds_block_does_not() {
    let l = Limits::default();
    let mut t = company();
    // Two holds of 20 on members/u7 (block, 30): both pass while used < 30.
    assert!(t.reserve(&reserve_req(&["members/u7"], &[&[("credits", "20")]]), 0, &l).unwrap().allowed);
    assert!(t.reserve(&reserve_req(&["members/u7"], &[&[("credits", "20")]]), 0, &l).unwrap().allowed);
    // The root (strict, 100) has 40 held: 61 more does not fit.
    let out = t.reserve(&reserve_req(&["projects/x"], &[&[("credits", "61")]]), 0, &l).unwrap();
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
        let id = t.reserve(&reserve_req(&["projects/p1"], &[&[("credits", reserved)]]), 0, &l).unwrap().id.unwrap();
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
    let id = t.reserve(&req, 10_000, &l).unwrap().id.unwrap();
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
    let id = t.reserve(&reserve_req(&["projects/p1"], &[&[("credits", "40")]]), 0, &l).unwrap().id.unwrap();
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
    let first = t.reserve(&req, 0, &l).unwrap();
    let second = t.reserve(&req, 5, &l).unwrap();
    assert!(second.duplicate);
    assert_eq!(second.id.as_deref(), Some("job-1"));
    assert_eq!(policy_at(&t, "projects/p1", "cap").held, d("20"));
    assert_eq!(ReserveOutcome { duplicate: true, ..first }, second);
    t.commit("job-1", None, None, 10, &l).unwrap();
    assert!(t.reserve(&req, 20, &l).unwrap().duplicate, "remembered after commit too");
    assert_eq!(policy_at(&t, "projects/p1", "cap").used, d("20"));
}
use super::outcome::ReserveOutcome;

#[test]
fn generated_ids_are_unique() {
    let l = Limits::default();
    let mut t = Tree::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let id = t.reserve(&reserve_req(&["a"], &[&[("credits", "1")]]), 42, &l).unwrap().id.unwrap();
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
        let out = t.charge(&charge_req(&["projects/p9"], &[("credits", cost)], check), 0, &l).unwrap();
        assert_eq!(out.allowed, allowed, "{cost} {check}");
        assert_eq!(out.charged.is_empty(), !allowed);
        assert_eq!(policy_at(&t, "", "monthly").used, d(used), "{cost} {check}");
    }
    assert_eq!(t.get("projects/p9").unwrap().spent, costs(&[("credits", "40")]));
}

#[test]
fn filters_select_policies_by_service_and_model() {
    let l = Limits::default();
    let mut t = Tree::new();
    let mut video = spec("credits", "10", Mode::Strict);
    video.service = Some("video".into());
    t.set_policy("", "video", video, &l).unwrap();
    let mut hd = spec("credits", "5", Mode::Strict);
    hd.service = Some("video".into());
    hd.model = Some("hd".into());
    t.set_policy("", "hd", hd, &l).unwrap();
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
        assert_eq!(t.reserve(&req, 0, &l).unwrap().allowed, allowed, "{service:?} {model:?} {amount}");
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
        let out = t.reserve(&req, 0, &l).unwrap();
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
    let id = t.reserve(&req, 0, &l).unwrap().id.unwrap();
    let c0 = t.commit(&id, Some(0), Some(costs(&[("credits", "8")])), 1, &l).unwrap();
    assert_eq!(c0.released, costs(&[("credits", "2")]));
    assert!(t.commit(&id, Some(0), None, 2, &l).unwrap().duplicate);
    t.release(&id, Some(1), 3, &l).unwrap();
    assert!(matches!(t.commit(&id, Some(1), None, 4, &l), Err(Error::State(_))));
    assert!(matches!(t.commit(&id, Some(3), None, 4, &l), Err(Error::Syntax(_))));
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
    t.set_policy("a", "p", spec("credits", "10", Mode::Strict), &l).unwrap();
    assert!(matches!(t.set_policy("a", "q", spec("credits", "10", Mode::Strict), &l), Err(Error::Limit(_))));
    assert!(matches!(t.set_policy("b/c", "p", spec("credits", "10", Mode::Strict), &l), Err(Error::Limit(_))));
    assert_eq!(t.path_count(), 2);
    t.reserve(&reserve_req(&["a"], &[&[("credits", "1")]]), 0, &l).unwrap();
    assert!(matches!(t.reserve(&reserve_req(&["a"], &[&[("credits", "1")]]), 0, &l), Err(Error::Limit(_))));
    let three: Vec<&[(&str, &str)]> = vec![&[("credits", "1")]; 3];
    assert!(matches!(t.reserve(&reserve_req(&["a"], &three), 0, &l), Err(Error::Limit(_))));
    assert_eq!(policy_at(&t, "a", "p").held, d("1"));
    t.check_invariants().unwrap();
}

#[test]
fn delpath_refuses_while_held_and_removes_the_subtree() {
    let l = Limits::default();
    let mut t = company();
    t.set_policy("projects/p1/users/u1", "x", spec("credits", "5", Mode::Strict), &l).unwrap();
    let id = t.reserve(&reserve_req(&["projects/p1/users/u1"], &[&[("credits", "1")]]), 0, &l).unwrap().id.unwrap();
    assert!(matches!(t.delete_path("projects/p1"), Err(Error::State(_))));
    t.release(&id, None, 1, &l).unwrap();
    assert_eq!(t.delete_path("projects/p1").unwrap(), 3);
    assert!(matches!(t.get("projects/p1/users"), Err(Error::NotFound(_))));
    assert!(t.get("projects").is_ok());
    assert!(matches!(t.delete_path(""), Err(Error::State(_))));
    // A path created again starts fresh, reusing the freed slots.
    t.set_policy("projects/p1", "cap", spec("credits", "50", Mode::Strict), &l).unwrap();
    assert_eq!(policy_at(&t, "projects/p1", "cap").used, d("0"));
    t.check_invariants().unwrap();
}

#[test]
fn set_updates_keep_usage_and_unset_forgets_holds() {
    let l = Limits::default();
    let mut t = company();
    t.charge(&charge_req(&["projects/p1"], &[("credits", "10")], false), 0, &l).unwrap();
    let id = t.reserve(&reserve_req(&["projects/p1"], &[&[("credits", "5")]]), 0, &l).unwrap().id.unwrap();
    t.set_policy("projects/p1", "cap", spec("credits", "70", Mode::Block), &l).unwrap();
    let p = policy_at(&t, "projects/p1", "cap");
    assert_eq!((p.used, p.held, p.spec.limit), (d("10"), d("5"), d("70")));
    t.unset_policy("projects/p1", "cap").unwrap();
    t.set_policy("projects/p1", "cap", spec("credits", "70", Mode::Strict), &l).unwrap();
    t.release(&id, None, 1, &l).unwrap();
    assert_eq!(policy_at(&t, "projects/p1", "cap").held, d("0"), "a new policy ignores its predecessor's holds");
    assert!(matches!(t.unset_policy("projects/p1", "nope"), Err(Error::NotFound(_))));
    t.check_invariants().unwrap();
}

#[test]
fn tree_views_show_status_and_depth() {
    let l = Limits::default();
    let mut t = company();
    t.charge(&charge_req(&["projects/p1"], &[("credits", "45")], false), 0, &l).unwrap();
    let view = t.tree_view("", 1).unwrap();
    assert_eq!(view.path, "/");
    assert_eq!(view.children.iter().map(|c| c.path.as_str()).collect::<Vec<_>>(), vec!["members", "projects"]);
    assert!(view.children.iter().all(|c| c.children.is_empty()));
    let p1 = t.get("projects/p1").unwrap();
    assert_eq!(p1.status, Status::Critical);
    assert_eq!(t.get("members").unwrap().status, Status::None);
    assert_eq!(t.get("").unwrap().status, Status::Healthy);
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
    t.set_policy("", "root", spec("credits", "300", Mode::Strict), &l).unwrap();
    t.set_policy("a", "a", spec("credits", "150", Mode::Strict), &l).unwrap();
    t.set_policy("a/b", "ab", spec("credits", "100", Mode::Block), &l).unwrap();
    t.set_policy("a/b/c", "abc", spec("credits", "60", Mode::Strict), &l).unwrap();
    t.set_policy("d", "d", spec("credits", "80", Mode::Open), &l).unwrap();
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
        // Overage a strict policy may legitimately exceed its allowance by:
        // commits larger than their holds, and unchecked charges.
        let mut slack = Decimal::ZERO;
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
                    let req = ReserveRequest { set: set_of(&paths), id: None, ttl_ms: ttl, batch: if upto { BatchMode::Upto } else { BatchMode::All }, items };
                    let out = t.reserve(&req, now, &l).unwrap();
                    if let Some(id) = out.id { ids.push(id); }
                }
                Op::Commit { hold, actual, item } => {
                    let Some(id) = ids.get(hold % ids.len().max(1)).cloned() else { continue };
                    let live = t.holds.get(&id).cloned();
                    let actual_costs = actual.map(|a| vec![("credits".to_string(), Decimal::from(a))]);
                    match t.commit(&id, item, actual_costs, now, &l) {
                        Ok(c) if !c.duplicate => {
                            let charged = costs_get_(&c.charged);
                            if let Some(h) = live {
                                let reserved: Decimal = h.items.iter().enumerate()
                                    .filter(|(i, it)| it.state == ItemState::Held && item.is_none_or(|x| x == *i))
                                    .map(|(_, it)| costs_get_(&it.cost)).sum();
                                slack += (charged - reserved).max(Decimal::ZERO);
                            } else {
                                slack += charged;
                            }
                            let paths: Vec<&str> = t.done.get(&id).and_then(|d| d.hold.as_ref()).or(t.holds.get(&id))
                                .map(|h| h.set.paths.iter().map(|p| PATHS.iter().copied().find(|q| q == p).unwrap_or("")).collect())
                                .unwrap_or_default();
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
                    let out = t.charge(&ChargeRequest { set: set_of(&[PATHS[path]]), id: None, check, cost: vec![("credits".into(), amount)] }, now, &l).unwrap();
                    if out.allowed {
                        if !check && amount > Decimal::ZERO { slack += amount; }
                        record(&[PATHS[path]], amount, &mut spent);
                    }
                }
                Op::Advance { ms } => now += ms,
            }
            prop_assert_eq!(t.check_invariants(), Ok(()));
            for (path, name) in [("", "root"), ("a", "a"), ("a/b/c", "abc")] {
                let p = policy_at(&t, path, name);
                prop_assert!(p.used + p.held <= p.spec.limit + slack, "{}#{}: {} + {} > {} + {}", path, name, p.used, p.held, p.spec.limit, slack);
            }
            for (path, want) in &spent {
                if let Ok(view) = t.get(path) {
                    prop_assert_eq!(costs_get_(&view.spent), *want, "spent at {:?}", path);
                }
            }
        }
    }
}

fn costs_get_(c: &Costs) -> Decimal {
    outcome::costs_get(c, "credits")
}
