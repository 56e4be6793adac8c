//! The argument cursor shared by every command: typed `next_*` readers,
//! case-insensitive keywords, and errors that name the argument.

use rust_decimal::Decimal;

use crate::engine::catalog::LIST_ENDS;
use crate::engine::{Error, Result, amount, names};

pub struct Args<'a> {
    items: &'a [&'a str],
    pos: usize,
    command: &'static str,
    /// The grammar of the release before issue 18 (a replayed write with
    /// a legacy stamp): `meta` is a metric name, not a keyword.
    legacy: bool,
}

impl<'a> Args<'a> {
    pub fn new(command: &'static str, items: &'a [&'a str]) -> Args<'a> {
        Args { items, pos: 0, command, legacy: false }
    }

    /// Reads with the grammar of the release before issue 18 when `legacy`
    /// (see [`crate::replication::Stamp::legacy`]): metrics as stored data
    /// takes them ([`names::parse_stored_metric`]), and `META` ends no list.
    pub fn with_legacy(mut self, legacy: bool) -> Args<'a> {
        self.legacy = legacy;
        self
    }

    pub fn command(&self) -> &'static str {
        self.command
    }

    pub fn remaining(&self) -> usize {
        self.items.len() - self.pos
    }

    pub fn is_done(&self) -> bool {
        self.pos >= self.items.len()
    }

    /// The arguments not consumed yet.
    pub fn rest(&self) -> &'a [&'a str] {
        self.items.get(self.pos..).unwrap_or_default()
    }

    pub fn peek(&self) -> Option<&'a str> {
        self.items.get(self.pos).copied()
    }

    /// The next argument, or an error naming what was expected.
    pub fn next_str(&mut self, what: &str) -> Result<&'a str> {
        match self.items.get(self.pos) {
            Some(s) => {
                self.pos += 1;
                Ok(s)
            }
            None => Err(Error::Arity(self.command.to_string(), what.to_string())),
        }
    }

    /// Consumes the next argument if it is `keyword` (any case).
    pub fn eat(&mut self, keyword: &str) -> bool {
        if self.peek().is_some_and(|s| s.eq_ignore_ascii_case(keyword)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes the last argument if it is `keyword` (any case): a flag
    /// recognised only at the end (`QUOTA.TREE … ARCHIVED`).
    pub fn eat_last(&mut self, keyword: &str) -> bool {
        match self.items.split_last() {
            Some((last, rest)) if self.pos <= rest.len() && last.eq_ignore_ascii_case(keyword) => {
                self.items = rest;
                true
            }
            _ => false,
        }
    }

    /// Whether the next argument is a keyword that ends a value list.
    pub fn at_list_end(&self) -> bool {
        self.peek().is_none_or(|s| {
            LIST_ENDS.iter().any(|k| s.eq_ignore_ascii_case(k) && !(self.legacy && k.eq_ignore_ascii_case("meta")))
        })
    }

    /// A path, up to the hard depth bound: `max_depth` bounds only the
    /// paths a command creates (`Limits::max_depth`, checked by the
    /// engine), so paths that exist stay readable and usable when it is
    /// lowered.
    pub fn next_path(&mut self, what: &str) -> Result<String> {
        names::parse_path(self.next_str(what)?, names::MAX_DEPTH_HARD)
    }

    pub fn next_name(&mut self, what: &str) -> Result<String> {
        names::parse_name(self.next_str(what)?, what)
    }

    pub fn next_metric(&mut self) -> Result<String> {
        let text = self.next_str("a metric")?;
        if self.legacy { names::parse_stored_metric(text) } else { names::parse_metric(text) }
    }

    pub fn next_amount(&mut self, what: &str) -> Result<Decimal> {
        amount::parse(self.next_str(what)?)
    }

    pub fn next_non_negative(&mut self, what: &str) -> Result<Decimal> {
        amount::parse_non_negative(self.next_str(what)?)
    }

    /// An integer in `min..=max`; `what` names it in the error.
    pub fn next_u64(&mut self, what: &str, min: u64, max: u64) -> Result<u64> {
        let text = self.next_str(what)?;
        match text.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) && !text.starts_with('+') => Ok(n),
            _ => Err(Error::syntax(format!(
                "{what} must be an integer from {min} to {max}, not '{}'",
                names::clip(text)
            ))),
        }
    }

    /// Fails unless every argument was consumed.
    pub fn finish(&self) -> Result<()> {
        match self.peek() {
            None => Ok(()),
            Some(extra) => Err(self.unexpected(extra)),
        }
    }

    /// An error for an argument the command does not take where it stands.
    pub fn unexpected(&self, word: &str) -> Error {
        Error::syntax(format!("unexpected argument '{}' in {}", names::clip(word), self.command))
    }

    /// An error for an argument that is not a keyword of this command.
    pub fn unknown(&self, word: &str) -> Error {
        Error::syntax(format!("unknown argument '{}' in {}", names::clip(word), self.command))
    }

    /// Refuses a keyword given twice.
    pub fn once(&self, seen: &mut Seen, keyword: &'static str) -> Result<()> {
        if seen.words[..seen.len].contains(&keyword) {
            return Err(Error::syntax(format!("{keyword} given twice in {}", self.command)));
        }
        if let Some(slot) = seen.words.get_mut(seen.len) {
            *slot = keyword;
            seen.len += 1;
        }
        Ok(())
    }
}

/// The keywords a command has read, for [`Args::once`]: no command has
/// more than a dozen single-use keywords, so they are kept inline.
#[derive(Default)]
pub struct Seen {
    words: [&'static str; 16],
    len: usize,
}
