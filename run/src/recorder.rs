//! The history recorder: appends each event to `history.jsonl` as it happens
//! and flushes it, so a harness killed mid-run still leaves a history the
//! checker can read (at worst with an incomplete last line, which it reports).
//!
//! Its first line is `begin`; [`Recorder::end`] writes `end` once the history
//! is complete. A history with `begin` and no `end` was interrupted, and the
//! checker judges it `unknown` (docs/history.md).

use anyhow::{Context, Result};
use checkers::HistoryLine;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

/// Shared by every worker, the observer and the nemesis.
pub struct Recorder {
    start: Instant,
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
}

impl Recorder {
    /// Creates (truncates) the history file at `path` and writes its `begin`
    /// line; time 0 is now.
    pub fn create(path: &Path) -> Result<Recorder> {
        let file = File::create(path).with_context(|| format!("creating history file {}", path.display()))?;
        let recorder = Recorder {
            start: Instant::now(),
            path: path.to_path_buf(),
            out: Mutex::new(BufWriter::new(file)),
        };
        recorder.record(&HistoryLine::Begin { time: 0 });
        Ok(recorder)
    }

    /// Writes the `end` line: the drain ended (`drained`: with nothing left)
    /// and the `committed` lines are written, so the history is complete.
    pub fn end(&self, drained: bool) {
        self.record(&HistoryLine::End {
            time: self.now(),
            drained,
        });
    }

    /// Nanoseconds since the run started (the history's `time`).
    pub fn now(&self) -> i64 {
        self.start.elapsed().as_nanos() as i64
    }

    /// Where the history is written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one history line and flushes it to the file.
    pub fn record(&self, event: &HistoryLine) {
        let mut line = event.to_json();
        line.push('\n');
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        // A full disk must not kill the run silently: report once per failure.
        if let Err(e) = out.write_all(line.as_bytes()).and_then(|_| out.flush()) {
            tracing::error!("writing the history {}: {e}", self.path.display());
        }
    }
}
