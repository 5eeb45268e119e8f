//! The command line: one module per subcommand, each parsing its arguments,
//! calling the library and printing. This module holds the `Cli`, the
//! dispatch, and what every subcommand shares: the typed [`Verdict`] that
//! alone decides the exit code, the tracing set-up and the runtime builder.

mod app;
mod bench;
mod check;
mod doctor;
mod env;
mod exit_codes;
mod gate;
mod merge;
mod report;
mod run;
mod serve;
mod shrink;
mod sweep;
mod zoo;

use clap::{Parser, Subcommand};
use std::process::ExitCode;
use std::time::Duration;

/// The width help is laid out for, whatever the terminal: the help is the
/// same everywhere, and docs/cli.md (generated from it) too.
pub const HELP_WIDTH: usize = 100;

/// `dualcheck`: its subcommands, each with its own arguments.
#[derive(Parser)]
#[command(
    name = "dualcheck",
    // The usage lines say `dualcheck` whatever the binary file is called.
    bin_name = "dualcheck",
    version,
    about = "Jepsen-style verification of the dual write (PostgreSQL + Kafka)",
    after_help = exit_codes::top_level_help(),
    term_width = HELP_WIDTH,
    max_term_width = HELP_WIDTH
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a history (JSON Lines) recorded by dualcheck or anything else.
    #[command(after_help = exit_codes::help(exit_codes::CHECK))]
    Check(check::CheckArgs),
    /// Run one implementation under a seeded workload and faults, and check the history.
    #[command(after_help = exit_codes::help(exit_codes::RUN))]
    Run(Box<run::RunArgs>),
    /// List implementations, faults and workload options.
    #[command(after_help = exit_codes::help(exit_codes::LIST))]
    List(run::ListArgs),
    /// Check prerequisites and that real Postgres, Kafka and Toxiproxy behave (starts them locally).
    #[command(after_help = exit_codes::help(exit_codes::DOCTOR))]
    Doctor(doctor::DoctorArgs),
    /// Install and collect the real services (runs ci/setup).
    #[command(after_help = exit_codes::help(exit_codes::SETUP))]
    Setup(doctor::SetupArgs),
    /// Serve one built-in implementation over the HTTP contract (started by the runner).
    #[command(after_help = exit_codes::help(exit_codes::APP))]
    App(app::AppArgs),
    /// Write junit.xml and report.html of a run directory (or a history file) from its history.
    #[command(after_help = exit_codes::help(exit_codes::REPORT))]
    Report(report::ReportArgs),
    /// Run implementations × fault lists × seeds on services started once; judge each run
    /// against its expected verdict (`dualcheck list`); one table and sweep.html.
    #[command(after_help = exit_codes::help(exit_codes::SWEEP), mut_args = sweep::exec_cells_help)]
    Sweep(Box<sweep::SweepArgs>),
    /// `sweep` judged by validity alone (exit 0 only when every run is valid); one table and compare.html.
    #[command(after_help = exit_codes::help(exit_codes::COMPARE), mut_args = sweep::exec_cells_help)]
    Compare(Box<sweep::SweepArgs>),
    /// Gate an implementation in CI within a wall-time budget (`--budget`, default 5m): a
    /// battery of faults planned from the bug zoo's measurements, stopping at the first
    /// invalid run; writes gate.json, summary.md, junit.xml ($GITHUB_STEP_SUMMARY too).
    #[command(after_help = exit_codes::help(exit_codes::GATE))]
    Gate(Box<gate::GateArgs>),
    /// Shrink an invalid run to its smallest reproduction (fewer fault windows, shorter, smaller
    /// workload), on services started once; writes RUN_DIR/shrunk/.
    #[command(after_help = exit_codes::help(exit_codes::SHRINK))]
    Shrink(shrink::ShrinkArgs),
    /// One matrix from several sweeps (e.g. shards run on several machines) and run directories.
    #[command(after_help = exit_codes::help(exit_codes::MERGE))]
    Merge(merge::MergeArgs),
    /// The bug zoo: every mutant under the faults it names, beside its correct pattern;
    /// how often each is caught, what it shows, how soon.
    #[command(after_help = exit_codes::help(exit_codes::ZOO), mut_args = zoo::hide_out_of_place_options)]
    Zoo(Box<zoo::ZooArgs>),
    /// End-to-end latency and throughput of each pattern next to the machine's Postgres and Kafka limits.
    #[command(after_help = exit_codes::help(exit_codes::BENCH))]
    Bench(bench::BenchArgs),
    /// The local services in the foreground (`env up`, `env down`): for your own
    /// integration tests and for `--backend external`.
    #[command(after_help = exit_codes::help_of_subcommands(&[
        ("env up", exit_codes::ENV_UP),
        ("env down", exit_codes::ENV_DOWN),
    ]))]
    Env(env::EnvArgs),
    /// A local web page (127.0.0.1) listing every run, sweep, comparison and zoo under DIR, newest first.
    #[command(after_help = exit_codes::help(exit_codes::SERVE))]
    Serve(serve::ServeArgs),
}

impl Command {
    /// The logs a subcommand shows; `None` leaves tracing off (its events are dropped).
    fn logs(&self) -> Option<Logs> {
        match self {
            Command::Run(_)
            | Command::Sweep(_)
            | Command::Compare(_)
            | Command::Zoo(_)
            | Command::Bench(_)
            | Command::Shrink(_)
            | Command::Gate(_)
            | Command::Env(_) => Some(Logs::Terminal),
            Command::App(_) => Some(Logs::AppProcess),
            Command::Check(_)
            | Command::List(_)
            | Command::Doctor(_)
            | Command::Setup(_)
            | Command::Report(_)
            | Command::Merge(_)
            | Command::Serve(_) => None,
        }
    }
}

impl Cli {
    /// Runs the subcommand; the exit code follows from its verdict.
    pub fn run(self) -> ExitCode {
        if let Some(logs) = self.command.logs() {
            init_tracing(logs);
        }
        let verdict = match self.command {
            Command::Check(args) => check::run(args),
            Command::Run(args) => run::run(*args),
            Command::List(args) => run::list(args),
            Command::Doctor(args) => doctor::run(args),
            Command::Setup(args) => doctor::setup(args),
            Command::App(args) => app::run(args),
            Command::Report(args) => report::run(args),
            Command::Sweep(args) => sweep::run(*args, sweep::Judge::Expectations),
            Command::Compare(args) => sweep::run(*args, sweep::Judge::Validity),
            Command::Zoo(args) => zoo::run(*args),
            Command::Merge(args) => merge::run(args),
            Command::Bench(args) => bench::run(args),
            Command::Shrink(args) => shrink::run(args),
            Command::Gate(args) => gate::run(*args),
            Command::Serve(args) => serve::run(args),
            Command::Env(args) => env::run(args),
        };
        verdict.into()
    }
}

/// How a subcommand ended; the exit code is decided here and nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// Exit 0: valid history or run, every check passed, the command succeeded.
    Valid,
    /// Exit 1: anomalies found (or, for `doctor` and `setup`, a check or the script failed).
    Invalid,
    /// Exit 2: unusable input, or a run or command that could not be carried out.
    Unusable,
    /// Exit 3: the history is incomplete (an interrupted run: a `begin` line and
    /// no `end` line), so it cannot be judged — Jepsen's third verdict.
    Unknown,
}

impl Verdict {
    /// `Valid` or `Invalid`.
    fn of(valid: bool) -> Verdict {
        if valid {
            Verdict::Valid
        } else {
            Verdict::Invalid
        }
    }

    /// The exit verdict of a check's verdict.
    fn of_check(verdict: checkers::Verdict) -> Verdict {
        match verdict {
            checkers::Verdict::Valid => Verdict::Valid,
            checkers::Verdict::Invalid => Verdict::Invalid,
            checkers::Verdict::Unknown => Verdict::Unknown,
        }
    }
}

impl Verdict {
    /// The process's exit code: the one place the numbers are written
    /// (the help's "Exit codes:" sections read them here too).
    fn code(self) -> u8 {
        match self {
            Verdict::Valid => 0,
            Verdict::Invalid => 1,
            Verdict::Unusable => 2,
            Verdict::Unknown => 3,
        }
    }
}

impl From<Verdict> for ExitCode {
    fn from(v: Verdict) -> ExitCode {
        ExitCode::from(v.code())
    }
}

/// Which logs go to stderr.
#[derive(Debug, Clone, Copy)]
enum Logs {
    /// A user's terminal: `warn` (RUST_LOG overrides); librdkafka's connection
    /// errors, expected under faults, stay off it.
    Terminal,
    /// `dualcheck app`, whose stderr the runner keeps as a log file: `info`, no colours.
    AppProcess,
}

/// The one tracing set-up of the binary.
fn init_tracing(logs: Logs) {
    use tracing_subscriber::EnvFilter;
    let builder = tracing_subscriber::fmt().with_writer(std::io::stderr);
    let _ = match logs {
        Logs::Terminal => builder
            .with_env_filter(
                EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,librdkafka=off,rdkafka=off")),
            )
            .try_init(),
        Logs::AppProcess => builder.with_max_level(tracing::Level::INFO).with_ansi(false).try_init(),
    };
}

/// The one runtime builder of the binary; a failure is reported as
/// `dualcheck COMMAND: starting the runtime: ...`.
fn runtime(command: &str) -> Result<tokio::runtime::Runtime, Verdict> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("dualcheck {command}: starting the runtime: {e}");
            Verdict::Unusable
        })
}

/// Parses `500ms`, `30s`, `2m`, `1h` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad duration `{s}`: write it like 500ms, 30s, 2m or 1h"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in `{s}`: use ms, s, m or h")),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("duration `{s}` must be positive"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a signed clock offset (`5s`, `-2s`, `+500ms`) into milliseconds.
fn parse_clock_offset(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let (sign, rest) = match t.strip_prefix('-') {
        Some(r) => (-1, r),
        None => (1, t.strip_prefix('+').unwrap_or(t)),
    };
    let d = parse_duration(rest).map_err(|e| format!("--clock-offset: {e} (a sign may lead: -2s is behind)"))?;
    Ok(sign * d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command and subcommand, with its path (`env up`), built as the
    /// binary builds them (settings propagated).
    fn all_commands() -> Vec<(String, clap::Command)> {
        fn walk(prefix: &str, cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
            for sub in cmd.get_subcommands().filter(|c| c.get_name() != "help") {
                let path = format!("{prefix} {}", sub.get_name()).trim().to_string();
                out.push((path.clone(), sub.clone()));
                walk(&path, sub, out);
            }
        }
        let mut cli = Cli::command();
        cli.build();
        let mut out = vec![(String::new(), cli.clone())];
        walk("", &cli, &mut out);
        out
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_command_ends_its_help_with_its_exit_codes() {
        for (path, mut cmd) in all_commands() {
            let help = cmd.render_long_help().to_string();
            if path.is_empty() {
                assert!(help.contains("Exit codes: `dualcheck COMMAND --help`"), "{help}");
                continue;
            }
            let section = help
                .split_once("\nExit codes:\n")
                .unwrap_or_else(|| panic!("dualcheck {path} --help has no exit codes:\n{help}"))
                .1;
            assert!(section.trim_end().ends_with("exits 2."), "dualcheck {path}: {section}");
            let short = cmd.render_help().to_string();
            assert!(
                short.ends_with(section),
                "dualcheck {path} -h states them too:\n{short}"
            );
        }
    }

    /// docs/cli.md shows `Usage: dualcheck ...` whatever file the binary it
    /// was generated from is (a test binary's, a renamed copy).
    #[test]
    fn usage_lines_say_dualcheck_whatever_the_binary_is_called() {
        for args in [&["run", "--help"][..], &["env", "up", "--help"]] {
            let argv = std::iter::once("/tmp/renamed-dualcheck-copy").chain(args.iter().copied());
            let help = match Cli::try_parse_from(argv) {
                Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => e.to_string(),
                _ => panic!("{args:?} prints the help"),
            };
            let usage = format!("Usage: dualcheck {}", args[..args.len() - 1].join(" "));
            assert!(help.contains(&usage), "{help}");
        }
    }

    /// `sweep` and `compare` have `--impls`, not `--impl`: their help speaks
    /// of `exec` cells; the zoo, whose cells are all built-ins, hides the
    /// options that only `exec` or `--faults` take.
    #[test]
    fn exec_options_are_described_as_each_command_takes_them() {
        let help = |name: &str| {
            let mut cmd = Cli::command();
            cmd.build();
            let mut sub = cmd.find_subcommand(name).unwrap().clone();
            sub.render_long_help().to_string()
        };
        for name in ["sweep", "compare"] {
            let h = help(name);
            assert!(!h.contains("--impl exec"), "dualcheck {name}:\n{h}");
            assert!(h.contains("Program to run for the `exec` cells of --impls"), "{h}");
            assert!(h.contains("Service template (`exec` cells only"), "{h}");
        }
        let run = help("run");
        assert!(run.contains("Program to run for `--impl exec`") && run.contains("Service template (--impl exec)"));
        let zoo = help("zoo");
        for hidden in [
            "--cmd",
            "--committed-sql",
            "--template",
            "--request-path",
            "--fault-cmd",
        ] {
            assert!(!zoo.contains(hidden), "zoo shows {hidden}:\n{zoo}");
        }
        assert!(zoo.contains("--backend") && zoo.contains("[default: 20]"), "{zoo}");
    }

    #[test]
    fn clock_offsets_parse_with_their_sign() {
        assert_eq!(parse_clock_offset("5s"), Ok(5000));
        assert_eq!(parse_clock_offset("-2s"), Ok(-2000));
        assert_eq!(parse_clock_offset("+500ms"), Ok(500));
        assert!(parse_clock_offset("-soon").unwrap_err().contains("--clock-offset"));
    }

    #[test]
    fn durations_parse_and_explain() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("10 parsecs").unwrap_err().contains("unit"));
        assert!(parse_duration("abc").unwrap_err().contains("500ms"));
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn exit_codes_follow_the_verdict() {
        assert_eq!(ExitCode::from(Verdict::Valid), ExitCode::from(0));
        assert_eq!(ExitCode::from(Verdict::of(false)), ExitCode::from(1));
        assert_eq!(ExitCode::from(Verdict::Unusable), ExitCode::from(2));
        assert_eq!(
            ExitCode::from(Verdict::of_check(checkers::Verdict::Unknown)),
            ExitCode::from(3)
        );
        assert_eq!(Verdict::of_check(checkers::Verdict::Valid), Verdict::Valid);
        assert_eq!(Verdict::of_check(checkers::Verdict::Invalid), Verdict::Invalid);
    }
}
