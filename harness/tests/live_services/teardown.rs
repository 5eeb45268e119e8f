//! Teardown leaves nothing behind: after `shutdown`, and after a panic while the
//! environment is alive (Drop during unwinding), no process of the run remains
//! (checked by pid in /proc, including PostgreSQL backends outside the group).

use dualcheck::env::postgres::connect;
use dualcheck::env::process::pid_alive;
use dualcheck::env::{EnvOptions, Environment};

fn alive(pids: &[(String, i32)]) -> Vec<(String, i32)> {
    pids.iter().filter(|(_, p)| pid_alive(*p)).cloned().collect()
}

#[test]
fn shutdown_and_panic_leave_no_process() {
    let _guard = crate::support::alone();
    let rt = crate::support::services::runtime();
    // 1. Explicit shutdown.
    let pids = rt.block_on(async {
        let mut env = Environment::start(EnvOptions::local(1).unwrap())
            .await
            .expect("start (did `bash ci/setup` run?)");
        // Open a connection so a PostgreSQL backend (which leaves the process group) exists.
        let c = connect(&env.postgres_url).await.unwrap();
        c.simple_query("SELECT 1").await.unwrap();
        let pids = env.all_pids();
        assert!(pids.len() >= 4, "postgres (+ backends), kafka, toxiproxy: {pids:?}");
        assert_eq!(alive(&pids).len(), pids.len());
        env.shutdown().await.unwrap();
        pids
    });
    assert_eq!(alive(&pids), vec![], "processes left after shutdown");

    // 2. A panic with the environment alive: Drop during unwinding kills everything.
    let (tx, rx) = std::sync::mpsc::channel();
    let result = std::thread::spawn(move || {
        crate::support::services::runtime().block_on(async move {
            let env = Environment::start(EnvOptions::local(1).unwrap()).await.unwrap();
            let c = connect(&env.postgres_url).await.unwrap();
            c.simple_query("SELECT 1").await.unwrap();
            tx.send(env.all_pids()).unwrap();
            panic!("deliberate panic with a live environment");
        })
    })
    .join();
    assert!(result.is_err(), "the thread should have panicked");
    let pids = rx.recv().unwrap();
    assert!(!pids.is_empty());
    assert_eq!(alive(&pids), vec![], "processes left after a panic");
}
