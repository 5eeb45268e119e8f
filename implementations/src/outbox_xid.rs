//! `outbox-xid`: the cursor relay made correct (as watermill-sql does): rows are
//! stamped with `pg_current_xact_id()`, the relay reads only rows whose
//! transaction id is below `pg_snapshot_xmin(pg_current_snapshot())` — every
//! such transaction has ended — in (xid, id) order, with a cursor on (xid, id).

use crate::outbox::{OutboxPattern, OutboxRelay};
use crate::{PatternInfo, RelayKind, ORDERS_COMMITTED_SQL};

/// Registry entry.
pub const INFO: PatternInfo = PatternInfo {
    name: "outbox-xid",
    about: "outbox cursor relay on (xid, id), reading only below the snapshot's xmin",
    expected: "valid (duplicates allowed)",
    committed_sql: ORDERS_COMMITTED_SQL,
    relay: RelayKind::InProcess,
    reads_by_default: false,
    prepares_transactions: false,
    streamed_tables: &[],
    latency_reference: false,
    build: |ctx| OutboxPattern::build(&INFO, OutboxRelay::Xid, ctx),
};
