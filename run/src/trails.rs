//! Trails: how each example of an anomaly came about (docs/results.md#trail).
//!
//! Everything built from the run directory alone is the run record's
//! (`dualcheck_record::trails`, re-exported here); [`ask_traces`] adds the
//! implementation's own account of each op, asked while it still runs.

pub use record::trails::*;

use crate::app_process::Fleet;
use checkers::{Anomaly, CheckResult};
use record::run_dir::RunDir;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

/// How long one `GET /trace/{op}` may take.
pub const TRACE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long asking for every trace may take in all.
pub const TRACES_DEADLINE: Duration = Duration::from_secs(15);

/// Asks `process` for its account of every traced op (`GET /trace/{op}`),
/// within [`TRACES_DEADLINE`] in all, then adds the log lines naming the event
/// ids the accounts gave, and marks parked events ([`name_parked`]).
pub async fn ask_traces(result: &mut CheckResult, run_dir: &RunDir, fleet: &Fleet) {
    let examples = traced(result);
    let deadline = tokio::time::Instant::now() + TRACES_DEADLINE;
    let mut answers: HashMap<u64, Result<Option<serde_json::Value>, String>> = HashMap::new();
    for &(kind, i) in &examples {
        let Some(op) = result.examples[&kind][i].trail.as_ref().and_then(|t| t.op) else {
            continue;
        };
        if answers.contains_key(&op) {
            continue;
        }
        let process = fleet.tracer_of(op);
        let answer = match tokio::time::timeout_at(deadline, process.trace(op, TRACE_TIMEOUT)).await {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(e)) => Err(format!("{e:#}")),
            Err(_) => Err(format!("not asked: asking for traces took over {TRACES_DEADLINE:?}")),
        };
        answers.insert(op, answer);
    }
    let mut more_events: Vec<(Anomaly, usize, BTreeSet<String>)> = Vec::new();
    for &(kind, i) in &examples {
        let Some(trail) = result.examples.get_mut(&kind).and_then(|l| l[i].trail.as_mut()) else {
            continue;
        };
        let Some(op) = trail.op else {
            trail.trace_missing = Some("no op to ask about".into());
            continue;
        };
        match answers.get(&op) {
            Some(Ok(Some(v))) => {
                trail.trace = Some(v.clone());
                trail.trace_missing = None;
                let known: BTreeSet<&str> = trail.logs.iter().map(|l| l.text.as_str()).collect::<BTreeSet<_>>();
                let events: BTreeSet<String> = event_ids_in(v)
                    .into_iter()
                    .filter(|e| !known.iter().any(|t| t.contains(e.as_str())))
                    .collect();
                if !events.is_empty() {
                    more_events.push((kind, i, events));
                }
            }
            Some(Ok(None)) => {
                trail.trace_missing = Some("the implementation does not serve GET /trace/{op} (404)".into())
            }
            Some(Err(e)) => trail.trace_missing = Some(e.clone()),
            None => trail.trace_missing = Some("not asked".into()),
        }
    }
    // Log lines naming event ids only the account knew (e.g. of an event never delivered).
    if !more_events.is_empty() {
        let wanted: Vec<(Option<u64>, BTreeSet<String>)> =
            more_events.iter().map(|(_, _, e)| (None, e.clone())).collect();
        if let Ok(found) = log_lines(run_dir, &wanted) {
            for ((kind, i, _), lines) in more_events.iter().zip(found) {
                if let Some(trail) = result.examples.get_mut(kind).and_then(|l| l[*i].trail.as_mut()) {
                    for l in lines {
                        if trail.logs.len() < MAX_LOG_LINES && !trail.logs.contains(&l) {
                            trail.logs.push(l);
                        }
                    }
                    trail.logs.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
                }
            }
        }
    }
    name_parked(result);
}
