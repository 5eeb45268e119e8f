//! Refusals that happen before any service is touched.

use std::process::Command;

/// A mutant the pattern does not declare: `dualcheck app` refuses to start
/// (exit 2) and names the pattern's mutants and the mutant's owner, before
/// touching any service.
#[test]
fn an_undeclared_mutant_refuses_to_start() {
    let run = |implementation: &str, bug: &str| {
        Command::new(env!("CARGO_BIN_EXE_dualcheck"))
            .args(["app", "--impl", implementation])
            .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
            .env("KAFKA_BOOTSTRAP", "127.0.0.1:1")
            .env("TOPIC", "zoo")
            .env("PORT", "1")
            .env("DUALCHECK_BUG", bug)
            .output()
            .expect("starting dualcheck app")
    };
    let out = run("outbox-poll", "no-xmin-guard");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("delete-before-ack") && stderr.contains("belongs to outbox-xid"),
        "{stderr}"
    );
    let out = run("naive", "typo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("naive has no mutant") && stderr.contains("new-slot-on-restart"),
        "{stderr}"
    );
}
