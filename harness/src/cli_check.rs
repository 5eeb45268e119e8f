//! `dualcheck check HISTORY.jsonl [--json] [--exactly-once]`: judge a history
//! recorded by dualcheck or by anything else.

use checkers::{CheckOptions, CheckResult};
use clap::Args;
use std::path::PathBuf;

/// Exit code: the history is valid.
pub const EXIT_VALID: u8 = 0;
/// Exit code: anomalies were found.
pub const EXIT_ANOMALIES: u8 = 1;
/// Exit code: the input (or the run) is unusable.
pub const EXIT_UNUSABLE: u8 = 2;

/// Arguments of `dualcheck check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The history file (JSON Lines, the format in DESIGN.md / README).
    pub history: PathBuf,
    /// Print exactly one JSON object (the results) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also count duplicates (same event id delivered twice) as violations.
    #[arg(long)]
    pub exactly_once: bool,
    /// Examples kept per anomaly kind.
    #[arg(long, default_value_t = 5)]
    pub examples: usize,
}

/// Runs `dualcheck check`; returns the process exit code.
pub fn run(args: CheckArgs) -> u8 {
    let options = CheckOptions {
        exactly_once: args.exactly_once,
        max_examples: args.examples,
    };
    match checkers::check_file(&args.history, options) {
        Ok(result) => {
            if args.json {
                println!("{}", serde_json::to_string(&result).expect("results serialize"));
            } else {
                print!("{}", summary(&result));
            }
            exit_code(&result)
        }
        Err(e) => {
            eprintln!("dualcheck check: unusable history: {e}");
            eprintln!("  (the format is described in README.md, section \"History format\")");
            EXIT_UNUSABLE
        }
    }
}

/// The exit code a result deserves: 0 valid, 1 anomalies.
pub fn exit_code(result: &CheckResult) -> u8 {
    if result.valid {
        EXIT_VALID
    } else {
        EXIT_ANOMALIES
    }
}

fn ms(ns: i64) -> String {
    format!("{:.1} ms", ns as f64 / 1e6)
}

/// A readable multi-line summary of a result.
pub fn summary(r: &CheckResult) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let verdict = if r.valid { "VALID" } else { "INVALID" };
    let _ = writeln!(
        out,
        "{verdict}{}",
        if r.valid {
            String::new()
        } else {
            let names: Vec<&str> = r.violations.iter().map(|a| a.name()).collect();
            format!(": {}", names.join(", "))
        }
    );
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
    if !r.faults.is_empty() {
        let _ = writeln!(out, "faults:");
        for w in &r.faults {
            let stop = w
                .stop
                .map_or("never healed".to_string(), |s| format!("{:.2}s", s as f64 / 1e9));
            let _ = writeln!(out, "  {:<18} {:.2}s .. {stop}", w.fault, w.start as f64 / 1e9);
        }
    }
    for (kind, list) in &r.examples {
        let _ = writeln!(out, "examples of {kind}:");
        for e in list {
            let _ = writeln!(out, "  {}", serde_json::to_string(e).expect("examples serialize"));
        }
    }
    for w in &r.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    out
}
