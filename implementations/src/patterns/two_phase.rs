//! `two-phase`: the request coordinates a Postgres prepared transaction and a
//! Kafka transaction, in this order:
//!
//! 1. `BEGIN`; insert the order row; upsert the key's row in `order_keys` (the
//!    per-key aggregate every order of a key updates: it is what a prepared
//!    transaction keeps locked); `PREPARE TRANSACTION 'dc-<op>'`;
//! 2. in a Kafka transaction ([`crate::runtime::kafka_txn`]: `transactional.id`
//!    fixed per instance so a restart fences its dead predecessor and aborts its
//!    open transaction): produce the op's events, commit the Kafka transaction;
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
use crate::runtime::kafka_txn::{TxnOutcome, TxnPublisher};
use crate::{prepared_gid, AppContext, Op, OpAnswer, Pattern, PatternInfo, ORDERS_DDL};
use anyhow::Result;
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
                txn: TxnPublisher::new(&ctx.config, "two-phase"),
                ctx,
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

/// The pattern.
pub struct TwoPhase {
    ctx: Arc<AppContext>,
    /// Every event of an op in one Kafka transaction.
    txn: TxnPublisher,
}

impl TwoPhase {
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
        if let Err(e) = self.txn.ready().await {
            return OpAnswer::Fail(format!("{e:#}"));
        }
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
        match self.txn.publish_all(&Envelope::all(op)).await {
            Ok(TxnOutcome::Committed) => {}
            Ok(TxnOutcome::Aborted) => {
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
