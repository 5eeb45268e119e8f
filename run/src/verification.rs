//! The library API for verifying an implementation from `cargo test`
//! (`dualcheck::verification`, as a team's tests name it; here, in the run
//! crate, `dualcheck_run::verification`).
//!
//! ```no_run
//! use dualcheck_run::nemesis::Fault;
//! use dualcheck_run::verification::Verification;
//! use std::time::Duration;
//!
//! # async fn demo() -> anyhow::Result<()> {
//! let outcome = Verification::exec("python3 svc.py")
//!     .committed_sql("SELECT op FROM orders")
//!     .faults([Fault::KafkaPartition, Fault::RelayKill])
//!     .duration(Duration::from_secs(20))
//!     .seed(1)
//!     .run()
//!     .await?;
//! outcome.assert_valid();
//! # Ok(())
//! # }
//! ```
//!
//! # Why the implementation is always a separate process
//!
//! Faults such as `relay-kill` and `crash-after-commit` are SIGKILLs of the
//! implementation's process, followed by a restart: only a real process death
//! shows what a crash between commit and publish does (in-memory queues and
//! unflushed producers vanish, open transactions are rolled back by Postgres).
//! A pattern living inside the test binary could not be killed without killing
//! the test. So a Rust team verifies its own pattern like this:
//!
//! 1. implement [`implementations::Pattern`] in its crate, describe it with an
//!    [`implementations::PatternInfo`];
//! 2. add a small binary (`src/main.rs`, or `examples/`) whose `main` calls
//!    [`implementations::serve`] with that info and
//!    [`implementations::AppConfig::from_env`]: it speaks the black-box HTTP
//!    contract on `127.0.0.1:$PORT`;
//! 3. in an integration test, `Verification::exec(env!("CARGO_BIN_EXE_<bin>"))`.
//!
//! `examples/rust-outbox/` in the dualcheck repository does exactly that.
//! Services in any other language use [`Verification::exec`] with their own
//! command line, like `dualcheck run --impl exec --cmd ...`.

use crate::app_process::AppCommand;
use crate::nemesis::Fault;
use crate::runner::{RunConfig, RunOutcome};
use anyhow::{bail, Context, Result};
use services::BackendKind;
use std::path::{Path, PathBuf};
use std::time::Duration;
use workloads::Workload;

/// One verification run, configured step by step; [`Verification::run`] starts
/// the real services, runs the workload under the faults and checks the history.
///
/// Defaults are those of `dualcheck run` (30 s, no faults, seed 0, 100 ops/s,
/// 8 workers, 32 keys, run directories under `runs/`).
#[derive(Debug, Clone)]
pub struct Verification {
    cfg: RunConfig,
    builtin: Option<String>,
    schema_file: Option<PathBuf>,
}

impl Verification {
    /// Verifies any program, started with `sh -c COMMAND` (with `DATABASE_URL`,
    /// `KAFKA_BOOTSTRAP`, `TOPIC` and `PORT` in its environment). The committed
    /// ops are read with `SELECT op FROM orders` unless
    /// [`Verification::committed_sql`] says otherwise.
    pub fn exec(command: impl Into<String>) -> Verification {
        Verification {
            cfg: RunConfig::new(AppCommand::Exec(command.into()), implementations::ORDERS_COMMITTED_SQL),
            builtin: None,
            schema_file: None,
        }
    }

    /// Verifies a built-in implementation (`outbox-poll`, ...; see `dualcheck list`).
    ///
    /// It runs as `dualcheck app --impl NAME`, so the `dualcheck` binary must be
    /// found: `DUALCHECK_BIN`, else the running executable if it is `dualcheck`,
    /// else `dualcheck` on `PATH`. An unknown name is reported by [`Verification::run`].
    pub fn builtin(name: &str) -> Verification {
        let committed_sql = implementations::lookup(name)
            .map(|i| i.committed_sql)
            .unwrap_or(implementations::ORDERS_COMMITTED_SQL);
        Verification {
            cfg: RunConfig::new(AppCommand::Builtin(name.to_string()), committed_sql),
            builtin: Some(name.to_string()),
            schema_file: None,
        }
    }

    /// Speaks to the program through its own API and reads its own records:
    /// request, read and backlog templates and the record mapping, e.g.
    /// `TemplateOptions { file: Some("dualcheck-template.toml".into()), ..Default::default() }.resolve()?`
    /// (with [`crate::template::ResolveTemplate`] in scope)
    /// (docs/http-contract.md#templates). A template that cannot ask for a
    /// rollback gets no aborts.
    pub fn template(mut self, template: crate::template::ServiceTemplate) -> Self {
        self.cfg.reads |= template.read.is_some();
        self.cfg.template = template;
        self
    }

    /// The query returning the op id (an integer in the first column) of every
    /// op whose business effect is in the database.
    pub fn committed_sql(mut self, sql: impl Into<String>) -> Self {
        self.cfg.committed_sql = sql.into();
        self
    }

    /// SQL run on the run's database before the implementation starts.
    pub fn schema_sql(mut self, sql: impl Into<String>) -> Self {
        self.cfg.schema_sql = Some(sql.into());
        self.schema_file = None;
        self
    }

    /// Like [`Verification::schema_sql`], read from a file when the run starts.
    pub fn schema_file(mut self, path: impl AsRef<Path>) -> Self {
        self.schema_file = Some(path.as_ref().to_path_buf());
        self
    }

    /// The faults the seeded schedule chooses from (none by default).
    pub fn faults(mut self, faults: impl IntoIterator<Item = Fault>) -> Self {
        let mut f: Vec<Fault> = faults.into_iter().collect();
        f.sort();
        f.dedup();
        self.cfg.faults = f;
        self
    }

    /// How long the workload runs.
    pub fn duration(mut self, d: Duration) -> Self {
        self.cfg.duration = d;
        self
    }

    /// Seed of the workload and of the fault schedule.
    pub fn seed(mut self, seed: u64) -> Self {
        self.cfg.workload.seed = seed;
        self
    }

    /// The whole workload (rate, concurrency, keys, skew, aborts, long
    /// transactions); its seed replaces the one set by [`Verification::seed`].
    pub fn workload(mut self, w: Workload) -> Self {
        self.cfg.workload = w;
        self
    }

    /// Target ops per second over all workers (0 = unlimited).
    pub fn rate(mut self, ops_per_s: f64) -> Self {
        self.cfg.workload.rate = ops_per_s;
        self
    }

    /// Worker tasks (each owns a share of the keys, one op at a time per key).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.cfg.workload.concurrency = n;
        self
    }

    /// Distinct business keys.
    pub fn keys(mut self, n: usize) -> Self {
        self.cfg.workload.keys = n;
        self
    }

    /// Kafka brokers (1, or 3; `kafka-leader` picks 3 by itself).
    pub fn brokers(mut self, n: usize) -> Self {
        self.cfg.brokers = n;
        self
    }

    /// Partitions of the topic.
    pub fn partitions(mut self, n: i32) -> Self {
        self.cfg.partitions = n;
        self
    }

    /// One more environment variable for the implementation process.
    pub fn env(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.cfg.app_vars.push((name.into(), value.into()));
        self
    }

    /// Follows this fault schedule (e.g. the `schedule.json` a `dualcheck
    /// shrink` wrote) instead of generating one from the seed; its faults
    /// must also be given to [`Verification::faults`] (they decide the brokers).
    pub fn schedule(mut self, schedule: workloads::Schedule<Fault>) -> Self {
        self.cfg.schedule = Some(schedule);
        self
    }

    /// Where run directories go (default `runs/`, relative to the working
    /// directory: the crate's directory under `cargo test`).
    pub fn out_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cfg.out_dir = dir.as_ref().to_path_buf();
        self
    }

    /// Timeout of one op (a timeout is recorded as `info`).
    pub fn op_timeout(mut self, d: Duration) -> Self {
        self.cfg.op_timeout = d;
        self
    }

    /// How long the implementation may take to answer HTTP after it starts.
    pub fn start_timeout(mut self, d: Duration) -> Self {
        self.cfg.start_timeout = d;
        self
    }

    /// Longest drain after healing.
    pub fn drain_timeout(mut self, d: Duration) -> Self {
        self.cfg.drain_timeout = d;
        self
    }

    /// Count duplicates (same event id) as violations too.
    pub fn exactly_once(mut self, on: bool) -> Self {
        self.cfg.exactly_once = on;
        self
    }

    /// Read each key back after each acknowledged write (`GET /ops/{key}`) and
    /// judge `stale_read` (default: the pattern's `reads_by_default`).
    pub fn reads(mut self, on: bool) -> Self {
        self.cfg.reads = on;
        self
    }

    /// Which services (local processes by default).
    pub fn backend(mut self, backend: BackendKind) -> Self {
        self.cfg.backend = backend;
        self
    }

    /// A progress line on stderr while it runs.
    pub fn progress(mut self, on: bool) -> Self {
        self.cfg.progress = on;
        self
    }

    /// The `dualcheck` binary that serves a built-in implementation (default:
    /// `DUALCHECK_BIN`, the running executable if it is `dualcheck`, else
    /// `dualcheck` on `PATH`).
    pub fn dualcheck_bin(mut self, path: impl AsRef<Path>) -> Self {
        self.cfg.dualcheck_bin = Some(path.as_ref().to_path_buf());
        self
    }

    /// The run configuration as it stands (schema file not read yet).
    pub fn config(&self) -> &RunConfig {
        &self.cfg
    }

    /// Runs it: the services start, the implementation starts, the workload
    /// runs under the faults, everything heals and drains, the history is
    /// checked. `Err` means the run could not be carried out (services
    /// missing: run `bash ci/setup`; the program never answered; ...); a run
    /// that found anomalies is `Ok` with `result.valid == false`.
    pub async fn run(self) -> Result<RunOutcome> {
        let mut cfg = self.cfg;
        if let Some(p) = &self.schema_file {
            cfg.schema_sql =
                Some(std::fs::read_to_string(p).with_context(|| format!("reading the schema file {}", p.display()))?);
        }
        if let Some(name) = &self.builtin {
            implementations::lookup(name)?;
            if cfg.dualcheck_bin.is_none() {
                cfg.dualcheck_bin = locate_dualcheck_bin()?;
            }
        }
        crate::runner::run(cfg).await
    }
}

/// The `dualcheck` binary that serves built-in implementations (a test binary
/// is not it): `None` when `DUALCHECK_BIN` or the running executable is it
/// (the runner finds those itself), else `dualcheck` on `PATH`. Returned, not
/// put into the process environment: library code leaves that alone.
fn locate_dualcheck_bin() -> Result<Option<PathBuf>> {
    if std::env::var_os("DUALCHECK_BIN").is_some() {
        return Ok(None);
    }
    let current = std::env::current_exe().ok();
    if current
        .as_deref()
        .and_then(|p| p.file_stem())
        .is_some_and(|n| n == "dualcheck")
    {
        return Ok(None);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("dualcheck"))
            .find(|p| p.is_file())
    });
    match on_path {
        Some(p) => Ok(Some(p)),
        None => bail!(
            "Verification::builtin needs the dualcheck binary to serve the implementation: set DUALCHECK_BIN \
             (e.g. to env!(\"CARGO_BIN_EXE_dualcheck\") in dualcheck's own tests) or put `dualcheck` on PATH \
             (`cargo install --git https://github.com/dualcheck/dualcheck dualcheck`)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_sets_the_run_configuration() {
        let v = Verification::exec("python3 svc.py")
            .committed_sql("SELECT id FROM payments")
            .faults([Fault::RelayKill, Fault::KafkaPartition, Fault::RelayKill])
            .duration(Duration::from_secs(7))
            .seed(42)
            .rate(50.0)
            .keys(4)
            .env("A", "b")
            .start_timeout(Duration::from_secs(3));
        let c = v.config();
        assert!(matches!(&c.app, AppCommand::Exec(cmd) if cmd == "python3 svc.py"));
        assert_eq!(c.committed_sql, "SELECT id FROM payments");
        assert_eq!(c.faults, vec![Fault::KafkaPartition, Fault::RelayKill]);
        assert_eq!(c.duration, Duration::from_secs(7));
        assert_eq!((c.workload.seed, c.workload.rate, c.workload.keys), (42, 50.0, 4));
        assert_eq!(c.app_vars, vec![("A".to_string(), "b".to_string())]);
        assert_eq!(c.start_timeout, Duration::from_secs(3));
        let b = Verification::builtin("outbox-xid");
        assert_eq!(
            b.config().committed_sql,
            implementations::lookup("outbox-xid").unwrap().committed_sql
        );
    }

    #[tokio::test]
    async fn unknown_builtins_and_missing_schema_files_fail_before_any_service_starts() {
        let e = Verification::builtin("outbox-magic")
            .run()
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown implementation") && e.contains("outbox-poll"), "{e}");
        let e = Verification::exec("true")
            .schema_file("/nonexistent/schema.sql")
            .run()
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/schema.sql"), "{e:#}");
    }
}
