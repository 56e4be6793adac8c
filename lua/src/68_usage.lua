-- ---------------------------------------------------------------------------
-- Usage over time (SPEC §9; Rust: src/engine/usage.rs): what each node
-- spent, per metric and series, in hourly and daily buckets, and
-- QUOTA.USAGE, which reads them.
--
-- Every change of a node's spent (a commit, a late commit, a charge, also
-- negative and disallowed ones) adds the same change, per metric, to the
-- node's current hour bucket (floor(ms / 3600000)) and day bucket
-- (floor(ms / 86400000)) in the request's series: its (service, model),
-- "(no service)" without SERVICE. A node names at most usage_series series
-- ("(no service)" not counted); a new one takes a free slot, else its spend
-- goes to "(other series)". A slot none of whose buckets is still kept is
-- freed when a new series comes (its buckets are gone anyway).
--
-- Stored in the companion hash {tag}quota:K:usage (1.6.0; no layout change:
-- a library before it never reads it and records nothing there):
--   "/<path>"        the node's series: {slots, hours, days}. slots is a
--                    list of {service, model or false, hour of its last
--                    write} (false: a free slot); hours and days are the
--                    bucket numbers the node has fields for, ascending
--   "h<n>/<path>"    hour bucket n: series, metric, amount, series, ...
--                    (series: the slot's position; 0 is "(no service)",
--                    -1 "(other series)"; amounts as D.stored keeps them)
--   "d<n>/<path>"    day bucket n, the same
-- A write reads (one HMGET) and writes (one HSET) the three fields of each
-- node it changes. When a node's first write of a new hour or day comes, it
-- deletes its buckets that retention no longer keeps (one HDEL). Reads
-- filter by retention at their own time, so replies do not depend on
-- when old buckets were deleted (lazily exact, like windows).
-- (A table, not locals: build() is near Lua's 200 locals.)
-- ---------------------------------------------------------------------------

-- (USAGE is declared in 60_tree.lua, where spent changes and flush writes.)
USAGE.NO_SERVICE, USAGE.OTHER = "(no service)", "(other series)"
-- The series of a cell: "(no service)", "(other series)", else a slot.
USAGE.NO_SERVICE_SLOT, USAGE.OTHER_SLOT = 0, -1
-- Times are at most 2^53 (SINCE, UNTIL).
USAGE.MAX_TIME = 9007199254740992

do
    local floor, max, min = math.floor, math.max, math.min
    local HOUR_MS, DAY_MS = W.HOUR_MS, W.DAY_MS
    local MAX_TOTAL = D.MAX_TOTAL
    local NEG_MAX_TOTAL = D.neg(MAX_TOTAL)

    -- The start (ms) of the oldest bucket of `size` ms that retention keeps
    -- at `now` when `kept` are kept, never below 0; with `kept` 0 the start
    -- of the next bucket (nothing is kept).
    -- Rust twin: usage_retention_start (src/engine/usage.rs)
    local function usage_retention_start(size, kept, now)
        local start = floor(now / size) * size
        if kept == 0 then
            return start + size
        end
        return max(start - (kept - 1) * size, 0)
    end
    USAGE.retention_start = usage_retention_start

    -- The horizon for freeing series slots: the older retention start of
    -- the granularities that are on. A slot last written before it has no
    -- bucket left.
    -- Rust twin: usage_horizon (src/engine/usage.rs)
    local function usage_horizon(limits, now)
        local h, d = limits.usage_hours, limits.usage_days
        if h > 0 and d > 0 then
            return min(usage_retention_start(HOUR_MS, h, now), usage_retention_start(DAY_MS, d, now))
        elseif h > 0 then
            return usage_retention_start(HOUR_MS, h, now)
        end
        return usage_retention_start(DAY_MS, d, now)
    end

    -- A cell plus a change, kept within ±10^18 (a series' amount in a bucket
    -- passes spent's bound only through alternating charges of other
    -- series).
    -- Rust twin: usage_add (src/engine/usage.rs)
    local function usage_add(cell, delta)
        local sum = D.plus(cell, delta)
        if D.cmp(sum, MAX_TOTAL) > 0 then
            return MAX_TOTAL
        elseif D.cmp(sum, NEG_MAX_TOTAL) < 0 then
            return NEG_MAX_TOTAL
        end
        return sum
    end

    -- Adds `change` to the cell (series, metric) of a bucket's flat list.
    local function cell_add(cells, series, metric, change)
        for i = 1, #cells, 3 do
            if cells[i] == series and cells[i + 1] == metric then
                cells[i + 2] = D.stored(usage_add(D.loaded(cells[i + 2]), change))
                return
            end
        end
        local n = #cells
        cells[n + 1], cells[n + 2], cells[n + 3] = series, metric, D.stored(usage_add(D.ZERO, change))
    end

    -- The series of a write of (service, model) at `now` in a node's slots:
    -- its slot (its last write updated), a new one (after freeing those last
    -- written before the horizon) while fewer than usage_series are in use,
    -- else "(other series)". Returns it and whether the slots changed.
    -- Rust twin: usage_series_slot (src/engine/usage.rs)
    local function usage_series_slot(slots, service, model, now, limits)
        if not service then
            return USAGE.NO_SERVICE_SLOT, false
        end
        local n = #slots
        for i = 1, n do
            local s = slots[i]
            if s and s[1] == service and s[2] == model then
                if s[3] < now then
                    s[3] = now
                    return i, true
                end
                return i, false
            end
        end
        local horizon, used, free, changed = usage_horizon(limits, now), 0, nil, false
        for i = 1, n do
            local s = slots[i]
            if s and s[3] < horizon then
                slots[i], s, changed = false, false, true
            end
            if s then
                used = used + 1
            elseif not free then
                free = i
            end
        end
        if used >= limits.usage_series then
            return USAGE.OTHER_SLOT, changed
        end
        slots[free or n + 1] = { service, model, now }
        return free or n + 1, true
    end

    -- Drops from `list` (ascending bucket numbers) those before `keep`,
    -- naming their fields in `hdel`.
    local function trim(list, keep, prefix, path, hdel)
        local cut = 0
        while list[cut + 1] and list[cut + 1] < keep do
            cut = cut + 1
            hdel[#hdel + 1] = prefix .. sformat("%.0f", list[cut]) .. "/" .. path
        end
        if cut > 0 then
            for i = 1, #list do
                list[i] = list[i + cut]
            end
        end
    end

    -- Places bucket `b` in `list` (ascending); returns whether it is new.
    local function add_bucket(list, b)
        local n = #list
        if list[n] == b then
            return false
        end
        for i = n, 1, -1 do
            if list[i] == b then
                return false
            elseif list[i] < b then
                table.insert(list, i + 1, b)
                return true
            end
        end
        table.insert(list, 1, b)
        return true
    end

    -- Notes that `path`'s spent of `metric` changed by `change` (not zero)
    -- in the series of `set`; USAGE.flush records it.
    function USAGE.note(ctx, path, set, metric, change)
        local u = ctx.usage
        if not u then
            u = { paths = {}, notes = {} }
            ctx.usage = u
        end
        local list = u.notes[path]
        if not list then
            list = {}
            u.notes[path] = list
            u.paths[#u.paths + 1] = path
        end
        local n = #list
        list[n + 1], list[n + 2], list[n + 3], list[n + 4] = set.service or false, set.model or false, metric, change
    end

    -- Records what the context noted: per node, its series and its current
    -- hour and day bucket (one HMGET and one HSET for all nodes); a node's
    -- first write in a new hour or day deletes the buckets retention
    -- dropped (one HDEL).
    -- Rust twin: usage_record (src/engine/usage.rs)
    local function usage_record(ctx)
        local u = ctx.usage
        ctx.usage = false
        local limits, now = ctx.limits, ctx.now
        local hours, days = limits.usage_hours > 0, limits.usage_days > 0
        local hn, dn = floor(now / HOUR_MS), floor(now / DAY_MS)
        local keep_h = hours and floor(usage_retention_start(HOUR_MS, limits.usage_hours, now) / HOUR_MS) or math.huge
        local keep_d = days and floor(usage_retention_start(DAY_MS, limits.usage_days, now) / DAY_MS) or math.huge
        local hsuf, dsuf = sformat("h%.0f/", hn), sformat("d%.0f/", dn)
        local fields = {}
        for i, path in ipairs(u.paths) do
            fields[3 * i - 2], fields[3 * i - 1], fields[3 * i] = "/" .. path, hsuf .. path, dsuf .. path
        end
        local ukey = ctx.ukey
        local blobs = ctx.exists and call_chunked("HMGET", ukey, fields) or {}
        local hset, hdel = {}, {}
        for i, path in ipairs(u.paths) do
            local blob, hb, db = blobs[3 * i - 2], blobs[3 * i - 1], blobs[3 * i]
            local state = blob and munpack(blob) or { {}, {}, {} }
            local slots = state[1]
            local hcells, dcells = hb and munpack(hb) or {}, db and munpack(db) or {}
            local notes, changed = u.notes[path], false
            local at_service, at_model, series = nil, nil, nil
            for k = 1, #notes, 4 do
                local service, model, metric, change = notes[k], notes[k + 1], notes[k + 2], notes[k + 3]
                if series == nil or service ~= at_service or model ~= at_model then
                    local moved
                    series, moved = usage_series_slot(slots, service, model, now, limits)
                    at_service, at_model, changed = service, model, changed or moved
                end
                if hours then
                    cell_add(hcells, series, metric, change)
                end
                if days then
                    cell_add(dcells, series, metric, change)
                end
            end
            local new_h = hours and add_bucket(state[2], hn)
            local new_d = days and add_bucket(state[3], dn)
            if new_h or new_d then
                -- (A granularity turned off drops all its buckets.)
                trim(state[2], keep_h, "h", path, hdel)
                trim(state[3], keep_d, "d", path, hdel)
                changed = true
            end
            local n = #hset
            if changed then
                hset[n + 1], hset[n + 2] = fields[3 * i - 2], mpack(state)
                n = n + 2
            end
            if hours then
                hset[n + 1], hset[n + 2] = fields[3 * i - 1], mpack(hcells)
                n = n + 2
            end
            if days then
                hset[n + 1], hset[n + 2] = fields[3 * i], mpack(dcells)
            end
        end
        call_chunked("HSET", ukey, hset)
        call_chunked("HDEL", ukey, hdel)
    end
    USAGE.flush = usage_record

    -- Deletes the usage of the nodes `deleted` (a set of paths: DELPATH):
    -- their series and every bucket they have.
    function USAGE.drop(ctx, deleted)
        local paths, fields = {}, {}
        for path in pairs(deleted) do
            paths[#paths + 1] = path
            fields[#fields + 1] = "/" .. path
        end
        local blobs = call_chunked("HMGET", ctx.ukey, fields)
        local hdel = {}
        for i, path in ipairs(paths) do
            local blob = blobs[i]
            if blob then
                hdel[#hdel + 1] = fields[i]
                local state = munpack(blob)
                trim(state[2], math.huge, "h", path, hdel)
                trim(state[3], math.huge, "d", path, hdel)
            end
        end
        call_chunked("HDEL", ctx.ukey, hdel)
    end

    -- ----- QUOTA.USAGE ---------------------------------------------------------

    local KEYWORDS = set_of({ "SINCE", "UNTIL", "BY", "METRIC", "SERVICE", "MODEL", "GROUP" })
    local BY = set_of({ "HOUR", "DAY" })
    local GROUPS = set_of({ "SERVICE", "MODEL", "CHILD", "TAG" })

    -- The options of QUOTA.USAGE, in any order, each at most once.
    -- Rust twin: parse_query (src/module/commands/usage.rs)
    local function usage_parse(args)
        local q = { by = "day" }
        local seen = {}
        while not args:is_done() do
            local kw = keyword(args:peek(), KEYWORDS)
            if not kw then
                args:finish()
            end
            args.pos = args.pos + 1
            args:once(seen, kw)
            if kw == "SINCE" then
                q.since = args:next_u64("SINCE", 0, USAGE.MAX_TIME)
            elseif kw == "UNTIL" then
                q["until"] = args:next_u64("UNTIL", 0, USAGE.MAX_TIME)
            elseif kw == "BY" then
                local by = keyword(args:next_str("hour or day after BY"), BY)
                if not by then
                    fail("ERR syntax: BY must be hour or day")
                end
                q.by = string.lower(by)
            elseif kw == "METRIC" then
                q.metric = args:next_metric()
            elseif kw == "SERVICE" then
                q.service = args:next_name("service")
            elseif kw == "MODEL" then
                q.model = args:next_name("model")
            else
                local group = keyword(args:next_str("service, model, child or tag after GROUP"), GROUPS)
                if not group then
                    fail("ERR syntax: GROUP must be service, model, child or tag")
                end
                q.group = string.lower(group)
            end
        end
        if q.model and not q.service then
            fail("ERR syntax: MODEL needs SERVICE")
        end
        return q
    end

    -- The buckets a query lists: bucket numbers first..last (none when
    -- first > last), and the reply's since and until.
    -- Rust twin: usage_span (src/engine/usage.rs)
    local function usage_span(q, now, limits)
        local size, kept = DAY_MS, limits.usage_days
        if q.by == "hour" then
            size, kept = HOUR_MS, limits.usage_hours
        end
        local until_ = q["until"] or now
        if q.since and q.since > until_ then
            fail("ERR syntax: SINCE is after UNTIL")
        end
        local since = usage_retention_start(size, kept, now)
        if q.since then
            since = max(floor(q.since / size) * size, since)
        end
        return since / size, floor(min(until_, now) / size), since, until_, size
    end

    -- Whether a cell's series passes the query's SERVICE/MODEL.
    -- Rust twin: usage_series_matches (src/engine/usage.rs)
    local function usage_series_matches(slots, series, q)
        if not q.service then
            return true
        end
        local s = series > 0 and slots[series]
        return s and s[1] == q.service and (not q.model or s[2] == q.model) or false
    end

    -- The name of a cell's series under GROUP service or model.
    -- Rust twin: usage_group_name (src/engine/usage.rs)
    local function usage_group_name(slots, series, group)
        if series == USAGE.NO_SERVICE_SLOT then
            return USAGE.NO_SERVICE
        end
        local s = series > 0 and slots[series]
        if not s then
            return USAGE.OTHER
        end
        if group == "model" and s[2] then
            return s[1] .. "/" .. s[2]
        end
        return s[1]
    end

    -- The tags a node carries (sorted), or none.
    -- Rust twin: node_tags (src/engine/usage.rs)
    local function usage_node_tags(node)
        local lb = node and node.lb
        return lb and lb.tags or {}
    end

    -- The usage of `path` under a query in buckets first..last of the
    -- query's granularity: the node's slots and, per bucket listed, its
    -- cells (false when it has none).
    local function read_cells(ctx, path, q, first, last)
        if not ctx.exists then
            return {}, {}
        end
        local g = q.by == "hour" and "h" or "d"
        local fields = { "/" .. path }
        for b = first, last do
            fields[#fields + 1] = sformat("%s%.0f/%s", g, b, path)
        end
        local blobs = call_chunked("HMGET", ctx.ukey, fields)
        if not blobs[1] then
            return {}, {}
        end
        local cells = {}
        for b = first, last do
            local blob = blobs[b - first + 2]
            cells[b - first + 1] = blob and munpack(blob) or false
        end
        return munpack(blobs[1])[1], cells
    end

    -- Adds a bucket's cells that the query sees into `sums` (metric → D)
    -- and, with `groups`, into groups[name] by series name.
    local function add_cells(cells, slots, q, sums, groups)
        for i = 1, #cells, 3 do
            local series, metric = cells[i], cells[i + 1]
            if (not q.metric or metric == q.metric) and usage_series_matches(slots, series, q) then
                local amount = D.loaded(cells[i + 2])
                local sum = sums[metric]
                sums[metric] = sum and D.plus(sum, amount) or amount
                if groups then
                    local name = usage_group_name(slots, series, q.group)
                    local g = groups[name]
                    if not g then
                        g = {}
                        groups[name] = g
                    end
                    sum = g[metric]
                    g[metric] = sum and D.plus(sum, amount) or amount
                end
            end
        end
    end

    -- A node's usage under a query, summed over buckets first..last, into
    -- `sums`.
    local function node_sums(ctx, path, q, first, last, sums)
        local slots, cells = read_cells(ctx, path, q, first, last)
        for i = 1, #cells do
            if cells[i] then
                add_cells(cells[i], slots, q, sums)
            end
        end
        return sums
    end

    -- Sums (metric → D) as a reply map: metrics in name order (bytewise),
    -- zeros left out; and how many it shows.
    local function sums_reply(sums)
        local metrics = {}
        for m, v in pairs(sums) do
            if not D.is_zero(v) then
                metrics[#metrics + 1] = m
            end
        end
        table.sort(metrics, P.bytes_less)
        local f = { _m = true }
        for i, m in ipairs(metrics) do
            f[2 * i - 1], f[2 * i] = m, D.fmt(sums[m])
        end
        return f, #metrics
    end

    -- Orders groups {name, sums} largest first: by the sum of their amounts
    -- (the query's METRIC only, when given, as nothing else is summed);
    -- ties by name, bytewise.
    -- Rust twin: usage_sort_groups (src/engine/usage.rs)
    local function usage_sort_groups(list)
        for _, g in ipairs(list) do
            local w = D.ZERO
            for _, v in pairs(g.sums) do
                w = D.plus(w, v)
            end
            g.weight = w
        end
        table.sort(list, function(a, b)
            local c = D.cmp(a.weight, b.weight)
            if c ~= 0 then
                return c > 0
            end
            return P.bytes_less(a.name, b.name)
        end)
    end

    -- GROUP tag: per tag, the usage of the topmost nodes of the subtree at
    -- `path` carrying it (a node below another with the same tag is not
    -- counted again): tag → sums.
    -- Rust twin: Tree::tag_sums (src/engine/usage.rs)
    local function usage_tag_sums(ctx, path, q, first, last)
        local groups = {}
        local stack = { { path, {} } }
        while #stack > 0 do
            local top = table.remove(stack)
            local p, above = top[1], top[2]
            local node = find(ctx, p)
            if node then
                local carried = above
                for _, tag in ipairs(usage_node_tags(node)) do
                    if not above[tag] then
                        groups[tag] = node_sums(ctx, p, q, first, last, groups[tag] or {})
                        if carried == above then
                            carried = {}
                            for t in pairs(above) do
                                carried[t] = true
                            end
                        end
                        carried[tag] = true
                    end
                end
                for _, kid in ipairs((children_of(ctx, p, 0, -1))) do
                    stack[#stack + 1] = { kid, carried }
                end
            end
        end
        return groups
    end

    -- QUOTA.USAGE key path [SINCE ms] [UNTIL ms] [BY hour|day] [METRIC m]
    --             [SERVICE s [MODEL m]] [GROUP service|model|child|tag]
    -- A node's buckets in a span, their total and, with GROUP, its groups.
    -- Reads only.
    -- Rust twin: Tree::usage (src/engine/usage.rs)
    local function usage_reply(ctx, args)
        local path = args:next_path("a path")
        local q = usage_parse(args)
        local now = ctx.now
        local first, last, since, until_, size = usage_span(q, now, ctx.limits)
        if not find(ctx, path) then
            fail(sformat("NOTFOUND no such path '%s'", display_path(path)))
        end
        local slots, cells = read_cells(ctx, path, q, first, last)
        local groups = (q.group == "service" or q.group == "model") and {} or nil
        local buckets, total = {}, {}
        for b = first, last do
            local sums = {}
            local c = cells[b - first + 1]
            if c then
                add_cells(c, slots, q, sums, groups)
                for m, v in pairs(sums) do
                    total[m] = total[m] and D.plus(total[m], v) or v
                end
            end
            buckets[#buckets + 1] = M("start", b * size, "spent", (sums_reply(sums)))
        end
        local f = M("path", display_path(path), "by", q.by, "since", since, "until", until_, "buckets", buckets,
            "total", (sums_reply(total)))
        if not q.group then
            return f
        end
        if q.group == "child" then
            groups = {}
            for _, kid in ipairs((children_of(ctx, path, 0, -1))) do
                groups[display_path(kid)] = node_sums(ctx, kid, q, first, last, {})
            end
        elseif q.group == "tag" then
            groups = usage_tag_sums(ctx, path, q, first, last)
        end
        local list = {}
        for name, sums in pairs(groups) do
            local spent, n = sums_reply(sums)
            if n > 0 then
                list[#list + 1] = { name = name, sums = sums, spent = spent }
            end
        end
        usage_sort_groups(list)
        local out = {}
        for i, g in ipairs(list) do
            out[i] = M("name", g.name, "spent", g.spent)
        end
        f[#f + 1] = "groups"
        f[#f + 1] = out
        return f
    end
    USAGE.cmd = usage_reply
end
