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
    /// on a healthy system. A nested round's outer fault stays 25–45% (3–20 s);
    /// its inner fault starts 20–40% into it and lasts 20–35% of it, so the
    /// outer fault holds before, during and after the inner one.
    ///
    /// Nesting prefers an outage inside a condition; a list with only one
    /// shape nests two different faults of it; a single fault never nests.
    /// The first or second round (by seed) nests, later rounds do with
    /// probability 0.4.
    pub fn generate(cfg: &ScheduleConfig<F>) -> Schedule<F> {
        let mut steps = Vec::new();
        if cfg.faults.is_empty() || cfg.duration.is_zero() {
            return Schedule { steps };
        }
        let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x6e65_6d65_7369_7321);
        let total = cfg.duration.as_secs_f64();
        let end = total * 0.9;
        let span =
            |rng: &mut StdRng, lo: f64, hi: f64, min: f64, max: f64| (total * rng.random_range(lo..hi)).clamp(min, max);
        let pairs = nesting_pairs(&cfg.faults);
        // Drawn only when something can nest, so a single fault's schedules
        // stay what they were before nesting existed.
        let nested_round = if pairs.is_empty() {
            0
        } else {
            rng.random_range(0..2usize)
        };
        let mut t = span(&mut rng, 0.05, 0.15, 0.5, 8.0);
        let mut round = 0usize;
        while t < end {
            let nests = !pairs.is_empty() && (round == nested_round || rng.random_bool(0.4));
            round += 1;
            if nests {
                let (outer, inner) = pairs[rng.random_range(0..pairs.len())];
                let start = t + rng.random_range(0.0..0.5);
                if start >= end {
                    break;
                }
                let stop = (start + span(&mut rng, 0.25, 0.45, 3.0, 20.0)).min(end);
                let len = stop - start;
                let inner_start = start + len * rng.random_range(0.2..0.4);
                let inner_stop = inner_start + len * rng.random_range(0.2..0.35);
                for (fault, from, to) in [(outer, start, stop), (inner, inner_start, inner_stop)] {
                    steps.push(ScheduleStep {
                        at: Duration::from_secs_f64(from),
                        fault: fault.clone(),
                        phase: FaultPhase::Start,
                    });
                    steps.push(ScheduleStep {
                        at: Duration::from_secs_f64(to),
                        fault: fault.clone(),
                        phase: FaultPhase::Stop,
                    });
                }
                t = stop + span(&mut rng, 0.05, 0.15, 0.5, 8.0);
                continue;
            }
            // A random non-empty subset of the faults.
            let mut chosen: Vec<&F> = cfg.faults.iter().filter(|_| rng.random_bool(0.5)).collect();
            if chosen.is_empty() {
                chosen.push(&cfg.faults[rng.random_range(0..cfg.faults.len())]);
            }
            let mut last_stop: f64 = t;
            for fault in chosen {
                let start = t + rng.random_range(0.0..0.5);
                if start >= end {
                    continue;
                }
                let stop = (start + span(&mut rng, 0.1, 0.3, 1.0, 15.0)).min(end);
                steps.push(ScheduleStep {
                    at: Duration::from_secs_f64(start),
                    fault: fault.clone(),
                    phase: FaultPhase::Start,
                });
                steps.push(ScheduleStep {
                    at: Duration::from_secs_f64(stop),
                    fault: fault.clone(),
                    phase: FaultPhase::Stop,
                });
                last_stop = last_stop.max(stop);
            }
            t = last_stop + span(&mut rng, 0.05, 0.15, 0.5, 8.0);
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

/// The (outer, inner) pairs a nested round draws from: every outage inside
/// every condition; if there is no such pair, every ordered pair of two
/// different faults; in both cases only where the inner fault [`Nest::nests_in`] the outer.
fn nesting_pairs<F: Nest + PartialEq>(faults: &[F]) -> Vec<(&F, &F)> {
    let ordered = |want_outer: Option<FaultShape>, want_inner: Option<FaultShape>| {
        let mut pairs = Vec::new();
        for outer in faults.iter().filter(|f| want_outer.is_none_or(|s| f.shape() == s)) {
            for inner in faults.iter().filter(|f| want_inner.is_none_or(|s| f.shape() == s)) {
                if outer != inner && inner.nests_in(outer) {
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
