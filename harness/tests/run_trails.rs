//! Every anomaly explains itself (issue 14): the trail of a `lost` op of
//! `naive` under kafka-partition names the fault window it was caught in, the
//! publish error from `app.log`, and the implementation's own account of the
//! op (`GET /trace/{op}`, asked while it still ran). Real services.

mod run_support;

use run_support::{count, run};
use serde_json::Value;

#[test]
fn a_lost_op_of_naive_under_kafka_partition_names_its_fault_and_its_publish_error() {
    let (code, v) = run(
        "trails-naive",
        &[
            "--impl",
            "naive",
            "--faults",
            "kafka-partition",
            "--duration",
            "20s",
            "--seed",
            "1",
        ],
    );
    assert_eq!(code, 1, "{v}");
    assert!(count(&v, "lost") > 0, "{v}");
    let lost = v["examples"]["lost"].as_array().expect("examples of lost");
    for e in lost {
        let op = e["op"].as_u64().expect("a lost example names its op");
        let trail = &e["trail"];
        assert_eq!(trail["op"], op, "{e}");
        // The fault window it was caught in.
        let invoked = e["invoke_time"].as_i64().unwrap();
        let faults = trail["faults"].as_array().expect("trail faults");
        assert!(
            faults.iter().any(|w| w["fault"] == "kafka-partition"
                && w["start"].as_i64().unwrap() <= e["complete_time"].as_i64().unwrap()
                && w["stop"].as_i64().is_none_or(|s| s >= invoked)),
            "op {op}: no kafka-partition window around it: {trail}"
        );
        // Its own history lines: its invoke and its ok, and no delivery.
        let history = trail["history"].as_array().expect("trail history");
        let types: Vec<&str> = history.iter().filter_map(|l| l["type"].as_str()).collect();
        assert!(types.contains(&"invoke") && types.contains(&"ok"), "op {op}: {types:?}");
        assert!(!types.contains(&"deliver"), "op {op}: {types:?}");
        assert!(history.iter().all(|l| l["op"] == op), "op {op}: {history:?}");
        // The publish error, from app.log.
        let logs = trail["logs"].as_array().expect("trail logs");
        assert!(
            logs.iter().any(|l| l["file"] == "app.log"
                && l["text"]
                    .as_str()
                    .is_some_and(|t| t.contains(&format!("op {op} ")) && t.contains("publish failed"))),
            "op {op}: no publish error naming it in app.log: {logs:?}"
        );
        // The implementation's account: its order row exists, its publish failed, and why.
        let trace: &Value = &trail["trace"];
        assert_eq!(trace["op"], op, "{trail}");
        assert_eq!(trace["state"], "publish_failed", "{trail}");
        assert!(trace["orders"].is_object(), "{trail}");
        assert!(
            trace["last_error"]
                .as_str()
                .is_some_and(|t| t.contains("publish failed")),
            "{trail}"
        );
    }
    // The report shows the trails too.
    let run_dir = std::path::Path::new(v["run_dir"].as_str().unwrap());
    let html = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    let first = lost[0]["op"].as_u64().unwrap();
    assert!(
        html.contains(&format!("trail of op {first}:")),
        "report.html has no trail of op {first}"
    );
    assert!(html.contains("publish_failed"), "report.html shows no account");
}
