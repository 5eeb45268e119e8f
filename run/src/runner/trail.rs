//! Phase 5b, trail: once the drain and the committed read are over, the
//! observer stops (the history is complete), the history is checked, and each
//! example of an anomaly gets its trail ([`crate::trails`]) — while the
//! implementation still runs, so it can give its own account of the op
//! (`GET /trace/{op}`). The teardown comes after.

use super::start::Started;
use super::RunConfig;
use crate::app_process::Fleet;
use anyhow::Result;
use checkers::{CheckOptions, CheckResult};
use record::run_dir::RunDir;

/// Stops the observer, checks the history, and gathers the trails (asking the
/// relay process where there is one, else the implementation).
pub(super) async fn check_with_trails(cfg: &RunConfig, run_dir: &RunDir, started: &mut Started) -> Result<CheckResult> {
    let mut mapping_warnings = Vec::new();
    if let Some(observer) = started.observer.take() {
        mapping_warnings = observer.stats.mapping_warnings();
        let reassigned = observer.stats.reassigned.load(std::sync::atomic::Ordering::Relaxed);
        if reassigned > 0 {
            mapping_warnings.push(format!(
                "the observer read nothing for {} s while the broker held records it had not read, {reassigned} time(s) \
                 (librdkafka's consumer stuck after a leader change); it read on with a new consumer from its \
                 positions: no record skipped or read twice, but those records' delivery times are late",
                crate::observer::STALL.as_secs()
            ));
        }
        started.transit = observer.stats.transit();
        observer.stop().await;
    }
    let per_key_order = cfg.template.records.key_is_business_key;
    let history = run_dir.history();
    let mut result = checkers::check_file(
        &history,
        CheckOptions {
            exactly_once: cfg.exactly_once,
            max_examples: 5,
            per_key_order,
            ..CheckOptions::default()
        },
    )
    .map_err(|e| anyhow::anyhow!("the recorded history is unusable (a dualcheck bug): {e}"))?;
    result.warnings.extend(mapping_warnings);
    for process in started.relays.iter().chain(&started.services) {
        result.warnings.extend(process.backlog_warning());
    }
    if !per_key_order {
        result.warnings.push(
            "reorder not judged: the record key is not the business key (--record-key-is-business-key false), so Kafka orders nothing per key"
                .to_string(),
        );
    }
    if let Err(e) = crate::trails::build(&mut result, run_dir, &history) {
        tracing::warn!("trails: reading the run directory: {e}");
        return Ok(result);
    }
    // The process that publishes knows most about an event: the relay, where it runs apart.
    if !started.services.is_empty() {
        let fleet = Fleet::new(started.services.clone(), started.relays.clone());
        crate::trails::ask_traces(&mut result, run_dir, &fleet).await;
    }
    Ok(result)
}
