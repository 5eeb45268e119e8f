//! The cluster family: Kafka as a cluster of three brokers, whose partition
//! leader is killed so that leadership moves.

use super::Fault;
use anyhow::{bail, Context, Result};
use services::{Environment, Service};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use workloads::FaultPhase;

/// Injects the cluster faults.
pub(super) struct ClusterFaults {
    env: Arc<Environment>,
    /// The run's topic, whose partition 0 has the leader to kill.
    topic: String,
    restart_timeout: Duration,
    /// Broker killed by `kafka-leader`, to restart.
    killed_leader: Mutex<Option<usize>>,
}

impl ClusterFaults {
    pub(super) fn new(env: Arc<Environment>, topic: &str, restart_timeout: Duration) -> Self {
        ClusterFaults {
            env,
            topic: topic.to_string(),
            restart_timeout,
            killed_leader: Mutex::new(None),
        }
    }

    /// Each cluster fault's start and stop, side by side.
    pub(super) async fn apply(&self, fault: Fault, phase: FaultPhase) -> Result<()> {
        use Fault::*;
        use FaultPhase::{Start, Stop};
        match (fault, phase) {
            (KafkaLeader, Start) => {
                if self.env.brokers() < 3 {
                    bail!("kafka-leader needs 3 brokers (run with --brokers 3)");
                }
                let (bootstrap, topic) = (self.env.kafka_direct_bootstrap.clone(), self.topic.clone());
                let leaders =
                    tokio::task::spawn_blocking(move || services::kafka::partition_leaders(&bootstrap, &topic))
                        .await??;
                let leader = *leaders.first().context("the topic has no partition")?;
                if leader < 0 {
                    bail!("partition 0 of {} has no leader right now", self.topic);
                }
                *self.killed_leader.lock().unwrap_or_else(|e| e.into_inner()) = Some(leader as usize);
                self.env.kill(Service::Kafka(leader as usize)).await
            }
            (KafkaLeader, Stop) => {
                let killed = self.killed_leader.lock().unwrap_or_else(|e| e.into_inner()).take();
                match killed {
                    Some(b) => self.env.restart(Service::Kafka(b), self.restart_timeout).await,
                    None => Ok(()),
                }
            }

            (other, _) => bail!("{other} is a {} fault, not a cluster one", other.family()),
        }
    }
}
