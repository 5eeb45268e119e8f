//! `dualcheck zoo` (issue 15) through the binary as a user runs it, on real
//! Postgres, Kafka and Toxiproxy: two mutants × two seeds, each beside its
//! correct pattern, and the names it refuses.

use checkers::Anomaly;
use dualcheck::zoo::{ZooOutcome, ZooRow};
use serde::de::DeserializeOwned;
use std::process::Command;

use crate::support::runs::{assert_no_process_left, out_dir, parse_output};

/// What `dualcheck zoo --merge --json` prints (cli/zoo.rs writes this
/// envelope with `json!`; no library type has it). A zoo that ran prints a
/// whole [`ZooOutcome`].
#[derive(Debug, serde::Deserialize)]
struct Merged {
    rows: Vec<ZooRow>,
}

fn zoo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .arg("zoo")
        .args(args)
        .output()
        .expect("running dualcheck zoo")
}

/// Runs `dualcheck zoo ARGS --json`: its exit code and what it printed, as `T`.
fn zoo_json<T: DeserializeOwned>(args: &[&str]) -> (Option<i32>, T) {
    let o = zoo(&[args, &["--json"]].concat());
    let v = parse_output("zoo", &o);
    (o.status.code(), v)
}

/// The zoo in two shards (each a sitting of its own, on services of its
/// own), joined by `--merge`: the rows of the whole zoo.
#[test]
fn two_mutants_on_two_seeds_are_caught_and_their_correct_pattern_stays_valid() {
    let _guard = crate::support::alone();
    let out = out_dir("zoo-two");
    let zoo_args = |shard: &'static str| {
        vec![
            "--mutants",
            "naive,cdc-logical/confirm-early",
            "--seeds",
            "2",
            "--first-seed",
            "1",
            "--duration",
            "10s",
            "--shard",
            shard,
        ]
    };
    let mut shards = Vec::new();
    for shard in ["1/2", "2/2"] {
        let dir = out.join(shard.replace('/', "-of-"));
        let (code, v): (_, ZooOutcome) = zoo_json(&[zoo_args(shard), vec!["--out", dir.to_str().unwrap()]].concat());
        // Cells in order, each with its seeds: naive 1, 2; the mutant 1, 2;
        // cdc-logical 1, 2 — every other run is this shard's, one seed of each.
        let runs: Vec<u64> = v.rows.iter().map(|r| r.runs).collect();
        assert_eq!(runs, [1, 1], "shard {shard}: {v:?}");
        assert_eq!(code, Some(0), "shard {shard}: {v:?}");
        shards.push(dir);
        assert_no_process_left(&out);
    }
    let dirs: Vec<&str> = shards.iter().map(|d| d.to_str().unwrap()).collect();
    let (code, v): (_, Merged) = zoo_json(&[&["--merge"], dirs.as_slice()].concat());
    let rows = &v.rows;
    assert_eq!(rows.len(), 2, "one row per mutant: {v:?}");
    let naive = rows.iter().find(|r| r.mutant == "naive").unwrap();
    assert_eq!((naive.caught, naive.runs), (2, 2), "{naive:?}");
    assert_eq!(naive.faults, "kafka-partition,crash-after-commit");
    assert!(naive.baseline.is_none(), "naive is a control as it is");
    assert!(naive.anomalies.contains(&Anomaly::Lost));
    let first = naive.first_anomaly_s.expect("the time to the first anomaly");
    assert!(first > 0.0 && first < 10.0, "{first}");
    let early = rows.iter().find(|r| r.mutant == "confirm-early").unwrap();
    assert_eq!(early.implementation, "cdc-logical+DUALCHECK_CDC_CONFIRM=early");
    assert_eq!((early.caught, early.runs), (2, 2), "{early:?}");
    let baseline = early.baseline.as_ref().expect("the correct pattern beside the mutant");
    assert_eq!(baseline.implementation, "cdc-logical");
    assert_eq!((baseline.valid, baseline.runs), (2, 2), "{baseline:?}");
    assert_eq!(code, Some(0), "{v:?}");
    // One shard alone: its seed only, and the selection picks rows.
    let (code, v): (_, Merged) = zoo_json(&["--merge", dirs[1], "--mutants", "naive"]);
    assert_eq!(code, Some(0), "{v:?}");
    let rows = &v.rows;
    assert_eq!(rows.len(), 1, "{v:?}");
    assert_eq!(rows[0].runs, 1, "{v:?}");
    // Nothing to merge: exit 2, saying where it looked.
    let empty = out.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = zoo(&["--merge", empty.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no sweep or run found"));
}

#[test]
fn unknown_and_misplaced_mutants_exit_2_naming_the_mutants_that_exist() {
    let o = zoo(&["--mutants", "drop-every-tenth"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no mutant `drop-every-tenth`") && err.contains("cdc-logical/confirm-early"),
        "{err}"
    );
    // confirm-early belongs to the CDC patterns, not to the outbox.
    let o = zoo(&["--mutants", "outbox-poll/confirm-early"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("it belongs to cdc-logical"), "{err}");
    // The same through a sweep's knob: refused before any service starts.
    let o = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args([
            "sweep",
            "--impls",
            "outbox-xid+DUALCHECK_BUG=delete-before-ack",
            "--duration",
            "2s",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the mutants of outbox-xid are") && err.contains("belongs to outbox-poll"),
        "{err}"
    );
}
