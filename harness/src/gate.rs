//! `dualcheck gate`: one command that gates an implementation in CI within a
//! wall-time budget. Its battery is planned from the bug zoo's measurements
//! ([`Evidence`], `harness/data/gate-evidence.json`, generated from
//! docs/zoo.md by `scripts/gate-evidence`): which fault lists (and
//! workloads) exposed which mutants, in how many runs, how soon. The
//! [`plan`] orders steps so that those expected to catch the most mutants
//! not yet covered per second of CI time come first, and repeats them with
//! new seeds; [`gate`] carries the steps out on services started once and
//! stops at the first run that is not valid, or when the next step would
//! not fit in the budget.

use crate::campaign::Campaign;
use crate::runner::RunOutcome;
use anyhow::{bail, Context, Result};
use checkers::{Anomaly, Verdict};
use dualcheck_run::run_options::RunOptions;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The zoo's measurements the battery is planned from (`scripts/gate-evidence`).
const EVIDENCE_JSON: &str = include_str!("../data/gate-evidence.json");

/// One measured row of the zoo: a mutant under one fault list (and workload).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvidenceRow {
    /// The mutant (or a negative control as it is).
    pub mutant: String,
    /// The pattern it breaks.
    pub pattern: String,
    /// Workload flags the zoo ran it with (empty: the default ops).
    pub workload: String,
    /// The fault list, as `--faults` takes it.
    pub faults: String,
    /// Runs that exposed it.
    pub caught: u32,
    /// Runs carried out.
    pub runs: u32,
    /// Median seconds from a run's start to its first anomaly (`None`: not measured).
    pub first_anomaly_s: Option<f64>,
}

/// The zoo's measurements as the gate reads them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evidence {
    /// The document they were taken from.
    pub source: String,
    /// One row per mutant and fault list.
    pub entries: Vec<EvidenceRow>,
}

impl Evidence {
    /// The measurements built into this binary.
    pub fn builtin() -> Evidence {
        serde_json::from_str(EVIDENCE_JSON).expect("harness/data/gate-evidence.json is the script's JSON")
    }
}

/// Work and waiting around a run's workload (start, drain, check), seconds (a
/// sweep's 20 s runs took 21-22 s each here, December 2026):
/// the first estimate of a step's cost, replaced by what the gate's runs took.
pub const RUN_OVERHEAD_S: f64 = 5.0;

/// Extra seconds for a step that needs another set of services (three brokers).
pub const SERVICES_SWITCH_S: f64 = 30.0;

/// The expected number of mutants still uncaught below which the plan stops
/// choosing and repeats its battery with new seeds.
const RESIDUAL: f64 = 0.2;

/// Shortest and longest workload of a step.
const STEP_MIN_S: f64 = 10.0;
const STEP_MAX_S: f64 = 30.0;

/// One step of a gate's battery: a run under these faults and workload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Step {
    /// The fault list, as `--faults` takes it.
    pub faults: String,
    /// Workload flags (`--events-per-op 2-8 --write single`; empty: the user's workload).
    pub workload: String,
    /// The run's workload duration, seconds.
    pub duration_s: f64,
    /// The mutants (`pattern/mutant`) this step exposed in the zoo.
    pub exposes: Vec<String>,
    /// The expected number of still-uncaught mutants it catches, per second
    /// of CI time, when it was chosen (the order's key).
    pub value_per_s: f64,
}

/// What the implementation can take, as far as the plan needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Abilities {
    /// Ops of several events (a built-in that supports them, or an `exec`
    /// program run with `--events-per-op`).
    pub multi_event: bool,
}

/// The battery for `budget`: steps in the order they run (each a fresh
/// seed), planned longer than the budget (the gate stops when the next step
/// no longer fits). `usable` says whether a fault list can run here (the
/// backend, libfaketime); steps it refuses are left out.
pub fn plan(evidence: &Evidence, abilities: Abilities, budget: Duration, usable: &dyn Fn(&str) -> bool) -> Vec<Step> {
    struct Candidate {
        faults: String,
        workload: String,
        duration_s: f64,
        cost_s: f64,
        /// (mutant index, catch probability)
        catches: Vec<(usize, f64)>,
    }
    let mut mutants: Vec<String> = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    for row in &evidence.entries {
        if row.runs == 0 || row.caught == 0 || (!row.workload.is_empty() && !abilities.multi_event) {
            continue;
        }
        if !usable(&row.faults) {
            continue;
        }
        let id = format!("{}/{}", row.pattern, row.mutant);
        let m = match mutants.iter().position(|x| *x == id) {
            Some(i) => i,
            None => {
                mutants.push(id);
                mutants.len() - 1
            }
        };
        let p = f64::from(row.caught) / f64::from(row.runs);
        // Long enough for twice the median time to the first anomaly.
        let wants = row
            .first_anomaly_s
            .map_or(20.0, |t| 2.0 * t)
            .clamp(STEP_MIN_S, STEP_MAX_S)
            .ceil();
        match candidates
            .iter_mut()
            .find(|c| c.faults == row.faults && c.workload == row.workload)
        {
            Some(c) => {
                c.catches.push((m, p));
                c.duration_s = c.duration_s.max(wants);
            }
            None => candidates.push(Candidate {
                faults: row.faults.clone(),
                workload: row.workload.clone(),
                duration_s: wants,
                cost_s: 0.0,
                catches: vec![(m, p)],
            }),
        }
    }
    for c in &mut candidates {
        let cluster = c.faults.split(',').any(|f| f.trim() == "kafka-leader");
        c.cost_s = c.duration_s + RUN_OVERHEAD_S + if cluster { SERVICES_SWITCH_S } else { 0.0 };
    }
    // Greedy: the step with the most expected new catches per second, the
    // chance that each mutant is still uncaught updated after each pick.
    let mut miss = vec![1.0f64; mutants.len()];
    let mut steps = Vec::new();
    // What each step of `steps` costs, as the horizon counts it.
    let mut costs = Vec::new();
    let horizon = budget.as_secs_f64() * 2.0 + 60.0;
    let mut planned_s = 0.0;
    while planned_s < horizon && !candidates.is_empty() && miss.iter().sum::<f64>() >= RESIDUAL {
        let value = |c: &Candidate, miss: &[f64]| c.catches.iter().map(|(m, p)| miss[*m] * p).sum::<f64>() / c.cost_s;
        let best = candidates
            .iter()
            .enumerate()
            .max_by(|(ia, a), (ib, b)| {
                value(a, &miss)
                    .total_cmp(&value(b, &miss))
                    // Ties: the cheaper, then the one listed first.
                    .then(b.cost_s.total_cmp(&a.cost_s))
                    .then(ib.cmp(ia))
            })
            .map(|(i, _)| i)
            .expect("candidates is not empty");
        let c = &candidates[best];
        let v = value(c, &miss);
        for (m, p) in &c.catches {
            miss[*m] *= 1.0 - p;
        }
        planned_s += c.cost_s;
        costs.push(c.cost_s);
        steps.push(Step {
            faults: c.faults.clone(),
            workload: c.workload.clone(),
            duration_s: c.duration_s,
            exposes: c.catches.iter().map(|(m, _)| mutants[*m].clone()).collect(),
            value_per_s: v,
        });
    }
    // Every mutant as good as covered: the battery again, new seeds, until the horizon.
    let battery = steps.len();
    let mut k = 0;
    while planned_s < horizon && battery > 0 {
        let mut again = steps[k % battery].clone();
        again.value_per_s = 0.0;
        planned_s += costs[k % battery];
        steps.push(again);
        k += 1;
    }
    steps
}

/// How the gate ended.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum GateEnd {
    /// Every run it had time for was valid.
    Passed,
    /// A run was not valid: the gate stopped there.
    Failed,
    /// A run's history was incomplete (no verdict): the gate stopped there.
    Unknown,
}

/// One run of the gate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateRun {
    /// The step it carried out.
    pub faults: String,
    /// Its workload flags (empty: the user's).
    pub workload: String,
    /// Its seed.
    pub seed: u64,
    /// Workload seconds.
    pub duration_s: f64,
    /// The run's verdict.
    pub verdict: Verdict,
    /// The violations it found.
    pub anomalies: Vec<Anomaly>,
    /// Wall seconds of the run.
    pub wall_s: f64,
    /// Whether the service's backlog reached 0 before the drain timed out
    /// (`false`: the run waited out the whole drain timeout, which the
    /// budget's plan does not foresee; a valid run that did not drain
    /// published every event, so what stayed above 0 is the backlog count).
    #[serde(default = "yes")]
    pub drained: bool,
    /// Its run directory.
    pub run_dir: PathBuf,
}

/// The default of [`GateRun::drained`] in a `gate.json` written before it existed.
fn yes() -> bool {
    true
}

/// What `dualcheck gate` produced (`gate.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateOutcome {
    /// How it ended.
    pub end: GateEnd,
    /// What was gated: the implementation, or `PATTERN/MUTANT`.
    pub implementation: String,
    /// The wall-time budget, seconds.
    pub budget_s: f64,
    /// Wall seconds spent, services included.
    pub wall_s: f64,
    /// The gate's directory.
    pub dir: PathBuf,
    /// The runs carried out, in order.
    pub runs: Vec<GateRun>,
    /// The battery as planned (the gate ran its first `runs.len()` steps).
    pub planned: Vec<Step>,
    /// Why it stopped.
    pub stopped: String,
    /// The command that replays the failing run (`dualcheck run --replay`).
    pub replay: Option<String>,
    /// The command that runs it again from scratch, schedule included.
    pub run_command: Option<String>,
    /// The mutants whose fault lists the runs covered (`pattern/mutant`).
    pub covered: Vec<String>,
}

/// What the gate needs besides its battery.
pub struct GateOptions {
    /// What is gated, as reports name it (the implementation, or `PATTERN/MUTANT`).
    pub label: String,
    /// The user's run options (faults, duration and seed are the steps').
    pub base: RunOptions,
    /// Wall time of the whole gate.
    pub budget: Duration,
    /// The first seed; step k runs with `first_seed + k`.
    pub first_seed: u64,
    /// The gate's directory (runs go under `runs/`).
    pub dir: PathBuf,
}

/// Applies a step's workload flags (`--events-per-op`, `--keys-per-op`,
/// `--write`) to `o`.
pub fn apply_workload(o: &mut RunOptions, flags: &str) -> Result<()> {
    let words: Vec<&str> = flags.split_whitespace().collect();
    for pair in words.chunks(2) {
        let [flag, value] = pair else {
            bail!("gate evidence: workload `{flags}` is not pairs of flag and value");
        };
        match *flag {
            "--events-per-op" => o.workload.events_per_op = value.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
            "--keys-per-op" => o.workload.keys_per_op = value.parse().context("--keys-per-op")?,
            "--write" => o.workload.write = value.parse().map_err(|e| anyhow::anyhow!("{e}"))?,
            other => bail!("gate evidence: workload flag {other} is not one the gate sets"),
        }
    }
    Ok(())
}

/// Carries out `steps` within the budget: stops at the first run that is
/// not valid, or when the next step's estimated cost no longer fits.
pub async fn gate(opts: &GateOptions, steps: &[Step]) -> Result<GateOutcome> {
    let started = Instant::now();
    std::fs::create_dir_all(&opts.dir).with_context(|| format!("creating {}", opts.dir.display()))?;
    let mut campaign = Campaign::new(opts.base.backend.clone(), &opts.dir);
    let result = carry_out(opts, steps, &mut campaign, started).await;
    campaign.finish().await;
    let (runs, end, stopped) = result?;
    let failing = runs.last().filter(|_| end != GateEnd::Passed);
    let (replay, run_command) = match failing {
        Some(r) => (
            Some(crate::record::quote_line(&[
                "dualcheck".into(),
                "run".into(),
                "--replay".into(),
                r.run_dir.display().to_string(),
            ])),
            reproduction(&r.run_dir, opts.base.schema.as_deref()),
        ),
        None => (None, None),
    };
    let mut covered: Vec<String> = steps
        .iter()
        .take(runs.len())
        .flat_map(|s| s.exposes.iter().cloned())
        .collect();
    covered.sort();
    covered.dedup();
    Ok(GateOutcome {
        end,
        implementation: opts.label.clone(),
        budget_s: opts.budget.as_secs_f64(),
        wall_s: started.elapsed().as_secs_f64(),
        dir: opts.dir.clone(),
        runs,
        planned: steps.to_vec(),
        stopped,
        replay,
        run_command,
        covered,
    })
}

/// What the gate expects the next step to take beyond its workload (start,
/// drain, check), seconds: the most any of its runs so far took. The budget
/// is a ceiling, and what a run takes beyond its workload varies with the
/// fault and the machine's load (a partition's backlog drains for longer
/// than a relay's crash). With the mean of the runs so far as the estimate,
/// 2 of 114 five-minute gates of correct patterns ran past their budget (by
/// 1 and 10 s, docs/gate.md); replayed on their records, this estimate keeps
/// all 114 within it, at the cost of about one run in 17.
fn expected_overhead(runs: &[GateRun]) -> f64 {
    runs.iter()
        .map(|r| (r.wall_s - r.duration_s).max(0.0))
        .reduce(f64::max)
        .unwrap_or(RUN_OVERHEAD_S)
}

/// The runs of the gate, how it ended and why it stopped.
async fn carry_out(
    opts: &GateOptions,
    steps: &[Step],
    campaign: &mut Campaign,
    started: Instant,
) -> Result<(Vec<GateRun>, GateEnd, String)> {
    let budget = opts.budget.as_secs_f64();
    let mut runs: Vec<GateRun> = Vec::new();
    let mut brokers = 0usize;
    for (k, step) in steps.iter().enumerate() {
        let seed = opts.first_seed + k as u64;
        let mut o = opts.base.clone();
        o.faults = step.faults.clone();
        o.duration = Duration::from_secs_f64(step.duration_s);
        o.workload.seed = seed;
        o.out = opts.dir.join("runs");
        apply_workload(&mut o, &step.workload)?;
        let cfg = o.to_config()?;
        let needs = crate::runner::brokers_needed(&cfg);
        let overhead = expected_overhead(&runs);
        let switch = if needs != brokers { SERVICES_SWITCH_S } else { 0.0 };
        let elapsed = started.elapsed().as_secs_f64();
        if !runs.is_empty() && elapsed + step.duration_s + overhead + switch > budget {
            let stopped = format!(
                "stopped before the next step ({}, {:.0} s), which would take about {:.0} s with {:.0} s of the budget left",
                step.faults,
                step.duration_s,
                step.duration_s + overhead + switch,
                (budget - elapsed).max(0.0)
            );
            return Ok((runs, GateEnd::Passed, stopped));
        }
        brokers = needs;
        eprintln!(
            "gate: step {} of at most {}: --faults {} --duration {:.0}s --seed {seed}{}",
            k + 1,
            steps.len(),
            step.faults,
            step.duration_s,
            workload_suffix(&step.workload)
        );
        let run_started = Instant::now();
        let outcome: RunOutcome = campaign.run(&cfg).await?;
        let run = GateRun {
            faults: step.faults.clone(),
            workload: step.workload.clone(),
            seed,
            duration_s: step.duration_s,
            verdict: outcome.result.verdict,
            anomalies: outcome.result.anomalies.violations(o.exactly_once),
            wall_s: run_started.elapsed().as_secs_f64(),
            drained: outcome.drained,
            run_dir: outcome.run_dir.clone(),
        };
        let verdict = run.verdict;
        runs.push(run);
        match verdict {
            Verdict::Valid => {}
            Verdict::Invalid => {
                let anomalies = runs.last().map(|r| names(&r.anomalies)).unwrap_or_default();
                return Ok((runs, GateEnd::Failed, format!("an invalid run: {anomalies}")));
            }
            Verdict::Unknown => {
                return Ok((runs, GateEnd::Unknown, "a run whose history is incomplete".into()));
            }
        }
    }
    Ok((runs, GateEnd::Passed, "every planned step ran".into()))
}

/// A step's workload flags as they follow its other flags (` --events-per-op 2-8`), or nothing.
pub fn workload_suffix(workload: &str) -> String {
    if workload.is_empty() {
        String::new()
    } else {
        format!(" {workload}")
    }
}

/// The anomalies' names, comma-separated.
pub fn names(anomalies: &[Anomaly]) -> String {
    anomalies.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
}

/// The full `dualcheck run` line of a run directory, its schedule included
/// (and the user's `--schema` file).
fn reproduction(run_dir: &Path, schema: Option<&Path>) -> Option<String> {
    let env = crate::record::EnvironmentRecord::read(&run_dir.join("environment.json")).ok()?;
    let schedule = run_dir.join("schedule.json");
    Some(env.config?.run_line(crate::record::ReproFiles {
        schedule: &schedule,
        schema,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(mutant: &str, faults: &str, caught: u32, first: Option<f64>) -> EvidenceRow {
        EvidenceRow {
            mutant: mutant.into(),
            pattern: "p".into(),
            workload: String::new(),
            faults: faults.into(),
            caught,
            runs: 20,
            first_anomaly_s: first,
        }
    }

    fn evidence(entries: Vec<EvidenceRow>) -> Evidence {
        Evidence {
            source: "test".into(),
            entries,
        }
    }

    const ALL: Abilities = Abilities { multi_event: true };

    #[test]
    fn the_step_catching_most_per_second_goes_first_and_covered_mutants_stop_counting() {
        let e = evidence(vec![
            row("a", "kafka-partition", 20, Some(3.0)),
            row("b", "kafka-partition", 20, Some(3.0)),
            row("c", "pg-partition", 20, Some(0.3)),
            row("d", "kafka-leader", 20, Some(10.0)),
        ]);
        let steps = plan(&e, ALL, Duration::from_secs(300), &|_| true);
        // Two mutants for one run of the same cost beats one.
        assert_eq!(steps[0].faults, "kafka-partition");
        assert_eq!(steps[1].faults, "pg-partition");
        // kafka-leader costs a second set of services and a longer run: last
        // of the three, and never before each mutant was tried once.
        assert_eq!(steps[2].faults, "kafka-leader");
        assert_eq!(steps[2].duration_s, 20.0);
        assert_eq!(steps[1].duration_s, STEP_MIN_S);
        // Then the battery again (a new seed each run).
        assert!(steps.len() > 3);
        assert_eq!(steps[3].faults, steps[0].faults);
        assert_eq!(steps[3].value_per_s, 0.0);
    }

    #[test]
    fn a_mutant_caught_only_sometimes_is_tried_again_before_a_sure_one_is_repeated() {
        let e = evidence(vec![
            row("a", "kafka-partition", 20, Some(3.0)),
            row("b", "relay-kill", 9, Some(3.0)),
        ]);
        let steps = plan(&e, ALL, Duration::from_secs(120), &|_| true);
        assert_eq!(steps[0].faults, "kafka-partition");
        assert_eq!(steps[1].faults, "relay-kill");
        // a is caught for sure after one run; b is 55 % uncaught: next again.
        assert_eq!(steps[2].faults, "relay-kill");
    }

    #[test]
    fn unusable_faults_and_unsupported_workloads_are_left_out() {
        let mut multi = row("m", "kafka-partition", 20, Some(5.0));
        multi.workload = "--events-per-op 2-8 --write single".into();
        let e = evidence(vec![
            multi,
            row("k", "pg-kill", 20, Some(1.0)),
            row("x", "none", 20, None),
        ]);
        let steps = plan(&e, Abilities { multi_event: false }, Duration::from_secs(60), &|f| {
            f != "pg-kill"
        });
        assert!(steps.iter().all(|s| s.faults == "none"), "{steps:?}");
        assert_eq!(
            steps[0].duration_s, 20.0,
            "no measured time to the anomaly: the zoo's 20 s"
        );
    }

    #[test]
    fn the_plan_outlasts_the_budget() {
        let e = evidence(vec![row("a", "kafka-partition", 20, Some(3.0))]);
        let steps = plan(&e, ALL, Duration::from_secs(300), &|_| true);
        let cost: f64 = steps.iter().map(|s| s.duration_s + RUN_OVERHEAD_S).sum();
        assert!(cost >= 300.0, "{cost}");
    }

    #[test]
    fn step_workloads_set_the_run_options() {
        let mut o = RunOptions::new("exec");
        apply_workload(&mut o, "--events-per-op 2-8 --keys-per-op 2 --write multi-row").unwrap();
        assert_eq!(o.workload.keys_per_op, 2);
        assert_eq!(o.workload.write, workloads::WriteShape::MultiRow);
        assert!(apply_workload(&mut o, "--rate 5").is_err());
        assert!(apply_workload(&mut o, "--write").is_err());
    }

    #[test]
    fn the_builtin_evidence_covers_every_zoo_mutant_row() {
        let e = Evidence::builtin();
        assert!(e.entries.len() >= 26, "{}", e.entries.len());
        assert!(e.entries.iter().all(|r| r.caught <= r.runs && !r.faults.is_empty()));
    }

    fn ran(faults: &str, duration_s: f64, wall_s: f64) -> GateRun {
        GateRun {
            faults: faults.into(),
            workload: String::new(),
            seed: 1,
            duration_s,
            verdict: Verdict::Valid,
            anomalies: Vec::new(),
            wall_s,
            drained: true,
            run_dir: PathBuf::new(),
        }
    }

    #[test]
    fn the_next_step_is_expected_to_cost_what_the_costliest_run_so_far_did() {
        assert_eq!(expected_overhead(&[]), RUN_OVERHEAD_S);
        // Three runs of the kept gate that ran 10 s past its budget
        // (docs/gate.md): its last step took 24 s beyond its workload,
        // against a mean of 11.0 s over the twelve runs before it; the most
        // of those was 20.4 s.
        let runs = [
            ran("pg-partition", 10.0, 26.3),
            ran("none", 10.0, 30.4),
            ran("kafka-partition", 19.0, 27.0),
        ];
        assert!((expected_overhead(&runs) - 20.4).abs() < 1e-9);
        assert_eq!(
            expected_overhead(&[ran("none", 10.0, 9.0)]),
            0.0,
            "a run shorter than its workload costs nothing more"
        );
    }
}
