//! What the alert companion keeps in Redis, and the reads and writes the
//! dashboard shares with it. Every key starts with `quota:alerts:` (README
//! "Alert delivery" lists them). The companion's own changes are fenced by
//! its lease (worker.rs); the dashboard's (config, replay, delete) are one
//! MULTI each.

use redis::AsyncCommands;
use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

pub const CONFIG: &str = "quota:alerts:config";
pub const LEADER: &str = "quota:alerts:leader";
pub const CURSORS: &str = "quota:alerts:cursors";
pub const QUEUE: &str = "quota:alerts:queue";
pub const JOBS: &str = "quota:alerts:jobs";
pub const DEAD: &str = "quota:alerts:dead";
pub const SENT: &str = "quota:alerts:sent";
pub const STATUS: &str = "quota:alerts:status";
/// Published on when the configuration key changes, so the companion reads
/// it again at once (it also looks every few seconds).
pub const CONFIG_CHANNEL: &str = "quota:alerts:config-changed";
/// Dead letters kept, at most: the oldest go first.
pub const MAX_DEAD: usize = 10_000;
/// Deliveries remembered in `quota:alerts:sent`.
pub const SENT_KEPT: usize = 100;

/// One event on its way to one destination.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Job {
    /// `<dest>|<key>`: one job per event and destination.
    pub id: String,
    /// The idempotency key: `<tree>#<seq>@<time>`.
    pub key: String,
    pub dest: String,
    /// The rules that sent it there.
    pub rules: Vec<String>,
    pub tree: String,
    pub seq: u64,
    /// The event as published (with `tree`).
    pub event: Json,
    /// Attempts made so far.
    pub attempts: u32,
    /// When it was queued (unix ms).
    pub created: u64,
    pub last_error: Option<String>,
    pub last_attempt: Option<u64>,
    /// When it went to the dead letters.
    pub died: Option<u64>,
}

impl Job {
    pub fn new(tree: &str, event: Json, dest: &str, rules: Vec<String>, now: u64) -> Job {
        let seq = event.get("seq").and_then(Json::as_u64).unwrap_or(0);
        let time = event.get("time").and_then(Json::as_u64).unwrap_or(0);
        let key = idempotency_key(tree, seq, time);
        Job {
            id: format!("{dest}|{key}"),
            key,
            dest: dest.to_string(),
            rules,
            tree: tree.to_string(),
            seq,
            event,
            attempts: 0,
            created: now,
            last_error: None,
            last_attempt: None,
            died: None,
        }
    }

    pub fn kind(&self) -> &str {
        self.event.get("type").and_then(Json::as_str).unwrap_or("")
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Option<Job> {
        serde_json::from_str(text).ok()
    }
}

/// Tree + seq, and the event's time: a tree deleted and created again
/// starts its seq at 1, and its new events must not look delivered.
pub fn idempotency_key(tree: &str, seq: u64, time: u64) -> String {
    format!("{tree}#{seq}@{time}")
}

/// A cursor: the last event handled, `<seq>:<time>`.
pub fn cursor_text(seq: u64, time: u64) -> String {
    format!("{seq}:{time}")
}

pub fn cursor_of(text: &str) -> Option<(u64, u64)> {
    let (seq, time) = text.split_once(':')?;
    Some((seq.parse().ok()?, time.parse().ok()?))
}

/// The companion's status hash, as text fields.
pub async fn status<C: ConnectionLike + Send + Sync>(conn: &mut C) -> redis::RedisResult<Vec<(String, String)>> {
    conn.hgetall(STATUS).await
}

/// The configuration text in Redis, if any.
pub async fn config_text<C: ConnectionLike + Send + Sync>(conn: &mut C) -> redis::RedisResult<Option<String>> {
    conn.get(CONFIG).await
}

/// How many jobs wait (queued, retries included) and how many are dead.
pub async fn counts<C: ConnectionLike + Send + Sync>(conn: &mut C) -> redis::RedisResult<(u64, u64)> {
    redis::pipe().zcard(QUEUE).zcard(DEAD).query_async(conn).await
}

/// Jobs by id from a sorted set (`QUEUE` or `DEAD`), newest `DEAD` first,
/// soonest `QUEUE` first: `start..start+count`.
pub async fn jobs_in<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    set: &str,
    start: usize,
    count: usize,
) -> redis::RedisResult<Vec<Job>> {
    let stop = (start + count).saturating_sub(1) as isize;
    let ids: Vec<String> = if set == DEAD {
        conn.zrevrange(set, start as isize, stop).await?
    } else {
        conn.zrange(set, start as isize, stop).await?
    };
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let bodies: Vec<Option<String>> = redis::cmd("HMGET").arg(JOBS).arg(&ids).query_async(conn).await?;
    Ok(bodies.into_iter().flatten().filter_map(|b| Job::from_json(&b)).collect())
}

/// The last deliveries, newest first (JSON objects).
pub async fn sent<C: ConnectionLike + Send + Sync>(conn: &mut C) -> redis::RedisResult<Vec<Json>> {
    let items: Vec<String> = conn.lrange(SENT, 0, SENT_KEPT as isize - 1).await?;
    Ok(items.iter().filter_map(|s| serde_json::from_str(s).ok()).collect())
}

/// How many times a change to the dead letters is tried again when they
/// changed between its look and its write (WATCH).
const TRIES: usize = 20;

/// The ids of `chunk` that are dead letters now (after a WATCH of `DEAD`).
async fn still_dead<C: ConnectionLike + Send + Sync>(conn: &mut C, chunk: &[String]) -> redis::RedisResult<Vec<bool>> {
    let mut pipe = redis::pipe();
    for id in chunk {
        pipe.zscore(DEAD, id);
    }
    let scores: Vec<Option<f64>> = pipe.query_async(conn).await?;
    Ok(scores.into_iter().map(|s| s.is_some()).collect())
}

fn busy() -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain),
        "busy",
        "the dead letters kept changing meanwhile: try again".to_string(),
    ))
}

/// Puts dead letters back in the queue, due now, with their attempts
/// counted from 0: the given ids, or every one with `None`. Returns how
/// many went back. Only ids that are dead letters when it runs: one
/// replayed or deleted meanwhile is left as it is. Uses WATCH: `conn` must
/// be a connection of its own ([`crate::quota::Quota::dedicated`]).
pub async fn replay<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    ids: Option<&[String]>,
    now: u64,
) -> redis::RedisResult<usize> {
    let ids: Vec<String> = match ids {
        Some(ids) => ids.to_vec(),
        None => conn.zrange(DEAD, 0, -1).await?,
    };
    let mut moved = 0;
    for chunk in ids.chunks(500) {
        let mut tries = 0;
        loop {
            redis::cmd("WATCH").arg(DEAD).query_async::<()>(conn).await?;
            let dead = still_dead(conn, chunk).await?;
            let bodies: Vec<Option<String>> = redis::cmd("HMGET").arg(JOBS).arg(chunk).query_async(conn).await?;
            let mut pipe = redis::pipe();
            pipe.atomic();
            let mut n = 0;
            for ((id, body), dead) in chunk.iter().zip(bodies).zip(dead) {
                let Some(mut job) = body.as_deref().and_then(Job::from_json).filter(|j| dead && j.died.is_some())
                else {
                    continue;
                };
                job.attempts = 0;
                job.died = None;
                pipe.zrem(DEAD, id).ignore();
                pipe.hset(JOBS, id, job.to_json()).ignore();
                pipe.zadd(QUEUE, id, now).ignore();
                n += 1;
            }
            if n == 0 {
                redis::cmd("UNWATCH").query_async::<()>(conn).await?;
                break;
            }
            match pipe.query_async::<redis::Value>(conn).await? {
                redis::Value::Nil if tries < TRIES => tries += 1,
                redis::Value::Nil => return Err(busy()),
                _ => {
                    moved += n;
                    break;
                }
            }
        }
    }
    Ok(moved)
}

/// Deletes dead letters: the given ids, or every one with `None`. Returns
/// how many were deleted. Only ids that are dead letters when it runs: a
/// job replayed meanwhile (queued again, the same id) keeps its body. Uses
/// WATCH: `conn` must be a connection of its own.
pub async fn delete_dead<C: ConnectionLike + Send + Sync>(
    conn: &mut C,
    ids: Option<&[String]>,
) -> redis::RedisResult<usize> {
    let ids: Vec<String> = match ids {
        Some(ids) => ids.to_vec(),
        None => conn.zrange(DEAD, 0, -1).await?,
    };
    let mut deleted = 0;
    for chunk in ids.chunks(500) {
        let mut tries = 0;
        loop {
            redis::cmd("WATCH").arg(DEAD).query_async::<()>(conn).await?;
            let dead = still_dead(conn, chunk).await?;
            let gone: Vec<&String> = chunk.iter().zip(dead).filter(|(_, d)| *d).map(|(id, _)| id).collect();
            if gone.is_empty() {
                redis::cmd("UNWATCH").query_async::<()>(conn).await?;
                break;
            }
            let mut pipe = redis::pipe();
            pipe.atomic().zrem(DEAD, &gone).ignore().hdel(JOBS, &gone).ignore();
            match pipe.query_async::<redis::Value>(conn).await? {
                redis::Value::Nil if tries < TRIES => tries += 1,
                redis::Value::Nil => return Err(busy()),
                _ => {
                    deleted += gone.len();
                    break;
                }
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jobs_are_keyed_by_destination_tree_seq_and_time() {
        let ev = json!({"seq": 5, "time": 1769904000000u64, "type": "low", "tree": "user:42"});
        let job = Job::new("user:42", ev, "billing", vec!["wallet".into()], 7);
        assert_eq!(job.key, "user:42#5@1769904000000");
        assert_eq!(job.id, "billing|user:42#5@1769904000000");
        assert_eq!(job.kind(), "low");
        assert_eq!(Job::from_json(&job.to_json()), Some(job));
        assert_eq!(cursor_of(&cursor_text(5, 17)), Some((5, 17)));
        assert_eq!(cursor_of("5"), None);
    }
}
