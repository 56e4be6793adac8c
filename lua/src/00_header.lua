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
