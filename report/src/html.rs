//! `report.html`: one self-contained page (inline CSS and SVG, no script, no
//! network), in the shared shell ([`crate::render::page`]). Everything that
//! comes from a history or a run file is escaped by the templates; the SVG
//! plots are the only markup inserted as it is (plotters escapes their text).
//!
//! One function per section, in page order; each takes only what it shows.
//! The facts are worded by [`crate::render::phrases`], as the terminal
//! summary words them.

use super::plots::{self, css, fault_colour, fault_names, point_colour, FaultMarks};
use super::series::PointKind;
use super::{example_line, fmt_ns, ReportInput, RunMeta};
use crate::render::page::{page, Kind};
use crate::render::phrases::{self, Standing};
use crate::render::{Cell, Column, Row, Table};
use anyhow::Result;
use checkers::{Anomaly, CheckResult, Example, Trail};
use maud::{html, Markup, PreEscaped};
use plotters::style::RGBColor;
use record::run_dir;

/// The report page of a run.
pub fn render(input: &ReportInput) -> Result<String> {
    let r = &input.result;
    let m = &input.meta;
    let end_s = ((input.series.end as f64 / 1e9).max(m.duration_s.unwrap_or(0.0)))
        .max(r.unseen_per_second.len() as f64)
        .max(1.0);
    let name = m.implementation.as_deref().unwrap_or("history");
    let marks = FaultMarks {
        windows: &r.faults,
        failed: &r.failed_faults,
    };
    let body = html! {
        (heading(r, name, input.run_dir.as_deref()))
        (anomaly_counts(r))
        (figures(r, m))
        (history_plots(input, marks, end_s)?)
        (ops_plots(input, marks, end_s)?)
        (faults(r))
        (examples(r))
        (configuration(input, name))
        (files())
    };
    let title = format!("dualcheck: {name} {}", phrases::verdict_word(r));
    Ok(page(Kind::Report, &title, body, None))
}

/// The title, the verdict (with the faults that never took effect), why it
/// is unknown, the violations and, for an invalid run, how to shrink it.
fn heading(r: &CheckResult, name: &str, run_dir: Option<&std::path::Path>) -> Markup {
    let violations = phrases::violation_names(r);
    html! {
        h1 { "dualcheck report: " (name) }
        p {
            span class=(format!("verdict {}", r.verdict.as_str())) id="verdict" { (phrases::verdict_word(r)) }
            (phrases::not_in_effect(r))
        }
        @if let Some(reason) = &r.reason {
            p id="reason" { "Why unknown: " (reason) }
        }
        @if !violations.is_empty() {
            p { "Violations: " b { (violations) } }
            @if let Some(dir) = run_dir {
                p id="shrink" {
                    "Smallest reproduction (fewer fault windows, a shorter and smaller workload, on services \
                     started once; writes " code { "shrunk/" } " here): "
                    code { "dualcheck shrink " (record::quote(&dir.display().to_string())) }
                }
            }
        }
    }
}

/// One column per anomaly kind: red where it is a violation, yellow where
/// it occurred and is tolerated; the header's tooltip says what the kind is.
fn anomaly_counts(r: &CheckResult) -> Markup {
    let mut t = Table::new(
        Anomaly::ALL
            .iter()
            .map(|k| Column::left(k.name()).title(k.description())),
    );
    t.push(Anomaly::ALL.iter().map(|&k| {
        let cell = Cell::new(r.anomalies.get(k).to_string());
        match Standing::of(r, k) {
            Standing::Violation => cell.class("bad"),
            Standing::Tolerated => cell.class("warn"),
            Standing::Clean => cell,
        }
    }));
    t.html(Some("anomalies"))
}

/// The run's figures: ops, deliveries, latency, throughput, the drain,
/// parked and in-doubt work, and whatever went wrong around the check.
fn figures(r: &CheckResult, m: &RunMeta) -> Markup {
    let mut t = Table::facts();
    t.push(["ops".to_string(), phrases::op_counts(r)]);
    t.push(["deliveries".to_string(), r.deliveries.to_string()]);
    t.push([
        "commit → first delivery".to_string(),
        phrases::latency(r.latency_ns.as_ref()),
    ]);
    if let Some(tp) = m.throughput_ok_per_s {
        t.push(["throughput".to_string(), format!("{tp:.1} ok ops/s")]);
    }
    if let Some(d) = m.drained {
        let said = if d {
            "yes".to_string()
        } else {
            format!("no: {}", phrases::DRAIN_TIMED_OUT)
        };
        t.push(["drained".to_string(), said]);
    }
    if let Some(n) = m.parked {
        let said = if n == 0 { "none".to_string() } else { phrases::parked(n) };
        t.push(["parked".to_string(), said]);
    }
    if let Some(n) = r.delivered_after_restart {
        t.push(["after the restart".to_string(), phrases::delivered_after_restart(n)]);
    }
    if let Some(d) = &m.in_doubt {
        let mut said = phrases::in_doubt(d);
        if !d.recovery_errors.is_empty() {
            said.push_str(&format!("; recovery errors: {}", d.recovery_errors.join("; ")));
        }
        t.push(["in doubt".to_string(), said]);
    }
    t.push(["history lines".to_string(), r.lines.to_string()]);
    for w in &r.warnings {
        t.push(["warning", w.as_str()]);
    }
    for e in &m.nemesis_errors {
        t.push(["nemesis error", e.as_str()]);
    }
    t.html(Some("figures"))
}

/// A colour swatch and its label, as the legends show them.
fn swatch(colour: RGBColor, label: &str) -> Markup {
    html! { span { i class="sw" style=(format!("background:{}", css(colour))) {} (label) } }
}

/// The faults' part of every legend: one swatch per fault (as its band is
/// drawn) and the mark of a start that failed.
fn fault_legend(marks: FaultMarks) -> Markup {
    html! {
        @for (i, n) in fault_names(marks.windows).iter().enumerate() {
            span {
                i class="sw" style=(format!("background:{};opacity:.5", css(fault_colour(i)))) {}
                (n) " (fault)"
            }
        }
        @if !marks.failed.is_empty() {
            (swatch(plots::FAILED_START_COLOUR, "fault start that failed (no band: it never took effect)"))
        }
    }
}

/// The three plots of the history: latency, throughput and unseen over time.
fn history_plots(input: &ReportInput, marks: FaultMarks, end_s: f64) -> Result<Markup> {
    let latency = plots::latency_svg(&input.series, marks, end_s)?;
    let throughput = plots::throughput_svg(&input.series, marks, end_s)?;
    let unseen = plots::unseen_svg(&input.result.unseen_per_second, marks, end_s)?;
    Ok(html! {
        h2 { "Commit-to-delivery latency over time" }
        p class="legend" {
            @for k in PointKind::ALL { (swatch(point_colour(k), k.label())) }
            (fault_legend(marks))
        }
        p {
            "Each point is an op at its completion time; its height is the time from the acknowledgment to the \
             first delivery (log scale; deliveries before the acknowledgment are drawn at the bottom). Ops never \
             delivered sit on the faint red line at the top. Shaded bands are the faults' active windows; a line \
             topped by a triangle in a fault's colour marks when the run recovered from it (see the faults table). \
             At most " (plots::MAX_POINTS) " points per class are drawn."
        }
        div class="plot" id="latency-plot" { (PreEscaped(latency)) }
        h2 { "Throughput over time" }
        p class="legend" {
            @for (label, colour, _) in plots::throughput_lines(&input.series) { (swatch(colour, label)) }
            (fault_legend(marks))
        }
        div class="plot" id="throughput-plot" { (PreEscaped(throughput)) }
        h2 { "Unseen over time" }
        p class="legend" { "Acknowledged ops not yet delivered at the end of each second. " (fault_legend(marks)) }
        div class="plot" id="unseen-plot" { (PreEscaped(unseen)) }
    })
}

/// The operational series sampled by the harness (`ops.jsonl`), one plot
/// each, when there are any.
fn ops_plots(input: &ReportInput, marks: FaultMarks, end_s: f64) -> Result<Markup> {
    let mut out = Vec::new();
    for (i, (title, y_desc, lines)) in plots::ops_plots(&input.ops).iter().enumerate() {
        let svg = plots::ops_svg(y_desc, lines, marks, end_s)?;
        out.push(html! {
            h2 { (title) }
            p class="legend" {
                @for (label, colour, _) in lines { (swatch(*colour, label)) }
                (fault_legend(marks))
            }
            p { "Sampled by the harness every 500 ms." }
            div class="plot" id=(format!("ops-plot-{i}")) { (PreEscaped(svg)) }
        });
    }
    Ok(html! { @for m in out { (m) } })
}

/// The fault windows that took effect, with their time to recover, then the
/// starts that failed (no band).
fn faults(r: &CheckResult) -> Markup {
    if r.faults.is_empty() && r.failed_faults.is_empty() {
        return html! { h2 { "Faults" } p { "No fault was injected." } };
    }
    let mut t = Table::left(["fault", "start", "stop", "time to recover"]);
    for w in &r.faults {
        let recovery = match (w.stop, w.recovery_ns) {
            (None, _) => Cell::new("-"),
            (Some(_), Some(ns)) => Cell::new(fmt_ns(ns)),
            (Some(_), None) => {
                let never = "never (an op acknowledged before the stop was never delivered)";
                Cell::new(never).html(html! { span class="failed" { (never) } })
            }
        };
        t.push([
            Cell::new(&w.fault),
            Cell::new(fmt_ns(w.start)),
            Cell::new(w.stop.map(fmt_ns).unwrap_or_else(|| phrases::NEVER_HEALED.into())),
            recovery.class("recovery"),
        ]);
    }
    for f in &r.failed_faults {
        t.push_row(Row {
            cells: vec![
                Cell::new(&f.fault),
                Cell::new(fmt_ns(f.time)),
                Cell::new(format!("failed, {}", phrases::never_took_effect(f.error.as_deref()))).class("failed"),
                Cell::new("-"),
            ],
            class: Some("failed-fault".into()),
        });
    }
    html! {
        h2 { "Faults" }
        p { "Time to recover: from the fault's stop until every op acknowledged before the stop had been delivered." }
        (t.html(Some("faults")))
    }
}

/// Each anomaly kind that occurred: its examples as a table and as lines,
/// then each example's trail.
fn examples(r: &CheckResult) -> Markup {
    let none = r.examples.values().all(|v| v.is_empty());
    html! {
        h2 { "Anomalies: examples" }
        @if none { p { "No anomaly occurred." } }
        @for (kind, examples) in r.examples.iter().filter(|(_, v)| !v.is_empty()) {
            h3 { (kind.name()) " (" (r.anomalies.get(*kind)) " in all; " (examples.len()) " shown)" }
            (examples_table(examples))
            pre { (examples.iter().map(example_line).collect::<Vec<_>>().join("\n")) }
            @for e in examples {
                @if let Some(t) = &e.trail { (trail(e, t)) }
            }
        }
    }
}

/// One kind's examples, one row each.
fn examples_table(examples: &[Example]) -> Markup {
    let mut t = Table::left([
        "op",
        "key",
        "seq",
        "outcome",
        "committed",
        "deliveries",
        "event ids",
        "first delivery (partition/offset @ time)",
        "invoked",
        "completed",
        "detail",
    ]);
    for e in examples {
        let opt = |v: Option<String>| v.unwrap_or_default();
        t.push([
            opt(e.op.map(|v| v.to_string())),
            opt(e.key.clone()),
            opt(e.seq.map(|v| v.to_string())),
            opt(e.outcome.map(|o| o.as_str().to_string())),
            opt(e.committed.map(|c| c.to_string())),
            e.deliveries.to_string(),
            e.events.join(", "),
            opt(e
                .first_delivery
                .as_ref()
                .map(|d| format!("{}/{} @ {}", d.partition, d.offset, fmt_ns(d.time)))),
            opt(e.invoke_time.map(fmt_ns)),
            opt(e.complete_time.map(fmt_ns)),
            opt(e.detail.clone()),
        ]);
    }
    t.html(None)
}

/// One example's trail, folded: its account, fault windows, history and log lines.
fn trail(e: &Example, t: &Trail) -> Markup {
    let who = match (e.op, t.op) {
        (Some(op), _) => format!("op {op}"),
        (None, Some(op)) => format!("read of key {} (follows op {op})", e.key.clone().unwrap_or_default()),
        (None, None) => format!("key {}", e.key.clone().unwrap_or_default()),
    };
    let history: Vec<String> = t.history.iter().map(|v| v.to_string()).collect();
    let logs: Vec<String> = t
        .logs
        .iter()
        .map(|l| format!("{}:{}: {}", l.file, l.line, l.text))
        .collect();
    html! {
        details class="trail" {
            summary { "trail of " (who) ": " (record::trails::one_line(t)) }
            h4 { "faults active since its invoke" }
            @if t.faults.is_empty() {
                p { "none" }
            } @else {
                ul { @for w in &t.faults {
                    li {
                        (w.fault) " " (fmt_ns(w.start)) " .. "
                        (w.stop.map(fmt_ns).unwrap_or_else(|| phrases::NEVER_HEALED.into()))
                    }
                } }
            }
            h4 { "the implementation's account (GET /trace/{op})" }
            @match (&t.trace, &t.trace_missing) {
                (Some(v), _) => pre { (serde_json::to_string_pretty(v).unwrap_or_default()) },
                (None, why) => p { "none: " (why.as_deref().unwrap_or("not asked")) },
            }
            h4 { "history lines" }
            pre { (history.join("\n")) }
            h4 { "log lines naming the op or its event ids" }
            pre { @if logs.is_empty() { "none" } @else { (logs.join("\n")) } }
        }
    }
}

/// The run's configuration and the services' versions, then the run
/// configuration and the fault schedule as recorded.
fn configuration(input: &ReportInput, name: &str) -> Markup {
    let (r, m) = (&input.result, &input.meta);
    let mut t = Table::facts();
    t.push(["implementation", name]);
    t.push([
        "seed".to_string(),
        m.seed.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
    ]);
    t.push([
        "faults".to_string(),
        if m.faults.is_empty() {
            "none".into()
        } else {
            m.faults.join(", ")
        },
    ]);
    if let Some(d) = m.duration_s {
        t.push(["workload duration".to_string(), format!("{d:.1} s")]);
    }
    t.push(["exactly once".to_string(), r.exactly_once.to_string()]);
    let versions = input.environment.as_ref().and_then(|e| e.get("versions"));
    let unknown = format!("unknown (no {} from the runner)", run_dir::ENVIRONMENT);
    for svc in ["postgres", "kafka", "toxiproxy", "librdkafka", "dualcheck"] {
        let v = versions
            .and_then(|v| v.get(svc))
            .and_then(|v| v.as_str())
            .unwrap_or(&unknown);
        t.push([format!("{svc} version"), v.to_string()]);
    }
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    html! {
        h2 { "Configuration" }
        (t.html(Some("config")))
        @if let Some(cfg) = input.environment.as_ref().and_then(|e| e.get("config")) {
            h3 { "Run configuration" }
            pre id="run-config" { (pretty(cfg)) }
        }
        @if let Some(s) = &input.schedule {
            h3 { "Fault schedule" }
            pre id="schedule" { (pretty(s)) }
        }
    }
}

/// Links to the run's files beside the report, and how to make it again.
fn files() -> Markup {
    let names = [
        run_dir::HISTORY,
        run_dir::RESULTS,
        run_dir::JUNIT,
        run_dir::SCHEDULE,
        run_dir::APP_LOG,
    ];
    html! {
        h2 { "Files" }
        p {
            @for (i, f) in names.iter().enumerate() {
                @if i > 0 { " · " }
                a href=(f) { (f) }
            }
        }
        p { "Regenerate with " code { "dualcheck report RUN_DIR" } "." }
    }
}
