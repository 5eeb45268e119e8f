//! `listen-to-yourself`: the request writes only an `OrderCreationRequested`
//! event — into the outbox and into `ly_pending` (the op's event until its
//! order row exists), in one transaction — and answers ok. The sharded outbox
//! relay ([`crate::patterns::outbox::shard_relay`]) publishes it; the same service
//! consumes its own topic ([`crate::runtime::own_consumer`]) and creates the order row
//! idempotently (inbox by event id, `ON CONFLICT DO NOTHING`), deleting the
//! `ly_pending` row in the same transaction.
//!
//! - Exactly one event per event of the op reaches the topic (the request
//!   event; there is no `OrderCreated` confirmation, which would be a second
//!   event id). An op of several events writes one outbox and one
//!   `ly_pending` row per event; the consumer writes one order row per event.
//! - No order row without its event: only the consumer writes orders.
//! - Reads (`GET /ops/{key}`): the write-through cache ([`crate::runtime::read_cache`])
//!   first; on a miss (after a restart), the newest seq in `orders` or
//!   `ly_pending` (durable, so still read-your-writes). `DUALCHECK_READ_CACHE=off`
//!   reads `orders` only: reads right after ok are then stale.
//! - Backlog: the `ly_pending` rows, i.e. events not yet published plus events
//!   published but whose order row is not written yet.

use crate::patterns::outbox::OUTBOX_DDL;
use crate::runtime::db::timed;
use crate::runtime::kafka::Envelope;
use crate::runtime::own_consumer::{ConsumerSpec, SharedConsumer};
use crate::runtime::read_cache::ReadCache;
use crate::{AppContext, Background, Backlog, Op, OpAnswer, Pattern, PatternInfo, RelayKind, ORDERS_DDL};
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
    ],
    relay: RelayKind::InProcess,
    reads_by_default: true,
    ..PatternInfo::new(
        "listen-to-yourself",
        "the request writes only an event (outbox, in a transaction); the relay publishes it; the service's own consumer writes the order row idempotently; reads from a write-through cache (DUALCHECK_READ_CACHE)",
        |ctx| {
            Arc::new(ListenToYourself {
                ctx,
                cache: Arc::new(ReadCache::new()),
            })
        },
    )
};

/// Events requested whose order row does not exist yet (idempotent DDL).
pub const LY_PENDING_DDL: &str = "
CREATE TABLE IF NOT EXISTS ly_pending (
    op bigint NOT NULL,
    idx int NOT NULL DEFAULT 0,
    PRIMARY KEY (op, idx),
    key text NOT NULL,
    seq bigint NOT NULL,
    event_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS ly_pending_key ON ly_pending (key, seq);";

/// The pattern.
pub struct ListenToYourself {
    ctx: Arc<AppContext>,
    cache: Arc<ReadCache>,
}

/// Consumer group of the service's own consumer.
pub const GROUP: &str = "dualcheck-listen-to-yourself";

/// The request's transaction: outbox row + pending row, hold, commit (or rollback).
async fn request_txn(ctx: &AppContext, op: &Op, envs: &[Envelope]) -> OpAnswer {
    use crate::runtime::business::{outbox_rows, Cell, OutboxRow, TableRows};
    use tokio_postgres::types::Type;
    let t = ctx.db.timeout;
    let mut conn = match ctx.db.get().await {
        Ok(c) => c,
        Err(e) => return OpAnswer::Fail(format!("no Postgres connection: {e:#}")),
    };
    // One OrderCreationRequested event per event of the op, each pending
    // until the consumer wrote its order row.
    let requested = OutboxRow {
        envelopes: envs,
        notify: false,
        created_at: None,
    };
    let mut pending = TableRows::new(
        "ly_pending",
        "inserting the pending events",
        &[
            ("op", Type::INT8),
            ("idx", Type::INT4),
            ("key", Type::TEXT),
            ("seq", Type::INT8),
            ("event_id", Type::UUID),
        ],
    );
    for env in envs {
        let row: Vec<Cell> = vec![
            Box::new(env.op),
            Box::new(env.index as i32),
            Box::new(env.key.clone()),
            Box::new(env.seq),
            Box::new(env.event_uuid()),
        ];
        pending.push(row);
    }
    let res: Result<OpAnswer> = async {
        let tx = timed(t, "BEGIN", conn.transaction()).await?;
        outbox_rows(&requested).write(t, &tx, op.write).await?;
        pending.write(t, &tx, op.write).await?;
        Ok(crate::runtime::business::finish(t, tx, op).await?.into())
    }
    .await;
    let out = res.unwrap_or_else(|e| OpAnswer::Fail(format!("{e:#}")));
    if out != OpAnswer::Ok {
        conn.discard();
    }
    out
}

#[async_trait::async_trait]
impl Pattern for ListenToYourself {
    async fn setup_schema(&self, db: &tokio_postgres::Client) -> Result<()> {
        db.batch_execute(ORDERS_DDL).await?;
        db.batch_execute(OUTBOX_DDL).await?;
        db.batch_execute(LY_PENDING_DDL).await?;
        crate::runtime::inbox::setup(db).await?;
        Ok(())
    }
    async fn start_background(&self) -> Result<Background> {
        let (mut bg, stop) = Background::new();
        crate::patterns::outbox::shard_relay::start(&self.ctx, false, &mut bg, &stop);
        let spec = ConsumerSpec {
            group: GROUP.into(),
            clear_pending_table: Some("ly_pending"),
        };
        let shared: SharedConsumer = Arc::default();
        bg.push(tokio::spawn(crate::runtime::own_consumer::run(
            self.ctx.clone(),
            spec,
            self.cache.clone(),
            shared,
            stop.clone(),
        )));
        Ok(bg)
    }
    async fn execute(&self, op: &Op) -> OpAnswer {
        let envs = Envelope::all(op);
        self.cache.accept(&op.key, op.op as i64, op.seq as i64);
        let out = request_txn(&self.ctx, op, &envs).await;
        if out == OpAnswer::Ok {
            self.ctx.crash.after_commit();
        } else {
            self.cache.abandon(&op.key, op.op as i64);
        }
        out
    }
    async fn backlog(&self) -> Result<Backlog> {
        let mut c = self.ctx.db.get().await?;
        let r = timed(
            self.ctx.db.timeout,
            "reading the listen-to-yourself backlog",
            c.query_one(
                "SELECT count(*), coalesce((extract(epoch FROM clock_timestamp() - min(created_at)) * 1000)::bigint, 0),
                        (SELECT count(*) FROM outbox_failed)
                 FROM ly_pending",
                &[],
            ),
        )
        .await;
        match r {
            Ok(row) => Ok(Backlog {
                backlog: row.get(0),
                oldest_age_ms: row.get(1),
                parked: row.get(2),
                in_flight: None,
            }),
            Err(e) => {
                c.discard();
                Err(e)
            }
        }
    }
    /// The outbox account ([`crate::patterns::outbox`]'s trace), plus the
    /// op's `ly_pending` row (its order row is not written yet) and whether its
    /// event id is in the consumer's inbox. An op whose outbox row is gone and
    /// whose order row is not written yet is `published` too.
    async fn trace(&self, op: i64) -> Result<Option<serde_json::Value>> {
        let mut v = crate::patterns::outbox::trace(&self.ctx, crate::patterns::outbox::OutboxRelay::Poll, op).await?;
        let mut c = self.ctx.db.get().await?;
        let r = timed(
            self.ctx.db.timeout,
            "reading a pending event for a trace",
            c.query_opt(
                "SELECT p.event_id::text, p.created_at::text, EXISTS (SELECT 1 FROM inbox i WHERE i.event_id = p.event_id)
                 FROM ly_pending p WHERE p.op = $1 ORDER BY p.idx LIMIT 1",
                &[&op],
            ),
        )
        .await;
        let pending = match r {
            Ok(p) => p,
            Err(e) => {
                c.discard();
                return Err(e);
            }
        };
        if let Some(p) = pending {
            v["ly_pending"] = serde_json::json!({"event_id": p.get::<_, String>(0), "created_at": p.get::<_, String>(1),
                                                 "in_inbox": p.get::<_, bool>(2)});
            if v["state"] == "not_committed" {
                v["state"] = "published".into();
                v["note"] = "no outbox row (deleted once Kafka acknowledged it); the consumer has not written its order row yet".into();
            }
        }
        Ok(Some(v))
    }
    async fn read(&self, ctx: &AppContext, key: &str) -> Result<Option<i64>> {
        if !ctx.config.read_cache {
            return crate::runtime::business::read_orders(ctx, key).await;
        }
        if let Some(e) = self.cache.get(key) {
            return Ok(Some(e.seq));
        }
        crate::runtime::business::newest_seq(
            ctx,
            "reading the newest seq of a key (orders and pending events)",
            "SELECT greatest((SELECT max(seq) FROM orders WHERE key = $1), (SELECT max(seq) FROM ly_pending WHERE key = $1))",
            key,
        )
        .await
    }
}
