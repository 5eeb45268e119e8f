//! Where the checker keeps one [`OpState`] per op, found by op id.
//!
//! Two halves, so that the states can be updated on all cores at once:
//!
//! - [`OpSlots`] decides, in file order on one thread, which ops exist and
//!   where each one's state lives (its [`Handle`]). Op ids are usually dense
//!   (0, 1, 2, ...), so ids below 2^28 index fixed-size segments directly: no
//!   hash, no growth by doubling. Sparse ids (or dense ones past the memory
//!   budget for mostly-empty segments) go to a hash map instead, so a strange
//!   history costs speed, never unbounded memory. These decisions (and the
//!   order of hashed ops) depend on the order ops are first seen in, which is
//!   why one thread makes them.
//! - [`OpStore`] holds the states of one shard: every handle belongs to
//!   exactly one shard (by its low bits), so shards are updated in parallel
//!   without sharing anything, each in file order.

use crate::event_id::EventId;
use crate::history::Outcome;
use rustc_hash::FxHashMap;

pub(crate) const NONE_TIME: i64 = i64::MIN;
pub(crate) const NONE_KEY: u32 = u32::MAX;
pub(crate) const NO_SEQ: u64 = u64::MAX;

pub(crate) const INVOKED: u8 = 1;
pub(crate) const COMMITTED: u8 = 2;
pub(crate) const DISTINCT_EVENTS: u8 = 4;
/// Its invoke names events beyond the one on its key (the index's
/// `multi` table holds them): most ops have none, so one bit says where to look.
pub(crate) const MULTI: u8 = 8;
/// It has deliveries of event index 1 or more, kept in its shard's side
/// table ([`SideEvents`]); event 0 stays in the op's own state.
pub(crate) const SIDE: u8 = 16;

/// What the index knows of one op (but its event id, kept beside it): one
/// cache line, as a shuffled history touches each op's state at random,
/// four times (its invoke, completion, delivery and `committed` lines).
#[derive(Clone, Copy)]
#[repr(align(64))]
pub(crate) struct OpState {
    pub(crate) invoke_time: i64,
    pub(crate) complete_time: i64,
    pub(crate) seq: u64,
    /// Earliest delivery time (for latency and unseen).
    pub(crate) first_time: i64,
    /// Offset of the first delivery in log order.
    pub(crate) log_offset: i64,
    /// Seq carried by that delivery (`NO_SEQ`: none, use the invoked seq).
    pub(crate) log_seq: u64,
    /// Partition of the first delivery in log order.
    pub(crate) log_partition: i32,
    pub(crate) key: u32,
    pub(crate) deliveries: u32,
    /// 0 none, else `Outcome as u8 + 1`.
    pub(crate) outcome: u8,
    pub(crate) flags: u8,
}

impl OpState {
    pub(crate) const EMPTY: OpState = OpState {
        invoke_time: NONE_TIME,
        complete_time: NONE_TIME,
        seq: NO_SEQ,
        first_time: NONE_TIME,
        log_offset: 0,
        log_seq: NO_SEQ,
        log_partition: 0,
        key: NONE_KEY,
        deliveries: 0,
        outcome: 0,
        flags: 0,
    };

    pub(crate) fn outcome(&self) -> Option<Outcome> {
        match self.outcome {
            1 => Some(Outcome::Ok),
            2 => Some(Outcome::Fail),
            3 => Some(Outcome::Info),
            _ => None,
        }
    }

    pub(crate) fn is(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// What the index knows of one event of index 1 or more of an op: the
/// delivery fields `OpState` keeps for event 0. Only ops that publish several
/// events have these, so one-event ops pay nothing for them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EventState {
    /// Which event of its op.
    pub(crate) index: u32,
    /// How many times it was delivered.
    pub(crate) deliveries: u32,
    /// Earliest delivery time.
    pub(crate) first_time: i64,
    /// Offset of the first delivery in log order.
    pub(crate) log_offset: i64,
    /// Seq carried by that delivery (`NO_SEQ`: none).
    pub(crate) log_seq: u64,
    /// Partition of the first delivery in log order.
    pub(crate) log_partition: i32,
    /// Delivered with more than one event id.
    pub(crate) distinct: bool,
    /// The event id of its first delivery.
    pub(crate) first_event: EventId,
}

impl EventState {
    fn new(index: u32) -> Self {
        EventState {
            index,
            deliveries: 0,
            first_time: NONE_TIME,
            log_offset: 0,
            log_seq: NO_SEQ,
            log_partition: 0,
            distinct: false,
            first_event: [0, 0],
        }
    }

    /// Takes one delivery of this event; returns whether its event id is
    /// new to it (another id than its first delivery's).
    pub(crate) fn deliver(&mut self, event: EventId, time: i64, partition: i32, offset: i64, seq: u64) -> bool {
        let first = self.deliveries == 0;
        self.deliveries = self.deliveries.saturating_add(1);
        if first {
            self.first_event = event;
            self.first_time = time;
            (self.log_partition, self.log_offset, self.log_seq) = (partition, offset, seq);
            return false;
        }
        self.first_time = self.first_time.min(time);
        if (partition, offset) < (self.log_partition, self.log_offset) {
            (self.log_partition, self.log_offset, self.log_seq) = (partition, offset, seq);
        }
        let other = event != self.first_event;
        self.distinct |= other;
        other
    }
}

/// The delivered events of index 1 or more of one op, by index.
pub(crate) enum SideEvents {
    /// Sorted by index: an op has a few events, found by binary search.
    Few(Vec<EventState>),
    /// Past [`SideEvents::FEW`] events: by index in a map, so that an op of
    /// very many events (or a history naming wild indexes) costs no
    /// quadratic insertion.
    Many(Box<FxHashMap<u32, EventState>>),
}

impl SideEvents {
    /// Most events kept in the sorted vector.
    const FEW: usize = 64;

    /// The state of event `index`, made on first use.
    pub(crate) fn get_mut(&mut self, index: u32) -> &mut EventState {
        if let SideEvents::Few(v) = self {
            if v.len() >= Self::FEW && v.binary_search_by_key(&index, |e| e.index).is_err() {
                let map = v.drain(..).map(|e| (e.index, e)).collect();
                *self = SideEvents::Many(Box::new(map));
            }
        }
        match self {
            SideEvents::Few(v) => {
                let at = match v.binary_search_by_key(&index, |e| e.index) {
                    Ok(at) => at,
                    Err(at) => {
                        v.insert(at, EventState::new(index));
                        at
                    }
                };
                &mut v[at]
            }
            SideEvents::Many(m) => m.entry(index).or_insert_with(|| EventState::new(index)),
        }
    }

    /// The events, by index.
    pub(crate) fn sorted(&self) -> std::borrow::Cow<'_, [EventState]> {
        match self {
            SideEvents::Few(v) => std::borrow::Cow::Borrowed(v),
            SideEvents::Many(m) => {
                let mut v: Vec<EventState> = m.values().copied().collect();
                v.sort_unstable_by_key(|e| e.index);
                std::borrow::Cow::Owned(v)
            }
        }
    }

    /// The state of event `index`, if it was delivered.
    pub(crate) fn get(&self, index: u32) -> Option<&EventState> {
        match self {
            SideEvents::Few(v) => v.binary_search_by_key(&index, |e| e.index).ok().map(|at| &v[at]),
            SideEvents::Many(m) => m.get(&index),
        }
    }
}

/// Refers to one op's state: the op id itself for direct slots, or
/// `HASHED | n` for the n-th hashed op.
pub(crate) type Handle = u64;

const HASHED: u64 = 1 << 63;
const SEGMENT_BITS: u32 = 12;
const SEGMENT: usize = 1 << SEGMENT_BITS;
const DIRECT_LIMIT: u64 = 1 << 28;
/// Direct segments may always use this much; beyond it only while half full on average.
const DIRECT_BUDGET_BYTES: usize = 256 << 20;
/// The state size the budget above is counted in: the size `OpState` had
/// when the budget rule was made, kept so the rule (and with it which ops are
/// hashed, which decides the order examples are found in) stays the same.
const BUDGET_STATE_BYTES: usize = 80;
/// Most shards a table is split into (more cores than this share them).
pub(crate) const MAX_SHARD_BITS: u32 = 3;

enum Segment {
    Unused,
    /// Its ops live in the shards' direct segments; one bit per op says which exist.
    Direct(Box<[u64; SEGMENT / 64]>),
    /// Refused (over budget): its ops live in the hash map.
    Hashed,
}

/// Which ops exist and the handle of each; decided in the order ops are first seen.
#[derive(Default)]
pub(crate) struct OpSlots {
    segments: Vec<Segment>,
    direct_segments: usize,
    direct_ops: usize,
    hashed_index: FxHashMap<u64, u32>,
    hashed_ids: Vec<u64>,
}

impl OpSlots {
    /// The handle of `op`'s state, creating the op if needed.
    pub(crate) fn slot(&mut self, op: u64) -> Handle {
        if op < DIRECT_LIMIT {
            let seg = (op >> SEGMENT_BITS) as usize;
            if let Some(Segment::Direct(present)) = self.segments.get_mut(seg) {
                // The common case, kept short: a segment already in use.
                let (word, bit) = ((op as usize & (SEGMENT - 1)) / 64, 1u64 << (op % 64));
                if present[word] & bit == 0 {
                    present[word] |= bit;
                    self.direct_ops += 1;
                }
                return op;
            }
            if seg >= self.segments.len() {
                self.segments.resize_with(seg + 1, || Segment::Unused);
            }
            if matches!(self.segments[seg], Segment::Unused) {
                let bytes = (self.direct_segments + 1) * SEGMENT * BUDGET_STATE_BYTES;
                let affordable = bytes <= DIRECT_BUDGET_BYTES || self.direct_ops * 2 * BUDGET_STATE_BYTES >= bytes;
                self.segments[seg] = if affordable {
                    self.direct_segments += 1;
                    Segment::Direct(Box::new([0; SEGMENT / 64]))
                } else {
                    Segment::Hashed
                };
                if affordable {
                    return self.slot(op);
                }
            }
        }
        if let Some(&n) = self.hashed_index.get(&op) {
            return HASHED | n as u64;
        }
        let n = self.hashed_ids.len();
        self.hashed_ids.push(op);
        self.hashed_index.insert(op, n as u32);
        HASHED | n as u64
    }

    /// How many ops exist.
    pub(crate) fn len(&self) -> usize {
        self.direct_ops + self.hashed_ids.len()
    }

    /// The op id a handle stands for.
    pub(crate) fn op_id(&self, h: Handle) -> u64 {
        if h & HASHED != 0 {
            self.hashed_ids[(h & !HASHED) as usize]
        } else {
            h
        }
    }

    /// Every op's handle: direct ones in id order, then hashed ones in the order first seen.
    pub(crate) fn handles(&self) -> impl Iterator<Item = Handle> + '_ {
        let direct = self.segments.iter().enumerate().flat_map(|(seg, s)| {
            let present: &[u64] = match s {
                Segment::Direct(present) => &present[..],
                _ => &[],
            };
            present.iter().enumerate().flat_map(move |(w, &bits)| {
                let base = ((seg << SEGMENT_BITS) + w * 64) as u64;
                BitIter(bits).map(move |b| base + u64::from(b))
            })
        });
        let hashed = (0..self.hashed_ids.len() as u64).map(|n| HASHED | n);
        direct.chain(hashed)
    }
}

/// The set bits of a word, lowest first.
struct BitIter(u64);

impl Iterator for BitIter {
    type Item = u32;
    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            return None;
        }
        let b = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(b)
    }
}

/// The shard a handle belongs to, of `1 << shard_bits`: its low bits, so
/// dense ids (and hashed ops in the order seen) spread evenly.
pub(crate) fn shard_of(h: Handle, shard_bits: u32) -> usize {
    (h as usize) & ((1 << shard_bits) - 1)
}

/// The states of the ops of one shard.
///
/// A block (the shard's part of a segment) is made on first use, in the
/// next free place of the current chunk (2 MiB of states): one allocation
/// per chunk, not per block, and memory grows with the blocks made.
/// (Asking for huge pages for the chunks, against the misses of the
/// address translation cache when a shuffled history touches the states
/// at random, was measured: the kernel's zeroing of huge pages cost as
/// much as it saved.)
pub(crate) struct OpStore {
    shard_bits: u32,
    /// Where each block is, by segment (as [`OpSlots`] numbers them).
    direct: Vec<Place>,
    /// Where each block is, by `n / SEGMENT` of the hashed handles `HASHED | n`.
    hashed: Vec<Place>,
    /// The states of the blocks, chunk after chunk.
    states: Vec<Vec<OpState>>,
    /// The event id of each state's first delivery, in chunks of the same
    /// lengths (apart: only `deliver` lines need them).
    events: Vec<Vec<EventId>>,
}

/// Where a block's states start: (chunk, index in chunk); `NOWHERE`: not made.
type Place = (u32, u32);
const NOWHERE: Place = (u32::MAX, 0);
/// States in a chunk (2 MiB of them, or one block if a block is larger):
/// small enough that the unused end of the last chunk costs little.
const CHUNK: usize = 1 << 15;

impl OpStore {
    /// An empty shard of `1 << shard_bits`.
    pub(crate) fn new(shard_bits: u32) -> Self {
        OpStore {
            shard_bits,
            direct: Vec::new(),
            hashed: Vec::new(),
            states: Vec::new(),
            events: Vec::new(),
        }
    }

    /// (hashed?, block, index in block) of a handle of this shard.
    #[inline(always)]
    fn locate(&self, h: Handle) -> (bool, usize, usize) {
        let n = h & !HASHED;
        (
            h & HASHED != 0,
            (n >> SEGMENT_BITS) as usize,
            (n as usize & (SEGMENT - 1)) >> self.shard_bits,
        )
    }

    /// (chunk, index in chunk) of a handle's state, if its block was made.
    #[inline(always)]
    fn find(&self, h: Handle) -> Option<(usize, usize)> {
        let (hashed, block, i) = self.locate(h);
        let blocks = if hashed { &self.hashed } else { &self.direct };
        match blocks.get(block) {
            Some(&(chunk, start)) if chunk != u32::MAX => Some((chunk as usize, start as usize + i)),
            _ => None,
        }
    }

    /// The state behind a handle of this shard, and its first event id, to
    /// change (made on first use).
    #[inline]
    pub(crate) fn get_mut(&mut self, h: Handle) -> (&mut OpState, &mut EventId) {
        let (chunk, i) = match self.find(h) {
            Some(at) => at,
            None => self.make_block(h),
        };
        (&mut self.states[chunk][i], &mut self.events[chunk][i])
    }

    /// Makes the block of `h`; returns where `h`'s state is.
    #[cold]
    fn make_block(&mut self, h: Handle) -> (usize, usize) {
        let per_block = SEGMENT >> self.shard_bits;
        let full = self.states.last().is_none_or(|c| c.len() + per_block > c.capacity());
        if full {
            let len = CHUNK.max(per_block);
            self.states.push(Vec::with_capacity(len));
            self.events.push(Vec::with_capacity(len));
        }
        let chunk = self.states.len() - 1;
        let start = self.states[chunk].len();
        self.states[chunk].resize(start + per_block, OpState::EMPTY);
        self.events[chunk].resize(start + per_block, [0, 0]);
        let (hashed, block, i) = self.locate(h);
        let blocks = if hashed { &mut self.hashed } else { &mut self.direct };
        if block >= blocks.len() {
            blocks.resize(block + 1, NOWHERE);
        }
        blocks[block] = (chunk as u32, start as u32);
        (chunk, start + i)
    }

    /// The state behind a handle of this shard (empty if it was never changed).
    pub(crate) fn get(&self, h: Handle) -> &OpState {
        self.find(h).map_or(&OpState::EMPTY, |(c, i)| &self.states[c][i])
    }

    /// The event id of the first delivery of a handle of this shard.
    pub(crate) fn event(&self, h: Handle) -> EventId {
        self.find(h).map_or([0, 0], |(c, i)| self.events[c][i])
    }

    /// Asks the CPU to fetch the state of `h` (and its event id, when
    /// `event`) into the cache ahead of its use (a shuffled history touches
    /// the states at random; a miss each line otherwise). Does nothing for
    /// states not made yet.
    #[inline(always)]
    pub(crate) fn prefetch(&self, h: Handle, event: bool) {
        if let Some((c, i)) = self.find(h) {
            if let Some(s) = self.states[c].get(i) {
                prefetch_read((s as *const OpState).cast());
            }
            if event {
                if let Some(e) = self.events[c].get(i) {
                    prefetch_read((e as *const EventId).cast());
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn prefetch_read(p: *const u8) {
    // SAFETY: a prefetch is only a hint: it dereferences nothing and cannot
    // fault, and SSE is part of every x86_64 CPU.
    unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast()) };
}

#[cfg(not(target_arch = "x86_64"))]
fn prefetch_read(_: *const u8) {}
