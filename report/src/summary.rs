//! The readable text verdicts: of a check (`dualcheck check`) and of a run
//! (`dualcheck run`, [`RunOutcome::summary`]).
//!
//! The facts are worded by [`crate::render::phrases`], as the report words them.

use crate::outcome::RunOutcome;
use crate::render::phrases::{self, Standing};
use checkers::CheckResult;

/// The readable verdict of a check (what `dualcheck check` prints).
pub fn check_result(r: &CheckResult) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{}{}", phrases::verdict_line(r), phrases::not_in_effect(r));
    if let Some(reason) = &r.reason {
        let _ = writeln!(out, "why unknown: {reason}");
    }
    let _ = writeln!(out, "ops: {}", phrases::op_counts(r));
    let _ = writeln!(
        out,
        "deliveries: {}   reads: {}   lines: {}",
        r.deliveries, r.reads, r.lines
    );
    if r.multi_event_ops > 0 {
        // Ops of several events: what was to be delivered, and how often a
        // transaction's events reached the topic mixed with another's.
        let _ = writeln!(
            out,
            "events: {} expected of ops ok or committed; ops of several events: {}, interleaved with another op's: {}",
            r.events_expected, r.multi_event_ops, r.interleaved_ops
        );
    }
    let _ = writeln!(out, "anomalies:");
    for &kind in checkers::Anomaly::ALL {
        let n = r.anomalies.get(kind);
        let standing = Standing::of(r, kind);
        let mark = match (standing, standing.note()) {
            (Standing::Violation, Some(note)) => format!("  <- {note}"),
            (_, Some(note)) => format!("  ({note})"),
            (_, None) => String::new(),
        };
        let _ = writeln!(out, "  {:<29} {n:>8}{mark}", kind.name());
    }
    let _ = writeln!(
        out,
        "commit-to-first-delivery latency: {}",
        phrases::latency(r.latency_ns.as_ref())
    );
    if let Some(n) = r.delivered_after_restart {
        let _ = writeln!(out, "after the restart: {}", phrases::delivered_after_restart(n));
    }
    let peak = r.unseen_per_second.iter().copied().max().unwrap_or(0);
    let last = r.unseen_per_second.last().copied().unwrap_or(0);
    let _ = writeln!(
        out,
        "unseen (acknowledged, not yet delivered): peak {peak}, at the end {last}"
    );
    if !r.faults.is_empty() || !r.failed_faults.is_empty() {
        let _ = writeln!(out, "faults:");
        for w in &r.faults {
            let stop = w
                .stop
                .map_or(phrases::NEVER_HEALED.to_string(), |s| format!("{:.2}s", s as f64 / 1e9));
            let _ = writeln!(out, "  {:<18} {:.2}s .. {stop}", w.fault, w.start as f64 / 1e9);
        }
        for f in &r.failed_faults {
            let _ = writeln!(
                out,
                "  {:<18} {:.2}s FAILED, {}",
                f.fault,
                f.time as f64 / 1e9,
                phrases::never_took_effect(f.error.as_deref())
            );
        }
    }
    for (kind, list) in &r.examples {
        let _ = writeln!(out, "examples of {kind}:");
        for e in list {
            let trail = e.trail.as_ref().map(record::trails::one_line);
            let bare = checkers::Example {
                trail: None,
                ..e.clone()
            };
            let _ = writeln!(out, "  {}", serde_json::to_string(&bare).expect("examples serialize"));
            if let Some(t) = trail {
                let _ = writeln!(out, "    trail: {t}");
            }
        }
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}

/// The readable verdict of a run (what `dualcheck run` prints): the run's
/// figures, the check's verdict, then what went wrong around it.
pub fn run_outcome(o: &RunOutcome) -> String {
    let mut s = format!(
        "{} with faults [{}], seed {}, {:.1} s: {:.1} ok ops/s\n",
        o.implementation,
        o.faults.join(","),
        o.seed,
        o.duration_s,
        o.throughput_ok_per_s
    );
    s.push_str(&check_result(&o.result));
    // A seed's schedule draws from the faults listed: say which it left out,
    // or a run that never injected one reads as if it survived it.
    let unscheduled: Vec<&str> = o
        .faults
        .iter()
        .map(String::as_str)
        .filter(|f| {
            !o.result.faults.iter().any(|w| w.fault == *f) && !o.result.failed_faults.iter().any(|w| w.fault == *f)
        })
        .collect();
    if !unscheduled.is_empty() {
        s.push_str(&format!(
            "not in this seed's schedule: {} (a schedule draws from the faults listed; another --seed or a shorter list runs them)\n",
            unscheduled.join(", ")
        ));
    }
    if !o.drained {
        s.push_str(&format!("warning: {}\n", phrases::DRAIN_TIMED_OUT));
    }
    if let Some(n) = o.parked.filter(|&n| n > 0) {
        s.push_str(&format!("parked: {}\n", phrases::parked(n)));
    }
    if !o.nemesis_errors.is_empty() {
        s.push_str(&format!(
            "nemesis errors ({}): faults that did not start or heal as scheduled\n",
            o.nemesis_errors.len()
        ));
    }
    for e in &o.nemesis_errors {
        s.push_str(&format!("  nemesis: {e}\n"));
    }
    if let Some(d) = &o.in_doubt {
        s.push_str(&format!("in doubt: {}\n", phrases::in_doubt(d)));
        for e in &d.recovery_errors {
            s.push_str(&format!("in-doubt recovery: {e}\n"));
        }
    }
    s.push_str(&format!("run directory: {}\n", o.run_dir.display()));
    s
}

impl RunOutcome {
    /// The readable verdict (what `dualcheck run` prints).
    pub fn summary(&self) -> String {
        run_outcome(self)
    }

    /// Panics with the verdict and the run directory unless the history is valid.
    #[track_caller]
    pub fn assert_valid(&self) {
        assert!(self.result.valid, "dualcheck found anomalies:\n{}", self.summary());
    }
}
