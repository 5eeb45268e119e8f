//! The fault catalogue: every fault dualcheck can name (its CLI name, family,
//! help, the shape the schedule gives it) and the registry of custom faults
//! defined by `--fault-cmd`. What a run records and reads back names faults
//! through this module; how each fault is started and stopped is the
//! nemesis's, which sits above it.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::sync::Mutex;
use strum::{EnumMessage, IntoEnumIterator};

/// The name of the workload's idle window (`--idle-window`) in histories and
/// schedules: not a fault, so no custom fault may take it.
pub const IDLE_FAULT: &str = "idle-window";

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
    /// Postgres replies dropped, requests still arrive: a COMMIT takes effect while its client sees a timeout
    PgAckLoss,
    /// Kafka replies dropped, produce requests still arrive: the broker appends while the producer retries
    KafkaAckLoss,
    /// ALTER TABLE adds a column to the business table (and to the outbox table a CDC pattern streams) mid-run
    SchemaChange,
    /// rows written to a `noise` table (ops never invoked) while active: any event from it is `unexpected`
    Noise,
    /// a share of transactions (20 %, by transaction id and seed) stalls 0.2–0.6 s at COMMIT, after all its writes (a deferred constraint trigger on every table)
    PgSlowCommit,
    /// Postgres SIGKILLed; restarted when the fault stops
    PgKill,
    /// Kafka broker 0 SIGKILLed; restarted when the fault stops
    KafkaKill,
    /// the relay killed right after Kafka acknowledges its next publish, before it records it (POST /crash-after-ack; else SIGKILLed at the next delivery), at most 2 s in (the CDC tailer or Kafka Connect process; else the implementation process, relay included); restarted when the fault stops
    RelayKill,
    /// Postgres frozen with SIGSTOP; SIGCONT when the fault stops
    PgPause,
    /// Kafka broker 0 frozen with SIGSTOP; SIGCONT when the fault stops
    KafkaPause,
    /// leader of partition 0 SIGKILLed, its followers frozen 1 s before (needs --brokers 3; chosen automatically)
    KafkaLeader,
    /// the application dies after its commit, before its publish (repeatedly; exec programs without POST /crash-after-commit are SIGKILLed right after an acknowledged op)
    CrashAfterCommit,
    /// a deploy: the relay process, then the application, each SIGTERMed, given the grace period (--deploy-grace), SIGKILLed if still alive, started again and answering before the next goes
    RollingRestart,
    /// one instance redeployed with its wall clock shifted (--clock-offset, libfaketime), redeployed true when the fault stops
    ClockSkew,
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
            | KafkaTimeout | PgAckLoss | KafkaAckLoss => FaultFamily::Network,
            PgKill | KafkaKill | RelayKill | PgPause | KafkaPause | CrashAfterCommit | RollingRestart | ClockSkew => {
                FaultFamily::Process
            }
            KafkaLeader => FaultFamily::Cluster,
            SchemaChange | Noise | PgSlowCommit => FaultFamily::Schema,
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

/// Network and schema faults, and a skewed clock, are conditions: they hold
/// for their window. Process faults, the cluster's leader kill and custom
/// faults are outages: they take a part away. The schedule nests the second
/// kind inside the first on purpose (docs/faults.md#schedule).
impl workloads::Nest for Fault {
    fn shape(&self) -> workloads::FaultShape {
        if *self == Fault::ClockSkew {
            // A skewed clock holds for its window, like a slow link.
            return workloads::FaultShape::Condition;
        }
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

/// The custom faults: a process-wide registry, so that a custom fault is a
/// [`Fault::Custom`] like any other (`Copy`, in lists, schedules, histories).
pub mod custom {
    use super::*;

    /// One `--fault-cmd NAME=START_CMD[,STOP_CMD]`: the text up to the first `=`
    /// is the name, up to the first `,` after it the start command, the rest the
    /// stop command (which may thus contain commas; a start command that needs
    /// one goes in a script).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct CustomFault {
        /// The fault's name in `--faults`, the schedule and the history.
        pub name: String,
        /// Run with `sh -c` when the fault starts.
        pub start: String,
        /// Run with `sh -c` when the fault stops; `None`: the fault heals by itself.
        #[serde(default)]
        pub stop: Option<String>,
    }

    /// The `--fault-cmd` text that defines it again.
    impl std::fmt::Display for CustomFault {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            match &self.stop {
                Some(stop) => write!(f, "{}={},{stop}", self.name, self.start),
                None => write!(f, "{}={}", self.name, self.start),
            }
        }
    }

    impl std::str::FromStr for CustomFault {
        type Err = String;

        fn from_str(s: &str) -> std::result::Result<Self, String> {
            let usage = "expected NAME=START_CMD[,STOP_CMD], e.g. `--fault-cmd 'pg-docker-pause=docker pause pg,docker unpause pg'`";
            let (name, commands) = s
                .split_once('=')
                .ok_or_else(|| format!("--fault-cmd `{s}`: no `=`; {usage}"))?;
            let name = name.trim();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
                || name.starts_with('-')
            {
                return Err(format!(
                    "--fault-cmd `{s}`: the name `{name}` must be lowercase letters, digits, `-` or `_` (it goes in --faults lists); {usage}"
                ));
            }
            let (start, stop) = match commands.split_once(',') {
                Some((start, stop)) => (start.trim(), Some(stop.trim())),
                None => (commands.trim(), None),
            };
            if start.is_empty() {
                return Err(format!("--fault-cmd `{s}`: START_CMD is empty; {usage}"));
            }
            if stop == Some("") {
                return Err(format!(
                    "--fault-cmd `{s}`: STOP_CMD after the `,` is empty (leave out the `,` for a fault without one); {usage}"
                ));
            }
            Ok(CustomFault {
                name: name.to_string(),
                start: start.to_string(),
                stop: stop.map(str::to_string),
            })
        }
    }

    /// A defined fault: its interned name, its commands, and how many of its
    /// windows are in effect now (for Ctrl-C).
    struct Entry {
        name: &'static str,
        def: CustomFault,
        active: usize,
    }

    fn registry() -> std::sync::MutexGuard<'static, Vec<Entry>> {
        static REGISTRY: Mutex<Vec<Entry>> = Mutex::new(Vec::new());
        REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Defines custom faults for the rest of the process. A name that is a
    /// built-in fault, a family, `none` or `idle-window` is refused, and so is a name defined
    /// again with other commands (the same definition again is fine).
    pub fn define(defs: &[CustomFault]) -> Result<()> {
        for def in defs {
            let name = def.name.as_str();
            if name.parse::<Fault>().is_ok() {
                bail!("--fault-cmd {name}=...: `{name}` is a built-in fault (`dualcheck list`); give the custom fault another name");
            }
            if name.parse::<FaultFamily>().is_ok() || name == "none" {
                bail!("--fault-cmd {name}=...: `{name}` is a fault family or `none` in --faults lists; give the custom fault another name");
            }
            if name == IDLE_FAULT {
                bail!("--fault-cmd {name}=...: `{name}` names the workload's idle window (--idle-window) in histories; give the custom fault another name");
            }
            let mut reg = registry();
            match reg.iter().find(|e| e.name == name) {
                Some(e) if e.def == *def => {}
                Some(e) => bail!(
                    "--fault-cmd {name}=... is defined twice with different commands (`{}` and `{}`)",
                    e.def.start,
                    def.start
                ),
                None => reg.push(Entry {
                    name: Box::leak(name.to_string().into_boxed_str()),
                    def: def.clone(),
                    active: 0,
                }),
            }
        }
        Ok(())
    }

    /// Every custom fault defined so far, in the order of definition.
    pub fn defined() -> Vec<CustomFault> {
        registry().iter().map(|e| e.def.clone()).collect()
    }

    /// The definitions of `faults`' custom faults (what a run records, so that
    /// a replay runs the same commands).
    pub fn definitions_of(faults: &[Fault]) -> Vec<CustomFault> {
        let reg = registry();
        faults
            .iter()
            .filter_map(|f| match f {
                Fault::Custom(name) => reg.iter().find(|e| e.name == *name).map(|e| e.def.clone()),
                _ => None,
            })
            .collect()
    }

    /// The custom fault named `name`, if one is defined.
    pub fn lookup(name: &str) -> Option<Fault> {
        registry()
            .iter()
            .find(|e| e.name == name)
            .map(|e| Fault::Custom(e.name))
    }

    /// The commands of the custom fault named `name`.
    pub fn commands(name: &str) -> Result<CustomFault> {
        registry()
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.def.clone())
            .ok_or_else(|| {
                anyhow::anyhow!("custom fault `{name}` is not defined (--fault-cmd {name}=START_CMD[,STOP_CMD])")
            })
    }

    /// Counts a window of `name` starting (`delta` 1) or stopping (-1), so that
    /// a Ctrl-C heals exactly the custom faults in effect ([`active`]).
    pub fn count_active(name: &str, delta: isize) {
        if let Some(e) = registry().iter_mut().find(|e| e.name == name) {
            e.active = e.active.saturating_add_signed(delta);
        }
    }

    /// The custom faults with a window in effect now.
    pub fn active() -> Vec<CustomFault> {
        registry()
            .iter()
            .filter(|e| e.active > 0)
            .map(|e| e.def.clone())
            .collect()
    }
}
