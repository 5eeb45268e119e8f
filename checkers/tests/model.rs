//! Property tests: histories generated from a model with known injected
//! anomalies must give exactly the injected counts, in any line order; and
//! no input, however broken, may panic the reader.

use dualcheck_checkers::{check_reader, CheckOptions, CheckResult};
use proptest::prelude::*;

/// What happens to one op, chosen by the generator.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    /// Acknowledged, committed, delivered once.
    Normal,
    /// Acknowledged and committed, never delivered.
    Lost,
    /// Delivered twice with the same event id.
    Duplicate,
    /// Delivered twice with two event ids.
    BeyondIdempotency,
    /// Its delivery comes after every other delivery of its key.
    Late,
    /// Acknowledged and delivered, but the database lost it.
    LostCommit,
    /// `info`, committed and delivered.
    InfoCommitted,
    /// `info`, not committed, not delivered.
    InfoAborted,
    /// `info`, not committed, yet delivered.
    InfoPhantom,
    /// `fail`, not delivered.
    Failed,
    /// `fail`, yet delivered.
    FailPhantom,
}

fn fate() -> impl Strategy<Value = Fate> {
    prop_oneof![
        10 => Just(Fate::Normal),
        1 => Just(Fate::Lost),
        1 => Just(Fate::Duplicate),
        1 => Just(Fate::BeyondIdempotency),
        1 => Just(Fate::Late),
        1 => Just(Fate::LostCommit),
        1 => Just(Fate::InfoCommitted),
        1 => Just(Fate::InfoAborted),
        1 => Just(Fate::InfoPhantom),
        1 => Just(Fate::Failed),
        1 => Just(Fate::FailPhantom),
    ]
}

#[derive(Debug, Clone)]
struct Model {
    /// (key, fate) per op, in invocation order.
    ops: Vec<(usize, Fate)>,
    unexpected: usize,
    with_committed_lines: bool,
}

#[derive(Debug, Default, PartialEq)]
struct Expected {
    lost: u64,
    phantom: u64,
    unexpected: u64,
    duplicate: u64,
    beyond: u64,
    reorder: u64,
    lost_commit: u64,
}

fn model() -> impl Strategy<Value = Model> {
    (
        prop::collection::vec((0usize..6, fate()), 1..120),
        0usize..4,
        any::<bool>(),
    )
        .prop_map(|(ops, unexpected, with_committed_lines)| {
            // Without committed lines, committed means ok: fates that need the
            // database to disagree with the outcome cannot be expressed.
            let ops = if with_committed_lines {
                // At least one committed line, or the history means "committed = ok".
                let mut ops = ops;
                ops.insert(0, (0, Fate::Normal));
                ops
            } else {
                ops.into_iter()
                    .map(|(k, f)| match f {
                        Fate::LostCommit | Fate::InfoCommitted => (k, Fate::Normal),
                        _ => (k, f),
                    })
                    .collect()
            };
            Model {
                ops,
                unexpected,
                with_committed_lines,
            }
        })
}

/// Writes the model's history (in a natural order) and what the checker must find.
fn render(m: &Model) -> (Vec<String>, Expected) {
    let mut lines = Vec::new();
    let mut exp = Expected {
        unexpected: m.unexpected as u64,
        ..Expected::default()
    };
    let mut next_seq = [0u64; 6];
    let mut next_offset = [0i64; 3];
    let mut late: Vec<(usize, u64, u64)> = Vec::new(); // (key, op, seq)
    let mut again: Vec<(usize, u64, u64, String)> = Vec::new();
    // Highest seq of an ok op whose first delivery is in its natural place, per key.
    let mut natural_max: [Option<u64>; 6] = [None; 6];
    let mut deliver = |lines: &mut Vec<String>, key: usize, op: u64, seq: u64, event: &str, t: i64| {
        let p = key % 3;
        let offset = next_offset[p];
        next_offset[p] += 1;
        lines.push(format!(
            r#"{{"type":"deliver","op":{op},"event":"{event}","key":"k{key}","seq":{seq},"topic":"t","partition":{p},"offset":{offset},"time":{t}}}"#
        ));
    };
    for (n, &(key, fate)) in m.ops.iter().enumerate() {
        let op = n as u64;
        let seq = next_seq[key];
        next_seq[key] += 1;
        let t = (n as i64) * 1_000_000;
        lines.push(format!(
            r#"{{"type":"invoke","op":{op},"process":{key},"key":"k{key}","seq":{seq},"time":{t}}}"#
        ));
        let outcome = match fate {
            Fate::InfoCommitted | Fate::InfoAborted | Fate::InfoPhantom => "info",
            Fate::Failed | Fate::FailPhantom => "fail",
            _ => "ok",
        };
        lines.push(format!(
            r#"{{"type":"{outcome}","op":{op},"process":{key},"time":{}}}"#,
            t + 500
        ));
        let committed = matches!(
            fate,
            Fate::Normal | Fate::Lost | Fate::Duplicate | Fate::BeyondIdempotency | Fate::Late | Fate::InfoCommitted
        );
        if committed && m.with_committed_lines {
            lines.push(format!(r#"{{"type":"committed","op":{op}}}"#));
        }
        let event = format!("ev-{op}");
        let t_deliver = t + 700;
        match fate {
            Fate::Lost => exp.lost += 1,
            Fate::Late => late.push((key, op, seq)),
            Fate::Duplicate => again.push((key, op, seq, event.clone())),
            Fate::BeyondIdempotency => again.push((key, op, seq, format!("{event}-b"))),
            Fate::LostCommit => {
                exp.lost_commit += 1;
                exp.phantom += 1;
            }
            Fate::InfoPhantom | Fate::FailPhantom => exp.phantom += 1,
            _ => {}
        }
        match fate {
            Fate::Duplicate => exp.duplicate += 1,
            Fate::BeyondIdempotency => exp.beyond += 1,
            _ => {}
        }
        let delivered_now = matches!(
            fate,
            Fate::Normal
                | Fate::Duplicate
                | Fate::BeyondIdempotency
                | Fate::LostCommit
                | Fate::InfoCommitted
                | Fate::InfoPhantom
                | Fate::FailPhantom
        );
        if delivered_now {
            deliver(&mut lines, key, op, seq, &event, t_deliver);
            if outcome == "ok" {
                natural_max[key] = Some(natural_max[key].map_or(seq, |m: u64| m.max(seq)));
            }
        }
    }
    // Late deliveries, in seq order per key, after everything else: each is a
    // reorder when some later seq of its key was already delivered in place.
    for &(key, op, seq) in &late {
        if natural_max[key].is_some_and(|m| m > seq) {
            exp.reorder += 1;
        }
        deliver(&mut lines, key, op, seq, &format!("ev-{op}"), 9_000_000_000);
    }
    for (key, op, seq, event) in &again {
        deliver(&mut lines, *key, *op, *seq, event, 9_500_000_000);
    }
    for u in 0..m.unexpected {
        deliver(
            &mut lines,
            0,
            10_000 + u as u64,
            0,
            &format!("stray-{u}"),
            9_900_000_000,
        );
    }
    (lines, exp)
}

fn run(lines: &[String]) -> CheckResult {
    let text = lines.join("\n") + "\n";
    check_reader("model", text.as_bytes(), CheckOptions::default()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn found(r: &CheckResult) -> Expected {
    let a = &r.anomalies;
    Expected {
        lost: a.lost,
        phantom: a.phantom,
        unexpected: a.unexpected,
        duplicate: a.duplicate,
        beyond: a.duplicate_beyond_idempotency,
        reorder: a.reorder,
        lost_commit: a.lost_commit,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn injected_anomalies_are_counted_exactly(m in model()) {
        let (lines, expected) = render(&m);
        let r = run(&lines);
        prop_assert_eq!(found(&r), expected);
        prop_assert_eq!(r.ops.invoked, m.ops.len() as u64);
    }

    #[test]
    fn line_order_changes_nothing(
        (m, order) in model().prop_flat_map(|m| {
            let n = render(&m).0.len();
            (Just(m), Just((0..n).collect::<Vec<usize>>()).prop_shuffle())
        })
    ) {
        let (lines, expected) = render(&m);
        let shuffled: Vec<String> = order.iter().map(|&i| lines[i].clone()).collect();
        let a = run(&lines);
        let b = run(&shuffled);
        prop_assert_eq!(found(&b), expected);
        prop_assert_eq!(a.anomalies, b.anomalies);
        prop_assert_eq!(a.ops, b.ops);
        prop_assert_eq!(a.latency_ns, b.latency_ns);
        prop_assert_eq!(a.unseen_per_second, b.unseen_per_second);
        prop_assert_eq!(a.valid, b.valid);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = check_reader("fuzz", bytes.as_slice(), CheckOptions::default());
    }

    #[test]
    fn arbitrary_json_lines_never_panic(lines in prop::collection::vec(json_line(), 0..40)) {
        let text = lines.join("\n");
        match check_reader("fuzz", text.as_bytes(), CheckOptions::default()) {
            Ok(_) => {}
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
    }
}

/// Lines that look like history lines, with fields of random types and values.
fn json_line() -> impl Strategy<Value = String> {
    let ty = prop_oneof![
        Just("invoke"),
        Just("ok"),
        Just("fail"),
        Just("info"),
        Just("deliver"),
        Just("nemesis"),
        Just("read"),
        Just("committed"),
        Just("other")
    ];
    let value = prop_oneof![
        (0u64..5).prop_map(|n| n.to_string()),
        Just("-1".to_string()),
        Just("18446744073709551615".to_string()),
        Just("1.5".to_string()),
        Just("null".to_string()),
        Just("\"k\"".to_string()),
        Just("\"start\"".to_string()),
        Just("[]".to_string()),
    ];
    let field = prop_oneof![
        Just("op"),
        Just("key"),
        Just("seq"),
        Just("time"),
        Just("event"),
        Just("partition"),
        Just("offset"),
        Just("fault"),
        Just("phase"),
        Just("invoke_time")
    ];
    (ty, prop::collection::vec((field, value), 0..9)).prop_map(|(ty, fields)| {
        let mut s = format!(r#"{{"type":"{ty}""#);
        for (f, v) in fields {
            s.push_str(&format!(r#","{f}":{v}"#));
        }
        s.push('}');
        s
    })
}
