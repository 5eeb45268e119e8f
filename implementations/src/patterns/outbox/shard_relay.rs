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
//! - In a round a relay claims only the oldest pending event of each key (the
//!   head, lowest id) and skips a key whose head is locked, backing off, or whose
//!   key has a parked event. At most one event per key is in flight, so a later
//!   event can never overtake an earlier one, even when a publish times out and
//!   the producer would let the next record through.
//! - The claim (`FOR UPDATE SKIP LOCKED`), the publish (awaiting every delivery
//!   report) and the delete/mark happen in one transaction: if the relay dies in
//!   between, the rows are published again (duplicates with the same event id).
//! - A failed publish increments `attempts` and sets `next_attempt_at` with
//!   exponential backoff and full jitter; after DUALCHECK_MAX_ATTEMPTS (at once for
//!   permanent errors such as a record above message.max.bytes) the event moves to
//!   `outbox_failed` with its last error and its key's later events wait.

use super::Bug;
use crate::runtime::backoff::{sleep_unless_stopped, Backoff};
use crate::runtime::db::timed;
use crate::runtime::kafka::{Envelope, Record};
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
    // `unordered-relays`: several relay instances whatever DUALCHECK_RELAYS says.
    let relays = if bug == Bug::UnorderedRelays {
        ctx.config.relays.max(4)
    } else {
        ctx.config.relays
    };
    for i in 0..relays {
        bg.push(tokio::spawn(relay(
            ctx.clone(),
            i,
            notify,
            wake_rx.clone(),
            stop.clone(),
        )));
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
    publisher: Arc<crate::runtime::kafka::Publisher>,
}

async fn relay(
    ctx: Arc<AppContext>,
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
        match crate::runtime::kafka::Publisher::new(&cfg.kafka_bootstrap, &cfg.topic, cfg.publish_timeout) {
            Ok(p) => Arc::new(p),
            Err(e) => {
                tracing::warn!("relay {idx}: {e:#}; using the process's producer");
                ctx.publisher.clone()
            }
        }
    } else {
        ctx.publisher.clone()
    };
    let mut st = RelayState {
        client: None,
        held: BTreeSet::new(),
        publisher,
    };
    let mut failures = 0u32;
    let mut last_orphan_scan = Instant::now();
    let idle = if notify { cfg.fallback_poll } else { cfg.poll };
    loop {
        if *stop.borrow() {
            return;
        }
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
                idle
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
        st.client = Some(ctx.db.connect().await?);
    }
    let client = st.client.as_mut().expect("connected above");
    if Bug::of(&ctx.config) == Bug::UnorderedRelays {
        // The mutant: no ownership, every relay works on every shard.
        let every: Vec<i32> = (0..ctx.config.shards).collect();
        return round(ctx, &st.publisher, client, &every).await;
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
    round(ctx, &st.publisher, client, &held).await
}

/// The claim of the correct relay: the oldest pending event (head) of each
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

async fn round(
    ctx: &AppContext,
    publisher: &crate::runtime::kafka::Publisher,
    client: &mut Client,
    held: &[i32],
) -> Result<usize> {
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
    let mut events: Vec<(i64, String, String, String, i32, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect();
    if bug == Bug::NewIdOnRetry {
        // The mutant: the event id is minted now, for this publish, not with the row.
        for (_, ev, _, value, _, _) in events.iter_mut() {
            if let Ok(mut env) = serde_json::from_str::<Envelope>(value) {
                env.event = uuid::Uuid::new_v4().to_string();
                *ev = env.event.clone();
                *value = env.to_json();
            }
        }
    }
    let records: Vec<Record> = events
        .iter()
        .map(|(_, ev, key, value, _, _)| Record {
            key,
            value,
            event_id: ev,
        })
        .collect();
    let handed = publisher.hand_over(&records).await;
    if bug == Bug::DeleteBeforeAck {
        // The mutant: the rows go as soon as the producer has the records.
        let ids: Vec<i64> = events.iter().map(|e| e.0).collect();
        super::record_published(&tx, cfg.cleanup, &ids, t).await?;
        timed(t, "COMMIT (relay)", tx.commit()).await?;
        let results = publisher.reports(handed, publisher.wait()).await;
        for ((id, ev, key, _, _, op), res) in events.iter().zip(results) {
            if let Err(e) = res {
                tracing::warn!("relay: outbox event {id} (op {op}, event {ev}, key {key}) was not delivered: {e}");
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
    for ((id, ev, key, _, attempts, op), res) in events.iter().zip(results) {
        match res {
            Ok(_) => ok_ids.push(*id),
            Err(e) if bug == Bug::DropOnTimeout && e.timed_out => {
                // The mutant: a timeout is taken for a success.
                tracing::warn!("relay: outbox event {id} (op {op}, key {key}): {e}; assuming it was sent");
                ok_ids.push(*id);
            }
            Err(e) => {
                let attempts = attempts + 1;
                if e.permanent || attempts as u32 >= cfg.max_attempts {
                    tracing::warn!(
                        "relay: parking outbox event {id} (op {op}, event {ev}, key {key}) after {attempts} attempt(s){}: {e}",
                        if e.permanent { ", a permanent error" } else { "" }
                    );
                    timed(
                        t,
                        "parking an event",
                        tx.execute(
                            "INSERT INTO outbox_failed (id, event_id, op, key, seq, value, attempts, last_error, created_at)
                             SELECT id, event_id, op, key, seq, value, $2, $3, created_at FROM outbox WHERE id = $1
                             ON CONFLICT (id) DO NOTHING",
                            &[id, &attempts, &e.message],
                        ),
                    )
                    .await?;
                    timed(
                        t,
                        "parking an event",
                        tx.execute("DELETE FROM outbox WHERE id = $1", &[id]),
                    )
                    .await?;
                } else {
                    let mut delay_ms = b.delay(attempts as u32 - 1).as_millis() as f64;
                    if bug == Bug::NonIdempotentProducer {
                        delay_ms = *key_delay.entry(key.as_str()).or_insert(delay_ms);
                    }
                    // The first failure of an event, then every tenth: enough to follow an op.
                    if attempts == 1 || attempts % 10 == 0 {
                        tracing::warn!(
                            "relay: publishing outbox event {id} (op {op}, event {ev}, key {key}) failed, attempt {attempts}, retrying in {delay_ms} ms: {e}"
                        );
                    }
                    timed(
                        t,
                        "scheduling a retry",
                        tx.execute(
                            "UPDATE outbox SET attempts = $2, last_error = $3,
                                    next_attempt_at = clock_timestamp() + $4 * interval '1 millisecond'
                             WHERE id = $1",
                            &[id, &attempts, &e.message, &delay_ms],
                        ),
                    )
                    .await?;
                }
            }
        }
    }
    super::record_published(&tx, cfg.cleanup, &ok_ids, t).await?;
    timed(t, "COMMIT (relay)", tx.commit()).await?;
    Ok(events.len())
}
