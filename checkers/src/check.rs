//! The checks: a compact per-op index built from the parsed lines as they stream
//! in (in any order), then one pass over it that counts every anomaly
//! docs/anomalies.md defines.
//!
//! Memory is what matters for long runs: each op costs one `OpState`
//! (88 bytes) plus its slot in the op-id map; keys are interned and event ids
//! kept as 128-bit values (UUIDs exactly, other strings by fingerprint).

use crate::anomaly::Anomaly;
use crate::event_id::{fingerprint, parse_uuid, uuid_text, EventId};
use crate::history::{FaultPhase, LineError, Outcome, ParsedLine};
use crate::op_table::{Handle, OpTable, COMMITTED, DISTINCT_EVENTS, INVOKED, NONE_KEY, NONE_TIME, NO_SEQ};
use crate::results::{
    Anomalies, CheckResult, DeliveryRef, Example, FailedFault, FaultWindow, Latency, OpCounts, Verdict,
};
use rustc_hash::FxHashMap;
use std::borrow::Cow;
use std::collections::BTreeMap;

/// How to judge a history.
#[derive(Debug, Clone, Copy)]
pub struct CheckOptions {
    /// Duplicates (same event id) are violations too.
    pub exactly_once: bool,
    /// Examples kept per anomaly kind.
    pub max_examples: usize,
    /// Judge a history with a `begin` line and no `end` line as if it were
    /// complete (instead of `unknown`).
    pub assume_complete: bool,
    /// Judge per-key order (`reorder`); off when the records are not keyed
    /// by the business key, so Kafka gives no order between them.
    pub per_key_order: bool,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            exactly_once: false,
            max_examples: 5,
            assume_complete: false,
            per_key_order: true,
        }
    }
}

/// Accumulates parsed lines (in any order) and judges them with [`HistoryIndex::finish`].
pub struct HistoryIndex {
    ops: OpTable,
    keys: FxHashMap<Box<str>, u32>,
    /// Non-UUID event ids by fingerprint, for examples.
    event_text: FxHashMap<EventId, Box<str>>,
    /// Further distinct event ids of ops delivered with more than one (bounded per op).
    extra_events: FxHashMap<Handle, Vec<EventId>>,
    unattributed: Vec<(Option<u32>, EventId, DeliveryRef)>,
    unattributed_count: u64,
    reads: Vec<(u32, Option<u64>, i64)>,
    nemesis: Vec<(Box<str>, FaultPhase, i64)>,
    failed_faults: Vec<FailedFault>,
    begin: bool,
    end: bool,
    committed_lines: u64,
    deliveries: u64,
    max_time: i64,
}

impl Default for HistoryIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl HistoryIndex {
    /// An empty index.
    pub fn new() -> Self {
        HistoryIndex {
            ops: OpTable::default(),
            keys: FxHashMap::default(),
            event_text: FxHashMap::default(),
            extra_events: FxHashMap::default(),
            unattributed: Vec::new(),
            unattributed_count: 0,
            reads: Vec::new(),
            nemesis: Vec::new(),
            failed_faults: Vec::new(),
            begin: false,
            end: false,
            committed_lines: 0,
            deliveries: 0,
            max_time: 0,
        }
    }

    fn intern_key(&mut self, key: &str) -> u32 {
        if let Some(&k) = self.keys.get(key) {
            return k;
        }
        let k = self.keys.len() as u32;
        self.keys.insert(key.into(), k);
        k
    }

    fn event_id(&mut self, text: &str) -> EventId {
        parse_uuid(text).unwrap_or_else(|| {
            let id = fingerprint(text);
            self.event_text.entry(id).or_insert_with(|| text.into());
            id
        })
    }

    fn state(&mut self, op: u64) -> Handle {
        self.ops.slot(op)
    }

    fn see_time(&mut self, t: i64) {
        self.max_time = self.max_time.max(t);
    }

    /// Adds one parsed line. Refuses lines that contradict earlier ones
    /// (an op invoked or completed twice).
    pub fn add(&mut self, line: ParsedLine<'_>) -> Result<(), LineError> {
        match line {
            ParsedLine::Invoke { op, key, seq, time } => {
                self.see_time(time);
                let key = self.intern_key(&key);
                let i = self.state(op);
                let s = self.ops.get_mut(i);
                if s.is(INVOKED) {
                    return Err(LineError(format!(
                        "op {op} is invoked a second time; op ids must be unique within a run"
                    )));
                }
                s.flags |= INVOKED;
                s.key = key;
                s.seq = seq;
                s.invoke_time = time;
            }
            ParsedLine::Complete { op, outcome, time } => {
                self.see_time(time);
                let i = self.state(op);
                let s = self.ops.get_mut(i);
                if let Some(earlier) = s.outcome() {
                    return Err(LineError(format!(
                        "op {op} completes a second time (`{}` after `{}`); each op has one completion",
                        outcome.as_str(),
                        earlier.as_str()
                    )));
                }
                s.outcome = outcome as u8 + 1;
                s.complete_time = time;
            }
            ParsedLine::Deliver {
                op,
                event,
                key,
                seq,
                partition,
                offset,
                time,
            } => {
                self.see_time(time);
                self.deliveries += 1;
                let event = self.event_id(&event);
                let Some(op) = op else {
                    let key = key.map(|k| self.intern_key(&k));
                    self.unattributed_count += 1;
                    if self.unattributed.len() < 16 {
                        self.unattributed.push((
                            key,
                            event,
                            DeliveryRef {
                                partition,
                                offset,
                                time,
                            },
                        ));
                    }
                    return Ok(());
                };
                let key = match key {
                    Some(k) => self.intern_key(&k),
                    None => NONE_KEY,
                };
                let i = self.state(op);
                let s = self.ops.get_mut(i);
                if s.key == NONE_KEY {
                    s.key = key; // an invoke, when it comes, sets the op's own key
                }
                if s.deliveries == 0 {
                    s.event = event;
                    s.first_time = time;
                    s.log_partition = partition;
                    s.log_offset = offset;
                    s.log_seq = seq.unwrap_or(NO_SEQ);
                } else {
                    s.first_time = s.first_time.min(time);
                    if (partition, offset) < (s.log_partition, s.log_offset) {
                        s.log_partition = partition;
                        s.log_offset = offset;
                        s.log_seq = seq.unwrap_or(NO_SEQ);
                    }
                    if event != s.event {
                        s.flags |= DISTINCT_EVENTS;
                        let first = s.event;
                        let extra = self.extra_events.entry(i).or_default();
                        if !extra.contains(&event) && extra.len() < 8 && event != first {
                            extra.push(event);
                        }
                    }
                }
                s.deliveries = s.deliveries.saturating_add(1);
            }
            ParsedLine::Nemesis {
                fault,
                phase,
                time,
                error,
            } => {
                self.see_time(time);
                if phase == FaultPhase::Failed {
                    self.failed_faults.push(FailedFault {
                        fault: fault.into(),
                        time,
                        error: error.map(Cow::into_owned),
                    });
                } else {
                    self.nemesis.push((fault.into(), phase, time));
                }
            }
            ParsedLine::Read {
                key,
                seq,
                invoke_time,
                time,
            } => {
                self.see_time(time);
                let key = self.intern_key(&key);
                self.reads.push((key, seq, invoke_time));
            }
            ParsedLine::Committed { op } => {
                self.committed_lines += 1;
                let i = self.state(op);
                self.ops.get_mut(i).flags |= COMMITTED;
            }
            ParsedLine::Begin { time } => {
                self.see_time(time);
                self.begin = true;
            }
            ParsedLine::End { time } => {
                self.see_time(time);
                self.end = true;
            }
        }
        Ok(())
    }

    /// Starts fetching the state of the op `line` is about into the cache,
    /// for a line [`HistoryIndex::add`] will get soon.
    pub(crate) fn prefetch(&self, line: &ParsedLine<'_>) {
        if let Some(op) = line.op() {
            self.ops.prefetch(op);
        }
    }

    /// Ops that have a completion or `committed` line but no `invoke`: the
    /// history is inconsistent. Returns (op id, which line type) for the first few.
    pub fn orphans(&self) -> Vec<(u64, &'static str)> {
        let mut out = Vec::new();
        for (h, s) in self.ops.iter() {
            let op = self.ops.op_id(h);
            if s.is(INVOKED) {
                continue;
            }
            let what = match s.outcome() {
                Some(o) => o.as_str(),
                None if s.is(COMMITTED) => "committed",
                None => continue,
            };
            out.push((op, what));
            if out.len() == 5 {
                break;
            }
        }
        out
    }

    /// Judges everything added so far.
    pub fn finish(self, options: CheckOptions) -> CheckResult {
        let key_names = {
            let mut names = vec![String::new(); self.keys.len()];
            for (name, &k) in &self.keys {
                names[k as usize] = name.to_string();
            }
            names
        };
        let committed_from_lines = self.committed_lines > 0;
        // Unattributed deliveries beyond those kept for examples are counted here; `found` counts the rest.
        let mut anomalies = Anomalies {
            unexpected: self.unattributed_count - self.unattributed.len() as u64,
            ..Anomalies::default()
        };
        let mut counts = OpCounts::default();
        let mut examples: BTreeMap<Anomaly, Vec<Example>> = BTreeMap::new();
        let mut latencies: Vec<i64> = Vec::new();
        let seconds = (self.max_time.max(0) / 1_000_000_000) as usize + 1;
        let mut unseen_delta = vec![0i64; seconds + 1];
        let second_of = |t: i64| ((t.max(0) / 1_000_000_000) as usize).min(seconds);
        let mut ordered: Vec<(u32, i32, i64, Handle)> = Vec::new();

        let event_str = |id: &EventId| -> String {
            match self.event_text.get(id) {
                Some(t) => t.to_string(),
                None => uuid_text(id),
            }
        };
        let example = |i: Handle, detail: Option<String>| -> Example {
            let s = self.ops.get(i);
            let mut events = Vec::new();
            if s.deliveries > 0 {
                events.push(event_str(&s.event));
                if let Some(extra) = self.extra_events.get(&i) {
                    events.extend(extra.iter().map(event_str));
                }
            }
            Example {
                op: Some(self.ops.op_id(i)),
                key: (s.key != NONE_KEY).then(|| key_names[s.key as usize].clone()),
                seq: (s.seq != NO_SEQ).then_some(s.seq),
                outcome: s.outcome(),
                committed: Some(if committed_from_lines {
                    s.is(COMMITTED)
                } else {
                    s.outcome == 1
                }),
                events,
                deliveries: s.deliveries as u64,
                first_delivery: (s.deliveries > 0).then_some(DeliveryRef {
                    partition: s.log_partition,
                    offset: s.log_offset,
                    time: s.first_time,
                }),
                invoke_time: (s.invoke_time != NONE_TIME).then_some(s.invoke_time),
                complete_time: (s.complete_time != NONE_TIME).then_some(s.complete_time),
                detail,
                trail: None,
            }
        };
        // Counts `n` occurrences of an anomaly and keeps an example while there is room.
        // The earliest time of each kind's anomalous events (an op's invoke, a
        // record's or reordered delivery's time, a read's start): how soon a bug bites.
        let mut first_at: BTreeMap<Anomaly, i64> = BTreeMap::new();
        let mut found = |kind: Anomaly, n: u64, at: i64, make: &dyn Fn() -> Example| {
            *anomalies.get_mut(kind) += n;
            if at != NONE_TIME {
                let t = first_at.entry(kind).or_insert(at);
                *t = (*t).min(at);
            }
            let list = examples.entry(kind).or_default();
            if list.len() < options.max_examples {
                list.push(make());
            }
        };

        for (key, event, at) in &self.unattributed {
            found(Anomaly::Unexpected, 1, at.time, &|| Example {
                key: key.map(|k| key_names[k as usize].clone()),
                events: vec![event_str(event)],
                deliveries: 1,
                first_delivery: Some(at.clone()),
                detail: Some("the record names no op".into()),
                ..Example::default()
            });
        }

        // (ack time, first delivery or MAX when never) of every ok op, for the
        // fault windows' time to recover; only kept when there are windows.
        let has_faults = !self.nemesis.is_empty();
        let mut acked: Vec<(i64, i64)> = Vec::new();
        for (i, &s) in self.ops.iter() {
            if !s.is(INVOKED) {
                if s.deliveries > 0 {
                    found(Anomaly::Unexpected, s.deliveries as u64, s.first_time, &|| {
                        example(i, Some("no invoke line for this op".into()))
                    });
                }
                continue;
            }
            counts.invoked += 1;
            let ok = s.outcome == 1;
            match s.outcome() {
                Some(Outcome::Ok) => counts.ok += 1,
                Some(Outcome::Fail) => counts.fail += 1,
                Some(Outcome::Info) => counts.info += 1,
                None => counts.pending += 1,
            }
            let committed = if committed_from_lines { s.is(COMMITTED) } else { ok };
            counts.committed += committed as u64;
            let delivered = s.deliveries > 0;
            if (ok || committed) && !delivered {
                found(Anomaly::Lost, 1, s.invoke_time, &|| example(i, None));
            }
            if delivered && !committed {
                found(Anomaly::Phantom, 1, s.invoke_time, &|| example(i, None));
            }
            if s.deliveries > 1 {
                if s.is(DISTINCT_EVENTS) {
                    found(Anomaly::DuplicateBeyondIdempotency, 1, s.invoke_time, &|| {
                        example(i, None)
                    });
                } else {
                    found(Anomaly::Duplicate, 1, s.invoke_time, &|| example(i, None));
                }
            }
            if committed_from_lines && ok && !s.is(COMMITTED) {
                found(Anomaly::LostCommit, 1, s.invoke_time, &|| example(i, None));
            }
            if ok {
                if has_faults {
                    acked.push((s.complete_time, if delivered { s.first_time } else { i64::MAX }));
                }
                unseen_delta[second_of(s.complete_time)] += 1;
                if delivered {
                    latencies.push((s.first_time - s.complete_time).max(0));
                    unseen_delta[second_of(s.first_time.max(s.complete_time))] -= 1;
                    ordered.push((s.key, s.log_partition, s.log_offset, i));
                }
            }
        }

        // Reorder: per key, first deliveries of ok ops in log order.
        if !options.per_key_order {
            ordered.clear();
        }
        ordered.sort_unstable();
        let mut current_key = NONE_KEY;
        let mut highest: Option<(u64, Handle)> = None;
        for &(_, _, _, i) in &ordered {
            let s = self.ops.get(i);
            if s.key != current_key {
                current_key = s.key;
                highest = None;
            }
            let seq = s.delivery_seq();
            match highest {
                Some((h, before)) if seq < h => {
                    found(Anomaly::Reorder, 1, s.first_time, &|| {
                        let b = self.ops.get(before);
                        example(
                            i,
                            Some(format!(
                                "seq {seq} delivered at {}/{} after seq {h} (op {}) at {}/{}",
                                s.log_partition,
                                s.log_offset,
                                self.ops.op_id(before),
                                b.log_partition,
                                b.log_offset
                            )),
                        )
                    });
                }
                Some((h, _)) if seq <= h => {}
                _ => highest = Some((seq, i)),
            }
        }
        drop(ordered);

        // Stale reads: a read must see at least the highest seq acknowledged before it began.
        if !self.reads.is_empty() {
            let mut acked: Vec<(u32, i64, u64)> = Vec::new();
            for (_, s) in self.ops.iter() {
                if s.is(INVOKED) && s.outcome == 1 {
                    acked.push((s.key, s.complete_time, s.seq));
                }
            }
            acked.sort_unstable();
            let mut running = 0u64;
            let mut prefix_max: Vec<u64> = Vec::with_capacity(acked.len());
            for (n, a) in acked.iter().enumerate() {
                if n == 0 || acked[n - 1].0 != a.0 {
                    running = 0;
                }
                running = running.max(a.2 + 1);
                prefix_max.push(running);
            }
            for &(key, seq, invoke_time) in &self.reads {
                // Last acked op of this key that completed strictly before the read began.
                let end = acked.partition_point(|a| (a.0, a.1) < (key, invoke_time));
                if end == 0 || acked[end - 1].0 != key {
                    continue;
                }
                let required = prefix_max[end - 1] - 1;
                if seq.is_none_or(|s| s < required) {
                    found(Anomaly::StaleRead, 1, invoke_time, &|| Example {
                        key: Some(key_names[key as usize].clone()),
                        seq,
                        invoke_time: Some(invoke_time),
                        detail: Some(format!(
                            "read saw seq {}, but seq {required} was acknowledged before the read began",
                            seq.map_or("none".to_string(), |s| s.to_string())
                        )),
                        ..Example::default()
                    });
                }
            }
        }

        let mut unseen_per_second = Vec::with_capacity(seconds);
        let mut level = 0i64;
        for d in unseen_delta.iter().take(seconds) {
            level += d;
            unseen_per_second.push(level.max(0) as u64);
        }

        let mut faults = fault_windows(&self.nemesis);
        recovery_times(&mut faults, acked);
        let mut failed_faults = self.failed_faults;
        failed_faults.sort_by_key(|f| f.time);
        let violations = anomalies.violations(options.exactly_once);
        let first_violation_ns = violations.iter().filter_map(|k| first_at.get(k).copied()).min();
        let complete = (self.begin || self.end).then_some(self.end);
        let mut warnings = Vec::new();
        let verdict = if violations.is_empty() {
            Verdict::Valid
        } else {
            Verdict::Invalid
        };
        let (verdict, reason) = match complete {
            Some(false) if options.assume_complete => {
                warnings.push(
                    "the history has a `begin` line but no `end` line (the run was interrupted); judged as complete because --assume-complete was given"
                        .to_string(),
                );
                (verdict, None)
            }
            Some(false) => {
                let seen: Vec<String> = violations
                    .iter()
                    .map(|&k| format!("{} {}", k.name(), anomalies.get(k)))
                    .collect();
                (
                    Verdict::Unknown,
                    Some(format!(
                        "incomplete history: it has the recorder's `begin` line but no `end` line, so the run was interrupted before its drain ended ({} ops without a completion line); events may simply not have been delivered yet. {}Judge it as complete with --assume-complete",
                        counts.pending,
                        if seen.is_empty() {
                            "No violation so far. ".to_string()
                        } else {
                            format!("Judged as complete it would be invalid: {}. ", seen.join(", "))
                        }
                    )),
                )
            }
            _ => (verdict, None),
        };
        CheckResult {
            verdict,
            reason,
            valid: verdict == Verdict::Valid,
            anomalies,
            violations,
            first_violation_ns,
            exactly_once: options.exactly_once,
            per_key_order: options.per_key_order,
            committed_from: if committed_from_lines {
                "committed lines"
            } else {
                "ok (no committed lines)"
            }
            .into(),
            ops: counts,
            deliveries: self.deliveries,
            reads: self.reads.len() as u64,
            latency_ns: Latency::from_samples(&mut latencies),
            unseen_per_second,
            faults,
            failed_faults,
            complete,
            examples,
            lines: 0,
            warnings,
        }
    }
}

/// Pairs each fault's start with its next stop, in time order. Failed starts
/// never reach here: they are no window.
/// Sets each healed window's time to recover: from its stop until every op
/// acknowledged before the stop has been delivered (0 when all already were;
/// `None` when one never was). `acked` holds (ack time, first delivery time,
/// `i64::MAX` when never delivered).
fn recovery_times(windows: &mut [FaultWindow], mut acked: Vec<(i64, i64)>) {
    acked.sort_unstable();
    let mut latest = i64::MIN;
    let prefix_latest: Vec<i64> = acked
        .iter()
        .map(|&(_, delivered)| {
            latest = latest.max(delivered);
            latest
        })
        .collect();
    for w in windows.iter_mut() {
        let Some(stop) = w.stop else { continue };
        let before = acked.partition_point(|&(ack, _)| ack < stop);
        w.recovery_ns = match before.checked_sub(1).map(|i| prefix_latest[i]) {
            None => Some(0),
            Some(i64::MAX) => None,
            Some(t) => Some((t - stop).max(0)),
        };
    }
}

fn fault_windows(nemesis: &[(Box<str>, FaultPhase, i64)]) -> Vec<FaultWindow> {
    let mut sorted: Vec<&(Box<str>, FaultPhase, i64)> = nemesis.iter().collect();
    sorted.sort_by_key(|n| (n.2, n.1 == FaultPhase::Start));
    let mut open: Vec<FaultWindow> = Vec::new();
    let mut done: Vec<FaultWindow> = Vec::new();
    for (fault, phase, time) in sorted {
        match phase {
            FaultPhase::Start => open.push(FaultWindow {
                fault: fault.to_string(),
                start: *time,
                stop: None,
                recovery_ns: None,
            }),
            FaultPhase::Stop => {
                if let Some(pos) = open.iter().position(|w| *w.fault == **fault) {
                    let mut w = open.remove(pos);
                    w.stop = Some(*time);
                    done.push(w);
                }
            }
            FaultPhase::Failed => {}
        }
    }
    done.extend(open);
    done.sort_by_key(|w| w.start);
    done
}
