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

/// Runs `dualcheck report`: valid, anomalies, or unusable input.
pub fn run(args: ReportArgs) -> Verdict {
    match dualcheck::report::write(&args.run_dir) {
        Ok(files) => {
            println!(
                "{}: {}\n{}",
                if files.valid { "valid" } else { "INVALID" },
                files.html.display(),
                files.junit.display()
            );
            Verdict::of(files.valid)
        }
        Err(e) => {
            eprintln!("dualcheck report: {e:#}");
            Verdict::Unusable
        }
    }
}
