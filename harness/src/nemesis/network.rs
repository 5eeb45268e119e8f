//! The network family: partitions and toxics on the links Toxiproxy stands on,
//! the Postgres link (one proxy) and the Kafka link (one proxy per broker).

use super::Fault;
use crate::env::toxiproxy::{Stream, Toxic};
use crate::env::Environment;
use anyhow::{bail, Result};
use std::sync::Arc;
use workloads::FaultPhase;

/// 300 ms ± 100 ms on every packet: slow enough to reorder timeouts, not to stop the run.
const LATENCY: Toxic = Toxic::Latency {
    latency_ms: 300,
    jitter_ms: 100,
};

/// Injects the network faults.
pub(super) struct NetworkFaults {
    env: Arc<Environment>,
}

impl NetworkFaults {
    pub(super) fn new(env: Arc<Environment>) -> Self {
        NetworkFaults { env }
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

            (PgReset, Start) => self.toxic_on(fault, pg, Toxic::ResetPeer { timeout_ms: 100 }).await,
            (PgReset, Stop) => self.toxic_off(fault, pg).await,
            (KafkaReset, Start) => self.toxic_on(fault, kafka, Toxic::ResetPeer { timeout_ms: 100 }).await,
            (KafkaReset, Stop) => self.toxic_off(fault, kafka).await,

            (KafkaSlow, Start) => self.toxic_on(fault, kafka, Toxic::Bandwidth { rate_kb_s: 16 }).await,
            (KafkaSlow, Stop) => self.toxic_off(fault, kafka).await,
            (KafkaTimeout, Start) => self.toxic_on(fault, kafka, Toxic::Timeout { timeout_ms: 2000 }).await,
            (KafkaTimeout, Stop) => self.toxic_off(fault, kafka).await,

            (other, _) => bail!("{other} is a {} fault, not a network one", other.family()),
        }
    }

    /// Every proxy up, every toxic removed.
    pub(super) async fn heal_all(&self) -> Result<()> {
        self.env.heal_all().await
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

/// Each fault names its own toxic, so two faults on one link (latency and
/// reset, say) both apply and healing one leaves the other in place.
fn toxic_name(fault: Fault) -> String {
    format!("dualcheck-{fault}")
}
