//! `report.html`: one self-contained page (inline CSS and SVG, no script, no
//! network). Everything that comes from a history or a run file is escaped.

use super::plots::{self, css, fault_colour, fault_names, point_colour};
use super::series::PointKind;
use super::{escape, example_line, fmt_ns, ReportInput};
use crate::run_dir;
use anyhow::Result;
use checkers::Anomaly;
use std::fmt::Write as _;

const STYLE: &str = "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em;color:#222;max-width:1100px}\
h1{margin-bottom:.2em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}\
.verdict{font-size:1.6em;font-weight:bold;padding:.4em .8em;border-radius:6px;display:inline-block}\
.valid{background:#e3f4e3;color:#1a6b1a}.invalid{background:#fbe3e3;color:#a11}.unknown{background:#eee;color:#555}\
td.failed{color:#a11;font-weight:bold}\
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left;font-size:.92em}\
th{background:#f5f5f5}td.bad{background:#fbe3e3;font-weight:bold}td.warn{background:#fff3d6}\
.legend span{display:inline-block;margin-right:1.2em;font-size:.9em}\
.sw{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:4px;vertical-align:middle}\
pre{background:#f7f7f7;padding:.6em;overflow:auto;max-height:24em;font-size:.85em}\
.plot svg{max-width:100%;height:auto}";

/// One example's trail, folded: its account, fault windows, history and log lines.
fn trail_html(h: &mut String, e: &checkers::Example, t: &checkers::Trail) {
    let who = match (e.op, t.op) {
        (Some(op), _) => format!("op {op}"),
        (None, Some(op)) => format!("read of key {} (follows op {op})", e.key.clone().unwrap_or_default()),
        (None, None) => format!("key {}", e.key.clone().unwrap_or_default()),
    };
    let _ = writeln!(
        h,
        "<details class=\"trail\"><summary>trail of {}: {}</summary>",
        escape(&who),
        escape(&crate::trails::one_line(t))
    );
    h.push_str("<h4>faults active since its invoke</h4>\n");
    if t.faults.is_empty() {
        h.push_str("<p>none</p>\n");
    } else {
        h.push_str("<ul>");
        for w in &t.faults {
            let _ = write!(
                h,
                "<li>{} {} .. {}</li>",
                escape(&w.fault),
                fmt_ns(w.start),
                w.stop.map(fmt_ns).unwrap_or_else(|| "never healed".into())
            );
        }
        h.push_str("</ul>\n");
    }
    h.push_str("<h4>the implementation's account (GET /trace/{op})</h4>\n");
    match (&t.trace, &t.trace_missing) {
        (Some(v), _) => {
            let _ = writeln!(
                h,
                "<pre>{}</pre>",
                escape(&serde_json::to_string_pretty(v).unwrap_or_default())
            );
        }
        (None, why) => {
            let _ = writeln!(h, "<p>none: {}</p>", escape(why.as_deref().unwrap_or("not asked")));
        }
    }
    h.push_str("<h4>history lines</h4>\n");
    let lines: Vec<String> = t.history.iter().map(|v| v.to_string()).collect();
    let _ = writeln!(h, "<pre>{}</pre>", escape(&lines.join("\n")));
    h.push_str("<h4>log lines naming the op or its event ids</h4>\n");
    let logs: Vec<String> = t
        .logs
        .iter()
        .map(|l| format!("{}:{}: {}", l.file, l.line, l.text))
        .collect();
    let _ = writeln!(
        h,
        "<pre>{}</pre></details>",
        escape(
            if logs.is_empty() {
                "none".to_string()
            } else {
                logs.join("\n")
            }
            .as_str()
        )
    );
}

/// The report page of a run.
pub fn render(input: &ReportInput) -> Result<String> {
    let r = &input.result;
    let m = &input.meta;
    let end_s = ((input.series.end as f64 / 1e9).max(m.duration_s.unwrap_or(0.0)))
        .max(r.unseen_per_second.len() as f64)
        .max(1.0);
    let name = m.implementation.as_deref().unwrap_or("history");
    let mut h = String::new();
    let verdict = r.verdict.as_str().to_uppercase();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>dualcheck: {} {}</title><style>{STYLE}</style></head><body>\n",
        escape(name),
        verdict
    );
    let _ = writeln!(h, "<h1>dualcheck report: {}</h1>", escape(name));
    let _ = writeln!(
        h,
        "<p><span class=\"verdict {}\" id=\"verdict\">{verdict}</span>{}</p>",
        r.verdict.as_str(),
        escape(&crate::summary::not_in_effect(r))
    );
    if let Some(reason) = &r.reason {
        let _ = writeln!(h, "<p id=\"reason\">Why unknown: {}</p>", escape(reason));
    }
    if !r.violations.is_empty() {
        let names: Vec<&str> = r.violations.iter().map(|a| a.name()).collect();
        let _ = writeln!(h, "<p>Violations: <b>{}</b></p>", escape(&names.join(", ")));
        if let Some(dir) = &input.run_dir {
            let _ = writeln!(
                h,
                "<p id=\"shrink\">Smallest reproduction (fewer fault windows, a shorter and smaller workload, \
on services started once; writes <code>shrunk/</code> here): <code>dualcheck shrink {}</code></p>",
                escape(&crate::record::quote(&dir.display().to_string()))
            );
        }
    }

    // Anomaly counts.
    h.push_str("<table id=\"anomalies\"><tr>");
    for k in Anomaly::ALL {
        let _ = write!(h, "<th title=\"{}\">{k}</th>", escape(k.description()));
    }
    h.push_str("</tr><tr>");
    let violations = r.anomalies.violations(r.exactly_once);
    for &k in Anomaly::ALL {
        let n = r.anomalies.get(k);
        let class = if violations.contains(&k) {
            " class=\"bad\""
        } else if n > 0 {
            " class=\"warn\""
        } else {
            ""
        };
        let _ = write!(h, "<td{class}>{n}</td>");
    }
    h.push_str("</tr></table>\n");

    // Figures.
    h.push_str("<table id=\"figures\">");
    let mut row = |k: &str, v: String| {
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&v));
    };
    row(
        "ops",
        format!(
            "{} invoked, {} ok, {} fail, {} info, {} pending; {} committed ({})",
            r.ops.invoked, r.ops.ok, r.ops.fail, r.ops.info, r.ops.pending, r.ops.committed, r.committed_from
        ),
    );
    row("deliveries", r.deliveries.to_string());
    match &r.latency_ns {
        Some(l) => row(
            "commit → first delivery",
            format!(
                "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} ops",
                l.p50 as f64 / 1e6,
                l.p95 as f64 / 1e6,
                l.p99 as f64 / 1e6,
                l.max as f64 / 1e6,
                l.count
            ),
        ),
        None => row(
            "commit → first delivery",
            "no op both acknowledged and delivered".into(),
        ),
    }
    if let Some(t) = m.throughput_ok_per_s {
        row("throughput", format!("{t:.1} ok ops/s"));
    }
    if let Some(d) = m.drained {
        row(
            "drained",
            if d {
                "yes".into()
            } else {
                "no: the drain timed out with events unpublished".into()
            },
        );
    }
    if let Some(n) = m.parked {
        row(
            "parked",
            if n == 0 {
                "none".into()
            } else {
                format!("{n} event(s) the implementation gave up publishing on purpose (their ops count as lost; see the trails)")
            },
        );
    }
    if let Some(d) = &m.in_doubt {
        row(
            "in doubt",
            format!(
                "{} prepared transaction(s) left unresolved; longest unresolved {} ms; {} seen while polling; recovery committed {}, rolled back {}{}",
                d.unresolved,
                d.max_unresolved_ms,
                d.prepared_seen,
                d.recovered_commit,
                d.recovered_rollback,
                if d.recovery_errors.is_empty() {
                    String::new()
                } else {
                    format!("; recovery errors: {}", d.recovery_errors.join("; "))
                }
            ),
        );
    }
    row("history lines", r.lines.to_string());
    for w in &r.warnings {
        row("warning", w.clone());
    }
    for e in &m.nemesis_errors {
        row("nemesis error", e.clone());
    }
    h.push_str("</table>\n");

    // Plots.
    let faults = &r.faults;
    let marks = plots::FaultMarks {
        windows: faults,
        failed: &r.failed_faults,
    };
    let fault_legend = {
        let mut s = String::new();
        for (i, n) in fault_names(faults).iter().enumerate() {
            let _ = write!(
                s,
                "<span><i class=\"sw\" style=\"background:{};opacity:.5\"></i>{} (fault)</span>",
                css(fault_colour(i)),
                escape(n)
            );
        }
        if !r.failed_faults.is_empty() {
            let _ = write!(
                s,
                "<span><i class=\"sw\" style=\"background:{}\"></i>fault start that failed (no band: it never took effect)</span>",
                css(plots::FAILED_START_COLOUR)
            );
        }
        s
    };
    h.push_str("<h2>Commit-to-delivery latency over time</h2>\n<p class=\"legend\">");
    for k in PointKind::ALL {
        let _ = write!(
            h,
            "<span><i class=\"sw\" style=\"background:{}\"></i>{}</span>",
            css(point_colour(k)),
            escape(k.label())
        );
    }
    h.push_str(&fault_legend);
    let _ = writeln!(
        h,
        "</p><p>Each point is an op at its completion time; its height is the time from the acknowledgment \
to the first delivery (log scale; deliveries before the acknowledgment are drawn at the bottom). Ops never \
delivered sit on the faint red line at the top. Shaded bands are the faults' active windows; a line topped by a \
triangle in a fault's colour marks when the run recovered from it (see the faults table). At most {} points \
per class are drawn.</p>",
        plots::MAX_POINTS
    );
    let _ = writeln!(
        h,
        "<div class=\"plot\" id=\"latency-plot\">{}</div>",
        plots::latency_svg(&input.series, marks, end_s)?
    );
    h.push_str("<h2>Throughput over time</h2>\n<p class=\"legend\">");
    for (label, colour, _) in plots::throughput_lines(&input.series) {
        let _ = write!(
            h,
            "<span><i class=\"sw\" style=\"background:{}\"></i>{}</span>",
            css(colour),
            label
        );
    }
    h.push_str(&fault_legend);
    let _ = writeln!(
        h,
        "</p><div class=\"plot\" id=\"throughput-plot\">{}</div>",
        plots::throughput_svg(&input.series, marks, end_s)?
    );
    let _ = writeln!(
        h,
        "<h2>Unseen over time</h2>\n<p class=\"legend\">Acknowledged ops not yet delivered at the end of each second. {fault_legend}</p>\
<div class=\"plot\" id=\"unseen-plot\">{}</div>",
        plots::unseen_svg(&r.unseen_per_second, marks, end_s)?
    );

    // Operational series sampled by the harness (ops.jsonl), when there are any.
    for (i, (title, y_desc, lines)) in plots::ops_plots(&input.ops).iter().enumerate() {
        let _ = write!(h, "<h2>{}</h2>\n<p class=\"legend\">", escape(title));
        for (label, colour, _) in lines {
            let _ = write!(
                h,
                "<span><i class=\"sw\" style=\"background:{}\"></i>{}</span>",
                css(*colour),
                escape(label)
            );
        }
        let _ = writeln!(
            h,
            "{fault_legend}</p><p>Sampled by the harness every 500 ms.</p><div class=\"plot\" id=\"ops-plot-{i}\">{}</div>",
            plots::ops_svg(y_desc, lines, marks, end_s)?
        );
    }

    // Faults: the windows that took effect, then the starts that failed (no band).
    h.push_str("<h2>Faults</h2>\n");
    if faults.is_empty() && r.failed_faults.is_empty() {
        h.push_str("<p>No fault was injected.</p>\n");
    } else {
        h.push_str(
            "<p>Time to recover: from the fault's stop until every op acknowledged before the stop had been delivered.</p>\n\
<table id=\"faults\"><tr><th>fault</th><th>start</th><th>stop</th><th>time to recover</th></tr>",
        );
        for w in faults {
            let recovery = match (w.stop, w.recovery_ns) {
                (None, _) => "-".to_string(),
                (Some(_), Some(ns)) => fmt_ns(ns),
                (Some(_), None) => {
                    "<span class=\"failed\">never (an op acknowledged before the stop was never delivered)</span>"
                        .to_string()
                }
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"recovery\">{recovery}</td></tr>",
                escape(&w.fault),
                fmt_ns(w.start),
                w.stop.map(fmt_ns).unwrap_or_else(|| "never healed".into())
            );
        }
        for f in &r.failed_faults {
            let _ = write!(
                h,
                "<tr class=\"failed-fault\"><td>{}</td><td>{}</td><td class=\"failed\">failed, never took effect: {}</td><td>-</td></tr>",
                escape(&f.fault),
                fmt_ns(f.time),
                escape(f.error.as_deref().unwrap_or("no reason given"))
            );
        }
        h.push_str("</table>\n");
    }

    // Examples.
    h.push_str("<h2>Anomalies: examples</h2>\n");
    if r.examples.values().all(|v| v.is_empty()) {
        h.push_str("<p>No anomaly occurred.</p>\n");
    }
    for (kind, examples) in &r.examples {
        if examples.is_empty() {
            continue;
        }
        let _ = writeln!(
            h,
            "<h3>{} ({} in all; {} shown)</h3>",
            escape(kind.name()),
            r.anomalies.get(*kind),
            examples.len()
        );
        h.push_str(
            "<table class=\"examples\"><tr><th>op</th><th>key</th><th>seq</th><th>outcome</th><th>committed</th>\
<th>deliveries</th><th>event ids</th><th>first delivery (partition/offset @ time)</th><th>invoked</th>\
<th>completed</th><th>detail</th></tr>",
        );
        for e in examples {
            let opt = |v: Option<String>| escape(&v.unwrap_or_default());
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                opt(e.op.map(|v| v.to_string())),
                opt(e.key.clone()),
                opt(e.seq.map(|v| v.to_string())),
                opt(e.outcome.map(|o| o.as_str().to_string())),
                opt(e.committed.map(|c| c.to_string())),
                e.deliveries,
                escape(&e.events.join(", ")),
                opt(e.first_delivery.as_ref().map(|d| format!("{}/{} @ {}", d.partition, d.offset, fmt_ns(d.time)))),
                opt(e.invoke_time.map(fmt_ns)),
                opt(e.complete_time.map(fmt_ns)),
                opt(e.detail.clone()),
            );
        }
        h.push_str("</table>\n");
        let _ = writeln!(
            h,
            "<pre>{}</pre>",
            escape(&examples.iter().map(example_line).collect::<Vec<_>>().join("\n"))
        );
        for e in examples {
            if let Some(t) = &e.trail {
                trail_html(&mut h, e, t);
            }
        }
    }

    // Configuration and versions.
    h.push_str("<h2>Configuration</h2>\n<table id=\"config\">");
    let mut row = |k: &str, v: String| {
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&v));
    };
    row("implementation", name.to_string());
    row(
        "seed",
        m.seed.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
    );
    row(
        "faults",
        if m.faults.is_empty() {
            "none".into()
        } else {
            m.faults.join(", ")
        },
    );
    if let Some(d) = m.duration_s {
        row("workload duration", format!("{d:.1} s"));
    }
    row("exactly once", r.exactly_once.to_string());
    let versions = input.environment.as_ref().and_then(|e| e.get("versions"));
    let unknown = format!("unknown (no {} from the runner)", run_dir::ENVIRONMENT);
    for svc in ["postgres", "kafka", "toxiproxy", "librdkafka", "dualcheck"] {
        let v = versions
            .and_then(|v| v.get(svc))
            .and_then(|v| v.as_str())
            .unwrap_or(&unknown);
        row(&format!("{svc} version"), v.to_string());
    }
    h.push_str("</table>\n");
    if let Some(cfg) = input.environment.as_ref().and_then(|e| e.get("config")) {
        let _ = writeln!(
            h,
            "<h3>Run configuration</h3><pre id=\"run-config\">{}</pre>",
            escape(&serde_json::to_string_pretty(cfg).unwrap_or_default())
        );
    }
    if let Some(s) = &input.schedule {
        let _ = writeln!(
            h,
            "<h3>Fault schedule</h3><pre id=\"schedule\">{}</pre>",
            escape(&serde_json::to_string_pretty(s).unwrap_or_default())
        );
    }
    let links: Vec<String> = [
        run_dir::HISTORY,
        run_dir::RESULTS,
        run_dir::JUNIT,
        run_dir::SCHEDULE,
        run_dir::APP_LOG,
    ]
    .iter()
    .map(|f| format!("<a href=\"{f}\">{f}</a>"))
    .collect();
    let _ = write!(
        h,
        "<h2>Files</h2><p>{}</p>\n<p>Regenerate with <code>dualcheck report RUN_DIR</code>.</p>\n</body></html>\n",
        links.join(" · ")
    );
    Ok(h)
}
