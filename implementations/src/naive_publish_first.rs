//! `naive-publish-first`: publish the event and wait for the ack, then insert
//! and commit the business row. A negative control: when Postgres is
//! unreachable after the publish (or the op aborts on purpose) the event is out
//! but the row is not — a phantom.

use crate::business::{self, TxnEnd};
use crate::kafka::Envelope;
use crate::naive::publish_with_retries;
use crate::{AppContext, OpOutcome, OpRequest, Pattern, PatternInfo, RelayKind, ORDERS_COMMITTED_SQL, ORDERS_DDL};
use std::sync::Arc;

/// Registry entry.
pub const INFO: PatternInfo = PatternInfo {
    name: "naive-publish-first",
    about: "publish and await the ack, then insert and commit",
    expected: "negative control: must show `phantom` under pg-partition",
    committed_sql: ORDERS_COMMITTED_SQL,
    relay: RelayKind::None,
    reads_by_default: false,
    prepares_transactions: false,
    streamed_tables: &[],
    latency_reference: false,
    build: |ctx| {
        Arc::new(PublishFirst {
            publisher: crate::naive::naive_publisher(&ctx),
            ctx,
        })
    },
};

/// Publish, then commit.
pub struct PublishFirst {
    ctx: Arc<AppContext>,
    publisher: Arc<crate::kafka::Publisher>,
}

#[async_trait::async_trait]
impl Pattern for PublishFirst {
    fn name(&self) -> &'static str {
        INFO.name
    }
    fn about(&self) -> &'static str {
        INFO.about
    }
    async fn setup_schema(&self, db: &tokio_postgres::Client) -> anyhow::Result<()> {
        db.batch_execute(ORDERS_DDL).await?;
        Ok(())
    }
    async fn execute(&self, op: &OpRequest) -> OpOutcome {
        let env = Envelope::new(op);
        if let Err(e) = publish_with_retries(&self.ctx, &self.publisher, &env).await {
            // Nothing was written to the database: the business effect certainly did not happen.
            return OpOutcome::Fail(format!("publishing first failed, nothing written: {e}"));
        }
        match business::run(&self.ctx, op, None).await {
            TxnEnd::Committed => OpOutcome::Ok,
            TxnEnd::Failed(e) => OpOutcome::Fail(format!("event already published, but: {e}")),
            TxnEnd::Unknown(e) => OpOutcome::Unknown(e),
        }
    }
}
