//! The exit codes of every command, stated once. Each command's help
//! ends with its own "Exit codes:" section, built here from the [`Verdict`]
//! each outcome maps to, so the numbers shown are the ones
//! `From<Verdict> for ExitCode` returns; docs/cli.md is generated from the
//! help (`scripts/cli-reference`). A command that changes what decides its
//! exit code changes its table here.

use super::Verdict;

/// One way a command can end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
    /// The verdict the command returns (0 to 3, [`Verdict::code`]).
    Verdict(Verdict),
    /// Ctrl-C or SIGTERM while services the command started were running:
    /// the services' interrupt handler
    /// (`dualcheck::env::process::install_signal_handler`) kills them and
    /// exits with [`INTERRUPTED`], whatever the command was doing.
    Interrupted,
}

/// The code the services' interrupt handler exits with (128 + SIGINT, the
/// shell's convention). Stated here because that handler lives in the
/// services crate, below the command line.
pub(super) const INTERRUPTED: u8 = 130;

impl Exit {
    /// The process's exit code.
    pub(super) fn code(self) -> u8 {
        match self {
            Exit::Verdict(v) => v.code(),
            Exit::Interrupted => INTERRUPTED,
        }
    }
}

/// A command's exit codes, each with what it means for that command.
pub(super) type Codes = &'static [(Exit, &'static str)];

const VALID: Exit = Exit::Verdict(Verdict::Valid);
const INVALID: Exit = Exit::Verdict(Verdict::Invalid);
const UNUSABLE: Exit = Exit::Verdict(Verdict::Unusable);
const UNKNOWN: Exit = Exit::Verdict(Verdict::Unknown);
const STOPPED: Exit = Exit::Interrupted;

/// What an interrupt does to a command that starts services and judges runs.
const INTERRUPTED_RUNS: &str =
    "interrupted (Ctrl-C or SIGTERM): every service it started is killed; the runs so far are printed";

/// `dualcheck check`.
pub(super) const CHECK: Codes = &[
    (VALID, "valid: no anomaly"),
    (INVALID, "invalid: anomalies found (the summary, or --json, names them)"),
    (
        UNUSABLE,
        "unusable history: it cannot be read or is not a history (the message names the file and line)",
    ),
    (
        UNKNOWN,
        "unknown: the history is incomplete (a `begin` line and no `end` line: the run recording it was interrupted) and --assume-complete was not given",
    ),
];

/// `dualcheck run`.
pub(super) const RUN: Codes = &[
    (VALID, "valid: the run was carried out and its history is valid"),
    (INVALID, "invalid: anomalies found (the summary and the run directory's results.json name them)"),
    (
        UNUSABLE,
        "the run could not be carried out: options refused, services or the implementation not starting, ... (the message says what)",
    ),
    (UNKNOWN, "unknown: the recorded history is incomplete (no `end` line), so it cannot be judged"),
    (
        STOPPED,
        "interrupted (Ctrl-C or SIGTERM): every service it started is killed, nothing is judged",
    ),
];

/// `dualcheck list`.
pub(super) const LIST: Codes = &[(VALID, "always: the lists are printed")];

/// `dualcheck doctor`.
pub(super) const DOCTOR: Codes = &[
    (VALID, "every check passed"),
    (INVALID, "a check failed (its FAIL line says why; the logs stay in the run directory it prints)"),
    (
        UNUSABLE,
        "not set up: a prerequisite is missing (run `bash ci/setup`) or the run directory cannot be made; nothing was tested",
    ),
    (STOPPED, "interrupted (Ctrl-C or SIGTERM) once the services started: they are killed"),
];

/// `dualcheck setup`.
pub(super) const SETUP: Codes = &[
    (VALID, "ci/setup succeeded"),
    (INVALID, "ci/setup failed (its output says where)"),
    (
        UNUSABLE,
        "ci/setup not found (run dualcheck from a checkout of its repository) or bash cannot be started",
    ),
];

/// `dualcheck app`.
pub(super) const APP: Codes = &[
    (
        VALID,
        "stopped by SIGTERM or Ctrl-C, for a pattern that shuts down gracefully (the others end by the signal itself)",
    ),
    (
        UNUSABLE,
        "it cannot start: an unknown --impl, a knob missing or malformed (`dualcheck list` shows them), a mutant its pattern does not have, the port in use, ...",
    ),
];

/// `dualcheck report`.
pub(super) const REPORT: Codes = &[
    (VALID, "the report is written; the history is valid"),
    (INVALID, "the report is written; the history has anomalies"),
    (
        UNUSABLE,
        "no report: the directory or its history cannot be read, or the report cannot be written",
    ),
    (
        UNKNOWN,
        "the report is written; the history is incomplete (a `begin` line and no `end` line: an interrupted run)",
    ),
];

/// `dualcheck sweep`.
pub(super) const SWEEP: Codes = &[
    (
        VALID,
        "every cell as expected: each run's verdict is the one its implementation declares (`dualcheck list`; a negative control is expected invalid)",
    ),
    (INVALID, "some cell not as expected (the table names its seeds)"),
    (
        UNUSABLE,
        "options refused before anything started, or some run could not be carried out (the table says which)",
    ),
    (STOPPED, INTERRUPTED_RUNS),
];

/// `dualcheck compare`.
pub(super) const COMPARE: Codes = &[
    (VALID, "every run valid"),
    (INVALID, "some run not valid (the table names its seeds)"),
    (
        UNUSABLE,
        "options refused before anything started, or some run could not be carried out (the table says which)",
    ),
    (STOPPED, INTERRUPTED_RUNS),
];

/// `dualcheck gate`.
pub(super) const GATE: Codes = &[
    (
        VALID,
        "passed: every run the budget had time for was valid (or --plan printed the battery)",
    ),
    (
        INVALID,
        "failed: a run was invalid; the gate stopped there (and shrank it when the budget left time)",
    ),
    (
        UNUSABLE,
        "the gate could not be carried out: options refused, no measured fault list fits the implementation, a run or the services failing, its files not written",
    ),
    (UNKNOWN, "a run's history was incomplete; the gate stopped there"),
    (
        STOPPED,
        "interrupted (Ctrl-C or SIGTERM): every service it started is killed",
    ),
];

/// `dualcheck shrink`.
pub(super) const SHRINK: Codes = &[
    (VALID, "shrunk: the smallest reproduction found is in RUN_DIR/shrunk/"),
    (
        UNUSABLE,
        "nothing shrunk: the run is valid or did not show --anomaly, it did not reproduce in --min-repro of --tries, or the shrink could not be carried out",
    ),
    (
        STOPPED,
        "interrupted (Ctrl-C or SIGTERM): every service it started is killed; the best so far is printed and kept in RUN_DIR/shrunk/",
    ),
];

/// `dualcheck merge`.
pub(super) const MERGE: Codes = &[
    (
        VALID,
        "every cell as expected (each run's verdict the one its implementation declares)",
    ),
    (INVALID, "some cell not as expected"),
    (
        UNUSABLE,
        "some run could not be carried out or read, nothing to merge was found, or merge.html cannot be written",
    ),
];

/// `dualcheck zoo`.
pub(super) const ZOO: Codes = &[
    (
        VALID,
        "every mutant caught in every run, and every correct pattern beside it valid",
    ),
    (INVALID, "some mutant not caught in some run, or a correct pattern not valid"),
    (
        UNUSABLE,
        "an unknown mutant, options refused, some run not carried out, or (--merge) no run of the selected mutants found",
    ),
    (STOPPED, INTERRUPTED_RUNS),
];

/// `dualcheck bench`.
pub(super) const BENCH: Codes = &[
    (VALID, "every run carried out and valid (--drain: every relay drained)"),
    (INVALID, "some run not valid (its figures are worth little)"),
    (UNUSABLE, "a run or a measurement could not be carried out"),
    (
        STOPPED,
        "interrupted (Ctrl-C or SIGTERM): every service it started is killed",
    ),
];

/// `dualcheck env up`.
pub(super) const ENV_UP: Codes = &[
    (
        UNUSABLE,
        "the services could not start, an environment is already up under --out, or --brokers 2",
    ),
    (
        STOPPED,
        "stopped (Ctrl-C, SIGTERM or `dualcheck env down`): its normal end; it never exits 0",
    ),
];

/// `dualcheck env down`.
pub(super) const ENV_DOWN: Codes = &[
    (VALID, "the environment stopped, or it had already ended"),
    (
        UNUSABLE,
        "no environment is up under --out, or it still ran 60 s after SIGTERM",
    ),
];

/// `dualcheck serve`.
pub(super) const SERVE: Codes = &[
    (VALID, "stopped with Ctrl-C"),
    (
        UNUSABLE,
        "it cannot listen (the port in use: choose another with --port)",
    ),
];

/// What every command's section ends with: clap's own refusals.
const USAGE_ERROR: &str = "A usage error (an unknown flag, a missing or malformed value) exits 2.";

/// The lines of `codes`, each indented by `indent`.
fn lines(codes: Codes, indent: &str) -> String {
    codes
        .iter()
        .map(|(exit, meaning)| format!("{indent}{:<4} {meaning}\n", exit.code()))
        .collect()
}

/// The "Exit codes:" section ending a command's help (`-h` and `--help`).
pub(super) fn help(codes: Codes) -> String {
    format!("Exit codes:\n{}{USAGE_ERROR}", lines(codes, "  "))
}

/// The "Exit codes:" section of a command made of subcommands, each
/// subcommand's codes under its name.
pub(super) fn help_of_subcommands(parts: &[(&str, Codes)]) -> String {
    let mut s = String::from("Exit codes:\n");
    for (name, codes) in parts {
        s.push_str(&format!("  {name}:\n{}", lines(codes, "    ")));
    }
    s.push_str(USAGE_ERROR);
    s
}

/// The paragraph ending `dualcheck --help`: where each command's codes are.
pub(super) fn top_level_help() -> String {
    format!(
        "Exit codes: `dualcheck COMMAND --help` ends with that command's own (all of them: docs/cli.md). In short: \
         {} valid or done, {} anomalies found or a check failed, {} unusable input or not carried out (a usage error too), \
         {} unknown (an incomplete history), {} interrupted (Ctrl-C or SIGTERM) while services ran.",
        VALID.code(),
        INVALID.code(),
        UNUSABLE.code(),
        UNKNOWN.code(),
        STOPPED.code()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_section_states_each_code_with_its_meaning_and_ends_with_usage_errors() {
        assert_eq!(
            help(SERVE),
            "Exit codes:\n  0    stopped with Ctrl-C\n  2    it cannot listen (the port in use: choose another with --port)\n\
             A usage error (an unknown flag, a missing or malformed value) exits 2."
        );
        let env = help_of_subcommands(&[("env up", ENV_UP), ("env down", ENV_DOWN)]);
        assert!(env.contains("  env up:\n    2    the services"), "{env}");
        assert!(env.contains("    130  stopped"), "{env}");
    }

    #[test]
    fn the_codes_are_the_processs() {
        use std::process::ExitCode;
        for (exit, code) in [(VALID, 0), (INVALID, 1), (UNUSABLE, 2), (UNKNOWN, 3), (STOPPED, 130)] {
            assert_eq!(exit.code(), code);
            if let Exit::Verdict(v) = exit {
                assert_eq!(ExitCode::from(v), ExitCode::from(code));
            }
        }
    }

    #[test]
    fn each_table_lists_its_codes_once_in_increasing_order() {
        for codes in [
            CHECK, RUN, LIST, DOCTOR, SETUP, APP, REPORT, SWEEP, COMPARE, GATE, SHRINK, MERGE, ZOO, BENCH, ENV_UP,
            ENV_DOWN, SERVE,
        ] {
            let numbers: Vec<u8> = codes.iter().map(|(e, _)| e.code()).collect();
            assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
        }
    }
}
