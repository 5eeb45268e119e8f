//! `dualcheck compare`: every implementation under the same seeded workload
//! and fault schedule, one seed after another, summed up in one table (text,
//! Markdown or JSON) and in `compare.html`, which links each run's report.
//! The runs and the table are [`dualcheck::compare`]'s.

use super::run::LoadArgs;
use super::{parse_duration, Verdict};
use clap::Args;
use dualcheck::compare::{markdown_table, text_table};
use dualcheck::run_dir::COMPARE_HTML;
use dualcheck::run_options::RunOptions;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `dualcheck compare`.
#[derive(Args, Debug, Clone)]
#[command(mut_arg("concurrency", |a| a.help("Worker tasks")))]
pub struct CompareArgs {
    /// Comma-separated implementations (see `dualcheck list`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub impls: Vec<String>,
    /// Comma-separated faults (see `dualcheck list`), or `none`.
    #[arg(long, default_value = "none")]
    pub faults: String,
    /// Workload duration of each run, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seeds per implementation: FIRST_SEED, FIRST_SEED+1, ...
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Rate, workers and keys of the workload.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Where the comparison directory (runs and compare.html) goes.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Print the table as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Print the table as Markdown.
    #[arg(long, conflicts_with = "json")]
    pub markdown: bool,
}

impl CompareArgs {
    /// The options every run of the comparison shares (`dualcheck run`'s
    /// defaults otherwise); each run sets its implementation and seed.
    fn run_options(&self) -> RunOptions {
        let mut o = RunOptions::new("");
        o.faults = self.faults.clone();
        o.duration = self.duration;
        o.workload.rate = self.load.rate;
        o.workload.concurrency = self.load.concurrency;
        o.workload.keys = self.load.keys;
        o.out = self.out.clone();
        o
    }
}

/// Runs `dualcheck compare`: valid when every run was, invalid when some run
/// found anomalies, unusable when some run could not be carried out.
pub fn run(args: CompareArgs) -> Verdict {
    let rt = match super::runtime("compare") {
        Ok(rt) => rt,
        Err(v) => return v,
    };
    let seeds = args.first_seed..args.first_seed + args.seeds;
    match rt.block_on(dualcheck::compare::compare(&args.impls, seeds, &args.run_options())) {
        Ok((rows, dir)) => {
            if args.json {
                let v = serde_json::json!({"rows": rows, "out_dir": dir, "html": dir.join(COMPARE_HTML)});
                println!("{v}");
            } else {
                if args.markdown {
                    print!("{}", markdown_table(&rows));
                } else {
                    print!("{}", text_table(&rows));
                }
                println!("\n{}", dir.join(COMPARE_HTML).display());
            }
            if rows.iter().any(|r| !r.errors.is_empty()) {
                Verdict::Unusable
            } else {
                Verdict::of(rows.iter().all(|r| r.failed_seeds.is_empty()))
            }
        }
        Err(e) => {
            eprintln!("dualcheck compare: {e:#}");
            Verdict::Unusable
        }
    }
}
