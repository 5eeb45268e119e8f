//! The fault schedule, Jepsen-style: quiet periods, then a round of faults,
//! again and again; everything stopped before the run ends. A round is either
//! a random subset of the chosen faults starting at staggered moments, staying
//! a while and stopping staggered, or one fault nested inside another on
//! purpose: an outage (a kill, a pause) that starts after a condition (a
//! partition, latency) took hold and ends before it heals. Those nestings are
//! what expose the bugs that live in the overlap — a relay killed while its
//! producer holds records a partition kept from the broker — so every schedule
//! of two or more faults has one in its first or second round rather than by
//! luck. The schedule is a pure function of the seed, the faults and the duration.
//!
//! It is generic over the fault type `F`: the harness schedules its `Fault`
//! enum, which serializes to the fault's CLI name, so `schedule.json` names
//! faults as `dualcheck list` does. The faults' order in
//! [`ScheduleConfig::faults`] is part of the seed: the same list in another
//! order gives another schedule.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// Whether a schedule step starts or stops its fault (`phase` in `schedule.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultPhase {
    /// The fault begins.
    Start,
    /// The fault is healed.
    Stop,
}

/// How a fault acts over its window, which decides how faults nest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultShape {
    /// A state of the system that holds for the window (a partition,
    /// latency, a changed schema): other faults nest inside it.
    Condition,
    /// A part of the system taken away for the window (killed, paused):
    /// nests inside a condition.
    Outage,
}

/// A fault type the schedule can nest: what [`FaultShape`] each fault has,
/// and which nestings would be pointless.
pub trait Nest {
    /// The fault's shape.
    fn shape(&self) -> FaultShape;

    /// Whether this fault, nested inside `outer`, can still do anything: a
    /// crash armed for the next commit cannot fire while the database is cut
    /// off, so nesting it there would only hide it. Every nesting by default.
    fn nests_in(&self, outer: &Self) -> bool {
        let _ = outer;
        true
    }
}

/// One step of a schedule: at `at`, start or stop `fault`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleStep<F> {
    /// Offset from the start of the workload.
    pub at: Duration,
    /// The fault.
    pub fault: F,
    /// Start or stop.
    pub phase: FaultPhase,
}

/// What a schedule is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleConfig<F> {
    /// Seed of every choice.
    pub seed: u64,
    /// Faults to choose from, in the order the seed's draws refer to.
    pub faults: Vec<F>,
    /// Length of the workload; every fault stops before it ends.
    pub duration: Duration,
}

/// A list of fault starts and stops, sorted by time, each start followed by its stop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule<F> {
    /// The steps, in time order (`events` in `schedule.json`, a name kept for
    /// the files already written).
    #[serde(rename = "events")]
    pub steps: Vec<ScheduleStep<F>>,
}

impl<F> Default for Schedule<F> {
    fn default() -> Self {
        Schedule { steps: Vec::new() }
    }
}

impl<F: Clone + Ord + Nest> Schedule<F> {
    /// Generates the schedule for `cfg`.
    ///
    /// Windows scale with the run: a fault stays 10–30% of the duration
    /// (1–15 s), quiet periods last 5–15% (0.5–8 s); the first starts after a
    /// quiet period and the last stops by 90% of the duration so the run ends
    /// on a healthy system. A nested round's outer fault stays 25–45% (3–20 s)
    /// and its inner fault 20–35% of that, placed against it by a
    /// [`Placement`].
    ///
    /// With two or more faults, the first round nests an outage inside a
    /// condition (a list with only one shape: two different faults of it), and
    /// the second puts one across the condition's start, across its heal or
    /// in the recovery just after it — and, when not already there, strikes
    /// the recovery once more ([`aftershock`]); later rounds nest with probability 0.4,
    /// at any placement. Which pair and which placement the first two rounds
    /// take cycles with the seed, so consecutive seeds cover every pair at
    /// every placement (20 seeds: lists of up to six pairs). A single fault
    /// relapses in its second round: a second window starts 0–2 s after the
    /// first healed, in the middle of the recovery.
    pub fn generate(cfg: &ScheduleConfig<F>) -> Schedule<F> {
        let mut steps = Vec::new();
        if cfg.faults.is_empty() || cfg.duration.is_zero() {
            return Schedule { steps };
        }
        let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x6e65_6d65_7369_7321);
        let total = cfg.duration.as_secs_f64();
        let end = total * 0.9;
        let nesting = nesting_pairs(&cfg.faults);
        let placing = placement_pairs(&cfg.faults);
        let mut t = span(&mut rng, total, (0.05, 0.15), (0.5, 8.0));
        let mut round = 0usize;
        while t < end {
            let start = t + rng.random_range(0.0..0.5);
            let windows = match (round, cfg.faults.len()) {
                (0, 2..) if !nesting.is_empty() => {
                    let (outer, inner) = nesting[cycle(cfg.seed, nesting.len())];
                    fit(nested(&mut rng, total, start, (outer, inner), Placement::Inside), end)
                }
                (1, 2..) if !placing.is_empty() => {
                    let i = cycle(cfg.seed, placing.len() * Placement::AROUND.len());
                    let placement = Placement::AROUND[i % Placement::AROUND.len()];
                    let pair = placing[i / Placement::AROUND.len()];
                    let mut placed = nested(&mut rng, total, start, pair, placement);
                    if placement != Placement::AfterHeal {
                        placed.push(aftershock(&mut rng, &placed));
                    }
                    let mut windows = fit(placed, end);
                    // The other faults join as in a staggered round, so a run
                    // of a long list still meets many of them.
                    let others: Vec<&F> = cfg.faults.iter().filter(|f| *f != pair.0 && *f != pair.1).collect();
                    windows.extend(companions(&mut rng, total, start, end, &others));
                    windows
                }
                (1, 1) => fit(relapse(&mut rng, total, start, &cfg.faults[0]), end),
                (_, 2..) if !nesting.is_empty() && rng.random_bool(0.4) => {
                    let placement = Placement::ALL[rng.random_range(0..Placement::ALL.len())];
                    let pairs = if placement == Placement::Inside || placing.is_empty() {
                        &nesting
                    } else {
                        &placing
                    };
                    let pair = pairs[rng.random_range(0..pairs.len())];
                    fit(nested(&mut rng, total, start, pair, placement), end)
                }
                _ => staggered(&mut rng, total, t, end, &cfg.faults),
            };
            round += 1;
            let last_stop = windows.iter().map(|w| w.2).fold(t, f64::max);
            for (fault, from, to) in windows {
                for (at, phase) in [(from, FaultPhase::Start), (to, FaultPhase::Stop)] {
                    steps.push(ScheduleStep {
                        at: Duration::from_secs_f64(at),
                        fault: fault.clone(),
                        phase,
                    });
                }
            }
            t = last_stop + span(&mut rng, total, (0.05, 0.15), (0.5, 8.0));
        }
        // Stops before starts at the same instant, so a fault is never "started twice".
        steps.sort_by(|a, b| {
            a.at.cmp(&b.at)
                .then((a.phase == FaultPhase::Start).cmp(&(b.phase == FaultPhase::Start)))
        });
        Schedule { steps }
    }

    /// Whether every start has a later stop of the same fault and no fault starts while active.
    pub fn is_well_formed(&self, duration: Duration) -> bool {
        let mut active = BTreeSet::new();
        for e in &self.steps {
            if e.at > duration {
                return false;
            }
            let ok = match e.phase {
                FaultPhase::Start => active.insert(e.fault.clone()),
                FaultPhase::Stop => active.remove(&e.fault),
            };
            if !ok {
                return false;
            }
        }
        active.is_empty()
    }
}

/// Where a nested round puts its inner fault (an outage) against its outer
/// fault's window (a condition). Each placement exposes its own class of bug:
/// a relay killed inside a partition holds records nobody acknowledged; killed
/// in the recovery after the heal, it holds records Kafka acknowledged and the
/// outbox has not yet marked, which a relay minting a new event id per
/// attempt publishes twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placement {
    /// The inner fault starts after the outer one took hold and stops before it heals.
    Inside,
    /// The inner fault is on when the outer one starts, and stops inside it.
    AcrossStart,
    /// The inner fault starts inside the outer one and is still on when it heals.
    AcrossHeal,
    /// The inner fault starts 0–2 s after the outer one healed: in the
    /// recovery, while the backlog the outer fault held back drains.
    AfterHeal,
}

impl Placement {
    /// Every placement.
    pub const ALL: [Placement; 4] = [
        Placement::Inside,
        Placement::AcrossStart,
        Placement::AcrossHeal,
        Placement::AfterHeal,
    ];

    /// The placements around the outer window's edges, which a schedule's
    /// second round cycles through.
    pub const AROUND: [Placement; 3] = [Placement::AcrossStart, Placement::AcrossHeal, Placement::AfterHeal];
}

/// How long after a heal the recovery is deemed to last: where
/// [`Placement::AfterHeal`] starts its fault, and a single fault relapses.
const RECOVERY_SECS: f64 = 2.0;

/// One fault's window in a round: (fault, start, stop), seconds from the start of the workload.
type Window<'a, F> = (&'a F, f64, f64);

/// A share of the run drawn in `share` and clamped to `secs`.
fn span(rng: &mut StdRng, total: f64, share: (f64, f64), secs: (f64, f64)) -> f64 {
    (total * rng.random_range(share.0..share.1)).clamp(secs.0, secs.1)
}

/// Which of `n` choices the seed takes: consecutive seeds take consecutive choices.
fn cycle(seed: u64, n: usize) -> usize {
    (seed % n as u64) as usize
}

/// A round of some of the faults, each joining with probability 1/2 (at
/// least one), staggered by 0–0.5 s after `t`; a start at or after `end` is
/// dropped, a stop after it brought back to it.
fn staggered<'a, F>(rng: &mut StdRng, total: f64, t: f64, end: f64, faults: &'a [F]) -> Vec<Window<'a, F>> {
    let mut chosen: Vec<&F> = faults.iter().filter(|_| rng.random_bool(0.5)).collect();
    if chosen.is_empty() {
        chosen.push(&faults[rng.random_range(0..faults.len())]);
    }
    let mut windows = Vec::new();
    for fault in chosen {
        let start = t + rng.random_range(0.0..0.5);
        if start < end {
            windows.push((
                fault,
                start,
                (start + span(rng, total, (0.1, 0.3), (1.0, 15.0))).min(end),
            ));
        }
    }
    windows
}

/// The faults that join a placed round beside its pair: each with
/// probability 1/2, from 0–0.5 s after `start`, for 10–30% of the run
/// (1–15 s, stopping by `end`).
fn companions<'a, F>(rng: &mut StdRng, total: f64, start: f64, end: f64, others: &[&'a F]) -> Vec<Window<'a, F>> {
    let mut windows = Vec::new();
    for fault in others {
        if rng.random_bool(0.5) {
            let from = start + rng.random_range(0.0..0.5);
            if from < end {
                windows.push((
                    *fault,
                    from,
                    (from + span(rng, total, (0.1, 0.3), (1.0, 15.0))).min(end),
                ));
            }
        }
    }
    windows
}

/// A round of `inner` placed against `outer` from `start`.
fn nested<'a, F>(
    rng: &mut StdRng,
    total: f64,
    start: f64,
    (outer, inner): (&'a F, &'a F),
    placement: Placement,
) -> Vec<Window<'a, F>> {
    let len = span(rng, total, (0.25, 0.45), (3.0, 20.0));
    let inner_len = len * rng.random_range(0.2..0.35);
    let (outer_at, inner_at) = match placement {
        Placement::Inside => (start, start + len * rng.random_range(0.2..0.4)),
        Placement::AcrossStart => (start + inner_len * rng.random_range(0.3..0.7), start),
        Placement::AcrossHeal => (start, start + len - inner_len * rng.random_range(0.3..0.7)),
        Placement::AfterHeal => (start, start + len + rng.random_range(0.0..RECOVERY_SECS)),
    };
    vec![
        (outer, outer_at, outer_at + len),
        (inner, inner_at, inner_at + inner_len),
    ]
}

/// The outage of a placed round once more, 0–2 s after the round's last
/// window healed, as long as before: every second round also strikes the
/// recovery, while the backlog drains — where a relay killed between
/// Kafka's acknowledgment and its own bookkeeping publishes twice.
fn aftershock<'a, F>(rng: &mut StdRng, placed: &[Window<'a, F>]) -> Window<'a, F> {
    let (outer, inner) = (&placed[0], &placed[1]);
    let healed = outer.2.max(inner.2);
    let at = healed + rng.random_range(0.0..RECOVERY_SECS);
    (inner.0, at, at + (inner.2 - inner.1))
}

/// A round of one fault twice: the second window starts 0–2 s after the
/// first healed, while the system is still recovering from it.
fn relapse<'a, F>(rng: &mut StdRng, total: f64, start: f64, fault: &'a F) -> Vec<Window<'a, F>> {
    let first = span(rng, total, (0.1, 0.3), (1.0, 15.0));
    let again = start + first + rng.random_range(0.0..RECOVERY_SECS);
    let second = span(rng, total, (0.1, 0.3), (1.0, 15.0));
    vec![(fault, start, start + first), (fault, again, again + second)]
}

/// The round's windows, shrunk toward their first start when they would
/// reach past `end`, every offset by the same factor, so the placements keep
/// their shape. A round starting at or after `end` has none.
fn fit<F>(windows: Vec<Window<'_, F>>, end: f64) -> Vec<Window<'_, F>> {
    let first = windows.iter().map(|w| w.1).fold(f64::INFINITY, f64::min);
    if first >= end {
        return Vec::new();
    }
    let last = windows.iter().map(|w| w.2).fold(first, f64::max);
    let scale = if last > end {
        (end - first) / (last - first)
    } else {
        1.0
    };
    windows
        .into_iter()
        .map(|(fault, from, to)| (fault, first + (from - first) * scale, first + (to - first) * scale))
        .collect()
}

/// The (outer, inner) pairs an *inside* placement draws from: every outage
/// inside every condition; if there is no such pair, every ordered pair of
/// two different faults; in both cases only where the inner fault
/// [`Nest::nests_in`] the outer.
fn nesting_pairs<F: Nest + PartialEq>(faults: &[F]) -> Vec<(&F, &F)> {
    pairs(faults, |outer, inner| inner.nests_in(outer))
}

/// The (condition, outage) pairs the placements around a condition's edges
/// draw from: as [`nesting_pairs`], but even where the outage could do
/// nothing inside the condition (a crash armed while no commit can happen
/// fires right after the heal).
fn placement_pairs<F: Nest + PartialEq>(faults: &[F]) -> Vec<(&F, &F)> {
    pairs(faults, |_, _| true)
}

/// Every (condition, outage) pair of two different faults that `keep`
/// keeps; without any, every ordered pair of two different faults it keeps.
fn pairs<F: Nest + PartialEq>(faults: &[F], keep: impl Fn(&F, &F) -> bool) -> Vec<(&F, &F)> {
    let ordered = |want_outer: Option<FaultShape>, want_inner: Option<FaultShape>| {
        let mut pairs = Vec::new();
        for outer in faults.iter().filter(|f| want_outer.is_none_or(|s| f.shape() == s)) {
            for inner in faults.iter().filter(|f| want_inner.is_none_or(|s| f.shape() == s)) {
                if outer != inner && keep(outer, inner) {
                    pairs.push((outer, inner));
                }
            }
        }
        pairs
    };
    let across = ordered(Some(FaultShape::Condition), Some(FaultShape::Outage));
    if across.is_empty() {
        ordered(None, None)
    } else {
        across
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Test faults are names: the kills, pauses and crashes are outages.
    impl Nest for &'static str {
        fn shape(&self) -> FaultShape {
            if self.ends_with("-kill") || self.ends_with("-pause") || self.starts_with("crash-") {
                FaultShape::Outage
            } else {
                FaultShape::Condition
            }
        }

        fn nests_in(&self, outer: &Self) -> bool {
            !(*self == "crash-after-commit" && *outer == "pg-partition")
        }
    }

    /// The windows of `fault` in `s`, as (start, stop).
    fn windows(s: &Schedule<&'static str>, fault: &str) -> Vec<(Duration, Duration)> {
        let starts = s
            .steps
            .iter()
            .filter(|e| e.fault == fault && e.phase == FaultPhase::Start);
        let stops = s
            .steps
            .iter()
            .filter(|e| e.fault == fault && e.phase == FaultPhase::Stop);
        starts.zip(stops).map(|(a, b)| (a.at, b.at)).collect()
    }

    #[test]
    fn every_schedule_of_a_condition_and_an_outage_nests_the_outage_inside() {
        for duration in [15, 20, 30, 60] {
            for seed in 0..200 {
                let s = Schedule::generate(&ScheduleConfig {
                    seed,
                    faults: vec!["kafka-partition", "relay-kill"],
                    duration: Duration::from_secs(duration),
                });
                let partitions = windows(&s, "kafka-partition");
                let nested = windows(&s, "relay-kill").iter().any(|&(kill, heal)| {
                    partitions.iter().any(|&(cut, mend)| {
                        cut + Duration::from_millis(500) <= kill && heal + Duration::from_millis(500) <= mend
                    })
                });
                assert!(nested, "{duration} s, seed {seed}: no kill inside a partition: {s:?}");
            }
        }
    }

    /// The placement of window `inner` against window `outer`, if it has one.
    fn placement_of(outer: (Duration, Duration), inner: (Duration, Duration)) -> Option<Placement> {
        let recovery = Duration::from_secs_f64(RECOVERY_SECS);
        let ((cut, mend), (from, to)) = (outer, inner);
        if cut < from && to < mend {
            Some(Placement::Inside)
        } else if from < cut && cut < to && to < mend {
            Some(Placement::AcrossStart)
        } else if cut < from && from < mend && mend < to {
            Some(Placement::AcrossHeal)
        } else if mend <= from && from <= mend + recovery {
            Some(Placement::AfterHeal)
        } else {
            None
        }
    }

    /// Every (outer, inner, placement) that occurs in `s`.
    fn placements(s: &Schedule<&'static str>) -> HashSet<(&'static str, &'static str, Placement)> {
        let faults: BTreeSet<&'static str> = s.steps.iter().map(|e| e.fault).collect();
        let mut seen = HashSet::new();
        for &outer in &faults {
            for &inner in faults.iter().filter(|f| **f != outer) {
                for o in windows(s, outer) {
                    for i in windows(s, inner) {
                        if let Some(p) = placement_of(o, i) {
                            seen.insert((outer, inner, p));
                        }
                    }
                }
            }
        }
        seen
    }

    #[test]
    fn twenty_consecutive_seeds_place_every_pair_inside_across_the_start_across_the_heal_and_after_it() {
        let lists: [&[&'static str]; 5] = [
            &["kafka-partition", "relay-kill"],
            &["pg-latency", "crash-after-commit"],
            &["kafka-partition", "pg-latency", "relay-kill"],
            &["pg-partition", "kafka-partition", "pg-kill", "crash-after-commit"],
            &["pg-kill", "relay-kill"],
        ];
        for faults in lists {
            for duration in [15, 20, 30, 60] {
                for first in [0, 1, 37, 1000] {
                    let mut seen = HashSet::new();
                    for seed in first..first + 20 {
                        let s = Schedule::generate(&ScheduleConfig {
                            seed,
                            faults: faults.to_vec(),
                            duration: Duration::from_secs(duration),
                        });
                        seen.extend(placements(&s));
                    }
                    let inside = nesting_pairs(faults).into_iter().map(|p| (p, Placement::Inside));
                    let around = placement_pairs(faults)
                        .into_iter()
                        .flat_map(|p| Placement::AROUND.map(|placement| (p, placement)));
                    for ((outer, inner), placement) in inside.chain(around) {
                        assert!(
                            seen.contains(&(*outer, *inner, placement)),
                            "{faults:?}, {duration} s, seeds {first}..{}: {inner} never {placement:?} {outer}",
                            first + 20
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn every_run_of_a_condition_and_an_outage_strikes_a_recovery() {
        for duration in [15, 20, 30, 60] {
            for seed in 0..100 {
                let s = Schedule::generate(&ScheduleConfig {
                    seed,
                    faults: vec!["kafka-partition", "relay-kill"],
                    duration: Duration::from_secs(duration),
                });
                assert!(s.is_well_formed(Duration::from_secs(duration)), "seed {seed}: {s:?}");
                // The recovery begins when the round's last window healed:
                // the partition's, or a kill's that outlasted it.
                let partition_heals: Vec<Duration> = windows(&s, "kafka-partition").iter().map(|w| w.1).collect();
                let kills = windows(&s, "relay-kill");
                let round_heals = partition_heals.iter().map(|h| {
                    kills
                        .iter()
                        .filter(|(from, to)| from < h && to > h)
                        .map(|w| w.1)
                        .fold(*h, Duration::max)
                });
                let recovery = Duration::from_secs_f64(RECOVERY_SECS);
                let struck = round_heals
                    .into_iter()
                    .any(|h| kills.iter().any(|(from, _)| *from >= h && *from <= h + recovery));
                assert!(struck, "{duration} s, seed {seed}: no kill in a recovery: {s:?}");
            }
        }
    }

    #[test]
    fn twenty_seeds_of_two_families_show_every_placement() {
        let faults = vec![
            "pg-partition",
            "kafka-partition",
            "pg-latency",
            "kafka-latency",
            "pg-reset",
            "kafka-reset",
            "kafka-slow",
            "kafka-timeout",
            "pg-kill",
            "kafka-kill",
            "relay-kill",
            "pg-pause",
            "kafka-pause",
            "crash-after-commit",
        ];
        let mut seen = HashSet::new();
        for seed in 1..=20 {
            let s = Schedule::generate(&ScheduleConfig {
                seed,
                faults: faults.clone(),
                duration: Duration::from_secs(20),
            });
            assert!(s.is_well_formed(Duration::from_secs(18)), "seed {seed}: {s:?}");
            seen.extend(placements(&s).into_iter().map(|(.., p)| p));
        }
        assert_eq!(seen, HashSet::from(Placement::ALL));
    }

    #[test]
    fn a_single_fault_relapses_in_the_middle_of_its_recovery() {
        for duration in [15, 20, 30, 60] {
            for seed in 0..100 {
                let s = Schedule::generate(&ScheduleConfig {
                    seed,
                    faults: vec!["kafka-partition"],
                    duration: Duration::from_secs(duration),
                });
                let w = windows(&s, "kafka-partition");
                let relapses = w
                    .windows(2)
                    .any(|p| p[1].0 - p[0].1 <= Duration::from_secs_f64(RECOVERY_SECS));
                assert!(
                    relapses,
                    "{duration} s, seed {seed}: no window starts within 2 s of a heal: {w:?}"
                );
            }
        }
    }

    #[test]
    fn one_shape_nests_two_different_faults_and_one_fault_never_nests() {
        assert_eq!(nesting_pairs(&["pg-kill", "relay-kill"]).len(), 2);
        assert!(nesting_pairs(&["pg-kill"]).is_empty());
        assert_eq!(
            nesting_pairs(&["kafka-partition", "pg-latency", "relay-kill"]),
            vec![(&"kafka-partition", &"relay-kill"), (&"pg-latency", &"relay-kill")]
        );
        assert_eq!(
            nesting_pairs(&["kafka-partition", "pg-partition", "crash-after-commit"]),
            vec![(&"kafka-partition", &"crash-after-commit")],
            "a pointless nesting is never drawn"
        );
    }

    fn cfg(seed: u64) -> ScheduleConfig<&'static str> {
        ScheduleConfig {
            seed,
            faults: vec!["kafka-partition", "pg-kill", "relay-kill"],
            duration: Duration::from_secs(60),
        }
    }

    #[test]
    fn same_seed_same_schedule() {
        assert_eq!(Schedule::generate(&cfg(3)), Schedule::generate(&cfg(3)));
        assert_ne!(Schedule::generate(&cfg(3)), Schedule::generate(&cfg(4)));
    }

    #[test]
    fn every_fault_is_healed_before_the_end_and_there_are_quiet_periods() {
        for seed in 0..50 {
            let s = Schedule::generate(&cfg(seed));
            assert!(s.is_well_formed(Duration::from_secs(54)), "seed {seed}: {s:?}");
            assert!(!s.steps.is_empty());
            assert!(
                s.steps[0].at >= Duration::from_millis(500),
                "starts after a quiet period"
            );
        }
    }

    #[test]
    fn serializes_as_schedule_json_always_did() {
        let s = Schedule {
            steps: vec![ScheduleStep {
                at: Duration::from_millis(1500),
                fault: "pg-kill",
                phase: FaultPhase::Start,
            }],
        };
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"events":[{"at":{"secs":1,"nanos":500000000},"fault":"pg-kill","phase":"start"}]}"#
        );
    }
}
