//! Shared by the tests that run `dualcheck run` as a user does: one run at a
//! time (each starts its own environment; two would not fit two cores), the
//! result object, the report files every run directory must carry, and a
//! check that no process of the run is left behind.
#![allow(dead_code)]

use checkers::CheckResult;
use dualcheck::ops_series::Sample;
use dualcheck::runner::RunOutcome;
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The interpreter of the examples' venv (`$DUALCHECK_CACHE/pyenv`), checked
/// to import the examples' clients.
pub fn example_python() -> PathBuf {
    let py = dualcheck::env::cache::cache_dir().join("pyenv/bin/python");
    let ok = Command::new(&py)
        .args(["-c", "import psycopg, confluent_kafka"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "the Python examples need psycopg and confluent-kafka in {}: run `bash ci/setup` (it creates that venv)",
        py.display()
    );
    py
}

pub fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join(format!("dualcheck-runs-{}", std::process::id()))
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Parses what `dualcheck ... --json` printed on `stdout` into the library's
/// type of that output (`RunOutcome`, `CheckResult`, `SweepOutcome`, ...), so
/// a renamed field fails the tests' build, not their run.
pub fn parse<T: DeserializeOwned>(name: &str, stdout: &str, stderr: &str) -> T {
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{name}: not the JSON of its type ({e}): {stdout}\n{stderr}"))
}

/// [`parse`] of a finished command's output.
pub fn parse_output<T: DeserializeOwned>(name: &str, output: &Output) -> T {
    parse(
        name,
        &String::from_utf8_lossy(&output.stdout),
        &String::from_utf8_lossy(&output.stderr),
    )
}

/// Runs `dualcheck run --json` with `args` and extra environment `env`;
/// returns (exit code, result object, output directory) once the run ended
/// with a verdict (exit 0 or 1) and printed its result object.
pub fn run_json(name: &str, args: &[&str], env: &[(&str, &str)]) -> (i32, RunOutcome, PathBuf) {
    let out = out_dir(name);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dualcheck"));
    cmd.arg("run")
        .args(args)
        .args(["--json", "--out", out.to_str().unwrap()]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().expect("starting dualcheck");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = output.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "{name}: dualcheck run failed ({}):\n{stderr}\nlast lines of its app.log:\n{}",
        described(output.status),
        app_log_tail(&out)
    );
    let v: RunOutcome = parse(name, &stdout, &stderr);
    (code, v, out)
}

/// How a process ended: its exit code, or the signal that ended it (a run
/// ended by a signal prints nothing; the signal says which kind of death).
pub fn described(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!(
            "killed by signal {sig}{}",
            if status.core_dumped() { " (core dumped)" } else { "" }
        ),
        (None, None) => format!("{status}"),
    }
}

/// The last 30 lines of the app.log of every run directory under `out`.
fn app_log_tail(out: &Path) -> String {
    let mut text = String::new();
    for dir in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let log = std::fs::read_to_string(dir.path().join("app.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        text += &format!(
            "--- {} ---\n{}\n",
            dir.path().display(),
            lines[lines.len().saturating_sub(30)..].join("\n")
        );
    }
    text
}

/// Runs `dualcheck run --json` with `args` alone on the machine; returns
/// (exit code, result object).
pub fn run(name: &str, args: &[&str]) -> (i32, RunOutcome) {
    let slots = crate::support::alone();
    run_holding(name, args, slots)
}

/// [`run`] for a run whose verdict does not hang on its timing — a correct
/// pattern that must stay valid, or a bug that every op of a fault window
/// shows: it may overlap one other such run ([`crate::support::beside_another`]).
pub fn run_beside(name: &str, args: &[&str]) -> (i32, RunOutcome) {
    let slots = crate::support::beside_another();
    run_holding(name, args, slots)
}

/// Runs `dualcheck run --json` with `args` while `_slots` are held, then
/// checks the run left no process and wrote its reports.
fn run_holding(name: &str, args: &[&str], _slots: crate::support::Slots) -> (i32, RunOutcome) {
    let (code, v, out) = run_json(name, args, &[]);
    assert_no_process_left(&out);
    // Every run directory carries its report.
    let run_dir = &v.run_dir;
    let junit = std::fs::read_to_string(run_dir.join("junit.xml")).expect("junit.xml in the run directory");
    assert_eq!(
        junit.matches("<testcase ").count(),
        checkers::Anomaly::ALL.len(),
        "{name}: one test case per anomaly kind"
    );
    assert_eq!(
        junit.contains("<failure "),
        !v.result.valid,
        "{name}: failures iff invalid"
    );
    let html = std::fs::read_to_string(run_dir.join("report.html")).expect("report.html in the run directory");
    let verdict = if v.result.valid { ">VALID<" } else { ">INVALID<" };
    assert!(
        html.contains(verdict) && html.matches("<svg").count() == 3 + html.matches("id=\"ops-plot-").count(),
        "{name}: report.html: the three plots of the history, and one per operational series plot"
    );
    eprintln!("{name}: valid={} anomalies={:?}", v.result.valid, v.result.anomalies);
    (code, v)
}

/// Runs `dualcheck check HISTORY --json` with `extra` arguments; returns
/// (exit code, result object).
pub fn check_json(history: &Path, extra: &[&str]) -> (i32, CheckResult) {
    let output = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .arg("check")
        .arg(history)
        .arg("--json")
        .args(extra)
        .output()
        .expect("starting dualcheck check");
    let v = parse_output("dualcheck check", &output);
    (output.status.code().unwrap_or(-1), v)
}

/// The operational samples a run wrote to `RUN_DIR/ops.jsonl`, one a line.
pub fn ops_samples(run_dir: &Path) -> Vec<Sample> {
    std::fs::read_to_string(run_dir.join("ops.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("ops.jsonl: {e}: {l}")))
        .collect()
}

/// Every process whose command line or working directory mentions `dir`.
pub fn processes_of(dir: &Path) -> Vec<(i32, String)> {
    let needle = dir.to_str().unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd = std::fs::read_link(entry.path().join("cwd"))
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat.rsplit(')').next().is_some_and(|s| s.trim_start().starts_with('Z'));
        if !zombie && (mentions(&cmdline, needle) || mentions(&cwd, needle)) {
            found.push((pid, cmdline));
        }
    }
    found
}

/// Whether `text` names the directory `dir` or a path in it (not merely a
/// sibling whose name starts the same: `runs/idcursor-slow-commit` is not in
/// `runs/idcursor`).
fn mentions(text: &str, dir: &str) -> bool {
    text.match_indices(dir).any(|(i, _)| {
        let after = text[i + dir.len()..].chars().next();
        matches!(after, None | Some('/') | Some(' ') | Some('"') | Some('\''))
    })
}

pub fn assert_no_process_left(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_of(dir);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "processes left behind by the run in {}: {left:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Each process's invoke lines (op, key, seq), in order. History lines stay
/// JSON: the library reads them with its own parser (`checkers::history`,
/// which keeps no process), and `HistoryLine` only serializes.
pub fn invokes(history: &Path) -> std::collections::BTreeMap<u64, Vec<(u64, String, u64)>> {
    let text = std::fs::read_to_string(history).unwrap_or_else(|e| panic!("{}: {e}", history.display()));
    let mut per_process: std::collections::BTreeMap<u64, Vec<(u64, String, u64)>> = std::collections::BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["type"] == "invoke" {
            per_process.entry(v["process"].as_u64().unwrap()).or_default().push((
                v["op"].as_u64().unwrap(),
                v["key"].as_str().unwrap().to_string(),
                v["seq"].as_u64().unwrap(),
            ));
        }
    }
    per_process
}

/// How many lines of the run's `app.log` say `needle` (e.g. one per start of the service).
pub fn log_count(v: &RunOutcome, needle: &str) -> usize {
    let log = v.run_dir.join("app.log");
    std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("reading {}: {e}", log.display()))
        .matches(needle)
        .count()
}

/// Every file under `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files
}

/// Windows (start, stop) of `fault` in a schedule, by start.
pub fn windows(s: &workloads::Schedule<dualcheck::nemesis::Fault>, fault: &str) -> Vec<(Duration, Duration)> {
    dualcheck::shrink::windows(s, Duration::MAX)
        .into_iter()
        .filter(|w| w.fault.name() == fault)
        .map(|w| (w.start, w.stop))
        .collect()
}

/// The first seed whose schedule of `faults` over `duration` satisfies `wanted`
/// (schedules are deterministic per seed: the test picks a telling one).
pub fn seed_where(
    faults: &str,
    duration: Duration,
    wanted: impl Fn(&workloads::Schedule<dualcheck::nemesis::Fault>) -> bool,
) -> u64 {
    // In the order the runner hands them to the schedule.
    let faults = dualcheck::nemesis::Fault::parse_list(faults).unwrap();
    (1..1000)
        .find(|&seed| {
            wanted(&workloads::Schedule::generate(&workloads::ScheduleConfig {
                seed,
                faults: faults.clone(),
                duration,
            }))
        })
        .expect("some seed below 1000 has the schedule the test needs")
}
