//! Ops that publish several events in one transaction (an `invoke` naming
//! `events`, `deliver` lines naming their `index`), judged as
//! docs/anomalies.md defines: `lost` and `partial` per op, duplicates and
//! order per event, and the `multi_event_ops`, `interleaved_ops` and
//! `events_expected` figures.

use dualcheck_checkers::{check_reader, Anomalies, Anomaly, CheckOptions, CheckResult};
use proptest::prelude::*;

fn check(lines: &[String]) -> CheckResult {
    let text = lines.join("\n") + "\n";
    check_reader("test", text.as_bytes(), CheckOptions::default()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// An acknowledged, committed op `op` on key `k` at seq `seq`, naming `events` (JSON, or "" for none).
fn committed_op(op: u64, seq: u64, events: &str) -> Vec<String> {
    committed_op_on(op, "k", seq, events)
}

/// [`committed_op`] on key `key`.
fn committed_op_on(op: u64, key: &str, seq: u64, events: &str) -> Vec<String> {
    let events = if events.is_empty() {
        String::new()
    } else {
        format!(r#","events":{events}"#)
    };
    vec![
        format!(
            r#"{{"type":"invoke","op":{op},"process":0,"key":"{key}","seq":{seq},"time":{}{events}}}"#,
            op * 100
        ),
        format!(r#"{{"type":"ok","op":{op},"process":0,"time":{}}}"#, op * 100 + 10),
        format!(r#"{{"type":"committed","op":{op}}}"#),
    ]
}

/// A delivery of event `index` of `op` (no `index` field when `None`), at `partition`/`offset`.
fn deliver(op: u64, index: Option<u32>, event: &str, partition: i32, offset: i64) -> String {
    let index = index.map(|i| format!(r#","index":{i}"#)).unwrap_or_default();
    format!(
        r#"{{"type":"deliver","op":{op},"event":"{event}","topic":"t","partition":{partition},"offset":{offset},"time":{}{index}}}"#,
        op as i64 * 100 + 50 + offset
    )
}

/// Op 1 of 5 events with the given indexes delivered once each, in partition 0.
fn five_with(delivered: &[u32]) -> CheckResult {
    let mut lines = committed_op(1, 0, "5");
    for (n, &i) in delivered.iter().enumerate() {
        lines.push(deliver(1, Some(i), &format!("e1-{i}"), 0, n as i64));
    }
    check(&lines)
}

#[test]
fn an_op_with_3_of_its_5_events_delivered_is_one_partial() {
    let r = five_with(&[0, 2, 3]);
    assert_eq!(
        r.anomalies,
        Anomalies {
            partial: 1,
            ..Anomalies::default()
        }
    );
    assert!(!r.valid);
    assert_eq!(r.violations, vec![Anomaly::Partial]);
    let ex = &r.examples[&Anomaly::Partial][0];
    assert_eq!(
        ex.detail.as_deref(),
        Some("op 1 published 3 of its 5 events (missing indexes 1, 4)")
    );
    assert_eq!((ex.op, ex.deliveries), (Some(1), 3));
    assert_eq!(ex.events, ["e1-0", "e1-2", "e1-3"]);
    assert_eq!(r.first_violation_ns, Some(100), "the op's invoke");
    // Event 0 missing too: the example names it.
    let r = five_with(&[4]);
    assert_eq!((r.anomalies.partial, r.anomalies.lost), (1, 0));
    assert_eq!(
        r.examples[&Anomaly::Partial][0].detail.as_deref(),
        Some("op 1 published 1 of its 5 events (missing indexes 0, 1, 2, 3)")
    );
}

#[test]
fn a_partial_example_names_the_first_ten_missing_indexes() {
    let mut lines = committed_op(1, 0, "1000000");
    lines.push(deliver(1, Some(3), "e", 0, 0));
    let r = check(&lines);
    assert_eq!(
        r.examples[&Anomaly::Partial][0].detail.as_deref(),
        Some("op 1 published 1 of its 1000000 events (missing indexes 0, 1, 2, 4, 5, 6, 7, 8, 9, 10, …)")
    );
    assert_eq!(r.events_expected, 1_000_000);
}

#[test]
fn an_op_with_none_of_its_5_events_delivered_is_one_lost() {
    let r = five_with(&[]);
    assert_eq!(
        r.anomalies,
        Anomalies {
            lost: 1,
            ..Anomalies::default()
        }
    );
    assert_eq!(r.examples[&Anomaly::Lost][0].detail, None);
}

#[test]
fn an_op_with_all_5_events_delivered_is_valid() {
    let r = five_with(&[0, 1, 2, 3, 4]);
    assert!(r.valid, "{r:?}");
    assert_eq!(r.anomalies, Anomalies::default());
    assert_eq!((r.multi_event_ops, r.events_expected, r.interleaved_ops), (1, 5, 0));
    // Latency is per op: to the first delivery of any of its events.
    let latency = r.latency_ns.unwrap();
    assert_eq!((latency.count, latency.max), (1, 40));
}

#[test]
fn a_listed_op_is_judged_as_a_counted_one() {
    let places = r#"[{"key":"k","seq":0},{"key":"k","seq":0},{"key":"k","seq":0}]"#;
    let mut lines = committed_op(1, 0, places);
    lines.push(deliver(1, None, "a", 0, 0));
    lines.push(deliver(1, Some(2), "c", 0, 1));
    let r = check(&lines);
    assert_eq!((r.anomalies.partial, r.multi_event_ops), (1, 1));
    assert_eq!(
        r.examples[&Anomaly::Partial][0].detail.as_deref(),
        Some("op 1 published 2 of its 3 events (missing indexes 1)")
    );
}

#[test]
fn an_index_the_op_does_not_publish_is_unexpected_per_delivery() {
    let mut lines = committed_op(1, 0, "2");
    lines.push(deliver(1, Some(0), "a", 0, 0));
    lines.push(deliver(1, Some(1), "b", 0, 1));
    lines.push(deliver(1, Some(2), "c", 0, 2));
    lines.push(deliver(1, Some(2), "c", 0, 3));
    // A one-event op has index 0 only.
    lines.extend(committed_op(2, 1, ""));
    lines.push(deliver(2, None, "d", 0, 4));
    lines.push(deliver(2, Some(1), "e", 0, 5));
    let r = check(&lines);
    assert_eq!(
        r.anomalies,
        Anomalies {
            unexpected: 3,
            ..Anomalies::default()
        }
    );
    let details: Vec<&str> = r.examples[&Anomaly::Unexpected]
        .iter()
        .map(|e| e.detail.as_deref().unwrap())
        .collect();
    assert_eq!(
        details,
        [
            "a record names event index 2, but the op publishes 2 event(s) (indexes 0 to 1)",
            "a record names event index 1, but the op publishes 1 event(s) (indexes 0 to 0)",
        ]
    );
    // Only its own events make an op delivered: one whose only record names
    // an index it does not publish is lost (and the record unexpected).
    let mut lines = committed_op(1, 0, "2");
    lines.push(deliver(1, Some(7), "x", 0, 0));
    let r = check(&lines);
    assert_eq!(
        (r.anomalies.lost, r.anomalies.unexpected, r.anomalies.partial),
        (1, 1, 0)
    );
}

#[test]
fn deliveries_of_an_op_never_invoked_are_unexpected_whatever_their_index() {
    let lines = [
        deliver(9, Some(3), "a", 0, 0),
        deliver(9, None, "b", 0, 1),
        deliver(9, Some(3), "a", 0, 2),
    ];
    let r = check(&lines);
    assert_eq!(r.anomalies.unexpected, 3);
    let ex = &r.examples[&Anomaly::Unexpected][0];
    assert_eq!(
        (ex.deliveries, ex.detail.as_deref()),
        (3, Some("no invoke line for this op"))
    );
    assert_eq!(r.first_violation_ns, Some(950));
}

#[test]
fn duplicates_are_judged_per_event() {
    let mut lines = committed_op(1, 0, "4");
    // Event 0 twice with one id, event 2 twice with one id, event 3 with two
    // ids: two duplicates and one beyond idempotency; event 1 once.
    for (n, (index, event)) in [(0, "a"), (0, "a"), (1, "b"), (2, "c"), (2, "c"), (3, "d"), (3, "d2")]
        .into_iter()
        .enumerate()
    {
        lines.push(deliver(1, Some(index), event, 0, n as i64));
    }
    let r = check(&lines);
    assert_eq!(
        r.anomalies,
        Anomalies {
            duplicate: 2,
            duplicate_beyond_idempotency: 1,
            ..Anomalies::default()
        }
    );
    let details: Vec<&str> = r.examples[&Anomaly::Duplicate]
        .iter()
        .map(|e| e.detail.as_deref().unwrap())
        .collect();
    assert_eq!(
        details,
        [
            "event 0 of its 4 delivered 2 times",
            "event 2 of its 4 delivered 2 times"
        ]
    );
    let beyond = &r.examples[&Anomaly::DuplicateBeyondIdempotency][0];
    assert_eq!(beyond.detail.as_deref(), Some("event 3 of its 4 delivered 2 times"));
    assert_eq!(beyond.deliveries, 7);
    assert_eq!(beyond.events, ["a", "b", "c", "d", "d2"]);
    // Events delivered once each, each with its own id: no duplicate.
    assert!(five_with(&[0, 1, 2, 3, 4]).valid);
}

#[test]
fn reorder_is_judged_per_key_by_seq_then_index() {
    // Op 1 (seq 0, 3 events on k): its event 2 before its event 1. Op 2
    // (seq 1): its event 0 before op 1's event 1 (seq 0 after seq 1).
    let mut lines = committed_op(1, 0, "3");
    lines.extend(committed_op(2, 1, "2"));
    for (n, (op, index)) in [(1, 0), (1, 2), (2, 0), (1, 1), (2, 1)].into_iter().enumerate() {
        lines.push(deliver(op, Some(index), &format!("e{op}-{index}"), 0, n as i64));
    }
    let r = check(&lines);
    assert_eq!(
        r.anomalies,
        Anomalies {
            reorder: 1,
            ..Anomalies::default()
        }
    );
    let ex = &r.examples[&Anomaly::Reorder][0];
    assert_eq!(ex.op, Some(1));
    assert_eq!(
        ex.detail.as_deref(),
        Some("seq 0 index 1 delivered at 0/3 after seq 1 index 0 (op 2) at 0/2")
    );
    // Within one op alone: index 1 after index 2 is a reorder.
    let mut lines = committed_op(1, 0, "3");
    for (n, index) in [0, 2, 1].into_iter().enumerate() {
        lines.push(deliver(1, Some(index), &format!("e{index}"), 0, n as i64));
    }
    let r = check(&lines);
    assert_eq!(r.anomalies.reorder, 1);
    assert_eq!(
        r.examples[&Anomaly::Reorder][0].detail.as_deref(),
        Some("seq 0 index 1 delivered at 0/2 after seq 0 index 2 (op 1) at 0/1")
    );
}

#[test]
fn reorder_reads_indexes_of_any_size() {
    // Indexes past 2^30 do not fit beside the op in the reorder pass's
    // entries and are kept apart: judged the same.
    let mut lines = committed_op(1, 0, "4294967295");
    for (n, index) in [0u32, 1 << 31, (1 << 30) + 1, 1 << 30, 5].into_iter().enumerate() {
        lines.push(deliver(1, Some(index), &format!("e{index}"), 0, n as i64));
    }
    let r = check(&lines);
    assert_eq!((r.anomalies.reorder, r.anomalies.partial), (3, 1));
    let details: Vec<&str> = r.examples[&Anomaly::Reorder]
        .iter()
        .map(|e| e.detail.as_deref().unwrap())
        .collect();
    assert_eq!(
        details,
        [
            "seq 0 index 1073741825 delivered at 0/2 after seq 0 index 2147483648 (op 1) at 0/1",
            "seq 0 index 1073741824 delivered at 0/3 after seq 0 index 2147483648 (op 1) at 0/1",
            "seq 0 index 5 delivered at 0/4 after seq 0 index 2147483648 (op 1) at 0/1",
        ]
    );
}

#[test]
fn an_op_over_two_keys_is_ordered_on_each_key_at_its_place() {
    // Op 1 writes key a (seq 0) and key b (its seq there: 5). Op 2 is the
    // op of seq 4 on b, op 3 the op of seq 1 on a. The deliveries name no
    // key or seq: the invoke's places say where each event belongs.
    let places = r#"[{"key":"a","seq":0},{"key":"b","seq":5}]"#;
    let mut lines = vec![
        format!(r#"{{"type":"invoke","op":1,"process":0,"key":"a","seq":0,"time":100,"events":{places}}}"#),
        r#"{"type":"ok","op":1,"process":0,"time":110}"#.to_string(),
        r#"{"type":"invoke","op":2,"process":1,"key":"b","seq":4,"time":200}"#.to_string(),
        r#"{"type":"ok","op":2,"process":1,"time":210}"#.to_string(),
        r#"{"type":"invoke","op":3,"process":0,"key":"a","seq":1,"time":300}"#.to_string(),
        r#"{"type":"ok","op":3,"process":0,"time":310}"#.to_string(),
    ];
    // Key a in partition 0: op 1's event 0, then op 3: in order.
    lines.push(deliver(1, Some(0), "e1-0", 0, 0));
    lines.push(deliver(3, None, "e3", 0, 1));
    // Key b in partition 1: op 1's event 1 (seq 5), then op 2 (seq 4): op 2 is reordered.
    lines.push(deliver(1, Some(1), "e1-1", 1, 0));
    lines.push(deliver(2, None, "e2", 1, 1));
    let r = check(&lines);
    assert_eq!(
        r.anomalies,
        Anomalies {
            reorder: 1,
            ..Anomalies::default()
        }
    );
    let ex = &r.examples[&Anomaly::Reorder][0];
    assert_eq!((ex.op, ex.key.as_deref()), (Some(2), Some("b")));
    assert_eq!(
        ex.detail.as_deref(),
        Some("seq 4 index 0 delivered at 1/1 after seq 5 index 1 (op 1) at 1/0")
    );
    // A delivery's own seq still wins over the place's.
    let last = lines.len() - 2;
    lines[last] = lines[last].replace(r#""topic""#, r#""seq":3,"topic""#);
    assert!(check(&lines).valid);
}

#[test]
fn interleaved_ops_count_committed_ops_with_another_record_between_their_events() {
    // Op 2 is on another key, so that its record between op 1's events is no reorder.
    let mut lines = committed_op(1, 0, "3");
    lines.extend(committed_op_on(2, "j", 0, ""));
    lines.extend(committed_op(3, 1, "2"));
    lines.extend(committed_op(4, 2, "2"));
    // Partition 0: op 1's events at 0, 2, 3 with op 2's record at 1 between them.
    lines.push(deliver(1, Some(0), "a", 0, 0));
    lines.push(deliver(2, None, "b", 0, 1));
    lines.push(deliver(1, Some(1), "c", 0, 2));
    lines.push(deliver(1, Some(2), "d", 0, 3));
    // Op 3: both events together; op 4: one event in each partition.
    lines.push(deliver(3, Some(0), "e", 0, 4));
    lines.push(deliver(3, Some(1), "f", 0, 5));
    lines.push(deliver(4, Some(0), "g", 0, 6));
    lines.push(deliver(4, Some(1), "h", 1, 0));
    let r = check(&lines);
    assert!(r.valid, "{r:?}");
    assert_eq!((r.multi_event_ops, r.interleaved_ops, r.events_expected), (3, 1, 8));
    // An op not committed is not counted (it is a phantom instead).
    let text = lines.join("\n").replace(
        r#"{"type":"ok","op":1,"process":0,"time":110}"#,
        r#"{"type":"fail","op":1,"process":0,"time":110}"#,
    );
    let lines: Vec<String> = text
        .lines()
        .filter(|l| *l != r#"{"type":"committed","op":1}"#)
        .map(str::to_string)
        .collect();
    let r = check(&lines);
    assert_eq!((r.anomalies.phantom, r.interleaved_ops, r.events_expected), (1, 0, 5));
}

#[test]
fn older_results_without_the_figures_still_read_back() {
    let r = five_with(&[0, 1, 2, 3, 4]);
    let mut json = serde_json::to_value(&r).unwrap();
    for figure in ["multi_event_ops", "interleaved_ops", "events_expected"] {
        assert!(json.as_object_mut().unwrap().remove(figure).is_some(), "{figure}");
    }
    json["anomalies"].as_object_mut().unwrap().remove("partial");
    let back: CheckResult = serde_json::from_value(json).unwrap();
    assert_eq!(
        (back.multi_event_ops, back.interleaved_ops, back.events_expected),
        (0, 0, 0)
    );
    assert_eq!(back.anomalies, r.anomalies);
}

/// What can happen to a one-event op.
#[derive(Debug, Clone, Copy)]
enum Fate {
    Delivered,
    Lost,
    Twice,
    TwoIds,
    Failed,
    FailedDelivered,
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        6 => Just(Fate::Delivered),
        1 => Just(Fate::Lost),
        1 => Just(Fate::Twice),
        1 => Just(Fate::TwoIds),
        1 => Just(Fate::Failed),
        1 => Just(Fate::FailedDelivered),
    ]
}

/// A history of one-event ops on a few keys, their deliveries in a shuffled
/// log order (so some are reordered); `annotate` writes each op's one event
/// explicitly: `"events":1` or a one-place list on its invoke (alternately),
/// `"index":0` on its deliveries.
fn one_event_history(ops: &[(u8, Fate)], order: &[usize], annotate: bool) -> Vec<String> {
    let mut lines = Vec::new();
    let mut deliveries = Vec::new();
    let mut seqs = [0u64; 4];
    for (n, &(key, fate)) in ops.iter().enumerate() {
        let op = n as u64;
        let seq = seqs[key as usize];
        seqs[key as usize] += 1;
        let events = match (annotate, n % 2) {
            (false, _) => String::new(),
            (true, 0) => r#","events":1"#.to_string(),
            (true, _) => format!(r#","events":[{{"key":"k{key}","seq":{seq}}}]"#),
        };
        lines.push(format!(
            r#"{{"type":"invoke","op":{op},"process":0,"key":"k{key}","seq":{seq},"time":{}{events}}}"#,
            n * 100
        ));
        let ok = !matches!(fate, Fate::Failed | Fate::FailedDelivered);
        lines.push(format!(
            r#"{{"type":"{}","op":{op},"process":0,"time":{}}}"#,
            if ok { "ok" } else { "fail" },
            n * 100 + 10
        ));
        let ids: &[&str] = match fate {
            Fate::Lost | Fate::Failed => &[],
            Fate::Delivered | Fate::FailedDelivered => &["a"],
            Fate::Twice => &["a", "a"],
            Fate::TwoIds => &["a", "b"],
        };
        for id in ids {
            deliveries.push((op, key, seq, format!("e{op}{id}")));
        }
    }
    for (offset, &at) in order.iter().enumerate() {
        let Some((op, key, seq, event)) = deliveries.get(at) else {
            continue;
        };
        let index = if annotate { r#","index":0"# } else { "" };
        lines.push(format!(
            r#"{{"type":"deliver","op":{op},"event":"{event}","key":"k{key}","seq":{seq},"topic":"t","partition":{},"offset":{offset},"time":{}{index}}}"#,
            key % 2,
            5_000 + offset
        ));
    }
    lines
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// One-event histories are judged as they always were: naming the one
    /// event explicitly changes nothing, and no op is partial or interleaved.
    #[test]
    fn one_event_ops_are_judged_as_before(
        (ops, order) in prop::collection::vec((0u8..4, fate()), 1..60)
            .prop_flat_map(|ops| {
                let n = ops.len() * 2;
                (Just(ops), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
            })
    ) {
        let plain = check(&one_event_history(&ops, &order, false));
        let annotated = check(&one_event_history(&ops, &order, true));
        prop_assert_eq!(&plain, &annotated);
        prop_assert_eq!(plain.anomalies.partial, 0);
        prop_assert_eq!((plain.multi_event_ops, plain.interleaved_ops), (0, 0));
        let acknowledged = ops.iter().filter(|(_, f)| !matches!(f, Fate::Failed | Fate::FailedDelivered)).count();
        prop_assert_eq!(plain.events_expected, acknowledged as u64);
        let lost = ops.iter().filter(|(_, f)| matches!(f, Fate::Lost)).count();
        prop_assert_eq!(plain.anomalies.lost, lost as u64);
        let twice = ops.iter().filter(|(_, f)| matches!(f, Fate::Twice)).count();
        prop_assert_eq!(plain.anomalies.duplicate, twice as u64);
    }
}
