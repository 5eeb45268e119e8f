//! In-doubt transactions as the run's results hold them: what a pattern that
//! prepares transactions (`PREPARE TRANSACTION`) left unresolved, and how
//! the harness resolved it (the polling and the recovery are the run
//! crate's `in_doubt`).

use serde::{Deserialize, Serialize};

/// What the run's results say about prepared transactions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InDoubt {
    /// Prepared transactions still unresolved after healing and draining (left in doubt).
    pub unresolved: u64,
    /// Longest time one prepared transaction stayed unresolved, ms (polled every 200 ms;
    /// leftovers count until the recovery).
    pub max_unresolved_ms: u64,
    /// Distinct prepared transactions the poller saw (short-lived ones are mostly missed).
    pub prepared_seen: u64,
    /// Leftovers the recovery committed (their event was delivered).
    pub recovered_commit: u64,
    /// Leftovers the recovery rolled back (no delivery of their event).
    pub recovered_rollback: u64,
    /// Recovery statements that failed (the database may not be clean).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovery_errors: Vec<String>,
}
