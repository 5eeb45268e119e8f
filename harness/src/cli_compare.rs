//! `dualcheck compare`: every implementation under the same seeded workload
//! and fault schedule, one seed after another, summed up in one table (text,
//! Markdown or JSON) and in `compare.html`, which links each run's report.

use crate::cli_check::{EXIT_ANOMALIES, EXIT_UNUSABLE, EXIT_VALID};
use crate::cli_run::{parse_duration, RunArgs};
use crate::report::escape;
use crate::runner::RunOutcome;
use anyhow::{Context, Result};
use clap::{Args, Parser};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Arguments of `dualcheck compare`.
#[derive(Args, Debug, Clone)]
pub struct CompareArgs {
    /// Comma-separated implementations (see `dualcheck list`).
    #[arg(long, value_delimiter = ',', required = true)]
    pub impls: Vec<String>,
    /// Comma-separated faults (see `dualcheck list`), or `none`.
    #[arg(long, default_value = "none")]
    pub faults: String,
    /// Workload duration of each run, e.g. `30s`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Seeds per implementation: FIRST_SEED, FIRST_SEED+1, ...
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    pub first_seed: u64,
    /// Target ops per second over all workers (0 = unlimited).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Worker tasks.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Distinct business keys.
    #[arg(long, default_value_t = 32)]
    pub keys: usize,
    /// Where the comparison directory (runs and compare.html) goes.
    #[arg(long, default_value = "runs")]
    pub out: PathBuf,
    /// Print the table as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Print the table as Markdown.
    #[arg(long, conflicts_with = "json")]
    pub markdown: bool,
}

/// One implementation's line of the comparison.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    /// Implementation.
    pub implementation: String,
    /// Runs carried out (seeds that ended in a verdict).
    pub runs: u64,
    /// `valid` when every run was, else `INVALID`; `error` when no run was carried out.
    pub verdict: String,
    /// Lost events, summed over the runs.
    pub lost: u64,
    /// Phantom events, summed.
    pub phantom: u64,
    /// Unexpected deliveries, summed.
    pub unexpected: u64,
    /// Duplicates (same event id), summed.
    pub duplicate: u64,
    /// Duplicates beyond idempotency, summed.
    pub duplicate_beyond_idempotency: u64,
    /// Reorders, summed.
    pub reorder: u64,
    /// Lost commits, summed.
    pub lost_commit: u64,
    /// Median over the runs of each run's p50 commit-to-delivery latency (ms).
    pub p50_ms: Option<f64>,
    /// Worst p99 over the runs (ms).
    pub p99_ms: Option<f64>,
    /// Mean acknowledged ops per second.
    pub throughput_ok_per_s: f64,
    /// Seeds whose run was invalid.
    pub failed_seeds: Vec<u64>,
    /// Seeds whose run could not be carried out, with why.
    pub errors: Vec<(u64, String)>,
    /// Each run's report.html.
    pub reports: Vec<PathBuf>,
}

impl Row {
    /// Sums up the runs of one implementation.
    pub fn from_runs(implementation: &str, runs: &[(u64, Result<RunOutcome, String>)]) -> Row {
        let mut row = Row {
            implementation: implementation.to_string(),
            ..Row::default()
        };
        let mut p50s = Vec::new();
        let mut throughput = 0.0;
        for (seed, r) in runs {
            match r {
                Ok(o) => {
                    let a = &o.result.anomalies;
                    row.runs += 1;
                    row.lost += a.lost;
                    row.phantom += a.phantom;
                    row.unexpected += a.unexpected;
                    row.duplicate += a.duplicate;
                    row.duplicate_beyond_idempotency += a.duplicate_beyond_idempotency;
                    row.reorder += a.reorder;
                    row.lost_commit += a.lost_commit;
                    if let Some(l) = &o.result.latency_ns {
                        p50s.push(l.p50 as f64 / 1e6);
                        row.p99_ms = Some(row.p99_ms.unwrap_or(0.0).max(l.p99 as f64 / 1e6));
                    }
                    throughput += o.throughput_ok_per_s;
                    if !o.result.valid {
                        row.failed_seeds.push(*seed);
                    }
                    row.reports.push(o.run_dir.join(crate::run_dir::REPORT_HTML));
                }
                Err(e) => row.errors.push((*seed, e.clone())),
            }
        }
        p50s.sort_by(f64::total_cmp);
        row.p50_ms = p50s.get(p50s.len().saturating_sub(1) / 2).copied();
        row.throughput_ok_per_s = if row.runs > 0 {
            throughput / row.runs as f64
        } else {
            0.0
        };
        row.verdict = if row.runs == 0 {
            "error".into()
        } else if row.failed_seeds.is_empty() {
            "valid".into()
        } else {
            "INVALID".into()
        };
        row
    }

    fn cells(&self) -> Vec<String> {
        let ms = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
        let seeds = |v: &[u64]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",")
            }
        };
        vec![
            self.implementation.clone(),
            format!(
                "{}{}",
                self.verdict,
                if self.errors.is_empty() { "" } else { " (errors)" }
            ),
            self.runs.to_string(),
            self.lost.to_string(),
            self.phantom.to_string(),
            self.duplicate.to_string(),
            self.duplicate_beyond_idempotency.to_string(),
            self.reorder.to_string(),
            ms(self.p50_ms),
            ms(self.p99_ms),
            format!("{:.1}", self.throughput_ok_per_s),
            seeds(&self.failed_seeds),
            seeds(&self.errors.iter().map(|(s, _)| *s).collect::<Vec<_>>()),
        ]
    }
}

/// Column headers of the table.
pub const HEADERS: [&str; 13] = [
    "implementation",
    "verdict",
    "runs",
    "lost",
    "phantom",
    "duplicate",
    "dup_beyond_idem",
    "reorder",
    "p50 ms",
    "p99 ms",
    "ok/s",
    "failed seeds",
    "error seeds",
];

/// The table as aligned text.
pub fn text_table(rows: &[Row]) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(Row::cells).collect();
    let widths: Vec<usize> = (0..HEADERS.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([HEADERS[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |v: Vec<&str>| {
        v.iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
            + "\n"
    };
    let mut s = line(HEADERS.to_vec());
    for r in &cells {
        s.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    s
}

/// The table as Markdown.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut s = format!("| {} |\n|{}\n", HEADERS.join(" | "), "---|".repeat(HEADERS.len()));
    for r in rows {
        s.push_str(&format!("| {} |\n", r.cells().join(" | ")));
    }
    s
}

/// `compare.html`: the table, with each run's report linked (relative to `dir` when inside it).
pub fn html(rows: &[Row], dir: &Path, title: &str) -> String {
    let mut h = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>\
body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}\
td,th{{border:1px solid #ddd;padding:3px 8px;text-align:left}}th{{background:#f5f5f5}}\
.valid{{color:#1a6b1a;font-weight:bold}}.INVALID,.error{{color:#a11;font-weight:bold}}</style></head><body>\n\
<h1>{t}</h1>\n<table id=\"compare\"><tr>",
        t = escape(title)
    );
    for hd in HEADERS {
        let _ = write!(h, "<th>{}</th>", escape(hd));
    }
    h.push_str("<th>reports</th></tr>\n");
    for r in rows {
        h.push_str("<tr>");
        for (i, c) in r.cells().iter().enumerate() {
            if i == 1 {
                let _ = write!(h, "<td class=\"{}\">{}</td>", escape(&r.verdict), escape(c));
            } else {
                let _ = write!(h, "<td>{}</td>", escape(c));
            }
        }
        h.push_str("<td>");
        for (i, p) in r.reports.iter().enumerate() {
            let link = p.strip_prefix(dir).unwrap_or(p);
            let _ = write!(
                h,
                "<a href=\"{}\">run {}</a> ",
                escape(&link.display().to_string()),
                i + 1
            );
        }
        h.push_str("</td></tr>\n");
    }
    h.push_str("</table>\n");
    for r in rows {
        for (seed, e) in &r.errors {
            let _ = writeln!(
                h,
                "<p><b>{}</b>, seed {seed}: could not be carried out: {}</p>",
                escape(&r.implementation),
                escape(e)
            );
        }
    }
    h.push_str(
        "<p>Anomalies are summed over the seeds; p50 is the median of the runs' p50s, p99 the worst run's p99 \
(commit to first delivery); ok/s is the mean over the runs.</p>\n</body></html>\n",
    );
    h
}

/// Logs to stderr at `warn` (RUST_LOG overrides); librdkafka's expected connection errors stay off the terminal.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,librdkafka=off,rdkafka=off")),
        )
        .try_init();
}

#[derive(Parser)]
struct RunOnly {
    #[command(flatten)]
    run: RunArgs,
}

/// `dualcheck run` arguments with their defaults for `implementation`.
pub fn default_run_args(implementation: &str) -> Result<RunArgs> {
    Ok(RunOnly::try_parse_from(["dualcheck-run", "--impl", implementation])
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .run)
}

/// Runs `dualcheck compare`: 0 when every run was valid, 1 when some run
/// found anomalies, 2 when some run could not be carried out.
pub fn run(args: CompareArgs) -> u8 {
    init_tracing();
    match compare(&args) {
        Ok((rows, dir)) => {
            if args.json {
                let v =
                    serde_json::json!({"rows": rows, "out_dir": dir, "html": dir.join(crate::run_dir::COMPARE_HTML)});
                println!("{v}");
            } else {
                if args.markdown {
                    print!("{}", markdown_table(&rows));
                } else {
                    print!("{}", text_table(&rows));
                }
                println!("\n{}", dir.join(crate::run_dir::COMPARE_HTML).display());
            }
            if rows.iter().any(|r| !r.errors.is_empty()) {
                EXIT_UNUSABLE
            } else if rows.iter().any(|r| !r.failed_seeds.is_empty()) {
                EXIT_ANOMALIES
            } else {
                EXIT_VALID
            }
        }
        Err(e) => {
            eprintln!("dualcheck compare: {e:#}");
            EXIT_UNUSABLE
        }
    }
}

/// Runs every implementation on every seed, sequentially; returns the rows and the comparison directory.
pub fn compare(args: &CompareArgs) -> Result<(Vec<Row>, PathBuf)> {
    if args.seeds == 0 {
        anyhow::bail!("--seeds must be at least 1");
    }
    // Every configuration is checked before the first run starts.
    let mut configs = Vec::new();
    let dir = crate::run_dir::create_compare_dir(&args.out)?;
    for name in &args.impls {
        let mut per_seed = Vec::new();
        for seed in args.first_seed..args.first_seed + args.seeds {
            let mut ra = default_run_args(name)?;
            ra.faults = args.faults.clone();
            ra.duration = args.duration;
            ra.seed = seed;
            ra.rate = args.rate;
            ra.concurrency = args.concurrency;
            ra.keys = args.keys;
            ra.out = dir.clone();
            ra.json = true;
            per_seed.push((seed, ra.to_config().with_context(|| format!("--impls {name}"))?));
        }
        configs.push((name.clone(), per_seed));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let total = configs.iter().map(|(_, v)| v.len()).sum::<usize>();
    let mut done = 0;
    let title = format!(
        "dualcheck compare: faults {}, {:.0} s per run, seeds {}..={}",
        args.faults,
        args.duration.as_secs_f64(),
        args.first_seed,
        args.first_seed + args.seeds - 1
    );
    let mut rows = Vec::new();
    for (name, per_seed) in configs {
        let mut runs = Vec::new();
        for (seed, cfg) in per_seed {
            done += 1;
            eprintln!("[{done}/{total}] {name} seed {seed} ...");
            let r = rt.block_on(crate::runner::run(cfg)).map_err(|e| format!("{e:#}"));
            match &r {
                Ok(o) => eprintln!(
                    "[{done}/{total}] {name} seed {seed}: {} {:?}",
                    if o.result.valid { "valid" } else { "INVALID" },
                    o.result.violations
                ),
                Err(e) => eprintln!("[{done}/{total}] {name} seed {seed}: could not be carried out: {e}"),
            }
            runs.push((seed, r));
        }
        rows.push(Row::from_runs(&name, &runs));
        // Written after each implementation, so an interrupted comparison still shows what it has.
        std::fs::write(dir.join(crate::run_dir::COMPARE_HTML), html(&rows, &dir, &title))?;
    }
    Ok((rows, dir))
}
