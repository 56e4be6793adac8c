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
