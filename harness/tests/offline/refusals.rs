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

/// `dualcheck gate` with options it cannot carry out exits 2 naming what is
/// wrong, before any service starts; `--plan` prints the battery and runs
/// nothing: the fault lists that expose the most mutants per second first.
#[test]
fn gate_refuses_bad_options_and_plans_without_running() {
    let gate = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_dualcheck"))
            .arg("gate")
            .args(args)
            .output()
            .expect("starting dualcheck gate")
    };
    for (args, says) in [
        (vec!["--impl", "no-such-pattern"], "no-such-pattern"),
        (vec!["--impl", "exec"], "--cmd"),
        (vec!["--impl", "outbox-poll", "--budget", "soon"], "soon"),
        (vec!["--impl", "outbox-poll", "--faults", "pg-parttion"], "pg-parttion"),
        (
            vec!["--impl", "outbox-poll", "--fault-cmd", "freeze=true", "--plan"],
            "runs no custom fault",
        ),
        (
            vec!["--impl", "outbox-poll", "--name", "orders service", "--plan"],
            "`orders service` is not a name",
        ),
    ] {
        let out = gate(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let out = gate(&["--impl", "outbox-poll", "--budget", "5m", "--plan"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let steps: Vec<&str> = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(char::is_numeric))
        .collect();
    assert!(steps.len() > 5, "{stdout}");
    // Every step says which mutants its faults exposed in the zoo; the first
    // (the most per second) several; the plan outlasts the budget.
    let exposed = |l: &str| {
        l.split("(exposed ")
            .nth(1)
            .map_or(0, |m| m.split(';').next().unwrap_or("").split(", ").count())
    };
    assert!(steps.iter().all(|l| exposed(l) >= 1), "{stdout}");
    assert!(exposed(steps[0]) >= 3, "{stdout}");
    let last_at: f64 = steps
        .last()
        .and_then(|l| l.rsplit('~').next())
        .and_then(|t| t.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("each step says when it would end");
    assert!(last_at >= 300.0, "{stdout}");
    // --faults keeps the fault lists made of those faults only.
    let out = gate(&[
        "--impl",
        "outbox-poll",
        "--faults",
        "kafka-partition,pg-partition",
        "--plan",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for line in stdout.lines().filter(|l| l.contains("--faults ")) {
        let faults = line
            .split("--faults ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap();
        assert!(
            ["kafka-partition", "pg-partition", "none"].contains(&faults),
            "{faults} is not within --faults: {stdout}"
        );
    }
}

/// `dualcheck zoo` runs each mutant under the built-in faults it names: a
/// custom fault given to it is refused before anything starts, not ignored.
#[test]
fn zoo_refuses_a_custom_fault() {
    let out = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args(["zoo", "--mutants", "naive", "--fault-cmd", "freeze=true"])
        .output()
        .expect("starting dualcheck zoo");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--fault-cmd freeze"), "{stderr}");
}
