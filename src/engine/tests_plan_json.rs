//! Plan JSON (issue 15, /work/brief/plans.md "Plan JSON"): every error in
//! its order and text, the canonical form, and the plan book's versions.
//! The Lua library's `PLAN.from_json` gives the same texts.

use crate::plan::{MAX_PLAN_JSON_LEN, MAX_PLANS, Plan, PlanBook};

const P: &str = r#"{"metric":"credits","limit":"10"}"#;

/// The reply `QUOTA.PLAN SET pro <json>` would give for a bad plan.
fn error_of(json: &str) -> String {
    match Plan::from_json("pro", json) {
        Ok((plan, _)) => panic!("accepted {json}: {}", plan.to_json()),
        Err(e) => e.to_string(),
    }
}

/// A plan of one pattern `/` with one policy `p` whose fields are `fields`.
fn policy(fields: &str) -> String {
    format!(r#"{{"paths":{{"/":{{"p":{{{fields}}}}}}}}}"#)
}

#[test]
fn every_error_of_a_plan_in_order() {
    let deep = vec!["s"; 65].join("/");
    let many_policies: Vec<String> = (0..17).map(|i| format!(r#""p{i:02}":{P}"#)).collect();
    let many_patterns: Vec<String> = (0..65).map(|i| format!(r#""x{i}":{{}}"#)).collect();
    // json, the whole reply (a `*` at the end: the reply starts with this)
    let rows: Vec<(String, &str)> = vec![
        // 2-3. JSON, an object
        ("{".into(), "ERR syntax: plan is not valid JSON: EOF while parsing an object at line 1 column 1"),
        ("[]".into(), "ERR syntax: a plan must be a JSON object"),
        ("\"x\"".into(), "ERR syntax: a plan must be a JSON object"),
        // 4. unknown top-level keys first, in byte order
        (
            r#"{"version":0,"zeta":1,"alpha":2}"#.into(),
            "ERR syntax: plan field 'alpha': unknown field (a plan has paths and version)",
        ),
        (r#"{"Paths":{}}"#.into(), "ERR syntax: plan field 'Paths': unknown field (a plan has paths and version)"),
        // 5. version
        (r#"{"version":0}"#.into(), "ERR syntax: plan field 'version': must be an integer from 1 to 9007199254740991"),
        (
            r#"{"version":-1,"paths":{}}"#.into(),
            "ERR syntax: plan field 'version': must be an integer from 1 to 9007199254740991",
        ),
        (
            r#"{"version":1.0,"paths":{}}"#.into(),
            "ERR syntax: plan field 'version': must be an integer from 1 to 9007199254740991",
        ),
        (
            r#"{"version":1e3,"paths":{}}"#.into(),
            "ERR syntax: plan field 'version': must be an integer from 1 to 9007199254740991",
        ),
        (
            r#"{"version":"3","paths":{}}"#.into(),
            "ERR syntax: plan field 'version': must be an integer from 1 to 9007199254740991",
        ),
        (
            r#"{"version":9007199254740992,"paths":{}}"#.into(),
            "ERR syntax: plan field 'version': must be an integer from 1 to 9007199254740991",
        ),
        (
            r#"{"version":123456789012345678901234567890,"paths":{}}"#.into(),
            "ERR syntax: plan field 'version': must be an integer from 1 to 9007199254740991",
        ),
        // 6. paths
        ("{}".into(), "ERR syntax: plan field 'paths': missing"),
        (r#"{"version":2}"#.into(), "ERR syntax: plan field 'paths': missing"),
        (r#"{"paths":[]}"#.into(), "ERR syntax: plan field 'paths': must be an object of path patterns"),
        (r#"{"paths":null}"#.into(), "ERR syntax: plan field 'paths': must be an object of path patterns"),
        // 7. patterns bound, before any pattern is read
        (
            format!(r#"{{"paths":{{"a b":1,{}}}}}"#, many_patterns.join(",")),
            "ERR limit: a plan has at most 64 patterns",
        ),
        // 8. each pattern in byte order: the pattern, its value, its policies
        (
            r#"{"paths":{"b":1,"a//b":{}}}"#.into(),
            "ERR syntax: invalid pattern 'a//b': each segment is a path segment or *",
        ),
        (r#"{"paths":{"a/":{}}}"#.into(), "ERR syntax: invalid pattern 'a/': each segment is a path segment or *"),
        (r#"{"paths":{"a/b*":{}}}"#.into(), "ERR syntax: invalid pattern 'a/b*': each segment is a path segment or *"),
        (
            r#"{"paths":{"a/../b":{}}}"#.into(),
            "ERR syntax: invalid pattern 'a/../b': each segment is a path segment or *",
        ),
        (
            format!(r#"{{"paths":{{"{deep}":{{}}}}}}"#),
            "ERR limit: pattern 's/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s/s...' is deeper than 64 segments",
        ),
        (r#"{"paths":{"/":1}}"#.into(), "ERR syntax: plan field 'paths./': must be an object of policies"),
        (
            r#"{"paths":{"a":{},"b":[],"c":"x"}}"#.into(),
            "ERR syntax: plan field 'paths.b': must be an object of policies",
        ),
        (
            format!(r#"{{"paths":{{"members/*":{{{}}}}}}}"#, many_policies.join(",")),
            "ERR limit: pattern 'members/*' has more than 16 policies",
        ),
        (
            format!(r#"{{"paths":{{"/":{{"a b":{P}}}}}}}"#),
            "ERR syntax: invalid policy name 'a b': use 1-128 printable characters without spaces",
        ),
        (r#"{"paths":{"/":{"p":1}}}"#.into(), "ERR syntax: plan field 'paths./.p': must be an object"),
        (r#"{"paths":{"/":{"a":{},"b":1}}}"#.into(), "ERR syntax: plan field 'paths./.a.metric': missing"),
        (format!(r#"{{"paths":{{"/":{{"p":{P}}},"":{{"p":{P}}}}}}}"#), "ERR syntax: pattern '/' appears twice"),
        (
            format!(r#"{{"paths":{{"/m/*":{{"p":{P}}},"m/*":{{"p":1}}}}}}"#),
            "ERR syntax: plan field 'paths.m/*.p': must be an object",
        ),
        (format!(r#"{{"paths":{{"/m/*":{{"p":{P}}},"m/*":{{"p":{P}}}}}}}"#), "ERR syntax: pattern 'm/*' appears twice"),
        // 9. the depth bound, after every pattern
        (
            format!(
                r#"{{"paths":{{"a":{{{}}},"b":{{"z":{P}}},"c":1}}}}"#,
                (0..16).map(|i| format!(r#""p{i}":{P}"#)).collect::<Vec<_>>().join(",")
            ),
            "ERR syntax: plan field 'paths.c': must be an object of policies",
        ),
        (
            format!(
                r#"{{"paths":{{"a":{{{}}},"b":{{"z":{P}}}}}}}"#,
                (0..16).map(|i| format!(r#""p{i}":{P}"#)).collect::<Vec<_>>().join(",")
            ),
            "ERR limit: the patterns of depth 1 give 17 policy names; a node gets at most 16 from a plan",
        ),
        // A policy: unknown fields first (byte order), then the fields in order.
        (policy(r#""zzz":1,"aaa":2"#), "ERR syntax: plan field 'paths./.p.aaa': unknown field"),
        (policy(r#""Metric":"credits","limit":"1""#), "ERR syntax: plan field 'paths./.p.Metric': unknown field"),
        (policy(""), "ERR syntax: plan field 'paths./.p.metric': missing"),
        (policy(r#""limit":"1""#), "ERR syntax: plan field 'paths./.p.metric': missing"),
        (policy(r#""metric":5"#), "ERR syntax: plan field 'paths./.p.metric': must be a string"),
        (policy(r#""metric":"Credits""#), "ERR unknown metric: 'Credits' (metric names are [a-z][a-z0-9_]{0,31})"),
        (policy(r#""metric":"limit","limit":"1""#), "ERR unknown metric: 'limit' is a keyword, not a metric name"),
        (policy(r#""metric":"credits""#), "ERR syntax: plan field 'paths./.p.limit': missing"),
        (
            policy(r#""metric":"credits","limit":true"#),
            "ERR syntax: plan field 'paths./.p.limit': must be a decimal string or number",
        ),
        (policy(r#""metric":"credits","limit":"-1""#), "ERR invalid amount: '-1' must not be negative"),
        (policy(r#""metric":"credits","limit":-1"#), "ERR invalid amount: '-1' must not be negative"),
        (policy(r#""metric":"credits","limit":1e3"#), "ERR invalid amount: '1e+3' is not a decimal number"),
        (
            policy(r#""metric":"credits","limit":"0.00000000001""#),
            "ERR invalid amount: '0.00000000001' has more than 10 decimal places",
        ),
        (
            policy(r#""metric":"credits","limit":"1000000000000001""#),
            "ERR invalid amount: '1000000000000001' is larger than 10^15 in absolute value",
        ),
        (
            policy(r#""metric":"credits","limit":1,"window":7"#),
            r#"ERR syntax: plan field 'paths./.p.window': must be a string such as "month" or "rolling 24h""#,
        ),
        (
            policy(r#""metric":"credits","limit":1,"window":"fortnight""#),
            "ERR syntax: unknown WINDOW 'fortnight': use none, hour, day, week, month, year or rolling <duration>",
        ),
        (
            policy(r#""metric":"credits","limit":1,"window":"rolling""#),
            "ERR syntax: WINDOW rolling needs a duration such as 30d",
        ),
        (
            policy(r#""metric":"credits","limit":1,"window":"rolling 5s""#),
            "ERR syntax: invalid duration '5s': use a whole number with s, m, h or d, from 60s to 400d",
        ),
        (
            policy(r#""metric":"credits","limit":1,"window":"rolling  60s""#),
            "ERR syntax: invalid duration ' 60s': use a whole number with s, m, h or d, from 60s to 400d",
        ),
        (
            policy(r#""metric":"credits","limit":1,"window":"month 15""#),
            r#"ERR syntax: plan field 'paths./.p.window': must be a string such as "month" or "rolling 24h""#,
        ),
        (
            policy(r#""metric":"credits","limit":1,"window":"bogus x","anchor":40"#),
            "ERR syntax: plan field 'paths./.p.anchor': must be an integer from 1 to 31",
        ),
        (
            policy(r#""metric":"credits","limit":1,"window":"month","anchor":0"#),
            "ERR syntax: plan field 'paths./.p.anchor': must be an integer from 1 to 31",
        ),
        (
            policy(r#""metric":"credits","limit":1,"window":"month","anchor":"3""#),
            "ERR syntax: plan field 'paths./.p.anchor': must be an integer from 1 to 31",
        ),
        (
            policy(r#""metric":"credits","limit":1,"window":"month","anchor":3.0"#),
            "ERR syntax: plan field 'paths./.p.anchor': must be an integer from 1 to 31",
        ),
        (
            policy(r#""metric":"credits","limit":1,"window":"day","anchor":3"#),
            "ERR syntax: ANCHOR applies only to WINDOW week, month and year",
        ),
        (
            policy(r#""metric":"credits","limit":1,"anchor":3"#),
            "ERR syntax: ANCHOR applies only to WINDOW week, month and year",
        ),
        (
            policy(r#""metric":"credits","limit":1,"window":"rolling 1h","anchor":3"#),
            "ERR syntax: ANCHOR applies only to WINDOW week, month and year",
        ),
        (
            policy(r#""metric":"credits","limit":1,"mode":1"#),
            "ERR syntax: plan field 'paths./.p.mode': must be a string",
        ),
        (
            policy(r#""metric":"credits","limit":1,"mode":"fast""#),
            "ERR syntax: MODE must be strict, block or open, not 'fast'",
        ),
        (
            policy(r#""metric":"credits","limit":1,"warn":"80""#),
            "ERR syntax: plan field 'paths./.p.warn': must be an array of percentages such as [80, 90]",
        ),
        (
            policy(r#""metric":"credits","limit":1,"warn":[80.5]"#),
            "ERR syntax: plan field 'paths./.p.warn': must be an array of percentages such as [80, 90]",
        ),
        (
            policy(r#""metric":"credits","limit":1,"warn":[-1]"#),
            "ERR syntax: plan field 'paths./.p.warn': must be an array of percentages such as [80, 90]",
        ),
        (
            policy(r#""metric":"credits","limit":1,"warn":["80"]"#),
            "ERR syntax: plan field 'paths./.p.warn': must be an array of percentages such as [80, 90]",
        ),
        (
            policy(r#""metric":"credits","limit":1,"warn":[0]"#),
            "ERR syntax: WARN takes percentages from 1 to 100 separated by commas, not '0'",
        ),
        (
            policy(r#""metric":"credits","limit":1,"warn":[50,101]"#),
            "ERR syntax: WARN takes percentages from 1 to 100 separated by commas, not '50,101'",
        ),
        (
            policy(r#""metric":"credits","limit":1,"warn":[]"#),
            "ERR syntax: WARN takes percentages from 1 to 100 separated by commas, not ''",
        ),
        (
            policy(r#""metric":"credits","limit":1,"warn":[1,2,3,4,5,6,7,8,9,10,11]"#),
            "ERR limit: at most 10 WARN thresholds per policy",
        ),
        (
            policy(r#""metric":"credits","limit":1,"rollover":[]"#),
            "ERR syntax: plan field 'paths./.p.rollover': must be a decimal string or number",
        ),
        (policy(r#""metric":"credits","limit":1,"rollover":"x""#), "ERR invalid amount: 'x' is not a decimal number"),
        (
            policy(r#""metric":"credits","limit":1,"service":1"#),
            "ERR syntax: plan field 'paths./.p.service': must be a string",
        ),
        (
            policy(r#""metric":"credits","limit":1,"service":"a b""#),
            "ERR syntax: invalid service 'a b': use 1-128 printable characters without spaces",
        ),
        (
            policy(r#""metric":"credits","limit":1,"service":"chat","model":null"#),
            "ERR syntax: plan field 'paths./.p.model': must be a string",
        ),
        (
            policy(r#""metric":"credits","limit":1,"service":"chat","model":"""#),
            "ERR syntax: invalid model '': use 1-128 printable characters without spaces",
        ),
        // then PolicySpec::validate
        (
            policy(r#""metric":"credits","limit":1,"rollover":2"#),
            "ERR syntax: ROLLOVER needs a calendar WINDOW: hour, day, week, month or year",
        ),
        (
            policy(r#""metric":"credits","limit":1,"window":"rolling 1h","rollover":2"#),
            "ERR syntax: ROLLOVER needs a calendar WINDOW: hour, day, week, month or year",
        ),
        (
            policy(r#""metric":"credits","limit":10,"window":"day","rollover":"5.50""#),
            "ERR invalid amount: the ROLLOVER cap 5.5 is below the LIMIT 10",
        ),
        (policy(r#""metric":"credits","limit":1,"model":"m""#), "ERR syntax: MODEL needs SERVICE"),
        // an error quotes what a client wrote clipped to printable ASCII
        (
            r#"{"paths":{"/":{"p":{"metric":"credits","limit":1,"w\u00e9":1}}}}"#.into(),
            "ERR syntax: plan field 'paths./.p.w?': unknown field",
        ),
        (r#"{"\u0000":1}"#.into(), "ERR syntax: plan field '?': unknown field (a plan has paths and version)"),
    ];
    for (json, want) in &rows {
        assert_eq!(error_of(json), *want, "{json}");
    }
}

#[test]
fn the_name_and_the_size_come_first() {
    let json = format!(r#"{{"paths":{{"/":{{"p":{P}}}}}}}"#);
    for (name, want) in [
        ("none", "ERR syntax: 'none' is not a plan name: QUOTA.ASSIGN key NONE leaves plans"),
        ("NoNe", "ERR syntax: 'none' is not a plan name: QUOTA.ASSIGN key NONE leaves plans"),
        ("a b", "ERR syntax: invalid plan name 'a b': use 1-64 characters of A-Z a-z 0-9 _ - . : @"),
        ("", "ERR syntax: invalid plan name '': use 1-64 characters of A-Z a-z 0-9 _ - . : @"),
    ] {
        assert_eq!(Plan::from_json(name, "not json").unwrap_err().to_string(), want);
    }
    assert!(Plan::from_json(&"x".repeat(65), &json).is_err());
    assert!(Plan::from_json(&"x".repeat(64), &json).is_ok());
    assert!(Plan::from_json("a-Z_0.9:x@y", &json).is_ok());
    // 65536 bytes of JSON are accepted, one more is refused before parsing.
    let padded = |len: usize| format!("{json}{}", " ".repeat(len - json.len()));
    assert!(Plan::from_json("pro", &padded(65_536)).is_ok());
    let long = format!("{}{}", padded(65_536), "x");
    assert_eq!(error_of(&long), "ERR limit: a plan is at most 65536 bytes of JSON");
}

#[test]
fn the_stored_json_is_bounded_too() {
    // Short policies fit as sent but not written out with every default:
    // the book refuses them, so everything it stores parses again on load.
    let plan = |per: usize| {
        let patterns: Vec<String> = (0..64)
            .map(|i| {
                let policies: Vec<String> =
                    (0..per).map(|j| format!(r#""p{j:02}":{{"metric":"c","limit":1}}"#)).collect();
                format!(r#""g{i}/*":{{{}}}"#, policies.join(","))
            })
            .collect();
        format!(r#"{{"paths":{{{}}}}}"#, patterns.join(","))
    };
    let big = plan(16);
    assert!(big.len() <= MAX_PLAN_JSON_LEN);
    let mut book = PlanBook::default();
    let err = book.set_json("big", &big).unwrap_err().to_string();
    assert!(
        err.starts_with("ERR limit: a plan is at most 65536 bytes of JSON, written out with every default"),
        "{err}"
    );
    assert_eq!(book.len(), 0);
    assert_eq!(book.set_json("fits", &plan(12)).unwrap(), (1, true));
    let stored = book.get("fits").unwrap().to_json().to_string();
    assert!(stored.len() <= MAX_PLAN_JSON_LEN);
    assert!(Plan::from_json("fits", &stored).is_ok());
}

#[test]
fn bounds_hold_at_their_edge() {
    let patterns: Vec<String> = (0..64).map(|i| format!(r#""x{i}/*":{{"p":{P}}}"#)).collect();
    assert!(Plan::from_json("pro", &format!(r#"{{"paths":{{{}}}}}"#, patterns.join(","))).is_ok());
    let policies: Vec<String> = (0..16).map(|i| format!(r#""p{i}":{P}"#)).collect();
    assert!(Plan::from_json("pro", &format!(r#"{{"paths":{{"/":{{{}}}}}}}"#, policies.join(","))).is_ok());
    let deep = vec!["*"; 64].join("/");
    assert!(Plan::from_json("pro", &format!(r#"{{"paths":{{"{deep}":{{"p":{P}}}}}}}"#)).is_ok());
    let (_, v) = Plan::from_json("pro", r#"{"paths":{},"version":9007199254740991}"#).unwrap();
    assert_eq!(v, Some(9_007_199_254_740_991));
}

const EXAMPLE: &str = r#"{"paths": {"/": {"monthly": {"metric": "credits", "limit": "1000", "window": "month", "rollover": "2000"},
                 "rpm": {"metric": "requests", "limit": "60", "window": "rolling 60s", "mode": "block"}},
           "members/*": {"allowance": {"metric": "credits", "limit": "50", "window": "month", "warn": [50, 80]}}},
 "version": 7}"#;

#[test]
fn the_canonical_json_has_every_field_in_a_fixed_order() {
    let (plan, version) = Plan::from_json("pro", EXAMPLE).unwrap();
    assert_eq!(version, Some(7));
    assert_eq!(plan.version, 7);
    let want = concat!(
        r#"{"paths":{"/":{"monthly":{"metric":"credits","limit":"1000","window":"month","anchor":1,"mode":"strict","warn":[80,90],"rollover":"2000"},"#,
        r#""rpm":{"metric":"requests","limit":"60","window":"rolling 1m","mode":"block","warn":[80,90]}},"#,
        r#""members/*":{"allowance":{"metric":"credits","limit":"50","window":"month","anchor":1,"mode":"strict","warn":[50,80]}}},"#,
        r#""version":7}"#
    );
    assert_eq!(plan.to_json(), want);
    assert_eq!(plan.content_json(), want.replace(r#","version":7"#, ""));
    // Defaults, numbers as decimal strings, case, order of everything.
    let (plan, version) = Plan::from_json(
        "x",
        r#"{"version":3,"paths":{"/b/*":{"z":{"model":"m1","service":"chat","limit":0.50,"metric":"usd","warn":[90,50,90],"mode":"OPEN","window":"Month","anchor":15,"rollover":100}},
            "*":{"a\"b\\":{"metric":"credits","limit":"007.10"}},"/":{}}}"#,
    )
    .unwrap();
    assert_eq!(version, Some(3));
    let want = concat!(
        r#"{"paths":{"*":{"a\"b\\":{"metric":"credits","limit":"7.1","window":"none","mode":"strict","warn":[80,90]}},"#,
        r#""/":{},"#,
        r#""b/*":{"z":{"metric":"usd","limit":"0.5","window":"month","anchor":15,"mode":"open","warn":[50,90],"rollover":"100","service":"chat","model":"m1"}}},"#,
        r#""version":3}"#
    );
    assert_eq!(plan.to_json(), want);
    // Without a version the plan waits for the book's (0 until then).
    let (plan, version) = Plan::from_json("x", r#"{"paths":{}}"#).unwrap();
    assert_eq!((version, plan.to_json()), (None, r#"{"paths":{},"version":0}"#));
    assert_eq!(plan.with_version(4).to_json(), r#"{"paths":{},"version":4}"#);
}

#[test]
fn canonical_json_reads_back_as_the_same_plan() {
    let samples = [
        EXAMPLE,
        r#"{"paths":{"a/*/c":{"p":{"metric":"credits","limit":"1.5","window":"rolling 400d","warn":[100]}},"*/*/*":{"q":{"metric":"a","limit":0,"window":"year","rollover":"9","service":"s"}}},"version":12}"#,
        r#"{"paths":{"/":{"h":{"metric":"tokens","limit":"1000000000000000","window":"hour","mode":"block","warn":[1,2,3,4,5,6,7,8,9,10]}}},"version":9007199254740991}"#,
    ];
    for json in samples {
        let (plan, _) = Plan::from_json("pro", json).unwrap();
        let (again, version) = Plan::from_json("pro", plan.to_json()).unwrap();
        assert_eq!(again, plan, "{json}");
        assert_eq!(version, Some(plan.version));
        assert_eq!(again.to_json(), plan.to_json());
        assert!(again.same(&plan) && again.same_content(&plan));
    }
    // Content ignores the version and the way it was written.
    let (a, _) = Plan::from_json(
        "pro",
        r#"{"paths":{"/":{"p":{"metric":"credits","limit":"10","window":"month"}}},"version":2}"#,
    )
    .unwrap();
    let (b, _) = Plan::from_json(
        "pro",
        r#"{"paths":{"":{"p":{"limit":10.0,"metric":"credits","window":"MONTH","anchor":1,"warn":[90,80]}}}}"#,
    )
    .unwrap();
    assert!(a.same_content(&b) && !a.same(&b));
    let (c, _) =
        Plan::from_json("pro", r#"{"paths":{"/":{"p":{"metric":"credits","limit":"11","window":"month"}}}}"#).unwrap();
    assert!(!a.same_content(&c));
    // A duplicate key keeps its last value (serde_json's Map).
    let (d, _) = Plan::from_json(
        "pro",
        r#"{"paths":{"/":{"p":{"metric":"credits","limit":"11","limit":"10","window":"month"}}}}"#,
    )
    .unwrap();
    assert!(a.same_content(&d));
}

#[test]
fn a_parsed_plan_gives_its_policies_by_precedence() {
    let (plan, _) = Plan::from_json("pro", EXAMPLE).unwrap();
    let names =
        |path: &str| plan.policies_for(path).iter().map(|(n, s)| format!("{n}:{}", s.limit)).collect::<Vec<_>>();
    assert_eq!(names(""), ["monthly:1000", "rpm:60"]);
    assert_eq!(names("members/u7"), ["allowance:50"]);
    assert!(names("members").is_empty());
    let (plan, _) = Plan::from_json(
        "pro",
        r#"{"paths":{"*/*":{"a":{"metric":"c","limit":"1"},"b":{"metric":"c","limit":"2"}},"members/*":{"a":{"metric":"c","limit":"3"}}}}"#,
    )
    .unwrap();
    let names =
        |path: &str| plan.policies_for(path).iter().map(|(n, s)| format!("{n}:{}", s.limit)).collect::<Vec<_>>();
    assert_eq!(names("members/u7"), ["a:3", "b:2"]);
    assert_eq!(names("teams/t1"), ["a:1", "b:2"]);
}

const SMALL: &str = r#"{"paths":{"/":{"p":{"metric":"credits","limit":"10"}}}}"#;
const OTHER: &str = r#"{"paths":{"/":{"p":{"metric":"credits","limit":"20"}}}}"#;

fn with_version(json: &str, v: u64) -> String {
    format!("{},\"version\":{v}}}", &json[..json.len() - 1])
}

#[test]
fn plan_set_versions_and_the_unchanged_rule() {
    let mut book = PlanBook::default();
    // A new plan takes 1, or the version its JSON names.
    assert_eq!(book.set_json("pro", SMALL).unwrap(), (1, true));
    assert_eq!(book.set_json("team", &with_version(SMALL, 7)).unwrap(), (7, true));
    // The same content, with no version or the current one: nothing changes.
    assert_eq!(book.set_json("pro", SMALL).unwrap(), (1, false));
    assert_eq!(book.set_json("pro", &with_version(SMALL, 1)).unwrap(), (1, false));
    let same_written_otherwise = r#"{"paths":{"":{"p":{"limit":10,"metric":"credits","warn":[80,90]}}}}"#;
    assert_eq!(book.set_json("pro", same_written_otherwise).unwrap(), (1, false));
    // Another content takes the next version, or the one named (above the current).
    assert_eq!(book.set_json("pro", OTHER).unwrap(), (2, true));
    assert_eq!(book.set_json("pro", &with_version(SMALL, 5)).unwrap(), (5, true));
    // The same content under a higher version is a change (the version moves).
    assert_eq!(book.set_json("pro", &with_version(SMALL, 6)).unwrap(), (6, true));
    assert_eq!(
        book.get("pro").unwrap().to_json(),
        with_version(
            r#"{"paths":{"/":{"p":{"metric":"credits","limit":"10","window":"none","mode":"strict","warn":[80,90]}}}}"#,
            6
        )
    );
    let before = book.get("pro").unwrap().clone();
    for (json, want) in [
        (with_version(OTHER, 3), "ERR plan version 3 is not above the current 6: leave version out to take the next"),
        (with_version(OTHER, 6), "ERR plan version 6 is not above the current 6: leave version out to take the next"),
        (with_version(SMALL, 2), "ERR plan version 2 is not above the current 6: leave version out to take the next"),
    ] {
        assert_eq!(book.set_json("pro", &json).unwrap_err().to_string(), want);
    }
    assert!(book.get("pro").unwrap().same(&before));
    // PLAN GET's output copies a plan with its version.
    let mut copy = PlanBook::default();
    assert_eq!(copy.set_json("pro", before.to_json()).unwrap(), (6, true));
    assert!(copy.get("pro").unwrap().same(&before));
    // A deleted plan starts again at 1 (or the version named).
    assert!(book.remove("pro"));
    assert!(!book.remove("pro"));
    assert_eq!(book.set_json("pro", SMALL).unwrap(), (1, true));
    assert_eq!(book.names().cloned().collect::<Vec<_>>(), ["pro", "team"]);
}

#[test]
fn the_book_holds_at_most_max_plans() {
    let mut book = PlanBook::default();
    for i in 0..MAX_PLANS {
        book.set_json(&format!("p{i}"), SMALL).unwrap();
    }
    assert_eq!(
        book.set_json("one-more", SMALL).unwrap_err().to_string(),
        "ERR limit: the plan book already has 1000 plans"
    );
    // A bad plan is refused for what it is before the bound is checked.
    assert_eq!(book.set_json("one-more", "[]").unwrap_err().to_string(), "ERR syntax: a plan must be a JSON object");
    // The plans there can still change.
    assert_eq!(book.set_json("p0", OTHER).unwrap(), (2, true));
    assert_eq!(book.len(), MAX_PLANS);
}

/// `inflight` (SPEC §8): `true` or `false`, written last and only when
/// true; the INFLIGHT rules apply with the plan's error framing.
#[test]
fn a_plan_policy_may_be_inflight() {
    let json = policy(r#""metric":"requests","limit":"3","inflight":true"#);
    let (plan, _) = Plan::from_json("pro", &json).unwrap();
    assert!(plan.to_json().contains(r#""warn":[80,90],"inflight":true}"#), "{}", plan.to_json());
    let off = policy(r#""metric":"requests","limit":"3","inflight":false"#);
    assert!(!Plan::from_json("pro", &off).unwrap().0.to_json().contains("inflight"));
    // fields, the reply
    let rows = [
        (
            r#""metric":"requests","limit":"3","inflight":1"#,
            "ERR syntax: plan field 'paths./.p.inflight': must be true or false",
        ),
        (
            r#""metric":"requests","limit":"3","inflight":true,"window":"day""#,
            "ERR syntax: an INFLIGHT policy counts what is held now and takes no WINDOW",
        ),
        (
            r#""metric":"requests","limit":"3","inflight":true,"mode":"block""#,
            "ERR syntax: an INFLIGHT policy is strict or open (MODE block does not count holds)",
        ),
        (
            r#""metric":"requests","limit":"3","inflight":true,"low":"1""#,
            "ERR syntax: LOW does not apply to an INFLIGHT policy",
        ),
    ];
    for (fields, reply) in rows {
        let got = error_of(&policy(fields));
        assert!(got.starts_with(reply), "{fields}: {got}");
    }
}

/// `anchor` and `tz` (issue 21): the anchor's JSON type follows the window
/// (an integer day for `month`, a string for `week` and `year`), the zone
/// is a string; the canonical JSON shows the anchor as replies do (a
/// `week` or `year` anchor only when not the default) and the zone right
/// after it, only when not UTC.
#[test]
fn a_plan_policy_may_have_a_zone_and_an_anchor() {
    // fields, what the canonical JSON has between the window and the mode
    let rows = [
        (r#""window":"week""#, r#""window":"week","mode""#),
        (r#""window":"week","anchor":"SUN""#, r#""window":"week","anchor":"sunday","mode""#),
        (r#""window":"week","anchor":"Monday""#, r#""window":"week","mode""#),
        (
            r#""window":"week","anchor":"saturday","tz":"-03:00""#,
            r#""window":"week","anchor":"saturday","tz":"-03:00","mode""#,
        ),
        (r#""window":"year""#, r#""window":"year","mode""#),
        (r#""window":"year","anchor":"01-01""#, r#""window":"year","mode""#),
        (r#""window":"year","anchor":"04-01""#, r#""window":"year","anchor":"04-01","mode""#),
        (
            r#""window":"year","anchor":"02-29","tz":"+14:00""#,
            r#""window":"year","anchor":"02-29","tz":"+14:00","mode""#,
        ),
        (r#""window":"month","tz":"+05:30""#, r#""window":"month","anchor":1,"tz":"+05:30","mode""#),
        (r#""tz":"-09:30","anchor":31,"window":"MONTH""#, r#""window":"month","anchor":31,"tz":"-09:30","mode""#),
        (r#""window":"day","tz":"+05:45""#, r#""window":"day","tz":"+05:45","mode""#),
        // UTC is the default, however it is written.
        (r#""window":"day","tz":"utc""#, r#""window":"day","mode""#),
        (r#""window":"day","tz":"+00:00""#, r#""window":"day","mode""#),
        (r#""window":"month","tz":"-00:00""#, r#""window":"month","anchor":1,"mode""#),
    ];
    for (fields, want) in rows {
        let json = policy(&format!(r#""metric":"credits","limit":"10",{fields}"#));
        let plan = Plan::from_json("pro", &json).unwrap_or_else(|e| panic!("{fields}: {e}")).0.with_version(1);
        assert!(plan.to_json().contains(want), "{fields}: {}", plan.to_json());
        // The canonical JSON reads back as the same plan.
        let (again, _) = Plan::from_json("pro", plan.to_json()).unwrap();
        assert_eq!(again.to_json(), plan.to_json());
        assert_eq!(again, plan);
    }
    // fields, the whole reply: type errors by field first, then the
    // window's own checks in their order (window, ANCHOR, TZ)
    let rows = [
        (
            r#""window":"week","anchor":7"#,
            r#"ERR syntax: plan field 'paths./.p.anchor': must be a string such as "sunday""#,
        ),
        (
            r#""window":"year","anchor":401"#,
            r#"ERR syntax: plan field 'paths./.p.anchor': must be a string such as "04-01""#,
        ),
        (
            r#""window":"Year","anchor":null"#,
            r#"ERR syntax: plan field 'paths./.p.anchor': must be a string such as "04-01""#,
        ),
        (
            r#""window":"month","anchor":"5""#,
            "ERR syntax: plan field 'paths./.p.anchor': must be an integer from 1 to 31",
        ),
        (
            r#""window":"day","anchor":true"#,
            "ERR syntax: plan field 'paths./.p.anchor': must be an integer from 1 to 31",
        ),
        (
            r#""window":"day","tz":5"#,
            r#"ERR syntax: plan field 'paths./.p.tz': must be a string such as "Africa/Lagos" or "+01:00""#,
        ),
        (
            r#""window":"fortnight","tz":["UTC"]"#,
            r#"ERR syntax: plan field 'paths./.p.tz': must be a string such as "Africa/Lagos" or "+01:00""#,
        ),
        (
            r#""window":"week","anchor":"sun day""#,
            "ERR syntax: ANCHOR for WINDOW week is a day such as sunday, not 'sun day'",
        ),
        (r#""window":"week","anchor":"""#, "ERR syntax: ANCHOR for WINDOW week is a day such as sunday, not ''"),
        (
            r#""window":"year","anchor":"4-1""#,
            "ERR syntax: ANCHOR for WINDOW year is a date MM-DD such as 04-01, not '4-1'",
        ),
        (
            r#""window":"year","anchor":"02-30""#,
            "ERR syntax: ANCHOR for WINDOW year is a date MM-DD such as 04-01, not '02-30'",
        ),
        (
            r#""window":"year","anchor":"04-31""#,
            "ERR syntax: ANCHOR for WINDOW year is a date MM-DD such as 04-01, not '04-31'",
        ),
        (
            r#""window":"year","anchor":"13-01""#,
            "ERR syntax: ANCHOR for WINDOW year is a date MM-DD such as 04-01, not '13-01'",
        ),
        (r#""window":"day","anchor":"sunday""#, "ERR syntax: ANCHOR applies only to WINDOW week, month and year"),
        (r#""anchor":"04-01""#, "ERR syntax: ANCHOR applies only to WINDOW week, month and year"),
        (
            r#""window":"rolling 1h","anchor":"sunday""#,
            "ERR syntax: ANCHOR applies only to WINDOW week, month and year",
        ),
        (
            r#""window":"fortnight","anchor":"sunday","tz":"x""#,
            "ERR syntax: unknown WINDOW 'fortnight': use none, hour, day, week, month, year or rolling <duration>",
        ),
        (
            r#""window":"week","anchor":"someday","tz":"x""#,
            "ERR syntax: ANCHOR for WINDOW week is a day such as sunday, not 'someday'",
        ),
        (r#""window":"hour","tz":"+01:00""#, "ERR syntax: TZ applies only to WINDOW day, week, month and year"),
        (r#""window":"rolling 1h","tz":"UTC""#, "ERR syntax: TZ applies only to WINDOW day, week, month and year"),
        (r#""tz":"+01:00""#, "ERR syntax: TZ applies only to WINDOW day, week, month and year"),
        (r#""window":"none","tz":"+01:00""#, "ERR syntax: TZ applies only to WINDOW day, week, month and year"),
        (
            r#""window":"day","tz":"+1:00""#,
            "ERR syntax: unknown time zone '+1:00': use an IANA name such as Africa/Lagos or an offset such as +01:00",
        ),
        (
            r#""window":"day","tz":"+14:30""#,
            "ERR syntax: unknown time zone '+14:30': use an IANA name such as Africa/Lagos or an offset such as +01:00",
        ),
        (
            r#""window":"day","tz":"+05:60""#,
            "ERR syntax: unknown time zone '+05:60': use an IANA name such as Africa/Lagos or an offset such as +01:00",
        ),
        (
            r#""window":"day","tz":"Mars/Olympus_Mons""#,
            "ERR syntax: unknown time zone 'Mars/Olympus_Mons': use an IANA name such as Africa/Lagos or an offset such as +01:00",
        ),
        (
            r#""window":"day","tz":"""#,
            "ERR syntax: unknown time zone '': use an IANA name such as Africa/Lagos or an offset such as +01:00",
        ),
    ];
    for (fields, want) in rows {
        assert_eq!(error_of(&policy(&format!(r#""metric":"credits","limit":"10",{fields}"#))), want, "{fields}");
    }
}

/// Named zones in a plan keep the table's spelling, links and zero-offset
/// names included (`Etc/UTC` stays named).
#[test]
fn a_plan_policy_may_name_an_iana_zone() {
    // given, canonical
    for (given, want) in [
        ("America/New_York", "America/New_York"),
        ("america/new_york", "America/New_York"),
        ("US/Eastern", "US/Eastern"),
        ("Etc/UTC", "Etc/UTC"),
        ("Europe/London", "Europe/London"),
        ("Asia/Kathmandu", "Asia/Kathmandu"),
    ] {
        let json = policy(&format!(r#""metric":"credits","limit":"10","window":"month","tz":"{given}""#));
        let plan = Plan::from_json("pro", &json).unwrap().0.with_version(1);
        assert!(plan.to_json().contains(&format!(r#""anchor":1,"tz":"{want}","mode""#)), "{}", plan.to_json());
        let (again, _) = Plan::from_json("pro", plan.to_json()).unwrap();
        assert_eq!(again, plan);
    }
}
