//! `dualcheck`: the command line. Each subcommand lives in its own module of
//! the `harness` library; this file only parses arguments and maps results to
//! exit codes (0 valid / success, 1 anomalies found, 2 unusable input or error).

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "dualcheck",
    version,
    about = "Jepsen-style verification of the dual write (PostgreSQL + Kafka)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a history (JSON Lines) recorded by dualcheck or anything else.
    Check(harness::cli_check::CheckArgs),
    /// Run one implementation under a seeded workload and faults, and check the history.
    Run(Box<harness::cli_run::RunArgs>),
    /// List implementations, faults and workload options.
    List(harness::cli_run::ListArgs),
    /// Check prerequisites and that real Postgres, Kafka and Toxiproxy behave (starts them locally).
    Doctor(harness::doctor::DoctorArgs),
    /// Install and collect the real services (runs ci/setup).
    Setup(harness::doctor::SetupArgs),
    /// Serve one built-in implementation over the HTTP contract (started by the runner).
    App(harness::app::AppArgs),
    /// Write junit.xml and report.html of a run directory (or a history file) from its history.
    Report(harness::cli_report::ReportArgs),
    /// Run several implementations under the same seeded workload and faults; one table and compare.html.
    Compare(harness::cli_compare::CompareArgs),
    /// End-to-end latency and throughput of each pattern next to the machine's Postgres and Kafka limits.
    Bench(harness::cli_bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check(args) => harness::cli_check::run(args),
        Command::Run(args) => harness::cli_run::run(*args),
        Command::List(args) => harness::cli_run::list(args),
        Command::Doctor(args) => harness::doctor::run(args),
        Command::Setup(args) => harness::doctor::setup(args),
        Command::App(args) => harness::app::run(args),
        Command::Report(args) => harness::cli_report::run(args),
        Command::Compare(args) => harness::cli_compare::run(args),
        Command::Bench(args) => harness::cli_bench::run(args),
    };
    ExitCode::from(code)
}
