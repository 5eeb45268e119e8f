//! The schema family: the run's database changed under the implementation,
//! a column added mid-run or rows written to a table no op wrote.

use super::{Fault, WhileActive};
use anyhow::{bail, Context, Result};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use workloads::FaultPhase;

/// Injects the schema faults.
pub(super) struct SchemaFaults {
    /// Direct URL of the run's database (past Toxiproxy: the change must land
    /// even while the Postgres link is down).
    database_direct_url: String,
    /// Tables besides `orders` whose rows the implementation streams (schema-change alters them too).
    streamed_tables: Vec<String>,
    /// Columns added so far: each schema change adds a new one.
    schema_changes: AtomicU32,
    noise_writer: WhileActive,
}

impl SchemaFaults {
    pub(super) fn new(database_direct_url: &str, streamed_tables: &[&str]) -> Self {
        SchemaFaults {
            database_direct_url: database_direct_url.to_string(),
            streamed_tables: streamed_tables
                .iter()
                .filter(|t| **t != "orders")
                .map(|t| t.to_string())
                .collect(),
            schema_changes: AtomicU32::new(0),
            noise_writer: WhileActive::default(),
        }
    }

    /// Each schema fault's start and stop, side by side.
    pub(super) async fn apply(&self, fault: Fault, phase: FaultPhase) -> Result<()> {
        use Fault::*;
        use FaultPhase::{Start, Stop};
        match (fault, phase) {
            (SchemaChange, Start) => self.add_column().await,
            (SchemaChange, Stop) => Ok(()), // the column stays, as in production

            (Noise, Start) => {
                let c = services::postgres::connect(&self.database_direct_url).await?;
                c.batch_execute(NOISE_DDL).await.context("creating the noise table")?;
                self.noise_writer.start(|stop| write_noise(c, stop));
                Ok(())
            }
            (Noise, Stop) => {
                self.noise_writer.stop().await;
                Ok(())
            }

            (other, _) => bail!("{other} is a {} fault, not a schema one", other.family()),
        }
    }

    /// Adds a column to `orders` and to every streamed table that exists.
    async fn add_column(&self) -> Result<()> {
        let n = self.schema_changes.fetch_add(1, Ordering::Relaxed);
        let c = services::postgres::connect(&self.database_direct_url).await?;
        c.batch_execute(&format!(
            "SET lock_timeout = '5s'; ALTER TABLE orders ADD COLUMN IF NOT EXISTS nemesis_extra_{n} text DEFAULT 'added mid-run'"
        ))
        .await
        .context("ALTER TABLE orders ADD COLUMN (the business table must be called `orders`)")?;
        // The tables the implementation streams change shape too (those that exist).
        for table in &self.streamed_tables {
            c.batch_execute(&format!(
                "DO $$ BEGIN
                   IF to_regclass('public.{table}') IS NOT NULL THEN
                     ALTER TABLE {table} ADD COLUMN IF NOT EXISTS nemesis_extra_{n} text;
                   END IF;
                 END $$"
            ))
            .await
            .with_context(|| format!("ALTER TABLE {table} (a table the implementation streams)"))?;
        }
        Ok(())
    }
}

/// The table `noise` writes: shaped like `orders`, so a pipeline that
/// captures every table would publish its rows as events of ops never invoked.
const NOISE_DDL: &str = "CREATE TABLE IF NOT EXISTS noise (
    op bigint NOT NULL,
    key text NOT NULL,
    seq bigint NOT NULL,
    payload text
)";

/// Inserts a noise row every 20 ms (op ids far above any workload's) until stopped.
async fn write_noise(c: tokio_postgres::Client, mut stop: watch::Receiver<bool>) {
    let mut n: i64 = 0;
    loop {
        n += 1;
        let op = (1i64 << 50) + n;
        let r = c
            .execute(
                "INSERT INTO noise (op, key, seq, payload) VALUES ($1, $2, $3, 'noise: never an event')",
                &[&op, &format!("noise{}", n % 16), &n],
            )
            .await;
        if let Err(e) = r {
            tracing::debug!("noise: {e}");
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}
