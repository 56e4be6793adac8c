//! Labels and archive (SPEC §10): tables of cases for QUOTA.LABEL's
//! rules, archive and restore, the archived denial of RESERVE and CHARGE,
//! and QUOTA.TREE's TAG and ARCHIVED filters.

use super::labels::{parse_note, parse_tags};
use super::tests_support::{d, spec};
use super::view::TreeQuery;
use super::*;
use super::{access, events, labels, outcome, persist};

fn set(paths: &[&str]) -> ChargeSet {
    ChargeSet { paths: paths.iter().map(|p| p.to_string()).collect(), service: None, model: None }
}

fn reserve(paths: &[&str], amount: &str) -> ReserveRequest {
    ReserveRequest {
        set: set(paths),
        id: None,
        ttl_ms: 60_000,
        batch: BatchMode::All,
        items: vec![vec![("credits".into(), d(amount))]],
        brief: false,
        meta: None,
    }
}

fn charge(paths: &[&str], amount: &str, check: bool) -> ChargeRequest {
    ChargeRequest {
        set: set(paths),
        id: None,
        check,
        cost: vec![("credits".into(), d(amount))],
        brief: false,
        meta: None,
    }
}

#[test]
fn tags_parse_sorted_without_duplicates_or_fail_with_the_label_texts() {
    let bad = "ERR syntax: a tag must be 1-64 characters of A-Z a-z 0-9 _ - . : @";
    let long = "x".repeat(65);
    let many = (0..17).map(|i| format!("t{i}")).collect::<Vec<_>>().join(",");
    // input, tags or the error's text
    let rows: &[(&str, std::result::Result<&[&str], &str>)] = &[
        ("", Ok(&[])),
        ("b,a,b", Ok(&["a", "b"])),
        ("team:ml,B,@x", Ok(&["@x", "B", "team:ml"])),
        ("a,,b", Err(bad)),
        (",", Err(bad)),
        ("a b", Err(bad)),
        (".", Err(bad)),
        ("..", Err(bad)),
        ("a/b", Err(bad)),
        (&long, Err(bad)),
        (&many, Err("ERR limit: at most 16 tags per path")),
    ];
    for (input, want) in rows {
        let got = parse_tags(input.as_bytes()).map_err(|e| e.to_string());
        match want {
            Ok(tags) => assert_eq!(
                got.as_deref(),
                Ok(tags.iter().map(|t| t.to_string()).collect::<Vec<_>>().as_slice()),
                "{input}"
            ),
            Err(text) => assert_eq!(got.unwrap_err(), *text, "{input}"),
        }
    }
    // 16 distinct after dropping duplicates fit.
    let sixteen = (0..16).map(|i| format!("t{i}")).chain(["t0".into()]).collect::<Vec<_>>().join(",");
    assert_eq!(parse_tags(sixteen.as_bytes()).unwrap().len(), 16);
}

#[test]
fn notes_follow_the_grant_rule_and_empty_clears() {
    type Row<'a> = (&'a [u8], std::result::Result<Option<&'a str>, &'a str>);
    let rows: &[Row] = &[
        (b"", Ok(None)),
        (b"hello world", Ok(Some("hello world"))),
        (b"a\tb", Err("ERR syntax: NOTE must be text without control characters")),
        (b"\xff", Err("ERR syntax: NOTE must be text without control characters")),
        (&[b'x'; 257], Err("ERR limit: NOTE is longer than 256 bytes")),
    ];
    for (input, want) in rows {
        let got = parse_note(input).map_err(|e| e.to_string());
        let want = want.map(|n| n.map(str::to_string)).map_err(str::to_string);
        assert_eq!(got, want, "{input:?}");
    }
}

#[test]
fn label_creates_sets_clears_and_reports_changes() {
    let l = Limits::default();
    let mut t = Tree::new();
    // (note, tags) given -> (note, tags) after, changed
    type Row = (
        Option<Option<&'static str>>,
        Option<&'static [&'static str]>,
        Option<&'static str>,
        &'static [&'static str],
        bool,
    );
    let rows: &[Row] = &[
        (Some(Some("n1")), None, Some("n1"), &[], true),
        (None, Some(&["a", "b"]), Some("n1"), &["a", "b"], true),
        (None, Some(&["a", "b"]), Some("n1"), &["a", "b"], false),
        (Some(None), None, None, &["a", "b"], true),
        (None, Some(&[]), None, &[], true),
        (None, Some(&[]), None, &[], false),
    ];
    for (i, (note, tags, want_note, want_tags, changed)) in rows.iter().enumerate() {
        let note = note.map(|n| n.map(str::to_string));
        let tags = tags.map(|ts| ts.iter().map(|t| t.to_string()).collect());
        let o = t.label("projects/p1", note, tags, 0, &l).unwrap();
        assert_eq!(o.path, "projects/p1", "{i}");
        assert_eq!(o.note.as_deref(), *want_note, "{i}");
        assert_eq!(o.tags, want_tags.iter().map(|t| t.to_string()).collect::<Vec<_>>(), "{i}");
        assert_eq!(o.changed, *changed, "{i}");
    }
    // Cleared labels leave no box behind.
    let id = t.find("projects/p1").unwrap();
    assert!(t.node(id).unwrap().labels.is_none());
    assert_eq!(t.path_count(), 3);
    // Neither NOTE nor TAGS, and path bounds, are errors that change nothing.
    assert_eq!(t.label("x", None, None, 0, &l).unwrap_err().to_string(), "ERR syntax: QUOTA.LABEL needs NOTE or TAGS");
    let small = Limits { max_paths: 3, ..l };
    assert!(t.label("y", Some(Some("n".into())), None, 0, &small).unwrap_err().to_string().starts_with("ERR limit:"));
    assert_eq!(t.path_count(), 3);
}

#[test]
fn archive_and_restore_flip_the_nodes_own_flag() {
    let l = Limits::default();
    let mut t = Tree::new();
    t.set_policy("projects/p1", "m", spec("credits", "100"), 0, &l).unwrap();
    // (command, path, reply or error)
    let rows: &[(bool, &str, std::result::Result<bool, &str>)] = &[
        (true, "projects", Ok(true)),
        (true, "projects", Ok(false)),
        (false, "projects/p1", Ok(false)),
        (true, "", Ok(true)),
        (false, "", Ok(true)),
        (false, "projects", Ok(true)),
        (false, "projects", Ok(false)),
        (true, "nope", Err("NOTFOUND no such path 'nope'")),
    ];
    for (i, (archive, path, want)) in rows.iter().enumerate() {
        let got = t.set_archived(path, *archive).map_err(|e| e.to_string());
        assert_eq!(got, want.map_err(str::to_string), "{i}");
    }
}

#[test]
fn an_archived_reach_refuses_reserve_and_charge_before_rules_and_amounts() {
    let l = Limits::default();
    let mut t = Tree::new();
    t.set_policy("", "m", spec("credits", "10"), 0, &l).unwrap();
    t.set_policy("projects/p1", "m", spec("credits", "100"), 0, &l).unwrap();
    let live = t.reserve(reserve(&["projects/p1"], "1"), 0, &l).unwrap();
    t.set_archived("projects", true).unwrap();
    t.set_archived("projects/p1", true).unwrap();
    // A request over its amounts too: the archived refusal comes first.
    for (paths, first) in [(&["projects/p1"][..], "projects"), (&["other", "projects/p1/x"][..], "projects")] {
        let r = t.reserve(reserve(paths, "50"), 0, &l).unwrap();
        assert!(!r.allowed && r.fits == 0 && r.reserved == 0, "{paths:?}");
        assert_eq!(r.denied_by, ["projects#archived", "projects/p1#archived"]);
        assert_eq!(r.message, format!("path {first} is archived"));
        assert!(r.checks.is_empty() && r.access.iter().all(|c| c.archived));
        for check in [false, true] {
            let c = t.charge(charge(paths, "50", check), 0, &l).unwrap();
            assert!(!c.allowed && c.charged.is_empty(), "{paths:?} {check}");
            assert_eq!(c.denied_by, ["projects#archived", "projects/p1#archived"]);
        }
    }
    // Nothing recorded, no node created, no event; the earlier hold settles.
    assert!(t.find("projects/p1/x").is_none() && t.find("other").is_none());
    assert_eq!(t.get("", 0).unwrap().spent, vec![]);
    assert!(t.events.is_empty());
    let id = live.id.unwrap();
    t.commit(&id, None, Some(vec![("credits".into(), d("1"))]), 0, &l).unwrap();
    assert_eq!(t.get("", 0).unwrap().spent, vec![("credits".to_string(), d("1"))]);
    // The root archived refuses everything, shown as `/`.
    t.set_archived("", true).unwrap();
    let r = t.reserve(reserve(&["other"], "1"), 0, &l).unwrap();
    assert_eq!(r.denied_by, ["/#archived"]);
    assert_eq!(r.message, "path / is archived");
    // Restored, other paths work again; one under an archived node does not.
    t.set_archived("", false).unwrap();
    t.set_archived("projects/p1", false).unwrap();
    assert!(t.reserve(reserve(&["other"], "1"), 0, &l).unwrap().allowed);
    assert_eq!(t.reserve(reserve(&["projects/p1"], "1"), 0, &l).unwrap().denied_by, ["projects#archived"]);
}

#[test]
fn tree_filters_keep_tagged_nodes_and_hide_archived_ones() {
    let l = Limits::default();
    let mut t = Tree::new();
    let tag = |t: &mut Tree, p: &str, tags: &[&str]| {
        t.label(p, None, Some(tags.iter().map(|s| s.to_string()).collect()), 0, &l).unwrap();
    };
    tag(&mut t, "a/x", &["ml"]);
    tag(&mut t, "a/y", &["web"]);
    tag(&mut t, "b", &["ml"]);
    tag(&mut t, "c/z", &["ml"]);
    t.label("d", Some(Some("n".into())), None, 0, &l).unwrap();
    t.set_archived("c", true).unwrap();
    fn paths(v: &outcome::NodeView, out: &mut Vec<String>) {
        out.push(v.path.clone());
        v.children.iter().for_each(|c| paths(c, out));
    }
    // (top, tag, archived) -> the nodes shown, preorder
    let rows: &[(&str, Option<&str>, bool, &[&str])] = &[
        ("", None, false, &["/", "a", "a/x", "a/y", "b", "d"]),
        ("", None, true, &["/", "a", "a/x", "a/y", "b", "c", "c/z", "d"]),
        ("", Some("ml"), false, &["/", "a", "a/x", "b"]),
        ("", Some("ml"), true, &["/", "a", "a/x", "b", "c", "c/z"]),
        ("", Some("none"), false, &["/"]),
        ("c", None, false, &["c", "c/z"]),
        ("a", Some("web"), false, &["a", "a/y"]),
    ];
    for (top, tag, archived, want) in rows {
        let query = TreeQuery { tag: *tag, archived: *archived, ..TreeQuery::new(top, 64, 1000) };
        let v = t.tree_view_filtered(&query, 0, 0, None).unwrap();
        let mut got = Vec::new();
        paths(&v.root, &mut got);
        assert_eq!(got, *want, "{top} {tag:?} {archived}");
        assert_eq!(v.nodes, want.len());
    }
    // COUNT counts returned nodes.
    let query = TreeQuery { tag: Some("ml"), archived: false, ..TreeQuery::new("", 64, 2) };
    let v = t.tree_view_filtered(&query, 0, 0, None).unwrap();
    assert_eq!(v.nodes, 2);
    assert!(v.truncated);
}

#[test]
fn tree_after_pages_the_top_nodes_children() {
    let l = Limits::default();
    let mut t = Tree::new();
    let tag = |t: &mut Tree, p: &str, tags: &[&str]| {
        t.label(p, None, Some(tags.iter().map(|s| s.to_string()).collect()), 0, &l).unwrap();
    };
    // p's children by name (byte order): a b c d e f10 f2; d archived.
    for (path, tags) in [("p/a", &["ml"][..]), ("p/b/x", &["ml"]), ("p/c", &[]), ("p/d", &["ml"]), ("p/e", &["ml"])] {
        tag(&mut t, path, tags);
    }
    tag(&mut t, "p/f10", &[]);
    tag(&mut t, "p/f2", &[]);
    t.set_archived("p/d", true).unwrap();
    fn paths(v: &outcome::NodeView, out: &mut Vec<String>) {
        out.push(v.path.clone());
        v.children.iter().for_each(|c| paths(c, out));
    }
    let all_kids: &[&str] = &["p", "p/a", "p/b", "p/c", "p/e", "p/f10", "p/f2"];
    // (top, after, tag, archived, depth, count) -> (the nodes shown, preorder; the top node's `more`)
    type Row<'r> = (&'r str, Option<&'r str>, Option<&'r str>, bool, usize, usize, &'r [&'r str], usize);
    let rows: &[Row] = &[
        ("p", None, None, false, 1, 1000, all_kids, 0),
        // Pages of two: AFTER the last name shown, until the end.
        ("p", None, None, false, 1, 3, &["p", "p/a", "p/b"], 4),
        ("p", Some("b"), None, false, 1, 3, &["p", "p/c", "p/e"], 2),
        ("p", Some("e"), None, false, 1, 3, &["p", "p/f10", "p/f2"], 0),
        ("p", Some("f2"), None, false, 1, 3, &["p"], 0),
        // Names that are not children: between two, before all, after all.
        ("p", Some("bb"), None, false, 1, 1000, &["p", "p/c", "p/e", "p/f10", "p/f2"], 0),
        ("p", Some("f1"), None, false, 1, 1000, &["p", "p/f10", "p/f2"], 0),
        ("p", Some("A"), None, false, 1, 1000, all_kids, 0),
        ("p", Some("zz"), None, false, 1, 1000, &["p"], 0),
        // TAG filters, then AFTER; ARCHIVED shows d.
        ("p", Some("a"), Some("ml"), false, 64, 1000, &["p", "p/b", "p/b/x", "p/e"], 0),
        ("p", Some("a"), Some("ml"), true, 64, 1000, &["p", "p/b", "p/b/x", "p/d", "p/e"], 0),
        ("p", Some("c"), None, true, 1, 3, &["p", "p/d", "p/e"], 2),
        ("p", Some("c"), None, false, 1, 3, &["p", "p/e", "p/f10"], 1),
        // DEPTH: deeper levels are whole; DEPTH 0 shows no children.
        ("p", Some("a"), None, false, 64, 3, &["p", "p/b", "p/b/x"], 4),
        ("p", Some("b"), None, false, 0, 1000, &["p"], 0),
        ("", Some("o"), None, false, 2, 1000, &["/", "p", "p/a", "p/b", "p/c", "p/e", "p/f10", "p/f2"], 0),
        ("", Some("p"), None, false, 2, 1000, &["/"], 0),
    ];
    for &(top, after, tag, archived, depth, count, want, more) in rows {
        let query = TreeQuery { tag, archived, after, ..TreeQuery::new(top, depth, count) };
        let v = t.tree_view_filtered(&query, 0, 0, None).unwrap();
        let mut got = Vec::new();
        paths(&v.root, &mut got);
        let what = format!("{top} AFTER {after:?} TAG {tag:?} ARCHIVED {archived} DEPTH {depth} COUNT {count}");
        assert_eq!(got, want, "{what}");
        assert_eq!(v.root.more, more, "{what}");
        assert_eq!(v.nodes, want.len(), "{what}");
        assert_eq!(v.truncated, more > 0 || v.root.children.iter().any(|c| c.more > 0), "{what}");
    }
}

#[test]
fn after_names_one_segment() {
    // name -> error text (None: accepted)
    let rows: &[(&str, Option<&str>)] = &[
        ("p1", None),
        ("a.b:c@d-e_f", None),
        ("zz", None),
        ("", Some("ERR syntax: invalid name after AFTER '': empty segment")),
        ("a/b", Some("ERR syntax: invalid name after AFTER 'a/b': segments use only A-Z a-z 0-9 _ - . : @")),
        ("/a", Some("ERR syntax: invalid name after AFTER '/a': segments use only A-Z a-z 0-9 _ - . : @")),
        ("..", Some("ERR syntax: invalid name after AFTER '..': '.' and '..' are not segments")),
        ("a b", Some("ERR syntax: invalid name after AFTER 'a b': segments use only A-Z a-z 0-9 _ - . : @")),
    ];
    for (name, want) in rows {
        let got = names::parse_segment(name, "name after AFTER");
        assert_eq!(got.as_ref().err().map(|e| e.to_string()), want.map(str::to_string), "{name:?}");
        if want.is_none() {
            assert_eq!(got.unwrap(), *name);
        }
    }
    let long = "x".repeat(65);
    assert!(names::parse_segment(&long, "name after AFTER").is_err());
    assert!(names::parse_segment(&long[..64], "name after AFTER").is_ok());
}

#[test]
fn meta_pairs_follow_the_name_and_value_rules() {
    use super::meta::{Meta, add};
    let long = "v".repeat(257);
    // (pairs already there, name, value) -> error text (None: added)
    let rows: &[(usize, &str, &str, Option<&str>)] = &[
        (0, "user", "bob", None),
        (0, "a_1", "x y", None),
        (0, "User", "bob", Some("ERR syntax: META name 'User' must be [a-z][a-z0-9_]{0,31} and not a keyword")),
        (0, "cost", "1", Some("ERR syntax: META name 'cost' must be [a-z][a-z0-9_]{0,31} and not a keyword")),
        (0, "1a", "1", Some("ERR syntax: META name '1a' must be [a-z][a-z0-9_]{0,31} and not a keyword")),
        (1, "m0", "again", Some("ERR syntax: META name 'm0' given twice")),
        (0, "user", "a\tb", Some("ERR syntax: META value must be text without control characters")),
        (0, "user", "", Some("ERR syntax: META value must be text without control characters")),
        (0, "user", &long, Some("ERR limit: a META value is longer than 256 bytes")),
        (15, "user", "x", None),
        (16, "user", "x", Some("ERR limit: at most 16 META pairs")),
    ];
    for (have, name, value, want) in rows {
        let mut meta: Meta = (0..*have).map(|i| (format!("m{i}"), "v".to_string())).collect();
        let got = add(&mut meta, name, value).err().map(|e| e.to_string());
        assert_eq!(got.as_deref(), *want, "{have} {name}");
        assert_eq!(meta.len(), have + usize::from(want.is_none()));
    }
}

#[test]
fn meta_goes_with_the_hold_to_holds_and_its_expired_event_and_to_disallowed_events() {
    let l = Limits::default();
    let mut t = Tree::new();
    let meta = || Some(Box::new(vec![("user".to_string(), "bob".to_string()), ("job".to_string(), "7".to_string())]));
    let mut req = reserve(&["p1"], "3");
    req.meta = meta();
    req.id = Some("r1".into());
    req.ttl_ms = 1000;
    t.reserve(req, 0, &l).unwrap();
    assert_eq!(t.holds_view_at("", 10, 0)[0].meta.as_ref(), meta().as_deref());
    // A duplicate ignores its META: the first answer wins.
    let mut again = reserve(&["p1"], "3");
    again.id = Some("r1".into());
    again.meta = Some(Box::new(vec![("user".into(), "eve".into())]));
    assert!(t.reserve(again, 1, &l).unwrap().duplicate);
    assert_eq!(t.holds_view_at("", 10, 0)[0].meta.as_ref(), meta().as_deref());
    t.expire(2000, &l);
    let expired = t.events.back().unwrap();
    assert_eq!(expired.kind, events::EventKind::Expired);
    assert_eq!(expired.meta, meta());
    // A charge access rules refuse carries its META to each disallowed event.
    t.add_rule("", access::Rule::Allow, access::Entry { service: "x".into(), model: None }, 0, &l).unwrap();
    let mut c = charge(&["p1"], "1", false);
    c.meta = meta();
    assert!(t.charge(c, 2000, &l).unwrap().allowed);
    let disallowed = t.events.back().unwrap();
    assert_eq!(disallowed.kind, events::EventKind::Disallowed);
    assert_eq!(disallowed.meta, meta());
}

/// A tree with labels on two nodes (one archived), a live hold with META
/// and an `expired` and a `disallowed` event with META.
fn labelled_tree() -> Tree {
    let l = Limits::default();
    let mut t = Tree::new();
    t.label("projects/p1", Some(Some("the p1 project ✓".into())), Some(vec!["ml".into(), "team:a".into()]), 0, &l)
        .unwrap();
    t.set_archived("projects", true).unwrap();
    t.set_policy("members", "cap", spec("credits", "3.5"), 0, &l).unwrap();
    let meta = || Some(Box::new(vec![("user".to_string(), "bob".to_string())]));
    let mut r = reserve(&["members/u1"], "1");
    (r.meta, r.ttl_ms) = (meta(), 10);
    t.reserve(r, 0, &l).unwrap();
    let mut live = reserve(&["members/u1"], "2");
    live.meta = Some(Box::new(vec![("job".into(), "j-7".into()), ("user".into(), "eve".into())]));
    t.reserve(live, 20, &l).unwrap();
    t.expire(20, &l);
    t.add_rule("members", access::Rule::Allow, access::Entry { service: "chat".into(), model: None }, 20, &l).unwrap();
    let mut c = charge(&["members/u1"], "1", false);
    c.meta = meta();
    t.charge(c, 20, &l).unwrap();
    t
}

#[test]
fn labels_and_meta_survive_encode_and_decode_and_cost_nothing_when_absent() {
    let t = labelled_tree();
    let bytes = persist::encode(&t);
    let back = persist::decode(&bytes, persist::ENCODING_VERSION).unwrap();
    back.check_invariants().unwrap();
    assert_eq!(persist::encode(&back), bytes);
    let text = |t: &Tree| {
        format!(
            "{:?}\n{:?}\n{:?}\n{:?}",
            t.get("projects", 30),
            t.get("projects/p1", 30),
            t.holds_view_at("", 10, 0),
            t.events_since(0, 100).collect::<Vec<_>>()
        )
    };
    assert_eq!(text(&back), text(&t));
    assert!(text(&t).contains("archived: true") && text(&t).contains("j-7"));
    assert_eq!(back.events.iter().filter(|e| e.meta.is_some()).count(), 2);
    // A loaded archived node still refuses.
    let mut loaded = persist::decode(&bytes, persist::ENCODING_VERSION).unwrap();
    let r = loaded.reserve(reserve(&["projects/p1"], "1"), 30, &Limits::default()).unwrap();
    assert_eq!(r.denied_by, ["projects#archived"]);
    // Without labels or META: version 4's bytes and two 0 bytes (and
    // version 6's one more: no zones).
    let plain = persist::encode(&Tree::new());
    assert_eq!(plain[plain.len() - 3..], [0, 0, 0]);
    assert!(t.estimated_bytes() > Tree::new().estimated_bytes());
    // Corrupt payloads are errors or valid trees, never panics.
    for i in 0..bytes.len() {
        let mut b = bytes.clone();
        b[i] ^= 0xFF;
        if let Ok(t) = persist::decode(&b, persist::ENCODING_VERSION) {
            t.check_invariants().unwrap();
        }
        assert!(persist::decode(&bytes[..i], persist::ENCODING_VERSION).is_err());
    }
    // A usage part (not written by this module yet) is refused, not skipped.
    let mut with_usage = plain.clone();
    let n = with_usage.len();
    with_usage[n - 3] = 1;
    assert!(persist::decode(&with_usage, persist::ENCODING_VERSION).is_err());
}

#[test]
fn restore_refuses_labels_and_meta_no_command_could_make() {
    fn set_labels(t: &mut Tree, labels: labels::Labels) {
        let id = t.find("projects/p1").unwrap();
        t.node_mut(id).unwrap().labels = Some(Box::new(labels));
    }
    let base = || labels::Labels { note: None, tags: Box::new(["ml".into()]), archived: false };
    type Change = Box<dyn Fn(&mut Tree)>;
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(move |t| set_labels(t, labels::Labels { tags: Box::new([]), ..base() })), "empty labels"),
        (Box::new(move |t| set_labels(t, labels::Labels { note: Some("a\nb".into()), ..base() })), "invalid note"),
        (
            Box::new(move |t| set_labels(t, labels::Labels { note: Some("x".repeat(257).into()), ..base() })),
            "invalid note",
        ),
        (
            Box::new(move |t| set_labels(t, labels::Labels { tags: Box::new(["b".into(), "a".into()]), ..base() })),
            "tags not sorted",
        ),
        (
            Box::new(move |t| set_labels(t, labels::Labels { tags: Box::new(["a".into(), "a".into()]), ..base() })),
            "tags not sorted",
        ),
        (Box::new(move |t| set_labels(t, labels::Labels { tags: Box::new(["a/b".into()]), ..base() })), "invalid tag"),
        (
            Box::new(move |t| {
                set_labels(t, labels::Labels { tags: (0..17).map(|i| format!("t{i:02}").into()).collect(), ..base() })
            }),
            "too many tags",
        ),
        (Box::new(|t: &mut Tree| t.holds.values_mut().for_each(|h| h.meta = Some(Box::new(vec![])))), "empty META"),
        (
            Box::new(|t: &mut Tree| {
                t.holds.values_mut().for_each(|h| h.meta = Some(Box::new(vec![("Bad".into(), "v".into())])))
            }),
            "META name",
        ),
        (
            Box::new(|t: &mut Tree| {
                t.holds
                    .values_mut()
                    .for_each(|h| h.meta = Some(Box::new(vec![("a".into(), "v".into()), ("a".into(), "w".into())])))
            }),
            "given twice",
        ),
        (
            Box::new(|t: &mut Tree| {
                t.holds.values_mut().for_each(|h| h.meta = Some(Box::new(vec![("a".into(), "\u{7f}".into())])))
            }),
            "META value",
        ),
        (
            Box::new(|t: &mut Tree| {
                t.holds.values_mut().for_each(|h| {
                    h.meta = Some(Box::new((0..17).map(|i| (format!("m{i}"), "v".to_string())).collect()))
                })
            }),
            "at most 16",
        ),
        (
            Box::new(|t: &mut Tree| {
                t.events.iter_mut().for_each(|e| e.meta = Some(Box::new(vec![("a".into(), "v".into())])))
            }),
            "invalid META",
        ),
        (Box::new(|t: &mut Tree| t.events.iter_mut().for_each(|e| e.meta = None)), ""),
        (
            Box::new(|t: &mut Tree| {
                t.events
                    .iter_mut()
                    .filter(|e| e.meta.is_some())
                    .for_each(|e| e.meta = Some(Box::new(vec![("a".into(), "".into())])))
            }),
            "invalid META",
        ),
    ];
    assert!(labelled_tree().events.iter().any(|e| e.kind == events::EventKind::Warning));
    for (i, (change, why)) in cases.iter().enumerate() {
        let mut t = labelled_tree();
        change(&mut t);
        if why.is_empty() {
            assert!(persist::decode(&persist::encode(&t), persist::ENCODING_VERSION).is_ok(), "case {i}");
            continue;
        }
        let err = persist::decode(&persist::encode(&t), persist::ENCODING_VERSION)
            .map(|_| ())
            .expect_err(&format!("case {i}"));
        assert!(err.contains(why), "case {i}: {err}");
    }
    assert!(persist::decode(&persist::encode(&labelled_tree()), persist::ENCODING_VERSION).is_ok());
}

/// `meta` became a keyword (META, issue 18), so no new command takes it as
/// a metric; but the previous release accepted it, and what it stored
/// still loads: a tree written by encoding 4 with a policy, spent, a hold
/// and events on `meta`, a tree following a plan on it (and its usage
/// recorded since), the plan book and the price book.
#[test]
fn stored_metrics_named_meta_still_load() {
    use super::plan::Plan;
    use super::pricing::{Price, PriceBook};
    use super::tests_support::as_v5;
    let l = Limits::default();
    assert!(names::parse_metric("meta").is_err());
    let mut t = Tree::new();
    t.set_policy("", "m", spec("meta", "10"), 0, &l).unwrap();
    let set = ChargeSet { paths: vec!["p".into()], service: None, model: None };
    let cost = vec![("meta".to_string(), d("3"))];
    let req = ReserveRequest {
        set: set.clone(),
        id: Some("r1".into()),
        ttl_ms: 1000,
        batch: BatchMode::All,
        items: vec![cost.clone(), cost.clone()],
        brief: false,
        meta: None,
    };
    assert!(t.reserve(req, 0, &l).unwrap().allowed);
    t.commit("r1", Some(0), None, 1, &l).unwrap();
    let charge = ChargeRequest { set, id: Some("c1".into()), check: false, cost, brief: false, meta: None };
    t.charge(charge, 2, &l).unwrap();
    t.expire(5000, &l);
    // Version 4's bytes: version 6's without usage, labels and zones (three `None`s).
    let v4 = persist::encode(&crate::tests_support::without_usage(t.clone()));
    let v4 = &v4[..v4.len() - 3];
    let back = persist::decode(v4, 4).unwrap();
    assert_eq!(persist::encode(&back), crate::tests_support::as_v6(&as_v5(v4)));
    assert_eq!(back.get("", 5000).unwrap().policies[0].metric, "meta");
    // Encoding 5, with the usage recorded on `meta`, loads too.
    let v6 = persist::encode(&t);
    let back = persist::decode(&v6[..v6.len() - 1], 5).unwrap();
    assert_eq!(persist::encode(&back), v6);

    // A plan and a price on `meta`: the books of the previous release load.
    let plan = Plan::new("pro", 1, vec![("*".into(), vec![("m".into(), spec("meta", "5"))])]).unwrap();
    let mut plans = super::plan::PlanBook::default();
    plans.set(plan).unwrap();
    let bytes = persist::encode_plans(&plans);
    assert_eq!(persist::encode_plans(&persist::decode_plans(&bytes).unwrap()), bytes);
    assert!(Plan::from_json("pro", plans.get("pro").unwrap().to_json()).is_err(), "PLAN SET refuses it");
    let json = r#"{"metric":"meta","rates":{"tokens":"2"}}"#;
    assert!(Price::from_json(json).is_err(), "PRICE SET refuses it");
    let mut price = Price::from_json(&json.replace("\"meta\"", "\"credits\"")).unwrap();
    price.metric = "meta".into();
    // A usage name and an attribute `meta`, in another price.
    let json = r#"{"metric":"credits","rates":{"meta":"1"},"multipliers":{"meta_x":{"a":"2"}}}"#;
    assert!(Price::from_json(json).is_err(), "PRICE SET refuses it");
    let mut other = Price::from_json(&json.replace("\"meta\"", "\"input\"")).unwrap();
    let rate = other.rates.remove("input").unwrap();
    other.rates.insert("meta".into(), rate);
    let mut book = PriceBook::default();
    book.set("chat/m1", price).unwrap();
    book.set("chat/m2", other).unwrap();
    let bytes = persist::encode_book(&book);
    assert_eq!(persist::encode_book(&persist::decode_book(&bytes, persist::PRICE_BOOK_VERSION).unwrap()), bytes);
}

// ----- the version 5 golden fixture ---------------------------------------

/// A tree with everything encoding 5 added: usage buckets in two series
/// and two days, a note and tags, an archived node, a live hold with META,
/// an `expired` event with META and the expired hold's finished id that
/// keeps it, and a `disallowed` event with a charge's META.
/// The usage settings the fixture was recorded under (the defaults then:
/// 48 hours, 90 days), so later defaults do not change what it holds.
fn v5_limits() -> Limits {
    Limits { usage_hours: 48, usage_days: 90, ..Limits::default() }
}

fn v5_tree() -> Tree {
    let l = v5_limits();
    let day = 86_400_000;
    let meta = |user: &str| Some(Box::new(vec![("user".to_string(), user.to_string()), ("job".into(), "j1".into())]));
    let mut t = Tree::new();
    t.set_policy("", "monthly", spec("credits", "1000"), 0, &l).unwrap();
    t.label("projects/p1", Some(Some("the first project".into())), Some(vec!["blue".into(), "eu".into()]), 0, &l)
        .unwrap();
    let chat =
        ChargeSet { paths: vec!["projects/p1".into()], service: Some("chat".into()), model: Some("mini".into()) };
    let c = ChargeRequest {
        set: chat.clone(),
        id: Some("c1".into()),
        check: false,
        cost: vec![("credits".into(), d("2.5"))],
        brief: false,
        meta: None,
    };
    t.charge(c, 10, &l).unwrap();
    let c = ChargeRequest {
        set: set(&["projects/p2"]),
        id: None,
        check: false,
        cost: vec![("credits".into(), d("4"))],
        brief: false,
        meta: None,
    };
    t.charge(c, day + 20, &l).unwrap();
    // A hold that expires (its event and finished id keep its META), one
    // that stays live with META.
    let r = ReserveRequest {
        set: chat.clone(),
        id: Some("h-exp".into()),
        ttl_ms: 1000,
        meta: meta("u5"),
        ..reserve(&[], "3")
    };
    assert!(t.reserve(r, day + 30, &l).unwrap().allowed);
    let r = ReserveRequest {
        set: chat,
        id: Some("h-live".into()),
        ttl_ms: 10 * day,
        meta: meta("u6"),
        ..reserve(&[], "1")
    };
    assert!(t.reserve(r, day + 40, &l).unwrap().allowed);
    t.expire(day + 2000, &l);
    // A disallowed charge with META, recorded.
    t.add_rule("projects/p2", access::Rule::Allow, access::Entry { service: "image".into(), model: None }, 0, &l)
        .unwrap();
    let c = ChargeRequest {
        set: set(&["projects/p2"]),
        id: Some("c2".into()),
        check: false,
        cost: vec![("credits".into(), d("1"))],
        brief: false,
        meta: meta("u7"),
    };
    assert_eq!(t.charge(c, day + 3000, &l).unwrap().access.len(), 1);
    t.set_archived("projects/old", true).unwrap_err();
    t.label("projects/old", None, Some(vec!["gone".into()]), day + 3000, &l).unwrap();
    assert!(t.set_archived("projects/old", true).unwrap());
    t
}

fn v5_text(t: &Tree) -> String {
    let now = 86_400_000 + 4000;
    let l = v5_limits();
    let mut out = String::new();
    for p in ["", "projects/p1", "projects/p2", "projects/old"] {
        out += &format!("{:?}\n", t.get(p, now));
    }
    out += &format!("{:?}\n", t.tree_view_filtered(&TreeQuery::new("", 8, 100), now, now, None));
    out += &format!("{:?}\n", t.holds_view("", 10));
    out += &format!("{:?}\n", t.events_since(0, 100).collect::<Vec<_>>());
    for id in ["c2", "h-exp"] {
        out += &format!("{:?}\n", t.done_entry(id));
    }
    for by in [usage::By::Hour, usage::By::Day] {
        let q = usage::UsageQuery { by, group: Some(usage::Group::Model), ..usage::UsageQuery::default() };
        out += &format!("{:?}\n", t.usage("", &q, now, &l));
    }
    out
}

/// Writes `tests/fixtures/tree-v5.bin` and `.txt` (run once, by hand,
/// when encoding 5 is new: `cargo test -p quota-engine -- --ignored write_tree_v5`).
#[test]
#[ignore]
fn write_tree_v5_fixture() {
    let tree = v5_tree();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures");
    // Version 5's bytes: version 6's without its trailing `None`.
    let bytes = persist::encode(&tree);
    std::fs::write(format!("{dir}/tree-v5.bin"), &bytes[..bytes.len() - 1]).unwrap();
    std::fs::write(format!("{dir}/tree-v5.txt"), v5_text(&tree)).unwrap();
}

/// A tree with usage, labels, an archived node and META written by
/// encoding 5 (`tests/fixtures/tree-v5.bin`) loads, reads as it did then
/// (`tree-v5.txt`), and is written back byte for byte.
#[test]
fn a_version_5_tree_still_loads() {
    let bytes = include_bytes!("../../tests/fixtures/tree-v5.bin");
    let tree = persist::decode(bytes, 5).unwrap();
    let text = crate::tests_support::without_base_limit(&v5_text(&tree));
    assert_eq!(text, include_str!("../../tests/fixtures/tree-v5.txt"));
    assert_eq!(persist::encode(&tree), crate::tests_support::as_v6(bytes));
    tree.check_invariants().unwrap();
    // The fixture is what the builder makes now.
    assert_eq!(persist::encode(&v5_tree()), crate::tests_support::as_v6(bytes));
}
