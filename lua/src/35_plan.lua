
-- ---------------------------------------------------------------------------
-- 35_plan  PLAN: plans and the plan book (port of src/engine/plan.rs and
-- src/module/commands/plan.rs; SPEC §6).
--
-- A plan maps path patterns (segments may be "*", one segment) to policies.
-- The book is server-wide: a hash (its key is passed in, "quota:plans"),
-- field plan name -> the plan's canonical JSON, version included (what
-- QUOTA.PLAN GET prints). A tree that follows a plan keeps the JSON it last
-- saw in its "#plan" field (60_tree); its nodes get the plan's policies
-- (75_ops: PLAN's sync). Parsed plans are cached by their JSON text.
--
-- plan = { name, version, json (canonical), content (json without the
--          version), patterns = { {text, segs, depth, pols = { {name, spec} }} }
--          (most specific first within a depth) }
-- spec = QUOTA.SET's: { metric, limit, mode, wenc, warn, rollover, service, model }
--
-- This section comes before the ones whose checks it uses (paths, names,
-- modes, WARN, PolicySpec::validate): 50_policy hands them over in
-- PLAN.late when it has defined them.
-- ---------------------------------------------------------------------------

-- BOOK: the plan book's key (server-wide, like quota:prices).
local PLAN = { late = false, BOOK = "quota:plans" }

do
    local sfind, ssub, sformat, supper, smatch = string.find, string.sub, string.format, string.upper, string.match
    local tconcat, tsort = table.concat, table.sort
    local clip = D.clip
    local json_string, bytes_less = P.json_string, P.bytes_less

    local MAX_PLANS = 1000
    local MAX_PATTERNS = 64
    local MAX_PLAN_POLICIES = 16
    local MAX_PLAN_JSON_LEN = 65536
    local MAX_PLAN_NAME_LEN = 64
    local MAX_VERSION = 9007199254740991
    PLAN.MAX_PLANS = MAX_PLANS

    -- A plan name: 1-64 characters of A-Z a-z 0-9 _ - . : @, not "none".
    -- Rust twin: parse_name (src/engine/plan.rs)
    function PLAN.parse_name(text)
        if #text == 0 or #text > MAX_PLAN_NAME_LEN or sfind(text, "[^A-Za-z0-9_%-%.:@]") then
            fail(sformat("ERR syntax: invalid plan name '%s': use 1-%d characters of A-Z a-z 0-9 _ - . : @",
                clip(text), MAX_PLAN_NAME_LEN))
        end
        if string.lower(text) == "none" then
            fail("ERR syntax: 'none' is not a plan name: QUOTA.ASSIGN key NONE leaves plans")
        end
        return text
    end

    -- A pattern: a path (leading "/" optional, "/" alone the root) whose
    -- segments may be "*". Returns its canonical text and its segments.
    -- Rust twin: Pattern::parse (src/engine/plan.rs)
    function PLAN.parse_pattern(text)
        local body = text
        if ssub(body, 1, 1) == "/" then
            body = ssub(body, 2)
        end
        if body == "" then
            return "/", {}
        end
        local segs, start = {}, 1
        local hard = PLAN.late.max_depth
        while true do
            local slash = sfind(body, "/", start, true)
            local segment = ssub(body, start, (slash or (#body + 1)) - 1)
            segs[#segs + 1] = segment
            if #segs > hard then
                fail(sformat("ERR limit: pattern '%s' is deeper than %d segments", clip(text), hard))
            end
            -- (A segment is a path of depth 1: names::parse_path's rules;
            -- an empty one, "a//b" or "a/", is refused.)
            if segment ~= "*" and (segment == "" or PLAN.late.segment_error(segment)) then
                fail(sformat("ERR syntax: invalid pattern '%s': each segment is a path segment or *", clip(text)))
            end
            if not slash then
                break
            end
            start = slash + 1
        end
        return body, segs
    end

    -- Whether the segments `segs` of a pattern match the canonical path
    -- `path` ("" is the root).
    -- Rust twin: Pattern::matches (src/engine/plan.rs)
    function PLAN.matches(segs, path)
        if path == "" then
            return #segs == 0
        end
        local start, n = 1, 0
        while true do
            local slash = sfind(path, "/", start, true)
            n = n + 1
            local seg = segs[n]
            if seg == nil then
                return false
            end
            local part = ssub(path, start, (slash or (#path + 1)) - 1)
            if seg ~= "*" and seg ~= part then
                return false
            end
            if not slash then
                break
            end
            start = slash + 1
        end
        return n == #segs
    end

    -- Patterns of one depth, most specific first: segment by segment, a
    -- literal before "*", literals in byte order.
    local function more_specific(a, b)
        if #a.segs ~= #b.segs then
            return #a.segs < #b.segs
        end
        for i = 1, #a.segs do
            local x, y = a.segs[i], b.segs[i]
            if x ~= y then
                if x == "*" then
                    return false
                elseif y == "*" then
                    return true
                end
                return bytes_less(x, y)
            end
        end
        return false
    end

    -- The plan policies of the node at canonical `path`, each name once
    -- (the most specific pattern's): { {name, spec}, ... }, patterns most
    -- specific first, each pattern's policies by name.
    -- Rust twin: Plan::policies_for (src/engine/plan.rs)
    function PLAN.policies_for(plan, path)
        local memo = plan.for_path[path]
        if memo then
            return memo
        end
        local depth = PLAN.late.depth_of(path)
        local out, seen = {}, {}
        for _, pattern in ipairs(plan.patterns) do
            if #pattern.segs == depth and PLAN.matches(pattern.segs, path) then
                for _, pol in ipairs(pattern.pols) do
                    if not seen[pol[1]] then
                        seen[pol[1]] = true
                        out[#out + 1] = pol
                    end
                end
            end
        end
        if plan.for_path_n < 256 then
            plan.for_path[path] = out
            plan.for_path_n = plan.for_path_n + 1
        end
        return out
    end

    -- ----- Plan::from_json ---------------------------------------------------

    local function field_error(field, why)
        fail("ERR syntax: plan field '" .. P.no_nul(field) .. "': " .. why)
    end

    -- The value of a JSON number written as a plain integer literal (digits
    -- only: no sign, fraction or exponent) that fits a u64, or nil; as a
    -- Lua number (exact below 2^53, which is all the callers compare with).
    -- Rust twin: integer_literal (src/engine/plan.rs)
    local function integer_literal(value)
        local text = type(value) == "table" and value.num
        if not text or #text > 20 or not sfind(text, "^%d+$")
            or (#text == 20 and text > "18446744073709551615") then
            return nil
        end
        return tonumber(text)
    end

    local function integer_of(value, lo, hi)
        local n = integer_literal(value)
        if n == nil or n < lo or n > hi then
            return nil
        end
        return n
    end

    -- A decimal given as a string or a JSON number, read as QUOTA.SET reads
    -- LIMIT (the same function, the same errors).
    local function amount_of(value, field)
        local text
        if type(value) == "string" then
            text = value
        elseif type(value) == "table" and value.num then
            text = value.num
        else
            field_error(field, "must be a decimal string or number")
        end
        return D.parse_non_negative(text)
    end

    local POLICY_FIELDS = { metric = true, limit = true, window = true, anchor = true, tz = true, mode = true,
        warn = true, rollover = true, service = true, model = true, low = true, inflight = true }

    -- ASCII-only lowercase, whatever the locale (Rust's to_ascii_lowercase).
    local function ascii_lower(text)
        return (string.gsub(text, "[A-Z]", function(c)
            return string.char(string.byte(c) + 32)
        end))
    end

    -- One policy object of a pattern (`at` names it in errors:
    -- paths.<key>.<name>): its spec.
    -- Rust twin: policy_from_json (src/engine/plan.rs)
    local function policy_from_json(obj, at, trusted)
        local late = PLAN.late
        local keys = P.sorted_keys(obj)
        for _, k in ipairs(keys) do
            if not POLICY_FIELDS[k] then
                field_error(at .. "." .. clip(k), "unknown field")
            end
        end
        local map = obj.map
        local spec = { mode = "strict", warn = late.default_warn, rollover = false }
        local v = map.metric
        if v == nil then
            field_error(at .. ".metric", "missing")
        elseif type(v) ~= "string" then
            field_error(at .. ".metric", "must be a string")
        end
        -- (Read back from storage: metric names as the release that stored
        -- them took them.)
        spec.metric = trusted and late.parse_stored_metric(v) or late.parse_metric(v)
        v = map.limit
        if v == nil then
            field_error(at .. ".limit", "missing")
        end
        spec.limit = amount_of(v, at .. ".limit")
        local window, duration = "none", nil
        local bad_window = 'must be a string such as "month" or "rolling 24h"'
        v = map.window
        if v ~= nil then
            if type(v) ~= "string" then
                field_error(at .. ".window", bad_window)
            end
            local space = sfind(v, " ", 1, true)
            if space then
                window, duration = ssub(v, 1, space - 1), ssub(v, space + 1)
            else
                window = v
            end
        end
        -- (The anchor's JSON type follows the window: a string for week
        -- ("sunday") and year ("04-01"), an integer day 1-31 for month; any
        -- other window takes either and refuses it by name.)
        local unit = map.window ~= nil and ascii_lower(window) or nil
        local anchor, a = nil, map.anchor
        if a ~= nil then
            if type(a) == "string" and (unit == nil or unit == "week" or unit == "year") then
                anchor = a
            elseif unit == "week" then
                field_error(at .. ".anchor", 'must be a string such as "sunday"')
            elseif unit == "year" then
                field_error(at .. ".anchor", 'must be a string such as "04-01"')
            elseif type(a) == "string" and unit ~= "month" then
                anchor = a
            else
                local day = integer_of(a, 1, 31) or field_error(at .. ".anchor", "must be an integer from 1 to 31")
                anchor = sformat("%d", day)
            end
        end
        local tz = map.tz
        if tz ~= nil and type(tz) ~= "string" then
            field_error(at .. ".tz", 'must be a string such as "Africa/Lagos" or "+01:00"')
        end
        local w = W.parse(window, anchor, duration, tz)
        -- (W.parse reads a duration only for rolling: anything after the
        -- name of another window is refused, not dropped.)
        if duration and not W.is_rolling(w) then
            field_error(at .. ".window", bad_window)
        end
        spec.wenc = W.encode(w)
        v = map.mode
        if v ~= nil then
            if type(v) ~= "string" then
                field_error(at .. ".mode", "must be a string")
            end
            spec.mode = late.parse_mode(v)
        end
        v = map.warn
        if v ~= nil then
            local bad = "must be an array of percentages such as [80, 90]"
            if type(v) ~= "table" or v.kind ~= "array" then
                field_error(at .. ".warn", bad)
            end
            local parts = {}
            for i, item in ipairs(v.items) do
                parts[i] = integer_literal(item) and item.num or field_error(at .. ".warn", bad)
            end
            spec.warn = late.parse_warn(tconcat(parts, ","))
        end
        if map.rollover ~= nil then
            spec.rollover = amount_of(map.rollover, at .. ".rollover")
        end
        for _, f in ipairs({ "service", "model" }) do
            v = map[f]
            if v ~= nil then
                if type(v) ~= "string" then
                    field_error(at .. "." .. f, "must be a string")
                end
                spec[f] = late.parse_name(v, f)
            end
        end
        if map.low ~= nil then
            spec.low = amount_of(map.low, at .. ".low")
        end
        v = map.inflight
        if v ~= nil then
            if type(v) ~= "table" or (v.kind ~= "true" and v.kind ~= "false") then
                field_error(at .. ".inflight", "must be true or false")
            end
            spec.inflight = v.kind == "true" or nil
        end
        late.validate_spec(spec)
        return spec
    end

    -- A policy's fields in canonical JSON: metric, limit, window, anchor
    -- as replies show it (a month's day always, a week's day name or a
    -- year's MM-DD when not the default), tz (when not UTC), mode, warn,
    -- rollover, service, model, low, inflight (when set).
    -- Rust twin: policy_to_json (src/engine/plan.rs)
    local function policy_to_json(spec)
        local w = W.decode(spec.wenc)
        local warn = {}
        for i, pct in ipairs(spec.warn) do
            warn[i] = sformat("%d", pct)
        end
        local out = { '{"metric":', json_string(spec.metric), ',"limit":', json_string(D.fmt(spec.limit)),
            ',"window":', json_string(W.label(w)) }
        local anchor = W.anchor_shown(w)
        if type(anchor) == "string" then
            out[#out + 1] = ',"anchor":' .. json_string(anchor)
        elseif anchor then
            out[#out + 1] = ',"anchor":' .. sformat("%d", anchor)
        end
        local tz = W.tz_name(w)
        if tz then
            out[#out + 1] = ',"tz":' .. json_string(tz)
        end
        out[#out + 1] = ',"mode":' .. json_string(spec.mode) .. ',"warn":[' .. tconcat(warn, ",") .. "]"
        if spec.rollover then
            out[#out + 1] = ',"rollover":' .. json_string(D.fmt(spec.rollover))
        end
        if spec.service then
            out[#out + 1] = ',"service":' .. json_string(spec.service)
        end
        if spec.model then
            out[#out + 1] = ',"model":' .. json_string(spec.model)
        end
        if spec.low then
            out[#out + 1] = ',"low":' .. json_string(D.fmt(spec.low))
        end
        if spec.inflight then
            out[#out + 1] = ',"inflight":true'
        end
        out[#out + 1] = "}"
        return tconcat(out)
    end
    -- (A policy's spec as JSON: a plan policy whose JSON is the plan's is
    -- in sync; see PLAN.sync_node.)
    PLAN.spec_json = policy_to_json

    -- The canonical JSON: patterns by text in byte order, policies by name;
    -- and the content (without the version, PLAN.content).
    -- Rust twin: Plan::render_json (src/engine/plan.rs)
    function PLAN.to_json(plan)
        local by_text = {}
        for i, p in ipairs(plan.patterns) do
            by_text[i] = p
        end
        tsort(by_text, function(a, b)
            return bytes_less(a.text, b.text)
        end)
        local parts = {}
        for i, p in ipairs(by_text) do
            local pols = {}
            for j, pol in ipairs(p.pols) do
                pols[j] = json_string(pol[1]) .. ":" .. pol[3]
            end
            parts[i] = json_string(p.text) .. ":{" .. tconcat(pols, ",") .. "}"
        end
        local content = '{"paths":{' .. tconcat(parts, ",") .. "}"
        return content .. ',"version":' .. sformat("%.0f", plan.version) .. "}", content .. "}"
    end

    -- The canonical JSON without the version: two plans have the same
    -- content when these are equal.
    -- Rust twin: Plan::content_json (src/engine/plan.rs)
    function PLAN.content(plan)
        return plan.content
    end

    -- The limits on the patterns of one depth: at most MAX_PLAN_POLICIES
    -- distinct names together.
    -- Rust twin: check_depth_names (src/engine/plan.rs)
    local function check_depth_names(patterns)
        local names, counts = {}, {}
        for _, p in ipairs(patterns) do
            local d = #p.segs
            names[d] = names[d] or {}
            for _, pol in ipairs(p.pols) do
                if not names[d][pol[1]] then
                    names[d][pol[1]] = true
                    counts[d] = (counts[d] or 0) + 1
                end
            end
        end
        local depths = {}
        for d in pairs(counts) do
            depths[#depths + 1] = d
        end
        tsort(depths)
        for _, d in ipairs(depths) do
            if counts[d] > MAX_PLAN_POLICIES then
                fail(sformat("ERR limit: the patterns of depth %d give %d policy names; a node gets at most %d "
                    .. "from a plan", d, counts[d], MAX_PLAN_POLICIES))
            end
        end
    end

    -- A plan from its JSON (the checks and texts of plans.md, in order):
    -- the plan, with the version the JSON names (nil when none).
    -- trusted: our own canonical JSON read back from the book or a tree.
    -- Rust twin: Plan::from_json (src/engine/plan.rs)
    function PLAN.from_json(name, text, trusted)
        if not trusted and #text > MAX_PLAN_JSON_LEN then
            fail("ERR limit: a plan is at most " .. MAX_PLAN_JSON_LEN .. " bytes of JSON")
        end
        local object = P.json_parse(text, "plan")
        if type(object) ~= "table" or not object.obj then
            fail("ERR syntax: a plan must be a JSON object")
        end
        for _, k in ipairs(P.sorted_keys(object)) do
            if k ~= "paths" and k ~= "version" then
                field_error(clip(k), "unknown field (a plan has paths and version)")
            end
        end
        local version = nil
        if object.map.version ~= nil then
            version = integer_of(object.map.version, 1, MAX_VERSION)
                or field_error("version", "must be an integer from 1 to 9007199254740991")
        end
        local paths = object.map.paths
        if paths == nil then
            field_error("paths", "missing")
        elseif type(paths) ~= "table" or not paths.obj then
            field_error("paths", "must be an object of path patterns")
        end
        local keys = P.sorted_keys(paths)
        if #keys > MAX_PATTERNS then
            fail(sformat("ERR limit: a plan has at most %d patterns", MAX_PATTERNS))
        end
        local patterns, seen = {}, {}
        for _, key in ipairs(keys) do
            local canonical, segs = PLAN.parse_pattern(key)
            local at = "paths." .. clip(key)
            local value = paths.map[key]
            if type(value) ~= "table" or not value.obj then
                field_error(at, "must be an object of policies")
            end
            local names = P.sorted_keys(value)
            if #names > MAX_PLAN_POLICIES then
                fail(sformat("ERR limit: pattern '%s' has more than %d policies", clip(key), MAX_PLAN_POLICIES))
            end
            local pols = {}
            for _, pname in ipairs(names) do
                PLAN.late.parse_name(pname, "policy name")
                local pv = value.map[pname]
                if type(pv) ~= "table" or not pv.obj then
                    field_error(at .. "." .. clip(pname), "must be an object")
                end
                local spec = policy_from_json(pv, at .. "." .. clip(pname), trusted)
                pols[#pols + 1] = { pname, spec, policy_to_json(spec) }
            end
            if seen[canonical] then
                fail(sformat("ERR syntax: pattern '%s' appears twice", canonical))
            end
            seen[canonical] = true
            patterns[#patterns + 1] = { text = canonical, segs = segs, pols = pols }
        end
        tsort(patterns, more_specific)
        check_depth_names(patterns)
        local plan = { name = name, version = version or 0, patterns = patterns, for_path = {}, for_path_n = 0 }
        plan.json, plan.content = PLAN.to_json(plan)
        return plan, version
    end

    -- Parsed plans by their canonical JSON (a tree reads its plan on every
    -- command): at most 64, all dropped when full. With each plan's memo of
    -- at most 256 paths, this Lua memory (outside maxmemory) stays below
    -- about 20 MB whatever the plans and paths.
    local cache, cache_n = {}, 0

    -- The plan of canonical JSON `json` (from the book or a tree's "#plan").
    function PLAN.load(name, json)
        local plan = cache[json]
        if not plan or plan.name ~= name then
            plan = PLAN.from_json(name, json, true)
            if cache_n >= 64 then
                cache, cache_n = {}, 0
            end
            cache[json] = plan
            cache_n = cache_n + 1
        end
        return plan
    end

    -- The version a new content for `name` gets: `asked` when given (above
    -- the current), else the current plus one, or 1 for a new plan.
    -- Rust twin: PlanBook::next_version (src/engine/plan.rs)
    function PLAN.next_version(name, current, asked)
        if asked then
            if asked <= current then
                fail(sformat("ERR plan version %.0f is not above the current %.0f: leave version out to take the next",
                    asked, current))
            end
            return asked
        end
        if current >= MAX_VERSION then
            fail(sformat("ERR limit: plan '%s' is at version %.0f, the highest: delete it and set it again",
                name, current))
        end
        return current + 1
    end

    -- ----- QUOTA.PLAN ------------------------------------------------------------

    -- QUOTA.PLAN HELP, as the module gives it.
    PLAN.HELP = {
        "QUOTA.PLAN <subcommand> [<arg> ...]. Subcommands are:",
        "SET <name> <json>",
        "    Sets plan name; replies with its version.",
        "GET <name>",
        "    Plan name as JSON, its version included.",
        "DEL <name>",
        "    Removes plan name: 1 if there was one, else 0.",
        "LIST",
        "    Every plan name.",
        "HELP",
        "    This text.",
    }

    local function arity(what)
        P.arity("quota.plan", what)
    end

    local function finish(args, i)
        P.finish(args, i, "QUOTA.PLAN")
    end

    -- The book's plan of `name` (its JSON), or false. An account that may
    -- not read the book (its key: ACL %R~quota:plans) gets a refusal naming
    -- it, not Redis's "can't access at least one of the keys mentioned in
    -- the command arguments", which names no key the caller gave.
    -- No Rust twin: the module's book is no key.
    function PLAN.book_get(book_key, name)
        local reply = redis.pcall("HGET", book_key, name)
        if type(reply) == "table" and reply.err then
            local text = string.lower(reply.err)
            if sfind(text, "noperm", 1, true) or sfind(text, "can't access", 1, true)
                or sfind(text, "no permissions", 1, true) then
                fail(sformat("NOPERM this account may not read the plan book '%s': give it %%R~%s "
                    .. "(lua/README.md, access control)", book_key, book_key))
            end
            error(reply)
        end
        return reply
    end

    -- QUOTA.PLAN SET: the plan (PLAN.from_json), then, for a new name, the
    -- book's bound; the same content naming no other version changes
    -- nothing; else it is stored under PLAN.next_version. Returns the
    -- version after the call.
    -- Rust twin: PlanBook::set_json (src/engine/plan.rs)
    function PLAN.set(book_key, name, json)
        local plan, asked = PLAN.from_json(name, json, false)
        local stored = PLAN.book_get(book_key, name)
        local current = 0
        if stored then
            local old = PLAN.load(name, stored)
            current = old.version
            if old.content == plan.content and (asked == nil or asked == current) then
                return current
            end
        elseif redis.call("HLEN", book_key) >= MAX_PLANS then
            fail(sformat("ERR limit: the plan book already has %d plans", MAX_PLANS))
        end
        plan.version = PLAN.next_version(plan.name, current, asked)
        plan.json, plan.content = PLAN.to_json(plan)
        -- The bound holds for what the book stores (every default written
        -- out), so every stored plan loads again (Rust twin: check_stored_len).
        if #plan.json > MAX_PLAN_JSON_LEN then
            fail(sformat("ERR limit: a plan is at most %d bytes of JSON, written out with every default as QUOTA.PLAN GET shows it (this one is %d)",
                MAX_PLAN_JSON_LEN, #plan.json))
        end
        redis.call("HSET", book_key, name, plan.json)
        return plan.version
    end

    -- Rust twin: set (src/module/commands/plan.rs)
    local function plan_set(book_key, args)
        local name = args[2]
        if name == nil then
            arity("a plan name")
        end
        PLAN.parse_name(name)
        local json = args[3]
        if json == nil then
            arity("the plan as JSON")
        end
        finish(args, 4)
        return PLAN.set(book_key, name, json)
    end

    -- QUOTA.PLAN SET|GET|DEL|LIST|HELP (args after the function name).
    -- Rust twin: plan (src/module/commands/plan.rs), get (src/module/commands/plan.rs), del (src/module/commands/plan.rs)
    function PLAN.cmd_plan(book_key, args)
        if #args < 1 then
            fail("ERR wrong number of arguments for 'QUOTA.PLAN' command") -- Redis's own text
        end
        local verb = supper(args[1])
        if verb == "SET" then
            return plan_set(book_key, args)
        elseif verb == "GET" or verb == "DEL" then
            local name = args[2]
            if name == nil then
                arity("a plan name")
            end
            finish(args, 3)
            PLAN.parse_name(name)
            if verb == "DEL" then
                return redis.call("HDEL", book_key, name)
            end
            local text = PLAN.book_get(book_key, name)
            if not text then
                fail("NOTFOUND no such plan '" .. clip(name) .. "'")
            end
            return text
        elseif verb == "HELP" then
            finish(args, 2)
            return PLAN.HELP
        elseif verb == "LIST" then
            finish(args, 2)
            local names = redis.call("HKEYS", book_key)
            tsort(names, bytes_less)
            return names
        end
        local quoted = string.gsub(ssub(smatch(args[1], "^[^%z]*"), 1, 128), "[\r\n]", " ")
        fail_as_redis("ERR unknown subcommand '" .. quoted .. "'. Try QUOTA.PLAN HELP.")
    end
end
