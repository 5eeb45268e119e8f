//! Replaying a recorded run (`dualcheck run --replay RUN_DIR`): the run's
//! configuration as `environment.json` recorded it (implementation, knobs,
//! workload and its seed, duration, brokers, partitions, timeouts) and the
//! fault windows of its `schedule.json`, at the same offsets — followed as an
//! explicit schedule ([`RunConfig::schedule`]) rather than generated again.
//!
//! A run directory written by an older dualcheck may lack a field; reading
//! it fails with an error naming the file and the field.

use crate::app_process::AppCommand;
use crate::nemesis::Fault;
use crate::run_dir::{ENVIRONMENT, SCHEDULE};
use crate::runner::RunConfig;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use workloads::{Schedule, Workload};

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
    let text = std::fs::read_to_string(&env_path).with_context(|| {
        format!(
            "reading {} (is {} a run directory?)",
            env_path.display(),
            run_dir.display()
        )
    })?;
    let env: Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", env_path.display()))?;
    let config = env
        .get("config")
        .with_context(|| format!("{} has no `config` (written by an older dualcheck)", env_path.display()))?;
    let field = |name: &str| -> Result<&Value> {
        config.get(name).with_context(|| {
            format!(
                "{} lacks `config.{name}`, needed to replay the run (written by an older dualcheck): \
                 run it again with this version, or replay by hand with `dualcheck run --schedule {}` and its flags",
                env_path.display(),
                run_dir.join(SCHEDULE).display()
            )
        })
    };
    let secs = |name: &str| -> Result<Duration> {
        let v = field(name)?
            .as_f64()
            .with_context(|| format!("{}: `config.{name}` is not a number", env_path.display()))?;
        Ok(Duration::from_secs_f64(v.max(0.0)))
    };
    let app = match field("app")? {
        Value::Object(m) if m.get("builtin").and_then(Value::as_str).is_some() => {
            AppCommand::Builtin(m["builtin"].as_str().unwrap_or_default().to_string())
        }
        Value::Object(m) if m.get("exec").and_then(Value::as_str).is_some() => {
            AppCommand::Exec(m["exec"].as_str().unwrap_or_default().to_string())
        }
        other => bail!(
            "{}: `config.app` is neither builtin nor exec: {other}",
            env_path.display()
        ),
    };
    if !field("template")?.is_null() {
        bail!(
            "{}: the run used a service template, which a replay cannot rebuild yet: \
             run `dualcheck run --schedule {}` with its template flags",
            env_path.display(),
            run_dir.join(SCHEDULE).display()
        );
    }
    let committed_sql = field("committed_sql")?
        .as_str()
        .context("`config.committed_sql` is not text")?
        .to_string();
    let mut cfg = RunConfig::new(app, &committed_sql);
    cfg.schema_sql = match field("schema_sql_text") {
        Ok(Value::String(s)) => Some(s.clone()),
        Ok(_) => None,
        Err(e) if config.get("schema_sql").and_then(Value::as_bool) == Some(true) => return Err(e),
        Err(_) => None,
    };
    // The run's custom faults are defined again (the same commands) before its
    // faults and schedule, which name them, are read; older runs had none.
    if let Some(cmds) = config.get("fault_cmds") {
        let cmds: Vec<crate::nemesis::custom::CustomFault> =
            serde_json::from_value(cmds.clone()).context("`config.fault_cmds`")?;
        crate::nemesis::custom::define(&cmds)
            .with_context(|| format!("{}: `config.fault_cmds`", env_path.display()))?;
    }
    cfg.faults = serde_json::from_value(field("faults")?.clone()).context("`config.faults`")?;
    cfg.duration = secs("duration_s")?;
    let workload: Workload = serde_json::from_value(field("workload")?.clone()).context("`config.workload`")?;
    cfg.workload = workload;
    // Absent in runs recorded before the option existed.
    cfg.max_retained_wal = config.get("max_retained_wal").and_then(Value::as_u64);
    cfg.brokers = field("brokers")?.as_u64().context("`config.brokers`")? as usize;
    cfg.partitions = field("partitions")?.as_i64().context("`config.partitions`")? as i32;
    let names: Vec<String> =
        serde_json::from_value(field("app_env_names")?.clone()).context("`config.app_env_names`")?;
    let values: Vec<(String, String)> =
        serde_json::from_value(field("app_env")?.clone()).context("`config.app_env`")?;
    for name in &names {
        match values.iter().find(|(k, _)| k == name) {
            Some(kv) => cfg.app_vars.push(kv.clone()),
            None => bail!(
                "{}: the implementation's environment variable {name} was set and its value not \
                 recorded (only DUALCHECK_* knobs are): replay by hand with `dualcheck run --schedule {}`",
                env_path.display(),
                run_dir.join(SCHEDULE).display()
            ),
        }
    }
    cfg.op_timeout = secs("op_timeout_s")?;
    cfg.start_timeout = secs("start_timeout_s")?;
    cfg.drain_timeout = secs("drain_timeout_s")?;
    cfg.quiet = secs("quiet_s")?;
    cfg.exactly_once = field("exactly_once")?.as_bool().context("`config.exactly_once`")?;
    cfg.reads = field("reads")?.as_bool().context("`config.reads`")?;
    cfg.out_dir = out.to_path_buf();
    cfg.schedule = Some(read_schedule(&run_dir.join(SCHEDULE))?);
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::config_json;
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
        recorded(dir.path(), &cfg, config_json(&cfg));
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
        let config = config_json(&cfg);
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
        let mut config = config_json(&cfg);
        config.as_object_mut().unwrap().remove("app_env");
        recorded(dir.path(), &cfg, config);
        let e = format!("{:#}", config_from_run_dir(dir.path(), Path::new("out")).unwrap_err());
        assert!(e.contains("lacks `config.app_env`"), "{e}");
        let mut config = config_json(&cfg);
        config.as_object_mut().unwrap().remove("schema_sql_text");
        recorded(dir.path(), &cfg, config);
        let e = format!("{:#}", config_from_run_dir(dir.path(), Path::new("out")).unwrap_err());
        assert!(e.contains("schema_sql_text"), "{e}");
    }
}
