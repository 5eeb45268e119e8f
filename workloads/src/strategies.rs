//! proptest strategies for workloads and fault schedules (test-only: nothing
//! outside this crate's tests generates them).

use crate::generator::{Skew, Workload};
use crate::schedule::{Schedule, ScheduleConfig};
use proptest::prelude::*;
use std::time::Duration;

/// Workloads with every knob in a sensible range.
pub fn workload() -> impl Strategy<Value = Workload> {
    (
        any::<u64>(),
        prop_oneof![Just(0.0), 1.0..500.0f64],
        1usize..16,
        1usize..64,
        prop_oneof![Just(Skew::Uniform), (0.5..2.0f64).prop_map(Skew::Zipf)],
        0usize..512,
        0.0..0.3f64,
        0.0..0.3f64,
        0u64..500,
    )
        .prop_map(
            |(seed, rate, concurrency, keys, skew, payload_bytes, abort, long, hold)| Workload {
                seed,
                rate,
                concurrency,
                keys,
                skew,
                payload_bytes,
                abort_fraction: abort,
                long_fraction: long,
                long_hold_ms: hold,
                idle_window_ms: 0,
                ..Workload::default()
            },
        )
}

/// Fault schedules over a subset of `faults`, for runs of 5 s to 5 min.
pub fn schedule<F>(faults: &'static [F]) -> impl Strategy<Value = (ScheduleConfig<F>, Schedule<F>)>
where
    F: Clone + Ord + std::fmt::Debug + crate::Nest + 'static,
{
    (
        any::<u64>(),
        proptest::sample::subsequence(faults, 0..=faults.len()),
        5u64..300,
    )
        .prop_map(|(seed, faults, secs)| {
            let cfg = ScheduleConfig {
                seed,
                faults,
                duration: Duration::from_secs(secs),
            };
            let s = Schedule::generate(&cfg);
            (cfg, s)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest! {
        #[test]
        fn generated_workloads_are_valid_and_deterministic(w in workload()) {
            prop_assert!(w.validate().is_ok());
            for n in 0..w.workers() {
                let a: Vec<_> = w.worker(n).take(20).collect();
                let b: Vec<_> = w.worker(n).take(20).collect();
                prop_assert_eq!(a, b);
            }
        }

        #[test]
        fn generated_schedules_are_well_formed((cfg, s) in schedule(&["pg-partition", "kafka-kill", "relay-kill", "crash-after-commit"])) {
            prop_assert!(s.is_well_formed(cfg.duration));
            prop_assert_eq!(s.steps.is_empty(), cfg.faults.is_empty());
            prop_assert!(s.steps.iter().all(|e| cfg.faults.contains(&e.fault)));
        }
    }
}
