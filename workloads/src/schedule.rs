//! The fault schedule, Jepsen-style: quiet periods, then a random subset of
//! the chosen faults starting at staggered moments, staying a while, stopping
//! staggered; again and again; everything stopped before the run ends. The
//! schedule is a pure function of the seed, the fault names and the duration.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Start or stop of a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultPhase {
    /// The fault begins.
    Start,
    /// The fault is healed.
    Stop,
}

/// One step of a schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// Offset from the start of the workload.
    pub at: Duration,
    /// Fault name (DESIGN.md's vocabulary).
    pub fault: String,
    /// Start or stop.
    pub phase: FaultPhase,
}

/// What a schedule is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleConfig {
    /// Seed of every choice.
    pub seed: u64,
    /// Faults to choose from.
    pub faults: Vec<String>,
    /// Length of the workload; every fault stops before it ends.
    pub duration: Duration,
}

/// A list of fault starts and stops, sorted by time, each start followed by its stop.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Schedule {
    /// The steps, in time order.
    pub events: Vec<FaultEvent>,
}

impl Schedule {
    /// Generates the schedule for `cfg`.
    ///
    /// Windows scale with the run: a fault stays 10–30% of the duration
    /// (1–15 s), quiet periods last 5–15% (0.5–8 s); the first starts after a
    /// quiet period and the last stops by 90% of the duration so the run ends
    /// on a healthy system.
    pub fn generate(cfg: &ScheduleConfig) -> Schedule {
        let mut events = Vec::new();
        if cfg.faults.is_empty() || cfg.duration.is_zero() {
            return Schedule { events };
        }
        let mut rng = StdRng::seed_from_u64(cfg.seed ^ 0x6e65_6d65_7369_7321);
        let total = cfg.duration.as_secs_f64();
        let end = total * 0.9;
        let span =
            |rng: &mut StdRng, lo: f64, hi: f64, min: f64, max: f64| (total * rng.random_range(lo..hi)).clamp(min, max);
        let mut t = span(&mut rng, 0.05, 0.15, 0.5, 8.0);
        while t < end {
            // A random non-empty subset of the faults.
            let mut chosen: Vec<&String> = cfg.faults.iter().filter(|_| rng.random_bool(0.5)).collect();
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
                events.push(FaultEvent {
                    at: Duration::from_secs_f64(start),
                    fault: fault.clone(),
                    phase: FaultPhase::Start,
                });
                events.push(FaultEvent {
                    at: Duration::from_secs_f64(stop),
                    fault: fault.clone(),
                    phase: FaultPhase::Stop,
                });
                last_stop = last_stop.max(stop);
            }
            t = last_stop + span(&mut rng, 0.05, 0.15, 0.5, 8.0);
        }
        // Stops before starts at the same instant, so a fault is never "started twice".
        events.sort_by(|a, b| {
            a.at.cmp(&b.at)
                .then((a.phase == FaultPhase::Start).cmp(&(b.phase == FaultPhase::Start)))
        });
        Schedule { events }
    }

    /// Whether every start has a later stop of the same fault and no fault starts while active.
    pub fn is_well_formed(&self, duration: Duration) -> bool {
        let mut active = std::collections::HashSet::new();
        for e in &self.events {
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

    fn cfg(seed: u64) -> ScheduleConfig {
        ScheduleConfig {
            seed,
            faults: vec!["kafka-partition".into(), "pg-kill".into(), "relay-kill".into()],
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
            assert!(!s.events.is_empty());
            assert!(
                s.events[0].at >= Duration::from_millis(500),
                "starts after a quiet period"
            );
        }
    }
}
