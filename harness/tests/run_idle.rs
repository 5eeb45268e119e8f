//! `--idle-window` and `--max-retained-wal`, through the `dualcheck` binary on
//! real services: while the workload leaves `cdc-logical`'s table idle and the
//! harness writes filler rows to an uncaptured table, the WAL its slot retains
//! grows (Postgres moves a logical slot's restart point only at its periodic
//! running-transactions records, even though the tailer confirms on the
//! server's keepalives: docs/faults.md#idle-window), and a limit below the
//! figure makes the run invalid with `wal_retained` alone; Debezium with
//! heartbeats off retains it the same way.

use serde_json::Value;

mod run_support;
use run_support::{count, run};

const MIB: i64 = 1 << 20;

/// The largest retained WAL of any slot over the samples of `ops.jsonl` whose
/// time satisfies `when`.
fn max_retained(samples: &[Value], when: impl Fn(i64) -> bool) -> i64 {
    samples
        .iter()
        .filter(|s| when(s["time"].as_i64().unwrap()))
        .flat_map(|s| s["slots"].as_object().unwrap().values().map(|b| b.as_i64().unwrap()))
        .max()
        .unwrap_or(0)
}

/// The largest retained WAL before the run's idle window and during it (the
/// window from the results, which the history records; the samples from `ops.jsonl`).
fn retained_before_and_during_the_window(v: &Value) -> (i64, i64) {
    let window = v["faults"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["fault"] == "idle-window")
        .unwrap_or_else(|| panic!("an idle-window window in the results: {v}"));
    let (start, stop) = (window["start"].as_i64().unwrap(), window["stop"].as_i64().unwrap());
    let run_dir = std::path::Path::new(v["run_dir"].as_str().unwrap());
    let samples: Vec<Value> = std::fs::read_to_string(run_dir.join("ops.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (
        max_retained(&samples, |t| t < start),
        max_retained(&samples, |t| t >= start && t <= stop),
    )
}

#[test]
fn cdc_logical_retains_wal_during_an_idle_window_and_the_limit_judges_it() {
    let (code, v) = run(
        "idle-cdc-logical",
        &[
            "--impl",
            "cdc-logical",
            "--duration",
            "16s",
            "--idle-window",
            "8s",
            "--max-retained-wal",
            "2MiB",
        ],
    );
    assert_eq!(code, 1, "a slot over the limit makes the run invalid: {v}");
    assert_eq!(v["violations"], serde_json::json!(["wal_retained"]), "{v}");
    assert!(count(&v, "wal_retained") > 0 && count(&v, "lost") == 0, "{v}");
    assert_eq!(v["max_retained_wal"], 2 * MIB, "{v}");
    assert_eq!(
        (
            v["idle_window"]["start_s"].as_f64(),
            v["idle_window"]["stop_s"].as_f64()
        ),
        (Some(4.0), Some(12.0))
    );
    let detail = v["examples"]["wal_retained"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("over --max-retained-wal 2.0 MiB") && detail.contains(" s slot "),
        "{detail}"
    );

    // The window is in the history (a band of the report).
    let (before, during) = retained_before_and_during_the_window(&v);
    eprintln!("retained WAL: before the window {before} B, during it {during} B");
    assert!(
        during > before + 2 * MIB,
        "the retained WAL grows during the window: {before} -> {during}"
    );
    assert!(v["ops_max"]["wal_retained_bytes"].as_i64().unwrap() >= during, "{v}");

    let run_dir = std::path::Path::new(v["run_dir"].as_str().unwrap());
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert!(
        html.contains("idle-window") && html.contains("over --max-retained-wal"),
        "the report shows the window and the explanation"
    );
}

/// Debezium with heartbeats off (its default) under an idle window: the WAL
/// its slot retains grows while its tables are idle, as cdc-logical's does
/// (Postgres' restart points, docs/faults.md#idle-window), and the run is
/// valid without a limit. Debezium confirms positions with heartbeats off
/// too, so `unconfirmed` stays bounded; that is measured, not asserted here.
#[test]
fn debezium_without_heartbeats_retains_wal_during_an_idle_window() {
    let (code, v) = run(
        "idle-debezium",
        &["--impl", "debezium", "--duration", "20s", "--idle-window", "12s"],
    );
    assert_eq!(code, 0, "valid without a limit: {v}");
    let (before, during) = retained_before_and_during_the_window(&v);
    eprintln!("debezium retained WAL: before the window {before} B, during it {during} B");
    assert!(
        during > before + 2 * MIB,
        "the retained WAL grows during the window: {before} -> {during}"
    );
}
