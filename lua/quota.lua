#!lua name=quota
-- quota as a Redis Functions library: hierarchical usage quotas for hosts
-- where modules cannot be loaded. Generated from lua/src/*.lua by
-- `make lua`; edit those files, not lua/quota.lua.
--
-- Sections (concatenated in file-name order into one chunk):
--   00_header    version, settings, errors, small helpers shared by all
--   10_decimal   D: exact decimals (amounts) without floats
--   20_window    W: calendar and rolling windows
--   30_pricing   P: the price book and USAGE pricing
--   40_...       the tree, policies, holds, events, replies
--   90_register  redis.register_function for every command
--
-- Conventions every section follows:
--   * An error is raised with fail("ERR syntax: ..."): a table {err = text}
--     that the wrapper in 90_register turns into a clean error reply. Texts
--     are the module's, word for word.
--   * Nothing is written before every argument has been checked, so an error
--     changes nothing (functions cannot roll back).
--   * No floats reach an amount: amounts are D values; plain Lua numbers are
--     used only for integers well inside 2^53 (times in ms, counts).

-- 1.1.0: stored layout 2 (see 60_tree); reads layout 1 and rewrites it.
-- 1.2.0: layout 2, with "#" saying what is due (see read_meta): read by
-- 1.1.0, which drops what it does not know when it writes the tree.
-- 1.3.0: plans (SPEC §6): a tree that follows or followed one is stored in
-- layout 3 ("#plan", plan policies, node epochs), which 1.2.0 and 1.1.0
-- refuse; every other tree stays layout 2 byte for byte.
-- 1.4.0: credits and grants (SPEC §7): a tree that has had a grant or LOW
-- is stored in layout 4 (policy grant state, the grants hash), which 1.3.0
-- and before refuse; every other tree keeps its layout byte for byte.
-- 1.5.0: access rules and INFLIGHT policies (SPEC §8): a tree that has had
-- a rule or an INFLIGHT policy is stored in layout 5 (node rules, the
-- INFLIGHT flag), which 1.4.0 and before refuse; every other tree keeps its
-- layout byte for byte.
-- 1.6.0: usage over time (SPEC §9): each node's spent per hour and day in
-- the companion hash {tag}quota:K:usage (no layout change: 1.5.0 ignores it
-- and records nothing there).
-- 1.6.0: META, the ledger, labels and archive (SPEC §9-§10): a tree that
-- has had labels, an archived node or a hold with META is stored in layout
-- 6, which 1.5.0 and before refuse; every other tree keeps its layout.
-- 1.7.0: QUOTA.TREE … AFTER name (a page of a node's children) and
-- `base_limit` in policy maps (the LIMIT set, when the allowance differs);
-- no layout change: 1.6.0 reads and writes the same keys.
-- 1.8.0: billing cycles in time zones (issue 21): TZ and week/year ANCHOR;
-- a tree that has had such a window is written in layout 7, which 1.7.0
-- and before refuse; every other tree keeps its layout.
local VERSION = "1.8.0"

-- The test clock (FCALL quota_debug 0 CLOCK SET|ADVANCE|GET) works only when
-- this line says true. `quota-load --test-clock` loads the library with it
-- switched on; nothing at run time can switch it on.
local TEST_CLOCK = false
-- Where the test clock stands until CLOCK SET or ADVANCE moves it (the key
-- quota:clock): `quota-load --test-clock` writes the server's time at load
-- here, so the clock starts frozen at load time, as the module's does.
local TEST_CLOCK_START = 0

-- Settings: the module's defaults (module arguments there; constants here).
local SETTINGS = {
    default_ttl = 60000,
    tombstone_ttl = 86400000,
    max_paths = 100000,
    max_policies = 16,
    max_holds = 1000000,
    max_depth = 16,
    max_items = 1000,
    events_len = 1000,
    usage_hours = 24,
    usage_days = 35,
    usage_series = 32,
    ledger_len = 0,
}

-- The text of the error being raised. Redis's pcall hands back an error's
-- message, not the raised value, so the wrapper reads it from here.
local failure = nil
-- Whether that text is Redis's own (see fail_as_redis).
local failure_as_redis = false

local function fail(text)
    failure = text
    error({ err = text }, 0)
end

-- An error whose text is Redis's own, quoting the client's bytes as Redis
-- does: the guard leaves it as it is. Only for texts the module's commands
-- get from Redis itself.
local function fail_as_redis(text)
    failure, failure_as_redis = text, true
    error({ err = text }, 0)
end

-- The tree's key is a hash of its nodes. Its companion keys (holds, expiry
-- index, finished ids, events) are named "{tag}quota:<key><suffix>", where
-- tag is the key's own hash tag or, without one, the whole key: they hash to
-- the key's slot (Redis Cluster), and no two trees share a companion.
local function hash_tag(key)
    local open = string.find(key, "{", 1, true)
    if open then
        local close = string.find(key, "}", open + 1, true)
        if close and close > open + 1 then
            return string.sub(key, open + 1, close - 1)
        end
    end
    if string.find(key, "}", 1, true) then
        fail("ERR syntax: a tree key with '}' needs a hash tag, such as {acme}" .. key)
    end
    return key
end

local function companion(key, suffix)
    return "{" .. hash_tag(key) .. "}quota:" .. key .. suffix
end

-- While FUNCTION LOAD runs the library, Redis lets it see only `redis`: the
-- standard libraries (string, table, math, bit, cmsgpack) exist only while a
-- function runs. So the sections below are the body of `build`, which the
-- first call of any function runs once; what it builds lives as long as
-- the library.
local function build()

-- ---------------------------------------------------------------------------
-- 10_decimal  D: exact decimals (port of src/engine/amount.rs)
--
-- A value is an immutable table, always normalized (no trailing zeros in the
-- mantissa when the scale is above 0; zero is D.ZERO, scale 0):
--   small form  {m = mantissa, s = scale}          |m| < 2^53, an exact integer
--   big form    {l = limbs, neg = bool, s = scale} |mantissa| >= 2^53, limbs of
--               base 10^7, least significant first
-- value = mantissa * 10^-s. Every value whose mantissa fits below 2^53 is in
-- the small form, so the hot path (amounts of a few digits and decimals) is
-- plain double arithmetic on exact integers, checked against 2^53 before it
-- is trusted; anything larger falls back to limb arithmetic. No float ever
-- holds a fraction.
--
-- API (values are D values; text is a Lua string):
--   D.parse(text) -> v               client amount (amount::parse); fails with
--                                    "ERR invalid amount: ..." texts
--   D.parse_non_negative(text) -> v  ... and "'x' must not be negative"
--   D.check(text, non_negative) -> v | nil, why
--                                    the same without failing: why is the
--                                    message after "ERR invalid amount: "
--   D.of(text) -> v                  trusted text from storage (no bounds)
--   D.fmt(v) -> text                 canonical text (amount::format)
--   D.ZERO, D.ONE, D.MAX_INPUT (10^15), D.MAX_TOTAL (10^18)
--   D.from_int(n)                    n: an integer Lua number
--   D.add(a, b)                      exact; fails "ERR limit: amount total
--                                    would exceed 10^18" beyond 10^18
--   D.check_add(a, b)               fails as D.add(a, b) would, makes nothing
--   D.stored(v) -> number | v        the form stored (an integer below 2^53
--                                    as the number); D.loaded(x) -> v reads it
--   D.stored_ok(x)                   x is in a stored form (checks stored
--                                    data the library may not have written)
--   D.add_floor_zero(total, delta)   add, then 0 if negative
--   D.plus(a, b), D.sub(a, b)        exact, unchecked
--   D.cmp(a, b) -> -1|0|1; D.eq(a, b); D.is_zero(v); D.is_neg(v) (< 0)
--   D.neg(v), D.abs(v), D.min(a, b), D.max(a, b)
--   D.mul(a, b)                      exact product, any scale
--   D.div_pow10(v, k)                exact v / 10^k (k >= 0)
--   D.round_dp(v, dp)                half away from zero, to dp places
--   D.scale(v)                       decimals of the normalized value
--   D.gt_max_input(v)                |v| > 10^15
--   D.fit96(v) -> v | nil            what rust_decimal keeps of an exact
--                                    result: rounded half to even to the most
--                                    places (<= 28) whose mantissa stays
--                                    below 2^96; nil when even the integer
--                                    part does not fit (its "overflow")
--   D.to_number(v)                   nearest double (display/statistics only)
--   D.clip(text)                     names::clip: user text quoted in errors
-- ---------------------------------------------------------------------------

local D = {}

do
    local fmod, floor = math.fmod, math.floor
    local sbyte, ssub, sfind, smatch, sformat, srep = string.byte, string.sub, string.find, string.match,
        string.format, string.rep
    local tconcat = table.concat

    local LIMIT = 9007199254740992 -- 2^53: small mantissas stay below
    local BASE = 10000000 -- limb base 10^7 (limb products < 2^53)
    local BASE_DIGITS = 7
    local P10 = {} -- exact powers of ten as doubles (up to 10^22)
    for k = 0, 22 do
        P10[k] = 10 ^ k
    end

    local ZERO = { m = 0, s = 0 }
    D.ZERO = ZERO

    -- ----- names::clip ------------------------------------------------------
    -- User text quoted in an error: at most 60 characters (57 and "..."),
    -- each outside printable ASCII shown as "?" (error replies stay ASCII,
    -- as the module's do). The one copy every section uses.
    -- Rust twin: names::clip (src/engine/names.rs)
    local function clip(text)
        if #text <= 60 and not sfind(text, "[^ -~]") then
            return text
        end
        local chars = {}
        for ch in string.gmatch(text, "[%z\1-\127\192-\255][\128-\191]*") do
            if #ch > 1 or sfind(ch, "[^ -~]") then
                ch = "?"
            end
            chars[#chars + 1] = ch
        end
        if #chars > 60 then
            return tconcat(chars, "", 1, 57) .. "..."
        end
        return tconcat(chars)
    end
    D.clip = clip

    -- ----- limb arithmetic on magnitudes (arrays, least significant first) --
    local function limbs_of(x) -- 0 <= x < 2^53, an integer
        local l, n = {}, 0
        while x > 0 do
            local r = fmod(x, BASE)
            n = n + 1
            l[n] = r
            x = (x - r) / BASE
        end
        return l
    end

    local function num_of(l) -- the magnitude as a number if below 2^53, else nil
        local n = #l
        if n > 3 then
            return nil
        end
        local x = 0
        for i = n, 1, -1 do
            x = x * BASE + l[i]
        end
        if x < LIMIT then
            return x
        end
        return nil
    end

    local function trim(l)
        local n = #l
        while n > 0 and l[n] == 0 do
            l[n] = nil
            n = n - 1
        end
        return l
    end

    local function cmp_mag(a, b)
        local na, nb = #a, #b
        if na ~= nb then
            return na < nb and -1 or 1
        end
        for i = na, 1, -1 do
            local x, y = a[i], b[i]
            if x ~= y then
                return x < y and -1 or 1
            end
        end
        return 0
    end

    local function add_mag(a, b)
        local r, carry = {}, 0
        local n = #a > #b and #a or #b
        for i = 1, n do
            local x = (a[i] or 0) + (b[i] or 0) + carry
            if x >= BASE then
                r[i] = x - BASE
                carry = 1
            else
                r[i] = x
                carry = 0
            end
        end
        if carry > 0 then
            r[n + 1] = carry
        end
        return r
    end

    local function sub_mag(a, b) -- a >= b
        local r, borrow = {}, 0
        for i = 1, #a do
            local x = a[i] - (b[i] or 0) - borrow
            if x < 0 then
                r[i] = x + BASE
                borrow = 1
            else
                r[i] = x
                borrow = 0
            end
        end
        return trim(r)
    end

    local function mul_mag(a, b)
        local na, nb = #a, #b
        if na == 0 or nb == 0 then
            return {}
        end
        local r = {}
        for i = 1, na + nb do
            r[i] = 0
        end
        for i = 1, na do
            local x = a[i]
            if x ~= 0 then
                local carry = 0
                for j = 1, nb do
                    local t = r[i + j - 1] + x * b[j] + carry -- < 2^53
                    local lo = fmod(t, BASE)
                    r[i + j - 1] = lo
                    carry = (t - lo) / BASE
                end
                local k = i + nb
                while carry > 0 do
                    local t = r[k] + carry
                    local lo = fmod(t, BASE)
                    r[k] = lo
                    carry = (t - lo) / BASE
                    k = k + 1
                end
            end
        end
        return trim(r)
    end

    local function mul_small_mag(a, k) -- 0 < k <= 10^7
        local r, carry = {}, 0
        for i = 1, #a do
            local t = a[i] * k + carry
            local lo = fmod(t, BASE)
            r[i] = lo
            carry = (t - lo) / BASE
        end
        local n = #a
        while carry > 0 do
            local lo = fmod(carry, BASE)
            n = n + 1
            r[n] = lo
            carry = (carry - lo) / BASE
        end
        return r
    end

    local function shift_mag(a, k) -- a * 10^k
        if k <= 0 or #a == 0 then
            return a
        end
        local whole = floor(k / BASE_DIGITS)
        local rest = k - whole * BASE_DIGITS
        local r = a
        if whole > 0 then
            r = {}
            for i = 1, whole do
                r[i] = 0
            end
            for i = 1, #a do
                r[whole + i] = a[i]
            end
        end
        if rest > 0 then
            r = mul_small_mag(r, P10[rest])
        end
        return r
    end

    local function digits_of(l) -- decimal text of a magnitude ("0" for zero)
        local n = #l
        if n == 0 then
            return "0"
        end
        local parts = { sformat("%d", l[n]) }
        for i = n - 1, 1, -1 do
            parts[#parts + 1] = sformat("%07d", l[i])
        end
        return tconcat(parts)
    end

    local function mag_of_digits(ds) -- decimal digits -> limbs
        local l, n = {}, 0
        local e = #ds
        while e > 0 do
            local b = e - BASE_DIGITS + 1
            if b < 1 then
                b = 1
            end
            n = n + 1
            l[n] = tonumber(ssub(ds, b, e))
            e = b - 1
        end
        return trim(l)
    end

    -- ----- construction ------------------------------------------------------
    local function mk_small(m, s) -- exact integer |m| < 2^53
        if m == 0 then
            return ZERO
        end
        while s > 0 and m % 10 == 0 do
            m = m / 10
            s = s - 1
        end
        return { m = m, s = s }
    end

    -- Normalizes sign, magnitude and scale into a value.
    local function pack(neg, l, s)
        l = trim(l)
        if #l == 0 then
            return ZERO
        end
        if s > 0 and l[1] % 10 == 0 then
            -- strip trailing zeros: whole zero limbs, then single digits
            local ds = digits_of(l)
            local cut = #smatch(ds, "0*$")
            if cut > s then
                cut = s
            end
            l = mag_of_digits(ssub(ds, 1, #ds - cut))
            s = s - cut
        end
        local x = num_of(l)
        if x then
            return { m = neg and -x or x, s = s }
        end
        return { l = l, neg = neg, s = s }
    end

    local function unpack_v(v) -- neg, limbs, scale
        local m = v.m
        if m then
            if m < 0 then
                return true, limbs_of(-m), v.s
            end
            return false, limbs_of(m), v.s
        end
        return v.neg, v.l, v.s
    end

    -- ----- text ----------------------------------------------------------------
    local function place_point(ds, s) -- digits and scale -> "i.fff"
        if s == 0 then
            return ds
        end
        local n = #ds
        if n <= s then
            return "0." .. srep("0", s - n) .. ds
        end
        return ssub(ds, 1, n - s) .. "." .. ssub(ds, n - s + 1)
    end

    -- "%d.%0<s>d" by scale: one string.format for a small value (%d is
    -- exact below 2^53: Lua 5.1 formats it as a C long)
    local FMT, FMT_NEG = {}, {}
    for k = 1, 15 do
        FMT[k] = "%d.%0" .. k .. "d"
        FMT_NEG[k] = "-%d.%0" .. k .. "d"
    end

    -- Rust twin: amount::format and Text::write (src/engine/amount.rs)
    function D.fmt(v)
        local m = v.m
        if m then
            local s = v.s
            if s == 0 then
                return sformat("%d", m)
            end
            local a = m < 0 and -m or m
            if s <= 15 then
                local d = P10[s]
                local r = fmod(a, d)
                if m < 0 then
                    return sformat(FMT_NEG[s], (a - r) / d, r)
                end
                return sformat(FMT[s], (a - r) / d, r)
            end
            if m < 0 then
                return "-" .. place_point(sformat("%d", a), s)
            end
            return place_point(sformat("%d", a), s)
        end
        local t = place_point(digits_of(v.l), v.s)
        if v.neg then
            return "-" .. t
        end
        return t
    end

    -- digits (no sign, no point, leading zeros allowed) and scale -> value
    local function from_digits(neg, ds, s)
        ds = smatch(ds, "^0*(.*)$")
        if #ds <= 15 then
            local m = tonumber(ds) or 0
            return mk_small(neg and -m or m, s)
        end
        return pack(neg, mag_of_digits(ds), s)
    end

    -- 2^96 - 1: the largest mantissa rust_decimal holds
    local MAX96 = "79228162514264337593543950335"
    local TWO96 = "79228162514264337593543950336"

    local function digits_gt(a, b) -- equal-length digit strings: a > b
        for i = 1, #a, 14 do
            local x, y = tonumber(ssub(a, i, i + 13)), tonumber(ssub(b, i, i + 13))
            if x ~= y then
                return x > y
            end
        end
        return false
    end

    local MAX_INPUT_DIGITS = 16 -- 10^15 has 16 digits
    local memo, memo_n = {}, 0 -- text -> value of recent valid client amounts

    -- amount::parse without failing: value, or nil and the reason.
    local function check(text, non_negative)
        local v = memo[text]
        if not v then
            local n = #text
            if n == 0 or n > 32 then
                return nil, "'" .. clip(text) .. "' is not a decimal number"
            end
            local sign, ip, fp = smatch(text, "^(%-?)([0-9]+)%.([0-9]+)$")
            if not sign then
                sign, ip = smatch(text, "^(%-?)([0-9]+)$")
                if not sign then
                    return nil, "'" .. clip(text) .. "' is not a decimal number"
                end
                fp = ""
            end
            if #fp > 10 then
                return nil, "'" .. clip(text) .. "' has more than 10 decimal places"
            end
            local ds = smatch(ip .. fp, "^0*(.*)$")
            if #ds > 29 or (#ds == 29 and digits_gt(ds, MAX96)) then
                return nil, "'" .. clip(text) .. "' is not a decimal number"
            end
            v = from_digits(sign == "-", ds, #fp)
            -- only 16 or more integer digits can exceed 10^15
            if #ds - #fp >= MAX_INPUT_DIGITS and D.gt_max_input(v) then
                return nil, "'" .. clip(text) .. "' is larger than 10^15 in absolute value"
            end
            if memo_n >= 4096 then
                memo, memo_n = {}, 0
            end
            memo[text] = v
            memo_n = memo_n + 1
        end
        if non_negative and D.is_neg(v) then
            return nil, "'" .. clip(text) .. "' must not be negative"
        end
        return v
    end
    D.check = check

    -- Client amounts read lately, by text (values never change; a request
    -- names the same few amounts again and again).
    local parsed, parsed_n = { [true] = {}, [false] = {} }, 0

    local function parse(text, non_negative)
        local v = parsed[non_negative][text]
        if v then
            return v
        end
        local why
        v, why = check(text, non_negative)
        if not v then
            fail("ERR invalid amount: " .. why)
        end
        if parsed_n >= 1024 then
            parsed, parsed_n = { [true] = {}, [false] = {} }, 0
        end
        parsed[non_negative][text] = v
        parsed_n = parsed_n + 1
        return v
    end

    -- Rust twin: amount::parse (src/engine/amount.rs)
    function D.parse(text)
        return parse(text, false)
    end

    -- Rust twin: amount::parse_non_negative (src/engine/amount.rs)
    function D.parse_non_negative(text)
        return parse(text, true)
    end

    local of_memo, of_n = {}, 0

    function D.of(text)
        local v = of_memo[text]
        if v then
            return v
        end
        local sign, ip, fp = smatch(text, "^(%-?)([0-9]+)%.?([0-9]*)$")
        if not sign then
            fail("ERR invalid amount: stored amount '" .. clip(text) .. "' is not a decimal number")
        end
        v = from_digits(sign == "-", ip .. fp, #fp)
        if of_n >= 4096 then
            of_memo, of_n = {}, 0
        end
        of_memo[text] = v
        of_n = of_n + 1
        return v
    end

    function D.from_int(n)
        if n > -LIMIT and n < LIMIT then
            if n == 0 then
                return ZERO
            end
            return { m = n, s = 0 }
        end
        if n < 0 then
            return from_digits(true, sformat("%.0f", -n), 0)
        end
        return from_digits(false, sformat("%.0f", n), 0)
    end

    D.ONE = { m = 1, s = 0 }
    D.MAX_INPUT = { m = 1e15, s = 0 }
    D.MAX_TOTAL = from_digits(false, "1000000000000000000", 0)

    -- ----- predicates and sign -------------------------------------------------
    function D.is_zero(v)
        return v.m == 0
    end

    function D.is_neg(v)
        local m = v.m
        if m then
            return m < 0
        end
        return v.neg
    end

    function D.scale(v)
        return v.s
    end

    function D.neg(v)
        local m = v.m
        if m then
            if m == 0 then
                return v
            end
            return { m = -m, s = v.s }
        end
        return { l = v.l, neg = not v.neg, s = v.s }
    end

    function D.abs(v)
        if D.is_neg(v) then
            return D.neg(v)
        end
        return v
    end

    -- ----- addition and comparison ---------------------------------------------
    local function add_general(a, b, flip)
        local na, la, sa = unpack_v(a)
        local nb, lb, sb = unpack_v(b)
        if flip then
            nb = not nb
        end
        local s = sa
        if sb > sa then
            s = sb
            la = shift_mag(la, sb - sa)
        elseif sa > sb then
            lb = shift_mag(lb, sa - sb)
        end
        if na == nb then
            return pack(na, add_mag(la, lb), s)
        end
        local c = cmp_mag(la, lb)
        if c == 0 then
            return ZERO
        elseif c > 0 then
            return pack(na, sub_mag(la, lb), s)
        end
        return pack(nb, sub_mag(lb, la), s)
    end

    -- a + b (flip: a - b), exact
    local function add_raw(a, b, flip)
        local am, bm = a.m, b.m
        if am and bm then
            if flip then
                bm = -bm
            end
            local as, bs = a.s, b.s
            if as == bs then
                local r = am + bm
                if r < LIMIT and r > -LIMIT then
                    return mk_small(r, as)
                end
            elseif as < bs then
                local x = am * (P10[bs - as] or 1e300)
                if x < LIMIT and x > -LIMIT then
                    local r = x + bm
                    if r < LIMIT and r > -LIMIT then
                        return mk_small(r, bs)
                    end
                end
            else
                local y = bm * (P10[as - bs] or 1e300)
                if y < LIMIT and y > -LIMIT then
                    local r = am + y
                    if r < LIMIT and r > -LIMIT then
                        return mk_small(r, as)
                    end
                end
            end
        end
        return add_general(a, b, flip)
    end

    function D.plus(a, b)
        return add_raw(a, b, false)
    end

    function D.sub(a, b)
        return add_raw(a, b, true)
    end

    local function cmp(a, b)
        local am, bm = a.m, b.m
        if am and bm then
            local as, bs = a.s, b.s
            if as == bs then
                if am == bm then
                    return 0
                end
                return am < bm and -1 or 1
            end
            -- different scales: the signs often decide
            if am <= 0 and bm > 0 then
                return -1
            elseif am >= 0 and bm < 0 then
                return 1
            end
            local x, y = am, bm
            if as < bs then
                x = am * (P10[bs - as] or 1e300)
            else
                y = bm * (P10[as - bs] or 1e300)
            end
            if x < LIMIT and x > -LIMIT and y < LIMIT and y > -LIMIT then
                if x == y then
                    return 0
                end
                return x < y and -1 or 1
            end
        end
        local d = add_general(a, b, true)
        local m = d.m
        if m then
            if m == 0 then
                return 0
            end
            return m < 0 and -1 or 1
        end
        return d.neg and -1 or 1
    end
    D.cmp = cmp

    function D.eq(a, b)
        return cmp(a, b) == 0
    end

    function D.min(a, b)
        if cmp(a, b) <= 0 then
            return a
        end
        return b
    end

    function D.max(a, b)
        if cmp(a, b) >= 0 then
            return a
        end
        return b
    end

    local function gt_abs(v, bound) -- |v| > bound (bound >= 0)
        if D.is_neg(v) then
            v = D.neg(v)
        end
        return cmp(v, bound) > 0
    end

    function D.gt_max_input(v)
        return gt_abs(v, D.MAX_INPUT)
    end

    -- Rust twin: amount::add (src/engine/amount.rs)
    function D.add(a, b)
        local r = add_raw(a, b, false)
        -- a small mantissa (< 2^53) is always within 10^18
        if not r.m and gt_abs(r, D.MAX_TOTAL) then
            fail("ERR limit: amount total would exceed 10^18")
        end
        return r
    end

    -- The form a value is stored in (layout 2): an integer whose mantissa
    -- is small is the plain number (msgpack keeps it exactly), anything else
    -- the table. Layout 1 stored every value as the table; D.loaded reads
    -- both.
    function D.stored(v)
        if v.s == 0 and v.m then
            return v.m
        end
        return v
    end

    function D.loaded(x)
        if type(x) == "number" then
            return D.from_int(x)
        end
        return x
    end

    -- Whether `x` is a value in the form D.stored gives (as msgpack brings
    -- it back): an integer below 2^53 in magnitude, or a small or big form
    -- table with a scale of 0 to 28. Stored data the library did not write
    -- is checked with it before arithmetic meets it.
    function D.stored_ok(x)
        if type(x) == "number" then
            return x % 1 == 0 and x > -LIMIT and x < LIMIT
        elseif type(x) ~= "table" then
            return false
        end
        local s, m, l = x.s, x.m, x.l
        if type(s) ~= "number" or s % 1 ~= 0 or s < 0 or s > 28 then
            return false
        elseif m ~= nil then
            return type(m) == "number" and m % 1 == 0 and m > -LIMIT and m < LIMIT and l == nil
        elseif type(l) ~= "table" or type(x.neg) ~= "boolean" or #l == 0 then
            return false
        end
        for i = 1, #l do
            local d = l[i]
            if type(d) ~= "number" or d % 1 ~= 0 or d < 0 or d >= BASE then
                return false
            end
        end
        return true
    end

    -- Fails as D.add would, without making the sum when it cannot fail:
    -- two small values are each below 2^53 in magnitude, so their sum is
    -- below 2^54 < 10^18.
    function D.check_add(a, b)
        if not (a.m and b.m) then
            D.add(a, b)
        end
    end

    -- A total that never goes below 0 and stops at 10^18: for commits,
    -- which are never refused (amount::add_saturating).
    -- Rust twin: amount::add_saturating (src/engine/amount.rs)
    function D.add_saturating(total, delta)
        local r = add_raw(total, delta, false)
        if D.is_neg(r) then
            return ZERO
        end
        if not r.m and gt_abs(r, D.MAX_TOTAL) then
            return D.MAX_TOTAL
        end
        return r
    end

    -- Rust twin: amount::add_floor_zero (src/engine/amount.rs)
    function D.add_floor_zero(total, delta)
        local r = D.add(total, delta)
        if D.is_neg(r) then
            return ZERO
        end
        return r
    end

    -- ----- multiplication, scaling, rounding ---------------------------------
    local function below_limit(t)
        return t < LIMIT and t > -LIMIT
    end

    -- The sign of (a1 + a2 + a3) * x - b * y, for values a1 and b (a2 and a3
    -- may be nil) and small non-negative integers x and y. While the
    -- mantissas are small it compares plain numbers brought to one scale and
    -- makes no value: policies are judged this way on every request.
    function D.cmp_sum_scaled(a1, a2, a3, x, b, y)
        local m1, m2, m3, mb = a1.m, 0, 0, b.m
        local s1, s2, s3, sb = a1.s, 0, 0, b.s
        if a2 then
            m2, s2 = a2.m, a2.s
        end
        if a3 then
            m3, s3 = a3.m, a3.s
        end
        if m1 and m2 and m3 and mb then
            local s = math.max(s1, s2, s3, sb)
            if s <= 22 then
                local t1, t2, t3 = m1 * P10[s - s1] * x, m2 * P10[s - s2] * x, m3 * P10[s - s3] * x
                local l, r = t1 + t2 + t3, mb * P10[s - sb] * y
                if below_limit(t1) and below_limit(t2) and below_limit(t3) and below_limit(l) and below_limit(r) then
                    return (l < r and -1) or (l > r and 1) or 0
                end
            end
        end
        local sum = a1
        if a2 then
            sum = D.plus(sum, a2)
        end
        if a3 then
            sum = D.plus(sum, a3)
        end
        return D.cmp(D.mul(sum, D.from_int(x)), D.mul(b, D.from_int(y)))
    end

    function D.mul(a, b)
        local am, bm = a.m, b.m
        if am and bm then
            local p = am * bm
            if p < LIMIT and p > -LIMIT then
                return mk_small(p, a.s + b.s)
            end
        end
        local na, la, sa = unpack_v(a)
        local nb, lb, sb = unpack_v(b)
        return pack(na ~= nb, mul_mag(la, lb), sa + sb)
    end

    function D.div_pow10(v, k)
        if k == 0 then
            return v
        end
        local m = v.m
        if m then
            return mk_small(m, v.s + k)
        end
        return pack(v.neg, v.l, v.s + k)
    end

    -- Splits |v| at k decimal places from the right: quotient digits and the k
    -- remainder digits (left-padded with zeros).
    local function split_digits(v, k)
        local neg, l = unpack_v(v)
        local ds = digits_of(l)
        local n = #ds
        if n <= k then
            return neg, "0", srep("0", k - n) .. ds
        end
        return neg, ssub(ds, 1, n - k), ssub(ds, n - k + 1)
    end

    local function plus_one(ds) -- decimal digits + 1
        return digits_of(add_mag(mag_of_digits(ds), { 1 }))
    end

    -- Rounds half away from zero to dp decimal places.
    function D.round_dp(v, dp)
        local s = v.s
        if s <= dp then
            return v
        end
        local k = s - dp
        local m = v.m
        if m then
            if k > 22 then
                return ZERO -- |m| < 2^53 < 0.5 * 10^k
            end
            local d = P10[k]
            local a = m < 0 and -m or m
            local r = fmod(a, d)
            local q = (a - r) / d
            if r * 2 >= d then
                q = q + 1
            end
            return mk_small(m < 0 and -q or q, dp)
        end
        local neg, q, rem = split_digits(v, k)
        if sbyte(rem, 1) >= 53 then -- first dropped digit >= 5
            q = plus_one(q)
        end
        return from_digits(neg, q, dp)
    end

    -- rust_decimal: a result keeps at most 28 places and a mantissa below
    -- 2^96; it loses the fewest places needed, rounding half to even (with
    -- every dropped digit counted), and overflows when the integer part alone
    -- does not fit.
    function D.fit96(v)
        local s = v.s
        if v.m then
            if s <= 28 then
                return v
            end
        elseif s <= 28 and cmp_mag(v.l, mag_of_digits(MAX96)) <= 0 then
            return v
        end
        local neg, l = unpack_v(v)
        local ds = digits_of(l)
        local k = D.places_over96(ds, s)
        if k > s then
            return nil
        end
        return D.drop_places(v, neg, ds, s, k)
    end

    -- The fewest places k >= max(0, s - 28) to drop from the digits ds of a
    -- mantissa with s places so that what is left is at most MAX96.
    function D.places_over96(ds, s)
        local n = #ds
        local k = s - 28
        if k < 0 then
            k = 0
        end
        while true do
            local q = n > k and ssub(ds, 1, n - k) or "0"
            if #q < 29 or (#q == 29 and not digits_gt(q, MAX96)) then
                return k
            end
            k = k + 1
        end
    end

    -- v (sign neg, mantissa digits ds, s places) with its last k places
    -- dropped, rounding half to even; one place more when rounding reaches
    -- 2^96, nil when that would take more than its s places.
    function D.drop_places(v, neg, ds, s, k)
        local n = #ds
        while true do
            if k == 0 then
                return v
            end
            local q, rem
            if n > k then
                q, rem = ssub(ds, 1, n - k), ssub(ds, n - k + 1)
            else
                q, rem = "0", srep("0", k - n) .. ds
            end
            local first = sbyte(rem, 1)
            local up = false
            if first > 53 then
                up = true
            elseif first == 53 then
                if sfind(rem, "[1-9]", 2) then
                    up = true
                else
                    up = (sbyte(q, #q) - 48) % 2 == 1
                end
            end
            if up then
                q = plus_one(q)
            end
            if q ~= TWO96 then
                return from_digits(neg, q, s - k)
            end
            -- rounding reached 2^96: one place fewer
            k = k + 1
            if k > s then
                return nil
            end
        end
    end

    function D.to_number(v)
        return tonumber(D.fmt(v))
    end
end

-- ---------------------------------------------------------------------------
-- 20_window  W: calendar and rolling windows (port of src/engine/window.rs;
-- the WINDOW and ANCHOR keywords of src/module/commands/policy.rs)
--
-- Calendar windows (hour, day, week, month, year; in a zone, UTC by
-- default; hour is always UTC) number their periods by local dates:
-- a period has an index and starts at W.start_of(w, index), so finding the
-- period that contains a time, or counting the periods between two times, is
-- arithmetic, never a loop. `month` periods begin on an anchor day clamped
-- to short months (anchor 31 begins on Feb 28, or Feb 29 in a leap year);
-- `week` begins on Monday. Rolling windows keep usage in W.BUCKETS (60)
-- buckets of W.bucket_ms(w) each; durations run from 60s to 400d.
--
-- A window is a small table (treat it as read-only):
--   {kind = "none"}
--   {kind = "calendar", unit = "hour"|"day"|"week"|"month"|"year", anchor = n,
--    tz = zone or nil}
--       anchor: month, the day 1..31; week, the ISO weekday 1 (Monday) ..
--       7 (Sunday); year, month * 100 + day (101: the calendar year); 1 for
--       hour and day. tz: a zone of W.zone_parse (lua/src/22_tz.lua), nil
--       for UTC.
--   {kind = "rolling", ms = duration_ms}
--
-- API (times are Unix ms as plain Lua integers, always >= 0):
--   W.parse(name, anchor, duration, tz) -> w   WINDOW name [ANCHOR a] [TZ zone]
--       | rolling dur; name "none" also stands for no WINDOW.
--       name: string; anchor, duration, tz: strings or nil.
--       Fails with the module's texts (Window::parse): unknown window, then
--       ANCHOR, then TZ.
--   W.anchor_shown(w) -> month: the day; week/year not the default: "sunday",
--       "04-01"; else nil
--   W.tz_name(w) -> "America/New_York" | "+05:30" | nil (UTC)
--   W.tz_named(w) -> whether the zone is a named one (replies add tzdata)
--   W.period_label(w, start, end) -> "2026" | "2026-11" | "2026-11-27" |
--       "2026-11-27T13" | nil (QUOTA.HISTORY's label)
--   W.label(w) -> "none" | "month" | "rolling 30d"
--   W.is_calendar(w), W.is_rolling(w), W.is_none(w) -> boolean
--   W.bucket_ms(w) -> bucket length of a rolling window (>= 1), else nil
--   W.index_of(w, t) -> index of the calendar period containing t (0 if not calendar)
--   W.start_of(w, index) -> Unix ms at which period index starts (clamped >= 0;
--       0 if not calendar)
--   W.period_of(w, t) -> start, end   the calendar period [start, end) holding t
--   W.rolling_span(w, now) -> start, end   the buckets a rolling window counts at
--       now (Window::rolling_span): (first*b, (now//b + 1)*b), first =
--       max(now - duration, 0)//b, the oldest bucket not expired
--   W.shown_period(w, now, period_start, period_end) -> start, end | nil
--       what replies show: nil for none, the given calendar period, rolling_span
--   W.expired_bucket(w, b, now) -> usage in bucket b has dropped out at now: the
--       whole bucket is older than the duration ((b + 1)*b_ms + duration <= now),
--       so never early (sixty buckets of duration//60 may cover less than the
--       duration) and at most one bucket late
--   W.encode(w) -> "n" | "h" | "d" | "w" | "y" | "m<anchor>" | "r<ms>", and
--       for the new anchors and zones: "w<1..7>" (not 1), "y<MMDD>" (not
--       0101), then "@<zone name>" when not UTC: "w7", "y0401",
--       "m31@America/New_York", "d@+05:30"
--   W.decode(s) -> w, or nil if s is not an encode() result
--   W.newer_form(s) -> whether encoding s has a zone or a week/year anchor
--       (a form since 1.8.0: the tree is layout 7)
--   W.parse_duration(text) -> ms            "90s" "15m" "24h" "30d"; 60s..400d
--   W.format_duration(ms) -> "30d" | "1d" | "90s" (largest whole unit) | "<ms>ms"
--   W.is_leap(y), W.days_in_month(y, m)
--   W.days_from_civil(y, m, d) -> days since 1970-01-01 (proleptic Gregorian)
--   W.civil_from_days(days) -> y, m, d
--   W.clip(text) -> D.clip (names::clip): at most 60 chars (57 + "..."), any
--       character outside printable ASCII -> ?
--   QUOTA.SET argument helpers (src/module/commands/policy.rs):
--   W.read_window(argv, i, command) -> name, duration, next_i
--       argv[i] is the word after WINDOW; for `rolling` (any case) the next word
--       is the duration. Arity errors name `command` (e.g. "QUOTA.SET").
--   W.read_anchor(argv, i, command) -> anchor text, next_i
--   W.from_set(name, anchor, duration, tz) -> w
--       after the keyword loop (and after the METRIC/LIMIT checks): name nil
--       is the none window (which refuses ANCHOR and TZ).
-- ---------------------------------------------------------------------------

local W = {}

do
    local HOUR_MS = 3600000
    local DAY_MS = 24 * HOUR_MS
    local BUCKETS = 60
    local ROLLING_MIN_MS = 60000
    local ROLLING_MAX_MS = 400 * DAY_MS
    W.HOUR_MS, W.DAY_MS, W.BUCKETS = HOUR_MS, DAY_MS, BUCKETS
    W.ROLLING_MIN_MS, W.ROLLING_MAX_MS = ROLLING_MIN_MS, ROLLING_MAX_MS

    -- Floor division of integers (exact for |a| < 2^53).
    local function div(a, b)
        return math.floor(a / b)
    end

    local function int(n)
        return string.format("%d", n)
    end

    -- ASCII-only lowercase (Rust's to_ascii_lowercase), whatever the locale.
    local function ascii_lower(s)
        return (string.gsub(s, "[A-Z]", function(c)
            return string.char(string.byte(c) + 32)
        end))
    end
    W.ascii_lower = ascii_lower -- (22_tz.lua matches zone names with it)

    W.clip = D.clip
    local clip = W.clip

    local function syntax(text)
        fail("ERR syntax: " .. text)
    end

    local UNIT = { hour = true, day = true, week = true, month = true, year = true }

    local WEEKDAYS = { "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday" }
    W.WEEKDAYS = WEEKDAYS

    -- Rust twin: parse_anchor (src/engine/window.rs).
    -- The ANCHOR of a week, month or year window, in its stored form.
    function W.parse_anchor(unit, text)
        if unit == "week" then
            local lower = ascii_lower(text)
            for i, day in ipairs(WEEKDAYS) do
                if lower == day or (#lower == 3 and string.sub(day, 1, 3) == lower) then
                    return i
                end
            end
            syntax("ANCHOR for WINDOW week is a day such as sunday, not '" .. clip(text) .. "'")
        elseif unit == "year" then
            local mm, dd = string.match(text, "^([0-9][0-9])%-([0-9][0-9])$")
            local m, d = tonumber(mm), tonumber(dd)
            -- 2000 is a leap year: 02-29 is a date, clamped in common years.
            if m and m >= 1 and m <= 12 and d >= 1 and d <= W.days_in_month(2000, m) then
                return m * 100 + d
            end
            syntax("ANCHOR for WINDOW year is a date MM-DD such as 04-01, not '" .. clip(text) .. "'")
        end
        -- What Args::next_u64("ANCHOR", 1, 31) said when ANCHOR was a number:
        -- digits only (a leading '+' is refused), leading zeros allowed.
        local n = nil
        if string.find(text, "^[0-9]+$") then
            local digits = string.gsub(text, "^0+", "")
            if #digits <= 2 then
                n = tonumber(digits) or 0
            end
        end
        if n == nil or n < 1 or n > 31 then
            syntax("ANCHOR must be an integer from 1 to 31, not '" .. clip(text) .. "'")
        end
        return n
    end

    local ANCHORED = { week = true, month = true, year = true }

    -- Rust twin: Window::parse (src/engine/window.rs).
    function W.parse(name, anchor, duration, tz)
        local lower = ascii_lower(name)
        if lower ~= "none" and lower ~= "rolling" and not UNIT[lower] then
            syntax("unknown WINDOW '" .. clip(name)
                .. "': use none, hour, day, week, month, year or rolling <duration>")
        end
        local a = lower == "year" and 101 or 1
        if anchor ~= nil then
            if not ANCHORED[lower] then
                syntax("ANCHOR applies only to WINDOW week, month and year")
            end
            a = W.parse_anchor(lower, anchor)
        end
        local zone = nil
        if tz ~= nil then
            if not UNIT[lower] or lower == "hour" then
                syntax("TZ applies only to WINDOW day, week, month and year")
            end
            zone = W.zone_parse(tz) or nil
        end
        if lower == "rolling" then
            if duration == nil then
                syntax("WINDOW rolling needs a duration such as 30d")
            end
            return { kind = "rolling", ms = W.parse_duration(duration) }
        elseif lower == "none" then
            return { kind = "none" }
        end
        return { kind = "calendar", unit = lower, anchor = a, tz = zone }
    end

    -- Rust twin: Window::anchor_shown (src/engine/window.rs).
    function W.anchor_shown(w)
        if w.kind ~= "calendar" then
            return nil
        elseif w.unit == "month" then
            return w.anchor
        elseif w.unit == "week" and w.anchor ~= 1 then
            return WEEKDAYS[w.anchor]
        elseif w.unit == "year" and w.anchor ~= 101 then
            return string.format("%02d-%02d", div(w.anchor, 100), w.anchor % 100)
        end
        return nil
    end

    -- Rust twin: Window::tz, Zone::name (src/engine/window.rs, tz.rs).
    function W.tz_name(w)
        if w.kind == "calendar" and w.tz then
            return W.zone_name(w.tz)
        end
        return nil
    end

    -- Rust twin: push_zone (src/module/commands/read.rs): a named zone (Zone::Named) shows tzdata.
    function W.tz_named(w)
        local name = W.tz_name(w)
        return name ~= nil and not string.find(name, "^[+-]")
    end

    -- Rust twin: Window::period_label (src/engine/window.rs).
    -- A period that ends where it starts is a day its zone skipped: the
    -- day before the one that starts there.
    function W.period_label(w, start, finish)
        if w.kind ~= "calendar" then
            return nil
        end
        local skipped = finish == start and 1 or 0
        local y, m, d = W.civil_from_days(W.local_day(w, start) - skipped)
        if w.unit == "hour" then
            return string.format("%04d-%02d-%02dT%02d", y, m, d, div(start % DAY_MS, HOUR_MS))
        elseif w.unit == "year" and w.anchor == 101 then
            return string.format("%04d", y)
        elseif w.unit == "month" and w.anchor == 1 then
            return string.format("%04d-%02d", y, m)
        end
        return string.format("%04d-%02d-%02d", y, m, d)
    end

    -- Rust twin: Window::static_label (src/engine/window.rs), Window::label (src/engine/window.rs).
    function W.label(w)
        if w.kind == "none" then
            return "none"
        elseif w.kind == "calendar" then
            return w.unit
        end
        return "rolling " .. W.format_duration(w.ms)
    end

    -- Rust twin: Window::is_calendar (src/engine/window.rs).
    function W.is_calendar(w)
        return w.kind == "calendar"
    end

    function W.is_rolling(w)
        return w.kind == "rolling"
    end

    function W.is_none(w)
        return w.kind == "none"
    end

    -- Rust twin: Window::bucket_ms (src/engine/window.rs).
    function W.bucket_ms(w)
        if w.kind ~= "rolling" then
            return nil
        end
        local b = div(w.ms, BUCKETS)
        if b < 1 then
            b = 1
        end
        return b
    end

    -- Rust twin: window::is_leap (src/engine/window.rs).
    local function is_leap(y)
        return (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
    end
    W.is_leap = is_leap

    local MONTH_DAYS = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }

    -- Rust twin: window::days_in_month (src/engine/window.rs).
    local function days_in_month(y, m)
        if m == 2 and is_leap(y) then
            return 29
        end
        return MONTH_DAYS[m]
    end
    W.days_in_month = days_in_month

    -- Rust twin: window::days_from_civil (src/engine/window.rs).
    -- Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
    local function days_from_civil(y, m, d)
        if m <= 2 then
            y = y - 1
        end
        local era = div(y, 400)
        local yoe = y - era * 400
        local mp = (m + 9) % 12
        local doy = div(153 * mp + 2, 5) + d - 1
        local doe = yoe * 365 + div(yoe, 4) - div(yoe, 100) + doy
        return era * 146097 + doe - 719468
    end
    W.days_from_civil = days_from_civil

    -- Rust twin: window::civil_from_days (src/engine/window.rs).
    -- The date (year, month 1-12, day 1-31) of a day count since 1970-01-01.
    local function civil_from_days(days)
        local z = days + 719468
        local era = div(z, 146097)
        local doe = z - era * 146097
        local yoe = div(doe - div(doe, 1460) + div(doe, 36524) - div(doe, 146096), 365)
        local doy = doe - (365 * yoe + div(yoe, 4) - div(yoe, 100))
        local mp = div(5 * doy + 2, 153)
        local d = doy - div(153 * mp + 2, 5) + 1
        local m = mp < 10 and mp + 3 or mp - 9
        local y = yoe + era * 400
        if m <= 2 then
            y = y + 1
        end
        return y, m, d
    end
    W.civil_from_days = civil_from_days

    -- Rust twin: window::first_day (src/engine/window.rs).
    -- The first local date (days since 1970-01-01) of period index of a
    -- day, week, month or year window.
    local function first_day(unit, anchor, index)
        if unit == "day" then
            return index
        elseif unit == "week" then
            return index * 7 - 3 + (anchor - 1)
        end
        local y, m, d
        if unit == "month" then
            y, m, d = div(index, 12), index % 12 + 1, anchor
        else
            y, m, d = index, div(anchor, 100), anchor % 100
        end
        local dim = days_in_month(y, m)
        if dim < d then
            d = dim
        end
        return days_from_civil(y, m, d)
    end

    -- Rust twin: Zone::local_day (src/engine/tz.rs), of the window's zone.
    function W.local_day(w, t)
        if w.tz then
            return W.zone_local_day(w.tz, t)
        end
        return div(t, DAY_MS)
    end

    -- Rust twin: Window::index_of (src/engine/window.rs).
    -- Numbered by the local date in the window's zone, then one more if the
    -- next period has already begun (a fall-back over midnight repeats local
    -- dates; periods never go backwards).
    function W.index_of(w, t)
        if w.kind ~= "calendar" then
            return 0
        end
        local unit = w.unit
        if unit == "hour" then
            return div(t, HOUR_MS)
        end
        local day = W.local_day(w, t)
        local index
        if unit == "day" then
            index = day
        elseif unit == "week" then
            -- 1970-01-01 was a Thursday: day 0 is 3 days after a Monday.
            index = div(day + 3 - (w.anchor - 1), 7)
        elseif unit == "month" then
            local y, m = civil_from_days(day)
            index = y * 12 + (m - 1)
        else
            index = (civil_from_days(day))
        end
        if first_day(unit, w.anchor, index) > day then
            index = index - 1
        end
        if W.start_of(w, index + 1) <= t then
            index = index + 1
        end
        return index
    end

    -- Rust twin: Window::start_of (src/engine/window.rs).
    function W.start_of(w, index)
        local ms = 0
        if w.kind == "calendar" then
            if w.unit == "hour" then
                ms = index * HOUR_MS
            else
                local day = first_day(w.unit, w.anchor, index)
                if w.tz then
                    ms = W.zone_day_start(w.tz, day)
                else
                    ms = day * DAY_MS
                end
            end
        end
        if ms < 0 then
            ms = 0
        end
        return ms
    end

    -- Rust twin: Window::period_of (src/engine/window.rs).
    function W.period_of(w, t)
        local i = W.index_of(w, t)
        return W.start_of(w, i), W.start_of(w, i + 1)
    end

    -- Rust twin: Window::rolling_span (src/engine/window.rs).
    function W.rolling_span(w, now)
        local b = W.bucket_ms(w)
        local since = now - w.ms
        if since < 0 then
            since = 0
        end
        return div(since, b) * b, (div(now, b) + 1) * b
    end

    -- Rust twin: Policy::shown_period (src/engine/policy/periods.rs).
    function W.shown_period(w, now, period_start, period_end)
        if w.kind == "calendar" then
            return period_start, period_end
        elseif w.kind == "rolling" then
            return W.rolling_span(w, now)
        end
        return nil
    end

    -- Rust twin: Window::bucket_expired (src/engine/window.rs).
    function W.expired_bucket(w, b, now)
        return (b + 1) * W.bucket_ms(w) + w.ms <= now
    end

    local SCALE = { s = 1000, m = 60000, h = HOUR_MS, d = DAY_MS }

    -- Rust twin: parse_duration (src/engine/window.rs).
    -- "90s", "15m", "24h", "30d" -> milliseconds.
    function W.parse_duration(text)
        local function bad()
            syntax("invalid duration '" .. clip(text)
                .. "': use a whole number with s, m, h or d, from 60s to 400d")
        end
        if string.find(text, "[\128-\255]") or #text == 0 then
            bad()
        end
        local digits, unit = string.sub(text, 1, -2), string.sub(text, -1)
        if #digits == 0 or #digits > 9 or string.find(digits, "[^0-9]") then
            bad()
        end
        local scale = SCALE[unit]
        if scale == nil then
            bad()
        end
        local n = tonumber(digits)
        -- n < 10^9, so n * scale < 2^57: compare n first to stay exact.
        if n > div(ROLLING_MAX_MS, scale) then
            bad()
        end
        local ms = n * scale
        if ms < ROLLING_MIN_MS or ms > ROLLING_MAX_MS then
            bad()
        end
        return ms
    end

    -- Milliseconds in the largest whole unit: 30d, 24h -> 1d, 90s.
    local FORMAT_UNITS = { { "d", DAY_MS }, { "h", HOUR_MS }, { "m", 60000 }, { "s", 1000 } }

    -- Rust twin: format_duration (src/engine/window.rs).
    function W.format_duration(ms)
        for _, u in ipairs(FORMAT_UNITS) do
            if ms % u[2] == 0 then
                return int(div(ms, u[2])) .. u[1]
            end
        end
        return int(ms) .. "ms"
    end

    local CODE = { hour = "h", day = "d", week = "w", year = "y" }
    local UNIT_OF = { h = "hour", d = "day", w = "week", y = "year" }

    -- Rust twin: none: how the Lua library stores a window (Window is stored by persist.rs).
    function W.encode(w)
        if w.kind == "none" then
            return "n"
        elseif w.kind == "rolling" then
            return "r" .. int(w.ms)
        end
        local s
        if w.unit == "month" then
            s = "m" .. int(w.anchor)
        elseif w.unit == "week" and w.anchor ~= 1 then
            s = "w" .. int(w.anchor)
        elseif w.unit == "year" and w.anchor ~= 101 then
            s = string.format("y%04d", w.anchor)
        else
            s = CODE[w.unit]
        end
        if w.tz then
            s = s .. "@" .. W.zone_name(w.tz)
        end
        return s
    end

    -- Whether encoding `s` is one of the forms since 1.8.0 (a zone, a week
    -- or year anchor), which library 1.7.0 cannot decode: a tree that
    -- stores one is written in layout 7 (60_tree's pack_meta, 75_ops'
    -- OPS.put_policy).
    -- Rust twin: none (the module's encoding 6 stores them by persist.rs).
    function W.newer_form(s)
        return string.find(s, "@", 1, true) ~= nil or string.find(s, "^[wy][0-9]") ~= nil
    end

    -- The calendar window of an encoding without its zone, or nil.
    local function decode_calendar(s)
        if UNIT_OF[s] then
            return { kind = "calendar", unit = UNIT_OF[s], anchor = s == "y" and 101 or 1 }
        end
        local tag, num = string.match(s, "^([mwy])([0-9]+)$")
        if tag == "w" and string.find(num, "^[2-7]$") then
            return { kind = "calendar", unit = "week", anchor = tonumber(num) }
        elseif tag == "y" and #num == 4 then
            local m, d = tonumber(string.sub(num, 1, 2)), tonumber(string.sub(num, 3, 4))
            if m >= 1 and m <= 12 and d >= 1 and d <= days_in_month(2000, m) and m * 100 + d ~= 101 then
                return { kind = "calendar", unit = "year", anchor = m * 100 + d }
            end
        elseif tag == "m" and string.find(num, "^[1-9][0-9]?$") and tonumber(num) <= 31 then
            return { kind = "calendar", unit = "month", anchor = tonumber(num) }
        end
        return nil
    end

    -- Rust twin: none: the inverse of W.encode.
    function W.decode(s)
        if type(s) ~= "string" then
            return nil
        end
        if s == "n" then
            return { kind = "none" }
        end
        local base, zone_name = string.match(s, "^([^@]*)@(.+)$")
        if base == nil then
            base = s
        end
        local w = decode_calendar(base)
        if w == nil then
            if zone_name then
                return nil
            end
            local num = string.match(s, "^r([1-9][0-9]*)$")
            if num == nil or #num > 15 then
                return nil
            end
            return { kind = "rolling", ms = tonumber(num) }
        end
        if zone_name then
            if w.unit == "hour" then
                return nil
            end
            -- A name the zone table no longer has is not a window (no error).
            local before = failure
            local ok, zone = pcall(W.zone_parse, zone_name)
            failure = before
            if not ok or not zone or W.zone_name(zone) ~= zone_name then
                return nil
            end
            w.tz = zone
        end
        return w
    end

    local function arity(command, what)
        fail("ERR wrong number of arguments for '" .. ascii_lower(command)
            .. "' command: missing " .. what)
    end

    -- Rust twin: the WINDOW keyword of QUOTA.SET (src/module/commands/policy.rs).
    -- QUOTA.SET: `WINDOW w`, or `WINDOW rolling dur`; argv[i] follows WINDOW.
    function W.read_window(argv, i, command)
        local name = argv[i]
        if name == nil then
            arity(command, "a window after WINDOW")
        end
        local duration = nil
        i = i + 1
        if ascii_lower(name) == "rolling" then
            duration = argv[i]
            if duration == nil then
                arity(command, "a duration after WINDOW rolling")
            end
            i = i + 1
        end
        return name, duration, i
    end

    -- Rust twin: the ANCHOR keyword of QUOTA.SET (src/module/commands/policy.rs).
    -- QUOTA.SET: `ANCHOR a`; argv[i] follows ANCHOR (W.parse reads the text).
    function W.read_anchor(argv, i, command)
        local text = argv[i]
        if text == nil then
            arity(command, "ANCHOR")
        end
        return text, i + 1
    end

    -- Rust twin: Window::parse (src/engine/window.rs).
    -- QUOTA.SET: the window, once every keyword has been read.
    function W.from_set(name, anchor, duration, tz)
        return W.parse(name or "none", anchor, duration, tz)
    end
end
-- ---------------------------------------------------------------------------
-- 21_tzdata  the zone rules table (generated by tools/tzdata.py from the
-- tzdata PyPI package; do not edit): the text of src/engine/tzdata.txt,
-- byte for byte. 22_tz reads it (format: tools/tzdata.py).
-- ---------------------------------------------------------------------------

W.TZDATA_VERSION = "2026f"
W.TZDATA = [[
2026f
=0;0;
=50;50;
=1o;1o;
=3c;3c;
=3c;3c,50,4,5,5,0,a,5,4,140;3n0o,50,4r2c,3c,6hdo,50,4r2c,3c,6hdo,50,4r2c,3c,6hdo,50,4r2c,3c,6p5o,50,4r2c,3c,6hdo,50,4r2c,3c,6hdo,50,4jac,3c,6p5o,50,43qc,3c,74po,50,3vyc,3c,7cho,50,3o6c,3c,7s1o,50,36ec,3c,xdo,50,nac,3c,14u1o,50,1amc,3c,12xo,50,1q6c,3c,2osho,50
=0;0;2mvk0,1o,2u6c,0,8fdo,1o,2hyc,0,7u9o,1o,30uc,0,7cho,1o,3o6c,0,8fh0,1o,2j40,0,yg0,1o,19k0,0,6hc0,1o,25s0,0,11s0,1o,2eo0,0,4r40,1o,2s00,0,12w0,1o,2mg0,0,4r40,1o,2dk0,0,12w0,1o,30w0,0,4r40,1o,25s0,0,12w0,1o,3gg0,0,4jc0,1o,1q80,0,1ao0,1o,3o80,0,4jc0,1o,1ig0,0,12w0,1o,9xs0,0,12w0,1o,9q00,0,1ao0,1o,9q00,0,12w0,1o,9q00,0,1ao0,1o,9q00,0,12w0,1o,9xs0,0,12w0,1o,9q00,0,1ao0,1o,9q00,0,12w0,1o,5m6c,0
=1o;1o,3c,3,5,0,3c,a,5,0,50;
=3c;3c;g0o,50,6l9mc,3c
=3c;3c;g0o,50,5klmc,3c
=0;0;5mxlo,1o,b9k0,0
=3c;3c;40yw0,1o,4ag0,3c
=1o;1o;1o3ac,3c,4oxo,1o,5gpo,3c,6p40,1o,4jc0,3c,6p40,1o,4r40,3c,6hc0,1o
=3c;3c;2u80,1o,4r5o,3c,6hac,1o,4r5o,3c,6p2c,1o,4jdo,3c,6p2c,1o,4r5o,3c,6hac,1o,4r5o,3c,6hac,1o,4r5o,3c,6hac,1o,4r5o,3c,6hac,1o,4r5o,3c,6p2c,1o,4r5o,3c,6hac,1o,4r5o,3c,6hac,1o,4r5o,3c,6hac,1o,4r5o,3c,6hac,1o,4r5o,3c,6p2c,1o,4jdo,3c,6p2c,1o,4r5o,3c,6hac,1o,4r5o,3c,6hac,1o,4r5o,3c,6hac,1o,4r5o,3c
=-go;-go,-f0,3,2,0,3c,b,1,0,3c;2us0,-f0,6hac,-go,4r5o,-f0,6hac,-go,4yxo,-f0,69ic,-go,4yxo,-f0,69ic,-go,4yxo,-f0,6hac,-go,4r5o,-f0,6hac,-go,4r5o,-f0,6hac,-go,43to,-f0
=-f0;-f0,-dc,3,2,0,3c,b,1,0,3c;2uqc,-dc,6hac,-f0,4r5o,-dc,6hac,-f0,4yxo,-dc,69ic,-f0,4yxo,-dc,69ic,-f0,4yxo,-dc,6hac,-f0,4r5o,-dc,6hac,-f0,4r5o,-dc,6hac,-f0,43to,-dc
=-6o;-6o;
=-3c;-50;1rfc,-50,6wxo,-3c,43qc,-50,7cho,-3c,3vyc,-50,7zto,-3c,38mc,-50,313to,-3c,3o6c,-50
=-50;-50;2i4l0,-3c,2dic,-50,6p5o,-3c,4jac,-50
=-50;-50;1dsd0,-6o,l5o,-50,13r2c,-3c,2dic,-50
=-50;-50;2i4l0,-3c,2dic,-50
=-50;-50;1did0,-6o,3w1o,-50,10q6c,-3c,2dic,-50
=-50;-50;1dr90,-6o,1p5o,-50,12o6c,-3c,2dic,-50
=-50;-50;1dr90,-6o,1p5o,-50,12o6c,-3c,oec,-50,1hdo,-6o,6p5o,-50,4jac,-6o,6p5o,-50
=-50;-50;1dsd0,-6o,ddo,-50,13yuc,-3c,2dic,-50,6p5o,-3c,4jac,-50
=-50;-50;1dq50,-6o,ndo,-50,13r2c,-3c,2dic,-50
=-50;-50;1z90,-6o,6hdo,-50,4r2c,-6o,6p5o,-50,5m6c,-6o,4jdo,-50,6p2c,-6o,4r5o,-50,6hac,-6o,61to,-50,4jac,-6o,6p5o,-50,4jac,-6o,6p5o,-50,4jac,-6o,6wxo,-50,4bic,-6o,6wxo,-50,4bic,-6o,6wxo,-50,5eec,-6o,5eho,-50,5tyc,-6o,5eho,-50,5tyc,-6o,5m9o,-50,56mc,-6o,61to,-50,56mc,-6o,61to,-50,56mc,-6o,61to,-50,5eec,-6o,5u1o,-50,5eec,-6o,5u1o,-50,5eec,-6o,61to,-50,56mc,-6o,61to,-50,56mc,-6o,61to,-50,5eec,-6o,5u1o,-50,5eec,-6o,5u1o,-50,5eec,-6o,5u1o,-50,5eec,-6o,61to,-50
=-8c;-8c;
=-3c;-50;1rfc,-50,6wxo,-3c,43qc,-50,7cho,-3c,3vyc,-50,7zto,-3c,38mc,-50,2pnlo,-3c,43qc,-50
=-bo;-a0;2un0,-a0,6hac,-bo,5u1o,-a0,4jac,-bo,5u1o,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-8c,6h8o,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,6hac,-a0,4r5o,-8c,6hac,-a0
=-50;-50;
=-a0;-a0;
=-50;-6o;1rh0,-6o,6wxo,-50,7qc,-6o
=-bo;-bo,-a0,3,2,0,3c,b,1,0,3c;2un0,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,43to,-a0
=-a0;-bo,-a0,3,2,0,3c,b,1,0,3c;2ulc,-8c,6oz0,-a0,b0t0,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,43to,-a0
=-50;-6o;1rh0,-6o,6wxo,-50,43qc,-6o,7cho,-50,3vyc,-6o,7zto,-50,38mc,-6o,7k9o,-50,3o6c,-6o,821o,-50,3e6c,-6o,7cho,-50,3vyc,-6o,7zto,-50,3gec,-6o,74po,-50,3vyc,-6o,7k9o,-50,3o6c,-6o,7k9o,-50,3vyc,-6o,7cho,-50,3vyc,-6o,7cho,-50,43qc,-6o,7cho,-50,3o6c,-6o,7k9o,-50,3o6c,-6o,7k9o,-50,3vyc,-6o,7cho,-50,3vyc,-6o,7cho,-50,3vyc,-6o,7cho,-50,3vyc,-6o,7zto,-50,38mc,-6o
=-a0;-8c;2ulc,-8c,6hac,-a0,5u1o,-8c,4jac,-a0,5u1o,-8c,69ic,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,69ic,-a0,30xo,-8c
=-6o;-6o;2hhfo,-7i,2mmo0,-6o
=-a0;-a0,-8c,3,2,0,3c,b,1,0,3c;2ulc,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,43to,-8c
=-bo;-a0;2un0,-a0,6hac,-bo,5u1o,-a0,4jac,-bo,5u1o,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,6hac,-bo,4r5o,-a0
=-bo;-bo,-a0,3,2,0,3c,b,1,0,3c;2un0,-a0,6hac,-bo,5u1o,-a0,4jac,-bo,5u1o,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4blo,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,43to,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,43to,-a0,7cec,-bo,3w1o,-a0,82z0,-bo
=-50;-50;2710,-6o,6p5o,-50,4jac,-6o,6p5o,-50,4jac,-6o,6p5o,-50,4jac,-6o,6p5o,-50,4r2c,-6o,6hdo,-50,4r2c,-6o,6hdo,-50,4r2c,-6o,6p5o,-50,4jac,-6o,6p5o,-50,56mc,-6o,61to,-50,4r2c,-6o,6hdo,-50,5eec,-6o,5u1o,-50,6hac,-6o,38po,-50,7ryc,-6o,3w1o,-50,7cec,-6o,43to,-50,74mc,-6o,43to,-50,j0ec,-6o,2t5o,-50,8fac,-6o,2t5o,-50,8fac,-6o,2t5o,-50,7cec,-6o,4r5o,-50,6hac,-6o,4r5o,-50,6hac,-6o,4r5o,-50,6hac,-6o,4yxo,-50,69ic,-6o,4r5o,-50,6p2c,-6o,4r5o,-50
=-bo;-bo;
=-50;-6o;1rh0,-6o,6wxo,-50,43qc,-6o,7cho,-50,3vyc,-6o,7zto,-50,38mc,-6o,jaho,-50,3e6c,-6o,7cho,-50,3vyc,-6o,7zto,-50,3gec,-6o,74po,-50,3vyc,-6o,7k9o,-50,3o6c,-6o,7k9o,-50,3vyc,-6o,7cho,-50,3vyc,-6o,7cho,-50,43qc,-6o,7cho,-50,3o6c,-6o,7k9o,-50,3o6c,-6o,7k9o,-50,3vyc,-6o,7cho,-50,3vyc,-6o,7cho,-50,3vyc,-6o,7cho,-50,3vyc,-6o,7zto,-50,38mc,-6o
=-dc;-bo;2uoo,-bo,6hac,-dc,4r5o,-bo,6hac,-dc,4yxo,-bo,69ic,-dc,4yxo,-bo,69ic,-dc,4yxo,-bo,6hac,-dc,4r5o,-bo,6hac,-dc,4r5o,-bo,6hac,-dc,43to,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,43to,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,43to,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo
=-8c;-8c,-6o,3,2,0,3c,b,1,0,3c;2ujo,-6o,6hac,-8c,4r5o,-6o,6hac,-8c,4yxo,-6o,69ic,-8c,4yxo,-6o,69ic,-8c,4yxo,-6o,6hac,-8c,4r5o,-6o,6hac,-8c,4r5o,-6o,6hac,-8c,43to,-6o
=-bo;-a0;2un0,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,43to,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,43to,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,43to,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,43to,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0
=-8c;-8c;2nlcc,-6o,1onac,-8c
=-dc;-dc,-bo,3,2,0,3c,b,1,0,3c;2uoo,-bo,6hac,-dc,4r5o,-bo,6hac,-dc,4yxo,-bo,69ic,-dc,4yxo,-bo,69ic,-dc,4yxo,-bo,6hac,-dc,4r5o,-bo,6hac,-dc,4r5o,-bo,6hac,-dc,4r5o,-bo,6hac,-dc,4yxo,-bo,69ic,-dc,4yxo,-bo,69ic,-dc,4blo,-bo
=-dc;-bo;2uoo,-bo,6hac,-dc,4r5o,-bo,6hac,-dc,4yxo,-bo,69ic,-dc,4yxo,-bo,69ic,-dc,4yxo,-bo,6hac,-dc,4r5o,-bo,6hac,-dc,4r5o,-bo,6hac,-dc,43to,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,43to,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo
=-8c;-8c,-6o,3,2,0,3c,b,1,0,3c;1ygzo,-6o,6hac,-8c,43to,-6o
=-3c;-50;1rfc,-50,6wxo,-3c,fic,-50,b0po,-3c,3vyc,-50
=-6o;-6o,-50,3,2,0,3c,b,1,0,3c;2ui0,-50,6hac,-6o,4r5o,-50,6hac,-6o,4yxo,-50,69ic,-6o,4yxo,-50,69ic,-6o,4yxo,-50,6hac,-6o,4r5o,-50,6hac,-6o,4r5o,-50,6hac,-6o,43to,-50
=-50;-3c,-1o,3,5,0,-1o,a,5,0,0;2mho,-3c,6p40,-50,4jc0,-3c,6p40,-50,4r40,-3c,6hc0,-50,4r40,-3c,6hc0,-50,4r40,-3c,6p40,-50,4jc0,-3c,6p40,-50,4jc0,-3c,6p40,-50,4jc0,-3c,6p40,-50,4r40,-3c,6hc0,-50,4r40,-3c,6hc0,-50,4r40,-3c,6p40,-50,4jc0,-3c,6p40,-50,4jc0,-3c,6p40,-50,4r40,-3c,6hc0,-50,4r40,-3c,6hc0,-50,4r40,-3c,6hc0,-50,4r40,-3c,6p40,-50,4jc0,-3c,6p40,-50,4jc0,-3c,6p40,-50,4r40,-3c,6hc0,-50,4r40,-3c,6hc0,-50,4r40,-3c,6p40,-50,4jc0,-3c,6p40,-50,4jc0,-3c,bg80,-1o
=-6o;-6o,-50,3,2,0,3c,b,1,0,3c;2uep,-50,6hac,-6o,4r5o,-50,6hac,-6o,4yxo,-50,69ic,-6o,4yxo,-50,69ic,-6o,4yxo,-50,6hac,-6o,4r5o,-50,6hac,-6o,4r5o,-50,6hac,-6o,43to,-50,7cec,-6o,3w1o,-50,7cec,-6o,3w1o,-50,7cec,-6o,43to,-50,7cec,-6o,3w1o,-50,7chn,-6o
=-8c;-8c,-6o,3,2,0,3c,b,1,0,3c;2ujo,-6o,6hac,-8c,4r5o,-6o,6hac,-8c,4yxo,-6o,69ic,-8c,4yxo,-6o,69ic,-8c,4yxo,-6o,6hac,-8c,4r5o,-6o,6hac,-8c,4r5o,-6o,6hac,-8c,43to,-6o,7cec,-8c,3w1o,-6o,7cec,-8c,3w1o,-6o,7cec,-8c,43to,-6o,7cec,-8c,3w1o,-6o,7cec,-8c,3w1o,-6o,7cec,-8c,3w1o,-6o,7cec,-8c,3w1o,-6o,7cec,-8c,3w1o,-6o,159ic,-8c
=-a0;-a0;1zc20,-8c,4r2c,-a0
=-8c;-8c,-6o,3,2,0,0,b,1,0,1o;2ugc,-6o,6hc0,-8c,4r40,-6o,6hc0,-8c,4yw0,-6o,69k0,-8c,4yw0,-6o,69k0,-8c,4r40,-6o,t600,-8c,43s0,-6o,74o0,-8c,4bk0,-6o,6ww0,-8c,43s0,-6o,74o0,-8c,4bk0,-6o,74o0,-8c,4bk0,-6o,7cg0,-8c,4bk0,-6o,6p40,-8c,3w00,-6o,7cg0,-8c,3w00,-6o,7cg0,-8c,3w00,-6o,7cg0,-8c,43s0,-6o,7cg0,-8c,3w00,-6o,7cg0,-8c,3w00,-6o,7cg0,-8c,3w00,-6o,7cg0,-8c,3w00,-6o,7cg0,-8c,43s0,-6o,7cg0,-8c,3w00,-6o,7cg0,-8c,3w00,-6o,7cg0,-8c,3w00,-6o,7cg0,-8c,3w00,-6o,7cg0,-8c,3w00,-6o,iso0,-8c
=-8c;-a0,-8c,3,2,0,3c,b,1,0,3c;24ybo,-a0,43to,-8c
=-8c;-8c,-6o,3,2,0,3c,b,1,0,3c;24ybo,-a0,43to,-8c,b8ec,-6o
=-8c;-8c,-6o,3,2,0,3c,b,1,0,3c;24ybo,-a0,43to,-6o
=-a0;-8c,-6o,3,2,0,3c,b,1,0,3c;2ulc,-8c,b8ec,-6o,6hac,-8c,4yxo,-6o,69ic,-8c,4yxo,-6o,69ic,-8c,4yxo,-6o,6hac,-8c,4r5o,-6o,6hac,-8c,4r5o,-6o,6hac,-8c,43to,-6o
=-dc;-dc,-bo,3,2,0,3c,b,1,0,3c;2uoo,-bo,6hac,-dc,4r5o,-bo,6hac,-dc,4yxo,-bo,69ic,-dc,4yxo,-bo,69ic,-dc,4yxo,-bo,6hac,-dc,4r5o,-bo,6hac,-dc,4r5o,-bo,6hac,-dc,43to,-bo
=-a0;-a0;1nga0,-8c,5eec,-a0,6hh0,-8c,4r0o,-a0
=-a0;-a0,-8c,3,2,0,3c,b,1,0,3c;2ulc,-8c,6hac,-a0,5u1o,-8c,4jac,-a0,5u1o,-8c,69ic,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,69ic,-a0,4blo,-8c
=-bo;-bo;2un0,-a0,6hac,-bo,5u1o,-a0,4jac,-bo,5u1o,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,6hac,-bo,4r5o,-a0,6hac,-bo
=-a0;-a0;2ulc,-8c,6hac,-a0,5u1o,-8c,4jac,-a0,5u1o,-8c,69ic,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,6hac,-a0,4r5o,-8c,6hac,-a0
=-dc;-f0,-dc,3,2,0,3c,b,1,0,3c;4yi0o,-f0,43to,-dc,7cec,-f0,3w1o,-dc,7cec,-f0,3w1o,-dc,9pyc,-f0
=-50;-50,-3c,3,2,0,3c,b,1,0,3c;2ugc,-3c,6hac,-50,4r5o,-3c,6hac,-50,4yxo,-3c,69ic,-50,4yxo,-3c,69ic,-50,4yxo,-3c,6hac,-50,4r5o,-3c,6hac,-50,4r5o,-3c,6hac,-50,43to,-3c
=-6o;-6o,-50,3,2,0,3c,b,1,0,3c;2uep,-50,6hac,-6o,4r5o,-50,6hac,-6o,4yxo,-50,69ic,-6o,4yxo,-50,69ic,-6o,4yxo,-50,6hac,-6o,4r5o,-50,6hac,-6o,4r5o,-50,6hac,-6o,43wz,-50
=-50;-50;1h6l0,-3c,5u1o,-50,61to,-3c,4r2c,-50,69lo,-3c,4yuc,-50,6hdo,-3c,4r2c,-50,6hdo,-3c,4r2c,-50,6hdo,-3c,4yuc,-50,69lo,-3c,4yuc,-50,69lo,-3c,4yuc,-50,6hdo,-3c,4r2c,-50,6hdo,-3c,4r2c,-50,6hdo,-3c,4r2c,-50
=-1o;-3c;1rdo,-3c,6wxo,-1o,7qc,-3c,b8ho,-1o,3vyc,-3c
=-bo;-a0,-8c,3,2,0,3c,b,1,0,3c;2un0,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,43to,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,43to,-a0,b8ec,-8c
=-bo;-a0,-8c,3,2,0,3c,b,1,0,3c;2un0,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,b8ec,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,43to,-8c
=-bo;-a0,-8c,3,2,0,3c,b,1,0,3c;2un0,-a0,6hac,-bo,5u1o,-a0,4jac,-bo,5u1o,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4r5o,-a0,6hac,-bo,4yxo,-a0,69ic,-bo,4yxo,-a0,69ic,-bo,4blo,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,43to,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,3w1o,-a0,7cec,-bo,43to,-a0,7cec,-bo,3w1o,-a0,b8ec,-8c
=-8c;-8c,-6o,3,2,0,3c,b,1,0,3c;1n8gc,-6o,6hac,-8c,4r5o,-6o,6hac,-8c,1ohx0,-6o,7cec,-8c,3w1o,-6o,7cec,-8c,3w1o,-6o,7cec,-8c,3w1o,-6o,7cec,-8c,fc9o,-6o
=-50;-50;2710,-6o,6p5o,-50,4jac,-6o,6p5o,-50,4jac,-6o,6p5o,-50,4jac,-6o,6p5o,-50,4r2c,-6o,6hdo,-50,4r2c,-6o,6hdo,-50,4r2c,-6o,6p5o,-50,4jac,-6o,6p5o,-50,56mc,-6o,61to,-50,4r2c,-6o,6hdo,-50,5eec,-6o,5u1o,-50,6hac,-6o,38po,-50,7ryc,-6o,3w1o,-50,7cec,-6o,43to,-50,74mc,-6o,43to,-50,j0ec,-6o,2t5o,-50
=-a0;-8c;2ulc,-8c,6hc0,-a0,4r40,-8c,6hc0,-a0,4yw0,-8c,69k0,-a0,4yw0,-8c,69k0,-a0,4yw0,-8c,6hc0,-a0,4r40,-8c,6hc0,-a0,4r40,-8c,6hac,-a0,43to,-8c,7cec,-a0,3w1o,-8c,7cec,-a0,3w1o,-8c,7cec,-a0,43to,-8c,7cec,-a0,3w1o,-8c,7cec,-a0,3w1o,-8c,7cec,-a0,3w1o,-8c,7cec,-a0,3w1o,-8c,7cec,-a0,3w1o,-8c,7cec,-a0,43to,-8c,7cec,-a0,3w1o,-8c,7cec,-a0,3w1o,-8c,7cec,-a0,3w1o,-8c,7cec,-a0,3w1o,-8c,7cec,-a0,43to,-8c,7cec,-a0,3w1o,-8c,7cec,-a0,3w1o,-8c,7cec,-a0,3w1o,-8c,7cec,-a0,3w1o,-8c,7cec,-a0,3w1o,-8c
=-a0;-a0,-8c,3,2,0,3c,b,1,0,3c;2ulc,-8c,hpqc,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,43to,-8c
=-3c;-50;1rfc,-50,6wxo,-3c,7qc,-50,b8ho,-3c,3vyc,-50
=-a0;-a0,-8c,3,2,0,3c,b,1,0,3c;2ulc,-8c,hpqc,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,69ic,-a0,4yxo,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,hxic,-a0
=-6o;-50;2nlao,-50
=-50;-6o,-50,9,1,6,140,4,1,6,140;2710,-6o,6p5o,-50,4jac,-6o,6p5o,-50,4jac,-6o,6p5o,-50,4jac,-6o,6p5o,-50,4r2c,-6o,6hdo,-50,4r2c,-6o,6hdo,-50,4r2c,-6o,6p5o,-50,4jac,-6o,6p5o,-50,56mc,-6o,61to,-50,4r2c,-6o,6hdo,-50,5eec,-6o,5u1o,-50,6hac,-6o,38po,-50,7ryc,-6o,3w1o,-50,7cec,-6o,43to,-50,74mc,-6o,43to,-50,j0ec,-6o,2t5o,-50,8fac,-6o,2t5o,-50,8fac,-6o,2t5o,-50,7cec,-6o,4r5o,-50,6hac,-6o,4r5o,-50,6hac,-6o,4r5o,-50,6hac,-6o,4yxo,-50
=-6o;-6o;9bu0,-8c,12w0,-6o
=-3c;-50;1rfc,-50,6wxo,-3c,43qc,-50,7cho,-3c,3vyc,-50,7zto,-3c,38mc,-50,7k9o,-3c,3o6c,-50,821o,-3c,3e6c,-50,7cho,-3c,3vyc,-50,7zto,-3c,3gec,-50,74po,-3c,3vyc,-50,7k9o,-3c,3o6c,-50,7k9o,-3c,3vyc,-50,7cho,-3c,3vyc,-50,7cho,-3c,43qc,-50,7cho,-3c,3o6c,-50,7k9o,-3c,3o6c,-50,7k9o,-3c,3vyc,-50,7cho,-3c,3vyc,-50,7cho,-3c,3vyc,-50,7cho,-3c,3vyc,-50,7zto,-3c,38mc,-50
=-1o;-3c,-1o,3,5,0,-1o,a,5,0,0;2mho,0,6p40,-1o,4jc0,0,6p40,-1o,4r40,0,6hc0,-1o,4r40,0,6hc0,-1o,4r40,0,6p40,-1o,4jc0,0,6p40,-1o,4jc0,0,6p40,-1o,4jc0,0,6p40,-1o,4r40,0,6hc0,-1o,4r40,0,6hc0,-1o,4r40,0,6p40,-1o,4jc0,0,6p40,-1o,4jc0,0,6p40,-1o,4r40,0,6hc0,-1o,4r40,0,6hc0,-1o,4r40,0,6hc0,-1o,4r40,0,6p40,-1o,4jc0,0,6p40,-1o,4jc0,0,6p40,-1o,4r40,0,6hc0,-1o,4r40,0,6hc0,-1o,4r40,0,6p40,-1o,4jc0,0,6p40,-1o,4jc0,0,6p40,-1o,b8g0,-3c
=-5u;-5u,-46,3,2,0,3c,b,1,0,3c;2udv,-46,6hac,-5u,4r5o,-46,6hac,-5u,4yxo,-46,69ic,-5u,4yxo,-46,69ic,-5u,4yxo,-46,6hac,-5u,4r5o,-46,6hac,-5u,4r5o,-46,6hac,-5u,43to,-46,7cec,-5u,3w1o,-46,7cec,-5u,3w1o,-46,7cec,-5u,43to,-46,7cec,-5u,3w1o,-46,7chn,-5u
=-a0;-a0;1zju0,-8c,2u6c,-a0
=-dc;-bo;2uoo,-bo,6hac,-dc,4r5o,-bo,6hac,-dc,4yxo,-bo,69ic,-dc,4yxo,-bo,69ic,-dc,4yxo,-bo,6hac,-dc,4r5o,-bo,6hac,-dc,4r5o,-bo,6hac,-dc,43to,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,43to,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,43to,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,43to,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo,7cec,-dc,3w1o,-bo
=dc;dc;32fa0,ic,4970,dc,il10,ic,3lyc,dc,1glac,ic,fl5o,dc,6hh0,ic,4ypc,dc,67h0,ic,4t70,dc,6hc1,ic,4yqz,dc,69p1,ic,4yqz,dc,69p1,ic,4vjz,dc
=bo;bo;32fbo,8c,4g1o,bo,ie6c,8c,3m1o,bo
=go;go;
=ic;go,ic,a,1,0,3c,4,1,0,50;2m2o,go,4r40,ic,6hc0,go,61s0,ic,5eg0,go,5u00,ic,5eg0,go,5u00,ic,5eg0,go,5u00,ic,5eg0,go,5u00,ic,5m80,go,5m80,ic,5eg0,go,61s0,ic,5m80,go,5m80,ic,5m80,go,5m80,ic,guo0,go
=a0;8c;32fdc,8c
=lo;k0,lo,9,5,0,3c,4,1,0,50;2e7c,k0,61s0,lo,56o0,k0,69k0,lo,4yw0,k0,69k0,lo,4yw0,k0,69k0,lo,56o0,k0,61s0,lo,56o0,k0,61s0,lo,56o0,k0,61s0,lo,56o0,k0,61s0,lo
=0;0,3c,3,5,0,1o,a,5,0,50;1n0ho,3c
=bo;8c;7i47o,8c
=a0;8c;2m9c,bo,6p40,a0,4jc0,bo,6p40,a0,4r40,bo,6hc0,a0,4r40,bo,6hc0,a0,4r40,bo,6p40,a0,61xgo,8c
=3c;50;2qso,50,5nc0,3c,5l40,50,5nc0,3c,5m80,50,5m80,3c,5m80,50,6hc0,3c,4r40,50,69k0,3c,56o0,50,5m80,3c,5m80,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6p40,3c,4jc0,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,jfyc,3c,30xo,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6p40,3c,4jc0,50,6p40,3c,3o80,50
=k0;k0;2lzc,lo,6p40,k0,4jc0,lo,6p40,k0,4r40,lo,6hc0,k0,4r40,lo,6hc0,k0,4r40,lo,6p40,k0,4jc0,lo,6p40,k0,4jc0,lo,6p40,k0,4jc0,lo,6p40,k0,4r40,lo,6hc0,k0,4r40,lo,6hc0,k0,bg9o,ic,4jc0,k0
=6o;8c;2mco,8c,6p40,6o,4jc0,8c,6p40,6o,4r40,8c,6hc0,6o,4r40,8c,6hc0,6o,4r40,8c
=8c;8c;2mb0,a0,6p40,8c,4jc0,a0,6p40,8c,4r40,a0,6hc0,8c,4r40,a0,6hc0,8c,4r40,a0,6p40,8c
=8c;8c;
=50;50;2t40,6o,5nc0,50,5m80,6o,5nc0,50,5m80,6o,5nc0,50,5m80,6o,5nc0,50,5nc0,6o,5nc0,50,5m80,6o,5nc0,50,5m80,6o,5nc0,50,5m80,6o,5nc0,50
=6o;6o;2mg0,8c,6p40,6o,4jc0,8c,6p40,6o,4r40,8c,6hc0,6o,4r40,8c,6hc0,6o,4r40,8c,6p40,6o,4jc0,8c,6p40,6o,4jc0,8c,6p40,6o,4jc0,8c,6p40,6o,4r40,8c,6hc0,6o,4r40,8c,6hc0,6o,4r40,8c,6p40,6o,4jc0,8c,6p40,6o,4jc0,8c,6p40,6o,4r40,8c,6hc0,6o,4r40,8c,6hc0,6o,4r40,8c,6hc0,6o
=bo;bo;
=a0;bo;2m9c,bo,6p40,a0,4jc0,bo,6p40,a0,4r40,bo,6hc0,a0,4r40,bo,6hc0,a0,4r40,bo,6p40,a0,4jc0,bo,6p40,a0,4jc0,bo,6p40,a0,4jc0,bo,6p40,a0,4r40,bo,6hc0,a0,4r40,bo,6hc0,a0,4r40,bo,6p40,a0,4jc0,bo,14eec,a0,fzlo,bo
=3c;3c,50,3,5,0,0,a,5,0,0;
=8c;a0;2mbu,a0,6p2c,8c,4jdo,a0,6p2c,8c,4r5o,a0,6hac,8c,4r5o,a0,6hac,8c,4r5o,a0,6p2c,8c,4jdo,a0
=dc;dc;
=96;96;
=f0;f0;2m4c,go,6p40,f0,4jc0,go,6p40,f0,4r40,go,6hc0,f0,4r40,go,6hc0,f0,4r40,go,6p40,f0,4jc0,go,6p40,f0,4jc0,go,6p40,f0,4jc0,go,6p40,f0,4r40,go,6hc0,f0,4r40,go,6hc0,f0,4r40,go,6p40,f0,4jc0,go,14eec,dc,fznc,f0
=dc;dc;ewe0,f0,4r2c,dc,5m9o,f0,5m6c,dc,5m9o,f0,5m6c,dc,5m9o,f0,5m6c,dc,5m9o,f0,5m6c,dc,5m9o,f0,5tyc,dc,2nplo,f0,5m30,dc,5md0,f0,5m30,dc
=a0;96;1yuuu,96
=a0;a0;2ypwc,bo,60o0,a0
=3c;50;2t0o,50,5nac,3c,5m9o,50,5nac,3c,5m9o,50,5nac,3c,5m9o,50,5nac,3c,5ndo,50,5nac,3c,5m9o,50,5nac,3c,5m9o,50,5dac,3c,5u1o,50,6p2c,3c,4r5o,50,6iec,3c,4i9o,50,6p2c,3c,4r5o,50,6hac,3c,4r5o,50,6hac,3c,4r5o,50,6hac,3c,4r5o,50,6hac,3c,4r5o,50,6p2c,3c,4jdo,50,6p2c,3c,4jdo,50,6p2c,3c,4r5o,50,6hac,3c,4r5o,50,6hac,3c,4r5o,50,6hac,3c,4r5o,50,6p2c,3c,4jdo,50,6p2c,3c,4jdo,50
=dc;f0;80io,f0
=6o;6o;
=3c;3c,50,3,5,0,50,a,5,0,6o;2mho,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6p40,3c,4jc0,50,6p40,3c,4jc0,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6p40,3c,4jc0,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,hxk0,3c
=3c;3c,50,3,4,4,2bc,a,4,4,2bc;3f8o,50,5m6c,3c,5m9o,50,5m6c,3c,5m9o,50,5m6c,3c,5m9o,50,5m6c,3c,5m9o,50,56o0,3c,61s0,50,5b5o,3c,5iuc,50,5dac,3c,5w9o,50,53do,3c,62uc,50,4r2c,3c,6hdo,50,4yw0,3c,6ao1,50,486b,3c,76xp,50,3rib,3c,7gxo,50,5eg0,3c,5u00,50,5m6c,3c,5m9o,50,6hac,3c,4s9o,50,6g80,3c,4s9o,50,6p2c,3c,4jdo,50,6p2c,3c,4jdo,50,6p2c,3c,4q00,50,6iec,3c,4r5o,50,6hc0,3c,4r40,50,6o00,3c,4lk0,50,6o1o,3c,5m9o,50,5m6c,3c,5eho,50,5tyc,3c,56po,50,61qc,3c,4r5o,50,6hac,3c,4r5o,50,6p2c,3c,4jdo,50,6p2c,3c,4jdo,50,6p2c,3c,4r5o,50,6hac,3c,4r5o,50,6hac,3c,4r5o,50,6p2c,3c,4jdo,50,6p2c,3c,4jdo,50,6p2c,3c,4jdo,50,6p2c,3c,4r5o,50,69ic,3c,4yxo,50,61qc,3c,56po,50,5m6c,3c,5m9o,50,5eec,3c,5u1o,50,4yuc,3c,1iho,50,7qc,3c,4r5o,50,4jac,3c,1apo,50,nac,3c,4r5o,50,4bic,3c,1apo,50,v2c,3c,4r5o,50,3vyc,3c,1iho,50,12uc,3c,4r5o,50,3o6c,3c,1apo,50,1q6c,3c,4jdo,50,3gec,3c,1apo,50,1xyc,3c,4jdo,50,30uc,3c,1iho,50,25qc,3c,4r5o,50,2lac,3c,1apo,50,2lac,3c,4r5o,50,25qc,3c,1iho,50,2t2c,3c,4r5o,50,1xyc,3c,1apo,50,3gec,3c,4jdo,50,1q6c,3c,1apo,50,3o6c,3c,4jdo,50,1amc,3c,1iho,50,3vyc,3c,4r5o,50,v2c,3c,1apo,50,4bic,3c,4r5o,50,fic,3c,1iho,50,4jac,3c,4r5o,50,7qc,3c,1iho,50,4r2c,3c,61to,50,5eec,3c,5m9o,50,5m6c,3c,56po,50,61qc,3c,4yxo,50,69ic,3c,4r5o,50,6hac,3c,4r5o,50,6p2c,3c,4jdo,50,6p2c,3c,4jdo,50,6p2c,3c,4jdo,50,6p2c,3c,4r5o,50,6hac,3c,4r5o,50,6hac,3c,4r5o,50,6p2c,3c,4jdo,50,6p2c,3c,4jdo,50,6hac,3c,4yxo,50,61qc,3c,56po,50,5tyc,3c,5eho,50,5eec,3c,5u1o,50,56mc,3c,1apo,50,7qc,3c,4jdo,50,4yuc,3c,1apo,50,fic,3c,4jdo,50,4jac,3c,1iho,50,nac,3c,4r5o,50,43qc,3c,1apo,50,12uc,3c,4r5o,50,3o6c,3c,1iho,50,1amc,3c,4r5o,50,3gec,3c,1iho,50,1q6c,3c,4jdo,50,38mc,3c,1apo,50,25qc,3c,4jdo,50,2t2c,3c,1iho,50,2dic,3c,4r5o,50,2dic,3c,1apo,50,2t2c,3c,4r5o,50,25qc,3c,1apo,50,30uc,3c,4r5o,50,1q6c,3c,1iho,50,38mc,3c,4r5o,50,1iec,3c,1apo,50,3vyc,3c,4jdo,50,12uc,3c,1iho,50,43qc,3c,4jdo,50,v2c,3c,1iho,50,4bic,3c,4r5o,50,fic,3c,1apo,50
=3c;3c,50,3,4,4,2bc,a,4,4,2bc;3f8o,50,5m6c,3c,5m9o,50,5m6c,3c,5m9o,50,5m6c,3c,5m9o,50,5m6c,3c,5m9o,50,56o0,3c,61s0,50,5b5o,3c,5iuc,50,5dac,3c,5w9o,50,53do,3c,62uc,50,4uec,3c,6e1o,50,4yw0,3c,69k0,50,49ac,3c,76xp,50,3rib,3c,w9o,50,yec,3c,5m9o,50,5eg0,3c,5u00,50,5m6c,3c,5m9o,50,6hac,3c,4s9o,50,6g80,3c,4s9o,50,6p2c,3c,4jdo,50,6p2c,3c,4jdo,50,6p2c,3c,4q00,50,6iec,3c,4r5o,50,6hc0,3c,4r40,50,6o00,3c,4lk0,50,6o1o,3c,5m9o,50,5m6c,3c,5eho,50,5tyc,3c,56po,50,61qc,3c,4r5o,50,6hac,3c,4r5o,50,6p2c,3c,4jdo,50,6p2c,3c,4jdo,50,6p2c,3c,4r5o,50,6hac,3c,4r5o,50,6hac,3c,4r5o,50,6p2c,3c,4jdo,50,6p2c,3c,4jdo,50,6p2c,3c,4jdo,50,6p2c,3c,4r5o,50,69ic,3c,4yxo,50,61qc,3c,56po,50,5m6c,3c,5m9o,50,5eec,3c,5u1o,50,4yuc,3c,1iho,50,7qc,3c,4r5o,50,4jac,3c,1apo,50,nac,3c,4r5o,50,4bic,3c,1apo,50,v2c,3c,4r5o,50,3vyc,3c,1iho,50,12uc,3c,4r5o,50,3o6c,3c,1apo,50,1q6c,3c,4jdo,50,3gec,3c,1apo,50,1xyc,3c,4jdo,50,30uc,3c,1iho,50,25qc,3c,4r5o,50,2lac,3c,1apo,50,2lac,3c,4r5o,50,25qc,3c,1iho,50,2t2c,3c,4r5o,50,1xyc,3c,1apo,50,3gec,3c,4jdo,50,1q6c,3c,1apo,50,3o6c,3c,4jdo,50,1amc,3c,1iho,50,3vyc,3c,4r5o,50,v2c,3c,1apo,50,4bic,3c,4r5o,50,fic,3c,1iho,50,4jac,3c,4r5o,50,7qc,3c,1iho,50,4r2c,3c,61to,50,5eec,3c,5m9o,50,5m6c,3c,56po,50,61qc,3c,4yxo,50,69ic,3c,4r5o,50,6hac,3c,4r5o,50,6p2c,3c,4jdo,50,6p2c,3c,4jdo,50,6p2c,3c,4jdo,50,6p2c,3c,4r5o,50,6hac,3c,4r5o,50,6hac,3c,4r5o,50,6p2c,3c,4jdo,50,6p2c,3c,4jdo,50,6hac,3c,4yxo,50,61qc,3c,56po,50,5tyc,3c,5eho,50,5eec,3c,5u1o,50,56mc,3c,1apo,50,7qc,3c,4jdo,50,4yuc,3c,1apo,50,fic,3c,4jdo,50,4jac,3c,1iho,50,nac,3c,4r5o,50,43qc,3c,1apo,50,12uc,3c,4r5o,50,3o6c,3c,1iho,50,1amc,3c,4r5o,50,3gec,3c,1iho,50,1q6c,3c,4jdo,50,38mc,3c,1apo,50,25qc,3c,4jdo,50,2t2c,3c,1iho,50,2dic,3c,4r5o,50,2dic,3c,1apo,50,2t2c,3c,4r5o,50,25qc,3c,1apo,50,30uc,3c,4r5o,50,1q6c,3c,1iho,50,38mc,3c,4r5o,50,1iec,3c,1apo,50,3vyc,3c,4jdo,50,12uc,3c,1iho,50,43qc,3c,4jdo,50,v2c,3c,1iho,50,4bic,3c,4r5o,50,fic,3c,1apo,50
=bo;bo;ewfo,dc,4r2c,bo,5m9o,dc,5m6c,bo,5m9o,dc,5m6c,bo,5m9o,dc,5m6c,bo,5m9o,dc,5m6c,bo,5m9o,dc,5tyc,bo,2nplo,dc,5m30,bo,5md0,dc,5m30,bo
=dc;dc;2m60,f0,6p40,dc,4jc0,f0,6p40,dc,4r40,f0,6hc0,dc,4r40,f0,6hc0,dc,4r40,f0,6p40,dc,4jc0,f0,6p40,dc,4jc0,f0,6p40,dc,4jc0,f0,6p40,dc,4r40,f0,6hc0,dc,4r40,f0,6hc0,dc,4r40,f0,6p40,dc,4jc0,f0,14eec,dc
=3c;50;2mec,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6p40,3c,4jc0,50,6p40,3c,4jc0,50,6p40,3c,4jfc,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6p40,3c,4kg0,50,6o00,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4s80,50,6g80,3c,4r40,50,6ww0,3c,4bk0,50
=f0;f0;
=3c;3c,50,3,4,4,17c,a,5,0,3c;37k0,50,5eco,3c,5plo,50,56mc,3c,5qpo,50,5xac,3c,5b5o,50,5tyc,3c,5rto,50,56mc,3c,5wbc,50,5w6c,3c,5c9o,50,5oec,3c,5k1o,50,58uc,3c,5zlo,50,5w6c,3c,5c9o,50,5oec,3c,5k1o,50,58uc,3c,67do,50,5oec,3c,5k1o,50,5gmc,3c,5rto,50
=7i;7i;
=8c;8c;pino,a0,5m6c,8c,1rqho,a0,4pyc,8c,53do,a0,666c,8c
=a0;a0;
=9l;9l;
=f0;f0;2m4c,go,6p40,f0,4jc0,go,6p40,f0,4r40,go,6hc0,f0,4r40,go,6hc0,f0,22co,go,2opo,ic,6p40,go,4jc0,ic,6p40,go,4jc0,ic,6p40,go,4jc0,ic,6p40,go,4r40,ic,6hc0,go,4r40,ic,6hc0,go,4r40,ic,6p40,go,4jc0,ic,58r0,go,z5p0,f0
=bo;bo;2m7o,dc,6p40,bo,4jc0,dc,6p40,bo,4r40,dc,6hc0,bo,4r40,dc,6hc0,bo,4r40,dc,6p40,bo,4jc0,dc,6p40,bo,4jc0,dc,6p40,bo,4jc0,dc,6p40,bo,4r40,dc,6hc0,bo,4r40,dc,6hc0,bo,4r40,dc,6p40,bo,4jc0,dc,14eec,bo
=ic;ic;2m10,k0,6p40,ic,4jc0,k0,6p40,ic,4r40,k0,6hc0,ic,4r40,k0,6hc0,ic,4r40,k0,6p40,ic,4jc0,k0,6p40,ic,4jc0,k0,6p40,ic,4jc0,k0,6p40,ic,4r40,k0,6hc0,ic,4r40,k0,6hc0,ic,4r40,k0,6p40,ic,4jc0,k0,14eec,go,gurc,ic
=3c;3c,50,3,5,0,50,a,5,0,6o;
=bo;bo;2m7o,dc,6p40,bo,4jc0,dc,6p40,bo,4r40,dc,6hc0,bo,4r40,dc,6hc0,bo,4r40,dc,6p40,bo,4jc0,dc,6p40,bo,4jc0,dc,6p40,bo,4jc0,dc,6p40,bo,4r40,dc,6hc0,bo,4r40,dc,6hc0,bo,bg9o,a0,4jc0,bo
=a0;bo;2m9c,bo,6p40,a0,4jc0,bo,6p40,a0,4r40,bo,6hc0,a0,4r40,bo,6hc0,a0,4r40,bo,6p40,a0,4jc0,bo,6p40,a0,4jc0,bo,6p40,a0,4jc0,bo,6p40,a0,4r40,bo,6hc0,a0,4r40,bo,6hc0,a0,4r40,bo,6p40,a0,4jc0,bo,14eec,a0,jnto,bo
=a0;a0;2m9c,bo,6p40,a0,4jc0,bo,6p40,a0,4r40,bo,6hc0,a0,4r40,bo,6hc0,a0,4r40,bo,6p40,a0,4jc0,bo,6p40,a0,4jc0,bo,6p40,a0,4jc0,bo,6p40,a0,4r40,bo,6hc0,a0,4r40,bo,6hc0,a0,4r40,bo,6p40,a0,4jc0,bo,14eec,a0
=f0;f0;4w2h0,e6,uog0,f0
=8c;8c;2mb0,a0,6p40,8c,4jc0,a0,6p40,8c,4r40,a0,6hc0,8c,4r40,a0,6hc0,8c,4r40,a0,68mj0,8c
=8c;8c;2mb0,a0,6p40,8c,4jc0,a0,6p40,8c,4r40,a0,6hc0,8c,4r40,a0,6hc0,8c,4r40,a0,4m2r0,8c
=au;au;
=go;ic;2m2o,ic,6p40,go,4jc0,ic,6p40,go,4r40,ic,6hc0,go,4r40,ic,6hc0,go,4r40,ic,6p40,go,4jc0,ic,6p40,go,4jc0,ic,6p40,go,4jc0,ic,6p40,go,4r40,ic,6hc0,go,4r40,ic,6hc0,go,4r40,ic,6p40,go,4jc0,ic,14eec,go,fzlo,ic
=ic;ic;2m10,k0,6p40,ic,4jc0,k0,6p40,ic,4r40,k0,6hc0,ic,4r40,k0,6hc0,ic,4r40,k0,6p40,ic,4jc0,k0,6p40,ic,4jc0,k0,6p40,ic,4jc0,k0,6p40,ic,4r40,k0,6hc0,ic,4r40,k0,6hc0,ic,4r40,k0,6p40,ic,4jc0,k0,14eec,ic
=6o;6o;2m9c,8c,6p2c,6o,4jdo,8c,6p2c,6o,4r5o,8c,6hac,6o,4r5o,8c,6hac,6o,4r5o,8c,2t2c,6o,3w6o,50,4jc0,6o
=5u;5u;2gq6,7i,5oec,5u,5m9o,7i,5oec,5u,5l5o,7i,5oec,5u,5l5o,7i,5oec,5u,5l5o,7i,5oec,5u,5m9o,7i,5oec,5u,s49o,7i,5oec,5u,5m9o,7i,5oec,5u,5l5o,7i,5oec,5u,5l5o,7i,5oec,5u,5l5o,7i,5oec,5u,5m9o,7i,5oec,5u,5l5o,7i,5oec,5u,5l5o,7i,5oec,5u,5l5o,7i,5oec,5u,5m9o,7i,5oec,5u,5l5o,7i,5oec,5u,5l5o,7i,5oec,5u,5l5o,7i,5oec,5u,5m9o,7i,5oec,5u,5l5o,7i,5oec,5u
=bo;bo;2m7o,dc,6p40,bo,4jc0,dc,6p40,bo,4r40,dc,yg0,bo,5ixo,a0,4r40,bo,6hc0,a0,4r40,bo,6p40,a0,4jc0,bo,6p40,a0,4jc0,bo,6p40,a0,4jc0,bo,6p40,a0,4r40,bo,6hc0,a0,4r40,bo,6hc0,a0,4r40,bo,6p40,a0,4jc0,bo,14eec,a0,hxlo,bo
=ic;go;2m10,k0,6p40,ic,4jc0,k0,6p40,ic,4r40,k0,6hc0,ic,4r40,k0,6hc0,ic,4r40,k0,6p40,ic,4jc0,k0,6p40,ic,4jc0,k0,6p40,ic,4jc0,k0,6p40,ic,4r40,k0,6hc0,ic,4r40,k0,6hc0,ic,4r40,k0,6p40,ic,4jc0,k0,58r0,ic,z5p0,go
=go;go;2m2o,ic,6p40,go,4jc0,ic,6p40,go,4r40,ic,6hc0,go,4r40,ic,6hc0,go,4r40,ic,6p40,go,4jc0,ic,6p40,go,4jc0,ic,6p40,go,4jc0,ic,6p40,go,4r40,ic,6hc0,go,4r40,ic,6hc0,go,4r40,ic,6p40,go,4jc0,ic,14eec,go
=f0;f0;2m4c,go,6p40,f0,4jc0,go,6p40,f0,4r40,go,6hc0,f0,4r40,go,6hc0,f0,4r40,go,6p40,f0,4jc0,go,6p40,f0,4jc0,go,6p40,f0,4jc0,go,6p40,f0,4r40,go,6hc0,f0,4r40,go,6hc0,f0,4r40,go,6p40,f0,4jc0,go,14eec,f0
=8c;8c;2mb0,a0,6p40,8c,4jc0,a0,6p40,8c,4r40,a0,6hc0,8c,4r40,a0,6hc0,8c,4r40,a0,6p40,8c,4jc0,a0,6p40,8c,4jc0,a0,6p40,8c,4jc0,a0,6p40,8c,4r40,a0,6hc0,8c,4r40,a0,6hc0,8c,4r40,a0,6p40,8c,4jc0,a0,14eec,8c
=6o;6o;2mco,8c,6p40,6o,4jc0,8c,6p40,6o,4r40,8c,6hc0,6o,4r40,8c,6hc0,6o,4r40,8c,6p40,6o,4jc0,8c,6p40,6o,4jc0,8c,6p40,6o,4jc0,8c,6p40,6o,4r40,8c,6hc0,6o,4r40,8c,6hc0,6o,4r40,8c,6p40,6o,4jc0,8c,6p40,6o
=-1o;-1o,0,3,5,0,0,a,5,0,1o;
=0;0,1o,3,5,0,1o,a,5,0,3c;
=-1o;-1o;
=-3c;-3c;
=-50;-50;39x0,-6o,4jdo,-50,6p5o,-6o,4blo,-50,74mc,-6o,43to,-50,74mc,-6o,4blo,-50,6wuc,-6o,4blo,-50,6wuc,-6o,4blo,-50,6wuc,-6o,4blo,-50,6wuc,-6o,4blo,-50,74mc,-6o,4blo,-50,6wuc,-6o,4blo,-50,6wuc,-6o,4blo,-50
=ic;go,ic,a,1,0,3c,4,1,0,50;2m2o,go,4r40,ic,6hc0,go,6p40,ic,4r40,go,6hc0,ic,4r40,go,6hc0,ic,4r40,go,6p40,ic,4jc0,go,6p40,ic,4r40,go,6hc0,ic,4jc0,go,6p40,ic
=hi;fu,hi,a,1,0,3c,4,1,0,50;2m3i,fu,6p40,hi,4jc0,fu,6p40,hi,4r40,fu,6hc0,hi,4r40,fu,6hc0,hi,4r40,fu,6p40,hi,4jc0,fu,6p40,hi,4r40,fu,6hc0,hi,4jc0,fu,6p40,hi
=ic;go,ic,a,1,0,3c,4,1,0,50;2m2o,go,4r40,ic,6hc0,go,61s0,ic,5eg0,go,5u00,ic,5eg0,go,5u00,ic,5eg0,go,5u00,ic,5eg0,go,5u00,ic,5m80,go,5m80,ic,5eg0,go,61s0,ic
=fu;fu;
=el;el;260kr,g9,3gg0,el,6p40,g9,4r40,el,6hc0,g9,4r40,el
=ic;hi,ic,a,1,0,3c,4,1,0,3c;2m10,hi,4r4u,ic,6hb6,hi,6p4u,ic,4r36,hi,6hcu,ic,4r36,hi,6hcu,ic,4r36,hi,6p4u,ic,4jb6,hi,6p4u,ic,4r36,hi,6hcu,ic,4jb6,hi,6p4u,ic
=dc;dc;260m0,f0,3gg0,dc,6p40,f0,4r40,dc,6hc0,f0,4r40,dc
=-8c;-a0,-8c,9,1,6,10o,4,1,6,10o;2710,-a0,6p5o,-8c,4jac,-a0,6p5o,-8c,4jac,-a0,6p5o,-8c,4jac,-a0,6p5o,-8c,4r2c,-a0,6hdo,-8c,4r2c,-a0,6hdo,-8c,4r2c,-a0,6p5o,-8c,4jac,-a0,6p5o,-8c,56mc,-a0,61to,-8c,4r2c,-a0,6hdo,-8c,5eec,-a0,5u1o,-8c,6hac,-a0,38po,-8c,7ryc,-a0,3w1o,-8c,7cec,-a0,43to,-8c,74mc,-a0,43to,-8c,j0ec,-a0,2t5o,-8c,8fac,-a0,2t5o,-8c,8fac,-a0,2t5o,-8c,7cec,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4r5o,-8c,6hac,-a0,4yxo,-8c
=0;1o,0,a,5,0,3c,3,5,0,1o;
=-go;-go;
=-ic;-ic;
=-k0;-k0;
=-dc;-dc;
=-f0;-f0;
=ic;ic;
=k0;k0;
=lo;lo;
=nc;nc;
=50;6o;2mec,6o,6p40,50,4jc0,6o,6p40,50,4r40,6o,6hc0,50,4r40,6o,6hc0,50,4r40,6o,6p40,50,4jc0,6o,6p40,50,4jc0,6o,6p40,50,4jc0,6o,6p40,50,4r40,6o,6hc0,50,4r40,6o,6hc0,50,4r40,6o,6p40,50,4jc0,6o,14eec,50,fzlo,6o
=3c;3c,50,3,5,0,50,a,5,0,6o;2mg0,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6p40,3c,4jc0,50,6p40,3c,4jc0,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6p40,3c,4jc0,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6p40,3c,4jc0,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6p40,3c,4jdo,50
=3c;3c;2mg0,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6p40,3c,4jc0,50,6p40,3c,4jc0,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6p40,3c,4jc0,50,14eec,3c
=50;50;2mec,6o,6p40,50,4jc0,6o,6p40,50,4r40,6o,6hc0,50,4r40,6o,6hc0,50,4r40,6o,6p40,50,4jc0,6o,6p40,50,4jc0,6o,6p40,50,4jc0,6o,6p40,50,4r40,6o,6hc0,50,4r40,6o,6hc0,50,4r40,6o,6p40,50,4jc0,6o,14eec,50
=3c;50;2mg0,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6p40,3c,4jc0,50,6p40,3c,4jc0,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6p40,3c,4jc0,50
=3c;3c,50,3,5,0,50,a,5,0,6o;duxo,50
=6o;6o;2mco,8c,6p40,6o,4jc0,8c,6p40,6o,4r40,8c,6hc0,6o,4r40,8c,6hc0,6o,4r40,8c,6p40,6o,4jc0,8c,6p40,6o,4jc0,8c,6p40,6o,4jc0,8c,6p40,6o,4r40,8c,6hc0,6o,4r40,8c,6hc0,6o,bg9o,50,4jc0,6o
=50;6o;2mec,6o,6p40,50,4jc0,6o,6p40,50,4r40,6o,6hc0,50,4r40,6o,6hc0,50,4r40,6o,6p40,50,4jc0,6o,6p40,50,4jc0,6o,6p40,50,4jc0,6o,6p40,50,4r40,6o,6hc0,50,4r40,6o,6hc0,50,4r40,6o,6p40,50,4jc0,6o,14eec,50,nrlo,6o
=3c;50;2mho,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6p40,3c,4jc0,50,6p40,3c,4jc0,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r40,50,6hc0,3c,4r40,50,6p40,3c,4jc0,50,6p40,3c,4jc0,50,6p40,3c,4r40,50,6hc0,3c,4r2c,6o,6h8o,50
=3c;3c,50,3,5,0,50,a,5,0,6o;pb5o,50
=3c;3c,50,3,5,0,50,a,5,0,6o;10jlo,50
=50;50;2mec,6o,6p40,50,4jc0,6o,6p40,50,4r40,6o,6hc0,50,4r40,6o,6hc0,50,4r40,6o,6p40,50,4jc0,6o,6p40,50,4jc0,6o,6p40,50,4jc0,6o,6p40,50,4r40,6o,6hc0,50,4r40,6o,6hc0,50,4r40,6o,6p40,50,4jc0,6o,14eec,50,195lo,6o,oeuc,50
=6o;6o;2reso,8c,4r2c,6o
=mx;l9,mx,9,5,0,4l,4,1,0,69;2e7c,l9,61s0,mx,56o0,l9,69k0,mx,4yw0,l9,69k0,mx,4yw0,l9,69k0,mx,56o0,l9,61s0,mx,56o0,l9,61s0,mx,56o0,l9,61s0,mx,56o0,l9,61s0,mx
=-ic;lo;3d16c,-go,5t10,-ic,5eg0,-go,2zlc,nc,2ueo,lo,5m80,nc,5u00,lo,5eg0,nc,5u00,lo,5eg0,nc,5u00,lo,5eg0,nc,5u00,lo,5eg0,nc,5u00,lo,5eg0,nc,5u00,lo,5m80,nc,5u00,lo,5eg0,nc,5u00,lo,5eg0,nc,5u00,lo
=go;ic;4oyyo,ic
=-ic;lo;3r8ac,lo
=lo;k0;1qvc,k0,31yw0,lo,3o80,k0,6hc0,lo,43s0,k0,74o0,lo,2t40,k0,8fc0,lo,2t40,k0,8n40,lo,2lac,k0,8uxo,lo,2dk0,k0,8uw0,lo,2dk0,k0,92o0,lo,25s0,k0,92o0,lo,25s0,k0,92o0,lo,25s0,k0,9ag0,lo,1y00,k0,al40,lo,v40,k0
=-fu;-fu;
=j6;ic,k0,a,1,0,3c,4,1,0,50;4xm06,ic,195ku,k0
=nc;lo;2e5o,lo,74o0,nc,2lac,lo,8n5o,nc,2lac,lo,4mkpo,nc,25s0,lo
Africa/Abidjan 0
/Accra 0
/Addis_Ababa 1
/Algiers 2
/Asmara 1
/Asmera 1
/Bamako 0
/Bangui 2
/Banjul 0
/Bissau 0
/Blantyre 3
/Brazzaville 2
/Bujumbura 3
/Cairo 4
/Casablanca 5
/Ceuta 6
/Conakry 0
/Dakar 0
/Dar_es_Salaam 1
/Djibouti 1
/Douala 2
/El_Aaiun 5
/Freetown 0
/Gaborone 3
/Harare 3
/Johannesburg 3
/Juba 7
/Kampala 1
/Khartoum 8
/Kigali 3
/Kinshasa 2
/Lagos 2
/Libreville 2
/Lome 0
/Luanda 2
/Lubumbashi 3
/Lusaka 3
/Malabo 2
/Maputo 3
/Maseru 3
/Mbabane 3
/Mogadishu 1
/Monrovia 0
/Nairobi 1
/Ndjamena 2
/Niamey 2
/Nouakchott 0
/Ouagadougou 0
/Porto-Novo 2
/Sao_Tome 9
/Timbuktu 0
/Tripoli a
/Tunis b
/Windhoek c
America/Adak d
/Anchorage e
/Anguilla f
/Antigua f
/Araguaina g
America/Argentina/Buenos_Aires h
/Catamarca i
/ComodRivadavia i
/Cordoba h
/Jujuy j
/La_Rioja i
/Mendoza k
/Rio_Gallegos i
/Salta j
/San_Juan l
/San_Luis m
/Tucuman n
/Ushuaia o
America/Aruba f
/Asuncion p
/Atikokan q
/Atka d
/Bahia r
/Bahia_Banderas s
/Barbados f
/Belem t
/Belize u
/Blanc-Sablon f
/Boa_Vista v
/Bogota q
/Boise w
/Buenos_Aires h
/Cambridge_Bay x
/Campo_Grande y
/Cancun z
/Caracas 10
/Catamarca i
/Cayenne t
/Cayman q
/Chicago 11
/Chihuahua 12
/Ciudad_Juarez 13
/Coral_Harbour q
/Cordoba h
/Costa_Rica u
/Coyhaique 14
/Creston 15
/Cuiaba 16
/Curacao f
/Danmarkshavn 0
/Dawson 17
/Dawson_Creek 15
/Denver w
/Detroit 18
/Dominica f
/Edmonton 19
/Eirunepe 1a
/El_Salvador u
/Ensenada 1b
/Fort_Nelson 1c
/Fort_Wayne 1d
/Fortaleza 1e
/Glace_Bay 1f
/Godthab 1g
/Goose_Bay 1h
/Grand_Turk 1i
/Grenada f
/Guadeloupe f
/Guatemala 1j
/Guayaquil q
/Guyana f
/Halifax 1f
/Havana 1k
/Hermosillo 15
America/Indiana/Indianapolis 1d
/Knox 1l
/Marengo 1d
/Petersburg 1m
/Tell_City 1l
/Vevay 1d
/Vincennes 1m
/Winamac 1n
America/Indianapolis 1d
/Inuvik 19
/Iqaluit 1o
/Jamaica q
/Jujuy j
/Juneau e
America/Kentucky/Louisville 18
/Monticello 1o
America/Knox_IN 1l
/Kralendijk f
/La_Paz f
/Lima q
/Los_Angeles 1p
/Louisville 18
/Lower_Princes f
/Maceio 1e
/Managua 1q
/Manaus f
/Marigot f
/Martinique f
/Matamoros 1r
/Mazatlan 1s
/Mendoza k
/Menominee 11
/Merida 1t
/Metlakatla 1u
/Mexico_City 1t
/Miquelon 1v
/Moncton 1w
/Monterrey 1t
/Montevideo 1x
/Montreal 18
/Montserrat f
/Nassau 18
/New_York 18
/Nipigon 18
/Nome e
/Noronha 1y
America/North_Dakota/Beulah 1z
/Center 11
/New_Salem 20
America/Nuuk 1g
/Ojinaga 21
/Panama q
/Pangnirtung 1o
/Paramaribo t
/Phoenix 15
/Port-au-Prince 22
/Port_of_Spain f
/Porto_Acre 1a
/Porto_Velho f
/Puerto_Rico f
/Punta_Arenas 23
/Rainy_River 24
/Rankin_Inlet 25
/Recife 26
/Regina u
/Resolute 27
/Rio_Branco 1a
/Rosario h
/Santa_Isabel 1b
/Santarem 28
/Santiago 29
/Santo_Domingo 2a
/Sao_Paulo 2b
/Scoresbysund 2c
/Shiprock w
/Sitka e
/St_Barthelemy f
/St_Johns 2d
/St_Kitts f
/St_Lucia f
/St_Thomas f
/St_Vincent f
/Swift_Current u
/Tegucigalpa 2e
/Thule 1f
/Thunder_Bay 18
/Tijuana 1b
/Toronto 18
/Tortola f
/Vancouver 2f
/Virgin f
/Whitehorse 17
/Winnipeg 24
/Yakutat e
/Yellowknife 19
Antarctica/Casey 2g
/Davis 2h
/DumontDUrville 2i
/Macquarie 2j
/Mawson 2k
/McMurdo 2l
/Palmer 23
/Rothera t
/South_Pole 2l
/Syowa 1
/Troll 2m
/Vostok 2n
Arctic/Longyearbyen 6
Asia/Aden 1
/Almaty 2o
/Amman 2p
/Anadyr 2q
/Aqtau 2r
/Aqtobe 2s
/Ashgabat 2t
/Ashkhabad 2t
/Atyrau 2r
/Baghdad 2u
/Bahrain 1
/Baku 2v
/Bangkok 2w
/Barnaul 2x
/Beirut 2y
/Bishkek 2z
/Brunei 30
/Calcutta 31
/Chita 32
/Choibalsan 33
/Chongqing 30
/Chungking 30
/Colombo 34
/Dacca 35
/Damascus 36
/Dhaka 35
/Dili 37
/Dubai 38
/Dushanbe 2t
/Famagusta 39
/Gaza 3a
/Harbin 30
/Hebron 3b
/Ho_Chi_Minh 2w
/Hong_Kong 30
/Hovd 3c
/Irkutsk 3d
/Istanbul 3e
/Jakarta 2w
/Jayapura 3f
/Jerusalem 3g
/Kabul 3h
/Kamchatka 2q
/Karachi 3i
/Kashgar 3j
/Kathmandu 3k
/Katmandu 3k
/Khandyga 3l
/Kolkata 31
/Krasnoyarsk 3m
/Kuala_Lumpur 30
/Kuching 30
/Kuwait 1
/Macao 30
/Macau 30
/Magadan 3n
/Makassar 30
/Manila 30
/Muscat 38
/Nicosia 3o
/Novokuznetsk 3p
/Novosibirsk 3q
/Omsk 3r
/Oral 2r
/Phnom_Penh 2w
/Pontianak 2w
/Pyongyang 3s
/Qatar 1
/Qostanay 3t
/Qyzylorda 3u
/Rangoon 3v
/Riyadh 1
/Saigon 2w
/Sakhalin 3w
/Samarkand 2t
/Seoul 3f
/Shanghai 30
/Singapore 30
/Srednekolymsk 3x
/Taipei 30
/Tashkent 2t
/Tbilisi 3y
/Tehran 3z
/Tel_Aviv 3g
/Thimbu 3j
/Thimphu 3j
/Tokyo 3f
/Tomsk 40
/Ujung_Pandang 30
/Ulaanbaatar 33
/Ulan_Bator 33
/Urumqi 3j
/Ust-Nera 41
/Vientiane 2w
/Vladivostok 42
/Yakutsk 43
/Yangon 3v
/Yekaterinburg 44
/Yerevan 45
Atlantic/Azores 46
/Bermuda 1f
/Canary 47
/Cape_Verde 48
/Faeroe 47
/Faroe 47
/Jan_Mayen 6
/Madeira 47
/Reykjavik 0
/South_Georgia 49
/St_Helena 0
/Stanley 4a
Australia/ACT 4b
/Adelaide 4c
/Brisbane 2i
/Broken_Hill 4c
/Canberra 4b
/Currie 4d
/Darwin 4e
/Eucla 4f
/Hobart 4d
/LHI 4g
/Lindeman 2i
/Lord_Howe 4g
/Melbourne 4b
/NSW 4b
/North 4e
/Perth 4h
/Queensland 2i
/South 4c
/Sydney 4b
/Tasmania 4d
/Victoria 4b
/West 4h
/Yancowinna 4c
Brazil/Acre 1a
/DeNoronha 1y
/East 2b
/West f
CET 6
CST6CDT 11
Canada/Atlantic 1f
/Central 24
/Eastern 18
/Mountain 19
/Newfoundland 2d
/Pacific 2f
/Saskatchewan u
/Yukon 17
Chile/Continental 29
/EasterIsland 4i
Cuba 1k
EET 3o
EST q
EST5EDT 18
Egypt 4
Eire 4j
Etc/GMT 0
/GMT+0 0
/GMT+1 48
/GMT+10 4k
/GMT+11 4l
/GMT+12 4m
/GMT+2 49
/GMT+3 t
/GMT+4 f
/GMT+5 q
/GMT+6 u
/GMT+7 15
/GMT+8 4n
/GMT+9 4o
/GMT-0 0
/GMT-1 2
/GMT-10 2i
/GMT-11 4p
/GMT-12 4q
/GMT-13 4r
/GMT-14 4s
/GMT-2 3
/GMT-3 1
/GMT-4 38
/GMT-5 2t
/GMT-6 3j
/GMT-7 2w
/GMT-8 30
/GMT-9 3f
/GMT0 0
/Greenwich 0
/UCT 0
/UTC 0
/Universal 0
/Zulu 0
Europe/Amsterdam 6
/Andorra 6
/Astrakhan 4t
/Athens 3o
/Belfast 47
/Belgrade 6
/Berlin 6
/Bratislava 6
/Brussels 6
/Bucharest 3o
/Budapest 6
/Busingen 6
/Chisinau 4u
/Copenhagen 6
/Dublin 4j
/Gibraltar 6
/Guernsey 47
/Helsinki 3o
/Isle_of_Man 47
/Istanbul 3e
/Jersey 47
/Kaliningrad 4v
/Kiev 3o
/Kirov 4w
/Kyiv 3o
/Lisbon 47
/Ljubljana 6
/London 47
/Luxembourg 6
/Madrid 6
/Malta 6
/Mariehamn 3o
/Minsk 4x
/Monaco 6
/Moscow 4w
/Nicosia 3o
/Oslo 6
/Paris 6
/Podgorica 6
/Prague 6
/Riga 4y
/Rome 6
/Samara 4z
/San_Marino 6
/Sarajevo 6
/Saratov 50
/Simferopol 51
/Skopje 6
/Sofia 3o
/Stockholm 6
/Tallinn 52
/Tirane 6
/Tiraspol 4u
/Ulyanovsk 4t
/Uzhgorod 3o
/Vaduz 6
/Vatican 6
/Vienna 6
/Vilnius 53
/Volgograd 54
/Warsaw 6
/Zagreb 6
/Zaporozhye 3o
/Zurich 6
Factory 0
GB 47
GB-Eire 47
GMT 0
GMT+0 0
GMT-0 0
GMT0 0
Greenwich 0
HST 4k
Hongkong 30
Iceland 0
Indian/Antananarivo 1
/Chagos 3j
/Christmas 2w
/Cocos 3v
/Comoro 1
/Kerguelen 2t
/Mahe 38
/Maldives 2t
/Mauritius 55
/Mayotte 1
/Reunion 38
Iran 3z
Israel 3g
Jamaica q
Japan 3f
Kwajalein 4q
Libya a
MET 6
MST 15
MST7MDT w
Mexico/BajaNorte 1b
/BajaSur 1s
/General 1t
NZ 2l
NZ-CHAT 56
Navajo w
PRC 30
PST8PDT 1p
Pacific/Apia 57
/Auckland 2l
/Bougainville 58
/Chatham 56
/Chuuk 2i
/Easter 4i
/Efate 4p
/Enderbury 4r
/Fakaofo 59
/Fiji 5a
/Funafuti 4q
/Galapagos u
/Gambier 4o
/Guadalcanal 4p
/Guam 2i
/Honolulu 4k
/Johnston 4k
/Kanton 4r
/Kiritimati 4s
/Kosrae 4p
/Kwajalein 4q
/Majuro 4q
/Marquesas 5b
/Midway 4l
/Nauru 4q
/Niue 4l
/Norfolk 5c
/Noumea 4p
/Pago_Pago 4l
/Palau 3f
/Pitcairn 4n
/Pohnpei 4p
/Ponape 4p
/Port_Moresby 2i
/Rarotonga 4k
/Saipan 2i
/Samoa 4l
/Tahiti 4k
/Tarawa 4q
/Tongatapu 5d
/Truk 2i
/Wake 4q
/Wallis 4q
/Yap 2i
Poland 6
Portugal 47
ROC 30
ROK 3f
Singapore 30
Turkey 3e
UCT 0
US/Alaska e
/Aleutian d
/Arizona 15
/Central 11
/East-Indiana 1d
/Eastern 18
/Hawaii 4k
/Indiana-Starke 1l
/Michigan 18
/Mountain w
/Pacific 1p
/Samoa 4l
UTC 0
Universal 0
W-SU 4w
WET 47
Zulu 0
]]
-- ---------------------------------------------------------------------------
-- 22_tz  W.zone_*: time zones (port of src/engine/tz.rs)
--
-- A zone is nil for UTC, or a table {name = "+05:30", fixed = 19800000} /
-- {name = "America/New_York", data = <index>}: one table per zone, made on
-- first use and kept in W.TZ.zones, so two parses of the same zone give the
-- same table (== compares zones). Treat it as read-only.
--
-- The rules of a named zone come from W.TZDATA (21_tzdata, generated by
-- tools/tzdata.py; its format is described there): the names are indexed
-- on the first named zone parsed, a zone's data line is parsed on its first
-- use, and both stay in W.TZ for the library's life. Rules apply from
-- 2000-01-01T00:00Z on; earlier instants take the offset of that instant.
--
-- API (times are Unix ms, days are days since 1970-01-01, plain integers
-- below 2^53):
--   W.zone_parse(text) -> zone | nil (UTC)   `TZ zone`: UTC, +HH:MM / -HH:MM
--       (up to 14:00; +00:00 is UTC), an IANA name (any case). Fails with
--       the module's text (Zone::parse).
--   W.zone_name(zone) -> "UTC" | "+05:30" | "America/New_York"
--   W.zone_offset(zone, t) -> ms east of UTC at t
--   W.zone_local_day(zone, t) -> the local date of t
--   W.zone_day_start(zone, day) -> the earliest instant whose local date is
--       day or later (a day that begins in a gap begins when it ends; a
--       skipped day begins when the next one does)
--   W.tzdata_version() -> "2026f"
-- ---------------------------------------------------------------------------

do
    local DAY_MS = W.DAY_MS
    local MINUTE_MS = 60000
    -- 2000-01-01T00:00Z: where the table's rules begin.
    local RULES_FROM_MS = 946684800000
    local FIXED_MAX_MINUTES = 14 * 60

    local function div(a, b)
        return math.floor(a / b)
    end

    local ascii_lower = W.ascii_lower

    -- A base-36 number of the table (Lua 5.1's tonumber(s, 36) takes no sign).
    local function num(s)
        if string.sub(s, 1, 1) == "-" then
            return -tonumber(string.sub(s, 2), 36)
        end
        return tonumber(s, 36)
    end

    -- zones: name -> zone table; lower: lowercase name -> name; line: name ->
    -- data line index (1-based); lines: the data lines' text; data: parsed lines.
    W.TZ = { zones = {} }

    -- The names of the table and its data lines, split once.
    local function index()
        local tz = W.TZ
        if tz.lower then
            return tz
        end
        local lower, line, lines, prev = {}, {}, {}, nil
        local first = true
        for text in string.gmatch(W.TZDATA, "([^\n]*)\n") do
            if first then
                first = false
            elseif string.sub(text, 1, 1) == "=" then
                lines[#lines + 1] = string.sub(text, 2)
            else
                local name, i = string.match(text, "^(%S+) (%w+)$")
                if string.sub(name, 1, 1) == "/" then
                    -- In the folder of the name before.
                    name = string.match(prev, "^(.*)/[^/]*$") .. name
                end
                lower[ascii_lower(name)] = name
                line[name] = num(i) + 1
                prev = name
            end
        end
        tz.lower, tz.line, tz.lines, tz.data = lower, line, lines, {}
        return tz
    end

    -- Rust twin: parse_data (src/engine/tz.rs).
    -- A data line as numbers: initial, std, dst (nil or {offset, start
    -- month, week, weekday, time, end month, week, weekday, time}), and the
    -- transitions' instants `at` and offsets `to` (ms).
    local function parse_data(text)
        local initial, rule, list = string.match(text, "^([^;]*);([^;]*);([^;]*)$")
        local d = { initial = num(initial) * MINUTE_MS, at = {}, to = {} }
        local r = {}
        for x in string.gmatch(rule, "[^,]+") do
            r[#r + 1] = num(x)
        end
        d.std = r[1] * MINUTE_MS
        if #r == 10 then
            d.dst = { r[2] * MINUTE_MS, r[3], r[4], r[5], r[6] * MINUTE_MS, r[7], r[8], r[9], r[10] * MINUTE_MS }
        end
        local t, n, k = RULES_FROM_MS, 0, 0
        for x in string.gmatch(list, "[^,]+") do
            k = k + 1
            if k % 2 == 1 then
                t = t + num(x) * MINUTE_MS
                n = n + 1
                d.at[n] = t
            else
                d.to[n] = num(x) * MINUTE_MS
            end
        end
        d.n = n
        -- Where the rule takes over: the last transition, or 2000.
        d.rule_from = n > 0 and d.at[n] or RULES_FROM_MS
        return d
    end

    local function data_of(zone)
        local tz = W.TZ
        local d = tz.data[zone.data]
        if d == nil then
            d = parse_data(tz.lines[zone.data])
            tz.data[zone.data] = d
        end
        return d
    end

    -- Rust twin: RuleDate::day (src/engine/tz.rs).
    -- The day of the `week`th (5: last) `wday` (0 = Sunday) of month `mon` in y.
    local function rule_day(y, mon, week, wday)
        local first = W.days_from_civil(y, mon, 1)
        -- 1970-01-01 was a Thursday (weekday 4).
        local day = first + (wday - (first + 4) % 7) % 7 + (week - 1) * 7
        local last = first + W.days_in_month(y, mon)
        while day >= last do
            day = day - 7
        end
        return day
    end

    -- The rule's two changes in year y: start instant, end instant.
    local function rule_changes(d, y)
        local s = d.dst
        return rule_day(y, s[2], s[3], s[4]) * DAY_MS + s[5] - d.std,
            rule_day(y, s[6], s[7], s[8]) * DAY_MS + s[9] - s[1]
    end

    -- The year of t in local standard time.
    local function std_year(d, t)
        return (W.civil_from_days(div(t + d.std, DAY_MS)))
    end

    -- Rust twin: ZoneData::rule_offset_ms (src/engine/tz.rs).
    local function rule_offset(d, t)
        if d.dst == nil then
            return d.std
        end
        local y = std_year(d, t)
        local best, offset = nil, d.std
        for year = y - 1, y + 1 do
            local s, e = rule_changes(d, year)
            if s <= t and (best == nil or s > best) then
                best, offset = s, d.dst[1]
            end
            if e <= t and (best == nil or e > best) then
                best, offset = e, d.std
            end
        end
        return offset
    end

    -- The number of transitions at or before t (binary search).
    local function listed_before(d, t)
        local lo, hi = 1, d.n + 1
        while lo < hi do
            local mid = div(lo + hi, 2)
            if d.at[mid] <= t then
                lo = mid + 1
            else
                hi = mid
            end
        end
        return lo - 1
    end

    -- Rust twin: ZoneData::offset_ms (src/engine/tz.rs).
    local function offset(d, t)
        if t >= d.rule_from then
            return rule_offset(d, t)
        end
        local i = listed_before(d, t)
        if i == 0 then
            return d.initial
        end
        return d.to[i]
    end

    -- Rust twin: ZoneData::each_change (src/engine/tz.rs).
    -- f(instant, offset) for each transition in (from, to]: the listed
    -- ones, then the rule's year by year.
    local function each_change(d, from, to, f)
        for i = listed_before(d, from) + 1, d.n do
            if d.at[i] > to then
                break
            end
            f(d.at[i], d.to[i])
        end
        if d.dst == nil then
            return
        end
        if from < d.rule_from then
            from = d.rule_from
        end
        if from >= to then
            return
        end
        for year = std_year(d, from) - 1, std_year(d, to) + 1 do
            local s, e = rule_changes(d, year)
            if from < s and s <= to then
                f(s, d.dst[1])
            end
            if from < e and e <= to then
                f(e, d.std)
            end
        end
    end

    local function unknown(text)
        fail("ERR syntax: unknown time zone '" .. W.clip(text)
            .. "': use an IANA name such as Africa/Lagos or an offset such as +01:00")
    end

    -- Rust twin: Zone::parse (src/engine/tz.rs).
    function W.zone_parse(text)
        local lower = ascii_lower(text)
        if lower == "utc" then
            return nil
        end
        local zones = W.TZ.zones
        local c = string.sub(text, 1, 1)
        if c == "+" or c == "-" then
            local hh, mm = string.match(text, "^[+-](%d%d):(%d%d)$")
            if hh == nil then
                unknown(text)
            end
            hh, mm = tonumber(hh), tonumber(mm)
            local total = hh * 60 + mm
            if mm > 59 or total > FIXED_MAX_MINUTES then
                unknown(text)
            end
            if total == 0 then
                return nil
            end
            local name = string.format("%s%02d:%02d", c, hh, mm)
            local zone = zones[name]
            if zone == nil then
                zone = { name = name, fixed = (c == "-" and -total or total) * MINUTE_MS }
                zones[name] = zone
            end
            return zone
        end
        local tz = index()
        local name = tz.lower[lower]
        if name == nil then
            unknown(text)
        end
        local zone = zones[name]
        if zone == nil then
            zone = { name = name, data = tz.line[name] }
            zones[name] = zone
        end
        return zone
    end

    -- Rust twin: Zone::name (src/engine/tz.rs).
    function W.zone_name(zone)
        if not zone then
            return "UTC"
        end
        return zone.name
    end

    -- Rust twin: Zone::offset_ms (src/engine/tz.rs).
    function W.zone_offset(zone, t)
        if not zone then
            return 0
        elseif zone.fixed then
            return zone.fixed
        end
        return offset(data_of(zone), t)
    end

    -- Rust twin: Zone::local_day (src/engine/tz.rs).
    function W.zone_local_day(zone, t)
        return div(t + W.zone_offset(zone, t), DAY_MS)
    end

    -- Rust twin: Zone::day_start_ms (src/engine/tz.rs).
    -- The least candidate c with c + offset(c) >= L (local midnight as if
    -- UTC) among L - o for each offset o in effect in [L - 2 days, L + 2
    -- days] and each transition in that span.
    function W.zone_day_start(zone, day)
        local l = day * DAY_MS
        if not zone or zone.fixed then
            return l - W.zone_offset(zone, l)
        end
        local d = data_of(zone)
        local from, to = l - 2 * DAY_MS, l + 2 * DAY_MS
        local best = nil
        local function consider(c)
            if c + offset(d, c) >= l and (best == nil or c < best) then
                best = c
            end
        end
        consider(l - offset(d, from))
        each_change(d, from, to, function(at, o)
            consider(at)
            consider(l - o)
        end)
        return best or l - offset(d, l)
    end

    -- Rust twin: tzdata_version (src/engine/tz.rs).
    function W.tzdata_version()
        return W.TZDATA_VERSION
    end
end

-- ---------------------------------------------------------------------------
-- 30_pricing  P: the price book (port of src/engine/pricing.rs and
-- src/module/commands/price.rs)
--
-- A function that ports a Rust function names it on the line above
-- ("Rust twin: ..."); long ones are split where their twins are. The JSON
-- reader and writer port serde_json, which has no twin of ours.
--
-- The book is server-wide: a hash (its key is passed in, "quota:prices"),
-- field "service/model" -> the entry's canonical JSON (Price::to_json, the
-- text QUOTA.PRICE GET prints). Entries are validated exactly as the module
-- does (serde_json with arbitrary_precision, so JSON numbers keep their
-- literal text; a small JSON reader of our own below, with serde_json's
-- grammar, error texts and positions; Redis's cjson would turn numbers into
-- doubles). Parsed entries are cached by their JSON text (bounded).
--
-- API:
--   P.parse_key(text) -> service, model        fails "ERR syntax: invalid price key ..."
--   P.cmd_price(book_key, args) -> reply       QUOTA.PRICE SET|GET|DEL|LIST (args after
--                                              the function name, UTF-8 already checked)
--   P.cmd_estimate(book_key, args) -> reply    QUOTA.ESTIMATE service/model name value ...
--   P.usage(book_key, key, pairs) -> charges, metric
--       prices a USAGE item: pairs = { {name, value}, ... } (strings as given);
--       charges = { {metric, cost}, {usage name, quantity}, ... } (D values, the
--       module's order: Estimate::charges); metric = the entry's metric
--   P.estimate(book_key, key, pairs) -> e      the whole Estimate: e.key, e.metric,
--       e.lines = { {name=, quantity=, rate=, subtotal=} }, e.subtotal, e.minimum
--       (nil unless applied), e.factors = { {attribute=, value=, factor=} }, e.cost
--   P.from_json(text) -> price, P.to_json(price) -> text   (Price::from_json / to_json)
--   P.json_string(text) -> JSON string literal as serde_json writes it
--   P.bytes_less(a, b)                          byte order (BTreeMap order; Lua's
--                                              own < follows the server's locale)
-- Replies are built as the other sections do (40_names' to_resp renders them):
-- an ordered map is { k1, v1, k2, v2, ..., _m = true }, OK is { _ok = "OK" },
-- nil is false.
--
-- PRICE SET/DEL do not refuse writes themselves (the module's refuse_write):
-- quota_price is registered without no-writes, so Redis refuses it on a
-- read-only replica (READONLY) and, with maxmemory reached, when it is
-- called (OOM), before the function runs.
-- ---------------------------------------------------------------------------

local P = {}

do
    local sbyte, ssub, sfind, smatch, sformat, supper, sgsub, schar = string.byte, string.sub, string.find,
        string.match, string.format, string.upper, string.gsub, string.char
    local tconcat, tsort = table.concat, table.sort
    local clip = D.clip

    local MAX_PRICES = 10000
    local MAX_RATES = 64
    local MAX_ATTRIBUTES = 16
    local MAX_VALUES = 64
    local MAX_JSON_LEN = 64 * 1024
    local MAX_NAME_LEN = 128

    local function set_of(list)
        local s = {}
        for i = 1, #list do
            s[list[i]] = true
        end
        return s
    end

    local KEYWORDS = set_of({ "path", "also", "id", "ttl", "service", "model", "all", "upto", "dryrun", "brief",
        "cost", "usage", "item", "check", "metric", "limit", "window", "anchor", "mode", "warn", "rollover", "depth",
        "format", "count", "since", "strict", "block", "open", "none", "rolling", "meta", "tz" })
    -- Keywords a release before took as names: stored prices keep them.
    -- Rust twin: names::NEWER_KEYWORDS (src/engine/names.rs)
    local NEWER_KEYWORDS = set_of({ "meta", "tz" })
    local LIST_ENDS = set_of({ "PATH", "ALSO", "ID", "TTL", "SERVICE", "MODEL", "ALL", "UPTO", "DRYRUN", "BRIEF",
        "COST", "USAGE", "CHECK", "ITEM", "META" })

    local function bytes_less(a, b)
        if a == b then
            return false
        end
        local n = #a
        if #b < n then
            n = #b
        end
        for i = 1, n do
            local x, y = sbyte(a, i), sbyte(b, i)
            if x ~= y then
                return x < y
            end
        end
        return #a < #b
    end
    P.bytes_less = bytes_less

    -- Rust twin: names::parse_metric (src/engine/names.rs), without failing: nil, or the message;
    -- trusted (a price read back from the book): names::parse_stored_metric
    local function metric_error(text, trusted)
        local n = #text
        if n == 0 or n > 32 or not sfind(text, "^[a-z][a-z0-9_]*$") then
            return "'" .. clip(text) .. "' (metric names are [a-z][a-z0-9_]{0,31})"
        end
        if KEYWORDS[text] and not (trusted and NEWER_KEYWORDS[text]) then
            return "'" .. text .. "' is a keyword, not a metric name"
        end
        return nil
    end

    -- Rust twin: names::parse_name (src/engine/names.rs), without failing: nil, or the message
    local function name_error(text, what)
        local n = #text
        if n == 0 or n > MAX_NAME_LEN or sfind(text, "[^\33-\126]") then
            return "invalid " .. what .. " '" .. clip(text) .. "': use 1-" .. MAX_NAME_LEN ..
                " printable characters without spaces"
        end
        return nil
    end

    -- Rust twin: parse_key (src/engine/pricing.rs)
    function P.parse_key(text)
        local slash = sfind(text, "/", 1, true)
        if slash then
            local service, model = ssub(text, 1, slash - 1), ssub(text, slash + 1)
            if #service >= 1 and #service <= 64 and #model >= 1 and #model <= 64
                and not sfind(service, "[^A-Za-z0-9_%-%.:@]") and not sfind(model, "[^A-Za-z0-9_%-%.:@]") then
                return service, model
            end
        end
        fail("ERR syntax: invalid price key '" .. clip(text) ..
            "': use service/model, each 1-64 characters of A-Z a-z 0-9 _ - . : @")
    end

    -- ----- JSON reader (serde_json::from_str into a Value) -----------------
    -- Values: a string is a Lua string; a number is {num = text} (the text
    -- serde_json keeps: exponents written e+N/e-N); an object is
    -- {obj = true, keys = {...} (first-seen order), map = {key -> value}} (a
    -- repeated key keeps its last value); an array is {kind = "array",
    -- items = {...}} (plans read their "warn"); true, false and null are
    -- the markers below.
    local TRUE, FALSE, NULL = { kind = "true" }, { kind = "false" }, { kind = "null" }
    local NUMBER_TOKEN = "$serde_json::private::Number"

    local JS, JN, JI, DEPTH = "", 0, 0, 128 -- text, length, bytes consumed, depth left
    local WHAT = "price" -- what is read: "price is not valid JSON" (or "plan", P.json_parse)
    local INNER = nil -- inside Number::from_str: its error message goes here

    local function position(i) -- line and column of byte offset i (serde_json)
        local line, sol, p = 1, 0, 1
        while true do
            local f = sfind(JS, "\n", p, true)
            if not f or f > i then
                break
            end
            line = line + 1
            sol = f
            p = f + 1
        end
        return line, i - sol
    end

    local function jerr(code, i)
        local line, col = position(i)
        local text = code .. " at line " .. line .. " column " .. col
        if INNER then
            INNER.msg = text
            error("json", 0)
        end
        fail("ERR syntax: " .. WHAT .. " is not valid JSON: " .. text)
    end

    local function err_here(code) -- serde's error(): at the bytes consumed
        jerr(code, JI)
    end

    local function err_peek(code) -- serde's peek_error(): one byte further
        local i = JI + 1
        if i > JN then
            i = JN
        end
        jerr(code, i)
    end

    local function ws()
        local p = sfind(JS, "[^ \n\t\r]", JI + 1)
        if not p then
            JI = JN
            return nil
        end
        JI = p - 1
        return sbyte(JS, p)
    end

    local function utf8_char(n)
        if n < 0x80 then
            return schar(n)
        elseif n < 0x800 then
            return schar(0xC0 + math.floor(n / 64), 0x80 + n % 64)
        elseif n < 0x10000 then
            return schar(0xE0 + math.floor(n / 4096), 0x80 + math.floor(n / 64) % 64, 0x80 + n % 64)
        end
        return schar(0xF0 + math.floor(n / 262144), 0x80 + math.floor(n / 4096) % 64, 0x80 + math.floor(n / 64) % 64,
            0x80 + n % 64)
    end

    local function hex4()
        if JN - JI < 4 then
            JI = JN
            err_here("EOF while parsing a string")
        end
        local h = ssub(JS, JI + 1, JI + 4)
        JI = JI + 4
        if not sfind(h, "^[0-9a-fA-F][0-9a-fA-F][0-9a-fA-F][0-9a-fA-F]$") then
            err_here("invalid escape")
        end
        return tonumber(h, 16)
    end

    local ESCAPES = { [34] = '"', [92] = "\\", [47] = "/", [98] = "\b", [102] = "\f", [110] = "\n", [114] = "\r",
        [116] = "\t" }

    local function parse_unicode_escape()
        local n = hex4()
        if n >= 0xDC00 and n <= 0xDFFF then
            err_here("lone leading surrogate in hex escape")
        end
        if n < 0xD800 or n > 0xDBFF then
            return utf8_char(n)
        end
        for _, want in ipairs({ 92, 117 }) do -- "\" then "u"
            local b = sbyte(JS, JI + 1)
            if not b then
                err_here("EOF while parsing a string")
            end
            JI = JI + 1
            if b ~= want then
                err_here("unexpected end of hex escape")
            end
        end
        local n2 = hex4()
        if n2 < 0xDC00 or n2 > 0xDFFF then
            err_here("lone leading surrogate in hex escape")
        end
        return utf8_char((n - 0xD800) * 1024 + (n2 - 0xDC00) + 0x10000)
    end

    local function parse_string() -- the opening quote is consumed
        local parts = nil
        local start = JI + 1
        while true do
            local p = sfind(JS, '["\\%z\1-\31]', JI + 1)
            if not p then
                JI = JN
                err_here("EOF while parsing a string")
            end
            local b = sbyte(JS, p)
            if b == 34 then
                JI = p
                local piece = ssub(JS, start, p - 1)
                if parts then
                    parts[#parts + 1] = piece
                    return tconcat(parts)
                end
                return piece
            elseif b == 92 then
                parts = parts or {}
                parts[#parts + 1] = ssub(JS, start, p - 1)
                JI = p
                local c = sbyte(JS, JI + 1)
                if not c then
                    err_here("EOF while parsing a string")
                end
                JI = JI + 1
                local e = ESCAPES[c]
                if e then
                    parts[#parts + 1] = e
                elseif c == 117 then
                    parts[#parts + 1] = parse_unicode_escape()
                else
                    err_here("invalid escape")
                end
                start = JI + 1
            else
                JI = p
                err_here("control character (\\u0000-\\u001F) found while parsing a string")
            end
        end
    end

    -- After an optional "-" (consumed): the number's text as serde_json
    -- keeps it (arbitrary_precision).
    local function parse_number(negative)
        local buf = negative and "-" or ""
        local c = sbyte(JS, JI + 1)
        if not c then
            err_here("EOF while parsing a value")
        end
        JI = JI + 1
        if c == 48 then
            local p = sbyte(JS, JI + 1)
            if p and p >= 48 and p <= 57 then
                err_peek("invalid number")
            end
            buf = buf .. "0"
        elseif c >= 49 and c <= 57 then
            local _, e = sfind(JS, "^[0-9]*", JI + 1)
            buf = buf .. ssub(JS, JI, e)
            JI = e
        else
            err_here("invalid number")
        end
        local p = sbyte(JS, JI + 1)
        if p == 46 then -- "."
            JI = JI + 1
            local s, e = sfind(JS, "^[0-9]+", JI + 1)
            if not s then
                if JI < JN then
                    err_peek("invalid number")
                end
                err_peek("EOF while parsing a value")
            end
            buf = buf .. "." .. ssub(JS, s, e)
            JI = e
            p = sbyte(JS, JI + 1)
        end
        if p == 101 or p == 69 then -- "e" or "E"
            JI = JI + 1
            local sign = "+"
            local q = sbyte(JS, JI + 1)
            if q == 43 or q == 45 then
                JI = JI + 1
                sign = schar(q)
            end
            local d = sbyte(JS, JI + 1)
            if not d then
                err_here("EOF while parsing a value")
            end
            JI = JI + 1
            if d < 48 or d > 57 then
                err_here("invalid number")
            end
            local _, e = sfind(JS, "^[0-9]*", JI + 1)
            buf = buf .. "e" .. sign .. ssub(JS, JI, e)
            JI = e
        end
        return buf
    end

    local function parse_ident(rest)
        for k = 1, #rest do
            local c = sbyte(JS, JI + 1)
            if not c then
                err_here("EOF while parsing a value")
            end
            JI = JI + 1
            if c ~= sbyte(rest, k) then
                err_here("expected ident")
            end
        end
    end

    -- Number::from_str(s): the number's text, or nil and serde_json's message.
    local function number_from_string(s)
        local saved_s, saved_n, saved_i = JS, JN, JI
        local inner = {}
        INNER = inner
        JS, JN, JI = s, #s, 0
        local ok, text = pcall(function()
            local b = sbyte(JS, 1)
            local value
            if not b then
                err_peek("EOF while parsing a value")
            elseif b == 45 then
                JI = 1
                value = parse_number(true)
            elseif b >= 48 and b <= 57 then
                value = parse_number(false)
            else
                err_peek("invalid number")
            end
            if JI < JN then
                err_peek("invalid number")
            end
            return value
        end)
        INNER = nil
        JS, JN, JI = saved_s, saved_n, saved_i
        if ok then
            return text
        end
        if not inner.msg then
            error(text, 0)
        end
        return nil, inner.msg
    end

    local parse_value

    local function invalid_type_for_number()
        -- deserialize_str on something that is not a string (peek_invalid_type)
        local b = sbyte(JS, JI + 1)
        local what
        if b == 110 then
            JI = JI + 1
            parse_ident("ull")
            what = "null"
        elseif b == 116 then
            JI = JI + 1
            parse_ident("rue")
            what = "boolean `true`"
        elseif b == 102 then
            JI = JI + 1
            parse_ident("alse")
            what = "boolean `false`"
        elseif b == 45 or (b and b >= 48 and b <= 57) then
            if b == 45 then
                JI = JI + 1
            end
            local t = parse_number(b == 45)
            local digits = smatch(t, "^%-?([0-9]+)$")
            local max = b == 45 and "9223372036854775808" or "18446744073709551615"
            if digits and t ~= "-0" and (#digits < #max or (#digits == #max and not bytes_less(max, digits))) then
                what = "integer `" .. t .. "`"
            else
                what = "number"
            end
        elseif b == 91 then
            what = "sequence"
        elseif b == 123 then
            what = "map"
        else
            err_peek("expected value")
        end
        err_here("invalid type: " .. what .. ", expected string containing a number")
    end

    -- One key of an object and its ":" (serde_json's MapAccess::next_key
    -- and the colon before next_value): the key, or nil at the closing "}".
    -- first: no key has been read yet, so no "," comes before this one.
    local function next_object_key(first)
        local b = ws()
        if not b then
            err_peek("EOF while parsing an object")
        end
        if b == 125 then
            return nil
        end
        if first then
            if b ~= 34 then
                err_peek("key must be a string")
            end
        elseif b == 44 then
            JI = JI + 1
            b = ws()
            if b == 125 then
                err_peek("trailing comma")
            elseif b == nil then
                err_peek("EOF while parsing a value")
            elseif b ~= 34 then
                err_peek("key must be a string")
            end
        else
            err_peek("expected `,` or `}`")
        end
        JI = JI + 1
        local key = parse_string()
        b = ws()
        if b == 58 then
            JI = JI + 1
        elseif b then
            err_peek("expected `:`")
        else
            err_peek("EOF while parsing an object")
        end
        return key
    end

    -- serde_json's private number form, {"$serde_json::private::Number": "1.5"},
    -- after its key and colon: the number, and the object's closing "}".
    local function parse_private_number()
        local b = ws()
        if not b then
            err_peek("EOF while parsing a value")
        end
        if b ~= 34 then
            invalid_type_for_number()
        end
        JI = JI + 1
        local s = parse_string()
        local text, why = number_from_string(s)
        if not text then
            -- a custom error: serde_json takes the position from the
            -- message, i.e. the one inside the number's own text
            fail("ERR syntax: " .. WHAT .. " is not valid JSON: " .. why)
        end
        b = ws()
        if b == 125 then
            JI = JI + 1
            return { num = text }
        elseif b == 44 then
            err_peek("trailing comma")
        elseif b then
            err_peek("trailing characters")
        end
        err_peek("EOF while parsing an object")
    end

    local function parse_object()
        DEPTH = DEPTH - 1
        if DEPTH == 0 then
            err_peek("recursion limit exceeded")
        end
        JI = JI + 1
        local keys, map = {}, {}
        local first = true
        while true do
            local key = next_object_key(first)
            if key == nil then
                break
            end
            if first and key == NUMBER_TOKEN then
                local number = parse_private_number()
                DEPTH = DEPTH + 1
                return number
            end
            first = false
            local v = parse_value()
            if map[key] == nil then
                keys[#keys + 1] = key
            end
            map[key] = v
        end
        JI = JI + 1
        DEPTH = DEPTH + 1
        return { obj = true, keys = keys, map = map }
    end

    local function parse_array()
        DEPTH = DEPTH - 1
        if DEPTH == 0 then
            err_peek("recursion limit exceeded")
        end
        JI = JI + 1
        local first, items = true, {}
        while true do
            local b = ws()
            if not b then
                err_peek("EOF while parsing a list")
            end
            if b == 93 then
                break
            end
            if first then
                first = false
            elseif b == 44 then
                JI = JI + 1
                b = ws()
                if b == 93 then
                    err_peek("trailing comma")
                elseif b == nil then
                    err_peek("EOF while parsing a value")
                end
            else
                err_peek("expected `,` or `]`")
            end
            items[#items + 1] = parse_value()
        end
        JI = JI + 1
        DEPTH = DEPTH + 1
        return { kind = "array", items = items }
    end

    parse_value = function()
        local b = ws()
        if not b then
            err_peek("EOF while parsing a value")
        end
        if b == 34 then
            JI = JI + 1
            return parse_string()
        elseif b == 123 then
            return parse_object()
        elseif b == 91 then
            return parse_array()
        elseif b == 45 then
            JI = JI + 1
            return { num = parse_number(true) }
        elseif b >= 48 and b <= 57 then
            return { num = parse_number(false) }
        elseif b == 110 then
            JI = JI + 1
            parse_ident("ull")
            return NULL
        elseif b == 116 then
            JI = JI + 1
            parse_ident("rue")
            return TRUE
        elseif b == 102 then
            JI = JI + 1
            parse_ident("alse")
            return FALSE
        end
        err_peek("expected value")
    end

    local function json_parse(text, what)
        JS, JN, JI, DEPTH, INNER, WHAT = text, #text, 0, 128, nil, what or "price"
        local v = parse_value()
        if ws() then
            err_peek("trailing characters")
        end
        JS = "" -- do not keep the text alive
        return v
    end
    -- For the plan book (35_plan): a value as above; errors say "<what> is
    -- not valid JSON".
    P.json_parse = json_parse

    -- ----- JSON writer (serde_json's string escaping) ------------------------
    local function escape_char(c)
        local b = sbyte(c)
        if b == 34 then
            return '\\"'
        elseif b == 92 then
            return "\\\\"
        elseif b == 8 then
            return "\\b"
        elseif b == 9 then
            return "\\t"
        elseif b == 10 then
            return "\\n"
        elseif b == 12 then
            return "\\f"
        elseif b == 13 then
            return "\\r"
        end
        return sformat("\\u%04x", b)
    end

    local function json_string(s)
        if sfind(s, '[%z\1-\31"\\]') then
            s = sgsub(s, '[%z\1-\31"\\]', escape_char)
        end
        return '"' .. s .. '"'
    end
    P.json_string = json_string

    -- ----- Price::from_json ------------------------------------------------------
    -- A NUL would cut a Lua error reply short; like any character outside
    -- printable ASCII it is shown as "?", as the module does.
    local function no_nul(text)
        if sfind(text, "%z") then
            return (sgsub(text, "%z", "?"))
        end
        return text
    end

    -- Rust twin: field_error (src/engine/pricing.rs)
    local function field_error(field, why)
        fail("ERR syntax: price field '" .. no_nul(field) .. "': " .. why)
    end

    local function sorted_keys(obj)
        local keys = {}
        for i = 1, #obj.keys do
            keys[i] = obj.keys[i]
        end
        tsort(keys, bytes_less)
        return keys
    end
    P.sorted_keys = sorted_keys
    P.no_nul = no_nul

    -- The text of a JSON string or number (numbers keep their literal text).
    local function number_text(value)
        if type(value) == "string" then
            return value
        elseif type(value) == "table" and value.num then
            return value.num
        end
        return nil
    end

    -- Rust twin: decimal_of (src/engine/pricing.rs)
    local function decimal_of(value, field)
        local text = number_text(value) or field_error(field, "must be a decimal string or number")
        local d, why = D.check(text, true)
        if not d then
            field_error(field, why)
        end
        return d
    end

    -- Rust twin: parse_rate (src/engine/pricing.rs)
    local function parse_rate(value, field)
        local text = number_text(value)
            or field_error(field, "must be a decimal, or a decimal per 1K or 1M units such as \"2.50/1M\"")
        local number, places = text, 0
        local slash = sfind(text, "/", 1, true)
        if slash then
            local unit = ssub(text, slash + 1)
            number = ssub(text, 1, slash - 1)
            if unit == "1K" or unit == "1k" then
                places = 3
            elseif unit == "1M" or unit == "1m" then
                places = 6
            else
                field_error(field, "'" .. clip(text) .. "': the unit may only be /1K or /1M")
            end
        end
        local d, why = D.check(number, true)
        if not d then
            field_error(field, why)
        end
        return { text = text, per = D.div_pow10(d, places) }
    end

    -- Rust twin: parse_rates (src/engine/pricing.rs)
    -- The "rates" field: usage name -> rate, none named as the price's own
    -- metric. Returns the rates and their names in byte order.
    local function parse_rates(rate_map, metric, trusted)
        if type(rate_map) ~= "table" or not rate_map.obj then
            field_error("rates", "is required: an object from usage name to rate")
        end
        local rate_names = sorted_keys(rate_map)
        if #rate_names == 0 then
            field_error("rates", "must name at least one usage")
        end
        if #rate_names > MAX_RATES then
            fail("ERR limit: at most " .. MAX_RATES .. " rates per price")
        end
        local rates = {}
        for i = 1, #rate_names do
            local name = rate_names[i]
            local field = "rates." .. name
            local why = metric_error(name, trusted)
            if why then
                field_error(field, why)
            end
            if name == metric then
                field_error(field, "a usage name cannot be the price's own metric")
            end
            rates[name] = parse_rate(rate_map.map[name], field)
        end
        return rates, rate_names
    end

    -- Rust twin: parse_factors (src/engine/pricing.rs)
    -- One attribute's values: value -> factor, 1 to MAX_VALUES of them.
    -- Returns the factors and the values in byte order.
    local function parse_factors(values, field)
        if type(values) ~= "table" or not values.obj then
            field_error(field, "must be an object from value to factor")
        end
        local names = sorted_keys(values)
        if #names == 0 or #names > MAX_VALUES then
            field_error(field, "must list 1 to " .. MAX_VALUES .. " values")
        end
        local factors = {}
        for j = 1, #names do
            local label = names[j]
            local f2 = field .. "." .. label
            local why = name_error(label, "attribute value")
            if why then
                field_error(f2, why)
            end
            factors[label] = decimal_of(values.map[label], f2)
        end
        return factors, names
    end

    -- Rust twin: parse_multipliers (src/engine/pricing.rs)
    -- The optional "multipliers" field: attribute -> value -> factor, no
    -- attribute also a usage name of rates. Returns mult (attribute ->
    -- value -> factor), the attributes in byte order and labels (attribute
    -- -> its values in byte order).
    local function parse_multipliers(attributes, rates, trusted)
        local mult, attr_names, labels = {}, {}, {}
        if attributes == nil then
            return mult, attr_names, labels
        end
        if type(attributes) ~= "table" or not attributes.obj then
            field_error("multipliers", "must be an object from attribute to {value: factor}")
        end
        attr_names = sorted_keys(attributes)
        if #attr_names > MAX_ATTRIBUTES then
            fail("ERR limit: at most " .. MAX_ATTRIBUTES .. " multiplier attributes per price")
        end
        for i = 1, #attr_names do
            local attr = attr_names[i]
            local field = "multipliers." .. attr
            local why = metric_error(attr, trusted)
            if why then
                field_error(field, why)
            end
            if rates[attr] then
                field_error(field, "an attribute cannot also be a usage name")
            end
            mult[attr], labels[attr] = parse_factors(attributes.map[attr], field)
        end
        return mult, attr_names, labels
    end

    -- Rust twin: Price::from_json (src/engine/pricing.rs)
    -- trusted: the text is our own canonical JSON read back from the book
    -- (it may be a little longer than the JSON it was made from).
    local function from_json(text, trusted)
        if not trusted and #text > MAX_JSON_LEN then
            fail("ERR limit: a price is at most " .. MAX_JSON_LEN .. " bytes of JSON")
        end
        local object = json_parse(text)
        if type(object) ~= "table" or not object.obj then
            fail("ERR syntax: a price must be a JSON object")
        end
        local fields = sorted_keys(object)
        for i = 1, #fields do
            local k = fields[i]
            if k ~= "metric" and k ~= "rates" and k ~= "multipliers" and k ~= "minimum" then
                field_error(k, "unknown field (use metric, rates, multipliers, minimum)")
            end
        end
        local map = object.map
        local metric = map.metric
        if metric == nil then
            field_error("metric", "is required")
        elseif type(metric) ~= "string" then
            field_error("metric", "must be a metric name")
        end
        local why = metric_error(metric, trusted)
        if why then
            field_error("metric", why)
        end
        local rates, rate_names = parse_rates(map.rates, metric, trusted)
        local mult, attr_names, labels = parse_multipliers(map.multipliers, rates, trusted)
        local minimum = nil
        if map.minimum ~= nil then
            minimum = decimal_of(map.minimum, "minimum")
        end
        return {
            metric = metric,
            rates = rates,
            rate_names = rate_names,
            mult = mult,
            attr_names = attr_names,
            labels = labels,
            minimum = minimum,
        }
    end

    -- Rust twin: Price::from_json (src/engine/pricing.rs), for the other sections
    function P.from_json(text)
        return from_json(text, false)
    end

    -- Rust twin: Price::to_json (src/engine/pricing.rs)
    -- Fields in a fixed order, rates as written, decimals as
    -- canonical strings, maps in byte order.
    local function to_json(price)
        local rates = {}
        for i, name in ipairs(price.rate_names) do
            rates[i] = json_string(name) .. ":" .. json_string(price.rates[name].text)
        end
        local out = '{"metric":' .. json_string(price.metric) .. ',"rates":{' .. tconcat(rates, ",") .. "}"
        if #price.attr_names > 0 then
            local attrs = {}
            for i, attr in ipairs(price.attr_names) do
                local values = {}
                for j, label in ipairs(price.labels[attr]) do
                    values[j] = json_string(label) .. ":" .. json_string(D.fmt(price.mult[attr][label]))
                end
                attrs[i] = json_string(attr) .. ":{" .. tconcat(values, ",") .. "}"
            end
            out = out .. ',"multipliers":{' .. tconcat(attrs, ",") .. "}"
        end
        if price.minimum then
            out = out .. ',"minimum":' .. json_string(D.fmt(price.minimum))
        end
        return out .. "}"
    end
    P.to_json = to_json

    -- Parsed entries by their JSON text: a batch prices one entry many times.
    local cache, cache_n = {}, 0

    -- Keeps price under its text: at most 256 entries, all dropped when full.
    local function remember(text, price)
        if cache_n >= 256 then
            cache, cache_n = {}, 0
        end
        cache[text] = price
        cache_n = cache_n + 1
    end

    local function cached(text)
        local price = cache[text]
        if not price then
            price = from_json(text, true)
            remember(text, price)
        end
        return price
    end

    -- ----- Price::estimate ---------------------------------------------------------
    -- Rust twin: Price::known_names (src/engine/pricing.rs)
    local function known_names(price)
        local rates = "rates " .. tconcat(price.rate_names, ", ")
        if #price.attr_names == 0 then
            return rates
        end
        return rates .. " and attributes " .. tconcat(price.attr_names, ", ")
    end

    -- Rust twin: Price::read_usage (src/engine/pricing.rs)
    -- The priced line of each rate name in pairs_ and the factor of each
    -- attribute, each name at most once and every name known; seen holds
    -- the names read.
    local function read_usage(price, key, pairs_)
        local lines, factors, seen = {}, {}, {}
        for i = 1, #pairs_ do
            local name, value = pairs_[i][1], pairs_[i][2]
            if seen[name] then
                fail("ERR syntax: usage '" .. no_nul(name) .. "' appears twice for " .. key)
            end
            local rate = price.rates[name]
            local values = price.mult[name]
            if rate then
                local quantity = D.parse_non_negative(value)
                -- rust_decimal's checked_mul: exact, then what fits 96 bits
                local subtotal = D.fit96(D.mul(rate.per, quantity))
                if not subtotal then
                    fail("ERR invalid amount: " .. D.fmt(quantity) .. " " .. name .. " costs more than can be counted")
                end
                lines[#lines + 1] = { name = name, quantity = quantity, rate = rate.per, subtotal = subtotal }
            elseif values then
                local factor = values[value]
                if not factor then
                    fail("ERR syntax: unknown value '" .. clip(value) .. "' of " .. name .. " for " .. key ..
                        ": use " .. tconcat(price.labels[name], ", "))
                end
                factors[#factors + 1] = { attribute = name, value = value, factor = factor }
            else
                fail("ERR syntax: unknown usage '" .. clip(name) .. "' for " .. key .. ": its price has " ..
                    known_names(price))
            end
            seen[name] = true
        end
        return lines, factors, seen
    end

    -- Rust twin: Price::estimate (src/engine/pricing.rs)
    local function estimate(price, key, pairs_)
        local lines, factors, seen = read_usage(price, key, pairs_)
        if #lines == 0 then
            fail("ERR syntax: USAGE for " .. key .. " needs at least one of " .. known_names(price))
        end
        for _, attr in ipairs(price.attr_names) do
            if not seen[attr] then
                fail("ERR syntax: USAGE for " .. key .. " needs " .. attr .. " (one of " ..
                    tconcat(price.labels[attr], ", ") .. ")")
            end
        end
        local too_large = "ERR invalid amount: the cost for " .. key .. " is larger than 10^15"
        local subtotal = D.ZERO
        for i = 1, #lines do
            subtotal = D.fit96(D.plus(subtotal, lines[i].subtotal))
            if not subtotal then
                fail(too_large)
            end
        end
        local minimum = price.minimum
        if minimum and D.cmp(minimum, subtotal) <= 0 then
            minimum = nil
        end
        local cost = minimum or subtotal
        for i = 1, #factors do
            cost = D.fit96(D.mul(cost, factors[i].factor))
            if not cost then
                fail(too_large)
            end
        end
        if D.scale(cost) > 10 then
            cost = D.round_dp(cost, 10)
        end
        if D.gt_max_input(cost) then
            fail(too_large)
        end
        return {
            key = key,
            metric = price.metric,
            lines = lines,
            subtotal = subtotal,
            minimum = minimum,
            factors = factors,
            cost = cost,
        }
    end

    -- Rust twin: PriceBook::estimate (src/engine/pricing.rs)
    -- The key, the entry, the estimate.
    function P.estimate(book_key, key, pairs_)
        P.parse_key(key)
        local text = redis.call("HGET", book_key, key)
        if not text then
            fail("NOTFOUND no such price '" .. clip(key) .. "'")
        end
        return estimate(cached(text), key, pairs_)
    end

    -- Rust twin: Estimate::charges (src/engine/pricing.rs)
    local function charges(e)
        local c = { { e.metric, e.cost } }
        for i = 1, #e.lines do
            c[i + 1] = { e.lines[i].name, e.lines[i].quantity }
        end
        return c
    end

    -- Rust twin: prices::estimate (src/module/prices.rs), then Estimate::charges
    function P.usage(book_key, key, pairs_)
        local e = P.estimate(book_key, key, pairs_)
        return charges(e), e.metric
    end

    -- ----- commands ------------------------------------------------------------------
    -- Rust twin: Args::next_str's error (src/module/commands/args.rs)
    -- A command's missing argument and its first extra one, as the
    -- module's Args says them (also the plan book's, 35_plan).
    local function arity(command, what)
        fail("ERR wrong number of arguments for '" .. command .. "' command: missing " .. what)
    end
    P.arity = arity

    -- QUOTA.PRICE HELP, as the module gives it.
    P.PRICE_HELP = {
        "QUOTA.PRICE <subcommand> [<arg> ...]. Subcommands are:",
        "SET <service/model> <json>",
        "    Sets the price of service/model.",
        "GET <service/model>",
        "    The price of service/model, as JSON.",
        "DEL <service/model>",
        "    Removes the price of service/model: 1 if there was one, else 0.",
        "LIST",
        "    Every priced service/model.",
        "HELP",
        "    This text.",
    }

    -- Rust twin: Args::finish (src/module/commands/args.rs)
    local function finish(args, i, command)
        if args[i] ~= nil then
            fail("ERR syntax: unexpected argument '" .. clip(args[i]) .. "' in " .. command)
        end
    end
    P.finish = finish

    -- Rust twin: set (src/module/commands/price.rs), with PriceBook::set
    local function price_set(book_key, args)
        local key = args[2]
        if key == nil then
            arity("quota.price", "service/model")
        end
        P.parse_key(key)
        local json = args[3]
        if json == nil then
            arity("quota.price", "the price as JSON")
        end
        finish(args, 4, "QUOTA.PRICE")
        local price = from_json(json, false)
        if redis.call("HEXISTS", book_key, key) == 0
            and redis.call("HLEN", book_key) >= MAX_PRICES then
            fail("ERR limit: the price book already has " .. MAX_PRICES .. " entries")
        end
        local canonical = to_json(price)
        if #canonical > MAX_JSON_LEN then
            fail("ERR limit: a price is at most " .. MAX_JSON_LEN
                .. " bytes of JSON, written out as QUOTA.PRICE GET shows it (this one is " .. #canonical .. ")")
        end
        redis.call("HSET", book_key, key, canonical)
        if not cache[canonical] then
            remember(canonical, price)
        end
        return { _ok = "OK" }
    end

    -- Rust twin: get (src/module/commands/price.rs), with PriceBook::get
    local function price_get(book_key, args)
        local key = args[2]
        if key == nil then
            arity("quota.price", "service/model")
        end
        finish(args, 3, "QUOTA.PRICE")
        P.parse_key(key)
        local text = redis.call("HGET", book_key, key)
        if not text then
            fail("NOTFOUND no such price '" .. clip(key) .. "'")
        end
        return text
    end

    -- Rust twin: del (src/module/commands/price.rs), with PriceBook::remove
    local function price_del(book_key, args)
        local key = args[2]
        if key == nil then
            arity("quota.price", "service/model")
        end
        finish(args, 3, "QUOTA.PRICE")
        P.parse_key(key)
        return redis.call("HDEL", book_key, key)
    end

    -- Rust twin: price (src/module/commands/price.rs)
    function P.cmd_price(book_key, args)
        if #args < 1 then
            fail("ERR wrong number of arguments for 'QUOTA.PRICE' command") -- Redis's own text
        end
        local verb = supper(args[1])
        if verb == "SET" then
            return price_set(book_key, args)
        elseif verb == "GET" then
            return price_get(book_key, args)
        elseif verb == "DEL" then
            return price_del(book_key, args)
        elseif verb == "HELP" then
            finish(args, 2, "QUOTA.PRICE")
            return P.PRICE_HELP
        elseif verb == "LIST" then
            finish(args, 2, "QUOTA.PRICE")
            local keys = redis.call("HKEYS", book_key)
            tsort(keys, bytes_less)
            return keys
        end
        -- The module's verbs are subcommands: this is Redis's own text,
        -- which quotes the verb as C does (up to a NUL, at most 128
        -- bytes) with CR and LF as spaces.
        local quoted = sgsub(ssub(smatch(args[1], "^[^%z]*"), 1, 128), "[\r\n]", " ")
        fail_as_redis("ERR unknown subcommand '" .. quoted .. "'. Try QUOTA.PRICE HELP.")
    end

    -- Rust twin: estimate_reply (src/module/commands/price.rs)
    local function estimate_reply(e)
        local lines, factors = {}, {}
        for i, l in ipairs(e.lines) do
            lines[i] = { "name", l.name, "quantity", D.fmt(l.quantity), "rate", D.fmt(l.rate), "subtotal",
                D.fmt(l.subtotal), _m = true }
        end
        for i, f in ipairs(e.factors) do
            factors[i] = { "attribute", f.attribute, "value", f.value, "factor", D.fmt(f.factor), _m = true }
        end
        local c = { _m = true }
        for _, pair in ipairs(charges(e)) do
            c[#c + 1] = pair[1]
            c[#c + 1] = D.fmt(pair[2])
        end
        return {
            "price", e.key,
            "metric", e.metric,
            "cost", D.fmt(e.cost),
            "lines", lines,
            "subtotal", D.fmt(e.subtotal),
            "minimum", e.minimum and D.fmt(e.minimum) or false,
            "multipliers", factors,
            "charges", c,
            _m = true,
        }
    end

    -- Rust twin: estimate (src/module/commands/price.rs), with usage_pairs
    function P.cmd_estimate(book_key, args)
        if #args < 1 then
            fail("ERR wrong number of arguments for 'QUOTA.ESTIMATE' command")
        end
        local key = args[1]
        local pairs_ = {}
        local i = 2
        while args[i] ~= nil and not LIST_ENDS[supper(args[i])] do
            -- usage_pairs: at most MAX_ITEM_METRICS (outcome.rs) names.
            if #pairs_ == 128 then
                fail("ERR limit: at most 128 usage names per item")
            end
            local value = args[i + 1]
            if value == nil then
                arity("quota.estimate", "a usage value")
            end
            pairs_[#pairs_ + 1] = { args[i], value }
            i = i + 2
        end
        finish(args, i, "QUOTA.ESTIMATE")
        return estimate_reply(P.estimate(book_key, key, pairs_))
    end
end

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
-- ---------------------------------------------------------------------------
-- Names, paths, the argument cursor, and replies (src/engine/names.rs,
-- src/module/commands/args.rs, src/module/commands/reply.rs).
-- ---------------------------------------------------------------------------

local MAX_DEPTH_HARD = 64
local MAX_SEGMENT_LEN = 64
local MAX_NAME_LEN = 128
local MAX_TTL_MS = 30 * 24 * 3600 * 1000
local MAX_CHARGE_PATHS = 16
-- Metrics per item and distinct metrics per request (outcome.rs).
local MAX_ITEM_METRICS = 128
local MAX_REQUEST_METRICS = 256
local HISTORY_LEN = 24

local sfind, ssub, sbyte, slen, supper, sformat = string.find, string.sub, string.byte, string.len, string.upper,
    string.format
local tinsert, tconcat = table.insert, table.concat

-- Upper case of the words read lately (keywords are looked up in upper case
-- on every argument: a lookup is cheaper than making the string).
do
    local upper, cache, n = string.upper, {}, 0
    supper = function(s)
        local u = cache[s]
        if not u then
            u = upper(s)
            if n >= 1024 then
                cache, n = {}, 0
            end
            cache[s] = u
            n = n + 1
        end
        return u
    end
end

local function set_of(list)
    local s = {}
    for _, v in ipairs(list) do
        s[v] = true
    end
    return s
end

-- Words of the command grammar; a metric may not be one of them.
local KEYWORDS = set_of({ "path", "also", "id", "ttl", "service", "model", "all", "upto", "dryrun", "brief", "cost",
    "usage", "item", "check", "metric", "limit", "window", "anchor", "mode", "warn", "rollover", "depth", "format",
    "count", "since", "strict", "block", "open", "none", "rolling", "meta", "tz" })

-- Keywords that end a list of values (`ALSO a b`, `COST m 1 n 2`).
local LIST_ENDS = set_of({ "PATH", "ALSO", "ID", "TTL", "SERVICE", "MODEL", "ALL", "UPTO", "DRYRUN", "BRIEF", "COST",
    "USAGE", "CHECK", "ITEM", "META" })

-- Whether a string is valid UTF-8 (the module refuses other arguments).
local function valid_utf8(s)
    if not sfind(s, "[\128-\255]") then
        return true
    end
    local i, n = 1, #s
    while i <= n do
        local c = sbyte(s, i)
        local extra
        if c < 0x80 then
            extra = 0
        elseif c >= 0xC2 and c <= 0xDF then
            extra = 1
        elseif c >= 0xE0 and c <= 0xEF then
            extra = 2
        elseif c >= 0xF0 and c <= 0xF4 then
            extra = 3
        else
            return false
        end
        if i + extra > n then
            return false
        end
        for k = 1, extra do
            local cc = sbyte(s, i + k)
            if cc < 0x80 or cc > 0xBF then
                return false
            end
        end
        if extra == 2 then
            local c2 = sbyte(s, i + 1)
            if (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 > 0x9F) then
                return false
            end
        elseif extra == 3 then
            local c2 = sbyte(s, i + 1)
            if (c == 0xF0 and c2 < 0x90) or (c == 0xF4 and c2 > 0x8F) then
                return false
            end
        end
        i = i + extra + 1
    end
    return true
end

local function check_utf8(args)
    -- (One search over all of them first: arguments are nearly always ASCII.)
    if not sfind(tconcat(args), "[\128-\255]") then
        return
    end
    for i = 1, #args do
        if not valid_utf8(args[i]) then
            fail("ERR syntax: arguments must be valid UTF-8")
        end
    end
end

local clip = D.clip

-- Rust twin: display_path (src/engine/names.rs)
local function display_path(canonical)
    if canonical == "" then
        return "/"
    end
    return canonical
end

local function check_segment(segment)
    if segment == "" then
        return "empty segment"
    end
    if #segment > MAX_SEGMENT_LEN then
        return "segment longer than 64 characters"
    end
    if segment == "." or segment == ".." then
        return "'.' and '..' are not segments"
    end
    if sfind(segment, "[^%w_%-%.:@]") then
        return "segments use only A-Z a-z 0-9 _ - . : @"
    end
    return nil
end

-- A client path in its canonical form (no leading slash; "" is the root).
-- Rust twin: parse_path (src/engine/names.rs)
local function parse_path(text, depth_limit)
    local body = text
    if ssub(body, 1, 1) == "/" then
        body = ssub(body, 2)
    end
    if body == "" then
        return ""
    end
    local limit = math.min(depth_limit, MAX_DEPTH_HARD)
    local depth, start = 0, 1
    while true do
        local slash = sfind(body, "/", start, true)
        local segment = ssub(body, start, (slash or 0) - 1)
        if not slash then
            segment = ssub(body, start)
        end
        depth = depth + 1
        if depth > limit then
            fail(sformat("ERR limit: path '%s' is deeper than %d segments", clip(text), limit))
        end
        local why = check_segment(segment)
        if why then
            fail(sformat("ERR syntax: invalid path '%s': %s", clip(text), why))
        end
        if not slash then
            break
        end
        start = slash + 1
    end
    return body
end

-- The ancestors of a canonical path, root first, the path last.
-- Rust twin: prefixes (src/engine/names.rs)
local function prefixes(canonical)
    local out = { "" }
    if canonical == "" then
        return out
    end
    local start = 1
    while true do
        local slash = sfind(canonical, "/", start, true)
        if not slash then
            break
        end
        out[#out + 1] = ssub(canonical, 1, slash - 1)
        start = slash + 1
    end
    out[#out + 1] = canonical
    return out
end

-- Rust twin: parent_of (src/engine/names.rs)
local function parent_of(canonical)
    local last = nil
    local start = 1
    while true do
        local slash = sfind(canonical, "/", start, true)
        if not slash then
            break
        end
        last = slash
        start = slash + 1
    end
    if last then
        return ssub(canonical, 1, last - 1)
    end
    return ""
end

-- Rust twin: leaf_of (src/engine/names.rs)
local function leaf_of(canonical)
    local parent = parent_of(canonical)
    if parent == "" then
        return canonical
    end
    return ssub(canonical, #parent + 2)
end

-- The number of segments of a canonical path (0 for the root).
-- Rust twin: depth_of (src/engine/names.rs)
local function depth_of(canonical)
    if canonical == "" then
        return 0
    end
    local _, slashes = string.gsub(canonical, "/", "")
    return slashes + 1
end

-- Rust twin: is_within (src/engine/names.rs)
local function is_within(path, root)
    return root == "" or path == root
        or (#path > #root and ssub(path, 1, #root) == root and sbyte(path, #root + 1) == 47)
end

-- Rust twin: parse_metric (src/engine/names.rs)
local function parse_metric(text)
    local ok = #text >= 1 and #text <= 32 and sfind(text, "^[a-z][a-z0-9_]*$")
    if not ok then
        fail(sformat("ERR unknown metric: '%s' (metric names are [a-z][a-z0-9_]{0,31})", clip(text)))
    end
    if KEYWORDS[text] then
        fail(sformat("ERR unknown metric: '%s' is a keyword, not a metric name", text))
    end
    return text
end

-- A metric name read from stored data (a plan from the book or a tree): the
-- rule as the release that stored it had it.
-- Rust twin: parse_stored_metric (src/engine/names.rs)
local parse_stored_metric
do
    -- Keywords added after a release that took them as metric names
    -- (`meta`, 1.6.0): new commands refuse them, stored data keeps them.
    -- Rust twin: NEWER_KEYWORDS (src/engine/names.rs)
    local NEWER_KEYWORDS = set_of({ "meta", "tz" })

    function parse_stored_metric(text)
        if NEWER_KEYWORDS[text] then
            return text
        end
        return parse_metric(text)
    end
end

-- Rust twin: parse_name (src/engine/names.rs)
local function parse_name(text, what)
    if text == "" or #text > MAX_NAME_LEN or sfind(text, "[^\33-\126]") then
        fail(sformat("ERR syntax: invalid %s '%s': use 1-%d printable characters without spaces", what, clip(text),
            MAX_NAME_LEN))
    end
    return text
end

-- ----- the argument cursor -------------------------------------------------

local Args = {}
Args.__index = Args
-- Paths read lately, by text (Args:next_path).
Args.paths_read, Args.paths_read_n = {}, 0

local function new_args(command, items, first)
    return setmetatable({ items = items, pos = first or 1, command = command }, Args)
end

function Args:is_done()
    return self.pos > #self.items
end

function Args:remaining()
    return #self.items - self.pos + 1
end

function Args:peek()
    return self.items[self.pos]
end

function Args:next_str(what)
    local s = self.items[self.pos]
    if s == nil then
        fail(sformat("ERR wrong number of arguments for '%s' command: missing %s", string.lower(self.command), what))
    end
    self.pos = self.pos + 1
    return s
end

function Args:at_list_end()
    local s = self.items[self.pos]
    return s == nil or LIST_ENDS[supper(s)] == true
end

-- A path up to the hard bound: max_depth bounds only the paths a command
-- creates (check_new_paths), so existing paths stay usable when it is
-- lowered at a reload (Args::next_path).
function Args:next_path(what)
    local text = self:next_str(what)
    local memo = Args.paths_read
    local path = memo[text]
    if not path then
        path = parse_path(text, MAX_DEPTH_HARD)
        if Args.paths_read_n >= 1024 then
            memo = {}
            Args.paths_read, Args.paths_read_n = memo, 0
        end
        memo[text] = path
        Args.paths_read_n = Args.paths_read_n + 1
    end
    return path
end

function Args:next_name(what)
    return parse_name(self:next_str(what), what)
end

-- One path segment (QUOTA.TREE ... AFTER name): the segment rules of a
-- path, no "/".
-- Rust twin: parse_segment (src/engine/names.rs)
function Args:next_segment(what, kind)
    local text = self:next_str(what)
    local why = check_segment(text)
    if why then
        fail(sformat("ERR syntax: invalid %s '%s': %s", kind, clip(text), why))
    end
    return text
end

function Args:next_metric()
    return parse_metric(self:next_str("a metric"))
end

function Args:next_amount(what)
    return D.parse(self:next_str(what))
end

function Args:next_non_negative(what)
    return D.parse_non_negative(self:next_str(what))
end

-- An integer in min..max; `what` names it in the error.
-- `max` is a number, or the text of one beyond 2^53 (u64::MAX), compared
-- as digits; leading zeros are allowed, as Rust's parse allows them.
function Args:next_u64(what, min, max)
    local text = self:next_str(what)
    local max_text = type(max) == "string" and max or sformat("%.0f", max)
    local n = nil
    if sfind(text, "^%d+$") then
        local digits = string.match(text, "^0*(%d-)$")
        if #digits < #max_text or (#digits == #max_text and digits <= max_text) then
            n = tonumber(text)
        end
    end
    if n == nil or n < min or (type(max) == "number" and n > max) then
        fail(sformat("ERR syntax: %s must be an integer from %s to %s, not '%s'", what, sformat("%.0f", min),
            max_text, clip(text)))
    end
    return n
end

function Args:finish()
    local extra = self.items[self.pos]
    if extra ~= nil then
        fail(sformat("ERR syntax: unexpected argument '%s' in %s", clip(extra), self.command))
    end
end

function Args:unknown(word)
    return fail(sformat("ERR syntax: unknown argument '%s' in %s", clip(word), self.command))
end

function Args:once(seen, keyword)
    if seen[keyword] then
        fail(sformat("ERR syntax: %s given twice in %s", keyword, self.command))
    end
    seen[keyword] = true
end

-- The keyword `word` is, in upper case, when it is one of `set`.
local function keyword(word, set)
    local up = supper(word)
    if set[up] then
        return up
    end
    return nil
end

-- The next argument as one of the keywords of `set` (upper case); any other
-- word is an "unknown argument" error naming it.
function Args:next_keyword(set)
    local word = self:next_str("a keyword")
    local kw = keyword(word, set)
    if not kw then
        self:unknown(word)
    end
    return kw
end

-- Splits an optional leading path from option pairs: with an odd number of
-- arguments left the first is the path.
local function optional_path(args)
    if args:remaining() % 2 == 1 then
        return args:next_path("a path")
    end
    return ""
end

-- ----- replies -------------------------------------------------------------
-- A reply is built once as an ordered tree and rendered as RESP (maps on
-- RESP3, flat arrays on RESP2) or as JSON with fields in order. An ordered
-- map is an array k1, v1, k2, v2, ... marked with _m; nil is false.

local function M(...)
    local t = { ... }
    t._m = true
    return t
end

local function to_resp(v)
    if type(v) ~= "table" or v.map or v.ok or v.err then
        return v
    end
    if v._m then
        local m = {}
        for i = 1, #v, 2 do
            m[v[i]] = to_resp(v[i + 1])
        end
        return { map = m }
    end
    if v._ok then
        return { ok = v._ok }
    end
    local a = {}
    for i = 1, #v do
        a[i] = to_resp(v[i])
    end
    return a
end

local JSON_ESCAPES = { ['"'] = '\\"', ['\\'] = '\\\\', ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t' }

local function json_str(s)
    return '"' .. string.gsub(s, '[%c"\\]', function(c)
        return JSON_ESCAPES[c] or (sbyte(c) < 32 and sformat("\\u%04x", sbyte(c))) or c
    end) .. '"'
end

local function write_json(v, out)
    local t = type(v)
    if t == "string" then
        out[#out + 1] = json_str(v)
    elseif t == "number" then
        out[#out + 1] = sformat("%.0f", v)
    elseif v == false or v == nil then
        out[#out + 1] = "null"
    elseif t == "table" and v._ok then
        out[#out + 1] = json_str(v._ok)
    elseif t == "table" and v._m then
        out[#out + 1] = "{"
        for i = 1, #v, 2 do
            if i > 1 then
                out[#out + 1] = ","
            end
            out[#out + 1] = json_str(v[i])
            out[#out + 1] = ":"
            write_json(v[i + 1], out)
        end
        out[#out + 1] = "}"
    else
        out[#out + 1] = "["
        for i = 1, #v do
            if i > 1 then
                out[#out + 1] = ","
            end
            write_json(v[i], out)
        end
        out[#out + 1] = "]"
    end
end

local function to_json(v)
    local out = {}
    write_json(v, out)
    return tconcat(out)
end

local OK = { _ok = "OK" }

local function flag(b)
    if b then
        return 1
    end
    return 0
end

-- ----- costs: amounts per metric in first-appearance order -----------------
-- A costs list is an array of {metric, D}.

local function costs_get(costs, metric)
    for i = 1, #costs do
        if costs[i][1] == metric then
            return costs[i][2]
        end
    end
    return D.ZERO
end

local plus = D.plus

-- The positions of a costs list's metrics (Totals/Lookup in outcome.rs):
-- a request names up to MAX_REQUEST_METRICS metrics, and a scan per metric
-- added or looked up would make its work grow with their square. Only worth
-- building for a long list searched often (more than 16 entries and
-- lookups): nil (scan) otherwise.
local function costs_index(costs, lookups)
    if #costs <= 16 or lookups <= 16 then
        return nil
    end
    local index = {}
    for i = 1, #costs do
        index[costs[i][1]] = i
    end
    return index
end

local function costs_get_at(costs, index, metric)
    if index == nil then
        return costs_get(costs, metric)
    end
    local i = index[metric]
    if i then
        return costs[i][2]
    end
    return D.ZERO
end

-- Sets `metric` to `amount`, appending it when it is new.
local function costs_set_at(costs, index, metric, amount)
    local i
    if index == nil then
        for k = 1, #costs do
            if costs[k][1] == metric then
                i = k
                break
            end
        end
    else
        i = index[metric]
    end
    if i then
        costs[i][2] = amount
    else
        costs[#costs + 1] = { metric, amount }
        if index then
            index[metric] = #costs
        end
    end
end

local function sum_costs(list)
    local total, index = {}, {}
    for _, costs in ipairs(list) do
        for i = 1, #costs do
            local metric = costs[i][1]
            costs_set_at(total, index, metric, plus(costs_get_at(total, index, metric), costs[i][2]))
        end
    end
    return total
end

-- Costs as outcomes (and replies) keep them: metric, text, metric, text...
local function costs_pack(costs)
    local out = {}
    for i = 1, #costs do
        out[#out + 1] = costs[i][1]
        out[#out + 1] = D.fmt(costs[i][2])
    end
    return out
end

-- Costs as the tree stores them: metric, D, metric, D... (msgpack keeps a D
-- value exactly).
local function costs_store(costs)
    local out = {}
    for i = 1, #costs do
        out[#out + 1] = costs[i][1]
        out[#out + 1] = D.stored(costs[i][2])
    end
    return out
end

local function costs_load(flat)
    local out = {}
    for i = 1, #flat, 2 do
        out[#out + 1] = { flat[i], D.loaded(flat[i + 1]) }
    end
    return out
end

-- A packed costs list as a reply map.
local function costs_reply(flat)
    local m = { _m = true }
    for i = 1, #flat do
        m[i] = flat[i]
    end
    return m
end

-- `30 credits, 1 requests`
-- Rust twin: describe (src/engine/hold.rs)
local function describe(costs)
    if #costs == 0 then
        return "nothing"
    end
    local parts = {}
    for i = 1, #costs do
        parts[i] = D.fmt(costs[i][2]) .. " " .. costs[i][1]
    end
    return tconcat(parts, ", ")
end
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
-- ---------------------------------------------------------------------------
-- The tree: its keys, nodes, events, and charging usage along paths
-- (src/engine/tree.rs).
--
-- Keys of the tree `K` (see lua/README.md):
--   K                          hash: "#" → meta, "/<path>" → node
--   {tag}quota:K:holds         hash: id → live hold
--   {tag}quota:K:expiry        zset: id scored by expires_at (ms)
--   {tag}quota:K:done          hash: id → finished reservation or charge
--   {tag}quota:K:forget        zset: id scored by when it is forgotten
--   {tag}quota:K:events        list: the latest events, oldest first
--   {tag}quota:K:kids          zset: "<parent>\0<child>" at score 0, so a
--                              node's children are a ZRANGEBYLEX in byte order
--                              and no node carries the list of its children
-- and, shared by the trees of a slot, the index quota:due (quota:due{TAG} on
-- a cluster): zset, tree key scored by when its next hold is due.
--
-- The stored layout is a format, versioned like an RDB encoding: the tree's
-- "#" field is {seq, generation, event seq, layout, next expiry, next
-- forget, indexed, live holds} (the last four since 1.2.0, see read_meta; a
-- library before it reads the first four and drops the rest). Layout 1 (library
-- 1.0.0) had no fourth entry; its records are read as they are and written
-- in the current layout when next written, "#" by the first write to the
-- tree, inside that call (see read_meta), so a tree is safe while
-- quota-load replaces the library under live traffic. A newer layout is
-- refused, never misread. Stored records are
-- positional msgpack arrays (smaller and faster to pack than maps); their
-- positions are named by constants after the Rust names (below, in
-- hold_table and in 50_policy's pack_policy).
--
-- A command works on a context: everything it reads is decoded once into
-- it, every change is made there, and `flush` writes the changes at the
-- end. A command that fails never flushes, so it changes nothing; a read
-- never flushes, so expiry it applies on the way is only seen, not stored.
-- ---------------------------------------------------------------------------

local mpack, munpack = cmsgpack.pack, cmsgpack.unpack

local function node_field(path)
    return "/" .. path
end

local function new_node()
    return { pols = {}, spent = {}, live = 0 }
end

-- Access rules (lua/src/65_access.lua), declared here: loading a node
-- checks its stored rules against their bound and order.
local ACCESS = { MAX = 128 }
-- Labels, archive, META and the ledger (66_labels.lua, 77_ledger.lua),
-- declared here: nodes, holds and events store them.
local REC = {}

-- Entry order: service, then model, bytewise, no model first (never `<`
-- on client text: Redis sets LC_COLLATE, and Lua's string `<` uses
-- strcoll).
-- Rust twin: Entry (src/engine/access.rs)
function ACCESS.before(a, b)
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

-- (Field positions in blocks: the library's build function may have at most
-- 200 locals.)
local pack_node, unpack_node, pack_meta, read_meta

do
    -- "/<path>": a node.
    local NODE_POLICIES, NODE_SPENT, NODE_LIVE_HOLDS = 1, 2, 3
    -- "#": the tree's metadata.
    local META_SEQ, META_GENERATION, META_EVENT_SEQ, META_LAYOUT = 1, 2, 3, 4
    local META_NEXT_EXPIRY, META_NEXT_FORGET, META_INDEXED, META_LIVE_HOLDS = 5, 6, 7, 8

    -- Since layout 3, a node of a tree that follows (or followed) a plan
    -- has a fourth position: the tree's plan epoch it was last synced at.
    local NODE_PLAN_EPOCH = 4
    -- Since layout 5 (1.5.0), a node with access rules has a fifth: {allow,
    -- deny}, each a sorted list of {service, model or false} (NODE_PLAN_EPOCH
    -- is then false when the tree follows no plan).
    local NODE_ACCESS = 5
    -- Since layout 6 (1.6.0), a node with labels or archived has a sixth:
    -- {note or false, tags (sorted), archived} (NODE_PLAN_EPOCH and
    -- NODE_ACCESS are then false when unused).
    local NODE_LABELS = 6

    -- (Of load_access: a stored name, a stored array of n or any length.)
    local function name_ok(x)
        return type(x) == "string" and x ~= "" and #x <= MAX_NAME_LEN and x ~= "*" and not sfind(x, "[^\33-\126]")
    end
    local function array_of(x, n)
        if type(x) ~= "table" or (n and #x ~= n) then
            return false
        end
        local count = 0
        for _ in pairs(x) do
            count = count + 1
        end
        return count == #x
    end

    -- The node bytes whose rules load_access has found sound (at most
    -- 1,024): a write decodes again the nodes on its way that it does not
    -- change (a project's allow list), and checking 20 model names costs
    -- more than decoding them.
    local rules_read, rules_read_n = {}, 0

    -- Stored rules as the library writes them, or nil: two lists of
    -- {service, model or false}, names as QUOTA.ALLOW takes them, each list
    -- sorted without repeats, 1 to 128 entries in all (anything else is not
    -- read as some other rules: a dropped deny entry would let requests
    -- through).
    -- Rust twin: validate_access (src/engine/restore.rs)
    local function load_access(t)
        if not array_of(t, 2) then
            return nil
        end
        local out, total = { allow = t[1], deny = t[2] }, 0
        for k = 1, 2 do
            local list = t[k]
            if not array_of(list) then
                return nil
            end
            for i = 1, #list do
                local e = list[i]
                if not (array_of(e, 2) and name_ok(e[1]) and (e[2] == false or name_ok(e[2]))) then
                    return nil
                end
                -- (Strictly after the one before: sorted, no repeats.)
                if i > 1 and not ACCESS.before(list[i - 1], e) then
                    return nil
                end
            end
            total = total + #list
        end
        if total == 0 or total > ACCESS.MAX then
            return nil
        end
        return out
    end

    function pack_node(n)
        -- The bytes cmsgpack would write for {policies, spent, live}, the
        -- policies packed one by one (see pack_policy).
        local ac, lb = n.ac, n.lb
        local parts = { lb and "\150" or ac and "\149" or n.pe and "\148" or "\147", array_header(#n.pols) }
        for i = 1, #n.pols do
            parts[i + 2] = pack_policy(n.pols[i])
        end
        parts[#parts + 1] = mpack(costs_store(n.spent), n.live)
        if ac then
            -- (Rules are never changed in place, so their bytes are kept
            -- on them: a write re-packs a node on every reservation.)
            local packed = ac.packed
            if not packed then
                packed = mpack({ ac.allow, ac.deny })
                ac.packed = packed
            end
            parts[#parts + 1] = mpack(n.pe or false) .. packed
        elseif lb then
            parts[#parts + 1] = mpack(n.pe or false, false)
        elseif n.pe then
            parts[#parts + 1] = mpack(n.pe)
        end
        if lb then
            parts[#parts + 1] = mpack({ lb.note or false, lb.tags, lb.arch })
        end
        return tconcat(parts)
    end

    function unpack_node(blob, key)
        local t = munpack(blob)
        local stored = t[NODE_POLICIES]
        local pols = {}
        for i = 1, #stored do
            pols[i] = unpack_policy(stored[i])
        end
        local ac = t[NODE_ACCESS]
        if ac then
            if rules_read[blob] then
                ac = { allow = ac[1], deny = ac[2] }
            else
                ac = load_access(ac)
                if not ac then
                    fail(sformat("ERR layout: tree '%s' has a node whose access rules this library cannot read: "
                        .. "it was not written by it", clip(key)))
                end
                if rules_read_n >= 1024 then
                    rules_read, rules_read_n = {}, 0
                end
                rules_read[blob], rules_read_n = true, rules_read_n + 1
            end
        end
        local lb = t[NODE_LABELS]
        if lb then
            lb = REC.load_labels(lb)
            if not lb then
                fail(sformat("ERR layout: tree '%s' has a node whose labels this library cannot read: "
                    .. "it was not written by it", clip(key)))
            end
        end
        return { pols = pols, spent = costs_load(t[NODE_SPENT]), live = t[NODE_LIVE_HOLDS],
            pe = t[NODE_PLAN_EPOCH] or nil, ac = ac or nil, lb = lb }
    end

    -- The layout this library writes: 2, or 3 for a tree that follows or
    -- followed a plan (its "#plan" field, plan policies and node epochs;
    -- meta.plan says so). A library before 1.3.0 refuses layout 3.
    -- Since 1.4.0, layout 4 for a tree that has had a grant or LOW
    -- (meta.grants): its policies' grant state and the grants hash; "#" then
    -- says in a ninth position whether it follows or followed a plan. A
    -- library before 1.4.0 refuses layout 4.
    -- Since 1.5.0, layout 5 for a tree that has had an access rule or an
    -- INFLIGHT policy (meta.access): layout 4's records, node rules and the
    -- INFLIGHT flag; "#" as in layout 4. A library before 1.5.0 refuses
    -- layout 5.
    -- Since 1.6.0, layout 6 for a tree that has had labels, an archived
    -- node or a hold with META (meta.rec): layout 5's records, node labels
    -- and hold META (also kept by an expired hold's finished id, for a late
    -- commit's ledger entry); "#" as in layout 4 with a tenth position saying
    -- whether it has had access rules (layout 5's meaning). A library
    -- before 1.6.0 refuses layout 6.
    -- Since 1.8.0, layout 7 for a tree that has had a policy whose window
    -- has a zone or a week or year anchor that is not the default
    -- (meta.cycles; W.newer_form), which 1.7.0 cannot decode: layout 6's
    -- records with those windows; "#" as in layout 6 (the ninth and tenth
    -- positions keep their meaning) with an eleventh saying whether it has
    -- had labels, archive or META (layout 6's meaning). A library before
    -- 1.8.0 refuses layout 7.
    local LAYOUT, PLAN_LAYOUT, GRANTS_LAYOUT, ACCESS_LAYOUT, REC_LAYOUT = 2, 3, 4, 5, 6
    local CYCLES_LAYOUT, META_PLAN, META_ACCESS, META_REC = 7, 9, 10, 11

    function pack_meta(meta)
        if meta.cycles then
            return mpack({ meta.seq, meta.gen, meta.ev, CYCLES_LAYOUT, meta.due_e, meta.due_f, meta.indexed,
                meta.holds, meta.plan or false, meta.access or false, meta.rec or false })
        end
        if meta.rec then
            return mpack({ meta.seq, meta.gen, meta.ev, REC_LAYOUT, meta.due_e, meta.due_f, meta.indexed, meta.holds,
                meta.plan or false, meta.access or false })
        end
        if meta.access or meta.grants then
            return mpack({ meta.seq, meta.gen, meta.ev, meta.access and ACCESS_LAYOUT or GRANTS_LAYOUT, meta.due_e,
                meta.due_f, meta.indexed, meta.holds, meta.plan or false })
        end
        return mpack({ meta.seq, meta.gen, meta.ev, meta.plan and PLAN_LAYOUT or LAYOUT, meta.due_e, meta.due_f,
            meta.indexed, meta.holds })
    end

    -- The tree's metadata, and whether it is stored in an older layout, which
    -- the first flush rewrites. Layout 2 differs from layout 1 (which had no
    -- version) only in how an amount is stored: an integer amount is the
    -- plain msgpack number, not the {m, s} map (D.stored). Every record says
    -- so by its own bytes, so a layout-1 record is read as it is (D.loaded)
    -- and written in layout 2 when it is next written: a tree of layout 2
    -- may hold records of both. A later layout that cannot be read so
    -- converts the tree here, in the call that opens it. A newer layout, or
    -- metadata of something else, is refused.
    --
    -- Since 1.2.0 "#" also says what is due, so that a call on a tree with
    -- nothing due asks Redis nothing about it: next expiry (due_e) is the
    -- first score of the expiry set (math.huge when empty), next forget
    -- (due_f) a time no score of the forget set is below; indexed says the
    -- index of due trees holds due_e for the tree; live holds is how many the
    -- holds hash has. false is unknown: a tree
    -- a library before 1.2.0 wrote (it writes only the first four), which
    -- is asked and learnt as before.
    function read_meta(key, blob)
        local ok, m = pcall(munpack, blob)
        local layout = ok and type(m) == "table" and (m[META_LAYOUT] or 1)
        if not layout or type(m[META_SEQ]) ~= "number" or type(m[META_GENERATION]) ~= "number"
            or type(m[META_EVENT_SEQ]) ~= "number" or type(layout) ~= "number" or layout < 1 or layout % 1 ~= 0 then
            fail(sformat("ERR layout: tree '%s' has metadata this library cannot read: it was not written by it",
                clip(key)))
        end
        if layout ~= LAYOUT and layout ~= PLAN_LAYOUT and layout ~= GRANTS_LAYOUT and layout ~= ACCESS_LAYOUT
            and layout ~= REC_LAYOUT and layout ~= CYCLES_LAYOUT and layout ~= 1 then
            fail(sformat("ERR layout: tree '%s' is stored in layout %s, newer than this library's (layout %d): "
                .. "load the newer library with quota-load", clip(key), tostring(layout), CYCLES_LAYOUT))
        end
        local cycles = layout == CYCLES_LAYOUT
        local rec = layout == REC_LAYOUT or (cycles and m[META_REC] == true)
        local access = layout == ACCESS_LAYOUT or ((cycles or layout == REC_LAYOUT) and m[META_ACCESS] == true)
        local grants = layout == GRANTS_LAYOUT or layout == ACCESS_LAYOUT or layout == REC_LAYOUT or cycles
        return { seq = m[META_SEQ], gen = m[META_GENERATION], ev = m[META_EVENT_SEQ],
            due_e = m[META_NEXT_EXPIRY] or false, due_f = m[META_NEXT_FORGET] or false,
            indexed = m[META_INDEXED] or false, holds = m[META_LIVE_HOLDS] or false,
            plan = layout == PLAN_LAYOUT or (grants and m[META_PLAN] == true), grants = grants, access = access,
            rec = rec, cycles = cycles }, layout ~= LAYOUT
    end
end

local function clone_node(n)
    local pols, spent = {}, {}
    for i = 1, #n.pols do
        pols[i] = copy_policy(n.pols[i])
    end
    for i = 1, #n.spent do
        spent[i] = { n.spent[i][1], n.spent[i][2] }
    end
    -- (Rules and labels are never changed in place: ACCESS and LABEL
    -- replace them.)
    return { pols = pols, spent = spent, live = n.live, pe = n.pe, ac = n.ac, lb = n.lb }
end

-- Decoded nodes by their stored bytes, kept across calls (at most 4,096): a
-- node read again unchanged (an ancestor on every request) is not decoded
-- again. A read copies it; a write takes it out and changes it in place
-- (load_nodes), and its final flush puts it back under the bytes it wrote.
-- Equal bytes decode to equal nodes, so the cache is right whoever wrote them.
local node_cache, node_cache_size = {}, 0

local function cache_node(blob, node)
    if node_cache[blob] == nil then
        if node_cache_size >= 4096 then
            node_cache, node_cache_size = {}, 0
        end
        node_cache_size = node_cache_size + 1
    end
    node_cache[blob] = node
end

-- The time: the server's clock, or the test clock when it is enabled.
local CLOCK_KEY = "quota:clock"
local function now_ms()
    if TEST_CLOCK then
        -- (On a cluster node that does not serve the clock key's slot, the
        -- test clock stays where it was loaded.)
        local t = redis.pcall("GET", CLOCK_KEY)
        if type(t) == "string" then
            return tonumber(t)
        end
        if TEST_CLOCK_START > 0 then
            return TEST_CLOCK_START
        end
    end
    local t = redis.call("TIME")
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The companion key names of each tree key seen lately.
local names_of
do
    local key_names, key_names_size = {}, 0

    function names_of(key)
        local k = key_names[key]
        if not k then
            if key_names_size >= 1024 then
                key_names, key_names_size = {}, 0
            end
            k = {
                hkey = companion(key, ":holds"), ekey = companion(key, ":expiry"), tkey = companion(key, ":done"),
                fkey = companion(key, ":forget"), vkey = companion(key, ":events"), kkey = companion(key, ":kids"),
                gkey = companion(key, ":grants"), ukey = companion(key, ":usage"), lkey = REC.ledger_key(key),
            }
            key_names[key] = k
            key_names_size = key_names_size + 1
        end
        return k
    end
end

-- ----- the index of trees with holds (quota_sweep) --------------------------
-- Expiry runs when a tree is called; so that an idle tree's holds expire
-- (and their events are published) on time, every write that changes a
-- tree's holds records when its next hold is due in an index: a sorted set,
-- tree key → ms. quota_sweep releases what is due on the trees it names. On
-- a standalone server the index is the key quota:due; on a cluster it is one
-- key per hash slot, quota:due{TAG}, TAG being the first of the four-letter
-- tags '@@@@' .. 'OOOO' (low nibbles enumerated in order) whose slot it is,
-- so a tree and its index share a slot and each FCALL touches one slot.
local DUE_INDEX = "quota:due"
-- (In a block: the library's build function may have at most 200 locals.)
local due_index
do
    local bxor, rshift = bit.bxor, bit.rshift
    local cluster_mode = nil
    local slot_tags = nil

    local crc_table = {}
    for i = 0, 255 do
        local c = lshift(i, 8)
        for _ = 1, 8 do
            if band(c, 0x8000) ~= 0 then
                c = bxor(band(lshift(c, 1), 0xFFFF), 0x1021)
            else
                c = band(lshift(c, 1), 0xFFFF)
            end
        end
        crc_table[i] = c
    end

    -- CRC16 (XMODEM), as Redis Cluster hashes keys.
    local function crc16(s)
        local c = 0
        for i = 1, #s do
            c = bxor(band(lshift(c, 8), 0xFFFF), crc_table[bxor(rshift(c, 8), sbyte(s, i))])
        end
        return c
    end

    local function build_slot_tags()
        local tags, left = {}, 16384
        for v = 0, 65535 do
            local tag = string.char(0x40 + rshift(v, 12), 0x40 + band(rshift(v, 8), 15), 0x40 + band(rshift(v, 4), 15),
                0x40 + band(v, 15))
            local slot = band(crc16(tag), 16383)
            if not tags[slot] then
                tags[slot] = tag
                left = left - 1
                if left == 0 then
                    break
                end
            end
        end
        return tags
    end

    -- The index key for a tree key; nil while it cannot be told whether the
    -- server is a cluster node (a caller not allowed INFO).
    function due_index(key)
        if cluster_mode == nil then
            local info = redis.pcall("INFO", "cluster")
            if type(info) ~= "string" then
                return nil
            end
            cluster_mode = sfind(info, "cluster_enabled:1", 1, true) ~= nil
        end
        if not cluster_mode then
            return DUE_INDEX
        end
        if not slot_tags then
            slot_tags = build_slot_tags()
        end
        return DUE_INDEX .. "{" .. slot_tags[band(crc16(hash_tag(key)), 16383)] .. "}"
    end
end

-- Records when the tree's next hold is due (or that it has none): at `head`
-- when given (math.huge: none), else at the first of its expiry set.
-- Returns whether the index now says so. An index the caller may not write
-- (an ACL user confined to its tree) is left as it is: the tree still
-- expires on its next call.
-- Rust twin: Tree::next_due_ms (src/engine/hold.rs)
local function index_due(key, ekey, head)
    local index = due_index(key)
    if not index then
        return false
    end
    local reply
    if head == nil then
        local first = redis.call("ZRANGE", ekey, 0, 0, "WITHSCORES")
        head = first[2] or math.huge
    end
    if head ~= math.huge then
        reply = redis.pcall("ZADD", index, head, key)
    else
        reply = redis.pcall("ZREM", index, key)
    end
    return type(reply) == "number"
end

-- Rust twin: Tree::new (src/engine/tree.rs)
local function open_tree(key, writable, sweeping)
    local k = names_of(key)
    local ctx = {
        key = key, writable = writable, now = now_ms(),
        hkey = k.hkey, ekey = k.ekey, tkey = k.tkey, fkey = k.fkey, vkey = k.vkey, kkey = k.kkey, gkey = k.gkey,
        ukey = k.ukey, usage = false, usage_n = 0, kid_add = {}, kid_del = {}, gdel = false, draws = false,
        lkey = k.lkey, ledger = writable and SETTINGS.ledger_len > 0 and {},
        nodes = {}, dirty = {}, deleted = {}, holds = {}, hold_dirty = {}, hold_deleted = {},
        done = {}, done_dirty = {}, forgotten = {},
        new_events = {}, meta_dirty = false, limits = SETTINGS,
        -- (Set below; named here so that the table is made at its size.)
        meta = false, exists = false, node_base = false, node_count = 0, hold_count = 0,
        holds_moved = false, probe_forget = false, pl = false,
    }
    local meta = redis.call("HGET", key, "#")
    if meta then
        -- (An older layout's "#" is rewritten by the first flush that writes
        -- anything, which always writes "#": not before, so a failed write changes nothing.)
        ctx.meta = read_meta(key, meta)
        ctx.exists = true
        -- The nodes the tree had is asked of Redis only when a command
        -- creates paths (check_path_room); node_count counts the changes.
        ctx.node_base, ctx.node_count = false, 0
        ctx.hold_count = ctx.meta.holds or redis.call("HLEN", ctx.hkey)
        if ctx.meta.plan then
            -- A tree that follows (or followed) a plan: what it saw, and
            -- the book's plan of that name taken (a write) or viewed.
            PLAN.open(ctx, sweeping)
        end
    else
        if redis.call("EXISTS", key) == 1 then
            fail("WRONGTYPE Operation against a key holding the wrong kind of value")
        end
        ctx.meta = { seq = 0, gen = 1, ev = 1, due_e = math.huge, due_f = math.huge, indexed = false, holds = 0 }
        ctx.exists = false
        ctx.nodes[""] = new_node()
        ctx.node_base, ctx.node_count = 0, 1
        ctx.hold_count = 0
    end
    return ctx
end

-- Loads the nodes of `paths` not yet in the context (false when missing).
local function load_nodes(ctx, paths)
    local want, seen = {}, {}
    for _, path in ipairs(paths) do
        if ctx.nodes[path] == nil and not seen[path] then
            seen[path] = true
            want[#want + 1] = path
        end
    end
    if #want == 0 then
        return
    end
    if not ctx.exists then
        for _, path in ipairs(want) do
            ctx.nodes[path] = false
        end
        return
    end
    local fields = {}
    for i, path in ipairs(want) do
        fields[i] = node_field(path)
    end
    local blobs = {}
    for first = 1, #fields, 1000 do
        local part = redis.call("HMGET", ctx.key, unpack(fields, first, math.min(first + 999, #fields)))
        for i = 1, #part do
            blobs[first + i - 1] = part[i]
        end
    end
    for i, path in ipairs(want) do
        local blob = blobs[i]
        if blob then
            local pristine = node_cache[blob]
            if ctx.writable then
                -- A write takes the decoded node out of the cache and changes
                -- it in place: its final flush caches it again under the
                -- bytes it writes; a write that fails drops it.
                if pristine then
                    node_cache[blob] = nil
                    node_cache_size = node_cache_size - 1
                else
                    pristine = unpack_node(blob, ctx.key)
                end
                ctx.nodes[path] = pristine
            else
                if not pristine then
                    pristine = unpack_node(blob, ctx.key)
                    cache_node(blob, pristine)
                end
                ctx.nodes[path] = clone_node(pristine)
            end
            local gkey, pols = ctx.gkey, ctx.nodes[path].pols
            for i = 1, #pols do
                local p = pols[i]
                if p.ext and p.gk ~= gkey then
                    p.gk = gkey
                end
            end
        else
            ctx.nodes[path] = false
        end
    end
end

-- Rust twin: Tree::find (src/engine/paths.rs)
local function find(ctx, path)
    if ctx.nodes[path] == nil then
        load_nodes(ctx, { path })
    end
    return ctx.nodes[path] or nil
end

local function touch(ctx, path)
    ctx.dirty[path] = true
end

-- The member of `path` in the children index.
local function kid_member(path)
    return parent_of(path) .. "\0" .. leaf_of(path)
end

-- The children of `path` (full paths, by name), from `first` (0-based), at
-- most `count`; and how many it has in all. With `after` (a name), only
-- the children named after it (byte order) are counted and listed: the
-- range starts past "<path>\0<after>", so a page costs O(log n + count).
-- Rust twin: Tree::children (src/engine/paths.rs)
local function children_of(ctx, path, first, count, after)
    if not ctx.exists then
        return {}, 0
    end
    local lo, hi = "[" .. path .. "\0", "(" .. path .. "\1"
    if after then
        lo = "(" .. path .. "\0" .. after
    end
    local members = redis.call("ZRANGEBYLEX", ctx.kkey, lo, hi, "LIMIT", first, count)
    local out = {}
    local cut = #path + 2
    for i, m in ipairs(members) do
        local name = ssub(m, cut)
        out[i] = (path == "" and name) or (path .. "/" .. name)
    end
    return out, redis.call("ZLEXCOUNT", ctx.kkey, lo, hi)
end

-- Creates `path` and its missing ancestors (the caller checked max_paths).
-- Rust twin: Tree::ensure_path (src/engine/paths.rs)
local function ensure_path(ctx, path)
    local node = find(ctx, path)
    if node then
        return node
    end
    local parent = ensure_path(ctx, parent_of(path))
    node = new_node()
    ctx.nodes[path] = node
    ctx.deleted[path] = nil
    touch(ctx, path)
    ctx.kid_add[#ctx.kid_add + 1] = kid_member(path)
    ctx.node_count = ctx.node_count + 1
    if ctx.pl then
        -- A new node of a tree that follows a plan gets its policies at once.
        PLAN.sync_node(ctx, path, node, true)
    end
    return node
end

-- Rust twin: Tree::check_path_room (src/engine/paths.rs)
local function check_path_room(ctx, new_nodes)
    local max = ctx.limits.max_paths
    if new_nodes > 0 and not ctx.node_base then
        -- ("#", and "#plan" when the tree had it when opened.)
        ctx.node_base = redis.call("HLEN", ctx.key) - 1 - ((ctx.pl and ctx.pl.stored) and 1 or 0)
    end
    if new_nodes > 0 and ctx.node_base + ctx.node_count + new_nodes > max then
        fail(sformat("ERR limit: the tree would have more than %d paths (max_paths)", max))
    end
end

-- Checks that the nodes creating `paths` would add fit: each new path within
-- max_depth and the tree within max_paths. Existing paths are never refused,
-- however deep (Tree::check_new_paths).
-- Rust twin: Tree::check_new_paths (src/engine/paths.rs)
local function check_new_paths(ctx, paths, new_nodes)
    if new_nodes == 0 then
        return
    end
    local limit = math.min(ctx.limits.max_depth, MAX_DEPTH_HARD)
    for _, path in ipairs(paths) do
        if depth_of(path) > limit and not find(ctx, path) then
            fail(sformat("ERR limit: path '%s' is deeper than %d segments", path, limit))
        end
    end
    check_path_room(ctx, new_nodes)
end

local function next_generation(ctx)
    local g = ctx.meta.gen
    ctx.meta.gen = g + 1
    ctx.meta_dirty = true
    return g
end

-- ----- events ----------------------------------------------------------------

-- Rust twin: Event::about (src/engine/events.rs)
local function event_about(kind, now, path, p)
    return {
        seq = 0, type = kind, time = now, path = path, policy = p.name, metric = p.metric,
        used = D.fmt(p.used), held = D.fmt(p.held), limit = D.fmt(allowance(p)),
    }
end

-- Rust twin: Tree::emit (src/engine/tree.rs)
local function emit(ctx, event)
    event.seq = ctx.meta.ev
    ctx.meta.ev = ctx.meta.ev + 1
    ctx.meta_dirty = true
    ctx.new_events[#ctx.new_events + 1] = event
end

-- The warnings and `over` a policy fires now, each once per period.
local alerts
do
    -- While the level and the allowance are integer mantissas of one scale
    -- below 2^45, level * 100 and allowance * pct (pct <= 100) are exact
    -- doubles below 2^53: a threshold is judged on them (as crossed() would,
    -- without making values); otherwise by crossed().
    local SMALL = 35184372088832

    -- Rust twin: alerts (src/engine/events.rs)
    -- An INFLIGHT policy fires none: a concurrency cap reached is normal
    -- traffic. (Asked only when something would fire: the usual call
    -- fires nothing and pays nothing for it.)
    function alerts(ctx, p, path)
        local rolling = is_rolling(p)
        local used, allow = p.used, p.allow
        local level, am, s = used.m, allow.m, used.s
        if level and p.mode == "strict" then
            local held = p.held
            level = held.s == s and held.m and level + held.m
        end
        local fast = level and am and allow.s == s and level < SMALL and level > -SMALL and am < SMALL and am > -SMALL
        for i, pct in ipairs(p.warn) do
            local b = lshift(1, i - 1)
            local is_crossed
            if fast then
                is_crossed = level * 100 >= am * pct
            else
                is_crossed = crossed(p, pct)
            end
            if is_crossed and band(p.fired, b) == 0 and not p.inflight then
                p.fired = bor(p.fired, b)
                local e = event_about("warning", ctx.now, path, p)
                e.threshold = pct
                emit(ctx, e)
            elseif not is_crossed and rolling then
                p.fired = band(p.fired, bnot(b))
            end
        end
        local over = is_over(p)
        if over and not p.overf and not p.inflight then
            p.overf = true
            emit(ctx, event_about("over", ctx.now, path, p))
        elseif not over and rolling then
            p.overf = false
        end
        if p.low then
            G.check_low(ctx, p, path)
        end
    end
end

local function policy_of(ctx, ref)
    local node = ctx.nodes[ref.path]
    return node and node.pols[ref.i]
end

-- Rust twin: Tree::observe (src/engine/tree.rs)
local function observe(ctx, refs)
    for _, ref in ipairs(refs) do
        local p = policy_of(ctx, ref)
        if p then
            alerts(ctx, p, ref.path)
            touch(ctx, ref.path)
        end
    end
end

-- The reset event of the periods just closed and the rollover event.
-- Rust twin: period_events (src/engine/tree.rs)
local function period_events(ctx, p, path, closed)
    local last = p.hist[1]
    if last then
        local e = event_about("reset", ctx.now, path, p)
        e.used, e.limit, e.held, e.periods = last[3], last[4], false, closed
        emit(ctx, e)
    end
    if D.cmp(p.ro, D.ZERO) > 0 then
        local e = event_about("rollover", ctx.now, path, p)
        e.rolled_over = D.fmt(p.ro)
        emit(ctx, e)
    end
end

-- LOW: fires once when the remaining is at or below it.
-- Rust twin: low_event (src/engine/tree.rs)
function G.check_low(ctx, p, path)
    if p.low and not p.lowf then
        local left = remaining(p)
        if D.cmp(left, p.low) <= 0 then
            p.lowf = true
            local e = event_about("low", ctx.now, path, p)
            e.remaining, e.low = D.fmt(left), D.fmt(p.low)
            emit(ctx, e)
        end
    end
end

-- The grant_expired events of the grants a roll ended (`out`).
-- Rust twin: expired_events (src/engine/tree.rs)
function G.expiry_events(ctx, p, path, out)
    for _, x in ipairs(out) do
        local e = event_about("grant_expired", ctx.now, path, p)
        e.grant, e.amount, e.expires_at = x.id, x.amount, x.exp
        emit(ctx, e)
    end
end

-- Applies the resets and grant expiries due to a policy, with their events.
-- Rust twin: Tree::roll_policy (src/engine/tree.rs)
local function roll_policy(ctx, ref)
    local p = policy_of(ctx, ref)
    if not p then
        return
    end
    -- (A list made once and kept while nothing expires into it.)
    local out = G.out
    local closed = roll(p, ctx.now, out)
    rearm(p)
    touch(ctx, ref.path)
    local expired = #out > 0
    if expired then
        G.out = {}
        G.expiry_events(ctx, p, ref.path, out)
    end
    if closed > 0 then
        period_events(ctx, p, ref.path, closed)
    end
    if closed > 0 or expired then
        G.check_low(ctx, p, ref.path)
    end
end

local function event_reply(e, tree)
    local f = M("seq", e.seq, "type", e.type, "time", e.time)
    if tree then
        f[#f + 1] = "tree"
        f[#f + 1] = tree
    end
    local rest = { "path", display_path(e.path), "policy", e.policy or false, "metric", e.metric or false,
        "used", e.used or false, "held", e.held or false, "limit", e.limit or false }
    for i = 1, #rest do
        f[#f + 1] = rest[i]
    end
    local extra = {
        warning = { "threshold", e.threshold or false },
        reset = { "periods", e.periods or false },
        rollover = { "rolled_over", e.rolled_over or false },
        expired = { "id", e.id or false, "amounts", costs_reply(e.amounts or {}) },
        low = { "remaining", e.remaining or false, "low", e.low or false },
        grant_expired = { "grant", e.grant or false, "amount", e.amount or false, "expires_at", e.expires_at or false },
        disallowed = { "rule", e.rule or false, "service", e.service or false, "model", e.model or false,
            "id", e.id or false, "amounts", costs_reply(e.amounts or {}) },
    }
    for _, v in ipairs(extra[e.type] or {}) do
        f[#f + 1] = v
    end
    if e.meta then
        f[#f + 1] = "meta"
        f[#f + 1] = REC.meta_reply(e.meta)
    end
    return f
end

-- ----- reaching policies and charging usage ------------------------------------

-- Usage over time (68_usage.lua), declared here: apply_usage notes each
-- node's change of spent, flush records it.
local USAGE = {}

-- The nodes and policies a charge set reaches, each once, root first: those
-- whose metric is in `metrics` and whose filter matches (for `usage`, a
-- CHARGE or a COMMIT, not INFLIGHT ones: they count only holds).
-- Rust twin: Tree::reach (src/engine/tree.rs)
local function reach(ctx, set, metrics, usage)
    local all = {}
    for _, path in ipairs(set.paths) do
        for _, prefix in ipairs(prefixes(path)) do
            all[#all + 1] = prefix
        end
    end
    load_nodes(ctx, all)
    local nodes, collected, missing, missing_seen = {}, {}, 0, {}
    for _, prefix in ipairs(all) do
        if ctx.nodes[prefix] then
            if not collected[prefix] then
                collected[prefix] = true
                nodes[#nodes + 1] = prefix
            end
        elseif not missing_seen[prefix] then
            missing_seen[prefix] = true
            missing = missing + 1
        end
    end
    local wanted = {}
    for _, m in ipairs(metrics) do
        wanted[m] = true
    end
    local refs = {}
    for _, path in ipairs(nodes) do
        for i, p in ipairs(ctx.nodes[path].pols) do
            if wanted[p.metric] and matches(p, set.service, set.model) and not (usage and p.inflight) then
                refs[#refs + 1] = { path = path, i = i }
            end
        end
    end
    return { nodes = nodes, missing = missing, pols = refs }
end

local function metrics_of(costs)
    local out = {}
    for i = 1, #costs do
        out[i] = costs[i][1]
    end
    return out
end

-- Rust twin: Tree::usage_reach (src/engine/tree.rs)
local function usage_reach(ctx, set, usage)
    return reach(ctx, set, metrics_of(usage), true)
end

-- Rust twin: Tree::policy_at (src/engine/tree.rs)
local function policy_now(ctx, ref)
    local p = policy_of(ctx, ref)
    return p and policy_at(p, ctx.now)
end

-- One check of a policy examined by a request (amounts as text).
local function make_check(path, p, requested, pass, now)
    local w = window_of(p.wenc)
    local ps, pe = shown_period(p, now)
    return {
        path = display_path(path), policy = p.name, metric = p.metric, mode = p.mode, window = W.label(w),
        limit = D.fmt(allowance(p)), used = D.fmt(p.used), held = D.fmt(p.held), requested = D.fmt(requested),
        remaining = D.fmt(remaining(p)), pass = pass, status = status(p), ps = ps, pe = pe,
    }
end

-- Rust twin: Tree::checks (src/engine/tree.rs)
local function checks_of(ctx, r, requested)
    local out = {}
    local at = costs_index(requested, #r.pols)
    for _, ref in ipairs(r.pols) do
        local p = policy_now(ctx, ref)
        if p then
            local amount = costs_get_at(requested, at, p.metric)
            out[#out + 1] = make_check(ref.path, p, amount, passes(p, amount), ctx.now)
        end
    end
    return out
end

local function check_label(c)
    return c.path .. "#" .. c.policy
end

-- Checks that charging `usage` keeps every total in range and that the
-- missing nodes fit, without changing anything.
-- Rust twin: Tree::check_usage (src/engine/tree.rs)
local function check_usage(ctx, r, set, usage)
    check_new_paths(ctx, set.paths, r.missing)
    local by_metric = costs_index(usage, #r.pols)
    for _, ref in ipairs(r.pols) do
        local p = policy_now(ctx, ref)
        if p then
            D.check_add(p.used, costs_get_at(usage, by_metric, p.metric))
        end
    end
    for _, path in ipairs(r.nodes) do
        local node = ctx.nodes[path]
        local at = costs_index(node.spent, #usage)
        for i = 1, #usage do
            D.check_add(costs_get_at(node.spent, at, usage[i][1]), usage[i][2])
        end
    end
end

-- Charges `usage` to every node of the charge set and every matching policy,
-- each once; totals stop at 10^18 for a commit, which is never refused (a
-- charge ran check_usage first). Returns the policies now over.
-- Rust twin: Tree::apply_usage (src/engine/tree.rs)
local function apply_usage(ctx, r, set, usage)
    if r.missing > 0 then
        for _, path in ipairs(set.paths) do
            ensure_path(ctx, path)
        end
        r = usage_reach(ctx, set, usage)
    end
    local over = {}
    local by_metric = costs_index(usage, #r.pols)
    for _, ref in ipairs(r.pols) do
        roll_policy(ctx, ref)
        local p = policy_of(ctx, ref)
        local d = costs_get_at(usage, by_metric, p.metric)
        if p.gn > 0 and D.cmp(d, D.ZERO) > 0 then
            -- (The part the 10^18 cap lets in draws.)
            if not (d.m and p.used.m) then
                d = D.min(d, D.sub(D.MAX_TOTAL, p.used))
            end
            G.draw(p, d, ref.path, ctx.draws, ctx.now)
        end
        add_used_capped(p, d, ctx.now)
        if is_over(p) then
            over[#over + 1] = display_path(ref.path) .. "#" .. p.name
        end
    end
    observe(ctx, r.pols)
    local limits = ctx.limits
    local notes = (limits.usage_hours > 0 or limits.usage_days > 0) and USAGE.notes(ctx)
    for _, path in ipairs(r.nodes) do
        local node = ctx.nodes[path]
        local at = costs_index(node.spent, #usage)
        local changes = usage
        for i = 1, #usage do
            local metric, delta = usage[i][1], usage[i][2]
            local current = costs_get_at(node.spent, at, metric)
            local updated = D.add_saturating(current, delta)
            costs_set_at(node.spent, at, metric, updated)
            if notes then
                -- The node's usage takes what spent took: the clamped
                -- change (add_saturating returns its bounds as they are).
                local change = delta
                if updated == D.ZERO or updated == D.MAX_TOTAL then
                    change = D.sub(updated, current)
                end
                if changes ~= usage or change ~= delta or D.is_zero(delta) then
                    changes = USAGE.changed(changes, usage, i, change)
                end
            end
        end
        if notes and #changes > 0 then
            local n = ctx.usage_n
            notes[n + 1], notes[n + 2], notes[n + 3], ctx.usage_n = path, set, changes, n + 3
        end
        touch(ctx, path)
    end
    return over
end

-- ----- holds and finished ids as stored ------------------------------------------
-- hold = {id, paths, service, model, created, expires, items, lines, reply,
--         last_commit, last_release}; item = {cost (costs), state, outcome};
-- state is "held", "committed", "released" or "expired"; a line names a
-- policy by path and generation. Outcomes keep amounts as text.

local hold_table, hold_of_table
do
    -- A hold's positions, after the fields of the Rust Hold (src/engine/hold.rs).
    local ID, PATHS, SERVICE, MODEL, CREATED_AT, EXPIRES_AT, ITEMS, LINES = 1, 2, 3, 4, 5, 6, 7, 8
    local REPLY, LAST_COMMIT, LAST_RELEASE = 9, 10, 11
    -- Since layout 6 (1.6.0), a hold with META has a twelfth: its pairs
    -- flat, name, value, ... in the order given (a finished hold keeps it
    -- only when it expired).
    local META = 12
    -- An item's.
    local COST, STATE, OUTCOME = 1, 2, 3

    function hold_table(hold)
        local items = {}
        for i, item in ipairs(hold.items) do
            items[i] = { costs_store(item.cost), item.state, item.outcome or false }
        end
        local lines = {}
        for _, line in ipairs(hold.lines) do
            lines[#lines + 1] = line.path
            lines[#lines + 1] = line.gen
        end
        -- (In the order of the positions.)
        return { hold.id, hold.paths, hold.service or false, hold.model or false, hold.created, hold.expires, items,
            lines, hold.reply or false, hold.last_commit or false, hold.last_release or false, hold.meta }
    end

    function hold_of_table(t, key)
        local meta = t[META]
        if meta and not REC.meta_check_stored(meta) then
            fail(sformat("ERR layout: tree '%s' has a hold whose META this library cannot read: "
                .. "it was not written by it", clip(key or "")))
        end
        local items = {}
        for i, item in ipairs(t[ITEMS]) do
            items[i] = { cost = costs_load(item[COST]), state = item[STATE], outcome = item[OUTCOME] or nil }
        end
        local lines = {}
        local flat = t[LINES]
        for i = 1, #flat, 2 do
            lines[#lines + 1] = { path = flat[i], gen = flat[i + 1] }
        end
        return { id = t[ID], paths = t[PATHS], service = t[SERVICE] or nil, model = t[MODEL] or nil,
            created = t[CREATED_AT], expires = t[EXPIRES_AT], items = items, lines = lines, reply = t[REPLY] or nil,
            last_commit = t[LAST_COMMIT] or nil, last_release = t[LAST_RELEASE] or nil, meta = meta or nil }
    end
end

local function pack_hold(hold)
    return mpack(hold_table(hold))
end

-- entry = {id, forget_at, hold, charge}
-- Rust twin: Tomb::pack (src/engine/hold.rs)
local function pack_done(entry)
    return mpack({ entry.id, entry.forget_at, entry.hold and hold_table(entry.hold) or false, entry.charge or false })
end

-- Rust twin: Tomb::unpack (src/engine/hold.rs)
local function unpack_done(blob, key)
    local t = munpack(blob)
    return { id = t[1], forget_at = t[2], hold = t[3] and hold_of_table(t[3], key) or nil, charge = t[4] or nil }
end

-- Runs `command key a1 a2 ...` over `list` in chunks (Lua's unpack has a
-- limit), appending the replies.
local function call_chunked(command, key, list)
    local out = {}
    for first = 1, #list, 1000 do
        local reply = redis.call(command, key, unpack(list, first, math.min(first + 999, #list)))
        if type(reply) == "table" then
            for _, v in ipairs(reply) do
                out[#out + 1] = v
            end
        end
    end
    return out
end

-- ----- writing back --------------------------------------------------------------


-- Writes the context's changes. `final` says the context is done with: its
-- nodes, now stored, can be the decoded form of what was written.
-- (Its parts in a block: the library's build function may have at most 200
-- locals.)
local flush
do
    -- The tree's hash (meta and nodes) and the children index.
    local function flush_nodes(ctx, final)
        local key = ctx.key
        local hset = { "#", false }
        if ctx.pl and ctx.pl.dirty then
            hset[3], hset[4] = "#plan", mpack({ ctx.pl.name or false, ctx.pl.epoch, ctx.pl.json or false })
            ctx.pl.dirty, ctx.pl.stored = false, true
        end
        local gps = {}
        for path in pairs(ctx.dirty) do
            local node = ctx.nodes[path]
            if node then
                local pols = node.pols
                for i = 1, #pols do
                    local p = pols[i]
                    if p.ext then
                        if not ctx.meta.grants then
                            ctx.meta.grants = true
                        end
                        if p.gw then
                            gps[#gps + 1] = p
                        end
                    end
                end
                local blob = pack_node(node)
                hset[#hset + 1] = node_field(path)
                hset[#hset + 1] = blob
                if final then
                    cache_node(blob, node)
                end
            end
        end
        hset[2] = pack_meta(ctx.meta)
        call_chunked("HSET", key, hset)
        -- (The grants of the policies that went first: a policy that came
        -- in their place may have the same generation.)
        if ctx.gdel then
            for gen in pairs(ctx.gdel) do
                G.drop(ctx.gkey, gen)
            end
        end
        for _, p in ipairs(gps) do
            G.flush(p)
        end
        local hdel = {}
        for path in pairs(ctx.deleted) do
            hdel[#hdel + 1] = node_field(path)
        end
        call_chunked("HDEL", key, hdel)
        if #ctx.kid_add > 0 then
            local add = {}
            for _, m in ipairs(ctx.kid_add) do
                add[#add + 1] = 0
                add[#add + 1] = m
            end
            call_chunked("ZADD", ctx.kkey, add)
        end
        call_chunked("ZREM", ctx.kkey, ctx.kid_del)
    end

    -- Live holds with their expiry (and the index of due trees), finished ids
    -- with when they are forgotten; and what "#" says is due (read_meta).
    local function flush_holds(ctx)
        local meta, lowest = ctx.meta, math.huge
        local deleted = next(ctx.hold_deleted)
        for id in pairs(ctx.hold_deleted) do
            redis.call("HDEL", ctx.hkey, id)
            redis.call("ZREM", ctx.ekey, id)
        end
        for id in pairs(ctx.hold_dirty) do
            local hold = ctx.holds[id]
            if hold and not ctx.hold_deleted[id] then
                redis.call("HSET", ctx.hkey, id, pack_hold(hold))
                redis.call("ZADD", ctx.ekey, hold.expires, id)
                lowest = math.min(lowest, hold.expires)
            end
        end
        if deleted or next(ctx.hold_dirty) then
            -- Holds only added (none released, none moved by EXTEND): the
            -- first due is known without asking.
            local head
            if not deleted and not ctx.holds_moved and meta.due_e then
                head = math.min(meta.due_e, lowest)
            else
                local first = redis.call("ZRANGE", ctx.ekey, 0, 0, "WITHSCORES")
                head = first[2] and tonumber(first[2]) or math.huge
            end
            -- Written even when the head is the one the index had: the
            -- index may have lost the tree (restored from a DUMP on another
            -- server, the index deleted by hand), and a ZADD that changes
            -- nothing replicates nothing.
            meta.indexed = index_due(ctx.key, ctx.ekey, head)
            meta.due_e = head
        end
        for id in pairs(ctx.forgotten) do
            redis.call("HDEL", ctx.tkey, id)
            redis.call("ZREM", ctx.fkey, id)
        end
        lowest = math.huge
        for id in pairs(ctx.done_dirty) do
            local entry = ctx.done[id]
            if entry then
                redis.call("HSET", ctx.tkey, id, pack_done(entry))
                redis.call("ZADD", ctx.fkey, entry.forget_at, id)
                lowest = math.min(lowest, entry.forget_at)
            end
        end
        if ctx.probe_forget then
            -- Nothing was due to be forgotten: learn when something is.
            local first = redis.call("ZRANGE", ctx.fkey, 0, 0, "WITHSCORES")
            meta.due_f = first[2] and tonumber(first[2]) or math.huge
            ctx.probe_forget = false
        elseif meta.due_f then
            meta.due_f = math.min(meta.due_f, lowest)
        end
        meta.holds = ctx.hold_count
    end

    -- Only the newest events_len are kept (and published, as the module
    -- publishes what its log keeps); pushed in chunks, as one write may log
    -- more events (a backlog of expiries) than unpack can pass.
    local function flush_events(ctx)
        local events, keep = ctx.new_events, math.max(ctx.limits.events_len, 1)
        local first = math.max(#events - keep + 1, 1)
        local blobs = {}
        for i = first, #events do
            blobs[#blobs + 1] = mpack(events[i])
        end
        call_chunked("RPUSH", ctx.vkey, blobs)
        redis.call("LTRIM", ctx.vkey, -keep, -1)
        for i = first, #events do
            redis.call("PUBLISH", "quota:events:" .. ctx.key, to_json(event_reply(events[i], ctx.key)))
        end
    end

    function flush(ctx, final)
        local any = ctx.meta_dirty or (ctx.pl and ctx.pl.dirty) or ctx.gdel or next(ctx.dirty) or next(ctx.hold_dirty) or next(ctx.hold_deleted)
            or #ctx.kid_del > 0 or next(ctx.done_dirty) or next(ctx.forgotten) or #ctx.new_events > 0 or ctx.usage_n > 0
            or (ctx.ledger and #ctx.ledger > 0)
        if not any then
            return
        end
        -- A Function does not roll back: what could still fail (stored
        -- usage the library cannot read) is read and checked before the
        -- first write.
        local usage = ctx.usage_n > 0 and USAGE.prepare(ctx)
        local usage_dropped = next(ctx.deleted) and USAGE.drop_fields(ctx, ctx.deleted)
        if not ctx.exists then
            -- Companions left by a tree deleted with DEL belong to nobody.
            redis.call("DEL", ctx.hkey, ctx.ekey, ctx.tkey, ctx.fkey, ctx.vkey, ctx.kkey, ctx.gkey, ctx.gkey .. ":draw",
                ctx.gkey .. ":exp", ctx.gkey .. ":dead", ctx.ukey)
            ctx.exists = true
            ctx.dirty[""] = true
        end
        -- (Holds first: they update what "#" says is due.)
        flush_holds(ctx)
        if usage_dropped then
            call_chunked("HDEL", ctx.ukey, usage_dropped)
        end
        flush_nodes(ctx, final)
        if usage then
            USAGE.write(usage)
        end
        if #ctx.new_events > 0 then
            flush_events(ctx)
        end
        if ctx.ledger and #ctx.ledger > 0 then
            REC.ledger_write(ctx)
        end
        if final then
            -- (The context is done with: nothing is left to reset.)
            return
        end
        ctx.dirty, ctx.deleted, ctx.hold_dirty, ctx.hold_deleted = {}, {}, {}, {}
        ctx.gdel = false
        ctx.kid_add, ctx.kid_del = {}, {}
        ctx.done_dirty, ctx.forgotten, ctx.new_events, ctx.meta_dirty = {}, {}, {}, false
    end
end
-- ---------------------------------------------------------------------------
-- Access rules (SPEC §8; Rust: src/engine/access.rs): a node's allow list
-- and deny list of entries {service, model or false} (false: every model of
-- the service). A request passes a node when it matches no deny entry and,
-- where the node has allow entries, matches one; a node's rules apply to
-- its subtree, so every node of a request's reach judges it, root first.
-- A node keeps its rules in its record (n.ac = {allow, deny}, each sorted
-- by service then model in byte order, an entry without a model first, at
-- most ACCESS.MAX in all); a node without rules has no n.ac, and a tree
-- that never had a rule (nor an INFLIGHT policy) says so in "#"
-- (meta.access false, layout 4 or before), so a request on it looks at no
-- node's rules. Rules are never changed in place (clone_node shares them).
-- (A table, not locals: build() is near Lua's 200 locals.)
-- ---------------------------------------------------------------------------

-- (ACCESS, its bound and its entry order are declared in 60_tree.lua, where
-- stored rules are read.)

-- The position of the entry (service, model) in `list`, or nil.
function ACCESS.find(list, service, model)
    model = model or false
    for i = 1, #list do
        local e = list[i]
        if e[1] == service and e[2] == model then
            return i
        end
    end
    return nil
end

function ACCESS.count(ac)
    return ac and (#ac.allow + #ac.deny) or 0
end

-- The sentence of a refusal at display path `at` (why: "no_service",
-- "service", "model", "no_model").
-- Rust twin: message (src/engine/access.rs)
function ACCESS.message(why, at, service, model)
    if why == "no_service" then
        return sformat("a request without SERVICE is not allowed at %s (it allows only listed services)", at)
    elseif why == "service" then
        return sformat("service %s is not allowed at %s", service, at)
    elseif why == "model" then
        return sformat("model %s is not allowed at %s", model, at)
    end
    return sformat("service %s without MODEL is not allowed at %s (it allows only listed models)", service, at)
end

-- How one node's rules judge a request: nil when it passes, else the rule
-- that refuses ("deny" or "allow") and why (ACCESS.message). An entry
-- matches a request whose SERVICE is its service and, when it names a
-- model, whose MODEL is that model; a request without SERVICE matches none.
-- Rust twin: Access::judge (src/engine/access.rs)
function ACCESS.judge_node(ac, service, model)
    local deny, allow = ac.deny, ac.allow
    if service == nil then
        -- (A request without SERVICE matches no entry.)
        if #allow > 0 then
            return "allow", "no_service"
        end
        return nil
    end
    for i = 1, #deny do
        local e = deny[i]
        if e[1] == service then
            local m = e[2]
            if not m then
                return "deny", "service"
            elseif m == model then
                return "deny", "model"
            end
        end
    end
    local n = #allow
    if n == 0 then
        return nil
    end
    local names_service = false
    for i = 1, n do
        local e = allow[i]
        if e[1] == service then
            local m = e[2]
            if not m or m == model then
                return nil
            end
            names_service = true
        end
    end
    if not names_service then
        return "allow", "service"
    elseif model == nil then
        return "allow", "no_model"
    end
    return "allow", "model"
end

-- The access checks of a request (set) on the nodes of its reach, in
-- their order, one per refusing node; nil when every node passes (at once
-- for a tree that never had a rule). Also the first refusal's sentence and
-- the refusing nodes' paths.
-- Rust twin: Tree::judge_access (src/engine/access.rs)
function ACCESS.judge(ctx, nodes, set)
    if not ctx.meta.access then
        return nil
    end
    local out, first, paths = nil, nil, nil
    local service, model = set.service, set.model
    for _, path in ipairs(nodes) do
        local node = ctx.nodes[path]
        local ac = node and node.ac
        if ac then
            local rule, why = ACCESS.judge_node(ac, service, model)
            if rule then
                local at = display_path(path)
                if not out then
                    out, first, paths = {}, ACCESS.message(why, at, service, model), {}
                end
                out[#out + 1] = { kind = "access", path = at, rule = rule, service = service, model = model,
                    pass = false }
                paths[#paths + 1] = path
            end
        end
    end
    return out, first, paths
end

-- The labels of access (and archived) checks: `path#access`
-- (`path#archived`).
-- Rust twin: AccessCheck::label (src/engine/access.rs)
function ACCESS.labels(checks)
    local out = {}
    for i, c in ipairs(checks) do
        out[i] = c.path .. "#" .. c.kind
    end
    return out
end

-- The `disallowed` events of a CHARGE (without CHECK) that access refuses:
-- one per refusing node (`paths`), in node order, before the charge's
-- alerts.
-- Rust twin: Tree::disallowed_events (src/engine/access.rs)
function ACCESS.disallowed_events(ctx, refusals, paths, id, charged, meta)
    local amounts = costs_pack(charged)
    for i, c in ipairs(refusals) do
        emit(ctx, { seq = 0, type = "disallowed", time = ctx.now, path = paths[i], rule = c.rule,
            service = c.service, model = c.model, id = id, amounts = amounts, meta = meta })
    end
end

-- The service or model (`what`) of an entry as QUOTA.ALLOW and QUOTA.DENY
-- give it: a name, never `*` (leaving MODEL out names every model).
-- Rust twin: parse_part (src/engine/access.rs)
function ACCESS.parse_part(text, what)
    if text == "*" then
        fail("ERR syntax: '*' is not a wildcard here: leave MODEL out to match every model of a service")
    end
    return parse_name(text, what)
end

-- QUOTA.ALLOW / QUOTA.DENY without REMOVE: adds the entry to the node's
-- `list` ("allow" or "deny"), creating the key and the node when missing.
-- Returns 1 when the list changed, else 0.
-- Rust twin: Tree::add_rule (src/engine/access.rs)
function ACCESS.add(ctx, path, list, service, model)
    PLAN.sync_paths(ctx, { path })
    local node = find(ctx, path)
    local ac = node and node.ac
    if node then
        if ac and ACCESS.find(ac[list], service, model) then
            return 0
        end
        if ACCESS.count(ac) >= ACCESS.MAX then
            fail(sformat("ERR limit: at most %d access rules per path", ACCESS.MAX))
        end
    else
        check_new_paths(ctx, { path }, reach(ctx, { paths = { path } }, {}).missing)
    end

    -- After this point the command succeeds.
    node = node or ensure_path(ctx, path)
    local entry = { service, model or false }
    local grown, placed = {}, false
    for _, e in ipairs(ac and ac[list] or {}) do
        if not placed and ACCESS.before(entry, e) then
            grown[#grown + 1] = entry
            placed = true
        end
        grown[#grown + 1] = e
    end
    if not placed then
        grown[#grown + 1] = entry
    end
    local other = list == "allow" and "deny" or "allow"
    node.ac = { [list] = grown, [other] = ac and ac[other] or {} }
    ctx.meta.access, ctx.meta_dirty = true, true
    touch(ctx, path)
    return 1
end

-- QUOTA.ALLOW / QUOTA.DENY … REMOVE: takes the entry away; a missing key,
-- path or entry changes nothing (0).
-- Rust twin: Tree::remove_rule (src/engine/access.rs)
function ACCESS.remove(ctx, path, list, service, model)
    local node = find(ctx, path)
    local ac = node and node.ac
    local at = ac and ACCESS.find(ac[list], service, model)
    if not at then
        return 0
    end
    local kept = {}
    for i, e in ipairs(ac[list]) do
        if i ~= at then
            kept[#kept + 1] = e
        end
    end
    local other = list == "allow" and "deny" or "allow"
    if #kept + #ac[other] == 0 then
        node.ac = nil
    else
        node.ac = { [list] = kept, [other] = ac[other] }
    end
    touch(ctx, path)
    return 1
end

-- QUOTA.ACCESS … CLEAR: removes every entry of the node (not of its
-- subtree); how many there were (a missing key or path: 0).
-- Rust twin: Tree::clear_rules (src/engine/access.rs)
function ACCESS.clear(ctx, path)
    local node = find(ctx, path)
    local n = ACCESS.count(node and node.ac)
    if n > 0 then
        node.ac = nil
        touch(ctx, path)
    end
    return n
end

-- One entry as QUOTA.ACCESS, GET and TREE show it.
function ACCESS.entry_reply(e)
    if e[2] then
        return M("service", e[1], "model", e[2])
    end
    return M("service", e[1])
end

-- A node's rules as GET and TREE show them (`access`): allow, deny.
function ACCESS.reply(ac)
    local allow, deny = {}, {}
    if ac then
        for i, e in ipairs(ac.allow) do
            allow[i] = ACCESS.entry_reply(e)
        end
        for i, e in ipairs(ac.deny) do
            deny[i] = ACCESS.entry_reply(e)
        end
    end
    return M("allow", allow, "deny", deny)
end

-- QUOTA.ACCESS: the node's own rules (a missing key: the root's, none; a
-- missing path: NOTFOUND).
-- Rust twin: Tree::access_view (src/engine/access.rs)
function ACCESS.view(ctx, path)
    local node = find(ctx, path)
    if not node then
        fail(sformat("NOTFOUND no such path '%s'", display_path(path)))
    end
    local f = M("path", display_path(path))
    local rules = ACCESS.reply(node.ac)
    for i = 1, #rules do
        f[#f + 1] = rules[i]
    end
    return f
end
-- ---------------------------------------------------------------------------
-- Labels and archive (SPEC §10; Rust: src/engine/labels.rs), and META
-- (SPEC §9; a request's name value pairs, kept with its hold).
-- A node's labels are n.lb = {note (text or nil), tags (sorted bytewise,
-- no repeats), arch (the node itself is archived)}, nil when it has none;
-- they are never changed in place (LABEL and ARCHIVE replace them, so
-- clone_node shares them). A tree that has had labels, an archived node
-- or a hold with META says so in "#" (meta.rec, layout 6): a request on
-- any other tree looks at no node's archive flag.
-- (Functions in a block, kept on REC: build() is near Lua's 200 locals.)
-- ---------------------------------------------------------------------------

do
    local MAX_TAGS, MAX_TAG_LEN = 16, 64
    local TAG_ERROR = "ERR syntax: a tag must be 1-64 characters of A-Z a-z 0-9 _ - . : @"

    -- One tag: a path segment (A-Z a-z 0-9 _ - . : @, 1-64, not . or ..).
    -- Rust twin: check_tag (src/engine/labels.rs)
    local function label_check_tag(tag)
        if tag == "" or #tag > MAX_TAG_LEN or tag == "." or tag == ".." or sfind(tag, "[^A-Za-z0-9_%-%.:@]") then
            fail(TAG_ERROR)
        end
        return tag
    end

    -- TAGS t1,t2,...: sorted bytewise, repeats dropped, at most 16; "" is
    -- no tags.
    -- Rust twin: parse_tags (src/engine/labels.rs)
    local function label_parse_tags(text)
        local tags = {}
        if text == "" then
            return tags
        end
        local seen = {}
        for tag in string.gmatch(text .. ",", "([^,]*),") do
            label_check_tag(tag)
            if not seen[tag] then
                seen[tag] = true
                tags[#tags + 1] = tag
            end
        end
        table.sort(tags, P.bytes_less)
        if #tags > MAX_TAGS then
            fail(sformat("ERR limit: at most %d tags per path", MAX_TAGS))
        end
        return tags
    end

    -- NOTE text: the grant NOTE rule; "" clears the note (nil).
    -- Rust twin: parse_note (src/engine/labels.rs)
    local function label_parse_note(text)
        if text == "" then
            return nil
        end
        if #text > G.NOTE_MAX then
            fail(sformat("ERR limit: NOTE is longer than %d bytes", G.NOTE_MAX))
        end
        if sfind(text, "[%z\1-\31\127]") or not valid_utf8(text) then
            fail("ERR syntax: NOTE must be text without control characters")
        end
        return text
    end

    -- Stored labels {note or false, tags, archived} as the library writes
    -- them, or nil: never empty, the rules above.
    -- Rust twin: validate (src/engine/labels.rs)
    local function label_check_stored(t)
        if type(t) ~= "table" or #t ~= 3 or type(t[2]) ~= "table" or type(t[3]) ~= "boolean" then
            return nil
        end
        local note, tags = t[1], t[2]
        if note ~= false and (type(note) ~= "string" or note == "" or #note > G.NOTE_MAX
            or sfind(note, "[%z\1-\31\127]")) then
            return nil
        end
        if #tags > MAX_TAGS then
            return nil
        end
        for i = 1, #tags do
            local tag = tags[i]
            if type(tag) ~= "string" or tag == "" or #tag > MAX_TAG_LEN or sfind(tag, "[^A-Za-z0-9_%-%.:@]")
                or tag == "." or tag == ".." or (i > 1 and not P.bytes_less(tags[i - 1], tag)) then
                return nil
            end
        end
        if note == false and #tags == 0 and not t[3] then
            return nil
        end
        return { note = note or nil, tags = tags, arch = t[3] }
    end

    -- Labels with one part changed; nil when nothing is left.
    local function label_with(lb, note, tags, arch)
        if note == nil and #tags == 0 and not arch then
            return nil
        end
        return { note = note, tags = tags, arch = arch }
    end


    -- QUOTA.LABEL: sets the note (NOTE) and/or replaces the tags (TAGS),
    -- creating the key and the node when missing. One that changes nothing
    -- (the node there, the same note and tags) writes nothing, as the
    -- module's: NOTE "" on a missing key creates no key. o = {note_given,
    -- note, tags} (tags nil: not given).
    -- Rust twin: Tree::label (src/engine/labels.rs)
    local function label_set(ctx, path, o)
        PLAN.sync_paths(ctx, { path })
        local node = find(ctx, path)
        if not node then
            check_new_paths(ctx, { path }, reach(ctx, { paths = { path } }, {}).missing)
        end

        -- After this point the command succeeds.
        local created = not node
        node = node or ensure_path(ctx, path)
        local lb = node.lb
        local note, tags, arch = lb and lb.note, lb and lb.tags or {}, lb and lb.arch or false
        if o.note_given then
            note = o.note
        end
        if o.tags then
            tags = o.tags
        end
        if not created and note == (lb and lb.note) and same_list(tags, lb and lb.tags or {}) then
            return M("path", display_path(path), "note", note or false, "tags", tags)
        end
        node.lb = label_with(lb, note, tags, arch)
        if node.lb and not ctx.meta.rec then
            ctx.meta.rec, ctx.meta_dirty = true, true
        end
        touch(ctx, path)
        return M("path", display_path(path), "note", note or false, "tags", tags)
    end

    -- QUOTA.ARCHIVE (on true) / QUOTA.RESTORE (false): the node's own
    -- flag; 1 when it changed, else 0.
    -- A missing key has no path, not even the root.
    -- Rust twin: Tree::set_archived (src/engine/labels.rs), flag_command (src/module/commands/labels.rs)
    local function archive_set(ctx, path, on)
        local node = ctx.exists and find(ctx, path)
        if not node then
            fail(sformat("NOTFOUND no such path '%s'", display_path(path)))
        end
        local lb = node.lb
        if (lb and lb.arch or false) == on then
            return 0
        end
        node.lb = label_with(lb, lb and lb.note, lb and lb.tags or {}, on)
        if on and not ctx.meta.rec then
            ctx.meta.rec, ctx.meta_dirty = true, true
        end
        touch(ctx, path)
        return 1
    end

    -- The refusal of a request whose reach (`nodes`, root first) holds an
    -- archived node: one check per node itself archived, and the first
    -- one's sentence; nil when none is (at once on a tree without labels).
    -- Rust twin: Tree::judge_archived (src/engine/labels.rs)
    local function archive_judge(ctx, nodes)
        if not ctx.meta.rec then
            return nil
        end
        local out, first = nil, nil
        for _, path in ipairs(nodes) do
            local node = ctx.nodes[path]
            local lb = node and node.lb
            if lb and lb.arch then
                local at = display_path(path)
                if not out then
                    out, first = {}, sformat("path %s is archived", at)
                end
                out[#out + 1] = { kind = "archived", path = at, pass = false }
            end
        end
        return out, first
    end

    -- note, tags, archived as GET and TREE show them, after `access`.
    local function label_fields(f, lb)
        if not lb then
            return
        end
        if lb.note then
            f[#f + 1] = "note"
            f[#f + 1] = lb.note
        end
        if #lb.tags > 0 then
            f[#f + 1] = "tags"
            f[#f + 1] = lb.tags
        end
        if lb.arch then
            f[#f + 1] = "archived"
            f[#f + 1] = 1
        end
    end

    -- Whether TREE shows `path` (filtered views, OPS.tree_view): not when it
    -- is archived (without ARCHIVED), and with TAG t only when it or a node
    -- below it that is shown carries t. Remembered per call (ctx.shown).
    local function tree_shows(ctx, path)
        local memo = ctx.shown
        if not memo then
            memo = {}
            ctx.shown = memo
        end
        local known = memo[path]
        if known ~= nil then
            return known
        end
        local node = ctx.nodes[path]
        local lb = node and node.lb
        local shown
        if not node or (lb and lb.arch and not ctx.archived) then
            shown = false
        elseif not ctx.tag or (lb and REC.has_tag(lb, ctx.tag)) then
            shown = true
        else
            shown = false
            local kids = children_of(ctx, path, 0, -1)
            load_nodes(ctx, kids)
            for _, kid in ipairs(kids) do
                if tree_shows(ctx, kid) then
                    shown = true
                    break
                end
            end
        end
        memo[path] = shown
        return shown
    end

    -- The children of `path` a filtered TREE shows, by name (with `after`,
    -- only those named after it).
    -- Rust twin: Tree::tree_view_filtered (src/engine/view.rs), Tree::mark_tagged (src/engine/view.rs)
    local function label_tree_filter(ctx, path, after)
        local kids = children_of(ctx, path, 0, -1, after)
        load_nodes(ctx, kids)
        local out = {}
        for _, kid in ipairs(kids) do
            if tree_shows(ctx, kid) then
                out[#out + 1] = kid
            end
        end
        return out
    end

    local function has_tag(lb, tag)
        for _, t in ipairs(lb.tags) do
            if t == tag then
                return true
            end
        end
        return false
    end

    -- ----- META --------------------------------------------------------------
    local MAX_META, META_VALUE_MAX = 16, 256

    -- A META name: the metric name rule ([a-z][a-z0-9_]{0,31}, never a
    -- keyword).
    -- Rust twin: check_name (src/engine/meta.rs)
    local function meta_check_name(name)
        if #name > 32 or not sfind(name, "^[a-z][a-z0-9_]*$") or KEYWORDS[name] then
            fail(sformat("ERR syntax: META name '%s' must be [a-z][a-z0-9_]{0,31} and not a keyword", clip(name)))
        end
    end

    -- A META value: 1-256 bytes of UTF-8 without control characters.
    -- Rust twin: check_value (src/engine/meta.rs)
    local function meta_check_value(value)
        if #value > META_VALUE_MAX then
            fail(sformat("ERR limit: a META value is longer than %d bytes", META_VALUE_MAX))
        end
        if value == "" or sfind(value, "[%z\1-\31\127]") or not valid_utf8(value) then
            fail("ERR syntax: META value must be text without control characters")
        end
    end

    -- One pair added to `out` (flat), checked: name, not given twice,
    -- value, at most 16 pairs.
    -- Rust twin: add (src/engine/meta.rs)
    local function meta_add(out, name, value)
        meta_check_name(name)
        for i = 1, #out, 2 do
            if out[i] == name then
                fail(sformat("ERR syntax: META name '%s' given twice", name))
            end
        end
        meta_check_value(value)
        if #out >= 2 * MAX_META then
            fail(sformat("ERR limit: at most %d META pairs", MAX_META))
        end
        out[#out + 1] = name
        out[#out + 1] = value
    end

    -- `META name value [name value ...]` after the META keyword: pairs while
    -- the next word is not a keyword of the request (`words`); a name's
    -- value is the word after it, whatever it is. The pairs flat, in order.
    -- Rust twin: parse_meta (src/module/commands/reserve.rs)
    local function meta_parse(args, words)
        local out = {}
        while not args:is_done() and not keyword(args:peek(), words) do
            local name = args:next_str("a META name")
            meta_check_name(name)
            -- The word after a name is its value, whatever it is (a keyword
            -- of the request too); a name at the end has none.
            local value = args:peek()
            if value == nil then
                fail("ERR syntax: META needs name value pairs")
            end
            args.pos = args.pos + 1
            meta_add(out, name, value)
        end
        if #out == 0 then
            fail("ERR syntax: META needs name value pairs")
        end
        return out
    end

    -- Stored pairs (flat) as the library writes them: each as meta_add
    -- takes it, at least one; false otherwise.
    -- Rust twin: validate (src/engine/meta.rs)
    local function meta_check_stored(flat)
        if type(flat) ~= "table" or #flat == 0 or #flat % 2 ~= 0 then
            return false
        end
        local ok = pcall(function()
            local seen = {}
            for i = 1, #flat, 2 do
                if type(flat[i]) ~= "string" or type(flat[i + 1]) ~= "string" then
                    fail("")
                end
                meta_add(seen, flat[i], flat[i + 1])
            end
        end)
        failure = nil
        return ok
    end

    -- META pairs as replies and events show them: a map in their order.
    local function meta_reply(flat)
        local f = M()
        for i = 1, #flat do
            f[i] = flat[i]
        end
        return f
    end

    REC.label_check_tag, REC.label_parse_tags, REC.label_parse_note = label_check_tag, label_parse_tags,
        label_parse_note
    REC.load_labels, REC.label_set, REC.archive_set, REC.archive_judge = label_check_stored, label_set, archive_set,
        archive_judge
    REC.label_fields, REC.meta_parse, REC.meta_reply = label_fields, meta_parse, meta_reply
    REC.meta_check_name, REC.meta_check_value, REC.meta_add = meta_check_name, meta_check_value, meta_add
    REC.meta_check_stored = meta_check_stored
    REC.label_tree_filter, REC.has_tag = label_tree_filter, has_tag
end
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
-- ---------------------------------------------------------------------------
-- Holds: reserve → commit | release | expire, and charges (src/engine/hold.rs).
-- Item indices are 0-based in commands and replies, 1-based here.
-- ---------------------------------------------------------------------------

local HOLDS = {}

local function get_hold(ctx, id)
    local h = ctx.holds[id]
    if h == nil then
        local blob = ctx.exists and redis.call("HGET", ctx.hkey, id)
        h = blob and hold_of_table(munpack(blob), ctx.key) or false
        ctx.holds[id] = h
    end
    return h or nil
end

local function get_done(ctx, id)
    local e = ctx.done[id]
    if e == nil then
        local blob = ctx.exists and redis.call("HGET", ctx.tkey, id)
        e = blob and unpack_done(blob, ctx.key) or false
        ctx.done[id] = e
    end
    return e or nil
end

-- Rust twin: Tree::remember (src/engine/hold.rs)
local function remember(ctx, entry)
    ctx.done[entry.id] = entry
    ctx.done_dirty[entry.id] = true
    ctx.forgotten[entry.id] = nil
end

-- Rust twin: Hold::cost_of (src/engine/hold.rs)
local function cost_of(hold, indices)
    local list = {}
    for _, i in ipairs(indices) do
        list[#list + 1] = hold.items[i].cost
    end
    return sum_costs(list)
end

local function indices_in(hold, wanted)
    local out = {}
    for i, item in ipairs(hold.items) do
        if wanted[item.state] then
            out[#out + 1] = i
        end
    end
    return out
end

local HELD = { held = true }
local OPEN = { held = true, expired = true }

-- Subtracts what `indices` of a live hold hold from its policies.
-- Rust twin: Tree::release_lines (src/engine/hold.rs)
local function release_lines(ctx, hold, indices)
    local paths = {}
    for _, line in ipairs(hold.lines) do
        paths[#paths + 1] = line.path
    end
    load_nodes(ctx, paths)
    -- What the items hold per metric, summed once: a line reads its metric
    -- there instead of in every item.
    local released = cost_of(hold, indices)
    local at = costs_index(released, #hold.lines)
    for _, line in ipairs(hold.lines) do
        local node = ctx.nodes[line.path]
        if node then
            for _, p in ipairs(node.pols) do
                if p.gen == line.gen then
                    local amount = costs_get_at(released, at, p.metric)
                    p.held = D.max(D.sub(p.held, amount), D.ZERO)
                    touch(ctx, line.path)
                    break
                end
            end
        end
    end
end

-- Moves a live hold to the finished ids.
-- Rust twin: Tree::finish (src/engine/hold.rs)
local function finish(ctx, id, now)
    local hold = get_hold(ctx, id)
    if not hold then
        return
    end
    ctx.holds[id] = false
    ctx.hold_deleted[id] = true
    ctx.hold_dirty[id] = nil
    ctx.hold_count = ctx.hold_count - 1
    load_nodes(ctx, hold.paths)
    for _, path in ipairs(hold.paths) do
        local node = ctx.nodes[path]
        if node then
            node.live = math.max(node.live - 1, 0)
            touch(ctx, path)
        end
    end
    hold.lines = {}
    -- A hold settled item by item is only asked about again by repeats,
    -- answered from its outcomes; an expired one keeps its paths and costs
    -- for a late commit, and its META for that commit's ledger entry.
    local any_expired = false
    for _, item in ipairs(hold.items) do
        if item.state == "expired" then
            any_expired = true
        end
    end
    if not any_expired then
        hold.meta = nil
        hold.paths, hold.service, hold.model = {}, nil, nil
        -- A partly reserved batch keeps its costs for a repeat's `held`.
        if not (hold.reply and hold.reply.reserved < hold.reply.items) then
            for _, item in ipairs(hold.items) do
                item.cost = {}
            end
        end
    end
    remember(ctx, { id = id, forget_at = now + ctx.limits.tombstone_ttl, hold = hold })
end

-- Rust twin: Tree::finish_if_settled (src/engine/hold.rs)
local function finish_if_settled(ctx, id)
    local hold = get_hold(ctx, id)
    if hold and #indices_in(hold, HELD) == 0 then
        finish(ctx, id, ctx.now)
    end
end

-- The finished ids whose memory ran out (the first `budget` of them, when
-- given), and what "#" then says of the next to forget.
function HOLDS.forget_due(ctx, budget)
    local meta = ctx.meta
    if meta.due_f and meta.due_f > ctx.now then
        return {}
    elseif budget and budget <= 0 then
        -- A bounded call (quota_sweep) spends what the holds left on ids.
        return {}
    end
    local forget
    if budget then
        forget = redis.call("ZRANGEBYSCORE", ctx.fkey, "-inf", ctx.now, "LIMIT", 0, budget)
    else
        forget = redis.call("ZRANGEBYSCORE", ctx.fkey, "-inf", ctx.now)
    end
    -- Nothing is left to forget until after now once these are; when
    -- nothing was, the next write learns when something is.
    if #forget == 0 then
        ctx.probe_forget = true
    elseif not budget then
        meta.due_f = ctx.now + 1
    end
    return forget
end

-- Releases every hold due (the first `limit` of them, when given) and
-- forgets finished ids whose memory ran out. Returns how many it released.
-- Rust twin: Tree::expire and Tree::expire_some (src/engine/hold.rs)
local function expire(ctx, limit)
    if not ctx.exists then
        return 0
    end
    -- What "#" says is due spares asking when nothing is (read_meta).
    local meta, due = ctx.meta, nil
    if meta.due_e and meta.due_e > ctx.now then
        due = {}
    elseif limit then
        due = redis.call("ZRANGEBYSCORE", ctx.ekey, "-inf", ctx.now, "WITHSCORES", "LIMIT", 0, limit)
    else
        due = redis.call("ZRANGEBYSCORE", ctx.ekey, "-inf", ctx.now, "WITHSCORES")
    end
    for k = 1, #due, 2 do
        local id, at = due[k], tonumber(due[k + 1])
        local hold = get_hold(ctx, id)
        if hold then
            local held = indices_in(hold, HELD)
            release_lines(ctx, hold, held)
            for _, i in ipairs(held) do
                hold.items[i].state = "expired"
            end
            local amounts = costs_pack(cost_of(hold, held))
            emit(ctx, { seq = 0, type = "expired", time = at, path = hold.paths[1] or "", id = id,
                amounts = amounts, meta = hold.meta })
            if ctx.ledger then
                local e = REC.ledger_entry("expire", at, id, hold, amounts)
                e.meta = hold.meta
                REC.ledger_add(ctx, e)
            end
            finish(ctx, id, at)
        else
            ctx.hold_deleted[id] = true
        end
    end
    local forget = HOLDS.forget_due(ctx, limit and limit - #due / 2)
    for _, id in ipairs(forget) do
        ctx.forgotten[id] = true
        ctx.done[id] = false
        ctx.done_dirty[id] = nil
    end
    -- A hold that expired long ago is remembered from its expiry, so its
    -- memory may have run out already (as the module forgets it in the same
    -- pass).
    for k = 1, #due, 2 do
        local id = due[k]
        local entry = ctx.done_dirty[id] and ctx.done[id]
        if entry and entry.forget_at <= ctx.now then
            ctx.forgotten[id] = true
            ctx.done[id] = false
            ctx.done_dirty[id] = nil
        end
    end
    return #due / 2, #forget
end

-- Rust twin: Tree::check_item (src/engine/hold.rs)
function HOLDS.check_item(hold, i)
    if i >= #hold.items then
        fail(sformat("NOTFOUND no such item %d in reservation '%s': it holds items 0 to %d", i, hold.id,
            #hold.items - 1))
    end
end

-- A live hold (true) or a remembered one (false).
-- Rust twin: Tree::lookup (src/engine/hold.rs)
function HOLDS.lookup(ctx, id)
    local hold = get_hold(ctx, id)
    if hold then
        return hold, true
    end
    local entry = get_done(ctx, id)
    if entry and entry.hold then
        return entry.hold, false
    elseif entry then
        fail(sformat("ERR '%s' names a charge, not a reservation", id))
    end
    fail(sformat("NOTFOUND no such reservation '%s'", clip(id)))
end

function HOLDS.save_hold(ctx, hold, live)
    if live then
        ctx.hold_dirty[hold.id] = true
    else
        local entry = get_done(ctx, hold.id)
        entry.hold = hold
        remember(ctx, entry)
    end
end

function HOLDS.copy_outcome(o, changes)
    local c = {}
    for k, v in pairs(o) do
        c[k] = v
    end
    for k, v in pairs(changes) do
        c[k] = v
    end
    return c
end

-- Rust twin: Tree::generate_id (src/engine/hold.rs)
function HOLDS.generate_id(ctx)
    while true do
        ctx.meta.seq = ctx.meta.seq + 1
        ctx.meta_dirty = true
        local id = sformat("%x-%x", ctx.now, ctx.meta.seq)
        if not get_hold(ctx, id) and not get_done(ctx, id) then
            return id
        end
    end
end

-- What a refusing policy has left (Tree's `available` in hold.rs): the
-- remaining allowance of a strict policy (never below zero), nothing for a
-- block policy. Of the policies that refuse, the least available binds.
-- Rust twin: available (src/engine/hold.rs)
function HOLDS.available(p)
    if p.mode == "block" then
        return D.ZERO
    end
    return D.max(remaining(p), D.ZERO)
end

-- The column of a metric no item takes (never changed).
HOLDS.NO_COLUMN = { at = {}, total = {} }

-- For each metric, the items that take some of it with the running total
-- of what they take: a policy finds where its room runs out by binary
-- search. A column is { at = item indexes, total = running totals }.
-- Rust twin: columns_of (src/engine/hold.rs)
function HOLDS.columns_of(items)
    local columns = {}
    for i = 1, #items do
        local item = items[i]
        for k = 1, #item do
            local amount = item[k][2]
            if D.cmp(amount, D.ZERO) > 0 then
                local col = columns[item[k][1]]
                if not col then
                    col = { at = {}, total = {} }
                    columns[item[k][1]] = col
                end
                local m = #col.at
                col.at[m + 1] = i
                col.total[m + 1] = m > 0 and plus(col.total[m], amount) or amount
            end
        end
    end
    return columns
end

-- How many of the n leading items policy p admits: the items before the
-- first that takes some of its metric (block at its limit), or before the
-- first whose running total exceeds the room (strict). col is p's metric
-- in HOLDS.columns_of.
-- Rust twin: fits_in_column (src/engine/hold.rs)
function HOLDS.fits_in_column(p, n, col)
    local fits = n
    if p.mode == "block" then
        if D.cmp(p.used, allowance(p)) >= 0 and col.at[1] then
            fits = col.at[1] - 1
        end
    elseif p.mode ~= "open" and #col.at == 1 then
        -- One item takes the metric: it fits unless used + held + it
        -- passes the allowance (judged without making values).
        if compare(p.used, p.held, col.total[1], 1, p.allow, 1) > 0 then
            fits = col.at[1] - 1
        end
    elseif p.mode ~= "open" then
        local room = remaining(p)
        local lo, hi = 1, #col.at + 1
        while lo < hi do
            local mid = math.floor((lo + hi) / 2)
            if D.cmp(col.total[mid], room) <= 0 then
                lo = mid + 1
            else
                hi = mid
            end
        end
        if col.at[lo] then
            fits = col.at[lo] - 1
        end
    end
    return fits
end

-- The policy that admits the fewest leading items, when one admits fewer
-- than all; among equals the least available (root first when that ties).
-- Rust twin: Tree::binding (src/engine/hold.rs)
function HOLDS.binding_of(ctx, r, items)
    local best = nil
    local n = #items
    local columns = HOLDS.columns_of(items)
    local none = HOLDS.NO_COLUMN
    for _, ref in ipairs(r.pols) do
        local p = policy_now(ctx, ref)
        local fits = HOLDS.fits_in_column(p, n, columns[p.metric] or none)
        if fits < n then
            local left = HOLDS.available(p)
            if best == nil or fits < best.fits or (fits == best.fits and D.cmp(left, best.available) < 0) then
                best = { ref = ref, fits = fits, available = left }
            end
        end
    end
    return best
end

-- One sentence naming the policy that refuses and by how much.
-- Rust twin: Tree::shortfall (src/engine/hold.rs)
function HOLDS.shortfall(ctx, ref, total, fits, n)
    local p = policy_now(ctx, ref)
    local path = display_path(ref.path)
    local lead
    if fits then
        lead = sformat("enough %s for %d of %d items", p.metric, fits, n)
    else
        lead = "not enough " .. p.metric
    end
    if p.mode == "block" then
        return sformat("%s: the limit at %s is reached (%s of %s used)", lead, path, D.fmt(p.used),
            D.fmt(allowance(p)))
    elseif p.inflight then
        return sformat("%s: %s of %s in flight at %s, %s needed", lead, D.fmt(p.held), D.fmt(allowance(p)), path,
            D.fmt(costs_get(total, p.metric)))
    end
    return sformat("%s: %s available at %s, %s needed", lead, D.fmt(D.max(remaining(p), D.ZERO)), path,
        D.fmt(costs_get(total, p.metric)))
end

-- Rust twin: Tree::reserve_message (src/engine/hold.rs)
function HOLDS.reserve_message(ctx, req, binding, reserved, total)
    local n = #req.items
    if not binding then
        if req.batch == "DRYRUN" then
            if n == 1 then
                return "fits: " .. describe(total)
            end
            return sformat("all %d items fit: %s", n, describe(total))
        end
        if n == 1 then
            return "reserved " .. describe(total)
        end
        return sformat("reserved all %d items: %s", n, describe(total))
    end
    local message
    if n == 1 then
        message = HOLDS.shortfall(ctx, binding.ref, total)
    else
        message = HOLDS.shortfall(ctx, binding.ref, total, binding.fits, n)
    end
    if reserved > 0 then
        message = message .. sformat("; reserved the first %d", reserved)
    end
    return message
end

-- Rust twin: Tree::repeated_reserve (src/engine/hold.rs)
function HOLDS.repeated_reserve(ctx, id)
    local hold = get_hold(ctx, id)
    if not hold then
        local entry = get_done(ctx, id)
        if not entry then
            return nil
        end
        hold = entry.hold
    end
    if hold and hold.reply then
        -- `held` is not stored (like the module's remembered answers): the
        -- hold's items are the reserved ones (a settled partial batch keeps
        -- their costs for this).
        local first, held = hold.reply, {}
        if first.reserved == first.items then
            held = first.cost
        elseif first.reserved > 0 then
            local costs = {}
            for i, item in ipairs(hold.items) do
                costs[i] = item.cost
            end
            held = costs_pack(sum_costs(costs))
        end
        return HOLDS.copy_outcome(first, { duplicate = true, held = held })
    end
    fail(sformat("ERR id '%s' is already used by another reservation or charge", id))
end

function HOLDS.labels_failing(checks)
    local out = {}
    for _, c in ipairs(checks) do
        if not c.pass then
            out[#out + 1] = check_label(c)
        end
    end
    return out
end

-- QUOTA.RESERVE: decides (bounds, a repeated id, what fits, the answer,
-- whether the hold can be kept), then places the hold.
-- req = {set, id, ttl, batch, items, brief}
-- Rust twin: Tree::reserve (src/engine/hold.rs)
function HOLDS.reserve(ctx, req)
    local n = #req.items
    if n > ctx.limits.max_items then
        fail(sformat("ERR limit: at most %d items per reservation (max_items)", ctx.limits.max_items))
    end
    if req.id then
        local first = HOLDS.repeated_reserve(ctx, req.id)
        if first then
            return first
        end
    end
    -- A tree that follows a plan syncs the nodes on the way and judges
    -- new paths against the plan's policies (removed when nothing is held).
    local made = ctx.pl and PLAN.prepare(ctx, req.set)
    -- (The plan is passed as values, not a table: cheaper.)
    local total, r, binding, fits, reserved, allowed, refusals, why = HOLDS.plan_reserve(ctx, req)
    if refusals then
        PLAN.unmake(ctx, made)
        return HOLDS.access_denial(req, total, refusals, why)
    end
    local outcome, held = HOLDS.reserve_outcome(ctx, req, total, r, binding, fits, reserved, allowed)
    if reserved == 0 then
        PLAN.unmake(ctx, made)
        return outcome
    end
    local held_at = HOLDS.check_hold(ctx, req, r, held)

    -- After this point the reservation succeeds.
    return HOLDS.place_hold(ctx, req, r, reserved, held, held_at, outcome)
end

-- The answer to a reservation that access rules refuse: nothing fits,
-- nothing is held, and the checks are the access checks only (amounts are
-- not judged). BRIEF keeps them: they explain a denial.
-- Rust twin: access_denial (src/engine/hold.rs)
function HOLDS.access_denial(req, total, refusals, why)
    return { allowed = false, id = false, expires = 0, items = #req.items, fits = 0, reserved = 0,
        cost = costs_pack(total), held = {}, checks = refusals, denied = ACCESS.labels(refusals), message = why,
        duplicate = false }
end

-- What a reservation reaches and how many of its items fit: its total, its
-- reach, the binding policy, how many fit, how many it reserves, whether it
-- is allowed.
-- Rust twin: Tree::plan_reserve (src/engine/hold.rs)
function HOLDS.plan_reserve(ctx, req)
    local n = #req.items
    local total, index = {}, {}
    for _, item in ipairs(req.items) do
        for i = 1, #item do
            local metric = item[i][1]
            costs_set_at(total, index, metric, D.add(costs_get_at(total, index, metric), item[i][2]))
            if #total > MAX_REQUEST_METRICS then
                fail(sformat("ERR limit: at most %d distinct metrics per request", MAX_REQUEST_METRICS))
            end
        end
    end
    local r = reach(ctx, req.set, metrics_of(total))
    -- An archived node in the reach refuses first, then access rules (each
    -- only on a tree that has had one).
    if ctx.meta.rec then
        local refusals, why = REC.archive_judge(ctx, r.nodes)
        if refusals then
            return total, r, nil, 0, 0, false, refusals, why
        end
    end
    if ctx.meta.access then
        local refusals, why = ACCESS.judge(ctx, r.nodes, req.set)
        if refusals then
            return total, r, nil, 0, 0, false, refusals, why
        end
    end
    local binding = HOLDS.binding_of(ctx, r, req.items)
    local fits = binding and binding.fits or n
    local reserved, allowed
    if req.batch == "UPTO" then
        reserved, allowed = fits, fits > 0
    else
        reserved = (req.batch == "ALL" and fits == n) and n or 0
        allowed = fits == n
    end
    return total, r, binding, fits, reserved, allowed
end

-- The answer to a planned reservation, before any hold is placed (no id or
-- expiry yet), and what the hold would hold.
-- Rust twin: Tree::reserve_outcome (src/engine/hold.rs)
function HOLDS.reserve_outcome(ctx, req, total, r, binding, fits, reserved, allowed)
    local n = #req.items
    -- An UPTO reservation is checked for what it holds; an allowed BRIEF
    -- answer needs no checks at all (the hot path).
    local checks, denied = {}, {}
    if not (req.brief and allowed) then
        local requested = total
        if req.batch == "UPTO" and reserved > 0 then
            requested = sum_costs({ unpack(req.items, 1, reserved) })
        end
        checks = checks_of(ctx, r, requested)
        denied = HOLDS.labels_failing(checks)
    end
    local held = {}
    if reserved == n then
        held = total
    elseif reserved > 0 then
        held = sum_costs({ unpack(req.items, 1, reserved) })
    end
    return {
        allowed = allowed, id = false, expires = 0, items = n, fits = fits, reserved = reserved,
        cost = costs_pack(total), held = costs_pack(held), checks = checks, denied = denied,
        message = HOLDS.reserve_message(ctx, req, binding, reserved, total), duplicate = false,
    }, held
end

-- Whether the hold can be kept: room for one more, for its new paths, and
-- every policy's held total within bounds. Returns where `held` has each
-- metric (costs_index).
-- Rust twin: Tree::check_hold (src/engine/hold.rs)
function HOLDS.check_hold(ctx, req, r, held)
    if ctx.hold_count >= ctx.limits.max_holds then
        -- The count kept in "#" is asked of the holds hash before refusing
        -- (as before 1.2.0), so a hash changed by hand cannot refuse for
        -- good; this call has placed no hold yet, so the hash is the count.
        ctx.hold_count = redis.call("HLEN", ctx.hkey)
        if ctx.hold_count >= ctx.limits.max_holds then
            fail(sformat("ERR limit: the tree already has %d live holds (max_holds)", ctx.limits.max_holds))
        end
    end
    check_new_paths(ctx, req.set.paths, r.missing)
    local held_at = costs_index(held, #r.pols)
    for _, ref in ipairs(r.pols) do
        local p = policy_of(ctx, ref)
        D.check_add(p.held, costs_get_at(held, held_at, p.metric))
    end
    return held_at
end

-- Places a checked reservation's hold: its amount on each policy it counts
-- on, its paths, the hold and its expiry, the alerts it fires.
-- Rust twin: Tree::place_hold (src/engine/hold.rs)
function HOLDS.place_hold(ctx, req, r, reserved, held, held_at, outcome)
    local n = #req.items
    local id = req.id or HOLDS.generate_id(ctx)
    -- The hold counts on the policies of the metrics its kept items name: a
    -- partial UPTO batch keeps the items that fit, and no line for the
    -- metrics of the others (as the module's loaded trees derive them).
    local pols = r.pols
    if reserved < n then
        local kept = {}
        for _, pair in ipairs(held) do
            kept[pair[1]] = true
        end
        pols = {}
        for _, ref in ipairs(r.pols) do
            if kept[policy_of(ctx, ref).metric] then
                pols[#pols + 1] = ref
            end
        end
    end
    local lines = HOLDS.hold_on(ctx, pols, held, held_at)
    for _, path in ipairs(req.set.paths) do
        local node = ensure_path(ctx, path)
        node.live = node.live + 1
        touch(ctx, path)
    end
    local expires = ctx.now + req.ttl
    outcome.id, outcome.expires = id, expires
    local items = {}
    for i = 1, reserved do
        items[i] = { cost = req.items[i], state = "held" }
    end
    local hold = {
        id = id, paths = req.set.paths, service = req.set.service, model = req.set.model, created = ctx.now,
        expires = expires, items = items, lines = lines, reply = req.id and HOLDS.copy_outcome(outcome, {}) or nil,
        meta = req.meta,
    }
    if req.meta and not ctx.meta.rec then
        ctx.meta.rec, ctx.meta_dirty = true, true
    end
    if hold.reply then
        hold.reply.held = nil
    end
    ctx.holds[id] = hold
    ctx.hold_dirty[id] = true
    ctx.hold_deleted[id] = nil
    ctx.hold_count = ctx.hold_count + 1
    observe(ctx, pols)
    return outcome
end

-- Adds `held` to each of `pols` (after the resets due), and gives the
-- hold's lines on them.
-- Rust twin: Tree::hold_on (src/engine/hold.rs)
function HOLDS.hold_on(ctx, pols, held, held_at)
    local lines = {}
    for _, ref in ipairs(pols) do
        -- Resets due apply first, so the alerts after see this period.
        roll_policy(ctx, ref)
        local p = policy_of(ctx, ref)
        p.held = plus(p.held, costs_get_at(held, held_at, p.metric))
        lines[#lines + 1] = { path = ref.path, gen = p.gen }
    end
    return lines
end

-- QUOTA.COMMIT: charges the actual amount (default: what is reserved) and
-- releases the hold of the settled items.
-- Rust twin: Tree::commit (src/engine/hold.rs)
function HOLDS.commit(ctx, id, item, actual)
    local plan, first = HOLDS.plan_commit(ctx, id, item, actual)
    if not plan then
        return first
    end
    if ctx.pl then
        PLAN.sync_way(ctx, plan.set.paths)
    end
    local r = usage_reach(ctx, plan.set, plan.actual)
    -- A commit is refused only for the paths it would create (a late commit
    -- on a deleted path); its totals are never refused.
    check_new_paths(ctx, plan.set.paths, r.missing)

    -- After this point the commit succeeds.
    return HOLDS.apply_commit(ctx, id, item, plan, r)
end

-- What a commit of `item` (or of every pending item) of `id` settles:
-- plan = {hold, live, set, indices, held, expired, actual}; or nil and the
-- first answer when it repeats one. Changes nothing.
-- Rust twin: Tree::plan_commit (src/engine/hold.rs)
function HOLDS.plan_commit(ctx, id, item, actual)
    local hold, live = HOLDS.lookup(ctx, id)
    local indices, first = HOLDS.commit_indices(hold, id, item)
    if not indices then
        return nil, first
    end
    local held_idx = {}
    for _, i in ipairs(indices) do
        if hold.items[i].state == "held" then
            held_idx[#held_idx + 1] = i
        end
    end
    return { hold = hold, live = live, set = { paths = hold.paths, service = hold.service, model = hold.model },
        indices = indices, held = cost_of(hold, held_idx), expired = #held_idx < #indices,
        actual = actual or cost_of(hold, indices) }
end

-- The items a commit settles (1-based): `item`, or every pending one; or
-- nil and the first answer when the commit repeats one.
-- Rust twin: Tree::commit_indices (src/engine/hold.rs)
function HOLDS.commit_indices(hold, id, item)
    if not item then
        local indices = indices_in(hold, OPEN)
        if #indices > 0 then
            return indices
        end
        if hold.last_commit then
            return nil, HOLDS.copy_outcome(hold.last_commit, { duplicate = true })
        end
        fail(sformat("ERR reservation '%s' was released; nothing to commit", id))
    end
    HOLDS.check_item(hold, item)
    local it = hold.items[item + 1]
    if it.state == "committed" then
        if it.outcome then
            return nil, HOLDS.copy_outcome(it.outcome, { duplicate = true })
        end
        fail(sformat("ERR item %d of reservation '%s' was committed as part of the whole", item, id))
    elseif it.state == "released" then
        fail(sformat("ERR item %d of reservation '%s' was released; nothing to commit", item, id))
    end
    return { item + 1 }
end

-- Carries out a planned commit whose new paths fit: the hold is released,
-- the actual amount charged, and the items marked committed.
-- Rust twin: Tree::apply_commit (src/engine/hold.rs)
function HOLDS.apply_commit(ctx, id, item, plan, r)
    local hold, live, indices = plan.hold, plan.live, plan.indices
    if live then
        release_lines(ctx, hold, indices)
    end
    ctx.draws = {}
    local over = apply_usage(ctx, r, plan.set, plan.actual)
    local released, overage = HOLDS.settle_amounts(plan.held, plan.actual)
    local outcome = { id = id, charged = costs_pack(plan.actual), released = costs_pack(released),
        overage = costs_pack(overage), duplicate = false, expired = plan.expired, over = over,
        drawn = #ctx.draws > 0 and ctx.draws or nil }
    for _, i in ipairs(indices) do
        hold.items[i].state = "committed"
    end
    if ctx.ledger then
        -- (The META of a live hold, or the one an expired hold's finished
        -- id keeps for a late commit.)
        local e = REC.ledger_entry("commit", ctx.now, id, plan.set, outcome.charged)
        e.item, e.late, e.meta = item, plan.expired, hold.meta
        REC.ledger_add(ctx, e)
    end
    if item then
        hold.items[indices[1]].outcome = outcome
    end
    hold.last_commit = outcome
    HOLDS.save_hold(ctx, hold, live)
    if live then
        finish_if_settled(ctx, id)
    end
    return outcome
end

-- The actual amount uses up the live hold: what is left of it is released,
-- what goes beyond it (all that expired items charge) is overage. Returns
-- (released, overage).
-- Rust twin: settle_amounts (src/engine/hold.rs)
function HOLDS.settle_amounts(held, actual)
    local released = {}
    local actual_at, held_at = costs_index(actual, #held), costs_index(held, #actual)
    for _, pair in ipairs(held) do
        local m, amount = pair[1], pair[2]
        released[#released + 1] = { m, D.max(D.sub(amount, costs_get_at(actual, actual_at, m)), D.ZERO) }
    end
    local overage = {}
    for _, pair in ipairs(actual) do
        local extra = D.sub(pair[2], costs_get_at(held, held_at, pair[1]))
        if D.cmp(extra, D.ZERO) > 0 then
            overage[#overage + 1] = { pair[1], extra }
        end
    end
    return released, overage
end

-- QUOTA.RELEASE: gives back the hold of the items without charging.
-- Rust twin: Tree::release (src/engine/hold.rs)
function HOLDS.release(ctx, id, item)
    local hold, live = HOLDS.lookup(ctx, id)
    local function again()
        if hold.last_release then
            return HOLDS.copy_outcome(hold.last_release, { duplicate = true })
        end
        return { id = id, released = {}, duplicate = true, expired = false }
    end
    local indices
    if item then
        HOLDS.check_item(hold, item)
        local state = hold.items[item + 1].state
        if state == "released" then
            return again()
        elseif state == "committed" then
            fail(sformat("ERR item %d of reservation '%s' was committed; nothing to release", item, id))
        end
        indices = { item + 1 }
    else
        indices = indices_in(hold, OPEN)
        if #indices == 0 then
            if #indices_in(hold, { committed = true }) == #hold.items then
                fail(sformat("ERR reservation '%s' was committed; nothing to release", id))
            end
            return again()
        end
    end
    local held = {}
    for _, i in ipairs(indices) do
        if hold.items[i].state == "held" then
            held[#held + 1] = i
        end
    end
    local released = cost_of(hold, held)

    -- After this point the release succeeds.
    if live then
        release_lines(ctx, hold, held)
    end
    local outcome = { id = id, released = costs_pack(released), duplicate = false, expired = #held < #indices }
    if ctx.ledger and #held > 0 then
        -- (Only a release that gives something back.)
        local e = REC.ledger_entry("release", ctx.now, id, hold, outcome.released)
        e.item, e.meta = item, hold.meta
        REC.ledger_add(ctx, e)
    end
    for _, i in ipairs(indices) do
        hold.items[i].state = "released"
    end
    hold.last_release = outcome
    HOLDS.save_hold(ctx, hold, live)
    if live then
        finish_if_settled(ctx, id)
    end
    return outcome
end

-- QUOTA.EXTEND: the hold now expires `ttl` from now.
-- Rust twin: Tree::extend (src/engine/hold.rs)
function HOLDS.extend(ctx, id, ttl)
    local hold, live = HOLDS.lookup(ctx, id)
    if not live then
        fail(sformat("ERR reservation '%s' is no longer held (committed, released or expired)", id))
    end
    hold.expires = ctx.now + ttl
    ctx.hold_dirty[id] = true
    ctx.holds_moved = true
    return { id = id, expires = hold.expires }
end

-- QUOTA.CHARGE: records usage that already happened, without a hold.
-- req = {set, id, check, cost, brief}
-- Rust twin: Tree::charge (src/engine/hold.rs)
function HOLDS.charge(ctx, req)
    if req.id then
        if get_hold(ctx, req.id) then
            fail(sformat("ERR id '%s' is already used by a reservation", req.id))
        end
        local entry = get_done(ctx, req.id)
        if entry and entry.charge then
            return HOLDS.copy_outcome(entry.charge, { duplicate = true })
        elseif entry then
            fail(sformat("ERR id '%s' is already used by a reservation", req.id))
        end
    end
    local made = ctx.pl and PLAN.prepare(ctx, req.set)
    local r = reach(ctx, req.set, metrics_of(req.cost), true)
    -- An archived node in the reach refuses the charge, CHECK or not.
    if ctx.meta.rec then
        local refusals, why = REC.archive_judge(ctx, r.nodes)
        if refusals then
            PLAN.unmake(ctx, made)
            return { allowed = false, charged = {}, checks = refusals, denied = ACCESS.labels(refusals), message = why,
                over = {}, duplicate = false }
        end
    end
    -- Access is judged first: a CHARGE CHECK it refuses records nothing; a
    -- CHARGE records all the same and says so (checks, denied_by, message,
    -- `disallowed` events).
    local refusals, why, refusing = nil, nil, nil
    if ctx.meta.access then
        refusals, why, refusing = ACCESS.judge(ctx, r.nodes, req.set)
        if refusals and req.check then
            PLAN.unmake(ctx, made)
            return { allowed = false, charged = {}, checks = refusals, denied = ACCESS.labels(refusals), message = why,
                over = {}, duplicate = false }
        end
    end
    local failing = {}
    -- The binding refusal: the least available (root first on ties).
    local refused, least = nil, nil
    local cost_at = costs_index(req.cost, #r.pols)
    for _, ref in ipairs(r.pols) do
        local p = policy_now(ctx, ref)
        if not passes(p, costs_get_at(req.cost, cost_at, p.metric)) then
            failing[#failing + 1] = ref
            local left = HOLDS.available(p)
            if refused == nil or D.cmp(left, least) < 0 then
                refused, least = ref, left
            end
        end
    end
    local checks = {}
    if not (req.brief and (refused == nil or not req.check)) then
        checks = checks_of(ctx, r, req.cost)
    end
    local denied = {}
    for _, ref in ipairs(failing) do
        denied[#denied + 1] = display_path(ref.path) .. "#" .. policy_of(ctx, ref).name
    end
    if req.check and refused then
        local message = HOLDS.shortfall(ctx, refused, req.cost)
        PLAN.unmake(ctx, made)
        return { allowed = false, charged = {}, checks = checks, denied = denied, message = message, over = {},
            duplicate = false }
    end
    check_usage(ctx, r, req.set, req.cost)

    -- After this point the charge succeeds.
    local message = "charged " .. describe(req.cost)
    if refusals then
        -- Recorded all the same: access checks first (none under BRIEF),
        -- then the policies'; access labels first; the first refusal's
        -- sentence after what was charged; the events before the alerts.
        ACCESS.disallowed_events(ctx, refusals, refusing, req.id, req.cost, req.meta)
        local all = {}
        if not req.brief then
            for _, c in ipairs(refusals) do
                all[#all + 1] = c
            end
        end
        for _, c in ipairs(checks) do
            all[#all + 1] = c
        end
        local labels = ACCESS.labels(refusals)
        for _, l in ipairs(denied) do
            labels[#labels + 1] = l
        end
        checks, denied, message = all, labels, message .. "; " .. why
    end
    ctx.draws = {}
    local over = apply_usage(ctx, r, req.set, req.cost)
    local outcome = { allowed = true, charged = costs_pack(req.cost), checks = checks, denied = denied,
        message = message, over = over, duplicate = false, drawn = #ctx.draws > 0 and ctx.draws or nil }
    if ctx.ledger then
        local e = REC.ledger_entry("charge", ctx.now, req.id, req.set, outcome.charged)
        e.disallowed, e.meta = refusals ~= nil, req.meta
        REC.ledger_add(ctx, e)
    end
    if req.id then
        remember(ctx, { id = req.id, forget_at = ctx.now + ctx.limits.tombstone_ttl, charge = outcome })
    end
    return outcome
end

-- Every live hold of the tree (for QUOTA.SET and QUOTA.UNSET, which count
-- holds again), marked to be written back.
function HOLDS.live_all(ctx)
    local out = {}
    local ids = ctx.exists and redis.call("HKEYS", ctx.hkey) or {}
    for _, id in ipairs(ids) do
        local hold = get_hold(ctx, id)
        if hold then
            out[#out + 1] = hold
        end
    end
    return out
end

-- The live holds that may reach `path` (not the root), as live_all lists
-- them: a hold whose charge set reaches it names the path's bytes, so a
-- stored hold whose record does not contain them is not decoded. (A plan's
-- sync of a node counts the holds that reach it: one HGETALL and a byte
-- search per hold, not one HGET and a decode.)
function HOLDS.live_naming(ctx, path)
    local out = {}
    local flat = ctx.exists and redis.call("HGETALL", ctx.hkey) or {}
    for i = 1, #flat, 2 do
        local id, blob = flat[i], flat[i + 1]
        local h = ctx.holds[id]
        if h == nil and string.find(blob, path, 1, true) then
            h = hold_of_table(munpack(blob), ctx.key)
            ctx.holds[id] = h
        end
        if h then
            out[#out + 1] = h
        end
    end
    return out
end

-- QUOTA.HOLDS: live holds naming `path` or a path below it, soonest first.
-- Rust twin: Tree::holds_view and Tree::holds_view_at (src/engine/hold.rs)
function HOLDS.holds_view(ctx, path, count)
    local out = {}
    if not ctx.exists then
        return out
    end
    local start = 0
    while #out < count do
        local ids = redis.call("ZRANGE", ctx.ekey, start, start + 199)
        if #ids == 0 then
            break
        end
        start = start + #ids
        for _, id in ipairs(ids) do
            local hold = get_hold(ctx, id)
            if hold and #out < count then
                local within = false
                for _, p in ipairs(hold.paths) do
                    if is_within(p, path) then
                        within = true
                    end
                end
                if within then
                    local paths = {}
                    for i, p in ipairs(hold.paths) do
                        paths[i] = display_path(p)
                    end
                    local f = M("id", id, "paths", paths, "expires_at", hold.expires, "items", #hold.items,
                        "held", costs_reply(costs_pack(cost_of(hold, indices_in(hold, HELD)))))
                    if hold.meta then
                        f[#f + 1] = "meta"
                        f[#f + 1] = REC.meta_reply(hold.meta)
                    end
                    out[#out + 1] = f
                end
            end
        end
    end
    return out
end
-- ---------------------------------------------------------------------------
-- Shaping and reading the tree: policies, paths, views. Ports
-- src/engine/tree.rs (set, unset, grant, reset, history), held.rs (how
-- policies count live holds), paths.rs (subtrees, deleting paths) and
-- view.rs (QUOTA.GET, QUOTA.TREE); each function names its Rust twin.
-- ---------------------------------------------------------------------------

local OPS = {}

function OPS.not_found_path(path)
    fail(sformat("NOTFOUND no such path '%s'", display_path(path)))
end

-- Rust twin: Tree::policy_ref (src/engine/tree.rs).
function OPS.policy_ref(ctx, path, name)
    local node = find(ctx, path)
    if not node then
        OPS.not_found_path(path)
    end
    for i, p in ipairs(node.pols) do
        if p.name == name then
            return { path = path, i = i }
        end
    end
    fail(sformat("NOTFOUND no such policy '%s' at '%s'", name, display_path(path)))
end

-- Rust twin: Tree::holds_may_reach (src/engine/held.rs).
-- Whether a live hold may reach `path`: cheap, so that the common QUOTA.SET on
-- a new or leaf path with no holds skips the pass over the tree's holds
-- (Tree::holds_may_reach).
local function holds_may_reach(ctx, path)
    local node = find(ctx, path)
    if not node or ctx.hold_count == 0 then
        return false
    end
    if node.live > 0 then
        return true
    end
    local _, kids = children_of(ctx, path, 0, 1)
    return kids > 0
end

-- The live holds that may reach `path`, in HOLDS.live_all's order: those
-- whose record names it (HOLDS.live_naming; all of them for the root), or,
-- for a read of many nodes (ctx.reach set true by OPS.tree_view), those
-- whose charge set names it or a path below it, from an index built at the
-- first call, so that a read of many stale nodes does not pass over every
-- hold per node.
-- Rust twin: Tree::holds_by_path (src/engine/held.rs).
function OPS.holds_reaching(ctx, path)
    local reach = ctx.reach
    if not reach then
        return path == "" and HOLDS.live_all(ctx) or HOLDS.live_naming(ctx, path)
    end
    if reach == true then
        reach = {}
        for _, hold in ipairs(HOLDS.live_all(ctx)) do
            for _, p in ipairs(hold.paths) do
                for _, prefix in ipairs(prefixes(p)) do
                    local list = reach[prefix]
                    if not list then
                        list = {}
                        reach[prefix] = list
                    end
                    if list[#list] ~= hold then
                        list[#list + 1] = hold
                    end
                end
            end
        end
        ctx.reach = reach
    end
    return reach[path] or {}
end

-- Rust twin: Tree::holds_matching (src/engine/held.rs).
-- The live holds a policy configured as `spec` at `path` counts: those whose
-- charge set reaches the path, whose service and model its filter matches,
-- and that hold its metric; and their total held (Tree::holds_matching).
local function holds_matching(ctx, path, spec, saturate)
    local out, held = {}, D.ZERO
    for _, hold in ipairs(OPS.holds_reaching(ctx, path)) do
        local reaches = false
        for _, p in ipairs(hold.paths) do
            if is_within(p, path) then
                reaches = true
            end
        end
        local names_metric = false
        for _, item in ipairs(hold.items) do
            for i = 1, #item.cost do
                if item.cost[i][1] == spec.metric then
                    names_metric = true
                end
            end
        end
        if reaches and names_metric and matches(spec, hold.service, hold.model) then
            local amount = D.ZERO
            for _, item in ipairs(hold.items) do
                if item.state == "held" then
                    amount = plus(amount, costs_get(item.cost, spec.metric))
                end
            end
            held = saturate and D.add_saturating(held, amount) or D.add(held, amount)
            out[#out + 1] = hold
        end
    end
    return out, held
end

-- Rust twin: Tree::recount (src/engine/held.rs), Tree::unset_policy (src/engine/tree.rs).
-- Takes from each of `holds` its lines for the policy at `path` of
-- generation `gen` (or `old`, when given), marking the holds it changes
-- (the `lines.retain` of Tree::recount and Tree::unset_policy). A field of OPS,
-- not a local: build() is near Lua's 200 locals (tests/lua_locals.py).
function OPS.drop_lines(ctx, holds, path, gen, old)
    for _, hold in ipairs(holds) do
        local kept = {}
        for _, line in ipairs(hold.lines) do
            if line.path ~= path or (line.gen ~= gen and line.gen ~= old) then
                kept[#kept + 1] = line
            end
        end
        if #kept ~= #hold.lines then
            hold.lines = kept
            ctx.hold_dirty[hold.id] = true
        end
    end
end

-- Rust twin: Tree::recount (src/engine/held.rs).
-- Makes the policy `p` at `path` count exactly the holds `counted`: their
-- lines name its generation, no other hold's line names it or the
-- generation it had before (`old`) (Tree::recount).
local function recount(ctx, path, p, old, counted, held)
    p.held = held
    OPS.drop_lines(ctx, OPS.holds_reaching(ctx, path), path, p.gen, old)
    for _, hold in ipairs(counted) do
        hold.lines[#hold.lines + 1] = { path = path, gen = p.gen }
        ctx.hold_dirty[hold.id] = true
    end
end

-- The live holds a policy of `spec` replacing the one at `index` of the
-- node (nil: a new one) counts from now on, when its metric or filter
-- changes (a new one always); nil when it keeps the holds it has. A count
-- beyond 10^18 fails, or stops there with `saturate` (a plan's sync).
function OPS.holds_for(ctx, path, node, index, spec, saturate)
    if index then
        local p = node.pols[index]
        if p.metric == spec.metric and p.service == spec.service and p.model == spec.model
            and p.inflight == spec.inflight then
            return nil
        end
    end
    if holds_may_reach(ctx, path) then
        return holds_matching(ctx, path, spec, saturate)
    end
    return nil
end

-- QUOTA.SET's change, checked: the policy at `index` of the node at `path`
-- updated to `spec` (usage kept; a new metric starts over), or `name`
-- created (appended, fresh generation); it then counts `counted`. Returns
-- its ref. quiet: a plan's sync, whose resets due apply without events.
function OPS.put_policy(ctx, path, node, index, name, spec, counted, held, quiet)
    local generation = next_generation(ctx)
    if spec.inflight and not ctx.meta.access then
        -- (Layout 5 from now on: see pack_meta.)
        ctx.meta.access = true
    end
    if not ctx.meta.cycles and W.newer_form(spec.wenc) then
        -- (A zone or a week/year anchor, QUOTA.SET's or a plan's: layout 7
        -- from now on, see pack_meta.)
        ctx.meta.cycles, ctx.meta_dirty = true, true
    end
    touch(ctx, path)
    local ref, old
    if index then
        ref = { path = path, i = index }
        old = node.pols[index].gen
        if not quiet then
            roll_policy(ctx, ref)
        end
        local p = node.pols[index]
        -- (Turning INFLIGHT on or off restarts the policy, as a new metric does.)
        local new_metric = p.metric ~= spec.metric or p.inflight ~= spec.inflight
        update_policy(p, spec, ctx.now)
        if new_metric then
            OPS.drop_grants(ctx, p)
            node.pols[index] = new_policy(name, spec, generation, ctx.now)
            node.pols[index].gk = ctx.gkey
        end
    else
        node.pols[#node.pols + 1] = new_policy(name, spec, generation, ctx.now)
        node.pols[#node.pols].gk = ctx.gkey
        ref = { path = path, i = #node.pols }
    end
    if counted then
        recount(ctx, path, node.pols[ref.i], old, counted, held)
    end
    return ref
end

-- Rust twin: Tree::set_policy (src/engine/tree.rs), Policy::restart (src/engine/policy.rs).
-- QUOTA.SET: creates or updates a policy. On a tree that follows a plan,
-- the policy becomes the tree's (source "tree"), overriding the plan's of
-- that name; max_policies counts the tree's own policies.
function OPS.set_policy(ctx, path, name, spec)
    validate_spec(spec)
    PLAN.sync_paths(ctx, { path })
    local node = find(ctx, path)
    local index = nil
    if node then
        -- (A policy of that name, the plan's too, may always be set.)
        local own = 0
        for i, p in ipairs(node.pols) do
            if p.name == name then
                index = i
            end
            if not p.src then
                own = own + 1
            end
        end
        if not index and own >= ctx.limits.max_policies then
            fail(sformat("ERR limit: path '%s' already has %d policies (max_policies)", display_path(path),
                ctx.limits.max_policies))
        end
    else
        check_new_paths(ctx, { path }, reach(ctx, { paths = { path } }, {}).missing)
    end
    -- A new policy, or one whose metric or filter changes, counts the live
    -- holds it matches from now on (and no others).
    local counted, held = OPS.holds_for(ctx, path, node, index, spec)

    -- After this point the command succeeds.
    if not node then
        node = ensure_path(ctx, path)
        -- (A new node of a tree that follows a plan has the plan's policies.)
        for i, p in ipairs(node.pols) do
            if p.name == name then
                index = i
            end
        end
    end
    local ref = OPS.put_policy(ctx, path, node, index, name, spec, counted, held)
    node.pols[ref.i].src = nil
    observe(ctx, { ref })
end

-- Rust twin: Tree::unset_policy (src/engine/tree.rs).
-- QUOTA.UNSET: removes one policy; holds that counted on it no longer do.
-- On a tree that follows a plan, a plan policy cannot be removed, and a
-- tree policy the plan gives a policy of that name at the node becomes the
-- plan's again (QUOTA.SET's update with the plan's spec, usage kept).
function OPS.unset_policy(ctx, path, name)
    PLAN.sync_paths(ctx, { path })
    local ref = OPS.policy_ref(ctx, path, name)
    local node = ctx.nodes[path]
    if node.pols[ref.i].src then
        fail(sformat("ERR policy '%s' at '%s' comes from plan '%s': override it with QUOTA.SET, or change the plan",
            name, display_path(path), ctx.pl.name or ""))
    end
    local plan = ctx.pl and ctx.pl.plan
    if plan then
        for _, pol in ipairs(PLAN.policies_for(plan, path)) do
            if pol[1] == name then
                local counted, held = OPS.holds_for(ctx, path, node, ref.i, pol[2])
                -- (After this point the command succeeds.)
                local back = OPS.put_policy(ctx, path, node, ref.i, name, pol[2], counted, held)
                node.pols[back.i].src = "plan"
                observe(ctx, { back })
                return
            end
        end
    end
    local gen = node.pols[ref.i].gen
    OPS.drop_lines(ctx, holds_may_reach(ctx, path) and HOLDS.live_all(ctx) or {}, path, gen)
    OPS.drop_grants(ctx, node.pols[ref.i])
    table.remove(ctx.nodes[path].pols, ref.i)
    touch(ctx, path)
end

-- Rust twin: Tree::subtree (src/engine/paths.rs).
-- The node and everything below it, parents before children.
function OPS.subtree(ctx, path)
    local out = { path }
    local i = 1
    while i <= #out do
        local kids = children_of(ctx, out[i], 0, -1)
        load_nodes(ctx, kids)
        for _, k in ipairs(kids) do
            if ctx.nodes[k] then
                out[#out + 1] = k
            end
        end
        i = i + 1
    end
    return out
end

-- Rust twin: Tree::delete_path (src/engine/paths.rs).
-- QUOTA.DELPATH: removes a path and its subtree when no live hold names it.
function OPS.delete_path(ctx, path)
    if path == "" then
        fail("ERR the root cannot be deleted; DEL the key to remove the whole tree")
    end
    if not find(ctx, path) then
        OPS.not_found_path(path)
    end
    local all = OPS.subtree(ctx, path)
    local held = 0
    for _, p in ipairs(all) do
        held = held + ctx.nodes[p].live
    end
    if held > 0 then
        fail(sformat("ERR path '%s' cannot be deleted: %d live reservation(s) hold it; commit or release them first",
            path, held))
    end

    -- After this point the command succeeds.
    for _, p in ipairs(all) do
        for _, pol in ipairs(ctx.nodes[p].pols) do
            OPS.drop_grants(ctx, pol)
        end
        ctx.kid_del[#ctx.kid_del + 1] = kid_member(p)
        ctx.nodes[p] = false
        ctx.dirty[p] = nil
        ctx.deleted[p] = true
        ctx.node_count = ctx.node_count - 1
    end
    return #all
end

-- A grant as QUOTA.GRANTS lists it.
function OPS.grant_reply(g)
    return M("id", g.id, "amount", D.fmt(g.amount), "remaining", D.fmt(g.rem), "priority", g.pri,
        "expires_at", g.exp, "period", flag(g.per), "created_at", g.at, "note", g.note or false)
end

-- GRANT's reply: the policy (as GET shows it, without source), the grant,
-- and whether the id was known.
function OPS.granted_reply(p, g, duplicate, now)
    local f = policy_reply(p, now)
    local more = { "grant", OPS.grant_reply(g), "duplicate", flag(duplicate) }
    for i = 1, #more do
        f[#f + 1] = more[i]
    end
    return f
end

-- A generated grant id: the tree's reservation-id generator, skipping ids
-- the policy knows.
-- Rust twin: Tree::generate_grant_id (src/engine/tree.rs)
function OPS.grant_id(ctx, p)
    while true do
        ctx.meta.seq = ctx.meta.seq + 1
        ctx.meta_dirty = true
        local id = sformat("%x-%x", ctx.now, ctx.meta.seq)
        if not G.find(p, id, ctx.now) then
            return id
        end
    end
end

-- Rust twin: Tree::grant (src/engine/tree.rs).
-- QUOTA.GRANT: adds a grant (o = { id, expires, dur, period, pri, note }).
function OPS.grant(ctx, path, name, amount, o)
    PLAN.sync_paths(ctx, { path })
    local ref = OPS.policy_ref(ctx, path, name)
    if policy_of(ctx, ref).inflight then
        fail(sformat("ERR policy '%s' at %s is INFLIGHT: it takes no grants", name, display_path(path)))
    end
    local now = ctx.now
    local view = policy_now(ctx, ref)
    -- A known id answers first, whatever its EXPIRES (a webhook retried
    -- after that time is still a duplicate).
    if o.id then
        local known = G.find(view, o.id, now)
        if known then
            return OPS.granted_reply(view, known, true, now)
        end
    end
    if o.expires and o.expires <= now then
        fail(sformat("ERR EXPIRES %.0f is not in the future", o.expires))
    end
    if view.gn >= G.MAX then
        fail(sformat("ERR limit: policy '%s' at '%s' already has %d grants", name, display_path(path), G.MAX))
    end
    D.add(allowance(view), amount)

    -- After this point the command succeeds.
    roll_policy(ctx, ref)
    local p = policy_of(ctx, ref)
    p.gk = p.gk or ctx.gkey
    p.ext = true
    local id = o.id or OPS.grant_id(ctx, p)
    local exp = 0
    if o.expires then
        exp = o.expires
    elseif o.dur then
        exp = now + o.dur
    elseif o.period and W.is_calendar(window_of(p.wenc)) then
        exp = period_end(p)
    end
    local g = { id = id, seq = G.next_seq(p), amount = amount, rem = amount, pri = o.pri, exp = exp,
        per = o.period or false, at = now, note = o.note }
    G.forget(p, now)
    -- Usage beyond the whole allowance is a debt the new grant pays.
    local debt = D.sub(D.sub(p.used, p.dr), plus(p.limit, p.ro))
    if D.cmp(debt, D.ZERO) > 0 then
        local pay = D.min(amount, debt)
        p.dr = plus(p.dr, pay)
        g.rem = D.sub(amount, pay)
    end
    if D.is_zero(g.rem) then
        g = G.bury(p, g, now)
    else
        G.add(p, g)
    end
    refresh(p)
    G.rearm_low(p)
    touch(ctx, path)
    observe(ctx, { ref })
    if ctx.ledger then
        REC.ledger_add(ctx, REC.ledger_policy_entry("grant", now, id, path, name, p.metric, amount))
    end
    return OPS.granted_reply(p, g, false, now)
end

-- Rust twin: Tree::grants_view (src/engine/tree.rs).
-- QUOTA.GRANTS: the live grants at now, in draw-down order.
function OPS.grants(ctx, path, name, count)
    PLAN.sync_paths(ctx, { path })
    local ref = OPS.policy_ref(ctx, path, name)
    local p = policy_now(ctx, ref)
    local out = {}
    if p.gn > 0 then
        G.each(p, "d", 0, function(g)
            out[#out + 1] = OPS.grant_reply(g)
            return #out >= count
        end)
    end
    return out
end

-- Rust twin: Tree::revoke (src/engine/tree.rs).
-- QUOTA.REVOKE: a live grant's remaining leaves the allowance.
function OPS.revoke(ctx, path, name, id)
    PLAN.sync_paths(ctx, { path })
    local ref = OPS.policy_ref(ctx, path, name)
    local view = policy_now(ctx, ref)
    local g, live = G.find(view, id, ctx.now)
    if not g then
        fail(sformat("NOTFOUND no such grant '%s' at '%s#%s'", clip(id), display_path(path), name))
    end

    -- After this point the command succeeds.
    roll_policy(ctx, ref)
    local p = policy_of(ctx, ref)
    local removed = D.ZERO
    if live then
        g = G.find(p, id, ctx.now)
        removed = g.rem
        G.forget(p, ctx.now)
        G.unlive(p, g)
        G.bury(p, g, ctx.now)
        G.ended(p, { g }, removed)
    end
    touch(ctx, path)
    observe(ctx, { ref })
    -- A revoke that removes nothing (the grant had already ended) is a
    -- repeat: no ledger entry (design §3).
    if ctx.ledger and not D.is_zero(removed) then
        REC.ledger_add(ctx, REC.ledger_policy_entry("revoke", ctx.now, id, path, name, p.metric, removed))
    end
    return M("id", id, "removed", D.fmt(removed))
end

-- A policy that goes (UNSET, DELPATH, a new metric, a plan's sync) takes
-- its grants and remembered ids with it.
function OPS.drop_grants(ctx, p)
    if p.ext then
        ctx.gdel = ctx.gdel or {}
        ctx.gdel[p.gen] = true
    end
end

-- Rust twin: Tree::reset_policy (src/engine/tree.rs).
-- QUOTA.RESET: closes the policy's current period now.
function OPS.reset(ctx, path, name)
    PLAN.sync_paths(ctx, { path })
    local ref = OPS.policy_ref(ctx, path, name)
    roll_policy(ctx, ref)
    local p = policy_of(ctx, ref)
    local out = {}
    local closed = reset_policy(p, ctx.now, out)
    G.expiry_events(ctx, p, path, out)
    period_events(ctx, p, path, 1)
    G.check_low(ctx, p, path)
    touch(ctx, path)
    if ctx.ledger then
        -- (The closed period's used, as its history row has it.)
        REC.ledger_add(ctx, REC.ledger_policy_entry("reset", ctx.now, nil, path, name, p.metric, closed[3]))
    end
    return closed_reply(closed, window_of(p.wenc))
end

-- Rust twin: Tree::history (src/engine/tree.rs).
function OPS.history(ctx, path, name)
    PLAN.sync_paths(ctx, { path })
    local ref = OPS.policy_ref(ctx, path, name)
    local out = {}
    local p = policy_now(ctx, ref)
    local w = window_of(p.wenc)
    for i, c in ipairs(p.hist) do
        out[i] = closed_reply(c, w)
    end
    return out
end

-- Rust twin: Tree::view (src/engine/view.rs).
-- A node and its descendants down to `depth` levels, visiting at most
-- budget[1] nodes (preorder, children by name). With `after` (TREE ...
-- AFTER name, the top node only), its children start after that name and
-- `more` counts those after it not shown.
function OPS.view(ctx, path, depth, budget, with_children, after)
    PLAN.sync_paths(ctx, { path })
    local node = ctx.nodes[path]
    budget[1] = math.max(budget[1] - 1, 0)
    local children, more = {}, 0
    if depth > 0 and ctx.filtered then
        -- TREE ... TAG t, or a tree with archived nodes: the children shown
        -- (REC.label_tree_filter); more counts those the budget left out.
        local kids = REC.label_tree_filter(ctx, path, after)
        for i, kid in ipairs(kids) do
            if budget[1] == 0 then
                more = #kids - i + 1
                break
            end
            children[#children + 1] = OPS.view(ctx, kid, depth - 1, budget, true)
        end
    elseif depth > 0 then
        -- Read the children a page at a time: a node may have very many,
        -- and only as many as the budget allows are shown.
        local first = 0
        while true do
            if budget[1] == 0 then
                local _, total = children_of(ctx, path, 0, 0, after)
                more = total - #children
                break
            end
            local kids = children_of(ctx, path, first, math.min(budget[1], 1000), after)
            if #kids == 0 then
                break
            end
            first = first + #kids
            load_nodes(ctx, kids)
            for _, kid in ipairs(kids) do
                if budget[1] == 0 then
                    break
                end
                if ctx.nodes[kid] then
                    children[#children + 1] = OPS.view(ctx, kid, depth - 1, budget, true)
                end
            end
        end
    end
    local policies, worst = {}, "none"
    for i, p in ipairs(node.pols) do
        local now_p = policy_at(p, ctx.now)
        local s = status(now_p)
        if STATUS_RANK[s] > STATUS_RANK[worst] then
            worst = s
        end
        -- (GET and TREE show where it comes from, last.)
        local shown = policy_reply(now_p, ctx.now)
        shown[#shown + 1] = "source"
        shown[#shown + 1] = p.src or "tree"
        policies[i] = shown
    end
    local f = M("path", display_path(path), "status", worst, "spent", costs_reply(costs_pack(node.spent)),
        "policies", policies)
    if node.ac then
        f[#f + 1] = "access"
        f[#f + 1] = ACCESS.reply(node.ac)
    end
    REC.label_fields(f, node.lb)
    if with_children then
        f[#f + 1] = "children"
        f[#f + 1] = children
        if more > 0 then
            f[#f + 1] = "more"
            f[#f + 1] = more
        end
    end
    f.cut = more > 0
    for _, c in ipairs(children) do
        if c.cut then
            f.cut = true
        end
    end
    return f
end

-- Rust twin: Tree::get (src/engine/view.rs), Tree::get_at (src/engine/view.rs).
function OPS.get_view(ctx, path)
    if not find(ctx, path) then
        OPS.not_found_path(path)
    end
    return PLAN.info(ctx, OPS.view(ctx, path, 0, { 1 }, false))
end

-- `tag`, `archived` and `after` are QUOTA.TREE's options (TreeQuery).
-- Rust twin: Tree::tree_view_filtered (src/engine/view.rs), Tree::tree_view_at (src/engine/view.rs).
function OPS.tree_view(ctx, path, depth, max_nodes, tag, archived, after)
    if not find(ctx, path) then
        OPS.not_found_path(path)
    end
    if tag or (ctx.meta.rec and not archived) then
        ctx.filtered, ctx.tag, ctx.archived = true, tag, archived
    end
    local budget = { math.max(max_nodes, 1) }
    ctx.reach = true
    local root = OPS.view(ctx, path, math.min(depth, MAX_DEPTH_HARD), budget, true, after)
    root[#root + 1] = "nodes"
    root[#root + 1] = math.max(max_nodes, 1) - budget[1]
    root[#root + 1] = "truncated"
    root[#root + 1] = flag(root.cut)
    return PLAN.info(ctx, root)
end

-- ----- following a plan (plans.md) ---------------------------------------------
-- A tree that follows (or followed) a plan has ctx.pl = { name (false: none
-- now), epoch, json (the plan's canonical JSON it saw), plan (parsed),
-- missing (the book has no plan of its name), stored ("#plan" exists),
-- dirty }; ctx.pl is false for a tree that never followed one, which takes
-- none of the steps below.

-- Reads the tree's "#plan" and (unless `sweeping`: quota_sweep only
-- expires, and reads no key outside the tree's slot) adopts the book's plan
-- of its name: a write stores it (with the expiry its open stores), a read
-- only views it.
function PLAN.open(ctx, sweeping)
    local blob = redis.call("HGET", ctx.key, "#plan")
    local ok, t = pcall(munpack, blob or "")
    local st = { name = false, epoch = 0, json = false, plan = nil, missing = false, stored = blob ~= false
        and blob ~= nil, dirty = false }
    if ok and type(t) == "table" then
        st.name, st.epoch, st.json = t[1] or false, tonumber(t[2]) or 0, t[3] or false
    end
    ctx.pl = st
    if not sweeping then
        PLAN.adopt(ctx)
    end
end

-- The book's plan of the tree's name, when it has another version or
-- content than the tree saw: the tree takes it (epoch + 1). Without one in
-- the book, the tree keeps what it saw (plan_missing).
-- Rust twin: Tree::adopt (src/engine/sync.rs), adopt (src/module/commands/mod.rs)
function PLAN.adopt(ctx)
    local st = ctx.pl
    st.plan, st.missing = nil, false
    if not st.name then
        return
    end
    local book = PLAN.book_get(PLAN.BOOK, st.name)
    if not book then
        st.missing = true
        st.plan = st.json and PLAN.load(st.name, st.json) or nil
        return
    end
    if book ~= st.json then
        st.epoch, st.json, st.dirty = st.epoch + 1, book, true
    end
    st.plan = PLAN.load(st.name, book)
end

-- QUOTA.ASSIGN: the tree follows `name` (its plan in the book, `book`),
-- or no plan (name false). Nothing changes when it already holds that
-- version, or follows none and is asked to follow none (a missing key is
-- not created).
-- Rust twin: Tree::assign (src/engine/sync.rs)
function OPS.assign(ctx, name, book)
    local st = ctx.pl
    if not name then
        if st and st.name then
            st.name, st.json, st.plan, st.missing = false, false, nil, false
            st.epoch, st.dirty = st.epoch + 1, true
        end
        return
    end
    if st and st.name == name and st.json == book then
        return
    end
    if not st then
        st = { name = false, epoch = 0, json = false, stored = false, missing = false }
        ctx.pl = st
        ctx.meta.plan, ctx.meta_dirty = true, true
    end
    st.name, st.json, st.epoch, st.dirty, st.missing = name, book, st.epoch + 1, true, false
    st.plan = PLAN.load(name, book)
end

-- Gives the node at `path` the plan's policies (plans.md, "Sync a node"):
-- plan policies the plan no longer gives go (as UNSET removes them); each
-- policy it gives is created or updated as QUOTA.SET would (usage kept),
-- unless a tree policy of that name overrides it; then the node is synced
-- at the tree's epoch. No events. fresh: a node just created (no holds).
-- A read runs it on its own copies of the nodes (load_nodes), which it
-- never stores: a view and a sync are one function.
-- Rust twin: Tree::synced (src/engine/sync.rs), Tree::sync_node (src/engine/sync.rs)
function PLAN.sync_node(ctx, path, node, fresh)
    local st = ctx.pl
    local desired = st.plan and PLAN.policies_for(st.plan, path) or {}
    local want = {}
    for _, pol in ipairs(desired) do
        want[pol[1]] = true
    end
    local kept, holds = {}, nil
    for _, p in ipairs(node.pols) do
        if p.src and not want[p.name] then
            if holds == nil then
                holds = (not fresh and holds_may_reach(ctx, path)) and OPS.holds_reaching(ctx, path) or {}
            end
            OPS.drop_lines(ctx, holds, path, p.gen)
            OPS.drop_grants(ctx, p)
        else
            kept[#kept + 1] = p
        end
    end
    node.pols = kept
    for _, pol in ipairs(desired) do
        local index = nil
        for i, p in ipairs(node.pols) do
            if p.name == pol[1] then
                index = i
            end
        end
        local p = index and node.pols[index]
        if not p or (p.src and PLAN.spec_json(p) ~= pol[3]) then
            local counted, held = nil, nil
            if not fresh then
                counted, held = OPS.holds_for(ctx, path, node, index, pol[2], true)
            end
            node.pols[OPS.put_policy(ctx, path, node, index, pol[1], pol[2], counted, held, true).i].src = "plan"
        end
    end
    node.pe = st.epoch
    touch(ctx, path)
end

-- (The view of a stale node is its sync on a read's copy.)
PLAN.synced_policies = PLAN.sync_node

-- Syncs the existing nodes of `paths` that are stale (each once, in
-- order); a write stores them at once, so they stay synced even when the
-- command then fails (the module replicates QUOTA.REPLAY … SYNC then).
-- Rust twin: Tree::sync_paths (src/engine/sync.rs)
function PLAN.sync_paths(ctx, paths)
    local st = ctx.pl
    if not st then
        return
    end
    load_nodes(ctx, paths)
    local any = false
    for _, path in ipairs(paths) do
        local node = ctx.nodes[path]
        if node and node.pe ~= st.epoch then
            PLAN.sync_node(ctx, path, node, false)
            any = true
        end
    end
    if any and ctx.writable then
        flush(ctx)
    end
end

-- Syncs every existing node on the way to every path of `paths`: root
-- first, paths in order, each node once (RESERVE, CHARGE, COMMIT). Returns
-- the nodes on the way.
-- Rust twin: Tree::sync_way (src/engine/sync.rs)
function PLAN.sync_way(ctx, paths)
    local all = {}
    for _, path in ipairs(paths) do
        for _, prefix in ipairs(prefixes(path)) do
            all[#all + 1] = prefix
        end
    end
    PLAN.sync_paths(ctx, all)
    return all
end

-- Before a RESERVE or CHARGE on a tree that has (or had) a plan judges: the
-- existing nodes on the way are synced (and stored); when it follows one,
-- the new paths are checked (max_depth, max_paths) and the missing nodes
-- created with the plan's policies, so the request is judged against them.
-- Returns what undoes the creation (PLAN.unmake) when nothing is placed,
-- or nil.
-- Rust twin: Tree::materialize (src/engine/sync.rs)
function PLAN.prepare(ctx, set)
    local all = PLAN.sync_way(ctx, set.paths)
    if not ctx.pl.plan then
        return nil
    end
    local missing, seen = 0, {}
    for _, path in ipairs(all) do
        if not ctx.nodes[path] and not seen[path] then
            seen[path] = true
            missing = missing + 1
        end
    end
    if missing == 0 then
        return nil
    end
    check_new_paths(ctx, set.paths, missing)
    local undo = { gen = ctx.meta.gen, meta_dirty = ctx.meta_dirty, kids = #ctx.kid_add, count = ctx.node_count,
        made = {} }
    for _, path in ipairs(set.paths) do
        for _, prefix in ipairs(prefixes(path)) do
            if not ctx.nodes[prefix] then
                undo.made[#undo.made + 1] = prefix
            end
        end
        ensure_path(ctx, path)
    end
    return undo
end

-- Removes the nodes PLAN.prepare created: nothing is written for them.
-- Rust twin: Tree::unmake (src/engine/paths.rs)
function PLAN.unmake(ctx, undo)
    if not undo then
        return
    end
    for _, path in ipairs(undo.made) do
        ctx.nodes[path] = false
        ctx.dirty[path] = nil
    end
    for i = #ctx.kid_add, undo.kids + 1, -1 do
        ctx.kid_add[i] = nil
    end
    ctx.node_count, ctx.meta.gen, ctx.meta_dirty = undo.count, undo.gen, undo.meta_dirty
end

-- GET and TREE: the tree's plan, the version it follows (the book's when
-- the book has it), and whether the book lacks it; added to the reply `f`.
-- Rust twin: Tree::plan_info (src/engine/sync.rs), push_plan (src/module/commands/read.rs)
function PLAN.info(ctx, f)
    local st = ctx.pl
    local name = st and st.name or false
    local version = name and st.plan and st.plan.version or false
    local more = { "plan", name, "plan_version", version, "plan_missing", flag(st and st.missing) }
    for i = 1, #more do
        f[#f + 1] = more[i]
    end
    return f
end
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
