//! `dualcheck bench` through the binary, on real Postgres, Kafka and
//! Toxiproxy: the limits and every pattern's run on one environment, each run
//! in a database and topic of its own, nothing left running afterwards.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::runs::{assert_no_process_left, out_dir};

/// The entries of `dir` whose names start with `prefix`.
fn entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .collect();
    v.sort();
    v
}

#[test]
fn two_patterns_are_benchmarked_on_one_warm_environment() {
    let _guard = crate::support::alone();
    let out = out_dir("bench-two");
    let o = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args([
            "bench",
            "--impls",
            "outbox-notify,cdc-logical",
            "--rate",
            "50",
            "--duration",
            "4s",
            "--warmup",
            "1s",
            "--limit-duration",
            "1s",
            "--json",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("running dualcheck bench");
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stdout}\n{stderr}");
    // JSON: cli/bench.rs writes this object with `json!`, and its rows
    // (`bench::BenchRow`) only serialize.
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\n{stderr}"));

    // The broker was warmed up with single-record round trips before the runs.
    let trips: u64 = stderr
        .lines()
        .find_map(|l| l.trim().strip_suffix(" round trips").and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no broker warm-up reported:\n{stderr}"));
    assert!(trips > 100, "{trips} warm-up round trips in 10 s:\n{stderr}");

    // The limits were measured (on the same services as the runs).
    assert!(v["limits"]["pg_commits_per_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["limits"]["kafka_produce_per_s"].as_f64().unwrap() > 0.0, "{v}");
    let rows = v["rows"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["implementation"].as_str().unwrap()).collect();
    assert_eq!(names, ["outbox-notify", "cdc-logical"], "{v}");
    for r in rows {
        assert_eq!(r["valid"], true, "{r}");
        assert!(r["p50_ms"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["transit_p50_ms"].as_f64().is_some(), "{r}");
        assert!(r["delivered_per_s"].as_f64().unwrap() > 10.0, "{r}");
        assert!(r["ratio_to_limit"].as_f64().unwrap() > 0.0, "{r}");
    }

    // One environment: its services' data and logs under one directory, and
    // none in the runs' directories.
    let services = entries(&out, "bench-services-");
    assert_eq!(services.len(), 1, "{:?}", entries(&out, ""));
    let node = services[0].join("services-1-brokers").join("kafka");
    assert!(node.is_dir(), "no Kafka data under {}", services[0].display());
    // The warm-up run went with the services, not among the runs reported.
    assert_eq!(entries(&services[0].join("warm-up"), "run-").len(), 1);
    let runs = entries(&out, "run-");
    assert_eq!(runs.len(), 2, "{runs:?}");
    for run in &runs {
        assert!(run.join("history.jsonl").is_file(), "{}", run.display());
        assert!(
            !run.join("kafka").exists(),
            "{} started services of its own",
            run.display()
        );
    }
    // (Both runs valid: neither read the other's records, which would be
    // deliveries of ops it never invoked.)
    assert_no_process_left(&out);
}
