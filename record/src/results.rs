//! The run's own figures beside the check's verdict, as `results.json` holds
//! them (the results struct itself, `RunOutcome`, is the report crate's:
//! its readable summary is worded there).

use serde::{Deserialize, Serialize};

/// From the producer's timestamp of each record (`CreateTime`: librdkafka
/// sets it when the record is handed to `produce()`; Kafka Connect may carry
/// the source's time instead) to the observer reading it: the send, the
/// broker's append and the observer's fetch — the part of a pattern's
/// latency that is not the pattern's own. Wall clock, ms resolution.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Transit {
    /// Median, ms.
    pub p50_ms: f64,
    /// 99th percentile, ms.
    pub p99_ms: f64,
    /// Records measured.
    pub records: usize,
}

/// When a run's workload left the captured tables idle, seconds from the workload's start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct IdleWindow {
    /// Start of the window.
    pub start_s: f64,
    /// End of the window.
    pub stop_s: f64,
}

/// Where a run's wall time went, seconds per phase (`phases` in
/// `results.json`): what a run costs beyond its workload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Phases {
    /// Starting the services (initdb, Postgres, Kafka, Toxiproxy); `None` on a
    /// sweep's shared environment (started once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services_s: Option<f64>,
    /// Database, topic and schema, the implementation's processes until they
    /// answer, the observer.
    pub processes_s: f64,
    /// The workload with its faults.
    pub workload_s: f64,
    /// Healing and draining.
    pub drain_s: f64,
    /// Reading what the database committed.
    pub committed_s: f64,
    /// The check, with the trails of its examples.
    pub check_s: f64,
    /// Stopping the observer and the implementation, dropping the run's slots.
    pub teardown_s: f64,
}
