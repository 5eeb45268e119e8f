//! `dualcheck sweep` and `dualcheck compare`: one command. Every cell
//! (implementation × fault list) on every seed, on services started once,
//! summed up in one table (text, Markdown or JSON) and an HTML page linking
//! each run's report; the work is [`dualcheck::sweep`]'s. They differ only in
//! what decides the exit code: `sweep` judges each run against the expectation
//! its implementation declares, `compare` wants every run valid.

use super::run::RunShared;
use super::{parse_duration, Verdict};
use clap::Args;
use dualcheck::sweep::{markdown_table, text_table, Subject, SweepOutcome, SweepPlan};
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `dualcheck sweep` (and `dualcheck compare`).
#[derive(Args, Debug, Clone)]
pub struct SweepArgs {
    /// Comma-separated implementations, each `NAME` or `NAME+KEY=VALUE` (a knob
    /// set, e.g. `cdc-logical+DUALCHECK_CDC_CONFIRM=early`) or `NAME:tuned` (the
    /// knobs its pattern declares as tuned, e.g. `debezium:tuned`); see `dualcheck list`.
    /// `exec` is your own program: --cmd, --committed-sql and the service template flags
    /// give it, one program for every `exec` cell.
    #[arg(long, value_delimiter = ',', required = true)]
    pub impls: Vec<Subject>,
    /// Comma-separated faults and fault families (`network`, `process`,
    /// `cluster`, `schema`, `custom`) and custom faults (`--fault-cmd`), or `none`. Repeat the flag for more cells:
    /// `--faults network --faults process`.
    #[arg(long, default_value = "none")]
    pub faults: Vec<String>,
    /// Workload duration of each run, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seeds per cell: FIRST_SEED, FIRST_SEED+1, ...
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Where the sweep's directory (runs, services' logs, the HTML page) goes.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Run only part I of N of the sweep's runs (e.g. `--shard 2/4` on the
    /// second of four CI machines); `dualcheck merge` joins the parts.
    #[arg(long)]
    pub shard: Option<dualcheck::sweep::Shard>,
    /// Print the table as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Print the table as Markdown.
    #[arg(long, conflicts_with = "json")]
    pub markdown: bool,
    /// Workload, environment and implementation options, as `dualcheck run` has them.
    #[command(flatten)]
    pub options: RunShared,
}

/// The help heading of the service template flags in `sweep` and `compare`.
const EXEC_CELLS_TEMPLATE_HEADING: &str =
    "Service template (`exec` cells only: with any of these, every cell of --impls must be `exec`)";

/// `--cmd`, `--committed-sql` and the service template flags as `sweep` and
/// `compare` take them: for the `exec` cells of `--impls`, one program for
/// all of them. (`RunShared` words them for `--impl`, which these commands
/// do not have.) Every run's options carry them, so a built-in cell beside
/// them is refused before anything starts.
pub fn exec_cells_help(arg: clap::Arg) -> clap::Arg {
    match arg.get_id().as_str() {
        "cmd" => arg.help(
            "Program to run for the `exec` cells of --impls, started with `sh -c`; with it every cell \
             must be `exec` (a built-in implementation refuses --cmd)",
        ),
        "committed_sql" => arg.help(
            "Query returning the committed op ids: required for `exec` cells; for a built-in cell \
             it replaces the pattern's own",
        ),
        _ if arg.get_help_heading() == Some(super::run::TEMPLATE_HEADING) => {
            arg.help_heading(EXEC_CELLS_TEMPLATE_HEADING)
        }
        _ => arg,
    }
}

/// What decides the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judge {
    /// `sweep`: 0 when every cell is as expected.
    Expectations,
    /// `compare`: 0 when every run is valid.
    Validity,
}

impl Judge {
    fn command(self) -> &'static str {
        match self {
            Judge::Expectations => "sweep",
            Judge::Validity => "compare",
        }
    }

    /// Exit 2 when some run could not be carried out; else 1 when some cell is
    /// not as expected (`sweep`) or some run invalid (`compare`); else 0.
    fn verdict(self, outcome: &SweepOutcome) -> Verdict {
        if outcome.has_errors() {
            return Verdict::Unusable;
        }
        Verdict::of(match self {
            Judge::Expectations => outcome.all_as_expected(),
            Judge::Validity => outcome.all_valid(),
        })
    }
}

impl SweepArgs {
    fn plan(&self, judge: Judge) -> SweepPlan {
        SweepPlan {
            cells: SweepPlan::product(&self.impls, &self.faults),
            seeds: self.first_seed..self.first_seed.saturating_add(self.seeds),
            run: self
                .options
                .options("", "none", self.duration, self.first_seed, &self.out),
            command: judge.command(),
            progress: !self.json,
            shard: self.shard,
            render_partial: if self.json {
                |rows| format!("{}\n", serde_json::json!({ "rows": rows, "interrupted": true }))
            } else if self.markdown {
                markdown_table
            } else {
                text_table
            },
        }
    }
}

/// Runs `dualcheck sweep` or `dualcheck compare`.
pub fn run(args: SweepArgs, judge: Judge) -> Verdict {
    let command = judge.command();
    let rt = match super::runtime(command) {
        Ok(rt) => rt,
        Err(v) => return v,
    };
    let mut plan = args.plan(judge);
    // Refused before anything starts: a backend that cannot run these faults.
    let backend = args.options.backend.resolve().and_then(|b| {
        for list in &args.faults {
            b.check_usable(&dualcheck::nemesis::Fault::parse_list(list)?)?;
        }
        Ok(b)
    });
    match backend {
        Ok(b) => plan.run.backend = b,
        Err(e) => {
            eprintln!("dualcheck {command}: {e:#}");
            return Verdict::Unusable;
        }
    }
    match rt.block_on(dualcheck::sweep::sweep(&plan)) {
        Ok(outcome) => {
            if args.json {
                println!("{}", serde_json::to_string(&outcome).expect("the sweep serializes"));
            } else {
                if args.markdown {
                    print!("{}", markdown_table(&outcome.rows));
                } else {
                    print!("{}", text_table(&outcome.rows));
                }
                println!(
                    "\n{} runs in {:.1} s (services started in {:.1} s)\n{}",
                    outcome.rows.iter().map(|r| r.runs + r.errors.len() as u64).sum::<u64>(),
                    outcome.wall_s,
                    outcome.services_start_s,
                    outcome.html.display()
                );
            }
            judge.verdict(&outcome)
        }
        Err(e) => {
            eprintln!("dualcheck {command}: {e:#}");
            Verdict::Unusable
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct SweepOnly {
        #[command(flatten)]
        sweep: SweepArgs,
    }

    #[test]
    fn cells_knobs_and_families_parse() {
        let args = SweepOnly::try_parse_from([
            "sweep",
            "--impls",
            "outbox-poll,cdc-logical+DUALCHECK_CDC_CONFIRM=early",
            "--faults",
            "network",
            "--faults",
            "relay-kill,kafka-partition",
            "--seeds",
            "3",
            "--first-seed",
            "7",
        ])
        .unwrap()
        .sweep;
        let plan = args.plan(Judge::Expectations);
        let cells: Vec<(&str, &str)> = plan
            .cells
            .iter()
            .map(|(s, f)| (s.implementation.as_str(), f.as_str()))
            .collect();
        assert_eq!(
            cells,
            [
                ("outbox-poll", "network"),
                ("outbox-poll", "relay-kill,kafka-partition"),
                ("cdc-logical", "network"),
                ("cdc-logical", "relay-kill,kafka-partition")
            ],
            "every implementation under every fault list"
        );
        assert_eq!(
            plan.cells[2].0.app_vars,
            [("DUALCHECK_CDC_CONFIRM".to_string(), "early".to_string())]
        );
        assert_eq!(plan.seeds, 7..10);
        assert_eq!(plan.command, "sweep");
        assert!(SweepOnly::try_parse_from(["sweep", "--impls", "x+NOVALUE"]).is_err());
    }
}
