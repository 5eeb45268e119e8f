//! The words dualcheck says a check's facts in, shared by the terminal
//! summary (`summary.rs`) and the run report (`report/html.rs`),
//! so that the same run reads the same on both: the verdict line, faults
//! that never took effect, the op counts, the latency, what an anomaly count
//! means, the drain, parked events and prepared transactions in doubt.
//!
//! This module only formats: it depends on the checkers' results and the
//! in-doubt record, never on the runner or the report, so both can use it
//! without reaching into each other.

use checkers::{Anomaly, CheckResult, Latency, Verdict};
use record::in_doubt::InDoubt;

/// What a fault window shows as its stop when it was never healed.
pub const NEVER_HEALED: &str = "never healed";

/// What the drain's timing out means.
pub const DRAIN_TIMED_OUT: &str = "the drain timed out with events still unpublished";

/// `VALID`, `INVALID` or `UNKNOWN`: the verdict as a headline.
pub fn verdict_word(r: &CheckResult) -> String {
    r.verdict.as_str().to_uppercase()
}

/// The violations' names, `lost, phantom` (empty when there is none).
pub fn violation_names(r: &CheckResult) -> String {
    r.violations.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
}

/// `VALID`, `INVALID: kinds` or `UNKNOWN (incomplete history; ... as if complete)`.
pub fn verdict_line(r: &CheckResult) -> String {
    let names = violation_names(r);
    match r.verdict {
        Verdict::Valid => "VALID".into(),
        Verdict::Invalid => format!("INVALID: {names}"),
        Verdict::Unknown => format!(
            "UNKNOWN (incomplete history: the run was interrupted){}",
            if names.is_empty() {
                String::new()
            } else {
                format!("; as if complete: {names}")
            }
        ),
    }
}

/// What goes next to the verdict when some fault never took effect:
/// `  (2 faults never took effect: pg-pause, kafka-reset)`, else nothing.
pub fn not_in_effect(r: &CheckResult) -> String {
    if r.failed_faults.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = r.failed_faults.iter().map(|f| f.fault.as_str()).collect();
    format!(
        "  ({} fault{} never took effect: {})",
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        names.join(", ")
    )
}

/// Why a fault start failed, as its row says it: `never took effect: ERROR`.
pub fn never_took_effect(error: Option<&str>) -> String {
    format!("never took effect: {}", error.unwrap_or("no reason given"))
}

/// The op counts: `N invoked, N ok, N fail, N info, N pending; N committed (from ...)`.
pub fn op_counts(r: &CheckResult) -> String {
    let o = &r.ops;
    format!(
        "{} invoked, {} ok, {} fail, {} info, {} pending; {} committed (from {})",
        o.invoked, o.ok, o.fail, o.info, o.pending, o.committed, r.committed_from
    )
}

/// Milliseconds with two decimals: sub-millisecond differences between
/// patterns (1.2 against 1.25 ms) are what a tuned run is about.
fn ms(ns: i64) -> String {
    format!("{:.2} ms", ns as f64 / 1e6)
}

/// Commit-to-first-delivery latency: `p50 .. ms, p95 .., p99 .., max .. over N ops`,
/// or that no op was both acknowledged and delivered.
pub fn latency(l: Option<&Latency>) -> String {
    match l {
        Some(l) => format!(
            "p50 {}, p95 {}, p99 {}, max {} over {} ops",
            ms(l.p50),
            ms(l.p95),
            ms(l.p99),
            ms(l.max),
            l.count
        ),
        None => "no op was both acknowledged and delivered".into(),
    }
}

/// What one anomaly's count means for the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// It made the history invalid.
    Violation,
    /// It occurred and is tolerated (duplicates without `--exactly-once`).
    Tolerated,
    /// None occurred.
    Clean,
}

impl Standing {
    /// Of `kind` in `r`.
    pub fn of(r: &CheckResult, kind: Anomaly) -> Standing {
        if r.violations.contains(&kind) {
            Standing::Violation
        } else if r.anomalies.get(kind) > 0 {
            Standing::Tolerated
        } else {
            Standing::Clean
        }
    }

    /// What it says next to the count (`None` for a clean count).
    pub fn note(self) -> Option<&'static str> {
        match self {
            Standing::Violation => Some("violation"),
            Standing::Tolerated => Some("absorbed by an idempotent consumer"),
            Standing::Clean => None,
        }
    }
}

/// Parked events: `N event(s) the implementation gave up publishing on purpose (...)`.
pub fn parked(n: u64) -> String {
    format!(
        "{n} event(s) the implementation gave up publishing on purpose (their ops count as lost; the trails say which and why)"
    )
}

/// Ops delivered only once the implementation restarted before the drain
/// (`--restart-before-drain`).
pub fn delivered_after_restart(n: u64) -> String {
    if n == 0 {
        "none: everything delivered was delivered before the restart".to_string()
    } else {
        format!(
            "{n} op(s) delivered only after the implementation restarted before the drain (held until a restart: stuck, not lost)"
        )
    }
}

/// Prepared transactions left in doubt and what their recovery did.
pub fn in_doubt(d: &InDoubt) -> String {
    format!(
        "{} prepared transaction(s) left unresolved, longest unresolved {} ms ({} seen; recovery committed {}, rolled back {})",
        d.unresolved, d.max_unresolved_ms, d.prepared_seen, d.recovered_commit, d.recovered_rollback
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fault_is_named_next_to_the_verdict() {
        let mut r = CheckResult::default();
        assert_eq!(not_in_effect(&r), "");
        r.failed_faults.push(checkers::results::FailedFault {
            fault: "pg-pause".into(),
            time: 1,
            error: None,
        });
        assert_eq!(not_in_effect(&r), "  (1 fault never took effect: pg-pause)");
        assert_eq!(never_took_effect(None), "never took effect: no reason given");
    }

    #[test]
    fn latency_in_milliseconds() {
        let l = Latency {
            count: 3,
            p50: 1_000_000,
            p95: 2_500_000,
            p99: 3_000_000,
            max: 4_000_000,
        };
        assert_eq!(
            latency(Some(&l)),
            "p50 1.00 ms, p95 2.50 ms, p99 3.00 ms, max 4.00 ms over 3 ops"
        );
        assert_eq!(latency(None), "no op was both acknowledged and delivered");
    }
}
