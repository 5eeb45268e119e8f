//! `outbox-poll`: outbox row in the business transaction; relays (DUALCHECK_RELAYS)
//! own shard groups through advisory locks, claim each key's oldest pending event
//! with `FOR UPDATE SKIP LOCKED`, publish with an idempotent producer, wait for
//! the delivery reports, then delete (or mark) the rows. See [`crate::outbox::shard_relay`].

use crate::outbox::{OutboxPattern, OutboxRelay};
use crate::{PatternInfo, RelayKind, ORDERS_COMMITTED_SQL};

/// Registry entry.
pub const INFO: PatternInfo = PatternInfo {
    name: "outbox-poll",
    about: "transactional outbox; polling relays with FOR UPDATE SKIP LOCKED, sharded by key (DUALCHECK_RELAYS)",
    expected: "valid (duplicates allowed)",
    committed_sql: ORDERS_COMMITTED_SQL,
    relay: RelayKind::InProcess,
    reads_by_default: false,
    prepares_transactions: false,
    streamed_tables: &[],
    latency_reference: false,
    build: |ctx| OutboxPattern::build(&INFO, OutboxRelay::Poll, ctx),
};
