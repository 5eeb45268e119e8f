//! The fault schedule, Jepsen-style: quiet periods, then a random subset of
//! the chosen faults starting at staggered moments, staying a while, stopping
//! staggered; again and again; everything stopped before the run ends. The
//! schedule is a pure function of the seed, the faults and the duration.
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

impl<F: Clone + Ord> Schedule<F> {
    /// Generates the schedule for `cfg`.
    ///
    /// Windows scale with the run: a fault stays 10–30% of the duration
    /// (1–15 s), quiet periods last 5–15% (0.5–8 s); the first starts after a
    /// quiet period and the last stops by 90% of the duration so the run ends
    /// on a healthy system.
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
        let mut t = span(&mut rng, 0.05, 0.15, 0.5, 8.0);
        while t < end {
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

#[cfg(test)]
mod tests {
    use super::*;

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
