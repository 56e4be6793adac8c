//! Property tests over the command layer: random argument lists, built from
//! the commands' own vocabulary and hostile values, fed to every command.
//! No input may panic; an error must leave the tree exactly as it was; a
//! success must leave a tree whose invariants hold and which survives an
//! encode/decode round trip. `make fuzz` runs many more cases than CI.

use proptest::prelude::*;

use super::args::Args;
use super::{Command, Env, Handler, TREE_COMMANDS, read};
use crate::engine::pricing::Price;
use crate::engine::{Limits, Tree};
use crate::{persist, prices};

const WORDS: &[&str] = &[
    "PATH",
    "ALSO",
    "ID",
    "TTL",
    "SERVICE",
    "MODEL",
    "ALL",
    "UPTO",
    "DRYRUN",
    "BRIEF",
    "CHECK",
    "COST",
    "USAGE",
    "ITEM",
    "METRIC",
    "LIMIT",
    "WINDOW",
    "ANCHOR",
    "TZ",
    "MODE",
    "WARN",
    "ROLLOVER",
    "DEPTH",
    "COUNT",
    "FORMAT",
    "SINCE",
    "EXPIRES",
    "FOR",
    "PERIOD",
    "PRIORITY",
    "NOTE",
    "LOW",
    "INFLIGHT",
    "REMOVE",
    "CLEAR",
    "chat",
    "gpt",
    "*",
    "g1",
    "1700000000500",
    "9007199254740992",
    "strict",
    "block",
    "open",
    "none",
    "month",
    "day",
    "week",
    "hour",
    "year",
    "rolling",
    "json",
    "resp",
    "credits",
    "requests",
    "input_tokens",
    "images",
    "quality",
    "hd",
    "sd",
    "video/v",
    "chat/c",
    "chat/none",
    "/",
    "a",
    "a/b",
    "a/b/c",
    "d",
    "d/e",
    "x//y",
    "..",
    "a/./b",
    "",
    " ",
    "\u{0}",
    "é",
    "💥",
    "0",
    "1",
    "-1",
    "10",
    "99.5",
    "0.0000000001",
    "1e5",
    "1.",
    ".5",
    "-0",
    "1000000000000000",
    "1000000000000001",
    "18446744073709551616",
    "-9223372036854775808",
    "NaN",
    "inf",
    "30d",
    "90s",
    "0s",
    "1.5h",
    "31",
    "32",
    "80,90",
    "0,100",
    "101",
    "r-1",
    "job",
    "16",
    "1000",
    "1001",
    "60000",
    "2592000001",
];

fn arg() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => "[ -~]{0,12}",
        1 => "[0-9]{1,30}",
    ]
}

fn pick(options: &'static [&'static str]) -> impl Strategy<Value = String> {
    proptest::sample::select(options).prop_map(str::to_string)
}

const PATHS: &[&str] = &["/", "a", "a/b", "a/b/c", "d", "d/e"];
const METRICS: &[&str] = &["credits", "requests", "images"];
const AMOUNTS: &[&str] = &["0", "1", "5", "10", "25.5", "100", "-3", "0.0000000001"];
const IDS: &[&str] = &["job-1", "job-2", "job-3"];
const GRANT_IDS: &[&str] = &["g1", "g2", "g3"];
const SERVICES: &[&str] = &["chat", "image"];
const MODELS: &[&str] = &["gpt", "mini"];

/// The index of command `name` in [`commands`] (a name that is not there
/// fails the test: it would quietly fuzz another command).
fn idx(name: &str) -> usize {
    commands().iter().position(|c| c.name == name).unwrap_or_else(|| panic!("no command {name} to fuzz"))
}

/// A request's SERVICE and MODEL: none, the service alone, or both.
fn filter() -> impl Strategy<Value = Vec<String>> {
    (0u8..4, pick(SERVICES), pick(MODELS)).prop_map(|(k, s, m)| match k {
        0 => vec![],
        1 => vec!["SERVICE".to_string(), s],
        _ => vec!["SERVICE".to_string(), s, "MODEL".into(), m],
    })
}

/// A command that is mostly well formed: (command index, arguments).
fn shaped() -> impl Strategy<Value = (usize, Vec<String>)> {
    let cost = (pick(METRICS), pick(AMOUNTS)).prop_map(|(m, a)| vec!["COST".to_string(), m, a]);
    let usage = (pick(&["1", "3"]), pick(&["hd", "sd"]))
        .prop_map(|(n, q)| ["USAGE", "video/v", "images", &n, "quality", &q].map(str::to_string).to_vec());
    let item = prop_oneof![3 => cost, 1 => usage];
    let window = pick(&["none", "day", "month", "hour"]).prop_map(|w| vec!["WINDOW".to_string(), w]);
    let set = (
        pick(PATHS),
        pick(&["p", "q"]),
        pick(METRICS),
        pick(AMOUNTS),
        proptest::option::of(window),
        pick(&["strict", "block", "open"]),
        0u8..4,
    )
        .prop_map(|(path, name, metric, limit, window, mode, inflight)| {
            let mut v = vec![path, name, "METRIC".into(), metric, "LIMIT".into(), limit, "MODE".into(), mode];
            // An INFLIGHT policy (a quarter of them) takes no window or LOW:
            // most leave them out, some keep them for the errors.
            let inflight = inflight == 0;
            if !inflight || window.as_ref().is_some_and(|w| w[1] == "none") {
                v.extend(window.unwrap_or_default());
            }
            if limit_is_low(&v) && !inflight {
                v.extend(["LOW".to_string(), "5".into()]);
            }
            if inflight {
                v.push("INFLIGHT".into());
            }
            (idx("QUOTA.SET"), v)
        });
    let rule = (any::<bool>(), pick(PATHS), pick(SERVICES), proptest::option::of(pick(MODELS)), 0u8..4, any::<bool>())
        .prop_map(|(deny, path, service, model, remove, swap)| {
            let mut v = vec!["SERVICE".to_string(), service];
            if let Some(m) = model {
                if swap {
                    v.splice(0..0, ["MODEL".to_string(), m]);
                } else {
                    v.extend(["MODEL".to_string(), m]);
                }
            }
            if remove == 0 {
                v.push("REMOVE".into());
            }
            v.insert(0, path);
            (idx(if deny { "QUOTA.DENY" } else { "QUOTA.ALLOW" }), v)
        });
    let access = (pick(PATHS), any::<bool>()).prop_map(|(path, clear)| {
        let mut v = vec![path];
        if clear {
            v.push("CLEAR".into());
        }
        (idx("QUOTA.ACCESS"), v)
    });
    let grant = (
        pick(PATHS),
        pick(&["p", "q"]),
        pick(AMOUNTS),
        proptest::option::of(pick(GRANT_IDS)),
        proptest::option::of(pick(&["EXPIRES 1700000000500", "EXPIRES 1700000090000", "FOR 90s", "FOR 1h", "PERIOD"])),
        proptest::option::of(pick(&["0", "50", "100"])),
        proptest::option::of(pick(&["refund", "promo code"])),
    )
        .prop_map(|(path, name, amount, id, expiry, priority, note)| {
            let mut v = vec![path, name, amount];
            if let Some(id) = id {
                v.extend(["ID".to_string(), id]);
            }
            if let Some(expiry) = expiry {
                v.extend(expiry.split(' ').map(str::to_string));
            }
            if let Some(p) = priority {
                v.extend(["PRIORITY".to_string(), p]);
            }
            if let Some(note) = note {
                v.extend(["NOTE".to_string(), note]);
            }
            (idx("QUOTA.GRANT"), v)
        });
    let revoke = (pick(PATHS), pick(&["p", "q"]), pick(GRANT_IDS))
        .prop_map(|(path, name, id)| (idx("QUOTA.REVOKE"), vec![path, name, id]));
    let grants = (pick(PATHS), pick(&["p", "q"]), any::<bool>()).prop_map(|(path, name, count)| {
        let mut v = vec![path, name];
        if count {
            v.extend(["COUNT".to_string(), "1".into()]);
        }
        (idx("QUOTA.GRANTS"), v)
    });
    let reserve = (
        pick(PATHS),
        proptest::option::of(pick(PATHS)),
        proptest::option::of(pick(IDS)),
        pick(&["ALL", "UPTO", "DRYRUN"]),
        pick(&["500", "1500", "60000"]),
        proptest::collection::vec(item.clone(), 1..4),
        filter(),
    )
        .prop_map(|(path, also, id, mode, ttl, items, filter)| {
            let mut v = vec!["PATH".to_string(), path, "TTL".into(), ttl, mode];
            v.extend(filter);
            if let Some(also) = also {
                v.extend(["ALSO".to_string(), also]);
            }
            if let Some(id) = id {
                v.extend(["ID".to_string(), id]);
            }
            v.extend(items.into_iter().flatten());
            (idx("QUOTA.RESERVE"), v)
        });
    let commit = (pick(IDS), proptest::option::of(pick(&["0", "1", "2"])), proptest::option::of(item.clone()))
        .prop_map(|(id, index, cost)| {
            let mut v = vec![id];
            if let Some(i) = index {
                v.extend(["ITEM".to_string(), i]);
            }
            v.extend(cost.unwrap_or_default());
            (idx("QUOTA.COMMIT"), v)
        });
    let release = (pick(IDS), proptest::option::of(pick(&["0", "1"]))).prop_map(|(id, index)| {
        let mut v = vec![id];
        if let Some(i) = index {
            v.extend(["ITEM".to_string(), i]);
        }
        (idx("QUOTA.RELEASE"), v)
    });
    let charge = (pick(PATHS), any::<bool>(), item, filter(), proptest::option::of(pick(IDS))).prop_map(
        |(path, check, item, filter, id)| {
            let mut v = vec!["PATH".to_string(), path];
            v.extend(filter);
            if let Some(id) = id {
                v.extend(["ID".to_string(), id]);
            }
            if check {
                v.push("CHECK".into());
            }
            v.extend(item);
            (idx("QUOTA.CHARGE"), v)
        },
    );
    let admin =
        (0usize..5, pick(PATHS), pick(&["p", "q"]), pick(AMOUNTS)).prop_map(|(k, path, name, amount)| match k {
            0 => (idx("QUOTA.UNSET"), vec![path, name]),
            1 => (idx("QUOTA.DELPATH"), vec![path]),
            2 => (idx("QUOTA.GRANT"), vec![path, name, amount]),
            3 => (idx("QUOTA.RESET"), vec![path, name]),
            _ => (idx("QUOTA.EXTEND"), vec!["job-1".into(), "1000".into()]),
        });
    prop_oneof![
        2 => set,
        4 => reserve,
        3 => commit,
        1 => release,
        3 => charge,
        1 => admin,
        2 => grant,
        1 => revoke,
        1 => grants,
        3 => rule,
        1 => access
    ]
}

/// A shaped command, sometimes with one argument replaced by noise.
fn call() -> impl Strategy<Value = (usize, Vec<String>)> {
    prop_oneof![
        6 => shaped(),
        2 => (shaped(), any::<prop::sample::Index>(), arg()).prop_map(|((c, mut v), i, noise)| {
            if !v.is_empty() {
                let at = i.index(v.len());
                v[at] = noise;
            }
            (c, v)
        }),
        1 => (0usize..64, proptest::collection::vec(arg(), 0..14)),
    ]
}

fn commands() -> Vec<&'static Command> {
    let mut all: Vec<&'static Command> = TREE_COMMANDS.to_vec();
    all.extend([&read::GET, &read::TREE, &read::HOLDS, &read::HISTORY, &read::EVENTS, &read::GRANTS]);
    all
}

/// Whether a SET's limit is one that also gets a `LOW` (some of them do).
fn limit_is_low(args: &[String]) -> bool {
    args.get(5).is_some_and(|l| l == "10" || l == "25.5")
}

fn env(now_ms: u64) -> Env {
    let limits = Limits {
        max_paths: 40,
        max_policies: 4,
        max_holds: 12,
        max_items: 6,
        tombstone_ttl_ms: 5000,
        events_len: 20,
        max_depth: 4,
        usage_hours: 3,
        usage_days: 2,
        usage_series: 2,
        ledger: false,
    };
    Env { now_ms, limits, default_ttl_ms: 1000, due_ms: now_ms, missing_key: false }
}

fn setup_prices() {
    prices::with_book(|book| {
        let video = r#"{"metric": "credits", "rates": {"images": "2"}, "multipliers": {"quality": {"hd": "2", "sd": "1"}}, "minimum": "1"}"#;
        let chat = r#"{"metric": "credits", "rates": {"input_tokens": "2.50/1M"}}"#;
        book.set("video/v", Price::from_json(video).expect("valid price")).expect("room");
        book.set("chat/c", Price::from_json(chat).expect("valid price")).expect("room");
    });
}

/// How many sequences to run: `QUOTA_FUZZ_CASES` (`make fuzz`), else 64. A
/// value that is not a positive number fails the test rather than quietly
/// running the default.
fn cases() -> u32 {
    match std::env::var("QUOTA_FUZZ_CASES") {
        Err(std::env::VarError::NotPresent) => 64,
        Ok(text) => match text.trim().parse::<u32>() {
            Ok(n) if n > 0 => n,
            _ => panic!("QUOTA_FUZZ_CASES must be a positive number of cases, not {text:?}"),
        },
        Err(e) => panic!("QUOTA_FUZZ_CASES: {e}"),
    }
}

/// What the read commands show of a tree: the whole tree, every hold and
/// every event, as JSON text.
fn views(tree: &Tree, env: &Env) -> Vec<String> {
    let calls: [(&Command, &[&str]); 5] = [
        (&read::TREE, &["COUNT", "100000", "FORMAT", "json"]),
        (&read::HOLDS, &["COUNT", "10000"]),
        (&read::EVENTS, &["COUNT", "10000"]),
        (&read::GRANTS, &["/", "p"]),
        (&read::GRANTS, &["a", "q"]),
    ];
    calls
        .iter()
        .map(|(command, args)| {
            let Handler::Read(read) = &command.handler else { unreachable!("a read command") };
            let mut cursor = Args::new(command.name, args);
            match read(tree, &mut cursor, env) {
                Ok(reply) => super::reply::to_json(&reply),
                Err(e) => format!("error: {e:?}"),
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        .. ProptestConfig::default()
    })]

    #[test]
    fn commands_never_panic_and_errors_change_nothing(
        calls in proptest::collection::vec((call(), 0u64..700), 1..60)
    ) {
        setup_prices();
        let all = commands();
        let mut tree = Tree::new();
        let mut now = 1_700_000_000_000u64;
        for ((which, args), advance) in calls {
            now += advance;
            let command = all[which % all.len()];
            let env = env(now);
            tree.expire(now, &env.limits);
            let before = persist::encode(&tree);
            let texts: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut cursor = Args::new(command.name, &texts);
            let result = match &command.handler {
                Handler::Write(write) => write(&mut tree, &mut cursor, &env).map(|a| a.changed),
                Handler::Read(read) => read(&tree, &mut cursor, &env).map(|_| false),
            };
            match result {
                Err(_) => prop_assert_eq!(persist::encode(&tree), before, "{} {:?} failed but changed the tree", command.name, args),
                Ok(changed) => {
                    if !changed {
                        prop_assert_eq!(persist::encode(&tree), before.clone(), "{} {:?} changed a tree it said it did not", command.name, args);
                    }
                    prop_assert_eq!(tree.check_invariants(), Ok(()), "after {} {:?}", command.name, args);
                    // The decoded tree must be the tree that was encoded: the
                    // same bytes again, and the same tree, holds and events
                    // to every read command.
                    let bytes = persist::encode(&tree);
                    let back = persist::decode(&bytes, persist::ENCODING_VERSION);
                    prop_assert!(back.is_ok(), "round trip after {} {:?}: {:?}", command.name, args, back.as_ref().err());
                    let back = back.expect("checked above");
                    prop_assert_eq!(persist::encode(&back), bytes, "re-encoding after {} {:?}", command.name, args);
                    prop_assert_eq!(views(&back, &env), views(&tree, &env), "what reads show after {} {:?} and a round trip", command.name, args);
                }
            }
        }
    }
}
