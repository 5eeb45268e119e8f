//! One business operation, as the runner submits it to an implementation: the
//! one definition of the `POST /ops` body (the harness sends it, the built-in
//! implementations read it as `implementations::Op`).

use serde::{Deserialize, Serialize};

/// A business operation: "create order `op` for `key`, its `seq`-th on that key".
///
/// Serializes to the body of `POST /ops` (the black-box contract;
/// `payload`, `abort` and `hold_ms` are extras an implementation may ignore,
/// left out when empty, false or zero, and read as such when absent).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_extras_read_as_empty() {
        let op: Op = serde_json::from_str(r#"{"op":17,"key":"k3","seq":5}"#).unwrap();
        assert_eq!(op.payload, "");
        assert!(!op.abort);
        assert_eq!(op.hold_ms, 0);
    }

    #[test]
    fn extras_are_written_only_when_set() {
        let mut op = Op {
            op: 17,
            key: "k3".into(),
            seq: 5,
            payload: String::new(),
            abort: false,
            hold_ms: 0,
        };
        assert_eq!(serde_json::to_string(&op).unwrap(), r#"{"op":17,"key":"k3","seq":5}"#);
        op.payload = "p".into();
        op.abort = true;
        op.hold_ms = 3;
        assert_eq!(
            serde_json::to_string(&op).unwrap(),
            r#"{"op":17,"key":"k3","seq":5,"payload":"p","abort":true,"hold_ms":3}"#
        );
    }
}
