-- ---------------------------------------------------------------------------
-- Access rules (SPEC §8, src/engine/access.rs): a node's allow list and deny
-- list of entries {service, model or false} (false: every model of the
-- service). A request passes a node when it matches no deny entry and,
-- where the node has allow entries, matches one; a node's rules apply to
-- its subtree, so every node of a request's reach judges it, root first.
-- A node keeps its rules in its record (n.ac = {allow, deny}, each sorted
-- by service then model in byte order, an entry without a model first);
-- a node without rules has no n.ac, and a tree that never had a rule (nor
-- an INFLIGHT policy) says so in "#" (meta.access false), so a request on
-- it looks at no node's rules.
-- (A table, not locals: build() is near Lua's 200 locals.)
-- ---------------------------------------------------------------------------

local AC = { MAX = 128 }

-- Entry order: service, then model, bytewise (never `<` on client text:
-- Redis sets LC_COLLATE, and Lua's string `<` uses strcoll).
-- Rust twin: Entry::cmp (src/engine/access.rs)
function AC.before(a, b)
    if a[1] ~= b[1] then
        return P.bytes_less(a[1], b[1])
    end
    local x, y = a[2], b[2]
    if x == y then
        return false
    elseif not x then
        return true
    elseif not y then
        return false
    end
    return P.bytes_less(x, y)
end

-- The position of the entry (service, model) in `list`, or nil.
function AC.find(list, service, model)
    model = model or false
    for i = 1, #list do
        local e = list[i]
        if e[1] == service and e[2] == model then
            return i
        end
    end
    return nil
end

-- The rules as a node record stores them (position NODE_ACCESS), checked:
-- what is not two lists of {service, model or false} is no rule.
function AC.loaded(t)
    local out = { allow = {}, deny = {} }
    if type(t) ~= "table" then
        return nil
    end
    for k, name in ipairs({ "allow", "deny" }) do
        local list = type(t[k]) == "table" and t[k] or {}
        for _, e in ipairs(list) do
            if type(e) == "table" and type(e[1]) == "string" then
                out[name][#out[name] + 1] = { e[1], type(e[2]) == "string" and e[2] or false }
            end
        end
    end
    if #out.allow + #out.deny == 0 then
        return nil
    end
    return out
end

function AC.count(ac)
    return ac and (#ac.allow + #ac.deny) or 0
end

-- Whether the entry matches a request for (service, model): a request
-- without SERVICE matches no entry.
-- Rust twin: Entry::matches (src/engine/access.rs)
function AC.matches(e, service, model)
    return service ~= nil and e[1] == service and (not e[2] or e[2] == model)
end

-- How one node's rules judge a request: nil when it passes, else the rule
-- that refuses ("deny" or "allow") and the sentence saying why (`at` is
-- the node's display path).
-- Rust twin: Rules::judge (src/engine/access.rs)
function AC.judge(ac, at, service, model)
    for _, e in ipairs(ac.deny) do
        if AC.matches(e, service, model) then
            if not e[2] then
                return "deny", sformat("service %s is not allowed at %s", service, at)
            end
            return "deny", sformat("model %s is not allowed at %s", model, at)
        end
    end
    local allow = ac.allow
    if #allow == 0 then
        return nil
    end
    local names_service = false
    for _, e in ipairs(allow) do
        if AC.matches(e, service, model) then
            return nil
        end
        if e[1] == service then
            names_service = true
        end
    end
    if service == nil then
        return "allow", sformat("a request without SERVICE is not allowed at %s (it allows only listed services)", at)
    elseif not names_service then
        return "allow", sformat("service %s is not allowed at %s", service, at)
    elseif model == nil then
        return "allow", sformat("service %s without MODEL is not allowed at %s (it allows only listed models)",
            service, at)
    end
    return "allow", sformat("model %s is not allowed at %s", model, at)
end

-- The access checks of a request (set) on the nodes of its reach, in
-- their order: one per refusing node; nil when every node passes (or the
-- tree never had a rule). Also the first refusal's sentence and the
-- refusing nodes' paths.
-- Rust twin: Tree::judge_access (src/engine/access.rs)
function AC.refusals(ctx, nodes, set)
    if not ctx.meta.access then
        return nil
    end
    local out, why, paths = nil, nil, nil
    for _, path in ipairs(nodes) do
        local node = ctx.nodes[path]
        local ac = node and node.ac
        if ac then
            local at = display_path(path)
            local rule, sentence = AC.judge(ac, at, set.service, set.model)
            if rule then
                if not out then
                    out, why, paths = {}, sentence, {}
                end
                out[#out + 1] = { kind = "access", path = at, rule = rule, service = set.service, model = set.model,
                    pass = false }
                paths[#paths + 1] = path
            end
        end
    end
    return out, why, paths
end

-- The labels of access checks: `path#access`.
function AC.labels(checks)
    local out = {}
    for i, c in ipairs(checks) do
        out[i] = c.path .. "#access"
    end
    return out
end

-- One entry as QUOTA.ACCESS, GET and TREE show it.
function AC.entry_reply(e)
    if e[2] then
        return M("service", e[1], "model", e[2])
    end
    return M("service", e[1])
end

-- A node's rules as GET and TREE show them (`access`): allow, deny.
function AC.reply(ac)
    local allow, deny = {}, {}
    if ac then
        for i, e in ipairs(ac.allow) do
            allow[i] = AC.entry_reply(e)
        end
        for i, e in ipairs(ac.deny) do
            deny[i] = AC.entry_reply(e)
        end
    end
    return M("allow", allow, "deny", deny)
end
