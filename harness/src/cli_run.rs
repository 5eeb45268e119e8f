//! `dualcheck run` and `dualcheck list`.

use crate::app_process::AppCommand;
use crate::cli_check::{EXIT_ANOMALIES, EXIT_UNUSABLE, EXIT_VALID};
use crate::nemesis::Fault;
use crate::runner::{RunConfig, RunOutcome};
use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::time::Duration;
use workloads::{Skew, Workload};

/// Arguments of `dualcheck run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Implementation (see `dualcheck list`), or `exec` with --cmd.
    #[arg(long = "impl", value_name = "NAME")]
    pub implementation: String,
    /// Comma-separated faults (see `dualcheck list`), or `none`.
    #[arg(long, default_value = "none")]
    pub faults: String,
    /// Workload duration, e.g. `30s`, `2m`, `500ms`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seed of the workload and of the fault schedule.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print one JSON object (the results) instead of the summary.
    #[arg(long)]
    pub json: bool,
    /// Target ops per second over all workers (0 = unlimited).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Worker tasks (each owns a share of the keys).
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Distinct business keys.
    #[arg(long, default_value_t = 32)]
    pub keys: usize,
    /// Key choice: `uniform`, `zipf` or `zipf:EXPONENT`.
    #[arg(long, default_value = "uniform")]
    pub skew: Skew,
    /// Payload bytes per op.
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// Fraction of business transactions that abort on purpose.
    #[arg(long, default_value_t = 0.05)]
    pub abort_fraction: f64,
    /// Fraction of long transactions.
    #[arg(long, default_value_t = 0.05)]
    pub long_fraction: f64,
    /// How long a long transaction holds before committing (ms).
    #[arg(long, default_value_t = 300)]
    pub long_hold_ms: u64,
    /// Kafka brokers: 1, or 3 (chosen automatically for kafka-leader).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub brokers: u8,
    /// Partitions of the topic.
    #[arg(long, default_value_t = 4)]
    pub partitions: i32,
    /// Relay tasks of outbox implementations (DUALCHECK_RELAYS).
    #[arg(long)]
    pub relays: Option<usize>,
    /// Sets a knob of the implementation process, KEY=VALUE (repeatable; `dualcheck list` shows them),
    /// e.g. `--app-env DUALCHECK_CDC_CONFIRM=early`.
    #[arg(long = "app-env", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub app_env: Vec<(String, String)>,
    /// Where run directories go.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Program to run for `--impl exec` (started with `sh -c`).
    #[arg(long)]
    pub cmd: Option<String>,
    /// Query returning the committed op ids (required for `--impl exec`).
    #[arg(long)]
    pub committed_sql: Option<String>,
    /// SQL file run on the run's database before the implementation starts.
    #[arg(long)]
    pub schema: Option<PathBuf>,
    /// Timeout of one op (a timeout is recorded as `info`), e.g. `5s`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub op_timeout: Duration,
    /// How long the implementation may take to answer HTTP after it starts, e.g. `60s`.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub start_timeout: Duration,
    /// Longest drain after healing, e.g. `60s`.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Count duplicates (same event id) as violations too.
    #[arg(long)]
    pub exactly_once: bool,
    /// Read each key back (`GET /ops/{key}`) right after each acknowledged
    /// write and judge `stale_read` (on by default for listen-to-yourself and kafka-first).
    #[arg(long)]
    pub reads: bool,
}

/// Parses `500ms`, `30s`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad duration `{s}`: write it like 500ms, 30s, 2m or 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in `{s}`: use ms, s, m or h")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration `{s}` must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

impl RunArgs {
    /// The run configuration these arguments describe; errors say what to change.
    pub fn to_config(&self) -> Result<RunConfig> {
        let faults = Fault::parse_list(&self.faults)?;
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
        let workload = Workload {
            seed: self.seed,
            rate: self.rate,
            concurrency: self.concurrency,
            keys: self.keys,
            skew: self.skew,
            payload_bytes: self.payload,
            abort_fraction: self.abort_fraction,
            long_fraction: self.long_fraction,
            long_hold_ms: self.long_hold_ms,
        };
        workload.validate().map_err(anyhow::Error::msg)?;
        if self.partitions < 1 {
            bail!("--partitions must be at least 1");
        }
        let mut cfg = RunConfig::new(app, &committed_sql);
        cfg.schema_sql = schema_sql;
        cfg.faults = faults;
        cfg.duration = self.duration;
        cfg.workload = workload;
        cfg.brokers = self.brokers as usize;
        cfg.partitions = self.partitions;
        if let Some(r) = self.relays {
            cfg.app_env.push(("DUALCHECK_RELAYS".into(), r.to_string()));
        }
        cfg.app_env.extend(self.app_env.iter().cloned());
        cfg.out_dir = self.out.clone();
        cfg.op_timeout = self.op_timeout;
        cfg.start_timeout = self.start_timeout;
        cfg.drain_timeout = self.drain_timeout;
        cfg.exactly_once = self.exactly_once;
        cfg.reads |= self.reads;
        cfg.progress = !self.json;
        Ok(cfg)
    }
}

/// Runs `dualcheck run`; returns the exit code.
pub fn run(args: RunArgs) -> u8 {
    // librdkafka's connection errors are expected under faults: not for the user's terminal.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,librdkafka=off,rdkafka=off")),
        )
        .try_init();
    let cfg = match args.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dualcheck run: {e:#}");
            return EXIT_UNUSABLE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dualcheck run: starting the runtime: {e}");
            return EXIT_UNUSABLE;
        }
    };
    match rt.block_on(crate::runner::run(cfg)) {
        Ok(outcome) => {
            if args.json {
                println!("{}", serde_json::to_string(&outcome).expect("results serialize"));
            } else {
                print!("{}", summary(&outcome));
            }
            if outcome.result.valid {
                EXIT_VALID
            } else {
                EXIT_ANOMALIES
            }
        }
        Err(e) => {
            eprintln!("dualcheck run: {e:#}");
            EXIT_UNUSABLE
        }
    }
}

/// The readable verdict of a run.
pub fn summary(o: &RunOutcome) -> String {
    let mut s = format!(
        "{} with faults [{}], seed {}, {:.1} s: {:.1} ok ops/s\n",
        o.implementation,
        o.faults.join(","),
        o.seed,
        o.duration_s,
        o.throughput_ok_per_s
    );
    s.push_str(&crate::cli_check::summary(&o.result));
    if !o.drained {
        s.push_str("warning: the drain timed out with events still unpublished\n");
    }
    for e in &o.nemesis_errors {
        s.push_str(&format!("nemesis: {e}\n"));
    }
    if let Some(d) = &o.in_doubt {
        s.push_str(&format!(
            "in doubt: {} prepared transaction(s) left unresolved, longest unresolved {} ms ({} seen; recovery committed {}, rolled back {})\n",
            d.unresolved, d.max_unresolved_ms, d.prepared_seen, d.recovered_commit, d.recovered_rollback
        ));
        for e in &d.recovery_errors {
            s.push_str(&format!("in-doubt recovery: {e}\n"));
        }
    }
    s.push_str(&format!("run directory: {}\n", o.run_dir.display()));
    s
}

/// Arguments of `dualcheck list`.
#[derive(Args, Debug)]
pub struct ListArgs {}

/// Prints implementations, faults and workload options, one line of help each.
pub fn list(_: ListArgs) -> u8 {
    println!("implementations (--impl):");
    for p in implementations::REGISTRY {
        println!("  {:<22} {} [expected: {}]", p.name, p.about, p.expected);
    }
    println!(
        "  {:<22} your own program: --cmd '...' --committed-sql '...' [whatever it deserves]",
        "exec"
    );
    println!("\nfaults (--faults a,b,c):");
    for f in Fault::all() {
        println!("  {:<22} {}", f.name(), f.help());
    }
    println!("\nworkload options (dualcheck run):");
    for (opt, help) in [
        ("--duration D", "how long the workload runs (30s)"),
        ("--seed N", "seeds the workload and the fault schedule (0)"),
        ("--rate R", "ops per second over all workers, 0 = unlimited (100)"),
        ("--concurrency N", "worker tasks, each owning a share of the keys (8)"),
        ("--keys N", "distinct business keys (32)"),
        ("--skew S", "uniform, zipf or zipf:EXPONENT (uniform)"),
        ("--payload BYTES", "payload size per op (64)"),
        (
            "--abort-fraction F",
            "business transactions that roll back on purpose (0.05)",
        ),
        (
            "--long-fraction F",
            "long transactions holding their id before commit (0.05)",
        ),
        ("--long-hold-ms MS", "how long a long transaction holds (300)"),
        ("--brokers 1|3", "Kafka brokers (1; 3 for kafka-leader)"),
        ("--partitions N", "partitions of the topic (4)"),
        ("--relays N", "relay tasks of outbox implementations"),
        (
            "--reads",
            "read each key back after each ok write (stale_read); default for listen-to-yourself, kafka-first",
        ),
        ("--app-env KEY=VALUE", "a knob of the implementation process (below)"),
    ] {
        println!("  {opt:<22} {help}");
    }
    println!(
        "\nimplementation process knobs (environment of `dualcheck app`):\n{}",
        crate::app::knobs_help()
    );
    0
}

/// `KEY=VALUE` of `--app-env`.
fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
            Ok((k.to_string(), v.to_string()))
        }
        _ => Err(format!(
            "`{s}` is not KEY=VALUE (e.g. DUALCHECK_CDC_CONFIRM=early; `dualcheck list` shows the knobs)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_explain() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("10 parsecs").unwrap_err().contains("unit"));
        assert!(parse_duration("abc").unwrap_err().contains("500ms"));
        assert!(parse_duration("0s").is_err());
    }

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
}
