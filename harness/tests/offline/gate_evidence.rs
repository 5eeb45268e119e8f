//! The gate plans from `harness/data/gate-evidence.json`: it must be what
//! `scripts/gate-evidence` makes of docs/zoo.md, never edited by hand.

use std::process::Command;

#[test]
fn the_gate_evidence_is_the_scripts_output_from_the_zoo_page() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new("python3")
        .current_dir(root)
        .args(["scripts/gate-evidence", "docs/zoo.md"])
        .output()
        .expect("python3 runs scripts/gate-evidence");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let committed = std::fs::read_to_string(format!("{root}/harness/data/gate-evidence.json")).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "harness/data/gate-evidence.json differs from docs/zoo.md's tables: run \
         `scripts/gate-evidence > harness/data/gate-evidence.json`"
    );
}
