//! The read view of a tree at a time: what the tree would be if the
//! expiry due at `now_ms` had run, computed without changing anything.
//!
//! A read must not write (no `WATCH` broken, no client-tracking
//! invalidation, nothing replicated), yet it must answer what a write at
//! the same time would see. Resets already work this way
//! ([`super::policy::Policy::at`]); this file does the same for expiry:
//! holds due at `now_ms` no longer count as held, do not show in
//! `QUOTA.HOLDS`, and their `expired` events show in `QUOTA.EVENTS` with the
//! sequence numbers [`Tree::expire`] will give them when it stores them.
//! The cost follows what is due, never the size of the tree.
//!
//! Lua twin: `expire(ctx)` applied to a context that a read never flushes
//! (lua/src/70_holds.lua and lua/src/90_register.lua).

use std::collections::HashMap;

use rust_decimal::Decimal;

use super::events::{Event, EventKind};
use super::hold::{Hold, ItemState};
use super::outcome::Lookup;
use super::tree::{Limits, NodeId, Tree};

/// What each policy, by node and generation, would stop holding.
pub type DueRelease = HashMap<(NodeId, u64), Decimal>;

impl Tree {
    /// The live holds due at `now_ms`, in the order expiry takes them.
    fn due_holds(&self, now_ms: u64) -> impl Iterator<Item = (u64, &str, Option<&Hold>)> {
        self.hold_expiry
            .iter()
            .take_while(move |(at, _)| *at <= now_ms)
            .map(|(at, id)| (*at, id.as_str(), self.holds.get(id)))
    }

    /// Whether a read at `now_ms` must look through the due expiry (the
    /// usual answer, nothing due, costs one lookup).
    /// Lua twin: `expire` on a read, never flushed (`tree_command`, lua/src/90_register.lua).
    pub fn has_due_holds(&self, now_ms: u64) -> bool {
        self.hold_expiry.first().is_some_and(|(at, _)| *at <= now_ms)
    }

    /// How much each policy would stop holding if the expiry due at
    /// `now_ms` ran. Empty when nothing is due.
    pub fn due_release(&self, now_ms: u64) -> DueRelease {
        let mut release = DueRelease::new();
        for (_, _, hold) in self.due_holds(now_ms) {
            let Some(hold) = hold else { continue };
            // What the hold holds, summed once (not once per line).
            let held = hold.held_costs();
            let held = Lookup::new(&held, hold.lines.len());
            for line in &hold.lines {
                let Some(policy) =
                    self.node(line.node).and_then(|n| n.policies.iter().find(|p| p.generation == line.generation))
                else {
                    continue;
                };
                let amount = held.get(policy.metric());
                if !amount.is_zero() {
                    *release.entry((line.node, line.generation)).or_default() += amount;
                }
            }
        }
        release
    }

    /// The `expired` event of a hold whose `held` items expire at `at_ms`
    /// (its `seq` is given when it is logged).
    pub(crate) fn expired_event(hold: &Hold, held: &[usize], at_ms: u64) -> Event {
        let mut event = Event::of_request(
            EventKind::Expired,
            at_ms,
            hold.set.paths.first().cloned().unwrap_or_default(),
            Some(hold.id.clone()),
            hold.cost_of(held),
        );
        event.meta = hold.meta.clone();
        event
    }

    /// `QUOTA.EVENTS` at `now_ms`: the logged events and then the `expired`
    /// events the due expiry would log, kept to the log's length as
    /// logging them would; those after `since`, oldest first, at most
    /// `count`.
    /// Lua twin: the pending events of `CMD.cmd_events` (lua/src/80_commands.lua).
    pub fn events_view(&self, since: u64, count: usize, now_ms: u64, limits: &Limits) -> Vec<Event> {
        let mut pending = Vec::new();
        let mut seq = self.next_event_seq;
        for (at, _, hold) in self.due_holds(now_ms) {
            let Some(hold) = hold else { continue };
            let held: Vec<usize> = (0..hold.items.len()).filter(|&i| hold.items[i].state == ItemState::Held).collect();
            let mut event = Self::expired_event(hold, &held, at);
            event.seq = seq;
            seq += 1;
            pending.push(event);
        }
        if pending.is_empty() {
            return self.events_since(since, count).cloned().collect();
        }
        let keep = limits.events_len.max(1);
        let total = self.events.len() + pending.len();
        let skip_stored = total.saturating_sub(keep).min(self.events.len());
        let skip_pending = total.saturating_sub(keep).saturating_sub(self.events.len());
        self.events
            .iter()
            .skip(skip_stored)
            .chain(pending.iter().skip(skip_pending))
            .filter(|e| e.seq > since)
            .take(count)
            .cloned()
            .collect()
    }
}

/// The amount a policy holds once `release` is taken out of it.
pub(crate) fn held_after(release: Option<&DueRelease>, node: NodeId, generation: u64, held: Decimal) -> Decimal {
    match release.and_then(|r| r.get(&(node, generation))) {
        Some(amount) => (held - amount).max(Decimal::ZERO),
        None => held,
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use rust_decimal::Decimal;

    use crate::hold::{BatchMode, ReserveRequest};
    use crate::{ChargeSet, Limits, Mode, PolicySpec, Tree, Window, policy};

    fn spec(limit: &str) -> PolicySpec {
        PolicySpec {
            metric: "credits".into(),
            limit: Decimal::from_str(limit).unwrap(),
            mode: Mode::Strict,
            window: Window::None,
            warn: policy::Warn::default(),
            rollover: None,
            service: None,
            model: None,
            low: None,
            inflight: false,
        }
    }

    /// A tree with holds of 1..=n credits on `a` and `b/c`, the hold of k
    /// credits expiring at 100 × k (two per time from k = 5 on).
    fn tree_with_holds(n: u64) -> Tree {
        let l = Limits::default();
        let mut t = Tree::new();
        t.set_policy("", "cap", spec("1000"), 0, &l).unwrap();
        t.set_policy("b", "cap", spec("500"), 0, &l).unwrap();
        for k in 1..=n {
            let req = ReserveRequest {
                set: ChargeSet {
                    paths: vec![if k % 2 == 0 { "a".into() } else { "b/c".into() }],
                    service: None,
                    model: None,
                },
                id: None,
                ttl_ms: 100 * k.min(5 + k / 2),
                batch: BatchMode::All,
                items: vec![vec![("credits".into(), Decimal::from(k))]],
                brief: false,
                meta: None,
            };
            assert!(t.reserve(req, 0, &l).unwrap().allowed);
        }
        t
    }

    /// A read at t answers what the tree answers after expiring at t, for
    /// every view; the tree itself is unchanged.
    #[test]
    fn a_read_at_t_answers_what_a_write_at_t_would_see() {
        let mut l = Limits::default();
        for events_len in [3, 1000] {
            l.events_len = events_len;
            let t = tree_with_holds(12);
            let stored = crate::persist::encode(&t);
            // time of the read
            for now in [0, 99, 100, 450, 500, 800, 1100, 5000] {
                let mut expired = t.clone();
                expired.expire(now, &l);
                for path in ["", "a", "b", "b/c"] {
                    assert_eq!(t.get_at(path, now, now), expired.get(path, now), "get {path} at {now}");
                }
                assert_eq!(t.tree_view_at("", 8, 100, now, now), expired.tree_view("", 8, 100, now), "tree at {now}");
                assert_eq!(t.holds_view_at("", 100, now), expired.holds_view("", 100), "holds at {now}");
                for since in [0, 2, 5, 40] {
                    let shown = t.events_view(since, 100, now, &l);
                    let logged: Vec<_> = expired.events_since(since, 100).cloned().collect();
                    assert_eq!(shown, logged, "events since {since} at {now} (log of {events_len})");
                }
            }
            assert_eq!(crate::persist::encode(&t), stored, "reads change nothing");
        }
    }

    /// Expiring with a budget, again and again, ends where one expiry
    /// does, and never does more than the budget at a time.
    #[test]
    fn expiry_in_budgeted_steps_equals_one_expiry() {
        let l = Limits { tombstone_ttl_ms: 50, ..Limits::default() };
        for budget in [1, 2, 3, 5, 7, 100] {
            let mut whole = tree_with_holds(12);
            let mut steps = whole.clone();
            // time, expired then
            let report = whole.expire(900, &l);
            let mut done = 0;
            loop {
                let step = steps.expire_some(900, &l, budget);
                let work = step.expired_holds + step.forgotten_ids;
                assert!(work <= budget);
                done += step.expired_holds;
                if work < budget {
                    break;
                }
            }
            assert_eq!(done, report.expired_holds, "budget {budget}");
            assert_eq!(crate::persist::encode(&steps), crate::persist::encode(&whole), "budget {budget}");
        }
    }
}
