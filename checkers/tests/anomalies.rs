//! One tiny hand-made history per anomaly, each checked against the
//! definitions in docs/anomalies.md.

use dualcheck_checkers::{check_reader, Anomaly, CheckOptions, CheckResult, Verdict};

fn check(lines: &str) -> CheckResult {
    check_reader("test", lines.as_bytes(), CheckOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

/// Checks the history made of these lines.
fn check_lines<S: std::borrow::Borrow<str>>(lines: &[S]) -> CheckResult {
    check(&lines.join("\n"))
}

fn check_exactly_once(lines: &str) -> CheckResult {
    check_reader(
        "test",
        lines.as_bytes(),
        CheckOptions {
            exactly_once: true,
            ..CheckOptions::default()
        },
    )
    .unwrap()
}

const INVOKE_1: &str = r#"{"type":"invoke","op":1,"process":0,"key":"k","seq":0,"time":1000}"#;
const OK_1: &str = r#"{"type":"ok","op":1,"process":0,"time":2000}"#;
const DELIVER_1: &str =
    r#"{"type":"deliver","op":1,"event":"e1","key":"k","seq":0,"topic":"t","partition":0,"offset":0,"time":3000}"#;

#[test]
fn a_clean_history_is_valid() {
    let r = check_lines(&[INVOKE_1, OK_1, DELIVER_1]);
    assert!(r.valid, "{r:?}");
    assert_eq!(r.anomalies, Default::default());
    assert_eq!(r.latency_ns.unwrap().p50, 1000);
    assert_eq!(r.first_violation_ns, None);
}

#[test]
fn the_first_violation_is_the_earliest_anomalous_event_of_a_violation_kind() {
    // Op 2 (invoked at 500) is delivered twice with one event id: a duplicate,
    // not a violation by default. Op 3 (invoked at 4000) and op 1 (at 1000) are lost.
    let r = check_lines(&[
        r#"{"type":"invoke","op":2,"process":1,"key":"j","seq":0,"time":500}"#,
        r#"{"type":"ok","op":2,"process":1,"time":600}"#,
        r#"{"type":"deliver","op":2,"event":"e2","key":"j","seq":0,"topic":"t","partition":0,"offset":0,"time":700}"#,
        r#"{"type":"deliver","op":2,"event":"e2","key":"j","seq":0,"topic":"t","partition":0,"offset":1,"time":800}"#,
        r#"{"type":"invoke","op":3,"process":0,"key":"k","seq":1,"time":4000}"#,
        r#"{"type":"ok","op":3,"process":0,"time":4100}"#,
        INVOKE_1,
        OK_1,
    ]);
    assert_eq!((r.anomalies.lost, r.anomalies.duplicate), (2, 1));
    assert_eq!(
        r.first_violation_ns,
        Some(1000),
        "op 1's invoke; the duplicate is no violation"
    );
}

#[test]
fn lost_an_ok_op_with_no_delivery() {
    let r = check_lines(&[INVOKE_1, OK_1]);
    assert_eq!(r.anomalies.lost, 1);
    assert!(!r.valid);
    assert_eq!(r.violations, vec!["lost"]);
    let ex = &r.examples[&Anomaly::Lost][0];
    assert_eq!((ex.op, ex.key.as_deref(), ex.seq), (Some(1), Some("k"), Some(0)));
}

#[test]
fn lost_a_committed_info_op_with_no_delivery() {
    let r = check_lines(&[
        INVOKE_1,
        r#"{"type":"info","op":1,"process":0,"time":2000,"error":"timeout"}"#,
        r#"{"type":"committed","op":1}"#,
    ]);
    assert_eq!(r.anomalies.lost, 1);
    assert_eq!(r.anomalies.lost_commit, 0);
}

#[test]
fn phantom_a_delivered_op_that_failed() {
    let r = check_lines(&[
        INVOKE_1,
        r#"{"type":"fail","op":1,"process":0,"time":2000,"error":"rollback"}"#,
        DELIVER_1,
    ]);
    assert_eq!(r.anomalies.phantom, 1);
    assert_eq!(r.violations, vec!["phantom"]);
}

#[test]
fn phantom_an_info_op_delivered_but_not_committed() {
    let r = check_lines(&[
        INVOKE_1,
        r#"{"type":"info","op":1,"process":0,"time":2000,"error":"timeout"}"#,
        DELIVER_1,
        r#"{"type":"invoke","op":2,"process":0,"key":"k","seq":1,"time":4000}"#,
        r#"{"type":"ok","op":2,"process":0,"time":5000}"#,
        r#"{"type":"deliver","op":2,"event":"e2","key":"k","seq":1,"topic":"t","partition":0,"offset":1,"time":6000}"#,
        r#"{"type":"committed","op":2}"#,
    ]);
    assert_eq!(r.anomalies.phantom, 1);
    assert_eq!(r.examples[&Anomaly::Phantom][0].op, Some(1));
}

#[test]
fn unexpected_a_delivery_of_an_op_never_invoked() {
    let r = check_lines(&[
        INVOKE_1,
        OK_1,
        DELIVER_1,
        r#"{"type":"deliver","op":99,"event":"e99","key":"k","seq":0,"topic":"t","partition":0,"offset":1,"time":3000}"#,
        r#"{"type":"deliver","op":null,"event":"noise","key":"n","topic":"t","partition":0,"offset":2,"time":3000}"#,
    ]);
    assert_eq!(r.anomalies.unexpected, 2);
    assert_eq!(r.violations, vec!["unexpected"]);
}

#[test]
fn duplicate_same_event_twice_is_absorbed_unless_exactly_once() {
    let again =
        r#"{"type":"deliver","op":1,"event":"e1","key":"k","seq":0,"topic":"t","partition":0,"offset":7,"time":9000}"#;
    let h = [INVOKE_1, OK_1, DELIVER_1, again].join("\n");
    let r = check(&h);
    assert_eq!(r.anomalies.duplicate, 1);
    assert_eq!(r.anomalies.duplicate_beyond_idempotency, 0);
    assert!(r.valid, "a duplicate alone is not a violation");
    let r = check_exactly_once(&h);
    assert!(!r.valid);
    assert_eq!(r.violations, vec!["duplicate"]);
}

#[test]
fn duplicate_beyond_idempotency_two_event_ids() {
    let other = r#"{"type":"deliver","op":1,"event":"e1-b","key":"k","seq":0,"topic":"t","partition":0,"offset":7,"time":9000}"#;
    let r = check_lines(&[INVOKE_1, OK_1, DELIVER_1, other]);
    assert_eq!(r.anomalies.duplicate_beyond_idempotency, 1);
    assert_eq!(r.anomalies.duplicate, 0);
    assert_eq!(
        r.examples[&Anomaly::DuplicateBeyondIdempotency][0].events,
        vec!["e1", "e1-b"]
    );
}

#[test]
fn reorder_a_lower_seq_after_a_higher_one() {
    let mut h = Vec::new();
    for (op, seq, offset) in [(1, 0, 0), (2, 1, 2), (3, 2, 1)] {
        h.push(format!(
            r#"{{"type":"invoke","op":{op},"process":0,"key":"k","seq":{seq},"time":{}}}"#,
            op * 10
        ));
        h.push(format!(
            r#"{{"type":"ok","op":{op},"process":0,"time":{}}}"#,
            op * 10 + 1
        ));
        h.push(format!(
            r#"{{"type":"deliver","op":{op},"event":"e{op}","key":"k","seq":{seq},"topic":"t","partition":0,"offset":{offset},"time":100}}"#
        ));
    }
    let r = check(&h.join("\n"));
    // log order: seq 0, seq 2, seq 1 -> seq 1 comes after seq 2.
    assert_eq!(r.anomalies.reorder, 1);
    assert_eq!(r.examples[&Anomaly::Reorder][0].seq, Some(1));
}

#[test]
fn reorder_is_not_judged_when_per_key_order_is_off() {
    // Records not keyed by the business key: Kafka orders nothing per key.
    let mut h = Vec::new();
    for (op, seq, partition) in [(1, 0, 0), (2, 1, 2), (3, 2, 1)] {
        h.push(format!(
            r#"{{"type":"invoke","op":{op},"process":0,"key":"k","seq":{seq},"time":{}}}"#,
            op * 10
        ));
        h.push(format!(
            r#"{{"type":"ok","op":{op},"process":0,"time":{}}}"#,
            op * 10 + 1
        ));
        h.push(format!(
            r#"{{"type":"deliver","op":{op},"event":"e{op}","topic":"t","partition":{partition},"offset":0,"time":100}}"#
        ));
    }
    let h = h.join("\n");
    assert_eq!(check(&h).anomalies.reorder, 1, "judged, the partitions look reordered");
    let r = check_reader(
        "test",
        h.as_bytes(),
        CheckOptions {
            per_key_order: false,
            ..CheckOptions::default()
        },
    )
    .unwrap();
    assert_eq!(r.anomalies.reorder, 0);
    assert!(r.valid, "{r:?}");
}

#[test]
fn reorder_ignores_redeliveries_and_other_keys() {
    let r = check_lines(&[
        r#"{"type":"invoke","op":1,"process":0,"key":"a","seq":0,"time":1}"#,
        r#"{"type":"ok","op":1,"process":0,"time":2}"#,
        r#"{"type":"invoke","op":2,"process":0,"key":"a","seq":1,"time":3}"#,
        r#"{"type":"ok","op":2,"process":0,"time":4}"#,
        r#"{"type":"invoke","op":3,"process":1,"key":"b","seq":0,"time":3}"#,
        r#"{"type":"ok","op":3,"process":1,"time":4}"#,
        r#"{"type":"deliver","op":2,"event":"x","key":"a","seq":1,"topic":"t","partition":0,"offset":5,"time":9}"#,
        r#"{"type":"deliver","op":3,"event":"z","key":"b","seq":0,"topic":"t","partition":0,"offset":0,"time":9}"#,
        r#"{"type":"deliver","op":1,"event":"y","key":"a","seq":0,"topic":"t","partition":0,"offset":1,"time":9}"#,
        // a redelivery of seq 0 after seq 1: the op's first delivery is in order
        r#"{"type":"deliver","op":1,"event":"y","key":"a","seq":0,"topic":"t","partition":0,"offset":9,"time":9}"#,
    ]);
    assert_eq!(r.anomalies.reorder, 0, "{r:?}");
    assert_eq!(r.anomalies.duplicate, 1);
}

#[test]
fn lost_commit_an_ok_op_missing_from_the_database() {
    let r = check_lines(&[
        INVOKE_1,
        OK_1,
        DELIVER_1,
        r#"{"type":"invoke","op":2,"process":0,"key":"k","seq":1,"time":4000}"#,
        r#"{"type":"ok","op":2,"process":0,"time":5000}"#,
        r#"{"type":"deliver","op":2,"event":"e2","key":"k","seq":1,"topic":"t","partition":0,"offset":1,"time":6000}"#,
        r#"{"type":"committed","op":2}"#,
    ]);
    assert_eq!(r.anomalies.lost_commit, 1);
    // also delivered without being committed:
    assert_eq!(r.anomalies.phantom, 1);
    assert_eq!(r.examples[&Anomaly::LostCommit][0].op, Some(1));
}

#[test]
fn without_committed_lines_ok_means_committed() {
    let r = check_lines(&[INVOKE_1, OK_1, DELIVER_1]);
    assert_eq!(r.committed_from, "ok (no committed lines)");
    assert_eq!(r.ops.committed, 1);
    assert_eq!(r.anomalies.lost_commit, 0);
}

#[test]
fn stale_read_sees_less_than_was_acknowledged() {
    let r = check_lines(&[
        INVOKE_1,
        OK_1,
        DELIVER_1,
        // started after op 1 (seq 0) was ok but saw nothing
        r#"{"type":"read","key":"k","seq":null,"invoke_time":2500,"time":2600}"#,
        // started before the ok: may see nothing
        r#"{"type":"read","key":"k","seq":null,"invoke_time":1500,"time":2600}"#,
        // saw it
        r#"{"type":"read","key":"k","seq":0,"invoke_time":2500,"time":2600}"#,
    ]);
    assert_eq!(r.anomalies.stale_read, 1);
    assert_eq!(r.reads, 3);
}

#[test]
fn unseen_series_counts_acknowledged_but_undelivered_per_second() {
    let s = 1_000_000_000i64;
    let r = check_lines(&[
        r#"{"type":"invoke","op":1,"process":0,"key":"k","seq":0,"time":0}"#.to_string(),
        format!(r#"{{"type":"ok","op":1,"process":0,"time":{}}}"#, s / 2),
        format!(
            r#"{{"type":"deliver","op":1,"event":"e","key":"k","seq":0,"topic":"t","partition":0,"offset":0,"time":{}}}"#,
            2 * s + 1
        ),
        format!(
            r#"{{"type":"invoke","op":2,"process":0,"key":"k2","seq":0,"time":{}}}"#,
            s
        ),
        format!(r#"{{"type":"ok","op":2,"process":0,"time":{}}}"#, 3 * s + 5),
    ]);
    assert_eq!(r.unseen_per_second, vec![1, 1, 0, 1]);
    assert_eq!(r.anomalies.lost, 1);
}

#[test]
fn inconsistent_histories_are_unusable() {
    let twice = [INVOKE_1, INVOKE_1].join("\n");
    let e = check_reader("h", twice.as_bytes(), CheckOptions::default()).unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("invoked a second time"), "{e}");

    let two_completions = [INVOKE_1, OK_1, r#"{"type":"fail","op":1,"process":0,"time":3}"#].join("\n");
    let e = check_reader("h", two_completions.as_bytes(), CheckOptions::default()).unwrap_err();
    assert_eq!(e.line, Some(3));

    let orphan = [OK_1].join("\n");
    let e = check_reader("h", orphan.as_bytes(), CheckOptions::default()).unwrap_err();
    assert!(e.message.contains("op 1 has a `ok` line but no `invoke` line"), "{e}");
}

const BEGIN: &str = r#"{"type":"begin","time":0}"#;
const END: &str = r#"{"type":"end","time":9000,"drained":true}"#;

#[test]
fn a_begin_line_without_an_end_line_is_unknown_unless_assumed_complete() {
    // Interrupted: op 1 acknowledged, its event not delivered yet.
    let interrupted = [BEGIN, INVOKE_1, OK_1].join("\n");
    let r = check(&interrupted);
    assert_eq!(r.verdict, Verdict::Unknown);
    assert!(!r.valid);
    assert_eq!(r.complete, Some(false));
    let reason = r.reason.as_deref().unwrap();
    assert!(
        reason.contains("no `end` line") && reason.contains("lost 1"),
        "{reason}"
    );
    assert_eq!(r.anomalies.lost, 1, "the counts are still given");

    let assumed = check_reader(
        "test",
        interrupted.as_bytes(),
        CheckOptions {
            assume_complete: true,
            ..CheckOptions::default()
        },
    )
    .unwrap();
    assert_eq!(assumed.verdict, Verdict::Invalid);
    assert_eq!(assumed.reason, None);
    assert!(assumed.warnings.iter().any(|w| w.contains("--assume-complete")));

    // Complete, with both marks: judged as usual.
    let r = check(&[BEGIN, INVOKE_1, OK_1, DELIVER_1, END].join("\n"));
    assert_eq!((r.verdict, r.valid, r.complete), (Verdict::Valid, true, Some(true)));
    let r = check(&[BEGIN, INVOKE_1, OK_1, END].join("\n"));
    assert_eq!((r.verdict, r.valid), (Verdict::Invalid, false));
    // Neither mark (another recorder): as before.
    let r = check(&[INVOKE_1, OK_1].join("\n"));
    assert_eq!((r.verdict, r.complete, r.reason), (Verdict::Invalid, None, None));
    let r = check(&[INVOKE_1, OK_1, DELIVER_1].join("\n"));
    assert_eq!(r.verdict, Verdict::Valid);
    // An incomplete history with no violation so far is still unknown.
    let r = check(&[BEGIN, INVOKE_1, OK_1, DELIVER_1].join("\n"));
    assert_eq!(r.verdict, Verdict::Unknown);
    assert!(r.reason.unwrap().contains("No violation so far"));
}

#[test]
fn a_failed_fault_start_is_no_window() {
    let lines = [
        INVOKE_1,
        OK_1,
        DELIVER_1,
        r#"{"type":"nemesis","fault":"pg-kill","phase":"start","time":100}"#,
        r#"{"type":"nemesis","fault":"pg-pause","phase":"failed","time":200,"error":"cannot pause postgres: it is not running"}"#,
        r#"{"type":"nemesis","fault":"pg-kill","phase":"stop","time":300}"#,
    ]
    .join("\n");
    let r = check(&lines);
    assert_eq!(r.faults.len(), 1, "{:?}", r.faults);
    assert_eq!(r.faults[0].fault, "pg-kill");
    assert_eq!(r.failed_faults.len(), 1);
    assert_eq!(r.failed_faults[0].fault, "pg-pause");
    assert_eq!(r.failed_faults[0].time, 200);
    assert!(r.failed_faults[0].error.as_deref().unwrap().contains("not running"));
    assert!(r.valid);
}

#[test]
fn each_healed_window_has_its_time_to_recover() {
    let op = |id: u64, ack: i64, delivered: Option<i64>| {
        let mut lines = vec![
            format!(
                r#"{{"type":"invoke","op":{id},"process":0,"key":"k{id}","seq":0,"time":{}}}"#,
                ack - 10
            ),
            format!(r#"{{"type":"ok","op":{id},"process":0,"time":{ack}}}"#),
        ];
        if let Some(t) = delivered {
            lines.push(format!(
                r#"{{"type":"deliver","op":{id},"event":"e{id}","key":"k{id}","seq":0,"topic":"t","partition":0,"offset":{id},"time":{t}}}"#
            ));
        }
        lines
    };
    let window = |fault: &str, start: i64, stop: i64| {
        vec![
            format!(r#"{{"type":"nemesis","fault":"{fault}","phase":"start","time":{start}}}"#),
            format!(r#"{{"type":"nemesis","fault":"{fault}","phase":"stop","time":{stop}}}"#),
        ]
    };
    let mut lines = Vec::new();
    lines.extend(op(1, 100, Some(150))); // before every window
    lines.extend(window("kafka-partition", 1_000, 2_000));
    lines.extend(op(2, 1_500, Some(2_700))); // acked inside, delivered 700 after the stop
    lines.extend(op(3, 1_900, Some(2_300)));
    lines.extend(window("pg-latency", 3_000, 4_000)); // everything before it already delivered
    lines.extend(window("relay-kill", 5_000, 6_000));
    lines.extend(op(4, 5_500, None)); // never delivered: never recovers
    lines.extend(op(5, 6_500, Some(6_600))); // acked after the last stop: no bearing on it
    let r = check_lines(&lines);
    let recovery: Vec<(&str, Option<i64>)> = r.faults.iter().map(|w| (w.fault.as_str(), w.recovery_ns)).collect();
    assert_eq!(
        recovery,
        vec![
            ("kafka-partition", Some(700)),
            ("pg-latency", Some(0)),
            ("relay-kill", None)
        ]
    );
    assert_eq!(r.anomalies.lost, 1);
}

#[test]
fn ops_first_delivered_after_a_restart_are_counted_apart_and_are_no_anomaly() {
    // Op 1 is delivered before the restart at 5000; op 2 (acknowledged at
    // 2100) only after it, once (delivered only after a restart); op 3 never:
    // lost even after the restart.
    let r = check_lines(&[
        INVOKE_1,
        OK_1,
        DELIVER_1,
        r#"{"type":"invoke","op":2,"process":1,"key":"j","seq":0,"time":2000}"#,
        r#"{"type":"ok","op":2,"process":1,"time":2100}"#,
        r#"{"type":"invoke","op":3,"process":1,"key":"j","seq":1,"time":2200}"#,
        r#"{"type":"ok","op":3,"process":1,"time":2300}"#,
        r#"{"type":"restart","time":5000}"#,
        r#"{"type":"deliver","op":2,"event":"e2","key":"j","seq":0,"topic":"t","partition":0,"offset":0,"time":6000}"#,
    ]);
    assert_eq!(r.delivered_after_restart, Some(1));
    assert_eq!(r.anomalies.lost, 1, "op 3, lost even after the restart");
    assert_eq!(r.violations, vec![Anomaly::Lost]);
    // Without a restart line the figure is absent (and absent from the JSON).
    let plain = check_lines(&[INVOKE_1, OK_1, DELIVER_1]);
    assert_eq!(plain.delivered_after_restart, None);
    assert!(!serde_json::to_string(&plain)
        .unwrap()
        .contains("delivered_after_restart"));
}
