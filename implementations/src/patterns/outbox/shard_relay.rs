//! Sharded outbox relays (`outbox-poll`, `outbox-notify`).
//!
//! Per-key order with several relays, including across retries and relay deaths:
//!
//! - Each outbox row carries `shard = key_shard(key)` (0..1024); relays divide
//!   the groups `shard % DUALCHECK_SHARDS` among themselves with session
//!   advisory locks (`pg_try_advisory_lock`), each on its own connection. A relay
//!   first takes its home groups, and every 2 s any group nobody holds, so the
//!   groups of a relay whose connection died are taken over. A key's events are
//!   therefore handled by one relay at a time.
//! - In a round a relay claims, per key of its groups, the oldest pending
//!   events (a prefix in id order, up to an even share of DUALCHECK_BATCH per
//!   key), locking them and *waiting* for a locked one rather than skipping it
//!   (a successor never goes without its head). A key whose head is backing
//!   off (against the statement's one timestamp), or that has a parked event,
//!   sends nothing; a prefix ends at its first event still backing off.
//! - The claimed events are handed to an idempotent producer whose records
//!   never time out ([`Publisher::without_message_timeout`]): it writes each
//!   partition's records in order without gaps, so several events of a key are
//!   in flight at once and a key's first failure is never followed by a
//!   delivered successor. Per key, the delivered prefix is deleted (or
//!   marked); the first failure is retried from there (or parked); the key's
//!   later events are left as they were and go again after it. An event whose
//!   report did not come in time may still be delivered later — before any
//!   copy of it or of its successors, since the producer keeps their order.
//! - The claim, the publish (awaiting the delivery reports) and the
//!   delete/mark happen in one transaction: if the relay dies in between, the
//!   rows are published again (duplicates with the same event id, in order).
//! - A failed publish increments `attempts` and sets `next_attempt_at` with
//!   exponential backoff and full jitter; after DUALCHECK_MAX_ATTEMPTS (at once for
//!   permanent errors such as a record above message.max.bytes) the event moves to
//!   `outbox_failed` with its last error and its key's later events wait.
//!
//! The mutants of the bug zoo keep the relay as it was before the prefix
//! claim — one head per key per round, on the process's producer — plus their
//! bug ([`round_of_mutant`]).

use super::Bug;
use crate::runtime::backoff::{sleep_unless_stopped, Backoff};
use crate::runtime::db::timed;
use crate::runtime::kafka::{Envelope, Publisher, Record};
use crate::{AppContext, Background};
use anyhow::Result;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_postgres::Client;

/// Advisory lock class of the outbox shard groups (first key of the two-int form).
pub const LOCK_CLASS: i32 = 0x0d0a_1c4e;

/// Spawns DUALCHECK_RELAYS relays (and, for notify, the listener) into `bg`.
pub fn start(ctx: &Arc<AppContext>, notify: bool, bg: &mut Background, stop: &watch::Receiver<bool>) {
    let (wake_tx, wake_rx) = watch::channel(0u64);
    if notify {
        bg.push(tokio::spawn(listener(ctx.clone(), wake_tx, stop.clone())));
    } else {
        // Nobody will ever wake the relays; keep the sender alive so `changed()` just waits.
        std::mem::forget(wake_tx);
    }
    let bug = Bug::of(&ctx.config);
    let publisher = relay_publisher(ctx, bug);
    // `unordered-relays`: several relay instances whatever DUALCHECK_RELAYS says.
    let relays = if bug == Bug::UnorderedRelays {
        ctx.config.relays.max(4)
    } else {
        ctx.config.relays
    };
    for i in 0..relays {
        bg.push(tokio::spawn(relay(
            ctx.clone(),
            publisher.clone(),
            i,
            notify,
            wake_rx.clone(),
            stop.clone(),
        )));
    }
}

/// The producer the relays of this process share: the correct relay's twin
/// of the process's producer without message timeouts (see the module
/// comment), the process's own for the mutants.
pub(crate) fn relay_publisher(ctx: &AppContext, bug: Bug) -> Arc<Publisher> {
    if !bug.relay_is_correct() {
        return ctx.publisher.clone();
    }
    match ctx.publisher.without_message_timeout(ctx.config.publish_timeout) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            // Creating a producer fails only on a bad configuration, which the
            // process's own producer would have failed on first.
            tracing::warn!("relay producer: {e:#}; using the process's producer");
            ctx.publisher.clone()
        }
    }
}

/// LISTEN dualcheck_outbox on a dedicated connection (reconnecting forever);
/// every notification, and every (re)connection, bumps `wake`.
async fn listener(ctx: Arc<AppContext>, wake: watch::Sender<u64>, mut stop: watch::Receiver<bool>) {
    let b = Backoff {
        base: ctx.config.backoff_base,
        max: ctx.config.backoff_max,
    };
    let mut failures = 0u32;
    loop {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let res = async {
            let c = ctx.db.connect_listening(tx).await?;
            timed(ctx.db.timeout, "LISTEN", c.batch_execute("LISTEN dualcheck_outbox")).await?;
            Ok::<_, anyhow::Error>(c)
        }
        .await;
        let client = match res {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("outbox listener: {e:#} (retrying)");
                if !sleep_unless_stopped(b.delay(failures), &mut stop).await {
                    return;
                }
                failures += 1;
                continue;
            }
        };
        failures = 0;
        wake.send_modify(|n| *n += 1); // catch up on what was missed while disconnected
        loop {
            tokio::select! {
                m = rx.recv() => match m {
                    Some(_) => wake.send_modify(|n| *n += 1),
                    None => break, // connection ended
                },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if client.is_closed() { break; }
                }
                _ = stop.changed() => return,
            }
        }
        tracing::warn!("outbox listener: connection lost, reconnecting");
    }
}

struct RelayState {
    client: Option<Client>,
    held: BTreeSet<i32>,
    /// The relay's producer: the process's, or (`unordered-relays`, relay
    /// instances of their own) one per relay.
    publisher: Arc<Publisher>,
    /// Keys with work in the last round (the share of the batch per key).
    keys_seen: usize,
}

async fn relay(
    ctx: Arc<AppContext>,
    shared: Arc<Publisher>,
    idx: usize,
    notify: bool,
    mut wake: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let cfg = &ctx.config;
    let home: Vec<i32> = (0..cfg.shards).filter(|s| (*s as usize) % cfg.relays == idx).collect();
    let b = Backoff {
        base: cfg.backoff_base,
        max: cfg.backoff_max,
    };
    let publisher = if Bug::of(cfg) == Bug::UnorderedRelays {
        // Independent relay instances: each its own producer and connection.
        match Publisher::new(&cfg.kafka_bootstrap, &cfg.topic, cfg.publish_timeout, cfg.linger) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                tracing::warn!("relay {idx}: {e:#}; using the process's producer");
                shared
            }
        }
    } else {
        shared
    };
    let mut st = RelayState {
        client: None,
        held: BTreeSet::new(),
        publisher,
        keys_seen: 1,
    };
    let mut failures = 0u32;
    let mut last_orphan_scan = Instant::now();
    let idle = if notify { cfg.fallback_poll } else { cfg.poll };
    loop {
        if *stop.borrow() {
            return;
        }
        let polled_at = Instant::now();
        let res = step(&ctx, &mut st, &home, &mut last_orphan_scan).await;
        let wait = match res {
            // Work found: look again at once (the next head of each key may be
            // waiting; a notify relay would otherwise wait its fallback poll,
            // draining one event per key per second). Sleep only when idle.
            Ok(n) if n > 0 => {
                failures = 0;
                continue;
            }
            Ok(_) => {
                failures = 0;
                // Polls start `idle` apart (not `idle` after the last one
                // ended): an event waits at most the poll interval.
                idle.saturating_sub(polled_at.elapsed())
            }
            Err(e) => {
                tracing::warn!("relay {idx}: {e:#} (reconnecting)");
                st.client = None; // drops the connection: its locks and claims are released
                st.held.clear();
                failures += 1;
                b.delay(failures)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            r = wake.changed(), if notify => { if r.is_err() { tokio::time::sleep(wait).await; } }
            _ = stop.changed() => return,
        }
    }
}

/// One relay step: (re)connect, take shard groups, run one round. Returns the
/// number of events claimed.
async fn step(ctx: &AppContext, st: &mut RelayState, home: &[i32], last_scan: &mut Instant) -> Result<usize> {
    let t = ctx.db.timeout;
    if st.client.as_ref().is_none_or(|c| c.is_closed()) {
        st.held.clear();
        st.client = None;
        let c = ctx.db.connect().await?;
        // The per-key prefix of the claim wants an ordered index scan; with a
        // backlog of thousands the planner prefers a bitmap scan of each key's
        // whole backlog and a sort (EXPLAIN ANALYZE, 20,000 rows over 32 keys:
        // 37-49 ms against 7-11 ms per claim). The connection is the relay's own.
        timed(t, "planning the claims", c.batch_execute("SET enable_bitmapscan = off")).await?;
        st.client = Some(c);
    }
    let client = st.client.as_mut().expect("connected above");
    if Bug::of(&ctx.config) == Bug::UnorderedRelays {
        // The mutant: no ownership, every relay works on every shard.
        let every: Vec<i32> = (0..ctx.config.shards).collect();
        return round(ctx, &st.publisher, client, &every, &mut st.keys_seen).await;
    }
    let scan_all = last_scan.elapsed() > Duration::from_secs(2);
    let want: Vec<i32> = if scan_all {
        *last_scan = Instant::now();
        (0..ctx.config.shards).filter(|s| !st.held.contains(s)).collect()
    } else {
        home.iter().copied().filter(|s| !st.held.contains(s)).collect()
    };
    if !want.is_empty() {
        let rows = timed(
            t,
            "taking shard advisory locks",
            client.query(
                "SELECT s FROM unnest($1::int[]) AS s WHERE pg_try_advisory_lock($2, s)",
                &[&want, &LOCK_CLASS],
            ),
        )
        .await?;
        for r in rows {
            st.held.insert(r.get(0));
        }
    }
    if st.held.is_empty() {
        return Ok(0);
    }
    let held: Vec<i32> = st.held.iter().copied().collect();
    round(ctx, &st.publisher, client, &held, &mut st.keys_seen).await
}

/// The claim of the mutants' relay: the oldest pending event (head) of each
/// key of the held shards, unless it backs off or its key has a parked event.
const CLAIM_HEADS: &str = "SELECT o.id, o.event_id::text, o.key, o.value, o.attempts, o.op FROM outbox o
     WHERE o.id IN (SELECT DISTINCT ON (key) id FROM outbox
                    WHERE published_at IS NULL AND (shard % $1) = ANY($2)
                    ORDER BY key, id)
       AND o.next_attempt_at <= clock_timestamp()
       AND NOT EXISTS (SELECT 1 FROM outbox_failed f WHERE f.key = o.key)
     ORDER BY o.id LIMIT $3
     FOR UPDATE OF o SKIP LOCKED";

/// `unordered-relays`: any pending rows due, in id order, whoever else holds
/// their keys' other rows.
const CLAIM_ANY: &str = "SELECT o.id, o.event_id::text, o.key, o.value, o.attempts, o.op FROM outbox o
     WHERE o.published_at IS NULL AND (o.shard % $1) = ANY($2)
       AND o.next_attempt_at <= clock_timestamp()
       AND NOT EXISTS (SELECT 1 FROM outbox_failed f WHERE f.key = o.key)
     ORDER BY o.id LIMIT $3
     FOR UPDATE OF o SKIP LOCKED";

/// `non-idempotent-producer`: every pending event of the held shards' keys
/// whose events are all due, in id order (several per key, pipelined: the
/// relay leaves their order to the producer).
const CLAIM_PIPELINED: &str = "SELECT o.id, o.event_id::text, o.key, o.value, o.attempts, o.op FROM outbox o
     WHERE o.published_at IS NULL AND (o.shard % $1) = ANY($2)
       AND NOT EXISTS (SELECT 1 FROM outbox w WHERE w.key = o.key AND w.published_at IS NULL
                                                AND w.next_attempt_at > clock_timestamp())
       AND NOT EXISTS (SELECT 1 FROM outbox_failed f WHERE f.key = o.key)
     ORDER BY o.id LIMIT $3
     FOR UPDATE OF o SKIP LOCKED";

/// The claim of the correct relay: the keys with pending events, found with
/// one index probe each (a loose scan of `outbox_pending`), then per key of
/// the held shards without a parked event its oldest pending events in id
/// order, at most `$3` of them, locked — waiting for a row another
/// transaction holds, never skipping it, so no successor is claimed without
/// its head. `due` compares `next_attempt_at` with the statement's single
/// timestamp (not `clock_timestamp()`, which moves while the query runs).
const CLAIM_PREFIXES: &str = "WITH RECURSIVE keys(key) AS (
         (SELECT key FROM outbox WHERE published_at IS NULL ORDER BY key LIMIT 1)
       UNION ALL
         SELECT (SELECT o.key FROM outbox o WHERE o.published_at IS NULL AND o.key > keys.key
                 ORDER BY o.key LIMIT 1)
         FROM keys WHERE keys.key IS NOT NULL)
     SELECT e.id, e.event_id, e.key, e.value, e.attempts, e.op, e.due FROM keys k
     CROSS JOIN LATERAL (
         SELECT o.id, o.event_id::text AS event_id, o.key, o.value, o.attempts, o.op,
                o.next_attempt_at <= statement_timestamp() AS due
         FROM outbox o
         WHERE o.key = k.key AND o.published_at IS NULL AND (o.shard % $1) = ANY($2)
           AND NOT EXISTS (SELECT 1 FROM outbox_failed f WHERE f.key = o.key)
         ORDER BY o.id LIMIT $3
         FOR UPDATE OF o) e
     WHERE k.key IS NOT NULL";

/// How many events of one key a round claims: an even share of the batch
/// among the keys of the last round (at least one).
fn per_key_share(batch: i64, keys_last_round: usize) -> i64 {
    (batch / keys_last_round.max(1) as i64).max(1)
}

/// One claimed outbox event.
struct Claimed {
    id: i64,
    event_id: String,
    key: String,
    value: String,
    attempts: i32,
    op: i64,
}

impl Claimed {
    /// The event of a claim's row (columns id, event_id, key, value, attempts, op first).
    fn of_row(r: &tokio_postgres::Row) -> Claimed {
        Claimed {
            id: r.get(0),
            event_id: r.get(1),
            key: r.get(2),
            value: r.get(3),
            attempts: r.get(4),
            op: r.get(5),
        }
    }

    /// The record it publishes.
    fn record(&self) -> Record<'_> {
        Record {
            key: &self.key,
            value: &self.value,
            event_id: &self.event_id,
        }
    }
}

/// The events of a claim to publish: per key (rows come key by key, each in
/// id order) the prefix before its first event still backing off; and the
/// number of keys with pending events.
fn due_prefixes(rows: &[(Claimed, bool)]) -> (Vec<&Claimed>, usize) {
    let mut events = Vec::with_capacity(rows.len());
    let mut keys = 0usize;
    let mut key: Option<&str> = None;
    let mut stopped = false;
    for (e, due) in rows {
        if key != Some(e.key.as_str()) {
            key = Some(e.key.as_str());
            keys += 1;
            stopped = false;
        }
        stopped |= !due;
        if !stopped {
            events.push(e);
        }
    }
    (events, keys)
}

/// One round of a relay (see the module comment; a mutant's relay runs
/// [`round_of_mutant`]); returns the number of events claimed. `keys_seen`
/// carries the number of keys with work from one round to the next (the
/// share of the batch per key).
async fn round(
    ctx: &AppContext,
    publisher: &Publisher,
    client: &mut Client,
    held: &[i32],
    keys_seen: &mut usize,
) -> Result<usize> {
    if !Bug::of(&ctx.config).relay_is_correct() {
        return round_of_mutant(ctx, publisher, client, held).await;
    }
    let cfg = &ctx.config;
    let t = ctx.db.timeout;
    let tx = timed(t, "BEGIN (relay)", client.transaction()).await?;
    let per_key = per_key_share(cfg.batch, *keys_seen);
    let rows = timed(
        t,
        "claiming outbox events",
        tx.query(CLAIM_PREFIXES, &[&cfg.shards, &held, &per_key]),
    )
    .await?;
    let rows: Vec<(Claimed, bool)> = rows.iter().map(|r| (Claimed::of_row(r), r.get(6))).collect();
    let (events, keys) = due_prefixes(&rows);
    *keys_seen = keys.max(1);
    if events.is_empty() {
        let _ = tx.rollback().await;
        return Ok(0);
    }
    let records: Vec<Record> = events.iter().map(|e| e.record()).collect();
    let results = publisher.publish_all(&records).await;
    let mut ok_ids = Vec::with_capacity(events.len());
    let mut failed_key: Option<&str> = None;
    for (e, res) in events.iter().zip(results) {
        if failed_key == Some(e.key.as_str()) {
            continue; // after its key's first failure: goes again after it
        }
        match res {
            Ok(_) => ok_ids.push(e.id),
            Err(err) => {
                failed_key = Some(&e.key);
                retry_or_park(ctx, &tx, e, &err, None).await?;
            }
        }
    }
    if !ok_ids.is_empty() {
        ctx.crash.after_ack();
    }
    super::record_published(&tx, cfg.cleanup, &ok_ids, t).await?;
    timed(t, "COMMIT (relay)", tx.commit()).await?;
    Ok(events.len())
}

/// Schedules the retry of a failed event (backoff from its attempts, or
/// `delay_ms` when given) or, after the last attempt or a permanent error,
/// parks it in `outbox_failed` (its key's later events then wait).
async fn retry_or_park(
    ctx: &AppContext,
    tx: &tokio_postgres::Transaction<'_>,
    e: &Claimed,
    err: &crate::runtime::kafka::PublishError,
    delay_ms: Option<f64>,
) -> Result<()> {
    let cfg = &ctx.config;
    let t = ctx.db.timeout;
    let (id, ev, key, op) = (&e.id, &e.event_id, &e.key, e.op);
    let attempts = e.attempts + 1;
    if err.permanent || attempts as u32 >= cfg.max_attempts {
        tracing::warn!(
            "relay: parking outbox event {id} (op {op}, event {ev}, key {key}) after {attempts} attempt(s){}: {err}",
            if err.permanent { ", a permanent error" } else { "" }
        );
        timed(
            t,
            "parking an event",
            tx.execute(
                "INSERT INTO outbox_failed (id, event_id, op, key, seq, value, attempts, last_error, created_at)
                 SELECT id, event_id, op, key, seq, value, $2, $3, created_at FROM outbox WHERE id = $1
                 ON CONFLICT (id) DO NOTHING",
                &[id, &attempts, &err.message],
            ),
        )
        .await?;
        timed(
            t,
            "parking an event",
            tx.execute("DELETE FROM outbox WHERE id = $1", &[id]),
        )
        .await?;
        return Ok(());
    }
    let b = Backoff {
        base: cfg.backoff_base,
        max: cfg.backoff_max,
    };
    let delay_ms = delay_ms.unwrap_or_else(|| b.delay(attempts as u32 - 1).as_millis() as f64);
    // The first failure of an event, then every tenth: enough to follow an op.
    if attempts == 1 || attempts % 10 == 0 {
        tracing::warn!(
            "relay: publishing outbox event {id} (op {op}, event {ev}, key {key}) failed, attempt {attempts}, retrying in {delay_ms} ms: {err}"
        );
    }
    timed(
        t,
        "scheduling a retry",
        tx.execute(
            "UPDATE outbox SET attempts = $2, last_error = $3,
                    next_attempt_at = clock_timestamp() + $4 * interval '1 millisecond'
             WHERE id = $1",
            &[id, &attempts, &err.message, &delay_ms],
        ),
    )
    .await?;
    Ok(())
}

/// A round of a mutant's relay: one head per key (or, for
/// `unordered-relays` and `non-idempotent-producer`, their own claims) on
/// the process's producer, plus the bug.
async fn round_of_mutant(ctx: &AppContext, publisher: &Publisher, client: &mut Client, held: &[i32]) -> Result<usize> {
    let cfg = &ctx.config;
    let t = ctx.db.timeout;
    let bug = Bug::of(cfg);
    let claim = match bug {
        Bug::UnorderedRelays => CLAIM_ANY,
        Bug::NonIdempotentProducer => CLAIM_PIPELINED,
        _ => CLAIM_HEADS,
    };
    let tx = timed(t, "BEGIN (relay)", client.transaction()).await?;
    let rows = timed(
        t,
        "claiming outbox heads",
        tx.query(claim, &[&cfg.shards, &held, &cfg.batch]),
    )
    .await?;
    if rows.is_empty() {
        let _ = tx.rollback().await;
        return Ok(0);
    }
    let mut events: Vec<Claimed> = rows.iter().map(Claimed::of_row).collect();
    if bug == Bug::NewIdOnRetry {
        // The mutant: the event id is minted now, for this publish, not with the row.
        for e in events.iter_mut() {
            if let Ok(mut env) = serde_json::from_str::<Envelope>(&e.value) {
                env.event = uuid::Uuid::new_v4().to_string();
                e.event_id = env.event.clone();
                e.value = env.to_json();
            }
        }
    }
    let records: Vec<Record> = events.iter().map(|e| e.record()).collect();
    let handed = publisher.hand_over(&records).await;
    if bug == Bug::DeleteBeforeAck {
        // The mutant: the rows go as soon as the producer has the records.
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        super::record_published(&tx, cfg.cleanup, &ids, t).await?;
        timed(t, "COMMIT (relay)", tx.commit()).await?;
        let results = publisher.reports(handed, publisher.wait()).await;
        if results.iter().any(|r| r.is_ok()) {
            ctx.crash.after_ack();
        }
        for (e, res) in events.iter().zip(results) {
            if let Err(err) = res {
                tracing::warn!(
                    "relay: outbox event {} (op {}, event {}, key {}) was not delivered: {err}",
                    e.id,
                    e.op,
                    e.event_id,
                    e.key
                );
            }
        }
        return Ok(events.len());
    }
    let wait = if bug == Bug::DropOnTimeout {
        Duration::from_secs(1)
    } else {
        publisher.wait()
    };
    let results = publisher.reports(handed, wait).await;
    let b = Backoff {
        base: cfg.backoff_base,
        max: cfg.backoff_max,
    };
    let mut ok_ids = Vec::new();
    // `non-idempotent-producer`: a key's later events retry with its first failure.
    let mut key_delay: std::collections::HashMap<&str, f64> = std::collections::HashMap::new();
    for (e, res) in events.iter().zip(results) {
        match res {
            Ok(_) => ok_ids.push(e.id),
            Err(err) if bug == Bug::DropOnTimeout && err.timed_out => {
                // The mutant: a timeout is taken for a success.
                tracing::warn!(
                    "relay: outbox event {} (op {}, key {}): {err}; assuming it was sent",
                    e.id,
                    e.op,
                    e.key
                );
                ok_ids.push(e.id);
            }
            Err(err) => {
                let delay_ms = (bug == Bug::NonIdempotentProducer).then(|| {
                    let own = b.delay(e.attempts as u32).as_millis() as f64;
                    *key_delay.entry(e.key.as_str()).or_insert(own)
                });
                retry_or_park(ctx, &tx, e, &err, delay_ms).await?;
            }
        }
    }
    if !ok_ids.is_empty() {
        ctx.crash.after_ack();
    }
    super::record_published(&tx, cfg.cleanup, &ok_ids, t).await?;
    timed(t, "COMMIT (relay)", tx.commit()).await?;
    Ok(events.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(id: i64, key: &str) -> Claimed {
        Claimed {
            id,
            event_id: format!("e{id}"),
            key: key.into(),
            value: String::new(),
            attempts: 0,
            op: id,
        }
    }

    #[test]
    fn a_key_stops_at_its_first_event_backing_off() {
        let rows = vec![
            (claimed(1, "a"), true),
            (claimed(2, "a"), false),
            (claimed(3, "a"), true),
            (claimed(4, "b"), false),
            (claimed(5, "b"), true),
            (claimed(6, "c"), true),
            (claimed(7, "c"), true),
        ];
        let (events, keys) = due_prefixes(&rows);
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![1, 6, 7]);
        assert_eq!(keys, 3);
    }

    #[test]
    fn the_batch_is_shared_evenly_among_keys() {
        assert_eq!(per_key_share(1000, 32), 31);
        assert_eq!(per_key_share(1000, 0), 1000);
        assert_eq!(per_key_share(10, 32), 1);
    }
}
