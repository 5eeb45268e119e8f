//! `--impl exec` end to end: the Python example services under
//! `examples/python-outbox/` run through `dualcheck run --impl exec` exactly as
//! a user runs them, against real Postgres, Kafka and Toxiproxy; and programs
//! outside the contract get a clear error. Each run starts its own Kafka; a
//! run whose verdict does not hang on its timing may overlap one other.
//!
//! The Python services need psycopg and confluent-kafka in
//! `$DUALCHECK_CACHE/pyenv` (`bash ci/setup` creates it).

use dualcheck::runner::RunOutcome;
use std::path::PathBuf;
use std::process::Command;

use crate::support::runs::{example_python as python, parse};

/// Faults of the example runs: the relay dies with events in flight, Kafka
/// becomes unreachable for longer than the producer's message timeout, and
/// the service (which has no crash point) is SIGKILLed right after commits.
const FAULTS: &str = "kafka-partition,relay-kill,crash-after-commit";

fn examples_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/python-outbox"))
}

fn out_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("exec-examples-{}", std::process::id()))
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `dualcheck run --impl exec --json ARGS` beside at most one other run
/// (a correct service, or a program refused before its workload: neither
/// verdict hangs on timing); returns (exit code, stdout, stderr).
fn dualcheck_run(name: &str, args: &[&str]) -> (i32, String, String) {
    let (code, stdout, stderr, _) = dualcheck_run_timed(name, args, crate::support::beside_another());
    (code, stdout, stderr)
}

/// [`dualcheck_run`] while `_slots` of the machine are held (all of it for a
/// negative control whose bug needs a fault placed just so), with how long
/// the run itself took (not the wait for the machine before it).
fn dualcheck_run_timed(
    name: &str,
    args: &[&str],
    _slots: crate::support::Slots,
) -> (i32, String, String, std::time::Duration) {
    let started = std::time::Instant::now();
    let out = out_dir(name);
    let output = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args(["run", "--impl", "exec", "--json", "--out", out.to_str().unwrap()])
        .args(args)
        .output()
        .expect("starting dualcheck");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
        started.elapsed(),
    )
}

/// Runs one Python example service under [`FAULTS`] while `slots` of the
/// machine are held; returns (exit code, result).
fn run_python(name: &str, script: &str, seed: &str, slots: crate::support::Slots) -> (i32, RunOutcome) {
    let py = python();
    let dir = examples_dir();
    let cmd = format!("'{}' '{}'", py.display(), dir.join(script).display());
    let schema = dir.join("schema.sql");
    let (code, stdout, stderr, _) = dualcheck_run_timed(
        name,
        &[
            "--cmd",
            &cmd,
            "--committed-sql",
            "SELECT op FROM orders",
            "--schema",
            schema.to_str().unwrap(),
            "--faults",
            FAULTS,
            "--duration",
            "15s",
            "--drain-timeout",
            "30s",
            "--seed",
            seed,
        ],
        slots,
    );
    assert!(
        code == 0 || code == 1,
        "{name}: dualcheck run failed ({code}):\n{stderr}"
    );
    let v: RunOutcome = parse(name, &stdout, &stderr);
    eprintln!(
        "{name}: exit {code}, valid={} anomalies={:?}",
        v.result.valid, v.result.anomalies
    );
    (code, v)
}

/// How many times the service started (one log line per start).
fn starts(v: &RunOutcome) -> usize {
    crate::support::runs::log_count(v, "outbox service on")
}

#[test]
fn python_outbox_is_valid_under_faults() {
    let (code, v) = run_python("python-correct", "service.py", "1", crate::support::beside_another());
    assert_eq!(code, 0, "the correct Python outbox must be valid: {v:?}");
    assert!(v.result.valid);
    assert!(v.result.ops.ok > 200, "too few acknowledged ops: {v:?}");
    assert!(v.drained, "{v:?}");
    // Killed and restarted by relay-kill and by the crash-after-commit fallback.
    assert!(
        starts(&v) >= 3,
        "the service was not killed and restarted: {} starts",
        starts(&v)
    );
}

#[test]
fn python_outbox_deleting_before_delivery_reports_loses_events() {
    let (code, v) = run_python("python-buggy", "service_buggy.py", "1", crate::support::alone());
    assert_eq!(code, 1, "the buggy Python outbox must be invalid: {v:?}");
    assert!(!v.result.valid);
    let a = &v.result.anomalies;
    assert!(a.lost > 0, "its anomaly is `lost`: {v:?}");
    assert_eq!(a.phantom, 0, "{v:?}");
    assert_eq!(a.reorder, 0, "{v:?}");
}

#[test]
fn a_program_that_never_listens_is_a_clear_error() {
    let (code, _, stderr, took) = dualcheck_run_timed(
        "never-listens",
        &[
            "--cmd",
            "echo 'starting up'; sleep 600",
            "--committed-sql",
            "SELECT 1::bigint",
            "--start-timeout",
            "3s",
            "--duration",
            "5s",
        ],
        crate::support::beside_another(),
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("did not answer HTTP") && stderr.contains("127.0.0.1:$PORT"),
        "{stderr}"
    );
    assert!(
        stderr.contains("app.log") && stderr.contains("starting up"),
        "names app.log and shows its tail: {stderr}"
    );
    assert!(took.as_secs() < 120, "took {took:?}");
}

#[test]
fn a_program_that_exits_early_is_a_clear_error() {
    let (code, _, stderr) = dualcheck_run(
        "exits-early",
        &[
            "--cmd",
            "echo 'cannot read config' >&2; exit 3",
            "--committed-sql",
            "SELECT 1::bigint",
            "--duration",
            "5s",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("exited before answering"), "{stderr}");
    assert!(
        stderr.contains("app.log") && stderr.contains("cannot read config"),
        "{stderr}"
    );
}

#[test]
fn a_program_outside_the_contract_is_a_clear_error() {
    // Serves files (GET /health: 404, ready) but answers POST with 501: no POST /ops.
    let py = python();
    let cmd = format!(
        "'{}' -c 'import os, http.server; http.server.ThreadingHTTPServer((\"127.0.0.1\", int(os.environ[\"PORT\"])), http.server.SimpleHTTPRequestHandler).serve_forever()'",
        py.display()
    );
    let (code, _, stderr) = dualcheck_run(
        "outside-contract",
        &[
            "--cmd",
            &cmd,
            "--committed-sql",
            "SELECT 1::bigint WHERE false",
            "--duration",
            "3s",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("acknowledged none")
            && stderr.contains("does not serve POST /ops")
            && stderr.contains("app.log"),
        "{stderr}"
    );
}

/// A black box whose `GET /backlog` answers 200 with something that is not
/// `{"backlog": N}`: said once, then the drain treats it as having no backlog
/// endpoint and ends on its quiet period instead of waiting out its timeout.
#[test]
fn a_backlog_answer_that_is_not_understood_is_said_once_and_ignored() {
    let out = out_dir("backlog-not-understood");
    let script = out.join("odd_backlog.py");
    std::fs::write(
        &script,
        r#"
import http.server, json, os
class H(http.server.BaseHTTPRequestHandler):
    def reply(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path == "/backlog":
            self.reply(200, json.dumps({"pending": 0}))
        else:
            self.reply(200, "{}")
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.reply(200, "{}")  # acknowledged, never published
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#,
    )
    .unwrap();
    let (code, stdout, stderr, took) = dualcheck_run_timed(
        "backlog-not-understood",
        &[
            "--cmd",
            &format!("python3 '{}'", script.display()),
            "--committed-sql",
            "SELECT 1::bigint WHERE false",
            "--duration",
            "2s",
            "--drain-timeout",
            "60s",
        ],
        crate::support::beside_another(),
    );
    assert_eq!(
        code, 1,
        "acknowledged ops never published are lost:\n{stdout}\n{stderr}"
    );
    let v: RunOutcome = parse("backlog-not-understood", &stdout, &stderr);
    let said: Vec<&str> = v
        .result
        .warnings
        .iter()
        .map(String::as_str)
        .filter(|w| w.contains("GET /backlog answered 200 with"))
        .collect();
    assert_eq!(said.len(), 1, "said once: {v:?}");
    assert!(said[0].contains(r#"{"pending": 0}"#), "{}", said[0]);
    assert!(
        took < std::time::Duration::from_secs(45),
        "the drain waited for its timeout ({took:?}) instead of its quiet period"
    );
}
