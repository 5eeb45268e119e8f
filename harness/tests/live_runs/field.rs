//! The field study's services (`examples/field/`, docs/field.md): outbox
//! libraries of other ecosystems used as their documentation shows, each
//! verified with a template and a record mapping only. One short (8 s) fault-free
//! run per library must be valid — the matrix under faults is
//! `scripts/field-study`'s. Their backlog is the template's `[backlog] sql`,
//! a count of the library's own outbox rows (`--backlog-sql`).

use crate::support::runs::run_beside;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// The example's directory.
fn example(lib: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/field")).join(lib)
}

/// Runs the example's `build` (a no-op when `ci/setup` built it already)
/// and returns where it installed the service.
fn built(lib: &str) -> PathBuf {
    // One build at a time: two would share the Go, npm and Maven caches.
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let out = Command::new(example(lib).join("build"))
        .output()
        .unwrap_or_else(|e| panic!("running examples/field/{lib}/build: {e}"));
    assert!(
        out.status.success(),
        "examples/field/{lib}/build failed (it needs Go, Node, Python 3.10+ or Java 17 and Maven: bash ci/setup):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    dualcheck::env::cache::cache_dir().join("field").join(lib)
}

/// A fault-free run of the service `cmd` of example `lib` with its schema
/// and template: valid, every acknowledged order delivered, the drain ended
/// on the library's own backlog (sampled, and 0 at the end).
fn assert_valid_fault_free(name: &str, lib: &str, cmd: &str) {
    assert_valid_fault_free_with(name, lib, cmd, &[], Order::Promised);
}

/// What a library's documentation says about the order of one key's events.
#[derive(Clone, Copy, PartialEq)]
enum Order {
    /// Kept: a reorder fails the test like any anomaly.
    Promised,
    /// Not promised by its defaults (Spring Modulith: "the externalization
    /// of later events might overtake former ones"): a run may show
    /// `reorder` and nothing else, every event delivered.
    NotPromised,
}

/// [`assert_valid_fault_free`] with more flags for `dualcheck run`, and what
/// the library promises about order.
fn assert_valid_fault_free_with(name: &str, lib: &str, cmd: &str, more: &[&str], order: Order) {
    let dir = example(lib);
    let schema = dir.join("schema.sql");
    let template = dir.join("dualcheck-template.toml");
    let mut args = vec![
        "--impl",
        "exec",
        "--cmd",
        cmd,
        "--schema",
        schema.to_str().unwrap(),
        "--template",
        template.to_str().unwrap(),
        "--committed-sql",
        "SELECT id FROM orders",
        "--duration",
        "8s",
    ];
    args.extend_from_slice(more);
    let (code, v) = run_beside(name, &args);
    let only_reorders = v.result.violations.iter().all(|a| *a == checkers::Anomaly::Reorder);
    if order == Order::NotPromised && code == 1 && only_reorders {
        eprintln!(
            "{name}: {} reorder(s), which its documentation allows",
            v.result.anomalies.reorder
        );
    } else {
        assert_eq!(code, 0, "{name}: valid without faults: {v:?}");
    }
    assert!(v.result.ops.ok > 100, "{name}: the workload ran: {:?}", v.result.ops);
    assert_eq!(v.result.deliveries, v.result.ops.committed, "{name}: {:?}", v.result);
    assert!(v.drained, "{name}: the drain ended");
    let m = v.ops_max.as_ref().expect("ops_max in the results");
    assert!(
        m.backlog.is_some(),
        "{name}: the backlog was read through the template's query: {m:?}"
    );
}

#[test]
fn watermill_with_its_forwarder_is_valid_without_faults() {
    let service = built("watermill").join("service");
    assert_valid_fault_free("field-watermill", "watermill", &format!("'{}'", service.display()));
}

#[test]
fn pg_transactional_outbox_polling_is_valid_without_faults() {
    let service = built("pg-transactional-outbox").join("service.js");
    assert_valid_fault_free(
        "field-pg-transactional-outbox",
        "pg-transactional-outbox",
        &format!("OUTBOX_STRATEGY=polling node '{}'", service.display()),
    );
}

#[test]
fn django_jaiminho_publish_on_commit_is_valid_without_faults() {
    let home = built("django-jaiminho");
    assert_valid_fault_free(
        "field-django-jaiminho",
        "django-jaiminho",
        &format!(
            "JAIMINHO_STRATEGY=publish-on-commit '{}' '{}'",
            home.join("venv/bin/python").display(),
            home.join("service/serve.py").display()
        ),
    );
}

#[test]
fn spring_modulith_with_its_publication_registry_is_valid_without_faults() {
    let jar = built("spring-modulith").join("service.jar");
    assert_valid_fault_free_with(
        "field-spring-modulith",
        "spring-modulith",
        &format!("java -jar '{}'", jar.display()),
        // The JVM and Spring start in seconds alone, more beside other tests.
        &["--start-timeout", "120s"],
        Order::NotPromised,
    );
}
