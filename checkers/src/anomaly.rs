//! The anomaly kinds a check can find. Every output (results, summary, JUnit,
//! report, compare table) lists them from [`Anomaly::ALL`], so a new kind added
//! here shows up everywhere, in the same order.

use serde::{Deserialize, Serialize};
use strum::{EnumString, IntoStaticStr, VariantArray};

/// One kind of anomaly. Serialized (JSON, text, JUnit) as its snake_case [`name`](Anomaly::name).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    IntoStaticStr,
    EnumString,
    VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Anomaly {
    /// An op `ok` or committed with no delivery of any of its events.
    Lost,
    /// An op `ok` or committed with some but not all of its events delivered.
    Partial,
    /// An op delivered but not committed.
    Phantom,
    /// A delivery whose op was never invoked, or that names an event index
    /// its op does not publish.
    Unexpected,
    /// An event delivered more than once, always with the same event id.
    Duplicate,
    /// An event delivered with more than one distinct event id.
    DuplicateBeyondIdempotency,
    /// A first delivery of an event with a lower (seq, index) than one
    /// already delivered on its key.
    Reorder,
    /// An op `ok` but not committed.
    LostCommit,
    /// A read that saw an older seq than one acknowledged before it began.
    StaleRead,
    /// A replication slot of the run retained more WAL than `--max-retained-wal`
    /// (judged by the run from its sampled series, not from the history).
    WalRetained,
}

impl Anomaly {
    /// Every kind, in the order the results and reports list them.
    pub const ALL: &'static [Anomaly] = Anomaly::VARIANTS;

    /// The snake_case name used in JSON, text and JUnit (`lost`, `stale_read`, ...).
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// One line saying what the anomaly is.
    pub fn description(self) -> &'static str {
        match self {
            Anomaly::Lost => "an op acknowledged (ok) or committed has no delivery of any of its events",
            Anomaly::Partial => {
                "an op acknowledged (ok) or committed has some but not all of its events delivered (counted per op)"
            }
            Anomaly::Phantom => "an op has a delivery but is not committed",
            Anomaly::Unexpected => {
                "a delivery whose op was never invoked, or naming an event index its op does not publish (counted per delivery)"
            }
            Anomaly::Duplicate => {
                "an event delivered more than once, always with the same event id (an idempotent consumer absorbs it)"
            }
            Anomaly::DuplicateBeyondIdempotency => "an event delivered with more than one distinct event id",
            Anomaly::Reorder => {
                "per key, a first delivery of an event in log order whose (seq, index) is lower than one already delivered"
            }
            Anomaly::LostCommit => "an op acknowledged (ok) is not committed",
            Anomaly::StaleRead => "a read saw an older seq than one acknowledged on its key before the read began",
            Anomaly::WalRetained => {
                "a sample of a replication slot's retained WAL exceeded --max-retained-wal (counted per sample over the limit)"
            }
        }
    }

    /// Whether occurrences make a history invalid: every kind does but
    /// `duplicate`, which counts only when the consumer must see each event
    /// exactly once.
    pub fn is_violation(self, exactly_once: bool) -> bool {
        self != Anomaly::Duplicate || exactly_once
    }
}

impl std::fmt::Display for Anomaly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An anomaly equals its name, so lists of anomalies compare with lists of names.
impl PartialEq<&str> for Anomaly {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_json_and_from_str() {
        let names: Vec<&str> = Anomaly::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(
            names,
            [
                "lost",
                "partial",
                "phantom",
                "unexpected",
                "duplicate",
                "duplicate_beyond_idempotency",
                "reorder",
                "lost_commit",
                "stale_read",
                "wal_retained"
            ]
        );
        for &a in Anomaly::ALL {
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{}\"", a.name()));
            assert_eq!(a.name().parse::<Anomaly>().unwrap(), a);
            assert_eq!(a.to_string(), a.name());
            assert!(!a.description().is_empty());
        }
    }

    #[test]
    fn only_duplicate_depends_on_exactly_once() {
        for &a in Anomaly::ALL {
            assert!(a.is_violation(true));
            assert_eq!(a.is_violation(false), a != Anomaly::Duplicate);
        }
    }
}
