//! The network family: partitions and toxics on the links Toxiproxy stands on,
//! the Postgres link (one proxy) and the Kafka link (one proxy per broker).

use super::{Fault, WhileActive};
use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use services::toxiproxy::{Stream, Toxic};
use services::Environment;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use workloads::FaultPhase;

/// 300 ms ± 100 ms on every packet: slow enough to reorder timeouts, not to stop the run.
const LATENCY: Toxic = Toxic::Latency {
    latency_ms: 300,
    jitter_ms: 100,
};

/// How long one reset pulse lasts: every connection that carries data
/// meanwhile (or tries to open) is reset at once.
const RESET_PULSE: Duration = Duration::from_millis(200);

/// The gaps between reset pulses (ms, drawn from the run's seed): long
/// enough for clients to reconnect and get back to work, short enough that a
/// window of a few seconds cuts them at many different points of their loops.
const RESET_GAP_MS: std::ops::Range<u64> = 200..800;

/// Injects the network faults.
pub(super) struct NetworkFaults {
    env: Arc<Environment>,
    /// The run's seed: the pulses' gaps are drawn from it.
    seed: u64,
    /// Reset windows started so far: each draws its own gaps.
    reset_windows: AtomicU64,
    pg_reset: WhileActive,
    kafka_reset: WhileActive,
}

impl NetworkFaults {
    pub(super) fn new(env: Arc<Environment>, seed: u64) -> Self {
        NetworkFaults {
            env,
            seed,
            reset_windows: AtomicU64::new(0),
            pg_reset: WhileActive::default(),
            kafka_reset: WhileActive::default(),
        }
    }

    /// Each network fault's start and stop, side by side.
    pub(super) async fn apply(&self, fault: Fault, phase: FaultPhase) -> Result<()> {
        use Fault::*;
        use FaultPhase::{Start, Stop};
        let pg = std::slice::from_ref(&self.env.postgres_proxy);
        let kafka = self.env.kafka_proxies.as_slice();
        match (fault, phase) {
            (PgPartition, Start) => self.down(pg).await,
            (PgPartition, Stop) => self.up(pg).await,
            (KafkaPartition, Start) => self.down(kafka).await,
            (KafkaPartition, Stop) => self.up(kafka).await,

            (PgLatency, Start) => self.toxic_on(fault, pg, LATENCY).await,
            (PgLatency, Stop) => self.toxic_off(fault, pg).await,
            (KafkaLatency, Start) => self.toxic_on(fault, kafka, LATENCY).await,
            (KafkaLatency, Stop) => self.toxic_off(fault, kafka).await,

            (PgReset, Start) => self.pulse_resets(fault, pg, &self.pg_reset).await,
            (PgReset, Stop) => {
                self.pg_reset.stop().await;
                Ok(())
            }
            (KafkaReset, Start) => self.pulse_resets(fault, kafka, &self.kafka_reset).await,
            (KafkaReset, Stop) => {
                self.kafka_reset.stop().await;
                Ok(())
            }

            (KafkaSlow, Start) => self.toxic_on(fault, kafka, Toxic::Bandwidth { rate_kb_s: 16 }).await,
            (KafkaSlow, Stop) => self.toxic_off(fault, kafka).await,
            (KafkaTimeout, Start) => self.toxic_on(fault, kafka, Toxic::Timeout { timeout_ms: 2000 }).await,
            (KafkaTimeout, Stop) => self.toxic_off(fault, kafka).await,

            // Replies only (downstream): the requests go on taking effect.
            (PgAckLoss, Start) => self.toxic_on(fault, pg, Toxic::DROP).await,
            (PgAckLoss, Stop) => self.toxic_off(fault, pg).await,
            (KafkaAckLoss, Start) => self.toxic_on(fault, kafka, Toxic::DROP).await,
            (KafkaAckLoss, Stop) => self.toxic_off(fault, kafka).await,

            (other, _) => bail!("{other} is a {} fault, not a network one", other.family()),
        }
    }

    /// Every proxy up, every toxic removed.
    pub(super) async fn heal_all(&self) -> Result<()> {
        self.pg_reset.stop().await;
        self.kafka_reset.stop().await;
        self.env.heal_all().await
    }

    /// A reset window: connections on `proxies` are reset in pulses of
    /// [`RESET_PULSE`] separated by seeded gaps ([`RESET_GAP_MS`]) until the
    /// window stops. One reset per window would cut each client once, at
    /// whatever point of its loop the window happened to start (and then
    /// refuse every reconnection, a partition by another name); pulses cut
    /// it again after it reconnected, at other points — between a Kafka
    /// acknowledgement and the COMMIT recording it, say. The first pulse is
    /// on when this returns (its failure fails the start); the task removes
    /// the toxic when told to stop.
    async fn pulse_resets(&self, fault: Fault, proxies: &[String], pulses: &WhileActive) -> Result<()> {
        let reset = Toxic::ResetPeer { timeout_ms: 0 };
        self.toxic_on(fault, proxies, reset.clone()).await?;
        let window = self.reset_windows.fetch_add(1, Ordering::Relaxed);
        let mut rng = StdRng::seed_from_u64(self.seed ^ 0x7265_7365_7473_0000 ^ window);
        let env = self.env.clone();
        let proxies = proxies.to_vec();
        let name = toxic_name(fault);
        pulses.start(move |mut stop| async move {
            let toxiproxy = &env.toxiproxy;
            loop {
                let stopped = until_stopped(&mut stop, RESET_PULSE).await;
                for p in &proxies {
                    if let Err(e) = toxiproxy.remove_toxic(p, &name).await {
                        tracing::warn!("{fault}: ending a pulse on {p}: {e:#}");
                    }
                }
                if stopped || until_stopped(&mut stop, Duration::from_millis(rng.random_range(RESET_GAP_MS))).await {
                    return;
                }
                for p in &proxies {
                    if let Err(e) = toxiproxy.add_toxic(p, &name, Stream::Downstream, &reset).await {
                        tracing::warn!("{fault}: starting a pulse on {p}: {e:#}");
                    }
                }
            }
        });
        Ok(())
    }

    async fn down(&self, proxies: &[String]) -> Result<()> {
        for p in proxies {
            self.env.toxiproxy.down(p).await?;
        }
        Ok(())
    }

    async fn up(&self, proxies: &[String]) -> Result<()> {
        for p in proxies {
            self.env.toxiproxy.up(p).await?;
        }
        Ok(())
    }

    async fn toxic_on(&self, fault: Fault, proxies: &[String], toxic: Toxic) -> Result<()> {
        for p in proxies {
            self.env
                .toxiproxy
                .add_toxic(p, &toxic_name(fault), Stream::Downstream, &toxic)
                .await?;
        }
        Ok(())
    }

    async fn toxic_off(&self, fault: Fault, proxies: &[String]) -> Result<()> {
        for p in proxies {
            self.env.toxiproxy.remove_toxic(p, &toxic_name(fault)).await?;
        }
        Ok(())
    }
}

/// Waits `span`; true when told to stop first (or the stopping side is gone).
async fn until_stopped(stop: &mut watch::Receiver<bool>, span: Duration) -> bool {
    tokio::select! {
        _ = stop.changed() => true,
        _ = tokio::time::sleep(span) => false,
    }
}

/// Each fault names its own toxic, so two faults on one link (latency and
/// reset, say) both apply and healing one leaves the other in place.
fn toxic_name(fault: Fault) -> String {
    format!("dualcheck-{fault}")
}
