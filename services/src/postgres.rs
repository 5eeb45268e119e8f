//! Local PostgreSQL: `initdb` into the run directory (as user `postgres` when the
//! harness is root, since `initdb` refuses root), then `postgres` started directly
//! (not through `pg_ctl`) so the harness owns its process group.
//!
//! Settings: `wal_level=logical` plus replication slots and WAL senders for CDC,
//! `max_prepared_transactions` for two-phase commit, loopback TCP only, no Unix
//! socket. `fsync` stays on: data must survive SIGKILL.

use super::process::{is_root, lookup_user, run_to_completion, tail, ManagedProcess, ProcessSpec};
use super::ready::{fatal, wait_until_ready};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Directory holding `initdb` and `postgres`: `$DUALCHECK_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian's layout).
pub fn bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("DUALCHECK_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; \
             install them with `bash ci/setup` (Debian package `postgresql`) or set DUALCHECK_PG_BIN"
        ),
    }
}

/// A PostgreSQL server owned by the harness.
pub struct LocalPostgres {
    /// The server process.
    pub process: ManagedProcess,
    /// Port it listens on (127.0.0.1).
    pub port: u16,
    /// Data directory.
    pub data_dir: PathBuf,
    /// A data directory made outside the run directory because user
    /// `postgres` cannot reach the run directory: removed with the server.
    outside: Option<PathBuf>,
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        if let Some(dir) = &self.outside {
            // The server first: its files go with the directory.
            self.process.kill().ok();
            std::fs::remove_dir_all(dir).ok();
        }
    }
}

/// Whether user `uid` (group `gid`) may enter every directory from `/` down
/// to `dir` (its existing part): what `initdb`, run as that user, needs.
fn reachable_by(dir: &Path, uid: u32, gid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let mut path = PathBuf::new();
    for part in dir.components() {
        path.push(part);
        let Ok(meta) = std::fs::metadata(&path) else {
            break; // Not made yet: it will be, by root, as 0755.
        };
        let mode = meta.mode();
        let may_enter = if meta.uid() == uid {
            mode & 0o100 != 0
        } else if meta.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !may_enter {
            return false;
        }
    }
    true
}

/// The connection URL of a server on `127.0.0.1:port` (user and database `postgres`, trust auth).
pub fn url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

impl LocalPostgres {
    /// Creates a cluster in `dir/data` and starts it on `port`; returns once it
    /// accepts connections (or fails naming the log file).
    ///
    /// As root, `initdb` and the server run as user `postgres`, who may not be
    /// able to enter `dir` (under root's home, or a `mktemp -d` directory,
    /// both mode 0700): then the data directory is made under the system's
    /// temporary directory instead, named in `dir/`[`record::run_dir::POSTGRES_DATA_ELSEWHERE`],
    /// and removed with the server. The logs stay in `dir`.
    pub async fn start(dir: &Path, port: u16, timeout: Duration) -> Result<Self> {
        let bin = bin_dir()?;
        let mut data_dir = dir.join("data");
        let mut outside = None;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let user = if is_root() {
            Some(lookup_user("postgres")?)
        } else {
            None
        };
        if let Some((uid, gid)) = user {
            let dir = std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
            if reachable_by(&dir, uid, gid) {
                chown(&dir, uid, gid)?;
            } else {
                let elsewhere = tempfile::Builder::new()
                    .prefix("dualcheck-postgres-")
                    .tempdir()
                    .context("making a Postgres data directory user postgres can reach")?
                    .keep();
                if !reachable_by(&elsewhere, uid, gid) {
                    bail!(
                        "user postgres can reach neither {} nor {}: run as another user, or point --out (or TMPDIR) \
                         at a directory every user may enter (e.g. `chmod o+x` on its parents)",
                        dir.display(),
                        elsewhere.display()
                    );
                }
                chown(&elsewhere, uid, gid)?;
                std::fs::write(
                    dir.join(record::run_dir::POSTGRES_DATA_ELSEWHERE),
                    format!(
                        "{}\nThe Postgres data directory lived here because user postgres cannot enter {}; \
                         it is removed when the server ends.\n",
                        elsewhere.join("data").display(),
                        dir.display()
                    ),
                )?;
                data_dir = elsewhere.join("data");
                outside = Some(elsewhere);
            }
        }
        let started = Self::init_and_start(&bin, dir, data_dir, user, port, timeout, outside.clone()).await;
        if started.is_err() {
            if let Some(elsewhere) = &outside {
                std::fs::remove_dir_all(elsewhere).ok();
            }
        }
        started
    }

    /// `initdb` into `data_dir`, then the server, awaited until ready.
    async fn init_and_start(
        bin: &Path,
        dir: &Path,
        data_dir: PathBuf,
        user: Option<(u32, u32)>,
        port: u16,
        timeout: Duration,
        outside: Option<PathBuf>,
    ) -> Result<Self> {
        let template = data_template(bin);
        let copied = template.as_deref().is_some_and(|t| {
            t.join("complete").exists() && super::cache::copy_tree(&t.join("data"), &data_dir, user).is_ok()
        });
        if !copied {
            // Whatever a failed copy left would make initdb refuse the directory.
            let _ = std::fs::remove_dir_all(&data_dir);
            Self::initdb(bin, dir, &data_dir, user).await?;
            if let Some(t) = &template {
                // Later runs copy it (a failure only costs them the initdb).
                if let Err(e) = super::cache::keep_template(t, &[(data_dir.clone(), PathBuf::from("data"))]) {
                    tracing::debug!(
                        "keeping the initialized Postgres data directory in {}: {e:#}",
                        t.display()
                    );
                }
            }
        }
        let spec = ProcessSpec::new(
            "postgres",
            bin.join("postgres"),
            dir.join(record::run_dir::POSTGRES_LOG),
        )
        .args(["-D".as_ref(), data_dir.as_os_str()])
        .args(["-p".to_string(), port.to_string()])
        .args(
            [
                "listen_addresses=127.0.0.1",
                "unix_socket_directories=",
                "wal_level=logical",
                "max_wal_senders=20",
                "max_replication_slots=20",
                "max_prepared_transactions=100",
                "max_connections=200",
                "shared_buffers=128MB",
                "fsync=on",
                "log_min_messages=warning",
            ]
            .iter()
            .flat_map(|s| ["-c".to_string(), s.to_string()]),
        )
        .env("LC_ALL", "C")
        .user(user);
        let process = ManagedProcess::start(spec)?;
        let pg = LocalPostgres {
            process,
            port,
            data_dir,
            outside,
        };
        pg.wait_ready(timeout).await?;
        Ok(pg)
    }

    /// `initdb` into `data_dir` (as `user` when given).
    async fn initdb(bin: &Path, dir: &Path, data_dir: &Path, user: Option<(u32, u32)>) -> Result<()> {
        let init_log = dir.join(record::run_dir::INITDB_LOG);
        let initdb = ProcessSpec::new("initdb", bin.join("initdb"), &init_log)
            .args(["-D".as_ref(), data_dir.as_os_str()])
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .env("LC_ALL", "C")
            .user(user);
        let init = tokio::task::spawn_blocking(move || run_to_completion(&initdb, Duration::from_secs(60)));
        init.await?.with_context(|| {
            format!(
                "initdb into {} (as user postgres when root; the directory must be reachable by that user)",
                data_dir.display()
            )
        })?;
        Ok(())
    }

    /// Waits until the server accepts a query on its own port.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        wait_ready(&url(self.port), Some(&self.process), timeout).await
    }

    /// SIGKILLs the server (all backends), restarts it on the same data and waits until ready.
    pub async fn kill_restart(&self, timeout: Duration) -> Result<()> {
        self.process.kill()?;
        self.process.restart()?;
        self.wait_ready(timeout).await
    }
}

/// Waits until `SELECT 1` succeeds at `url`, up to `timeout`; if `process` has
/// exited meanwhile, fails at once pointing to its log.
pub async fn wait_ready(url: &str, process: Option<&ManagedProcess>, timeout: Duration) -> Result<()> {
    let log = || {
        process
            .map(|p| p.log_path().display().to_string())
            .unwrap_or_else(|| "the server's log".into())
    };
    let what = format!("PostgreSQL at {}", record::redact(url));
    wait_until_ready(
        &what,
        timeout,
        Duration::from_millis(50),
        || format!("read {}", log()),
        || async {
            if let Some(p) = process {
                p.check_alive()
                    .with_context(|| format!("last lines:\n{}", tail(p.log_path(), 15)))
                    .map_err(fatal)?;
            }
            connect(url).await?.simple_query("SELECT 1").await?;
            Ok(())
        },
    )
    .await
}

/// Connects to `url` with tokio-postgres (no TLS) and drives the connection on a
/// background task. The connection dies with the returned client.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let shown = || record::redact(url);
    let mut config: tokio_postgres::Config = url.parse().with_context(|| format!("bad Postgres URL {}", shown()))?;
    config.connect_timeout(Duration::from_secs(5));
    let (client, conn) = config
        .connect(tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {}", shown()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Where a fresh `initdb` of the PostgreSQL in `bin` is kept (`data/` and a
/// `complete` marker), so that a run copies it (~0.1 s) instead of running
/// `initdb` (~1 s): `$DUALCHECK_CACHE/pg-template/<hash of the binaries' path,
/// size and time>`. Nothing in it depends on the run: the server gets its
/// port and settings on its command line. `None` when `initdb` cannot be read.
fn data_template(bin: &Path) -> Option<PathBuf> {
    use std::hash::{Hash, Hasher};
    let initdb = bin.join("initdb").canonicalize().ok()?;
    let meta = std::fs::metadata(&initdb).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (initdb, meta.len(), meta.modified().ok()).hash(&mut h);
    Some(
        super::cache::cache_dir()
            .join("pg-template")
            .join(format!("{:016x}", h.finish())),
    )
}

fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .with_context(|| format!("chown {} to postgres", path.display()))
}
