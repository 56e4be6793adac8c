
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
