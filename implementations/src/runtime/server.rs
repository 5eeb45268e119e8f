//! The application process: the black-box HTTP contract of docs/http-contract.md turned
//! into [`Pattern`] calls.
//!
//! - `GET /health` → 200 (served only once the schema exists and the background parts run)
//! - `POST /ops` `{"op","key","seq","payload"?,"abort"?,"hold_ms"?}` → 200 ok, 409 fail, 500 unknown
//! - `GET /ops/{key}` → `{"key":K,"seq":N}` (seq `null` when unknown): the pattern's read path; 503 when it fails
//! - `GET /backlog` → `{"backlog":N,"oldest_age_ms":M,"parked":P}` (503 when it cannot be read)
//! - `GET /trace/{op}` → the pattern's account of the op (JSON); 404 when it keeps none, 503 when it fails
//! - `POST /crash-after-commit` → 200; the next op commits, then the process dies (SIGKILL)
//! - `POST /crash-after-ack` → 200 where this process runs a relay with that crash point
//!   (404 otherwise); its next publish Kafka acknowledges, then the process dies (SIGKILL)
//!   before the relay records it
//! - `GET /info` → `{"name","committed_sql"}`

use crate::{AppConfig, AppContext, Op, OpAnswer, Pattern, PatternInfo};
use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;
use std::time::Duration;

/// Builds the router for a running pattern described by `info`.
pub fn router(info: &'static PatternInfo, pattern: Arc<dyn Pattern>, ctx: Arc<AppContext>) -> Router {
    Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/ops", post(ops))
        .route("/ops/{key}", get(read))
        .route("/backlog", get(backlog))
        .route("/trace/{op}", get(trace))
        .route("/crash-after-commit", post(crash))
        .route("/crash-after-ack", post(crash_after_ack))
        .route("/info", get(describe))
        .layer(axum::extract::DefaultBodyLimit::max(256 << 20))
        .with_state(Served {
            info,
            pattern,
            ctx,
            in_flight: Arc::default(),
        })
}

/// What every handler is given: the pattern, its facts and its context.
#[derive(Clone)]
struct Served {
    info: &'static PatternInfo,
    pattern: Arc<dyn Pattern>,
    ctx: Arc<AppContext>,
    /// Requests being executed (`in_flight` of `GET /backlog`).
    in_flight: Arc<std::sync::atomic::AtomicU64>,
}

/// Counts one request in flight while it lives (also when its future is dropped).
struct InFlight(Arc<std::sync::atomic::AtomicU64>);

impl InFlight {
    fn enter(counter: &Arc<std::sync::atomic::AtomicU64>) -> InFlight {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(counter.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

type St = State<Served>;

async fn ops(State(s): St, Json(op): Json<Op>) -> (StatusCode, String) {
    let _in_flight = InFlight::enter(&s.in_flight);
    match s.pattern.execute(&op).await {
        OpAnswer::Ok => (StatusCode::OK, "ok".into()),
        OpAnswer::Fail(e) => (StatusCode::CONFLICT, e),
        OpAnswer::Unknown(e) => (StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn read(State(s): St, axum::extract::Path(key): axum::extract::Path<String>) -> (StatusCode, String) {
    match s.pattern.read(&s.ctx, &key).await {
        Ok(seq) => (StatusCode::OK, serde_json::json!({"key": key, "seq": seq}).to_string()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("reading key {key}: {e:#}")),
    }
}

async fn backlog(State(s): St) -> (StatusCode, String) {
    let in_flight = s.in_flight.load(std::sync::atomic::Ordering::SeqCst);
    if s.ctx.config.role == crate::Role::Service {
        // The relay process publishes and knows the backlog; the service only
        // tells how many requests it is executing.
        let b = crate::Backlog {
            in_flight: Some(in_flight),
            ..crate::Backlog::default()
        };
        return (StatusCode::OK, serde_json::to_string(&b).expect("backlog serializes"));
    }
    match s.pattern.backlog().await {
        Ok(mut b) => {
            b.in_flight = Some(in_flight);
            (StatusCode::OK, serde_json::to_string(&b).expect("backlog serializes"))
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("reading the backlog: {e:#}")),
    }
}

async fn trace(State(s): St, axum::extract::Path(op): axum::extract::Path<i64>) -> (StatusCode, String) {
    match s.pattern.trace(op).await {
        Ok(Some(v)) => (StatusCode::OK, v.to_string()),
        Ok(None) => (StatusCode::NOT_FOUND, "no trace of ops kept".into()),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("tracing op {op}: {e:#}")),
    }
}

async fn crash(State(s): St) -> &'static str {
    s.ctx.crash.arm();
    "armed"
}

/// Arms the relay's crash point, where this process runs a relay that has one.
async fn crash_after_ack(State(s): St) -> (StatusCode, &'static str) {
    if s.ctx.config.role == crate::Role::Service || !s.pattern.crash_point_after_ack() {
        return (
            StatusCode::NOT_FOUND,
            "no relay with a crash point after Kafka's acknowledgment here",
        );
    }
    s.ctx.crash.arm_after_ack();
    (StatusCode::OK, "armed")
}

async fn describe(State(s): St) -> Json<serde_json::Value> {
    Json(serde_json::json!({"name": s.info.name, "committed_sql": s.info.committed_sql}))
}

/// Runs the implementation `info` until the process is killed: schema (retried
/// until Postgres answers), background parts (not in the `service` role), then
/// the HTTP server on 127.0.0.1:PORT.
pub async fn serve(info: &'static PatternInfo, config: AppConfig) -> Result<()> {
    // A mutant the pattern does not declare would silently run the correct code.
    if let Some(bug) = &config.bug {
        crate::expect::check_bug(info, &[(crate::expect::BUG_KNOB.to_string(), bug.clone())])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    let port = config.port;
    let ctx = AppContext::new(config)?;
    let pattern = (info.build)(ctx.clone());
    let backoff = crate::runtime::backoff::Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };
    let mut attempt = 0;
    loop {
        let res = async {
            let c = ctx.db.connect().await?;
            tokio::time::timeout(Duration::from_secs(30), pattern.setup_schema(&c))
                .await
                .context("schema set-up timed out after 30 s")?
        }
        .await;
        match res {
            Ok(()) => break,
            Err(e) => {
                tracing::warn!("{}: creating the schema failed (retrying): {e:#}", info.name);
                tokio::time::sleep(backoff.delay(attempt)).await;
                attempt += 1;
            }
        }
    }
    // A service process of a pattern with a relay process leaves the background to it.
    let background = if ctx.config.role == crate::Role::Service {
        crate::Background::none()
    } else {
        pattern.start_background().await?
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port} (PORT); is another process using it?"))?;
    tracing::info!(
        "{} ({:?}) ready on 127.0.0.1:{port} ({} background task(s))",
        info.name,
        ctx.config.role,
        background.len()
    );
    if !pattern.graceful_shutdown() {
        // No SIGTERM handler: the signal's default action ends the process.
        axum::serve(listener, router(info, pattern, ctx))
            .await
            .context("HTTP server")?;
        return Ok(());
    }
    axum::serve(listener, router(info, pattern, ctx))
        .with_graceful_shutdown(super::interrupt::interrupted())
        .await
        .context("HTTP server")?;
    background.stop().await;
    Ok(())
}
