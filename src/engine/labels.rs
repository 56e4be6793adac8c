//! Labels and archive (SPEC §10): a node's note, its tags and whether it
//! is archived. Most nodes have none of these, so a node keeps them in an
//! `Option<Box<Labels>>` that is `None` until `QUOTA.LABEL` or
//! `QUOTA.ARCHIVE` first touches it.
//!
//! Lua twin: lua/src/66_labels.lua.

use super::access::{AccessCheck, Refusals, Rule};
use super::error::{Error, Result};
use super::names;
use super::paths::NodeId;
use super::policy::check_note;
use super::tree::{Limits, Reach, Tree};

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
/// Lua twin: `label_check_stored` (lua/src/66_labels.lua).
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

/// What `QUOTA.LABEL` answers: the node's labels after the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelOutcome {
    /// Display path.
    pub path: String,
    pub note: Option<String>,
    pub tags: Vec<String>,
    /// Whether anything changed (a node created, or a note or tags other).
    pub changed: bool,
}

impl Tree {
    /// `QUOTA.LABEL`: sets the note (`Some(None)` clears it) and/or
    /// replaces the tags (an empty list clears them), creating the node
    /// (and its missing ancestors) when needed.
    /// Lua twin: `label_set` (lua/src/66_labels.lua).
    pub fn label(
        &mut self,
        path: &str,
        note: Option<Option<String>>,
        tags: Option<Vec<String>>,
        now_ms: u64,
        limits: &Limits,
    ) -> Result<LabelOutcome> {
        if note.is_none() && tags.is_none() {
            return Err(Error::syntax("QUOTA.LABEL needs NOTE or TAGS"));
        }
        self.sync_path(path, now_ms);
        let created = self.find(path).is_none();
        if created {
            self.check_new_paths([path], self.missing_count(&[path]), limits)?;
        }
        // After this point the command succeeds.
        let id = self.ensure_path(path, now_ms);
        let Some(node) = self.node_mut(id) else { return Err(Error::State("tree is inconsistent".into())) };
        let mut labels = node.labels.take().map(|b| *b).unwrap_or_default();
        let before = labels.clone();
        if let Some(note) = note {
            labels.note = note.map(String::into_boxed_str);
        }
        if let Some(tags) = tags {
            labels.tags = tags.into_iter().map(String::into_boxed_str).collect();
        }
        let changed = created || labels != before;
        let outcome = LabelOutcome {
            path: names::display_path(path).to_string(),
            note: labels.note.as_deref().map(str::to_string),
            tags: labels.tags.iter().map(|t| t.to_string()).collect(),
            changed,
        };
        node.labels = (!labels.is_empty()).then(|| Box::new(labels));
        Ok(outcome)
    }

    /// `QUOTA.ARCHIVE` (`archived` true) and `QUOTA.RESTORE` (false): sets
    /// or clears the node's own flag. Returns whether it changed.
    /// Lua twin: `archive_set` (lua/src/66_labels.lua).
    pub fn set_archived(&mut self, path: &str, archived: bool) -> Result<bool> {
        let id = self.find(path).ok_or_else(|| Error::NotFound(format!("path '{}'", names::display_path(path))))?;
        let Some(node) = self.node_mut(id) else { return Err(Error::State("tree is inconsistent".into())) };
        if node.labels.as_ref().is_some_and(|l| l.archived) == archived {
            return Ok(false);
        }
        let mut labels = node.labels.take().map(|b| *b).unwrap_or_default();
        labels.archived = archived;
        node.labels = (!labels.is_empty()).then(|| Box::new(labels));
        self.any_archived |= archived;
        Ok(true)
    }

    /// Whether the node itself is archived.
    pub(crate) fn is_archived(&self, id: NodeId) -> bool {
        self.node(id).and_then(|n| n.labels.as_deref()).is_some_and(|l| l.archived)
    }

    /// The refusal of a request whose reach holds an archived node: one
    /// check per node of the reach itself archived, in reach order, and
    /// the first one's sentence. Empty when none is (the usual case: one
    /// pointer test per reached node).
    /// Lua twin: `archive_judge` (lua/src/66_labels.lua).
    pub(crate) fn judge_archived(&self, reach: &Reach) -> Refusals {
        let mut refusals = Refusals::default();
        if !self.any_archived {
            return refusals;
        }
        for &id in &reach.nodes {
            if !self.is_archived(id) {
                continue;
            }
            let Some(node) = self.node(id) else { continue };
            let path = names::display_path(&node.path).to_string();
            if refusals.checks.is_empty() {
                refusals.message = format!("path {path} is archived");
            }
            refusals.checks.push(AccessCheck { path, rule: Rule::Deny, service: None, model: None, archived: true });
        }
        refusals
    }
}
