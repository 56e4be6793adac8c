-- ---------------------------------------------------------------------------
-- Holds: reserve → commit | release | expire, and charges (src/engine/hold.rs).
-- Item indices are 0-based in commands and replies, 1-based here.
-- ---------------------------------------------------------------------------

local HOLDS = {}

local function get_hold(ctx, id)
    local h = ctx.holds[id]
    if h == nil then
        local blob = ctx.exists and redis.call("HGET", ctx.hkey, id)
        h = blob and hold_of_table(munpack(blob), ctx.key) or false
        ctx.holds[id] = h
    end
    return h or nil
end

local function get_done(ctx, id)
    local e = ctx.done[id]
    if e == nil then
        local blob = ctx.exists and redis.call("HGET", ctx.tkey, id)
        e = blob and unpack_done(blob, ctx.key) or false
        ctx.done[id] = e
    end
    return e or nil
end

-- Rust twin: Tree::remember (src/engine/hold.rs)
local function remember(ctx, entry)
    ctx.done[entry.id] = entry
    ctx.done_dirty[entry.id] = true
    ctx.forgotten[entry.id] = nil
end

-- Rust twin: Hold::cost_of (src/engine/hold.rs)
local function cost_of(hold, indices)
    local list = {}
    for _, i in ipairs(indices) do
        list[#list + 1] = hold.items[i].cost
    end
    return sum_costs(list)
end

local function indices_in(hold, wanted)
    local out = {}
    for i, item in ipairs(hold.items) do
        if wanted[item.state] then
            out[#out + 1] = i
        end
    end
    return out
end

local HELD = { held = true }
local OPEN = { held = true, expired = true }

-- Subtracts what `indices` of a live hold hold from its policies.
-- Rust twin: Tree::release_lines (src/engine/hold.rs)
local function release_lines(ctx, hold, indices)
    local paths = {}
    for _, line in ipairs(hold.lines) do
        paths[#paths + 1] = line.path
    end
    load_nodes(ctx, paths)
    -- What the items hold per metric, summed once: a line reads its metric
    -- there instead of in every item.
    local released = cost_of(hold, indices)
    local at = costs_index(released, #hold.lines)
    for _, line in ipairs(hold.lines) do
        local node = ctx.nodes[line.path]
        if node then
            for _, p in ipairs(node.pols) do
                if p.gen == line.gen then
                    local amount = costs_get_at(released, at, p.metric)
                    p.held = D.max(D.sub(p.held, amount), D.ZERO)
                    touch(ctx, line.path)
                    break
                end
            end
        end
    end
end

-- Moves a live hold to the finished ids.
-- Rust twin: Tree::finish (src/engine/hold.rs)
local function finish(ctx, id, now)
    local hold = get_hold(ctx, id)
    if not hold then
        return
    end
    ctx.holds[id] = false
    ctx.hold_deleted[id] = true
    ctx.hold_dirty[id] = nil
    ctx.hold_count = ctx.hold_count - 1
    load_nodes(ctx, hold.paths)
    for _, path in ipairs(hold.paths) do
        local node = ctx.nodes[path]
        if node then
            node.live = math.max(node.live - 1, 0)
            touch(ctx, path)
        end
    end
    hold.lines = {}
    -- A hold settled item by item is only asked about again by repeats,
    -- answered from its outcomes; an expired one keeps its paths and costs
    -- for a late commit, and its META for that commit's ledger entry.
    local any_expired = false
    for _, item in ipairs(hold.items) do
        if item.state == "expired" then
            any_expired = true
        end
    end
    if not any_expired then
        hold.meta = nil
        hold.paths, hold.service, hold.model = {}, nil, nil
        -- A partly reserved batch keeps its costs for a repeat's `held`.
        if not (hold.reply and hold.reply.reserved < hold.reply.items) then
            for _, item in ipairs(hold.items) do
                item.cost = {}
            end
        end
    end
    remember(ctx, { id = id, forget_at = now + ctx.limits.tombstone_ttl, hold = hold })
end

-- Rust twin: Tree::finish_if_settled (src/engine/hold.rs)
local function finish_if_settled(ctx, id)
    local hold = get_hold(ctx, id)
    if hold and #indices_in(hold, HELD) == 0 then
        finish(ctx, id, ctx.now)
    end
end

-- The finished ids whose memory ran out (the first `budget` of them, when
-- given), and what "#" then says of the next to forget.
function HOLDS.forget_due(ctx, budget)
    local meta = ctx.meta
    if meta.due_f and meta.due_f > ctx.now then
        return {}
    elseif budget and budget <= 0 then
        -- A bounded call (quota_sweep) spends what the holds left on ids.
        return {}
    end
    local forget
    if budget then
        forget = redis.call("ZRANGEBYSCORE", ctx.fkey, "-inf", ctx.now, "LIMIT", 0, budget)
    else
        forget = redis.call("ZRANGEBYSCORE", ctx.fkey, "-inf", ctx.now)
    end
    -- Nothing is left to forget until after now once these are; when
    -- nothing was, the next write learns when something is.
    if #forget == 0 then
        ctx.probe_forget = true
    elseif not budget then
        meta.due_f = ctx.now + 1
    end
    return forget
end

-- Releases every hold due (the first `limit` of them, when given) and
-- forgets finished ids whose memory ran out. Returns how many it released.
-- Rust twin: Tree::expire and Tree::expire_some (src/engine/hold.rs)
local function expire(ctx, limit)
    if not ctx.exists then
        return 0
    end
    -- What "#" says is due spares asking when nothing is (read_meta).
    local meta, due = ctx.meta, nil
    if meta.due_e and meta.due_e > ctx.now then
        due = {}
    elseif limit then
        due = redis.call("ZRANGEBYSCORE", ctx.ekey, "-inf", ctx.now, "WITHSCORES", "LIMIT", 0, limit)
    else
        due = redis.call("ZRANGEBYSCORE", ctx.ekey, "-inf", ctx.now, "WITHSCORES")
    end
    for k = 1, #due, 2 do
        local id, at = due[k], tonumber(due[k + 1])
        local hold = get_hold(ctx, id)
        if hold then
            local held = indices_in(hold, HELD)
            release_lines(ctx, hold, held)
            for _, i in ipairs(held) do
                hold.items[i].state = "expired"
            end
            local amounts = costs_pack(cost_of(hold, held))
            emit(ctx, { seq = 0, type = "expired", time = at, path = hold.paths[1] or "", id = id,
                amounts = amounts, meta = hold.meta })
            if ctx.ledger then
                local e = REC.ledger_entry("expire", at, id, hold, amounts)
                e.meta = hold.meta
                REC.ledger_add(ctx, e)
            end
            finish(ctx, id, at)
        else
            ctx.hold_deleted[id] = true
        end
    end
    local forget = HOLDS.forget_due(ctx, limit and limit - #due / 2)
    for _, id in ipairs(forget) do
        ctx.forgotten[id] = true
        ctx.done[id] = false
        ctx.done_dirty[id] = nil
    end
    -- A hold that expired long ago is remembered from its expiry, so its
    -- memory may have run out already (as the module forgets it in the same
    -- pass).
    for k = 1, #due, 2 do
        local id = due[k]
        local entry = ctx.done_dirty[id] and ctx.done[id]
        if entry and entry.forget_at <= ctx.now then
            ctx.forgotten[id] = true
            ctx.done[id] = false
            ctx.done_dirty[id] = nil
        end
    end
    return #due / 2, #forget
end

-- Rust twin: Tree::check_item (src/engine/hold.rs)
function HOLDS.check_item(hold, i)
    if i >= #hold.items then
        fail(sformat("NOTFOUND no such item %d in reservation '%s': it holds items 0 to %d", i, hold.id,
            #hold.items - 1))
    end
end

-- A live hold (true) or a remembered one (false).
-- Rust twin: Tree::lookup (src/engine/hold.rs)
function HOLDS.lookup(ctx, id)
    local hold = get_hold(ctx, id)
    if hold then
        return hold, true
    end
    local entry = get_done(ctx, id)
    if entry and entry.hold then
        return entry.hold, false
    elseif entry then
        fail(sformat("ERR '%s' names a charge, not a reservation", id))
    end
    fail(sformat("NOTFOUND no such reservation '%s'", clip(id)))
end

function HOLDS.save_hold(ctx, hold, live)
    if live then
        ctx.hold_dirty[hold.id] = true
    else
        local entry = get_done(ctx, hold.id)
        entry.hold = hold
        remember(ctx, entry)
    end
end

function HOLDS.copy_outcome(o, changes)
    local c = {}
    for k, v in pairs(o) do
        c[k] = v
    end
    for k, v in pairs(changes) do
        c[k] = v
    end
    return c
end

-- Rust twin: Tree::generate_id (src/engine/hold.rs)
function HOLDS.generate_id(ctx)
    while true do
        ctx.meta.seq = ctx.meta.seq + 1
        ctx.meta_dirty = true
        local id = sformat("%x-%x", ctx.now, ctx.meta.seq)
        if not get_hold(ctx, id) and not get_done(ctx, id) then
            return id
        end
    end
end

-- What a refusing policy has left (Tree's `available` in hold.rs): the
-- remaining allowance of a strict policy (never below zero), nothing for a
-- block policy. Of the policies that refuse, the least available binds.
-- Rust twin: available (src/engine/hold.rs)
function HOLDS.available(p)
    if p.mode == "block" then
        return D.ZERO
    end
    return D.max(remaining(p), D.ZERO)
end

-- The column of a metric no item takes (never changed).
HOLDS.NO_COLUMN = { at = {}, total = {} }

-- For each metric, the items that take some of it with the running total
-- of what they take: a policy finds where its room runs out by binary
-- search. A column is { at = item indexes, total = running totals }.
-- Rust twin: columns_of (src/engine/hold.rs)
function HOLDS.columns_of(items)
    local columns = {}
    for i = 1, #items do
        local item = items[i]
        for k = 1, #item do
            local amount = item[k][2]
            if D.cmp(amount, D.ZERO) > 0 then
                local col = columns[item[k][1]]
                if not col then
                    col = { at = {}, total = {} }
                    columns[item[k][1]] = col
                end
                local m = #col.at
                col.at[m + 1] = i
                col.total[m + 1] = m > 0 and plus(col.total[m], amount) or amount
            end
        end
    end
    return columns
end

-- How many of the n leading items policy p admits: the items before the
-- first that takes some of its metric (block at its limit), or before the
-- first whose running total exceeds the room (strict). col is p's metric
-- in HOLDS.columns_of.
-- Rust twin: fits_in_column (src/engine/hold.rs)
function HOLDS.fits_in_column(p, n, col)
    local fits = n
    if p.mode == "block" then
        if D.cmp(p.used, allowance(p)) >= 0 and col.at[1] then
            fits = col.at[1] - 1
        end
    elseif p.mode ~= "open" and #col.at == 1 then
        -- One item takes the metric: it fits unless used + held + it
        -- passes the allowance (judged without making values).
        if compare(p.used, p.held, col.total[1], 1, p.allow, 1) > 0 then
            fits = col.at[1] - 1
        end
    elseif p.mode ~= "open" then
        local room = remaining(p)
        local lo, hi = 1, #col.at + 1
        while lo < hi do
            local mid = math.floor((lo + hi) / 2)
            if D.cmp(col.total[mid], room) <= 0 then
                lo = mid + 1
            else
                hi = mid
            end
        end
        if col.at[lo] then
            fits = col.at[lo] - 1
        end
    end
    return fits
end

-- The policy that admits the fewest leading items, when one admits fewer
-- than all; among equals the least available (root first when that ties).
-- Rust twin: Tree::binding (src/engine/hold.rs)
function HOLDS.binding_of(ctx, r, items)
    local best = nil
    local n = #items
    local columns = HOLDS.columns_of(items)
    local none = HOLDS.NO_COLUMN
    for _, ref in ipairs(r.pols) do
        local p = policy_now(ctx, ref)
        local fits = HOLDS.fits_in_column(p, n, columns[p.metric] or none)
        if fits < n then
            local left = HOLDS.available(p)
            if best == nil or fits < best.fits or (fits == best.fits and D.cmp(left, best.available) < 0) then
                best = { ref = ref, fits = fits, available = left }
            end
        end
    end
    return best
end

-- One sentence naming the policy that refuses and by how much.
-- Rust twin: Tree::shortfall (src/engine/hold.rs)
function HOLDS.shortfall(ctx, ref, total, fits, n)
    local p = policy_now(ctx, ref)
    local path = display_path(ref.path)
    local lead
    if fits then
        lead = sformat("enough %s for %d of %d items", p.metric, fits, n)
    else
        lead = "not enough " .. p.metric
    end
    if p.mode == "block" then
        return sformat("%s: the limit at %s is reached (%s of %s used)", lead, path, D.fmt(p.used),
            D.fmt(allowance(p)))
    elseif p.inflight then
        return sformat("%s: %s of %s in flight at %s, %s needed", lead, D.fmt(p.held), D.fmt(allowance(p)), path,
            D.fmt(costs_get(total, p.metric)))
    end
    return sformat("%s: %s available at %s, %s needed", lead, D.fmt(D.max(remaining(p), D.ZERO)), path,
        D.fmt(costs_get(total, p.metric)))
end

-- Rust twin: Tree::reserve_message (src/engine/hold.rs)
function HOLDS.reserve_message(ctx, req, binding, reserved, total)
    local n = #req.items
    if not binding then
        if req.batch == "DRYRUN" then
            if n == 1 then
                return "fits: " .. describe(total)
            end
            return sformat("all %d items fit: %s", n, describe(total))
        end
        if n == 1 then
            return "reserved " .. describe(total)
        end
        return sformat("reserved all %d items: %s", n, describe(total))
    end
    local message
    if n == 1 then
        message = HOLDS.shortfall(ctx, binding.ref, total)
    else
        message = HOLDS.shortfall(ctx, binding.ref, total, binding.fits, n)
    end
    if reserved > 0 then
        message = message .. sformat("; reserved the first %d", reserved)
    end
    return message
end

-- Rust twin: Tree::repeated_reserve (src/engine/hold.rs)
function HOLDS.repeated_reserve(ctx, id)
    local hold = get_hold(ctx, id)
    if not hold then
        local entry = get_done(ctx, id)
        if not entry then
            return nil
        end
        hold = entry.hold
    end
    if hold and hold.reply then
        -- `held` is not stored (like the module's remembered answers): the
        -- hold's items are the reserved ones (a settled partial batch keeps
        -- their costs for this).
        local first, held = hold.reply, {}
        if first.reserved == first.items then
            held = first.cost
        elseif first.reserved > 0 then
            local costs = {}
            for i, item in ipairs(hold.items) do
                costs[i] = item.cost
            end
            held = costs_pack(sum_costs(costs))
        end
        return HOLDS.copy_outcome(first, { duplicate = true, held = held })
    end
    fail(sformat("ERR id '%s' is already used by another reservation or charge", id))
end

function HOLDS.labels_failing(checks)
    local out = {}
    for _, c in ipairs(checks) do
        if not c.pass then
            out[#out + 1] = check_label(c)
        end
    end
    return out
end

-- QUOTA.RESERVE: decides (bounds, a repeated id, what fits, the answer,
-- whether the hold can be kept), then places the hold.
-- req = {set, id, ttl, batch, items, brief}
-- Rust twin: Tree::reserve (src/engine/hold.rs)
function HOLDS.reserve(ctx, req)
    local n = #req.items
    if n > ctx.limits.max_items then
        fail(sformat("ERR limit: at most %d items per reservation (max_items)", ctx.limits.max_items))
    end
    if req.id then
        local first = HOLDS.repeated_reserve(ctx, req.id)
        if first then
            return first
        end
    end
    -- A tree that follows a plan syncs the nodes on the way and judges
    -- new paths against the plan's policies (removed when nothing is held).
    local made = ctx.pl and PLAN.prepare(ctx, req.set)
    -- (The plan is passed as values, not a table: cheaper.)
    local total, r, binding, fits, reserved, allowed, refusals, why = HOLDS.plan_reserve(ctx, req)
    if refusals then
        PLAN.unmake(ctx, made)
        return HOLDS.access_denial(req, total, refusals, why)
    end
    local outcome, held = HOLDS.reserve_outcome(ctx, req, total, r, binding, fits, reserved, allowed)
    if reserved == 0 then
        PLAN.unmake(ctx, made)
        return outcome
    end
    local held_at = HOLDS.check_hold(ctx, req, r, held)

    -- After this point the reservation succeeds.
    return HOLDS.place_hold(ctx, req, r, reserved, held, held_at, outcome)
end

-- The answer to a reservation that access rules refuse: nothing fits,
-- nothing is held, and the checks are the access checks only (amounts are
-- not judged). BRIEF keeps them: they explain a denial.
-- Rust twin: access_denial (src/engine/hold.rs)
function HOLDS.access_denial(req, total, refusals, why)
    return { allowed = false, id = false, expires = 0, items = #req.items, fits = 0, reserved = 0,
        cost = costs_pack(total), held = {}, checks = refusals, denied = ACCESS.labels(refusals), message = why,
        duplicate = false }
end

-- What a reservation reaches and how many of its items fit: its total, its
-- reach, the binding policy, how many fit, how many it reserves, whether it
-- is allowed.
-- Rust twin: Tree::plan_reserve (src/engine/hold.rs)
function HOLDS.plan_reserve(ctx, req)
    local n = #req.items
    local total, index = {}, {}
    for _, item in ipairs(req.items) do
        for i = 1, #item do
            local metric = item[i][1]
            costs_set_at(total, index, metric, D.add(costs_get_at(total, index, metric), item[i][2]))
            if #total > MAX_REQUEST_METRICS then
                fail(sformat("ERR limit: at most %d distinct metrics per request", MAX_REQUEST_METRICS))
            end
        end
    end
    local r = reach(ctx, req.set, metrics_of(total))
    -- An archived node in the reach refuses first, then access rules (each
    -- only on a tree that has had one).
    if ctx.meta.rec then
        local refusals, why = REC.archive_judge(ctx, r.nodes)
        if refusals then
            return total, r, nil, 0, 0, false, refusals, why
        end
    end
    if ctx.meta.access then
        local refusals, why = ACCESS.judge(ctx, r.nodes, req.set)
        if refusals then
            return total, r, nil, 0, 0, false, refusals, why
        end
    end
    local binding = HOLDS.binding_of(ctx, r, req.items)
    local fits = binding and binding.fits or n
    local reserved, allowed
    if req.batch == "UPTO" then
        reserved, allowed = fits, fits > 0
    else
        reserved = (req.batch == "ALL" and fits == n) and n or 0
        allowed = fits == n
    end
    return total, r, binding, fits, reserved, allowed
end

-- The answer to a planned reservation, before any hold is placed (no id or
-- expiry yet), and what the hold would hold.
-- Rust twin: Tree::reserve_outcome (src/engine/hold.rs)
function HOLDS.reserve_outcome(ctx, req, total, r, binding, fits, reserved, allowed)
    local n = #req.items
    -- An UPTO reservation is checked for what it holds; an allowed BRIEF
    -- answer needs no checks at all (the hot path).
    local checks, denied = {}, {}
    if not (req.brief and allowed) then
        local requested = total
        if req.batch == "UPTO" and reserved > 0 then
            requested = sum_costs({ unpack(req.items, 1, reserved) })
        end
        checks = checks_of(ctx, r, requested)
        denied = HOLDS.labels_failing(checks)
    end
    local held = {}
    if reserved == n then
        held = total
    elseif reserved > 0 then
        held = sum_costs({ unpack(req.items, 1, reserved) })
    end
    return {
        allowed = allowed, id = false, expires = 0, items = n, fits = fits, reserved = reserved,
        cost = costs_pack(total), held = costs_pack(held), checks = checks, denied = denied,
        message = HOLDS.reserve_message(ctx, req, binding, reserved, total), duplicate = false,
    }, held
end

-- Whether the hold can be kept: room for one more, for its new paths, and
-- every policy's held total within bounds. Returns where `held` has each
-- metric (costs_index).
-- Rust twin: Tree::check_hold (src/engine/hold.rs)
function HOLDS.check_hold(ctx, req, r, held)
    if ctx.hold_count >= ctx.limits.max_holds then
        -- The count kept in "#" is asked of the holds hash before refusing
        -- (as before 1.2.0), so a hash changed by hand cannot refuse for
        -- good; this call has placed no hold yet, so the hash is the count.
        ctx.hold_count = redis.call("HLEN", ctx.hkey)
        if ctx.hold_count >= ctx.limits.max_holds then
            fail(sformat("ERR limit: the tree already has %d live holds (max_holds)", ctx.limits.max_holds))
        end
    end
    check_new_paths(ctx, req.set.paths, r.missing)
    local held_at = costs_index(held, #r.pols)
    for _, ref in ipairs(r.pols) do
        local p = policy_of(ctx, ref)
        D.check_add(p.held, costs_get_at(held, held_at, p.metric))
    end
    return held_at
end

-- Places a checked reservation's hold: its amount on each policy it counts
-- on, its paths, the hold and its expiry, the alerts it fires.
-- Rust twin: Tree::place_hold (src/engine/hold.rs)
function HOLDS.place_hold(ctx, req, r, reserved, held, held_at, outcome)
    local n = #req.items
    local id = req.id or HOLDS.generate_id(ctx)
    -- The hold counts on the policies of the metrics its kept items name: a
    -- partial UPTO batch keeps the items that fit, and no line for the
    -- metrics of the others (as the module's loaded trees derive them).
    local pols = r.pols
    if reserved < n then
        local kept = {}
        for _, pair in ipairs(held) do
            kept[pair[1]] = true
        end
        pols = {}
        for _, ref in ipairs(r.pols) do
            if kept[policy_of(ctx, ref).metric] then
                pols[#pols + 1] = ref
            end
        end
    end
    local lines = HOLDS.hold_on(ctx, pols, held, held_at)
    for _, path in ipairs(req.set.paths) do
        local node = ensure_path(ctx, path)
        node.live = node.live + 1
        touch(ctx, path)
    end
    local expires = ctx.now + req.ttl
    outcome.id, outcome.expires = id, expires
    local items = {}
    for i = 1, reserved do
        items[i] = { cost = req.items[i], state = "held" }
    end
    local hold = {
        id = id, paths = req.set.paths, service = req.set.service, model = req.set.model, created = ctx.now,
        expires = expires, items = items, lines = lines, reply = req.id and HOLDS.copy_outcome(outcome, {}) or nil,
        meta = req.meta,
    }
    if req.meta and not ctx.meta.rec then
        ctx.meta.rec, ctx.meta_dirty = true, true
    end
    if hold.reply then
        hold.reply.held = nil
    end
    ctx.holds[id] = hold
    ctx.hold_dirty[id] = true
    ctx.hold_deleted[id] = nil
    ctx.hold_count = ctx.hold_count + 1
    observe(ctx, pols)
    return outcome
end

-- Adds `held` to each of `pols` (after the resets due), and gives the
-- hold's lines on them.
-- Rust twin: Tree::hold_on (src/engine/hold.rs)
function HOLDS.hold_on(ctx, pols, held, held_at)
    local lines = {}
    for _, ref in ipairs(pols) do
        -- Resets due apply first, so the alerts after see this period.
        roll_policy(ctx, ref)
        local p = policy_of(ctx, ref)
        p.held = plus(p.held, costs_get_at(held, held_at, p.metric))
        lines[#lines + 1] = { path = ref.path, gen = p.gen }
    end
    return lines
end

-- QUOTA.COMMIT: charges the actual amount (default: what is reserved) and
-- releases the hold of the settled items.
-- Rust twin: Tree::commit (src/engine/hold.rs)
function HOLDS.commit(ctx, id, item, actual)
    local plan, first = HOLDS.plan_commit(ctx, id, item, actual)
    if not plan then
        return first
    end
    if ctx.pl then
        PLAN.sync_way(ctx, plan.set.paths)
    end
    local r = usage_reach(ctx, plan.set, plan.actual)
    -- A commit is refused only for the paths it would create (a late commit
    -- on a deleted path); its totals are never refused.
    check_new_paths(ctx, plan.set.paths, r.missing)

    -- After this point the commit succeeds.
    return HOLDS.apply_commit(ctx, id, item, plan, r)
end

-- What a commit of `item` (or of every pending item) of `id` settles:
-- plan = {hold, live, set, indices, held, expired, actual}; or nil and the
-- first answer when it repeats one. Changes nothing.
-- Rust twin: Tree::plan_commit (src/engine/hold.rs)
function HOLDS.plan_commit(ctx, id, item, actual)
    local hold, live = HOLDS.lookup(ctx, id)
    local indices, first = HOLDS.commit_indices(hold, id, item)
    if not indices then
        return nil, first
    end
    local held_idx = {}
    for _, i in ipairs(indices) do
        if hold.items[i].state == "held" then
            held_idx[#held_idx + 1] = i
        end
    end
    return { hold = hold, live = live, set = { paths = hold.paths, service = hold.service, model = hold.model },
        indices = indices, held = cost_of(hold, held_idx), expired = #held_idx < #indices,
        actual = actual or cost_of(hold, indices) }
end

-- The items a commit settles (1-based): `item`, or every pending one; or
-- nil and the first answer when the commit repeats one.
-- Rust twin: Tree::commit_indices (src/engine/hold.rs)
function HOLDS.commit_indices(hold, id, item)
    if not item then
        local indices = indices_in(hold, OPEN)
        if #indices > 0 then
            return indices
        end
        if hold.last_commit then
            return nil, HOLDS.copy_outcome(hold.last_commit, { duplicate = true })
        end
        fail(sformat("ERR reservation '%s' was released; nothing to commit", id))
    end
    HOLDS.check_item(hold, item)
    local it = hold.items[item + 1]
    if it.state == "committed" then
        if it.outcome then
            return nil, HOLDS.copy_outcome(it.outcome, { duplicate = true })
        end
        fail(sformat("ERR item %d of reservation '%s' was committed as part of the whole", item, id))
    elseif it.state == "released" then
        fail(sformat("ERR item %d of reservation '%s' was released; nothing to commit", item, id))
    end
    return { item + 1 }
end

-- Carries out a planned commit whose new paths fit: the hold is released,
-- the actual amount charged, and the items marked committed.
-- Rust twin: Tree::apply_commit (src/engine/hold.rs)
function HOLDS.apply_commit(ctx, id, item, plan, r)
    local hold, live, indices = plan.hold, plan.live, plan.indices
    if live then
        release_lines(ctx, hold, indices)
    end
    ctx.draws = {}
    local over = apply_usage(ctx, r, plan.set, plan.actual)
    local released, overage = HOLDS.settle_amounts(plan.held, plan.actual)
    local outcome = { id = id, charged = costs_pack(plan.actual), released = costs_pack(released),
        overage = costs_pack(overage), duplicate = false, expired = plan.expired, over = over,
        drawn = #ctx.draws > 0 and ctx.draws or nil }
    for _, i in ipairs(indices) do
        hold.items[i].state = "committed"
    end
    if ctx.ledger then
        -- (The META of a live hold, or the one an expired hold's finished
        -- id keeps for a late commit.)
        local e = REC.ledger_entry("commit", ctx.now, id, plan.set, outcome.charged)
        e.item, e.late, e.meta = item, plan.expired, hold.meta
        REC.ledger_add(ctx, e)
    end
    if item then
        hold.items[indices[1]].outcome = outcome
    end
    hold.last_commit = outcome
    HOLDS.save_hold(ctx, hold, live)
    if live then
        finish_if_settled(ctx, id)
    end
    return outcome
end

-- The actual amount uses up the live hold: what is left of it is released,
-- what goes beyond it (all that expired items charge) is overage. Returns
-- (released, overage).
-- Rust twin: settle_amounts (src/engine/hold.rs)
function HOLDS.settle_amounts(held, actual)
    local released = {}
    local actual_at, held_at = costs_index(actual, #held), costs_index(held, #actual)
    for _, pair in ipairs(held) do
        local m, amount = pair[1], pair[2]
        released[#released + 1] = { m, D.max(D.sub(amount, costs_get_at(actual, actual_at, m)), D.ZERO) }
    end
    local overage = {}
    for _, pair in ipairs(actual) do
        local extra = D.sub(pair[2], costs_get_at(held, held_at, pair[1]))
        if D.cmp(extra, D.ZERO) > 0 then
            overage[#overage + 1] = { pair[1], extra }
        end
    end
    return released, overage
end

-- QUOTA.RELEASE: gives back the hold of the items without charging.
-- Rust twin: Tree::release (src/engine/hold.rs)
function HOLDS.release(ctx, id, item)
    local hold, live = HOLDS.lookup(ctx, id)
    local function again()
        if hold.last_release then
            return HOLDS.copy_outcome(hold.last_release, { duplicate = true })
        end
        return { id = id, released = {}, duplicate = true, expired = false }
    end
    local indices
    if item then
        HOLDS.check_item(hold, item)
        local state = hold.items[item + 1].state
        if state == "released" then
            return again()
        elseif state == "committed" then
            fail(sformat("ERR item %d of reservation '%s' was committed; nothing to release", item, id))
        end
        indices = { item + 1 }
    else
        indices = indices_in(hold, OPEN)
        if #indices == 0 then
            if #indices_in(hold, { committed = true }) == #hold.items then
                fail(sformat("ERR reservation '%s' was committed; nothing to release", id))
            end
            return again()
        end
    end
    local held = {}
    for _, i in ipairs(indices) do
        if hold.items[i].state == "held" then
            held[#held + 1] = i
        end
    end
    local released = cost_of(hold, held)

    -- After this point the release succeeds.
    if live then
        release_lines(ctx, hold, held)
    end
    local outcome = { id = id, released = costs_pack(released), duplicate = false, expired = #held < #indices }
    if ctx.ledger and #held > 0 then
        -- (Only a release that gives something back.)
        local e = REC.ledger_entry("release", ctx.now, id, hold, outcome.released)
        e.item, e.meta = item, hold.meta
        REC.ledger_add(ctx, e)
    end
    for _, i in ipairs(indices) do
        hold.items[i].state = "released"
    end
    hold.last_release = outcome
    HOLDS.save_hold(ctx, hold, live)
    if live then
        finish_if_settled(ctx, id)
    end
    return outcome
end

-- QUOTA.EXTEND: the hold now expires `ttl` from now.
-- Rust twin: Tree::extend (src/engine/hold.rs)
function HOLDS.extend(ctx, id, ttl)
    local hold, live = HOLDS.lookup(ctx, id)
    if not live then
        fail(sformat("ERR reservation '%s' is no longer held (committed, released or expired)", id))
    end
    hold.expires = ctx.now + ttl
    ctx.hold_dirty[id] = true
    ctx.holds_moved = true
    return { id = id, expires = hold.expires }
end

-- QUOTA.CHARGE: records usage that already happened, without a hold.
-- req = {set, id, check, cost, brief}
-- Rust twin: Tree::charge (src/engine/hold.rs)
function HOLDS.charge(ctx, req)
    if req.id then
        if get_hold(ctx, req.id) then
            fail(sformat("ERR id '%s' is already used by a reservation", req.id))
        end
        local entry = get_done(ctx, req.id)
        if entry and entry.charge then
            return HOLDS.copy_outcome(entry.charge, { duplicate = true })
        elseif entry then
            fail(sformat("ERR id '%s' is already used by a reservation", req.id))
        end
    end
    local made = ctx.pl and PLAN.prepare(ctx, req.set)
    local r = reach(ctx, req.set, metrics_of(req.cost), true)
    -- An archived node in the reach refuses the charge, CHECK or not.
    if ctx.meta.rec then
        local refusals, why = REC.archive_judge(ctx, r.nodes)
        if refusals then
            PLAN.unmake(ctx, made)
            return { allowed = false, charged = {}, checks = refusals, denied = ACCESS.labels(refusals), message = why,
                over = {}, duplicate = false }
        end
    end
    -- Access is judged first: a CHARGE CHECK it refuses records nothing; a
    -- CHARGE records all the same and says so (checks, denied_by, message,
    -- `disallowed` events).
    local refusals, why, refusing = nil, nil, nil
    if ctx.meta.access then
        refusals, why, refusing = ACCESS.judge(ctx, r.nodes, req.set)
        if refusals and req.check then
            PLAN.unmake(ctx, made)
            return { allowed = false, charged = {}, checks = refusals, denied = ACCESS.labels(refusals), message = why,
                over = {}, duplicate = false }
        end
    end
    local failing = {}
    -- The binding refusal: the least available (root first on ties).
    local refused, least = nil, nil
    local cost_at = costs_index(req.cost, #r.pols)
    for _, ref in ipairs(r.pols) do
        local p = policy_now(ctx, ref)
        if not passes(p, costs_get_at(req.cost, cost_at, p.metric)) then
            failing[#failing + 1] = ref
            local left = HOLDS.available(p)
            if refused == nil or D.cmp(left, least) < 0 then
                refused, least = ref, left
            end
        end
    end
    local checks = {}
    if not (req.brief and (refused == nil or not req.check)) then
        checks = checks_of(ctx, r, req.cost)
    end
    local denied = {}
    for _, ref in ipairs(failing) do
        denied[#denied + 1] = display_path(ref.path) .. "#" .. policy_of(ctx, ref).name
    end
    if req.check and refused then
        local message = HOLDS.shortfall(ctx, refused, req.cost)
        PLAN.unmake(ctx, made)
        return { allowed = false, charged = {}, checks = checks, denied = denied, message = message, over = {},
            duplicate = false }
    end
    check_usage(ctx, r, req.set, req.cost)

    -- After this point the charge succeeds.
    local message = "charged " .. describe(req.cost)
    if refusals then
        -- Recorded all the same: access checks first (none under BRIEF),
        -- then the policies'; access labels first; the first refusal's
        -- sentence after what was charged; the events before the alerts.
        ACCESS.disallowed_events(ctx, refusals, refusing, req.id, req.cost, req.meta)
        local all = {}
        if not req.brief then
            for _, c in ipairs(refusals) do
                all[#all + 1] = c
            end
        end
        for _, c in ipairs(checks) do
            all[#all + 1] = c
        end
        local labels = ACCESS.labels(refusals)
        for _, l in ipairs(denied) do
            labels[#labels + 1] = l
        end
        checks, denied, message = all, labels, message .. "; " .. why
    end
    ctx.draws = {}
    local over = apply_usage(ctx, r, req.set, req.cost)
    local outcome = { allowed = true, charged = costs_pack(req.cost), checks = checks, denied = denied,
        message = message, over = over, duplicate = false, drawn = #ctx.draws > 0 and ctx.draws or nil }
    if ctx.ledger then
        local e = REC.ledger_entry("charge", ctx.now, req.id, req.set, outcome.charged)
        e.disallowed, e.meta = refusals ~= nil, req.meta
        REC.ledger_add(ctx, e)
    end
    if req.id then
        remember(ctx, { id = req.id, forget_at = ctx.now + ctx.limits.tombstone_ttl, charge = outcome })
    end
    return outcome
end

-- Every live hold of the tree (for QUOTA.SET and QUOTA.UNSET, which count
-- holds again), marked to be written back.
function HOLDS.live_all(ctx)
    local out = {}
    local ids = ctx.exists and redis.call("HKEYS", ctx.hkey) or {}
    for _, id in ipairs(ids) do
        local hold = get_hold(ctx, id)
        if hold then
            out[#out + 1] = hold
        end
    end
    return out
end

-- The live holds that may reach `path` (not the root), as live_all lists
-- them: a hold whose charge set reaches it names the path's bytes, so a
-- stored hold whose record does not contain them is not decoded. (A plan's
-- sync of a node counts the holds that reach it: one HGETALL and a byte
-- search per hold, not one HGET and a decode.)
function HOLDS.live_naming(ctx, path)
    local out = {}
    local flat = ctx.exists and redis.call("HGETALL", ctx.hkey) or {}
    for i = 1, #flat, 2 do
        local id, blob = flat[i], flat[i + 1]
        local h = ctx.holds[id]
        if h == nil and string.find(blob, path, 1, true) then
            h = hold_of_table(munpack(blob), ctx.key)
            ctx.holds[id] = h
        end
        if h then
            out[#out + 1] = h
        end
    end
    return out
end

-- QUOTA.HOLDS: live holds naming `path` or a path below it, soonest first.
-- Rust twin: Tree::holds_view and Tree::holds_view_at (src/engine/hold.rs)
function HOLDS.holds_view(ctx, path, count)
    local out = {}
    if not ctx.exists then
        return out
    end
    local start = 0
    while #out < count do
        local ids = redis.call("ZRANGE", ctx.ekey, start, start + 199)
        if #ids == 0 then
            break
        end
        start = start + #ids
        for _, id in ipairs(ids) do
            local hold = get_hold(ctx, id)
            if hold and #out < count then
                local within = false
                for _, p in ipairs(hold.paths) do
                    if is_within(p, path) then
                        within = true
                    end
                end
                if within then
                    local paths = {}
                    for i, p in ipairs(hold.paths) do
                        paths[i] = display_path(p)
                    end
                    local f = M("id", id, "paths", paths, "expires_at", hold.expires, "items", #hold.items,
                        "held", costs_reply(costs_pack(cost_of(hold, indices_in(hold, HELD)))))
                    if hold.meta then
                        f[#f + 1] = "meta"
                        f[#f + 1] = REC.meta_reply(hold.meta)
                    end
                    out[#out + 1] = f
                end
            end
        end
    end
    return out
end
