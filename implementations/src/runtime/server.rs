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

/// Builds the router for a running pattern described by `info`, counting the
/// ops it executes in `in_flight` (`GET /backlog`'s `in_flight`, and what
/// [`serve`] waits on before it stops the background parts).
pub fn router(
    info: &'static PatternInfo,
    pattern: Arc<dyn Pattern>,
    ctx: Arc<AppContext>,
    in_flight: Arc<std::sync::atomic::AtomicU64>,
) -> Router {
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
            in_flight,
        })
}

/// What every handler is given: the pattern, its facts and its context.
#[derive(Clone)]
struct Served {
    info: &'static PatternInfo,
    pattern: Arc<dyn Pattern>,
    ctx: Arc<AppContext>,
    /// Ops being executed (`in_flight` of `GET /backlog`), including those
    /// whose client has given up.
    in_flight: Arc<std::sync::atomic::AtomicU64>,
}

/// Counts one op in flight while it lives.
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

/// How long a stopping process waits for ops still running after their
/// clients gave up.
const OPS_DRAIN_ON_SHUTDOWN: Duration = Duration::from_secs(10);

async fn ops(State(s): St, Json(op): Json<Op>) -> (StatusCode, String) {
    match execute_detached(s.pattern.clone(), op, &s.in_flight).await {
        Ok(OpAnswer::Ok) => (StatusCode::OK, "ok".into()),
        Ok(OpAnswer::Fail(e)) => (StatusCode::CONFLICT, e),
        Ok(OpAnswer::Unknown(e)) => (StatusCode::INTERNAL_SERVER_ERROR, e),
        // A panic in the pattern: whatever it did before is unknown.
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("the op's task failed: {e}")),
    }
}

/// Executes `op` in a task of its own, counted in `in_flight` until it ends,
/// so that a client giving up (the runner's op timeout closes the
/// connection, and hyper drops the request's future) does not cancel the op
/// halfway: a pattern's op is not written to be dropped between its awaits.
/// Dropped mid-way, kafka-first left its read cache's entry pending forever
/// (a backlog that never drained) and released its transactional producer's
/// lock while `commit_transaction` went on in a blocking thread, so the next
/// op's transaction collided with it. A real service's ops are not cancelled
/// by their clients either.
async fn execute_detached(
    pattern: Arc<dyn Pattern>,
    op: Op,
    in_flight: &Arc<std::sync::atomic::AtomicU64>,
) -> Result<OpAnswer, tokio::task::JoinError> {
    let counted = InFlight::enter(in_flight);
    tokio::spawn(async move {
        let _counted = counted;
        pattern.execute(&op).await
    })
    .await
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
    let in_flight = Arc::<std::sync::atomic::AtomicU64>::default();
    if !pattern.graceful_shutdown() {
        // No SIGTERM handler: the signal's default action ends the process.
        axum::serve(listener, router(info, pattern, ctx, in_flight))
            .await
            .context("HTTP server")?;
        return Ok(());
    }
    axum::serve(listener, router(info, pattern, ctx, in_flight.clone()))
        .with_graceful_shutdown(super::interrupt::interrupted())
        .await
        .context("HTTP server")?;
    // Ops whose clients gave up still run in their own tasks: let them end
    // before the relays stop (bounded: a wedged op must not keep the
    // process alive past the harness's patience).
    let deadline = tokio::time::Instant::now() + OPS_DRAIN_ON_SHUTDOWN;
    while in_flight.load(std::sync::atomic::Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    background.stop().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// A pattern whose op takes 300 ms and records that it finished.
    struct SlowOp(Arc<AtomicBool>);

    #[async_trait::async_trait]
    impl Pattern for SlowOp {
        async fn setup_schema(&self, _db: &tokio_postgres::Client) -> Result<()> {
            Ok(())
        }
        async fn execute(&self, _op: &Op) -> OpAnswer {
            tokio::time::sleep(Duration::from_millis(300)).await;
            self.0.store(true, Ordering::SeqCst);
            OpAnswer::Ok
        }
    }

    #[tokio::test]
    async fn an_op_whose_client_gives_up_still_runs_to_its_end() {
        let finished = Arc::new(AtomicBool::new(false));
        let in_flight = Arc::new(AtomicU64::new(0));
        let op: Op = serde_json::from_str(r#"{"op":1,"key":"k","seq":0}"#).unwrap();
        // The client's timeout drops the request's future after 50 ms.
        let given_up = tokio::time::timeout(
            Duration::from_millis(50),
            execute_detached(Arc::new(SlowOp(finished.clone())), op, &in_flight),
        )
        .await;
        assert!(given_up.is_err(), "the op should still be running at 50 ms");
        assert_eq!(in_flight.load(Ordering::SeqCst), 1, "the abandoned op is still counted");
        assert!(!finished.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(
            finished.load(Ordering::SeqCst),
            "the abandoned op was cancelled halfway"
        );
        assert_eq!(
            in_flight.load(Ordering::SeqCst),
            0,
            "the finished op is no longer counted"
        );
    }
}
