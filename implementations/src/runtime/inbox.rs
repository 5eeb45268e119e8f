//! Idempotent consumer helper: an inbox table keyed by event id. A consumer
//! records each event id in the same transaction as the event's effect; a
//! redelivered event (same id) is recognised and skipped.

use anyhow::Result;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// DDL of the inbox (idempotent).
pub const INBOX_DDL: &str = "CREATE TABLE IF NOT EXISTS inbox (
    event_id uuid PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now()
)";

/// Creates the inbox table if missing.
pub async fn setup(db: &impl GenericClient) -> Result<()> {
    db.batch_execute(INBOX_DDL).await?;
    Ok(())
}

/// Records `event_id` inside the caller's transaction. Returns true the first
/// time (apply the effect), false for a duplicate (skip it). Commit the
/// transaction only after the effect is written.
pub async fn first_delivery(tx: &impl GenericClient, event_id: Uuid) -> Result<bool> {
    let n = tx
        .execute(
            "INSERT INTO inbox (event_id) VALUES ($1) ON CONFLICT (event_id) DO NOTHING",
            &[&event_id],
        )
        .await?;
    Ok(n == 1)
}
