//! The process family: Postgres, Kafka broker 0, the relay and the
//! application killed, frozen or crashed right after their commit, and
//! brought back when the fault stops.

use super::{Fault, Target, WhileActive};
use crate::app_process::{AppProcess, CrashPoint};
use anyhow::{bail, Result};
use services::{Environment, Service};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use workloads::FaultPhase;

/// Injects the process faults.
pub(super) struct ProcessFaults {
    env: Arc<Environment>,
    app: Arc<AppProcess>,
    /// The relay process of patterns whose relay runs apart (`relay-kill` target).
    relay: Option<Arc<AppProcess>>,
    restart_timeout: Duration,
    /// SIGTERM to SIGKILL in a `rolling-restart` (`--deploy-grace`).
    deploy_grace: Duration,
    crash_loop: WhileActive,
}

impl ProcessFaults {
    pub(super) fn new(
        env: Arc<Environment>,
        app: Arc<AppProcess>,
        relay: Option<Arc<AppProcess>>,
        restart_timeout: Duration,
        deploy_grace: Duration,
    ) -> Self {
        ProcessFaults {
            env,
            app,
            relay,
            restart_timeout,
            deploy_grace,
            crash_loop: WhileActive::default(),
        }
    }

    /// The process a fault holds while in effect.
    pub(super) fn target(&self, fault: Fault) -> Option<Target> {
        use Fault::*;
        match fault {
            PgKill | PgPause => Some(Target::Postgres),
            KafkaKill | KafkaPause => Some(Target::KafkaBroker0),
            RelayKill if self.relay.is_some() => Some(Target::Relay),
            RelayKill | CrashAfterCommit | RollingRestart => Some(Target::Application),
            _ => None,
        }
    }

    /// Each process fault's start and stop, side by side.
    pub(super) async fn apply(&self, fault: Fault, phase: FaultPhase) -> Result<()> {
        use Fault::*;
        use FaultPhase::{Start, Stop};
        let t = self.restart_timeout;
        // Patterns whose relay runs apart lose the relay alone; the others their whole process.
        let relay = self.relay.as_ref().unwrap_or(&self.app);
        match (fault, phase) {
            (PgKill, Start) => self.env.kill(Service::Postgres).await,
            (PgKill, Stop) => self.env.restart(Service::Postgres, t).await,
            (KafkaKill, Start) => self.env.kill(Service::Kafka(0)).await,
            (KafkaKill, Stop) => self.env.restart(Service::Kafka(0), t).await,
            (RelayKill, Start) => relay.kill().await,
            (RelayKill, Stop) => relay.restart().await,

            (PgPause, Start) => self.env.pause(Service::Postgres).await,
            (PgPause, Stop) => self.env.resume(Service::Postgres).await,
            (KafkaPause, Start) => self.env.pause(Service::Kafka(0)).await,
            (KafkaPause, Stop) => self.env.resume(Service::Kafka(0)).await,

            (CrashAfterCommit, Start) => {
                let app = self.app.clone();
                self.crash_loop.start(|stop| crash_loop(app, stop, t));
                Ok(())
            }
            (CrashAfterCommit, Stop) => {
                self.crash_loop.stop().await;
                // Restarting also disarms a crash point that never fired: after
                // healing, no op may crash the application.
                self.app.restart().await
            }

            // The deploy happens at the start; by the stop every instance
            // runs again and there is nothing left to heal.
            (RollingRestart, Start) => self.rolling_restart().await,
            (RollingRestart, Stop) => Ok(()),

            (other, _) => bail!("{other} is a {} fault, not a process one", other.family()),
        }
    }

    /// A deploy: each process of the implementation in turn (the relay
    /// process first, where it runs apart) gets SIGTERM, the grace period to
    /// end by itself, SIGKILL if it did not, and is started again; the next
    /// goes only once it answers. What it exercises is the graceful shutdown:
    /// sends in flight, the producer's flush, outbox rows claimed.
    async fn rolling_restart(&self) -> Result<()> {
        for p in self.relay.iter().chain(std::iter::once(&self.app)) {
            p.redeploy(self.deploy_grace).await?;
            p.wait_ready(self.restart_timeout).await?;
        }
        Ok(())
    }

    /// Makes sure the application and its relay run and answer.
    pub(super) async fn heal_all(&self) -> Result<()> {
        for p in std::iter::once(&self.app).chain(self.relay.as_ref()) {
            p.ensure_running().await?;
            p.wait_ready(self.restart_timeout).await?;
        }
        Ok(())
    }
}

/// While the fault is active: arm the crash point, wait for the process to
/// die on its next commit, restart it (as a supervisor would), pause, repeat.
/// A program without `POST /crash-after-commit` is SIGKILLed right after its
/// next acknowledged op instead.
async fn crash_loop(app: Arc<AppProcess>, mut stop: watch::Receiver<bool>, restart_timeout: Duration) {
    loop {
        if *stop.borrow() {
            return;
        }
        match app.arm_crash_after_commit().await {
            Ok(CrashPoint::Armed) => {}
            Ok(CrashPoint::Unsupported) => {
                // A black box without a crash point: SIGKILL it the moment an
                // op is acknowledged, i.e. just after a commit, when its event
                // is most likely not published yet (documented in the README).
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = app.next_ok() => {}
                }
                if let Err(e) = app.kill().await {
                    tracing::warn!("crash-after-commit (SIGKILL fallback): {e:#}");
                }
            }
            Err(e) => tracing::warn!("crash-after-commit: {e:#}"),
        }
        // Wait for the crash (or the stop).
        loop {
            if !app.is_alive() {
                break;
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        if let Err(e) = app.restart().await {
            tracing::warn!("restarting after crash-after-commit: {e:#}");
        }
        // Arm again only once it answers (a dependency may be down meanwhile).
        tokio::select! {
            _ = stop.changed() => return,
            r = app.wait_ready(restart_timeout) => if let Err(e) = r {
                tracing::warn!("crash-after-commit: {e:#}");
            },
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}
