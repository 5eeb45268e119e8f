//! `environment.json`: the service versions a run used and its configuration,
//! written by the judge next to the results (the report shows both).

use super::RunConfig;
use crate::env::{BackendKind, Environment};
use crate::run_dir::RunDir;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Duration;

/// Versions of the services a run used (`None`: not known).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Versions {
    /// `SELECT version()` of the run's PostgreSQL.
    pub postgres: Option<String>,
    /// Kafka, from the broker jar's name in the local cache.
    pub kafka: Option<String>,
    /// Toxiproxy's `/version`.
    pub toxiproxy: Option<String>,
    /// librdkafka linked into dualcheck.
    pub librdkafka: Option<String>,
    /// dualcheck itself.
    pub dualcheck: Option<String>,
}

/// Probes the versions and writes them with the run's configuration to `environment.json`.
pub(super) async fn write(
    cfg: &RunConfig,
    services: &Environment,
    db_direct_url: &str,
    run_dir: &RunDir,
) -> std::io::Result<()> {
    let versions = probe_versions(cfg, services, db_direct_url).await;
    let environment = serde_json::json!({
        "versions": versions,
        "config": config_json(cfg),
    });
    std::fs::write(
        run_dir.environment(),
        serde_json::to_string_pretty(&environment).unwrap_or_default(),
    )
}
/// The run's configuration as JSON: everything `dualcheck run --replay` needs
/// (the implementation's knobs, `DUALCHECK_*`, with their values; other
/// environment values of the implementation are left out: they may be secrets).
pub fn config_json(cfg: &RunConfig) -> serde_json::Value {
    let app = match &cfg.app {
        crate::app_process::AppCommand::Builtin(n) => serde_json::json!({"builtin": n}),
        crate::app_process::AppCommand::Exec(c) => serde_json::json!({"exec": c}),
    };
    serde_json::json!({
        "app": app,
        "committed_sql": cfg.committed_sql,
        "schema_sql": cfg.schema_sql.is_some(),
        "faults": cfg.faults.iter().map(|f| f.name()).collect::<Vec<_>>(),
        "fault_cmds": crate::nemesis::custom::definitions_of(&cfg.faults),
        "duration_s": cfg.duration.as_secs_f64(),
        "workload": cfg.workload,
        "max_retained_wal": cfg.max_retained_wal,
        "brokers": cfg.brokers,
        "partitions": cfg.partitions,
        "app_env_names": cfg.app_vars.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        "app_env": cfg
            .app_vars
            .iter()
            .filter(|(k, _)| k.starts_with("DUALCHECK_"))
            .map(|(k, v)| serde_json::json!([k, v]))
            .collect::<Vec<_>>(),
        "schema_sql_text": cfg.schema_sql,
        "reads": cfg.reads,
        "start_timeout_s": cfg.start_timeout.as_secs_f64(),
        "explicit_schedule": cfg.schedule.is_some(),
        "op_timeout_s": cfg.op_timeout.as_secs_f64(),
        "drain_timeout_s": cfg.drain_timeout.as_secs_f64(),
        "quiet_s": cfg.quiet.as_secs_f64(),
        "exactly_once": cfg.exactly_once,
        "template": cfg.template.describe(),
        "backend": format!("{:?}", cfg.backend).split(['(', ' ']).next().unwrap_or("").to_string(),
    })
}

/// Asks the running services for their versions (each probe at most a few seconds).
pub async fn probe_versions(cfg: &RunConfig, services: &Environment, db_direct_url: &str) -> Versions {
    let postgres = tokio::time::timeout(Duration::from_secs(5), async {
        let c = crate::env::postgres::connect(db_direct_url).await.ok()?;
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
        BackendKind::Local => kafka_jar_version(&crate::env::cache::cache_dir().join("kafka/libs")),
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
