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

/// The `event_id` header of a Kafka record, else the `event` field of its JSON value.
pub fn event_id_of(msg: &impl rdkafka::Message) -> Option<Uuid> {
    use rdkafka::message::Headers;
    if let Some(h) = msg.headers() {
        for hd in h.iter() {
            if hd.key == "event_id" {
                if let Some(id) = hd
                    .value
                    .and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|s| s.parse().ok())
                {
                    return Some(id);
                }
            }
        }
    }
    let v: serde_json::Value = serde_json::from_slice(msg.payload()?).ok()?;
    v.get("event")?.as_str()?.parse().ok()
}
