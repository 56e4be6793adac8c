//! The companion's loop. One instance holds the lease (`quota:alerts:leader`)
//! and works; the others stand by and take over when it lapses.
//!
//! The leader subscribes to every tree's channel, then catches each tree up
//! from its cursor (`QUOTA.EVENTS key SINCE …`): the events its rules pick
//! become jobs, one per event and destination, queued in the same MULTI that
//! moves the cursor. Jobs are then delivered; each outcome (done, retry
//! later, dead letter) is another MULTI. Every MULTI runs after WATCH of
//! the lease and a check that this instance still holds it, so an instance
//! that lost the lease changes nothing. A job is removed only after its
//! delivery succeeded: a crash in between delivers it again, with the same
//! idempotency key (at least once).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use serde_json::{Value as Json, json};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinSet;

use super::config::{Config, Target};
use super::store::{self, CONFIG, CONFIG_CHANNEL, CURSORS, DEAD, JOBS, Job, LEADER, QUEUE, SENT, STATUS};
use super::{email, webhook};
use crate::options::Options;
use crate::quota::{Cmd, Quota};

/// Events read from a log at a time.
const PAGE: usize = 1000;
/// Deliveries in flight at once, and to one destination.
const IN_FLIGHT: usize = 16;
const PER_DESTINATION: usize = 8;
/// Due jobs looked at a round, at most: pages of this many.
const DUE_PAGE: usize = 256;
const DUE_PAGES: usize = 32;
/// The channels events are published on.
const EVENTS: &str = "quota:events:";
/// How long a first start's sweep waits, once over, for the publishes of
/// the events it saw (at least a tick).
const GRACE: Duration = Duration::from_millis(500);
/// Trees whose matching rules are remembered, at most (then forgotten).
const RULES_FOR_KEPT: usize = 100_000;
/// Trees read a round, at most, between deliveries.
const TREES_A_ROUND: usize = 100;
/// Trees a sweep finds a round, at most, and keys it looks at (100 SCAN
/// calls of 100), so news waits for no long step.
const SCAN_STEP: usize = 1000;
const SCAN_KEYS: usize = 10_000;
/// Every tree is looked at again this often, in case a publish was missed.
const SWEEP: Duration = Duration::from_secs(300);
/// A tree whose log could not be read, or a sweep that failed, is tried
/// again after this long.
const RETRY: Duration = Duration::from_secs(5);

fn env_ms(name: &str, default: u64) -> Duration {
    Duration::from_millis(std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|ms| *ms > 0).unwrap_or(default))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn log(line: impl AsRef<str>) {
    println!("quota-dash alerts: {}", line.as_ref());
}

/// Why a fenced write did not happen.
enum Fence {
    /// Another instance holds the lease now.
    Lost,
    Redis(String),
}

impl std::fmt::Display for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fence::Lost => write!(f, "the lease passed to another instance"),
            Fence::Redis(e) => write!(f, "{e}"),
        }
    }
}

/// Where the configuration comes from.
enum Source {
    File(String),
    Redis,
}

struct Worker {
    quota: Quota,
    /// The connection for WATCH … EXEC, one user at a time.
    fenced: Mutex<Option<MultiplexedConnection>>,
    instance: String,
    source: Source,
    http: reqwest::Client,
    lease: Duration,
    tick: Duration,
    /// This process has read events: a later lead is never a first start.
    started: AtomicBool,
}

/// What the leader knows between ticks.
struct Lead {
    config: Arc<Config>,
    /// The configuration's text last read, and whether it was good.
    text: Option<String>,
    error: Option<String>,
    /// A good configuration has been seen: events are read (until then they
    /// wait in the logs, so none is lost to a broken configuration).
    reading: bool,
    file_stamp: Option<(SystemTime, u64)>,
    config_read: Option<Instant>,
    /// The job each delivery task works on.
    tasks: HashMap<tokio::task::Id, String>,
    /// Which rules each tree's name matches, for this configuration.
    rules_for: HashMap<String, Arc<Vec<usize>>>,
    /// Jobs being delivered, and their destinations.
    in_flight: HashMap<String, String>,
    /// Trees that published events not yet read: read before `dirty`.
    live: BTreeSet<String>,
    /// Trees a sweep found, to read.
    dirty: BTreeSet<String>,
    /// While the first start skips history: the first seq each tree
    /// published since (its events from there on are news).
    live_from: HashMap<String, u64>,
    /// While the first start skips history: the newest event of each tree
    /// found without a cursor, its cursor-to-be.
    history: HashMap<String, (u64, u64)>,
    /// When the first start's sweep was first seen over.
    sweep_ended: Option<Instant>,
    /// When every tree is looked at again.
    next_sweep: Instant,
    /// A sweep under way: where its SCAN goes on.
    scan: Option<String>,
    /// Trees whose log could not be read: the error, and when to try again.
    failing: HashMap<String, (String, Instant)>,
    /// When the lease was last extended.
    renewed: Instant,
}

pub async fn run(o: Options, config_file: Option<String>) -> Result<(), String> {
    let quota = Quota::connect(&o).await?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let instance = format!(
        "{}:{}:{:08x}",
        if host.is_empty() { "host" } else { &host },
        std::process::id(),
        now_ms() as u32 ^ std::process::id().rotate_left(16)
    );
    let source = match config_file {
        Some(f) => {
            std::fs::metadata(&f).map_err(|e| format!("--config {f}: {e}"))?;
            Source::File(f)
        }
        None => Source::Redis,
    };
    log(format!(
        "{} ({}), instance {instance}, configuration from {}",
        quota.server,
        quota.backend.name(),
        match &source {
            Source::File(f) => f.clone(),
            Source::Redis => format!("the key {CONFIG}"),
        }
    ));
    let w = Arc::new(Worker {
        quota,
        fenced: Mutex::new(None),
        instance,
        source,
        http: webhook::client()?,
        lease: env_ms("QUOTA_ALERTS_LEASE_MS", 10_000),
        tick: env_ms("QUOTA_ALERTS_TICK_MS", 500),
        started: AtomicBool::new(false),
    });
    let stop = stop_signal();
    tokio::pin!(stop);
    let mut said = "";
    loop {
        match w.acquire().await {
            Ok(true) => {
                said = "";
                log("holds the lease: delivering");
                tokio::select! {
                    why = w.clone().lead() => log(format!("stopped delivering: {why}")),
                    _ = &mut stop => {
                        w.release().await;
                        log("stopped (lease released)");
                        return Ok(());
                    }
                }
            }
            Ok(false) => {
                if said != "standby" {
                    log("another instance holds the lease: standing by");
                    said = "standby";
                }
            }
            Err(e) => {
                if said != "error" {
                    log(format!("cannot reach Redis: {e} (trying again)"));
                    said = "error";
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(w.tick) => {}
            _ = &mut stop => return Ok(()),
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut i), Ok(mut t)) => {
            tokio::select! {
                _ = i.recv() => {}
                _ = t.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// What the pub/sub listener tells the leader.
enum Signal {
    /// A tree published an event (its seq, when the message says it).
    Tree(String, Option<u64>),
    Config,
    /// (Re)subscribed: every tree must be caught up.
    Sweep,
}

impl Worker {
    /// Takes the lease if nobody holds it.
    async fn acquire(&self) -> Result<bool, String> {
        let mut conn = self.quota.shared();
        let set: Option<String> = redis::cmd("SET")
            .arg(LEADER)
            .arg(&self.instance)
            .arg("NX")
            .arg("PX")
            .arg(self.lease.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        if set.is_some() {
            return Ok(true);
        }
        // Still this instance's (it stopped leading over a passing error).
        let holder: Option<String> = conn.get(LEADER).await.map_err(|e| e.to_string())?;
        Ok(holder.as_deref() == Some(self.instance.as_str()))
    }

    /// Gives the lease up (on a clean stop), so another instance need not wait.
    async fn release(&self) {
        let mut pipe = redis::pipe();
        pipe.del(LEADER).ignore();
        let _ = self.fenced(pipe).await;
    }

    /// Runs `pipe` as one MULTI/EXEC if this instance holds the lease.
    async fn fenced(&self, pipe: redis::Pipeline) -> Result<(), Fence> {
        self.fenced_if(pipe, false).await
    }

    /// [`Worker::fenced`]; with `or_free`, also when nobody holds the lease
    /// (it lapsed while this instance was busy, and nobody took it).
    async fn fenced_if(&self, mut pipe: redis::Pipeline, or_free: bool) -> Result<(), Fence> {
        let mut guard = self.fenced.lock().await;
        let conn = match guard.as_mut() {
            Some(c) => c,
            None => {
                let c = self.quota.dedicated().await.map_err(|e| Fence::Redis(e.message))?;
                guard.insert(c)
            }
        };
        let result: Result<redis::Value, Fence> = async {
            redis::cmd("WATCH").arg(LEADER).query_async::<()>(conn).await.map_err(|e| Fence::Redis(e.to_string()))?;
            let holder: Option<String> = conn.get(LEADER).await.map_err(|e| Fence::Redis(e.to_string()))?;
            let ours = holder.as_deref() == Some(self.instance.as_str()) || (or_free && holder.is_none());
            if !ours {
                let _ = redis::cmd("UNWATCH").query_async::<()>(conn).await;
                return Err(Fence::Lost);
            }
            pipe.atomic().query_async(conn).await.map_err(|e| Fence::Redis(e.to_string()))
        }
        .await;
        match result {
            Ok(redis::Value::Nil) => Err(Fence::Lost),
            Ok(_) => Ok(()),
            Err(Fence::Redis(e)) => {
                // The connection may be half way through a transaction: a new one next time.
                *guard = None;
                Err(Fence::Redis(e))
            }
            Err(e) => Err(e),
        }
    }

    /// Works while this instance holds the lease; returns why it stopped.
    async fn lead(self: Arc<Self>) -> String {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let listener = tokio::spawn(self.clone().listen(tx));
        let mut tasks: JoinSet<Delivered> = JoinSet::new();
        let mut st = Lead {
            config: Arc::new(Config::default()),
            text: None,
            error: None,
            reading: false,
            file_stamp: None,
            config_read: None,
            in_flight: HashMap::new(),
            tasks: HashMap::new(),
            rules_for: HashMap::new(),
            live: BTreeSet::new(),
            dirty: BTreeSet::new(),
            live_from: HashMap::new(),
            history: HashMap::new(),
            sweep_ended: None,
            next_sweep: Instant::now(),
            scan: None,
            failing: HashMap::new(),
            renewed: Instant::now(),
        };
        // Whether this is a first start, whose sweep skips the history in
        // the logs (decided in the first round, from `initialized`).
        let mut skip_history: Option<bool> = None;
        let mut tick = tokio::time::interval(self.tick);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let why = loop {
            let mut reload = false;
            // Work left from the last round (a sweep under way, trees to
            // read): go on at once, after whatever else is ready.
            let busy = (st.reading || skip_history == Some(true))
                && (st.scan.is_some() || !st.dirty.is_empty() || !st.live.is_empty());
            tokio::select! {
                Some(sig) = rx.recv() => {
                    let mut next = Some(sig);
                    while let Some(sig) = next {
                        match sig {
                            Signal::Tree(t, seq) => {
                                // While the first start skips history, what is
                                // published now is news: remember where it began.
                                if skip_history != Some(false)
                                    && let Some(seq) = seq
                                {
                                    let from = st.live_from.entry(t.clone()).or_insert(seq);
                                    *from = (*from).min(seq);
                                }
                                st.live.insert(t);
                            }
                            Signal::Config => reload = true,
                            // (Re)subscribed: publishes may have been missed
                            // anywhere, so the sweep starts again.
                            Signal::Sweep => {
                                st.scan = None;
                                st.next_sweep = Instant::now();
                            }
                        }
                        next = rx.try_recv().ok();
                    }
                }
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    if let Err(why) = finished(&mut st, done) {
                        break why;
                    }
                }
                _ = tick.tick() => {}
                _ = std::future::ready(()), if busy => {}
            }
            // Every delivery that has finished, not one a round.
            let mut lost = None;
            while let Some(done) = tasks.try_join_next_with_id() {
                if let Err(why) = finished(&mut st, done) {
                    lost = Some(why);
                    break;
                }
            }
            if let Some(why) = lost {
                break why;
            }
            if st.renewed.elapsed() >= self.tick
                && let Err(e) = self.renew(&mut st).await
            {
                break lease_lost(e);
            }
            let was_reading = st.reading;
            self.load_config(&mut st, reload).await;
            let now = Instant::now();
            // Decided at once, whatever the configuration: on the very
            // first start the logs' events are history. Skipping them moves
            // only the cursors of trees that have none (when the sweep
            // ends), which needs no rule, so a configuration refused at the
            // first start loses nothing.
            if skip_history.is_none() {
                // `initialized` is written when a first start's sweep ends:
                // until then, whichever instance leads goes on skipping. A
                // process that saw it once is never at a first start again:
                // Redis restarted empty, and every event in its logs is news.
                let mut conn = self.quota.shared();
                match conn.hget::<_, _, Option<String>>(STATUS, "initialized").await {
                    Ok(done) => {
                        let done = done.is_some();
                        let seen = self.started.load(Ordering::Relaxed);
                        let first = !done && !seen;
                        if first {
                            log("first start: the events already in the logs are skipped; later ones are delivered");
                        } else if !done && self.mark_started().await.is_err() {
                            continue;
                        }
                        if done {
                            self.started.store(true, Ordering::Relaxed);
                        }
                        skip_history = Some(first);
                        st.scan = None;
                        st.next_sweep = now;
                    }
                    Err(e) => {
                        log(format!("cannot read {STATUS}: {e}"));
                        continue;
                    }
                }
            }
            let active = st.reading || skip_history == Some(true);
            let became_reading = st.reading && !was_reading;
            if active && st.scan.is_none() && (became_reading || now >= st.next_sweep) {
                let mut conn = self.quota.shared();
                match conn.hkeys::<_, Vec<String>>(CURSORS).await {
                    Ok(known) => {
                        st.dirty.extend(known);
                        st.scan = Some("0".to_string());
                    }
                    Err(e) => {
                        log(format!("cannot list the trees: {e} (trying again in {} s)", RETRY.as_secs()));
                        st.next_sweep = now + RETRY;
                    }
                }
            }
            // News first: the trees that published, then what is due, before
            // the sweep's next step.
            if active && !st.live.is_empty() {
                if let Err(why) = self.read_some(&mut st, skip_history == Some(true), true).await {
                    break why;
                }
                if let Err(e) = self.dispatch(&mut st, &mut tasks).await {
                    log(format!("cannot read the queue: {e}"));
                }
            }
            // One step of the sweep: about SCAN_KEYS keys looked at.
            if active && let Some(cursor) = st.scan.take() {
                match self.quota.trees_within("*", &cursor, SCAN_STEP, SCAN_KEYS).await {
                    Ok((found, next)) => {
                        st.dirty.extend(found);
                        if next == "0" {
                            st.next_sweep = now + SWEEP;
                        } else {
                            st.scan = Some(next);
                        }
                    }
                    Err(e) => {
                        log(format!("cannot list the trees: {} (trying again in {} s)", e.message, RETRY.as_secs()));
                        st.next_sweep = now + RETRY;
                    }
                }
            }
            if active {
                let again: Vec<String> =
                    st.failing.iter().filter(|(_, (_, at))| now >= *at).map(|(t, _)| t.clone()).collect();
                st.dirty.extend(again);
                if let Err(why) = self.read_some(&mut st, skip_history == Some(true), false).await {
                    break why;
                }
                // The first sweep is over once every tree has been looked at
                // and a grace has passed for the publishes of the events it
                // saw to arrive: only then do the history cursors go in, so a
                // tree whose news the sweep saw before its publish keeps it.
                if skip_history == Some(true) && st.scan.is_none() && st.dirty.is_empty() && st.live.is_empty() {
                    let ended = *st.sweep_ended.get_or_insert(now);
                    if now.duration_since(ended) >= self.tick.max(GRACE) {
                        if let Err(e) = self.skip_history(&mut st).await {
                            break lease_lost(e);
                        }
                        skip_history = Some(false);
                    }
                } else {
                    st.sweep_ended = None;
                }
            }
            if let Err(e) = self.dispatch(&mut st, &mut tasks).await {
                log(format!("cannot read the queue: {e}"));
            }
        };
        listener.abort();
        tasks.abort_all();
        why
    }

    /// Ends a first start: each tree the sweep found without a cursor gets
    /// one at its newest event then, unless it has one by now (it published
    /// since: its news was read), and `initialized` is written.
    async fn skip_history(&self, st: &mut Lead) -> Result<(), Fence> {
        let history = std::mem::take(&mut st.history);
        let trees: Vec<_> = history.into_iter().filter(|(t, _)| !st.live_from.contains_key(t)).collect();
        for chunk in trees.chunks(1000) {
            let mut pipe = redis::pipe();
            for (tree, (seq, time)) in chunk {
                pipe.hset_nx(CURSORS, tree, store::cursor_text(*seq, *time)).ignore();
            }
            self.fenced(pipe).await?;
        }
        st.live_from.clear();
        self.mark_started().await
    }

    /// Writes `initialized`: the first start's skip is done (or was not
    /// needed), for this process and every instance after it.
    async fn mark_started(&self) -> Result<(), Fence> {
        let mut pipe = redis::pipe();
        pipe.hset(STATUS, "initialized", now_ms()).ignore();
        self.fenced(pipe).await?;
        self.started.store(true, Ordering::Relaxed);
        Ok(())
    }

    /// Reads up to [`TREES_A_ROUND`] of the trees with events not yet read,
    /// extending the lease on the way. Err: why leading stopped.
    async fn read_some(&self, st: &mut Lead, skip_history: bool, only_live: bool) -> Result<(), String> {
        for _ in 0..TREES_A_ROUND {
            // Trees that published first: a sweep of many trees must not
            // hold up the news.
            let next = st.live.pop_first().or_else(|| if only_live { None } else { st.dirty.pop_first() });
            let Some(tree) = next else {
                break;
            };
            let live_from = st.live_from.get(&tree).copied();
            if st.renewed.elapsed() >= self.tick
                && let Err(e) = self.renew(st).await
            {
                st.dirty.insert(tree);
                return Err(lease_lost(e));
            }
            let rules = match st.rules_for.get(&tree) {
                Some(r) => r.clone(),
                None => {
                    if st.rules_for.len() >= RULES_FOR_KEPT {
                        st.rules_for.clear();
                    }
                    let r = Arc::new(st.config.rules_for(&tree));
                    st.rules_for.insert(tree.clone(), r.clone());
                    r
                }
            };
            match self.catch_up(&st.config, &rules, &tree, skip_history.then_some(live_from), st.reading).await {
                Ok(Some(newest)) => {
                    st.history.insert(tree.clone(), newest);
                    st.failing.remove(&tree);
                }
                Ok(None) => {
                    if st.failing.remove(&tree).is_some() {
                        log(format!("tree {tree}: its events are read again"));
                    }
                }
                Err(Fence::Lost) => return Err(Fence::Lost.to_string()),
                Err(e) => {
                    let e = e.to_string();
                    if st.failing.get(&tree).is_none_or(|(last, _)| *last != e) {
                        log(format!(
                            "tree {tree}: cannot read its events: {e} (trying again every {} s)",
                            RETRY.as_secs()
                        ));
                    }
                    st.failing.insert(tree, (e, Instant::now() + RETRY));
                }
            }
        }
        Ok(())
    }

    /// Extends the lease and writes the heartbeat.
    async fn renew(&self, st: &mut Lead) -> Result<(), Fence> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET").arg(LEADER).arg(&self.instance).arg("PX").arg(self.lease.as_millis() as u64).ignore();
        let source = match &self.source {
            Source::File(f) => format!("file {f}"),
            Source::Redis => format!("key {CONFIG}"),
        };
        pipe.cmd("HSET")
            .arg(STATUS)
            .arg(
                &[
                    ("instance", self.instance.clone()),
                    ("heartbeat", now_ms().to_string()),
                    ("lease_ms", self.lease.as_millis().to_string()),
                    ("config", source),
                    ("config_error", st.error.clone().unwrap_or_default()),
                    ("rules", st.config.rules.len().to_string()),
                    ("destinations", st.config.destinations.len().to_string()),
                ][..],
            )
            .ignore();
        if let Source::Redis = self.source {
            pipe.hdel(STATUS, "config_text").ignore();
        }
        self.fenced_if(pipe, true).await?;
        st.renewed = Instant::now();
        Ok(())
    }

    /// Subscribes to every tree's channel and to configuration changes, and
    /// passes on what arrives; after each (re)subscription, asks for a sweep.
    async fn listen(self: Arc<Self>, tx: mpsc::UnboundedSender<Signal>) {
        let mut failing = false;
        loop {
            let failure = match self.quota.pubsub().await {
                Ok(mut pubsub) => {
                    let subscribed = async {
                        pubsub.psubscribe(format!("{EVENTS}*")).await?;
                        pubsub.subscribe(CONFIG_CHANNEL).await
                    }
                    .await;
                    match subscribed {
                        Ok(()) => {
                            failing = false;
                            if tx.send(Signal::Sweep).is_err() {
                                return;
                            }
                            let mut messages = pubsub.into_on_message();
                            while let Some(msg) = messages.next().await {
                                let channel = msg.get_channel_name();
                                let signal = match channel.strip_prefix(EVENTS) {
                                    Some(tree) => {
                                        let seq = msg
                                            .get_payload::<String>()
                                            .ok()
                                            .and_then(|p| serde_json::from_str::<Json>(&p).ok())
                                            .map(|ev| seq_of(&ev))
                                            .filter(|s| *s > 0);
                                        Signal::Tree(tree.to_string(), seq)
                                    }
                                    None if channel == CONFIG_CHANNEL => Signal::Config,
                                    None => continue,
                                };
                                if tx.send(signal).is_err() {
                                    return;
                                }
                            }
                            log("the subscription ended: subscribing again");
                            None
                        }
                        Err(e) => Some(e.to_string()),
                    }
                }
                Err(e) => Some(e.message),
            };
            if let Some(e) = failure
                && !failing
            {
                log(format!("cannot subscribe: {e} (trying again every second)"));
                failing = true;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Reads the configuration again when it may have changed.
    async fn load_config(&self, st: &mut Lead, changed: bool) {
        let due = changed || st.config_read.is_none_or(|t| t.elapsed() >= self.tick);
        let text = match &self.source {
            Source::File(f) => {
                let stamp = std::fs::metadata(f).ok().map(|m| (m.modified().unwrap_or(UNIX_EPOCH), m.len()));
                if stamp == st.file_stamp && st.text.is_some() {
                    return;
                }
                st.file_stamp = stamp;
                match super::read_config_file(f) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        self.config_error(st, e);
                        return;
                    }
                }
            }
            Source::Redis => {
                if !due {
                    return;
                }
                st.config_read = Some(Instant::now());
                let mut conn = self.quota.shared();
                match store::config_text(&mut conn).await {
                    Ok(t) => Some(t.unwrap_or_else(|| "{}".to_string())),
                    Err(e) => {
                        log(format!("cannot read {CONFIG}: {e}"));
                        return;
                    }
                }
            }
        };
        if text == st.text {
            return;
        }
        st.text = text.clone();
        match Config::parse(text.as_deref().unwrap_or("{}")) {
            Ok(c) => {
                log(format!("configuration: {} rules, {} destinations", c.rules.len(), c.destinations.len()));
                let missing: Vec<String> =
                    c.env_names().into_iter().filter(|v| std::env::var_os(v).is_none()).collect();
                if !missing.is_empty() {
                    log(format!(
                        "not set in this environment: {} (deliveries that need them fail until they are)",
                        missing.join(", ")
                    ));
                }
                st.config = Arc::new(c);
                st.rules_for.clear();
                st.error = None;
                st.reading = true;
                // The dashboard shows a file's configuration from here: the
                // file may be on another machine.
                if let (Source::File(_), Some(t)) = (&self.source, &text) {
                    let mut pipe = redis::pipe();
                    pipe.hset(STATUS, "config_text", t).ignore();
                    if let Err(e) = self.fenced(pipe).await {
                        log(format!("cannot write the configuration's text to {STATUS}: {e}"));
                    }
                }
            }
            Err(e) => self.config_error(st, e),
        }
    }

    fn config_error(&self, st: &mut Lead, e: String) {
        log(format!(
            "the configuration is refused: {e} ({})",
            if st.reading { "the last good one stays in force" } else { "events wait in the logs until it is fixed" }
        ));
        st.error = Some(e);
    }

    /// `QUOTA.EVENTS tree SINCE since COUNT count`; a missing tree has none.
    async fn events(&self, tree: &str, since: u64, count: usize) -> Result<Vec<Json>, Fence> {
        match self
            .quota
            .call(Cmd::Events, Some(tree), &["SINCE", &since.to_string(), "COUNT", &count.to_string()])
            .await
        {
            Ok(Json::Array(items)) => Ok(items),
            Ok(_) => Ok(vec![]),
            Err(e) if e.is_not_found() => Ok(vec![]),
            Err(e) => Err(Fence::Redis(e.message)),
        }
    }

    /// The newest event of a log (galloping, then halving, one event read a step).
    async fn newest(&self, tree: &str) -> Result<Option<Json>, Fence> {
        let Some(mut best) = self.events(tree, 0, 1).await?.pop() else {
            return Ok(None);
        };
        let mut step = 1u64;
        let mut hi = loop {
            let lo = seq_of(&best);
            match self.events(tree, lo + step - 1, 1).await?.pop() {
                Some(e) if seq_of(&e) > lo => {
                    best = e;
                    step = step.saturating_mul(2);
                }
                _ => break lo + step,
            }
        };
        while hi - seq_of(&best) > 1 {
            let mid = seq_of(&best) + (hi - seq_of(&best)) / 2;
            match self.events(tree, mid - 1, 1).await?.pop() {
                Some(e) if seq_of(&e) >= mid => best = e,
                _ => hi = mid,
            }
        }
        Ok(Some(best))
    }

    /// Reads a tree's events after its cursor, queues a job per event and
    /// destination its rules pick, and moves the cursor, a page at a time.
    async fn catch_up(
        &self,
        config: &Config,
        rules: &[usize],
        tree: &str,
        skip_history: Option<Option<u64>>,
        reading: bool,
    ) -> Result<Option<(u64, u64)>, Fence> {
        let mut conn = self.quota.shared();
        let stored: Option<String> = conn.hget(CURSORS, tree).await.map_err(|e| Fence::Redis(e.to_string()))?;
        let mut cursor = stored.as_deref().and_then(store::cursor_of);
        // A first start skips a log's history: its cursor goes to the newest
        // event, or just before the first one published since the start.
        let mut from = 0;
        if cursor.is_none()
            && let Some(live_from) = skip_history
        {
            match live_from {
                Some(seq) if reading => from = seq.saturating_sub(1),
                // No configuration in force yet: the cursor goes just before
                // the news (none is needed when the log began with it).
                Some(seq) => {
                    let before = match seq {
                        0 | 1 => None,
                        _ => self.events(tree, seq - 2, 1).await?.pop().filter(|e| seq_of(e) == seq - 1),
                    };
                    if let Some(e) = before {
                        let mut pipe = redis::pipe();
                        pipe.hset(CURSORS, tree, store::cursor_text(seq_of(&e), time_of(&e))).ignore();
                        self.fenced(pipe).await?;
                    }
                    return Ok(None);
                }
                // History: where its cursor goes when the sweep ends.
                None => return Ok(self.newest(tree).await?.map(|last| (seq_of(&last), time_of(&last)))),
            }
        }
        if !reading {
            // No configuration in force yet: the events wait in the log.
            return Ok(None);
        }
        loop {
            let since = cursor.map_or(from, |(s, _)| s.saturating_sub(1));
            let mut events = self.events(tree, since, PAGE).await?;
            let full = events.len() >= PAGE;
            let mut gap = 0;
            if let Some((seq, time)) = cursor {
                match events.first().map(|e| (seq_of(e), time_of(e))) {
                    None => {
                        // The log no longer reaches the cursor: the tree was
                        // deleted (or deleted and created again).
                        let mut pipe = redis::pipe();
                        pipe.hdel(CURSORS, tree).ignore();
                        self.fenced(pipe).await?;
                        if stored.is_some() {
                            log(format!("tree {tree}: its log starts again (deleted or created again)"));
                        }
                        cursor = None;
                        continue;
                    }
                    Some((s, t)) if s == seq && t == time => {
                        events.remove(0);
                    }
                    Some((s, _)) if s == seq => {
                        log(format!("tree {tree}: created again: its events are read from the start"));
                        cursor = None;
                        continue;
                    }
                    Some((s, _)) => gap = s.saturating_sub(seq + 1),
                }
            }
            if gap > 0 {
                log(format!(
                    "tree {tree}: {gap} events were dropped from its log before they were read (raise events_len)"
                ));
            }
            let Some(last) = events.last() else {
                return Ok(None);
            };
            let next = (seq_of(last), time_of(last));
            let now = now_ms();
            let mut pipe = redis::pipe();
            let mut queued = 0;
            for mut ev in events {
                if let Json::Object(m) = &mut ev {
                    m.insert("tree".to_string(), Json::String(tree.to_string()));
                }
                for (dest, rules) in config.routes_among(rules, &ev) {
                    let job = Job::new(tree, ev.clone(), &dest, rules, now);
                    pipe.hset_nx(JOBS, &job.id, job.to_json()).ignore();
                    pipe.cmd("ZADD").arg(QUEUE).arg("NX").arg(now).arg(&job.id).ignore();
                    queued += 1;
                }
            }
            pipe.hset(CURSORS, tree, store::cursor_text(next.0, next.1)).ignore();
            if gap > 0 {
                pipe.hincr(STATUS, "gaps", gap).ignore();
            }
            self.fenced(pipe).await?;
            if queued > 0 {
                log(format!(
                    "tree {tree}: {queued} {} queued (events up to {})",
                    if queued == 1 { "delivery" } else { "deliveries" },
                    next.0
                ));
            }
            cursor = Some(next);
            if !full {
                return Ok(None);
            }
        }
    }

    /// Starts the deliveries that are due, up to [`IN_FLIGHT`] at once.
    async fn dispatch(self: &Arc<Self>, st: &mut Lead, tasks: &mut JoinSet<Delivered>) -> Result<(), String> {
        if st.in_flight.len() >= IN_FLIGHT {
            return Ok(());
        }
        let mut conn = self.quota.shared();
        // Due jobs, a page at a time, past those of destinations whose slots
        // are full (a destination that hangs may have thousands due).
        let now = now_ms();
        let mut due: Vec<String> = Vec::new();
        for page in 0..DUE_PAGES {
            let ids: Vec<String> = conn
                .zrangebyscore_limit(QUEUE, "-inf", now, (page * DUE_PAGE) as isize, DUE_PAGE as isize)
                .await
                .map_err(|e| e.to_string())?;
            let last = ids.len() < DUE_PAGE;
            due.extend(ids.into_iter().filter(|id| {
                let dest = id.split('|').next().unwrap_or_default();
                !st.in_flight.contains_key(id) && st.in_flight.values().filter(|d| *d == dest).count() < PER_DESTINATION
            }));

            if last || due.len() >= IN_FLIGHT {
                break;
            }
        }
        // Of each tree's jobs to a destination, the one of the lowest seq
        // (jobs queued at once tie on their score and come in name order),
        // streams in the order they first come.
        let mut first: Vec<String> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        for id in due {
            match at.get(stream_of(&id)) {
                Some(&i) if seq_in(&id) < seq_in(&first[i]) => first[i] = id,
                Some(_) => {}
                None => {
                    at.insert(stream_of(&id).to_string(), first.len());
                    first.push(id);
                }
            }
        }
        for id in first {
            if st.in_flight.len() >= IN_FLIGHT {
                break;
            }
            // The destination is the id's first part: one that hangs holds
            // at most PER_DESTINATION of the slots.
            let dest = id.split('|').next().unwrap_or_default();
            // One event of a tree at a time to a destination, so fresh ones
            // arrive in order (a retry waiting for its turn lets later ones by).
            let stream = stream_of(&id);
            if st.in_flight.contains_key(&id)
                || st.in_flight.values().filter(|d| *d == dest).count() >= PER_DESTINATION
                || st.in_flight.keys().any(|other| stream_of(other) == stream)
            {
                continue;
            }
            let body: Option<String> = conn.hget(JOBS, &id).await.map_err(|e| e.to_string())?;
            let Some(job) = body.as_deref().and_then(Job::from_json) else {
                // A queued id without its job (removed by hand): nothing to send.
                log(format!("{id}: queued without a job: dropped"));
                let mut pipe = redis::pipe();
                pipe.zrem(QUEUE, &id).ignore();
                self.fenced(pipe).await.map_err(|e| e.to_string())?;
                continue;
            };
            st.in_flight.insert(id.clone(), job.dest.clone());
            let job_id = id.clone();
            let (w, config) = (self.clone(), st.config.clone());
            let task = tasks.spawn(async move {
                let result = w.deliver(&config, job).await;
                (id, result)
            });
            st.tasks.insert(task.id(), job_id);
        }
        Ok(())
    }

    /// One attempt of one job, and its outcome recorded.
    async fn deliver(&self, config: &Config, mut job: Job) -> Result<(), Fence> {
        let dest = config.destinations.get(&job.dest);
        let timeout = Duration::from_millis(dest.map_or(10_000, |d| d.timeout_ms));
        let attempt = async {
            match dest.map(|d| &d.target) {
                None => {
                    webhook::Outcome::Retry(format!("no destination named {} in the configuration", job.dest), None)
                }
                Some(Target::Webhook { url, secret_env }) => {
                    webhook::send(&self.http, url, secret_env.as_deref(), &job, timeout, now_ms() / 1000).await
                }
                Some(Target::Email { to }) => match &config.smtp {
                    Some(smtp) => email::send(smtp, to, &job, timeout).await,
                    None => webhook::Outcome::Retry("no smtp section in the configuration".to_string(), None),
                },
            }
        };
        // The whole attempt, whatever the peer does (an SMTP server that
        // accepts and never answers, a webhook that trickles).
        let outcome = match tokio::time::timeout(timeout, attempt).await {
            Ok(o) => o,
            Err(_) => webhook::Outcome::Retry(format!("no answer within {} ms", timeout.as_millis()), None),
        };
        let now = now_ms();
        job.attempts += 1;
        job.last_attempt = Some(now);
        let attempts = dest.map_or(8, |d| d.attempts);
        let mut pipe = redis::pipe();
        match outcome {
            webhook::Outcome::Delivered => {
                pipe.zrem(QUEUE, &job.id).ignore().hdel(JOBS, &job.id).ignore();
                let sent = json!({"id": job.id, "key": job.key, "dest": job.dest, "tree": job.tree, "seq": job.seq,
                    "type": job.kind(), "rules": job.rules, "at": now, "attempts": job.attempts});
                pipe.lpush(SENT, sent.to_string()).ignore().ltrim(SENT, 0, store::SENT_KEPT as isize - 1).ignore();
                pipe.hincr(STATUS, "delivered", 1).ignore();
                self.fenced(pipe).await?;
                log(format!("delivered {} to {} (attempt {})", job.key, job.dest, job.attempts));
            }
            webhook::Outcome::Retry(e, wait) if job.attempts < attempts => {
                let backoff = dest.map_or(1000, |d| d.backoff(job.attempts));
                let cap = dest.map_or(300_000, |d| d.max_backoff_ms);
                let asked = wait.map_or(0, |w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX).min(cap));
                let due = now + backoff.max(asked);
                log(format!(
                    "{} to {}: attempt {} of {attempts} failed: {e}; next in {} ms",
                    job.key,
                    job.dest,
                    job.attempts,
                    due - now
                ));
                job.last_error = Some(e);
                pipe.hset(JOBS, &job.id, job.to_json()).ignore().zadd(QUEUE, &job.id, due).ignore();
                pipe.hincr(STATUS, "failed", 1).ignore();
                self.fenced(pipe).await?;
            }
            webhook::Outcome::Retry(e, _) | webhook::Outcome::Permanent(e) => {
                log(format!("{} to {}: dead letter after {} attempts: {e}", job.key, job.dest, job.attempts));
                job.last_error = Some(e);
                job.died = Some(now);
                pipe.zrem(QUEUE, &job.id).ignore().hset(JOBS, &job.id, job.to_json()).ignore();
                pipe.zadd(DEAD, &job.id, now)
                    .ignore()
                    .hincr(STATUS, "failed", 1)
                    .ignore()
                    .hincr(STATUS, "dead", 1)
                    .ignore();
                self.fenced(pipe).await?;
                self.trim_dead().await;
            }
        }
        Ok(())
    }

    /// Keeps at most [`store::MAX_DEAD`] dead letters: the oldest go. The
    /// oldest are read after a WATCH of the dead letters too, so a letter
    /// the dashboard replays meanwhile is not deleted with them (the trim
    /// is then left to the next death).
    async fn trim_dead(&self) {
        let mut guard = self.fenced.lock().await;
        let Some(conn) = guard.as_mut() else {
            return;
        };
        let trimmed: redis::RedisResult<Option<usize>> = async {
            redis::cmd("WATCH").arg(LEADER).arg(DEAD).query_async::<()>(conn).await?;
            let holder: Option<String> = conn.get(LEADER).await?;
            let count: usize = conn.zcard(DEAD).await?;
            if holder.as_deref() != Some(self.instance.as_str()) || count <= store::MAX_DEAD {
                redis::cmd("UNWATCH").query_async::<()>(conn).await?;
                return Ok(None);
            }
            let old: Vec<String> = conn.zrange(DEAD, 0, (count - store::MAX_DEAD) as isize - 1).await?;
            let done: redis::Value =
                redis::pipe().atomic().zrem(DEAD, &old).ignore().hdel(JOBS, &old).ignore().query_async(conn).await?;
            Ok((done != redis::Value::Nil).then_some(old.len()))
        }
        .await;
        match trimmed {
            Ok(Some(n)) => {
                log(format!("limit: {n} dead letters dropped, the oldest (at most {} are kept)", store::MAX_DEAD))
            }
            Ok(None) => {}
            Err(_) => *guard = None,
        }
    }
}

/// A job's destination and tree: its id up to the last `#`.
fn stream_of(id: &str) -> &str {
    id.rsplit_once('#').map_or(id, |(stream, _)| stream)
}

/// A job's seq: its id between the last `#` and the `@` after it.
fn seq_in(id: &str) -> u64 {
    id.rsplit_once('#').and_then(|(_, rest)| rest.split_once('@')).and_then(|(seq, _)| seq.parse().ok()).unwrap_or(0)
}

/// What a delivery task returns: its job, and whether its outcome was recorded.
type Delivered = (String, Result<(), Fence>);

/// A delivery task's end: frees its slot. Err: the lease was lost.
fn finished(st: &mut Lead, done: Result<(tokio::task::Id, Delivered), tokio::task::JoinError>) -> Result<(), String> {
    match done {
        Ok((task, (id, result))) => {
            st.tasks.remove(&task);
            st.in_flight.remove(&id);
            match result {
                Err(Fence::Lost) => return Err(Fence::Lost.to_string()),
                Err(e) => log(format!("{id}: the outcome was not recorded: {e} (it will be delivered again)")),
                Ok(()) => {}
            }
        }
        // A delivery that panicked: its job stays queued and is tried again
        // (the slot must not stay taken).
        Err(e) => {
            if let Some(id) = st.tasks.remove(&e.id()) {
                log(format!("{id}: the delivery failed: {e} (it will be tried again)"));
                st.in_flight.remove(&id);
            }
        }
    }
    Ok(())
}

/// Why leading stopped, after a failed renewal.
fn lease_lost(e: Fence) -> String {
    match e {
        Fence::Lost => e.to_string(),
        Fence::Redis(e) => format!("cannot renew the lease: {e}"),
    }
}

fn seq_of(ev: &Json) -> u64 {
    match ev.get("seq") {
        Some(Json::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Json::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn time_of(ev: &Json) -> u64 {
    match ev.get("time") {
        Some(Json::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Json::String(s)) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_give_their_stream_and_seq() {
        assert_eq!(stream_of("billing|user:42#10@17"), "billing|user:42");
        assert_eq!(seq_in("billing|user:42#10@17"), 10);
        assert_eq!(stream_of("ops|a#b#3@5"), "ops|a#b");
        assert_eq!(seq_in("ops|a#b#3@5"), 3);
        assert_eq!(seq_in("odd"), 0);
    }
}
