//! Was it right? Reads a dual-write history (JSON Lines, docs/history.md; anomalies in docs/anomalies.md)
//! and checks it for lost, partially published, phantom, unexpected, duplicate and reordered
//! events, lost commits and stale reads.
//!
//! The checkers depend on nothing but the history: a file recorded by
//! dualcheck or by anything else is all they need.
//!
//! ```no_run
//! let result = dualcheck_checkers::check_file("history.jsonl".as_ref(), dualcheck_checkers::CheckOptions::default())?;
//! assert!(result.valid, "{:?}", result.anomalies);
//! # Ok::<(), dualcheck_checkers::HistoryError>(())
//! ```

pub mod anomaly;
pub mod check;
mod event_id;
pub mod history;
mod ingest;
mod op_table;
pub mod reader;
pub mod results;

pub use anomaly::Anomaly;
pub use check::{CheckOptions, HistoryIndex};
pub use history::{FaultPhase, HistoryLine, Outcome, ParsedLine};
pub use reader::HistoryError;
pub use results::{
    quantile, Anomalies, CheckResult, Example, FailedFault, FaultWindow, Latency, LogLine, Trail, Verdict,
};

use std::io::Read;
use std::path::Path;

/// Reads and checks the history at `path`.
pub fn check_file(path: &Path, options: CheckOptions) -> Result<CheckResult, HistoryError> {
    let name = path.display().to_string();
    let mut index = HistoryIndex::new();
    let summary = reader::read_file_blocks(path, &mut ingest::IndexSink::new(&mut index))?;
    if let Some((op, what)) = index.orphans().first().copied() {
        // Rare: find the line again so the message can point at it.
        let mut line_of = None;
        let _ = reader::read_file(path, |number, parsed| {
            let hit = match parsed {
                ParsedLine::Complete { op: o, .. } | ParsedLine::Committed { op: o } => o == op,
                _ => false,
            };
            if hit && line_of.is_none() {
                line_of = Some(number);
            }
            Ok(())
        });
        return Err(orphan_error(&name, line_of, op, what));
    }
    let mut result = index.finish(options);
    result.lines = summary.lines;
    result.warnings.splice(0..0, summary.warnings);
    Ok(result)
}

/// Reads and checks a history from any byte source; `name` is used in messages.
pub fn check_reader<R: Read>(name: &str, input: R, options: CheckOptions) -> Result<CheckResult, HistoryError> {
    let mut index = HistoryIndex::new();
    let summary = reader::read_blocks(name, input, &mut ingest::IndexSink::new(&mut index))?;
    if let Some((op, what)) = index.orphans().first().copied() {
        return Err(orphan_error(name, None, op, what));
    }
    let mut result = index.finish(options);
    result.lines = summary.lines;
    result.warnings.splice(0..0, summary.warnings);
    Ok(result)
}

fn orphan_error(name: &str, line: Option<u64>, op: u64, what: &str) -> HistoryError {
    let message = format!(
        "op {op} has a `{what}` line but no `invoke` line; every completed or committed op must be invoked in the same history"
    );
    match line {
        Some(line) => HistoryError::at(name, line, message),
        None => HistoryError::whole(name, message),
    }
}
