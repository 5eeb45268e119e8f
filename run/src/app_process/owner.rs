//! The implementation under test as a process the harness owns: a built-in
//! one (`dualcheck app --impl NAME`) or any program (`--impl exec --cmd`),
//! started on a free port with the run's variables, killed, restarted and
//! waited for. What is said to it over HTTP is the client's
//! ([`super::client`]); an [`AppProcess`] dereferences to its [`AppClient`].

use super::client::AppClient;
use crate::template::ServiceTemplate;
use anyhow::{anyhow, Context, Result};
use services::ports::free_port;
use services::process::{tail, ManagedProcess, ProcessSpec};
use services::ready::{fatal, wait_until_ready};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// What to start.
#[derive(Clone, Debug)]
pub enum AppCommand {
    /// A built-in implementation, run as `dualcheck app --impl NAME`.
    Builtin(String),
    /// A user's program, run with `sh -c`.
    Exec(String),
}

/// A running implementation process and its HTTP client: the process is
/// owned here, the contract is spoken by the [`AppClient`] it dereferences to
/// (`app.submit(..)`, `app.backlog()`, ...).
pub struct AppProcess {
    client: AppClient,
    process: Arc<ManagedProcess>,
    /// Serializes kills and restarts (the nemesis and the crash loop may race).
    lifecycle: tokio::sync::Mutex<()>,
    port: u16,
}

impl std::ops::Deref for AppProcess {
    type Target = AppClient;

    fn deref(&self) -> &AppClient {
        &self.client
    }
}

/// The environment variables every implementation process gets ("env" alone
/// means the services, [`services::Environment`]; `--app-env` sets extra ones).
#[derive(Clone, Debug)]
pub struct AppVars {
    /// `DATABASE_URL` (through the Postgres proxy).
    pub database_url: String,
    /// `KAFKA_BOOTSTRAP` (through the Kafka proxies).
    pub kafka_bootstrap: String,
    /// `TOPIC`.
    pub topic: String,
    /// Further variables (`DUALCHECK_RELAYS`, ...).
    pub extra: Vec<(String, String)>,
    /// Which instance this is, from 0 (`--replicas`): `DUALCHECK_INSTANCE`,
    /// and its log's name (the first keeps `app.log`, the second writes `app-1.log`).
    pub instance: usize,
    /// How many instances run (`DUALCHECK_REPLICAS`).
    pub replicas: usize,
}

impl AppVars {
    /// The same variables for instance `instance`.
    pub fn for_instance(&self, instance: usize) -> AppVars {
        AppVars {
            instance,
            ..self.clone()
        }
    }
}

/// The `dualcheck` binary that serves built-in implementations: `explicit`, else `DUALCHECK_BIN`, else this executable.
fn dualcheck_bin(explicit: Option<&Path>) -> Result<std::path::PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("DUALCHECK_BIN") {
        return Ok(p.into());
    }
    let current = std::env::current_exe().context("locating the dualcheck executable (set DUALCHECK_BIN)")?;
    Ok(still_this_executable(current))
}

/// `current` (this executable's path), or `/proc/self/exe` when that path
/// no longer names it: a binary replaced or deleted while a sweep or a gate
/// runs (an upgrade, a rebuild) is still running, and its later runs start
/// the same code as its first ones instead of failing to start the app
/// (Linux reports the path as `PATH (deleted)`).
fn still_this_executable(current: std::path::PathBuf) -> std::path::PathBuf {
    let proc_exe = Path::new("/proc/self/exe");
    if !current.exists() && proc_exe.exists() {
        return proc_exe.to_path_buf();
    }
    current
}

impl AppProcess {
    /// Starts the process with `env` on a free port, its output in `run_dir/app.log`,
    /// and waits until it answers HTTP.
    pub async fn start(command: &AppCommand, env: &AppVars, run_dir: &Path, timeout: Duration) -> Result<AppProcess> {
        Self::start_role(command, env, run_dir, timeout, None).await
    }

    /// Starts a built-in implementation in one role (`DUALCHECK_ROLE`): the
    /// `relay` of a pattern whose relay is its own process logs to `relay.log`,
    /// the `service` (and a whole program) to `app.log`.
    pub async fn start_role(
        command: &AppCommand,
        env: &AppVars,
        run_dir: &Path,
        timeout: Duration,
        role: Option<&str>,
    ) -> Result<AppProcess> {
        Self::start_with_bin(command, env, run_dir, timeout, role, None).await
    }

    /// Starts the built-in implementation `name` served by the `dualcheck`
    /// binary at `bin` (instead of `DUALCHECK_BIN` or this executable: a test
    /// names the binary cargo built for it).
    pub async fn start_builtin(
        bin: &Path,
        name: &str,
        env: &AppVars,
        run_dir: &Path,
        timeout: Duration,
    ) -> Result<AppProcess> {
        Self::start_with_bin(
            &AppCommand::Builtin(name.to_string()),
            env,
            run_dir,
            timeout,
            None,
            Some(bin),
        )
        .await
    }

    /// [`AppProcess::start_role`], a built-in served by the `dualcheck` binary `bin` when given.
    pub async fn start_with_bin(
        command: &AppCommand,
        env: &AppVars,
        run_dir: &Path,
        timeout: Duration,
        role: Option<&str>,
        bin: Option<&Path>,
    ) -> Result<AppProcess> {
        let port = free_port()?;
        let log = record::run_dir::RunDir::at(run_dir).instance_log(role, env.instance);
        // The first instance keeps the plain name, the others are numbered.
        let numbered = |label: String| match env.instance {
            0 => label,
            i => format!("{label} #{i}"),
        };
        let (name, spec) = match command {
            AppCommand::Builtin(name) => {
                let label = numbered(match role {
                    Some(r) => format!("{r} {name}"),
                    None => format!("app {name}"),
                });
                let mut spec = ProcessSpec::new(&label, dualcheck_bin(bin)?, &log).args(["app", "--impl", name]);
                if let Some(r) = role {
                    spec = spec.env("DUALCHECK_ROLE", r);
                }
                (label, spec)
            }
            AppCommand::Exec(cmd) => (
                numbered("exec".to_string()),
                ProcessSpec::new("exec program", "/bin/sh", &log).args(["-c", cmd.as_str()]),
            ),
        };
        let mut spec = spec;
        // Its working directory is the run's: its files land there, and any
        // process left behind is easy to find by its cwd.
        spec.cwd = Some(run_dir.to_path_buf());
        let mut spec = spec
            .env("DATABASE_URL", &env.database_url)
            .env("KAFKA_BOOTSTRAP", &env.kafka_bootstrap)
            .env("TOPIC", &env.topic)
            .env("PORT", port.to_string())
            .env("DUALCHECK_INSTANCE", env.instance.to_string())
            .env("DUALCHECK_REPLICAS", env.replicas.max(1).to_string());
        for (k, v) in &env.extra {
            spec = spec.env(k, v);
        }
        let process = Arc::new(ManagedProcess::start(spec)?);
        let app = AppProcess {
            client: AppClient::new(&name, port)?,
            process,
            lifecycle: tokio::sync::Mutex::new(()),
            port,
        };
        app.wait_ready(timeout).await?;
        Ok(app)
    }

    /// Speaks to the program through `template` (its own write and read
    /// requests) instead of `POST /ops` and `GET /ops/{key}` where it gives them.
    pub fn with_template(mut self, template: ServiceTemplate) -> AppProcess {
        self.client.set_template(template);
        self
    }

    /// The run's database (unproxied), where a template's `--backlog-sql` is asked.
    pub fn with_database(mut self, url: &str) -> AppProcess {
        self.client.set_database(url);
        self
    }

    /// Waits until the program answers any HTTP request (`GET /health`), or fails
    /// with its log's last lines if it exits or stays silent.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let log = self.process.log_path();
        let last_lines = || format!("--- last lines of {} ---\n{}", log.display(), tail(log, 20));
        let name = self.client.name();
        wait_until_ready(
            &format!("the implementation ({name}) at {}", self.client.base_url()),
            timeout,
            // Every run waits here once per process: a short poll, as a program
            // starting in ~0.1 s would otherwise wait most of another 100 ms.
            Duration::from_millis(20),
            || {
                format!(
                    "it did not answer HTTP; it must listen on 127.0.0.1:$PORT\n{}",
                    last_lines()
                )
            },
            || async {
                if let Err(e) = self.process.check_alive() {
                    return Err(fatal(anyhow!(
                        "the implementation ({name}) exited before answering: {e:#}\n{}",
                        last_lines()
                    )));
                }
                self.client.answers_http().await
            },
        )
        .await
    }

    /// Whether the process is running.
    pub fn is_alive(&self) -> bool {
        self.process.check_alive().is_ok()
    }

    /// SIGKILLs the process (its whole group).
    pub async fn kill(&self) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        let p = self.process.clone();
        tokio::task::spawn_blocking(move || p.kill()).await?
    }

    /// Starts the process again (killing it first if it runs). Does not wait
    /// until it answers: while a dependency is down it may not, and ops simply
    /// fail until it does; use [`AppProcess::wait_ready`] where that matters.
    pub async fn restart(&self) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        let p = self.process.clone();
        tokio::task::spawn_blocking(move || p.restart()).await?
    }

    /// Ends the process as a deploy does — SIGTERM, up to `grace` to exit,
    /// then SIGKILL — and starts it again. Does not wait until it answers.
    pub async fn redeploy(&self, grace: Duration) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        let p = self.process.clone();
        tokio::task::spawn_blocking(move || {
            // Whether it ended in time or not (or was not running: it
            // crashed), `restart` SIGKILLs what is left, then starts it.
            let _ = p.terminate(grace);
            p.restart()
        })
        .await?
    }

    /// [`AppProcess::redeploy`], the new process with `env` on top of its
    /// own variables from now on (every later restart keeps them; an empty
    /// `env` takes them away again): how a clock is skewed.
    pub async fn redeploy_with_env(&self, grace: Duration, env: Vec<(String, String)>) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        let p = self.process.clone();
        tokio::task::spawn_blocking(move || {
            let _ = p.terminate(grace);
            p.set_extra_env(env);
            p.restart()
        })
        .await?
    }

    /// Starts the process if it is not running (it died or was killed).
    pub async fn ensure_running(&self) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        if self.process.check_alive().is_ok() {
            return Ok(());
        }
        let p = self.process.clone();
        tokio::task::spawn_blocking(move || p.restart()).await?
    }

    /// The program's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// Process ids of the program and its children.
    pub fn pids(&self) -> Vec<i32> {
        self.process.all_pids()
    }

    /// How the process last ended (`None` while it never has).
    pub fn exit_status(&self) -> Option<std::process::ExitStatus> {
        self.process.last_exit()
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The port it serves HTTP on (the same after every restart).
    pub fn port(&self) -> u16 {
        self.port
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_executable_is_still_started_through_proc() {
        let gone = std::path::PathBuf::from("/nonexistent/dualcheck (deleted)");
        assert_eq!(still_this_executable(gone), Path::new("/proc/self/exe"));
        let here = std::env::current_exe().unwrap();
        assert_eq!(still_this_executable(here.clone()), here);
    }
}
