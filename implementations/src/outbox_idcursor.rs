//! `outbox-idcursor`: one relay that remembers the highest id it published and
//! reads `WHERE id > $last ORDER BY id` — the common real-world bug: a
//! transaction that took a lower id but commits after a higher one was
//! published is skipped forever. A negative control (long transactions in the
//! workload expose it). See [`crate::outbox::cursor_relay`].

use crate::outbox::{OutboxPattern, OutboxRelay};
use crate::{PatternInfo, RelayKind, ORDERS_COMMITTED_SQL};

/// Registry entry.
pub const INFO: PatternInfo = PatternInfo {
    name: "outbox-idcursor",
    about: "outbox relay reading WHERE id > last_id (a real, common bug)",
    expected: "negative control: must show `lost` under concurrent (long) transactions",
    committed_sql: ORDERS_COMMITTED_SQL,
    relay: RelayKind::InProcess,
    reads_by_default: false,
    prepares_transactions: false,
    streamed_tables: &[],
    latency_reference: false,
    build: |ctx| OutboxPattern::build(&INFO, OutboxRelay::IdCursor, ctx),
};
