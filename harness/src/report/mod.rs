//! Reports of a run directory: `junit.xml` (one test case per anomaly kind)
//! and a self-contained `report.html` (verdict, anomaly counts, inline SVG
//! plots with fault bands, examples, configuration and service versions).
//!
//! Both are regenerated from `history.jsonl` alone (plus `results.json`,
//! `schedule.json` and `environment.json` when present), so a history checked
//! offline gets the same report: `dualcheck report RUN_DIR`.

pub mod html;
pub mod junit;
pub mod plots;
pub mod series;

use crate::env::{BackendKind, Environment};
use crate::runner::RunConfig;
use anyhow::{bail, Context, Result};
use checkers::{CheckOptions, CheckResult, Example};
use serde::{Deserialize, Serialize};
use series::Series;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The history file of a run directory.
pub const HISTORY: &str = "history.jsonl";
/// The runner's results (a `RunOutcome`).
pub const RESULTS: &str = "results.json";
/// The fault schedule.
pub const SCHEDULE: &str = "schedule.json";
/// Service versions and the run's configuration, written by the runner.
pub const ENVIRONMENT: &str = "environment.json";
/// The JUnit file.
pub const JUNIT: &str = "junit.xml";
/// The HTML report.
pub const HTML: &str = "report.html";

/// What the runner knew about a run, read back from `results.json`; every
/// field is optional so a bare history still gets a report.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RunMeta {
    /// Implementation name.
    pub implementation: Option<String>,
    /// Seed of workload and schedule.
    pub seed: Option<u64>,
    /// Faults chosen from (`fault_names` in `results.json`).
    #[serde(default, rename = "fault_names")]
    pub faults: Vec<String>,
    /// Workload seconds.
    pub duration_s: Option<f64>,
    /// Acknowledged ops per second of workload.
    pub throughput_ok_per_s: Option<f64>,
    /// Whether the drain ended with nothing left.
    pub drained: Option<bool>,
    /// Problems met while injecting or healing faults.
    #[serde(default)]
    pub nemesis_errors: Vec<String>,
    /// Whether duplicates counted as violations.
    #[serde(default)]
    pub exactly_once: bool,
    /// Prepared transactions left in doubt (two-phase), when the run saw any.
    pub in_doubt: Option<crate::in_doubt::InDoubt>,
}

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

/// Everything a report is made of.
#[derive(Debug, Clone)]
pub struct ReportInput {
    /// The check of the history (rechecked, so offline reports agree).
    pub result: CheckResult,
    /// What `results.json` said about the run.
    pub meta: RunMeta,
    /// Per-op series for the plots.
    pub series: Series,
    /// `environment.json` (versions and configuration), when present.
    pub environment: Option<serde_json::Value>,
    /// `schedule.json`, when present.
    pub schedule: Option<serde_json::Value>,
}

/// The files a report wrote.
#[derive(Debug, Clone)]
pub struct ReportFiles {
    /// `junit.xml`.
    pub junit: PathBuf,
    /// `report.html`.
    pub html: PathBuf,
    /// Whether the history is valid.
    pub valid: bool,
}

/// Escapes text for HTML and XML (text and attribute values); drops the
/// control characters XML 1.0 cannot hold.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

/// One example on one line (not escaped).
pub fn example_line(e: &Example) -> String {
    let mut parts = Vec::new();
    if let Some(op) = e.op {
        parts.push(format!("op {op}"));
    }
    if let Some(k) = &e.key {
        parts.push(format!("key {k}"));
    }
    if let Some(s) = e.seq {
        parts.push(format!("seq {s}"));
    }
    if let Some(o) = e.outcome {
        parts.push(format!("outcome {}", o.as_str()));
    }
    if let Some(c) = e.committed {
        parts.push(format!("committed {c}"));
    }
    parts.push(format!("deliveries {}", e.deliveries));
    if !e.events.is_empty() {
        parts.push(format!("events [{}]", e.events.join(", ")));
    }
    if let Some(d) = &e.first_delivery {
        parts.push(format!(
            "first delivery partition {} offset {} at {}",
            d.partition,
            d.offset,
            fmt_ns(d.time)
        ));
    }
    if let Some(t) = e.invoke_time {
        parts.push(format!("invoked at {}", fmt_ns(t)));
    }
    if let Some(t) = e.complete_time {
        parts.push(format!("completed at {}", fmt_ns(t)));
    }
    if let Some(d) = &e.detail {
        parts.push(d.clone());
    }
    parts.join(", ")
}

/// A time since the run started, in seconds with milliseconds.
pub fn fmt_ns(ns: i64) -> String {
    format!("{:.3} s", ns as f64 / 1e9)
}

/// Finds the history of `path`: a run directory holding `history.jsonl`, or the history file itself.
pub fn locate(path: &Path) -> Result<(PathBuf, PathBuf)> {
    if path.is_dir() {
        let h = path.join(HISTORY);
        if !h.is_file() {
            bail!(
                "{} holds no {HISTORY}: give a run directory written by `dualcheck run`, or a history file",
                path.display()
            );
        }
        Ok((path.to_path_buf(), h))
    } else if path.is_file() {
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok((
            if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            },
            path.to_path_buf(),
        ))
    } else {
        bail!("{}: no such run directory or history file", path.display())
    }
}

fn read_json(path: &Path) -> Result<Option<serde_json::Value>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(
            serde_json::from_str(&t).with_context(|| format!("{} is not valid JSON", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Reads and checks a history and whatever run files sit beside it.
pub fn load(dir: &Path, history: &Path) -> Result<ReportInput> {
    let meta: RunMeta = match read_json(&dir.join(RESULTS))? {
        Some(v) => serde_json::from_value(v)
            .with_context(|| format!("{} does not hold a run's results", dir.join(RESULTS).display()))?,
        None => RunMeta::default(),
    };
    let options = CheckOptions {
        exactly_once: meta.exactly_once,
        max_examples: 5,
    };
    let result = checkers::check_file(history, options).map_err(|e| anyhow::anyhow!("unusable history: {e}"))?;
    let series = Series::read(history).map_err(|e| anyhow::anyhow!("unusable history: {e}"))?;
    Ok(ReportInput {
        result,
        meta,
        series,
        environment: read_json(&dir.join(ENVIRONMENT))?,
        schedule: read_json(&dir.join(SCHEDULE))?,
    })
}

/// Writes `junit.xml` and `report.html` for a run directory (or a history
/// file: the files go beside it).
pub fn write(path: &Path) -> Result<ReportFiles> {
    let (dir, history) = locate(path)?;
    let input = load(&dir, &history)?;
    let junit = dir.join(JUNIT);
    let html = dir.join(HTML);
    std::fs::write(&junit, junit::render(&input)).with_context(|| format!("writing {}", junit.display()))?;
    std::fs::write(&html, html::render(&input)?).with_context(|| format!("writing {}", html.display()))?;
    Ok(ReportFiles {
        junit,
        html,
        valid: input.result.valid,
    })
}

/// The runner's last step: records the service versions and the run's
/// configuration in `environment.json`, then writes the report. Problems are
/// logged, never fatal: the verdict stands without a report.
pub async fn finish_run(cfg: &RunConfig, env: &Environment, db_direct_url: &str, run_dir: &Path) {
    let versions = probe_versions(cfg, env, db_direct_url).await;
    let environment = serde_json::json!({
        "versions": versions,
        "config": config_json(cfg),
    });
    if let Err(e) = std::fs::write(
        run_dir.join(ENVIRONMENT),
        serde_json::to_string_pretty(&environment).unwrap_or_default(),
    ) {
        tracing::warn!("report: writing {}: {e}", run_dir.join(ENVIRONMENT).display());
    }
    if let Err(e) = write(run_dir) {
        tracing::warn!(
            "report: {e:#} (regenerate with `dualcheck report {}`)",
            run_dir.display()
        );
    }
}

/// The run's configuration as JSON (environment values of the implementation are left out: they may be secrets).
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
        "duration_s": cfg.duration.as_secs_f64(),
        "workload": cfg.workload,
        "brokers": cfg.brokers,
        "partitions": cfg.partitions,
        "app_env_names": cfg.app_env.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        "op_timeout_s": cfg.op_timeout.as_secs_f64(),
        "drain_timeout_s": cfg.drain_timeout.as_secs_f64(),
        "quiet_s": cfg.quiet.as_secs_f64(),
        "exactly_once": cfg.exactly_once,
        "backend": format!("{:?}", cfg.backend).split(['(', ' ']).next().unwrap_or("").to_string(),
    })
}

/// Asks the running services for their versions (each probe at most a few seconds).
pub async fn probe_versions(cfg: &RunConfig, env: &Environment, db_direct_url: &str) -> Versions {
    let postgres = tokio::time::timeout(Duration::from_secs(5), async {
        let c = crate::env::postgres::connect(db_direct_url).await.ok()?;
        let row = c.query_one("SELECT version()", &[]).await.ok()?;
        row.try_get::<_, String>(0).ok()
    })
    .await
    .ok()
    .flatten();
    let toxiproxy = tokio::time::timeout(Duration::from_secs(5), env.toxiproxy.version())
        .await
        .ok()
        .and_then(|r| r.ok())
        .map(|v| toxiproxy_version(&v));
    let kafka = match cfg.backend {
        BackendKind::Local => kafka_jar_version(&crate::env::local::cache_dir().join("kafka/libs")),
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
