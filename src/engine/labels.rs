//! Labels and archive (SPEC §10): a node's note, its tags and whether it
//! is archived. Most nodes have none of these, so a node keeps them in an
//! `Option<Box<Labels>>` that is `None` until `QUOTA.LABEL` or
//! `QUOTA.ARCHIVE` first touches it.
//!
//! Lua twin: lua/src/66_labels.lua.

use super::error::{Error, Result};
use super::policy::check_note;

/// Most tags a node carries.
pub const MAX_TAGS: usize = 16;
/// Longest tag (a path segment).
pub const MAX_TAG_LEN: usize = 64;

/// A node's labels. Never stored empty: a node whose note, tags and flag
/// are all cleared goes back to `labels: None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    /// The note, 1–256 bytes of text without control characters.
    pub note: Option<Box<str>>,
    /// The tags, sorted bytewise, without duplicates, at most `MAX_TAGS`.
    pub tags: Box<[Box<str>]>,
    /// Whether the node itself is archived (SPEC §10).
    pub archived: bool,
}

impl Labels {
    pub fn is_empty(&self) -> bool {
        self.note.is_none() && self.tags.is_empty() && !self.archived
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.binary_search_by(|t| (**t).cmp(tag)).is_ok()
    }

    /// Heap bytes, for `MEMORY USAGE`.
    pub fn extra_bytes(&self) -> usize {
        std::mem::size_of::<Labels>()
            + self.note.as_ref().map_or(0, |n| n.len())
            + self.tags.iter().map(|t| t.len() + std::mem::size_of::<Box<str>>()).sum::<usize>()
    }
}

const TAG_ERROR: &str = "a tag must be 1-64 characters of A-Z a-z 0-9 _ - . : @";

/// One tag: a path segment (`A-Z a-z 0-9 _ - . : @`, 1–64, not `.`/`..`).
/// Lua twin: `label_check_tag` (lua/src/66_labels.lua).
pub fn check_tag(tag: &str) -> Result<()> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b"_-.:@".contains(&b);
    if tag.is_empty() || tag.len() > MAX_TAG_LEN || tag == "." || tag == ".." || !tag.bytes().all(allowed) {
        return Err(Error::syntax(TAG_ERROR));
    }
    Ok(())
}

/// `TAGS t1,t2,...`: each tag checked, sorted bytewise, duplicates
/// dropped, at most `MAX_TAGS`; `""` is the empty list (clears the tags).
/// Lua twin: `label_parse_tags` (lua/src/66_labels.lua).
pub fn parse_tags(text: &[u8]) -> Result<Vec<String>> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let text = std::str::from_utf8(text).map_err(|_| Error::syntax(TAG_ERROR))?;
    let mut tags = Vec::new();
    for tag in text.split(',') {
        check_tag(tag)?;
        tags.push(tag.to_string());
    }
    tags.sort_unstable();
    tags.dedup();
    if tags.len() > MAX_TAGS {
        return Err(Error::Limit(format!("at most {MAX_TAGS} tags per path")));
    }
    Ok(tags)
}

/// `NOTE text`: the grant NOTE rule, except `""` clears the note (`None`).
/// Lua twin: `label_parse_note` (lua/src/66_labels.lua).
pub fn parse_note(text: &[u8]) -> Result<Option<String>> {
    if text.is_empty() { Ok(None) } else { check_note(text).map(Some) }
}

/// Checks stored labels (restore): the rules above, and never empty.
#[allow(dead_code)]
pub(crate) fn validate(labels: &Labels) -> std::result::Result<(), String> {
    if labels.is_empty() {
        return Err("empty labels".into());
    }
    if let Some(note) = &labels.note
        && check_note(note.as_bytes()).is_err()
    {
        return Err("invalid note".into());
    }
    if labels.tags.len() > MAX_TAGS {
        return Err("too many tags".into());
    }
    for (i, tag) in labels.tags.iter().enumerate() {
        if check_tag(tag).is_err() {
            return Err("invalid tag".into());
        }
        if i > 0 && labels.tags[i - 1] >= *tag {
            return Err("tags not sorted".into());
        }
    }
    Ok(())
}
