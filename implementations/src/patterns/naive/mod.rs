//! `naive`: commit the business row, then publish (bounded retries). The
//! dual-write problem itself — a negative control: when Kafka is unreachable
//! after the commit (or the process dies there) the event is lost.
//!
//! Answers 200 once the row is committed, whatever the publish did (the
//! business effect is durable; a failed publish is only logged).
//!
//! [`publish_first`] is its mirror image (`naive-publish-first`) on the same
//! publisher and retries.

pub mod publish_first;

use crate::runtime::business::{self, TxnEnd};
use crate::runtime::kafka::{Envelope, Publisher, Record};
use crate::{AppContext, Op, OpAnswer, Pattern, PatternInfo, ORDERS_DDL};
use std::sync::Arc;

/// Registry entry.
pub const INFO: PatternInfo = PatternInfo {
    // A negative control.
    expect: &[crate::expect::Expectation {
        when: crate::expect::When::AnyFault(&["kafka-partition", "crash-after-commit"]),
        expect: crate::expect::Expect::Shows(&[checkers::Anomaly::Lost]),
    }],
    ..PatternInfo::new(
        "naive",
        "commit, then publish with bounded retries (the dual-write problem itself)",
        |ctx| {
            Arc::new(Naive {
                publisher: naive_publisher(&ctx),
                ctx,
            })
        },
    )
};

/// Commit, then publish.
pub struct Naive {
    ctx: Arc<AppContext>,
    publisher: Arc<Publisher>,
}

/// The naive patterns' own producer: a request handler cannot wait the
/// relays' long `message.timeout.ms`, so its publishes give up after
/// `DUALCHECK_NAIVE_PUBLISH_TIMEOUT_MS` (and the event is lost) as real
/// naive services' do.
pub(crate) fn naive_publisher(ctx: &AppContext) -> Arc<Publisher> {
    let c = &ctx.config;
    match Publisher::new(&c.kafka_bootstrap, &c.topic, c.naive_publish_timeout, c.linger) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            tracing::warn!("naive producer: {e:#}; using the shared one");
            ctx.publisher.clone()
        }
    }
}

/// Publishes `env` up to `attempts` times; logs the final failure.
pub(crate) async fn publish_with_retries(
    ctx: &AppContext,
    publisher: &Publisher,
    env: &Envelope,
) -> Result<(), String> {
    let value = env.to_json();
    let mut last = String::new();
    for attempt in 0..ctx.config.naive_attempts {
        let rec = Record {
            key: &env.key,
            value: &value,
            event_id: &env.event,
        };
        match publisher.publish(rec).await {
            Ok(_) => return Ok(()),
            Err(e) => {
                last = e.message;
                if e.permanent {
                    break;
                }
                let b = crate::runtime::backoff::Backoff {
                    base: ctx.config.backoff_base,
                    max: ctx.config.backoff_max,
                };
                if attempt + 1 < ctx.config.naive_attempts {
                    tokio::time::sleep(b.delay(attempt)).await;
                }
            }
        }
    }
    Err(last)
}

#[async_trait::async_trait]
impl Pattern for Naive {
    async fn setup_schema(&self, db: &tokio_postgres::Client) -> anyhow::Result<()> {
        db.batch_execute(ORDERS_DDL).await?;
        Ok(())
    }
    async fn execute(&self, op: &Op) -> OpAnswer {
        match business::run(&self.ctx, op, None).await {
            TxnEnd::Failed(e) => OpAnswer::Fail(e),
            TxnEnd::Unknown(e) => OpAnswer::Unknown(e),
            TxnEnd::Committed => {
                for env in Envelope::all(op) {
                    if let Err(e) = publish_with_retries(&self.ctx, &self.publisher, &env).await {
                        tracing::warn!("naive: op {} committed but its event {} is lost: {e}", op.op, env.index);
                    }
                }
                OpAnswer::Ok
            }
        }
    }
    async fn trace(&self, op: i64) -> anyhow::Result<Option<serde_json::Value>> {
        business::request_trace(&self.ctx, &self.publisher, op).await.map(Some)
    }
}
