-- ---------------------------------------------------------------------------
-- Registration: one function per module command, `QUOTA.X key args...` →
-- `FCALL quota_x 1 key args...` (the server-wide ones take no key). Ports
-- the module's registration (src/module/module.rs); the functions, their
-- flags and keys are listed once in src/engine/catalog.rs, which
-- src/load/catalog_check.rs checks this section against.
-- ---------------------------------------------------------------------------

-- Runs `body` and turns what it raised into an error reply: errors raised
-- with fail() keep their text; anything else is a bug, reported as one.
local function guarded(body)
    return function(keys, args)
        failure, failure_as_redis = nil, false
        local ok, result = pcall(body, keys, args)
        if ok then
            return to_resp(result)
        end
        local text, as_redis = failure, failure_as_redis
        failure, failure_as_redis = nil, false
        if as_redis then
            return redis.error_reply(text)
        elseif type(result) == "table" and result.err then
            text = result.err
        elseif text == nil and type(result) == "string" and sfind(result, "^%u+ ") then
            -- An error reply of a command the library called (WRONGTYPE, OOM).
            text = result
        end
        text = text or ("ERR quota internal error: " .. tostring(result))
        -- Error replies are printable ASCII, as the module's are.
        text = string.gsub(string.gsub(text, "[\192-\255][\128-\191]*", "?"), "[^ -~]", "?")
        return redis.error_reply(text)
    end
end

-- A tree command: opens the tree, releases what expired, runs. A write
-- stores what expired even when the command itself fails (as the module
-- does); a read only sees it, as the module's reads see a tree through
-- src/engine/due.rs: due holds not held nor listed, their `expired` events
-- shown with the seq a write will log them with, nothing written.
local function tree_command(name, handler, writes)
    return guarded(function(keys, args)
        if #keys ~= 1 then
            fail(sformat("ERR wrong number of arguments for '%s' command: give the tree key (FCALL %s 1 key ...)",
                string.lower(name), "quota_" .. string.lower(ssub(name, 7))))
        end
        check_utf8(args)
        local ctx = open_tree(keys[1], writes)
        if ctx.ledger then
            REC.ledger_check(ctx)
        end
        expire(ctx)
        if writes then
            flush(ctx)
        end
        local reply = handler(ctx, new_args(name, args))
        if writes then
            flush(ctx, true)
        end
        return reply
    end)
end

local handlers = {}
for _, c in ipairs({
    { "QUOTA.SET", CMD.cmd_set, true },
    { "QUOTA.UNSET", CMD.cmd_unset, true },
    { "QUOTA.DELPATH", CMD.cmd_delpath, true },
    { "QUOTA.GRANT", CMD.cmd_grant, true },
    { "QUOTA.REVOKE", CMD.cmd_revoke, true },
    { "QUOTA.RESET", CMD.cmd_reset, true },
    { "QUOTA.ASSIGN", CMD.cmd_assign, true },
    { "QUOTA.RESERVE", CMD.cmd_reserve, true },
    { "QUOTA.COMMIT", CMD.cmd_commit, true },
    { "QUOTA.RELEASE", CMD.cmd_release, true },
    { "QUOTA.EXTEND", CMD.cmd_extend, true },
    { "QUOTA.CHARGE", CMD.cmd_charge, true },
    { "QUOTA.ALLOW", CMD.cmd_allow, true },
    { "QUOTA.DENY", CMD.cmd_deny, true },
    { "QUOTA.ACCESS", CMD.cmd_access, true },
    { "QUOTA.LABEL", CMD.cmd_label, true },
    { "QUOTA.ARCHIVE", CMD.cmd_archive, true },
    { "QUOTA.RESTORE", CMD.cmd_restore, true },
    { "QUOTA.GET", CMD.cmd_get, false },
    { "QUOTA.TREE", CMD.cmd_tree, false },
    { "QUOTA.HOLDS", CMD.cmd_holds, false },
    { "QUOTA.HISTORY", CMD.cmd_history, false },
    { "QUOTA.EVENTS", CMD.cmd_events, false },
    { "QUOTA.GRANTS", CMD.cmd_grants, false },
    { "QUOTA.USAGE", CMD.cmd_usage, false },
}) do
    handlers["quota_" .. string.lower(ssub(c[1], 7))] = tree_command(c[1], c[2], c[3])
end

local function keyless(name, body)
    return guarded(function(keys, args)
        if #keys ~= 0 then
            fail(sformat("ERR syntax: %s takes no key (FCALL %s 0 ...)", name, "quota_" .. string.lower(ssub(name, 7))))
        end
        check_utf8(args)
        return body(args)
    end)
end

handlers.quota_price = keyless("QUOTA.PRICE", function(args)
    return P.cmd_price(PRICE_BOOK, args)
end)
-- GET, LIST and HELP without writing, for replicas and FCALL_RO.
handlers.quota_price_ro = keyless("QUOTA.PRICE", function(args)
    local verb = args[1] and string.upper(args[1])
    if verb ~= "GET" and verb ~= "LIST" and verb ~= "HELP" then
        fail("ERR syntax: quota_price_ro takes GET, LIST or HELP; SET and DEL are quota_price")
    end
    return P.cmd_price(PRICE_BOOK, args)
end)
handlers.quota_plan = keyless("QUOTA.PLAN", function(args)
    return PLAN.cmd_plan(PLAN.BOOK, args)
end)
-- GET, LIST and HELP without writing, for replicas and FCALL_RO.
handlers.quota_plan_ro = keyless("QUOTA.PLAN", function(args)
    local verb = args[1] and string.upper(args[1])
    if verb ~= "GET" and verb ~= "LIST" and verb ~= "HELP" then
        fail("ERR syntax: quota_plan_ro takes GET, LIST or HELP; SET and DEL are quota_plan")
    end
    return PLAN.cmd_plan(PLAN.BOOK, args)
end)
handlers.quota_estimate = keyless("QUOTA.ESTIMATE", function(args)
    return P.cmd_estimate(PRICE_BOOK, args)
end)
handlers.quota_debug = keyless("QUOTA.DEBUG", CMD.cmd_debug)
handlers.quota_sweep = guarded(function(keys, args)
    if #keys ~= 1 then
        fail("ERR wrong number of arguments for 'quota_sweep': give the index key (FCALL quota_sweep 1 quota:due)")
    end
    check_utf8(args)
    return CMD.cmd_sweep(keys[1], args)
end)
return handlers
end -- build

-- ---------------------------------------------------------------------------
-- Registration. Only `redis` is visible here (see build), so the list is
-- plain and the loop is numeric.
-- ---------------------------------------------------------------------------

local handlers = nil

local function entry(name)
    return function(keys, args)
        if handlers == nil then
            handlers = build()
        end
        return handlers[name](keys, args)
    end
end

-- name, flags: "no-writes" for what only reads (it also runs on replicas and
-- with FCALL_RO); "allow-oom" for writes that settle or shrink what exists,
-- which the module does not refuse when memory is full either (Redis refuses
-- the other writes with OOM); "allow-cross-slot-keys" for what may read a
-- key outside the tree's slot: the price book (USAGE items) and the plan
-- book (quota:plans), which every command on a tree that follows a plan
-- reads (quota_sweep only expires: it reads no plan).
local FUNCTIONS = {
    { "quota_set", { "allow-cross-slot-keys" } }, { "quota_unset", { "allow-oom", "allow-cross-slot-keys" } },
    { "quota_delpath", { "allow-oom", "allow-cross-slot-keys" } }, { "quota_grant", { "allow-cross-slot-keys" } },
    { "quota_revoke", { "allow-oom", "allow-cross-slot-keys" } },
    { "quota_reset", { "allow-oom", "allow-cross-slot-keys" } }, { "quota_assign", { "allow-cross-slot-keys" } },
    { "quota_reserve", { "allow-cross-slot-keys" } }, { "quota_commit", { "allow-oom", "allow-cross-slot-keys" } },
    { "quota_release", { "allow-oom", "allow-cross-slot-keys" } },
    { "quota_extend", { "allow-oom", "allow-cross-slot-keys" } }, { "quota_charge", { "allow-cross-slot-keys" } },
    { "quota_allow", { "allow-cross-slot-keys" } }, { "quota_deny", { "allow-cross-slot-keys" } },
    { "quota_access", { "allow-oom", "allow-cross-slot-keys" } },
    { "quota_label", { "allow-cross-slot-keys" } }, { "quota_archive", { "allow-oom", "allow-cross-slot-keys" } },
    { "quota_restore", { "allow-oom", "allow-cross-slot-keys" } },
    { "quota_get", { "no-writes", "allow-cross-slot-keys" } }, { "quota_tree", { "no-writes", "allow-cross-slot-keys" } },
    { "quota_holds", { "no-writes", "allow-cross-slot-keys" } },
    { "quota_history", { "no-writes", "allow-cross-slot-keys" } },
    { "quota_events", { "no-writes", "allow-cross-slot-keys" } },
    { "quota_grants", { "no-writes", "allow-cross-slot-keys" } },
    { "quota_usage", { "no-writes", "allow-cross-slot-keys" } },
    { "quota_price", {} }, { "quota_price_ro", { "no-writes" } }, { "quota_plan", {} },
    { "quota_plan_ro", { "no-writes" } }, { "quota_estimate", { "no-writes" } },
    { "quota_debug", {} }, { "quota_sweep", { "allow-oom" } },
}

for i = 1, #FUNCTIONS do
    local name = FUNCTIONS[i][1]
    redis.register_function({ function_name = name, callback = entry(name), flags = FUNCTIONS[i][2] })
end

redis.register_function({
    function_name = "quota_version",
    callback = function()
        return VERSION
    end,
    flags = { "no-writes" },
})
