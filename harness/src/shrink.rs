//! `dualcheck shrink`: the smallest reproduction of an invalid run, on real
//! services started once (like a sweep: each try is [`crate::runner::run_on`]).
//!
//! The recorded run is first replayed `tries` times ([`crate::replay`]); it
//! reproduces when at least `min_repro` tries show its anomaly kind. Then each
//! candidate — a smaller schedule or workload — is kept only when it
//! reproduces the same way: fault windows are removed (delta debugging over
//! the set of windows), the remaining ones shortened and moved earlier, the
//! workload cut after the last window, then keys, concurrency and rate
//! reduced. Everything goes to `RUN_DIR/shrunk/`, rewritten whenever a
//! candidate is kept, so a shrink stopped by `--budget` or Ctrl-C leaves the
//! best so far.

use crate::campaign::Campaign;
use crate::nemesis::Fault;
use crate::record::{quote, RecordedApp, RecordedConfig, ReproFiles};
use crate::runner::RunConfig;
use anyhow::{Context, Result};
use serde::Serialize;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use workloads::{FaultPhase, Schedule, ScheduleStep, Workload};

use crate::run_dir::{
    SHRUNK_COMMANDS, SHRUNK_DIR, SHRUNK_LOG, SHRUNK_REPORT, SHRUNK_RUNS, SHRUNK_SCHEDULE, SHRUNK_SCHEMA,
    SHRUNK_SUMMARY, SHRUNK_VERIFICATION, SHRUNK_WORKLOAD,
};

/// One fault window: `fault` from `start` to `stop` (offsets from the start of the workload).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Window {
    /// The fault.
    pub fault: Fault,
    /// When it starts (seconds in JSON).
    #[serde(serialize_with = "secs")]
    pub start: Duration,
    /// When it is healed (seconds in JSON).
    #[serde(serialize_with = "secs")]
    pub stop: Duration,
}

/// The windows of a schedule: each start paired with the next stop of its
/// fault (a start never stopped lasts until `end`).
pub fn windows(schedule: &Schedule<Fault>, end: Duration) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    let mut open: Vec<(Fault, Duration)> = Vec::new();
    let mut steps = schedule.steps.clone();
    steps.sort_by_key(|s| s.at);
    for s in steps {
        match s.phase {
            FaultPhase::Start => open.push((s.fault, s.at)),
            FaultPhase::Stop => {
                if let Some(i) = open.iter().position(|(f, _)| *f == s.fault) {
                    let (fault, start) = open.remove(i);
                    out.push(Window {
                        fault,
                        start,
                        stop: s.at,
                    });
                }
            }
        }
    }
    out.extend(open.into_iter().map(|(fault, start)| Window {
        fault,
        start,
        stop: end.max(start),
    }));
    out.sort_by_key(|w| (w.start, w.stop));
    out
}

/// The schedule of `windows`: their starts and stops in time order.
pub fn schedule_of(windows: &[Window]) -> Schedule<Fault> {
    let mut steps: Vec<ScheduleStep<Fault>> = windows
        .iter()
        .flat_map(|w| {
            [
                ScheduleStep {
                    at: w.start,
                    fault: w.fault,
                    phase: FaultPhase::Start,
                },
                ScheduleStep {
                    at: w.stop,
                    fault: w.fault,
                    phase: FaultPhase::Stop,
                },
            ]
        })
        .collect();
    // Stable: a window's start stays before its stop at equal times.
    steps.sort_by_key(|s| s.at);
    Schedule { steps }
}

/// What a candidate run varies: the fault windows, the workload's duration and options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Candidate {
    /// The fault windows.
    pub windows: Vec<Window>,
    /// How long the workload runs.
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// The workload (seed, keys, concurrency, rate, ...).
    pub workload: Workload,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Candidate {
    /// One line: windows, duration, keys, concurrency, rate.
    pub fn describe(&self) -> String {
        let ws: Vec<String> = self
            .windows
            .iter()
            .map(|w| {
                format!(
                    "{} {:.1}-{:.1}s",
                    w.fault.name(),
                    w.start.as_secs_f64(),
                    w.stop.as_secs_f64()
                )
            })
            .collect();
        format!(
            "{} window(s) [{}], {:.1} s, keys {}, concurrency {}, rate {}",
            self.windows.len(),
            ws.join(", "),
            self.duration.as_secs_f64(),
            self.workload.keys,
            self.workload.concurrency,
            self.workload.rate
        )
    }

    /// The run configuration of this candidate, from the original's: its
    /// schedule, duration and workload, the faults its windows use, on the
    /// original's brokers.
    pub fn config(&self, base: &RunConfig) -> RunConfig {
        let mut cfg = base.clone();
        cfg.brokers = crate::runner::brokers_needed(base);
        cfg.faults = used_faults(self);
        cfg.schedule = Some(schedule_of(&self.windows));
        cfg.duration = self.duration;
        cfg.workload = self.workload.clone();
        cfg
    }
}

/// Delta debugging's next candidates over `n` items split into `parts`
/// chunks: each chunk alone, then each complement (the items without one
/// chunk). Returns index sets, never the empty set nor all items.
pub fn ddmin_candidates(n: usize, parts: usize) -> Vec<Vec<usize>> {
    let parts = parts.clamp(2, n.max(2));
    let chunks: Vec<Vec<usize>> = (0..parts)
        .map(|p| (p * n / parts..(p + 1) * n / parts).collect::<Vec<_>>())
        .filter(|c| !c.is_empty())
        .collect();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for c in &chunks {
        if c.len() < n && !out.contains(c) {
            out.push(c.clone());
        }
    }
    if chunks.len() > 2 {
        for c in &chunks {
            let rest: Vec<usize> = (0..n).filter(|i| !c.contains(i)).collect();
            if !rest.is_empty() && !out.contains(&rest) {
                out.push(rest);
            }
        }
    }
    out
}

/// What a shrink is asked to do.
#[derive(Debug, Clone)]
pub struct ShrinkOptions {
    /// The invalid run to shrink.
    pub run_dir: PathBuf,
    /// Tries per candidate.
    pub tries: u32,
    /// Tries that must show the anomaly for a candidate to reproduce.
    pub min_repro: u32,
    /// Wall time after which no new candidate starts (`None`: no limit).
    pub budget: Option<Duration>,
    /// The anomaly kind to keep (default: the run's first violation).
    pub anomaly: Option<String>,
    /// Candidates after which no new one starts, the original included (`None`: no limit).
    pub max_candidates: Option<usize>,
    /// The services the candidates run on (`None`: local).
    pub backend: Option<crate::env::BackendKind>,
}

/// How a shrink ended.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum ShrinkEnd {
    /// The run was valid (or showed no violation): nothing to shrink.
    NothingToShrink {
        /// Why.
        reason: String,
    },
    /// The original did not reproduce `min_repro` of `tries` times.
    NotReproduced {
        /// The anomaly kind looked for.
        anomaly: String,
        /// Tries that showed it.
        reproduced: u32,
        /// Tries made.
        tries: u32,
    },
    /// Shrunk (possibly not at all when no smaller candidate reproduced).
    Shrunk(Box<ShrinkOutcome>),
}

/// A shrink's result.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ShrinkOutcome {
    /// The anomaly kind kept.
    pub anomaly: String,
    /// The recorded run.
    #[serde(default)]
    pub original: Candidate,
    /// The smallest candidate that reproduced.
    #[serde(default)]
    pub best: Candidate,
    /// Candidates tried (the original included).
    pub candidates: usize,
    /// Runs carried out.
    pub runs: usize,
    /// Whether the budget (`--budget`, `--max-candidates`) stopped the minimisation early.
    pub budget_exhausted: bool,
    /// Wall seconds of the whole shrink (services included).
    pub wall_s: f64,
    /// The best candidate's reproducing run (its report, history, schedule).
    pub best_run: Option<PathBuf>,
    /// `RUN_DIR/shrunk`.
    pub dir: PathBuf,
    /// The command replaying the best reproducing run.
    pub replay_command: String,
    /// The `dualcheck run` line for CI.
    pub run_command: String,
}

/// One candidate's line in `shrink.jsonl`.
#[derive(Serialize)]
struct LogLine<'a> {
    candidate: usize,
    step: &'a str,
    #[serde(flatten)]
    what: &'a Candidate,
    tries: u32,
    reproduced: u32,
    kept: bool,
    anomalies: Vec<Vec<String>>,
    errors: Vec<String>,
    runs: Vec<PathBuf>,
    elapsed_s: f64,
}

struct Shrinker {
    base: RunConfig,
    /// The services every try runs on, started once.
    campaign: Campaign,
    opts: ShrinkOptions,
    anomaly: String,
    dir: PathBuf,
    started: Instant,
    candidates: usize,
    runs: usize,
    best: Candidate,
    best_run: Option<PathBuf>,
    original: Candidate,
    budget_exhausted: bool,
}

impl Shrinker {
    fn out_of_budget(&mut self) -> bool {
        if self.opts.budget.is_some_and(|b| self.started.elapsed() >= b)
            || self.opts.max_candidates.is_some_and(|m| self.candidates >= m)
        {
            self.budget_exhausted = true;
        }
        self.budget_exhausted
    }

    /// Tries `cand` up to `tries` times (stopping once the outcome is
    /// decided); whether it reproduced `min_repro` times.
    async fn attempt(&mut self, step: &str, cand: &Candidate) -> Result<bool> {
        self.candidates += 1;
        let n = self.candidates;
        let cfg = cand.config(&self.base);
        let (mut reproduced, mut tried) = (0u32, 0u32);
        let (mut anomalies, mut errors, mut runs) = (Vec::new(), Vec::new(), Vec::new());
        let mut first_hit: Option<PathBuf> = None;
        eprintln!("[{n}] {step}: {}", cand.describe());
        while tried < self.opts.tries {
            tried += 1;
            self.runs += 1;
            let r = self.campaign.run(&cfg).await;
            let line = match r {
                Ok(o) => {
                    let kinds: Vec<String> = o.result.violations.iter().map(|a| a.name().to_string()).collect();
                    let hit = kinds.contains(&self.anomaly);
                    if hit {
                        reproduced += 1;
                        first_hit.get_or_insert_with(|| o.run_dir.clone());
                    }
                    runs.push(o.run_dir.clone());
                    let l = format!(
                        "{} ({})",
                        if hit { "reproduced" } else { "not reproduced" },
                        if kinds.is_empty() {
                            "valid".into()
                        } else {
                            kinds.join("+")
                        }
                    );
                    anomalies.push(kinds);
                    l
                }
                Err(e) => {
                    errors.push(format!("{e:#}"));
                    anomalies.push(Vec::new());
                    format!("could not be carried out: {e:#}")
                }
            };
            eprintln!("    try {tried}/{}: {line}", self.opts.tries);
            let failures = tried - reproduced;
            if reproduced >= self.opts.min_repro || failures > self.opts.tries - self.opts.min_repro {
                break;
            }
        }
        let kept = reproduced >= self.opts.min_repro;
        if kept {
            self.best = cand.clone();
            self.best_run = first_hit;
        }
        eprintln!(
            "    {} {reproduced}/{tried} -> {} | best: {}",
            if kept { "reproduced" } else { "did not reproduce" },
            if kept { "kept" } else { "dropped" },
            self.best.describe()
        );
        let log = LogLine {
            candidate: n,
            step,
            what: cand,
            tries: tried,
            reproduced,
            kept,
            anomalies,
            errors,
            runs,
            elapsed_s: self.started.elapsed().as_secs_f64(),
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(SHRUNK_LOG))?;
        writeln!(f, "{}", serde_json::to_string(&log)?)?;
        if kept {
            self.write_outputs()?;
        }
        self.campaign.on_interrupt_print(
            format!("best so far: {}\n", self.best.describe()),
            format!(
                "shrink interrupted after {n} candidates; the best so far is in {}",
                self.dir.display()
            ),
        );
        Ok(kept)
    }

    /// Tries `cand` unless the budget is spent or it is the best already.
    async fn consider(&mut self, step: &str, cand: Candidate) -> Result<bool> {
        if cand == self.best || self.out_of_budget() {
            return Ok(false);
        }
        self.attempt(step, &cand).await
    }

    /// Cuts the workload one second after the last window (halving at most;
    /// halving it when no window is left), while it still reproduces.
    async fn cut_workload(&mut self) -> Result<()> {
        loop {
            let last = self.best.windows.iter().map(|w| w.stop).max();
            let floor = Duration::from_secs(2);
            let target = match last {
                Some(l) => (l + Duration::from_secs(1)).max(self.best.duration / 2),
                None => self.best.duration / 2,
            }
            .max(floor);
            if target + Duration::from_millis(100) >= self.best.duration {
                break;
            }
            let cand = Candidate {
                duration: target,
                ..self.best.clone()
            };
            if !self.consider("cut the workload", cand).await? {
                break;
            }
        }
        Ok(())
    }

    async fn minimise(&mut self) -> Result<()> {
        // 1. Remove fault windows: delta debugging, then none at all.
        let mut parts = 2;
        while self.best.windows.len() > 1 && !self.out_of_budget() {
            let n = self.best.windows.len();
            let mut reduced = false;
            for keep in ddmin_candidates(n, parts) {
                let ws: Vec<Window> = keep.iter().map(|&i| self.best.windows[i].clone()).collect();
                let cand = Candidate {
                    windows: ws,
                    ..self.best.clone()
                };
                let step = format!("keep windows {keep:?} of {n}");
                if self.consider(&step, cand).await? {
                    reduced = true;
                    parts = (parts - 1).max(2);
                    break;
                }
            }
            if !reduced {
                if parts >= n {
                    break;
                }
                parts = (parts * 2).min(n);
            }
        }
        if !self.best.windows.is_empty() {
            let cand = Candidate {
                windows: Vec::new(),
                ..self.best.clone()
            };
            self.consider("remove every window", cand).await?;
        }
        // Every candidate after this one runs as long as the best: cut the
        // workload after the windows that are left now (it is cut again at
        // step 4, after the windows moved earlier).
        self.cut_workload().await?;
        // 2. Shorten each window (halving), 3. move each earlier (halving its start).
        let min = Duration::from_millis(500);
        for i in 0..self.best.windows.len() {
            loop {
                let w = &self.best.windows[i];
                let len = w.stop.saturating_sub(w.start);
                if len / 2 < min {
                    break;
                }
                let mut cand = self.best.clone();
                cand.windows[i].stop = w.start + len / 2;
                if !self.consider(&format!("shorten window {i}"), cand).await? {
                    break;
                }
            }
        }
        for i in 0..self.best.windows.len() {
            loop {
                let w = self.best.windows[i].clone();
                if w.start / 2 < min {
                    break;
                }
                let start = w.start / 2;
                let mut cand = self.best.clone();
                cand.windows[i].start = start;
                cand.windows[i].stop = start + (w.stop - w.start);
                let overlaps = cand.windows.iter().enumerate().any(|(j, o)| {
                    j != i && o.fault == w.fault && o.start < cand.windows[i].stop && cand.windows[i].start < o.stop
                });
                if overlaps || !self.consider(&format!("move window {i} earlier"), cand).await? {
                    break;
                }
            }
        }
        // 4. Cut the workload after the last window (or halve it without windows).
        self.cut_workload().await?;
        // 5. Fewer keys, fewer workers, a lower rate.
        loop {
            let w = &self.best.workload;
            let keys = (w.keys / 2).max(w.concurrency).max(1);
            if keys >= w.keys {
                break;
            }
            let mut cand = self.best.clone();
            cand.workload.keys = keys;
            if !self.consider("fewer keys", cand).await? {
                break;
            }
        }
        loop {
            let w = &self.best.workload;
            if w.concurrency <= 1 {
                break;
            }
            let mut cand = self.best.clone();
            cand.workload.concurrency = w.concurrency / 2;
            if !self.consider("fewer workers", cand).await? {
                break;
            }
        }
        loop {
            let w = &self.best.workload;
            if w.rate == 0.0 || w.rate / 2.0 < 5.0 {
                break;
            }
            let mut cand = self.best.clone();
            cand.workload.rate = w.rate / 2.0;
            if !self.consider("lower rate", cand).await? {
                break;
            }
        }
        Ok(())
    }

    fn commands(&self) -> (String, String) {
        let replay = match &self.best_run {
            Some(r) => format!("dualcheck run --replay {}", quote(&r.display().to_string())),
            None => String::new(),
        };
        (
            replay,
            run_command(
                &self.base,
                &self.best,
                ReproFiles {
                    schedule: &self.dir.join(SHRUNK_SCHEDULE),
                    schema: self.base.schema_sql.is_some().then_some(&self.dir.join(SHRUNK_SCHEMA)),
                },
            ),
        )
    }

    fn outcome(&self) -> ShrinkOutcome {
        let (replay_command, run_command) = self.commands();
        ShrinkOutcome {
            anomaly: self.anomaly.clone(),
            original: self.original.clone(),
            best: self.best.clone(),
            candidates: self.candidates,
            runs: self.runs,
            budget_exhausted: self.budget_exhausted,
            wall_s: self.started.elapsed().as_secs_f64(),
            best_run: self.best_run.clone(),
            dir: self.dir.clone(),
            replay_command,
            run_command,
        }
    }

    /// Rewrites every file of `shrunk/` for the best candidate so far.
    fn write_outputs(&self) -> Result<()> {
        let d = &self.dir;
        std::fs::write(
            d.join(SHRUNK_SCHEDULE),
            serde_json::to_string_pretty(&schedule_of(&self.best.windows))?,
        )?;
        std::fs::write(
            d.join(SHRUNK_WORKLOAD),
            serde_json::to_string_pretty(&serde_json::json!({
                "duration_s": self.best.duration.as_secs_f64(),
                "workload": self.best.workload,
            }))?,
        )?;
        if let Some(sql) = &self.base.schema_sql {
            std::fs::write(d.join(SHRUNK_SCHEMA), sql)?;
        }
        let (replay, run) = self.commands();
        std::fs::write(
            d.join(SHRUNK_COMMANDS),
            format!(
                "# Replay the best reproducing run (same implementation, knobs, seed, workload, fault windows):\n{replay}\n\
                 # The same as a plain `dualcheck run` (for CI):\n{run}\n"
            ),
        )?;
        std::fs::write(
            d.join(SHRUNK_VERIFICATION),
            verification_snippet(&self.base, &self.best, &self.anomaly),
        )?;
        if let Some(best) = &self.best_run {
            let report = best.join(crate::run_dir::REPORT_HTML);
            if report.exists() {
                std::fs::copy(&report, d.join(SHRUNK_REPORT))?;
            }
        }
        std::fs::write(d.join(SHRUNK_SUMMARY), serde_json::to_string_pretty(&self.outcome())?)?;
        Ok(())
    }
}

/// The faults `cand`'s windows use, in the catalogue's order.
fn used_faults(cand: &Candidate) -> Vec<Fault> {
    let mut faults: Vec<Fault> = cand.windows.iter().map(|w| w.fault).collect();
    faults.sort();
    faults.dedup();
    faults
}

/// The `dualcheck run` line running `cand` with `base`'s implementation and
/// options, the schedule and the schema in `files`: the candidate's own
/// configuration as the run record states it, so the line is the run the
/// shrink made.
pub fn run_command(base: &RunConfig, cand: &Candidate, files: ReproFiles<'_>) -> String {
    cand.config(base).record().run_line(files)
}

/// A Rust regression test running `cand` through the library's
/// [`crate::verification::Verification`] builder, from the candidate's
/// recorded configuration (as [`run_command`] is).
pub fn verification_snippet(base: &RunConfig, cand: &Candidate, anomaly: &str) -> String {
    let rec = cand.config(base).record();
    let mut lines = vec![
        format!("// A regression test from `dualcheck shrink`: the smallest run found showing `{anomaly}`."),
        "use dualcheck::nemesis::Fault;".into(),
        "use dualcheck::verification::Verification;".into(),
        "use std::time::Duration;".into(),
        String::new(),
        "#[tokio::test]".into(),
        format!(
            "async fn shrunk_{}_stays_fixed() -> anyhow::Result<()> {{",
            anomaly.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        ),
    ];
    // Custom faults are defined before the schedule naming them is read.
    for c in &rec.fault_cmds {
        lines.push(format!(
            "    dualcheck::nemesis::custom::define(&[{:?}.parse().map_err(anyhow::Error::msg)?])?;",
            c.to_string()
        ));
    }
    let schedule = serde_json::to_string(&schedule_of(&cand.windows)).unwrap_or_default();
    lines.push(format!("    let schedule = serde_json::from_str({schedule:?})?;"));
    let mut calls = builder_calls(&rec).into_iter();
    lines.push(format!("    let outcome = {}", calls.next().unwrap_or_default()));
    lines.extend(calls.map(|c| format!("        {c}")));
    lines.extend([
        "        .run()".to_string(),
        "        .await?;".into(),
        format!("    // Once fixed, the run is valid; until then this fails showing `{anomaly}`."),
        "    outcome.assert_valid();".into(),
        "    Ok(())".into(),
        "}".into(),
        String::new(),
    ]);
    lines.join("\n")
}

/// The calls of the `Verification` builder that configure `rec`, first the
/// constructor.
fn builder_calls(rec: &RecordedConfig) -> Vec<String> {
    let mut calls = vec![match &rec.app {
        RecordedApp::Builtin(n) => format!("Verification::builtin({n:?})"),
        RecordedApp::Exec(c) => format!("Verification::exec({c:?})"),
    }];
    let builtin_sql = match &rec.app {
        RecordedApp::Builtin(n) => implementations::lookup(n).ok().map(|i| i.committed_sql),
        RecordedApp::Exec(_) => None,
    };
    if builtin_sql != Some(rec.committed_sql.as_str()) {
        calls.push(format!(".committed_sql({:?})", rec.committed_sql));
    }
    if let Some(sql) = &rec.schema_sql_text {
        calls.push(format!(".schema_sql({sql:?})"));
    }
    let faults: Vec<String> = rec
        .faults
        .iter()
        .map(|n| match Fault::from_name(n) {
            Ok(Fault::Custom(_)) | Err(_) => format!("Fault::from_name({n:?})?"),
            Ok(f) => format!("Fault::{f:?}"),
        })
        .collect();
    calls.push(format!(".faults([{}])", faults.join(", ")));
    calls.push(".schedule(schedule)".into());
    calls.push(format!(
        ".duration(Duration::from_millis({}))",
        (rec.duration_s * 1000.0).round() as u64
    ));
    // The whole workload: seed, rate, workers, keys, fractions.
    calls.push(format!(
        ".workload(serde_json::from_str({:?})?)",
        serde_json::to_string(&rec.workload).unwrap_or_default()
    ));
    calls.push(format!(".brokers({})", rec.brokers));
    calls.push(format!(".partitions({})", rec.partitions));
    for (k, v) in &rec.app_env {
        calls.push(format!(".env({k:?}, {v:?})"));
    }
    for (name, secs) in [
        ("op_timeout", rec.op_timeout_s),
        ("start_timeout", rec.start_timeout_s),
        ("drain_timeout", rec.drain_timeout_s),
    ] {
        calls.push(format!(
            ".{name}(Duration::from_millis({}))",
            (secs * 1000.0).round() as u64
        ));
    }
    if let Some(t) = &rec.template_options {
        calls.push(format!(
            ".template(dualcheck::template::ResolveTemplate::resolve(&serde_json::from_str::<dualcheck::record::TemplateOptions>({:?})?)?)",
            serde_json::to_string(t).unwrap_or_default()
        ));
    }
    if rec.reads {
        calls.push(".reads(true)".into());
    }
    if rec.exactly_once {
        calls.push(".exactly_once(true)".into());
    }
    calls
}

/// Shrinks the invalid run in `opts.run_dir`; see the module documentation.
pub async fn shrink(opts: &ShrinkOptions) -> Result<ShrinkEnd> {
    let started = Instant::now();
    if opts.tries == 0 || opts.min_repro == 0 || opts.min_repro > opts.tries {
        anyhow::bail!("--min-repro must be between 1 and --tries");
    }
    let results_path = opts.run_dir.join(crate::run_dir::RESULTS);
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&results_path).with_context(|| format!("reading {}", results_path.display()))?,
    )
    .with_context(|| format!("parsing {}", results_path.display()))?;
    let violations: Vec<String> = results
        .get("violations")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .with_context(|| format!("{} lacks `violations`", results_path.display()))?;
    let anomaly = match &opts.anomaly {
        Some(a) if violations.contains(a) => a.clone(),
        Some(a) => {
            return Ok(ShrinkEnd::NothingToShrink {
                reason: format!("the run did not show `{a}` (it showed {violations:?})"),
            })
        }
        None => match violations.first() {
            Some(a) => a.clone(),
            None => {
                return Ok(ShrinkEnd::NothingToShrink {
                    reason: "the run is valid (no violation): nothing to shrink".into(),
                })
            }
        },
    };
    let dir = opts.run_dir.join(SHRUNK_DIR);
    if dir.exists() {
        let old = opts
            .run_dir
            .join(format!("{SHRUNK_DIR}-{}", crate::run_dir::unix_secs()));
        std::fs::rename(&dir, &old).with_context(|| format!("moving the previous {} aside", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join(SHRUNK_RUNS))?;
    let mut base = crate::replay::config_from_run_dir(&opts.run_dir, &dir.join(SHRUNK_RUNS))?;
    if let Some(backend) = &opts.backend {
        backend.check_usable(&base.faults)?;
        base.backend = backend.clone();
    }
    let original = Candidate {
        windows: windows(base.schedule.as_ref().expect("a replay has a schedule"), base.duration),
        duration: base.duration,
        workload: base.workload.clone(),
    };
    let mut campaign = Campaign::new(base.backend.clone(), &dir);
    campaign.services(crate::runner::brokers_needed(&base)).await?;
    let mut s = Shrinker {
        base,
        campaign,
        opts: opts.clone(),
        anomaly: anomaly.clone(),
        dir,
        started,
        candidates: 0,
        runs: 0,
        best: original.clone(),
        best_run: None,
        original: original.clone(),
        budget_exhausted: false,
    };
    let result = async {
        let reproduced = s.attempt("original", &original).await?;
        if !reproduced {
            return Ok(None);
        }
        s.minimise().await?;
        Ok::<_, anyhow::Error>(Some(s.outcome()))
    }
    .await;
    if let Ok(Some(_)) = &result {
        s.write_outputs()?;
    }
    let log = std::fs::read_to_string(s.dir.join(SHRUNK_LOG)).unwrap_or_default();
    let Shrinker { campaign, .. } = s;
    campaign.finish().await;
    match result? {
        Some(o) => Ok(ShrinkEnd::Shrunk(Box::new(o))),
        None => {
            let first: serde_json::Value = log
                .lines()
                .next()
                .and_then(|l| serde_json::from_str(l).ok())
                .unwrap_or_default();
            Ok(ShrinkEnd::NotReproduced {
                anomaly,
                reproduced: first.get("reproduced").and_then(|v| v.as_u64()).unwrap_or(0) as u32,
                tries: first.get("tries").and_then(|v| v.as_u64()).unwrap_or(0) as u32,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app_process::AppCommand;
    use std::path::Path;

    fn w(fault: Fault, a: u64, b: u64) -> Window {
        Window {
            fault,
            start: Duration::from_secs(a),
            stop: Duration::from_secs(b),
        }
    }

    #[test]
    fn windows_and_schedules_go_both_ways() {
        let ws = vec![
            w(Fault::KafkaPartition, 1, 6),
            w(Fault::RelayKill, 2, 3),
            w(Fault::KafkaPartition, 8, 9),
        ];
        let s = schedule_of(&ws);
        assert_eq!(s.steps.len(), 6);
        assert!(s.steps.windows(2).all(|p| p[0].at <= p[1].at));
        assert_eq!(windows(&s, Duration::from_secs(10)), ws);
        // A start never stopped lasts until the end.
        let open = Schedule {
            steps: vec![s.steps[0].clone()],
        };
        assert_eq!(
            windows(&open, Duration::from_secs(10)),
            vec![w(Fault::KafkaPartition, 1, 10)]
        );
    }

    #[test]
    fn delta_debugging_tries_chunks_then_complements() {
        assert_eq!(ddmin_candidates(4, 2), vec![vec![0, 1], vec![2, 3]]);
        assert_eq!(
            ddmin_candidates(4, 4),
            vec![
                vec![0],
                vec![1],
                vec![2],
                vec![3],
                vec![1, 2, 3],
                vec![0, 2, 3],
                vec![0, 1, 3],
                vec![0, 1, 2]
            ]
        );
        assert_eq!(ddmin_candidates(2, 2), vec![vec![0], vec![1]]);
        assert!(ddmin_candidates(1, 2).is_empty());
    }

    #[test]
    fn the_run_line_and_the_snippet_carry_the_candidate() {
        let naive_sql = implementations::lookup("naive").unwrap().committed_sql;
        let mut base = RunConfig::new(AppCommand::Builtin("naive".into()), naive_sql);
        base.faults = vec![Fault::KafkaPartition, Fault::CrashAfterCommit];
        base.app_vars = vec![("DUALCHECK_RELAYS".into(), "2".into())];
        let cand = Candidate {
            windows: vec![w(Fault::KafkaPartition, 1, 3)],
            duration: Duration::from_secs(4),
            workload: Workload {
                keys: 4,
                ..Workload::default()
            },
        };
        let line = run_command(
            &base,
            &cand,
            ReproFiles {
                schedule: Path::new("/r/shrunk/schedule.json"),
                schema: None,
            },
        );
        assert!(
            line.starts_with(
                // The faults the windows use (the brokers stay those of the run).
                "dualcheck run --impl naive --committed-sql "
            ),
            "{line}"
        );
        assert!(
            line.contains("--keys 4")
                && line.contains("--app-env DUALCHECK_RELAYS=2")
                && line.contains(" --faults kafka-partition --duration 4000ms "),
            "{line}"
        );
        assert!(line.ends_with("--schedule /r/shrunk/schedule.json"), "{line}");
        assert!(!line.contains("--backend"), "local is the default: {line}");
        assert!(
            line.contains(&format!("--committed-sql {}", quote(naive_sql))),
            "{line}"
        );
        let mut own_sql = base.clone();
        own_sql.committed_sql = "SELECT 1".into();
        let line = run_command(
            &own_sql,
            &cand,
            ReproFiles {
                schedule: Path::new("/r/s.json"),
                schema: None,
            },
        );
        assert!(line.contains("--committed-sql 'SELECT 1'"), "{line}");
        // A run on the user's services names the backend, never its addresses.
        let mut external = base.clone();
        external.backend = crate::env::BackendKind::External(crate::env::external::ExternalConfig {
            postgres_url: "postgres://u:secret@db/admin".into(),
            kafka_bootstrap: "kafka:9092".into(),
            toxiproxy_url: None,
        });
        let line = run_command(
            &external,
            &cand,
            ReproFiles {
                schedule: Path::new("/r/s.json"),
                schema: None,
            },
        );
        assert!(
            line.contains(" --backend external ") && !line.contains("secret") && !line.contains("kafka:9092"),
            "{line}"
        );
        let rust = verification_snippet(&base, &cand, "lost");
        assert!(rust.contains("Verification::builtin(\"naive\")"), "{rust}");
        assert!(
            rust.contains(".schedule(schedule)") && rust.contains(r#"\"keys\":4"#),
            "{rust}"
        );
        assert!(rust.contains("[Fault::KafkaPartition]"), "{rust}");
        assert_eq!(shlex::split(&quote("it's")).unwrap(), ["it's"]);
    }
    #[test]
    fn a_shrunk_custom_fault_keeps_its_commands() {
        crate::nemesis::custom::define(&["unit-shrink=kill -STOP 9,kill -CONT 9".parse().unwrap()]).unwrap();
        let custom = Fault::from_name("unit-shrink").unwrap();
        let mut base = RunConfig::new(AppCommand::Builtin("naive".into()), "SELECT 1");
        base.faults = vec![Fault::KafkaPartition, custom];
        let cand = Candidate {
            windows: vec![w(custom, 1, 3)],
            duration: Duration::from_secs(4),
            workload: Workload::default(),
        };
        let line = run_command(
            &base,
            &cand,
            ReproFiles {
                schedule: Path::new("/r/s.json"),
                schema: None,
            },
        );
        assert!(
            line.contains("--faults unit-shrink ")
                && line.contains("--fault-cmd 'unit-shrink=kill -STOP 9,kill -CONT 9'"),
            "{line}"
        );
        let rust = verification_snippet(&base, &cand, "lost");
        assert!(
            rust.contains("custom::define(") && rust.contains("Fault::from_name(\"unit-shrink\")?"),
            "{rust}"
        );
    }
}
