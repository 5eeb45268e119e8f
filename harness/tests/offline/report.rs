//! The report files of a run directory, on hand-made histories: no services needed.

use std::path::{Path, PathBuf};
use std::process::Command;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir()
        .join(format!("dualcheck-report-{}", std::process::id()))
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const S: i64 = 1_000_000_000;

/// A history with a lost op, a duplicate, a key that is HTML and two fault windows.
fn invalid_history() -> String {
    let key = "<script>alert(1)</script>&\"k\"";
    let mut lines = vec![format!(
        r#"{{"type":"nemesis","fault":"kafka-partition","phase":"start","time":{}}}"#,
        S
    )];
    lines.extend(op_1_ok_and_delivered());
    lines.extend([
        format!(
            r#"{{"type":"invoke","op":2,"process":1,"key":{},"seq":0,"time":{}}}"#,
            serde_json::to_string(key).unwrap(),
            S + S / 2
        ),
        format!(r#"{{"type":"ok","op":2,"process":1,"time":{}}}"#, S + S / 2 + 1_000_000),
        format!(
            r#"{{"type":"nemesis","fault":"kafka-partition","phase":"stop","time":{}}}"#,
            2 * S
        ),
        format!(
            r#"{{"type":"nemesis","fault":"pg-kill","phase":"start","time":{}}}"#,
            2 * S + S / 4
        ),
        format!(
            r#"{{"type":"invoke","op":3,"process":0,"key":"k1","seq":1,"time":{}}}"#,
            2 * S + S / 2
        ),
        format!(
            r#"{{"type":"info","op":3,"process":0,"time":{},"error":"timeout <b>"}}"#,
            2 * S + S * 3 / 4
        ),
        format!(
            r#"{{"type":"invoke","op":4,"process":1,"key":"k2","seq":0,"time":{}}}"#,
            2 * S + S / 2
        ),
        format!(r#"{{"type":"ok","op":4,"process":1,"time":{}}}"#, 2 * S + S * 6 / 10),
        format!(
            r#"{{"type":"deliver","op":4,"event":"e4","key":"k2","seq":0,"topic":"orders","partition":1,"offset":0,"time":{}}}"#,
            2 * S + S * 7 / 10
        ),
        format!(
            r#"{{"type":"deliver","op":4,"event":"e4","key":"k2","seq":0,"topic":"orders","partition":1,"offset":1,"time":{}}}"#,
            2 * S + S * 8 / 10
        ),
        format!(
            r#"{{"type":"nemesis","fault":"pg-kill","phase":"stop","time":{}}}"#,
            3 * S
        ),
        format!(
            r#"{{"type":"invoke","op":5,"process":0,"key":"k3","seq":0,"time":{}}}"#,
            3 * S
        ),
        format!(
            r#"{{"type":"fail","op":5,"process":0,"time":{},"error":"abort"}}"#,
            3 * S + 1_000_000
        ),
        r#"{"type":"committed","op":1}"#.to_string(),
        r#"{"type":"committed","op":2}"#.to_string(),
        r#"{"type":"committed","op":4}"#.to_string(),
    ]);
    lines.join("\n") + "\n"
}

/// Op 1 on key k1: invoked at 0.5 s, ok 3 ms later and delivered 9 ms after its invoke.
fn op_1_ok_and_delivered() -> [String; 3] {
    [
        format!(
            r#"{{"type":"invoke","op":1,"process":0,"key":"k1","seq":0,"time":{}}}"#,
            S / 2
        ),
        format!(r#"{{"type":"ok","op":1,"process":0,"time":{}}}"#, S / 2 + 3_000_000),
        format!(
            r#"{{"type":"deliver","op":1,"event":"e1","key":"k1","seq":0,"topic":"orders","partition":0,"offset":0,"time":{}}}"#,
            S / 2 + 9_000_000
        ),
    ]
}

fn valid_history() -> String {
    op_1_ok_and_delivered().join("\n") + "\n"
}

fn results_json(implementation: &str) -> String {
    serde_json::json!({
        "implementation": implementation, "seed": 7, "fault_names": ["kafka-partition", "pg-kill"],
        "duration_s": 3.0, "throughput_ok_per_s": 1.0, "drained": true, "nemesis_errors": [],
        "valid": false, "exactly_once": false
    })
    .to_string()
}

fn write_run(name: &str, history: &str, results: Option<&str>) -> PathBuf {
    let d = dir(name);
    std::fs::write(d.join("history.jsonl"), history).unwrap();
    if let Some(r) = results {
        std::fs::write(d.join("results.json"), r).unwrap();
    }
    d
}

fn svgs(html: &str) -> Vec<&str> {
    html.match_indices("<svg")
        .map(|(i, _)| {
            let end = html[i..].find("</svg>").expect("svg closes") + i + "</svg>".len();
            &html[i..end]
        })
        .collect()
}

fn testcases(xml: &str) -> Vec<(String, bool)> {
    let doc = roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("junit.xml is not well-formed: {e}\n{xml}"));
    doc.descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .map(|n| {
            (
                n.attribute("name").unwrap().to_string(),
                n.children().any(|c| c.has_tag_name("failure")),
            )
        })
        .collect()
}

#[test]
fn invalid_run_report_and_junit() {
    let d = write_run("invalid", &invalid_history(), Some(&results_json("naive<x>")));
    let files = dualcheck::report::write(&d).unwrap();
    assert!(!files.valid);

    let xml = std::fs::read_to_string(d.join("junit.xml")).unwrap();
    let cases = testcases(&xml);
    let names: Vec<&str> = cases.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        checkers::Anomaly::ALL.iter().map(|a| a.name()).collect::<Vec<_>>(),
        "one test case per anomaly kind"
    );
    let failed: Vec<&str> = cases.iter().filter(|(_, f)| *f).map(|(n, _)| n.as_str()).collect();
    assert_eq!(failed, vec!["lost"], "{xml}");
    assert!(xml.contains("op 2"), "the failure carries its example: {xml}");
    assert!(xml.contains("&lt;script&gt;"), "{xml}");
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).unwrap();
    assert_eq!(suite.attribute("failures"), Some("1"));
    assert_eq!(suite.attribute("name"), Some("dualcheck.naive<x>"));
    // The duplicate is no violation by default: it passes, with its example in system-out.
    let dup = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some("duplicate"))
        .unwrap();
    assert!(dup.children().any(|c| c.has_tag_name("system-out")));

    let html = std::fs::read_to_string(d.join("report.html")).unwrap();
    assert!(html.contains("id=\"verdict\">INVALID<"), "verdict at the top");
    assert!(!html.contains("<script"), "history text is escaped");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;k&quot;"));
    assert!(html.contains("naive&lt;x&gt;"));
    assert!(only_svg_namespace(&html), "no network");
    let plots = svgs(&html);
    assert_eq!(plots.len(), 3, "latency, throughput and unseen plots");
    for svg in &plots {
        let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("SVG not well-formed: {e}"));
        let bands = doc
            .descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("opacity") == Some("0.18"))
            .count();
        assert_eq!(bands, 2, "one band per fault window");
    }
    // Outcomes coloured: the lost op in red, the info op in orange, the fail in grey.
    for colour in ["#D62728", "#FF7F0E", "#7F7F7F", "#1F77B4"] {
        assert!(
            plots[0].to_uppercase().contains(colour),
            "latency plot has points of {colour}"
        );
    }
    assert!(html.contains("kafka-partition") && html.contains("pg-kill"));
}

/// The only URLs allowed are the SVG namespace identifiers (not fetched).
fn only_svg_namespace(html: &str) -> bool {
    html.replace("http://www.w3.org/2000/svg", "")
        .replace("http://www.w3.org/1999/xlink", "")
        .find("http")
        .is_none()
}

#[test]
fn valid_run_has_no_failures() {
    let d = write_run("valid", &valid_history(), None);
    let files = dualcheck::report::write(&d).unwrap();
    assert!(files.valid);
    let cases = testcases(&std::fs::read_to_string(d.join("junit.xml")).unwrap());
    assert_eq!(cases.len(), checkers::Anomaly::ALL.len());
    assert!(cases.iter().all(|(_, f)| !f));
    let html = std::fs::read_to_string(d.join("report.html")).unwrap();
    assert!(html.contains("id=\"verdict\">VALID<"));
    assert!(only_svg_namespace(&html), "no network");
    assert_eq!(svgs(&html).len(), 3);
}

#[test]
fn report_command_on_a_history_file_and_errors() {
    let d = write_run("cli", &invalid_history(), None);
    let out = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args(["report", d.join("history.jsonl").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(d.join("report.html").is_file() && d.join("junit.xml").is_file());

    let missing = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args(["report", "/nonexistent/run"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such run directory"));

    let bad = write_run("bad", "{\"type\":\"ok\"}\n{}\n", None);
    let out = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args(["report", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = Path::new(&bad);
}

fn outcome(implementation: &str, seed: u64, lost: u64, p99_ms: i64) -> dualcheck::runner::RunOutcome {
    let mut result = checkers::CheckResult {
        valid: lost == 0,
        ..Default::default()
    };
    result.anomalies.lost = lost;
    result.anomalies.duplicate = 2;
    // One healed partition: recovered in p99_ms / 10 s, or never when the run lost ops.
    result.faults = vec![checkers::results::FaultWindow {
        fault: "kafka-partition".into(),
        start: 1_000_000_000,
        stop: Some(2_000_000_000),
        recovery_ns: (lost == 0).then_some(p99_ms * 100_000_000),
    }];
    result.latency_ns = Some(checkers::Latency {
        count: 10,
        p50: 1_000_000,
        p95: 2_000_000,
        p99: p99_ms * 1_000_000,
        max: p99_ms * 1_000_000,
    });
    dualcheck::runner::RunOutcome {
        result,
        throughput_ok_per_s: 50.0,
        run_dir: PathBuf::from(format!("/tmp/cmp/run-{implementation}-{seed}")),
        implementation: implementation.into(),
        seed,
        faults: vec!["kafka-partition".into()],
        duration_s: 10.0,
        drained: true,
        parked: None,
        nemesis_errors: vec![],
        in_doubt: None,
        slots_dropped: vec![],
        ops_max: None,
        idle_window: None,
        max_retained_wal: None,
        transit: None,
        phases: None,
    }
}

#[test]
fn compare_rows_tables_and_html() {
    use dualcheck::sweep::{html, markdown_table, text_table, Row};
    let naive = Row::from_runs(
        "naive",
        &[(0, Ok(outcome("naive", 0, 3, 40))), (1, Ok(outcome("naive", 1, 0, 90)))],
    );
    assert_eq!(naive.verdict, "INVALID");
    assert_eq!((naive.runs, naive.anomalies.lost, naive.anomalies.duplicate), (2, 3, 4));
    assert_eq!(naive.failed_seeds, vec![0]);
    assert_eq!(naive.p99_ms, Some(90.0), "worst run's p99");
    assert_eq!(
        naive.recovery,
        vec![dualcheck::sweep::FaultRecovery {
            fault: "kafka-partition".into(),
            windows: 2,
            median_s: Some(9.0),
            worst_s: Some(9.0),
            never: 1
        }],
        "seed 0 lost ops and never recovered; seed 1 took 9 s"
    );
    let outbox = Row::from_runs(
        "outbox-poll<b>",
        &[
            (0, Ok(outcome("outbox-poll", 0, 0, 20))),
            (1, Err("no services".into())),
        ],
    );
    assert_eq!(outbox.verdict, "valid");
    assert_eq!(outbox.errors.len(), 1);
    let rows = [naive, outbox];
    let text = text_table(&rows);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.lines().nth(1).unwrap().starts_with("naive ") && text.contains("INVALID"));
    assert!(text.contains("kafka-partition 9.0/9.0 (1 never)"), "{text}");
    let md = markdown_table(&rows);
    assert!(md.lines().nth(1).unwrap().starts_with("|---|"));
    let page = html(&rows, std::path::Path::new("/tmp/cmp"), "compare");
    assert!(page.contains("href=\"run-naive-0/report.html\""), "relative links");
    assert!(page.contains("outbox-poll&lt;b&gt;") && !page.contains("outbox-poll<b>"));
    assert!(page.contains("no services"));
}

#[test]
fn a_failed_fault_start_shows_as_failed_and_draws_no_band() {
    // pg-kill took effect; pg-pause, scheduled inside it, never did.
    let history = valid_history()
        + &[
            format!(r#"{{"type":"nemesis","fault":"pg-kill","phase":"start","time":{}}}"#, S / 2),
            format!(
                r#"{{"type":"nemesis","fault":"pg-pause","phase":"failed","time":{},"error":"cannot pause postgres: it is not running"}}"#,
                S / 2 + 1000
            ),
            format!(r#"{{"type":"nemesis","fault":"pg-kill","phase":"stop","time":{}}}"#, S),
        ]
        .join("\n")
        + "\n";
    let d = write_run("failed-fault", &history, None);
    let files = dualcheck::report::write(&d).unwrap();
    assert!(files.valid);
    let html = std::fs::read_to_string(d.join("report.html")).unwrap();
    assert!(
        html.contains("failed, never took effect: cannot pause postgres: it is not running"),
        "the faults table shows the failed start"
    );
    assert!(
        html.contains("<th>time to recover</th>"),
        "the faults table has the time to recover"
    );
    assert!(
        html.contains("1 fault never took effect: pg-pause"),
        "next to the verdict"
    );
    for svg in svgs(&html) {
        let doc = roxmltree::Document::parse(svg).unwrap();
        let bands = doc
            .descendants()
            .filter(|n| n.has_tag_name("rect") && n.attribute("opacity") == Some("0.18"))
            .count();
        assert_eq!(bands, 1, "a band for pg-kill only");
        // The failed start is marked in its own colour (#aa1111): its line and its cross.
        let marks = doc
            .descendants()
            .filter(|n| n.attribute("stroke").is_some_and(|c| c.eq_ignore_ascii_case("#AA1111")))
            .count();
        assert!(marks >= 2, "a mark where pg-pause failed to start: {svg}");
    }
    assert!(html.contains("fault start that failed"), "the legend names the mark");
    let xml = std::fs::read_to_string(d.join("junit.xml")).unwrap();
    assert!(xml.contains("fault_never_took_effect"), "{xml}");
}

#[test]
fn an_interrupted_history_reports_unknown() {
    // The recorder's begin line, and no end line: the run was interrupted.
    let history = format!("{{\"type\":\"begin\",\"time\":0}}\n{}", invalid_history());
    let d = write_run("interrupted", &history, None);
    let files = dualcheck::report::write(&d).unwrap();
    assert_eq!(files.verdict, checkers::Verdict::Unknown);
    assert!(!files.valid);
    let html = std::fs::read_to_string(d.join("report.html")).unwrap();
    assert!(html.contains("id=\"verdict\">UNKNOWN<"), "verdict at the top");
    assert!(html.contains("id=\"reason\">Why unknown: incomplete history"));
    let xml = std::fs::read_to_string(d.join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).unwrap();
    assert_eq!(suite.attribute("errors"), Some("1"), "{xml}");
    assert_eq!(suite.attribute("failures"), Some("0"), "{xml}");
    assert!(
        testcases(&xml).iter().all(|(_, failed)| !failed),
        "nothing judged: {xml}"
    );
    let complete = doc
        .descendants()
        .find(|n| n.has_tag_name("testcase") && n.attribute("name") == Some("complete_history"))
        .expect("a test case for the incomplete history");
    assert!(complete.children().any(|c| c.has_tag_name("error")));
    // The report command exits 3 on it.
    let code = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .args(["report", d.to_str().unwrap()])
        .output()
        .unwrap()
        .status
        .code();
    assert_eq!(code, Some(3));
}

#[test]
fn a_report_judges_order_as_the_run_did() {
    // k's seq 1 delivered before seq 0: a reorder, when the record key is the business key.
    let history = [
        r#"{"type":"invoke","op":1,"process":0,"key":"k","seq":0,"time":1000}"#,
        r#"{"type":"ok","op":1,"process":0,"time":2000}"#,
        r#"{"type":"invoke","op":2,"process":0,"key":"k","seq":1,"time":3000}"#,
        r#"{"type":"ok","op":2,"process":0,"time":4000}"#,
        r#"{"type":"deliver","op":2,"event":"e2","key":"k","seq":1,"topic":"t","partition":0,"offset":0,"time":5000}"#,
        r#"{"type":"deliver","op":1,"event":"e1","key":"k","seq":0,"topic":"t","partition":0,"offset":1,"time":6000}"#,
    ]
    .join("\n")
        + "\n";
    let judged = write_run("order-judged", &history, None);
    assert!(
        !dualcheck::report::write(&judged).unwrap().valid,
        "a bare history judges order"
    );
    // A run whose records were not keyed by the business key did not judge order: nor does its report.
    let unjudged = write_run("order-not-judged", &history, Some(r#"{"per_key_order": false}"#));
    assert!(dualcheck::report::write(&unjudged).unwrap().valid);
}

#[test]
fn the_plots_mark_when_the_run_recovered_from_a_fault() {
    // kafka-partition from 1 s to 2 s; op 1, acknowledged inside it, is
    // delivered at 2.5 s: recovered 0.5 s after the stop.
    let history = [
        format!(r#"{{"type":"nemesis","fault":"kafka-partition","phase":"start","time":{S}}}"#),
        format!(r#"{{"type":"invoke","op":1,"process":0,"key":"k1","seq":0,"time":{}}}"#, S + S / 10),
        format!(r#"{{"type":"ok","op":1,"process":0,"time":{}}}"#, S + S / 5),
        format!(r#"{{"type":"nemesis","fault":"kafka-partition","phase":"stop","time":{}}}"#, 2 * S),
        format!(
            r#"{{"type":"deliver","op":1,"event":"e1","key":"k1","seq":0,"topic":"orders","partition":0,"offset":0,"time":{}}}"#,
            2 * S + S / 2
        ),
        r#"{"type":"committed","op":1}"#.to_string(),
    ]
    .join("\n")
        + "\n";
    let d = write_run("recovery-marks", &history, None);
    let out = Command::new(env!("CARGO_BIN_EXE_dualcheck"))
        .arg("report")
        .arg(&d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let html = std::fs::read_to_string(d.join("report.html")).unwrap();
    let plots = svgs(&html);
    assert_eq!(plots.len(), 3);
    for svg in plots {
        let doc = roxmltree::Document::parse(svg).unwrap();
        let marks = doc.descendants().filter(|n| n.has_tag_name("polygon")).count();
        assert_eq!(marks, 1, "one recovery mark: {svg}");
    }
}

/// A run's summary names the faults listed that its seed's schedule left
/// out, so a run that never injected one does not read as if it survived it.
#[test]
fn the_summary_names_listed_faults_the_schedule_left_out() {
    let mut o = outcome("outbox-poll", 0, 0, 40);
    o.faults = vec!["kafka-partition".into(), "relay-kill".into(), "pg-kill".into()];
    o.result.failed_faults = vec![checkers::results::FailedFault {
        fault: "pg-kill".into(),
        time: 3_000_000_000,
        error: Some("never took effect".into()),
    }];
    let text = o.summary();
    let line = text
        .lines()
        .find(|l| l.starts_with("not in this seed's schedule:"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("relay-kill"), "{line}");
    assert!(
        !line.contains("kafka-partition") && !line.contains("pg-kill"),
        "scheduled faults are not listed: {line}"
    );
    o.faults.truncate(1);
    assert!(
        !o.summary().contains("not in this seed's schedule"),
        "every listed fault ran"
    );
}
