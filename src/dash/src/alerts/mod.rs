//! The alert companion, `quota-dash alerts`: reads every tree's events (the
//! catch-up protocol: subscribe, then `QUOTA.EVENTS … SINCE` the cursor kept
//! per tree in Redis) and delivers those its rules pick to webhooks and to
//! email, at least once, with retries and dead letters.
//!
//! - `config`: the rules and destinations (pure).
//! - `store`: its keys in Redis, shared with the dashboard's Alerts page.
//! - `worker`: the lease, the catch-up and the delivery loop.
//! - `webhook`, `email`: one attempt of one delivery.

pub mod config;
pub mod email;
pub mod store;
pub mod webhook;
pub mod worker;

use crate::options::{self, Parsed};

pub const USAGE: &str = "\
quota-dash alerts: delivers quota's events to webhooks and email, as rules say

Usage: quota-dash alerts [--redis URL] [--config FILE] [--backend B] [TLS options]

  --redis URL        the Redis whose trees to watch (default redis://127.0.0.1:6379); a
                     password also from REDISCLI_AUTH
  --config FILE      the rules and destinations, JSON (re-read when the file changes);
                     without it, from the key quota:alerts:config (the dashboard's Alerts page)
  --check            check the --config file (and that the variables it names are set), then exit
  --backend B        auto (default), module or lua
  --cacert FILE, --cert FILE --key FILE, --insecure   TLS, as for the dashboard
  --help             this text

Secrets (a webhook's signing secret, the SMTP password) come from the environment variables
the configuration names. Run as many as you like: one delivers, the others stand by.
";

/// `quota-dash alerts …`: runs until killed; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let mut config = None;
    let mut check = false;
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if a == "--config" {
            i += 1;
            match args.get(i) {
                Some(f) if !f.is_empty() => config = Some(f.clone()),
                _ => return usage_error("--config needs a file"),
            }
        } else if a == "--check" {
            check = true;
        } else if let Some(f) = a.strip_prefix("--config=") {
            config = Some(f.to_string());
        } else if ["--listen", "--token", "--read-only"].iter().any(|f| a == *f || a.starts_with(&format!("{f}="))) {
            return usage_error(&format!("{a} is for the dashboard, not for alerts (see quota-dash alerts --help)"));
        } else {
            rest.push(args[i].clone());
        }
        i += 1;
    }
    if check {
        return match &config {
            Some(f) => check_file(f),
            None => usage_error("--check needs --config FILE"),
        };
    }
    let options = match options::parse(&rest, None) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return 0;
        }
        Err(e) => return usage_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("quota-dash alerts: cannot start: {e}");
            return 1;
        }
    };
    match runtime.block_on(worker::run(*options, config)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("quota-dash alerts: {e}");
            1
        }
    }
}

/// A configuration file's text: a regular file of at most
/// [`config::MAX_CONFIG_BYTES`], never more read than that.
pub fn read_config_file(f: &str) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(f).map_err(|e| format!("cannot read {f}: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read {f}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{f} is not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(config::MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {f}: {e}"))?;
    if bytes.len() > config::MAX_CONFIG_BYTES {
        return Err(format!("limit: {f} is larger than {} bytes", config::MAX_CONFIG_BYTES));
    }
    String::from_utf8(bytes).map_err(|_| format!("{f} is not UTF-8 text"))
}

/// `--check`: parses the file, and says which environment variables it
/// names are not set here.
fn check_file(f: &str) -> i32 {
    let text = match read_config_file(f) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    match config::Config::parse(&text) {
        Ok(c) => {
            println!("{f}: {} rules, {} destinations", c.rules.len(), c.destinations.len());
            let missing: Vec<String> = c.env_names().into_iter().filter(|v| std::env::var_os(v).is_none()).collect();
            if missing.is_empty() {
                0
            } else {
                println!("not set in this environment: {}", missing.join(", "));
                1
            }
        }
        Err(e) => {
            eprintln!("{f}: {e}");
            1
        }
    }
}

fn usage_error(e: &str) -> i32 {
    eprintln!("quota-dash alerts: {e}");
    2
}
