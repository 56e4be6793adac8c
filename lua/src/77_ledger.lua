-- ---------------------------------------------------------------------------
-- The ledger (SPEC §9; Rust: src/engine/ledger.rs): with ledger_len > 0,
-- every commit, charge, release, expiry, grant, revoke and reset of a tree
-- appends one entry to a Redis Stream in the tree's slot, trimmed to about
-- ledger_len entries (XADD ... MAXLEN ~). A write collects its entries on
-- the context (ctx.ledger, false when the ledger is off or the call only
-- reads) and flush writes them with the rest; effects replication sends
-- replicas and the AOF the XADDs with the primary's ids.
-- (Functions in a block, kept on REC: build() is near Lua's 200 locals.)
-- ---------------------------------------------------------------------------

do
    -- The ledger's key: `{<key>}:ledger`, or `<key>:ledger` for a key with
    -- a hash tag (first `{`, the first `}` after it, something between), so
    -- it is in the tree's slot either way. (A key with `}` and no tag is
    -- refused before: hash_tag.)
    -- Rust twin: ledger_key (src/engine/ledger.rs)
    local function ledger_key(key)
        local open = sfind(key, "{", 1, true)
        if open then
            local close = sfind(key, "}", open + 1, true)
            if close and close > open + 1 then
                return key .. ":ledger"
            end
        end
        return "{" .. key .. "}:ledger"
    end

    -- A write on a tree with the ledger on checks its key first: missing or
    -- a stream, else nothing changes. Any write may append entries (a hold
    -- it finds expired), and the XADDs come after the tree's writes, which
    -- a Function does not roll back: so a caller that may not XADD the key
    -- (ACL: the key's write permission and +xadd) is refused here, before
    -- anything changes (redis.acl_check_cmd: Redis 7.0+, Valkey; a caller
    -- that may not read the key fails at TYPE, also here).
    -- Rust twin: check (src/module/ledger.rs; the module needs no ACL)
    local function ledger_check(ctx)
        local lkey = ctx.lkey
        if redis.acl_check_cmd and not redis.acl_check_cmd("XADD", lkey, "MAXLEN", "~", "1", "*", "f", "v") then
            fail(sformat("NOPERM this account may not append to the tree's ledger '%s': give it ~%s and +xadd "
                .. "(lua/README.md, access control)", clip(lkey), clip(lkey)))
        end
        local t = redis.call("TYPE", lkey)
        t = type(t) == "table" and t.ok or t
        if t ~= "none" and t ~= "stream" then
            fail("WRONGTYPE the tree's ledger key holds another type")
        end
    end

    -- An entry's fields, flat, in their order: type, time, id, paths,
    -- service, model, item, policy, amount:<metric> (name order), late,
    -- disallowed, meta:<name> (in the order given), each optional one left
    -- out when absent. e = {type, time, id, paths (canonical), service,
    -- model, item (0-based), policy, amounts (packed costs: metric, text,
    -- ...), late, disallowed, meta (flat pairs)}.
    -- Rust twin: LedgerEntry::fields (src/engine/ledger.rs)
    local function ledger_fields(e)
        local f = { "type", e.type, "time", sformat("%.0f", e.time) }
        local function put(name, value)
            f[#f + 1] = name
            f[#f + 1] = value
        end
        if e.id then
            put("id", e.id)
        end
        local shown = {}
        for i, p in ipairs(e.paths) do
            shown[i] = display_path(p)
        end
        put("paths", tconcat(shown, ","))
        if e.service then
            put("service", e.service)
        end
        if e.model then
            put("model", e.model)
        end
        if e.item then
            put("item", sformat("%.0f", e.item))
        end
        if e.policy then
            put("policy", e.policy)
        end
        local amounts, order = e.amounts, {}
        for i = 1, #amounts, 2 do
            order[#order + 1] = i
        end
        table.sort(order, function(a, b)
            return P.bytes_less(amounts[a], amounts[b])
        end)
        for _, i in ipairs(order) do
            put("amount:" .. amounts[i], amounts[i + 1])
        end
        if e.late then
            put("late", "1")
        end
        if e.disallowed then
            put("disallowed", "1")
        end
        local meta = e.meta
        if meta then
            for i = 1, #meta, 2 do
                put("meta:" .. meta[i], meta[i + 1])
            end
        end
        return f
    end

    -- An entry of a request's charge set (commit, charge, release, expire):
    -- `set` = {paths, service, model}, `amounts` packed costs.
    -- Rust twin: LedgerEntry::of_set (src/engine/ledger.rs)
    local function ledger_entry(kind, time, id, set, amounts)
        return { type = kind, time = time, id = id, paths = set.paths, service = set.service, model = set.model,
            amounts = amounts }
    end

    -- An entry of a policy (grant, revoke, reset): its one path and name,
    -- `amount` (a D value, or its text) in its metric.
    -- Rust twin: LedgerEntry::of_policy (src/engine/ledger.rs)
    local function ledger_policy_entry(kind, time, id, path, policy, metric, amount)
        local text = type(amount) == "string" and amount or D.fmt(amount)
        return { type = kind, time = time, id = id, paths = { path }, policy = policy, amounts = { metric, text } }
    end

    -- Collects an entry when the ledger is on (flush writes it).
    -- Rust twin: Tree::ledger_push (src/engine/ledger.rs)
    local function ledger_add(ctx, e)
        local out = ctx.ledger
        if out then
            out[#out + 1] = ledger_fields(e)
        end
    end

    -- Writes the entries collected (flush), each with XADD MAXLEN ~, last
    -- of a write. An XADD that fails all the same (a stream whose last id
    -- cannot grow) loses its entry with a warning in the log, as the
    -- module's does: the tree is written by then and a Function does not
    -- roll back, so the command is answered as if it had been written.
    -- Rust twin: write (src/module/ledger.rs)
    local function ledger_write(ctx)
        local len = sformat("%.0f", ctx.limits.ledger_len)
        for _, f in ipairs(ctx.ledger) do
            local r = redis.pcall("XADD", ctx.lkey, "MAXLEN", "~", len, "*", unpack(f))
            if type(r) == "table" and r.err then
                redis.log(redis.LOG_WARNING, "quota: a ledger entry was not written: XADD failed")
            end
        end
        ctx.ledger = {}
    end

    REC.ledger_key, REC.ledger_check, REC.ledger_add, REC.ledger_write = ledger_key, ledger_check, ledger_add,
        ledger_write
    REC.ledger_fields, REC.ledger_entry, REC.ledger_policy_entry = ledger_fields, ledger_entry, ledger_policy_entry
end
