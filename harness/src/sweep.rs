//! `dualcheck sweep`'s work (and `dualcheck compare`'s, the same command
//! judged by validity alone): every cell (implementation, possibly with knobs,
//! × fault list) on every seed, on services started once per broker count
//! ([`crate::runner::run_on`]: each run its own database, topic and slots, the
//! services restored after it). Each run is judged against the expectation its
//! pattern declares ([`implementations::expect`]); one row per cell sums the
//! runs up, in a table (text, Markdown or JSON) and in an HTML page that links
//! each run's report.

use crate::campaign::Campaign;
use crate::render::page::{page, Kind};
use crate::render::{Cell, Column, Table};
use crate::run_options::RunOptions;
use crate::runner::{RunConfig, RunOutcome};
use anyhow::{bail, Context, Result};
use checkers::{Anomalies, Anomaly};
use implementations::Expect;
use maud::html;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

/// What a cell runs: a built-in implementation (or `exec`) and the knobs set on
/// it, written `NAME` or `NAME+KEY=VALUE+KEY=VALUE` (e.g.
/// `cdc-logical+DUALCHECK_CDC_CONFIRM=early`, a negative control), or
/// `NAME:tuned[+KEY=VALUE...]`: the knobs its pattern declares as tuned
/// (`PatternInfo::tuned`, e.g. `debezium:tuned`), then those written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// As written: the row's label.
    pub label: String,
    /// The implementation.
    pub implementation: String,
    /// Knobs of the implementation process.
    pub app_vars: Vec<(String, String)>,
    /// Check its runs exactly-once (duplicates with one event id are
    /// violations) whatever the sweep's own option: the zoo sets it for
    /// mutants whose bug shows only so. Not written in the label's syntax;
    /// the label says it.
    pub exactly_once: bool,
    /// Runs its cells with ops of several events (the zoo sets it for a
    /// mutant whose bug lives there), whatever the sweep's workload. Not
    /// written in the label's syntax; the label says it.
    pub workload: Option<implementations::expect::MutantWorkload>,
}

impl Subject {
    /// The same subject, run with ops of several events (its label says so).
    pub fn with_workload(mut self, workload: Option<implementations::expect::MutantWorkload>) -> Subject {
        if let (None, Some(w)) = (self.workload, workload) {
            self.label.push_str(&format!(" ({})", w.describe()));
            self.workload = Some(w);
        }
        self
    }

    /// The same subject, checked exactly-once (its label says so).
    pub fn exactly_once(mut self) -> Subject {
        if !self.exactly_once {
            self.exactly_once = true;
            self.label.push_str(" (exactly-once)");
        }
        self
    }
}

impl FromStr for Subject {
    type Err = String;

    fn from_str(s: &str) -> Result<Subject, String> {
        let s = s.trim();
        let mut parts = s.split('+');
        let mut implementation = parts.next().unwrap_or_default().to_string();
        if implementation.is_empty() {
            return Err(format!("`{s}`: write an implementation, NAME or NAME+KEY=VALUE"));
        }
        let mut app_vars: Vec<(String, String)> = Vec::new();
        if let Some((name, preset)) = implementation.clone().split_once(':') {
            if preset != "tuned" {
                return Err(format!(
                    "`{s}`: `:{preset}` is not a preset; the one there is is `NAME:tuned`"
                ));
            }
            let info = implementations::lookup(name).map_err(|e| format!("`{s}`: {e}"))?;
            if info.tuned.is_empty() {
                let tunable: Vec<&str> = implementations::REGISTRY
                    .iter()
                    .filter(|i| !i.tuned.is_empty())
                    .map(|i| i.name)
                    .collect();
                return Err(format!(
                    "`{s}`: {name} declares no tuned knobs (patterns that do: {})",
                    tunable.join(", ")
                ));
            }
            app_vars.extend(info.tuned.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            implementation = name.to_string();
        }
        for kv in parts {
            match kv.split_once('=') {
                Some((k, v)) if !k.is_empty() => app_vars.push((k.to_string(), v.to_string())),
                _ => {
                    return Err(format!(
                        "`{s}`: `{kv}` is not KEY=VALUE (e.g. cdc-logical+DUALCHECK_CDC_CONFIRM=early)"
                    ))
                }
            }
        }
        Ok(Subject {
            label: s.to_string(),
            implementation,
            app_vars,
            exactly_once: false,
            workload: None,
        })
    }
}

/// The expectation of a run of `implementation` with `app_vars` under `faults`
/// as `replicas` instances: what its pattern declares; `valid` for `exec`
/// (a correct program's).
pub fn expectation(
    implementation: &str,
    app_vars: &[(String, String)],
    faults: &[crate::nemesis::Fault],
    replicas: usize,
) -> Expect {
    let names: Vec<&str> = faults.iter().map(|f| f.name()).collect();
    match implementations::lookup(implementation) {
        Ok(info) => {
            implementations::expect::expected(implementations::expect::rules_for(info, app_vars), &names, replicas)
        }
        Err(_) => Expect::Valid,
    }
}

/// A run whose verdict was not the expected one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unexpected {
    /// Its seed.
    pub seed: u64,
    /// The anomalies it showed (its violations; empty: it was valid).
    pub anomalies: Vec<Anomaly>,
}

/// How fast a cell's runs recovered from one kind of fault, over all its windows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultRecovery {
    /// The fault.
    pub fault: String,
    /// Healed windows of it over the runs.
    pub windows: u64,
    /// Median time to recover over the windows that recovered, seconds.
    pub median_s: Option<f64>,
    /// Worst time to recover over the windows that recovered, seconds.
    pub worst_s: Option<f64>,
    /// Windows after which the run never recovered (an op acknowledged
    /// before the stop was never delivered).
    pub never: u64,
}

/// Time to recover per fault kind over `runs`' healed windows, by fault name.
fn recoveries<'a>(runs: impl Iterator<Item = &'a RunOutcome>) -> Vec<FaultRecovery> {
    let mut by_fault: BTreeMap<&str, (Vec<f64>, u64)> = BTreeMap::new();
    for o in runs {
        for w in o.result.faults.iter().filter(|w| w.stop.is_some()) {
            let entry = by_fault.entry(w.fault.as_str()).or_default();
            match w.recovery_ns {
                Some(ns) => entry.0.push(ns as f64 / 1e9),
                None => entry.1 += 1,
            }
        }
    }
    by_fault
        .into_iter()
        .map(|(fault, (mut times, never))| {
            times.sort_by(f64::total_cmp);
            FaultRecovery {
                fault: fault.to_string(),
                windows: times.len() as u64 + never,
                median_s: times.get(times.len().saturating_sub(1) / 2).copied(),
                worst_s: times.last().copied(),
                never,
            }
        })
        .collect()
}

/// One cell's line of the sweep: an implementation (with its knobs) under one fault list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Row {
    /// Implementation, with its knobs (`NAME+KEY=VALUE`) when it has any.
    pub implementation: String,
    /// The fault list as given (`none`, a family, or faults).
    pub faults: String,
    /// What each run must end with (`valid`, `shows lost`, ...).
    pub expected: String,
    /// The expectation itself.
    #[serde(skip)]
    pub expect: Expect,
    /// Runs whose verdict was the expected one.
    pub as_expected: u64,
    /// Runs whose verdict was not, with the anomalies they showed.
    pub not_as_expected: Vec<Unexpected>,
    /// Mean wall time per run beyond its workload (database, topic, start of the
    /// implementation, drain, teardown, judging), in seconds.
    pub overhead_s: Option<f64>,
    /// Runs carried out (seeds that ended in a verdict).
    pub runs: u64,
    /// `valid` when every run was, else `INVALID`; `error` when no run was carried out.
    pub verdict: String,
    /// Each anomaly's count summed over the runs (in JSON, one field per anomaly, by name).
    #[serde(flatten)]
    pub anomalies: Anomalies,
    /// Median over the runs of each run's p50 commit-to-delivery latency (ms).
    pub p50_ms: Option<f64>,
    /// Worst p99 over the runs (ms).
    pub p99_ms: Option<f64>,
    /// Mean acknowledged ops per second.
    pub throughput_ok_per_s: f64,
    /// Every kind of violation some run showed, in [`Anomaly::ALL`] order.
    pub violation_kinds: Vec<Anomaly>,
    /// Median over the invalid runs of the time from the run's start to its
    /// first violation's earliest event (`first_violation_ns`), in seconds.
    pub first_violation_s: Option<f64>,
    /// Time to recover after each kind of fault (median and worst over the
    /// runs' windows, and how many never recovered).
    pub recovery: Vec<FaultRecovery>,
    /// Committed ops delivered only after the restart before the drain,
    /// summed over the runs (`--restart-before-drain`; `None`: no run restarted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_after_restart: Option<u64>,
    /// Seeds whose run was invalid.
    pub failed_seeds: Vec<u64>,
    /// Seeds whose run could not be carried out, with why.
    pub errors: Vec<(u64, String)>,
    /// Each run's report.html.
    pub reports: Vec<PathBuf>,
    /// The largest of each operational series over the runs (`ops_max` of
    /// each run's results); `None` when no run sampled any.
    pub ops_max: Option<crate::ops_series::OpsMaxima>,
}

impl Default for Row {
    fn default() -> Row {
        Row {
            implementation: String::new(),
            faults: "none".into(),
            expected: Expect::Valid.to_string(),
            expect: Expect::Valid,
            as_expected: 0,
            not_as_expected: Vec::new(),
            overhead_s: None,
            runs: 0,
            verdict: String::new(),
            anomalies: Anomalies::default(),
            p50_ms: None,
            p99_ms: None,
            throughput_ok_per_s: 0.0,
            violation_kinds: Vec::new(),
            first_violation_s: None,
            recovery: Vec::new(),
            delivered_after_restart: None,
            failed_seeds: Vec::new(),
            errors: Vec::new(),
            reports: Vec::new(),
            ops_max: None,
        }
    }
}

impl Row {
    /// Sums up the runs of one implementation, expected to be valid.
    pub fn from_runs(implementation: &str, runs: &[(u64, Result<RunOutcome, String>)]) -> Row {
        Row::of_cell(implementation, "none", Expect::Valid, runs)
    }

    /// Sums up the runs of one cell, each judged against `expect`.
    pub fn of_cell(
        implementation: &str,
        faults: &str,
        expect: Expect,
        runs: &[(u64, Result<RunOutcome, String>)],
    ) -> Row {
        let mut row = Row {
            implementation: implementation.to_string(),
            faults: faults.to_string(),
            expected: expect.to_string(),
            expect,
            ..Row::default()
        };
        let mut p50s = Vec::new();
        let mut firsts = Vec::new();
        let mut throughput = 0.0;
        for (seed, r) in runs {
            match r {
                Ok(o) => {
                    row.runs += 1;
                    row.anomalies += &o.result.anomalies;
                    if let Some(l) = &o.result.latency_ns {
                        p50s.push(l.p50 as f64 / 1e6);
                        row.p99_ms = Some(row.p99_ms.unwrap_or(0.0).max(l.p99 as f64 / 1e6));
                    }
                    throughput += o.throughput_ok_per_s;
                    if !o.result.valid {
                        row.failed_seeds.push(*seed);
                    }
                    for &kind in &o.result.violations {
                        if !row.violation_kinds.contains(&kind) {
                            row.violation_kinds.push(kind);
                        }
                    }
                    if let Some(t) = o.result.first_violation_ns {
                        firsts.push(t as f64 / 1e9);
                    }
                    if expect.met_by(&o.result.violations) {
                        row.as_expected += 1;
                    } else {
                        row.not_as_expected.push(Unexpected {
                            seed: *seed,
                            anomalies: o.result.violations.clone(),
                        });
                    }
                    row.reports.push(o.run_dir.join(crate::run_dir::REPORT_HTML));
                    if let Some(m) = &o.ops_max {
                        row.ops_max.get_or_insert_with(Default::default).merge(m);
                    }
                    if let Some(n) = o.result.delivered_after_restart {
                        *row.delivered_after_restart.get_or_insert(0) += n;
                    }
                }
                Err(e) => row.errors.push((*seed, e.clone())),
            }
        }
        p50s.sort_by(f64::total_cmp);
        row.p50_ms = p50s.get(p50s.len().saturating_sub(1) / 2).copied();
        row.recovery = recoveries(runs.iter().filter_map(|(_, r)| r.as_ref().ok()));
        firsts.sort_by(f64::total_cmp);
        row.first_violation_s = firsts.get(firsts.len().saturating_sub(1) / 2).copied();
        row.violation_kinds.sort();
        row.throughput_ok_per_s = if row.runs > 0 {
            throughput / row.runs as f64
        } else {
            0.0
        };
        row.verdict = if row.runs == 0 {
            "error".into()
        } else if row.failed_seeds.is_empty() {
            "valid".into()
        } else {
            "INVALID".into()
        };
        row
    }

    /// Whether every run was carried out and ended as expected.
    pub fn all_as_expected(&self) -> bool {
        self.errors.is_empty() && self.not_as_expected.is_empty()
    }

    fn cells(&self) -> Vec<String> {
        let ms = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
        let seeds = |v: &[u64]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",")
            }
        };
        let unexpected = if self.not_as_expected.is_empty() {
            "-".to_string()
        } else {
            self.not_as_expected
                .iter()
                .map(|u| {
                    let kinds: Vec<&str> = u.anomalies.iter().map(|a| a.name()).collect();
                    format!(
                        "{}:{}",
                        u.seed,
                        if kinds.is_empty() {
                            "valid".into()
                        } else {
                            kinds.join("+")
                        }
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut cells = vec![
            self.implementation.clone(),
            self.faults.clone(),
            self.expected.clone(),
            self.as_expected.to_string(),
            unexpected,
            self.errors.len().to_string(),
            format!(
                "{}{}",
                self.verdict,
                if self.errors.is_empty() { "" } else { " (errors)" }
            ),
            self.runs.to_string(),
        ];
        cells.extend(Anomaly::ALL.iter().map(|&a| self.anomalies.get(a).to_string()));
        cells.extend([
            ms(self.p50_ms),
            ms(self.p99_ms),
            format!("{:.1}", self.throughput_ok_per_s),
            self.overhead_s.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into()),
            recovery_cell(&self.recovery),
            self.delivered_after_restart
                .map_or_else(|| "-".to_string(), |n| n.to_string()),
        ]);
        cells.extend(ops_max_cells(self.ops_max.as_ref()));
        cells.extend([
            seeds(&self.failed_seeds),
            seeds(&self.errors.iter().map(|(s, _)| *s).collect::<Vec<_>>()),
        ]);
        cells
    }
}

/// Time to recover per fault, one cell: `fault median/worst`, `(n never)`.
fn recovery_cell(recovery: &[FaultRecovery]) -> String {
    if recovery.is_empty() {
        return "-".into();
    }
    let s = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.1}"));
    recovery
        .iter()
        .map(|r| {
            let mut cell = format!("{} {}/{}", r.fault, s(r.median_s), s(r.worst_s));
            if r.never > 0 {
                cell.push_str(&format!(" ({} never)", r.never));
            }
            cell
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The maxima of the operational series, one cell each in [`OPS_MAX_COLUMNS`]
/// order (`-`: never read).
fn ops_max_cells(m: Option<&crate::ops_series::OpsMaxima>) -> [String; 5] {
    let n = |v: Option<i64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
    let bytes = |v: Option<i64>| v.map_or_else(|| "-".to_string(), crate::ops_series::format_bytes);
    let m = m.cloned().unwrap_or_default();
    [
        n(m.backlog),
        m.oldest_age_ms
            .map_or_else(|| "-".to_string(), |v| format!("{:.1}", v as f64 / 1000.0)),
        n(m.parked),
        bytes(m.wal_retained_bytes),
        bytes(m.outbox_bytes),
    ]
}

/// Headers of the operational maxima's columns (largest over the runs).
pub const OPS_MAX_COLUMNS: [&str; 5] = [
    "max backlog",
    "max oldest age s",
    "max parked",
    "max retained WAL",
    "max outbox",
];

/// An anomaly's column header: its name, shortened where the name is long.
fn anomaly_column(a: Anomaly) -> &'static str {
    match a {
        Anomaly::DuplicateBeyondIdempotency => "dup_beyond_idem",
        a => a.name(),
    }
}

/// Column headers of the table: one per anomaly, in [`Anomaly::ALL`] order, between the run and latency columns.
pub fn headers() -> Vec<&'static str> {
    let mut h = vec![
        "implementation",
        "faults",
        "expected",
        "as expected",
        "not as expected (seed:anomalies)",
        "errors",
        "verdict",
        "runs",
    ];
    h.extend(Anomaly::ALL.iter().map(|&a| anomaly_column(a)));
    h.extend([
        "p50 ms",
        "p99 ms",
        "ok/s",
        "overhead s",
        "recovery s (median/worst)",
        "delivered after restart",
    ]);
    h.extend(OPS_MAX_COLUMNS);
    h.extend(["failed seeds", "error seeds"]);
    h
}

/// The matrix as a [`Table`]: one row per cell, the columns of [`headers`];
/// on the page the verdict is coloured, runs not as expected are marked, and
/// with `reports_in` a last column links each run's report (relative to
/// that directory when inside it).
pub fn table(rows: &[Row], reports_in: Option<&Path>) -> Table {
    let mut columns: Vec<Column> = headers().into_iter().map(Column::left).collect();
    if reports_in.is_some() {
        columns.push(Column::left("reports"));
    }
    let mut t = Table::new(columns);
    for r in rows {
        let mut cells: Vec<Cell> = r.cells().into_iter().map(Cell::new).collect();
        cells[VERDICT_COLUMN] = std::mem::take(&mut cells[VERDICT_COLUMN]).class(r.verdict.clone());
        if !r.not_as_expected.is_empty() {
            cells[UNEXPECTED_COLUMN] = std::mem::take(&mut cells[UNEXPECTED_COLUMN]).class("INVALID");
        }
        if let Some(dir) = reports_in {
            let links: Vec<(String, usize)> = r
                .reports
                .iter()
                .enumerate()
                .map(|(i, p)| (p.strip_prefix(dir).unwrap_or(p).display().to_string(), i + 1))
                .collect();
            let text = links.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>().join(" ");
            cells.push(Cell::new(text).html(html! {
                @for (link, n) in &links { a href=(link) { "run " (n) } " " }
            }));
        }
        t.push(cells);
    }
    t
}

/// Where the verdict is among [`headers`] (coloured on the page).
const VERDICT_COLUMN: usize = 6;
/// Where the runs not as expected are among [`headers`] (marked on the page).
const UNEXPECTED_COLUMN: usize = 4;

/// The table as aligned text (columns as wide as their widest cell on screen).
pub fn text_table(rows: &[Row]) -> String {
    table(rows, None).text()
}

/// The table as Markdown (a `|` in a cell escaped).
pub fn markdown_table(rows: &[Row]) -> String {
    table(rows, None).markdown()
}

/// The HTML page (`sweep.html`, `compare.html`, `merge.html`, `zoo.html`),
/// in the shared shell: the table, with each run's report linked (relative
/// to `dir` when inside it), then the runs that could not be carried out.
pub fn html(rows: &[Row], dir: &Path, title: &str) -> String {
    let body = html! {
        h1 { (title) }
        (table(rows, Some(dir)).html(Some("compare")))
        @for r in rows {
            @for (seed, e) in &r.errors {
                p { b { (r.implementation) } ", seed " (seed) ": could not be carried out: " (e) }
            }
        }
        p {
            "Each run is judged against the expectation its implementation declares (dualcheck list). \
             Anomalies are summed over the seeds; p50 is the median of the runs' p50s, p99 the worst run's p99 \
             (commit to first delivery); ok/s is the mean over the runs; overhead is the mean wall time per run \
             beyond its workload."
        }
    };
    page(Kind::Matrix, title, body, None)
}

/// What a sweep runs.
#[derive(Debug, Clone)]
pub struct SweepPlan {
    /// The cells, one row each: an implementation (with knobs) and the fault
    /// list (`none`, a family, faults, or a mix) it runs under.
    /// [`SweepPlan::product`] makes every subject × every fault list.
    pub cells: Vec<(Subject, String)>,
    /// The seeds of every cell.
    pub seeds: Range<u64>,
    /// The options every run shares (implementation, faults, knobs and seed replaced per run).
    pub run: RunOptions,
    /// The command (`sweep` or `compare`): names its directory and HTML page.
    pub command: &'static str,
    /// Show the progress bar on stderr.
    pub progress: bool,
    /// Only this part of the runs (`--shard I/N`), when given.
    pub shard: Option<Shard>,
    /// Renders the rows so far (text, Markdown or JSON, as the command prints
    /// its table): printed on stdout if the sweep is interrupted, after the
    /// services are killed, so a long sweep stopped with Ctrl-C still gives its table.
    pub render_partial: fn(&[Row]) -> String,
}

/// One of N parts of a sweep (`--shard I/N`): the runs whose position in
/// the sweep's order (cells in order, each with its seeds) is I-1 modulo N.
/// Every part plans the same sweep, so the parts are disjoint and together
/// make it whole, whatever machine runs each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// Which part, 1..=count.
    pub index: usize,
    /// How many parts.
    pub count: usize,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Shard, String> {
        let bad = || format!("--shard {s}: write I/N with 1 <= I <= N, e.g. 2/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Whether the run at `position` of the whole sweep is this part's.
    pub fn has(self, position: usize) -> bool {
        position % self.count == self.index - 1
    }
}

/// A cell as `sweep.json` records it (to merge sweeps, e.g. shards).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CellRecord {
    /// The row's label.
    pub label: String,
    /// The implementation.
    pub implementation: String,
    /// Its knobs.
    pub app_vars: Vec<(String, String)>,
    /// Checked exactly-once.
    pub exactly_once: bool,
    /// The fault list as given.
    pub faults: String,
}

/// A run as `sweep.json` records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    /// Index into the cells.
    pub cell: usize,
    /// Its seed.
    pub seed: u64,
    /// Its run directory (its `results.json`), relative to the sweep's
    /// directory, when it was carried out.
    pub run_dir: Option<PathBuf>,
    /// Wall seconds beyond its workload.
    pub overhead_s: Option<f64>,
    /// Why it could not be carried out.
    pub error: Option<String>,
}

/// `sweep.json` (`compare.json`, `zoo.json`) in a sweep's directory: its
/// cells and runs, rewritten after each run; what `dualcheck merge` reads.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SweepRecord {
    /// `sweep`, `compare` or `zoo`.
    pub command: String,
    /// The part of the sweep this is (`[I, N]`), when sharded.
    pub shard: Option<(usize, usize)>,
    /// The cells, in order.
    pub cells: Vec<CellRecord>,
    /// The runs done so far.
    pub runs: Vec<RunRecord>,
}

impl SweepPlan {
    /// Every subject under every fault list, subjects first: the cells of
    /// `--impls A,B --faults X --faults Y`.
    pub fn product(subjects: &[Subject], faults: &[String]) -> Vec<(Subject, String)> {
        subjects
            .iter()
            .flat_map(|s| faults.iter().map(move |f| (s.clone(), f.clone())))
            .collect()
    }
}

/// What a sweep produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepOutcome {
    /// One row per cell, subjects in order, each with its fault lists in order.
    pub rows: Vec<Row>,
    /// The sweep's directory (runs, services' logs, the HTML page).
    pub out_dir: PathBuf,
    /// The HTML page.
    pub html: PathBuf,
    /// Seconds spent starting services (once per broker count).
    pub services_start_s: f64,
    /// Wall seconds of the whole sweep.
    pub wall_s: f64,
}

impl SweepOutcome {
    /// Whether some run could not be carried out.
    pub fn has_errors(&self) -> bool {
        self.rows.iter().any(|r| !r.errors.is_empty())
    }

    /// Whether every cell ended as expected.
    pub fn all_as_expected(&self) -> bool {
        self.rows.iter().all(Row::all_as_expected)
    }

    /// Whether every run was valid.
    pub fn all_valid(&self) -> bool {
        self.rows.iter().all(|r| r.failed_seeds.is_empty())
    }
}

/// One run to carry out.
struct Planned {
    cell: usize,
    seed: u64,
    cfg: RunConfig,
}

/// A cell as the sweep judges it: its label, its fault list, its expectation.
type CellJudged = (String, String, Expect);

/// Every run of `plan` (in this shard, when sharded), each configured (so a
/// mistake in any is found before the first run starts), and its cells.
fn plan_runs(plan: &SweepPlan, dir: &Path) -> Result<(Vec<CellJudged>, Vec<Planned>)> {
    let mut cells = Vec::new();
    let mut planned = Vec::new();
    for (subject, faults) in &plan.cells {
        let cell = cells.len();
        let mut expect = None;
        for seed in plan.seeds.clone() {
            let mut options = plan.run.clone();
            options.implementation = subject.implementation.clone();
            options.app_vars.extend(subject.app_vars.iter().cloned());
            options.exactly_once |= subject.exactly_once;
            options.faults = faults.clone();
            options.workload.seed = seed;
            if let Some(w) = &subject.workload {
                w.apply(&mut options.workload);
            }
            options.out = dir.to_path_buf();
            options.progress = false;
            let cfg = options
                .to_config()
                .with_context(|| format!("--impls {} --faults {faults}", subject.label))?;
            expect.get_or_insert_with(|| {
                expectation(&subject.implementation, &options.app_vars, &cfg.faults, cfg.replicas)
            });
            planned.push(Planned { cell, seed, cfg });
        }
        cells.push((subject.label.clone(), faults.clone(), expect.unwrap_or(Expect::Valid)));
    }
    if let Some(shard) = plan.shard {
        planned = planned
            .into_iter()
            .enumerate()
            .filter(|(position, _)| shard.has(*position))
            .map(|(_, p)| p)
            .collect();
    }
    Ok((cells, planned))
}

/// The sweep's title: its command, fault lists, run length and seeds.
fn title(plan: &SweepPlan) -> String {
    let mut lists: Vec<&str> = Vec::new();
    for (_, f) in &plan.cells {
        if !lists.contains(&f.as_str()) {
            lists.push(f);
        }
    }
    format!(
        "dualcheck {}: faults {}, {:.0} s per run, seeds {}..={}",
        plan.command,
        lists.join(" | "),
        plan.run.duration.as_secs_f64(),
        plan.seeds.start,
        plan.seeds.end - 1
    )
}

impl SweepRecord {
    /// The record of `plan` before any run.
    fn of(plan: &SweepPlan) -> SweepRecord {
        SweepRecord {
            command: plan.command.to_string(),
            shard: plan.shard.map(|s| (s.index, s.count)),
            cells: plan
                .cells
                .iter()
                .map(|(subject, faults)| CellRecord {
                    label: subject.label.clone(),
                    implementation: subject.implementation.clone(),
                    app_vars: subject.app_vars.clone(),
                    exactly_once: subject.exactly_once,
                    faults: faults.clone(),
                })
                .collect(),
            runs: Vec::new(),
        }
    }
}

/// Runs every cell on every seed, one run at a time, on services started once
/// per broker count (runs needing three brokers, for a `cluster` fault, share
/// an environment of three; the others one of `--brokers`). Every
/// configuration is checked before the first run starts. The HTML page is
/// rewritten after each run, so an interrupted sweep still shows what it has.
pub async fn sweep(plan: &SweepPlan) -> Result<SweepOutcome> {
    let started = Instant::now();
    if plan.seeds.is_empty() {
        bail!("--seeds must be at least 1");
    }
    if plan.cells.is_empty() {
        bail!("--impls and --faults must each name at least one");
    }
    let dir = crate::run_dir::create_sweep_dir(&plan.run.out, plan.command)?;
    let (cells, planned) = plan_runs(plan, &dir)?;
    let mut progress = Progress::new(plan, dir, cells, planned.len());
    let mut campaign = Campaign::new(plan.run.backend.clone(), &progress.dir);
    for (brokers, runs) in by_broker_count(planned) {
        progress
            .bar
            .set_message(format!("starting the services ({brokers} broker(s))"));
        if let Err(e) = campaign.services(brokers).await {
            progress.could_not_start(runs, format!("{e:#}"));
            continue;
        }
        for p in runs {
            progress.run(p, &mut campaign).await?;
        }
    }
    let services_start_s = campaign.services_start_s();
    campaign.finish().await;
    progress.bar.finish_and_clear();
    let rows = progress.rows();
    std::fs::write(&progress.html_path, html(&rows, &progress.dir, &progress.title))?;
    Ok(SweepOutcome {
        rows,
        out_dir: progress.dir,
        html: progress.html_path,
        services_start_s,
        wall_s: started.elapsed().as_secs_f64(),
    })
}

/// The planned runs by the broker count their environment needs, in the
/// order first needed: one environment each.
fn by_broker_count(planned: Vec<Planned>) -> BTreeMap<usize, Vec<Planned>> {
    let mut groups: BTreeMap<usize, Vec<Planned>> = BTreeMap::new();
    for p in planned {
        groups.entry(crate::runner::brokers_needed(&p.cfg)).or_default().push(p);
    }
    groups
}

/// What a sweep has done so far and where it keeps it: the record
/// (`sweep.json`), the page, the bar and the counts the bar shows. Every run
/// ends in [`Progress::save`], so an interrupted sweep leaves all it did.
struct Progress<'a> {
    plan: &'a SweepPlan,
    dir: PathBuf,
    html_path: PathBuf,
    record_path: PathBuf,
    title: String,
    cells: Vec<CellJudged>,
    record: SweepRecord,
    results: Vec<Vec<(u64, Result<RunOutcome, String>)>>,
    overheads: Vec<Vec<f64>>,
    bar: indicatif::ProgressBar,
    total: usize,
    done: usize,
    as_expected: u64,
    unexpected: u64,
    errors: u64,
}

impl<'a> Progress<'a> {
    fn new(plan: &'a SweepPlan, dir: PathBuf, cells: Vec<CellJudged>, total: usize) -> Progress<'a> {
        Progress {
            plan,
            html_path: dir.join(format!("{}.html", plan.command)),
            record_path: dir.join(format!("{}.json", plan.command)),
            dir,
            title: title(plan),
            record: SweepRecord::of(plan),
            results: vec![Vec::new(); cells.len()],
            overheads: vec![Vec::new(); cells.len()],
            cells,
            bar: progress_bar(plan.progress, total as u64),
            total,
            done: 0,
            as_expected: 0,
            unexpected: 0,
            errors: 0,
        }
    }

    /// Every run of an environment that did not start: each an error saying why.
    fn could_not_start(&mut self, runs: Vec<Planned>, error: String) {
        for p in runs {
            self.errors += 1;
            self.record.runs.push(RunRecord {
                cell: p.cell,
                seed: p.seed,
                run_dir: None,
                overhead_s: None,
                error: Some(error.clone()),
            });
            self.results[p.cell].push((p.seed, Err(error.clone())));
        }
    }

    /// Carries out one run on `services`, judges it, says so above the bar and saves.
    async fn run(&mut self, p: Planned, campaign: &mut Campaign) -> Result<()> {
        self.done += 1;
        let (label, faults, expect) = self.cells[p.cell].clone();
        self.bar.set_message(format!(
            "{label} × {faults}, seed {} | as expected {}, not {}, errors {}",
            p.seed, self.as_expected, self.unexpected, self.errors
        ));
        let t = Instant::now();
        let r = campaign.run(&p.cfg).await.map_err(|e| format!("{e:#}"));
        let overhead = r
            .as_ref()
            .ok()
            .map(|o| (t.elapsed().as_secs_f64() - o.duration_s).max(0.0));
        let line = self.judge(&r, expect);
        println_above(
            &self.bar,
            &format!(
                "[{}/{}] {label} × {faults} seed {}: {line}",
                self.done, self.total, p.seed
            ),
        );
        self.bar.inc(1);
        if let Some(o) = overhead {
            self.overheads[p.cell].push(o);
        }
        self.record.runs.push(RunRecord {
            cell: p.cell,
            seed: p.seed,
            // Relative to the sweep's directory, so the record still holds
            // when the directory is moved (a CI artifact downloaded elsewhere).
            run_dir: r
                .as_ref()
                .ok()
                .map(|o| o.run_dir.strip_prefix(&self.dir).unwrap_or(&o.run_dir).to_path_buf()),
            overhead_s: overhead,
            error: r.as_ref().err().cloned(),
        });
        self.results[p.cell].push((p.seed, r));
        self.save(campaign)
    }

    /// Counts a run as expected, not, or an error, and says it in a line.
    fn judge(&mut self, r: &Result<RunOutcome, String>, expect: Expect) -> String {
        match r {
            Ok(o) => {
                let met = expect.met_by(&o.result.violations);
                if met {
                    self.as_expected += 1;
                } else {
                    self.unexpected += 1;
                }
                format!(
                    "{} {:?} ({}expected: {expect})",
                    if o.result.valid { "valid" } else { "INVALID" },
                    o.result.violations.iter().map(|a| a.name()).collect::<Vec<_>>(),
                    if met { "as " } else { "NOT as " }
                )
            }
            Err(e) => {
                self.errors += 1;
                format!("could not be carried out: {e}")
            }
        }
    }

    /// The record and the page as they are now, and the table Ctrl-C prints.
    fn save(&self, campaign: &Campaign) -> Result<()> {
        std::fs::write(&self.record_path, serde_json::to_string_pretty(&self.record)?)?;
        let rows = self.rows();
        std::fs::write(&self.html_path, html(&rows, &self.dir, &self.title))?;
        campaign.on_interrupt_print(
            (self.plan.render_partial)(&rows),
            format!(
                "interrupted after {} of {} runs; the table above has them; {}",
                self.done,
                self.total,
                self.html_path.display()
            ),
        );
        Ok(())
    }

    fn rows(&self) -> Vec<Row> {
        rows_of(&self.cells, &self.results, &self.overheads)
    }
}

/// The rows of the cells with the runs so far (seeds in order).
fn rows_of(
    cells: &[CellJudged],
    results: &[Vec<(u64, Result<RunOutcome, String>)>],
    overheads: &[Vec<f64>],
) -> Vec<Row> {
    cells
        .iter()
        .zip(results)
        .zip(overheads)
        // A cell with no run yet (or none in this shard) has no row.
        .filter(|((_, runs), _)| !runs.is_empty())
        .map(|(((label, faults, expect), runs), over)| {
            let mut runs = runs.clone();
            runs.sort_by_key(|(seed, _)| *seed);
            let mut row = Row::of_cell(label, faults, *expect, &runs);
            if !over.is_empty() {
                row.overhead_s = Some(over.iter().sum::<f64>() / over.len() as f64);
            }
            row
        })
        .collect()
}

/// The sweep's bar: run i of n, the current cell and the verdicts so far
/// (hidden when not asked for, or when stderr is not a terminal).
fn progress_bar(show: bool, total: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(total);
    pb.set_style(
        indicatif::ProgressStyle::with_template("[{elapsed_precise}] {bar:20} run {pos}/{len}  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb.enable_steady_tick(Duration::from_millis(500));
    pb
}

/// A line on stderr above the bar (plainly when the bar is hidden).
fn println_above(bar: &indicatif::ProgressBar, line: &str) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_anomaly_has_a_column() {
        let row = Row {
            implementation: "x".into(),
            verdict: "INVALID".into(),
            anomalies: Anomalies {
                stale_read: 3,
                ..Anomalies::default()
            },
            ..Row::default()
        };
        let headers = headers();
        let cells = row.cells();
        assert_eq!(headers.len(), cells.len());
        for &a in Anomaly::ALL {
            let i = headers.iter().position(|h| *h == anomaly_column(a)).unwrap();
            assert_eq!(cells[i], row.anomalies.get(a).to_string(), "{a}");
        }
        assert!(text_table(std::slice::from_ref(&row)).contains("stale_read"));
        let col = |name: &str| headers.iter().position(|h| *h == name).unwrap();
        assert_eq!(cells[col("max retained WAL")], "-", "never sampled");
        let sampled = Row {
            ops_max: Some(crate::ops_series::OpsMaxima {
                samples: 4,
                backlog: Some(12),
                oldest_age_ms: Some(2500),
                parked: Some(0),
                wal_retained_bytes: Some(64 << 20),
                unconfirmed_bytes: Some(0),
                outbox_bytes: Some(8192),
            }),
            ..row.clone()
        };
        let cells = sampled.cells();
        assert_eq!(headers.len(), cells.len());
        let got: Vec<&str> = OPS_MAX_COLUMNS.iter().map(|c| cells[col(c)].as_str()).collect();
        assert_eq!(got, ["12", "2.5", "0", "64.0 MiB", "8.0 KiB"]);
        assert!(markdown_table(std::slice::from_ref(&sampled)).contains("| 64.0 MiB |"));
        let json = serde_json::to_value(&row).unwrap();
        for &a in Anomaly::ALL {
            assert_eq!(json[a.name()], row.anomalies.get(a), "{a}");
        }
    }

    #[test]
    fn every_expectation_names_real_faults() {
        use implementations::When;
        for info in implementations::REGISTRY {
            for c in info.controls {
                // The zoo runs each mutant under its own fault list.
                assert!(
                    crate::nemesis::Fault::parse_list(c.faults).is_ok(),
                    "{} {}: {}",
                    info.name,
                    c.name,
                    c.faults
                );
            }
            let rule_sets = std::iter::once(info.expect).chain(info.controls.iter().map(|c| c.expect));
            for rules in rule_sets {
                for r in rules {
                    if let When::AnyFault(names) | When::AllFaults(names) = r.when {
                        for n in names {
                            assert!(crate::nemesis::Fault::from_name(n).is_ok(), "{}: {n}", info.name);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_cell_expects_what_its_pattern_declares() {
        use crate::nemesis::Fault;
        let network = Fault::parse_list("network").unwrap();
        assert_eq!(expectation("naive", &[], &network, 1), Expect::Shows(&[Anomaly::Lost]));
        assert_eq!(
            expectation("naive", &[], &Fault::parse_list("pg-kill").unwrap(), 1),
            Expect::Valid
        );
        assert_eq!(expectation("outbox-poll", &[], &network, 1), Expect::Valid);
        let early = [("DUALCHECK_CDC_CONFIRM".to_string(), "early".to_string())];
        let process = Fault::parse_list("process").unwrap();
        assert_eq!(
            expectation("cdc-logical", &early, &process, 1),
            Expect::Shows(&[Anomaly::Lost])
        );
        assert_eq!(expectation("cdc-logical", &[], &process, 1), Expect::Valid);
        assert_eq!(expectation("exec", &[], &process, 1), Expect::Valid);
        // Read your writes holds on the instance that took the write only.
        assert_eq!(
            expectation("listen-to-yourself", &[], &network, 2),
            Expect::ValidBut(&[Anomaly::StaleRead])
        );
        assert_eq!(expectation("listen-to-yourself", &[], &network, 1), Expect::Valid);
        assert_eq!(expectation("outbox-poll", &[], &network, 3), Expect::Valid);
        let s: Subject = "cdc-logical+DUALCHECK_CDC_CONFIRM=early".parse().unwrap();
        assert_eq!(
            (s.implementation.as_str(), s.app_vars.as_slice()),
            ("cdc-logical", early.as_slice())
        );
        assert!("+X=1".parse::<Subject>().is_err() && "naive+X".parse::<Subject>().is_err());
        let t: Subject = "debezium:tuned+DUALCHECK_DEBEZIUM_POLL_MS=20".parse().unwrap();
        assert_eq!(
            (t.label.as_str(), t.implementation.as_str()),
            ("debezium:tuned+DUALCHECK_DEBEZIUM_POLL_MS=20", "debezium")
        );
        let tuned = implementations::lookup("debezium").unwrap().tuned;
        assert_eq!(t.app_vars.len(), tuned.len() + 1, "the preset, then the knob written");
        assert_eq!(t.app_vars.last().unwrap().1, "20");
        assert!("naive:tuned".parse::<Subject>().unwrap_err().contains("debezium"));
        assert!("debezium:fast".parse::<Subject>().unwrap_err().contains("NAME:tuned"));
    }

    #[test]
    fn a_row_counts_runs_as_expected_or_not() {
        let lost = Expect::Shows(&[Anomaly::Lost]);
        let row = Row::of_cell("naive", "kafka-partition", lost, &[(1, Err("no services".into()))]);
        assert_eq!((row.as_expected, row.errors.len()), (0, 1));
        assert!(!row.all_as_expected());
        assert_eq!(row.expected, "shows lost");
        let empty = Row::of_cell("naive", "kafka-partition", lost, &[]);
        assert!(empty.all_as_expected());
    }
}

#[cfg(test)]
mod shard_tests {
    use super::Shard;

    #[test]
    fn shards_parse_and_split_every_run_exactly_once() {
        let parts: Vec<Shard> = (1..=3).map(|i| format!("{i}/3").parse().unwrap()).collect();
        for position in 0..30 {
            assert_eq!(parts.iter().filter(|s| s.has(position)).count(), 1, "{position}");
        }
        for bad in ["0/3", "4/3", "1/0", "2", "a/b"] {
            let e = bad.parse::<Shard>().unwrap_err();
            assert!(e.contains("--shard") && e.contains("I/N"), "{e}");
        }
    }
}
