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
