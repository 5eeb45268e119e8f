//! `dualcheck serve`: a local web page listing the runs, sweeps, comparisons
//! and zoos under a directory (default `runs/`), newest first, filterable by
//! implementation and verdict, linking each run's files.
//!
//! The directory is scanned on every request, so new runs show up without a
//! restart. Only files under the directory are served (no `..`, no symbolic
//! link leading out of it). The page has no script from any network: one
//! inline script submits the filter form when a choice changes, and the
//! page's Content-Security-Policy forbids anything else.

use crate::render::page::{page, Kind};
use crate::render::{Cell, Row as TableRow, Table};
use axum::extract::Request;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use maud::{html, Markup};
use record::run_dir;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// The port `dualcheck serve` listens on without `--port`.
pub const DEFAULT_PORT: u16 = 8750;

/// The subcommands whose output directory (`<command>-<secs>-<pid>`, see
/// [`run_dir::create_sweep_dir`]) holds several runs and `<command>.html`.
pub const GROUP_COMMANDS: [&str; 3] = ["sweep", "compare", "zoo"];

/// Files of a run directory the page links, when present, in this order.
const LINKED: [&str; 6] = [
    run_dir::REPORT_HTML,
    run_dir::HISTORY,
    run_dir::RESULTS,
    run_dir::OPS_SERIES,
    run_dir::APP_LOG,
    run_dir::RELAY_LOG,
];

/// The time to recover of one run, over its fault windows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Recovery {
    /// No fault window was healed in the run.
    NoWindows,
    /// Every healed window recovered; the worst took this long (seconds).
    Worst(f64),
    /// This many healed windows never recovered before the run ended.
    Never(usize),
}

/// One row of the page: a run, or a sweep / comparison / zoo directory.
#[derive(Debug, Clone)]
pub struct Entry {
    /// `run`, or the command of a group directory (`sweep`, `compare`, `zoo`).
    pub kind: String,
    /// Path relative to the served directory, `/`-separated.
    pub path: String,
    /// The group directory holding this run, relative path; `None` at top level.
    pub parent: Option<String>,
    /// Last modification (of `results.json` when there is one, else of the directory).
    pub modified: SystemTime,
    /// Implementations (one for a run; every one of a group's runs).
    pub implementations: Vec<String>,
    /// The faults the schedule chose from (`fault_names`); a group: every run's.
    pub faults: Vec<String>,
    /// The seed (runs only).
    pub seed: Option<u64>,
    /// `valid`, `invalid` or `unknown`; `None` when it could not be read.
    pub verdict: Option<String>,
    /// Anomaly kinds with a non-zero count (a group: summed over its runs).
    pub anomalies: Vec<(String, u64)>,
    /// Commit-to-delivery latency p99, milliseconds (runs only).
    pub p99_ms: Option<f64>,
    /// Time to recover (runs only; `None` for a group or an unreadable run).
    pub recovery: Option<Recovery>,
    /// The most WAL a replication slot of the run's database retained, bytes
    /// (`ops_max.wal_retained_bytes`; a group: the largest of its runs').
    pub wal_retained_bytes: Option<i64>,
    /// Measured workload length, seconds (a group: how many runs, in `runs`).
    pub duration_s: Option<f64>,
    /// Runs in a group; `None` for a run.
    pub runs: Option<usize>,
    /// Why the directory could not be read (partial, older version, ...).
    pub problem: Option<String>,
    /// Files to link, relative to [`Entry::path`].
    pub files: Vec<String>,
}

impl Entry {
    fn blank(kind: &str, path: String, parent: Option<String>, modified: SystemTime) -> Entry {
        Entry {
            kind: kind.to_string(),
            path,
            parent,
            modified,
            implementations: Vec::new(),
            faults: Vec::new(),
            seed: None,
            verdict: None,
            anomalies: Vec::new(),
            p99_ms: None,
            recovery: None,
            wal_retained_bytes: None,
            duration_s: None,
            runs: None,
            problem: None,
            files: Vec::new(),
        }
    }

    /// The verdict the filter compares with: the verdict, or `unreadable`.
    pub fn verdict_key(&self) -> &str {
        self.verdict.as_deref().unwrap_or("unreadable")
    }
}

fn modified(p: &Path) -> SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The command of a group directory (`sweep-<secs>-<pid>`), if `name` is one.
fn group_command(name: &str) -> Option<&'static str> {
    GROUP_COMMANDS.into_iter().find(|c| {
        name.strip_prefix(c).and_then(|r| r.strip_prefix('-')).is_some_and(|r| {
            r.split('-')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        })
    })
}

/// Whether `dir` looks like a run directory: it holds a history or results,
/// or is named `run-...` by [`run_dir::RunDir::create_for_run`].
fn is_run_dir(dir: &Path, name: &str) -> bool {
    name.starts_with("run-") || dir.join(run_dir::HISTORY).is_file() || dir.join(run_dir::RESULTS).is_file()
}

/// Reads one run directory; never fails: what it cannot read becomes [`Entry::problem`].
pub fn read_run(dir: &Path, rel: String, parent: Option<String>) -> Entry {
    let results = dir.join(run_dir::RESULTS);
    let mut e = Entry::blank(
        "run",
        rel,
        parent,
        if results.is_file() {
            modified(&results)
        } else {
            modified(dir)
        },
    );
    e.files = LINKED
        .iter()
        .filter(|f| dir.join(f).is_file())
        .map(|f| f.to_string())
        .collect();
    let text = match std::fs::read_to_string(&results) {
        Ok(t) => t,
        Err(err) => {
            e.problem = Some(if err.kind() != std::io::ErrorKind::NotFound {
                format!("{}: {err}", run_dir::RESULTS)
            } else if dir.join(run_dir::HISTORY).is_file() {
                format!(
                    "no {}: the run is still going, or was interrupted (`dualcheck report DIR` judges its history)",
                    run_dir::RESULTS
                )
            } else {
                format!(
                    "no {} and no {}: not a finished run",
                    run_dir::RESULTS,
                    run_dir::HISTORY
                )
            });
            return e;
        }
    };
    let v: serde_json::Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(err) => {
            e.problem = Some(format!("{} is not JSON ({err}): partly written?", run_dir::RESULTS));
            return e;
        }
    };
    e.implementations = v["implementation"]
        .as_str()
        .map(|s| vec![s.to_string()])
        .unwrap_or_default();
    e.seed = v["seed"].as_u64();
    e.faults = v["fault_names"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    e.verdict = match (v["verdict"].as_str(), v["valid"].as_bool()) {
        (Some(s), _) => Some(s.to_string()),
        (None, Some(true)) => Some("valid".into()),
        (None, Some(false)) => Some("invalid".into()),
        (None, None) => None,
    };
    if e.verdict.is_none() {
        e.problem = Some(format!(
            "{} has no `verdict`: written by another version of dualcheck?",
            run_dir::RESULTS
        ));
    }
    if let Some(a) = v["anomalies"].as_object() {
        e.anomalies = a
            .iter()
            .filter_map(|(k, n)| n.as_u64().filter(|&n| n > 0).map(|n| (k.clone(), n)))
            .collect();
    }
    e.p99_ms = v["latency_ns"]["p99"].as_f64().map(|ns| ns / 1e6);
    e.duration_s = v["duration_s"].as_f64();
    e.wal_retained_bytes = v["ops_max"]["wal_retained_bytes"].as_i64();
    e.recovery = v["faults"].as_array().map(|windows| {
        let healed: Vec<&serde_json::Value> = windows.iter().filter(|w| !w["stop"].is_null()).collect();
        let never = healed.iter().filter(|w| w["recovery_ns"].is_null()).count();
        if healed.is_empty() {
            Recovery::NoWindows
        } else if never > 0 {
            Recovery::Never(never)
        } else {
            Recovery::Worst(
                healed
                    .iter()
                    .filter_map(|w| w["recovery_ns"].as_f64())
                    .fold(0.0, f64::max)
                    / 1e9,
            )
        }
    });
    e
}

/// Lists every run and group directory under `root` (a group's runs too),
/// newest first. A missing `root` lists nothing.
pub fn scan(root: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    for (path, name) in subdirs(root) {
        if let Some(command) = group_command(&name) {
            let mut g = Entry::blank(command, name.clone(), None, modified(&path));
            let html = format!("{command}.html");
            if path.join(&html).is_file() {
                g.files.push(html);
            }
            let runs: Vec<Entry> = subdirs(&path)
                .into_iter()
                .filter(|(p, n)| is_run_dir(p, n))
                .map(|(p, n)| read_run(&p, format!("{name}/{n}"), Some(name.clone())))
                .collect();
            summarize(&mut g, &runs);
            out.push(g);
            out.extend(runs);
        } else if is_run_dir(&path, &name) {
            out.push(read_run(&path, name, None));
        }
    }
    out.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| b.path.cmp(&a.path)));
    out
}

/// A group's row from its runs: implementations, faults, summed anomalies,
/// the worst verdict (invalid, then unknown, then valid).
fn summarize(g: &mut Entry, runs: &[Entry]) {
    let mut impls = BTreeSet::new();
    let mut faults = BTreeSet::new();
    let mut anomalies: std::collections::BTreeMap<String, u64> = Default::default();
    for r in runs {
        impls.extend(r.implementations.iter().cloned());
        faults.extend(r.faults.iter().cloned());
        for (k, n) in &r.anomalies {
            *anomalies.entry(k.clone()).or_default() += n;
        }
        g.wal_retained_bytes = g.wal_retained_bytes.max(r.wal_retained_bytes);
        if r.modified > g.modified {
            g.modified = r.modified;
        }
    }
    g.implementations = impls.into_iter().collect();
    g.faults = faults.into_iter().collect();
    g.anomalies = anomalies.into_iter().collect();
    g.runs = Some(runs.len());
    let has = |v: &str| runs.iter().any(|r| r.verdict.as_deref() == Some(v));
    g.verdict = if runs.is_empty() {
        g.problem = Some("no run finished yet".into());
        None
    } else if has("invalid") {
        Some("invalid".into())
    } else if has("unknown") || runs.iter().any(|r| r.verdict.is_none()) {
        Some("unknown".into())
    } else {
        Some("valid".into())
    };
}

fn subdirs(dir: &Path) -> Vec<(PathBuf, String)> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.filter_map(|d| d.ok())
        .filter(|d| d.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .filter_map(|d| d.file_name().to_str().map(|n| (d.path(), n.to_string())))
        .collect()
}

/// The filter of the page, from its query parameters (`impl`, `verdict`);
/// empty values filter nothing.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filter {
    /// Show only rows with this implementation.
    #[serde(default, rename = "impl")]
    pub implementation: String,
    /// Show only rows with this verdict (`valid`, `invalid`, `unknown`, `unreadable`).
    #[serde(default)]
    pub verdict: String,
}

impl Filter {
    /// Whether `e` passes the filter.
    pub fn keeps(&self, e: &Entry) -> bool {
        (self.implementation.is_empty() || e.implementations.contains(&self.implementation))
            && (self.verdict.is_empty() || e.verdict_key() == self.verdict)
    }
}

/// `YYYY-MM-DD HH:MM:SS` UTC.
fn utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Percent-encodes a relative path for a URL (each segment; `/` kept).
fn url_path(rel: &str) -> String {
    let mut s = String::new();
    for b in rel.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/+".contains(&b) {
            s.push(b as char);
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
    s
}

/// The filter form's only script: submit it when a choice changes.
const FILTER_SCRIPT: &str =
    "for(const s of document.querySelectorAll('#filter select'))s.addEventListener('change',()=>s.form.submit());";

/// The page listing `entries` (the scan of `root`) through `filter`, in the
/// shared shell.
pub fn index_html(root: &Path, entries: &[Entry], filter: &Filter) -> String {
    let root = root.display().to_string();
    let heading = html! { h1 { "dualcheck: runs in " code { (root) } } };
    if entries.is_empty() {
        return page(
            Kind::Listing,
            "dualcheck runs",
            html! { (heading) (how_to_make_runs(&root)) },
            None,
        );
    }
    let shown: Vec<&Entry> = entries.iter().filter(|e| filter.keeps(e)).collect();
    let body = html! {
        (heading)
        (filter_form(entries, filter))
        p id="count" { (shown.len()) " of " (entries.len()) " shown, newest first." }
        (runs_table(&shown).html(Some("runs")))
    };
    page(Kind::Listing, "dualcheck runs", body, Some(FILTER_SCRIPT))
}

/// What an empty directory's page says: the commands that make runs into it.
fn how_to_make_runs(root: &str) -> Markup {
    html! {
        p id="empty" { "No runs here yet. Make one with" }
        pre { "dualcheck run --impl outbox-poll --faults kafka-partition --duration 20s --out " (root) }
        p {
            "or several with " code { "dualcheck compare --impls outbox-poll,naive --faults kafka-partition --out " (root) }
            "; " code { "dualcheck list" } " names the implementations and faults. This page shows them as they \
             finish (reload it)."
        }
    }
}

/// The filter: an implementation (those present) and a verdict, as chosen.
fn filter_form(entries: &[Entry], filter: &Filter) -> Markup {
    let impls: BTreeSet<&str> = entries
        .iter()
        .flat_map(|e| e.implementations.iter().map(String::as_str))
        .collect();
    let option = |value: &str, label: &str, selected: &str| {
        html! { option value=(value) selected[value == selected] { (label) } }
    };
    let verdicts = [
        ("", "all"),
        ("valid", "valid"),
        ("invalid", "invalid"),
        ("unknown", "unknown"),
        ("unreadable", "unreadable"),
    ];
    html! {
        form id="filter" method="get" action="/" {
            "Implementation "
            select name="impl" {
                (option("", "all", &filter.implementation))
                @for i in &impls { (option(i, i, &filter.implementation)) }
            }
            " Verdict "
            select name="verdict" {
                @for (v, label) in verdicts { (option(v, label, &filter.verdict)) }
            }
            " "
            button type="submit" { "Filter" }
        }
    }
}

/// The headers of the run list.
const RUN_COLUMNS: [&str; 12] = [
    "run",
    "when (UTC)",
    "implementation",
    "faults",
    "seed",
    "verdict",
    "anomalies",
    "p99 ms",
    "time to recover",
    "max WAL retained",
    "duration",
    "files",
];

/// The run list: one row per entry, a group's runs indented under it.
fn runs_table(entries: &[&Entry]) -> Table {
    let mut t = Table::left(RUN_COLUMNS);
    for e in entries {
        t.push_row(TableRow {
            cells: entry_cells(e),
            class: Some(format!(
                "{}{}",
                e.kind,
                if e.parent.is_some() { " run-in-group" } else { "" }
            )),
        });
    }
    t
}

/// One entry's cells, in [`RUN_COLUMNS`] order.
fn entry_cells(e: &Entry) -> Vec<Cell> {
    let name = e.path.rsplit('/').next().unwrap_or(&e.path);
    let group = (e.kind != "run").then_some(e.kind.as_str());
    let verdict = e.verdict.as_deref().unwrap_or("unreadable");
    let anomalies = if e.anomalies.is_empty() {
        if e.verdict.is_some() {
            "none".to_string()
        } else {
            String::new()
        }
    } else {
        e.anomalies
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let recovery = match e.recovery {
        None => Cell::new(""),
        Some(Recovery::NoWindows) => Cell::new("no fault"),
        Some(Recovery::Worst(s)) => Cell::new(format!("worst {s:.2} s")),
        Some(Recovery::Never(n)) => {
            let rest = format!(" ({n} window{})", plural(n));
            Cell::new(format!("never{rest}")).html(html! { b { "never" } (rest) })
        }
    };
    let duration = match (e.runs, e.duration_s) {
        (Some(n), _) => format!("{n} run{}", plural(n)),
        (None, Some(d)) => format!("{d:.1} s"),
        (None, None) => String::new(),
    };
    let files = html! {
        @for f in &e.files {
            a href=(format!("/files/{}/{}", url_path(&e.path), url_path(f))) { (f) } " "
        }
        a href=(format!("/files/{}/", url_path(&e.path))) { "all files" }
    };
    vec![
        Cell::new(format!("{}{name}", group.map(|g| format!("{g} ")).unwrap_or_default()))
            .html(html! { @if let Some(g) = group { b { (g) } " " } (name) }),
        Cell::new(utc(e.modified)),
        Cell::new(e.implementations.join(", ")),
        Cell::new(e.faults.join(", ")),
        Cell::new(e.seed.map(|s| s.to_string()).unwrap_or_default()),
        Cell::new(verdict)
            .class(format!("verdict {}", e.verdict_key()))
            .html(html! { (verdict) @if let Some(p) = &e.problem { div class="problem" { (p) } } }),
        Cell::new(anomalies),
        Cell::new(e.p99_ms.map(|m| format!("{m:.1}")).unwrap_or_default()),
        recovery,
        Cell::new(
            e.wal_retained_bytes
                .map(|b| format!("{:.1} MiB", b as f64 / 1048576.0))
                .unwrap_or_default(),
        ),
        Cell::new(duration),
        Cell::new(e.files.join(" ")).html(files),
    ]
}

/// The file or directory `rel` (a URL path, already percent-decoded) names
/// under `root`, if it stays under `root`: only plain components, and no
/// symbolic link leading out.
pub fn resolve(root: &Path, rel: &str) -> Option<PathBuf> {
    let rel = Path::new(rel.trim_start_matches('/'));
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let root = root.canonicalize().ok()?;
    let p = root.join(rel).canonicalize().ok()?;
    p.starts_with(&root).then_some(p)
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        _ => "text/plain; charset=utf-8",
    }
}

/// Only inline styles and scripts; nothing from any network.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; form-action 'self'";

async fn index(State(root): State<Arc<PathBuf>>, Query(filter): Query<Filter>) -> Response {
    let root2 = root.clone();
    let entries = tokio::task::spawn_blocking(move || scan(&root2))
        .await
        .unwrap_or_default();
    (
        [
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(index_html(&root, &entries, &filter)),
    )
        .into_response()
}

async fn file(State(root): State<Arc<PathBuf>>, UrlPath(rel): UrlPath<String>) -> Response {
    let Some(p) = resolve(&root, &rel) else {
        return (StatusCode::NOT_FOUND, "not found under the served directory\n").into_response();
    };
    if p.is_dir() {
        return listing(&rel, &p).into_response();
    }
    match tokio::fs::read(&p).await {
        Ok(bytes) => ([(header::CONTENT_TYPE, content_type(&p))], bytes).into_response(),
        Err(e) => (StatusCode::NOT_FOUND, format!("{e}\n")).into_response(),
    }
}

async fn root_files(State(root): State<Arc<PathBuf>>) -> Response {
    match resolve(&root, "") {
        Some(p) => listing("", &p).into_response(),
        None => (StatusCode::NOT_FOUND, "the served directory does not exist\n").into_response(),
    }
}

/// A directory under the served one, in the shared shell: its entries
/// linked (directories with a trailing `/`), and the way back to the list.
fn listing(rel: &str, dir: &Path) -> Html<String> {
    let rel = rel.trim_matches('/');
    let mut names: Vec<(String, bool)> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|d| d.ok())
                .filter_map(|d| {
                    let dir = d.file_type().map(|t| t.is_dir()).unwrap_or(false);
                    d.file_name().to_str().map(|n| (n.to_string(), dir))
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let title = if rel.is_empty() { "." } else { rel };
    let body = html! {
        p { a href="/" { "all runs" } }
        h1 { (title) "/" }
        ul { @for (n, is_dir) in &names {
            @let href = if rel.is_empty() { n.clone() } else { format!("{rel}/{n}") };
            @let slash = if *is_dir { "/" } else { "" };
            li { a href=(format!("/files/{}{slash}", url_path(&href))) { (n) (slash) } }
        } }
    };
    Html(page(Kind::Listing, title, body, None))
}

/// The page's routes over `root`: `/` (the list; `?impl=&verdict=`) and
/// `/files/PATH` (a file or directory under `root`), every one behind
/// [`guard`] for a server listening on `port`.
pub fn router(root: PathBuf, port: u16) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/files", get(root_files))
        .route("/files/", get(root_files))
        .route("/files/{*path}", get(file))
        .with_state(Arc::new(root))
        .layer(axum::middleware::from_fn_with_state(port, guard))
}

/// Whether `host` (a request's `Host` header) names this server as the
/// loopback it listens on: `127.0.0.1:PORT`, `localhost:PORT` or `[::1]:PORT`.
pub fn is_loopback_host(host: &str, port: u16) -> bool {
    ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|name| host.eq_ignore_ascii_case(&format!("{name}:{port}")))
}

/// In front of every route. A request whose `Host` is not this server's
/// loopback address is refused with 421 Misdirected Request: a web page
/// elsewhere whose name an attacker points at 127.0.0.1 (DNS rebinding)
/// reaches this port with its own name as the host, and must not read the
/// runs' files. Every answer says `X-Content-Type-Options: nosniff`, so a
/// browser takes a history or a log for the text it is and never runs it
/// as a script or a page.
async fn guard(State(port): State<u16>, request: Request, next: Next) -> Response {
    let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok());
    let mut response = match host {
        Some(h) if is_loopback_host(h, port) => next.run(request).await,
        _ => (
            StatusCode::MISDIRECTED_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "dualcheck serve answers only requests for 127.0.0.1:{port}, localhost:{port} or [::1]:{port}, \
                 not for {}: open http://127.0.0.1:{port}/ instead\n",
                host.unwrap_or("a request without a Host header")
            ),
        )
            .into_response(),
    };
    response
        .headers_mut()
        .insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// Listens on 127.0.0.1:`port` (0: any free port). The error of a port in
/// use has kind [`std::io::ErrorKind::AddrInUse`].
pub async fn bind(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).await
}

/// Serves `root` on `listener` until `shutdown` completes.
pub async fn serve(
    root: PathBuf,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let port = listener.local_addr()?.port();
    axum::serve(listener, router(root, port))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_leading_out_of_the_root_are_refused() {
        let root = std::env::temp_dir().join(format!("dualcheck-serve-unit-{}", std::process::id()));
        std::fs::create_dir_all(root.join("run-1")).unwrap();
        std::fs::write(root.join("run-1/history.jsonl"), "").unwrap();
        assert!(resolve(&root, "run-1/history.jsonl").is_some());
        assert!(resolve(&root, "run-1/../run-1/history.jsonl").is_none());
        assert!(resolve(&root, "../etc/passwd").is_none());
        assert!(
            resolve(&root, "/etc/passwd").is_none(),
            "absolute paths are taken under the root"
        );
        std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
        assert!(resolve(&root, "out/passwd").is_none(), "a symbolic link leading out");
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn group_directories_are_recognised_by_name() {
        assert_eq!(group_command("sweep-1700000000-42"), Some("sweep"));
        assert_eq!(group_command("zoo-1-2"), Some("zoo"));
        assert_eq!(group_command("sweeping"), None);
        assert_eq!(group_command("compare-x"), None);
        assert_eq!(
            utc(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)),
            "2023-11-14 22:13:20"
        );
    }

    #[test]
    fn only_the_loopback_names_with_the_port_are_this_server() {
        for ok in ["127.0.0.1:8750", "localhost:8750", "LOCALHOST:8750", "[::1]:8750"] {
            assert!(is_loopback_host(ok, 8750), "{ok}");
        }
        for refused in [
            "evil.example:8750",
            "127.0.0.1:8751",
            "127.0.0.1",
            "localhost",
            "127.0.0.2:8750",
            "",
        ] {
            assert!(!is_loopback_host(refused, 8750), "{refused}");
        }
    }
}
