//! The run directory: how one is named and created, and the name of every file
//! in it. Nothing else in the harness spells these names, so a file moves or
//! is renamed here and nowhere else.
//!
//! ```text
//! runs/run-<secs>-<pid>-<n>-<implementation>-seed<seed>/
//!   history.jsonl     the history (the checker's only input)
//!   schedule.json     the fault schedule
//!   results.json      the runner's results (a `RunOutcome`)
//!   environment.json  service versions and the run's configuration
//!   report.html       the HTML report        (`dualcheck report` rewrites
//!   junit.xml         one case per anomaly    both from the history)
//!   ops.jsonl         operational series sampled every 500 ms (backlog, slots' WAL, outbox size)
//!   app.log           the implementation (or its `service` role)
//!   relay.log         the relay, for patterns whose relay is a process
//!   app-1.log, relay-1.log, ...   the further instances (`--replicas`)
//!   toxiproxy.log, postgres/, kafka/   the local services' data and logs
//!   shrunk/           `dualcheck shrink`: schedule.json, workload.json, commands.txt,
//!                     verification.rs, shrink.jsonl, summary.json, report.html, runs/
//! ```

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The history file.
pub const HISTORY: &str = "history.jsonl";
/// The runner's results (a `RunOutcome`).
pub const RESULTS: &str = "results.json";
/// The fault schedule.
pub const SCHEDULE: &str = "schedule.json";
/// Service versions and the run's configuration, written by the runner.
pub const ENVIRONMENT: &str = "environment.json";
/// Operational series sampled during the run, one JSON line per sample (`ops_series`).
pub const OPS_SERIES: &str = "ops.jsonl";
/// The JUnit file.
pub const JUNIT: &str = "junit.xml";
/// The HTML report.
pub const REPORT_HTML: &str = "report.html";
/// Output of the implementation process (of its `service` role when the relay runs apart).
pub const APP_LOG: &str = "app.log";
/// Output of the relay process (patterns whose relay is a process of its own).
pub const RELAY_LOG: &str = "relay.log";
/// The directory a shrink writes, inside the run directory.
pub const SHRUNK_DIR: &str = "shrunk";
/// The minimal schedule, in `shrunk/`.
pub const SHRUNK_SCHEDULE: &str = "schedule.json";
/// The minimal workload and duration, in `shrunk/`.
pub const SHRUNK_WORKLOAD: &str = "workload.json";
/// The run's `--schema` SQL, written out for the reproduction line.
pub const SHRUNK_SCHEMA: &str = "schema.sql";
/// The command lines (replay, and the `dualcheck run` line for CI), in `shrunk/`.
pub const SHRUNK_COMMANDS: &str = "commands.txt";
/// The `Verification` snippet for a Rust regression test, in `shrunk/`.
pub const SHRUNK_VERIFICATION: &str = "verification.rs";
/// Every candidate and its outcome, one JSON object a line, in `shrunk/`.
pub const SHRUNK_LOG: &str = "shrink.jsonl";
/// The outcome of the shrink, in `shrunk/`.
pub const SHRUNK_SUMMARY: &str = "summary.json";
/// The report of the best reproducing run, copied into `shrunk/`.
pub const SHRUNK_REPORT: &str = "report.html";
/// The runs of the shrink (one directory per try), in `shrunk/`.
pub const SHRUNK_RUNS: &str = "runs";

/// Output of the local Toxiproxy server.
pub const TOXIPROXY_LOG: &str = "toxiproxy.log";
/// Directory of the local PostgreSQL server (data and logs).
pub const POSTGRES_DIR: &str = "postgres";
/// `initdb`'s output, in [`POSTGRES_DIR`].
pub const INITDB_LOG: &str = "initdb.log";
/// The PostgreSQL server's output, in [`POSTGRES_DIR`].
pub const POSTGRES_LOG: &str = "postgres.log";
/// Beside the Postgres logs when the data directory had to live elsewhere
/// (user postgres cannot enter the run directory): where, and why.
pub const POSTGRES_DATA_ELSEWHERE: &str = "data-dir-elsewhere.txt";
/// Directory of the local Kafka nodes (one `node-N` each).
pub const KAFKA_DIR: &str = "kafka";
/// `kafka-storage format`'s output, in a Kafka node's directory.
pub const KAFKA_FORMAT_LOG: &str = "format.log";
/// A Kafka node's output, in its directory.
pub const KAFKA_LOG: &str = "kafka.log";

/// One run directory. It only names paths: creating one is [`RunDir::create`]
/// or [`RunDir::create_for_run`], the files are written by their owners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// A run directory at `path` (nothing is created or checked).
    pub fn at(path: impl Into<PathBuf>) -> RunDir {
        RunDir { path: path.into() }
    }

    /// Creates a fresh run directory (mode 0755, so the `postgres` user can
    /// enter it) under `base`, default `$TMPDIR/dualcheck`.
    pub fn create(base: Option<&Path>) -> Result<RunDir> {
        use std::os::unix::fs::PermissionsExt;
        static N: AtomicU32 = AtomicU32::new(0);
        let base = base
            .map(Path::to_path_buf)
            .unwrap_or_else(|| std::env::temp_dir().join("dualcheck"));
        let dir = base.join(format!(
            "run-{}-{}-{}",
            unix_secs(),
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating run directory {}", dir.display()))?;
        for d in [&base, &dir] {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("chmod 755 {}", d.display()))?;
        }
        Ok(RunDir { path: dir })
    }

    /// Creates the directory of one `dualcheck run` under `out_dir` (created
    /// if missing): `run-<secs>-<pid>-<n>-<implementation>-seed<seed>`, an
    /// absolute path.
    pub fn create_for_run(out_dir: &Path, implementation: &str, seed: u64) -> Result<RunDir> {
        create_out(out_dir)?;
        let out_dir = out_dir.canonicalize()?;
        let fresh = RunDir::create(Some(&out_dir))?;
        let named = out_dir.join(format!(
            "{}-{implementation}-seed{seed}",
            fresh.path.file_name().and_then(|n| n.to_str()).unwrap_or("run"),
        ));
        std::fs::rename(&fresh.path, &named)?;
        Ok(RunDir { path: named })
    }

    /// Finds the history of `path`: a run directory holding [`HISTORY`], or a
    /// history file itself (its directory is then the run directory).
    pub fn locate(path: &Path) -> Result<(RunDir, PathBuf)> {
        if path.is_dir() {
            let h = path.join(HISTORY);
            if !h.is_file() {
                bail!(
                    "{} holds no {HISTORY}: give a run directory written by `dualcheck run`, or a history file",
                    path.display()
                );
            }
            Ok((RunDir::at(path), h))
        } else if path.is_file() {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("."));
            Ok((RunDir::at(dir), path.to_path_buf()))
        } else {
            bail!("{}: no such run directory or history file", path.display())
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory, owned.
    pub fn into_path(self) -> PathBuf {
        self.path
    }

    /// [`HISTORY`] in it.
    pub fn history(&self) -> PathBuf {
        self.path.join(HISTORY)
    }

    /// [`RESULTS`] in it.
    pub fn results(&self) -> PathBuf {
        self.path.join(RESULTS)
    }

    /// [`SCHEDULE`] in it.
    pub fn schedule(&self) -> PathBuf {
        self.path.join(SCHEDULE)
    }

    /// [`ENVIRONMENT`] in it.
    pub fn environment(&self) -> PathBuf {
        self.path.join(ENVIRONMENT)
    }

    /// [`OPS_SERIES`] in it.
    pub fn ops_series(&self) -> PathBuf {
        self.path.join(OPS_SERIES)
    }

    /// [`JUNIT`] in it.
    pub fn junit(&self) -> PathBuf {
        self.path.join(JUNIT)
    }

    /// [`REPORT_HTML`] in it.
    pub fn report_html(&self) -> PathBuf {
        self.path.join(REPORT_HTML)
    }

    /// [`APP_LOG`] in it.
    pub fn app_log(&self) -> PathBuf {
        self.path.join(APP_LOG)
    }

    /// The log of an implementation process in `role` (`DUALCHECK_ROLE`):
    /// [`RELAY_LOG`] for the `relay`, [`APP_LOG`] for the `service` and a whole program.
    pub fn role_log(&self, role: Option<&str>) -> PathBuf {
        self.path.join(if role == Some("relay") { RELAY_LOG } else { APP_LOG })
    }

    /// Every implementation log in it, first instance first: `app.log`,
    /// `relay.log`, then `app-1.log`, `relay-1.log`, ... as long as either exists.
    pub fn implementation_logs(&self) -> Vec<PathBuf> {
        let mut out = vec![self.app_log(), self.role_log(Some("relay"))];
        for i in 1.. {
            let more: Vec<PathBuf> = [None, Some("relay")]
                .into_iter()
                .map(|r| self.instance_log(r, i))
                .filter(|p| p.exists())
                .collect();
            if more.is_empty() {
                break;
            }
            out.extend(more);
        }
        out
    }

    /// The log of instance `instance` (from 0, `--replicas`) in `role`: the
    /// first's is [`RunDir::role_log`], the others' `app-1.log`, `relay-1.log`, ...
    pub fn instance_log(&self, role: Option<&str>, instance: usize) -> PathBuf {
        let first = self.role_log(role);
        if instance == 0 {
            return first;
        }
        let stem = first.file_stem().and_then(|s| s.to_str()).unwrap_or("app").to_string();
        self.path.join(format!("{stem}-{instance}.log"))
    }
}

/// Creates the directory of one `dualcheck sweep` (or `compare`: `command`)
/// under `out` (created if missing): `<command>-<secs>-<pid>`, an absolute
/// path; its runs and the services' logs go inside it.
pub fn create_sweep_dir(out: &Path, command: &str) -> Result<PathBuf> {
    create_out(out)?;
    let dir = out
        .canonicalize()?
        .join(format!("{command}-{}-{}", unix_secs(), std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Creates `--out` if missing and checks that a directory can be made in it,
/// before any service starts: the error names the flag and the fix.
fn create_out(out: &Path) -> Result<()> {
    let fix = "point --out at a directory you can write";
    std::fs::create_dir_all(out).with_context(|| format!("--out {}: cannot create it; {fix}", out.display()))?;
    let probe = tempfile::Builder::new()
        .prefix(".dualcheck-write-check-")
        .tempdir_in(out)
        .with_context(|| format!("--out {}: cannot write in it; {fix}", out.display()))?;
    drop(probe);
    Ok(())
}

/// Seconds since the Unix epoch (names of run, sweep and shrink directories).
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_directory_is_named_after_its_implementation_and_seed() {
        let out = std::env::temp_dir().join(format!("dualcheck-rundir-{}", std::process::id()));
        let d = RunDir::create_for_run(&out, "outbox-poll", 7).unwrap();
        let name = d.path().file_name().unwrap().to_str().unwrap().to_string();
        assert!(
            name.starts_with("run-") && name.ends_with("-outbox-poll-seed7"),
            "{name}"
        );
        assert!(d.path().is_absolute() && d.path().is_dir());
        assert_eq!(d.history(), d.path().join("history.jsonl"));
        assert_eq!(d.role_log(Some("relay")), d.path().join("relay.log"));
        assert_eq!(d.role_log(Some("service")), d.path().join("app.log"));
        assert_eq!(d.instance_log(Some("service"), 0), d.path().join("app.log"));
        assert_eq!(d.instance_log(None, 2), d.path().join("app-2.log"));
        assert_eq!(d.instance_log(Some("relay"), 1), d.path().join("relay-1.log"));
        assert!(RunDir::locate(d.path()).is_err(), "no history yet");
        std::fs::write(d.history(), "").unwrap();
        let (found, history) = RunDir::locate(d.path()).unwrap();
        assert_eq!((found, history), (d.clone(), d.history()));
        let (found, _) = RunDir::locate(&d.history()).unwrap();
        assert_eq!(found, d);
        let _ = std::fs::remove_dir_all(out);
    }
}
