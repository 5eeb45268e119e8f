//! The seeded workload generator.
//!
//! Worker `w` of `c` owns the keys `k{i}` with `i % c == w`, so one key's ops
//! are always run by one worker, one at a time, in seq order. Its n-th op has
//! id `n * c + w`: unique and independent of timing. Each worker draws from
//! its own RNG (seeded from the run seed and `w`), so the stream of ops a
//! worker produces is the same for the same seed whatever the others do.

use crate::op::{Op, OpEvent, WriteShape};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How keys are chosen within a worker's share.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Skew {
    /// Every key equally often.
    Uniform,
    /// Zipf with this exponent (1.0 is classic): a few hot keys.
    Zipf(f64),
}

impl fmt::Display for Skew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Skew::Uniform => write!(f, "uniform"),
            Skew::Zipf(s) => write!(f, "zipf:{s}"),
        }
    }
}

impl FromStr for Skew {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(Skew::Uniform),
            "zipf" => Ok(Skew::Zipf(1.0)),
            _ => match s.strip_prefix("zipf:").map(str::parse::<f64>) {
                Some(Ok(e)) if e > 0.0 => Ok(Skew::Zipf(e)),
                _ => Err(format!(
                    "unknown key skew `{s}`; use `uniform`, `zipf` or `zipf:EXPONENT` (> 0)"
                )),
            },
        }
    }
}

/// How many events one op publishes (`--events-per-op`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventsPerOp {
    /// Always this many (1: today's one-event ops, the default).
    Fixed(u32),
    /// Uniformly between the two, both included.
    Range(u32, u32),
    /// Zipf over 1..=`max` with this exponent: most ops publish a few events,
    /// now and then one publishes many (a batch import).
    Zipf {
        /// The most events one op may publish.
        max: u32,
        /// The Zipf exponent (1.0 is classic).
        exponent: f64,
    },
}

impl EventsPerOp {
    /// The most events one op publishes, as the workload allows.
    pub const LIMIT: u32 = 5000;

    /// The most events one op of this distribution publishes.
    pub fn max(&self) -> u32 {
        match *self {
            EventsPerOp::Fixed(n) => n,
            EventsPerOp::Range(_, b) => b,
            EventsPerOp::Zipf { max, .. } => max,
        }
    }

    /// Whether every op publishes exactly one event (today's ops).
    pub fn is_one(&self) -> bool {
        *self == EventsPerOp::Fixed(1)
    }

    /// Draws one op's count. A fixed count draws nothing from `rng`, so the
    /// default leaves the seeded op stream exactly as it was.
    fn draw(&self, rng: &mut StdRng) -> u32 {
        match *self {
            EventsPerOp::Fixed(n) => n,
            EventsPerOp::Range(a, b) => rng.random_range(a..=b),
            EventsPerOp::Zipf { max, exponent } => {
                let z = Zipf::new(max as f64, exponent).expect("validated zipf");
                (z.sample(rng) as u32).clamp(1, max)
            }
        }
    }
}

impl Default for EventsPerOp {
    fn default() -> Self {
        EventsPerOp::Fixed(1)
    }
}

impl fmt::Display for EventsPerOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventsPerOp::Fixed(n) => write!(f, "{n}"),
            EventsPerOp::Range(a, b) => write!(f, "{a}-{b}"),
            EventsPerOp::Zipf { max, exponent } => write!(f, "zipf:{max}:{exponent}"),
        }
    }
}

impl FromStr for EventsPerOp {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let how = "use a count (`5`), a range (`2-10`) or a skewed count (`zipf:MAX` or `zipf:MAX:EXPONENT`)";
        let count = |t: &str| -> Result<u32, String> {
            match t.trim().parse::<u32>() {
                Ok(n) if (1..=Self::LIMIT).contains(&n) => Ok(n),
                _ => Err(format!(
                    "--events-per-op `{s}`: `{t}` is not a count from 1 to {}; {how}",
                    Self::LIMIT
                )),
            }
        };
        if let Some(rest) = s.strip_prefix("zipf:") {
            let (max, exponent) = match rest.split_once(':') {
                Some((m, e)) => (m, e.parse::<f64>().ok().filter(|e| *e > 0.0 && e.is_finite())),
                None => (rest, Some(1.0)),
            };
            let exponent = exponent
                .ok_or_else(|| format!("--events-per-op `{s}`: the exponent must be a number above 0; {how}"))?;
            return Ok(EventsPerOp::Zipf {
                max: count(max)?,
                exponent,
            });
        }
        match s.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (count(a)?, count(b)?);
                if a > b {
                    return Err(format!("--events-per-op `{s}`: the range is empty ({a} > {b}); {how}"));
                }
                Ok(EventsPerOp::Range(a, b))
            }
            None => Ok(EventsPerOp::Fixed(count(s)?)),
        }
    }
}

/// What a run does: rate, concurrency, keys, payloads and the special transactions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Seed of every random choice.
    pub seed: u64,
    /// Target ops per second over all workers (0 = as fast as the implementation answers).
    pub rate: f64,
    /// Worker tasks (clamped to the number of keys).
    pub concurrency: usize,
    /// Distinct business keys.
    pub keys: usize,
    /// Key choice within a worker's share.
    pub skew: Skew,
    /// Payload bytes per op.
    pub payload_bytes: usize,
    /// Fraction of business transactions that abort on purpose.
    pub abort_fraction: f64,
    /// Fraction of long transactions.
    pub long_fraction: f64,
    /// How long a long transaction holds before committing, in ms.
    pub long_hold_ms: u64,
    /// `--idle-window`, in ms (0: none): for this long in the middle of the run
    /// ([`Workload::idle_span`]) the workers submit no op, so the tables a
    /// pattern captures see no write (the harness writes filler WAL elsewhere).
    #[serde(default)]
    pub idle_window_ms: u64,
    /// `--events-per-op`: how many events one op's transaction publishes.
    #[serde(default)]
    pub events_per_op: EventsPerOp,
    /// `--keys-per-op`: over how many of its worker's keys an op's events are
    /// spread (event `i` on the op's `i % n`-th key; 1: all on the op's key).
    #[serde(default = "one")]
    pub keys_per_op: usize,
    /// `--write`: how a transaction writes its rows.
    #[serde(default)]
    pub write: WriteShape,
}

fn one() -> usize {
    1
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            seed: 0,
            rate: 100.0,
            concurrency: 8,
            keys: 32,
            skew: Skew::Uniform,
            payload_bytes: 64,
            abort_fraction: 0.05,
            long_fraction: 0.05,
            long_hold_ms: 300,
            idle_window_ms: 0,
            events_per_op: EventsPerOp::default(),
            keys_per_op: 1,
            write: WriteShape::Single,
        }
    }
}

impl Workload {
    /// Checks the knobs; the error says which one is wrong and what it takes.
    pub fn validate(&self) -> Result<(), String> {
        if self.keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        if self.concurrency == 0 {
            return Err("--concurrency must be at least 1".into());
        }
        if !(self.rate >= 0.0 && self.rate.is_finite()) {
            return Err(format!(
                "--rate must be 0 (unlimited) or a positive number of ops/s, not {}",
                self.rate
            ));
        }
        for (name, f) in [
            ("--abort-fraction", self.abort_fraction),
            ("--long-fraction", self.long_fraction),
        ] {
            if !(0.0..=1.0).contains(&f) {
                return Err(format!("{name} must be between 0 and 1, not {f}"));
            }
        }
        if self.abort_fraction + self.long_fraction > 1.0 {
            return Err("--abort-fraction plus --long-fraction must not exceed 1".into());
        }
        let share = self.keys / self.workers();
        if self.keys_per_op == 0 || self.keys_per_op > share {
            return Err(format!(
                "--keys-per-op {} must be between 1 and the keys each worker owns ({} keys over {} workers: {share}); \
                 raise --keys or lower --concurrency",
                self.keys_per_op,
                self.keys,
                self.workers()
            ));
        }
        Ok(())
    }

    /// Checks the idle window against the run's `duration`: it must leave time
    /// for writes before and after it.
    pub fn validate_idle(&self, duration: std::time::Duration) -> Result<(), String> {
        let idle = std::time::Duration::from_millis(self.idle_window_ms);
        if self.idle_window_ms > 0 && idle >= duration {
            return Err(format!(
                "--idle-window {:?} must be shorter than --duration {:?} (it sits in the middle of the run, with writes before and after it)",
                idle, duration
            ));
        }
        Ok(())
    }

    /// The idle window of a run of `duration`, as (start, stop) from the
    /// workload's start: `idle_window_ms` centred in the run (`None`: no window).
    pub fn idle_span(&self, duration: std::time::Duration) -> Option<(std::time::Duration, std::time::Duration)> {
        if self.idle_window_ms == 0 {
            return None;
        }
        let idle = std::time::Duration::from_millis(self.idle_window_ms).min(duration);
        let start = (duration - idle) / 2;
        Some((start, start + idle))
    }

    /// Workers actually used: never more than keys, so each owns at least one.
    pub fn workers(&self) -> usize {
        self.concurrency.min(self.keys).max(1)
    }

    /// Each worker's pause between ops to reach the target rate (`None`: no pacing).
    pub fn worker_interval(&self) -> Option<std::time::Duration> {
        (self.rate > 0.0).then(|| std::time::Duration::from_secs_f64(self.workers() as f64 / self.rate))
    }

    /// When worker `w`'s first op is due, from the start of the workload
    /// (`None`: no pacing). The workers' schedules are staggered by an even
    /// share of the interval, so that the ops arrive one every `1 / rate` s: with
    /// every worker starting at once, `--rate 50` with 16 workers arrived as
    /// bursts of 16 concurrent ops every 320 ms, and a latency "at 50 ops/s"
    /// measured how a pattern drains a burst.
    pub fn worker_offset(&self, w: usize) -> Option<std::time::Duration> {
        let workers = self.workers() as u32;
        self.worker_interval().map(|iv| iv * (w as u32 % workers) / workers)
    }

    /// The op stream of worker `w` (0-based, below [`Workload::workers`]).
    pub fn worker(&self, w: usize) -> WorkerStream {
        let workers = self.workers();
        assert!(w < workers, "worker {w} out of range (workers: {workers})");
        let owned: Vec<usize> = (w..self.keys).step_by(workers).collect();
        let zipf = match self.skew {
            Skew::Zipf(s) if owned.len() > 1 => Some(Zipf::new(owned.len() as f64, s).expect("valid zipf")),
            _ => None,
        };
        let mixed = self.seed ^ (w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
        WorkerStream {
            workload: self.clone(),
            worker: w,
            workers,
            next_seq: vec![0; owned.len()],
            owned,
            zipf,
            rng: StdRng::seed_from_u64(mixed),
            produced: 0,
        }
    }
}

/// The deterministic stream of ops of one worker.
pub struct WorkerStream {
    workload: Workload,
    worker: usize,
    workers: usize,
    owned: Vec<usize>,
    next_seq: Vec<u64>,
    zipf: Option<Zipf<f64>>,
    rng: StdRng,
    produced: u64,
}

impl WorkerStream {
    /// The keys this worker owns.
    pub fn keys(&self) -> impl Iterator<Item = String> + '_ {
        self.owned.iter().map(|k| format!("k{k}"))
    }

    /// The worker's index.
    pub fn worker(&self) -> usize {
        self.worker
    }
}

impl Iterator for WorkerStream {
    type Item = Op;

    fn next(&mut self) -> Option<Op> {
        let slot = match &self.zipf {
            Some(z) => (z.sample(&mut self.rng) as usize).clamp(1, self.owned.len()) - 1,
            None => self.rng.random_range(0..self.owned.len()),
        };
        let roll: f64 = self.rng.random();
        let w = &self.workload;
        let abort = roll < w.abort_fraction;
        let long = !abort && roll < w.abort_fraction + w.long_fraction;
        let op = self.produced * self.workers as u64 + self.worker as u64;
        self.produced += 1;
        let seq = self.next_seq[slot];
        self.next_seq[slot] += 1;
        let events = self.events_of(slot, seq);
        Some(Op {
            op,
            key: format!("k{}", self.owned[slot]),
            seq,
            payload: payload(op, self.workload.payload_bytes),
            abort,
            hold_ms: if long { self.workload.long_hold_ms } else { 0 },
            events,
            write: self.workload.write,
        })
    }
}

impl WorkerStream {
    /// The events of an op on `slot` at `seq` (empty for a one-event op): its
    /// count drawn, its further keys drawn among the worker's own (each takes
    /// its next seq), event `i` on the `i % keys`-th of them. Nothing is drawn
    /// for one-event ops, so their stream is unchanged.
    fn events_of(&mut self, slot: usize, seq: u64) -> Vec<OpEvent> {
        let n = self.workload.events_per_op.draw(&mut self.rng) as usize;
        if n <= 1 {
            return vec![];
        }
        let mut slots = vec![(slot, seq)];
        let wanted = self.workload.keys_per_op.min(n).min(self.owned.len());
        while slots.len() < wanted {
            let other = self.rng.random_range(0..self.owned.len());
            if slots.iter().all(|(s, _)| *s != other) {
                slots.push((other, self.next_seq[other]));
                self.next_seq[other] += 1;
            }
        }
        (0..n)
            .map(|i| {
                let (s, seq) = slots[i % slots.len()];
                OpEvent {
                    index: i as u32,
                    key: format!("k{}", self.owned[s]),
                    seq,
                }
            })
            .collect()
    }
}

/// A payload of exactly `bytes` printable bytes, different per op.
fn payload(op: u64, bytes: usize) -> String {
    let stamp = format!("op{op}:");
    stamp.chars().chain(std::iter::repeat('x')).take(bytes).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_window_sits_in_the_middle_and_must_be_shorter_than_the_run() {
        use std::time::Duration;
        let s = Duration::from_secs;
        let mut w = Workload::default();
        assert_eq!(w.idle_span(s(30)), None);
        assert!(w.validate_idle(s(30)).is_ok());
        w.idle_window_ms = 10_000;
        assert_eq!(w.idle_span(s(30)), Some((s(10), s(20))));
        assert_eq!(
            w.idle_span(s(11)),
            Some((Duration::from_millis(500), Duration::from_millis(10_500)))
        );
        assert!(w.validate_idle(s(11)).is_ok());
        let e = w.validate_idle(s(10)).unwrap_err();
        assert!(e.contains("--idle-window") && e.contains("--duration"), "{e}");
        // Read back from an environment.json written before the field existed.
        let mut old = serde_json::to_value(Workload::default()).unwrap();
        old.as_object_mut().unwrap().remove("idle_window_ms");
        assert_eq!(serde_json::from_value::<Workload>(old).unwrap(), Workload::default());
    }

    #[test]
    fn same_seed_same_ops_different_seed_different_ops() {
        let w = Workload {
            seed: 7,
            skew: Skew::Zipf(1.1),
            ..Workload::default()
        };
        let a: Vec<Op> = w.worker(3).take(200).collect();
        let b: Vec<Op> = w.worker(3).take(200).collect();
        assert_eq!(a, b);
        let other = Workload { seed: 8, ..w.clone() };
        let c: Vec<Op> = other.worker(3).take(200).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn paced_workers_start_an_even_share_of_the_interval_apart() {
        let w = Workload {
            rate: 50.0,
            concurrency: 16,
            keys: 32,
            ..Workload::default()
        };
        let iv = w.worker_interval().expect("paced");
        assert_eq!(iv, std::time::Duration::from_millis(320));
        let offsets: Vec<_> = (0..w.workers()).map(|n| w.worker_offset(n).expect("paced")).collect();
        assert_eq!(offsets[0], std::time::Duration::ZERO);
        for pair in offsets.windows(2) {
            // One op every 1/rate s: 20 ms apart.
            assert_eq!(pair[1] - pair[0], std::time::Duration::from_millis(20));
        }
        assert!(*offsets.last().unwrap() < iv);
        let unpaced = Workload { rate: 0.0, ..w };
        assert_eq!(unpaced.worker_offset(3), None);
    }

    #[test]
    fn workers_own_disjoint_keys_and_ids_and_seqs_count_up() {
        let w = Workload {
            keys: 10,
            concurrency: 4,
            ..Workload::default()
        };
        let mut ids = std::collections::HashSet::new();
        let mut owner = std::collections::HashMap::new();
        for n in 0..w.workers() {
            let mut seqs: std::collections::HashMap<String, u64> = Default::default();
            for op in w.worker(n).take(300) {
                assert!(ids.insert(op.op), "op id {} reused", op.op);
                assert_eq!(
                    *owner.entry(op.key.clone()).or_insert(n),
                    n,
                    "key {} has two owners",
                    op.key
                );
                let next = seqs.entry(op.key.clone()).or_insert(0);
                assert_eq!(op.seq, *next);
                *next += 1;
                assert_eq!(op.payload.len(), w.payload_bytes);
            }
        }
    }

    #[test]
    fn fractions_of_aborts_and_long_transactions_hold() {
        let w = Workload {
            abort_fraction: 0.2,
            long_fraction: 0.3,
            ..Workload::default()
        };
        let ops: Vec<Op> = w.worker(0).take(5000).collect();
        let aborts = ops.iter().filter(|o| o.abort).count() as f64 / 5000.0;
        let longs = ops.iter().filter(|o| o.hold_ms > 0).count() as f64 / 5000.0;
        assert!((aborts - 0.2).abs() < 0.03, "{aborts}");
        assert!((longs - 0.3).abs() < 0.03, "{longs}");
        assert!(ops.iter().all(|o| !(o.abort && o.hold_ms > 0)));
    }

    #[test]
    fn zipf_makes_hot_keys() {
        let w = Workload {
            keys: 64,
            concurrency: 1,
            skew: Skew::Zipf(1.2),
            ..Workload::default()
        };
        let mut counts = std::collections::HashMap::<String, usize>::new();
        for op in w.worker(0).take(5000) {
            *counts.entry(op.key).or_default() += 1;
        }
        let hottest = counts.values().max().copied().unwrap();
        assert!(
            hottest > 5000 / 64 * 5,
            "the hottest key should be far above uniform: {hottest}"
        );
    }

    #[test]
    fn multi_event_ops_spread_over_their_workers_keys_and_count_seqs_per_key() {
        let w = Workload {
            keys: 12,
            concurrency: 2,
            events_per_op: "2-6".parse().unwrap(),
            keys_per_op: 3,
            ..Workload::default()
        };
        let mut seqs: std::collections::HashMap<String, u64> = Default::default();
        let mut counts = std::collections::BTreeSet::new();
        for op in w.worker(1).take(500) {
            let events = op.each_event();
            counts.insert(events.len());
            assert!((2..=6).contains(&events.len()));
            assert_eq!((events[0].key.as_str(), events[0].seq), (op.key.as_str(), op.seq));
            let mut places: Vec<(String, u64)> = events.iter().map(|e| (e.key.clone(), e.seq)).collect();
            places.sort();
            places.dedup();
            assert_eq!(places.len(), 3.min(events.len()), "{op:?}");
            for (i, e) in events.iter().enumerate() {
                assert_eq!(e.index as usize, i);
                assert_eq!(
                    e.key.trim_start_matches('k').parse::<usize>().unwrap() % 2,
                    1,
                    "owned by worker 1"
                );
            }
            // Each key the op touches takes its next seq, once.
            for (key, seq) in places {
                let next = seqs.entry(key).or_insert(0);
                assert_eq!(seq, *next);
                *next += 1;
            }
        }
        assert_eq!(counts.len(), 5, "every count of the range is drawn: {counts:?}");
    }

    #[test]
    fn one_event_per_op_leaves_the_seeded_stream_as_it_was() {
        let w = Workload {
            seed: 3,
            ..Workload::default()
        };
        let fixed = Workload {
            events_per_op: EventsPerOp::Fixed(4),
            ..w.clone()
        };
        for (a, b) in w.worker(0).zip(fixed.worker(0)).take(300) {
            assert!(a.events.is_empty());
            assert_eq!((a.op, &a.key, a.seq, a.abort), (b.op, &b.key, b.seq, b.abort));
            assert_eq!(b.event_count(), 4);
        }
    }

    #[test]
    fn events_per_op_parses_counts_ranges_and_skews() {
        assert_eq!("5".parse(), Ok(EventsPerOp::Fixed(5)));
        assert_eq!("2-10".parse(), Ok(EventsPerOp::Range(2, 10)));
        assert_eq!(
            "zipf:1000".parse(),
            Ok(EventsPerOp::Zipf {
                max: 1000,
                exponent: 1.0
            })
        );
        for bad in ["0", "10-2", "x", "zipf:0", "zipf:10:-1", "99999"] {
            let e = bad.parse::<EventsPerOp>().unwrap_err();
            assert!(e.contains("--events-per-op"), "{bad}: {e}");
        }
        let w = Workload {
            events_per_op: "zipf:200".parse().unwrap(),
            ..Workload::default()
        };
        let sizes: Vec<usize> = w.worker(0).take(2000).map(|o| o.event_count()).collect();
        assert!(sizes.iter().filter(|&&n| n == 1).count() > 200, "mostly small");
        assert!(sizes.iter().any(|&n| n > 20), "now and then a large import");
        let e = Workload {
            keys_per_op: 9,
            ..Workload::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.contains("--keys-per-op") && e.contains("raise --keys"), "{e}");
    }

    #[test]
    fn bad_knobs_are_explained() {
        assert!(Workload {
            keys: 0,
            ..Workload::default()
        }
        .validate()
        .unwrap_err()
        .contains("--keys"));
        assert!(Workload {
            abort_fraction: 1.5,
            ..Workload::default()
        }
        .validate()
        .unwrap_err()
        .contains("--abort"));
        assert!("zipf:-1".parse::<Skew>().unwrap_err().contains("zipf:EXPONENT"));
        assert_eq!("zipf:1.5".parse::<Skew>(), Ok(Skew::Zipf(1.5)));
    }
}
