
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
