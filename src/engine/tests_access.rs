//! Access rules and INFLIGHT policies (SPEC §8): tables of cases, then
//! property tests: random rules × random requests judged as a naive
//! reference does, and INFLIGHT policies that always hold exactly what
//! the live holds have and never record usage.

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::access::{Entry, MAX_RULES, Rule, parse_entry};
use super::events::EventKind;
use super::hold::ItemState;
use super::tests_support::{d, spec};
use super::*;

fn inflight(limit: &str) -> PolicySpec {
    PolicySpec { inflight: true, ..spec("requests", limit) }
}

fn entry(service: &str, model: Option<&str>) -> Entry {
    Entry { service: service.into(), model: model.map(str::to_string) }
}

fn set(paths: &[&str], service: Option<&str>, model: Option<&str>) -> ChargeSet {
    ChargeSet {
        paths: paths.iter().map(|p| p.to_string()).collect(),
        service: service.map(str::to_string),
        model: model.map(str::to_string),
    }
}

fn reserve(set: ChargeSet, amount: &str) -> ReserveRequest {
    ReserveRequest {
        set,
        id: None,
        ttl_ms: 60_000,
        batch: BatchMode::All,
        items: vec![vec![("requests".into(), d(amount))]],
        brief: false,
        meta: None,
    }
}

fn charge(set: ChargeSet, amount: &str, check: bool, id: Option<&str>) -> ChargeRequest {
    ChargeRequest {
        set,
        id: id.map(str::to_string),
        check,
        cost: vec![("requests".into(), d(amount))],
        brief: false,
        meta: None,
    }
}

/// / denies chat/gpt-4o; projects/p1 allows chat/mini and all of embed.
fn ruled() -> Tree {
    let l = Limits::default();
    let mut t = Tree::new();
    assert!(t.add_rule("", Rule::Deny, entry("chat", Some("gpt-4o")), 0, &l).unwrap());
    assert!(t.add_rule("projects/p1", Rule::Allow, entry("chat", Some("mini")), 0, &l).unwrap());
    assert!(t.add_rule("projects/p1", Rule::Allow, entry("embed", None), 0, &l).unwrap());
    t
}

#[test]
fn each_refusal_has_its_sentence() {
    let l = Limits::default();
    let mut t = ruled();
    t.add_rule("", Rule::Deny, entry("image", None), 0, &l).unwrap();
    // service, model, allowed, denied_by, message
    type Row<'a> = (Option<&'a str>, Option<&'a str>, bool, &'a [&'a str], &'a str);
    let rows: [Row; 8] = [
        (Some("chat"), Some("mini"), true, &[], "reserved 1 requests"),
        (Some("embed"), None, true, &[], "reserved 1 requests"),
        (Some("embed"), Some("any"), true, &[], "reserved 1 requests"),
        (
            None,
            None,
            false,
            &["projects/p1#access"],
            "a request without SERVICE is not allowed at projects/p1 (it allows only listed services)",
        ),
        (Some("chat"), Some("gpt-4o"), false, &["/#access", "projects/p1#access"], "model gpt-4o is not allowed at /"),
        (Some("image"), None, false, &["/#access", "projects/p1#access"], "service image is not allowed at /"),
        (
            Some("chat"),
            None,
            false,
            &["projects/p1#access"],
            "service chat without MODEL is not allowed at projects/p1 (it allows only listed models)",
        ),
        (Some("chat"), Some("large"), false, &["projects/p1#access"], "model large is not allowed at projects/p1"),
    ];
    for (service, model, allowed, denied_by, message) in rows {
        let out = t.reserve(reserve(set(&["projects/p1"], service, model), "1"), 1, &l).unwrap();
        assert_eq!(out.allowed, allowed, "{service:?} {model:?}");
        assert_eq!(out.denied_by, denied_by, "{service:?} {model:?}");
        assert_eq!(out.message, message, "{service:?} {model:?}");
        if !allowed {
            assert!(out.checks.is_empty() && out.id.is_none() && out.held().is_empty());
            assert!(out.access.iter().all(|c| c.service.as_deref() == service && c.model.as_deref() == model));
        } else {
            assert!(out.access.is_empty());
        }
    }
    // A service outside the allow list entirely.
    let out = t.reserve(reserve(set(&["projects/p1/x"], Some("audio"), None), "1"), 1, &l).unwrap();
    assert_eq!(out.message, "service audio is not allowed at projects/p1");
}

#[test]
fn a_refused_reservation_holds_and_creates_nothing_and_brief_keeps_its_checks() {
    let l = Limits::default();
    let mut t = ruled();
    t.set_policy("members/u7", "conc", inflight("2"), 0, &l).unwrap();
    let before = persist::encode(&t);
    for batch in [BatchMode::All, BatchMode::Upto, BatchMode::DryRun] {
        let mut req = reserve(set(&["projects/p1/new", "members/u7"], Some("chat"), Some("gpt-4o")), "1");
        req.batch = batch;
        req.brief = true;
        req.id = Some("r1".into());
        let out = t.reserve(req, 5, &l).unwrap();
        assert!(!out.allowed);
        assert_eq!((out.fits, out.reserved, out.expires_at_ms), (0, 0, 0));
        assert_eq!(out.access.len(), 2);
        assert_eq!(persist::encode(&t), before, "{batch:?}: nothing changed");
    }
    // A denial is not remembered: the same id may be used again.
    let ok = t.reserve(reserve(set(&["members/u7"], Some("chat"), Some("mini")), "1"), 5, &l).unwrap();
    assert!(ok.allowed);
}

#[test]
fn a_charge_check_refuses_and_a_plain_charge_records_with_a_disallowed_event() {
    let l = Limits::default();
    let mut t = ruled();
    t.set_policy("", "cap", PolicySpec { warn: policy::parse_warn("50").unwrap(), ..spec("requests", "4") }, 0, &l)
        .unwrap();
    let before = persist::encode(&t);
    let refused = t.charge(charge(set(&["projects/p1"], Some("chat"), None), "3", true, Some("c0")), 1, &l).unwrap();
    assert!(!refused.allowed && refused.charged.is_empty() && refused.checks.is_empty());
    assert_eq!(refused.denied_by, ["projects/p1#access"]);
    assert_eq!(persist::encode(&t), before);
    let out = t.charge(charge(set(&["projects/p1"], Some("chat"), None), "3", false, Some("c1")), 2, &l).unwrap();
    assert!(out.allowed);
    assert_eq!(
        out.message,
        "charged 3 requests; service chat without MODEL is not allowed at projects/p1 (it allows only listed models)"
    );
    assert_eq!(out.denied_by, ["projects/p1#access"]);
    assert_eq!(out.access.len(), 1);
    assert_eq!(out.checks.len(), 1);
    // The disallowed event comes before the policy's warning.
    let events: Vec<_> = t.events_since(0, 10).cloned().collect();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Disallowed, EventKind::Warning]);
    let e = &events[0];
    assert_eq!((e.path.as_str(), e.id.as_deref()), ("projects/p1", Some("c1")));
    assert_eq!(e.amounts, vec![("requests".to_string(), d("3"))]);
    let access = e.access.as_deref().unwrap();
    assert_eq!((access.rule, access.service.as_deref(), access.model.as_deref()), (Rule::Allow, Some("chat"), None));
    // A duplicate answers the same, with its access checks, and fires nothing.
    let again = t.charge(charge(set(&["projects/p1"], Some("chat"), None), "3", false, Some("c1")), 3, &l).unwrap();
    assert!(again.duplicate);
    assert_eq!(again.access, out.access);
    assert_eq!(again.message, out.message);
    assert_eq!(t.events_since(0, 10).count(), 2);
    // BRIEF drops every check but keeps denied_by.
    let mut brief = charge(set(&["projects/p1"], Some("chat"), None), "0", false, None);
    brief.brief = true;
    let out = t.charge(brief, 4, &l).unwrap();
    assert!(out.access.is_empty() && out.checks.is_empty());
    assert_eq!(out.denied_by, ["projects/p1#access"]);
}

#[test]
fn rules_are_added_removed_cleared_and_bounded() {
    let l = Limits::default();
    let mut t = Tree::new();
    // REMOVE on a missing path creates nothing.
    assert!(!t.remove_rule("x/y", Rule::Allow, &entry("a", None)));
    assert_eq!(t.path_count(), 1);
    assert_eq!(t.clear_rules("x"), 0);
    for i in 0..MAX_RULES {
        let rule = if i % 2 == 0 { Rule::Allow } else { Rule::Deny };
        assert!(t.add_rule("p", rule, entry(&format!("s{i:03}"), None), 0, &l).unwrap());
    }
    // Already there: 0 even at the bound; a new one: the limit.
    assert!(!t.add_rule("p", Rule::Allow, entry("s000", None), 0, &l).unwrap());
    assert_eq!(
        t.add_rule("p", Rule::Deny, entry("new", None), 0, &l).unwrap_err().to_string(),
        "ERR limit: at most 128 access rules per path"
    );
    // The same entry in both lists is fine.
    assert!(t.remove_rule("p", Rule::Deny, &entry("s001", None)));
    assert!(t.add_rule("p", Rule::Deny, entry("s000", None), 0, &l).unwrap());
    let view = t.access_view("p").unwrap();
    assert!(view.allow.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(view.deny[0], entry("s000", None));
    assert_eq!(t.clear_rules("p"), MAX_RULES);
    assert!(t.get("p", 0).unwrap().access.is_none());
    // Sorted bytewise, an entry without a model first.
    let mut t = Tree::new();
    for (s, m) in [("b", Some("z")), ("b", None), ("B", None), ("a", Some("y")), ("b", Some("Z"))] {
        t.add_rule("", Rule::Allow, entry(s, m), 0, &l).unwrap();
    }
    let order: Vec<Entry> = t.access_view("").unwrap().allow;
    assert_eq!(
        order,
        [entry("B", None), entry("a", Some("y")), entry("b", None), entry("b", Some("Z")), entry("b", Some("z"))]
    );
    // New paths follow max_paths and max_depth.
    let tight = Limits { max_paths: 2, ..l };
    assert!(t.add_rule("a/b", Rule::Allow, entry("s", None), 0, &tight).is_err());
    assert_eq!(t.path_count(), 1);
    assert!(t.access_view("missing").is_err());
    // '*' is not a wildcard.
    assert!(parse_entry("*", None).is_err() && parse_entry("chat", Some("*")).is_err());
    assert!(parse_entry("chat", Some("gpt-4o")).is_ok());
}

#[test]
fn a_node_with_rules_is_never_removed_by_clean_ups_and_delpath_takes_its_rules() {
    let l = Limits::default();
    let mut t = Tree::new();
    t.add_rule("a/b", Rule::Deny, entry("chat", None), 0, &l).unwrap();
    let out = t.reserve(reserve(set(&["a/b/c"], Some("chat"), None), "1"), 1, &l).unwrap();
    assert!(!out.allowed);
    assert!(t.access_view("a/b").is_ok());
    assert_eq!(t.delete_path("a").unwrap(), 2);
    assert!(!t.has_rules());
}

#[test]
fn inflight_counts_holds_only_and_says_so_when_full() {
    let l = Limits::default();
    let mut t = Tree::new();
    t.set_policy("members/u7", "conc", inflight("3"), 0, &l).unwrap();
    t.set_policy("members/u7", "total", spec("requests", "100"), 0, &l).unwrap();
    let u7 = || set(&["members/u7"], None, None);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(t.reserve(reserve(u7(), "1"), 1, &l).unwrap().id.unwrap());
    }
    let full = t.reserve(reserve(u7(), "1"), 1, &l).unwrap();
    assert!(!full.allowed);
    assert_eq!(full.message, "not enough requests: 3 of 3 in flight at members/u7, 1 needed");
    // A charge does not reach it (not judged, not in checks), a commit
    // charges nothing to it and gives its hold back.
    let c = t.charge(charge(u7(), "50", true, None), 2, &l).unwrap();
    assert!(c.allowed);
    assert!(c.checks.iter().all(|c| c.policy == "total"));
    t.commit(&ids[0], None, None, 3, &l).unwrap();
    let view = t.get("members/u7", 3).unwrap();
    let conc = view.policies.iter().find(|p| p.name == "conc").unwrap();
    assert_eq!((conc.used, conc.held, conc.inflight), (d("0"), d("2"), true));
    let total = view.policies.iter().find(|p| p.name == "total").unwrap();
    assert_eq!(total.used, d("51"));
    // Release and expiry give back too.
    t.release(&ids[1], None, 4, &l).unwrap();
    t.expire(200_000, &l);
    let conc = t.get("members/u7", 200_000).unwrap().policies[0].clone();
    assert_eq!((conc.used, conc.held), (d("0"), d("0")));
    // No thresholds: filling it fires nothing.
    let events = t.events_since(0, 100).filter(|e| e.policy.as_deref() == Some("conc")).count();
    assert_eq!(events, 0);
    // A late commit of an expired hold charges like CHARGE: not to it.
    t.commit(&ids[2], None, None, 200_001, &l).unwrap();
    assert_eq!(t.get("members/u7", 200_001).unwrap().policies[0].used, d("0"));
    t.check_invariants().unwrap();
}

#[test]
fn inflight_rules_of_the_spec() {
    let l = Limits::default();
    let mut t = Tree::new();
    // spec change, error
    let rows: [(PolicySpec, &str); 4] = [
        (
            PolicySpec { window: Window::Rolling { duration_ms: 60_000 }, ..inflight("1") },
            "ERR syntax: an INFLIGHT policy counts what is held now and takes no WINDOW",
        ),
        (
            PolicySpec { mode: Mode::Block, ..inflight("1") },
            "ERR syntax: an INFLIGHT policy is strict or open (MODE block does not count holds)",
        ),
        (PolicySpec { low: Some(d("1")), ..inflight("1") }, "ERR syntax: LOW does not apply to an INFLIGHT policy"),
        (
            PolicySpec { rollover: Some(d("5")), ..inflight("1") },
            "ERR syntax: ROLLOVER needs a calendar WINDOW: hour, day, week, month or year",
        ),
    ];
    for (spec, error) in rows {
        assert_eq!(t.set_policy("m", "p", spec, 0, &l).unwrap_err().to_string(), error);
    }
    t.set_policy("m", "p", PolicySpec { mode: Mode::Open, ..inflight("1") }, 0, &l).unwrap();
    let req = policy::GrantRequest {
        id: None,
        amount: d("5"),
        expiry: policy::GrantExpiry::Never,
        priority: policy::DEFAULT_PRIORITY,
        note: None,
    };
    assert_eq!(
        t.grant("m", "p", &req, 0, &l).unwrap_err().to_string(),
        "ERR policy 'p' at m is INFLIGHT: it takes no grants"
    );
    // Open: observed, never denies.
    let a = t.reserve(reserve(set(&["m"], None, None), "1"), 1, &l).unwrap();
    let b = t.reserve(reserve(set(&["m"], None, None), "1"), 1, &l).unwrap();
    assert!(a.allowed && b.allowed);
    // Turning INFLIGHT off starts the policy over (a new generation).
    let generation = t.find("m").and_then(|n| t.node(n)).unwrap().policies[0].generation;
    t.set_policy("m", "p", PolicySpec { mode: Mode::Open, ..spec("requests", "1") }, 2, &l).unwrap();
    let policy = &t.find("m").and_then(|n| t.node(n)).unwrap().policies[0];
    assert_ne!(policy.generation, generation);
    assert!(!policy.inflight);
    t.check_invariants().unwrap();
    // Status comes from held; over only with a limit of 0.
    let mut t = Tree::new();
    t.set_policy("", "c", inflight("0"), 0, &l).unwrap();
    assert_eq!(t.get("", 0).unwrap().policies[0].status, Status::Over);
    t.set_policy("", "c", inflight("10"), 0, &l).unwrap();
    for _ in 0..9 {
        t.reserve(reserve(set(&["x"], None, None), "1"), 1, &l).unwrap();
    }
    assert_eq!(t.get("", 1).unwrap().policies[0].status, Status::Critical);
}

#[test]
fn a_policy_stays_within_its_128_bytes() {
    assert!(std::mem::size_of::<policy::Policy>() <= 128, "{}", std::mem::size_of::<policy::Policy>());
}

#[test]
fn rules_inflight_events_and_remembered_access_checks_survive_encode_and_decode() {
    let t = v4_tree();
    let bytes = persist::encode(&t);
    let back = persist::decode(&bytes, persist::ENCODING_VERSION).unwrap();
    assert_eq!(persist::encode(&back), bytes);
    assert_eq!(v4_text(&back), v4_text(&t));
    back.check_invariants().unwrap();
    // A tree without any of it writes version 3's bytes and one byte (and
    // version 5 two more: no usage, no labels; version 6 one more: no zones).
    let plain = Tree::new();
    let plain_bytes = persist::encode(&plain);
    assert_eq!(plain_bytes[plain_bytes.len() - 4..], [0, 0, 0, 0]);
    assert!(persist::decode(&plain_bytes[..plain_bytes.len() - 4], 3).is_ok());
    assert!(persist::decode(&plain_bytes[..plain_bytes.len() - 3], 4).is_ok());
    assert!(persist::decode(&plain_bytes[..plain_bytes.len() - 1], 5).is_ok());
    // Corrupt payloads are errors or valid trees, never panics.
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0xFF;
        if let Ok(t) = persist::decode(&b, persist::ENCODING_VERSION) {
            t.check_invariants().unwrap();
        }
        assert!(persist::decode(&bytes[..i], persist::ENCODING_VERSION).is_err());
    }
}

#[test]
fn restore_refuses_rules_and_inflight_policies_no_command_could_make() {
    let good = persist::encode(&v4_tree());
    let back = persist::decode(&good, persist::ENCODING_VERSION).unwrap();
    // Each change to a node's rules, or to an inflight policy, is refused.
    type Change = fn(&mut Tree);
    let changes: [(Change, &str); 6] = [
        (|t| t.nodes[0].as_mut().unwrap().access.as_mut().unwrap().deny.reverse(), "out of order"),
        (
            |t| {
                let a = t.nodes[0].as_mut().unwrap().access.as_mut().unwrap();
                a.deny.push(a.deny[0].clone());
                a.deny.sort();
            },
            "repeated",
        ),
        (|t| t.nodes[0].as_mut().unwrap().access.as_mut().unwrap().deny[0].service = "*".into(), "invalid"),
        (
            |t| {
                let a = t.nodes[0].as_mut().unwrap().access.as_mut().unwrap();
                a.allow = (0..MAX_RULES).map(|i| entry(&format!("x{i:03}"), None)).collect();
            },
            "bound",
        ),
        (
            |t| {
                let a = t.nodes[0].as_mut().unwrap().access.as_mut().unwrap();
                a.allow.clear();
                a.deny.clear();
            },
            "empty",
        ),
        (
            |t| {
                let id = t.find("members/u7").unwrap();
                t.nodes[id as usize].as_mut().unwrap().policies[0].used = Decimal::ONE;
            },
            "INFLIGHT",
        ),
    ];
    for (change, why) in changes {
        let mut t = back.clone();
        change(&mut t);
        let err = persist::decode(&persist::encode(&t), persist::ENCODING_VERSION).map(|_| ()).unwrap_err();
        assert!(err.contains(why), "{why}: {err}");
    }
    // An INFLIGHT policy with a window.
    let mut t = back.clone();
    let id = t.find("members/u7").unwrap();
    let node = t.nodes[id as usize].as_mut().unwrap();
    let mut spec = node.policies[0].spec();
    spec.window = Window::Rolling { duration_ms: 60_000 };
    let generation = node.policies[0].generation;
    node.policies[0] = policy::Policy::new("conc", spec, generation, 0);
    assert!(persist::decode(&persist::encode(&t), persist::ENCODING_VERSION).unwrap_err().contains("INFLIGHT"));
}

/// A tree with every part of encoding 4: rules on two nodes, an INFLIGHT
/// policy with a live hold, a remembered charge with access checks, and
/// a `disallowed` event.
fn v4_tree() -> Tree {
    let l = Limits::default();
    let mut t = ruled();
    t.add_rule("", Rule::Deny, entry("image", None), 0, &l).unwrap();
    t.add_rule("", Rule::Allow, entry("chat", None), 0, &l).unwrap();
    t.add_rule("", Rule::Allow, entry("embed", None), 0, &l).unwrap();
    t.set_policy("members/u7", "conc", inflight("3"), 0, &l).unwrap();
    t.set_policy("", "monthly", spec("requests", "1000"), 0, &l).unwrap();
    let mut r = reserve(set(&["projects/p1", "members/u7"], Some("chat"), Some("mini")), "1");
    r.id = Some("r1".into());
    assert!(t.reserve(r, 10, &l).unwrap().allowed);
    let c = t.charge(charge(set(&["projects/p1", "members/u7"], Some("chat"), None), "2", false, Some("c1")), 20, &l);
    assert_eq!(c.unwrap().access.len(), 1);
    let c = t.charge(charge(set(&["members/u7"], None, None), "1", false, Some("c2")), 30, &l);
    assert_eq!(c.unwrap().access.len(), 1);
    t
}

fn v4_text(t: &Tree) -> String {
    let now = 40;
    let mut out = String::new();
    for p in ["", "projects/p1", "members/u7"] {
        out += &format!("{:?}\n", t.get(p, now));
        out += &format!("{:?}\n", t.access_view(p));
    }
    out += &format!("{:?}\n", t.holds_view("", 10));
    out += &format!("{:?}\n", t.events_since(0, 100).collect::<Vec<_>>());
    for id in ["c1", "c2"] {
        out += &format!("{:?}\n", t.done_entry(id));
    }
    out
}

/// Writes `tests/fixtures/tree-v4.bin` and `.txt` (run once, by hand,
/// when encoding 4 is new: `cargo test -p quota-engine -- --ignored write_tree_v4`).
#[test]
#[ignore]
fn write_tree_v4_fixture() {
    let tree = v4_tree();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");
    // Version 4's bytes: version 6's without its three trailing `None`s.
    let bytes = persist::encode(&tree);
    std::fs::write(format!("{dir}/tree-v4.bin"), &bytes[..bytes.len() - 3]).unwrap();
    std::fs::write(format!("{dir}/tree-v4.txt"), v4_text(&tree)).unwrap();
}

/// A tree with rules and an INFLIGHT policy written by encoding 4
/// (`tests/fixtures/tree-v4.bin`) loads, reads as it did then
/// (`tree-v4.txt`), and is written back byte for byte.
#[test]
fn a_version_4_tree_still_loads() {
    let bytes = include_bytes!("../../tests/fixtures/tree-v4.bin");
    let tree = persist::decode(bytes, 4).unwrap();
    assert_eq!(
        crate::tests_support::without_v5_fields(&v4_text(&tree)),
        include_str!("../../tests/fixtures/tree-v4.txt")
    );
    let as_v6 = |b: &[u8]| crate::tests_support::as_v6(&crate::tests_support::as_v5(b));
    assert_eq!(persist::encode(&tree), as_v6(bytes));
    tree.check_invariants().unwrap();
    // The fixture is what the builder makes now.
    assert_eq!(persist::encode(&crate::tests_support::without_usage(v4_tree())), as_v6(bytes));
}

// ----- property tests ----------------------------------------------------

const NODES: [&str; 5] = ["", "a", "a/b", "a/b/c", "d"];
const SERVICES: [&str; 3] = ["s1", "s2", "s3"];
const MODELS: [&str; 3] = ["m1", "m2", "m3"];

/// (node, deny?, service, model) of one rule.
type RuleSpec = (usize, bool, usize, Option<usize>);

fn rule_strategy() -> impl Strategy<Value = RuleSpec> {
    (0..NODES.len(), any::<bool>(), 0..SERVICES.len(), proptest::option::of(0..MODELS.len()))
}

/// The naive reference: for each node of the reach (each path's existing
/// ancestors, root first, PATH then ALSO, each once) with rules, deny
/// when a deny entry matches, else allow when it has allow entries and
/// none matches.
fn reference(
    rules: &[RuleSpec],
    exists: &[&str],
    paths: &[&str],
    s: Option<&str>,
    m: Option<&str>,
) -> Vec<(String, Rule)> {
    let matches = |(_, _, rs, rm): &RuleSpec| match s {
        None => false,
        Some(s) => SERVICES[*rs] == s && rm.is_none_or(|rm| Some(MODELS[rm]) == m),
    };
    let mut nodes: Vec<&str> = Vec::new();
    for p in paths {
        for n in NODES.iter().chain(["d/e"].iter()).copied() {
            if names::is_within(p, n) && exists.contains(&n) && !nodes.contains(&n) {
                nodes.push(n);
            }
        }
    }
    let mut out = Vec::new();
    for n in nodes {
        let here: Vec<&RuleSpec> = rules.iter().filter(|r| NODES[r.0] == n).collect();
        if here.iter().any(|r| r.1 && matches(r)) {
            out.push((names::display_path(n).to_string(), Rule::Deny));
        } else if here.iter().any(|r| !r.1) && !here.iter().any(|r| !r.1 && matches(r)) {
            out.push((names::display_path(n).to_string(), Rule::Allow));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn judging_equals_the_naive_reference(
        rules in proptest::collection::vec(rule_strategy(), 0..12),
        requests in proptest::collection::vec(
            (0..NODES.len(), proptest::option::of(0..NODES.len()), proptest::option::of(0..SERVICES.len()), proptest::option::of(0..MODELS.len())),
            1..12,
        ),
    ) {
        let l = Limits::default();
        let mut t = Tree::new();
        t.set_policy("", "cap", spec("requests", "1000000"), 0, &l).unwrap();
        for &(node, deny, s, m) in &rules {
            let rule = if deny { Rule::Deny } else { Rule::Allow };
            t.add_rule(NODES[node], rule, entry(SERVICES[s], m.map(|m| MODELS[m])), 0, &l).unwrap();
        }
        // Keep only the distinct rules, as the tree does.
        let mut distinct: Vec<RuleSpec> = Vec::new();
        for r in rules {
            if !distinct.contains(&r) { distinct.push(r); }
        }
        let exists: Vec<&str> = NODES.iter().copied().filter(|n| t.find(n).is_some()).collect();
        for (path, also, s, m) in requests {
            let s = s.map(|s| SERVICES[s]);
            let m = m.map(|m| MODELS[m]).filter(|_| s.is_some());
            let mut paths = vec![NODES[path]];
            if let Some(a) = also && a != path { paths.push(NODES[a]); }
            let want = reference(&distinct, &exists, &paths, s, m);
            let before = persist::encode(&t);
            let out = t.reserve(reserve(set(&paths, s, m), "1"), 1, &l).unwrap();
            let got: Vec<(String, Rule)> = out.access.iter().map(|c| (c.path.clone(), c.rule)).collect();
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(out.allowed, want.is_empty());
            if let Some(id) = out.id {
                t.release(&id, None, 1, &l).unwrap();
            } else {
                prop_assert_eq!(persist::encode(&t), before);
            }
            let checked = t.charge(charge(set(&paths, s, m), "0", true, None), 1, &l).unwrap();
            let got: Vec<(String, Rule)> = checked.access.iter().map(|c| (c.path.clone(), c.rule)).collect();
            prop_assert_eq!(&got, &want);
            prop_assert_eq!(checked.allowed, want.is_empty());
        }
    }

    #[test]
    fn inflight_held_is_the_live_holds_and_used_stays_zero(
        ops in proptest::collection::vec((0u8..6, 0usize..32, 1u32..4, 1u64..4000), 1..60),
    ) {
        let l = Limits::default();
        let mut t = Tree::new();
        t.set_policy("m", "conc", inflight("6"), 0, &l).unwrap();
        t.set_policy("m/u", "open", PolicySpec { mode: Mode::Open, ..inflight("2") }, 0, &l).unwrap();
        t.set_policy("", "total", spec("requests", "1000"), 0, &l).unwrap();
        let mut now = 1_000u64;
        let mut ids: Vec<String> = Vec::new();
        for (kind, pick, amount, step) in ops {
            let amount = amount.to_string();
            match kind {
                0 | 1 => {
                    let path = if pick % 2 == 0 { "m" } else { "m/u" };
                    let mut r = reserve(set(&[path], None, None), &amount);
                    r.ttl_ms = step;
                    if let Some(id) = t.reserve(r, now, &l).unwrap().id { ids.push(id); }
                }
                2 => {
                    let Some(id) = ids.get(pick % ids.len().max(1)).cloned() else { continue };
                    let actual = Some(vec![("requests".to_string(), d(&amount))]);
                    let _ = t.commit(&id, None, actual, now, &l);
                }
                3 => {
                    let Some(id) = ids.get(pick % ids.len().max(1)).cloned() else { continue };
                    let _ = t.release(&id, None, now, &l);
                }
                4 => { t.charge(charge(set(&["m/u"], None, None), &amount, pick % 2 == 0, None), now, &l).unwrap(); }
                _ => { now += step; t.expire(now, &l); }
            }
            for (path, name) in [("m", "conc"), ("m/u", "open")] {
                let node = t.find(path).and_then(|n| t.node(n)).unwrap();
                let policy = node.policies.iter().find(|p| p.name() == name).unwrap();
                let live: Decimal = t
                    .holds
                    .values()
                    .filter(|h| h.set.paths.iter().any(|p| names::is_within(p, path)))
                    .flat_map(|h| h.items.iter().filter(|i| i.state == ItemState::Held))
                    .map(|i| outcome::costs_get(&i.cost, "requests"))
                    .sum();
                prop_assert_eq!(policy.held, live, "{}", path);
                prop_assert!(policy.used.is_zero());
                if policy.mode == Mode::Strict {
                    prop_assert!(policy.held <= policy.limit);
                }
            }
            t.check_invariants().map_err(TestCaseError::fail)?;
        }
    }
}
