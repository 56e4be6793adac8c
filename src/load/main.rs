//! `quota-load`: loads or upgrades the quota Redis Functions library
//! (`lua/quota.lua`, embedded at build time) on a server or on every primary
//! of a cluster, for hosts where the module cannot be loaded. `--help` tells
//! the whole command line; this file is the whole program.
//!
//! It reads the installed version first (`FUNCTION LIST LIBRARYNAME quota
//! WITHCODE`, and `FCALL_RO quota_version 0` for the version), decides on
//! every server before it changes any (so a refusal anywhere changes
//! nothing), then loads with `FUNCTION LOAD [REPLACE]` and reads the version
//! back.
//!
//! `--sweep` is the library's companion instead: a loop that calls
//! `FCALL quota_sweep` every 100 ms, so holds on idle trees expire (and
//! their events are published) on time.

use std::cmp::Ordering;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// The library's settings (its `SETTINGS` table) are the catalog's, with
// the bounds the module gives the same module arguments.
use quota_engine::catalog::SETTINGS;
use redis::{
    Client, ClientTlsConfig, Connection, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo, RedisError,
    TlsCertificates, Value,
};

/// The library this binary was built with.
const EMBEDDED: &str = include_str!("../../lua/quota.lua");
const LIBRARY: &str = "quota";
const TEST_CLOCK_OFF: &str = "local TEST_CLOCK = false";
const TEST_CLOCK_ON: &str = "local TEST_CLOCK = true";
const TEST_CLOCK_START: &str = "local TEST_CLOCK_START = 0";
const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(60);

const HELP: &str = r#"quota-load: load or upgrade the quota Redis Functions library (Lua) on Redis 7+

Usage: quota-load [OPTIONS] [URL...]

URL is redis://[[user]:password@]host[:port][/db] or rediss://... for TLS
(default redis://127.0.0.1:6379). Several URLs load on each server. Functions
belong to the whole server, so /db does not matter.

What it does, per server:
  not installed             FUNCTION LOAD                 (loaded; was none)
  an older version          FUNCTION LOAD REPLACE         (upgraded; was X)
  the same version and code nothing                       (up to date)
  the same version, other
    code (e.g. test clock)  FUNCTION LOAD REPLACE         (reloaded; ...)
  a newer version           refused, exit 1, unless --allow-downgrade
  a 'quota' library whose
    version cannot be read  refused, exit 1, unless --force
Versions compare numerically (1.10.0 > 1.9.0). Every server is checked before
any is changed: a refusal or an error anywhere changes nothing. One line per
server is printed: "HOST:PORT quota VERSION (WHAT HAPPENED)".
Trees stay in place: the library reads the layouts of older versions and
rewrites a tree in its own on the tree's next write, inside that call, so an
upgrade is safe under live traffic. An older library refuses a tree written
in a newer layout (1.0.0, which predates layouts, fails on it): downgrade only
where no tree has been written since the upgrade.

Options:
  --file PATH         load the library in PATH instead of the embedded one
  --check             only print the installed version on each server
  --cluster           find every primary of the cluster that URL belongs to
                      (CLUSTER SHARDS, or CLUSTER NODES) and load on each,
                      with the same user, password and TLS settings
  --force             reload even when the same version and code is installed,
                      and replace a 'quota' library whose version is unknown
  --allow-downgrade   replace a newer installed version (see layouts above)
  --allow-eviction    load even where maxmemory-policy is allkeys-*, under
                      which Redis may evict a tree's keys and silently remove
                      its limits (refused without this option)
  --test-clock        load with `local TEST_CLOCK = false` switched to true, so
                      `FCALL quota_debug 0 CLOCK ...` can move time: tests only
  --set NAME=VALUE    load with a setting other than its default, as module
                      arguments do: default_ttl, tombstone_ttl (ms),
                      max_paths, max_policies, max_holds, max_depth,
                      max_items, events_len, usage_hours, usage_days,
                      usage_series, ledger_len (repeatable)
  --print             write the library source (after --test-clock) to stdout
                      and exit; connects to nothing
  --sweep             load nothing: call FCALL quota_sweep every 100 ms until
                      stopped, so holds on idle trees expire and their
                      events are published on time (on a cluster node, for
                      each hash slot it serves; with --cluster, on every
                      primary); a line per pass that expired something
  --once              with --sweep: one pass over every index, then exit
  --user USER         ACL user (overrides the URL's)
  --password PASS     password (overrides the URL's; visible to other local
                      users in `ps`: prefer REDISCLI_AUTH)
  --cacert FILE       CA certificate(s) (PEM) to verify the server with, instead
                      of the system's
  --cert FILE         client certificate (PEM), with --key, for servers that
                      require client certificates
  --key FILE          the client certificate's private key (PEM)
  --insecure          TLS without verifying the server's certificate
                      (--sweep takes the URL options above too)
  -V, --version       print the version of the library this loader embeds
  -h, --help          this text

Environment:
  REDISCLI_AUTH       the password when neither --password nor the URL has one
                      (as with redis-cli)

Exit status: 0 done (or nothing to do), 1 refused or failed (nothing changed
where it was refused), 2 usage error. --sweep runs until stopped; a server
that fails is tried again a second later.
"#;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse_args(&args) {
        Ok(Parsed::Run(opts)) => opts,
        Ok(Parsed::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            return match Library::from_source(EMBEDDED, "the embedded library") {
                Ok(lib) => {
                    println!("quota {}", lib.version);
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e),
            };
        }
        Err(e) => {
            eprintln!("quota-load: {e}");
            eprintln!("Try 'quota-load --help'.");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(message: &str) -> ExitCode {
    if !message.is_empty() {
        eprintln!("quota-load: {message}");
    }
    ExitCode::from(1)
}

// ----- the command line ------------------------------------------------------

#[derive(Default)]
struct Options {
    urls: Vec<String>,
    file: Option<String>,
    user: Option<String>,
    password: Option<String>,
    cacert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    insecure: bool,
    cluster: bool,
    check: bool,
    force: bool,
    allow_downgrade: bool,
    allow_eviction: bool,
    test_clock: bool,
    settings: Vec<(String, u64)>,
    print: bool,
    sweep: bool,
    once: bool,
}

enum Parsed {
    Run(Box<Options>),
    Help,
    Version,
}

fn parse_args(args: &[String]) -> Result<Parsed, String> {
    let mut o = Options::default();
    let mut i = 0;
    let mut only_urls = false;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if only_urls || !arg.starts_with('-') || arg == "-" {
            o.urls.push(arg.clone());
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            if let Some(v) = inline.clone() {
                return Ok(v);
            }
            let v = args.get(i).cloned().ok_or_else(|| format!("{name} needs {what}"))?;
            i += 1;
            Ok(v)
        };
        match name {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "--" => only_urls = true,
            "--file" => o.file = Some(value("a PATH")?),
            "--user" => o.user = Some(value("a USER")?),
            "--password" | "--pass" => o.password = Some(value("a password")?),
            "--cacert" => o.cacert = Some(value("a FILE")?),
            "--cert" => o.cert = Some(value("a FILE")?),
            "--key" => o.key = Some(value("a FILE")?),
            "--set" => o.settings.push(parse_setting(&value("NAME=VALUE")?)?),
            flag if inline.is_some() => return Err(format!("{flag} takes no value")),
            flag => set_flag(&mut o, flag)?,
        }
    }
    check_combinations(&mut o)?;
    check_urls(&o)?;
    Ok(Parsed::Run(Box::new(o)))
}

/// Sets an option that takes no value.
fn set_flag(o: &mut Options, flag: &str) -> Result<(), String> {
    match flag {
        "--insecure" => o.insecure = true,
        "--cluster" => o.cluster = true,
        "--check" => o.check = true,
        "--force" => o.force = true,
        "--allow-downgrade" => o.allow_downgrade = true,
        "--allow-eviction" => o.allow_eviction = true,
        "--test-clock" => o.test_clock = true,
        "--print" => o.print = true,
        "--sweep" => o.sweep = true,
        "--once" => o.once = true,
        _ => return Err(format!("unknown option {flag}")),
    }
    Ok(())
}

/// Refuses options that contradict each other, and gives the default URL
/// when none is given and one is needed.
fn check_combinations(o: &mut Options) -> Result<(), String> {
    if o.once && !o.sweep {
        return Err("--once goes with --sweep".into());
    }
    if o.sweep
        && (o.print
            || o.check
            || o.force
            || o.allow_downgrade
            || o.test_clock
            || o.file.is_some()
            || !o.settings.is_empty())
    {
        return Err("--sweep loads nothing: it takes only URLs, --cluster, --once and the connection options".into());
    }
    if o.print && !o.urls.is_empty() {
        return Err("--print connects to nothing: give no URL".into());
    }
    if o.print && (o.check || o.cluster) {
        return Err("--print cannot be combined with --check or --cluster".into());
    }
    if o.check && (o.force || o.allow_downgrade) {
        return Err("--check changes nothing: --force and --allow-downgrade make no sense with it".into());
    }
    if o.cert.is_some() != o.key.is_some() {
        return Err("--cert and --key go together".into());
    }
    if o.cluster && o.urls.len() > 1 {
        return Err("--cluster takes one URL (any node of the cluster)".into());
    }
    if o.urls.is_empty() && !o.print {
        o.urls.push(DEFAULT_URL.to_string());
    }
    Ok(())
}

/// Every URL is redis:// or rediss://, and the TLS options come only with
/// rediss://.
fn check_urls(o: &Options) -> Result<(), String> {
    for url in &o.urls {
        let tls = match (url.strip_prefix("rediss://"), url.strip_prefix("redis://")) {
            (Some(rest), _) if !rest.is_empty() => Ok(true),
            (_, Some(rest)) if !rest.is_empty() => Ok(false),
            _ => Err(()),
        };
        match tls {
            Err(()) => return Err(format!("not a redis:// or rediss:// URL: {}", redact(url))),
            Ok(false) if o.insecure || o.cacert.is_some() || o.cert.is_some() => {
                return Err(format!(
                    "--cacert, --cert, --key and --insecure are for TLS: use rediss:// (got {})",
                    redact(url)
                ));
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

/// `NAME=VALUE` of `--set`: a known setting and a value in its bounds.
fn parse_setting(text: &str) -> Result<(String, u64), String> {
    let (name, value) = text.split_once('=').ok_or_else(|| format!("--set takes NAME=VALUE, not '{text}'"))?;
    let name = name.trim().to_ascii_lowercase();
    let Some((min, max)) = SETTINGS.iter().find(|s| s.name == name).map(|s| (s.min, s.max)) else {
        let known: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
        return Err(format!("--set: unknown setting '{name}' (one of {})", known.join(", ")));
    };
    match value.trim().parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok((name, v)),
        _ => Err(format!("--set {name}: the value must be an integer from {min} to {max}, not '{value}'")),
    }
}

/// A URL fit to print: its password replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => format!("{scheme}://***@{host}{path}"),
        },
        None => url.to_string(),
    }
}

// ----- the library -----------------------------------------------------------

struct Library {
    source: String,
    version: String,
}

impl Library {
    fn from_source(source: &str, origin: &str) -> Result<Library, String> {
        let first = source.lines().next().unwrap_or("");
        let named = first.starts_with("#!lua") && first.split_whitespace().any(|w| w == format!("name={LIBRARY}"));
        if !named {
            return Err(format!("{origin} is not the quota library: its first line is not '#!lua name={LIBRARY}'"));
        }
        let version =
            version_in_code(source).ok_or_else(|| format!("{origin} has no line 'local VERSION = \"X.Y.Z\"'"))?;
        if Version::parse(&version).is_none() {
            return Err(format!("{origin} has version '{version}', which is not X.Y.Z"));
        }
        Ok(Library { source: source.to_string(), version })
    }

    /// The source with the test clock switched on, standing at `start_ms`
    /// until CLOCK SET or ADVANCE moves it (frozen from load, as the
    /// module's TEST_CLOCK yes is).
    fn with_test_clock(mut self, start_ms: u64) -> Result<Library, String> {
        for line in [TEST_CLOCK_OFF, TEST_CLOCK_START] {
            let lines = self.source.lines().filter(|l| l.trim() == line).count();
            if lines != 1 {
                return Err(format!("--test-clock: the library has {lines} lines '{line}' (needs exactly one)"));
            }
        }
        let start = format!("local TEST_CLOCK_START = {start_ms}");
        let mut out = String::with_capacity(self.source.len());
        for line in self.source.split_inclusive('\n') {
            if line.trim() == TEST_CLOCK_OFF {
                out.push_str(&line.replacen(TEST_CLOCK_OFF, TEST_CLOCK_ON, 1));
            } else if line.trim() == TEST_CLOCK_START {
                out.push_str(&line.replacen(TEST_CLOCK_START, &start, 1));
            } else {
                out.push_str(line);
            }
        }
        self.source = out;
        Ok(self)
    }
}

impl Library {
    /// The source with `    name = N,` in its SETTINGS table set to each value.
    fn with_settings(mut self, settings: &[(String, u64)]) -> Result<Library, String> {
        for (name, value) in settings {
            let prefix = format!("{name} = ");
            let mut found = 0;
            let mut out = String::with_capacity(self.source.len());
            for line in self.source.split_inclusive('\n') {
                let trimmed = line.trim();
                let is_setting = trimmed
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(','))
                    .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                    && line.starts_with(' ');
                if is_setting && found == 0 {
                    let indent = &line[..line.len() - line.trim_start().len()];
                    out.push_str(&format!("{indent}{name} = {value},\n"));
                    found += 1;
                } else {
                    out.push_str(line);
                }
            }
            if found != 1 {
                return Err(format!("--set {name}: the library has no line '{name} = N,' in its SETTINGS"));
            }
            self.source = out;
        }
        Ok(self)
    }
}

/// The X in the code's `local VERSION = "X"` line.
fn version_in_code(code: &str) -> Option<String> {
    code.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("local VERSION")?.trim_start().strip_prefix('=')?.trim();
        let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
        let inner = &rest[1..];
        inner.find(quote).map(|end| inner[..end].to_string())
    })
}

/// A semantic version: numeric core compared number by number (1.10.0 >
/// 1.9.0), a pre-release (`-rc.1`) below its release, build metadata ignored.
#[derive(Debug)]
struct Version {
    core: Vec<u64>,
    pre: Vec<String>,
}

impl Version {
    fn parse(text: &str) -> Option<Version> {
        let text = text.trim().strip_prefix('v').unwrap_or(text.trim());
        let text = text.split('+').next()?;
        let (core, pre) = match text.split_once('-') {
            Some((c, p)) => (c, p.split('.').map(str::to_string).collect()),
            None => (text, Vec::new()),
        };
        let core = core.split('.').map(|n| n.parse::<u64>().ok()).collect::<Option<Vec<_>>>()?;
        if core.is_empty() || core.len() > 4 {
            return None;
        }
        Some(Version { core, pre })
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        let n = self.core.len().max(other.core.len());
        for i in 0..n {
            let (a, b) = (self.core.get(i).copied().unwrap_or(0), other.core.get(i).copied().unwrap_or(0));
            if a != b {
                return a.cmp(&b);
            }
        }
        match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => {
                for (a, b) in self.pre.iter().zip(&other.pre) {
                    let ord = match (a.parse::<u64>(), b.parse::<u64>()) {
                        (Ok(x), Ok(y)) => x.cmp(&y),
                        (Ok(_), Err(_)) => Ordering::Less,
                        (Err(_), Ok(_)) => Ordering::Greater,
                        (Err(_), Err(_)) => a.cmp(b),
                    };
                    if ord != Ordering::Equal {
                        return ord;
                    }
                }
                self.pre.len().cmp(&other.pre.len())
            }
        }
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Version {}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

// ----- servers ---------------------------------------------------------------

struct Server {
    name: String,
    conn: Connection,
}

/// What a server has: `None` when no library is named quota.
struct Installed {
    version: Option<String>,
    code: String,
}

struct Target {
    tls: Option<TlsCertificates>,
    info: ConnectionInfo,
}

fn name_of(addr: &ConnectionAddr) -> String {
    match addr {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        }
        other => other.to_string(),
    }
}

fn target_for(url: &str, o: &Options) -> Result<Target, String> {
    let info = url.into_connection_info().map_err(|e| format!("bad URL {}: {}", redact(url), one_line(&e)))?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &o.user {
        settings = settings.set_username(user);
    }
    if let Some(password) = &o.password {
        settings = settings.set_password(password);
    } else if info.redis_settings().password().is_none()
        && let Ok(password) = std::env::var("REDISCLI_AUTH")
        && !password.is_empty()
    {
        settings = settings.set_password(password);
    }
    let mut info = info.set_redis_settings(settings);
    if let ConnectionAddr::TcpTls { host, port, insecure, tls_params } = info.addr().clone() {
        info = info.set_addr(ConnectionAddr::TcpTls { host, port, insecure: insecure || o.insecure, tls_params });
    }
    let tls = tls_certificates(o)?;
    Ok(Target { tls, info })
}

fn read_file(path: &str, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {path}: {e}"))
}

fn tls_certificates(o: &Options) -> Result<Option<TlsCertificates>, String> {
    if o.cacert.is_none() && o.cert.is_none() {
        return Ok(None);
    }
    let root_cert = o.cacert.as_deref().map(|p| read_file(p, "--cacert")).transpose()?;
    let client_tls = match (&o.cert, &o.key) {
        (Some(cert), Some(key)) => {
            Some(ClientTlsConfig { client_cert: read_file(cert, "--cert")?, client_key: read_file(key, "--key")? })
        }
        _ => None,
    };
    Ok(Some(TlsCertificates { client_tls, root_cert }))
}

fn connect(target: &Target) -> Result<Server, String> {
    let name = name_of(target.info.addr());
    let client = match &target.tls {
        Some(certs) => Client::build_with_tls(target.info.clone(), certs.clone()),
        None => Client::open(target.info.clone()),
    }
    .map_err(|e| format!("{name}: {}", one_line(&e)))?;
    let conn = client.get_connection_with_timeout(CONNECT_TIMEOUT).map_err(|e| format!("{name}: {}", one_line(&e)))?;
    conn.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| format!("{name}: {}", one_line(&e)))?;
    conn.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| format!("{name}: {}", one_line(&e)))?;
    let mut server = Server { name, conn };
    if let Err(e) = server.query(&["PING"]) {
        let hint = if e.starts_with("NOAUTH") {
            " (give the password in the URL, with --password or in REDISCLI_AUTH)"
        } else {
            ""
        };
        return Err(format!("{}: {e}{hint}", server.name));
    }
    Ok(server)
}

/// A redis-rs error as one line: `CODE detail` for a server's error,
/// the description without redis-rs's ` - Kind` suffix for the others.
fn one_line(e: &RedisError) -> String {
    let text = match (e.code(), e.detail()) {
        (Some(code), Some(detail)) => format!("{code} {detail}"),
        _ => {
            let text = e.to_string();
            let suffix = format!(" - {:?}", e.kind());
            match text.find(&suffix) {
                Some(at) => format!("{}{}", &text[..at], &text[at + suffix.len()..]),
                None => text,
            }
        }
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if e.kind() == ErrorKind::AuthenticationFailed {
        format!("{text} (wrong user or password)")
    } else if e.is_timeout() || e.is_io_error() && text.contains("os error 11") {
        format!("{text} (no answer in time: rediss:// to a port without TLS?)")
    } else {
        text
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A RESP2 flat key/value array or a RESP3 map, as pairs.
fn pairs(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Map(m) => m.iter().filter_map(|(k, v)| Some((text(k)?, v))).collect(),
        Value::Array(a) => a.chunks(2).filter_map(|c| Some((text(c.first()?)?, c.get(1)?))).collect(),
        _ => Vec::new(),
    }
}

fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    pairs(v).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

impl Server {
    fn query(&mut self, args: &[&str]) -> Result<Value, String> {
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query::<Value>(&mut self.conn).map_err(|e| one_line(&e))
    }

    /// The server's clock (TIME) in ms.
    fn time_ms(&mut self) -> Result<u64, String> {
        let t = self.query(&["TIME"]).map_err(|e| format!("{}: TIME failed: {e}", self.name))?;
        let parts: Vec<u64> = items(&t).iter().filter_map(|v| text(v)?.parse().ok()).collect();
        match parts[..] {
            [secs, micros] => Ok(secs * 1000 + micros / 1000),
            _ => Err(format!("{}: TIME gave no seconds and microseconds", self.name)),
        }
    }

    fn installed(&mut self) -> Result<Option<Installed>, String> {
        let list = self.query(&["FUNCTION", "LIST", "LIBRARYNAME", LIBRARY, "WITHCODE"]).map_err(|e| {
            if e.contains("unknown command") {
                "this server has no Redis Functions (FUNCTION needs Redis 7 or later)".to_string()
            } else {
                format!("FUNCTION LIST failed: {e}")
            }
        })?;
        let Some(lib) =
            items(&list).iter().find(|lib| field(lib, "library_name").and_then(text).as_deref() == Some(LIBRARY))
        else {
            return Ok(None);
        };
        let code = field(lib, "library_code").and_then(text).unwrap_or_default();
        let version = match self.query(&["FCALL_RO", "quota_version", "0"]) {
            Ok(v) => text(&v),
            Err(_) => version_in_code(&code),
        };
        Ok(Some(Installed { version, code }))
    }

    /// `maxmemory-policy`, or why it cannot be read (CONFIG may be denied
    /// to this user or renamed).
    fn eviction_policy(&mut self) -> Result<String, String> {
        let reply = self.query(&["CONFIG", "GET", "maxmemory-policy"])?;
        let policy = match &reply {
            Value::Map(map) => map.first().and_then(|(_, v)| text(v)),
            other => items(other).get(1).and_then(text),
        };
        policy.ok_or_else(|| "CONFIG GET maxmemory-policy gave no value".to_string())
    }

    /// Why loading here is refused because of eviction, if it is.
    fn eviction_refusal(&mut self, o: &Options) -> Option<String> {
        match self.eviction_policy() {
            Ok(policy) if policy.starts_with("allkeys-") && !o.allow_eviction => Some(format!(
                "refused: maxmemory-policy is {policy}: Redis may evict a tree's keys and silently remove its \
                 limits; set noeviction or a volatile-* policy, or pass --allow-eviction"
            )),
            Ok(policy) if policy.starts_with("allkeys-") => {
                eprintln!(
                    "quota-load: warning: {}: maxmemory-policy is {policy}: trees may be evicted and their limits \
                     removed (--allow-eviction)",
                    self.name
                );
                None
            }
            Ok(_) => None,
            Err(e) => {
                eprintln!(
                    "quota-load: warning: {}: cannot read maxmemory-policy ({e}); make sure it is not allkeys-*, \
                     under which trees may be evicted",
                    self.name
                );
                None
            }
        }
    }

    fn load(&mut self, source: &str, replace: bool) -> Result<(), String> {
        let mut cmd = redis::cmd("FUNCTION");
        cmd.arg("LOAD");
        if replace {
            cmd.arg("REPLACE");
        }
        cmd.arg(source);
        cmd.query::<Value>(&mut self.conn).map(|_| ()).map_err(|e| format!("FUNCTION LOAD failed: {}", one_line(&e)))
    }
}

// ----- deciding and loading ----------------------------------------------------

enum Plan {
    Nothing(String),
    Load { replace: bool, note: String },
    Refuse(String),
}

fn plan(installed: &Option<Installed>, lib: &Library, o: &Options) -> Plan {
    let Some(inst) = installed else {
        return Plan::Load { replace: false, note: "loaded; was none".into() };
    };
    let same_code = inst.code == lib.source;
    let theirs = inst.version.as_deref().and_then(Version::parse);
    let Some(theirs) = theirs else {
        let shown = inst.version.as_deref().unwrap_or("unknown");
        return if o.force {
            Plan::Load { replace: true, note: format!("replaced (--force); was version {shown}") }
        } else {
            Plan::Refuse(format!(
                "a library named '{LIBRARY}' is installed but its version ({shown}) cannot be read or compared; \
                 not replacing it (--force to replace)"
            ))
        };
    };
    let installed_version = inst.version.as_deref().unwrap_or("");
    let ours = Version::parse(&lib.version);
    match ours.map(|v| theirs.cmp(&v)) {
        Some(Ordering::Less) | None => Plan::Load { replace: true, note: format!("upgraded; was {installed_version}") },
        Some(Ordering::Equal) if same_code && !o.force => Plan::Nothing("up to date".into()),
        Some(Ordering::Equal) if same_code => {
            Plan::Load { replace: true, note: "reloaded (--force); same version and code".into() }
        }
        Some(Ordering::Equal) => Plan::Load {
            replace: true,
            note: format!("reloaded; was {installed_version} {}", code_difference(&inst.code, &lib.source)),
        },
        Some(Ordering::Greater) if o.allow_downgrade => {
            Plan::Load { replace: true, note: format!("downgraded (--allow-downgrade); was {installed_version}") }
        }
        Some(Ordering::Greater) => Plan::Refuse(format!(
            "installed quota {installed_version} is newer than {}; not downgrading (--allow-downgrade to replace it)",
            lib.version
        )),
    }
}

/// How installed code of the same version differs from ours, in words.
fn code_difference(installed: &str, ours: &str) -> &'static str {
    let clock_on = |code: &str| code.lines().any(|l| l.trim() == TEST_CLOCK_ON);
    match (clock_on(installed), clock_on(ours)) {
        (true, false) => "with the test clock on",
        (false, true) => "with the test clock off",
        _ => "with different code or settings",
    }
}

fn check_line(installed: &Option<Installed>, lib: &Library) -> String {
    let Some(inst) = installed else {
        return format!("none (not installed; this loader has {})", lib.version);
    };
    let shown = inst.version.clone().unwrap_or_else(|| "unknown".into());
    let what = match (inst.version.as_deref().and_then(Version::parse), Version::parse(&lib.version)) {
        (Some(theirs), Some(ours)) => match theirs.cmp(&ours) {
            Ordering::Less => format!("older than {}", lib.version),
            Ordering::Greater => format!("newer than {}", lib.version),
            Ordering::Equal if inst.code == lib.source && inst.code.lines().any(|l| l.trim() == TEST_CLOCK_ON) => {
                "up to date, test clock on".to_string()
            }
            Ordering::Equal if inst.code == lib.source => "up to date".to_string(),
            Ordering::Equal => format!("same version {}", code_difference(&inst.code, &lib.source)),
        },
        _ => "version cannot be read".to_string(),
    };
    format!("{shown} ({what})")
}

fn run(o: &Options) -> Result<(), String> {
    let lib = library_for(o)?;
    if o.print {
        return print_library(lib, o);
    }
    // rustls needs one crypto provider; this build has only ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if o.sweep {
        return sweep(o);
    }
    let mut servers = connect_all(o)?;
    // The test clock starts where the (first) server's clock is now.
    let lib = match servers.first_mut() {
        Some(server) if o.test_clock => lib.with_test_clock(server.time_ms()?)?,
        _ => lib,
    };
    // Decide everywhere before changing anything.
    let states = survey(&mut servers, o)?;
    if o.check {
        for (server, inst) in servers.iter().zip(&states) {
            println!("{} {LIBRARY} {}", server.name, check_line(inst, &lib));
        }
        return Ok(());
    }
    let plans = plans_for(&servers, &states, &lib, o)?;
    apply_plans(&mut servers, plans, &lib)
}

/// The library to load: `--file` or the embedded one, with `--set`.
fn library_for(o: &Options) -> Result<Library, String> {
    let lib = match &o.file {
        Some(path) => {
            let bytes = read_file(path, "--file")?;
            let source = String::from_utf8(bytes).map_err(|_| format!("--file {path} is not UTF-8 text"))?;
            Library::from_source(&source, path)?
        }
        None => Library::from_source(EMBEDDED, "the embedded library")?,
    };
    let lib = lib.with_settings(&o.settings)?;
    if o.test_clock {
        eprintln!(
            "quota-load: warning: --test-clock: the library is loaded with its test clock switched on; \
             for tests only, never in production"
        );
    }
    Ok(lib)
}

/// `--print`: the library's source on stdout, its test clock starting now.
fn print_library(lib: Library, o: &Options) -> Result<(), String> {
    let lib = if o.test_clock {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        lib.with_test_clock(now)?
    } else {
        lib
    };
    print!("{}", lib.source);
    Ok(())
}

/// A connection to every server the URLs name (every primary with
/// `--cluster`), each server once.
fn connect_all(o: &Options) -> Result<Vec<Server>, String> {
    let mut servers = Vec::new();
    for url in &o.urls {
        let target = target_for(url, o)?;
        let mut seed = connect(&target)?;
        if o.cluster {
            servers.extend(cluster_primaries(seed, &target)?);
        } else {
            if cluster_enabled(&mut seed) {
                eprintln!(
                    "quota-load: note: {} is a cluster node: only it is loaded (--cluster loads on every primary)",
                    seed.name
                );
            }
            servers.push(seed);
        }
    }
    // The same server twice (two URLs, or a URL and --cluster) is one server.
    let mut seen = Vec::new();
    servers.retain(|s| {
        let first = !seen.contains(&s.name);
        seen.push(s.name.clone());
        first
    });
    Ok(servers)
}

/// What each server has installed, or every server's problem (an
/// eviction policy that could drop trees, an unreadable library) at once.
fn survey(servers: &mut [Server], o: &Options) -> Result<Vec<Option<Installed>>, String> {
    let mut states = Vec::new();
    let mut problems = Vec::new();
    for server in servers.iter_mut() {
        if !o.check
            && let Some(why) = server.eviction_refusal(o)
        {
            problems.push(format!("{}: {why}", server.name));
        }
        match server.installed() {
            Ok(inst) => states.push(inst),
            Err(e) => {
                problems.push(format!("{}: {e}", server.name));
                states.push(None);
            }
        }
    }
    if problems.is_empty() {
        return Ok(states);
    }
    let mut msg = problems.join("\nquota-load: ");
    if servers.len() > 1 && !o.check {
        let _ = write!(msg, "\nquota-load: nothing changed on any of the {} servers", servers.len());
    }
    Err(msg)
}

/// The plan for each server, or every refusal at once (then nothing
/// changes anywhere).
fn plans_for(
    servers: &[Server],
    states: &[Option<Installed>],
    lib: &Library,
    o: &Options,
) -> Result<Vec<Plan>, String> {
    let plans: Vec<Plan> = states.iter().map(|inst| plan(inst, lib, o)).collect();
    let refusals: Vec<String> = servers
        .iter()
        .zip(&plans)
        .filter_map(|(s, p)| match p {
            Plan::Refuse(why) => Some(format!("{}: refused: {why}", s.name)),
            _ => None,
        })
        .collect();
    if refusals.is_empty() {
        return Ok(plans);
    }
    let mut msg = refusals.join("\nquota-load: ");
    if servers.len() > 1 {
        let _ = write!(msg, "\nquota-load: nothing changed on any of the {} servers", servers.len());
    }
    Err(msg)
}

/// Carries out the plans, none of them a refusal, reporting each server.
fn apply_plans(servers: &mut [Server], plans: Vec<Plan>, lib: &Library) -> Result<(), String> {
    let mut failed = false;
    for (server, plan) in servers.iter_mut().zip(plans) {
        match plan {
            Plan::Refuse(_) => unreachable!("plans_for returns refusals as an error"),
            Plan::Nothing(note) => println!("{} {LIBRARY} {} ({note})", server.name, lib.version),
            Plan::Load { replace, note } => match load_and_verify(server, lib, replace) {
                Ok(()) => println!("{} {LIBRARY} {} ({note})", server.name, lib.version),
                Err(e) => {
                    eprintln!("quota-load: {}: {e}", server.name);
                    failed = true;
                }
            },
        }
    }
    if failed { Err(String::new()) } else { Ok(()) }
}

fn load_and_verify(server: &mut Server, lib: &Library, replace: bool) -> Result<(), String> {
    server.load(&lib.source, replace)?;
    match server.installed()? {
        Some(inst) if inst.version.as_deref() == Some(lib.version.as_str()) => Ok(()),
        Some(inst) => Err(format!(
            "loaded, but the server now reports version {} (expected {})",
            inst.version.as_deref().unwrap_or("unknown"),
            lib.version
        )),
        None => Err("loaded, but FUNCTION LIST does not show it".into()),
    }
}

// ----- clusters ----------------------------------------------------------------

fn cluster_enabled(server: &mut Server) -> bool {
    server.query(&["INFO", "cluster"]).ok().and_then(|v| text(&v)).is_some_and(|t| t.contains("cluster_enabled:1"))
}

/// Every primary of the cluster `seed` belongs to, connected with the seed's
/// user, password and TLS settings. The seed itself is kept as given (its
/// host name may be what a certificate names).
fn cluster_primaries(mut seed: Server, target: &Target) -> Result<Vec<Server>, String> {
    let tls = matches!(target.info.addr(), ConnectionAddr::TcpTls { .. });
    let myid = seed.query(&["CLUSTER", "MYID"]).map_err(|e| {
        if e.contains("cluster support disabled") {
            format!("--cluster: {} is not a cluster node (cluster-enabled no)", seed.name)
        } else {
            format!("--cluster: {}: CLUSTER MYID failed: {e}", seed.name)
        }
    })?;
    let myid = text(&myid).unwrap_or_default();
    let nodes = match seed.query(&["CLUSTER", "SHARDS"]) {
        Ok(shards) => primaries_from_shards(&shards, tls),
        Err(e) if e.contains("unknown subcommand") || e.contains("Unknown subcommand") => {
            let nodes =
                seed.query(&["CLUSTER", "NODES"]).map_err(|e| format!("--cluster: CLUSTER NODES failed: {e}"))?;
            primaries_from_nodes(&text(&nodes).unwrap_or_default())
        }
        Err(e) => return Err(format!("--cluster: {}: CLUSTER SHARDS failed: {e}", seed.name)),
    };
    let mut servers = Vec::new();
    let mut seen = Vec::new();
    let mut seed_is_primary = false;
    for node in nodes {
        if node.failed {
            eprintln!("quota-load: warning: skipping primary {}:{} ({}), marked failed", node.host, node.port, node.id);
            continue;
        }
        if node.id == myid {
            seed_is_primary = true;
            continue;
        }
        if node.host.is_empty() || node.port == 0 || seen.contains(&(node.host.clone(), node.port)) {
            continue;
        }
        seen.push((node.host.clone(), node.port));
        let addr = match target.info.addr() {
            ConnectionAddr::TcpTls { insecure, .. } => {
                ConnectionAddr::TcpTls { host: node.host, port: node.port, insecure: *insecure, tls_params: None }
            }
            _ => ConnectionAddr::Tcp(node.host, node.port),
        };
        let info = addr
            .into_connection_info()
            .map_err(|e| one_line(&e))?
            .set_redis_settings(target.info.redis_settings().clone().set_db(0));
        servers.push(connect(&Target { tls: target.tls.clone(), info })?);
    }
    if seed_is_primary {
        servers.push(seed);
    } else if servers.is_empty() {
        return Err(format!("--cluster: {} knows no reachable primary", seed.name));
    }
    servers.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(servers)
}

struct Node {
    id: String,
    host: String,
    port: u16,
    failed: bool,
}

fn primaries_from_shards(shards: &Value, tls: bool) -> Vec<Node> {
    let mut out = Vec::new();
    for shard in items(shards) {
        let Some(nodes) = field(shard, "nodes") else { continue };
        for node in items(nodes) {
            let get = |k: &str| field(node, k).and_then(text).unwrap_or_default();
            if get("role") != "master" {
                continue;
            }
            let port_key = if tls { "tls-port" } else { "port" };
            let port = get(port_key).parse::<u16>().unwrap_or(0);
            let endpoint = get("endpoint");
            let host = if endpoint.is_empty() || endpoint == "?" { get("ip") } else { endpoint };
            out.push(Node { id: get("id"), host, port, failed: get("health") == "fail" });
        }
    }
    out
}

fn primaries_from_nodes(text: &str) -> Vec<Node> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 {
            continue;
        }
        let flags: Vec<&str> = f[2].split(',').collect();
        if !flags.contains(&"master") || flags.contains(&"noaddr") || flags.contains(&"handshake") {
            continue;
        }
        let addr = f[1].split(',').next().unwrap_or("").split('@').next().unwrap_or("");
        let Some((host, port)) = addr.rsplit_once(':') else { continue };
        out.push(Node {
            id: f[0].to_string(),
            host: host.trim_matches(['[', ']']).to_string(),
            port: port.parse().unwrap_or(0),
            failed: flags.contains(&"fail"),
        });
    }
    out
}

// ----- sweeping -------------------------------------------------------------------

/// How often --sweep calls quota_sweep.
const SWEEP_INTERVAL: Duration = Duration::from_millis(100);
/// Trees per quota_sweep call (the function's COUNT), calls per index per
/// pass, and the indexes a cluster node checks per pass (its slots in turn).
const SWEEP_COUNT: &str = "100";
const SWEEP_CALLS: usize = 10;
const SWEEP_SLOTS: usize = 2048;
/// How often a cluster node is asked again which slots it serves.
const SLOTS_REFRESH: Duration = Duration::from_secs(5);
const DUE_INDEX: &str = "quota:due";

/// CRC16 (XMODEM), as Redis Cluster hashes keys.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

/// The index key of each hash slot on a cluster, as the library names it:
/// quota:due{TAG}, TAG the first of '@@@@' .. 'OOOO' (the low nibbles of
/// each letter counted up) that hashes to the slot.
fn slot_indexes() -> Vec<String> {
    let mut tags = vec![String::new(); 16384];
    let mut left = tags.len();
    for v in 0u32..65536 {
        let tag: String =
            [v >> 12, (v >> 8) & 15, (v >> 4) & 15, v & 15].iter().map(|n| char::from(0x40 + *n as u8)).collect();
        let slot = usize::from(crc16(tag.as_bytes()) & 16383);
        if tags[slot].is_empty() {
            tags[slot] = format!("{DUE_INDEX}{{{tag}}}");
            left -= 1;
            if left == 0 {
                break;
            }
        }
    }
    tags
}

/// One server being swept: its index (standalone) or the indexes of the
/// slots it serves (cluster node).
struct Sweeper {
    server: Server,
    cluster: bool,
    slots: Vec<u16>,
    next: usize,
    slots_at: Option<Instant>,
}

impl Sweeper {
    fn new(mut server: Server) -> Sweeper {
        let cluster = cluster_enabled(&mut server);
        Sweeper { server, cluster, slots: Vec::new(), next: 0, slots_at: None }
    }

    /// The slots this node serves (CLUSTER SLOTS, the ranges whose primary
    /// is this node).
    fn refresh_slots(&mut self) -> Result<(), String> {
        let myid = self.server.query(&["CLUSTER", "MYID"]).map(|v| text(&v).unwrap_or_default())?;
        let ranges = self.server.query(&["CLUSTER", "SLOTS"])?;
        let mut slots = Vec::new();
        for range in items(&ranges) {
            let r = items(range);
            let num = |i: usize| r.get(i).and_then(text).and_then(|t| t.parse::<u16>().ok());
            let primary = r.get(2).map(items).and_then(|n| n.get(2)).and_then(text);
            if let (Some(first), Some(last), Some(id)) = (num(0), num(1), primary)
                && id == myid
            {
                slots.extend(first..=last.min(16383));
            }
        }
        self.slots = slots;
        self.slots_at = Some(Instant::now());
        Ok(())
    }

    /// Calls quota_sweep on one index until nothing due is left (at most
    /// SWEEP_CALLS times); returns (trees, holds expired).
    fn sweep_index(&mut self, index: &str) -> Result<(i64, i64), String> {
        let (mut trees, mut expired) = (0, 0);
        for _ in 0..SWEEP_CALLS {
            let reply = self.server.query(&["FCALL", "quota_sweep", "1", index, "COUNT", SWEEP_COUNT])?;
            let num = |name: &str| field(&reply, name).and_then(text).and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
            trees += num("trees");
            expired += num("expired");
            if num("more") == 0 {
                break;
            }
        }
        Ok((trees, expired))
    }

    /// One pass: the standalone index, or the indexes that exist of the
    /// next SWEEP_SLOTS slots (of every slot the node serves when `whole`).
    fn pass(&mut self, indexes: &[String], whole: bool) -> Result<(i64, i64), String> {
        if !self.cluster {
            return self.sweep_index(DUE_INDEX);
        }
        if self.slots_at.is_none_or(|at| at.elapsed() >= SLOTS_REFRESH) {
            self.refresh_slots()?;
        }
        if self.slots.is_empty() {
            return Ok((0, 0));
        }
        let take = if whole { self.slots.len() } else { self.slots.len().min(SWEEP_SLOTS) };
        let batch: Vec<u16> = (0..take).map(|i| self.slots[(self.next + i) % self.slots.len()]).collect();
        self.next = (self.next + take) % self.slots.len();
        let mut pipe = redis::pipe();
        for &slot in &batch {
            pipe.cmd("EXISTS").arg(&indexes[usize::from(slot)]);
        }
        let exists: Vec<i64> = pipe.query(&mut self.server.conn).map_err(|e| one_line(&e))?;
        let (mut trees, mut expired) = (0, 0);
        for (&slot, found) in batch.iter().zip(exists) {
            if found == 1 {
                let (t, e) = self.sweep_index(&indexes[usize::from(slot)])?;
                trees += t;
                expired += e;
            }
        }
        Ok((trees, expired))
    }
}

/// The servers to sweep: each URL's, or with --cluster every primary.
fn sweep_servers(o: &Options) -> Result<Vec<Sweeper>, String> {
    let mut out = Vec::new();
    for url in &o.urls {
        let target = target_for(url, o)?;
        let seed = connect(&target)?;
        if o.cluster {
            out.extend(cluster_primaries(seed, &target)?.into_iter().map(Sweeper::new));
        } else {
            out.push(Sweeper::new(seed));
        }
    }
    Ok(out)
}

fn sweep(o: &Options) -> Result<(), String> {
    let indexes = slot_indexes();
    let mut sweepers = sweep_servers(o)?;
    if !o.once {
        for s in &sweepers {
            let what = if s.cluster { "the indexes of its slots" } else { DUE_INDEX };
            eprintln!("quota-load: sweeping {} ({what}) every {} ms", s.server.name, SWEEP_INTERVAL.as_millis());
        }
    }
    loop {
        let started = Instant::now();
        let mut failed = false;
        for s in &mut sweepers {
            match s.pass(&indexes, o.once) {
                Ok((trees, expired)) if o.once || expired > 0 => {
                    println!("{} swept {trees} trees, {expired} holds expired", s.server.name)
                }
                Ok(_) => {}
                Err(e) if o.once => return Err(format!("{}: quota_sweep failed: {e}", s.server.name)),
                Err(e) => {
                    eprintln!("quota-load: {}: quota_sweep failed: {e}", s.server.name);
                    failed = true;
                }
            }
        }
        if o.once {
            return Ok(());
        }
        if failed {
            // Connect again (a restart, a failover, slots that moved).
            std::thread::sleep(Duration::from_secs(1));
            match sweep_servers(o) {
                Ok(fresh) => sweepers = fresh,
                Err(e) => eprintln!("quota-load: {e}"),
            }
            continue;
        }
        std::thread::sleep(SWEEP_INTERVAL.saturating_sub(started.elapsed()));
    }
}

// The Lua library, the test helpers and README beside the catalog.
#[cfg(test)]
mod catalog_check;

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|| panic!("{s} parses"))
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(v("1.10.0") > v("1.9.0"));
        assert!(v("2.0.0") > v("1.99.99"));
        assert!(v("1.0.0") == v("1.0"));
        assert!(v("1.0.0-rc.1") < v("1.0.0"));
        assert!(v("1.0.0-rc.2") < v("1.0.0-rc.10"));
        assert!(Version::parse("one").is_none());
        assert!(Version::parse("").is_none());
    }

    #[test]
    fn the_version_line_is_found() {
        assert_eq!(version_in_code("#!lua name=quota\nlocal VERSION = \"1.2.3\"\n").as_deref(), Some("1.2.3"));
        assert_eq!(version_in_code("local VERSION='0.1.0' -- x").as_deref(), Some("0.1.0"));
        assert_eq!(version_in_code("local VERSIONS = 1"), None);
    }

    #[test]
    fn the_embedded_library_is_the_quota_library() {
        let lib = Library::from_source(EMBEDDED, "embedded").expect("embedded library is valid");
        let on = lib.with_test_clock(1_700_000_000_123).expect("has one TEST_CLOCK line");
        assert!(on.source.contains(TEST_CLOCK_ON) && !on.source.contains(TEST_CLOCK_OFF));
        assert!(on.source.contains("local TEST_CLOCK_START = 1700000000123\n"));
    }

    #[test]
    fn settings_are_set_in_the_library_and_checked() {
        let lib = Library::from_source(EMBEDDED, "embedded").expect("embedded library is valid");
        let set = lib.with_settings(&[("max_paths".into(), 5), ("default_ttl".into(), 1000)]).expect("known settings");
        assert!(set.source.contains("    max_paths = 5,\n") && set.source.contains("    default_ttl = 1000,\n"));
        assert!(!set.source.contains("max_paths = 100000,"));
        assert!(parse_setting("MAX_PATHS=7").is_ok());
        for bad in ["max_paths", "max_paths=0", "max_depth=65", "nope=1", "max_paths=x"] {
            assert!(parse_setting(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_and_options_are_checked() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(parse_args(&args(&["localhost:6379"])).is_err());
        assert!(parse_args(&args(&["redis://h:1", "--cacert", "x"])).is_err());
        assert!(parse_args(&args(&["--cert", "c"])).is_err());
        assert!(parse_args(&args(&["--bogus"])).is_err());
        assert!(parse_args(&args(&["rediss://h:1", "--cacert=x", "--check"])).is_ok());
        assert_eq!(redact("redis://u:secret@h:1/0"), "redis://u:***@h:1/0");
    }

    #[test]
    fn slot_indexes_hash_to_their_slots() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        let indexes = slot_indexes();
        assert_eq!(indexes.len(), 16384);
        for (slot, key) in indexes.iter().enumerate() {
            let tag = key.strip_prefix("quota:due{").and_then(|t| t.strip_suffix('}')).expect("quota:due{TAG}");
            assert_eq!(usize::from(crc16(tag.as_bytes()) & 16383), slot, "{key}");
        }
        assert_eq!(indexes[usize::from(crc16(b"@@@@") & 16383)], "quota:due{@@@@}");
    }

    #[test]
    fn cluster_nodes_lines_give_primaries() {
        let nodes = primaries_from_nodes(
            "a 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
             b 127.0.0.1:7001@17001,host1 master,fail - 0 0 2 connected\n\
             c 127.0.0.1:7002@17002 slave a 0 0 1 connected\n",
        );
        assert_eq!(nodes.len(), 2);
        assert_eq!((nodes[0].host.as_str(), nodes[0].port, nodes[0].failed), ("127.0.0.1", 7000, false));
        assert!(nodes[1].failed);
    }
}
