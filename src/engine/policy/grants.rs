//! Grants (SPEC §7): lots of allowance added to one policy by
//! `QUOTA.GRANT`, each with an amount, a priority, an optional expiry and
//! an id. What a period uses beyond its own allowance (limit + rolled
//! over) is drawn from the live grants in draw-down order; what a grant
//! gave stays given (`drawn`) until the period closes. A grant ends when
//! it is used up, expires, is revoked, or (a `PERIOD` grant) at the next
//! `QUOTA.RESET`; its id is then remembered for `tombstone_ttl`.
//!
//! The grants live behind an `Arc`: a read view of a policy (`Policy::at`)
//! shares them and applies due expiries to its numbers only, so reads and
//! reservation checks never copy them; writes change them in place.
//!
//! Lua twin: the `G` table (`G.draw`, `G.expire` and friends) in
//! lua/src/50_policy.lua, and `OPS.grant` (lua/src/75_ops.lua).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::Policy;
use crate::amount;
use crate::error::{Error, Result};
use crate::names;

/// Live grants per policy, and remembered ids of ended ones.
pub const MAX_GRANTS: usize = 10_000;
/// Longest `NOTE`, in bytes.
pub const MAX_NOTE: usize = 256;
/// The default `PRIORITY`.
pub const DEFAULT_PRIORITY: u8 = 50;

/// One grant (lot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    /// Per-policy creation counter (the first is 1).
    pub seq: u64,
    pub amount: Decimal,
    /// What is left (0 once ended).
    pub remaining: Decimal,
    pub priority: u8,
    /// Unix ms at which it expires; 0: no time limit.
    pub expires_at_ms: u64,
    /// Also ends at the policy's next `QUOTA.RESET`.
    pub period: bool,
    pub created_at_ms: u64,
    pub note: Option<String>,
}

impl Grant {
    /// The draw-down order: priority, then expiry (none last), then seq.
    fn order_key(&self) -> (u8, u64, u64) {
        let expiry = if self.expires_at_ms == 0 { u64::MAX } else { self.expires_at_ms };
        (self.priority, expiry, self.seq)
    }
}

/// What `QUOTA.GRANT` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    pub id: Option<String>,
    pub amount: Decimal,
    pub expiry: GrantExpiry,
    pub priority: u8,
    pub note: Option<String>,
}

/// When a requested grant expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantExpiry {
    Never,
    At(u64),
    After(u64),
    Period,
}

/// A grant that expired (or ended with its period), for `grant_expired`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired {
    pub id: String,
    /// The rest that left the allowance.
    pub amount: Decimal,
    pub expires_at_ms: u64,
}

/// The grants of a policy: the live ones with their indexes, the
/// remembered ids of the ended ones, and the next seq.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Grants {
    live: BTreeMap<u64, Grant>,
    ids: HashMap<String, u64>,
    order: BTreeSet<(u8, u64, u64)>,
    /// (expires_at, seq) of live grants with a time limit.
    expiry: BTreeSet<(u64, u64)>,
    /// Ended grants by id, with when they ended.
    ended: HashMap<String, (u64, Grant)>,
    /// (ended_at, seq, id) of the remembered: forgetting pops the front.
    ended_order: BTreeSet<(u64, u64, String)>,
    pub(crate) next_seq: u64,
}

impl Grants {
    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    pub fn remembered_len(&self) -> usize {
        self.ended.len()
    }

    /// Whether nothing is kept (no live grant, no remembered id, no seq used).
    pub fn is_blank(&self) -> bool {
        self.live.is_empty() && self.ended.is_empty() && self.next_seq <= 1
    }

    /// Σ remaining of the live grants (what a load derives `granted` from;
    /// [`Policy::refresh`] keeps `granted` normalized, so its form does not
    /// depend on how the grants' arithmetic got there).
    pub fn sum(&self) -> Decimal {
        self.live.values().map(|g| g.remaining).sum()
    }

    fn insert(&mut self, grant: Grant) {
        self.ids.insert(grant.id.clone(), grant.seq);
        self.order.insert(grant.order_key());
        if grant.expires_at_ms > 0 {
            self.expiry.insert((grant.expires_at_ms, grant.seq));
        }
        self.live.insert(grant.seq, grant);
    }

    fn remove(&mut self, seq: u64) -> Option<Grant> {
        let grant = self.live.remove(&seq)?;
        self.ids.remove(&grant.id);
        self.order.remove(&grant.order_key());
        self.expiry.remove(&(grant.expires_at_ms, grant.seq));
        Some(grant)
    }

    /// Remembers an ended grant (remaining 0); beyond [`MAX_GRANTS`] the one
    /// that ended first is forgotten.
    fn remember(&mut self, mut grant: Grant, ended_ms: u64) {
        grant.remaining = Decimal::ZERO;
        if let Some((at, old)) = self.ended.remove(&grant.id) {
            self.ended_order.remove(&(at, old.seq, old.id));
        }
        self.ended_order.insert((ended_ms, grant.seq, grant.id.clone()));
        self.ended.insert(grant.id.clone(), (ended_ms, grant));
        while self.ended.len() > MAX_GRANTS {
            let Some((_, _, id)) = self.ended_order.pop_first() else { break };
            self.ended.remove(&id);
        }
    }

    /// Ends live grant `seq` at `ended_ms`: no longer live, its id
    /// remembered. Returns its id and the remaining it had.
    fn end(&mut self, seq: u64, ended_ms: u64) -> Option<(String, Decimal)> {
        let grant = self.remove(seq)?;
        let ended = (grant.id.clone(), grant.remaining);
        self.remember(grant, ended_ms);
        Some(ended)
    }

    /// Forgets the ids that ended `ttl_ms` or longer before `now_ms`.
    pub(crate) fn forget(&mut self, now_ms: u64, ttl_ms: u64) {
        while let Some((at, _, _)) = self.ended_order.first() {
            if at.saturating_add(ttl_ms) > now_ms {
                break;
            }
            let Some((_, _, id)) = self.ended_order.pop_first() else { break };
            self.ended.remove(&id);
        }
    }

    pub fn live(&self, id: &str) -> Option<&Grant> {
        self.ids.get(id).and_then(|seq| self.live.get(seq))
    }

    /// An ended grant still remembered at `now_ms`.
    pub fn ended(&self, id: &str, now_ms: u64, ttl_ms: u64) -> Option<&Grant> {
        self.ended.get(id).filter(|(at, _)| at.saturating_add(ttl_ms) > now_ms).map(|(_, g)| g)
    }

    /// Live grants in draw-down order.
    pub fn in_order(&self) -> impl Iterator<Item = &Grant> {
        self.order.iter().filter_map(|(_, _, seq)| self.live.get(seq))
    }

    /// Remembered grants with when they ended, in forgetting order.
    pub fn remembered(&self) -> impl Iterator<Item = (u64, &Grant)> {
        self.ended_order.iter().filter_map(|(at, _, id)| self.ended.get(id).map(|(_, g)| (*at, g)))
    }

    fn first_expiry(&self) -> u64 {
        self.expiry.first().map_or(u64::MAX, |(at, _)| *at)
    }

    /// Builds grants from stored parts (validated by the caller).
    pub(crate) fn from_parts(live: Vec<Grant>, ended: Vec<(u64, Grant)>, next_seq: u64) -> Grants {
        let mut grants = Grants { next_seq, ..Grants::default() };
        for grant in live {
            grants.insert(grant);
        }
        for (at, grant) in ended {
            grants.remember(grant, at);
        }
        grants
    }
}

/// The grant state of a policy as stored (encoding 3).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoredGrants {
    pub drawn: Decimal,
    pub low: Option<Decimal>,
    pub low_fired: bool,
    pub live: Vec<Grant>,
    pub ended: Vec<(u64, Grant)>,
    pub next_seq: u64,
}

/// Checks a `NOTE`: 1–256 bytes of text without control characters.
pub fn check_note(note: &[u8]) -> Result<String> {
    if note.len() > MAX_NOTE {
        return Err(Error::Limit(format!("NOTE is longer than {MAX_NOTE} bytes")));
    }
    match std::str::from_utf8(note) {
        Ok(text) if !text.is_empty() && !text.chars().any(|c| c < ' ' || c == '\u{7f}') => Ok(text.to_string()),
        _ => Err(Error::syntax("NOTE must be text without control characters")),
    }
}

/// Checks a stored grant (restore).
pub(crate) fn validate_grant(grant: &Grant, live: bool) -> std::result::Result<(), String> {
    let bad = |why: &str| Err(format!("grant '{}': {why}", names::clip(&grant.id)));
    if names::parse_name(&grant.id, "grant id").is_err() {
        return bad("invalid id");
    }
    for value in [grant.amount, grant.remaining] {
        if amount::validate_stored(value).is_err() || value.is_sign_negative() && !value.is_zero() {
            return bad("amount out of range");
        }
    }
    if grant.amount.is_zero() || grant.remaining > grant.amount || (live && grant.remaining.is_zero()) {
        return bad("remaining out of range");
    }
    if !live && !grant.remaining.is_zero() {
        return bad("an ended grant keeps a remaining");
    }
    if grant.priority > 100 || grant.seq == 0 {
        return bad("priority or seq out of range");
    }
    if let Some(note) = &grant.note
        && check_note(note.as_bytes()).is_err()
    {
        return bad("invalid note");
    }
    Ok(())
}

/// The grant part of a policy's [`super::Extra`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GrantState {
    pub(super) grants: Option<Arc<Grants>>,
    /// Σ remaining of the live grants (those expiring at or after
    /// `next_expiry`, or never).
    pub(super) granted: Decimal,
    /// What grants gave in the current period.
    pub(super) drawn: Decimal,
    /// The earliest expiry not yet applied (u64::MAX: none). A read view
    /// applies expiries to its numbers only: grants of the shared
    /// collection that expire before this are gone in the view.
    pub(super) next_expiry: u64,
    pub(super) low: Option<Decimal>,
    pub(super) low_fired: bool,
}

impl Default for GrantState {
    fn default() -> GrantState {
        GrantState {
            grants: None,
            granted: Decimal::ZERO,
            drawn: Decimal::ZERO,
            next_expiry: u64::MAX,
            low: None,
            low_fired: false,
        }
    }
}

impl GrantState {
    pub(super) fn is_plain(&self) -> bool {
        self.grants.as_ref().is_none_or(|g| g.is_blank())
            && self.granted.is_zero()
            && self.drawn.is_zero()
            && self.low.is_none()
            && !self.low_fired
    }
}

impl Policy {
    #[inline]
    fn grant_state(&self) -> Option<&GrantState> {
        self.extra.as_ref().map(|e| &e.grant)
    }

    /// Σ remaining of the live grants (what a load derives `granted` from;
    /// [`Policy::refresh`] keeps `granted` normalized, so its form does not
    /// depend on how the grants' arithmetic got there).
    pub fn granted(&self) -> Decimal {
        self.grant_state().map_or(Decimal::ZERO, |g| g.granted)
    }

    /// What grants gave in the current period.
    pub fn drawn(&self) -> Decimal {
        self.grant_state().map_or(Decimal::ZERO, |g| g.drawn)
    }

    /// The period's own allowance: limit + rolled over.
    pub fn own(&self) -> Decimal {
        amount::plus(self.limit, self.rolled_over())
    }

    pub fn low(&self) -> Option<Decimal> {
        self.grant_state().and_then(|g| g.low)
    }

    pub fn low_fired(&self) -> bool {
        self.grant_state().is_some_and(|g| g.low_fired)
    }

    /// The shared collection (for tests and persistence).
    pub fn grants_arc(&self) -> Option<&Arc<Grants>> {
        self.grant_state().and_then(|g| g.grants.as_ref())
    }

    /// How many grants are live (as stored).
    pub fn grant_count(&self) -> usize {
        self.grants_arc().map_or(0, |g| g.len())
    }

    /// Live grants in draw-down order, as the policy is (a read view shows
    /// none that expired by its time).
    pub fn grants(&self) -> Vec<&Grant> {
        let Some(state) = self.grant_state() else { return Vec::new() };
        let Some(grants) = &state.grants else { return Vec::new() };
        let from = state.next_expiry;
        grants.in_order().filter(|g| g.expires_at_ms == 0 || g.expires_at_ms >= from).collect()
    }

    /// A live grant by id, or a remembered one (as it ended).
    pub fn find_grant(&self, id: &str, now_ms: u64, ttl_ms: u64) -> Option<(&Grant, bool)> {
        let state = self.grant_state()?;
        let grants = state.grants.as_ref()?;
        match grants.live(id) {
            Some(g) if g.expires_at_ms == 0 || g.expires_at_ms >= state.next_expiry => Some((g, true)),
            // Expired in this view but not yet rolled: it ended at its
            // expiry, and is remembered for `ttl_ms` from then, as a roll
            // would remember it.
            Some(g) if g.expires_at_ms.saturating_add(ttl_ms) > now_ms => Some((g, false)),
            Some(_) => None,
            None => grants.ended(id, now_ms, ttl_ms).map(|g| (g, false)),
        }
    }

    /// Whether the policy knows grant id `id` (live or remembered).
    pub fn knows_grant(&self, id: &str, now_ms: u64, ttl_ms: u64) -> bool {
        self.find_grant(id, now_ms, ttl_ms).is_some()
    }

    /// The heap the grants take, for `MEMORY USAGE` (shared: counted by
    /// each policy that holds them).
    pub(crate) fn grant_bytes(&self) -> usize {
        self.grants_arc().map_or(0, |g| {
            let per = std::mem::size_of::<Grant>() + 96;
            let notes: usize = g.live.values().filter_map(|g| g.note.as_ref()).map(String::len).sum();
            let ids: usize = g.live.values().map(|g| 2 * g.id.len()).sum::<usize>()
                + g.ended.keys().map(|id| 2 * id.len()).sum::<usize>();
            std::mem::size_of::<Grants>() + (g.live.len() + g.ended.len()) * per + notes + ids
        })
    }

    fn grants_mut(&mut self) -> &mut Grants {
        let state = &mut self.extra_mut().grant;
        Arc::make_mut(state.grants.get_or_insert_with(|| Arc::new(Grants { next_seq: 1, ..Grants::default() })))
    }

    /// Applies the expiries of grants expiring before `bound` (or at it
    /// when `inclusive`), in (expires_at, seq) order: their rest leaves the
    /// allowance. In place, they end (id remembered) and are reported in
    /// `expired`; a read view (`in_place` false) changes its numbers only.
    pub(super) fn expire_grants(&mut self, bound: u64, inclusive: bool, in_place: bool, expired: &mut Vec<Expired>) {
        let Some(extra) = &mut self.extra else { return };
        let state = &mut extra.grant;
        let due = |at: u64| if inclusive { at <= bound } else { at < bound };
        if !due(state.next_expiry) {
            return;
        }
        let Some(arc) = &mut state.grants else { return };
        if in_place {
            let grants = Arc::make_mut(arc);
            while let Some(&(at, seq)) = grants.expiry.first() {
                if !due(at) {
                    break;
                }
                let Some((id, rest)) = grants.end(seq, at) else { break };
                state.granted = amount::minus(state.granted, rest);
                expired.push(Expired { id, amount: rest, expires_at_ms: at });
            }
            state.next_expiry = grants.first_expiry();
        } else {
            let grants = arc.clone();
            let mut next = u64::MAX;
            for &(at, seq) in grants.expiry.range((state.next_expiry, 0)..) {
                if !due(at) {
                    next = at;
                    break;
                }
                if let Some(grant) = grants.live.get(&seq) {
                    state.granted = amount::minus(state.granted, grant.remaining);
                }
            }
            state.next_expiry = next;
        }
        self.refresh();
    }

    /// Whether a grant expiry is due at `now_ms`.
    #[inline]
    pub(super) fn expiry_due(&self, now_ms: u64) -> bool {
        self.grant_state().is_some_and(|g| g.next_expiry <= now_ms)
    }

    /// `QUOTA.RESET`: every `PERIOD` grant ends (in (expires_at, seq) order).
    pub(super) fn end_period_grants(&mut self, now_ms: u64, expired: &mut Vec<Expired>) {
        let Some(grants) = self.grants_arc() else { return };
        let mut ending: Vec<(u64, u64)> =
            grants.live.values().filter(|g| g.period).map(|g| (g.expires_at_ms, g.seq)).collect();
        if ending.is_empty() {
            return;
        }
        ending.sort_unstable();
        let grants = self.grants_mut();
        let mut gone = Decimal::ZERO;
        for (at, seq) in ending {
            let Some((id, rest)) = grants.end(seq, now_ms) else { continue };
            gone += rest;
            expired.push(Expired { id, amount: rest, expires_at_ms: at });
        }
        let next = grants.first_expiry();
        let state = &mut self.extra_mut().grant;
        state.granted = amount::minus(state.granted, gone);
        state.next_expiry = next;
        self.refresh();
    }

    /// Draws `rest` (usage beyond the period's own allowance) from the live
    /// grants in draw-down order, recording each draw as (grant id, amount).
    /// Returns what no grant covered.
    fn draw(&mut self, mut rest: Decimal, now_ms: u64, draws: &mut Vec<(String, Decimal)>) -> Decimal {
        let grants = self.grants_mut();
        let mut taken = Decimal::ZERO;
        let mut used_up = Vec::new();
        let order: Vec<u64> = {
            let mut seqs = Vec::new();
            let mut left = rest;
            for (_, _, seq) in &grants.order {
                if left <= Decimal::ZERO {
                    break;
                }
                seqs.push(*seq);
                left -= grants.live.get(seq).map_or(Decimal::ZERO, |g| g.remaining);
            }
            seqs
        };
        for seq in order {
            let Some(grant) = grants.live.get_mut(&seq) else { continue };
            let take = rest.min(grant.remaining);
            grant.remaining -= take;
            rest -= take;
            taken += take;
            draws.push((grant.id.clone(), take));
            if grant.remaining.is_zero() {
                used_up.push(seq);
            }
        }
        for seq in used_up {
            grants.end(seq, now_ms);
        }
        let next = grants.first_expiry();
        let state = &mut self.extra_mut().grant;
        state.granted = amount::minus(state.granted, taken);
        state.drawn = amount::plus(state.drawn, taken);
        state.next_expiry = next;
        rest
    }

    /// The part of positive usage `delta` beyond the own allowance, drawn
    /// from grants (called before `used` grows).
    pub(super) fn draw_for(&mut self, delta: Decimal, now_ms: u64, draws: &mut Vec<(String, Decimal)>) {
        if !self.granted().is_sign_positive() || self.granted().is_zero() || delta <= Decimal::ZERO {
            return;
        }
        let own_use = self.used - self.drawn();
        let headroom = (self.own() - own_use).max(Decimal::ZERO);
        let rest = delta - delta.min(headroom);
        if rest > Decimal::ZERO {
            self.draw(rest, now_ms, draws);
            self.refresh();
        }
    }

    /// Rolling windows: usage that left the window takes what grants gave
    /// with it.
    pub(super) fn clamp_drawn(&mut self) {
        if let Some(extra) = &mut self.extra
            && extra.grant.drawn > self.used
        {
            extra.grant.drawn = self.used.max(Decimal::ZERO);
        }
    }

    /// Ends the period's grant numbers: `drawn` back to 0.
    pub(super) fn clear_drawn(&mut self) {
        if let Some(extra) = &mut self.extra {
            extra.grant.drawn = Decimal::ZERO;
        }
    }

    /// What `QUOTA.GRANT` checks before it adds a grant (after the id):
    /// the amount, the expiry, the bound of grants and of totals. Returns
    /// the expiry. Changes nothing.
    pub fn check_grant(&self, req: &GrantRequest, path: &str, now_ms: u64) -> Result<u64> {
        if req.amount <= Decimal::ZERO {
            return Err(Error::InvalidAmount("a grant must be larger than 0".into()));
        }
        let expires_at_ms = match req.expiry {
            GrantExpiry::Never => 0,
            GrantExpiry::At(at) if at <= now_ms => {
                return Err(Error::State(format!("EXPIRES {at} is not in the future")));
            }
            GrantExpiry::At(at) => at,
            GrantExpiry::After(ms) => now_ms.saturating_add(ms),
            GrantExpiry::Period => self.period_end_ms().unwrap_or(0),
        };
        if self.grant_count() >= MAX_GRANTS && self.grants().len() >= MAX_GRANTS {
            return Err(Error::Limit(format!(
                "policy '{}' at '{}' already has {MAX_GRANTS} grants",
                self.name(),
                names::display_path(path)
            )));
        }
        amount::add(self.allowance(), req.amount)?;
        amount::add(self.granted(), req.amount)?;
        Ok(expires_at_ms)
    }

    /// `QUOTA.GRANT` on a rolled policy: the grant (or the known one, with
    /// `true`, when the id is known). Checks first, changes nothing on error.
    pub fn add_grant(
        &mut self,
        req: &GrantRequest,
        id: String,
        path: &str,
        now_ms: u64,
        ttl_ms: u64,
    ) -> Result<(Grant, bool)> {
        if let Some((grant, _)) = self.find_grant(&id, now_ms, ttl_ms) {
            return Ok((grant.clone(), true));
        }
        let expires_at_ms = self.check_grant(req, path, now_ms)?;
        // Overage is a debt the new grant pays first.
        let debt = (self.used - self.drawn() - self.own()).max(Decimal::ZERO);
        let pay = debt.min(req.amount);
        let grants = self.grants_mut();
        grants.forget(now_ms, ttl_ms);
        let seq = grants.next_seq.max(1);
        grants.next_seq = seq + 1;
        let grant = Grant {
            id,
            seq,
            amount: req.amount,
            remaining: req.amount - pay,
            priority: req.priority,
            expires_at_ms,
            period: matches!(req.expiry, GrantExpiry::Period),
            created_at_ms: now_ms,
            note: req.note.clone(),
        };
        let shown = grant.clone();
        if grant.remaining.is_zero() {
            grants.remember(grant, now_ms);
        } else {
            grants.insert(grant);
        }
        let next = grants.first_expiry();
        let state = &mut self.extra_mut().grant;
        state.drawn += pay;
        state.granted += shown.remaining;
        state.next_expiry = next;
        self.refresh();
        self.rearm_low();
        Ok((shown, false))
    }

    /// `QUOTA.REVOKE` on a rolled policy: the remaining the grant had
    /// (0 for a remembered one), or None for an unknown id.
    pub fn revoke(&mut self, id: &str, now_ms: u64, ttl_ms: u64) -> Option<Decimal> {
        match self.find_grant(id, now_ms, ttl_ms) {
            None => None,
            Some((_, false)) => Some(Decimal::ZERO),
            Some((grant, true)) => {
                let seq = grant.seq;
                let grants = self.grants_mut();
                grants.forget(now_ms, ttl_ms);
                let (_, removed) = grants.end(seq, now_ms)?;
                let next = grants.first_expiry();
                let state = &mut self.extra_mut().grant;
                state.granted = amount::minus(state.granted, removed);
                state.next_expiry = next;
                self.refresh();
                Some(removed)
            }
        }
    }

    /// `LOW` re-arms when remaining is above it again.
    pub(crate) fn rearm_low(&mut self) {
        let remaining = self.remaining();
        if let Some(extra) = &mut self.extra
            && extra.grant.low_fired
            && extra.grant.low.is_some_and(|low| remaining > low)
        {
            extra.grant.low_fired = false;
            self.refresh();
        }
    }

    /// Whether a `LOW` is set and armed (observing checks it).
    #[inline]
    pub(crate) fn may_fire_low(&self) -> bool {
        self.grant_state().is_some_and(|g| g.low.is_some() && !g.low_fired)
    }

    /// Whether `low` fires now (and marks it fired).
    pub(crate) fn fire_low(&mut self) -> bool {
        let remaining = self.remaining();
        let Some(extra) = &mut self.extra else { return false };
        match extra.grant.low {
            Some(low) if !extra.grant.low_fired && remaining <= low => {
                extra.grant.low_fired = true;
                true
            }
            _ => false,
        }
    }

    /// Sets `low` (from the spec; the caller refreshes).
    pub(super) fn set_low(&mut self, low: Option<Decimal>) {
        if low.is_some() {
            self.extra_mut().grant.low = low;
        } else if let Some(extra) = &mut self.extra {
            extra.grant.low = None;
            extra.grant.low_fired = false;
        }
    }

    /// The grant invariants: granted is Σ remaining of the live grants
    /// (value, and normalized form), each live grant has 0 < remaining ≤
    /// amount, the indexes agree, and the allowance is own + drawn + granted.
    pub(crate) fn check_grants(&self) -> std::result::Result<(), String> {
        let Some(state) = self.grant_state() else { return Ok(()) };
        if state.drawn.is_sign_negative() && !state.drawn.is_zero() {
            return Err("negative drawn".into());
        }
        let (sum, first) = match &state.grants {
            None => (Decimal::ZERO, u64::MAX),
            Some(g) => {
                if g.live.values().any(|g| g.remaining <= Decimal::ZERO || g.remaining > g.amount)
                    || g.order.len() != g.live.len()
                    || g.ids.len() != g.live.len()
                    || g.ended.len() != g.ended_order.len()
                    || g.ended.len() > MAX_GRANTS
                {
                    return Err("grant indexes disagree".into());
                }
                (g.sum(), g.first_expiry())
            }
        };
        // In its form too (2 not 2.0): a load derives granted from this sum,
        // and refresh() normalizes both.
        if sum != state.granted || sum.normalize().scale() != state.granted.scale() || first != state.next_expiry {
            return Err(format!("granted {} != Σ remaining {sum}", state.granted));
        }
        let want = self.own() + state.drawn + state.granted;
        if self.allowance() != want {
            return Err(format!("allowance {} != own + drawn + granted {want}", self.allowance()));
        }
        Ok(())
    }

    /// Restores the grant state of a stored policy (validated by the caller).
    pub(crate) fn restore_grants(&mut self, stored: StoredGrants) {
        let StoredGrants { drawn, low, low_fired, live, ended, next_seq } = stored;
        let grants = Grants::from_parts(live, ended, next_seq);
        let extra = self.extra_mut();
        extra.grant.drawn = drawn;
        extra.grant.low = low;
        extra.grant.low_fired = low_fired;
        extra.grant.granted = grants.sum();
        extra.grant.next_expiry = grants.first_expiry();
        extra.grant.grants = if grants.is_blank() { None } else { Some(Arc::new(grants)) };
        self.refresh();
    }

    /// The grant state as stored.
    pub(crate) fn stored_grants(&self) -> StoredGrants {
        let Some(state) = self.grant_state() else { return StoredGrants::default() };
        let (live, ended, next_seq) = match &state.grants {
            None => (Vec::new(), Vec::new(), 0),
            Some(g) => (
                g.live.values().cloned().collect(),
                g.remembered().map(|(at, g)| (at, g.clone())).collect(),
                g.next_seq,
            ),
        };
        StoredGrants { drawn: state.drawn, low: state.low, low_fired: state.low_fired, live, ended, next_seq }
    }

    /// A legacy stored `granted` G (the first release's per-period grant):
    /// one `PERIOD` grant with id `legacy`.
    pub(crate) fn convert_legacy(&mut self, granted: Decimal) {
        if granted <= Decimal::ZERO {
            return;
        }
        let drawn = (self.used - self.own()).max(Decimal::ZERO).min(granted);
        let remaining = granted - drawn;
        let grant = Grant {
            id: "legacy".into(),
            seq: 1,
            amount: granted,
            remaining,
            priority: DEFAULT_PRIORITY,
            expires_at_ms: self.period_end_ms().unwrap_or(0),
            period: true,
            created_at_ms: self.period_start_ms,
            note: None,
        };
        let live = if remaining.is_zero() { Vec::new() } else { vec![grant] };
        let (low, low_fired) = (self.low(), self.low_fired());
        self.restore_grants(StoredGrants { drawn, low, low_fired, live, ended: Vec::new(), next_seq: 2 });
    }
}
