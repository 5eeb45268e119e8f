//! `--impl exec` without an adapter: the orders service under
//! `examples/python-orders/` (its own `POST /orders` API answering 201, an
//! outbox whose events are `{eventId, type, occurredAt, orderId, ...}`) run
//! through `dualcheck run --impl exec --template` as a user runs it, against
//! real Postgres, Kafka and Toxiproxy; a mapping that misses its field; and
//! template mistakes caught before anything starts.
//!
//! The Python services need psycopg and confluent-kafka in
//! `$DUALCHECK_CACHE/pyenv` (`bash ci/setup` creates it).

use dualcheck::runner::RunOutcome;
use std::path::PathBuf;
use std::process::Command;

use crate::support::runs::{example_python as python, parse};

/// The faults the issue names: Kafka unreachable longer than the producer's
/// message timeout, the process killed with events in flight, and (the
/// service has no crash point) SIGKILLs right after acknowledged orders.
const FAULTS: &str = "kafka-partition,relay-kill,crash-after-commit";

/// The op id travels as the order's reference.
const COMMITTED_SQL: &str = "SELECT reference::bigint FROM orders";

fn example() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/python-orders"))
}

fn out_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("exec-templates-{}", std::process::id()))
        .join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `dualcheck run --impl exec --json --out OUT ARGS` beside at most one
/// other run: the correct service's verdict, a mapping's warning and a
/// mistake refused before anything starts do not hang on timing (the buggy
/// service's gate takes the whole machine of its own); returns (exit code,
/// stdout, stderr).
fn dualcheck_run(out: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let _guard = crate::support::beside_another();
    let output = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args(["run", "--impl", "exec", "--json", "--out", out.to_str().unwrap()])
        .args(args)
        .output()
        .expect("starting dualcheck");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs one orders service with the example's template file plus `extra`;
/// returns (exit code, result).
fn run_orders(name: &str, script: &str, extra: &[&str]) -> (i32, RunOutcome) {
    let py = python();
    let dir = example();
    let cmd = format!("'{}' '{}'", py.display(), dir.join(script).display());
    let schema = dir.join("schema.sql");
    let template = dir.join("dualcheck-template.toml");
    let mut args = vec![
        "--cmd",
        &cmd,
        "--committed-sql",
        COMMITTED_SQL,
        "--schema",
        schema.to_str().unwrap(),
        "--template",
        template.to_str().unwrap(),
        "--drain-timeout",
        "30s",
    ];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = dualcheck_run(&out_dir(name), &args);
    assert!(
        code == 0 || code == 1,
        "{name}: dualcheck run failed ({code}):\n{stderr}"
    );
    let v: RunOutcome = parse(name, &stdout, &stderr);
    eprintln!(
        "{name}: exit {code}, valid={} anomalies={:?} warnings={:?}",
        v.result.valid, v.result.anomalies, v.result.warnings
    );
    (code, v)
}

/// How many times the service started (one log line per start).
fn starts(v: &RunOutcome) -> usize {
    crate::support::runs::log_count(v, "orders service on")
}

#[test]
fn an_orders_service_verified_through_its_own_api_is_valid_under_faults() {
    let (code, v) = run_orders(
        "orders-correct",
        "service.py",
        &["--faults", FAULTS, "--duration", "15s", "--seed", "1"],
    );
    assert_eq!(code, 0, "the correct orders service must be valid: {v:?}");
    assert!(v.result.ops.ok > 200, "too few acknowledged orders: {v:?}");
    assert!(v.drained, "{v:?}");
    // Every record was read through the mapping: none unexpected, none unreadable.
    assert_eq!(v.result.anomalies.unexpected, 0, "{v:?}");
    assert!(v.result.deliveries >= v.result.ops.ok, "{v:?}");
    assert!(v.result.warnings.is_empty(), "{v:?}");
    // The API cannot roll back (rollback = "none"): no aborts were sent, so no
    // failure is a rolled-back order.
    let history = std::fs::read_to_string(v.run_dir.join("history.jsonl")).unwrap();
    assert!(!history.contains("asked to roll back"), "aborts were sent");
    assert!(
        starts(&v) >= 3,
        "the service was not killed and restarted: {} starts",
        starts(&v)
    );
}

/// `dualcheck gate` on a template service as it is: the buggy orders
/// service (events marked published before Kafka's acknowledgment) stops
/// the gate at its first invalid run, `lost`, with the CI outputs: exit 1,
/// an `::error::` annotation naming the anomaly, the summary appended to
/// `$GITHUB_STEP_SUMMARY`, gate.json, junit.xml, the reproduction commands,
/// each naming the service as `--name` says.
#[test]
fn a_gate_of_an_orders_service_marking_events_published_before_the_ack_fails_on_lost() {
    let _guard = crate::support::alone();
    let py = python();
    let dir = example();
    let cmd = format!("'{}' '{}'", py.display(), dir.join("service_buggy.py").display());
    let schema = dir.join("schema.sql");
    let template = dir.join("dualcheck-template.toml");
    let out = out_dir("orders-buggy-gate");
    let step_summary = out.join("step-summary.md");
    let output = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args([
            "gate",
            "--impl",
            "exec",
            // The battery's lists within the faults of the other template
            // runs: the whole battery first runs two lists that cannot catch
            // this bug (the gate plans for every bug class, not this one).
            "--faults",
            FAULTS,
            "--budget",
            "3m",
            "--no-shrink",
            "--json",
            "--out",
        ])
        .arg(&out)
        .args(["--cmd", &cmd, "--committed-sql", COMMITTED_SQL, "--schema"])
        .arg(&schema)
        .arg("--template")
        .arg(&template)
        .args(["--drain-timeout", "30s", "--name", "orders-service"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &step_summary)
        .output()
        .expect("starting dualcheck");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(
        output.status.code(),
        Some(1),
        "the buggy service must fail the gate:\n{stdout}\n{stderr}"
    );
    let json = stdout.lines().find(|l| l.starts_with('{')).expect("the gate's JSON");
    let g: dualcheck::gate::GateOutcome = parse("orders-buggy-gate", json, &stderr);
    assert_eq!(g.end, dualcheck::gate::GateEnd::Failed);
    assert_eq!(g.implementation, "orders-service", "--name names what was gated");
    let last = g.runs.last().expect("a run");
    assert!(last.anomalies.contains(&checkers::Anomaly::Lost), "{g:?}");
    assert!(
        g.runs[..g.runs.len() - 1].iter().all(|r| r.anomalies.is_empty()),
        "it stops at the first invalid run"
    );
    assert!(g.wall_s < g.budget_s, "{g:?}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("::error title=dualcheck gate: orders-service::lost:")),
        "an annotation names the anomaly:\n{stdout}"
    );
    let replay = g.replay.as_deref().expect("a replay command");
    assert!(
        replay.contains("--replay") && replay.contains(last.run_dir.to_str().unwrap()),
        "{replay}"
    );
    assert!(
        g.run_command.as_deref().is_some_and(|c| c.contains("--schedule")),
        "{g:?}"
    );
    let summary = std::fs::read_to_string(&step_summary).expect("$GITHUB_STEP_SUMMARY written");
    assert!(
        summary.contains("## dualcheck gate: orders-service — FAILED") && summary.contains("| lost |"),
        "{summary}"
    );
    assert_eq!(
        summary,
        std::fs::read_to_string(g.dir.join("summary.md")).unwrap() + "\n"
    );
    let junit = std::fs::read_to_string(g.dir.join("junit.xml")).unwrap();
    assert!(junit.contains("<failure") && junit.contains("lost"), "{junit}");
    assert!(
        junit.contains("<testsuite name=\"dualcheck.gate.orders-service\""),
        "the suite takes --name: {junit}"
    );
    assert!(last.run_dir.join("history.jsonl").exists());
}

#[test]
fn a_mapping_pointing_at_a_missing_field_completes_with_a_warning_and_unexpected_deliveries() {
    // The flag overrides the file's records.op (/reference): the events have no `data`.
    let (code, v) = run_orders(
        "orders-missing-field",
        "service.py",
        &["--record-op", "/data/reference", "--duration", "5s"],
    );
    assert_eq!(code, 1, "unexpected deliveries make the run invalid: {v:?}");
    let deliveries = v.result.deliveries;
    assert!(deliveries > 50, "{v:?}");
    assert_eq!(
        v.result.anomalies.unexpected, deliveries,
        "every record is unreadable: {v:?}"
    );
    let warnings: Vec<&str> = v.result.warnings.iter().map(String::as_str).collect();
    let w = warnings
        .iter()
        .find(|w| w.contains("--record-op /data/reference"))
        .unwrap_or_else(|| panic!("no warning names the field: {warnings:?}"));
    assert!(
        w.contains("no such field") && w.contains("in record orders/") && w.contains("OrderCreated"),
        "the warning names the first record and shows it: {w}"
    );
    assert!(w.contains(&format!("{deliveries} record(s)")), "{w}");
}

#[test]
fn template_mistakes_exit_2_naming_the_flag_before_anything_starts() {
    let template = example().join("dualcheck-template.toml");
    let template = template.to_str().unwrap();
    for (args, flag, what) in [
        (
            vec!["--request-body", r#"{"customerId":"{customer}"}"#],
            "--request-body",
            "unknown placeholder {customer}",
        ),
        (
            vec!["--request-header", "X-Request-Id: {uuid}"],
            "--request-header",
            "unknown placeholder {uuid}",
        ),
        (vec!["--record-op", "reference"], "--record-op", "is not a JSON pointer"),
        (vec!["--read-seq", "lineNo"], "--read-seq", "is not a JSON pointer"),
    ] {
        let out = out_dir(&format!("mistake-{}", flag.trim_start_matches('-')));
        let mut all = vec![
            "--cmd",
            "sleep 600",
            "--committed-sql",
            COMMITTED_SQL,
            "--template",
            template,
        ];
        all.extend(args.iter().copied());
        let (code, _, stderr) = dualcheck_run(&out, &all);
        assert_eq!(code, 2, "{flag}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(what),
            "{flag}: the error names the flag and the mistake: {stderr}"
        );
        assert_eq!(
            std::fs::read_dir(&out).unwrap().count(),
            0,
            "{flag}: a run directory was made: something started"
        );
    }
}
