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
    /// The events the op's transaction publishes when it is more than one, in
    /// index order (`events[i].index == i`; `events[0]` is on `key` at `seq`).
    /// Empty: one event, index 0, on `key` at `seq` — and the body has no
    /// `events` field, as before multi-event ops existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<OpEvent>,
    /// How the transaction writes its rows (`--write`): left out for one
    /// statement per row, the default.
    #[serde(default, skip_serializing_if = "WriteShape::is_single")]
    pub write: WriteShape,
}

/// One event of a multi-event op: which one, on which key, at which seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpEvent {
    /// Its position among the op's events (0, 1, ...): the `index` its record carries.
    pub index: u32,
    /// The business key it is published on (the record key).
    pub key: String,
    /// The op's position among the ops on that key.
    pub seq: u64,
}

/// How a transaction of several events writes its rows (`--write`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteShape {
    /// One `INSERT` statement per row.
    #[default]
    Single,
    /// One multi-row `INSERT ... VALUES (...), (...)` per table.
    MultiRow,
    /// `COPY ... FROM STDIN` per table: one WAL record may carry several rows.
    Copy,
}

impl WriteShape {
    /// Every shape, in the order `--write` lists them.
    pub const ALL: [WriteShape; 3] = [WriteShape::Single, WriteShape::MultiRow, WriteShape::Copy];

    /// Whether this is the default shape (left out of the op body).
    pub fn is_single(&self) -> bool {
        *self == WriteShape::Single
    }

    /// Its name on the command line and in the op body.
    pub fn name(self) -> &'static str {
        match self {
            WriteShape::Single => "single",
            WriteShape::MultiRow => "multi-row",
            WriteShape::Copy => "copy",
        }
    }
}

impl std::fmt::Display for WriteShape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for WriteShape {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        WriteShape::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| format!("unknown write shape `{s}`; use `single`, `multi-row` or `copy`"))
    }
}

impl Op {
    /// How many events the op publishes (at least 1).
    pub fn event_count(&self) -> usize {
        self.events.len().max(1)
    }

    /// Every event of the op, in index order, one-event ops included.
    pub fn each_event(&self) -> Vec<OpEvent> {
        if self.events.is_empty() {
            vec![OpEvent {
                index: 0,
                key: self.key.clone(),
                seq: self.seq,
            }]
        } else {
            self.events.clone()
        }
    }

    /// Whether the op publishes more than one event.
    pub fn is_multi_event(&self) -> bool {
        self.events.len() > 1
    }
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
        assert_eq!(
            op.each_event(),
            [OpEvent {
                index: 0,
                key: "k3".into(),
                seq: 5
            }]
        );
        assert_eq!(op.write, WriteShape::Single);
    }

    #[test]
    fn a_multi_event_body_names_its_events_and_shape() {
        let body = r#"{"op":1,"key":"k1","seq":0,"events":[{"index":0,"key":"k1","seq":0},{"index":1,"key":"k5","seq":3}],"write":"multi-row"}"#;
        let op: Op = serde_json::from_str(body).unwrap();
        assert_eq!(op.event_count(), 2);
        assert!(op.is_multi_event());
        assert_eq!(op.write, WriteShape::MultiRow);
        assert_eq!(serde_json::to_string(&op).unwrap(), body);
        assert!("copy".parse::<WriteShape>().is_ok());
        assert!("bulk".parse::<WriteShape>().unwrap_err().contains("multi-row"));
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
            events: vec![],
            write: WriteShape::Single,
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
