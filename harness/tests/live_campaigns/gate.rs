//! `dualcheck gate` on a correct built-in: it passes within its budget
//! (services included; at least one run always runs) and says what ran.
//! The failing gate of a service as it is: live_runs/exec_templates.rs.

use dualcheck::gate::{GateEnd, GateOutcome};
use std::process::Command;

use crate::support::runs::{assert_no_process_left, out_dir, parse_output};

#[test]
fn a_gate_of_a_correct_builtin_passes_within_its_budget_and_says_what_ran() {
    let _guard = crate::support::alone();
    let out = out_dir("gate-correct");
    let output = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args([
            "gate",
            "--impl",
            "outbox-poll",
            "--faults",
            "network",
            "--budget",
            "15s",
            "--json",
            "--out",
        ])
        .arg(&out)
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_ACTIONS")
        .output()
        .expect("starting dualcheck gate");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let g: GateOutcome = parse_output("gate-correct", &output);
    assert_eq!(g.end, GateEnd::Passed);
    assert!(
        !g.runs.is_empty() && g.runs.iter().all(|r| r.anomalies.is_empty()),
        "{g:?}"
    );
    // The first step ran (one always does); the next did not fit the budget.
    assert_eq!(g.runs[0].faults, g.planned[0].faults);
    let network = dualcheck::nemesis::Fault::parse_list("network").unwrap();
    for step in &g.planned {
        let faults = dualcheck::nemesis::Fault::parse_list(&step.faults).unwrap();
        assert!(faults.iter().all(|f| network.contains(f)), "--faults network: {step:?}");
    }
    assert!(g.stopped.contains("budget"), "{}", g.stopped);
    assert!(g.replay.is_none() && !g.covered.is_empty(), "{g:?}");
    let summary = std::fs::read_to_string(g.dir.join("summary.md")).unwrap();
    assert!(
        summary.contains("passed") && summary.contains(&g.runs[0].faults),
        "{summary}"
    );
    let junit = std::fs::read_to_string(g.dir.join("junit.xml")).unwrap();
    assert!(
        !junit.contains("<failure") && junit.contains(&format!("tests=\"{}\"", g.runs.len())),
        "{junit}"
    );
    assert_no_process_left(&g.dir);
}
