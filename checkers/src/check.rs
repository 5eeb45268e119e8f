//! The checks: a compact per-op index built from the parsed lines as they stream
//! in (in any order), then one pass over it that counts every anomaly
//! docs/anomalies.md defines.
//!
//! Memory is what matters for long runs: each op costs one `OpState` (64
//! bytes, one cache line) and its first event id (16 bytes) plus a bit in
//! the op-id map; keys are interned and event ids kept as 128-bit values
//! (UUIDs exactly, other strings by fingerprint). An op that publishes
//! several events keeps its event 0 there too, and the rest apart (the
//! index's `multi` table for what its invoke names, its shard's side table
//! for the deliveries of its other events), so one-event ops pay nothing for
//! them. Speed is the other half: lines are indexed on all cores (see
//! [`HistoryIndex`] and `ingest.rs`).

use crate::anomaly::Anomaly;
use crate::event_id::{fingerprint, parse_uuid, uuid_text, EventId};
use crate::history::{FaultPhase, LineError, OpEvents, Outcome, ParsedLine};
use crate::op_table::{
    shard_of, EventState, Handle, OpSlots, OpState, OpStore, SideEvents, COMMITTED, DISTINCT_EVENTS, INVOKED,
    MAX_SHARD_BITS, MULTI, NONE_KEY, NONE_TIME, NO_SEQ, SIDE,
};
use crate::results::{
    Anomalies, CheckResult, DeliveryRef, Example, FailedFault, FaultWindow, Latency, OpCounts, Verdict,
};
use rayon::slice::ParallelSliceMut;
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
///
/// Taking a line has two parts: what depends on the order of all lines
/// (which ops and keys exist, and the numbers they get; the lists of reads
/// and faults) is done by routing, in file order, one line after another;
/// what concerns one op only is done on the op's shard. Shards share
/// nothing, so a block of lines is applied on all cores at once, each shard
/// taking its lines in file order.
pub struct HistoryIndex {
    slots: OpSlots,
    shards: Vec<Shard>,
    shard_bits: u32,
    /// The number of each key of more than 15 bytes.
    keys: FxHashMap<Box<[u8]>, u32>,
    /// The number of each key of up to 15 bytes, by [`short_key`].
    short_keys: FxHashMap<u128, u32>,
    /// How many keys have a number.
    key_count: u32,
    /// Non-UUID event ids by fingerprint, for examples.
    event_text: FxHashMap<EventId, Box<str>>,
    unattributed: Vec<(Option<u32>, EventId, DeliveryRef)>,
    unattributed_count: u64,
    reads: Vec<(u32, Option<u64>, i64)>,
    nemesis: Vec<(Box<str>, FaultPhase, i64)>,
    failed_faults: Vec<FailedFault>,
    /// When the implementation restarted before the drain (a `restart` line).
    restart: Option<i64>,
    begin: bool,
    end: bool,
    committed_lines: u64,
    deliveries: u64,
    max_time: i64,
    /// The events of the ops whose invoke names more than their one event
    /// on their key (flagged `MULTI`); filled while routing, in file order.
    multi: FxHashMap<Handle, MultiOp>,
}

/// What an `invoke` line's `events` names, beyond one event on its key.
struct MultiOp {
    /// How many events the op publishes (indexes 0..count).
    count: u32,
    /// (key number, seq) of each event, by index; `None`: all on the op's
    /// own key at its own seq.
    places: Option<Box<[(u32, u64)]>>,
}

/// The key number and seq event `index` of an op belongs at: its place in
/// the invoke's `events` when it names one, else the op's own key and seq.
fn place(multi: Option<&MultiOp>, s: &OpState, index: u32) -> (u32, u64) {
    match multi
        .and_then(|m| m.places.as_deref())
        .and_then(|p| p.get(index as usize))
    {
        Some(&p) => p,
        None => (s.key, s.seq),
    }
}

/// The states of the ops of one shard.
struct Shard {
    store: OpStore,
    /// Further distinct event ids of ops delivered with more than one (bounded per op).
    extra_events: FxHashMap<Handle, Vec<EventId>>,
    /// The delivered events of index 1 and up, per op (flagged `SIDE`):
    /// apart, so that one-event ops' states stay one cache line.
    side: FxHashMap<Handle, SideEvents>,
    /// How many events `side` holds (to size the passes' vectors).
    side_count: usize,
    /// Ops with a completion or `committed` line and (so far) no `invoke`,
    /// so that a consistent history needs no pass to look for them.
    orphans: u64,
}

/// The kinds of [`Rec`]; `K_OK`, `K_FAIL` and `K_INFO` are `OpState::outcome`'s values.
pub(crate) const K_INVOKE: u8 = 0;
pub(crate) const K_OK: u8 = 1;
pub(crate) const K_FAIL: u8 = 2;
pub(crate) const K_INFO: u8 = 3;
pub(crate) const K_DELIVER: u8 = 4;
pub(crate) const K_COMMITTED: u8 = 5;
/// Any other line, kept whole beside the records until routed.
pub(crate) const K_OTHER: u8 = 6;
/// Nothing for the shards (a fault, a read, a mark, a delivery naming no op).
pub(crate) const K_SKIP: u8 = 7;

/// One line in the compact, fixed-size form lines are indexed in: made on
/// any core from a [`ParsedLine`], then routed (`op` becomes the handle,
/// `key` the key's number), then applied to the op's shard.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rec {
    /// The op id; once routed, its handle.
    pub(crate) op: u64,
    pub(crate) time: i64,
    /// `invoke` and `deliver`: the seq (`NO_SEQ`: none, as `OpState` keeps it).
    pub(crate) seq: u64,
    pub(crate) offset: i64,
    pub(crate) event: EventId,
    /// The key's number among the keys of its piece (`NONE_KEY`: no key);
    /// once routed, its number in the index.
    pub(crate) key: u32,
    pub(crate) partition: i32,
    /// `deliver`: which event of its op the record is. `invoke`: how many
    /// events the op publishes when the index's `multi` table is to hold
    /// them (routing puts them there), else 0.
    pub(crate) index: u32,
    pub(crate) kind: u8,
}

impl Rec {
    /// A record for the other lines: `K_OTHER` until routed, `K_SKIP` after.
    pub(crate) const SKIP: Rec = Rec {
        op: 0,
        time: 0,
        seq: NO_SEQ,
        offset: 0,
        event: [0, 0],
        key: NONE_KEY,
        partition: 0,
        index: 0,
        kind: K_SKIP,
    };

    /// The record of `line` when it has the common form, made without
    /// touching the index: an op's line whose key borrows from the history
    /// and whose event id is a UUID, and an `invoke` that names no `events`
    /// or only their count. `None` for any other line. `key_index`
    /// numbers the keys of the piece the line is in (see [`HistoryIndex::route`]).
    #[inline]
    pub(crate) fn common<'a>(line: &ParsedLine<'a>, mut key_index: impl FnMut(&'a str) -> u32) -> Option<Rec> {
        // An escaped key is a copy, not in the history: such lines are routed whole.
        let mut key_of = |key: &Cow<'a, str>| match key {
            Cow::Borrowed(k) => Some(key_index(k)),
            Cow::Owned(_) => None,
        };
        Some(match line {
            ParsedLine::Invoke {
                op,
                key,
                seq,
                time,
                events: None | Some(OpEvents::Count(_)),
            } => Rec {
                op: *op,
                time: *time,
                seq: *seq,
                key: key_of(key)?,
                index: match line {
                    ParsedLine::Invoke {
                        events: Some(OpEvents::Count(n)),
                        ..
                    } if *n > 1 => *n,
                    _ => 0,
                },
                kind: K_INVOKE,
                ..Rec::SKIP
            },
            ParsedLine::Complete { op, outcome, time } => Rec {
                op: *op,
                time: *time,
                kind: *outcome as u8 + 1,
                ..Rec::SKIP
            },
            ParsedLine::Deliver {
                op: Some(op),
                event,
                key,
                seq,
                partition,
                offset,
                time,
                index,
            } => Rec {
                op: *op,
                time: *time,
                seq: seq.unwrap_or(NO_SEQ),
                offset: *offset,
                event: parse_uuid(event)?,
                key: match key {
                    Some(k) => key_of(k)?,
                    None => NONE_KEY,
                },
                partition: *partition,
                index: *index,
                kind: K_DELIVER,
            },
            ParsedLine::Committed { op } => Rec {
                op: *op,
                kind: K_COMMITTED,
                ..Rec::SKIP
            },
            _ => return None,
        })
    }
}

impl Default for HistoryIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl HistoryIndex {
    /// An empty index, with a shard per core (up to 8).
    pub fn new() -> Self {
        let cores = rayon::current_num_threads().max(1);
        Self::with_shard_bits(cores.ilog2().min(MAX_SHARD_BITS))
    }

    /// An empty index with `1 << shard_bits` shards (the results never
    /// depend on how many).
    pub(crate) fn with_shard_bits(shard_bits: u32) -> Self {
        HistoryIndex {
            slots: OpSlots::default(),
            shards: (0..1 << shard_bits)
                .map(|_| Shard {
                    store: OpStore::new(shard_bits),
                    extra_events: FxHashMap::default(),
                    side: FxHashMap::default(),
                    side_count: 0,
                    orphans: 0,
                })
                .collect(),
            shard_bits,
            keys: FxHashMap::default(),
            short_keys: FxHashMap::default(),
            key_count: 0,
            event_text: FxHashMap::default(),
            unattributed: Vec::new(),
            unattributed_count: 0,
            reads: Vec::new(),
            nemesis: Vec::new(),
            failed_faults: Vec::new(),
            restart: None,
            begin: false,
            end: false,
            committed_lines: 0,
            deliveries: 0,
            max_time: 0,
            multi: FxHashMap::default(),
        }
    }

    fn intern_key(&mut self, key: &[u8]) -> u32 {
        let next = self.key_count;
        let k = match short_key(key) {
            Some(packed) => *self.short_keys.entry(packed).or_insert(next),
            None => match self.keys.get(key) {
                Some(&k) => k,
                None => *self.keys.entry(key.into()).or_insert(next),
            },
        };
        self.key_count += u32::from(k == next);
        k
    }

    fn event_id(&mut self, text: &str) -> EventId {
        parse_uuid(text).unwrap_or_else(|| {
            let id = fingerprint(text);
            self.event_text.entry(id).or_insert_with(|| text.into());
            id
        })
    }

    /// The state behind a handle.
    fn state(&self, h: Handle) -> &OpState {
        self.shards[shard_of(h, self.shard_bits)].store.get(h)
    }

    /// The delivered events of index 1 and up of op `h`, by index.
    fn side_events(&self, h: Handle) -> Cow<'_, [EventState]> {
        match self.shards[shard_of(h, self.shard_bits)].side.get(&h) {
            Some(side) => side.sorted(),
            None => Cow::Borrowed(&[]),
        }
    }

    /// (op, index, partition, offset, earliest time) of the event a reorder
    /// entry's word stands for (see [`entry_word`]). Only for the few examples.
    fn event_place(&self, word: u64, side_refs: &[(Handle, u32)]) -> (Handle, u32, i32, i64, i64) {
        let (h, index) = entry_event(word, side_refs);
        if index == 0 {
            let s = self.state(h);
            return (h, 0, s.log_partition, s.log_offset, s.first_time);
        }
        let shard = &self.shards[shard_of(h, self.shard_bits)];
        let e = shard
            .side
            .get(&h)
            .and_then(|side| side.get(index))
            .expect("a side reference names a delivered event");
        (h, index, e.log_partition, e.log_offset, e.first_time)
    }

    /// What an invoke's `events` names beyond one event on the op's key
    /// (`key`, `seq`), with the place keys numbered; `None` when nothing.
    fn multi_op(&mut self, events: OpEvents, key: u32, seq: u64) -> Option<MultiOp> {
        match events {
            OpEvents::Count(count) => (count > 1).then_some(MultiOp { count, places: None }),
            OpEvents::Each(list) => {
                let places: Box<[(u32, u64)]> = list
                    .iter()
                    .map(|p| (self.intern_key(p.key.as_bytes()), p.seq))
                    .collect();
                let count = u32::try_from(places.len()).unwrap_or(u32::MAX);
                let own = places.iter().all(|&p| p == (key, seq));
                match (count, own) {
                    (1, true) => None,
                    (_, true) => Some(MultiOp { count, places: None }),
                    _ => Some(MultiOp {
                        count,
                        places: Some(places),
                    }),
                }
            }
        }
    }

    /// Every op's handle and state, in the order examples are looked for in.
    fn ops(&self) -> impl Iterator<Item = (Handle, &OpState)> {
        self.slots.handles().map(|h| (h, self.state(h)))
    }

    /// Adds what records made by [`Rec::common`] say of the whole history
    /// regardless of their order: their last time, the `deliver` and
    /// `committed` lines among them.
    pub(crate) fn count_common(&mut self, max_time: i64, deliveries: u64, committed: u64) {
        self.max_time = self.max_time.max(max_time);
        self.deliveries += deliveries;
        self.committed_lines += committed;
    }

    /// Adds one parsed line. Refuses lines that contradict earlier ones
    /// (an op invoked or completed twice).
    pub fn add(&mut self, line: ParsedLine<'_>) -> Result<(), LineError> {
        let rec = self.route_line(line);
        let shard = shard_of(rec.op, self.shard_bits);
        self.shards[shard].apply(&rec, &self.slots)
    }

    /// The part of taking the records of one piece that depends on the
    /// order of all lines, done in file order: routes each of `recs` (made
    /// by [`Rec::common`] with `keys`, the piece's keys in the order first
    /// seen; or `K_OTHER` standing for the next of `others`) for
    /// [`HistoryIndex::apply`].
    ///
    /// A key is numbered when first seen in the file, as line by line: the
    /// piece's keys are looked up here once each, when their first line comes.
    pub(crate) fn route(&mut self, keys: &[&str], recs: &mut [Rec], others: Vec<ParsedLine<'_>>) {
        let mut others = others.into_iter();
        let mut numbers = vec![NONE_KEY; keys.len()];
        for r in recs {
            match r.kind {
                K_OTHER => *r = self.route_line(others.next().expect("one line per K_OTHER record")),
                kind => {
                    if (kind == K_INVOKE || kind == K_DELIVER) && r.key != NONE_KEY {
                        let number = &mut numbers[r.key as usize];
                        if *number == NONE_KEY {
                            *number = self.intern_key(keys[r.key as usize].as_bytes());
                        }
                        r.key = *number;
                    }
                    r.op = self.slots.slot(r.op);
                    if kind == K_INVOKE && r.index != 0 {
                        // A record names its op's events by their count only.
                        self.multi.insert(
                            r.op,
                            MultiOp {
                                count: r.index,
                                places: None,
                            },
                        );
                    }
                }
            }
        }
    }

    /// Routes any one line: does what depends on the order of all lines, and
    /// returns the routed record the op's shard is to apply (`K_SKIP` when
    /// there is nothing for the shards).
    fn route_line(&mut self, line: ParsedLine<'_>) -> Rec {
        match line {
            ParsedLine::Invoke {
                op,
                key,
                seq,
                time,
                events,
            } => self.route_invoke(op, &key, seq, time, events),
            ParsedLine::Complete { op, outcome, time } => {
                self.see_time(time);
                Rec {
                    op: self.slots.slot(op),
                    time,
                    kind: outcome as u8 + 1,
                    ..Rec::SKIP
                }
            }
            ParsedLine::Deliver {
                op,
                event,
                key,
                seq,
                partition,
                offset,
                time,
                index,
            } => {
                self.see_time(time);
                self.deliveries += 1;
                let event = self.event_id(&event);
                let Some(op) = op else {
                    self.note_unattributed(key.as_deref(), event, partition, offset, time);
                    return Rec::SKIP;
                };
                Rec {
                    key: match key {
                        Some(k) => self.intern_key(k.as_bytes()),
                        None => NONE_KEY,
                    },
                    op: self.slots.slot(op),
                    time,
                    seq: seq.unwrap_or(NO_SEQ),
                    offset,
                    event,
                    partition,
                    index,
                    kind: K_DELIVER,
                }
            }
            ParsedLine::Nemesis {
                fault,
                phase,
                time,
                error,
            } => {
                self.note_fault(fault, phase, time, error);
                Rec::SKIP
            }
            ParsedLine::Read {
                key,
                seq,
                invoke_time,
                time,
            } => {
                self.see_time(time);
                let key = self.intern_key(key.as_bytes());
                self.reads.push((key, seq, invoke_time));
                Rec::SKIP
            }
            ParsedLine::Committed { op } => {
                self.committed_lines += 1;
                Rec {
                    op: self.slots.slot(op),
                    kind: K_COMMITTED,
                    ..Rec::SKIP
                }
            }
            ParsedLine::Restart { time } => {
                self.see_time(time);
                self.restart.get_or_insert(time);
                Rec::SKIP
            }
            ParsedLine::Begin { time } => {
                self.see_time(time);
                self.begin = true;
                Rec::SKIP
            }
            ParsedLine::End { time } => {
                self.see_time(time);
                self.end = true;
                Rec::SKIP
            }
        }
    }

    /// [`HistoryIndex::route_line`] of an `invoke` line: numbers its key
    /// and op, and keeps what its `events` names beyond one event on its key
    /// in the `multi` table.
    #[inline]
    fn route_invoke(&mut self, op: u64, key: &str, seq: u64, time: i64, events: Option<OpEvents>) -> Rec {
        self.see_time(time);
        // Numbered in this order (the op's key, then its events'),
        // as line by line: the numbers decide the order of examples.
        let key = self.intern_key(key.as_bytes());
        let op = self.slots.slot(op);
        let multi = events.and_then(|e| self.multi_op(e, key, seq));
        let index = multi.as_ref().map_or(0, |m| m.count);
        if let Some(m) = multi {
            self.multi.insert(op, m);
        }
        Rec {
            key,
            op,
            time,
            seq,
            index,
            kind: K_INVOKE,
            ..Rec::SKIP
        }
    }

    /// Counts a delivery naming no op (`unexpected`), and keeps the first
    /// 16 for examples: the rest are only counted, so that a history of
    /// many costs no memory for them.
    #[inline]
    fn note_unattributed(&mut self, key: Option<&str>, event: EventId, partition: i32, offset: i64, time: i64) {
        let key = key.map(|k| self.intern_key(k.as_bytes()));
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
    }

    /// Keeps a `nemesis` line: a fault that failed to start apart (it made
    /// no window), any other phase in the list fault windows are made of.
    #[inline]
    fn note_fault(&mut self, fault: Cow<'_, str>, phase: FaultPhase, time: i64, error: Option<Cow<'_, str>>) {
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

    /// Notes the time of a line: the last one bounds the per-second figures.
    fn see_time(&mut self, t: i64) {
        self.max_time = self.max_time.max(t);
    }

    /// Applies routed records (the pieces of a block, in file order) to the
    /// shards, all shards at once. Returns the first refused record in file
    /// order: (piece, record in piece, why).
    pub(crate) fn apply(&mut self, pieces: &[Vec<Rec>]) -> Option<(usize, usize, LineError)> {
        let bits = self.shard_bits;
        let slots = &self.slots;
        let refused = |(shard, s): (usize, &mut Shard)| s.apply_all(shard, bits, pieces, slots);
        if self.shards.len() == 1 {
            return refused((0, &mut self.shards[0]));
        }
        use rayon::prelude::*;
        let all: Vec<_> = self.shards.par_iter_mut().enumerate().map(refused).collect();
        all.into_iter().flatten().min_by_key(|&(piece, rec, _)| (piece, rec))
    }

    /// Ops that have a completion or `committed` line but no `invoke`: the
    /// history is inconsistent. Returns (op id, which line type) for the first few.
    pub fn orphans(&self) -> Vec<(u64, &'static str)> {
        let mut out = Vec::new();
        if self.shards.iter().all(|s| s.orphans == 0) {
            return out;
        }
        for (h, s) in self.ops() {
            let op = self.slots.op_id(h);
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
        let key_names = self.key_names();
        let committed_from_lines = self.committed_lines > 0;
        let describe = Describe {
            index: &self,
            key_names: &key_names,
            committed_from_lines,
        };
        // Unattributed deliveries beyond those kept for examples are counted here; `found` counts the rest.
        let mut findings = Findings {
            anomalies: Anomalies {
                unexpected: self.unattributed_count - self.unattributed.len() as u64,
                ..Anomalies::default()
            },
            examples: BTreeMap::new(),
            first_at: BTreeMap::new(),
            max_examples: options.max_examples,
        };
        self.find_unattributed(&mut findings, &describe);
        let OpTally {
            counts,
            mut latencies,
            unseen_delta,
            seconds,
            mut ordered,
            side_refs,
            spans,
            acked,
            delivered_after_restart,
            multi_event_ops,
            events_expected,
        } = self.tally_ops(committed_from_lines, &mut findings, &describe);

        // Reorder: per key, first deliveries of ok ops in log order.
        if !options.per_key_order {
            ordered.clear();
        }
        // Sorted in place on all cores while the latency quantiles are found:
        // by key, partition, offset, then handle word, as before. Each entry
        // is distinct by its word (before the seq), so any sort gives this
        // order, and the seq never decides it.
        let (_, latency_ns) = rayon::join(|| ordered.par_sort_unstable(), || Latency::from_samples(&mut latencies));
        // Entries of events past the first exist only with ops of several events.
        if self.shards.iter().any(|s| s.side_count > 0) {
            self.find_reorders::<true>(&ordered, &side_refs, &mut findings, &describe);
        } else {
            self.find_reorders::<false>(&ordered, &side_refs, &mut findings, &describe);
        }
        drop(ordered);
        let interleaved_ops = self.count_interleaved(spans);
        self.find_stale_reads(&mut findings, &describe);

        let unseen_per_second = unseen_levels(&unseen_delta, seconds);
        let mut faults = fault_windows(&self.nemesis);
        recovery_times(&mut faults, acked);
        let mut failed_faults = self.failed_faults;
        failed_faults.sort_by_key(|f| f.time);
        let Findings {
            anomalies,
            examples,
            first_at,
            ..
        } = findings;
        let violations = anomalies.violations(options.exactly_once);
        let first_violation_ns = violations.iter().filter_map(|k| first_at.get(k).copied()).min();
        let complete = (self.begin || self.end).then_some(self.end);
        let (verdict, reason, warnings) = judge(&anomalies, &violations, counts.pending, complete, &options);
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
            multi_event_ops,
            interleaved_ops,
            events_expected,
            reads: self.reads.len() as u64,
            latency_ns,
            unseen_per_second,
            faults,
            failed_faults,
            complete,
            delivered_after_restart,
            examples,
            lines: 0,
            warnings,
        }
    }

    /// Each interned key's text, by its number.
    fn key_names(&self) -> Vec<String> {
        let mut names = vec![String::new(); self.key_count as usize];
        for (name, &k) in &self.keys {
            names[k as usize] = String::from_utf8_lossy(name).into_owned();
        }
        for (&packed, &k) in &self.short_keys {
            let bytes = packed.to_le_bytes();
            names[k as usize] = String::from_utf8_lossy(&bytes[..usize::from(bytes[15])]).into_owned();
        }
        names
    }

    /// `unexpected`: the deliveries naming no op kept for examples.
    fn find_unattributed(&self, findings: &mut Findings, describe: &Describe<'_>) {
        for (key, event, at) in &self.unattributed {
            findings.found(Anomaly::Unexpected, 1, at.time, &|| Example {
                key: key.map(|k| describe.key_names[k as usize].clone()),
                events: vec![describe.event(event)],
                deliveries: 1,
                first_delivery: Some(at.clone()),
                detail: Some("the record names no op".into()),
                ..Example::default()
            });
        }
    }

    /// The one pass over every op: counts the ops and finds the anomalies
    /// of single ops (`unexpected` deliveries of ops never invoked or of
    /// events the op does not publish, `lost`, `partial`, `phantom`,
    /// duplicates, `lost-commit`), gathering what the later checks need.
    fn tally_ops(&self, committed_from_lines: bool, findings: &mut Findings, describe: &Describe<'_>) -> OpTally {
        // At most one entry per op: reserved once (pages are only taken as
        // entries are written), not grown by copying.
        let ops = self.slots.len();
        let seconds = (self.max_time.max(0) / 1_000_000_000) as usize + 1;
        // One entry per delivered event at most (one per op, in a history of one-event ops).
        let events = ops + self.shards.iter().map(|s| s.side_count).sum::<usize>();
        let mut t = OpTally {
            counts: OpCounts::default(),
            latencies: Vec::with_capacity(ops),
            unseen_delta: vec![0i64; seconds + 1],
            seconds,
            ordered: Vec::with_capacity(events),
            side_refs: Vec::new(),
            spans: Vec::new(),
            acked: Vec::new(),
            delivered_after_restart: self.restart.map(|_| 0),
            multi_event_ops: 0,
            events_expected: 0,
        };
        let mut pass = Pass {
            committed_from_lines,
            has_faults: !self.nemesis.is_empty(),
            restart: self.restart.unwrap_or(i64::MAX),
            findings,
            describe,
            scratch: Vec::new(),
        };
        for (n, (i, &s)) in self.ops().enumerate() {
            // Most ops publish one event, delivered (if at all) as index 0:
            // their pass is compiled apart, without what ops of several need.
            if s.flags & (SIDE | MULTI) == 0 {
                self.tally_op::<false>(&mut t, &mut pass, n, i, &s);
            } else {
                self.tally_op::<true>(&mut t, &mut pass, n, i, &s);
            }
        }
        t
    }

    /// [`HistoryIndex::tally_ops`] of the `n`-th op, `i`, whose state is
    /// `s`; `SEVERAL`: it may have events past its first (flagged `MULTI`
    /// or `SIDE`), else it has one.
    ///
    /// Its parts are `#[inline(always)]` like it, so that each of the two
    /// passes stays one loop body, compiled apart for `SEVERAL`.
    #[inline(always)]
    fn tally_op<const SEVERAL: bool>(
        &self,
        t: &mut OpTally,
        pass: &mut Pass<'_, '_>,
        n: usize,
        i: Handle,
        s: &OpState,
    ) {
        let (findings, describe) = (&mut *pass.findings, pass.describe);
        // Only ops with deliveries of events past their first have any.
        let side = if SEVERAL && s.is(SIDE) {
            self.side_events(i)
        } else {
            Cow::Borrowed(&[][..])
        };
        if !s.is(INVOKED) {
            find_uninvoked(findings, describe, i, s, &side);
            return;
        }
        let (ok, committed) = count_invoked(&mut t.counts, s, pass.committed_from_lines);
        let multi = if SEVERAL && s.is(MULTI) {
            self.multi.get(&i)
        } else {
            None
        };
        let k = multi.map_or(1, |m| m.count);
        let (delivered_events, first_time) = delivered_events(findings, describe, i, s, &side, k);
        let op = OpFacts {
            i,
            s,
            side: &side,
            multi,
            k,
            ok,
            committed,
            delivered: delivered_events > 0,
            delivered_events,
            first_time,
        };
        self.find_op_anomalies::<SEVERAL>(findings, describe, pass.committed_from_lines, &op);
        if let Some(after) = &mut t.delivered_after_restart {
            *after += (committed && op.delivered && first_time >= pass.restart) as u64;
        }
        if ok {
            tally_ok_op(t, pass.has_faults, &op);
        }
        if ok || committed {
            t.events_expected += u64::from(k);
        }
        if SEVERAL {
            t.multi_event_ops += u64::from(k > 1);
            if committed && delivered_events > 1 {
                push_spans(&mut t.spans, &mut pass.scratch, n as u32, s, &side, k);
            }
        }
    }

    /// The anomalies of one invoked op judged on its own: `lost` (nothing
    /// delivered), `partial` (some of its events only), `phantom` (delivered
    /// but not committed), duplicates, `lost-commit`.
    #[inline(always)]
    fn find_op_anomalies<const SEVERAL: bool>(
        &self,
        findings: &mut Findings,
        describe: &Describe<'_>,
        committed_from_lines: bool,
        op: &OpFacts<'_>,
    ) {
        let OpFacts {
            i,
            s,
            side,
            k,
            ok,
            committed,
            delivered,
            delivered_events,
            ..
        } = *op;
        if (ok || committed) && !delivered {
            findings.found(Anomaly::Lost, 1, s.invoke_time, &|| describe.op(i, None));
        }
        if SEVERAL && (ok || committed) && delivered && delivered_events < u64::from(k) {
            findings.found(Anomaly::Partial, 1, s.invoke_time, &|| {
                describe.op(i, Some(partial_detail(self.slots.op_id(i), k, s, side)))
            });
        }
        if delivered && !committed {
            findings.found(Anomaly::Phantom, 1, s.invoke_time, &|| describe.op(i, None));
        }
        find_duplicates::<SEVERAL>(findings, describe, op);
        if committed_from_lines && ok && !s.is(COMMITTED) {
            findings.found(Anomaly::LostCommit, 1, s.invoke_time, &|| describe.op(i, None));
        }
    }

    /// `reorder`: walks `ordered` (sorted: per key, in log order) and finds
    /// each first delivery of an event whose (seq, index) is below one
    /// delivered before it. `side_refs` names the events whose index is too
    /// large for their word; `SEVERAL`: some entry may be of an event past
    /// its op's first (else every index is 0, and not read).
    fn find_reorders<const SEVERAL: bool>(
        &self,
        ordered: &[LogEntry],
        side_refs: &[(Handle, u32)],
        findings: &mut Findings,
        describe: &Describe<'_>,
    ) {
        let mut current_key = NONE_KEY;
        // The highest (seq, index) so far, and the entry's handle word.
        let mut highest: Option<((u64, u32), u64)> = None;
        for &(order, word, seq) in ordered {
            let key = (order >> 96) as u32;
            if key != current_key {
                current_key = key;
                highest = None;
            }
            let index = if SEVERAL { entry_event(word, side_refs).1 } else { 0 };
            match highest {
                Some((h, before)) if (seq, index) < h => {
                    let (i, _, partition, offset, time) = self.event_place(word, side_refs);
                    findings.found(Anomaly::Reorder, 1, time, &|| {
                        let (b, b_index, b_partition, b_offset, _) = self.event_place(before, side_refs);
                        // One-event ops keep the words they always had.
                        let detail = if self.state(i).is(MULTI) || self.state(b).is(MULTI) {
                            format!(
                                "seq {seq} index {index} delivered at {partition}/{offset} after seq {} index {b_index} (op {}) at {b_partition}/{b_offset}",
                                h.0,
                                self.slots.op_id(b),
                            )
                        } else {
                            format!(
                                "seq {seq} delivered at {partition}/{offset} after seq {} (op {}) at {b_partition}/{b_offset}",
                                h.0,
                                self.slots.op_id(b),
                            )
                        };
                        describe.op(i, Some(detail))
                    });
                }
                Some((h, _)) if (seq, index) <= h => {}
                _ => highest = Some(((seq, index), word)),
            }
        }
    }

    /// `interleaved_ops`: how many of the ops of `spans` have a record of
    /// another op within one of their spans. A record is placed at its
    /// event's first delivery in log order, as for `reorder` (further
    /// deliveries of one event leave no trace in the index).
    fn count_interleaved(&self, mut spans: Vec<Span>) -> u64 {
        if spans.is_empty() {
            return 0;
        }
        // Each record as one number, sorted as (partition, offset, op's number): 16 bytes.
        let events = self.slots.len() + self.shards.iter().map(|s| s.side_count).sum::<usize>();
        let mut records: Vec<u128> = Vec::with_capacity(events);
        for (n, (h, s)) in self.ops().enumerate() {
            if s.deliveries > 0 {
                records.push(record_order(s.log_partition, s.log_offset, n as u32));
            }
            if s.is(SIDE) {
                for e in self.side_events(h).iter() {
                    records.push(record_order(e.log_partition, e.log_offset, n as u32));
                }
            }
        }
        records.par_sort_unstable();
        // Spans in log order, so that where each one's records start only
        // moves forward: one walk over the records, no search per span.
        spans.par_sort_unstable_by_key(|&(n, partition, first, last)| (partition, first, last, n));
        let mut interleaved: Vec<u32> = Vec::new();
        let mut at = 0;
        for &(n, partition, first, last) in &spans {
            // The records strictly between: past any at `first`, before `last`.
            let (after, before) = (
                record_order(partition, first, u32::MAX),
                record_order(partition, last, 0),
            );
            while records.get(at).is_some_and(|&r| r <= after) {
                at += 1;
            }
            // Only the op's own events (a few) come before another's record.
            let between = records[at..].iter().take_while(|&&r| r < before);
            if between.into_iter().any(|&r| r as u32 != n) {
                interleaved.push(n);
            }
        }
        // An op interleaved in several partitions counts once.
        interleaved.sort_unstable();
        interleaved.dedup();
        interleaved.len() as u64
    }

    /// Stale reads: a read must see at least the highest seq acknowledged before it began.
    fn find_stale_reads(&self, findings: &mut Findings, describe: &Describe<'_>) {
        if self.reads.is_empty() {
            return;
        }
        let mut acked: Vec<(u32, i64, u64)> = Vec::new();
        for (_, s) in self.ops() {
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
                findings.found(Anomaly::StaleRead, 1, invoke_time, &|| Example {
                    key: Some(describe.key_names[key as usize].clone()),
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
}

/// What the passes found: the count of each anomaly, the first examples of
/// each kind, and when each kind first struck.
struct Findings {
    anomalies: Anomalies,
    examples: BTreeMap<Anomaly, Vec<Example>>,
    /// The earliest time of each kind's anomalous events (an op's invoke, a
    /// record's or reordered delivery's time, a read's start): how soon a bug bites.
    first_at: BTreeMap<Anomaly, i64>,
    max_examples: usize,
}

impl Findings {
    /// Counts `n` occurrences of an anomaly at `at` (`NONE_TIME`: no time)
    /// and keeps an example, made only while there is room.
    fn found(&mut self, kind: Anomaly, n: u64, at: i64, make: &dyn Fn() -> Example) {
        *self.anomalies.get_mut(kind) += n;
        if at != NONE_TIME {
            let t = self.first_at.entry(kind).or_insert(at);
            *t = (*t).min(at);
        }
        let list = self.examples.entry(kind).or_default();
        if list.len() < self.max_examples {
            list.push(make());
        }
    }
}

/// Event ids an example lists at most (a one-event op has at most 9: its
/// first and 8 more).
const EXAMPLE_EVENTS: usize = 10;

/// Turns the index's compact state into examples' text: only ever for the
/// few anomalies kept as examples.
struct Describe<'a> {
    index: &'a HistoryIndex,
    key_names: &'a [String],
    committed_from_lines: bool,
}

impl Describe<'_> {
    /// An event id as text (the UUID, or the original non-UUID id).
    fn event(&self, id: &EventId) -> String {
        match self.index.event_text.get(id) {
            Some(t) => t.to_string(),
            None => uuid_text(id),
        }
    }

    /// The example of op `i`, with `detail` saying what is wrong if the kind alone does not.
    ///
    /// An op of several events is described as a whole: its deliveries of
    /// every event, its first delivery among them, their ids.
    fn op(&self, i: Handle, detail: Option<String>) -> Example {
        let index = self.index;
        let s = index.state(i);
        let shard = &index.shards[shard_of(i, index.shard_bits)];
        let side = if s.is(SIDE) {
            index.side_events(i)
        } else {
            Cow::Borrowed(&[][..])
        };
        let mut events = Vec::new();
        if s.deliveries > 0 {
            events.push(self.event(&shard.store.event(i)));
        }
        for e in side.iter() {
            let id = self.event(&e.first_event);
            if !events.contains(&id) {
                events.push(id);
            }
        }
        if s.deliveries > 0 || !side.is_empty() {
            if let Some(extra) = shard.extra_events.get(&i) {
                for e in extra {
                    let id = self.event(e);
                    if !events.contains(&id) {
                        events.push(id);
                    }
                }
            }
        }
        events.truncate(EXAMPLE_EVENTS);
        let mut first_delivery = (s.deliveries > 0).then_some(DeliveryRef {
            partition: s.log_partition,
            offset: s.log_offset,
            time: s.first_time,
        });
        for e in side.iter() {
            let at = first_delivery.get_or_insert(DeliveryRef {
                partition: e.log_partition,
                offset: e.log_offset,
                time: e.first_time,
            });
            if (e.log_partition, e.log_offset) < (at.partition, at.offset) {
                (at.partition, at.offset) = (e.log_partition, e.log_offset);
            }
            at.time = at.time.min(e.first_time);
        }
        Example {
            op: Some(index.slots.op_id(i)),
            key: (s.key != NONE_KEY).then(|| self.key_names[s.key as usize].clone()),
            seq: (s.seq != NO_SEQ).then_some(s.seq),
            outcome: s.outcome(),
            committed: Some(if self.committed_from_lines {
                s.is(COMMITTED)
            } else {
                s.outcome == 1
            }),
            events,
            deliveries: u64::from(s.deliveries) + side.iter().map(|e| u64::from(e.deliveries)).sum::<u64>(),
            first_delivery,
            invoke_time: (s.invoke_time != NONE_TIME).then_some(s.invoke_time),
            complete_time: (s.complete_time != NONE_TIME).then_some(s.complete_time),
            detail,
            trail: None,
        }
    }
}

/// What [`HistoryIndex::tally_ops`] reads and finds as it goes, op by op.
struct Pass<'f, 'd> {
    committed_from_lines: bool,
    /// Whether the history has fault windows (whose time to recover needs `acked`).
    has_faults: bool,
    /// When the implementation restarted (`i64::MAX`: never).
    restart: i64,
    findings: &'f mut Findings,
    describe: &'d Describe<'d>,
    /// Scratch space for [`push_spans`], kept from op to op.
    scratch: Vec<(i32, i64)>,
}

/// What [`HistoryIndex::tally_ops`] gathers beside anomalies.
struct OpTally {
    counts: OpCounts,
    /// Ack to first delivery of each delivered ok op, in ns.
    latencies: Vec<i64>,
    /// Per second of the run: ops acknowledged minus ops first seen then
    /// (one more slot than `seconds`, for times past the last line).
    unseen_delta: Vec<i64>,
    /// Seconds the run lasted (rounded up).
    seconds: usize,
    /// The first delivery of each delivered event of an ok op, for the reorder check.
    ordered: Vec<LogEntry>,
    /// The events in `ordered` whose index is too large for their word ([`entry_word`]).
    side_refs: Vec<(Handle, u32)>,
    /// Where committed multi-event ops' events lie, per partition, for `interleaved_ops`.
    spans: Vec<Span>,
    /// (ack time, first delivery or MAX) of each ok op; empty without faults.
    acked: Vec<(i64, i64)>,
    /// Committed ops first delivered after the `restart` line (`None`: none).
    delivered_after_restart: Option<u64>,
    /// Invoked ops whose invoke names more than one event.
    multi_event_ops: u64,
    /// Events of the ops `ok` or committed: what should have been published.
    events_expected: u64,
}

/// One invoked op as [`HistoryIndex::tally_op`] has read it, for the parts
/// that judge and count it (borrowed, so that nothing is copied per op).
#[derive(Clone, Copy)]
struct OpFacts<'a> {
    i: Handle,
    s: &'a OpState,
    /// Its delivered events of index 1 and up (none for one-event ops).
    side: &'a [EventState],
    /// What its invoke names beyond one event on its key, if anything.
    multi: Option<&'a MultiOp>,
    /// How many events it publishes.
    k: u32,
    ok: bool,
    /// By its `committed` line when the history has them, else by being `ok`.
    committed: bool,
    /// Whether any of its events (of index below `k`) was delivered.
    delivered: bool,
    /// How many of its events (of index below `k`) were delivered.
    delivered_events: u64,
    /// The first delivery of any of those (`i64::MAX`: none).
    first_time: i64,
}

/// `unexpected`: the deliveries of op `i`, which has no invoke line (event
/// 0's counted in its state `s`, the others' in `side`), at the first of them.
#[inline(always)]
fn find_uninvoked(findings: &mut Findings, describe: &Describe<'_>, i: Handle, s: &OpState, side: &[EventState]) {
    let n = u64::from(s.deliveries) + side.iter().map(|e| u64::from(e.deliveries)).sum::<u64>();
    if n > 0 {
        let first = if s.deliveries > 0 { s.first_time } else { i64::MAX };
        let at = side.iter().map(|e| e.first_time).fold(first, i64::min);
        findings.found(Anomaly::Unexpected, n, at, &|| {
            describe.op(i, Some("no invoke line for this op".into()))
        });
    }
}

/// Counts an invoked op, by its outcome and whether it is committed (by its
/// `committed` line when the history has them, else by being `ok`).
/// Returns (ok, committed).
#[inline(always)]
fn count_invoked(counts: &mut OpCounts, s: &OpState, committed_from_lines: bool) -> (bool, bool) {
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
    (ok, committed)
}

/// How many of the `k` events of op `i` were delivered (event 0 per its
/// state `s`, the others per `side`), and the first delivery of any of them
/// (`i64::MAX`: none). The deliveries of indexes the op does not publish
/// are not its events: they are `unexpected`.
#[inline(always)]
fn delivered_events(
    findings: &mut Findings,
    describe: &Describe<'_>,
    i: Handle,
    s: &OpState,
    side: &[EventState],
    k: u32,
) -> (u64, i64) {
    let mut delivered_events = u64::from(s.deliveries > 0);
    let mut first_time = if s.deliveries > 0 { s.first_time } else { i64::MAX };
    for e in side {
        if e.index < k {
            delivered_events += 1;
            first_time = first_time.min(e.first_time);
        } else {
            findings.found(Anomaly::Unexpected, u64::from(e.deliveries), e.first_time, &|| {
                describe.op(
                    i,
                    Some(format!(
                        "a record names event index {}, but the op publishes {k} event(s) (indexes 0 to {})",
                        e.index,
                        k - 1
                    )),
                )
            });
        }
    }
    (delivered_events, first_time)
}

/// Duplicates of an op's events, judged per event (event 0 in its state,
/// the others in its side events): beyond idempotency when the copies'
/// event ids differ, so that a consumer deduplicating on them keeps both.
#[inline(always)]
fn find_duplicates<const SEVERAL: bool>(findings: &mut Findings, describe: &Describe<'_>, op: &OpFacts<'_>) {
    let OpFacts { i, s, side, k, .. } = *op;
    // Which event, said only of ops whose invoke names several.
    let which = |index: u32, deliveries: u32| {
        (SEVERAL && s.is(MULTI)).then(|| format!("event {index} of its {k} delivered {deliveries} times"))
    };
    if s.deliveries > 1 {
        if s.is(DISTINCT_EVENTS) {
            findings.found(Anomaly::DuplicateBeyondIdempotency, 1, s.invoke_time, &|| {
                describe.op(i, which(0, s.deliveries))
            });
        } else {
            findings.found(Anomaly::Duplicate, 1, s.invoke_time, &|| {
                describe.op(i, which(0, s.deliveries))
            });
        }
    }
    for e in side.iter().filter(|e| e.index < k && e.deliveries > 1) {
        let kind = if e.distinct {
            Anomaly::DuplicateBeyondIdempotency
        } else {
            Anomaly::Duplicate
        };
        findings.found(kind, 1, s.invoke_time, &|| describe.op(i, which(e.index, e.deliveries)));
    }
}

/// What an `ok` op adds to the figures: its ack (for the faults' recovery
/// times), its second in unseen-per-second, its latency, and the log-order
/// entries of its delivered events for the reorder check.
#[inline(always)]
fn tally_ok_op(t: &mut OpTally, has_faults: bool, op: &OpFacts<'_>) {
    let OpFacts {
        i,
        s,
        side,
        multi,
        k,
        delivered,
        first_time,
        ..
    } = *op;
    let seconds = t.seconds;
    let second_of = |t: i64| ((t.max(0) / 1_000_000_000) as usize).min(seconds);
    if has_faults {
        t.acked
            .push((s.complete_time, if delivered { first_time } else { i64::MAX }));
    }
    t.unseen_delta[second_of(s.complete_time)] += 1;
    if delivered {
        t.latencies.push((first_time - s.complete_time).max(0));
        t.unseen_delta[second_of(first_time.max(s.complete_time))] -= 1;
        if s.deliveries > 0 {
            let (key, seq) = place(multi, s, 0);
            let seq = if s.log_seq == NO_SEQ { seq } else { s.log_seq };
            t.ordered.push((log_order(key, s.log_partition, s.log_offset), i, seq));
        }
        for e in side.iter().filter(|e| e.index < k) {
            let (key, seq) = place(multi, s, e.index);
            let seq = if e.log_seq == NO_SEQ { seq } else { e.log_seq };
            let word = entry_word(i, e.index, &mut t.side_refs);
            t.ordered
                .push((log_order(key, e.log_partition, e.log_offset), word, seq));
        }
    }
}

/// (op's number in [`HistoryIndex::ops`] order, partition, first offset, last
/// offset) of an op's delivered events in one partition where it has two or more.
type Span = (u32, i32, i64, i64);

/// A record at (partition, offset) of the `n`-th op as one number that
/// orders as (partition, offset, n) (the signed parts with their sign bit
/// flipped, as [`log_order`] does).
fn record_order(partition: i32, offset: i64, n: u32) -> u128 {
    let partition = (partition as u32 ^ (1 << 31)) as u128;
    let offset = (offset as u64 ^ (1 << 63)) as u128;
    (partition << 96) | (offset << 32) | n as u128
}

/// Adds the spans of the `n`-th op (its event 0 in `s`, the others in `side`; `k`
/// events): per partition, from its first to its last event in offset order.
/// `at` is scratch space, kept from op to op.
fn push_spans(spans: &mut Vec<Span>, at: &mut Vec<(i32, i64)>, n: u32, s: &OpState, side: &[EventState], k: u32) {
    at.clear();
    if s.deliveries > 0 {
        at.push((s.log_partition, s.log_offset));
    }
    at.extend(
        side.iter()
            .filter(|e| e.index < k)
            .map(|e| (e.log_partition, e.log_offset)),
    );
    at.sort_unstable();
    for group in at.chunk_by(|a, b| a.0 == b.0) {
        if let [first, .., last] = group {
            spans.push((n, first.0, first.1, last.1));
        }
    }
}

/// Missing indexes a `partial` example names before it stops ("…").
const MISSING_SHOWN: usize = 10;

/// The detail of a `partial` example: how many of its `k` events op `op`
/// published, and the first indexes missing.
fn partial_detail(op: u64, k: u32, s: &OpState, side: &[EventState]) -> String {
    let mut delivered = side.iter().filter(|e| e.index < k).map(|e| e.index).peekable();
    let mut published = u64::from(s.deliveries > 0);
    let mut missing = Vec::new();
    // Walks the indexes only until enough are missing: k may be large.
    let mut index = 0u32;
    while index < k && missing.len() <= MISSING_SHOWN {
        let seen = if index == 0 {
            s.deliveries > 0
        } else if delivered.peek() == Some(&index) {
            delivered.next();
            true
        } else {
            false
        };
        if !seen {
            missing.push(index.to_string());
        }
        index += 1;
    }
    published += side.iter().filter(|e| e.index < k).count() as u64;
    if missing.len() > MISSING_SHOWN {
        missing.truncate(MISSING_SHOWN);
        missing.push("…".into());
    }
    format!(
        "op {op} published {published} of its {k} events (missing indexes {})",
        missing.join(", ")
    )
}

/// Ops acknowledged and not yet seen, at the end of each second: the running
/// sum of `unseen_delta` over `seconds`.
fn unseen_levels(unseen_delta: &[i64], seconds: usize) -> Vec<u64> {
    let mut unseen_per_second = Vec::with_capacity(seconds);
    let mut level = 0i64;
    for d in unseen_delta.iter().take(seconds) {
        level += d;
        unseen_per_second.push(level.max(0) as u64);
    }
    unseen_per_second
}

/// The verdict, the reason when it is `unknown`, and the warnings: a history
/// the run did not finish (`begin` and no `end`) is `unknown` unless judged
/// as complete by `--assume-complete`.
fn judge(
    anomalies: &Anomalies,
    violations: &[Anomaly],
    pending: u64,
    complete: Option<bool>,
    options: &CheckOptions,
) -> (Verdict, Option<String>, Vec<String>) {
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
                    pending,
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
    (verdict, reason, warnings)
}

/// (key, partition and offset as [`log_order`] packs them; the event's word,
/// [`entry_word`]; seq) of an event's first delivery in log order.
type LogEntry = (u128, u64, u64);

/// Where a [`LogEntry`] word keeps an event's index: handles use bit 63 and
/// bits 0 to 31 only (direct ones are below 2^28, hashed ones `1 << 63` and a
/// 32-bit number), so bits 32 to 61 are free.
const INDEX_SHIFT: u32 = 32;
/// Indexes below this fit in a word beside the handle.
const INLINE_INDEXES: u32 = 1 << 30;
/// Marks a word that is the number of a side reference instead (an index too large to fit).
const SIDE_REF: u64 = 1 << 62;

/// The word of an entry for event `index` of op `h`: the handle itself for
/// event 0 (so one-event histories sort and read exactly as they always
/// did), the index beside it for the others, and a side reference (pushed
/// on `side_refs`) for the rare index too large for that. An entry stays 32 bytes.
fn entry_word(h: Handle, index: u32, side_refs: &mut Vec<(Handle, u32)>) -> u64 {
    debug_assert_eq!(h & (SIDE_REF | (u64::from(INLINE_INDEXES - 1) << INDEX_SHIFT)), 0);
    if index < INLINE_INDEXES {
        return h | u64::from(index) << INDEX_SHIFT;
    }
    side_refs.push((h, index));
    SIDE_REF | (side_refs.len() - 1) as u64
}

/// The (op, index) an entry's word stands for ([`entry_word`]).
fn entry_event(word: u64, side_refs: &[(Handle, u32)]) -> (Handle, u32) {
    if word & SIDE_REF != 0 {
        return side_refs[(word & !SIDE_REF) as usize];
    }
    let mask = u64::from(INLINE_INDEXES - 1) << INDEX_SHIFT;
    (word & !mask, ((word & mask) >> INDEX_SHIFT) as u32)
}

/// (key, partition, offset) as one number that orders as the triple does
/// (the signed parts with their sign bit flipped), so sorting compares one
/// number where it compared three.
fn log_order(key: u32, partition: i32, offset: i64) -> u128 {
    let partition = (partition as u32 ^ (1 << 31)) as u128;
    let offset = (offset as u64 ^ (1 << 63)) as u128;
    ((key as u128) << 96) | (partition << 64) | offset
}

/// A key of up to 15 bytes as one number (its bytes, and its length in the
/// top byte), so that looking it up hashes and compares one number.
#[inline(always)]
pub(crate) fn short_key(k: &[u8]) -> Option<u128> {
    if k.len() > 15 {
        return None;
    }
    let mut bytes = [0u8; 16];
    bytes[..k.len()].copy_from_slice(k);
    bytes[15] = k.len() as u8;
    Some(u128::from_le_bytes(bytes))
}

/// Records applied ahead of their turn are fetched into the cache this many records early.
const PREFETCH_AHEAD: usize = 32;

impl Shard {
    /// Applies the records of this shard (number `shard` of `1 << bits`)
    /// among `pieces`, in order; stops at the first refused one: (piece,
    /// record in piece, why).
    fn apply_all(
        &mut self,
        shard: usize,
        bits: u32,
        pieces: &[Vec<Rec>],
        slots: &OpSlots,
    ) -> Option<(usize, usize, LineError)> {
        let mine = |r: &Rec| r.kind < K_OTHER && shard_of(r.op, bits) == shard;
        for (p, recs) in pieces.iter().enumerate() {
            for (k, r) in recs.iter().enumerate() {
                // A shuffled history touches the states at random: ask for
                // one a few records ahead while this one is applied.
                if let Some(ahead) = recs.get(k + PREFETCH_AHEAD) {
                    if mine(ahead) {
                        self.store.prefetch(ahead.op, ahead.kind == K_DELIVER);
                    }
                }
                if mine(r) {
                    if let Err(e) = self.apply(r, slots) {
                        return Some((p, k, e));
                    }
                }
            }
        }
        None
    }

    /// Applies one routed record of this shard: the part of taking a line
    /// that concerns its op alone. Refuses a second `invoke` or completion.
    fn apply(&mut self, r: &Rec, slots: &OpSlots) -> Result<(), LineError> {
        match r.kind {
            K_INVOKE => {
                let s = self.store.get_mut(r.op).0;
                if s.is(INVOKED) {
                    return Err(LineError(format!(
                        "op {} is invoked a second time; op ids must be unique within a run",
                        slots.op_id(r.op)
                    )));
                }
                if s.outcome != 0 || s.is(COMMITTED) {
                    self.orphans -= 1;
                }
                s.flags |= INVOKED | if r.index != 0 { MULTI } else { 0 };
                s.key = r.key;
                s.seq = r.seq;
                s.invoke_time = r.time;
            }
            K_OK | K_FAIL | K_INFO => {
                let s = self.store.get_mut(r.op).0;
                if let Some(earlier) = s.outcome() {
                    let outcome = [Outcome::Ok, Outcome::Fail, Outcome::Info][usize::from(r.kind - K_OK)];
                    return Err(LineError(format!(
                        "op {} completes a second time (`{}` after `{}`); each op has one completion",
                        slots.op_id(r.op),
                        outcome.as_str(),
                        earlier.as_str()
                    )));
                }
                if !s.is(INVOKED) && !s.is(COMMITTED) {
                    self.orphans += 1;
                }
                s.outcome = r.kind;
                s.complete_time = r.time;
            }
            K_DELIVER if r.index != 0 => self.apply_side(r),
            K_DELIVER => {
                let (i, event, time, partition, offset) = (r.op, r.event, r.time, r.partition, r.offset);
                let (s, first_event) = self.store.get_mut(i);
                if s.key == NONE_KEY {
                    s.key = r.key; // an invoke, when it comes, sets the op's own key
                }
                if s.deliveries == 0 {
                    *first_event = event;
                    s.first_time = time;
                    s.log_partition = partition;
                    s.log_offset = offset;
                    s.log_seq = r.seq;
                } else {
                    s.first_time = s.first_time.min(time);
                    if (partition, offset) < (s.log_partition, s.log_offset) {
                        s.log_partition = partition;
                        s.log_offset = offset;
                        s.log_seq = r.seq;
                    }
                    if event != *first_event {
                        s.flags |= DISTINCT_EVENTS;
                        let first = *first_event;
                        let extra = self.extra_events.entry(i).or_default();
                        if !extra.contains(&event) && extra.len() < 8 && event != first {
                            extra.push(event);
                        }
                    }
                }
                s.deliveries = s.deliveries.saturating_add(1);
            }
            K_COMMITTED => {
                let s = self.store.get_mut(r.op).0;
                if !s.is(INVOKED) && !s.is(COMMITTED) && s.outcome == 0 {
                    self.orphans += 1;
                }
                s.flags |= COMMITTED;
            }
            _ => {}
        }
        Ok(())
    }

    /// Applies a delivery of event index 1 or more: to the op's side table,
    /// as the op's own state takes event 0's (kept out of line, so the
    /// common path stays short).
    #[inline(never)]
    fn apply_side(&mut self, r: &Rec) {
        let s = self.store.get_mut(r.op).0;
        if s.key == NONE_KEY {
            s.key = r.key; // as for event 0: an invoke, when it comes, sets the op's own key
        }
        s.flags |= SIDE;
        let side = self.side.entry(r.op).or_insert_with(|| SideEvents::Few(Vec::new()));
        let e = side.get_mut(r.index);
        self.side_count += usize::from(e.deliveries == 0);
        if e.deliver(r.event, r.time, r.partition, r.offset, r.seq) {
            // Another id for this event: kept (a few per op) for the examples.
            let extra = self.extra_events.entry(r.op).or_default();
            if !extra.contains(&r.event) && extra.len() < 8 {
                extra.push(r.event);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    proptest::proptest! {
        #[test]
        fn log_order_orders_as_the_triple_does(
            a in (proptest::num::u32::ANY, proptest::num::i32::ANY, proptest::num::i64::ANY),
            b in (proptest::num::u32::ANY, proptest::num::i32::ANY, proptest::num::i64::ANY),
        ) {
            let (x, y) = (log_order(a.0, a.1, a.2), log_order(b.0, b.1, b.2));
            proptest::prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        }
    }

    proptest::proptest! {
        #[test]
        fn an_entry_word_gives_back_its_event(
            h in proptest::prop_oneof![0u64..1 << 28, proptest::num::u32::ANY.prop_map(|n| (1 << 63) | u64::from(n))],
            index in proptest::prop_oneof![0u32..8, proptest::num::u32::ANY],
        ) {
            let mut side_refs = Vec::new();
            let word = entry_word(h, index, &mut side_refs);
            proptest::prop_assert_eq!(entry_event(word, &side_refs), (h, index));
            // Event 0's word is its handle: one-event histories sort as they always did.
            if index == 0 {
                proptest::prop_assert_eq!(word, h);
            }
            proptest::prop_assert_eq!(side_refs.len(), usize::from(index >= INLINE_INDEXES));
        }
    }

    #[test]
    fn log_order_keeps_the_extremes_in_order() {
        let triples = [
            (0, i32::MIN, i64::MIN),
            (0, i32::MIN, -1),
            (0, -1, i64::MAX),
            (0, 0, 0),
            (0, i32::MAX, i64::MAX),
            (1, i32::MIN, i64::MIN),
            (u32::MAX, i32::MAX, i64::MAX),
        ];
        for w in triples.windows(2) {
            assert!(
                log_order(w[0].0, w[0].1, w[0].2) < log_order(w[1].0, w[1].1, w[1].2),
                "{w:?}"
            );
        }
    }
}
