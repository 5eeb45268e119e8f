//! `dualcheck run` and `dualcheck list`.

use super::{parse_clock_offset, parse_duration, Verdict};
use clap::Args;
use dualcheck::nemesis::{Fault, FaultFamily};
use dualcheck::run_options::RunOptions;
use dualcheck::template::TemplateOptions;
use std::path::{Path, PathBuf};
use std::time::Duration;
use workloads::{EventsPerOp, Skew, Workload, WriteShape};

/// Arguments of `dualcheck run`.
#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Implementation (see `dualcheck list`), or `exec`: your own program, given with --cmd and
    /// --committed-sql (and, for a service as it is, the service template flags).
    #[arg(long = "impl", value_name = "NAME", required_unless_present = "replay")]
    pub implementation: Option<String>,
    /// Replay a recorded run: the same implementation, knobs, seed, workload
    /// and fault windows at the same offsets, from RUN_DIR's environment.json
    /// and schedule.json. Only --out, --json, --schedule and the services'
    /// settings apply besides (--backend, --pg-url, --kafka-bootstrap,
    /// --toxiproxy-url, --config, or their DUALCHECK_* variables and
    /// dualcheck.toml, as for any run): the replay runs on those services
    /// (local by default), not on the backend recorded.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "implementation")]
    pub replay: Option<PathBuf>,
    /// Follow this fault schedule (a schedule.json, e.g. edited by hand or
    /// written by `dualcheck shrink`) instead of generating one from the seed.
    /// Its faults must be among --faults.
    #[arg(long, value_name = "FILE")]
    pub schedule: Option<PathBuf>,
    /// Comma-separated faults and fault families (`network`, `process`, `cluster`, `schema`;
    /// see `dualcheck list`) and custom faults defined with --fault-cmd (`custom`: all of them), or `none`.
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
    /// Where run directories go.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Workload, environment and implementation options (shared with `dualcheck sweep`).
    #[command(flatten)]
    pub options: RunShared,
}

/// The options of a run that `dualcheck run` and `dualcheck sweep` share:
/// the workload, the environment, the implementation's knobs and timeouts.
#[derive(Args, Debug, Clone)]
pub struct RunShared {
    /// Target ops per second over all workers (0 = unlimited).
    #[arg(long, default_value_t = Workload::default().rate)]
    pub rate: f64,
    /// Worker tasks (each owns a share of the keys).
    #[arg(long, default_value_t = Workload::default().concurrency)]
    pub concurrency: usize,
    /// Distinct business keys.
    #[arg(long, default_value_t = Workload::default().keys)]
    pub keys: usize,
    /// Key choice: `uniform`, `zipf` or `zipf:EXPONENT`.
    #[arg(long, default_value = "uniform")]
    pub skew: Skew,
    /// Payload bytes per op.
    #[arg(long, default_value_t = Workload::default().payload_bytes)]
    pub payload: usize,
    /// Fraction of business transactions that abort on purpose.
    #[arg(long, default_value_t = Workload::default().abort_fraction)]
    pub abort_fraction: f64,
    /// Fraction of long transactions.
    #[arg(long, default_value_t = Workload::default().long_fraction)]
    pub long_fraction: f64,
    /// How long a long transaction holds before committing (ms).
    #[arg(long, default_value_t = Workload::default().long_hold_ms)]
    pub long_hold_ms: u64,
    /// Events one op's transaction publishes: a count (`5`), a range (`2-10`)
    /// or a skewed count (`zipf:MAX[:EXPONENT]`: mostly few, now and then many).
    #[arg(long, value_name = "N|A-B|zipf:MAX", default_value = "1")]
    pub events_per_op: EventsPerOp,
    /// Over how many of its worker's keys an op's events are spread.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub keys_per_op: usize,
    /// How a transaction writes its rows: `single` (one INSERT per row),
    /// `multi-row` (one INSERT of all rows) or `copy` (COPY FROM STDIN).
    #[arg(long, value_name = "SHAPE", default_value = "single")]
    pub write: WriteShape,
    /// For this long in the middle of the run the workload writes nothing to the
    /// tables the pattern captures while the harness writes filler rows to an
    /// uncaptured table (`dualcheck_idle_traffic`), e.g. `10s` (docs/faults.md#idle-window).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub idle_window: Option<Duration>,
    /// Judge the WAL a replication slot of the run retains: a sample above this
    /// (e.g. `64MiB`, `500MB`, `1048576`) is a `wal_retained` violation.
    #[arg(long, value_name = "BYTES", value_parser = dualcheck::ops_series::parse_bytes)]
    pub max_retained_wal: Option<u64>,
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
    pub app_vars: Vec<(String, String)>,
    /// Defines a custom fault NAME, usable in --faults, from shell commands run with `sh -c`:
    /// START_CMD when it starts, STOP_CMD (after the first `,`; optional) when it stops
    /// (repeatable), e.g. `--fault-cmd 'pg-docker-pause=docker pause pg,docker unpause pg'`.
    #[arg(long = "fault-cmd", value_name = "NAME=START_CMD[,STOP_CMD]")]
    pub fault_cmds: Vec<dualcheck::nemesis::custom::CustomFault>,
    /// Program to run for `--impl exec`, started with `sh -c` (refused with a built-in implementation).
    #[arg(long)]
    pub cmd: Option<String>,
    /// Query returning the committed op ids: required for `--impl exec`; with a built-in
    /// implementation it replaces the pattern's own.
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
    /// Restart the implementation once after the last heal, before the
    /// drain, as an operator's deploy would: ops delivered only after it are
    /// counted (`delivered_after_restart`), apart from those never delivered.
    #[arg(long)]
    pub restart_before_drain: bool,
    /// How long a deploy waits after SIGTERM before SIGKILL (the restart
    /// before the drain and the `rolling-restart` fault), e.g. `10s`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub deploy_grace: Duration,
    /// Instances of the implementation, each on its own port with (where
    /// the pattern lets it) its own relay; ops spread over them and reads go
    /// to another instance than their write. A pattern that runs as one
    /// instance only exits 2 with the reason (`dualcheck list`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub replicas: u16,
    /// How far the `clock-skew` fault shifts one instance's wall clock,
    /// e.g. `5s` (ahead) or `-2s` (behind; write `--clock-offset=-2s`).
    #[arg(long, default_value = "5s", value_parser = parse_clock_offset, allow_hyphen_values = true)]
    pub clock_offset: i64,
    /// Count duplicates (same event id) as violations too.
    #[arg(long)]
    pub exactly_once: bool,
    /// Read each key back (`GET /ops/{key}`) right after each acknowledged
    /// write and judge `stale_read` (on by default for listen-to-yourself and kafka-first).
    #[arg(long)]
    pub reads: bool,
    /// The service's own requests and records (`--impl exec` without an adapter).
    #[command(flatten)]
    pub template: TemplateArgs,
    /// Which services: local, external or testcontainers.
    #[command(flatten)]
    pub backend: super::env::BackendArgs,
}

/// The help heading of the service template flags, which go with `exec` only
/// (a built-in implementation refuses them).
pub const TEMPLATE_HEADING: &str = "Service template (--impl exec)";

/// Verifying a service as it is (`--impl exec`): its own write request, read
/// request and record format (docs/http-contract.md#templates).
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = TEMPLATE_HEADING)]
pub struct TemplateArgs {
    /// TOML file with the keys below ([request] method, path, body, headers, ok, fail, rollback;
    /// [read] path, seq; [backlog] path, count; [records] op, seq, event, key_is_business_key); flags override it.
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// Method of the write endpoint (POST).
    #[arg(long, value_name = "METHOD")]
    pub request_method: Option<String>,
    /// Path (and query) of the write endpoint; placeholders {op} {key} {seq} {payload}.
    #[arg(long, value_name = "PATH")]
    pub request_path: Option<String>,
    /// JSON body with placeholders, e.g. '{"customerId":"{key}","reference":"{op}"}'.
    #[arg(long, value_name = "JSON")]
    pub request_body: Option<String>,
    /// JSON of one event of a multi-event op, with {op} {key} {seq} {index}
    /// {payload}: the body's {events} is the array of these, one per event.
    #[arg(long, value_name = "JSON")]
    pub request_event: Option<String>,
    /// A header with placeholders, e.g. 'Idempotency-Key: {op}' (repeatable; replaces the file's).
    #[arg(long = "request-header", value_name = "NAME: VALUE")]
    pub request_headers: Vec<String>,
    /// Statuses meaning ok, e.g. 2xx or 200,201 (2xx).
    #[arg(long, value_name = "STATUSES")]
    pub ok_status: Option<String>,
    /// Statuses meaning certainly not applied (4xx); any other answer is unknown.
    #[arg(long, value_name = "STATUSES")]
    pub fail_status: Option<String>,
    /// How a rollback is asked for: none (no aborts are sent), 'header:NAME: VALUE' or field:/POINTER=JSON.
    #[arg(long, value_name = "HOW")]
    pub rollback: Option<String>,
    /// Path of the read endpoint (with {key}); with --read-seq it turns reads on (as --reads does).
    #[arg(long, value_name = "PATH")]
    pub read_path: Option<String>,
    /// JSON pointer to the seq in the read's answer, e.g. /lineNo.
    #[arg(long, value_name = "POINTER")]
    pub read_seq: Option<String>,
    /// The service's endpoint counting events not yet published (GET; the drain waits for 0).
    #[arg(long, value_name = "PATH")]
    pub backlog_path: Option<String>,
    /// JSON pointer to that count in its answer, e.g. /pending.
    #[arg(long, value_name = "POINTER")]
    pub backlog_count: Option<String>,
    /// A query on the run's database counting events not yet published (one
    /// integer), used like GET /backlog: for a library that serves no
    /// backlog endpoint, e.g. "SELECT count(*) FROM outbox WHERE sent_at IS NULL".
    #[arg(long, value_name = "SQL")]
    pub backlog_sql: Option<String>,
    /// Where the op id is in a record: a JSON pointer into the value (e.g. /reference) or header:NAME.
    #[arg(long, value_name = "POINTER")]
    pub record_op: Option<String>,
    /// Where the seq is in a record (pointer or header:NAME).
    #[arg(long, value_name = "POINTER")]
    pub record_seq: Option<String>,
    /// Where the event id is in a record (pointer or header:NAME).
    #[arg(long, value_name = "POINTER")]
    pub record_event: Option<String>,
    /// Where the event's index among its op's events is in a record (pointer
    /// or header:NAME; multi-event ops); absent: the `index` field, else 0.
    #[arg(long, value_name = "POINTER")]
    pub record_index: Option<String>,
    /// Whether the record key is the business key (true); false: per-key order is not judged.
    #[arg(long, value_name = "true|false")]
    pub record_key_is_business_key: Option<bool>,
}

impl TemplateArgs {
    /// The library's template options.
    pub fn options(&self) -> TemplateOptions {
        TemplateOptions {
            file: self.template.clone(),
            request_method: self.request_method.clone(),
            request_path: self.request_path.clone(),
            request_body: self.request_body.clone(),
            request_event: self.request_event.clone(),
            request_headers: self.request_headers.clone(),
            ok_status: self.ok_status.clone(),
            fail_status: self.fail_status.clone(),
            rollback: self.rollback.clone(),
            read_path: self.read_path.clone(),
            read_seq: self.read_seq.clone(),
            backlog_path: self.backlog_path.clone(),
            backlog_count: self.backlog_count.clone(),
            backlog_sql: self.backlog_sql.clone(),
            record_op: self.record_op.clone(),
            record_seq: self.record_seq.clone(),
            record_event: self.record_event.clone(),
            record_index: self.record_index.clone(),
            record_key_is_business_key: self.record_key_is_business_key,
        }
    }
}

impl RunShared {
    /// The library's options with these settings; implementation, faults,
    /// duration, seed and output directory as given.
    pub fn options(&self, implementation: &str, faults: &str, duration: Duration, seed: u64, out: &Path) -> RunOptions {
        RunOptions {
            implementation: implementation.to_string(),
            faults: faults.to_string(),
            fault_cmds: self.fault_cmds.clone(),
            duration,
            workload: Workload {
                seed,
                rate: self.rate,
                concurrency: self.concurrency,
                keys: self.keys,
                skew: self.skew,
                payload_bytes: self.payload,
                abort_fraction: self.abort_fraction,
                long_fraction: self.long_fraction,
                long_hold_ms: self.long_hold_ms,
                idle_window_ms: self.idle_window.map_or(0, |d| d.as_millis() as u64),
                events_per_op: self.events_per_op,
                keys_per_op: self.keys_per_op,
                write: self.write,
            },
            max_retained_wal: self.max_retained_wal,
            brokers: self.brokers,
            partitions: self.partitions,
            relays: self.relays,
            app_vars: self.app_vars.clone(),
            out: out.to_path_buf(),
            cmd: self.cmd.clone(),
            committed_sql: self.committed_sql.clone(),
            schema: self.schema.clone(),
            op_timeout: self.op_timeout,
            start_timeout: self.start_timeout,
            drain_timeout: self.drain_timeout,
            restart_before_drain: self.restart_before_drain,
            deploy_grace: self.deploy_grace,
            replicas: self.replicas as usize,
            clock_offset_ms: self.clock_offset,
            exactly_once: self.exactly_once,
            reads: self.reads,
            progress: false,
            template: self.template.options(),
            // Resolved apart (it reads the environment and dualcheck.toml): see `BackendArgs::resolve`.
            backend: dualcheck::env::BackendKind::Local,
        }
    }
}

impl RunArgs {
    /// The library's options of the run these arguments ask for.
    pub fn options(&self) -> RunOptions {
        let mut o = self.options.options(
            self.implementation.as_deref().unwrap_or_default(),
            &self.faults,
            self.duration,
            self.seed,
            &self.out,
        );
        o.progress = !self.json;
        o
    }
}

/// The run configuration of `args`: the recorded one (`--replay`) or the
/// flags', with the explicit schedule of `--schedule`.
fn config(args: &RunArgs) -> anyhow::Result<dualcheck::runner::RunConfig> {
    let mut cfg = match &args.replay {
        Some(dir) => {
            let mut cfg = dualcheck::replay::config_from_run_dir(dir, &args.out)?;
            cfg.progress = !args.json;
            cfg
        }
        None => {
            let mut o = args.options();
            o.backend = args.options.backend.resolve()?;
            o.to_config()?
        }
    };
    if args.replay.is_some() {
        let backend = args.options.backend.resolve()?;
        backend.check_usable(&cfg.faults)?;
        cfg.backend = backend;
    }
    if let Some(file) = &args.schedule {
        let schedule = dualcheck::replay::read_schedule(file)?;
        if let Some(s) = schedule.steps.iter().find(|s| !cfg.faults.contains(&s.fault)) {
            anyhow::bail!(
                "{} has `{}`, which is not among --faults (add it: the faults decide the brokers)",
                file.display(),
                s.fault.name()
            );
        }
        cfg.schedule = Some(schedule);
    }
    Ok(cfg)
}

/// Runs `dualcheck run`: valid, anomalies, or a run that could not be carried out.
pub fn run(args: RunArgs) -> Verdict {
    let cfg = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dualcheck run: {e:#}");
            return Verdict::Unusable;
        }
    };
    let rt = match super::runtime("run") {
        Ok(rt) => rt,
        Err(v) => return v,
    };
    match rt.block_on(dualcheck::runner::run(cfg)) {
        Ok(outcome) => {
            if args.json {
                println!("{}", serde_json::to_string(&outcome).expect("results serialize"));
            } else {
                print!("{}", dualcheck::summary::run_outcome(&outcome));
            }
            Verdict::of_check(outcome.result.verdict)
        }
        Err(e) => {
            eprintln!("dualcheck run: {e:#}");
            Verdict::Unusable
        }
    }
}

/// Arguments of `dualcheck list`.
#[derive(Args, Debug)]
pub struct ListArgs {}

/// Prints what a pattern cannot run: several instances, ops of several events.
fn print_limits(p: &implementations::PatternInfo) {
    match p.scaling {
        implementations::Scaling::Replicated => {}
        implementations::Scaling::OneRelay(why) => {
            println!(
                "  {:<22}   --replicas: the services scale, one relay process ({why})",
                ""
            )
        }
        implementations::Scaling::Single(why) => println!("  {:<22}   --replicas: one instance only ({why})", ""),
    }
    if let implementations::MultiEvent::Refused(why) = p.multi_event {
        println!("  {:<22}   --events-per-op: one event per op only ({why})", "");
    }
}

/// Prints implementations, faults and workload options, one line of help each.
pub fn list(_: ListArgs) -> Verdict {
    println!("implementations (--impl):");
    for p in implementations::REGISTRY {
        println!("  {:<22} {}", p.name, p.about);
        println!(
            "  {:<22}   expected: {}",
            "",
            implementations::expect::describe(p.expect)
        );
        print_limits(p);
        for c in p.controls {
            println!(
                "  {:<22}   with {}={} (negative control `{}`, zoo faults {}): {}",
                "",
                c.knob,
                c.value,
                c.name,
                c.faults,
                implementations::expect::describe(c.expect)
            );
        }
    }
    println!(
        "  {:<22} your own program: --cmd '...' --committed-sql '...' [--template FILE: its own API and events]",
        "exec"
    );
    println!("\nfaults (--faults a,b,c):");
    for f in Fault::all() {
        println!("  {:<22} {}", f.name(), f.help());
    }
    println!("\nfault families (anywhere a fault list goes; a family stands for its faults):");
    for family in FaultFamily::all() {
        let faults: Vec<&str> = family.faults().map(Fault::name).collect();
        println!("  {:<22} {} ({})", family.name(), family.help(), faults.join(", "));
    }
    println!(
        "  {:<22} {} (none until defined; run, sweep and compare take them, zoo and gate run none)",
        FaultFamily::Custom.name(),
        FaultFamily::Custom.help()
    );
    println!("\nworkload options (dualcheck run):");
    let rows = workload_rows();
    let width = rows.iter().map(|(opt, _)| opt.len()).max().unwrap_or(0);
    for (opt, help) in rows {
        println!("  {opt:<width$}  {help}");
    }
    println!(
        "\nimplementation process knobs (environment of `dualcheck app`):\n{}",
        super::app::knobs_help()
    );
    Verdict::Valid
}

/// The workload options `dualcheck list` shows, each with what it does and
/// its default as the library states it (`RunOptions::new`), never retyped here.
fn workload_rows() -> Vec<(&'static str, String)> {
    let d = RunOptions::new("exec");
    let w = &d.workload;
    vec![
        ("--duration D", format!("how long the workload runs ({:?})", d.duration)),
        (
            "--seed N",
            format!("seeds the workload and the fault schedule ({})", w.seed),
        ),
        (
            "--rate R",
            format!("ops per second over all workers, 0 = unlimited ({})", w.rate),
        ),
        (
            "--concurrency N",
            format!("worker tasks, each owning a share of the keys ({})", w.concurrency),
        ),
        ("--keys N", format!("distinct business keys ({})", w.keys)),
        ("--skew S", format!("uniform, zipf or zipf:EXPONENT ({})", w.skew)),
        ("--payload BYTES", format!("payload size per op ({})", w.payload_bytes)),
        (
            "--abort-fraction F",
            format!("business transactions that roll back on purpose ({})", w.abort_fraction),
        ),
        (
            "--long-fraction F",
            format!("long transactions holding their id before commit ({})", w.long_fraction),
        ),
        (
            "--long-hold-ms MS",
            format!("how long a long transaction holds ({})", w.long_hold_ms),
        ),
        (
            "--events-per-op N|A-B|zipf:MAX",
            format!("events one op's transaction publishes ({})", w.events_per_op),
        ),
        (
            "--keys-per-op N",
            format!("keys an op's events are spread over ({})", w.keys_per_op),
        ),
        (
            "--write SHAPE",
            format!(
                "single, multi-row or copy: how a transaction writes its rows ({})",
                w.write
            ),
        ),
        (
            "--idle-window D",
            "no writes to the captured tables for D mid-run; filler WAL on an uncaptured table".into(),
        ),
        (
            "--max-retained-wal BYTES",
            "a slot retaining more WAL (64MiB, 1GB, ...) is a wal_retained violation".into(),
        ),
        (
            "--brokers 1|3",
            format!("Kafka brokers ({}; 3 for kafka-leader)", d.brokers),
        ),
        ("--partitions N", format!("partitions of the topic ({})", d.partitions)),
        ("--relays N", "relay tasks of outbox implementations".into()),
        (
            "--reads",
            "read each key back after each ok write (stale_read); default for listen-to-yourself, kafka-first".into(),
        ),
        (
            "--app-env KEY=VALUE",
            "a knob of the implementation process (below)".into(),
        ),
    ]
}

/// `KEY=VALUE` of `--app-env`.
pub(super) fn parse_key_value(s: &str) -> Result<(String, String), String> {
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
    use clap::Parser;

    #[derive(Parser)]
    struct RunOnly {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn the_flags_defaults_are_the_librarys() {
        let args = RunOnly::try_parse_from(["run", "--impl", "outbox-poll", "--json"])
            .unwrap()
            .run;
        assert_eq!(
            format!("{:?}", args.options()),
            format!("{:?}", RunOptions::new("outbox-poll"))
        );
    }

    /// The line a shrink prints is parsed by this very CLI, and the run it
    /// asks for must be the shrunk candidate's configuration, field by field
    /// (the record is the whole configuration a run keeps).
    #[test]
    fn a_shrinks_printed_line_runs_the_shrunk_configuration() {
        use dualcheck::nemesis::Fault;
        use dualcheck::record::ReproFiles;
        use dualcheck::shrink::{run_command, Candidate, Window};
        let dir = tempfile::tempdir().unwrap();
        let template = dir.path().join("template.toml");
        std::fs::write(
            &template,
            "[request]\npath = \"/orders\"\nbody = '{\"customerId\":\"{key}\",\"reference\":\"{op}\",\"lineNo\":{seq}}'\n\
             headers = [\"X-Tenant: t 1\"]\n[read]\npath = \"/customers/{key}/orders/latest\"\nseq = \"/lineNo\"\n\
             [records]\nop = \"/reference\"\nseq = \"/lineNo\"\n",
        )
        .unwrap();
        let schema = dir.path().join("given schema.sql");
        std::fs::write(&schema, "CREATE TABLE orders (id bigint, note text DEFAULT 'it''s');").unwrap();
        let mut o = RunOptions::new("exec");
        o.cmd = Some("python3 service.py --port \"$PORT\"".into());
        o.committed_sql = Some("SELECT reference::bigint FROM orders WHERE note <> 'x'".into());
        o.faults = "kafka-partition,pg-kill,unit-line-pause".into();
        o.fault_cmds = vec!["unit-line-pause=kill -STOP 1,kill -CONT 1".parse().unwrap()];
        o.schema = Some(schema);
        o.op_timeout = Duration::from_millis(7250);
        o.start_timeout = Duration::from_secs(45);
        o.drain_timeout = Duration::from_secs(33);
        o.template.file = Some(template);
        o.template.request_method = Some("PUT".into());
        o.template.ok_status = Some("200,201".into());
        o.app_vars = vec![("DUALCHECK_RELAYS".into(), "3".into())];
        o.workload.rate = 37.5;
        o.workload.keys = 9;
        o.workload.skew = "zipf:1.2".parse().unwrap();
        o.workload.idle_window_ms = 1500;
        o.max_retained_wal = Some(64 << 20);
        o.partitions = 3;
        o.exactly_once = true;
        o.restart_before_drain = true;
        o.deploy_grace = Duration::from_millis(2500);
        o.reads = true;
        o.duration = Duration::from_secs(20);
        let base = o.to_config().unwrap();
        let window = |fault, a, b| Window {
            fault,
            start: Duration::from_millis(a),
            stop: Duration::from_millis(b),
        };
        let cand = Candidate {
            windows: vec![
                window(Fault::KafkaPartition, 1000, 3500),
                window(Fault::from_name("unit-line-pause").unwrap(), 2000, 2500),
            ],
            duration: Duration::from_secs(6),
            workload: workloads::Workload {
                keys: 3,
                concurrency: 2,
                ..base.workload.clone()
            },
        };
        let wanted = cand.config(&base);
        // The files a shrink writes beside its line.
        let schedule = dir.path().join("schedule.json");
        std::fs::write(
            &schedule,
            serde_json::to_string(wanted.schedule.as_ref().unwrap()).unwrap(),
        )
        .unwrap();
        let schema_out = dir.path().join("schema.sql");
        std::fs::write(&schema_out, base.schema_sql.as_ref().unwrap()).unwrap();
        let line = run_command(
            &base,
            &cand,
            ReproFiles {
                schedule: &schedule,
                schema: Some(&schema_out),
            },
        );
        let words = shlex::split(&line).unwrap();
        assert_eq!(words[..2], ["dualcheck", "run"], "{line}");
        let args = RunOnly::try_parse_from(&words[1..])
            .unwrap_or_else(|e| panic!("{line}\n{e}"))
            .run;
        let got = config(&args).unwrap_or_else(|e| panic!("{line}\n{e:#}"));
        assert_eq!(got.record(), wanted.record(), "{line}");
        assert_eq!(got.schedule, wanted.schedule);
        assert!(got.template.request.is_some() && got.template.read.is_some());
        assert_eq!(got.brokers, 1);
    }

    #[test]
    fn a_replay_needs_no_implementation_and_takes_none() {
        let args = RunOnly::try_parse_from(["run", "--replay", "runs/run-1"]).unwrap().run;
        assert_eq!(args.replay.as_deref(), Some(Path::new("runs/run-1")));
        assert!(RunOnly::try_parse_from(["run", "--replay", "r", "--impl", "naive"]).is_err());
        assert!(RunOnly::try_parse_from(["run"]).is_err(), "--impl or --replay");
        let args = RunOnly::try_parse_from(["run", "--impl", "naive", "--schedule", "s.json"])
            .unwrap()
            .run;
        assert_eq!(args.schedule.as_deref(), Some(Path::new("s.json")));
    }

    #[test]
    fn a_schedule_naming_a_fault_not_chosen_is_refused() {
        let dir = std::env::temp_dir().join(format!("dualcheck-schedule-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("schedule.json");
        std::fs::write(
            &file,
            r#"{"events":[{"at":{"secs":1,"nanos":0},"fault":"pg-kill","phase":"start"},{"at":{"secs":2,"nanos":0},"fault":"pg-kill","phase":"stop"}]}"#,
        )
        .unwrap();
        let parse = |faults: &str| {
            RunOnly::try_parse_from([
                "run",
                "--impl",
                "naive",
                "--faults",
                faults,
                "--schedule",
                file.to_str().unwrap(),
            ])
            .unwrap()
            .run
        };
        let e = config(&parse("kafka-partition")).unwrap_err().to_string();
        assert!(e.contains("`pg-kill`") && e.contains("--faults"), "{e}");
        let cfg = config(&parse("pg-kill")).unwrap();
        assert_eq!(cfg.schedule.unwrap().steps.len(), 2);
    }
}
