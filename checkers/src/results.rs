//! What a check concludes: anomaly counts, examples a person can go and look
//! at, latency quantiles and the unseen series. Serialized as the JSON object
//! of the `dualcheck check --json` contract (and as `results.json`).

use crate::anomaly::Anomaly;
use crate::history::Outcome;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How many times each anomaly occurred, one field per [`Anomaly`] (same
/// names, same order; definitions in docs/anomalies.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anomalies {
    /// Ops `ok` or committed with no delivery of any of their events.
    pub lost: u64,
    /// Ops `ok` or committed with some but not all of their events
    /// delivered (absent in results written before the kind existed).
    #[serde(default)]
    pub partial: u64,
    /// Ops delivered but not committed.
    pub phantom: u64,
    /// Deliveries whose op was never invoked, or naming an event index
    /// their op does not publish.
    pub unexpected: u64,
    /// Events delivered more than once, always with the same event id.
    pub duplicate: u64,
    /// Events delivered with more than one distinct event id.
    pub duplicate_beyond_idempotency: u64,
    /// First deliveries of events with a lower (seq, index) than one already seen on their key.
    pub reorder: u64,
    /// Ops `ok` but not committed.
    pub lost_commit: u64,
    /// Reads that saw an older seq than one acknowledged before they started.
    pub stale_read: u64,
    /// Samples of a replication slot's retained WAL over `--max-retained-wal`
    /// (absent in results written before the kind existed).
    #[serde(default)]
    pub wal_retained: u64,
}

impl Anomalies {
    /// The count of one anomaly.
    pub fn get(&self, kind: Anomaly) -> u64 {
        match kind {
            Anomaly::Lost => self.lost,
            Anomaly::Partial => self.partial,
            Anomaly::Phantom => self.phantom,
            Anomaly::Unexpected => self.unexpected,
            Anomaly::Duplicate => self.duplicate,
            Anomaly::DuplicateBeyondIdempotency => self.duplicate_beyond_idempotency,
            Anomaly::Reorder => self.reorder,
            Anomaly::LostCommit => self.lost_commit,
            Anomaly::StaleRead => self.stale_read,
            Anomaly::WalRetained => self.wal_retained,
        }
    }

    /// The count of one anomaly, to change.
    pub fn get_mut(&mut self, kind: Anomaly) -> &mut u64 {
        match kind {
            Anomaly::Lost => &mut self.lost,
            Anomaly::Partial => &mut self.partial,
            Anomaly::Phantom => &mut self.phantom,
            Anomaly::Unexpected => &mut self.unexpected,
            Anomaly::Duplicate => &mut self.duplicate,
            Anomaly::DuplicateBeyondIdempotency => &mut self.duplicate_beyond_idempotency,
            Anomaly::Reorder => &mut self.reorder,
            Anomaly::LostCommit => &mut self.lost_commit,
            Anomaly::StaleRead => &mut self.stale_read,
            Anomaly::WalRetained => &mut self.wal_retained,
        }
    }

    /// The anomalies that make a history invalid, given the check's options, in [`Anomaly::ALL`] order.
    pub fn violations(&self, exactly_once: bool) -> Vec<Anomaly> {
        Anomaly::ALL
            .iter()
            .copied()
            .filter(|&k| k.is_violation(exactly_once) && self.get(k) > 0)
            .collect()
    }
}

/// Sums counts (over the runs of a comparison).
impl std::ops::AddAssign<&Anomalies> for Anomalies {
    fn add_assign(&mut self, other: &Anomalies) {
        for &k in Anomaly::ALL {
            *self.get_mut(k) += other.get(k);
        }
    }
}

/// One delivery of an op, where to find it in Kafka.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRef {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// When the observer read it, ns since the run started.
    pub time: i64,
}

/// One occurrence of an anomaly, with what a person needs to go and look.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// The op, when the anomaly concerns one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<u64>,
    /// Its key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its seq on the key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// How the op completed (`None`: no completion recorded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// Whether the op counts as committed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub committed: Option<bool>,
    /// Event ids delivered for the op.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
    /// How many times it was delivered.
    pub deliveries: u64,
    /// Its first delivery in log order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_delivery: Option<DeliveryRef>,
    /// When it was invoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoke_time: Option<i64>,
    /// When it completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub complete_time: Option<i64>,
    /// Anything specific to the anomaly (for a reorder: what it came after).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// How it came about, gathered by the runner (the check alone leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trail: Option<Trail>,
}

/// The trail of an example: everything a person needs to explain it, in one
/// place (docs/results.md#trail).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trail {
    /// The op the trail follows: the example's op, or for a `stale_read` the
    /// op whose seq the read should have seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<u64>,
    /// The op's history lines (for a `stale_read`, the read's line too), in
    /// file order, as written; a few at most.
    pub history: Vec<serde_json::Value>,
    /// The fault windows active at some moment between the op's invoke and the
    /// end of the history.
    pub faults: Vec<FaultWindow>,
    /// The implementation's own account of the op (`GET /trace/{op}`), when it
    /// gave one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<serde_json::Value>,
    /// Why there is no `trace` (not served, the process did not answer, not asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_missing: Option<String>,
    /// The implementation's log lines that name the op or one of its event ids.
    pub logs: Vec<LogLine>,
    /// The implementation parked the op's event (its trace says `"state":"parked"`):
    /// it gave up publishing it, on purpose.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub parked: bool,
}

/// One line of an implementation's log, named by a trail.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    /// The log file's name in the run directory (`app.log`, `relay.log`).
    pub file: String,
    /// Line number, from 1.
    pub line: u64,
    /// The line (long lines are cut).
    pub text: String,
}

/// Quantiles of commit-to-first-delivery latency, in nanoseconds.
///
/// Measured from the op's acknowledgment (`ok`, the moment its commit is
/// known) to the observer's earliest delivery; a delivery seen before the
/// acknowledgment counts as 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    /// Ops measured (acknowledged and delivered).
    pub count: u64,
    /// Median.
    pub p50: i64,
    /// 95th percentile.
    pub p95: i64,
    /// 99th percentile.
    pub p99: i64,
    /// Maximum.
    pub max: i64,
}

impl Latency {
    /// Nearest-rank quantiles of `samples` (reordered here); `None` when empty.
    pub fn from_samples(samples: &mut [i64]) -> Option<Latency> {
        if samples.is_empty() {
            return None;
        }
        // Each quantile is the value a sort would put at its rank, found by
        // selection (linear, where a sort is not): each in the part above
        // the one before, as the ranks only grow.
        let (len, mut from) = (samples.len(), 0);
        let mut q = |p: f64| {
            let at = rank(len, p) - 1;
            let value = *samples[from..].select_nth_unstable(at - from).1;
            from = at;
            value
        };
        Some(Latency {
            count: len as u64,
            p50: q(0.50),
            p95: q(0.95),
            p99: q(0.99),
            max: q(1.0),
        })
    }
}

/// The nearest-rank `q`-quantile (0 < q <= 1) of `sorted` (ascending):
/// the smallest value with at least a fraction `q` of the samples at or below it.
/// `None` when there are no samples.
pub fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    sorted.get(rank(sorted.len(), q) - 1).copied()
}

/// The 1-based rank of the nearest-rank `q`-quantile among `len` samples (1 when there are none).
fn rank(len: usize, q: f64) -> usize {
    ((q * len as f64).ceil() as usize).clamp(1, len.max(1))
}

/// How many ops each outcome had.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpCounts {
    /// Ops invoked.
    pub invoked: u64,
    /// Acknowledged.
    pub ok: u64,
    /// Certainly not applied.
    pub fail: u64,
    /// Outcome unknown.
    pub info: u64,
    /// Invoked with no completion line (the run was cut short).
    pub pending: u64,
    /// Counted as committed (from `committed` lines, or `ok` when there are none).
    pub committed: u64,
}

/// A fault's active window, from the nemesis lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultWindow {
    /// Fault name.
    pub fault: String,
    /// Start, ns since the run started.
    pub start: i64,
    /// Stop (`None`: never healed in the history).
    pub stop: Option<i64>,
    /// Time to recover, ns: from the stop until every op acknowledged before
    /// the stop had been delivered (0 when all already were). `None`: some
    /// such op was never delivered (the pattern never recovered), or the
    /// window was never healed.
    #[serde(default)]
    pub recovery_ns: Option<i64>,
}

/// Serde's default of [`CheckResult::per_key_order`]: results written
/// before it existed judged order.
fn judged() -> bool {
    true
}

/// A fault that was to start but never took effect (a `nemesis` line of phase `failed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedFault {
    /// Fault name.
    pub fault: String,
    /// When the start was given up, ns since the run started.
    pub time: i64,
    /// Why it never took effect (`None`: the line gives no reason).
    pub error: Option<String>,
}

/// The three verdicts (Jepsen's): the history satisfies the properties, it
/// violates one, or it cannot be judged because it is incomplete.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// No violation.
    Valid,
    /// At least one violation.
    #[default]
    Invalid,
    /// The history is incomplete (a `begin` line and no `end` line: the run was
    /// interrupted), so what looks like an anomaly may only be what had not happened yet.
    Unknown,
}

impl Verdict {
    /// The word of the `verdict` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
            Verdict::Unknown => "unknown",
        }
    }
}

/// Everything a check concludes. The top-level fields `verdict`, `valid` and
/// `anomalies` are the `check --json` contract; the rest is extra.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// Valid, invalid, or unknown (an incomplete history).
    #[serde(default)]
    pub verdict: Verdict,
    /// Why the verdict is `unknown` (`None` otherwise).
    #[serde(default)]
    pub reason: Option<String>,
    /// Whether `verdict` is valid: no violation, and the history is complete
    /// or not marked (`false` for `unknown`).
    pub valid: bool,
    /// Counts per anomaly.
    pub anomalies: Anomalies,
    /// The anomalies that made the history invalid, in [`Anomaly::ALL`] order.
    pub violations: Vec<Anomaly>,
    /// When the earliest event of a violation happened, ns since the run
    /// started: the invoke of the first lost, partial, phantom, duplicated or
    /// lost-commit op, the first reordered or unexpected delivery, the start
    /// of the first stale read (`None`: valid). How soon a bug shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_violation_ns: Option<i64>,
    /// Whether duplicates counted as violations.
    pub exactly_once: bool,
    /// Whether per-key order was judged (`reorder`): `false` when the
    /// records' key is not the business key, so Kafka orders nothing per key.
    #[serde(default = "judged")]
    pub per_key_order: bool,
    /// Where "committed" came from: `committed lines` or `ok (no committed lines)`.
    pub committed_from: String,
    /// Op counts by outcome.
    pub ops: OpCounts,
    /// Delivery lines read.
    pub deliveries: u64,
    /// Invoked ops whose invoke names more than one event (a figure, not an
    /// anomaly; absent in results written before ops had several events).
    #[serde(default)]
    pub multi_event_ops: u64,
    /// Committed ops of several events with a record of another op between
    /// the first and the last of their events in one partition (events in
    /// offset order, each at its first delivery in log order): not published
    /// together. A figure, not an anomaly.
    #[serde(default)]
    pub interleaved_ops: u64,
    /// Events the ops `ok` or committed publish, summed (one per one-event
    /// op): what should have been delivered at least once.
    #[serde(default)]
    pub events_expected: u64,
    /// Read lines checked for staleness.
    pub reads: u64,
    /// Commit-to-first-delivery latency (`None`: nothing was both acknowledged and delivered).
    pub latency_ns: Option<Latency>,
    /// Acknowledged but not yet delivered ops at the end of each second of the run.
    pub unseen_per_second: Vec<u64>,
    /// Fault windows from the nemesis lines (failed starts excluded).
    pub faults: Vec<FaultWindow>,
    /// Faults that never took effect (`nemesis` lines of phase `failed`), by time.
    #[serde(default)]
    pub failed_faults: Vec<FailedFault>,
    /// `true`: the history has its recorder's `begin` and `end` lines; `false`: a
    /// `begin` line but no `end` line (interrupted); `None`: no such line (another recorder).
    #[serde(default)]
    pub complete: Option<bool>,
    /// With `--restart-before-drain` (a `restart` line): the committed ops
    /// first delivered after that restart — delivered eventually, but only
    /// once the implementation restarted (stuck, not lost). A figure, not an
    /// anomaly; absent without a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_after_restart: Option<u64>,
    /// A few examples of each anomaly that occurred (keyed by name in JSON, in [`Anomaly::ALL`] order).
    pub examples: BTreeMap<Anomaly, Vec<Example>>,
    /// Lines in the history.
    pub lines: u64,
    /// Things worth telling that did not make the history unusable.
    pub warnings: Vec<String>,
}

impl CheckResult {
    /// Adds `count` occurrences of `kind` found outside the history (the
    /// run's sampled series: `wal_retained`), the earliest at `at` (ns since
    /// the run started), with `example`: the counts, examples, violations,
    /// first violation and verdict follow (a valid verdict becomes invalid; an
    /// `unknown` one stays unknown). Nothing changes when `count` is 0.
    pub fn add_finding(&mut self, kind: Anomaly, count: u64, at: i64, example: Example) {
        if count == 0 {
            return;
        }
        *self.anomalies.get_mut(kind) += count;
        self.examples.entry(kind).or_default().push(example);
        self.violations = self.anomalies.violations(self.exactly_once);
        if kind.is_violation(self.exactly_once) {
            self.first_violation_ns = Some(self.first_violation_ns.map_or(at, |t| t.min(at)));
            if self.verdict == Verdict::Valid {
                self.verdict = Verdict::Invalid;
            }
        }
        self.valid = self.verdict == Verdict::Valid;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anomalies_serialize_by_name_and_read_back() {
        let mut r = CheckResult {
            violations: vec![Anomaly::Lost, Anomaly::StaleRead],
            ..CheckResult::default()
        };
        r.anomalies.lost = 1;
        r.anomalies.stale_read = 2;
        r.examples.insert(Anomaly::StaleRead, vec![Example::default()]);
        r.examples.insert(Anomaly::Lost, vec![Example::default()]);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains(r#""violations":["lost","stale_read"]"#), "{json}");
        assert!(
            json.contains(r#""examples":{"lost":[{"deliveries":0}],"stale_read":"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<CheckResult>(&json).unwrap(), r);
        for &k in Anomaly::ALL {
            assert_eq!(serde_json::to_value(r.anomalies).unwrap()[k.name()], r.anomalies.get(k));
        }
    }

    #[test]
    fn violations_follow_the_enum_and_exactly_once() {
        let mut a = Anomalies {
            duplicate: 1,
            reorder: 1,
            ..Anomalies::default()
        };
        assert_eq!(a.violations(false), vec![Anomaly::Reorder]);
        assert_eq!(a.violations(true), vec![Anomaly::Duplicate, Anomaly::Reorder]);
        a += &a.clone();
        assert_eq!((a.duplicate, a.reorder, a.lost), (2, 2, 0));
    }

    #[test]
    fn a_finding_outside_the_history_makes_a_valid_result_invalid_and_keeps_unknown() {
        let mut r = CheckResult {
            verdict: Verdict::Valid,
            valid: true,
            ..CheckResult::default()
        };
        r.add_finding(Anomaly::WalRetained, 0, 5, Example::default());
        assert!(r.valid && r.violations.is_empty());
        r.add_finding(Anomaly::WalRetained, 3, 2_000, Example::default());
        assert_eq!((r.verdict, r.valid), (Verdict::Invalid, false));
        assert_eq!(r.violations, vec![Anomaly::WalRetained]);
        assert_eq!((r.anomalies.wal_retained, r.first_violation_ns), (3, Some(2_000)));
        assert_eq!(r.examples[&Anomaly::WalRetained].len(), 1);
        let mut u = CheckResult {
            verdict: Verdict::Unknown,
            first_violation_ns: Some(10),
            ..CheckResult::default()
        };
        u.add_finding(Anomaly::WalRetained, 1, 50, Example::default());
        assert_eq!(
            (u.verdict, u.valid, u.first_violation_ns),
            (Verdict::Unknown, false, Some(10))
        );
        // Results written before the kinds existed still read back.
        let old = r#"{"lost":0,"phantom":0,"unexpected":0,"duplicate":0,"duplicate_beyond_idempotency":0,"reorder":0,"lost_commit":0,"stale_read":0}"#;
        assert_eq!(serde_json::from_str::<Anomalies>(old).unwrap(), Anomalies::default());
    }

    #[test]
    fn quantile_is_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), Some(50));
        assert_eq!(quantile(&v, 0.99), Some(99));
        assert_eq!(quantile(&v, 1.0), Some(100));
        assert_eq!(quantile(&v, 0.0), Some(1));
        assert_eq!(quantile(&[7i64], 0.95), Some(7));
        assert_eq!(quantile::<u64>(&[], 0.5), None);
    }
}
