//! Trails: how each example of an anomaly came about (docs/results.md#trail).
//!
//! For every example of the kinds in [`TRAIL_KINDS`], its [`Trail`] holds the
//! op's history lines, the fault windows active between its invoke and the end
//! of the history, the implementation's own account of the op (`GET
//! /trace/{op}`, asked by the runner while the implementation still runs), and
//! the lines of `app.log` / `relay.log` that name the op or one of its event
//! ids. [`build`] does everything but the account (it needs only the run
//! directory, so `dualcheck report` can do it offline); the run crate's
//! `trails::ask_traces` adds the account (asking the running implementation),
//! then [`name_parked`] marks what the implementation parked.
//!
//! Everything is bounded: the examples are (`max_examples` per kind), and so
//! are the history lines and log lines kept per example.

use crate::run_dir::RunDir;
use checkers::{Anomaly, CheckResult, Example, FaultWindow, LogLine, Trail};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::BufRead;
use std::path::Path;

/// The anomaly kinds whose examples get a trail.
pub const TRAIL_KINDS: &[Anomaly] = &[
    Anomaly::Lost,
    Anomaly::Partial,
    Anomaly::Phantom,
    Anomaly::Reorder,
    Anomaly::DuplicateBeyondIdempotency,
    Anomaly::StaleRead,
];

/// History lines kept per trail (the first ones, in file order).
pub const MAX_HISTORY_LINES: usize = 24;
/// Log lines kept per trail (the first ones of each file, in file order).
pub const MAX_LOG_LINES: usize = 30;
/// Characters kept of one log line.
pub const MAX_LOG_LINE_CHARS: usize = 500;

/// The examples that get a trail, as (kind, index) pairs, in order.
pub fn traced(result: &CheckResult) -> Vec<(Anomaly, usize)> {
    let mut out = Vec::new();
    for &kind in TRAIL_KINDS {
        if let Some(list) = result.examples.get(&kind) {
            out.extend((0..list.len()).map(|i| (kind, i)));
        }
    }
    out
}

/// The fields of a history line a trail looks at.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    op: Option<u64>,
    #[serde(borrow)]
    key: Option<std::borrow::Cow<'a, str>>,
    seq: Option<u64>,
    event: Option<String>,
    invoke_time: Option<i64>,
    time: Option<i64>,
}

/// Reads the history line by line (unparseable lines are skipped: the check
/// has already judged the file).
fn for_each_line(history: &Path, mut f: impl FnMut(&str, Head<'_>)) -> std::io::Result<()> {
    let file = std::fs::File::open(history)?;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        if let Ok(head) = serde_json::from_str::<Head>(&line) {
            f(&line, head);
        }
    }
    Ok(())
}

/// For each stale read (key, invoke time): the op whose seq it should have
/// seen, the highest seq on the key acknowledged before the read began.
fn stale_read_ops(history: &Path, reads: &[(String, i64)]) -> std::io::Result<Vec<Option<u64>>> {
    if reads.is_empty() {
        return Ok(Vec::new());
    }
    let keys: BTreeSet<&str> = reads.iter().map(|(k, _)| k.as_str()).collect();
    let mut invoked: HashMap<u64, (String, u64)> = HashMap::new();
    let mut acked: Vec<(u64, i64)> = Vec::new();
    for_each_line(history, |_, h| match (&*h.kind, h.op) {
        ("invoke", Some(op)) => {
            if let (Some(k), Some(seq)) = (&h.key, h.seq) {
                if keys.contains(&**k) {
                    invoked.insert(op, (k.to_string(), seq));
                }
            }
        }
        ("ok", Some(op)) => acked.push((op, h.time.unwrap_or(0))),
        _ => {}
    })?;
    Ok(reads
        .iter()
        .map(|(key, invoke_time)| {
            acked
                .iter()
                .filter(|(_, t)| t < invoke_time)
                .filter_map(|(op, _)| invoked.get(op).filter(|(k, _)| k == key).map(|(_, s)| (*s, *op)))
                .max()
                .map(|(_, op)| op)
        })
        .collect())
}

/// Builds the trail of every example of [`TRAIL_KINDS`] in `result` from the
/// run directory: history lines, fault windows, log lines. The account of
/// the implementation is left out (`trace_missing` says it was not asked);
/// the run crate's `trails::ask_traces` adds it.
pub fn build(result: &mut CheckResult, run_dir: &RunDir, history: &Path) -> std::io::Result<()> {
    let examples = traced(result);
    if examples.is_empty() {
        return Ok(());
    }
    let end = history_end(result);
    // Stale reads have no op of their own: follow the op they should have seen.
    let stale: Vec<(usize, (String, i64))> = examples
        .iter()
        .filter(|(k, _)| *k == Anomaly::StaleRead)
        .filter_map(|&(k, i)| {
            let e = &result.examples[&k][i];
            Some((i, (e.key.clone()?, e.invoke_time?)))
        })
        .collect();
    let reads: Vec<(String, i64)> = stale.iter().map(|(_, r)| r.clone()).collect();
    let stale_ops: BTreeMap<usize, Option<u64>> = stale
        .iter()
        .map(|(i, _)| *i)
        .zip(stale_read_ops(history, &reads)?)
        .collect();

    let mut trails: Vec<Trail> = Vec::with_capacity(examples.len());
    let mut ops: BTreeSet<u64> = BTreeSet::new();
    for &(kind, i) in &examples {
        let e = &result.examples[&kind][i];
        let op = if kind == Anomaly::StaleRead {
            stale_ops.get(&i).copied().flatten()
        } else {
            e.op
        };
        ops.extend(op);
        let from = e.invoke_time.unwrap_or(0);
        trails.push(Trail {
            op,
            faults: active_between(&result.faults, from, end),
            trace_missing: Some("not asked (the report was made without the running implementation)".into()),
            ..Trail::default()
        });
    }

    // One pass over the history: each op's lines, and the stale reads' own lines.
    let mut lines_of: HashMap<u64, Vec<serde_json::Value>> = HashMap::new();
    let mut events_of: HashMap<u64, BTreeSet<String>> = HashMap::new();
    let mut read_lines: HashMap<(String, i64), serde_json::Value> = HashMap::new();
    for_each_line(history, |line, h| {
        if let Some(op) = h.op.filter(|op| ops.contains(op)) {
            if let Some(ev) = &h.event {
                events_of.entry(op).or_default().insert(ev.clone());
            }
            let kept = lines_of.entry(op).or_default();
            if kept.len() < MAX_HISTORY_LINES {
                if let Ok(v) = serde_json::from_str(line) {
                    kept.push(v);
                }
            }
        } else if h.kind == "read" {
            if let (Some(k), Some(t)) = (&h.key, h.invoke_time) {
                let id = (k.to_string(), t);
                if reads.contains(&id) {
                    if let Ok(v) = serde_json::from_str(line) {
                        read_lines.insert(id, v);
                    }
                }
            }
        }
    })?;
    for (&(kind, i), trail) in examples.iter().zip(trails.iter_mut()) {
        let e = &result.examples[&kind][i];
        if kind == Anomaly::StaleRead {
            if let (Some(k), Some(t)) = (&e.key, e.invoke_time) {
                trail.history.extend(read_lines.get(&(k.clone(), t)).cloned());
            }
        }
        if let Some(op) = trail.op {
            trail.history.extend(lines_of.get(&op).cloned().unwrap_or_default());
        }
    }

    // Log lines naming the op or one of its event ids.
    let wanted: Vec<(Option<u64>, BTreeSet<String>)> = examples
        .iter()
        .zip(&trails)
        .map(|(&(kind, i), t)| {
            let mut events: BTreeSet<String> = result.examples[&kind][i].events.iter().cloned().collect();
            if let Some(op) = t.op {
                events.extend(events_of.get(&op).cloned().unwrap_or_default());
            }
            (t.op, events)
        })
        .collect();
    let logs = log_lines(run_dir, &wanted)?;
    for (trail, found) in trails.iter_mut().zip(logs) {
        trail.logs = found;
    }
    for (&(kind, i), trail) in examples.iter().zip(trails) {
        if let Some(list) = result.examples.get_mut(&kind) {
            list[i].trail = Some(trail);
        }
    }
    Ok(())
}

/// The latest time the check saw: the end of the unseen series, or of the last fault window.
fn history_end(result: &CheckResult) -> i64 {
    let series_end = result.unseen_per_second.len() as i64 * 1_000_000_000;
    result
        .faults
        .iter()
        .map(|w| w.stop.unwrap_or(w.start))
        .max()
        .unwrap_or(0)
        .max(series_end)
}

/// Fault windows active at some moment in `[from, end]`.
pub fn active_between(faults: &[FaultWindow], from: i64, end: i64) -> Vec<FaultWindow> {
    faults
        .iter()
        .filter(|w| w.start <= end && w.stop.is_none_or(|s| s >= from))
        .cloned()
        .collect()
}

/// Whether `line` names op `op`: `op` as a word, then optional quotes, `:`,
/// `=`, `#` or spaces, then exactly the number (`op 17`, `op=17`, `"op":17`).
pub fn names_op(line: &str, op: u64) -> bool {
    ops_named(line).any(|o| o == op)
}

/// Every op number `line` names (see [`names_op`]).
fn ops_named(line: &str) -> impl Iterator<Item = u64> + '_ {
    let bytes = line.as_bytes();
    line.match_indices("op").filter_map(move |(at, _)| {
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
            return None;
        }
        let mut j = at + 2;
        let mut skipped = 0;
        while j < bytes.len() && matches!(bytes[j], b'"' | b':' | b'=' | b' ' | b'#') && skipped < 4 {
            j += 1;
            skipped += 1;
        }
        if skipped == 0 {
            return None; // `ops`, `opt`, `op17`...
        }
        let start = j;
        while j < bytes.len() && bytes[j].is_ascii_digit() {
            j += 1;
        }
        if j == start || (j < bytes.len() && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'.')) {
            return None;
        }
        line[start..j].parse().ok()
    })
}

/// For each (op, event ids): the lines of `app.log` and `relay.log` (and of
/// the further instances' `app-N.log`, `relay-N.log`) that name the op or
/// one of the event ids, at most [`MAX_LOG_LINES`] each.
pub fn log_lines(run_dir: &RunDir, wanted: &[(Option<u64>, BTreeSet<String>)]) -> std::io::Result<Vec<Vec<LogLine>>> {
    let mut out: Vec<Vec<LogLine>> = vec![Vec::new(); wanted.len()];
    let by_op: HashMap<u64, Vec<usize>> = wanted.iter().enumerate().fold(HashMap::new(), |mut m, (i, (op, _))| {
        if let Some(op) = op {
            m.entry(*op).or_default().push(i);
        }
        m
    });
    for path in run_dir.implementation_logs() {
        let file = path
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or_default()
            .to_string();
        let Ok(f) = std::fs::File::open(&path) else {
            continue;
        };
        let mut reader = std::io::BufReader::new(f);
        let mut buf = Vec::new();
        let mut number = 0u64;
        loop {
            buf.clear();
            if reader.read_until(b'\n', &mut buf)? == 0 {
                break;
            }
            number += 1;
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end();
            let mut hits: BTreeSet<usize> = ops_named(line)
                .filter_map(|op| by_op.get(&op))
                .flatten()
                .copied()
                .collect();
            for (i, (_, events)) in wanted.iter().enumerate() {
                if events.iter().any(|e| line.contains(e.as_str())) {
                    hits.insert(i);
                }
            }
            for i in hits {
                if out[i].len() < MAX_LOG_LINES {
                    out[i].push(LogLine {
                        file: file.clone(),
                        line: number,
                        text: line.chars().take(MAX_LOG_LINE_CHARS).collect(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Event ids an account names: string values of fields called `event`,
/// `event_id` or `events`, anywhere in it.
pub fn event_ids_in(v: &serde_json::Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    fn walk(v: &serde_json::Value, out: &mut BTreeSet<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m {
                    if matches!(k.as_str(), "event" | "event_id" | "events") {
                        match x {
                            serde_json::Value::String(s) if s.len() >= 8 => {
                                out.insert(s.clone());
                            }
                            serde_json::Value::Array(a) => {
                                out.extend(a.iter().filter_map(|s| s.as_str()).map(str::to_string))
                            }
                            _ => {}
                        }
                    }
                    walk(x, out);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    walk(v, &mut out);
    out
}

/// Marks the trails whose account says `"state":"parked"` and gives their
/// example a detail saying so (with the account's `last_error`): a parked
/// event is not a silent loss.
pub fn name_parked(result: &mut CheckResult) {
    for list in result.examples.values_mut() {
        for e in list.iter_mut() {
            mark_parked(e);
        }
    }
}

fn mark_parked(e: &mut Example) {
    let Some(trail) = e.trail.as_mut() else {
        return;
    };
    let Some(trace) = &trail.trace else {
        return;
    };
    if trace.get("state").and_then(|s| s.as_str()) != Some("parked") {
        return;
    }
    trail.parked = true;
    if e.detail.is_none() {
        let attempts = trace.get("attempts").and_then(|a| a.as_i64());
        let error = trace
            .get("last_error")
            .and_then(|a| a.as_str())
            .unwrap_or("no error given");
        e.detail = Some(match attempts {
            Some(n) => format!("parked by the implementation after {n} attempt(s): {error}"),
            None => format!("parked by the implementation: {error}"),
        });
    }
}

/// One line per trail, for the text summary and the report: where to look.
pub fn one_line(t: &Trail) -> String {
    let mut parts = Vec::new();
    if let Some(op) = t.op {
        parts.push(format!("op {op}"));
    }
    if t.parked {
        parts.push("PARKED by the implementation".into());
    }
    if !t.faults.is_empty() {
        let names: BTreeSet<&str> = t.faults.iter().map(|w| w.fault.as_str()).collect();
        parts.push(format!(
            "faults since its invoke: {}",
            names.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    match (&t.trace, &t.trace_missing) {
        (Some(v), _) => parts.push(format!("account: {v}")),
        (None, Some(why)) => parts.push(format!("no account ({why})")),
        _ => {}
    }
    parts.push(format!(
        "{} history line(s), {} log line(s)",
        t.history.len(),
        t.logs.len()
    ));
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_are_named_as_words_with_their_whole_number() {
        assert!(names_op("naive: op 17 committed but its event is lost", 17));
        assert!(names_op(r#"{"op":17,"seq":2}"#, 17));
        assert!(names_op("parking outbox event 4 (op=17, key k1)", 17));
        assert!(!names_op("naive: op 170 committed", 17));
        assert!(!names_op("naive: op 17.5", 17));
        assert!(!names_op("stop 17", 17));
        assert!(!names_op("ops 17", 17));
        assert!(!names_op("op", 17));
        assert_eq!(
            ops_named("op 1, op=2, top 3, \"op\": 4").collect::<Vec<_>>(),
            vec![1, 2, 4]
        );
    }

    #[test]
    fn windows_count_when_they_overlap_the_span() {
        let w = |start, stop| FaultWindow {
            fault: "f".into(),
            start,
            stop,
            recovery_ns: None,
        };
        let faults = vec![w(0, Some(5)), w(6, Some(9)), w(12, None), w(30, Some(40))];
        let active = active_between(&faults, 7, 20);
        assert_eq!(active, vec![w(6, Some(9)), w(12, None)]);
    }

    #[test]
    fn a_parked_account_names_the_example() {
        let mut e = Example {
            op: Some(3),
            trail: Some(Trail {
                op: Some(3),
                trace: Some(serde_json::json!({"state":"parked","attempts":1,"last_error":"publish failed: boom"})),
                ..Trail::default()
            }),
            ..Example::default()
        };
        mark_parked(&mut e);
        assert!(e.trail.as_ref().unwrap().parked);
        assert_eq!(
            e.detail.as_deref(),
            Some("parked by the implementation after 1 attempt(s): publish failed: boom")
        );
        let mut pending = Example {
            trail: Some(Trail {
                trace: Some(serde_json::json!({"state":"pending"})),
                ..Trail::default()
            }),
            ..Example::default()
        };
        mark_parked(&mut pending);
        assert!(!pending.trail.unwrap().parked && pending.detail.is_none());
    }

    #[test]
    fn a_trail_gathers_the_ops_lines_faults_and_log_lines() {
        let dir = std::env::temp_dir().join(format!("dualcheck-trails-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let history = dir.join(crate::run_dir::HISTORY);
        let lines = [
            r#"{"type":"invoke","op":1,"process":0,"key":"k1","seq":0,"time":10}"#,
            r#"{"type":"invoke","op":2,"process":1,"key":"k2","seq":0,"time":11}"#,
            r#"{"type":"nemesis","fault":"pg-kill","phase":"start","time":1}"#,
            r#"{"type":"nemesis","fault":"pg-kill","phase":"stop","time":5}"#,
            r#"{"type":"nemesis","fault":"kafka-partition","phase":"start","time":15}"#,
            r#"{"type":"ok","op":1,"process":0,"time":20}"#,
            r#"{"type":"ok","op":2,"process":1,"time":21}"#,
            r#"{"type":"deliver","op":2,"event":"e-2","key":"k2","seq":0,"topic":"orders","partition":0,"offset":0,"time":30}"#,
            r#"{"type":"nemesis","fault":"kafka-partition","phase":"stop","time":40}"#,
            r#"{"type":"read","key":"k1","seq":null,"invoke_time":50,"time":51}"#,
            r#"{"type":"committed","op":1}"#,
            r#"{"type":"committed","op":2}"#,
        ];
        std::fs::write(&history, lines.join("\n") + "\n").unwrap();
        std::fs::write(
            dir.join(crate::run_dir::APP_LOG),
            "starting\nnaive: op 1 committed but its event is lost: publish failed: timed out\nop 10 fine\nevent e-2 sent\n",
        )
        .unwrap();
        let mut result = checkers::check_file(&history, checkers::CheckOptions::default()).unwrap();
        assert_eq!((result.anomalies.lost, result.anomalies.stale_read), (1, 1));
        build(&mut result, &RunDir::at(&dir), &history).unwrap();

        let lost = result.examples[&Anomaly::Lost][0].trail.clone().unwrap();
        assert_eq!(lost.op, Some(1));
        let types: Vec<&str> = lost.history.iter().map(|l| l["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["invoke", "ok", "committed"]);
        let faults: Vec<&str> = lost.faults.iter().map(|w| w.fault.as_str()).collect();
        assert_eq!(faults, ["kafka-partition"], "pg-kill ended before the invoke");
        assert_eq!(lost.logs.len(), 1, "{:?}", lost.logs);
        assert_eq!((lost.logs[0].file.as_str(), lost.logs[0].line), ("app.log", 2));
        assert!(lost.trace.is_none() && lost.trace_missing.is_some());

        // The stale read follows op 1 (seq 0 of k1, acknowledged before the read).
        let stale = result.examples[&Anomaly::StaleRead][0].trail.clone().unwrap();
        assert_eq!(stale.op, Some(1));
        assert_eq!(stale.history[0]["type"], "read");
        assert_eq!(stale.history.len(), 4);
        assert!(!result.examples.contains_key(&Anomaly::Duplicate));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn event_ids_are_found_anywhere_in_an_account() {
        let v = serde_json::json!({"outbox": {"event_id": "ea9cb0a0-44b2-4152-a6e3-9eef7d3ddbf9"},
                                   "publish": [{"event": "6a672bf0-5289-4802-8058-250ce9b6f92d"}]});
        assert_eq!(event_ids_in(&v).len(), 2);
    }
}
