//! `cdc-outbox`: the outbox written in the business transaction, read from the
//! WAL instead of polled. The service inserts the order, then an outbox row
//! carrying the finished event (its own event id, an enriched payload: events
//! need not match rows one to one) and deletes that row again in the same
//! transaction, so the table never grows: the WAL keeps the insert, and the
//! publication streams inserts only ([`crate::patterns::cdc`]).

use super::{CdcEvent, CdcPattern, Row, Source};
use crate::runtime::business::{text_array, Cell, Statement, Step, TableRows};
use crate::runtime::kafka::Envelope;
use crate::{Op, PatternInfo, RelayKind};
use anyhow::Result;

/// Registry entry.
pub const INFO: PatternInfo = PatternInfo {
    scaling: crate::Scaling::OneRelay("one replication slot has one reader"),
    controls: &[super::CONFIRM_EARLY_LOSES, super::NEW_SLOT_ON_RESTART],
    relay: RelayKind::Process,
    // The drain marker: 0 only once everything before the previous call's
    // marker is acknowledged (`Tailer::backlog`).
    exact_backlog: true,
    // Records go out at once: see `TUNED_PRODUCER`.
    tuned: crate::patterns::outbox::TUNED_PRODUCER,
    streamed_tables: &["cdc_outbox"],
    outbox_table: Some("cdc_outbox"),
    ..PatternInfo::new(
        "cdc-outbox",
        "outbox rows (inserted and deleted in the business transaction) streamed from the WAL by logical replication",
        |ctx| CdcPattern::build(SOURCE, CDC_OUTBOX_DDL, outbox_statements, ctx),
    )
};

/// The outbox table the tailer streams (always empty between transactions).
pub const CDC_OUTBOX_DDL: &str = "CREATE TABLE IF NOT EXISTS cdc_outbox (
    id bigserial PRIMARY KEY,
    event_id uuid NOT NULL,
    key text NOT NULL,
    event_type text NOT NULL,
    value text NOT NULL
)";

/// What the tailer streams: inserts into `cdc_outbox`.
pub const SOURCE: Source = Source {
    table: "cdc_outbox",
    name: "outbox",
    to_event: outbox_event,
};

/// Insert the event, then delete it: the WAL is the queue.
fn outbox_statements(op: &Op) -> Vec<Step> {
    use tokio_postgres::types::Type;
    let envelopes = Envelope::all(op);
    let mut rows = TableRows::new(
        "cdc_outbox",
        "inserting the outbox rows",
        &[
            ("event_id", Type::UUID),
            ("key", Type::TEXT),
            ("event_type", Type::TEXT),
            ("value", Type::TEXT),
        ],
    );
    for envelope in &envelopes {
        // Enriched: the event carries more than the row (type, source, time).
        let mut value = serde_json::json!({
            "op": envelope.op,
            "seq": envelope.seq,
            "key": envelope.key,
            "event": envelope.event,
            "type": "OrderCreated",
            "source": "dualcheck/cdc-outbox",
            "payload": envelope.payload,
        });
        if envelope.index > 0 {
            value["index"] = envelope.index.into();
        }
        let row: Vec<Cell> = vec![
            Box::new(envelope.event_uuid()),
            Box::new(envelope.key.clone()),
            Box::new("OrderCreated".to_string()),
            Box::new(value.to_string()),
        ];
        rows.push(row);
    }
    vec![
        Step::Rows(rows),
        Step::Sql(Statement {
            sql: "DELETE FROM cdc_outbox WHERE event_id = ANY($1::text::uuid[])",
            what: "deleting the outbox rows (the WAL keeps them)",
            params: vec![text_array(envelopes.iter().map(|e| e.event.as_str()))],
        }),
    ]
}

/// The event of one outbox row: exactly what the service wrote.
fn outbox_event(row: &Row<'_>) -> Result<CdcEvent> {
    Ok(CdcEvent {
        key: row.required("key")?,
        value: row.required("value")?,
        event_id: row.required("event_id")?,
    })
}
