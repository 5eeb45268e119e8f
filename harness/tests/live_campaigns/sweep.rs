//! `dualcheck sweep` (issue 14): many runs on one environment, each judged
//! against the verdict its implementation declares, through the binary as a
//! user runs it, on real Postgres, Kafka and Toxiproxy.

use dualcheck::runner::RunOutcome;
use dualcheck::sweep::{Row, SweepOutcome};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::runs::{assert_no_process_left, invokes, out_dir, parse, parse_output, processes_of, walk};

/// What `dualcheck sweep --json` prints when interrupted: the rows done so
/// far (cli/sweep.rs writes this envelope with `json!`; no library type has it).
#[derive(Debug, serde::Deserialize)]
struct Interrupted {
    rows: Vec<Row>,
    interrupted: bool,
}

/// What `dualcheck merge --json` prints (cli/merge.rs writes this envelope
/// with `json!`; no library type has it).
#[derive(Debug, serde::Deserialize)]
struct Merged {
    rows: Vec<Row>,
    html: PathBuf,
}

/// The same ops: per process, one run's invocations are a prefix of the
/// other's (the workload ends at a deadline, so one may have gone further).
fn assert_same_ops(a: &Path, b: &Path) {
    let (a_ops, b_ops) = (invokes(a), invokes(b));
    assert_eq!(a_ops.keys().collect::<Vec<_>>(), b_ops.keys().collect::<Vec<_>>());
    for (process, a_list) in &a_ops {
        let b_list = &b_ops[process];
        let n = a_list.len().min(b_list.len());
        assert!(n > 10, "process {process} invoked too little to compare ({n})");
        assert_eq!(
            a_list[..n],
            b_list[..n],
            "process {process}: different ops for the same seed"
        );
    }
}

fn run_dir_of(out: &Path, implementation: &str, seed: u64) -> PathBuf {
    let suffix = format!("-{implementation}-seed{seed}");
    let mut found = Vec::new();
    for dir in [out.to_path_buf()]
        .into_iter()
        .chain(std::fs::read_dir(out).unwrap().flatten().map(|e| e.path()))
    {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().ends_with(&suffix) && e.path().join("history.jsonl").exists() {
                    found.push(e.path());
                }
            }
        }
    }
    assert_eq!(found.len(), 1, "{suffix} under {}: {found:?}", out.display());
    found.remove(0)
}

#[test]
fn a_sweep_runs_every_cell_on_one_environment_with_the_ops_of_a_fresh_run() {
    // Fault-free or robust runs whose verdicts do not hang on timing: one slot.
    let _guard = crate::support::beside_another();
    let out = out_dir("sweep");
    let output = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args([
            "sweep",
            "--impls",
            "naive,outbox-poll",
            "--faults",
            "kafka-partition,crash-after-commit",
            "--seeds",
            "2",
            "--first-seed",
            "3",
            "--duration",
            "10s",
            "--json",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .expect("starting dualcheck sweep");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let v: SweepOutcome = parse("sweep", &stdout, &stderr);
    let rows = &v.rows;
    assert_eq!(rows.len(), 2, "one row per cell: {v:?}");
    let row = |name: &str| rows.iter().find(|r| r.implementation == name).expect(name);
    // The expectations are the patterns' own (`dualcheck list`).
    assert_eq!(row("naive").expected, "shows lost", "{v:?}");
    assert_eq!(row("outbox-poll").expected, "valid", "{v:?}");
    for r in rows {
        assert_eq!(r.runs, 2, "{v:?}");
        assert_eq!(r.faults, "kafka-partition,crash-after-commit");
        assert_eq!(r.errors.len(), 0, "{v:?}\n{stderr}");
    }
    assert_eq!(row("naive").verdict, "INVALID", "{v:?}");
    assert_eq!(row("outbox-poll").verdict, "valid", "{v:?}");
    assert_eq!(row("naive").as_expected, 2, "{v:?}");
    assert_eq!(row("outbox-poll").as_expected, 2, "{v:?}");
    assert_eq!(output.status.code(), Some(0), "every cell as expected: {v:?}\n{stderr}");
    // Four runs, one environment: one services directory, four run directories.
    let sweep_dir = v.out_dir.clone();
    let names: Vec<String> = std::fs::read_dir(&sweep_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.starts_with("services-")).count(),
        1,
        "{names:?}"
    );
    assert_eq!(names.iter().filter(|n| n.contains("-seed")).count(), 4, "{names:?}");
    assert!(v.html.exists());
    assert!(v.rows[0].overhead_s.is_some(), "{v:?}");
    assert_no_process_left(&out);

    // A fresh run of the same seed: the same ops and the same schedule.
    let fresh_out = out_dir("sweep-fresh");
    let fresh = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args([
            "run",
            "--impl",
            "naive",
            "--faults",
            "kafka-partition,crash-after-commit",
            "--seed",
            "3",
            "--duration",
            "10s",
            "--json",
            "--out",
            fresh_out.to_str().unwrap(),
        ])
        .output()
        .expect("starting dualcheck run");
    let f: RunOutcome = serde_json::from_slice(&fresh.stdout).expect("results of the fresh run");
    let fresh_dir = f.run_dir;
    let swept_dir = run_dir_of(&sweep_dir, "naive", 3);
    assert_same_ops(&swept_dir.join("history.jsonl"), &fresh_dir.join("history.jsonl"));
    assert_eq!(
        std::fs::read_to_string(swept_dir.join("schedule.json")).unwrap(),
        std::fs::read_to_string(fresh_dir.join("schedule.json")).unwrap(),
        "the same schedule"
    );
    // And a different seed gives different ops (the comparison can fail).
    let other = run_dir_of(&sweep_dir, "naive", 4);
    assert_ne!(
        invokes(&other.join("history.jsonl")),
        invokes(&swept_dir.join("history.jsonl"))
    );
    assert_no_process_left(&fresh_out);
}

#[test]
fn ctrl_c_in_the_middle_of_a_sweep_leaves_no_process_and_prints_the_runs_done() {
    let _guard = crate::support::alone();
    let out = out_dir("sweep-interrupted");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args([
            "sweep",
            "--impls",
            "outbox-poll",
            "--seeds",
            "3",
            "--duration",
            "5s",
            "--json",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting dualcheck sweep");
    // Wait until the second run's implementation is up (two app.log files:
    // the first run is done), then interrupt.
    let deadline = Instant::now() + Duration::from_secs(150);
    loop {
        let started = walk(&out).iter().filter(|p| p.ends_with("app.log")).count() >= 2;
        if started {
            break;
        }
        assert!(Instant::now() < deadline, "the sweep's second run never started");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !processes_of(&out).is_empty(),
        "the sweep runs processes in {}",
        out.display()
    );
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "dualcheck sweep did not end on SIGINT");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_no_process_left(&out);
    // What it printed: the table of the run done, in the format asked for.
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let partial: Interrupted = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert!(partial.interrupted, "{stdout}");
    assert_eq!(partial.rows[0].runs, 1, "the first run is in the table: {stdout}");
}

/// `dualcheck sweep ... --json` with `extra` arguments, into `out`; (exit code, outcome).
fn sweep_json(out: &Path, extra: &[&str]) -> (i32, SweepOutcome) {
    let o = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args([
            "sweep",
            "--impls",
            "naive,outbox-poll",
            "--seeds",
            "2",
            "--duration",
            "3s",
            "--json",
            "--out",
            out.to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .expect("running dualcheck sweep");
    let v = parse_output("sweep", &o);
    (o.status.code().unwrap_or(-1), v)
}

/// What a row must agree on between a sweep and the merge of its shards.
fn row_key(row: &Row) -> (String, String, u64, u64, String, Vec<u64>) {
    (
        row.implementation.clone(),
        row.faults.clone(),
        row.runs,
        row.as_expected,
        row.verdict.clone(),
        row.failed_seeds.clone(),
    )
}

#[test]
fn the_merge_of_two_shards_is_the_table_of_the_whole_sweep() {
    // Fault-free or robust runs whose verdicts do not hang on timing: one slot.
    let _guard = crate::support::beside_another();
    let out = out_dir("sweep-shards");
    let (code, whole) = sweep_json(&out.join("whole"), &[]);
    assert_eq!(code, 0, "{whole:?}");
    // The shards side by side, as on two machines (each starts its own services).
    let shards = out.join("shards");
    let (one, two) = std::thread::scope(|s| {
        let one = s.spawn(|| sweep_json(&shards, &["--shard", "1/2"]).1);
        let two = s.spawn(|| sweep_json(&shards, &["--shard", "2/2"]).1);
        (one.join().unwrap(), two.join().unwrap())
    });
    let runs = |v: &SweepOutcome| v.rows.iter().map(|r| r.runs).sum::<u64>();
    assert_eq!(
        (runs(&one), runs(&two), runs(&whole)),
        (2, 2, 4),
        "the shards split the runs: {one:?}\n{two:?}"
    );
    let merged = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args(["merge", out.join("shards").to_str().unwrap(), "--json", "--out"])
        .arg(out.join("merged"))
        .output()
        .unwrap();
    assert_eq!(
        merged.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );
    let merged: Merged = serde_json::from_slice(&merged.stdout).unwrap();
    let keys = |rows: &[Row]| rows.iter().map(row_key).collect::<Vec<_>>();
    assert_eq!(
        keys(&merged.rows),
        keys(&whole.rows),
        "merged: {merged:?}\nwhole: {whole:?}"
    );
    assert!(merged.html.is_file());
    assert_no_process_left(&out);
}
