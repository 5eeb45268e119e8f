//! `dualcheck check HISTORY.jsonl [--json] [--exactly-once] [--assume-complete]`:
//! judge a history recorded by dualcheck or by anything else.

use super::Verdict;
use checkers::CheckOptions;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `dualcheck check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The history file (JSON Lines, the format in docs/history.md).
    pub history: PathBuf,
    /// Print exactly one JSON object (the results) on stdout.
    #[arg(long)]
    pub json: bool,
    /// Also count duplicates (same event id delivered twice) as violations.
    #[arg(long)]
    pub exactly_once: bool,
    /// Examples kept per anomaly kind.
    #[arg(long, default_value_t = 5)]
    pub examples: usize,
    /// Judge an interrupted history (a `begin` line but no `end` line) as if it
    /// were complete, instead of `unknown` (exit 3).
    #[arg(long)]
    pub assume_complete: bool,
}

/// Runs `dualcheck check`: valid, anomalies, an unusable history, or an incomplete one (unknown).
pub fn run(args: CheckArgs) -> Verdict {
    let options = CheckOptions {
        exactly_once: args.exactly_once,
        max_examples: args.examples,
        assume_complete: args.assume_complete,
        ..CheckOptions::default()
    };
    match checkers::check_file(&args.history, options) {
        Ok(result) => {
            if args.json {
                println!("{}", serde_json::to_string(&result).expect("results serialize"));
            } else {
                print!("{}", dualcheck::summary::check_result(&result));
            }
            Verdict::of_check(result.verdict)
        }
        Err(e) => {
            eprintln!("dualcheck check: unusable history: {e}");
            eprintln!("  (the format is described in docs/history.md)");
            Verdict::Unusable
        }
    }
}
