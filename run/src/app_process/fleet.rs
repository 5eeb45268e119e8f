//! The implementation's processes in a run: its instances (one, or
//! `--replicas N`) and, for a pattern whose relay is a process of its own,
//! its relay processes (one per instance, or one for all when the pattern's
//! relay cannot be replicated). Ops spread over the instances; faults aimed
//! at "the relay" or "the application" pick one by the run's seed.

use super::AppProcess;
use implementations::Backlog;
use std::sync::Arc;

/// Every process of the implementation.
pub struct Fleet {
    /// The instances answering requests (never empty).
    services: Vec<Arc<AppProcess>>,
    /// The relay processes (empty when the relay runs inside the services or there is none).
    relays: Vec<Arc<AppProcess>>,
}

/// A seeded pick among `n`: the `nth` choice of a run seeded `seed`
/// (splitmix64, so neighbouring seeds and choices spread).
fn pick(seed: u64, nth: u64, n: usize) -> usize {
    let mut z = seed
        .wrapping_add(nth.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z % n as u64) as usize
}

impl Fleet {
    /// The fleet of `services` (at least one) and `relays`.
    pub fn new(services: Vec<Arc<AppProcess>>, relays: Vec<Arc<AppProcess>>) -> Fleet {
        assert!(!services.is_empty(), "a fleet has at least one instance");
        Fleet { services, relays }
    }

    /// The instances answering requests.
    pub fn services(&self) -> &[Arc<AppProcess>] {
        &self.services
    }

    /// The relay processes (empty when the relay runs inside the services).
    pub fn relays(&self) -> &[Arc<AppProcess>] {
        &self.relays
    }

    /// The processes that publish, and know the backlog: the relays where
    /// they run apart, else the instances.
    pub fn publishers(&self) -> &[Arc<AppProcess>] {
        if self.relays.is_empty() {
            &self.services
        } else {
            &self.relays
        }
    }

    /// The instance `op`'s write goes to: ops spread over the instances by
    /// their id (the same op goes to the same instance on every replay).
    pub fn for_write(&self, op: u64) -> &Arc<AppProcess> {
        &self.services[pick(op, 0, self.services.len())]
    }

    /// The instance the read back of `op`'s write goes to: another one than
    /// the write's where there are several (read your writes across
    /// instances, as a load balancer would have it).
    pub fn for_read(&self, op: u64) -> &Arc<AppProcess> {
        let n = self.services.len();
        &self.services[(pick(op, 0, n) + 1) % n]
    }

    /// The process that knows most about `op`'s event: the relay, where it
    /// runs apart (the first: they share the work); else the instance its
    /// write went to (whose relay most likely published it).
    pub fn tracer_of(&self, op: u64) -> &Arc<AppProcess> {
        self.relays.first().unwrap_or_else(|| self.for_write(op))
    }

    /// The instance the `nth` fault aimed at the application hits, by `seed`.
    pub fn pick_service(&self, seed: u64, nth: u64) -> &Arc<AppProcess> {
        &self.services[pick(seed, nth, self.services.len())]
    }

    /// The publisher the `nth` fault aimed at the relay hits, by `seed`.
    pub fn pick_publisher(&self, seed: u64, nth: u64) -> &Arc<AppProcess> {
        let p = self.publishers();
        &p[pick(seed, nth, p.len())]
    }

    /// Every process, relays first: the order of a deploy.
    pub fn deploy_order(&self) -> impl Iterator<Item = &Arc<AppProcess>> {
        self.relays.iter().chain(self.services.iter())
    }

    /// The publishers' backlog together (`GET /backlog` of each): an error
    /// when one cannot be asked, `None` when none serves it. Counts are the
    /// largest any publisher reports, not their sum: most publishers count
    /// a table they share (the outbox), so every instance reports the same
    /// events; it is 0 only when every publisher says 0. Requests in flight
    /// are summed (each process counts its own).
    pub async fn backlog_report(&self) -> anyhow::Result<Option<Backlog>> {
        let mut total: Option<Backlog> = None;
        for p in self.publishers() {
            let Some(b) = p.backlog_report().await? else { continue };
            total = Some(match total {
                None => b,
                Some(t) => Backlog {
                    backlog: t.backlog.max(b.backlog),
                    oldest_age_ms: t.oldest_age_ms.max(b.oldest_age_ms),
                    parked: t.parked.max(b.parked),
                    in_flight: t.in_flight.zip(b.in_flight).map(|(x, y)| x + y),
                },
            });
        }
        Ok(total)
    }

    /// Requests (`POST /ops`) the instances are executing now, summed; `None`
    /// when one cannot say.
    pub async fn requests_in_flight(&self) -> Option<u64> {
        let mut sum = 0;
        for p in &self.services {
            sum += p.backlog_report().await.ok().flatten()?.in_flight?;
        }
        Some(sum)
    }

    /// Starts every process that is not running.
    pub async fn ensure_running(&self) -> anyhow::Result<()> {
        for p in self.deploy_order() {
            p.ensure_running().await?;
        }
        Ok(())
    }

    /// Whether there is more than one instance.
    pub fn replicated(&self) -> bool {
        self.services.len() > 1
    }
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn picks_cover_every_instance_and_stay_in_range() {
        for n in 1..5usize {
            let mut seen = vec![0u32; n];
            for op in 0..4000u64 {
                let i = pick(op, 0, n);
                assert!(i < n);
                seen[i] += 1;
            }
            // Spread: every instance gets at least a fair share's half.
            assert!(seen.iter().all(|&c| c as usize >= 4000 / n / 2), "{n}: {seen:?}");
        }
        // Seeded: the same seed picks the same, other seeds others.
        assert_eq!(pick(7, 3, 3), pick(7, 3, 3));
        let firsts: std::collections::HashSet<usize> = (0..20u64).map(|s| pick(s, 0, 3)).collect();
        assert_eq!(firsts.len(), 3);
    }
}
