//! Replaying a recorded run (`dualcheck run --replay RUN_DIR`): the run's
//! configuration as `environment.json` recorded it (implementation, knobs,
//! workload and its seed, duration, brokers, partitions, timeouts) and the
//! fault windows of its `schedule.json`, at the same offsets — followed as an
//! explicit schedule ([`RunConfig::schedule`]) rather than generated again.
//!
//! A run directory written by an older dualcheck may lack a field; reading
//! it fails with an error naming the file and the field.

use crate::nemesis::Fault;
use crate::record::EnvironmentRecord;
use crate::run_dir::{ENVIRONMENT, SCHEDULE};
use crate::runner::RunConfig;
use anyhow::{bail, Context, Result};
use std::path::Path;
use workloads::Schedule;

/// Reads a schedule file (`schedule.json`, or one edited by hand): `{"events":
/// [{"at": {"secs": S, "nanos": N}, "fault": "NAME", "phase": "start"|"stop"}, ...]}`.
pub fn read_schedule(path: &Path) -> Result<Schedule<Fault>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the schedule {}", path.display()))?;
    let mut schedule: Schedule<Fault> =
        serde_json::from_str(&text).with_context(|| format!("{} is not a fault schedule", path.display()))?;
    schedule.steps.sort_by_key(|s| s.at);
    Ok(schedule)
}

/// The configuration that replays the run recorded in `run_dir`, its run
/// directory going under `out`.
pub fn config_from_run_dir(run_dir: &Path, out: &Path) -> Result<RunConfig> {
    let env_path = run_dir.join(ENVIRONMENT);
    if !env_path.exists() {
        bail!(
            "{} not found (is {} a run directory?)",
            env_path.display(),
            run_dir.display()
        );
    }
    let by_hand = format!(
        "run it again with this version, or replay by hand with `dualcheck run --schedule {}` and its flags",
        run_dir.join(SCHEDULE).display()
    );
    let record = EnvironmentRecord::read(&env_path).map_err(|e| anyhow::anyhow!("{e:#}: {by_hand}"))?;
    let config = record.config.with_context(|| {
        format!(
            "{} has no `config` (written by an older dualcheck): {by_hand}",
            env_path.display()
        )
    })?;
    let mut cfg = RunConfig::from_record(&config, out, &env_path.display().to_string())?;
    cfg.schedule = Some(read_schedule(&run_dir.join(SCHEDULE))?);
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app_process::AppCommand;
    use serde_json::Value;
    use std::time::Duration;
    use workloads::{FaultPhase, ScheduleStep};

    fn recorded(dir: &Path, cfg: &RunConfig, config: Value) {
        std::fs::write(
            dir.join(ENVIRONMENT),
            serde_json::json!({ "config": config }).to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.join(SCHEDULE),
            serde_json::to_string(cfg.schedule.as_ref().unwrap()).unwrap(),
        )
        .unwrap();
    }

    fn a_config() -> RunConfig {
        let mut cfg = RunConfig::new(AppCommand::Builtin("naive".into()), "SELECT op FROM orders");
        cfg.faults = vec![Fault::KafkaPartition, Fault::PgKill];
        cfg.duration = Duration::from_secs(9);
        cfg.workload.seed = 7;
        cfg.workload.keys = 5;
        cfg.app_vars = vec![("DUALCHECK_RELAYS".into(), "2".into())];
        cfg.reads = true;
        cfg.schema_sql = Some("CREATE TABLE t (x int)".into());
        cfg.schedule = Some(Schedule {
            steps: vec![
                ScheduleStep {
                    at: Duration::from_millis(1500),
                    fault: Fault::KafkaPartition,
                    phase: FaultPhase::Start,
                },
                ScheduleStep {
                    at: Duration::from_millis(4000),
                    fault: Fault::KafkaPartition,
                    phase: FaultPhase::Stop,
                },
            ],
        });
        cfg
    }

    #[test]
    fn a_recorded_configuration_replays_as_it_was() {
        let dir = crate::run_dir::RunDir::create(None).unwrap();
        let cfg = a_config();
        recorded(dir.path(), &cfg, serde_json::to_value(cfg.record()).unwrap());
        let back = config_from_run_dir(dir.path(), Path::new("out")).unwrap();
        assert_eq!(format!("{:?}", back.app), format!("{:?}", cfg.app));
        assert_eq!(back.faults, cfg.faults);
        assert_eq!(back.duration, cfg.duration);
        assert_eq!(back.workload, cfg.workload);
        assert_eq!(back.app_vars, cfg.app_vars);
        assert_eq!(back.schema_sql, cfg.schema_sql);
        assert_eq!(back.schedule, cfg.schedule);
        assert!(back.reads);
        assert_eq!(back.out_dir, Path::new("out"));
    }

    #[test]
    fn a_replay_defines_the_recorded_custom_faults_again() {
        use crate::nemesis::custom;
        custom::define(&["unit-replay-rec=kill -STOP 1,kill -CONT 1".parse().unwrap()]).unwrap();
        let mut cfg = a_config();
        let recorded_fault = Fault::from_name("unit-replay-rec").unwrap();
        cfg.faults.push(recorded_fault);
        if let Some(s) = cfg.schedule.as_mut() {
            s.steps[0].fault = recorded_fault;
            s.steps[1].fault = recorded_fault;
        }
        let config = serde_json::to_value(cfg.record()).unwrap();
        assert_eq!(config["fault_cmds"][0]["start"], "kill -STOP 1");
        // As if recorded by another process: a name this one never defined.
        let rename = |v: String| v.replace("unit-replay-rec", "unit-replay-new");
        let dir = crate::run_dir::RunDir::create(None).unwrap();
        std::fs::write(
            dir.path().join(ENVIRONMENT),
            rename(serde_json::json!({ "config": config }).to_string()),
        )
        .unwrap();
        std::fs::write(
            dir.path().join(SCHEDULE),
            rename(serde_json::to_string(cfg.schedule.as_ref().unwrap()).unwrap()),
        )
        .unwrap();
        assert!(Fault::from_name("unit-replay-new").is_err());
        let back = config_from_run_dir(dir.path(), Path::new("out")).unwrap();
        let replayed = Fault::from_name("unit-replay-new").unwrap();
        assert!(back.faults.contains(&replayed));
        assert_eq!(back.schedule.unwrap().steps[0].fault, replayed);
        let def = custom::definitions_of(&[replayed]);
        assert_eq!(def[0].stop.as_deref(), Some("kill -CONT 1"));
    }

    #[test]
    fn an_older_run_directory_names_the_missing_field() {
        let dir = crate::run_dir::RunDir::create(None).unwrap();
        let cfg = a_config();
        let mut config = serde_json::to_value(cfg.record()).unwrap();
        config.as_object_mut().unwrap().remove("app_env");
        recorded(dir.path(), &cfg, config);
        let e = format!("{:#}", config_from_run_dir(dir.path(), Path::new("out")).unwrap_err());
        assert!(e.contains("lacks `config.app_env`"), "{e}");
        let mut config = serde_json::to_value(cfg.record()).unwrap();
        config["schema_sql_text"] = serde_json::Value::Null;
        recorded(dir.path(), &cfg, config);
        let e = format!("{:#}", config_from_run_dir(dir.path(), Path::new("out")).unwrap_err());
        assert!(e.contains("schema_sql_text"), "{e}");
    }
}
