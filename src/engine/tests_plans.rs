//! Engine tests of trees that follow plans (SPEC §6, `sync`).

use std::sync::Arc;

use super::outcome::{NodeView, PolicyView};
use super::plan::Plan;
use super::tests_support::{d, spec};
use super::*;

type Patterns = Vec<(String, Vec<(String, PolicySpec)>)>;

fn pats(list: &[(&str, &[(&str, PolicySpec)])]) -> Patterns {
    list.iter()
        .map(|(p, policies)| (p.to_string(), policies.iter().map(|(n, s)| (n.to_string(), s.clone())).collect()))
        .collect()
}

/// `pro`: / monthly 1000 credits; members/* allowance 50 credits.
fn pro(version: u64, monthly: &str, allowance: &str) -> Arc<Plan> {
    let p = pats(&[
        ("/", &[("monthly", spec("credits", monthly))]),
        ("members/*", &[("allowance", spec("credits", allowance))]),
    ]);
    Arc::new(Plan::new("pro", version, p).unwrap())
}

fn set_of(paths: &[&str]) -> ChargeSet {
    ChargeSet { paths: paths.iter().map(|p| p.to_string()).collect(), service: None, model: None }
}

fn reserve(paths: &[&str], metric: &str, amount: &str, batch: BatchMode) -> ReserveRequest {
    ReserveRequest {
        set: set_of(paths),
        id: None,
        ttl_ms: 60_000,
        batch,
        items: vec![vec![(metric.to_string(), d(amount))]],
        brief: false,
        meta: None,
    }
}

fn charge(paths: &[&str], amount: &str, check: bool) -> ChargeRequest {
    ChargeRequest {
        set: set_of(paths),
        id: None,
        check,
        cost: vec![("credits".into(), d(amount))],
        brief: false,
        meta: None,
    }
}

fn views(t: &Tree, path: &str, current: Option<&Arc<Plan>>) -> Vec<PolicyView> {
    t.get_seen(path, 0, 0, current).unwrap().policies
}

fn names_sources(t: &Tree, path: &str) -> Vec<(String, bool)> {
    views(t, path, t.plan()).into_iter().map(|p| (p.name, p.from_plan)).collect()
}

fn following(plan: &Arc<Plan>) -> Tree {
    let mut t = Tree::new();
    assert!(t.assign(Some(plan.clone())));
    t
}

#[test]
fn a_new_member_gets_the_allowance_and_a_first_request_above_it_is_denied() {
    let l = Limits::default();
    let mut t = following(&pro(1, "1000", "50"));
    // The root exists: a request syncs it (that stays).
    t.reserve(reserve(&[""], "credits", "1", BatchMode::DryRun), 10, &l).unwrap();
    let before = persist::encode(&t);
    for batch in [BatchMode::All, BatchMode::DryRun] {
        let out = t.reserve(reserve(&["members/u7"], "credits", "60", batch), 10, &l).unwrap();
        assert!(!out.allowed);
        assert_eq!(out.denied_by, vec!["members/u7#allowance".to_string()]);
        // Nothing is left of the nodes created to judge it.
        assert_eq!(persist::encode(&t), before, "{batch:?}");
        assert_eq!(t.path_count(), 1);
    }
    // DRYRUN that would pass leaves nothing either.
    t.reserve(reserve(&["members/u7"], "credits", "40", BatchMode::DryRun), 10, &l).unwrap();
    assert_eq!(persist::encode(&t), before);
    // CHARGE CHECK refused leaves nothing; an error after creating neither.
    let out = t.charge(charge(&["members/u7"], "60", true), 10, &l).unwrap();
    assert!(!out.allowed);
    assert_eq!(persist::encode(&t), before);
    let tight = Limits { max_holds: 0, ..l };
    assert!(t.reserve(reserve(&["members/u7"], "credits", "10", BatchMode::All), 10, &tight).is_err());
    assert_eq!(persist::encode(&t), before);
    // Within the allowance: held on the member's plan policy.
    let out = t.reserve(reserve(&["members/u7"], "credits", "40", BatchMode::All), 10, &l).unwrap();
    assert!(out.allowed);
    let v = views(&t, "members/u7", t.plan());
    assert_eq!((v[0].name.as_str(), v[0].held, v[0].from_plan), ("allowance", d("40"), true));
    assert_eq!(names_sources(&t, "members"), vec![]);
    assert_eq!(names_sources(&t, ""), vec![("monthly".into(), true)]);
    t.check_invariants().unwrap();
}

#[test]
fn a_removed_node_leaves_ids_that_change_no_reply() {
    // The slot a denied request used is free again: a later path takes
    // the slot it would have taken anyway.
    let l = Limits::default();
    let plan = pro(1, "1000", "50");
    let mut a = following(&plan);
    let mut b = following(&plan);
    a.reserve(reserve(&["members/u1"], "credits", "60", BatchMode::All), 0, &l).unwrap();
    for t in [&mut a, &mut b] {
        t.charge(charge(&["members/u2"], "5", false), 0, &l).unwrap();
    }
    assert_eq!(persist::encode(&a), persist::encode(&b));
}

#[test]
fn overrides_unset_both_ways_and_max_policies_counts_tree_policies() {
    let l = Limits::default();
    let mut t = following(&pro(1, "1000", "50"));
    t.charge(charge(&[""], "30", false), 0, &l).unwrap();
    // SET of the plan's name: the tree's own policy, usage kept.
    t.set_policy("", "monthly", spec("credits", "500"), 0, &l).unwrap();
    let v = &views(&t, "", t.plan())[0];
    assert_eq!((v.limit, v.used, v.from_plan), (d("500"), d("30"), false));
    // A plan change does not touch the override.
    let v2 = pro(2, "2000", "50");
    assert!(t.adopt(Some(v2.clone())));
    t.charge(charge(&[""], "1", false), 0, &l).unwrap();
    let v = &views(&t, "", t.plan())[0];
    assert_eq!((v.limit, v.used, v.from_plan), (d("500"), d("31"), false));
    // UNSET of the override: the plan's policy again, usage kept.
    t.unset_policy("", "monthly", 0, &l).unwrap();
    let v = &views(&t, "", t.plan())[0];
    assert_eq!((v.limit, v.used, v.from_plan), (d("2000"), d("31"), true));
    // UNSET of a plan policy is refused.
    let err = t.unset_policy("", "monthly", 0, &l).unwrap_err().to_string();
    assert_eq!(
        err,
        "ERR policy 'monthly' at '/' comes from plan 'pro': override it with QUOTA.SET, or change the plan"
    );
    // max_policies counts the tree's own policies only.
    let one = Limits { max_policies: 1, ..l };
    t.set_policy("", "extra", spec("tokens", "5"), 0, &one).unwrap();
    assert!(matches!(t.set_policy("", "extra2", spec("tokens", "5"), 0, &one), Err(Error::Limit(_))));
    t.check_invariants().unwrap();
}

#[test]
fn plan_changes_keep_usage_restart_on_a_new_metric_and_drop_removed_policies() {
    let l = Limits::default();
    let mut t = following(&pro(1, "1000", "50"));
    t.charge(charge(&["members/u7"], "20", false), 0, &l).unwrap();
    t.reserve(reserve(&["members/u7"], "credits", "5", BatchMode::All), 0, &l).unwrap();
    t.reserve(reserve(&["members/u7"], "tokens", "7", BatchMode::All), 0, &l).unwrap();
    // Same name and metric, new limit: usage kept.
    t.adopt(Some(pro(2, "900", "60")));
    t.charge(charge(&["members/u7"], "1", false), 0, &l).unwrap();
    let v = &views(&t, "members/u7", t.plan())[0];
    assert_eq!((v.limit, v.used, v.held), (d("60"), d("21"), d("5")));
    // A new metric: starts over, counting the live holds of that metric.
    let p =
        pats(&[("/", &[("monthly", spec("credits", "900"))]), ("members/*", &[("allowance", spec("tokens", "10"))])]);
    let v3 = Arc::new(Plan::new("pro", 3, p).unwrap());
    // The read sees what the write then stores.
    let seen = views(&t, "members/u7", Some(&v3));
    t.adopt(Some(v3.clone()));
    t.charge(charge(&["members/u7"], "0", false), 0, &l).unwrap();
    assert_eq!(views(&t, "members/u7", t.plan()), seen);
    let v = &seen[0];
    assert_eq!((v.metric.as_str(), v.used, v.held), ("tokens", d("0"), d("7")));
    t.check_invariants().unwrap();
    // A plan without the member pattern: the policy goes, with its lines.
    let p = pats(&[("/", &[("monthly", spec("credits", "900"))])]);
    t.adopt(Some(Arc::new(Plan::new("pro", 4, p).unwrap())));
    t.charge(charge(&["members/u7"], "0", false), 0, &l).unwrap();
    assert_eq!(names_sources(&t, "members/u7"), vec![]);
    t.check_invariants().unwrap();
    // Leaving the plan removes the plan policies on the next write.
    assert!(t.assign(None));
    assert_eq!(names_sources(&t, ""), vec![]);
    t.charge(charge(&[""], "1", false), 0, &l).unwrap();
    let id = t.find("").unwrap();
    assert!(t.node(id).unwrap().policies.is_empty());
    t.check_invariants().unwrap();
}

#[test]
fn sync_order_is_most_specific_pattern_first_and_overrides_stay_in_place() {
    let l = Limits::default();
    let p = pats(&[
        ("*/*", &[("a", spec("credits", "1")), ("z", spec("credits", "2"))]),
        ("members/*", &[("m", spec("credits", "3")), ("z", spec("credits", "4"))]),
    ]);
    let plan = Arc::new(Plan::new("p", 1, p).unwrap());
    let mut t = following(&plan);
    t.set_policy("members/u1", "a", spec("credits", "9"), 0, &l).unwrap();
    let got: Vec<(String, bool)> = names_sources(&t, "members/u1");
    // Created synced (most specific pattern first), then overridden in place.
    let want = [("m", true), ("z", true), ("a", false)];
    assert_eq!(got, want.map(|(n, s)| (n.to_string(), s)));
    assert_eq!(views(&t, "members/u1", t.plan())[1].limit, d("4"));
    // A stale node is viewed as the sync then stores it.
    let mut t2 = Tree::new();
    t2.set_policy("members/u1", "own", spec("credits", "9"), 0, &l).unwrap();
    let seen = views(&t2, "members/u1", None);
    assert_eq!(seen.len(), 1);
    t2.assign(Some(plan.clone()));
    let seen = views(&t2, "members/u1", t2.plan());
    t2.charge(charge(&["members/u1"], "1", false), 0, &l).unwrap();
    let after: Vec<String> = views(&t2, "members/u1", t2.plan()).into_iter().map(|p| p.name).collect();
    assert_eq!(seen.into_iter().map(|p| p.name).collect::<Vec<_>>(), after);
    assert_eq!(after, ["own", "m", "z", "a"]);
}

#[test]
fn a_deleted_plan_keeps_enforcing_and_adoption_needs_another_version() {
    let l = Limits::default();
    let v1 = pro(1, "10", "50");
    let mut t = following(&v1);
    // The book no longer has it: nothing changes, limits stay.
    assert!(!t.adopt(None));
    assert!(t.plan_info(None).missing);
    let out = t.charge(charge(&[""], "11", true), 0, &l).unwrap();
    assert!(!out.allowed);
    // The same version (another Arc) is not adopted.
    assert!(!t.adopt(Some(pro(1, "10", "50"))));
    assert_eq!(t.plan_epoch(), 1);
    assert!(t.adopt(Some(pro(2, "10", "50"))));
    assert_eq!(t.plan_epoch(), 2);
    // ASSIGN of the same version changes nothing.
    assert!(!t.assign(Some(pro(2, "10", "50"))));
    let info = t.plan_info(Some(&pro(3, "10", "50")));
    assert_eq!((info.name.as_deref(), info.version, info.missing), (Some("pro"), Some(3), false));
}

#[test]
fn a_following_tree_survives_encode_and_decode() {
    let l = Limits::default();
    let mut t = following(&pro(1, "1000", "50"));
    t.reserve(reserve(&["members/u7"], "credits", "5", BatchMode::All), 0, &l).unwrap();
    t.set_policy("members/u7", "allowance", spec("credits", "70"), 0, &l).unwrap();
    t.adopt(Some(pro(2, "900", "50")));
    let bytes = persist::encode(&t);
    let back = persist::decode(&bytes, persist::ENCODING_VERSION).unwrap();
    assert_eq!(persist::encode(&back), bytes);
    assert_eq!(back.plan_epoch(), 2);
    assert_eq!(back.plan().map(|p| p.version), Some(2));
    for path in ["", "members/u7"] {
        assert_eq!(views(&back, path, back.plan()), views(&t, path, t.plan()));
    }
    assert!(persist::decode(&bytes, 1).is_err());
    // A tree that never followed a plan writes no plan state.
    let mut plain = Tree::new();
    plain.set_policy("", "m", spec("credits", "5"), 0, &l).unwrap();
    assert_eq!(persist::decode(&persist::encode(&plain), persist::ENCODING_VERSION).unwrap().path_count(), 1);
    // Corrupt plan states are errors, never panics.
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0xFF;
        if let Ok(t) = persist::decode(&b, persist::ENCODING_VERSION) {
            t.check_invariants().unwrap();
        }
    }
}

mod random {
    //! Random commands on a tree whose plan changes under it: holds always
    //! count where they match, a read always shows what the next write
    //! stores, a request that places nothing leaves only its syncs, and
    //! loading the tree changes no byte.

    use proptest::prelude::*;

    use super::*;

    const PATHS: [&str; 6] = ["", "members", "members/u1", "members/u2", "teams/t1", "teams/t1/x"];

    /// Three contents: another limit, another metric and a filter, a
    /// removed root policy and another mode.
    fn content(n: usize, version: u64) -> Arc<Plan> {
        let mut chat = spec("credits", "5");
        chat.service = Some("chat".into());
        let mut block = spec("credits", "20");
        block.mode = Mode::Block;
        let p = match n {
            0 => pats(&[
                ("/", &[("monthly", spec("credits", "100"))]),
                ("members/*", &[("allowance", spec("credits", "20"))]),
            ]),
            1 => pats(&[
                ("/", &[("monthly", spec("credits", "50"))]),
                ("members/*", &[("allowance", spec("tokens", "10"))]),
                ("*/*", &[("x", chat), ("allowance", spec("credits", "7"))]),
            ]),
            _ => pats(&[("members/*", &[("allowance", block)]), ("teams", &[("monthly", spec("tokens", "9"))])]),
        };
        Arc::new(Plan::new("pro", version, p).unwrap())
    }

    #[derive(Debug, Clone)]
    enum Op {
        Reserve { path: usize, metric: bool, amount: u8, batch: u8, chat: bool },
        Charge { path: usize, amount: u8, check: bool },
        Settle { hold: usize, commit: bool },
        Set { path: usize, limit: u8 },
        Unset { path: usize, plan_name: bool },
        Plan { content: usize },
        Assign { none: bool },
        Wait { ms: u16 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..6usize, any::<bool>(), 0..30u8, 0..3u8, any::<bool>())
                .prop_map(|(path, metric, amount, batch, chat)| Op::Reserve { path, metric, amount, batch, chat }),
            (0..6usize, 0..30u8, any::<bool>()).prop_map(|(path, amount, check)| Op::Charge { path, amount, check }),
            (0..8usize, any::<bool>()).prop_map(|(hold, commit)| Op::Settle { hold, commit }),
            (0..6usize, 0..50u8).prop_map(|(path, limit)| Op::Set { path, limit }),
            (0..6usize, any::<bool>()).prop_map(|(path, plan_name)| Op::Unset { path, plan_name }),
            (0..3usize).prop_map(|content| Op::Plan { content }),
            any::<bool>().prop_map(|none| Op::Assign { none }),
            (0..5000u16).prop_map(|ms| Op::Wait { ms }),
        ]
    }

    /// Every node's policies as a read shows them.
    fn shown(t: &Tree, current: Option<&Arc<Plan>>) -> Vec<(String, Vec<PolicyView>)> {
        PATHS
            .iter()
            .filter_map(|p| Some((p.to_string(), t.get_seen(p, 9_000_000, 0, current).ok()?.policies)))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 200, .. ProptestConfig::default() })]

        #[test]
        fn plan_following_trees_keep_their_rules(ops in proptest::collection::vec(op(), 1..60)) {
            let l = Limits::default();
            let mut t = Tree::new();
            let mut book = content(0, 1);
            let mut version = 1;
            let mut now = 1_000u64;
            let mut ids: Vec<String> = Vec::new();
            t.assign(Some(book.clone()));
            for op in &ops {
                t.expire(now, &l);
                // The command layer adopts first.
                let current = Some(book.clone()).filter(|_| t.plan().is_some());
                if t.plan().is_some() {
                    t.adopt(current);
                }
                match *op {
                    Op::Reserve { path, metric, amount, batch, chat } => {
                        let batch = [BatchMode::All, BatchMode::DryRun, BatchMode::Upto][batch as usize];
                        let mut req = reserve(&[PATHS[path]], if metric { "tokens" } else { "credits" }, &amount.to_string(), batch);
                        if chat {
                            req.set.service = Some("chat".into());
                        }
                        // Placing nothing leaves what a sync alone leaves.
                        let mut synced = t.clone();
                        synced.sync_way(&req.set.paths, now);
                        if let Ok(out) = t.reserve(req, now, &l) {
                            match out.id {
                                Some(id) => ids.push(id),
                                None => prop_assert_eq!(persist::encode(&t), persist::encode(&synced)),
                            }
                        }
                    }
                    Op::Charge { path, amount, check } => {
                        let mut synced = t.clone();
                        synced.sync_way(&[PATHS[path].to_string()], now);
                        let out = t.charge(charge(&[PATHS[path]], &amount.to_string(), check), now, &l);
                        if out.is_ok_and(|o| !o.allowed) {
                            prop_assert_eq!(persist::encode(&t), persist::encode(&synced));
                        }
                    }
                    Op::Settle { hold, commit } => {
                        if let Some(id) = ids.get(hold).cloned() {
                            let _ = if commit { t.commit(&id, None, None, now, &l).map(|_| ()) } else { t.release(&id, None, now, &l).map(|_| ()) };
                        }
                    }
                    Op::Set { path, limit } => {
                        let name = if limit % 2 == 0 { "allowance" } else { "own" };
                        t.set_policy(PATHS[path], name, spec("credits", &limit.to_string()), now, &l).unwrap();
                    }
                    Op::Unset { path, plan_name } => {
                        let _ = t.unset_policy(PATHS[path], if plan_name { "allowance" } else { "own" }, now, &l);
                    }
                    Op::Plan { content: n } => {
                        version += 1;
                        book = content(n, version);
                    }
                    Op::Assign { none } => {
                        t.assign(if none { None } else { Some(book.clone()) });
                    }
                    Op::Wait { ms } => now += u64::from(ms) * 1000,
                }
                t.check_invariants().map_err(TestCaseError::fail)?;
                // A read sees the book's plan; a write then stores the same.
                let current = t.plan().map(|_| book.clone());
                let seen = shown(&t, current.as_ref());
                let mut written = t.clone();
                if written.plan().is_some() {
                    written.adopt(current);
                }
                let all: Vec<String> = PATHS.iter().map(|p| p.to_string()).collect();
                written.sync_way(&all, 9_000_000);
                prop_assert_eq!(shown(&written, written.plan()), seen, "after {:?}", op);
                written.check_invariants().map_err(TestCaseError::fail)?;
                let back = persist::decode(&persist::encode(&t), persist::ENCODING_VERSION).unwrap();
                prop_assert_eq!(persist::encode(&back), persist::encode(&t));
            }
        }
    }
}

/// A read of many stale nodes (QUOTA.TREE) looks each node's holds up in
/// `Tree::holds_by_path`: it finds the same holds, in the same order, as the
/// pass over every hold a write makes, and shows each node as QUOTA.GET does.
#[test]
fn a_tree_read_finds_each_stale_nodes_holds_as_a_pass_over_every_hold_does() {
    let l = Limits::default();
    let plan = pro(1, "100000", "1000");
    let mut t = following(&plan);
    let sets: [&[&str]; 5] =
        [&["members/u1"], &["members/u2", "members/u1"], &["teams/a/b"], &["members/u3", "teams/a"], &[""]];
    for (i, paths) in sets.iter().enumerate() {
        let out = t.reserve(reserve(paths, "credits", &format!("{}", i + 1), BatchMode::All), 10, &l).unwrap();
        assert!(out.allowed, "{paths:?}");
    }
    let index = t.holds_by_path();
    for path in ["", "members", "members/u1", "members/u2", "members/u3", "teams", "teams/a", "teams/a/b", "nowhere"] {
        assert_eq!(
            t.holds_matching_saturating(path, &spec("credits", "1"), None),
            t.holds_matching_saturating(path, &spec("credits", "1"), Some(&index)),
            "{path}"
        );
    }
    // The plan adds a policy everywhere holds are: every node is stale.
    let p = pats(&[
        ("/", &[("monthly", spec("credits", "100000")), ("seats", spec("credits", "7"))]),
        ("members/*", &[("allowance", spec("credits", "1000")), ("seats", spec("credits", "3"))]),
        ("teams/*", &[("seats", spec("credits", "5"))]),
        ("teams/*/*", &[("seats", spec("credits", "5"))]),
    ]);
    let next = Arc::new(Plan::new("pro", 2, p).unwrap());
    let tree = t.tree_view_seen("", 5, 100, 20, 20, Some(&next)).unwrap();
    fn each(t: &Tree, node: &NodeView, next: &Arc<Plan>, seen: &mut usize) {
        let path = if node.path == "/" { "" } else { node.path.as_str() };
        assert_eq!(node.policies, t.get_seen(path, 20, 20, Some(next)).unwrap().policies, "{path}");
        *seen += 1;
        for child in &node.children {
            each(t, child, next, seen);
        }
    }
    let seats = tree.root.policies.iter().find(|p| p.name == "seats").map(|p| p.held);
    assert_eq!(seats, Some(d("15")), "the root's new policy counts every live hold");
    let mut seen = 0;
    each(&t, &tree.root, &next, &mut seen);
    assert_eq!(seen, tree.nodes);
    assert!(seen >= 8, "{seen}");
}
