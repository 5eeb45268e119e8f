//! What the consumer-side and two-phase patterns must show (listen-to-yourself, kafka-first,
//! two-phase), each a real run against real Postgres, Kafka and Toxiproxy
//! started by the harness, through the `dualcheck` binary exactly as a user
//! runs it. Runs are serialized: each starts its own environment, and two at
//! once would not fit two cores.

mod run_support;

use run_support::{count, run_json, ONE_AT_A_TIME};
use serde_json::Value;
use std::path::Path;

const FAULTS: &str = "kafka-partition,pg-partition,relay-kill,crash-after-commit";

/// Runs `dualcheck run --json` with `args` and extra environment; returns
/// (exit code, result object) and checks the run directory's reports.
fn run(name: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, Value) {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (code, v, _) = run_json(name, args, env);
    let run_dir = Path::new(v["run_dir"].as_str().expect("run_dir in the results"));
    let html = std::fs::read_to_string(run_dir.join("report.html")).expect("report.html in the run directory");
    let verdict = if v["valid"] == true { ">VALID<" } else { ">INVALID<" };
    assert!(
        html.contains(verdict) && html.contains("stale_read"),
        "{name}: report.html"
    );
    if v.get("in_doubt").is_some() {
        assert!(html.contains("in doubt"), "{name}: report.html shows in_doubt");
    }
    eprintln!(
        "{name}: valid={} anomalies={} reads={} ops={} in_doubt={}",
        v["valid"], v["anomalies"], v["reads"], v["ops"], v["in_doubt"]
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
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["drained"], true, "{v}");
    assert_eq!(count(&v, "lost_commit"), 0, "{v}");
    assert_eq!(count(&v, "stale_read"), 0, "{v}");
    let ok = v["ops"]["ok"].as_u64().unwrap();
    assert!(ok > 100, "the workload ran: {v}");
    // Reads are on by default for these patterns: one per acknowledged op
    // (a read cut by a fault is not recorded).
    assert!(v["reads"].as_u64().unwrap() * 10 >= ok * 8, "{v}");
}

/// Without the cache, reads go to the orders table, which the consumer fills
/// asynchronously: reads right after ok are stale.
fn assert_stale_without_cache(name: &str, implementation: &str) {
    let (code, v) = run(
        name,
        &["--impl", implementation, "--duration", "8s", "--seed", "3"],
        &[("DUALCHECK_READ_CACHE", "off")],
    );
    assert_eq!(code, 1, "{v}");
    assert!(count(&v, "stale_read") > 0, "{v}");
    assert_eq!(v["violations"], serde_json::json!(["stale_read"]), "{v}");
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
    );
    let d = &v["in_doubt"];
    let unresolved = d["unresolved"].as_u64().unwrap_or_else(|| panic!("no in_doubt: {v}"));
    assert!(unresolved > 0, "{v}");
    assert!(d["max_unresolved_ms"].as_u64().unwrap() > 0, "{v}");
    // The recovery resolved every leftover: the database ends clean.
    assert_eq!(
        d["recovered_commit"].as_u64().unwrap() + d["recovered_rollback"].as_u64().unwrap(),
        unresolved,
        "{v}"
    );
    // Events visible for rows that are not (read before the recovery).
    assert!(count(&v, "phantom") > 0, "{v}");
}
