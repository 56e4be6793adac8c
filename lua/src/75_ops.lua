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

-- Rust twin: Tree::holds_matching (src/engine/held.rs).
-- The live holds a policy configured as `spec` at `path` counts: those whose
-- charge set reaches the path, whose service and model its filter matches,
-- and that hold its metric; and their total held (Tree::holds_matching).
local function holds_matching(ctx, path, spec)
    local out, held = {}, D.ZERO
    for _, hold in ipairs(HOLDS.live_all(ctx)) do
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
            held = D.add(held, amount)
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
    OPS.drop_lines(ctx, HOLDS.live_all(ctx), path, p.gen, old)
    for _, hold in ipairs(counted) do
        hold.lines[#hold.lines + 1] = { path = path, gen = p.gen }
        ctx.hold_dirty[hold.id] = true
    end
end

-- Rust twin: Tree::set_policy (src/engine/tree.rs), Policy::restart (src/engine/policy.rs).
-- QUOTA.SET: creates or updates a policy.
function OPS.set_policy(ctx, path, name, spec)
    validate_spec(spec)
    local node = find(ctx, path)
    local index = nil
    if node then
        for i, p in ipairs(node.pols) do
            if p.name == name then
                index = i
            end
        end
        if not index and #node.pols >= ctx.limits.max_policies then
            fail(sformat("ERR limit: path '%s' already has %d policies (max_policies)", display_path(path),
                ctx.limits.max_policies))
        end
    else
        check_new_paths(ctx, { path }, reach(ctx, { paths = { path } }, {}).missing)
    end
    -- A new policy, or one whose metric or filter changes, counts the live
    -- holds it matches from now on (and no others).
    local old, counted, held = nil, nil, nil
    local changes = true
    if index then
        local p = node.pols[index]
        old = p.gen
        changes = p.metric ~= spec.metric or p.service ~= spec.service or p.model ~= spec.model
    end
    if changes and holds_may_reach(ctx, path) then
        counted, held = holds_matching(ctx, path, spec)
    end

    -- After this point the command succeeds.
    node = ensure_path(ctx, path)
    local generation = next_generation(ctx)
    touch(ctx, path)
    local ref
    if index then
        ref = { path = path, i = index }
        roll_policy(ctx, ref)
        local p = node.pols[index]
        local new_metric = p.metric ~= spec.metric
        update_policy(p, spec, ctx.now)
        if new_metric then
            node.pols[index] = new_policy(name, spec, generation, ctx.now)
        end
    else
        node.pols[#node.pols + 1] = new_policy(name, spec, generation, ctx.now)
        ref = { path = path, i = #node.pols }
    end
    if counted then
        recount(ctx, path, node.pols[ref.i], old, counted, held)
    end
    observe(ctx, { ref })
end

-- Rust twin: Tree::unset_policy (src/engine/tree.rs).
-- QUOTA.UNSET: removes one policy; holds that counted on it no longer do.
function OPS.unset_policy(ctx, path, name)
    local ref = OPS.policy_ref(ctx, path, name)
    local gen = ctx.nodes[path].pols[ref.i].gen
    OPS.drop_lines(ctx, holds_may_reach(ctx, path) and HOLDS.live_all(ctx) or {}, path, gen)
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
        ctx.kid_del[#ctx.kid_del + 1] = kid_member(p)
        ctx.nodes[p] = false
        ctx.dirty[p] = nil
        ctx.deleted[p] = true
        ctx.node_count = ctx.node_count - 1
    end
    return #all
end

-- Rust twin: Tree::grant (src/engine/tree.rs).
-- QUOTA.GRANT: adds to the current period's allowance.
function OPS.grant(ctx, path, name, amount)
    local ref = OPS.policy_ref(ctx, path, name)
    local trial = copy_policy(policy_of(ctx, ref))
    grant_policy(trial, amount, ctx.now)

    -- After this point the command succeeds.
    roll_policy(ctx, ref)
    local p = policy_of(ctx, ref)
    grant_policy(p, amount, ctx.now)
    touch(ctx, path)
    return policy_reply(p, ctx.now)
end

-- Rust twin: Tree::reset_policy (src/engine/tree.rs).
-- QUOTA.RESET: closes the policy's current period now.
function OPS.reset(ctx, path, name)
    local ref = OPS.policy_ref(ctx, path, name)
    roll_policy(ctx, ref)
    local p = policy_of(ctx, ref)
    local closed = reset_policy(p, ctx.now)
    period_events(ctx, p, path, 1)
    touch(ctx, path)
    return closed_reply(closed)
end

-- Rust twin: Tree::history (src/engine/tree.rs).
function OPS.history(ctx, path, name)
    local ref = OPS.policy_ref(ctx, path, name)
    local out = {}
    for i, c in ipairs(policy_now(ctx, ref).hist) do
        out[i] = closed_reply(c)
    end
    return out
end

-- Rust twin: Tree::view (src/engine/view.rs).
-- A node and its descendants down to `depth` levels, visiting at most
-- budget[1] nodes (preorder, children by name).
function OPS.view(ctx, path, depth, budget, with_children)
    local node = ctx.nodes[path]
    budget[1] = math.max(budget[1] - 1, 0)
    local children, more = {}, 0
    if depth > 0 then
        -- Read the children a page at a time: a node may have very many,
        -- and only as many as the budget allows are shown.
        local first = 0
        while true do
            if budget[1] == 0 then
                local _, total = children_of(ctx, path, 0, 0)
                more = total - #children
                break
            end
            local kids = children_of(ctx, path, first, math.min(budget[1], 1000))
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
        policies[i] = policy_reply(now_p, ctx.now)
    end
    local f = M("path", display_path(path), "status", worst, "spent", costs_reply(costs_pack(node.spent)),
        "policies", policies)
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
    return OPS.view(ctx, path, 0, { 1 }, false)
end

-- Rust twin: Tree::tree_view (src/engine/view.rs), Tree::tree_view_at (src/engine/view.rs).
function OPS.tree_view(ctx, path, depth, max_nodes)
    if not find(ctx, path) then
        OPS.not_found_path(path)
    end
    local budget = { math.max(max_nodes, 1) }
    local root = OPS.view(ctx, path, math.min(depth, MAX_DEPTH_HARD), budget, true)
    root[#root + 1] = "nodes"
    root[#root + 1] = math.max(max_nodes, 1) - budget[1]
    root[#root + 1] = "truncated"
    root[#root + 1] = flag(root.cut)
    return root
end
