//! `dualcheck gate`: gate an implementation in CI within a wall-time budget
//! (the battery and its planning are [`dualcheck::gate`]'s). Writes
//! `gate.json`, `summary.md` and `junit.xml` into the gate's directory,
//! appends the summary to `$GITHUB_STEP_SUMMARY` and prints `::error::`
//! annotations under GitHub Actions.

use super::run::RunShared;
use super::{parse_duration, Verdict};
use clap::Args;
use dualcheck::gate::{Abilities, Evidence, GateEnd, GateOptions, GateOutcome};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Arguments of `dualcheck gate`.
#[derive(Args, Debug, Clone)]
#[command(mut_args = hide_fault_cmd)]
pub struct GateArgs {
    /// Implementation (see `dualcheck list`), or `exec`: your own program, given with --cmd and
    /// --committed-sql (and, for a service as it is, the service template flags).
    #[arg(long = "impl", value_name = "NAME", required_unless_present = "mutant")]
    pub implementation: Option<String>,
    /// Gate one of the bug zoo's mutants (`PATTERN/MUTANT`, or a pattern that
    /// is a negative control as it is) in place of an implementation: its
    /// pattern with the mutant's knob, checked as the zoo checks it. How
    /// docs/gate.md measures what the gate catches.
    #[arg(long, value_name = "PATTERN/MUTANT", conflicts_with = "implementation")]
    pub mutant: Option<String>,
    /// Wall time of the whole gate, services included, e.g. `5m`, `90s`.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub budget: Duration,
    /// Seed of the first run; each later run takes the next.
    #[arg(long, default_value_t = 1)]
    pub first_seed: u64,
    /// Where the gate's directory (its runs, gate.json, summary.md, junit.xml) goes.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Only the zoo's fault lists made of these faults and families (as
    /// `--faults` of `run` takes them), e.g. `network` for a quick gate of a
    /// pull request, or the faults your service can take. Default: all.
    #[arg(long, value_name = "LIST")]
    pub faults: Option<String>,
    /// Print the battery this budget plans, and run nothing.
    #[arg(long)]
    pub plan: bool,
    /// Do not shrink a failing run, even when the budget leaves time for it.
    #[arg(long)]
    pub no_shrink: bool,
    /// Print the outcome as one JSON object (gate.json) instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// What reports call the gated service: the summary's heading, gate.json's
    /// `implementation` and junit.xml's suite (`dualcheck.gate.NAME`), so that
    /// several services gated in one CI keep apart. Default: the implementation
    /// (`exec` for a program) or the mutant.
    #[arg(long, value_name = "NAME", value_parser = parse_name)]
    pub name: Option<String>,
    /// Workload, environment and implementation options, as `dualcheck run` has them.
    #[command(flatten)]
    pub options: RunShared,
}

/// `--fault-cmd` (of the run options the gate shares with `dualcheck run`),
/// hidden from the gate's help: the battery is planned from the fault lists
/// the zoo measured (built-in faults only, [`Evidence::builtin`]), so a
/// custom fault never runs in it. Given anyway, it is refused before
/// anything starts ([`prepare`]), as on `dualcheck zoo`.
fn hide_fault_cmd(arg: clap::Arg) -> clap::Arg {
    if arg.get_id() == "fault_cmds" {
        arg.hide(true)
    } else {
        arg
    }
}

/// A `--name`: letters, digits and `-_.` only, as a JUnit suite name and a
/// Markdown heading take them unescaped.
fn parse_name(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not a name: use letters, digits, `-`, `_` and `.` only, e.g. `orders-service`"
        ))
    }
}

/// The least budget left for a shrink to be worth starting.
const SHRINK_MIN: Duration = Duration::from_secs(60);

/// Runs `dualcheck gate`: exit 0 when every run was valid, 1 at the first
/// invalid one, 3 when a history was incomplete, 2 when the gate could not
/// be carried out.
pub fn run(args: GateArgs) -> Verdict {
    let started = Instant::now();
    let label = args
        .name
        .clone()
        .or_else(|| args.mutant.clone())
        .or_else(|| args.implementation.clone())
        .unwrap_or_default();
    let (base, steps) = match prepare(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("dualcheck gate: {e:#}");
            return Verdict::Unusable;
        }
    };
    if args.plan {
        print!("{}", plan_text(&steps, args.budget));
        return Verdict::Valid;
    }
    let dir = match dualcheck::run_dir::create_sweep_dir(&args.out, "gate") {
        Ok(d) => d,
        Err(e) => {
            eprintln!("dualcheck gate: {e:#}");
            return Verdict::Unusable;
        }
    };
    let rt = match super::runtime("gate") {
        Ok(rt) => rt,
        Err(v) => return v,
    };
    let opts = GateOptions {
        label,
        base,
        budget: args.budget,
        first_seed: args.first_seed,
        dir: dir.clone(),
    };
    let mut outcome = match rt.block_on(dualcheck::gate::gate(&opts, &steps)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("dualcheck gate: {e:#} (gate directory: {})", dir.display());
            return Verdict::Unusable;
        }
    };
    let left = args.budget.saturating_sub(started.elapsed());
    let mut shrunk = None;
    if outcome.end == GateEnd::Failed && !args.no_shrink && left >= SHRINK_MIN {
        shrunk = shrink(&rt, opts.base.backend.clone(), &outcome, left);
    }
    outcome.wall_s = started.elapsed().as_secs_f64();
    if let Err(e) = write_outputs(&outcome, shrunk.as_deref()) {
        eprintln!("dualcheck gate: {e:#}");
        return Verdict::Unusable;
    }
    if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
        for line in annotations(&outcome) {
            println!("{line}");
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(&outcome).expect("the outcome serializes"));
    } else {
        print!("{}", summary_text(&outcome, shrunk.as_deref()));
    }
    match outcome.end {
        GateEnd::Passed => Verdict::Valid,
        GateEnd::Failed => Verdict::Invalid,
        GateEnd::Unknown => Verdict::Unknown,
    }
}

/// The checked run options and the battery, before anything starts.
fn prepare(args: &GateArgs) -> anyhow::Result<(dualcheck::run_options::RunOptions, Vec<dualcheck::gate::Step>)> {
    if let Some(custom) = args.options.fault_cmds.first() {
        anyhow::bail!(
            "--fault-cmd {}: the gate runs no custom fault (its battery is planned from the fault lists the bug zoo \
             measured); leave it out, and test the custom fault with `dualcheck run --faults {} --fault-cmd ...` \
             or `dualcheck sweep`",
            custom.name,
            custom.name
        );
    }
    let (implementation, knobs, exactly_once) = match &args.mutant {
        Some(name) => {
            let found =
                dualcheck::zoo::select(std::slice::from_ref(name)).map_err(|e| anyhow::anyhow!("--mutant: {e}"))?;
            let [m] = found.as_slice() else {
                let names: Vec<String> = found.iter().map(|m| format!("{}/{}", m.pattern, m.name)).collect();
                anyhow::bail!(
                    "--mutant {name} names {} residents of the zoo: write one of {}",
                    found.len(),
                    names.join(", ")
                );
            };
            (
                m.subject.implementation.clone(),
                m.subject.app_vars.clone(),
                m.subject.exactly_once,
            )
        }
        None => (args.implementation.clone().unwrap_or_default(), Vec::new(), false),
    };
    let mut base = args.options.options(
        &implementation,
        "none",
        Duration::from_secs(20),
        args.first_seed,
        &args.out,
    );
    base.app_vars.extend(knobs);
    base.exactly_once |= exactly_once;
    base.backend = args.options.backend.resolve()?;
    // Bad options exit 2 here, before any service starts.
    base.to_config()?;
    let builtin = implementations::lookup(&implementation).ok();
    let abilities = Abilities {
        multi_event: match builtin {
            Some(info) => matches!(info.multi_event, implementations::MultiEvent::Supported),
            // A program run with several events per op says it takes them.
            None => args.options.events_per_op != workloads::EventsPerOp::default(),
        },
    };
    let allowed: Option<Vec<dualcheck::nemesis::Fault>> = match &args.faults {
        Some(list) => {
            Some(dualcheck::nemesis::Fault::parse_list(list).map_err(|e| anyhow::anyhow!("--faults: {e:#}"))?)
        }
        None => None,
    };
    let usable = |faults: &str| {
        let within = match (&allowed, dualcheck::nemesis::Fault::parse_list(faults)) {
            (None, _) => true,
            (Some(allowed), Ok(step)) => step.iter().all(|f| allowed.contains(f)),
            (Some(_), Err(_)) => false,
        };
        let mut o = base.clone();
        o.faults = faults.to_string();
        within && o.to_config().is_ok()
    };
    let steps = dualcheck::gate::plan(&Evidence::builtin(), abilities, args.budget, &usable);
    if steps.is_empty() {
        anyhow::bail!(
            "no fault list the zoo measured can run on this implementation and backend: nothing to gate with"
        );
    }
    Ok((base, steps))
}

/// The battery as `--plan` prints it.
fn plan_text(steps: &[dualcheck::gate::Step], budget: Duration) -> String {
    let mut s = format!(
        "battery for a {:.0} s budget, run in this order until the budget is spent or a run is invalid\n\
         (\"~N s in\": an estimate at {:.0} s a run beyond its duration; the gate decides with the runs' real times):\n",
        budget.as_secs_f64(),
        dualcheck::gate::RUN_OVERHEAD_S
    );
    let mut at = 0.0;
    let mut marked = false;
    for (k, step) in steps.iter().enumerate() {
        at += step.duration_s + dualcheck::gate::RUN_OVERHEAD_S;
        if !marked && at > budget.as_secs_f64() {
            // The plan outlasts the budget on purpose: runs are often faster than the estimate.
            s.push_str("     -- the estimated budget ends here: the steps below run only as far as time is left --\n");
            marked = true;
        }
        s.push_str(&format!(
            "{:>3}. --faults {} --duration {:.0}s{}  (exposed {}; ~{:.0} s in)\n",
            k + 1,
            step.faults,
            step.duration_s,
            dualcheck::gate::workload_suffix(&step.workload),
            step.exposes.join(", "),
            at
        ));
    }
    s
}

/// Shrinks the failing run within what is left of the budget; returns the
/// shrink's command lines, or `None` when it did not shrink.
fn shrink(
    rt: &tokio::runtime::Runtime,
    backend: dualcheck::env::BackendKind,
    outcome: &GateOutcome,
    left: Duration,
) -> Option<String> {
    let run = outcome.runs.last()?;
    let opts = dualcheck::shrink::ShrinkOptions {
        // The gate's own services' settings, resolved once before it began.
        backend: Some(backend),
        run_dir: run.run_dir.clone(),
        tries: 2,
        min_repro: 1,
        budget: Some(left.saturating_sub(Duration::from_secs(20))),
        anomaly: None,
        max_candidates: None,
    };
    match rt.block_on(dualcheck::shrink::shrink(&opts)) {
        Ok(dualcheck::shrink::ShrinkEnd::Shrunk(o)) => Some(format!(
            "shrunk: {}\nreplay:   {}\nfor CI:   {}",
            o.best.describe(),
            o.replay_command,
            o.run_command
        )),
        Ok(_) => None,
        Err(e) => {
            eprintln!("dualcheck gate: shrinking the failing run: {e:#}");
            None
        }
    }
}

/// Writes gate.json, summary.md and junit.xml, and appends the summary to
/// `$GITHUB_STEP_SUMMARY` when it is set.
fn write_outputs(outcome: &GateOutcome, shrunk: Option<&str>) -> anyhow::Result<()> {
    use anyhow::Context;
    let write = |name: &str, text: String| {
        let path = outcome.dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write("gate.json", serde_json::to_string_pretty(outcome)? + "\n")?;
    let markdown = summary_markdown(outcome, shrunk);
    write("summary.md", markdown.clone())?;
    write("junit.xml", junit(outcome)?)?;
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening $GITHUB_STEP_SUMMARY ({})", Path::new(&path).display()))?;
        writeln!(f, "{markdown}").context("appending to $GITHUB_STEP_SUMMARY")?;
    }
    Ok(())
}

/// The verdict's word.
fn verdict_word(end: GateEnd) -> &'static str {
    match end {
        GateEnd::Passed => "passed",
        GateEnd::Failed => "FAILED",
        GateEnd::Unknown => "UNKNOWN (a history was incomplete)",
    }
}

/// The terminal summary.
fn summary_text(o: &GateOutcome, shrunk: Option<&str>) -> String {
    let mut s = format!(
        "gate {}: {} run(s) of {} in {:.0} s of a {:.0} s budget; {}\n",
        verdict_word(o.end),
        o.runs.len(),
        o.implementation,
        o.wall_s,
        o.budget_s,
        o.stopped
    );
    for r in &o.runs {
        s.push_str(&format!(
            "  {:<8} --faults {} --duration {:.0}s --seed {}{}{}  ({:.0} s{})\n",
            format!("{:?}", r.verdict).to_lowercase(),
            r.faults,
            r.duration_s,
            r.seed,
            dualcheck::gate::workload_suffix(&r.workload),
            if r.anomalies.is_empty() {
                String::new()
            } else {
                format!(": {}", dualcheck::gate::names(&r.anomalies))
            },
            r.wall_s,
            if r.drained { "" } else { "; the backlog did not drain" }
        ));
    }
    if let Some(note) = undrained_note(o) {
        s.push_str(&format!("note: {note}\n"));
    }
    if let Some(r) = o.runs.last().filter(|_| o.end != GateEnd::Passed) {
        s.push_str(&format!("run directory: {}\n", r.run_dir.display()));
    }
    if let Some(replay) = &o.replay {
        s.push_str(&format!("replay:   {replay}\n"));
    }
    if let Some(line) = &o.run_command {
        s.push_str(&format!("for CI:   {line}\n"));
    }
    if let Some(shrunk) = shrunk {
        s.push_str(shrunk);
        s.push('\n');
    }
    if o.end == GateEnd::Passed {
        s.push_str(&format!(
            "covered: the fault lists that exposed {} of the zoo's mutants ({})\n",
            o.covered.len(),
            o.covered.join(", ")
        ));
    }
    s.push_str(&format!("gate directory: {}\n", o.dir.display()));
    s
}

/// The Markdown summary (summary.md, `$GITHUB_STEP_SUMMARY`).
fn summary_markdown(o: &GateOutcome, shrunk: Option<&str>) -> String {
    let mut s = format!(
        "## dualcheck gate: {} — {}\n\n{} run(s) in {:.0} s of a {:.0} s budget; {}.\n\n",
        o.implementation,
        verdict_word(o.end),
        o.runs.len(),
        o.wall_s,
        o.budget_s,
        o.stopped
    );
    s.push_str("| # | faults | workload | seed | duration | verdict | anomalies | run directory |\n");
    s.push_str("|---|---|---|---|---|---|---|---|\n");
    for (k, r) in o.runs.iter().enumerate() {
        s.push_str(&format!(
            "| {} | `{}` | {} | {} | {:.0} s | {} | {} | `{}` |\n",
            k + 1,
            r.faults,
            if r.workload.is_empty() {
                "-".to_string()
            } else {
                format!("`{}`", r.workload)
            },
            r.seed,
            r.duration_s,
            format!("{:?}", r.verdict).to_lowercase() + if r.drained { "" } else { ", not drained" },
            if r.anomalies.is_empty() {
                "-".to_string()
            } else {
                dualcheck::gate::names(&r.anomalies)
            },
            r.run_dir.display()
        ));
    }
    if let Some(note) = undrained_note(o) {
        s.push_str(&format!("\nNote: {note}.\n"));
    }
    if let Some(replay) = &o.replay {
        s.push_str(&format!("\nReplay the failing run:\n\n```\n{replay}\n```\n"));
    }
    if let Some(line) = &o.run_command {
        s.push_str(&format!(
            "\nOr run it again anywhere (schedule included):\n\n```\n{line}\n```\n"
        ));
    }
    if let Some(shrunk) = shrunk {
        s.push_str(&format!("\nSmallest reproduction found:\n\n```\n{shrunk}\n```\n"));
    }
    s.push_str(&format!(
        "\nThe run directories (history, results, report.html, every log) are under `{}`.\n",
        o.dir.display()
    ));
    s
}

/// What to say about valid runs whose backlog never drained, if any: the
/// service's `GET /backlog` kept counting something although every event
/// was published, and each such run waited out the drain timeout (a gate
/// past its budget, with no anomaly to show for it).
fn undrained_note(o: &GateOutcome) -> Option<String> {
    let steps: Vec<String> = o
        .runs
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.drained && r.verdict == checkers::Verdict::Valid)
        .map(|(k, _)| (k + 1).to_string())
        .collect();
    if steps.is_empty() {
        return None;
    }
    Some(format!(
        "the service's backlog (GET /backlog) never reached 0 in the drain after run(s) {}, though no event was \
         missing: it may count something that never clears, and each such run waited out the whole drain timeout",
        steps.join(", ")
    ))
}

/// GitHub Actions annotations: an `::error::` per anomaly of the failing
/// run, and a `::warning::` when a valid run's backlog never drained.
fn annotations(o: &GateOutcome) -> Vec<String> {
    let title = format!("dualcheck gate: {}", o.implementation);
    let mut lines: Vec<String> = undrained_note(o)
        .map(|note| format!("::warning title={title}::{note}"))
        .into_iter()
        .collect();
    let Some(r) = o.runs.last().filter(|_| o.end != GateEnd::Passed) else {
        return lines;
    };
    let where_ = format!(
        "--faults {} --seed {} ({})",
        r.faults,
        r.seed,
        o.replay.as_deref().unwrap_or("see the gate directory")
    );
    if r.anomalies.is_empty() {
        lines.push(format!(
            "::error title={title}::the history is incomplete, no verdict: {where_}"
        ));
        return lines;
    }
    lines.extend(
        r.anomalies
            .iter()
            .map(|a| format!("::error title={title}::{a}: {} under {where_}", a.description())),
    );
    lines
}

/// junit.xml: one test suite, one test case per run (a failure per invalid
/// run, naming its anomalies and its run directory).
fn junit(o: &GateOutcome) -> anyhow::Result<String> {
    use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};
    let name = format!("dualcheck.gate.{}", o.implementation);
    let mut suite = TestSuite::new(name.as_str());
    suite.set_time(Duration::from_secs_f64(o.wall_s));
    for r in &o.runs {
        let case_name = format!("--faults {} --seed {}", r.faults, r.seed);
        let status = match r.verdict {
            checkers::Verdict::Valid => TestCaseStatus::success(),
            checkers::Verdict::Invalid => {
                let mut f = TestCaseStatus::non_success(NonSuccessKind::Failure);
                f.set_type("invalid")
                    .set_message(dualcheck::gate::names(&r.anomalies))
                    .set_description(format!("run directory: {}", r.run_dir.display()));
                f
            }
            checkers::Verdict::Unknown => {
                let mut e = TestCaseStatus::non_success(NonSuccessKind::Error);
                e.set_type("unknown")
                    .set_message("the history is incomplete")
                    .set_description(format!("run directory: {}", r.run_dir.display()));
                e
            }
        };
        let mut case = TestCase::new(case_name.as_str(), status);
        case.set_classname(name.as_str())
            .set_time(Duration::from_secs_f64(r.wall_s));
        suite.add_test_case(case);
    }
    let mut report = Report::new("dualcheck gate");
    report.add_test_suite(suite);
    Ok(report.to_string()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[derive(Parser)]
    struct GateOnly {
        #[command(flatten)]
        gate: GateArgs,
    }

    /// The battery has no custom fault: the gate's help does not offer
    /// `--fault-cmd`, and shows the rest of the run options.
    #[test]
    fn the_help_hides_fault_cmd_and_keeps_the_run_options() {
        let help = GateOnly::command().render_long_help().to_string();
        assert!(!help.contains("--fault-cmd"), "{help}");
        for shown in ["--budget", "--faults", "--replicas", "--backend", "--cmd"] {
            assert!(help.contains(shown), "{shown} missing:\n{help}");
        }
    }

    /// A passed gate of two runs, the second valid but not drained.
    fn passed_with_an_undrained_run() -> GateOutcome {
        let run = |seed: u64, drained: bool| dualcheck::gate::GateRun {
            faults: "kafka-partition".into(),
            workload: String::new(),
            seed,
            duration_s: 10.0,
            verdict: checkers::Verdict::Valid,
            anomalies: Vec::new(),
            wall_s: if drained { 20.0 } else { 80.0 },
            drained,
            run_dir: PathBuf::from(format!("runs/run-{seed}")),
        };
        GateOutcome {
            end: GateEnd::Passed,
            implementation: "orders".into(),
            budget_s: 120.0,
            wall_s: 100.0,
            dir: PathBuf::from("gate"),
            runs: vec![run(1, true), run(2, false)],
            planned: Vec::new(),
            stopped: "every planned step ran".into(),
            replay: None,
            run_command: None,
            covered: Vec::new(),
        }
    }

    /// A valid run whose backlog never drained is named in every output, as a
    /// warning (the gate still passes), and only that run.
    #[test]
    fn a_run_that_did_not_drain_is_told_as_a_warning() {
        let o = passed_with_an_undrained_run();
        let text = summary_text(&o, None);
        assert!(text.contains("(80 s; the backlog did not drain)"), "{text}");
        assert!(text.contains("(20 s)"), "{text}");
        assert!(text.contains("after run(s) 2,"), "{text}");
        assert!(summary_markdown(&o, None).contains("| valid, not drained |"));
        let lines = annotations(&o);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].starts_with("::warning title=dualcheck gate: orders::"),
            "{lines:?}"
        );
        let mut drained = o.clone();
        drained.runs[1].drained = true;
        assert!(annotations(&drained).is_empty());
        assert!(!summary_text(&drained, None).contains("note:"));
    }
}
