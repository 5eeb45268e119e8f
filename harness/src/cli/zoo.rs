//! `dualcheck zoo`: every mutant of the bug zoo under the faults it names,
//! beside its correct pattern under the same seeds and faults; one row per
//! mutant (caught k of N, anomalies seen, time to the first anomaly, the
//! correct pattern's verdicts). The work is [`dualcheck::zoo`]'s.

use super::run::RunShared;
use super::{parse_duration, Verdict};
use clap::Args;
use dualcheck::sweep::SweepPlan;
use dualcheck::zoo::{markdown_table, text_table, Mutant, ZooRow};
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `dualcheck zoo`.
#[derive(Args, Debug, Clone)]
pub struct ZooArgs {
    /// Comma-separated mutants: a mutant's name (on every pattern that has
    /// it), `PATTERN/MUTANT`, or a pattern that is a negative control as it is
    /// (`naive`); all of them when not given. `dualcheck list` shows them.
    #[arg(long, value_delimiter = ',')]
    pub mutants: Vec<String>,
    /// Seeds per mutant (and per correct pattern beside it): FIRST_SEED, FIRST_SEED+1, ...
    #[arg(long, default_value_t = 20)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Workload duration of each run, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Where the zoo's sweep directory (runs, services' logs, zoo.html) goes.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Run only part I of N of the zoo's runs (e.g. `--shard 2/4` on the
    /// second of four machines, or four sittings of one); `--merge` joins the parts.
    #[arg(long, conflicts_with = "merge")]
    pub shard: Option<dualcheck::sweep::Shard>,
    /// Run nothing: the table from zoo (or sweep) directories already run —
    /// shards, interrupted zoos, zoos of different mutants — each mutant's
    /// row from every run of its cell found there (`--mutants` selects rows).
    #[arg(long, num_args = 1.., value_name = "DIR")]
    pub merge: Vec<PathBuf>,
    /// Print the table as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Print the table as Markdown (what `docs/zoo.md` holds).
    #[arg(long, conflicts_with = "json")]
    pub markdown: bool,
    /// Workload, environment and implementation options, as `dualcheck run` has them.
    #[command(flatten)]
    pub options: RunShared,
}

/// The options of `dualcheck run` that have no place in a zoo, hidden from
/// its help: those of `exec` (the zoo's cells are all built-in patterns,
/// mutants and the correct patterns beside them, which refuse `--cmd` and
/// the service template flags, and whose own committed query
/// `--committed-sql` would replace), and `--fault-cmd` (each mutant runs
/// under the faults it names; the zoo has no `--faults`).
pub fn hide_out_of_place_options(arg: clap::Arg) -> clap::Arg {
    let out_of_place = matches!(arg.get_id().as_str(), "cmd" | "committed_sql" | "fault_cmds")
        || arg.get_help_heading() == Some(super::run::TEMPLATE_HEADING);
    if out_of_place {
        arg.hide(true)
    } else {
        arg
    }
}

/// Runs `dualcheck zoo`: exit 0 when every mutant was caught in every run and
/// every correct pattern beside it stayed valid, 1 otherwise, 2 when a name
/// is unknown or a run could not be carried out.
pub fn run(args: ZooArgs) -> Verdict {
    let mutants = match dualcheck::zoo::select(&args.mutants) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("dualcheck zoo: {e}");
            return Verdict::Unusable;
        }
    };
    if let Some(custom) = args.options.fault_cmds.first() {
        eprintln!(
            "dualcheck zoo: --fault-cmd {}: the zoo runs each mutant under the built-in faults it names, never a \
             custom fault; leave it out, and test the custom fault with `dualcheck run` or `dualcheck sweep`",
            custom.name
        );
        return Verdict::Unusable;
    }
    if !args.merge.is_empty() {
        return merged(&args, &mutants);
    }
    let rt = match super::runtime("zoo") {
        Ok(rt) => rt,
        Err(v) => return v,
    };
    // Refused before anything starts: a backend that cannot run a mutant's faults.
    let backend = args.options.backend.resolve().and_then(|b| {
        for m in &mutants {
            b.check_usable(&dualcheck::nemesis::Fault::parse_list(&m.faults)?)?;
        }
        Ok(b)
    });
    let backend = match backend {
        Ok(b) => b,
        Err(e) => {
            eprintln!("dualcheck zoo: {e:#}");
            return Verdict::Unusable;
        }
    };
    let mut plan = SweepPlan {
        cells: Vec::new(),
        seeds: args.first_seed..args.first_seed.saturating_add(args.seeds),
        run: args
            .options
            .options("", "none", args.duration, args.first_seed, &args.out),
        command: "zoo",
        progress: !args.json,
        shard: args.shard,
        // Interrupted, it prints the sweep's cells (mutants and correct patterns) so far.
        render_partial: if args.json {
            |rows| format!("{}\n", serde_json::json!({ "cells": rows, "interrupted": true }))
        } else if args.markdown {
            dualcheck::sweep::markdown_table
        } else {
            dualcheck::sweep::text_table
        },
    };
    plan.run.backend = backend;
    match rt.block_on(dualcheck::zoo::zoo(&mutants, plan)) {
        Ok(outcome) => {
            if args.json {
                println!("{}", serde_json::to_string(&outcome).expect("the zoo serializes"));
            } else {
                print_table(&args, &outcome.rows);
                println!(
                    "\n{} runs in {:.1} s (services started in {:.1} s)\n{}",
                    outcome
                        .sweep
                        .rows
                        .iter()
                        .map(|r| r.runs + r.errors.len() as u64)
                        .sum::<u64>(),
                    outcome.sweep.wall_s,
                    outcome.sweep.services_start_s,
                    outcome.sweep.html.display()
                );
            }
            if outcome.has_errors() {
                Verdict::Unusable
            } else {
                Verdict::of(outcome.all_as_expected())
            }
        }
        Err(e) => {
            eprintln!("dualcheck zoo: {e:#}");
            Verdict::Unusable
        }
    }
}

/// The table, as text or Markdown.
fn print_table(args: &ZooArgs, rows: &[ZooRow]) {
    print!(
        "{}",
        if args.markdown {
            markdown_table(rows)
        } else {
            text_table(rows)
        }
    );
}

/// `dualcheck zoo --merge DIR...`: the rows of `mutants` from the runs
/// recorded under the directories, the exit status as if they had run here.
fn merged(args: &ZooArgs, mutants: &[Mutant]) -> Verdict {
    let found = match dualcheck::merge::find(&args.merge) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("dualcheck zoo --merge: {e:#}");
            return Verdict::Unusable;
        }
    };
    let rows = dualcheck::zoo::rows(mutants, &dualcheck::merge::merge(&found));
    if rows.is_empty() {
        eprintln!(
            "dualcheck zoo --merge: no run of the selected mutants under {}: give the directories `dualcheck zoo --out` made (or their parents)",
            args.merge.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
        return Verdict::Unusable;
    }
    if args.json {
        println!("{}", serde_json::json!({ "rows": rows }));
    } else {
        print_table(args, &rows);
        let runs: u64 = rows.iter().map(|r| r.runs).sum();
        println!(
            "\n{} mutant rows, {runs} mutant runs, from {} zoo or sweep directories and {} run directories",
            rows.len(),
            found.sweeps.len(),
            found.runs.len()
        );
    }
    if rows.iter().any(ZooRow::has_errors) {
        Verdict::Unusable
    } else {
        Verdict::of(rows.iter().all(ZooRow::all_as_expected))
    }
}
