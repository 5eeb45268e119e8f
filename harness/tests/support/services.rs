//! Shared set-up of the environment integration tests: one real environment per
//! test binary, started once on a runtime that lives as long as the binary, and
//! a lock so tests (whose faults would hit each other) run one at a time.
//! Needs `bash ci/setup` to have run; fails with its message otherwise.

#![allow(dead_code)]

use dualcheck::env::{EnvOptions, Environment};
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The runtime all tests of a binary share (the environment's tasks live here).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

/// Runs `f` against the shared environment with `brokers` nodes (started on first
/// use), one test at a time, with every fault healed before.
pub fn with_env<F, Fut>(brokers: usize, f: F)
where
    F: FnOnce(&'static Environment) -> Fut,
    Fut: Future<Output = ()>,
{
    // One environment per broker count, each started on first use and kept
    // for the binary's life (its processes end with it).
    static ENVS: Mutex<Vec<&'static Environment>> = Mutex::new(Vec::new());
    let _guard = crate::support::alone();
    let found = ENVS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .find(|e| e.brokers() == brokers);
    let env = found.unwrap_or_else(|| {
        let t = Instant::now();
        let env = runtime()
            .block_on(Environment::start(EnvOptions::local(brokers).unwrap()))
            .unwrap_or_else(|e| panic!("starting the local environment failed (did `bash ci/setup` run?): {e:#}"));
        eprintln!(
            "environment with {brokers} broker(s) ready in {:.1} s (run dir {})",
            t.elapsed().as_secs_f64(),
            env.run_dir.display()
        );
        let env: &'static Environment = Box::leak(Box::new(env));
        ENVS.lock().unwrap_or_else(|e| e.into_inner()).push(env);
        env
    });
    runtime().block_on(async {
        env.heal_all().await.expect("heal all");
        tokio::time::timeout(Duration::from_secs(180), f(env))
            .await
            .expect("test timed out after 180 s");
    });
}

/// A name unique within the test binary (topics, tables).
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// The one value of a query returning one row of one column.
pub async fn query_value<T: for<'a> tokio_postgres::types::FromSql<'a>>(c: &tokio_postgres::Client, sql: &str) -> T {
    c.query_one(sql, &[]).await.unwrap().get(0)
}

/// Produces one record to `topic` and waits for its acknowledgement, which
/// must come within `timeout`.
pub async fn produced(bootstrap: &str, topic: &str, key: &str, value: &str, timeout: Duration) {
    dualcheck::env::kafka::produce_one(bootstrap, topic, key, value, timeout)
        .await
        .unwrap();
}
