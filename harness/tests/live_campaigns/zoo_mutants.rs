//! The bug zoo's mutants (issue 15), one test per family, through the binary
//! as a user runs it, on real Postgres, Kafka and Toxiproxy: each mutant
//! (`DUALCHECK_BUG=NAME`) runs under the fault list it declares, in one
//! `dualcheck sweep` per family (services started once), and must be caught
//! with the anomaly it declares.
//!
//! These are verdict sweeps, so they are `#[ignore]`d in the default suite:
//! `scripts/bug-zoo` measures every mutant over 20 seeds (docs/zoo.md), and
//! `cargo test --test live_campaigns -- --ignored` runs them here. The zoo
//! command itself is tested in `zoo.rs` (two mutants on two seeds).

use checkers::Anomaly;
use dualcheck::sweep::SweepOutcome;
use std::process::Command;

use crate::support::runs::{assert_no_process_left, out_dir, parse};

/// Runs `dualcheck sweep --json` over `impls` under `faults` on `seeds`
/// seeds from `first_seed`, `duration` each; returns (exit code, object).
fn sweep(name: &str, impls: &[&str], faults: &str, first_seed: u64, seeds: u64, duration: &str) -> (i32, SweepOutcome) {
    let _guard = crate::support::alone();
    let out = out_dir(name);
    let output = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args([
            "sweep",
            "--impls",
            &impls.join(","),
            "--faults",
            faults,
            "--first-seed",
            &first_seed.to_string(),
            "--seeds",
            &seeds.to_string(),
            "--duration",
            duration,
            "--json",
            "--out",
            out.to_str().unwrap(),
        ])
        .output()
        .expect("starting dualcheck sweep");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let v: SweepOutcome = parse(name, &stdout, &stderr);
    assert_no_process_left(&out);
    eprintln!("{name}: {stdout}");
    (output.status.code().unwrap_or(-1), v)
}

/// Asserts the row of `label` ran every seed without error, each run caught
/// (as expected), with at least one `anomaly`.
fn assert_caught(v: &SweepOutcome, label: &str, anomaly: Anomaly) {
    let row = v
        .rows
        .iter()
        .find(|r| r.implementation == label)
        .unwrap_or_else(|| panic!("no row {label}: {v:?}"));
    assert_eq!(row.errors.len(), 0, "{label}: {v:?}");
    assert!(row.runs > 0, "{label}: {v:?}");
    assert_eq!(row.verdict, "INVALID", "{label} not caught: {v:?}");
    assert_eq!(row.as_expected, row.runs, "{label}: every run caught: {v:?}");
    assert!(
        row.anomalies.get(anomaly) > 0,
        "{label}: caught, but without {}: {v:?}",
        anomaly.name()
    );
}

/// The request side of the outbox: `publish-in-transaction` (outbox-poll)
/// and `no-xmin-guard` (outbox-xid) need no fault: the workload's aborted
/// ops and long transactions expose them.
#[test]
#[ignore = "a verdict sweep: scripts/bug-zoo measures every mutant over 20 seeds (docs/zoo.md); run it with --ignored"]
fn outbox_request_and_cursor_mutants_are_caught_without_faults() {
    let impls = [
        "outbox-poll+DUALCHECK_BUG=publish-in-transaction",
        "outbox-xid+DUALCHECK_BUG=no-xmin-guard",
    ];
    let (code, v) = sweep("zoo-outbox-request", &impls, "none", 0, 1, "10s");
    assert_caught(&v, impls[0], Anomaly::Phantom);
    assert_caught(&v, impls[1], Anomaly::Lost);
    assert_eq!(code, 0, "every cell as expected: {v:?}");
}

/// The sharded relay's mutant `unordered-relays` under a Kafka partition:
/// rows retried alone while their key's later rows go out (reorder).
#[test]
#[ignore = "a verdict sweep: scripts/bug-zoo measures every mutant over 20 seeds (docs/zoo.md); run it with --ignored"]
fn the_unordered_relays_mutant_is_caught_under_a_kafka_partition() {
    let impls = ["outbox-poll+DUALCHECK_BUG=unordered-relays"];
    let (code, v) = sweep("zoo-outbox-relay", &impls, "kafka-partition", 0, 1, "12s");
    assert_caught(&v, impls[0], Anomaly::Reorder);
    assert_eq!(code, 0, "every cell as expected: {v:?}");
}

/// `delete-before-ack` under its faults: a kill while the producer holds
/// records whose rows are gone. Every schedule of these two faults nests a
/// kill inside a Kafka partition (workloads/src/schedule.rs); without the
/// nesting, seeds whose kills fell outside partitions did not catch it.
#[test]
#[ignore = "a verdict sweep: scripts/bug-zoo measures every mutant over 20 seeds (docs/zoo.md); run it with --ignored"]
fn the_delete_before_ack_mutant_is_caught_by_a_kill_inside_a_partition() {
    let impls = ["outbox-poll+DUALCHECK_BUG=delete-before-ack"];
    let (code, v) = sweep(
        "zoo-delete-before-ack",
        &impls,
        "kafka-partition,relay-kill",
        3,
        1,
        "15s",
    );
    assert_caught(&v, impls[0], Anomaly::Lost);
    assert_eq!(code, 0, "every cell as expected: {v:?}");
}

/// `new-id-on-retry` under Postgres resets: a pulse that cuts the relay
/// between Kafka's acknowledgement and its COMMIT leaves the row, and the
/// republish carries a new event id. One reset per window cut the relay once,
/// mostly while it was idle (caught in 3 of 5 seeds); the pulses
/// (docs/faults.md#reset-pulses) cut it at many points of its loop.
#[test]
#[ignore = "a verdict sweep: scripts/bug-zoo measures every mutant over 20 seeds (docs/zoo.md); run it with --ignored"]
fn the_new_id_on_retry_mutant_is_caught_under_postgres_resets() {
    let impls = ["outbox-poll+DUALCHECK_BUG=new-id-on-retry"];
    let (code, v) = sweep("zoo-new-id-on-retry", &impls, "pg-reset", 2, 1, "12s");
    assert_caught(&v, impls[0], Anomaly::DuplicateBeyondIdempotency);
    assert_eq!(code, 0, "every cell as expected: {v:?}");
}

/// `new-slot-on-restart` (cdc-logical): a relay kill loses what was
/// committed while the tailer was down.
#[test]
#[ignore = "a verdict sweep: scripts/bug-zoo measures every mutant over 20 seeds (docs/zoo.md); run it with --ignored"]
fn the_cdc_mutant_is_caught_under_a_relay_kill() {
    let impls = ["cdc-logical+DUALCHECK_BUG=new-slot-on-restart"];
    let (code, v) = sweep("zoo-cdc", &impls, "relay-kill", 0, 1, "12s");
    assert_caught(&v, impls[0], Anomaly::Lost);
    assert_eq!(code, 0, "every cell as expected: {v:?}");
}

/// `commit-offset-before-write` (kafka-first): a process that dies while
/// the consumer's write waits never applies the record.
#[test]
#[ignore = "a verdict sweep: scripts/bug-zoo measures every mutant over 20 seeds (docs/zoo.md); run it with --ignored"]
fn the_consumer_mutant_is_caught_when_the_service_dies() {
    let impls = ["kafka-first+DUALCHECK_BUG=commit-offset-before-write"];
    let (code, v) = sweep("zoo-consumer", &impls, "crash-after-commit", 0, 1, "12s");
    assert_caught(&v, impls[0], Anomaly::Phantom);
    assert_eq!(code, 0, "every cell as expected: {v:?}");
}
