//! Local Postgres under a run directory user `postgres` cannot enter (issue
//! 17): as root, `initdb` runs as `postgres`, which cannot enter a `mktemp -d`
//! directory or root's home (mode 0700). The server must start anyway, say
//! where its data went, and leave nothing behind.

use dualcheck::env::ports::free_port;
use dualcheck::env::postgres::{connect, LocalPostgres};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[test]
fn postgres_starts_under_a_directory_user_postgres_cannot_enter() {
    let _guard = crate::support::alone();
    crate::support::services::runtime().block_on(starts_under_a_closed_directory());
}

async fn starts_under_a_closed_directory() {
    // What `mktemp -d` makes: mode 0700, owned by whoever runs the test.
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir = scratch.path().join("run").join("postgres");
    let pg = LocalPostgres::start(&dir, free_port().unwrap(), Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let c = connect(&dualcheck::env::postgres::url(pg.port)).await.unwrap();
    c.simple_query("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .await
        .unwrap();
    let note = dir.join(dualcheck::run_dir::POSTGRES_DATA_ELSEWHERE);
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        // User postgres cannot enter the scratch directory: the data lives elsewhere, named here.
        let text = std::fs::read_to_string(&note).unwrap_or_else(|e| panic!("{}: {e}", note.display()));
        assert!(
            pg.data_dir.starts_with(std::env::temp_dir()),
            "{}",
            pg.data_dir.display()
        );
        assert!(text.starts_with(&pg.data_dir.display().to_string()), "{text}");
    } else {
        assert!(!note.exists(), "the harness's own user can enter its directory");
        assert!(pg.data_dir.starts_with(&dir));
    }
    assert!(
        dir.join(dualcheck::run_dir::POSTGRES_LOG).exists(),
        "the log stays in the run directory"
    );
    let data = pg.data_dir.clone();
    drop(c);
    drop(pg);
    if root {
        assert!(
            !data.exists(),
            "the data directory made elsewhere is removed with the server"
        );
    }
}
