//! What `dualcheck run` must show, each a real run against real
//! Postgres, Kafka and Toxiproxy started by the harness, through the
//! `dualcheck` binary exactly as a user runs it. Runs are serialized: each
//! starts its own environment, and two at once would not fit two cores.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::runs::{assert_no_process_left, out_dir, parse_output, processes_of, run_beside};
use dualcheck::sweep::SweepOutcome;

const ALL_FAULTS: &str =
    "kafka-partition,pg-partition,kafka-kill,pg-kill,relay-kill,crash-after-commit,rolling-restart,clock-skew";

/// Both ways the naive pattern loses, in one run: a publish that fails while
/// Kafka is partitioned, and a crash between the commit and the publish.
#[test]
#[ignore = "a verdict-matrix cell: scripts/verdict-matrix runs naive under these faults over many seeds (docs/verdicts.md); the suite keeps live_campaigns' sweep test, where naive shows lost in 2 of 2 runs under the same faults, and the trail of a lost op under kafka-partition (trails.rs); run it with --ignored"]
fn naive_loses_events_when_kafka_is_partitioned_and_when_it_crashes_after_commit() {
    let (code, v) = run_beside(
        "naive-partition-crash",
        &[
            "--impl",
            "naive",
            "--faults",
            "kafka-partition,crash-after-commit",
            "--duration",
            "15s",
        ],
    );
    assert_eq!(code, 1);
    assert!(v.result.anomalies.lost > 0, "{v:?}");
}

/// The `clock-skew` fault reaches the instance: a relay that reads by the
/// application's timestamp (the `app-timestamp` mutant of `outbox-xid`)
/// loses the events written after the skewed clock steps back, while the
/// correct relay beside it, two instances each with its own relay and one
/// of them skewed, stays valid.
#[test]
fn an_app_timestamp_relay_loses_under_clock_skew_and_the_xid_relay_does_not() {
    assert_loses_in_twelve_seconds(
        "app-timestamp",
        &[
            "--impl",
            "outbox-xid",
            "--app-env",
            "DUALCHECK_BUG=app-timestamp",
            "--faults",
            "clock-skew",
        ],
    );
    let (code, v) = run_beside(
        "xid-skew-replicas",
        &[
            "--impl",
            "outbox-xid",
            "--faults",
            "clock-skew",
            "--replicas",
            "2",
            "--duration",
            "12s",
            "--seed",
            "1",
        ],
    );
    assert_eq!(code, 0, "{v:?}");
    assert!(v.result.faults.iter().any(|w| w.fault == "clock-skew"), "{v:?}");
    assert!(v.run_dir.join("app-1.log").exists(), "the second instance's log");
}

#[test]
fn naive_publish_first_publishes_phantoms_when_postgres_is_partitioned() {
    let (code, v) = run_beside(
        "publish-first",
        &[
            "--impl",
            "naive-publish-first",
            "--faults",
            "pg-partition",
            "--duration",
            "15s",
        ],
    );
    assert_eq!(code, 1);
    assert!(v.result.anomalies.phantom > 0, "{v:?}");
}

#[test]
#[ignore = "a verdict-matrix cell: scripts/verdict-matrix runs the negative controls over 20 seeds (docs/verdicts.md; outbox-idcursor lost in 20 of 20); the suite keeps outbox_idcursor_skips_events_of_slow_commits; run it with --ignored"]
fn outbox_idcursor_skips_events_of_late_committers() {
    // "In most seeds": the first of three seeds that shows it is enough here;
    // the note's table gives the rate over 20 seeds.
    let mut results = Vec::new();
    for seed in ["1", "2", "3"] {
        let (code, v) = run_beside(
            "idcursor",
            &["--impl", "outbox-idcursor", "--duration", "15s", "--seed", seed],
        );
        if v.result.anomalies.lost > 0 {
            assert_eq!(code, 1);
            return;
        }
        results.push(v.result.anomalies);
    }
    panic!("outbox-idcursor lost nothing in three seeds: {results:?}");
}

/// `pg-slow-commit` makes transactions overlap inside the database, for any
/// service: with no long transactions of the workload's own
/// (`--long-fraction 0`), the id-cursor relay still skips the events of
/// transactions that took their ids early and committed late.
#[test]
fn outbox_idcursor_skips_events_of_slow_commits() {
    assert_loses_in_twelve_seconds(
        "idcursor-slow-commit",
        &[
            "--impl",
            "outbox-idcursor",
            "--faults",
            "pg-slow-commit",
            "--long-fraction",
            "0",
        ],
    );
}

/// A 12 s run of seed 1 with `args` is invalid, shows `lost`, and every
/// fault took effect.
fn assert_loses_in_twelve_seconds(name: &str, args: &[&str]) {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--duration", "12s", "--seed", "1"]);
    let (code, v) = run_beside(name, &all);
    assert_eq!(code, 1, "{v:?}");
    assert!(v.result.anomalies.lost > 0, "{:?}", v.result.anomalies);
    assert!(v.nemesis_errors.is_empty(), "{:?}", v.nemesis_errors);
}

#[test]
fn outbox_xid_is_valid_without_faults() {
    let (code, v) = run_beside(
        "xid-clean",
        &["--impl", "outbox-xid", "--duration", "8s", "--seed", "1"],
    );
    assert_eq!(code, 0, "{v:?}");
    assert!(v.result.valid);
    assert!(v.result.ops.ok > 100, "the workload ran: {v:?}");
    // The operational series: sampled every 500 ms, the outbox table's size
    // and the relay's backlog; no replication slot for an outbox.
    let m = v.ops_max.as_ref().expect("ops_max in the results");
    assert!(m.samples >= 14, "8 s sampled every 500 ms: {m:?}");
    assert!(m.outbox_bytes.unwrap() > 0, "{m:?}");
    assert!(m.backlog.is_some() && m.parked == Some(0), "{m:?}");
    assert!(m.wal_retained_bytes.is_none(), "no slot: {m:?}");
    let dir = &v.run_dir;
    let lines = std::fs::read_to_string(dir.join("ops.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), m.samples);
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("Backlog over time") && html.contains("outbox table size"));
}

fn assert_valid_under_all_faults(name: &str, args: &[&str]) {
    let mut all = vec!["--faults", ALL_FAULTS, "--duration", "20s", "--seed", "7"];
    all.extend_from_slice(args);
    let (code, v) = run_beside(name, &all);
    assert_eq!(code, 0, "{name} must be valid under faults: {v:?}");
    assert!(v.result.ops.ok > 100, "the workload ran: {v:?}");
    // `faults` is the list chosen from (`fault_names` in the JSON);
    // `result.faults` the check's fault windows.
    let faults_run = v.faults.len();
    assert_eq!(faults_run, 8, "{v:?}");
    assert!(!v.result.faults.is_empty(), "fault windows: {v:?}");
}

/// Two instances, three relay tasks each competing for the shard locks
/// across processes, reads sent to the other instance than the write.
#[test]
fn outbox_poll_with_two_replicas_of_three_relays_is_valid_under_faults() {
    let args = ["--impl", "outbox-poll", "--relays", "3", "--replicas", "2", "--reads"];
    assert_valid_under_all_faults("poll-faults", &args);
}

#[test]
#[ignore = "a verdict-matrix cell: scripts/verdict-matrix runs every correct pattern under the network and process faults over many seeds (docs/verdicts.md); run it with --ignored"]
fn outbox_notify_is_valid_under_faults() {
    assert_valid_under_all_faults("notify-faults", &["--impl", "outbox-notify"]);
}

#[test]
#[ignore = "a verdict-matrix cell: scripts/verdict-matrix runs every correct pattern under the network and process faults over many seeds (docs/verdicts.md); run it with --ignored"]
fn outbox_xid_is_valid_under_faults() {
    assert_valid_under_all_faults("xid-faults", &["--impl", "outbox-xid"]);
}

#[test]
fn ctrl_c_mid_run_leaves_no_process_and_a_readable_history() {
    let _guard = crate::support::alone();
    let out = out_dir("ctrl-c");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args([
            "run",
            "--impl",
            "outbox-poll",
            "--faults",
            "kafka-partition",
            "--duration",
            "120s",
            "--json",
        ])
        .args(["--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the workload runs (ops in the history), then interrupt.
    let started = Instant::now();
    let history = loop {
        let found = std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.path().join("history.jsonl"))
            .find(|h| std::fs::metadata(h).map(|m| m.len() > 2000).unwrap_or(false));
        if let Some(h) = found {
            break h;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the run never started its workload"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        !processes_of(&out).is_empty(),
        "the run's services should be running now"
    );
    // SAFETY: plain syscall on our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "an interrupted run does not claim success");
    assert_no_process_left(&out);
    // The history written so far is still checkable: an interrupted run is
    // no verdict (unknown, exit 3) unless the user asks to judge it as complete.
    let check = |extra: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
            .args(["check", history.to_str().unwrap(), "--json"])
            .args(extra)
            .output()
            .unwrap();
        (
            output.status.code().unwrap(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = check(&[]);
    assert_eq!(code, 3, "an interrupted history is judged unknown: {stderr}");
    let (code, stderr) = check(&["--assume-complete"]);
    assert!(code == 0 || code == 1, "{stderr}");
}

#[test]
fn compare_gives_one_row_per_implementation_with_its_verdict() {
    // naive loses under a partition longer than its publish attempts (two of
    // 1 s each, with a back-off between): a seed whose schedule cuts Kafka
    // off for 3 s or more once, so the loss does not hang on how short
    // windows line up with the attempts. outbox-poll stays valid under it.
    let duration = std::time::Duration::from_secs(12);
    let seed = crate::support::runs::seed_where("kafka-partition", duration, |s| {
        crate::support::runs::windows(s, "kafka-partition")
            .iter()
            .any(|(a, b)| *b - *a >= std::time::Duration::from_secs(3) && *b < duration)
    })
    .to_string();
    let _guard = crate::support::beside_another();
    let out = out_dir("compare");
    let output = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args([
            "compare",
            "--impls",
            "naive,outbox-poll",
            "--faults",
            "kafka-partition",
            "--duration",
            "12s",
            "--first-seed",
            &seed,
            "--json",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .expect("starting dualcheck compare");
    let v: SweepOutcome = parse_output("compare", &output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "naive's anomalies make the exit code 1: {v:?}"
    );
    let rows = &v.rows;
    assert_eq!(rows.len(), 2, "{v:?}");
    let row = |name: &str| rows.iter().find(|r| r.implementation == name).expect(name);
    assert_eq!(row("naive").verdict, "INVALID", "{v:?}");
    assert!(row("naive").anomalies.lost > 0, "{v:?}");
    assert_eq!(row("outbox-poll").verdict, "valid", "{v:?}");
    assert_eq!(row("outbox-poll").anomalies.lost, 0, "{v:?}");
    let html = std::fs::read_to_string(&v.html).expect("compare.html");
    for r in rows {
        let report = &r.reports[0];
        assert!(report.exists(), "{}", report.display());
        assert!(html.contains(&r.implementation));
    }
    assert_no_process_left(&out);
}

/// `--restart-before-drain`: the implementation is restarted once between
/// the heal and the drain (a second start in its log, one `restart` line in
/// the history), the run stays valid, and `delivered_after_restart` is
/// counted: 0 for a correct pattern that delivered everything before.
#[test]
fn a_restart_before_the_drain_is_recorded_and_counted() {
    let (code, v) = run_beside(
        "restart-before-drain",
        &[
            "--impl",
            "outbox-poll",
            "--faults",
            "kafka-partition",
            "--duration",
            "6s",
            "--seed",
            "3",
            "--restart-before-drain",
        ],
    );
    assert_eq!(code, 0, "{v:?}");
    assert_eq!(v.result.delivered_after_restart, Some(0), "{v:?}");
    let history = std::fs::read_to_string(v.run_dir.join("history.jsonl")).unwrap();
    assert_eq!(history.matches(r#""type":"restart""#).count(), 1);
    let log = std::fs::read_to_string(v.run_dir.join("app.log")).unwrap();
    assert_eq!(
        log.matches(" ready on 127.0.0.1:").count(),
        2,
        "started, then restarted"
    );
    assert!(v.nemesis_errors.is_empty(), "{:?}", v.nemesis_errors);
}
