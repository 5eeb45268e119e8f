//! The schema family: the run's database changed under the implementation,
//! a column added mid-run, rows written to a table no op wrote, or commits
//! made slow by a trigger dualcheck installs.

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
    /// The run's seed: which transactions `pg-slow-commit` stalls.
    seed: u64,
}

impl SchemaFaults {
    pub(super) fn new(database_direct_url: &str, streamed_tables: &[&str], seed: u64) -> Self {
        SchemaFaults {
            database_direct_url: database_direct_url.to_string(),
            streamed_tables: streamed_tables
                .iter()
                .filter(|t| **t != "orders")
                .map(|t| t.to_string())
                .collect(),
            schema_changes: AtomicU32::new(0),
            noise_writer: WhileActive::default(),
            seed,
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

            (PgSlowCommit, Start) => self.slow_commits().await,
            (PgSlowCommit, Stop) => self.fast_commits().await,

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

impl SchemaFaults {
    /// Installs the slow-commit trigger on every table of the `public`
    /// schema (what any transaction of the implementation writes).
    async fn slow_commits(&self) -> Result<()> {
        let c = services::postgres::connect(&self.database_direct_url).await?;
        c.batch_execute(&slow_commit_function(self.seed))
            .await
            .context("creating the slow-commit trigger function")?;
        let tables = c
            .query(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
                &[],
            )
            .await
            .context("listing the run database's tables")?;
        for row in tables {
            let table: String = row.get(0);
            c.batch_execute(&format!(
                "SET lock_timeout = '5s';
                 DROP TRIGGER IF EXISTS {SLOW_COMMIT} ON public.{table};
                 CREATE CONSTRAINT TRIGGER {SLOW_COMMIT} AFTER INSERT OR UPDATE OR DELETE ON public.{table}
                   DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {SLOW_COMMIT}()"
            ))
            .await
            .with_context(|| format!("installing the slow-commit trigger on {table}"))?;
        }
        Ok(())
    }

    /// Makes every commit fast again at once — the trigger's function
    /// replaced by one that returns (no table lock needed) — then drops the
    /// trigger wherever it is. A drop waits for its table's lock, which
    /// transactions in flight hold: it is tried a few times, and a trigger
    /// left (inert) is a warning, not a failed heal.
    async fn fast_commits(&self) -> Result<()> {
        let c = services::postgres::connect(&self.database_direct_url).await?;
        c.batch_execute(&format!(
            "CREATE OR REPLACE FUNCTION {SLOW_COMMIT}() RETURNS trigger LANGUAGE plpgsql AS $fn$
             BEGIN RETURN NULL; END $fn$"
        ))
        .await
        .context("making the slow-commit trigger function return at once")?;
        let tables = c
            .query(
                "SELECT format('%I.%I', n.nspname, r.relname) FROM pg_trigger t
                   JOIN pg_class r ON r.oid = t.tgrelid JOIN pg_namespace n ON n.oid = r.relnamespace
                  WHERE t.tgname = $1",
                &[&SLOW_COMMIT],
            )
            .await
            .context("finding the slow-commit triggers")?;
        for row in tables {
            let table: String = row.get(0);
            let drop = format!("SET lock_timeout = '1s'; DROP TRIGGER IF EXISTS {SLOW_COMMIT} ON {table}");
            let mut last = None;
            for _ in 0..5 {
                match c.batch_execute(&drop).await {
                    Ok(()) => {
                        last = None;
                        break;
                    }
                    Err(e) => last = Some(e),
                }
            }
            if let Some(e) = last {
                tracing::warn!("pg-slow-commit: the (inert) trigger on {table} stays: dropping it: {e}");
            }
        }
        Ok(())
    }
}

/// The name of `pg-slow-commit`'s trigger and of its function.
const SLOW_COMMIT: &str = "dualcheck_slow_commit";

/// The function of `pg-slow-commit`'s deferred trigger. It runs at COMMIT,
/// once per written row; the first row of a transaction decides for the
/// whole transaction (a transaction-local setting remembers it): with
/// `seed`, a hash of the transaction id picks 20 % of transactions, which
/// sleep 0.2–0.6 s there — after all their writes, holding the ids they
/// took, while later transactions commit past them.
fn slow_commit_function(seed: u64) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION {SLOW_COMMIT}() RETURNS trigger LANGUAGE plpgsql AS $fn$
         DECLARE h int;
         BEGIN
           IF current_setting('dualcheck.slow_commit_decided', true) = 'yes' THEN RETURN NULL; END IF;
           PERFORM set_config('dualcheck.slow_commit_decided', 'yes', true);
           h := abs(hashtext(txid_current()::text || ':{seed}')) % 1000;
           IF h < 200 THEN PERFORM pg_sleep(0.2 + h / 500.0); END IF;
           RETURN NULL;
         END $fn$"
    )
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
