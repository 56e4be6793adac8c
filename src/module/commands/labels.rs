//! `QUOTA.LABEL`, `QUOTA.ARCHIVE`, `QUOTA.RESTORE`: a node's note, tags
//! and archived flag (SPEC §10; the engine's `labels` file).

use super::args::{Args, Seen};
use super::reply::Reply;
use super::{Answer, Command, Env, Handler, keyword};
use crate::engine::labels::{parse_note, parse_tags};
use crate::engine::names::display_path;
use crate::engine::{Error, Result, Tree};

pub const LABEL: Command = Command { name: "QUOTA.LABEL", handler: Handler::Write(label) };
pub const ARCHIVE: Command = Command { name: "QUOTA.ARCHIVE", handler: Handler::Write(archive) };
pub const RESTORE: Command = Command { name: "QUOTA.RESTORE", handler: Handler::Write(restore) };

/// `QUOTA.LABEL key path [NOTE text] [TAGS t1,t2,...]`: replies `path`,
/// `note` (nil when none), `tags`.
fn label(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    let path = args.next_path("a path")?;
    let (mut note, mut tags) = (None, None);
    let mut seen = Seen::default();
    while !args.is_done() {
        let word = args.next_str("a keyword")?;
        let Some(kw) = keyword(word, &["NOTE", "TAGS"]) else { return Err(args.unknown(word)) };
        args.once(&mut seen, kw)?;
        match kw {
            "NOTE" => note = Some(parse_note(args.next_str("a text after NOTE")?.as_bytes())?),
            _ => tags = Some(parse_tags(args.next_str("a list after TAGS")?.as_bytes())?),
        }
    }
    let outcome = tree.label(&path, note, tags, env.now_ms, &env.limits)?;
    let reply = Reply::Map(vec![
        ("path", Reply::str(outcome.path)),
        ("note", Reply::opt_str(outcome.note.as_deref())),
        ("tags", Reply::strings(outcome.tags.into_iter())),
    ]);
    Ok(Answer::new(reply, outcome.changed))
}

/// `QUOTA.ARCHIVE key path`: 1 when the node was archived now, 0 when it
/// already was.
fn archive(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    flag_command(tree, args, env, true)
}

/// `QUOTA.RESTORE key path`: 1 when the node's own flag was cleared, 0
/// when it was not set.
fn restore(tree: &mut Tree, args: &mut Args<'_>, env: &Env) -> Result<Answer> {
    flag_command(tree, args, env, false)
}

fn flag_command(tree: &mut Tree, args: &mut Args<'_>, env: &Env, archived: bool) -> Result<Answer> {
    let path = args.next_path("a path")?;
    args.finish()?;
    // A missing key has no path, not even the root.
    if env.missing_key {
        return Err(Error::NotFound(format!("path '{}'", display_path(&path))));
    }
    let changed = tree.set_archived(&path, archived)?;
    Ok(Answer::new(Reply::Int(i64::from(changed)), changed))
}
