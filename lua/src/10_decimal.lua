
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
