//! Registration with Redis: the data type, the commands, the
//! configuration, `INFO quota`, and the timer that expires holds.

use redis_module::configuration::ConfigurationFlags;
use redis_module::{Context, InfoContext, RedisResult, RedisString, Status, raw, redis_module};

use crate::commands::{self, internal, policy, price, read, reserve};
use crate::datatype::QUOTA_TYPE;
use crate::{clock, config, eviction, expiry, stats};

fn init(ctx: &Context, args: &[RedisString]) -> Status {
    let args: Vec<String> = args.iter().map(|a| a.to_string_lossy()).collect();
    if let Err(e) = config::apply_module_args(&args) {
        ctx.log_warning(&format!("quota: {e}"));
        return Status::Err;
    }
    // A truncated payload (RESTORE, a cut RDB) must be an error we can
    // report, not a crash inside Redis's loader.
    ctx.set_module_options(raw::ModuleOptions::HANDLE_IO_ERRORS);
    clock::init();
    expiry::start(ctx);
    eviction::start(ctx);
    if config::test_clock() {
        ctx.log_warning(
            "quota: TEST_CLOCK is on: time only moves with QUOTA.DEBUG CLOCK; never use this in production",
        );
    }
    Status::Ok
}

// The builder API would name the section `quota_quota`; the plain calls
// give `# quota` with fields `quota_<name>`.
#[allow(deprecated)]
fn info(ctx: &InfoContext, _for_crash_report: bool) {
    ctx.add_info_section(None);
    for (name, gauge) in [("trees", &stats::TREES), ("paths", &stats::PATHS), ("live_holds", &stats::HOLDS)] {
        ctx.add_info_field_long_long(name, stats::gauge(gauge));
    }
    for (name, counter) in [
        ("reservations_allowed", &stats::RESERVES_ALLOWED),
        ("reservations_denied", &stats::RESERVES_DENIED),
        ("commits", &stats::COMMITS),
        ("releases", &stats::RELEASES),
        ("charges", &stats::CHARGES),
        ("expired_holds", &stats::EXPIRED_HOLDS),
        ("events", &stats::EVENTS),
        ("expire_paused_ticks", &stats::EXPIRE_PAUSED_TICKS),
        ("expire_deferred_ticks", &stats::EXPIRE_DEFERRED_TICKS),
        ("expire_tick_max", &stats::EXPIRE_TICK_MAX),
    ] {
        ctx.add_info_field_long_long(name, stats::read(counter) as i64);
    }
    ctx.add_info_field_long_long("prices", crate::prices::with_book(|b| b.len()) as i64);
    ctx.add_info_field_long_long("scheduled_trees", expiry::scheduled_trees() as i64);
    // 1 while maxmemory-policy may evict trees; writes are then refused
    // unless allow_eviction is 1.
    ctx.add_info_field_long_long("eviction_policy_evicts_trees", i64::from(eviction::policy_evicts_trees()));
    ctx.add_info_field_long_long("allow_eviction", i64::from(config::allow_eviction()));
    ctx.add_info_field_long_long("writes_refused_eviction", i64::from(eviction::refused()));
}

macro_rules! tree_command {
    ($fn_name:ident, $command:expr) => {
        fn $fn_name(ctx: &Context, args: Vec<RedisString>) -> RedisResult {
            commands::run(ctx, args, &$command)
        }
    };
}

tree_command!(cmd_set, policy::SET);
tree_command!(cmd_unset, policy::UNSET);
tree_command!(cmd_delpath, policy::DELPATH);
tree_command!(cmd_grant, policy::GRANT);
tree_command!(cmd_reset, policy::RESET);
tree_command!(cmd_history, read::HISTORY);
tree_command!(cmd_events, read::EVENTS);
tree_command!(cmd_reserve, reserve::RESERVE);
tree_command!(cmd_commit, reserve::COMMIT);
tree_command!(cmd_release, reserve::RELEASE);
tree_command!(cmd_extend, reserve::EXTEND);
tree_command!(cmd_charge, reserve::CHARGE);
tree_command!(cmd_get, read::GET);
tree_command!(cmd_tree, read::TREE);
tree_command!(cmd_holds, read::HOLDS);

redis_module! {
    name: "quota",
    version: 1,
    allocator: (redis_module::alloc::RedisAlloc, redis_module::alloc::RedisAlloc),
    data_types: [QUOTA_TYPE],
    init: init,
    info: info,
    commands: [
        ["QUOTA.SET", cmd_set, "write deny-oom", 1, 1, 1, ""],
        ["QUOTA.UNSET", cmd_unset, "write", 1, 1, 1, ""],
        ["QUOTA.DELPATH", cmd_delpath, "write", 1, 1, 1, ""],
        ["QUOTA.GRANT", cmd_grant, "write deny-oom", 1, 1, 1, ""],
        ["QUOTA.RESET", cmd_reset, "write", 1, 1, 1, ""],
        ["QUOTA.RESERVE", cmd_reserve, "write deny-oom", 1, 1, 1, ""],
        ["QUOTA.COMMIT", cmd_commit, "write", 1, 1, 1, ""],
        ["QUOTA.RELEASE", cmd_release, "write", 1, 1, 1, ""],
        ["QUOTA.EXTEND", cmd_extend, "write", 1, 1, 1, ""],
        ["QUOTA.CHARGE", cmd_charge, "write deny-oom", 1, 1, 1, ""],
        ["QUOTA.GET", cmd_get, "readonly", 1, 1, 1, ""],
        ["QUOTA.TREE", cmd_tree, "readonly", 1, 1, 1, ""],
        ["QUOTA.HOLDS", cmd_holds, "readonly", 1, 1, 1, ""],
        ["QUOTA.HISTORY", cmd_history, "readonly", 1, 1, 1, ""],
        ["QUOTA.EVENTS", cmd_events, "readonly", 1, 1, 1, ""],
        ["QUOTA.REPLAY", internal::replay, "write", 1, 1, 1, ""],
        ["QUOTA.LOADTREE", internal::loadtree, "write", 1, 1, 1, ""],
        ["QUOTA.PRICE", price::price, "may-replicate", 0, 0, 0, ""],
        ["QUOTA.ESTIMATE", price::estimate, "readonly", 0, 0, 0, ""],
        ["QUOTA.DEBUG", internal::debug, "", 0, 0, 0, ""],
    ],
    event_handlers: [
        [@GENERIC @LOADED: expiry::on_keyspace_event],
    ],
    configurations: [
        i64: [
            [config::DEFAULT_TTL_SETTING.name, &config::DEFAULT_TTL, config::DEFAULT_TTL_SETTING.default, config::DEFAULT_TTL_SETTING.min, config::DEFAULT_TTL_SETTING.max, ConfigurationFlags::DEFAULT, None],
            [config::TOMBSTONE_TTL_SETTING.name, &config::TOMBSTONE_TTL, config::TOMBSTONE_TTL_SETTING.default, config::TOMBSTONE_TTL_SETTING.min, config::TOMBSTONE_TTL_SETTING.max, ConfigurationFlags::DEFAULT, None],
            [config::MAX_PATHS_SETTING.name, &config::MAX_PATHS, config::MAX_PATHS_SETTING.default, config::MAX_PATHS_SETTING.min, config::MAX_PATHS_SETTING.max, ConfigurationFlags::DEFAULT, None],
            [config::MAX_POLICIES_SETTING.name, &config::MAX_POLICIES, config::MAX_POLICIES_SETTING.default, config::MAX_POLICIES_SETTING.min, config::MAX_POLICIES_SETTING.max, ConfigurationFlags::DEFAULT, None],
            [config::MAX_HOLDS_SETTING.name, &config::MAX_HOLDS, config::MAX_HOLDS_SETTING.default, config::MAX_HOLDS_SETTING.min, config::MAX_HOLDS_SETTING.max, ConfigurationFlags::DEFAULT, None],
            [config::MAX_DEPTH_SETTING.name, &config::MAX_DEPTH, config::MAX_DEPTH_SETTING.default, config::MAX_DEPTH_SETTING.min, config::MAX_DEPTH_SETTING.max, ConfigurationFlags::DEFAULT, None],
            [config::MAX_ITEMS_SETTING.name, &config::MAX_ITEMS, config::MAX_ITEMS_SETTING.default, config::MAX_ITEMS_SETTING.min, config::MAX_ITEMS_SETTING.max, ConfigurationFlags::DEFAULT, None],
            [config::EVENTS_LEN_SETTING.name, &config::EVENTS_LEN, config::EVENTS_LEN_SETTING.default, config::EVENTS_LEN_SETTING.min, config::EVENTS_LEN_SETTING.max, ConfigurationFlags::DEFAULT, None],
        ],
        string: [],
        bool: [
            ["test_clock", &config::TEST_CLOCK, false, ConfigurationFlags::IMMUTABLE, None],
            ["allow_eviction", &config::ALLOW_EVICTION, false, ConfigurationFlags::DEFAULT, None],
        ],
        enum: [],
        module_args_as_configuration: false,
    ]
}
