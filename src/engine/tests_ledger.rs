//! The ledger (SPEC §9): which commands collect an entry, with which
//! fields in which order, and that nothing is collected with the ledger
//! off (a replay) or for denials, duplicates, refused CHECK charges,
//! errors and releases that give nothing back.

use super::ledger::{LedgerEntry, ledger_key};
use super::tests_support::{d, spec};
use super::*;

fn set(paths: &[&str], service: Option<&str>, model: Option<&str>) -> ChargeSet {
    ChargeSet {
        paths: paths.iter().map(|p| p.to_string()).collect(),
        service: service.map(str::to_string),
        model: model.map(str::to_string),
    }
}

fn reserve(id: &str, paths: &[&str], items: &[&str], ttl_ms: u64) -> ReserveRequest {
    ReserveRequest {
        set: set(paths, Some("chat"), Some("mini")),
        id: Some(id.into()),
        ttl_ms,
        batch: BatchMode::All,
        items: items.iter().map(|a| vec![("credits".to_string(), d(a))]).collect(),
        brief: true,
        meta: Some(Box::new(vec![("user".into(), "bob".into()), ("job".into(), "7".into())])),
    }
}

fn charge(id: Option<&str>, amount: &str, check: bool) -> ChargeRequest {
    ChargeRequest {
        set: set(&["p3"], None, None),
        id: id.map(str::to_string),
        check,
        cost: vec![("tokens".into(), d("5")), ("credits".into(), d(amount))],
        brief: true,
        meta: None,
    }
}

fn text(entries: &[LedgerEntry]) -> Vec<String> {
    entries.iter().map(|e| e.fields().iter().map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(" ")).collect()
}

#[test]
fn each_money_moving_command_collects_one_entry_with_its_fields_in_order() {
    let l = Limits { ledger: true, ..Limits::default() };
    let mut t = Tree::new();
    t.set_policy("", "m", spec("credits", "100"), 0, &l).unwrap();
    // (what runs, the entries it collects)
    type Step = Box<dyn Fn(&mut Tree)>;
    let steps: Vec<(Step, Vec<&str>)> = vec![
        (Box::new(move |t| drop(t.reserve(reserve("r1", &["p1", "p2"], &["3"], 1000), 0, &l).unwrap())), vec![]),
        (
            Box::new(move |t| {
                let _ = t.commit("r1", None, Some(vec![("credits".into(), d("2"))]), 1, &l).unwrap();
            }),
            vec![
                "type=commit time=1 id=r1 paths=p1,p2 service=chat model=mini amount:credits=2 meta:user=bob meta:job=7",
            ],
        ),
        (Box::new(move |t| drop(t.commit("r1", None, None, 2, &l).unwrap())), vec![]),
        (Box::new(move |t| drop(t.reserve(reserve("r2", &["p1"], &["2", "4"], 1000), 3, &l).unwrap())), vec![]),
        (
            Box::new(move |t| {
                let _ = t.release("r2", Some(1), 4, &l).unwrap();
            }),
            vec![
                "type=release time=4 id=r2 paths=p1 service=chat model=mini item=1 amount:credits=4 meta:user=bob meta:job=7",
            ],
        ),
        (Box::new(move |t| drop(t.release("r2", Some(1), 5, &l).unwrap())), vec![]),
        (
            Box::new(move |t| {
                t.expire(2000, &l);
            }),
            vec![
                "type=expire time=1003 id=r2 paths=p1 service=chat model=mini amount:credits=2 meta:user=bob meta:job=7",
            ],
        ),
        (
            Box::new(move |t| {
                let _ = t.commit("r2", Some(0), Some(vec![("credits".into(), d("0"))]), 2002, &l).unwrap();
            }),
            vec![
                "type=commit time=2002 id=r2 paths=p1 service=chat model=mini item=0 amount:credits=0 late=1 meta:user=bob meta:job=7",
            ],
        ),
        (
            Box::new(move |t| {
                t.reserve(reserve("r3", &["p1"], &["1"], 10), 2002, &l).unwrap();
                t.expire(2100, &l);
            }),
            vec![
                "type=expire time=2012 id=r3 paths=p1 service=chat model=mini amount:credits=1 meta:user=bob meta:job=7",
            ],
        ),
        (Box::new(move |t| drop(t.release("r3", None, 2101, &l).unwrap())), vec![]),
        (
            Box::new(move |t| {
                let _ = t.charge(charge(Some("c1"), "1.50", false), 2003, &l).unwrap();
            }),
            vec!["type=charge time=2003 id=c1 paths=p3 amount:credits=1.5 amount:tokens=5"],
        ),
        (Box::new(move |t| drop(t.charge(charge(Some("c1"), "1.50", false), 2004, &l).unwrap())), vec![]),
        (Box::new(move |t| drop(t.charge(charge(None, "500", true), 2005, &l).unwrap())), vec![]),
        (
            Box::new(move |t| {
                let g = policy::GrantRequest {
                    id: Some("g1".into()),
                    amount: d("10"),
                    expiry: policy::GrantExpiry::Never,
                    priority: policy::DEFAULT_PRIORITY,
                    note: None,
                };
                t.grant("", "m", &g, 2006, &l).unwrap();
                assert!(t.grant("", "m", &g, 2007, &l).unwrap().duplicate);
            }),
            vec!["type=grant time=2006 id=g1 paths=/ policy=m amount:credits=10"],
        ),
        (
            Box::new(move |t| {
                t.revoke("", "m", "g1", 2008, &l).unwrap();
            }),
            vec!["type=revoke time=2008 id=g1 paths=/ policy=m amount:credits=10"],
        ),
        // A repeated revoke (the grant already ended: removed 0) writes nothing.
        (
            Box::new(move |t| {
                assert!(t.revoke("", "m", "g1", 2008, &l).unwrap().is_zero());
            }),
            vec![],
        ),
        (
            Box::new(move |t| {
                let _ = t.reset_policy("", "m", 2009, &l).unwrap();
            }),
            vec!["type=reset time=2009 paths=/ policy=m amount:credits=3.5"],
        ),
        (Box::new(move |t| drop(t.get("", 2010).unwrap())), vec![]),
    ];
    for (i, (step, want)) in steps.iter().enumerate() {
        step(&mut t);
        assert_eq!(text(&t.take_ledger()), *want, "step {i}");
    }
}

#[test]
fn denials_refusals_and_a_ledger_off_collect_nothing() {
    let on = Limits { ledger: true, ..Limits::default() };
    let off = Limits::default();
    assert!(!off.ledger);
    let mut t = Tree::new();
    t.set_policy("", "m", spec("credits", "1"), 0, &on).unwrap();
    // A denial, a dry run, an archived refusal, a disallowed charge with CHECK.
    assert!(!t.reserve(reserve("r1", &["p1"], &["5"], 1000), 0, &on).unwrap().allowed);
    let mut dry = reserve("r2", &["p1"], &["1"], 1000);
    dry.batch = BatchMode::DryRun;
    t.reserve(dry, 0, &on).unwrap();
    t.set_archived("", true).unwrap();
    assert!(!t.charge(charge(None, "1", false), 0, &on).unwrap().allowed);
    t.set_archived("", false).unwrap();
    t.add_rule("", access::Rule::Allow, access::Entry { service: "x".into(), model: None }, 0, &on).unwrap();
    assert!(!t.charge(charge(None, "1", true), 0, &on).unwrap().allowed);
    assert!(t.take_ledger().is_empty());
    // Without CHECK it is recorded, and says so.
    t.charge(charge(None, "1", false), 0, &on).unwrap();
    assert_eq!(text(&t.take_ledger()), ["type=charge time=0 paths=p3 amount:credits=1 amount:tokens=5 disallowed=1"]);
    // The same work with the ledger off (a replay) collects nothing.
    t.charge(charge(None, "1", false), 0, &off).unwrap();
    t.reserve(reserve("r3", &["p1"], &["0"], 10), 0, &off).unwrap();
    t.expire(100, &off);
    assert!(t.take_ledger().is_empty());
}

#[test]
fn the_ledger_key_keeps_the_trees_slot() {
    let rows: &[(&str, &str)] = &[
        ("acme", "{acme}:ledger"),
        ("{t1}acme", "{t1}acme:ledger"),
        ("a{t1}b", "a{t1}b:ledger"),
        ("{}acme", "{{}acme}:ledger"),
        ("a}b", "{a}b}:ledger"),
        ("a{b", "{a{b}:ledger"),
        ("", "{}:ledger"),
    ];
    for (key, want) in rows {
        assert_eq!(String::from_utf8(ledger_key(key.as_bytes())).unwrap(), *want, "{key}");
    }
}

/// A late commit's entry carries the hold's META: the finished id of an
/// expired hold keeps it (in memory and through a save and load); a
/// hold settled without expiring keeps none.
#[test]
fn a_late_commit_carries_the_expired_holds_meta() {
    let l = Limits { ledger: true, ..Limits::default() };
    let mut t = Tree::new();
    t.set_policy("", "m", spec("credits", "100"), 0, &l).unwrap();
    t.reserve(reserve("h5", &["p"], &["6", "1"], 1000), 0, &l).unwrap();
    t.reserve(reserve("h6", &["p"], &["2"], 1000), 0, &l).unwrap();
    t.commit("h6", None, None, 1, &l).unwrap();
    t.expire(5000, &l);
    t.take_ledger();
    assert!(t.done_entry("h5").unwrap().hold.unwrap().meta.is_some());
    assert!(t.done_entry("h6").unwrap().hold.unwrap().meta.is_none());
    let mut t = persist::decode(&persist::encode(&t), persist::ENCODING_VERSION).unwrap();
    let late = t.commit("h5", Some(0), Some(vec![("credits".into(), d("6"))]), 5000, &l).unwrap();
    assert!(late.expired && !late.duplicate);
    let late = t.commit("h5", Some(1), None, 5001, &l).unwrap();
    assert!(late.expired);
    assert_eq!(
        text(&t.take_ledger()),
        [
            "type=commit time=5000 id=h5 paths=p service=chat model=mini item=0 amount:credits=6 late=1 meta:user=bob meta:job=7",
            "type=commit time=5001 id=h5 paths=p service=chat model=mini item=1 amount:credits=1 late=1 meta:user=bob meta:job=7",
        ]
    );
    // A repeat writes nothing, and the tree still saves and loads.
    t.commit("h5", Some(0), None, 5002, &l).unwrap();
    assert!(t.take_ledger().is_empty());
    persist::decode(&persist::encode(&t), persist::ENCODING_VERSION).unwrap().check_invariants().unwrap();
}
