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
