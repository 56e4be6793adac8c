//! Module configuration: the bounds of SPEC §5 and the test clock switch.
//!
//! Each setting is an atomic read on every command, set at load time from
//! the module arguments (`--loadmodule quota.so MAX_PATHS 1000`, names in
//! any case) and afterwards with `CONFIG SET quota.<name>`.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::engine::Limits;
use crate::engine::names::clip;

/// Longest TTL a hold may be given: 30 days.
pub const MAX_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// One integer setting: its name (as in `CONFIG GET quota.<name>`), the
/// atomic behind it, its default and its range. Module arguments,
/// `CONFIG SET` and the registration with Redis all read these.
pub struct IntSetting {
    pub name: &'static str,
    pub value: &'static AtomicI64,
    pub default: i64,
    pub min: i64,
    pub max: i64,
}

macro_rules! settings {
    ($($setting:ident, $atomic:ident, $name:literal, $default:expr, $min:expr, $max:expr;)*) => {
        $(
            pub static $atomic: AtomicI64 = AtomicI64::new($default);
            pub const $setting: IntSetting =
                IntSetting { name: $name, value: &$atomic, default: $default, min: $min, max: $max };
        )*
        /// Every integer setting.
        pub const INT_SETTINGS: &[IntSetting] = &[$($setting),*];
    };
}

settings! {
    DEFAULT_TTL_SETTING, DEFAULT_TTL, "default_ttl", 60_000, 1, MAX_TTL_MS as i64;
    TOMBSTONE_TTL_SETTING, TOMBSTONE_TTL, "tombstone_ttl", 86_400_000, 1000, 90 * 86_400_000;
    MAX_PATHS_SETTING, MAX_PATHS, "max_paths", 100_000, 1, 100_000_000;
    MAX_POLICIES_SETTING, MAX_POLICIES, "max_policies", 16, 1, 64;
    MAX_HOLDS_SETTING, MAX_HOLDS, "max_holds", 1_000_000, 1, 100_000_000;
    MAX_DEPTH_SETTING, MAX_DEPTH, "max_depth", 16, 1, 64;
    MAX_ITEMS_SETTING, MAX_ITEMS, "max_items", 1000, 1, 10_000;
    EVENTS_LEN_SETTING, EVENTS_LEN, "events_len", 1000, 1, 100_000;
}

pub static TEST_CLOCK: AtomicBool = AtomicBool::new(false);
/// Accept `maxmemory-policy allkeys-*`, under which Redis may evict trees
/// and their limits with them (see `eviction`).
pub static ALLOW_EVICTION: AtomicBool = AtomicBool::new(false);

fn get(value: &AtomicI64) -> usize {
    usize::try_from(value.load(Ordering::Relaxed)).unwrap_or(0)
}

pub fn limits() -> Limits {
    Limits {
        max_paths: get(&MAX_PATHS),
        max_policies: get(&MAX_POLICIES),
        max_holds: get(&MAX_HOLDS),
        max_items: get(&MAX_ITEMS),
        tombstone_ttl_ms: get(&TOMBSTONE_TTL) as u64,
        events_len: get(&EVENTS_LEN),
        max_depth: get(&MAX_DEPTH),
    }
}

pub fn default_ttl_ms() -> u64 {
    get(&DEFAULT_TTL) as u64
}

pub fn test_clock() -> bool {
    TEST_CLOCK.load(Ordering::Relaxed)
}

pub fn allow_eviction() -> bool {
    ALLOW_EVICTION.load(Ordering::Relaxed)
}

/// Applies module arguments given as `NAME value` pairs. Names are matched
/// in any case; an unknown name or a bad value is an error that stops the
/// module from loading, so a typo never goes unnoticed.
pub fn apply_module_args(args: &[String]) -> Result<(), String> {
    if !args.len().is_multiple_of(2) {
        return Err("module arguments come in pairs: NAME value".into());
    }
    for pair in args.chunks(2) {
        let (name, value) = (pair[0].to_ascii_lowercase(), &pair[1]);
        if let Some(flag) = match name.as_str() {
            "test_clock" => Some(&TEST_CLOCK),
            "allow_eviction" => Some(&ALLOW_EVICTION),
            _ => None,
        } {
            let on = match value.to_ascii_lowercase().as_str() {
                "yes" => true,
                "no" => false,
                _ => return Err(format!("{} takes yes or no, not '{}'", pair[0], clip(value))),
            };
            flag.store(on, Ordering::Relaxed);
            continue;
        }
        let Some(setting) = INT_SETTINGS.iter().find(|s| s.name == name) else {
            return Err(format!("unknown module argument '{}'", clip(&pair[0])));
        };
        match value.parse::<i64>() {
            Ok(n) if (setting.min..=setting.max).contains(&n) => setting.value.store(n, Ordering::Relaxed),
            _ => {
                return Err(format!(
                    "{} must be an integer from {} to {}, not '{}'",
                    pair[0],
                    setting.min,
                    setting.max,
                    clip(value)
                ));
            }
        }
    }
    Ok(())
}
