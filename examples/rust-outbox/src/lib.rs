//! A team's own transactional outbox, written against dualcheck's
//! [`Pattern`] interface so that `cargo test` can verify it under faults.
//!
//! - `execute`: one transaction inserts the order and its outbox row, then
//!   commits; the crash point (`crash-after-commit`) sits right after the commit.
//! - the relay (one background task): each round takes the oldest pending
//!   event of every key (one event per key in flight, so per-key order holds),
//!   publishes them with the shared idempotent producer, and deletes only the
//!   rows whose delivery Kafka acknowledged.
//!
//! The binary (`src/main.rs`) serves it over dualcheck's HTTP contract; the
//! test (`tests/verify.rs`) runs that binary through `Verification::exec`.

use anyhow::Result;
use dualcheck_implementations::runtime::business::{order_rows, TableRows};
use dualcheck_implementations::runtime::kafka::{Envelope, Record};
use dualcheck_implementations::{
    AppContext, Background, Backlog, Op, OpAnswer, Pattern, PatternInfo, RelayKind, ORDERS_DDL,
};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::types::Type;

/// The facts `serve` and the harness need: name, help, how to build the
/// pattern, and, of the facts that differ from [`PatternInfo::new`]'s
/// defaults, that its relay runs inside the service process.
pub const INFO: PatternInfo = PatternInfo {
    relay: RelayKind::InProcess,
    ..PatternInfo::new(
        "rust-outbox",
        "example: a team's own outbox (one relay, oldest event per key per round)",
        |ctx| Arc::new(MyOutbox { ctx }),
    )
};

/// The outbox table of this example.
const OUTBOX_DDL: &str = "CREATE TABLE IF NOT EXISTS my_outbox (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL,
    key text NOT NULL,
    value text NOT NULL
)";

/// The team's outbox pattern.
pub struct MyOutbox {
    ctx: Arc<AppContext>,
}

#[async_trait::async_trait]
impl Pattern for MyOutbox {
    async fn setup_schema(&self, db: &tokio_postgres::Client) -> Result<()> {
        db.batch_execute(ORDERS_DDL).await?;
        db.batch_execute(OUTBOX_DDL).await?;
        Ok(())
    }

    async fn start_background(&self) -> Result<Background> {
        let (mut bg, stop) = Background::new();
        bg.push(tokio::spawn(relay(self.ctx.clone(), stop)));
        Ok(bg)
    }

    async fn execute(&self, op: &Op) -> OpAnswer {
        let mut conn = match self.ctx.db.get().await {
            Ok(c) => c,
            Err(e) => return OpAnswer::Fail(format!("no database connection: {e:#}")),
        };
        // One event per row: an op of several events (an order's lines)
        // writes its rows in the shape it asks for (one INSERT per row, one
        // multi-row INSERT, or COPY), all in the one transaction.
        let mut outbox = TableRows::new(
            "my_outbox",
            "inserting the outbox rows",
            &[("event_id", Type::UUID), ("key", Type::TEXT), ("value", Type::TEXT)],
        );
        for envelope in Envelope::all(op) {
            outbox.push(vec![
                Box::new(envelope.event_uuid()),
                Box::new(envelope.key.clone()),
                Box::new(envelope.to_json()),
            ]);
        }
        let before_commit: Result<tokio_postgres::Transaction<'_>> = async {
            let tx = conn.transaction().await?;
            order_rows(op).write(self.ctx.db.timeout, &tx, op.write).await?;
            outbox.write(self.ctx.db.timeout, &tx, op.write).await?;
            if op.hold_ms > 0 {
                tokio::time::sleep(Duration::from_millis(op.hold_ms)).await;
            }
            Ok(tx)
        }
        .await;
        let tx = match before_commit {
            Ok(tx) => tx,
            // Nothing was committed: the transaction never reached COMMIT.
            Err(e) => return OpAnswer::Fail(format!("not committed: {e:#}")),
        };
        if op.abort {
            let _ = tx.rollback().await;
            return OpAnswer::Fail("aborted on purpose; rolled back".into());
        }
        match tokio::time::timeout(self.ctx.db.timeout, tx.commit()).await {
            Ok(Ok(())) => {
                self.ctx.crash.after_commit();
                OpAnswer::Ok
            }
            Ok(Err(e)) => OpAnswer::Unknown(format!("COMMIT failed, outcome unknown: {e}")),
            Err(_) => OpAnswer::Unknown("COMMIT timed out, outcome unknown".into()),
        }
    }

    async fn backlog(&self) -> Result<Backlog> {
        let c = self.ctx.db.get().await?;
        let n: i64 = c.query_one("SELECT count(*) FROM my_outbox", &[]).await?.get(0);
        Ok(Backlog {
            backlog: n,
            ..Backlog::default()
        })
    }
}

/// The relay: runs until `stop`, surviving every error by reconnecting.
async fn relay(ctx: Arc<AppContext>, mut stop: tokio::sync::watch::Receiver<bool>) {
    while !*stop.borrow() {
        let busy = match relay_round(&ctx).await {
            Ok(n) => n > 0,
            Err(e) => {
                tracing::warn!("relay round failed (retrying): {e:#}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                false
            }
        };
        if !busy {
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}

/// One round: publish the oldest pending event of every key, delete the
/// acknowledged ones. Returns how many events it tried.
async fn relay_round(ctx: &AppContext) -> Result<usize> {
    let c = ctx.db.get().await?;
    let rows = c
        .query(
            "SELECT DISTINCT ON (key) id, event_id, key, value FROM my_outbox ORDER BY key, id LIMIT 500",
            &[],
        )
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let events: Vec<(i64, String, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get::<_, uuid::Uuid>(1).to_string(), r.get(2), r.get(3)))
        .collect();
    let records: Vec<Record<'_>> = events
        .iter()
        .map(|(_, event_id, key, value)| Record { key, value, event_id })
        .collect();
    // Waits for every delivery report (bounded by the producer's message timeout).
    let reports = ctx.publisher.publish_all(&records).await;
    let acked: Vec<i64> = events
        .iter()
        .zip(&reports)
        .filter(|(_, r)| r.is_ok())
        .map(|((id, ..), _)| *id)
        .collect();
    if !acked.is_empty() {
        c.execute("DELETE FROM my_outbox WHERE id = ANY($1)", &[&acked]).await?;
    }
    if acked.len() < events.len() {
        tokio::time::sleep(Duration::from_millis(200)).await; // Kafka unreachable: do not spin
    }
    Ok(events.len())
}
