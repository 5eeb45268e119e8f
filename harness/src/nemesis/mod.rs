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

use crate::app_process::AppProcess;
use crate::env::Environment;
use crate::recorder::Recorder;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strum::{EnumMessage, IntoEnumIterator};
use tokio::sync::watch;
use workloads::FaultPhase;

/// A fault the nemesis can inject.
///
/// The derives give each fault its CLI name (kebab-case of the variant, also
/// its name in `schedule.json` and in the history), its parsing, the list, and
/// its help: the variant's one-line doc comment, printed by `dualcheck list`.
/// Declaration order is the `dualcheck list` order and the order the schedule
/// draws from: reordering the variants changes every seed's schedule.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::EnumString,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::EnumMessage,
)]
#[strum(serialize_all = "kebab-case")]
pub enum Fault {
    /// Postgres link down (Toxiproxy)
    PgPartition,
    /// Kafka link down, every broker (Toxiproxy)
    KafkaPartition,
    /// 300 ms ± 100 ms added on the Postgres link
    PgLatency,
    /// 300 ms ± 100 ms added on the Kafka link
    KafkaLatency,
    /// Postgres connections reset, in 200 ms pulses (reset_peer)
    PgReset,
    /// Kafka connections reset, in 200 ms pulses (reset_peer)
    KafkaReset,
    /// Kafka link limited to 16 KB/s
    KafkaSlow,
    /// Kafka link stops passing data, connections closed after 2 s
    KafkaTimeout,
    /// ALTER TABLE adds a column to the business table (and to the outbox table a CDC pattern streams) mid-run
    SchemaChange,
    /// rows written to a `noise` table (ops never invoked) while active: any event from it is `unexpected`
    Noise,
    /// Postgres SIGKILLed; restarted when the fault stops
    PgKill,
    /// Kafka broker 0 SIGKILLed; restarted when the fault stops
    KafkaKill,
    /// the relay SIGKILLed (the CDC tailer or Kafka Connect process; else the implementation process, relay included); restarted when the fault stops
    RelayKill,
    /// Postgres frozen with SIGSTOP; SIGCONT when the fault stops
    PgPause,
    /// Kafka broker 0 frozen with SIGSTOP; SIGCONT when the fault stops
    KafkaPause,
    /// leader of partition 0 SIGKILLed (needs --brokers 3; chosen automatically)
    KafkaLeader,
    /// the application dies after its commit, before its publish (repeatedly; exec programs without POST /crash-after-commit are SIGKILLed right after an acknowledged op)
    CrashAfterCommit,
    /// a fault defined by shell commands (`--fault-cmd NAME=START_CMD[,STOP_CMD]`), named by its NAME
    /// (interned once defined: see [`custom`]); not in the catalogue, never parsed from its variant name
    #[strum(disabled)]
    Custom(&'static str),
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A fault serializes as its name (`schedule.json`, the results).
impl Serialize for Fault {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// A built-in fault's name, or a custom fault defined before reading (a
/// replay defines the recorded ones first).
impl<'de> Deserialize<'de> for Fault {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Fault::from_name(&name).map_err(serde::de::Error::custom)
    }
}

impl Fault {
    /// Every built-in fault, in `dualcheck list` order (custom faults are
    /// apart: [`custom::defined`]).
    pub fn all() -> impl Iterator<Item = Fault> {
        Fault::iter()
    }

    /// The CLI name (a custom fault's NAME).
    pub fn name(self) -> &'static str {
        match self {
            Fault::Custom(name) => name,
            builtin => builtin.into(),
        }
    }

    /// One line of help (the variant's doc comment; a custom fault's commands).
    pub fn help(self) -> &'static str {
        match self {
            Fault::Custom(_) => "a fault defined by --fault-cmd",
            builtin => builtin.get_documentation().unwrap_or_default(),
        }
    }
}

impl FaultFamily {
    /// Every built-in family (`custom`, the faults defined by `--fault-cmd`, is
    /// apart: it has no fault until one is defined).
    pub fn all() -> impl Iterator<Item = FaultFamily> {
        FaultFamily::iter().filter(|f| *f != FaultFamily::Custom)
    }

    /// The family's name.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// One line of help (the variant's doc comment).
    pub fn help(self) -> &'static str {
        self.get_documentation().unwrap_or_default()
    }
}

impl Fault {
    /// The family the fault belongs to.
    pub fn family(self) -> FaultFamily {
        use Fault::*;
        match self {
            PgPartition | KafkaPartition | PgLatency | KafkaLatency | PgReset | KafkaReset | KafkaSlow
            | KafkaTimeout => FaultFamily::Network,
            PgKill | KafkaKill | RelayKill | PgPause | KafkaPause | CrashAfterCommit => FaultFamily::Process,
            KafkaLeader => FaultFamily::Cluster,
            SchemaChange | Noise => FaultFamily::Schema,
            Custom(_) => FaultFamily::Custom,
        }
    }

    /// Looks a fault up by CLI name: a built-in one, or a custom one defined
    /// with `--fault-cmd` ([`custom::define`]).
    pub fn from_name(name: &str) -> Result<Fault> {
        if let Ok(builtin) = name.parse() {
            return Ok(builtin);
        }
        if let Some(custom) = custom::lookup(name) {
            return Ok(custom);
        }
        let names: Vec<&str> = Fault::all().map(Fault::name).collect();
        let families: Vec<&str> = FaultFamily::all().map(FaultFamily::name).collect();
        let customs: Vec<String> = custom::defined().into_iter().map(|c| c.name).collect();
        let customs = if customs.is_empty() {
            "; custom faults: none defined (--fault-cmd NAME=START_CMD[,STOP_CMD] defines one)".to_string()
        } else {
            format!("; custom faults (--fault-cmd): {}", customs.join(", "))
        };
        Err(anyhow::anyhow!(
            "unknown fault `{name}`; faults are: {}; families: {}{customs}",
            names.join(", "),
            families.join(", ")
        ))
    }

    /// Parses a comma-separated list of faults and fault families (`network`,
    /// `process`, `cluster`, `schema`: every fault of the family; `custom`:
    /// every fault defined with `--fault-cmd`; `""` or `none` = no faults),
    /// sorted and without repeats.
    pub fn parse_list(list: &str) -> Result<Vec<Fault>> {
        let mut out = BTreeSet::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty() && *s != "none") {
            match name.parse::<FaultFamily>() {
                Ok(family) => out.extend(family.faults()),
                Err(_) => {
                    out.insert(Fault::from_name(name)?);
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Brokers the fault needs.
    pub fn min_brokers(self) -> usize {
        match self.family() {
            FaultFamily::Cluster => 3,
            _ => 1,
        }
    }
}

/// Network, schema and cluster-wide conditions hold for their window; process
/// faults and the leader kill take a part away. The schedule nests the second
/// kind inside the first on purpose.
impl workloads::Nest for Fault {
    fn shape(&self) -> workloads::FaultShape {
        match self.family() {
            FaultFamily::Network | FaultFamily::Schema => workloads::FaultShape::Condition,
            // A custom fault is taken to be an outage (a kill, a pause of
            // something): it nests inside the conditions (docs/faults.md).
            FaultFamily::Process | FaultFamily::Cluster | FaultFamily::Custom => workloads::FaultShape::Outage,
        }
    }

    /// A crash armed for the next commit never fires while no commit can
    /// happen (the database cut off, killed or frozen).
    fn nests_in(&self, outer: &Self) -> bool {
        let no_commits = matches!(outer, Fault::PgPartition | Fault::PgKill | Fault::PgPause);
        !(*self == Fault::CrashAfterCommit && no_commits)
    }
}

/// A group of faults that act through the same means; each family's start and
/// stop code lives in a file of its own.
///
/// Family names are kebab-case, like fault names, and share no name with a
/// fault, so a list may one day mix both (`FaultFamily::from_str` then
/// [`FaultFamily::faults`]).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::EnumIter,
    strum::IntoStaticStr,
    strum::EnumMessage,
)]
#[strum(serialize_all = "kebab-case")]
pub enum FaultFamily {
    /// partitions, latency, resets, slow and timeout on the Postgres and Kafka links (Toxiproxy)
    Network,
    /// processes killed, frozen or crashed after their commit, and restarted
    Process,
    /// Kafka as a cluster of three brokers: the partition leader killed
    Cluster,
    /// the database changed under the implementation: columns added, noise rows
    Schema,
    /// faults defined by shell commands (--fault-cmd NAME=START_CMD[,STOP_CMD])
    Custom,
}

impl FaultFamily {
    /// The family's faults, in `dualcheck list` order (`custom`: those
    /// defined so far, in the order of definition).
    pub fn faults(self) -> impl Iterator<Item = Fault> {
        let faults: Vec<Fault> = match self {
            FaultFamily::Custom => custom::defined()
                .iter()
                .filter_map(|c| custom::lookup(&c.name))
                .collect(),
            family => Fault::all().filter(|f| f.family() == family).collect(),
        };
        faults.into_iter()
    }
}

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
            FaultFamily::Custom => custom::apply(fault, phase).await,
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
        app: Arc<AppProcess>,
        relay: Option<Arc<AppProcess>>,
        recorder: Arc<Recorder>,
        topic: &str,
        database_direct_url: &str,
        streamed_tables: &[&str],
        seed: u64,
    ) -> Nemesis {
        let restart_timeout = Duration::from_secs(90);
        Nemesis {
            recorder,
            families: Families {
                network: network::NetworkFaults::new(env.clone(), seed),
                process: process::ProcessFaults::new(env.clone(), app, relay, restart_timeout),
                cluster: cluster::ClusterFaults::new(env, topic, restart_timeout),
                schema: schema::SchemaFaults::new(database_direct_url, streamed_tables),
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
                "schema-change",
                "noise",
                "pg-kill",
                "kafka-kill",
                "relay-kill",
                "pg-pause",
                "kafka-pause",
                "kafka-leader",
                "crash-after-commit",
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
        assert_eq!(network.len(), 8);
        let mixed = Fault::parse_list("schema, pg-kill,noise").unwrap();
        assert_eq!(mixed, [Fault::SchemaChange, Fault::Noise, Fault::PgKill]);
        assert!(Fault::parse_list("process,cluster")
            .unwrap()
            .iter()
            .any(|f| f.min_brokers() == 3));
        let e = Fault::parse_list("networks").unwrap_err().to_string();
        assert!(e.contains("families: network, process, cluster, schema"), "{e}");
    }
}
