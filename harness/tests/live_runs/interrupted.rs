//! What the history says, on real runs (issue 14, items 6 and 7): a run killed
//! with SIGKILL leaves a history judged `unknown` (exit 3), not `INVALID:
//! lost`; and a pause scheduled inside a kill window of the same process
//! waits for the restart, so it never fails on a process that is not running
//! and its window never overlaps the kill's.

use checkers::Verdict;
use dualcheck::nemesis::Fault;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use workloads::{Schedule, ScheduleConfig};

use crate::support::runs::{assert_no_process_left, check_json, out_dir, run};

/// The only run directory under `out`.
fn run_dir_in(out: &Path) -> Option<PathBuf> {
    std::fs::read_dir(out)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("run-")))
}

#[test]
fn a_run_killed_mid_way_is_unknown_not_invalid() {
    let _guard = crate::support::alone();
    let out = out_dir("sigkill");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args([
            "run",
            "--impl",
            "outbox-poll",
            "--duration",
            "30s",
            "--rate",
            "200",
            "--json",
        ])
        .args(["--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the workload is well under way: acknowledged ops in the history.
    let deadline = Instant::now() + Duration::from_secs(120);
    let history = loop {
        assert!(Instant::now() < deadline, "the run never got going");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        if let Some(h) = run_dir_in(&out).map(|d| d.join("history.jsonl")) {
            let oks = std::fs::read_to_string(&h)
                .unwrap_or_default()
                .matches(r#""type":"ok""#)
                .count();
            if oks >= 300 {
                break h;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().unwrap(); // SIGKILL: no handler runs
    child.wait().unwrap();
    assert_no_process_left(&out);

    let (code, v) = check_json(&history, &[]);
    assert_eq!(code, 3, "an interrupted run is not a verdict: {v:?}");
    assert_eq!(v.verdict, Verdict::Unknown);
    assert_eq!(v.complete, Some(false));
    let reason = v.reason.as_deref().unwrap();
    assert!(reason.contains("no `end` line"), "{reason}");
    eprintln!(
        "killed run: ops {:?}, anomalies {:?}, reason: {reason}",
        v.ops, v.anomalies
    );
    // Judged as complete on request, as before the marks: a verdict, exit 0 or 1.
    let (code, v) = check_json(&history, &["--assume-complete"]);
    assert!(code == 0 || code == 1, "{code}: {v:?}");
    assert_ne!(v.verdict, Verdict::Unknown);
}

/// (fault, phase, time) of every nemesis line of a history. History lines
/// stay JSON: the library reads them with its own parser (`checkers::history`),
/// and `HistoryLine` only serializes.
fn nemesis_lines(history: &Path) -> Vec<(String, String, i64)> {
    std::fs::read_to_string(history)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "nemesis")
        .map(|v| {
            (
                v["fault"].as_str().unwrap().to_string(),
                v["phase"].as_str().unwrap().to_string(),
                v["time"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_pause_inside_a_kill_of_postgres_waits_for_its_restart() {
    const FAULTS: &str = "pg-kill,pg-pause";
    let duration = Duration::from_secs(15);
    // A seed whose schedule starts pg-pause while pg-kill is active.
    let faults = Fault::parse_list(FAULTS).unwrap();
    let seed = (1..1000)
        .find(|&seed| {
            let s = Schedule::generate(&ScheduleConfig {
                seed,
                faults: faults.clone(),
                duration,
            });
            let windows = dualcheck::shrink::windows(&s, duration);
            let of = |f: Fault| windows.iter().filter(move |w| w.fault == f);
            // A pause placed across the heal of a kill.
            of(Fault::PgKill)
                .any(|k| of(Fault::PgPause).any(|p| k.start < p.start && p.start < k.stop && p.stop > k.stop))
        })
        .expect("some seed overlaps the two")
        .to_string();
    let (_, v) = run(
        "pause-inside-kill",
        &[
            "--impl",
            "outbox-poll",
            "--faults",
            FAULTS,
            "--duration",
            "15s",
            "--seed",
            &seed,
        ],
    );
    eprintln!(
        "seed {seed}: faults {:?} failed {:?} errors {:?}",
        v.result.faults, v.result.failed_faults, v.nemesis_errors
    );
    assert_eq!(
        v.result.complete,
        Some(true),
        "a finished run is marked complete: {v:?}"
    );
    assert_ne!(v.result.verdict, Verdict::Unknown);
    let errors = &v.nemesis_errors;
    assert!(
        !errors.iter().any(|e| e.contains("not running")),
        "the pause never met a killed postgres: {errors:?}"
    );
    let history = v.run_dir.join("history.jsonl");
    let lines = nemesis_lines(&history);
    let times = |f: &str, p: &str| {
        lines
            .iter()
            .filter(|l| l.0 == f && l.1 == p)
            .map(|l| l.2)
            .collect::<Vec<_>>()
    };
    let kills: Vec<_> = times("pg-kill", "start")
        .into_iter()
        .zip(times("pg-kill", "stop"))
        .collect();
    assert!(!kills.is_empty(), "pg-kill took effect: {lines:?}");
    // A pause takes effect after postgres was restarted, never inside a kill
    // window (one whose own window ended inside the kill is a failed line).
    for pause in times("pg-pause", "start") {
        assert!(
            !kills
                .iter()
                .any(|&(killed, restarted)| killed < pause && pause < restarted),
            "a pause took effect while postgres was killed: {lines:?}"
        );
    }
}
