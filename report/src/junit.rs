//! `junit.xml`: one test case per anomaly kind, so CI systems show which
//! property of the dual write broke. A kind that makes the run invalid is a
//! failure carrying its examples; a kind that occurred without being a
//! violation (`duplicate` without `--exactly-once`) passes with its examples in
//! `system-out`. An incomplete history (verdict unknown) adds one erring test
//! case, `complete_history`, and skips the anomaly cases: nothing was judged.

use super::{example_line, ReportInput};
use anyhow::Result;
use checkers::{Anomaly, Verdict};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};
use std::time::Duration;

/// The JUnit XML of a run.
pub fn render(input: &ReportInput) -> Result<String> {
    let r = &input.result;
    let name = format!(
        "dualcheck.{}",
        input.meta.implementation.as_deref().unwrap_or("history")
    );
    let violations: Vec<Anomaly> = r.anomalies.violations(r.exactly_once);
    let unknown = r.verdict == Verdict::Unknown;
    let time = Duration::from_secs_f64(input.meta.duration_s.unwrap_or(0.0).max(0.0));
    let mut suite = TestSuite::new(name.as_str());
    suite.set_time(time);
    let mut props: Vec<(&str, String)> = vec![
        ("valid", r.valid.to_string()),
        ("exactly_once", r.exactly_once.to_string()),
        ("ops_invoked", r.ops.invoked.to_string()),
        ("ops_ok", r.ops.ok.to_string()),
        ("deliveries", r.deliveries.to_string()),
    ];
    if let Some(i) = &input.meta.implementation {
        props.push(("implementation", i.clone()));
    }
    if let Some(s) = input.meta.seed {
        props.push(("seed", s.to_string()));
    }
    if !input.meta.faults.is_empty() {
        props.push(("faults", input.meta.faults.join(",")));
    }
    if let Some(l) = &r.latency_ns {
        props.push(("latency_p50_ms", format!("{:.3}", l.p50 as f64 / 1e6)));
        props.push(("latency_p99_ms", format!("{:.3}", l.p99 as f64 / 1e6)));
    }
    for f in &r.failed_faults {
        props.push((
            "fault_never_took_effect",
            format!(
                "{} at {:.3} s: {}",
                f.fault,
                f.time as f64 / 1e9,
                f.error.as_deref().unwrap_or("")
            ),
        ));
    }
    suite.add_properties(props.into_iter().map(|(k, v)| Property::new(k, v)));
    if unknown {
        let mut error = TestCaseStatus::non_success(NonSuccessKind::Error);
        error
            .set_type("unknown")
            .set_message("verdict unknown: the history is incomplete")
            .set_description(r.reason.as_deref().unwrap_or("incomplete history"));
        let mut case = TestCase::new("complete_history", error);
        case.set_classname(name.as_str()).set_time(Duration::ZERO);
        suite.add_test_case(case);
    }
    for &kind in Anomaly::ALL {
        let n = r.anomalies.get(kind);
        let examples: String = r
            .examples
            .get(&kind)
            .map(|v| v.iter().map(|e| example_line(e) + "\n").collect())
            .unwrap_or_default();
        let (status, out) = if unknown {
            let mut skipped = TestCaseStatus::skipped();
            skipped.set_message("not judged: the history is incomplete");
            (skipped, Some(format!("{n} {kind} so far; examples:\n{examples}")))
        } else if violations.contains(&kind) {
            let mut failure = TestCaseStatus::non_success(NonSuccessKind::Failure);
            failure
                .set_type(kind.name())
                .set_message(format!("{n} {kind}"))
                .set_description(format!(
                    "{n} {kind} (definition: docs/anomalies.md#{kind}); examples:\n{examples}"
                ));
            (failure, None)
        } else if n > 0 {
            (
                TestCaseStatus::success(),
                Some(format!(
                    "{n} {kind}, not a violation with these options; examples:\n{examples}"
                )),
            )
        } else {
            (TestCaseStatus::success(), None)
        };
        let mut case = TestCase::new(kind.name(), status);
        case.set_classname(name.as_str()).set_time(Duration::ZERO);
        if let Some(out) = out {
            case.set_system_out(out);
        }
        suite.add_test_case(case);
    }
    let mut report = Report::new("dualcheck");
    report.set_time(time).add_test_suite(suite);
    Ok(report.to_string()?)
}
