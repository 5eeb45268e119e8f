//! Phase 7, judge: with the check (made with the trails while the
//! implementation still ran), write `results.json`, then `environment.json`
//! and the report.

use super::teardown::TornDown;
use super::{environment_record, Exercised, IdleWindow, ResolvedApp, RunConfig, RunOutcome};
use anyhow::{bail, Result};
use checkers::CheckResult;
use record::run_dir::RunDir;
use services::Environment;

/// Writes the run's results and report from the check of its history; fails
/// when the implementation acknowledged nothing (no verdict would mean anything).
pub(super) async fn judge(
    cfg: &RunConfig,
    app: &ResolvedApp,
    services: &Environment,
    run_dir: &RunDir,
    exercised: Exercised,
    mut result: CheckResult,
    torn_down: TornDown,
) -> Result<RunOutcome> {
    let history = run_dir.history();
    if let Some(limit) = cfg.max_retained_wal {
        judge_retained_wal(&mut result, run_dir, limit);
    }
    let mut nemesis_errors = exercised.nemesis_errors;
    nemesis_errors.extend(torn_down.errors);
    let outcome = RunOutcome {
        throughput_ok_per_s: result.ops.ok as f64 / exercised.workload_secs.max(1e-9),
        result,
        run_dir: run_dir.path().to_path_buf(),
        implementation: app.name.clone(),
        seed: cfg.workload.seed,
        faults: cfg.faults.iter().map(|f| f.name().to_string()).collect(),
        duration_s: exercised.workload_secs,
        drained: exercised.drained,
        parked: exercised.parked,
        nemesis_errors,
        slots_dropped: torn_down.slots_dropped,
        in_doubt: torn_down.in_doubt,
        ops_max: torn_down.ops_max,
        idle_window: cfg.workload.idle_span(cfg.duration).map(|(start, stop)| IdleWindow {
            start_s: start.as_secs_f64(),
            stop_s: stop.as_secs_f64(),
        }),
        max_retained_wal: cfg.max_retained_wal,
        transit: torn_down.transit,
        phases: Some(exercised.phases),
    };
    std::fs::write(run_dir.results(), serde_json::to_string_pretty(&outcome)?)?;
    write_environment_and_report(cfg, services, &exercised.db_direct_url, run_dir).await;
    if outcome.result.ops.ok == 0 && !exercised.invoked.is_empty() {
        // Nothing acknowledged: no verdict means anything (the program answers
        // outside the contract, or its tables are missing, or it cannot reach
        // the database at all).
        let first = first_error(&history).unwrap_or_default();
        let log = run_dir.app_log();
        bail!(
            "the implementation acknowledged none of the {} ops it was sent, so there is nothing to judge; first answer: {first}\n--- last lines of {} ---\n{}",
            exercised.invoked.len(),
            log.display(),
            services::process::tail(&log, 20)
        );
    }
    Ok(outcome)
}

/// `--max-retained-wal`: every sample of a slot's retained WAL in the run's
/// series above `limit` is a `wal_retained` occurrence; the example explains
/// the first (its time, slot and value).
fn judge_retained_wal(result: &mut CheckResult, run_dir: &RunDir, limit: u64) {
    let samples = match crate::ops_series::read(&run_dir.ops_series()) {
        Ok(s) => s,
        Err(e) => {
            result.warnings.push(format!(
                "--max-retained-wal: the operational series {} could not be read ({e}), so the retained WAL was not judged",
                run_dir.ops_series().display()
            ));
            return;
        }
    };
    crate::ops_series::judge_retained_wal(result, &samples, limit);
}

/// Records the service versions and the run's configuration in
/// `environment.json`, then writes the report. Problems are logged, never
/// fatal: the verdict stands without a report.
async fn write_environment_and_report(cfg: &RunConfig, services: &Environment, db_direct_url: &str, run_dir: &RunDir) {
    if let Err(e) = environment_record::write(cfg, services, db_direct_url, run_dir).await {
        tracing::warn!("report: writing {}: {e}", run_dir.environment().display());
    }
    if let Err(e) = report::write(run_dir.path()) {
        tracing::warn!(
            "report: {e:#} (regenerate with `dualcheck report {}`)",
            run_dir.path().display()
        );
    }
}

/// The error of the first `fail` or `info` line of a history, if any.
fn first_error(history: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(history).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| matches!(v.get("type").and_then(|t| t.as_str()), Some("fail" | "info")))
        .find_map(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
}
