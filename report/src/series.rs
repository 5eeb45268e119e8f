//! Per-op time series read back from a history: when each op was invoked and
//! completed, how, and when its first delivery arrived. The plots are drawn
//! from these.

use checkers::{HistoryError, Outcome, ParsedLine};
use std::collections::HashMap;
use std::path::Path;

/// One op as the plots see it.
#[derive(Debug, Clone, PartialEq)]
pub struct OpPoint {
    /// Op id.
    pub op: u64,
    /// Invoke time, ns since the run started.
    pub invoke: i64,
    /// Outcome and completion time (`None`: never completed).
    pub complete: Option<(Outcome, i64)>,
    /// Time of the earliest delivery the observer read (`None`: never delivered).
    pub first_delivery: Option<i64>,
    /// Whether a `committed` line names the op.
    pub committed_line: bool,
}

/// How a point is coloured in the latency plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PointKind {
    /// Acknowledged (or committed) and delivered.
    OkDelivered,
    /// Acknowledged (or committed) and never delivered: lost.
    OkLost,
    /// Outcome unknown (`info`, or no completion at all).
    Info,
    /// Certainly not applied (`fail`).
    Fail,
}

impl PointKind {
    /// All kinds, in legend order.
    pub const ALL: [PointKind; 4] = [
        PointKind::OkDelivered,
        PointKind::OkLost,
        PointKind::Info,
        PointKind::Fail,
    ];

    /// Legend label.
    pub fn label(self) -> &'static str {
        match self {
            PointKind::OkDelivered => "ok, delivered",
            PointKind::OkLost => "ok or committed, never delivered (lost)",
            PointKind::Info => "info (unknown outcome)",
            PointKind::Fail => "fail",
        }
    }
}

/// Everything the plots need from a history.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Every invoked op, in op order.
    pub ops: Vec<OpPoint>,
    /// Whether the history has any `committed` line (else committed means `ok`).
    pub has_committed_lines: bool,
    /// Time of every delivery line, ns (for the delivery rate).
    pub deliveries: Vec<i64>,
    /// Latest time seen on any line, ns.
    pub end: i64,
}

impl Series {
    /// Reads the history at `path`; errors name the file and line.
    pub fn read(path: &Path) -> Result<Series, HistoryError> {
        let mut ops: HashMap<u64, OpPoint> = HashMap::new();
        let mut committed: Vec<u64> = Vec::new();
        let mut completions: Vec<(u64, Outcome, i64)> = Vec::new();
        let mut firsts: HashMap<u64, i64> = HashMap::new();
        let mut s = Series::default();
        reader_loop(path, |record| match record {
            ParsedLine::Invoke { op, time, .. } => {
                s.end = s.end.max(time);
                ops.insert(
                    op,
                    OpPoint {
                        op,
                        invoke: time,
                        complete: None,
                        first_delivery: None,
                        committed_line: false,
                    },
                );
            }
            ParsedLine::Complete { op, outcome, time } => {
                s.end = s.end.max(time);
                completions.push((op, outcome, time));
            }
            ParsedLine::Deliver { op, time, .. } => {
                s.end = s.end.max(time);
                s.deliveries.push(time);
                if let Some(op) = op {
                    let t = firsts.entry(op).or_insert(time);
                    *t = (*t).min(time);
                }
            }
            ParsedLine::Nemesis { time, .. } => s.end = s.end.max(time),
            ParsedLine::Read { time, .. } => s.end = s.end.max(time),
            ParsedLine::Committed { op } => committed.push(op),
            ParsedLine::Begin { time } | ParsedLine::End { time } | ParsedLine::Restart { time } => {
                s.end = s.end.max(time)
            }
        })?;
        for (op, outcome, time) in completions {
            if let Some(p) = ops.get_mut(&op) {
                p.complete = Some((outcome, time));
            }
        }
        for (op, t) in firsts {
            if let Some(p) = ops.get_mut(&op) {
                p.first_delivery = Some(t);
            }
        }
        s.has_committed_lines = !committed.is_empty();
        for op in committed {
            if let Some(p) = ops.get_mut(&op) {
                p.committed_line = true;
            }
        }
        s.ops = ops.into_values().collect();
        s.ops.sort_by_key(|p| p.op);
        Ok(s)
    }

    /// Whether `p` counts as committed (docs/history.md: `ok` when there are no committed lines).
    pub fn committed(&self, p: &OpPoint) -> bool {
        if self.has_committed_lines {
            p.committed_line
        } else {
            matches!(p.complete, Some((Outcome::Ok, _)))
        }
    }

    /// The colour class of `p`.
    pub fn kind(&self, p: &OpPoint) -> PointKind {
        match p.complete {
            Some((Outcome::Fail, _)) => PointKind::Fail,
            Some((Outcome::Ok, _)) if p.first_delivery.is_some() => PointKind::OkDelivered,
            Some((Outcome::Ok, _)) => PointKind::OkLost,
            _ if self.committed(p) && p.first_delivery.is_none() => PointKind::OkLost,
            _ => PointKind::Info,
        }
    }

    /// Where `p` goes on the latency plot: (completion or invoke time in s,
    /// latency from completion to first delivery in ms, `None` when never delivered).
    pub fn latency_point(p: &OpPoint) -> (f64, Option<f64>) {
        let at = p.complete.map(|(_, t)| t).unwrap_or(p.invoke);
        let lat = p.first_delivery.map(|d| (d - at).max(0) as f64 / 1e6);
        (at as f64 / 1e9, lat)
    }

    /// Per-second counts of completions with `outcome` (index = second since start).
    pub fn per_second(&self, outcome: Outcome) -> Vec<u64> {
        bucket(
            self.ops
                .iter()
                .filter_map(|p| p.complete.filter(|(o, _)| *o == outcome).map(|(_, t)| t)),
            self.end,
        )
    }

    /// Per-second counts of first deliveries of invoked ops.
    pub fn first_deliveries_per_second(&self) -> Vec<u64> {
        bucket(self.ops.iter().filter_map(|p| p.first_delivery), self.end)
    }
}

/// Counts `times` (ns) into one-second buckets covering `0..=end`.
fn bucket(times: impl Iterator<Item = i64>, end: i64) -> Vec<u64> {
    let mut v = vec![0u64; (end.max(0) / 1_000_000_000) as usize + 1];
    for t in times {
        let i = (t.max(0) / 1_000_000_000) as usize;
        if i >= v.len() {
            v.resize(i + 1, 0);
        }
        v[i] += 1;
    }
    v
}

fn reader_loop(path: &Path, mut f: impl FnMut(ParsedLine<'_>)) -> Result<(), HistoryError> {
    checkers::reader::read_file(path, |_, record| {
        f(record);
        Ok(())
    })
    .map(|_| ())
}
