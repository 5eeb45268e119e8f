//! The implementation under test as a process the harness owns: a built-in
//! one (`dualcheck app --impl NAME`) or any program (`--impl exec --cmd`),
//! both spoken to through the black-box HTTP contract (docs/http-contract.md).

use crate::env::ports::free_port;
use crate::env::process::{tail, ManagedProcess, ProcessSpec};
use crate::env::ready::{fatal, wait_until_ready};
use crate::template::{RequestTemplate, ServiceTemplate};
use anyhow::{anyhow, bail, Context, Result};
use implementations::{Backlog, Op};
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

/// The implementation's reply to `POST /ops` as the client classifies it, in
/// the history's terms (an `ok`, `fail` or `info` line with its error): the
/// client side of [`implementations::OpAnswer`], plus what the wire adds
/// (timeouts, refused connections).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// 2xx: took effect.
    Ok,
    /// 409, or the request never reached the program: certainly not applied.
    Fail(String),
    /// Anything else, or a timeout: unknown.
    Info(String),
}

/// A running implementation process and its HTTP client.
pub struct AppProcess {
    process: Arc<ManagedProcess>,
    /// Serializes kills and restarts (the nemesis and the crash loop may race).
    lifecycle: tokio::sync::Mutex<()>,
    port: u16,
    base_url: String,
    http: reqwest::Client,
    name: String,
    /// Woken each time an op is acknowledged (2xx): the `crash-after-commit`
    /// fallback for programs without a crash point kills right then.
    op_ok: tokio::sync::Notify,
    /// The service's own write and read requests, when a template gives them
    /// (else `POST /ops` and `GET /ops/{key}`).
    template: Arc<ServiceTemplate>,
    /// Set once `GET /backlog` answered 200 with a body that is not
    /// `{"backlog": N, ...}`: said once, then the program counts as having no
    /// backlog endpoint (the drain waits for its quiet period).
    backlog_not_understood: std::sync::Mutex<Option<String>>,
}

/// Whether `POST /crash-after-commit` armed the program's crash point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Armed: the program dies after its next commit, before its publish.
    Armed,
    /// The program has no crash point (404/405/501): the nemesis falls back to
    /// a SIGKILL right after the next acknowledged op.
    Unsupported,
}

/// The environment variables every implementation process gets ("env" alone
/// means the services, [`crate::env::Environment`]; `--app-env` sets extra ones).
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
}

/// The `dualcheck` binary that serves built-in implementations: `explicit`, else `DUALCHECK_BIN`, else this executable.
fn dualcheck_bin(explicit: Option<&Path>) -> Result<std::path::PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("DUALCHECK_BIN") {
        return Ok(p.into());
    }
    std::env::current_exe().context("locating the dualcheck executable (set DUALCHECK_BIN)")
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
        let log = crate::run_dir::RunDir::at(run_dir).role_log(role);
        let (name, spec) = match command {
            AppCommand::Builtin(name) => {
                let label = match role {
                    Some(r) => format!("{r} {name}"),
                    None => format!("app {name}"),
                };
                let mut spec = ProcessSpec::new(&label, dualcheck_bin(bin)?, &log).args(["app", "--impl", name]);
                if let Some(r) = role {
                    spec = spec.env("DUALCHECK_ROLE", r);
                }
                (label, spec)
            }
            AppCommand::Exec(cmd) => (
                "exec".to_string(),
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
            .env("PORT", port.to_string());
        for (k, v) in &env.extra {
            spec = spec.env(k, v);
        }
        let process = Arc::new(ManagedProcess::start(spec)?);
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        let app = AppProcess {
            process,
            lifecycle: tokio::sync::Mutex::new(()),
            port,
            base_url: format!("http://127.0.0.1:{port}"),
            http,
            name,
            op_ok: tokio::sync::Notify::new(),
            template: Arc::default(),
            backlog_not_understood: std::sync::Mutex::new(None),
        };
        app.wait_ready(timeout).await?;
        Ok(app)
    }

    /// Speaks to the program through `template` (its own write and read
    /// requests) instead of `POST /ops` and `GET /ops/{key}` where it gives them.
    pub fn with_template(mut self, template: ServiceTemplate) -> AppProcess {
        self.template = Arc::new(template);
        self
    }

    /// Waits until the program answers any HTTP request (`GET /health`), or fails
    /// with its log's last lines if it exits or stays silent.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let log = self.process.log_path();
        let last_lines = || format!("--- last lines of {} ---\n{}", log.display(), tail(log, 20));
        wait_until_ready(
            &format!("the implementation ({}) at {}", self.name, self.base_url),
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
                        "the implementation ({}) exited before answering: {e:#}\n{}",
                        self.name,
                        last_lines()
                    )));
                }
                let resp = self
                    .http
                    .get(format!("{}/health", self.base_url))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await?;
                // Any answer will do: a program need not serve /health.
                let status = resp.status();
                if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
                    Ok(())
                } else {
                    bail!("GET /health answered {status}")
                }
            },
        )
        .await
    }

    /// Posts one op (`POST /ops`) and returns the raw answer.
    pub async fn post_op(&self, op: &Op, timeout: Duration) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(format!("{}/ops", self.base_url))
            .json(op)
            .timeout(timeout)
            .send()
            .await
    }

    /// Submits one op (`POST /ops`, or the template's request) and classifies the answer.
    pub async fn submit(&self, op: &Op, timeout: Duration) -> Reply {
        if let Some(t) = self.template.request.clone() {
            return self.submit_templated(&t, op, timeout).await;
        }
        match self.post_op(op, timeout).await {
            Ok(resp) => {
                let status = resp.status();
                if status.is_success() {
                    self.op_ok.notify_waiters();
                    Reply::Ok
                } else if matches!(
                    status,
                    reqwest::StatusCode::NOT_FOUND
                        | reqwest::StatusCode::METHOD_NOT_ALLOWED
                        | reqwest::StatusCode::NOT_IMPLEMENTED
                ) {
                    // Outside the contract: the program does not serve POST /ops.
                    Reply::Info(format!(
                        "{status}: the program does not serve POST /ops (outside the exec contract)"
                    ))
                } else {
                    let body: String = resp.text().await.unwrap_or_default().chars().take(200).collect();
                    if status == reqwest::StatusCode::CONFLICT {
                        Reply::Fail(format!("409 {body}"))
                    } else {
                        Reply::Info(format!("{status} {body}"))
                    }
                }
            }
            // Not even connected: the request never reached the program.
            Err(e) if e.is_connect() => Reply::Fail(format!("not connected: {e}")),
            Err(e) if e.is_timeout() => Reply::Info("timeout".into()),
            Err(e) => Reply::Info(format!("{e}")),
        }
    }

    /// Sends the template's request for `op` and classifies its status by the
    /// template's classes (an op asked to roll back is `fail` on ok or fail
    /// statuses: it must not have taken effect).
    async fn submit_templated(&self, t: &RequestTemplate, op: &Op, timeout: Duration) -> Reply {
        let req = t.request(op);
        let mut builder = self
            .http
            .request(t.method.clone(), format!("{}{}", self.base_url, req.path))
            .timeout(timeout);
        for (n, v) in &req.headers {
            builder = builder.header(n.as_str(), v.as_str());
        }
        if let Some(body) = req.body {
            builder = builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        match builder.send().await {
            Ok(resp) => {
                let status = resp.status();
                let code = status.as_u16();
                let body: String = resp.text().await.unwrap_or_default().chars().take(200).collect();
                if op.abort && (t.ok.contains(code) || t.fail.contains(code)) {
                    Reply::Fail(format!("{status} (asked to roll back) {body}"))
                } else if t.ok.contains(code) {
                    self.op_ok.notify_waiters();
                    Reply::Ok
                } else if t.fail.contains(code) {
                    Reply::Fail(format!("{status} {body}"))
                } else {
                    Reply::Info(format!("{status} {body}"))
                }
            }
            Err(e) if e.is_connect() => Reply::Fail(format!("not connected: {e}")),
            Err(e) if e.is_timeout() => Reply::Info("timeout".into()),
            Err(e) => Reply::Info(format!("{e}")),
        }
    }

    /// The newest seq of `key` through the program's read path (`GET /ops/{key}`
    /// → `{"key":..,"seq":N|null}`). An error when the read failed or timed out,
    /// or the program has no read path.
    pub async fn read(&self, key: &str, timeout: Duration) -> Result<Option<u64>> {
        if let Some(t) = &self.template.read {
            let path = t.path(key);
            let v: serde_json::Value = self
                .http
                .get(format!("{}{path}", self.base_url))
                .timeout(timeout)
                .send()
                .await
                .with_context(|| format!("reading key {key} (GET {path})"))?
                .error_for_status()
                .with_context(|| format!("reading key {key} (GET {path})"))?
                .json()
                .await
                .with_context(|| format!("GET {path} must answer JSON"))?;
            return match v.pointer(&t.seq) {
                None => bail!("GET {path} answered without {} (--read-seq): {v}", t.seq),
                Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => s
                    .trim()
                    .parse::<u64>()
                    .map(Some)
                    .with_context(|| format!("GET {path}: seq {s} is not a non-negative integer")),
                Some(s) => s
                    .as_u64()
                    .map(Some)
                    .with_context(|| format!("GET {path}: seq {s} is not a non-negative integer")),
            };
        }
        let resp = self
            .http
            .get(format!("{}/ops/{key}", self.base_url))
            .timeout(timeout)
            .send()
            .await
            .with_context(|| format!("reading key {key} (GET /ops/{key})"))?;
        let v: serde_json::Value = resp
            .error_for_status()
            .with_context(|| format!("reading key {key} (GET /ops/{key})"))?
            .json()
            .await
            .with_context(|| format!("GET /ops/{key} must answer {{\"key\":..,\"seq\":N or null}}"))?;
        match v.get("seq") {
            None => bail!("GET /ops/{key} answered without a `seq` field: {v}"),
            Some(serde_json::Value::Null) => Ok(None),
            Some(s) => s
                .as_u64()
                .map(Some)
                .with_context(|| format!("GET /ops/{key}: seq {s} is not a non-negative integer")),
        }
    }

    /// Events committed but not yet published (`GET /backlog`): `Ok(None)` when
    /// the program does not implement it (a black box need not), an error when
    /// it cannot be asked (down, or not answering).
    pub async fn backlog(&self) -> Result<Option<u64>> {
        Ok(self.backlog_report().await?.and_then(|b| u64::try_from(b.backlog).ok()))
    }

    /// What was said when `GET /backlog` answered something not understood
    /// (from then on the program counts as having no backlog endpoint).
    pub fn backlog_warning(&self) -> Option<String> {
        self.backlog_not_understood
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The whole answer of `GET /backlog` (backlog, oldest age, parked events):
    /// `Ok(None)` when the program does not implement it.
    pub async fn backlog_report(&self) -> Result<Option<Backlog>> {
        if let Some(t) = &self.template.backlog {
            let resp = self
                .http
                .get(format!("{}{}", self.base_url, t.path))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .with_context(|| format!("asking the implementation for its backlog (GET {})", t.path))?;
            let v: serde_json::Value = resp
                .error_for_status()?
                .json()
                .await
                .with_context(|| format!("GET {} must answer JSON", t.path))?;
            let n = match v.pointer(&t.count) {
                Some(serde_json::Value::String(s)) => s.trim().parse::<i64>().ok(),
                Some(n) => n.as_i64(),
                None => None,
            }
            .with_context(|| format!("GET {}: no count at {} (--backlog-count): {v}", t.path, t.count))?;
            return Ok(Some(Backlog {
                backlog: n,
                oldest_age_ms: 0,
                parked: 0,
                in_flight: None,
            }));
        }
        if self.backlog_warning().is_some() {
            return Ok(None);
        }
        let resp = self
            .http
            .get(format!("{}/backlog", self.base_url))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .context("asking the implementation for its backlog")?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body = resp.error_for_status()?.text().await.context("reading GET /backlog")?;
        match serde_json::from_str::<Backlog>(&body) {
            Ok(backlog) => Ok(Some(backlog)),
            Err(e) => {
                let mut said = self.backlog_not_understood.lock().unwrap_or_else(|e| e.into_inner());
                if said.is_none() {
                    let shown: String = body.chars().take(200).collect();
                    let warning = format!(
                        "{}: GET /backlog answered 200 with `{shown}`, which is not {{\"backlog\": N}} ({e}); \
                         treated as having no backlog endpoint: the drain waited for its quiet period \
                         (docs/http-contract.md)",
                        self.name
                    );
                    tracing::warn!("{warning}");
                    *said = Some(warning);
                }
                Ok(None)
            }
        }
    }

    /// The program's own account of op `op` (`GET /trace/{op}`, any JSON):
    /// `Ok(None)` when it does not serve the endpoint (404), an error when it
    /// cannot be asked, answers another status or answers something not JSON.
    pub async fn trace(&self, op: u64, timeout: Duration) -> Result<Option<serde_json::Value>> {
        let resp = self
            .http
            .get(format!("{}/trace/{op}", self.base_url))
            .timeout(timeout)
            .send()
            .await
            .with_context(|| format!("asking for the trace of op {op} (GET /trace/{op})"))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let v = resp
            .error_for_status()
            .with_context(|| format!("GET /trace/{op}"))?
            .json()
            .await
            .with_context(|| format!("GET /trace/{op} must answer JSON"))?;
        Ok(Some(v))
    }

    /// Arms the crash point: the next op commits, then the process dies before
    /// publishing. A program that does not implement `POST /crash-after-commit`
    /// (404, 405 or 501) yields [`CrashPoint::Unsupported`].
    pub async fn arm_crash_after_commit(&self) -> Result<CrashPoint> {
        let resp = self
            .http
            .post(format!("{}/crash-after-commit", self.base_url))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .context("arming crash-after-commit")?;
        let status = resp.status();
        if matches!(
            status,
            reqwest::StatusCode::NOT_FOUND
                | reqwest::StatusCode::METHOD_NOT_ALLOWED
                | reqwest::StatusCode::NOT_IMPLEMENTED
        ) {
            return Ok(CrashPoint::Unsupported);
        }
        if !status.is_success() {
            bail!("the implementation refused crash-after-commit: {status}");
        }
        Ok(CrashPoint::Armed)
    }

    /// Waits until the next op is acknowledged (2xx to `POST /ops`).
    pub async fn next_ok(&self) {
        self.op_ok.notified().await
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

    /// Starts the process if it is not running (it died or was killed).
    pub async fn ensure_running(&self) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().await;
        if self.process.check_alive().is_ok() {
            return Ok(());
        }
        let p = self.process.clone();
        tokio::task::spawn_blocking(move || p.restart()).await?
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

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}
