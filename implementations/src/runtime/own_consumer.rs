//! The service consuming its own topic (`listen-to-yourself`, `kafka-first`):
//! an rdkafka consumer through the proxied bootstrap, in its own consumer
//! group, that writes each event's business row idempotently and commits the
//! record's offset only after that database write.
//!
//! - Every partition is assigned directly, without group rebalancing (a
//!   SIGKILLed member would hold its partitions until its session times out);
//!   the group only stores offsets. The start offsets are the group's
//!   committed ones, fetched explicitly (the beginning when there are none):
//!   with `Offset::Stored`, librdkafka stayed stuck when the group coordinator
//!   was not ready yet. A restarted process resumes there, so what came after
//!   the last commit is applied again — harmlessly, see [`apply`].
//! - A consumer making no progress for 10 s while records wait is replaced.
//! - Offsets are committed asynchronously after each write; every 5 s, while
//!   the group's committed offsets are behind what was written (a commit lost
//!   when the group coordinator moved, e.g. under `kafka-leader`), they are
//!   committed again, so the lag the backlog reports returns to 0.
//! - An event whose database write fails is retried with backoff until it
//!   succeeds (the consumer never skips an event and never exits on errors).
//! - `isolation.level=read_committed`, `auto.offset.reset=earliest`.

use crate::runtime::backoff::Backoff;
use crate::runtime::db::timed;
use crate::runtime::kafka::Envelope;
use crate::runtime::read_cache::ReadCache;
use crate::AppContext;
use anyhow::{anyhow, Context, Result};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How the consumer applies events.
#[derive(Clone, Debug)]
pub struct ConsumerSpec {
    /// Consumer group storing the offsets.
    pub group: String,
    /// Also delete the op's row from this table in the same transaction
    /// (`listen-to-yourself`'s `ly_pending`).
    pub clear_pending_table: Option<&'static str>,
}

/// The live consumer, shared with the pattern's backlog (lag) query.
pub type SharedConsumer = Arc<RwLock<Option<Arc<StreamConsumer>>>>;

/// Writes the business row of one event idempotently, in one transaction: the
/// event id goes into the inbox (a redelivery is recognised), the order row is
/// inserted with `ON CONFLICT (op, idx) DO NOTHING`, and the op's pending row (if
/// any) is deleted. Returns whether this delivery was the first.
pub async fn apply(ctx: &AppContext, spec: &ConsumerSpec, env: &Envelope) -> Result<bool> {
    let t = ctx.db.timeout;
    let event_id: uuid::Uuid = env
        .event
        .parse()
        .with_context(|| format!("event id {:?} of op {} is not a UUID", env.event, env.op))?;
    let mut conn = ctx.db.get().await?;
    let res = async {
        let tx = timed(t, "BEGIN (consumer)", conn.transaction()).await?;
        let first = tokio::time::timeout(t, crate::runtime::inbox::first_delivery(&tx, event_id))
            .await
            .map_err(|_| anyhow!("recording the event in the inbox: no answer from Postgres within {t:?}"))?
            .context("recording the event in the inbox")?;
        if first {
            timed(
                t,
                "inserting the order (consumer)",
                tx.execute(
                    "INSERT INTO orders (op, idx, key, seq, payload) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (op, idx) DO NOTHING",
                    &[&env.op, &(env.index as i32), &env.key, &env.seq, &env.payload],
                ),
            )
            .await?;
        }
        if let Some(table) = spec.clear_pending_table {
            timed(
                t,
                "clearing the pending event",
                tx.execute(
                    &format!("DELETE FROM {table} WHERE op = $1 AND idx = $2"),
                    &[&env.op, &(env.index as i32)],
                ),
            )
            .await?;
        }
        timed(t, "COMMIT (consumer)", tx.commit()).await?;
        Ok::<_, anyhow::Error>(first)
    }
    .await;
    if res.is_err() {
        conn.discard();
    }
    res
}

fn create(ctx: &AppContext, spec: &ConsumerSpec) -> Result<StreamConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", &ctx.config.kafka_bootstrap)
        .set("group.id", &spec.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("reconnect.backoff.max.ms", "1000")
        .set("log_level", "3")
        .create()
        .with_context(|| {
            format!(
                "creating the service's own Kafka consumer for {} (KAFKA_BOOTSTRAP)",
                ctx.config.kafka_bootstrap
            )
        })
}

/// Partitions of `topic` (blocking; metadata through the proxy).
fn partitions(consumer: &StreamConsumer, topic: &str) -> Result<Vec<i32>> {
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .with_context(|| format!("fetching the metadata of topic {topic}"))?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .ok_or_else(|| anyhow!("topic {topic} not in the metadata"))?;
    let ps: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
    if ps.is_empty() {
        return Err(anyhow!("topic {topic} has no partitions yet"));
    }
    Ok(ps)
}

/// Creates a consumer and assigns every partition at its committed offset
/// (the beginning when none), asked explicitly (blocking; through the proxy).
fn assigned(ctx: &AppContext, spec: &ConsumerSpec) -> Result<(StreamConsumer, HashMap<i32, i64>)> {
    let topic = &ctx.config.topic;
    let c = create(ctx, spec)?;
    let mut tpl = TopicPartitionList::new();
    for p in partitions(&c, topic)? {
        tpl.add_partition(topic, p);
    }
    let committed = c
        .committed_offsets(tpl, Duration::from_secs(5))
        .context("reading the group's committed offsets")?;
    let mut start = TopicPartitionList::new();
    let mut next = HashMap::new();
    for el in committed.elements_for_topic(topic) {
        let (low, _) = c
            .fetch_watermarks(topic, el.partition(), Duration::from_secs(5))
            .with_context(|| format!("reading the watermarks of {topic}/{}", el.partition()))?;
        let at = match el.offset() {
            Offset::Offset(o) if o >= low => o,
            _ => low,
        };
        start.add_partition_offset(topic, el.partition(), Offset::Offset(at))?;
        next.insert(el.partition(), at);
    }
    c.assign(&start).context("assigning the topic's partitions")?;
    Ok((c, next))
}

/// Whether the group's committed offsets have caught up with `next` (the
/// offsets after the records written); when they have not, commits `next`
/// again (asynchronously: a commit never blocks the consumer for long) and
/// says `false`, to be asked again later. Reading the offsets waits 2 s at most.
fn commit_written(consumer: &StreamConsumer, topic: &str, next: &HashMap<i32, i64>) -> bool {
    let Ok(committed) = consumer.committed(Duration::from_secs(2)) else {
        return false;
    };
    let caught_up = next.iter().all(|(p, at)| {
        committed
            .find_partition(topic, *p)
            .is_some_and(|el| matches!(el.offset(), Offset::Offset(o) if o >= *at))
    });
    if caught_up {
        return true;
    }
    let mut tpl = TopicPartitionList::new();
    for (p, at) in next {
        if tpl.add_partition_offset(topic, *p, Offset::Offset(*at)).is_err() {
            return false;
        }
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::debug!("own consumer: committing the written offsets again: {e}");
    }
    false
}

/// Whether some partition has records past `next` (the consumer is behind).
fn behind(consumer: &StreamConsumer, topic: &str, next: &HashMap<i32, i64>) -> bool {
    next.iter().any(|(p, at)| {
        consumer
            .fetch_watermarks(topic, *p, Duration::from_secs(2))
            .is_ok_and(|(_, high)| high > *at)
    })
}

/// Commits `next_offset` as partition `partition`'s next offset to read. A
/// failure is only logged: a later commit covers it, and the periodic check
/// in [`Session::on_tick`] commits again what is left behind.
fn commit_offset(consumer: &StreamConsumer, topic: &str, partition: i32, next_offset: i64, mode: CommitMode) {
    let mut tpl = TopicPartitionList::new();
    if tpl
        .add_partition_offset(topic, partition, Offset::Offset(next_offset))
        .is_ok()
    {
        if let Err(e) = consumer.commit(&tpl, mode) {
            tracing::debug!("own consumer: committing offset {partition}/{next_offset}: {e}");
        }
    }
}

/// Consumes the topic until `stop`, applying every event (see the module doc).
/// `shared` is set to the live consumer once its partitions are assigned. A
/// consumer that makes no progress for 10 s while records wait (librdkafka can
/// stay stuck after its link broke mid-start) is replaced by a new one, which
/// resumes at the committed offsets.
pub async fn run(
    ctx: Arc<AppContext>,
    spec: ConsumerSpec,
    cache: Arc<ReadCache>,
    shared: SharedConsumer,
    mut stop: watch::Receiver<bool>,
) {
    let backoff = Backoff {
        base: ctx.config.backoff_base,
        max: ctx.config.backoff_max,
    };
    let mut failures = 0u32;
    loop {
        // Set up: create and assign, retrying until the broker answers.
        let (ctx2, spec2) = (ctx.clone(), spec.clone());
        let res = tokio::task::spawn_blocking(move || assigned(&ctx2, &spec2))
            .await
            .map_err(anyhow::Error::from)
            .and_then(|r| r);
        let (consumer, next) = match res {
            Ok((c, next)) => (Arc::new(c), next),
            Err(e) => {
                tracing::warn!("own consumer: {e:#} (retrying)");
                if !backoff.wait_after_failure(&mut failures, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        *shared.write().unwrap_or_else(|e| e.into_inner()) = Some(consumer.clone());
        failures = 0;
        let mut session = Session {
            ctx: &ctx,
            spec: &spec,
            cache: &cache,
            backoff: &backoff,
            topic: ctx.config.topic.clone(),
            early_commit: ctx.config.bug_is(COMMIT_OFFSET_BEFORE_WRITE.name),
            consumer,
            next,
            uncommitted: false,
            last_progress: Instant::now(),
        };
        match session.consume(&mut failures, &mut stop).await {
            SessionEnd::Stopped => return,
            SessionEnd::Stuck => continue,
        }
    }
}

/// Why a [`Session`] ended.
enum SessionEnd {
    /// `stop` was signalled: the consumer is done.
    Stopped,
    /// No progress while records wait: replace the consumer.
    Stuck,
}

/// One consumer, from its assignment until it is stopped or found stuck.
struct Session<'a> {
    ctx: &'a AppContext,
    spec: &'a ConsumerSpec,
    cache: &'a ReadCache,
    backoff: &'a Backoff,
    topic: String,
    /// The `commit-offset-before-write` mutant is on.
    early_commit: bool,
    consumer: Arc<StreamConsumer>,
    /// Per partition, the offset after the last record written.
    next: HashMap<i32, i64>,
    /// Records written since the group's offsets were last seen caught up with `next`.
    uncommitted: bool,
    last_progress: Instant,
}

impl Session<'_> {
    /// Receives and applies records until `stop` or until the consumer is stuck.
    /// `failures` counts receive errors in a row (across sessions, for the backoff).
    async fn consume(&mut self, failures: &mut u32, stop: &mut watch::Receiver<bool>) -> SessionEnd {
        let consumer = self.consumer.clone();
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            let msg = tokio::select! {
                m = consumer.recv() => m,
                _ = tick.tick() => {
                    if self.on_tick().await {
                        return SessionEnd::Stuck;
                    }
                    continue;
                }
                _ = stop.changed() => return SessionEnd::Stopped,
            };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!("own consumer: {e} (librdkafka reconnects)");
                    if !self.backoff.wait_after_failure(failures, stop).await {
                        return SessionEnd::Stopped;
                    }
                    continue;
                }
            };
            *failures = 0;
            if !self.take(&msg, stop).await {
                return SessionEnd::Stopped;
            }
        }
    }

    /// Every 5 s: commits again what the group's offsets miss, and says
    /// whether the consumer is stuck (no progress for 10 s while records wait).
    async fn on_tick(&mut self) -> bool {
        // An asynchronous commit that failed (the group coordinator moved
        // with a partition leader) is not retried, and once records stop
        // coming no later commit covers it: the group's offsets, hence the
        // lag in the backlog, would stay behind forever. While the group's
        // offsets are behind what was written, commit it again. (Not for
        // the mutant that commits before writing: it would move offsets back.)
        if !self.early_commit {
            self.step_over_markers().await;
        }
        if self.uncommitted && !self.early_commit {
            let (c, t, n) = (self.consumer.clone(), self.topic.clone(), self.next.clone());
            if tokio::task::spawn_blocking(move || commit_written(&c, &t, &n))
                .await
                .unwrap_or(false)
            {
                self.uncommitted = false;
            }
        }
        if self.last_progress.elapsed() >= Duration::from_secs(10) {
            let (c, t, n) = (self.consumer.clone(), self.topic.clone(), self.next.clone());
            if tokio::task::spawn_blocking(move || behind(&c, &t, &n))
                .await
                .unwrap_or(false)
            {
                tracing::warn!("own consumer: no progress for 10 s while records wait; recreating it");
                return true;
            }
            self.last_progress = Instant::now();
        }
        false
    }

    /// Moves `next` over what the consumer passed without handing it over:
    /// the markers a transaction leaves after its records (and an aborted
    /// transaction's records). No record is taken while this runs, and every
    /// record handed over before was written, so below the consumer's
    /// position there is nothing left to write. Without it the group's
    /// offsets stop at the last marker and the lag stays 1 per partition
    /// (librdkafka#2539): a drain would never end.
    async fn step_over_markers(&mut self) {
        let (c, t) = (self.consumer.clone(), self.topic.clone());
        let Ok(Ok(positions)) = tokio::task::spawn_blocking(move || c.position().map(|l| (l, t))).await else {
            return;
        };
        let (positions, topic) = positions;
        for el in positions.elements_for_topic(&topic) {
            if let Offset::Offset(pos) = el.offset() {
                if self.next.get(&el.partition()).is_none_or(|&at| pos > at) {
                    self.next.insert(el.partition(), pos);
                    self.uncommitted = true;
                }
            }
        }
    }

    /// Applies one record and then commits its offset (the mutant commits
    /// first). False when stopped while retrying its write.
    async fn take(&mut self, msg: &impl Message, stop: &mut watch::Receiver<bool>) -> bool {
        let (partition, offset) = (msg.partition(), msg.offset());
        if self.early_commit {
            // The mutant: the record counts as consumed once received.
            commit_offset(&self.consumer, &self.topic, partition, offset + 1, CommitMode::Sync);
        }
        let envelope: Option<Envelope> = msg.payload().and_then(|p| serde_json::from_slice(p).ok());
        match envelope {
            None => tracing::warn!("own consumer: record {partition}/{offset} is not an event envelope; skipped"),
            Some(env) => {
                if !self.write(&env, partition, offset, stop).await {
                    return false;
                }
            }
        }
        // Only now, after the database write: the next offset to read.
        self.next.insert(partition, offset + 1);
        self.uncommitted = true;
        self.last_progress = Instant::now();
        commit_offset(&self.consumer, &self.topic, partition, offset + 1, CommitMode::Async);
        true
    }

    /// Writes `env`'s business row, retrying with backoff until it succeeds
    /// (an event is never skipped). False when stopped meanwhile.
    async fn write(&self, env: &Envelope, partition: i32, offset: i64, stop: &mut watch::Receiver<bool>) -> bool {
        let mut attempt = 0u32;
        loop {
            match apply(self.ctx, self.spec, env).await {
                Ok(_) => {
                    self.cache.committed(&env.key, env.op, env.seq);
                    return true;
                }
                Err(e) => {
                    tracing::warn!(
                        "own consumer: writing op {} (record {partition}/{offset}): {e:#} (retrying)",
                        env.op
                    );
                    if !self.backoff.wait_after_failure(&mut attempt, stop).await {
                        return false;
                    }
                }
            }
        }
    }
}

/// `commit-offset-before-write` (`kafka-first`, `listen-to-yourself`: the
/// consumer is shared): the consumer commits a record's offset as soon as it
/// receives it, then writes the order row (retrying until it succeeds). A
/// process that dies between the two — killed right after an acknowledged
/// op, while the consumer applies the records just before it; longer while
/// Postgres is unreachable — never applies the record: an acknowledged op
/// with an event and no order row (phantom, lost commit), and reads that miss it.
pub const COMMIT_OFFSET_BEFORE_WRITE: crate::expect::Control = crate::patterns::outbox::mutant(
    "commit-offset-before-write",
    "crash-after-commit",
    &[
        crate::expect::Expectation {
            when: crate::expect::When::AnyFault(&["crash-after-commit"]),
            expect: crate::expect::Expect::Shows(&[
                checkers::Anomaly::Phantom,
                checkers::Anomaly::Lost,
                checkers::Anomaly::LostCommit,
                checkers::Anomaly::StaleRead,
            ]),
        },
        crate::expect::Expectation {
            when: crate::expect::When::Always,
            expect: crate::expect::Expect::Any,
        },
    ],
);

/// Records of the topic the consumer has not committed yet (high watermark
/// minus committed offset, per partition). An error when the consumer is not
/// running yet or Kafka does not answer: the backlog is unknown then.
pub async fn lag(shared: &SharedConsumer, topic: &str) -> Result<i64> {
    let consumer = shared
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .ok_or_else(|| anyhow!("the service's own consumer has not started yet"))?;
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let t = Duration::from_secs(2);
        let committed = consumer
            .committed(t)
            .context("reading the consumer's committed offsets")?;
        let mut lag = 0i64;
        for el in committed.elements_for_topic(&topic) {
            let (low, high) = consumer
                .fetch_watermarks(&topic, el.partition(), t)
                .with_context(|| format!("reading the watermarks of {topic}/{}", el.partition()))?;
            let done = match el.offset() {
                Offset::Offset(o) => o,
                _ => low,
            };
            lag += (high - done).max(0);
        }
        Ok(lag)
    })
    .await?
}
