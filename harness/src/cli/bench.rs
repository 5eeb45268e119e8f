//! `dualcheck bench`: end-to-end latency and throughput of each pattern
//! without faults, next to the machine's own Postgres and Kafka limits; with
//! `--drain N`, each relay's publish rate apart from the request path. The
//! measurements are [`dualcheck::bench`]'s.

use super::{parse_duration, Verdict};
use clap::Args;
use dualcheck::run_options::RunOptions;
use std::path::PathBuf;
use std::time::Duration;

/// Arguments of `dualcheck bench`.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Comma-separated implementations (see `dualcheck list`), each `NAME`,
    /// `NAME+KEY=VALUE` or `NAME:tuned` (the knobs its pattern declares as
    /// tuned): `debezium,debezium:tuned` runs Debezium with its defaults and tuned.
    #[arg(long, value_delimiter = ',', default_value = "outbox-poll,outbox-notify,outbox-xid")]
    pub impls: Vec<String>,
    /// Workload duration of each implementation's run.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Target ops per second over all workers (0 = as fast as the workers go).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Worker tasks (and Postgres connections of the commit-rate limit).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Payload bytes per op (the outbox row carries it in a JSON envelope).
    #[arg(long, default_value_t = 64)]
    pub payload: usize,
    /// How long each machine limit is measured.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub limit_duration: Duration,
    /// Skip measuring the machine limits.
    #[arg(long)]
    pub no_limits: bool,
    /// Instead of the runs: commit N ops with each relay stopped, then time
    /// the relay draining them (its publish rate apart from the request path).
    /// Each of --impls must be a plain NAME of a pattern with a relay; local services only.
    #[arg(long, value_name = "N")]
    pub drain: Option<u64>,
    /// Ops invoked in the first part of each run are left out of the latency
    /// figures: new idempotent producers wait for the broker's producer-id
    /// coordinator, which would otherwise dominate a short run's p99.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Where the runs go.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Which services: local, external or testcontainers.
    #[command(flatten)]
    pub backend: super::env::BackendArgs,
}

impl BenchArgs {
    /// The options of each implementation's run: `dualcheck run`'s defaults
    /// but for these, and no aborted or long transactions.
    fn run_options(&self) -> RunOptions {
        let mut o = RunOptions::new("");
        o.duration = self.duration;
        o.workload.rate = self.rate;
        o.workload.concurrency = self.concurrency;
        o.workload.payload_bytes = self.payload;
        o.workload.abort_fraction = 0.0;
        o.workload.long_fraction = 0.0;
        o.out = self.out.clone();
        o
    }
}

/// Runs `dualcheck bench`: valid when every run was carried out and valid,
/// invalid when some run was invalid, unusable on errors.
pub fn run(args: BenchArgs) -> Verdict {
    let rt = match super::runtime("bench") {
        Ok(rt) => rt,
        Err(v) => return v,
    };
    let mut options = args.run_options();
    match args.backend.resolve() {
        Ok(b) => options.backend = b,
        Err(e) => {
            eprintln!("dualcheck bench: {e:#}");
            return Verdict::Unusable;
        }
    }
    if let Some(n) = args.drain {
        return drain(&args, &options, n, &rt);
    }
    let limit_duration = (!args.no_limits).then_some(args.limit_duration);
    match rt.block_on(dualcheck::bench::bench(
        &args.impls,
        &options,
        limit_duration,
        args.warmup,
    )) {
        Ok((limits, rows)) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"limits": limits, "rows": rows, "warmup_s": args.warmup.as_secs_f64()})
                );
            } else {
                print!("{}", dualcheck::bench::table(limits.as_ref(), &rows));
            }
            Verdict::of(rows.iter().all(|r| r.valid))
        }
        Err(e) => {
            eprintln!("dualcheck bench: {e:#}");
            Verdict::Unusable
        }
    }
}

/// `--drain N`: the limits, then each relay's drain rate.
fn drain(args: &BenchArgs, options: &RunOptions, n: u64, rt: &tokio::runtime::Runtime) -> Verdict {
    let limit_duration = (!args.no_limits).then_some(args.limit_duration);
    let result = rt.block_on(dualcheck::bench::drain(&args.impls, n, options, limit_duration));
    match result {
        Ok((limits, rows)) => {
            if args.json {
                println!("{}", serde_json::json!({"limits": limits, "drain": rows}));
                return Verdict::Valid;
            }
            print!("{}", dualcheck::bench::drain_table(limits.as_ref(), &rows));
            Verdict::Valid
        }
        Err(e) => {
            eprintln!("dualcheck bench --drain: {e:#}");
            Verdict::Unusable
        }
    }
}
