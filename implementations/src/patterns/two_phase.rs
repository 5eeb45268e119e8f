//! `two-phase`: the request coordinates a Postgres prepared transaction and a
//! Kafka transaction, in this order:
//!
//! 1. `BEGIN`; insert the order row; upsert the key's row in `order_keys` (the
//!    per-key aggregate every order of a key updates: it is what a prepared
//!    transaction keeps locked); `PREPARE TRANSACTION 'dc-<op>'`;
//! 2. in a Kafka transaction (transactional producer, `transactional.id`
//!    fixed per instance so a restart fences its dead predecessor and aborts its
//!    open transaction): produce the event, commit the Kafka transaction;
//! 3. the crash point (`crash-after-commit`), then `COMMIT PREPARED 'dc-<op>'`.
//!
//! A failure before the Kafka commit aborts the Kafka transaction and rolls
//! the prepared transaction back (fail). A Kafka commit whose outcome is
//! unknown, a death after it, or a `COMMIT PREPARED` that does not get through
//! leaves the prepared transaction **in doubt**: it holds its locks (later
//! writes to its key wait, then fail on a 2 s `lock_timeout`) while its event
//! is already visible. The coordinator keeps no log and does no recovery on
//! restart, on purpose: the harness measures the in-doubt windows
//! (`pg_prepared_xacts`) and resolves what is left at the end of the run.

use crate::runtime::db::timed;
use crate::runtime::kafka::Envelope;
use crate::{prepared_gid, AppContext, Op, OpAnswer, Pattern, PatternInfo, ORDERS_DDL};
use anyhow::{anyhow, Context, Result};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::Client;

/// Registry entry.
pub const INFO: PatternInfo = PatternInfo {
    // In-doubt transactions (in_doubt > 0) hold locks and block their keys:
    // not an anomaly of the history, so no claim outside crash-after-commit.
    expect: &[
        crate::expect::Expectation {
            when: crate::expect::When::AnyFault(&["crash-after-commit"]),
            expect: crate::expect::Expect::Shows(&[checkers::Anomaly::Phantom]),
        },
        crate::expect::Expectation {
            when: crate::expect::When::Always,
            expect: crate::expect::Expect::Any,
        },
    ],
    prepares_transactions: true,
    ..PatternInfo::new(
        "two-phase",
        "Postgres PREPARE TRANSACTION + Kafka transaction, then COMMIT PREPARED; no coordinator log or recovery",
        |ctx| {
            Arc::new(TwoPhase {
                ctx,
                producer: tokio::sync::Mutex::new(None),
            })
        },
    )
};

/// The per-key aggregate row (idempotent DDL).
pub const ORDER_KEYS_DDL: &str = "CREATE TABLE IF NOT EXISTS order_keys (
    key text PRIMARY KEY,
    seq bigint NOT NULL,
    op bigint NOT NULL
)";

/// The pattern. The producer's mutex also serializes Kafka transactions (one
/// open transaction per producer at a time).
pub struct TwoPhase {
    ctx: Arc<AppContext>,
    producer: tokio::sync::Mutex<Option<FutureProducer>>,
}

fn kafka_err(what: &str, e: KafkaError) -> anyhow::Error {
    anyhow!("{what}: {e}")
}

/// Whether a Kafka transaction error leaves the producer usable after an abort.
fn requires_abort(e: &KafkaError) -> bool {
    match e {
        KafkaError::Transaction(t) => t.txn_requires_abort(),
        _ => false,
    }
}

impl TwoPhase {
    /// A ready transactional producer (created and `init_transactions`ed on first use).
    async fn ready_producer(&self, slot: &mut Option<FutureProducer>) -> Result<FutureProducer> {
        if let Some(p) = slot.as_ref() {
            if p.client().fatal_error().is_none() {
                return Ok(p.clone());
            }
            *slot = None;
        }
        let cfg = &self.ctx.config;
        let p: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &cfg.kafka_bootstrap)
            .set("transactional.id", format!("dualcheck-two-phase-{}", cfg.topic))
            .set("transaction.timeout.ms", cfg.txn_timeout.as_millis().to_string())
            .set("message.timeout.ms", cfg.publish_timeout.as_millis().to_string())
            .set("linger.ms", cfg.linger.as_millis().to_string())
            .set("socket.nagle.disable", "true")
            .set("reconnect.backoff.max.ms", "1000")
            .set("log_level", "3")
            .create()
            .with_context(|| format!("creating the transactional producer for {}", cfg.kafka_bootstrap))?;
        let p2 = p.clone();
        // Short enough that an op answers (fail) before the runner's op timeout.
        let t = cfg.publish_timeout.min(Duration::from_secs(3));
        tokio::task::spawn_blocking(move || p2.init_transactions(t))
            .await?
            .map_err(|e| kafka_err("initialising Kafka transactions (is the Kafka link up?)", e))?;
        *slot = Some(p.clone());
        Ok(p)
    }

    /// Phase 1 on a dedicated connection; `Ok(Err(_))` = certainly not prepared.
    async fn prepare(&self, c: &Client, op: &Op) -> Result<std::result::Result<(), String>> {
        let t = self.ctx.db.timeout;
        let before = async {
            // A key held by an in-doubt transaction: fail (certainly not
            // prepared) well before the runner's op timeout, rather than hang.
            timed(t, "BEGIN", c.batch_execute("BEGIN; SET LOCAL lock_timeout = '2s'")).await?;
            crate::runtime::business::insert_order(t, c, op).await?;
            // Every key the op's events are on, once, in key order (two ops
            // over the same keys lock them in one order).
            let mut keys: Vec<(String, u64)> = op.each_event().into_iter().map(|e| (e.key, e.seq)).collect();
            keys.sort();
            keys.dedup();
            for (key, seq) in keys {
                timed(
                    t,
                    "updating the key's aggregate row (waits while an in-doubt transaction holds it)",
                    c.execute(
                        "INSERT INTO order_keys (key, seq, op) VALUES ($1, $2, $3)
                         ON CONFLICT (key) DO UPDATE SET seq = excluded.seq, op = excluded.op",
                        &[&key, &(seq as i64), &(op.op as i64)],
                    ),
                )
                .await?;
            }
            if op.hold_ms > 0 {
                tokio::time::sleep(Duration::from_millis(op.hold_ms)).await;
            }
            Ok::<_, anyhow::Error>(())
        }
        .await;
        if let Err(e) = before {
            let _ = timed(t, "ROLLBACK", c.batch_execute("ROLLBACK")).await;
            return Ok(Err(format!("{e:#}")));
        }
        if op.abort {
            let _ = timed(t, "ROLLBACK", c.batch_execute("ROLLBACK")).await;
            return Ok(Err("aborted on purpose (abort: true); rolled back".into()));
        }
        // An error here leaves it unknown whether the transaction is prepared.
        timed(
            t,
            "PREPARE TRANSACTION",
            c.batch_execute(&format!("PREPARE TRANSACTION '{}'", prepared_gid(op.op as i64))),
        )
        .await?;
        Ok(Ok(()))
    }

    /// Phase 2 on any pooled connection: `COMMIT PREPARED` or `ROLLBACK PREPARED`.
    async fn finish(&self, op: i64, commit: bool) -> Result<()> {
        let verb = if commit { "COMMIT PREPARED" } else { "ROLLBACK PREPARED" };
        let mut c = self.ctx.db.get().await?;
        let r = timed(
            self.ctx.db.timeout,
            verb,
            c.batch_execute(&format!("{verb} '{}'", prepared_gid(op))),
        )
        .await;
        if r.is_err() {
            c.discard();
        }
        r
    }

    /// The Kafka transaction; `Ok(true)` committed, `Ok(false)` certainly aborted,
    /// `Err` unknown (the producer is dropped and recreated on the next op).
    async fn publish_txn(&self, producer: &FutureProducer, envs: &[Envelope]) -> Result<bool> {
        let t = self.ctx.config.publish_timeout;
        let p = producer.clone();
        let begun = tokio::task::spawn_blocking(move || p.begin_transaction()).await?;
        if let Err(e) = begun {
            return Err(kafka_err("beginning the Kafka transaction", e));
        }
        // Every event of the op in the one Kafka transaction: all or none
        // become visible to a read_committed consumer.
        let mut sent = Ok(());
        for env in envs {
            let value = env.to_json();
            let headers = OwnedHeaders::new().insert(Header {
                key: "event_id",
                value: Some(&env.event),
            });
            let rec = FutureRecord::to(&self.ctx.config.topic)
                .key(&env.key)
                .payload(&value)
                .headers(headers);
            if let Err((e, _)) = producer.send(rec, t).await {
                sent = Err(e);
                break;
            }
        }
        let abort =
            |p: FutureProducer| async move { tokio::task::spawn_blocking(move || p.abort_transaction(t)).await.ok() };
        if let Err(e) = sent {
            return match abort(producer.clone()).await {
                Some(Ok(())) => Ok(false),
                _ => Err(kafka_err("producing the event (abort failed too)", e)),
            };
        }
        let p = producer.clone();
        let committed = tokio::task::spawn_blocking(move || p.commit_transaction(t)).await?;
        match committed {
            Ok(()) => Ok(true),
            Err(e) if requires_abort(&e) => match abort(producer.clone()).await {
                Some(Ok(())) => Ok(false),
                _ => Err(kafka_err("committing the Kafka transaction (abort failed too)", e)),
            },
            Err(e) => Err(kafka_err("committing the Kafka transaction: outcome unknown", e)),
        }
    }
}

#[async_trait::async_trait]
impl Pattern for TwoPhase {
    async fn setup_schema(&self, db: &tokio_postgres::Client) -> Result<()> {
        db.batch_execute(ORDERS_DDL).await?;
        db.batch_execute(ORDER_KEYS_DDL).await?;
        Ok(())
    }
    async fn execute(&self, op: &Op) -> OpAnswer {
        // The Kafka side must be usable before anything is prepared.
        let mut slot = self.producer.lock().await;
        let producer = match self.ready_producer(&mut slot).await {
            Ok(p) => p,
            Err(e) => return OpAnswer::Fail(format!("{e:#}")),
        };
        drop(slot);
        let client = match self.ctx.db.connect().await {
            Ok(c) => c,
            Err(e) => return OpAnswer::Fail(format!("no Postgres connection: {e:#}")),
        };
        match self.prepare(&client, op).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return OpAnswer::Fail(e),
            Err(e) => return OpAnswer::Unknown(format!("{e:#} (the transaction may be prepared, in doubt)")),
        }
        drop(client);
        let envs = Envelope::all(op);
        // One open Kafka transaction per producer: serialize.
        let mut slot = self.producer.lock().await;
        let published = self.publish_txn(&producer, &envs).await;
        if published.is_err() {
            *slot = None; // unknown state: a new producer (same transactional.id) fences this one
        }
        drop(slot);
        match published {
            Ok(true) => {}
            Ok(false) => {
                return match self.finish(op.op as i64, false).await {
                    Ok(()) => {
                        OpAnswer::Fail("the Kafka transaction aborted; rolled back the prepared transaction".into())
                    }
                    Err(e) => OpAnswer::Unknown(format!(
                        "the Kafka transaction aborted, but {e:#}: the prepared transaction is in doubt"
                    )),
                }
            }
            Err(e) => {
                return OpAnswer::Unknown(format!(
                    "{e:#}; the prepared transaction {} is left in doubt",
                    prepared_gid(op.op as i64)
                ))
            }
        }
        self.ctx.crash.after_commit();
        match self.finish(op.op as i64, true).await {
            Ok(()) => OpAnswer::Ok,
            Err(e) => OpAnswer::Unknown(format!(
                "event published, but {e:#}: the prepared transaction {} is in doubt",
                prepared_gid(op.op as i64)
            )),
        }
    }
}
