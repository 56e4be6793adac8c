//! Module configuration: the bounds of SPEC §5 and the test clock switch.
//!
//! Each setting is an atomic read on every command, set at load time from
//! the module arguments (`--loadmodule quota.so MAX_PATHS 1000`, names in
//! any case) and afterwards with `CONFIG SET quota.<name>`.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use crate::engine::Limits;
use crate::engine::catalog::{SETTINGS, Setting, SettingSpec};
use crate::engine::names::clip;

pub use crate::engine::catalog::MAX_TTL_MS;

/// The value of each setting of the catalog (`engine::catalog::SETTINGS`),
/// in its order: module arguments, `CONFIG SET` and the registration with
/// Redis all go through these.
static VALUES: [AtomicI64; SETTINGS.len()] = {
    let mut values = [const { AtomicI64::new(0) }; SETTINGS.len()];
    let mut i = 0;
    while i < SETTINGS.len() {
        values[i] = AtomicI64::new(SETTINGS[i].default as i64);
        i += 1;
    }
    values
};

/// Every integer setting with the atomic that holds its value.
pub fn int_settings() -> impl Iterator<Item = (&'static SettingSpec, &'static AtomicI64)> {
    SETTINGS.iter().zip(&VALUES)
}

pub static TEST_CLOCK: AtomicBool = AtomicBool::new(false);
/// Accept `maxmemory-policy allkeys-*`, under which Redis may evict trees
/// and their limits with them (see `eviction`).
pub static ALLOW_EVICTION: AtomicBool = AtomicBool::new(false);

fn get(setting: Setting) -> u64 {
    u64::try_from(VALUES[setting as usize].load(Ordering::Relaxed)).unwrap_or(0)
}

pub fn limits() -> Limits {
    Limits::from_settings(get)
}

/// Ledger entries kept per tree (`MAXLEN ~`); 0: no ledger.
pub fn ledger_len() -> u64 {
    get(Setting::LedgerLen)
}

pub fn default_ttl_ms() -> u64 {
    get(Setting::DefaultTtl)
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
        let Some((setting, atomic)) = int_settings().find(|(s, _)| s.name == name) else {
            return Err(format!("unknown module argument '{}'", clip(&pair[0])));
        };
        match value.parse::<u64>() {
            Ok(n) if (setting.min..=setting.max).contains(&n) => atomic.store(n as i64, Ordering::Relaxed),
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
