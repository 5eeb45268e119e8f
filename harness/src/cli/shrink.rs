//! `dualcheck shrink RUN_DIR`: the smallest reproduction of an invalid run
//! (the work is [`dualcheck::shrink`]'s).

use super::{parse_duration, Verdict};
use clap::Args;
use dualcheck::shrink::{ShrinkEnd, ShrinkOptions};
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `dualcheck shrink`.
#[derive(Args, Debug, Clone)]
pub struct ShrinkArgs {
    /// The run directory of an invalid run.
    pub run_dir: PathBuf,
    /// Tries per candidate (the original included).
    #[arg(long, default_value_t = 3)]
    pub tries: u32,
    /// Tries that must show the anomaly for a candidate to count as reproducing.
    #[arg(long, default_value_t = 2)]
    pub min_repro: u32,
    /// Wall time after which no new candidate starts, e.g. `10m` (the best so far is kept).
    #[arg(long, value_parser = parse_duration)]
    pub budget: Option<Duration>,
    /// Candidates after which no new one starts, the original included (the best so far is kept).
    #[arg(long, value_name = "N")]
    pub max_candidates: Option<usize>,
    /// The anomaly kind to keep (default: the run's first violation), e.g. `lost`.
    #[arg(long)]
    pub anomaly: Option<String>,
    /// Print the outcome as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Which services the candidates run on.
    #[command(flatten)]
    pub backend: super::env::BackendArgs,
}

/// Runs `dualcheck shrink`: 0 when shrunk, 2 when there is nothing to shrink,
/// the run does not reproduce, or the shrink could not be carried out.
pub fn run(args: ShrinkArgs) -> Verdict {
    let rt = match super::runtime("shrink") {
        Ok(rt) => rt,
        Err(v) => return v,
    };
    let backend = match args.backend.resolve() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("dualcheck shrink: {e:#}");
            return Verdict::Unusable;
        }
    };
    let opts = ShrinkOptions {
        backend: Some(backend),
        run_dir: args.run_dir.clone(),
        tries: args.tries,
        min_repro: args.min_repro,
        budget: args.budget,
        anomaly: args.anomaly.clone(),
        max_candidates: args.max_candidates,
    };
    let end = match rt.block_on(dualcheck::shrink::shrink(&opts)) {
        Ok(end) => end,
        Err(e) => {
            eprintln!("dualcheck shrink: {e:#}");
            return Verdict::Unusable;
        }
    };
    if args.json {
        println!("{}", serde_json::to_string(&end).expect("the outcome serializes"));
    }
    match end {
        ShrinkEnd::NothingToShrink { reason } => {
            eprintln!("dualcheck shrink: nothing to shrink: {reason}");
            Verdict::Unusable
        }
        ShrinkEnd::NotReproduced {
            anomaly,
            reproduced,
            tries,
        } => {
            eprintln!(
                "dualcheck shrink: the run did not reproduce: `{anomaly}` in {reproduced} of {tries} tries \
                 (fewer than --min-repro {}); nothing shrunk",
                args.min_repro
            );
            Verdict::Unusable
        }
        ShrinkEnd::Shrunk(o) => {
            if !args.json {
                println!(
                    "shrunk `{}` in {} candidates ({} runs, {:.0} s{}):\n  from {}\n  to   {}\n\n\
                     replay:   {}\nfor CI:   {}\nfiles:    {}",
                    o.anomaly,
                    o.candidates,
                    o.runs,
                    o.wall_s,
                    if o.budget_exhausted { ", budget spent" } else { "" },
                    o.original.describe(),
                    o.best.describe(),
                    o.replay_command,
                    o.run_command,
                    o.dir.display()
                );
            }
            Verdict::Valid
        }
    }
}
