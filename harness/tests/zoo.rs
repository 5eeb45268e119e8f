//! `dualcheck zoo` (issue 15) through the binary as a user runs it, on real
//! Postgres, Kafka and Toxiproxy: two mutants × two seeds, each beside its
//! correct pattern, and the names it refuses.

use serde_json::Value;
use std::process::Command;

mod run_support;
use run_support::{assert_no_process_left, out_dir, ONE_AT_A_TIME};

fn zoo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .arg("zoo")
        .args(args)
        .output()
        .expect("running dualcheck zoo")
}

#[test]
fn two_mutants_on_two_seeds_are_caught_and_their_correct_pattern_stays_valid() {
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = out_dir("zoo-two");
    let o = zoo(&[
        "--mutants",
        "naive,cdc-logical/confirm-early",
        "--seeds",
        "2",
        "--first-seed",
        "1",
        "--duration",
        "12s",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{stderr}"));
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "one row per mutant: {stdout}");
    let naive = rows.iter().find(|r| r["mutant"] == "naive").unwrap();
    assert_eq!(
        (naive["caught"].as_u64(), naive["runs"].as_u64()),
        (Some(2), Some(2)),
        "{naive}"
    );
    assert_eq!(naive["faults"], "kafka-partition,crash-after-commit");
    assert!(naive["baseline"].is_null(), "naive is a control as it is");
    assert!(naive["anomalies"].as_array().unwrap().contains(&Value::from("lost")));
    let first = naive["first_anomaly_s"]
        .as_f64()
        .expect("the time to the first anomaly");
    assert!(first > 0.0 && first < 12.0, "{first}");
    let early = rows.iter().find(|r| r["mutant"] == "confirm-early").unwrap();
    assert_eq!(early["implementation"], "cdc-logical+DUALCHECK_CDC_CONFIRM=early");
    assert_eq!(
        (early["caught"].as_u64(), early["runs"].as_u64()),
        (Some(2), Some(2)),
        "{early}"
    );
    let baseline = &early["baseline"];
    assert_eq!(baseline["implementation"], "cdc-logical");
    assert_eq!(
        (baseline["valid"].as_u64(), baseline["runs"].as_u64()),
        (Some(2), Some(2)),
        "{baseline}"
    );
    // Three cells (naive, the mutant, the correct cdc-logical) × two seeds.
    assert_eq!(v["sweep"]["rows"].as_array().unwrap().len(), 3);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_no_process_left(&out);
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
}
