//! The readable text verdicts: of a check (`dualcheck check`) and of a run
//! (`dualcheck run`, [`RunOutcome::summary`]).

use crate::runner::RunOutcome;
use checkers::{CheckResult, Verdict};

fn ms(ns: i64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

/// The readable verdict of a check (what `dualcheck check` prints).
pub fn check_result(r: &CheckResult) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{}{}", verdict_line(r), not_in_effect(r));
    if let Some(reason) = &r.reason {
        let _ = writeln!(out, "why unknown: {reason}");
    }
    let o = &r.ops;
    let _ = writeln!(
        out,
        "ops: {} invoked, {} ok, {} fail, {} info, {} pending; {} committed (from {})",
        o.invoked, o.ok, o.fail, o.info, o.pending, o.committed, r.committed_from
    );
    let _ = writeln!(
        out,
        "deliveries: {}   reads: {}   lines: {}",
        r.deliveries, r.reads, r.lines
    );
    let _ = writeln!(out, "anomalies:");
    for &kind in checkers::Anomaly::ALL {
        let n = r.anomalies.get(kind);
        let mark = if r.violations.contains(&kind) {
            "  <- violation"
        } else if n > 0 {
            "  (absorbed by an idempotent consumer)"
        } else {
            ""
        };
        let _ = writeln!(out, "  {:<29} {n:>8}{mark}", kind.name());
    }
    match &r.latency_ns {
        Some(l) => {
            let _ = writeln!(
                out,
                "commit-to-first-delivery latency ({} ops): p50 {}  p95 {}  p99 {}  max {}",
                l.count,
                ms(l.p50),
                ms(l.p95),
                ms(l.p99),
                ms(l.max)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "commit-to-first-delivery latency: no op was both acknowledged and delivered"
            );
        }
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
                .map_or("never healed".to_string(), |s| format!("{:.2}s", s as f64 / 1e9));
            let _ = writeln!(out, "  {:<18} {:.2}s .. {stop}", w.fault, w.start as f64 / 1e9);
        }
        for f in &r.failed_faults {
            let _ = writeln!(
                out,
                "  {:<18} {:.2}s FAILED, never took effect: {}",
                f.fault,
                f.time as f64 / 1e9,
                f.error.as_deref().unwrap_or("no reason given")
            );
        }
    }
    for (kind, list) in &r.examples {
        let _ = writeln!(out, "examples of {kind}:");
        for e in list {
            let trail = e.trail.as_ref().map(crate::trails::one_line);
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

/// `VALID`, `INVALID: kinds` or `UNKNOWN (incomplete history; ... as if complete)`.
pub fn verdict_line(r: &CheckResult) -> String {
    let names: Vec<&str> = r.violations.iter().map(|a| a.name()).collect();
    match r.verdict {
        Verdict::Valid => "VALID".into(),
        Verdict::Invalid => format!("INVALID: {}", names.join(", ")),
        Verdict::Unknown => format!(
            "UNKNOWN (incomplete history: the run was interrupted){}",
            if names.is_empty() {
                String::new()
            } else {
                format!("; as if complete: {}", names.join(", "))
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
    if !o.drained {
        s.push_str("warning: the drain timed out with events still unpublished\n");
    }
    if let Some(n) = o.parked.filter(|&n| n > 0) {
        s.push_str(&format!(
            "parked: the implementation gave up publishing {n} event(s) on purpose (their ops count as lost; the trails say which and why)\n"
        ));
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
        s.push_str(&format!(
            "in doubt: {} prepared transaction(s) left unresolved, longest unresolved {} ms ({} seen; recovery committed {}, rolled back {})\n",
            d.unresolved, d.max_unresolved_ms, d.prepared_seen, d.recovered_commit, d.recovered_rollback
        ));
        for e in &d.recovery_errors {
            s.push_str(&format!("in-doubt recovery: {e}\n"));
        }
    }
    s.push_str(&format!("run directory: {}\n", o.run_dir.display()));
    s
}
