//! `kafka-first`: the request publishes the event to Kafka first (idempotent
//! producer, `acks=all`) and answers ok once the broker acknowledged it; the
//! service's own consumer ([`crate::runtime::own_consumer`]) writes the order row
//! idempotently (inbox by event id, `ON CONFLICT DO NOTHING`).
//!
//! - The crash point sits after the acknowledgment, before the answer: the
//!   event is in Kafka, the row comes when the restarted consumer catches up.
//! - A publish that fails with a permanent error answers fail; any other
//!   failure answers unknown (the record may still have been written).
//! - An op of several events publishes them in one Kafka transaction
//!   ([`crate::runtime::kafka_txn`]): all visible to the read-committed
//!   consumers, or none.
//! - Reads: the write-through cache ([`crate::runtime::read_cache`]) first, else the
//!   `orders` table (`DUALCHECK_READ_CACHE=off`: `orders` only).
//! - Backlog: cache entries still pending (acknowledged ops whose row does not
//!   exist yet) plus the consumer's lag (records not yet written and
//!   committed), which covers what the cache forgot in a restart.

use crate::runtime::kafka::{Envelope, Record};
use crate::runtime::kafka_txn::{TxnOutcome, TxnPublisher};
use crate::runtime::own_consumer::{ConsumerSpec, SharedConsumer};
use crate::runtime::read_cache::ReadCache;
use crate::{AppContext, Background, Backlog, Op, OpAnswer, Pattern, PatternInfo, ORDERS_DDL};
use anyhow::Result;
use std::sync::Arc;

/// Registry entry.
pub const INFO: PatternInfo = PatternInfo {
    // Read your writes comes from the write-through cache of the instance
    // that took the write: a read sent to another instance may not see it
    // until the consumer wrote the row (`--replicas`).
    expect: crate::expect::Expectation::STALE_ON_OTHER_INSTANCES,
    controls: &[
        crate::runtime::read_cache::CACHE_OFF_READS_STALE,
        crate::runtime::own_consumer::COMMIT_OFFSET_BEFORE_WRITE,
        NO_FLUSH_ON_SHUTDOWN,
    ],
    reads_by_default: true,
    ..PatternInfo::new(
        "kafka-first",
        "publish to Kafka first (idempotent producer, ok after the ack); the service's own consumer writes the order row idempotently; reads from a write-through cache (DUALCHECK_READ_CACHE)",
        |ctx| {
            Arc::new(KafkaFirst {
                txn: TxnPublisher::new(&ctx.config, "kafka-first"),
                ctx,
                cache: Arc::new(ReadCache::new()),
                consumer: Arc::default(),
            })
        },
    )
};

/// `no-flush-on-shutdown`: the request answers ok once the producer holds
/// the record (fire and forget: "the producer delivers it"), and the
/// process has no SIGTERM handler, so a deploy ends it at once, its
/// producer unflushed. Every record in flight at a deploy is gone, though
/// its op was acknowledged: exposed by a `rolling-restart` while Kafka
/// answers slowly (`kafka-latency`), as records then wait in the producer.
pub const NO_FLUSH_ON_SHUTDOWN: crate::expect::Control = crate::patterns::outbox::mutant(
    "no-flush-on-shutdown",
    "rolling-restart,kafka-latency",
    &[
        crate::expect::Expectation {
            when: crate::expect::When::AllFaults(&["rolling-restart", "kafka-latency"]),
            expect: crate::expect::Expect::Shows(&[checkers::Anomaly::LostCommit, checkers::Anomaly::StaleRead]),
        },
        crate::expect::Expectation {
            when: crate::expect::When::Always,
            expect: crate::expect::Expect::Any,
        },
    ],
);

/// Consumer group of the service's own consumer.
pub const GROUP: &str = "dualcheck-kafka-first";

/// The pattern.
pub struct KafkaFirst {
    ctx: Arc<AppContext>,
    cache: Arc<ReadCache>,
    consumer: SharedConsumer,
    /// Ops of several events: one Kafka transaction each (made on first use).
    txn: TxnPublisher,
}

#[async_trait::async_trait]
impl Pattern for KafkaFirst {
    async fn setup_schema(&self, db: &tokio_postgres::Client) -> Result<()> {
        db.batch_execute(ORDERS_DDL).await?;
        crate::runtime::inbox::setup(db).await?;
        Ok(())
    }
    async fn start_background(&self) -> Result<Background> {
        let (mut bg, stop) = Background::new();
        let spec = ConsumerSpec {
            group: GROUP.into(),
            clear_pending_table: None,
        };
        bg.push(tokio::spawn(crate::runtime::own_consumer::run(
            self.ctx.clone(),
            spec,
            self.cache.clone(),
            self.consumer.clone(),
            stop,
        )));
        Ok(bg)
    }
    async fn execute(&self, op: &Op) -> OpAnswer {
        self.cache.accept(&op.key, op.op as i64, op.seq as i64);
        if op.hold_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(op.hold_ms)).await;
        }
        if op.abort {
            self.cache.abandon(&op.key, op.op as i64);
            return OpAnswer::Fail("aborted on purpose (abort: true); nothing published".into());
        }
        if op.is_multi_event() {
            return self.publish_together(op).await;
        }
        let env = Envelope::new(op);
        let value = env.to_json();
        if self.ctx.config.bug_is(NO_FLUSH_ON_SHUTDOWN.name) {
            return self.fire_and_forget(op, &env, &value).await;
        }
        let res = self
            .ctx
            .publisher
            .publish(Record {
                key: &env.key,
                value: &value,
                event_id: &env.event,
            })
            .await;
        match res {
            Ok(_) => {
                self.ctx.crash.after_commit();
                OpAnswer::Ok
            }
            Err(e) => {
                self.cache.abandon(&op.key, op.op as i64);
                if e.permanent {
                    OpAnswer::Fail(e.message)
                } else {
                    OpAnswer::Unknown(format!("{} (the record may still have been written)", e.message))
                }
            }
        }
    }
    fn graceful_shutdown(&self) -> bool {
        !self.ctx.config.bug_is(NO_FLUSH_ON_SHUTDOWN.name)
    }
    async fn backlog(&self) -> Result<Backlog> {
        if self.ctx.config.bug_is(NO_FLUSH_ON_SHUTDOWN.name) {
            // The mutant forgets what it handed over: the pending cache would
            // keep counting the records its shutdown purged.
            let lag = crate::runtime::own_consumer::lag(&self.consumer, &self.ctx.config.topic).await?;
            return Ok(Backlog::count(lag));
        }
        let lag = crate::runtime::own_consumer::lag(&self.consumer, &self.ctx.config.topic).await?;
        Ok(Backlog {
            backlog: self.cache.pending() as i64 + lag,
            oldest_age_ms: 0,
            parked: 0,
            in_flight: None,
        })
    }
    /// The request's account (the `orders` row the consumer wrote, what the
    /// publisher remembers: `published` with partition and offset, or the
    /// error), plus whether the consumer recorded the event id in its inbox.
    async fn trace(&self, op: i64) -> Result<Option<serde_json::Value>> {
        let mut v = crate::runtime::business::request_trace(&self.ctx, &self.ctx.publisher, op).await?;
        if let Some(event) = v["publish"]["event"]
            .as_str()
            .and_then(|e| e.parse::<uuid::Uuid>().ok())
        {
            let mut c = self.ctx.db.get().await?;
            let r = crate::runtime::db::timed(
                self.ctx.db.timeout,
                "reading the inbox for a trace",
                c.query_one("SELECT EXISTS (SELECT 1 FROM inbox WHERE event_id = $1)", &[&event]),
            )
            .await;
            match r {
                Ok(row) => v["in_inbox"] = row.get::<_, bool>(0).into(),
                Err(e) => {
                    c.discard();
                    return Err(e);
                }
            }
        }
        Ok(Some(v))
    }
    async fn read(&self, ctx: &AppContext, key: &str) -> Result<Option<i64>> {
        if ctx.config.read_cache {
            if let Some(e) = self.cache.get(key) {
                return Ok(Some(e.seq));
            }
        }
        crate::runtime::business::read_orders(ctx, key).await
    }
}

impl KafkaFirst {
    /// An op of several events: all of them in one Kafka transaction, so a
    /// crash between two sends publishes none (the consumers read committed
    /// records only) rather than part of the op.
    async fn publish_together(&self, op: &Op) -> OpAnswer {
        match self.txn.publish_all(&Envelope::all(op)).await {
            Ok(TxnOutcome::Committed) => {
                self.ctx.crash.after_commit();
                OpAnswer::Ok
            }
            Ok(TxnOutcome::Aborted) => {
                self.cache.abandon(&op.key, op.op as i64);
                OpAnswer::Fail("the Kafka transaction aborted: none of the op's events is published".into())
            }
            Err(e) => {
                self.cache.abandon(&op.key, op.op as i64);
                OpAnswer::Unknown(format!("{e:#} (the events may still have been published)"))
            }
        }
    }

    /// [`NO_FLUSH_ON_SHUTDOWN`]: ok as soon as the producer holds the record.
    async fn fire_and_forget(&self, op: &Op, env: &Envelope, value: &str) -> OpAnswer {
        let record = Record {
            key: &env.key,
            value,
            event_id: &env.event,
        };
        let handed = self.ctx.publisher.hand_over(&[record]).await;
        if handed.refused() {
            self.cache.abandon(&op.key, op.op as i64);
            return OpAnswer::Fail("the producer refused the record".into());
        }
        // The delivery reports are never collected: dropped here, the
        // producer still sends the record — unless the process ends first.
        drop(handed);
        self.ctx.crash.after_commit();
        OpAnswer::Ok
    }
}
