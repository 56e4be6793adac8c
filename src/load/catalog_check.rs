//! The catalog's twins, checked: what the Lua library, the test helpers and
//! README write of the catalog (`src/engine/catalog.rs`) must agree with it.
//! The Lua files stay hand-written; these tests read them as text (a few
//! line shapes: `local NAME = value`, the `SETTINGS` table, the `FUNCTIONS`
//! table) and each failure names the file and line to fix.

use std::collections::BTreeSet;
use std::path::Path;

use quota_engine::catalog::{self, BOUNDS, COMMANDS, FUNCTIONS, Key, SETTINGS, WORDS};

/// A file of the repository: its path (for messages) and its lines.
struct Text {
    path: String,
    lines: Vec<String>,
}

impl Text {
    fn read(path: &str) -> Text {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let text = std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        Text { path: path.to_string(), lines: text.lines().map(str::to_string).collect() }
    }

    fn lua(section: &str) -> Text {
        Text::read(&format!("lua/src/{section}"))
    }

    /// `path:line`, for a 0-based index.
    fn at(&self, index: usize) -> String {
        format!("{}:{}", self.path, index + 1)
    }

    /// The lines from the one whose trimmed text is `open` to the next whose
    /// trimmed text is `close`, with their indexes (both excluded).
    fn block(&self, open: &str, close: &str) -> Vec<(usize, &str)> {
        let start = self.lines.iter().position(|l| l.trim() == open);
        let start = start.unwrap_or_else(|| panic!("{}: no line '{open}'", self.path));
        self.lines[start + 1..]
            .iter()
            .enumerate()
            .take_while(|(_, l)| l.trim() != close)
            .map(|(i, l)| (start + 1 + i, lua_code(l)))
            .collect()
    }

    /// The value of `local NAME = value` (one such line in the file): an
    /// integer, a product of integers and earlier locals, or a list.
    fn local(&self, name: &str) -> (usize, Vec<u64>) {
        let found: Vec<(usize, &str)> = self
            .lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let rest = lua_code(l).trim().strip_prefix("local ")?.strip_prefix(name)?.trim_start();
                Some((i, rest.strip_prefix('=')?.trim()))
            })
            .collect();
        let [(index, expr)] = found[..] else {
            panic!("{}: {} lines 'local {name} = ...' (the catalog needs exactly one)", self.path, found.len());
        };
        if let Some(list) = expr.strip_prefix('{').and_then(|e| e.strip_suffix('}')) {
            let values = list.split(',').map(|v| v.trim()).filter(|v| !v.is_empty());
            let values =
                values.map(|v| v.parse().unwrap_or_else(|_| panic!("{}: '{v}' is not an integer", self.at(index))));
            return (index, values.collect());
        }
        let mut product: u64 = 1;
        for term in expr.split('*').map(str::trim) {
            let value = match term.parse::<u64>() {
                Ok(n) => n,
                Err(_) if term.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                    match self.local(term).1[..] {
                        [n] => n,
                        _ => panic!("{}: {term} is not an integer", self.at(index)),
                    }
                }
                Err(_) => panic!("{}: cannot read '{expr}' (integers and locals joined by *)", self.at(index)),
            };
            product = product.checked_mul(value).unwrap_or_else(|| panic!("{}: overflows", self.at(index)));
        }
        (index, vec![product])
    }
}

/// A Lua line without its comment.
fn lua_code(line: &str) -> &str {
    line.split_once("--").map_or(line, |(code, _)| code)
}

/// The quoted strings of `text`, in order.
fn strings(text: &str) -> Vec<&str> {
    text.split('"').skip(1).step_by(2).collect()
}

#[test]
fn the_lua_settings_are_the_catalogs_defaults() {
    let header = Text::lua("00_header.lua");
    let mut seen = BTreeSet::new();
    for (index, line) in header.block("local SETTINGS = {", "}") {
        let Some((name, value)) = line.trim().trim_end_matches(',').split_once('=') else { continue };
        let (name, value) = (name.trim(), value.trim());
        let spec = SETTINGS.iter().find(|s| s.name == name);
        let spec =
            spec.unwrap_or_else(|| panic!("{}: SETTINGS.{name} is not in src/engine/catalog.rs", header.at(index)));
        assert_eq!(
            value.parse::<u64>().ok(),
            Some(spec.default),
            "{}: SETTINGS.{name} is '{value}', the catalog's default is {} (src/engine/catalog.rs)",
            header.at(index),
            spec.default
        );
        seen.insert(name.to_string());
    }
    for s in SETTINGS {
        assert!(seen.contains(s.name), "{}: SETTINGS has no line '    {} = {},'", header.path, s.name, s.default);
    }
}

#[test]
fn the_lua_bounds_are_the_catalogs() {
    for bound in BOUNDS {
        for (section, local) in bound.lua {
            let text = Text::lua(section);
            let (index, value) = text.local(local);
            assert_eq!(
                value,
                bound.value,
                "{}: local {local} is {value:?}, the engine's {} is {:?} (src/engine/catalog.rs)",
                text.at(index),
                bound.name,
                bound.value
            );
        }
    }
}

#[test]
fn the_lua_word_sets_are_the_catalogs() {
    for set in WORDS {
        let (section, local) = set.lua;
        let text = Text::lua(section);
        let open = format!("local {local} = set_of({{");
        let start = text.lines.iter().position(|l| l.trim_start().starts_with(&open));
        let start = start.unwrap_or_else(|| panic!("{}: no line '{open} ...'", text.path));
        let end = start + text.lines[start..].iter().position(|l| lua_code(l).contains("})")).unwrap_or(0);
        let listed: BTreeSet<&str> = text.lines[start..=end].iter().flat_map(|l| strings(lua_code(l))).collect();
        let expected: BTreeSet<&str> = set.words.iter().copied().collect();
        let missing: Vec<_> = expected.difference(&listed).collect();
        let extra: Vec<_> = listed.difference(&expected).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: {local} lacks {missing:?} and has {extra:?} beside the catalog's {} (src/engine/catalog.rs)",
            text.at(start),
            set.name
        );
    }
}

#[test]
fn the_lua_functions_are_the_catalogs_with_its_flags() {
    let register = Text::lua("90_register.lua");
    // (name, flags, line) of every function registered: the FUNCTIONS table
    // and the functions registered one by one (`function_name = "..."`).
    let mut registered: Vec<(String, BTreeSet<String>, usize)> = Vec::new();
    for (index, line) in register.block("local FUNCTIONS = {", "}") {
        // `{ "quota_x", { "flag", ... } }`, several to a line.
        for item in line.split("}, {").flat_map(|i| i.split("} }")) {
            let words = strings(item);
            if let Some((name, flags)) = words.split_first() {
                registered.push((name.to_string(), flags.iter().map(|f| f.to_string()).collect(), index));
            }
        }
    }
    for (index, line) in register.lines.iter().enumerate() {
        let Some(rest) = lua_code(line).trim().strip_prefix("function_name = \"") else { continue };
        let name = rest.split('"').next().unwrap_or("");
        let flags = register.lines[index..].iter().find_map(|l| lua_code(l).trim().strip_prefix("flags = "));
        let flags = flags.unwrap_or_else(|| panic!("{}: no 'flags = {{ ... }}' after it", register.at(index)));
        registered.push((name.to_string(), strings(flags).iter().map(|f| f.to_string()).collect(), index));
    }
    for f in FUNCTIONS {
        let found: Vec<_> = registered.iter().filter(|(name, _, _)| name == f.name).collect();
        let [(_, flags, index)] = found[..] else {
            panic!("{}: {} is registered {} times (the catalog has it once)", register.path, f.name, found.len());
        };
        let expected: BTreeSet<String> = f.flags.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            flags,
            &expected,
            "{}: {} has flags {flags:?}, the catalog's are {expected:?} (src/engine/catalog.rs)",
            register.at(*index),
            f.name
        );
    }
    for (name, _, index) in &registered {
        assert!(
            FUNCTIONS.iter().any(|f| f.name == name),
            "{}: {name} is not in src/engine/catalog.rs",
            register.at(*index)
        );
    }
}

#[test]
fn the_lua_handlers_take_the_catalogs_keys() {
    let register = Text::lua("90_register.lua");
    let mut tree = Vec::new();
    let mut keyless = Vec::new();
    for (index, line) in register.lines.iter().enumerate() {
        let line = lua_code(line).trim();
        // `{ "QUOTA.SET", CMD.cmd_set, true },`: a tree command and whether it writes.
        if line.starts_with("{ \"QUOTA.") && line.contains("CMD.") {
            let name = strings(line)[0];
            let writes = line.trim_end_matches([',', ' ', '}']).ends_with("true");
            tree.push((name, writes, index));
        }
        // `handlers.quota_price = keyless("QUOTA.PRICE", ...`
        if let Some(rest) = line.strip_prefix("handlers.")
            && let Some((function, call)) = rest.split_once(" = keyless(")
        {
            keyless.push((function.to_string(), strings(call).first().copied().unwrap_or(""), index));
        }
    }
    let expected: Vec<&str> =
        COMMANDS.iter().filter(|c| c.lua.is_some() && c.key != Key::None).map(|c| c.name).collect();
    let names: Vec<&str> = tree.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(names, expected, "{}: the tree commands' list is the catalog's keyed commands", register.path);
    for (name, writes, index) in tree {
        let spec = COMMANDS.iter().find(|c| c.name == name).expect("listed above");
        assert_eq!(
            writes,
            spec.has_flag("write"),
            "{}: {name} writes? the catalog's flags are '{}'",
            register.at(index),
            spec.flags
        );
    }
    for f in FUNCTIONS.iter().filter(|f| f.keys == 0 && f.commands().next().is_some()) {
        let found = keyless.iter().find(|(name, _, _)| name == f.name);
        let (_, command, index) =
            found.unwrap_or_else(|| panic!("{}: no 'handlers.{} = keyless(...)'", register.path, f.name));
        assert!(f.commands().any(|c| c.parent() == *command), "{}: {} serves {command}?", register.at(*index), f.name);
    }
    for (name, _, index) in &keyless {
        let f = FUNCTIONS.iter().find(|f| f.name == name);
        assert_eq!(
            f.map(|f| f.keys),
            Some(0),
            "{}: {name} takes no key, the catalog says otherwise",
            register.at(*index)
        );
    }
}

#[test]
fn the_test_helpers_keyless_and_read_lists_are_the_catalogs() {
    let backend = Text::read("tests/backend.py");
    let index = backend.lines.iter().position(|l| l.starts_with("KEYLESS = {"));
    let index = index.unwrap_or_else(|| panic!("{}: no line 'KEYLESS = {{...}}'", backend.path));
    let listed: BTreeSet<&str> = strings(&backend.lines[index]).into_iter().collect();
    let keyless: BTreeSet<&str> = catalog::keyless_commands().into_iter().collect();
    assert_eq!(listed, keyless, "{}: KEYLESS is the catalog's keyless commands", backend.at(index));

    let acl = Text::read("tests/acl.py");
    let start = acl.lines.iter().position(|l| l.starts_with("LUA_READS = {"));
    let start = start.unwrap_or_else(|| panic!("{}: no line 'LUA_READS = {{'", acl.path));
    let end = start + acl.lines[start..].iter().position(|l| l.trim_end().ends_with('}')).unwrap_or(0);
    let listed: BTreeSet<&str> = acl.lines[start..=end].iter().flat_map(|l| strings(l)).collect();
    let reads: BTreeSet<&str> =
        FUNCTIONS.iter().filter(|f| f.has_flag("no-writes") && f.commands().next().is_some()).map(|f| f.name).collect();
    assert_eq!(listed, reads, "{}: LUA_READS is the catalog's no-writes functions", acl.at(start));
}

/// A number as README's settings table writes it: `100000`, `10^8`, `90 days`.
fn readme_number(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Some(days) = text.strip_suffix(" days") {
        return days.trim().parse::<u64>().ok().map(|d| d * 86_400_000);
    }
    if let Some((base, exp)) = text.split_once('^') {
        return base.parse::<u64>().ok()?.checked_pow(exp.parse().ok()?);
    }
    text.parse().ok()
}

#[test]
fn readmes_settings_table_and_the_loaders_help_are_the_catalogs() {
    let readme = Text::read("README.md");
    let mut seen = BTreeSet::new();
    for (index, line) in readme.lines.iter().enumerate() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // `| `name` | default | min – max | meaning |`
        let [_, name, default, range, ..] = cells[..] else { continue };
        let Some(spec) = SETTINGS.iter().find(|s| name == format!("`{}`", s.name)) else { continue };
        let (min, max) = range.split_once('–').unwrap_or(("", ""));
        assert_eq!(
            (readme_number(default), readme_number(min), readme_number(max)),
            (Some(spec.default), Some(spec.min), Some(spec.max)),
            "{}: {} is default {}, range {} – {} in src/engine/catalog.rs",
            readme.at(index),
            spec.name,
            spec.default,
            spec.min,
            spec.max
        );
        seen.insert(spec.name);
    }
    for s in SETTINGS {
        assert!(seen.contains(s.name), "{}: the Configuration table has no row for {}", readme.path, s.name);
        assert!(super::HELP.contains(s.name), "src/load/main.rs: HELP's --set does not name {}", s.name);
    }
}

/// The `backticked` words of `text`.
fn quoted(text: &str) -> Vec<&str> {
    text.split('`').skip(1).step_by(2).collect()
}

#[test]
fn the_lua_readmes_function_list_is_the_catalogs() {
    let readme = Text::read("lua/README.md");
    let start = readme.lines.iter().position(|l| l.starts_with("The functions are "));
    let start = start.unwrap_or_else(|| panic!("{}: no paragraph 'The functions are ...'", readme.path));
    let end = start + readme.lines[start..].iter().position(|l| l.trim().is_empty()).unwrap_or(0);
    let paragraph = readme.lines[start..end].join(" ");
    let at = readme.at(start);
    let (names, rest) = paragraph.split_once(". ").unwrap_or_else(|| panic!("{at}: the list ends with '. '"));
    let names: BTreeSet<&str> = quoted(names).into_iter().collect();
    let all: BTreeSet<&str> = FUNCTIONS.iter().map(|f| f.name).collect();
    assert_eq!(names, all, "{at}: the functions are the catalog's (src/engine/catalog.rs)");
    // "The reading ones (`get`, ...) are registered `no-writes`", then
    // "`commit`, ... are registered `allow-oom`".
    let short = |list: &str| -> BTreeSet<String> {
        quoted(list).into_iter().filter(|w| !w.contains('-')).map(|w| format!("quota_{w}")).collect()
    };
    let flagged = |flag: &str| -> BTreeSet<String> {
        FUNCTIONS.iter().filter(|f| f.has_flag(flag)).map(|f| f.name.to_string()).collect()
    };
    let (reads, rest) = rest.split_once("are registered `no-writes`").unwrap_or_else(|| panic!("{at}: no-writes"));
    assert_eq!(short(reads), flagged("no-writes"), "{at}: the no-writes functions are the catalog's");
    let (settles, _) = rest.split_once("are registered `allow-oom`").unwrap_or_else(|| panic!("{at}: allow-oom"));
    let settles = settles.rsplit_once(". ").map_or(settles, |(_, s)| s);
    assert_eq!(short(settles), flagged("allow-oom"), "{at}: the allow-oom functions are the catalog's");
}
