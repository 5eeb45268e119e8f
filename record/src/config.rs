//! A run's configuration as its run directory records it (`environment.json`,
//! under `config`), typed both ways: written once by the judge, read by
//! `run --replay`, `shrink`, the report and the runs page — and turned into
//! the `dualcheck run` line that runs it again ([`RecordedConfig::run_args`]),
//! so that a printed reproduction is the recorded run by construction.
//!
//! The field names are the documented ones (docs/results.md); runs recorded
//! before a field existed read with its default where one is safe.

use super::fault::custom::CustomFault;
use super::template_options::TemplateOptions;
use serde::{Deserialize, Serialize};
use std::path::Path;
use workloads::Workload;

/// What the run started: a built-in implementation or the user's program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordedApp {
    /// `dualcheck app --impl NAME`.
    Builtin(String),
    /// `sh -c CMD`.
    Exec(String),
}

/// Which services the run used: the name only, never an address or a
/// credential (those come from `DUALCHECK_*` or `dualcheck.toml` where a
/// replay runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RecordedBackend {
    /// Started by dualcheck.
    #[default]
    Local,
    /// The user's own services.
    External,
    /// Docker containers.
    Testcontainers,
}

impl RecordedBackend {
    /// The name `--backend` takes.
    pub fn flag_value(self) -> &'static str {
        match self {
            RecordedBackend::Local => "local",
            RecordedBackend::External => "external",
            RecordedBackend::Testcontainers => "testcontainers",
        }
    }
}

/// A run's configuration: everything `dualcheck run --replay` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedConfig {
    /// What ran.
    pub app: RecordedApp,
    /// The query returning the committed op ids.
    pub committed_sql: String,
    /// Whether `--schema` SQL ran before the implementation started.
    pub schema_sql: bool,
    /// That SQL.
    #[serde(default)]
    pub schema_sql_text: Option<String>,
    /// The faults the schedule chose from, by name (custom ones are defined
    /// by [`RecordedConfig::fault_cmds`] before these names are read).
    pub faults: Vec<String>,
    /// The custom faults among them (absent in older runs).
    #[serde(default)]
    pub fault_cmds: Vec<CustomFault>,
    /// How long the workload ran, in seconds.
    pub duration_s: f64,
    /// The workload and its seed.
    pub workload: Workload,
    /// `--max-retained-wal` in bytes (absent in older runs).
    #[serde(default)]
    pub max_retained_wal: Option<u64>,
    /// Kafka brokers.
    pub brokers: usize,
    /// Partitions of the topic.
    pub partitions: i32,
    /// Every variable of the implementation's environment, by name.
    pub app_env_names: Vec<String>,
    /// The values of the `DUALCHECK_*` knobs among them (other values may be secrets).
    pub app_env: Vec<(String, String)>,
    /// Timeout of one op, in seconds.
    pub op_timeout_s: f64,
    /// How long the implementation could take to answer, in seconds.
    pub start_timeout_s: f64,
    /// Longest drain, in seconds.
    pub drain_timeout_s: f64,
    /// Quiet period ending the drain, in seconds.
    pub quiet_s: f64,
    /// The implementation was restarted after the last heal, before the
    /// drain (`--restart-before-drain`; absent in older runs).
    #[serde(default)]
    pub restart_before_drain: bool,
    /// SIGTERM to SIGKILL in a deploy, in seconds (`--deploy-grace`; 10 in
    /// older runs, which had no flag).
    #[serde(default = "default_deploy_grace_s")]
    pub deploy_grace_s: f64,
    /// Instances of the implementation (`--replicas`; 1 in older runs).
    #[serde(default = "one")]
    pub replicas: usize,
    /// How far `clock-skew` shifted an instance's clock, ms (`--clock-offset`;
    /// 5000 in older runs, which had no such fault).
    #[serde(default = "default_clock_offset_ms")]
    pub clock_offset_ms: i64,
    /// Duplicates counted as violations.
    pub exactly_once: bool,
    /// Keys read back after each acknowledged write.
    pub reads: bool,
    /// The schedule was given (`--schedule`, a replay, a shrink), not drawn from the seed.
    pub explicit_schedule: bool,
    /// Which services.
    #[serde(default)]
    pub backend: RecordedBackend,
    /// The service template for a reader: request, read and backlog templates
    /// and the record mapping, header values left out; `null` without one.
    #[serde(default)]
    pub template: serde_json::Value,
    /// The template as flags (file and flags merged), credential headers
    /// redacted ([`TemplateOptions::redacted`]); absent without a template
    /// and in older runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_options: Option<TemplateOptions>,
}

/// Files a reproduction line points at.
#[derive(Debug, Clone, Copy)]
pub struct ReproFiles<'a> {
    /// The fault schedule to follow (`--schedule`).
    pub schedule: &'a Path,
    /// The recorded `--schema` SQL, written out (`None`: the run had none).
    pub schema: Option<&'a Path>,
}

impl RecordedConfig {
    /// The arguments of `dualcheck run` (after `dualcheck`) that run this
    /// configuration again with the schedule and schema in `files`. Every
    /// flag is stated, defaults included, so the line means the same
    /// whatever a later version's defaults are.
    pub fn run_args(&self, files: ReproFiles<'_>) -> Vec<String> {
        let mut a: Vec<String> = vec!["run".into()];
        let mut flag = |name: &str, value: String| {
            a.push(name.to_string());
            a.push(value);
        };
        match &self.app {
            RecordedApp::Builtin(name) => flag("--impl", name.clone()),
            RecordedApp::Exec(cmd) => {
                flag("--impl", "exec".into());
                flag("--cmd", cmd.clone());
            }
        }
        // Stated for a built-in too: its own query as recorded, whatever a
        // later version's built-in would bring.
        flag("--committed-sql", self.committed_sql.clone());
        flag(
            "--faults",
            if self.faults.is_empty() {
                "none".into()
            } else {
                self.faults.join(",")
            },
        );
        for c in &self.fault_cmds {
            flag("--fault-cmd", c.to_string());
        }
        flag("--duration", millis(self.duration_s));
        let w = &self.workload;
        flag("--seed", w.seed.to_string());
        flag("--rate", w.rate.to_string());
        flag("--concurrency", w.concurrency.to_string());
        flag("--keys", w.keys.to_string());
        flag("--skew", w.skew.to_string());
        flag("--payload", w.payload_bytes.to_string());
        flag("--abort-fraction", w.abort_fraction.to_string());
        flag("--long-fraction", w.long_fraction.to_string());
        flag("--long-hold-ms", w.long_hold_ms.to_string());
        if w.idle_window_ms > 0 {
            flag("--idle-window", format!("{}ms", w.idle_window_ms));
        }
        // Only when set: a one-event run's command reads as it always did.
        if !w.events_per_op.is_one() {
            flag("--events-per-op", w.events_per_op.to_string());
        }
        if w.keys_per_op > 1 {
            flag("--keys-per-op", w.keys_per_op.to_string());
        }
        if !w.write.is_single() {
            flag("--write", w.write.to_string());
        }
        if let Some(b) = self.max_retained_wal {
            flag("--max-retained-wal", b.to_string());
        }
        flag("--brokers", self.brokers.to_string());
        flag("--partitions", self.partitions.to_string());
        for (k, v) in &self.app_env {
            flag("--app-env", format!("{k}={v}"));
        }
        flag("--op-timeout", millis(self.op_timeout_s));
        flag("--start-timeout", millis(self.start_timeout_s));
        flag("--drain-timeout", millis(self.drain_timeout_s));
        flag("--deploy-grace", millis(self.deploy_grace_s));
        if self.replicas > 1 {
            flag("--replicas", self.replicas.to_string());
        }
        flag("--clock-offset", format!("{}ms", self.clock_offset_ms));
        if let Some(schema) = files.schema {
            flag("--schema", schema.display().to_string());
        }
        if let Some(t) = &self.template_options {
            a.extend(t.to_args());
        }
        if self.restart_before_drain {
            a.push("--restart-before-drain".into());
        }
        if self.exactly_once {
            a.push("--exactly-once".into());
        }
        if self.reads {
            a.push("--reads".into());
        }
        if self.backend != RecordedBackend::Local {
            a.extend(["--backend".into(), self.backend.flag_value().into()]);
        }
        a.extend(["--schedule".into(), files.schedule.display().to_string()]);
        a
    }

    /// [`RecordedConfig::run_args`] as one shell line, `dualcheck` first.
    pub fn run_line(&self, files: ReproFiles<'_>) -> String {
        let mut words = vec!["dualcheck".to_string()];
        words.extend(self.run_args(files));
        super::quote_line(&words)
    }

    /// The implementation variables set and not recorded (their values may
    /// be secrets): a replay cannot set them again.
    pub fn unrecorded_app_env(&self) -> Vec<&str> {
        self.app_env_names
            .iter()
            .filter(|n| !self.app_env.iter().any(|(k, _)| k == *n))
            .map(String::as_str)
            .collect()
    }
}

/// Seconds as a whole number of milliseconds with the unit (`1500ms`).
fn millis(secs: f64) -> String {
    format!("{}ms", (secs * 1000.0).round() as u64)
}

/// `environment.json`: the versions of the services a run used and its configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvironmentRecord {
    /// Versions of the services.
    #[serde(default)]
    pub versions: Versions,
    /// The configuration (absent in runs of the oldest versions).
    pub config: Option<RecordedConfig>,
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

impl EnvironmentRecord {
    /// Reads `environment.json` at `path`; errors name the file, and for a
    /// run written by an older dualcheck, say so.
    pub fn read(path: &Path) -> anyhow::Result<EnvironmentRecord> {
        use anyhow::Context;
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| {
            // serde names a field a record lacks as "missing field `NAME`": say
            // which field of the configuration, as a replay needs it.
            let message = e.to_string();
            match message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split_once('`'))
            {
                Some((field, _)) => anyhow::anyhow!(
                    "{} lacks `config.{field}`, needed to replay the run (written by an older dualcheck)",
                    path.display()
                ),
                None => anyhow::anyhow!(
                    "{} is not an environment record this dualcheck reads (written by an older version?): {message}",
                    path.display()
                ),
            }
        })
    }
}

/// The deploy grace of runs recorded before `--deploy-grace` existed.
fn one() -> usize {
    1
}

fn default_clock_offset_ms() -> i64 {
    5000
}

fn default_deploy_grace_s() -> f64 {
    10.0
}
