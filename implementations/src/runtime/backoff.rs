//! Exponential backoff with full jitter: attempt `n` (0-based) waits a uniform
//! random time in `[0, min(max, base * 2^n)]` (AWS architecture blog, "Exponential
//! Backoff And Jitter").

use std::time::Duration;
use tokio::sync::watch;

/// Exponential backoff with full jitter.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    /// Ceiling of the first retry.
    pub base: Duration,
    /// Ceiling of every retry.
    pub max: Duration,
}

impl Backoff {
    /// Upper bound of the wait after `attempt` failures (0-based): `min(max, base * 2^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u64.checked_shl(attempt.min(40)).unwrap_or(u64::MAX);
        let ms = (self.base.as_millis() as u64).saturating_mul(factor);
        Duration::from_millis(ms).min(self.max)
    }

    /// A random wait in `[0, ceiling(attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let c = self.ceiling(attempt).as_millis() as u64;
        Duration::from_millis(fastrand::u64(0..=c))
    }

    /// The wait of a retry loop after a failure: `delay(*failures)`, then one
    /// more failure counted (at most 10). False when `stop` changed meanwhile.
    pub async fn wait_after_failure(&self, failures: &mut u32, stop: &mut watch::Receiver<bool>) -> bool {
        if !sleep_unless_stopped(self.delay(*failures), stop).await {
            return false;
        }
        *failures = failures.saturating_add(1).min(10);
        true
    }
}

/// Sleeps `d`, cut short when `stop` changes: false when the caller should
/// stop (the wait every retry loop of a background task makes).
pub async fn sleep_unless_stopped(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.changed() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_bounds_and_jitter() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(5000),
        };
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
        assert_eq!(b.ceiling(3), Duration::from_millis(800));
        assert_eq!(b.ceiling(6), Duration::from_millis(5000));
        assert_eq!(b.ceiling(1000), Duration::from_millis(5000));
        for attempt in 0..70 {
            let mut seen = std::collections::HashSet::new();
            for _ in 0..200 {
                let d = b.delay(attempt);
                assert!(
                    d <= b.ceiling(attempt),
                    "attempt {attempt}: {d:?} > {:?}",
                    b.ceiling(attempt)
                );
                seen.insert(d);
            }
            assert!(
                seen.len() > 10,
                "attempt {attempt}: no jitter ({} distinct delays)",
                seen.len()
            );
        }
        // Full jitter: the mean sits near half the ceiling.
        let n = 20_000;
        let mean = (0..n).map(|_| b.delay(10).as_millis() as f64).sum::<f64>() / n as f64;
        assert!((2300.0..2700.0).contains(&mean), "mean {mean} not near 2500");
    }
}
