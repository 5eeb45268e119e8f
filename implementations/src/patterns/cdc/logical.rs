//! `cdc-logical`: pure change data capture. The service inserts its business
//! row and nothing else (no event code at all); the CDC process streams the
//! inserts of `orders` from the WAL ([`crate::patterns::cdc`]) and publishes one event per
//! row, with an event id derived from the row (UUID v5 of its op), so every
//! replay carries the same id.

use super::{CdcEvent, CdcPattern, Row, Source};
use crate::runtime::kafka::Envelope;
use crate::{PatternInfo, RelayKind};
use anyhow::{Context, Result};

/// Registry entry.
pub const INFO: PatternInfo = PatternInfo {
    scaling: crate::Scaling::OneRelay("one replication slot has one reader"),
    controls: &[
        super::CONFIRM_EARLY_LOSES,
        super::NEW_SLOT_ON_RESTART,
        super::CONFIRM_LAST_CHANGE,
    ],
    relay: RelayKind::Process,
    // The drain marker: 0 only once everything before the previous call's
    // marker is acknowledged (`Tailer::backlog`).
    exact_backlog: true,
    // Records go out at once: see `TUNED_PRODUCER`.
    tuned: crate::patterns::outbox::TUNED_PRODUCER,
    streamed_tables: &["orders"],
    ..PatternInfo::new(
        "cdc-logical",
        "business rows streamed from the WAL by logical replication (pgoutput); no event code in the service",
        |ctx| CdcPattern::build(SOURCE, "", |_| Vec::new(), ctx),
    )
};

/// What the tailer streams: inserts into `orders`.
pub const SOURCE: Source = Source {
    table: "orders",
    name: "logical",
    to_event: order_event,
};

/// Namespace of the event ids derived from rows.
const EVENT_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6475_616c_6368_6563_6b2d_6364_632d_0001);

/// The event of one order row; its id depends on the row alone.
fn order_event(row: &Row<'_>) -> Result<CdcEvent> {
    let op: i64 = row.required("op")?.parse().context("orders.op")?;
    let seq: i64 = row.required("seq")?.parse().context("orders.seq")?;
    let key = row.required("key")?;
    // A row written before the `idx` column existed is the op's only event.
    let index: u32 = row.text("idx").map_or(Ok(0), |i| i.parse()).context("orders.idx")?;
    // Named by the row, so a redelivery carries the same id (index 0 keeps
    // the name of the one-event ops before multi-event ops).
    let name = match index {
        0 => format!("orders/{op}"),
        i => format!("orders/{op}/{i}"),
    };
    let event = uuid::Uuid::new_v5(&EVENT_NAMESPACE, name.as_bytes()).to_string();
    let envelope = Envelope {
        op,
        seq,
        key: key.clone(),
        event: event.clone(),
        payload: row.text("payload").unwrap_or_default(),
        index,
    };
    Ok(CdcEvent {
        key,
        value: envelope.to_json(),
        event_id: event,
    })
}
