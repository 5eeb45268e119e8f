//! One business operation, as the runner submits it to an implementation.

use serde::{Deserialize, Serialize};

/// A business operation: "create order `op` for `key`, its `seq`-th on that key".
///
/// Serializes to the body of `POST /ops` (DESIGN.md's black-box contract;
/// `payload`, `abort` and `hold_ms` are extras an implementation may ignore).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Unique within the run.
    pub op: u64,
    /// The business key; one worker owns it, so its ops never overlap.
    pub key: String,
    /// Position of this op among the ops on its key (0, 1, 2, ...).
    pub seq: u64,
    /// Business payload (its size is a workload knob).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub payload: String,
    /// The business transaction aborts on purpose: its event must never be published.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abort: bool,
    /// A long transaction: hold it open this long before committing (exposes id-cursor relays).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub hold_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
