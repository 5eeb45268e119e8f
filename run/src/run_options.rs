//! The options of one run as a user states them (`dualcheck run`'s flags, as
//! plain data), and how they become a [`RunConfig`]. `run`, `compare` and
//! `bench` all go through [`RunOptions::to_config`], so a run is configured
//! (and its options checked, with errors naming the flag to change) one way.

use crate::app_process::AppCommand;
use crate::nemesis::Fault;
use crate::runner::RunConfig;
use crate::template::ResolveTemplate as _;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::Duration;
use workloads::Workload;

/// What a user asks of one run; [`RunOptions::new`] gives the defaults of
/// `dualcheck run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Implementation (see `dualcheck list`), or `exec` with [`RunOptions::cmd`].
    pub implementation: String,
    /// Comma-separated faults, or `none` (kept as written: the error names the unknown one).
    pub faults: String,
    /// Custom faults defined by shell commands (`--fault-cmd`), usable in [`RunOptions::faults`].
    pub fault_cmds: Vec<crate::nemesis::custom::CustomFault>,
    /// How long the workload runs.
    pub duration: Duration,
    /// The workload; its seed also seeds the fault schedule.
    pub workload: Workload,
    /// `--max-retained-wal`: a sample of a slot's retained WAL above this many
    /// bytes is a `wal_retained` violation (`None`: not judged).
    pub max_retained_wal: Option<u64>,
    /// Kafka brokers: 1, or 3.
    pub brokers: u8,
    /// Partitions of the topic.
    pub partitions: i32,
    /// Relay tasks of outbox implementations (`DUALCHECK_RELAYS`).
    pub relays: Option<usize>,
    /// Knobs of the implementation process, KEY=VALUE.
    pub app_vars: Vec<(String, String)>,
    /// Where run directories go.
    pub out: PathBuf,
    /// Program to run for `exec` (started with `sh -c`).
    pub cmd: Option<String>,
    /// Query returning the committed op ids (required for `exec`).
    pub committed_sql: Option<String>,
    /// SQL file run on the run's database before the implementation starts.
    pub schema: Option<PathBuf>,
    /// Timeout of one op.
    pub op_timeout: Duration,
    /// How long the implementation may take to answer HTTP after it starts.
    pub start_timeout: Duration,
    /// Longest drain after healing.
    pub drain_timeout: Duration,
    /// Restart the implementation once after the last heal, before the drain.
    pub restart_before_drain: bool,
    /// SIGTERM to SIGKILL in a deploy (`--deploy-grace`).
    pub deploy_grace: Duration,
    /// Instances of the implementation (`--replicas`).
    pub replicas: usize,
    /// How far `clock-skew` shifts an instance's clock, ms (`--clock-offset`).
    pub clock_offset_ms: i64,
    /// Count duplicates as violations too.
    pub exactly_once: bool,
    /// Read each key back after each acknowledged write (on anyway for
    /// patterns that read by default).
    pub reads: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// `exec` only: the service's own requests and record format
    /// (`--template FILE` and the template flags).
    pub template: crate::template::TemplateOptions,
    /// Which services: local (default), the user's (external) or containers.
    pub backend: services::BackendKind,
}

impl RunOptions {
    /// The defaults of `dualcheck run --impl IMPLEMENTATION`: those of
    /// [`RunConfig::new`], where they are stated once.
    pub fn new(implementation: &str) -> RunOptions {
        let defaults = RunConfig::new(AppCommand::Exec(String::new()), "");
        RunOptions {
            implementation: implementation.to_string(),
            faults: "none".into(),
            fault_cmds: Vec::new(),
            duration: defaults.duration,
            workload: defaults.workload,
            max_retained_wal: defaults.max_retained_wal,
            brokers: defaults.brokers as u8,
            partitions: defaults.partitions,
            relays: None,
            app_vars: defaults.app_vars,
            out: defaults.out_dir,
            cmd: None,
            committed_sql: None,
            schema: None,
            op_timeout: defaults.op_timeout,
            start_timeout: defaults.start_timeout,
            drain_timeout: defaults.drain_timeout,
            restart_before_drain: defaults.restart_before_drain,
            deploy_grace: defaults.deploy_grace,
            replicas: defaults.replicas,
            clock_offset_ms: defaults.clock_offset_ms,
            exactly_once: defaults.exactly_once,
            reads: false,
            progress: defaults.progress,
            template: Default::default(),
            backend: defaults.backend,
        }
    }

    /// The run configuration these options describe; errors say what to change.
    pub fn to_config(&self) -> Result<RunConfig> {
        crate::nemesis::custom::define(&self.fault_cmds)?;
        let faults = Fault::parse_list(&self.faults)?;
        let template = self.template.resolve()?;
        if self.template.is_given() && self.implementation != "exec" {
            bail!("--template and the request, read and record flags go with --impl exec only (a built-in speaks the contract)");
        }
        let (app, committed_sql) = if self.implementation == "exec" {
            let cmd = self
                .cmd
                .clone()
                .context("--impl exec needs --cmd 'PROGRAM ARGS' (the service to test)")?;
            let sql = self.committed_sql.clone().context(
                "--impl exec needs --committed-sql 'SELECT op FROM ...' (how the harness reads which ops committed)",
            )?;
            (AppCommand::Exec(cmd), sql)
        } else {
            if self.cmd.is_some() {
                bail!("--cmd goes with --impl exec only");
            }
            let info = implementations::lookup(&self.implementation)?;
            // A mutant never silently runs the correct code: refused before anything starts.
            implementations::expect::check_bug(info, &self.app_vars)
                .map_err(|e| anyhow::anyhow!("--app-env / --impls knob: {e}"))?;
            let sql = self
                .committed_sql
                .clone()
                .unwrap_or_else(|| info.committed_sql.to_string());
            (AppCommand::Builtin(info.name.to_string()), sql)
        };
        let schema_sql = match &self.schema {
            Some(p) => Some(std::fs::read_to_string(p).with_context(|| format!("reading --schema {}", p.display()))?),
            None => None,
        };
        self.workload.validate().map_err(anyhow::Error::msg)?;
        self.workload.validate_idle(self.duration).map_err(anyhow::Error::msg)?;
        if self.max_retained_wal == Some(0) {
            bail!("--max-retained-wal must be more than 0 bytes (e.g. 64MiB)");
        }
        if self.partitions < 1 {
            bail!("--partitions must be at least 1");
        }
        let mut cfg = RunConfig::new(app, &committed_sql);
        cfg.schema_sql = schema_sql;
        self.backend.check_usable(&faults)?;
        cfg.faults = faults;
        cfg.backend = self.backend.clone();
        cfg.duration = self.duration;
        cfg.workload = self.workload.clone();
        cfg.max_retained_wal = self.max_retained_wal;
        cfg.brokers = self.brokers as usize;
        cfg.partitions = self.partitions;
        if let Some(r) = self.relays {
            cfg.app_vars.push(("DUALCHECK_RELAYS".into(), r.to_string()));
        }
        cfg.app_vars.extend(self.app_vars.iter().cloned());
        cfg.out_dir = self.out.clone();
        cfg.op_timeout = self.op_timeout;
        cfg.start_timeout = self.start_timeout;
        cfg.drain_timeout = self.drain_timeout;
        cfg.exactly_once = self.exactly_once;
        cfg.restart_before_drain = self.restart_before_drain;
        cfg.deploy_grace = self.deploy_grace;
        cfg.replicas = self.replicas;
        cfg.clock_offset_ms = self.clock_offset_ms;
        crate::runner::check_runnable(&cfg)?;
        cfg.reads |= self.reads;
        cfg.progress = self.progress;
        if let Some(request) = &template.request {
            if !request.can_roll_back() {
                // The service cannot be asked to roll back: no aborts.
                cfg.workload.abort_fraction = 0.0;
            }
        }
        cfg.reads |= template.read.is_some();
        if cfg.reads && template.request.is_some() && template.read.is_none() {
            bail!("--reads with a request template needs --read-path and --read-seq (the service's read endpoint)");
        }
        cfg.template = template;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_lists_parse_and_explain() {
        assert_eq!(Fault::parse_list("none").unwrap(), vec![]);
        assert_eq!(
            Fault::parse_list("pg-kill, kafka-partition").unwrap(),
            vec![Fault::KafkaPartition, Fault::PgKill]
        );
        let e = Fault::parse_list("pg-kill,meteor").unwrap_err().to_string();
        assert!(
            e.contains("unknown fault `meteor`") && e.contains("kafka-leader"),
            "{e}"
        );
        for f in Fault::all() {
            assert_eq!(Fault::from_name(f.name()).unwrap(), f);
        }
    }

    #[test]
    fn options_become_the_configuration_or_say_what_to_change() {
        let mut o = RunOptions::new("outbox-poll");
        o.relays = Some(3);
        o.app_vars.push(("DUALCHECK_X".into(), "1".into()));
        o.faults = "kafka-partition".into();
        let c = o.to_config().unwrap();
        assert_eq!(c.faults, vec![Fault::KafkaPartition]);
        assert_eq!(
            c.app_vars,
            vec![
                ("DUALCHECK_RELAYS".to_string(), "3".to_string()),
                ("DUALCHECK_X".to_string(), "1".to_string())
            ]
        );
        assert_eq!(
            c.committed_sql,
            implementations::lookup("outbox-poll").unwrap().committed_sql
        );
        let e = RunOptions::new("exec").to_config().unwrap_err().to_string();
        assert!(e.contains("--cmd"), "{e}");
        let mut o = RunOptions::new("outbox-poll");
        o.partitions = 0;
        assert!(o.to_config().unwrap_err().to_string().contains("--partitions"));
    }
}
