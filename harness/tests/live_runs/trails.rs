//! Every anomaly explains itself (issue 14): the trail of a `lost` op of
//! `naive` under kafka-partition names the fault window it was caught in, the
//! publish error from `app.log`, and the implementation's own account of the
//! op (`GET /trace/{op}`, asked while it still ran). Real services.

use crate::support::runs::run_beside;
use checkers::Anomaly;
use serde_json::Value;

#[test]
fn a_lost_op_of_naive_under_kafka_partition_names_its_fault_and_its_publish_error() {
    // Every op of the partition is lost, at any speed: one slot.
    let (code, v) = run_beside(
        "trails-naive",
        &[
            "--impl",
            "naive",
            "--faults",
            "kafka-partition",
            "--duration",
            "15s",
            "--seed",
            "1",
        ],
    );
    assert_eq!(code, 1, "{v:?}");
    assert!(v.result.anomalies.lost > 0, "{v:?}");
    let lost = v.result.examples.get(&Anomaly::Lost).expect("examples of lost");
    for e in lost {
        let op = e.op.expect("a lost example names its op");
        let trail = e.trail.as_ref().unwrap_or_else(|| panic!("op {op}: no trail: {e:?}"));
        assert_eq!(trail.op, Some(op), "{e:?}");
        // The fault window it was caught in.
        let invoked = e.invoke_time.unwrap();
        let faults = &trail.faults;
        assert!(
            faults.iter().any(|w| w.fault == "kafka-partition"
                && w.start <= e.complete_time.unwrap()
                && w.stop.is_none_or(|s| s >= invoked)),
            "op {op}: no kafka-partition window around it: {trail:?}"
        );
        // Its own history lines: its invoke and its ok, and no delivery. They
        // stay JSON: the trail keeps them as written (`Trail::history` is
        // `serde_json::Value`).
        let history = &trail.history;
        let types: Vec<&str> = history.iter().filter_map(|l| l["type"].as_str()).collect();
        assert!(types.contains(&"invoke") && types.contains(&"ok"), "op {op}: {types:?}");
        assert!(!types.contains(&"deliver"), "op {op}: {types:?}");
        assert!(history.iter().all(|l| l["op"] == op), "op {op}: {history:?}");
        // The publish error, from app.log.
        let logs = &trail.logs;
        assert!(
            logs.iter().any(|l| l.file == "app.log"
                && l.text.contains(&format!("op {op} "))
                && l.text.contains("publish failed")),
            "op {op}: no publish error naming it in app.log: {logs:?}"
        );
        // The implementation's account: its order row exists, its publish failed, and why.
        // It stays JSON: each implementation answers `GET /trace/{op}` with
        // JSON of its own (`Trail::trace` is `serde_json::Value`).
        let trace: &Value = trail
            .trace
            .as_ref()
            .unwrap_or_else(|| panic!("op {op}: no account: {trail:?}"));
        assert_eq!(trace["op"], op, "{trail:?}");
        assert_eq!(trace["state"], "publish_failed", "{trail:?}");
        assert!(trace["orders"].is_object(), "{trail:?}");
        assert!(
            trace["last_error"]
                .as_str()
                .is_some_and(|t| t.contains("publish failed")),
            "{trail:?}"
        );
    }
    // The report shows the trails too.
    let html = std::fs::read_to_string(v.run_dir.join("report.html")).unwrap();
    let first = lost[0].op.unwrap();
    assert!(
        html.contains(&format!("trail of op {first}:")),
        "report.html has no trail of op {first}"
    );
    assert!(html.contains("publish_failed"), "report.html shows no account");
}
