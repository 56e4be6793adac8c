//! The command line: where Redis is, where to listen, and who may look.

use std::net::SocketAddr;

pub const USAGE: &str = "\
quota-dash: quota's dashboard in a browser (trees, policies, grants, plans, prices, usage, events)

Usage: quota-dash [--redis URL] [--listen ADDR] [--token T] [--read-only] [options]

  --redis URL        the Redis to manage (default redis://127.0.0.1:6379): user, password and
                     database from the URL (redis://user:pw@host:port/db), rediss:// for TLS;
                     a password also from REDISCLI_AUTH
  --listen ADDR      where the dashboard listens (default 127.0.0.1:8080; localhost:PORT is
                     127.0.0.1:PORT); an address beyond loopback needs a token
  --token T          every request must carry it (the login page sets a cookie, or send
                     Authorization: Bearer T); also from QUOTA_DASH_TOKEN
  --read-only        show everything, change nothing (write forms hidden, writes refused)
  --backend B        auto (default), module (QUOTA.* commands) or lua (FCALL quota_*)
  --cacert FILE      CA certificate(s) (PEM) to verify a rediss:// server with
  --cert FILE --key FILE   a client certificate for rediss://
  --insecure         rediss:// without verifying the server's certificate
  --help             this text

quota-dash alerts [--redis URL] [--config FILE]: the alert companion, which delivers events to
webhooks and email (quota-dash alerts --help)
";

/// Which commands reach the trees: the module's `QUOTA.X` or the Lua
/// library's `FCALL quota_x`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    Auto,
    Module,
    Lua,
}

#[derive(Debug)]
pub struct Options {
    pub redis: String,
    pub listen: SocketAddr,
    pub token: Option<String>,
    pub read_only: bool,
    pub backend: BackendChoice,
    pub cacert: Option<String>,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub insecure: bool,
}

/// What the command line asks for: run, or print the usage.
pub enum Parsed {
    Run(Box<Options>),
    Help,
}

/// Parses the arguments (without the program name) and the environment's
/// token. Refuses a listening address beyond loopback without a token.
pub fn parse(args: &[String], env_token: Option<String>) -> Result<Parsed, String> {
    let mut o = Options {
        redis: "redis://127.0.0.1:6379".to_string(),
        listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
        token: env_token.filter(|t| !t.is_empty()),
        read_only: false,
        backend: BackendChoice::Auto,
        cacert: None,
        cert: None,
        key: None,
        insecure: false,
    };
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg, None),
        };
        match flag {
            "--help" | "-h" => return Ok(Parsed::Help),
            "--read-only" => o.read_only = true,
            "--insecure" => o.insecure = true,
            "--redis" | "--listen" | "--token" | "--backend" | "--cacert" | "--cert" | "--key" => {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        args.get(i).cloned().ok_or_else(|| format!("{flag} needs a value"))?
                    }
                };
                match flag {
                    "--redis" => o.redis = value,
                    "--listen" => o.listen = listen_of(&value)?,
                    "--token" => {
                        if value.is_empty() {
                            return Err("--token must not be empty".to_string());
                        }
                        o.token = Some(value)
                    }
                    "--backend" => {
                        o.backend = match value.as_str() {
                            "auto" => BackendChoice::Auto,
                            "module" => BackendChoice::Module,
                            "lua" => BackendChoice::Lua,
                            _ => return Err(format!("--backend must be auto, module or lua (got {value})")),
                        }
                    }
                    "--cacert" => o.cacert = Some(value),
                    "--cert" => o.cert = Some(value),
                    _ => o.key = Some(value),
                }
            }
            _ => return Err(format!("unknown argument {arg} (see --help)")),
        }
        i += 1;
    }
    if o.cert.is_some() != o.key.is_some() {
        return Err("--cert and --key go together".to_string());
    }
    if !o.listen.ip().to_canonical().is_loopback() && o.token.is_none() {
        return Err(format!(
            "refusing to listen on {} without a token: anyone who reaches it could change quotas. \
             Give --token (or QUOTA_DASH_TOKEN), or listen on 127.0.0.1",
            o.listen
        ));
    }
    if let Some(t) = &o.token {
        if t.len() < 16 {
            return Err("--token must be at least 16 characters".to_string());
        }
        if !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "--token must be printable ASCII without spaces (letters, digits, punctuation), as HTTP headers carry it"
                    .to_string(),
            );
        }
    }
    Ok(Parsed::Run(Box::new(o)))
}

/// `--listen`'s address: an IP and port, or `localhost:PORT` (127.0.0.1).
fn listen_of(value: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = value.parse() {
        return Ok(a);
    }
    match value.rsplit_once(':') {
        Some((host, port)) if host.eq_ignore_ascii_case("localhost") => port
            .parse::<u16>()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .map_err(|_| format!("--listen needs a port number after localhost: (got {value})")),
        _ => Err(format!("--listen needs host:port, such as 127.0.0.1:8080 or localhost:8080 (got {value})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn run(a: &[&str], env: Option<&str>) -> Result<Options, String> {
        match parse(&args(a), env.map(str::to_string))? {
            Parsed::Run(o) => Ok(*o),
            Parsed::Help => Err("help".to_string()),
        }
    }

    #[test]
    fn defaults_are_loopback_without_a_token() {
        let o = run(&[], None).unwrap();
        assert_eq!(o.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(o.redis, "redis://127.0.0.1:6379");
        assert!(o.token.is_none() && !o.read_only);
        assert_eq!(run(&["--listen", "localhost:9000"], None).unwrap().listen.to_string(), "127.0.0.1:9000");
    }

    // args, env token, accepted
    #[test]
    fn listening_beyond_loopback_needs_a_token() {
        let rows: &[(&[&str], Option<&str>, bool)] = &[
            (&["--listen", "0.0.0.0:8080"], None, false),
            (&["--listen", "0.0.0.0:8080", "--token", "0123456789abcdef"], None, true),
            (&["--listen=0.0.0.0:8080"], Some("0123456789abcdef"), true),
            (&["--listen", "0.0.0.0:8080"], Some(""), false),
            (&["--listen", "[::1]:8080"], None, true),
            (&["--listen", "0.0.0.0:8080", "--token", "short"], None, false),
            (&["--token", ""], None, false),
            (&["--token", "pass word;with=semi"], None, false),
            (&["--token", "pässwörd-sehr-lang"], None, false),
            (&["--token", "0123456789abcdef!#$%&()*+-./:<=>?@[]^_`{|}~"], None, true),
            (&["--listen", "nowhere"], None, false),
            (&["--listen", "localhost:8080"], None, true),
            (&["--listen", "localhost:x"], None, false),
            (&["--listen", "example.com:8080"], None, false),
            (&["--listen", "[::ffff:127.0.0.1]:8080"], None, true),
            (&["--listen", "[::ffff:0.0.0.0]:8080"], None, false),
            (&["--listen", "[::]:8080"], None, false),
            (&["--backend", "lua"], None, true),
            (&["--backend", "redis"], None, false),
            (&["--cert", "c.pem"], None, false),
            (&["--bogus"], None, false),
            (&["--redis"], None, false),
        ];
        for (a, env, ok) in rows {
            assert_eq!(run(a, *env).is_ok(), *ok, "{a:?} {env:?}");
        }
    }
}
