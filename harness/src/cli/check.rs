//! `dualcheck check HISTORY.jsonl [--json] [--exactly-once] [--assume-complete]`:
//! judge a history recorded by dualcheck or by anything else (`-`: read
//! from standard input).

use super::Verdict;
use checkers::{CheckOptions, CheckResult, HistoryError};
use clap::Args;
use std::path::{Path, PathBuf};

/// The history argument that means standard input, as most tools take it.
const STDIN_ARG: &str = "-";

/// The name standard input has in messages about the history (`<stdin>:3: ...`).
const STDIN_NAME: &str = "<stdin>";

/// Arguments of `dualcheck check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The history file (JSON Lines, the format in docs/history.md), or `-` to read it from
    /// standard input (e.g. `zcat history.jsonl.gz | dualcheck check -`).
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
    match check_history(&args.history, options) {
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

/// Checks the history at `path`, or the one on standard input when `path` is `-`.
fn check_history(path: &Path, options: CheckOptions) -> Result<CheckResult, HistoryError> {
    if path == Path::new(STDIN_ARG) {
        checkers::check_reader(STDIN_NAME, std::io::stdin().lock(), options)
    } else {
        checkers::check_file(path, options)
    }
}
