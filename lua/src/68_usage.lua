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
-- node it changes; "/<path>" only changes when a series is placed or writes
-- in a new hour. When a node's first write of a new hour or day comes, it
-- deletes its buckets that retention no longer keeps (one HDEL). Reads
-- filter by retention at their own time, so replies do not depend on
-- when old buckets were deleted (lazily exact, like windows).
-- (A table, not locals: build() is near Lua's 200 locals.)
-- ---------------------------------------------------------------------------

-- (USAGE is declared in 60_tree.lua, where spent changes and flush writes.)
USAGE.HOUR_MS, USAGE.DAY_MS = W.HOUR_MS, W.DAY_MS
USAGE.NO_SERVICE, USAGE.OTHER = "(no service)", "(other series)"

-- The oldest hour and day bucket numbers retention keeps at `now` (with a
-- setting of 0, one past the current: none).
-- Rust twin: usage_horizon (src/engine/usage.rs)
function USAGE.keep(limits, now)
    local hn, dn = math.floor(now / USAGE.HOUR_MS), math.floor(now / USAGE.DAY_MS)
    return hn - limits.usage_hours + 1, dn - limits.usage_days + 1, hn, dn
end

-- Notes that `path`'s spent of `metric` changed by `change` (not zero) in
-- the series of `set`; flush records it.
-- Rust twin: usage_record (src/engine/usage.rs)
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

-- Adds `change` to the cell (series, metric) of a bucket's flat list.
function USAGE.cell_add(cells, series, metric, change)
    for i = 1, #cells, 3 do
        if cells[i] == series and cells[i + 1] == metric then
            cells[i + 2] = D.stored(D.plus(D.loaded(cells[i + 2]), change))
            return
        end
    end
    local n = #cells
    cells[n + 1], cells[n + 2], cells[n + 3] = series, metric, D.stored(change)
end

-- The series position of (service, model) in a node's slots, placing a new
-- one: a free slot after freeing those whose every bucket retention has
-- dropped, while fewer than usage_series are in use; else "(other
-- series)". Returns it and whether the slots changed.
-- Rust twin: usage_slot (src/engine/usage.rs)
function USAGE.slot(slots, service, model, hn, keep_h, keep_d, limits)
    if not service then
        return 0, false
    end
    local used, n = 0, #slots
    for i = 1, n do
        local s = slots[i]
        if s then
            if s[1] == service and s[2] == model then
                if s[3] ~= hn then
                    s[3] = hn
                    return i, true
                end
                return i, false
            end
            used = used + 1
        end
    end
    local free, changed = nil, false
    local hours, days = limits.usage_hours > 0, limits.usage_days > 0
    for i = 1, n do
        local s = slots[i]
        if s and (not hours or s[3] < keep_h) and (not days or math.floor(s[3] / 24) < keep_d) then
            slots[i], used, changed = false, used - 1, true
        end
        if not slots[i] and not free then
            free = i
        end
    end
    if used >= limits.usage_series then
        return -1, changed
    end
    free = free or n + 1
    slots[free] = { service, model, hn }
    return free, true
end

-- Drops from `list` (ascending bucket numbers) those before `keep`,
-- naming their fields in `hdel`. Returns whether any went.
function USAGE.trim(list, keep, prefix, path, hdel)
    local cut = 0
    while list[cut + 1] and list[cut + 1] < keep do
        cut = cut + 1
        hdel[#hdel + 1] = prefix .. sformat("%.0f", list[cut]) .. "/" .. path
    end
    if cut > 0 then
        local n = #list
        for i = 1, n do
            list[i] = list[i + cut]
        end
    end
    return cut > 0
end

-- Places bucket `b` in `list` (ascending); returns whether it is new.
function USAGE.has_bucket(list, b)
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

-- Writes what the context noted: per node, its series, its current hour and
-- day bucket (one HMGET, one HSET), and on a node's first write in a new
-- bucket, deletes the buckets retention dropped.
-- Rust twin: usage_record (src/engine/usage.rs)
function USAGE.flush(ctx)
    local u = ctx.usage
    ctx.usage = false
    local limits = ctx.limits
    local keep_h, keep_d, hn, dn = USAGE.keep(limits, ctx.now)
    local hours, days = limits.usage_hours > 0, limits.usage_days > 0
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
            local service, model = notes[k], notes[k + 1]
            if series == nil or service ~= at_service or model ~= at_model then
                local moved
                series, moved = USAGE.slot(slots, service, model, hn, keep_h, keep_d, limits)
                at_service, at_model, changed = service, model, changed or moved
            end
            if hours then
                USAGE.cell_add(hcells, series, notes[k + 2], notes[k + 3])
            end
            if days then
                USAGE.cell_add(dcells, series, notes[k + 2], notes[k + 3])
            end
        end
        local new_h = hours and USAGE.has_bucket(state[2], hn)
        local new_d = days and USAGE.has_bucket(state[3], dn)
        if new_h or new_d then
            -- (A setting turned to 0 drops all of that granularity.)
            USAGE.trim(state[2], hours and keep_h or math.huge, "h", path, hdel)
            USAGE.trim(state[3], days and keep_d or math.huge, "d", path, hdel)
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

-- Deletes the usage of the nodes `deleted` (a set of paths: DELPATH): their
-- series and every bucket they have.
-- Rust twin: usage_drop (src/engine/usage.rs)
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
            USAGE.trim(state[2], math.huge, "h", path, hdel)
            USAGE.trim(state[3], math.huge, "d", path, hdel)
        end
    end
    call_chunked("HDEL", ctx.ukey, hdel)
end

-- ----- QUOTA.USAGE -----------------------------------------------------------

USAGE.KEYWORDS = set_of({ "SINCE", "UNTIL", "BY", "METRIC", "SERVICE", "MODEL", "GROUP" })
USAGE.GROUPS = set_of({ "SERVICE", "MODEL", "CHILD", "TAG" })

-- QUOTA.USAGE key path [SINCE ms] [UNTIL ms] [BY hour|day] [METRIC m]
--             [SERVICE s [MODEL m]] [GROUP service|model|child|tag]
-- Rust twin: usage (src/module/commands/read.rs)
function USAGE.cmd(ctx, args)
    local path = args:next_path("a path")
    local q = { by = "day" }
    local seen = {}
    while not args:is_done() do
        local kw = args:next_keyword(USAGE.KEYWORDS)
        args:once(seen, kw)
        if kw == "SINCE" then
            q.since = args:next_u64("SINCE", 0, 9007199254740991)
        elseif kw == "UNTIL" then
            q["until"] = args:next_u64("UNTIL", 0, 9007199254740991)
        elseif kw == "BY" then
            local by = string.lower(args:next_str("hour or day after BY"))
            if by ~= "hour" and by ~= "day" then
                fail("ERR syntax: BY must be hour or day")
            end
            q.by = by
        elseif kw == "METRIC" then
            q.metric = args:next_metric()
        elseif kw == "SERVICE" then
            q.service = args:next_name("service")
        elseif kw == "MODEL" then
            q.model = args:next_name("model")
        else
            local group = supper(args:next_str("service, model, child or tag after GROUP"))
            if not USAGE.GROUPS[group] then
                fail("ERR syntax: GROUP must be service, model, child or tag")
            end
            q.group = string.lower(group)
        end
    end
    if q.model and not q.service then
        fail("ERR syntax: MODEL needs SERVICE")
    end
    q["until"] = q["until"] or ctx.now
    if q.since and q.since > q["until"] then
        fail("ERR syntax: SINCE is after UNTIL")
    end
    if not find(ctx, path) then
        fail(sformat("NOTFOUND no such path '%s'", display_path(path)))
    end
    return USAGE.view(ctx, path, q)
end

-- The buckets of `path` from `first` to `last` (bucket numbers of
-- granularity `g`, "h" or "d"): the node's slots and, per bucket, its flat
-- cells (or false).
function USAGE.read(ctx, path, g, first, last)
    if not ctx.exists then
        return {}, {}
    end
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

-- The name a cell's series has in the reply's groups (GROUP service or
-- model), or nil when the request's SERVICE/MODEL leave it out.
function USAGE.series_name(slots, series, q)
    if series == 0 or series == -1 then
        if q.service then
            return nil
        end
        return series == 0 and USAGE.NO_SERVICE or USAGE.OTHER
    end
    local s = slots[series]
    if not s or (q.service and (s[1] ~= q.service or (q.model and s[2] ~= q.model))) then
        return nil
    end
    if q.group == "model" and s[2] then
        return s[1] .. "/" .. s[2]
    end
    return s[1]
end

-- Adds a bucket's cells, filtered by the request, into `into` (metric → D)
-- and, when `groups` is given, into groups[name] by series name.
function USAGE.sum_cells(cells, slots, q, into, groups)
    for i = 1, #cells, 3 do
        local metric = cells[i + 1]
        if not q.metric or metric == q.metric then
            local name = USAGE.series_name(slots, cells[i], q)
            if name then
                local amount = D.loaded(cells[i + 2])
                into[metric] = into[metric] and D.plus(into[metric], amount) or amount
                if groups then
                    local g = groups[name]
                    if not g then
                        g = {}
                        groups[name] = g
                    end
                    g[metric] = g[metric] and D.plus(g[metric], amount) or amount
                end
            end
        end
    end
end

-- A metric → D table as a reply map: metrics in byte order, zeros left out;
-- and the sum of what it shows.
function USAGE.spent_reply(t)
    local metrics = {}
    for m, v in pairs(t) do
        if not D.is_zero(v) then
            metrics[#metrics + 1] = m
        end
    end
    table.sort(metrics, P.bytes_less)
    local f, sum = { _m = true }, D.ZERO
    for _, m in ipairs(metrics) do
        f[#f + 1] = m
        f[#f + 1] = D.fmt(t[m])
        sum = D.plus(sum, t[m])
    end
    return f, #metrics, sum
end

-- The nodes of the subtree at `path` carrying each tag, topmost only (a
-- tagged node below one with the same tag is left out): tag → paths.
-- Rust twin: usage_tag_nodes (src/engine/usage.rs)
function USAGE.tag_nodes(ctx, path)
    local out, order = {}, {}
    local function walk(p, above)
        local node = find(ctx, p)
        local lb = node and node.lb
        local tags = lb and lb.tags
        local mine = above
        if tags and #tags > 0 then
            mine = setmetatable({}, { __index = above })
            for _, t in ipairs(tags) do
                if not above[t] then
                    mine[t] = true
                    if not out[t] then
                        out[t] = {}
                        order[#order + 1] = t
                    end
                    out[t][#out[t] + 1] = p
                end
            end
        end
        local kids = children_of(ctx, p, 0, -1)
        for _, kid in ipairs(kids) do
            walk(kid, mine)
        end
    end
    walk(path, {})
    return out, order
end

-- QUOTA.USAGE's reply.
-- Rust twin: usage_view (src/engine/usage.rs)
function USAGE.view(ctx, path, q)
    local limits = ctx.limits
    local keep_h, keep_d, hn, dn = USAGE.keep(limits, ctx.now)
    local unit, keep, g = USAGE.DAY_MS, keep_d, "d"
    if q.by == "hour" then
        unit, keep, g = USAGE.HOUR_MS, keep_h, "h"
    end
    local first = keep
    if q.since then
        first = math.max(first, math.floor(q.since / unit))
    end
    local last = math.floor(math.min(q["until"], ctx.now) / unit)
    local slots, cells = USAGE.read(ctx, path, g, first, last)
    local buckets, total, groups = {}, {}, nil
    if q.group == "service" or q.group == "model" then
        groups = {}
    end
    for b = first, last do
        local spent = {}
        local c = cells[b - first + 1]
        if c then
            USAGE.sum_cells(c, slots, q, spent, groups)
        end
        for m, v in pairs(spent) do
            total[m] = total[m] and D.plus(total[m], v) or v
        end
        buckets[#buckets + 1] = M("start", b * unit, "spent", (USAGE.spent_reply(spent)))
    end
    local f = M("path", display_path(path), "by", q.by, "since", first * unit, "until", q["until"],
        "buckets", buckets, "total", (USAGE.spent_reply(total)))
    if not q.group then
        return f
    end
    -- Each group's usage: a child's or a tag's own buckets, summed.
    local function own(p)
        local s, c = USAGE.read(ctx, p, g, first, last)
        local t = {}
        for i = 1, #c do
            if c[i] then
                USAGE.sum_cells(c[i], s, q, t)
            end
        end
        return t
    end
    if q.group == "child" then
        groups = {}
        for _, kid in ipairs((children_of(ctx, path, 0, -1))) do
            groups[display_path(kid)] = own(kid)
        end
    elseif q.group == "tag" then
        groups = {}
        local nodes, order = USAGE.tag_nodes(ctx, path)
        for _, tag in ipairs(order) do
            local t = {}
            for _, p in ipairs(nodes[tag]) do
                for m, v in pairs(own(p)) do
                    t[m] = t[m] and D.plus(t[m], v) or v
                end
            end
            groups[tag] = t
        end
    end
    local list = {}
    for name, t in pairs(groups) do
        local spent, n, sum = USAGE.spent_reply(t)
        if n > 0 then
            list[#list + 1] = { name = name, spent = spent, sum = sum }
        end
    end
    table.sort(list, function(a, b)
        local c = D.cmp(a.sum, b.sum)
        if c ~= 0 then
            return c > 0
        end
        return P.bytes_less(a.name, b.name)
    end)
    local out = {}
    for i, x in ipairs(list) do
        out[i] = M("name", x.name, "spent", x.spent)
    end
    f[#f + 1] = "groups"
    f[#f + 1] = out
    return f
end
