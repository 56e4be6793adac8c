-- ---------------------------------------------------------------------------
-- Commands: parse the arguments, call the tree, build the reply
-- (src/module/commands/policy.rs, reserve.rs, read.rs).
-- ---------------------------------------------------------------------------

local PRICE_BOOK = "quota:prices"
local CMD = {}
local COUNT_KEYWORD = set_of({ "COUNT" })

local SET_KEYWORDS = set_of({ "METRIC", "LIMIT", "WINDOW", "ANCHOR", "TZ", "MODE", "WARN", "ROLLOVER", "SERVICE", "MODEL",
    "LOW", "INFLIGHT" })
local REQUEST_KEYWORDS = set_of({ "PATH", "ALSO", "ID", "TTL", "SERVICE", "MODEL", "ALL", "UPTO", "DRYRUN", "BRIEF",
    "CHECK", "COST", "USAGE", "META" })

-- QUOTA.SET key path policy METRIC m LIMIT n [WINDOW w [ANCHOR a] [TZ zone] | WINDOW
-- rolling dur] [MODE m] [WARN p,...] [ROLLOVER cap] [SERVICE s [MODEL m]]
-- [LOW n] [INFLIGHT]
function CMD.cmd_set(ctx, args)
    local path = args:next_path("a path")
    local name = args:next_name("policy name")
    local spec = { mode = "strict", warn = DEFAULT_WARN, rollover = false }
    local window, duration, anchor, tz
    local seen = {}
    while not args:is_done() do
        local kw = args:next_keyword(SET_KEYWORDS)
        args:once(seen, kw)
        if kw == "METRIC" then
            spec.metric = args:next_metric()
        elseif kw == "LIMIT" then
            spec.limit = args:next_non_negative("LIMIT")
        elseif kw == "WINDOW" then
            window = args:next_str("a window after WINDOW")
            if string.lower(window) == "rolling" then
                duration = args:next_str("a duration after WINDOW rolling")
            end
        elseif kw == "ANCHOR" then
            anchor = args:next_str("ANCHOR")
        elseif kw == "TZ" then
            tz = args:next_str("a zone after TZ")
        elseif kw == "ROLLOVER" then
            spec.rollover = args:next_non_negative("ROLLOVER")
        elseif kw == "MODE" then
            spec.mode = parse_mode(args:next_str("a mode after MODE"))
        elseif kw == "WARN" then
            spec.warn = parse_warn(args:next_str("percentages after WARN"))
        elseif kw == "SERVICE" then
            spec.service = args:next_name("service")
        elseif kw == "MODEL" then
            spec.model = args:next_name("model")
        elseif kw == "LOW" then
            spec.low = args:next_non_negative("LOW")
        elseif kw == "INFLIGHT" then
            spec.inflight = true
        end
    end
    if not spec.metric then
        fail("ERR syntax: QUOTA.SET needs METRIC")
    end
    if not spec.limit then
        fail("ERR syntax: QUOTA.SET needs LIMIT")
    end
    -- No WINDOW is the none window, which refuses ANCHOR and TZ.
    spec.wenc = W.encode(W.parse(window or "none", anchor, duration, tz))
    OPS.set_policy(ctx, path, name, spec)
    return OK
end

-- QUOTA.ASSIGN key plan|NONE: the tree follows the book's plan of that
-- name (created when missing), or no plan (NONE in any case).
function CMD.cmd_assign(ctx, args)
    local name = args:next_str("a plan name or NONE")
    args:finish()
    if supper(name) == "NONE" then
        OPS.assign(ctx, false)
        return OK
    end
    PLAN.parse_name(name)
    local book = PLAN.book_get(PLAN.BOOK, name)
    if not book then
        fail("NOTFOUND no such plan '" .. clip(name) .. "'")
    end
    OPS.assign(ctx, name, book)
    return OK
end

-- QUOTA.ALLOW / QUOTA.DENY key path SERVICE s [MODEL m] [REMOVE]
-- Rust twin: rule_command (src/module/commands/access.rs)
function CMD.cmd_rule(ctx, args, list)
    local path = args:next_path("a path")
    local service, model, remove = nil, nil, false
    local seen = {}
    while not args:is_done() do
        -- (Any other word: "unexpected argument", as after a command's last.)
        local kw = keyword(args:peek(), CMD.RULE_KEYWORDS)
        if not kw then
            args:finish()
        end
        args.pos = args.pos + 1
        args:once(seen, kw)
        if kw == "SERVICE" then
            service = ACCESS.parse_part(args:next_str("service"), "service")
        elseif kw == "MODEL" then
            model = ACCESS.parse_part(args:next_str("model"), "model")
        else
            remove = true
        end
    end
    if model and not service then
        fail("ERR syntax: MODEL needs SERVICE")
    elseif not service then
        fail(sformat("ERR syntax: %s needs SERVICE s", args.command))
    end
    if remove then
        return ACCESS.remove(ctx, path, list, service, model)
    end
    return ACCESS.add(ctx, path, list, service, model)
end
CMD.RULE_KEYWORDS = set_of({ "SERVICE", "MODEL", "REMOVE" })

function CMD.cmd_allow(ctx, args)
    return CMD.cmd_rule(ctx, args, "allow")
end

function CMD.cmd_deny(ctx, args)
    return CMD.cmd_rule(ctx, args, "deny")
end

-- QUOTA.ACCESS key path [CLEAR]
-- Rust twin: access (src/module/commands/access.rs)
function CMD.cmd_access(ctx, args)
    local path = args:next_path("a path")
    local clear = false
    if not args:is_done() and supper(args:peek()) == "CLEAR" then
        args.pos = args.pos + 1
        clear = true
    end
    args:finish()
    if clear then
        return ACCESS.clear(ctx, path)
    end
    return ACCESS.view(ctx, path)
end

function CMD.cmd_unset(ctx, args)
    local path = args:next_path("a path")
    local name = args:next_name("policy name")
    args:finish()
    OPS.unset_policy(ctx, path, name)
    return OK
end

-- Rust twin: delpath (src/module/commands/policy.rs)
function CMD.cmd_delpath(ctx, args)
    local path = args:next_path("a path")
    args:finish()
    -- Like every write on a node, DELPATH syncs it first (what stays when
    -- live holds refuse the delete).
    PLAN.sync_paths(ctx, { path })
    return OPS.delete_path(ctx, path)
end

-- QUOTA.GRANT key path policy amount [ID id] [EXPIRES unix-ms | FOR
-- duration | PERIOD] [PRIORITY n] [NOTE text]
-- Rust twin: grant (src/module/commands/policy.rs)
function CMD.cmd_grant(ctx, args)
    local path = args:next_path("a path")
    local name = args:next_name("policy name")
    local amount = args:next_non_negative("an amount")
    if D.is_zero(amount) then
        fail("ERR invalid amount: a grant must be larger than 0")
    end
    local o = { pri = 50 }
    local seen, when = {}, false
    while not args:is_done() do
        local kw = args:next_keyword(CMD.GRANT_KEYWORDS)
        args:once(seen, kw)
        if kw == "EXPIRES" or kw == "FOR" or kw == "PERIOD" then
            if when then
                fail("ERR syntax: EXPIRES, FOR and PERIOD are exclusive: give one")
            end
            when = true
        end
        if kw == "ID" then
            o.id = args:next_name("grant id")
        elseif kw == "EXPIRES" then
            o.expires = args:next_u64("EXPIRES", 1, 9007199254740991)
        elseif kw == "FOR" then
            o.dur = W.parse_duration(args:next_str("a duration after FOR"))
        elseif kw == "PERIOD" then
            o.period = true
        elseif kw == "PRIORITY" then
            o.pri = args:next_u64("PRIORITY", 0, 100)
        else
            local note = args:next_str("a text after NOTE")
            if #note > G.NOTE_MAX then
                fail(sformat("ERR limit: NOTE is longer than %d bytes", G.NOTE_MAX))
            end
            if note == "" or sfind(note, "[%z\1-\31\127]") or not valid_utf8(note) then
                fail("ERR syntax: NOTE must be text without control characters")
            end
            o.note = note
        end
    end
    return OPS.grant(ctx, path, name, amount, o)
end
CMD.GRANT_KEYWORDS = set_of({ "ID", "EXPIRES", "FOR", "PERIOD", "PRIORITY", "NOTE" })

-- QUOTA.GRANTS key path policy [COUNT n]
-- Rust twin: grants (src/module/commands/read.rs)
function CMD.cmd_grants(ctx, args)
    local path = args:next_path("a path")
    local name = args:next_name("policy name")
    local count = G.MAX
    if not args:is_done() then
        args:next_keyword(COUNT_KEYWORD)
        count = args:next_u64("COUNT", 1, 10000)
    end
    args:finish()
    return OPS.grants(ctx, path, name, count)
end

-- QUOTA.REVOKE key path policy grant-id
-- Rust twin: revoke (src/module/commands/policy.rs)
function CMD.cmd_revoke(ctx, args)
    local path = args:next_path("a path")
    local name = args:next_name("policy name")
    local id = args:next_name("grant id")
    args:finish()
    return OPS.revoke(ctx, path, name, id)
end

function CMD.cmd_reset(ctx, args)
    local path = args:next_path("a path")
    local name = args:next_name("policy name")
    args:finish()
    return OPS.reset(ctx, path, name)
end

-- ----- requests ----------------------------------------------------------------

-- `COST metric amount [metric amount ...]` after the COST keyword.
-- At most MAX_ITEM_METRICS metrics, each once.
function CMD.parse_cost(args, non_negative)
    local cost, seen = {}, {}
    while not args:at_list_end() do
        if #cost == MAX_ITEM_METRICS then
            fail(sformat("ERR limit: at most %d metrics per item", MAX_ITEM_METRICS))
        end
        local metric = args:next_metric()
        local amount
        if non_negative then
            amount = args:next_non_negative("an amount")
        else
            amount = args:next_amount("an amount")
        end
        if seen[metric] then
            fail(sformat("ERR syntax: metric '%s' appears twice in one COST item", metric))
        end
        seen[metric] = true
        cost[#cost + 1] = { metric, amount }
    end
    if #cost == 0 then
        fail("ERR syntax: COST needs at least one metric and amount")
    end
    return cost
end

-- `name value [name value ...]` after a price key, up to the next keyword:
-- at most MAX_ITEM_METRICS names.
function CMD.usage_pairs(args)
    local pairs_ = {}
    while not args:at_list_end() do
        if #pairs_ == MAX_ITEM_METRICS then
            fail(sformat("ERR limit: at most %d usage names per item", MAX_ITEM_METRICS))
        end
        local name = args:next_str("a usage name")
        local value = args:next_str("a usage value")
        pairs_[#pairs_ + 1] = { name, value }
    end
    return pairs_
end

-- `USAGE service/model name value ...`, priced by the price book.
function CMD.parse_usage(args)
    local key = args:next_str("service/model after USAGE")
    local service, model = P.parse_key(key)
    local pairs_ = CMD.usage_pairs(args)
    return service, model, P.usage(PRICE_BOOK, key, pairs_)
end

-- The arguments of QUOTA.RESERVE and QUOTA.CHARGE: req = {set, id, ttl,
-- batch, brief, check, items} (and the words they were made of).
-- Rust twin: parse_request (src/module/commands/reserve.rs)
function CMD.parse_request(args, charge)
    local w, path, also, service, model, usage_keys = CMD.request_words(args, charge)
    local items = w.items
    if not path then
        fail(sformat("ERR syntax: %s needs PATH", args.command))
    end
    if model and not service then
        fail("ERR syntax: MODEL needs SERVICE")
    end
    if #items == 0 then
        fail(sformat("ERR syntax: %s needs a COST or USAGE item", args.command))
    end
    if charge and #items > 1 then
        fail("ERR syntax: QUOTA.CHARGE takes exactly one COST or USAGE item")
    end
    -- Without SERVICE, a request whose USAGE items all name one
    -- service/model is for that service and model.
    if not service and usage_keys[1] then
        local same = true
        for _, k in ipairs(usage_keys) do
            if k[1] ~= usage_keys[1][1] or k[2] ~= usage_keys[1][2] then
                same = false
            end
        end
        if same then
            service, model = usage_keys[1][1], usage_keys[1][2]
        end
    end
    local paths, seen_paths = { path }, { [path] = true }
    for _, p in ipairs(also) do
        if not seen_paths[p] then
            seen_paths[p] = true
            paths[#paths + 1] = p
        end
    end
    if #paths > MAX_CHARGE_PATHS then
        fail(sformat("ERR limit: at most %d paths per request (PATH and ALSO)", MAX_CHARGE_PATHS))
    end
    w.set = { paths = paths, service = service, model = model }
    return w
end

-- The keywords of a request and what follows each, as read (the loop of
-- parse_request): the request's own table (parse_request completes it),
-- its PATH, ALSO paths, SERVICE, MODEL and USAGE keys.
-- Rust twin: request_words (src/module/commands/reserve.rs)
function CMD.request_words(args, charge)
    local w = { set = false, id = nil, ttl = nil, batch = nil, brief = false, check = false, items = {}, meta = nil }
    local path, also, service, model, usage_keys = nil, {}, nil, nil, {}
    local items, seen = w.items, {}
    while not args:is_done() do
        local kw = args:next_keyword(REQUEST_KEYWORDS)
        local for_reserve_only = kw == "TTL" or kw == "ALL" or kw == "UPTO" or kw == "DRYRUN"
        if (charge and for_reserve_only) or (not charge and kw == "CHECK") then
            fail(sformat("ERR syntax: %s does not apply to %s", kw, args.command))
        end
        if kw == "COST" then
            items[#items + 1] = CMD.parse_cost(args, not charge)
        elseif kw == "USAGE" then
            local s, m, item = CMD.parse_usage(args)
            usage_keys[#usage_keys + 1] = { s, m }
            items[#items + 1] = item
        elseif kw == "ALSO" then
            also[#also + 1] = args:next_path("a path after ALSO")
            while not args:at_list_end() do
                also[#also + 1] = args:next_path("a path after ALSO")
            end
        elseif kw == "META" then
            args:once(seen, kw)
            w.meta = REC.meta_parse(args, REQUEST_KEYWORDS)
        elseif kw == "ALL" or kw == "UPTO" or kw == "DRYRUN" then
            args:once(seen, "ALL, UPTO or DRYRUN")
            w.batch = kw
        else
            args:once(seen, kw)
            if kw == "PATH" then
                path = args:next_path("a path after PATH")
            elseif kw == "ID" then
                w.id = args:next_name("id")
            elseif kw == "TTL" then
                w.ttl = args:next_u64("TTL", 1, MAX_TTL_MS)
            elseif kw == "SERVICE" then
                service = args:next_name("service")
            elseif kw == "MODEL" then
                model = args:next_name("model")
            elseif kw == "BRIEF" then
                w.brief = true
            elseif kw == "CHECK" then
                w.check = true
            end
        end
    end
    return w, path, also, service, model, usage_keys
end

-- Checks as replies show them: each map starts with its `kind` (stored
-- answers have no kind: a policy check's is derived here).
function CMD.checks_reply(checks)
    local out = {}
    for i, c in ipairs(checks) do
        local f
        if c.kind == "archived" then
            f = M("kind", "archived", "path", c.path, "pass", 0)
        elseif c.kind == "access" then
            f = M("kind", "access", "path", c.path, "rule", c.rule)
            if c.service then
                f[#f + 1] = "service"
                f[#f + 1] = c.service
            end
            if c.model then
                f[#f + 1] = "model"
                f[#f + 1] = c.model
            end
            f[#f + 1] = "pass"
            f[#f + 1] = 0
        else
            f = M("kind", "policy", "path", c.path, "policy", c.policy, "metric", c.metric, "mode", c.mode,
                "window", c.window, "limit", c.limit, "used", c.used, "held", c.held, "requested", c.requested,
                "remaining", c.remaining, "pass", flag(c.pass), "status", c.status)
            push_period(f, c.ps, c.pe)
        end
        out[i] = f
    end
    return out
end

function CMD.reserve_reply(o, brief)
    local f = M("allowed", flag(o.allowed), "id", o.id or false, "expires_at", o.expires, "items", o.items,
        "fits", o.fits, "reserved", o.reserved, "cost", costs_reply(o.cost), "held", costs_reply(o.held))
    if not (brief and o.allowed) then
        f[#f + 1] = "checks"
        f[#f + 1] = CMD.checks_reply(o.checks)
    end
    local rest = { "denied_by", o.denied, "message", o.message, "duplicate", flag(o.duplicate) }
    for i = 1, #rest do
        f[#f + 1] = rest[i]
    end
    return f
end

function CMD.cmd_reserve(ctx, args)
    local req = CMD.parse_request(args, false)
    req.ttl = req.ttl or SETTINGS.default_ttl
    req.batch = req.batch or "ALL"
    return CMD.reserve_reply(HOLDS.reserve(ctx, req), req.brief)
end

local SETTLE_KEYWORDS = set_of({ "ITEM", "COST", "USAGE" })
local ITEM_KEYWORD = set_of({ "ITEM" })

-- `ITEM i` and an optional `COST ...` or `USAGE ...` after a reservation id.
function CMD.parse_settle(args, with_cost)
    local item, cost = nil, nil
    local seen = {}
    local words = with_cost and SETTLE_KEYWORDS or ITEM_KEYWORD
    while not args:is_done() do
        local kw = args:next_keyword(words)
        if kw == "ITEM" then
            args:once(seen, kw)
            item = args:next_u64("ITEM", 0, 4294967295)
        else
            if cost then
                fail("ERR syntax: give the actual amount once, as COST or as USAGE")
            end
            if kw == "COST" then
                cost = CMD.parse_cost(args, true)
            else
                local _, _, c = CMD.parse_usage(args)
                cost = c
            end
        end
    end
    return item, cost
end

function CMD.cmd_commit(ctx, args)
    local id = args:next_name("reservation id")
    local item, cost = CMD.parse_settle(args, true)
    local o = HOLDS.commit(ctx, id, item, cost)
    return M("id", o.id, "charged", costs_reply(o.charged), "released", costs_reply(o.released),
        "overage", costs_reply(o.overage), "duplicate", flag(o.duplicate), "expired", flag(o.expired), "over", o.over,
        "drawn", o.drawn or {})
end

function CMD.cmd_release(ctx, args)
    local id = args:next_name("reservation id")
    local item = CMD.parse_settle(args, false)
    local o = HOLDS.release(ctx, id, item)
    return M("id", o.id, "released", costs_reply(o.released), "duplicate", flag(o.duplicate),
        "expired", flag(o.expired))
end

function CMD.cmd_extend(ctx, args)
    local id = args:next_name("reservation id")
    local ttl = args:next_u64("the TTL", 1, MAX_TTL_MS)
    args:finish()
    local o = HOLDS.extend(ctx, id, ttl)
    return M("id", o.id, "expires_at", o.expires)
end

function CMD.cmd_charge(ctx, args)
    local req = CMD.parse_request(args, true)
    req.cost = req.items[1]
    local o = HOLDS.charge(ctx, req)
    local f = M("allowed", flag(o.allowed), "charged", costs_reply(o.charged))
    if not (req.brief and o.allowed) then
        f[#f + 1] = "checks"
        f[#f + 1] = CMD.checks_reply(o.checks)
    end
    local rest = { "denied_by", o.denied, "message", o.message, "over", o.over, "duplicate", flag(o.duplicate),
        "drawn", o.drawn or {} }
    for i = 1, #rest do
        f[#f + 1] = rest[i]
    end
    return f
end

-- ----- labels and archive --------------------------------------------------------

-- QUOTA.LABEL key path [NOTE text] [TAGS t1,t2,...]
-- Rust twin: label (src/module/commands/labels.rs)
function CMD.cmd_label(ctx, args)
    local path = args:next_path("a path")
    local o, seen = {}, {}
    while not args:is_done() do
        local kw = args:next_keyword(CMD.LABEL_KEYWORDS)
        args:once(seen, kw)
        if kw == "NOTE" then
            o.note_given, o.note = true, REC.label_parse_note(args:next_str("a text after NOTE"))
        else
            o.tags = REC.label_parse_tags(args:next_str("a list after TAGS"))
        end
    end
    if not (seen.NOTE or seen.TAGS) then
        fail("ERR syntax: QUOTA.LABEL needs NOTE or TAGS")
    end
    return REC.label_set(ctx, path, o)
end
CMD.LABEL_KEYWORDS = set_of({ "NOTE", "TAGS" })

-- QUOTA.ARCHIVE key path / QUOTA.RESTORE key path
-- Rust twin: archive (src/module/commands/labels.rs)
function CMD.cmd_archive(ctx, args)
    local path = args:next_path("a path")
    args:finish()
    return REC.archive_set(ctx, path, true)
end

function CMD.cmd_restore(ctx, args)
    local path = args:next_path("a path")
    args:finish()
    return REC.archive_set(ctx, path, false)
end

-- ----- reading -------------------------------------------------------------------

function CMD.cmd_get(ctx, args)
    local path = args:next_path("a path")
    args:finish()
    return OPS.get_view(ctx, path)
end

local TREE_KEYWORDS = set_of({ "DEPTH", "COUNT", "FORMAT", "TAG", "AFTER" })

-- Whether items[from..to] have the shape `[path] [option value]...` of
-- QUOTA.TREE (an odd count starts with the path; values are not checked here).
function CMD.tree_shape(items, from, to)
    local i = from + (to - from + 1) % 2
    while i <= to do
        if not keyword(items[i], TREE_KEYWORDS) then
            return false
        end
        i = i + 2
    end
    return true
end

-- Whether the last argument of QUOTA.TREE is the ARCHIVED flag (it is then
-- consumed): a last ARCHIVED (any case) is the flag when it is the only
-- argument or when the arguments with it do not have the shape
-- `[path] [option value]...`; when they do, it is an option's value
-- (`TAG archived`). A second flag before it is an error.
-- Rust twin: tree_flag (src/module/commands/read.rs).
function CMD.tree_flag(args)
    local items, from, n = args.items, args.pos, #args.items
    if n < from or supper(items[n]) ~= "ARCHIVED" or (n > from and CMD.tree_shape(items, from, n)) then
        return false
    end
    if n > from and supper(items[n - 1]) == "ARCHIVED" and not CMD.tree_shape(items, from, n - 1) then
        fail(sformat("ERR syntax: ARCHIVED given twice in %s", args.command))
    end
    items[n] = nil
    return true
end

-- QUOTA.TREE key [path] [DEPTH n] [COUNT n] [FORMAT f] [TAG t] [AFTER name] [ARCHIVED]
-- Rust twin: tree_cmd (src/module/commands/read.rs).
function CMD.cmd_tree(ctx, args)
    local archived = CMD.tree_flag(args)
    local path = optional_path(args)
    local depth, count, json, tag, after = MAX_DEPTH_HARD, 1000, false, nil, nil
    local seen = {}
    while not args:is_done() do
        local kw = args:next_keyword(TREE_KEYWORDS)
        args:once(seen, kw)
        if kw == "TAG" then
            tag = REC.label_check_tag(args:next_str("a tag after TAG"))
        elseif kw == "AFTER" then
            after = args:next_segment("a name after AFTER", "name after AFTER")
        elseif kw == "DEPTH" then
            depth = args:next_u64("DEPTH", 0, MAX_DEPTH_HARD)
        elseif kw == "COUNT" then
            count = args:next_u64("COUNT", 1, 100000)
        else
            local format = string.upper(args:next_str("a format after FORMAT"))
            if format == "JSON" then
                json = true
            elseif format == "RESP" then
                json = false
            else
                fail("ERR syntax: FORMAT must be resp or json")
            end
        end
    end
    local reply = OPS.tree_view(ctx, path, depth, count, tag, archived, after)
    if json then
        return to_json(reply)
    end
    return reply
end

function CMD.cmd_holds(ctx, args)
    local path = optional_path(args)
    local count = 100
    if not args:is_done() then
        args:next_keyword(COUNT_KEYWORD)
        count = args:next_u64("COUNT", 1, 10000)
    end
    args:finish()
    return HOLDS.holds_view(ctx, path, count)
end

function CMD.cmd_history(ctx, args)
    local path = args:next_path("a path")
    local name = args:next_name("policy name")
    args:finish()
    return OPS.history(ctx, path, name)
end

local EVENTS_KEYWORDS = set_of({ "SINCE", "COUNT" })

-- QUOTA.EVENTS key [SINCE seq] [COUNT n]: events after seq, oldest first.
-- Rust twin: Tree::events_since (src/engine/tree.rs)
function CMD.cmd_events(ctx, args)
    local since, count = 0, 100
    local seen = {}
    while not args:is_done() do
        local kw = args:next_keyword(EVENTS_KEYWORDS)
        args:once(seen, kw)
        if kw == "SINCE" then
            since = args:next_u64("SINCE", 0, "18446744073709551615")
        else
            count = args:next_u64("COUNT", 1, 10000)
        end
    end
    -- The stored events, then those this read applied without storing
    -- (expiry), trimmed to the log's length as a write would.
    local stored = ctx.exists and redis.call("LLEN", ctx.vkey) or 0
    local pending = ctx.new_events
    local total = stored + #pending
    local keep = math.min(total, math.max(ctx.limits.events_len, 1))
    local first_seq = ctx.meta.ev - total
    local from = math.max(since + 1 - first_seq, total - keep)
    local out = {}
    local last = math.min(total - 1, from + count - 1)
    if from <= last and from < stored then
        local blobs = redis.call("LRANGE", ctx.vkey, from, math.min(last, stored - 1))
        for _, blob in ipairs(blobs) do
            out[#out + 1] = event_reply(munpack(blob))
        end
    end
    for i = math.max(from, stored), last do
        out[#out + 1] = event_reply(pending[i - stored + 1])
    end
    return out
end

-- QUOTA.USAGE (68_usage.lua).
CMD.cmd_usage = USAGE.cmd

-- ----- server-wide commands ------------------------------------------------------

-- FCALL quota_sweep 1 <index> [COUNT n]: releases what is due on up to n
-- trees (default 100, at most 1000) that the index names, at most
-- SWEEP_MAX_HOLDS holds released and finished ids forgotten in all, stores
-- it and publishes the events, as the next command on each tree would. `more` says that due trees are left.
local SWEEP_MAX_HOLDS = 1000

-- The arguments of quota_sweep, checked before anything is read: how many
-- due trees to take (COUNT), and whether the index key is one.
function CMD.sweep_count(index, args)
    local count = 100
    if #args > 0 then
        if #args ~= 2 or string.upper(args[1]) ~= "COUNT" then
            fail("ERR syntax: quota_sweep takes [COUNT n]")
        end
        count = new_args("QUOTA.SWEEP", { args[2] }):next_u64("COUNT", 1, 1000)
    end
    if index ~= DUE_INDEX and not sfind(index, "^quota:due{[@-O][@-O][@-O][@-O]}$") then
        fail("ERR syntax: quota_sweep takes the index key quota:due (quota:due{TAG} on a cluster) as its key")
    end
    if not due_index("") then
        fail("ERR quota_sweep needs INFO, to tell whether the server is a cluster node")
    end
    return count
end

function CMD.cmd_sweep(index, args)
    local count = CMD.sweep_count(index, args)
    local now = now_ms()
    local due = redis.call("ZRANGEBYSCORE", index, "-inf", now, "LIMIT", 0, count)
    local budget, trees, expired = SWEEP_MAX_HOLDS, 0, 0
    for _, key in ipairs(due) do
        if budget <= 0 then
            break
        end
        -- An entry for another slot's index, or for a key that is no tree
        -- (someone else wrote it), is dropped, not retried forever.
        local ok, n, forgot = pcall(function()
            if due_index(key) ~= index then
                return -1
            end
            local ctx = open_tree(key, true, true)
            if ctx.ledger then
                -- A wrong-typed ledger key: the expiries go unrecorded
                -- there (a key the caller may not use fails below).
                local fine, e = pcall(REC.ledger_check, ctx)
                if not fine then
                    if not (failure and sfind(failure, "^WRONGTYPE")) then
                        error(e, 0)
                    end
                    failure, ctx.ledger = nil, false
                end
            end
            local released, forgot = expire(ctx, budget)
            flush(ctx, true)
            if ctx.exists then
                index_due(key, ctx.ekey)
            else
                redis.call("ZREM", index, key)
            end
            return released, forgot
        end)
        failure = nil
        -- A tree the caller may not open is no reason to forget it: the
        -- account is wrong, so say so (and keep the entry).
        if not ok then
            -- Servers word it differently ("NOPERM ...", "No permissions to
            -- access a key" on Redis 7.2+ and Valkey).
            local text = string.lower(type(n) == "table" and tostring(n.err) or tostring(n))
            if sfind(text, "noperm", 1, true) or sfind(text, "can't access", 1, true)
                or sfind(text, "no permissions", 1, true) then
                fail(sformat("NOPERM quota_sweep may not open the tree '%s' named by %s: give the sweeping "
                    .. "account every tree's keys and channels (lua/README.md, sweeper)", key, index))
            end
        end
        if not ok or n < 0 then
            redis.call("ZREM", index, key)
        else
            trees = trees + 1
            expired = expired + n
            budget = budget - n - (forgot or 0)
        end
    end
    local left = redis.call("ZRANGEBYSCORE", index, "-inf", now, "LIMIT", 0, 1)
    return M("trees", trees, "expired", expired, "more", flag(#left > 0))
end

function CMD.cmd_debug(args)
    if not TEST_CLOCK then
        fail("ERR QUOTA.DEBUG is disabled: load the library with quota-load --test-clock (never in production)")
    end
    local bad = "ERR syntax: QUOTA.DEBUG CLOCK SET ms | ADVANCE ms | GET"
    local verb = args[2] and string.upper(args[2])
    if not args[1] or string.upper(args[1]) ~= "CLOCK" then
        fail(bad)
    end
    local function clock()
        local t = redis.call("GET", CLOCK_KEY)
        return t and tonumber(t) or now_ms()
    end
    if verb == "GET" and #args == 2 then
        return clock()
    end
    if #args ~= 3 or (verb ~= "SET" and verb ~= "ADVANCE") or not sfind(args[3], "^%d+$") or #args[3] > 16 then
        fail(bad)
    end
    -- The clock stops at 2^53 ms, the largest time a Lua number keeps
    -- exactly (a larger one reads as 2^53 itself, so the digits decide it),
    -- and both sides of the ADVANCE test are exact.
    local top = 9007199254740992
    local ms = tonumber(args[3])
    if ms > top or (ms == top and string.gsub(args[3], "^0+", "") ~= "9007199254740992") then
        fail(bad)
    end
    if verb == "ADVANCE" then
        if ms > top - clock() then
            fail(bad)
        end
        ms = clock() + ms
    end
    redis.call("SET", CLOCK_KEY, sformat("%.0f", ms))
    return ms
end
