//! The bug zoo: every mutant a pattern declares (a knob that turns it into
//! code with a bug real systems shipped, [`implementations::expect::Control`])
//! and every pattern that is itself a negative control (its expectation is an
//! anomaly), each run under the faults it names, beside the unmutated pattern
//! under the same seeds and faults. One sweep on services started once; each
//! row says how often the bug was caught, what it showed, how soon, and
//! whether the correct pattern stayed valid.

use crate::render::Table;
use crate::sweep::{sweep, Row, Subject, SweepOutcome, SweepPlan};
use anyhow::Result;
use checkers::Anomaly;
use implementations::expect::{Expect, Expectation, When};
use implementations::PatternInfo;
use serde::Serialize;
use std::fmt::Write as _;

/// One resident of the zoo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutant {
    /// Its name: the mutant's (`delete-before-ack`) or, for a pattern that is
    /// a negative control as it is, the pattern's (`naive`).
    pub name: &'static str,
    /// The pattern it is a mutant of (or is).
    pub pattern: &'static str,
    /// What runs: the pattern with the mutant's knob set.
    pub subject: Subject,
    /// The faults it runs under (as `--faults` takes them).
    pub faults: String,
    /// The correct pattern run beside it under the same faults and seeds;
    /// `None` for a pattern that is a control as it is.
    pub baseline: Option<Subject>,
}

/// Every mutant of every built-in pattern, then every pattern that is a
/// negative control as it is, in registry order.
pub fn all() -> Vec<Mutant> {
    let mut zoo: Vec<Mutant> = implementations::expect::all_controls()
        .map(|(info, c)| {
            // A bug that shows only as duplicates with one event id is checked
            // exactly-once, its correct pattern beside it too.
            // A bug that lives only in ops of several events runs with them,
            // its correct pattern beside it too.
            let checked = |s: Subject| {
                let s = s.with_workload(c.workload);
                if c.exactly_once {
                    s.exactly_once()
                } else {
                    s
                }
            };
            Mutant {
                name: c.name,
                pattern: info.name,
                subject: checked(subject(&format!("{}+{}={}", info.name, c.knob, c.value))),
                faults: c.faults.to_string(),
                baseline: Some(checked(subject(info.name))),
            }
        })
        .collect();
    zoo.extend(
        implementations::REGISTRY
            .iter()
            .filter_map(|info| control_faults(info).map(|faults| (info, faults)))
            .map(|(info, faults)| Mutant {
                name: info.name,
                pattern: info.name,
                subject: subject(info.name),
                faults,
                baseline: None,
            }),
    );
    zoo
}

fn subject(label: &str) -> Subject {
    label.parse().expect("built-in names and knobs parse as a subject")
}

/// The faults under which a pattern that is a negative control as it is shows
/// its anomaly: those its first rule expecting an anomaly names (`none` when
/// that rule applies always); `None` for a pattern expected to be valid.
fn control_faults(info: &PatternInfo) -> Option<String> {
    let rule: &Expectation = info.expect.iter().find(|r| matches!(r.expect, Expect::Shows(_)))?;
    Some(match rule.when {
        When::Always => "none".to_string(),
        When::AnyFault(faults) | When::AllFaults(faults) => faults.join(","),
        When::Replicated => "none".to_string(),
    })
}

/// The residents named in `names` (all when empty). A name is a mutant's
/// (every pattern that has it), `PATTERN/MUTANT` (that pattern's only), or a
/// pattern that is a control as it is. An unknown name, or a mutant asked of
/// a pattern that does not have it, is an error naming what exists.
pub fn select(names: &[String]) -> Result<Vec<Mutant>, String> {
    let zoo = all();
    if names.is_empty() {
        return Ok(zoo);
    }
    let mut chosen: Vec<Mutant> = Vec::new();
    for name in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let matched: Vec<&Mutant> = match name.split_once('/') {
            Some((pattern, mutant)) => zoo
                .iter()
                .filter(|m| m.pattern == pattern && m.name == mutant)
                .collect(),
            None => zoo.iter().filter(|m| m.name == name).collect(),
        };
        if matched.is_empty() {
            return Err(unknown(name, &zoo));
        }
        for m in matched {
            if !chosen.contains(m) {
                chosen.push(m.clone());
            }
        }
    }
    Ok(chosen)
}

/// The error for a name no resident has: what exists, each as `PATTERN/MUTANT`.
fn unknown(name: &str, zoo: &[Mutant]) -> String {
    let listed: Vec<String> = zoo
        .iter()
        .map(|m| {
            if m.baseline.is_some() {
                format!("{}/{}", m.pattern, m.name)
            } else {
                m.name.to_string()
            }
        })
        .collect();
    let hint = match name.split_once('/') {
        Some((pattern, mutant)) if zoo.iter().any(|m| m.name == mutant) => {
            let owners: Vec<&str> = zoo.iter().filter(|m| m.name == mutant).map(|m| m.pattern).collect();
            format!(
                " ({pattern} has no mutant {mutant}; it belongs to {})",
                owners.join(", ")
            )
        }
        _ => String::new(),
    };
    format!(
        "--mutants: no mutant `{name}`{hint}; the zoo has: {} (see `dualcheck list`)",
        listed.join(", ")
    )
}

/// One row of the zoo's table.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ZooRow {
    /// The mutant's name.
    pub mutant: String,
    /// The pattern it belongs to.
    pub pattern: String,
    /// What ran (the pattern with the knob).
    pub implementation: String,
    /// The faults it ran under.
    pub faults: String,
    /// What it must show.
    pub expected: String,
    /// Runs that showed it.
    pub caught: u64,
    /// Runs carried out.
    pub runs: u64,
    /// Seeds whose run did not show it.
    pub missed_seeds: Vec<u64>,
    /// Every kind of violation its runs showed.
    pub anomalies: Vec<Anomaly>,
    /// Median time from a run's start to the earliest event of its first violation, seconds.
    pub first_anomaly_s: Option<f64>,
    /// Runs that could not be carried out, with why.
    pub errors: Vec<(u64, String)>,
    /// The correct pattern under the same faults and seeds (`None`: the
    /// pattern is a control as it is).
    pub baseline: Option<Baseline>,
}

/// The correct pattern's runs beside a mutant.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Baseline {
    /// The pattern.
    pub implementation: String,
    /// Runs that were valid.
    pub valid: u64,
    /// Runs carried out.
    pub runs: u64,
    /// Seeds whose run was not valid, with what it showed.
    pub invalid: Vec<(u64, Vec<Anomaly>)>,
    /// Runs that could not be carried out.
    pub errors: usize,
}

impl ZooRow {
    /// Whether some run of the mutant or of its baseline could not be carried out.
    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty() || self.baseline.as_ref().is_some_and(|b| b.errors > 0)
    }

    /// Whether every run was carried out, showed the bug, and the baseline stayed valid in every run.
    pub fn all_as_expected(&self) -> bool {
        self.errors.is_empty()
            && self.missed_seeds.is_empty()
            && self
                .baseline
                .as_ref()
                .is_none_or(|b| b.errors == 0 && b.invalid.is_empty())
    }
}

/// What `dualcheck zoo` produced.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ZooOutcome {
    /// One row per mutant.
    pub rows: Vec<ZooRow>,
    /// The sweep underneath (every cell, the HTML page linking every report).
    pub sweep: SweepOutcome,
}

impl ZooOutcome {
    /// Whether some run could not be carried out.
    pub fn has_errors(&self) -> bool {
        self.rows.iter().any(ZooRow::has_errors)
    }

    /// Whether every mutant was caught in every run and every baseline stayed valid.
    pub fn all_as_expected(&self) -> bool {
        self.rows.iter().all(ZooRow::all_as_expected)
    }
}

/// The cells of a sweep running `mutants` and, once per pattern and fault
/// list, their baselines.
pub fn cells(mutants: &[Mutant]) -> Vec<(Subject, String)> {
    let mut cells: Vec<(Subject, String)> = Vec::new();
    for m in mutants {
        let mut add = |s: &Subject| {
            if !cells.iter().any(|(c, f)| c == s && *f == m.faults) {
                cells.push((s.clone(), m.faults.clone()));
            }
        };
        add(&m.subject);
        if let Some(b) = &m.baseline {
            add(b);
        }
    }
    cells
}

/// Runs `mutants` and their baselines as one sweep (`plan.cells` is replaced).
pub async fn zoo(mutants: &[Mutant], mut plan: SweepPlan) -> Result<ZooOutcome> {
    plan.cells = cells(mutants);
    let outcome = sweep(&plan).await?;
    let rows = rows(mutants, &outcome.rows);
    Ok(ZooOutcome { rows, sweep: outcome })
}

/// The zoo's rows from the sweep's.
pub fn rows(mutants: &[Mutant], sweep_rows: &[Row]) -> Vec<ZooRow> {
    let find = |s: &Subject, faults: &str| {
        sweep_rows
            .iter()
            .find(|r| r.implementation == s.label && r.faults == faults)
    };
    mutants
        .iter()
        .filter_map(|m| {
            let r = find(&m.subject, &m.faults)?;
            Some(ZooRow {
                mutant: m.name.to_string(),
                pattern: m.pattern.to_string(),
                implementation: m.subject.label.clone(),
                faults: m.faults.clone(),
                expected: r.expected.clone(),
                caught: r.as_expected,
                runs: r.runs,
                missed_seeds: r.not_as_expected.iter().map(|u| u.seed).collect(),
                anomalies: r.violation_kinds.clone(),
                first_anomaly_s: r.first_violation_s,
                errors: r.errors.clone(),
                // A baseline with no run (a shard, or directories merged
                // without it) is a row of 0 runs, not "a control as it is".
                baseline: m.baseline.as_ref().map(|subject| match find(subject, &m.faults) {
                    Some(b) => Baseline {
                        implementation: b.implementation.clone(),
                        valid: b.runs - b.failed_seeds.len() as u64,
                        runs: b.runs,
                        invalid: b
                            .not_as_expected
                            .iter()
                            .map(|u| (u.seed, u.anomalies.clone()))
                            .collect(),
                        errors: b.errors.len(),
                    },
                    None => Baseline {
                        implementation: subject.label.clone(),
                        valid: 0,
                        runs: 0,
                        invalid: Vec::new(),
                        errors: 0,
                    },
                }),
            })
        })
        .collect()
}

/// The columns of the zoo's table.
const HEADERS: [&str; 8] = [
    "mutant",
    "pattern",
    "faults",
    "caught",
    "anomalies seen",
    "first anomaly (median s)",
    "not caught (seeds)",
    "correct pattern, same faults",
];

impl ZooRow {
    fn cells(&self) -> [String; 8] {
        let list = |v: &[u64]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.iter().map(u64::to_string).collect::<Vec<_>>().join(",")
            }
        };
        let kinds: Vec<&str> = self.anomalies.iter().map(|a| a.name()).collect();
        let baseline = match &self.baseline {
            None => "- (a control as it is)".to_string(),
            Some(b) if b.runs == 0 && b.errors == 0 => "not run".to_string(),
            Some(b) => {
                let mut s = format!("valid {} of {}", b.valid, b.runs);
                if !b.invalid.is_empty() {
                    let seeds: Vec<String> = b
                        .invalid
                        .iter()
                        .map(|(seed, a)| {
                            let names: Vec<&str> = a.iter().map(|a| a.name()).collect();
                            format!("{seed}:{}", names.join("+"))
                        })
                        .collect();
                    let _ = write!(s, " (INVALID {})", seeds.join(" "));
                }
                if b.errors > 0 {
                    let _ = write!(s, ", {} errors", b.errors);
                }
                s
            }
        };
        let mut caught = format!("{} of {}", self.caught, self.runs);
        if !self.errors.is_empty() {
            let _ = write!(caught, " ({} errors)", self.errors.len());
        }
        [
            self.mutant.clone(),
            self.pattern.clone(),
            self.faults.clone(),
            caught,
            if kinds.is_empty() { "-".into() } else { kinds.join(", ") },
            self.first_anomaly_s.map_or("-".into(), |t| format!("{t:.1}")),
            list(&self.missed_seeds),
            baseline,
        ]
    }
}

/// The zoo's table: one row per mutant, the columns of [`HEADERS`].
pub fn table(rows: &[ZooRow]) -> Table {
    let mut t = Table::left(HEADERS);
    for row in rows {
        t.push(row.cells());
    }
    t
}

/// The zoo's table as aligned text (columns as wide as their widest cell on screen).
pub fn text_table(rows: &[ZooRow]) -> String {
    table(rows).text()
}

/// The zoo's table as Markdown (a `|` in a cell escaped).
pub fn markdown_table(rows: &[ZooRow]) -> String {
    table(rows).markdown()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_resident_names_faults_that_parse_and_runs_a_known_pattern() {
        let zoo = all();
        assert!(zoo.len() >= 4, "{zoo:?}");
        for m in &zoo {
            crate::nemesis::Fault::parse_list(&m.faults).unwrap_or_else(|e| panic!("{}: {e}", m.name));
            implementations::lookup(&m.subject.implementation).unwrap();
            // A mutant's workload is a flag's text: it must be one the flag takes.
            if let Some(w) = m.subject.workload {
                let e = w.events_per_op.parse::<workloads::EventsPerOp>();
                assert!(e.is_ok(), "{}: --events-per-op {}: {e:?}", m.name, w.events_per_op);
                assert_eq!(m.baseline.as_ref().and_then(|b| b.workload), Some(w), "{}", m.name);
            }
            let info = implementations::lookup(m.pattern).unwrap();
            if m.baseline.is_some() {
                implementations::expect::check_bug(info, &m.subject.app_vars).unwrap();
                let expect = crate::sweep::expectation(
                    &m.subject.implementation,
                    &m.subject.app_vars,
                    &crate::nemesis::Fault::parse_list(&m.faults).unwrap(),
                    1,
                );
                assert!(
                    matches!(expect, Expect::Shows(_)),
                    "{}/{} must expect an anomaly under its own faults, not {expect}",
                    m.pattern,
                    m.name
                );
            }
        }
    }

    #[test]
    fn names_select_mutants_and_unknown_names_list_what_exists() {
        let all = all();
        let shared = all.iter().find(|m| all.iter().filter(|o| o.name == m.name).count() > 1);
        if let Some(m) = shared {
            let by_name = select(&[m.name.to_string()]).unwrap();
            assert!(
                by_name.len() > 1,
                "a mutant's name selects it on every pattern that has it"
            );
            let one = select(&[format!("{}/{}", m.pattern, m.name)]).unwrap();
            assert_eq!(one.len(), 1);
        }
        let err = select(&["no-such-bug".to_string()]).unwrap_err();
        assert!(err.contains("no-such-bug") && err.contains(all[0].name), "{err}");
        let m = all.iter().find(|m| m.baseline.is_some()).unwrap();
        let other = implementations::REGISTRY
            .iter()
            .find(|p| !all.iter().any(|o| o.pattern == p.name && o.name == m.name))
            .unwrap();
        let err = select(&[format!("{}/{}", other.name, m.name)]).unwrap_err();
        assert!(err.contains(&format!("it belongs to {}", m.pattern)), "{err}");
    }

    #[test]
    fn cells_run_each_baseline_once_per_fault_list() {
        let zoo = all();
        let cells = cells(&zoo);
        for (i, c) in cells.iter().enumerate() {
            assert!(!cells[..i].contains(c), "{c:?} twice");
        }
        for m in &zoo {
            assert!(cells.contains(&(m.subject.clone(), m.faults.clone())));
            if let Some(b) = &m.baseline {
                assert!(cells.contains(&(b.clone(), m.faults.clone())));
            }
        }
    }
}
