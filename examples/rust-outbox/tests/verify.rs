//! Verifies this crate's outbox with dualcheck, from `cargo test`: the binary
//! runs as a separate process (so `relay-kill` and `crash-after-commit` are
//! real SIGKILLs) against real PostgreSQL, Kafka and Toxiproxy (`bash ci/setup`).

use dualcheck::nemesis::Fault;
use dualcheck::verification::Verification;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn my_outbox_loses_nothing_under_faults() {
    let outcome = Verification::exec(env!("CARGO_BIN_EXE_rust-outbox"))
        .committed_sql("SELECT op FROM orders")
        .faults([Fault::KafkaPartition, Fault::RelayKill, Fault::CrashAfterCommit])
        .duration(Duration::from_secs(15))
        .drain_timeout(Duration::from_secs(30))
        .seed(1)
        .out_dir(env!("CARGO_TARGET_TMPDIR"))
        .run()
        .await
        .expect("the run could not be carried out (services missing? run `bash ci/setup`)");
    eprintln!("{}", outcome.summary());
    outcome.assert_valid();
    assert!(outcome.result.ops.ok > 100, "too few acknowledged ops to mean anything");
}
