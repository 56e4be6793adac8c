//! The dashboard's only way to Redis: a closed set of quota commands, sent as
//! the module's `QUOTA.X key args` or as the Lua library's `FCALL quota_x 1
//! key args`, with RESP3 replies turned into JSON values. No page can send
//! any other command on a tree: the few others this file sends (SCAN,
//! HEXISTS, TIME, SUBSCRIBE) are written here, with fixed names. The alert
//! companion's own keys (`quota:alerts:*`) are read and written in
//! alerts/store.rs and alerts/worker.rs, over [`Quota::shared`] and
//! [`Quota::dedicated`].

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ClientTlsConfig, IntoConnectionInfo, ProtocolVersion, TlsCertificates};
use serde_json::{Map, Value as Json};

use crate::options::{BackendChoice, Options};
use quota_engine::catalog;

/// How long one command may take before the page says Redis did not answer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many keys are looked at to fill one page of trees, so a
/// search on a database of millions of keys answers in time (the page
/// offers to look further).
const SCAN_BUDGET: usize = 100_000;
/// How many commands of one page ([`Quota::call_each`]) are in flight at
/// once on the shared connection.
const CALLS_AT_ONCE: usize = 16;
/// Keys SCAN looks at a round: small, so a page of trees is not much more
/// than the 50 it asks for.
const SCAN_COUNT: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Module,
    Lua,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Module => "module",
            Backend::Lua => "Lua library",
        }
    }
}

/// Every command the dashboard may send. Reads go to `FCALL_RO` on the Lua
/// library; writes are refused in read-only mode before anything is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmd {
    Set,
    Unset,
    DelPath,
    Allow,
    Deny,
    AccessClear,
    Get,
    Tree,
    Holds,
    Grants,
    Grant,
    Revoke,
    Reset,
    Assign,
    Label,
    Archive,
    Restore,
    History,
    Usage,
    Events,
    Release,
    Extend,
    PriceGet,
    PriceList,
    PriceSet,
    PriceDel,
    PlanGet,
    PlanList,
    PlanSet,
    PlanDel,
    Estimate,
    ClockGet,
}

impl Cmd {
    /// Its entry in the catalog both backends share (the module command,
    /// with its verb: `QUOTA.PRICE|GET`), and the words sent before the
    /// caller's arguments beyond the verb.
    fn entry(self) -> (&'static str, &'static [&'static str]) {
        use Cmd::*;
        match self {
            Set => ("QUOTA.SET", &[]),
            Unset => ("QUOTA.UNSET", &[]),
            DelPath => ("QUOTA.DELPATH", &[]),
            Allow => ("QUOTA.ALLOW", &[]),
            Deny => ("QUOTA.DENY", &[]),
            AccessClear => ("QUOTA.ACCESS", &[]),
            Get => ("QUOTA.GET", &[]),
            Tree => ("QUOTA.TREE", &[]),
            Holds => ("QUOTA.HOLDS", &[]),
            Grants => ("QUOTA.GRANTS", &[]),
            Grant => ("QUOTA.GRANT", &[]),
            Revoke => ("QUOTA.REVOKE", &[]),
            Reset => ("QUOTA.RESET", &[]),
            Assign => ("QUOTA.ASSIGN", &[]),
            Label => ("QUOTA.LABEL", &[]),
            Archive => ("QUOTA.ARCHIVE", &[]),
            Restore => ("QUOTA.RESTORE", &[]),
            History => ("QUOTA.HISTORY", &[]),
            Usage => ("QUOTA.USAGE", &[]),
            Events => ("QUOTA.EVENTS", &[]),
            Release => ("QUOTA.RELEASE", &[]),
            Extend => ("QUOTA.EXTEND", &[]),
            PriceGet => ("QUOTA.PRICE|GET", &[]),
            PriceList => ("QUOTA.PRICE|LIST", &[]),
            PriceSet => ("QUOTA.PRICE|SET", &[]),
            PriceDel => ("QUOTA.PRICE|DEL", &[]),
            PlanGet => ("QUOTA.PLAN|GET", &[]),
            PlanList => ("QUOTA.PLAN|LIST", &[]),
            PlanSet => ("QUOTA.PLAN|SET", &[]),
            PlanDel => ("QUOTA.PLAN|DEL", &[]),
            Estimate => ("QUOTA.ESTIMATE", &[]),
            ClockGet => ("QUOTA.DEBUG", &["CLOCK", "GET"]),
        }
    }

    /// How it is sent, from the shared catalog (src/engine/catalog.rs,
    /// which the module registers and the Lua library is checked against):
    /// the module's command and verb, the Lua function, whether it names a
    /// tree, whether it writes (the module's `write` flag), and whether the
    /// Lua function may go by `FCALL_RO` (registered `no-writes`: not
    /// `quota_debug`, whose SET moves the clock, though its GET only reads).
    /// None only for a name the catalog lacks (a test checks every Cmd).
    fn spec(self) -> Option<Spec> {
        let (name, extra) = self.entry();
        let c = catalog::COMMANDS.iter().find(|c| c.name == name)?;
        let function = c.lua?;
        Some(Spec {
            command: c.parent(),
            verb: c.verb(),
            extra,
            function,
            keyed: c.key != catalog::Key::None,
            writes: c.has_flag("write"),
            read_only_call: catalog::FUNCTIONS.iter().any(|f| f.name == function && f.has_flag("no-writes")),
        })
    }
}

/// What [`Cmd::spec`] tells of a command.
struct Spec {
    command: &'static str,
    verb: Option<&'static str>,
    extra: &'static [&'static str],
    function: &'static str,
    keyed: bool,
    writes: bool,
    read_only_call: bool,
}

/// A command's refusal or a failure to reach Redis. `message` is shown as
/// it is: for a command's error it is the command's own text
/// (`ERR syntax: …`, `NOTFOUND no such path`).
#[derive(Clone, Debug)]
pub struct QuotaError {
    /// The error's first word (`ERR`, `NOTFOUND`, `LIMIT`, `NOPERM`…), or
    /// `READONLY` for a write refused by `--read-only`, `REDIS` when Redis
    /// could not be reached.
    pub kind: String,
    pub message: String,
}

impl QuotaError {
    fn read_only() -> QuotaError {
        QuotaError {
            kind: "READONLY".to_string(),
            message: "this dashboard is read-only (started with --read-only): nothing was changed".to_string(),
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.kind == "NOTFOUND"
    }
}

impl std::fmt::Display for QuotaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub fn error_of(e: redis::RedisError) -> QuotaError {
    match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => QuotaError { kind: code.to_string(), message: format!("{code} {detail}") },
        (Some(code), None) => QuotaError { kind: code.to_string(), message: code.to_string() },
        _ if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() || e.is_timeout() => {
            QuotaError {
                kind: "REDIS".to_string(),
                message: format!(
                    "Redis is not answering ({e}). The dashboard reconnects by itself: reload the page in a moment."
                ),
            }
        }
        _ => QuotaError { kind: "REDIS".to_string(), message: format!("Redis did not answer as expected: {e}") },
    }
}

/// A reply as JSON: a RESP3 map is an object (its fields in name order:
/// serde_json's `preserve_order` would be unified into the engine, whose plan
/// and price errors come in byte order; pages pick fields by name),
/// strings stay strings (amounts are exact decimal strings, never floats),
/// nil is null.
pub fn json_of(v: redis::Value) -> Json {
    use redis::Value as V;
    match v {
        V::Nil => Json::Null,
        V::Int(i) => Json::from(i),
        V::BulkString(b) => Json::String(String::from_utf8_lossy(&b).into_owned()),
        V::SimpleString(s) => Json::String(s),
        V::Okay => Json::String("OK".to_string()),
        V::Array(items) | V::Set(items) => Json::Array(items.into_iter().map(json_of).collect()),
        V::Map(pairs) => {
            let mut m = Map::new();
            for (k, v) in pairs {
                let key = match json_of(k) {
                    Json::String(s) => s,
                    other => other.to_string(),
                };
                // META pairs keep the order given: flat [name, value, …].
                let value = match v {
                    V::Map(meta) if key == "meta" => {
                        Json::Array(meta.into_iter().flat_map(|(n, x)| [json_of(n), json_of(x)]).collect())
                    }
                    v => json_of(v),
                };
                m.insert(key, value);
            }
            Json::Object(m)
        }
        V::Attribute { data, .. } => json_of(*data),
        V::Double(d) => Json::String(d.to_string()),
        V::Boolean(b) => Json::Bool(b),
        V::VerbatimString { text, .. } => Json::String(text),
        V::BigNumber(n) => Json::String(format!("{n:?}")),
        V::Push { data, .. } => Json::Array(data.into_iter().map(json_of).collect()),
        V::ServerError(e) => Json::String(format!("{e:?}")),
        _ => Json::Null,
    }
}

#[derive(Clone)]
pub struct Quota {
    client: Client,
    /// Reconnects by itself (with backoff) when Redis restarts; a command
    /// in flight when the link broke fails and is never sent again.
    conn: ConnectionManager,
    pub backend: Backend,
    pub read_only: bool,
    /// host:port/db, shown in the page header (never the password).
    pub server: String,
    /// The Redis account it logs in as (`default` without one): named when
    /// ACL refuses something.
    pub user: String,
    /// Where the quota clock is read: [`CLOCK_UNKNOWN`] until a first answer
    /// decides it, then [`CLOCK_TEST`] (QUOTA.DEBUG CLOCK GET) or
    /// [`CLOCK_TIME`] (TIME: the server has no test clock, or this account may
    /// not ask for it), for good.
    clock: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

const CLOCK_UNKNOWN: u8 = 0;
const CLOCK_TEST: u8 = 1;
const CLOCK_TIME: u8 = 2;

/// Whether QUOTA.DEBUG CLOCK GET's refusal says the server will never
/// answer it (no test clock, no such command or function, ACL), rather
/// than a passing failure.
fn clock_is_refused(e: &QuotaError) -> bool {
    let m = e.message.to_ascii_lowercase();
    // Redis unreachable ("Connection refused") decides nothing.
    e.kind != "REDIS"
        && (e.kind == "NOPERM"
            || is_acl_refusal(&e.message)
            || ["unknown", "refused", "disabled", "not found"].iter().any(|w| m.contains(w)))
}

impl Quota {
    pub async fn connect(o: &Options) -> Result<Quota, String> {
        let info = o.redis.as_str().into_connection_info().map_err(|e| format!("bad --redis URL: {e}"))?;
        let mut settings = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
        if settings.password().is_none()
            && let Ok(password) = std::env::var("REDISCLI_AUTH")
            && !password.is_empty()
        {
            settings = settings.set_password(password);
        }
        let mut info = info.set_redis_settings(settings);
        let server = format!("{}/{}", info.addr(), info.redis_settings().db());
        let user = info.redis_settings().username().unwrap_or("default").to_string();
        let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
        if !tls && (o.insecure || o.cacert.is_some() || o.cert.is_some()) {
            return Err("--cacert, --cert, --key and --insecure are for TLS: use a rediss:// URL".to_string());
        }
        if let redis::ConnectionAddr::TcpTls { host, port, insecure, tls_params } = info.addr().clone() {
            info = info.set_addr(redis::ConnectionAddr::TcpTls {
                host,
                port,
                insecure: insecure || o.insecure,
                tls_params,
            });
        }
        let read = |p: &str, what: &str| std::fs::read(p).map_err(|e| format!("cannot read {what} {p}: {e}"));
        let client = if o.cacert.is_some() || o.cert.is_some() {
            let root_cert = o.cacert.as_deref().map(|p| read(p, "--cacert")).transpose()?;
            let client_tls = match (&o.cert, &o.key) {
                (Some(c), Some(k)) => {
                    Some(ClientTlsConfig { client_cert: read(c, "--cert")?, client_key: read(k, "--key")? })
                }
                _ => None,
            };
            Client::build_with_tls(info, TlsCertificates { client_tls, root_cert })
        } else {
            Client::open(info)
        }
        .map_err(|e| format!("{server}: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|e| format!("cannot reach Redis at {server}: {e}"))?;
        let mut quota = Quota {
            client,
            conn,
            backend: Backend::Module,
            read_only: o.read_only,
            server,
            user,
            clock: Default::default(),
        };
        quota.backend = match o.backend {
            BackendChoice::Module if quota.has_module().await => Backend::Module,
            BackendChoice::Lua if quota.has_lua().await => Backend::Lua,
            BackendChoice::Auto if quota.has_module().await => Backend::Module,
            BackendChoice::Auto if quota.has_lua().await => Backend::Lua,
            _ => return Err(quota.missing(o.backend).await),
        };
        // Decides the clock's source now when the server's answer is clear.
        let _ = quota.now_ms().await;
        Ok(quota)
    }

    /// Whether the module's commands exist. Asks with a command the
    /// dashboard's ACL account has anyway: any answer to `QUOTA.PRICE LIST`
    /// but "unknown command" (a refusal by ACL included) means the module is
    /// loaded.
    async fn has_module(&self) -> bool {
        let mut conn = self.conn.clone();
        let probe: Result<redis::Value, _> = redis::cmd("QUOTA.PRICE").arg("LIST").query_async(&mut conn).await;
        match probe {
            Ok(_) => true,
            Err(e) => !e.to_string().to_ascii_lowercase().contains("unknown command") && e.code().is_some(),
        }
    }

    /// Whether the Lua library answers (`quota_version`).
    async fn has_lua(&self) -> bool {
        let mut conn = self.conn.clone();
        let version: Result<redis::Value, _> =
            redis::cmd("FCALL_RO").arg("quota_version").arg(0).query_async(&mut conn).await;
        version.is_ok()
    }

    /// Why the dashboard cannot start: the backend asked for (or either, for
    /// auto) is not on the server.
    async fn missing(&self, choice: BackendChoice) -> String {
        let mut conn = self.conn.clone();
        let version: Result<redis::Value, _> =
            redis::cmd("FCALL_RO").arg("quota_version").arg(0).query_async(&mut conn).await;
        let lua_error = version.err().map(|e| self.explain(error_of(e)).message).unwrap_or_default();
        match choice {
            BackendChoice::Module => format!(
                "{} does not have the quota module (QUOTA.* commands are unknown there): load it (make run), \
                 or give --backend lua or auto",
                self.server
            ),
            BackendChoice::Lua => format!(
                "{} does not have the quota Lua library ({lua_error}): load it (make run-lua or quota-load), \
                 or give --backend module or auto",
                self.server
            ),
            BackendChoice::Auto => format!(
                "{} has neither the quota module (QUOTA.* commands) nor the Lua library ({lua_error}): \
                 load one (make run, make run-lua or quota-load), or give --backend module or lua",
                self.server
            ),
        }
    }

    /// Sends one quota command. `key` is the tree for the commands that
    /// name one (None for the price book, plans, estimates and the clock).
    pub async fn call(&self, cmd: Cmd, key: Option<&str>, args: &[&str]) -> Result<Json, QuotaError> {
        let Some(spec) = cmd.spec() else {
            return Err(QuotaError {
                kind: "ERR".to_string(),
                message: format!("the dashboard does not know {cmd:?}"),
            });
        };
        if spec.writes && self.read_only {
            return Err(QuotaError::read_only());
        }
        let mut c = match self.backend {
            Backend::Module => redis::cmd(spec.command),
            Backend::Lua => {
                let mut c = redis::cmd(if spec.read_only_call { "FCALL_RO" } else { "FCALL" });
                c.arg(spec.function).arg(if spec.keyed { 1 } else { 0 });
                c
            }
        };
        if spec.keyed {
            c.arg(key.unwrap_or_default());
        }
        c.arg(spec.verb).arg(spec.extra).arg(args);
        if cmd == Cmd::AccessClear {
            c.arg("CLEAR");
        }
        let mut conn = self.conn.clone();
        c.query_async::<redis::Value>(&mut conn).await.map(json_of).map_err(|e| self.explain(error_of(e)))
    }

    /// A refusal by ACL said plainly: Redis's own words (NOPERM …; inside
    /// a Lua function on Redis 7.0, "… can't access …"), then which account
    /// was refused and where its recipe is.
    pub fn explain(&self, e: QuotaError) -> QuotaError {
        if e.kind == "REDIS" {
            // Which Redis: "Redis at 127.0.0.1:6379/0 is not answering …".
            let message = match e.message.strip_prefix("Redis ") {
                Some(rest) if !rest.starts_with("at ") => format!("Redis at {} {rest}", self.server),
                _ => e.message,
            };
            return QuotaError { kind: e.kind, message };
        }
        if !is_acl_refusal(&e.message) {
            return e;
        }
        QuotaError {
            kind: "NOPERM".to_string(),
            message: format!(
                "{} (Redis refused this to quota-dash's account ({}) by ACL: {} has the recipe of the account \
                 quota-dash needs)",
                e.message,
                self.user,
                match self.backend {
                    Backend::Module => "README.md, \"Access control (ACL)\",",
                    Backend::Lua => "lua/README.md, \"Access control\",",
                }
            ),
        }
    }

    /// The same command once for each `(key, arguments)` of `calls` (a
    /// page's tree roots, plans, prices), at most [`CALLS_AT_ONCE`] in
    /// flight at once; the answers in the order of `calls`.
    pub async fn call_each(
        &self,
        cmd: Cmd,
        calls: Vec<(Option<String>, Vec<String>)>,
    ) -> Vec<Result<Json, QuotaError>> {
        use futures_util::StreamExt;
        futures_util::stream::iter(calls)
            .map(|(key, args)| async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                self.call(cmd, key.as_deref(), &args).await
            })
            .buffered(CALLS_AT_ONCE)
            .collect()
            .await
    }

    /// The quota clock in Unix ms: the test clock when the server has one,
    /// else the server's TIME. Which one is decided by the first clear
    /// answer (at start) and kept, so a page asks once, not twice.
    pub async fn now_ms(&self) -> Result<u64, QuotaError> {
        use std::sync::atomic::Ordering;
        let source = self.clock.load(Ordering::Relaxed);
        if source != CLOCK_TIME {
            match self.call(Cmd::ClockGet, None, &[]).await {
                Ok(v) if v.as_u64().is_some() => {
                    self.clock.store(CLOCK_TEST, Ordering::Relaxed);
                    return Ok(v.as_u64().unwrap_or_default());
                }
                Err(e) if source == CLOCK_UNKNOWN && clock_is_refused(&e) => {
                    self.clock.store(CLOCK_TIME, Ordering::Relaxed);
                }
                // The test clock failed this time (Redis restarting): no
                // other clock would be the same one.
                Err(e) if source == CLOCK_TEST => return Err(e),
                _ => {}
            }
        }
        let mut conn = self.conn.clone();
        let (secs, micros): (u64, u64) =
            redis::cmd("TIME").query_async(&mut conn).await.map_err(|e| self.explain(error_of(e)))?;
        Ok(secs.saturating_mul(1000).saturating_add(micros / 1000))
    }

    /// Trees whose names match the SCAN `pattern`, at least `want` unless
    /// the scan ends first (every tree a SCAN batch returned is kept), and the
    /// cursor to go on from ("0" at the end). Keys that are not UTF-8 are left
    /// out (see [`Quota::scan_trees`]).
    pub async fn trees(&self, pattern: &str, cursor: &str, want: usize) -> Result<(Vec<String>, String), QuotaError> {
        self.trees_within(pattern, cursor, want, SCAN_BUDGET).await
    }

    /// [`Quota::trees`], looking at no more than about `budget` keys (a
    /// step of the alert companion's sweep, short so news is not held up).
    pub async fn trees_within(
        &self,
        pattern: &str,
        cursor: &str,
        want: usize,
        budget: usize,
    ) -> Result<(Vec<String>, String), QuotaError> {
        let (found, next) =
            self.scan(pattern, &TreesFrom { cursor: cursor.to_string(), after: None }, want, false, budget).await?;
        Ok((found.into_iter().filter_map(Result::ok).collect(), next.cursor))
    }

    /// One page of at most `want` trees whose names match the SCAN
    /// `pattern`, from `from`, sorted by name, and where the next page starts
    /// (cursor "0" without `after` at the end). A key that is not UTF-8 comes
    /// as `Err(its bytes shown as text)`: the pages cannot name it in a URL.
    pub async fn scan_trees(
        &self,
        pattern: &str,
        from: &TreesFrom,
        want: usize,
    ) -> Result<(Vec<Result<String, String>>, TreesFrom), QuotaError> {
        self.scan(pattern, from, want, true, SCAN_BUDGET).await
    }

    /// SCAN batches of [`SCAN_COUNT`] keys until `want` trees are found, the
    /// end, or [`SCAN_BUDGET`] keys looked at. With `cut`, a batch that
    /// brings more than the page has room for is sorted and cut: the next
    /// page scans that batch again and skips the names up to the last shown.
    async fn scan(
        &self,
        pattern: &str,
        from: &TreesFrom,
        want: usize,
        cut: bool,
        budget: usize,
    ) -> Result<(Vec<Result<String, String>>, TreesFrom), QuotaError> {
        let mut conn = self.conn.clone();
        let mut cursor = from.cursor.clone();
        let mut after = from.after.clone();
        let mut found: Vec<Result<String, String>> = Vec::new();
        let mut looked = 0;
        loop {
            let kind = match self.backend {
                Backend::Module => "quotatree",
                Backend::Lua => "hash",
            };
            let (next, keys): (String, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(&cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_COUNT)
                .arg("TYPE")
                .arg(kind)
                .query_async(&mut conn)
                .await
                .map_err(|e| self.explain(error_of(e)))?;
            looked += SCAN_COUNT;
            let keys = match self.backend {
                Backend::Module => keys,
                Backend::Lua => self.lua_trees(keys).await?,
            };
            let mut batch: Vec<Result<String, String>> =
                keys.into_iter().map(|k| String::from_utf8(k).map_err(|e| lossy(e.as_bytes()))).collect();
            batch.sort_by(|a, b| name_of(a).cmp(name_of(b)));
            if let Some(after) = after.take() {
                batch.retain(|k| name_of(k) > after.as_str());
            }
            let room = want.saturating_sub(found.len());
            if cut && batch.len() > room {
                batch.truncate(room);
                let last = batch.last().map(|k| name_of(k).to_string());
                found.extend(batch);
                found.sort_by(|a, b| name_of(a).cmp(name_of(b)));
                return Ok((found, TreesFrom { cursor, after: last }));
            }
            found.extend(batch);
            cursor = next;
            if cursor == "0" || found.len() >= want || looked >= budget {
                break;
            }
        }
        found.sort_by(|a, b| name_of(a).cmp(name_of(b)));
        Ok((found, TreesFrom { cursor, after: None }))
    }

    /// Of a Lua library's hashes, the trees: a tree has the field `#`; its
    /// companions (`{tag}quota:…`), the plan and price books do not count.
    async fn lua_trees(&self, keys: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, QuotaError> {
        let keys: Vec<Vec<u8>> = keys
            .into_iter()
            .filter(|k| {
                let k = String::from_utf8_lossy(k);
                k != "quota:plans" && k != "quota:prices" && !is_companion(&k)
            })
            .collect();
        if keys.is_empty() {
            return Ok(keys);
        }
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("HEXISTS").arg(k).arg("#");
        }
        // A hash the account may not read (outside its key pattern) cannot be
        // told from any other hash: it is left out, not an error.
        pipe.ignore_errors();
        let mut conn = self.conn.clone();
        let has: Vec<redis::RedisResult<bool>> =
            pipe.query_async(&mut conn).await.map_err(|e| self.explain(error_of(e)))?;
        Ok(keys.into_iter().zip(has).filter(|(_, h)| matches!(h, Ok(true))).map(|(k, _)| k).collect())
    }

    /// The shared connection, for the alert companion's own keys
    /// (`quota:alerts:*`, alerts/store.rs): never for a tree.
    pub fn shared(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// A connection of its own, for a WATCH … MULTI … EXEC that no other
    /// command may interleave with (the alert companion's fenced writes, the
    /// alert configuration's compare-and-set).
    pub async fn dedicated(&self) -> Result<redis::aio::MultiplexedConnection, QuotaError> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT));
        self.client.get_multiplexed_async_connection_with_config(&config).await.map_err(|e| self.explain(error_of(e)))
    }

    /// A connection for the event feed (SUBSCRIBE), apart from the shared one.
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, QuotaError> {
        self.client.get_async_pubsub().await.map_err(|e| self.explain(error_of(e)))
    }
}

/// Where a page of trees starts: a SCAN cursor, and the last name shown of
/// that cursor's batch when the previous page was cut inside it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreesFrom {
    pub cursor: String,
    pub after: Option<String>,
}

impl TreesFrom {
    /// Whether this is the end of the scan (no page after).
    pub fn at_end(&self) -> bool {
        self.cursor == "0" && self.after.is_none()
    }
}

/// A listed key's name (a key that is not UTF-8 by its bytes shown as text).
fn name_of(k: &Result<String, String>) -> &str {
    match k {
        Ok(s) | Err(s) => s,
    }
}

/// Bytes that are not UTF-8 as text, each bad byte as `\xFF`.
fn lossy(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out
}

/// Whether an error is ACL's refusal.
fn is_acl_refusal(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.starts_with("noperm") || m.contains("no permissions to") || m.contains("can't access")
}

/// A Lua companion key: `{tag}quota:<key><suffix>`.
fn is_companion(key: &str) -> bool {
    key.starts_with('{') && key.find('}').is_some_and(|end| key[end + 1..].starts_with("quota:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_refusals_are_recognised() {
        assert!(is_acl_refusal("NOPERM this user has no permissions to run the 'scan' command"));
        assert!(is_acl_refusal(
            "ERR Error running script: The user executing the script can't access at least one of the keys"
        ));
        assert!(!is_acl_refusal("ERR syntax: LIMIT needs an amount"));
        assert!(!is_acl_refusal("NOTFOUND no such path"));
    }

    #[test]
    fn keys_not_utf8_are_shown_with_their_bytes() {
        assert_eq!(lossy(b"f10\xff\xfe"), "f10\\xFF\\xFE");
        assert_eq!(lossy("ü".as_bytes()), "ü");
    }

    #[test]
    fn a_clock_refused_for_good_is_told_from_a_passing_failure() {
        let e = |kind: &str, message: &str| QuotaError { kind: kind.to_string(), message: message.to_string() };
        assert!(clock_is_refused(&e("ERR", "ERR QUOTA.DEBUG is disabled: load the module with TEST_CLOCK yes")));
        assert!(clock_is_refused(&e("ERR", "ERR unknown command 'QUOTA.DEBUG'")));
        assert!(clock_is_refused(&e("NOPERM", "NOPERM this user has no permissions to run the 'quota.debug' command")));
        assert!(clock_is_refused(&e("ERR", "ERR Function not found")));
        assert!(!clock_is_refused(&e("REDIS", "Redis is not answering (broken pipe).")));
        assert!(!clock_is_refused(&e("REDIS", "Redis is not answering (Connection refused (os error 111)).")));
    }

    // Every command the dashboard sends is in the shared catalog, and is
    // sent as the module registers it and as the Lua library registers its
    // function: reads by FCALL_RO only where the function is no-writes.
    // command, verb, function, keyed, writes, FCALL_RO
    #[test]
    fn every_command_is_sent_as_the_catalog_says() {
        use Cmd::*;
        type Row = (Cmd, &'static str, Option<&'static str>, &'static str, bool, bool, bool);
        let rows: &[Row] = &[
            (Set, "QUOTA.SET", None, "quota_set", true, true, false),
            (Unset, "QUOTA.UNSET", None, "quota_unset", true, true, false),
            (DelPath, "QUOTA.DELPATH", None, "quota_delpath", true, true, false),
            (Allow, "QUOTA.ALLOW", None, "quota_allow", true, true, false),
            (Deny, "QUOTA.DENY", None, "quota_deny", true, true, false),
            (AccessClear, "QUOTA.ACCESS", None, "quota_access", true, true, false),
            (Get, "QUOTA.GET", None, "quota_get", true, false, true),
            (Tree, "QUOTA.TREE", None, "quota_tree", true, false, true),
            (Holds, "QUOTA.HOLDS", None, "quota_holds", true, false, true),
            (Grants, "QUOTA.GRANTS", None, "quota_grants", true, false, true),
            (Grant, "QUOTA.GRANT", None, "quota_grant", true, true, false),
            (Revoke, "QUOTA.REVOKE", None, "quota_revoke", true, true, false),
            (Reset, "QUOTA.RESET", None, "quota_reset", true, true, false),
            (Assign, "QUOTA.ASSIGN", None, "quota_assign", true, true, false),
            (Label, "QUOTA.LABEL", None, "quota_label", true, true, false),
            (Archive, "QUOTA.ARCHIVE", None, "quota_archive", true, true, false),
            (Restore, "QUOTA.RESTORE", None, "quota_restore", true, true, false),
            (History, "QUOTA.HISTORY", None, "quota_history", true, false, true),
            (Usage, "QUOTA.USAGE", None, "quota_usage", true, false, true),
            (Events, "QUOTA.EVENTS", None, "quota_events", true, false, true),
            (Release, "QUOTA.RELEASE", None, "quota_release", true, true, false),
            (Extend, "QUOTA.EXTEND", None, "quota_extend", true, true, false),
            (PriceGet, "QUOTA.PRICE", Some("GET"), "quota_price_ro", false, false, true),
            (PriceList, "QUOTA.PRICE", Some("LIST"), "quota_price_ro", false, false, true),
            (PriceSet, "QUOTA.PRICE", Some("SET"), "quota_price", false, true, false),
            (PriceDel, "QUOTA.PRICE", Some("DEL"), "quota_price", false, true, false),
            (PlanGet, "QUOTA.PLAN", Some("GET"), "quota_plan_ro", false, false, true),
            (PlanList, "QUOTA.PLAN", Some("LIST"), "quota_plan_ro", false, false, true),
            (PlanSet, "QUOTA.PLAN", Some("SET"), "quota_plan", false, true, false),
            (PlanDel, "QUOTA.PLAN", Some("DEL"), "quota_plan", false, true, false),
            (Estimate, "QUOTA.ESTIMATE", None, "quota_estimate", false, false, true),
            // quota_debug is not no-writes: even CLOCK GET needs FCALL.
            (ClockGet, "QUOTA.DEBUG", None, "quota_debug", false, false, false),
        ];
        for &(cmd, command, verb, function, keyed, writes, ro) in rows {
            let s = cmd.spec().unwrap_or_else(|| panic!("{cmd:?} is not in the catalog"));
            assert_eq!(
                (s.command, s.verb, s.function, s.keyed, s.writes, s.read_only_call),
                (command, verb, function, keyed, writes, ro),
                "{cmd:?}"
            );
        }
        assert_eq!(ClockGet.spec().map(|s| s.extra), Some(&["CLOCK", "GET"][..]));
    }

    #[test]
    fn companions_are_not_trees() {
        // key, companion
        let rows = [
            ("{acme}quota:acme:holds", true),
            ("{t1}quota:{t1}acme:usage", true),
            ("acme", false),
            ("{t1}acme", false),
            ("quota:plans", false),
            ("{", false),
        ];
        for (key, companion) in rows {
            assert_eq!(is_companion(key), companion, "{key}");
        }
    }

    #[test]
    fn replies_become_json() {
        use redis::Value as V;
        let v = V::Map(vec![
            (V::SimpleString("path".into()), V::BulkString(b"/".to_vec())),
            (V::SimpleString("limit".into()), V::BulkString(b"0.1".to_vec())),
            (V::SimpleString("plan".into()), V::Nil),
            (V::SimpleString("n".into()), V::Int(3)),
        ]);
        assert_eq!(json_of(v).to_string(), r#"{"limit":"0.1","n":3,"path":"/","plan":null}"#);
        let hold = V::Map(vec![(
            V::SimpleString("meta".into()),
            V::Map(vec![
                (V::SimpleString("who".into()), V::BulkString(b"bob".to_vec())),
                (V::SimpleString("req".into()), V::BulkString(b"r1".to_vec())),
            ]),
        )]);
        assert_eq!(json_of(hold).to_string(), r#"{"meta":["who","bob","req","r1"]}"#);
    }
}
