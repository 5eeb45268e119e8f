//! `--idle-window` and `--max-retained-wal`, through the `dualcheck` binary on
//! real services: while the workload leaves `cdc-logical`'s table idle and the
//! harness writes filler rows to an uncaptured table, the WAL its slot retains
//! grows (Postgres moves a logical slot's restart point only at its periodic
//! running-transactions records, even though the tailer confirms on the
//! server's keepalives: docs/faults.md#idle-window), and a limit below the
//! figure makes the run invalid with `wal_retained` alone; Debezium with
//! heartbeats off retains it the same way.

use checkers::Anomaly;
use dualcheck::ops_series::Sample;
use dualcheck::runner::RunOutcome;

use crate::support::runs::{ops_samples, run};

const MIB: i64 = 1 << 20;

/// The largest retained WAL of any slot over the samples of `ops.jsonl` whose
/// time satisfies `when`.
fn max_retained(samples: &[Sample], when: impl Fn(i64) -> bool) -> i64 {
    samples
        .iter()
        .filter(|s| when(s.time))
        .flat_map(|s| s.slots.values().copied())
        .max()
        .unwrap_or(0)
}

/// The largest retained WAL before the run's idle window and during it (the
/// window from the results, which the history records; the samples from `ops.jsonl`).
fn retained_before_and_during_the_window(v: &RunOutcome) -> (i64, i64) {
    let window = v
        .result
        .faults
        .iter()
        .find(|w| w.fault == "idle-window")
        .unwrap_or_else(|| panic!("an idle-window window in the results: {v:?}"));
    let (start, stop) = (window.start, window.stop.unwrap());
    let samples = ops_samples(&v.run_dir);
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
    assert_eq!(code, 1, "a slot over the limit makes the run invalid: {v:?}");
    assert_eq!(v.result.violations, [Anomaly::WalRetained], "{v:?}");
    let a = &v.result.anomalies;
    assert!(a.wal_retained > 0 && a.lost == 0, "{v:?}");
    assert_eq!(v.max_retained_wal, Some(2 * MIB as u64), "{v:?}");
    assert_eq!(v.idle_window.map(|w| (w.start_s, w.stop_s)), Some((4.0, 12.0)));
    let detail = v.result.examples[&Anomaly::WalRetained][0].detail.as_deref().unwrap();
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
    assert!(
        v.ops_max.as_ref().unwrap().wal_retained_bytes.unwrap() >= during,
        "{v:?}"
    );

    let html = std::fs::read_to_string(v.run_dir.join("report.html")).unwrap();
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
#[ignore = "a measurement of Debezium's defaults (docs/faults.md#idle-window): the idle window and the judgement of retained WAL stay in the suite through cdc_logical_retains_wal_during_an_idle_window_and_the_limit_judges_it; run it with --ignored"]
fn debezium_without_heartbeats_retains_wal_during_an_idle_window() {
    let (code, v) = run(
        "idle-debezium",
        &["--impl", "debezium", "--duration", "20s", "--idle-window", "12s"],
    );
    assert_eq!(code, 0, "valid without a limit: {v:?}");
    let (before, during) = retained_before_and_during_the_window(&v);
    eprintln!("debezium retained WAL: before the window {before} B, during it {during} B");
    assert!(
        during > before + 2 * MIB,
        "the retained WAL grows during the window: {before} -> {during}"
    );
}
