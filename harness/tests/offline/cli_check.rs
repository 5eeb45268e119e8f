//! `dualcheck check` as a user runs it: exit codes, one JSON object with
//! `--json`, and messages that name the file and line of unusable input.

use checkers::{CheckResult, Verdict};
use std::io::Write;
use std::process::Command;

use crate::support::runs::parse;

fn history(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dualcheck-cli-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    path
}

fn dualcheck(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const VALID: &str = r#"{"type":"invoke","op":17,"process":2,"key":"k3","seq":5,"time":120000}
{"type":"ok","op":17,"process":2,"time":150000}
{"type":"deliver","op":17,"event":"0b9c","key":"k3","seq":5,"topic":"orders","partition":0,"offset":42,"time":180000}
{"type":"committed","op":17}
"#;

#[test]
fn valid_history_exits_0_with_one_json_object() {
    let p = history("valid.jsonl", VALID);
    let (code, out, _) = dualcheck(&["check", p.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim().lines().count(), 1, "exactly one line of JSON: {out}");
    // The documented key names of the `check --json` contract
    // (docs/results.md): JSON on purpose, as a reader in another language
    // sees them. The other tests read the object as a `CheckResult`.
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["valid"], true);
    for kind in [
        "lost",
        "partial",
        "phantom",
        "unexpected",
        "duplicate",
        "duplicate_beyond_idempotency",
        "reorder",
        "lost_commit",
    ] {
        assert_eq!(v["anomalies"][kind], 0, "{kind}");
    }
    let (code, out, _) = dualcheck(&["check", p.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.starts_with("VALID"), "{out}");
}

#[test]
fn anomalies_exit_1_and_duplicates_only_with_exactly_once() {
    let lost = history(
        "lost.jsonl",
        &VALID.replace(r#"{"type":"deliver","op":17"#, r#"{"type":"deliver","op":99"#),
    );
    // op 99 was never invoked: the delivery is unexpected and op 17 is lost
    let (code, out, err) = dualcheck(&["check", lost.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1, "{out}");
    let v: CheckResult = parse("check", &out, &err);
    assert!(!v.valid);
    assert_eq!(v.anomalies.lost, 1);
    assert_eq!(v.anomalies.unexpected, 1);

    let dup_line = r#"{"type":"deliver","op":17,"event":"0b9c","key":"k3","seq":5,"topic":"orders","partition":0,"offset":43,"time":190000}"#;
    let dup = history("dup.jsonl", &format!("{VALID}{dup_line}\n"));
    assert_eq!(dualcheck(&["check", dup.to_str().unwrap()]).0, 0);
    let (code, out, err) = dualcheck(&["check", dup.to_str().unwrap(), "--exactly-once", "--json"]);
    assert_eq!(code, 1);
    let v: CheckResult = parse("check", &out, &err);
    assert_eq!(v.anomalies.duplicate, 1);
}

/// `dualcheck check -` reads the history from standard input, as `zcat
/// history.jsonl.gz | dualcheck check -` would give it; messages about it
/// name `<stdin>`.
#[test]
fn a_history_on_standard_input_is_checked_with_dash() {
    let check_stdin = |history: &str, args: &[&str]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
            .args(["check", "-"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(history.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, out, err) = check_stdin(VALID, &["--json"]);
    assert_eq!(code, 0, "{err}");
    let v: CheckResult = parse("check -", &out, &err);
    assert_eq!((v.verdict, v.valid, v.lines), (Verdict::Valid, true, 4));

    let lost = VALID.replace(r#"{"type":"deliver","op":17"#, r#"{"type":"deliver","op":99"#);
    let (code, out, _) = check_stdin(&lost, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("INVALID"), "{out}");

    let (code, out, err) = check_stdin(&format!("{VALID}this is not json\n"), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("<stdin>") && err.contains("line 5"), "{err}");
}

#[test]
fn unusable_input_exits_2_naming_file_and_line() {
    let cases = [
        (
            "notjson.jsonl",
            format!("{VALID}this is not json\n"),
            "line 5",
            "not valid JSON",
        ),
        (
            "missing.jsonl",
            r#"{"type":"invoke","op":1,"seq":0,"time":1}"#.to_string(),
            "line 1",
            "lacks field `key`",
        ),
        (
            "wrongtype.jsonl",
            r#"{"type":"ok","op":"seventeen","time":1}"#.to_string(),
            "line 1",
            "field `op`",
        ),
        (
            "unknown.jsonl",
            format!("{VALID}{{\"type\":\"explode\"}}\n"),
            "line 5",
            "unknown line type",
        ),
        ("empty.jsonl", String::new(), "empty.jsonl", "empty"),
    ];
    for (name, text, at, what) in cases {
        let p = history(name, &text);
        let (code, out, err) = dualcheck(&["check", p.to_str().unwrap(), "--json"]);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(out.is_empty(), "{name}: nothing on stdout when unusable: {out}");
        assert!(
            err.contains(name) && err.contains(at) && err.contains(what),
            "{name}: {err}"
        );
    }
    let (code, _, err) = dualcheck(&["check", "/definitely/not/here.jsonl"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("/definitely/not/here.jsonl") && err.contains("no such file"),
        "{err}"
    );
}

const BEGIN: &str = r#"{"type":"begin","time":0}"#;
const END: &str = r#"{"type":"end","time":200000,"drained":true}"#;
/// Op 17 acknowledged, its event not delivered yet: what a harness killed mid-run leaves.
const INTERRUPTED: &str = r#"{"type":"invoke","op":17,"process":2,"key":"k3","seq":5,"time":120000}
{"type":"ok","op":17,"process":2,"time":150000}
{"type":"invoke","op":18,"process":2,"key":"k3","seq":6,"time":160000}
"#;

#[test]
fn an_interrupted_history_is_unknown_exit_3_unless_assumed_complete() {
    let p = history("interrupted.jsonl", &format!("{BEGIN}\n{INTERRUPTED}"));
    let (code, out, err) = dualcheck(&["check", p.to_str().unwrap(), "--json"]);
    assert_eq!(code, 3, "unknown has its own exit code: {out}");
    let v: CheckResult = parse("check", &out, &err);
    assert_eq!(v.verdict, Verdict::Unknown);
    assert!(!v.valid);
    assert_eq!(v.complete, Some(false));
    let reason = v.reason.as_deref().unwrap();
    assert!(
        reason.contains("no `end` line") && reason.contains("lost 1") && reason.contains("--assume-complete"),
        "{reason}"
    );
    let (code, out, _) = dualcheck(&["check", p.to_str().unwrap()]);
    assert_eq!(code, 3);
    assert!(out.starts_with("UNKNOWN"), "{out}");
    assert!(out.contains("why unknown: incomplete history"), "{out}");

    // Judged as complete on request: what it was before the marks existed.
    let (code, out, err) = dualcheck(&["check", p.to_str().unwrap(), "--assume-complete", "--json"]);
    assert_eq!(code, 1, "{out}");
    let v: CheckResult = parse("check", &out, &err);
    assert_eq!(v.verdict, Verdict::Invalid);
    assert!(!v.valid);
    assert_eq!(v.anomalies.lost, 1);
    assert_eq!(v.reason, None);
    assert!(v.warnings[0].contains("--assume-complete"), "{v:?}");

    // With its end line the same history is judged as usual.
    let ended = history("ended.jsonl", &format!("{BEGIN}\n{INTERRUPTED}{END}\n"));
    let (code, out, err) = dualcheck(&["check", ended.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1, "{out}");
    let v: CheckResult = parse("check", &out, &err);
    assert_eq!((v.verdict, v.complete), (Verdict::Invalid, Some(true)));
    let ended_valid = history("ended-valid.jsonl", &format!("{BEGIN}\n{VALID}{END}\n"));
    assert_eq!(dualcheck(&["check", ended_valid.to_str().unwrap()]).0, 0);
}

#[test]
fn a_history_without_marks_is_judged_as_before() {
    let p = history("nomarks.jsonl", INTERRUPTED);
    let (code, out, err) = dualcheck(&["check", p.to_str().unwrap(), "--json"]);
    assert_eq!(code, 1, "{out}");
    let v: CheckResult = parse("check", &out, &err);
    assert_eq!(v.verdict, Verdict::Invalid);
    assert!(!v.valid);
    assert_eq!(v.anomalies.lost, 1);
    assert_eq!(v.complete, None);
    assert_eq!(v.reason, None);
    // --assume-complete changes nothing for it.
    assert_eq!(dualcheck(&["check", p.to_str().unwrap(), "--assume-complete"]).0, 1);
    let valid = history("nomarks-valid.jsonl", VALID);
    let (code, out, err) = dualcheck(&["check", valid.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0);
    let v: CheckResult = parse("check", &out, &err);
    assert_eq!((v.verdict, v.valid), (Verdict::Valid, true));
}

#[test]
fn a_failed_fault_is_said_next_to_the_verdict() {
    let failed = r#"{"type":"nemesis","fault":"kafka-reset","phase":"failed","time":100,"error":"starting fault kafka-reset: HTTP 409 Conflict"}"#;
    let p = history("failed-fault.jsonl", &format!("{VALID}{failed}\n"));
    let (code, out, _) = dualcheck(&["check", p.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let first = out.lines().next().unwrap();
    assert_eq!(first, "VALID  (1 fault never took effect: kafka-reset)", "{out}");
    assert!(
        out.contains("kafka-reset") && out.contains("FAILED, never took effect"),
        "{out}"
    );
    let (_, out, err) = dualcheck(&["check", p.to_str().unwrap(), "--json"]);
    let v: CheckResult = parse("check", &out, &err);
    assert_eq!(v.faults.len(), 0, "no window: {v:?}");
    assert_eq!(v.failed_faults[0].fault, "kafka-reset");
}

#[test]
fn an_out_directory_that_cannot_be_made_exits_2_naming_the_flag_before_anything_starts() {
    // A regular file where --out needs a directory: nothing can be made under it.
    let file = history("not-a-dir", "");
    let out = file.join("runs");
    for command in [
        vec!["run", "--impl", "outbox-poll", "--duration", "2s"],
        vec!["sweep", "--impls", "outbox-poll", "--duration", "2s"],
    ] {
        let mut args = command.clone();
        args.extend(["--out", out.to_str().unwrap()]);
        let (code, _, stderr) = dualcheck(&args);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("--out") && stderr.contains("point --out at a directory you can write"),
            "{stderr}"
        );
    }
}
