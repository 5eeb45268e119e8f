//! `dualcheck run --replay` and `dualcheck shrink` (issue 16), through the
//! binary as a user runs them, on real Postgres, Kafka and Toxiproxy.

use checkers::Anomaly;
use dualcheck::runner::RunOutcome;
use dualcheck::shrink::ShrinkEnd;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use workloads::Schedule;

use crate::support::runs::{assert_no_process_left, invokes, out_dir, parse, run_json};

/// The check's fault windows of a run: (fault, start s, stop s).
fn windows(v: &RunOutcome) -> Vec<(String, f64, f64)> {
    v.result
        .faults
        .iter()
        .map(|w| {
            (
                w.fault.clone(),
                w.start as f64 / 1e9,
                w.stop.map_or(f64::NAN, |s| s as f64) / 1e9,
            )
        })
        .collect()
}

fn dualcheck(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args(args)
        .output()
        .expect("starting dualcheck");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The faults a schedule file names.
fn schedule_faults(path: &Path) -> BTreeSet<String> {
    let s: Schedule<String> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    s.steps.into_iter().map(|e| e.fault).collect()
}

#[test]
fn a_replay_runs_the_same_ops_under_the_same_fault_windows() {
    let _guard = crate::support::alone();
    let args = [
        "--impl",
        "naive",
        "--faults",
        "kafka-partition,pg-latency",
        "--duration",
        "8s",
        "--seed",
        "5",
        "--keys",
        "7",
    ];
    let (_, recorded, out) = run_json("replay-recorded", &args, &[]);
    let recorded_dir = recorded.run_dir.clone();
    let replay_out = out_dir("replay-replayed");
    let (code, stdout, stderr) = dualcheck(&[
        "run",
        "--replay",
        recorded_dir.to_str().unwrap(),
        "--json",
        "--out",
        replay_out.to_str().unwrap(),
    ]);
    assert!(code == 0 || code == 1, "replay failed ({code}): {stderr}");
    let replayed: RunOutcome = parse("replay", &stdout, &stderr);
    let replayed_dir = replayed.run_dir.clone();
    assert_eq!(replayed.implementation, "naive");
    assert_eq!(replayed.seed, 5);
    // The same ops: per process, one run's invocations a prefix of the other's.
    let (a, b) = (
        invokes(&recorded_dir.join("history.jsonl")),
        invokes(&replayed_dir.join("history.jsonl")),
    );
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (process, a_list) in &a {
        let n = a_list.len().min(b[process].len());
        assert!(n > 5, "process {process} invoked too little to compare ({n})");
        assert_eq!(a_list[..n], b[process][..n], "process {process}: other ops on replay");
    }
    // Only 7 keys were used (the recorded workload, not the defaults).
    let keys: BTreeSet<&String> = b.values().flatten().map(|(_, k, _)| k).collect();
    assert!(keys.len() <= 7, "{keys:?}");
    // The same windows, within the nemesis's start-up jitter.
    let (wa, wb) = (windows(&recorded), windows(&replayed));
    assert!(!wa.is_empty());
    assert_eq!(wa.len(), wb.len(), "{wa:?}\n{wb:?}");
    for (x, y) in wa.iter().zip(&wb) {
        assert_eq!(x.0, y.0, "{wa:?}\n{wb:?}");
        assert!((x.1 - y.1).abs() < 0.5, "start {x:?} vs {y:?}");
    }
    // The replay wrote the recorded schedule as its own.
    assert_eq!(
        std::fs::read_to_string(replayed_dir.join("schedule.json")).unwrap(),
        std::fs::read_to_string(recorded_dir.join("schedule.json")).unwrap()
    );
    assert_no_process_left(&out);
    assert_no_process_left(&replay_out);

    // A run directory of an older dualcheck: the missing field is named. (The
    // file is edited as JSON on purpose: the record type cannot lack a field.)
    let env_path = recorded_dir.join("environment.json");
    let mut env: Value = serde_json::from_str(&std::fs::read_to_string(&env_path).unwrap()).unwrap();
    env["config"].as_object_mut().unwrap().remove("app_env");
    std::fs::write(&env_path, env.to_string()).unwrap();
    let (code, _, stderr) = dualcheck(&["run", "--replay", recorded_dir.to_str().unwrap()]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("lacks `config.app_env`"), "{stderr}");
}

#[test]
fn a_valid_run_has_nothing_to_shrink() {
    // Fault-free or robust runs whose verdicts do not hang on timing: one slot.
    let _guard = crate::support::beside_another();
    let (code, v, out) = run_json(
        "shrink-valid",
        &["--impl", "outbox-poll", "--duration", "3s", "--seed", "1"],
        &[],
    );
    assert_eq!(code, 0, "{v:?}");
    let dir = v.run_dir.to_str().unwrap();
    let html = std::fs::read_to_string(Path::new(dir).join("report.html")).unwrap();
    assert!(
        !html.contains("dualcheck shrink"),
        "a valid run's report offers no shrink"
    );
    let (code, _, stderr) = dualcheck(&["shrink", dir, "--tries", "1", "--min-repro", "1"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("nothing to shrink"), "{stderr}");
    assert!(!Path::new(dir).join("shrunk").exists());
    assert_no_process_left(&out);
}

#[test]
fn a_naive_run_shrinks_to_fewer_windows_and_its_replay_reproduces() {
    let _guard = crate::support::alone();
    let (code, v, out) = run_json(
        "shrink-naive",
        &[
            "--impl",
            "naive",
            "--faults",
            "kafka-partition,crash-after-commit",
            "--duration",
            "8s",
            "--seed",
            "1",
        ],
        &[],
    );
    assert_eq!(code, 1, "naive loses events under a partition: {v:?}");
    let dir = v.run_dir.clone();
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(
        html.contains("dualcheck shrink "),
        "the invalid run's report offers the shrink"
    );
    let original = windows(&v);
    let (code, stdout, stderr) = dualcheck(&[
        "shrink",
        dir.to_str().unwrap(),
        "--tries",
        "1",
        "--min-repro",
        "1",
        "--budget",
        "150s",
        "--max-candidates",
        "2",
        "--json",
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let mut json: Value = parse("shrink", &stdout, &stderr);
    // The candidates (`original`, `best`) stay JSON: their durations are
    // written as seconds by a serializer of their own (shrink.rs's `secs`),
    // which serde's `Duration` does not read back. The rest is typed.
    let best = json["best"]["windows"].as_array().map(Vec::len);
    for candidate in ["original", "best"] {
        json.as_object_mut().unwrap().remove(candidate);
    }
    let end: ShrinkEnd = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let o = match end {
        ShrinkEnd::Shrunk(o) => o,
        other => panic!("not shrunk: {other:?}"),
    };
    assert_eq!(o.anomaly, "lost");
    assert_eq!(o.candidates, 2, "--max-candidates: {o:?}");
    assert!(o.budget_exhausted, "{o:?}");
    let best = best.expect("the best candidate's windows");
    assert!(
        best < original.len(),
        "fewer windows than the {} it started with: {stdout}\n{stderr}",
        original.len()
    );
    // Progress lines: each candidate, its tries, the best so far.
    assert!(
        stderr.contains("[2] ") && stderr.contains("try 1/1") && stderr.contains("| best: "),
        "{stderr}"
    );
    let shrunk = dir.join("shrunk");
    for f in [
        "schedule.json",
        "workload.json",
        "commands.txt",
        "verification.rs",
        "shrink.jsonl",
        "summary.json",
        "report.html",
    ] {
        assert!(shrunk.join(f).exists(), "shrunk/{f}");
    }
    // Every kept window's kind is one of the original schedule's.
    let kept = schedule_faults(&shrunk.join("schedule.json"));
    let before = schedule_faults(&dir.join("schedule.json"));
    assert!(kept.is_subset(&before), "{kept:?} not within {before:?}");
    // The log has every candidate (as many lines as candidates tried).
    let log = std::fs::read_to_string(shrunk.join("shrink.jsonl")).unwrap();
    assert_eq!(log.lines().count(), o.candidates);
    assert!(std::fs::read_to_string(shrunk.join("verification.rs"))
        .unwrap()
        .contains(".schedule(schedule)"));
    // The replay command reproduces.
    let replay = o.replay_command.as_str();
    let best_run = replay.strip_prefix("dualcheck run --replay ").expect(replay);
    let replay_out = out_dir("shrink-naive-replay");
    let (code, stdout, stderr) = dualcheck(&[
        "run",
        "--replay",
        best_run,
        "--json",
        "--out",
        replay_out.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "the shrunk run reproduces: {stdout}\n{stderr}");
    let r: RunOutcome = parse("shrunk replay", &stdout, &stderr);
    assert!(r.result.violations.contains(&Anomaly::Lost), "{r:?}");
    assert_no_process_left(&out);
    assert_no_process_left(&replay_out);
}
