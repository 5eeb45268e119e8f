//! The client side of the black-box HTTP contract (docs/http-contract.md):
//! [`AppClient`] submits ops (`POST /ops`, or the service template's own
//! request), reads keys back, asks for the backlog and the trace of an op and
//! arms the crash point, and classifies each answer in the history's terms.
//! It knows nothing of the process behind the port: that is the owner's
//! (`AppProcess`, the sibling module `owner`).

use crate::template::{BacklogTemplate, RequestTemplate, ServiceTemplate};
use anyhow::{bail, Context, Result};
use implementations::{Backlog, Op};
use std::sync::Arc;
use std::time::Duration;

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

/// Whether `POST /crash-after-commit` (or `/crash-after-ack`) armed the
/// program's crash point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Armed: the program dies after its next commit, before its publish (or
    /// after its relay's next acknowledged publish, before recording it).
    Armed,
    /// The program has no such crash point (404/405/501): the nemesis falls
    /// back to a SIGKILL (right after the next acknowledged op, or aimed at
    /// the next delivery).
    Unsupported,
}

/// The HTTP client of one implementation at `http://127.0.0.1:PORT`.
pub struct AppClient {
    base_url: String,
    http: reqwest::Client,
    /// The implementation's name, in what the client says about it.
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
    /// The run's database (unproxied), for a template's `--backlog-sql`.
    database: Option<String>,
    /// The connection `--backlog-sql` is asked on, made on first need.
    backlog_conn: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
}

impl AppClient {
    /// A client of the implementation `name` serving on 127.0.0.1:`port`,
    /// speaking the contract's own requests (no template).
    pub fn new(name: &str, port: u16) -> Result<AppClient> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(AppClient {
            base_url: format!("http://127.0.0.1:{port}"),
            http,
            name: name.to_string(),
            op_ok: tokio::sync::Notify::new(),
            template: Arc::default(),
            backlog_not_understood: std::sync::Mutex::new(None),
            database: None,
            backlog_conn: tokio::sync::Mutex::new(None),
        })
    }

    /// Speaks to the program through `template` (its own write and read
    /// requests) instead of `POST /ops` and `GET /ops/{key}` where it gives them.
    pub fn set_template(&mut self, template: ServiceTemplate) {
        self.template = Arc::new(template);
    }

    /// The run's database (unproxied): where a template's `--backlog-sql` is asked.
    pub fn set_database(&mut self, url: &str) {
        self.database = Some(url.to_string());
    }

    /// The implementation's name, as the client names it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the program answers HTTP at all (`GET /health`, within 1 s):
    /// any success, or 404 (a program need not serve `/health`).
    pub async fn answers_http(&self) -> Result<()> {
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
    /// `Ok(None)` when the program does not implement it. A template's
    /// backlog (an endpoint of its own, or a query) answers in its place.
    pub async fn backlog_report(&self) -> Result<Option<Backlog>> {
        match &self.template.backlog {
            Some(BacklogTemplate::Endpoint { path, count }) => self.templated_backlog(path, count).await.map(Some),
            Some(BacklogTemplate::Sql(sql)) => self.queried_backlog(sql).await.map(Some),
            None => self.contract_backlog().await,
        }
    }

    /// The count at `count` in the answer of `GET path` (a template's backlog endpoint).
    async fn templated_backlog(&self, path: &str, count: &str) -> Result<Backlog> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base_url))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .with_context(|| format!("asking the implementation for its backlog (GET {path})"))?;
        let v: serde_json::Value = resp
            .error_for_status()?
            .json()
            .await
            .with_context(|| format!("GET {path} must answer JSON"))?;
        let n = match v.pointer(count) {
            Some(serde_json::Value::String(s)) => s.trim().parse::<i64>().ok(),
            Some(n) => n.as_i64(),
            None => None,
        }
        .with_context(|| format!("GET {path}: no count at {count} (--backlog-count): {v}"))?;
        Ok(Backlog::count(n))
    }

    /// The integer `sql` yields on the run's database (`--backlog-sql`), on a
    /// connection kept between calls (the drain asks every 50 ms) and made
    /// again after an error.
    async fn queried_backlog(&self, sql: &str) -> Result<Backlog> {
        let url = self.database.as_deref().context(
            "--backlog-sql: no database to ask (the run sets the run's database on the client; this is a bug)",
        )?;
        let mut conn = self.backlog_conn.lock().await;
        if conn.as_ref().is_none_or(|c| c.is_closed()) {
            *conn = Some(services::postgres::connect(url).await?);
        }
        let Some(c) = conn.as_ref() else {
            unreachable!("connected just above")
        };
        let answer = tokio::time::timeout(Duration::from_secs(2), c.query_one(sql, &[])).await;
        let row = match answer {
            Ok(Ok(row)) => row,
            Ok(Err(e)) => {
                *conn = None;
                return Err(e).with_context(|| format!("--backlog-sql `{sql}` (it must yield one row of one integer)"));
            }
            Err(_) => {
                *conn = None;
                bail!("--backlog-sql `{sql}` did not answer within 2 s");
            }
        };
        let n = row
            .try_get::<_, i64>(0)
            .or_else(|_| row.try_get::<_, i32>(0).map(i64::from))
            .with_context(|| format!("--backlog-sql `{sql}` must yield an integer (bigint or int), e.g. count(*)"))?;
        Ok(Backlog::count(n))
    }

    /// `GET /backlog` as the contract says (`Ok(None)`: not served, or not understood).
    async fn contract_backlog(&self) -> Result<Option<Backlog>> {
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
        self.arm_crash_point("crash-after-commit").await
    }

    /// Arms the relay's crash point: once Kafka acknowledges its next publish
    /// the process dies, before the relay records it. A program without
    /// `POST /crash-after-ack` (404, 405 or 501) yields
    /// [`CrashPoint::Unsupported`].
    pub async fn arm_crash_after_ack(&self) -> Result<CrashPoint> {
        self.arm_crash_point("crash-after-ack").await
    }

    /// `POST /{point}`: armed, or not offered by the program.
    async fn arm_crash_point(&self, point: &str) -> Result<CrashPoint> {
        let resp = self
            .http
            .post(format!("{}/{point}", self.base_url))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .with_context(|| format!("arming {point}"))?;
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
            bail!("the implementation refused {point}: {status}");
        }
        Ok(CrashPoint::Armed)
    }

    /// Waits until the next op is acknowledged (2xx to `POST /ops`).
    pub async fn next_ok(&self) {
        self.op_ok.notified().await
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}
