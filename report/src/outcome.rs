//! What a run produced, as `results.json` holds it ([`RunOutcome`]; the
//! runner writes it, `dualcheck merge` and the sweeps read it back). Its
//! readable verdict, [`RunOutcome::summary`], is worded in the `summary` module.

use checkers::CheckResult;
use record::in_doubt::InDoubt;
use record::ops_series::OpsMaxima;
use record::results::{IdleWindow, Phases, Transit};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What a run produced: the check's verdict plus the run's own figures
/// (`results.json`; read back by `dualcheck merge`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOutcome {
    /// The checker's result (`valid`, `anomalies`, examples, latency, ...).
    #[serde(flatten)]
    pub result: CheckResult,
    /// Acknowledged ops per second of workload.
    pub throughput_ok_per_s: f64,
    /// The run directory (history, results, logs).
    pub run_dir: PathBuf,
    /// Implementation name.
    pub implementation: String,
    /// Seed of workload and schedule.
    pub seed: u64,
    /// Faults chosen from. Serialized as `fault_names`: `faults` is the
    /// check's list of fault windows, as `dualcheck check --json` has it.
    #[serde(rename = "fault_names")]
    pub faults: Vec<String>,
    /// Workload seconds.
    pub duration_s: f64,
    /// Whether the drain ended with nothing left (`false`: timed out with a backlog).
    pub drained: bool,
    /// Events the implementation parked (gave up publishing on purpose), from its
    /// last `GET /backlog` answer; `None` when it never answered one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked: Option<u64>,
    /// Problems met while injecting or healing faults (the run went on).
    #[serde(default)]
    pub nemesis_errors: Vec<String>,
    /// Replication slots of the run dropped at teardown (patterns reading the WAL), so
    /// none goes on retaining WAL.
    #[serde(default)]
    pub slots_dropped: Vec<String>,
    /// Prepared transactions seen and left in doubt (only when the run saw any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_doubt: Option<InDoubt>,
    /// The largest value of each operational series sampled during the run
    /// ([`record::ops_series`]); absent when no sample was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ops_max: Option<OpsMaxima>,
    /// `--idle-window`: when the workload left the captured tables idle
    /// (the history marks it with `idle-window` nemesis lines too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_window: Option<IdleWindow>,
    /// `--max-retained-wal`, bytes: the limit the retained WAL was judged against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retained_wal: Option<u64>,
    /// Where the run's wall time went ([`Phases`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<Phases>,
    /// From each record's producer timestamp to the observer reading it
    /// ([`Transit`]): the wire's and the observer's share of
    /// the latency; absent when no record carried one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transit: Option<Transit>,
}
