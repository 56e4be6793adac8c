-- ---------------------------------------------------------------------------
-- Shaping and reading the tree: policies, paths, views. Ports
-- src/engine/tree.rs (set, unset, grant, reset, history), held.rs (how
-- policies count live holds), paths.rs (subtrees, deleting paths) and
-- view.rs (QUOTA.GET, QUOTA.TREE); each function names its Rust twin.
-- ---------------------------------------------------------------------------

local OPS = {}

function OPS.not_found_path(path)
    fail(sformat("NOTFOUND no such path '%s'", display_path(path)))
end

-- Rust twin: Tree::policy_ref (src/engine/tree.rs).
function OPS.policy_ref(ctx, path, name)
    local node = find(ctx, path)
    if not node then
        OPS.not_found_path(path)
    end
    for i, p in ipairs(node.pols) do
        if p.name == name then
            return { path = path, i = i }
        end
    end
    fail(sformat("NOTFOUND no such policy '%s' at '%s'", name, display_path(path)))
end

-- Rust twin: Tree::holds_may_reach (src/engine/held.rs).
-- Whether a live hold may reach `path`: cheap, so that the common QUOTA.SET on
-- a new or leaf path with no holds skips the pass over the tree's holds
-- (Tree::holds_may_reach).
local function holds_may_reach(ctx, path)
    local node = find(ctx, path)
    if not node or ctx.hold_count == 0 then
        return false
    end
    if node.live > 0 then
        return true
    end
    local _, kids = children_of(ctx, path, 0, 1)
    return kids > 0
end

-- The live holds that may reach `path`, in HOLDS.live_all's order: those
-- whose record names it (HOLDS.live_naming; all of them for the root), or,
-- for a read of many nodes (ctx.reach set true by OPS.tree_view), those
-- whose charge set names it or a path below it, from an index built at the
-- first call, so that a read of many stale nodes does not pass over every
-- hold per node.
-- Rust twin: Tree::holds_by_path (src/engine/held.rs).
function OPS.holds_reaching(ctx, path)
    local reach = ctx.reach
    if not reach then
        return path == "" and HOLDS.live_all(ctx) or HOLDS.live_naming(ctx, path)
    end
    if reach == true then
        reach = {}
        for _, hold in ipairs(HOLDS.live_all(ctx)) do
            for _, p in ipairs(hold.paths) do
                for _, prefix in ipairs(prefixes(p)) do
                    local list = reach[prefix]
                    if not list then
                        list = {}
                        reach[prefix] = list
                    end
                    if list[#list] ~= hold then
                        list[#list + 1] = hold
                    end
                end
            end
        end
        ctx.reach = reach
    end
    return reach[path] or {}
end

-- Rust twin: Tree::holds_matching (src/engine/held.rs).
-- The live holds a policy configured as `spec` at `path` counts: those whose
-- charge set reaches the path, whose service and model its filter matches,
-- and that hold its metric; and their total held (Tree::holds_matching).
local function holds_matching(ctx, path, spec, saturate)
    local out, held = {}, D.ZERO
    for _, hold in ipairs(OPS.holds_reaching(ctx, path)) do
        local reaches = false
        for _, p in ipairs(hold.paths) do
            if is_within(p, path) then
                reaches = true
            end
        end
        local names_metric = false
        for _, item in ipairs(hold.items) do
            for i = 1, #item.cost do
                if item.cost[i][1] == spec.metric then
                    names_metric = true
                end
            end
        end
        if reaches and names_metric and matches(spec, hold.service, hold.model) then
            local amount = D.ZERO
            for _, item in ipairs(hold.items) do
                if item.state == "held" then
                    amount = plus(amount, costs_get(item.cost, spec.metric))
                end
            end
            held = saturate and D.add_saturating(held, amount) or D.add(held, amount)
            out[#out + 1] = hold
        end
    end
    return out, held
end

-- Rust twin: Tree::recount (src/engine/held.rs), Tree::unset_policy (src/engine/tree.rs).
-- Takes from each of `holds` its lines for the policy at `path` of
-- generation `gen` (or `old`, when given), marking the holds it changes
-- (the `lines.retain` of Tree::recount and Tree::unset_policy). A field of OPS,
-- not a local: build() is near Lua's 200 locals (tests/lua_locals.py).
function OPS.drop_lines(ctx, holds, path, gen, old)
    for _, hold in ipairs(holds) do
        local kept = {}
        for _, line in ipairs(hold.lines) do
            if line.path ~= path or (line.gen ~= gen and line.gen ~= old) then
                kept[#kept + 1] = line
            end
        end
        if #kept ~= #hold.lines then
            hold.lines = kept
            ctx.hold_dirty[hold.id] = true
        end
    end
end

-- Rust twin: Tree::recount (src/engine/held.rs).
-- Makes the policy `p` at `path` count exactly the holds `counted`: their
-- lines name its generation, no other hold's line names it or the
-- generation it had before (`old`) (Tree::recount).
local function recount(ctx, path, p, old, counted, held)
    p.held = held
    OPS.drop_lines(ctx, OPS.holds_reaching(ctx, path), path, p.gen, old)
    for _, hold in ipairs(counted) do
        hold.lines[#hold.lines + 1] = { path = path, gen = p.gen }
        ctx.hold_dirty[hold.id] = true
    end
end

-- The live holds a policy of `spec` replacing the one at `index` of the
-- node (nil: a new one) counts from now on, when its metric or filter
-- changes (a new one always); nil when it keeps the holds it has. A count
-- beyond 10^18 fails, or stops there with `saturate` (a plan's sync).
function OPS.holds_for(ctx, path, node, index, spec, saturate)
    if index then
        local p = node.pols[index]
        if p.metric == spec.metric and p.service == spec.service and p.model == spec.model
            and p.inflight == spec.inflight then
            return nil
        end
    end
    if holds_may_reach(ctx, path) then
        return holds_matching(ctx, path, spec, saturate)
    end
    return nil
end

-- QUOTA.SET's change, checked: the policy at `index` of the node at `path`
-- updated to `spec` (usage kept; a new metric starts over), or `name`
-- created (appended, fresh generation); it then counts `counted`. Returns
-- its ref. quiet: a plan's sync, whose resets due apply without events.
function OPS.put_policy(ctx, path, node, index, name, spec, counted, held, quiet)
    local generation = next_generation(ctx)
    if spec.inflight and not ctx.meta.access then
        -- (Layout 5 from now on: see pack_meta.)
        ctx.meta.access = true
    end
    if not ctx.meta.cycles and W.newer_form(spec.wenc) then
        -- (A zone or a week/year anchor, QUOTA.SET's or a plan's: layout 7
        -- from now on, see pack_meta.)
        ctx.meta.cycles, ctx.meta_dirty = true, true
    end
    touch(ctx, path)
    local ref, old
    if index then
        ref = { path = path, i = index }
        old = node.pols[index].gen
        if not quiet then
            roll_policy(ctx, ref)
        end
        local p = node.pols[index]
        -- (Turning INFLIGHT on or off restarts the policy, as a new metric does.)
        local new_metric = p.metric ~= spec.metric or p.inflight ~= spec.inflight
        update_policy(p, spec, ctx.now)
        if new_metric then
            OPS.drop_grants(ctx, p)
            node.pols[index] = new_policy(name, spec, generation, ctx.now)
            node.pols[index].gk = ctx.gkey
        end
    else
        node.pols[#node.pols + 1] = new_policy(name, spec, generation, ctx.now)
        node.pols[#node.pols].gk = ctx.gkey
        ref = { path = path, i = #node.pols }
    end
    if counted then
        recount(ctx, path, node.pols[ref.i], old, counted, held)
    end
    return ref
end

-- Rust twin: Tree::set_policy (src/engine/tree.rs), Policy::restart (src/engine/policy.rs).
-- QUOTA.SET: creates or updates a policy. On a tree that follows a plan,
-- the policy becomes the tree's (source "tree"), overriding the plan's of
-- that name; max_policies counts the tree's own policies.
function OPS.set_policy(ctx, path, name, spec)
    validate_spec(spec)
    PLAN.sync_paths(ctx, { path })
    local node = find(ctx, path)
    local index = nil
    if node then
        -- (A policy of that name, the plan's too, may always be set.)
        local own = 0
        for i, p in ipairs(node.pols) do
            if p.name == name then
                index = i
            end
            if not p.src then
                own = own + 1
            end
        end
        if not index and own >= ctx.limits.max_policies then
            fail(sformat("ERR limit: path '%s' already has %d policies (max_policies)", display_path(path),
                ctx.limits.max_policies))
        end
    else
        check_new_paths(ctx, { path }, reach(ctx, { paths = { path } }, {}).missing)
    end
    -- A new policy, or one whose metric or filter changes, counts the live
    -- holds it matches from now on (and no others).
    local counted, held = OPS.holds_for(ctx, path, node, index, spec)

    -- After this point the command succeeds.
    if not node then
        node = ensure_path(ctx, path)
        -- (A new node of a tree that follows a plan has the plan's policies.)
        for i, p in ipairs(node.pols) do
            if p.name == name then
                index = i
            end
        end
    end
    local ref = OPS.put_policy(ctx, path, node, index, name, spec, counted, held)
    node.pols[ref.i].src = nil
    observe(ctx, { ref })
end

-- Rust twin: Tree::unset_policy (src/engine/tree.rs).
-- QUOTA.UNSET: removes one policy; holds that counted on it no longer do.
-- On a tree that follows a plan, a plan policy cannot be removed, and a
-- tree policy the plan gives a policy of that name at the node becomes the
-- plan's again (QUOTA.SET's update with the plan's spec, usage kept).
function OPS.unset_policy(ctx, path, name)
    PLAN.sync_paths(ctx, { path })
    local ref = OPS.policy_ref(ctx, path, name)
    local node = ctx.nodes[path]
    if node.pols[ref.i].src then
        fail(sformat("ERR policy '%s' at '%s' comes from plan '%s': override it with QUOTA.SET, or change the plan",
            name, display_path(path), ctx.pl.name or ""))
    end
    local plan = ctx.pl and ctx.pl.plan
    if plan then
        for _, pol in ipairs(PLAN.policies_for(plan, path)) do
            if pol[1] == name then
                local counted, held = OPS.holds_for(ctx, path, node, ref.i, pol[2])
                -- (After this point the command succeeds.)
                local back = OPS.put_policy(ctx, path, node, ref.i, name, pol[2], counted, held)
                node.pols[back.i].src = "plan"
                observe(ctx, { back })
                return
            end
        end
    end
    local gen = node.pols[ref.i].gen
    OPS.drop_lines(ctx, holds_may_reach(ctx, path) and HOLDS.live_all(ctx) or {}, path, gen)
    OPS.drop_grants(ctx, node.pols[ref.i])
    table.remove(ctx.nodes[path].pols, ref.i)
    touch(ctx, path)
end

-- Rust twin: Tree::subtree (src/engine/paths.rs).
-- The node and everything below it, parents before children.
function OPS.subtree(ctx, path)
    local out = { path }
    local i = 1
    while i <= #out do
        local kids = children_of(ctx, out[i], 0, -1)
        load_nodes(ctx, kids)
        for _, k in ipairs(kids) do
            if ctx.nodes[k] then
                out[#out + 1] = k
            end
        end
        i = i + 1
    end
    return out
end

-- Rust twin: Tree::delete_path (src/engine/paths.rs).
-- QUOTA.DELPATH: removes a path and its subtree when no live hold names it.
function OPS.delete_path(ctx, path)
    if path == "" then
        fail("ERR the root cannot be deleted; DEL the key to remove the whole tree")
    end
    if not find(ctx, path) then
        OPS.not_found_path(path)
    end
    local all = OPS.subtree(ctx, path)
    local held = 0
    for _, p in ipairs(all) do
        held = held + ctx.nodes[p].live
    end
    if held > 0 then
        fail(sformat("ERR path '%s' cannot be deleted: %d live reservation(s) hold it; commit or release them first",
            path, held))
    end

    -- After this point the command succeeds.
    for _, p in ipairs(all) do
        for _, pol in ipairs(ctx.nodes[p].pols) do
            OPS.drop_grants(ctx, pol)
        end
        ctx.kid_del[#ctx.kid_del + 1] = kid_member(p)
        ctx.nodes[p] = false
        ctx.dirty[p] = nil
        ctx.deleted[p] = true
        ctx.node_count = ctx.node_count - 1
    end
    return #all
end

-- A grant as QUOTA.GRANTS lists it.
function OPS.grant_reply(g)
    return M("id", g.id, "amount", D.fmt(g.amount), "remaining", D.fmt(g.rem), "priority", g.pri,
        "expires_at", g.exp, "period", flag(g.per), "created_at", g.at, "note", g.note or false)
end

-- GRANT's reply: the policy (as GET shows it, without source), the grant,
-- and whether the id was known.
function OPS.granted_reply(p, g, duplicate, now)
    local f = policy_reply(p, now)
    local more = { "grant", OPS.grant_reply(g), "duplicate", flag(duplicate) }
    for i = 1, #more do
        f[#f + 1] = more[i]
    end
    return f
end

-- A generated grant id: the tree's reservation-id generator, skipping ids
-- the policy knows.
-- Rust twin: Tree::generate_grant_id (src/engine/tree.rs)
function OPS.grant_id(ctx, p)
    while true do
        ctx.meta.seq = ctx.meta.seq + 1
        ctx.meta_dirty = true
        local id = sformat("%x-%x", ctx.now, ctx.meta.seq)
        if not G.find(p, id, ctx.now) then
            return id
        end
    end
end

-- Rust twin: Tree::grant (src/engine/tree.rs).
-- QUOTA.GRANT: adds a grant (o = { id, expires, dur, period, pri, note }).
function OPS.grant(ctx, path, name, amount, o)
    PLAN.sync_paths(ctx, { path })
    local ref = OPS.policy_ref(ctx, path, name)
    if policy_of(ctx, ref).inflight then
        fail(sformat("ERR policy '%s' at %s is INFLIGHT: it takes no grants", name, display_path(path)))
    end
    local now = ctx.now
    local view = policy_now(ctx, ref)
    -- A known id answers first, whatever its EXPIRES (a webhook retried
    -- after that time is still a duplicate).
    if o.id then
        local known = G.find(view, o.id, now)
        if known then
            return OPS.granted_reply(view, known, true, now)
        end
    end
    if o.expires and o.expires <= now then
        fail(sformat("ERR EXPIRES %.0f is not in the future", o.expires))
    end
    if view.gn >= G.MAX then
        fail(sformat("ERR limit: policy '%s' at '%s' already has %d grants", name, display_path(path), G.MAX))
    end
    D.add(allowance(view), amount)

    -- After this point the command succeeds.
    roll_policy(ctx, ref)
    local p = policy_of(ctx, ref)
    p.gk = p.gk or ctx.gkey
    p.ext = true
    local id = o.id or OPS.grant_id(ctx, p)
    local exp = 0
    if o.expires then
        exp = o.expires
    elseif o.dur then
        exp = now + o.dur
    elseif o.period and W.is_calendar(window_of(p.wenc)) then
        exp = period_end(p)
    end
    local g = { id = id, seq = G.next_seq(p), amount = amount, rem = amount, pri = o.pri, exp = exp,
        per = o.period or false, at = now, note = o.note }
    G.forget(p, now)
    -- Usage beyond the whole allowance is a debt the new grant pays.
    local debt = D.sub(D.sub(p.used, p.dr), plus(p.limit, p.ro))
    if D.cmp(debt, D.ZERO) > 0 then
        local pay = D.min(amount, debt)
        p.dr = plus(p.dr, pay)
        g.rem = D.sub(amount, pay)
    end
    if D.is_zero(g.rem) then
        g = G.bury(p, g, now)
    else
        G.add(p, g)
    end
    refresh(p)
    G.rearm_low(p)
    touch(ctx, path)
    observe(ctx, { ref })
    if ctx.ledger then
        REC.ledger_add(ctx, REC.ledger_policy_entry("grant", now, id, path, name, p.metric, amount))
    end
    return OPS.granted_reply(p, g, false, now)
end

-- Rust twin: Tree::grants_view (src/engine/tree.rs).
-- QUOTA.GRANTS: the live grants at now, in draw-down order.
function OPS.grants(ctx, path, name, count)
    PLAN.sync_paths(ctx, { path })
    local ref = OPS.policy_ref(ctx, path, name)
    local p = policy_now(ctx, ref)
    local out = {}
    if p.gn > 0 then
        G.each(p, "d", 0, function(g)
            out[#out + 1] = OPS.grant_reply(g)
            return #out >= count
        end)
    end
    return out
end

-- Rust twin: Tree::revoke (src/engine/tree.rs).
-- QUOTA.REVOKE: a live grant's remaining leaves the allowance.
function OPS.revoke(ctx, path, name, id)
    PLAN.sync_paths(ctx, { path })
    local ref = OPS.policy_ref(ctx, path, name)
    local view = policy_now(ctx, ref)
    local g, live = G.find(view, id, ctx.now)
    if not g then
        fail(sformat("NOTFOUND no such grant '%s' at '%s#%s'", clip(id), display_path(path), name))
    end

    -- After this point the command succeeds.
    roll_policy(ctx, ref)
    local p = policy_of(ctx, ref)
    local removed = D.ZERO
    if live then
        g = G.find(p, id, ctx.now)
        removed = g.rem
        G.forget(p, ctx.now)
        G.unlive(p, g)
        G.bury(p, g, ctx.now)
        G.ended(p, { g }, removed)
    end
    touch(ctx, path)
    observe(ctx, { ref })
    -- A revoke that removes nothing (the grant had already ended) is a
    -- repeat: no ledger entry (design §3).
    if ctx.ledger and not D.is_zero(removed) then
        REC.ledger_add(ctx, REC.ledger_policy_entry("revoke", ctx.now, id, path, name, p.metric, removed))
    end
    return M("id", id, "removed", D.fmt(removed))
end

-- A policy that goes (UNSET, DELPATH, a new metric, a plan's sync) takes
-- its grants and remembered ids with it.
function OPS.drop_grants(ctx, p)
    if p.ext then
        ctx.gdel = ctx.gdel or {}
        ctx.gdel[p.gen] = true
    end
end

-- Rust twin: Tree::reset_policy (src/engine/tree.rs).
-- QUOTA.RESET: closes the policy's current period now.
function OPS.reset(ctx, path, name)
    PLAN.sync_paths(ctx, { path })
    local ref = OPS.policy_ref(ctx, path, name)
    roll_policy(ctx, ref)
    local p = policy_of(ctx, ref)
    local out = {}
    local closed = reset_policy(p, ctx.now, out)
    G.expiry_events(ctx, p, path, out)
    period_events(ctx, p, path, 1)
    G.check_low(ctx, p, path)
    touch(ctx, path)
    if ctx.ledger then
        -- (The closed period's used, as its history row has it.)
        REC.ledger_add(ctx, REC.ledger_policy_entry("reset", ctx.now, nil, path, name, p.metric, closed[3]))
    end
    return closed_reply(closed, window_of(p.wenc))
end

-- Rust twin: Tree::history (src/engine/tree.rs).
function OPS.history(ctx, path, name)
    PLAN.sync_paths(ctx, { path })
    local ref = OPS.policy_ref(ctx, path, name)
    local out = {}
    local p = policy_now(ctx, ref)
    local w = window_of(p.wenc)
    for i, c in ipairs(p.hist) do
        out[i] = closed_reply(c, w)
    end
    return out
end

-- Rust twin: Tree::view (src/engine/view.rs).
-- A node and its descendants down to `depth` levels, visiting at most
-- budget[1] nodes (preorder, children by name). With `after` (TREE ...
-- AFTER name, the top node only), its children start after that name and
-- `more` counts those after it not shown.
function OPS.view(ctx, path, depth, budget, with_children, after)
    PLAN.sync_paths(ctx, { path })
    local node = ctx.nodes[path]
    budget[1] = math.max(budget[1] - 1, 0)
    local children, more = {}, 0
    if depth > 0 and ctx.filtered then
        -- TREE ... TAG t, or a tree with archived nodes: the children shown
        -- (REC.label_tree_filter); more counts those the budget left out.
        local kids = REC.label_tree_filter(ctx, path, after)
        for i, kid in ipairs(kids) do
            if budget[1] == 0 then
                more = #kids - i + 1
                break
            end
            children[#children + 1] = OPS.view(ctx, kid, depth - 1, budget, true)
        end
    elseif depth > 0 then
        -- Read the children a page at a time: a node may have very many,
        -- and only as many as the budget allows are shown.
        local first = 0
        while true do
            if budget[1] == 0 then
                local _, total = children_of(ctx, path, 0, 0, after)
                more = total - #children
                break
            end
            local kids = children_of(ctx, path, first, math.min(budget[1], 1000), after)
            if #kids == 0 then
                break
            end
            first = first + #kids
            load_nodes(ctx, kids)
            for _, kid in ipairs(kids) do
                if budget[1] == 0 then
                    break
                end
                if ctx.nodes[kid] then
                    children[#children + 1] = OPS.view(ctx, kid, depth - 1, budget, true)
                end
            end
        end
    end
    local policies, worst = {}, "none"
    for i, p in ipairs(node.pols) do
        local now_p = policy_at(p, ctx.now)
        local s = status(now_p)
        if STATUS_RANK[s] > STATUS_RANK[worst] then
            worst = s
        end
        -- (GET and TREE show where it comes from, last.)
        local shown = policy_reply(now_p, ctx.now)
        shown[#shown + 1] = "source"
        shown[#shown + 1] = p.src or "tree"
        policies[i] = shown
    end
    local f = M("path", display_path(path), "status", worst, "spent", costs_reply(costs_pack(node.spent)),
        "policies", policies)
    if node.ac then
        f[#f + 1] = "access"
        f[#f + 1] = ACCESS.reply(node.ac)
    end
    REC.label_fields(f, node.lb)
    if with_children then
        f[#f + 1] = "children"
        f[#f + 1] = children
        if more > 0 then
            f[#f + 1] = "more"
            f[#f + 1] = more
        end
    end
    f.cut = more > 0
    for _, c in ipairs(children) do
        if c.cut then
            f.cut = true
        end
    end
    return f
end

-- Rust twin: Tree::get (src/engine/view.rs), Tree::get_at (src/engine/view.rs).
function OPS.get_view(ctx, path)
    if not find(ctx, path) then
        OPS.not_found_path(path)
    end
    return PLAN.info(ctx, OPS.view(ctx, path, 0, { 1 }, false))
end

-- `tag`, `archived` and `after` are QUOTA.TREE's options (TreeQuery).
-- Rust twin: Tree::tree_view_filtered (src/engine/view.rs), Tree::tree_view_at (src/engine/view.rs).
function OPS.tree_view(ctx, path, depth, max_nodes, tag, archived, after)
    if not find(ctx, path) then
        OPS.not_found_path(path)
    end
    if tag or (ctx.meta.rec and not archived) then
        ctx.filtered, ctx.tag, ctx.archived = true, tag, archived
    end
    local budget = { math.max(max_nodes, 1) }
    ctx.reach = true
    local root = OPS.view(ctx, path, math.min(depth, MAX_DEPTH_HARD), budget, true, after)
    root[#root + 1] = "nodes"
    root[#root + 1] = math.max(max_nodes, 1) - budget[1]
    root[#root + 1] = "truncated"
    root[#root + 1] = flag(root.cut)
    return PLAN.info(ctx, root)
end

-- ----- following a plan (plans.md) ---------------------------------------------
-- A tree that follows (or followed) a plan has ctx.pl = { name (false: none
-- now), epoch, json (the plan's canonical JSON it saw), plan (parsed),
-- missing (the book has no plan of its name), stored ("#plan" exists),
-- dirty }; ctx.pl is false for a tree that never followed one, which takes
-- none of the steps below.

-- Reads the tree's "#plan" and (unless `sweeping`: quota_sweep only
-- expires, and reads no key outside the tree's slot) adopts the book's plan
-- of its name: a write stores it (with the expiry its open stores), a read
-- only views it.
function PLAN.open(ctx, sweeping)
    local blob = redis.call("HGET", ctx.key, "#plan")
    local ok, t = pcall(munpack, blob or "")
    local st = { name = false, epoch = 0, json = false, plan = nil, missing = false, stored = blob ~= false
        and blob ~= nil, dirty = false }
    if ok and type(t) == "table" then
        st.name, st.epoch, st.json = t[1] or false, tonumber(t[2]) or 0, t[3] or false
    end
    ctx.pl = st
    if not sweeping then
        PLAN.adopt(ctx)
    end
end

-- The book's plan of the tree's name, when it has another version or
-- content than the tree saw: the tree takes it (epoch + 1). Without one in
-- the book, the tree keeps what it saw (plan_missing).
-- Rust twin: Tree::adopt (src/engine/sync.rs), adopt (src/module/commands/mod.rs)
function PLAN.adopt(ctx)
    local st = ctx.pl
    st.plan, st.missing = nil, false
    if not st.name then
        return
    end
    local book = PLAN.book_get(PLAN.BOOK, st.name)
    if not book then
        st.missing = true
        st.plan = st.json and PLAN.load(st.name, st.json) or nil
        return
    end
    if book ~= st.json then
        st.epoch, st.json, st.dirty = st.epoch + 1, book, true
    end
    st.plan = PLAN.load(st.name, book)
end

-- QUOTA.ASSIGN: the tree follows `name` (its plan in the book, `book`),
-- or no plan (name false). Nothing changes when it already holds that
-- version, or follows none and is asked to follow none (a missing key is
-- not created).
-- Rust twin: Tree::assign (src/engine/sync.rs)
function OPS.assign(ctx, name, book)
    local st = ctx.pl
    if not name then
        if st and st.name then
            st.name, st.json, st.plan, st.missing = false, false, nil, false
            st.epoch, st.dirty = st.epoch + 1, true
        end
        return
    end
    if st and st.name == name and st.json == book then
        return
    end
    if not st then
        st = { name = false, epoch = 0, json = false, stored = false, missing = false }
        ctx.pl = st
        ctx.meta.plan, ctx.meta_dirty = true, true
    end
    st.name, st.json, st.epoch, st.dirty, st.missing = name, book, st.epoch + 1, true, false
    st.plan = PLAN.load(name, book)
end

-- Gives the node at `path` the plan's policies (plans.md, "Sync a node"):
-- plan policies the plan no longer gives go (as UNSET removes them); each
-- policy it gives is created or updated as QUOTA.SET would (usage kept),
-- unless a tree policy of that name overrides it; then the node is synced
-- at the tree's epoch. No events. fresh: a node just created (no holds).
-- A read runs it on its own copies of the nodes (load_nodes), which it
-- never stores: a view and a sync are one function.
-- Rust twin: Tree::synced (src/engine/sync.rs), Tree::sync_node (src/engine/sync.rs)
function PLAN.sync_node(ctx, path, node, fresh)
    local st = ctx.pl
    local desired = st.plan and PLAN.policies_for(st.plan, path) or {}
    local want = {}
    for _, pol in ipairs(desired) do
        want[pol[1]] = true
    end
    local kept, holds = {}, nil
    for _, p in ipairs(node.pols) do
        if p.src and not want[p.name] then
            if holds == nil then
                holds = (not fresh and holds_may_reach(ctx, path)) and OPS.holds_reaching(ctx, path) or {}
            end
            OPS.drop_lines(ctx, holds, path, p.gen)
            OPS.drop_grants(ctx, p)
        else
            kept[#kept + 1] = p
        end
    end
    node.pols = kept
    for _, pol in ipairs(desired) do
        local index = nil
        for i, p in ipairs(node.pols) do
            if p.name == pol[1] then
                index = i
            end
        end
        local p = index and node.pols[index]
        if not p or (p.src and PLAN.spec_json(p) ~= pol[3]) then
            local counted, held = nil, nil
            if not fresh then
                counted, held = OPS.holds_for(ctx, path, node, index, pol[2], true)
            end
            node.pols[OPS.put_policy(ctx, path, node, index, pol[1], pol[2], counted, held, true).i].src = "plan"
        end
    end
    node.pe = st.epoch
    touch(ctx, path)
end

-- (The view of a stale node is its sync on a read's copy.)
PLAN.synced_policies = PLAN.sync_node

-- Syncs the existing nodes of `paths` that are stale (each once, in
-- order); a write stores them at once, so they stay synced even when the
-- command then fails (the module replicates QUOTA.REPLAY … SYNC then).
-- Rust twin: Tree::sync_paths (src/engine/sync.rs)
function PLAN.sync_paths(ctx, paths)
    local st = ctx.pl
    if not st then
        return
    end
    load_nodes(ctx, paths)
    local any = false
    for _, path in ipairs(paths) do
        local node = ctx.nodes[path]
        if node and node.pe ~= st.epoch then
            PLAN.sync_node(ctx, path, node, false)
            any = true
        end
    end
    if any and ctx.writable then
        flush(ctx)
    end
end

-- Syncs every existing node on the way to every path of `paths`: root
-- first, paths in order, each node once (RESERVE, CHARGE, COMMIT). Returns
-- the nodes on the way.
-- Rust twin: Tree::sync_way (src/engine/sync.rs)
function PLAN.sync_way(ctx, paths)
    local all = {}
    for _, path in ipairs(paths) do
        for _, prefix in ipairs(prefixes(path)) do
            all[#all + 1] = prefix
        end
    end
    PLAN.sync_paths(ctx, all)
    return all
end

-- Before a RESERVE or CHARGE on a tree that has (or had) a plan judges: the
-- existing nodes on the way are synced (and stored); when it follows one,
-- the new paths are checked (max_depth, max_paths) and the missing nodes
-- created with the plan's policies, so the request is judged against them.
-- Returns what undoes the creation (PLAN.unmake) when nothing is placed,
-- or nil.
-- Rust twin: Tree::materialize (src/engine/sync.rs)
function PLAN.prepare(ctx, set)
    local all = PLAN.sync_way(ctx, set.paths)
    if not ctx.pl.plan then
        return nil
    end
    local missing, seen = 0, {}
    for _, path in ipairs(all) do
        if not ctx.nodes[path] and not seen[path] then
            seen[path] = true
            missing = missing + 1
        end
    end
    if missing == 0 then
        return nil
    end
    check_new_paths(ctx, set.paths, missing)
    local undo = { gen = ctx.meta.gen, meta_dirty = ctx.meta_dirty, kids = #ctx.kid_add, count = ctx.node_count,
        made = {} }
    for _, path in ipairs(set.paths) do
        for _, prefix in ipairs(prefixes(path)) do
            if not ctx.nodes[prefix] then
                undo.made[#undo.made + 1] = prefix
            end
        end
        ensure_path(ctx, path)
    end
    return undo
end

-- Removes the nodes PLAN.prepare created: nothing is written for them.
-- Rust twin: Tree::unmake (src/engine/paths.rs)
function PLAN.unmake(ctx, undo)
    if not undo then
        return
    end
    for _, path in ipairs(undo.made) do
        ctx.nodes[path] = false
        ctx.dirty[path] = nil
    end
    for i = #ctx.kid_add, undo.kids + 1, -1 do
        ctx.kid_add[i] = nil
    end
    ctx.node_count, ctx.meta.gen, ctx.meta_dirty = undo.count, undo.gen, undo.meta_dirty
end

-- GET and TREE: the tree's plan, the version it follows (the book's when
-- the book has it), and whether the book lacks it; added to the reply `f`.
-- Rust twin: Tree::plan_info (src/engine/sync.rs), push_plan (src/module/commands/read.rs)
function PLAN.info(ctx, f)
    local st = ctx.pl
    local name = st and st.name or false
    local version = name and st.plan and st.plan.version or false
    local more = { "plan", name, "plan_version", version, "plan_missing", flag(st and st.missing) }
    for i = 1, #more do
        f[#f + 1] = more[i]
    end
    return f
end
