//! The cluster family: Kafka as a cluster of three brokers, whose partition
//! leader is killed, its followers behind, so that leadership moves.

use super::Fault;
use anyhow::{bail, Context, Result};
use services::{Environment, Service};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use workloads::FaultPhase;

/// How long `kafka-leader` freezes the followers before it kills the leader.
pub const FOLLOWERS_BEHIND: Duration = Duration::from_secs(1);

/// Longest wait of `kafka-leader` for leadership to move.
pub const LEADERSHIP_MOVE: Duration = Duration::from_secs(15);

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

    /// The leader of each partition of the run's topic, from the cluster's
    /// metadata (-1: none).
    async fn leaders(&self) -> Result<Vec<i32>> {
        let (bootstrap, topic) = (self.env.kafka_direct_bootstrap.clone(), self.topic.clone());
        tokio::task::spawn_blocking(move || services::kafka::partition_leaders(&bootstrap, &topic)).await?
    }

    /// Waits (at most [`LEADERSHIP_MOVE`]) until partition 0 has a leader
    /// other than `old`; says so in the log when it does not.
    async fn wait_leader_moved(&self, old: usize) {
        let deadline = tokio::time::Instant::now() + LEADERSHIP_MOVE;
        while tokio::time::Instant::now() < deadline {
            if let Ok(l) = self.leaders().await {
                if l.first().is_some_and(|&b| b >= 0 && b as usize != old) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tracing::warn!("kafka-leader: partition 0 had no new leader {LEADERSHIP_MOVE:?} after broker {old} was killed");
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
                let leaders = self.leaders().await?;
                let leader = *leaders.first().context("the topic has no partition")?;
                if leader < 0 {
                    bail!("partition 0 of {} has no leader right now", self.topic);
                }
                let leader = leader as usize;
                *self.killed_leader.lock().unwrap_or_else(|e| e.into_inner()) = Some(leader);
                // The followers fall behind first (frozen, as by a long GC
                // pause, still in the ISR): the leader then holds records it
                // acknowledged alone — what `acks=1` trusts — when it dies.
                let followers: Vec<usize> = (0..self.env.brokers()).filter(|b| *b != leader).collect();
                for &f in &followers {
                    self.env.pause(Service::Kafka(f)).await?;
                }
                tokio::time::sleep(FOLLOWERS_BEHIND).await;
                let killed = self.env.kill(Service::Kafka(leader)).await;
                for &f in &followers {
                    self.env.resume(Service::Kafka(f)).await?;
                }
                killed?;
                // In effect once leadership moved: a leader restarted before
                // the controller fenced it (its session, 3 s) would simply
                // lead again, with everything it had.
                self.wait_leader_moved(leader).await;
                Ok(())
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
