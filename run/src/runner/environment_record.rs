//! `environment.json`: the service versions a run used and its configuration,
//! written by the judge next to the results (the report shows both).

use super::RunConfig;
use crate::app_process::AppCommand;
use crate::nemesis::Fault;
use crate::template::ResolveTemplate as _;
use anyhow::{bail, Context, Result};
use record::run_dir::RunDir;
use record::{EnvironmentRecord, RecordedApp, RecordedBackend, RecordedConfig, Versions};
use services::{BackendKind, Environment};
use std::path::Path;
use std::time::Duration;

/// Probes the versions and writes them with the run's configuration to `environment.json`.
pub(super) async fn write(
    cfg: &RunConfig,
    services: &Environment,
    db_direct_url: &str,
    run_dir: &RunDir,
) -> std::io::Result<()> {
    let versions = probe_versions(cfg, services, db_direct_url).await;
    let environment = EnvironmentRecord {
        versions,
        config: Some(cfg.record()),
    };
    std::fs::write(
        run_dir.environment(),
        serde_json::to_string_pretty(&environment).unwrap_or_default(),
    )
}
impl RunConfig {
    /// This configuration as the run directory records it: the
    /// implementation's knobs (`DUALCHECK_*`) with their values, other
    /// variables by name only (they may be secrets), credential headers of
    /// the template redacted.
    pub fn record(&self) -> RecordedConfig {
        RecordedConfig {
            app: match &self.app {
                AppCommand::Builtin(n) => RecordedApp::Builtin(n.clone()),
                AppCommand::Exec(c) => RecordedApp::Exec(c.clone()),
            },
            committed_sql: self.committed_sql.clone(),
            schema_sql: self.schema_sql.is_some(),
            schema_sql_text: self.schema_sql.clone(),
            faults: self.faults.iter().map(|f| f.name().to_string()).collect(),
            fault_cmds: record::fault::custom::definitions_of(&self.faults),
            duration_s: self.duration.as_secs_f64(),
            workload: self.workload.clone(),
            max_retained_wal: self.max_retained_wal,
            brokers: self.brokers,
            partitions: self.partitions,
            app_env_names: self.app_vars.iter().map(|(k, _)| k.clone()).collect(),
            app_env: self
                .app_vars
                .iter()
                .filter(|(k, _)| k.starts_with("DUALCHECK_"))
                .cloned()
                .collect(),
            op_timeout_s: self.op_timeout.as_secs_f64(),
            start_timeout_s: self.start_timeout.as_secs_f64(),
            drain_timeout_s: self.drain_timeout.as_secs_f64(),
            quiet_s: self.quiet.as_secs_f64(),
            restart_before_drain: self.restart_before_drain,
            deploy_grace_s: self.deploy_grace.as_secs_f64(),
            replicas: self.replicas,
            clock_offset_ms: self.clock_offset_ms,
            exactly_once: self.exactly_once,
            reads: self.reads,
            explicit_schedule: self.schedule.is_some(),
            backend: match self.backend {
                BackendKind::Local => RecordedBackend::Local,
                BackendKind::External(_) => RecordedBackend::External,
                BackendKind::Testcontainers => RecordedBackend::Testcontainers,
            },
            template: self.template.describe(),
            template_options: self.template.source.as_ref().map(|t| t.redacted()),
        }
    }

    /// The configuration `rec` records, its run directory going under `out`;
    /// `where_` names the record in errors. The recorded custom faults are
    /// defined again (the same commands) before its fault names are read.
    /// The backend is local: a replay's own flags choose another. No
    /// schedule: the caller sets the recorded one.
    pub fn from_record(rec: &RecordedConfig, out: &Path, where_: &str) -> Result<RunConfig> {
        let app = match &rec.app {
            RecordedApp::Builtin(n) => AppCommand::Builtin(n.clone()),
            RecordedApp::Exec(c) => AppCommand::Exec(c.clone()),
        };
        let mut cfg = RunConfig::new(app, &rec.committed_sql);
        if rec.schema_sql && rec.schema_sql_text.is_none() {
            bail!("{where_}: `config.schema_sql_text` is missing: the run ran --schema SQL that was not recorded (written by an older dualcheck); replay by hand with its --schema");
        }
        cfg.schema_sql = rec.schema_sql_text.clone();
        record::fault::custom::define(&rec.fault_cmds).with_context(|| format!("{where_}: `config.fault_cmds`"))?;
        cfg.faults = rec
            .faults
            .iter()
            .map(|n| Fault::from_name(n))
            .collect::<Result<_>>()
            .with_context(|| format!("{where_}: `config.faults`"))?;
        cfg.duration = secs(rec.duration_s);
        cfg.workload = rec.workload.clone();
        cfg.max_retained_wal = rec.max_retained_wal;
        cfg.brokers = rec.brokers;
        cfg.partitions = rec.partitions;
        let unrecorded = rec.unrecorded_app_env();
        if !unrecorded.is_empty() {
            bail!(
                "{where_}: the implementation's environment variable(s) {} were set and their values not \
                 recorded (only DUALCHECK_* knobs are): replay by hand with `dualcheck run --schedule` and them",
                unrecorded.join(", ")
            );
        }
        cfg.app_vars = rec.app_env.clone();
        cfg.op_timeout = secs(rec.op_timeout_s);
        cfg.start_timeout = secs(rec.start_timeout_s);
        cfg.drain_timeout = secs(rec.drain_timeout_s);
        cfg.quiet = secs(rec.quiet_s);
        cfg.restart_before_drain = rec.restart_before_drain;
        cfg.deploy_grace = secs(rec.deploy_grace_s);
        cfg.replicas = rec.replicas.max(1);
        cfg.clock_offset_ms = rec.clock_offset_ms;
        cfg.exactly_once = rec.exactly_once;
        cfg.reads = rec.reads;
        cfg.template = match (&rec.template_options, rec.template.is_null()) {
            (Some(t), _) => {
                let hidden = t.redacted_headers();
                if !hidden.is_empty() {
                    bail!(
                        "{where_}: the template's header(s) {} may carry credentials and were not recorded: \
                         replay by hand with `dualcheck run --schedule` and the template flags",
                        hidden.join(", ")
                    );
                }
                t.resolve()
                    .with_context(|| format!("{where_}: `config.template_options`"))?
            }
            (None, true) => crate::template::ServiceTemplate::default(),
            (None, false) => bail!(
                "{where_}: the run used a service template this dualcheck did not record as flags (an older version, \
                 or one built in code): replay by hand with `dualcheck run --schedule` and its template flags"
            ),
        };
        cfg.out_dir = out.to_path_buf();
        Ok(cfg)
    }
}

/// Recorded seconds as a duration (negative ones as zero).
fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// Asks the running services for their versions (each probe at most a few seconds).
pub async fn probe_versions(cfg: &RunConfig, services: &Environment, db_direct_url: &str) -> Versions {
    let postgres = tokio::time::timeout(Duration::from_secs(5), async {
        let c = services::postgres::connect(db_direct_url).await.ok()?;
        let row = c.query_one("SELECT version()", &[]).await.ok()?;
        row.try_get::<_, String>(0).ok()
    })
    .await
    .ok()
    .flatten();
    let toxiproxy = tokio::time::timeout(Duration::from_secs(5), services.toxiproxy.version())
        .await
        .ok()
        .and_then(|r| r.ok())
        .map(|v| toxiproxy_version(&v));
    let kafka = match cfg.backend {
        BackendKind::Local => kafka_jar_version(&services::cache::cache_dir().join("kafka/libs")),
        _ => None,
    };
    Versions {
        postgres,
        kafka,
        toxiproxy,
        librdkafka: Some(rdkafka::util::get_rdkafka_version().1),
        dualcheck: Some(env!("CARGO_PKG_VERSION").to_string()),
    }
}

/// Toxiproxy's `/version` answer made readable: the `version` field of its
/// JSON; a server built by `go install` reports `git`.
pub fn toxiproxy_version(answer: &str) -> String {
    let v = serde_json::from_str::<serde_json::Value>(answer)
        .ok()
        .and_then(|j| j.get("version").and_then(|v| v.as_str()).map(str::to_string))
        .unwrap_or_else(|| answer.trim().to_string());
    if v == "git" {
        "git (built by `go install`; ci/setup pins v2.12.0)".into()
    } else {
        v
    }
}

/// The Kafka version in the broker jar's name (`kafka_2.13-4.1.0.jar`) under `libs`.
pub fn kafka_jar_version(libs: &Path) -> Option<String> {
    std::fs::read_dir(libs).ok()?.flatten().find_map(|e| {
        let name = e.file_name().to_str()?.to_string();
        let rest = name.strip_prefix("kafka_")?.strip_suffix(".jar")?;
        let (scala, version) = rest.split_once('-')?;
        (!version.contains('-')).then(|| format!("{version} (Scala {scala})"))
    })
}
