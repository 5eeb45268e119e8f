//! Expected verdicts as data: what each pattern (and each knob setting that
//! turns a pattern into a negative control) must show under which faults.
//! `dualcheck sweep` judges every run against these and `dualcheck list`
//! prints them.

use checkers::Anomaly;
use std::fmt;

/// What a run must end with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The history is valid (duplicates with one event id are allowed unless
    /// the run checks exactly-once).
    Valid,
    /// The history is invalid and shows at least one of these anomalies.
    Shows(&'static [Anomaly]),
    /// Valid apart from these anomalies, which may or may not show (a
    /// promise the pattern does not make there, e.g. read-your-writes on
    /// another instance than the write's).
    ValidBut(&'static [Anomaly]),
    /// No claim: any verdict is as expected (the pattern's weakness is not
    /// an anomaly of the history, e.g. transactions left in doubt).
    Any,
}

impl Expect {
    /// Whether a run that found `anomalies` (its violations; empty = valid) is as expected.
    pub fn met_by(self, anomalies: &[Anomaly]) -> bool {
        match self {
            Expect::Valid => anomalies.is_empty(),
            Expect::Shows(wanted) => anomalies.iter().any(|a| wanted.contains(a)),
            Expect::ValidBut(allowed) => anomalies.iter().all(|a| allowed.contains(a)),
            Expect::Any => true,
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Valid => f.write_str("valid"),
            Expect::Shows(a) => {
                let names: Vec<&str> = a.iter().map(|a| a.name()).collect();
                write!(f, "shows {}", names.join(" or "))
            }
            Expect::ValidBut(a) => {
                let names: Vec<&str> = a.iter().map(|a| a.name()).collect();
                write!(f, "valid but for {}", names.join(" or "))
            }
            Expect::Any => f.write_str("any verdict"),
        }
    }
}

/// When an [`Expectation`] applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Whatever the faults.
    Always,
    /// When the run's fault list holds one of these faults (by CLI name).
    /// A fault family stands for its faults: `network` holds `kafka-partition`.
    AnyFault(&'static [&'static str]),
    /// When the run's fault list holds every one of these faults (by CLI
    /// name): a mutant exposed only by faults that overlap (a kill inside a
    /// partition) states both.
    AllFaults(&'static [&'static str]),
    /// When several instances run (`--replicas` above 1).
    Replicated,
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            When::Always => f.write_str("always"),
            When::AnyFault(faults) => write!(f, "under {}", faults.join(" or ")),
            When::AllFaults(faults) => write!(f, "under {}", faults.join(" and ")),
            When::Replicated => f.write_str("with --replicas above 1"),
        }
    }
}

/// One rule: under `when`, the run must end as `expect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expectation {
    /// When the rule applies.
    pub when: When,
    /// What the run must end with.
    pub expect: Expect,
}

impl Expectation {
    /// Valid whatever the faults: the expectation of a correct pattern.
    pub const VALID: &'static [Expectation] = &[];

    /// Valid, but reads on another instance than the write's may be stale:
    /// read your writes from a cache of the instance that took the write.
    pub const STALE_ON_OTHER_INSTANCES: &'static [Expectation] = &[Expectation {
        when: When::Replicated,
        expect: Expect::ValidBut(&[Anomaly::StaleRead]),
    }];
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.expect, self.when)
    }
}

/// A knob setting that turns a pattern into a negative control (a mutant of
/// the bug zoo), and what it must then show (e.g. `DUALCHECK_CDC_CONFIRM=early`:
/// `lost` under `relay-kill`; `DUALCHECK_BUG=delete-before-ack`: `lost` under
/// `kafka-partition` and `relay-kill`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    /// The mutant's name in the zoo (`confirm-early`, `delete-before-ack`, ...);
    /// for a [`BUG_KNOB`] control, the same as [`Control::value`].
    pub name: &'static str,
    /// The knob (see [`crate::KNOBS`]).
    pub knob: &'static str,
    /// Its value that makes the control.
    pub value: &'static str,
    /// The fault list (comma-separated CLI names of faults or families, as
    /// `--faults` takes it) under which the zoo runs this mutant and which
    /// must expose it; `none` for a bug the workload alone exposes.
    pub faults: &'static str,
    /// The zoo checks this mutant's runs (and its control's) exactly-once
    /// (`--exactly-once`): its bug shows as duplicates with one event id,
    /// which an idempotent consumer would absorb and the default check allows.
    pub exactly_once: bool,
    /// The workload the zoo runs it (and its correct pattern) with, when the
    /// default ops of one event cannot show its bug (`None`: the default).
    pub workload: Option<MutantWorkload>,
    /// What runs with the knob set must show (the first rule that applies wins;
    /// none: valid).
    pub expect: &'static [Expectation],
}

/// Ops of several events for a mutant whose bug lives only there: the zoo
/// runs it and its correct pattern with `--events-per-op`, `--keys-per-op`
/// and `--write` set so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MutantWorkload {
    /// `--events-per-op`, as the flag takes it (`2-6`).
    pub events_per_op: &'static str,
    /// `--keys-per-op`.
    pub keys_per_op: usize,
    /// `--write`.
    pub write: workloads::WriteShape,
}

impl MutantWorkload {
    /// How a row label says it: `events 2-6 over 2 keys, multi-row`.
    pub fn describe(&self) -> String {
        let keys = match self.keys_per_op {
            1 => String::new(),
            n => format!(" over {n} keys"),
        };
        format!("events {}{keys}, {}", self.events_per_op, self.write)
    }

    /// Sets `workload`'s multi-event knobs to these.
    pub fn apply(&self, workload: &mut workloads::Workload) {
        workload.events_per_op = self.events_per_op.parse().expect("a mutant's --events-per-op parses");
        workload.keys_per_op = self.keys_per_op;
        workload.write = self.write;
    }
}

/// The knob that selects a mutant of the bug zoo: `DUALCHECK_BUG=NAME`.
pub const BUG_KNOB: &str = "DUALCHECK_BUG";

impl Control {
    /// Whether this control is set in `app_vars` (its knob has its value).
    pub fn is_set_in(&self, app_vars: &[(String, String)]) -> bool {
        app_vars.iter().any(|(k, v)| k == self.knob && v == self.value)
    }
}

/// The mutants ([`BUG_KNOB`] controls) `info` declares, by name.
pub fn bugs_of(info: &crate::PatternInfo) -> Vec<&'static str> {
    info.controls
        .iter()
        .filter(|c| c.knob == BUG_KNOB)
        .map(|c| c.value)
        .collect()
}

/// Every control (negative controls and mutants) of every built-in pattern,
/// with its pattern, in registry order: the zoo's rows.
pub fn all_controls() -> impl Iterator<Item = (&'static crate::PatternInfo, &'static Control)> {
    crate::REGISTRY
        .iter()
        .flat_map(|info| info.controls.iter().map(move |c| (info, c)))
}

/// Whether `info` may run with `app_vars`: an error naming the mutants it
/// has when [`BUG_KNOB`] is set (non-empty) to a value it does not declare,
/// so that a mutant never silently runs the correct code. Pure; the harness
/// calls it before starting anything, and `dualcheck app` refuses to start too.
pub fn check_bug(info: &crate::PatternInfo, app_vars: &[(String, String)]) -> Result<(), String> {
    let Some((_, bug)) = app_vars.iter().rev().find(|(k, _)| k == BUG_KNOB) else {
        return Ok(());
    };
    if bug.is_empty() || bugs_of(info).contains(&bug.as_str()) {
        return Ok(());
    }
    let own = bugs_of(info);
    let mine = if own.is_empty() {
        format!("{} has no mutant", info.name)
    } else {
        format!("the mutants of {} are {}", info.name, own.join(", "))
    };
    let elsewhere: Vec<String> = all_controls()
        .filter(|(p, c)| c.knob == BUG_KNOB && c.value == bug && p.name != info.name)
        .map(|(p, _)| p.name.to_string())
        .collect();
    let hint = if elsewhere.is_empty() {
        let mut all: Vec<&str> = all_controls()
            .filter(|(_, c)| c.knob == BUG_KNOB)
            .map(|(_, c)| c.value)
            .collect();
        all.sort_unstable();
        all.dedup();
        format!("no pattern has it (mutants: {})", all.join(", "))
    } else {
        format!("it belongs to {}", elsewhere.join(", "))
    };
    Err(format!("{BUG_KNOB}={bug}: {mine}; {hint}"))
}

/// The expectation of a run: the first rule of `rules` that applies to the
/// run's faults (CLI names) and its number of instances, else [`Expect::Valid`].
pub fn expected(rules: &[Expectation], faults: &[&str], replicas: usize) -> Expect {
    rules
        .iter()
        .find(|r| match r.when {
            When::Always => true,
            When::AnyFault(names) => names.iter().any(|n| faults.contains(n)),
            When::AllFaults(names) => names.iter().all(|n| faults.contains(n)),
            When::Replicated => replicas > 1,
        })
        .map(|r| r.expect)
        .unwrap_or(Expect::Valid)
}

/// The rules of `info` run with `app_vars`: those of the first [`Control`] whose
/// knob is set to its value, else the pattern's own.
pub fn rules_for(info: &crate::PatternInfo, app_vars: &[(String, String)]) -> &'static [Expectation] {
    info.controls
        .iter()
        .find(|c| c.is_set_in(app_vars))
        .map(|c| c.expect)
        .unwrap_or(info.expect)
}

/// The rules as one line (`valid` when there is none), for `dualcheck list`.
pub fn describe(rules: &[Expectation]) -> String {
    let mut parts: Vec<String> = rules
        .iter()
        .enumerate()
        .map(|(i, r)| match r.when {
            When::Always if i > 0 => format!("{} otherwise", r.expect),
            _ => r.to_string(),
        })
        .collect();
    if !rules.iter().any(|r| r.when == When::Always) {
        parts.push(if rules.is_empty() {
            "valid".into()
        } else {
            "valid otherwise".into()
        });
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAIVE: &[Expectation] = &[Expectation {
        when: When::AnyFault(&["kafka-partition", "crash-after-commit"]),
        expect: Expect::Shows(&[Anomaly::Lost]),
    }];

    #[test]
    fn the_first_rule_that_applies_decides() {
        assert_eq!(
            expected(NAIVE, &["pg-kill", "kafka-partition"], 1),
            Expect::Shows(&[Anomaly::Lost])
        );
        assert_eq!(expected(NAIVE, &["pg-kill"], 1), Expect::Valid);
        assert_eq!(expected(Expectation::VALID, &["kafka-partition"], 1), Expect::Valid);
        assert_eq!(
            describe(NAIVE),
            "shows lost under kafka-partition or crash-after-commit; valid otherwise"
        );
        assert_eq!(describe(&[]), "valid");
        let two_phase = [
            NAIVE[0],
            Expectation {
                when: When::Always,
                expect: Expect::Any,
            },
        ];
        assert_eq!(
            describe(&two_phase),
            "shows lost under kafka-partition or crash-after-commit; any verdict otherwise"
        );
    }

    #[test]
    fn runs_meet_an_expectation_or_not() {
        assert!(Expect::Valid.met_by(&[]));
        assert!(!Expect::Valid.met_by(&[Anomaly::Lost]));
        let lost = Expect::Shows(&[Anomaly::Lost]);
        assert!(lost.met_by(&[Anomaly::Reorder, Anomaly::Lost]));
        assert!(!lost.met_by(&[]), "a negative control that stays valid was not caught");
        assert!(!lost.met_by(&[Anomaly::Phantom]));
        assert!(Expect::Any.met_by(&[Anomaly::Phantom]) && Expect::Any.met_by(&[]));
    }

    #[test]
    fn all_faults_needs_every_fault() {
        let both = [Expectation {
            when: When::AllFaults(&["kafka-partition", "relay-kill"]),
            expect: Expect::Shows(&[Anomaly::Lost]),
        }];
        assert_eq!(expected(&both, &["kafka-partition"], 1), Expect::Valid);
        assert_eq!(
            expected(&both, &["relay-kill", "pg-kill", "kafka-partition"], 1),
            Expect::Shows(&[Anomaly::Lost])
        );
        assert_eq!(
            describe(&both),
            "shows lost under kafka-partition and relay-kill; valid otherwise"
        );
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_mutant_runs_only_on_a_pattern_that_declares_it() {
        let poll = crate::lookup("outbox-poll").unwrap();
        let xid = crate::lookup("outbox-xid").unwrap();
        let naive = crate::lookup("naive").unwrap();
        assert_eq!(check_bug(poll, &[]), Ok(()));
        assert_eq!(check_bug(poll, &vars(&[("DUALCHECK_BUG", "")])), Ok(()));
        assert_eq!(
            check_bug(poll, &vars(&[("DUALCHECK_BUG", "delete-before-ack")])),
            Ok(())
        );
        assert_eq!(
            check_bug(
                poll,
                &vars(&[("DUALCHECK_RELAYS", "2"), ("DUALCHECK_BUG", "delete-before-ack")])
            ),
            Ok(())
        );
        // Another pattern's mutant: refused, naming this pattern's and the owner.
        let e = check_bug(poll, &vars(&[("DUALCHECK_BUG", "no-xmin-guard")])).unwrap_err();
        assert!(
            e.contains("delete-before-ack") && e.contains("belongs to outbox-xid"),
            "{e}"
        );
        assert_eq!(check_bug(xid, &vars(&[("DUALCHECK_BUG", "no-xmin-guard")])), Ok(()));
        // An unknown name: refused, listing every mutant.
        let e = check_bug(poll, &vars(&[("DUALCHECK_BUG", "typo")])).unwrap_err();
        assert!(
            e.contains("no pattern has it") && e.contains("new-slot-on-restart"),
            "{e}"
        );
        // A pattern without mutants.
        let e = check_bug(naive, &vars(&[("DUALCHECK_BUG", "delete-before-ack")])).unwrap_err();
        assert!(e.contains("naive has no mutant"), "{e}");
        // The other knobs of a negative control are not mutants: never refused here.
        assert_eq!(check_bug(naive, &vars(&[("DUALCHECK_CDC_CONFIRM", "early")])), Ok(()));
    }

    #[test]
    fn every_mutant_is_named_with_its_faults() {
        let mut names = std::collections::BTreeSet::new();
        for (info, c) in all_controls() {
            assert!(!c.name.is_empty() && !c.faults.is_empty(), "{}: {c:?}", info.name);
            if c.knob == BUG_KNOB {
                assert_eq!(c.name, c.value, "{}", info.name);
                assert!(crate::KNOBS.iter().any(|k| k.name == BUG_KNOB));
            }
            assert!(
                !c.expect.is_empty(),
                "{} {}: a mutant must declare what it shows",
                info.name,
                c.name
            );
            names.insert(c.name);
        }
        for wanted in [
            "confirm-early",
            "cache-off",
            "delete-before-ack",
            "new-id-on-retry",
            "unordered-relays",
            "drop-on-timeout",
            "non-idempotent-producer",
            "publish-in-transaction",
            "no-xmin-guard",
            "new-slot-on-restart",
            "commit-offset-before-write",
        ] {
            assert!(names.contains(wanted), "{wanted}");
        }
    }

    #[test]
    fn every_pattern_and_control_names_real_knobs() {
        for info in crate::REGISTRY {
            for c in info.controls {
                assert!(
                    crate::KNOBS.iter().any(|k| k.name == c.knob),
                    "{}: {}",
                    info.name,
                    c.knob
                );
                let env = vec![(c.knob.to_string(), c.value.to_string())];
                assert_eq!(rules_for(info, &env), c.expect);
            }
            assert_eq!(rules_for(info, &[]), info.expect);
        }
    }
}
