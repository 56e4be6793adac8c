//! Names and paths: the validation rules of SPEC §1 in one place.
//!
//! A *path* names a node of the tree. Its canonical form has no leading
//! slash (`projects/p1`), and the root is the empty string internally and
//! `/` when shown to a person. A *metric* names an additive quantity.
//!
//! Lua twin: the names and paths of lua/src/40_names.lua; `clip` is `D.clip` (lua/src/10_decimal.lua).

use super::error::{Error, Result};

/// Deepest path accepted, whatever the configuration says.
pub const MAX_DEPTH_HARD: usize = 64;
/// Longest path segment.
pub const MAX_SEGMENT_LEN: usize = 64;
/// Longest policy name, service, model or reservation id.
pub const MAX_NAME_LEN: usize = 128;

/// Words of the command grammar; a metric may not be one of them, so that a
/// `COST` list can never swallow the next keyword.
pub const KEYWORDS: &[&str] = &[
    "path", "also", "id", "ttl", "service", "model", "all", "upto", "dryrun", "brief", "cost", "usage", "item",
    "check", "metric", "limit", "window", "anchor", "mode", "warn", "rollover", "depth", "format", "count", "since",
    "strict", "block", "open", "none", "rolling", "meta", "tz",
];

/// Parses a client path into its canonical form. `depth_limit` is the
/// configured maximum number of segments.
/// Lua twin: `parse_path` (lua/src/40_names.lua).
pub fn parse_path(text: &str, depth_limit: usize) -> Result<String> {
    let body = text.strip_prefix('/').unwrap_or(text);
    if body.is_empty() {
        return Ok(String::new());
    }
    let mut depth = 0;
    for segment in body.split('/') {
        depth += 1;
        if depth > depth_limit.min(MAX_DEPTH_HARD) {
            return Err(Error::Limit(format!(
                "path '{}' is deeper than {} segments",
                clip(text),
                depth_limit.min(MAX_DEPTH_HARD)
            )));
        }
        check_segment(segment).map_err(|why| Error::syntax(format!("invalid path '{}': {why}", clip(text))))?;
    }
    Ok(body.to_string())
}

/// One path segment, as a client names a child (`QUOTA.TREE … AFTER
/// name`): the segment rules of [`parse_path`], no `/`. `what` names the
/// argument in errors.
/// Lua twin: `Args:next_segment` (lua/src/40_names.lua).
pub fn parse_segment<'t>(text: &'t str, what: &str) -> Result<&'t str> {
    check_segment(text).map_err(|why| Error::syntax(format!("invalid {what} '{}': {why}", clip(text))))?;
    Ok(text)
}

fn check_segment(segment: &str) -> std::result::Result<(), &'static str> {
    if segment.is_empty() {
        return Err("empty segment");
    }
    if segment.len() > MAX_SEGMENT_LEN {
        return Err("segment longer than 64 characters");
    }
    if segment == "." || segment == ".." {
        return Err("'.' and '..' are not segments");
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_-.:@".contains(&b);
    if !segment.bytes().all(allowed) {
        return Err("segments use only A-Z a-z 0-9 _ - . : @");
    }
    Ok(())
}

/// Shows a canonical path to a person: the root is `/`.
/// Lua twin: `display_path` (lua/src/40_names.lua).
pub fn display_path(canonical: &str) -> &str {
    if canonical.is_empty() { "/" } else { canonical }
}

/// Iterates the ancestors of a canonical path, root first, the path last.
/// Lua twin: `prefixes` (lua/src/40_names.lua).
pub fn prefixes(canonical: &str) -> impl Iterator<Item = &str> {
    let ends = canonical.match_indices('/').map(|(i, _)| i).chain((!canonical.is_empty()).then_some(canonical.len()));
    std::iter::once("").chain(ends.map(move |end| &canonical[..end]))
}

/// The parent of a non-root canonical path.
/// Lua twin: `parent_of` (lua/src/40_names.lua).
pub fn parent_of(canonical: &str) -> &str {
    canonical.rfind('/').map_or("", |i| &canonical[..i])
}

/// The last segment of a non-root canonical path.
/// Lua twin: `leaf_of` (lua/src/40_names.lua).
pub fn leaf_of(canonical: &str) -> &str {
    canonical.rfind('/').map_or(canonical, |i| &canonical[i + 1..])
}

/// The number of segments of a canonical path (0 for the root).
/// Lua twin: `depth_of` (lua/src/40_names.lua).
pub fn depth_of(path: &str) -> usize {
    if path.is_empty() { 0 } else { path.split('/').count() }
}

/// Whether `path` is `root` or lies below it (both canonical).
/// Lua twin: `is_within` (lua/src/40_names.lua).
pub fn is_within(path: &str, root: &str) -> bool {
    root.is_empty()
        || path == root
        || (path.len() > root.len() && path.starts_with(root) && path.as_bytes()[root.len()] == b'/')
}

/// Keywords added after a release that took them as metric names (`meta`:
/// issue 18; `tz`: issue 21). New commands refuse them; stored data keeps them
/// ([`parse_stored_metric`]).
pub const NEWER_KEYWORDS: &[&str] = &["meta", "tz"];

/// A metric name read from stored data (RDB, `DUMP`, the plan and price
/// books): the rule of [`parse_metric`] as the release that stored it had
/// it, so a name that later became a keyword still loads.
/// Lua twin: `parse_stored_metric` (lua/src/40_names.lua).
pub fn parse_stored_metric(text: &str) -> Result<String> {
    if NEWER_KEYWORDS.contains(&text) {
        return Ok(text.to_string());
    }
    parse_metric(text)
}

/// Metric names: `[a-z][a-z0-9_]{0,31}`, never a keyword.
/// Lua twin: `parse_metric` (lua/src/40_names.lua).
pub fn parse_metric(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let well_formed = !bytes.is_empty()
        && bytes.len() <= 32
        && bytes[0].is_ascii_lowercase()
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    if !well_formed {
        return Err(Error::UnknownMetric(format!("'{}' (metric names are [a-z][a-z0-9_]{{0,31}})", clip(text))));
    }
    if KEYWORDS.contains(&text) {
        return Err(Error::UnknownMetric(format!("'{text}' is a keyword, not a metric name")));
    }
    Ok(text.to_string())
}

/// Policy names, services, models and reservation ids: 1–128 printable
/// ASCII characters without spaces. `what` names the argument in errors.
/// Lua twin: `parse_name` (lua/src/40_names.lua).
pub fn parse_name(text: &str, what: &str) -> Result<String> {
    let ok = !text.is_empty() && text.len() <= MAX_NAME_LEN && text.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        return Err(Error::syntax(format!(
            "invalid {what} '{}': use 1-{MAX_NAME_LEN} printable characters without spaces",
            clip(text)
        )));
    }
    Ok(text.to_string())
}

/// User text quoted in an error: at most 60 characters (57 and `...`),
/// each outside printable ASCII shown as `?`. Error replies must be plain
/// ASCII: Redis's error path turns characters into single bytes, and one
/// whose low byte is zero (`Ā`, U+0100) would end the string early.
/// Lua twin: `D.clip` (lua/src/10_decimal.lua).
pub fn clip(text: &str) -> String {
    let safe = |c: char| if c == ' ' || c.is_ascii_graphic() { c } else { '?' };
    if text.chars().count() > 60 {
        let head: String = text.chars().take(57).map(safe).collect();
        format!("{head}...")
    } else {
        text.chars().map(safe).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_to_their_canonical_form() {
        // input, canonical (None = error)
        let rows: &[(&str, Option<&str>)] = &[
            ("/", Some("")),
            ("", Some("")),
            ("projects/p1", Some("projects/p1")),
            ("/projects/p1", Some("projects/p1")),
            ("members/u7@acme.io", Some("members/u7@acme.io")),
            ("a:b/c-d/e_f/G.9", Some("a:b/c-d/e_f/G.9")),
            ("projects/p1/", None),
            ("//a", None),
            ("a//b", None),
            ("a/./b", None),
            ("a/../b", None),
            ("a b", None),
            ("a/é", None),
            ("a/b*", None),
        ];
        for (input, want) in rows {
            assert_eq!(parse_path(input, 16).ok().as_deref(), *want, "input {input:?}");
        }
        let long_segment = "x".repeat(65);
        assert!(parse_path(&long_segment, 16).is_err());
        assert!(parse_path(&"x".repeat(64), 16).is_ok());
    }

    #[test]
    fn depth_is_bounded() {
        let deep16 = vec!["s"; 16].join("/");
        let deep17 = vec!["s"; 17].join("/");
        assert!(parse_path(&deep16, 16).is_ok());
        assert!(matches!(parse_path(&deep17, 16), Err(Error::Limit(_))));
    }

    #[test]
    fn prefixes_run_from_root_to_path() {
        assert_eq!(prefixes("").collect::<Vec<_>>(), vec![""]);
        assert_eq!(prefixes("a").collect::<Vec<_>>(), vec!["", "a"]);
        assert_eq!(prefixes("a/bb/c").collect::<Vec<_>>(), vec!["", "a", "a/bb", "a/bb/c"]);
        assert_eq!(parent_of("a/bb/c"), "a/bb");
        assert_eq!(parent_of("a"), "");
        assert_eq!(leaf_of("a/bb/c"), "c");
        assert!(is_within("a/b", "a"));
        assert!(!is_within("ab", "a"));
        assert!(is_within("ab", ""));
    }

    #[test]
    fn metric_names_follow_the_rule() {
        for good in ["credits", "usd", "input_tokens", "a", "x9_", &"m".repeat(32)] {
            assert!(parse_metric(good).is_ok(), "{good}");
        }
        for bad in ["", "Credits", "9a", "_a", "a-b", "cost", "path", &"m".repeat(33)] {
            assert!(parse_metric(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn clipped_text_is_printable_ascii_and_at_most_60_characters() {
        // input, clipped
        let long_with_controls = format!("\u{1}{}", "Ā".repeat(70));
        let rows: &[(&str, &str)] = &[("acme", "acme"), ("Ā/x", "?/x"), ("😀\n\0é", "????"), ("a b~", "a b~")];
        for (input, want) in rows {
            assert_eq!(clip(input), *want, "{input:?}");
        }
        let clipped = clip(&long_with_controls);
        assert_eq!(clipped, format!("{}...", "?".repeat(57)));
    }
}
