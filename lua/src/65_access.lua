-- ---------------------------------------------------------------------------
-- Access rules (SPEC §8; Rust: src/engine/access.rs): a node's allow list
-- and deny list of entries {service, model or false} (false: every model of
-- the service). A request passes a node when it matches no deny entry and,
-- where the node has allow entries, matches one; a node's rules apply to
-- its subtree, so every node of a request's reach judges it, root first.
-- A node keeps its rules in its record (n.ac = {allow, deny}, each sorted
-- by service then model in byte order, an entry without a model first, at
-- most ACCESS.MAX in all); a node without rules has no n.ac, and a tree
-- that never had a rule (nor an INFLIGHT policy) says so in "#"
-- (meta.access false, layout 4 or before), so a request on it looks at no
-- node's rules. Rules are never changed in place (clone_node shares them).
-- (A table, not locals: build() is near Lua's 200 locals.)
-- ---------------------------------------------------------------------------

-- (ACCESS, its bound and its entry order are declared in 60_tree.lua, where
-- stored rules are read.)

-- The position of the entry (service, model) in `list`, or nil.
function ACCESS.find(list, service, model)
    model = model or false
    for i = 1, #list do
        local e = list[i]
        if e[1] == service and e[2] == model then
            return i
        end
    end
    return nil
end

function ACCESS.count(ac)
    return ac and (#ac.allow + #ac.deny) or 0
end

-- The sentence of a refusal at display path `at` (why: "no_service",
-- "service", "model", "no_model").
-- Rust twin: message (src/engine/access.rs)
function ACCESS.message(why, at, service, model)
    if why == "no_service" then
        return sformat("a request without SERVICE is not allowed at %s (it allows only listed services)", at)
    elseif why == "service" then
        return sformat("service %s is not allowed at %s", service, at)
    elseif why == "model" then
        return sformat("model %s is not allowed at %s", model, at)
    end
    return sformat("service %s without MODEL is not allowed at %s (it allows only listed models)", service, at)
end

-- How one node's rules judge a request: nil when it passes, else the rule
-- that refuses ("deny" or "allow") and why (ACCESS.message). An entry
-- matches a request whose SERVICE is its service and, when it names a
-- model, whose MODEL is that model; a request without SERVICE matches none.
-- Rust twin: Access::judge (src/engine/access.rs)
function ACCESS.judge_node(ac, service, model)
    local deny, allow = ac.deny, ac.allow
    if service == nil then
        -- (A request without SERVICE matches no entry.)
        if #allow > 0 then
            return "allow", "no_service"
        end
        return nil
    end
    for i = 1, #deny do
        local e = deny[i]
        if e[1] == service then
            local m = e[2]
            if not m then
                return "deny", "service"
            elseif m == model then
                return "deny", "model"
            end
        end
    end
    local n = #allow
    if n == 0 then
        return nil
    end
    local names_service = false
    for i = 1, n do
        local e = allow[i]
        if e[1] == service then
            local m = e[2]
            if not m or m == model then
                return nil
            end
            names_service = true
        end
    end
    if not names_service then
        return "allow", "service"
    elseif model == nil then
        return "allow", "no_model"
    end
    return "allow", "model"
end

-- The access checks of a request (set) on the nodes of its reach, in
-- their order, one per refusing node; nil when every node passes (at once
-- for a tree that never had a rule). Also the first refusal's sentence and
-- the refusing nodes' paths.
-- Rust twin: Tree::judge_access (src/engine/access.rs)
function ACCESS.judge(ctx, nodes, set)
    if not ctx.meta.access then
        return nil
    end
    local out, first, paths = nil, nil, nil
    local service, model = set.service, set.model
    for _, path in ipairs(nodes) do
        local node = ctx.nodes[path]
        local ac = node and node.ac
        if ac then
            local rule, why = ACCESS.judge_node(ac, service, model)
            if rule then
                local at = display_path(path)
                if not out then
                    out, first, paths = {}, ACCESS.message(why, at, service, model), {}
                end
                out[#out + 1] = { kind = "access", path = at, rule = rule, service = service, model = model,
                    pass = false }
                paths[#paths + 1] = path
            end
        end
    end
    return out, first, paths
end

-- The labels of access (and archived) checks: `path#access`
-- (`path#archived`).
-- Rust twin: AccessCheck::label (src/engine/access.rs)
function ACCESS.labels(checks)
    local out = {}
    for i, c in ipairs(checks) do
        out[i] = c.path .. "#" .. c.kind
    end
    return out
end

-- The `disallowed` events of a CHARGE (without CHECK) that access refuses:
-- one per refusing node (`paths`), in node order, before the charge's
-- alerts.
-- Rust twin: Tree::disallowed_events (src/engine/access.rs)
function ACCESS.disallowed_events(ctx, refusals, paths, id, charged, meta)
    local amounts = costs_pack(charged)
    for i, c in ipairs(refusals) do
        emit(ctx, { seq = 0, type = "disallowed", time = ctx.now, path = paths[i], rule = c.rule,
            service = c.service, model = c.model, id = id, amounts = amounts, meta = meta })
    end
end

-- The service or model (`what`) of an entry as QUOTA.ALLOW and QUOTA.DENY
-- give it: a name, never `*` (leaving MODEL out names every model).
-- Rust twin: parse_part (src/engine/access.rs)
function ACCESS.parse_part(text, what)
    if text == "*" then
        fail("ERR syntax: '*' is not a wildcard here: leave MODEL out to match every model of a service")
    end
    return parse_name(text, what)
end

-- QUOTA.ALLOW / QUOTA.DENY without REMOVE: adds the entry to the node's
-- `list` ("allow" or "deny"), creating the key and the node when missing.
-- Returns 1 when the list changed, else 0.
-- Rust twin: Tree::add_rule (src/engine/access.rs)
function ACCESS.add(ctx, path, list, service, model)
    PLAN.sync_paths(ctx, { path })
    local node = find(ctx, path)
    local ac = node and node.ac
    if node then
        if ac and ACCESS.find(ac[list], service, model) then
            return 0
        end
        if ACCESS.count(ac) >= ACCESS.MAX then
            fail(sformat("ERR limit: at most %d access rules per path", ACCESS.MAX))
        end
    else
        check_new_paths(ctx, { path }, reach(ctx, { paths = { path } }, {}).missing)
    end

    -- After this point the command succeeds.
    node = node or ensure_path(ctx, path)
    local entry = { service, model or false }
    local grown, placed = {}, false
    for _, e in ipairs(ac and ac[list] or {}) do
        if not placed and ACCESS.before(entry, e) then
            grown[#grown + 1] = entry
            placed = true
        end
        grown[#grown + 1] = e
    end
    if not placed then
        grown[#grown + 1] = entry
    end
    local other = list == "allow" and "deny" or "allow"
    node.ac = { [list] = grown, [other] = ac and ac[other] or {} }
    ctx.meta.access, ctx.meta_dirty = true, true
    touch(ctx, path)
    return 1
end

-- QUOTA.ALLOW / QUOTA.DENY … REMOVE: takes the entry away; a missing key,
-- path or entry changes nothing (0).
-- Rust twin: Tree::remove_rule (src/engine/access.rs)
function ACCESS.remove(ctx, path, list, service, model)
    local node = find(ctx, path)
    local ac = node and node.ac
    local at = ac and ACCESS.find(ac[list], service, model)
    if not at then
        return 0
    end
    local kept = {}
    for i, e in ipairs(ac[list]) do
        if i ~= at then
            kept[#kept + 1] = e
        end
    end
    local other = list == "allow" and "deny" or "allow"
    if #kept + #ac[other] == 0 then
        node.ac = nil
    else
        node.ac = { [list] = kept, [other] = ac[other] }
    end
    touch(ctx, path)
    return 1
end

-- QUOTA.ACCESS … CLEAR: removes every entry of the node (not of its
-- subtree); how many there were (a missing key or path: 0).
-- Rust twin: Tree::clear_rules (src/engine/access.rs)
function ACCESS.clear(ctx, path)
    local node = find(ctx, path)
    local n = ACCESS.count(node and node.ac)
    if n > 0 then
        node.ac = nil
        touch(ctx, path)
    end
    return n
end

-- One entry as QUOTA.ACCESS, GET and TREE show it.
function ACCESS.entry_reply(e)
    if e[2] then
        return M("service", e[1], "model", e[2])
    end
    return M("service", e[1])
end

-- A node's rules as GET and TREE show them (`access`): allow, deny.
function ACCESS.reply(ac)
    local allow, deny = {}, {}
    if ac then
        for i, e in ipairs(ac.allow) do
            allow[i] = ACCESS.entry_reply(e)
        end
        for i, e in ipairs(ac.deny) do
            deny[i] = ACCESS.entry_reply(e)
        end
    end
    return M("allow", allow, "deny", deny)
end

-- QUOTA.ACCESS: the node's own rules (a missing key: the root's, none; a
-- missing path: NOTFOUND).
-- Rust twin: Tree::access_view (src/engine/access.rs)
function ACCESS.view(ctx, path)
    local node = find(ctx, path)
    if not node then
        fail(sformat("NOTFOUND no such path '%s'", display_path(path)))
    end
    local f = M("path", display_path(path))
    local rules = ACCESS.reply(node.ac)
    for i = 1, #rules do
        f[#f + 1] = rules[i]
    end
    return f
end
