//! `junit.xml`: one test case per anomaly kind, so CI systems show which
//! property of the dual write broke. A kind that makes the run invalid is a
//! failure carrying its examples; a kind that occurred without being a
//! violation (`duplicate` without `--exactly-once`) passes with its examples in
//! `system-out`.

use super::{escape, example_line, ReportInput};
use checkers::Anomaly;
use std::fmt::Write as _;

/// The JUnit XML of a run.
pub fn render(input: &ReportInput) -> String {
    let r = &input.result;
    let name = format!(
        "dualcheck.{}",
        input.meta.implementation.as_deref().unwrap_or("history")
    );
    let violations: Vec<Anomaly> = r.anomalies.violations(r.exactly_once);
    let time = input.meta.duration_s.unwrap_or(0.0);
    // An incomplete history: one test case errs with the reason; the anomaly
    // cases are skipped (not judged), their counts kept in their output.
    let unknown = r.verdict == checkers::Verdict::Unknown;
    let tests = Anomaly::ALL.len() + usize::from(unknown);
    let (failures, errors, skipped) = if unknown {
        (0, 1, Anomaly::ALL.len())
    } else {
        (violations.len(), 0, 0)
    };
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        x,
        "<testsuites name=\"dualcheck\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{time:.3}\">"
    );
    let _ = writeln!(
        x,
        "  <testsuite name=\"{}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{time:.3}\">",
        escape(&name),
    );
    x.push_str("    <properties>\n");
    let mut props: Vec<(&str, String)> = vec![
        ("verdict", r.verdict.as_str().to_string()),
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
    for (k, v) in props {
        let _ = writeln!(x, "      <property name=\"{}\" value=\"{}\"/>", escape(k), escape(&v));
    }
    x.push_str("    </properties>\n");
    if unknown {
        let reason = r.reason.as_deref().unwrap_or("incomplete history");
        let _ = writeln!(
            x,
            "    <testcase classname=\"{}\" name=\"complete_history\" time=\"0\">\n      <error type=\"unknown\" message=\"{}\">{}</error>\n    </testcase>",
            escape(&name),
            escape("verdict unknown: the history is incomplete"),
            escape(reason)
        );
    }
    for &kind in Anomaly::ALL {
        let n = r.anomalies.get(kind);
        let examples: String = r
            .examples
            .get(&kind)
            .map(|v| v.iter().map(|e| example_line(e) + "\n").collect())
            .unwrap_or_default();
        let _ = write!(
            x,
            "    <testcase classname=\"{}\" name=\"{kind}\" time=\"0\"",
            escape(&name)
        );
        if unknown {
            let _ = writeln!(
                x,
                ">\n      <skipped message=\"not judged: the history is incomplete\"/>\n      <system-out>{}</system-out>\n    </testcase>",
                escape(&format!("{n} {kind} so far; examples:\n{examples}"))
            );
        } else if violations.contains(&kind) {
            let _ = writeln!(
                x,
                ">\n      <failure type=\"{kind}\" message=\"{n} {kind}\">{}</failure>\n    </testcase>",
                escape(&format!("{n} {kind} (definition in DESIGN.md); examples:\n{examples}"))
            );
        } else if n > 0 {
            let _ = writeln!(
                x,
                ">\n      <system-out>{}</system-out>\n    </testcase>",
                escape(&format!(
                    "{n} {kind}, not a violation with these options; examples:\n{examples}"
                ))
            );
        } else {
            x.push_str("/>\n");
        }
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}
