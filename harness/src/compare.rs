//! `dualcheck compare`'s work: every implementation under the same seeded
//! workload and fault schedule, one seed after another, summed up in one table
//! (text, Markdown or JSON) and in `compare.html`, which links each run's report.

use crate::report::escape;
use crate::run_options::RunOptions;
use crate::runner::RunOutcome;
use anyhow::{Context, Result};
use checkers::{Anomalies, Anomaly};
use serde::Serialize;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One implementation's line of the comparison.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    /// Implementation.
    pub implementation: String,
    /// Runs carried out (seeds that ended in a verdict).
    pub runs: u64,
    /// `valid` when every run was, else `INVALID`; `error` when no run was carried out.
    pub verdict: String,
    /// Each anomaly's count summed over the runs (in JSON, one field per anomaly, by name).
    #[serde(flatten)]
    pub anomalies: Anomalies,
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
                    row.runs += 1;
                    row.anomalies += &o.result.anomalies;
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
        let mut cells = vec![
            self.implementation.clone(),
            format!(
                "{}{}",
                self.verdict,
                if self.errors.is_empty() { "" } else { " (errors)" }
            ),
            self.runs.to_string(),
        ];
        cells.extend(Anomaly::ALL.iter().map(|&a| self.anomalies.get(a).to_string()));
        cells.extend([
            ms(self.p50_ms),
            ms(self.p99_ms),
            format!("{:.1}", self.throughput_ok_per_s),
            seeds(&self.failed_seeds),
            seeds(&self.errors.iter().map(|(s, _)| *s).collect::<Vec<_>>()),
        ]);
        cells
    }
}

/// An anomaly's column header: its name, shortened where the name is long.
fn anomaly_column(a: Anomaly) -> &'static str {
    match a {
        Anomaly::DuplicateBeyondIdempotency => "dup_beyond_idem",
        a => a.name(),
    }
}

/// Column headers of the table: one per anomaly, in [`Anomaly::ALL`] order, between the run and latency columns.
pub fn headers() -> Vec<&'static str> {
    let mut h = vec!["implementation", "verdict", "runs"];
    h.extend(Anomaly::ALL.iter().map(|&a| anomaly_column(a)));
    h.extend(["p50 ms", "p99 ms", "ok/s", "failed seeds", "error seeds"]);
    h
}

/// The table as aligned text.
pub fn text_table(rows: &[Row]) -> String {
    let headers = headers();
    let cells: Vec<Vec<String>> = rows.iter().map(Row::cells).collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([headers[i].len()])
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
    let mut s = line(headers);
    for r in &cells {
        s.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    s
}

/// The table as Markdown.
pub fn markdown_table(rows: &[Row]) -> String {
    let headers = headers();
    let mut s = format!("| {} |\n|{}\n", headers.join(" | "), "---|".repeat(headers.len()));
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
    for hd in headers() {
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

/// Runs every implementation on every seed of `seeds`, sequentially, each
/// with `run`'s options (its implementation and seed replaced); returns the
/// rows and the comparison directory (made under `run.out`). Every
/// configuration is checked before the first run starts.
pub async fn compare(impls: &[String], seeds: Range<u64>, run: &RunOptions) -> Result<(Vec<Row>, PathBuf)> {
    if seeds.is_empty() {
        anyhow::bail!("--seeds must be at least 1");
    }
    let mut configs = Vec::new();
    let dir = crate::run_dir::create_compare_dir(&run.out)?;
    for name in impls {
        let mut per_seed = Vec::new();
        for seed in seeds.clone() {
            let mut options = run.clone();
            options.implementation = name.clone();
            options.workload.seed = seed;
            options.out = dir.clone();
            per_seed.push((seed, options.to_config().with_context(|| format!("--impls {name}"))?));
        }
        configs.push((name.clone(), per_seed));
    }
    let total = configs.iter().map(|(_, v)| v.len()).sum::<usize>();
    let mut done = 0;
    let title = format!(
        "dualcheck compare: faults {}, {:.0} s per run, seeds {}..={}",
        run.faults,
        run.duration.as_secs_f64(),
        seeds.start,
        seeds.end - 1
    );
    let mut rows = Vec::new();
    for (name, per_seed) in configs {
        let mut runs = Vec::new();
        for (seed, cfg) in per_seed {
            done += 1;
            eprintln!("[{done}/{total}] {name} seed {seed} ...");
            let r = crate::runner::run(cfg).await.map_err(|e| format!("{e:#}"));
            match &r {
                Ok(o) => eprintln!(
                    "[{done}/{total}] {name} seed {seed}: {} {:?}",
                    if o.result.valid { "valid" } else { "INVALID" },
                    o.result.violations.iter().map(|a| a.name()).collect::<Vec<_>>()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_anomaly_has_a_column() {
        let row = Row {
            implementation: "x".into(),
            verdict: "INVALID".into(),
            anomalies: Anomalies {
                stale_read: 3,
                ..Anomalies::default()
            },
            ..Row::default()
        };
        let headers = headers();
        let cells = row.cells();
        assert_eq!(headers.len(), cells.len());
        for &a in Anomaly::ALL {
            let i = headers.iter().position(|h| *h == anomaly_column(a)).unwrap();
            assert_eq!(cells[i], row.anomalies.get(a).to_string(), "{a}");
        }
        assert!(text_table(std::slice::from_ref(&row)).contains("stale_read"));
        let json = serde_json::to_value(&row).unwrap();
        for &a in Anomaly::ALL {
            assert_eq!(json[a.name()], row.anomalies.get(a), "{a}");
        }
    }
}
