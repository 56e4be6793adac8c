//! The module's command table and configuration beside the catalog
//! (`engine::catalog`), which they derive from.

use crate::commands::{self, Handler, read};
use crate::config;
use crate::engine::catalog::{self, Key, SETTINGS};

#[test]
fn the_tree_commands_are_the_catalogs() {
    // The tree writes are the ones QUOTA.REPLAY dispatches on (checked
    // against the catalog below), then the reads.
    let reads = [&read::GET, &read::TREE, &read::HOLDS, &read::HISTORY, &read::EVENTS, &read::GRANTS];
    let tree = commands::TREE_COMMANDS.iter().copied().chain(reads);
    for command in tree {
        let spec = catalog::COMMANDS.iter().find(|c| c.name == command.name);
        let spec = spec.unwrap_or_else(|| panic!("{} is in the catalog", command.name));
        let writes = matches!(command.handler, Handler::Write(_));
        assert_eq!(spec.key, if writes { Key::Writes } else { Key::Reads }, "{}", command.name);
    }
    // QUOTA.REPLAY replays every tree write a client can send.
    let replayed: Vec<&str> = commands::TREE_COMMANDS.iter().map(|c| c.name).collect();
    let writes: Vec<&str> =
        catalog::COMMANDS.iter().filter(|c| c.key == Key::Writes && c.lua.is_some()).map(|c| c.name).collect();
    assert_eq!(replayed, writes);
}

#[test]
fn module_arguments_take_every_setting_in_its_range() {
    for s in SETTINGS {
        let arg = |v: u64| vec![s.name.to_ascii_uppercase(), v.to_string()];
        assert!(config::apply_module_args(&arg(s.min.saturating_sub(1))).is_err() || s.min == 0, "{}", s.name);
        assert!(config::apply_module_args(&arg(s.max + 1)).is_err(), "{}", s.name);
        assert!(config::apply_module_args(&arg(s.default)).is_ok(), "{}", s.name);
    }
    assert_eq!(config::limits(), crate::engine::Limits::default());
    assert_eq!(config::default_ttl_ms(), catalog::Setting::DefaultTtl.default_value());
}
