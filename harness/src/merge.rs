//! `dualcheck merge`: one matrix from several sweeps (the shards of one sweep
//! run on several machines, or sweeps of different cells) and from bare run
//! directories. Each sweep's directory records its cells and runs
//! (`sweep.json`, [`crate::sweep::SweepRecord`]); each run its
//! `results.json`. Cells with the same label and fault list are one row, its
//! runs judged against the same expectation as the sweep judged them.

use crate::runner::RunOutcome;
use crate::sweep::{expectation, Row, SweepRecord};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The records found under the paths given: sweep directories (holding a
/// `sweep.json`, `compare.json` or `zoo.json`), run directories (holding a
/// `results.json`), or directories holding either.
#[derive(Debug, Default)]
pub struct Found {
    /// Each sweep's record, with its directory.
    pub sweeps: Vec<(PathBuf, SweepRecord)>,
    /// Run directories that belong to no sweep found.
    pub runs: Vec<PathBuf>,
}

const RECORDS: [&str; 3] = ["sweep.json", "compare.json", "zoo.json"];

fn sweep_record(dir: &Path) -> Result<Option<SweepRecord>> {
    for name in RECORDS {
        let path = dir.join(name);
        if path.is_file() {
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let record = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a sweep's record (written by another version?)",
                    path.display()
                )
            })?;
            return Ok(Some(record));
        }
    }
    Ok(None)
}

/// Finds the sweeps and runs under `paths` (one level of nesting: a CI
/// artifact directory holding sweep directories).
pub fn find(paths: &[PathBuf]) -> Result<Found> {
    let mut found = Found::default();
    for path in paths {
        if !path.is_dir() {
            bail!("{}: not a directory (give sweep or run directories)", path.display());
        }
        let mut candidates = vec![path.clone()];
        if sweep_record(path)?.is_none() && !path.join(crate::run_dir::RESULTS).is_file() {
            let mut children: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect();
            children.sort();
            candidates = children;
        }
        for dir in candidates {
            if let Some(record) = sweep_record(&dir)? {
                found.sweeps.push((dir, record));
            } else if dir.join(crate::run_dir::RESULTS).is_file() {
                found.runs.push(dir);
            }
        }
    }
    if found.sweeps.is_empty() && found.runs.is_empty() {
        bail!(
            "no sweep or run found under {}: give directories made by `dualcheck sweep` (holding sweep.json) or `dualcheck run`",
            paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    Ok(found)
}

fn read_outcome(run_dir: &Path) -> Result<RunOutcome, String> {
    let path = run_dir.join(crate::run_dir::RESULTS);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut outcome: RunOutcome =
        serde_json::from_str(&text).map_err(|e| format!("{}: not a run's results ({e})", path.display()))?;
    // Where it is now (a moved artifact), for the page's links.
    outcome.run_dir = run_dir.to_path_buf();
    Ok(outcome)
}

/// How many instances the run in `run_dir` had (`config.replicas` of its
/// `environment.json`; 1 when it does not say).
fn recorded_replicas(run_dir: &Path) -> usize {
    record::config::EnvironmentRecord::read(&run_dir.join(crate::run_dir::ENVIRONMENT))
        .ok()
        .and_then(|r| r.config)
        .map_or(1, |c| c.replicas.max(1))
}

/// One run to merge: its cell (label, fault list), the cell's implementation
/// and knobs, its seed, its outcome and its overhead.
struct Entry {
    label: String,
    faults: String,
    implementation: String,
    app_vars: Vec<(String, String)>,
    seed: u64,
    outcome: Result<RunOutcome, String>,
    overhead_s: Option<f64>,
}

fn entries(found: &Found) -> Vec<Entry> {
    let mut all = Vec::new();
    for (sweep_dir, record) in &found.sweeps {
        for run in &record.runs {
            let Some(c) = record.cells.get(run.cell) else { continue };
            let outcome = match (&run.run_dir, &run.error) {
                (Some(dir), _) => read_outcome(&sweep_dir.join(dir)),
                (None, Some(e)) => Err(e.clone()),
                (None, None) => Err("no run directory recorded".into()),
            };
            all.push(Entry {
                label: c.label.clone(),
                faults: c.faults.clone(),
                implementation: c.implementation.clone(),
                app_vars: c.app_vars.clone(),
                seed: run.seed,
                outcome,
                overhead_s: run.overhead_s,
            });
        }
    }
    for dir in &found.runs {
        match read_outcome(dir) {
            Ok(o) => all.push(Entry {
                label: o.implementation.clone(),
                faults: if o.faults.is_empty() {
                    "none".to_string()
                } else {
                    o.faults.join(",")
                },
                implementation: o.implementation.clone(),
                app_vars: Vec::new(),
                seed: o.seed,
                outcome: Ok(o),
                overhead_s: None,
            }),
            Err(e) => tracing::warn!("merge: skipping {}: {e}", dir.display()),
        }
    }
    all
}

/// The merged matrix: one row per (label, fault list), in the order first met,
/// each run judged against the expectation its sweep judged it by. A seed met
/// twice in one cell (the same run given twice) counts once.
pub fn merge(found: &Found) -> Vec<Row> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut cells: BTreeMap<(String, String), Vec<Entry>> = BTreeMap::new();
    for e in entries(found) {
        let key = (e.label.clone(), e.faults.clone());
        let cell = cells.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            Vec::new()
        });
        if !cell.iter().any(|c| c.seed == e.seed) {
            cell.push(e);
        }
    }
    order
        .into_iter()
        .map(|key| {
            let mut cell = cells.remove(&key).expect("every ordered key has a cell");
            cell.sort_by_key(|e| e.seed);
            let faults = crate::nemesis::Fault::parse_list(&key.1).unwrap_or_default();
            let replicas = cell
                .iter()
                .find_map(|e| e.outcome.as_ref().ok())
                .map(|o| recorded_replicas(&o.run_dir))
                .unwrap_or(1);
            let expect = expectation(&cell[0].implementation, &cell[0].app_vars, &faults, replicas);
            let overheads: Vec<f64> = cell
                .iter()
                .filter(|e| e.outcome.is_ok())
                .filter_map(|e| e.overhead_s)
                .collect();
            let runs: Vec<(u64, Result<RunOutcome, String>)> = cell.into_iter().map(|e| (e.seed, e.outcome)).collect();
            let mut row = Row::of_cell(&key.0, &key.1, expect, &runs);
            if !overheads.is_empty() {
                row.overhead_s = Some(overheads.iter().sum::<f64>() / overheads.len() as f64);
            }
            row
        })
        .collect()
}
