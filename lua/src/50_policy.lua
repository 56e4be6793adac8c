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

-- spec = {metric, limit, mode, wenc, warn, rollover (D|false), service, model}
-- Rust twin: PolicySpec::validate (src/engine/policy.rs)
local function validate_spec(spec)
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
local function refresh(p)
    p.allow = plus(plus(p.limit, p.ro), p.gr)
end

-- Rust twin: Policy::allowance (src/engine/policy.rs)
local function allowance(p)
    return p.allow
end

-- Rust twin: Policy::level (src/engine/policy.rs)
local function level(p)
    if p.mode == "strict" then
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
    if p.mode == "strict" then
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
        allow = spec.limit,
    }
end

-- Rust twin: Policy::archive (src/engine/policy/periods.rs)
local function archive(p, closed)
    tinsert(p.hist, 1, closed)
    while #p.hist > HISTORY_LEN do
        p.hist[#p.hist] = nil
    end
end

-- A closed period as stored: start, end, used, allowance, rolled over.
local function closed_of(start_ms, end_ms, used, allow, rolled)
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

-- Applies every reset due at `now`, as if each had run on time. Returns how
-- many periods closed.
-- Rust twin: Policy::roll (src/engine/policy/periods.rs)
local function roll(p, now)
    local w = window_of(p.wenc)
    if W.is_rolling(w) then
        while p.bk[1] and W.expired_bucket(w, p.bk[1][1], now) do
            p.used = D.max(D.sub(p.used, p.bk[1][2]), D.ZERO)
            table.remove(p.bk, 1)
        end
        if #p.bk == 0 then
            p.used = D.ZERO
        end
        return 0
    elseif not W.is_calendar(w) then
        return 0
    end
    local e = period_end(p)
    if now < e then
        return 0
    end
    local allow = allowance(p)
    local unused = D.max(D.sub(allow, p.used), D.ZERO)
    archive(p, closed_of(p.ps, e, p.used, allow, p.ro))
    local first = next_allowance(p, unused)
    local i_end, i_now = W.index_of(w, e), W.index_of(w, now)
    for i = math.max(i_end, i_now - HISTORY_LEN), i_now - 1 do
        local a = chained_allowance(p, first, i - i_end)
        archive(p, closed_of(W.start_of(w, i), W.start_of(w, i + 1), D.ZERO, a, D.sub(a, p.limit)))
    end
    local a = chained_allowance(p, first, i_now - i_end)
    p.ps = W.start_of(w, i_now)
    p.used = D.ZERO
    p.gr = D.ZERO
    p.ro = D.sub(a, p.limit)
    p.fired = 0
    p.overf = false
    refresh(p)
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
        src = p.src,
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

-- Rust twin: Policy::grant (src/engine/policy.rs)
local function grant_policy(p, amount, now)
    roll(p, now)
    p.gr = D.add(p.gr, amount)
    refresh(p)
    D.add(allowance(p), D.ZERO)
end

-- QUOTA.RESET: closes the current period now.
-- Rust twin: Policy::reset (src/engine/policy/periods.rs)
local function reset_policy(p, now)
    roll(p, now)
    local w = window_of(p.wenc)
    local start = p.ps
    if W.is_rolling(w) then
        start = math.max(p.ps, math.max(now - w.ms, 0))
    end
    local allow = allowance(p)
    local closed = closed_of(start, now, p.used, allow, p.ro)
    archive(p, closed)
    local unused = D.max(D.sub(allow, p.used), D.ZERO)
    local a = next_allowance(p, unused)
    p.ps = now
    p.used = D.ZERO
    p.gr = D.ZERO
    p.ro = D.sub(a, p.limit)
    p.bk = {}
    p.fired = 0
    p.overf = false
    refresh(p)
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
    end
    refresh(p)
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
    local POLICY_HEADER, PLAN_POLICY_HEADER = array_header(OVER_FIRED), array_header(FROM_PLAN)

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
    -- and the rest.
    function pack_policy(p)
        local head = p.packed_head
        if not (head and p.ph_name == p.name and p.ph_metric == p.metric and p.ph_limit == p.limit
                and p.ph_mode == p.mode and p.ph_wenc == p.wenc and p.ph_warn == p.warn
                and p.ph_rollover == p.rollover and p.ph_service == p.service and p.ph_model == p.model
                and p.ph_gen == p.gen and p.ph_src == p.src) then
            head = (p.src and PLAN_POLICY_HEADER or POLICY_HEADER) .. mpack(p.name, p.metric, D.stored(p.limit),
                p.mode, p.wenc, p.warn, p.rollover and D.stored(p.rollover) or false, p.service or false,
                p.model or false, p.gen)
            p.packed_head, p.ph_name, p.ph_metric, p.ph_limit, p.ph_mode = head, p.name, p.metric, p.limit, p.mode
            p.ph_wenc, p.ph_warn, p.ph_rollover, p.ph_service, p.ph_model = p.wenc, p.warn, p.rollover, p.service,
                p.model
            p.ph_gen, p.ph_src = p.gen, p.src
        end
        local bk = {}
        for i = 1, #p.bk do
            bk[#bk + 1] = p.bk[i][1]
            bk[#bk + 1] = D.stored(p.bk[i][2])
        end
        local packed = head .. packed_d(p.used) .. packed_d(p.held) .. mpack(p.ps) .. packed_d(p.ro)
            .. packed_d(p.gr) .. mpack(p.hist, bk, p.fired, p.overf)
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
        return {
            name = t[NAME], metric = t[METRIC], limit = limit, mode = t[MODE], wenc = t[WINDOW], warn = t[WARN],
            rollover = t[ROLLOVER] and D.loaded(t[ROLLOVER]), service = t[SERVICE] or nil, model = t[MODEL] or nil,
            gen = t[GENERATION], used = D.loaded(t[USED]), held = D.loaded(t[HELD]), ps = t[PERIOD_START], ro = ro,
            gr = gr, hist = t[HISTORY], bk = bk, fired = t[FIRED], overf = t[OVER_FIRED],
            allow = plus(plus(limit, ro), gr), src = t[FROM_PLAN] and "plan" or nil,
        }
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
    local f = M("policy", p.name, "metric", p.metric, "mode", p.mode, "window", W.label(w),
        "limit", D.fmt(allowance(p)), "used", D.fmt(p.used), "held", D.fmt(p.held), "remaining", D.fmt(remaining(p)),
        "status", status(p), "warn", warn)
    local anchor = W.anchor(w)
    if anchor then
        f[#f + 1] = "anchor"
        f[#f + 1] = anchor
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
    push_period(f, shown_period(p, now))
    return f
end

local function closed_reply(c)
    return M("start", c[1], "end", c[2], "used", c[3], "allowance", c[4], "rolled_over", c[5])
end

-- 35_plan comes before the sections whose checks a plan's JSON uses: they
-- are handed over here.
PLAN.late = {
    max_depth = MAX_DEPTH_HARD, segment_error = check_segment, depth_of = depth_of, parse_metric = parse_metric,
    parse_name = parse_name, parse_mode = parse_mode, parse_warn = parse_warn, validate_spec = validate_spec,
    default_warn = DEFAULT_WARN,
}
