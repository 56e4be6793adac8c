//! Usage over time (SPEC §9, `usage.rs`): what is recorded, retention,
//! series slots, `QUOTA.USAGE`'s spans, filters and groups, persistence.

use rust_decimal::Decimal;

use crate::access::{Entry, Rule};
use crate::outcome::Costs;
use crate::tests_support::d;
use crate::usage::{By, Group, UsageQuery, UsageReport};
use crate::{BatchMode, Error};
use crate::{ChargeRequest, ChargeSet, Limits, ReserveRequest, Tree, persist};

/// 2026-01-15 00:00 UTC: the start of a day (and of an hour).
const T0: u64 = 1_768_435_200_000;
const H: u64 = 3_600_000;
const DAY: u64 = 86_400_000;

fn limits(hours: u32, days: u32, series: u32) -> Limits {
    Limits { usage_hours: hours, usage_days: days, usage_series: series, ..Limits::default() }
}

fn set(paths: &[&str], service: Option<&str>, model: Option<&str>) -> ChargeSet {
    ChargeSet {
        paths: paths.iter().map(|p| p.to_string()).collect(),
        service: service.map(Into::into),
        model: model.map(Into::into),
    }
}

fn costs(pairs: &[(&str, &str)]) -> Costs {
    pairs.iter().map(|(m, a)| (m.to_string(), d(a))).collect()
}

fn charge(t: &mut Tree, path: &str, series: (Option<&str>, Option<&str>), cost: &[(&str, &str)], now: u64, l: &Limits) {
    let req = ChargeRequest {
        set: set(&[path], series.0, series.1),
        id: None,
        check: false,
        cost: costs(cost),
        brief: true,
        meta: Default::default(),
    };
    t.charge(req, now, l).unwrap();
}

fn reserve(t: &mut Tree, id: &str, path: &str, service: Option<&str>, cost: &[(&str, &str)], now: u64, l: &Limits) {
    let req = ReserveRequest {
        set: set(&[path], service, None),
        id: Some(id.into()),
        ttl_ms: 60_000,
        batch: BatchMode::All,
        items: vec![costs(cost)],
        brief: true,
        meta: Default::default(),
    };
    assert!(t.reserve(req, now, l).unwrap().allowed);
}

fn query(by: By) -> UsageQuery {
    UsageQuery { by, ..UsageQuery::default() }
}

fn report(t: &Tree, path: &str, q: &UsageQuery, now: u64, l: &Limits) -> UsageReport {
    t.usage(path, q, now, l).unwrap()
}

/// The buckets that spent something, as (start, costs text).
fn spent_buckets(r: &UsageReport) -> Vec<(u64, String)> {
    r.buckets.iter().filter(|(_, c)| !c.is_empty()).map(|(s, c)| (*s, text(c))).collect()
}

fn text(c: &Costs) -> String {
    c.iter().map(|(m, a)| format!("{m}={}", crate::amount::format(*a))).collect::<Vec<_>>().join(",")
}

fn groups(r: &UsageReport) -> Vec<(String, String)> {
    r.groups.as_ref().unwrap().iter().map(|g| (g.name.clone(), text(&g.spent))).collect()
}

#[test]
fn every_change_of_spent_is_recorded_in_the_hour_and_day_of_the_write_and_nothing_else() {
    let l = limits(48, 90, 32);
    let mut t = Tree::new();
    t.set_policy("a", "cap", crate::tests_support::spec("credits", "100"), T0, &l).unwrap();
    // A charge, a reserve then commit (in the next hour), a reserve then
    // release, a reserve that expires, a late commit, a negative charge,
    // a disallowed charge.
    charge(&mut t, "a/b", (Some("chat"), Some("m1")), &[("credits", "5")], T0 + 10, &l);
    reserve(&mut t, "r1", "a/b", Some("chat"), &[("credits", "3")], T0 + H, &l);
    t.commit("r1", None, Some(costs(&[("credits", "2.5")])), T0 + H + 1, &l).unwrap();
    reserve(&mut t, "r2", "a/b", None, &[("credits", "7")], T0 + H + 2, &l);
    t.release("r2", None, T0 + H + 3, &l).unwrap();
    reserve(&mut t, "r3", "a/b", None, &[("credits", "4")], T0 + H + 4, &l);
    t.expire(T0 + 2 * H, &l);
    t.commit("r3", None, None, T0 + 2 * H + 5, &l).unwrap();
    charge(&mut t, "a", (None, None), &[("credits", "-1")], T0 + 2 * H + 6, &l);
    t.add_rule("a", Rule::Deny, Entry { service: "img".into(), model: None }, T0, &l).unwrap();
    charge(&mut t, "a/b", (Some("img"), None), &[("credits", "1")], T0 + 2 * H + 7, &l);

    let now = T0 + 3 * H;
    let r = report(&t, "a/b", &query(By::Hour), now, &l);
    // Columns: bucket start, what it spent.
    let expected = [(T0, "credits=5"), (T0 + H, "credits=2.5"), (T0 + 2 * H, "credits=5")];
    let expected: Vec<(u64, String)> = expected.iter().map(|(s, c)| (*s, c.to_string())).collect();
    assert_eq!(spent_buckets(&r), expected);
    assert_eq!(text(&r.total), "credits=12.5");
    // The sum of a node's buckets is its spent.
    assert_eq!(t.get("a/b", now).unwrap().spent, costs(&[("credits", "12.5")]));
    let a = report(&t, "a", &query(By::Day), now, &l);
    assert_eq!(spent_buckets(&a), vec![(T0, "credits=11.5".to_string())]);
    assert_eq!(t.get("a", now).unwrap().spent, costs(&[("credits", "11.5")]));
    // The root counted each change once.
    assert_eq!(text(&report(&t, "", &query(By::Day), now, &l).total), "credits=11.5");
    // Series: (no service) for the late commit and the negative charge.
    let q = UsageQuery { group: Some(Group::Model), ..query(By::Day) };
    assert_eq!(
        groups(&report(&t, "a", &q, now, &l)),
        [("chat/m1", "credits=5"), ("(no service)", "credits=3"), ("chat", "credits=2.5"), ("img", "credits=1")]
            .map(|(n, c)| (n.to_string(), c.to_string()))
    );
}

#[test]
fn a_negative_charge_keeps_the_clamped_delta_and_a_net_zero_is_left_out() {
    let l = limits(48, 90, 32);
    let mut t = Tree::new();
    // Columns: charges in order (at T0), expected bucket, expected spent.
    let cases: [(&[&str], &str, &str); 4] = [
        (&["5", "-8"], "", "0"),
        (&["5", "-2"], "credits=3", "3"),
        (&["-3"], "", "0"),
        (&["2", "-3", "4"], "credits=4", "4"),
    ];
    for (i, (amounts, bucket, spent)) in cases.iter().enumerate() {
        let path = format!("n{i}");
        for a in *amounts {
            charge(&mut t, &path, (None, None), &[("credits", a)], T0, &l);
        }
        let r = report(&t, &path, &query(By::Hour), T0, &l);
        assert_eq!(text(&r.buckets.last().unwrap().1), *bucket, "case {i}");
        assert_eq!(text(&r.total), *bucket, "case {i}");
        let node = t.get(&path, T0).unwrap();
        assert_eq!(node.spent.first().map_or(Decimal::ZERO, |(_, a)| *a), d(spent), "case {i}");
    }
}

#[test]
fn retention_keeps_the_last_n_buckets_and_reads_filter_by_it() {
    // Columns: hours, days, write time, read time, BY, listed buckets,
    // whether the write is among them.
    let cases: [(u32, u32, u64, u64, By, usize, bool); 10] = [
        (3, 2, T0, T0, By::Hour, 3, true),
        (3, 2, T0, T0 + 2 * H, By::Hour, 3, true),
        (3, 2, T0, T0 + 3 * H - 1, By::Hour, 3, true),
        (3, 2, T0, T0 + 3 * H, By::Hour, 3, false),
        (3, 2, T0, T0 + 2 * DAY - 1, By::Day, 2, true),
        (3, 2, T0, T0 + 2 * DAY, By::Day, 2, false),
        (0, 2, T0, T0, By::Hour, 0, false),
        (3, 0, T0, T0, By::Day, 0, false),
        (1, 1, T0 + H - 1, T0 + H - 1, By::Hour, 1, true),
        (1, 1, T0 + H - 1, T0 + H, By::Hour, 1, false),
    ];
    for (i, &(hours, days, write, read, by, listed, found)) in cases.iter().enumerate() {
        let l = limits(hours, days, 32);
        let mut t = Tree::new();
        charge(&mut t, "a", (None, None), &[("credits", "1")], write, &l);
        let r = report(&t, "a", &query(by), read, &l);
        assert_eq!(r.buckets.len(), listed, "case {i}");
        assert_eq!(!r.total.is_empty(), found, "case {i}");
        // Reads are the same whether a write trimmed or not: a later write
        // elsewhere in the tree changes nothing here.
        charge(&mut t, "b", (None, None), &[("credits", "1")], read, &l);
        assert_eq!(report(&t, "a", &query(by), read, &l), r, "case {i}");
        // Listed buckets are consecutive and end with the current one.
        if let Some((last, _)) = r.buckets.last() {
            assert_eq!(*last, read / by.ms() * by.ms(), "case {i}");
        }
    }
    // Both off: no usage state at all.
    let l = limits(0, 0, 32);
    let mut t = Tree::new();
    charge(&mut t, "a", (None, None), &[("credits", "1")], T0, &l);
    assert!(t.nodes.iter().flatten().all(|n| n.usage.is_none()));
}

#[test]
fn a_write_trims_old_buckets() {
    let l = limits(2, 1, 32);
    let mut t = Tree::new();
    for h in 0..10 {
        charge(&mut t, "a", (Some("s"), None), &[("credits", "1")], T0 + h * H, &l);
    }
    let node = t.find("a").and_then(|id| t.node(id)).unwrap();
    let usage = node.usage.as_deref().unwrap();
    assert_eq!(usage.hours.len(), 2);
    assert_eq!(usage.days.len(), 1);
    assert_eq!(usage.days[0].amount, d("10"));
}

#[test]
fn since_and_until_choose_the_span() {
    let l = limits(48, 90, 32);
    let mut t = Tree::new();
    for h in 0..5 {
        charge(&mut t, "a", (None, None), &[("credits", "1")], T0 + h * H + 5, &l);
    }
    let now = T0 + 4 * H + 10;
    // Columns: SINCE, UNTIL, the reply's since, its until, listed buckets,
    // total spent.
    type Case = (Option<u64>, Option<u64>, u64, u64, usize, &'static str);
    let cases: [Case; 7] = [
        (None, None, T0 + 4 * H - 47 * H, now, 48, "credits=5"),
        (Some(T0 + H + 7), None, T0 + H, now, 4, "credits=4"),
        (Some(T0 + H), Some(T0 + 2 * H), T0 + H, T0 + 2 * H, 2, "credits=2"),
        (Some(T0 + H), Some(T0 + 2 * H - 1), T0 + H, T0 + 2 * H - 1, 1, "credits=1"),
        (None, Some(T0 + 10 * DAY), T0 + 4 * H - 47 * H, T0 + 10 * DAY, 48, "credits=5"),
        // UNTIL before retention: no buckets, not an error.
        (None, Some(T0 - 3 * DAY), T0 + 4 * H - 47 * H, T0 - 3 * DAY, 0, ""),
        (Some(0), Some(1), T0 + 4 * H - 47 * H, 1, 0, ""),
    ];
    for (i, &(since, until, r_since, r_until, listed, total)) in cases.iter().enumerate() {
        let q = UsageQuery { since_ms: since, until_ms: until, ..query(By::Hour) };
        let r = report(&t, "a", &q, now, &l);
        assert_eq!(
            (r.since_ms, r.until_ms, r.buckets.len(), text(&r.total)),
            (r_since, r_until, listed, total.into()),
            "case {i}"
        );
    }
    let q = UsageQuery { since_ms: Some(5), until_ms: Some(4), ..query(By::Hour) };
    assert_eq!(t.usage("a", &q, now, &l), Err(Error::syntax("SINCE is after UNTIL")));
    // SINCE after now, UNTIL defaulted to now: likewise.
    let q = UsageQuery { since_ms: Some(now + 1), ..query(By::Hour) };
    assert!(t.usage("a", &q, now, &l).is_err());
    assert!(matches!(t.usage("zz", &query(By::Day), now, &l), Err(Error::NotFound(_))));
    // A missing key reads as an empty tree: the root, every bucket empty.
    let empty = report(&Tree::new(), "", &query(By::Day), now, &l);
    assert_eq!((empty.buckets.len(), empty.total.len(), empty.path.as_str()), (90, 0, "/"));
}

#[test]
fn series_beyond_the_bound_go_to_other_series_until_a_slot_is_freed() {
    // Two slots; hourly buckets only, kept 2 hours.
    let l = limits(2, 0, 2);
    let mut t = Tree::new();
    let c = |t: &mut Tree, s: Option<&str>, now| charge(t, "a", (s, None), &[("credits", "1")], now, &l);
    c(&mut t, Some("s1"), T0);
    c(&mut t, None, T0); // (no service) takes no slot
    c(&mut t, Some("s2"), T0 + H);
    c(&mut t, Some("s3"), T0 + H); // both slots in use
    c(&mut t, Some("s1"), T0 + H + 1); // s1 keeps its slot
    let q = UsageQuery { group: Some(Group::Service), ..query(By::Hour) };
    let now = T0 + H + 2;
    let expect = |pairs: &[(&str, &str)]| pairs.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect::<Vec<_>>();
    assert_eq!(
        groups(&report(&t, "a", &q, now, &l)),
        expect(&[
            ("s1", "credits=2"),
            ("(no service)", "credits=1"),
            ("(other series)", "credits=1"),
            ("s2", "credits=1")
        ])
    );
    // At T0 + 3h the horizon is T0 + 2h: s1 (last written T0 + 1h) and s2
    // (T0 + 1h) are free again, so s3 now gets a slot.
    c(&mut t, Some("s3"), T0 + 3 * H);
    c(&mut t, Some("s4"), T0 + 3 * H);
    c(&mut t, Some("s5"), T0 + 3 * H);
    assert_eq!(
        groups(&report(&t, "a", &q, T0 + 3 * H, &l)),
        expect(&[("(other series)", "credits=1"), ("s3", "credits=1"), ("s4", "credits=1")])
    );
    // A slot last written inside the horizon stays taken.
    c(&mut t, Some("s6"), T0 + 4 * H);
    assert_eq!(groups(&report(&t, "a", &q, T0 + 4 * H, &l)).len(), 3);
}

/// Series whose `service/model` names print alike (`a` + `b/c`, `a/b` +
/// `c`, `a/b/c`) stay apart under `GROUP model`, each naming its service
/// and model; ties by name, then service, then model (none first).
#[test]
fn groups_whose_names_print_alike_stay_apart() {
    let l = limits(48, 90, 32);
    let mut t = Tree::new();
    charge(&mut t, "a", (Some("a"), Some("b/c")), &[("credits", "2")], T0, &l);
    charge(&mut t, "a", (Some("a/b"), Some("c")), &[("credits", "2")], T0, &l);
    charge(&mut t, "a", (Some("a/b/c"), None), &[("credits", "2")], T0, &l);
    charge(&mut t, "a", (Some("a/b"), None), &[("credits", "8")], T0, &l);
    charge(&mut t, "a", (None, None), &[("credits", "3")], T0, &l);
    let read = |group| {
        let r = report(&t, "a", &UsageQuery { group: Some(group), ..query(By::Day) }, T0, &l);
        r.groups
            .unwrap()
            .into_iter()
            .map(|g| format!("{} {:?} {:?} {}", g.name, g.service, g.model, text(&g.spent)))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        read(Group::Model),
        [
            r#"a/b Some("a/b") None credits=8"#,
            "(no service) None None credits=3",
            r#"a/b/c Some("a") Some("b/c") credits=2"#,
            r#"a/b/c Some("a/b") Some("c") credits=2"#,
            r#"a/b/c Some("a/b/c") None credits=2"#,
        ]
    );
    assert_eq!(
        read(Group::Service),
        [
            r#"a/b Some("a/b") None credits=10"#,
            "(no service) None None credits=3",
            r#"a Some("a") None credits=2"#,
            r#"a/b/c Some("a/b/c") None credits=2"#,
        ]
    );
}

#[test]
fn filters_and_groups_of_a_read() {
    let l = limits(48, 90, 32);
    let mut t = Tree::new();
    charge(&mut t, "p/x", (Some("chat"), Some("m1")), &[("credits", "5"), ("tokens", "100")], T0, &l);
    charge(&mut t, "p/x", (Some("chat"), None), &[("credits", "2")], T0, &l);
    charge(&mut t, "p/y", (Some("img"), Some("m1")), &[("credits", "7")], T0, &l);
    charge(&mut t, "p", (None, None), &[("credits", "1"), ("tokens", "3")], T0, &l);
    charge(&mut t, "p/z", (Some("chat"), Some("m2")), &[("credits", "2")], T0, &l);
    let q = |metric: Option<&str>, service: Option<&str>, model: Option<&str>, group: Option<Group>| UsageQuery {
        metric: metric.map(Into::into),
        service: service.map(Into::into),
        model: model.map(Into::into),
        group,
        ..query(By::Day)
    };
    // Columns: query, total, groups (name: spent).
    type Case = (UsageQuery, &'static str, Vec<(&'static str, &'static str)>);
    let cases: Vec<Case> = vec![
        (q(None, None, None, None), "credits=17,tokens=103", vec![]),
        (q(Some("tokens"), None, None, None), "tokens=103", vec![]),
        (q(None, Some("chat"), None, None), "credits=9,tokens=100", vec![]),
        (q(None, Some("chat"), Some("m1"), None), "credits=5,tokens=100", vec![]),
        (q(None, Some("none"), None, None), "", vec![]),
        (
            q(None, None, None, Some(Group::Service)),
            "credits=17,tokens=103",
            vec![("chat", "credits=9,tokens=100"), ("img", "credits=7"), ("(no service)", "credits=1,tokens=3")],
        ),
        // Largest by METRIC's amount; ties by name.
        (
            q(Some("credits"), None, None, Some(Group::Model)),
            "credits=17",
            vec![
                ("img/m1", "credits=7"),
                ("chat/m1", "credits=5"),
                ("chat", "credits=2"),
                ("chat/m2", "credits=2"),
                ("(no service)", "credits=1"),
            ],
        ),
        // The node's own charges are not a group.
        (
            q(None, None, None, Some(Group::Child)),
            "credits=17,tokens=103",
            vec![("p/x", "credits=7,tokens=100"), ("p/y", "credits=7"), ("p/z", "credits=2")],
        ),
        (q(Some("tokens"), None, None, Some(Group::Child)), "tokens=103", vec![("p/x", "tokens=100")]),
        (q(None, None, None, Some(Group::Tag)), "credits=17,tokens=103", vec![]),
    ];
    for (i, (query, total, expected)) in cases.iter().enumerate() {
        let r = report(&t, "p", query, T0, &l);
        assert_eq!(text(&r.total), *total, "case {i}");
        assert_eq!(r.groups.is_some(), query.group.is_some(), "case {i}");
        if query.group.is_some() {
            let expected: Vec<(String, String)> =
                expected.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect();
            assert_eq!(groups(&r), expected, "case {i}");
        }
    }
}

#[test]
fn usage_survives_encode_and_decode_and_corrupt_usage_is_an_error() {
    let l = limits(48, 90, 2);
    let mut t = Tree::new();
    for (i, s) in [Some("a"), Some("b"), Some("c"), None].iter().enumerate() {
        charge(&mut t, "x/y", (*s, s.map(|_| "m")), &[("credits", "1.5"), ("tokens", "2")], T0 + i as u64 * H, &l);
    }
    charge(&mut t, "x/y", (None, None), &[("tokens", "-1")], T0 + 3 * H, &l);
    let bytes = persist::encode(&t);
    let back = persist::decode(&bytes, persist::ENCODING_VERSION).unwrap();
    assert_eq!(persist::encode(&back), bytes);
    let q = UsageQuery { group: Some(Group::Model), ..query(By::Hour) };
    assert_eq!(report(&back, "x", &q, T0 + 4 * H, &l), report(&t, "x", &q, T0 + 4 * H, &l));
    assert!(t.estimated_bytes() > Tree::new().estimated_bytes() + 2 * 8 * 24);
    // Each change no write could make is refused.
    type Change = fn(&mut crate::usage::Usage);
    let changes: [Change; 8] = [
        |u| u.hours.reverse(),
        |u| u.hours[0].metric = 9,
        |u| u.hours[0].series = 7,
        |u| u.hours[0].amount = d("1000000000000000001"),
        |u| u.metrics[1] = u.metrics[0].clone(),
        |u| u.metrics[0] = "BAD".into(),
        |u| u.series[1] = u.series[0].clone(),
        |u| u.days.push(u.days[0]),
    ];
    for (i, change) in changes.iter().enumerate() {
        let mut bad = t.clone();
        for node in bad.nodes.iter_mut().flatten() {
            if let Some(u) = node.usage.as_mut() {
                change(u);
            }
        }
        assert!(persist::decode(&persist::encode(&bad), persist::ENCODING_VERSION).is_err(), "change {i}");
    }
    // Corrupt bytes are errors or valid trees, never panics.
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0x5A;
        if let Ok(t) = persist::decode(&b, persist::ENCODING_VERSION) {
            t.check_invariants().unwrap();
        }
        assert!(persist::decode(&bytes[..i], persist::ENCODING_VERSION).is_err());
    }
    // A labels part (not read by this module yet) is refused.
    let mut labelled = bytes.clone();
    *labelled.last_mut().unwrap() = 1;
    assert!(persist::decode(&labelled, persist::ENCODING_VERSION).is_err());
}

#[test]
fn group_tag_counts_the_topmost_nodes_carrying_each_tag() {
    let l = limits(48, 90, 32);
    let mut t = Tree::new();
    // Columns: path, tags.
    let tags: [(&str, &[&str]); 5] =
        [("p", &["team"]), ("p/a", &["gpu", "team"]), ("p/a/x", &["gpu"]), ("p/b", &["batch"]), ("q", &["gpu"])];
    for (path, tags) in tags {
        t.label(path, None, Some(tags.iter().map(|s| s.to_string()).collect()), T0, &l).unwrap();
    }
    charge(&mut t, "p/a/x", (None, None), &[("credits", "4")], T0, &l);
    charge(&mut t, "p/a", (None, None), &[("credits", "1")], T0, &l);
    charge(&mut t, "p/b", (None, None), &[("credits", "2")], T0, &l);
    charge(&mut t, "p/c", (None, None), &[("credits", "8")], T0, &l);
    charge(&mut t, "q", (None, None), &[("credits", "100")], T0, &l);
    let q = UsageQuery { group: Some(Group::Tag), ..query(By::Day) };
    let expect = |pairs: &[(&str, &str)]| pairs.iter().map(|(n, c)| (n.to_string(), c.to_string())).collect::<Vec<_>>();
    // Columns: path read, groups. `team` is p's (p/a below it is not
    // counted again); `gpu` is p/a's (p/a/x below it not again).
    let cases: [(&str, Vec<(String, String)>); 4] = [
        ("p", expect(&[("team", "credits=15"), ("gpu", "credits=5"), ("batch", "credits=2")])),
        ("p/a", expect(&[("gpu", "credits=5"), ("team", "credits=5")])),
        ("", expect(&[("gpu", "credits=105"), ("team", "credits=15"), ("batch", "credits=2")])),
        ("p/c", expect(&[])),
    ];
    for (path, expected) in cases {
        assert_eq!(groups(&report(&t, path, &q, T0, &l)), expected, "{path}");
    }
}
