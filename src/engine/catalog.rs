//! The catalog: what the module and the Lua library share, written once.
//!
//! quota has two backends, the Redis module (`src/module`) and the Redis
//! Functions library (`lua/src`). Whatever a client can observe of their
//! shape, they must agree on: the settings (names, defaults, ranges), the
//! hard bounds every command enforces, the keywords of the grammar, and the
//! commands themselves (names, flags, keys, ACL categories, and the Lua
//! function that serves each).
//! This file is that list, as plain data.
//!
//! What derives from it (Rust, by the compiler): the module's configuration
//! and its command registration (`src/module/config.rs`, `module.rs`),
//! [`Limits::default`], and `quota-load`'s `--set` table.
//! What is checked against it (text, by `cargo test`, in `make test`): the
//! Lua library's `SETTINGS`, its bounds, keyword sets and function
//! registration, the test helpers' keyless and read-only lists, README's
//! settings table and lua/README's function lists
//! (`src/load/catalog_check.rs`, which names the file and line to fix).
//!
//! A bound keeps its definition beside the rule that uses it (`names.rs`,
//! `pricing.rs`, …); the catalog lists it with its Lua twin. The two that
//! have no engine rule of their own (a hold's longest TTL, paths per
//! request) are defined here.

use super::tree::Limits;
use super::{names, outcome, plan, policy, pricing, window};

// ----- settings ----------------------------------------------------------------

/// A setting: a module argument and `CONFIG SET quota.<name>` on the
/// module, a line of the `SETTINGS` table (`quota-load --set`) in Lua.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    DefaultTtl,
    TombstoneTtl,
    MaxPaths,
    MaxPolicies,
    MaxHolds,
    MaxDepth,
    MaxItems,
    EventsLen,
    UsageHours,
    UsageDays,
    UsageSeries,
    LedgerLen,
}

/// A setting's name (as in `CONFIG GET quota.<name>`), default and range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingSpec {
    pub setting: Setting,
    pub name: &'static str,
    pub default: u64,
    pub min: u64,
    pub max: u64,
    pub doc: &'static str,
}

const fn setting(
    setting: Setting,
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
    doc: &'static str,
) -> SettingSpec {
    SettingSpec { setting, name, default, min, max, doc }
}

/// Every integer setting, in the order of [`Setting`] (a test checks it).
pub const SETTINGS: &[SettingSpec] = &[
    setting(Setting::DefaultTtl, "default_ttl", 60_000, 1, MAX_TTL_MS, "TTL of a hold without TTL, ms"),
    setting(
        Setting::TombstoneTtl,
        "tombstone_ttl",
        86_400_000,
        1000,
        90 * 86_400_000,
        "how long finished ids are remembered for duplicates, ms",
    ),
    setting(Setting::MaxPaths, "max_paths", 100_000, 1, 100_000_000, "paths per tree"),
    setting(Setting::MaxPolicies, "max_policies", 16, 1, 64, "policies per path"),
    setting(Setting::MaxHolds, "max_holds", 1_000_000, 1, 100_000_000, "live holds per tree"),
    setting(
        Setting::MaxDepth,
        "max_depth",
        16,
        1,
        names::MAX_DEPTH_HARD as u64,
        "segments per path a command may create",
    ),
    setting(Setting::MaxItems, "max_items", 1000, 1, 10_000, "items per reservation"),
    setting(Setting::EventsLen, "events_len", 1000, 1, 100_000, "events kept per tree"),
    setting(Setting::UsageHours, "usage_hours", 48, 0, 720, "hourly usage buckets kept per path (0: none)"),
    setting(Setting::UsageDays, "usage_days", 90, 0, 400, "daily usage buckets kept per path (0: none)"),
    setting(
        Setting::UsageSeries,
        "usage_series",
        32,
        1,
        crate::usage::MAX_SERIES as u64,
        "service/model series per path in usage",
    ),
    setting(Setting::LedgerLen, "ledger_len", 0, 0, 10_000_000, "ledger stream entries kept per tree (0: no ledger)"),
];

impl Setting {
    pub const fn spec(self) -> &'static SettingSpec {
        &SETTINGS[self as usize]
    }

    pub const fn default_value(self) -> u64 {
        self.spec().default
    }

    /// The setting named `name` (lower case, as the catalog writes it).
    pub fn named(name: &str) -> Option<Setting> {
        SETTINGS.iter().find(|s| s.name == name).map(|s| s.setting)
    }
}

impl Limits {
    /// The engine's limits with each setting's value from `value` (the
    /// defaults, or the module's configuration). `default_ttl` is not an
    /// engine limit: the command layer applies it.
    pub fn from_settings(value: impl Fn(Setting) -> u64) -> Limits {
        let size = |s| usize::try_from(value(s)).unwrap_or(usize::MAX);
        let small = |s| u32::try_from(value(s)).unwrap_or(u32::MAX);
        Limits {
            max_paths: size(Setting::MaxPaths),
            max_policies: size(Setting::MaxPolicies),
            max_holds: size(Setting::MaxHolds),
            max_items: size(Setting::MaxItems),
            tombstone_ttl_ms: value(Setting::TombstoneTtl),
            events_len: size(Setting::EventsLen),
            max_depth: size(Setting::MaxDepth),
            usage_hours: small(Setting::UsageHours),
            usage_days: small(Setting::UsageDays),
            usage_series: small(Setting::UsageSeries),
            ledger: value(Setting::LedgerLen) > 0,
        }
    }

    /// The settings that shape usage.
    pub fn usage(&self) -> crate::usage::UsageSettings {
        crate::usage::UsageSettings { hours: self.usage_hours, days: self.usage_days, series: self.usage_series }
    }
}

// ----- bounds --------------------------------------------------------------------

/// Longest TTL a hold may be given: 30 days.
pub const MAX_TTL_MS: u64 = 30 * 24 * 3600 * 1000;
/// Most paths one request names (`PATH` and `ALSO`).
pub const MAX_CHARGE_PATHS: usize = 16;

/// A hard bound both backends enforce (no setting changes it), and where
/// the Lua library defines its twin: a `local NAME = value` line in a
/// section of `lua/src` (an integer, a product such as `64 * 1024`, or a
/// list `{ 80, 90 }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub name: &'static str,
    pub value: &'static [u64],
    /// `(section, local)`: each Lua twin.
    pub lua: &'static [(&'static str, &'static str)],
}

const fn bound(name: &'static str, value: &'static [u64], lua: &'static [(&'static str, &'static str)]) -> Bound {
    Bound { name, value, lua }
}

const NAMES: &str = "40_names.lua";
const PRICING: &str = "30_pricing.lua";
const WINDOW: &str = "20_window.lua";
const POLICY: &str = "50_policy.lua";
const PLAN: &str = "35_plan.lua";

/// Every shared hard bound. (The `COUNT` ranges of `QUOTA.TREE`, `HOLDS`
/// and `EVENTS` are literals in the Lua library, not named: not listed.)
pub const BOUNDS: &[Bound] = &[
    bound("MAX_DEPTH_HARD", &[names::MAX_DEPTH_HARD as u64], &[(NAMES, "MAX_DEPTH_HARD")]),
    bound("MAX_SEGMENT_LEN", &[names::MAX_SEGMENT_LEN as u64], &[(NAMES, "MAX_SEGMENT_LEN")]),
    bound("MAX_NAME_LEN", &[names::MAX_NAME_LEN as u64], &[(NAMES, "MAX_NAME_LEN"), (PRICING, "MAX_NAME_LEN")]),
    bound("MAX_TTL_MS", &[MAX_TTL_MS], &[(NAMES, "MAX_TTL_MS")]),
    bound("MAX_CHARGE_PATHS", &[MAX_CHARGE_PATHS as u64], &[(NAMES, "MAX_CHARGE_PATHS")]),
    bound("MAX_ITEM_METRICS", &[outcome::MAX_ITEM_METRICS as u64], &[(NAMES, "MAX_ITEM_METRICS")]),
    bound("MAX_REQUEST_METRICS", &[outcome::MAX_REQUEST_METRICS as u64], &[(NAMES, "MAX_REQUEST_METRICS")]),
    bound("HISTORY_LEN", &[policy::HISTORY_LEN as u64], &[(NAMES, "HISTORY_LEN")]),
    bound("MAX_WARN", &[policy::MAX_WARN as u64], &[(POLICY, "MAX_WARN")]),
    bound(
        "DEFAULT_WARN",
        &[policy::DEFAULT_WARN[0] as u64, policy::DEFAULT_WARN[1] as u64],
        &[(POLICY, "DEFAULT_WARN")],
    ),
    bound("MAX_PRICES", &[pricing::MAX_PRICES as u64], &[(PRICING, "MAX_PRICES")]),
    bound("MAX_RATES", &[pricing::MAX_RATES as u64], &[(PRICING, "MAX_RATES")]),
    bound("MAX_ATTRIBUTES", &[pricing::MAX_ATTRIBUTES as u64], &[(PRICING, "MAX_ATTRIBUTES")]),
    bound("MAX_VALUES", &[pricing::MAX_VALUES as u64], &[(PRICING, "MAX_VALUES")]),
    bound("MAX_JSON_LEN", &[pricing::MAX_JSON_LEN as u64], &[(PRICING, "MAX_JSON_LEN")]),
    bound("MAX_PLANS", &[plan::MAX_PLANS as u64], &[(PLAN, "MAX_PLANS")]),
    bound("MAX_PATTERNS", &[plan::MAX_PATTERNS as u64], &[(PLAN, "MAX_PATTERNS")]),
    bound("MAX_PLAN_POLICIES", &[plan::MAX_PLAN_POLICIES as u64], &[(PLAN, "MAX_PLAN_POLICIES")]),
    bound("MAX_PLAN_JSON_LEN", &[plan::MAX_PLAN_JSON_LEN as u64], &[(PLAN, "MAX_PLAN_JSON_LEN")]),
    bound("MAX_PLAN_NAME_LEN", &[plan::MAX_PLAN_NAME_LEN as u64], &[(PLAN, "MAX_PLAN_NAME_LEN")]),
    bound("HOUR_MS", &[window::HOUR_MS as u64], &[(WINDOW, "HOUR_MS")]),
    bound("DAY_MS", &[window::DAY_MS as u64], &[(WINDOW, "DAY_MS")]),
    bound("ROLLING_BUCKETS", &[window::ROLLING_BUCKETS], &[(WINDOW, "BUCKETS")]),
    bound("ROLLING_MIN_MS", &[window::ROLLING_MIN_MS], &[(WINDOW, "ROLLING_MIN_MS")]),
    bound("ROLLING_MAX_MS", &[window::ROLLING_MAX_MS], &[(WINDOW, "ROLLING_MAX_MS")]),
];

/// Keywords that end a list of values (`ALSO a b`, `COST m 1 n 2`).
pub const LIST_ENDS: &[&str] = &[
    "PATH", "ALSO", "ID", "TTL", "SERVICE", "MODEL", "ALL", "UPTO", "DRYRUN", "BRIEF", "COST", "USAGE", "CHECK",
    "ITEM", "META",
];

/// A set of words of the grammar both backends share, and its Lua twin:
/// `local NAME = set_of({ "word", ... })` in a section of `lua/src`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Words {
    pub name: &'static str,
    pub words: &'static [&'static str],
    pub lua: (&'static str, &'static str),
}

/// Every shared word set.
pub const WORDS: &[Words] = &[
    // A metric may not be one of these (names.rs).
    Words { name: "KEYWORDS", words: names::KEYWORDS, lua: (NAMES, "KEYWORDS") },
    Words { name: "LIST_ENDS", words: LIST_ENDS, lua: (NAMES, "LIST_ENDS") },
];

// ----- commands ------------------------------------------------------------------

/// What a command does with its one key (always its first argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// No key: the price book, the plan book and the test clock are server-wide.
    None,
    /// Reads the tree: an ACL `%R~pattern` is enough.
    Reads,
    /// Reads and changes the tree (or creates it).
    Writes,
    /// Replaces the tree whole (`QUOTA.LOADTREE`).
    Replaces,
}

/// A module command or subcommand (`QUOTA.PRICE|GET`: the verb of
/// `QUOTA.PRICE`, so ACL rules can grant one verb without the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    pub name: &'static str,
    /// As `RedisModule_CreateCommand` takes them.
    pub flags: &'static str,
    pub key: Key,
    /// ACL categories (Redis 7.2 and later; `quota` is added where the
    /// server lets a module have its own).
    pub acl: &'static str,
    /// The Lua function that serves it; `None` for the module's internal
    /// commands (replication and `quota-load`'s own loading).
    pub lua: Option<&'static str>,
}

const fn command(name: &'static str, flags: &'static str, key: Key, acl: &'static str, lua: &'static str) -> Command {
    Command { name, flags, key, acl, lua: Some(lua) }
}

const fn internal(name: &'static str, flags: &'static str, key: Key, acl: &'static str) -> Command {
    Command { name, flags, key, acl, lua: None }
}

/// Every module command, in registration order. A name with `|` is a
/// subcommand of the part before it, which is registered once, bare.
pub const COMMANDS: &[Command] = &[
    command("QUOTA.SET", "write deny-oom", Key::Writes, "write", "quota_set"),
    command("QUOTA.UNSET", "write", Key::Writes, "write", "quota_unset"),
    command("QUOTA.DELPATH", "write", Key::Writes, "write", "quota_delpath"),
    command("QUOTA.GRANT", "write deny-oom", Key::Writes, "write", "quota_grant"),
    command("QUOTA.REVOKE", "write", Key::Writes, "write", "quota_revoke"),
    command("QUOTA.RESET", "write", Key::Writes, "write", "quota_reset"),
    command("QUOTA.ASSIGN", "write deny-oom", Key::Writes, "write", "quota_assign"),
    command("QUOTA.RESERVE", "write deny-oom", Key::Writes, "write", "quota_reserve"),
    command("QUOTA.COMMIT", "write", Key::Writes, "write", "quota_commit"),
    command("QUOTA.RELEASE", "write", Key::Writes, "write", "quota_release"),
    command("QUOTA.EXTEND", "write", Key::Writes, "write", "quota_extend"),
    command("QUOTA.CHARGE", "write deny-oom", Key::Writes, "write", "quota_charge"),
    // QUOTA.ACCESS writes only with CLEAR (like SORT with STORE); replicas
    // and read-only users read rules through QUOTA.GET and QUOTA.TREE.
    command("QUOTA.ALLOW", "write deny-oom", Key::Writes, "write", "quota_allow"),
    command("QUOTA.DENY", "write deny-oom", Key::Writes, "write", "quota_deny"),
    command("QUOTA.ACCESS", "write", Key::Writes, "write", "quota_access"),
    command("QUOTA.LABEL", "write deny-oom", Key::Writes, "write", "quota_label"),
    command("QUOTA.ARCHIVE", "write", Key::Writes, "write", "quota_archive"),
    command("QUOTA.RESTORE", "write", Key::Writes, "write", "quota_restore"),
    command("QUOTA.GET", "readonly", Key::Reads, "read", "quota_get"),
    command("QUOTA.TREE", "readonly", Key::Reads, "read", "quota_tree"),
    command("QUOTA.HOLDS", "readonly", Key::Reads, "read", "quota_holds"),
    command("QUOTA.HISTORY", "readonly", Key::Reads, "read", "quota_history"),
    command("QUOTA.EVENTS", "readonly", Key::Reads, "read", "quota_events"),
    command("QUOTA.GRANTS", "readonly", Key::Reads, "read", "quota_grants"),
    command("QUOTA.USAGE", "readonly", Key::Reads, "read", "quota_usage"),
    internal("QUOTA.REPLAY", "write", Key::Writes, "write dangerous"),
    internal("QUOTA.LOADTREE", "write", Key::Replaces, "write dangerous"),
    command("QUOTA.ESTIMATE", "readonly", Key::None, "read", "quota_estimate"),
    command("QUOTA.DEBUG", "", Key::None, "dangerous", "quota_debug"),
    command("QUOTA.PRICE|GET", "readonly fast", Key::None, "read", "quota_price_ro"),
    command("QUOTA.PRICE|LIST", "readonly", Key::None, "read", "quota_price_ro"),
    command("QUOTA.PRICE|SET", "write deny-oom", Key::None, "write", "quota_price"),
    command("QUOTA.PRICE|DEL", "write", Key::None, "write", "quota_price"),
    command("QUOTA.PRICE|HELP", "readonly fast", Key::None, "read", "quota_price_ro"),
    command("QUOTA.PLAN|GET", "readonly fast", Key::None, "read", "quota_plan_ro"),
    command("QUOTA.PLAN|LIST", "readonly", Key::None, "read", "quota_plan_ro"),
    command("QUOTA.PLAN|SET", "write deny-oom", Key::None, "write", "quota_plan"),
    command("QUOTA.PLAN|DEL", "write", Key::None, "write", "quota_plan"),
    command("QUOTA.PLAN|HELP", "readonly fast", Key::None, "read", "quota_plan_ro"),
];

/// The ACL category every module command is also in, where the server
/// lets modules add one (Redis 7.4 and later): `+@quota`.
pub const ACL_CATEGORY: &str = "quota";

impl Command {
    /// The command's name without its subcommand (`QUOTA.PRICE`).
    pub fn parent(&self) -> &'static str {
        self.name.split_once('|').map_or(self.name, |(parent, _)| parent)
    }

    /// The subcommand (`GET` of `QUOTA.PRICE|GET`).
    pub fn verb(&self) -> Option<&'static str> {
        self.name.split_once('|').map(|(_, verb)| verb)
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.split_whitespace().any(|f| f == flag)
    }
}

/// A function of the Lua library, with its `redis.register_function` flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Function {
    pub name: &'static str,
    pub flags: &'static [&'static str],
    /// Keys it takes (`FCALL name N`): 0 for the server-wide ones.
    pub keys: u8,
}

const fn function(name: &'static str, flags: &'static [&'static str], keys: u8) -> Function {
    Function { name, flags, keys }
}

const NO_WRITES: &[&str] = &["no-writes"];
const ALLOW_OOM: &[&str] = &["allow-oom"];
/// May read a key outside the tree's slot: the price book (`USAGE`
/// items) and the plan book (`quota:plans`), which every command on a tree
/// that follows a plan reads.
const CROSS_SLOT: &[&str] = &["allow-cross-slot-keys"];
const OOM_CROSS_SLOT: &[&str] = &["allow-oom", "allow-cross-slot-keys"];
const READ_CROSS_SLOT: &[&str] = &["no-writes", "allow-cross-slot-keys"];

/// Every function of the Lua library, in registration order. The flags
/// follow the module's (a test checks the rule): `no-writes` where every
/// command served is `readonly`, `allow-oom` where the commands served
/// write and none is `deny-oom`.
pub const FUNCTIONS: &[Function] = &[
    function("quota_set", CROSS_SLOT, 1),
    function("quota_unset", OOM_CROSS_SLOT, 1),
    function("quota_delpath", OOM_CROSS_SLOT, 1),
    function("quota_grant", CROSS_SLOT, 1),
    function("quota_revoke", OOM_CROSS_SLOT, 1),
    function("quota_reset", OOM_CROSS_SLOT, 1),
    function("quota_assign", CROSS_SLOT, 1),
    function("quota_reserve", CROSS_SLOT, 1),
    function("quota_commit", OOM_CROSS_SLOT, 1),
    function("quota_release", OOM_CROSS_SLOT, 1),
    function("quota_extend", OOM_CROSS_SLOT, 1),
    function("quota_charge", CROSS_SLOT, 1),
    function("quota_allow", CROSS_SLOT, 1),
    function("quota_deny", CROSS_SLOT, 1),
    function("quota_access", OOM_CROSS_SLOT, 1),
    function("quota_label", CROSS_SLOT, 1),
    function("quota_archive", OOM_CROSS_SLOT, 1),
    function("quota_restore", OOM_CROSS_SLOT, 1),
    function("quota_get", READ_CROSS_SLOT, 1),
    function("quota_tree", READ_CROSS_SLOT, 1),
    function("quota_holds", READ_CROSS_SLOT, 1),
    function("quota_history", READ_CROSS_SLOT, 1),
    function("quota_events", READ_CROSS_SLOT, 1),
    function("quota_grants", READ_CROSS_SLOT, 1),
    function("quota_usage", READ_CROSS_SLOT, 1),
    function("quota_price", &[], 0),
    function("quota_price_ro", NO_WRITES, 0),
    function("quota_plan", &[], 0),
    function("quota_plan_ro", NO_WRITES, 0),
    function("quota_estimate", NO_WRITES, 0),
    function("quota_debug", &[], 0),
    // The library's own: expires holds of idle trees (`quota-load --sweep`,
    // the module's timer does it there), and its version.
    function("quota_sweep", ALLOW_OOM, 1),
    function("quota_version", NO_WRITES, 0),
];

impl Function {
    /// The module commands this function serves.
    pub fn commands(&self) -> impl Iterator<Item = &'static Command> + use<> {
        let name = self.name;
        COMMANDS.iter().filter(move |c| c.lua == Some(name))
    }

    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }
}

/// Commands the module runs when memory is full but whose Lua function
/// Redis refuses with `OOM`: a function's flags hold for every verb it
/// serves, and `quota_price` serves `SET` (refused) beside `DEL` (so does
/// `quota_plan`); the test clock's `quota_debug` writes a key. lua/README
/// lists them.
pub const OOM_DIFFERENCES: &[&str] = &["QUOTA.DEBUG", "QUOTA.PRICE|DEL", "QUOTA.PLAN|DEL"];

impl Command {
    /// Whether the module runs it when memory is full (`maxmemory` reached).
    pub fn runs_when_memory_is_full(&self) -> bool {
        !self.has_flag("deny-oom")
    }
}

impl Function {
    /// Whether Redis runs it when memory is full.
    pub fn runs_when_memory_is_full(&self) -> bool {
        self.has_flag("allow-oom") || self.has_flag("no-writes")
    }
}

/// The commands a test client sends without a key, by their name after
/// `QUOTA.` (`PRICE`, `ESTIMATE`, `DEBUG`).
pub fn keyless_commands() -> Vec<&'static str> {
    let mut names: Vec<&str> = COMMANDS
        .iter()
        .filter(|c| c.key == Key::None && c.lua.is_some())
        .map(|c| c.parent().trim_start_matches("QUOTA."))
        .collect();
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_in_the_order_of_their_enum_and_their_defaults_in_range() {
        for (i, s) in SETTINGS.iter().enumerate() {
            assert_eq!(s.setting as usize, i, "{}: SETTINGS is in the order of enum Setting", s.name);
            assert!(s.min <= s.default && s.default <= s.max, "{}: default within min..=max", s.name);
            // The module registers them as Redis i64 configuration.
            assert!(i64::try_from(s.max).is_ok(), "{}", s.name);
            assert_eq!(Setting::named(s.name), Some(s.setting));
            assert!(s.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{}", s.name);
        }
        let limits = Limits::default();
        assert_eq!(limits.max_depth, Setting::MaxDepth.default_value() as usize);
        assert_eq!(limits.tombstone_ttl_ms, Setting::TombstoneTtl.default_value());
    }

    #[test]
    fn every_public_command_has_its_lua_function_and_the_flags_agree() {
        for c in COMMANDS {
            let Some(lua) = c.lua else { continue };
            let f =
                FUNCTIONS.iter().find(|f| f.name == lua).unwrap_or_else(|| panic!("{}: {lua} in FUNCTIONS", c.name));
            assert_eq!(f.keys, u8::from(c.key != Key::None), "{}: keys of {lua}", c.name);
            if c.verb().is_none() {
                let expected = format!("quota_{}", c.name.trim_start_matches("QUOTA.").to_ascii_lowercase());
                assert_eq!(lua, expected, "{}", c.name);
            }
            for flag in c.flags.split_whitespace() {
                assert!(["write", "readonly", "deny-oom", "fast"].contains(&flag), "{}: flag {flag}", c.name);
            }
            assert_eq!(c.has_flag("write"), c.acl.split_whitespace().any(|a| a == "write"), "{}", c.name);
        }
        for f in FUNCTIONS {
            let served: Vec<&Command> = f.commands().collect();
            if served.is_empty() {
                continue;
            }
            let reads_only = served.iter().all(|c| c.has_flag("readonly"));
            assert_eq!(f.has_flag("no-writes"), reads_only, "{}: no-writes where every command only reads", f.name);
            let settles = served.iter().any(|c| c.has_flag("write")) && served.iter().all(|c| !c.has_flag("deny-oom"));
            assert_eq!(f.has_flag("allow-oom"), settles, "{}: allow-oom where no command is deny-oom", f.name);
        }
    }

    #[test]
    fn a_full_memory_refuses_the_same_commands_on_both_backends_but_the_listed_ones() {
        let differ: Vec<&str> = COMMANDS
            .iter()
            .filter(|c| {
                let f = FUNCTIONS.iter().find(|f| Some(f.name) == c.lua);
                f.is_some_and(|f| f.runs_when_memory_is_full() != c.runs_when_memory_is_full())
            })
            .map(|c| c.name)
            .collect();
        assert_eq!(differ, OOM_DIFFERENCES);
    }

    #[test]
    fn the_keyless_commands_are_the_server_wide_ones() {
        assert_eq!(keyless_commands(), ["ESTIMATE", "DEBUG", "PRICE", "PLAN"]);
    }
}
