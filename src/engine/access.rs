//! Access rules (SPEC §8): a node's *allow list* and *deny list* of
//! services and models, which apply to its subtree like its policies.
//!
//! An *entry* names a service and, optionally, one model of it (without a
//! model it matches every model of the service). A request passes a node
//! when it matches none of its deny entries and, where the node has allow
//! entries, matches one of them. A request without `SERVICE` matches no
//! entry. Each node that refuses gives one *access check* (`kind`
//! `access`); access is judged before amounts, and a reservation refused
//! by access holds nothing.
//!
//! Entries are kept sorted (service, then model, bytewise; an entry without
//! a model first), at most [`MAX_RULES`] per node, allow and deny together.
//! A node without rules pays one empty pointer (`Node::access`).
//!
//! Lua twin: lua/src/65_access.lua.

use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::events::{Event, EventKind};
use super::names;
use super::outcome::Costs;
use super::tree::{ChargeSet, Limits, Reach, Tree};

/// Most entries per node, allow and deny together.
pub const MAX_RULES: usize = 128;

/// One entry of an allow or deny list: a service, and a model of it or
/// `None` for every model. The derived order is the stored order: by
/// service, then model, bytewise, `None` first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Entry {
    pub service: String,
    pub model: Option<String>,
}

impl Entry {
    /// Whether a request with this service and model matches the entry.
    /// Lua twin: written out in `ACCESS.judge_node` (lua/src/65_access.lua).
    pub fn matches(&self, service: Option<&str>, model: Option<&str>) -> bool {
        match (service, &self.model) {
            (None, _) => false,
            (Some(s), None) => s == self.service,
            (Some(s), Some(m)) => s == self.service && model == Some(m.as_str()),
        }
    }
}

/// Which list refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rule {
    Allow,
    Deny,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Allow => "allow",
            Rule::Deny => "deny",
        }
    }
}

/// A node's rules: both lists sorted, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Access {
    pub allow: Vec<Entry>,
    pub deny: Vec<Entry>,
}

/// Why a node refuses a request, which decides its sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// No SERVICE, and the node has an allow list.
    NoService,
    /// The whole service is denied, or not in the allow list.
    Service,
    /// A model-specific deny matched, or the service is allowed only for
    /// other models.
    Model,
    /// The service is allowed only for listed models and the request names none.
    NoModel,
}

impl Access {
    pub fn len(&self) -> usize {
        self.allow.len() + self.deny.len()
    }

    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    pub fn list(&self, rule: Rule) -> &[Entry] {
        match rule {
            Rule::Allow => &self.allow,
            Rule::Deny => &self.deny,
        }
    }

    fn list_mut(&mut self, rule: Rule) -> &mut Vec<Entry> {
        match rule {
            Rule::Allow => &mut self.allow,
            Rule::Deny => &mut self.deny,
        }
    }

    /// Whether the node refuses a request with this service and model, and why.
    /// Lua twin: `ACCESS.judge_node` (lua/src/65_access.lua).
    fn judge(&self, service: Option<&str>, model: Option<&str>) -> Option<(Rule, Why)> {
        if let Some(whole) = find_match(&self.deny, service, model) {
            let why = if whole { Why::Service } else { Why::Model };
            return Some((Rule::Deny, why));
        }
        if self.allow.is_empty() || find_match(&self.allow, service, model).is_some() {
            return None;
        }
        let why = match service {
            None => Why::NoService,
            Some(s) if !self.allow.iter().any(|e| e.service == s) => Why::Service,
            Some(_) if model.is_none() => Why::NoModel,
            Some(_) => Why::Model,
        };
        Some((Rule::Allow, why))
    }
}

/// Whether a sorted list has an entry a request matches: `Some(true)`
/// when the entry without a model (the whole service) is there, else
/// `Some(false)` when the entry of the request's model is; by binary
/// search (at most two), which finds what [`Entry::matches`] would.
fn find_match(list: &[Entry], service: Option<&str>, model: Option<&str>) -> Option<bool> {
    let search = |service: &str| {
        let find = |model: Option<&str>| {
            list.binary_search_by(|e| (e.service.as_str(), e.model.as_deref()).cmp(&(service, model))).is_ok()
        };
        if find(None) {
            return Some(true);
        }
        (model.is_some() && find(model)).then_some(false)
    };
    let found = service.and_then(search);
    debug_assert_eq!(found.is_some(), list.iter().any(|e| e.matches(service, model)));
    found
}

/// One node that refuses a request: the access check of SPEC §8 (`kind`
/// `access`, `pass` 0). `path` is in display form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessCheck {
    pub path: String,
    pub rule: Rule,
    pub service: Option<String>,
    pub model: Option<String>,
    /// A node that refuses because it is archived (SPEC §10: `kind`
    /// `archived`, `path`, `pass` 0; `rule` unused). Never stored: an
    /// archived refusal is not remembered.
    #[serde(skip)]
    pub archived: bool,
}

impl AccessCheck {
    /// `path#access` (or `path#archived`), the way `denied_by` names a
    /// refusing node.
    pub fn label(&self) -> String {
        format!("{}#{}", self.path, if self.archived { "archived" } else { "access" })
    }
}

/// The refusals of a request, in node order, and the first one's sentence.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Refusals {
    pub checks: Vec<AccessCheck>,
    pub message: String,
}

impl Refusals {
    pub fn is_empty(&self) -> bool {
        self.checks.is_empty()
    }

    pub fn labels(&self) -> impl Iterator<Item = String> + '_ {
        self.checks.iter().map(AccessCheck::label)
    }
}

/// The sentence of a refusal at display path `p`.
/// Lua twin: `ACCESS.message` (lua/src/65_access.lua).
fn message(why: Why, p: &str, service: Option<&str>, model: Option<&str>) -> String {
    let (s, m) = (service.unwrap_or(""), model.unwrap_or(""));
    match why {
        Why::NoService => format!("a request without SERVICE is not allowed at {p} (it allows only listed services)"),
        Why::Service => format!("service {s} is not allowed at {p}"),
        Why::Model => format!("model {m} is not allowed at {p}"),
        Why::NoModel => format!("service {s} without MODEL is not allowed at {p} (it allows only listed models)"),
    }
}

/// The fields of a `disallowed` event (stored apart from the version 1
/// shape of events).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disallowed {
    pub rule: Rule,
    pub service: Option<String>,
    pub model: Option<String>,
}

/// The service or model (`what`) of an entry as `QUOTA.ALLOW` and
/// `QUOTA.DENY` give it: a name as `parse_name` reads it, never `*`.
/// Lua twin: `ACCESS.parse_part` (lua/src/65_access.lua).
pub fn parse_part(text: &str, what: &str) -> Result<String> {
    if text == "*" {
        return Err(Error::syntax("'*' is not a wildcard here: leave MODEL out to match every model of a service"));
    }
    names::parse_name(text, what)
}

/// An entry of a service and, optionally, one of its models.
pub fn parse_entry(service: &str, model: Option<&str>) -> Result<Entry> {
    let service = parse_part(service, "service")?;
    let model = model.map(|m| parse_part(m, "model")).transpose()?;
    Ok(Entry { service, model })
}

/// A node's rules as `QUOTA.ACCESS`, `QUOTA.GET` and `QUOTA.TREE` show them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AccessView {
    /// Display path.
    pub path: String,
    pub allow: Vec<Entry>,
    pub deny: Vec<Entry>,
}

impl Tree {
    /// `QUOTA.ALLOW` / `QUOTA.DENY` (`rule`) without `REMOVE`: adds the
    /// entry to the node's list, creating the node (and its missing
    /// ancestors) when needed. Returns whether the list changed.
    /// Lua twin: `ACCESS.add` (lua/src/65_access.lua).
    pub fn add_rule(&mut self, path: &str, rule: Rule, entry: Entry, now_ms: u64, limits: &Limits) -> Result<bool> {
        self.sync_path(path, now_ms);
        let existing = self.find(path).and_then(|id| self.node(id));
        match existing {
            Some(node) => {
                let access = node.access.as_deref();
                if access.is_some_and(|a| a.list(rule).binary_search(&entry).is_ok()) {
                    return Ok(false);
                }
                if access.map_or(0, Access::len) >= MAX_RULES {
                    return Err(Error::Limit(format!("at most {MAX_RULES} access rules per path")));
                }
            }
            None => self.check_new_paths([path], self.missing_count(&[path]), limits)?,
        }
        // After this point the command succeeds.
        let id = self.ensure_path(path, now_ms);
        let Some(node) = self.node_mut(id) else { return Err(Error::State("tree is inconsistent".into())) };
        let list = node.access.get_or_insert_with(Box::default).list_mut(rule);
        if let Err(at) = list.binary_search(&entry) {
            list.insert(at, entry);
        }
        Ok(true)
    }

    /// `QUOTA.ALLOW` / `QUOTA.DENY … REMOVE`: takes the entry away. A
    /// missing key, path or entry changes nothing (false).
    /// Lua twin: `ACCESS.remove` (lua/src/65_access.lua).
    pub fn remove_rule(&mut self, path: &str, rule: Rule, entry: &Entry) -> bool {
        let Some(node) = self.find(path).and_then(|id| self.node_mut(id)) else { return false };
        let Some(access) = node.access.as_deref_mut() else { return false };
        let list = access.list_mut(rule);
        let Ok(at) = list.binary_search(entry) else { return false };
        list.remove(at);
        if access.is_empty() {
            node.access = None;
        }
        true
    }

    /// `QUOTA.ACCESS … CLEAR`: removes every entry of the node (not of its
    /// subtree). Returns how many there were.
    /// Lua twin: `ACCESS.clear` (lua/src/65_access.lua).
    pub fn clear_rules(&mut self, path: &str) -> usize {
        let Some(node) = self.find(path).and_then(|id| self.node_mut(id)) else { return 0 };
        node.access.take().map_or(0, |a| a.len())
    }

    /// `QUOTA.ACCESS`: the node's own rules (a missing node is NOTFOUND).
    /// Lua twin: `ACCESS.view` (lua/src/65_access.lua).
    pub fn access_view(&self, path: &str) -> Result<AccessView> {
        let node = self
            .find(path)
            .and_then(|id| self.node(id))
            .ok_or_else(|| Error::NotFound(format!("path '{}'", names::display_path(path))))?;
        let access = node.access.as_deref().cloned().unwrap_or_default();
        Ok(AccessView { path: names::display_path(path).to_string(), allow: access.allow, deny: access.deny })
    }

    /// Whether any node has rules (tests and the encoder).
    pub fn has_rules(&self) -> bool {
        self.nodes.iter().flatten().any(|n| n.access.is_some())
    }

    /// The nodes of `reach` that refuse a request of `set`, in node order,
    /// each with its access check; the message is the first one's sentence.
    /// A node without rules costs one pointer test.
    /// Lua twin: `ACCESS.judge` (lua/src/65_access.lua).
    pub(crate) fn judge_access(&self, reach: &Reach, set: &ChargeSet) -> Refusals {
        let (service, model) = (set.service.as_deref(), set.model.as_deref());
        let mut refusals = Refusals::default();
        for &id in &reach.nodes {
            let Some(node) = self.node(id) else { continue };
            let Some(access) = node.access.as_deref() else { continue };
            let Some((rule, why)) = access.judge(service, model) else { continue };
            let path = names::display_path(&node.path).to_string();
            if refusals.checks.is_empty() {
                refusals.message = message(why, &path, service, model);
            }
            refusals.checks.push(AccessCheck {
                path,
                rule,
                service: set.service.clone(),
                model: set.model.clone(),
                archived: false,
            });
        }
        refusals
    }

    /// The `disallowed` events of a charge that access refuses, one per
    /// refusing node, in node order.
    /// Lua twin: `ACCESS.disallowed_events` (lua/src/65_access.lua).
    pub(crate) fn disallowed_events(
        &mut self,
        refusals: &Refusals,
        id: Option<&str>,
        charged: &Costs,
        meta: Option<&crate::meta::Meta>,
        now_ms: u64,
        limits: &Limits,
    ) {
        for check in &refusals.checks {
            let path = if check.path == "/" { String::new() } else { check.path.clone() };
            let mut event =
                Event::of_request(EventKind::Disallowed, now_ms, path, id.map(str::to_string), charged.clone());
            event.access = Some(Box::new(Disallowed {
                rule: check.rule,
                service: check.service.clone(),
                model: check.model.clone(),
            }));
            event.meta = meta.map(|m| Box::new(m.clone()));
            self.emit(event, limits);
        }
    }
}
