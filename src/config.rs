//! Module configuration: the bounds of SPEC §5 and the test clock switch.
//!
//! Each setting is an atomic read on every command, set at load time from
//! the module arguments (`--loadmodule quota.so MAX_PATHS 1000`, names in
//! any case) and afterwards with `CONFIG SET quota.<name>`.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::engine::Limits;

pub static DEFAULT_TTL: AtomicI64 = AtomicI64::new(60_000);
pub static TOMBSTONE_TTL: AtomicI64 = AtomicI64::new(86_400_000);
pub static MAX_PATHS: AtomicI64 = AtomicI64::new(100_000);
pub static MAX_POLICIES: AtomicI64 = AtomicI64::new(16);
pub static MAX_HOLDS: AtomicI64 = AtomicI64::new(1_000_000);
pub static MAX_DEPTH: AtomicI64 = AtomicI64::new(16);
pub static MAX_ITEMS: AtomicI64 = AtomicI64::new(1000);
pub static EVENTS_LEN: AtomicI64 = AtomicI64::new(1000);
pub static TEST_CLOCK: AtomicBool = AtomicBool::new(false);

/// Longest TTL a hold may be given: 30 days.
pub const MAX_TTL_MS: u64 = 30 * 24 * 3600 * 1000;

/// One integer setting: its name (as in `CONFIG GET quota.<name>`), the
/// atomic behind it, its default and its range.
pub struct IntSetting {
    pub name: &'static str,
    pub value: &'static AtomicI64,
    pub default: i64,
    pub min: i64,
    pub max: i64,
}

pub const INT_SETTINGS: &[IntSetting] = &[
    IntSetting { name: "default_ttl", value: &DEFAULT_TTL, default: 60_000, min: 1, max: MAX_TTL_MS as i64 },
    IntSetting { name: "tombstone_ttl", value: &TOMBSTONE_TTL, default: 86_400_000, min: 1000, max: 90 * 86_400_000 },
    IntSetting { name: "max_paths", value: &MAX_PATHS, default: 100_000, min: 1, max: 100_000_000 },
    IntSetting { name: "max_policies", value: &MAX_POLICIES, default: 16, min: 1, max: 64 },
    IntSetting { name: "max_holds", value: &MAX_HOLDS, default: 1_000_000, min: 1, max: 100_000_000 },
    IntSetting { name: "max_depth", value: &MAX_DEPTH, default: 16, min: 1, max: 64 },
    IntSetting { name: "max_items", value: &MAX_ITEMS, default: 1000, min: 1, max: 10_000 },
    IntSetting { name: "events_len", value: &EVENTS_LEN, default: 1000, min: 1, max: 100_000 },
];

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
    }
}

pub fn max_depth() -> usize {
    get(&MAX_DEPTH)
}

pub fn default_ttl_ms() -> u64 {
    get(&DEFAULT_TTL) as u64
}

pub fn test_clock() -> bool {
    TEST_CLOCK.load(Ordering::Relaxed)
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
        if name == "test_clock" {
            let on = match value.to_ascii_lowercase().as_str() {
                "yes" => true,
                "no" => false,
                _ => return Err(format!("TEST_CLOCK takes yes or no, not '{value}'")),
            };
            TEST_CLOCK.store(on, Ordering::Relaxed);
            continue;
        }
        let Some(setting) = INT_SETTINGS.iter().find(|s| s.name == name) else {
            return Err(format!("unknown module argument '{}'", pair[0]));
        };
        match value.parse::<i64>() {
            Ok(n) if (setting.min..=setting.max).contains(&n) => setting.value.store(n, Ordering::Relaxed),
            _ => {
                return Err(format!(
                    "{} must be an integer from {} to {}, not '{value}'",
                    pair[0], setting.min, setting.max
                ));
            }
        }
    }
    Ok(())
}
