//! Change data capture under faults, each a real run through the
//! `dualcheck` binary: our own WAL tailer (`cdc-logical`, `cdc-outbox`) and the
//! real Debezium in Kafka Connect (`debezium`) must stay valid (duplicates
//! allowed) under network, kill, schema and noise faults, and drop their
//! replication slots at teardown; a tailer that confirms WAL positions before
//! Kafka acknowledged them must be caught losing events. The `cdc-outbox`
//! and `debezium` runs carry transactions of several events (a `COPY`, a
//! multi-row `INSERT`): every event of each is judged, none published in part.

use dualcheck::runner::RunOutcome;
use std::time::Duration;
use workloads::FaultPhase;

use crate::support::runs::{run, run_beside, seed_where, windows};

const CDC_FAULTS: &str = "kafka-partition,pg-partition,kafka-kill,pg-kill,relay-kill,schema-change,noise";

fn assert_valid_under_faults(name: &str, implementation: &str, slot: &str, workload: &[&str]) -> RunOutcome {
    // A seed whose schedule starts the faults that matter most for CDC
    // before a broker or Postgres is restarted (a restart under load can
    // take seconds and delay later steps past the workload, and then they
    // are skipped), and changes the schema at some point.
    let seed = seed_where(CDC_FAULTS, Duration::from_secs(15), |s| {
        let first_restart = s
            .steps
            .iter()
            .filter(|e| e.phase == FaultPhase::Stop && ["pg-kill", "kafka-kill"].contains(&e.fault.name()))
            .map(|e| e.at)
            .next()
            .unwrap_or(Duration::MAX);
        let early = ["relay-kill", "pg-kill", "kafka-partition"].iter().all(|f| {
            windows(s, f)
                .first()
                .is_some_and(|w| w.0 < first_restart.min(Duration::from_secs(9)))
        });
        early && !windows(s, "schema-change").is_empty()
    })
    .to_string();
    // Debezium (a Kafka Connect worker beside the broker) runs alone; the
    // CDC tailers may share the machine with another correct run.
    let run = if implementation == "debezium" { run } else { run_beside };
    let mut args = vec![
        "--impl",
        implementation,
        "--faults",
        CDC_FAULTS,
        "--duration",
        "15s",
        "--seed",
        &seed,
    ];
    args.extend_from_slice(workload);
    let (code, v) = run(name, &args);
    assert_eq!(code, 0, "{implementation} must be valid under {CDC_FAULTS}: {v:?}");
    assert!(v.result.ops.ok > 0, "{v:?}");
    if !workload.is_empty() {
        // Transactions of several events were run and each event delivered.
        assert!(v.result.multi_event_ops > v.result.ops.invoked / 2, "{v:?}");
        assert_eq!(v.result.anomalies.partial, 0, "{v:?}");
        assert!(v.result.deliveries >= v.result.events_expected, "{v:?}");
        assert!(v.result.events_expected > v.result.ops.ok, "{v:?}");
    }
    // Every fault is healed before the drain: a correct pipeline drains within
    // the timeout (a backlog that can answer 0 only by luck would not).
    assert!(v.drained, "{implementation} did not drain: {v:?}");
    // Every fault of the list was injected at least once (else the verdict says little).
    let injected: Vec<&str> = v.result.faults.iter().map(|f| f.fault.as_str()).collect();
    for fault in ["relay-kill", "pg-kill", "kafka-partition"] {
        assert!(injected.contains(&fault), "{fault} never injected: {injected:?}");
    }
    // Slot hygiene: the run's slot was dropped at teardown.
    assert_eq!(v.slots_dropped, [slot], "{v:?}");
    // The operational series: the WAL the run's slot retained, sampled by the
    // harness; the outbox table's size for the outbox patterns only.
    let m = v.ops_max.as_ref().expect("ops_max in the results");
    assert!(m.wal_retained_bytes.unwrap() > 0, "{m:?}");
    assert_eq!(m.outbox_bytes.is_none(), implementation == "cdc-logical", "{m:?}");
    let lines = std::fs::read_to_string(v.run_dir.join("ops.jsonl")).unwrap();
    assert!(lines.lines().any(|l| l.contains(slot)), "the slot sampled by name");
    v
}

#[test]
fn cdc_logical_is_valid_under_faults() {
    assert_valid_under_faults("cdc-logical-faults", "cdc-logical", "dualcheck_logical_dualcheck", &[]);
}

#[test]
fn cdc_outbox_is_valid_under_faults() {
    // One COPY per transaction: several decoded changes share a WAL position.
    assert_valid_under_faults(
        "cdc-outbox-faults",
        "cdc-outbox",
        "dualcheck_outbox_dualcheck",
        &["--events-per-op", "1-6", "--keys-per-op", "2", "--write", "copy"],
    );
}

#[test]
fn debezium_is_valid_under_faults() {
    assert_valid_under_faults(
        "debezium-faults",
        "debezium",
        "dualcheck_debezium_dualcheck",
        &["--events-per-op", "1-6", "--write", "multi-row"],
    );
}

#[test]
fn early_lsn_confirmation_loses_events_when_the_relay_is_killed() {
    let duration = Duration::from_secs(15);
    // A seed whose schedule kills the relay at least 0.25 s into a Kafka
    // partition: events read from the WAL meanwhile wait in the producer, so a
    // tailer that already confirmed them loses them in the kill.
    let seed = seed_where("kafka-partition,relay-kill", duration, |s| {
        let partitions = windows(s, "kafka-partition");
        windows(s, "relay-kill").iter().any(|&(kill, _)| {
            partitions
                .iter()
                .any(|&(a, b)| kill >= a + Duration::from_millis(250) && kill < b)
        })
    })
    .to_string();
    let args = |confirm: &'static str| {
        vec![
            "--impl".to_string(),
            "cdc-logical".into(),
            "--faults".into(),
            "kafka-partition,relay-kill".into(),
            "--duration".into(),
            "15s".into(),
            "--seed".into(),
            seed.clone(),
            "--app-env".into(),
            format!("DUALCHECK_CDC_CONFIRM={confirm}"),
        ]
    };
    let early = args("early");
    let early: Vec<&str> = early.iter().map(String::as_str).collect();
    let (code, v) = run("cdc-early-confirm", &early);
    assert_eq!(code, 1, "confirming before the Kafka ack must lose events: {v:?}");
    assert!(v.result.anomalies.lost > 0, "{v:?}");
    // The correct order of acknowledgments under the same faults: the zoo
    // (confirm-early beside cdc-logical, 20 seeds each, docs/zoo.md) and
    // cdc_logical_is_valid_under_faults here.
}
