//! `dualcheck-report` (`dualcheck::report`): everything that shows what a
//! run found, from its run directory alone.
//!
//! Reports of a run directory: `junit.xml` (one test case per anomaly kind)
//! and a self-contained `report.html` (verdict, anomaly counts, inline SVG
//! plots with fault bands, examples, configuration and service versions).
//!
//! Both are regenerated from `history.jsonl` alone (plus `results.json`,
//! `schedule.json` and `environment.json` when present), so a history checked
//! offline gets the same report: `dualcheck report RUN_DIR`.
//!
//! Beside them: the rendering layer ([`render`]: tables, the page shell, the
//! phrases), the text verdicts ([`summary`]), what a run produced
//! ([`outcome::RunOutcome`], `results.json`) and `dualcheck serve` ([`serve`]).
//!
//! What this crate may use: of the workspace, `dualcheck-record` and
//! `dualcheck-checkers`. It starts no service and
//! talks to none: it neither depends on `dualcheck-services` nor links
//! librdkafka or a Postgres client (`cargo tree -p dualcheck-report -i
//! rdkafka` finds nothing). The run crate uses it (a run ends by writing its
//! report); it never uses the run crate.

#![warn(missing_docs)]

pub mod html;
pub mod junit;
pub mod outcome;
pub mod plots;
pub mod render;
pub mod series;
pub mod serve;
pub mod summary;

use anyhow::{Context, Result};
use checkers::{CheckOptions, CheckResult, Example};
use record::run_dir::RunDir;
use serde::Deserialize;
use series::Series;
use std::path::{Path, PathBuf};

/// What the runner knew about a run, read back from `results.json`; every
/// field is optional so a bare history still gets a report.
#[derive(Debug, Clone, Deserialize)]
pub struct RunMeta {
    /// Implementation name.
    pub implementation: Option<String>,
    /// Seed of workload and schedule.
    pub seed: Option<u64>,
    /// Faults chosen from (`fault_names` in `results.json`).
    #[serde(default, rename = "fault_names")]
    pub faults: Vec<String>,
    /// Workload seconds.
    pub duration_s: Option<f64>,
    /// Acknowledged ops per second of workload.
    pub throughput_ok_per_s: Option<f64>,
    /// Whether the drain ended with nothing left.
    pub drained: Option<bool>,
    /// Problems met while injecting or healing faults.
    #[serde(default)]
    pub nemesis_errors: Vec<String>,
    /// Whether duplicates counted as violations.
    #[serde(default)]
    pub exactly_once: bool,
    /// Whether per-key order was judged (not when the records' key is not the business key).
    #[serde(default = "judged")]
    pub per_key_order: bool,
    /// Prepared transactions left in doubt (patterns that prepare transactions), when the run saw any.
    pub in_doubt: Option<record::in_doubt::InDoubt>,
    /// Events the implementation parked, as it said at the end of the drain.
    pub parked: Option<u64>,
    /// The examples the runner judged, with their trails (the implementation's
    /// account was only available while it ran).
    #[serde(default)]
    pub examples: std::collections::BTreeMap<checkers::Anomaly, Vec<Example>>,
    /// `--max-retained-wal`, bytes: the report judges `wal_retained` from the
    /// operational series as the run did.
    #[serde(default)]
    pub max_retained_wal: Option<u64>,
}

/// A bare history's: what an empty `results.json` says (order judged).
impl Default for RunMeta {
    fn default() -> Self {
        serde_json::from_str("{}").expect("every field of RunMeta has a default")
    }
}

/// Results written before `per_key_order` existed judged order.
fn judged() -> bool {
    true
}

/// Everything a report is made of.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// The check of the history (rechecked, so offline reports agree).
    pub result: CheckResult,
    /// What `results.json` said about the run.
    pub meta: RunMeta,
    /// Per-op series for the plots.
    pub series: Series,
    /// `environment.json` (versions and configuration), when present.
    pub environment: Option<serde_json::Value>,
    /// `schedule.json`, when present.
    pub schedule: Option<serde_json::Value>,
    /// The run directory, when the history is a run's (results beside it):
    /// an invalid run's report shows the `dualcheck shrink` command for it.
    pub run_dir: Option<PathBuf>,
    /// The operational series (`ops.jsonl`), empty when absent.
    pub ops: Vec<record::ops_series::Sample>,
}

/// The files a report wrote.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    /// `junit.xml`.
    pub junit: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// Whether the history is valid.
    pub valid: bool,
    /// Valid, invalid or unknown (an incomplete history).
    pub verdict: checkers::Verdict,
}

/// Escapes text for HTML and XML (text and attribute values); drops the
/// control characters XML 1.0 cannot hold.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

/// One example on one line (not escaped).
pub fn example_line(e: &Example) -> String {
    let mut parts = Vec::new();
    if let Some(op) = e.op {
        parts.push(format!("op {op}"));
    }
    if let Some(k) = &e.key {
        parts.push(format!("key {k}"));
    }
    if let Some(s) = e.seq {
        parts.push(format!("seq {s}"));
    }
    if let Some(o) = e.outcome {
        parts.push(format!("outcome {}", o.as_str()));
    }
    if let Some(c) = e.committed {
        parts.push(format!("committed {c}"));
    }
    parts.push(format!("deliveries {}", e.deliveries));
    if !e.events.is_empty() {
        parts.push(format!("events [{}]", e.events.join(", ")));
    }
    if let Some(d) = &e.first_delivery {
        parts.push(format!(
            "first delivery partition {} offset {} at {}",
            d.partition,
            d.offset,
            fmt_ns(d.time)
        ));
    }
    if let Some(t) = e.invoke_time {
        parts.push(format!("invoked at {}", fmt_ns(t)));
    }
    if let Some(t) = e.complete_time {
        parts.push(format!("completed at {}", fmt_ns(t)));
    }
    if let Some(d) = &e.detail {
        parts.push(d.clone());
    }
    parts.join(", ")
}

/// A time since the run started, in seconds with milliseconds.
pub fn fmt_ns(ns: i64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(
            serde_json::from_str(&t).with_context(|| format!("{} is not valid JSON", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Reads and checks a history and whatever run files sit beside it.
pub fn load(dir: &RunDir, history: &Path) -> Result<ReportInput> {
    let meta: RunMeta = match read_json(&dir.results())? {
        Some(v) => serde_json::from_value(v)
            .with_context(|| format!("{} does not hold a run's results", dir.results().display()))?,
        None => RunMeta::default(),
    };
    let options = CheckOptions {
        exactly_once: meta.exactly_once,
        per_key_order: meta.per_key_order,
        ..CheckOptions::default()
    };
    let mut result = checkers::check_file(history, options).map_err(|e| anyhow::anyhow!("unusable history: {e}"))?;
    add_trails(&mut result, &meta, dir, history);
    let series = Series::read(history).map_err(|e| anyhow::anyhow!("unusable history: {e}"))?;
    let ops = record::ops_series::read(&dir.ops_series()).unwrap_or_default();
    if let Some(limit) = meta.max_retained_wal {
        record::ops_series::judge_retained_wal(&mut result, &ops, limit);
    }
    Ok(ReportInput {
        result,
        meta,
        series,
        environment: read_json(&dir.environment())?,
        schedule: read_json(&dir.schedule())?,
        run_dir: dir.results().exists().then(|| dir.path().to_path_buf()),
        ops,
    })
}

/// Gives the examples of `result` their trails: the runner's, from
/// `results.json`, where an example matches one of them (same kind, op, key
/// and invoke time), else one built from the run directory without the
/// implementation's account.
fn add_trails(result: &mut CheckResult, meta: &RunMeta, dir: &RunDir, history: &Path) {
    if let Err(e) = record::trails::build(result, dir, history) {
        tracing::warn!("report: trails: {e}");
    }
    for (kind, list) in result.examples.iter_mut() {
        let Some(stored) = meta.examples.get(kind) else {
            continue;
        };
        for e in list.iter_mut() {
            let same = |s: &&Example| s.op == e.op && s.key == e.key && s.invoke_time == e.invoke_time;
            if let Some(s) = stored.iter().find(same).filter(|s| s.trail.is_some()) {
                e.trail = s.trail.clone();
                if e.detail.is_none() {
                    e.detail = s.detail.clone();
                }
            }
        }
    }
}

/// Writes `junit.xml` and `report.html` for a run directory (or a history
/// file: the files go beside it).
pub fn write(path: &Path) -> Result<ReportFiles> {
    let (dir, history) = RunDir::locate(path)?;
    let input = load(&dir, &history)?;
    let (junit, html) = (dir.junit(), dir.report_html());
    std::fs::write(&junit, junit::render(&input)?).with_context(|| format!("writing {}", junit.display()))?;
    std::fs::write(&html, html::render(&input)?).with_context(|| format!("writing {}", html.display()))?;
    Ok(ReportFiles {
        junit,
        html,
        valid: input.result.valid,
        verdict: input.result.verdict,
    })
}
