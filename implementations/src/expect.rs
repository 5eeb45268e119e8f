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
}

impl fmt::Display for When {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            When::Always => f.write_str("always"),
            When::AnyFault(faults) => write!(f, "under {}", faults.join(" or ")),
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
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.expect, self.when)
    }
}

/// A knob setting that turns a pattern into a negative control, and what it
/// must then show (e.g. `DUALCHECK_CDC_CONFIRM=early`: `lost` under `relay-kill`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    /// The knob (see [`crate::KNOBS`]).
    pub knob: &'static str,
    /// Its value that makes the control.
    pub value: &'static str,
    /// What runs with the knob set must show (the first rule that applies wins;
    /// none: valid).
    pub expect: &'static [Expectation],
}

/// The expectation of a run: the first rule of `rules` that applies to the
/// run's faults (CLI names), else [`Expect::Valid`].
pub fn expected(rules: &[Expectation], faults: &[&str]) -> Expect {
    rules
        .iter()
        .find(|r| match r.when {
            When::Always => true,
            When::AnyFault(names) => names.iter().any(|n| faults.contains(n)),
        })
        .map(|r| r.expect)
        .unwrap_or(Expect::Valid)
}

/// The rules of `info` run with `app_vars`: those of the first [`Control`] whose
/// knob is set to its value, else the pattern's own.
pub fn rules_for(info: &crate::PatternInfo, app_vars: &[(String, String)]) -> &'static [Expectation] {
    info.controls
        .iter()
        .find(|c| app_vars.iter().any(|(k, v)| k == c.knob && v == c.value))
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
            expected(NAIVE, &["pg-kill", "kafka-partition"]),
            Expect::Shows(&[Anomaly::Lost])
        );
        assert_eq!(expected(NAIVE, &["pg-kill"]), Expect::Valid);
        assert_eq!(expected(Expectation::VALID, &["kafka-partition"]), Expect::Valid);
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
