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
--   "/<path>"        what every write of the node changes: {slots, hour,
--                    hour cells, day, day cells}: the series slots, a list
--                    of {service, model or false, the start of the hour it
--                    was last written in (ms)} (false: a free slot), and the
--                    node's newest hour and day bucket (its number, false
--                    for none, and cells). With hours on, the newest day
--                    holds its earlier hours: the newest hour is added to
--                    it when the hour ends, and reads add the two
--   "h<n>/<path>"    an older hour bucket n (floor(ms / 3600000)), moved
--                    here when the node first writes in a later hour
--   "d<n>/<path>"    an older day bucket n (floor(ms / 86400000)), likewise
--   "b/<path>"       the bucket numbers of those fields: {hours, days},
--                    each ascending (read only when a bucket moves)
-- Cells are a flat list series, metric, amount, series, ... (series: the
-- slot's position; 0 is "(no service)", -1 "(other series)"; amounts as
-- D.stored keeps them). A write reads (one HMGET) and writes (one HSET) the
-- "/<path>" field of each node it changes; when a node first writes in a
-- new hour or day, its newest bucket moves to its own field and the
-- buckets retention no longer keeps are deleted (once per node and hour).
-- Reads filter by retention at their own time, so replies do not depend on
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
    -- (Whole amounts below 2^53, the usual ones, are added as the plain
    -- numbers they are stored as: exact, and far from 10^18.)
    local function cell_add(cells, series, metric, change)
        local whole = change.s == 0 and change.m
        for i = 1, #cells, 3 do
            if cells[i] == series and cells[i + 1] == metric then
                local c = cells[i + 2]
                if whole and type(c) == "number" then
                    local sum = c + whole
                    if sum < 9007199254740992 and sum > -9007199254740992 then
                        cells[i + 2] = sum
                        return
                    end
                end
                cells[i + 2] = D.stored(usage_add(D.loaded(c), change))
                return
            end
        end
        local n = #cells
        cells[n + 1], cells[n + 2], cells[n + 3] = series, metric, whole or D.stored(usage_add(D.ZERO, change))
    end

    -- The series of a write of (service, model) at `now` in a node's slots:
    -- its slot (its last write updated), a new one (after freeing those last
    -- written before the horizon) while fewer than usage_series are in use,
    -- else "(other series)". Returns it and whether the slots changed.
    -- Rust twin: Usage::series_slot (src/engine/usage.rs)
    local function usage_series_slot(slots, service, model, now, limits)
        if not service then
            return USAGE.NO_SERVICE_SLOT, false
        end
        -- (The start of the hour is kept: the horizon is the start of an
        -- hour, so a time is before it exactly when its hour is, and the
        -- slots change once an hour, not at every write.)
        now = floor(now / HOUR_MS) * HOUR_MS
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
    -- naming their fields in `hdel`. Returns whether any went.
    local function trim(list, keep, prefix, path, hdel)
        local cut = 0
        while list[cut + 1] and list[cut + 1] < keep do
            cut = cut + 1
            hdel[#hdel + 1] = sformat("%s%.0f/%s", prefix, list[cut], path)
        end
        if cut > 0 then
            for i = 1, #list do
                list[i] = list[i + cut]
            end
        end
        return cut > 0
    end

    -- Places bucket `b` in `list` (ascending) when it is not there.
    local function add_bucket(list, b)
        local n = #list
        if list[n] == b then
            return
        end
        for i = n, 1, -1 do
            if list[i] == b then
                return
            elseif list[i] < b then
                table.insert(list, i + 1, b)
                return
            end
        end
        table.insert(list, 1, b)
    end

    -- Stored usage the library did not write (a hand edit, a bad restore)
    -- is refused with ERR layout before anything uses it: a Function does
    -- not roll back, so a write reads and checks every field it needs
    -- before its first write (USAGE.prepare, from flush), and a read gives
    -- the same error. A field is checked when it is decoded, not when its
    -- record comes from the cache below (the library wrote those bytes).
    -- Whole numbers (bucket numbers, hour starts) are below 2^53, not
    -- negative.
    local function whole(x)
        return type(x) == "number" and x % 1 == 0 and x >= 0 and x < 9007199254740992
    end

    -- A bucket's cells: series (an integer, -1 or more), metric (text),
    -- amount (D.stored) triples.
    local function cells_ok(c)
        if type(c) ~= "table" or #c % 3 ~= 0 then
            return false
        end
        for i = 1, #c, 3 do
            local series = c[i]
            if type(series) ~= "number" or series % 1 ~= 0 or series < -1 or type(c[i + 1]) ~= "string"
                or not D.stored_ok(c[i + 2]) then
                return false
            end
        end
        return true
    end

    -- A "/<path>" record: exactly {slots, hour, hour cells, day, day
    -- cells}, each slot false or {service, model or false, hour start},
    -- hour and day false or a bucket number.
    local function rec_ok(rec)
        if type(rec) ~= "table" then
            return false
        end
        local n = 0
        for _ in pairs(rec) do
            n = n + 1
        end
        local slots = rec[1]
        if n ~= 5 or type(slots) ~= "table" or (rec[2] ~= false and not whole(rec[2]))
            or (rec[4] ~= false and not whole(rec[4])) or not cells_ok(rec[3]) or not cells_ok(rec[5]) then
            return false
        end
        for i = 1, #slots do
            local x = slots[i]
            if x ~= false and (type(x) ~= "table" or type(x[1]) ~= "string"
                    or (x[2] ~= false and type(x[2]) ~= "string") or not whole(x[3])) then
                return false
            end
        end
        return true
    end

    -- A "b/<path>" list: {hours, days}, each a list of bucket numbers.
    local function lists_ok(l)
        if type(l) ~= "table" or type(l[1]) ~= "table" or type(l[2]) ~= "table" then
            return false
        end
        for g = 1, 2 do
            for _, b in ipairs(l[g]) do
                if not whole(b) then
                    return false
                end
            end
        end
        return true
    end

    -- A stored field of tree `key` decoded and checked with `ok`.
    local function load_field(key, blob, ok)
        local fine, t, extra = pcall(munpack, blob)
        if not fine or extra ~= nil or not ok(t) then
            fail(sformat("ERR layout: tree '%s' has a node whose usage this library cannot read: "
                .. "it was not written by it", clip(key)))
        end
        return t
    end
    USAGE.load_field, USAGE.cells_ok = load_field, cells_ok

    -- Decoded "/<path>" records of the trees called lately, by tree and
    -- field (at most 4,096), each with the bytes it was decoded from
    -- (rec.bytes): a write takes its record out and changes it in place,
    -- and puts it back with the bytes it writes; a read shares it. (Not by
    -- bytes alone: nodes with equal records would take turns missing.)
    local cache, cache_size = {}, 0

    local function cache_put(ukey, field, blob, rec)
        local c = cache[ukey]
        if not c or c[field] == nil then
            if cache_size >= 4096 then
                cache, cache_size = {}, 0
                c = nil
            end
            if not c then
                c = {}
                cache[ukey] = c
            end
            cache_size = cache_size + 1
        end
        rec.bytes = blob
        c[field] = rec
    end

    local function decoded(ctx, field, blob, take)
        local c = cache[ctx.ukey]
        local rec = c and c[field]
        if rec and rec.bytes == blob then
            if take then
                c[field], cache_size = nil, cache_size - 1
            end
            return rec
        end
        return load_field(ctx.key, blob, rec_ok)
    end

    -- A record's bytes, those of its slots and of its newest day kept on it
    -- (rec.sp, rec.dp) while they do not change: the same bytes as
    -- cmsgpack's of the five positions.
    local function pack_rec(rec)
        local sp = rec.sp
        if not sp then
            sp = mpack(rec[1])
            rec.sp = sp
        end
        local dp = rec.dp
        if not dp then
            dp = mpack(rec[5])
            rec.dp = dp
        end
        return "\149" .. sp .. mpack(rec[2], rec[3], rec[4]) .. dp
    end

    -- The list apply_usage adds each node's changes of spent to (path, the
    -- request's set, and a costs list: the request's own when spent took
    -- every amount as it is, the usual case), made at the size of four
    -- nodes; USAGE.flush records them.
    function USAGE.notes(ctx)
        local notes = ctx.usage
        if not notes then
            notes = { false, false, false, false, false, false, false, false, false, false, false, false }
            ctx.usage, ctx.usage_n = notes, 0
        end
        return notes
    end

    -- A node's changes after its metric `i` changed by `change` rather than
    -- by the request's amount (spent stopped at 0 or 10^18), or the amount
    -- was 0: its own list, zeros left out.
    function USAGE.changed(changes, usage, i, change)
        if changes == usage then
            changes = {}
            for k = 1, i - 1 do
                changes[k] = usage[k]
            end
        end
        if not D.is_zero(change) then
            changes[#changes + 1] = { usage[i][1], change }
        end
        return changes
    end

    -- An older bucket's own field, read for a write when the clock went
    -- back (only test clocks do).
    local function older_cells(w, g, b, path)
        local field = sformat("%s%.0f/%s", g, b, path)
        local blob = w.ctx.exists and redis.call("HGET", w.ctx.ukey, field)
        local cells = blob and load_field(w.ctx.key, blob, cells_ok) or {}
        w.older[#w.older + 1] = { field, cells }
        w.moved[#w.moved + 1] = { path, g, b }
        w.moved[path] = true
        return cells
    end

    -- A node's newest bucket `b` of `g` ends: to its own field while
    -- retention keeps it (`keep`) and it has cells.
    local function store_bucket(w, g, b, cells, keep, path)
        if b >= keep and #cells > 0 then
            w.older[#w.older + 1] = { sformat("%s%.0f/%s", g, b, path), cells }
            w.moved[#w.moved + 1] = { path, g, b }
        end
        w.moved[path] = true
    end

    -- Adds every cell of `from` to `into`.
    local function fold(into, from)
        for i = 1, #from, 3 do
            cell_add(into, from[i], from[i + 1], D.loaded(from[i + 2]))
        end
    end

    -- The cells a write at hour `hn` (day `dn`) adds to: the node's newest
    -- hour, and its newest day only when hours are off or the clock went
    -- back. With hours on, the newest day holds the day's earlier hours
    -- only: the newest hour is added to it when it ends, once an hour, not
    -- at every write (reads add the two). A later hour or day makes the
    -- newest move to its own field; `w` collects the writes.
    local function targets(rec, hn, dn, hours, days, keep_h, keep_d, path, w)
        local hour, day = rec[2], rec[4]
        if hour == hn and (day == dn or not days) then
            return rec[3], nil
        end
        w.moved = w.moved or {}
        w.older = w.older or {}
        if hour and (not hours or hour < hn) then
            -- The newest hour ends: into its day, then to its own field.
            if day and day == floor(hour / 24) then
                fold(rec[5], rec[3])
                rec.dp = nil
            end
            if hours then
                store_bucket(w, "h", hour, rec[3], keep_h, path)
            end
            rec[2], rec[3], hour = false, {}, false
            w.moved[path] = true
        end
        if day and (not days or day < dn) then
            store_bucket(w, "d", day, rec[5], keep_d, path)
            rec[4], rec[5], rec.dp, day = false, {}, nil, false
        end
        if days and not day then
            rec[4], rec[5], rec.dp, day = dn, {}, nil, dn
        end
        if not hours then
            if days and day == dn then
                rec.dp = nil
                return nil, rec[5]
            end
            return nil, days and older_cells(w, "d", dn, path) or nil
        end
        if not hour then
            rec[2], rec[3] = hn, {}
            return rec[3], nil
        elseif hour == hn then
            return rec[3], nil
        end
        -- The clock went back: an older hour, and its day.
        local dcells = nil
        if days and day == dn then
            dcells = rec[5]
            rec.dp = nil
        elseif days then
            dcells = older_cells(w, "d", dn, path)
        end
        return older_cells(w, "h", hn, path), dcells
    end

    -- Records what apply_usage noted: per node, the series and its newest
    -- hour and day bucket in "/<path>" (one HMGET and one HSET for all the
    -- nodes); a node's first write in a new hour or day moves its newest
    -- bucket to its own field and deletes what retention dropped (one more
    -- HMGET and one HDEL, once per node and hour). In two steps: this one
    -- reads (and checks) what it needs and makes the writes, before flush
    -- writes anything; USAGE.write does them.
    -- Rust twin: usage_record (src/engine/usage.rs)
    local function usage_record(ctx)
        local notes, n = ctx.usage, ctx.usage_n
        ctx.usage, ctx.usage_n = false, 0
        local limits, now = ctx.limits, ctx.now
        local hours, days = limits.usage_hours > 0, limits.usage_days > 0
        local hn, dn = floor(now / HOUR_MS), floor(now / DAY_MS)
        local keep_h = hours and floor(usage_retention_start(HOUR_MS, limits.usage_hours, now) / HOUR_MS) or math.huge
        local keep_d = days and floor(usage_retention_start(DAY_MS, limits.usage_days, now) / DAY_MS) or math.huge
        -- The nodes, each once (the notes of a path noted again follow its
        -- first's: `again`).
        local paths, fields, at, again = {}, {}, {}, nil
        for k = 1, n, 3 do
            local path = notes[k]
            if at[path] then
                again = again or {}
                again[#again + 1] = k
            else
                paths[#paths + 1] = path
                fields[#fields + 1] = "/" .. path
                at[path] = k
            end
        end
        local ukey = ctx.ukey
        local blobs = {}
        if ctx.exists then
            blobs = #fields <= 1000 and redis.call("HMGET", ukey, unpack(fields)) or call_chunked("HMGET", ukey, fields)
        end
        local w = { ctx = ctx, moved = false, older = false }
        local hset, recs = {}, {}
        for i = 1, #fields do
            local blob, field, path = blobs[i], fields[i], paths[i]
            local rec = blob and decoded(ctx, field, blob, true) or { {}, false, {}, false, {} }
            recs[i] = rec
            local slots = rec[1]
            local hcells, dcells = targets(rec, hn, dn, hours, days, keep_h, keep_d, path, w)
            local k = at[path]
            while k do
                local set, changes = notes[k + 1], notes[k + 2]
                local series, moved = usage_series_slot(slots, set.service or false, set.model or false, now, limits)
                if moved then
                    rec.sp = nil
                end
                for c = 1, #changes do
                    local metric, change = changes[c][1], changes[c][2]
                    if hcells then
                        cell_add(hcells, series, metric, change)
                    end
                    if dcells then
                        cell_add(dcells, series, metric, change)
                    end
                end
                -- (A path noted again: rare.)
                local next_k = nil
                for _, j in ipairs(again or {}) do
                    if j > k and notes[j] == path then
                        next_k = j
                        break
                    end
                end
                k = next_k
            end
            hset[2 * i - 1], hset[2 * i] = field, pack_rec(rec)
        end
        for _, x in ipairs(w.older or {}) do
            hset[#hset + 1] = x[1]
            hset[#hset + 1] = mpack(x[2])
        end
        local hdel = nil
        if w.moved then
            -- The nodes whose buckets moved: their lists of bucket fields,
            -- and what retention dropped.
            hdel = {}
            local list_paths, list_fields = {}, {}
            for _, path in ipairs(paths) do
                if w.moved[path] then
                    list_paths[#list_paths + 1] = path
                    list_fields[#list_fields + 1] = "b/" .. path
                end
            end
            local lists = (ctx.exists and #list_fields > 0) and call_chunked("HMGET", ukey, list_fields) or {}
            local by_path = {}
            for i, path in ipairs(list_paths) do
                by_path[path] = lists[i] and load_field(ctx.key, lists[i], lists_ok) or { {}, {} }
            end
            for _, m in ipairs(w.moved) do
                add_bucket(by_path[m[1]][m[2] == "h" and 1 or 2], m[3])
            end
            for i, path in ipairs(list_paths) do
                local l = by_path[path]
                trim(l[1], keep_h, "h", path, hdel)
                trim(l[2], keep_d, "d", path, hdel)
                hset[#hset + 1] = list_fields[i]
                hset[#hset + 1] = mpack(l)
            end
        end
        return { ukey, hset, hdel, recs }
    end
    USAGE.prepare = usage_record

    -- Writes what USAGE.prepare made: w = {usage key, HSET's field value
    -- list, HDEL's fields or nil, the records written first in it}.
    function USAGE.write(w)
        local ukey, hset, hdel, recs = w[1], w[2], w[3], w[4]
        if #hset <= 1000 then
            redis.call("HSET", ukey, unpack(hset))
        else
            call_chunked("HSET", ukey, hset)
        end
        if hdel then
            call_chunked("HDEL", ukey, hdel)
        end
        for i = 1, #recs do
            cache_put(ukey, hset[2 * i - 1], hset[2 * i], recs[i])
        end
    end

    -- The fields of the usage of the nodes `deleted` (a set of paths:
    -- DELPATH), every field they have, read (and checked) before flush
    -- writes anything; flush deletes them.
    function USAGE.drop_fields(ctx, deleted)
        local paths, fields = {}, {}
        for path in pairs(deleted) do
            paths[#paths + 1] = path
            fields[#fields + 1] = "b/" .. path
        end
        local blobs = ctx.exists and call_chunked("HMGET", ctx.ukey, fields) or {}
        local hdel = {}
        for i, path in ipairs(paths) do
            hdel[#hdel + 1] = "/" .. path
            local blob = blobs[i]
            if blob then
                hdel[#hdel + 1] = fields[i]
                local l = load_field(ctx.key, blob, lists_ok)
                trim(l[1], math.huge, "h", path, hdel)
                trim(l[2], math.huge, "d", path, hdel)
            end
        end
        return hdel
    end

    USAGE.decoded, USAGE.cache_put = decoded, cache_put
end

-- ----- QUOTA.USAGE -----------------------------------------------------------

-- (A block of its own: build() may have at most 200 locals alive at once.)
do
    local floor, max, min = math.floor, math.max, math.min
    local HOUR_MS, DAY_MS = W.HOUR_MS, W.DAY_MS
    local usage_retention_start, decoded, cache_put = USAGE.retention_start, USAGE.decoded, USAGE.cache_put

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

    -- The group of a cell's series under GROUP service or model: a key
    -- telling groups apart, then its name, service and model (series that
    -- differ in service or model are different groups even when their
    -- names print alike; names have no spaces, so keys cannot meet).
    -- Rust twin: usage_group_key (src/engine/usage.rs)
    local function usage_group_key(slots, series, group)
        if series == USAGE.NO_SERVICE_SLOT then
            return USAGE.NO_SERVICE, USAGE.NO_SERVICE
        end
        local s = series > 0 and slots[series]
        if not s then
            return USAGE.OTHER, USAGE.OTHER
        end
        if group == "model" and s[2] then
            return " " .. s[1] .. " " .. s[2], s[1] .. "/" .. s[2], s[1], s[2]
        end
        return " " .. s[1] .. " ", s[1], s[1]
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
        local g, at = "d", 4
        if q.by == "hour" then
            g, at = "h", 2
        end
        local fields = { "/" .. path }
        for b = first, last do
            fields[#fields + 1] = sformat("%s%.0f/%s", g, b, path)
        end
        local blobs = call_chunked("HMGET", ctx.ukey, fields)
        local blob = blobs[1]
        if not blob then
            return {}, {}
        end
        local rec = decoded(ctx, fields[1], blob)
        cache_put(ctx.ukey, fields[1], blob, rec)
        local cells = {}
        for b = first, last do
            local field = blobs[b - first + 2]
            if b == rec[at] then
                local c = rec[at + 1]
                if at == 4 and rec[2] and floor(rec[2] / 24) == b then
                    -- The newest day and the hour not yet added to it
                    -- (add_cells sums a cell given twice).
                    local both = {}
                    for i = 1, #c do
                        both[i] = c[i]
                    end
                    for i = 1, #rec[3] do
                        both[#c + i] = rec[3][i]
                    end
                    c = both
                end
                cells[b - first + 1] = c
            else
                cells[b - first + 1] = field and USAGE.load_field(ctx.key, field, USAGE.cells_ok) or false
            end
        end
        return rec[1], cells
    end

    -- Adds a bucket's cells that the query sees into `sums` (metric → D)
    -- and, with `groups`, into groups[key] = {name, service, model, sums}
    -- by series (usage_group_key).
    local function add_cells(cells, slots, q, sums, groups)
        for i = 1, #cells, 3 do
            local series, metric = cells[i], cells[i + 1]
            if (not q.metric or metric == q.metric) and usage_series_matches(slots, series, q) then
                local amount = D.loaded(cells[i + 2])
                local sum = sums[metric]
                sums[metric] = sum and D.plus(sum, amount) or amount
                if groups then
                    local key, name, service, model = usage_group_key(slots, series, q.group)
                    local g = groups[key]
                    if not g then
                        g = { name = name, service = service, model = model, sums = {} }
                        groups[key] = g
                    end
                    g = g.sums
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

    -- Orders groups {name, service, model, sums} largest first: by the sum
    -- of their amounts (the query's METRIC only, when given, as nothing
    -- else is summed); ties by name, then service, then model, bytewise
    -- (none first).
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
            if a.name ~= b.name then
                return P.bytes_less(a.name, b.name)
            end
            if a.service ~= b.service then
                return not a.service or (b.service and P.bytes_less(a.service, b.service)) or false
            end
            if a.model ~= b.model then
                return not a.model or (b.model and P.bytes_less(a.model, b.model)) or false
            end
            return false
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
        for name, g in pairs(groups) do
            if q.group ~= "service" and q.group ~= "model" then
                g = { name = name, sums = g }
            end
            local spent, n = sums_reply(g.sums)
            if n > 0 then
                g.spent = spent
                list[#list + 1] = g
            end
        end
        usage_sort_groups(list)
        local out = {}
        for i, g in ipairs(list) do
            local m = M("name", g.name)
            if g.service then
                m[#m + 1] = "service"
                m[#m + 1] = g.service
            end
            if g.model then
                m[#m + 1] = "model"
                m[#m + 1] = g.model
            end
            m[#m + 1] = "spent"
            m[#m + 1] = g.spent
            out[i] = m
        end
        f[#f + 1] = "groups"
        f[#f + 1] = out
        return f
    end
    USAGE.cmd = usage_reply
end
