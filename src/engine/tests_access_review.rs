//! Review of access rules and INFLIGHT policies (SPEC §8): random
//! sequences of every command that touches them — SET toggling INFLIGHT
//! or the metric with live holds, UNSET, plans with INFLIGHT policies,
//! ALSO paths, UPTO batches, ITEM commits, EXTEND, expiry, late commits,
//! charges with and without CHECK, rules, DELPATH — keep the invariants
//! and survive encode/decode unchanged.

use std::sync::Arc;

use proptest::prelude::*;
use rust_decimal::Decimal;

use super::access::{Entry, Rule};
use super::plan::Plan;
use super::tests_support::d;
use super::*;

fn spec(metric: &str, limit: &str, inflight: bool, service: Option<&str>) -> PolicySpec {
    PolicySpec { inflight, service: service.map(str::to_string), ..tests_support::spec(metric, limit) }
}

const PATHS: [&str; 5] = ["", "a", "a/b", "a/c", "m/u"];
const METRICS: [&str; 2] = ["requests", "tokens"];
const SERVICES: [Option<&str>; 3] = [None, Some("s1"), Some("s2")];

fn plan(version: u64, inflight: bool, metric: &str) -> Arc<Plan> {
    let patterns = vec![
        ("a/*".to_string(), vec![("conc".to_string(), spec(metric, "4", inflight, None))]),
        ("m/*".to_string(), vec![("pc".to_string(), spec("requests", "3", true, Some("s1")))]),
    ];
    Arc::new(Plan::new("p", version, patterns).unwrap())
}

fn roundtrip(t: &Tree) -> std::result::Result<(), TestCaseError> {
    let bytes = persist::encode(t);
    let back = persist::decode(&bytes, persist::ENCODING_VERSION).map_err(TestCaseError::fail)?;
    prop_assert_eq!(persist::encode(&back), bytes);
    back.check_invariants().map_err(TestCaseError::fail)?;
    Ok(())
}

fn inflight_used_is_zero(t: &Tree) -> std::result::Result<(), TestCaseError> {
    for node in t.nodes.iter().flatten() {
        for p in node.policies.iter() {
            if p.inflight {
                prop_assert!(p.used.is_zero(), "used {} at {}#{}", p.used, node.path, p.name());
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]
    #[test]
    fn random_commands_keep_inflight_and_rules_consistent(
        ops in proptest::collection::vec((0u8..16, 0usize..64, 0usize..64, 1u32..4, 1u64..3000), 1..80),
    ) {
        let l = Limits::default();
        let mut t = Tree::new();
        t.set_policy("a", "conc", spec("requests", "5", true, None), 0, &l).unwrap();
        t.set_policy("", "total", spec("requests", "1000", false, None), 0, &l).unwrap();
        let mut now = 1_000u64;
        let mut ids: Vec<String> = Vec::new();
        let mut version = 1;
        let mut n = 0;
        for (kind, x, y, amount, step) in ops {
            n += 1;
            let path = PATHS[x % PATHS.len()];
            let also = PATHS[y % PATHS.len()];
            let service = SERVICES[y % 3];
            let metric = METRICS[(x / 5) % 2];
            let amount = amount.to_string();
            let pick = |ids: &Vec<String>| ids.get(y % ids.len().max(1)).cloned();
            match kind {
                0 | 1 => {
                    let mut paths = vec![path.to_string()];
                    if x % 3 == 0 && also != path { paths.push(also.to_string()); }
                    let items = (0..(1 + x % 3)).map(|_| vec![(metric.to_string(), d(&amount))]).collect();
                    let batch = if y % 2 == 0 { BatchMode::All } else { BatchMode::Upto };
                    let req = ReserveRequest {
                        set: ChargeSet { paths, service: service.map(str::to_string), model: None },
                        id: Some(format!("i{}", n % 7)),
                        ttl_ms: step,
                        batch,
                        items,
                        brief: false,
                        meta: None,
                    };
                    t.sync_paths(&PATHS, now);
                    let before: Vec<(String, Decimal, Decimal)> = t.nodes.iter().flatten().flat_map(|nd| nd.policies.iter().filter(|p| p.inflight && p.mode == Mode::Strict).map(|p| (format!("{}#{}", nd.path, p.name()), p.held, p.limit)).collect::<Vec<_>>()).collect();
                    if let Ok(o) = t.reserve(req, now, &l) && let Some(id) = o.id {
                        ids.push(id);
                        for nd in t.nodes.iter().flatten() {
                            for p in nd.policies.iter().filter(|p| p.inflight && p.mode == Mode::Strict) {
                                let name = format!("{}#{}", nd.path, p.name());
                                let was = before.iter().find(|b| b.0 == name);
                                if was.is_some_and(|b| b.1 <= b.2) || was.is_none() {
                                    prop_assert!(p.held <= p.limit, "overspend at {}: {} > {}", name, p.held, p.limit);
                                }
                            }
                        }
                    }
                }
                2 => {
                    let Some(id) = pick(&ids) else { continue };
                    let item = (x % 2 == 0).then_some(x % 3);
                    let actual = (y % 2 == 0).then(|| vec![(metric.to_string(), d(&amount))]);
                    let _ = t.commit(&id, item, actual, now, &l);
                }
                3 => {
                    let Some(id) = pick(&ids) else { continue };
                    let _ = t.release(&id, (x % 2 == 0).then_some(x % 3), now, &l);
                }
                4 => {
                    let Some(id) = pick(&ids) else { continue };
                    let _ = t.extend(&id, step * 2, now);
                }
                5 => {
                    let req = ChargeRequest {
                        set: ChargeSet { paths: vec![path.to_string()], service: service.map(str::to_string), model: None },
                        id: Some(format!("c{}", n % 5)),
                        check: x % 2 == 0,
                        cost: vec![(metric.to_string(), d(&amount))],
                        brief: y % 4 == 0,
                        meta: None,
                    };
                    let _ = t.charge(req, now, &l);
                }
                6 => { now += step; t.expire(now, &l); }
                7 => { now += step; } // lazily: expiry left for later
                8 => {
                    let _ = t.set_policy(path, "conc", spec(metric, "5", x % 2 == 0, service), now, &l);
                }
                9 => { let _ = t.unset_policy(path, "conc", now, &l); }
                10 => {
                    let entry = Entry { service: service.unwrap_or("s1").to_string(), model: None };
                    let rule = if x % 2 == 0 { Rule::Allow } else { Rule::Deny };
                    if y % 3 == 0 { t.remove_rule(path, rule, &entry); } else { let _ = t.add_rule(path, rule, entry, now, &l); }
                }
                11 => { let _ = t.delete_path(path); }
                12 => {
                    version += 1;
                    let p = if x % 4 == 0 { None } else { Some(plan(version, y % 2 == 0, metric)) };
                    t.assign(p);
                }
                13 => { t.clear_rules(path); }
                14 => {
                    let _ = t.set_policy(path, "total", spec(metric, "1000", false, None), now, &l);
                }
                _ => {
                    let bytes = persist::encode(&t);
                    t = persist::decode(&bytes, persist::ENCODING_VERSION).map_err(TestCaseError::fail)?;
                }
            }
            t.check_invariants().map_err(|e| TestCaseError::fail(format!("op {kind}: {e}")))?;
            inflight_used_is_zero(&t)?;
            roundtrip(&t)?;
        }
    }
}
