//! Phase 3, nemesis: the seeded fault schedule (written to `schedule.json`)
//! and the task that follows it beside the workload.

use super::RunConfig;
use crate::nemesis::{Fault, Nemesis};
use anyhow::Result;
use record::run_dir::RunDir;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use workloads::{FaultPhase, Schedule, ScheduleConfig};

/// The run's schedule — the explicit one of [`RunConfig::schedule`], else
/// generated from the seed — written to the run directory.
pub(super) fn plan(cfg: &RunConfig, run_dir: &RunDir) -> Result<Schedule<Fault>> {
    let schedule = match &cfg.schedule {
        Some(s) => s.clone(),
        None => Schedule::generate(&ScheduleConfig {
            seed: cfg.workload.seed,
            faults: cfg.faults.clone(),
            duration: cfg.duration,
        }),
    };
    std::fs::write(run_dir.schedule(), serde_json::to_string_pretty(&schedule)?)?;
    Ok(schedule)
}

/// The nemesis at work.
pub(super) struct FaultTask {
    task: JoinHandle<()>,
    errors: Arc<Mutex<Vec<String>>>,
}

/// Starts following `schedule` (times relative to `workload_start`); no fault
/// starts after `deadline`.
pub(super) fn spawn(
    schedule: Schedule<Fault>,
    nemesis: Arc<Nemesis>,
    workload_start: Instant,
    deadline: Instant,
) -> FaultTask {
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let task = {
        let errors = errors.clone();
        tokio::spawn(async move {
            for step in schedule.steps {
                tokio::time::sleep_until((workload_start + step.at).into()).await;
                let fault = step.fault;
                // A step delayed past the workload by a slow restart: never start a fault then.
                if step.phase == FaultPhase::Start && Instant::now() >= deadline {
                    continue;
                }
                let r = match step.phase {
                    FaultPhase::Start => nemesis.start(fault).await,
                    FaultPhase::Stop => nemesis.stop(fault).await,
                };
                if let Err(e) = r {
                    tracing::warn!("{e:#}");
                    errors.lock().unwrap_or_else(|e| e.into_inner()).push(format!("{e:#}"));
                }
            }
        })
    };
    FaultTask { task, errors }
}

impl FaultTask {
    /// Ends the task once the workload is over; returns the problems met
    /// injecting or healing faults.
    pub async fn finish(self) -> Vec<String> {
        // The schedule ends within the duration; never wait past it for a stuck step.
        // A step delayed by a slow restart must not start a fault after healing began.
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
            task.abort();
            let _ = task.await;
        }
        std::mem::take(&mut *self.errors.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
