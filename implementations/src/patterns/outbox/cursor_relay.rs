//! Cursor relays: `outbox-idcursor` (the bug) and `outbox-xid` (the fix).
//!
//! One relay task keeps a cursor (persisted in `outbox_cursor`, row `main`, and
//! held in memory) and reads the rows after it in cursor order. Of several
//! instances (`--replicas`), one relay works at a time: the one whose
//! connection holds an advisory lock, reading the cursor when it takes over.
//!
//! - id cursor: `WHERE id > $last ORDER BY id`. Ids are taken at insert time but
//!   become visible at commit: a row whose transaction commits after a higher id
//!   was published lies below the cursor and is never read.
//! - xid cursor: `WHERE (xid, id) > $cursor AND xid < pg_snapshot_xmin(pg_current_snapshot())
//!   ORDER BY xid, id`. Every transaction below xmin has ended, so no row can
//!   appear below the cursor later.
//!
//! A round publishes the rows it read, in cursor order, on a producer whose
//! records never time out (several events of a key in flight: it writes them
//! in order without gaps, see [`Publisher::without_message_timeout`]), then
//! advances the cursor to the last row of the unbroken run of successes and
//! deletes/marks those rows in one transaction.
//! After a failure it backs off (exponential, full jitter) and retries from the
//! cursor; cursor relays retry forever (no parking: a poison event stalls them).

use super::OutboxRelay;
use crate::runtime::backoff::{sleep_unless_stopped, Backoff};
use crate::runtime::db::timed;
use crate::runtime::kafka::{Publisher, Record};
use crate::AppContext;
use anyhow::Result;
use std::sync::Arc;
use tokio::sync::watch;
use tokio_postgres::Client;

/// Advisory lock class of the cursor relay's leadership (the shard relays use their own).
const CURSOR_RELAY_LOCK: i32 = 0x0c05;

/// The relay task.
pub async fn run(ctx: Arc<AppContext>, kind: OutboxRelay, mut stop: watch::Receiver<bool>) {
    let b = Backoff {
        base: ctx.config.backoff_base,
        max: ctx.config.backoff_max,
    };
    let publisher = super::shard_relay::relay_publisher(&ctx, super::Bug::None);
    let mut client: Option<Client> = None;
    let mut cursor: Option<(String, i64)> = None;
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let polled_at = std::time::Instant::now();
        let res = step(&ctx, &publisher, kind, &mut client, &mut cursor).await;
        let wait = match res {
            // Work found: look again at once; sleep only when idle.
            Ok((n, true)) if n > 0 => {
                failures = 0;
                continue;
            }
            Ok((_, true)) => {
                failures = 0;
                // Polls start `poll` apart: an event waits at most the interval.
                ctx.config.poll.saturating_sub(polled_at.elapsed())
            }
            Ok((_, false)) => {
                failures += 1;
                b.delay(failures)
            }
            Err(e) => {
                tracing::warn!("cursor relay: {e:#} (reconnecting)");
                client = None;
                cursor = None;
                failures += 1;
                b.delay(failures)
            }
        };
        if !sleep_unless_stopped(wait, &mut stop).await {
            return;
        }
    }
}

/// Takes the leadership on `c` (`None`: another relay holds it) and then
/// reads the cursor. One relay publishes at a time, whatever the instances
/// (`--replicas`): the one whose connection holds the lock, as a leader
/// election would have it. Its cursor is read only then, so a relay taking
/// over starts where the last one stopped.
async fn lead_and_load(c: &Client, t: std::time::Duration, by_app_time: bool) -> Result<Option<(String, i64)>> {
    let leader: bool = timed(
        t,
        "taking the cursor relay's lock",
        c.query_one("SELECT pg_try_advisory_lock($1, 0)", &[&CURSOR_RELAY_LOCK]),
    )
    .await?
    .get(0);
    if !leader {
        return Ok(None);
    }
    let sql = if by_app_time {
        "SELECT last_at::text, last_id FROM outbox_cursor WHERE relay = 'main'"
    } else {
        "SELECT last_xid::text, last_id FROM outbox_cursor WHERE relay = 'main'"
    };
    let row = timed(t, "reading the relay cursor", c.query_opt(sql, &[])).await?;
    let start = if by_app_time { "-infinity" } else { "0" };
    Ok(Some(
        row.map(|r| (r.get(0), r.get(1))).unwrap_or_else(|| (start.into(), 0)),
    ))
}

/// What a round reads after the cursor, and how it says so in an error:
/// `$1, $2` the cursor (the id cursor: `$1` alone), then the batch size.
/// Qualified names and an alias throughout: a bare `ORDER BY xid` would sort
/// by the text output column (`'1000' < '910'`) and skip rows.
fn cursor_query(kind: OutboxRelay, bug: super::Bug) -> (&'static str, &'static str) {
    match (kind, bug) {
        (OutboxRelay::IdCursor, _) => (
            "reading the outbox after the id cursor",
            "SELECT o.id, o.xid::text AS xid_text, o.event_id::text, o.key, o.value FROM outbox o
             WHERE o.id > $1 ORDER BY o.id LIMIT $2",
        ),
        // The mutant: the xmin guard kept, the order and the cursor the application's clock's.
        (_, super::Bug::AppTimestamp) => (
            "reading the outbox after the (created_at, id) cursor",
            "SELECT o.id, o.created_at::text AS at_text, o.event_id::text, o.key, o.value FROM outbox o
             WHERE (o.created_at, o.id) > ($1::text::timestamptz, $2)
               AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY o.created_at, o.id LIMIT $3",
        ),
        // The mutant: the place kept by transaction alone ($2, the id, is
        // not read), so a batch ending inside a transaction passes the rest.
        (_, super::Bug::XidOnlyCursor) => (
            "reading the outbox after the xid cursor",
            "SELECT o.id, o.xid::text AS xid_text, o.event_id::text, o.key, o.value FROM outbox o
             WHERE o.xid > $1::text::xid8 AND $2::bigint IS NOT NULL
               AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY o.xid, o.id LIMIT $3",
        ),
        // The mutant: no snapshot-xmin bound, so a transaction still open
        // (a lower xid) is passed by the cursor and never read.
        (_, super::Bug::NoXminGuard) => (
            "reading the outbox after the (xid, id) cursor",
            "SELECT o.id, o.xid::text AS xid_text, o.event_id::text, o.key, o.value FROM outbox o
             WHERE (o.xid, o.id) > ($1::text::xid8, $2)
             ORDER BY o.xid, o.id LIMIT $3",
        ),
        _ => (
            "reading the outbox after the (xid, id) cursor",
            "SELECT o.id, o.xid::text AS xid_text, o.event_id::text, o.key, o.value FROM outbox o
             WHERE (o.xid, o.id) > ($1::text::xid8, $2)
               AND o.xid < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY o.xid, o.id LIMIT $3",
        ),
    }
}

/// One round; returns (rows read, every publish succeeded).
async fn step(
    ctx: &AppContext,
    publisher: &Publisher,
    kind: OutboxRelay,
    client: &mut Option<Client>,
    cursor: &mut Option<(String, i64)>,
) -> Result<(usize, bool)> {
    let t = ctx.db.timeout;
    if client.as_ref().is_none_or(|c| c.is_closed()) {
        *client = Some(ctx.db.connect().await?);
        *cursor = None;
    }
    let c = client.as_mut().expect("connected above");
    // `app-timestamp`: the cursor's first part is the application's stamp, not the xid.
    let bug = super::Bug::of(&ctx.config);
    let by_app_time = bug == super::Bug::AppTimestamp;
    if cursor.is_none() {
        match lead_and_load(c, t, by_app_time).await? {
            Some(loaded) => *cursor = Some(loaded),
            None => return Ok((0, true)),
        }
    }
    let (last_xid, last_id) = cursor.clone().expect("loaded above");
    let (what, sql) = cursor_query(kind, bug);
    let rows = match kind {
        OutboxRelay::IdCursor => timed(t, what, c.query(sql, &[&last_id, &ctx.config.batch])).await?,
        _ => timed(t, what, c.query(sql, &[&last_xid, &last_id, &ctx.config.batch])).await?,
    };
    if rows.is_empty() {
        return Ok((0, true));
    }
    let events: Vec<(i64, String, String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let records: Vec<Record> = events
        .iter()
        .map(|(_, _, event_id, key, value)| Record { key, value, event_id })
        .collect();
    let results = publisher.publish_all(&records).await;
    let ok_run = results.iter().take_while(|r| r.is_ok()).count();
    if let Some(Err(e)) = results.get(ok_run) {
        let (id, _, ev, key, value) = &events[ok_run];
        let op = crate::runtime::journal::op_of_value(value).unwrap_or(-1);
        tracing::warn!("cursor relay: publishing outbox event {id} (op {op}, event {ev}, key {key}) failed: {e}");
    }
    if ok_run > 0 {
        ctx.crash.after_ack();
        let (id, xid, ..) = &events[ok_run - 1];
        let ids: Vec<i64> = events[..ok_run].iter().map(|e| e.0).collect();
        let tx = timed(t, "BEGIN (cursor relay)", c.transaction()).await?;
        super::record_published(&tx, ctx.config.cleanup, &ids, t).await?;
        timed(
            t,
            "advancing the relay cursor",
            tx.execute(
                if by_app_time {
                    "INSERT INTO outbox_cursor (relay, last_xid, last_id, last_at) VALUES ('main', '0', $2, $1::text::timestamptz)
                     ON CONFLICT (relay) DO UPDATE SET last_at = EXCLUDED.last_at, last_id = EXCLUDED.last_id"
                } else {
                    "INSERT INTO outbox_cursor (relay, last_xid, last_id) VALUES ('main', $1::text::xid8, $2)
                     ON CONFLICT (relay) DO UPDATE SET last_xid = EXCLUDED.last_xid, last_id = EXCLUDED.last_id"
                },
                &[xid, id],
            ),
        )
        .await?;
        timed(t, "COMMIT (cursor relay)", tx.commit()).await?;
        *cursor = Some((xid.clone(), *id));
    }
    Ok((events.len(), ok_run == events.len()))
}
