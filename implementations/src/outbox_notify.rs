//! `outbox-notify`: as `outbox-poll`, but the business transaction also issues
//! `NOTIFY dualcheck_outbox` and the relays wake on it (one LISTEN connection per
//! process), with a fallback poll (DUALCHECK_FALLBACK_POLL_MS) for notifications
//! missed while the listener was disconnected.

use crate::outbox::{OutboxPattern, OutboxRelay};
use crate::{PatternInfo, RelayKind, ORDERS_COMMITTED_SQL};

/// Registry entry.
pub const INFO: PatternInfo = PatternInfo {
    name: "outbox-notify",
    about: "transactional outbox; relays woken by LISTEN/NOTIFY with a fallback poll",
    expected: "valid (duplicates allowed)",
    committed_sql: ORDERS_COMMITTED_SQL,
    relay: RelayKind::InProcess,
    reads_by_default: false,
    prepares_transactions: false,
    streamed_tables: &[],
    latency_reference: false,
    build: |ctx| OutboxPattern::build(&INFO, OutboxRelay::Notify, ctx),
};
