-- ---------------------------------------------------------------------------
-- Policies: a named limit on one path and its usage in the current period
-- (src/engine/policy.rs and the alerts of src/engine/events.rs).
-- ---------------------------------------------------------------------------

local MODES = { strict = true, block = true, open = true }
local STATUS_RANK = { none = 0, healthy = 1, warning = 2, critical = 3, over = 4 }
local DEFAULT_WARN = { 80, 90 }
local MAX_WARN = 10
local D100 = D.from_int(100)

local band, bor, bnot, lshift = bit.band, bit.bor, bit.bnot, bit.lshift

local window_cache = {}
local function window_of(encoded)
    local w = window_cache[encoded]
    if not w then
        w = W.decode(encoded)
        window_cache[encoded] = w
    end
    return w
end

-- Rust twin: Mode::parse (src/engine/policy.rs)
local function parse_mode(text)
    local m = string.lower(text)
    if not MODES[m] then
        fail(sformat("ERR syntax: MODE must be strict, block or open, not '%s'", clip(text)))
    end
    return m
end

-- `80,90` as ascending distinct percentages from 1 to 100.
-- Rust twin: parse_warn (src/engine/thresholds.rs)
local function parse_warn(text)
    local bad = sformat("ERR syntax: WARN takes percentages from 1 to 100 separated by commas, not '%s'", clip(text))
    local out, seen = {}, {}
    local start = 1
    while true do
        local comma = sfind(text, ",", start, true)
        local part = ssub(text, start, (comma or (#text + 1)) - 1)
        if part == "" or #part > 3 or sfind(part, "[^0-9]") then
            fail(bad)
        end
        local pct = tonumber(part)
        if pct < 1 or pct > 100 then
            fail(bad)
        end
        out[#out + 1] = pct
        if not comma then
            break
        end
        start = comma + 1
    end
    if #out > MAX_WARN then
        fail(sformat("ERR limit: at most %d WARN thresholds per policy", MAX_WARN))
    end
    table.sort(out)
    local dedup = {}
    for _, p in ipairs(out) do
        if not seen[p] then
            seen[p] = true
            dedup[#dedup + 1] = p
        end
    end
    return dedup
end

local function same_list(a, b)
    if #a ~= #b then
        return false
    end
    for i = 1, #a do
        if a[i] ~= b[i] then
            return false
        end
    end
    return true
end

-- ----- the spec --------------------------------------------------------------

-- spec = {metric, limit, mode, wenc, warn, rollover (D|false), service, model,
-- low, inflight (true|nil)}
-- Rust twin: PolicySpec::validate (src/engine/policy.rs)
local function validate_spec(spec)
    if spec.inflight then
        -- An INFLIGHT policy counts what live holds have now: no period,
        -- no usage, so nothing a window, a block, LOW or a grant works on.
        local w = window_of(spec.wenc)
        if W.is_calendar(w) or W.is_rolling(w) then
            fail("ERR syntax: an INFLIGHT policy counts what is held now and takes no WINDOW")
        end
        if spec.mode == "block" then
            fail("ERR syntax: an INFLIGHT policy is strict or open (MODE block does not count holds)")
        end
        if spec.low then
            fail("ERR syntax: LOW does not apply to an INFLIGHT policy")
        end
    end
    if spec.rollover then
        if not W.is_calendar(window_of(spec.wenc)) then
            fail("ERR syntax: ROLLOVER needs a calendar WINDOW: hour, day, week, month or year")
        end
        if D.cmp(spec.rollover, spec.limit) < 0 then
            fail(sformat("ERR invalid amount: the ROLLOVER cap %s is below the LIMIT %s", D.fmt(spec.rollover),
                D.fmt(spec.limit)))
        end
    end
    if spec.model and not spec.service then
        fail("ERR syntax: MODEL needs SERVICE")
    end
end

-- Rust twin: PolicySpec::matches and Policy::matches (src/engine/policy.rs)
local function matches(p, service, model)
    if not p.service then
        return true
    end
    if not p.model then
        return service == p.service
    end
    return service == p.service and model == p.model
end

-- ----- state -----------------------------------------------------------------
-- Every reservation judges several policies, so the judgements below avoid
-- making values: while the amounts are small (the D small form, an exact
-- integer mantissa and a scale) they compare mantissas brought to one scale
-- as plain numbers, and fall back to D arithmetic only beyond 2^53.

local compare = D.cmp_sum_scaled

-- limit + rolled over + granted, kept in p.allow: every change to those
-- ends with refresh(p).
-- Rust twin: Policy::refresh (src/engine/policy.rs)
-- (Since 1.4.0: limit + rolled over + drawn + granted, the allowance of
-- credits.md: the own allowance, what grants gave this period, and what
-- live grants still hold.)
local function refresh(p)
    local allow = plus(plus(p.limit, p.ro), p.gr)
    local dr = p.dr
    if dr ~= D.ZERO and not D.is_zero(dr) then
        allow = plus(allow, dr)
    end
    p.allow = allow
end

-- Rust twin: Policy::allowance (src/engine/policy.rs)
local function allowance(p)
    return p.allow
end

-- Rust twin: Policy::level (src/engine/policy.rs)
local function level(p)
    if p.inflight then
        return p.held
    elseif p.mode == "strict" then
        return plus(p.used, p.held)
    end
    return p.used
end

-- Rust twin: Policy::remaining (src/engine/policy.rs)
local function remaining(p)
    return D.sub(D.sub(p.allow, p.used), p.held)
end

-- Rust twin: Policy::passes (src/engine/policy.rs)
local function passes(p, requested)
    if requested.m == 0 or D.is_neg(requested) then
        return true
    end
    if p.mode == "strict" then
        return compare(p.used, p.held, requested, 1, p.allow, 1) <= 0
    elseif p.mode == "block" then
        return D.cmp(p.used, p.allow) < 0
    end
    return true
end

-- Rust twin: Policy::is_over (src/engine/policy.rs)
local function is_over(p)
    return D.cmp(p.used, p.allow) >= 0
end

-- Whether the level has reached `pct` percent of the allowance.
-- Rust twin: Policy::crossed (src/engine/policy.rs)
local function crossed(p, pct)
    if p.inflight then
        return compare(p.held, nil, nil, 100, p.allow, pct) >= 0
    elseif p.mode == "strict" then
        return compare(p.used, p.held, nil, 100, p.allow, pct) >= 0
    end
    return compare(p.used, nil, nil, 100, p.allow, pct) >= 0
end

-- Rust twin: Policy::status (src/engine/policy.rs)
local function status(p)
    if is_over(p) then
        return "over"
    end
    local n = #p.warn
    if n > 0 then
        if crossed(p, p.warn[n]) then
            return "critical"
        end
        if crossed(p, p.warn[1]) then
            return "warning"
        end
    end
    return "healthy"
end

local function is_rolling(p)
    return W.is_rolling(window_of(p.wenc))
end

-- The end of a calendar period by window and start, kept: calendar
-- arithmetic is the dearest step of judging a policy, and a period's end is
-- asked for on every request.
local period_end
do
    local period_ends, period_ends_size = {}, 0

    -- Rust twin: Policy::period_end_ms (src/engine/policy/periods.rs)
    function period_end(p)
        -- (Kept on the policy too, for the start and window it was computed for.)
        if p.pe_ps == p.ps and p.pe_wenc == p.wenc then
            return p.pe
        end
        local w = window_of(p.wenc)
        if not W.is_calendar(w) then
            return nil
        end
        local key = p.wenc .. ":" .. p.ps
        local e = period_ends[key]
        if not e then
            local _
            _, e = W.period_of(w, p.ps)
            if period_ends_size >= 4096 then
                period_ends, period_ends_size = {}, 0
            end
            period_ends[key] = e
            period_ends_size = period_ends_size + 1
        end
        p.pe, p.pe_ps, p.pe_wenc = e, p.ps, p.wenc
        return e
    end
end

-- The span replies show as period_start, period_end.
-- Rust twin: Policy::shown_period (src/engine/policy/periods.rs)
local function shown_period(p, now)
    local w = window_of(p.wenc)
    if W.is_calendar(w) then
        return p.ps, period_end(p)
    elseif W.is_rolling(w) then
        return W.rolling_span(w, now)
    end
    return nil, nil
end

-- Rust twin: Policy::needs_roll (src/engine/policy/periods.rs)
local function needs_roll(p, now)
    if p.gx ~= 0 and now >= p.gx then
        return true
    end
    local w = window_of(p.wenc)
    if W.is_calendar(w) then
        return now >= period_end(p)
    elseif W.is_rolling(w) then
        local first = p.bk[1]
        return first ~= nil and W.expired_bucket(w, first[1], now)
    end
    return false
end

-- Rust twin: Policy::new (src/engine/policy.rs)
local function new_policy(name, spec, generation, now)
    local w = window_of(spec.wenc)
    local ps = now
    if W.is_calendar(w) then
        ps = W.period_of(w, now)
    end
    return {
        name = name, metric = spec.metric, limit = spec.limit, mode = spec.mode, wenc = spec.wenc, warn = spec.warn,
        rollover = spec.rollover, service = spec.service, model = spec.model, gen = generation,
        used = D.ZERO, held = D.ZERO, ps = ps, ro = D.ZERO, gr = D.ZERO, hist = {}, bk = {}, fired = 0, overf = false,
        allow = spec.limit, dr = D.ZERO, gn = 0, gx = 0, low = spec.low, lowf = false, ext = spec.low ~= nil, gs = 1,
        inflight = spec.inflight,
    }
end

-- Rust twin: Policy::archive (src/engine/policy/periods.rs)
local function archive(p, closed)
    tinsert(p.hist, 1, closed)
    while #p.hist > HISTORY_LEN do
        p.hist[#p.hist] = nil
    end
end

-- A closed period as stored: start, end, used, allowance, rolled over, and
-- (since 1.4.0, only when not 0, so that a tree without grants is stored as
-- before) what grants gave in it.
local function closed_of(start_ms, end_ms, used, allow, rolled, granted)
    if granted and not D.is_zero(granted) then
        return { start_ms, end_ms, D.fmt(used), D.fmt(allow), D.fmt(rolled), D.fmt(granted) }
    end
    return { start_ms, end_ms, D.fmt(used), D.fmt(allow), D.fmt(rolled) }
end

-- Rust twin: Policy::next_allowance (src/engine/policy/periods.rs)
local function next_allowance(p, unused)
    if p.rollover then
        return D.min(plus(p.limit, unused), p.rollover)
    end
    return p.limit
end

-- The allowance `skipped` idle periods after one whose allowance was
-- `first`: each idle period carries all of it over, up to the cap.
-- Rust twin: Policy::chained_allowance (src/engine/policy/periods.rs)
local function chained_allowance(p, first, skipped)
    local cap = p.rollover
    if not cap then
        return p.limit
    end
    if skipped <= 0 or D.cmp(p.limit, D.ZERO) <= 0 or D.cmp(first, cap) >= 0 then
        return D.min(first, cap)
    end
    return D.min(plus(first, D.mul(D.from_int(skipped), p.limit)), cap)
end


-- ----- grants (credits.md) ----------------------------------------------------
-- A policy's grants live outside its record, so that a reservation never
-- reads them; the record keeps what a reservation and a roll need: granted
-- (p.gr, the remaining of the live grants), drawn (p.dr), the next expiry
-- (p.gx, 0: none), the live count (p.gn), low and low_fired.
-- They are stored in the tree's slot (p.gk = {tag}quota:K:grants), every
-- entry under the policy's generation `gen`, so that a write reads and
-- writes only the grants it touches, O(log n) each:
--   hash p.gk: `gen:i:id` → a live grant; `gen:t:id` → a remembered
--     (ended) grant;
--   sorted sets, all scores 0, in lex order, members `gen:` + fixed-width
--   hex + the id: p.gk..":draw" priority, expiry (0 last), seq (draw-down
--   order); p.gk..":exp" expiry, seq (the grants with an expiry);
--   p.gk..":dead" ended, seq (forgetting order).
-- The next seq is in the policy record (p.gs).
-- What a command changes is kept on the policy (p.gw: live = id → grant or
-- false when it ended, dead = id → remembered grant, add = grants added,
-- ops = the writes) until the flush writes it
-- (G.flush): the command's later reads see it, and a view (a read) writes
-- nothing.
-- A grant: { id, seq, amount, rem, pri, exp (0: no time limit), per, at,
-- note (or nil), ended (remembered ones) }.
local G = { MAX = 10000, NOTE_MAX = 256, out = {}, BATCH = 4, NO_EXPIRY = "ffffffffffffffff" }

-- Draw-down order: priority, then expiry (0 last), then seq.
-- Rust twin: Grant::order_key (src/engine/policy/grants.rs)
function G.before(a, b)
    if a.pri ~= b.pri then
        return a.pri < b.pri
    end
    if a.exp ~= b.exp then
        if a.exp == 0 or b.exp == 0 then
            return b.exp == 0
        end
        return a.exp < b.exp
    end
    return a.seq < b.seq
end

function G.by_expiry(a, b)
    if a.exp ~= b.exp then
        return a.exp < b.exp
    end
    return a.seq < b.seq
end

function G.pack_grant(g)
    return { g.id, g.seq, D.stored(g.amount), D.stored(g.rem), g.pri, g.exp, g.per, g.at, g.note or false,
        g.ended }
end

function G.unpack_grant(t)
    return { id = t[1], seq = t[2], amount = D.loaded(t[3]), rem = D.loaded(t[4]), pri = t[5], exp = t[6],
        per = t[7], at = t[8], note = t[9] or nil, ended = t[10] }
end

function G.clone(g)
    local c = {}
    for k, v in pairs(g) do
        c[k] = v
    end
    return c
end

-- A whole number (< 2^53) as 16 hex digits: lex order is number order.
function G.hex(n)
    return sformat("%08x%08x", math.floor(n / 4294967296), n % 4294967296)
end

function G.unhex(s)
    return tonumber(ssub(s, 1, 8), 16) * 4294967296 + tonumber(ssub(s, 9, 16), 16)
end

-- The members of a grant in the draw, expiry and forgetting orders.
function G.dm(p, g)
    return p.gen .. ":" .. sformat("%02x", g.pri) .. (g.exp == 0 and G.NO_EXPIRY or G.hex(g.exp)) .. G.hex(g.seq)
        .. g.id
end

function G.xm(p, g)
    return p.gen .. ":" .. G.hex(g.exp) .. G.hex(g.seq) .. g.id
end

function G.tm(p, g)
    return p.gen .. ":" .. G.hex(g.ended) .. G.hex(g.seq) .. g.id
end

function G.keys(gk)
    return { h = gk, d = gk .. ":draw", x = gk .. ":exp", t = gk .. ":dead" }
end

-- The command's changes to p's grants (made when first needed).
function G.w(p)
    local gw = p.gw
    if not gw then
        gw = { live = {}, dead = {}, add = {}, ops = {} }
        p.gw = gw
    end
    return gw
end

-- A write for the flush: command, which key (h, d, x, t), arguments.
function G.op(p, ...)
    local ops = G.w(p).ops
    local op = { ... }
    ops[#ops + 1] = op
    return op
end

function G.copy_w(gw)
    if not gw then
        return nil
    end
    local c = { live = {}, dead = {}, add = {}, ops = {}, forget = gw.forget, buried = gw.buried }
    for _, k in ipairs({ "live", "dead" }) do
        for a, b in pairs(gw[k]) do
            c[k][a] = b
        end
    end
    for i, g in ipairs(gw.add) do
        c.add[i] = g
    end
    for i, o in ipairs(gw.ops) do
        c.ops[i] = o
    end
    return c
end

-- The live grant `id` of p (as this command left it), or nil.
function G.get(p, id)
    local gw = p.gw
    if gw then
        local g = gw.live[id]
        if g ~= nil then
            return g or nil
        end
    end
    if not p.gk then
        return nil
    end
    local blob = redis.call("HGET", p.gk, p.gen .. ":i:" .. id)
    return blob and G.unpack_grant(cmsgpack.unpack(blob)) or nil
end

-- The live grants of the members `ms` (their ids from `off`), by member:
-- one HMGET for those this command did not change.
function G.get_many(p, ms, off)
    local got, gw, fields, of = {}, p.gw, {}, {}
    for _, m in ipairs(ms) do
        local id = ssub(m, off)
        local g = gw and gw.live[id]
        if g ~= nil then
            got[m] = g or nil
        else
            fields[#fields + 1] = p.gen .. ":i:" .. id
            of[#of + 1] = m
        end
    end
    if #fields > 0 then
        local blobs = redis.call("HMGET", p.gk, unpack(fields))
        for i, m in ipairs(of) do
            if blobs[i] then
                got[m] = G.unpack_grant(cmsgpack.unpack(blobs[i]))
            end
        end
    end
    return got
end

-- Calls fn(g) on the live grants in draw-down order (which "d"), or on
-- those expiring before `below` in expiry order (which "x"), until it
-- returns true: the stored ones a batch at a time, merged with the ones
-- this command added.
function G.each(p, which, below, fn)
    local gw = p.gw
    local pend, order = {}, which == "d" and G.before or G.by_expiry
    if gw then
        for _, a in ipairs(gw.add) do
            local g = gw.live[a.id]
            if g and (which == "d" or (g.exp > 0 and g.exp < below)) then
                pend[#pend + 1] = g
            end
        end
        if #pend > 1 then
            table.sort(pend, order)
        end
    end
    local pi = 1
    if p.gk then
        local prefix = p.gen .. ":"
        local key = p.gk .. (which == "d" and ":draw" or ":exp")
        local off = #prefix + (which == "d" and 35 or 33)
        local cursor, hi = "[" .. prefix, which == "d" and "(" .. p.gen .. ";" or "(" .. prefix .. G.hex(below)
        local batch = G.BATCH
        while true do
            local ms = redis.call("ZRANGEBYLEX", key, cursor, hi, "LIMIT", 0, batch)
            local got = G.get_many(p, ms, off)
            for _, m in ipairs(ms) do
                local g = got[m]
                if g then
                    while pend[pi] and order(pend[pi], g) do
                        pi = pi + 1
                        if fn(pend[pi - 1]) then
                            return
                        end
                    end
                    if fn(g) then
                        return
                    end
                end
            end
            if #ms < batch then
                break
            end
            cursor = "(" .. ms[#ms]
            batch = math.min(batch * 4, 1024)
        end
    end
    while pend[pi] do
        pi = pi + 1
        if fn(pend[pi - 1]) then
            return
        end
    end
end

-- The next seq of p's grants.
function G.next_seq(p)
    local s = p.gs
    p.gs = s + 1
    return s
end

-- A new live grant.
function G.add(p, g)
    local gw = G.w(p)
    gw.live[g.id] = g
    gw.add[#gw.add + 1] = g
    G.op(p, "HSET", "h", p.gen .. ":i:" .. g.id, cmsgpack.pack(G.pack_grant(g)))
    G.op(p, "ZADD", "d", 0, G.dm(p, g))
    if g.exp > 0 then
        G.op(p, "ZADD", "x", 0, G.xm(p, g))
        if p.gx == 0 or g.exp < p.gx then
            p.gx = g.exp
        end
    end
    p.gr, p.gn = plus(p.gr, g.rem), p.gn + 1
    refresh(p)
end

-- A live grant changed (its remaining).
function G.put(p, g)
    G.w(p).live[g.id] = g
    G.op(p, "HSET", "h", p.gen .. ":i:" .. g.id, cmsgpack.pack(G.pack_grant(g)))
end

-- A live grant is no longer live.
function G.unlive(p, g)
    local gw = G.w(p)
    gw.live[g.id] = false
    G.op(p, "HDEL", "h", p.gen .. ":i:" .. g.id)
    G.op(p, "ZREM", "d", G.dm(p, g))
    if g.exp > 0 then
        G.op(p, "ZREM", "x", G.xm(p, g))
    end
end

-- The numbers after the live grants `gone` ended, taking `amount` with them.
function G.ended(p, gone, amount)
    local nx = false
    for _, g in ipairs(gone) do
        if g.exp > 0 and g.exp == p.gx then
            nx = true
        end
    end
    p.gr, p.gn = D.plus(p.gr, D.neg(amount)), p.gn - #gone
    if nx then
        G.next_expiry(p)
    end
    refresh(p)
end

function G.next_expiry(p)
    p.gx = 0
    if p.gn > 0 then
        G.each(p, "x", 9007199254740992, function(g)
            p.gx = g.exp
            return true
        end)
    end
end

-- An ended grant is remembered (remaining 0) until tombstone_ttl after it
-- ended; at most MAX: beyond that the one that ended first is forgotten
-- (at the flush). Returns the remembered grant.
-- Rust twin: Grants::remember (src/engine/policy/grants.rs)
function G.bury(p, g, ended)
    local t = G.clone(g)
    t.rem, t.ended = D.ZERO, ended
    local gw = G.w(p)
    gw.dead[t.id], gw.buried = t, true
    -- (.e: not written when the command forgets it at once, G.flush.)
    G.op(p, "HSET", "h", p.gen .. ":t:" .. t.id, cmsgpack.pack(G.pack_grant(t))).e = ended
    G.op(p, "ZADD", "t", 0, G.tm(p, t)).e = ended
    return t
end

-- Forgets the ids that ended tombstone_ttl or longer before `now` (at the
-- flush: the stored ones before the command's writes, and the command's own
-- are not written): at a GRANT and a REVOKE, as the engine does. (One that ended so long ago is never found again: G.find.)
-- Rust twin: Grants::forget (src/engine/policy/grants.rs)
function G.forget(p, now)
    G.w(p).forget = now
end

-- The live grant of that id, or the remembered one (not yet forgotten at
-- now), and whether it is live.
-- Rust twin: Policy::find_grant (src/engine/policy/grants.rs)
function G.find(p, id, now)
    if not p.ext then
        return nil
    end
    local gw = p.gw
    local g = G.get(p, id)
    if g then
        return g, true
    end
    local t = gw and gw.dead[id]
    if not t and p.gk then
        local blob = redis.call("HGET", p.gk, p.gen .. ":t:" .. id)
        t = blob and G.unpack_grant(cmsgpack.unpack(blob))
    end
    if t and t.ended + SETTINGS.tombstone_ttl > now then
        return t, false
    end
    return nil
end

-- Forgets remembered ids of generation `gen` from the first in forgetting
-- order, below `hi` (a ZRANGEBYLEX bound), at most `limit` (nil: all).
function G.trim(keys, gen, hi, limit)
    local prefix = gen .. ":"
    local off = #prefix + 33
    while true do
        local n = limit and math.min(256, limit) or 256
        local ms = redis.call("ZRANGEBYLEX", keys.t, "[" .. prefix, hi, "LIMIT", 0, n)
        if #ms == 0 then
            return
        end
        local f = {}
        for i, m in ipairs(ms) do
            f[i] = prefix .. "t:" .. ssub(m, off)
        end
        redis.call("HDEL", keys.h, unpack(f))
        redis.call("ZREM", keys.t, unpack(ms))
        if limit then
            limit = limit - #ms
            if limit <= 0 then
                return
            end
        end
        if #ms < n then
            return
        end
    end
end

-- Writes what the command changed in p's grants.
function G.flush(p)
    local gw = p.gw
    p.gw = nil
    if not gw or not p.gk then
        return
    end
    local keys, gen, ttl = G.keys(p.gk), p.gen, SETTINGS.tombstone_ttl
    local forget = gw.forget
    if forget and forget - ttl + 1 > 0 then
        G.trim(keys, gen, "(" .. gen .. ":" .. G.hex(forget - ttl + 1))
    end
    for _, op in ipairs(gw.ops) do
        if not (forget and op.e and op.e + ttl <= forget) then
            redis.call(op[1], keys[op[2]], unpack(op, 3))
        end
    end
    if gw.buried then
        local n = redis.call("ZLEXCOUNT", keys.t, "[" .. gen .. ":", "(" .. gen .. ";")
        if n > G.MAX then
            G.trim(keys, gen, "(" .. gen .. ";", n - G.MAX)
        end
    end
end

-- Removes every grant and remembered id of generation `gen` (a policy that
-- went): O(n) once.
function G.drop(gk, gen)
    local keys = G.keys(gk)
    local lo, hi = "[" .. gen .. ":", "(" .. gen .. ";"
    while true do
        local ms = redis.call("ZRANGEBYLEX", keys.d, lo, hi, "LIMIT", 0, 256)
        if #ms == 0 then
            break
        end
        local f, off = {}, #tostring(gen) + 36
        for i, m in ipairs(ms) do
            f[i] = gen .. ":i:" .. ssub(m, off)
        end
        redis.call("HDEL", keys.h, unpack(f))
        redis.call("ZREM", keys.d, unpack(ms))
    end
    redis.call("ZREMRANGEBYLEX", keys.x, lo, hi)
    G.trim(keys, gen, hi)
end

-- Ends the live grants whose expiry is before `bound` (or at it, when
-- `inclusive`), in order (expires_at, seq): their remaining leaves the
-- allowance. Appends { id, amount, expires_at } to `out`.
-- Rust twin: Policy::expire_grants (src/engine/policy/grants.rs)
function G.expire(p, bound, inclusive, out)
    local nx = p.gx
    if nx == 0 or p.gn == 0 or nx > bound or (nx == bound and not inclusive) then
        return
    end
    local due = {}
    G.each(p, "x", inclusive and bound + 1 or bound, function(g)
        due[#due + 1] = g
    end)
    local gone = D.ZERO
    for _, g in ipairs(due) do
        if out then
            out[#out + 1] = { id = g.id, amount = D.fmt(g.rem), exp = g.exp }
        end
        gone = plus(gone, g.rem)
        G.unlive(p, g)
        G.bury(p, g, g.exp)
    end
    G.ended(p, due, gone)
end

-- QUOTA.RESET ends every PERIOD grant (O(n): it looks at every live one).
-- Rust twin: Policy::end_period_grants (src/engine/policy/grants.rs)
function G.end_period(p, now, out)
    if p.gn == 0 then
        return
    end
    local due = {}
    G.each(p, "d", 0, function(g)
        if g.per then
            due[#due + 1] = g
        end
    end)
    if #due == 0 then
        return
    end
    table.sort(due, G.by_expiry)
    local gone = D.ZERO
    for _, g in ipairs(due) do
        out[#out + 1] = { id = g.id, amount = D.fmt(g.rem), exp = g.exp }
        gone = plus(gone, g.rem)
        G.unlive(p, g)
        G.bury(p, g, now)
    end
    G.ended(p, due, gone)
end

-- Usage d > 0 added at `now`: the own allowance first, then the grants in
-- draw-down order. Appends { path, policy, grant, amount } to `draws`.
-- Rust twin: Policy::draw_for (src/engine/policy/grants.rs)
function G.draw(p, d, path, draws, now)
    local own = plus(p.limit, p.ro)
    local headroom = D.max(D.sub(own, D.sub(p.used, p.dr)), D.ZERO)
    local rest = D.sub(d, D.min(d, headroom))
    if D.cmp(rest, D.ZERO) <= 0 or p.gn == 0 then
        return
    end
    local gone, wanted = {}, rest
    G.each(p, "d", 0, function(g)
        local take = D.min(rest, g.rem)
        local ng = G.clone(g)
        ng.rem = D.sub(g.rem, take)
        p.dr = plus(p.dr, take)
        rest = D.sub(rest, take)
        draws[#draws + 1] = M("path", display_path(path), "policy", p.name, "grant", g.id, "amount", D.fmt(take))
        if D.is_zero(ng.rem) then
            gone[#gone + 1] = ng
        else
            G.put(p, ng)
        end
        return D.cmp(rest, D.ZERO) <= 0
    end)
    for _, g in ipairs(gone) do
        G.unlive(p, g)
        G.bury(p, g, now)
    end
    G.ended(p, gone, D.sub(wanted, rest))
end

-- Re-arms LOW when the remaining is above it again.
-- Rust twin: Policy::rearm_low (src/engine/policy/grants.rs)
function G.rearm_low(p)
    if p.lowf and (not p.low or D.cmp(remaining(p), p.low) > 0) then
        p.lowf = false
    end
end

-- A stored granted G > 0 of an earlier version (the first release's
-- per-period grant): one PERIOD grant "legacy" (written with the policy's
-- next write).
-- Rust twin: Policy::convert_legacy (src/engine/policy/grants.rs)
function G.legacy(p, amount)
    local own = plus(p.limit, p.ro)
    local drawn = D.min(D.max(D.sub(p.used, own), D.ZERO), amount)
    local rem = D.sub(amount, drawn)
    local w = window_of(p.wenc)
    p.dr, p.ext, p.gn, p.gx, p.gr = drawn, true, 0, 0, D.ZERO
    p.gs = 2
    if D.cmp(rem, D.ZERO) > 0 then
        local exp = 0
        if W.is_calendar(w) then
            local _
            _, exp = W.period_of(w, p.ps)
        end
        G.add(p, { id = "legacy", seq = 1, amount = amount, rem = rem, pri = 50, exp = exp, per = true, at = p.ps })
    end
    refresh(p)
end

-- Applies every reset due at `now`, as if each had run on time. Returns how
-- many periods closed.
-- Rust twin: Policy::roll (src/engine/policy/periods.rs)
local function roll(p, now, out)
    local w = window_of(p.wenc)
    if W.is_rolling(w) then
        while p.bk[1] and W.expired_bucket(w, p.bk[1][1], now) do
            p.used = D.max(D.sub(p.used, p.bk[1][2]), D.ZERO)
            table.remove(p.bk, 1)
        end
        if #p.bk == 0 then
            p.used = D.ZERO
        end
        if D.cmp(p.dr, p.used) > 0 then
            -- Usage that leaves the window takes what grants gave with it.
            p.dr = p.used
            refresh(p)
        end
        G.expire(p, now, true, out)
        return 0
    elseif not W.is_calendar(w) then
        G.expire(p, now, true, out)
        return 0
    end
    local e = period_end(p)
    if now < e then
        if p.gx ~= 0 then
            G.expire(p, now, true, out)
        end
        return 0
    end
    -- A grant expiring exactly at the end is part of the closing period.
    G.expire(p, e, false, out)
    local allow = allowance(p)
    local own = plus(p.limit, p.ro)
    local unused = D.max(D.sub(own, D.sub(p.used, p.dr)), D.ZERO)
    archive(p, closed_of(p.ps, e, p.used, allow, p.ro, p.dr))
    local first = next_allowance(p, unused)
    -- (The period after the closing one by index, not index_of(e): that
    -- would step over an empty period, a day a zone skipped.)
    local i_end, i_now = W.index_of(w, p.ps) + 1, W.index_of(w, now)
    for i = math.max(i_end, i_now - HISTORY_LEN), i_now - 1 do
        local period_to = W.start_of(w, i + 1)
        G.expire(p, period_to, false, out)
        local a = chained_allowance(p, first, i - i_end)
        archive(p, closed_of(W.start_of(w, i), period_to, D.ZERO, plus(a, p.gr), D.sub(a, p.limit)))
    end
    G.expire(p, now, true, out)
    local a = chained_allowance(p, first, i_now - i_end)
    p.ps = W.start_of(w, i_now)
    p.used = D.ZERO
    p.dr = D.ZERO
    p.ro = D.sub(a, p.limit)
    p.fired = 0
    p.overf = false
    refresh(p)
    G.rearm_low(p)
    return i_now - i_end + 1
end

-- A copy that can change without touching `p` (its history entries and D
-- values are never changed in place, so they are shared).
local function copy_policy(p)
    local hist, bk = {}, {}
    for i = 1, #p.hist do
        hist[i] = p.hist[i]
    end
    for i = 1, #p.bk do
        bk[i] = { p.bk[i][1], p.bk[i][2] }
    end
    return {
        name = p.name, metric = p.metric, limit = p.limit, mode = p.mode, wenc = p.wenc, warn = p.warn,
        rollover = p.rollover, service = p.service, model = p.model, gen = p.gen, used = p.used, held = p.held,
        ps = p.ps, ro = p.ro, gr = p.gr, hist = hist, bk = bk, fired = p.fired, overf = p.overf, allow = p.allow,
        src = p.src, dr = p.dr, gn = p.gn, gx = p.gx, low = p.low, lowf = p.lowf, ext = p.ext, gk = p.gk,
        gs = p.gs, inflight = p.inflight,
        gw = G.copy_w(p.gw),
    }
end

-- The policy as it is at `now`, with the resets due applied; the stored
-- one when nothing is due.
-- Rust twin: Policy::at (src/engine/policy/periods.rs)
local function policy_at(p, now)
    if needs_roll(p, now) then
        local c = copy_policy(p)
        roll(c, now)
        return c
    end
    return p
end

-- A rolling window re-arms the thresholds its usage is now below.
-- Rust twin: Policy::rearm (src/engine/policy.rs)
local function rearm(p)
    if not is_rolling(p) then
        return
    end
    for i, pct in ipairs(p.warn) do
        if not crossed(p, pct) then
            p.fired = band(p.fired, bnot(lshift(1, i - 1)))
        end
    end
    if not is_over(p) then
        p.overf = false
    end
    G.rearm_low(p)
end

-- Adds usage at `now`; usage never goes below zero. A rolling window puts it
-- in the current bucket and takes a negative amount from the newest first.
-- Rust twin: Policy::add_used (src/engine/policy.rs)
local function add_used(p, delta, now)
    local updated = D.add_floor_zero(p.used, delta)
    local w = window_of(p.wenc)
    if W.is_rolling(w) then
        local bucket = W.bucket_ms(w)
        local last = p.bk[#p.bk]
        local current = math.max(math.floor(now / bucket), last and last[1] or 0)
        if D.cmp(delta, D.ZERO) > 0 then
            if last and last[1] == current then
                last[2] = plus(last[2], delta)
            else
                p.bk[#p.bk + 1] = { current, delta }
            end
        else
            local give_back = D.neg(delta)
            while D.cmp(give_back, D.ZERO) > 0 do
                local newest = p.bk[#p.bk]
                if not newest then
                    break
                end
                local take = D.min(give_back, newest[2])
                newest[2] = D.sub(newest[2], take)
                give_back = D.sub(give_back, take)
                if D.is_zero(newest[2]) then
                    p.bk[#p.bk] = nil
                end
            end
        end
        local sum = D.ZERO
        for i = 1, #p.bk do
            sum = plus(sum, p.bk[i][2])
        end
        p.used = sum
        if D.cmp(p.dr, sum) > 0 then
            -- Usage given back takes what grants gave with it.
            p.dr = sum
            refresh(p)
        end
    else
        p.used = updated
    end
end

-- Usage that stops at 10^18: a charge checked that it stays within, and a
-- commit is never refused (Policy::add_used_capped).
-- Rust twin: Policy::add_used_capped (src/engine/policy.rs)
local function add_used_capped(p, delta, now)
    if delta.m and p.used.m then
        -- Two small values are each below 2^53 in magnitude: the total
        -- stays below 2^54 < 10^18, so the cap cannot bind (and no limb
        -- arithmetic on 10^18 is needed to see it).
        add_used(p, delta, now)
        return
    end
    add_used(p, D.min(delta, D.sub(D.MAX_TOTAL, p.used)), now)
end

-- QUOTA.RESET: closes the current period now.
-- Rust twin: Policy::reset (src/engine/policy/periods.rs)
local function reset_policy(p, now, out)
    roll(p, now, out)
    local w = window_of(p.wenc)
    local start = p.ps
    if W.is_rolling(w) then
        start = math.max(p.ps, math.max(now - w.ms, 0))
    end
    local allow = allowance(p)
    local closed = closed_of(start, now, p.used, allow, p.ro, p.dr)
    archive(p, closed)
    local own = plus(p.limit, p.ro)
    local unused = D.max(D.sub(own, D.sub(p.used, p.dr)), D.ZERO)
    local a = next_allowance(p, unused)
    p.ps = now
    p.used = D.ZERO
    p.dr = D.ZERO
    p.ro = D.sub(a, p.limit)
    p.bk = {}
    p.fired = 0
    p.overf = false
    refresh(p)
    G.end_period(p, now, out)
    G.rearm_low(p)
    return closed
end

-- QUOTA.SET on an existing policy: resets due first, then the new spec;
-- usage is kept.
-- Rust twin: Policy::update (src/engine/policy.rs)
local function update_policy(p, spec, now)
    roll(p, now)
    local window_changed = spec.wenc ~= p.wenc
    if not same_list(spec.warn, p.warn) then
        p.fired = 0
    end
    p.metric, p.limit, p.mode, p.wenc, p.warn = spec.metric, spec.limit, spec.mode, spec.wenc, spec.warn
    p.rollover, p.service, p.model = spec.rollover, spec.service, spec.model
    p.low, p.inflight = spec.low, spec.inflight
    if p.low then
        p.ext = true
    end
    local w = window_of(p.wenc)
    if p.rollover and W.is_calendar(w) then
        p.ro = D.min(p.ro, D.max(D.sub(p.rollover, p.limit), D.ZERO))
    else
        p.ro = D.ZERO
    end
    if window_changed then
        if W.is_calendar(w) then
            p.ps = W.period_of(w, now)
        else
            p.ps = now
        end
        p.bk = {}
        if W.is_rolling(w) and D.cmp(p.used, D.ZERO) > 0 then
            p.bk[1] = { math.floor(now / W.bucket_ms(w)), p.used }
        end
        -- A rolling window never has drawn above used: clamped now, as
        -- every roll of the new window would, so reads agree.
        if W.is_rolling(w) and D.cmp(p.dr, p.used) > 0 then
            p.dr = p.used
        end
    end
    refresh(p)
    G.rearm_low(p)
end

-- ----- storage -----------------------------------------------------------------

-- Amounts are stored as D values themselves (msgpack keeps their integer
-- fields exactly), an integer amount as the plain number since layout 2
-- (D.stored), so loading a policy parses nothing. A policy is stored as
-- a positional array (smaller and faster than a map); the positions are
-- named after the fields of the Rust Policy (src/engine/policy.rs). A closed
-- period in the history is {start_ms, end_ms, used, allowance, rolled_over}
-- (see closed_of); the rolling buckets are flattened {bucket, used, ...}.
local pack_policy, unpack_policy, array_header, packed_d
do
    local mpack = cmsgpack.pack
    local NAME, METRIC, LIMIT, MODE, WINDOW, WARN, ROLLOVER, SERVICE, MODEL = 1, 2, 3, 4, 5, 6, 7, 8, 9
    local GENERATION, USED, HELD, PERIOD_START, ROLLED_OVER, GRANTED = 10, 11, 12, 13, 14, 15
    local HISTORY, BUCKETS, FIRED, OVER_FIRED = 16, 17, 18, 19
    -- Since layout 3, a plan policy (source "plan") has one more position:
    -- true. A tree policy is stored as before, so a tree that never followed
    -- a plan is stored in layout 2 byte for byte.
    local FROM_PLAN = 20

    -- A msgpack array header for n elements, as cmsgpack writes it.
    function array_header(n)
        if n <= 15 then
            return string.char(0x90 + n)
        end
        return string.char(0xdc, math.floor(n / 256), n % 256)
    end
    -- Since layout 4 (1.4.0), a policy that had a grant or LOW has two more:
    -- FROM_PLAN (true or false) and GRANTS_STATE {drawn, next expiry, live
    -- grants, low, low_fired}; its GRANTED is then the remaining of its live
    -- grants (before, the first release's per-period grant: see G.legacy).
    local GRANTS_STATE = 21
    -- Since layout 5 (1.5.0), an INFLIGHT policy has one more: true, after
    -- FROM_PLAN and GRANTS_STATE (false: none).
    local INFLIGHT = 22
    local POLICY_HEADER, PLAN_POLICY_HEADER = array_header(OVER_FIRED), array_header(FROM_PLAN)
    local EXT_HEADER, INFLIGHT_HEADER = array_header(GRANTS_STATE), array_header(INFLIGHT)

    -- The packed bytes of a D value, kept while the value lives (values
    -- never change, and most of a policy's are the same from one write to
    -- the next).
    local packed_ds = setmetatable({}, { __mode = "k" })
    function packed_d(v)
        local b = packed_ds[v]
        if not b then
            b = mpack(D.stored(v))
            packed_ds[v] = b
        end
        return b
    end

    -- The packed bytes of a policy, as cmsgpack packs the array of its
    -- positions: the header, then NAME .. GENERATION (kept on the policy
    -- while those fields hold the same values: they change only by QUOTA.SET)
    -- and the rest. (INFLIGHT never changes on a policy: a SET that turns it
    -- on or off makes a new one, OPS.put_policy.)
    function pack_policy(p)
        local head = p.packed_head
        if not (head and p.ph_name == p.name and p.ph_metric == p.metric and p.ph_limit == p.limit
                and p.ph_mode == p.mode and p.ph_wenc == p.wenc and p.ph_warn == p.warn
                and p.ph_rollover == p.rollover and p.ph_service == p.service and p.ph_model == p.model
                and p.ph_gen == p.gen and p.ph_src == p.src and p.ph_ext == p.ext) then
            head = (p.inflight and INFLIGHT_HEADER or p.ext and EXT_HEADER or p.src and PLAN_POLICY_HEADER
                or POLICY_HEADER) .. mpack(p.name, p.metric, D.stored(p.limit),
                p.mode, p.wenc, p.warn, p.rollover and D.stored(p.rollover) or false, p.service or false,
                p.model or false, p.gen)
            p.packed_head, p.ph_name, p.ph_metric, p.ph_limit, p.ph_mode = head, p.name, p.metric, p.limit, p.mode
            p.ph_wenc, p.ph_warn, p.ph_rollover, p.ph_service, p.ph_model = p.wenc, p.warn, p.rollover, p.service,
                p.model
            p.ph_gen, p.ph_src, p.ph_ext = p.gen, p.src, p.ext
        end
        local bk = {}
        for i = 1, #p.bk do
            bk[#bk + 1] = p.bk[i][1]
            bk[#bk + 1] = D.stored(p.bk[i][2])
        end
        local packed = head .. packed_d(p.used) .. packed_d(p.held) .. mpack(p.ps) .. packed_d(p.ro)
            .. packed_d(p.gr) .. mpack(p.hist, bk, p.fired, p.overf)
        if p.inflight then
            return packed .. (p.src and "\195" or "\194") .. (p.ext and mpack({ D.stored(p.dr), p.gx, p.gn,
                p.low and D.stored(p.low) or false, p.lowf, p.gs }) or "\194") .. "\195"
        end
        if p.ext then
            return packed .. (p.src and "\195" or "\194") .. mpack({ D.stored(p.dr), p.gx, p.gn,
                p.low and D.stored(p.low) or false, p.lowf, p.gs })
        end
        if p.src then
            return packed .. "\195"
        end
        return packed
    end

    function unpack_policy(t)
        local bk = {}
        local flat = t[BUCKETS]
        for i = 1, #flat, 2 do
            bk[#bk + 1] = { flat[i], D.loaded(flat[i + 1]) }
        end
        local limit, ro, gr = D.loaded(t[LIMIT]), D.loaded(t[ROLLED_OVER]), D.loaded(t[GRANTED])
        local ext = t[GRANTS_STATE]
        local p = {
            name = t[NAME], metric = t[METRIC], limit = limit, mode = t[MODE], wenc = t[WINDOW], warn = t[WARN],
            rollover = t[ROLLOVER] and D.loaded(t[ROLLOVER]), service = t[SERVICE] or nil, model = t[MODEL] or nil,
            gen = t[GENERATION], used = D.loaded(t[USED]), held = D.loaded(t[HELD]), ps = t[PERIOD_START], ro = ro,
            gr = gr, hist = t[HISTORY], bk = bk, fired = t[FIRED], overf = t[OVER_FIRED],
            allow = false, src = t[FROM_PLAN] and "plan" or nil,
            dr = D.ZERO, gn = 0, gx = 0, low = nil, lowf = false, ext = false, gs = 1,
            inflight = t[INFLIGHT] == true or nil,
        }
        if ext then
            p.dr, p.gx, p.gn, p.low, p.lowf, p.ext = D.loaded(ext[1]), ext[2], ext[3], ext[4] and D.loaded(ext[4]) or nil,
                ext[5], true
            p.gs = ext[6] or 1
        elseif not D.is_zero(gr) then
            p.gr = D.ZERO
            refresh(p)
            G.legacy(p, gr)
        end
        refresh(p)
        return p
    end
end

-- ----- views -----------------------------------------------------------------

local function push_period(fields, ps, pe)
    if ps then
        fields[#fields + 1] = "period_start"
        fields[#fields + 1] = ps
        fields[#fields + 1] = "period_end"
        fields[#fields + 1] = pe
    end
end

-- A policy as QUOTA.GET and QUOTA.TREE show it (rolled by the caller).
local function policy_reply(p, now)
    local w = window_of(p.wenc)
    local warn = {}
    for i, pct in ipairs(p.warn) do
        warn[i] = pct
    end
    local allow = allowance(p)
    local f = M("policy", p.name, "metric", p.metric, "mode", p.mode, "window", W.label(w), "limit", D.fmt(allow))
    -- The LIMIT it was set with, when rollover or grants make the allowance
    -- differ (Rust twin: PolicyView::base_limit).
    if not D.eq(allow, p.limit) then
        f[#f + 1] = "base_limit"
        f[#f + 1] = D.fmt(p.limit)
    end
    local n = #f
    f[n + 1], f[n + 2], f[n + 3], f[n + 4], f[n + 5], f[n + 6] =
        "used", D.fmt(p.used), "held", D.fmt(p.held), "remaining", D.fmt(remaining(p))
    f[n + 7], f[n + 8], f[n + 9], f[n + 10] = "status", status(p), "warn", warn
    -- Rust twin: push_zone (src/module/commands/read.rs).
    local anchor = W.anchor_shown(w)
    if anchor then
        f[#f + 1] = "anchor"
        f[#f + 1] = anchor
    end
    local tz = W.tz_name(w)
    if tz then
        f[#f + 1] = "tz"
        f[#f + 1] = tz
        if W.tz_named(w) then
            f[#f + 1] = "tzdata"
            f[#f + 1] = W.tzdata_version()
        end
    end
    if p.rollover then
        f[#f + 1] = "rollover"
        f[#f + 1] = D.fmt(p.rollover)
    end
    if p.service then
        f[#f + 1] = "service"
        f[#f + 1] = p.service
    end
    if p.model then
        f[#f + 1] = "model"
        f[#f + 1] = p.model
    end
    if p.low then
        f[#f + 1] = "low"
        f[#f + 1] = D.fmt(p.low)
    end
    if p.gn > 0 then
        f[#f + 1] = "granted"
        f[#f + 1] = D.fmt(p.gr)
    end
    if p.inflight then
        f[#f + 1] = "inflight"
        f[#f + 1] = 1
    end
    push_period(f, shown_period(p, now))
    return f
end

-- A closed period (a HISTORY entry, QUOTA.RESET's reply) of a policy with
-- window `w`: its `label` (calendar windows) follows `end` (Rust twin: closed_reply,
-- src/module/commands/read.rs).
local function closed_reply(c, w)
    local label = W.period_label(w, c[1], c[2])
    if label then
        return M("start", c[1], "end", c[2], "label", label, "used", c[3], "allowance", c[4], "rolled_over", c[5],
            "granted", c[6] or "0")
    end
    return M("start", c[1], "end", c[2], "used", c[3], "allowance", c[4], "rolled_over", c[5], "granted", c[6] or "0")
end

-- 35_plan comes before the sections whose checks a plan's JSON uses: they
-- are handed over here.
PLAN.late = {
    max_depth = MAX_DEPTH_HARD, segment_error = check_segment, depth_of = depth_of, parse_metric = parse_metric,
    parse_stored_metric = parse_stored_metric,
    parse_name = parse_name, parse_mode = parse_mode, parse_warn = parse_warn, validate_spec = validate_spec,
    default_warn = DEFAULT_WARN,
}
