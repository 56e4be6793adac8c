//! Holds: amounts set aside before work starts, with an expiry, and their
//! lifecycle: reserve → commit | release | expire.
//!
//! A hold keeps one *line* per policy it counts on (node, generation,
//! metric) and one *item* per `COST` group. Releasing item `i` subtracts
//! its amount for each line's metric from that line's policy. Finished
//! holds stay in `done` as tombstones for `tombstone_ttl_ms`, so a repeated
//! commit or reserve with the same id answers as the first one did.
//!
//! Lua twin: `HOLDS` and the local functions before it (lua/src/70_holds.lua).

use std::borrow::Cow;
use std::collections::HashMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::access::{AccessCheck, Refusals};
use super::amount;
use super::error::{Error, Result};
use super::ledger::{LedgerEntry, LedgerKind};
use super::names;
use super::outcome::{
    ChargeOutcome, Check, CommitOutcome, Costs, Draw, ExtendOutcome, HoldView, Lookup, MAX_ITEM_METRICS,
    MAX_REQUEST_METRICS, ReleaseOutcome, ReserveOutcome, Totals, costs_get,
};
use super::policy::{Mode, Policy};
use super::short::Short;
use super::tree::{ChargeSet, Limits, NodeId, PolicyRef, Reach, Tree};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemState {
    Held,
    Committed,
    Released,
    /// The hold expired while this item was held: it no longer counts, and
    /// a late commit charges it without a hold.
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    pub cost: Costs,
    pub state: ItemState,
    /// The answer to `QUOTA.COMMIT … ITEM i`, for repeated commits.
    pub outcome: Option<Box<CommitOutcome>>,
}

/// One policy a hold counts on, by node and generation. The generation
/// changes with the policy's metric, so the policy found by a line always
/// counts in the metric the hold was placed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub node: NodeId,
    pub generation: u64,
}

/// Puts a hold's lines in the one order they are kept in, whatever built
/// them (a reserve, a policy change, a load): by node, then generation.
/// The lines are stored with the hold, so equal trees encode to equal
/// bytes only if their lines are in the same order.
pub(crate) fn sort_lines(lines: &mut [Line]) {
    lines.sort_unstable_by_key(|l| (l.node, l.generation));
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub id: String,
    pub set: ChargeSet,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
    pub items: Vec<Item>,
    pub lines: Vec<Line>,
    /// The first answer, kept when the client chose the id (`ID`), so that
    /// a repeated reserve returns it.
    pub reply: Option<Box<ReserveOutcome>>,
    pub last_commit: Option<Box<CommitOutcome>>,
    pub last_release: Option<Box<ReleaseOutcome>>,
    /// The reservation's `META` pairs (stored apart from the version 1
    /// shape, in the labels part).
    #[serde(skip)]
    pub meta: Option<Box<crate::meta::Meta>>,
}

impl Hold {
    /// What the hold still holds of `metric`.
    pub fn held_of(&self, metric: &str) -> Decimal {
        self.items.iter().filter(|i| i.state == ItemState::Held).map(|i| costs_get(&i.cost, metric)).sum()
    }

    /// Every metric the hold's items name, at zero: the metrics whose
    /// policies count the hold.
    pub fn metrics(&self) -> Costs {
        let mut out = Totals::new();
        for item in &self.items {
            for (metric, _) in &item.cost {
                out.add(metric, Decimal::ZERO);
            }
        }
        out.into_costs()
    }

    pub fn held_costs(&self) -> Costs {
        sum_costs(self.items.iter().filter(|i| i.state == ItemState::Held).map(|i| &i.cost))
    }

    /// Lua twin: `cost_of` (lua/src/70_holds.lua).
    pub(crate) fn cost_of(&self, indices: &[usize]) -> Costs {
        sum_costs(indices.iter().map(|&i| &self.items[i].cost))
    }
}

/// A remembered id as the tree keeps it: the [`DoneEntry`] encoded in one
/// small buffer. Millions of finished ids stay in memory for a day, and
/// they are read back only when a client repeats itself, so compactness
/// wins over access speed here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tomb {
    pub forget_at_ms: u64,
    pub data: Box<[u8]>,
}

impl Tomb {
    fn config() -> bincode::config::Configuration {
        bincode::config::standard()
    }

    /// Lua twin: `pack_done` (lua/src/60_tree.lua).
    pub fn pack(entry: &DoneEntry) -> Tomb {
        let access = entry.charge.as_ref().map_or(&[][..], |c| &c.access[..]);
        let meta = entry.hold.as_ref().and_then(|h| h.meta.as_deref());
        let data = bincode::serde::encode_to_vec((entry, entry.drawn_side(), access, meta), Self::config())
            .unwrap_or_default();
        Tomb { forget_at_ms: entry.forget_at_ms, data: data.into_boxed_slice() }
    }

    /// Lua twin: `unpack_done` (lua/src/60_tree.lua).
    pub fn unpack(&self) -> Option<DoneEntry> {
        type Packed = (DoneEntry, DrawnSide, Vec<AccessCheck>, Option<crate::meta::Meta>);
        let ((mut entry, side, access, meta), _): (Packed, usize) =
            bincode::serde::decode_from_slice(&self.data, Self::config()).ok()?;
        entry.set_drawn_side(side);
        if let Some(charge) = &mut entry.charge {
            charge.access = access;
        }
        if let Some(hold) = &mut entry.hold {
            hold.meta = meta.map(Box::new);
        }
        Some(entry)
    }
}

/// The `drawn` lists of the answers a hold or a finished id keeps, which
/// the version 1 shapes leave out: (where, draws) for each non-empty one,
/// where 0 is a charge's answer, 1 the last commit and 2 + i item i's.
pub type DrawnSide = Vec<(u32, Vec<Draw>)>;

impl Hold {
    pub(crate) fn drawn_side(&self) -> DrawnSide {
        let mut side = Vec::new();
        if let Some(c) = &self.last_commit
            && !c.drawn.is_empty()
        {
            side.push((1, c.drawn.clone()));
        }
        for (i, item) in self.items.iter().enumerate() {
            if let Some(c) = &item.outcome
                && !c.drawn.is_empty()
            {
                side.push((2 + i as u32, c.drawn.clone()));
            }
        }
        side
    }

    pub(crate) fn set_drawn_side(&mut self, side: DrawnSide) {
        for (at, drawn) in side {
            match at {
                1 => {
                    if let Some(c) = &mut self.last_commit {
                        c.drawn = drawn;
                    }
                }
                n => {
                    if let Some(c) = self.items.get_mut((n as usize).wrapping_sub(2)).and_then(|i| i.outcome.as_mut()) {
                        c.drawn = drawn;
                    }
                }
            }
        }
    }
}

impl DoneEntry {
    pub(crate) fn drawn_side(&self) -> DrawnSide {
        let mut side = self.hold.as_ref().map(Hold::drawn_side).unwrap_or_default();
        if let Some(c) = &self.charge
            && !c.drawn.is_empty()
        {
            side.push((0, c.drawn.clone()));
        }
        side
    }

    pub(crate) fn set_drawn_side(&mut self, side: DrawnSide) {
        let (charge, rest): (DrawnSide, DrawnSide) = side.into_iter().partition(|(at, _)| *at == 0);
        if let (Some(c), Some((_, drawn))) = (&mut self.charge, charge.into_iter().next()) {
            c.drawn = drawn;
        }
        if let Some(hold) = &mut self.hold {
            hold.set_drawn_side(rest);
        }
    }
}

/// A finished reservation or an idempotent charge, remembered for a while.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoneEntry {
    pub id: String,
    pub forget_at_ms: u64,
    pub hold: Option<Hold>,
    pub charge: Option<ChargeOutcome>,
}

/// How a batch of items is reserved (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchMode {
    /// Every item fits or nothing is reserved.
    All,
    /// The longest leading run of items that fits is reserved.
    Upto,
    /// Nothing is reserved; the answer says what would happen.
    DryRun,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveRequest {
    pub set: ChargeSet,
    pub id: Option<String>,
    pub ttl_ms: u64,
    pub batch: BatchMode,
    pub items: Vec<Costs>,
    /// Leave the per-policy checks out of an allowed answer (`BRIEF`).
    pub brief: bool,
    /// `META` pairs (SPEC §9), when given.
    pub meta: Option<Box<crate::meta::Meta>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub set: ChargeSet,
    pub id: Option<String>,
    /// Charge only if every strict and block policy passes.
    pub check: bool,
    pub cost: Costs,
    /// Leave the per-policy checks out of an allowed answer (`BRIEF`).
    pub brief: bool,
    /// `META` pairs (SPEC §9), when given.
    pub meta: Option<Box<crate::meta::Meta>>,
}

/// What [`Tree::expire`] did; anything non-zero changed the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Expiry {
    pub expired_holds: usize,
    pub forgotten_ids: usize,
}

impl Expiry {
    pub fn changed(&self) -> bool {
        self.expired_holds + self.forgotten_ids > 0
    }
}

/// What a reservation decided before changing anything (see
/// [`Tree::reserve`]): its total per metric, the policies it reaches, the
/// one that binds, how many items fit and how many it keeps.
struct ReservePlan {
    total: Costs,
    reach: Reach,
    binding: Option<Binding>,
    fits: usize,
    reserved: usize,
    allowed: bool,
    /// The nodes whose access rules refuse the request (judged first:
    /// when any refuses, amounts are not judged).
    refusals: Refusals,
}

/// What a charge decided before changing anything (see [`Tree::charge`]).
struct ChargeVerdict {
    /// The refusing policy with the least available, if any refuses.
    refused: Option<PolicyRef>,
    checks: Vec<Check>,
    /// `path#policy` of every refusing policy.
    denied_by: Vec<String>,
}

/// The policy that admits the fewest leading items, and how many.
struct Binding {
    policy: PolicyRef,
    fits: usize,
    /// What the policy has left for this request (see [`available`]).
    available: Decimal,
}

/// What a settling command decided: the work to do, or the first answer
/// to the command it repeats.
enum Settle<T, O> {
    Items(T),
    Repeat(O),
}

/// A commit as decided before anything changes: the items it settles,
/// what the live ones hold, whether some had expired, and the actual
/// amount to charge to the hold's charge set.
struct CommitPlan {
    set: ChargeSet,
    indices: Vec<usize>,
    held: Costs,
    expired: bool,
    actual: Costs,
    live: bool,
}

/// The actual amount uses up the live hold: what is left of it is
/// released, and what goes beyond it is overage. Expired items were given
/// back at expiry, so all they charge is overage: every policy of the
/// charge set goes up by at most the overage beyond what it already
/// counted. Returns (charged, released, overage).
fn settle_amounts(held: Costs, actual: Costs) -> (Costs, Costs, Costs) {
    let actual = Totals::of(actual, held.len());
    let mut released = Costs::new();
    for (metric, amount) in &held {
        released.push((metric.clone(), (*amount - actual.get(metric)).max(Decimal::ZERO)));
    }
    let actual = actual.into_costs();
    let held = Totals::of(held, actual.len());
    let mut overage = Costs::new();
    for (metric, charged) in &actual {
        let extra = *charged - held.get(metric);
        if extra > Decimal::ZERO {
            overage.push((metric.clone(), extra));
        }
    }
    (actual, released, overage)
}

/// The answer to a reservation that access rules refuse: nothing fits,
/// nothing is held, and the checks are the access checks only (amounts are
/// not judged). `BRIEF` keeps them: they explain a denial.
/// Lua twin: `HOLDS.access_denial` (lua/src/70_holds.lua).
fn access_denial(req: &ReserveRequest, plan: ReservePlan) -> ReserveOutcome {
    let refusals = plan.refusals;
    ReserveOutcome {
        allowed: false,
        id: None,
        expires_at_ms: 0,
        items: req.items.len(),
        fits: 0,
        reserved: 0,
        cost: plan.total,
        held: Some(Costs::new()),
        checks: Vec::new(),
        denied_by: refusals.labels().collect(),
        message: refusals.message,
        duplicate: false,
        access: refusals.checks,
    }
}

/// What a refusing policy has left: the remaining allowance of a strict
/// policy (never below zero), nothing for a block policy (it refuses only
/// once its limit is reached). Of the policies that refuse, the one with
/// the least available binds: it is the one a smaller request must fit.
fn available(policy: &Policy) -> Decimal {
    match policy.mode {
        Mode::Block => Decimal::ZERO,
        Mode::Strict | Mode::Open => policy.remaining().max(Decimal::ZERO),
    }
}

impl Tree {
    /// `QUOTA.RESERVE`: decides (bounds, a repeated id, what fits, the
    /// answer, whether the hold can be kept), then places the hold.
    pub fn reserve(&mut self, req: ReserveRequest, now_ms: u64, limits: &Limits) -> Result<ReserveOutcome> {
        if req.items.is_empty() {
            return Err(Error::syntax("QUOTA.RESERVE needs at least one COST item"));
        }
        if req.items.len() > limits.max_items {
            return Err(Error::Limit(format!("at most {} items per reservation (max_items)", limits.max_items)));
        }
        if let Some(id) = &req.id
            && let Some(first) = self.repeated_reserve(id)?
        {
            return Ok(first);
        }
        // A tree that follows a plan syncs the nodes on the way, and
        // creates the missing ones (synced) to judge against their plan
        // policies; they are removed again when nothing is held.
        self.sync_way(&req.set.paths, now_ms);
        let undo = self.materialize(&req.set.paths, now_ms, limits)?;
        let mut plan = match self.plan_reserve(&req, now_ms) {
            Ok(plan) => plan,
            Err(e) => {
                self.unmake_if(undo);
                return Err(e);
            }
        };
        if !plan.refusals.is_empty() {
            self.unmake_if(undo);
            return Ok(access_denial(&req, plan));
        }
        let outcome = self.reserve_outcome(&req, &mut plan, now_ms);
        if outcome.reserved == 0 {
            self.unmake_if(undo);
            return Ok(outcome);
        }
        if let Err(e) = self.check_hold(&req, &plan, outcome.held(), limits) {
            self.unmake_if(undo);
            return Err(e);
        }

        // After this point the reservation succeeds.
        Ok(self.place_hold(req, plan, outcome, now_ms, limits))
    }

    /// What a reservation reaches and how many of its items fit.
    fn plan_reserve(&self, req: &ReserveRequest, now_ms: u64) -> Result<ReservePlan> {
        let total = request_total(&req.items)?;
        let reach = self.reach(&req.set, &total);
        // An archived node refuses before access rules and amounts.
        let mut refusals = self.judge_archived(&reach);
        if refusals.is_empty() {
            refusals = self.judge_access(&reach, &req.set);
        }
        if !refusals.is_empty() {
            let plan = ReservePlan { total, reach, binding: None, fits: 0, reserved: 0, allowed: false, refusals };
            return Ok(plan);
        }
        let n = req.items.len();
        let binding = self.binding(&reach, &req.items, now_ms);
        let fits = binding.as_ref().map_or(n, |b| b.fits);
        let reserved = match req.batch {
            BatchMode::All if fits == n => n,
            BatchMode::All | BatchMode::DryRun => 0,
            BatchMode::Upto => fits,
        };
        let allowed = match req.batch {
            BatchMode::Upto => fits > 0,
            BatchMode::All | BatchMode::DryRun => fits == n,
        };
        Ok(ReservePlan { total, reach, binding, fits, reserved, allowed, refusals })
    }

    /// The answer to a planned reservation, before any hold is placed (no
    /// id or expiry yet). The plan's total moves into the answer.
    fn reserve_outcome(&self, req: &ReserveRequest, plan: &mut ReservePlan, now_ms: u64) -> ReserveOutcome {
        let (n, reserved, total) = (req.items.len(), plan.reserved, &plan.total);
        // An UPTO reservation is checked for what it holds: its checks
        // pass and name no denial; the message says what did not fit. An
        // allowed BRIEF answer needs no checks at all (the hot path).
        let (checks, denied_by) = if req.brief && plan.allowed {
            (Vec::new(), Vec::new())
        } else {
            let checks = if req.batch == BatchMode::Upto && reserved > 0 {
                self.checks(&plan.reach, &sum_costs(&req.items[..reserved]), now_ms)
            } else {
                self.checks(&plan.reach, total, now_ms)
            };
            let denied_by = checks.iter().filter(|c| !c.pass).map(Check::label).collect();
            (checks, denied_by)
        };
        let message = self.reserve_message(req, plan.binding.as_ref(), reserved, total, now_ms);
        let held = match reserved {
            0 => Some(Costs::new()),
            r if r == n => None,
            r => Some(sum_costs(&req.items[..r])),
        };
        ReserveOutcome {
            allowed: plan.allowed,
            id: None,
            expires_at_ms: 0,
            items: n,
            fits: plan.fits,
            reserved,
            cost: std::mem::take(&mut plan.total),
            held,
            checks,
            denied_by,
            message,
            duplicate: false,
            access: Vec::new(),
        }
    }

    /// Whether the hold can be kept: room for one more, for its new paths,
    /// and every policy's held total within bounds.
    fn check_hold(&self, req: &ReserveRequest, plan: &ReservePlan, held: &Costs, limits: &Limits) -> Result<()> {
        if self.holds.len() >= limits.max_holds {
            return Err(Error::Limit(format!("the tree already has {} live holds (max_holds)", limits.max_holds)));
        }
        self.check_new_paths(req.set.paths.iter().map(String::as_str), plan.reach.missing_nodes(), limits)?;
        // What it keeps is what the reach was made for when it keeps every
        // item; otherwise each policy looks its metric up in `held`.
        let by_metric = (plan.reserved < req.items.len()).then(|| Lookup::new(held, plan.reach.policies.len()));
        for (r, amount) in plan.reach.with_amounts(held) {
            if let Some(policy) = self.policy(r) {
                let amount = by_metric.as_ref().map_or(amount, |h| h.get(policy.metric()));
                amount::add(policy.held, amount)?;
            }
        }
        Ok(())
    }

    /// Places a checked reservation's hold: its amount on each policy it
    /// counts on, its paths, the hold and its expiry, the alerts it fires.
    fn place_hold(
        &mut self,
        req: ReserveRequest,
        plan: ReservePlan,
        mut outcome: ReserveOutcome,
        now_ms: u64,
        limits: &Limits,
    ) -> ReserveOutcome {
        let (n, reserved) = (req.items.len(), outcome.reserved);
        let (lines, partial) = if reserved == n {
            (self.hold_on(plan.reach.with_amounts(outcome.held()), now_ms, limits), None)
        } else {
            let kept = self.kept_policies(&plan.reach, outcome.held());
            (self.hold_on(kept.iter().copied(), now_ms, limits), Some(kept))
        };
        let id = match &req.id {
            Some(id) => id.clone(),
            None => self.generate_id(now_ms),
        };
        for path in &req.set.paths {
            let node = self.ensure_path(path, now_ms);
            if let Some(node) = self.node_mut(node) {
                node.live_holds += 1;
            }
        }
        let expires_at_ms = now_ms.saturating_add(req.ttl_ms);
        outcome.id = Some(id.clone());
        outcome.expires_at_ms = expires_at_ms;
        let reply = req.id.as_ref().map(|_| Box::new(outcome.clone()));
        let mut items = req.items;
        items.truncate(reserved);
        let items = items.into_iter().map(|cost| Item { cost, state: ItemState::Held, outcome: None }).collect();
        let hold = Hold {
            id: id.clone(),
            set: req.set,
            created_at_ms: now_ms,
            expires_at_ms,
            items,
            lines,
            reply,
            last_commit: None,
            last_release: None,
            meta: req.meta,
        };
        self.hold_expiry.insert((expires_at_ms, id.clone()));
        self.holds.insert(id, hold);
        match partial {
            None => self.observe(plan.reach.policies.iter().copied(), now_ms, limits),
            Some(kept) => self.observe(kept.iter().map(|&(r, _)| r), now_ms, limits),
        }
        outcome
    }

    /// The reached policies a partial hold counts on, with what it holds on
    /// each: a partial UPTO batch keeps the items that fit (`held`), and no
    /// line for the metrics of the others (as a loaded tree derives them).
    /// A hold that keeps every item counts on every reached policy.
    fn kept_policies(&self, reach: &Reach, held: &Costs) -> Short<(PolicyRef, Decimal), 8> {
        let by_metric = Lookup::new(held, reach.policies.len());
        let mut kept = Short::new();
        for &r in &reach.policies {
            if let Some(at) = self.policy(r).and_then(|p| by_metric.position(p.metric())) {
                kept.push((r, held[at].1));
            }
        }
        kept
    }

    /// Adds each kept policy's amount to it (after the resets due), and
    /// gives the hold's lines on them.
    fn hold_on(&mut self, kept: impl Iterator<Item = (PolicyRef, Decimal)>, now_ms: u64, limits: &Limits) -> Vec<Line> {
        let mut lines = Vec::with_capacity(kept.size_hint().0);
        for (r, amount) in kept {
            // Resets due apply first, so the alerts after see this period.
            self.roll_policy(r, now_ms, limits);
            let Some(policy) = self.node_mut(r.node).and_then(|n| n.policies.get_mut(r.index)) else { continue };
            policy.held = amount::plus(policy.held, amount);
            lines.push(Line { node: r.node, generation: policy.generation });
        }
        sort_lines(&mut lines);
        lines
    }

    /// The first answer to a reserve with this client id, if there was one.
    fn repeated_reserve(&self, id: &str) -> Result<Option<ReserveOutcome>> {
        let done;
        let hold = match self.holds.get(id) {
            Some(hold) => Some(hold),
            None => {
                done = match self.done_entry(id) {
                    Some(entry) => entry,
                    None => return Ok(None),
                };
                done.hold.as_ref()
            }
        };
        match hold.and_then(|h| h.reply.as_deref().map(|first| (h, first))) {
            Some((hold, first)) => {
                // `held` is not stored: the hold's items are the reserved
                // ones (a settled partial batch keeps their costs for this).
                let held = match first.reserved {
                    0 => Some(Costs::new()),
                    r if r == first.items => None,
                    _ => Some(sum_costs(hold.items.iter().map(|i| &i.cost))),
                };
                Ok(Some(ReserveOutcome { duplicate: true, held, ..first.clone() }))
            }
            None => Err(Error::State(format!("id '{id}' is already used by another reservation or charge"))),
        }
    }

    fn generate_id(&mut self, now_ms: u64) -> String {
        loop {
            self.seq += 1;
            let id = hex_id(now_ms, self.seq);
            if !self.holds.contains_key(&id) && !self.done.contains_key(&id) {
                return id;
            }
        }
    }

    /// The policy that admits the fewest leading items, when one admits
    /// fewer than all.
    /// Lua twin: `HOLDS.binding_of` (lua/src/70_holds.lua).
    fn binding(&self, reach: &Reach, items: &[Costs], now_ms: u64) -> Option<Binding> {
        let n = items.len();
        // Each policy reads one metric of every item. With many items or
        // metrics, each metric's running totals are gathered once, and a
        // policy finds where its room runs out by binary search: a batch of
        // 1000 items of 128 metrics on thousands of policies otherwise
        // takes seconds.
        let pairs: usize = items.iter().map(Vec::len).sum();
        let columns = (pairs > SCAN_PAIRS).then(|| columns_of(items));
        let mut best: Option<Binding> = None;
        for &r in &reach.policies {
            let Some(policy) = self.policy_at(r, now_ms) else { continue };
            let metric = policy.metric();
            let fits = match &columns {
                Some(columns) => fits_in_column(&policy, n, columns.get(metric).map_or(&[], Vec::as_slice)),
                None => fits_by_scan(&policy, items, metric),
            };
            // Fewest items first; among equals, the least available (root
            // first when that ties too).
            if fits == n {
                continue;
            }
            let available = available(&policy);
            if best.as_ref().is_none_or(|b| fits < b.fits || (fits == b.fits && available < b.available)) {
                best = Some(Binding { policy: r, fits, available });
            }
        }
        best
    }

    fn reserve_message(
        &self,
        req: &ReserveRequest,
        binding: Option<&Binding>,
        reserved: usize,
        total: &Costs,
        now_ms: u64,
    ) -> String {
        let n = req.items.len();
        let Some(b) = binding else {
            return match (req.batch, n) {
                (BatchMode::DryRun, 1) => format!("fits: {}", describe(total)),
                (BatchMode::DryRun, _) => format!("all {n} items fit: {}", describe(total)),
                (_, 1) => describe_after("reserved ", total),
                (_, _) => format!("reserved all {n} items: {}", describe(total)),
            };
        };
        let mut message = self.shortfall(b.policy, total, if n == 1 { None } else { Some((b.fits, n)) }, now_ms);
        if reserved > 0 {
            message.push_str(&format!("; reserved the first {reserved}"));
        }
        message
    }

    /// One sentence naming the policy that refuses and by how much.
    /// `of` is (fits, items) for a batch.
    fn shortfall(&self, r: PolicyRef, total: &Costs, of: Option<(usize, usize)>, now_ms: u64) -> String {
        let (Some(node), Some(policy)) = (self.node(r.node), self.policy_at(r, now_ms)) else {
            return "not allowed".into();
        };
        let metric = policy.metric();
        let path = names::display_path(&node.path);
        let lead = match of {
            Some((fits, n)) => format!("enough {metric} for {fits} of {n} items"),
            None => format!("not enough {metric}"),
        };
        if policy.inflight {
            return format!(
                "{lead}: {} of {} in flight at {path}, {} needed",
                amount::format(policy.held),
                amount::format(policy.allowance()),
                amount::format(costs_get(total, metric))
            );
        }
        match policy.mode {
            Mode::Block => format!(
                "{lead}: the limit at {path} is reached ({} of {} used)",
                amount::format(policy.used),
                amount::format(policy.allowance())
            ),
            _ => format!(
                "{lead}: {} available at {path}, {} needed",
                amount::format(policy.remaining().max(Decimal::ZERO)),
                amount::format(costs_get(total, metric))
            ),
        }
    }

    /// A remembered id, unpacked.
    pub(crate) fn done_entry(&self, id: &str) -> Option<DoneEntry> {
        self.done.get(id).and_then(|tomb| tomb.unpack())
    }

    /// Finds a reservation that is live (borrowed) or remembered (unpacked).
    /// Lua twin: `HOLDS.lookup` (lua/src/70_holds.lua).
    fn lookup(&self, id: &str) -> Result<(Cow<'_, Hold>, bool)> {
        if let Some(hold) = self.holds.get(id) {
            return Ok((Cow::Borrowed(hold), true));
        }
        match self.done_entry(id) {
            Some(DoneEntry { hold: Some(hold), .. }) => Ok((Cow::Owned(hold), false)),
            Some(_) => Err(Error::State(format!("'{id}' names a charge, not a reservation"))),
            None => Err(Error::NotFound(format!("reservation '{}'", names::clip(id)))),
        }
    }

    /// Changes a live or remembered reservation.
    fn update_hold(&mut self, id: &str, change: impl FnOnce(&mut Hold)) {
        if let Some(hold) = self.holds.get_mut(id) {
            change(hold);
        } else if let Some(mut entry) = self.done_entry(id)
            && let Some(hold) = entry.hold.as_mut()
        {
            change(hold);
            self.remember(entry);
        }
    }

    /// Lua twin: `HOLDS.check_item` (lua/src/70_holds.lua).
    fn check_item(hold: &Hold, item: usize) -> Result<()> {
        if item >= hold.items.len() {
            return Err(Error::NotFound(format!(
                "item {item} in reservation '{}': it holds items 0 to {}",
                hold.id,
                hold.items.len() - 1
            )));
        }
        Ok(())
    }

    /// `QUOTA.COMMIT`: charges the actual amount (default: what is reserved)
    /// and releases the hold of the settled items.
    /// Lua twin: `HOLDS.commit` (lua/src/70_holds.lua).
    pub fn commit(
        &mut self,
        id: &str,
        item: Option<usize>,
        actual: Option<Costs>,
        now_ms: u64,
        limits: &Limits,
    ) -> Result<CommitOutcome> {
        let plan = match self.plan_commit(id, item, actual)? {
            Settle::Items(plan) => plan,
            Settle::Repeat(first) => return Ok(first),
        };
        self.sync_way(&plan.set.paths, now_ms);
        let reach = self.usage_reach(&plan.set, &plan.actual);
        // A commit is refused only for the paths it would create (a late
        // commit on a deleted path); its totals are never refused.
        self.check_new_paths(plan.set.paths.iter().map(String::as_str), reach.missing, limits)?;

        // After this point the commit succeeds.
        // (The META of a live hold, or the one an expired hold's finished
        // id keeps for a late commit.)
        let ledger = limits.ledger.then(|| {
            let meta = match plan.live {
                true => self.holds.get(id).and_then(|h| h.meta.clone()),
                false => self.done_entry(id).and_then(|e| e.hold?.meta),
            };
            (plan.set.clone(), meta)
        });
        let outcome = self.apply_commit(id, item, plan, reach, now_ms, limits);
        if let Some((set, meta)) = ledger {
            let mut entry = LedgerEntry::of_set(LedgerKind::Commit, now_ms, Some(id), &set, outcome.charged.clone());
            (entry.item, entry.late, entry.meta) = (item, outcome.expired, meta);
            self.ledger.push(entry);
        }
        Ok(outcome)
    }

    /// What a commit of `item` (or of every pending item) of `id` settles,
    /// or the first answer when it repeats one; changes nothing.
    fn plan_commit(
        &self,
        id: &str,
        item: Option<usize>,
        actual: Option<Costs>,
    ) -> Result<Settle<CommitPlan, CommitOutcome>> {
        let (hold, live) = self.lookup(id)?;
        let indices = match Self::commit_indices(&hold, id, item)? {
            Settle::Items(indices) => indices,
            Settle::Repeat(first) => return Ok(Settle::Repeat(first)),
        };
        let held: Vec<usize> = indices.iter().copied().filter(|&i| hold.items[i].state == ItemState::Held).collect();
        let expired = held.len() < indices.len();
        let held = hold.cost_of(&held);
        if let Some(actual) = &actual {
            check_item_metrics(actual)?;
        }
        let actual = actual.unwrap_or_else(|| hold.cost_of(&indices));
        Ok(Settle::Items(CommitPlan { set: hold.set.clone(), indices, held, expired, actual, live }))
    }

    /// The items a commit settles: `item`, or every pending one; or the
    /// first answer when the commit repeats one.
    fn commit_indices(hold: &Hold, id: &str, item: Option<usize>) -> Result<Settle<Vec<usize>, CommitOutcome>> {
        let pending = |s: ItemState| matches!(s, ItemState::Held | ItemState::Expired);
        let Some(i) = item else {
            let pending: Vec<usize> = (0..hold.items.len()).filter(|&i| pending(hold.items[i].state)).collect();
            if !pending.is_empty() {
                return Ok(Settle::Items(pending));
            }
            return match &hold.last_commit {
                Some(first) => Ok(Settle::Repeat(CommitOutcome { duplicate: true, ..(**first).clone() })),
                None => Err(Error::State(format!("reservation '{id}' was released; nothing to commit"))),
            };
        };
        Self::check_item(hold, i)?;
        match (hold.items[i].state, &hold.items[i].outcome) {
            (ItemState::Committed, Some(first)) => {
                Ok(Settle::Repeat(CommitOutcome { duplicate: true, ..(**first).clone() }))
            }
            (ItemState::Committed, None) => {
                Err(Error::State(format!("item {i} of reservation '{id}' was committed as part of the whole")))
            }
            (ItemState::Released, _) => {
                Err(Error::State(format!("item {i} of reservation '{id}' was released; nothing to commit")))
            }
            _ => Ok(Settle::Items(vec![i])),
        }
    }

    /// Carries out a commit that [`Tree::plan_commit`] decided and whose
    /// new paths fit: the hold is released, the actual amount charged, and
    /// the items marked committed.
    fn apply_commit(
        &mut self,
        id: &str,
        item: Option<usize>,
        plan: CommitPlan,
        reach: Reach,
        now_ms: u64,
        limits: &Limits,
    ) -> CommitOutcome {
        let CommitPlan { set, indices, held, expired, actual, live } = plan;
        if live {
            self.release_lines(id, &indices);
        }
        let (over, drawn) = self.apply_usage(reach, &set, &actual, now_ms, limits);
        let (charged, released, overage) = settle_amounts(held, actual);
        let outcome =
            CommitOutcome { id: id.to_string(), charged, released, overage, duplicate: false, expired, over, drawn };
        self.update_hold(id, |hold| {
            for &i in &indices {
                hold.items[i].state = ItemState::Committed;
            }
            if item.is_some() {
                hold.items[indices[0]].outcome = Some(Box::new(outcome.clone()));
            }
            hold.last_commit = Some(Box::new(outcome.clone()));
        });
        if live {
            self.finish_if_settled(id, now_ms, limits);
        }
        outcome
    }

    /// `QUOTA.RELEASE`: gives back the hold of the items without charging.
    /// Lua twin: `HOLDS.release` (lua/src/70_holds.lua).
    pub fn release(&mut self, id: &str, item: Option<usize>, now_ms: u64, limits: &Limits) -> Result<ReleaseOutcome> {
        let (hold, live) = self.lookup(id)?;
        let repeat = |hold: &Hold| -> ReleaseOutcome {
            match &hold.last_release {
                Some(first) => ReleaseOutcome { duplicate: true, ..(**first).clone() },
                None => ReleaseOutcome { id: id.to_string(), released: Costs::new(), duplicate: true, expired: false },
            }
        };
        let indices: Vec<usize> = match item {
            Some(i) => {
                Self::check_item(&hold, i)?;
                match hold.items[i].state {
                    ItemState::Released => return Ok(repeat(&hold)),
                    ItemState::Committed => {
                        return Err(Error::State(format!(
                            "item {i} of reservation '{id}' was committed; nothing to release"
                        )));
                    }
                    ItemState::Held | ItemState::Expired => vec![i],
                }
            }
            None => {
                let open: Vec<usize> = (0..hold.items.len())
                    .filter(|&i| matches!(hold.items[i].state, ItemState::Held | ItemState::Expired))
                    .collect();
                if open.is_empty() {
                    if hold.items.iter().all(|i| i.state == ItemState::Committed) {
                        return Err(Error::State(format!("reservation '{id}' was committed; nothing to release")));
                    }
                    return Ok(repeat(&hold));
                }
                open
            }
        };
        let held: Vec<usize> = indices.iter().copied().filter(|&i| hold.items[i].state == ItemState::Held).collect();
        let released = hold.cost_of(&held);
        let expired = held.len() < indices.len();

        // After this point the release succeeds. Only a release that gives
        // something back is a ledger entry.
        let entry = (limits.ledger && !held.is_empty()).then(|| {
            let mut entry = LedgerEntry::of_set(LedgerKind::Release, now_ms, Some(id), &hold.set, released.clone());
            (entry.item, entry.meta) = (item, hold.meta.clone());
            entry
        });
        drop(hold);
        self.ledger.extend(entry);
        if live {
            self.release_lines(id, &held);
        }
        let outcome = ReleaseOutcome { id: id.to_string(), released, duplicate: false, expired };
        self.update_hold(id, |hold| {
            for &i in &indices {
                hold.items[i].state = ItemState::Released;
            }
            hold.last_release = Some(Box::new(outcome.clone()));
        });
        if live {
            self.finish_if_settled(id, now_ms, limits);
        }
        Ok(outcome)
    }

    /// `QUOTA.EXTEND`: the hold now expires `ttl_ms` from now.
    /// Lua twin: `HOLDS.extend` (lua/src/70_holds.lua).
    pub fn extend(&mut self, id: &str, ttl_ms: u64, now_ms: u64) -> Result<ExtendOutcome> {
        let (_, live) = self.lookup(id)?;
        if !live {
            return Err(Error::State(format!("reservation '{id}' is no longer held (committed, released or expired)")));
        }
        let expires_at_ms = now_ms.saturating_add(ttl_ms);
        if let Some(hold) = self.holds.get_mut(id) {
            self.hold_expiry.remove(&(hold.expires_at_ms, id.to_string()));
            hold.expires_at_ms = expires_at_ms;
            self.hold_expiry.insert((expires_at_ms, id.to_string()));
        }
        Ok(ExtendOutcome { id: id.to_string(), expires_at_ms })
    }

    /// Releases every hold whose expiry is at or before `now_ms` and forgets
    /// finished ids whose memory ran out. The cost is proportional to what
    /// is due, not to the number of holds.
    /// Lua twin: `expire` (lua/src/70_holds.lua).
    pub fn expire(&mut self, now_ms: u64, limits: &Limits) -> Expiry {
        self.expire_some(now_ms, limits, usize::MAX)
    }

    /// [`Tree::expire`], stopping after `budget` holds and ids, soonest
    /// due first (holds before ids), so the timer's work per tick is
    /// bounded; what is left stays due. The order is fixed, so a replica
    /// given the same budget at the same time does the same work.
    /// Lua twin: `expire` with a limit, from `CMD.cmd_sweep` (lua/src/70_holds.lua).
    pub fn expire_some(&mut self, now_ms: u64, limits: &Limits, budget: usize) -> Expiry {
        let mut report = Expiry::default();
        // The soonest entry is looked at in place: its id is copied only
        // when it is due (most requests find nothing due).
        while report.expired_holds < budget
            && let Some((at, id)) = self.hold_expiry.first().filter(|(at, _)| *at <= now_ms).cloned()
        {
            let held: Vec<usize> = match self.holds.get(&id) {
                Some(hold) => (0..hold.items.len()).filter(|&i| hold.items[i].state == ItemState::Held).collect(),
                None => Vec::new(),
            };
            self.release_lines(&id, &held);
            if let Some(hold) = self.holds.get_mut(&id) {
                for &i in &held {
                    hold.items[i].state = ItemState::Expired;
                }
                let event = Self::expired_event(hold, &held, at);
                if limits.ledger {
                    let cost = hold.cost_of(&held);
                    let mut entry = LedgerEntry::of_set(LedgerKind::Expire, at, Some(&hold.id), &hold.set, cost);
                    entry.meta = hold.meta.clone();
                    self.ledger.push(entry);
                }
                self.emit(event, limits);
            }
            self.finish(&id, at, limits);
            report.expired_holds += 1;
        }
        while report.expired_holds + report.forgotten_ids < budget
            && let Some((_, id)) = self.done_expiry.first().filter(|(at, _)| *at <= now_ms).cloned()
        {
            self.done_expiry.pop_first();
            self.done.remove(&id);
            report.forgotten_ids += 1;
        }
        report
    }

    /// When the tree next has something to expire or forget.
    /// Lua twin: `index_due` (lua/src/60_tree.lua).
    pub fn next_due_ms(&self) -> Option<u64> {
        let hold = self.hold_expiry.first().map(|(at, _)| *at);
        let done = self.done_expiry.first().map(|(at, _)| *at);
        match (hold, done) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Subtracts what `indices` of a live hold hold from its policies.
    /// Lua twin: `release_lines` (lua/src/70_holds.lua).
    fn release_lines(&mut self, id: &str, indices: &[usize]) {
        let Some(hold) = self.holds.get(id) else { return };
        // What the items hold per metric, summed once: a line reads its
        // metric there instead of in every item.
        let released = sum_costs(indices.iter().map(|&i| &hold.items[i].cost));
        let released = Totals::of(released, hold.lines.len());
        for line in &hold.lines {
            let Some(policy) = self
                .nodes
                .get_mut(line.node as usize)
                .and_then(Option::as_mut)
                .and_then(|n| n.policies.iter_mut().find(|p| p.generation == line.generation))
            else {
                continue;
            };
            let amount = released.get(policy.metric());
            debug_assert!(policy.held >= amount, "held never goes negative");
            policy.held = (policy.held - amount).max(Decimal::ZERO);
        }
    }

    /// Lua twin: `finish_if_settled` (lua/src/70_holds.lua).
    fn finish_if_settled(&mut self, id: &str, now_ms: u64, limits: &Limits) {
        if self.holds.get(id).is_some_and(|h| h.items.iter().all(|i| i.state != ItemState::Held)) {
            self.finish(id, now_ms, limits);
        }
    }

    /// Moves a live hold to the tombstones.
    /// Lua twin: `finish` (lua/src/70_holds.lua).
    fn finish(&mut self, id: &str, now_ms: u64, limits: &Limits) {
        let Some(mut hold) = self.holds.remove(id) else { return };
        self.hold_expiry.remove(&(hold.expires_at_ms, id.to_string()));
        for path in &hold.set.paths {
            if let Some(node) = self.find(path).and_then(|n| self.node_mut(n)) {
                node.live_holds = node.live_holds.saturating_sub(1);
            }
        }
        hold.lines = Vec::new();
        // A hold settled item by item (committed or released) is only asked
        // about again by repeats, answered from its outcomes: its paths and
        // costs are not needed. An expired one keeps them for a late commit,
        // and a partly reserved batch its costs for a repeat's `held`. Only
        // an expired one keeps its META, for a late commit's ledger entry.
        if !hold.items.iter().any(|i| i.state == ItemState::Expired) {
            hold.meta = None;
            hold.set.paths = Vec::new();
            hold.set.service = None;
            hold.set.model = None;
            let partial = hold.reply.as_ref().is_some_and(|r| r.reserved < r.items);
            if !partial {
                for item in &mut hold.items {
                    item.cost = Costs::new();
                }
            }
        }
        self.remember(DoneEntry {
            id: id.to_string(),
            forget_at_ms: now_ms.saturating_add(limits.tombstone_ttl_ms),
            hold: Some(hold),
            charge: None,
        });
    }

    /// Lua twin: `remember` (lua/src/70_holds.lua).
    pub(crate) fn remember(&mut self, entry: DoneEntry) {
        self.done_expiry.insert((entry.forget_at_ms, entry.id.clone()));
        let tomb = Tomb::pack(&entry);
        if let Some(old) = self.done.insert(entry.id.clone(), tomb)
            && old.forget_at_ms != entry.forget_at_ms
        {
            self.done_expiry.remove(&(old.forget_at_ms, entry.id));
        }
    }

    /// `QUOTA.CHARGE`: records usage that already happened, without a hold.
    /// Decides (a repeated id, which policies refuse, whether `CHECK`
    /// refuses, whether the totals stay in range), then applies.
    pub fn charge(&mut self, req: ChargeRequest, now_ms: u64, limits: &Limits) -> Result<ChargeOutcome> {
        if let Some(id) = &req.id
            && let Some(first) = self.repeated_charge(id)?
        {
            return Ok(first);
        }
        check_item_metrics(&req.cost)?;
        self.sync_way(&req.set.paths, now_ms);
        let undo = self.materialize(&req.set.paths, now_ms, limits)?;
        let reach = self.usage_reach(&req.set, &req.cost);
        // An archived node refuses before access rules and amounts, with
        // or without CHECK: nothing is recorded.
        let archived = self.judge_archived(&reach);
        let refused = !archived.is_empty();
        let refusals = if refused { archived } else { self.judge_access(&reach, &req.set) };
        if (req.check || refused) && !refusals.is_empty() {
            self.unmake_if(undo);
            return Ok(ChargeOutcome {
                allowed: false,
                charged: Costs::new(),
                checks: Vec::new(),
                denied_by: refusals.labels().collect(),
                message: refusals.message,
                over: Vec::new(),
                duplicate: false,
                drawn: Vec::new(),
                access: refusals.checks,
            });
        }
        let verdict = self.judge_charge(&req, &reach, now_ms);
        if req.check
            && let Some(first) = verdict.refused
        {
            let message = self.shortfall(first, &req.cost, None, now_ms);
            self.unmake_if(undo);
            return Ok(ChargeOutcome {
                allowed: false,
                charged: Costs::new(),
                message,
                checks: verdict.checks,
                denied_by: verdict.denied_by,
                over: Vec::new(),
                duplicate: false,
                drawn: Vec::new(),
                access: Vec::new(),
            });
        }
        if let Err(e) = self.check_usage(&reach, &req.set, &req.cost, now_ms, limits) {
            self.unmake_if(undo);
            return Err(e);
        }

        // After this point the charge succeeds.
        Ok(self.apply_charge(req, reach, verdict, refusals, now_ms, limits))
    }

    /// The first answer to a charge with this client id, if there was one;
    /// an error when a reservation has the id.
    fn repeated_charge(&self, id: &str) -> Result<Option<ChargeOutcome>> {
        if self.holds.contains_key(id) {
            return Err(Error::State(format!("id '{id}' is already used by a reservation")));
        }
        match self.done_entry(id) {
            Some(DoneEntry { charge: Some(first), .. }) => Ok(Some(ChargeOutcome { duplicate: true, ..first })),
            Some(_) => Err(Error::State(format!("id '{id}' is already used by a reservation"))),
            None => Ok(None),
        }
    }

    /// Which reached policies refuse the charge, the one that binds, and
    /// the checks the answer shows.
    fn judge_charge(&self, req: &ChargeRequest, reach: &Reach, now_ms: u64) -> ChargeVerdict {
        // The policies that refuse this charge, each judged once.
        let failing: Vec<PolicyRef> = reach
            .with_amounts(&req.cost)
            .filter(|&(r, cost)| self.policy_at(r, now_ms).is_some_and(|p| !p.passes(cost)))
            .map(|(r, _)| r)
            .collect();
        // The binding refusal: the least available (root first on ties).
        let mut refused: Option<(PolicyRef, Decimal)> = None;
        for &r in &failing {
            let Some(left) = self.policy_at(r, now_ms).map(|p| available(&p)) else { continue };
            if refused.is_none_or(|(_, least)| left < least) {
                refused = Some((r, left));
            }
        }
        let refused = refused.map(|(r, _)| r);
        // The checks are built for a full answer, or to explain a refusal.
        let checks = if req.brief && (refused.is_none() || !req.check) {
            Vec::new()
        } else {
            self.checks(reach, &req.cost, now_ms)
        };
        let denied_by = failing
            .iter()
            .filter_map(|&r| {
                Some(format!("{}#{}", names::display_path(&self.node(r.node)?.path), self.policy(r)?.name()))
            })
            .collect();
        ChargeVerdict { refused, checks, denied_by }
    }

    /// Records a checked charge: usage on every reached node and policy,
    /// and the answer remembered under a client id. A charge that access
    /// rules refuse (without `CHECK`) is recorded all the same, with a
    /// `disallowed` event per refusing node (before the policies' alerts)
    /// and its access checks in the answer.
    fn apply_charge(
        &mut self,
        req: ChargeRequest,
        reach: Reach,
        verdict: ChargeVerdict,
        refusals: Refusals,
        now_ms: u64,
        limits: &Limits,
    ) -> ChargeOutcome {
        self.disallowed_events(&refusals, req.id.as_deref(), &req.cost, req.meta.as_deref(), now_ms, limits);
        if limits.ledger {
            let mut entry =
                LedgerEntry::of_set(LedgerKind::Charge, now_ms, req.id.as_deref(), &req.set, req.cost.clone());
            (entry.disallowed, entry.meta) = (!refusals.is_empty(), req.meta.clone());
            self.ledger.push(entry);
        }
        let (over, drawn) = self.apply_usage(reach, &req.set, &req.cost, now_ms, limits);
        let mut message = describe_after("charged ", &req.cost);
        let mut denied_by = verdict.denied_by;
        if !refusals.is_empty() {
            message = format!("{message}; {}", refusals.message);
            denied_by.splice(0..0, refusals.labels());
        }
        let access = if req.brief { Vec::new() } else { refusals.checks };
        let outcome = ChargeOutcome {
            allowed: true,
            message,
            charged: req.cost,
            checks: verdict.checks,
            denied_by,
            over,
            duplicate: false,
            drawn,
            access,
        };
        if let Some(id) = req.id {
            self.remember(DoneEntry {
                id,
                forget_at_ms: now_ms.saturating_add(limits.tombstone_ttl_ms),
                hold: None,
                charge: Some(outcome.clone()),
            });
        }
        outcome
    }

    /// `QUOTA.HOLDS`: live holds naming `path` or a path below it, soonest
    /// expiry first.
    /// Lua twin: `HOLDS.holds_view` (lua/src/70_holds.lua).
    pub fn holds_view(&self, path: &str, count: usize) -> Vec<HoldView> {
        self.holds_expiring_from(path, count, 0)
    }

    /// `QUOTA.HOLDS` at `now_ms`: the holds due by then are left out, as
    /// expiry would leave them (see `due`).
    /// Lua twin: `HOLDS.holds_view` after `expire` (lua/src/70_holds.lua).
    pub fn holds_view_at(&self, path: &str, count: usize, now_ms: u64) -> Vec<HoldView> {
        self.holds_expiring_from(path, count, now_ms.saturating_add(1))
    }

    fn holds_expiring_from(&self, path: &str, count: usize, from_ms: u64) -> Vec<HoldView> {
        self.hold_expiry
            .range((from_ms, String::new())..)
            .filter_map(|(_, id)| self.holds.get(id))
            .filter(|h| h.set.paths.iter().any(|p| names::is_within(p, path)))
            .take(count)
            .map(|h| HoldView {
                id: h.id.clone(),
                paths: h.set.paths.iter().map(|p| names::display_path(p).to_string()).collect(),
                expires_at_ms: h.expires_at_ms,
                items: h.items.len(),
                held: h.held_costs(),
                meta: h.meta.as_deref().cloned(),
            })
            .collect()
    }
}

/// `{now_ms:x}-{seq:x}`, written without the formatting machinery (it is
/// on the path of every reservation).
pub(crate) fn hex_id(now_ms: u64, seq: u64) -> String {
    // Digit by digit from the most significant non-zero one (at least
    // one), each pushed as a char: no UTF-8 check, no intermediate buffer.
    fn push_hex(out: &mut String, n: u64) {
        let digits = (16 - n.leading_zeros() / 4).max(1);
        for k in (0..digits).rev() {
            out.push(char::from(b"0123456789abcdef"[((n >> (4 * k)) & 15) as usize]));
        }
    }
    let mut id = String::with_capacity(24);
    push_hex(&mut id, now_ms);
    id.push('-');
    push_hex(&mut id, seq);
    id
}

/// Up to this many (item, metric) pairs, a policy reads its metric from the
/// items directly ([`fits_by_scan`]).
const SCAN_PAIRS: usize = 16;

/// For each metric, the items that take some of it, in item order, with
/// the running total of what they take: (item index, total so far).
/// Lua twin: `HOLDS.columns_of` (lua/src/70_holds.lua).
fn columns_of(items: &[Costs]) -> HashMap<&str, Vec<(usize, Decimal)>> {
    let mut columns: HashMap<&str, Vec<(usize, Decimal)>> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        for (metric, amount) in item.iter().filter(|(_, a)| *a > Decimal::ZERO) {
            let column = columns.entry(metric.as_str()).or_default();
            let total = column.last().map_or(Decimal::ZERO, |(_, t)| *t) + *amount;
            column.push((i, total));
        }
    }
    columns
}

/// How many of `n` leading items `policy` admits: all but those from the
/// first item that takes some of its metric when a block policy is at its
/// limit, or from the first whose running total exceeds a strict policy's
/// room (allowance − used − held). Items that take nothing always pass.
/// `column` is the policy's metric in [`columns_of`].
/// Lua twin: `HOLDS.fits_in_column` (lua/src/70_holds.lua).
fn fits_in_column(policy: &Policy, n: usize, column: &[(usize, Decimal)]) -> usize {
    let stop = match policy.mode {
        Mode::Open => None,
        Mode::Block if policy.used < policy.allowance() => None,
        Mode::Block => column.first(),
        Mode::Strict => {
            let room = policy.remaining();
            column.get(column.partition_point(|(_, total)| *total <= room))
        }
    };
    stop.map_or(n, |(i, _)| *i)
}

/// [`fits_in_column`] for a few items, read directly.
fn fits_by_scan(policy: &Policy, items: &[Costs], metric: &str) -> usize {
    let taking = |i: usize| amount::positive(costs_get(&items[i], metric));
    match policy.mode {
        Mode::Open => items.len(),
        Mode::Block if policy.used < policy.allowance() => items.len(),
        Mode::Block => (0..items.len()).find(|&i| taking(i)).unwrap_or(items.len()),
        Mode::Strict => {
            // used + held + the running total against the allowance: the
            // same comparison as the room, without computing it.
            let (allowance, mut level) = (policy.allowance(), amount::plus(policy.used, policy.held));
            for (i, item) in items.iter().enumerate() {
                let c = costs_get(item, metric);
                if amount::positive(c) {
                    level = amount::plus(level, c);
                    if amount::cmp(level, allowance).is_gt() {
                        return i;
                    }
                }
            }
            items.len()
        }
    }
}

/// The total of some costs, per metric.
fn sum_costs<'a>(items: impl IntoIterator<Item = &'a Costs>) -> Costs {
    let mut total = Totals::new();
    for item in items {
        for (metric, value) in item {
            total.add(metric, *value);
        }
    }
    total.into_costs()
}

/// Refuses an item with more than [`MAX_ITEM_METRICS`] metrics.
fn check_item_metrics(item: &Costs) -> Result<()> {
    if item.len() > MAX_ITEM_METRICS {
        return Err(Error::Limit(format!("at most {MAX_ITEM_METRICS} metrics per item")));
    }
    Ok(())
}

/// The total of a request's items, per metric, within the bounds: at most
/// [`MAX_ITEM_METRICS`] metrics per item and [`MAX_REQUEST_METRICS`] in
/// all, every total within 10^18.
fn request_total(items: &[Costs]) -> Result<Costs> {
    // The usual request, one item of a few distinct metrics: its total is
    // the item, once every amount is within the bound.
    if let [item] = items
        && item.len() <= 8
        && item.iter().enumerate().all(|(i, (m, _))| item[..i].iter().all(|(n, _)| n != m))
    {
        for (_, value) in item {
            amount::add(Decimal::ZERO, *value)?;
        }
        return Ok(item.clone());
    }
    let mut total = Totals::new();
    for item in items {
        check_item_metrics(item)?;
        for (metric, value) in item {
            let sum = amount::add(total.get(metric), *value)?;
            total.set(metric, sum);
            if total.len() > MAX_REQUEST_METRICS {
                return Err(Error::Limit(format!("at most {MAX_REQUEST_METRICS} distinct metrics per request")));
            }
        }
    }
    Ok(total.into_costs())
}

/// `30 credits, 1 requests`.
/// Lua twin: `describe` (lua/src/40_names.lua).
pub fn describe(costs: &Costs) -> String {
    describe_after("", costs)
}

/// `prefix` then [`describe`], in one allocation.
pub fn describe_after(prefix: &str, costs: &Costs) -> String {
    if costs.is_empty() {
        return format!("{prefix}nothing");
    }
    let mut out = String::with_capacity(prefix.len() + 24 * costs.len());
    out.push_str(prefix);
    let mut text = amount::Text::new();
    for (i, (metric, value)) in costs.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(text.write(*value));
        out.push(' ');
        out.push_str(metric);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PolicySpec, Warn};
    use crate::window::Window;

    /// Generated ids are `{now_ms:x}-{seq:x}`.
    #[test]
    fn hex_ids_are_lowercase_hex_without_leading_zeros() {
        for (now, seq) in [(0, 0), (1, 15), (16, 255), (1_700_000_000_000, 4096), (u64::MAX, u64::MAX >> 4)] {
            assert_eq!(hex_id(now, seq), format!("{now:x}-{seq:x}"));
        }
    }

    /// Both ways of counting the items a policy admits agree, on random
    /// batches and policies of every mode.
    #[test]
    fn fits_by_column_and_by_scan_agree() {
        let mut seed: u64 = 11;
        let mut next = |m: u64| {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) % m
        };
        for _ in 0..3000 {
            let n = 1 + next(12) as usize;
            let mut items: Vec<Costs> = Vec::new();
            for _ in 0..n {
                let mut item = Costs::new();
                for m in 0..3 {
                    if next(3) > 0 {
                        item.push((format!("m{m}"), Decimal::new(next(9) as i64 - 2, next(2) as u32)));
                    }
                }
                items.push(item);
            }
            let mode = [Mode::Strict, Mode::Block, Mode::Open][next(3) as usize];
            let spec = PolicySpec {
                metric: format!("m{}", next(3)),
                limit: Decimal::from(next(30)),
                mode,
                window: Window::None,
                warn: Warn::default(),
                rollover: None,
                service: None,
                model: None,
                low: None,
                inflight: false,
            };
            let mut policy = Policy::new("p", spec, 1, 0);
            policy.used = Decimal::from(next(20));
            policy.held = Decimal::from(next(5));
            let columns = columns_of(&items);
            let column = columns.get(policy.metric()).map_or(&[][..], Vec::as_slice);
            assert_eq!(
                fits_in_column(&policy, n, column),
                fits_by_scan(&policy, &items, policy.metric()),
                "{items:?} {policy:?}"
            );
        }
    }
}
