//! Where the checker keeps one [`OpState`] per op, found by op id.
//!
//! Op ids are usually dense (0, 1, 2, ...), so ids below 2^28 index fixed-size
//! segments directly: no hash, no per-op key, no growth by doubling. Sparse
//! ids (or dense ones past the memory budget for mostly-empty segments) go to
//! a hash map instead, so a strange history costs speed, never unbounded memory.

use crate::event_id::EventId;
use crate::history::Outcome;
use rustc_hash::FxHashMap;

pub(crate) const NONE_TIME: i64 = i64::MIN;
pub(crate) const NONE_KEY: u32 = u32::MAX;
pub(crate) const NO_SEQ: u64 = u64::MAX;

/// The op has a slot (direct slots exist before their op is seen).
pub(crate) const PRESENT: u8 = 8;
pub(crate) const INVOKED: u8 = 1;
pub(crate) const COMMITTED: u8 = 2;
pub(crate) const DISTINCT_EVENTS: u8 = 4;

/// What the index knows of one op.
#[derive(Clone, Copy)]
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
    /// Event id of the first delivery seen.
    pub(crate) event: EventId,
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
        event: [0, 0],
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

    pub(crate) fn delivery_seq(&self) -> u64 {
        if self.log_seq == NO_SEQ {
            self.seq
        } else {
            self.log_seq
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

enum Segment {
    Unused,
    Direct(Box<[OpState]>),
    /// Refused (over budget): its ops live in the hash map.
    Hashed,
}

/// One [`OpState`] per op id.
#[derive(Default)]
pub(crate) struct OpTable {
    segments: Vec<Segment>,
    direct_segments: usize,
    direct_ops: usize,
    hashed_index: FxHashMap<u64, u32>,
    hashed_ids: Vec<u64>,
    hashed: Vec<Box<[OpState]>>,
}

impl OpTable {
    /// The handle of `op`'s state, creating it if needed.
    pub(crate) fn slot(&mut self, op: u64) -> Handle {
        if op < DIRECT_LIMIT {
            let seg = (op >> SEGMENT_BITS) as usize;
            if seg >= self.segments.len() {
                self.segments.resize_with(seg + 1, || Segment::Unused);
            }
            if matches!(self.segments[seg], Segment::Unused) {
                let bytes = (self.direct_segments + 1) * SEGMENT * size_of::<OpState>();
                let affordable = bytes <= DIRECT_BUDGET_BYTES || self.direct_ops * 2 * size_of::<OpState>() >= bytes;
                self.segments[seg] = if affordable {
                    self.direct_segments += 1;
                    Segment::Direct(vec![OpState::EMPTY; SEGMENT].into_boxed_slice())
                } else {
                    Segment::Hashed
                };
            }
            if let Segment::Direct(states) = &mut self.segments[seg] {
                let s = &mut states[op as usize & (SEGMENT - 1)];
                if s.flags & PRESENT == 0 {
                    s.flags |= PRESENT;
                    self.direct_ops += 1;
                }
                return op;
            }
        }
        if let Some(&n) = self.hashed_index.get(&op) {
            return HASHED | n as u64;
        }
        let n = self.hashed_ids.len();
        if n.is_multiple_of(SEGMENT) {
            self.hashed.push(vec![OpState::EMPTY; SEGMENT].into_boxed_slice());
        }
        self.hashed[n / SEGMENT][n % SEGMENT].flags |= PRESENT;
        self.hashed_ids.push(op);
        self.hashed_index.insert(op, n as u32);
        HASHED | n as u64
    }

    /// Asks the CPU to fetch `op`'s state into the cache ahead of its use
    /// (a shuffled history touches the states at random; a miss each line
    /// otherwise). Does nothing for ops without a direct slot yet.
    pub(crate) fn prefetch(&self, op: u64) {
        if op >= DIRECT_LIMIT {
            return;
        }
        if let Some(Segment::Direct(states)) = self.segments.get((op >> SEGMENT_BITS) as usize) {
            let p = &states[op as usize & (SEGMENT - 1)] as *const OpState;
            prefetch_read(p.cast());
            // An `OpState` may straddle two cache lines.
            prefetch_read(p.cast::<u8>().wrapping_add(size_of::<OpState>() - 1));
        }
    }

    /// The state behind a handle from [`OpTable::slot`].
    pub(crate) fn get(&self, h: Handle) -> &OpState {
        if h & HASHED != 0 {
            let n = (h & !HASHED) as usize;
            return &self.hashed[n / SEGMENT][n % SEGMENT];
        }
        match &self.segments[(h >> SEGMENT_BITS) as usize] {
            Segment::Direct(states) => &states[h as usize & (SEGMENT - 1)],
            _ => unreachable!("direct handles point into direct segments"),
        }
    }

    /// The state behind a handle, to change.
    pub(crate) fn get_mut(&mut self, h: Handle) -> &mut OpState {
        if h & HASHED != 0 {
            let n = (h & !HASHED) as usize;
            return &mut self.hashed[n / SEGMENT][n % SEGMENT];
        }
        match &mut self.segments[(h >> SEGMENT_BITS) as usize] {
            Segment::Direct(states) => &mut states[h as usize & (SEGMENT - 1)],
            _ => unreachable!("direct handles point into direct segments"),
        }
    }

    /// The op id a handle stands for.
    pub(crate) fn op_id(&self, h: Handle) -> u64 {
        if h & HASHED != 0 {
            self.hashed_ids[(h & !HASHED) as usize]
        } else {
            h
        }
    }

    /// Every op's handle and state (direct ones in id order, then hashed ones).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (Handle, &OpState)> {
        let direct = self.segments.iter().enumerate().flat_map(|(seg, s)| {
            let states: &[OpState] = match s {
                Segment::Direct(states) => states,
                _ => &[],
            };
            states
                .iter()
                .enumerate()
                .filter(|(_, st)| st.flags & PRESENT != 0)
                .map(move |(i, st)| (((seg << SEGMENT_BITS) + i) as u64, st))
        });
        let hashed = (0..self.hashed_ids.len()).map(|n| (HASHED | n as u64, &self.hashed[n / SEGMENT][n % SEGMENT]));
        direct.chain(hashed)
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
