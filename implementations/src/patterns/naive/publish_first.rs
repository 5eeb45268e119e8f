//! `naive-publish-first`: publish the event and wait for the ack, then insert
//! and commit the business row. A negative control: when Postgres is
//! unreachable after the publish (or the op aborts on purpose) the event is out
//! but the row is not — a phantom.

use super::publish_with_retries;
use crate::runtime::business::{self, TxnEnd};
use crate::runtime::kafka::Envelope;
use crate::{AppContext, Op, OpAnswer, Pattern, PatternInfo, ORDERS_DDL};
use std::sync::Arc;

/// Registry entry.
pub const INFO: PatternInfo = PatternInfo {
    // A negative control. Without a partition it is no better: an op the
    // workload aborts on purpose (`--abort-fraction`, 5 % by default) has
    // already published its event, a phantom with no fault at all. So no
    // verdict is promised there (valid only with no aborts).
    expect: &[
        crate::expect::Expectation {
            when: crate::expect::When::AnyFault(&["pg-partition"]),
            expect: crate::expect::Expect::Shows(&[checkers::Anomaly::Phantom]),
        },
        crate::expect::Expectation {
            when: crate::expect::When::Always,
            expect: crate::expect::Expect::Any,
        },
    ],
    ..PatternInfo::new(
        "naive-publish-first",
        "publish and await the ack, then insert and commit",
        |ctx| {
            Arc::new(PublishFirst {
                publisher: super::naive_publisher(&ctx),
                ctx,
            })
        },
    )
};

/// Publish, then commit.
pub struct PublishFirst {
    ctx: Arc<AppContext>,
    publisher: Arc<crate::runtime::kafka::Publisher>,
}

#[async_trait::async_trait]
impl Pattern for PublishFirst {
    async fn setup_schema(&self, db: &tokio_postgres::Client) -> anyhow::Result<()> {
        db.batch_execute(ORDERS_DDL).await?;
        Ok(())
    }
    async fn execute(&self, op: &Op) -> OpAnswer {
        for env in Envelope::all(op) {
            if let Err(e) = publish_with_retries(&self.ctx, &self.publisher, &env).await {
                // Nothing was written to the database: the business effect certainly did not happen.
                return OpAnswer::Fail(format!("publishing first failed, nothing written: {e}"));
            }
        }
        match business::run(&self.ctx, op, None).await {
            TxnEnd::Committed => OpAnswer::Ok,
            TxnEnd::Failed(e) => OpAnswer::Fail(format!("event already published, but: {e}")),
            TxnEnd::Unknown(e) => OpAnswer::Unknown(e),
        }
    }
    async fn trace(&self, op: i64) -> anyhow::Result<Option<serde_json::Value>> {
        business::request_trace(&self.ctx, &self.publisher, op).await.map(Some)
    }
}
