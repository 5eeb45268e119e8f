//! The nemesis: every fault of the catalogue (`dualcheck list`), grouped by
//! family, one file per family, in which each fault's start and stop sit side
//! by side:
//!
//! - `network.rs`: partitions and toxics on the Postgres and Kafka links (Toxiproxy);
//! - `process.rs`: processes killed, paused or crashed after their commit;
//! - `cluster.rs`: Kafka as a cluster of three brokers, its partition leader killed;
//! - `schema.rs`: the database changed under the implementation (columns added, noise rows);
//! - `custom.rs`: faults the user defines as shell commands (`--fault-cmd NAME=START_CMD[,STOP_CMD]`).
//!
//! Starts and stops are recorded as `nemesis` lines of the history, by the
//! `ledger`: a start only once it took effect, a failed start as a `failed`
//! line, and a process fault whose target another holds waits for it;
//! [`Nemesis::heal_all`] undoes whatever is still active.

mod cluster;
pub mod custom;
mod ledger;
mod network;
mod process;
mod schema;

pub use ledger::Target;
pub use record::fault::{Fault, FaultFamily};

use crate::app_process::Fleet;
use crate::recorder::Recorder;
use anyhow::Result;
pub use process::{check_libfaketime, Deploys, LIBFAKETIME};
use services::Environment;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use workloads::FaultPhase;

/// Injects and heals faults on one run's environment and implementation.
pub struct Nemesis {
    recorder: Arc<Recorder>,
    families: Families,
    /// Which faults are in effect, which wait for their target.
    ledger: ledger::Ledger,
}

/// The means of every family.
struct Families {
    network: network::NetworkFaults,
    process: process::ProcessFaults,
    cluster: cluster::ClusterFaults,
    schema: schema::SchemaFaults,
    custom: custom::RunContext,
}

impl ledger::Injector for Families {
    fn target(&self, fault: Fault) -> Option<Target> {
        match fault.family() {
            FaultFamily::Process => self.process.target(fault),
            // The leader it kills may be broker 0.
            FaultFamily::Cluster => Some(Target::KafkaBroker0),
            // What a custom fault acts on is unknown: it composes with every fault.
            FaultFamily::Network | FaultFamily::Schema | FaultFamily::Custom => None,
        }
    }

    /// Starts or stops `fault`, in the file of its family.
    async fn apply(&self, fault: Fault, phase: FaultPhase) -> Result<()> {
        match fault.family() {
            FaultFamily::Network => self.network.apply(fault, phase).await,
            FaultFamily::Process => self.process.apply(fault, phase).await,
            FaultFamily::Cluster => self.cluster.apply(fault, phase).await,
            FaultFamily::Schema => self.schema.apply(fault, phase).await,
            FaultFamily::Custom => custom::apply(fault, phase, &self.custom.vars()).await,
        }
    }
}

impl Nemesis {
    /// A nemesis for one run. `streamed_tables` are the tables the
    /// implementation streams (`PatternInfo::streamed_tables`): `schema-change`
    /// alters them along with `orders`. `seed` (the run's) draws what a fault
    /// decides while it is active (the gaps between reset pulses).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        env: Arc<Environment>,
        fleet: Arc<Fleet>,
        observed: Arc<crate::observer::ObserverStats>,
        recorder: Arc<Recorder>,
        topic: &str,
        database_direct_url: &str,
        streamed_tables: &[&str],
        seed: u64,
        deploys: process::Deploys,
    ) -> Nemesis {
        let restart_timeout = Duration::from_secs(90);
        Nemesis {
            recorder,
            families: Families {
                network: network::NetworkFaults::new(env.clone(), seed),
                process: process::ProcessFaults::new(
                    env.clone(),
                    fleet.clone(),
                    observed,
                    restart_timeout,
                    seed,
                    deploys,
                ),
                cluster: cluster::ClusterFaults::new(env.clone(), topic, restart_timeout),
                schema: schema::SchemaFaults::new(database_direct_url, streamed_tables, seed),
                custom: custom::RunContext::new(env, fleet, topic, database_direct_url),
            },
            ledger: ledger::Ledger::default(),
        }
    }

    /// Faults in effect now.
    pub fn active(&self) -> Vec<Fault> {
        self.ledger.active()
    }

    /// Starts `fault`; its `start` line is written once it took effect. A
    /// process fault whose target another fault holds waits until that one
    /// stops. A start that fails is recorded as `failed` and returned.
    pub async fn start(&self, fault: Fault) -> Result<()> {
        self.ledger.start(&self.families, &self.recorder, fault).await
    }

    /// Stops `fault` and records it (a fault that never took effect: nothing to heal).
    pub async fn stop(&self, fault: Fault) -> Result<()> {
        self.ledger.stop(&self.families, &self.recorder, fault).await
    }

    /// Stops every active fault, then heals every proxy and makes sure every
    /// process runs; returns the first error after trying everything.
    pub async fn heal_all(&self) -> Result<()> {
        let mut first_error = self.ledger.stop_all(&self.families, &self.recorder).await.err();
        if let Err(e) = self.families.network.heal_all().await {
            first_error.get_or_insert(e);
        }
        if let Err(e) = self.families.process.heal_all().await {
            first_error.get_or_insert(e);
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A task that runs while its fault is active (the noise writer, the crash
/// loop) and ends when the fault stops.
#[derive(Default)]
struct WhileActive(Mutex<Option<(watch::Sender<bool>, tokio::task::JoinHandle<()>)>>);

impl WhileActive {
    /// Spawns `task`, handing it the receiver that changes when it must end.
    fn start<T: Future<Output = ()> + Send + 'static>(&self, task: impl FnOnce(watch::Receiver<bool>) -> T) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let handle = tokio::spawn(task(stop_rx));
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((stop_tx, handle));
    }

    /// Tells the task to end and waits for it (nothing if none runs).
    async fn stop(&self) {
        let running = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((stop_tx, handle)) = running {
            let _ = stop_tx.send(true);
            let _ = handle.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fault_has_a_one_line_help_and_its_name_everywhere() {
        for f in Fault::all() {
            assert!(!f.help().is_empty() && !f.help().contains('\n'), "{f}: {:?}", f.help());
            assert_eq!(f.to_string(), f.name());
            assert_eq!(serde_json::to_string(&f).unwrap(), format!("\"{}\"", f.name()));
            assert_eq!(Fault::from_name(f.name()).unwrap(), f);
        }
        for family in FaultFamily::all() {
            assert!(!family.help().is_empty() && !family.help().contains('\n'));
        }
    }

    #[test]
    fn names_are_those_of_the_catalogue_in_list_order() {
        let names: Vec<&str> = Fault::all().map(Fault::name).collect();
        assert_eq!(
            names,
            [
                "pg-partition",
                "kafka-partition",
                "pg-latency",
                "kafka-latency",
                "pg-reset",
                "kafka-reset",
                "kafka-slow",
                "kafka-timeout",
                "pg-ack-loss",
                "kafka-ack-loss",
                "schema-change",
                "noise",
                "pg-slow-commit",
                "pg-kill",
                "kafka-kill",
                "relay-kill",
                "pg-pause",
                "kafka-pause",
                "kafka-leader",
                "crash-after-commit",
                "rolling-restart",
                "clock-skew",
            ]
        );
    }

    #[test]
    fn families_partition_the_faults_and_names_never_collide() {
        let mut seen: Vec<Fault> = FaultFamily::all().flat_map(FaultFamily::faults).collect();
        seen.sort();
        assert_eq!(seen, Fault::all().collect::<Vec<_>>());
        let names: Vec<&str> = FaultFamily::all().map(FaultFamily::name).collect();
        assert_eq!(names, ["network", "process", "cluster", "schema"]);
        for family in FaultFamily::all() {
            assert!(Fault::from_name(family.name()).is_err(), "{family} is also a fault");
            assert_eq!(family.name().parse::<FaultFamily>().unwrap(), family);
        }
        assert_eq!(FaultFamily::Cluster.faults().collect::<Vec<_>>(), [Fault::KafkaLeader]);
        assert_eq!(Fault::KafkaLeader.min_brokers(), 3);
        assert_eq!(Fault::KafkaKill.min_brokers(), 1);
    }

    #[test]
    fn fault_lists_take_families_and_faults_together() {
        assert_eq!(
            Fault::parse_list("cluster").unwrap(),
            [Fault::KafkaLeader],
            "a family is its faults"
        );
        let network = Fault::parse_list("network").unwrap();
        assert_eq!(network, FaultFamily::Network.faults().collect::<Vec<_>>());
        assert_eq!(network.len(), 10);
        let mixed = Fault::parse_list("schema, pg-kill,noise").unwrap();
        assert_eq!(
            mixed,
            [Fault::SchemaChange, Fault::Noise, Fault::PgSlowCommit, Fault::PgKill]
        );
        assert!(Fault::parse_list("process,cluster")
            .unwrap()
            .iter()
            .any(|f| f.min_brokers() == 3));
        let e = Fault::parse_list("networks").unwrap_err().to_string();
        assert!(e.contains("families: network, process, cluster, schema"), "{e}");
    }
}
