//! What the consumer-side and two-phase patterns must show (listen-to-yourself, kafka-first,
//! two-phase), each a real run against real Postgres, Kafka and Toxiproxy
//! started by the harness, through the `dualcheck` binary exactly as a user
//! runs it. Runs are serialized: each starts its own environment, and two at
//! once would not fit two cores.

use crate::support::runs::run_json;
use checkers::Anomaly;
use dualcheck::runner::RunOutcome;

const FAULTS: &str = "kafka-partition,pg-partition,relay-kill,crash-after-commit";

/// Runs `dualcheck run --json` with `args` and extra environment; returns
/// (exit code, result object) and checks the run directory's reports. A run
/// whose verdict does not hang on its timing (`beside`: a correct pattern's
/// fresh reads, or the stale reads of one without its cache) may overlap one other.
fn run(name: &str, args: &[&str], env: &[(&str, &str)], beside: bool) -> (i32, RunOutcome) {
    let _slots = if beside {
        crate::support::beside_another()
    } else {
        crate::support::alone()
    };
    let (code, v, _) = run_json(name, args, env);
    let html = std::fs::read_to_string(v.run_dir.join("report.html")).expect("report.html in the run directory");
    let verdict = if v.result.valid { ">VALID<" } else { ">INVALID<" };
    assert!(
        html.contains(verdict) && html.contains("stale_read"),
        "{name}: report.html"
    );
    if v.in_doubt.is_some() {
        assert!(html.contains("in doubt"), "{name}: report.html shows in_doubt");
    }
    eprintln!(
        "{name}: valid={} anomalies={:?} reads={} ops={:?} in_doubt={:?}",
        v.result.valid, v.result.anomalies, v.result.reads, v.result.ops, v.in_doubt
    );
    (code, v)
}

/// Valid, drained, every acknowledged op read back with no stale read.
fn assert_valid_with_fresh_reads(name: &str, implementation: &str) {
    let (code, v) = run(
        name,
        &[
            "--impl",
            implementation,
            "--faults",
            FAULTS,
            "--duration",
            "12s",
            "--seed",
            "3",
        ],
        &[],
        true,
    );
    assert_eq!(code, 0, "{v:?}");
    assert!(v.result.valid, "{v:?}");
    assert!(v.drained, "{v:?}");
    assert_eq!(v.result.anomalies.lost_commit, 0, "{v:?}");
    assert_eq!(v.result.anomalies.stale_read, 0, "{v:?}");
    let ok = v.result.ops.ok;
    assert!(ok > 100, "the workload ran: {v:?}");
    // Reads are on by default for these patterns: one per acknowledged op
    // (a read cut by a fault is not recorded).
    assert!(v.result.reads * 10 >= ok * 8, "{v:?}");
}

/// Without the cache, reads go to the orders table, which the consumer fills
/// asynchronously: reads right after ok are stale.
fn assert_stale_without_cache(name: &str, implementation: &str) {
    let (code, v) = run(
        name,
        &["--impl", implementation, "--duration", "8s", "--seed", "3"],
        &[("DUALCHECK_READ_CACHE", "off")],
        true,
    );
    assert_eq!(code, 1, "{v:?}");
    assert!(v.result.anomalies.stale_read > 0, "{v:?}");
    assert_eq!(v.result.violations, [Anomaly::StaleRead], "{v:?}");
}

#[test]
fn listen_to_yourself_is_valid_and_reads_its_writes_under_faults() {
    assert_valid_with_fresh_reads("ly-faults", "listen-to-yourself");
}

#[test]
fn kafka_first_is_valid_and_reads_its_writes_under_faults() {
    assert_valid_with_fresh_reads("kf-faults", "kafka-first");
}

#[test]
fn listen_to_yourself_without_its_cache_reads_stale() {
    assert_stale_without_cache("ly-no-cache", "listen-to-yourself");
}

#[test]
#[ignore = "a verdict-matrix cell: scripts/verdict-matrix runs both reads-without-the-cache controls over 20 seeds (docs/verdicts.md); the suite keeps listen_to_yourself_without_its_cache_reads_stale, the same read path; run it with --ignored"]
fn kafka_first_without_its_cache_reads_stale() {
    assert_stale_without_cache("kf-no-cache", "kafka-first");
}

#[test]
fn two_phase_leaves_transactions_in_doubt_when_it_crashes_after_the_kafka_commit() {
    let (_, v) = run(
        "two-phase-crash",
        &[
            "--impl",
            "two-phase",
            "--faults",
            "crash-after-commit",
            "--duration",
            "12s",
            "--seed",
            "0",
        ],
        &[],
        false,
    );
    let d = v.in_doubt.as_ref().unwrap_or_else(|| panic!("no in_doubt: {v:?}"));
    let unresolved = d.unresolved;
    assert!(unresolved > 0, "{v:?}");
    assert!(d.max_unresolved_ms > 0, "{v:?}");
    // The recovery resolved every leftover: the database ends clean.
    assert_eq!(d.recovered_commit + d.recovered_rollback, unresolved, "{v:?}");
    // Events visible for rows that are not (read before the recovery).
    assert!(v.result.anomalies.phantom > 0, "{v:?}");
}
