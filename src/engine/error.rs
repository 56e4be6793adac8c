//! The engine's typed errors. The command layer turns each kind into one
//! reply prefix (`ERR syntax`, `ERR invalid amount`, `NOTFOUND`, ...), so a
//! client can branch on the prefix and show the rest to a person.
//!
//! Lua twin: the same texts, raised with `fail` (lua/src/00_header.lua).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Malformed arguments: unknown keywords, bad paths or names.
    Syntax(String),
    /// A command given too few arguments: (command, what is missing).
    Arity(String, String),
    /// A decimal that does not parse or is out of the accepted range.
    InvalidAmount(String),
    /// A metric name that breaks the naming rule or is a keyword.
    UnknownMetric(String),
    /// A bound of SPEC §5 was reached (paths, policies, holds, depth, items).
    Limit(String),
    /// A reservation, path or policy that does not exist.
    NotFound(String),
    /// A well-formed request the current state refuses (for example
    /// committing a reservation that was released).
    State(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn syntax(msg: impl Into<String>) -> Self {
        Error::Syntax(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Syntax(m) => write!(f, "ERR syntax: {m}"),
            Error::Arity(cmd, missing) => {
                write!(f, "ERR wrong number of arguments for '{}' command: missing {missing}", cmd.to_ascii_lowercase())
            }
            Error::InvalidAmount(m) => write!(f, "ERR invalid amount: {m}"),
            Error::UnknownMetric(m) => write!(f, "ERR unknown metric: {m}"),
            Error::Limit(m) => write!(f, "ERR limit: {m}"),
            Error::NotFound(m) => write!(f, "NOTFOUND no such {m}"),
            Error::State(m) => write!(f, "ERR {m}"),
        }
    }
}

impl std::error::Error for Error {}
