//! Outbox relay tests against real Postgres, Kafka and Toxiproxy, through the
//! real app process: per-key order with three relays under injected publish
//! failures and a relay connection killed, also with several events of a key
//! in flight while the Kafka link flaps; a poison event parked with its error
//! while its key's later events wait; relays surviving a Postgres kill and an
//! app kill; the inbox helper.

use crate::support::patterns::{committed, drive_at, first_delivery_seqs, read_topic, space, App, Delivered, Space};
use crate::support::services::{query_value, with_env};
use dualcheck::env::Environment;
use dualcheck::env::Service;
use implementations::patterns::outbox::shard_relay::LOCK_CLASS;
use implementations::Op;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// Every acknowledged op delivered, nothing delivered that is not committed, and
/// per key the first deliveries of acknowledged ops in increasing seq order.
fn assert_valid(name: &str, results: &[(i64, String, i64, u16)], committed: &BTreeSet<i64>, records: &[Delivered]) {
    let ok: BTreeSet<i64> = results.iter().filter(|r| r.3 == 200).map(|r| r.0).collect();
    let delivered: BTreeSet<i64> = records.iter().map(|d| d.value.op).collect();
    let lost: Vec<_> = ok.difference(&delivered).collect();
    assert!(lost.is_empty(), "{name}: acknowledged but never delivered: {lost:?}");
    let lost_committed: Vec<_> = committed.difference(&delivered).collect();
    assert!(
        lost_committed.is_empty(),
        "{name}: committed but never delivered: {lost_committed:?}"
    );
    let phantom: Vec<_> = delivered.difference(committed).collect();
    assert!(phantom.is_empty(), "{name}: delivered but not committed: {phantom:?}");
    let missing: Vec<_> = ok.difference(committed).collect();
    assert!(
        missing.is_empty(),
        "{name}: acknowledged but not committed: {missing:?}"
    );
    let ok_records: Vec<_> = records.iter().filter(|d| ok.contains(&d.value.op)).cloned().collect();
    for (key, seqs) in first_delivery_seqs(&ok_records) {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "{name}: key {key} delivered out of order: {seqs:?}"
        );
    }
    // Same event id on every redelivery of an op.
    let mut ids = std::collections::HashMap::new();
    for d in records {
        let first = ids.entry(d.value.op).or_insert_with(|| d.value.event.clone());
        assert_eq!(
            *first, d.value.event,
            "{name}: op {} delivered with two event ids",
            d.value.op
        );
    }
}

async fn relay_backends(direct_url: &str, db: &str) -> Vec<i32> {
    let c = dualcheck::env::postgres::connect(direct_url).await.unwrap();
    c.query(
        "SELECT DISTINCT pid FROM pg_locks WHERE locktype = 'advisory' AND classid::bigint = $1
           AND database = (SELECT oid FROM pg_database WHERE datname = $2) AND granted",
        &[&(LOCK_CLASS as i64), &db],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// The ops committed to `orders` and every record published for them (read
/// until none has arrived for 3 s).
async fn committed_and_published(env: &Environment, sp: &Space) -> (BTreeSet<i64>, Vec<Delivered>) {
    let committed = committed(sp, "SELECT op FROM orders").await;
    let records = read_topic(
        env,
        sp,
        committed.len(),
        Duration::from_secs(3),
        Duration::from_secs(30),
    )
    .await;
    (committed, records)
}

#[test]
fn three_relays_keep_per_key_order_under_publish_failures() {
    with_env(1, |env| async move {
        let sp = space(env, "order3", 3).await;
        let app = App::start(
            env,
            "outbox-poll",
            &sp,
            &[
                ("DUALCHECK_RELAYS", "3"),
                ("DUALCHECK_PUBLISH_TIMEOUT_MS", "800"),
                ("DUALCHECK_BACKOFF_BASE_MS", "20"),
                ("DUALCHECK_BACKOFF_MAX_MS", "300"),
                ("DUALCHECK_MAX_ATTEMPTS", "100000"),
                ("DUALCHECK_POLL_MS", "10"),
                ("DUALCHECK_CLEANUP", "mark"),
                ("DUALCHECK_CLEANUP_INTERVAL_MS", "3600000"),
            ],
        )
        .await;
        // Three relays, each on its own connection holding shard-group locks.
        let start = Instant::now();
        while relay_backends(&sp.direct_url, &sp.db).await.len() < 3 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "three relays never held shard locks"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let port = app.port;
        let nemesis = async {
            let proxy = env.kafka_proxy(0).to_string();
            for round in 0..4 {
                tokio::time::sleep(Duration::from_millis(700)).await;
                env.toxiproxy.down(&proxy).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1500)).await;
                env.toxiproxy.up(&proxy).await.unwrap();
                if round == 1 {
                    // A relay's connection dies: its shard groups are taken over.
                    let pids = relay_backends(&sp.direct_url, &sp.db).await;
                    let c = dualcheck::env::postgres::connect(&sp.direct_url).await.unwrap();
                    c.execute("SELECT pg_terminate_backend($1)", &[&pids[0]]).await.unwrap();
                }
            }
        };
        let (results, ()) = tokio::join!(drive_at(port, 0, 8, 0..40, "p", Duration::from_millis(25)), nemesis);
        env.heal_all().await.unwrap();
        assert!(
            results.iter().all(|r| r.3 == 200),
            "every op commits (only Kafka was faulted)"
        );
        app.wait_drained(Duration::from_secs(60)).await;
        let c = dualcheck::env::postgres::connect(&sp.direct_url).await.unwrap();
        let retried: i64 = query_value(&c, "SELECT count(*) FROM outbox WHERE attempts > 0").await;
        let parked: i64 = query_value(&c, "SELECT count(*) FROM outbox_failed").await;
        assert!(retried > 0, "no publish failed: the fault was not injected");
        assert_eq!(parked, 0);
        let (committed, records) = committed_and_published(env, &sp).await;
        eprintln!(
            "{} ops, {} records, {retried} events retried at least once",
            results.len(),
            records.len()
        );
        assert_valid("outbox-poll x3", &results, &committed, &records);
    });
}

/// The relays keep several events of one key in flight on their producer (a
/// prefix of each key per round): a backlog of every key is built while the
/// Kafka link is down, so each round hands over many events per key, and the
/// link then flaps while they are in flight, with three relays and a relay's
/// connection killed. The relays' wait for delivery reports (800 ms) is
/// shorter than the outages, so events are retried while their successors are
/// still queued: per key, the first deliveries stay in order and nothing is lost.
#[test]
fn several_events_of_a_key_in_flight_keep_order_while_kafka_flaps() {
    with_env(1, |env| async move {
        let sp = space(env, "inflight", 3).await;
        let app = App::start(
            env,
            "outbox-notify",
            &sp,
            &[
                ("DUALCHECK_RELAYS", "3"),
                ("DUALCHECK_BATCH", "400"),
                ("DUALCHECK_PUBLISH_TIMEOUT_MS", "800"),
                ("DUALCHECK_BACKOFF_BASE_MS", "20"),
                ("DUALCHECK_BACKOFF_MAX_MS", "200"),
                ("DUALCHECK_MAX_ATTEMPTS", "100000"),
                ("DUALCHECK_CLEANUP", "mark"),
                ("DUALCHECK_CLEANUP_INTERVAL_MS", "3600000"),
            ],
        )
        .await;
        let port = app.port;
        let proxy = env.kafka_proxy(0).to_string();
        // A backlog of every key while Kafka is unreachable.
        env.toxiproxy.down(&proxy).await.unwrap();
        let backlog = drive_at(port, 0, 6, 0..40, "b", Duration::from_millis(5)).await;
        let nemesis = async {
            for round in 0..6 {
                env.toxiproxy.up(&proxy).await.unwrap();
                tokio::time::sleep(Duration::from_millis(150 + 100 * (round % 3))).await;
                env.toxiproxy.down(&proxy).await.unwrap();
                tokio::time::sleep(Duration::from_millis(1000)).await;
                if round == 2 {
                    let pids = relay_backends(&sp.direct_url, &sp.db).await;
                    let c = dualcheck::env::postgres::connect(&sp.direct_url).await.unwrap();
                    c.execute("SELECT pg_terminate_backend($1)", &[&pids[0]]).await.unwrap();
                }
            }
            env.toxiproxy.up(&proxy).await.unwrap();
        };
        let (more, ()) = tokio::join!(drive_at(port, 0, 6, 40..80, "m", Duration::from_millis(20)), nemesis);
        env.heal_all().await.unwrap();
        let results: Vec<_> = backlog.into_iter().chain(more).collect();
        assert!(
            results.iter().all(|r| r.3 == 200),
            "every op commits (only Kafka was faulted)"
        );
        app.wait_drained(Duration::from_secs(90)).await;
        let c = dualcheck::env::postgres::connect(&sp.direct_url).await.unwrap();
        let retried: i64 = query_value(&c, "SELECT count(*) FROM outbox WHERE attempts > 0").await;
        assert!(retried > 0, "no publish failed: the fault was not injected");
        let (committed, records) = committed_and_published(env, &sp).await;
        eprintln!(
            "{} ops, {} records, {retried} events retried at least once",
            results.len(),
            records.len()
        );
        assert_valid("outbox-notify x3, several in flight", &results, &committed, &records);
    });
}

#[test]
fn poison_event_is_parked_and_its_key_waits() {
    with_env(1, |env| async move {
        let sp = space(env, "poison", 2).await;
        let app = App::start(
            env,
            "outbox-poll",
            &sp,
            &[
                ("DUALCHECK_MAX_ATTEMPTS", "3"),
                ("DUALCHECK_BACKOFF_BASE_MS", "10"),
                ("DUALCHECK_POLL_MS", "10"),
            ],
        )
        .await;
        let op = |op: u64, key: &str, seq: u64, payload: String| Op {
            op,
            key: key.into(),
            seq,
            payload,
            abort: false,
            hold_ms: 0,
            events: vec![],
            write: Default::default(),
        };
        // Larger than the broker's (and the producer's) message.max.bytes (~1 MB).
        let poison = "x".repeat(1_200_000);
        assert_eq!(app.op(&op(1, "p", 0, "a".into())).await, 200);
        assert_eq!(app.op(&op(2, "p", 1, poison)).await, 200);
        assert_eq!(app.op(&op(3, "p", 2, "c".into())).await, 200);
        assert_eq!(app.op(&op(4, "q", 0, "d".into())).await, 200);
        let start = Instant::now();
        loop {
            let b = app.backlog().await;
            if b.parked == 1 && b.backlog == 1 {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "poison never parked: {b:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let b = app.backlog().await;
        assert_eq!(
            (b.backlog, b.parked),
            (1, 1),
            "the key's later event waits behind the parked one"
        );
        let c = dualcheck::env::postgres::connect(&sp.direct_url).await.unwrap();
        let row = c
            .query_one("SELECT op, attempts, last_error FROM outbox_failed", &[])
            .await
            .unwrap();
        let (parked_op, attempts, error): (i64, i32, String) = (row.get(0), row.get(1), row.get(2));
        assert_eq!(parked_op, 2);
        assert!(attempts >= 1);
        assert!(error.to_lowercase().contains("too large"), "parked error: {error}");
        let waiting: Vec<i64> = c
            .query("SELECT op FROM outbox WHERE published_at IS NULL", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(waiting, vec![3]);
        let records = read_topic(env, &sp, 2, Duration::from_secs(2), Duration::from_secs(20)).await;
        let ops: BTreeSet<i64> = records.iter().map(|d| d.value.op).collect();
        assert_eq!(
            ops,
            [1, 4].into(),
            "only the events before the poison and of other keys are out"
        );
        // The app's own account of each op (issue 14: a parked event is not a silent loss).
        // JSON: each implementation answers `GET /trace/{op}` with JSON of its own
        // (`Trail::trace` is `serde_json::Value`), no library type has it.
        let parked = app.trace(2).await.expect("outbox patterns serve GET /trace/{op}");
        assert_eq!(parked["state"], "parked", "{parked}");
        assert!(
            parked["last_error"]
                .as_str()
                .is_some_and(|e| e.to_lowercase().contains("too large")),
            "{parked}"
        );
        assert_eq!(app.trace(3).await.unwrap()["state"], "pending");
        let published = app.trace(1).await.unwrap();
        assert_eq!(published["state"], "published", "{published}");
        assert!(published["publish"]["published"]["offset"].is_i64(), "{published}");
        assert_eq!(app.trace(99).await.unwrap()["state"], "not_committed");
        // Its log names the parked op and its event.
        let event = parked["outbox_failed"]["event_id"].as_str().unwrap().to_string();
        assert!(
            app.log_text()
                .lines()
                .any(|l| l.contains("parking outbox event") && l.contains("op 2,") && l.contains(&event)),
            "no parking line naming op 2 and its event:\n{}",
            app.log_text()
        );
    });
}

#[test]
fn relays_survive_postgres_kill_and_app_kill() {
    with_env(1, |env| async move {
        for name in ["outbox-notify", "outbox-xid"] {
            let sp = space(env, &format!("survive_{}", name.replace('-', "_")), 3).await;
            let mut app = App::start(
                env,
                name,
                &sp,
                &[("DUALCHECK_RELAYS", "2"), ("DUALCHECK_DB_TIMEOUT_MS", "3000")],
            )
            .await;
            let port = app.port;
            let driver = tokio::spawn(async move { drive_at(port, 0, 6, 0..60, "s", Duration::from_millis(30)).await });
            tokio::time::sleep(Duration::from_millis(800)).await;
            env.kill_restart(Service::Postgres, Duration::from_secs(60))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(800)).await;
            app.kill().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            app.restart().await;
            let mut results = driver.await.unwrap();
            // After recovery every op succeeds again.
            let after = drive_at(port, 100_000, 6, 60..70, "s", Duration::ZERO).await;
            assert!(
                after.iter().all(|r| r.3 == 200),
                "{name}: ops fail after recovery: {after:?}"
            );
            results.extend(after);
            let mut by_status = std::collections::BTreeMap::new();
            for r in &results {
                *by_status.entry(r.3).or_insert(0) += 1;
            }
            let ok = by_status.get(&200).copied().unwrap_or(0);
            assert!(ok > 0, "{name}: no op succeeded");
            app.wait_drained(Duration::from_secs(60)).await;
            let (committed, records) = committed_and_published(env, &sp).await;
            eprintln!(
                "{name}: statuses {by_status:?}, {} committed, {} records",
                committed.len(),
                records.len()
            );
            assert_valid(name, &results, &committed, &records);
        }
    });
}

#[test]
fn inbox_absorbs_redeliveries() {
    with_env(1, |env| async move {
        let sp = space(env, "inbox", 1).await;
        let mut c = dualcheck::env::postgres::connect(&sp.direct_url).await.unwrap();
        implementations::runtime::inbox::setup(&c).await.unwrap();
        implementations::runtime::inbox::setup(&c).await.unwrap(); // idempotent
        let id = uuid::Uuid::new_v4();
        let tx = c.transaction().await.unwrap();
        assert!(implementations::runtime::inbox::first_delivery(&tx, id).await.unwrap());
        tx.commit().await.unwrap();
        let tx = c.transaction().await.unwrap();
        assert!(
            !implementations::runtime::inbox::first_delivery(&tx, id).await.unwrap(),
            "redelivery not recognised"
        );
        tx.rollback().await.unwrap();
        let tx = c.transaction().await.unwrap();
        assert!(
            implementations::runtime::inbox::first_delivery(&tx, uuid::Uuid::new_v4())
                .await
                .unwrap()
        );
    });
}

/// Regression: the xid relay once sorted by the text of the xid (`'1000' < '910'`)
/// and skipped every row below the next power of ten. Burn transaction ids up
/// to just below a power of ten and publish across it.
#[test]
fn xid_relay_orders_numerically_across_a_digit_boundary() {
    with_env(1, |env| async move {
        let sp = space(env, "xid_digits", 3).await;
        let c = dualcheck::env::postgres::connect(&sp.direct_url).await.unwrap();
        let now: i64 = query_value(&c, "SELECT pg_current_xact_id()::text::bigint").await;
        let mut boundary = 10i64;
        while boundary <= now + 30 {
            boundary *= 10;
        }
        let burn = boundary - now - 30;
        assert!(burn < 200_000, "xid {now}: too far from a power of ten");
        c.batch_execute(&format!(
            "DO $$ BEGIN FOR i IN 1..{burn} LOOP PERFORM pg_current_xact_id(); COMMIT; END LOOP; END $$"
        ))
        .await
        .unwrap();
        let app = App::start(env, "outbox-xid", &sp, &[("DUALCHECK_POLL_MS", "10")]).await;
        let results = drive_at(app.port, 0, 4, 0..25, "d", Duration::ZERO).await;
        assert!(results.iter().all(|r| r.3 == 200));
        app.wait_drained(Duration::from_secs(30)).await;
        let xids: i64 = query_value(&c, "SELECT max(pg_current_xact_id()::text::bigint) FROM (SELECT 1) x").await;
        assert!(xids > boundary, "the ops did not cross xid {boundary} (now {xids})");
        let committed = committed(&sp, "SELECT op FROM orders").await;
        let records = read_topic(
            env,
            &sp,
            committed.len(),
            Duration::from_secs(2),
            Duration::from_secs(20),
        )
        .await;
        assert_valid("outbox-xid", &results, &committed, &records);
    });
}
