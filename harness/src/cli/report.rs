//! `dualcheck report RUN_DIR`: (re)writes `junit.xml` and `report.html` from a
//! run directory's history, or from a history file checked offline.

use super::Verdict;
use clap::Args;
use std::path::PathBuf;

/// Arguments of `dualcheck report`.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A run directory (holding history.jsonl, and results.json, schedule.json when the runner wrote them),
    /// or a history file: the report goes beside it.
    pub run_dir: PathBuf,
}

/// Runs `dualcheck report`: valid, anomalies, unusable input, or an incomplete history (unknown).
pub fn run(args: ReportArgs) -> Verdict {
    match dualcheck::report::write(&args.run_dir) {
        Ok(files) => {
            println!(
                "{}: {}\n{}",
                match files.verdict {
                    checkers::Verdict::Valid => "valid",
                    checkers::Verdict::Invalid => "INVALID",
                    checkers::Verdict::Unknown => "UNKNOWN",
                },
                files.html.display(),
                files.junit.display()
            );
            Verdict::of_check(files.verdict)
        }
        Err(e) => {
            eprintln!("dualcheck report: {e:#}");
            Verdict::Unusable
        }
    }
}
